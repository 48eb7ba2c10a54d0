/* Commands valid in any state or that only talk about the session: CAPABILITY, NOOP, LOGOUT,
 * ID (RFC 2971), ENABLE (RFC 5161), NAMESPACE (RFC 2342), IDLE (RFC 2177) and CHECK. */
#include <string.h>
#include <strings.h>

#include "imap/server/server-private.h"

void cmd_capability(struct cmd *c)
{
	if (!cmd_want_args(c, 0, 0))
		return;
	session_lit(c->s, "* CAPABILITY ");
	cmd_write_capabilities(c->s);
	session_lit(c->s, "\r\n");
	cmd_ok(c, NULL, "CAPABILITY completed");
}

void cmd_noop(struct cmd *c)
{
	if (!cmd_want_args(c, 0, 0))
		return;
	cmd_ok(c, NULL, "NOOP completed");
}

void cmd_check(struct cmd *c)
{
	if (!cmd_want_args(c, 0, 0))
		return;
	/* Every change is already in the journal; replies wait for its fsync. */
	cmd_ok(c, NULL, "CHECK completed");
}

void cmd_logout(struct cmd *c)
{
	if (!cmd_want_args(c, 0, 0))
		return;
	session_lit(c->s, "* BYE Logging out\r\n");
	c->s->state = STATE_LOGOUT;
	cmd_ok(c, NULL, "LOGOUT completed");
	session_close_after_output(c->s);
}

void cmd_id(struct cmd *c)
{
	if (!cmd_want_args(c, 1, 1))
		return;
	const struct parser_arg *a = &c->args[0];
	if (a->type == PARSER_ARG_LIST) {
		/* Field/value pairs of strings, at most 30 (RFC 2971 section 3.3). */
		if (a->count % 2 != 0 || a->count > 60) {
			cmd_bad(c, "ID takes field/value pairs");
			return;
		}
		for (size_t i = 0; i < a->count; i++) {
			const char *str;
			size_t len;
			if (!parser_arg_nstring(&a->list[i], &str, &len) &&
			    !parser_arg_astring(&a->list[i], &str, &len)) {
				cmd_bad(c, "ID takes strings");
				return;
			}
		}
	} else if (a->type != PARSER_ARG_NIL) {
		cmd_bad(c, "ID takes a list or NIL");
		return;
	}
	session_lit(c->s, "* ID (\"name\" \"imapq\" \"version\" \"0.1.0\")\r\n");
	cmd_ok(c, NULL, "ID completed");
}

void cmd_enable(struct cmd *c)
{
	struct session *s = c->s;
	if (!cmd_want_args(c, 1, 64))
		return;
	unsigned newly = 0;
	for (size_t i = 0; i < c->count; i++) {
		const struct parser_arg *a = &c->args[i];
		if (a->type != PARSER_ARG_ATOM) {
			cmd_bad(c, "ENABLE takes capability names");
			return;
		}
		unsigned bit = 0;
		if (parser_arg_is_atom(a, "CONDSTORE"))
			bit = ENABLED_CONDSTORE;
		else if (parser_arg_is_atom(a, "QRESYNC"))
			bit = ENABLED_QRESYNC | ENABLED_CONDSTORE; /* RFC 7162 3.2.3 */
		newly |= bit & ~s->enabled;
	}
	if (newly & ENABLED_CONDSTORE)
		session_enable_condstore(s);
	s->enabled |= newly;
	session_lit(s, "* ENABLED");
	if (newly & ENABLED_CONDSTORE)
		session_lit(s, " CONDSTORE");
	if (newly & ENABLED_QRESYNC)
		session_lit(s, " QRESYNC");
	session_lit(s, "\r\n");
	cmd_ok(c, NULL, "ENABLE completed");
}

void cmd_namespace(struct cmd *c)
{
	if (!cmd_want_args(c, 0, 0))
		return;
	session_lit(c->s, "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n");
	cmd_ok(c, NULL, "NAMESPACE completed");
}

void cmd_idle(struct cmd *c)
{
	struct session *s = c->s;
	if (!cmd_want_args(c, 0, 0))
		return;
	if (strlen(c->tag) >= sizeof s->idle_tag) {
		cmd_bad(c, "Tag too long for IDLE");
		return;
	}
	strcpy(s->idle_tag, c->tag);
	/* Counted as idling before the sync, so no change can fall between the two. */
	s->idling = true;
	server_note_idle(s->server, true);
	if (s->state & STATE_SELECTED)
		view_sync(s, true);
	/* The tagged reply comes when the client sends DONE. */
	c->replied = true;
	session_lit(s, "+ idling\r\n");
}
