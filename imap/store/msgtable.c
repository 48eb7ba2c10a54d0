/* The message table of one mailbox.
 *
 * Layout. Messages sit in slots numbered in UID order. Slots live in chunks of MT_CHUNK_SLOTS
 * messages, each its own allocation, so growth never copies the table: only the last (tail)
 * chunk may be partly used, and it starts small (MT_FIRST_CAP) in the first chunk and doubles
 * up to a full chunk, so a small mailbox costs little and slack stays under one chunk. Removing
 * a message leaves a dead slot (its struct keeps the UID, so binary searches still work); a
 * full chunk whose messages are all dead is freed at once.
 *
 * Lookup. UID -> slot is a binary search over the chunks' first UIDs, then inside the chunk.
 *
 * Rank and select. A live bitmap (a bitindex, so iteration skips dead runs quickly) plus a
 * Fenwick tree over the live counts of 64-slot blocks (4 bytes per 64 slots); rank is a prefix
 * sum plus one popcount, select a Fenwick descent plus a select inside one word.
 *
 * Predicates. Each (mask, want) pair asked for gets a bitindex of the live slots whose flags
 * match, with its count, built once in O(n) and kept current by append/update/remove. At most
 * MSGTABLE_MAX_INDEXES exist; a new pair replaces the least recently used one. mask 0 is
 * answered from the live bitmap, and a want with bits outside mask matches nothing.
 *
 * Changed-since. Per 64-slot block and per 4096-slot superblock the highest modseq ever stored
 * there (an upper bound: removals do not lower it), so blocks with nothing newer are skipped.
 *
 * Repacking. Dead slots still cost index bits, and dead slots in partly live chunks cost a
 * struct each. msgtable_append repacks (moves the live messages down to slots 0..count-1 inside
 * the chunks already allocated, frees the rest and rebuilds every index) when dead slots
 * outnumber live ones, or when dead slots held inside allocated chunks exceed a quarter of the
 * live ones. Either way the work is O(slots) and at least a constant fraction of slots were
 * removed since the previous repack, so it is amortized O(1) per removal. Only append repacks,
 * so cursors survive update and remove. Repacking allocates nothing and cannot fail.
 *
 * Memory at steady state: 48 bytes per message, plus about 1.3 bytes per slot of indexes with
 * eight predicates (held at up to twice the slot count while growing), plus under one chunk. */
#include "imap/store/msgtable.h"

#include <stdlib.h>
#include <string.h>

#include "imap/store/bitindex.h"

/* Messages per chunk; a power of two and a multiple of 64 so blocks never straddle chunks. */
#define MT_CHUNK_SHIFT 10
#define MT_CHUNK_SLOTS (1u << MT_CHUNK_SHIFT)
#define MT_CHUNK_MASK  (MT_CHUNK_SLOTS - 1)
/* Capacity of the first chunk when a table starts empty. */
#define MT_FIRST_CAP 16
/* Slots per block (Fenwick counts, modseq maxima) and per superblock (modseq maxima). */
#define MT_BLOCK_SHIFT 6
#define MT_SUPER_SHIFT 12
/* Fewer dead slots than this never trigger a repack: tiny tables are not worth it. */
#define MT_REPACK_MIN_DEAD 64

/* One chunk of slots; msgs is NULL once every message in a full chunk was removed. */
struct mt_chunk {
	struct msg *msgs;
	uint32_t first_uid; /* UID of slot 0 of the chunk, kept after the chunk is freed */
	uint32_t live;	    /* live messages in the chunk */
};

/* One predicate index: the live slots whose (flags & mask) == want. */
struct mt_pred {
	uint64_t mask;
	uint64_t want;
	uint64_t used; /* tick of the last query, for least-recently-used replacement */
	uint32_t count;
	uint64_t hint; /* no slot below it matches: searches for the first match start here */
	struct bitindex *bits;
};

struct msgtable {
	struct mt_chunk *chunks;
	size_t nchunks;
	uint64_t chunks_cap;
	uint32_t tail_cap; /* message capacity of the last chunk */
	size_t msg_bytes;  /* bytes held by all chunk buffers */

