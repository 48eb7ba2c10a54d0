/* The journal: an append-only sequence of segment files of checksummed records, with group
 * commit. It knows nothing of mailboxes: records are a type byte, a small "meta" part and an
 * optional body, and the store gives them meaning.
 *
 * Writers append records to an in-memory queue and get an LSN (the global byte position just
 * past the record). One flusher thread writes the queue and calls fdatasync once for everything
 * written so far, so many writers share one fsync. journal_wait() returns when a given LSN is
 * durable. After any write or fsync failure the journal is failed for good: every later append
 * and wait returns IMAPQ_E_READONLY, because retrying an fsync after an error can silently lose
 * data. */
#ifndef IMAPQ_JOURNAL_H
#define IMAPQ_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "imap/base/error.h"

enum journal_fsync {
	JOURNAL_FSYNC_ALWAYS, /* journal_wait returns only after fdatasync (the default) */
	JOURNAL_FSYNC_BATCH,  /* journal_wait returns once written; fdatasync every few ms */
	JOURNAL_FSYNC_OFF,    /* journal_wait returns once written; the kernel decides */
};

/* Space classes: a GROW record (a new message) must leave the reserve untouched; a SHRINK record
 * (flag change, expunge, any record that frees or keeps space) may use it, so an ack never fails
 * for lack of disk space once its message was accepted. */
enum journal_class { JOURNAL_GROW, JOURNAL_SHRINK };

struct journal;

struct journal_options {
	const char *dir; /* folder of the segment files; created when missing */
	enum journal_fsync fsync;
	uint64_t segment_bytes; /* rotation size; 0 means IMAPQ_JOURNAL_SEGMENT_BYTES */
};

/* One record as replay presents it. Pointers are valid only during the callback. */
struct journal_record {
	uint8_t type;
	const uint8_t *meta;
	uint32_t meta_len;
	const uint8_t *body; /* NULL when the record has no body */
	uint64_t body_len;
	uint64_t body_loc; /* where the body lives, for journal_body_read(); 0 without a body */
	uint32_t segment;  /* segment number the record is in */
	uint64_t lsn;	   /* global position just past the record */
};

/* Called for every valid record in journal order. A non-OK return stops replay and fails
 * journal_open with that error. */
typedef imapq_err journal_replay_fn(void *ctx, const struct journal_record *rec);

/* What recovery found and what it dropped. */
struct journal_report {
	uint32_t segments;	/* segment files replayed */
	uint64_t records;	/* valid records replayed */
	uint64_t bytes;		/* bytes of valid records */
	uint32_t damaged;	/* damaged regions skipped (checksum or framing failures) */
	uint64_t dropped_bytes; /* bytes skipped in damaged regions and cut from a torn tail */
	uint64_t elapsed_ns;	/* wall time of recovery */
};

/* A body to append: either data (non-NULL) or len bytes of fd starting at offset. crc is the
 * crc32c() of the body's bytes, computed by the caller (often while streaming it in). */
struct journal_body {
	const void *data;
	int fd;
	uint64_t offset;
	uint64_t len;
	uint32_t crc;
	/* data's bytes no longer match crc, their checksum when first written (a copy of a body
	 * that changed on disk): written as they are, to fail their check at the next open. */
	bool damaged;
};

/* Opens (creating when needed) the journal in opts->dir and replays every record through replay.
 * A damaged record is skipped and counted, a torn tail of the newest segment is cut; both are
 * logged. Fails with IMAPQ_E_LOCKED when another process has the folder open. */
imapq_err journal_open(const struct journal_options *opts, journal_replay_fn *replay, void *ctx,
		       struct journal_report *report_r, struct journal **journal_r);

/* Flushes and syncs what was appended, stops the flusher and frees the journal. *journal is set
 * to NULL. */
void journal_close(struct journal **journal);

/* Queues one record. meta_len is at most 1 MiB; body may be NULL. On success *lsn_r is the LSN to
 * wait for and, with a body, *body_loc_r is where it will live. Thread-safe; callers that need a
 * total order among their records serialize their calls. Blocks while the queue is full. */
imapq_err journal_append(struct journal *j, enum journal_class cls, uint8_t type, const void *meta,
			 uint32_t meta_len, const struct journal_body *body, uint64_t *lsn_r,
			 uint64_t *body_loc_r);

/* Blocks until the record ending at lsn is durable under the fsync policy. */
imapq_err journal_wait(struct journal *j, uint64_t lsn);

/* The highest LSN known durable. */
uint64_t journal_durable_lsn(struct journal *j);

/* The LSN just past the last appended record. */
uint64_t journal_append_lsn(struct journal *j);

/* Called from the flusher thread each time the durable LSN advances (and once with the same LSN
 * when the journal fails), shortly after waiters of that LSN were woken. Must not call journal
 * functions that block. */
typedef void journal_commit_fn(void *arg, uint64_t durable_lsn);
void journal_set_commit_hook(struct journal *j, journal_commit_fn *fn, void *arg);

/* Changes the bytes held in reserve for SHRINK records by delta. */
void journal_reserve_add(struct journal *j, int64_t delta);

/* True when the active segment has reached its rotation size. */
bool journal_wants_rotation(struct journal *j);

/* Starts a new segment: records appended after this returns land in it. */
imapq_err journal_rotate(struct journal *j, uint32_t *segment_r);

/* The segment a body location lies in. */
static inline uint32_t journal_loc_segment(uint64_t loc)
{
	return (uint32_t)(loc >> 40);
}

struct journal_segment_info {
	uint32_t number;
	uint64_t bytes; /* bytes of records in it */
};

/* Lists the segments, oldest first; *n_r is the count (which may exceed cap). */
void journal_segments(struct journal *j, struct journal_segment_info *segs, size_t cap,
		      size_t *n_r);

/* Waits until everything appended so far is durable, then deletes the oldest segment. Refuses
 * (IMAPQ_E_INVALID) to delete the active segment. The caller must first have re-appended all that
 * is still needed from it. */
imapq_err journal_drop_oldest(struct journal *j);

/* Reads len bytes of the body at loc, starting offset bytes into the body. Waits until the record
 * is written when it is still queued. Safe while the segment is being dropped. */
imapq_err journal_body_read(struct journal *j, uint64_t loc, uint64_t offset, void *buf,
			    size_t len);

/* Gives the body checksum held by the header of the record whose body is at loc, a record with
 * meta_len bytes of meta and a body of body_len bytes: the checksum the body was written with.
 * IMAPQ_E_CORRUPT when that header no longer matches its own checksum or those lengths. */
imapq_err journal_body_crc(struct journal *j, uint64_t loc, uint32_t meta_len, uint64_t body_len,
			   uint32_t *crc_r);

struct journal_stats {
	uint64_t fsyncs;	/* fdatasync calls */
	uint64_t fsync_ns;	/* total time spent in them */
	uint64_t commits;	/* flusher rounds that wrote something */
	uint64_t records;	/* records appended since open */
	uint64_t bytes_written; /* bytes written since open */
	uint64_t disk_bytes;	/* bytes of records in all segments */
	uint32_t segments;	/* segment files */
	bool failed;		/* the journal failed and refuses writes */
};
void journal_stats(struct journal *j, struct journal_stats *st_r);

/* Bytes an unprivileged writer may still use on the journal's file system; UINT64_MAX when the
 * file system does not say. */
uint64_t journal_disk_free(struct journal *j);

#endif
