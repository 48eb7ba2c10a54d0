/* The IMAP client and its queue helpers against scripted servers: login, select, literals and
 * continuations, pipelining, claims as imapqd and as Dovecot answer them, ack/release/extend
 * outcomes, IDLE, and servers that disconnect, time out or send garbage. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "imap/client/jobs.h"
#include "test_client_fake.h"

#include <time.h>

/* What imapqd announces (before login it also offers AUTH=PLAIN). */
#define CAPS_IMAPQD                                                                                \
	"IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE UNSELECT UIDPLUS ESEARCH MOVE CONDSTORE "       \
	"QRESYNC METADATA ANNOTATE-EXPERIMENT-1"
#define GREETING_IMAPQD "* OK [CAPABILITY " CAPS_IMAPQD " AUTH=PLAIN] imapq ready\r\n"
/* A server with CONDSTORE and IDLE but neither ESEARCH, UIDPLUS nor imapqd's entries. */
#define GREETING_PLAIN "* OK [CAPABILITY IMAP4rev1 CONDSTORE ENABLE IDLE] ready\r\n"
/* The search of a ready job. */
#define READY "UNKEYWORD $Claimed UNKEYWORD $Delayed UNDELETED"

struct fixture {
	struct fake_server fs;
	struct client *c;
};

/* Starts a scripted server and connects a client to it. */
static struct client *start(struct fixture *fx, const char *greeting, const struct fake_step *steps,
			    size_t count, enum fake_end end, int timeout_ms)
{
	struct client_options o = {.host = "127.0.0.1", .timeout_ms = timeout_ms};
	char err[256];

	memset(fx, 0, sizeof(*fx));
	fx->fs.greeting = greeting;
	fx->fs.steps = steps;
	fx->fs.count = count;
	fx->fs.end = end;
	assert_true(fake_start(&fx->fs));
	o.port = fx->fs.port;
	assert_int_equal(client_connect(&o, err, sizeof(err), &fx->c), IMAPQ_OK);
	return fx->c;
}

/* Closes the client and checks that the server saw exactly its script. */
static void finish(struct fixture *fx)
{
	const char *failure;

	client_destroy(&fx->c);
	assert_null(fx->c);
	failure = fake_finish(&fx->fs);
	if (failure != NULL)
		fail_msg("%s", failure);
}

#define START(fx, greeting, steps, end, timeout)                                                   \
	start(fx, greeting, steps, sizeof(steps) / sizeof(steps[0]), end, timeout)

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_login_sasl_ir_and_select(void **state)
{
	static const struct fake_step steps[] = {
	    {.expect = "c1 AUTHENTICATE PLAIN AGRlbW8AcHc=\r\n",
	     .reply = "c1 OK [CAPABILITY IMAP4rev1 LITERAL+ IDLE CONDSTORE ENABLE ESEARCH UIDPLUS] "
		      "Logged "
		      "in\r\n"},
	    {.expect = "c2 ENABLE CONDSTORE\r\n", .reply = "* ENABLED CONDSTORE\r\nc2 OK done\r\n"},
	    {.expect = "c3 SELECT jobs\r\n",
	     .reply = "* FLAGS (\\Seen)\r\n* 2 EXISTS\r\n* OK [UIDVALIDITY 7] x\r\n* OK [UIDNEXT "
		      "3] x\r\n"
		      "* OK [HIGHESTMODSEQ 12] x\r\nc3 OK [READ-WRITE] SELECT completed\r\n"},
	    {.expect = "c4 EXAMINE \"a b\"\r\n",
	     .reply = "c4 NO [NONEXISTENT] no such mailbox\r\n"},
	};
	struct fixture fx;
	struct client *c = START(&fx, GREETING_IMAPQD, steps, FAKE_END_WAIT, 0);
	struct client_mailbox mb;

	assert_true(client_has_cap(c, "auth=plain"));
	assert_false(client_is_tls(c));
	assert_int_equal(client_login(c, "demo", "pw"), IMAPQ_OK);
	/* The list after login replaced the one before it. */
	assert_false(client_has_cap(c, "AUTH=PLAIN"));
	assert_true(client_has_cap(c, "esearch"));
	assert_int_equal(client_select(c, "jobs", 0, &mb), IMAPQ_OK);
	assert_true(client_condstore(c));
	assert_int_equal(mb.exists, 2);
	assert_int_equal(mb.uidvalidity, 7);
	assert_int_equal(mb.uidnext, 3);
	assert_int_equal(mb.highestmodseq, 12);
	assert_false(mb.read_only);
	assert_int_equal(client_select(c, "a b", CLIENT_SELECT_READ_ONLY, NULL),
			 IMAPQ_E_NONEXISTENT);
	assert_string_equal(client_reply(c)->code_name, "NONEXISTENT");
	assert_non_null(strstr(client_error(c), "no such mailbox"));
	finish(&fx);
}

