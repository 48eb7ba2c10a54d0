#include "imap/base/buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_free(struct buf *b)
{
	free(b->data);
	*b = (struct buf){0};
}

void buf_reset(struct buf *b)
{
	b->start = b->end = 0;
	b->failed = false;
}

char *buf_reserve(struct buf *b, size_t len)
{
	if (b->failed)
		return NULL;
	if (b->cap - b->end >= len)
		return b->data + b->end;
	/* Reuse consumed space at the front before growing. */
	size_t used = b->end - b->start;
	if (b->start > 0 && b->cap - used >= len && b->start >= used) {
		memmove(b->data, b->data + b->start, used);
		b->start = 0;
		b->end = used;
		return b->data + b->end;
	}
	size_t need = used + len;
	if (need < used) {
		b->failed = true;
		return NULL;
	}
	size_t cap = b->cap ? b->cap : 256;
	while (cap < need) {
		if (cap > SIZE_MAX / 2) {
			b->failed = true;
			return NULL;
		}
		cap *= 2;
	}
	char *data = malloc(cap);
	if (data == NULL) {
		b->failed = true;
		return NULL;
	}
	if (used > 0)
		memcpy(data, b->data + b->start, used);
	free(b->data);
	b->data = data;
	b->cap = cap;
	b->start = 0;
	b->end = used;
	return b->data + b->end;
}

void buf_commit(struct buf *b, size_t len)
{
	b->end += len;
}

void buf_append(struct buf *b, const void *data, size_t len)
{
	if (len == 0)
		return;
	char *dst = buf_reserve(b, len);
	if (dst == NULL)
		return;
	memcpy(dst, data, len);
	b->end += len;
}

void buf_puts(struct buf *b, const char *s)
{
	buf_append(b, s, strlen(s));
}

void buf_printf(struct buf *b, const char *fmt, ...)
{
	char small[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof small, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->failed = true;
		return;
	}
	if ((size_t)n < sizeof small) {
		buf_append(b, small, (size_t)n);
		return;
	}
	char *dst = buf_reserve(b, (size_t)n + 1);
	if (dst == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(dst, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->end += (size_t)n;
}

void buf_consume(struct buf *b, size_t n)
{
	b->start += n;
	if (b->start >= b->end)
		b->start = b->end = 0;
}

void buf_truncate(struct buf *b, size_t len)
{
	if (len < b->end - b->start)
		b->end = b->start + len;
}
