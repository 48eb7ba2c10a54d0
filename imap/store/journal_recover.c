/* Recovery: lists the segment files, replays every valid record in order, skips and reports
 * damaged regions, cuts a torn tail off the newest segment, and prepares the active segment. */
#include "imap/store/journal-private.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "imap/base/log.h"

#define LOG_MOD "journal"

/* Compares segment numbers for qsort. */
static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

/* Collects the numbers of the segment files in the folder, sorted; *n_r is the count. */
static imapq_err list_segments(struct journal *j, uint32_t **nums_r, size_t *n_r)
{
	uint32_t *nums = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d = opendir(j->dir);

	if (d == NULL) {
		log_error(LOG_MOD, "cannot list %s: %s", j->dir, strerror(errno));
		return IMAPQ_E_IO;
	}
	while ((de = readdir(d)) != NULL) {
		uint32_t num;
		if (!journal_seg_name_parse(de->d_name, &num))
			continue;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			uint32_t *p = realloc(nums, ncap * sizeof(*p));
			if (p == NULL) {
				closedir(d);
				free(nums);
				return IMAPQ_E_NOMEM;
			}
			nums = p;
			cap = ncap;
		}
		nums[n++] = num;
	}
	closedir(d);
	if (n > 1)
		qsort(nums, n, sizeof(*nums), cmp_u32);
	*nums_r = nums;
	*n_r = n;
	return IMAPQ_OK;
}

/* Opens segment number and reads its header; *fd_r and *size_r are set on success. */
static imapq_err open_segment(struct journal *j, uint32_t number, int *fd_r, uint64_t *size_r,
			      enum journal_seg_state *state_r, struct journal_seg_header *h_r)
{
	char name[JOURNAL_SEG_NAME_LEN + 1];
	uint8_t hdr[JOURNAL_SEG_HDR];
	struct stat st;
	ssize_t got;

	journal_seg_name(number, name);
	int fd = openat(j->dir_fd, name, O_RDWR | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) != 0) {
		log_error(LOG_MOD, "cannot open segment %s/%s: %s", j->dir, name, strerror(errno));
		if (fd >= 0)
			close(fd);
		return IMAPQ_E_IO;
	}
	do
		got = pread(fd, hdr, sizeof(hdr), 0);
	while (got < 0 && errno == EINTR);
	if (got < 0) {
		log_error(LOG_MOD, "cannot read segment %s/%s: %s", j->dir, name, strerror(errno));
		close(fd);
		return IMAPQ_E_IO;
	}
	*state_r = journal_seg_header_decode(hdr, (size_t)got, h_r);
	if (*state_r == JOURNAL_SEG_OK && h_r->number != number)
		*state_r = JOURNAL_SEG_BAD;
	*fd_r = fd;
	*size_r = (uint64_t)st.st_size;
	return IMAPQ_OK;
}

/* A block of zeros that whole blocks of a segment's tail are compared with. */
#define ZERO_BLOCK 4096
static const uint8_t zero_block[ZERO_BLOCK];

/* Offset just past the last non-zero byte of [from, size), or from when all are zero. The
 * preallocated tail of the newest segment is mostly zeros: whole blocks go through memcmp. */
static size_t data_end(const uint8_t *base, size_t from, size_t size)
{
	size_t end = size;

	while (end - from >= ZERO_BLOCK &&
	       memcmp(base + end - ZERO_BLOCK, zero_block, ZERO_BLOCK) == 0)
		end -= ZERO_BLOCK;
	while (end - from >= 8) {
		uint64_t w;
		memcpy(&w, base + end - 8, 8);
		if (w != 0)
			break;
		end -= 8;
	}
	while (end > from && base[end - 1] == 0)
		end--;
	return end;
}

/* Re-zeroes the newest segment from pos on (keeping its size) and syncs it. */
static imapq_err cut_tail(struct journal *j, struct journal_segment *seg, uint64_t pos,
			  uint64_t size)
{
	if (ftruncate(seg->fd, (off_t)pos) != 0 ||
	    (size > pos && atomic_load(&journal_fallocate_fn)(seg->fd, 0, (off_t)pos,
							      (off_t)(size - pos)) != 0) ||
	    atomic_load(&journal_fdatasync_fn)(seg->fd) != 0) {
		log_error(LOG_MOD, "cannot cut the torn tail of segment %u in %s: %s", seg->number,
			  j->dir, strerror(errno));
		return IMAPQ_E_IO;
	}
	return IMAPQ_OK;
}

