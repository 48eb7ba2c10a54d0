/* COPY and MOVE (RFC 6851) with UIDPLUS's COPYUID (RFC 4315). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap/base/limits.h"
#include "imap/protocol/seqset.h"
#include "imap/server/access.h"
#include "imap/server/server-private.h"

struct copy_map {
	struct seqset *src, *dst;
	bool failed;
};

static void collect_pair(void *ctx, uint32_t src_uid, uint32_t dst_uid)
{
	struct copy_map *m = ctx;
	if (seqset_add(m->src, src_uid, src_uid) != IMAPQ_OK ||
	    seqset_add(m->dst, dst_uid, dst_uid) != IMAPQ_OK)
		m->failed = true;
}

/* Formats "COPYUID <uidvalidity> <src> <dst>"; NULL on failure. */
static char *copyuid_code(uint32_t uidvalidity, const struct copy_map *m)
{
	size_t ls = seqset_format(m->src, NULL, 0), ld = seqset_format(m->dst, NULL, 0);
	char *code = malloc(ls + ld + 32);
	if (code == NULL)
		return NULL;
	int k = snprintf(code, 32, "COPYUID %u ", uidvalidity);
	seqset_format(m->src, code + k, ls + 1);
	code[k + ls] = ' ';
	seqset_format(m->dst, code + k + ls + 1, ld + 1);
	return code;
}

/* The messages of the mailbox in ranges (UIDs, ascending): live ones up to each end, less those
 * below its start. */
static uint64_t count_in_ranges(struct store *store, uint32_t id, const struct uid_range *ranges,
				size_t n)
{
	uint64_t count = 0;
	for (size_t i = 0; i < n; i++) {
		uint32_t hi = 0, below = 0;
		store_seq_of_uid(store, id, ranges[i].hi, &hi);
		if (ranges[i].lo > 1)
			store_seq_of_uid(store, id, ranges[i].lo - 1, &below);
		count += hi > below ? hi - below : 0;
	}
	return count;
}

/* Shared body of COPY and MOVE. */
static void do_copy(struct cmd *c, bool move)
{
	struct session *s = c->s;
	char name[IMAPQ_MAX_MAILBOX_NAME * 4 + 1];
	if (!cmd_want_args(c, 2, 2) || !cmd_arg_mailbox(c, 1, name, sizeof name))
		return;
	if (move && s->view.readonly) {
		cmd_no(c, "CANNOT", "Mailbox is read-only");
		return;
	}
	struct store *store = s->server->opts.store;
	uint32_t dst;
	/* The target is enqueued to: producer role; a hidden name answers like a missing one. */
	imapq_err err = access_check(s->access, name, ACCESS_PRODUCER);
	if (err == IMAPQ_OK)
		err = store_mailbox_find(store, name, &dst);
	if (err == IMAPQ_E_NONEXISTENT) {
		cmd_no(c, "TRYCREATE", "No such mailbox");
		return;
	}
	if (err != IMAPQ_OK) {
		cmd_fail(c, err, NULL);
		return;
	}
	struct uid_range *ranges;
	size_t n;
	if (!cmd_arg_set(c, &c->args[0], c->uid, &ranges, &n))
		return;
	/* One command copies under one hold of the store's lock and one journal group: bounded,
	 * so that it never stalls every other client for long. */
	if (count_in_ranges(store, s->view.id, ranges, n) > IMAPQ_MAX_COPY_MESSAGES) {
		free(ranges);
		char text[128];
		snprintf(text, sizeof text, "%s at most %u messages at once; split the set",
			 move ? "MOVE" : "COPY", (unsigned)IMAPQ_MAX_COPY_MESSAGES);
		cmd_no(c, "LIMIT", text);
		return;
	}
	struct copy_map m = {0};
	if (seqset_create(&m.src) != IMAPQ_OK || seqset_create(&m.dst) != IMAPQ_OK)
		err = IMAPQ_E_NOMEM;
	uint64_t lsn;
	if (err == IMAPQ_OK && n > 0)
		err = store_copy(store, s->view.id, ranges, n, dst, move, collect_pair, &m, &lsn);
	free(ranges);
	if (err == IMAPQ_OK && m.failed)
		err = IMAPQ_E_NOMEM;
	struct store_mailbox_status st;
	if (err == IMAPQ_OK)
		err = store_mailbox_status(store, dst, &st);
	if (err != IMAPQ_OK) {
		cmd_fail(c, err, NULL);
	} else if (seqset_size(m.src) == 0) {
		cmd_ok(c, NULL, move ? "No messages moved" : "No messages copied");
	} else {
		char *code = copyuid_code(st.uidvalidity, &m);
		if (move) {
			/* RFC 6851 3.3: COPYUID goes in an untagged OK before the expunges. */
			if (code != NULL)
				session_printf(s, "* OK [%s] Moved\r\n", code);
			cmd_ok(c, NULL, "MOVE completed");
		} else {
			cmd_ok(c, code, "COPY completed");
		}
		free(code);
	}
	seqset_destroy(&m.src);
	seqset_destroy(&m.dst);
}

void cmd_copy(struct cmd *c)
{
	do_copy(c, false);
}

void cmd_move(struct cmd *c)
{
	do_copy(c, true);
}
