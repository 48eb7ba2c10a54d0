/* Parsing a message into its MIME part tree (RFC 2045, RFC 2046) in one forward pass over a
 * bounded window: headers are collected up to MAIL_MAX_HEADER_BYTES, bodies are only scanned
 * for boundary lines and counted. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/base/limits.h"
#include "imap/base/log.h"
#include "imap/mail/mail-private.h"

/* State of one parse. */
struct parser {
	struct mail_in in;
	const char *bounds[MAIL_MAX_DEPTH + 1]; /* boundaries of the enclosing multiparts */
	size_t bound_lens[MAIL_MAX_DEPTH + 1];
	int nbounds;
	size_t parts;  /* parts created so far */
	size_t stored; /* header value bytes kept so far */
	char *hdr;     /* the header being collected, MAIL_MAX_HEADER_BYTES */
	size_t hdr_len;
	bool nomem; /* an allocation failed */
};

/* Where a body ended: at a boundary line of an enclosing multipart, or at the end. */
struct body_end {
	int level;	   /* index into parser.bounds, or -1 at the end of the message */
	bool close;	   /* the boundary line was a close delimiter */
	uint64_t line_off; /* offset of the boundary line, or of the end */
	unsigned eol;	   /* line break before the boundary line, which belongs to the boundary */
	uint64_t lf;	   /* LFs before line_off */
	bool tail_text;	   /* the byte before the excluded line break is not a LF */
};

/* Header fields the parser keeps, with where their value goes. */
enum keep_field {
	KEEP_TYPE,
	KEEP_ENCODING,
	KEEP_ID,
	KEEP_DESCRIPTION,
	KEEP_MD5,
	KEEP_DISPOSITION,
	KEEP_LANGUAGE,
	KEEP_LOCATION,
	KEEP__COUNT
};

static const char *const keep_names[KEEP__COUNT] = {
    "Content-Type", "Content-Transfer-Encoding", "Content-ID",	     "Content-Description",
    "Content-MD5",  "Content-Disposition",	 "Content-Language", "Content-Location",
};

static const char *const env_names[MAIL_ENV__COUNT] = {
    "Date", "Subject", "From", "Sender", "Reply-To", "To", "Cc", "Bcc", "In-Reply-To", "Message-ID",
};

void mail_part_free(struct mail_part *part)
{
	while (part != NULL) {
		struct mail_part *next = part->next;

		mail_part_free(part->children);
		mail_part_free(part->embedded);
		free(part->type);
		free(part->subtype);
		mail_params_free(part->params);
		free(part->id);
		free(part->description);
		free(part->encoding);
		free(part->md5);
		free(part->disposition);
		mail_params_free(part->disp_params);
		free(part->language);
		free(part->location);
		if (part->env != NULL) {
			for (int i = 0; i < MAIL_ENV__COUNT; i++)
				free(part->env[i]);
			free(part->env);
		}
		free(part);
		part = next;
	}
}

/* A new part, counted against MAIL_MAX_PARTS by the caller; NULL when memory is short. */
static struct mail_part *new_part(struct parser *p)
{
	struct mail_part *part = calloc(1, sizeof(*part));

	if (part == NULL)
		p->nomem = true;
	else
		p->parts++;
	return part;
}

/* The level of the enclosing multipart (innermost tried first) whose boundary line
 * "--boundary" a piece starting a line is, or -1; *close_r tells a close delimiter. */
static int match_boundary(const struct parser *p, const unsigned char *s, size_t n, bool *close_r)
{
	if (n < 2 || s[0] != '-' || s[1] != '-')
		return -1;
	for (int level = p->nbounds - 1; level >= 0; level--) {
		size_t bl = p->bound_lens[level];

		if (n - 2 < bl || memcmp(s + 2, p->bounds[level], bl) != 0)
			continue;
		size_t i = 2 + bl;

		if (n - i >= 2 && s[i] == '-' && s[i + 1] == '-') {
			*close_r = true;
			return level;
		}
		while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
			i++;
		if (i == n) {
			*close_r = false;
			return level;
		}
	}
	return -1;
}

/* Records an end at the piece just handed out (a boundary line of n bytes) or at the end. */
static void set_end(const struct parser *p, int level, bool close, size_t n, struct body_end *e)
{
	const struct mail_in *in = &p->in;

	e->level = level;
	e->close = close;
	if (level < 0) {
		e->line_off = mail_in_offset(in);
		e->eol = 0;
		e->lf = in->lf;
		e->tail_text = !in->bol;
		return;
	}
	/* The piece was a whole line: undo its effect on the counters. */
	e->line_off = mail_in_offset(in) - n;
	e->eol = in->piece_prev_eol;
	e->lf = in->lf - (in->bol ? 1 : 0);
	e->tail_text = !in->piece_prev_empty;
}

