/* Fixtures shared by the store and queue tests: a fresh temporary folder, a store opened in it
 * without fsync, a queue service with a "jobs" queue, the threads of a claim race, and helpers
 * for the operations the tests repeat.
 *
 * Include after <cmocka.h>; every helper asserts with cmocka, so a step that fails fails the test
 * that took it. */
#ifndef IMAPQ_TEST_QUEUE_FIXTURE_H
#define IMAPQ_TEST_QUEUE_FIXTURE_H

#include <ftw.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "imap/base/crc32c.h"
#include "tests/unit/tmpdir.h"
#include "imap/store/store.h"
#include "queue/queue.h"

/* Threads racing for one message in fixture_race. */
#define FIXTURE_RACERS 8

/* --- stores --- */

/* Opens the store of folder dir into *sp, closing *sp first when it is open (a restart);
 * segment_bytes 0 keeps the default segment size. */
static inline void fixture_store_reopen(const char *dir, enum journal_fsync fsync,
					uint64_t segment_bytes, struct store **sp)
{
	if (*sp != NULL)
		store_close(sp);
	struct store_options o = {.dir = dir, .fsync = fsync, .segment_bytes = segment_bytes};
	struct store_report rep;
	assert_int_equal(store_open(&o, &rep, sp), IMAPQ_OK);
	assert_non_null(*sp);
}

/* Closes *sp (which clears it) and removes folder dir: the end of a store test. */
static inline void fixture_store_remove(const char *dir, struct store **sp)
{
	store_close(sp);
	assert_null(*sp);
	tmpdir_remove(dir);
}

/* A store in a temporary folder. */
struct store_fixture {
	char dir[TMPDIR_LEN];
	struct store *s;
};

/* A store fixture in *state whose journal syncs as fsync says. */
static inline int store_fixture_start(void **state, enum journal_fsync fsync)
{
	struct store_fixture *f = calloc(1, sizeof *f);
	if (f == NULL || !tmpdir_make(f->dir)) {
		free(f);
		return -1;
	}
	fixture_store_reopen(f->dir, fsync, 0, &f->s);
	*state = f;
	return 0;
}

/* cmocka setup: a store without fsync. */
static inline int store_fixture_setup(void **state)
{
	return store_fixture_start(state, JOURNAL_FSYNC_OFF);
}

/* cmocka setup: a store that syncs every commit, for tests of durability. */
static inline int store_fixture_setup_fsync(void **state)
{
	return store_fixture_start(state, JOURNAL_FSYNC_ALWAYS);
}

/* cmocka teardown of either setup: closes the store and removes its folder. */
static inline int store_fixture_teardown(void **state)
{
	struct store_fixture *f = *state;
	fixture_store_remove(f->dir, &f->s);
	free(f);
	return 0;
}

/* Creates mailbox name and returns its id. */
static inline uint32_t fixture_mailbox(struct store *s, const char *name)
{
	uint32_t id = 0;
	assert_int_equal(store_mailbox_create(s, name, &id, NULL), IMAPQ_OK);
	return id;
}

/* Appends a message with a text body to mailbox id and returns its UID. */
static inline uint32_t append_text(struct store *s, uint32_t id, uint64_t flags, const char *text)
{
	struct journal_body b = {.data = text, .fd = -1, .len = strlen(text)};
	b.crc = crc32c(0, text, b.len);
	uint32_t uid = 0;
	uint64_t modseq = 0;
	assert_int_equal(store_append(s, id, flags, 1700000000, &b, &uid, &modseq, NULL), IMAPQ_OK);
	assert_true(uid > 0);
	return uid;
}

/* --- the claim race --- */

/* One try of a racer: a store_flag_outcome, or -1 when the try itself failed. */
typedef int fixture_race_fn(void *ctx);

/* FIXTURE_RACERS threads that each call fn once a round; the test starts every round and waits
 * for its end, so exactly one racer should win (STORE_CHANGED) and the rest fail. */
struct fixture_race {
	fixture_race_fn *fn;
	void *ctx;
	int rounds;
	pthread_barrier_t start, done;
	pthread_mutex_t mu;
	pthread_t threads[FIXTURE_RACERS];
	int changed, failed, other; /* outcomes so far, under mu */
};

/* A racer's body: one try of fn a round, tallied by outcome. */
static inline void *fixture_racer(void *arg)
{
	struct fixture_race *r = arg;
	for (int round = 0; round < r->rounds; round++) {
		pthread_barrier_wait(&r->start);
		int outcome = r->fn(r->ctx);
		pthread_mutex_lock(&r->mu);
		if (outcome == STORE_CHANGED)
			r->changed++;
		else if (outcome == STORE_FAILED)
			r->failed++;
		else
			r->other++;
		pthread_mutex_unlock(&r->mu);
		pthread_barrier_wait(&r->done);
	}
	return NULL;
}

