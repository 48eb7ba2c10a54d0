/* The IMAP server in process: every command of the command table with its success path and its
 * error paths (wrong state, missing, extra or malformed arguments, nonexistent and read-only
 * mailboxes, bad sequence sets, unknown items), plus pipelining, split writes, literals, the
 * deferral of expunge responses and the claim protocol of DESIGN.md. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "imap/base/limits.h"
#include "tests/unit/imap_harness.h"

/* The capability list the server announces before login on loopback. */
#define CAPS                                                                                       \
	"IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE UNSELECT UIDPLUS ESEARCH MOVE "       \
	"CONDSTORE QRESYNC METADATA ANNOTATE-EXPERIMENT-1 APPENDLIMIT=67108864"

/* The list after login: quotas are per mailbox, offered once there is a user. */
#define CAPS_AUTH CAPS " QUOTA QUOTA=RES-MESSAGE QUOTASET"

/* "\0u\0p" in base64, the SASL PLAIN response of the test account. */
#define PLAIN_UP "AHUAcA=="

/* Sends an APPEND with a synchronising literal, waiting for the continuation; returns the tagged
 * reply without its tag. */
static char *append_sync(struct conn *c, const char *args, const char *body)
{
	char line[512];
	snprintf(line, sizeof line, "ap APPEND %s {%zu}", args, strlen(body));
	send_line(c, line);
	char *cont = conn_line(c);
	if (cont[0] != '+')
		return cont; /* refused before the literal */
	free(cont);
	send_raw(c, body, strlen(body));
	send_raw(c, "\r\n", 2);
	char *tagged = expect(c, "ap", NULL);
	memmove(tagged, tagged + 3, strlen(tagged + 3) + 1);
	return tagged;
}

static void test_greeting_and_capability(void **state)
{
	struct harness *h = *state;
	char *greeting;
	struct conn *c = conn_open_raw(h, &greeting);
	assert_string_equal(greeting, "* OK [CAPABILITY " CAPS " AUTH=PLAIN] imapq ready");
	free(greeting);
	struct lines u = {0};
	command_ok(c, "CAPABILITY", "OK CAPABILITY completed", &u);
	assert_int_equal(u.n, 1);
	assert_string_equal(u.v[0], "* CAPABILITY " CAPS " AUTH=PLAIN");
	lines_free(&u);
	command_ok(c, "CAPABILITY now", "BAD Too many arguments", NULL);
	/* After login the mechanisms are no longer offered. */
	command_ok(c, "LOGIN u p", "OK", &u);
	assert_line(&u, "* CAPABILITY " CAPS_AUTH);
	lines_free(&u);
	command_ok(c, "CAPABILITY", "OK", &u);
	assert_string_equal(u.v[0], "* CAPABILITY " CAPS_AUTH);
	lines_free(&u);
	conn_close(&c);
}

static void test_noop_any_state(void **state)
{
	struct harness *h = *state;
	struct conn *c = conn_open_raw(h, NULL);
	command_ok(c, "NOOP", "OK NOOP completed", NULL);
	command_ok(c, "NOOP 1", "BAD Too many arguments", NULL);
	command_ok(c, "LOGIN u p", "OK", NULL);
	command_ok(c, "NOOP", "OK", NULL);
	command_ok(c, "SELECT INBOX", "OK", NULL);
	command_ok(c, "NOOP", "OK", NULL);
	conn_close(&c);
}

static void test_logout(void **state)
{
	struct harness *h = *state;
	struct conn *c = conn_open_raw(h, NULL);
	command_ok(c, "LOGOUT now", "BAD Too many arguments", NULL);
	struct lines u = {0};
	command_ok(c, "LOGOUT", "OK LOGOUT completed", &u);
	assert_int_equal(u.n, 1);
	assert_string_equal(u.v[0], "* BYE Logging out");
	lines_free(&u);
	assert_true(conn_closed(c));
	conn_close(&c);
	/* From the selected state too. */
	c = conn_select(h, "INBOX", NULL);
	command_ok(c, "LOGOUT", "OK", NULL);
	assert_true(conn_closed(c));
	conn_close(&c);
}

static void test_id(void **state)
{
	struct harness *h = *state;
	struct conn *c = conn_open_raw(h, NULL);
	struct lines u = {0};
	command_ok(c, "ID NIL", "OK ID completed", &u);
	assert_line(&u, "* ID (\"name\" \"imapq\" \"version\" \"0.1.0\")");
	lines_free(&u);
	command_ok(c, "ID (\"name\" \"client\" \"os\" NIL)", "OK", NULL);
	command_ok(c, "ID (\"name\")", "BAD ID takes field/value pairs", NULL);
	command_ok(c, "ID name", "BAD ID takes a list or NIL", NULL);
	command_ok(c, "ID", "BAD Missing arguments", NULL);
	command_ok(c, "ID NIL NIL", "BAD Too many arguments", NULL);
	conn_close(&c);
}

static void test_starttls(void **state)
{
	struct harness *h = *state;
	struct conn *c = conn_open_raw(h, NULL);
	command_ok(c, "STARTTLS", "NO [UNAVAILABLE]", NULL);
	command_ok(c, "STARTTLS now", "BAD", NULL);
	command_ok(c, "LOGIN u p", "OK", NULL);
	command_ok(c, "STARTTLS", "BAD Command not valid in this state", NULL);
	conn_close(&c);
}

static void test_login(void **state)
{
	struct harness *h = *state;
	struct conn *c = conn_open_raw(h, NULL);
	command_ok(c, "LOGIN u wrong", "NO [AUTHENTICATIONFAILED] Invalid credentials", NULL);
	command_ok(c, "LOGIN nobody p", "NO [AUTHENTICATIONFAILED]", NULL);
	command_ok(c, "LOGIN u", "BAD Missing arguments", NULL);
	command_ok(c, "LOGIN u p p", "BAD Too many arguments", NULL);
	command_ok(c, "LOGIN (u) p", "BAD Expected a string argument", NULL);
	command_ok(c, "SELECT INBOX", "BAD Log in first", NULL);
	command_ok(c, "LOGIN \"u\" \"p\"", "OK Logged in", NULL);
	command_ok(c, "LOGIN u p", "BAD Command not valid in this state", NULL);
	conn_close(&c);
}

static void test_authenticate(void **state)
{
	struct harness *h = *state;
	struct conn *c = conn_open_raw(h, NULL);
	command_ok(c, "AUTHENTICATE CRAM-MD5", "NO [CANNOT]", NULL);
	command_ok(c, "AUTHENTICATE", "BAD Missing arguments", NULL);
	command_ok(c, "AUTHENTICATE PLAIN !!!!", "BAD Invalid SASL PLAIN response", NULL);
	command_ok(c, "AUTHENTICATE PLAIN AHUAeA==", "NO [AUTHENTICATIONFAILED]", NULL);
	/* Without an initial response: the continuation, then "*" cancels. */
	send_line(c, "a1 AUTHENTICATE PLAIN");
	char *line = conn_line(c);
	assert_string_equal(line, "+ ");
	free(line);
	send_line(c, "*");
	line = expect(c, "a1", NULL);
	assert_string_equal(line, "a1 BAD AUTHENTICATE cancelled");
	free(line);
	send_line(c, "a2 AUTHENTICATE PLAIN");
	line = conn_line(c);
	assert_string_equal(line, "+ ");
	free(line);
	send_line(c, PLAIN_UP);
	struct lines u = {0};
	line = expect(c, "a2", &u);
	assert_string_equal(line, "a2 OK Logged in");
	free(line);
	assert_line(&u, "* CAPABILITY " CAPS_AUTH);
	lines_free(&u);
	command_ok(c, ("AUTHENTICATE PLAIN " PLAIN_UP), "BAD Command not valid in this state",
		   NULL);
	conn_close(&c);
	/* SASL-IR. */
	c = conn_open_raw(h, NULL);
	command_ok(c, ("AUTHENTICATE PLAIN " PLAIN_UP), "OK Logged in", NULL);
	command_ok(c, "SELECT INBOX", "OK", NULL);
	conn_close(&c);
}

