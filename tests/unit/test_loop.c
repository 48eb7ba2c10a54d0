/* The event loop: readiness, timers, hooks, cross-thread posts, removal inside callbacks. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <unistd.h>

#include "imap/base/loop.h"

struct io_state {
	struct loop *loop;
	struct loop_io *io;
	int fd;
	int reads;
	unsigned last_events;
};

static void on_readable(void *arg, unsigned events)
{
	struct io_state *st = arg;
	char buf[64];
	st->last_events = events;
	if (events & LOOP_READ) {
		ssize_t n = read(st->fd, buf, sizeof buf);
		if (n > 0)
			st->reads++;
	}
	loop_stop(st->loop);
}

static void test_io_readiness(void **state)
{
	struct loop *loop;
	int fds[2];
	assert_int_equal(loop_create(&loop), IMAPQ_OK);
	assert_int_equal(pipe(fds), 0);
	struct io_state st = {.loop = loop, .fd = fds[0]};
	assert_int_equal(loop_io_add(loop, fds[0], LOOP_READ, on_readable, &st, &st.io), IMAPQ_OK);
	assert_int_equal(write(fds[1], "x", 1), 1);
	assert_int_equal(loop_run(loop), IMAPQ_OK);
	assert_int_equal(st.reads, 1);
	assert_true(st.last_events & LOOP_READ);

	close(fds[1]);
	assert_int_equal(loop_run(loop), IMAPQ_OK);
	assert_true(st.last_events & LOOP_HANGUP);
	loop_io_remove(&st.io);
	assert_null(st.io);
	close(fds[0]);
	loop_destroy(&loop);
	assert_null(loop);
}

struct timer_log {
	struct loop *loop;
	int order[8];
	int n;
	struct loop_timer *victim;
};

struct timer_arg {
	struct timer_log *log;
	int id;
};

static void on_timer(void *arg)
{
	struct timer_arg *t = arg;
	t->log->order[t->log->n++] = t->id;
	if (t->id == 1)
		loop_timer_cancel(&t->log->victim);
	if (t->id == 9)
		loop_stop(t->log->loop);
}

static void test_timers_fire_in_deadline_order_and_cancel(void **state)
{
	struct loop *loop;
	assert_int_equal(loop_create(&loop), IMAPQ_OK);
	struct timer_log log = {.loop = loop};
	struct timer_arg a[10];
	for (int i = 0; i < 10; i++)
		a[i] = (struct timer_arg){.log = &log, .id = i};
	/* Equal deadlines fire in creation order; id 1 cancels id 5 before it is due. */
	assert_int_equal(loop_timer_add(loop, 30, on_timer, &a[3], NULL), IMAPQ_OK);
	assert_int_equal(loop_timer_add(loop, 10, on_timer, &a[1], NULL), IMAPQ_OK);
	assert_int_equal(loop_timer_add(loop, 20, on_timer, &a[2], NULL), IMAPQ_OK);
	assert_int_equal(loop_timer_add(loop, 20, on_timer, &a[4], NULL), IMAPQ_OK);
	assert_int_equal(loop_timer_add(loop, 25, on_timer, &a[5], &log.victim), IMAPQ_OK);
	assert_int_equal(loop_timer_add(loop, 40, on_timer, &a[9], NULL), IMAPQ_OK);
	assert_int_equal(loop_run(loop), IMAPQ_OK);
	assert_int_equal(log.n, 5);
	int want[] = {1, 2, 4, 3, 9};
	for (int i = 0; i < 5; i++)
		assert_int_equal(log.order[i], want[i]);
	assert_null(log.victim);
	loop_destroy(&loop);
}

static void test_destroy_frees_pending_timers_and_watchers(void **state)
{
	struct loop *loop;
	int fds[2];
	struct loop_io *io;
	assert_int_equal(loop_create(&loop), IMAPQ_OK);
	assert_int_equal(pipe(fds), 0);
	assert_int_equal(loop_io_add(loop, fds[0], LOOP_READ, on_readable, NULL, &io), IMAPQ_OK);
	for (int i = 0; i < 100; i++)
		assert_int_equal(loop_timer_add(loop, 100000 + (uint64_t)i, on_timer, NULL, NULL),
				 IMAPQ_OK);
	loop_destroy(&loop);
	close(fds[0]);
	close(fds[1]);
}

struct post_state {
	struct loop *loop;
	int count;
	int hooks;
};

static void on_post(void *arg)
{
	struct post_state *st = arg;
	if (++st->count == 1000)
		loop_stop(st->loop);
}

static void *poster(void *arg)
{
	struct post_state *st = arg;
	for (int i = 0; i < 500; i++)
		assert_int_equal(loop_post(st->loop, on_post, st), IMAPQ_OK);
	return NULL;
}

static void count_hook(void *arg)
{
	struct post_state *st = arg;
	st->hooks++;
}

static void test_posts_from_other_threads_all_run(void **state)
{
	struct loop *loop;
	assert_int_equal(loop_create(&loop), IMAPQ_OK);
	struct post_state st = {.loop = loop};
	assert_int_equal(loop_before_poll(loop, count_hook, &st), IMAPQ_OK);
	pthread_t t1, t2;
	pthread_create(&t1, NULL, poster, &st);
	pthread_create(&t2, NULL, poster, &st);
	assert_int_equal(loop_run(loop), IMAPQ_OK);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	assert_int_equal(st.count, 1000);
	assert_true(st.hooks >= 1);
	loop_destroy(&loop);
}

struct pair_state {
	struct loop *loop;
	struct loop_io *a, *b;
	int fired;
};

/* Both pipes are readable in the same round; the first callback removes the other watcher. */
static void on_pair(void *arg, unsigned events)
{
	struct pair_state *st = arg;
	st->fired++;
	loop_io_remove(&st->a);
	loop_io_remove(&st->b);
	loop_stop(st->loop);
}

static void test_remove_other_watcher_inside_callback(void **state)
{
	struct loop *loop;
	int p1[2], p2[2];
	assert_int_equal(loop_create(&loop), IMAPQ_OK);
	assert_int_equal(pipe(p1), 0);
	assert_int_equal(pipe(p2), 0);
	struct pair_state st = {.loop = loop};
	assert_int_equal(loop_io_add(loop, p1[0], LOOP_READ, on_pair, &st, &st.a), IMAPQ_OK);
	assert_int_equal(loop_io_add(loop, p2[0], LOOP_READ, on_pair, &st, &st.b), IMAPQ_OK);
	assert_int_equal(write(p1[1], "x", 1), 1);
	assert_int_equal(write(p2[1], "x", 1), 1);
	assert_int_equal(loop_run(loop), IMAPQ_OK);
	assert_int_equal(st.fired, 1);
	loop_destroy(&loop);
	close(p1[0]);
	close(p1[1]);
	close(p2[0]);
	close(p2[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_io_readiness),
	    cmocka_unit_test(test_timers_fire_in_deadline_order_and_cancel),
	    cmocka_unit_test(test_destroy_frees_pending_timers_and_watchers),
	    cmocka_unit_test(test_posts_from_other_threads_all_run),
	    cmocka_unit_test(test_remove_other_watcher_inside_callback),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
