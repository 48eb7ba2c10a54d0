/* Internals of the journal shared by its files (journal.c, journal_format.c, journal_segment.c,
 * journal_recover.c, journal_flush.c), and the fault-injection seams the unit tests replace.
 * docs/journal.md describes the on-disk format these constants define. */
#ifndef IMAPQ_JOURNAL_PRIVATE_H
#define IMAPQ_JOURNAL_PRIVATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "imap/store/journal.h"

/* --- On-disk format (all integers little-endian) --- */

#define JOURNAL_SEG_MAGIC	"IMAPQJNL" /* first 8 bytes of every segment file */
#define JOURNAL_SEG_VERSION	1u	   /* format version this code reads and writes */
#define JOURNAL_SEG_HDR		64u	   /* bytes of the segment header; records follow */
#define JOURNAL_REC_MARK	0xA5u	   /* first byte of every record header */
#define JOURNAL_REC_HDR		24u	   /* bytes of a record header; meta, then body follow */
#define JOURNAL_REC_F_BODY	0x0001u	   /* record flag: a body follows the meta */
#define JOURNAL_LOC_OFFSET_BITS 40	   /* low bits of a body location: offset in segment */
#define JOURNAL_LOC_OFFSET_MASK ((UINT64_C(1) << JOURNAL_LOC_OFFSET_BITS) - 1)
#define JOURNAL_SEG_NAME_LEN	14 /* "NNNNNNNNNN.seg" */
/* Bytes the flusher reads and writes at a time when it copies a body from a file: enough to
 * keep the syscalls few, small enough to stay out of large-allocation paths. */
#define JOURNAL_COPY_BUF (64u * 1024)

/* Little-endian stores and loads for the header fields. */
static inline void journal_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void journal_put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void journal_put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint16_t journal_get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t journal_get32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static inline uint64_t journal_get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* What a segment header says. */
struct journal_seg_header {
	uint32_t version;
	uint32_t number;
	uint64_t start_lsn;  /* LSN of the segment's byte 0: a record's LSN is start_lsn + end */
	uint64_t created_ns; /* creation time, nanoseconds since the Unix epoch */
};

enum journal_seg_state {
	JOURNAL_SEG_OK,	   /* a valid header of the supported version */
	JOURNAL_SEG_ZERO,  /* all zero (or shorter than a header and all zero): never initialised */
	JOURNAL_SEG_BAD,   /* wrong magic, size or checksum */
	JOURNAL_SEG_NEWER, /* a valid header of a format version this code cannot read */
};

/* Fills out[JOURNAL_SEG_HDR] with a header for h, checksum included. */
void journal_seg_header_encode(uint8_t *out, const struct journal_seg_header *h);

/* Decodes the first len bytes of a segment file into *h_r (filled only for OK and NEWER). */
enum journal_seg_state journal_seg_header_decode(const uint8_t *buf, size_t len,
						 struct journal_seg_header *h_r);

/* One record found in a mapped segment. */
struct journal_parsed {
	uint8_t type;
	bool has_body;
	uint32_t meta_len;
	uint64_t body_len;
	uint64_t total; /* header + meta + body bytes */
};

enum journal_parse {
	JOURNAL_PARSE_VALID, /* a complete record whose header and body checksums match */
	JOURNAL_PARSE_END,   /* an all-zero header, or too few bytes left for a header */
	JOURNAL_PARSE_BAD,   /* anything else: damaged or torn */
};

/* Fills out[JOURNAL_REC_HDR] with a record header; its checksum covers the header and meta. */
void journal_rec_header_encode(uint8_t *out, uint8_t type, const void *meta, uint32_t meta_len,
			       bool has_body, uint64_t body_len, uint32_t body_crc);

/* Checks the record at pos of the size bytes at base, never reading outside them. */
enum journal_parse journal_rec_parse(const uint8_t *base, size_t size, size_t pos,
				     struct journal_parsed *rec_r);

/* Checks a record header and the meta_len bytes of meta after it at h: its checksum, a body
 * flag, and the lengths meta_len and body_len. Gives the body checksum it holds. */
bool journal_rec_header_body_crc(const uint8_t *h, uint32_t meta_len, uint64_t body_len,
				 uint32_t *crc_r);

/* Finds the first offset >= from where a valid record starts; false when there is none. */
bool journal_rec_find_next(const uint8_t *base, size_t size, size_t from, size_t *pos_r);