/* Without LITERAL+ a literal waits for "+"; quoted strings carry quotes; without AUTH=PLAIN the
 * client uses LOGIN and asks for the capabilities afterwards. */
static void test_login_literal_waits_for_continuation(void **state)
{
	static const struct fake_step steps[] = {
	    {.expect = "c1 LOGIN \"we\\\"ird\" {6}\r\n", .reply = "+ go ahead\r\n", .quiet_ms = 50},
	    {.expect = "p\xc3\xa4 ss\r\n", .reply = "c1 OK done\r\n"},
	    {.expect = "c2 CAPABILITY\r\n", .reply = "* CAPABILITY IMAP4rev1 IDLE\r\nc2 OK\r\n"},
	};
	struct fixture fx;
	struct client *c =
	    START(&fx, "* OK [CAPABILITY IMAP4rev1] hi\r\n", steps, FAKE_END_WAIT, 0);

	assert_int_equal(client_login(c, "we\"ird", "p\xc3\xa4 ss"), IMAPQ_OK);
	assert_true(client_has_cap(c, "IDLE"));
	finish(&fx);
}

/* SASL without SASL-IR: the response goes after the server's "+". A refused login is
 * IMAPQ_E_AUTH. */
static void test_authenticate_without_sasl_ir(void **state)
{
	static const struct fake_step steps[] = {
	    {.expect = "c1 AUTHENTICATE PLAIN\r\n", .reply = "+ \r\n", .quiet_ms = 50},
	    {.expect = "AGRlbW8AcHc=\r\n", .reply = "c1 NO [AUTHENTICATIONFAILED] wrong\r\n"},
	};
	struct fixture fx;
	struct client *c =
	    START(&fx, "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n", steps, FAKE_END_WAIT, 0);

	assert_int_equal(client_login(c, "demo", "pw"), IMAPQ_E_AUTH);
	finish(&fx);
}

/* A command refused instead of "+" never sends its literal, and the next command goes out. */
static void test_refused_literal_is_dropped(void **state)
{
	static const struct fake_step steps[] = {
	    {.expect = "c1 APPEND jobs {5}\r\n",
	     .reply = "c1 NO [TOOBIG] too big\r\n",
	     .quiet_ms = 50},
	    {.expect = "c2 NOOP\r\n", .reply = "c2 OK\r\n"},
	};
	static const struct client_part append[] = {
	    {CLIENT_PART_TEXT, "APPEND jobs ", 0},
	    {CLIENT_PART_LITERAL, "hello", 5},
	};
	struct fixture fx;
	struct client *c =
	    START(&fx, "* OK [CAPABILITY IMAP4rev1] hi\r\n", steps, FAKE_END_WAIT, 0);

	assert_int_equal(client_cmd_parts(c, NULL, NULL, append, 2), IMAPQ_E_TOOBIG);
	assert_int_equal(client_reply(c)->status, CLIENT_STATUS_NO);
	assert_int_equal(client_cmdf(c, NULL, NULL, "NOOP"), IMAPQ_OK);
	finish(&fx);
}

struct pipeline {
	unsigned order[4];
	size_t done;
	size_t searches;
};

static void on_done(unsigned tag, const struct client_response *tagged, void *ctx)
{
	struct pipeline *p = ctx;

	assert_non_null(tagged);
	assert_int_equal(tagged->status, CLIENT_STATUS_OK);
	p->order[p->done++] = tag;
}

static void on_untagged(const struct client_response *r, void *ctx)
{
	struct pipeline *p = ctx;

	if (r->type == CLIENT_RESP_SEARCH && r->search.count == 1 && r->search.numbers[0] == 5)
		p->searches++;
}

/* Three commands in flight at once, answered out of order; APPEND with LITERAL+ goes in one
 * write and its APPENDUID is kept. */