static void test_enable(void **state)
{
	struct harness *h = *state;
	struct conn *c = conn_open_raw(h, NULL);
	command_ok(c, "ENABLE CONDSTORE", "BAD Log in first", NULL);
	command_ok(c, "LOGIN u p", "OK", NULL);
	command_ok(c, "ENABLE", "BAD Missing arguments", NULL);
	command_ok(c, "ENABLE \"CONDSTORE\"", "BAD ENABLE takes capability names", NULL);
	struct lines u = {0};
	command_ok(c, "ENABLE X-UNKNOWN", "OK ENABLE completed", &u);
	assert_int_equal(u.n, 1);
	assert_string_equal(u.v[0], "* ENABLED");
	lines_free(&u);
	command_ok(c, "ENABLE condstore", "OK", &u);
	assert_string_equal(u.v[0], "* ENABLED CONDSTORE");
	lines_free(&u);
	/* Enabling again reports nothing new (RFC 5161 3.1). */
	command_ok(c, "ENABLE CONDSTORE", "OK", &u);
	assert_string_equal(u.v[0], "* ENABLED");
	lines_free(&u);
	conn_close(&c);
}

static void test_namespace(void **state)
{
	struct harness *h = *state;
	struct conn *c = conn_open_raw(h, NULL);
	command_ok(c, "NAMESPACE", "BAD Log in first", NULL);
	command_ok(c, "LOGIN u p", "OK", NULL);
	struct lines u = {0};
	command_ok(c, "NAMESPACE", "OK NAMESPACE completed", &u);
	assert_int_equal(u.n, 1);
	assert_string_equal(u.v[0], "* NAMESPACE ((\"\" \"/\")) NIL NIL");
	lines_free(&u);
	command_ok(c, "NAMESPACE x", "BAD Too many arguments", NULL);
	conn_close(&c);
}

static void test_select_and_examine(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "INBOX", 3);
	harness_flags(h, "INBOX", 1, STORE_FLAGS_ADD, STORE_SEEN);
	struct store_mailbox_status st = harness_status(h, "INBOX");
	struct conn *c = conn_open(h);
	struct lines u = {0};
	command_ok(c, "SELECT inbox", "OK [READ-WRITE] SELECT completed", &u);
	char want[128];
	assert_line(&u, "* FLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft)");
	assert_line(&u, "* OK [PERMANENTFLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft \\*)] "
			"Flags permitted");
	assert_line(&u, "* 3 EXISTS");
	assert_line(&u, "* 3 RECENT");
	assert_line(&u, "* OK [UNSEEN 2] First unseen");
	snprintf(want, sizeof want, "* OK [UIDVALIDITY %u] UIDs valid", st.uidvalidity);
	assert_line(&u, want);
	assert_line(&u, "* OK [UIDNEXT 4] Predicted next UID");
	snprintf(want, sizeof want, "* OK [HIGHESTMODSEQ %llu] Highest",
		 (unsigned long long)st.highestmodseq);
	assert_line(&u, want);
	lines_free(&u);
	/* \Recent went to the first session: a second one sees none. */
	struct conn *d = conn_open(h);
	command_ok(d, "EXAMINE INBOX", "OK [READ-ONLY] EXAMINE completed", &u);
	assert_line(&u, "* 0 RECENT");
	assert_line(&u, "* OK [PERMANENTFLAGS ()] Read-only mailbox");
	lines_free(&u);
	conn_close(&d);
	/* Errors: a failed SELECT leaves no mailbox selected (RFC 3501 6.3.1). */
	command_ok(c, "SELECT nosuch", "NO [NONEXISTENT] No such mailbox", NULL);
	command_ok(c, "FETCH 1 (UID)", "BAD No mailbox selected", NULL);
	command_ok(c, "SELECT", "BAD Missing arguments", NULL);
	command_ok(c, "SELECT INBOX (CONDSTORE) x", "BAD Too many arguments", NULL);
	command_ok(c, "SELECT INBOX CONDSTORE", "BAD Invalid SELECT parameters", NULL);
	command_ok(c, "SELECT INBOX (FOO)", "BAD Unknown SELECT parameter", NULL);
	command_ok(c, "EXAMINE nosuch", "NO [NONEXISTENT]", NULL);
	command_ok(c, "EXAMINE", "BAD Missing arguments", NULL);
	conn_close(&c);
}

static void test_create_delete_rename(void **state)
{
	struct harness *h = *state;
	struct conn *c = conn_open(h);
	command_ok(c, "CREATE work/jobs", "OK CREATE completed", NULL);
	command_ok(c, "CREATE work/jobs", "NO [ALREADYEXISTS]", NULL);
	command_ok(c, "CREATE bad//name", "NO [CANNOT]", NULL);
	command_ok(c, "CREATE", "BAD Missing arguments", NULL);
	command_ok(c, "CREATE a b", "BAD Too many arguments", NULL);
	command_ok(c, "CREATE parent/", "OK", NULL);
	uint32_t id;
	assert_int_equal(store_mailbox_find(h->store, "parent", &id), IMAPQ_OK);
	command_ok(c, "RENAME work/jobs work/done", "OK RENAME completed", NULL);
	command_ok(c, "RENAME work/jobs other", "NO [NONEXISTENT]", NULL);
	command_ok(c, "RENAME work/done parent", "NO [ALREADYEXISTS]", NULL);
	command_ok(c, "RENAME work/done INBOX", "NO [ALREADYEXISTS]", NULL);
	command_ok(c, "RENAME work/done", "BAD Missing arguments", NULL);
	assert_int_equal(store_mailbox_find(h->store, "work/done", &id), IMAPQ_OK);
	/* RENAME INBOX moves its messages and leaves it empty. */
	harness_fill(h, "INBOX", 2);
	command_ok(c, "RENAME INBOX old", "OK", NULL);
	assert_int_equal(harness_status(h, "INBOX").messages, 0);
	assert_int_equal(harness_status(h, "old").messages, 2);
	command_ok(c, "DELETE INBOX", "NO [CANNOT]", NULL);
	command_ok(c, "DELETE nosuch", "NO [NONEXISTENT]", NULL);
	command_ok(c, "DELETE", "BAD Missing arguments", NULL);
	/* Deleting the selected mailbox closes it. */
	command_ok(c, "SELECT work/done", "OK", NULL);
	struct lines u = {0};
	command_ok(c, "DELETE work/done", "OK DELETE completed", &u);
	assert_line(&u, "* OK [CLOSED] Mailbox deleted");
	lines_free(&u);
	command_ok(c, "CHECK", "BAD No mailbox selected", NULL);
	assert_int_equal(store_mailbox_find(h->store, "work/done", &id), IMAPQ_E_NONEXISTENT);
	conn_close(&c);
}

