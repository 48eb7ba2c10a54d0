/* A growable hierarchical bitmap: level 0 holds one bit per position, and each level above holds
 * one bit per non-zero word of the level below, so "the first set bit at or after p" costs
 * O(log64 n) however many clear bits lie between. About 1.016 bits of RAM per position.
 * Not thread-safe. */
#ifndef IMAPQ_BITINDEX_H
#define IMAPQ_BITINDEX_H

#include <stddef.h>
#include <stdint.h>

#include "imap/base/error.h"

/* Returned by bitindex_next() when no bit is set at or after the position asked for. */
#define BITINDEX_NONE UINT64_MAX

struct bitindex;

/* An empty bitmap of capacity 0, or NULL when memory runs out. */
struct bitindex *bitindex_create(void);
/* Frees the bitmap and clears the caller's pointer; NULL is allowed. */
void bitindex_destroy(struct bitindex **b);

/* Grows the capacity to at least nbits positions, keeping every bit; never shrinks.
 * IMAPQ_E_NOMEM leaves the bitmap as it was (possibly with more room reserved). */
imapq_err bitindex_reserve(struct bitindex *b, uint64_t nbits);
/* Clears every bit and sets the capacity to nbits, returning memory when it shrinks.
 * IMAPQ_E_NOMEM (only when growing) leaves the bitmap cleared at its old capacity. */
imapq_err bitindex_reset(struct bitindex *b, uint64_t nbits);

/* Positions the bitmap can hold (set/clear/test take positions below this). */
uint64_t bitindex_capacity(const struct bitindex *b);

/* Sets or clears one bit, keeping the upper levels current; pos < capacity. O(1). */
void bitindex_set(struct bitindex *b, uint64_t pos);
void bitindex_clear(struct bitindex *b, uint64_t pos);
/* Whether the bit at pos is set; positions at or past the capacity read as clear. */
int bitindex_test(const struct bitindex *b, uint64_t pos);

/* The lowest set position >= from, or BITINDEX_NONE. O(log64 n). */
uint64_t bitindex_next(const struct bitindex *b, uint64_t from);

/* Level-0 word i (positions 64*i .. 64*i+63), 0 past the capacity; for popcounts. */
uint64_t bitindex_word(const struct bitindex *b, uint64_t i);

/* Bytes of RAM the bitmap holds. */
size_t bitindex_memory(const struct bitindex *b);

#endif
