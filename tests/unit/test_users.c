/* The users file and roles: parsing (malformed lines included), password hashes, tokens,
 * queue-name patterns and the atomic rewrite. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "imap/base/limits.h"
#include "imap/server/access.h"
#include "imap/server/users.h"
#include "tmpdir.h"

/* PBKDF2-HMAC-SHA256 of "secret" with salt "0123456789abcdef" and 1000 iterations, as Python's
 * hashlib.pbkdf2_hmac computes it: the file format is readable by other tools. */
#define SECRET_HASH                                                                                \
	"$pbkdf2-sha256$i=1000$MDEyMzQ1Njc4OWFiY2RlZg==$"                                          \
	"tiKWHy4FAGCWE8gn6GtKhaxD2OeeAUUWXFT/p1aaNl8="
/* SHA-256 of the token "tok-alice". */
#define ALICE_TOKEN_HASH "$sha256$3elvWyeyKYR2snLAN9/Sy1Q440lVEMUQNdse9V8plKQ="

/* Iterations for hashes made by the tests: the minimum, so valgrind runs stay short. */
#define TEST_ITERATIONS IMAPQ_USERS_MIN_ITERATIONS

static const char sample[] = "# users\n"
			     "\n"
			     "alice roles=consumer:jobs*,producer:in/* password=" SECRET_HASH
			     " tokens=" ALICE_TOKEN_HASH "\r\n"
			     "  bob\troles=admin password=" SECRET_HASH "\n"
			     "carol roles=producer\n";

static struct users *parse_ok(const char *text)
{
	struct users *u = NULL;
	char why[256] = "";
	imapq_err err = users_parse(text, strlen(text), &u, why, sizeof why);
	if (err != IMAPQ_OK)
		fail_msg("parse failed: %s", why);
	assert_int_equal(users_set_iterations(u, TEST_ITERATIONS), IMAPQ_OK);
	return u;
}

static void test_parse_sample(void **state)
{
	(void)state;
	struct users *u = parse_ok(sample);
	const struct access *a = NULL;
	assert_int_equal(users_count(u), 3);
	assert_string_equal(users_name_at(u, 0), "alice");
	assert_string_equal(users_name_at(u, 2), "carol");
	assert_int_equal(users_verify_password(u, "alice", "secret", &a), IMAPQ_OK);
	assert_ptr_equal(a, users_access(u, "alice"));
	assert_int_equal(access_roles(a, "jobs"), ACCESS_CONSUMER);
	assert_int_equal(access_roles(a, "in/x"), ACCESS_PRODUCER);
	assert_int_equal(access_roles(a, "other"), 0);
	assert_int_equal(users_verify_password(u, "bob", "secret", &a), IMAPQ_OK);
	assert_int_equal(access_roles(a, "anything"), ACCESS_ALL);
	const char *name = NULL;
	assert_int_equal(users_verify_token(u, "tok-alice", &a, &name), IMAPQ_OK);
	assert_string_equal(name, "alice");
	users_destroy(&u);
	assert_null(u);
}

static void test_wrong_password(void **state)
{
	(void)state;
	struct users *u = parse_ok(sample);
	const struct access *a = NULL;
	assert_int_equal(users_verify_password(u, "alice", "Secret", &a), IMAPQ_E_AUTH);
	assert_int_equal(users_verify_password(u, "alice", "", &a), IMAPQ_E_AUTH);
	assert_int_equal(users_verify_password(u, "alice", "secret ", &a), IMAPQ_E_AUTH);
	/* Unknown users and users without a password fail like a wrong password. */
	assert_int_equal(users_verify_password(u, "mallory", "secret", &a), IMAPQ_E_AUTH);
	assert_int_equal(users_verify_password(u, "carol", "", &a), IMAPQ_E_AUTH);
	assert_null(a);
	assert_int_equal(users_verify_token(u, "tok-alicE", &a, NULL), IMAPQ_E_AUTH);
	assert_int_equal(users_verify_token(u, "", &a, NULL), IMAPQ_E_AUTH);
	assert_null(a);
	users_destroy(&u);
}

