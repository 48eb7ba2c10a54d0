/* The client's life: connect (with STARTTLS or implicit TLS), capabilities, login, select,
 * logout and destroy. */
#include "imap/client/client-private.h"

#include "imap/base/limits.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void client_free_caps(struct client *c)
{
	for (size_t i = 0; i < c->cap_count; i++)
		free(c->caps[i]);
	free(c->caps);
	c->caps = NULL;
	c->cap_count = 0;
}

void client_set_caps(struct client *c, const struct client_value *words, size_t count)
{
	char **caps = calloc(count ? count : 1, sizeof(*caps));
	size_t n = 0;

	c->saw_caps = true;
	if (caps == NULL)
		return; /* keep the old list: a stale answer beats none */
	for (size_t i = 0; i < count; i++) {
		if (words[i].type != CLIENT_VALUE_ATOM)
			continue;
		caps[n] = strdup(words[i].str);
		if (caps[n] != NULL)
			n++;
	}
	client_free_caps(c);
	c->caps = caps;
	c->cap_count = n;
}

bool client_has_cap(const struct client *c, const char *name)
{
	for (size_t i = 0; i < c->cap_count; i++)
		if (strcasecmp(c->caps[i], name) == 0)
			return true;
	return false;
}

const char *client_error(const struct client *c)
{
	return c->error[0] ? c->error : "no error";
}

int client_fd(const struct client *c)
{
	return client_conn_fd(c->conn);
}

bool client_is_tls(const struct client *c)
{
	return client_conn_is_tls(c->conn);
}

const struct client_mailbox *client_mailbox(const struct client *c)
{
	return &c->mailbox;
}

bool client_condstore(const struct client *c)
{
	return c->condstore;
}

/* The greeting is the first response; it is an untagged OK, PREAUTH or BYE. */
struct client_greeting {
	bool seen;
	enum client_status status;
};

static void client_on_greeting(const struct client_response *r, void *ctx)
{
	struct client_greeting *g = ctx;

	if (!g->seen && r->type == CLIENT_RESP_STATUS) {
		g->seen = true;
		g->status = r->status;
	}
}

static bool client_greeted(const struct client *c, unsigned arg)
{
	const struct client_greeting *g = c->collector_ctx;

	(void)arg;
	return g->seen;
}

/* Reads the greeting. */
static imapq_err client_read_greeting(struct client *c)
{
	struct client_greeting g = {0};
	imapq_err err;

	c->collector = client_on_greeting;
	c->collector_ctx = &g;
	err = client_run_until(c, client_greeted, 0, c->timeout_ms, false);
	c->collector = NULL;
	c->collector_ctx = NULL;
	if (err != IMAPQ_OK)
		return err;
	if (g.status == CLIENT_STATUS_BYE)
		return client_break(c, IMAPQ_E_UNAVAILABLE, "the server refused the connection");
	if (g.status != CLIENT_STATUS_OK && g.status != CLIENT_STATUS_PREAUTH)
		return client_break(c, IMAPQ_E_INVALID, "the server's greeting is not OK");
	return IMAPQ_OK;
}

/* Asks for the capabilities unless a response already listed them since saw_caps was cleared. */
static imapq_err client_refresh_caps(struct client *c)
{
	if (c->saw_caps)
		return IMAPQ_OK;
	return client_cmdf(c, NULL, NULL, "CAPABILITY");
}

static imapq_err client_starttls(struct client *c, const struct client_conn_tls *tls)
{
	imapq_err err;

	if (!client_has_cap(c, "STARTTLS")) {
		snprintf(c->error, sizeof(c->error), "the server does not offer STARTTLS");
		return IMAPQ_E_UNSUPPORTED;
	}
	err = client_cmdf(c, NULL, NULL, "STARTTLS");
	if (err != IMAPQ_OK)
		return err;
	/* Bytes that came in plaintext after the OK could be injected: never read them as TLS. */
	buf_reset(&c->in);
	client_parser_reset(c->parser);
	err =
	    client_conn_start_tls(c->conn, c->host, tls, c->timeout_ms, c->error, sizeof(c->error));
	if (err != IMAPQ_OK)
		return client_break(c, err, "%s", c->error);
	/* Capabilities learnt before TLS may have been forged. */
	client_free_caps(c);
	c->saw_caps = false;
	return client_refresh_caps(c);
}

