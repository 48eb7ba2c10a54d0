/* Parsing, normalising and formatting of IMAP sequence sets. */
#include "imap/protocol/seqset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct seqset {
	struct seqset_range *ranges;
	size_t count;
	size_t cap;
	bool saved;
};

imapq_err seqset_create(struct seqset **set_r)
{
	*set_r = calloc(1, sizeof(**set_r));
	return *set_r != NULL ? IMAPQ_OK : IMAPQ_E_NOMEM;
}

void seqset_destroy(struct seqset **set)
{
	if (*set == NULL)
		return;
	free((*set)->ranges);
	free(*set);
	*set = NULL;
}

bool seqset_is_saved(const struct seqset *set)
{
	return set->saved;
}

size_t seqset_range_count(const struct seqset *set)
{
	return set->count;
}

const struct seqset_range *seqset_ranges(const struct seqset *set)
{
	return set->ranges;
}

/* Orders ranges by their low end for qsort(). */
static int range_cmp(const void *a, const void *b)
{
	const struct seqset_range *x = a;
	const struct seqset_range *y = b;

	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Sorts the ranges and merges overlapping or adjacent ones. */
static void normalise(struct seqset *set)
{
	size_t w = 0;

	if (set->count < 2)
		return;
	qsort(set->ranges, set->count, sizeof(*set->ranges), range_cmp);
	for (size_t i = 1; i < set->count; i++) {
		struct seqset_range *last = &set->ranges[w];
		const struct seqset_range *r = &set->ranges[i];

		if (r->lo <= last->hi || r->lo - 1 == last->hi) {
			if (r->hi > last->hi)
				last->hi = r->hi;
		} else {
			set->ranges[++w] = *r;
		}
	}
	set->count = w + 1;
}

/* Appends a range without normalising. */
static imapq_err append(struct seqset *set, uint32_t lo, uint32_t hi)
{
	if (set->count == set->cap) {
		size_t cap = set->cap ? set->cap * 2 : 4;
		struct seqset_range *ranges = realloc(set->ranges, cap * sizeof(*ranges));

		if (ranges == NULL)
			return IMAPQ_E_NOMEM;
		set->ranges = ranges;
		set->cap = cap;
	}
	set->ranges[set->count].lo = lo;
	set->ranges[set->count].hi = hi;
	set->count++;
	return IMAPQ_OK;
}

imapq_err seqset_add(struct seqset *set, uint32_t lo, uint32_t hi)
{
	imapq_err err;
	bool in_order;

	if (lo == 0 || hi == 0)
		return IMAPQ_E_INVALID;
	if (lo > hi) {
		uint32_t t = lo;

		lo = hi;
		hi = t;
	}
	in_order = set->count == 0 || lo > set->ranges[set->count - 1].hi + 1ull;
	err = append(set, lo, hi);
	if (err == IMAPQ_OK && !in_order)
		normalise(set);
	return err;
}

imapq_err seqset_add_overlap(struct seqset *set, const struct seqset_range *ranges, size_t n,
			     size_t *cursor, uint32_t lo, uint32_t hi)
{
	while (*cursor < n && ranges[*cursor].hi < lo)
		(*cursor)++;
	/* A range that reaches past hi may overlap the next call's span too: the cursor stays. */
	for (size_t i = *cursor; i < n && ranges[i].lo <= hi; i++) {
		uint32_t a = ranges[i].lo > lo ? ranges[i].lo : lo;
		uint32_t b = ranges[i].hi < hi ? ranges[i].hi : hi;
		imapq_err err = seqset_add(set, a, b);
		if (err != IMAPQ_OK)
			return err;
	}
	return IMAPQ_OK;
}

uint64_t seqset_size(const struct seqset *set)
{
	uint64_t n = 0;

	for (size_t i = 0; i < set->count; i++)
		n += (uint64_t)set->ranges[i].hi - set->ranges[i].lo + 1;
	return n;
}

bool seqset_contains(const struct seqset *set, uint32_t n)
{
	size_t lo = 0;
	size_t hi = set->count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (n < set->ranges[mid].lo)
			hi = mid;
		else if (n > set->ranges[mid].hi)
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

/* Reads one seq-number at *pos: an nz-number, or "*" stored as 0. False when malformed. */
static bool read_number(const char *s, size_t len, size_t *pos, unsigned flags, uint32_t *n_r)
{
	size_t i = *pos;
	uint32_t n = 0;

	if (i < len && s[i] == '*' && !(flags & SEQSET_NO_STAR)) {
		*pos = i + 1;
		*n_r = 0;
		return true;
	}
	if (i >= len || s[i] < '1' || s[i] > '9')
		return false;
	for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
		uint32_t d = (uint32_t)(s[i] - '0');

		if (n > (UINT32_MAX - d) / 10)
			return false;
		n = n * 10 + d;
	}
	*pos = i;
	*n_r = n;
	return true;
}

/* Parses the ranges of str into set, resolving "*" against max. */
static imapq_err parse_into(struct seqset *set, const char *s, size_t len, uint32_t max,
			    unsigned flags)
{
	size_t pos = 0;

	for (;;) {
		uint32_t lo, hi;
		imapq_err err = IMAPQ_OK;

		if (!read_number(s, len, &pos, flags, &lo))
			return IMAPQ_E_INVALID;
		hi = lo;
		if (pos < len && s[pos] == ':') {
			pos++;
			if (!read_number(s, len, &pos, flags, &hi))
				return IMAPQ_E_INVALID;
		}
		if (lo == 0)
			lo = max;
		if (hi == 0)
			hi = max;
		if (lo != 0 && hi != 0)
			err = append(set, lo < hi ? lo : hi, lo < hi ? hi : lo);
		if (err != IMAPQ_OK)
			return err;
		if (pos == len)
			return IMAPQ_OK;
		if (s[pos] != ',')
			return IMAPQ_E_INVALID;
		pos++;
	}
}

imapq_err seqset_parse(const char *str, size_t len, uint32_t max, unsigned flags,
		       struct seqset **set_r)
{
	struct seqset *set;
	imapq_err err = seqset_create(&set);

	*set_r = NULL;
	if (err != IMAPQ_OK)
		return err;
	if (len == 1 && str[0] == '$' && (flags & SEQSET_ALLOW_SAVED)) {
		set->saved = true;
	} else {
		err = parse_into(set, str, len, max, flags);
		if (err != IMAPQ_OK) {
			seqset_destroy(&set);
			return err;
		}
		normalise(set);
	}
	*set_r = set;
	return IMAPQ_OK;
}

size_t seqset_format(const struct seqset *set, char *out, size_t cap)
{
	size_t total = 0;

	if (cap > 0)
		out[0] = '\0';
	for (size_t i = 0; i < set->count; i++) {
		const struct seqset_range *r = &set->ranges[i];
		char piece[32];
		int n;

		if (r->lo == r->hi)
			n = snprintf(piece, sizeof(piece), "%s%u", i ? "," : "", r->lo);
		else
			n = snprintf(piece, sizeof(piece), "%s%u:%u", i ? "," : "", r->lo, r->hi);
		if (total < cap) {
			size_t room = cap - total - 1;
			size_t take = (size_t)n < room ? (size_t)n : room;

			memcpy(out + total, piece, take);
			out[total + take] = '\0';
		}
		total += (size_t)n;
	}
	return total;
}