	uint64_t nslots;    /* slots used, live and dead */
	uint64_t held_dead; /* dead slots inside chunks still allocated */
	uint32_t count;	    /* live messages */
	uint32_t last_uid;  /* highest UID ever appended */

	struct bitindex *live;
	uint32_t *fenwick; /* 1-based over blocks; entry i sums blocks (i - lowbit(i), i] */
	uint64_t fw_n;	   /* blocks in the tree: ceil(nslots / 64) */
	uint64_t fw_cap;   /* entries allocated, index 0 unused */
	uint64_t *blockmax;
	uint64_t blockmax_cap;
	uint64_t *supermax;
	uint64_t supermax_cap;

	struct mt_pred preds[MSGTABLE_MAX_INDEXES];
	unsigned npreds;
	uint64_t tick;
};

/* The message in slot s; its chunk must be allocated. */
static struct msg *slot_msg(const struct msgtable *t, uint64_t s)
{
	return &t->chunks[s >> MT_CHUNK_SHIFT].msgs[s & MT_CHUNK_MASK];
}

/* Slots in use in chunk i. */
static uint64_t chunk_used(const struct msgtable *t, size_t i)
{
	if (i + 1 < t->nchunks)
		return MT_CHUNK_SLOTS;
	return t->nslots - ((uint64_t)i << MT_CHUNK_SHIFT);
}

/* Whether flags satisfy the predicate (mask, want). */
static int pred_match(uint64_t flags, uint64_t mask, uint64_t want)
{
	return (flags & mask) == want;
}

/* Grows *p to hold at least need elements (doubling), keeping its contents; 0 when out of
 * memory, leaving *p as it was. */
static int array_grow(void **p, uint64_t *cap, uint64_t need, size_t size)
{
	uint64_t n;
	void *q;

	if (*cap >= need)
		return 1;
	n = *cap * 2 > need ? *cap * 2 : need;
	if (n > SIZE_MAX / size)
		return 0;
	q = realloc(*p, n * size);
	if (q == NULL)
		return 0;
	*p = q;
	*cap = n;
	return 1;
}

/* Shrinks *p to need elements when it holds more; a failed shrink keeps the larger array. */
static void array_shrink(void **p, uint64_t *cap, uint64_t need, size_t size)
{
	void *q;

	if (*cap <= need)
		return;
	if (need == 0) {
		free(*p);
		*p = NULL;
		*cap = 0;
		return;
	}
	q = realloc(*p, need * size);
	if (q != NULL) {
		*p = q;
		*cap = need;
	}
}

struct msgtable *msgtable_create(void)
{
	struct msgtable *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	t->live = bitindex_create();
	if (t->live == NULL) {
		free(t);
		return NULL;
	}
	return t;
}

void msgtable_destroy(struct msgtable **tp)
{
	struct msgtable *t = *tp;

	if (t == NULL)
		return;
	for (size_t i = 0; i < t->nchunks; i++)
		free(t->chunks[i].msgs);
	free(t->chunks);
	bitindex_destroy(&t->live);
	free(t->fenwick);
	free(t->blockmax);
	free(t->supermax);
	for (unsigned i = 0; i < t->npreds; i++)
		bitindex_destroy(&t->preds[i].bits);
	free(t);
	*tp = NULL;
}

/* --- Fenwick tree of live counts per block --- */

/* Adds delta to the live count of block b. */
static void fw_add(struct msgtable *t, uint64_t b, int32_t delta)
{
	for (uint64_t i = b + 1; i <= t->fw_n; i += i & (~i + 1))
		t->fenwick[i] += (uint32_t)delta;
}

/* Live messages in blocks [0, nblocks). */
static uint32_t fw_prefix(const struct msgtable *t, uint64_t nblocks)
{
	uint32_t sum = 0;

	for (uint64_t i = nblocks; i > 0; i -= i & (~i + 1))
		sum += t->fenwick[i];
	return sum;
}

/* Appends an empty block to the tree, computing its entry from its children: amortized O(1). */
static void fw_push(struct msgtable *t)
{
	uint64_t n = ++t->fw_n;
	uint64_t stop = n - (n & (~n + 1));
	uint32_t v = 0;

	for (uint64_t j = n - 1; j > stop; j -= j & (~j + 1))
		v += t->fenwick[j];
	t->fenwick[n] = v;
}

