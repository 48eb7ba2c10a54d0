/* Unit tests of the queue service's timers: lease expiry and its race with acks, renewals,
 * dead-lettering past max_attempts, delays and dead-letter retention. Leases are 1 s so the
 * suite stays short. Waiters, races and restarts are in test_queue_service.c. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "imap/base/limits.h"
#include "imap/base/log.h"
#include "queue/queue.h"
#include "tests/unit/queue_fixture.h"

static void test_lease_expiry_redelivers(void **state)
{
	struct queue_fixture *f = *state;
	uint32_t id = put(f, "jobs", "work", 0);
	struct queue_job first = claim1(f, 0);
	assert_int_equal(first.id, id);
	assert_int_equal(stats_of(f, "jobs").ready, 0);
	assert_true(wait_ready(f, 1, 20000));

	/* The expired holder lost the job; the next worker gets it with a second attempt. */
	assert_int_equal(queue_ack(f->qs, "jobs", id, first.receipt, NULL), IMAPQ_E_MODIFIED);
	struct queue_job second = claim1(f, 30);
	assert_int_equal(second.id, id);
	assert_int_equal(second.attempts, 2);
	assert_int_equal(queue_ack(f->qs, "jobs", id, first.receipt, NULL), IMAPQ_E_MODIFIED);
	assert_int_equal(queue_ack(f->qs, "jobs", id, second.receipt, NULL), IMAPQ_OK);
	struct queue_stats s = stats_of(f, "jobs");
	assert_int_equal(s.expired, 1);
	assert_int_equal(s.claims, 2);
	assert_int_equal(s.acks, 1);
}

static void test_ack_before_expiry_wins(void **state)
{
	struct queue_fixture *f = *state;
	uint32_t a = put(f, "jobs", "acked", 0);
	uint32_t b = put(f, "jobs", "left", 0);
	struct queue_job ja = claim1(f, 0);
	struct queue_job jb = claim1(f, 0);
	assert_int_equal(ja.id, a);
	assert_int_equal(queue_ack(f->qs, "jobs", a, ja.receipt, NULL), IMAPQ_OK);
	/* Both leases end together: only the job nobody acked comes back. */
	assert_true(wait_ready(f, 1, 20000));
	sleep_ms(100);
	struct queue_stats s = stats_of(f, "jobs");
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
	struct queue_fixture *f = *state;
	uint32_t id = put(f, "jobs", "work", 0);
	struct queue_job j = claim1(f, 0);
	struct queue_receipt r = j.receipt;
	for (int i = 0; i < 5; i++) {
		sleep_ms(450);
		assert_int_equal(queue_extend(f->qs, "jobs", id, r, 0, &r, NULL), IMAPQ_OK);
	}
	struct queue_stats s = stats_of(f, "jobs");
	assert_int_equal(s.claimed, 1);
	assert_int_equal(s.expired, 0);
	assert_int_equal(queue_ack(f->qs, "jobs", id, j.receipt, NULL), IMAPQ_E_MODIFIED);
	assert_int_equal(queue_ack(f->qs, "jobs", id, r, NULL), IMAPQ_OK);
}

