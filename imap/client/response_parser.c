/* Framing of server responses (lines and the literals inside them), the per-response arena and
 * the value tokenizer. */
#include "imap/client/response-private.h"

#include "imap/base/limits.h"
#include "imap/base/vec.h"

#include <stdlib.h>
#include <string.h>

/* Bytes of the first arena block: a typical response fits in one. */
#define RESP_BLOCK_BYTES 4096

imapq_err client_parser_create(size_t max_response, struct client_parser **parser_r)
{
	struct client_parser *p = calloc(1, sizeof(*p));

	*parser_r = NULL;
	if (p == NULL)
		return IMAPQ_E_NOMEM;
	p->max_response = max_response ? max_response : IMAPQ_CLIENT_MAX_RESPONSE;
	p->state = RESP_LINE;
	*parser_r = p;
	return IMAPQ_OK;
}

/* Drops everything the previous response owned, keeping the first arena block. */
static void resp_clear(struct client_parser *p)
{
	struct resp_block *b = p->arena;

	if (b != NULL) {
		struct resp_block *next = b->next;

		b->next = NULL;
		b->used = 0;
		while (next != NULL) {
			struct resp_block *n = next->next;

			free(next);
			next = n;
		}
	}
	for (size_t i = 0; i < p->set_count; i++)
		seqset_destroy(&p->sets[i]);
	p->set_count = 0;
	memset(&p->resp, 0, sizeof(p->resp));
}

void client_parser_reset(struct client_parser *p)
{
	resp_clear(p);
	buf_reset(&p->raw);
	p->line_start = 0;
	p->literal_left = 0;
	p->state = RESP_LINE;
	p->err = IMAPQ_OK;
	p->message = NULL;
}

void client_parser_destroy(struct client_parser **parser)
{
	struct client_parser *p = *parser;

	if (p == NULL)
		return;
	resp_clear(p);
	free(p->arena);
	free(p->sets);
	buf_free(&p->raw);
	free(p);
	*parser = NULL;
}

const struct client_response *client_parser_response(const struct client_parser *p)
{
	return &p->resp;
}

imapq_err client_parser_error(const struct client_parser *p, const char **message_r)
{
	if (message_r != NULL)
		*message_r = p->message ? p->message : "no error";
	return p->err;
}

imapq_err resp_fail(struct client_parser *p, imapq_err err, const char *message)
{
	if (p->err == IMAPQ_OK) {
		p->err = err;
		p->message = message;
	}
	return err;
}

void *resp_alloc(struct client_parser *p, size_t size)
{
	struct resp_block *b = p->arena;
	size_t align = sizeof(max_align_t);

	size = (size + align - 1) / align * align;
	if (size == 0)
		size = align;
	if (b == NULL || b->cap - b->used < size) {
		size_t cap = size > RESP_BLOCK_BYTES ? size : RESP_BLOCK_BYTES;
		struct resp_block *nb = malloc(sizeof(*nb) + cap);

		if (nb == NULL)
			return NULL;
		nb->used = 0;
		nb->cap = cap;
		if (b == NULL) {
			nb->next = NULL;
			p->arena = nb;
		} else {
			/* The first block stays first, so resp_clear() keeps it. */
			nb->next = b->next;
			b->next = nb;
		}
		b = nb;
	}
	void *mem = (char *)b->data + b->used;

	b->used += size;
	memset(mem, 0, size);
	return mem;
}

char *resp_strdup(struct client_parser *p, const char *s, size_t len)
{
	char *d = resp_alloc(p, len + 1);

	if (d != NULL) {
		memcpy(d, s, len);
		d[len] = '\0';
	}
	return d;
}

/* True for characters that end an atom outside brackets. */
static bool resp_atom_end(char c)
{
	return c == ' ' || c == '(' || c == ')' || c == '{' || c == '"' || c == '\0' ||
	       (unsigned char)c < 0x20 || c == 0x7f;
}

/* Parses the decimal size of a literal header "{N}" or "{N+}" at s[0..len), s[0] being '{'.
 * Returns the bytes of the header, 0 when it is not one. */
static size_t resp_literal_header(const char *s, size_t len, uint64_t *n_r)
{
	uint64_t n = 0;
	size_t i = 1;

	if (len < 3 || s[0] != '{')
		return 0;
	while (i < len && s[i] >= '0' && s[i] <= '9') {
		if (n > (UINT64_MAX - 9) / 10)
			return 0;
		n = n * 10 + (uint64_t)(s[i] - '0');
		i++;
	}
	if (i == 1)
		return 0;
	if (i < len && s[i] == '+')
		i++;
	if (i >= len || s[i] != '}')
		return 0;
	*n_r = n;
	return i + 1;
}

static imapq_err resp_read_quoted(struct client_parser *p, struct resp_cursor *cur,
				  struct client_value *v)
{
	const char *s = cur->p + 1;
	size_t n = 0;
	char *out;
	const char *q;

