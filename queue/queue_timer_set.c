/* The timer set: one timer per claimed or delayed job, ordered by due time in a binary heap and
 * found by (mailbox, UID) through a chained hash table, so moving a lease costs O(log n) and the
 * set never holds more than the jobs in flight. */
#include <stdlib.h>

#include "imap/base/vec.h"
#include "queue/queue-private.h"

static size_t hash_of(uint32_t box, uint32_t uid, size_t nbuckets)
{
	uint64_t h = ((uint64_t)box << 32 | uid) * 0x9e3779b97f4a7c15ull;
	return (size_t)(h >> 17) & (nbuckets - 1);
}

/* Heap order: earlier due first. */
static bool before(const struct queue_timer *a, const struct queue_timer *b)
{
	return a->due < b->due;
}

static void heap_place(struct queue_timer_set *ts, size_t i, struct queue_timer *t)
{
	ts->heap[i] = t;
	t->heap_index = i;
}

static void heap_up(struct queue_timer_set *ts, size_t i)
{
	struct queue_timer *t = ts->heap[i];
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (!before(t, ts->heap[parent]))
			break;
		heap_place(ts, i, ts->heap[parent]);
		i = parent;
	}
	heap_place(ts, i, t);
}

static void heap_down(struct queue_timer_set *ts, size_t i)
{
	struct queue_timer *t = ts->heap[i];
	for (;;) {
		size_t child = 2 * i + 1;
		if (child >= ts->len)
			break;
		if (child + 1 < ts->len && before(ts->heap[child + 1], ts->heap[child]))
			child++;
		if (!before(ts->heap[child], t))
			break;
		heap_place(ts, i, ts->heap[child]);
		i = child;
	}
	heap_place(ts, i, t);
}

/* Doubles the hash table; false when memory runs out (the old table stays usable). */
static bool rehash(struct queue_timer_set *ts)
{
	size_t n = ts->nbuckets ? ts->nbuckets * 2 : 64;
	struct queue_timer **b = calloc(n, sizeof *b);
	if (b == NULL)
		return false;
	for (size_t i = 0; i < ts->nbuckets; i++) {
		struct queue_timer *t = ts->buckets[i];
		while (t != NULL) {
			struct queue_timer *next = t->hash_next;
			size_t h = hash_of(t->box, t->uid, n);
			t->hash_next = b[h];
			b[h] = t;
			t = next;
		}
	}
	free(ts->buckets);
	ts->buckets = b;
	ts->nbuckets = n;
	return true;
}

struct queue_timer *queue_timer_set_find(struct queue_timer_set *ts, uint32_t box, uint32_t uid)
{
	if (ts->nbuckets == 0)
		return NULL;
	struct queue_timer *t = ts->buckets[hash_of(box, uid, ts->nbuckets)];
	while (t != NULL && (t->box != box || t->uid != uid))
		t = t->hash_next;
	return t;
}

bool queue_timer_set_put(struct queue_timer_set *ts, uint32_t box, uint32_t uid, uint32_t due,
			 bool claimed, bool released, uint64_t modseq)
{
	struct queue_timer *t = queue_timer_set_find(ts, box, uid);
	if (t != NULL) {
		uint32_t old = t->due;
		t->due = due;
		t->claimed = claimed;
		t->released = released;
		t->modseq = modseq;
		if (due < old)
			heap_up(ts, t->heap_index);
		else
			heap_down(ts, t->heap_index);
		return true;
	}
	if (ts->len >= ts->nbuckets && !rehash(ts))
		return false;
	if (!vec_grow((void **)&ts->heap, ts->len, &ts->cap, sizeof *ts->heap))
		return false;
	t = malloc(sizeof *t);
	if (t == NULL)
		return false;
	*t = (struct queue_timer){.box = box,
				  .uid = uid,
				  .due = due,
				  .claimed = claimed,
				  .released = released,
				  .modseq = modseq};
	size_t h = hash_of(box, uid, ts->nbuckets);
	t->hash_next = ts->buckets[h];
	ts->buckets[h] = t;
	heap_place(ts, ts->len++, t);
	heap_up(ts, t->heap_index);
	return true;
}

void queue_timer_set_remove(struct queue_timer_set *ts, struct queue_timer *t)
{
	struct queue_timer **pp = &ts->buckets[hash_of(t->box, t->uid, ts->nbuckets)];
	while (*pp != t)
		pp = &(*pp)->hash_next;
	*pp = t->hash_next;
	size_t i = t->heap_index;
	struct queue_timer *last = ts->heap[--ts->len];
	if (i < ts->len) {
		heap_place(ts, i, last);
		heap_down(ts, i);
		heap_up(ts, last->heap_index);
	}
	free(t);
}

struct queue_timer *queue_timer_set_first(const struct queue_timer_set *ts)
{
	return ts->len > 0 ? ts->heap[0] : NULL;
}

void queue_timer_set_free(struct queue_timer_set *ts)
{
	for (size_t i = 0; i < ts->len; i++)
		free(ts->heap[i]);
	free(ts->heap);
	free(ts->buckets);
	*ts = (struct queue_timer_set){0};
}
