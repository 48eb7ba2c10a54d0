/* SEARCH and UID SEARCH (RFC 3501 6.4.4) with RETURN (RFC 4731 ESEARCH) and MODSEQ (RFC 7162
 * 3.1.5). A search made only of flag tests (and UID or sequence ranges) is answered from the
 * store's flag index, so a worker's "UID SEARCH RETURN (MIN) UNKEYWORD $Claimed UNKEYWORD $Delayed
 * UNDELETED" costs the same at any mailbox size; other searches scan the messages, deciding what
 * metadata can under the store's lock and reading content only for the undecided rest. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap/base/limits.h"
#include "imap/mail/mail.h"
#include "imap/protocol/quote.h"
#include "imap/protocol/seqset.h"
#include "imap/server/search.h"
#include "imap/server/server-private.h"

/* One matching message. */
struct hit {
	uint32_t uid;
	uint64_t modseq;
};

/* The matches found so far, ascending by UID. */
struct hits {
	struct hit *v;
	size_t n, cap;
	bool nomem;
	bool counted;	/* count came from the index; v holds only the first match */
	uint32_t count; /* valid when counted */
};

/* Appends a match; runs under the store's lock in scans, so it only records failure. */
static void hits_push(struct hits *h, uint32_t uid, uint64_t modseq)
{
	if (h->nomem)
		return;
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 64;
		struct hit *v = realloc(h->v, cap * sizeof *v);
		if (v == NULL) {
			h->nomem = true;
			return;
		}
		h->v = v;
		h->cap = cap;
	}
	h->v[h->n++] = (struct hit){uid, modseq};
}

/* --- Resolving names against the session's view --- */

static imapq_err resolve_keyword(void *ctx, const char *name, unsigned *index_r)
{
	struct session *s = ctx;
	uint64_t lsn;
	return store_keyword(s->server->opts.store, s->view.id, name, false, index_r, &lsn);
}

/* Appends [lo, hi] to a range array, merging with the last range when they touch. */
static bool range_push(struct uid_range **v, size_t *n, size_t *cap, uint32_t lo, uint32_t hi)
{
	if (*n > 0 && (uint64_t)(*v)[*n - 1].hi + 1 >= lo) {
		if (hi > (*v)[*n - 1].hi)
			(*v)[*n - 1].hi = hi;
		return true;
	}
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 8;
		struct uid_range *p = realloc(*v, ncap * sizeof *p);
		if (p == NULL)
			return false;
		*v = p;
		*cap = ncap;
	}
	(*v)[(*n)++] = (struct uid_range){lo, hi};
	return true;
}

/* A sequence set (or UID set) as UID ranges. Numbers past the last message are ignored rather
 * than refused: a search over "1:100" in a mailbox of 5 looks at those 5. */
static imapq_err resolve_set(void *ctx, const char *text, size_t len, bool uid,
			     struct uid_range **ranges_r, size_t *n_r)
{
	struct session *s = ctx;
	uint32_t max = uid ? s->view.uid_max : s->view.exists;
	struct seqset *set;
	*ranges_r = NULL;
	*n_r = 0;
	imapq_err err = seqset_parse(text, len, max, 0, &set);
	if (err != IMAPQ_OK)
		return err;
	const struct seqset_range *r = seqset_ranges(set);
	size_t nr = seqset_range_count(set);
	struct uid_range *out = NULL;
	size_t n = 0, cap = 0;
	for (size_t i = 0; i < nr && r[i].lo <= max; i++) {
		uint32_t hi = r[i].hi < max ? r[i].hi : max;
		uint32_t lo_uid = uid ? r[i].lo : view_uid(s, r[i].lo);
		uint32_t hi_uid = uid ? hi : view_uid(s, hi);
		if (lo_uid == 0 || hi_uid == 0)
			continue;
		if (!range_push(&out, &n, &cap, lo_uid, hi_uid)) {
			free(out);
			seqset_destroy(&set);
			return IMAPQ_E_NOMEM;
		}
	}
	seqset_destroy(&set);
	*ranges_r = out;
	*n_r = n;
	return IMAPQ_OK;
}

