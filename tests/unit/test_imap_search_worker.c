/* SEARCH keys that read message content run on the server's search thread: other sessions go
 * on meanwhile, the searching session's pipelined commands wait their turn, a session that leaves
 * mid-search costs nothing afterwards, and a search past its time limit answers NO [LIMIT]. A
 * gate on the journal's pread holds the search thread inside a body read, so each test knows
 * the search is running while it looks. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "imap/base/limits.h"
#include "tests/unit/imap_harness.h"
#include "tests/unit/test_gate.h"
#include "imap/store/journal-private.h"

static struct test_gate gate = TEST_GATE_INIT;

/* Every body read passes the gate; the first one after arming stops there. */
static ssize_t gated_pread(int fd, void *buf, size_t len, off_t offset)
{
	test_gate_pass(&gate, true);
	return pread(fd, buf, len, offset);
}

/* Arms the gate for the next body read. */
static void gate_arm(void)
{
	gate = (struct test_gate)TEST_GATE_INIT;
	gate.armed = true;
	atomic_store(&journal_pread_fn, gated_pread);
}

/* Lets the held read go on and puts the plain pread back. */
static void gate_release(void)
{
	test_gate_set(&gate, &gate.open);
	atomic_store(&journal_pread_fn, pread);
}

/* A session's content search held in a body read: another session's commands are answered
 * meanwhile, and the searching session's pipelined NOOP is answered after its search, which
 * merges content and flag matches in order. */
static void test_others_run_while_content_is_read(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "INBOX", 6);
	harness_flags(h, "INBOX", 2, STORE_FLAGS_ADD, STORE_SEEN);
	harness_flags(h, "INBOX", 5, STORE_FLAGS_ADD, STORE_SEEN);
	struct conn *a = conn_select(h, "INBOX", NULL);
	struct conn *b = conn_select(h, "INBOX", NULL);

	gate_arm();
	const char *pipelined = "a1 SEARCH OR SEEN BODY \"payload 4\"\r\na2 NOOP\r\n";
	send_raw(a, pipelined, strlen(pipelined));
	assert_true(test_gate_wait(&gate, &gate.reached, 10));
	/* The loop is free: b's commands run, a flag change included. */
	command_ok(b, "NOOP", "OK", NULL);
	command_ok(b, "STORE 6 +FLAGS (\\Flagged)", "OK", NULL);
	struct lines u = {0};
	command_ok(b, "SEARCH SEEN", "OK", &u);
	assert_line(&u, "* SEARCH 2 5");
	lines_free(&u);
	gate_release();

	char *tagged = expect(a, "a1", &u);
	assert_string_equal(tagged, "a1 OK SEARCH completed");
	free(tagged);
	assert_line(&u, "* SEARCH 2 4 5");
	lines_free(&u);
	tagged = expect(a, "a2", &u);
	assert_tagged(tagged, "a2 OK");
	free(tagged);
	lines_free(&u);
	/* UID SEARCH and ESEARCH answers come from the thread as well. */
	command_ok(a, "UID SEARCH RETURN (MIN MAX COUNT) NOT BODY \"payload 1\"", "OK", &u);
	assert_int_equal(lines_find(&u, "* ESEARCH (TAG \"t"), 0);
	assert_non_null(strstr(u.v[0], " UID MIN 2 MAX 6 COUNT 5"));
	lines_free(&u);
	conn_close(&a);
	conn_close(&b);
}

/* A session that disconnects while its search reads content: the search is dropped, and the
 * server goes on serving. */
static void test_disconnect_mid_search(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "INBOX", 4);
	struct conn *a = conn_select(h, "INBOX", NULL);
	gate_arm();
	send_line(a, "a1 SEARCH TEXT payload");
	assert_true(test_gate_wait(&gate, &gate.reached, 10));
	conn_close(&a);
	/* The loop notices the close while the thread still reads. */
	struct conn *b = conn_select(h, "INBOX", NULL);
	command_ok(b, "NOOP", "OK", NULL);
	gate_release();
	struct lines u = {0};
	command_ok(b, "SEARCH BODY \"payload 3\"", "OK", &u);
	assert_line(&u, "* SEARCH 3");
	lines_free(&u);
	conn_close(&b);
}

/* Scans on the search thread over more messages than one page of the store, with UID ranges, a
 * MODSEQ bound and a content key: each answer counts every page. */
