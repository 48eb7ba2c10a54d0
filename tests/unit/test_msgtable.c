/* Unit tests of the message table, cross-checked against a naive model indexed by UID. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "imap/store/msgtable.h"

#define F_DELETED    (1ull << 3)
#define F_CLAIMED    (1ull << 5)
#define F_DELAYED    (1ull << 6)
#define F_READY_MASK (F_DELETED | F_CLAIMED | F_DELAYED)

/* A naive model: a dense array over UIDs 1..cap. */
struct model {
	struct msg *msgs;
	bool *present;
	uint32_t cap;
	uint32_t last_uid;
	uint32_t count;
	uint64_t modseq;
};

/* A small deterministic generator (xorshift64*). */
static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

static uint32_t rng_below(uint64_t *s, uint32_t n)
{
	return (uint32_t)(rng_next(s) % n);
}

static void model_init(struct model *m, uint32_t cap)
{
	memset(m, 0, sizeof(*m));
	m->cap = cap;
	m->msgs = calloc(cap + 1, sizeof(struct msg));
	m->present = calloc(cap + 1, sizeof(bool));
	assert_non_null(m->msgs);
	assert_non_null(m->present);
}

static void model_free(struct model *m)
{
	free(m->msgs);
	free(m->present);
}

/* Random flags drawn from the bits the tests' predicates look at, plus one unrelated bit. */
static uint64_t random_flags(uint64_t *s)
{
	static const uint64_t bits[] = {F_DELETED, F_CLAIMED, F_DELAYED, 1ull << 0, 1ull << 40};
	uint64_t f = 0;

	for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); i++)
		if (rng_below(s, 4) == 0)
			f |= bits[i];
	return f;
}

/* Appends one message with the next UID (after a random gap) to both table and model. */
static uint32_t both_append(struct msgtable *t, struct model *m, uint64_t *s, uint64_t flags)
{
	struct msg x = {0};

	x.uid = m->last_uid + 1 + rng_below(s, 3);
	if (x.uid > m->cap)
		return 0;
	x.size = rng_below(s, 100000);
	x.modseq = ++m->modseq;
	x.flags = flags;
	x.loc = rng_next(s);
	x.internaldate = (int64_t)x.uid * 7;
	assert_int_equal(msgtable_append(t, &x), IMAPQ_OK);
	m->msgs[x.uid] = x;
	m->present[x.uid] = true;
	m->last_uid = x.uid;
	m->count++;
	return x.uid;
}

static void assert_msg_equal(const struct msg *a, const struct msg *b)
{
	assert_non_null(a);
	assert_int_equal(a->uid, b->uid);
	assert_int_equal(a->size, b->size);
	assert_int_equal(a->modseq, b->modseq);
	assert_int_equal(a->flags, b->flags);
	assert_int_equal(a->loc, b->loc);
	assert_int_equal(a->internaldate, b->internaldate);
}

/* Brute-force lowest matching UID >= from. */
static uint32_t model_first_match(const struct model *m, uint64_t mask, uint64_t want,
				  uint32_t from)
{
	for (uint32_t u = from == 0 ? 1 : from; u <= m->last_uid; u++)
		if (m->present[u] && (m->msgs[u].flags & mask) == want)
			return u;
	return 0;
}

static uint32_t model_count_match(const struct model *m, uint64_t mask, uint64_t want)
{
	uint32_t n = 0;

	for (uint32_t u = 1; u <= m->last_uid; u++)
		if (m->present[u] && (m->msgs[u].flags & mask) == want)
			n++;
	return n;
}

/* Walks the whole table with seek/next and compares it with the model, message by message. */
static void check_iteration(const struct msgtable *t, const struct model *m)
{
	struct msgtable_cursor c;
	const struct msg *x = msgtable_seek(t, 0, &c);
	uint32_t n = 0;

	for (uint32_t u = 1; u <= m->last_uid; u++) {
		if (!m->present[u])
			continue;
		assert_msg_equal(x, &m->msgs[u]);
		n++;
		x = msgtable_next(t, &c);
	}
	assert_null(x);
	assert_int_equal(n, msgtable_count(t));
	assert_int_equal(n, m->count);
}

