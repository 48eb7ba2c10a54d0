/* Command queueing (tags, literals, continuation gates), writing, reading and the dispatch of
 * responses to the client's state, callbacks and waiting calls. */
#include "imap/client/client-private.h"

#include "imap/base/limits.h"
#include "imap/base/vec.h"
#include "imap/protocol/quote.h"

#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Literals up to this size go without waiting under LITERAL- (RFC 7888 section 5). */
#define CLIENT_LITERAL_MINUS_MAX 4096

imapq_err client_break(struct client *c, imapq_err err, const char *fmt, ...)
{
	va_list ap;

	if (c->broken != IMAPQ_OK)
		return c->broken;
	c->broken = err;
	va_start(ap, fmt);
	vsnprintf(c->error, sizeof(c->error), fmt, ap);
	va_end(ap);
	return err;
}

bool client_tag_done(const struct client *c, unsigned tag)
{
	for (size_t i = 0; i < c->pending_count; i++)
		if (c->pending[i].tag == tag)
			return false;
	return true;
}

size_t client_in_flight(const struct client *c)
{
	return c->pending_count;
}

void client_set_handler(struct client *c, client_response_fn *fn, void *ctx)
{
	c->handler = fn;
	c->handler_ctx = ctx;
}

short client_events(const struct client *c)
{
	bool sendable = buf_len(&c->out) > 0 && (c->gate_count == 0 || c->gates[0].at > c->out_pos);

	return client_conn_events(c->conn, true, sendable);
}

imapq_err client_status_err(enum client_status status, const char *code)
{
	static const struct {
		const char *code;
		imapq_err err;
	} map[] = {
	    {"NONEXISTENT", IMAPQ_E_NONEXISTENT},
	    {"TRYCREATE", IMAPQ_E_NONEXISTENT},
	    {"ALREADYEXISTS", IMAPQ_E_EXISTS},
	    {"NOPERM", IMAPQ_E_NOPERM},
	    {"AUTHENTICATIONFAILED", IMAPQ_E_AUTH},
	    {"AUTHORIZATIONFAILED", IMAPQ_E_AUTH},
	    {"LIMIT", IMAPQ_E_LIMIT},
	    {"TOOBIG", IMAPQ_E_TOOBIG},
	    {"OVERQUOTA", IMAPQ_E_OVERQUOTA},
	    {"UNAVAILABLE", IMAPQ_E_UNAVAILABLE},
	    {"INUSE", IMAPQ_E_UNAVAILABLE},
	};

	if (status == CLIENT_STATUS_OK)
		return IMAPQ_OK;
	if (status == CLIENT_STATUS_NO && code != NULL)
		for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
			if (strcmp(code, map[i].code) == 0)
				return map[i].err;
	return IMAPQ_E_REFUSED;
}

/* Appends s as an astring: atom or quoted inline, else a literal part. */
static void io_astring(struct client *c, const char *s, size_t len, unsigned tag, bool *gated);

/* Appends a literal header and the bytes, with a gate unless the server takes them unasked. */
static void io_literal(struct client *c, const char *data, size_t len, unsigned tag, bool *gated)
{
	bool plus = client_has_cap(c, "LITERAL+") ||
		    (client_has_cap(c, "LITERAL-") && len <= CLIENT_LITERAL_MINUS_MAX);

	buf_printf(&c->out, "{%zu%s}\r\n", len, plus ? "+" : "");
	if (!plus) {
		struct client_gate g = {.at = c->out_pos + buf_len(&c->out), .tag = tag};

		if (!vec_push((void **)&c->gates, &c->gate_count, &c->gate_cap, sizeof(g), &g))
			c->out.failed = true;
		*gated = true;
	}
	buf_append(&c->out, data, len);
}

