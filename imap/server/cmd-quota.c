/* GETQUOTAROOT, GETQUOTA and SETQUOTA (RFC 9208) over the store's message limits. Every mailbox
 * is its own quota root, named like the mailbox, with the one resource MESSAGE: its message count
 * against its limit (the queue's STORE_SETTING_MAX_MESSAGES, else the store's default). SETQUOTA
 * writes that setting, so METADATA and HTTP show the same value. Roots follow mailbox visibility:
 * a root the user may not see answers exactly like a missing mailbox. */
#include <stdio.h>
#include <string.h>

#include "imap/base/limits.h"
#include "imap/server/access.h"
#include "imap/server/server-private.h"

#define MAILBOX_BUF (IMAPQ_MAX_MAILBOX_NAME * 4 + 1)

/* The one resource imapq limits (RFC 9208 section 5.2). */
#define RESOURCE_MESSAGE "MESSAGE"

/* Resolves argument i as a quota root (a mailbox name) on which the user holds role (0: sees
 * it); replies and returns false when it is hidden, missing or not allowed. */
static bool resolve_root(struct cmd *c, size_t i, unsigned role, char *name, uint32_t *id_r)
{
	if (!cmd_arg_mailbox(c, i, name, MAILBOX_BUF) || !cmd_allow(c, name, role))
		return false;
	imapq_err err = store_mailbox_find(c->s->server->opts.store, name, id_r);
	if (err == IMAPQ_E_NONEXISTENT || err == IMAPQ_E_NOTFOUND || err == IMAPQ_E_INVALID) {
		cmd_no(c, "NONEXISTENT", "No such mailbox");
		return false;
	}
	if (err != IMAPQ_OK) {
		cmd_fail(c, err, NULL);
		return false;
	}
	return true;
}

/* Writes "* QUOTA root (MESSAGE used limit)" for mailbox id; false after replying to a
 * failure (the mailbox was deleted meanwhile). */
static bool write_quota(struct cmd *c, const char *name, uint32_t id)
{
	struct store_mailbox_status st;
	imapq_err err = store_mailbox_status(c->s->server->opts.store, id, &st);
	if (err == IMAPQ_E_NONEXISTENT) {
		cmd_no(c, "NONEXISTENT", "No such mailbox");
		return false;
	}
	if (err != IMAPQ_OK) {
		cmd_fail(c, err, NULL);
		return false;
	}
	session_lit(c->s, "* QUOTA ");
	cmd_write_mailbox(c->s, name);
	session_printf(c->s, " (" RESOURCE_MESSAGE " %u %u)\r\n", st.messages, st.max_messages);
	return true;
}

void cmd_getquotaroot(struct cmd *c)
{
	char name[MAILBOX_BUF];
	uint32_t id;
	if (!cmd_want_args(c, 1, 1) || !resolve_root(c, 0, 0, name, &id))
		return;
	session_lit(c->s, "* QUOTAROOT ");
	cmd_write_mailbox(c->s, name);
	session_lit(c->s, " ");
	cmd_write_mailbox(c->s, name);
	session_lit(c->s, "\r\n");
	if (write_quota(c, name, id))
		cmd_ok(c, NULL, "GETQUOTAROOT completed");
}

void cmd_getquota(struct cmd *c)
{
	char name[MAILBOX_BUF];
	uint32_t id;
	if (!cmd_want_args(c, 1, 1) || !resolve_root(c, 0, 0, name, &id))
		return;
	if (write_quota(c, name, id))
		cmd_ok(c, NULL, "GETQUOTA completed");
}

/* Reads SETQUOTA's resource list: empty (*set_r false: remove the limit) or MESSAGE with a
 * number (copied into value as text). Replies and returns false on anything else. */
static bool parse_limits(struct cmd *c, const struct parser_arg *a, char *value, size_t cap,
			 bool *set_r)
{
	*set_r = false;
	if (a->type != PARSER_ARG_LIST || a->count % 2 != 0) {
		cmd_bad(c, "Expected a list of resource names and limits");
		return false;
	}
	for (size_t i = 0; i < a->count; i += 2) {
		uint64_t limit;
		if (!parser_arg_number(&a->list[i + 1], UINT64_MAX, &limit)) {
			cmd_bad(c, "Resource limits are numbers");
			return false;
		}
		if (!parser_arg_is_atom(&a->list[i], RESOURCE_MESSAGE)) {
			cmd_no(c, NULL, "Only the MESSAGE resource can be limited");
			return false;
		}
		if (*set_r) {
			cmd_bad(c, "MESSAGE is given twice");
			return false;
		}
		if (limit < 1 || limit > IMAPQ_MAX_MESSAGES_SETTING) {
			char text[96];
			snprintf(text, sizeof text, "The MESSAGE limit must be from 1 to %u",
				 (unsigned)IMAPQ_MAX_MESSAGES_SETTING);
			cmd_no(c, "LIMIT", text);
			return false;
		}
		snprintf(value, cap, "%llu", (unsigned long long)limit);
		*set_r = true;
	}
	return true;
}

void cmd_setquota(struct cmd *c)
{
	uint64_t lsn; /* the reply waits for it through the session's seal */
	char name[MAILBOX_BUF];
	char value[24];
	bool set;
	uint32_t id;
	if (!cmd_want_args(c, 2, 2))
		return;
	/* The list is checked before the root, so a malformed command is BAD whoever sends it. */
	if (c->args[1].type != PARSER_ARG_LIST) {
		cmd_bad(c, "Expected a list of resource names and limits");
		return;
	}
	if (!resolve_root(c, 0, ACCESS_ADMIN, name, &id) ||
	    !parse_limits(c, &c->args[1], value, sizeof value, &set))
		return;
	imapq_err err = store_annotation_set(c->s->server->opts.store, id,
					     STORE_SETTING_MAX_MESSAGES, set ? value : NULL, &lsn);
	if (err == IMAPQ_E_NONEXISTENT) {
		cmd_no(c, "NONEXISTENT", "No such mailbox");
		return;
	}
	if (err == IMAPQ_E_LIMIT) {
		cmd_no(c, "LIMIT", "Too many entries on this mailbox");
		return;
	}
	if (err != IMAPQ_OK) {
		cmd_fail(c, err, NULL);
		return;
	}
	if (write_quota(c, name, id))
		cmd_ok(c, NULL, "SETQUOTA completed");
}