/* --- Reading a message's content for the keys that need it --- */

struct content {
	struct store *store;
	uint32_t id;
	uint32_t uid;
	uint64_t size;
	struct mail *mail; /* parsed on first use */
};

static imapq_err content_read(void *ctx, uint64_t offset, void *buf, size_t len, size_t *got_r)
{
	struct content *c = ctx;
	return store_body_read(c->store, c->id, c->uid, offset, buf, len, got_r);
}

/* The reader of the message. */
static struct mail_reader content_reader(struct content *c)
{
	return (struct mail_reader){.read = content_read, .ctx = c, .size = c->size};
}

/* Parses the message once. */
static imapq_err content_mail(struct content *c)
{
	if (c->mail != NULL)
		return IMAPQ_OK;
	struct mail_reader r = content_reader(c);
	return mail_parse(&r, &c->mail);
}

static imapq_err content_header(void *ctx, const char *field, const char *needle, size_t needle_len,
				bool *match_r)
{
	struct content *c = ctx;
	imapq_err err = content_mail(c);
	if (err != IMAPQ_OK)
		return err;
	struct mail_reader r = content_reader(c);
	return mail_header_contains(c->mail, &r, field, needle, needle_len, match_r);
}

static imapq_err content_text(void *ctx, const char *needle, size_t needle_len, bool headers_too,
			      bool *match_r)
{
	struct content *c = ctx;
	imapq_err err = content_mail(c);
	if (err != IMAPQ_OK)
		return err;
	struct mail_reader r = content_reader(c);
	return mail_text_contains(c->mail, &r, needle, needle_len, headers_too, match_r);
}

static imapq_err content_sent_day(void *ctx, int64_t *day_r)
{
	struct content *c = ctx;
	imapq_err err = content_mail(c);
	if (err != IMAPQ_OK)
		return err;
	err = mail_sent_day(c->mail, day_r);
	return err == IMAPQ_E_INVALID ? IMAPQ_E_NOTFOUND : err;
}

/* --- Answering from the flag index --- */

/* Walks the messages that satisfy an indexed plan, in UID order, without visiting the rest. */
struct walk {
	struct store *store;
	uint32_t id;
	const struct search_plan *plan;
	uint32_t uid_max;
	size_t range; /* the range being walked when the plan has ranges */
};

/* The lowest matching UID >= from within the plan's ranges and the view, or 0 in *uid_r. */
static imapq_err walk_next(struct walk *w, uint32_t from, uint32_t *uid_r)
{
	const struct search_plan *p = w->plan;
	*uid_r = 0;
	while (from != 0 && from <= w->uid_max) {
		if (p->has_ranges) {
			while (w->range < p->nranges && p->ranges[w->range].hi < from)
				w->range++;
			if (w->range == p->nranges)
				return IMAPQ_OK;
			if (from < p->ranges[w->range].lo)
				from = p->ranges[w->range].lo;
		}
		uint32_t uid;
		imapq_err err = store_first_match(w->store, w->id, p->mask, p->want, from, &uid);
		if (err != IMAPQ_OK || uid == 0 || uid > w->uid_max)
			return err;
		if (!p->has_ranges || uid <= p->ranges[w->range].hi) {
			*uid_r = uid;
			return IMAPQ_OK;
		}
		from = uid; /* past this range: the next range decides */
	}
	return IMAPQ_OK;
}

/* Collects every match from the index (or, with only_first, the first one). */
static imapq_err walk_all(struct walk *w, bool only_first, struct hits *h)
{
	uint32_t uid = 0;
	for (uint32_t from = 1;; from = uid + 1) {
		imapq_err err = walk_next(w, from, &uid);
		if (err != IMAPQ_OK)
			return err;
		if (uid == 0)
			return IMAPQ_OK;
		hits_push(h, uid, 0);
		if (h->nomem)
			return IMAPQ_E_NOMEM;
		if (only_first || uid == UINT32_MAX)
			return IMAPQ_OK;
	}
}