/* Reads lines until a boundary line of an enclosing multipart or the end. */
static void scan_to_boundary(struct parser *p, struct body_end *e)
{
	const unsigned char *s;
	bool bol;
	size_t n;

	while ((n = mail_in_next(&p->in, &s, &bol)) > 0) {
		bool close = false;
		int level = bol ? match_boundary(p, s, n, &close) : -1;

		if (level >= 0) {
			set_end(p, level, close, n, e);
			return;
		}
	}
	set_end(p, -1, false, 0, e);
}

/* Sets body_size and body_lines of a part whose body started at LF count lf_start. */
static void finish_body(struct mail_part *part, uint64_t lf_start, const struct body_end *e)
{
	uint64_t end = e->line_off;
	uint64_t lf = e->lf;

	if (end > part->body_off && e->eol > 0) {
		end -= e->eol;
		lf--;
	}
	if (end < part->body_off)
		end = part->body_off;
	part->body_size = end - part->body_off;
	part->body_lines = lf - lf_start;
	if (part->body_size > 0 && e->tail_text)
		part->body_lines++;
}

/* A copy of a kept value, counted against MAIL_MAX_TREE_BYTES; NULL past the budget. */
static char *keep_value(struct parser *p, const struct mail_field *f)
{
	size_t len;

	if (p->stored >= MAIL_MAX_TREE_BYTES)
		return NULL;
	char *v = mail_unfold(f->value, f->value_len, &len);

	if (v == NULL) {
		p->nomem = true;
		return NULL;
	}
	if (len > MAIL_MAX_TREE_BYTES - p->stored) {
		free(v);
		p->stored = MAIL_MAX_TREE_BYTES;
		return NULL;
	}
	p->stored += len;
	return v;
}

/* Parses "type/subtype; params" into the part; false when the value is not a content type. */
static bool parse_content_type(struct parser *p, struct mail_part *part, const char *value)
{
	struct mail_lex lx = {value, value + strlen(value)};

	mail_lex_skip_cfws(&lx);
	char *type = mail_lex_token(&lx);

	mail_lex_skip_cfws(&lx);
	if (type == NULL || lx.p >= lx.end || *lx.p != '/') {
		free(type);
		return false;
	}
	lx.p++;
	mail_lex_skip_cfws(&lx);
	char *subtype = mail_lex_token(&lx);

	if (subtype == NULL) {
		free(type);
		return false;
	}
	part->type = type;
	part->subtype = subtype;
	if (mail_lex_params(&lx, &part->params) != IMAPQ_OK)
		p->nomem = true;
	return true;
}

/* Parses "disposition; params" into the part. */
static void parse_disposition(struct parser *p, struct mail_part *part, const char *value)
{
	struct mail_lex lx = {value, value + strlen(value)};

	mail_lex_skip_cfws(&lx);
	part->disposition = mail_lex_token(&lx);
	if (part->disposition == NULL)
		return;
	if (mail_lex_params(&lx, &part->disp_params) != IMAPQ_OK)
		p->nomem = true;
}

/* Gives a part the default type, written as RFC 3501 does: text/plain; charset=us-ascii, or
 * message/rfc822 inside a multipart/digest (RFC 2046 section 5.1.5). */
static void set_default_type(struct parser *p, struct mail_part *part, bool digest)
{
	free(part->type);
	free(part->subtype);
	mail_params_free(part->params);
	part->params = NULL;
	part->type = strdup(digest ? "MESSAGE" : "TEXT");
	part->subtype = strdup(digest ? "RFC822" : "PLAIN");
	if (!digest) {
		part->params = calloc(1, sizeof(*part->params));
		if (part->params != NULL) {
			part->params->name = strdup("CHARSET");
			part->params->value = strdup("US-ASCII");
			if (part->params->name == NULL || part->params->value == NULL)
				p->nomem = true;
		}
	}
	if (part->type == NULL || part->subtype == NULL || (!digest && part->params == NULL))
		p->nomem = true;
}

