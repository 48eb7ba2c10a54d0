/* The selected mailbox as one session sees it: message sequence numbers, announced and pending
 * expunges, and the untagged updates that bring the session up to date (RFC 3501 section 7,
 * RFC 7162 section 3.2.10). */
#include <stdlib.h>
#include <string.h>

#include "imap/base/limits.h"
#include "imap/base/log.h"
#include "imap/base/vec.h"
#include "imap/server/flags.h"
#include "imap/server/server-private.h"

/* Index of the first pending UID >= uid. */
static size_t pending_lower_bound(const struct view *v, uint32_t uid)
{
	size_t lo = 0, hi = v->npending;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (v->pending[mid] < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

bool view_is_pending(const struct session *s, uint32_t uid)
{
	const struct view *v = &s->view;
	size_t i = pending_lower_bound(v, uid);
	return i < v->npending && v->pending[i] == uid;
}

/* Live messages in the store with a UID at most uid. */
static uint32_t store_rank(struct session *s, uint32_t uid)
{
	uint32_t seq = 0;
	if (uid == 0 || store_seq_of_uid(s->server->opts.store, s->view.id, uid, &seq) != IMAPQ_OK)
		return 0;
	return seq;
}

uint32_t view_msn(struct session *s, uint32_t uid)
{
	const struct view *v = &s->view;
	/* An expunge made meanwhile by another thread must count before ranks are read. */
	if (!view_load_expunges(s))
		return 0;
	if (uid == 0 || uid > v->uid_max)
		return 0;
	size_t below = pending_lower_bound(v, uid);
	bool pending = below < v->npending && v->pending[below] == uid;
	if (!pending) {
		struct store_message m;
		if (store_message_get(s->server->opts.store, v->id, uid, &m) != IMAPQ_OK)
			return 0;
	}
	return store_rank(s, uid) + (uint32_t)below + (pending ? 1 : 0);
}

uint32_t view_uid(struct session *s, uint32_t msn)
{
	const struct view *v = &s->view;
	if (!view_load_expunges(s))
		return 0;
	if (msn == 0 || msn > v->exists)
		return 0;
	/* Walk the pending UIDs in order: each sits at position rank + index + 1 of the view. */
	size_t below = 0;
	for (; below < v->npending; below++) {
		uint32_t pos = store_rank(s, v->pending[below]) + (uint32_t)below + 1;
		if (pos == msn)
			return v->pending[below];
		if (pos > msn)
			break;
	}
	uint32_t uid = 0;
	if (store_uid_of_seq(s->server->opts.store, v->id, msn - (uint32_t)below, &uid) != IMAPQ_OK)
		return 0;
	return uid;
}

bool view_is_recent(const struct session *s, uint32_t uid)
{
	return uid >= s->view.recent_lo && uid <= s->view.recent_hi && s->view.recent_lo != 0;
}

void view_note_echo(struct session *s, uint32_t uid, uint64_t modseq)
{
	struct view *v = &s->view;
	if (v->nechoed == v->capechoed) {
		size_t cap = v->capechoed ? v->capechoed * 2 : 16;
		struct view_echo *e = realloc(v->echoed, cap * sizeof *e);
		if (e == NULL)
			return; /* an extra FETCH later is harmless */
		v->echoed = e;
		v->capechoed = cap;
	}
	v->echoed[v->nechoed++] = (struct view_echo){uid, modseq};
}

static int echo_cmp(const void *a, const void *b)
{
	const struct view_echo *x = a, *y = b;
	if (x->uid != y->uid)
		return x->uid < y->uid ? -1 : 1;
	return x->modseq < y->modseq ? -1 : x->modseq > y->modseq;
}

/* True when this command already reported uid at modseq; the echoes are sorted (echo_sort). */
static bool was_echoed(const struct view *v, uint32_t uid, uint64_t modseq)
{
	struct view_echo key = {uid, modseq};
	return v->nechoed > 0 && bsearch(&key, v->echoed, v->nechoed, sizeof key, echo_cmp) != NULL;
}

/* Sorts the echoes for was_echoed(): a STORE over a million messages notes a million. */
static void echo_sort(struct view *v)
{
	if (v->nechoed > 1)
		qsort(v->echoed, v->nechoed, sizeof *v->echoed, echo_cmp);
}

/* Writes the flag names of flags separated by spaces, without parentheses; false when none. */
static bool write_flag_items(struct session *s, uint64_t flags)
{
	bool first = true;
	for (unsigned bit = 0; bit < 64; bit++) {
		if (!(flags & (1ull << bit)))
			continue;
		char name[IMAPQ_MAX_KEYWORD + 1];
		const char *text = name;
		if (bit < STORE_KEYWORD_BASE)
			text = flag_system_name(bit);
		else if (store_keyword_name(s->server->opts.store, s->view.id,
					    bit - STORE_KEYWORD_BASE, name,
					    sizeof name) != IMAPQ_OK)
			continue;
		if (!first)
			session_lit(s, " ");
		first = false;
		session_write(s, text, strlen(text));
	}
	return !first;
}

void view_write_flags(struct session *s, uint64_t flags, bool recent)
{
	session_lit(s, "(");
	bool any = write_flag_items(s, flags);
	if (recent)
		session_printf(s, "%s\\Recent", any ? " " : "");
	session_lit(s, ")");
}

/* Writes the FLAGS and PERMANENTFLAGS of the mailbox. */
static void write_flag_lists(struct session *s, unsigned nkeywords)
{
	uint64_t all = STORE_SEEN | STORE_ANSWERED | STORE_FLAGGED | STORE_DELETED | STORE_DRAFT;
	for (unsigned k = 0; k < nkeywords && k < IMAPQ_MAX_KEYWORDS; k++)
		all |= STORE_KEYWORD(k);
	session_lit(s, "* FLAGS ");
	view_write_flags(s, all, false);
	session_lit(s, "\r\n");
	if (s->view.readonly) {
		session_lit(s, "* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n");
		return;
	}
	session_lit(s, "* OK [PERMANENTFLAGS (");
	write_flag_items(s, all);
	/* \* only while new keywords can still be made. */
	if (nkeywords < IMAPQ_MAX_KEYWORDS)
		session_lit(s, " \\*");
	session_lit(s, ")] Flags permitted\r\n");
}

imapq_err view_open(struct session *s, uint32_t id, bool readonly)
{
	struct store *store = s->server->opts.store;
	struct store_mailbox_status st;
	imapq_err err = store_mailbox_status(store, id, &st);
	if (err != IMAPQ_OK)
		return err;
	view_close(s);
	struct view *v = &s->view;
	v->id = id;
	v->uidvalidity = st.uidvalidity;
	v->readonly = readonly;
	v->uid_max = st.uidnext - 1;
	v->modseq = st.highestmodseq;
	v->xmodseq = st.highestmodseq;
	v->exists = store_rank(s, v->uid_max);
	uint32_t floor = server_recent_claim(s->server, id, readonly ? 0 : v->uid_max);
	if (floor <= v->uid_max) {
		v->recent_lo = floor;
		v->recent_hi = v->uid_max;
	}
	s->state = STATE_SELECTED;

	v->keywords = st.keywords;
	write_flag_lists(s, st.keywords);
	session_printf(s, "* %u EXISTS\r\n", v->exists);
	uint32_t recent = 0;
	if (v->recent_lo != 0)
		recent = v->exists - (store_rank(s, v->recent_lo - 1));
	session_printf(s, "* %u RECENT\r\n", recent);
	uint32_t unseen_uid = 0;
	if (store_first_match(store, id, STORE_SEEN, 0, 1, &unseen_uid) == IMAPQ_OK &&
	    unseen_uid != 0 && unseen_uid <= v->uid_max)
		session_printf(s, "* OK [UNSEEN %u] First unseen\r\n", view_msn(s, unseen_uid));
	session_printf(s, "* OK [UIDVALIDITY %u] UIDs valid\r\n", v->uidvalidity);
	session_printf(s, "* OK [UIDNEXT %u] Predicted next UID\r\n", st.uidnext);
	session_printf(s, "* OK [HIGHESTMODSEQ %llu] Highest\r\n",
		       (unsigned long long)st.highestmodseq);
	return IMAPQ_OK;
}

void view_close(struct session *s)
{
	struct view *v = &s->view;
	free(v->pending);
	free(v->echoed);
	*v = (struct view){0};
	if (s->state & STATE_SELECTED)
		s->state = STATE_AUTHENTICATED;
}

/* Collected under the store's lock, written after it (writing needs the store again). */
struct change_list {
	struct store_message *items;
	size_t n, cap;
	uint32_t uid_max;
	bool failed;
};

static void collect_change(void *ctx, const struct store_message *m)
{
	struct change_list *l = ctx;
	if (m->uid > l->uid_max || l->failed)
		return;
	if (!vec_push((void **)&l->items, &l->n, &l->cap, sizeof *m, m))
		l->failed = true;
}

/* The UIDs of an expunge history answer within the view, ascending. */
struct expunge_list {
	uint32_t uid_max;
	uint32_t *v;
	size_t n, cap;
	bool failed;
};

static void collect_expunged(void *ctx, uint32_t lo, uint32_t hi)
{
	struct expunge_list *l = ctx;
	if (lo > l->uid_max)
		return;
	if (hi > l->uid_max)
		hi = l->uid_max;
	for (uint64_t uid = lo; uid <= hi && !l->failed; uid++) {
		uint32_t u = (uint32_t)uid;
		if (!vec_push((void **)&l->v, &l->n, &l->cap, sizeof u, &u))
			l->failed = true;
	}
}

/* Merges the ascending UIDs add into the pending list in one pass (an expunge of a million
 * messages must not insert them one by one); false when out of memory. */
static bool pending_merge(struct view *v, const uint32_t *add, size_t nadd)
{
	if (nadd == 0)
		return true;
	size_t cap = v->npending + nadd;
	uint32_t *out = malloc(cap * sizeof *out);
	if (out == NULL)
		return false;
	size_t i = 0, j = 0, n = 0;
	while (i < v->npending || j < nadd) {
		uint32_t next = j == nadd || (i < v->npending && v->pending[i] <= add[j])
				    ? v->pending[i++]
				    : add[j++];
		if (n == 0 || out[n - 1] != next)
			out[n++] = next;
	}
	free(v->pending);
	v->pending = out;
	v->npending = n;
	v->cappending = cap;
	return true;
}

/* Announces pending expunges as EXPUNGE (or VANISHED with QRESYNC) and forgets them. */
static void announce_expunges(struct session *s)
{
	struct view *v = &s->view;
	if (v->npending == 0)
		return;
	if (s->enabled & ENABLED_QRESYNC) {
		session_lit(s, "* VANISHED ");
		for (size_t i = 0; i < v->npending;) {
			size_t j = i;
			while (j + 1 < v->npending && v->pending[j + 1] == v->pending[j] + 1)
				j++;
			if (i > 0)
				session_lit(s, ",");
			if (j == i)
				session_printf(s, "%u", v->pending[i]);
			else
				session_printf(s, "%u:%u", v->pending[i], v->pending[j]);
			i = j + 1;
		}
		session_lit(s, "\r\n");
	} else {
		/* Highest first, so each number stays valid until it is sent. */
		for (size_t i = v->npending; i-- > 0;)
			session_printf(s, "* %u EXPUNGE\r\n",
				       store_rank(s, v->pending[i]) + (uint32_t)i + 1);
	}
	v->exists -= (uint32_t)v->npending;
	v->npending = 0;
}

/* The mailbox went away under the session: nothing it holds is valid any more. */
static void view_lost(struct session *s)
{
	session_lit(s, "* BYE Selected mailbox was deleted\r\n");
	view_close(s);
	session_close_after_output(s);
}

bool view_load_expunges(struct session *s)
{
	struct store *store = s->server->opts.store;
	struct view *v = &s->view;
	if (!(s->state & STATE_SELECTED))
		return false;
	struct store_mailbox_status st;
	if (store_mailbox_status(store, v->id, &st) != IMAPQ_OK ||
	    st.uidvalidity != v->uidvalidity) {
		view_lost(s);
		return false;
	}
	if (st.highestmodseq <= v->xmodseq)
		return true;
	size_t before = v->npending;
	struct expunge_list el = {.uid_max = v->uid_max};
	/* The history and the mod-sequence it reaches are read under one hold of the store's
	 * lock: an expunge between two reads would be loaded now and again next time. */
	uint64_t highest = 0;
	imapq_err err =
	    store_expunged_since(store, v->id, v->xmodseq, collect_expunged, &el, &highest);
	if (err == IMAPQ_OK && !el.failed && !pending_merge(v, el.v, el.n))
		el.failed = true;
	free(el.v);
	if (err != IMAPQ_OK || el.failed) {
		/* Sequence numbers can no longer be kept right. */
		log_warn(SERVER_LOG, "%s: expunge history unavailable; ending session", s->peer);
		session_lit(s, "* BYE Too many changes to follow; select the mailbox again\r\n");
		view_close(s);
		session_close_after_output(s);
		return false;
	}
	if (before == 0 && v->npending > 0)
		v->pending_base = v->xmodseq;
	if (highest > v->xmodseq)
		v->xmodseq = highest;
	return true;
}

void view_sync(struct session *s, bool allow_expunge)
{
	struct store *store = s->server->opts.store;
	struct view *v = &s->view;
	if (!view_load_expunges(s))
		return;
	struct store_mailbox_status st;
	if (store_mailbox_status(store, v->id, &st) != IMAPQ_OK)
		return;

	/* New keywords change the mailbox's flag list (RFC 3501 7.2.6). */
	if (st.keywords != v->keywords) {
		v->keywords = st.keywords;
		write_flag_lists(s, st.keywords);
	}

	if (st.highestmodseq > v->modseq) {
		struct change_list cl = {.uid_max = v->uid_max};
		store_changed_since(store, v->id, v->modseq, collect_change, &cl);
		echo_sort(v);
		for (size_t i = 0; i < cl.n; i++) {
			const struct store_message *m = &cl.items[i];
			if (was_echoed(v, m->uid, m->modseq))
				continue;
			session_printf(s, "* %u FETCH (UID %u FLAGS ", view_msn(s, m->uid), m->uid);
			view_write_flags(s, m->flags, view_is_recent(s, m->uid));
			if (s->enabled & ENABLED_CONDSTORE)
				session_printf(s, " MODSEQ (%llu)", (unsigned long long)m->modseq);
			session_lit(s, ")\r\n");
		}
		free(cl.items);
		v->modseq = st.highestmodseq;
	}

	/* While expunges must wait (FETCH, STORE, SEARCH), the client must not take the
	 * mod-sequences it saw as covering them (RFC 7162 3.2.10): point it below the first one. */
	if (!allow_expunge && v->npending > 0 && (s->enabled & ENABLED_CONDSTORE))
		session_printf(s, "* OK [HIGHESTMODSEQ %llu] Expunges pending\r\n",
			       (unsigned long long)v->pending_base);
	if (allow_expunge)
		announce_expunges(s);

	if (st.uidnext - 1 > v->uid_max) {
		uint32_t old_max = v->uid_max;
		v->uid_max = st.uidnext - 1;
		uint32_t exists = store_rank(s, v->uid_max) + (uint32_t)v->npending;
		if (!v->readonly) {
			uint32_t floor = server_recent_claim(s->server, v->id, v->uid_max);
			if (floor <= old_max + 1 && floor <= v->uid_max) {
				if (v->recent_lo == 0)
					v->recent_lo = floor;
				v->recent_hi = v->uid_max;
			}
		}
		if (exists != v->exists) {
			v->exists = exists;
			session_printf(s, "* %u EXISTS\r\n", exists);
			uint32_t recent = 0;
			if (v->recent_lo != 0)
				recent =
				    store_rank(s, v->recent_hi) - store_rank(s, v->recent_lo - 1);
			session_printf(s, "* %u RECENT\r\n", recent);
		}
	}
}