/* Answers an indexed plan. MIN and COUNT alone cost O(log n) (plus the messages that arrived
 * after the view's last UID); anything that needs every match walks only the matches. */
static imapq_err run_indexed(struct session *s, const struct search_plan *plan, unsigned ret,
			     struct hits *h)
{
	struct walk w = {s->server->opts.store, s->view.id, plan, s->view.uid_max, 0};
	bool first_only = ret != 0 && !(ret & (SEARCH_RETURN_MAX | SEARCH_RETURN_ALL));
	if (!first_only)
		return walk_all(&w, false, h);
	imapq_err err = IMAPQ_OK;
	if (ret & SEARCH_RETURN_MIN)
		err = walk_all(&w, true, h);
	if (err != IMAPQ_OK || !(ret & SEARCH_RETURN_COUNT))
		return err;
	if (plan->has_ranges) {
		/* The index counts whole mailboxes: a range needs its matches walked. */
		struct hits all = {0};
		w.range = 0;
		err = walk_all(&w, false, &all);
		h->count = (uint32_t)all.n;
		free(all.v);
	} else {
		uint32_t total;
		err = store_count_match(w.store, w.id, plan->mask, plan->want, &total);
		/* Messages past the view's last UID are not the client's yet. */
		uint32_t uid = s->view.uid_max;
		while (err == IMAPQ_OK && uid < UINT32_MAX) {
			err =
			    store_first_match(w.store, w.id, plan->mask, plan->want, uid + 1, &uid);
			if (uid == 0)
				break;
			if (total > 0) /* a message may arrive between the two calls */
				total--;
		}
		h->count = total;
	}
	h->counted = true;
	return err;
}

/* --- Scanning --- */

/* What the scan callback needs; it runs under the store's lock and only collects. */
struct scan {
	struct session *s;
	const struct search_program *prog;
	const struct search_plan *plan;
	struct hits *yes;
	struct store_message *maybe; /* undecided by metadata: content decides */
	size_t nmaybe, capmaybe;
	bool nomem;
};

