/* Header fields (RFC 5322 section 2.2): finding fields, unfolding values, and lexing structured
 * values such as Content-Type (RFC 2045 section 5.1). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/mail/mail-private.h"

/* ftext of RFC 5322: printable US-ASCII except the colon. */
static bool is_ftext(unsigned char c)
{
	return c >= 33 && c <= 126 && c != ':';
}

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/* End of the line starting at pos: the index after its LF, or len. */
static size_t line_end(const char *hdr, size_t len, size_t pos)
{
	const char *lf = memchr(hdr + pos, '\n', len - pos);

	return lf != NULL ? (size_t)(lf - hdr) + 1 : len;
}

/* True when the line hdr[pos, end) is empty apart from its line break. */
static bool line_blank(const char *hdr, size_t pos, size_t end)
{
	size_t n = end - pos;

	return n == 0 || (n == 1 && hdr[pos] == '\n') ||
	       (n == 2 && hdr[pos] == '\r' && hdr[pos + 1] == '\n');
}

bool mail_field_next(const char *hdr, size_t len, size_t *pos, struct mail_field *f)
{
	size_t at = *pos;

	while (at < len) {
		size_t end = line_end(hdr, len, at);

		if (line_blank(hdr, at, end)) {
			*pos = len;
			return false;
		}
		size_t i = at;

		while (i < end && is_ftext((unsigned char)hdr[i]))
			i++;
		size_t name_end = i;

		while (i < end && is_wsp(hdr[i]))
			i++;
		if (name_end == at || i >= end || hdr[i] != ':') {
			at = end; /* a stray continuation or a line without a colon */
			continue;
		}
		f->name = hdr + at;
		f->name_len = name_end - at;
		f->value = hdr + i + 1;
		while (end < len && is_wsp(hdr[end]))
			end = line_end(hdr, len, end);
		f->raw = hdr + at;
		f->raw_len = end - at;
		f->value_len = (size_t)(hdr + end - f->value);
		*pos = end;
		return true;
	}
	*pos = len;
	return false;
}

char *mail_unfold(const char *value, size_t len, size_t *len_r)
{
	char *out = malloc(len + 1);
	size_t n = 0;

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		if (value[i] == '\n' || (value[i] == '\r' && i + 1 < len && value[i + 1] == '\n'))
			continue;
		out[n++] = value[i];
	}
	size_t start = 0;

	while (start < n && is_wsp(out[start]))
		start++;
	while (n > start && is_wsp(out[n - 1]))
		n--;
	memmove(out, out + start, n - start);
	n -= start;
	out[n] = '\0';
	if (len_r != NULL)
		*len_r = n;
	return out;
}

bool mail_name_eq(const char *name, size_t len, const char *want)
{
	return strlen(want) == len && strncasecmp(name, want, len) == 0;
}

void mail_lex_skip_cfws(struct mail_lex *lx)
{
	int depth = 0;

	while (lx->p < lx->end) {
		char c = *lx->p;

		if (depth > 0 && c == '\\' && lx->p + 1 < lx->end) {
			lx->p += 2;
			continue;
		}
		if (c == '(') {
			depth++;
		} else if (c == ')' && depth > 0) {
			depth--;
		} else if (depth == 0 && c != ' ' && c != '\t' && c != '\r' && c != '\n') {
			return;
		}
		lx->p++;
	}
}

/* token characters of RFC 2045: printable US-ASCII except SPACE and tspecials. */
static bool is_token_char(unsigned char c)
{
	return c > 32 && c < 127 && strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

char *mail_lex_token(struct mail_lex *lx)
{
	const char *start = lx->p;

	while (lx->p < lx->end && is_token_char((unsigned char)*lx->p))
		lx->p++;
	if (lx->p == start)
		return NULL;
	return strndup(start, (size_t)(lx->p - start));
}

bool mail_lex_quoted(struct mail_lex *lx, struct buf *out)
{
	if (lx->p >= lx->end || *lx->p != '"')
		return false;
	lx->p++;
	while (lx->p < lx->end && *lx->p != '"') {
		if (*lx->p == '\\' && lx->p + 1 < lx->end)
			lx->p++;
		buf_append(out, lx->p, 1);
		lx->p++;
	}
	if (lx->p < lx->end)
		lx->p++;
	return true;
}

void mail_params_free(struct mail_param *p)
{
	while (p != NULL) {
		struct mail_param *next = p->next;

		free(p->name);
		free(p->value);
		free(p);
		p = next;
	}
}

/* Reads a parameter value (token or quoted string) into a new string; NULL when none. */
static char *lex_value(struct mail_lex *lx, bool *nomem_r)
{
	if (lx->p < lx->end && *lx->p == '"') {
		struct buf b = {0};

		mail_lex_quoted(lx, &b);
		char *v = strndup(b.data != NULL ? buf_bytes(&b) : "", buf_len(&b));

		*nomem_r = v == NULL || buf_failed(&b);
		buf_free(&b);
		if (*nomem_r) {
			free(v);
			return NULL;
		}
		return v;
	}
	return mail_lex_token(lx);
}

/* Skips to just past the next ';' (or the end): recovery from a broken parameter. */
static void skip_param(struct mail_lex *lx)
{
	while (lx->p < lx->end && *lx->p != ';') {
		if (*lx->p == '"') {
			struct buf b = {0};

			mail_lex_quoted(lx, &b);
			buf_free(&b);
			continue;
		}
		lx->p++;
	}
}

imapq_err mail_lex_params(struct mail_lex *lx, struct mail_param **params_r)
{
	struct mail_param **tail = params_r;

	*params_r = NULL;
	for (;;) {
		mail_lex_skip_cfws(lx);
		if (lx->p >= lx->end)
			return IMAPQ_OK;
		if (*lx->p != ';') {
			skip_param(lx);
			continue;
		}
		lx->p++;
		mail_lex_skip_cfws(lx);
		char *name = mail_lex_token(lx);

		mail_lex_skip_cfws(lx);
		if (name == NULL || lx->p >= lx->end || *lx->p != '=') {
			free(name);
			skip_param(lx);
			continue;
		}
		lx->p++;
		mail_lex_skip_cfws(lx);
		bool nomem = false;
		char *value = lex_value(lx, &nomem);

		if (value == NULL) {
			free(name);
			if (nomem)
				return IMAPQ_E_NOMEM;
			skip_param(lx);
			continue;
		}
		struct mail_param *p = calloc(1, sizeof(*p));

		if (p == NULL) {
			free(name);
			free(value);
			return IMAPQ_E_NOMEM;
		}
		p->name = name;
		p->value = value;
		*tail = p;
		tail = &p->next;
	}
}