/* Takes the values the answers need from the collected header. */
static void apply_fields(struct parser *p, struct mail_part *part, bool msg_root, bool digest)
{
	const char *hdr = p->hdr;
	size_t len = p->hdr_len;
	char *kept[KEEP__COUNT] = {0};
	struct mail_field f;
	size_t pos = 0;

	if (msg_root) {
		part->env = calloc(MAIL_ENV__COUNT, sizeof(char *));
		if (part->env == NULL)
			p->nomem = true;
	}
	while (mail_field_next(hdr, len, &pos, &f)) {
		for (int i = 0; i < KEEP__COUNT; i++)
			if (kept[i] == NULL && mail_name_eq(f.name, f.name_len, keep_names[i]))
				kept[i] = keep_value(p, &f);
		for (int i = 0; part->env != NULL && i < MAIL_ENV__COUNT; i++)
			if (part->env[i] == NULL && mail_name_eq(f.name, f.name_len, env_names[i]))
				part->env[i] = keep_value(p, &f);
	}
	if (kept[KEEP_TYPE] == NULL || !parse_content_type(p, part, kept[KEEP_TYPE]))
		set_default_type(p, part, digest);
	if (kept[KEEP_DISPOSITION] != NULL)
		parse_disposition(p, part, kept[KEEP_DISPOSITION]);
	if (kept[KEEP_ENCODING] != NULL) {
		struct mail_lex lx = {kept[KEEP_ENCODING],
				      kept[KEEP_ENCODING] + strlen(kept[KEEP_ENCODING])};

		mail_lex_skip_cfws(&lx);
		part->encoding = mail_lex_token(&lx);
	}
	part->id = kept[KEEP_ID];
	part->description = kept[KEEP_DESCRIPTION];
	part->md5 = kept[KEEP_MD5];
	part->language = kept[KEEP_LANGUAGE];
	part->location = kept[KEEP_LOCATION];
	free(kept[KEEP_TYPE]);
	free(kept[KEEP_DISPOSITION]);
	free(kept[KEEP_ENCODING]);
}

/* The boundary parameter of a multipart part, or NULL when missing or unusable. */
static const char *find_boundary(const struct mail_part *part)
{
	for (const struct mail_param *prm = part->params; prm != NULL; prm = prm->next) {
		if (strcasecmp(prm->name, "boundary") != 0)
			continue;
		size_t n = strlen(prm->value);

		return n > 0 && n <= MAIL_MAX_BOUNDARY ? prm->value : NULL;
	}
	return NULL;
}

/* True when a piece starting a line begins a header field "name:". */
static bool is_field_line(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n && s[i] > 32 && s[i] < 127 && s[i] != ':')
		i++;
	if (i == 0)
		return false;
	while (i < n && (s[i] == ' ' || s[i] == '\t'))
		i++;
	return i < n && s[i] == ':';
}

/* Reads a part's header; returns true when its body starts at the input position, false when
 * the header ended at a boundary or the end (e set) or the body started earlier (a line past
 * the limit, or no header at all). Sets body_off and *lf_start_r. */
static bool read_header(struct parser *p, struct mail_part *part, struct body_end *e, bool *ended_r,
			uint64_t *lf_start_r)
{
	const unsigned char *s;
	bool bol;
	size_t n;
	uint64_t line_off = part->hdr_off;
	uint64_t line_lf = p->in.lf;
	size_t line_hdr = 0;

	p->hdr_len = 0;
	*ended_r = false;
	while ((n = mail_in_next(&p->in, &s, &bol)) > 0) {
		uint64_t off = mail_in_offset(&p->in) - n;
		bool close = false;

		if (bol) {
			int level = match_boundary(p, s, n, &close);

			if (level >= 0) {
				set_end(p, level, close, n, e);
				part->hdr_size = off - part->hdr_off;
				part->body_off = off;
				*lf_start_r = e->lf;
				*ended_r = true;
				return false;
			}
			if ((n == 1 && s[0] == '\n') || (n == 2 && s[0] == '\r' && s[1] == '\n')) {
				part->body_off = mail_in_offset(&p->in);
				part->hdr_size = part->body_off - part->hdr_off;
				*lf_start_r = p->in.lf;
				return true;
			}
			line_off = off;
			line_lf = p->in.lf - (p->in.bol ? 1 : 0);
			line_hdr = p->hdr_len;
			if (off == part->hdr_off && !is_field_line(s, n)) {
				/* No header at all: the message starts with its body. */
				break;
			}
		}
		if (n > MAIL_MAX_HEADER_BYTES - p->hdr_len) {
			log_debug(MAIL_LOG, "header at %llu exceeds %d bytes; the rest is body",
				  (unsigned long long)part->hdr_off, MAIL_MAX_HEADER_BYTES);
			p->hdr_len = line_hdr;
			break;
		}
		memcpy(p->hdr + p->hdr_len, s, n);
		p->hdr_len += n;
	}
	if (n == 0) {
		set_end(p, -1, false, 0, e);
		part->body_off = mail_in_offset(&p->in);
		part->hdr_size = part->body_off - part->hdr_off;
		*ended_r = true;
		*lf_start_r = p->in.lf;
		return false;
	}
	part->hdr_size = line_off - part->hdr_off;
	part->body_off = line_off;
	*lf_start_r = line_lf;
	return false;
}