static void test_max_attempts_dead_letters(void **state)
{
	struct queue_fixture *f = *state;
	struct queue_settings s = {.max_attempts = 2};
	assert_int_equal(queue_settings_set(f->qs, "jobs", &s, NULL), IMAPQ_OK);
	uint32_t id = put(f, "jobs", "poison", 0);
	struct queue_job j = claim1(f, 30);
	assert_int_equal(queue_nack(f->qs, "jobs", id, j.receipt, 0, NULL), IMAPQ_OK);
	j = claim1(f, 0);
	assert_int_equal(j.attempts, 2);
	/* The second lease runs out: past max_attempts the job goes to the dead letters. The
	 * timer counts the expiry just after the move, so wait for both. */
	for (int t = 0; t < 1500; t++) {
		struct queue_stats now = stats_of(f, "jobs");
		if (now.dead != 0 && now.expired != 0)
			break;
		sleep_ms(20);
	}
	struct queue_stats st = stats_of(f, "jobs");
	assert_int_equal(st.dead, 1);
	assert_int_equal(st.ready + st.claimed, 0);
	assert_int_equal(st.dead_lettered, 1);
	assert_int_equal(st.nacks, 1);
	assert_int_equal(st.expired, 1);
	assert_int_equal(queue_ack(f->qs, "jobs", id, j.receipt, NULL), IMAPQ_E_NOTFOUND);

	uint32_t moved = 0;
	assert_int_equal(queue_requeue_dead(f->qs, "jobs", 0, &moved, NULL), IMAPQ_OK);
	assert_int_equal(moved, 1);
	assert_true(wait_ready(f, 1, 20000));
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

/* A worker's release over IMAP on the last attempt counts as a nack, as an HTTP nack would, and
 * its job is dead-lettered without an expiry being counted. */
static void test_imap_release_on_last_attempt_is_a_nack(void **state)
{
	struct queue_fixture *f = *state;
	struct queue_settings s = {.max_attempts = 1};
	assert_int_equal(queue_settings_set(f->qs, "jobs", &s, NULL), IMAPQ_OK);
	uint32_t id = put(f, "jobs", "given up", 0);
	struct queue_job j = claim1(f, 30);
	uint32_t box;
	unsigned k;
	assert_int_equal(store_mailbox_find(f->store, "jobs", &box), IMAPQ_OK);
	assert_int_equal(store_keyword(f->store, box, STORE_CLAIM_KEYWORD, false, &k, NULL),
			 IMAPQ_OK);
	struct uid_range r = {id, id};
	assert_int_equal(store_update(f->store, box, &r, 1,
				      &(struct store_update){.op = STORE_FLAGS_REMOVE,
							     .flags = STORE_KEYWORD(k),
							     .unchangedsince = &j.receipt.modseq},
				      NULL, NULL, NULL),
			 IMAPQ_OK);
	struct queue_stats st = stats_of(f, "jobs");
	for (int t = 0; t < 500 && (st.dead == 0 || st.dead_lettered == 0); t++) {
		sleep_ms(20);
		st = stats_of(f, "jobs");
	}
	sleep_ms(100); /* any expiry count would follow the move at once */
	st = stats_of(f, "jobs");
	assert_int_equal(st.dead, 1);
	assert_int_equal(st.dead_lettered, 1);
	assert_int_equal(st.nacks, 1);
	assert_int_equal(st.expired, 0);
}

/* A mailbox made over IMAP whose name leaves no room for "/dead" cannot dead-letter: a job past
 * its attempts is released when its lease ends, never left claimed. */
static void test_long_name_releases_instead(void **state)
{
	struct queue_fixture *f = *state;
	char name[IMAPQ_MAX_MAILBOX_NAME - 1];
	memset(name, 'q', sizeof name - 1);
	name[sizeof name - 1] = '\0';
	uint32_t box;
	unsigned k;
	assert_int_equal(store_mailbox_create(f->store, name, &box, NULL), IMAPQ_OK);
	assert_int_equal(store_annotation_set(f->store, box, STORE_SETTING_LEASE, "1", NULL),
			 IMAPQ_OK);
	assert_int_equal(store_annotation_set(f->store, box, STORE_SETTING_MAX_ATTEMPTS, "1", NULL),
			 IMAPQ_OK);
	assert_int_equal(store_keyword(f->store, box, STORE_CLAIM_KEYWORD, true, &k, NULL),
			 IMAPQ_OK);
	uint32_t uid = append_text(f->store, box, 0, "job");
	struct uid_range r = {uid, uid};
	assert_int_equal(
	    store_update(f->store, box, &r, 1,
			 &(struct store_update){.op = STORE_FLAGS_ADD, .flags = STORE_KEYWORD(k)},
			 NULL, NULL, NULL),
	    IMAPQ_OK);
	struct store_message m;
	for (int t = 0; t < 250; t++) {
		assert_int_equal(store_message_get(f->store, box, uid, &m), IMAPQ_OK);
		if (!(m.flags & STORE_KEYWORD(k)))
			break;
		sleep_ms(20);
	}
	assert_int_equal(m.flags & STORE_KEYWORD(k), 0);
	assert_int_equal(m.attempts, 1);
	assert_int_equal(m.due, 0);
}

static void test_delays(void **state)
{
	struct queue_fixture *f = *state;
	struct queue_job j;
	uint32_t a = put(f, "jobs", "nacked", 0);
	j = claim1(f, 30);
	assert_int_equal(j.id, a);
	/* A nack with a delay holds the job back as an enqueue with a delay does. */
	assert_int_equal(queue_nack(f->qs, "jobs", a, j.receipt, 1, NULL), IMAPQ_OK);
	uint32_t b = put(f, "jobs", "later", 1);
	assert_false(try_claim(f, 0, &j));
	assert_int_equal(stats_of(f, "jobs").delayed, 2);
	assert_true(wait_ready(f, 2, 20000));
	assert_int_equal(stats_of(f, "jobs").delayed, 0);
	j = claim1(f, 30);
	assert_int_equal(j.id, a);
	assert_int_equal(j.attempts, 2);
	j = claim1(f, 30);
	assert_int_equal(j.id, b);
	assert_int_equal(j.attempts, 1);
}

/* A burst of changes larger than the event buffer the service keeps between drains
 * (QUEUE_EVENTS_KEEP), then a small one: every delay is still scheduled and released. */
#define BURST_JOBS 5000
static void test_delays_of_a_burst(void **state)
{
	struct queue_fixture *f = *state;
	static struct queue_new_job jobs[BURST_JOBS];
	for (int i = 0; i < BURST_JOBS; i++)
		jobs[i] = (struct queue_new_job){
		    .payload = "burst", .len = 5, .content_type = "text/plain", .delay = 1};
	size_t done = 0;
	assert_int_equal(queue_enqueue_batch(f->qs, "jobs", jobs, BURST_JOBS, NULL, &done, NULL),
			 IMAPQ_OK);
	assert_int_equal(done, BURST_JOBS);
	assert_int_equal(queue_enqueue_batch(f->qs, "jobs", jobs, 100, NULL, &done, NULL),
			 IMAPQ_OK);
	assert_int_equal(stats_of(f, "jobs").delayed, BURST_JOBS + 100);
	assert_true(wait_ready(f, BURST_JOBS + 100, 30000));
	assert_int_equal(stats_of(f, "jobs").delayed, 0);
}

static void test_dead_letter_retention(void **state)
{
	struct queue_fixture *f = *state;
	struct queue_settings s = {.max_attempts = 1, .retention = 1};
	assert_int_equal(queue_settings_set(f->qs, "jobs", &s, NULL), IMAPQ_OK);
	uint32_t id = put(f, "jobs", "old", 0);
	struct queue_job j = claim1(f, 30);
	assert_int_equal(queue_nack(f->qs, "jobs", id, j.receipt, 0, NULL), IMAPQ_OK);
	assert_int_equal(stats_of(f, "jobs").dead, 1);
	int t = 0;
	while (t++ < 1500 && stats_of(f, "jobs").dead != 0)
		sleep_ms(20);
	assert_int_equal(stats_of(f, "jobs").dead, 0);
}

int main(void)
{
	log_set_level(LOG_WARN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_lease_expiry_redelivers,
					    queue_fixture_setup_short_lease,
					    queue_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_ack_before_expiry_wins,
					    queue_fixture_setup_short_lease,
					    queue_fixture_teardown),
	    cmocka_unit_test_setup_teardown(
		test_extend_keeps_the_job, queue_fixture_setup_short_lease, queue_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_max_attempts_dead_letters,
					    queue_fixture_setup_short_lease,
					    queue_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_imap_release_on_last_attempt_is_a_nack,
					    queue_fixture_setup_short_lease,
					    queue_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_long_name_releases_instead,
					    queue_fixture_setup_short_lease,
					    queue_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_delays, queue_fixture_setup_short_lease,
					    queue_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_delays_of_a_burst, queue_fixture_setup_short_lease,
					    queue_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_dead_letter_retention,
					    queue_fixture_setup_short_lease,
					    queue_fixture_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