static void io_astring(struct client *c, const char *s, size_t len, unsigned tag, bool *gated)
{
	enum quote_form form = quote_form_for(s, len, true);
	char small[256];
	size_t n;

	if (form == QUOTE_LITERAL) {
		io_literal(c, s, len, tag, gated);
		return;
	}
	n = quote_write(small, sizeof(small), s, len, form);
	if (n < sizeof(small)) {
		buf_append(&c->out, small, n);
		return;
	}
	char *big = malloc(n + 1);

	if (big == NULL) {
		c->out.failed = true;
		return;
	}
	quote_write(big, n + 1, s, len, form);
	buf_append(&c->out, big, n);
	free(big);
}

imapq_err client_submit(struct client *c, const struct client_part *parts, size_t count,
			client_done_fn *done, void *ctx, unsigned *tag_r)
{
	size_t mark = buf_len(&c->out), gates_before = c->gate_count;
	struct client_pending pend = {.tag = ++c->next_tag, .done = done, .ctx = ctx};
	bool gated = false;

	if (c->broken != IMAPQ_OK)
		return c->broken;
	if (c->next_tag == 0)
		pend.tag = c->next_tag = 1;
	buf_printf(&c->out, "c%u ", pend.tag);
	for (size_t i = 0; i < count; i++) {
		const struct client_part *p = &parts[i];
		size_t len = p->len;

		if (p->type != CLIENT_PART_LITERAL && len == 0 && p->data != NULL)
			len = strlen(p->data);
		switch (p->type) {
		case CLIENT_PART_TEXT:
			buf_append(&c->out, p->data, len);
			break;
		case CLIENT_PART_LITERAL:
			io_literal(c, p->data, len, pend.tag, &gated);
			break;
		case CLIENT_PART_STRING:
			io_astring(c, p->data ? p->data : "", p->data ? len : 0, pend.tag, &gated);
			break;
		case CLIENT_PART_CONTINUATION: {
			struct client_gate g = {.tag = pend.tag};

			buf_append(&c->out, "\r\n", 2);
			g.at = c->out_pos + buf_len(&c->out);
			if (!vec_push((void **)&c->gates, &c->gate_count, &c->gate_cap, sizeof(g),
				      &g))
				c->out.failed = true;
			gated = true;
			break;
		}
		}
	}
	buf_append(&c->out, "\r\n", 2);
	if (buf_failed(&c->out) || !vec_push((void **)&c->pending, &c->pending_count,
					     &c->pending_cap, sizeof(pend), &pend)) {
		/* Undo the half-queued command; earlier ones stay intact. */
		c->out.failed = false;
		buf_truncate(&c->out, mark);
		c->gate_count = gates_before;
		return IMAPQ_E_NOMEM;
	}
	for (size_t i = gates_before; gated && i < c->gate_count; i++)
		c->gates[i].end = c->out_pos + buf_len(&c->out);
	if (tag_r != NULL)
		*tag_r = pend.tag;
	return IMAPQ_OK;
}

/* Formats a command's text into a single text part; *text_r is the malloc'd text, which the
 * caller frees once the part is queued. IMAPQ_E_NOMEM when formatting fails. */
__attribute__((format(printf, 3, 0))) static imapq_err
format_part(struct client_part *part, char **text_r, const char *fmt, va_list ap)
{
	char *text = NULL;
	int n = vasprintf(&text, fmt, ap);

	if (n < 0)
		return IMAPQ_E_NOMEM;
	*part = (struct client_part){.type = CLIENT_PART_TEXT, .data = text, .len = (size_t)n};
	*text_r = text;
	return IMAPQ_OK;
}

imapq_err client_submitf(struct client *c, client_done_fn *done, void *ctx, unsigned *tag_r,
			 const char *fmt, ...)
{
	struct client_part part;
	va_list ap;
	char *text;
	imapq_err err;

	va_start(ap, fmt);
	err = format_part(&part, &text, fmt, ap);
	va_end(ap);
	if (err != IMAPQ_OK)
		return err;
	err = client_submit(c, &part, 1, done, ctx, tag_r);
	free(text);
	return err;
}