/* Replays the records of one segment with a good header; sets its positions, and cuts a torn
 * tail when it is the newest. */
static imapq_err replay_segment(struct journal *j, struct journal_segment *seg, uint64_t size,
				bool newest, journal_replay_fn *replay, void *ctx,
				struct journal_report *rep)
{
	struct journal_parsed p;
	size_t pos = JOURNAL_SEG_HDR, next, tail_end = 0;
	imapq_err err = IMAPQ_OK;
	uint8_t *map = NULL;

	if (size > JOURNAL_SEG_HDR) {
		map = mmap(NULL, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, seg->fd, 0);
		if (map == MAP_FAILED) {
			log_error(LOG_MOD, "cannot map segment %u in %s: %s", seg->number, j->dir,
				  strerror(errno));
			return IMAPQ_E_IO;
		}
	}
	while (map != NULL) {
		enum journal_parse st = journal_rec_parse(map, size, pos, &p);
		if (st == JOURNAL_PARSE_VALID) {
			uint64_t body_off = pos + JOURNAL_REC_HDR + p.meta_len;
			struct journal_record rec = {
			    .type = p.type,
			    .meta = map + pos + JOURNAL_REC_HDR,
			    .meta_len = p.meta_len,
			    .body = p.has_body ? map + body_off : NULL,
			    .body_len = p.body_len,
			    .body_loc =
				p.has_body
				    ? ((uint64_t)seg->number << JOURNAL_LOC_OFFSET_BITS) | body_off
				    : 0,
			    .segment = seg->number,
			    .lsn = seg->start_lsn + pos + p.total,
			};
			pos += p.total;
			rep->records++;
			rep->bytes += p.total;
			if (replay != NULL && (err = replay(ctx, &rec)) != IMAPQ_OK)
				break;
			continue;
		}
		if (journal_rec_find_next(map, size, pos + 1, &next)) {
			log_warn(LOG_MOD,
				 "segment %u in %s: skipped %zu damaged bytes at offset %zu",
				 seg->number, j->dir, next - pos, pos);
			rep->damaged++;
			rep->dropped_bytes += next - pos;
			pos = next;
			continue;
		}
		tail_end = data_end(map, pos, size);
		break;
	}
	if (map != NULL)
		munmap(map, size);
	if (err != IMAPQ_OK)
		return err;

	if (tail_end > pos) {
		rep->damaged++;
		rep->dropped_bytes += tail_end - pos;
		if (newest) {
			log_warn(LOG_MOD,
				 "segment %u in %s: cut a torn tail of %zu bytes at offset %zu",
				 seg->number, j->dir, tail_end - pos, pos);
			err = cut_tail(j, seg, pos, size);
		} else {
			log_warn(
			    LOG_MOD,
			    "segment %u in %s: skipped %zu damaged bytes at the end (offset %zu)",
			    seg->number, j->dir, tail_end - pos, pos);
		}
	}
	seg->append_pos = seg->written_pos = seg->flush_pos = pos;
	seg->alloc_size = size;
	return err;
}

/* Removes a newest segment whose header was never written: a rotation was interrupted before
 * anything could be appended to it. */
static imapq_err remove_empty_newest(struct journal *j, uint32_t *nums, size_t *n)
{
	while (*n > 0) {
		struct journal_seg_header h;
		enum journal_seg_state state;
		uint64_t size;
		int fd;
		imapq_err err = open_segment(j, nums[*n - 1], &fd, &size, &state, &h);
		if (err != IMAPQ_OK)
			return err;
		close(fd);
		if (state != JOURNAL_SEG_ZERO)
			return IMAPQ_OK;
		char name[JOURNAL_SEG_NAME_LEN + 1];
		journal_seg_name(nums[*n - 1], name);
		log_info(LOG_MOD, "removing %s/%s: its creation was interrupted", j->dir, name);
		if (unlinkat(j->dir_fd, name, 0) != 0) {
			log_error(LOG_MOD, "cannot remove %s/%s: %s", j->dir, name,
				  strerror(errno));
			return IMAPQ_E_IO;
		}
		if ((err = journal_dir_sync(j)) != IMAPQ_OK)
			return err;
		(*n)--;
	}
	return IMAPQ_OK;
}

