/* EXPUNGE and UID EXPUNGE (RFC 4315 2.1): removes messages that carry \Deleted. */
#include <stdio.h>
#include <stdlib.h>

#include "imap/server/server-private.h"

void cmd_expunge(struct cmd *c)
{
	struct session *s = c->s;
	if (!cmd_want_args(c, c->uid ? 1 : 0, c->uid ? 1 : 0))
		return;
	if (s->view.readonly) {
		cmd_no(c, "CANNOT", "Mailbox is read-only");
		return;
	}
	struct uid_range *ranges = NULL;
	size_t n = 0;
	if (c->uid && !cmd_arg_set(c, &c->args[0], true, &ranges, &n))
		return;
	imapq_err err = IMAPQ_OK;
	uint64_t lsn;
	/* A UID set naming no known message expunges nothing (not everything). */
	if (!c->uid || n > 0)
		err = store_expunge(s->server->opts.store, s->view.id, ranges, n, NULL, NULL, &lsn);
	free(ranges);
	if (err != IMAPQ_OK) {
		cmd_fail(c, err, NULL);
		return;
	}
	/* The EXPUNGE (or VANISHED) responses come from the sync before the tagged reply; with
	 * QRESYNC the tagged OK carries the new HIGHESTMODSEQ (RFC 7162 3.2.7). */
	struct store_mailbox_status st;
	char code[48];
	if ((s->enabled & ENABLED_QRESYNC) &&
	    store_mailbox_status(s->server->opts.store, s->view.id, &st) == IMAPQ_OK) {
		snprintf(code, sizeof code, "HIGHESTMODSEQ %llu",
			 (unsigned long long)st.highestmodseq);
		cmd_ok(c, code, "EXPUNGE completed");
		return;
	}
	cmd_ok(c, NULL, "EXPUNGE completed");
}
