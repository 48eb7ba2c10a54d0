/* Evaluates SEARCH programs: the plan that lets the store's flag index answer a conjunction of
 * flag tests, evaluation on metadata alone (safe under the store's lock), full evaluation that
 * reads content only for the keys still undecided, and the date arithmetic of the date keys. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/server/search-private.h"

/* Days since 1970-01-01 of a proleptic Gregorian date (month 1-12). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* Days in a month of a year. */
static unsigned days_in_month(int64_t y, unsigned m)
{
	static const unsigned days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	return m == 2 && leap ? 29 : days[m - 1];
}

bool search_parse_date(const char *str, size_t len, int64_t *day_r)
{
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	size_t i = 0;
	unsigned d = 0;
	while (i < len && i < 2 && str[i] >= '0' && str[i] <= '9')
		d = d * 10 + (unsigned)(str[i++] - '0');
	if (i == 0 || i >= len || str[i] != '-' || len - i != 9 || str[i + 4] != '-')
		return false;
	unsigned m = 0;
	for (unsigned k = 0; k < 12 && m == 0; k++) {
		if (strncasecmp(str + i + 1, months + 3 * k, 3) == 0)
			m = k + 1;
	}
	int64_t y = 0;
	for (size_t k = i + 5; k < len; k++) {
		if (str[k] < '0' || str[k] > '9')
			return false;
		y = y * 10 + (str[k] - '0');
	}
	if (m == 0 || d == 0 || d > days_in_month(y, m))
		return false;
	*day_r = days_from_civil(y, m, d);
	return true;
}

int64_t search_day_of(int64_t epoch)
{
	int64_t day = epoch / 86400;
	return epoch % 86400 < 0 ? day - 1 : day;
}

/* True when uid lies in the ascending ranges. */
static bool ranges_contain(const struct uid_range *r, size_t n, uint32_t uid)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (r[mid].hi < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && r[lo].lo <= uid;
}

/* Intersects two ascending range lists into a new array; false when out of memory. */
static bool ranges_intersect(const struct uid_range *a, size_t na, const struct uid_range *b,
			     size_t nb, struct uid_range **out_r, size_t *n_r)
{
	struct uid_range *out = malloc((na + nb + 1) * sizeof *out);
	if (out == NULL)
		return false;
	size_t n = 0, i = 0, j = 0;
	while (i < na && j < nb) {
		uint32_t lo = a[i].lo > b[j].lo ? a[i].lo : b[j].lo;
		uint32_t hi = a[i].hi < b[j].hi ? a[i].hi : b[j].hi;
		if (lo <= hi)
			out[n++] = (struct uid_range){lo, hi};
		if (a[i].hi < b[j].hi)
			i++;
		else
			j++;
	}
	*out_r = out;
	*n_r = n;
	return true;
}

/* Folds one conjunct of the top level into the plan. */
static bool plan_conjunct(struct search_program *prog, const struct search_node *n)
{
	struct search_plan *p = &prog->plan;
	switch (n->op) {
	case SEARCH_OP_ALL:
		return true;
	case SEARCH_OP_NONE:
		p->none = true;
		return true;
	case SEARCH_OP_FLAGS: {
		uint64_t both = p->mask & n->u.flags.mask;
		if ((p->want & both) != (n->u.flags.want & both))
			p->none = true; /* e.g. SEEN UNSEEN */
		p->mask |= n->u.flags.mask;
		p->want |= n->u.flags.want;
		return true;
	}
	case SEARCH_OP_UIDS:
		if (!p->has_ranges) {
			struct uid_range *copy = malloc((n->u.set.n + 1) * sizeof *copy);
			if (copy == NULL)
				return false;
			if (n->u.set.n > 0)
				memcpy(copy, n->u.set.ranges, n->u.set.n * sizeof *copy);
			prog->plan_ranges = copy;
			p->nranges = n->u.set.n;
		} else {
			struct uid_range *both;
			size_t nboth;
			if (!ranges_intersect(prog->plan_ranges, p->nranges, n->u.set.ranges,
					      n->u.set.n, &both, &nboth))
				return false;
			free(prog->plan_ranges);
			prog->plan_ranges = both;
			p->nranges = nboth;
		}
		p->has_ranges = true;
		p->ranges = prog->plan_ranges;
		if (p->nranges == 0)
			p->none = true;
		return true;
	case SEARCH_OP_MODSEQ:
		if (n->u.number > p->modseq_min)
			p->modseq_min = n->u.number;
		p->indexed = false;
		return true;
	default:
		p->indexed = false;
		return true;
	}
}

imapq_err search_program_compile_plan(struct search_program *prog)
{
	prog->plan = (struct search_plan){.indexed = true};
	const struct search_node *root = prog->root;
	bool ok = true;
	if (root->op == SEARCH_OP_AND) {
		for (size_t i = 0; ok && i < root->u.list.n; i++)
			ok = plan_conjunct(prog, root->u.list.kids[i]);
	} else {
		ok = plan_conjunct(prog, root);
	}
	return ok ? IMAPQ_OK : IMAPQ_E_NOMEM;
}

void search_program_plan(const struct search_program *prog, struct search_plan *plan_r)
{
	*plan_r = prog->plan;
}

bool search_program_has_modseq(const struct search_program *prog)
{
	return prog->has_modseq;
}

bool search_program_needs_content(const struct search_program *prog)
{
	return prog->needs_content;
}

/* Compares a day with a key's day as BEFORE (<), ON (==) or SINCE (>=) do. */
static bool day_test(int op_offset, int64_t day, int64_t key)
{
	return op_offset == 0 ? day < key : op_offset == 1 ? day == key : day >= key;
}

