/* The examples of RFC 7162 (CONDSTORE and QRESYNC) replayed against the server in process. Our
 * mod-sequences and UIDs are small, so each test builds the example's situation (the same
 * messages and the same prior changes, scaled down) and asserts the example's shape: which
 * messages are reported, in which responses, and how the mod-sequences relate. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "tests/unit/imap_harness.h"

/* Selects and leaves a mailbox once, so later sessions see no \Recent flags. */
static void settle(struct harness *h, const char *mailbox)
{
	struct conn *c = conn_select(h, mailbox, NULL);
	conn_close(&c);
}

/* The mailbox's HIGHESTMODSEQ now. */
static uint64_t hms(struct harness *h, const char *mailbox)
{
	return harness_status(h, mailbox).highestmodseq;
}

/* The MODSEQ of the first line starting with prefix; fails when there is none. */
static uint64_t modseq_of(const struct lines *u, const char *prefix)
{
	int i = lines_find(u, prefix);
	if (i < 0) {
		lines_dump(u, "untagged");
		fail_msg("no line starting [%s]", prefix);
	}
	return line_number(u->v[i], "MODSEQ");
}

/* Applies "* n EXPUNGE" lines to a list of UIDs in sequence order; returns the new count. */
static size_t apply_expunges(uint32_t *uids, size_t n, const struct lines *u)
{
	for (size_t i = 0; i < u->n; i++) {
		unsigned k;
		char tail;
		if (sscanf(u->v[i], "* %u EXPUNGE%c", &k, &tail) != 1)
			continue;
		assert_true(k >= 1 && k <= n);
		memmove(uids + k - 1, uids + k, (n - k) * sizeof *uids);
		n--;
	}
	return n;
}

/* Builds text, whose one conversion is %llu, with v; every caller passes a literal. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
static const char *fmt(char *buf, size_t cap, const char *text, unsigned long long v)
{
	snprintf(buf, cap, text, v);
	return buf;
}
#pragma GCC diagnostic pop

/* 3.1.2.1 Example 1: "S: * OK [HIGHESTMODSEQ 715194045007]" on SELECT. */
static void test_3_1_2_1_example1_highestmodseq(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "INBOX", 3);
	struct conn *c = conn_open(h);
	struct lines u = {0};
	command_ok(c, "SELECT INBOX", "OK [READ-WRITE]", &u);
	char want[96];
	assert_line(&u,
		    fmt(want, sizeof want, "* OK [HIGHESTMODSEQ %llu] Highest", hms(h, "INBOX")));
	lines_free(&u);
	conn_close(&c);
}

/* 3.1.2.2 Example 2: "S: * OK [NOMODSEQ] Sorry, ..." never happens: every mailbox keeps
 * mod-sequences, so the commands a NOMODSEQ mailbox must refuse are accepted. */
static void test_3_1_2_2_example2_never_nomodseq(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "INBOX", 1);
	struct conn *c = conn_open(h);
	struct lines u = {0};
	command_ok(c, "EXAMINE INBOX (CONDSTORE)", "OK [READ-ONLY]", &u);
	assert_int_equal(lines_count_sub(&u, "NOMODSEQ"), 0);
	assert_int_equal(lines_count(&u, "* OK [HIGHESTMODSEQ "), 1);
	lines_free(&u);
	command_ok(c, "FETCH 1 (MODSEQ) (CHANGEDSINCE 1)", "OK", NULL);
	command_ok(c, "SEARCH MODSEQ 1", "OK", NULL);
	command_ok(c, "SELECT INBOX", "OK", NULL);
	command_ok(c, "STORE 1 (UNCHANGEDSINCE 100) +FLAGS (\\Seen)", "OK", NULL);
	conn_close(&c);
}

/* Fills INBOX with UIDs 1..8 and expunges 1, 2, 3 and 5, leaving 4, 6, 7, 8 as messages 1-4:
 * the UID-to-number map of Examples 3 and 12. */
static void uids_4_6_7_8(struct harness *h)
{
	harness_fill(h, "INBOX", 8);
	harness_expunge(h, "INBOX", 1, 3);
	harness_expunge(h, "INBOX", 5, 5);
	settle(h, "INBOX");
}

/* 3.1.3 Example 3: "C: a103 UID STORE 6,4,8 (UNCHANGEDSINCE 12121230045) +FLAGS.SILENT". */
static void test_3_1_3_example3_all_pass(void **state)
{
	struct harness *h = *state;
	uids_4_6_7_8(h);
	uint64_t since = hms(h, "INBOX");
	struct conn *c = conn_select(h, "INBOX", NULL);
	struct lines u = {0};
	char cmd[128];
	command_ok(c,
		   fmt(cmd, sizeof cmd,
		       "UID STORE 6,4,8 (UNCHANGEDSINCE %llu) +FLAGS.SILENT (\\Deleted)",
		       (unsigned long long)since),
		   "OK STORE completed", &u);
	/* The first CONDSTORE-enabling command also reports HIGHESTMODSEQ (RFC 7162 3.1). */
	assert_int_equal(u.n - lines_count(&u, "* OK [HIGHESTMODSEQ "), 3);
	assert_true(modseq_of(&u, "* 1 FETCH (UID 4 MODSEQ (") > since);
	assert_true(modseq_of(&u, "* 2 FETCH (UID 6 MODSEQ (") > since);
	assert_true(modseq_of(&u, "* 4 FETCH (UID 8 MODSEQ (") > since);
	assert_int_equal(modseq_of(&u, "* 4 FETCH"), harness_modseq(h, "INBOX", 8));
	lines_free(&u);
	assert_true(harness_message_flags(h, "INBOX", 6) & STORE_DELETED);
	/* The store was a CONDSTORE enabling command: later FETCH responses carry MODSEQ. */
	harness_flags(h, "INBOX", 7, STORE_FLAGS_ADD, STORE_FLAGGED);
	command_ok(c, "NOOP", "OK", &u);
	char want[96];
	assert_line(&u, fmt(want, sizeof want, "* 3 FETCH (UID 7 FLAGS (\\Flagged) MODSEQ (%llu))",
			    harness_modseq(h, "INBOX", 7)));
	lines_free(&u);
	conn_close(&c);
}

/* 3.1.3 Example 4: "C: a104 STORE * (UNCHANGEDSINCE 12121230045) +FLAGS.SILENT". */
static void test_3_1_3_example4_store_last(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "INBOX", 5);
	settle(h, "INBOX");
	uint64_t since = hms(h, "INBOX");
	struct conn *c = conn_select(h, "INBOX", NULL);
	struct lines u = {0};
	char cmd[128];
	command_ok(c,
		   fmt(cmd, sizeof cmd,
		       "STORE * (UNCHANGEDSINCE %llu) +FLAGS.SILENT (\\Deleted $Processed)",
		       (unsigned long long)since),
		   "OK STORE completed", &u);
	assert_int_equal(lines_count_sub(&u, "FETCH"), 1);
	assert_true(modseq_of(&u, "* 5 FETCH (UID 5 MODSEQ (") > since);
	lines_free(&u);
	conn_close(&c);
}