/* Each malformed line is refused with its number in the reason. */
static void test_malformed(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		const char *why;
	} cases[] = {
	    {"alice\n", "line 1: user 'alice' has no roles="},
	    {"# c\nal ice roles=admin\n", "line 2: unknown or repeated field 'ice'"},
	    {"al/ice roles=admin\n", "line 1: invalid user name"},
	    {"alice roles=root\n", "line 1: bad roles 'root'"},
	    {"alice roles=consumer:\n", "line 1: bad roles"},
	    {"alice roles=consumer,\n", "line 1: bad roles"},
	    {"alice roles=admin roles=admin\n", "line 1: unknown or repeated field 'roles=admin'"},
	    {"alice roles=admin color=red\n", "line 1: unknown or repeated field 'color=red'"},
	    {"alice roles=admin\nalice roles=admin\n", "line 2: user 'alice' appears twice"},
	    {"alice roles=admin password=secret\n", "line 1: password is not"},
	    {"alice roles=admin password=$pbkdf2-sha256$i=10$MDEyMzQ1Njc4OWFiY2RlZg==$"
	     "tiKWHy4FAGCWE8gn6GtKhaxD2OeeAUUWXFT/p1aaNl8=\n",
	     "line 1: password is not"},
	    {"alice roles=admin password=$pbkdf2-sha256$i=1000$MDEy$"
	     "tiKWHy4FAGCWE8gn6GtKhaxD2OeeAUUWXFT/p1aaNl8=\n",
	     "line 1: password is not"},
	    {"alice roles=admin tokens=$sha256$abc\n", "line 1: tokens are not"},
	    {"alice roles=admin tokens=" ALICE_TOKEN_HASH ",\n", "line 1: tokens are not"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct users *u = NULL;
		char why[256] = "";
		imapq_err err =
		    users_parse(cases[i].text, strlen(cases[i].text), &u, why, sizeof why);
		if (err != IMAPQ_E_INVALID || strncmp(why, cases[i].why, strlen(cases[i].why)) != 0)
			fail_msg("case %zu: err %d, why '%s'", i, err, why);
		assert_null(u);
	}
	/* A NUL byte and an over-long line. */
	struct users *u = NULL;
	char why[256];
	assert_int_equal(users_parse("alice roles=admin\0x\n", 20, &u, why, sizeof why),
			 IMAPQ_E_INVALID);
	assert_string_equal(why, "line 1: holds a NUL byte");
	size_t len = IMAPQ_USERS_MAX_LINE + 10;
	char *longline = malloc(len + 1);
	assert_non_null(longline);
	memset(longline, 'a', len);
	longline[len] = '\0';
	assert_int_equal(users_parse(longline, len, &u, why, sizeof why), IMAPQ_E_INVALID);
	assert_non_null(strstr(why, "longer than"));
	free(longline);
	/* Comments and blank lines alone make an empty table. */
	u = parse_ok("# only\n\n   \n\t# indented comment\n");
	assert_int_equal(users_count(u), 0);
	users_destroy(&u);
}

static void test_hash_round_trip(void **state)
{
	(void)state;
	char h1[USERS_HASH_MAX], h2[USERS_HASH_MAX];
	assert_int_equal(users_hash_password("pässword", TEST_ITERATIONS, h1), IMAPQ_OK);
	assert_int_equal(users_hash_password("pässword", TEST_ITERATIONS, h2), IMAPQ_OK);
	assert_true(strncmp(h1, "$pbkdf2-sha256$i=1000$", 22) == 0);
	assert_string_not_equal(h1, h2); /* a fresh salt each time */
	assert_int_equal(users_check_hash(h1, "pässword"), IMAPQ_OK);
	assert_int_equal(users_check_hash(h2, "pässword"), IMAPQ_OK);
	assert_int_equal(users_check_hash(h1, "password"), IMAPQ_E_AUTH);
	assert_int_equal(users_check_hash(SECRET_HASH, "secret"), IMAPQ_OK);
	assert_int_equal(users_check_hash("$pbkdf2-sha1$i=1000$a$b", "x"), IMAPQ_E_INVALID);
	assert_int_equal(users_check_hash("", "x"), IMAPQ_E_INVALID);
	/* A changed byte in the stored key fails; a truncated one is malformed. The changed
	 * character is one of a full base64 group: the last ones also carry padding bits. */
	char bad[USERS_HASH_MAX];
	strcpy(bad, h1);
	size_t n = strlen(bad);
	bad[n - 6] = bad[n - 6] == 'A' ? 'B' : 'A';
	assert_int_equal(users_check_hash(bad, "pässword"), IMAPQ_E_AUTH);
	bad[n - 4] = '\0';
	assert_int_equal(users_check_hash(bad, "pässword"), IMAPQ_E_INVALID);
	assert_int_equal(users_hash_password("x", 10, h1), IMAPQ_E_INVALID);
}