/* Random append/find/update/set_loc/remove against the model; returns after ops operations. */
static void run_random(uint64_t seed, uint32_t ops, uint32_t cap, uint32_t check_every)
{
	struct msgtable *t = msgtable_create();
	struct model m;
	uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;

	assert_non_null(t);
	model_init(&m, cap);
	for (uint32_t i = 0; i < ops; i++) {
		uint32_t op = rng_below(&s, 100);
		uint32_t u = m.last_uid == 0 ? 1 : 1 + rng_below(&s, m.last_uid + 2);
		const struct msg *x;
		struct msg removed;

		if (u > m.cap)
			u = m.cap;
		if (op < 45 || m.count == 0) {
			both_append(t, &m, &s, random_flags(&s));
		} else if (op < 65) {
			x = msgtable_find(t, u);
			if (m.present[u])
				assert_msg_equal(x, &m.msgs[u]);
			else
				assert_null(x);
		} else if (op < 80) {
			uint64_t f = random_flags(&s);

			msgtable_update(t, u, f, ++m.modseq);
			if (m.present[u]) {
				m.msgs[u].flags = f;
				m.msgs[u].modseq = m.modseq;
			}
		} else if (op < 83) {
			uint64_t loc = rng_next(&s);

			msgtable_set_loc(t, u, loc);
			if (m.present[u])
				m.msgs[u].loc = loc;
		} else {
			int r = msgtable_remove(t, u, &removed);

			assert_int_equal(r, m.present[u] ? 1 : 0);
			if (r) {
				assert_msg_equal(&removed, &m.msgs[u]);
				m.present[u] = false;
				m.count--;
			}
		}
		assert_int_equal(msgtable_count(t), m.count);
		if ((i + 1) % check_every == 0)
			check_iteration(t, &m);
	}
	check_iteration(t, &m);
	for (uint32_t u = 0; u <= m.last_uid + 1 && u <= m.cap; u++) {
		if (u > 0 && m.present[u])
			assert_msg_equal(msgtable_find(t, u), &m.msgs[u]);
		else
			assert_null(msgtable_find(t, u));
	}
	model_free(&m);
	msgtable_destroy(&t);
	assert_null(t);
}

/* Many seeds of small mixed workloads. */
static void test_random_many_seeds(void **state)
{
	(void)state;
	for (uint64_t seed = 1; seed <= 40; seed++)
		run_random(seed, 4000, 20000, 500);
}

/* One large run past 100k messages, growing through many chunks and repacks. */
static void test_random_100k(void **state)
{
	struct msgtable *t = msgtable_create();
	struct model m;
	uint64_t s = 42;

	(void)state;
	model_init(&m, 400000);
	for (uint32_t i = 0; i < 100000; i++)
		both_append(t, &m, &s, random_flags(&s));
	for (uint32_t i = 0; i < 200000; i++) {
		uint32_t u = 1 + rng_below(&s, m.last_uid);
		uint32_t op = rng_below(&s, 4);

		if (op == 0) {
			assert_int_equal(msgtable_remove(t, u, NULL), m.present[u] ? 1 : 0);
			if (m.present[u]) {
				m.present[u] = false;
				m.count--;
			}
		} else if (op == 1) {
			both_append(t, &m, &s, random_flags(&s));
		} else if (op == 2) {
			uint64_t f = random_flags(&s);

			msgtable_update(t, u, f, ++m.modseq);
			if (m.present[u]) {
				m.msgs[u].flags = f;
				m.msgs[u].modseq = m.modseq;
			}
		} else {
			const struct msg *x = msgtable_find(t, u);

			if (m.present[u])
				assert_msg_equal(x, &m.msgs[u]);
			else
				assert_null(x);
		}
	}
	assert_true(m.count > 100000);
	check_iteration(t, &m);
	model_free(&m);
	msgtable_destroy(&t);
}