/* Opens and replays segment nums[i]; adds it to the list, good or bad. */
static imapq_err recover_one(struct journal *j, uint32_t number, bool newest,
			     journal_replay_fn *replay, void *ctx, struct journal_report *rep,
			     uint64_t *lsn_floor)
{
	struct journal_seg_header h;
	enum journal_seg_state state;
	uint64_t size;
	int fd;
	imapq_err err = open_segment(j, number, &fd, &size, &state, &h);

	if (err != IMAPQ_OK)
		return err;
	if (state == JOURNAL_SEG_NEWER) {
		log_error(LOG_MOD, "segment %u in %s has format version %u; this build reads %u",
			  number, j->dir, h.version, JOURNAL_SEG_VERSION);
		close(fd);
		return IMAPQ_E_INVALID;
	}
	if (state != JOURNAL_SEG_OK) {
		log_warn(LOG_MOD, "segment %u in %s: bad header, skipped %llu bytes", number,
			 j->dir, (unsigned long long)size);
		close(fd);
		fd = -1;
		rep->damaged++;
		rep->dropped_bytes += size;
		*lsn_floor += size;
	}
	struct journal_segment *seg = journal_seg_new(number, fd);
	if (seg == NULL || journal_seg_list_add(j, seg) != IMAPQ_OK) {
		if (seg != NULL)
			journal_seg_unref(seg);
		else if (fd >= 0)
			close(fd);
		return IMAPQ_E_NOMEM;
	}
	seg->file_size = size;
	if (fd < 0) {
		seg->bad = true;
		return IMAPQ_OK;
	}
	seg->start_lsn = h.start_lsn;
	if (h.start_lsn < *lsn_floor)
		log_warn(LOG_MOD, "segment %u in %s starts at LSN %llu, below the previous %llu",
			 number, j->dir, (unsigned long long)h.start_lsn,
			 (unsigned long long)*lsn_floor);
	rep->segments++;
	err = replay_segment(j, seg, size, newest, replay, ctx, rep);
	if (h.start_lsn + seg->append_pos > *lsn_floor)
		*lsn_floor = h.start_lsn + seg->append_pos;
	return err;
}

imapq_err journal_recover(struct journal *j, journal_replay_fn *replay, void *ctx,
			  struct journal_report *rep)
{
	uint32_t *nums = NULL;
	size_t n = 0;
	uint64_t lsn_floor = 0;
	imapq_err err = list_segments(j, &nums, &n);

	if (err == IMAPQ_OK)
		err = remove_empty_newest(j, nums, &n);
	for (size_t i = 0; err == IMAPQ_OK && i < n; i++)
		err = recover_one(j, nums[i], i + 1 == n, replay, ctx, rep, &lsn_floor);
	free(nums);
	if (err != IMAPQ_OK)
		return err;

	/* Appends continue in the newest segment, unless its header was bad. */
	struct journal_segment *last = j->n_segs ? j->segs[j->n_segs - 1] : NULL;
	if (last != NULL && !last->bad) {
		j->active = last;
		journal_note_active(j);
		if (last->alloc_size < j->segment_bytes)
			(void)journal_seg_extend(j, last, j->segment_bytes);
		return IMAPQ_OK;
	}
	struct journal_segment *seg;
	uint32_t number = last != NULL ? last->number + 1 : 1;
	if (last != NULL && last->number == UINT32_MAX)
		return IMAPQ_E_LIMIT;
	err = journal_seg_create(j, number, lsn_floor, j->segment_bytes, &seg);
	if (err != IMAPQ_OK)
		return err;
	if (journal_seg_list_add(j, seg) != IMAPQ_OK) {
		journal_seg_unref(seg);
		return IMAPQ_E_NOMEM;
	}
	j->active = seg;
	journal_note_active(j);
	return IMAPQ_OK;
}
