/* Unit tests of the queue service as a whole: waiters, eight threads draining one queue,
 * restarts (claims survive, leases run out afterwards) and claimed messages copied in over IMAP.
 * Leases are 1-2 s so the suite stays short. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "imap/base/crc32c.h"
#include "imap/base/log.h"
#include "queue/queue.h"
#include "tests/unit/queue_fixture.h"

/* A waiter that counts its calls. */
struct wake {
	atomic_int calls;
};

static void on_wake(void *arg)
{
	struct wake *w = arg;
	atomic_fetch_add(&w->calls, 1);
}

static bool wait_calls(struct wake *w, int want, unsigned timeout_ms)
{
	for (unsigned t = 0; t < timeout_ms && atomic_load(&w->calls) < want; t += 10)
		sleep_ms(10);
	return atomic_load(&w->calls) >= want;
}

static void test_waiters(void **state)
{
	struct queue_fixture *f = *state;
	struct wake w = {0}, never = {0};
	struct queue_waiter *waiter = NULL, *cancelled = NULL;
	assert_int_equal(queue_wait(f->qs, "jobs", on_wake, &w, &waiter), IMAPQ_OK);
	assert_int_equal(queue_wait(f->qs, "jobs", on_wake, &never, &cancelled), IMAPQ_OK);
	sleep_ms(100);
	assert_int_equal(atomic_load(&w.calls), 0); /* nothing is ready */
	queue_wait_cancel(f->qs, &cancelled);
	assert_null(cancelled);

	/* Fires on enqueue, once. */
	uint32_t id = put(f, "jobs", "work", 0);
	assert_true(wait_calls(&w, 1, 20000));
	put(f, "jobs", "more", 0);
	sleep_ms(100);
	assert_int_equal(atomic_load(&w.calls), 1);
	assert_int_equal(atomic_load(&never.calls), 0);
	queue_wait_cancel(f->qs, &waiter);

	/* A waiter registered while work is ready fires at once. */
	struct wake now = {0};
	assert_int_equal(queue_wait(f->qs, "jobs", on_wake, &now, &waiter), IMAPQ_OK);
	assert_true(wait_calls(&now, 1, 20000));
	queue_wait_cancel(f->qs, &waiter);

	/* Fires when a claimed job is released (by a nack here, by expiry below). */
	struct queue_job a = claim1(f, 30);
	struct queue_job b = claim1(f, 0);
	assert_int_equal(a.id, id);
	struct wake rel = {0};
	assert_int_equal(queue_wait(f->qs, "jobs", on_wake, &rel, &waiter), IMAPQ_OK);
	sleep_ms(50);
	assert_int_equal(atomic_load(&rel.calls), 0);
	assert_int_equal(queue_nack(f->qs, "jobs", a.id, a.receipt, 0, NULL), IMAPQ_OK);
	assert_true(wait_calls(&rel, 1, 20000));
	queue_wait_cancel(f->qs, &waiter);

	a = claim1(f, 30);
	struct wake exp = {0};
	assert_int_equal(queue_wait(f->qs, "jobs", on_wake, &exp, &waiter), IMAPQ_OK);
	assert_true(wait_calls(&exp, 1, 20000)); /* b's lease of 1 s ran out */
	queue_wait_cancel(f->qs, &waiter);
	assert_true(try_claim(f, 30, &b));
}

/* A waiter that cancels itself from inside its own call. */
struct self_cancel {
	struct queue_service *qs;
	struct queue_waiter *w;
	atomic_int calls;
};

static void cancel_self(void *arg)
{
	struct self_cancel *c = arg;
	queue_wait_cancel(c->qs, &c->w);
	atomic_fetch_add(&c->calls, 1);
}

