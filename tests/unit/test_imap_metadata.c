/* METADATA (RFC 5464) and per-message ANNOTATE (RFC 5257) over the in-process server: queue
 * settings read with their defaults and validated when set, entries with DEPTH and MAXSIZE, the
 * refusals (NOPRIVATE, TOOMANY, MAXSIZE, read-only server entries), and the virtual message
 * entries workers use: attempts, due, lease renewal and release with a delay. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "imap/base/limits.h"
#include "tests/unit/imap_harness.h"

#define LEASE_KEY    "/shared/vendor/imapq/lease-seconds"
#define ATTEMPTS_KEY "/shared/vendor/imapq/max-attempts"

/* Runs a command and returns its only untagged line starting with prefix (NULL when none); the
 * tagged reply must start with want. The caller frees the result. */
static char *one_line(struct conn *c, const char *text, const char *want, const char *prefix)
{
	struct lines l = {0};
	command_ok(c, text, want, &l);
	char *found = NULL;
	if (lines_count(&l, prefix) > 1) {
		lines_dump(&l, "untagged");
		fail_msg("more than one line starts with [%s]", prefix);
	}
	int i = lines_find(&l, prefix);
	if (i >= 0) {
		found = l.v[i];
		l.v[i] = strdup("");
	}
	lines_free(&l);
	return found;
}

/* Asserts that a command's tagged reply is exactly want (without its tag). */
static void tagged_is(struct conn *c, const char *text, const char *want)
{
	char *tagged = command(c, text, NULL);
	if (strcmp(tagged, want) != 0)
		fail_msg("%s -> [%s], wanted [%s]", text, tagged, want);
	free(tagged);
}

/* Asserts that the METADATA answer to a command is exactly want (NULL: no METADATA line). */
static void metadata_is(struct conn *c, const char *text, const char *want)
{
	char *line = one_line(c, text, "OK", "* METADATA ");
	if (want == NULL && line != NULL)
		fail_msg("%s -> unexpected [%s]", text, line);
	if (want != NULL && (line == NULL || strcmp(line, want) != 0))
		fail_msg("%s -> [%s], wanted [%s]", text, line ? line : "(none)", want);
	free(line);
}

/* Claims uid (whose sequence number is uid too) as a worker does and returns the receipt, the
 * new mod-sequence. */
static uint64_t claim(struct harness *h, struct conn *c, uint32_t uid)
{
	char text[128], prefix[32];
	snprintf(text, sizeof text, "UID STORE %u (UNCHANGEDSINCE %llu) +FLAGS.SILENT ($Claimed)",
		 uid, (unsigned long long)harness_modseq(h, "jobs", uid));
	snprintf(prefix, sizeof prefix, "* %u FETCH ", uid);
	char *line = one_line(c, text, "OK STORE completed", prefix);
	assert_non_null(line);
	uint64_t receipt = line_number(line, "MODSEQ");
	free(line);
	assert_true(receipt > 0);
	return receipt;
}

/* A message's queue fields. */
static struct store_message message(struct harness *h, uint32_t uid)
{
	struct store_message m;
	assert_int_equal(store_message_get(h->store, harness_mailbox(h, "jobs"), uid, &m),
			 IMAPQ_OK);
	return m;
}

/* Asserts that due lies within a second or two of now + seconds. */
static void assert_due_near(uint32_t due, uint32_t seconds)
{
	uint32_t now = (uint32_t)time(NULL);
	if (due + 2 < now + seconds || due > now + seconds + 2)
		fail_msg("due %u, wanted about %u", due, now + seconds);
}

static void test_capability(void **state)
{
	struct conn *c = conn_open(*state);
	char *line = one_line(c, "CAPABILITY", "OK", "* CAPABILITY ");
	assert_non_null(line);
	assert_non_null(strstr(line, " METADATA "));
	assert_non_null(strstr(line, " ANNOTATE-EXPERIMENT-1 "));
	free(line);
}

