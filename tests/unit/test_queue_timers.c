/* Unit tests of the queue service's timers: lease expiry and its race with acks, renewals,
 * dead-lettering past max_attempts, delays and dead-letter retention. Leases are 1 s so the
 * suite stays short. Waiters, races and restarts are in test_queue_service.c. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "imap/base/log.h"
#include "queue/queue.h"

struct fixture {
	char dir[64];
	struct store *store;
	struct queue_service *qs;
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Opens the store of the fixture's folder and a service on it. */
static void open_all(struct fixture *f)
{
	struct store_options o = {.dir = f->dir, .fsync = JOURNAL_FSYNC_OFF};
	struct store_report rep;
	assert_int_equal(store_open(&o, &rep, &f->store), IMAPQ_OK);
	struct queue_options qo = {.store = f->store};
	assert_int_equal(queue_service_create(&qo, &f->qs), IMAPQ_OK);
}

static void close_all(struct fixture *f)
{
	queue_service_destroy(&f->qs);
	store_close(&f->store);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	if (f == NULL)
		return -1;
	strcpy(f->dir, "/tmp/imapq-test-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	open_all(f);
	struct queue_settings s = {.lease = 1, .max_attempts = 5};
	if (queue_create(f->qs, "jobs", &s, NULL) != IMAPQ_OK)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	close_all(f);
	nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

static struct queue_stats stats_of(struct fixture *f)
{
	struct queue_stats s;
	assert_int_equal(queue_stats(f->qs, "jobs", &s), IMAPQ_OK);
	return s;
}

/* Polls the queue's stats until ready reaches want, for up to timeout_ms; true when it did. */
static bool wait_ready(struct fixture *f, uint32_t want, unsigned timeout_ms)
{
	for (unsigned t = 0; t < timeout_ms; t += 20) {
		if (stats_of(f).ready == want)
			return true;
		sleep_ms(20);
	}
	return stats_of(f).ready == want;
}

static uint32_t put(struct fixture *f, const char *text, uint32_t delay)
{
	struct queue_job job;
	assert_int_equal(
	    queue_enqueue(f->qs, "jobs", text, strlen(text), "text/plain", delay, &job, NULL),
	    IMAPQ_OK);
	return job.id;
}

static bool try_claim(struct fixture *f, uint32_t lease, struct queue_job *job_r)
{
	uint32_t n = 0;
	assert_int_equal(queue_claim(f->qs, "jobs", 1, lease, job_r, &n, NULL), IMAPQ_OK);
	return n == 1;
}

static struct queue_job claim1(struct fixture *f, uint32_t lease)
{
	struct queue_job job;
	assert_true(try_claim(f, lease, &job));
	return job;
}

static void test_lease_expiry_redelivers(void **state)
{
	struct fixture *f = *state;
	uint32_t id = put(f, "work", 0);
	struct queue_job first = claim1(f, 0);
	assert_int_equal(first.id, id);
	assert_int_equal(stats_of(f).ready, 0);
	assert_true(wait_ready(f, 1, 4000));

	/* The expired holder lost the job; the next worker gets it with a second attempt. */
	assert_int_equal(queue_ack(f->qs, "jobs", id, first.receipt, NULL), IMAPQ_E_MODIFIED);
	struct queue_job second = claim1(f, 30);
	assert_int_equal(second.id, id);
	assert_int_equal(second.attempts, 2);
	assert_int_equal(queue_ack(f->qs, "jobs", id, first.receipt, NULL), IMAPQ_E_MODIFIED);
	assert_int_equal(queue_ack(f->qs, "jobs", id, second.receipt, NULL), IMAPQ_OK);
	struct queue_stats s = stats_of(f);
	assert_int_equal(s.expired, 1);
	assert_int_equal(s.claims, 2);
	assert_int_equal(s.acks, 1);
}

static void test_ack_before_expiry_wins(void **state)
{
	struct fixture *f = *state;
	uint32_t a = put(f, "acked", 0);
	uint32_t b = put(f, "left", 0);
	struct queue_job ja = claim1(f, 0);
	struct queue_job jb = claim1(f, 0);
	assert_int_equal(ja.id, a);
	assert_int_equal(queue_ack(f->qs, "jobs", a, ja.receipt, NULL), IMAPQ_OK);
	/* Both leases end together: only the job nobody acked comes back. */
	assert_true(wait_ready(f, 1, 4000));
	sleep_ms(100);
	struct queue_stats s = stats_of(f);
	assert_int_equal(s.ready, 1);
	assert_int_equal(s.claimed + s.delayed + s.dead, 0);
	assert_int_equal(s.acks, 1);
	assert_int_equal(s.expired, 1);
	struct queue_job again = claim1(f, 30);
	assert_int_equal(again.id, b);
	assert_int_equal(queue_ack(f->qs, "jobs", b, jb.receipt, NULL), IMAPQ_E_MODIFIED);
}

static void test_extend_keeps_the_job(void **state)
{
	struct fixture *f = *state;
	uint32_t id = put(f, "work", 0);
	struct queue_job j = claim1(f, 0);
	struct queue_receipt r = j.receipt;
	for (int i = 0; i < 5; i++) {
		sleep_ms(450);
		assert_int_equal(queue_extend(f->qs, "jobs", id, r, 0, &r, NULL), IMAPQ_OK);
	}
	struct queue_stats s = stats_of(f);
	assert_int_equal(s.claimed, 1);
	assert_int_equal(s.expired, 0);
	assert_int_equal(queue_ack(f->qs, "jobs", id, j.receipt, NULL), IMAPQ_E_MODIFIED);
	assert_int_equal(queue_ack(f->qs, "jobs", id, r, NULL), IMAPQ_OK);
}

static void test_max_attempts_dead_letters(void **state)
{
	struct fixture *f = *state;
	struct queue_settings s = {.max_attempts = 2};
	assert_int_equal(queue_settings_set(f->qs, "jobs", &s, NULL), IMAPQ_OK);
	uint32_t id = put(f, "poison", 0);
	struct queue_job j = claim1(f, 30);
	assert_int_equal(queue_nack(f->qs, "jobs", id, j.receipt, 0, NULL), IMAPQ_OK);
	j = claim1(f, 0);
	assert_int_equal(j.attempts, 2);
	/* The second lease runs out: past max_attempts the job goes to the dead letters. */
	for (int t = 0; t < 200 && stats_of(f).dead == 0; t++)
		sleep_ms(20);
	struct queue_stats st = stats_of(f);
	assert_int_equal(st.dead, 1);
	assert_int_equal(st.ready + st.claimed, 0);
	assert_int_equal(st.dead_lettered, 1);
	assert_int_equal(st.nacks, 1);
	assert_int_equal(st.expired, 1);
	assert_int_equal(queue_ack(f->qs, "jobs", id, j.receipt, NULL), IMAPQ_E_NOTFOUND);

	uint32_t moved = 0;
	assert_int_equal(queue_requeue_dead(f->qs, "jobs", 0, &moved, NULL), IMAPQ_OK);
	assert_int_equal(moved, 1);
	assert_true(wait_ready(f, 1, 1000));
	j = claim1(f, 30);
	assert_int_equal(j.attempts, 1);
	char *payload;
	size_t len;
	assert_int_equal(
	    queue_job_payload(f->qs, "jobs", QUEUE_CLAIMED, j.id, &payload, &len, NULL, 0),
	    IMAPQ_OK);
	assert_string_equal(payload, "poison");
	free(payload);
}

static void test_delays(void **state)
{
	struct fixture *f = *state;
	struct queue_job j;
	uint32_t a = put(f, "nacked", 0);
	j = claim1(f, 30);
	assert_int_equal(j.id, a);
	/* A nack with a delay holds the job back as an enqueue with a delay does. */
	assert_int_equal(queue_nack(f->qs, "jobs", a, j.receipt, 1, NULL), IMAPQ_OK);
	uint32_t b = put(f, "later", 1);
	assert_false(try_claim(f, 0, &j));
	assert_int_equal(stats_of(f).delayed, 2);
	assert_true(wait_ready(f, 2, 4000));
	assert_int_equal(stats_of(f).delayed, 0);
	j = claim1(f, 30);
	assert_int_equal(j.id, a);
	assert_int_equal(j.attempts, 2);
	j = claim1(f, 30);
	assert_int_equal(j.id, b);
	assert_int_equal(j.attempts, 1);
}

static void test_dead_letter_retention(void **state)
{
	struct fixture *f = *state;
	struct queue_settings s = {.max_attempts = 1, .retention = 1};
	assert_int_equal(queue_settings_set(f->qs, "jobs", &s, NULL), IMAPQ_OK);
	uint32_t id = put(f, "old", 0);
	struct queue_job j = claim1(f, 30);
	assert_int_equal(queue_nack(f->qs, "jobs", id, j.receipt, 0, NULL), IMAPQ_OK);
	assert_int_equal(stats_of(f).dead, 1);
	int t = 0;
	while (t++ < 200 && stats_of(f).dead != 0)
		sleep_ms(20);
	assert_int_equal(stats_of(f).dead, 0);
}

int main(void)
{
	log_set_level(LOG_WARN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_lease_expiry_redelivers, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ack_before_expiry_wins, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_extend_keeps_the_job, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_max_attempts_dead_letters, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_delays, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_dead_letter_retention, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
