/* The journal's public operations: open and close, append, wait, rotation, dropping old
 * segments and reading bodies back. Recovery lives in journal_recover.c, the flusher thread in
 * journal_flush.c and the file format in journal_format.c. */
#include "imap/store/journal-private.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "imap/base/crc32c.h"
#include "imap/base/limits.h"
#include "imap/base/log.h"

#define LOG_MOD "journal"

/* Creates path and its missing parents. */
static imapq_err make_dirs(const char *path)
{
	char *copy = strdup(path);
	imapq_err err = IMAPQ_OK;

	if (copy == NULL)
		return IMAPQ_E_NOMEM;
	for (char *p = copy + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		if (mkdir(copy, 0700) != 0 && errno != EEXIST) {
			log_error(LOG_MOD, "cannot create folder %s: %s", copy, strerror(errno));
			err = IMAPQ_E_IO;
			break;
		}
		*p = c;
		if (c == '\0')
			break;
	}
	free(copy);
	return err;
}

/* The LSN just past the last appended record. Caller holds mu. */
static uint64_t append_lsn_locked(const struct journal *j)
{
	return j->last_lsn;
}

/* Wakes the flusher when it sleeps. Caller holds mu. */
static void kick_flusher(struct journal *j)
{
	if (j->flusher_idle) {
		j->flusher_idle = false;
		pthread_cond_signal(&j->flusher_cond);
	}
}

/* Frees everything the journal holds; the flusher must not be running. */
static void journal_destroy(struct journal *j)
{
	struct journal_pending *p, *next;

	for (p = j->head; p != NULL; p = next) {
		next = p->next;
		journal_pending_free(p);
	}
	for (size_t i = 0; i < j->n_segs; i++)
		journal_seg_unref(j->segs[i]);
	free(j->segs);
	if (j->dir_fd >= 0)
		close(j->dir_fd);
	if (j->lock_fd >= 0)
		close(j->lock_fd); /* releases the flock */
	pthread_cond_destroy(&j->progress);
	pthread_cond_destroy(&j->flusher_cond);
	pthread_mutex_destroy(&j->mu);
	free(j->copy_buf);
	free(j->dir);
	free(j);
}

