/* Authentication: LOGIN, AUTHENTICATE PLAIN (with SASL-IR, RFC 4959) and STARTTLS. */
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "imap/base/limits.h"
#include "imap/base/log.h"
#include "imap/server/server-private.h"

/* Answers a failed login once its delay has passed, then reads the client's input again. */
static void auth_delay_done(void *arg)
{
	struct session *s = arg;
	s->auth_delay = NULL;
	session_printf(s, "%s NO [AUTHENTICATIONFAILED] Invalid credentials\r\n", s->auth_tag);
	if (s->auth_failures >= IMAPQ_MAX_AUTH_FAILURES) {
		session_lit(s, "* BYE Too many failed logins\r\n");
		session_close_after_output(s);
	}
	session_seal(s);
	session_resume(s);
}

/* Holds the answer to a failed login for a delay that doubles with each failure on this
 * connection; the session reads no input meanwhile, so guesses cannot be pipelined past it. */
static void delay_failure(struct cmd *c)
{
	struct session *s = c->s;
	uint64_t first = s->server->opts.auth_fail_delay_ms;
	if (first == 0)
		first = IMAPQ_AUTH_FAIL_DELAY_MS;
	uint64_t max = first * IMAPQ_AUTH_FAIL_DELAY_GROWTH;
	uint64_t ms = first;
	for (unsigned i = 1; i < s->auth_failures && ms < max; i++)
		ms *= 2;
	if (ms > max)
		ms = max;
	if (s->auth_tag != c->tag && strlen(c->tag) < sizeof s->auth_tag)
		strcpy(s->auth_tag, c->tag);
	if ((s->auth_tag != c->tag && strlen(c->tag) >= sizeof s->auth_tag) ||
	    loop_timer_add(s->server->opts.loop, ms, auth_delay_done, s, &s->auth_delay) !=
		IMAPQ_OK) {
		/* No delay possible (a tag too long to keep, or no memory): end the connection. */
		cmd_no(c, "AUTHENTICATIONFAILED", "Invalid credentials");
		session_lit(s, "* BYE Too many failed logins\r\n");
		session_close_after_output(s);
		return;
	}
	c->replied = true;
}

/* Copies the first bytes of a name the client chose into out for a log line, control bytes as
 * '?': a CR or LF would otherwise start a forged line of its own. */
static void loggable_name(const char *name, char *out, size_t cap)
{
	size_t i = 0;
	for (; name[i] != '\0' && i + 1 < cap; i++) {
		unsigned char ch = (unsigned char)name[i];
		out[i] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
	}
	out[i] = '\0';
}

/* Replies to a login with the verdict of the auth callback, moving to the authenticated state
 * on success. */
static void login_result(struct cmd *c, const char *user, imapq_err err,
			 const struct access *access)
{
	struct session *s = c->s;
	char shown[65];
	if (err == IMAPQ_E_AUTH) {
		s->auth_failures++;
		loggable_name(user, shown, sizeof shown);
		log_info(SERVER_LOG, "%s: login failed for '%s' (%u on this connection)", s->peer,
			 shown, s->auth_failures);
		delay_failure(c);
		return;
	}
	if (err != IMAPQ_OK) {
		loggable_name(user, shown, sizeof shown);
		log_info(SERVER_LOG, "%s: login for '%s' not checked: %s", s->peer, shown,
			 imapq_err_message(err));
		cmd_no(c, "UNAVAILABLE", imapq_err_message(err));
		return;
	}
	s->access = access;
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

/* On the loop, once the password thread has checked a login: answers it, then reads the
 * commands the client sent after it. */
static void login_checked(void *arg, const char *user, imapq_err err, const struct access *access)
{
	struct session *s = arg;
	struct cmd c = {.s = s, .tag = s->auth_tag, .name = "LOGIN"};
	login_result(&c, user, err, access);
	session_seal(s);
	session_resume(s);
}

/* Hands the credentials to the password thread; the session reads no input until the answer
 * (login_checked), so commands pipelined after the login run after it, in order. */
static void finish_login(struct cmd *c, const char *user, const char *password)
{
	struct session *s = c->s;
	struct auth_worker *worker = s->server->auth;
	if (worker == NULL) {
		login_result(c, user, IMAPQ_E_AUTH, NULL);
		return;
	}
	/* The answer needs the tag once the parser has moved on (AUTHENTICATE kept it already). */
	if (s->auth_tag != c->tag) {
		if (strlen(c->tag) >= sizeof s->auth_tag) {
			cmd_bad(c, "Tag too long");
			return;
		}
		strcpy(s->auth_tag, c->tag);
	}
	imapq_err err =
	    auth_worker_submit(worker, user, password, login_checked, s, &s->auth_check);
	if (err == IMAPQ_E_LIMIT) {
		/* Refused at once: queueing longer would only hold more sessions for longer. */
		log_warn(SERVER_LOG, "%s: login refused: %u logins in progress", s->peer,
			 auth_worker_pending(worker));
		cmd_no(c, "UNAVAILABLE", "Too many logins in progress, try again");
		return;
	}
	if (err != IMAPQ_OK) {
		log_error(SERVER_LOG, "%s: login not checked: %s", s->peer, imapq_err_message(err));
		cmd_no(c, "UNAVAILABLE", imapq_err_message(err));
		return;
	}
	c->replied = true;
}

void cmd_login(struct cmd *c)
{
	char user[256], password[256];
	if (!cmd_want_args(c, 2, 2))
		return;
	if (!session_password_allowed(c->s)) {
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
	if (!session_password_allowed(s)) {
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
	struct session *s = c->s;
	if (!cmd_want_args(c, 0, 0))
		return;
	if (session_is_tls(s)) {
		cmd_no(c, "CLIENTBUG", "TLS is already active");
		return;
	}
	if (s->server->opts.tls == NULL) {
		cmd_no(c, "UNAVAILABLE", "TLS is not configured on this server");
		return;
	}
	/* The OK is queued first: the tag lives in the parser, which starting TLS resets. */
	cmd_ok(c, NULL, "Begin TLS negotiation now");
	session_start_tls(s);
}
