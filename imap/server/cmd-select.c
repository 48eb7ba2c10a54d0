/* SELECT and EXAMINE (with the CONDSTORE and QRESYNC parameters of RFC 7162), CLOSE, UNSELECT. */
#include <stdlib.h>
#include <string.h>

#include "imap/base/limits.h"
#include "imap/protocol/seqset.h"
#include "imap/base/vec.h"
#include "imap/server/access.h"
#include "imap/server/server-private.h"

/* The QRESYNC parameter: (uidvalidity modseq [known-uids [seq-match-data]]). */
struct qresync_param {
	bool present;
	uint64_t uidvalidity;
	uint64_t modseq;
	struct seqset *known; /* NULL means every UID */
};

/* True when arg is seq-match-data: (known-sequence-set known-uid-set), two sets of equal size
 * without "*" (RFC 7162 3.2.5). */
static bool seq_match_valid(const struct parser_arg *arg)
{
	if (arg->type != PARSER_ARG_LIST || arg->count != 2 ||
	    arg->list[0].type != PARSER_ARG_ATOM || arg->list[1].type != PARSER_ARG_ATOM)
		return false;
	struct seqset *seqs = NULL, *uids = NULL;
	bool ok = seqset_parse(arg->list[0].str, arg->list[0].len, 0, SEQSET_NO_STAR, &seqs) ==
		      IMAPQ_OK &&
		  seqset_parse(arg->list[1].str, arg->list[1].len, 0, SEQSET_NO_STAR, &uids) ==
		      IMAPQ_OK &&
		  seqset_size(seqs) == seqset_size(uids);
	seqset_destroy(&seqs);
	seqset_destroy(&uids);
	return ok;
}

/* Parses the optional select parameter list; replies BAD and returns false when malformed. */
static bool parse_select_params(struct cmd *c, const struct parser_arg *list, bool *condstore,
				struct qresync_param *q)
{
	for (size_t i = 0; i < list->count; i++) {
		const struct parser_arg *a = &list->list[i];
		if (parser_arg_is_atom(a, "CONDSTORE")) {
			*condstore = true;
			continue;
		}
		if (!parser_arg_is_atom(a, "QRESYNC") || i + 1 >= list->count ||
		    list->list[i + 1].type != PARSER_ARG_LIST) {
			cmd_bad(c, "Unknown SELECT parameter");
			return false;
		}
		if (!(c->s->enabled & ENABLED_QRESYNC)) {
			cmd_bad(c, "QRESYNC must be enabled first");
			return false;
		}
		const struct parser_arg *p = &list->list[++i];
		if (p->count < 2 || p->count > 4 ||
		    !cmd_arg_number(c, &p->list[0], UINT32_MAX, &q->uidvalidity) ||
		    !cmd_arg_number(c, &p->list[1], INT64_MAX, &q->modseq)) {
			if (!c->replied)
				cmd_bad(c, "Invalid QRESYNC parameter");
			return false;
		}
		if (q->uidvalidity == 0 || q->modseq == 0) {
			cmd_bad(c, "Invalid QRESYNC parameter");
			return false;
		}
		/* Then [known-uids] [seq-match-data], either may be absent (RFC 7162 3.2.5). */
		size_t k = 2;
		if (k < p->count && p->list[k].type == PARSER_ARG_ATOM) {
			if (seqset_parse(p->list[k].str, p->list[k].len, 0, SEQSET_NO_STAR,
					 &q->known) != IMAPQ_OK) {
				cmd_bad(c, "Invalid known-uids");
				return false;
			}
			k++;
		}
		if (k < p->count && seq_match_valid(&p->list[k]))
			k++;
		if (k != p->count) {
			cmd_bad(c, "Invalid QRESYNC parameter");
			return false;
		}
		q->present = true;
	}
	return true;
}

struct resync {
	struct session *s;
	const struct seqset *known;
	size_t known_cursor; /* how far the removed ranges, ascending, have passed known */
	struct store_message *changed;
	size_t n, cap;
	struct seqset *vanished;
	bool failed;
};

static void resync_changed(void *ctx, const struct store_message *m)
{
	struct resync *r = ctx;
	if (r->failed || m->uid > r->s->view.uid_max ||
	    (r->known != NULL && !seqset_contains(r->known, m->uid)))
		return;
	if (!vec_push((void **)&r->changed, &r->n, &r->cap, sizeof *m, m))
		r->failed = true;
}