static void test_settings_defaults_and_set(void **state)
{
	struct harness *h = *state;
	harness_mailbox(h, "jobs");
	struct conn *c = conn_open(h);
	metadata_is(c, "GETMETADATA jobs (" LEASE_KEY " " ATTEMPTS_KEY ")",
		    "* METADATA jobs (" LEASE_KEY " \"30\" " ATTEMPTS_KEY " \"5\")");
	tagged_is(c, "SETMETADATA jobs (" LEASE_KEY " \"60\" " ATTEMPTS_KEY " {1+}\r\n3)",
		  "OK SETMETADATA completed");
	struct store_mailbox_status st = harness_status(h, "jobs");
	assert_int_equal(st.lease, 60);
	assert_int_equal(st.max_attempts, 3);
	metadata_is(c, "GETMETADATA jobs " LEASE_KEY, "* METADATA jobs (" LEASE_KEY " \"60\")");
	/* Entry names compare without regard to case. */
	metadata_is(c, "GETMETADATA jobs /SHARED/vendor/imapq/LEASE-seconds",
		    "* METADATA jobs (" LEASE_KEY " \"60\")");

	/* Bad values are refused with NO and change nothing, even beside a good one. */
	const char *bad[] = {"\"0\"", "\"abc\"", "\"31536001\"", "\"\"", "\"007\"", "\"-1\""};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char text[160];
		snprintf(text, sizeof text, "SETMETADATA jobs (" ATTEMPTS_KEY " \"9\" %s %s)",
			 LEASE_KEY, bad[i]);
		command_ok(c, text, "NO [CANNOT]", NULL);
	}
	st = harness_status(h, "jobs");
	assert_int_equal(st.lease, 60);
	assert_int_equal(st.max_attempts, 3);
	/* Values are strings: an atom is a syntax error. */
	command_ok(c, "SETMETADATA jobs (" LEASE_KEY " 60)", "BAD", NULL);

	/* NIL removes the setting, which reads as its default again. */
	tagged_is(c, "SETMETADATA jobs (" LEASE_KEY " NIL)", "OK SETMETADATA completed");
	assert_int_equal(harness_status(h, "jobs").lease, STORE_DEFAULT_LEASE);
	metadata_is(c, "GETMETADATA jobs " LEASE_KEY, "* METADATA jobs (" LEASE_KEY " \"30\")");
}

static void test_entries_depth_and_maxsize(void **state)
{
	struct harness *h = *state;
	harness_mailbox(h, "jobs");
	struct conn *c = conn_open(h);
	tagged_is(c,
		  "SETMETADATA jobs (/shared/comment \"night batch\" /shared/vendor/acme/a \"1\" "
		  "/shared/vendor/acme/a/b \"2\")",
		  "OK SETMETADATA completed");
	metadata_is(c, "GETMETADATA jobs /shared/comment",
		    "* METADATA jobs (/shared/comment \"night batch\")");
	/* Without DEPTH only the named entry; a missing one is simply not listed. */
	metadata_is(c, "GETMETADATA jobs /shared/vendor/acme", NULL);
	metadata_is(c, "GETMETADATA jobs (/shared/nothing /shared/comment)",
		    "* METADATA jobs (/shared/comment \"night batch\")");
	metadata_is(c, "GETMETADATA (DEPTH 1) jobs /shared/vendor/acme",
		    "* METADATA jobs (/shared/vendor/acme/a \"1\")");
	metadata_is(c, "GETMETADATA (DEPTH infinity) jobs /shared/vendor/acme",
		    "* METADATA jobs (/shared/vendor/acme/a \"1\" /shared/vendor/acme/a/b \"2\")");
	metadata_is(c, "GETMETADATA (DEPTH 1) jobs /shared",
		    "* METADATA jobs (/shared/comment \"night batch\")");
	/* The whole tree: stored entries and the settings, sorted by name. */
	metadata_is(c, "GETMETADATA (DEPTH infinity) jobs /shared",
		    "* METADATA jobs (/shared/comment \"night batch\" /shared/vendor/acme/a \"1\" "
		    "/shared/vendor/acme/a/b \"2\" /shared/vendor/imapq/dead-retention-seconds "
		    "\"604800\" /shared/vendor/imapq/lease-seconds \"30\" "
		    "/shared/vendor/imapq/max-attempts \"5\" "
		    "/shared/vendor/imapq/max-messages \"10000000\")");
	metadata_is(c, "GETMETADATA (DEPTH infinity) jobs /private", NULL);

	/* MAXSIZE leaves out longer values and reports the longest one left out. */
	char *line = one_line(c, "GETMETADATA (MAXSIZE 5 DEPTH 1) jobs /shared/vendor/acme", "OK",
			      "* METADATA ");
	assert_string_equal(line, "* METADATA jobs (/shared/vendor/acme/a \"1\")");
	free(line);
	tagged_is(c, "GETMETADATA (MAXSIZE 5) jobs (/shared/comment /shared/vendor/acme/a)",
		  "OK [METADATA LONGENTRIES 11] GETMETADATA completed");
	tagged_is(c, "GETMETADATA (MAXSIZE 11) jobs /shared/comment", "OK GETMETADATA completed");

	/* A value with a line break travels as a literal both ways. */
	tagged_is(c, "SETMETADATA jobs (/shared/comment {5+}\r\na\r\nbc)",
		  "OK SETMETADATA completed");
	metadata_is(c, "GETMETADATA jobs /shared/comment",
		    "* METADATA jobs (/shared/comment {5}\r\na\r\nbc)");
	tagged_is(c, "SETMETADATA jobs (/shared/comment NIL /shared/vendor/acme/a NIL)",
		  "OK SETMETADATA completed");
	metadata_is(c, "GETMETADATA jobs (/shared/comment /shared/vendor/acme/a)", NULL);
}

