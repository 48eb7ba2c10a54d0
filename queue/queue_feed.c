/* The change feed a page at a time: the jobs changed after a mod-sequence, lowest mod-sequence
 * first and at most a page of them, and the ids removed within the same span. The jobs take
 * O(limit) memory whatever the queue holds. */
#include <stdlib.h>

#include "imap/protocol/seqset.h"
#include "queue/queue-private.h"

/* The changes with the lowest mod-sequences offered so far, at most cap, as a max-heap on the
 * mod-sequence (filled under the store's mutex: copy only). */
struct feed_heap {
	struct store_message *v;
	size_t n, cap;
	uint64_t offered; /* changes offered, kept or not */
};

static void heap_swap(struct store_message *v, size_t a, size_t b)
{
	struct store_message t = v[a];
	v[a] = v[b];
	v[b] = t;
}

/* Restores the heap below i in the first n entries. */
static void heap_sift_down(struct store_message *v, size_t n, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, big = i;
		if (l < n && v[l].modseq > v[big].modseq)
			big = l;
		if (l + 1 < n && v[l + 1].modseq > v[big].modseq)
			big = l + 1;
		if (big == i)
			return;
		heap_swap(v, i, big);
		i = big;
	}
}

static void feed_offer(void *ctx, const struct store_message *m)
{
	struct feed_heap *h = ctx;
	/* A job marked \Deleted is being completed; it is reported once it is gone. */
	if (m->flags & STORE_DELETED)
		return;
	h->offered++;
	if (h->n < h->cap) {
		size_t i = h->n++;
		h->v[i] = *m;
		for (; i > 0 && h->v[(i - 1) / 2].modseq < h->v[i].modseq; i = (i - 1) / 2)
			heap_swap(h->v, i, (i - 1) / 2);
	} else if (m->modseq < h->v[0].modseq) {
		h->v[0] = *m;
		heap_sift_down(h->v, h->n, 0);
	}
}

/* Removed UID ranges gathered under the store's mutex. */
struct gone_set {
	struct seqset *set;
	bool nomem;
};

static void range_gather(void *ctx, uint32_t lo, uint32_t hi)
{
	struct gone_set *g = ctx;
	if (!g->nomem && seqset_add(g->set, lo, hi) != IMAPQ_OK)
		g->nomem = true;
}

/* Calls fn with the UIDs of a that b does not hold. */
static void ranges_minus(const struct seqset *a, const struct seqset *b, queue_gone_fn *fn,
			 void *ctx)
{
	const struct seqset_range *av = seqset_ranges(a), *bv = seqset_ranges(b);
	size_t an = seqset_range_count(a), bn = seqset_range_count(b), j = 0;
	for (size_t i = 0; i < an; i++) {
		uint64_t lo = av[i].lo;
		const uint64_t hi = av[i].hi;
		while (lo <= hi) {
			while (j < bn && bv[j].hi < lo)
				j++;
			if (j == bn || bv[j].lo > hi) {
				fn(ctx, (uint32_t)lo, (uint32_t)hi);
				break;
			}
			if (bv[j].lo > lo)
				fn(ctx, (uint32_t)lo, bv[j].lo - 1);
			lo = (uint64_t)bv[j].hi + 1;
		}
	}
}

/* The ids removed after since and up to next: the vanished set after since less the one after
 * next. The second is read last, so an expunge landing between the reads is left to the page
 * that starts at next rather than reported twice. */
static imapq_err gone_between(struct queue_service *qs, uint32_t id, uint64_t since, uint64_t next,
			      queue_gone_fn *gone_fn, void *ctx)
{
	struct gone_set after_since = {0}, after_next = {0};
	imapq_err err = seqset_create(&after_since.set);
	if (err == IMAPQ_OK)
		err = seqset_create(&after_next.set);
	if (err == IMAPQ_OK)
		err = store_vanished_since(qs->store, id, since, range_gather, &after_since);
	if (err == IMAPQ_OK && seqset_range_count(after_since.set) > 0)
		err = store_vanished_since(qs->store, id, next, range_gather, &after_next);
	if (err == IMAPQ_OK && (after_since.nomem || after_next.nomem))
		err = IMAPQ_E_NOMEM;
	if (err == IMAPQ_OK)
		ranges_minus(after_since.set, after_next.set, gone_fn, ctx);
	seqset_destroy(&after_since.set);
	seqset_destroy(&after_next.set);
	return err;
}

imapq_err queue_changes_page(struct queue_service *qs, const char *name, uint64_t since,
			     uint32_t limit, queue_job_fn *fn, queue_gone_fn *gone_fn, void *ctx,
			     struct queue_changes_page *page_r)
{
	if (limit == 0 || fn == NULL || gone_fn == NULL || page_r == NULL)
		return IMAPQ_E_INVALID;
	struct queue_ref ref;
	struct store_mailbox_status st;
	/* Read first: everything up to it was visible before the scans began. */
	imapq_err err = queue_ref_status(qs, name, &ref, &st);
	if (err != IMAPQ_OK)
		return err;
	struct feed_heap h = {.cap = limit};
	h.v = malloc(limit * sizeof *h.v);
	if (h.v == NULL)
		return IMAPQ_E_NOMEM;
	err = store_changed_since(qs->store, ref.id, since, feed_offer, &h);
	/* Heap sort: each step moves the largest left to the end, leaving them ascending. */
	for (size_t k = h.n; k > 1; k--) {
		heap_swap(h.v, 0, k - 1);
		heap_sift_down(h.v, k - 1, 0);
	}
	/* Every listed change has its own mod-sequence (docs/store.md; removals, which may share
	 * one, are taken whole by range), so a page may end at any change. */
	page_r->highestmodseq = st.highestmodseq;
	page_r->more = h.offered > h.n;
	if (page_r->more) {
		page_r->next = h.v[h.n - 1].modseq;
	} else {
		/* All seen: what lands later takes a mod-sequence above both. */
		page_r->next = since > st.highestmodseq ? since : st.highestmodseq;
		if (h.n > 0 && h.v[h.n - 1].modseq > page_r->next)
			page_r->next = h.v[h.n - 1].modseq;
	}
	for (size_t i = 0; err == IMAPQ_OK && i < h.n; i++) {
		struct queue_job job;
		queue_job_from(&ref, false, &h.v[i], &job);
		fn(ctx, &job);
	}
	free(h.v);
	if (err == IMAPQ_OK)
		err = gone_between(qs, ref.id, since, page_r->next, gone_fn, ctx);
	return err;
}
