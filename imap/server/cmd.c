/* The command table, dispatch, tagged replies and argument helpers shared by every command. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/base/limits.h"
#include "imap/base/log.h"
#include "imap/protocol/quote.h"
#include "imap/protocol/seqset.h"
#include "imap/protocol/utf7.h"
#include "imap/server/flags.h"
#include "imap/server/server-private.h"

#define ANY	 (STATE_NOT_AUTHENTICATED | STATE_AUTHENTICATED | STATE_SELECTED)
#define NOTAUTH	 STATE_NOT_AUTHENTICATED
#define AUTH	 (STATE_AUTHENTICATED | STATE_SELECTED)
#define SELECTED STATE_SELECTED

static const struct cmd_def cmd_table[] = {
    {"CAPABILITY", ANY, cmd_capability, false, false},
    {"NOOP", ANY, cmd_noop, false, false},
    {"LOGOUT", ANY, cmd_logout, false, false},
    {"ID", ANY, cmd_id, false, false},
    {"STARTTLS", NOTAUTH, cmd_starttls, false, false},
    {"LOGIN", NOTAUTH, cmd_login, false, false},
    {"AUTHENTICATE", NOTAUTH, cmd_authenticate, false, false},
    {"ENABLE", AUTH, cmd_enable, false, false},
    {"NAMESPACE", AUTH, cmd_namespace, false, false},
    {"SELECT", AUTH, cmd_select, false, false},
    {"EXAMINE", AUTH, cmd_examine, false, false},
    {"CREATE", AUTH, cmd_create, false, false},
    {"DELETE", AUTH, cmd_delete, false, false},
    {"RENAME", AUTH, cmd_rename, false, false},
    {"SUBSCRIBE", AUTH, cmd_subscribe, false, false},
    {"UNSUBSCRIBE", AUTH, cmd_unsubscribe, false, false},
    {"LIST", AUTH, cmd_list, false, false},
    {"LSUB", AUTH, cmd_lsub, false, false},
    {"STATUS", AUTH, cmd_status, false, false},
    {"APPEND", AUTH, cmd_append, false, false},
    {"IDLE", AUTH, cmd_idle, false, false},
    {"GETMETADATA", AUTH, cmd_getmetadata, false, false},
    {"SETMETADATA", AUTH, cmd_setmetadata, false, false},
    {"GETQUOTAROOT", AUTH, cmd_getquotaroot, false, false},
    {"GETQUOTA", AUTH, cmd_getquota, false, false},
    {"SETQUOTA", AUTH, cmd_setquota, false, false},
    {"CHECK", SELECTED, cmd_check, false, false},
    {"CLOSE", SELECTED, cmd_close, false, false},
    {"UNSELECT", SELECTED, cmd_unselect, false, false},
    {"EXPUNGE", SELECTED, cmd_expunge, true, false},
    {"SEARCH", SELECTED, cmd_search, true, true},
    {"FETCH", SELECTED, cmd_fetch, true, true},
    {"STORE", SELECTED, cmd_store, true, true},
    {"COPY", SELECTED, cmd_copy, true, false},
    {"MOVE", SELECTED, cmd_move, true, false},
};

const struct cmd_def *cmd_find(const char *name, bool uid)
{
	for (size_t i = 0; i < sizeof cmd_table / sizeof cmd_table[0]; i++) {
		if (strcasecmp(cmd_table[i].name, name) == 0)
			return uid && !cmd_table[i].uid ? NULL : &cmd_table[i];
	}
	return NULL;
}

void cmd_write_capabilities(struct session *s)
{
	session_printf(s,
		       "IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE UNSELECT UIDPLUS "
		       "ESEARCH MOVE CONDSTORE QRESYNC METADATA ANNOTATE-EXPERIMENT-1 "
		       "APPENDLIMIT=%llu",
		       (unsigned long long)IMAPQ_MAX_MESSAGE_SIZE);
	/* Quotas are per mailbox, so they are offered once there is a user to see mailboxes. */
	if (!(s->state & STATE_NOT_AUTHENTICATED))
		session_lit(s, " QUOTA QUOTA=RES-MESSAGE QUOTASET");
	if (s->state & STATE_NOT_AUTHENTICATED) {
		if (s->server->opts.tls != NULL && !session_is_tls(s))
			session_lit(s, " STARTTLS");
		if (session_password_allowed(s))
			session_lit(s, " AUTH=PLAIN");
		else
			session_lit(s, " LOGINDISABLED");
	}
}

/* Writes the tagged line, after the untagged updates a selected session is owed. */
static void cmd_reply(struct cmd *c, const char *status, const char *code, const char *text)
{
	struct session *s = c->s;
	if (c->replied)
		return;
	c->replied = true;
	if ((s->state & STATE_SELECTED) && strcmp(status, "BAD") != 0) {
		const struct cmd_def *def = cmd_find(c->uid ? c->name + 4 : c->name, c->uid);
		bool allow_expunge = def == NULL || !def->no_expunge || c->uid;
		view_sync(s, allow_expunge);
	}
	if (code != NULL)
		session_printf(s, "%s %s [%s] %s\r\n", c->tag, status, code, text);
	else
		session_printf(s, "%s %s %s\r\n", c->tag, status, text);
}

