/* Encoding and checking of segment and record headers; pure functions over byte buffers. */
#include "imap/store/journal-private.h"

#include "imap/base/crc32c.h"
#include "imap/base/limits.h"

/* Segment header layout: magic[8] version[4] number[4] start_lsn[8] created_ns[8] zero[28]
 * crc[4], the crc covering the 60 bytes before it. */
#define SEG_OFF_VERSION 8
#define SEG_OFF_NUMBER	12
#define SEG_OFF_START	16
#define SEG_OFF_CREATED 24
#define SEG_OFF_CRC	(JOURNAL_SEG_HDR - 4)

/* Record header layout: mark[1] type[1] flags[2] meta_len[4] body_len[8] body_crc[4] hdr_crc[4],
 * hdr_crc covering the 20 bytes before it and then the meta bytes. */
#define REC_OFF_TYPE	 1
#define REC_OFF_FLAGS	 2
#define REC_OFF_META_LEN 4
#define REC_OFF_BODY_LEN 8
#define REC_OFF_BODY_CRC 16
#define REC_OFF_HDR_CRC	 20

void journal_seg_header_encode(uint8_t *out, const struct journal_seg_header *h)
{
	memset(out, 0, JOURNAL_SEG_HDR);
	memcpy(out, JOURNAL_SEG_MAGIC, 8);
	journal_put32(out + SEG_OFF_VERSION, h->version);
	journal_put32(out + SEG_OFF_NUMBER, h->number);
	journal_put64(out + SEG_OFF_START, h->start_lsn);
	journal_put64(out + SEG_OFF_CREATED, h->created_ns);
	journal_put32(out + SEG_OFF_CRC, crc32c(0, out, SEG_OFF_CRC));
}

/* True when all len bytes at p are zero. */
static bool all_zero(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != 0)
			return false;
	return true;
}

enum journal_seg_state journal_seg_header_decode(const uint8_t *buf, size_t len,
						 struct journal_seg_header *h_r)
{
	if (len < JOURNAL_SEG_HDR)
		return all_zero(buf, len) ? JOURNAL_SEG_ZERO : JOURNAL_SEG_BAD;
	if (all_zero(buf, JOURNAL_SEG_HDR))
		return JOURNAL_SEG_ZERO;
	if (memcmp(buf, JOURNAL_SEG_MAGIC, 8) != 0 ||
	    journal_get32(buf + SEG_OFF_CRC) != crc32c(0, buf, SEG_OFF_CRC))
		return JOURNAL_SEG_BAD;
	h_r->version = journal_get32(buf + SEG_OFF_VERSION);
	h_r->number = journal_get32(buf + SEG_OFF_NUMBER);
	h_r->start_lsn = journal_get64(buf + SEG_OFF_START);
	h_r->created_ns = journal_get64(buf + SEG_OFF_CREATED);
	if (h_r->version > JOURNAL_SEG_VERSION)
		return JOURNAL_SEG_NEWER;
	if (h_r->version != JOURNAL_SEG_VERSION)
		return JOURNAL_SEG_BAD;
	return JOURNAL_SEG_OK;
}

void journal_rec_header_encode(uint8_t *out, uint8_t type, const void *meta, uint32_t meta_len,
			       bool has_body, uint64_t body_len, uint32_t body_crc)
{
	out[0] = JOURNAL_REC_MARK;
	out[REC_OFF_TYPE] = type;
	journal_put16(out + REC_OFF_FLAGS, has_body ? JOURNAL_REC_F_BODY : 0);
	journal_put32(out + REC_OFF_META_LEN, meta_len);
	journal_put64(out + REC_OFF_BODY_LEN, has_body ? body_len : 0);
	journal_put32(out + REC_OFF_BODY_CRC, has_body ? body_crc : 0);
	uint32_t crc = crc32c(0, out, REC_OFF_HDR_CRC);
	if (meta_len > 0)
		crc = crc32c(crc, meta, meta_len);
	journal_put32(out + REC_OFF_HDR_CRC, crc);
}

enum journal_parse journal_rec_parse(const uint8_t *base, size_t size, size_t pos,
				     struct journal_parsed *rec_r)
{
	if (pos > size || size - pos < JOURNAL_REC_HDR)
		return JOURNAL_PARSE_END;
	const uint8_t *h = base + pos;
	if (h[0] != JOURNAL_REC_MARK)
		return all_zero(h, JOURNAL_REC_HDR) ? JOURNAL_PARSE_END : JOURNAL_PARSE_BAD;

	uint16_t flags = journal_get16(h + REC_OFF_FLAGS);
	uint32_t meta_len = journal_get32(h + REC_OFF_META_LEN);
	uint64_t body_len = journal_get64(h + REC_OFF_BODY_LEN);
	uint32_t body_crc = journal_get32(h + REC_OFF_BODY_CRC);
	uint64_t left = size - pos - JOURNAL_REC_HDR;
	bool has_body = (flags & JOURNAL_REC_F_BODY) != 0;

	/* Lengths are hostile until checked against what the file holds. */
	if ((flags & ~JOURNAL_REC_F_BODY) != 0 || meta_len > IMAPQ_JOURNAL_MAX_META ||
	    meta_len > left || body_len > left - meta_len || (!has_body && (body_len || body_crc)))
		return JOURNAL_PARSE_BAD;
	uint32_t crc = crc32c(0, h, REC_OFF_HDR_CRC);
	crc = crc32c(crc, h + JOURNAL_REC_HDR, meta_len);
	if (crc != journal_get32(h + REC_OFF_HDR_CRC))
		return JOURNAL_PARSE_BAD;
	if (has_body && crc32c(0, h + JOURNAL_REC_HDR + meta_len, body_len) != body_crc)
		return JOURNAL_PARSE_BAD;

	rec_r->type = h[REC_OFF_TYPE];
	rec_r->has_body = has_body;
	rec_r->meta_len = meta_len;
	rec_r->body_len = body_len;
	rec_r->total = JOURNAL_REC_HDR + (uint64_t)meta_len + body_len;
	return JOURNAL_PARSE_VALID;
}

bool journal_rec_header_body_crc(const uint8_t *h, uint32_t meta_len, uint64_t body_len,
				 uint32_t *crc_r)
{
	uint32_t crc = crc32c(crc32c(0, h, REC_OFF_HDR_CRC), h + JOURNAL_REC_HDR, meta_len);
	if (h[0] != JOURNAL_REC_MARK || crc != journal_get32(h + REC_OFF_HDR_CRC) ||
	    journal_get16(h + REC_OFF_FLAGS) != JOURNAL_REC_F_BODY ||
	    journal_get32(h + REC_OFF_META_LEN) != meta_len ||
	    journal_get64(h + REC_OFF_BODY_LEN) != body_len)
		return false;
	*crc_r = journal_get32(h + REC_OFF_BODY_CRC);
	return true;
}

bool journal_rec_find_next(const uint8_t *base, size_t size, size_t from, size_t *pos_r)
{
	struct journal_parsed rec;

	/* Every record starts with the mark byte, so memchr skips zero runs and most garbage. */
	while (from < size) {
		const uint8_t *p = memchr(base + from, JOURNAL_REC_MARK, size - from);
		if (p == NULL)
			return false;
		size_t pos = (size_t)(p - base);
		if (journal_rec_parse(base, size, pos, &rec) == JOURNAL_PARSE_VALID) {
			*pos_r = pos;
			return true;
		}
		from = pos + 1;
	}
	return false;
}