/* rank and select agree with each other and with the model, across removals and repacks. */
static void test_rank_select(void **state)
{
	struct msgtable *t = msgtable_create();
	struct model m;
	uint64_t s = 7;
	uint32_t seq;

	(void)state;
	model_init(&m, 300000);
	for (int round = 0; round < 3; round++) {
		for (uint32_t i = 0; i < 40000; i++)
			both_append(t, &m, &s, 0);
		for (uint32_t i = 0; i < 30000; i++) {
			uint32_t u = 1 + rng_below(&s, m.last_uid);

			if (msgtable_remove(t, u, NULL)) {
				m.present[u] = false;
				m.count--;
			}
		}
		seq = 0;
		for (uint32_t u = 1; u <= m.last_uid; u++) {
			if (m.present[u]) {
				seq++;
				assert_int_equal(msgtable_select(t, seq), u);
			}
			assert_int_equal(msgtable_rank(t, u), seq);
		}
		assert_int_equal(seq, msgtable_count(t));
		assert_int_equal(msgtable_select(t, 0), 0);
		assert_int_equal(msgtable_select(t, seq + 1), 0);
		assert_int_equal(msgtable_rank(t, 0), 0);
		assert_int_equal(msgtable_rank(t, UINT32_MAX), seq);
		assert_int_equal(msgtable_rank(t, m.last_uid + 100), seq);
	}
	model_free(&m);
	msgtable_destroy(&t);
}

/* The (mask, want) pairs the predicate tests use: more than MSGTABLE_MAX_INDEXES of them. */
static const uint64_t pairs[][2] = {
    {F_READY_MASK, 0},
    {F_CLAIMED, F_CLAIMED},
    {F_DELAYED, F_DELAYED},
    {F_DELETED, F_DELETED},
    {F_CLAIMED | F_DELAYED, F_CLAIMED},
    {F_CLAIMED | F_DELAYED, F_DELAYED},
    {1ull << 0, 0},
    {1ull << 0, 1ull << 0},
    {(1ull << 0) | F_DELETED, 1ull << 0},
    {1ull << 40, 1ull << 40},
    {F_READY_MASK | (1ull << 40), 1ull << 40},
    {F_READY_MASK, F_READY_MASK},
    {0, 0},
    {F_CLAIMED, F_CLAIMED | F_DELAYED}, /* want outside mask: matches nothing */
};
#define NPAIRS (sizeof(pairs) / sizeof(pairs[0]))

/* first_match and count_match match a brute-force scan after random flag changes, with every
 * pair cycled so indexes are evicted and rebuilt. */
static void test_first_match_brute(void **state)
{
	struct msgtable *t = msgtable_create();
	struct model m;
	uint64_t s = 99;

	(void)state;
	assert_true(NPAIRS > MSGTABLE_MAX_INDEXES);
	model_init(&m, 120000);
	for (uint32_t i = 0; i < 30000; i++)
		both_append(t, &m, &s, random_flags(&s));
	for (int round = 0; round < 20; round++) {
		for (uint32_t i = 0; i < 2000; i++) {
			uint32_t u = 1 + rng_below(&s, m.last_uid);
			uint32_t op = rng_below(&s, 10);

			if (op < 6) {
				uint64_t f = random_flags(&s);

				msgtable_update(t, u, f, ++m.modseq);
				if (m.present[u]) {
					m.msgs[u].flags = f;
					m.msgs[u].modseq = m.modseq;
				}
			} else if (op < 8) {
				if (msgtable_remove(t, u, NULL)) {
					m.present[u] = false;
					m.count--;
				}
			} else {
				both_append(t, &m, &s, random_flags(&s));
			}
		}
		for (size_t p = 0; p < NPAIRS; p++) {
			size_t k = (p + (size_t)round * 5) % NPAIRS;
			uint64_t mask = pairs[k][0], want = pairs[k][1];
			uint32_t uid, count;

			for (int q = 0; q < 8; q++) {
				uint32_t from = q == 0 ? 0 : rng_below(&s, m.last_uid + 2);

				assert_int_equal(msgtable_first_match(t, mask, want, from, &uid),
						 IMAPQ_OK);
				assert_int_equal(uid, model_first_match(&m, mask, want, from));
			}
			assert_int_equal(msgtable_count_match(t, mask, want, &count), IMAPQ_OK);
			assert_int_equal(count, model_count_match(&m, mask, want));
		}
	}
	model_free(&m);
	msgtable_destroy(&t);
}

