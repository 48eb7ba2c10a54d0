/* The SEARCH keys that look inside a message (RFC 3501 section 6.4.4): header field substrings
 * and body or whole-text substrings, ASCII case-insensitive over the raw bytes, read in bounded
 * windows. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "imap/base/limits.h"
#include "imap/mail/mail-private.h"

/* Lowers ASCII letters of s[0, n) in place. */
static void lower(char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		s[i] = (char)tolower((unsigned char)s[i]);
}

imapq_err mail_header_contains(const struct mail *mail, const struct mail_reader *r,
			       const char *field_name, const char *needle, size_t needle_len,
			       bool *match_r)
{
	struct buf hdr = {0};
	imapq_err err = mail_read_header(r, mail->root, &hdr);
	char *low = malloc(needle_len + 1);
	struct mail_field f;
	size_t pos = 0;

	*match_r = false;
	if (err == IMAPQ_OK && low == NULL)
		err = IMAPQ_E_NOMEM;
	if (err != IMAPQ_OK) {
		free(low);
		buf_free(&hdr);
		return err;
	}
	memcpy(low, needle, needle_len);
	lower(low, needle_len);
	const char *h = hdr.data != NULL ? buf_bytes(&hdr) : "";

	while (!*match_r && mail_field_next(h, buf_len(&hdr), &pos, &f)) {
		if (!mail_name_eq(f.name, f.name_len, field_name))
			continue;
		size_t len;
		char *value = mail_unfold(f.value, f.value_len, &len);

		if (value == NULL) {
			err = IMAPQ_E_NOMEM;
			break;
		}
		lower(value, len);
		*match_r = needle_len == 0 || memmem(value, len, low, needle_len) != NULL;
		free(value);
	}
	free(low);
	buf_free(&hdr);
	return err;
}

imapq_err mail_text_contains(const struct mail *mail, const struct mail_reader *r,
			     const char *needle, size_t needle_len, bool headers_too, bool *match_r)
{
	uint64_t off = headers_too ? 0 : mail->root->body_off;
	uint64_t end = mail->size;
	size_t keep = needle_len > 0 ? needle_len - 1 : 0;
	char *low = malloc(needle_len + 1);
	char *win = malloc(MAIL_READ_WINDOW + keep);
	size_t have = 0; /* bytes in win: the kept tail of the last window, then new bytes */
	imapq_err err = IMAPQ_OK;

	*match_r = needle_len == 0;
	if (low == NULL || win == NULL) {
		free(low);
		free(win);
		return IMAPQ_E_NOMEM;
	}
	memcpy(low, needle, needle_len);
	lower(low, needle_len);
	while (!*match_r && off < end) {
		size_t step = end - off < MAIL_READ_WINDOW ? (size_t)(end - off) : MAIL_READ_WINDOW;

		err = mail_read_exact(r, off, win + have, step);
		if (err != IMAPQ_OK)
			break;
		lower(win + have, step);
		have += step;
		off += step;
		*match_r = memmem(win, have, low, needle_len) != NULL;
		/* Keep the tail that could start a match straddling the next window. */
		size_t tail = have < keep ? have : keep;

		memmove(win, win + have - tail, tail);
		have = tail;
	}
	free(low);
	free(win);
	return err;
}
