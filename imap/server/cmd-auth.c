/* Authentication: LOGIN, AUTHENTICATE PLAIN (with SASL-IR, RFC 4959) and STARTTLS. */
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "imap/base/limits.h"
#include "imap/base/log.h"
#include "imap/server/server-private.h"

/* True when a password may be sent on this connection (RFC 3501 6.2.3, RFC 8314). */
static bool plaintext_allowed(const struct session *s)
{
	return s->loopback || s->server->opts.allow_plaintext;
}

/* Checks the credentials and moves to the authenticated state, replying either way. */
static void finish_login(struct cmd *c, const char *user, const char *password)
{
	struct session *s = c->s;
	const struct imap_server_options *o = &s->server->opts;
	imapq_err err = o->auth != NULL ? o->auth(o->auth_ctx, user, password) : IMAPQ_E_AUTH;
	if (err != IMAPQ_OK) {
		s->auth_failures++;
		log_info(SERVER_LOG, "%s: login failed for '%s'", s->peer, user);
		cmd_no(c, err == IMAPQ_E_AUTH ? "AUTHENTICATIONFAILED" : "UNAVAILABLE",
		       err == IMAPQ_E_AUTH ? "Invalid credentials" : imapq_err_message(err));
		if (s->auth_failures >= IMAPQ_MAX_AUTH_FAILURES) {
			session_lit(s, "* BYE Too many failed logins\r\n");
			session_close_after_output(s);
		}
		return;
	}
	size_t len = strlen(user);
	if (len >= sizeof s->user)
		len = sizeof s->user - 1;
	memcpy(s->user, user, len);
	s->user[len] = '\0';
	s->state = STATE_AUTHENTICATED;
	struct parser_limits limits = parser_limits_default(true);
	parser_set_limits(s->parser, &limits);
	log_info(SERVER_LOG, "%s: logged in as '%s'", s->peer, s->user);
	session_lit(s, "* CAPABILITY ");
	cmd_write_capabilities(s);
	session_lit(s, "\r\n");
	cmd_ok(c, NULL, "Logged in");
}

void cmd_login(struct cmd *c)
{
	char user[256], password[256];
	if (!cmd_want_args(c, 2, 2))
		return;
	if (!plaintext_allowed(c->s)) {
		cmd_no(c, "PRIVACYREQUIRED", "LOGIN is disabled on unencrypted connections");
		return;
	}
	if (!cmd_arg_astring(c, 0, user, sizeof user) ||
	    !cmd_arg_astring(c, 1, password, sizeof password))
		return;
	finish_login(c, user, password);
	OPENSSL_cleanse(password, sizeof password);
}

/* Decodes a SASL PLAIN response: [authzid] NUL authcid NUL password (RFC 4616). */
static bool decode_plain(const char *b64, size_t len, char *user, size_t ucap, char *password,
			 size_t pcap)
{
	unsigned char raw[1024];
	if (len == 0 || len % 4 != 0 || len / 4 * 3 > sizeof raw)
		return false;
	int n = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)len);
	if (n < 0)
		return false;
	if (len >= 1 && b64[len - 1] == '=')
		n--;
	if (len >= 2 && b64[len - 2] == '=')
		n--;
	const unsigned char *p = raw, *end = raw + n;
	const unsigned char *nul1 = memchr(p, '\0', (size_t)(end - p));
	if (nul1 == NULL)
		return false;
	const unsigned char *authc = nul1 + 1;
	const unsigned char *nul2 = memchr(authc, '\0', (size_t)(end - authc));
	if (nul2 == NULL)
		return false;
	size_t ulen = (size_t)(nul2 - authc), plen = (size_t)(end - nul2 - 1);
	bool ok = ulen > 0 && ulen < ucap && plen < pcap && memchr(nul2 + 1, '\0', plen) == NULL;
	/* An authorization identity other than the user is not supported. */
	if (ok && nul1 != raw && ((size_t)(nul1 - raw) != ulen || memcmp(raw, authc, ulen) != 0))
		ok = false;
	if (ok) {
		memcpy(user, authc, ulen);
		user[ulen] = '\0';
		memcpy(password, nul2 + 1, plen);
		password[plen] = '\0';
	}
	OPENSSL_cleanse(raw, sizeof raw);
	return ok;
}

void session_auth_response(struct session *s, const char *line, size_t len)
{
	struct cmd c = {.s = s, .tag = s->auth_tag, .name = "AUTHENTICATE"};
	s->auth_pending = false;
	if (len == 1 && line[0] == '*') {
		cmd_bad(&c, "AUTHENTICATE cancelled");
		return;
	}
	char user[256], password[256];
	if (!decode_plain(line, len, user, sizeof user, password, sizeof password)) {
		cmd_bad(&c, "Invalid SASL PLAIN response");
		return;
	}
	finish_login(&c, user, password);
	OPENSSL_cleanse(password, sizeof password);
}

void cmd_authenticate(struct cmd *c)
{
	struct session *s = c->s;
	if (!cmd_want_args(c, 1, 2))
		return;
	if (!parser_arg_is_atom(&c->args[0], "PLAIN")) {
		cmd_no(c, "CANNOT", "Unsupported authentication mechanism");
		return;
	}
	if (!plaintext_allowed(s)) {
		cmd_no(c, "PRIVACYREQUIRED", "PLAIN is disabled on unencrypted connections");
		return;
	}
	if (c->count == 2) {
		/* SASL-IR: the initial response rides on the command. */
		const char *str;
		size_t len;
		if (!parser_arg_astring(&c->args[1], &str, &len)) {
			cmd_bad(c, "Invalid initial response");
			return;
		}
		if (len == 1 && str[0] == '=') {
			str = "";
			len = 0;
		}
		char user[256], password[256];
		if (!decode_plain(str, len, user, sizeof user, password, sizeof password)) {
			cmd_bad(c, "Invalid SASL PLAIN response");
			return;
		}
		finish_login(c, user, password);
		OPENSSL_cleanse(password, sizeof password);
		return;
	}
	if (strlen(c->tag) >= sizeof s->auth_tag) {
		cmd_bad(c, "Tag too long");
		return;
	}
	strcpy(s->auth_tag, c->tag);
	s->auth_pending = true;
	c->replied = true;
	session_lit(s, "+ \r\n");
}

void cmd_starttls(struct cmd *c)
{
	if (!cmd_want_args(c, 0, 0))
		return;
	cmd_no(c, "UNAVAILABLE", "TLS is not configured on this server");
}