static void test_pipelining(void **state)
{
	static const struct fake_step steps[] = {
	    {.expect = "c1 NOOP\r\nc2 CHECK\r\nc3 UID SEARCH ALL\r\n",
	     .reply = "* SEARCH 5\r\nc2 OK two\r\nc3 OK three\r\nc1 OK one\r\n"},
	    {.expect = "c4 APPEND jobs {2+}\r\nhi\r\n",
	     .reply = "c4 OK [APPENDUID 9 12] APPEND completed\r\n"},
	};
	static const struct client_part append[] = {
	    {CLIENT_PART_TEXT, "APPEND jobs ", 0},
	    {CLIENT_PART_LITERAL, "hi", 2},
	};
	struct fixture fx;
	struct client *c = START(&fx, GREETING_IMAPQD, steps, FAKE_END_WAIT, 0);
	struct pipeline p = {0};
	unsigned t1, t2, t3;

	client_set_handler(c, on_untagged, &p);
	assert_int_equal(client_submitf(c, on_done, &p, &t1, "NOOP"), IMAPQ_OK);
	assert_int_equal(client_submitf(c, on_done, &p, &t2, "CHECK"), IMAPQ_OK);
	assert_int_equal(client_submitf(c, on_done, &p, &t3, "UID SEARCH ALL"), IMAPQ_OK);
	assert_int_equal(client_in_flight(c), 3);
	assert_true(client_events(c) & POLLOUT);
	assert_int_equal(client_flush(c), IMAPQ_OK);
	assert_int_equal(client_wait(c, t1), IMAPQ_OK);
	assert_string_equal(client_reply(c)->text, "one");
	assert_int_equal(client_in_flight(c), 0);
	assert_int_equal(p.done, 3);
	assert_int_equal(p.order[0], t2);
	assert_int_equal(p.order[1], t3);
	assert_int_equal(p.order[2], t1);
	assert_int_equal(p.searches, 1);
	assert_int_equal(client_cmd_parts(c, NULL, NULL, append, 2), IMAPQ_OK);
	assert_int_equal(client_reply(c)->code, CLIENT_CODE_APPENDUID);
	assert_int_equal(client_reply(c)->number, 9);
	assert_true(seqset_contains(client_reply(c)->set, 12));
	finish(&fx);
}

/* The claim of README.md against imapqd's answers, with the body literal split across writes,
 * then the ack. */
static void test_claim_and_ack_imapqd(void **state)
{
	static const struct fake_step steps[] = {
	    {.expect = "c1 UID SEARCH RETURN (MIN) " READY "\r\n",
	     .reply = "* ESEARCH (TAG \"c1\") UID MIN 4\r\nc1 OK done\r\n"},
	    {.expect = "c2 UID FETCH 4 (FLAGS MODSEQ)\r\n",
	     .reply = "* 2 FETCH (UID 4 FLAGS (\\Recent) MODSEQ (7))\r\nc2 OK\r\n"},
	    {.expect = "c3 UID STORE 4 (UNCHANGEDSINCE 7) +FLAGS.SILENT ($Claimed)\r\n",
	     .reply = "* 2 FETCH (UID 4 MODSEQ (9))\r\nc3 OK STORE completed\r\n"},
	    {.expect = "c4 UID FETCH 4 (BODY.PEEK[TEXT])\r\n",
	     .reply = "* 2 FETCH (UID 4 BODY[TEXT] {5}\r" FAKE_SPLIT "\nab" FAKE_SPLIT
		      "cde)\r\nc4 OK\r\n"},
	    {.expect = "c5 UID STORE 4 (UNCHANGEDSINCE 9) +FLAGS.SILENT (\\Deleted)\r\n",
	     .reply = "* 2 FETCH (UID 4 MODSEQ (10))\r\nc5 OK\r\n"},
	    {.expect = "c6 UID EXPUNGE 4\r\n", .reply = "* 2 EXPUNGE\r\nc6 OK\r\n"},
	};
	struct fixture fx;
	struct client *c = START(&fx, GREETING_IMAPQD, steps, FAKE_END_WAIT, 0);
	struct client_job job;

	assert_int_equal(client_job_claim(c, "TEXT", &job), IMAPQ_OK);
	assert_int_equal(job.uid, 4);
	assert_int_equal(job.receipt, 9);
	assert_int_equal(job.lost, 0);
	assert_int_equal(job.body_len, 5);
	assert_string_equal(job.body, "abcde");
	assert_int_equal(client_job_ack(c, job.uid, job.receipt), IMAPQ_OK);
	client_job_clear(&job);
	assert_null(job.body);
	finish(&fx);
}

