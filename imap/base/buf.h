/* A growable byte buffer with a read offset: writers append at the end, a consumer takes bytes
 * from the front. Used for connection output queues and response building. The struct is public
 * so buffers can live inside other structs; touch its fields only through these functions. */
#ifndef IMAPQ_BUF_H
#define IMAPQ_BUF_H

#include <stdbool.h>
#include <stddef.h>

struct buf {
	char *data;
	size_t start; /* first unconsumed byte */
	size_t end;   /* one past the last byte */
	size_t cap;
	bool failed; /* an allocation failed; appends are dropped until buf_reset() */
};

/* An empty buffer needs no allocation: struct buf b = {0}. */
void buf_free(struct buf *b);
/* Empties the buffer and clears the failure mark, keeping its memory. */
void buf_reset(struct buf *b);

/* Unconsumed bytes. */
static inline size_t buf_len(const struct buf *b)
{
	return b->end - b->start;
}
/* Never NULL, so callers may hand an empty buffer's bytes to memcpy and friends. */
static inline const char *buf_bytes(const struct buf *b)
{
	return b->data != NULL ? b->data + b->start : "";
}

/* Appending never fails visibly: on allocation failure the buffer is marked failed and the caller
 * checks buf_failed() once at the end of a response. */
void buf_append(struct buf *b, const void *data, size_t len);
void buf_puts(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline bool buf_failed(const struct buf *b)
{
	return b->failed;
}

/* Makes room for len more bytes and returns where they go; commit them with buf_commit(). NULL
 * when memory is short. */
char *buf_reserve(struct buf *b, size_t len);
void buf_commit(struct buf *b, size_t len);

/* Drops everything past the first len unconsumed bytes (undoes a partly written reply). */
void buf_truncate(struct buf *b, size_t len);

/* Drops n bytes from the front. */
void buf_consume(struct buf *b, size_t n);

#endif
