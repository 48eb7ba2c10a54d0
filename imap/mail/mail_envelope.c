/* The ENVELOPE of RFC 3501 section 7.4.2 and the IMAP string output it shares with
 * BODYSTRUCTURE. Header values are written as found: RFC 2047 encoded words stay encoded and
 * 8-bit bytes go out in literals unchanged. */
#include <stdint.h>
#include <string.h>

#include "imap/mail/mail-private.h"
#include "imap/protocol/quote.h"

void mail_put_string(struct buf *out, const char *s, size_t len)
{
	size_t need = quote_string(NULL, 0, s, len);
	char *dst = buf_reserve(out, need + 1);

	if (dst == NULL)
		return;
	quote_string(dst, need + 1, s, len);
	buf_commit(out, need);
}

void mail_put_nstring(struct buf *out, const char *s)
{
	if (s == NULL)
		buf_puts(out, "NIL");
	else
		mail_put_string(out, s, strlen(s));
}

void mail_put_params(struct buf *out, const struct mail_param *p)
{
	if (p == NULL) {
		buf_puts(out, "NIL");
		return;
	}
	buf_puts(out, "(");
	for (; p != NULL; p = p->next) {
		mail_put_nstring(out, p->name);
		buf_puts(out, " ");
		mail_put_nstring(out, p->value);
		if (p->next != NULL)
			buf_puts(out, " ");
	}
	buf_puts(out, ")");
}

/* Appends an address field; when it holds no address, the fallback field's list instead
 * (RFC 3501: sender and reply-to default to from). */
static void put_address_field(struct buf *out, const char *value, const char *fallback)
{
	struct buf tmp = {0};

	if (mail_put_addresses(&tmp, value) > 0 || fallback == NULL) {
		if (buf_failed(&tmp))
			buf_reserve(out, SIZE_MAX); /* marks out failed like tmp */
		else
			buf_append(out, buf_bytes(&tmp), buf_len(&tmp));
	} else {
		mail_put_addresses(out, fallback);
	}
	buf_free(&tmp);
}

void mail_put_envelope(struct buf *out, const struct mail_part *root)
{
	static char *const none[MAIL_ENV__COUNT] = {0};
	char *const *env = root->env != NULL ? root->env : none;

	buf_puts(out, "(");
	mail_put_nstring(out, env[MAIL_ENV_DATE]);
	buf_puts(out, " ");
	mail_put_nstring(out, env[MAIL_ENV_SUBJECT]);
	buf_puts(out, " ");
	put_address_field(out, env[MAIL_ENV_FROM], NULL);
	buf_puts(out, " ");
	put_address_field(out, env[MAIL_ENV_SENDER], env[MAIL_ENV_FROM]);
	buf_puts(out, " ");
	put_address_field(out, env[MAIL_ENV_REPLY_TO], env[MAIL_ENV_FROM]);
	for (int i = MAIL_ENV_TO; i <= MAIL_ENV_BCC; i++) {
		buf_puts(out, " ");
		put_address_field(out, env[i], NULL);
	}
	buf_puts(out, " ");
	mail_put_nstring(out, env[MAIL_ENV_IN_REPLY_TO]);
	buf_puts(out, " ");
	mail_put_nstring(out, env[MAIL_ENV_MESSAGE_ID]);
	buf_puts(out, ")");
}

imapq_err mail_write_envelope(const struct mail *mail, struct buf *out)
{
	mail_put_envelope(out, mail->root);
	return buf_failed(out) ? IMAPQ_E_NOMEM : IMAPQ_OK;
}