static void test_waiter_deleted_queue_and_self_cancel(void **state)
{
	struct queue_fixture *f = *state;
	assert_int_equal(queue_create(f->qs, "gone", NULL, NULL), IMAPQ_OK);
	struct wake w = {0};
	struct queue_waiter *waiter = NULL;
	assert_int_equal(queue_wait(f->qs, "gone", on_wake, &w, &waiter), IMAPQ_OK);
	assert_int_equal(queue_delete(f->qs, "gone", NULL), IMAPQ_OK);
	assert_true(wait_calls(&w, 1, 20000));
	queue_wait_cancel(f->qs, &waiter);

	struct self_cancel c = {.qs = f->qs};
	assert_int_equal(queue_wait(f->qs, "jobs", cancel_self, &c, &c.w), IMAPQ_OK);
	put(f, "jobs", "x", 0);
	for (int t = 0; t < 3000 && atomic_load(&c.calls) == 0; t++)
		sleep_ms(10);
	assert_int_equal(atomic_load(&c.calls), 1);
	assert_null(c.w);
}

/* Eight workers draining one queue: every job is acked exactly once. */
#define DRAIN_JOBS    2000
#define DRAIN_WORKERS 8

struct drain {
	struct queue_fixture *f;
	atomic_int acked[DRAIN_JOBS + 1];
	atomic_int total;
};

static void *drain_worker(void *arg)
{
	struct drain *d = arg;
	time_t deadline = time(NULL) + 60;
	while (atomic_load(&d->total) < DRAIN_JOBS && time(NULL) < deadline) {
		struct queue_job jobs[4];
		uint32_t n = 0;
		if (queue_claim(d->f->qs, "jobs", 4, 60, jobs, &n, NULL) != IMAPQ_OK)
			break;
		for (uint32_t i = 0; i < n; i++) {
			if (queue_ack(d->f->qs, "jobs", jobs[i].id, jobs[i].receipt, NULL) !=
			    IMAPQ_OK)
				continue;
			if (jobs[i].id <= DRAIN_JOBS)
				atomic_fetch_add(&d->acked[jobs[i].id], 1);
			atomic_fetch_add(&d->total, 1);
		}
	}
	return NULL;
}

static void test_eight_workers_drain(void **state)
{
	struct queue_fixture *f = *state;
	uint64_t lsn = 0;
	for (int i = 0; i < DRAIN_JOBS; i++) {
		char text[32];
		snprintf(text, sizeof text, "job %d", i);
		assert_int_equal(
		    queue_enqueue(f->qs, "jobs", text, strlen(text), "text/plain", 0, NULL, &lsn),
		    IMAPQ_OK);
	}
	assert_int_equal(store_wait(f->store, lsn), IMAPQ_OK);
	struct drain *d = calloc(1, sizeof *d);
	d->f = f;
	pthread_t threads[DRAIN_WORKERS];
	for (int i = 0; i < DRAIN_WORKERS; i++)
		assert_int_equal(pthread_create(&threads[i], NULL, drain_worker, d), 0);
	for (int i = 0; i < DRAIN_WORKERS; i++)
		pthread_join(threads[i], NULL);
	assert_int_equal(atomic_load(&d->total), DRAIN_JOBS);
	for (int id = 1; id <= DRAIN_JOBS; id++)
		assert_int_equal(atomic_load(&d->acked[id]), 1);
	struct queue_stats s = stats_of(f, "jobs");
	assert_int_equal(s.ready + s.claimed + s.delayed, 0);
	assert_int_equal(s.acks, DRAIN_JOBS);
	assert_int_equal(s.claims, DRAIN_JOBS);
	free(d);
}

static void test_restart_keeps_claims(void **state)
{
	struct queue_fixture *f = *state;
	struct queue_settings s = {.lease = 2};
	assert_int_equal(queue_settings_set(f->qs, "jobs", &s, NULL), IMAPQ_OK);
	uint32_t a = put(f, "jobs", "a", 0);
	uint32_t b = put(f, "jobs", "b", 0);
	put(f, "jobs", "c", 1);
	struct queue_job ja = claim1(f, 0);
	struct queue_job jb = claim1(f, 0);
	assert_int_equal(ja.id, a);
	assert_int_equal(jb.id, b);
	queue_fixture_close(f);
	queue_fixture_open(f);

	/* Still claimed after the restart; a's holder finishes, b's lease runs out. */
	struct queue_stats st = stats_of(f, "jobs");
	assert_int_equal(st.claimed, 2);
	assert_int_equal(st.ready, 0);
	assert_int_equal(queue_ack(f->qs, "jobs", a, ja.receipt, NULL), IMAPQ_OK);
	assert_true(wait_ready(f, 2, 30000)); /* b expired and c's delay ended */
	assert_int_equal(queue_ack(f->qs, "jobs", b, jb.receipt, NULL), IMAPQ_E_MODIFIED);
	st = stats_of(f, "jobs");
	assert_int_equal(st.claimed + st.delayed, 0);
	assert_int_equal(st.expired, 1);
}