static void test_changes_and_tokens(void **state)
{
	(void)state;
	struct users *u;
	const struct access *a = NULL;
	assert_int_equal(users_create(&u), IMAPQ_OK);
	assert_int_equal(users_set_iterations(u, 999), IMAPQ_E_INVALID);
	assert_int_equal(users_set_iterations(u, TEST_ITERATIONS), IMAPQ_OK);
	assert_int_equal(users_add(u, "w1", "consumer:jobs*", "pw1"), IMAPQ_OK);
	assert_int_equal(users_add(u, "w1", "admin", "pw"), IMAPQ_E_EXISTS);
	assert_int_equal(users_add(u, "w 2", "admin", "pw"), IMAPQ_E_INVALID);
	assert_int_equal(users_add(u, "w2", "boss", "pw"), IMAPQ_E_INVALID);
	assert_int_equal(users_add(u, "bot", "producer", NULL), IMAPQ_OK);
	assert_int_equal(users_count(u), 2);
	assert_int_equal(users_verify_password(u, "bot", "", &a), IMAPQ_E_AUTH);

	assert_int_equal(users_set_password(u, "w1", "pw2"), IMAPQ_OK);
	assert_int_equal(users_verify_password(u, "w1", "pw1", &a), IMAPQ_E_AUTH);
	assert_int_equal(users_verify_password(u, "w1", "pw2", &a), IMAPQ_OK);
	assert_int_equal(users_set_password(u, "nobody", "x"), IMAPQ_E_NONEXISTENT);
	assert_int_equal(users_set_grants(u, "w1", "admin:jobs"), IMAPQ_OK);
	assert_int_equal(access_roles(users_access(u, "w1"), "jobs"), ACCESS_ALL);
	assert_int_equal(access_roles(users_access(u, "w1"), "jobs2"), 0);
	assert_int_equal(users_set_grants(u, "w1", "admin:"), IMAPQ_E_INVALID);
	assert_int_equal(access_roles(users_access(u, "w1"), "jobs"), ACCESS_ALL);

	char t1[USERS_TOKEN_MAX], t2[USERS_TOKEN_MAX];
	assert_int_equal(users_issue_token(u, "bot", t1), IMAPQ_OK);
	assert_int_equal(users_issue_token(u, "bot", t2), IMAPQ_OK);
	assert_int_equal(strlen(t1), 43);
	assert_null(strpbrk(t1, "+/="));
	assert_string_not_equal(t1, t2);
	const char *name;
	assert_int_equal(users_verify_token(u, t1, &a, &name), IMAPQ_OK);
	assert_string_equal(name, "bot");
	assert_ptr_equal(a, users_access(u, "bot"));
	assert_int_equal(users_verify_token(u, t2, &a, &name), IMAPQ_OK);
	assert_int_equal(users_issue_token(u, "nobody", t1), IMAPQ_E_NONEXISTENT);
	for (int i = 2; i < IMAPQ_USERS_MAX_TOKENS; i++)
		assert_int_equal(users_issue_token(u, "bot", t1), IMAPQ_OK);
	assert_int_equal(users_issue_token(u, "bot", t1), IMAPQ_E_LIMIT);
	assert_int_equal(users_revoke_tokens(u, "bot"), IMAPQ_OK);
	assert_int_equal(users_verify_token(u, t2, &a, &name), IMAPQ_E_AUTH);

	assert_int_equal(users_remove(u, "w1"), IMAPQ_OK);
	assert_int_equal(users_remove(u, "w1"), IMAPQ_E_NONEXISTENT);
	assert_null(users_access(u, "w1"));
	assert_int_equal(users_count(u), 1);
	users_destroy(&u);
}

