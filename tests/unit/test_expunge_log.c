/* Unit tests of the expunge history: exact answers for recent mod-sequences, complete supersets
 * after folding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "imap/store/expunge_log.h"

/* What expunge_log_since reported: a bitmap over UIDs plus checks on the ranges' order. */
struct answer {
	bool *uids;
	uint32_t cap;
	uint32_t last_hi; /* hi of the previous range, to check order and merging */
	uint32_t ranges;
};

static void collect(void *ctx, uint32_t lo, uint32_t hi)
{
	struct answer *a = ctx;

	assert_true(lo <= hi);
	assert_true(hi <= a->cap);
	/* Ascending, and merged: a gap of at least one UID separates consecutive ranges. */
	if (a->ranges > 0)
		assert_true(lo > a->last_hi + 1);
	for (uint32_t u = lo; u <= hi; u++)
		a->uids[u] = true;
	a->last_hi = hi;
	a->ranges++;
}

/* The truth kept by the tests: the modseq at which each UID was expunged, 0 when it exists. */
struct history {
	uint64_t *expunged_at;
	uint32_t cap;
};

static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

/* Asks the log about since and checks the answer against the history: never a UID that still
 * exists, every UID expunged after since, and (when exact) nothing else. */
static void check_since(const struct expunge_log *l, const struct history *h, uint64_t since,
			bool must_be_exact)
{
	struct answer a = {.cap = h->cap};
	uint32_t upto;
	uint64_t floor_modseq;
	uint32_t floor_uid;

	a.uids = calloc(h->cap + 1, sizeof(bool));
	assert_non_null(a.uids);
	upto = expunge_log_since(l, since, collect, &a);
	expunge_log_floor(l, &floor_modseq, &floor_uid);
	if (since >= floor_modseq)
		assert_int_equal(upto, 0);
	else
		assert_int_equal(upto, floor_uid);
	for (uint32_t u = 1; u <= h->cap; u++) {
		bool reported = a.uids[u] || (u <= upto && h->expunged_at[u] != 0);

		if (h->expunged_at[u] == 0)
			assert_false(a.uids[u]);
		if (h->expunged_at[u] > since)
			assert_true(reported);
		if (must_be_exact)
			assert_int_equal(reported, h->expunged_at[u] > since);
	}
	free(a.uids);
}

/* Consecutive UIDs of one expunge (one modseq) extend one run; a later expunge of the next UID
 * starts its own run, so no answer reports a UID expunged at or before since. */
static void test_runs_extend(void **state)
{
	struct expunge_log *l = expunge_log_create();
	struct history h = {.cap = 100};

	(void)state;
	h.expunged_at = calloc(h.cap + 1, sizeof(uint64_t));
	for (uint32_t u = 10; u <= 20; u++) {
		assert_int_equal(expunge_log_add(l, u, 120), IMAPQ_OK);
		h.expunged_at[u] = 120;
	}
	assert_int_equal(expunge_log_runs(l), 1);
	assert_int_equal(expunge_log_add(l, 21, 130), IMAPQ_OK);
	h.expunged_at[21] = 130;
	assert_int_equal(expunge_log_runs(l), 2);
	assert_int_equal(expunge_log_add(l, 30, 200), IMAPQ_OK);
	h.expunged_at[30] = 200;
	assert_int_equal(expunge_log_runs(l), 3);
	check_since(l, &h, 0, true);
	check_since(l, &h, 119, true);
	check_since(l, &h, 120, true); /* 21 and 30 only, not the earlier 10..20 */
	check_since(l, &h, 130, true);
	check_since(l, &h, 200, true);
	assert_int_equal(expunge_log_add(l, 31, 150), IMAPQ_E_INVALID);
	assert_int_equal(expunge_log_add(l, 0, 300), IMAPQ_E_INVALID);
	assert_int_equal(expunge_log_runs(l), 3);
	assert_true(expunge_log_memory(l) > 0);
	expunge_log_destroy(&l);
	assert_null(l);
	expunge_log_destroy(&l);
	free(h.expunged_at);
}