/* The claim loop: claiming the lowest ready message always finds the next one, however many
 * are claimed before it. */
static void test_claim_walk(void **state)
{
	struct msgtable *t = msgtable_create();
	struct model m;
	uint64_t s = 5;
	uint32_t uid, count;

	(void)state;
	model_init(&m, 50000);
	for (uint32_t i = 0; i < 20000; i++)
		both_append(t, &m, &s, 0);
	for (uint32_t i = 0; i < 5000; i++) {
		assert_int_equal(msgtable_first_match(t, F_READY_MASK, 0, 0, &uid), IMAPQ_OK);
		assert_int_equal(uid, model_first_match(&m, F_READY_MASK, 0, 0));
		msgtable_update(t, uid, F_CLAIMED, ++m.modseq);
		m.msgs[uid].flags = F_CLAIMED;
	}
	assert_int_equal(msgtable_count_match(t, F_READY_MASK, 0, &count), IMAPQ_OK);
	assert_int_equal(count, 15000);
	assert_int_equal(msgtable_count_match(t, F_CLAIMED, F_CLAIMED, &count), IMAPQ_OK);
	assert_int_equal(count, 5000);
	/* Acknowledge the claimed ones; the ready count is unchanged. */
	for (uint32_t u = 1; u <= m.last_uid; u++)
		if (m.present[u] && m.msgs[u].flags == F_CLAIMED)
			assert_int_equal(msgtable_remove(t, u, NULL), 1);
	assert_int_equal(msgtable_count_match(t, F_CLAIMED, F_CLAIMED, &count), IMAPQ_OK);
	assert_int_equal(count, 0);
	assert_int_equal(msgtable_count_match(t, F_READY_MASK, 0, &count), IMAPQ_OK);
	assert_int_equal(count, 15000);
	model_free(&m);
	msgtable_destroy(&t);
}

/* Collects changed_next's answers and compares them with a brute-force scan. */
static void check_changed_since(const struct msgtable *t, const struct model *m, uint64_t since)
{
	struct msgtable_cursor c = {0};
	const struct msg *x = msgtable_changed_next(t, since, &c);

	for (uint32_t u = 1; u <= m->last_uid; u++) {
		if (!m->present[u] || m->msgs[u].modseq <= since)
			continue;
		assert_non_null(x);
		assert_int_equal(x->uid, u);
		assert_int_equal(x->modseq, m->msgs[u].modseq);
		c.slot++;
		x = msgtable_changed_next(t, since, &c);
	}
	assert_null(x);
}

static void test_changed_since(void **state)
{
	struct msgtable *t = msgtable_create();
	struct model m;
	uint64_t s = 11;

	(void)state;
	model_init(&m, 100000);
	for (uint32_t i = 0; i < 20000; i++)
		both_append(t, &m, &s, 0);
	for (int round = 0; round < 6; round++) {
		uint64_t before = m.modseq;

		for (uint32_t i = 0; i < 300; i++) {
			uint32_t u = 1 + rng_below(&s, m.last_uid);

			uint64_t f = random_flags(&s);

			msgtable_update(t, u, f, ++m.modseq);
			if (m.present[u]) {
				m.msgs[u].flags = f;
				m.msgs[u].modseq = m.modseq;
			}
			if (rng_below(&s, 3) == 0 && msgtable_remove(t, u, NULL)) {
				m.present[u] = false;
				m.count--;
			}
		}
		for (uint32_t i = 0; i < 200; i++)
			both_append(t, &m, &s, 0);
		check_changed_since(t, &m, before);
		check_changed_since(t, &m, m.modseq);
		check_changed_since(t, &m, m.modseq - 50);
		check_changed_since(t, &m, 0);
		check_changed_since(t, &m, rng_below(&s, (uint32_t)m.modseq));
	}
	model_free(&m);
	msgtable_destroy(&t);
}