/* 3.1.3 Example 5: "S: * OK [HIGHESTMODSEQ 12111230047]" for the first enabling command. */
static void test_3_1_3_example5_first_enabling_command(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "INBOX", 5);
	harness_flags(h, "INBOX", 5, STORE_FLAGS_ADD, STORE_DELETED);
	settle(h, "INBOX");
	struct conn *c = conn_select(h, "INBOX", NULL);
	/* Someone else changes the mailbox after the SELECT reported HIGHESTMODSEQ. */
	harness_flags(h, "INBOX", 1, STORE_FLAGS_ADD, STORE_FLAGGED);
	uint64_t now = hms(h, "INBOX");
	struct lines u = {0};
	char cmd[128], want[96];
	command_ok(c,
		   fmt(cmd, sizeof cmd, "STORE 5 (UNCHANGEDSINCE %llu) -FLAGS.SILENT (\\Deleted)",
		       (unsigned long long)now),
		   "OK STORE completed", &u);
	assert_true(lines_find(&u, fmt(want, sizeof want, "* OK [HIGHESTMODSEQ %llu] ", now)) >= 0);
	assert_true(modseq_of(&u, "* 5 FETCH (UID 5 MODSEQ (") > now);
	lines_free(&u);
	conn_close(&c);
}

/* Nine settled messages; 7 and 9 then changed by someone else; returns the mod-sequence the
 * client knew before those changes. */
static uint64_t nine_with_7_and_9_changed(struct harness *h, struct conn **c_r)
{
	harness_fill(h, "INBOX", 9);
	settle(h, "INBOX");
	uint64_t since = hms(h, "INBOX");
	*c_r = conn_select(h, "INBOX", "(CONDSTORE)");
	harness_flags(h, "INBOX", 7, STORE_FLAGS_ADD, STORE_SEEN | STORE_DELETED);
	harness_flags(h, "INBOX", 9, STORE_FLAGS_ADD, STORE_ANSWERED);
	return since;
}

/* 3.1.3 Example 6: "S: d105 OK [MODIFIED 7,9] Conditional STORE failed". */
static void test_3_1_3_example6_modified(void **state)
{
	struct harness *h = *state;
	struct conn *c;
	uint64_t since = nine_with_7_and_9_changed(h, &c);
	/* The client has already seen the changes, but stores with its old mod-sequence. */
	command_ok(c, "NOOP", "OK", NULL);
	struct lines u = {0};
	char cmd[128];
	command_ok(c,
		   fmt(cmd, sizeof cmd,
		       "STORE 7,5,9 (UNCHANGEDSINCE %llu) +FLAGS.SILENT (\\Deleted)",
		       (unsigned long long)since),
		   "OK [MODIFIED 7,9] Conditional STORE failed", &u);
	assert_int_equal(u.n, 1);
	assert_true(modseq_of(&u, "* 5 FETCH (UID 5 MODSEQ (") > since);
	lines_free(&u);
	assert_true(harness_message_flags(h, "INBOX", 5) & STORE_DELETED);
	assert_int_equal(harness_message_flags(h, "INBOX", 9), STORE_ANSWERED);
	conn_close(&c);
}

/* 3.1.3 Example 7: "S: * 7 FETCH (MODSEQ (320162342) FLAGS (\Seen \Deleted))" as well. */
static void test_3_1_3_example7_modified_with_fetch(void **state)
{
	struct harness *h = *state;
	struct conn *c;
	uint64_t since = nine_with_7_and_9_changed(h, &c);
	struct lines u = {0};
	char cmd[128], want[96];
	command_ok(c,
		   fmt(cmd, sizeof cmd,
		       "STORE 7,5,9 (UNCHANGEDSINCE %llu) +FLAGS.SILENT (\\Deleted)",
		       (unsigned long long)since),
		   "OK [MODIFIED 7,9]", &u);
	assert_int_equal(u.n, 3);
	assert_line(&u, fmt(want, sizeof want,
			    "* 7 FETCH (UID 7 FLAGS (\\Seen \\Deleted) MODSEQ (%llu))",
			    harness_modseq(h, "INBOX", 7)));
	assert_line(&u, fmt(want, sizeof want, "* 9 FETCH (UID 9 FLAGS (\\Answered) MODSEQ (%llu))",
			    harness_modseq(h, "INBOX", 9)));
	assert_true(modseq_of(&u, "* 5 FETCH (UID 5 MODSEQ (") > since);
	lines_free(&u);
	conn_close(&c);
}

/* 3.1.3 Example 8: "C: a102 STORE 12 (UNCHANGEDSINCE 0)" always fails. */
static void test_3_1_3_example8_unchangedsince_zero(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "INBOX", 12);
	struct conn *c = conn_select(h, "INBOX", NULL);
	struct lines u = {0};
	command_ok(c, "STORE 12 (UNCHANGEDSINCE 0) +FLAGS.SILENT ($MDNSent)",
		   "OK [MODIFIED 12] Conditional STORE failed", &u);
	assert_int_equal(lines_count_sub(&u, "FETCH"), 0);
	lines_free(&u);
	assert_int_equal(harness_message_flags(h, "INBOX", 12), 0);
	command_ok(c, "STORE 12 (UNCHANGEDSINCE 0) -FLAGS.SILENT (\\Seen)", "OK [MODIFIED 12]",
		   NULL);
	conn_close(&c);
}

/* Six settled messages (the RFC's 100:150 with 101 as message 2), the client knowing the
 * mailbox as it was; returns that mod-sequence. */
static uint64_t six_selected(struct harness *h, struct conn **c_r)
{
	harness_fill(h, "INBOX", 6);
	settle(h, "INBOX");
	*c_r = conn_select(h, "INBOX", "(CONDSTORE)");
	return hms(h, "INBOX");
}

/* Stores $Processed on 1:6 unless changed since `since`: message 2 must fail, the others pass. */
static void store_processed(struct harness *h, struct conn *c, uint64_t since, struct lines *u)
{
	char cmd[128];
	command_ok(c,
		   fmt(cmd, sizeof cmd,
		       "STORE 1:6 (UNCHANGEDSINCE %llu) +FLAGS.SILENT ($Processed)",
		       (unsigned long long)since),
		   "OK [MODIFIED 2] Conditional STORE failed", u);
	const char *passed[] = {"* 1 FETCH (UID 1 MODSEQ (", "* 3 FETCH (UID 3 MODSEQ (",
				"* 4 FETCH (UID 4 MODSEQ (", "* 5 FETCH (UID 5 MODSEQ (",
				"* 6 FETCH (UID 6 MODSEQ ("};
	for (size_t i = 0; i < 5; i++)
		assert_true(modseq_of(u, passed[i]) > since);
	assert_int_equal(lines_count(u, "* 2 FETCH (UID 2 MODSEQ"), 0);
	(void)h;
}

/* 3.1.3 Example 9: "S: a106 OK [MODIFIED 101] Conditional STORE failed", then a retry. */
static void test_3_1_3_example9_modified_then_retry(void **state)
{
	struct harness *h = *state;
	struct conn *c;
	uint64_t since = six_selected(h, &c);
	uint64_t processed = harness_keyword(h, "INBOX", "$Processed");
	harness_flags(h, "INBOX", 2, STORE_FLAGS_ADD, processed);
	struct lines u = {0};
	char want[128], cmd[128];
	store_processed(h, c, since, &u);
	/* The client learns why by its next NOOP at the latest. */
	command_ok(c, "NOOP", "OK", &u);
	assert_line(&u, fmt(want, sizeof want, "* 2 FETCH (UID 2 FLAGS ($Processed) MODSEQ (%llu))",
			    harness_modseq(h, "INBOX", 2)));
	lines_free(&u);
	/* Or another flag changed: the client retries with the new mod-sequence and wins. */
	harness_flags(h, "INBOX", 3, STORE_FLAGS_ADD, STORE_DELETED | STORE_ANSWERED);
	uint64_t m3 = harness_modseq(h, "INBOX", 3);
	command_ok(c, "NOOP", "OK", &u);
	assert_line(
	    &u, fmt(want, sizeof want,
		    "* 3 FETCH (UID 3 FLAGS (\\Answered \\Deleted $Processed) MODSEQ (%llu))", m3));
	lines_free(&u);
	command_ok(c,
		   fmt(cmd, sizeof cmd, "STORE 3 (UNCHANGEDSINCE %llu) -FLAGS.SILENT ($Processed)",
		       (unsigned long long)m3),
		   "OK STORE completed", &u);
	assert_true(modseq_of(&u, "* 3 FETCH (UID 3 MODSEQ (") > m3);
	lines_free(&u);
	conn_close(&c);
}

