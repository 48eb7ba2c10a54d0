/* The flusher thread: takes everything queued, writes it with one pwritev per contiguous run,
 * syncs according to the fsync policy, and wakes the waiters. Records queued while it syncs form
 * the next group. */
#include "imap/store/journal-private.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "imap/base/crc32c.h"
#include "imap/base/limits.h"
#include "imap/base/log.h"

#define LOG_MOD "journal"

#define FLUSH_IOV_MAX	 1024u		/* iovecs per pwritev (the kernel's IOV_MAX) */
#define FLUSH_SYNC_MAX	 8u		/* segments synced in one round (rotations are rare) */
#define FLUSH_ZERO_AHEAD (1024u * 1024) /* zeros written ahead of the records */
#define FLUSH_ZERO_CHUNK (64u * 1024)	/* one iovec of zeros */

/* fallocate leaves unwritten extents: every fdatasync after writing into one must also sync
 * the extent tree. Writing real zeros a stretch ahead of the records converts the extents once
 * per stretch, so most syncs flush data pages only. */
static const uint8_t flush_zeros[FLUSH_ZERO_CHUNK];

uint64_t journal_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void journal_pending_free(struct journal_pending *p)
{
	if (p->body_fd >= 0)
		close(p->body_fd);
	free(p);
}

/* Marks the journal failed for good, logging the first failure. Caller holds mu. */
static void flush_fail_locked(struct journal *j, const char *what, uint32_t segment, int errnum)
{
	if (j->failed)
		return;
	j->failed = true;
	journal_publish(j);
	log_error(LOG_MOD, "%s of segment %u in %s failed (%s); the journal now refuses writes",
		  what, segment, j->dir, strerror(errnum));
}

/* Writes every byte of iov[0..cnt) at off, resuming after short writes; false with errno set. */
static bool write_iov(int fd, struct iovec *iov, unsigned cnt, uint64_t off)
{
	while (cnt > 0) {
		ssize_t n = atomic_load(&journal_pwritev_fn)(fd, iov, (int)cnt, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			return false;
		}
		off += (uint64_t)n;
		size_t left = (size_t)n;
		while (cnt > 0 && left >= iov->iov_len) {
			left -= iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + left;
			iov->iov_len -= left;
		}
	}
	return true;
}