imapq_err client_flush(struct client *c)
{
	while (c->broken == IMAPQ_OK && buf_len(&c->out) > 0) {
		size_t len = buf_len(&c->out), n;

		if (c->gate_count > 0) {
			if (c->gates[0].at <= c->out_pos)
				break;
			if (c->gates[0].at - c->out_pos < len)
				len = (size_t)(c->gates[0].at - c->out_pos);
		}
		if (client_conn_write(c->conn, buf_bytes(&c->out), len, &n) != IMAPQ_OK)
			return client_break(c, IMAPQ_E_IO, "the connection to the server broke");
		if (n == 0)
			break;
		buf_consume(&c->out, n);
		c->out_pos += n;
	}
	return c->broken;
}

/* Copies the tagged reply the waiting call wants. */
static void io_keep_reply(struct client *c, const struct client_response *r)
{
	struct client_reply *k = &c->reply;
	struct seqset *sets[2] = {NULL, NULL};
	const struct seqset *from[2] = {r->code.set, r->code.set2};

	free((char *)k->code_name);
	free((char *)k->code_text);
	free((char *)k->text);
	seqset_destroy((struct seqset **)&k->set);
	seqset_destroy((struct seqset **)&k->set2);
	memset(k, 0, sizeof(*k));
	k->status = r->status;
	k->code = r->code.type;
	k->number = r->code.number;
	k->code_name = r->code.name ? strdup(r->code.name) : NULL;
	k->code_text = strdup(r->code.text ? r->code.text : "");
	k->text = strdup(r->text ? r->text : "");
	for (int i = 0; i < 2; i++) {
		if (from[i] == NULL || seqset_create(&sets[i]) != IMAPQ_OK)
			continue;
		const struct seqset_range *rg = seqset_ranges(from[i]);

		for (size_t j = 0; j < seqset_range_count(from[i]); j++)
			seqset_add(sets[i], rg[j].lo, rg[j].hi);
	}
	k->set = sets[0];
	k->set2 = sets[1];
	if (k->status != CLIENT_STATUS_OK)
		snprintf(c->error, sizeof(c->error), "%s %s%s%s%s%s", r->name,
			 r->code.name ? "[" : "", r->code.name ? r->code.name : "",
			 r->code.name && *r->code.text ? " " : "", r->code.name ? r->code.text : "",
			 r->code.name ? "] " : "");
	if (k->status != CLIENT_STATUS_OK)
		strncat(c->error, k->text ? k->text : "", sizeof(c->error) - strlen(c->error) - 1);
}

/* Finishes the command of a tagged response. */
static imapq_err io_tagged(struct client *c, const struct client_response *r)
{
	unsigned long tag;
	char *end;
	size_t i;

	if (r->tag[0] != 'c' || (tag = strtoul(r->tag + 1, &end, 10)) == 0 || *end != '\0')
		return client_break(c, IMAPQ_E_INVALID, "the server answered an unknown tag %.64s",
				    r->tag);
	for (i = 0; i < c->pending_count && c->pending[i].tag != tag; i++)
		;
	if (i == c->pending_count)
		return client_break(c, IMAPQ_E_INVALID, "the server answered an unknown tag %.64s",
				    r->tag);
	struct client_pending p = c->pending[i];

	memmove(&c->pending[i], &c->pending[i + 1], (c->pending_count - i - 1) * sizeof(p));
	c->pending_count--;
	/* A command refused before its literal: the held-back rest is never sent. */
	if (c->gate_count > 0 && c->gates[0].tag == tag && c->gates[0].at <= c->out_pos) {
		uint64_t drop = c->gates[0].end - c->out_pos;

		buf_consume(&c->out, (size_t)drop);
		c->out_pos += drop;
	}
	size_t kept = 0;

	for (size_t j = 0; j < c->gate_count; j++)
		if (c->gates[j].tag != tag)
			c->gates[kept++] = c->gates[j];
	c->gate_count = kept;
	if (tag == c->idle_tag)
		c->idle = CLIENT_IDLE_OFF;
	if (tag == c->wait_tag) {
		io_keep_reply(c, r);
		c->wait_done = true;
	}
	if (r->code.type == CLIENT_CODE_READ_ONLY)
		c->mailbox.read_only = true;
	if (p.done != NULL)
		p.done(p.tag, r, p.ctx);
	return IMAPQ_OK;
}

