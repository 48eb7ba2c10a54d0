/* Scanning searches. Each step holds the store's lock for at most IMAPQ_SEARCH_SCAN_STEP messages
 * while metadata decides what it can; the step's undecided messages then have their content
 * read with the lock free, so memory and lock hold stay bounded by one step however large the
 * mailbox. Every content read and every step checks the time limit and cancellation, so neither
 * a huge message nor a huge mailbox keeps the run going past them. */
#include "imap/server/search-scan.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "imap/base/limits.h"
#include "imap/base/vec.h"
#include "imap/mail/mail.h"

/* A message a step did not rule out: matched on metadata, or waiting for its content. */
struct step_entry {
	struct store_message m;
	bool recent;
	bool decided; /* matched on metadata alone */
};

struct search_scan {
	struct store *store;
	struct search_program *prog;
	struct search_plan plan;
	uint32_t mailbox, uid_max, recent_lo, recent_hi;
	uint32_t *pending;
	size_t npending;
	uint64_t limit_ms;
	/* Set by the run. */
	const struct worker_job *job;
	uint64_t started_ms, deadline_ms, elapsed_ms;
	size_t read_count;
	imapq_err err;
	struct search_hit *hits;
	size_t nhits, caphits;
	struct step_entry *step;
	size_t nstep, capstep;
	bool nomem; /* set under the store's lock, where nothing can be reported */
};

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* IMAPQ_E_LIMIT once the run is past its limit or its job was cancelled, else IMAPQ_OK. */
static imapq_err scan_check(const struct search_scan *sc)
{
	if (sc->job != NULL && worker_job_cancelled(sc->job))
		return IMAPQ_E_LIMIT;
	if (sc->limit_ms != 0 && now_ms() >= sc->deadline_ms)
		return IMAPQ_E_LIMIT;
	return IMAPQ_OK;
}

/* --- Reading a message's content for the keys that need it --- */

struct content {
	const struct search_scan *scan;
	uint32_t uid;
	uint64_t size;
	struct mail *mail; /* parsed on first use */
};

static imapq_err content_read(void *ctx, uint64_t offset, void *buf, size_t len, size_t *got_r)
{
	struct content *c = ctx;
	/* Each key may read the whole body again: a big message must not outrun the limit. */
	imapq_err err = scan_check(c->scan);
	if (err != IMAPQ_OK)
		return err;
	return store_body_read(c->scan->store, c->scan->mailbox, c->uid, offset, buf, len, got_r);
}

/* Parses the message on first use and gives its reader. */
static imapq_err content_mail(struct content *c, struct mail_reader *r)
{
	*r = (struct mail_reader){.read = content_read, .ctx = c, .size = c->size};
	return c->mail != NULL ? IMAPQ_OK : mail_parse(r, &c->mail);
}

static imapq_err content_header(void *ctx, const char *field, const char *needle, size_t needle_len,
				bool *match_r)
{
	struct content *c = ctx;
	struct mail_reader r;
	imapq_err err = content_mail(c, &r);
	return err != IMAPQ_OK
		   ? err
		   : mail_header_contains(c->mail, &r, field, needle, needle_len, match_r);
}

static imapq_err content_text(void *ctx, const char *needle, size_t needle_len, bool headers_too,
			      bool *match_r)
{
	struct content *c = ctx;
	struct mail_reader r;
	imapq_err err = content_mail(c, &r);
	return err != IMAPQ_OK
		   ? err
		   : mail_text_contains(c->mail, &r, needle, needle_len, headers_too, match_r);
}

static imapq_err content_sent_day(void *ctx, int64_t *day_r)
{
	struct content *c = ctx;
	struct mail_reader r;
	imapq_err err = content_mail(c, &r);
	if (err != IMAPQ_OK)
		return err;
	err = mail_sent_day(c->mail, day_r);
	return err == IMAPQ_E_INVALID ? IMAPQ_E_NOTFOUND : err;
}

/* Decides one undecided message by reading its content. A message expunged meanwhile, or whose
 * mailbox was deleted meanwhile, does not match. */
static imapq_err decide(struct search_scan *sc, const struct step_entry *e, bool *match_r)
{
	struct content c = {sc, e->m.uid, e->m.size, NULL};
	struct search_source src = {content_header, content_text, content_sent_day, &c};
	sc->read_count++;
	imapq_err err = search_match(sc->prog, &e->m, e->recent, &src, match_r);
	mail_free(&c.mail);
	if (err == IMAPQ_E_NOTFOUND || err == IMAPQ_E_NONEXISTENT) {
		*match_r = false;
		err = IMAPQ_OK;
	}
	return err;
}

/* --- Steps --- */

static void hits_push(struct search_scan *sc, uint32_t uid, uint64_t modseq)
{
	struct search_hit hit = {uid, modseq};
	if (!vec_push((void **)&sc->hits, &sc->nhits, &sc->caphits, sizeof hit, &hit))
		sc->nomem = true;
}

