#include "imap/store/store_records.h"

#include <stdlib.h>
#include <string.h>

void store_buf_free(struct store_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
	b->failed = false;
}

bool store_buf_failed(const struct store_buf *b)
{
	return b->failed;
}

/* Makes room for len more bytes; false (and failed) when memory runs out. */
static bool buf_reserve(struct store_buf *b, size_t len)
{
	if (b->failed)
		return false;
	if (b->cap - b->len >= len)
		return true;
	size_t cap = b->cap ? b->cap : 64;
	while (cap - b->len < len)
		cap *= 2;
	uint8_t *data = realloc(b->data, cap);
	if (!data) {
		b->failed = true;
		return false;
	}
	b->data = data;
	b->cap = cap;
	return true;
}

void store_buf_bytes(struct store_buf *b, const void *p, size_t len)
{
	if (len == 0 || !buf_reserve(b, len))
		return;
	memcpy(b->data + b->len, p, len);
	b->len += len;
}

/* Appends the n low bytes of v, least significant first. */
static void buf_le(struct store_buf *b, uint64_t v, size_t n)
{
	uint8_t tmp[8];
	for (size_t i = 0; i < n; i++)
		tmp[i] = (uint8_t)(v >> (8 * i));
	store_buf_bytes(b, tmp, n);
}

void store_buf_u8(struct store_buf *b, uint8_t v)
{
	buf_le(b, v, 1);
}

void store_buf_u16(struct store_buf *b, uint16_t v)
{
	buf_le(b, v, 2);
}

void store_buf_u32(struct store_buf *b, uint32_t v)
{
	buf_le(b, v, 4);
}

void store_buf_u64(struct store_buf *b, uint64_t v)
{
	buf_le(b, v, 8);
}

void store_buf_put_u32_at(struct store_buf *b, size_t at, uint32_t v)
{
	if (b->failed || at + 4 > b->len)
		return;
	for (size_t i = 0; i < 4; i++)
		b->data[at + i] = (uint8_t)(v >> (8 * i));
}

void store_reader_init(struct store_reader *r, const void *p, size_t len)
{
	r->p = p;
	r->left = p ? len : 0;
	r->failed = false;
}

const uint8_t *store_read_bytes(struct store_reader *r, size_t len)
{
	if (r->failed || r->left < len) {
		r->failed = true;
		return NULL;
	}
	const uint8_t *p = r->p;
	r->p += len;
	r->left -= len;
	return p;
}

/* Reads an n-byte little-endian integer; 0 past the end. */
static uint64_t read_le(struct store_reader *r, size_t n)
{
	const uint8_t *p = store_read_bytes(r, n);
	uint64_t v = 0;
	if (!p)
		return 0;
	for (size_t i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

uint8_t store_read_u8(struct store_reader *r)
{
	return (uint8_t)read_le(r, 1);
}

uint16_t store_read_u16(struct store_reader *r)
{
	return (uint16_t)read_le(r, 2);
}

uint32_t store_read_u32(struct store_reader *r)
{
	return (uint32_t)read_le(r, 4);
}

uint64_t store_read_u64(struct store_reader *r)
{
	return read_le(r, 8);
}

bool store_reader_done(const struct store_reader *r)
{
	return !r->failed && r->left == 0;
}

void store_rec_message_encode(struct store_buf *b, const struct store_rec_message *m)
{
	store_buf_u32(b, m->id);
	store_buf_u32(b, m->uid);
	store_buf_u64(b, m->modseq);
	store_buf_u64(b, m->flags);
	store_buf_u64(b, (uint64_t)m->internaldate);
	store_buf_u32(b, m->attempts);
	store_buf_u32(b, m->due);
}

imapq_err store_rec_message_decode(const void *meta, size_t len, struct store_rec_message *m_r)
{
	struct store_reader r;
	store_reader_init(&r, meta, len);
	m_r->id = store_read_u32(&r);
	m_r->uid = store_read_u32(&r);
	m_r->modseq = store_read_u64(&r);
	m_r->flags = store_read_u64(&r);
	m_r->internaldate = (int64_t)store_read_u64(&r);
	m_r->attempts = store_read_u32(&r);
	m_r->due = store_read_u32(&r);
	if (!store_reader_done(&r) || m_r->uid == 0 || m_r->modseq == 0)
		return IMAPQ_E_CORRUPT;
	return IMAPQ_OK;
}

void store_rec_state_encode(struct store_buf *b, const struct store_rec_state *st)
{
	store_buf_u32(b, st->uid);
	store_buf_u64(b, st->modseq);
	store_buf_u64(b, st->flags);
	store_buf_u32(b, st->attempts);
	store_buf_u32(b, st->due);
}

void store_rec_state_decode(struct store_reader *r, struct store_rec_state *st_r)
{
	st_r->uid = store_read_u32(r);
	st_r->modseq = store_read_u64(r);
	st_r->flags = store_read_u64(r);
	st_r->attempts = store_read_u32(r);
	st_r->due = store_read_u32(r);
}

imapq_err store_rec_mailbox_state_decode(struct store_reader *r,
					 struct store_rec_mailbox_state *st_r)
{
	st_r->id = store_read_u32(r);
	st_r->uidvalidity = store_read_u32(r);
	st_r->uidnext = store_read_u32(r);
	st_r->highestmodseq = store_read_u64(r);
	st_r->floor_modseq = store_read_u64(r);
	st_r->floor_uid = store_read_u32(r);
	st_r->name_len = store_read_u16(r);
	st_r->name = (const char *)store_read_bytes(r, st_r->name_len);
	st_r->nkeywords = store_read_u8(r);
	st_r->nannotations = store_read_u16(r);
	if (r->failed || st_r->uidnext == 0 || st_r->highestmodseq == 0)
		return IMAPQ_E_CORRUPT;
	return IMAPQ_OK;
}

bool store_rec_cstr(const void *p, size_t len, char *buf, size_t cap)
{
	if (!p || len >= cap || memchr(p, '\0', len))
		return false;
	memcpy(buf, p, len);
	buf[len] = '\0';
	return true;
}