/* Rebuilds the tree over the live bitmap in O(blocks). */
static void fw_rebuild(struct msgtable *t)
{
	t->fw_n = (t->nslots + 63) >> MT_BLOCK_SHIFT;
	for (uint64_t i = 1; i <= t->fw_n; i++)
		t->fenwick[i] = (uint32_t)__builtin_popcountll(bitindex_word(t->live, i - 1));
	for (uint64_t i = 1; i <= t->fw_n; i++) {
		uint64_t j = i + (i & (~i + 1));

		if (j <= t->fw_n)
			t->fenwick[j] += t->fenwick[i];
	}
}

/* --- slots --- */

/* The first slot whose UID is >= uid (dead slots included), or any slot of a freed chunk that
 * holds the position; every live slot before the result has a smaller UID. */
static uint64_t slot_lower_bound(const struct msgtable *t, uint32_t uid)
{
	size_t lo = 0, hi = t->nchunks;
	uint64_t a = 0, b;
	const struct msg *msgs;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (t->chunks[mid].first_uid <= uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return 0;
	lo--;
	msgs = t->chunks[lo].msgs;
	if (msgs == NULL)
		return (uint64_t)lo << MT_CHUNK_SHIFT;
	b = chunk_used(t, lo);
	while (a < b) {
		uint64_t mid = a + (b - a) / 2;

		if (msgs[mid].uid < uid)
			a = mid + 1;
		else
			b = mid;
	}
	return ((uint64_t)lo << MT_CHUNK_SHIFT) + a;
}

/* The live slot holding uid, or BITINDEX_NONE. */
static uint64_t slot_find(const struct msgtable *t, uint32_t uid)
{
	uint64_t s = slot_lower_bound(t, uid);

	if (s >= t->nslots || !bitindex_test(t->live, s) || slot_msg(t, s)->uid != uid)
		return BITINDEX_NONE;
	return s;
}

/* Makes every slot-indexed array hold at least need slots; IMAPQ_E_NOMEM leaves contents
 * intact. */
static imapq_err reserve_slots(struct msgtable *t, uint64_t need)
{
	uint64_t blocks = (need + 63) >> MT_BLOCK_SHIFT;
	uint64_t supers = (need + 4095) >> MT_SUPER_SHIFT;
	uint64_t cap;

	if (!array_grow((void **)&t->fenwick, &t->fw_cap, blocks + 1, sizeof(uint32_t)) ||
	    !array_grow((void **)&t->blockmax, &t->blockmax_cap, blocks, sizeof(uint64_t)) ||
	    !array_grow((void **)&t->supermax, &t->supermax_cap, supers, sizeof(uint64_t)))
		return IMAPQ_E_NOMEM;
	cap = bitindex_capacity(t->live);
	if (cap < need && bitindex_reserve(t->live, cap * 2 > need ? cap * 2 : need) != IMAPQ_OK)
		return IMAPQ_E_NOMEM;
	for (unsigned i = 0; i < t->npreds; i++) {
		struct bitindex *b = t->preds[i].bits;

		cap = bitindex_capacity(b);
		if (cap < need && bitindex_reserve(b, cap * 2 > need ? cap * 2 : need) != IMAPQ_OK)
			return IMAPQ_E_NOMEM;
	}
	return IMAPQ_OK;
}

/* Raises the modseq maxima covering slot s. */
static void note_modseq(struct msgtable *t, uint64_t s, uint64_t modseq)
{
	if (t->blockmax[s >> MT_BLOCK_SHIFT] < modseq)
		t->blockmax[s >> MT_BLOCK_SHIFT] = modseq;
	if (t->supermax[s >> MT_SUPER_SHIFT] < modseq)
		t->supermax[s >> MT_SUPER_SHIFT] = modseq;
}

/* --- repacking --- */

/* Moves the live messages to slots 0..count-1 inside the allocated chunks and frees the rest. */
static void compact_chunks(struct msgtable *t)
{
	size_t nbuf = 0, newn;
	uint64_t w = 0;

	/* Gather the allocated buffers at the front, remembering each one's old chunk index in
	 * .live; every buffer but the last is a full chunk, so write and read positions map to
	 * buffers alike and the write position never passes the read position. */
	for (size_t i = 0; i < t->nchunks; i++) {
		if (t->chunks[i].msgs == NULL)
			continue;
		t->chunks[nbuf].msgs = t->chunks[i].msgs;
		t->chunks[nbuf].live = (uint32_t)i;
		nbuf++;
	}
	for (size_t j = 0; j < nbuf; j++) {
		size_t old = t->chunks[j].live;
		uint64_t base = (uint64_t)old << MT_CHUNK_SHIFT, used = chunk_used(t, old);

		for (uint64_t k = 0; k < used; k++) {
			if (!bitindex_test(t->live, base + k))
				continue;
			t->chunks[w >> MT_CHUNK_SHIFT].msgs[w & MT_CHUNK_MASK] =
			    t->chunks[j].msgs[k];
			w++;
		}
	}
	newn = (t->count + MT_CHUNK_SLOTS - 1) >> MT_CHUNK_SHIFT;
	if (newn > 0 && t->chunks[newn - 1].live != t->nchunks - 1)
		t->tail_cap = MT_CHUNK_SLOTS;
	for (size_t j = newn; j < nbuf; j++)
		free(t->chunks[j].msgs);
	for (size_t j = 0; j < newn; j++) {
		t->chunks[j].first_uid = t->chunks[j].msgs[0].uid;
		t->chunks[j].live = MT_CHUNK_SLOTS;
	}
	if (newn > 0)
		t->chunks[newn - 1].live = t->count - (uint32_t)((newn - 1) << MT_CHUNK_SHIFT);
	else
		t->tail_cap = 0;
	t->nchunks = newn;
	t->msg_bytes =
	    newn == 0 ? 0 : ((newn - 1) * MT_CHUNK_SLOTS + t->tail_cap) * sizeof(struct msg);
	array_shrink((void **)&t->chunks, &t->chunks_cap, newn, sizeof(struct mt_chunk));
}

/* Fills a predicate's bitmap and count from the live messages. */
static void pred_fill(struct msgtable *t, struct mt_pred *p)
{
	p->count = 0;
	p->hint = 0;
	for (uint64_t b = 0; b < t->fw_n; b++) {
		uint64_t word = bitindex_word(t->live, b);

		while (word != 0) {
			uint64_t s = (b << MT_BLOCK_SHIFT) | (uint64_t)__builtin_ctzll(word);

			if (pred_match(slot_msg(t, s)->flags, p->mask, p->want)) {
				bitindex_set(p->bits, s);
				p->count++;
			}
			word &= word - 1;
		}
	}
}

/* Repacks the table (see the top of the file); allocates nothing. */
static void repack(struct msgtable *t)
{
	uint64_t blocks, supers;

	compact_chunks(t);
	t->nslots = t->count;
	t->held_dead = 0;
	blocks = (t->nslots + 63) >> MT_BLOCK_SHIFT;
	supers = (t->nslots + 4095) >> MT_SUPER_SHIFT;

	bitindex_reset(t->live, t->nslots);
	for (uint64_t s = 0; s < t->nslots; s++)
		bitindex_set(t->live, s);
	array_shrink((void **)&t->fenwick, &t->fw_cap, blocks == 0 ? 0 : blocks + 1,
		     sizeof(uint32_t));
	fw_rebuild(t);
	array_shrink((void **)&t->blockmax, &t->blockmax_cap, blocks, sizeof(uint64_t));
	array_shrink((void **)&t->supermax, &t->supermax_cap, supers, sizeof(uint64_t));
	if (blocks > 0) {
		memset(t->blockmax, 0, blocks * sizeof(uint64_t));
		memset(t->supermax, 0, supers * sizeof(uint64_t));
	}
	for (uint64_t s = 0; s < t->nslots; s++)
		note_modseq(t, s, slot_msg(t, s)->modseq);
	for (unsigned i = 0; i < t->npreds; i++) {
		bitindex_reset(t->preds[i].bits, t->nslots);
		pred_fill(t, &t->preds[i]);
	}
}

/* Repacks when enough slots are dead that the work is paid for by the removals. */
static void maybe_repack(struct msgtable *t)
{
	uint64_t dead = t->nslots - t->count;

	if ((dead >= MT_REPACK_MIN_DEAD && dead > t->count) ||
	    (t->held_dead >= MT_REPACK_MIN_DEAD && t->held_dead > t->count / 4))
		repack(t);
}

/* --- mutation --- */

imapq_err msgtable_append(struct msgtable *t, const struct msg *m)
{
	uint64_t s, off;
	size_t ci;
	struct msg *fresh = NULL;
	uint32_t fresh_cap = 0;

	if (m->uid <= t->last_uid)
		return IMAPQ_E_INVALID;
	maybe_repack(t);
	s = t->nslots;
	ci = (size_t)(s >> MT_CHUNK_SHIFT);
	off = s & MT_CHUNK_MASK;
	if (off == 0) {
		if (!array_grow((void **)&t->chunks, &t->chunks_cap, ci + 1,
				sizeof(struct mt_chunk)))
			return IMAPQ_E_NOMEM;
		fresh_cap = ci == 0 ? MT_FIRST_CAP : MT_CHUNK_SLOTS;
		fresh = malloc(fresh_cap * sizeof(struct msg));
		if (fresh == NULL)
			return IMAPQ_E_NOMEM;
	} else if (off == t->tail_cap) {
		uint32_t cap = t->tail_cap * 2 < MT_CHUNK_SLOTS ? t->tail_cap * 2 : MT_CHUNK_SLOTS;
		struct msg *p = realloc(t->chunks[ci].msgs, cap * sizeof(struct msg));

		if (p == NULL)
			return IMAPQ_E_NOMEM;
		t->chunks[ci].msgs = p;
		t->msg_bytes += (cap - t->tail_cap) * sizeof(struct msg);
		t->tail_cap = cap;
	}
	if (reserve_slots(t, s + 1) != IMAPQ_OK) {
		free(fresh);
		return IMAPQ_E_NOMEM;
	}

	if (fresh != NULL) {
		t->chunks[ci].msgs = fresh;
		t->chunks[ci].first_uid = m->uid;
		t->chunks[ci].live = 0;
		t->nchunks = ci + 1;
		t->tail_cap = fresh_cap;
		t->msg_bytes += fresh_cap * sizeof(struct msg);
	}
	t->chunks[ci].msgs[off] = *m;
	t->chunks[ci].live++;
	t->nslots++;
	t->count++;
	t->last_uid = m->uid;

	bitindex_set(t->live, s);
	if ((s & 63) == 0) {
		fw_push(t);
		t->blockmax[s >> MT_BLOCK_SHIFT] = 0;
	}
	if ((s & 4095) == 0)
		t->supermax[s >> MT_SUPER_SHIFT] = 0;
	fw_add(t, s >> MT_BLOCK_SHIFT, 1);
	note_modseq(t, s, m->modseq);
	for (unsigned i = 0; i < t->npreds; i++) {
		struct mt_pred *p = &t->preds[i];

		if (pred_match(m->flags, p->mask, p->want)) {
			bitindex_set(p->bits, s);
			p->count++;
			if (s < p->hint)
				p->hint = s;
		}
	}
	return IMAPQ_OK;
}

const struct msg *msgtable_find(const struct msgtable *t, uint32_t uid)
{
	uint64_t s = slot_find(t, uid);

	return s == BITINDEX_NONE ? NULL : slot_msg(t, s);
}

void msgtable_update(struct msgtable *t, uint32_t uid, uint64_t flags, uint64_t modseq)
{
	uint64_t s = slot_find(t, uid);
	struct msg *m;

	if (s == BITINDEX_NONE)
		return;
	m = slot_msg(t, s);
	for (unsigned i = 0; i < t->npreds; i++) {
		struct mt_pred *p = &t->preds[i];
		int was = pred_match(m->flags, p->mask, p->want);
		int is = pred_match(flags, p->mask, p->want);

		if (was && !is) {
			bitindex_clear(p->bits, s);
			p->count--;
		} else if (!was && is) {
			bitindex_set(p->bits, s);
			p->count++;
			if (s < p->hint)
				p->hint = s;
		}
	}
	m->flags = flags;
	m->modseq = modseq;
	note_modseq(t, s, modseq);
}

void msgtable_set_queue(struct msgtable *t, uint32_t uid, uint32_t attempts, uint32_t due)
{
	uint64_t s = slot_find(t, uid);

	if (s != BITINDEX_NONE) {
		slot_msg(t, s)->attempts = attempts;
		slot_msg(t, s)->due = due;
	}
}

void msgtable_set_loc(struct msgtable *t, uint32_t uid, uint64_t loc)
{
	uint64_t s = slot_find(t, uid);

	if (s != BITINDEX_NONE)
		slot_msg(t, s)->loc = loc;
}

int msgtable_remove(struct msgtable *t, uint32_t uid, struct msg *removed_r)
{
	uint64_t s = slot_find(t, uid);
	struct mt_chunk *c;
	struct msg *m;

	if (s == BITINDEX_NONE)
		return 0;
	m = slot_msg(t, s);
	if (removed_r != NULL)
		*removed_r = *m;
	bitindex_clear(t->live, s);
	fw_add(t, s >> MT_BLOCK_SHIFT, -1);
	for (unsigned i = 0; i < t->npreds; i++) {
		struct mt_pred *p = &t->preds[i];

		if (pred_match(m->flags, p->mask, p->want)) {
			bitindex_clear(p->bits, s);
			p->count--;
		}
	}
	t->count--;
	t->held_dead++;
	c = &t->chunks[s >> MT_CHUNK_SHIFT];
	if (--c->live == 0 && chunk_used(t, (size_t)(s >> MT_CHUNK_SHIFT)) == MT_CHUNK_SLOTS) {
		free(c->msgs);
		c->msgs = NULL;
		t->msg_bytes -= MT_CHUNK_SLOTS * sizeof(struct msg);
		t->held_dead -= MT_CHUNK_SLOTS;
	}
	return 1;
}

/* --- queries --- */

uint32_t msgtable_count(const struct msgtable *t)
{
	return t->count;
}

const struct msg *msgtable_seek(const struct msgtable *t, uint32_t from, struct msgtable_cursor *c)
{
	uint64_t s = bitindex_next(t->live, slot_lower_bound(t, from));

	if (s == BITINDEX_NONE) {
		c->slot = t->nslots;
		return NULL;
	}
	c->slot = s;
	return slot_msg(t, s);
}

const struct msg *msgtable_next(const struct msgtable *t, struct msgtable_cursor *c)
{
	uint64_t s;

	if (c->slot >= t->nslots)
		return NULL;
	s = bitindex_next(t->live, c->slot + 1);
	if (s == BITINDEX_NONE) {
		c->slot = t->nslots;
		return NULL;
	}
	c->slot = s;
	return slot_msg(t, s);
}

uint32_t msgtable_rank(const struct msgtable *t, uint32_t uid)
{
	uint64_t s, b;
	uint64_t below;

	if (uid == UINT32_MAX)
		return t->count;
	s = slot_lower_bound(t, uid + 1);
	b = s >> MT_BLOCK_SHIFT;
	below = (1ull << (s & 63)) - 1;
	return fw_prefix(t, b) + (uint32_t)__builtin_popcountll(bitindex_word(t->live, b) & below);
}

uint32_t msgtable_select(const struct msgtable *t, uint32_t seq)
{
	uint64_t pos = 0, step = 1, word;
	uint32_t rem = seq;

	if (seq == 0 || seq > t->count)
		return 0;
	while (step * 2 <= t->fw_n)
		step *= 2;
	for (; step > 0; step >>= 1) {
		if (pos + step <= t->fw_n && t->fenwick[pos + step] < rem) {
			pos += step;
			rem -= t->fenwick[pos];
		}
	}
	/* Block pos holds the answer as its rem-th live slot. */
	word = bitindex_word(t->live, pos);
	while (--rem > 0)
		word &= word - 1;
	return slot_msg(t, (pos << MT_BLOCK_SHIFT) | (uint64_t)__builtin_ctzll(word))->uid;
}

/* The index for (mask, want), built when missing; NULL when it cannot be built. */
static struct mt_pred *pred_get(struct msgtable *t, uint64_t mask, uint64_t want)
{
	struct mt_pred *p = NULL;
	struct bitindex *bits;

	for (unsigned i = 0; i < t->npreds; i++) {
		if (t->preds[i].mask == mask && t->preds[i].want == want) {
			t->preds[i].used = ++t->tick;
			return &t->preds[i];
		}
	}
	bits = bitindex_create();
	if (bits == NULL)
		return NULL;
	if (bitindex_reserve(bits, bitindex_capacity(t->live)) != IMAPQ_OK) {
		bitindex_destroy(&bits);
		return NULL;
	}
	if (t->npreds < MSGTABLE_MAX_INDEXES) {
		p = &t->preds[t->npreds++];
	} else {
		p = &t->preds[0];
		for (unsigned i = 1; i < t->npreds; i++)
			if (t->preds[i].used < p->used)
				p = &t->preds[i];
		bitindex_destroy(&p->bits);
	}
	p->mask = mask;
	p->want = want;
	p->used = ++t->tick;
	p->bits = bits;
	pred_fill(t, p);
	return p;
}

imapq_err msgtable_first_match(struct msgtable *t, uint64_t mask, uint64_t want, uint32_t from,
			       uint32_t *uid_r)
{
	const struct bitindex *bits = t->live;
	uint64_t s;

	*uid_r = 0;
	if ((want & ~mask) != 0)
		return IMAPQ_OK;
	/* The claim query asks from the start: skip the UID search then. */
	uint64_t start = from <= 1 ? 0 : slot_lower_bound(t, from);
	if (mask != 0) {
		struct mt_pred *p = pred_get(t, mask, want);

		if (p == NULL)
			return IMAPQ_E_NOMEM;
		if (start <= p->hint) {
			/* Start at the first possible match, then remember where it was, so the
			 * next query touches one word whatever the table's size. */
			s = bitindex_next(p->bits, p->hint);
			p->hint = s == BITINDEX_NONE ? t->nslots : s;
			if (s != BITINDEX_NONE)
				*uid_r = slot_msg(t, s)->uid;
			return IMAPQ_OK;
		}
		bits = p->bits;
	}
	s = bitindex_next(bits, start);
	if (s != BITINDEX_NONE)
		*uid_r = slot_msg(t, s)->uid;
	return IMAPQ_OK;
}

imapq_err msgtable_count_match(struct msgtable *t, uint64_t mask, uint64_t want, uint32_t *count_r)
{
	struct mt_pred *p;

	*count_r = 0;
	if ((want & ~mask) != 0)
		return IMAPQ_OK;
	if (mask == 0) {
		*count_r = t->count;
		return IMAPQ_OK;
	}
	p = pred_get(t, mask, want);
	if (p == NULL)
		return IMAPQ_E_NOMEM;
	*count_r = p->count;
	return IMAPQ_OK;
}

const struct msg *msgtable_changed_next(const struct msgtable *t, uint64_t modseq,
					struct msgtable_cursor *c)
{
	uint64_t s = c->slot;

	while (s < t->nslots) {
		uint64_t b = s >> MT_BLOCK_SHIFT;

		if (t->supermax[s >> MT_SUPER_SHIFT] <= modseq) {
			s = ((s >> MT_SUPER_SHIFT) + 1) << MT_SUPER_SHIFT;
			continue;
		}
		if (t->blockmax[b] > modseq) {
			uint64_t word = bitindex_word(t->live, b) & (~0ull << (s & 63));

			while (word != 0) {
				uint64_t slot =
				    (b << MT_BLOCK_SHIFT) | (uint64_t)__builtin_ctzll(word);
				const struct msg *m = slot_msg(t, slot);

				if (m->modseq > modseq) {
					c->slot = slot;
					return m;
				}
				word &= word - 1;
			}
		}
		s = (b + 1) << MT_BLOCK_SHIFT;
	}
	c->slot = t->nslots;
	return NULL;
}

size_t msgtable_memory(const struct msgtable *t)
{
	size_t bytes = sizeof(*t) + t->chunks_cap * sizeof(struct mt_chunk) + t->msg_bytes +
		       t->fw_cap * sizeof(uint32_t) + t->blockmax_cap * sizeof(uint64_t) +
		       t->supermax_cap * sizeof(uint64_t) + bitindex_memory(t->live);

	for (unsigned i = 0; i < t->npreds; i++)
		bytes += bitindex_memory(t->preds[i].bits);
	return bytes;
}