/* Creates the folder, opens it and takes the LOCK file. */
static imapq_err open_folder(struct journal *j)
{
	imapq_err err = make_dirs(j->dir);

	if (err != IMAPQ_OK)
		return err;
	j->dir_fd = open(j->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (j->dir_fd < 0) {
		log_error(LOG_MOD, "cannot open folder %s: %s", j->dir, strerror(errno));
		return IMAPQ_E_IO;
	}
	j->lock_fd = openat(j->dir_fd, "LOCK", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (j->lock_fd < 0) {
		log_error(LOG_MOD, "cannot open %s/LOCK: %s", j->dir, strerror(errno));
		return IMAPQ_E_IO;
	}
	if (flock(j->lock_fd, LOCK_EX | LOCK_NB) != 0) {
		if (errno == EWOULDBLOCK) {
			log_error(LOG_MOD, "%s is in use by another process", j->dir);
			return IMAPQ_E_LOCKED;
		}
		log_error(LOG_MOD, "cannot lock %s/LOCK: %s", j->dir, strerror(errno));
		return IMAPQ_E_IO;
	}
	return IMAPQ_OK;
}

/* Allocates a journal with its locks; NULL when memory runs out. */
static struct journal *journal_alloc(const struct journal_options *opts)
{
	struct journal *j = calloc(1, sizeof(*j));
	pthread_condattr_t attr;

	if (j == NULL)
		return NULL;
	j->dir_fd = j->lock_fd = -1;
	j->fsync = opts->fsync;
	j->segment_bytes = opts->segment_bytes ? opts->segment_bytes : IMAPQ_JOURNAL_SEGMENT_BYTES;
	if (j->segment_bytes < JOURNAL_SEG_HDR + JOURNAL_REC_HDR)
		j->segment_bytes = JOURNAL_SEG_HDR + JOURNAL_REC_HDR;
	pthread_mutex_init(&j->mu, NULL);
	pthread_cond_init(&j->progress, NULL);
	/* The flusher's batch timer uses the monotonic clock. */
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&j->flusher_cond, &attr);
	pthread_condattr_destroy(&attr);
	j->dir = strdup(opts->dir);
	j->copy_buf = malloc(JOURNAL_COPY_BUF);
	if (j->dir == NULL || j->copy_buf == NULL) {
		journal_destroy(j);
		return NULL;
	}
	return j;
}

imapq_err journal_open(const struct journal_options *opts, journal_replay_fn *replay, void *ctx,
		       struct journal_report *report_r, struct journal **journal_r)
{
	struct journal_report rep = {0};
	uint64_t t0 = journal_now_ns();
	struct journal *j;
	imapq_err err;

	*journal_r = NULL;
	if (opts == NULL || opts->dir == NULL || opts->dir[0] == '\0')
		return IMAPQ_E_INVALID;
	j = journal_alloc(opts);
	if (j == NULL)
		return IMAPQ_E_NOMEM;
	err = open_folder(j);
	if (err == IMAPQ_OK)
		err = journal_recover(j, replay, ctx, &rep);
	if (err == IMAPQ_OK) {
		j->last_lsn = j->active->start_lsn + j->active->append_pos;
		j->written_lsn = j->synced_lsn = j->durable_lsn = j->last_lsn;
		journal_publish(j);
		j->last_sync_ns = journal_now_ns();
		if (pthread_create(&j->flusher, NULL, journal_flusher_main, j) != 0)
			err = IMAPQ_E_NOMEM;
		else
			j->flusher_running = true;
	}
	rep.elapsed_ns = journal_now_ns() - t0;
	if (report_r != NULL)
		*report_r = rep;
	if (err != IMAPQ_OK) {
		journal_destroy(j);
		return err;
	}
	log_info(LOG_MOD,
		 "opened %s: %u segments, %llu records (%llu bytes), %u damaged regions, %llu "
		 "bytes dropped, %.3f s",
		 j->dir, rep.segments, (unsigned long long)rep.records,
		 (unsigned long long)rep.bytes, rep.damaged, (unsigned long long)rep.dropped_bytes,
		 (double)rep.elapsed_ns / 1e9);
	*journal_r = j;
	return IMAPQ_OK;
}

void journal_close(struct journal **journal)
{
	struct journal *j = *journal;

	if (j == NULL)
		return;
	*journal = NULL;
	if (j->flusher_running) {
		pthread_mutex_lock(&j->mu);
		j->stop = true;
		j->sync_requested = true;
		j->flusher_idle = false;
		pthread_cond_signal(&j->flusher_cond);
		pthread_mutex_unlock(&j->mu);
		pthread_join(j->flusher, NULL);
	}
	journal_destroy(j);
}

/* Builds the record outside the lock: header, meta and an in-memory body. */
static imapq_err build_record(uint8_t type, const void *meta, uint32_t meta_len,
			      const struct journal_body *body, struct journal_pending **p_r)
{
	bool has_body = body != NULL;
	bool in_memory = has_body && (body->data != NULL || body->len == 0);
	uint64_t body_len = has_body ? body->len : 0;
	size_t buf_len;

	if (meta_len > IMAPQ_JOURNAL_MAX_META)
		return IMAPQ_E_TOOBIG;
	if ((meta == NULL && meta_len > 0) || (has_body && !in_memory && body->fd < 0))
		return IMAPQ_E_INVALID;
	if (body_len > JOURNAL_LOC_OFFSET_MASK / 2)
		return IMAPQ_E_TOOBIG;
	if (in_memory && !body->damaged && crc32c(0, body->data, body_len) != body->crc) {
		log_error(LOG_MOD, "append refused: the body's checksum does not match its bytes");
		return IMAPQ_E_INVALID;
	}
	buf_len = JOURNAL_REC_HDR + meta_len + (in_memory ? (size_t)body_len : 0);
	struct journal_pending *p = malloc(sizeof(*p) + buf_len);
	if (p == NULL)
		return IMAPQ_E_NOMEM;
	memset(p, 0, sizeof(*p));
	p->body_fd = -1;
	p->buf_len = buf_len;
	p->total = JOURNAL_REC_HDR + (uint64_t)meta_len + body_len;
	journal_rec_header_encode(p->buf, type, meta, meta_len, has_body, body_len,
				  has_body ? body->crc : 0);
	if (meta_len > 0)
		memcpy(p->buf + JOURNAL_REC_HDR, meta, meta_len);
	if (in_memory && body_len > 0)
		memcpy(p->buf + JOURNAL_REC_HDR + meta_len, body->data, (size_t)body_len);
	if (has_body && !in_memory) {
		/* The record owns a duplicate, so the caller may close its descriptor at once. */
		p->body_fd = fcntl(body->fd, F_DUPFD_CLOEXEC, 0);
		if (p->body_fd < 0) {
			free(p);
			return IMAPQ_E_INVALID;
		}
		p->body_offset = body->offset;
		p->body_len = body_len;
		p->body_crc = body->crc;
	}
	*p_r = p;
	return IMAPQ_OK;
}

/* Makes room in the active segment for a record of total bytes. Caller holds mu. */
static imapq_err reserve_space(struct journal *j, enum journal_class cls, uint64_t total)
{
	struct journal_segment *seg = j->active;
	uint64_t need = seg->append_pos + total;

	if (need > JOURNAL_LOC_OFFSET_MASK)
		return IMAPQ_E_TOOBIG;
	/* A GROW record must leave the reserve untouched for the SHRINK records to come. */
	if (cls == JOURNAL_GROW && j->reserved > 0)
		need += (uint64_t)j->reserved;
	return journal_seg_extend(j, seg, need);
}

imapq_err journal_append(struct journal *j, enum journal_class cls, uint8_t type, const void *meta,
			 uint32_t meta_len, const struct journal_body *body, uint64_t *lsn_r,
			 uint64_t *body_loc_r)
{
	struct journal_pending *p;
	imapq_err err = build_record(type, meta, meta_len, body, &p);

	if (err != IMAPQ_OK)
		return err;
	pthread_mutex_lock(&j->mu);
	while (!j->failed && (j->rotating || j->queued_bytes > IMAPQ_JOURNAL_BUFFER_BYTES))
		pthread_cond_wait(&j->progress, &j->mu);
	if (j->failed)
		err = IMAPQ_E_READONLY;
	else
		err = reserve_space(j, cls, p->total);
	if (err != IMAPQ_OK) {
		pthread_mutex_unlock(&j->mu);
		journal_pending_free(p);
		return err;
	}

	struct journal_segment *seg = j->active;
	p->seg = seg;
	p->offset = seg->append_pos;
	seg->append_pos += p->total;
	p->lsn = seg->start_lsn + seg->append_pos;
	j->last_lsn = p->lsn;
	journal_note_active(j);
	if (j->tail != NULL)
		j->tail->next = p;
	else
		j->head = p;
	j->tail = p;
	j->queued_bytes += p->buf_len;
	j->records++;
	kick_flusher(j);
	if (lsn_r != NULL)
		*lsn_r = p->lsn;
	if (body_loc_r != NULL)
		*body_loc_r = body != NULL ? ((uint64_t)seg->number << JOURNAL_LOC_OFFSET_BITS) |
						 (p->offset + JOURNAL_REC_HDR + meta_len)
					   : 0;
	pthread_mutex_unlock(&j->mu);
	return IMAPQ_OK;
}

void journal_publish(struct journal *j)
{
	atomic_store(&j->published_lsn, j->durable_lsn);
	atomic_store(&j->published_failed, j->failed);
	atomic_fetch_add(&j->published_gen, 1);
	/* A waiter counts itself before it reads published_gen (both sequentially consistent), so
	 * either it is counted here or it sees the new generation and does not sleep. */
	if (atomic_load(&j->waiters) > 0)
		syscall(SYS_futex, &j->published_gen, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

imapq_err journal_wait(struct journal *j, uint64_t lsn)
{
	if (atomic_load(&j->published_lsn) >= lsn)
		return IMAPQ_OK;
	pthread_mutex_lock(&j->mu);
	bool valid = lsn <= append_lsn_locked(j);
	pthread_mutex_unlock(&j->mu);
	if (!valid)
		return IMAPQ_E_INVALID;
	imapq_err err;
	atomic_fetch_add(&j->waiters, 1);
	for (;;) {
		uint32_t gen = atomic_load(&j->published_gen);
		if (atomic_load(&j->published_lsn) >= lsn) {
			err = IMAPQ_OK;
			break;
		}
		if (atomic_load(&j->published_failed)) {
			err = IMAPQ_E_READONLY;
			break;
		}
		/* Sleeps only while no commit was published since gen was read. */
		syscall(SYS_futex, &j->published_gen, FUTEX_WAIT_PRIVATE, gen, NULL, NULL, 0);
	}
	atomic_fetch_sub(&j->waiters, 1);
	return err;
}

uint64_t journal_durable_lsn(struct journal *j)
{
	return atomic_load(&j->published_lsn);
}

uint64_t journal_append_lsn(struct journal *j)
{
	pthread_mutex_lock(&j->mu);
	uint64_t lsn = append_lsn_locked(j);
	pthread_mutex_unlock(&j->mu);
	return lsn;
}

void journal_set_commit_hook(struct journal *j, journal_commit_fn *fn, void *arg)
{
	pthread_mutex_lock(&j->mu);
	j->hook = fn;
	j->hook_arg = arg;
	pthread_mutex_unlock(&j->mu);
}

void journal_reserve_add(struct journal *j, int64_t delta)
{
	pthread_mutex_lock(&j->mu);
	j->reserved += delta;
	if (j->reserved < 0)
		j->reserved = 0;
	pthread_mutex_unlock(&j->mu);
}

bool journal_wants_rotation(struct journal *j)
{
	/* Asked after every write: a stale answer only moves a rotation to the next write. */
	return atomic_load_explicit(&j->active_full, memory_order_relaxed);
}

imapq_err journal_rotate(struct journal *j, uint32_t *segment_r)
{
	struct journal_segment *seg = NULL;
	imapq_err err;

	pthread_mutex_lock(&j->mu);
	while (j->rotating && !j->failed)
		pthread_cond_wait(&j->progress, &j->mu);
	if (j->failed) {
		pthread_mutex_unlock(&j->mu);
		return IMAPQ_E_READONLY;
	}
	uint32_t last = j->segs[j->n_segs - 1]->number;
	if (last == UINT32_MAX) {
		pthread_mutex_unlock(&j->mu);
		return IMAPQ_E_LIMIT;
	}
	/* Appends wait while the file is made, so the new start LSN follows every earlier record.
	 */
	j->rotating = true;
	uint64_t start = append_lsn_locked(j);
	uint64_t alloc = j->segment_bytes;
	if (j->reserved > 0 && JOURNAL_SEG_HDR + (uint64_t)j->reserved > alloc)
		alloc = JOURNAL_SEG_HDR + (uint64_t)j->reserved;
	pthread_mutex_unlock(&j->mu);

	err = journal_seg_create(j, last + 1, start, alloc, &seg);

	pthread_mutex_lock(&j->mu);
	if (err == IMAPQ_OK && journal_seg_list_add(j, seg) != IMAPQ_OK) {
		journal_seg_unref(seg);
		err = IMAPQ_E_NOMEM;
	}
	struct journal_segment *old = j->active;
	bool trim = false;
	if (err == IMAPQ_OK) {
		j->active = seg;
		journal_note_active(j);
		if (segment_r != NULL)
			*segment_r = seg->number;
		/* A fully written old segment gives its unused preallocation back now; otherwise
		 * the flusher does it when it syncs the segment's last records. */
		trim = !old->trimmed && old->written_pos == old->append_pos &&
		       old->alloc_size > old->append_pos;
		if (trim) {
			old->trimmed = true;
			old->alloc_size = old->append_pos;
			old->refs++;
		}
	}
	j->rotating = false;
	pthread_cond_broadcast(&j->progress);
	pthread_mutex_unlock(&j->mu);
	if (trim) {
		if (ftruncate(old->fd, (off_t)old->append_pos) != 0)
			log_warn(LOG_MOD, "cannot release the unused end of segment %u in %s: %s",
				 old->number, j->dir, strerror(errno));
		pthread_mutex_lock(&j->mu);
		bool gone = journal_seg_put(old);
		pthread_mutex_unlock(&j->mu);
		if (gone)
			journal_seg_free(old);
	}
	return err;
}

void journal_segments(struct journal *j, struct journal_segment_info *segs, size_t cap, size_t *n_r)
{
	pthread_mutex_lock(&j->mu);
	for (size_t i = 0; i < j->n_segs && i < cap; i++) {
		const struct journal_segment *seg = j->segs[i];
		segs[i].number = seg->number;
		segs[i].bytes = seg->bad ? 0 : seg->append_pos - JOURNAL_SEG_HDR;
	}
	*n_r = j->n_segs;
	pthread_mutex_unlock(&j->mu);
}

imapq_err journal_drop_oldest(struct journal *j)
{
	char name[JOURNAL_SEG_NAME_LEN + 1];
	struct journal_segment *seg;

	pthread_mutex_lock(&j->mu);
	/* Whatever was re-appended from the oldest segment must be on disk before it goes, and a
	 * rotation another writer began must finish first. */
	uint64_t target = append_lsn_locked(j);
	while (!j->failed && (j->rotating || j->synced_lsn < target)) {
		if (j->synced_lsn < target) {
			j->sync_requested = true;
			kick_flusher(j);
		}
		pthread_cond_wait(&j->progress, &j->mu);
	}
	if (j->failed) {
		pthread_mutex_unlock(&j->mu);
		return IMAPQ_E_READONLY;
	}
	seg = j->segs[0];
	if (seg == j->active || j->rotating) {
		pthread_mutex_unlock(&j->mu);
		return IMAPQ_E_INVALID;
	}
	journal_seg_name(seg->number, name);
	if (unlinkat(j->dir_fd, name, 0) != 0) {
		log_error(LOG_MOD, "cannot remove segment %s/%s: %s", j->dir, name,
			  strerror(errno));
		pthread_mutex_unlock(&j->mu);
		return IMAPQ_E_IO;
	}
	memmove(j->segs, j->segs + 1, (j->n_segs - 1) * sizeof(*j->segs));
	j->n_segs--;
	seg->dropped = true;
	/* Readers holding a reference keep the fd until they finish; the last one closes it. */
	bool last = journal_seg_put(seg);
	pthread_mutex_unlock(&j->mu);
	if (last)
		journal_seg_free(seg);
	log_info(LOG_MOD, "dropped segment %s/%s", j->dir, name);
	return journal_dir_sync(j);
}

/* Reads len bytes at offset at of segment number once they are written; keeps the segment's
 * descriptor open meanwhile, so that a segment being dropped can still be read. */
static imapq_err segment_read(struct journal *j, uint32_t number, uint64_t at, void *buf,
			      size_t len)
{
	imapq_err err = IMAPQ_OK;
	uint64_t end = at + len;

	pthread_mutex_lock(&j->mu);
	struct journal_segment *seg = journal_seg_find(j, number);
	if (seg == NULL || seg->bad)
		err = IMAPQ_E_NOTFOUND;
	else if (end > seg->append_pos)
		err = IMAPQ_E_INVALID;
	while (err == IMAPQ_OK && !j->failed && seg->written_pos < end)
		pthread_cond_wait(&j->progress, &j->mu);
	if (err == IMAPQ_OK && seg->written_pos < end)
		err = IMAPQ_E_READONLY;
	if (err != IMAPQ_OK) {
		pthread_mutex_unlock(&j->mu);
		return err;
	}
	seg->refs++;
	pthread_mutex_unlock(&j->mu);

	uint8_t *out = buf;
	while (len > 0) {
		ssize_t n = atomic_load(&journal_pread_fn)(seg->fd, out, len, (off_t)at);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			log_error(LOG_MOD, "cannot read segment %u in %s at %llu: %s", number,
				  j->dir, (unsigned long long)at,
				  n == 0 ? "short file" : strerror(errno));
			err = IMAPQ_E_IO;
			break;
		}
		out += n;
		at += (uint64_t)n;
		len -= (size_t)n;
	}

	pthread_mutex_lock(&j->mu);
	bool last = journal_seg_put(seg);
	pthread_mutex_unlock(&j->mu);
	if (last)
		journal_seg_free(seg);
	return err;
}

imapq_err journal_body_read(struct journal *j, uint64_t loc, uint64_t offset, void *buf, size_t len)
{
	uint64_t pos = loc & JOURNAL_LOC_OFFSET_MASK;
	if (pos < JOURNAL_SEG_HDR + JOURNAL_REC_HDR || offset > JOURNAL_LOC_OFFSET_MASK ||
	    len > JOURNAL_LOC_OFFSET_MASK)
		return IMAPQ_E_INVALID;
	return segment_read(j, journal_loc_segment(loc), pos + offset, buf, len);
}

imapq_err journal_body_crc(struct journal *j, uint64_t loc, uint32_t meta_len, uint64_t body_len,
			   uint32_t *crc_r)
{
	uint64_t pos = loc & JOURNAL_LOC_OFFSET_MASK;
	if (meta_len > IMAPQ_JOURNAL_MAX_META || pos < JOURNAL_SEG_HDR + JOURNAL_REC_HDR + meta_len)
		return IMAPQ_E_INVALID;
	size_t len = JOURNAL_REC_HDR + meta_len;
	uint8_t *head = malloc(len);
	if (head == NULL)
		return IMAPQ_E_NOMEM;
	imapq_err err = segment_read(j, journal_loc_segment(loc), pos - len, head, len);
	if (err == IMAPQ_OK && !journal_rec_header_body_crc(head, meta_len, body_len, crc_r))
		err = IMAPQ_E_CORRUPT;
	free(head);
	return err;
}

uint64_t journal_disk_free(struct journal *j)
{
	struct statvfs vfs;
	/* dir_fd is fixed from open to close, so no lock is needed. */
	if (fstatvfs(j->dir_fd, &vfs) != 0)
		return UINT64_MAX;
	return (uint64_t)vfs.f_bavail * vfs.f_frsize;
}

void journal_stats(struct journal *j, struct journal_stats *st_r)
{
	pthread_mutex_lock(&j->mu);
	*st_r = (struct journal_stats){
	    .fsyncs = j->fsyncs,
	    .fsync_ns = j->fsync_ns,
	    .commits = j->commits,
	    .records = j->records,
	    .bytes_written = j->bytes_written,
	    .segments = (uint32_t)j->n_segs,
	    .failed = j->failed,
	};
	for (size_t i = 0; i < j->n_segs; i++)
		if (!j->segs[i]->bad)
			st_r->disk_bytes += j->segs[i]->append_pos - JOURNAL_SEG_HDR;
	pthread_mutex_unlock(&j->mu);
}