static void test_subscribe_list_lsub(void **state)
{
	struct harness *h = *state;
	harness_mailbox(h, "work/jobs");
	struct conn *c = conn_open(h);
	struct lines u = {0};
	command_ok(c, "LIST \"\" \"\"", "OK LIST completed", &u);
	assert_int_equal(u.n, 1);
	assert_string_equal(u.v[0], "* LIST (\\Noselect) \"/\" \"\"");
	lines_free(&u);
	command_ok(c, "LIST \"\" *", "OK", &u);
	assert_int_equal(u.n, 3);
	assert_line(&u, "* LIST () \"/\" INBOX");
	assert_line(&u, "* LIST (\\Noselect) \"/\" work");
	assert_line(&u, "* LIST () \"/\" work/jobs");
	lines_free(&u);
	command_ok(c, "LIST \"\" %", "OK", &u);
	assert_int_equal(u.n, 2);
	assert_no_line(&u, "* LIST () \"/\" work/jobs");
	lines_free(&u);
	command_ok(c, "LIST work/ %", "OK", &u);
	assert_int_equal(u.n, 1);
	assert_line(&u, "* LIST () \"/\" work/jobs");
	lines_free(&u);
	command_ok(c, "LIST \"\"", "BAD Missing arguments", NULL);
	/* Patterns are modified UTF-7 like names: a non-ASCII name is found by its encoded form,
	 * also next to wildcards, and a broken encoding is refused. */
	command_ok(c, "CREATE work/caf&AOk-", "OK", NULL);
	command_ok(c, "LIST \"\" work/caf&AOk-", "OK", &u);
	assert_int_equal(u.n, 1);
	assert_line(&u, "* LIST () \"/\" work/caf&AOk-");
	lines_free(&u);
	command_ok(c, "LIST work/ *&AOk-", "OK", &u);
	assert_int_equal(u.n, 1);
	assert_line(&u, "* LIST () \"/\" work/caf&AOk-");
	lines_free(&u);
	command_ok(c, "LIST \"\" work/caf%", "OK", &u);
	assert_int_equal(u.n, 1);
	lines_free(&u);
	command_ok(c, "LIST \"\" work/caf&AOk", "BAD Invalid mailbox name encoding", NULL);
	command_ok(c, "DELETE work/caf&AOk-", "OK", NULL);
	command_ok(c, "SUBSCRIBE nosuch", "NO [NONEXISTENT]", NULL);
	command_ok(c, "SUBSCRIBE", "BAD Missing arguments", NULL);
	command_ok(c, "SUBSCRIBE work/jobs", "OK SUBSCRIBE completed", NULL);
	command_ok(c, "LSUB \"\" *", "OK LSUB completed", &u);
	assert_int_equal(u.n, 1);
	assert_string_equal(u.v[0], "* LSUB () \"/\" work/jobs");
	lines_free(&u);
	command_ok(c, "UNSUBSCRIBE work/jobs", "OK UNSUBSCRIBE completed", NULL);
	command_ok(c, "UNSUBSCRIBE work/jobs", "OK", NULL);
	command_ok(c, "UNSUBSCRIBE nosuch", "NO [NONEXISTENT]", NULL);
	command_ok(c, "UNSUBSCRIBE", "BAD Missing arguments", NULL);
	command_ok(c, "LSUB \"\" *", "OK", &u);
	assert_int_equal(u.n, 0);
	lines_free(&u);
	command_ok(c, "LSUB \"\"", "BAD Missing arguments", NULL);
	conn_close(&c);
}

static void test_status(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "INBOX", 3);
	harness_flags(h, "INBOX", 2, STORE_FLAGS_ADD, STORE_SEEN);
	struct store_mailbox_status st = harness_status(h, "INBOX");
	struct conn *c = conn_open(h);
	struct lines u = {0};
	command_ok(c, "STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ)",
		   "OK STATUS completed", &u);
	char want[256];
	snprintf(want, sizeof want,
		 "* STATUS INBOX (MESSAGES 3 RECENT 3 UIDNEXT 4 UIDVALIDITY %u UNSEEN 2 "
		 "HIGHESTMODSEQ %llu)",
		 st.uidvalidity, (unsigned long long)st.highestmodseq);
	assert_int_equal(u.n, 1);
	assert_string_equal(u.v[0], want);
	lines_free(&u);
	command_ok(c, "STATUS INBOX (MESSAGES BOGUS)", "BAD Unknown STATUS item", NULL);
	command_ok(c, "STATUS INBOX ()", "BAD STATUS takes a list of items", NULL);
	command_ok(c, "STATUS INBOX MESSAGES", "BAD STATUS takes a list of items", NULL);
	command_ok(c, "STATUS INBOX", "BAD Missing arguments", NULL);
	command_ok(c, "STATUS nosuch (MESSAGES)", "NO [NONEXISTENT]", NULL);
	conn_close(&c);
}

static void test_append(void **state)
{
	struct harness *h = *state;
	struct store_mailbox_status st = harness_status(h, "INBOX");
	struct conn *c = conn_open(h);
	char body[512], want[128], *tagged;
	harness_message(body, sizeof body, 1);
	tagged = append_sync(c, "INBOX (\\Flagged $Job) \"01-Jan-2020 10:00:00 +0100\"", body);
	snprintf(want, sizeof want, "OK [APPENDUID %u 1] APPEND completed", st.uidvalidity);
	assert_string_equal(tagged, want);
	free(tagged);
	uint64_t job = harness_keyword(h, "INBOX", "$Job");
	assert_int_equal(harness_message_flags(h, "INBOX", 1), STORE_FLAGGED | job);
	/* LITERAL+: no continuation is waited for. */
	char line[1024];
	snprintf(line, sizeof line, "lp APPEND INBOX {%zu+}\r\n%s", strlen(body), body);
	send_line(c, line);
	tagged = expect(c, "lp", NULL);
	snprintf(want, sizeof want, "lp OK [APPENDUID %u 2]", st.uidvalidity);
	assert_tagged(tagged, want);
	free(tagged);
	command_ok(c, "FETCH 1 (INTERNALDATE)", "BAD No mailbox selected", NULL);
	command_ok(c, "SELECT INBOX", "OK", NULL);
	struct lines u = {0};
	command_ok(c, "FETCH 1:2 (INTERNALDATE RFC822.SIZE)", "OK", &u);
	snprintf(want, sizeof want,
		 "* 1 FETCH (INTERNALDATE \"01-Jan-2020 09:00:00 +0000\" RFC822.SIZE %zu)",
		 strlen(body));
	assert_line(&u, want);
	lines_free(&u);
	/* Errors. */
	tagged = append_sync(c, "nosuch", body);
	assert_tagged(tagged, "NO [TRYCREATE]");
	free(tagged);
	tagged = append_sync(c, "INBOX (\\Recent)", body);
	assert_tagged(tagged, "BAD \\Recent cannot be stored");
	free(tagged);
	tagged = append_sync(c, "INBOX \"not a date\"", body);
	assert_tagged(tagged, "BAD Invalid APPEND arguments");
	free(tagged);
	command_ok(c, "APPEND INBOX \"inline body\"", "BAD APPEND needs the message as a literal",
		   NULL);
	command_ok(c, "APPEND INBOX", "BAD Missing arguments", NULL);
	tagged = append_sync(c, "INBOX", "");
	assert_tagged(tagged, "NO [CANNOT]");
	free(tagged);
	/* Past APPENDLIMIT the literal is refused before its continuation, and the stream stays in
	 * step. */
	send_line(c, "big APPEND INBOX {999999999999}");
	tagged = expect(c, "big", NULL);
	assert_tagged(tagged, "big NO");
	free(tagged);
	command_ok(c, "NOOP", "OK", NULL);
	assert_int_equal(harness_status(h, "INBOX").messages, 2);
	conn_close(&c);
	c = conn_open_raw(h, NULL);
	command_ok(c, "APPEND INBOX {1+}\r\nx", "BAD Log in first", NULL);
	conn_close(&c);
}