/* 3.1.3 Example 10: "S: * 101 FETCH (MODSEQ (303011130956) FLAGS ($Processed))" in the STORE's
 * own response, so the client need not poll. */
static void test_3_1_3_example10_unsolicited_fetch(void **state)
{
	struct harness *h = *state;
	struct conn *c;
	uint64_t since = six_selected(h, &c);
	/* Another client changed a different flag of message 2. The RFC's "nice" variant would
	 * still apply $Processed; imapq is exact instead (DESIGN.md): any change since fails. */
	harness_flags(h, "INBOX", 2, STORE_FLAGS_ADD, STORE_DELETED | STORE_ANSWERED);
	uint64_t m2 = harness_modseq(h, "INBOX", 2);
	struct lines u = {0};
	char want[128], cmd[128];
	store_processed(h, c, since, &u);
	assert_line(&u, fmt(want, sizeof want,
			    "* 2 FETCH (UID 2 FLAGS (\\Answered \\Deleted) MODSEQ (%llu))", m2));
	lines_free(&u);
	command_ok(c,
		   fmt(cmd, sizeof cmd, "STORE 2 (UNCHANGEDSINCE %llu) +FLAGS.SILENT ($Processed)",
		       (unsigned long long)m2),
		   "OK STORE completed", &u);
	assert_true(modseq_of(&u, "* 2 FETCH (UID 2 MODSEQ (") > m2);
	lines_free(&u);
	conn_close(&c);
}

/* 3.1.3 Example 11: "S: B001 NO [MODIFIED 2] Some of the messages no longer exist." */
static void test_3_1_3_example11_expunged_and_modified(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "INBOX", 7);
	settle(h, "INBOX");
	struct conn *c = conn_select(h, "INBOX", "(CONDSTORE)");
	uint64_t since = hms(h, "INBOX");
	harness_flags(h, "INBOX", 2, STORE_FLAGS_ADD, STORE_DELETED | STORE_ANSWERED);
	harness_expunge(h, "INBOX", 4, 7);
	struct lines u = {0};
	char cmd[128];
	command_ok(c,
		   fmt(cmd, sizeof cmd, "STORE 1:7 (UNCHANGEDSINCE %llu) +FLAGS (\\Seen)",
		       (unsigned long long)since),
		   "", &u);
	assert_true(modseq_of(&u, "* 1 FETCH (UID 1 FLAGS (\\Seen) MODSEQ (") > since);
	assert_true(modseq_of(&u, "* 3 FETCH (UID 3 FLAGS (\\Seen) MODSEQ (") > since);
	assert_int_equal(lines_count_sub(&u, "EXPUNGE"), 0);
	lines_free(&u);
	assert_int_equal(harness_message_flags(h, "INBOX", 2), STORE_DELETED | STORE_ANSWERED);
	command_ok(c, "NOOP", "OK", &u);
	uint32_t uids[7] = {1, 2, 3, 4, 5, 6, 7};
	assert_int_equal(apply_expunges(uids, 7, &u), 3);
	assert_int_equal(uids[2], 3);
	lines_free(&u);
	uint64_t m2 = harness_modseq(h, "INBOX", 2);
	command_ok(c,
		   fmt(cmd, sizeof cmd, "STORE 2 (UNCHANGEDSINCE %llu) +FLAGS (\\Seen)",
		       (unsigned long long)m2),
		   "OK STORE completed", &u);
	assert_true(modseq_of(&u, "* 2 FETCH (UID 2 FLAGS (\\Seen \\Answered \\Deleted) MODSEQ (") >
		    m2);
	lines_free(&u);
	conn_close(&c);
}

/* 3.1.3: "e105 STORE 7,3:9 (UNCHANGEDSINCE 12121230045)" must not fail the repeated 7. */
static void test_3_1_3_duplicate_message_in_set(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "INBOX", 9);
	struct conn *c = conn_select(h, "INBOX", NULL);
	struct lines u = {0};
	char cmd[128];
	command_ok(c,
		   fmt(cmd, sizeof cmd,
		       "STORE 7,3:9 (UNCHANGEDSINCE %llu) +FLAGS.SILENT (\\Deleted)",
		       (unsigned long long)hms(h, "INBOX")),
		   "OK STORE completed", &u);
	assert_int_equal(lines_count_sub(&u, " MODSEQ ("), 7);
	lines_free(&u);
	conn_close(&c);
}

/* 3.1.4.1 Example 12: "C: s100 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)". */
static void test_3_1_4_1_example12_changedsince(void **state)
{
	struct harness *h = *state;
	uids_4_6_7_8(h);
	uint64_t since = hms(h, "INBOX");
	harness_flags(h, "INBOX", 4, STORE_FLAGS_ADD, STORE_SEEN);
	harness_flags(h, "INBOX", 6, STORE_FLAGS_ADD, STORE_DELETED);
	uint64_t kw = harness_keyword(h, "INBOX", "$NoJunk") |
		      harness_keyword(h, "INBOX", "$AutoJunk") |
		      harness_keyword(h, "INBOX", "$MDNSent");
	harness_flags(h, "INBOX", 8, STORE_FLAGS_ADD, kw);
	struct conn *c = conn_select(h, "INBOX", NULL);
	struct lines u = {0};
	char cmd[96], want[128];
	command_ok(c, fmt(cmd, sizeof cmd, "UID FETCH 1:* (FLAGS) (CHANGEDSINCE %llu)", since),
		   "OK FETCH completed", &u);
	/* The first CONDSTORE-enabling command also reports HIGHESTMODSEQ (RFC 7162 3.1). */
	assert_int_equal(u.n - lines_count(&u, "* OK [HIGHESTMODSEQ "), 3);
	assert_line(&u, fmt(want, sizeof want, "* 1 FETCH (UID 4 FLAGS (\\Seen) MODSEQ (%llu))",
			    harness_modseq(h, "INBOX", 4)));
	assert_line(&u, fmt(want, sizeof want, "* 2 FETCH (UID 6 FLAGS (\\Deleted) MODSEQ (%llu))",
			    harness_modseq(h, "INBOX", 6)));
	assert_line(&u, fmt(want, sizeof want,
			    "* 4 FETCH (UID 8 FLAGS ($NoJunk $AutoJunk $MDNSent) MODSEQ (%llu))",
			    harness_modseq(h, "INBOX", 8)));
	lines_free(&u);
	conn_close(&c);
}

/* A change by another client that a FETCH shows in full is not shown again by the sync after
 * it; one the FETCH shows without its mod-sequence (CONDSTORE on) still is, with it. */