/* True when uid is expunged but not yet announced to the session. */
static bool is_pending(const struct search_scan *sc, uint32_t uid)
{
	size_t lo = 0, hi = sc->npending;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (sc->pending[mid] < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < sc->npending && sc->pending[lo] == uid;
}

/* Under the store's lock: keeps the messages metadata does not rule out, in UID order. */
static void step_collect(void *ctx, const struct store_message *m)
{
	struct search_scan *sc = ctx;
	/* The program's own UID tests rule out what lies outside the plan's ranges. */
	if (sc->nomem || m->uid > sc->uid_max || is_pending(sc, m->uid))
		return;
	bool recent = sc->recent_lo != 0 && m->uid >= sc->recent_lo && m->uid <= sc->recent_hi;
	enum search_answer a = search_match_meta(sc->prog, m, recent);
	struct step_entry e = {*m, recent, a == SEARCH_YES};
	if (a != SEARCH_NO && !vec_push((void **)&sc->step, &sc->nstep, &sc->capstep, sizeof e, &e))
		sc->nomem = true;
}

/* With the lock free: decides the step's undecided messages and keeps its matches. */
static imapq_err step_finish(struct search_scan *sc)
{
	imapq_err err = sc->nomem ? IMAPQ_E_NOMEM : IMAPQ_OK;
	for (size_t k = 0; k < sc->nstep && err == IMAPQ_OK; k++) {
		const struct step_entry *e = &sc->step[k];
		bool match = e->decided;
		if (!match) {
			err = decide(sc, e, &match);
			if (err == IMAPQ_OK)
				err = scan_check(sc);
		}
		if (err == IMAPQ_OK && match)
			hits_push(sc, e->m.uid, e->m.modseq);
		if (sc->nomem)
			err = IMAPQ_E_NOMEM;
	}
	sc->nstep = 0;
	return err;
}

/* The messages changed since a MODSEQ bound when there is one (the store skips unchanged ones
 * without visiting them), else those in the plan's ranges or the whole mailbox, a page of
 * IMAPQ_SEARCH_SCAN_STEP messages at a time. */
static imapq_err scan_all(struct search_scan *sc)
{
	const struct uid_range *ranges = sc->plan.has_ranges ? sc->plan.ranges : NULL;
	size_t n = sc->plan.has_ranges ? sc->plan.nranges : 0;
	for (uint32_t from = 1; from != 0 && from <= sc->uid_max;) {
		imapq_err err = scan_check(sc);
		if (err == IMAPQ_OK && sc->plan.modseq_min > 0)
			err = store_changed_since_page(
			    sc->store, sc->mailbox, sc->plan.modseq_min - 1, from,
			    IMAPQ_SEARCH_SCAN_STEP, step_collect, sc, &from);
		else if (err == IMAPQ_OK)
			err = store_messages_page(sc->store, sc->mailbox, ranges, n, from,
						  IMAPQ_SEARCH_SCAN_STEP, step_collect, sc, &from);
		if (err == IMAPQ_OK)
			err = step_finish(sc);
		if (err != IMAPQ_OK)
			return err;
	}
	return IMAPQ_OK;
}

void search_scan_run(struct search_scan *sc, const struct worker_job *job)
{
	sc->job = job;
	sc->started_ms = now_ms();
	sc->deadline_ms = sc->started_ms + sc->limit_ms;
	sc->err = scan_all(sc);
	sc->elapsed_ms = now_ms() - sc->started_ms;
	free(sc->step);
	sc->step = NULL;
	sc->capstep = 0;
}

imapq_err search_scan_create(struct store *store, struct search_program *prog,
			     const struct search_scan_view *view, uint64_t limit_ms,
			     struct search_scan **scan_r)
{
	struct search_scan *sc = calloc(1, sizeof *sc);
	uint32_t *pending = view->npending ? malloc(view->npending * sizeof *pending) : NULL;
	if (sc == NULL || (view->npending && pending == NULL)) {
		free(sc);
		free(pending);
		search_program_free(&prog);
		return IMAPQ_E_NOMEM;
	}
	if (view->npending)
		memcpy(pending, view->pending, view->npending * sizeof *pending);
	sc->store = store;
	sc->prog = prog;
	search_program_plan(prog, &sc->plan);
	sc->mailbox = view->mailbox;
	sc->uid_max = view->uid_max;
	sc->recent_lo = view->recent_lo;
	sc->recent_hi = view->recent_hi;
	sc->pending = pending;
	sc->npending = view->npending;
	sc->limit_ms = limit_ms;
	*scan_r = sc;
	return IMAPQ_OK;
}

imapq_err search_scan_hits(struct search_scan *sc, struct search_hit **hits_r, size_t *n_r)
{
	*hits_r = sc->hits;
	*n_r = sc->err == IMAPQ_OK ? sc->nhits : 0;
	return sc->err;
}

size_t search_scan_read_count(const struct search_scan *sc)
{
	return sc->read_count;
}

uint64_t search_scan_elapsed_ms(const struct search_scan *sc)
{
	return sc->elapsed_ms;
}

void search_scan_free(struct search_scan **scanp)
{
	struct search_scan *sc = *scanp;
	if (sc == NULL)
		return;
	*scanp = NULL;
	search_program_free(&sc->prog);
	free(sc->pending);
	free(sc->hits);
	free(sc->step);
	free(sc);
}