static void test_syntax_and_refusals(void **state)
{
	struct harness *h = *state;
	harness_mailbox(h, "jobs");
	struct conn *c = conn_open(h);
	const char *bad_get[] = {
	    "GETMETADATA jobs",
	    "GETMETADATA jobs ()",
	    "GETMETADATA jobs /other/comment",
	    "GETMETADATA jobs /shared//comment",
	    "GETMETADATA jobs /shared/comment/",
	    "GETMETADATA jobs /shared/*",
	    "GETMETADATA (DEPTH 2) jobs /shared",
	    "GETMETADATA (MAXSIZE x) jobs /shared",
	    "GETMETADATA (DEPTH 1 DEPTH 1) jobs /shared",
	    "GETMETADATA (COLOR red) jobs /shared",
	    "GETMETADATA (DEPTH) jobs /shared",
	};
	for (size_t i = 0; i < sizeof bad_get / sizeof bad_get[0]; i++)
		command_ok(c, bad_get[i], "BAD", NULL);
	const char *bad_set[] = {
	    "SETMETADATA jobs ()",
	    "SETMETADATA jobs (/shared/comment)",
	    "SETMETADATA jobs /shared/comment \"x\"",
	    "SETMETADATA jobs (/shared \"x\")",
	    "SETMETADATA jobs (comment \"x\")",
	    "SETMETADATA jobs (/shared/a%b \"x\")",
	};
	for (size_t i = 0; i < sizeof bad_set / sizeof bad_set[0]; i++)
		command_ok(c, bad_set[i], "BAD", NULL);

	command_ok(c, "GETMETADATA nosuch /shared/comment", "NO [NONEXISTENT]", NULL);
	command_ok(c, "SETMETADATA nosuch (/shared/comment \"x\")", "NO [NONEXISTENT]", NULL);
	command_ok(c, "SETMETADATA jobs (/private/comment \"mine\")", "NO [METADATA NOPRIVATE]",
		   NULL);
	metadata_is(c, "GETMETADATA jobs /private/comment", NULL);

	/* A value past the limit: refused with the limit, before the store sees it. */
	size_t big = IMAPQ_MAX_ANNOTATION_VALUE + 1;
	char *text = malloc(big + 64);
	assert_non_null(text);
	int k = snprintf(text, big + 64, "SETMETADATA jobs (/shared/comment {%zu+}\r\n", big);
	memset(text + k, 'v', big);
	strcpy(text + k + big, ")");
	command_ok(c, text, "NO [METADATA MAXSIZE 4096]", NULL);
	free(text);

	/* Entries are counted per mailbox. */
	char *last = NULL;
	for (unsigned i = 0; i <= IMAPQ_MAX_ANNOTATIONS; i++) {
		char cmd[96];
		snprintf(cmd, sizeof cmd, "SETMETADATA jobs (/shared/vendor/acme/e%u \"x\")", i);
		free(last);
		last = command(c, cmd, NULL);
		if (strncmp(last, "OK", 2) != 0)
			break;
	}
	assert_non_null(last);
	assert_tagged(last, "NO [METADATA TOOMANY]");
	free(last);
	/* Changing an existing entry still works at the limit. */
	tagged_is(c, "SETMETADATA jobs (/shared/vendor/acme/e0 \"y\")", "OK SETMETADATA completed");
	conn_close(&c);
}