/* --- In-memory state --- */

/* One segment file. Fields marked (mu) are guarded by the journal mutex; (flusher) fields are
 * touched only by the flusher thread. The fd stays open while refs > 0, so readers keep reading a
 * segment that journal_drop_oldest unlinks. */
struct journal_segment {
	uint32_t number;
	int fd;		      /* -1 for a segment whose header is bad */
	bool bad;	      /* header unreadable: listed so it can be dropped, never read */
	bool dropped;	      /* (mu) unlinked and removed from the list */
	bool trimmed;	      /* (mu) unused preallocation released after rotation */
	unsigned refs;	      /* (mu) the list's reference plus one per reader */
	uint64_t start_lsn;   /* from the header */
	uint64_t append_pos;  /* (mu) end of the records assigned to the segment */
	uint64_t written_pos; /* (mu) end of the records written to the file */
	uint64_t alloc_size;  /* (mu) file size, preallocated with fallocate */
	uint64_t file_size;   /* size found at open, for bad segments */
	uint64_t flush_pos;   /* (flusher) end of what this flusher round wrote */
	bool dirty;	      /* (flusher) written since its last fdatasync */
	uint64_t zeroed_pos;  /* (flusher) end of the zeros written ahead of the records */
	uint64_t zero_limit;  /* (flusher) alloc_size as the current round saw it */
};

/* One queued record. buf holds the header, the meta and an in-memory body; a body taken from a
 * file is copied by the flusher from body_fd (a dup the record owns). */
struct journal_pending {
	struct journal_pending *next;
	struct journal_segment *seg;
	uint64_t offset; /* of the record header in the segment file */
	uint64_t lsn;	 /* just past the record */
	uint64_t total;	 /* record bytes on disk */
	size_t buf_len;
	int body_fd;
	uint64_t body_offset;
	uint64_t body_len;
	uint32_t body_crc;
	uint8_t buf[];
};

struct journal {
	char *dir;
	int dir_fd;
	int lock_fd;
	enum journal_fsync fsync;
	uint64_t segment_bytes;

	pthread_mutex_t mu;
	pthread_cond_t flusher_cond; /* wakes the flusher */
	pthread_cond_t progress;     /* writes, syncs, rotation and failure wake waiters */
	pthread_t flusher;
	bool flusher_running;

	/* Durability published without the mutex: waiters check these and sleep on a futex on
	 * published_gen, so a commit wakes them without a stampede on mu. Written under mu by
	 * journal_publish(). */
	_Atomic uint64_t published_lsn;
	_Atomic uint32_t published_gen;
	_Atomic bool published_failed;
	_Atomic uint32_t
	    waiters; /* threads in journal_wait(): a publish without any skips the wake */
	/* Whether the active segment reached segment_bytes; written under mu, read without it. */
	_Atomic bool active_full;

	/* Everything below is guarded by mu unless marked otherwise. */
	struct journal_segment **segs; /* oldest first */
	size_t n_segs, cap_segs;
	struct journal_segment *active;
	struct journal_pending *head, *tail;
	uint64_t queued_bytes; /* bytes of queued records held in RAM */
	uint64_t last_lsn;     /* LSN of the last appended record; a new segment starts here */
	uint64_t written_lsn;  /* every record up to here is written */
	uint64_t synced_lsn;   /* every record up to here went through fdatasync */
	uint64_t durable_lsn;  /* durable under the fsync policy (what journal_wait waits for) */
	int64_t reserved;
	bool failed;
	bool stop;
	bool sync_requested; /* drop_oldest or close needs a sync whatever the policy */
	bool flusher_idle;   /* the flusher sleeps on flusher_cond */
	bool rotating;	     /* journal_rotate is creating a segment; appends wait */
	journal_commit_fn *hook;
	void *hook_arg;
	uint64_t last_sync_ns;
	uint64_t fsyncs, fsync_ns, commits, records, bytes_written;
	uint8_t *copy_buf; /* (flusher) JOURNAL_COPY_BUF bytes for bodies copied from files */
};

/* Publishes durable_lsn and failed to lock-free waiters and wakes them. Caller holds mu. */
void journal_publish(struct journal *j);

/* Updates active_full after the active segment or its size changed. Caller holds mu. */
static inline void journal_note_active(struct journal *j)
{
	atomic_store_explicit(&j->active_full, j->active->append_pos >= j->segment_bytes,
			      memory_order_relaxed);
}

