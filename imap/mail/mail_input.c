/* Reading message bytes through a reader: exact reads, and the windowed line input of the
 * parser. */
#include <stdlib.h>
#include <string.h>

#include "imap/base/limits.h"
#include "imap/mail/mail-private.h"

imapq_err mail_read_exact(const struct mail_reader *r, uint64_t offset, void *buf, size_t len)
{
	unsigned char *dst = buf;

	if (offset > r->size || len > r->size - offset)
		return IMAPQ_E_IO;
	while (len > 0) {
		size_t got = 0;
		imapq_err err = r->read(r->ctx, offset, dst, len, &got);

		if (err != IMAPQ_OK)
			return err;
		if (got == 0 || got > len)
			return IMAPQ_E_IO;
		dst += got;
		offset += got;
		len -= got;
	}
	return IMAPQ_OK;
}

imapq_err mail_read_header(const struct mail_reader *r, const struct mail_part *part,
			   struct buf *out)
{
	buf_reset(out);
	if (part->hdr_size == 0)
		return IMAPQ_OK;
	char *dst = buf_reserve(out, (size_t)part->hdr_size);

	if (dst == NULL)
		return IMAPQ_E_NOMEM;
	imapq_err err = mail_read_exact(r, part->hdr_off, dst, (size_t)part->hdr_size);

	if (err == IMAPQ_OK)
		buf_commit(out, (size_t)part->hdr_size);
	return err;
}

imapq_err mail_in_init(struct mail_in *in, const struct mail_reader *r)
{
	*in = (struct mail_in){.r = r, .cap = MAIL_READ_WINDOW, .bol = true};
	in->buf = malloc(in->cap);
	if (in->buf == NULL)
		return IMAPQ_E_NOMEM;
	in->eof = r->size == 0;
	return IMAPQ_OK;
}

void mail_in_deinit(struct mail_in *in)
{
	free(in->buf);
	in->buf = NULL;
}

/* Moves the unread bytes to the front and reads until the window is full or the message ends. */
static void in_fill(struct mail_in *in)
{
	size_t rest = in->len - in->pos;

	memmove(in->buf, in->buf + in->pos, rest);
	in->buf_off += in->pos;
	in->pos = 0;
	in->len = rest;
	while (!in->eof && in->len < in->cap) {
		uint64_t at = in->buf_off + in->len;
		uint64_t left = in->r->size - at;
		size_t want = in->cap - in->len;
		size_t got = 0;

		if (want > left)
			want = (size_t)left;
		in->err = in->r->read(in->r->ctx, at, in->buf + in->len, want, &got);
		if (in->err != IMAPQ_OK || got == 0 || got > want) {
			if (in->err == IMAPQ_OK)
				in->err = IMAPQ_E_IO;
			in->eof = true;
			return;
		}
		in->len += got;
		if (in->buf_off + in->len >= in->r->size)
			in->eof = true;
	}
}

size_t mail_in_next(struct mail_in *in, const unsigned char **p_r, bool *bol_r)
{
	if (in->err != IMAPQ_OK)
		return 0;
	unsigned char *lf = memchr(in->buf + in->pos, '\n', in->len - in->pos);

	if (lf == NULL && !in->eof && in->len - in->pos < in->cap) {
		size_t seen = in->len - in->pos;

		in_fill(in);
		if (in->err != IMAPQ_OK)
			return 0;
		lf = memchr(in->buf + seen, '\n', in->len - seen);
	}
	size_t n = lf != NULL ? (size_t)(lf - (in->buf + in->pos)) + 1 : in->len - in->pos;

	if (n == 0)
		return 0;
	const unsigned char *p = in->buf + in->pos;

	*p_r = p;
	*bol_r = in->bol;
	in->piece_prev_eol = in->prev_eol;
	in->piece_prev_empty = in->prev_empty;
	in->pos += n;
	in->line_len += n;
	if (lf != NULL) {
		bool cr = n >= 2 ? p[n - 2] == '\r' : in->last_cr;

		in->lf++;
		in->prev_eol = cr && in->line_len >= 2 ? 2 : 1;
		in->prev_empty = in->line_len == in->prev_eol;
		in->line_len = 0;
		in->bol = true;
	} else {
		in->bol = false;
	}
	in->last_cr = p[n - 1] == '\r';
	return n;
}