static void test_idle(void **state)
{
	struct harness *h = *state;
	struct conn *c = conn_open_raw(h, NULL);
	command_ok(c, "IDLE", "BAD Log in first", NULL);
	command_ok(c, "LOGIN u p", "OK", NULL);
	command_ok(c, "IDLE now", "BAD Too many arguments", NULL);
	command_ok(c, "SELECT INBOX", "OK", NULL);
	send_line(c, "i1 IDLE");
	char *line = conn_line(c);
	assert_string_equal(line, "+ idling");
	free(line);
	/* A change by someone else is reported at once. */
	harness_append(h, "INBOX", 0, 1);
	line = conn_line(c);
	assert_string_equal(line, "* 1 EXISTS");
	free(line);
	line = conn_line(c);
	assert_string_equal(line, "* 1 RECENT");
	free(line);
	harness_flags(h, "INBOX", 1, STORE_FLAGS_ADD, STORE_FLAGGED);
	line = conn_line(c);
	assert_string_equal(line, "* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))");
	free(line);
	send_line(c, "DONE");
	line = expect(c, "i1", NULL);
	assert_string_equal(line, "i1 OK IDLE terminated");
	free(line);
	send_line(c, "i2 IDLE");
	free(conn_line(c));
	send_line(c, "STOP");
	line = expect(c, "i2", NULL);
	assert_string_equal(line, "i2 BAD Expected DONE");
	free(line);
	command_ok(c, "NOOP", "OK", NULL);
	conn_close(&c);
}

static void test_check_close_unselect(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "INBOX", 3);
	harness_flags(h, "INBOX", 2, STORE_FLAGS_ADD, STORE_DELETED);
	struct conn *c = conn_open(h);
	command_ok(c, "CHECK", "BAD No mailbox selected", NULL);
	command_ok(c, "CLOSE", "BAD No mailbox selected", NULL);
	command_ok(c, "UNSELECT", "BAD No mailbox selected", NULL);
	command_ok(c, "SELECT INBOX", "OK", NULL);
	command_ok(c, "CHECK", "OK CHECK completed", NULL);
	command_ok(c, "CHECK x", "BAD Too many arguments", NULL);
	command_ok(c, "UNSELECT x", "BAD Too many arguments", NULL);
	command_ok(c, "CLOSE x", "BAD Too many arguments", NULL);
	/* UNSELECT leaves \Deleted messages alone. */
	command_ok(c, "UNSELECT", "OK UNSELECT completed", NULL);
	assert_true(harness_exists(h, "INBOX", 2));
	/* CLOSE of a read-only mailbox expunges nothing. */
	command_ok(c, "EXAMINE INBOX", "OK", NULL);
	command_ok(c, "CLOSE", "OK CLOSE completed", NULL);
	assert_true(harness_exists(h, "INBOX", 2));
	/* CLOSE of a read-write one expunges silently. */
	command_ok(c, "SELECT INBOX", "OK", NULL);
	struct lines u = {0};
	command_ok(c, "CLOSE", "OK CLOSE completed", &u);
	assert_int_equal(lines_count_sub(&u, "EXPUNGE"), 0);
	lines_free(&u);
	assert_false(harness_exists(h, "INBOX", 2));
	command_ok(c, "FETCH 1 (UID)", "BAD No mailbox selected", NULL);
	conn_close(&c);
}

static void test_expunge(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "INBOX", 5);
	struct conn *c = conn_select(h, "INBOX", NULL);
	command_ok(c, "STORE 2,4:5 +FLAGS.SILENT (\\Deleted)", "OK", NULL);
	struct lines u = {0};
	command_ok(c, "EXPUNGE", "OK EXPUNGE completed", &u);
	/* Highest first: every number is valid when it is sent. */
	assert_int_equal(u.n, 3);
	assert_string_equal(u.v[0], "* 5 EXPUNGE");
	assert_string_equal(u.v[1], "* 4 EXPUNGE");
	assert_string_equal(u.v[2], "* 2 EXPUNGE");
	lines_free(&u);
	command_ok(c, "EXPUNGE now", "BAD Too many arguments", NULL);
	/* UID EXPUNGE touches only the named UIDs. */
	command_ok(c, "STORE 1:2 +FLAGS.SILENT (\\Deleted)", "OK", NULL);
	command_ok(c, "UID EXPUNGE 3", "OK", &u);
	assert_int_equal(u.n, 1);
	assert_string_equal(u.v[0], "* 2 EXPUNGE");
	lines_free(&u);
	assert_true(harness_exists(h, "INBOX", 1));
	command_ok(c, "UID EXPUNGE 99", "OK", &u);
	assert_int_equal(u.n, 0);
	lines_free(&u);
	command_ok(c, "UID EXPUNGE", "BAD Missing arguments", NULL);
	command_ok(c, "UID EXPUNGE 1 2", "BAD Too many arguments", NULL);
	command_ok(c, "UID EXPUNGE x:y", "BAD", NULL);
	/* Read-only. */
	command_ok(c, "EXAMINE INBOX", "OK", NULL);
	command_ok(c, "EXPUNGE", "NO [CANNOT] Mailbox is read-only", NULL);
	command_ok(c, "UID EXPUNGE 1", "NO [CANNOT]", NULL);
	assert_true(harness_exists(h, "INBOX", 1));
	conn_close(&c);
}

static void test_search(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "INBOX", 5);
	harness_flags(h, "INBOX", 2, STORE_FLAGS_ADD, STORE_SEEN);
	harness_flags(h, "INBOX", 4, STORE_FLAGS_ADD, STORE_SEEN | STORE_FLAGGED);
	struct conn *c = conn_select(h, "INBOX", NULL);
	struct lines u = {0};
	command_ok(c, "SEARCH ALL", "OK SEARCH completed", &u);
	assert_line(&u, "* SEARCH 1 2 3 4 5");
	lines_free(&u);
	command_ok(c, "SEARCH UNSEEN", "OK", &u);
	assert_line(&u, "* SEARCH 1 3 5");
	lines_free(&u);
	command_ok(c, "SEARCH SEEN NOT FLAGGED", "OK", &u);
	assert_line(&u, "* SEARCH 2");
	lines_free(&u);
	command_ok(c, "SEARCH SUBJECT \"job 3\"", "OK", &u);
	assert_line(&u, "* SEARCH 3");
	lines_free(&u);
	command_ok(c, "SEARCH 2:4 UNSEEN", "OK", &u);
	assert_line(&u, "* SEARCH 3");
	lines_free(&u);
	command_ok(c, "UID SEARCH FLAGGED", "OK UID SEARCH completed", &u);
	assert_line(&u, "* SEARCH 4");
	lines_free(&u);
	command_ok(c, "SEARCH KEYWORD $Never", "OK", &u);
	assert_line(&u, "* SEARCH");
	lines_free(&u);
	command_ok(c, "SEARCH RETURN (MIN MAX COUNT) UNSEEN", "OK", &u);
	char want[128];
	snprintf(want, sizeof want, "* ESEARCH (TAG \"t%u\") MIN 1 MAX 5 COUNT 3", c->next_tag);
	assert_line(&u, want);
	lines_free(&u);
	command_ok(c, "UID SEARCH RETURN (ALL) SEEN", "OK", &u);
	snprintf(want, sizeof want, "* ESEARCH (TAG \"t%u\") UID ALL 2,4", c->next_tag);
	assert_line(&u, want);
	lines_free(&u);
	command_ok(c, "SEARCH CHARSET UTF-8 ALL", "OK", NULL);
	command_ok(c, "SEARCH CHARSET KOI8-R ALL", "NO [BADCHARSET (US-ASCII UTF-8)]", NULL);
	command_ok(c, "SEARCH BOGUS", "BAD", NULL);
	command_ok(c, "SEARCH", "BAD", NULL);
	command_ok(c, "SEARCH RETURN (BOGUS) ALL", "BAD", NULL);
	command_ok(c, "SEARCH 1:x", "BAD", NULL);
	command_ok(c, "SEARCH LARGER", "BAD", NULL);
	conn_close(&c);
}