/* Starts the racers of a race of rounds rounds, each calling fn(ctx) once a round. */
static inline void fixture_race_start(struct fixture_race *r, int rounds, fixture_race_fn *fn,
				      void *ctx)
{
	*r = (struct fixture_race){.fn = fn, .ctx = ctx, .rounds = rounds};
	pthread_barrier_init(&r->start, NULL, FIXTURE_RACERS + 1);
	pthread_barrier_init(&r->done, NULL, FIXTURE_RACERS + 1);
	pthread_mutex_init(&r->mu, NULL);
	for (int i = 0; i < FIXTURE_RACERS; i++)
		pthread_create(&r->threads[i], NULL, fixture_racer, r);
}

/* Runs one round: releases the racers and returns once every one has tallied its try. */
static inline void fixture_race_round(struct fixture_race *r)
{
	pthread_barrier_wait(&r->start);
	pthread_barrier_wait(&r->done);
}

/* Joins the racers after the last round, checks that each round had one winner and no try
 * failed, and frees the race. */
static inline void fixture_race_finish(struct fixture_race *r)
{
	for (int i = 0; i < FIXTURE_RACERS; i++)
		pthread_join(r->threads[i], NULL);
	assert_int_equal(r->changed, r->rounds);
	assert_int_equal(r->failed, r->rounds * (FIXTURE_RACERS - 1));
	assert_int_equal(r->other, 0);
	pthread_barrier_destroy(&r->start);
	pthread_barrier_destroy(&r->done);
	pthread_mutex_destroy(&r->mu);
}

/* --- the queue service --- */

/* A store in a temporary folder and a queue service on it. */
struct queue_fixture {
	char dir[TMPDIR_LEN];
	struct store *store;
	struct queue_service *qs;
};

/* Opens the store of the fixture's folder and a service on it. */
static inline void queue_fixture_open(struct queue_fixture *f)
{
	fixture_store_reopen(f->dir, JOURNAL_FSYNC_OFF, 0, &f->store);
	struct queue_options qo = {.store = f->store};
	assert_int_equal(queue_service_create(&qo, &f->qs), IMAPQ_OK);
}

/* Destroys the service and closes the store; the folder stays for a restart. */
static inline void queue_fixture_close(struct queue_fixture *f)
{
	queue_service_destroy(&f->qs);
	assert_null(f->qs);
	store_close(&f->store);
}

/* A fixture in *state with the queue "jobs" created with settings (NULL: the defaults). */
static inline int queue_fixture_start(void **state, const struct queue_settings *settings)
{
	struct queue_fixture *f = calloc(1, sizeof *f);
	if (f == NULL || !tmpdir_make(f->dir)) {
		free(f);
		return -1;
	}
	queue_fixture_open(f);
	if (queue_create(f->qs, "jobs", settings, NULL) != IMAPQ_OK)
		return -1;
	*state = f;
	return 0;
}

/* cmocka setup: the queue "jobs" with the default settings. */
static inline int queue_fixture_setup(void **state)
{
	return queue_fixture_start(state, NULL);
}

/* cmocka setup: the queue "jobs" with a 1 s lease and 5 attempts, so timer tests stay short. */
static inline int queue_fixture_setup_short_lease(void **state)
{
	struct queue_settings s = {.lease = 1, .max_attempts = 5};
	return queue_fixture_start(state, &s);
}

/* cmocka teardown of either setup: closes everything and removes the folder. */
static inline int queue_fixture_teardown(void **state)
{
	struct queue_fixture *f = *state;
	queue_fixture_close(f);
	tmpdir_remove(f->dir);
	free(f);
	return 0;
}

/* --- queue operations --- */

static inline void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

/* Enqueues a text job on queue with delay seconds and returns its id. */
static inline uint32_t put(struct queue_fixture *f, const char *queue, const char *text,
			   uint32_t delay)
{
	struct queue_job job;
	assert_int_equal(
	    queue_enqueue(f->qs, queue, text, strlen(text), "text/plain", delay, &job, NULL),
	    IMAPQ_OK);
	assert_true(job.id > 0);
	return job.id;
}

/* Claims at most one job of "jobs" into *job_r; true when one was claimed. */
static inline bool try_claim(struct queue_fixture *f, uint32_t lease, struct queue_job *job_r)
{
	uint32_t n = 0;
	assert_int_equal(queue_claim(f->qs, "jobs", 1, lease, job_r, &n, NULL), IMAPQ_OK);
	return n == 1;
}

/* Claims exactly one job of "jobs" and returns it. */
static inline struct queue_job claim1(struct queue_fixture *f, uint32_t lease)
{
	struct queue_job job;
	assert_true(try_claim(f, lease, &job));
	return job;
}

static inline struct queue_stats stats_of(struct queue_fixture *f, const char *queue)
{
	struct queue_stats s;
	assert_int_equal(queue_stats(f->qs, queue, &s), IMAPQ_OK);
	return s;
}

/* Polls the stats of "jobs" until ready reaches want, for up to timeout_ms; true when it did. */
static inline bool wait_ready(struct queue_fixture *f, uint32_t want, unsigned timeout_ms)
{
	for (unsigned t = 0; t < timeout_ms; t += 20) {
		if (stats_of(f, "jobs").ready == want)
			return true;
		sleep_ms(20);
	}
	return stats_of(f, "jobs").ready == want;
}

#endif
