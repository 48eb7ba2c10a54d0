/* Messages as IMAP sees them: the RFC 5322 header and the MIME structure (RFC 2045/2046) of a
 * message parsed once into a tree, and from it the FETCH items ENVELOPE, BODY, BODYSTRUCTURE and
 * BODY[section]<partial> (RFC 3501 sections 6.4.5 and 7.4.2), plus the SEARCH keys that look
 * inside messages. Message bytes are read through a reader in bounded windows, never whole; the
 * tree holds offsets and the few header values the answers need. See docs/mail.md. */
#ifndef IMAPQ_MAIL_H
#define IMAPQ_MAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap/base/buf.h"
#include "imap/base/error.h"

/* Random access to the bytes of one message. read() copies up to len bytes starting at offset
 * into buf and sets *got_r; it may return fewer bytes than asked (0 only at or past the end) and
 * returns IMAPQ_OK or the error that stops the caller. size is the message size in bytes. */
struct mail_reader {
	imapq_err (*read)(void *ctx, uint64_t offset, void *buf, size_t len, size_t *got_r);
	void *ctx;
	uint64_t size;
};

/* A parsed message: its MIME part tree with offsets, sizes, line counts and header values. It
 * does not keep the reader; functions that need bytes take one, which must read the same
 * message. */
struct mail;

/* Parses the message behind r. Malformed input is not an error: it parses as RFC 2045 and 2046
 * suggest (unknown or broken structure becomes text/plain), and limits of imap/base/limits.h
 * (MAIL_MAX_*) cut what would be unbounded. Returns IMAPQ_OK with a new mail in *mail_r (free it
 * with mail_free()), the reader's error, or IMAPQ_E_NOMEM. */
imapq_err mail_parse(const struct mail_reader *r, struct mail **mail_r);
/* Frees a mail and clears the caller's pointer; NULL is allowed. */
void mail_free(struct mail **mail);

/* Size of the message in bytes (RFC822.SIZE). */
uint64_t mail_size(const struct mail *mail);

/* Appends the ENVELOPE list of RFC 3501 (without the "ENVELOPE " label). Returns IMAPQ_OK or
 * IMAPQ_E_NOMEM (out is then marked failed). */
imapq_err mail_write_envelope(const struct mail *mail, struct buf *out);

/* Appends the BODYSTRUCTURE list when extended, else the BODY list (no extension data). Returns
 * IMAPQ_OK or IMAPQ_E_NOMEM. */
imapq_err mail_write_bodystructure(const struct mail *mail, bool extended, struct buf *out);

/* Where the bytes of BODY[section] are: a range of the message, or generated text
 * (HEADER.FIELDS) in the caller's text buffer. */
struct mail_section {
	bool nil;	 /* the section names a part the message does not have: answer NIL */
	bool generated;	 /* the bytes are text[offset, offset + size) rather than message bytes */
	uint64_t offset; /* first byte, in the message or in the text buffer */
	uint64_t size;	 /* bytes */
};

/* Resolves section, the text between "[" and "]" of BODY[...] (e.g. "", "HEADER", "1.2.TEXT",
 * "HEADER.FIELDS (FROM TO)"), with the numbering rules of RFC 3501. HEADER.FIELDS reads the
 * header through r and appends the selected fields and a closing blank line to text, which
 * must not be consumed until the section is copied. Returns IMAPQ_OK (with sec_r->nil set for
 * a part the message lacks, or for HEADER and TEXT of a part that is not message/rfc822),
 * IMAPQ_E_INVALID for a malformed section (the server answers BAD), the reader's error, or
 * IMAPQ_E_NOMEM. */
imapq_err mail_section_resolve(const struct mail *mail, const struct mail_reader *r,
			       const char *section, size_t section_len, struct buf *text,
			       struct mail_section *sec_r);
/* Applies a partial <origin.count> of RFC 3501 to a resolved section: bytes from origin on, at
 * most count of them; an origin past the end leaves an empty section. */
void mail_section_partial(struct mail_section *sec, uint64_t origin, uint64_t count);
/* Appends the bytes of a resolved section to out, reading message bytes through r in bounded
 * windows (a server may instead stream the range itself). Returns IMAPQ_OK, the reader's error,
 * IMAPQ_E_IO when the message is shorter than the range, or IMAPQ_E_NOMEM. */
imapq_err mail_section_copy(const struct mail_reader *r, const struct buf *text,
			    const struct mail_section *sec, struct buf *out);

/* SEARCH HEADER and the address and subject keys: sets *match_r when a top-level header field
 * named field_name (case-insensitive) has an unfolded value containing needle (ASCII
 * case-insensitive); an empty needle matches any such field. Returns IMAPQ_OK or the reader's
 * error or IMAPQ_E_NOMEM. */
imapq_err mail_header_contains(const struct mail *mail, const struct mail_reader *r,
			       const char *field_name, const char *needle, size_t needle_len,
			       bool *match_r);
/* SEARCH BODY (headers_too false: the body after the top-level header) and TEXT (headers_too
 * true: the whole message): sets *match_r when the raw bytes contain needle, ASCII
 * case-insensitive. An empty needle always matches. Returns IMAPQ_OK, the reader's error or
 * IMAPQ_E_NOMEM. */
imapq_err mail_text_contains(const struct mail *mail, const struct mail_reader *r,
			     const char *needle, size_t needle_len, bool headers_too,
			     bool *match_r);

/* The top-level Date: header as seconds since the epoch (UTC) and the zone offset it was
 * written with, in minutes east of UTC (tz_minutes_r may be NULL). Returns IMAPQ_OK,
 * IMAPQ_E_NOTFOUND when there is no Date: header, or IMAPQ_E_INVALID when it does not parse. */
imapq_err mail_sent_date(const struct mail *mail, int64_t *epoch_r, int *tz_minutes_r);
/* The day SENTBEFORE/SENTON/SENTSINCE compare: days since 1970-01-01 of the Date: header's own
 * calendar date, disregarding time and zone (RFC 3501 section 6.4.4). Returns as
 * mail_sent_date(). */
imapq_err mail_sent_day(const struct mail *mail, int64_t *day_r);

/* Parses an RFC 5322 date-time, obsolete forms included (two- and three-digit years, named and
 * military zones, comments, missing seconds or day of week). Returns IMAPQ_OK with the UTC
 * epoch in *epoch_r and the zone in minutes east of UTC in *tz_minutes_r (either may be NULL),
 * or IMAPQ_E_INVALID. */
imapq_err mail_date_parse(const char *s, size_t len, int64_t *epoch_r, int *tz_minutes_r);

#endif
