/* Hierarchical bitmap. Each level is its own array so that growing one never moves another, and
 * so a failed allocation part-way through a resize leaves every level usable. Invariant: words
 * past a level's used length are zero, and bit j of level k+1 is set exactly when word j of
 * level k is non-zero. */
#include "imap/store/bitindex.h"

#include <stdlib.h>
#include <string.h>

/* Levels needed for 2^64 positions at 6 bits per level. */
#define BITINDEX_MAX_LEVELS 11

struct bitindex {
	uint64_t cap;			      /* positions covered by the current layout */
	unsigned nlevels;		      /* levels in use; 0 when cap is 0 */
	uint64_t nwords[BITINDEX_MAX_LEVELS]; /* used words of each level */
	uint64_t alloc[BITINDEX_MAX_LEVELS];  /* allocated words of each level */
	uint64_t *level[BITINDEX_MAX_LEVELS]; /* level 0 is one bit per position */
};

/* Fills nwords with the words each level needs for nbits positions; returns the level count. */
static unsigned layout(uint64_t nbits, uint64_t nwords[BITINDEX_MAX_LEVELS])
{
	unsigned n = 0;
	uint64_t w;

	if (nbits == 0)
		return 0;
	w = (nbits + 63) / 64;
	nwords[n++] = w;
	while (w > 1) {
		w = (w + 63) / 64;
		nwords[n++] = w;
	}
	return n;
}

struct bitindex *bitindex_create(void)
{
	return calloc(1, sizeof(struct bitindex));
}

void bitindex_destroy(struct bitindex **b)
{
	if (*b == NULL)
		return;
	for (unsigned k = 0; k < BITINDEX_MAX_LEVELS; k++)
		free((*b)->level[k]);
	free(*b);
	*b = NULL;
}

/* Makes level k hold at least words words, zero-filling what is new; false when out of memory. */
static int level_grow(struct bitindex *b, unsigned k, uint64_t words)
{
	uint64_t *p;

	if (b->alloc[k] >= words)
		return 1;
	if (words > SIZE_MAX / sizeof(uint64_t))
		return 0;
	p = realloc(b->level[k], words * sizeof(uint64_t));
	if (p == NULL)
		return 0;
	memset(p + b->alloc[k], 0, (words - b->alloc[k]) * sizeof(uint64_t));
	b->level[k] = p;
	b->alloc[k] = words;
	return 1;
}

imapq_err bitindex_reserve(struct bitindex *b, uint64_t nbits)
{
	uint64_t nw[BITINDEX_MAX_LEVELS];
	unsigned n, old_levels = b->nlevels;

	if (nbits <= b->cap)
		return IMAPQ_OK;
	n = layout(nbits, nw);
	for (unsigned k = 0; k < n; k++)
		if (!level_grow(b, k, nw[k]))
			return IMAPQ_E_NOMEM;
	/* A new top level summarises the old top, which was one word long. */
	for (unsigned k = old_levels; k < n && k > 0; k++)
		if (b->level[k - 1][0] != 0)
			b->level[k][0] |= 1;
	memcpy(b->nwords, nw, n * sizeof(uint64_t));
	b->nlevels = n;
	b->cap = nbits;
	return IMAPQ_OK;
}

imapq_err bitindex_reset(struct bitindex *b, uint64_t nbits)
{
	uint64_t nw[BITINDEX_MAX_LEVELS];
	unsigned n = layout(nbits, nw);

	for (unsigned k = 0; k < BITINDEX_MAX_LEVELS; k++) {
		if (k >= n) {
			free(b->level[k]);
			b->level[k] = NULL;
			b->alloc[k] = 0;
			continue;
		}
		if (b->alloc[k] > nw[k]) {
			/* A failed shrink keeps the larger array, which is still correct. */
			uint64_t *p = realloc(b->level[k], nw[k] * sizeof(uint64_t));

			if (p != NULL) {
				b->level[k] = p;
				b->alloc[k] = nw[k];
			}
		}
		if (b->level[k] != NULL)
			memset(b->level[k], 0, b->alloc[k] * sizeof(uint64_t));
	}
	memset(b->nwords, 0, sizeof(b->nwords));
	b->nlevels = 0;
	b->cap = 0;
	/* With every bit clear, reserving from capacity 0 rebuilds the layout. */
	return bitindex_reserve(b, nbits);
}

uint64_t bitindex_capacity(const struct bitindex *b)
{
	return b->cap;
}

void bitindex_set(struct bitindex *b, uint64_t pos)
{
	for (unsigned k = 0; k < b->nlevels; k++) {
		uint64_t w = pos >> 6;
		uint64_t old = b->level[k][w];

		b->level[k][w] = old | (1ull << (pos & 63));
		if (old != 0)
			return;
		pos = w;
	}
}

void bitindex_clear(struct bitindex *b, uint64_t pos)
{
	for (unsigned k = 0; k < b->nlevels; k++) {
		uint64_t w = pos >> 6;

		b->level[k][w] &= ~(1ull << (pos & 63));
		if (b->level[k][w] != 0)
			return;
		pos = w;
	}
}

int bitindex_test(const struct bitindex *b, uint64_t pos)
{
	if (pos >= b->cap)
		return 0;
	return (b->level[0][pos >> 6] >> (pos & 63)) & 1;
}

uint64_t bitindex_next(const struct bitindex *b, uint64_t from)
{
	unsigned k = 0;
	uint64_t pos = from;

	if (from >= b->cap)
		return BITINDEX_NONE;
	/* Climb until a word holds a set bit at or after pos. */
	for (;;) {
		uint64_t w = pos >> 6, word;

		if (w >= b->nwords[k])
			return BITINDEX_NONE;
		word = b->level[k][w] & (~0ull << (pos & 63));
		if (word != 0) {
			pos = (w << 6) | (uint64_t)__builtin_ctzll(word);
			break;
		}
		if (k + 1 == b->nlevels)
			return BITINDEX_NONE;
		k++;
		pos = w + 1;
	}
	/* Descend along the lowest set bits. */
	while (k > 0) {
		k--;
		pos = (pos << 6) | (uint64_t)__builtin_ctzll(b->level[k][pos]);
	}
	return pos;
}

uint64_t bitindex_word(const struct bitindex *b, uint64_t i)
{
	if (b->nlevels == 0 || i >= b->nwords[0])
		return 0;
	return b->level[0][i];
}

size_t bitindex_memory(const struct bitindex *b)
{
	size_t bytes = sizeof(*b);

	for (unsigned k = 0; k < BITINDEX_MAX_LEVELS; k++)
		bytes += b->alloc[k] * sizeof(uint64_t);
	return bytes;
}
