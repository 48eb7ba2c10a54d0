/* Sessions follow any number of expunges: the expunge history keeps at most EXPUNGE_LOG_MAX_RUNS
 * runs, so an EXPUNGE of more messages than that takes one run per stretch of adjacent UIDs, and
 * a session sitting between commands while more single expunges than that happen has them
 * loaded by the server's tick, so its next command announces every one instead of ending the
 * session. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "imap/store/expunge_log.h"
#include "tests/unit/imap_harness.h"

/* More messages than the history holds runs. */
#define MANY (EXPUNGE_LOG_MAX_RUNS + 4000)

/* Marks messages 1..MANY \Deleted in one store call. */
static void delete_all(struct harness *h)
{
	struct uid_range r = {1, MANY};
	assert_int_equal(store_flags(h->store, harness_mailbox(h, "INBOX"), &r, 1, STORE_FLAGS_ADD,
				     STORE_DELETED, NULL, NULL, NULL, NULL),
			 IMAPQ_OK);
}

/* Runs NOOP on c and checks it announces MANY expunges and no BYE. */
static void expect_all_expunged(struct conn *c)
{
	struct lines u = {0};
	command_ok(c, "NOOP", "OK", &u);
	assert_int_equal(lines_count(&u, "* BYE"), 0);
	assert_int_equal(lines_count_sub(&u, " EXPUNGE"), MANY);
	lines_free(&u);
	command_ok(c, "SEARCH ALL", "OK", &u);
	assert_line(&u, "* SEARCH");
	lines_free(&u);
}

static void test_one_large_expunge(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "INBOX", MANY);
	delete_all(h);
	struct conn *a = conn_select(h, "INBOX", NULL);
	struct conn *b = conn_select(h, "INBOX", NULL);
	struct lines u = {0};
	command_ok(a, "EXPUNGE", "OK EXPUNGE completed", &u);
	assert_int_equal(lines_count_sub(&u, " EXPUNGE"), MANY);
	lines_free(&u);
	expect_all_expunged(b);
	conn_close(&a);
	conn_close(&b);
}

/* Sleeps past two ticks of the server (SERVER_TICK_MS, a second), so one lands even on a loaded
 * machine. */
static void past_a_tick(void)
{
	struct timespec pause = {.tv_sec = 2, .tv_nsec = 500 * 1000000L};
	nanosleep(&pause, NULL);
}

static void test_many_single_expunges_between_commands(void **state)
{
	struct harness *h = *state;
	harness_fill(h, "INBOX", MANY);
	delete_all(h);
	struct conn *b = conn_select(h, "INBOX", NULL);
	uint32_t id = harness_mailbox(h, "INBOX");
	/* Each expunge on its own, as a stream of acks makes them: one run each. */
	uint64_t lsn = 0;
	for (uint32_t uid = 1; uid <= MANY; uid++) {
		struct uid_range r = {uid, uid};
		assert_int_equal(store_expunge(h->store, id, &r, 1, NULL, NULL, &lsn), IMAPQ_OK);
		if (uid == MANY / 2)
			past_a_tick();
	}
	assert_int_equal(store_wait(h->store, lsn), IMAPQ_OK);
	past_a_tick();
	expect_all_expunged(b);
	conn_close(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_one_large_expunge, harness_setup,
					    harness_teardown),
	    cmocka_unit_test_setup_teardown(test_many_single_expunges_between_commands,
					    harness_setup, harness_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