/* An ack and a purge that stopped between their \Deleted and their expunge are finished at the
 * next start: neither message stays behind to count against the queue. */
static void test_restart_finishes_stopped_deletes(void **state)
{
	struct queue_fixture *f = *state;
	uint32_t a = put(f, "jobs", "acked", 0);
	uint32_t b = put(f, "jobs", "purged", 0);
	uint32_t c = put(f, "jobs", "kept", 0);
	assert_int_equal(claim1(f, 0).id, a);
	uint32_t box;
	assert_int_equal(store_mailbox_find(f->store, "jobs", &box), IMAPQ_OK);
	struct uid_range r[2] = {{a, a}, {b, b}};
	assert_int_equal(store_flags(f->store, box, r, 2, STORE_FLAGS_ADD, STORE_DELETED, NULL,
				     NULL, NULL, NULL),
			 IMAPQ_OK);
	queue_fixture_close(f);
	queue_fixture_open(f);
	/* The service thread scans after it starts. */
	struct store_message m;
	for (int t = 0; t < 500 && store_message_get(f->store, box, b, &m) == IMAPQ_OK; t++)
		sleep_ms(20);
	assert_int_equal(store_message_get(f->store, box, a, &m), IMAPQ_E_NOTFOUND);
	assert_int_equal(store_message_get(f->store, box, b, &m), IMAPQ_E_NOTFOUND);
	assert_int_equal(store_message_get(f->store, box, c, &m), IMAPQ_OK);
	struct store_mailbox_status st;
	assert_int_equal(store_mailbox_status(f->store, box, &st), IMAPQ_OK);
	assert_int_equal(st.messages, 1);
	struct queue_stats qs = stats_of(f, "jobs");
	assert_int_equal(qs.ready, 1);
	assert_int_equal(qs.claimed, 0);
}