/* As Dovecot answers: plain SEARCH, a stale search answer, a losing store answered with an
 * echo that carries FLAGS and a plain OK; then the win. Ack without UIDPLUS uses EXPUNGE, and
 * imapqd's entries are refused as unsupported without a byte sent. */
static void test_claim_dovecot_style(void **state)
{
	static const struct fake_step steps[] = {
	    {.expect = "c1 UID SEARCH " READY "\r\n", .reply = "* SEARCH 3 2\r\nc1 OK\r\n"},
	    {.expect = "c2 UID FETCH 2 (FLAGS MODSEQ)\r\n",
	     .reply = "* 1 FETCH (UID 2 FLAGS ($Claimed) MODSEQ (5))\r\nc2 OK\r\n"},
	    {.expect = "c3 UID SEARCH " READY "\r\n", .reply = "* SEARCH 3\r\nc3 OK\r\n"},
	    {.expect = "c4 UID FETCH 3 (FLAGS MODSEQ)\r\n",
	     .reply = "* 2 FETCH (UID 3 FLAGS () MODSEQ (6))\r\nc4 OK\r\n"},
	    {.expect = "c5 UID STORE 3 (UNCHANGEDSINCE 6) +FLAGS.SILENT ($Claimed)\r\n",
	     .reply =
		 "* 2 FETCH (UID 3 FLAGS ($Claimed) MODSEQ (8))\r\nc5 OK Store completed.\r\n"},
	    {.expect = "c6 UID SEARCH " READY "\r\n", .reply = "* SEARCH 4\r\nc6 OK\r\n"},
	    {.expect = "c7 UID FETCH 4 (FLAGS MODSEQ)\r\n",
	     .reply = "* 3 FETCH (UID 4 FLAGS (\\Seen) MODSEQ (9))\r\nc7 OK\r\n"},
	    {.expect = "c8 UID STORE 4 (UNCHANGEDSINCE 9) +FLAGS.SILENT ($Claimed)\r\n",
	     .reply = "* 3 FETCH (UID 4 MODSEQ (10))\r\nc8 OK\r\n"},
	    {.expect = "c9 UID STORE 4 (UNCHANGEDSINCE 10) +FLAGS.SILENT (\\Deleted)\r\n",
	     .reply = "* 3 FETCH (UID 4 MODSEQ (11))\r\nc9 OK\r\n"},
	    {.expect = "c10 EXPUNGE\r\n", .reply = "* 3 EXPUNGE\r\nc10 OK\r\n"},
	};
	struct fixture fx;
	struct client *c = START(&fx, GREETING_PLAIN, steps, FAKE_END_WAIT, 0);
	struct client_job job;
	uint64_t receipt = 0;
	unsigned attempts;

	assert_int_equal(client_job_claim(c, NULL, &job), IMAPQ_OK);
	assert_int_equal(job.uid, 4);
	assert_int_equal(job.receipt, 10);
	assert_int_equal(job.lost, 2);
	assert_null(job.body);
	assert_int_equal(client_job_ack(c, job.uid, job.receipt), IMAPQ_OK);
	assert_int_equal(client_job_release_delay(c, 4, 11, 30, &receipt), IMAPQ_E_UNSUPPORTED);
	assert_int_equal(client_job_extend(c, 4, 11, 30, &receipt), IMAPQ_E_UNSUPPORTED);
	assert_int_equal(client_job_attempts(c, 4, &attempts), IMAPQ_E_UNSUPPORTED);
	assert_non_null(strstr(client_error(c), "ANNOTATE-EXPERIMENT-1"));
	assert_int_equal(receipt, 0);
	finish(&fx);
}