	/* Measure first, then copy without the escapes. */
	for (q = s; q < cur->end && *q != '"'; q++) {
		if (*q == '\\') {
			q++;
			if (q >= cur->end || (*q != '\\' && *q != '"'))
				return resp_fail(p, IMAPQ_E_INVALID,
						 "bad escape in a quoted string");
		} else if (*q == '\0') {
			return resp_fail(p, IMAPQ_E_INVALID, "NUL in a quoted string");
		}
		n++;
	}
	if (q >= cur->end)
		return resp_fail(p, IMAPQ_E_INVALID, "unterminated quoted string");
	out = resp_alloc(p, n + 1);
	if (out == NULL)
		return resp_fail(p, IMAPQ_E_NOMEM, "out of memory");
	n = 0;
	for (const char *r = s; r < q; r++) {
		if (*r == '\\')
			r++;
		out[n++] = *r;
	}
	out[n] = '\0';
	v->type = CLIENT_VALUE_STRING;
	v->str = out;
	v->len = n;
	cur->p = q + 1;
	return IMAPQ_OK;
}

/* Reads values separated by spaces, each at depth, into an array in the parser's arena: up to the
 * end of cur, or when in_list up to and past the ')' that closes a list whose '(' is consumed. */
static imapq_err resp_read_items(struct client_parser *p, struct resp_cursor *cur, unsigned depth,
				 bool in_list, const struct client_value **items_r, size_t *count_r)
{
	struct client_value *items = NULL, *copy;
	size_t n = 0, cap = 0;
	imapq_err err = IMAPQ_OK;

	for (;;) {
		struct client_value item;

		while (cur->p < cur->end && *cur->p == ' ')
			cur->p++;
		if (cur->p >= cur->end) {
			if (!in_list)
				break;
			err = resp_fail(p, IMAPQ_E_INVALID, "unterminated list");
			goto out;
		}
		if (in_list && *cur->p == ')') {
			cur->p++;
			break;
		}
		err = resp_read_value(p, cur, depth, &item);
		if (err != IMAPQ_OK)
			goto out;
		if (!vec_push((void **)&items, &n, &cap, sizeof(item), &item)) {
			err = resp_fail(p, IMAPQ_E_NOMEM, "out of memory");
			goto out;
		}
	}
	copy = resp_alloc(p, n * sizeof(*copy));
	if (copy == NULL) {
		err = resp_fail(p, IMAPQ_E_NOMEM, "out of memory");
		goto out;
	}
	if (n > 0)
		memcpy(copy, items, n * sizeof(*copy));
	*items_r = copy;
	*count_r = n;
out:
	free(items);
	return err;
}

static imapq_err resp_read_list(struct client_parser *p, struct resp_cursor *cur, unsigned depth,
				struct client_value *v)
{
	imapq_err err;

	if (depth >= IMAPQ_CLIENT_MAX_NESTING)
		return resp_fail(p, IMAPQ_E_TOOBIG, "lists nest too deeply");
	cur->p++;
	err = resp_read_items(p, cur, depth + 1, true, &v->items, &v->count);
	if (err == IMAPQ_OK)
		v->type = CLIENT_VALUE_LIST;
	return err;
}

imapq_err resp_read_value(struct client_parser *p, struct resp_cursor *cur, unsigned depth,
			  struct client_value *v)
{
	const char *s;
	uint64_t n;
	size_t hdr;

	memset(v, 0, sizeof(*v));
	while (cur->p < cur->end && *cur->p == ' ')
		cur->p++;
	if (cur->p >= cur->end)
		return resp_fail(p, IMAPQ_E_INVALID, "a value is missing");
	s = cur->p;
	if (*s == '(')
		return resp_read_list(p, cur, depth, v);
	if (*s == '"')
		return resp_read_quoted(p, cur, v);
	if (*s == '{') {
		hdr = resp_literal_header(s, (size_t)(cur->end - s), &n);
		/* Framing stored the literal's bytes and a NUL right after its header. */
		if (hdr == 0 || n >= (uint64_t)(cur->end - s) - hdr || s[hdr + n] != '\0')
			return resp_fail(p, IMAPQ_E_INVALID, "malformed literal");
		v->type = CLIENT_VALUE_STRING;
		v->str = s + hdr;
		v->len = (size_t)n;
		cur->p = s + hdr + n + 1;
		return IMAPQ_OK;
	}
	if (*s == ')')
		return resp_fail(p, IMAPQ_E_INVALID, "unbalanced ')'");
	/* An atom; brackets (BODY[HEADER.FIELDS (A B)]) may hold spaces and parentheses. */
	while (cur->p < cur->end && !resp_atom_end(*cur->p)) {
		if (*cur->p == '[') {
			const char *close = memchr(cur->p, ']', (size_t)(cur->end - cur->p));

			if (close == NULL)
				return resp_fail(p, IMAPQ_E_INVALID, "unterminated '['");
			cur->p = close;
		}
		cur->p++;
	}
	if (cur->p == s)
		return resp_fail(p, IMAPQ_E_INVALID, "unexpected character");
	v->str = resp_strdup(p, s, (size_t)(cur->p - s));
	if (v->str == NULL)
		return resp_fail(p, IMAPQ_E_NOMEM, "out of memory");
	v->len = (size_t)(cur->p - s);
	v->type = client_value_is(v, "NIL") ? CLIENT_VALUE_NIL : CLIENT_VALUE_ATOM;
	return IMAPQ_OK;
}

