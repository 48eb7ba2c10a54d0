/* Tests of the worker thread (imap/base/worker.c) on a real loop: jobs run off the loop in order
 * and come back on it; the owner's link clears before done; a cancelled job never reaches done,
 * whether it was queued (freed at once) or running (told so, freed when it returns); the pending
 * bound refuses more; destroy frees whatever is left. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "imap/base/loop.h"
#include "imap/base/worker.h"
#include "tests/unit/test_gate.h"

/* One job's record of what happened to it. */
struct item {
	struct worker_job *job; /* the owner's link */
	int order;		/* position in which it ran, from 1 */
	bool on_thread;		/* ran off the loop's thread */
	bool saw_cancel;	/* a held run saw worker_job_cancelled() */
	bool done;
	bool link_clear_in_done;
	bool freed;
	bool hold; /* the run waits at the gate */
};

static struct test_gate gate = TEST_GATE_INIT;
static int ran;
static int dones;
static int stop_after; /* the loop stops after this many dones */
static struct loop *loop;
static pthread_t loop_thread;

static void item_run(void *data, const struct worker_job *job)
{
	struct item *it = data;
	it->order = __atomic_add_fetch(&ran, 1, __ATOMIC_SEQ_CST);
	it->on_thread = !pthread_equal(pthread_self(), loop_thread);
	test_gate_pass(&gate, it->hold);
	/* A held run checks, as a long one would between steps, whether its owner left. */
	if (it->hold)
		it->saw_cancel = worker_job_cancelled(job);
}

static void item_done(void *data)
{
	struct item *it = data;
	it->done = true;
	it->link_clear_in_done = it->job == NULL;
	if (++dones == stop_after)
		loop_stop(loop);
}

static void item_free(void *data)
{
	struct item *it = data;
	it->freed = true;
}

/* Queues an item's job. */
static imapq_err submit(struct worker *w, struct item *it)
{
	return worker_submit(w, item_run, item_done, item_free, it, &it->job);
}

/* Stops the loop after a while whatever happens, so a lost result fails instead of hanging. */
static void give_up(void *arg)
{
	(void)arg;
	loop_stop(loop);
}

/* Runs the loop until n more jobs are done (or 5 s pass). */
static void run_until_done(int n)
{
	stop_after = dones + n;
	struct loop_timer *t;
	assert_int_equal(loop_timer_add(loop, 5000, give_up, NULL, &t), IMAPQ_OK);
	assert_int_equal(loop_run(loop), IMAPQ_OK);
	loop_timer_cancel(&t);
}

static int setup(void **state)
{
	(void)state;
	gate = (struct test_gate)TEST_GATE_INIT;
	ran = dones = 0;
	loop_thread = pthread_self();
	return loop_create(&loop) == IMAPQ_OK ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	test_gate_set(&gate, &gate.open);
	loop_destroy(&loop);
	return 0;
}

static void test_jobs_run_in_order_and_come_back(void **state)
{
	(void)state;
	struct worker *w;
	assert_int_equal(worker_create(loop, 8, &w), IMAPQ_OK);
	struct item items[5] = {0};
	for (int i = 0; i < 5; i++)
		assert_int_equal(submit(w, &items[i]), IMAPQ_OK);
	assert_int_equal(worker_pending(w), 5);
	run_until_done(5);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(items[i].order, i + 1);
		assert_true(items[i].on_thread);
		assert_true(items[i].done);
		assert_true(items[i].link_clear_in_done);
		assert_true(items[i].freed);
	}
	assert_int_equal(worker_pending(w), 0);
	worker_destroy(&w);
	assert_null(w);
}

static void test_cancel_queued_and_running(void **state)
{
	(void)state;
	struct worker *w;
	assert_int_equal(worker_create(loop, 8, &w), IMAPQ_OK);
	struct item held = {.hold = true}, queued = {0}, last = {0};
	gate.armed = true;
	assert_int_equal(submit(w, &held), IMAPQ_OK);
	assert_int_equal(submit(w, &queued), IMAPQ_OK);
	assert_true(test_gate_wait(&gate, &gate.reached, 5));
	/* Queued: freed at once, never run. */
	worker_cancel(&queued.job);
	assert_null(queued.job);
	assert_true(queued.freed);
	assert_int_equal(worker_pending(w), 1);
	/* Running: told so, and freed once it returns, without done. */
	worker_cancel(&held.job);
	assert_null(held.job);
	assert_false(held.freed);
	worker_cancel(&held.job); /* NULL is fine */
	test_gate_set(&gate, &gate.open);
	assert_int_equal(submit(w, &last), IMAPQ_OK);
	run_until_done(1);
	assert_true(last.done);
	assert_true(held.saw_cancel);
	assert_true(held.freed);
	assert_false(held.done);
	assert_int_equal(queued.order, 0);
	assert_false(queued.done);
	assert_int_equal(worker_pending(w), 0);
	worker_destroy(&w);
}

static void test_pending_bound(void **state)
{
	(void)state;
	struct worker *w;
	assert_int_equal(worker_create(loop, 2, &w), IMAPQ_OK);
	struct item a = {.hold = true}, b = {0}, c = {0};
	gate.armed = true;
	assert_int_equal(submit(w, &a), IMAPQ_OK);
	assert_int_equal(submit(w, &b), IMAPQ_OK);
	assert_int_equal(submit(w, &c), IMAPQ_E_LIMIT);
	assert_null(c.job);
	assert_false(c.freed); /* refused data stays the caller's */
	test_gate_set(&gate, &gate.open);
	run_until_done(2);
	assert_true(a.done && b.done);
	/* Room again. */
	assert_int_equal(submit(w, &c), IMAPQ_OK);
	run_until_done(1);
	assert_true(c.done);
	worker_destroy(&w);
}

static void test_destroy_frees_what_is_left(void **state)
{
	(void)state;
	struct worker *w;
	assert_int_equal(worker_create(loop, 8, &w), IMAPQ_OK);
	struct item held = {.hold = true}, queued = {0};
	gate.armed = true;
	assert_int_equal(submit(w, &held), IMAPQ_OK);
	assert_int_equal(submit(w, &queued), IMAPQ_OK);
	assert_true(test_gate_wait(&gate, &gate.reached, 5));
	test_gate_set(&gate, &gate.open);
	/* Waits for the running job; neither reaches done, both are freed, links cleared. */
	worker_destroy(&w);
	assert_true(held.freed && queued.freed);
	assert_false(held.done || queued.done);
	assert_null(held.job);
	assert_null(queued.job);
	worker_destroy(&w); /* NULL is fine */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_jobs_run_in_order_and_come_back, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cancel_queued_and_running, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pending_bound, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_destroy_frees_what_is_left, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
