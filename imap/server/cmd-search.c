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
#include "imap/base/log.h"
#include "imap/base/worker.h"
#include "imap/protocol/quote.h"
#include "imap/protocol/seqset.h"
#include "imap/server/search-scan.h"
#include "imap/server/search.h"
#include "imap/server/server-private.h"

/* The matches found so far, ascending by UID. */
struct hits {
	struct search_hit *v;
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
		struct search_hit *v = realloc(h->v, cap * sizeof *v);
		if (v == NULL) {
			h->nomem = true;
			return;
		}
		h->v = v;
		h->cap = cap;
	}
	h->v[h->n++] = (struct search_hit){uid, modseq};
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
			h->v[n++] = (struct search_hit){msn, h->v[i].modseq};
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

/* Answers with the hits (UIDs, turned into sequence numbers for SEARCH) and the tagged OK. */
static void search_reply(struct cmd *c, struct hits *h, bool esearch, unsigned ret, bool modseq)
{
	struct session *s = c->s;
	hits_number(s, c->uid, h);
	struct out o = {.s = s};
	imapq_err err = IMAPQ_OK;
	if (esearch)
		err = reply_esearch(&o, c, ret, h, modseq);
	else
		reply_search(&o, h, modseq);
	out_flush(&o);
	if (err != IMAPQ_OK) {
		cmd_fail(c, err, NULL);
		return;
	}
	char text[32];
	snprintf(text, sizeof text, "%s completed", c->uid ? "UID SEARCH" : "SEARCH");
	cmd_ok(c, NULL, text);
}

/* A scanning search and how to answer it. */
struct search_job {
	struct session *s;
	struct search_scan *scan;
	bool uid, esearch, modseq;
	unsigned ret;
	char tag[]; /* the command's tag, which the parser does not keep */
};

static void job_run(void *data, const struct worker_job *wj)
{
	struct search_job *j = data;
	search_scan_run(j->scan, wj);
}

static void job_free(void *data)
{
	struct search_job *j = data;
	search_scan_free(&j->scan);
	free(j);
}

/* Answers a scan that ran. */
static void job_reply(struct cmd *c, struct search_job *j)
{
	struct session *s = c->s;
	struct hits h = {0};
	imapq_err err = search_scan_hits(j->scan, &h.v, &h.n);
	if (err == IMAPQ_OK) {
		search_reply(c, &h, j->esearch, j->ret, j->modseq);
	} else if (err == IMAPQ_E_LIMIT) {
		log_info(SERVER_LOG, "%s %s: SEARCH stopped after %llu ms, %zu messages read",
			 s->peer, j->tag, (unsigned long long)search_scan_elapsed_ms(j->scan),
			 search_scan_read_count(j->scan));
		char text[128];
		snprintf(text, sizeof text, "SEARCH ran for over %u s; narrow the search",
			 (s->server->opts.search_ms + 999) / 1000);
		cmd_no(c, "LIMIT", text);
	} else {
		cmd_fail(c, err, NULL);
	}
}

/* On the loop, once the search thread is done: answers, then reads the commands the client
 * sent after the search. */
static void job_done(void *data)
{
	struct search_job *j = data;
	struct session *s = j->s;
	struct cmd c = {
	    .s = s, .tag = j->tag, .name = j->uid ? "UID SEARCH" : "SEARCH", .uid = j->uid};
	s->last_active_ms = loop_now_ms(s->server->opts.loop);
	/* The mailbox may have gone while the thread ran. */
	view_sync(s, false);
	if (s->state & STATE_SELECTED)
		job_reply(&c, j);
	else
		cmd_no(&c, NULL, "The selected mailbox is gone");
	session_seal(s);
	session_resume(s);
}

/* The most messages a scan of prog can visit: those of the plan's ranges, or the mailbox's. */
static uint64_t scan_bound(const struct session *s, const struct search_program *prog)
{
	struct search_plan plan;
	search_program_plan(prog, &plan);
	uint64_t span = 0;
	for (size_t i = 0; plan.has_ranges && i < plan.nranges; i++)
		span += (uint64_t)plan.ranges[i].hi - plan.ranges[i].lo + 1;
	return plan.has_ranges && span < s->view.exists ? span : s->view.exists;
}

/* Runs a scanning search: on the loop when it is small and reads no content, else on the search
 * thread, the session reading no input until the answer (job_done), so commands pipelined after
 * the search run after it, in order. Takes prog. */
static void search_scan_start(struct cmd *c, struct search_program *prog, bool esearch,
			      unsigned ret, bool modseq)
{
	struct session *s = c->s;
	bool inline_run =
	    !search_program_needs_content(prog) && scan_bound(s, prog) <= IMAPQ_SEARCH_SCAN_STEP;
	const struct view *v = &s->view;
	struct search_scan_view sv = {.mailbox = v->id,
				      .uid_max = v->uid_max,
				      .pending = v->pending,
				      .npending = v->npending,
				      .recent_lo = v->recent_lo,
				      .recent_hi = v->recent_hi};
	struct search_scan *scan;
	imapq_err err = search_scan_create(s->server->opts.store, prog, &sv,
					   inline_run ? 0 : s->server->opts.search_ms, &scan);
	size_t tlen = strlen(c->tag);
	struct search_job *j = err == IMAPQ_OK ? malloc(sizeof *j + tlen + 1) : NULL;
	if (err == IMAPQ_OK && j == NULL) {
		search_scan_free(&scan);
		err = IMAPQ_E_NOMEM;
	}
	if (err != IMAPQ_OK) {
		cmd_fail(c, err, NULL);
		return;
	}
	*j = (struct search_job){
	    .s = s, .scan = scan, .uid = c->uid, .esearch = esearch, .modseq = modseq, .ret = ret};
	memcpy(j->tag, c->tag, tlen + 1);
	if (inline_run) {
		search_scan_run(j->scan, NULL);
		job_reply(c, j);
		job_free(j);
		return;
	}
	err = worker_submit(s->server->search, job_run, job_done, job_free, j, &s->search_job);
	if (err == IMAPQ_OK) {
		c->replied = true;
		return;
	}
	job_free(j);
	if (err == IMAPQ_E_LIMIT) {
		log_warn(SERVER_LOG, "%s: SEARCH refused: %u searches in progress", s->peer,
			 worker_pending(s->server->search));
		cmd_no(c, "UNAVAILABLE", "Too many searches in progress, try again");
		return;
	}
	cmd_fail(c, err, NULL);
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
	if (!plan.none && !plan.indexed) {
		search_scan_start(c, prog, esearch, ret, modseq);
		return;
	}
	struct hits h = {0};
	if (plan.indexed && !plan.none)
		err = run_indexed(s, &plan, esearch ? ret : 0, &h);
	search_program_free(&prog);
	if (err == IMAPQ_OK && h.nomem)
		err = IMAPQ_E_NOMEM;
	if (err == IMAPQ_OK)
		search_reply(c, &h, esearch, ret, modseq);
	else
		cmd_fail(c, err, NULL);
	free(h.v);
}
