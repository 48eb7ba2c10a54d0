/* Segment files: names, creation with a synced header, preallocation, and reference counting. */
#include "imap/store/journal-private.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "imap/base/limits.h"
#include "imap/base/log.h"

#define LOG_MOD "journal"

journal_pwritev_t *_Atomic journal_pwritev_fn = pwritev;
journal_fdatasync_t *_Atomic journal_fdatasync_fn = fdatasync;
journal_fallocate_t *_Atomic journal_fallocate_fn = fallocate;
journal_pread_t *_Atomic journal_pread_fn = pread;
journal_close_t *_Atomic journal_close_fn = close;
journal_ftruncate_t *_Atomic journal_ftruncate_fn = ftruncate;

/* Preallocation grows in steps of at least this many bytes, so appends past the end of a
 * segment do not call fallocate for every record. */
#define JOURNAL_EXTEND_STEP (1024u * 1024)

void journal_seg_name(uint32_t number, char *name)
{
	snprintf(name, JOURNAL_SEG_NAME_LEN + 1, "%010u.seg", number);
}

bool journal_seg_name_parse(const char *name, uint32_t *number_r)
{
	uint64_t n = 0;

	if (strlen(name) != JOURNAL_SEG_NAME_LEN || strcmp(name + 10, ".seg") != 0)
		return false;
	for (int i = 0; i < 10; i++) {
		if (name[i] < '0' || name[i] > '9')
			return false;
		n = n * 10 + (uint64_t)(name[i] - '0');
	}
	if (n == 0 || n > UINT32_MAX)
		return false;
	*number_r = (uint32_t)n;
	return true;
}

struct journal_segment *journal_seg_new(uint32_t number, int fd)
{
	struct journal_segment *seg = calloc(1, sizeof(*seg));

	if (seg == NULL)
		return NULL;
	seg->number = number;
	seg->fd = fd;
	seg->refs = 1;
	return seg;
}

imapq_err journal_dir_sync(struct journal *j)
{
	if (fsync(j->dir_fd) != 0) {
		log_error(LOG_MOD, "fsync of folder %s failed: %s", j->dir, strerror(errno));
		return IMAPQ_E_IO;
	}
	return IMAPQ_OK;
}