static void resync_vanished(void *ctx, uint32_t lo, uint32_t hi)
{
	struct resync *r = ctx;
	if (r->failed)
		return;
	if (r->known == NULL) {
		if (seqset_add(r->vanished, lo, hi) != IMAPQ_OK)
			r->failed = true;
		return;
	}
	/* Only UIDs the client says it knows (RFC 7162 3.2.5.1). */
	if (seqset_add_overlap(r->vanished, seqset_ranges(r->known), seqset_range_count(r->known),
			       &r->known_cursor, lo, hi) != IMAPQ_OK)
		r->failed = true;
}

/* Sends VANISHED (EARLIER) and the changed messages since the client's mod-sequence. */
static void qresync(struct cmd *c, const struct qresync_param *q)
{
	struct session *s = c->s;
	struct store *store = s->server->opts.store;
	struct resync r = {.s = s, .known = q->known};
	if (seqset_create(&r.vanished) != IMAPQ_OK)
		return;
	store_vanished_since(store, s->view.id, q->modseq, resync_vanished, &r);
	if (seqset_size(r.vanished) > 0) {
		size_t len = seqset_format(r.vanished, NULL, 0);
		char *text = malloc(len + 1);
		if (text != NULL) {
			seqset_format(r.vanished, text, len + 1);
			session_printf(s, "* VANISHED (EARLIER) %s\r\n", text);
			free(text);
		}
	}
	seqset_destroy(&r.vanished);
	store_changed_since(store, s->view.id, q->modseq, resync_changed, &r);
	for (size_t i = 0; i < r.n; i++) {
		const struct store_message *m = &r.changed[i];
		session_printf(s, "* %u FETCH (UID %u FLAGS ", view_msn(s, m->uid), m->uid);
		view_write_flags(s, m->flags, view_is_recent(s, m->uid));
		session_printf(s, " MODSEQ (%llu))\r\n", (unsigned long long)m->modseq);
	}
	free(r.changed);
}

/* Shared body of SELECT and EXAMINE. */
static void do_select(struct cmd *c, bool readonly)
{
	struct session *s = c->s;
	char name[IMAPQ_MAX_MAILBOX_NAME * 4 + 1];
	if (!cmd_want_args(c, 1, 2) || !cmd_arg_mailbox(c, 0, name, sizeof name))
		return;
	bool condstore = false;
	struct qresync_param q = {0};
	if (c->count == 2) {
		if (c->args[1].type != PARSER_ARG_LIST) {
			cmd_bad(c, "Invalid SELECT parameters");
			return;
		}
		if (!parse_select_params(c, &c->args[1], &condstore, &q)) {
			seqset_destroy(&q.known);
			return;
		}
	}
	if (s->state & STATE_SELECTED) {
		view_close(s);
		session_lit(s, "* OK [CLOSED] Previous mailbox closed\r\n");
	}
	struct store *store = s->server->opts.store;
	uint32_t id;
	/* Reading needs the consumer role; a hidden name answers like a missing one. */
	imapq_err err = access_check(s->access, name, ACCESS_CONSUMER);
	if (err == IMAPQ_OK)
		err = store_mailbox_find(store, name, &id);
	if (err == IMAPQ_OK) {
		if (condstore)
			s->enabled |= ENABLED_CONDSTORE;
		err = view_open(s, id, readonly);
	}
	if (err != IMAPQ_OK) {
		seqset_destroy(&q.known);
		if (err == IMAPQ_E_NONEXISTENT)
			cmd_no(c, "NONEXISTENT", "No such mailbox");
		else
			cmd_fail(c, err, NULL);
		return;
	}
	if (q.present && q.uidvalidity == s->view.uidvalidity)
		qresync(c, &q);
	seqset_destroy(&q.known);
	cmd_ok(c, readonly ? "READ-ONLY" : "READ-WRITE",
	       readonly ? "EXAMINE completed" : "SELECT completed");
}

void cmd_select(struct cmd *c)
{
	do_select(c, false);
}

void cmd_examine(struct cmd *c)
{
	do_select(c, true);
}

void cmd_close(struct cmd *c)
{
	uint64_t lsn; /* the reply waits for it through the session's seal */
	struct session *s = c->s;
	if (!cmd_want_args(c, 0, 0))
		return;
	/* CLOSE expunges silently (RFC 3501 6.4.2). */
	if (!s->view.readonly) {
		imapq_err err =
		    store_expunge(s->server->opts.store, s->view.id, NULL, 0, NULL, NULL, &lsn);
		if (err != IMAPQ_OK && err != IMAPQ_E_NONEXISTENT) {
			cmd_fail(c, err, NULL);
			return;
		}
	}
	view_close(s);
	cmd_ok(c, NULL, "CLOSE completed");
}

void cmd_unselect(struct cmd *c)
{
	if (!cmd_want_args(c, 0, 0))
		return;
	view_close(c->s);
	cmd_ok(c, NULL, "UNSELECT completed");
}