static void test_fetch_does_not_repeat_changes(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "INBOX", 3);
	struct conn *c = conn_select(h, "INBOX", NULL);
	struct lines u = {0};
	char cmd[96];
	harness_flags(h, "INBOX", 2, STORE_FLAGS_ADD, STORE_FLAGGED);
	command_ok(c, "FETCH 1:3 (FLAGS)", "OK", &u);
	assert_int_equal(lines_count(&u, "* 2 FETCH"), 1);
	lines_free(&u);
	uint64_t since = hms(h, "INBOX");
	harness_flags(h, "INBOX", 3, STORE_FLAGS_ADD, STORE_SEEN);
	command_ok(c, fmt(cmd, sizeof cmd, "UID FETCH 1:* (FLAGS) (CHANGEDSINCE %llu)", since),
		   "OK", &u);
	assert_int_equal(lines_count(&u, "* 3 FETCH"), 1);
	lines_free(&u);
	harness_flags(h, "INBOX", 1, STORE_FLAGS_ADD, STORE_SEEN);
	command_ok(c, "FETCH 1 (FLAGS)", "OK", &u);
	assert_int_equal(lines_count(&u, "* 1 FETCH"), 2);
	assert_int_equal(lines_count_sub(&u, "MODSEQ ("), 1);
	lines_free(&u);
	conn_close(&c);
}

/* 3.1.4.2 Example 13: "C: a FETCH 1:3 (MODSEQ)". */
static void test_3_1_4_2_example13_fetch_modseq(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "INBOX", 3);
	harness_flags(h, "INBOX", 2, STORE_FLAGS_ADD, STORE_SEEN);
	settle(h, "INBOX");
	struct conn *c = conn_select(h, "INBOX", NULL);
	struct lines u = {0};
	char want[96];
	command_ok(c, "FETCH 1:3 (MODSEQ)", "OK FETCH completed", &u);
	/* The first CONDSTORE-enabling command also reports HIGHESTMODSEQ (RFC 7162 3.1). */
	assert_int_equal(u.n - lines_count(&u, "* OK [HIGHESTMODSEQ "), 3);
	for (uint32_t i = 1; i <= 3; i++) {
		snprintf(want, sizeof want, "* %u FETCH (MODSEQ (%llu))", i,
			 (unsigned long long)harness_modseq(h, "INBOX", i));
		assert_line(&u, want);
	}
	lines_free(&u);
	/* FETCH MODSEQ is a CONDSTORE enabling command: later FETCH responses carry MODSEQ. */
	harness_flags(h, "INBOX", 1, STORE_FLAGS_ADD, STORE_FLAGGED);
	command_ok(c, "NOOP", "OK", &u);
	assert_line(&u, fmt(want, sizeof want, "* 1 FETCH (UID 1 FLAGS (\\Flagged) MODSEQ (%llu))",
			    harness_modseq(h, "INBOX", 1)));
	lines_free(&u);
	conn_close(&c);
}

/* 3.1.4.2 Example 14: "S: * 7 FETCH (FLAGS (\Deleted \Answered) MODSEQ (12121231000))" in the
 * other sessions. imapq keeps no per-user flags, so every session sees \Seen. */
static void test_3_1_4_2_example14_other_sessions(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "INBOX", 7);
	harness_flags(h, "INBOX", 7, STORE_FLAGS_ADD, STORE_ANSWERED);
	settle(h, "INBOX");
	struct conn *s1 = conn_select(h, "INBOX", "(CONDSTORE)");
	struct conn *s2 = conn_select(h, "INBOX", "(CONDSTORE)");
	struct lines u = {0};
	char want[128];
	command_ok(s1, "STORE 7 +FLAGS.SILENT (\\Deleted)", "OK", &u);
	uint64_t m = modseq_of(&u, "* 7 FETCH (UID 7 MODSEQ (");
	lines_free(&u);
	command_ok(s2, "NOOP", "OK", &u);
	assert_int_equal(u.n, 1);
	assert_line(&u, fmt(want, sizeof want,
			    "* 7 FETCH (UID 7 FLAGS (\\Answered \\Deleted) MODSEQ (%llu))", m));
	lines_free(&u);
	command_ok(s1, "STORE 7 +FLAGS.SILENT (\\Seen)", "OK", &u);
	uint64_t m2 = modseq_of(&u, "* 7 FETCH (UID 7 MODSEQ (");
	assert_true(m2 > m);
	lines_free(&u);
	command_ok(s2, "NOOP", "OK", &u);
	assert_line(&u,
		    fmt(want, sizeof want,
			"* 7 FETCH (UID 7 FLAGS (\\Seen \\Answered \\Deleted) MODSEQ (%llu))", m2));
	lines_free(&u);
	command_ok(s1, "STORE 7 -FLAGS.SILENT (\\Answered \\Seen)", "OK", &u);
	uint64_t m3 = modseq_of(&u, "* 7 FETCH (UID 7 MODSEQ (");
	lines_free(&u);
	command_ok(s2, "NOOP", "OK", &u);
	assert_line(
	    &u, fmt(want, sizeof want, "* 7 FETCH (UID 7 FLAGS (\\Deleted) MODSEQ (%llu))", m3));
	lines_free(&u);
	conn_close(&s1);
	conn_close(&s2);
}

/* 3.2.4: a FETCH that sets \Seen reports UID and MODSEQ once CONDSTORE is on. */
static void test_3_2_4_implicit_seen_fetch_has_uid_and_modseq(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "INBOX", 1);
	settle(h, "INBOX");
	struct conn *c = conn_select(h, "INBOX", "(CONDSTORE)");
	struct lines u = {0};
	command_ok(c, "FETCH 1 (BODY[TEXT])", "OK", &u);
	assert_non_null(strstr(u.v[0], "UID 1"));
	assert_int_equal(line_number(u.v[0], "MODSEQ"), harness_modseq(h, "INBOX", 1));
	lines_free(&u);
	conn_close(&c);
}

/* Five settled messages; 1, 2, 3 and 5 changed after the returned mod-sequence. */
static uint64_t five_with_changes(struct harness *h)
{
	harness_fill(h, "INBOX", 5);
	settle(h, "INBOX");
	uint64_t since = hms(h, "INBOX");
	harness_flags(h, "INBOX", 1, STORE_FLAGS_ADD, STORE_DRAFT);
	harness_flags(h, "INBOX", 2, STORE_FLAGS_ADD, STORE_DRAFT);
	harness_flags(h, "INBOX", 5, STORE_FLAGS_ADD, STORE_SEEN);
	harness_flags(h, "INBOX", 3, STORE_FLAGS_ADD, STORE_DRAFT);
	return since + 1;
}

/* 3.1.5 Example 15: "S: * SEARCH 2 5 6 7 11 12 18 19 20 23 (MODSEQ 917162500)". */
static void test_3_1_5_example15_search_modseq(void **state)
{
	struct harness *h = *state;
	uint64_t from = five_with_changes(h);
	struct conn *c = conn_select(h, "INBOX", NULL);
	struct lines u = {0};
	char cmd[96], want[96];
	/* One mod-sequence per message: the entry name and type are ignored, as 3.1.5 requires. */
	command_ok(c, fmt(cmd, sizeof cmd, "SEARCH MODSEQ \"/flags/\\\\draft\" all %llu", from),
		   "OK", &u);
	assert_line(&u, fmt(want, sizeof want, "* SEARCH 1 2 3 5 (MODSEQ %llu)", hms(h, "INBOX")));
	lines_free(&u);
	command_ok(c, fmt(cmd, sizeof cmd, "UID SEARCH MODSEQ %llu DRAFT", from), "OK", &u);
	assert_line(&u, fmt(want, sizeof want, "* SEARCH 1 2 3 (MODSEQ %llu)",
			    harness_modseq(h, "INBOX", 3)));
	lines_free(&u);
	command_ok(c, "SEARCH MODSEQ \"/flags/\\\\draft\" bogus 1", "BAD", NULL);
	conn_close(&c);
}