/* True when uid lies in the plan's ranges (or the plan has none). */
static bool plan_covers(const struct search_plan *p, uint32_t uid)
{
	if (!p->has_ranges)
		return true;
	size_t lo = 0, hi = p->nranges;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (p->ranges[mid].hi < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < p->nranges && p->ranges[lo].lo <= uid;
}

static void scan_message(void *ctx, const struct store_message *m)
{
	struct scan *sc = ctx;
	if (sc->nomem || m->uid > sc->s->view.uid_max || !plan_covers(sc->plan, m->uid) ||
	    view_is_pending(sc->s, m->uid))
		return;
	enum search_answer a = search_match_meta(sc->prog, m, view_is_recent(sc->s, m->uid));
	if (a == SEARCH_YES) {
		hits_push(sc->yes, m->uid, m->modseq);
		sc->nomem = sc->yes->nomem;
	} else if (a == SEARCH_MAYBE) {
		if (sc->nmaybe == sc->capmaybe) {
			size_t cap = sc->capmaybe ? sc->capmaybe * 2 : 64;
			struct store_message *p = realloc(sc->maybe, cap * sizeof *p);
			if (p == NULL) {
				sc->nomem = true;
				return;
			}
			sc->maybe = p;
			sc->capmaybe = cap;
		}
		sc->maybe[sc->nmaybe++] = *m;
	}
}

/* Decides one undecided message by reading its content. A message expunged meanwhile does not
 * match. */
static imapq_err decide(struct session *s, const struct search_program *prog,
			const struct store_message *m, bool *match_r)
{
	struct content c = {s->server->opts.store, s->view.id, m->uid, m->size, NULL};
	struct search_source src = {content_header, content_text, content_sent_day, &c};
	imapq_err err = search_match(prog, m, view_is_recent(s, m->uid), &src, match_r);
	mail_free(&c.mail);
	if (err == IMAPQ_E_NOTFOUND) {
		*match_r = false;
		err = IMAPQ_OK;
	}
	return err;
}

/* Scans the messages of one UID range in steps of IMAPQ_SEARCH_SCAN_STEP UIDs, each starting
 * at the next message that exists, so the store's lock is held briefly however big the range. */
static imapq_err scan_range(struct session *s, struct uid_range range, struct scan *sc)
{
	struct store *store = s->server->opts.store;
	uint32_t last = range.hi < s->view.uid_max ? range.hi : s->view.uid_max;
	uint32_t from = range.lo;
	while (from != 0 && from <= last && !sc->nomem) {
		uint32_t first;
		imapq_err err = store_first_match(store, s->view.id, 0, 0, from, &first);
		if (err != IMAPQ_OK || first == 0 || first > last)
			return err;
		uint64_t end = (uint64_t)first + IMAPQ_SEARCH_SCAN_STEP - 1;
		struct uid_range step = {first, end < last ? (uint32_t)end : last};
		err = store_messages(store, s->view.id, &step, 1, scan_message, sc);
		if (err != IMAPQ_OK || step.hi == UINT32_MAX)
			return err;
		from = step.hi + 1;
	}
	return IMAPQ_OK;
}

/* Scans the candidates: the messages changed since a MODSEQ bound when there is one (the store
 * finds those without visiting the rest), else the plan's ranges or the whole mailbox. */
static imapq_err run_scan(struct session *s, const struct search_program *prog,
			  const struct search_plan *plan, struct hits *h)
{
	struct store *store = s->server->opts.store;
	struct scan sc = {.s = s, .prog = prog, .plan = plan, .yes = h};
	imapq_err err = IMAPQ_OK;
	if (plan->modseq_min > 0) {
		err =
		    store_changed_since(store, s->view.id, plan->modseq_min - 1, scan_message, &sc);
	} else if (plan->has_ranges) {
		for (size_t r = 0; err == IMAPQ_OK && !sc.nomem && r < plan->nranges; r++)
			err = scan_range(s, plan->ranges[r], &sc);
	} else {
		err = scan_range(s, (struct uid_range){1, s->view.uid_max}, &sc);
	}
	if (err == IMAPQ_OK && sc.nomem)
		err = IMAPQ_E_NOMEM;
	if (err != IMAPQ_OK || sc.nmaybe == 0) {
		free(sc.maybe);
		return err;
	}
	/* Merge the content-decided matches into the metadata-decided ones, keeping UID order. */
	struct hits merged = {0};
	size_t i = 0;
	for (size_t k = 0; err == IMAPQ_OK && k < sc.nmaybe; k++) {
		const struct store_message *m = &sc.maybe[k];
		bool match;
		err = decide(s, prog, m, &match);
		for (; i < h->n && h->v[i].uid < m->uid; i++)
			hits_push(&merged, h->v[i].uid, h->v[i].modseq);
		if (err == IMAPQ_OK && match)
			hits_push(&merged, m->uid, m->modseq);
	}
	for (; i < h->n; i++)
		hits_push(&merged, h->v[i].uid, h->v[i].modseq);
	free(sc.maybe);
	if (err == IMAPQ_OK && merged.nomem)
		err = IMAPQ_E_NOMEM;
	free(h->v);
	*h = merged;
	return err;
}

/* --- Replies --- */

/* Output collected in a stack buffer and handed to the session in large pieces. */
struct out {
	struct session *s;
	char buf[4096];
	size_t len;
};

static void out_flush(struct out *o)
{
	session_write(o->s, o->buf, o->len);
	o->len = 0;
}

static void out_printf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void out_printf(struct out *o, const char *fmt, ...)
{
	if (o->len > sizeof o->buf - 64)
		out_flush(o);
	va_list ap;
	va_start(ap, fmt);
	int k = vsnprintf(o->buf + o->len, sizeof o->buf - o->len, fmt, ap);
	va_end(ap);
	if (k > 0 && (size_t)k < sizeof o->buf - o->len) {
		o->len += (size_t)k;
		return;
	}
	/* Longer than the room left: write it directly. */
	out_flush(o);
	char *big = NULL;
	va_start(ap, fmt);
	k = vasprintf(&big, fmt, ap);
	va_end(ap);
	if (k > 0)
		session_write(o->s, big, (size_t)k);
	free(big);
}

/* Turns UIDs into the numbers the client asked for (message sequence numbers for SEARCH),
 * dropping a message that left the view meanwhile. */
static void hits_number(struct session *s, bool uid, struct hits *h)
{
	if (uid)
		return;
	size_t n = 0;
	for (size_t i = 0; i < h->n; i++) {
		uint32_t msn = view_msn(s, h->v[i].uid);
		if (msn != 0)
			h->v[n++] = (struct hit){msn, h->v[i].modseq};
	}
	h->n = n;
}

/* The highest mod-sequence among the hits. */
static uint64_t hits_max_modseq(const struct hits *h)
{
	uint64_t max = 0;
	for (size_t i = 0; i < h->n; i++) {
		if (h->v[i].modseq > max)
			max = h->v[i].modseq;
	}
	return max;
}

/* Writes the numbers of h as a compact set ("1:3,5"). */
static imapq_err write_set(struct out *o, const struct hits *h)
{
	struct seqset *set;
	if (seqset_create(&set) != IMAPQ_OK)
		return IMAPQ_E_NOMEM;
	imapq_err err = IMAPQ_OK;
	for (size_t i = 0; err == IMAPQ_OK && i < h->n;) {
		size_t j = i;
		while (j + 1 < h->n && h->v[j + 1].uid == h->v[j].uid + 1)
			j++;
		err = seqset_add(set, h->v[i].uid, h->v[j].uid);
		i = j + 1;
	}
	size_t len = seqset_format(set, NULL, 0);
	char *text = err == IMAPQ_OK ? malloc(len + 1) : NULL;
	if (text != NULL) {
		seqset_format(set, text, len + 1);
		out_flush(o);
		session_write(o->s, text, len);
		free(text);
	} else {
		err = IMAPQ_E_NOMEM;
	}
	seqset_destroy(&set);
	return err;
}

/* Writes "* SEARCH n n ..." with RFC 7162's "(MODSEQ m)" when asked for. */
static void reply_search(struct out *o, const struct hits *h, bool modseq)
{
	out_printf(o, "* SEARCH");
	for (size_t i = 0; i < h->n; i++)
		out_printf(o, " %u", h->v[i].uid);
	if (modseq && h->n > 0)
		out_printf(o, " (MODSEQ %llu)", (unsigned long long)hits_max_modseq(h));
	out_printf(o, "\r\n");
}

/* Writes the ESEARCH response of RFC 4731 (MIN, MAX and ALL only when something matched). */
static imapq_err reply_esearch(struct out *o, struct cmd *c, unsigned ret, const struct hits *h,
			       bool modseq)
{
	char tag[256];
	size_t tlen = strlen(c->tag);
	if (quote_string(tag, sizeof tag, c->tag, tlen) >= sizeof tag)
		snprintf(tag, sizeof tag, "\"\"");
	out_printf(o, "* ESEARCH (TAG %s)%s", tag, c->uid ? " UID" : "");
	if (h->n > 0 && (ret & SEARCH_RETURN_MIN))
		out_printf(o, " MIN %u", h->v[0].uid);
	if (h->n > 0 && (ret & SEARCH_RETURN_MAX))
		out_printf(o, " MAX %u", h->v[h->n - 1].uid);
	if (ret & SEARCH_RETURN_COUNT)
		out_printf(o, " COUNT %u", h->counted ? h->count : (uint32_t)h->n);
	if (h->n > 0 && (ret & SEARCH_RETURN_ALL)) {
		out_printf(o, " ALL ");
		imapq_err err = write_set(o, h);
		if (err != IMAPQ_OK)
			return err;
	}
	if (modseq && h->n > 0) {
		/* RFC 4731 3.2: over every match for ALL or COUNT, else over those returned. */
		uint64_t m = 0;
		if (ret & (SEARCH_RETURN_ALL | SEARCH_RETURN_COUNT)) {
			m = hits_max_modseq(h);
		} else {
			if (ret & SEARCH_RETURN_MIN)
				m = h->v[0].modseq;
			if ((ret & SEARCH_RETURN_MAX) && h->v[h->n - 1].modseq > m)
				m = h->v[h->n - 1].modseq;
		}
		out_printf(o, " MODSEQ %llu", (unsigned long long)m);
	}
	out_printf(o, "\r\n");
	return IMAPQ_OK;
}

/* --- The command --- */

/* Reads RETURN (...) and CHARSET x in front of the keys; replies and returns false on error. */
static bool parse_prefix(struct cmd *c, size_t *i_r, bool *esearch_r, unsigned *ret_r)
{
	size_t i = 0;
	*esearch_r = false;
	*ret_r = 0;
	if (i < c->count && parser_arg_is_atom(&c->args[i], "RETURN")) {
		const char *error;
		if (i + 1 >= c->count ||
		    search_parse_return(&c->args[i + 1], ret_r, &error) != IMAPQ_OK) {
			cmd_bad(c, i + 1 >= c->count ? "Missing RETURN options" : error);
			return false;
		}
		*esearch_r = true;
		i += 2;
	}
	if (i < c->count && parser_arg_is_atom(&c->args[i], "CHARSET")) {
		const char *name;
		size_t len;
		if (i + 1 >= c->count || !parser_arg_astring(&c->args[i + 1], &name, &len)) {
			cmd_bad(c, "Missing charset name");
			return false;
		}
		if (!search_charset_supported(name, len)) {
			cmd_no(c, "BADCHARSET (US-ASCII UTF-8)", "Unsupported charset");
			return false;
		}
		i += 2;
	}
	*i_r = i;
	return true;
}

void cmd_search(struct cmd *c)
{
	struct session *s = c->s;
	size_t i;
	bool esearch;
	unsigned ret;
	if (!parse_prefix(c, &i, &esearch, &ret))
		return;
	struct search_resolver resolver = {resolve_keyword, resolve_set, s};
	struct search_program *prog;
	const char *error;
	imapq_err err = search_parse(c->args + i, c->count - i, &resolver, &prog, &error);
	if (err != IMAPQ_OK) {
		if (err == IMAPQ_E_INVALID && error != NULL)
			cmd_bad(c, error);
		else
			cmd_fail(c, err, NULL);
		return;
	}
	bool modseq = search_program_has_modseq(prog);
	if (modseq)
		session_enable_condstore(s);

	/* Learn of new messages and expunges first: the answer then covers every message the
	 * store holds, and sequence numbers account for expunges not yet announced. */
	view_sync(s, false);
	if (!(s->state & STATE_SELECTED)) {
		search_program_free(&prog);
		cmd_no(c, NULL, "The selected mailbox is gone");
		return;
	}

	struct search_plan plan;
	search_program_plan(prog, &plan);
	struct hits h = {0};
	if (plan.none)
		err = IMAPQ_OK;
	else if (plan.indexed)
		err = run_indexed(s, &plan, esearch ? ret : 0, &h);
	else
		err = run_scan(s, prog, &plan, &h);
	search_program_free(&prog);
	if (err == IMAPQ_OK && h.nomem)
		err = IMAPQ_E_NOMEM;
	if (err != IMAPQ_OK) {
		free(h.v);
		cmd_fail(c, err, NULL);
		return;
	}

	hits_number(s, c->uid, &h);
	struct out o = {.s = s};
	if (esearch)
		err = reply_esearch(&o, c, ret, &h, modseq);
	else
		reply_search(&o, &h, modseq);
	out_flush(&o);
	free(h.v);
	if (err != IMAPQ_OK) {
		cmd_fail(c, err, NULL);
		return;
	}
	char text[32];
	snprintf(text, sizeof text, "%s completed", c->uid ? "UID SEARCH" : "SEARCH");
	cmd_ok(c, NULL, text);
}