imapq_err client_connect(const struct client_options *o, char *errbuf, size_t errcap,
			 struct client **client_r)
{
	struct client_conn_tls tls = {
	    .ca_file = o->ca_file, .server_name = o->server_name, .insecure = o->tls_insecure};
	struct client *c = calloc(1, sizeof(*c));
	const char *host = o->host ? o->host : "127.0.0.1";
	unsigned port = o->port ? o->port : o->tls == CLIENT_TLS_IMPLICIT ? 993 : 143;
	imapq_err err;

	*client_r = NULL;
	if (c == NULL) {
		if (errbuf != NULL && errcap > 0)
			snprintf(errbuf, errcap, "out of memory");
		return IMAPQ_E_NOMEM;
	}
	if ((c->host = strdup(host)) == NULL || client_parser_create(0, &c->parser) != IMAPQ_OK) {
		err = IMAPQ_E_NOMEM;
		snprintf(c->error, sizeof(c->error), "out of memory");
		goto fail;
	}
	c->timeout_ms = o->timeout_ms == 0 ? IMAPQ_CLIENT_TIMEOUT_MS : o->timeout_ms;
	err = client_conn_open(host, port, c->timeout_ms, c->error, sizeof(c->error), &c->conn);
	if (err == IMAPQ_OK && o->tls == CLIENT_TLS_IMPLICIT)
		err = client_conn_start_tls(c->conn, host, &tls, c->timeout_ms, c->error,
					    sizeof(c->error));
	if (err == IMAPQ_OK)
		err = client_read_greeting(c);
	if (err == IMAPQ_OK)
		err = client_refresh_caps(c);
	if (err == IMAPQ_OK && o->tls == CLIENT_TLS_STARTTLS)
		err = client_starttls(c, &tls);
	if (err == IMAPQ_OK) {
		*client_r = c;
		return IMAPQ_OK;
	}
fail:
	if (errbuf != NULL && errcap > 0)
		snprintf(errbuf, errcap, "%s", c->error);
	client_destroy(&c);
	return err;
}

void client_destroy(struct client **client)
{
	struct client *c = *client;

	if (c == NULL)
		return;
	/* Callers learn that their commands will never be answered. */
	while (c->pending_count > 0) {
		struct client_pending p = c->pending[--c->pending_count];

		if (p.done != NULL)
			p.done(p.tag, NULL, p.ctx);
	}
	client_conn_close(&c->conn);
	client_parser_destroy(&c->parser);
	client_free_caps(c);
	buf_free(&c->in);
	buf_free(&c->out);
	free(c->gates);
	free(c->pending);
	free((char *)c->reply.code_name);
	free((char *)c->reply.code_text);
	free((char *)c->reply.text);
	seqset_destroy((struct seqset **)&c->reply.set);
	seqset_destroy((struct seqset **)&c->reply.set2);
	free(c->host);
	free(c);
	*client = NULL;
}

/* AUTHENTICATE PLAIN: "\0user\0password" in base64, in the command with SASL-IR. */
static imapq_err client_auth_plain(struct client *c, const char *user, const char *password)
{
	size_t ul = strlen(user), pl = strlen(password), n = ul + pl + 2;
	unsigned char *raw = malloc(n);
	char *b64 = malloc(4 * ((n + 2) / 3) + 1);
	imapq_err err = IMAPQ_E_NOMEM;

	if (raw != NULL && b64 != NULL) {
		raw[0] = '\0';
		memcpy(raw + 1, user, ul);
		raw[1 + ul] = '\0';
		memcpy(raw + 2 + ul, password, pl);
		int len = EVP_EncodeBlock((unsigned char *)b64, raw, (int)n);
		bool ir = client_has_cap(c, "SASL-IR");
		struct client_part parts[] = {
		    {CLIENT_PART_TEXT, "AUTHENTICATE PLAIN", 18},
		    {ir ? CLIENT_PART_TEXT : CLIENT_PART_CONTINUATION, ir ? " " : NULL, ir ? 1 : 0},
		    {CLIENT_PART_TEXT, b64, (size_t)len},
		};

		err = client_cmd_parts(c, NULL, NULL, parts, 3);
		OPENSSL_cleanse(raw, n);
		OPENSSL_cleanse(b64, (size_t)len);
	}
	free(raw);
	free(b64);
	return err;
}