/* 3.1.5 Example 16: "S: * SEARCH" with no MODSEQ when nothing matches. */
static void test_3_1_5_example16_search_nothing(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "INBOX", 3);
	struct conn *c = conn_select(h, "INBOX", NULL);
	struct lines u = {0};
	command_ok(c, "SEARCH OR NOT MODSEQ 1 LARGER 50000", "OK", &u);
	/* The first CONDSTORE-enabling command also reports HIGHESTMODSEQ (RFC 7162 3.1). */
	assert_int_equal(u.n - lines_count(&u, "* OK [HIGHESTMODSEQ "), 1);
	assert_string_equal(u.v[u.n - 1], "* SEARCH");
	lines_free(&u);
	conn_close(&c);
}

/* 3.1.7 Example 17: "C: A042 STATUS blurdybloop (UIDNEXT MESSAGES HIGHESTMODSEQ)". */
static void test_3_1_7_example17_status(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "blurdybloop", 4);
	harness_expunge(h, "blurdybloop", 2, 2);
	struct conn *c = conn_open(h);
	struct lines u = {0};
	char want[128];
	command_ok(c, "STATUS blurdybloop (UIDNEXT MESSAGES HIGHESTMODSEQ)", "OK STATUS completed",
		   &u);
	assert_int_equal(u.n, 1);
	assert_string_equal(u.v[0],
			    fmt(want, sizeof want,
				"* STATUS blurdybloop (UIDNEXT 5 MESSAGES 3 HIGHESTMODSEQ %llu)",
				hms(h, "blurdybloop")));
	lines_free(&u);
	conn_close(&c);
}

/* 3.1.8 Example 18: "S: A142 OK [READ-WRITE] SELECT completed, CONDSTORE is now enabled". */
static void test_3_1_8_example18_select_condstore(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "INBOX", 2);
	struct conn *c = conn_open(h);
	struct lines u = {0};
	char want[128];
	command_ok(c, "SELECT INBOX (CONDSTORE)", "OK [READ-WRITE]", &u);
	assert_line(&u,
		    fmt(want, sizeof want, "* OK [HIGHESTMODSEQ %llu] Highest", hms(h, "INBOX")));
	lines_free(&u);
	harness_flags(h, "INBOX", 2, STORE_FLAGS_ADD, STORE_FLAGGED);
	command_ok(c, "NOOP", "OK", &u);
	assert_line(&u, fmt(want, sizeof want,
			    "* 2 FETCH (UID 2 FLAGS (\\Flagged \\Recent) MODSEQ (%llu))",
			    harness_modseq(h, "INBOX", 2)));
	lines_free(&u);
	command_ok(c, "EXAMINE INBOX (CONDSTORE)", "OK [READ-ONLY]", NULL);
	conn_close(&c);
}

/* 3.1.10 Example 19: "S: * ESEARCH (TAG "a") ALL 1:3,5 MODSEQ 1236". */
static void test_3_1_10_example19_esearch_modseq(void **state)
{
	struct harness *h = *state;
	uint64_t from = five_with_changes(h);
	struct conn *c = conn_select(h, "INBOX", NULL);
	struct lines u = {0};
	char cmd[96], want[96];
	command_ok(c, fmt(cmd, sizeof cmd, "SEARCH RETURN (ALL) MODSEQ %llu", from), "OK", &u);
	snprintf(want, sizeof want, "* ESEARCH (TAG \"t%u\") ALL 1:3,5 MODSEQ %llu", c->next_tag,
		 (unsigned long long)hms(h, "INBOX"));
	assert_line(&u, want);
	lines_free(&u);
	conn_close(&c);
}

/* 3.1.10 Example 20: "C: a SORT RETURN (ALL) (DATE) UTF-8 MODSEQ 1234" needs SORT, which imapq
 * neither offers nor accepts. */
static void test_3_1_10_example20_no_sort(void **state)
{
	struct harness *h = *state;
	struct conn *c = conn_select(h, "INBOX", NULL);
	struct lines u = {0};
	command_ok(c, "CAPABILITY", "OK", &u);
	assert_null(strstr(u.v[0], "SORT"));
	lines_free(&u);
	command_ok(c, "SORT RETURN (ALL) (DATE) UTF-8 MODSEQ 1", "BAD Unknown command", NULL);
	conn_close(&c);
}

/* 3.1.11: "Adding the flag when it is already present ... SHOULD NOT change the mod-sequence". */
static void test_3_1_11_noop_store_keeps_modseq(void **state)
{
	struct harness *h = *state;
	harness_append(h, "INBOX", STORE_SEEN, 1);
	uint64_t before = harness_modseq(h, "INBOX", 1);
	struct conn *c = conn_select(h, "INBOX", "(CONDSTORE)");
	command_ok(c, "STORE 1 +FLAGS (\\Seen)", "OK", NULL);
	command_ok(c, "STORE 1 -FLAGS (\\Draft)", "OK", NULL);
	assert_int_equal(harness_modseq(h, "INBOX", 1), before);
	conn_close(&c);
}

/* 3.2.3: "A server compliant with this specification is REQUIRED to support "ENABLE QRESYNC"". */
static void test_3_2_3_enable_qresync(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "INBOX", 1);
	struct conn *c = conn_open(h);
	/* Before ENABLE QRESYNC, its SELECT parameter and FETCH modifier are refused. */
	command_ok(c, "SELECT INBOX (QRESYNC (1 1))", "BAD QRESYNC must be enabled first", NULL);
	command_ok(c, "SELECT INBOX", "OK", NULL);
	command_ok(c, "UID FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)", "BAD", NULL);
	struct lines u = {0};
	command_ok(c, "ENABLE QRESYNC", "OK", &u);
	/* The first CONDSTORE-enabling command also reports HIGHESTMODSEQ (RFC 7162 3.1). */
	assert_int_equal(u.n - lines_count(&u, "* OK [HIGHESTMODSEQ "), 1);
	int enabled = lines_find(&u, "* ENABLED ");
	assert_true(enabled >= 0);
	assert_non_null(strstr(u.v[enabled], " QRESYNC"));
	lines_free(&u);
	command_ok(c, "UID FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)", "OK", NULL);
	conn_close(&c);
	/* "ENABLE QRESYNC CONDSTORE" has the same effect. */
	c = conn_open(h);
	command_ok(c, "ENABLE QRESYNC CONDSTORE", "OK", &u);
	assert_string_equal(u.v[0], "* ENABLED CONDSTORE QRESYNC");
	lines_free(&u);
	command_ok(c, "SELECT INBOX (QRESYNC (1 1))", "OK", NULL);
	conn_close(&c);
}

/* 3.2: "MUST increment the per-mailbox mod-sequence when one or more messages are expunged due
 * to EXPUNGE, UID EXPUNGE, CLOSE, or MOVE". */
static void test_3_2_expunges_raise_highestmodseq(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "INBOX", 4);
	harness_mailbox(h, "other");
	struct conn *c = conn_select(h, "INBOX", NULL);
	const char *steps[] = {"STORE 1 +FLAGS.SILENT (\\Deleted)",
			       "EXPUNGE",
			       "STORE 1 +FLAGS.SILENT (\\Deleted)",
			       "UID EXPUNGE 2",
			       "MOVE 1 other",
			       "STORE 1 +FLAGS.SILENT (\\Deleted)",
			       "CLOSE"};
	for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
		uint64_t before = hms(h, "INBOX");
		command_ok(c, steps[i], "OK", NULL);
		assert_true(hms(h, "INBOX") > before);
	}
	assert_int_equal(harness_status(h, "INBOX").messages, 0);
	conn_close(&c);
}

/* QRESYNC-enabled connection with a mailbox selected, as a resyncing client would have it. */
static struct conn *qresync_open(struct harness *h)
{
	struct conn *c = conn_open(h);
	command_ok(c, "ENABLE QRESYNC", "OK", NULL);
	return c;
}