/* Without folding, answers for every since are exact; out-of-order runs come back sorted and
 * merged where they touch. */
static void test_exact_recent(void **state)
{
	struct expunge_log *l = expunge_log_create();
	struct history h = {.cap = 5000};
	uint64_t s = 17, modseq = 0;
	uint32_t n = 0, last = 0;

	(void)state;
	h.expunged_at = calloc(h.cap + 1, sizeof(uint64_t));
	/* Random UIDs, some following the previous one in the same expunge (same modseq):
	 * those share a run, and every answer is exact. */
	while (n < 1500) {
		uint32_t u = 1 + (uint32_t)(rng_next(&s) % h.cap);
		bool same = n > 0 && rng_next(&s) % 3 == 0;

		if (same)
			u = last + 1;
		if (u > h.cap || h.expunged_at[u] != 0)
			continue;
		if (!same)
			modseq += 1 + rng_next(&s) % 3;
		assert_int_equal(expunge_log_add(l, u, modseq), IMAPQ_OK);
		h.expunged_at[u] = modseq;
		last = u;
		n++;
	}
	assert_true(expunge_log_runs(l) < 1500);
	for (uint64_t since = 0; since <= modseq + 1; since += 1 + since / 50)
		check_since(l, &h, since, true);
	expunge_log_destroy(&l);

	/* Even UIDs only, so no add extends a run: every answer is exact. */
	l = expunge_log_create();
	memset(h.expunged_at, 0, (h.cap + 1) * sizeof(uint64_t));
	modseq = 0;
	s = 23;
	n = 0;
	while (n < 1500) {
		uint32_t u = 2 * (1 + (uint32_t)(rng_next(&s) % (h.cap / 2)));

		if (h.expunged_at[u] != 0)
			continue;
		modseq += 1 + rng_next(&s) % 3;
		assert_int_equal(expunge_log_add(l, u, modseq), IMAPQ_OK);
		h.expunged_at[u] = modseq;
		n++;
	}
	assert_int_equal(expunge_log_runs(l), 1500);
	for (uint64_t since = 0; since <= modseq + 1; since += 1 + since / 50)
		check_since(l, &h, since, true);
	expunge_log_destroy(&l);
	free(h.expunged_at);
}

/* Runs recorded in descending UID order that touch are merged into one answer range. */
static void test_merge_touching(void **state)
{
	struct expunge_log *l = expunge_log_create();
	struct answer a = {.cap = 100};

	(void)state;
	a.uids = calloc(a.cap + 1, sizeof(bool));
	assert_int_equal(expunge_log_add(l, 50, 1), IMAPQ_OK);
	assert_int_equal(expunge_log_add(l, 40, 2), IMAPQ_OK);
	assert_int_equal(expunge_log_add(l, 41, 2), IMAPQ_OK); /* same expunge: extends 40 */
	assert_int_equal(expunge_log_add(l, 42, 2), IMAPQ_OK);
	assert_int_equal(expunge_log_add(l, 43, 5), IMAPQ_OK); /* a later one: its own run */
	assert_int_equal(expunge_log_add(l, 45, 6), IMAPQ_OK);
	assert_int_equal(expunge_log_add(l, 44, 7), IMAPQ_OK);
	assert_int_equal(expunge_log_add(l, 49, 8), IMAPQ_OK);
	assert_int_equal(expunge_log_add(l, 46, 9), IMAPQ_OK);
	assert_int_equal(expunge_log_runs(l), 7);
	/* 40..46 is one range although it was recorded as five runs; 49..50 is another. */
	assert_int_equal(expunge_log_since(l, 0, collect, &a), 0);
	assert_int_equal(a.ranges, 2);
	for (uint32_t u = 1; u <= a.cap; u++)
		assert_int_equal(a.uids[u], (u >= 40 && u <= 46) || u == 49 || u == 50);
	free(a.uids);
	expunge_log_destroy(&l);
}

