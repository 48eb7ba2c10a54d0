/* BODY[section]<partial> of RFC 3501 section 6.4.5: resolving a section specification to a range
 * of the message or to generated header text, applying partials, and copying the bytes. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/base/limits.h"
#include "imap/mail/mail-private.h"

/* Parsing state of a section specification. */
struct spec {
	const char *p;
	const char *end;
};

/* True when the spec continues with the keyword (ASCII case-insensitive); consumes it. */
static bool take_word(struct spec *s, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(s->end - s->p) < n || strncasecmp(s->p, word, n) != 0)
		return false;
	s->p += n;
	return true;
}

/* Reads nz-number; false when absent, zero, with a leading zero, or above 32 bits. */
static bool take_number(struct spec *s, uint32_t *n_r)
{
	uint64_t v = 0;
	const char *start = s->p;

	if (s->p >= s->end || *s->p < '1' || *s->p > '9')
		return false;
	while (s->p < s->end && isdigit((unsigned char)*s->p)) {
		v = v * 10 + (uint64_t)(*s->p - '0');
		if (v > UINT32_MAX)
			return false;
		s->p++;
	}
	*n_r = (uint32_t)v;
	return s->p > start;
}

/* The part numbered n inside container (NULL: the top-level message) by RFC 3501's rules: a
 * message's parts are its root's children when the root is multipart, else the root itself as
 * part 1; a multipart's parts are its children. NULL when there is no such part. */
static const struct mail_part *child_of(const struct mail *mail, const struct mail_part *container,
					uint32_t n)
{
	const struct mail_part *parent = container;

	if (container == NULL || container->embedded != NULL) {
		const struct mail_part *root = container == NULL ? mail->root : container->embedded;

		if (!root->multipart)
			return n == 1 ? root : NULL;
		parent = root;
	}
	if (!parent->multipart)
		return NULL;
	const struct mail_part *c = parent->children;

	while (c != NULL && --n > 0)
		c = c->next;
	return c;
}

/* A header field name of a HEADER.FIELDS list: an atom, a quoted string or a literal. */
struct field_name {
	char *s;
	size_t len;
	struct field_name *next;
};

static void names_free(struct field_name *n)
{
	while (n != NULL) {
		struct field_name *next = n->next;

		free(n->s);
		free(n);
		n = next;
	}
}

/* Reads one astring of the list into a new name; false on a syntax error or NOMEM (*nomem). */
static bool take_astring(struct spec *s, struct field_name **name_r, bool *nomem)
{
	struct buf b = {0};

	if (s->p < s->end && *s->p == '"') {
		s->p++;
		while (s->p < s->end && *s->p != '"') {
			if (*s->p == '\\' && s->p + 1 < s->end)
				s->p++;
			buf_append(&b, s->p++, 1);
		}
		if (s->p >= s->end)
			goto bad;
		s->p++;
	} else if (s->p < s->end && *s->p == '{') {
		uint64_t n = 0;

		s->p++;
		while (s->p < s->end && isdigit((unsigned char)*s->p) && n <= IMAPQ_MAX_LITERAL)
			n = n * 10 + (uint64_t)(*s->p++ - '0');
		if (s->p < s->end && *s->p == '+')
			s->p++;
		if (!take_word(s, "}\r\n") || n > (uint64_t)(s->end - s->p))
			goto bad;
		buf_append(&b, s->p, (size_t)n);
		s->p += n;
	} else {
		const char *start = s->p;

		while (s->p<s->end && * s->p> ' ' && *s->p < 127 &&
		       strchr("(){%*\"\\]", *s->p) == NULL)
			s->p++;
		if (s->p == start)
			goto bad;
		buf_append(&b, start, (size_t)(s->p - start));
	}
	if (buf_len(&b) == 0)
		goto bad;
	struct field_name *name = calloc(1, sizeof(*name));

	if (name == NULL || buf_failed(&b) || (name->s = malloc(buf_len(&b))) == NULL) {
		free(name);
		buf_free(&b);
		*nomem = true;
		return false;
	}
	memcpy(name->s, buf_bytes(&b), buf_len(&b));
	name->len = buf_len(&b);
	buf_free(&b);
	*name_r = name;
	return true;
bad:
	buf_free(&b);
	return false;
}

/* Parses " (name name ...)" after HEADER.FIELDS[.NOT]. Returns IMAPQ_OK, INVALID or NOMEM. */
static imapq_err take_list(struct spec *s, struct field_name **names_r)
{
	struct field_name **tail = names_r;
	bool nomem = false;
	size_t count = 0;

	*names_r = NULL;
	if (!take_word(s, " ("))
		return IMAPQ_E_INVALID;
	for (;;) {
		struct field_name *name;

		if (count > 0 && !take_word(s, " "))
			break;
		if (count >= IMAPQ_MAX_ARGS || !take_astring(s, &name, &nomem))
			break;
		*tail = name;
		tail = &name->next;
		count++;
	}
	if (nomem || count == 0 || !take_word(s, ")")) {
		names_free(*names_r);
		*names_r = NULL;
		return nomem ? IMAPQ_E_NOMEM : IMAPQ_E_INVALID;
	}
	return IMAPQ_OK;
}

/* True when the field name is in the list (ASCII case-insensitive). */
static bool name_listed(const struct field_name *names, const char *name, size_t len)
{
	for (; names != NULL; names = names->next)
		if (names->len == len && strncasecmp(names->s, name, len) == 0)
			return true;
	return false;
}