/* 3.2.5: "S: A02 OK [READ-WRITE] Sorry, UIDVALIDITY mismatch" with no resync data. */
static void test_3_2_5_uidvalidity_mismatch(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "INBOX", 5);
	harness_expunge(h, "INBOX", 2, 3);
	harness_flags(h, "INBOX", 4, STORE_FLAGS_ADD, STORE_SEEN);
	struct conn *c = qresync_open(h);
	struct lines u = {0};
	char cmd[96];
	command_ok(c,
		   fmt(cmd, sizeof cmd, "SELECT INBOX (QRESYNC (%llu 1 1:5))",
		       (unsigned long long)harness_status(h, "INBOX").uidvalidity + 1),
		   "OK [READ-WRITE]", &u);
	assert_int_equal(lines_count_sub(&u, "VANISHED"), 0);
	assert_int_equal(lines_count_sub(&u, "FETCH"), 0);
	assert_line(&u, "* 3 EXISTS");
	lines_free(&u);
	conn_close(&c);
}

/* Twelve settled messages; after the returned mod-sequence UIDs 1, 3-5, 7, 8, 10 and 11 are
 * expunged and 6, 9 and 12 change (the RFC's 117, 119 and 541; 2 stays as its 42 did). */
static uint64_t resync_situation(struct harness *h)
{
	harness_fill(h, "INBOX", 12);
	settle(h, "INBOX");
	uint64_t since = hms(h, "INBOX");
	harness_expunge(h, "INBOX", 1, 1);
	harness_expunge(h, "INBOX", 3, 5);
	harness_expunge(h, "INBOX", 7, 8);
	harness_expunge(h, "INBOX", 10, 11);
	harness_flags(h, "INBOX", 6, STORE_FLAGS_ADD, STORE_SEEN | STORE_ANSWERED);
	harness_flags(h, "INBOX", 9, STORE_FLAGS_ADD,
		      STORE_DRAFT | harness_keyword(h, "INBOX", "$MDNSent"));
	harness_flags(h, "INBOX", 12, STORE_FLAGS_ADD,
		      STORE_SEEN | harness_keyword(h, "INBOX", "$Forwarded"));
	return since;
}

/* Asserts the FETCH responses of the resync for UIDs 6, 9 and 12 (messages 2, 3, 4). */
static void assert_resync_fetches(struct harness *h, const struct lines *u)
{
	char want[128];
	assert_int_equal(lines_count_sub(u, "FETCH"), 3);
	assert_line(u, fmt(want, sizeof want,
			   "* 2 FETCH (UID 6 FLAGS (\\Seen \\Answered) MODSEQ (%llu))",
			   harness_modseq(h, "INBOX", 6)));
	assert_line(u, fmt(want, sizeof want,
			   "* 3 FETCH (UID 9 FLAGS (\\Draft $MDNSent) MODSEQ (%llu))",
			   harness_modseq(h, "INBOX", 9)));
	assert_line(u, fmt(want, sizeof want,
			   "* 4 FETCH (UID 12 FLAGS (\\Seen $Forwarded) MODSEQ (%llu))",
			   harness_modseq(h, "INBOX", 12)));
}

/* 3.2.5.1: "C: A03 SELECT INBOX (QRESYNC (67890007 90060115194045000 41:211,214:541))". */
static void test_3_2_5_1_select_qresync_known_uids(void **state)
{
	struct harness *h = *state;
	uint64_t since = resync_situation(h);
	harness_mailbox(h, "other");
	struct conn *c = qresync_open(h);
	command_ok(c, "SELECT other", "OK", NULL);
	struct lines u = {0};
	char cmd[128];
	snprintf(cmd, sizeof cmd, "SELECT INBOX (QRESYNC (%u %llu 1:6,8:12))",
		 harness_status(h, "INBOX").uidvalidity, (unsigned long long)since);
	command_ok(c, cmd, "OK [READ-WRITE]", &u);
	assert_string_equal(u.v[0], "* OK [CLOSED] Previous mailbox closed");
	/* UID 7 was expunged too, but the client did not claim to know it. */
	assert_line(&u, "* VANISHED (EARLIER) 1,3:5,8,10:11");
	assert_true(lines_find(&u, "* VANISHED") < lines_find(&u, "* 2 FETCH"));
	assert_resync_fetches(h, &u);
	assert_line(&u, "* 4 EXISTS");
	lines_free(&u);
	conn_close(&c);
}

/* 6: "C: A142 SELECT INBOX (QRESYNC (3857529045 20010715194032001 1:198))": known UIDs below
 * UIDNEXT leave the newest messages out of the resync. */
static void test_6_select_qresync_partial_range(void **state)
{
	struct harness *h = *state;
	uint64_t since = resync_situation(h);
	struct conn *c = qresync_open(h);
	struct lines u = {0};
	char cmd[128];
	snprintf(cmd, sizeof cmd, "SELECT INBOX (QRESYNC (%u %llu 1:10))",
		 harness_status(h, "INBOX").uidvalidity, (unsigned long long)since);
	command_ok(c, cmd, "OK [READ-WRITE]", &u);
	assert_int_equal(lines_count_sub(&u, "CLOSED"), 0);
	assert_line(&u, "* VANISHED (EARLIER) 1,3:5,7:8,10");
	assert_int_equal(lines_count_sub(&u, "FETCH"), 2);
	assert_int_equal(lines_count_sub(&u, "UID 12"), 0);
	lines_free(&u);
	/* Without known UIDs every UID counts. */
	snprintf(cmd, sizeof cmd, "SELECT INBOX (QRESYNC (%u %llu))",
		 harness_status(h, "INBOX").uidvalidity, (unsigned long long)since);
	command_ok(c, cmd, "OK [READ-WRITE]", &u);
	assert_line(&u, "* VANISHED (EARLIER) 1,3:5,7:8,10:11");
	assert_resync_fetches(h, &u);
	lines_free(&u);
	conn_close(&c);
}

/* 3.2.5.2: "C: B04 SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500,...":
 * imapq remembers every expunge, so the sequence match data narrows nothing and the answer
 * equals the one without it (A04). */
static void test_3_2_5_2_sequence_match_data(void **state)
{
	struct harness *h = *state;
	uint64_t since = resync_situation(h);
	uint32_t v = harness_status(h, "INBOX").uidvalidity;
	struct conn *c = qresync_open(h);
	struct lines a = {0}, b = {0};
	char cmd[160];
	snprintf(cmd, sizeof cmd, "EXAMINE INBOX (QRESYNC (%u %llu 1:12))", v,
		 (unsigned long long)since);
	command_ok(c, cmd, "OK [READ-ONLY]", &a);
	snprintf(cmd, sizeof cmd, "EXAMINE INBOX (QRESYNC (%u %llu 1:12 (2,4 6,12)))", v,
		 (unsigned long long)since);
	command_ok(c, cmd, "OK [READ-ONLY]", &b);
	assert_line(&a, "* VANISHED (EARLIER) 1,3:5,7:8,10:11");
	assert_line(&b, "* VANISHED (EARLIER) 1,3:5,7:8,10:11");
	assert_resync_fetches(h, &a);
	assert_resync_fetches(h, &b);
	lines_free(&a);
	lines_free(&b);
	conn_close(&c);
}