static void test_fetch(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "INBOX", 3);
	char body[512], want[1024];
	harness_message(body, sizeof body, 2);
	struct conn *c = conn_select(h, "INBOX", NULL);
	struct lines u = {0};
	command_ok(c, "FETCH 2 (UID FLAGS RFC822.SIZE)", "OK FETCH completed", &u);
	snprintf(want, sizeof want, "* 2 FETCH (UID 2 FLAGS (\\Recent) RFC822.SIZE %zu)",
		 strlen(body));
	assert_int_equal(u.n, 1);
	assert_string_equal(u.v[0], want);
	lines_free(&u);
	command_ok(c, "FETCH 2 BODY.PEEK[]", "OK", &u);
	snprintf(want, sizeof want, "* 2 FETCH (BODY[] {%zu}\r\n%s)", strlen(body), body);
	assert_string_equal(u.v[0], want);
	lines_free(&u);
	command_ok(c, "FETCH 3 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])", "OK", &u);
	assert_string_equal(u.v[0], "* 3 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {18}\r\n"
				    "Subject: job 3\r\n\r\n)");
	lines_free(&u);
	command_ok(c, "FETCH 3 (BODY.PEEK[TEXT]<0.7>)", "OK", &u);
	assert_string_equal(u.v[0], "* 3 FETCH (BODY[TEXT]<0> {7}\r\npayload)");
	lines_free(&u);
	/* BODY[] without PEEK sets \Seen and reports the new flags. */
	command_ok(c, "FETCH 1 (BODY[TEXT])", "OK", &u);
	assert_string_equal(u.v[0], "* 1 FETCH (BODY[TEXT] {11}\r\npayload 1\r\n FLAGS (\\Seen "
				    "\\Recent))");
	lines_free(&u);
	assert_int_equal(harness_message_flags(h, "INBOX", 1), STORE_SEEN);
	/* UID FETCH reports the UID even unasked, and ignores UIDs that do not exist. */
	command_ok(c, "UID FETCH 2:* (FLAGS)", "OK", &u);
	assert_int_equal(u.n, 2);
	assert_string_equal(u.v[0], "* 2 FETCH (UID 2 FLAGS (\\Recent))");
	lines_free(&u);
	command_ok(c, "UID FETCH 50 (FLAGS)", "OK", &u);
	assert_int_equal(u.n, 0);
	lines_free(&u);
	command_ok(c, "FETCH * FAST", "OK", &u);
	assert_int_equal(u.n, 1);
	assert_int_equal(lines_find(&u, "* 3 FETCH (FLAGS (\\Recent) INTERNALDATE "), 0);
	lines_free(&u);
	command_ok(c, "FETCH 1 ENVELOPE", "OK", &u);
	assert_non_null(strstr(u.v[0], "\"job 1\""));
	lines_free(&u);
	command_ok(c, "FETCH 1 BODYSTRUCTURE", "OK", &u);
	assert_non_null(strstr(u.v[0], "(\"TEXT\" \"PLAIN\""));
	lines_free(&u);
	/* Errors. */
	command_ok(c, "FETCH 4 (UID)", "BAD Message sequence number out of range", NULL);
	command_ok(c, "FETCH 0 (UID)", "BAD", NULL);
	command_ok(c, "FETCH x (UID)", "BAD", NULL);
	command_ok(c, "FETCH 1 (BOGUS)", "BAD Invalid FETCH attributes", NULL);
	command_ok(c, "FETCH 1 ()", "BAD Invalid FETCH attributes", NULL);
	command_ok(c, "FETCH 1 BODY[", "BAD", NULL);
	command_ok(c, "FETCH 1", "BAD Missing arguments", NULL);
	command_ok(c, "FETCH 1 (UID) (BOGUS 1)", "BAD Unknown FETCH modifier", NULL);
	command_ok(c, "FETCH 1 (UID) (CHANGEDSINCE 0)", "BAD CHANGEDSINCE must be positive", NULL);
	command_ok(c, "FETCH 1 (UID) CHANGEDSINCE", "BAD Invalid FETCH modifiers", NULL);
	command_ok(c, "FETCH 1 (UID) (CHANGEDSINCE 1 CHANGEDSINCE 2)",
		   "BAD CHANGEDSINCE given twice", NULL);
	/* Partial fetches take two unsigned 32-bit numbers, the length not zero (RFC 3501 9). */
	command_ok(c, "FETCH 3 (BODY.PEEK[TEXT]<4294967295.4294967295>)", "OK", &u);
	assert_string_equal(u.v[0], "* 3 FETCH (BODY[TEXT]<4294967295> {0}\r\n)");
	lines_free(&u);
	command_ok(c, "FETCH 3 (BODY.PEEK[TEXT]<0.4294967296>)", "BAD", NULL);
	command_ok(c, "FETCH 3 (BODY.PEEK[TEXT]<4294967296.1>)", "BAD", NULL);
	command_ok(c, "FETCH 3 (BODY.PEEK[TEXT]<0.07>)", "BAD", NULL);
	command_ok(c, "FETCH 3 (BODY.PEEK[TEXT]<0.0>)", "BAD", NULL);
	command_ok(c, "FETCH 3 (BODY.PEEK[TEXT]<+1.7>)", "BAD", NULL);
	command_ok(c, "FETCH 3 (BODY.PEEK[TEXT]<0.7>x)", "BAD", NULL);
	/* On a read-only mailbox BODY[] does not set \Seen. */
	command_ok(c, "EXAMINE INBOX", "OK", NULL);
	command_ok(c, "FETCH 2 (BODY[])", "OK", NULL);
	assert_int_equal(harness_message_flags(h, "INBOX", 2), 0);
	conn_close(&c);
}

/* A FETCH over more messages than one page of the store (IMAPQ_SEARCH_SCAN_STEP) answers every
 * message once, in order, across the pages and a hole of expunged UIDs. */
static void test_fetch_pages(void **state)
{
	struct harness *h = *state;
	unsigned n = 2 * IMAPQ_SEARCH_SCAN_STEP + 100;
	harness_fill(h, "INBOX", n);
	harness_expunge(h, "INBOX", 10000, 20000);
	struct conn *c = conn_select(h, "INBOX", NULL);
	struct lines u = {0};
	command_ok(c, "UID FETCH 5000:* (UID)", "OK FETCH completed", &u);
	size_t k = 0;
	for (uint32_t uid = 5000; uid <= n; uid++) {
		if (uid >= 10000 && uid <= 20000)
			continue;
		char want[64];
		snprintf(want, sizeof want, "* %u FETCH (UID %u)", uid < 10000 ? uid : uid - 10001,
			 uid);
		assert_true(k < u.n);
		assert_string_equal(u.v[k], want);
		k++;
	}
	assert_int_equal(k, u.n);
	lines_free(&u);
	conn_close(&c);
}

