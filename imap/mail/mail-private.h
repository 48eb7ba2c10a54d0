/* Internals shared by the files of the mail module: the part tree, the windowed input, header
 * field scanning, RFC 2045 lexing and IMAP string output. Nothing outside imap/mail/ includes
 * this. */
#ifndef IMAPQ_MAIL_PRIVATE_H
#define IMAPQ_MAIL_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap/base/buf.h"
#include "imap/base/error.h"
#include "imap/mail/mail.h"

/* Log module name of the mail module. */
#define MAIL_LOG "mail"

/* Envelope source fields of a message header, in ENVELOPE order. */
enum mail_env_field {
	MAIL_ENV_DATE,
	MAIL_ENV_SUBJECT,
	MAIL_ENV_FROM,
	MAIL_ENV_SENDER,
	MAIL_ENV_REPLY_TO,
	MAIL_ENV_TO,
	MAIL_ENV_CC,
	MAIL_ENV_BCC,
	MAIL_ENV_IN_REPLY_TO,
	MAIL_ENV_MESSAGE_ID,
	MAIL_ENV__COUNT
};

/* One parameter of a Content-Type or Content-Disposition field. */
struct mail_param {
	char *name;
	char *value;
	struct mail_param *next;
};

/* One MIME part. Offsets are absolute in the message; header values are unfolded copies, NULL
 * when the field is absent. */
struct mail_part {
	uint64_t hdr_off;    /* first byte of the part's header */
	uint64_t hdr_size;   /* header bytes, the blank line that ends it included */
	uint64_t body_off;   /* first byte of the body */
	uint64_t body_size;  /* body bytes, excluding the line break before a boundary */
	uint64_t body_lines; /* text lines of the body */
	char *type;	     /* never NULL once parsed */
	char *subtype;	     /* never NULL once parsed */
	struct mail_param *params;
	char *id;
	char *description;
	char *encoding;
	char *md5;
	char *disposition;
	struct mail_param *disp_params;
	char *language;
	char *location;
	bool multipart;		    /* children follow (the type is multipart/...) */
	struct mail_part *children; /* first child of a multipart */
	struct mail_part *next;	    /* next sibling */
	struct mail_part *embedded; /* root part of the message inside a message/rfc822 part */
	char **env;		    /* MAIL_ENV__COUNT values when this part is a message root */
};

struct mail {
	struct mail_part *root; /* the top-level part; its env is the message's envelope */
	uint64_t size;
};

/* Frees a part tree (the part itself included). */
void mail_part_free(struct mail_part *part);

/* Reads exactly len bytes at offset through r, looping over short reads. Returns IMAPQ_OK, the
 * reader's error, or IMAPQ_E_IO when the message ends first. */
imapq_err mail_read_exact(const struct mail_reader *r, uint64_t offset, void *buf, size_t len);

/* Reads the header of a part into out (which is reset first). Returns as mail_read_exact(). */
imapq_err mail_read_header(const struct mail_reader *r, const struct mail_part *part,
			   struct buf *out);

/* A windowed forward reader that hands out lines (or window-sized pieces of longer lines) and
 * keeps the line and LF counts the structure needs. */
struct mail_in {
	const struct mail_reader *r;
	unsigned char *buf;
	size_t cap;
	uint64_t buf_off;  /* message offset of buf[0] */
	size_t len;	   /* valid bytes in buf */
	size_t pos;	   /* next unread byte in buf */
	bool eof;	   /* no bytes remain past buf[len] */
	uint64_t lf;	   /* LF bytes handed out so far */
	bool bol;	   /* the next byte starts a line */
	unsigned prev_eol; /* bytes of the line break ending the last complete line (1 or 2) */
	bool prev_empty;   /* the last complete line was only its line break */
	uint64_t line_len; /* bytes of the current line handed out so far */
	bool last_cr;	   /* the last byte handed out was CR */
	unsigned piece_prev_eol; /* prev_eol before the last piece was handed out */
	bool piece_prev_empty;	 /* prev_empty before the last piece was handed out */
	imapq_err err;		 /* the first read error; stops the input */
};

/* Sets up in over r with a window of MAIL_READ_WINDOW bytes. Returns IMAPQ_OK or NOMEM. */
imapq_err mail_in_init(struct mail_in *in, const struct mail_reader *r);
void mail_in_deinit(struct mail_in *in);
/* Message offset of the next byte mail_in_next() hands out. */
static inline uint64_t mail_in_offset(const struct mail_in *in)
{
	return in->buf_off + in->pos;
}
/* Hands out the next line with its line break, or the next window-sized piece of a longer line;
 * *bol_r tells whether the piece starts a line. The bytes stay valid until the next call.
 * Returns the piece's length, 0 at the end of the message or after a read error (in->err). */
size_t mail_in_next(struct mail_in *in, const unsigned char **p_r, bool *bol_r);

/* One header field found by mail_field_next(). */
struct mail_field {
	const char *name; /* field name, without trailing blanks */
	size_t name_len;
	const char *raw; /* the whole field, continuation lines and final line break included */
	size_t raw_len;
	const char *value; /* bytes after the colon up to the end of raw */
	size_t value_len;
};

/* Finds the next field of hdr[0, len) from *pos on, skipping lines that are not fields, and
 * advances *pos past it. Returns false at the blank line or the end. */
bool mail_field_next(const char *hdr, size_t len, size_t *pos, struct mail_field *f);
/* A NUL-terminated copy of a field value with folds removed and surrounding blanks trimmed,
 * its length in *len_r (may be NULL). NULL when memory is short. */
char *mail_unfold(const char *value, size_t len, size_t *len_r);
/* True when name[0, len) equals the NUL-terminated want, ASCII case-insensitive. */
bool mail_name_eq(const char *name, size_t len, const char *want);

/* Lexer over a structured header value (RFC 5322 section 3.2, RFC 2045 section 5.1). */
struct mail_lex {
	const char *p;
	const char *end;
};
/* Skips blanks, folds and (nested) comments. */
void mail_lex_skip_cfws(struct mail_lex *lx);
/* Reads an RFC 2045 token into a new string; NULL when none is there (or memory is short). */
char *mail_lex_token(struct mail_lex *lx);
/* Reads a quoted string (the lexer at '"') into out without quotes and escapes; false when the
 * lexer is not at a quote. An unterminated string ends at the end of the value. */
bool mail_lex_quoted(struct mail_lex *lx, struct buf *out);
/* Parses ";name=value" parameters until the end of the value into *params_r, skipping broken
 * ones. Returns IMAPQ_OK or IMAPQ_E_NOMEM. */
imapq_err mail_lex_params(struct mail_lex *lx, struct mail_param **params_r);
void mail_params_free(struct mail_param *p);

/* Appends s[0, len) as an IMAP string: quoted when possible, else a literal. */
void mail_put_string(struct buf *out, const char *s, size_t len);
/* Appends a NUL-terminated string as an IMAP nstring (NIL for NULL). */
void mail_put_nstring(struct buf *out, const char *s);
/* Appends a parameter list "(" name value ... ")" or NIL. */
void mail_put_params(struct buf *out, const struct mail_param *p);

/* Appends an address list (RFC 3501 env-from etc.) parsed from an RFC 5322 address-list value,
 * NIL when value is NULL or holds no address. Returns the number of address structures
 * written. */
size_t mail_put_addresses(struct buf *out, const char *value);
/* Appends the ENVELOPE of a message root part. */
void mail_put_envelope(struct buf *out, const struct mail_part *root);

#endif
