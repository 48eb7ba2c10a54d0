/* RFC 5322 address lists (obsolete forms included) as RFC 3501 address structures: display
 * names, source routes, groups, and comments as names for bare addresses. */
#include <stdint.h>
#include <string.h>

#include "imap/mail/mail-private.h"

/* Lexing state of one address list. */
struct addr_lex {
	const char *p;
	const char *end;
	struct buf comment; /* text of the last comment seen in the current address */
	bool have_comment;
	struct buf *out; /* where the list goes */
	size_t count;	 /* address structures written so far */
	bool nomem;	 /* a scratch buffer failed */
};

/* A phrase or local part being collected. */
struct phrase {
	struct buf spaced; /* words joined by single spaces: a display name */
	struct buf tight;  /* words joined without blanks: a local part or a domain */
	bool space;	   /* blanks were seen since the last word */
};

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Reads a comment (the lexer at '(') and keeps its text without the outer parentheses. */
static void read_comment(struct addr_lex *a)
{
	int depth = 0;

	buf_reset(&a->comment);
	a->have_comment = true;
	while (a->p < a->end) {
		char c = *a->p++;

		if (c == '\\' && a->p < a->end) {
			buf_append(&a->comment, a->p++, 1);
			continue;
		}
		if (c == '(' && depth++ == 0)
			continue;
		if (c == ')' && --depth == 0)
			return;
		buf_append(&a->comment, &c, 1);
	}
}

/* Skips blanks and comments. */
static void skip_cfws(struct addr_lex *a)
{
	while (a->p < a->end) {
		if (*a->p == '(')
			read_comment(a);
		else if (is_blank(*a->p))
			a->p++;
		else
			return;
	}
}

/* Adds one word to a phrase. */
static void phrase_add(struct phrase *ph, const char *s, size_t n)
{
	if (ph->space && buf_len(&ph->spaced) > 0)
		buf_append(&ph->spaced, " ", 1);
	ph->space = false;
	buf_append(&ph->spaced, s, n);
	buf_append(&ph->tight, s, n);
}

/* Reads words, quoted strings and dots until one of the characters in stops or the end. */
static void read_phrase(struct addr_lex *a, struct phrase *ph, const char *stops)
{
	while (a->p < a->end) {
		char c = *a->p;

		if (is_blank(c)) {
			ph->space = true;
			a->p++;
		} else if (c == '(') {
			read_comment(a);
			ph->space = true;
		} else if (c == '"') {
			struct mail_lex lx = {a->p, a->end};
			struct buf q = {0};

			mail_lex_quoted(&lx, &q);
			a->p = lx.p;
			phrase_add(ph, q.data != NULL ? buf_bytes(&q) : "", buf_len(&q));
			buf_free(&q);
		} else if (strchr(stops, c) != NULL) {
			return;
		} else {
			const char *start = a->p;

			while (a->p < a->end && !is_blank(*a->p) && *a->p != '(' && *a->p != '"' &&
			       strchr(stops, *a->p) == NULL)
				a->p++;
			phrase_add(ph, start, (size_t)(a->p - start));
		}
	}
}

/* Reads a domain (dot-atoms and domain literals, comments skipped) into tight. */
static void read_domain(struct addr_lex *a, struct buf *tight)
{
	for (;;) {
		skip_cfws(a);
		if (a->p >= a->end || strchr(",;<>@:\"", *a->p) != NULL)
			return;
		const char *start = a->p;

		if (*a->p == '[') {
			while (a->p < a->end && *a->p != ']')
				a->p++;
			if (a->p < a->end)
				a->p++;
		} else {
			while (a->p < a->end && !is_blank(*a->p) &&
			       strchr(",;<>@:\"([", *a->p) == NULL)
				a->p++;
		}
		buf_append(tight, start, (size_t)(a->p - start));
	}
}

/* Notes a scratch buffer's failure. */
static void check(struct addr_lex *a, const struct buf *b)
{
	if (buf_failed(b))
		a->nomem = true;
}

/* Starts one address structure, opening the list before the first. */
static void begin(struct addr_lex *a)
{
	buf_puts(a->out, a->count++ == 0 ? "((" : "(");
}

/* Appends s as an nstring, s being NULL, "" or the bytes of a buf. */
static void put_part(struct buf *out, const struct buf *b, bool present)
{
	if (!present) {
		buf_puts(out, "NIL");
		return;
	}
	mail_put_string(out, b->data != NULL ? buf_bytes(b) : "", buf_len(b));
}