static void test_store(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "INBOX", 3);
	struct conn *c = conn_select(h, "INBOX", NULL);
	struct lines u = {0};
	command_ok(c, "STORE 1 +FLAGS (\\Seen $Job)", "OK STORE completed", &u);
	assert_int_equal(lines_count(&u, "* 1 FETCH"), 1);
	assert_line(&u, "* 1 FETCH (UID 1 FLAGS (\\Seen $Job \\Recent))");
	/* A new keyword is announced with the mailbox's flag lists (RFC 3501 7.2.6). */
	assert_line(&u, "* FLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft $Job)");
	lines_free(&u);
	command_ok(c, "STORE 1 -FLAGS ($Job)", "OK", &u);
	assert_string_equal(u.v[0], "* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent))");
	lines_free(&u);
	command_ok(c, "STORE 1:2 FLAGS.SILENT (\\Answered)", "OK", NULL);
	assert_int_equal(harness_message_flags(h, "INBOX", 1), STORE_ANSWERED);
	assert_int_equal(harness_message_flags(h, "INBOX", 2), STORE_ANSWERED);
	command_ok(c, "UID STORE 3 +FLAGS \\Draft \\Flagged", "OK", &u);
	assert_string_equal(u.v[0], "* 3 FETCH (UID 3 FLAGS (\\Flagged \\Draft \\Recent))");
	lines_free(&u);
	/* Removing a keyword no message has is a no-op, not an error. */
	command_ok(c, "STORE 1 -FLAGS ($Never)", "OK", NULL);
	/* Errors. */
	command_ok(c, "STORE 1 +FLAGS (\\Recent)", "BAD \\Recent cannot be stored", NULL);
	command_ok(c, "STORE 1 +FLAGS (\\Bogus)", "BAD Unknown system flag", NULL);
	command_ok(c, "STORE 1 +FLAGS (a%b)", "BAD Invalid keyword", NULL);
	command_ok(c, "STORE 1 XFLAGS (\\Seen)", "BAD Invalid STORE item", NULL);
	command_ok(c, "STORE 1 +FLAGS", "BAD Missing arguments", NULL);
	command_ok(c, "STORE 1 (BOGUS 1) +FLAGS (\\Seen)", "BAD Unknown STORE modifier", NULL);
	command_ok(c, "STORE 1 (UNCHANGEDSINCE x) +FLAGS (\\Seen)", "BAD Invalid number", NULL);
	command_ok(c, "STORE 9 +FLAGS (\\Seen)", "BAD Message sequence number out of range", NULL);
	/* A command refused for its set defines no keyword: the next FLAGS list lacks it. */
	command_ok(c, "STORE 9 +FLAGS ($Refused)", "BAD Message sequence number out of range",
		   NULL);
	command_ok(c, "STORE 1:x +FLAGS $Refused2", "BAD", NULL);
	command_ok(c, "STORE 1 +FLAGS ($Kept)", "OK", &u);
	assert_line(&u, "* FLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft $Job $Kept)");
	lines_free(&u);
	command_ok(c, "STORE 1 -FLAGS ($Kept)", "OK", NULL);
	command_ok(c, "STORE 1:x +FLAGS (\\Seen)", "BAD", NULL);
	command_ok(c, "STORE 1 +FLAGS (\\Seen) (\\Draft)", "BAD Invalid flag list", NULL);
	command_ok(c, "EXAMINE INBOX", "OK", NULL);
	command_ok(c, "STORE 1 +FLAGS (\\Deleted)", "NO [CANNOT] Mailbox is read-only", NULL);
	command_ok(c, "UID STORE 1 +FLAGS (\\Deleted)", "NO [CANNOT]", NULL);
	assert_int_equal(harness_message_flags(h, "INBOX", 1), STORE_ANSWERED);
	conn_close(&c);
}

/* .SILENT suppresses the FETCH echo of the session's own change (RFC 3501 6.4.6). */
static void test_store_silent(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "INBOX", 2);
	struct conn *c = conn_select(h, "INBOX", NULL);
	struct lines u = {0};
	command_ok(c, "STORE 1:2 +FLAGS.SILENT (\\Answered)", "OK STORE completed", &u);
	assert_int_equal(u.n, 0);
	lines_free(&u);
	command_ok(c, "NOOP", "OK", &u);
	assert_int_equal(u.n, 0);
	lines_free(&u);
	conn_close(&c);
}

static void test_copy_and_move(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "INBOX", 3);
	harness_mailbox(h, "dst");
	uint32_t v = harness_status(h, "dst").uidvalidity;
	struct conn *c = conn_select(h, "INBOX", NULL);
	char want[128];
	struct lines u = {0};
	snprintf(want, sizeof want, "OK [COPYUID %u 1:2 1:2] COPY completed", v);
	command_ok(c, "COPY 1:2 dst", want, NULL);
	snprintf(want, sizeof want, "OK [COPYUID %u 3 3]", v);
	command_ok(c, "UID COPY 3 dst", want, NULL);
	command_ok(c, "UID COPY 99 dst", "OK No messages copied", NULL);
	command_ok(c, "COPY 1 nosuch", "NO [TRYCREATE]", NULL);
	command_ok(c, "COPY 7 dst", "BAD Message sequence number out of range", NULL);
	command_ok(c, "COPY 1", "BAD Missing arguments", NULL);
	command_ok(c, "MOVE 2 dst", "OK MOVE completed", &u);
	snprintf(want, sizeof want, "* OK [COPYUID %u 2 4] Moved", v);
	assert_string_equal(u.v[0], want);
	assert_string_equal(u.v[1], "* 2 EXPUNGE");
	lines_free(&u);
	command_ok(c, "UID MOVE 3 dst", "OK", &u);
	assert_line(&u, "* 2 EXPUNGE");
	lines_free(&u);
	command_ok(c, "MOVE 1 nosuch", "NO [TRYCREATE]", NULL);
	command_ok(c, "MOVE 1", "BAD Missing arguments", NULL);
	assert_int_equal(harness_status(h, "dst").messages, 5);
	assert_int_equal(harness_status(h, "INBOX").messages, 1);
	/* A read-only source can be copied from but not moved from. */
	command_ok(c, "EXAMINE INBOX", "OK", NULL);
	command_ok(c, "COPY 1 dst", "OK [COPYUID", NULL);
	command_ok(c, "MOVE 1 dst", "NO [CANNOT] Mailbox is read-only", NULL);
	assert_int_equal(harness_status(h, "INBOX").messages, 1);
	conn_close(&c);
}

/* Every command outside the states it is valid in gets BAD and changes nothing. */
static void test_wrong_state(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "INBOX", 1);
	static const char *const need_auth[] = {"ENABLE CONDSTORE",
						"NAMESPACE",
						"SELECT INBOX",
						"EXAMINE INBOX",
						"CREATE x",
						"DELETE x",
						"RENAME x y",
						"SUBSCRIBE INBOX",
						"UNSUBSCRIBE INBOX",
						"LIST \"\" *",
						"LSUB \"\" *",
						"STATUS INBOX (MESSAGES)",
						"IDLE",
						"CHECK",
						"CLOSE",
						"UNSELECT",
						"EXPUNGE",
						"SEARCH ALL",
						"FETCH 1 FLAGS",
						"STORE 1 +FLAGS (\\Seen)",
						"COPY 1 INBOX",
						"MOVE 1 INBOX",
						"UID FETCH 1 FLAGS",
						"UID SEARCH ALL",
						"UID STORE 1 +FLAGS (\\Seen)",
						"UID COPY 1 INBOX",
						"UID MOVE 1 INBOX",
						"UID EXPUNGE 1"};
	static const char *const need_selected[] = {"CHECK",
						    "CLOSE",
						    "UNSELECT",
						    "EXPUNGE",
						    "SEARCH ALL",
						    "FETCH 1 FLAGS",
						    "STORE 1 +FLAGS (\\Seen)",
						    "COPY 1 INBOX",
						    "MOVE 1 INBOX",
						    "UID FETCH 1 FLAGS",
						    "UID SEARCH ALL",
						    "UID STORE 1 +FLAGS (\\Seen)",
						    "UID COPY 1 INBOX",
						    "UID MOVE 1 INBOX",
						    "UID EXPUNGE 1"};
	static const char *const need_notauth[] = {"LOGIN u p", ("AUTHENTICATE PLAIN " PLAIN_UP),
						   "STARTTLS"};
	struct conn *c = conn_open_raw(h, NULL);
	for (size_t i = 0; i < sizeof need_auth / sizeof need_auth[0]; i++)
		command_ok(c, need_auth[i], "BAD Log in first", NULL);
	command_ok(c, "LOGIN u p", "OK", NULL);
	for (size_t i = 0; i < sizeof need_selected / sizeof need_selected[0]; i++)
		command_ok(c, need_selected[i], "BAD No mailbox selected", NULL);
	command_ok(c, "SELECT INBOX", "OK", NULL);
	for (size_t i = 0; i < sizeof need_notauth / sizeof need_notauth[0]; i++)
		command_ok(c, need_notauth[i], "BAD Command not valid in this state", NULL);
	assert_int_equal(harness_status(h, "INBOX").messages, 1);
	assert_int_equal(harness_message_flags(h, "INBOX", 1), 0);
	conn_close(&c);
}

