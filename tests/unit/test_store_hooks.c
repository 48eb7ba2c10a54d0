/* Unit tests of the store's commit hooks: several subscribers each learn of durability advances,
 * removal stops the calls at once, and the slots are bounded. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "imap/store/store.h"
#include "tests/unit/queue_fixture.h"

/* How long a test waits for a notice that should come, in milliseconds. */
#define NOTICE_WAIT_MS 5000

/* What one subscriber saw. */
struct seen {
	atomic_ullong lsn; /* highest durable LSN reported */
	atomic_uint calls; /* notices received */
};

static void on_commit(void *arg, uint64_t durable_lsn)
{
	struct seen *seen = arg;
	if (durable_lsn > atomic_load(&seen->lsn))
		atomic_store(&seen->lsn, durable_lsn);
	atomic_fetch_add(&seen->calls, 1);
}

/* A second function, so one argument can be subscribed twice under different functions. */
static void on_commit_other(void *arg, uint64_t durable_lsn)
{
	on_commit(arg, durable_lsn);
}

/* Makes one durable change and returns its LSN. */
static uint64_t change(struct store_fixture *f, const char *name)
{
	uint64_t lsn = 0;
	assert_int_equal(store_mailbox_create(f->s, name, NULL, &lsn), IMAPQ_OK);
	assert_true(lsn > 0);
	assert_int_equal(store_wait(f->s, lsn), IMAPQ_OK);
	return lsn;
}

/* True once seen reports lsn; the notice follows store_wait() closely but not in lockstep. */
static bool wait_for(struct seen *seen, uint64_t lsn)
{
	for (int i = 0; i < NOTICE_WAIT_MS; i++) {
		if (atomic_load(&seen->lsn) >= lsn)
			return true;
		nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
	}
	return false;
}

static void test_every_subscriber_notified(void **state)
{
	struct store_fixture *f = *state;
	struct seen a = {0}, b = {0};
	assert_int_equal(store_add_commit_hook(f->s, on_commit, &a), IMAPQ_OK);
	assert_int_equal(store_add_commit_hook(f->s, on_commit, &b), IMAPQ_OK);
	uint64_t lsn = change(f, "one");
	assert_true(wait_for(&a, lsn));
	assert_true(wait_for(&b, lsn));
	assert_true(store_durable_lsn(f->s) >= lsn);

	/* After removal a subscriber hears nothing more; the other still does. */
	store_remove_commit_hook(f->s, on_commit, &a);
	unsigned calls = atomic_load(&a.calls);
	uint64_t lsn2 = change(f, "two");
	assert_true(wait_for(&b, lsn2));
	assert_int_equal(atomic_load(&a.calls), calls);
	assert_true(atomic_load(&a.lsn) < lsn2);
	store_remove_commit_hook(f->s, on_commit, &b);
}

static void test_removal_matches_function_and_argument(void **state)
{
	struct store_fixture *f = *state;
	struct seen a = {0};
	assert_int_equal(store_add_commit_hook(f->s, on_commit, &a), IMAPQ_OK);
	assert_int_equal(store_add_commit_hook(f->s, on_commit_other, &a), IMAPQ_OK);
	/* Not subscribed under this pair: nothing changes. */
	store_remove_commit_hook(f->s, on_commit_other, f);
	store_remove_commit_hook(f->s, on_commit, &a);
	uint64_t lsn = change(f, "three");
	assert_true(wait_for(&a, lsn)); /* still heard through on_commit_other */
	store_remove_commit_hook(f->s, on_commit_other, &a);
}

static void test_slots_are_bounded(void **state)
{
	struct store_fixture *f = *state;
	struct seen s[16] = {0};
	unsigned added = 0;
	while (added < 16 && store_add_commit_hook(f->s, on_commit, &s[added]) == IMAPQ_OK)
		added++;
	assert_true(added >= 2 && added < 16);
	assert_int_equal(store_add_commit_hook(f->s, on_commit, &s[added]), IMAPQ_E_LIMIT);
	/* A freed slot can be taken again. */
	store_remove_commit_hook(f->s, on_commit, &s[0]);
	assert_int_equal(store_add_commit_hook(f->s, on_commit, &s[added]), IMAPQ_OK);
	uint64_t lsn = change(f, "four");
	assert_true(wait_for(&s[added], lsn));
	assert_true(wait_for(&s[1], lsn));
	for (unsigned i = 1; i <= added; i++)
		store_remove_commit_hook(f->s, on_commit, &s[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_every_subscriber_notified,
					    store_fixture_setup_fsync, store_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_removal_matches_function_and_argument,
					    store_fixture_setup_fsync, store_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_slots_are_bounded, store_fixture_setup_fsync,
					    store_fixture_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