static void test_server_entries(void **state)
{
	struct conn *c = conn_open(*state);
	metadata_is(c, "GETMETADATA \"\" /shared/comment",
		    "* METADATA \"\" (/shared/comment \"imapq message queue\")");
	metadata_is(c, "GETMETADATA (DEPTH infinity) \"\" /shared/vendor/imapq",
		    "* METADATA \"\" (/shared/vendor/imapq/dead-retention-seconds \"604800\" "
		    "/shared/vendor/imapq/lease-seconds \"30\" /shared/vendor/imapq/max-attempts "
		    "\"5\" /shared/vendor/imapq/max-messages \"10000000\")");
	command_ok(c, "SETMETADATA \"\" (/shared/comment \"x\")", "NO [NOPERM]", NULL);
	/* Not before login. */
	struct conn *anon = conn_open_raw(*state, NULL);
	command_ok(anon, "GETMETADATA \"\" /shared/comment", "BAD", NULL);
}

static void test_fetch_annotation(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "jobs", 2);
	struct conn *c = conn_select(h, "jobs", NULL);
	char *line = one_line(c, "UID FETCH 1 (ANNOTATION (/vendor/imapq/attempts value.shared))",
			      "OK", "* 1 FETCH");
	assert_string_equal(
	    line, "* 1 FETCH (UID 1 ANNOTATION (/vendor/imapq/attempts (value.shared \"0\")))");
	free(line);
	claim(h, c, 1);
	line = one_line(c, "UID FETCH 1 (ANNOTATION (/vendor/imapq/attempts value.shared))", "OK",
			"* 1 FETCH");
	assert_string_equal(
	    line, "* 1 FETCH (UID 1 ANNOTATION (/vendor/imapq/attempts (value.shared \"1\")))");
	free(line);

	/* due: the lease end while claimed, NIL when there is none. */
	struct store_message m = message(h, 1);
	assert_due_near(m.due, STORE_DEFAULT_LEASE);
	char want[256];
	snprintf(want, sizeof want,
		 "* 1 FETCH (UID 1 ANNOTATION (/vendor/imapq/due (value.shared \"%u\")))", m.due);
	line = one_line(c, "UID FETCH 1 (ANNOTATION (/vendor/imapq/due value.shared))", "OK",
			"* 1 FETCH");
	assert_string_equal(line, want);
	free(line);
	line = one_line(c, "UID FETCH 2 (ANNOTATION (/vendor/imapq/due value.shared))", "OK",
			"* 2 FETCH");
	assert_string_equal(line,
			    "* 2 FETCH (UID 2 ANNOTATION (/vendor/imapq/due (value.shared NIL)))");
	free(line);

	/* Wildcards, "value" (both kinds), sizes and an entry that is not one of ours. */
	line = one_line(c, "FETCH 2 (FLAGS ANNOTATION (/vendor/imapq/* (value size.shared)))", "OK",
			"* 2 FETCH");
	assert_string_equal(line, "* 2 FETCH (FLAGS (\\Recent) ANNOTATION (/vendor/imapq/attempts "
				  "(value.priv NIL value.shared \"0\" size.shared \"1\") "
				  "/vendor/imapq/due (value.priv NIL value.shared NIL size.shared "
				  "\"0\")))");
	free(line);
	line = one_line(c, "FETCH 2 (ANNOTATION ((/comment /vendor/imapq/%ttempts) value.shared))",
			"OK", "* 2 FETCH");
	assert_string_equal(line, "* 2 FETCH (ANNOTATION (/comment (value.shared NIL) "
				  "/vendor/imapq/attempts (value.shared \"0\")))");
	free(line);

	const char *bad[] = {
	    "FETCH 1 (ANNOTATION (/comment))",
	    "FETCH 1 (ANNOTATION (/comment value.other))",
	    "FETCH 1 (ANNOTATION (() value))",
	    "FETCH 1 (ANNOTATION (/comment value) ANNOTATION (/x value))",
	    "FETCH 1 (ANNOTATION)",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		command_ok(c, bad[i], "BAD", NULL);
}