static void test_unknown_and_malformed(void **state)
{
	struct harness *h = *state;
	struct conn *c = conn_open(h);
	command_ok(c, "FROBNICATE", "BAD Unknown command", NULL);
	command_ok(c, "UID", "BAD Missing UID command", NULL);
	command_ok(c, "UID NOOP", "BAD Unknown command", NULL);
	command_ok(c, "UID SELECT INBOX", "BAD Unknown command", NULL);
	command_ok(c, "SELECT \"INBOX", "BAD", NULL);
	command_ok(c, "LIST \"\" (*", "BAD", NULL);
	/* A line without a command gets an untagged BAD, and the session goes on. */
	send_line(c, "");
	send_line(c, "x1 NOOP");
	struct lines u = {0};
	char *tagged = expect(c, "x1", &u);
	assert_string_equal(tagged, "x1 OK NOOP completed");
	free(tagged);
	assert_int_equal(lines_count(&u, "* BAD"), 1);
	lines_free(&u);
	conn_close(&c);
}

/* Several commands in one write are answered in order. */
static void test_pipelining(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "INBOX", 2);
	struct conn *c = conn_open(h);
	const char *batch = "p1 NOOP\r\np2 SELECT INBOX\r\np3 FETCH 2 (UID)\r\n"
			    "p4 STORE 1 +FLAGS (\\Seen)\r\np5 BOGUS\r\np6 SEARCH SEEN\r\n";
	send_raw(c, batch, strlen(batch));
	const char *tags[] = {"p1", "p2", "p3", "p4", "p5", "p6"};
	const char *want[] = {"p1 OK", "p2 OK [READ-WRITE]", "p3 OK", "p4 OK", "p5 BAD", "p6 OK"};
	struct lines all = {0};
	for (size_t i = 0; i < 6; i++) {
		char *tagged = expect(c, tags[i], &all);
		assert_tagged(tagged, want[i]);
		free(tagged);
	}
	assert_line(&all, "* 2 FETCH (UID 2)");
	assert_line(&all, "* SEARCH 1");
	lines_free(&all);
	conn_close(&c);
}

/* A command that arrives one byte at a time, literal included, is parsed like a whole one. */
static void test_split_writes(void **state)
{
	struct harness *h = *state;
	struct conn *c = conn_open(h);
	const char *text = "s1 CREATE {4+}\r\nsplt\r\ns2 SELECT \"splt\"\r\n";
	for (size_t i = 0; text[i] != '\0'; i++) {
		send_raw(c, &text[i], 1);
		if (i % 7 == 0)
			usleep(1000);
	}
	char *tagged = expect(c, "s1", NULL);
	assert_string_equal(tagged, "s1 OK CREATE completed");
	free(tagged);
	tagged = expect(c, "s2", NULL);
	assert_tagged(tagged, "s2 OK [READ-WRITE]");
	free(tagged);
	conn_close(&c);
}

/* Synchronising literals wait for "+"; LITERAL+ ones do not; both work for any string. */
static void test_literals(void **state)
{
	struct harness *h = *state;
	struct conn *c = conn_open_raw(h, NULL);
	send_line(c, "l1 LOGIN {1}");
	char *line = conn_line(c);
	assert_tagged(line, "+ ");
	free(line);
	send_line(c, "u {1}");
	line = conn_line(c);
	assert_tagged(line, "+ ");
	free(line);
	send_line(c, "p");
	line = expect(c, "l1", NULL);
	assert_string_equal(line, "l1 OK Logged in");
	free(line);
	command_ok(c, "CREATE {9+}\r\nwith\"char", "OK", NULL);
	struct lines u = {0};
	command_ok(c, "LIST \"\" {9+}\r\nwith\"char", "OK", &u);
	assert_int_equal(u.n, 1);
	assert_string_equal(u.v[0], "* LIST () \"/\" \"with\\\"char\"");
	lines_free(&u);
	conn_close(&c);
}

/* Expunges by others are held back during FETCH, STORE and SEARCH (RFC 3501 7.4.1) and sent at
 * NOOP. */
static void test_expunge_deferred(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "INBOX", 3);
	struct conn *c = conn_select(h, "INBOX", NULL);
	harness_expunge(h, "INBOX", 3, 3);
	struct lines u = {0};
	command_ok(c, "FETCH 1:2 (UID)", "OK", &u);
	assert_int_equal(lines_count_sub(&u, "EXPUNGE"), 0);
	assert_line(&u, "* 2 FETCH (UID 2)");
	lines_free(&u);
	command_ok(c, "STORE 2 +FLAGS (\\Seen)", "OK", &u);
	assert_int_equal(lines_count_sub(&u, "EXPUNGE"), 0);
	assert_line(&u, "* 2 FETCH (UID 2 FLAGS (\\Seen \\Recent))");
	lines_free(&u);
	command_ok(c, "SEARCH ALL", "OK", &u);
	assert_int_equal(lines_count_sub(&u, "EXPUNGE"), 0);
	assert_line(&u, "* SEARCH 1 2");
	lines_free(&u);
	/* The expunged message still has its number, with nothing left to fetch. */
	command_ok(c, "FETCH 3 (UID)", "OK", &u);
	assert_int_equal(u.n, 0);
	lines_free(&u);
	command_ok(c, "NOOP", "OK", &u);
	assert_int_equal(u.n, 1);
	assert_string_equal(u.v[0], "* 3 EXPUNGE");
	lines_free(&u);
	command_ok(c, "FETCH 3 (UID)", "BAD Message sequence number out of range", NULL);
	conn_close(&c);
}

/* Until an expunge is announced, sequence numbers keep naming the messages they named before. */
static void test_msn_stable_until_expunge_announced(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "INBOX", 3);
	struct conn *c = conn_select(h, "INBOX", NULL);
	harness_expunge(h, "INBOX", 2, 2);
	struct lines u = {0};
	command_ok(c, "STORE 2 +FLAGS (\\Flagged)", "", NULL);
	assert_int_equal(harness_message_flags(h, "INBOX", 3), 0);
	command_ok(c, "FETCH 3 (UID)", "OK", &u);
	assert_line(&u, "* 3 FETCH (UID 3)");
	lines_free(&u);
	conn_close(&c);
}

/* The MIN of the ESEARCH response among the lines, 0 when it has none. */
static uint64_t esearch_min(const struct lines *u)
{
	int i = lines_find(u, "* ESEARCH ");
	assert_true(i >= 0);
	return line_number(u->v[i], " MIN");
}

