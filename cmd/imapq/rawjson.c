#include "cmd/imapq/rawjson.h"

#include <stdbool.h>
#include <string.h>

#include "imap/base/limits.h"

struct scan {
	const char *p;
	const char *end;
};

static void skip_ws(struct scan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

/* Skips a string starting at its opening quote. */
static bool skip_string(struct scan *s)
{
	if (s->p >= s->end || *s->p != '"')
		return false;
	for (s->p++; s->p < s->end; s->p++) {
		if (*s->p == '\\') {
			s->p++;
		} else if (*s->p == '"') {
			s->p++;
			return true;
		}
	}
	return false;
}

/* Skips one value of any kind; nesting is tracked with a counter, not recursion. */
static bool skip_value(struct scan *s)
{
	unsigned depth = 0;
	do {
		skip_ws(s);
		if (s->p >= s->end)
			return false;
		char c = *s->p;
		if (c == '"') {
			if (!skip_string(s))
				return false;
		} else if (c == '{' || c == '[') {
			if (++depth > IMAPQ_HTTP_MAX_JSON_DEPTH * 2)
				return false;
			s->p++;
		} else if (c == '}' || c == ']') {
			if (depth == 0)
				return false;
			depth--;
			s->p++;
		} else if (c == ',' || c == ':') {
			if (depth == 0)
				return false;
			s->p++;
		} else {
			/* A number or literal: runs to the next delimiter. */
			const char *start = s->p;
			while (s->p < s->end && strchr(" \t\r\n,:]}[{\"", *s->p) == NULL)
				s->p++;
			if (s->p == start)
				return false;
		}
	} while (depth > 0);
	return true;
}

/* Reads an object key and its colon; key points into the text (without quotes). */
static bool read_key(struct scan *s, const char **key, size_t *klen)
{
	skip_ws(s);
	const char *start = s->p;
	if (!skip_string(s))
		return false;
	*key = start + 1;
	*klen = (size_t)(s->p - start) - 2;
	skip_ws(s);
	if (s->p >= s->end || *s->p != ':')
		return false;
	s->p++;
	skip_ws(s);
	return true;
}

/* Steps past a ',' (true, more follows) or the closing bracket (false, *ok stays true). */
static bool next_member(struct scan *s, char close, bool *ok)
{
	skip_ws(s);
	if (s->p < s->end && *s->p == ',') {
		s->p++;
		return true;
	}
	if (s->p < s->end && *s->p == close) {
		s->p++;
		return false;
	}
	*ok = false;
	return false;
}

static bool key_is(const char *key, size_t klen, const char *want)
{
	return klen == strlen(want) && memcmp(key, want, klen) == 0;
}

/* Reads one element of "messages" and records where its body is. */
static bool scan_message(struct scan *s, const char *base, struct rawjson_span *span)
{
	skip_ws(s);
	if (s->p >= s->end || *s->p != '{')
		return false;
	s->p++;
	skip_ws(s);
	if (s->p < s->end && *s->p == '}') {
		s->p++;
		return true;
	}
	bool ok = true;
	do {
		const char *key;
		size_t klen;
		if (!read_key(s, &key, &klen))
			return false;
		const char *start = s->p;
		if (!skip_value(s))
			return false;
		if (span != NULL && key_is(key, klen, "body")) {
			span->off = (size_t)(start - base);
			span->len = (size_t)(s->p - start);
		}
	} while (next_member(s, '}', &ok));
	return ok;
}

imapq_err rawjson_message_bodies(const char *text, size_t len, struct rawjson_span *spans,
				 size_t max, size_t *n_r)
{
	struct scan s = {text, text + len};
	size_t n = 0;
	bool ok = true;
	*n_r = 0;
	skip_ws(&s);
	if (s.p >= s.end || *s.p != '{')
		return IMAPQ_E_INVALID;
	s.p++;
	skip_ws(&s);
	if (s.p < s.end && *s.p == '}')
		return IMAPQ_OK;
	do {
		const char *key;
		size_t klen;
		if (!read_key(&s, &key, &klen))
			return IMAPQ_E_INVALID;
		if (!key_is(key, klen, "messages")) {
			if (!skip_value(&s))
				return IMAPQ_E_INVALID;
			continue;
		}
		if (s.p >= s.end || *s.p != '[')
			return IMAPQ_E_INVALID;
		s.p++;
		skip_ws(&s);
		if (s.p < s.end && *s.p == ']') {
			s.p++;
			continue;
		}
		bool more = true;
		do {
			struct rawjson_span *span = n < max ? &spans[n] : NULL;
			if (span != NULL)
				*span = (struct rawjson_span){0, 0};
			if (!scan_message(&s, text, span))
				return IMAPQ_E_INVALID;
			if (n < max)
				n++;
			more = next_member(&s, ']', &ok);
		} while (more);
		if (!ok)
			return IMAPQ_E_INVALID;
	} while (next_member(&s, '}', &ok));
	*n_r = n;
	return ok ? IMAPQ_OK : IMAPQ_E_INVALID;
}