static void parse_part(struct parser *p, struct mail_part *part, bool msg_root, bool digest,
		       int depth, struct body_end *e);

/* Parses the body of a multipart part whose header was just read. */
static void parse_multipart(struct parser *p, struct mail_part *part, const char *boundary,
			    int depth, struct body_end *e)
{
	int level = p->nbounds++;
	bool digest = strcasecmp(part->subtype, "digest") == 0;
	struct mail_part **tail = &part->children;

	p->bounds[level] = boundary;
	p->bound_lens[level] = strlen(boundary);
	scan_to_boundary(p, e); /* the preamble */
	while (e->level == level && !e->close && !p->nomem) {
		if (p->parts >= MAIL_MAX_PARTS) {
			scan_to_boundary(p, e);
			continue;
		}
		struct mail_part *child = new_part(p);

		if (child == NULL)
			break;
		*tail = child;
		tail = &child->next;
		child->hdr_off = mail_in_offset(&p->in);
		parse_part(p, child, false, digest, depth + 1, e);
	}
	p->nbounds--;
	if (e->level == level && !p->nomem)
		scan_to_boundary(p, e); /* the epilogue */
	if (part->children == NULL && !p->nomem) {
		/* No part at all: show one empty text/plain part, as IMAP needs one. */
		struct mail_part *child = new_part(p);

		if (child == NULL)
			return;
		child->hdr_off = child->body_off = part->body_off;
		set_default_type(p, child, false);
		part->children = child;
	}
}

/* Parses one part from its header on; e receives where it ended. */
static void parse_part(struct parser *p, struct mail_part *part, bool msg_root, bool digest,
		       int depth, struct body_end *e)
{
	bool ended = false;
	uint64_t lf_start = 0;
	bool at_body = read_header(p, part, e, &ended, &lf_start);

	apply_fields(p, part, msg_root, digest);
	if (p->nomem) {
		*e = (struct body_end){.level = -1, .line_off = part->body_off, .lf = lf_start};
		return;
	}
	bool multi = strcasecmp(part->type, "multipart") == 0;
	bool msg = !multi && strcasecmp(part->type, "message") == 0 &&
		   strcasecmp(part->subtype, "rfc822") == 0;
	bool structured = at_body && depth < MAIL_MAX_DEPTH && p->parts < MAIL_MAX_PARTS;
	const char *boundary = multi ? find_boundary(part) : NULL;

	if (multi && structured && boundary != NULL) {
		part->multipart = true;
		parse_multipart(p, part, boundary, depth, e);
	} else if (msg && structured && (part->embedded = new_part(p)) != NULL) {
		part->embedded->hdr_off = part->body_off;
		parse_part(p, part->embedded, true, false, depth + 1, e);
	} else {
		/* Structure that cannot be followed (no boundary, too deep, too many parts, no
		 * body) is shown as text/plain, as RFC 2045 section 5.2 suggests. */
		if (multi || msg)
			set_default_type(p, part, false);
		if (!ended)
			scan_to_boundary(p, e);
	}
	finish_body(part, lf_start, e);
}

imapq_err mail_parse(const struct mail_reader *r, struct mail **mail_r)
{
	struct parser p = {0};
	struct body_end e;
	imapq_err err = mail_in_init(&p.in, r);

	*mail_r = NULL;
	if (err != IMAPQ_OK)
		return err;
	struct mail *mail = calloc(1, sizeof(*mail));

	p.hdr = malloc(MAIL_MAX_HEADER_BYTES);
	if (mail != NULL && p.hdr != NULL)
		mail->root = new_part(&p);
	if (mail != NULL && mail->root != NULL) {
		mail->size = r->size;
		parse_part(&p, mail->root, true, false, 0, &e);
	} else {
		p.nomem = true;
	}
	err = p.in.err != IMAPQ_OK ? p.in.err : p.nomem ? IMAPQ_E_NOMEM : IMAPQ_OK;
	mail_in_deinit(&p.in);
	free(p.hdr);
	if (err != IMAPQ_OK) {
		mail_free(&mail);
		return err;
	}
	*mail_r = mail;
	return IMAPQ_OK;
}

void mail_free(struct mail **mail)
{
	if (*mail == NULL)
		return;
	mail_part_free((*mail)->root);
	free(*mail);
	*mail = NULL;
}

uint64_t mail_size(const struct mail *mail)
{
	return mail->size;
}