/* --- Segment files (journal_segment.c) --- */

/* Formats the file name of segment number into name[JOURNAL_SEG_NAME_LEN + 1]. */
void journal_seg_name(uint32_t number, char *name);

/* Parses a segment file name; false when name is not one. */
bool journal_seg_name_parse(const char *name, uint32_t *number_r);

/* Creates segment number with a header at start_lsn, preallocated to alloc bytes and synced with
 * its directory entry. Returns IMAPQ_E_NOSPACE when fallocate finds the disk full (no file is
 * left behind) or IMAPQ_E_IO. *seg_r holds one reference. */
imapq_err journal_seg_create(struct journal *j, uint32_t number, uint64_t start_lsn, uint64_t alloc,
			     struct journal_segment **seg_r);

/* Allocates an in-memory segment (refs 1) for an already open fd. */
struct journal_segment *journal_seg_new(uint32_t number, int fd);

/* Appends seg to the list (the list owns the caller's reference). */
imapq_err journal_seg_list_add(struct journal *j, struct journal_segment *seg);

/* Finds a listed segment by number; NULL when absent. Caller holds mu. */
struct journal_segment *journal_seg_find(struct journal *j, uint32_t number);

/* Drops one reference; caller holds mu. True when it was the last: the caller then passes the
 * segment to journal_seg_free() once mu is released, since closing the file of a dropped segment
 * frees its blocks (tens of milliseconds for a full segment with online discard), which must not
 * hold up appends and reads. */
bool journal_seg_put(struct journal_segment *seg);
/* Closes the fd of a segment whose last reference is gone and frees it; a dropped segment's file
 * is first shortened to nothing in steps of IMAPQ_JOURNAL_RELEASE_STEP, so that the disk frees
 * its blocks a little at a time. */
void journal_seg_free(struct journal_segment *seg);
/* Both at once, while holding mu: where no dropped segment's last reference can go (opening,
 * closing, a failed rotation, and the flusher, which lets go of a segment before it publishes
 * the sync that a drop waits for). */
void journal_seg_unref(struct journal_segment *seg);

/* Grows the segment's preallocation to at least need bytes. Caller holds mu. Returns
 * IMAPQ_E_NOSPACE when the disk is full, IMAPQ_E_IO on other failures. */
imapq_err journal_seg_extend(struct journal *j, struct journal_segment *seg, uint64_t need);

/* fsyncs the journal folder, logging a failure; returns IMAPQ_E_IO on failure. */
imapq_err journal_dir_sync(struct journal *j);

/* --- Recovery (journal_recover.c) --- */

/* Lists and replays every segment, cuts a torn tail, and leaves j->segs and j->active ready for
 * appends. */
imapq_err journal_recover(struct journal *j, journal_replay_fn *replay, void *ctx,
			  struct journal_report *rep);

/* --- The flusher thread (journal_flush.c) --- */

/* Thread body: writes queued records, syncs per policy, until j->stop and nothing is left. */
void *journal_flusher_main(void *arg);

/* Frees a queued record and its file descriptor. */
void journal_pending_free(struct journal_pending *p);

/* Monotonic clock in nanoseconds. */
uint64_t journal_now_ns(void);

/* --- Fault-injection seams: writes, syncs, preallocation, reads and closes go through these --- */

typedef ssize_t journal_pwritev_t(int fd, const struct iovec *iov, int iovcnt, off_t offset);
typedef int journal_fdatasync_t(int fd);
typedef int journal_fallocate_t(int fd, int mode, off_t offset, off_t len);
typedef ssize_t journal_pread_t(int fd, void *buf, size_t len, off_t offset);
typedef int journal_close_t(int fd);
typedef int journal_ftruncate_t(int fd, off_t len);

extern journal_pwritev_t *_Atomic journal_pwritev_fn;	  /* defaults to pwritev */
extern journal_fdatasync_t *_Atomic journal_fdatasync_fn; /* defaults to fdatasync */
extern journal_fallocate_t *_Atomic journal_fallocate_fn; /* defaults to fallocate */
extern journal_pread_t *_Atomic journal_pread_fn;	  /* defaults to pread */
extern journal_close_t *_Atomic journal_close_fn;	  /* defaults to close, for segment files */
extern journal_ftruncate_t *_Atomic journal_ftruncate_fn; /* defaults to ftruncate */

#endif