/* Copies a record's body from its source file in chunks, checking the caller's checksum. */
static bool copy_body(struct journal *j, const struct journal_pending *p, uint64_t dst,
		      const char **what_r)
{
	uint32_t crc = 0;
	uint64_t done = 0;

	while (done < p->body_len) {
		uint64_t want = p->body_len - done;
		size_t chunk = want < JOURNAL_COPY_BUF ? (size_t)want : JOURNAL_COPY_BUF;
		ssize_t n = pread(p->body_fd, j->copy_buf, chunk, (off_t)(p->body_offset + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			*what_r = "read of a body's source file for a write";
			return false;
		}
		crc = crc32c(crc, j->copy_buf, (size_t)n);
		struct iovec iov = {.iov_base = j->copy_buf, .iov_len = (size_t)n};
		if (!write_iov(p->seg->fd, &iov, 1, dst + done)) {
			*what_r = "write";
			return false;
		}
		done += (uint64_t)n;
	}
	if (crc != p->body_crc) {
		errno = EIO;
		*what_r = "body checksum check (the source changed while queued)";
		return false;
	}
	return true;
}

/* Writes zeros past seg's records up to FLUSH_ZERO_AHEAD ahead once fewer than half of that
 * remain, never past the preallocated size. */
static bool zero_ahead(struct journal_segment *seg)
{
	uint64_t from = seg->zeroed_pos > seg->flush_pos ? seg->zeroed_pos : seg->flush_pos;
	uint64_t to = seg->flush_pos + FLUSH_ZERO_AHEAD;
	struct iovec iov[FLUSH_ZERO_AHEAD / FLUSH_ZERO_CHUNK];
	unsigned cnt = 0;

	if (from >= seg->flush_pos + FLUSH_ZERO_AHEAD / 2)
		return true;
	if (to > seg->zero_limit)
		to = seg->zero_limit;
	for (uint64_t off = from; off < to; off += FLUSH_ZERO_CHUNK) {
		uint64_t len = to - off < FLUSH_ZERO_CHUNK ? to - off : FLUSH_ZERO_CHUNK;
		iov[cnt++] = (struct iovec){.iov_base = (void *)flush_zeros, .iov_len = len};
	}
	if (cnt > 0 && !write_iov(seg->fd, iov, cnt, from))
		return false;
	if (to > seg->zeroed_pos)
		seg->zeroed_pos = to;
	return true;
}

/* Writes a batch in order; contiguous records of one segment share one pwritev. */
static bool write_batch(struct journal *j, struct journal_pending *batch, const char **what_r,
			uint32_t *segment_r)
{
	struct iovec iov[FLUSH_IOV_MAX];
	struct journal_segment *run_seg = NULL;
	uint64_t run_off = 0, run_end = 0;
	unsigned cnt = 0;

	*what_r = "write";
	for (struct journal_pending *p = batch; p != NULL; p = p->next) {
		*segment_r = p->seg->number;
		if (cnt > 0 &&
		    (p->seg != run_seg || p->offset != run_end || cnt == FLUSH_IOV_MAX)) {
			if (!write_iov(run_seg->fd, iov, cnt, run_off))
				return false;
			cnt = 0;
		}
		if (cnt == 0) {
			run_seg = p->seg;
			run_off = run_end = p->offset;
		}
		iov[cnt++] = (struct iovec){.iov_base = p->buf, .iov_len = p->buf_len};
		run_end += p->buf_len;
		if (p->body_fd >= 0) {
			if (!write_iov(run_seg->fd, iov, cnt, run_off) ||
			    !copy_body(j, p, run_end, what_r))
				return false;
			cnt = 0;
		}
		p->seg->flush_pos = p->offset + p->total;
		p->seg->dirty = true;
	}
	if (cnt > 0 && !write_iov(run_seg->fd, iov, cnt, run_off))
		return false;
	for (struct journal_pending *p = batch; p != NULL; p = p->next) {
		if (p->next == NULL || p->next->seg != p->seg) {
			*segment_r = p->seg->number;
			if (!zero_ahead(p->seg))
				return false;
		}
	}
	return true;
}

/* Calls the commit hook outside the mutex, so it may take the caller's own locks. */
static void flush_notify(struct journal *j)
{
	journal_commit_fn *fn = j->hook;
	void *arg = j->hook_arg;
	uint64_t lsn = j->durable_lsn;

	if (fn == NULL)
		return;
	pthread_mutex_unlock(&j->mu);
	fn(arg, lsn);
	pthread_mutex_lock(&j->mu);
}

/* Takes the queue and writes it; publishes written positions. Caller holds mu. */
static void flush_round(struct journal *j)
{
	struct journal_pending *batch = j->head, *p, *next;
	uint64_t last_lsn = 0, bytes = 0, mem = 0;
	const char *what = "write";
	uint32_t segment = 0;
	bool was_failed = j->failed, ok = false;
	int errnum = 0;

	j->head = j->tail = NULL;
	for (p = batch; p != NULL; p = p->next)
		p->seg->zero_limit = p->seg->alloc_size;
	pthread_mutex_unlock(&j->mu);
	if (!was_failed) {
		ok = write_batch(j, batch, &what, &segment);
		errnum = errno;
	}
	pthread_mutex_lock(&j->mu);

	for (p = batch; p != NULL; p = p->next) {
		last_lsn = p->lsn;
		bytes += p->total;
		mem += p->buf_len;
		if (ok)
			p->seg->written_pos = p->seg->flush_pos;
	}
	j->queued_bytes -= mem;
	if (ok) {
		j->written_lsn = last_lsn;
		j->bytes_written += bytes;
		j->commits++;
		if (j->fsync != JOURNAL_FSYNC_ALWAYS)
			j->durable_lsn = last_lsn;
	} else if (!was_failed) {
		flush_fail_locked(j, what, segment, errnum);
	}
	journal_publish(j);
	pthread_cond_broadcast(&j->progress);
	pthread_mutex_unlock(&j->mu);
	for (p = batch; p != NULL; p = next) {
		next = p->next;
		journal_pending_free(p);
	}
	pthread_mutex_lock(&j->mu);
	if (ok ? j->fsync != JOURNAL_FSYNC_ALWAYS : !was_failed)
		flush_notify(j);
}

/* Syncs every segment written since its last sync (releasing the unused preallocation of
 * segments that rotation left behind) and advances the synced LSN. Caller holds mu. */
static void flush_sync(struct journal *j)
{
	struct journal_segment *segs[FLUSH_SYNC_MAX];
	bool trim[FLUSH_SYNC_MAX];
	uint64_t target = j->written_lsn, ns = 0, calls = 0;
	size_t n = 0;
	bool ok = true, more = false;
	uint32_t segment = 0;
	const char *what = "fdatasync";
	int errnum = 0;

	for (size_t i = j->n_segs; i-- > 0;) {
		struct journal_segment *seg = j->segs[i];
		if (!seg->dirty)
			continue;
		if (n == FLUSH_SYNC_MAX) {
			more = true; /* the next round syncs the rest before the LSN advances */
			break;
		}
		trim[n] = seg != j->active && !seg->trimmed &&
			  seg->append_pos == seg->written_pos && seg->alloc_size > seg->append_pos;
		if (trim[n]) {
			seg->trimmed = true;
			seg->alloc_size = seg->append_pos;
		}
		seg->refs++;
		segs[n++] = seg;
	}
	pthread_mutex_unlock(&j->mu);
	for (size_t i = 0; i < n && ok; i++) {
		segment = segs[i]->number;
		if (trim[i] && ftruncate(segs[i]->fd, (off_t)segs[i]->append_pos) != 0)
			log_warn(LOG_MOD, "cannot release the unused end of segment %u in %s: %s",
				 segment, j->dir, strerror(errno));
		uint64_t t0 = journal_now_ns();
		ok = atomic_load(&journal_fdatasync_fn)(segs[i]->fd) == 0;
		errnum = errno;
		ns += journal_now_ns() - t0;
		calls++;
		if (ok)
			segs[i]->dirty = false;
	}
	pthread_mutex_lock(&j->mu);

	j->fsyncs += calls;
	j->fsync_ns += ns;
	j->last_sync_ns = journal_now_ns();
	for (size_t i = 0; i < n; i++)
		journal_seg_unref(segs[i]);
	if (!ok) {
		flush_fail_locked(j, what, segment, errnum);
	} else if (more) {
		return;
	} else {
		j->synced_lsn = target;
		if (j->fsync == JOURNAL_FSYNC_ALWAYS)
			j->durable_lsn = target;
	}
	journal_publish(j);
	pthread_cond_broadcast(&j->progress);
	if (!ok || j->fsync == JOURNAL_FSYNC_ALWAYS)
		flush_notify(j);
}

/* True when the written data should be synced now. Caller holds mu. */
static bool flush_sync_due(struct journal *j, uint64_t now)
{
	if (j->failed || j->synced_lsn >= j->written_lsn)
		return false;
	if (j->fsync == JOURNAL_FSYNC_ALWAYS || j->sync_requested || j->stop)
		return true;
	return j->fsync == JOURNAL_FSYNC_BATCH &&
	       now >= j->last_sync_ns + IMAPQ_JOURNAL_BATCH_MS * 1000000ull;
}

/* Sleeps until there is work, or until the next batch sync is due. Caller holds mu. */
static void flush_sleep(struct journal *j)
{
	j->flusher_idle = true;
	if (j->fsync == JOURNAL_FSYNC_BATCH && !j->failed && j->synced_lsn < j->written_lsn) {
		uint64_t due = j->last_sync_ns + IMAPQ_JOURNAL_BATCH_MS * 1000000ull;
		struct timespec ts = {.tv_sec = (time_t)(due / 1000000000u),
				      .tv_nsec = (long)(due % 1000000000u)};
		pthread_cond_timedwait(&j->flusher_cond, &j->mu, &ts);
	} else {
		pthread_cond_wait(&j->flusher_cond, &j->mu);
	}
	j->flusher_idle = false;
}

void *journal_flusher_main(void *arg)
{
	struct journal *j = arg;

	pthread_mutex_lock(&j->mu);
	for (;;) {
		if (j->head != NULL) {
			flush_round(j);
			continue;
		}
		if (flush_sync_due(j, journal_now_ns())) {
			flush_sync(j);
			continue;
		}
		if (j->head != NULL)
			continue;
		/* Everything appended is written, and synced unless the policy defers it. */
		if (j->sync_requested && (j->failed || j->synced_lsn >= j->written_lsn)) {
			j->sync_requested = false;
			journal_publish(j);
			pthread_cond_broadcast(&j->progress);
		}
		if (j->stop)
			break;
		flush_sleep(j);
	}
	pthread_mutex_unlock(&j->mu);
	return NULL;
}