/* 3.2.5: "If any parameter is not syntactically valid, the server returns the tagged BAD". */
static void test_3_2_5_invalid_parameters(void **state)
{
	struct harness *h = *state;
	struct conn *c = qresync_open(h);
	command_ok(c, "SELECT INBOX (QRESYNC (0 1))", "BAD", NULL);
	command_ok(c, "SELECT INBOX (QRESYNC (1 0))", "BAD", NULL);
	command_ok(c, "SELECT INBOX (QRESYNC (1))", "BAD", NULL);
	command_ok(c, "SELECT INBOX (QRESYNC (1 1 1:*))", "BAD", NULL);
	command_ok(c, "SELECT INBOX (QRESYNC 1 1)", "BAD", NULL);
	command_ok(c, "CHECK", "BAD No mailbox selected", NULL);
	command_ok(c, "SELECT INBOX (QRESYNC (1 1 1:5 (1 x)))", "BAD", NULL);
	command_ok(c, "SELECT INBOX (QRESYNC (1 1 1:5 (1:2)))", "BAD", NULL);
	conn_close(&c);
}

/* 3.2.6 Example 1: "S: * VANISHED (EARLIER) 300:310,405,411" before the FETCH responses. */
static void test_3_2_6_uid_fetch_vanished(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "INBOX", 12);
	settle(h, "INBOX");
	uint64_t since = hms(h, "INBOX");
	harness_expunge(h, "INBOX", 2, 3);
	harness_expunge(h, "INBOX", 5, 5);
	harness_expunge(h, "INBOX", 9, 9);
	harness_expunge(h, "INBOX", 11, 11);
	harness_flags(h, "INBOX", 4, STORE_FLAGS_ADD, STORE_SEEN);
	harness_flags(h, "INBOX", 6, STORE_FLAGS_ADD, STORE_DELETED);
	harness_flags(h, "INBOX", 8, STORE_FLAGS_ADD, STORE_FLAGGED);
	struct conn *c = qresync_open(h);
	command_ok(c, "SELECT INBOX", "OK", NULL);
	struct lines u = {0};
	char cmd[96];
	/* Without VANISHED the client needs a second command to learn of the expunges. */
	command_ok(c, fmt(cmd, sizeof cmd, "UID FETCH 2:10 (FLAGS) (CHANGEDSINCE %llu)", since),
		   "OK", &u);
	assert_int_equal(u.n, 3);
	lines_free(&u);
	command_ok(c, "UID SEARCH UID 2:10", "OK", &u);
	assert_line(&u, "* SEARCH 4 6 7 8 10");
	lines_free(&u);
	command_ok(
	    c, fmt(cmd, sizeof cmd, "UID FETCH 2:10 (FLAGS) (CHANGEDSINCE %llu VANISHED)", since),
	    "OK FETCH completed", &u);
	assert_int_equal(u.n, 4);
	assert_string_equal(u.v[0], "* VANISHED (EARLIER) 2:3,5,9");
	char want[96];
	assert_line(&u, fmt(want, sizeof want, "* 2 FETCH (UID 4 FLAGS (\\Seen) MODSEQ (%llu))",
			    harness_modseq(h, "INBOX", 4)));
	assert_line(&u, fmt(want, sizeof want, "* 3 FETCH (UID 6 FLAGS (\\Deleted) MODSEQ (%llu))",
			    harness_modseq(h, "INBOX", 6)));
	assert_line(&u, fmt(want, sizeof want, "* 5 FETCH (UID 8 FLAGS (\\Flagged) MODSEQ (%llu))",
			    harness_modseq(h, "INBOX", 8)));
	lines_free(&u);
	/* Errors: not with FETCH, not without CHANGEDSINCE. */
	command_ok(c, fmt(cmd, sizeof cmd, "FETCH 1:* (FLAGS) (CHANGEDSINCE %llu VANISHED)", since),
		   "BAD", NULL);
	command_ok(c, "UID FETCH 1:* (FLAGS) (VANISHED)", "BAD", NULL);
	conn_close(&c);
}

/* 3.2.7: "S: A202 OK [HIGHESTMODSEQ 20010715194045319] expunged" with EXPUNGE responses. */
static void test_3_2_7_expunge_without_qresync(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "INBOX", 11);
	struct conn *c = conn_select(h, "INBOX", NULL);
	command_ok(c, "STORE 3,4,7,11 +FLAGS.SILENT (\\Deleted)", "OK", NULL);
	struct lines u = {0};
	command_ok(c, "EXPUNGE", "OK", &u);
	assert_int_equal(u.n, 4);
	uint32_t uids[11] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
	uint32_t left[7] = {1, 2, 5, 6, 8, 9, 10};
	assert_int_equal(apply_expunges(uids, 11, &u), 7);
	assert_memory_equal(uids, left, sizeof left);
	lines_free(&u);
	conn_close(&c);
}

/* 3.2.7 and 3.2.9: "C: B202 EXPUNGE  S: * VANISHED 405,407,410,425  S: B202 OK [HIGHESTMODSEQ
 * 20010715194045319] expunged". */
static void test_3_2_7_expunge_with_qresync(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "INBOX", 11);
	struct conn *c = qresync_open(h);
	command_ok(c, "SELECT INBOX", "OK", NULL);
	command_ok(c, "STORE 3,4,6,7,11 +FLAGS.SILENT (\\Deleted)", "OK", NULL);
	struct lines u = {0};
	command_ok(c, "UID EXPUNGE 1:10", "OK", &u);
	assert_int_equal(u.n, 1);
	assert_string_equal(u.v[0], "* VANISHED 3:4,6:7");
	lines_free(&u);
	char want[96];
	command_ok(c, "EXPUNGE", "OK [HIGHESTMODSEQ ", &u);
	assert_int_equal(u.n, 1);
	assert_string_equal(u.v[0], "* VANISHED 11");
	/* The code carries the mailbox's HIGHESTMODSEQ after the expunge. */
	command_ok(c, "NOOP", "OK", NULL);
	command_ok(c, "EXPUNGE", fmt(want, sizeof want, "OK [HIGHESTMODSEQ %llu]", hms(h, "INBOX")),
		   NULL);
	lines_free(&u);
	conn_close(&c);
}

/* 3.2.8: "C: A202 CLOSE  S: A202 OK done": no expunge responses and no HIGHESTMODSEQ. */
static void test_3_2_8_close(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "INBOX", 3);
	struct conn *c = qresync_open(h);
	command_ok(c, "SELECT INBOX", "OK", NULL);
	command_ok(c, "STORE 2 +FLAGS.SILENT (\\Deleted)", "OK", NULL);
	uint64_t before = hms(h, "INBOX");
	struct lines u = {0};
	command_ok(c, "CLOSE", "OK CLOSE completed", &u);
	assert_int_equal(u.n, 0);
	lines_free(&u);
	assert_true(hms(h, "INBOX") > before);
	assert_false(harness_exists(h, "INBOX", 2));
	conn_close(&c);
}

/* 3.2.9: "C: . UID EXPUNGE 3000:3002" answered with three "* 3 EXPUNGE" (in some order). */
static void test_3_2_9_uid_expunge(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "INBOX", 6);
	struct conn *c = conn_select(h, "INBOX", NULL);
	command_ok(c, "STORE 3:6 +FLAGS.SILENT (\\Deleted)", "OK", NULL);
	struct lines u = {0};
	command_ok(c, "UID EXPUNGE 3:5", "OK", &u);
	assert_int_equal(u.n, 3);
	uint32_t uids[6] = {1, 2, 3, 4, 5, 6};
	assert_int_equal(apply_expunges(uids, 6, &u), 3);
	assert_int_equal(uids[2], 6);
	lines_free(&u);
	assert_true(harness_exists(h, "INBOX", 6));
	conn_close(&c);
}