/* Past EXPUNGE_LOG_MAX_RUNS the oldest half folds into the floor; answers stay complete, and
 * exact for since values at or above the floor. */
static void test_many_runs_fold(void **state)
{
	struct expunge_log *l = expunge_log_create();
	struct history h;
	uint64_t floor_modseq, modseq = 0, s = 5;
	uint32_t floor_uid, total = EXPUNGE_LOG_MAX_RUNS + EXPUNGE_LOG_MAX_RUNS / 2 + 100;

	(void)state;
	h.cap = 3 * total;
	h.expunged_at = calloc(h.cap + 1, sizeof(uint64_t));
	/* Every third UID (a few shifted down by one), ascending: no add extends a run. */
	for (uint32_t i = 0; i < total; i++) {
		uint32_t u = 3 * (i + 1);

		if (i % 1000 == 999)
			u = 3 * (i + 1) - 1;
		modseq += 1 + rng_next(&s) % 2;
		assert_int_equal(expunge_log_add(l, u, modseq), IMAPQ_OK);
		h.expunged_at[u] = modseq;
	}
	/* Two folds happened, each of the oldest half, and 100 runs came after the second. */
	assert_int_equal(expunge_log_runs(l), EXPUNGE_LOG_MAX_RUNS / 2 + 100);
	expunge_log_floor(l, &floor_modseq, &floor_uid);
	assert_true(floor_modseq > 0);
	assert_true(floor_uid > 0);
	assert_true(expunge_log_memory(l) <= EXPUNGE_LOG_MAX_RUNS * 16 + 256);
	check_since(l, &h, 0, false);
	check_since(l, &h, floor_modseq - 1, false);
	check_since(l, &h, floor_modseq, true);
	check_since(l, &h, floor_modseq + 1000, true);
	check_since(l, &h, modseq - 5, true);
	check_since(l, &h, modseq, true);
	expunge_log_destroy(&l);
	free(h.expunged_at);
}

/* One expunge of more separate UIDs than the log holds runs (every other message, one
 * mod-sequence): folds take whole older expunges only, so the floor never reaches its
 * mod-sequence and the answer since any later point stays exact. */
static void test_one_expunge_past_the_cap(void **state)
{
	struct expunge_log *l = expunge_log_create();
	struct history h;
	uint64_t floor_modseq;
	uint32_t floor_uid, big = EXPUNGE_LOG_MAX_RUNS + 5000;

	(void)state;
	h.cap = 8 * big + 300;
	h.expunged_at = calloc(h.cap + 1, sizeof(uint64_t));
	/* Older single expunges at modseqs 1..100, then the big one at 200, then one more. */
	for (uint32_t u = 1; u <= 100; u++) {
		assert_int_equal(expunge_log_add(l, 2 * u, u), IMAPQ_OK);
		h.expunged_at[2 * u] = u;
	}
	for (uint32_t i = 0; i < big; i++) {
		uint32_t u = 201 + 2 * i;
		assert_int_equal(expunge_log_add(l, u, 200), IMAPQ_OK);
		h.expunged_at[u] = 200;
	}
	expunge_log_floor(l, &floor_modseq, &floor_uid);
	assert_true(floor_modseq < 200);
	assert_true(expunge_log_runs(l) >= big);
	check_since(l, &h, floor_modseq, true);
	check_since(l, &h, 150, true);
	check_since(l, &h, 199, true);
	uint32_t last = 201 + 2 * big;
	assert_true(last <= h.cap);
	assert_int_equal(expunge_log_add(l, last, 201), IMAPQ_OK);
	h.expunged_at[last] = 201;
	expunge_log_floor(l, &floor_modseq, &floor_uid);
	assert_true(floor_modseq < 200);
	check_since(l, &h, 199, true);
	check_since(l, &h, 200, true);
	/* Later expunges fold the big one once it is the older half: not before as many runs
	 * again have come after it. */
	uint64_t m = 201;
	uint32_t u = last, added = 0;
	while (floor_modseq < 200 && added < 3 * big) {
		u += 2;
		assert_int_equal(expunge_log_add(l, u, ++m), IMAPQ_OK);
		h.expunged_at[u] = m;
		added++;
		expunge_log_floor(l, &floor_modseq, &floor_uid);
	}
	assert_true(floor_modseq >= 200);
	assert_true(added >= big / 2);
	check_since(l, &h, floor_modseq, true);
	expunge_log_destroy(&l);
	free(h.expunged_at);
}