static void test_scans_across_pages(void **state)
{
	struct harness *h = *state;
	uint32_t n = 2 * IMAPQ_SEARCH_SCAN_STEP + 100;
	harness_fill(h, "INBOX", n);
	uint64_t since = harness_modseq(h, "INBOX", n);
	uint32_t changed[] = {5, 20000, n - 1};
	for (size_t i = 0; i < 3; i++)
		harness_flags(h, "INBOX", changed[i], STORE_FLAGS_ADD, STORE_FLAGGED);
	struct conn *c = conn_select(h, "INBOX", NULL);
	char cmd[256], want[256];
	struct lines u = {0};
	command_ok(c, "UID SEARCH RETURN (COUNT MIN MAX) LARGER 0", "OK", &u);
	snprintf(want, sizeof want, "* ESEARCH (TAG \"t3\") UID MIN 1 MAX %u COUNT %u", n, n);
	assert_line(&u, want);
	lines_free(&u);
	command_ok(c, "UID SEARCH RETURN (COUNT MIN MAX) UID 100:20000,30000:* LARGER 0", "OK", &u);
	snprintf(want, sizeof want, "* ESEARCH (TAG \"t4\") UID MIN 100 MAX %u COUNT %u", n,
		 19901 + n - 30000 + 1);
	assert_line(&u, want);
	lines_free(&u);
	snprintf(cmd, sizeof cmd, "UID SEARCH MODSEQ %llu LARGER 0", (unsigned long long)since + 1);
	command_ok(c, cmd, "OK", &u);
	snprintf(want, sizeof want, "* SEARCH 5 20000 %u (MODSEQ ", n - 1);
	assert_true(lines_find(&u, want) >= 0); /* after CONDSTORE's HIGHESTMODSEQ */
	lines_free(&u);
	snprintf(cmd, sizeof cmd, "UID SEARCH UID 6:* MODSEQ %llu NOT FLAGGED",
		 (unsigned long long)since + 1);
	command_ok(c, cmd, "OK", &u);
	assert_line(&u, "* SEARCH");
	lines_free(&u);
	command_ok(c, "UID SEARCH RETURN (COUNT) UID 16000:17000 BODY payload", "OK", &u);
	assert_line(&u, "* ESEARCH (TAG \"t7\") UID COUNT 1001");
	lines_free(&u);
	conn_close(&c);
}

/* Builds "SEARCH" and n NOT BODY keys that match nothing in the tests' messages. */
static void many_keys(char *cmd, size_t cap, int n)
{
	size_t len = (size_t)snprintf(cmd, cap, "SEARCH");
	for (int k = 0; k < n && len < cap; k++)
		len += (size_t)snprintf(cmd + len, cap - len, " NOT BODY \"absent %d\"", k);
}

/* A search that runs longer than the server allows answers NO [LIMIT], and the session goes
 * on. */
static void test_time_limit(void **state)
{
	(void)state;
	struct harness *h = harness_start_opts(harness_auth, 1);
	harness_fill(h, "INBOX", 2000);
	struct conn *c = conn_select(h, "INBOX", NULL);
	/* Forty content keys over 2,000 messages: far more than a millisecond of reading. */
	char cmd[2048];
	many_keys(cmd, sizeof cmd, 40);
	command_ok(c, cmd, "NO [LIMIT] SEARCH ran for over 1 s; narrow the search", NULL);
	command_ok(c, "NOOP", "OK", NULL);
	struct lines u = {0};
	command_ok(c, "SEARCH 3:4 SEEN", "OK", &u);
	assert_line(&u, "* SEARCH");
	lines_free(&u);
	conn_close(&c);
	harness_stop(&h);
}

/* The limit holds inside one message too: every key reads the whole body again, and the reads
 * themselves stop at the limit. */
static void test_time_limit_inside_one_message(void **state)
{
	(void)state;
	struct harness *h = harness_start_opts(harness_auth, 200);
	size_t len = 16u << 20;
	char *text = malloc(len);
	assert_non_null(text);
	const char head[] = "Subject: big\r\n\r\n";
	memcpy(text, head, sizeof head - 1);
	memset(text + sizeof head - 1, 'x', len - (sizeof head - 1));
	struct journal_body b = {.data = text, .fd = -1, .len = len, .crc = crc32c(0, text, len)};
	uint32_t uid;
	uint64_t modseq;
	assert_int_equal(store_append(h->store, harness_mailbox(h, "INBOX"), 0, 1700000000, &b,
				      &uid, &modseq, NULL),
			 IMAPQ_OK);
	free(text);
	struct conn *c = conn_select(h, "INBOX", NULL);
	/* 300 keys over 16 MiB: about 5 GB of reading, seconds of work at any speed. */
	char cmd[8192];
	many_keys(cmd, sizeof cmd, 300);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	command_ok(c, cmd, "NO [LIMIT]", NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	assert_true(took < 1.5);
	conn_close(&c);
	harness_stop(&h);
}

/* Opens the gate whatever happened, so a failed test cannot leave a thread held. */
static int teardown(void **state)
{
	gate_release();
	return harness_teardown(state);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_others_run_while_content_is_read, harness_setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_disconnect_mid_search, harness_setup, teardown),
	    cmocka_unit_test_setup_teardown(test_scans_across_pages, harness_setup, teardown),
	    cmocka_unit_test(test_time_limit),
	    cmocka_unit_test(test_time_limit_inside_one_message),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