void cmd_ok(struct cmd *c, const char *code, const char *text)
{
	cmd_reply(c, "OK", code, text);
}

void cmd_no(struct cmd *c, const char *code, const char *text)
{
	cmd_reply(c, "NO", code, text);
}

void cmd_bad(struct cmd *c, const char *text)
{
	cmd_reply(c, "BAD", NULL, text);
}

void cmd_fail(struct cmd *c, imapq_err err, const char *text)
{
	if (text == NULL)
		text = imapq_err_message(err);
	if (imapq_err_imap_is_bad(err))
		cmd_reply(c, "BAD", NULL, text);
	else
		cmd_reply(c, "NO", imapq_err_imap_code(err), text);
}

bool cmd_want_args(struct cmd *c, size_t min, size_t max)
{
	if (c->count < min || c->count > max) {
		cmd_bad(c, c->count < min ? "Missing arguments" : "Too many arguments");
		return false;
	}
	return true;
}

bool cmd_arg_astring(struct cmd *c, size_t i, char *buf, size_t cap)
{
	const char *str;
	size_t len;
	if (i >= c->count || !parser_arg_astring(&c->args[i], &str, &len)) {
		cmd_bad(c, "Expected a string argument");
		return false;
	}
	if (len >= cap) {
		cmd_bad(c, "Argument too long");
		return false;
	}
	memcpy(buf, str, len);
	buf[len] = '\0';
	return true;
}

bool cmd_arg_mailbox(struct cmd *c, size_t i, char *buf, size_t cap)
{
	char raw[IMAPQ_MAX_MAILBOX_NAME * 4 + 1];
	if (!cmd_arg_astring(c, i, raw, sizeof raw))
		return false;
	char *decoded;
	if (utf7_decode(raw, strlen(raw), &decoded) != IMAPQ_OK) {
		cmd_bad(c, "Invalid mailbox name encoding");
		return false;
	}
	size_t len = strlen(decoded);
	if (len >= cap) {
		free(decoded);
		cmd_bad(c, "Mailbox name too long");
		return false;
	}
	memcpy(buf, decoded, len + 1);
	free(decoded);
	if (strcasecmp(buf, "INBOX") == 0)
		strcpy(buf, "INBOX");
	return true;
}

bool cmd_arg_number(struct cmd *c, const struct parser_arg *arg, uint64_t max, uint64_t *value_r)
{
	if (parser_arg_number(arg, max, value_r))
		return true;
	cmd_bad(c, "Invalid number");
	return false;
}

/* Adds the UID range [lo, hi] to a growing array. */
static bool ranges_push(struct uid_range **ranges, size_t *n, size_t *cap, uint32_t lo, uint32_t hi)
{
	if (*n > 0 && (*ranges)[*n - 1].hi + 1 >= lo) {
		if (hi > (*ranges)[*n - 1].hi)
			(*ranges)[*n - 1].hi = hi;
		return true;
	}
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 8;
		struct uid_range *r = realloc(*ranges, ncap * sizeof *r);
		if (r == NULL)
			return false;
		*ranges = r;
		*cap = ncap;
	}
	(*ranges)[(*n)++] = (struct uid_range){lo, hi};
	return true;
}

bool cmd_arg_set(struct cmd *c, const struct parser_arg *arg, bool uid, struct uid_range **ranges_r,
		 size_t *n_r)
{
	struct session *s = c->s;
	*ranges_r = NULL;
	*n_r = 0;
	if (arg->type != PARSER_ARG_ATOM) {
		cmd_bad(c, "Invalid sequence set");
		return false;
	}
	uint32_t max = uid ? s->view.uid_max : s->view.exists;
	struct seqset *set;
	imapq_err err = seqset_parse(arg->str, arg->len, max, 0, &set);
	if (err != IMAPQ_OK) {
		cmd_fail(c, err, "Invalid sequence set");
		return false;
	}
	const struct seqset_range *r = seqset_ranges(set);
	size_t nr = seqset_range_count(set);
	struct uid_range *out = NULL;
	size_t n = 0, cap = 0;
	bool ok = true;
	for (size_t i = 0; ok && i < nr; i++) {
		uint32_t lo = r[i].lo, hi = r[i].hi;
		if (uid) {
			/* A client cannot name messages it was not told of. */
			if (lo > s->view.uid_max)
				continue;
			if (hi > s->view.uid_max)
				hi = s->view.uid_max;
			ok = ranges_push(&out, &n, &cap, lo, hi);
		} else {
			if (lo > s->view.exists || hi > s->view.exists) {
				seqset_destroy(&set);
				free(out);
				cmd_bad(c, "Message sequence number out of range");
				return false;
			}
			/* Sequence numbers map monotonically to UIDs, so a range maps to a range.
			 */
			ok = ranges_push(&out, &n, &cap, view_uid(s, lo), view_uid(s, hi));
		}
	}
	seqset_destroy(&set);
	if (!ok) {
		free(out);
		cmd_fail(c, IMAPQ_E_NOMEM, NULL);
		return false;
	}
	*ranges_r = out;
	*n_r = n;
	return true;
}