static void test_store_lease(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "jobs", 2);
	struct conn *c = conn_select(h, "jobs", NULL);
	uint64_t receipt = claim(h, c, 1);
	char text[160], want[96];

	/* Renewal moves the due time and gives a new receipt in the echo. */
	snprintf(text, sizeof text,
		 "UID STORE 1 (UNCHANGEDSINCE %llu) ANNOTATION (/vendor/imapq/lease (value.shared "
		 "\"600\"))",
		 (unsigned long long)receipt);
	char *line = one_line(c, text, "OK STORE completed", "* 1 FETCH");
	assert_non_null(line);
	struct store_message m = message(h, 1);
	assert_due_near(m.due, 600);
	assert_true(m.modseq > receipt);
	snprintf(want, sizeof want, "* 1 FETCH (UID 1 MODSEQ (%llu))",
		 (unsigned long long)m.modseq);
	assert_string_equal(line, want);
	free(line);
	assert_int_equal(m.attempts, 1);

	/* The old receipt is stale now: MODIFIED, nothing changes. */
	snprintf(text, sizeof text,
		 "UID STORE 1 (UNCHANGEDSINCE %llu) ANNOTATION (/vendor/imapq/lease (value.shared "
		 "\"5\"))",
		 (unsigned long long)receipt);
	tagged_is(c, text, "OK [MODIFIED 1] Conditional STORE failed");
	assert_int_equal(message(h, 1).due, m.due);
	assert_int_equal(message(h, 1).modseq, m.modseq);

	/* Only a claimed job has a lease. */
	snprintf(text, sizeof text,
		 "UID STORE 2 (UNCHANGEDSINCE %llu) ANNOTATION (/vendor/imapq/lease (value.shared "
		 "\"60\"))",
		 (unsigned long long)harness_modseq(h, "jobs", 2));
	command_ok(c, text, "NO [CANNOT]", NULL);
	assert_int_equal(message(h, 2).due, 0);

	/* Refusals: no receipt, bad values, read-only or unknown entries, private values. */
	command_ok(c, "UID STORE 1 ANNOTATION (/vendor/imapq/lease (value.shared \"60\"))",
		   "NO [CANNOT]", NULL);
	const char *refused[] = {
	    "(/vendor/imapq/lease (value.shared \"0\"))",
	    "(/vendor/imapq/lease (value.shared \"x\"))",
	    "(/vendor/imapq/lease (value.shared NIL))",
	    "(/vendor/imapq/lease (value.priv \"60\"))",
	    "(/vendor/imapq/attempts (value.shared \"0\"))",
	    "(/comment (value.shared \"hello\"))",
	};
	for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
		snprintf(text, sizeof text, "UID STORE 1 (UNCHANGEDSINCE %llu) ANNOTATION %s",
			 (unsigned long long)m.modseq, refused[i]);
		command_ok(c, text, "NO [CANNOT]", NULL);
	}
	command_ok(c, "UID STORE 1 (UNCHANGEDSINCE 99) ANNOTATION (/vendor/imapq/lease)", "BAD",
		   NULL);
	command_ok(c, "UID STORE 1 (UNCHANGEDSINCE 99) ANNOTATION", "BAD", NULL);
	assert_int_equal(message(h, 1).modseq, m.modseq);

	/* Read-only sessions change nothing. */
	struct conn *ro = conn_open(h);
	command_ok(ro, "EXAMINE jobs", "OK", NULL);
	snprintf(text, sizeof text,
		 "UID STORE 1 (UNCHANGEDSINCE %llu) ANNOTATION (/vendor/imapq/lease (value.shared "
		 "\"60\"))",
		 (unsigned long long)m.modseq);
	command_ok(ro, text, "NO [CANNOT]", NULL);
}