/* A cursor keeps its place while the messages around it are updated and removed. */
static void test_cursor_stable(void **state)
{
	struct msgtable *t = msgtable_create();
	struct msgtable_cursor c, c2 = {0};
	const struct msg *x;
	uint32_t uid;

	(void)state;
	for (uint32_t u = 1; u <= 5000; u++) {
		struct msg a = {.uid = u * 2, .modseq = u};

		assert_int_equal(msgtable_append(t, &a), IMAPQ_OK);
	}
	x = msgtable_seek(t, 3001, &c);
	assert_int_equal(x->uid, 3002);
	/* Remove the current message, the next few and a whole chunk's worth after them. */
	for (uint32_t u = 3002; u <= 3002 + 2 * 2100; u += 2)
		assert_int_equal(msgtable_remove(t, u, NULL), 1);
	msgtable_update(t, 7206, F_CLAIMED, 99999);
	x = msgtable_next(t, &c);
	assert_non_null(x);
	assert_int_equal(x->uid, 7204);
	x = msgtable_next(t, &c);
	assert_int_equal(x->uid, 7206);
	assert_int_equal(x->flags, F_CLAIMED);
	/* The changed-since cursor survives removals too. */
	x = msgtable_changed_next(t, 5000, &c2);
	assert_int_equal(x->uid, 7206);
	assert_int_equal(msgtable_remove(t, 7206, NULL), 1);
	msgtable_update(t, 9000, 0, 100000);
	c2.slot++;
	x = msgtable_changed_next(t, 5000, &c2);
	assert_int_equal(x->uid, 9000);
	/* Iteration reaches the end and stays there. */
	x = msgtable_seek(t, 9999, &c);
	assert_int_equal(x->uid, 10000);
	assert_null(msgtable_next(t, &c));
	assert_null(msgtable_next(t, &c));
	assert_null(msgtable_seek(t, 10001, &c));
	assert_null(msgtable_next(t, &c));
	assert_int_equal(msgtable_first_match(t, 0, 0, 3001, &uid), IMAPQ_OK);
	assert_int_equal(uid, 7204);
	msgtable_destroy(&t);
}

/* A chunk whose messages are all removed is freed; lookups that land in it still answer right
 * for the messages on both sides. */
static void test_freed_chunk(void **state)
{
	struct msgtable *t = msgtable_create();
	struct msgtable_cursor c;
	size_t before;
	uint32_t uid;

	(void)state;
	for (uint32_t u = 1; u <= 5000; u++) {
		struct msg a = {.uid = u * 3, .modseq = u, .flags = u % 2 ? F_CLAIMED : 0};

		assert_int_equal(msgtable_append(t, &a), IMAPQ_OK);
	}
	assert_int_equal(msgtable_count_match(t, F_CLAIMED, 0, &uid), IMAPQ_OK);
	before = msgtable_memory(t);
	/* Remove every message from the 1001st to the 3500th: at least one whole chunk. */
	for (uint32_t u = 1001; u <= 3500; u++)
		assert_int_equal(msgtable_remove(t, u * 3, NULL), 1);
	assert_true(msgtable_memory(t) < before);
	for (uint32_t u = 3001; u <= 10502; u += 500) {
		assert_int_equal(msgtable_rank(t, u), 1000);
		assert_null(msgtable_find(t, u));
		assert_int_equal(msgtable_seek(t, u, &c)->uid, 3501 * 3);
		assert_int_equal(msgtable_first_match(t, F_CLAIMED, 0, u, &uid), IMAPQ_OK);
		assert_int_equal(uid, 3502 * 3);
		assert_int_equal(msgtable_first_match(t, F_CLAIMED, F_CLAIMED, u, &uid), IMAPQ_OK);
		assert_int_equal(uid, 3501 * 3);
	}
	assert_int_equal(msgtable_rank(t, 3000), 1000);
	assert_int_equal(msgtable_select(t, 1000), 3000);
	assert_int_equal(msgtable_select(t, 1001), 3501 * 3);
	assert_int_equal(msgtable_rank(t, 3501 * 3), 1001);
	msgtable_destroy(&t);
}