/* 3.2.10: "S: * VANISHED 505,507,510,625" then "S: * VANISHED 504,508". */
static void test_3_2_10_vanished(void **state)
{
	struct harness *h = *state;
	/* Messages 1-11 with UIDs 1, 4, 5, 7, 8, 9, 10, 12, 13, 14, 16 (the RFC's x, 504, 505, 507,
	 * 508, x, 510, x, x, x, 625). */
	harness_fill(h, "INBOX", 16);
	harness_expunge(h, "INBOX", 2, 3);
	harness_expunge(h, "INBOX", 6, 6);
	harness_expunge(h, "INBOX", 11, 11);
	harness_expunge(h, "INBOX", 15, 15);
	struct conn *c = qresync_open(h);
	command_ok(c, "SELECT INBOX", "OK", NULL);
	command_ok(c, "STORE 3,4,7,11 +FLAGS.SILENT (\\Deleted)", "OK", NULL);
	struct lines u = {0};
	command_ok(c, "EXPUNGE", "OK", &u);
	assert_int_equal(u.n, 1);
	assert_string_equal(u.v[0], "* VANISHED 5,7,10,16");
	lines_free(&u);
	command_ok(c, "UID STORE 4,8 +FLAGS.SILENT (\\Deleted)", "OK", NULL);
	command_ok(c, "EXPUNGE", "OK", &u);
	assert_int_equal(u.n, 1);
	assert_string_equal(u.v[0], "* VANISHED 4,8");
	lines_free(&u);
	/* Never a UID that is not in the mailbox, nor one never announced with EXISTS. */
	command_ok(c, "UID EXPUNGE 2:3", "OK", &u);
	assert_int_equal(u.n, 0);
	lines_free(&u);
	uint32_t late = harness_append(h, "INBOX", 0, 99);
	harness_expunge(h, "INBOX", late, late);
	command_ok(c, "NOOP", "OK", &u);
	assert_int_equal(lines_count_sub(&u, "VANISHED"), 0);
	lines_free(&u);
	/* Not during FETCH, STORE or SEARCH; allowed during UID FETCH. */
	harness_expunge(h, "INBOX", 9, 9);
	command_ok(c, "FETCH 1 (FLAGS)", "OK", &u);
	command_ok(c, "STORE 1 +FLAGS.SILENT (\\Seen)", "OK", &u);
	command_ok(c, "SEARCH ALL", "OK", &u);
	assert_int_equal(lines_count_sub(&u, "VANISHED"), 0);
	lines_free(&u);
	command_ok(c, "UID FETCH 1 (FLAGS)", "OK", &u);
	assert_line(&u, "* VANISHED 9");
	lines_free(&u);
	/* Not during a UID SEARCH whose keys hold message numbers. */
	harness_expunge(h, "INBOX", 10, 10);
	command_ok(c, "UID SEARCH 1:2", "OK", &u);
	assert_int_equal(lines_count_sub(&u, "VANISHED"), 0);
	lines_free(&u);
	conn_close(&c);
}

/* 3.2.11: "MUST return the CLOSED response code when the currently selected mailbox is closed
 * implicitly using the SELECT/EXAMINE command on another mailbox". */
static void test_3_2_11_closed(void **state)
{
	struct harness *h = *state;
	harness_mailbox(h, "other");
	struct conn *c = conn_open(h);
	struct lines u = {0};
	command_ok(c, "SELECT INBOX", "OK", &u);
	assert_int_equal(lines_count_sub(&u, "CLOSED"), 0);
	lines_free(&u);
	command_ok(c, "EXAMINE other", "OK [READ-ONLY]", &u);
	assert_string_equal(u.v[0], "* OK [CLOSED] Previous mailbox closed");
	assert_int_equal(lines_count_sub(&u, "CLOSED"), 1);
	lines_free(&u);
	command_ok(c, "SELECT INBOX", "OK", &u);
	assert_string_equal(u.v[0], "* OK [CLOSED] Previous mailbox closed");
	lines_free(&u);
	command_ok(c, "UNSELECT", "OK", &u);
	assert_int_equal(u.n, 0);
	lines_free(&u);
	command_ok(c, "SELECT other", "OK", &u);
	assert_int_equal(lines_count_sub(&u, "CLOSED"), 0);
	lines_free(&u);
	conn_close(&c);
}

/* 6: "S: * OK [HIGHESTMODSEQ 99] VANISHED reply with MODSEQ 100 is delayed". */
static void test_6_delayed_vanished_lowers_highestmodseq(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "INBOX", 3);
	settle(h, "INBOX");
	struct conn *c = qresync_open(h);
	command_ok(c, "SELECT INBOX", "OK", NULL);
	uint64_t since = hms(h, "INBOX");
	harness_expunge(h, "INBOX", 3, 3);
	uint64_t expunged_at = hms(h, "INBOX");
	struct lines u = {0};
	char cmd[128];
	command_ok(c,
		   fmt(cmd, sizeof cmd, "STORE 1:2 (UNCHANGEDSINCE %llu) +FLAGS.SILENT \\Seen",
		       (unsigned long long)since),
		   "OK", &u);
	assert_true(modseq_of(&u, "* 1 FETCH (UID 1 MODSEQ (") > expunged_at);
	assert_int_equal(lines_count_sub(&u, "VANISHED"), 0);
	int i = lines_find(&u, "* OK [HIGHESTMODSEQ ");
	assert_true(i >= 0);
	assert_true(line_number(u.v[i], "HIGHESTMODSEQ") < expunged_at);
	lines_free(&u);
	command_ok(c, "NOOP", "OK", &u);
	assert_line(&u, "* VANISHED 3");
	lines_free(&u);
	conn_close(&c);
}

#define T(f) cmocka_unit_test_setup_teardown(f, harness_setup, harness_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_3_1_2_1_example1_highestmodseq),
	    T(test_3_1_2_2_example2_never_nomodseq),
	    T(test_3_1_3_example3_all_pass),
	    T(test_3_1_3_example4_store_last),
	    T(test_3_1_3_example5_first_enabling_command),
	    T(test_3_1_3_example6_modified),
	    T(test_3_1_3_example7_modified_with_fetch),
	    T(test_3_1_3_example8_unchangedsince_zero),
	    T(test_3_1_3_example9_modified_then_retry),
	    T(test_3_1_3_example10_unsolicited_fetch),
	    T(test_3_1_3_example11_expunged_and_modified),
	    T(test_3_1_3_duplicate_message_in_set),
	    T(test_fetch_does_not_repeat_changes),
	    T(test_3_1_4_1_example12_changedsince),
	    T(test_3_1_4_2_example13_fetch_modseq),
	    T(test_3_1_4_2_example14_other_sessions),
	    T(test_3_2_4_implicit_seen_fetch_has_uid_and_modseq),
	    T(test_3_1_5_example15_search_modseq),
	    T(test_3_1_5_example16_search_nothing),
	    T(test_3_1_7_example17_status),
	    T(test_3_1_8_example18_select_condstore),
	    T(test_3_1_10_example19_esearch_modseq),
	    T(test_3_1_10_example20_no_sort),
	    T(test_3_1_11_noop_store_keeps_modseq),
	    T(test_3_2_3_enable_qresync),
	    T(test_3_2_expunges_raise_highestmodseq),
	    T(test_3_2_5_uidvalidity_mismatch),
	    T(test_3_2_5_1_select_qresync_known_uids),
	    T(test_6_select_qresync_partial_range),
	    T(test_3_2_5_2_sequence_match_data),
	    T(test_3_2_5_invalid_parameters),
	    T(test_3_2_6_uid_fetch_vanished),
	    T(test_3_2_7_expunge_without_qresync),
	    T(test_3_2_7_expunge_with_qresync),
	    T(test_3_2_8_close),
	    T(test_3_2_9_uid_expunge),
	    T(test_3_2_10_vanished),
	    T(test_3_2_11_closed),
	    T(test_6_delayed_vanished_lowers_highestmodseq),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