/* Keeps the client's own state current, then hands an untagged response on. */
static imapq_err io_untagged(struct client *c, const struct client_response *r)
{
	const struct client_code *code = &r->code;

	switch (r->type) {
	case CLIENT_RESP_CAPABILITY:
		client_set_caps(c, r->words, r->word_count);
		break;
	case CLIENT_RESP_ENABLED:
		for (size_t i = 0; i < r->word_count; i++) {
			if (client_value_is(&r->words[i], "CONDSTORE"))
				c->condstore = true;
			if (client_value_is(&r->words[i], "QRESYNC"))
				c->condstore = c->qresync = true;
		}
		break;
	case CLIENT_RESP_EXISTS:
		c->mailbox.exists = r->number;
		c->changes++;
		break;
	case CLIENT_RESP_EXPUNGE:
		if (c->mailbox.exists > 0)
			c->mailbox.exists--;
		c->changes++;
		break;
	case CLIENT_RESP_FETCH:
		if ((r->fetch.have & CLIENT_FETCH_MODSEQ) &&
		    r->fetch.modseq > c->mailbox.highestmodseq)
			c->mailbox.highestmodseq = r->fetch.modseq;
		c->changes++;
		break;
	case CLIENT_RESP_VANISHED:
		if (!r->vanished.earlier) {
			uint64_t n = seqset_size(r->vanished.uids);

			c->mailbox.exists =
			    n >= c->mailbox.exists ? 0 : c->mailbox.exists - (uint32_t)n;
		}
		c->changes++;
		break;
	case CLIENT_RESP_STATUS:
		if (r->status == CLIENT_STATUS_BYE && c->logout)
			break; /* the answer to LOGOUT */
		if (r->status == CLIENT_STATUS_BYE)
			return client_break(c, IMAPQ_E_UNAVAILABLE, "the server closed: %.200s",
					    r->text);
		break;
	default:
		break;
	}
	if (code->type == CLIENT_CODE_CAPABILITY)
		client_set_caps(c, code->args, code->arg_count);
	else if (code->type == CLIENT_CODE_UIDVALIDITY)
		c->mailbox.uidvalidity = (uint32_t)code->number;
	else if (code->type == CLIENT_CODE_UIDNEXT)
		c->mailbox.uidnext = (uint32_t)code->number;
	else if (code->type == CLIENT_CODE_HIGHESTMODSEQ)
		c->mailbox.highestmodseq = code->number;
	if (c->collector != NULL)
		c->collector(r, c->collector_ctx);
	else if (c->handler != NULL)
		c->handler(r, c->handler_ctx);
	return IMAPQ_OK;
}

static imapq_err io_dispatch(struct client *c, const struct client_response *r)
{
	if (r->type == CLIENT_RESP_TAGGED) {
		if (r->code.type == CLIENT_CODE_CAPABILITY)
			client_set_caps(c, r->code.args, r->code.arg_count);
		return io_tagged(c, r);
	}
	if (r->type == CLIENT_RESP_CONTINUE) {
		if (c->gate_count > 0 && c->gates[0].at <= c->out_pos) {
			memmove(&c->gates[0], &c->gates[1],
				(c->gate_count - 1) * sizeof(c->gates[0]));
			c->gate_count--;
		} else if (c->idle == CLIENT_IDLE_STARTING) {
			c->idle = CLIENT_IDLE_ON;
		} else {
			return client_break(c, IMAPQ_E_INVALID,
					    "the server sent an unexpected continuation");
		}
		return IMAPQ_OK;
	}
	return io_untagged(c, r);
}