static void test_store_delay(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "jobs", 2);
	struct conn *c = conn_select(h, "jobs", NULL);
	uint64_t r1 = claim(h, c, 1);
	uint64_t r2 = claim(h, c, 2);
	uint64_t claimed = harness_keyword(h, "jobs", "$Claimed");
	char text[160];

	/* A stale receipt changes nothing. */
	snprintf(text, sizeof text,
		 "UID STORE 1 (UNCHANGEDSINCE %llu) ANNOTATION (/vendor/imapq/delay (value.shared "
		 "\"30\"))",
		 (unsigned long long)(r1 - 1));
	tagged_is(c, text, "OK [MODIFIED 1] Conditional STORE failed");
	assert_true(message(h, 1).flags & claimed);

	/* Release with a delay: -$Claimed +$Delayed, due = now + 30, a new mod-sequence. */
	snprintf(text, sizeof text,
		 "UID STORE 1 (UNCHANGEDSINCE %llu) ANNOTATION (/vendor/imapq/delay (value.shared "
		 "\"30\"))",
		 (unsigned long long)r1);
	char *line = one_line(c, text, "OK STORE completed", "* 1 FETCH");
	assert_non_null(line);
	free(line);
	uint64_t delayed = harness_keyword(h, "jobs", "$Delayed");
	struct store_message m = message(h, 1);
	assert_false(m.flags & claimed);
	assert_true(m.flags & delayed);
	assert_due_near(m.due, 30);
	assert_true(m.modseq > r1);

	/* Delay 0 releases at once: neither keyword, no due time. */
	snprintf(text, sizeof text,
		 "STORE 2 (UNCHANGEDSINCE %llu) ANNOTATION (/vendor/imapq/delay (value.shared "
		 "\"0\"))",
		 (unsigned long long)r2);
	line = one_line(c, text, "OK STORE completed", "* 2 FETCH");
	assert_non_null(line);
	free(line);
	m = message(h, 2);
	assert_false(m.flags & (claimed | delayed));
	assert_int_equal(m.due, 0);
	assert_int_equal(m.attempts, 1);

	/* Released jobs are no longer claimed, so a second release is refused. */
	snprintf(text, sizeof text,
		 "UID STORE 2 (UNCHANGEDSINCE %llu) ANNOTATION (/vendor/imapq/delay (value.shared "
		 "\"0\"))",
		 (unsigned long long)m.modseq);
	command_ok(c, text, "NO [CANNOT]", NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_capability, harness_setup, harness_teardown),
	    cmocka_unit_test_setup_teardown(test_settings_defaults_and_set, harness_setup,
					    harness_teardown),
	    cmocka_unit_test_setup_teardown(test_entries_depth_and_maxsize, harness_setup,
					    harness_teardown),
	    cmocka_unit_test_setup_teardown(test_syntax_and_refusals, harness_setup,
					    harness_teardown),
	    cmocka_unit_test_setup_teardown(test_server_entries, harness_setup, harness_teardown),
	    cmocka_unit_test_setup_teardown(test_fetch_annotation, harness_setup, harness_teardown),
	    cmocka_unit_test_setup_teardown(test_store_lease, harness_setup, harness_teardown),
	    cmocka_unit_test_setup_teardown(test_store_delay, harness_setup, harness_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