static void test_pattern_match(void **state)
{
	(void)state;
	static const struct {
		const char *pattern, *name;
		bool match;
	} cases[] = {
	    {"*", "", true},
	    {"*", "a/b/c", true},
	    {"jobs", "jobs", true},
	    {"jobs", "jobs2", false},
	    {"jobs", "job", false},
	    {"jobs*", "jobs", true},
	    {"jobs*", "jobs2", true},
	    {"jobs*", "jobs/a/b", true},
	    {"jobs*", "job", false},
	    {"jobs/*", "jobs", false},
	    {"jobs/*", "jobs/", true},
	    {"jobs/*", "jobs/x", true},
	    {"*/dead", "a/dead", true},
	    {"a*b*c", "abc", true},
	    {"a*b*c", "aXbYc", true},
	    {"a*b*c", "acb", false},
	    {"*a", "aaa", true},
	    {"*a", "aab", false},
	    {"**", "x", true},
	    {"a**", "a", true},
	    {"*ab", "aab", true},
	    {"x*y", "xy", true},
	    {"x*y", "xyz", false},
	    {"INBOX", "inbox", false},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		if (access_pattern_match(cases[i].pattern, cases[i].name) != cases[i].match)
			fail_msg("'%s' vs '%s'", cases[i].pattern, cases[i].name);
	}
}

static void test_access_rules(void **state)
{
	(void)state;
	struct access *a;
	assert_int_equal(access_create(&a), IMAPQ_OK);
	assert_int_equal(access_roles(a, "jobs"), 0);
	assert_int_equal(access_add_list(a, "consumer:jobs,producer:in*"), IMAPQ_OK);
	/* The dead letters of a queue follow the queue's patterns, and only one suffix is cut. */
	assert_int_equal(access_roles(a, "jobs/dead"), ACCESS_CONSUMER);
	assert_int_equal(access_roles(a, "jobs/dead/dead"), 0);
	assert_int_equal(access_roles(a, "/dead"), 0);
	assert_int_equal(access_roles(a, "dead"), 0);
	assert_int_equal(access_roles(a, "inbound/dead"), ACCESS_PRODUCER);
	assert_int_equal(access_check(a, "jobs", ACCESS_CONSUMER), IMAPQ_OK);
	assert_int_equal(access_check(a, "jobs", 0), IMAPQ_OK);
	assert_int_equal(access_check(a, "jobs", ACCESS_PRODUCER), IMAPQ_E_NOPERM);
	assert_int_equal(access_check(a, "secret", ACCESS_PRODUCER), IMAPQ_E_NONEXISTENT);
	assert_int_equal(access_check(a, "secret", 0), IMAPQ_E_NONEXISTENT);
	assert_int_equal(access_global_roles(a), 0);
	assert_int_equal(access_add(a, "producer"), IMAPQ_OK);
	assert_int_equal(access_global_roles(a), ACCESS_PRODUCER);
	assert_int_equal(access_roles(a, "secret"), ACCESS_PRODUCER);
	assert_int_equal(access_add(a, "admin:jobs"), IMAPQ_OK);
	assert_int_equal(access_roles(a, "jobs"), ACCESS_ALL);
	assert_int_equal(access_global_roles(a), ACCESS_PRODUCER);
	assert_int_equal(access_add(a, "admin:**"), IMAPQ_OK);
	assert_int_equal(access_global_roles(a), ACCESS_ALL);

	char text[256];
	assert_int_equal(access_format(a, text, sizeof text), IMAPQ_OK);
	assert_string_equal(text, "consumer:jobs,producer:in*,producer,admin:jobs,admin:**");
	assert_int_equal(access_format(a, text, 10), IMAPQ_E_TOOBIG);
	/* Refused grants leave the set as it was. */
	const char *bad[] = {"",      "root",	  "consumer:",	 "consumer:a b", "consumer:\x01",
			     ":jobs", "Consumer", "admin:jobs\t"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(access_add(a, bad[i]), IMAPQ_E_INVALID);
	assert_int_equal(access_format(a, text, sizeof text), IMAPQ_OK);
	assert_string_equal(text, "consumer:jobs,producer:in*,producer,admin:jobs,admin:**");
	char longpat[IMAPQ_MAX_MAILBOX_NAME + 16] = "consumer:";
	memset(longpat + 9, 'x', IMAPQ_MAX_MAILBOX_NAME + 1);
	longpat[9 + IMAPQ_MAX_MAILBOX_NAME + 1] = '\0';
	assert_int_equal(access_add(a, longpat), IMAPQ_E_INVALID);
	access_destroy(&a);
	assert_null(a);
	/* No access set stands for every role. */
	assert_int_equal(access_roles(NULL, "x"), ACCESS_ALL);
	assert_int_equal(access_check(NULL, "x", ACCESS_ADMIN), IMAPQ_OK);

	assert_int_equal(access_create(&a), IMAPQ_OK);
	for (int i = 0; i < IMAPQ_ACCESS_MAX_GRANTS; i++)
		assert_int_equal(access_add(a, "consumer:q*"), IMAPQ_OK);
	assert_int_equal(access_add(a, "consumer:q*"), IMAPQ_E_LIMIT);
	access_destroy(&a);
}

/* Counts the entries of dir other than . and .. */
static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	int n = 0;
	for (struct dirent *e; d != NULL && (e = readdir(d)) != NULL;)
		n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
	if (d != NULL)
		closedir(d);
	return n;
}