/* Appends must carry ever-increasing UIDs; a refused append changes nothing. */
static void test_append_order_and_empty(void **state)
{
	struct msgtable *t = msgtable_create();
	struct msgtable_cursor c = {0};
	struct msg a = {.uid = 10, .modseq = 1};
	uint32_t uid = 1, count = 1;

	(void)state;
	assert_int_equal(msgtable_count(t), 0);
	assert_null(msgtable_find(t, 1));
	assert_null(msgtable_seek(t, 0, &c));
	assert_null(msgtable_changed_next(t, 0, &c));
	assert_int_equal(msgtable_rank(t, 5), 0);
	assert_int_equal(msgtable_select(t, 1), 0);
	assert_int_equal(msgtable_first_match(t, F_READY_MASK, 0, 0, &uid), IMAPQ_OK);
	assert_int_equal(uid, 0);
	assert_int_equal(msgtable_count_match(t, F_READY_MASK, 0, &count), IMAPQ_OK);
	assert_int_equal(count, 0);
	assert_int_equal(msgtable_remove(t, 1, NULL), 0);
	msgtable_update(t, 1, F_CLAIMED, 2);

	struct msg zero = {.uid = 0};
	assert_int_equal(msgtable_append(t, &zero), IMAPQ_E_INVALID);
	assert_int_equal(msgtable_append(t, &a), IMAPQ_OK);
	assert_int_equal(msgtable_append(t, &a), IMAPQ_E_INVALID);
	a.uid = 9;
	assert_int_equal(msgtable_append(t, &a), IMAPQ_E_INVALID);
	/* Even after the highest UID is removed, it may not come back. */
	assert_int_equal(msgtable_remove(t, 10, NULL), 1);
	a.uid = 10;
	assert_int_equal(msgtable_append(t, &a), IMAPQ_E_INVALID);
	assert_int_equal(msgtable_count(t), 0);
	a.uid = 11;
	assert_int_equal(msgtable_append(t, &a), IMAPQ_OK);
	assert_int_equal(msgtable_count(t), 1);
	assert_int_equal(msgtable_find(t, 11)->uid, 11);
	/* A one-message mailbox stays small. */
	assert_true(msgtable_memory(t) < 4096);
	msgtable_destroy(&t);
	msgtable_destroy(&t);
}

/* FIFO churn at a million messages: append at the end, remove from the front in waves, with
 * eight predicate indexes live. Memory per message stays within 64 bytes, and it falls when
 * the table shrinks. */