/* [MODIFIED] loses the round; an empty ESEARCH then means no job is ready. */
static void test_claim_modified_then_empty(void **state)
{
	static const struct fake_step steps[] = {
	    {.expect = "c1 UID SEARCH RETURN (MIN) " READY "\r\n",
	     .reply = "* ESEARCH (TAG \"c1\") UID MIN 1\r\nc1 OK\r\n"},
	    {.expect = "c2 UID FETCH 1 (FLAGS MODSEQ)\r\n",
	     .reply = "* 1 FETCH (UID 1 FLAGS () MODSEQ (3))\r\nc2 OK\r\n"},
	    {.expect = "c3 UID STORE 1 (UNCHANGEDSINCE 3) +FLAGS.SILENT ($Claimed)\r\n",
	     .reply = "* 1 FETCH (UID 1 FLAGS ($Claimed) MODSEQ (4))\r\nc3 OK [MODIFIED 1] "
		      "Conditional STORE "
		      "failed\r\n"},
	    {.expect = "c4 UID SEARCH RETURN (MIN) " READY "\r\n",
	     .reply = "* ESEARCH (TAG \"c4\") UID\r\nc4 OK\r\n"},
	};
	struct fixture fx;
	struct client *c = START(&fx, GREETING_IMAPQD, steps, FAKE_END_WAIT, 0);
	struct client_job job;

	assert_int_equal(client_job_claim(c, "", &job), IMAPQ_E_NOTFOUND);
	assert_int_equal(job.uid, 0);
	finish(&fx);
}

/* Each helper tells stale (MODIFIED), gone (no echo) and refused apart. */
static void test_job_outcomes(void **state)
{
	static const struct fake_step steps[] = {
	    {.expect = "c1 UID STORE 5 (UNCHANGEDSINCE 3) +FLAGS.SILENT (\\Deleted)\r\n",
	     .reply = "c1 OK [MODIFIED 5] Conditional STORE failed\r\n"},
	    {.expect = "c2 UID STORE 6 (UNCHANGEDSINCE 3) +FLAGS.SILENT (\\Deleted)\r\n",
	     .reply = "c2 OK done\r\n"},
	    {.expect = "c3 UID STORE 7 (UNCHANGEDSINCE 4) -FLAGS.SILENT ($Claimed)\r\n",
	     .reply = "* 1 FETCH (UID 7 MODSEQ (11))\r\nc3 OK\r\n"},
	    {.expect =
		 "c4 UID STORE 7 (UNCHANGEDSINCE 11) ANNOTATION (/vendor/imapq/lease (value.shared "
		 "\"120\"))\r\n",
	     .reply = "* 1 FETCH (UID 7 MODSEQ (12))\r\nc4 OK\r\n"},
	    {.expect =
		 "c5 UID STORE 7 (UNCHANGEDSINCE 12) ANNOTATION (/vendor/imapq/delay (value.shared "
		 "\"30\"))\r\n",
	     .reply = "c5 NO [CANNOT] Job 7 is not claimed\r\n"},
	    {.expect = "c6 UID FETCH 7 (ANNOTATION (/vendor/imapq/attempts value.shared))\r\n",
	     .reply =
		 "* 1 FETCH (UID 7 ANNOTATION (/vendor/imapq/attempts (value.shared \"2\")))\r\nc6 "
		 "OK\r\n"},
	    {.expect = "c7 UID FETCH 9 (ANNOTATION (/vendor/imapq/attempts value.shared))\r\n",
	     .reply = "c7 OK\r\n"},
	    {.expect = "c8 UID STORE 8 (UNCHANGEDSINCE 1) -FLAGS.SILENT ($Claimed)\r\n",
	     .reply = "c8 NO [SERVERBUG] oops\r\n"},
	};
	struct fixture fx;
	struct client *c = START(&fx, GREETING_IMAPQD, steps, FAKE_END_WAIT, 0);
	uint64_t receipt = 0;
	unsigned attempts = 0;

	assert_int_equal(client_job_ack(c, 5, 3), IMAPQ_E_MODIFIED);
	assert_int_equal(client_job_ack(c, 6, 3), IMAPQ_E_NOTFOUND);
	assert_int_equal(client_job_release(c, 7, 4, &receipt), IMAPQ_OK);
	assert_int_equal(receipt, 11);
	assert_int_equal(client_job_extend(c, 7, 11, 120, &receipt), IMAPQ_OK);
	assert_int_equal(receipt, 12);
	assert_int_equal(client_job_release_delay(c, 7, 12, 30, NULL), IMAPQ_E_MODIFIED);
	assert_int_equal(client_job_attempts(c, 7, &attempts), IMAPQ_OK);
	assert_int_equal(attempts, 2);
	assert_int_equal(client_job_attempts(c, 9, &attempts), IMAPQ_E_NOTFOUND);
	assert_int_equal(client_job_release(c, 8, 1, NULL), IMAPQ_E_REFUSED);
	finish(&fx);
}