/* Appends to text the fields of root's header that are (not) listed, then the blank line. */
static imapq_err filter_header(const struct mail_part *root, const struct mail_reader *r,
			       const struct field_name *names, bool negate, struct buf *text)
{
	struct buf hdr = {0};
	imapq_err err = mail_read_header(r, root, &hdr);
	const char *h = hdr.data != NULL ? buf_bytes(&hdr) : "";
	size_t len = buf_len(&hdr);
	const char *eol = "\r\n";
	struct mail_field f;
	size_t pos = 0;

	if (err != IMAPQ_OK) {
		buf_free(&hdr);
		return err;
	}
	const char *lf = memchr(h, '\n', len);

	if (lf != NULL && (lf == h || lf[-1] != '\r'))
		eol = "\n"; /* a bare-LF header keeps its style */
	while (mail_field_next(h, len, &pos, &f)) {
		if (name_listed(names, f.name, f.name_len) == negate)
			continue;
		buf_append(text, f.raw, f.raw_len);
		if (f.raw[f.raw_len - 1] != '\n')
			buf_puts(text, eol);
	}
	buf_puts(text, eol);
	buf_free(&hdr);
	return buf_failed(text) ? IMAPQ_E_NOMEM : IMAPQ_OK;
}

/* Sets sec to the range [off, off + size) of the message. */
static void set_range(struct mail_section *sec, uint64_t off, uint64_t size)
{
	*sec = (struct mail_section){.offset = off, .size = size};
}

imapq_err mail_section_resolve(const struct mail *mail, const struct mail_reader *r,
			       const char *section, size_t section_len, struct buf *text,
			       struct mail_section *sec_r)
{
	struct spec s = {section, section + section_len};
	const struct mail_part *part = NULL; /* NULL: the top-level message */
	bool missing = false;
	uint32_t n;

	*sec_r = (struct mail_section){.nil = true};
	while (take_number(&s, &n)) {
		if (!missing)
			part = child_of(mail, part, n);
		missing = missing || part == NULL;
		if (s.p == s.end) {
			if (!missing)
				set_range(sec_r, part->body_off, part->body_size);
			return IMAPQ_OK;
		}
		if (!take_word(&s, "."))
			return IMAPQ_E_INVALID;
		if (s.p < s.end && !isdigit((unsigned char)*s.p))
			break;
	}
	if (s.p == s.end) {
		if (s.p != section)
			return IMAPQ_E_INVALID; /* a trailing dot or a bad number */
		set_range(sec_r, 0, mail->size);
		return IMAPQ_OK;
	}
	/* The message whose HEADER and TEXT are meant: the top level or a message/rfc822 part. */
	const struct mail_part *msg = part == NULL ? mail->root : part->embedded;
	bool numbered = part != NULL || missing;

	if (take_word(&s, "MIME")) {
		if (!numbered || s.p != s.end)
			return IMAPQ_E_INVALID;
		if (!missing)
			set_range(sec_r, part->hdr_off, part->hdr_size);
		return IMAPQ_OK;
	}
	if (take_word(&s, "TEXT")) {
		if (s.p != s.end)
			return IMAPQ_E_INVALID;
		if (!missing && msg != NULL)
			set_range(sec_r, msg->body_off, msg->body_size);
		return IMAPQ_OK;
	}
	if (!take_word(&s, "HEADER"))
		return IMAPQ_E_INVALID;
	if (s.p == s.end) {
		if (!missing && msg != NULL)
			set_range(sec_r, msg->hdr_off, msg->hdr_size);
		return IMAPQ_OK;
	}
	if (!take_word(&s, ".FIELDS"))
		return IMAPQ_E_INVALID;
	bool negate = take_word(&s, ".NOT");
	struct field_name *names;
	imapq_err err = take_list(&s, &names);

	if (err != IMAPQ_OK)
		return err;
	if (s.p != s.end) {
		names_free(names);
		return IMAPQ_E_INVALID;
	}
	if (!missing && msg != NULL) {
		size_t start = buf_len(text);

		err = filter_header(msg, r, names, negate, text);
		*sec_r = (struct mail_section){
		    .generated = true, .offset = start, .size = buf_len(text) - start};
	}
	names_free(names);
	return err;
}

void mail_section_partial(struct mail_section *sec, uint64_t origin, uint64_t count)
{
	if (origin > sec->size)
		origin = sec->size;
	sec->offset += origin;
	sec->size -= origin;
	if (count < sec->size)
		sec->size = count;
}

imapq_err mail_section_copy(const struct mail_reader *r, const struct buf *text,
			    const struct mail_section *sec, struct buf *out)
{
	if (sec->nil || sec->size == 0)
		return IMAPQ_OK;
	if (sec->generated) {
		if (sec->offset > buf_len(text) || sec->size > buf_len(text) - sec->offset)
			return IMAPQ_E_INVALID;
		buf_append(out, buf_bytes(text) + sec->offset, (size_t)sec->size);
		return buf_failed(out) ? IMAPQ_E_NOMEM : IMAPQ_OK;
	}
	uint64_t off = sec->offset;
	uint64_t left = sec->size;

	while (left > 0) {
		size_t step = left < MAIL_READ_WINDOW ? (size_t)left : MAIL_READ_WINDOW;
		char *dst = buf_reserve(out, step);

		if (dst == NULL)
			return IMAPQ_E_NOMEM;
		imapq_err err = mail_read_exact(r, off, dst, step);

		if (err != IMAPQ_OK)
			return err;
		buf_commit(out, step);
		off += step;
		left -= step;
	}
	return IMAPQ_OK;
}