static void test_fifo_memory(void **state)
{
	struct msgtable *t = msgtable_create();
	const uint32_t n = 1000000;
	uint32_t next_uid = 1, front = 1, uid, count;
	size_t mem, peak = 0;

	(void)state;
	for (size_t k = 0; k < MSGTABLE_MAX_INDEXES; k++)
		assert_int_equal(msgtable_count_match(t, pairs[k][0], pairs[k][1], &count),
				 IMAPQ_OK);
	for (; next_uid <= n; next_uid++) {
		struct msg a = {.uid = next_uid, .modseq = next_uid};

		assert_int_equal(msgtable_append(t, &a), IMAPQ_OK);
	}
	mem = msgtable_memory(t);
	assert_true(mem <= 64ull * msgtable_count(t));
	for (int wave = 0; wave < 6; wave++) {
		/* Claim the first 10k, acknowledge 150k from the front, enqueue 150k more. */
		for (uint32_t i = 0; i < 10000; i++) {
			assert_int_equal(msgtable_first_match(t, F_READY_MASK, 0, 0, &uid),
					 IMAPQ_OK);
			assert_int_equal(uid, front + i);
			msgtable_update(t, uid, F_CLAIMED, next_uid + i);
		}
		for (uint32_t i = 0; i < 150000; i++)
			assert_int_equal(msgtable_remove(t, front++, NULL), 1);
		for (uint32_t i = 0; i < 150000; i++, next_uid++) {
			struct msg a = {.uid = next_uid, .modseq = next_uid};

			assert_int_equal(msgtable_append(t, &a), IMAPQ_OK);
		}
		assert_int_equal(msgtable_count(t), n);
		mem = msgtable_memory(t);
		if (mem > peak)
			peak = mem;
		assert_true(mem <= 64ull * n);
		assert_int_equal(msgtable_select(t, 1), front);
		assert_int_equal(msgtable_rank(t, front + 999), 1000);
		assert_int_equal(msgtable_find(t, front + 12345)->uid, front + 12345);
		assert_null(msgtable_find(t, front - 1));
	}
	/* Drain nine tenths from the front; memory follows the live messages. */
	for (uint32_t i = 0; i < 900000; i++)
		assert_int_equal(msgtable_remove(t, front++, NULL), 1);
	{
		struct msg a = {.uid = next_uid, .modseq = next_uid};

		next_uid++;
		assert_int_equal(msgtable_append(t, &a), IMAPQ_OK);
	}
	mem = msgtable_memory(t);
	assert_true(mem <= 64ull * msgtable_count(t));
	assert_true(mem < peak / 5);
	assert_int_equal(msgtable_first_match(t, F_READY_MASK, 0, 0, &uid), IMAPQ_OK);
	assert_int_equal(uid, front);
	assert_int_equal(msgtable_count_match(t, F_READY_MASK, 0, &count), IMAPQ_OK);
	assert_int_equal(count, 100001);
	/* Empty it completely: an append then leaves one small table. */
	while (msgtable_remove(t, front, NULL) == 1)
		front++;
	{
		struct msg a = {.uid = next_uid, .modseq = next_uid};

		next_uid++;
		assert_int_equal(msgtable_append(t, &a), IMAPQ_OK);
	}
	assert_int_equal(msgtable_count(t), 1);
	assert_true(msgtable_memory(t) < 8192);
	assert_int_equal(msgtable_select(t, 1), next_uid - 1);
	msgtable_destroy(&t);
}

/* Random removal (not FIFO) also keeps memory within 64 bytes a message once repacked. */
static void test_random_removal_memory(void **state)
{
	struct msgtable *t = msgtable_create();
	uint64_t s = 3;
	uint32_t next_uid = 1, count;

	(void)state;
	for (size_t k = 0; k < MSGTABLE_MAX_INDEXES; k++)
		assert_int_equal(msgtable_count_match(t, pairs[k][0], pairs[k][1], &count),
				 IMAPQ_OK);
	for (; next_uid <= 400000; next_uid++) {
		struct msg a = {.uid = next_uid, .modseq = next_uid};

		assert_int_equal(msgtable_append(t, &a), IMAPQ_OK);
	}
	for (int round = 0; round < 4; round++) {
		for (uint32_t i = 0; i < 100000; i++) {
			struct msg a = {.uid = next_uid++};

			while (msgtable_remove(t, 1 + rng_below(&s, next_uid), NULL) == 0)
				;
			assert_int_equal(msgtable_append(t, &a), IMAPQ_OK);
		}
		assert_int_equal(msgtable_count(t), 400000);
		assert_true(msgtable_memory(t) <= 64ull * 400000);
	}
	msgtable_destroy(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_append_order_and_empty),
	    cmocka_unit_test(test_random_many_seeds),
	    cmocka_unit_test(test_random_100k),
	    cmocka_unit_test(test_rank_select),
	    cmocka_unit_test(test_first_match_brute),
	    cmocka_unit_test(test_claim_walk),
	    cmocka_unit_test(test_changed_since),
	    cmocka_unit_test(test_cursor_stable),
	    cmocka_unit_test(test_freed_chunk),
	    cmocka_unit_test(test_fifo_memory),
	    cmocka_unit_test(test_random_removal_memory),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