/* fold and raise_floor move runs into the floor and keep later runs exact. */
static void test_fold_and_raise_floor(void **state)
{
	struct expunge_log *l = expunge_log_create();
	struct history h = {.cap = 1000};
	uint64_t fm;
	uint32_t fu;

	(void)state;
	h.expunged_at = calloc(h.cap + 1, sizeof(uint64_t));
	expunge_log_floor(l, &fm, &fu);
	assert_int_equal(fm, 0);
	assert_int_equal(fu, 0);
	for (uint32_t i = 1; i <= 100; i++) {
		assert_int_equal(expunge_log_add(l, i * 5, i * 10), IMAPQ_OK);
		h.expunged_at[i * 5] = i * 10;
	}
	expunge_log_fold(l, 305);
	expunge_log_floor(l, &fm, &fu);
	assert_int_equal(fm, 300);
	assert_int_equal(fu, 150);
	assert_int_equal(expunge_log_runs(l), 70);
	check_since(l, &h, 299, false);
	check_since(l, &h, 300, true);
	check_since(l, &h, 650, true);
	/* Folding below the floor changes nothing. */
	expunge_log_fold(l, 100);
	assert_int_equal(expunge_log_runs(l), 70);
	/* A raised floor (history dropped elsewhere) covers UIDs the log never saw. */
	h.expunged_at[997] = 1; /* expunged long ago, before this log existed */
	expunge_log_raise_floor(l, 505, 998);
	expunge_log_floor(l, &fm, &fu);
	assert_int_equal(fm, 505);
	assert_int_equal(fu, 998);
	assert_int_equal(expunge_log_runs(l), 50);
	check_since(l, &h, 0, false);
	check_since(l, &h, 504, false);
	check_since(l, &h, 505, true);
	/* A lower raise keeps the higher floor; runs above it stay exact. */
	expunge_log_raise_floor(l, 10, 5);
	expunge_log_floor(l, &fm, &fu);
	assert_int_equal(fm, 505);
	assert_int_equal(fu, 998);
	assert_int_equal(expunge_log_runs(l), 50);
	/* Adding after a fold works; the next UID at a later modseq is a run of its own. */
	assert_int_equal(expunge_log_add(l, 501, 2000), IMAPQ_OK);
	assert_int_equal(expunge_log_runs(l), 51);
	h.expunged_at[501] = 2000;
	check_since(l, &h, 1999, true);
	expunge_log_fold(l, UINT64_MAX);
	assert_int_equal(expunge_log_runs(l), 0);
	expunge_log_floor(l, &fm, &fu);
	assert_int_equal(fm, 2000);
	assert_int_equal(fu, 998);
	check_since(l, &h, 0, false);
	check_since(l, &h, 2000, true);
	expunge_log_destroy(&l);
	free(h.expunged_at);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_runs_extend),	   cmocka_unit_test(test_exact_recent),
	    cmocka_unit_test(test_merge_touching), cmocka_unit_test(test_one_expunge_past_the_cap),
	    cmocka_unit_test(test_many_runs_fold), cmocka_unit_test(test_fold_and_raise_floor),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