static void test_restart_with_lapsed_lease(void **state)
{
	struct queue_fixture *f = *state;
	uint32_t a = put(f, "jobs", "a", 0);
	struct queue_job ja = claim1(f, 0);
	assert_int_equal(ja.id, a);
	/* The service is down past the lease: after the restart the lease starts again. */
	queue_service_destroy(&f->qs);
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	int64_t left_ms =
	    (int64_t)ja.due * 1000 - ((int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000);
	sleep_ms((unsigned)(left_ms > 0 ? left_ms : 0) + 100);
	struct queue_options qo = {.store = f->store};
	assert_int_equal(queue_service_create(&qo, &f->qs), IMAPQ_OK);
	assert_int_equal(stats_of(f, "jobs").claimed, 1);
	assert_true(wait_ready(f, 1, 20000));
	assert_int_equal(queue_ack(f->qs, "jobs", a, ja.receipt, NULL), IMAPQ_E_MODIFIED);
}

/* A claimed message that arrives without a due time (as IMAP COPY brings one) is released. */
static void test_copied_claim_is_released(void **state)
{
	struct queue_fixture *f = *state;
	assert_int_equal(queue_create(f->qs, "src", NULL, NULL), IMAPQ_OK);
	struct queue_job job;
	assert_int_equal(queue_enqueue(f->qs, "src", "x", 1, "text/plain", 0, &job, NULL),
			 IMAPQ_OK);
	uint32_t n;
	assert_int_equal(queue_claim(f->qs, "src", 1, 0, &job, &n, NULL), IMAPQ_OK);
	assert_int_equal(n, 1);
	uint32_t src, dst;
	assert_int_equal(store_mailbox_find(f->store, "src", &src), IMAPQ_OK);
	assert_int_equal(store_mailbox_find(f->store, "jobs", &dst), IMAPQ_OK);
	struct uid_range r = {job.id, job.id};
	assert_int_equal(store_copy(f->store, src, &r, 1, dst, false, NULL, NULL, NULL), IMAPQ_OK);
	struct queue_stats s = stats_of(f, "jobs");
	assert_int_equal(s.claimed, 1);
	assert_true(wait_ready(f, 1, 20000));
}

/* A mailbox used only over IMAP: its claims (plain conditional stores of $Claimed, with the
 * engine's lease) expire and its acks (\Deleted and expunge) are counted. */
static void test_imap_only_queue(void **state)
{
	struct queue_fixture *f = *state;
	uint32_t id, uid[2];
	unsigned k;
	uint64_t modseq, lsn;
	assert_int_equal(store_mailbox_create(f->store, "raw", &id, NULL), IMAPQ_OK);
	assert_int_equal(store_annotation_set(f->store, id, STORE_SETTING_LEASE, "1", NULL),
			 IMAPQ_OK);
	assert_int_equal(store_keyword(f->store, id, STORE_CLAIM_KEYWORD, true, &k, &lsn),
			 IMAPQ_OK);
	for (int i = 0; i < 2; i++) {
		struct journal_body b = {.data = "m", .fd = -1, .len = 1, .crc = crc32c(0, "m", 1)};
		assert_int_equal(
		    store_append(f->store, id, 0, time(NULL), &b, &uid[i], &modseq, NULL),
		    IMAPQ_OK);
	}
	struct store_message m;
	for (int i = 0; i < 2; i++) {
		assert_int_equal(store_message_get(f->store, id, uid[i], &m), IMAPQ_OK);
		struct store_update u = {
		    .op = STORE_FLAGS_ADD, .flags = STORE_KEYWORD(k), .unchangedsince = &m.modseq};
		struct uid_range r = {uid[i], uid[i]};
		assert_int_equal(store_update(f->store, id, &r, 1, &u, NULL, NULL, NULL), IMAPQ_OK);
	}
	/* The second is acked the IMAP way; the first is left to its lease. */
	struct uid_range r = {uid[1], uid[1]};
	assert_int_equal(store_message_get(f->store, id, uid[1], &m), IMAPQ_OK);
	assert_int_equal(store_flags(f->store, id, &r, 1, STORE_FLAGS_ADD, STORE_DELETED, &m.modseq,
				     NULL, NULL, NULL),
			 IMAPQ_OK);
	assert_int_equal(store_expunge(f->store, id, &r, 1, NULL, NULL, NULL), IMAPQ_OK);
	for (int t = 0; t < 1500; t++) {
		assert_int_equal(store_message_get(f->store, id, uid[0], &m), IMAPQ_OK);
		if (!(m.flags & STORE_KEYWORD(k)))
			break;
		sleep_ms(20);
	}
	assert_false(m.flags & STORE_KEYWORD(k));
	assert_int_equal(m.due, 0);
	struct queue_stats st;
	assert_int_equal(queue_stats(f->qs, "raw", &st), IMAPQ_OK);
	assert_int_equal(st.ready, 1);
	assert_int_equal(st.enqueued, 2);
	assert_int_equal(st.claims, 2);
	assert_int_equal(st.acks, 1);
	assert_int_equal(st.expired, 1);
}

int main(void)
{
	log_set_level(LOG_WARN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_waiters, queue_fixture_setup_short_lease,
					    queue_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_waiter_deleted_queue_and_self_cancel,
					    queue_fixture_setup_short_lease,
					    queue_fixture_teardown),
	    cmocka_unit_test_setup_teardown(
		test_eight_workers_drain, queue_fixture_setup_short_lease, queue_fixture_teardown),
	    cmocka_unit_test_setup_teardown(
		test_restart_keeps_claims, queue_fixture_setup_short_lease, queue_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_restart_finishes_stopped_deletes,
					    queue_fixture_setup_short_lease,
					    queue_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_restart_with_lapsed_lease,
					    queue_fixture_setup_short_lease,
					    queue_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_copied_claim_is_released,
					    queue_fixture_setup_short_lease,
					    queue_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_imap_only_queue, queue_fixture_setup_short_lease,
					    queue_fixture_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