/* IDLE: woken by an EXISTS, a timeout without updates, and updates sent before "+". */
static void test_idle(void **state)
{
	static const struct fake_step steps[] = {
	    {.expect = "c1 IDLE\r\n", .reply = "+ idling\r\n"},
	    {.expect = NULL, .reply = "* 3 EXISTS\r\n", .pause_ms = 100},
	    {.expect = "DONE\r\n", .reply = "c1 OK IDLE terminated\r\n"},
	    {.expect = "c2 IDLE\r\n", .reply = "+ idling\r\n"},
	    {.expect = "DONE\r\n", .reply = "c2 OK\r\n"},
	    {.expect = "c3 IDLE\r\n", .reply = "* 1 FETCH (UID 1 FLAGS ())\r\n+ idling\r\n"},
	    {.expect = "DONE\r\n", .reply = "c3 OK\r\n"},
	};
	struct fixture fx;
	struct client *c = START(&fx, GREETING_IMAPQD, steps, FAKE_END_WAIT, 0);
	bool woke = false;
	long long t0 = now_ms();

	assert_int_equal(client_job_wait(c, 5000, &woke), IMAPQ_OK);
	assert_true(woke);
	assert_true(now_ms() - t0 < 4000);
	assert_int_equal(client_mailbox(c)->exists, 3);
	assert_int_equal(client_idle_start(c), IMAPQ_OK);
	t0 = now_ms();
	assert_int_equal(client_idle_wait(c, 150, &woke), IMAPQ_OK);
	assert_false(woke);
	assert_true(now_ms() - t0 >= 140);
	assert_int_equal(client_idle_done(c), IMAPQ_OK);
	assert_int_equal(client_job_wait(c, 5000, &woke), IMAPQ_OK);
	assert_true(woke);
	finish(&fx);
}

/* Without IDLE, waiting polls with NOOP. */
static void test_wait_without_idle(void **state)
{
	static const struct fake_step steps[] = {
	    {.expect = "c1 NOOP\r\n", .reply = "c1 OK\r\n"},
	    {.expect = "c2 NOOP\r\n", .reply = "* 4 EXISTS\r\nc2 OK\r\n"},
	};
	struct fixture fx;
	struct client *c =
	    START(&fx, "* OK [CAPABILITY IMAP4rev1 CONDSTORE] hi\r\n", steps, FAKE_END_WAIT, 0);
	bool woke = false;

	assert_int_equal(client_idle_start(c), IMAPQ_E_UNSUPPORTED);
	assert_int_equal(client_job_wait(c, 5000, &woke), IMAPQ_OK);
	assert_true(woke);
	finish(&fx);
}

/* A server that closes inside a literal breaks the client, and it stays broken. */
static void test_disconnect_mid_response(void **state)
{
	static const struct fake_step steps[] = {
	    {.expect = "c1 UID FETCH 1 (BODY.PEEK[])\r\n",
	     .reply = "* 1 FETCH (UID 1 BODY[] {10}\r\nabc"},
	};
	struct fixture fx;
	struct client *c = START(&fx, GREETING_IMAPQD, steps, FAKE_END_CLOSE, 0);

	assert_int_equal(client_cmdf(c, NULL, NULL, "UID FETCH 1 (BODY.PEEK[])"), IMAPQ_E_IO);
	assert_int_equal(client_cmdf(c, NULL, NULL, "NOOP"), IMAPQ_E_IO);
	assert_int_equal(client_submitf(c, NULL, NULL, NULL, "NOOP"), IMAPQ_E_IO);
	finish(&fx);
}

static void test_malformed_response(void **state)
{
	static const struct fake_step steps[] = {
	    {.expect = "c1 NOOP\r\n", .reply = "* 1 FETCH (UID x)\r\n"},
	};
	struct fixture fx;
	struct client *c = START(&fx, GREETING_IMAPQD, steps, FAKE_END_WAIT, 0);

	assert_int_equal(client_cmdf(c, NULL, NULL, "NOOP"), IMAPQ_E_INVALID);
	assert_non_null(strstr(client_error(c), "malformed"));
	finish(&fx);
}