static void test_atomic_rewrite(void **state)
{
	(void)state;
	char dir[TMPDIR_LEN], path[TMPDIR_LEN + 16];
	assert_true(tmpdir_make(dir));
	snprintf(path, sizeof path, "%s/users", dir);
	char why[256] = "";
	struct users *u = NULL;
	assert_int_equal(users_load(path, &u, why, sizeof why), IMAPQ_E_NONEXISTENT);

	/* An existing file with loose permissions is replaced by a 0600 one. */
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(sample, f);
	fclose(f);
	chmod(path, 0644);
	assert_int_equal(users_load(path, &u, why, sizeof why), IMAPQ_OK);
	assert_int_equal(users_set_iterations(u, TEST_ITERATIONS), IMAPQ_OK);
	char token[USERS_TOKEN_MAX];
	assert_int_equal(users_issue_token(u, "carol", token), IMAPQ_OK);
	assert_int_equal(users_add(u, "dave", "consumer:a*,producer", "pw"), IMAPQ_OK);
	assert_int_equal(users_save(u, path), IMAPQ_OK);
	users_destroy(&u);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(count_entries(dir), 1); /* no temporary file left behind */

	const struct access *a = NULL;
	assert_int_equal(users_load(path, &u, why, sizeof why), IMAPQ_OK);
	assert_int_equal(users_count(u), 4);
	assert_int_equal(users_verify_password(u, "alice", "secret", &a), IMAPQ_OK);
	assert_int_equal(users_verify_password(u, "dave", "pw", &a), IMAPQ_OK);
	assert_int_equal(access_roles(a, "abc"), ACCESS_CONSUMER | ACCESS_PRODUCER);
	assert_int_equal(users_verify_token(u, "tok-alice", &a, NULL), IMAPQ_OK);
	assert_int_equal(users_verify_token(u, token, &a, NULL), IMAPQ_OK);
	assert_ptr_equal(a, users_access(u, "carol"));

	/* A folder that does not exist: nothing is written, the error says so. */
	char missing[TMPDIR_LEN + 32];
	snprintf(missing, sizeof missing, "%s/no/users", dir);
	assert_int_equal(users_save(u, missing), IMAPQ_E_IO);
	assert_int_equal(count_entries(dir), 1);
	users_destroy(&u);
	tmpdir_remove(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_sample),       cmocka_unit_test(test_wrong_password),
	    cmocka_unit_test(test_malformed),	       cmocka_unit_test(test_hash_round_trip),
	    cmocka_unit_test(test_changes_and_tokens), cmocka_unit_test(test_pattern_match),
	    cmocka_unit_test(test_access_rules),       cmocka_unit_test(test_atomic_rewrite),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
