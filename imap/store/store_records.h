/* The store's journal records: type numbers, little-endian payload layouts, and hostile-input
 * safe decoders. Decoded strings point into the record (not NUL-terminated) and live only as long
 * as the record does. Private to the store module. */
#ifndef IMAPQ_STORE_RECORDS_H
#define IMAPQ_STORE_RECORDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap/base/error.h"

/* Record types. Numbers are part of the on-disk format and are never reused. */
enum store_rec_type {
	STORE_REC_MAILBOX_CREATE = 1, /* u32 id, u32 uidvalidity, u16 len, name */
	STORE_REC_MAILBOX_DELETE = 2, /* u32 id */
	STORE_REC_MAILBOX_RENAME = 3, /* u32 count, then {u32 id, u16 len, name} */
	STORE_REC_KEYWORD = 4,	      /* u32 id, u8 index, u8 len, name */
	STORE_REC_ANNOTATION = 5,     /* u32 id, u16 klen, key, u8 set, [u32 vlen, value] */
	STORE_REC_APPEND = 6,	      /* store_rec_message; body = the message */
	STORE_REC_FLAGS = 7,	      /* u32 id, u32 count, then count store_rec_state entries */
	STORE_REC_EXPUNGE = 8,	      /* u32 id, u32 count, then {u32 uid, u64 modseq} */
	STORE_REC_CHECKPOINT = 9,     /* u32 next id, u32 last uidvalidity, u32 mailboxes */
	STORE_REC_CHECKPOINT_MAILBOX = 10, /* see store_rec_mailbox_state */
	STORE_REC_CHECKPOINT_END = 11,	   /* u32 mailboxes */
	STORE_REC_EXPUNGE_FLOOR = 12,	   /* u32 id, u64 modseq, u32 uid */
	STORE_REC_CARRIED = 13,		   /* as APPEND; the modseq is the message's current one */
};

/* A growable byte buffer that records are encoded into. On allocation failure it remembers the
 * failure and ignores later writes; check store_buf_failed() once at the end. */
struct store_buf {
	uint8_t *data;
	size_t len, cap;
	bool failed;
};

void store_buf_free(struct store_buf *b);
bool store_buf_failed(const struct store_buf *b);
void store_buf_u8(struct store_buf *b, uint8_t v);
void store_buf_u16(struct store_buf *b, uint16_t v);
void store_buf_u32(struct store_buf *b, uint32_t v);
void store_buf_u64(struct store_buf *b, uint64_t v);
void store_buf_bytes(struct store_buf *b, const void *p, size_t len);
/* Overwrites the u32 at offset at (which must already have been written). */
void store_buf_put_u32_at(struct store_buf *b, size_t at, uint32_t v);

/* A bounds-checked reader over a record's meta. Reads past the end set failed and yield zeros. */
struct store_reader {
	const uint8_t *p;
	size_t left;
	bool failed;
};

void store_reader_init(struct store_reader *r, const void *p, size_t len);
uint8_t store_read_u8(struct store_reader *r);
uint16_t store_read_u16(struct store_reader *r);
uint32_t store_read_u32(struct store_reader *r);
uint64_t store_read_u64(struct store_reader *r);
/* Returns a pointer to the next len bytes, or NULL (and failed) when fewer remain. */
const uint8_t *store_read_bytes(struct store_reader *r, size_t len);
/* True when the whole input was read without running past its end. */
bool store_reader_done(const struct store_reader *r);

/* A message's state as APPEND and CARRIED records hold it, encoded in this order: u32 id,
 * u32 uid, u64 modseq, u64 flags, i64 internal date, u32 attempts, u32 due. */
struct store_rec_message {
	uint32_t id;
	uint32_t uid;
	uint64_t modseq;
	uint64_t flags;
	int64_t internaldate;
	uint32_t attempts;
	uint32_t due;
};

/* Encoded bytes of a message header, the meta of every record that carries a body: u32 id,
 * u32 uid, u64 modseq, u64 flags, u64 internaldate, u32 attempts, u32 due. */
#define STORE_REC_MESSAGE_BYTES 40

void store_rec_message_encode(struct store_buf *b, const struct store_rec_message *m);
/* IMAPQ_E_CORRUPT when meta is not exactly one message header. */
imapq_err store_rec_message_decode(const void *meta, size_t len, struct store_rec_message *m_r);

/* One entry of a FLAGS record: a message's full mutable state after the change. */
struct store_rec_state {
	uint32_t uid;
	uint64_t modseq;
	uint64_t flags;
	uint32_t attempts;
	uint32_t due;
};

/* Encoded bytes of one FLAGS record entry: u32 uid, u64 modseq, u64 flags, u32 attempts,
 * u32 due. */
#define STORE_REC_STATE_BYTES 28

void store_rec_state_encode(struct store_buf *b, const struct store_rec_state *st);
/* Reads one entry; r->failed is set when fewer than STORE_REC_STATE_BYTES remain. */
void store_rec_state_decode(struct store_reader *r, struct store_rec_state *st_r);

/* The head of a CHECKPOINT_MAILBOX record; keywords and annotations follow and are read with
 * store_rec_mailbox_state_decode's reader, left positioned after the head. */
struct store_rec_mailbox_state {
	uint32_t id;
	uint32_t uidvalidity;
	uint32_t uidnext;
	uint64_t highestmodseq;
	uint64_t floor_modseq;
	uint32_t floor_uid;
	const char *name;
	uint16_t name_len;
	uint8_t nkeywords;
	uint16_t nannotations;
};

/* Decodes the head; r then points at nkeywords {u8 len, name} and nannotations
 * {u16 klen, key, u32 vlen, value}. */
imapq_err store_rec_mailbox_state_decode(struct store_reader *r,
					 struct store_rec_mailbox_state *st_r);

/* Copies a length-counted name into buf (cap bytes, NUL-terminated); false when it does not fit
 * or holds a NUL byte. */
bool store_rec_cstr(const void *p, size_t len, char *buf, size_t cap);

#endif