/* Three-valued evaluation on metadata; content keys answer MAYBE. */
static enum search_answer eval_meta(const struct search_node *n, const struct store_message *m,
				    bool recent)
{
	switch (n->op) {
	case SEARCH_OP_ALL:
		return SEARCH_YES;
	case SEARCH_OP_NONE:
		return SEARCH_NO;
	case SEARCH_OP_FLAGS:
		return (m->flags & n->u.flags.mask) == n->u.flags.want ? SEARCH_YES : SEARCH_NO;
	case SEARCH_OP_RECENT:
		return recent ? SEARCH_YES : SEARCH_NO;
	case SEARCH_OP_UIDS:
		return ranges_contain(n->u.set.ranges, n->u.set.n, m->uid) ? SEARCH_YES : SEARCH_NO;
	case SEARCH_OP_LARGER:
		return m->size > n->u.number ? SEARCH_YES : SEARCH_NO;
	case SEARCH_OP_SMALLER:
		return m->size < n->u.number ? SEARCH_YES : SEARCH_NO;
	case SEARCH_OP_MODSEQ:
		return m->modseq >= n->u.number ? SEARCH_YES : SEARCH_NO;
	case SEARCH_OP_BEFORE:
	case SEARCH_OP_ON:
	case SEARCH_OP_SINCE:
		return day_test((int)(n->op - SEARCH_OP_BEFORE), search_day_of(m->internaldate),
				n->u.day)
			   ? SEARCH_YES
			   : SEARCH_NO;
	case SEARCH_OP_AND: {
		enum search_answer r = SEARCH_YES;
		for (size_t i = 0; i < n->u.list.n; i++) {
			enum search_answer k = eval_meta(n->u.list.kids[i], m, recent);
			if (k == SEARCH_NO)
				return SEARCH_NO;
			if (k == SEARCH_MAYBE)
				r = SEARCH_MAYBE;
		}
		return r;
	}
	case SEARCH_OP_OR: {
		enum search_answer r = SEARCH_NO;
		for (size_t i = 0; i < n->u.list.n; i++) {
			enum search_answer k = eval_meta(n->u.list.kids[i], m, recent);
			if (k == SEARCH_YES)
				return SEARCH_YES;
			if (k == SEARCH_MAYBE)
				r = SEARCH_MAYBE;
		}
		return r;
	}
	case SEARCH_OP_NOT: {
		enum search_answer k = eval_meta(n->u.list.kids[0], m, recent);
		return k == SEARCH_MAYBE ? k : k == SEARCH_YES ? SEARCH_NO : SEARCH_YES;
	}
	default:
		return SEARCH_MAYBE;
	}
}

enum search_answer search_match_meta(const struct search_program *prog,
				     const struct store_message *m, bool recent)
{
	return eval_meta(prog->root, m, recent);
}

/* Full evaluation of one node: metadata first, content only where metadata cannot decide, so
 * a conjunction reads no content once a cheap key has failed. */
static imapq_err eval_full(const struct search_node *n, const struct store_message *m, bool recent,
			   const struct search_source *src, bool *r)
{
	enum search_answer meta = eval_meta(n, m, recent);
	if (meta != SEARCH_MAYBE) {
		*r = meta == SEARCH_YES;
		return IMAPQ_OK;
	}
	imapq_err err = IMAPQ_OK;
	switch (n->op) {
	case SEARCH_OP_HEADER:
		return src->header_contains(src->ctx, n->u.text.field, n->u.text.needle,
					    n->u.text.len, r);
	case SEARCH_OP_BODY:
	case SEARCH_OP_TEXT:
		return src->text_contains(src->ctx, n->u.text.needle, n->u.text.len,
					  n->op == SEARCH_OP_TEXT, r);
	case SEARCH_OP_SENTBEFORE:
	case SEARCH_OP_SENTON:
	case SEARCH_OP_SENTSINCE: {
		int64_t day;
		err = src->sent_day(src->ctx, &day);
		*r =
		    err == IMAPQ_OK && day_test((int)(n->op - SEARCH_OP_SENTBEFORE), day, n->u.day);
		return err == IMAPQ_E_NOTFOUND ? IMAPQ_OK : err;
	}
	case SEARCH_OP_AND:
	case SEARCH_OP_OR: {
		/* Metadata said MAYBE: only MAYBE children remain to decide it. */
		bool is_and = n->op == SEARCH_OP_AND;
		for (size_t i = 0; i < n->u.list.n; i++) {
			const struct search_node *kid = n->u.list.kids[i];
			if (eval_meta(kid, m, recent) != SEARCH_MAYBE)
				continue;
			bool k;
			err = eval_full(kid, m, recent, src, &k);
			if (err != IMAPQ_OK)
				return err;
			if (k != is_and) {
				*r = k;
				return IMAPQ_OK;
			}
		}
		*r = is_and;
		return IMAPQ_OK;
	}
	case SEARCH_OP_NOT:
		err = eval_full(n->u.list.kids[0], m, recent, src, r);
		if (err == IMAPQ_OK) /* a failed read leaves the kid's answer unset */
			*r = !*r;
		return err;
	default:
		*r = false;
		return IMAPQ_OK;
	}
}

imapq_err search_match(const struct search_program *prog, const struct store_message *m,
		       bool recent, const struct search_source *src, bool *match_r)
{
	*match_r = false;
	return eval_full(prog->root, m, recent, src, match_r);
}