/* Writes all of buf at off through the pwritev seam; false on failure with errno set. */
static bool seg_write_all(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;

	while (len > 0) {
		struct iovec iov = {.iov_base = (void *)p, .iov_len = len};
		ssize_t n = atomic_load(&journal_pwritev_fn)(fd, &iov, 1, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			return false;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return true;
}

imapq_err journal_seg_create(struct journal *j, uint32_t number, uint64_t start_lsn, uint64_t alloc,
			     struct journal_segment **seg_r)
{
	char name[JOURNAL_SEG_NAME_LEN + 1];
	uint8_t hdr[JOURNAL_SEG_HDR];
	struct timespec now;
	imapq_err err = IMAPQ_E_IO;
	const char *what = "open";
	int fd;

	journal_seg_name(number, name);
	fd = openat(j->dir_fd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		log_error(LOG_MOD, "cannot create segment %s/%s: %s", j->dir, name,
			  strerror(errno));
		return IMAPQ_E_IO;
	}
	if (alloc < JOURNAL_SEG_HDR)
		alloc = JOURNAL_SEG_HDR;
	clock_gettime(CLOCK_REALTIME, &now);
	journal_seg_header_encode(
	    hdr, &(struct journal_seg_header){
		     .version = JOURNAL_SEG_VERSION,
		     .number = number,
		     .start_lsn = start_lsn,
		     .created_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec,
		 });
	if (atomic_load(&journal_fallocate_fn)(fd, 0, 0, (off_t)alloc) != 0) {
		what = "fallocate";
		if (errno == ENOSPC)
			err = IMAPQ_E_NOSPACE;
		goto fail;
	}
	if (!seg_write_all(fd, hdr, sizeof(hdr), 0)) {
		what = "write";
		goto fail;
	}
	if (atomic_load(&journal_fdatasync_fn)(fd) != 0) {
		what = "fdatasync";
		goto fail;
	}
	if (journal_dir_sync(j) != IMAPQ_OK) {
		what = "folder fsync";
		goto fail;
	}

	struct journal_segment *seg = journal_seg_new(number, fd);
	if (seg == NULL) {
		err = IMAPQ_E_NOMEM;
		what = "allocation";
		goto fail;
	}
	seg->start_lsn = start_lsn;
	seg->append_pos = JOURNAL_SEG_HDR;
	seg->written_pos = JOURNAL_SEG_HDR;
	seg->flush_pos = JOURNAL_SEG_HDR;
	seg->alloc_size = alloc;
	seg->file_size = alloc;
	*seg_r = seg;
	log_info(LOG_MOD, "created segment %s/%s at LSN %llu (%llu bytes preallocated)", j->dir,
		 name, (unsigned long long)start_lsn, (unsigned long long)alloc);
	return IMAPQ_OK;

fail:
	log_error(LOG_MOD, "cannot create segment %s/%s: %s failed: %s", j->dir, name, what,
		  strerror(errno));
	close(fd);
	unlinkat(j->dir_fd, name, 0);
	journal_dir_sync(j);
	return err;
}

imapq_err journal_seg_list_add(struct journal *j, struct journal_segment *seg)
{
	if (j->n_segs == j->cap_segs) {
		size_t cap = j->cap_segs ? j->cap_segs * 2 : 16;
		struct journal_segment **segs = realloc(j->segs, cap * sizeof(*segs));
		if (segs == NULL)
			return IMAPQ_E_NOMEM;
		j->segs = segs;
		j->cap_segs = cap;
	}
	j->segs[j->n_segs++] = seg;
	return IMAPQ_OK;
}

struct journal_segment *journal_seg_find(struct journal *j, uint32_t number)
{
	size_t lo = 0, hi = j->n_segs;

	/* The list is sorted by number: binary search. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (j->segs[mid]->number == number)
			return j->segs[mid];
		if (j->segs[mid]->number < number)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

bool journal_seg_put(struct journal_segment *seg)
{
	return --seg->refs == 0;
}

/* Shortens the file of fd to nothing a step at a time, pausing between steps: freeing a whole
 * segment at once keeps a disk with online discard busy long enough to stall every fdatasync
 * behind it. */
static void release_gradually(int fd)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		return;
	uint64_t size = (uint64_t)st.st_size;
	while (size > IMAPQ_JOURNAL_RELEASE_STEP) {
		size -= IMAPQ_JOURNAL_RELEASE_STEP;
		if (atomic_load(&journal_ftruncate_fn)(fd, (off_t)size) != 0)
			return;
		struct timespec pause = {.tv_nsec = IMAPQ_JOURNAL_RELEASE_PAUSE_MS * 1000000L};
		while (nanosleep(&pause, &pause) != 0 && errno == EINTR)
			;
	}
}

void journal_seg_free(struct journal_segment *seg)
{
	if (seg->fd >= 0) {
		journal_close_t *close_fd = atomic_load(&journal_close_fn);
		if (seg->dropped)
			release_gradually(seg->fd);
		close_fd(seg->fd);
	}
	free(seg);
}

void journal_seg_unref(struct journal_segment *seg)
{
	if (journal_seg_put(seg))
		journal_seg_free(seg);
}

imapq_err journal_seg_extend(struct journal *j, struct journal_segment *seg, uint64_t need)
{
	if (need <= seg->alloc_size)
		return IMAPQ_OK;

	/* Try a generous step first (never more than a segment holds before it rotates), then
	 * exactly what is needed when the disk is nearly full. */
	uint64_t step = need - seg->alloc_size;
	uint64_t generous =
	    j->segment_bytes < JOURNAL_EXTEND_STEP ? j->segment_bytes : JOURNAL_EXTEND_STEP;
	uint64_t want = step < generous ? generous : step;
	for (int attempt = 0; attempt < 2; attempt++) {
		uint64_t len = attempt == 0 ? want : step;
		if (atomic_load(&journal_fallocate_fn)(seg->fd, 0, (off_t)seg->alloc_size,
						       (off_t)len) == 0) {
			seg->alloc_size += len;
			return IMAPQ_OK;
		}
		if (errno != ENOSPC) {
			log_error(LOG_MOD, "fallocate of segment %u in %s failed: %s", seg->number,
				  j->dir, strerror(errno));
			return IMAPQ_E_IO;
		}
		if (want == step)
			break;
	}
	log_warn(LOG_MOD, "no disk space to extend segment %u in %s by %llu bytes", seg->number,
		 j->dir, (unsigned long long)step);
	return IMAPQ_E_NOSPACE;
}
