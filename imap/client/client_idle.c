/* IDLE (RFC 2177): start, wait for mailbox changes with a timeout, DONE. */
#include "imap/client/client-private.h"

#include <stdio.h>

static bool idle_started(const struct client *c, unsigned tag)
{
	return c->idle != CLIENT_IDLE_STARTING || client_tag_done(c, tag);
}

imapq_err client_idle_start(struct client *c)
{
	imapq_err err;
	unsigned tag;

	if (c->broken != IMAPQ_OK)
		return c->broken;
	if (!client_has_cap(c, "IDLE")) {
		snprintf(c->error, sizeof(c->error), "the server does not offer IDLE");
		return IMAPQ_E_UNSUPPORTED;
	}
	if (c->idle != CLIENT_IDLE_OFF)
		return IMAPQ_E_INVALID;
	err = client_submitf(c, NULL, NULL, &tag, "IDLE");
	if (err != IMAPQ_OK)
		return err;
	c->idle = CLIENT_IDLE_STARTING;
	c->idle_tag = tag;
	c->idle_changes = c->changes;
	c->wait_tag = tag;
	c->wait_done = false;
	err = client_run_until(c, idle_started, tag, c->timeout_ms, false);
	c->wait_tag = 0;
	if (err != IMAPQ_OK)
		return err;
	if (c->idle != CLIENT_IDLE_ON) {
		/* Answered without "+": refused. */
		c->idle_tag = 0;
		err = client_status_err(c->reply.status, c->reply.code_name);
		return err != IMAPQ_OK ? err : IMAPQ_E_REFUSED;
	}
	return IMAPQ_OK;
}

static bool idle_woken(const struct client *c, unsigned arg)
{
	(void)arg;
	return c->changes != c->idle_changes || c->idle != CLIENT_IDLE_ON;
}

imapq_err client_idle_wait(struct client *c, int timeout_ms, bool *woke_r)
{
	imapq_err err;

	*woke_r = false;
	if (c->broken != IMAPQ_OK)
		return c->broken;
	if (c->idle != CLIENT_IDLE_ON)
		return IMAPQ_E_INVALID;
	err = client_run_until(c, idle_woken, 0, timeout_ms, true);
	*woke_r = c->changes != c->idle_changes;
	if (err == IMAPQ_E_TIMEOUT && c->broken == IMAPQ_OK)
		return IMAPQ_OK;
	/* A server may end IDLE on its own; the caller looks at the mailbox again either way. */
	if (err == IMAPQ_OK && c->idle != CLIENT_IDLE_ON)
		*woke_r = true;
	return err;
}

imapq_err client_idle_done(struct client *c)
{
	imapq_err err;
	unsigned tag = c->idle_tag;

	if (c->broken != IMAPQ_OK)
		return c->broken;
	if (c->idle == CLIENT_IDLE_OFF && tag == 0)
		return IMAPQ_E_INVALID;
	if (c->idle == CLIENT_IDLE_ON) {
		buf_append(&c->out, "DONE\r\n", 6);
		if (buf_failed(&c->out))
			return client_break(c, IMAPQ_E_NOMEM, "out of memory");
	}
	c->idle = CLIENT_IDLE_OFF;
	c->idle_tag = 0;
	if (client_tag_done(c, tag))
		return IMAPQ_OK;
	err = client_wait(c, tag);
	return err;
}
