/* Choosing and writing the atom, quoted and literal forms of IMAP strings. */
#include "imap/protocol/quote.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ASTRING-CHAR of RFC 3501: ATOM-CHAR or ']'. */
static bool is_astring_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f && c != '(' && c != ')' && c != '{' && c != '%' && c != '*' &&
	       c != '"' && c != '\\';
}

/* TEXT-CHAR of RFC 3501 that a quoted string may carry (escaped or not). */
static bool is_quotable(unsigned char c)
{
	return c != 0 && c < 0x80 && c != '\r' && c != '\n';
}

enum quote_form quote_form_for(const char *s, size_t len, bool allow_atom)
{
	bool atom = allow_atom && len > 0 && !(len == 3 && strncasecmp(s, "NIL", 3) == 0);

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!is_quotable(c))
			return QUOTE_LITERAL;
		/* '[' opens a section in IMAP atoms (BODY[...]): parsers, imapq's own included,
		 * expect its ']', so a string holding one is safer quoted. */
		if (!is_astring_char(c) || c == '[')
			atom = false;
	}
	return atom ? QUOTE_ATOM : QUOTE_QUOTED;
}

/* Appends n bytes at *total, keeping out NUL-terminated within cap. */
static void put(char *out, size_t cap, size_t *total, const char *bytes, size_t n)
{
	if (*total < cap) {
		size_t room = cap - *total - 1;
		size_t take = n < room ? n : room;

		memcpy(out + *total, bytes, take);
		out[*total + take] = '\0';
	}
	*total += n;
}

size_t quote_write(char *out, size_t cap, const char *s, size_t len, enum quote_form form)
{
	size_t total = 0;

	if (cap > 0)
		out[0] = '\0';
	switch (form) {
	case QUOTE_ATOM:
		put(out, cap, &total, s, len);
		break;
	case QUOTE_QUOTED: {
		size_t start = 0;

		put(out, cap, &total, "\"", 1);
		for (size_t i = 0; i < len; i++) {
			if (s[i] != '"' && s[i] != '\\')
				continue;
			put(out, cap, &total, s + start, i - start);
			put(out, cap, &total, "\\", 1);
			start = i;
		}
		put(out, cap, &total, s + start, len - start);
		put(out, cap, &total, "\"", 1);
		break;
	}
	case QUOTE_LITERAL: {
		char head[32];
		int n = snprintf(head, sizeof(head), "{%zu}\r\n", len);

		put(out, cap, &total, head, (size_t)n);
		put(out, cap, &total, s, len);
		break;
	}
	}
	return total;
}

size_t quote_astring(char *out, size_t cap, const char *s, size_t len)
{
	return quote_write(out, cap, s, len, quote_form_for(s, len, true));
}

size_t quote_string(char *out, size_t cap, const char *s, size_t len)
{
	return quote_write(out, cap, s, len, quote_form_for(s, len, false));
}

size_t quote_nstring(char *out, size_t cap, const char *s, size_t len)
{
	if (s == NULL)
		return quote_write(out, cap, "NIL", 3, QUOTE_ATOM);
	return quote_string(out, cap, s, len);
}
