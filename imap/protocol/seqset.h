/* Sequence sets of RFC 3501 ("1,3:5,7:*") for message sequence numbers and UIDs, held as sorted,
 * disjoint, non-adjacent inclusive ranges of uint32 numbers. */
#ifndef IMAPQ_SEQSET_H
#define IMAPQ_SEQSET_H

#include "imap/base/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct seqset;

/* One inclusive range lo..hi with 1 <= lo <= hi. */
struct seqset_range {
	uint32_t lo;
	uint32_t hi;
};

/* Options of seqset_parse(). */
enum seqset_flags {
	SEQSET_ALLOW_SAVED = 1 << 0, /* accept "$", the saved search result (RFC 5182) */
	SEQSET_NO_STAR = 1 << 1,     /* refuse "*" (e.g. QRESYNC known-uids) */
};

/* Creates an empty set. Returns IMAPQ_OK or IMAPQ_E_NOMEM. */
imapq_err seqset_create(struct seqset **set_r);
/* Frees the set and sets *set to NULL; NULL is ignored. */
void seqset_destroy(struct seqset **set);

/* Parses str[0..len) into a new set owned by the caller. "*" stands for max, the largest number
 * in use; when max is 0 (no messages) every range that names "*" is empty, so "1:*" gives an
 * empty set. A range n:m with n > m is read as m:n. Numbers are nz-numbers of RFC 3501: 1 to
 * 4294967295 without leading zeros. "$" (only alone, and only with SEQSET_ALLOW_SAVED) gives an
 * empty set for which seqset_is_saved() is true: the caller substitutes the saved result.
 * Returns IMAPQ_OK, IMAPQ_E_INVALID for any malformed input (set_r is then NULL) or
 * IMAPQ_E_NOMEM. */
imapq_err seqset_parse(const char *str, size_t len, uint32_t max, unsigned flags,
		       struct seqset **set_r);

/* True when the set was parsed from "$". */
bool seqset_is_saved(const struct seqset *set);

/* Adds lo..hi (either order, both at least 1). Returns IMAPQ_OK, IMAPQ_E_INVALID for 0 or
 * IMAPQ_E_NOMEM. */
imapq_err seqset_add(struct seqset *set, uint32_t lo, uint32_t hi);

/* Adds the parts of lo..hi that ranges[0..n) (ascending, disjoint) hold. Calls made with
 * ascending, disjoint lo..hi share *cursor (0 before the first): ranges wholly below lo are
 * passed once for all, so intersecting two sorted lists costs their lengths plus the overlaps.
 * Returns IMAPQ_OK or IMAPQ_E_NOMEM. */
imapq_err seqset_add_overlap(struct seqset *set, const struct seqset_range *ranges, size_t n,
			     size_t *cursor, uint32_t lo, uint32_t hi);

/* Number of ranges and the ranges themselves, ascending; valid until the set changes. */
size_t seqset_range_count(const struct seqset *set);
const struct seqset_range *seqset_ranges(const struct seqset *set);
/* Count of numbers in the set. */
uint64_t seqset_size(const struct seqset *set);
/* True when n is in the set. */
bool seqset_contains(const struct seqset *set, uint32_t n);

/* Writes the set in IMAP form ("1:3,5") into out, at most cap bytes with a NUL when cap > 0, like
 * snprintf; returns the length of the whole text. An empty set writes "". */
size_t seqset_format(const struct seqset *set, char *out, size_t cap);

#endif
