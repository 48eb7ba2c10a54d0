/* Helpers shared by the mail module's tests: an in-memory message reader that can hand out
 * short reads, and buffer-to-string conversion. */
#ifndef IMAPQ_TEST_MAIL_UTIL_H
#define IMAPQ_TEST_MAIL_UTIL_H

#include <stdlib.h>
#include <string.h>

#include "imap/base/buf.h"
#include "imap/mail/mail.h"

/* A message in memory; chunk > 0 caps each read, to exercise short reads. */
struct mem_msg {
	struct mail_reader reader;
	const char *data;
	size_t chunk;
};

/* Reads from a mem_msg (the reader's ctx). */
static inline imapq_err mem_msg_read(void *ctx, uint64_t offset, void *buf, size_t len,
				     size_t *got_r)
{
	const struct mem_msg *m = ctx;
	uint64_t left = m->reader.size > offset ? m->reader.size - offset : 0;

	if (len > left)
		len = (size_t)left;
	if (m->chunk > 0 && len > m->chunk)
		len = m->chunk;
	memcpy(buf, m->data + offset, len);
	*got_r = len;
	return IMAPQ_OK;
}

/* A reader over data[0, len); the returned struct must stay in place while in use, since the
 * reader's ctx points at it: mem_msg_make() returns it by value and mem_msg_bind() fixes ctx. */
static inline struct mem_msg mem_msg_make(const char *data, size_t len, size_t chunk)
{
	struct mem_msg m = {{mem_msg_read, NULL, len}, data, chunk};

	return m;
}

/* Points the reader's ctx at the struct in its final place. */
static inline const struct mail_reader *mem_msg_bind(struct mem_msg *m)
{
	m->reader.ctx = m;
	return &m->reader;
}

/* A NUL-terminated copy of a buffer's bytes, freeing the buffer. */
static inline char *buf_to_str(struct buf *b)
{
	size_t n = buf_len(b);
	char *s = malloc(n + 1);

	if (s != NULL) {
		if (n > 0)
			memcpy(s, buf_bytes(b), n);
		s[n] = '\0';
	}
	buf_free(b);
	return s;
}

#endif