imapq_err resp_read_values(struct client_parser *p, struct resp_cursor *cur,
			   const struct client_value **values_r, size_t *count_r)
{
	return resp_read_items(p, cur, 0, false, values_r, count_r);
}

imapq_err resp_read_set(struct client_parser *p, const struct client_value *v,
			const struct seqset **set_r)
{
	struct seqset *set;
	imapq_err err;

	if (v->type != CLIENT_VALUE_ATOM)
		return resp_fail(p, IMAPQ_E_INVALID, "a number set is malformed");
	if (!vec_grow((void **)&p->sets, p->set_count, &p->set_cap, sizeof(*p->sets)))
		return resp_fail(p, IMAPQ_E_NOMEM, "out of memory");
	err = seqset_parse(v->str, v->len, 0, SEQSET_NO_STAR, &set);
	if (err != IMAPQ_OK)
		return resp_fail(
		    p, err, err == IMAPQ_E_NOMEM ? "out of memory" : "a number set is malformed");
	p->sets[p->set_count++] = set;
	*set_r = set;
	return IMAPQ_OK;
}

/* A line part ended (LF seen, CR and LF dropped): either a literal follows or the response is
 * complete. */
static enum client_parse_result resp_line_end(struct client_parser *p)
{
	const char *line = buf_bytes(&p->raw) + p->line_start;
	size_t len = buf_len(&p->raw) - p->line_start;
	const char *brace = len > 0 && line[len - 1] == '}' ? memrchr(line, '{', len) : NULL;
	uint64_t n;
	bool cont = p->line_start == 0 && len > 0 && line[0] == '+';

	if (!cont && brace != NULL &&
	    resp_literal_header(brace, len - (size_t)(brace - line), &n) ==
		len - (size_t)(brace - line)) {
		if (n > p->max_response - buf_len(&p->raw)) {
			resp_fail(p, IMAPQ_E_TOOBIG, "a literal exceeds the response size limit");
			p->state = RESP_FAILED;
			return CLIENT_PARSE_ERROR;
		}
		p->literal_left = n;
		p->state = RESP_LITERAL;
		return CLIENT_PARSE_MORE;
	}
	buf_append(&p->raw, "", 1);
	if (buf_failed(&p->raw)) {
		resp_fail(p, IMAPQ_E_NOMEM, "out of memory");
		p->state = RESP_FAILED;
		return CLIENT_PARSE_ERROR;
	}
	if (resp_interpret(p) != IMAPQ_OK) {
		p->state = RESP_FAILED;
		return CLIENT_PARSE_ERROR;
	}
	p->state = RESP_DONE;
	return CLIENT_PARSE_RESPONSE;
}

enum client_parse_result client_parser_feed(struct client_parser *p, const char *data, size_t len,
					    size_t *used_r)
{
	size_t used = 0;

	*used_r = 0;
	if (p->state == RESP_FAILED)
		return CLIENT_PARSE_ERROR;
	if (p->state == RESP_DONE) {
		resp_clear(p);
		buf_reset(&p->raw);
		p->line_start = 0;
		p->state = RESP_LINE;
	}
	while (used < len) {
		if (p->state == RESP_LITERAL) {
			size_t n = len - used;

			if (n > p->literal_left)
				n = (size_t)p->literal_left;
			buf_append(&p->raw, data + used, n);
			used += n;
			p->literal_left -= n;
			if (p->literal_left == 0) {
				buf_append(&p->raw, "", 1);
				p->line_start = buf_len(&p->raw);
				p->state = RESP_LINE;
			}
			continue;
		}
		const char *lf = memchr(data + used, '\n', len - used);
		size_t n = lf ? (size_t)(lf - (data + used)) : len - used;

		if (buf_len(&p->raw) - p->line_start + n > IMAPQ_CLIENT_MAX_LINE ||
		    buf_len(&p->raw) + n > p->max_response) {
			resp_fail(p, IMAPQ_E_TOOBIG, "a response line is too long");
			p->state = RESP_FAILED;
			*used_r = used;
			return CLIENT_PARSE_ERROR;
		}
		buf_append(&p->raw, data + used, n);
		used += n;
		if (lf == NULL)
			break;
		used++;
		if (buf_len(&p->raw) > p->line_start &&
		    buf_bytes(&p->raw)[buf_len(&p->raw) - 1] == '\r')
			buf_truncate(&p->raw, buf_len(&p->raw) - 1);
		if (buf_failed(&p->raw))
			break;
		enum client_parse_result r = resp_line_end(p);

		if (r != CLIENT_PARSE_MORE) {
			*used_r = used;
			return r;
		}
	}
	*used_r = used;
	if (buf_failed(&p->raw)) {
		resp_fail(p, IMAPQ_E_NOMEM, "out of memory");
		p->state = RESP_FAILED;
		return CLIENT_PARSE_ERROR;
	}
	return CLIENT_PARSE_MORE;
}