/* Adds one flag atom to *flags; replies and returns false when it is not acceptable. */
static bool add_flag(struct cmd *c, const struct parser_arg *a, bool create, uint64_t *flags)
{
	uint64_t lsn; /* the reply waits for it through the session's seal */
	struct session *s = c->s;
	if (a->type != PARSER_ARG_ATOM || a->len == 0) {
		cmd_bad(c, "Invalid flag");
		return false;
	}
	if (a->str[0] == '\\') {
		uint64_t bit = flag_system_bit(a->str, a->len);
		if (bit != 0) {
			*flags |= bit;
			return true;
		}
		if (a->len == 7 && strncasecmp(a->str, "\\Recent", 7) == 0) {
			cmd_bad(c, "\\Recent cannot be stored");
			return false;
		}
		cmd_bad(c, "Unknown system flag");
		return false;
	}
	for (size_t i = 0; i < a->len; i++) {
		unsigned char ch = (unsigned char)a->str[i];
		if (ch <= ' ' || ch >= 0x7f || strchr("(){%*\"\\]", ch) != NULL) {
			cmd_bad(c, "Invalid keyword");
			return false;
		}
	}
	if (a->len > IMAPQ_MAX_KEYWORD) {
		cmd_bad(c, "Keyword too long");
		return false;
	}
	uint32_t id = s->view.id;
	unsigned k;
	imapq_err err = store_keyword(s->server->opts.store, id, a->str, create, &k, &lsn);
	if (err == IMAPQ_E_NOTFOUND) {
		/* Removing a keyword no message has is a no-op. */
		return true;
	}
	if (err != IMAPQ_OK) {
		cmd_fail(c, err, err == IMAPQ_E_LIMIT ? "Too many keywords in this mailbox" : NULL);
		return false;
	}
	*flags |= STORE_KEYWORD(k);
	return true;
}

bool cmd_arg_flags(struct cmd *c, const struct parser_arg *arg, bool create, uint64_t *flags_r)
{
	*flags_r = 0;
	if (arg->type == PARSER_ARG_LIST) {
		for (size_t i = 0; i < arg->count; i++) {
			if (!add_flag(c, &arg->list[i], create, flags_r))
				return false;
		}
		return true;
	}
	return add_flag(c, arg, create, flags_r);
}

void cmd_write_string(struct session *s, const char *str, size_t len)
{
	size_t need = quote_astring(NULL, 0, str, len);
	char *dst = buf_reserve(&s->out, need + 1);
	if (dst == NULL)
		return;
	quote_astring(dst, need + 1, str, len);
	buf_commit(&s->out, need);
}

void cmd_write_mailbox(struct session *s, const char *name)
{
	char *enc;
	if (utf7_encode(name, strlen(name), &enc) != IMAPQ_OK) {
		cmd_write_string(s, name, strlen(name));
		return;
	}
	cmd_write_string(s, enc, strlen(enc));
	free(enc);
}

void session_dispatch(struct session *s, const struct parser_command *pc)
{
	struct cmd c = {.s = s, .tag = pc->tag, .args = pc->args, .count = pc->count};
	char name[32];
	const struct cmd_def *def;
	if (strcasecmp(pc->name, "UID") == 0) {
		if (pc->count == 0 || pc->args[0].type != PARSER_ARG_ATOM || pc->args[0].len > 16) {
			c.name = "UID";
			cmd_bad(&c, "Missing UID command");
			return;
		}
		def = cmd_find(pc->args[0].str, true);
		c.uid = true;
		c.args++;
		c.count--;
	} else {
		def = strlen(pc->name) <= 16 ? cmd_find(pc->name, false) : NULL;
	}
	if (def == NULL) {
		c.name = "";
		cmd_bad(&c, "Unknown command");
		return;
	}
	snprintf(name, sizeof name, "%s%s", c.uid ? "UID " : "", def->name);
	c.name = name;
	if (!(s->state & def->states)) {
		if (s->state & STATE_NOT_AUTHENTICATED)
			cmd_bad(&c, "Log in first");
		else if (def->states == STATE_SELECTED)
			cmd_bad(&c, "No mailbox selected");
		else
			cmd_bad(&c, "Command not valid in this state");
		return;
	}
	s->view.nechoed = 0;
	def->handler(&c);
	if (!c.replied)
		cmd_no(&c, "SERVERBUG", "Command ended without a reply");
}