static void test_unknown_tag(void **state)
{
	static const struct fake_step steps[] = {
	    {.expect = "c1 NOOP\r\n", .reply = "c7 OK\r\n"},
	};
	struct fixture fx;
	struct client *c = START(&fx, GREETING_IMAPQD, steps, FAKE_END_WAIT, 0);

	assert_int_equal(client_cmdf(c, NULL, NULL, "NOOP"), IMAPQ_E_INVALID);
	finish(&fx);
}

static void test_bye_and_logout(void **state)
{
	static const struct fake_step bye[] = {
	    {.expect = "c1 NOOP\r\n", .reply = "* BYE going away\r\n"},
	};
	static const struct fake_step logout[] = {
	    {.expect = "c1 LOGOUT\r\n", .reply = "* BYE bye\r\nc1 OK LOGOUT completed\r\n"},
	};
	struct fixture fx;
	struct client *c = START(&fx, GREETING_IMAPQD, bye, FAKE_END_CLOSE, 0);

	assert_int_equal(client_cmdf(c, NULL, NULL, "NOOP"), IMAPQ_E_UNAVAILABLE);
	assert_non_null(strstr(client_error(c), "going away"));
	finish(&fx);
	c = START(&fx, GREETING_IMAPQD, logout, FAKE_END_WAIT, 0);
	assert_int_equal(client_logout(c), IMAPQ_OK);
	finish(&fx);
}

static void test_timeout(void **state)
{
	static const struct fake_step steps[] = {
	    {.expect = "c1 NOOP\r\n", .reply = NULL},
	};
	struct fixture fx;
	struct client *c = START(&fx, GREETING_IMAPQD, steps, FAKE_END_HOLD, 200);
	long long t0 = now_ms();

	assert_int_equal(client_cmdf(c, NULL, NULL, "NOOP"), IMAPQ_E_TIMEOUT);
	assert_true(now_ms() - t0 < 2000);
	finish(&fx);
}

static void test_connect_failures(void **state)
{
	struct fake_server fs = {.greeting = "* BYE too many connections\r\n",
				 .end = FAKE_END_CLOSE};
	struct client_options o = {.host = "127.0.0.1"};
	struct client *c = NULL;
	char err[256];

	assert_true(fake_start(&fs));
	o.port = fs.port;
	assert_int_equal(client_connect(&o, err, sizeof(err), &c), IMAPQ_E_UNAVAILABLE);
	assert_null(c);
	assert_null(fake_finish(&fs));
	/* The port is closed now: nothing listens. */
	assert_int_equal(client_connect(&o, err, sizeof(err), &c), IMAPQ_E_IO);
	assert_non_null(strstr(err, "cannot connect"));
	o.host = "no-such-host.invalid";
	assert_int_equal(client_connect(&o, err, sizeof(err), &c), IMAPQ_E_IO);
	assert_null(c);
}

static void test_status_err(void **state)
{
	assert_int_equal(client_status_err(CLIENT_STATUS_OK, NULL), IMAPQ_OK);
	assert_int_equal(client_status_err(CLIENT_STATUS_NO, NULL), IMAPQ_E_REFUSED);
	assert_int_equal(client_status_err(CLIENT_STATUS_NO, "TRYCREATE"), IMAPQ_E_NONEXISTENT);
	assert_int_equal(client_status_err(CLIENT_STATUS_NO, "OVERQUOTA"), IMAPQ_E_OVERQUOTA);
	assert_int_equal(client_status_err(CLIENT_STATUS_BAD, "NOPERM"), IMAPQ_E_REFUSED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_login_sasl_ir_and_select),
	    cmocka_unit_test(test_login_literal_waits_for_continuation),
	    cmocka_unit_test(test_authenticate_without_sasl_ir),
	    cmocka_unit_test(test_refused_literal_is_dropped),
	    cmocka_unit_test(test_pipelining),
	    cmocka_unit_test(test_claim_and_ack_imapqd),
	    cmocka_unit_test(test_claim_dovecot_style),
	    cmocka_unit_test(test_claim_modified_then_empty),
	    cmocka_unit_test(test_job_outcomes),
	    cmocka_unit_test(test_idle),
	    cmocka_unit_test(test_wait_without_idle),
	    cmocka_unit_test(test_disconnect_mid_response),
	    cmocka_unit_test(test_malformed_response),
	    cmocka_unit_test(test_unknown_tag),
	    cmocka_unit_test(test_bye_and_logout),
	    cmocka_unit_test(test_timeout),
	    cmocka_unit_test(test_connect_failures),
	    cmocka_unit_test(test_status_err),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
