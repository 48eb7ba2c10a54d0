/* Expunge history. Runs (lo, hi, modseq) sit in one array in the order they were recorded, which
 * is modseq order, so "runs newer than since" is a suffix found by binary search. Within one
 * expunge (one mod-sequence), the UID right after the newest run's hi extends that run, so an
 * expunge of adjacent messages is one run. Folding moves a prefix of runs into the floor:
 * floor_modseq becomes the highest folded modseq and floor_uid the highest folded UID, so a
 * client that synchronised at or after floor_modseq still gets an exact answer. */
#include "imap/store/expunge_log.h"

#include <stdlib.h>
#include <string.h>

/* Runs allocated when the first one is recorded. */
#define EXPUNGE_LOG_FIRST_CAP 16

/* UIDs lo..hi, all expunged at or before modseq (and after the previous run's modseq). */
struct expunge_run {
	uint32_t lo;
	uint32_t hi;
	uint64_t modseq;
};

struct expunge_log {
	struct expunge_run *runs;
	size_t n;
	size_t cap;
	uint64_t floor_modseq;
	uint32_t floor_uid;
};

struct expunge_log *expunge_log_create(void)
{
	return calloc(1, sizeof(struct expunge_log));
}

void expunge_log_destroy(struct expunge_log **l)
{
	if (*l == NULL)
		return;
	free((*l)->runs);
	free(*l);
	*l = NULL;
}

/* Moves the first k runs into the floor. */
static void fold_prefix(struct expunge_log *l, size_t k)
{
	if (k == 0)
		return;
	for (size_t i = 0; i < k; i++)
		if (l->runs[i].hi > l->floor_uid)
			l->floor_uid = l->runs[i].hi;
	if (l->runs[k - 1].modseq > l->floor_modseq)
		l->floor_modseq = l->runs[k - 1].modseq;
	memmove(l->runs, l->runs + k, (l->n - k) * sizeof(struct expunge_run));
	l->n -= k;
}

/* The number of leading runs with modseq <= modseq. */
static size_t runs_upto(const struct expunge_log *l, uint64_t modseq)
{
	size_t lo = 0, hi = l->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (l->runs[mid].modseq <= modseq)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

imapq_err expunge_log_add(struct expunge_log *l, uint32_t uid, uint64_t modseq)
{
	struct expunge_run *last = l->n > 0 ? &l->runs[l->n - 1] : NULL;

	if (uid == 0 || (last != NULL && modseq < last->modseq))
		return IMAPQ_E_INVALID;
	/* Only the same expunge extends a run: stretching an older run to a newer modseq would
	 * make it answer "since" queries with UIDs expunged before them. */
	if (last != NULL && last->hi != UINT32_MAX && uid == last->hi + 1 &&
	    modseq == last->modseq) {
		last->hi = uid;
		return IMAPQ_OK;
	}
	if (l->n >= EXPUNGE_LOG_MAX_RUNS) {
		/* Fold about the oldest half, but whole expunges only: a fold inside one would put
		 * its mod-sequence into the floor and cut off every session that has not loaded
		 * it yet (the IMAP server loads them every second). An expunge of more stretches
		 * than that half is kept whole until the log reaches four times the cap. */
		uint64_t keep = l->runs[l->n / 2].modseq;
		size_t k = keep > 0 ? runs_upto(l, keep - 1) : 0;
		if (k == 0 && modseq > 0 && l->n >= 4 * (size_t)EXPUNGE_LOG_MAX_RUNS)
			k = runs_upto(l, modseq - 1);
		fold_prefix(l, k);
	}
	if (l->n == l->cap) {
		size_t cap = l->cap == 0 ? EXPUNGE_LOG_FIRST_CAP : l->cap * 2;
		struct expunge_run *p;

		if (l->cap < EXPUNGE_LOG_MAX_RUNS && cap > EXPUNGE_LOG_MAX_RUNS)
			cap = EXPUNGE_LOG_MAX_RUNS;
		p = realloc(l->runs, cap * sizeof(struct expunge_run));
		if (p == NULL)
			return IMAPQ_E_NOMEM;
		l->runs = p;
		l->cap = cap;
	}
	l->runs[l->n].lo = uid;
	l->runs[l->n].hi = uid;
	l->runs[l->n].modseq = modseq;
	l->n++;
	return IMAPQ_OK;
}

void expunge_log_fold(struct expunge_log *l, uint64_t modseq)
{
	fold_prefix(l, runs_upto(l, modseq));
}

void expunge_log_raise_floor(struct expunge_log *l, uint64_t modseq, uint32_t uid)
{
	if (modseq > l->floor_modseq)
		l->floor_modseq = modseq;
	if (uid > l->floor_uid)
		l->floor_uid = uid;
	fold_prefix(l, runs_upto(l, l->floor_modseq));
}

void expunge_log_floor(const struct expunge_log *l, uint64_t *modseq_r, uint32_t *uid_r)
{
	*modseq_r = l->floor_modseq;
	*uid_r = l->floor_uid;
}

/* Orders runs by their first UID, for qsort. */
static int run_cmp(const void *a, const void *b)
{
	const struct expunge_run *x = a, *y = b;

	return (x->lo > y->lo) - (x->lo < y->lo);
}

/* Calls fn for runs[0..n), sorted by lo, merging runs that touch or overlap. */
static void emit_merged(const struct expunge_run *runs, size_t n, expunge_log_range_fn *fn,
			void *ctx)
{
	uint32_t lo, hi;

	if (n == 0)
		return;
	lo = runs[0].lo;
	hi = runs[0].hi;
	for (size_t i = 1; i < n; i++) {
		if (hi == UINT32_MAX || runs[i].lo <= hi + 1) {
			if (runs[i].hi > hi)
				hi = runs[i].hi;
			continue;
		}
		fn(ctx, lo, hi);
		lo = runs[i].lo;
		hi = runs[i].hi;
	}
	fn(ctx, lo, hi);
}

uint32_t expunge_log_since(const struct expunge_log *l, uint64_t since, expunge_log_range_fn *fn,
			   void *ctx)
{
	size_t first = runs_upto(l, since), k = l->n - first;
	uint32_t upto = since < l->floor_modseq ? l->floor_uid : 0;
	if (k == 0)
		return upto;
	const struct expunge_run *suffix = l->runs + first;
	struct expunge_run *copy;
	int sorted = 1;

	for (size_t i = 1; i < k && sorted; i++)
		sorted = suffix[i - 1].lo <= suffix[i].lo;
	if (sorted) {
		emit_merged(suffix, k, fn, ctx);
		return upto;
	}
	copy = malloc(k * sizeof(struct expunge_run));
	if (copy == NULL) {
		/* Without room to sort, widen the answer: every absent UID up to the highest
		 * expunged one is a superset that misses nothing. */
		for (size_t i = 0; i < k; i++)
			if (suffix[i].hi > upto)
				upto = suffix[i].hi;
		return upto;
	}
	memcpy(copy, suffix, k * sizeof(struct expunge_run));
	qsort(copy, k, sizeof(struct expunge_run), run_cmp);
	emit_merged(copy, k, fn, ctx);
	free(copy);
	return upto;
}

size_t expunge_log_runs(const struct expunge_log *l)
{
	return l->n;
}

size_t expunge_log_memory(const struct expunge_log *l)
{
	return sizeof(*l) + l->cap * sizeof(struct expunge_run);
}