imapq_err client_login(struct client *c, const char *user, const char *password)
{
	imapq_err err;

	if (c->broken != IMAPQ_OK)
		return c->broken;
	c->saw_caps = false;
	if (client_has_cap(c, "AUTH=PLAIN")) {
		err = client_auth_plain(c, user, password);
	} else if (client_has_cap(c, "LOGINDISABLED")) {
		snprintf(c->error, sizeof(c->error),
			 "the server allows neither LOGIN nor AUTHENTICATE PLAIN here");
		return IMAPQ_E_UNSUPPORTED;
	} else {
		struct client_part parts[] = {
		    {CLIENT_PART_TEXT, "LOGIN ", 6},
		    {CLIENT_PART_STRING, user, strlen(user)},
		    {CLIENT_PART_TEXT, " ", 1},
		    {CLIENT_PART_STRING, password, strlen(password)},
		};

		err = client_cmd_parts(c, NULL, NULL, parts, 4);
	}
	if (err == IMAPQ_E_REFUSED && c->reply.status == CLIENT_STATUS_NO)
		err = IMAPQ_E_AUTH;
	if (err != IMAPQ_OK)
		return err;
	/* Servers announce more after login; ask unless the OK carried the new list. */
	return client_refresh_caps(c);
}

imapq_err client_select(struct client *c, const char *mailbox, unsigned flags,
			struct client_mailbox *mailbox_r)
{
	bool want_qresync = (flags & CLIENT_SELECT_QRESYNC) && client_has_cap(c, "QRESYNC");
	imapq_err err = IMAPQ_OK;

	if (c->broken != IMAPQ_OK)
		return c->broken;
	if (want_qresync && !c->qresync)
		err = client_cmdf(c, NULL, NULL, "ENABLE CONDSTORE QRESYNC");
	else if (!c->condstore && client_has_cap(c, "CONDSTORE") && client_has_cap(c, "ENABLE"))
		err = client_cmdf(c, NULL, NULL, "ENABLE CONDSTORE");
	if (err != IMAPQ_OK)
		return err;
	memset(&c->mailbox, 0, sizeof(c->mailbox));
	struct client_part parts[] = {
	    {CLIENT_PART_TEXT, flags & CLIENT_SELECT_READ_ONLY ? "EXAMINE " : "SELECT ", 0},
	    {CLIENT_PART_STRING, mailbox, strlen(mailbox)},
	    /* Without ENABLE, the CONDSTORE parameter turns mod-sequences on (RFC 7162 3.1). */
	    {CLIENT_PART_TEXT,
	     !c->condstore && client_has_cap(c, "CONDSTORE") ? " (CONDSTORE)" : "", 0},
	};

	if (parts[2].data[0] != '\0')
		c->condstore = true;
	err = client_cmd_parts(c, NULL, NULL, parts, parts[2].data[0] ? 3 : 2);
	if (err == IMAPQ_OK && c->reply.code == CLIENT_CODE_READ_ONLY)
		c->mailbox.read_only = true;
	if (err == IMAPQ_OK && mailbox_r != NULL)
		*mailbox_r = c->mailbox;
	return err;
}

imapq_err client_logout(struct client *c)
{
	if (c->broken != IMAPQ_OK)
		return c->broken;
	c->logout = true;
	return client_cmdf(c, NULL, NULL, "LOGOUT");
}
