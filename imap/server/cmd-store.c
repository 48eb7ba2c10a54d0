/* STORE and UID STORE (RFC 3501 6.4.6) with UNCHANGEDSINCE (RFC 7162 3.1.3): the conditional
 * store that workers claim jobs with. Exact: a message whose mod-sequence is above UNCHANGEDSINCE
 * fails with MODIFIED even when the store would change nothing. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/protocol/seqset.h"
#include "imap/base/vec.h"
#include "imap/server/server-private.h"

struct store_result {
	struct store_message m;
	enum store_flag_outcome outcome;
};

struct store_results {
	struct store_result *items;
	size_t n, cap;
	bool failed;
};

/* Runs under the store's lock: only collect, write afterwards. */
static void collect_result(void *ctx, const struct store_message *m,
			   enum store_flag_outcome outcome)
{
	struct store_results *r = ctx;
	if (r->failed)
		return;
	struct store_result item = {*m, outcome};
	if (!vec_push((void **)&r->items, &r->n, &r->cap, sizeof item, &item))
		r->failed = true;
}

/* Parses "FLAGS", "+FLAGS", "-FLAGS" with an optional ".SILENT". */
static bool parse_item(const struct parser_arg *a, enum store_flag_op *op, bool *silent)
{
	if (a->type != PARSER_ARG_ATOM)
		return false;
	const char *s = a->str;
	size_t len = a->len;
	*op = STORE_FLAGS_SET;
	if (len > 0 && (s[0] == '+' || s[0] == '-')) {
		*op = s[0] == '+' ? STORE_FLAGS_ADD : STORE_FLAGS_REMOVE;
		s++;
		len--;
	}
	*silent = len == 12 && strncasecmp(s, "FLAGS.SILENT", 12) == 0;
	return *silent || (len == 5 && strncasecmp(s, "FLAGS", 5) == 0);
}

void cmd_store(struct cmd *c)
{
	struct session *s = c->s;
	if (!cmd_want_args(c, 3, 3 + 64))
		return;
	size_t i = 1;
	uint64_t since = 0;
	bool conditional = false;
	if (c->args[1].type == PARSER_ARG_LIST) {
		const struct parser_arg *m = &c->args[1];
		if (m->count != 2 || !parser_arg_is_atom(&m->list[0], "UNCHANGEDSINCE")) {
			cmd_bad(c, "Unknown STORE modifier");
			return;
		}
		if (!cmd_arg_number(c, &m->list[1], INT64_MAX, &since))
			return;
		conditional = true;
		session_enable_condstore(s);
		i = 2;
	}
	if (i < c->count && parser_arg_is_atom(&c->args[i], "ANNOTATION")) {
		annotate_store(c, i, conditional ? &since : NULL); /* RFC 5257 (cmd-annotate.c) */
		return;
	}
	enum store_flag_op op;
	bool silent;
	if (i + 1 >= c->count || !parse_item(&c->args[i], &op, &silent)) {
		cmd_bad(c, "Invalid STORE item");
		return;
	}
	if (s->view.readonly) {
		cmd_no(c, "CANNOT", "Mailbox is read-only");
		return;
	}
	if (c->args[i + 1].type == PARSER_ARG_LIST && i + 2 != c->count) {
		cmd_bad(c, "Invalid flag list");
		return;
	}
	/* The set first: a command refused for its set must not have defined keywords. */
	struct uid_range *ranges;
	size_t n;
	if (!cmd_arg_set(c, &c->args[0], c->uid, &ranges, &n))
		return;
	/* The flags: one parenthesised list, or flags separated by spaces. */
	uint64_t flags = 0;
	bool create = op != STORE_FLAGS_REMOVE;
	for (size_t k = i + 1; k < c->count; k++) {
		uint64_t one;
		if (!cmd_arg_flags(c, &c->args[k], create, &one)) {
			free(ranges);
			return;
		}
		flags |= one;
	}

	struct store_results r = {0};
	uint64_t lsn;
	imapq_err err = IMAPQ_OK;
	if (n > 0)
		err = store_flags(s->server->opts.store, s->view.id, ranges, n, op, flags,
				  conditional ? &since : NULL, collect_result, &r, &lsn);
	free(ranges);
	if (err == IMAPQ_OK && r.failed)
		err = IMAPQ_E_NOMEM;
	if (err != IMAPQ_OK) {
		free(r.items);
		cmd_fail(c, err, NULL);
		return;
	}

	struct seqset *modified = NULL;
	bool condstore = s->enabled & ENABLED_CONDSTORE;
	for (size_t k = 0; k < r.n; k++) {
		const struct store_result *res = &r.items[k];
		uint32_t msn = view_msn(s, res->m.uid);
		if (res->outcome == STORE_FAILED) {
			if ((modified != NULL || seqset_create(&modified) == IMAPQ_OK) &&
			    seqset_add(modified, c->uid ? res->m.uid : msn,
				       c->uid ? res->m.uid : msn) != IMAPQ_OK)
				err = IMAPQ_E_NOMEM;
			continue;
		}
		bool changed = res->outcome == STORE_CHANGED;
		/* The session's own change is never reported back to it by the sync. */
		if (changed)
			view_note_echo(s, res->m.uid, res->m.modseq);
		/* .SILENT still reports the new mod-sequence of a changed message (RFC 7162). */
		if (silent && !(changed && condstore))
			continue;
		session_printf(s, "* %u FETCH (UID %u", msn, res->m.uid);
		if (!silent) {
			session_lit(s, " FLAGS ");
			view_write_flags(s, res->m.flags, view_is_recent(s, res->m.uid));
		}
		if (condstore)
			session_printf(s, " MODSEQ (%llu)", (unsigned long long)res->m.modseq);
		session_lit(s, ")\r\n");
	}
	free(r.items);
	if (err != IMAPQ_OK) {
		seqset_destroy(&modified);
		cmd_fail(c, err, NULL);
		return;
	}
	if (modified != NULL) {
		size_t len = seqset_format(modified, NULL, 0);
		char *code = malloc(len + 10);
		if (code != NULL) {
			memcpy(code, "MODIFIED ", 9);
			seqset_format(modified, code + 9, len + 1);
			cmd_ok(c, code, "Conditional STORE failed");
			free(code);
		} else {
			cmd_fail(c, IMAPQ_E_NOMEM, NULL);
		}
		seqset_destroy(&modified);
		return;
	}
	cmd_ok(c, NULL, "STORE completed");
}