imapq_err client_process(struct client *c)
{
	for (;;) {
		while (c->broken == IMAPQ_OK && buf_len(&c->in) > 0) {
			size_t used;
			enum client_parse_result res = client_parser_feed(
			    c->parser, buf_bytes(&c->in), buf_len(&c->in), &used);

			buf_consume(&c->in, used);
			if (res == CLIENT_PARSE_ERROR) {
				const char *msg;
				imapq_err err = client_parser_error(c->parser, &msg);

				return client_break(c, err == IMAPQ_E_NOMEM ? err : IMAPQ_E_INVALID,
						    "bad response from the server: %s", msg);
			}
			if (res == CLIENT_PARSE_RESPONSE)
				io_dispatch(c, client_parser_response(c->parser));
		}
		if (c->broken != IMAPQ_OK)
			return c->broken;
		char *room = buf_reserve(&c->in, IMAPQ_READ_CHUNK);
		size_t n;

		if (room == NULL)
			return client_break(c, IMAPQ_E_NOMEM, "out of memory");
		if (client_conn_read(c->conn, room, IMAPQ_READ_CHUNK, &n) != IMAPQ_OK)
			return client_break(c, IMAPQ_E_IO, "the server closed the connection");
		if (n == 0)
			return IMAPQ_OK;
		buf_commit(&c->in, n);
	}
}

static long long io_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

imapq_err client_run_until(struct client *c, bool (*fn)(const struct client *c, unsigned arg),
			   unsigned arg, int timeout_ms, bool interruptible)
{
	long long deadline = timeout_ms < 0 ? -1 : io_now_ms() + timeout_ms;

	for (;;) {
		imapq_err err = client_flush(c);
		bool ready;

		if (err == IMAPQ_OK)
			err = client_process(c);
		if (err != IMAPQ_OK)
			return err;
		if (fn(c, arg))
			return IMAPQ_OK;
		/* Writing may have become possible after the reads. */
		if (client_flush(c) != IMAPQ_OK)
			return c->broken;
		long long left = deadline < 0 ? -1 : deadline - io_now_ms();
		short ev = client_events(c);

		if (left == 0 || (deadline >= 0 && left < 0))
			left = 0;
		err = client_conn_wait(c->conn, ev & POLLIN, ev & POLLOUT, (int)left, &ready);
		if (err == IMAPQ_E_TIMEOUT) {
			if (interruptible)
				return IMAPQ_E_TIMEOUT;
			return client_break(c, IMAPQ_E_TIMEOUT,
					    "the server did not answer in time");
		}
		if (err != IMAPQ_OK)
			return client_break(c, err, "waiting for the server failed");
		if (!ready && interruptible)
			return IMAPQ_OK;
	}
}

static bool io_is_done(const struct client *c, unsigned tag)
{
	return client_tag_done(c, tag);
}

imapq_err client_wait(struct client *c, unsigned tag)
{
	imapq_err err;

	c->wait_tag = tag;
	c->wait_done = false;
	err = client_run_until(c, io_is_done, tag, c->timeout_ms, false);
	c->wait_tag = 0;
	if (err != IMAPQ_OK)
		return err;
	if (!c->wait_done)
		return client_break(c, IMAPQ_E_INVALID, "the command c%u was never answered", tag);
	return client_status_err(c->reply.status, c->reply.code_name);
}

imapq_err client_cmd_parts(struct client *c, client_response_fn *fn, void *ctx,
			   const struct client_part *parts, size_t count)
{
	unsigned tag;
	imapq_err err = client_submit(c, parts, count, NULL, NULL, &tag);
	client_response_fn *saved_fn = c->collector;
	void *saved_ctx = c->collector_ctx;

	if (err != IMAPQ_OK)
		return err;
	if (fn != NULL) {
		c->collector = fn;
		c->collector_ctx = ctx;
	}
	err = client_wait(c, tag);
	c->collector = saved_fn;
	c->collector_ctx = saved_ctx;
	return err;
}

imapq_err client_cmdf(struct client *c, client_response_fn *fn, void *ctx, const char *fmt, ...)
{
	struct client_part part;
	va_list ap;
	char *text;
	imapq_err err;

	if (c->broken != IMAPQ_OK)
		return c->broken;
	va_start(ap, fmt);
	err = format_part(&part, &text, fmt, ap);
	va_end(ap);
	if (err != IMAPQ_OK)
		return err;
	err = client_cmd_parts(c, fn, ctx, &part, 1);
	free(text);
	return err;
}

const struct client_reply *client_reply(const struct client *c)
{
	return &c->reply;
}