/* Appends one address structure; name falls back to the last comment. */
static void put_address(struct addr_lex *a, const struct buf *name, const struct buf *adl,
			const struct buf *mailbox, const struct buf *host)
{
	struct buf *out = a->out;

	check(a, name);
	check(a, adl);
	check(a, mailbox);
	check(a, host);
	check(a, &a->comment);
	begin(a);
	if (buf_len(name) > 0)
		put_part(out, name, true);
	else if (a->have_comment && buf_len(&a->comment) > 0)
		put_part(out, &a->comment, true);
	else
		buf_puts(out, "NIL");
	buf_puts(out, " ");
	put_part(out, adl, buf_len(adl) > 0);
	buf_puts(out, " ");
	put_part(out, mailbox, true);
	buf_puts(out, " ");
	put_part(out, host, true);
	buf_puts(out, ")");
}

/* Parses "<[@route,@route:]local@domain>" (the lexer just past '<') and appends it. */
static void parse_angle(struct addr_lex *a, const struct buf *name)
{
	struct buf adl = {0}, host = {0};
	struct phrase local = {0};

	skip_cfws(a);
	if (a->p < a->end && *a->p == '@') {
		while (a->p < a->end && *a->p != ':' && *a->p != '>') {
			if (!is_blank(*a->p))
				buf_append(&adl, a->p, 1);
			a->p++;
		}
		if (a->p < a->end && *a->p == ':')
			a->p++;
	}
	read_phrase(a, &local, "@>");
	if (a->p < a->end && *a->p == '@') {
		a->p++;
		read_domain(a, &host);
	}
	while (a->p < a->end && *a->p != '>' && *a->p != ',' && *a->p != ';')
		a->p++;
	if (a->p < a->end && *a->p == '>')
		a->p++;
	skip_cfws(a);
	put_address(a, name, &adl, &local.tight, &host);
	buf_free(&adl);
	buf_free(&host);
	buf_free(&local.spaced);
	buf_free(&local.tight);
}

/* Parses one mailbox or group start at the lexer and appends what it finds. */
static void parse_one(struct addr_lex *a, bool *in_group)
{
	struct phrase ph = {0};
	struct buf none = {0}, host = {0};

	read_phrase(a, &ph, "<>@,;:");
	char c = a->p < a->end ? *a->p : '\0';

	if (c == ':') {
		a->p++;
		if (!*in_group) {
			check(a, &ph.spaced);
			begin(a);
			buf_puts(a->out, "NIL NIL ");
			put_part(a->out, &ph.spaced, true);
			buf_puts(a->out, " NIL)");
			*in_group = true;
		}
	} else if (c == '<') {
		a->p++;
		parse_angle(a, &ph.spaced);
	} else if (c == '@') {
		a->p++;
		read_domain(a, &host);
		skip_cfws(a);
		put_address(a, &none, &none, &ph.tight, &host);
	} else if (c == '>') {
		a->p++;
	} else if (buf_len(&ph.tight) > 0) {
		/* A local part without a domain: shown with an empty host, as NIL means a group. */
		put_address(a, &none, &none, &ph.tight, &host);
	}
	buf_free(&ph.spaced);
	buf_free(&ph.tight);
	buf_free(&host);
}

size_t mail_put_addresses(struct buf *out, const char *value)
{
	struct addr_lex a = {.p = value, .end = value != NULL ? value + strlen(value) : NULL};
	bool in_group = false;

	a.out = out;
	while (a.p != NULL && a.p < a.end) {
		a.have_comment = false; /* a comment names only the address it is part of */
		skip_cfws(&a);
		if (a.p >= a.end)
			break;
		if (*a.p == ',') {
			a.p++;
		} else if (*a.p == ';') {
			a.p++;
			if (in_group) {
				begin(&a);
				buf_puts(out, "NIL NIL NIL NIL)");
				in_group = false;
			}
		} else {
			parse_one(&a, &in_group);
		}
	}
	if (in_group) {
		begin(&a);
		buf_puts(out, "NIL NIL NIL NIL)");
	}
	buf_puts(out, a.count == 0 ? "NIL" : ")");
	if (a.nomem)
		buf_reserve(out, SIZE_MAX); /* marks out failed: a scratch copy was incomplete */
	buf_free(&a.comment);
	return a.count;
}
