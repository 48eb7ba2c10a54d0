/* BODY and BODYSTRUCTURE of RFC 3501 section 7.4.2: basic, text, message/rfc822 and multipart
 * bodies, with the extension data (MD5, disposition, language, location) for BODYSTRUCTURE. */
#include <string.h>
#include <strings.h>

#include "imap/mail/mail-private.h"

/* Appends body-fld-dsp: ("type" params) or NIL. */
static void put_disposition(struct buf *out, const struct mail_part *part)
{
	if (part->disposition == NULL) {
		buf_puts(out, "NIL");
		return;
	}
	buf_puts(out, "(");
	mail_put_nstring(out, part->disposition);
	buf_puts(out, " ");
	mail_put_params(out, part->disp_params);
	buf_puts(out, ")");
}

/* Appends body-fld-lang from a Content-Language value (RFC 3282: comma-separated tags): NIL, one
 * string, or a list of strings. */
static void put_language(struct buf *out, const char *value)
{
	const char *tags[64];
	size_t lens[64];
	size_t n = 0;
	struct mail_lex lx = {value, value != NULL ? value + strlen(value) : NULL};

	while (value != NULL && n < 64) {
		mail_lex_skip_cfws(&lx);
		if (lx.p >= lx.end)
			break;
		if (*lx.p == ',') {
			lx.p++;
			continue;
		}
		const char *start = lx.p;

		while (lx.p < lx.end && *lx.p != ',' && *lx.p != ' ' && *lx.p != '\t' &&
		       *lx.p != '(')
			lx.p++;
		tags[n] = start;
		lens[n++] = (size_t)(lx.p - start);
	}
	if (n == 0) {
		buf_puts(out, "NIL");
		return;
	}
	if (n > 1)
		buf_puts(out, "(");
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			buf_puts(out, " ");
		mail_put_string(out, tags[i], lens[i]);
	}
	if (n > 1)
		buf_puts(out, ")");
}

/* Appends the extension fields shared by all bodies: disposition, language, location. */
static void put_ext_tail(struct buf *out, const struct mail_part *part)
{
	buf_puts(out, " ");
	put_disposition(out, part);
	buf_puts(out, " ");
	put_language(out, part->language);
	buf_puts(out, " ");
	mail_put_nstring(out, part->location);
}

/* Appends one body (recursively; the parser bounds the depth). */
static void put_body(struct buf *out, const struct mail_part *part, bool extended)
{
	buf_puts(out, "(");
	if (part->multipart) {
		for (const struct mail_part *c = part->children; c != NULL; c = c->next)
			put_body(out, c, extended);
		buf_puts(out, " ");
		mail_put_nstring(out, part->subtype);
		if (extended) {
			buf_puts(out, " ");
			mail_put_params(out, part->params);
			put_ext_tail(out, part);
		}
		buf_puts(out, ")");
		return;
	}
	mail_put_nstring(out, part->type);
	buf_puts(out, " ");
	mail_put_nstring(out, part->subtype);
	buf_puts(out, " ");
	mail_put_params(out, part->params);
	buf_puts(out, " ");
	mail_put_nstring(out, part->id);
	buf_puts(out, " ");
	mail_put_nstring(out, part->description);
	buf_puts(out, " ");
	mail_put_nstring(out, part->encoding != NULL ? part->encoding : "7BIT");
	buf_printf(out, " %llu", (unsigned long long)part->body_size);
	if (part->embedded != NULL) {
		buf_puts(out, " ");
		mail_put_envelope(out, part->embedded);
		buf_puts(out, " ");
		put_body(out, part->embedded, extended);
		buf_printf(out, " %llu", (unsigned long long)part->body_lines);
	} else if (strcasecmp(part->type, "text") == 0) {
		buf_printf(out, " %llu", (unsigned long long)part->body_lines);
	}
	if (extended) {
		buf_puts(out, " ");
		mail_put_nstring(out, part->md5);
		put_ext_tail(out, part);
	}
	buf_puts(out, ")");
}

imapq_err mail_write_bodystructure(const struct mail *mail, bool extended, struct buf *out)
{
	put_body(out, mail->root, extended);
	return buf_failed(out) ? IMAPQ_E_NOMEM : IMAPQ_OK;
}