/* The worker claim protocol of DESIGN.md, with two workers racing for one job. */
static void test_claim_protocol(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "jobs", 2);
	struct conn *a = conn_select(h, "jobs", NULL);
	struct conn *b = conn_select(h, "jobs", NULL);
	struct lines u = {0};
	const char *search =
	    "UID SEARCH RETURN (MIN) UNKEYWORD $Claimed UNKEYWORD $Delayed UNDELETED";
	/* Both workers find job 1 and read its mod-sequence. */
	command_ok(a, search, "OK", &u);
	assert_int_equal(esearch_min(&u), 1);
	lines_free(&u);
	command_ok(b, search, "OK", &u);
	assert_int_equal(esearch_min(&u), 1);
	lines_free(&u);
	command_ok(a, "UID FETCH 1 (FLAGS MODSEQ)", "OK", &u);
	uint64_t m = line_number(u.v[0], "MODSEQ");
	assert_true(m > 0);
	assert_null(strstr(u.v[0], "$Claimed"));
	lines_free(&u);
	command_ok(b, "UID FETCH 1 (FLAGS MODSEQ)", "OK", &u);
	assert_int_equal(line_number(u.v[0], "MODSEQ"), m);
	lines_free(&u);
	/* A claims: the echo with a new mod-sequence is the receipt. */
	char cmd[160];
	snprintf(cmd, sizeof cmd, "UID STORE 1 (UNCHANGEDSINCE %llu) +FLAGS.SILENT ($Claimed)",
		 (unsigned long long)m);
	command_ok(a, cmd, "OK STORE completed", &u);
	assert_int_equal(lines_count(&u, "* 1 FETCH"), 1);
	int echo = lines_find(&u, "* 1 FETCH (UID 1 MODSEQ (");
	assert_true(echo >= 0);
	uint64_t receipt = line_number(u.v[echo], "MODSEQ");
	assert_true(receipt > m);
	lines_free(&u);
	/* B's identical claim loses with MODIFIED and no echo of its own. */
	command_ok(b, cmd, "OK [MODIFIED 1]", &u);
	assert_int_equal(lines_count(&u, "* 1 FETCH (UID 1 MODSEQ"), 0);
	lines_free(&u);
	/* B's next search skips the claimed job. */
	command_ok(b, search, "OK", &u);
	assert_int_equal(esearch_min(&u), 2);
	lines_free(&u);
	/* A stale receipt cannot ack; the receipt can. */
	snprintf(cmd, sizeof cmd, "UID STORE 1 (UNCHANGEDSINCE %llu) +FLAGS.SILENT (\\Deleted)",
		 (unsigned long long)m);
	command_ok(b, cmd, "OK [MODIFIED 1]", NULL);
	assert_int_equal(harness_message_flags(h, "jobs", 1) & STORE_DELETED, 0);
	snprintf(cmd, sizeof cmd, "UID STORE 1 (UNCHANGEDSINCE %llu) +FLAGS.SILENT (\\Deleted)",
		 (unsigned long long)receipt);
	command_ok(a, cmd, "OK STORE completed", &u);
	assert_int_equal(lines_find(&u, "* 1 FETCH (UID 1 MODSEQ ("), 0);
	lines_free(&u);
	command_ok(a, "UID EXPUNGE 1", "OK", &u);
	assert_line(&u, "* 1 EXPUNGE");
	lines_free(&u);
	/* A second ack of the completed job finds no message: no echo, nothing changes. */
	command_ok(a, cmd, "OK", &u);
	assert_int_equal(lines_count(&u, "* 1 FETCH"), 0);
	lines_free(&u);
	/* Release (nack) of job 2 by the worker that claimed it. */
	/* B has not been told that job 1 is gone: UID 2 keeps number 2 until the EXPUNGE that this
	 * UID command may carry. */
	command_ok(b, "UID FETCH 2 (FLAGS MODSEQ)", "OK", &u);
	assert_true(lines_find(&u, "* 2 FETCH (UID 2 FLAGS") >= 0);
	assert_line(&u, "* 1 EXPUNGE");
	m = line_number(u.v[lines_find(&u, "* 2 FETCH (UID 2 FLAGS")], "MODSEQ");
	lines_free(&u);
	snprintf(cmd, sizeof cmd, "UID STORE 2 (UNCHANGEDSINCE %llu) +FLAGS.SILENT ($Claimed)",
		 (unsigned long long)m);
	command_ok(b, cmd, "OK STORE completed", &u);
	receipt = line_number(u.v[lines_find(&u, "* 1 FETCH (UID 2 MODSEQ")], "MODSEQ");
	lines_free(&u);
	snprintf(cmd, sizeof cmd, "UID STORE 2 (UNCHANGEDSINCE %llu) -FLAGS.SILENT ($Claimed)",
		 (unsigned long long)receipt);
	command_ok(b, cmd, "OK STORE completed", NULL);
	command_ok(a, search, "OK", &u);
	assert_int_equal(esearch_min(&u), 2);
	lines_free(&u);
	conn_close(&a);
	conn_close(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_greeting_and_capability, harness_setup,
					    harness_teardown),
	    cmocka_unit_test_setup_teardown(test_noop_any_state, harness_setup, harness_teardown),
	    cmocka_unit_test_setup_teardown(test_logout, harness_setup, harness_teardown),
	    cmocka_unit_test_setup_teardown(test_id, harness_setup, harness_teardown),
	    cmocka_unit_test_setup_teardown(test_starttls, harness_setup, harness_teardown),
	    cmocka_unit_test_setup_teardown(test_login, harness_setup, harness_teardown),
	    cmocka_unit_test_setup_teardown(test_authenticate, harness_setup, harness_teardown),
	    cmocka_unit_test_setup_teardown(test_enable, harness_setup, harness_teardown),
	    cmocka_unit_test_setup_teardown(test_namespace, harness_setup, harness_teardown),
	    cmocka_unit_test_setup_teardown(test_select_and_examine, harness_setup,
					    harness_teardown),
	    cmocka_unit_test_setup_teardown(test_create_delete_rename, harness_setup,
					    harness_teardown),
	    cmocka_unit_test_setup_teardown(test_subscribe_list_lsub, harness_setup,
					    harness_teardown),
	    cmocka_unit_test_setup_teardown(test_status, harness_setup, harness_teardown),
	    cmocka_unit_test_setup_teardown(test_append, harness_setup, harness_teardown),
	    cmocka_unit_test_setup_teardown(test_idle, harness_setup, harness_teardown),
	    cmocka_unit_test_setup_teardown(test_check_close_unselect, harness_setup,
					    harness_teardown),
	    cmocka_unit_test_setup_teardown(test_expunge, harness_setup, harness_teardown),
	    cmocka_unit_test_setup_teardown(test_search, harness_setup, harness_teardown),
	    cmocka_unit_test_setup_teardown(test_fetch, harness_setup, harness_teardown),
	    cmocka_unit_test_setup_teardown(test_fetch_pages, harness_setup, harness_teardown),
	    cmocka_unit_test_setup_teardown(test_store, harness_setup, harness_teardown),
	    cmocka_unit_test_setup_teardown(test_store_silent, harness_setup, harness_teardown),
	    cmocka_unit_test_setup_teardown(test_copy_and_move, harness_setup, harness_teardown),
	    cmocka_unit_test_setup_teardown(test_wrong_state, harness_setup, harness_teardown),
	    cmocka_unit_test_setup_teardown(test_unknown_and_malformed, harness_setup,
					    harness_teardown),
	    cmocka_unit_test_setup_teardown(test_pipelining, harness_setup, harness_teardown),
	    cmocka_unit_test_setup_teardown(test_split_writes, harness_setup, harness_teardown),
	    cmocka_unit_test_setup_teardown(test_literals, harness_setup, harness_teardown),
	    cmocka_unit_test_setup_teardown(test_expunge_deferred, harness_setup, harness_teardown),
	    cmocka_unit_test_setup_teardown(test_msn_stable_until_expunge_announced, harness_setup,
					    harness_teardown),
	    cmocka_unit_test_setup_teardown(test_claim_protocol, harness_setup, harness_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
