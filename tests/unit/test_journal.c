/* The journal: round trips, crashes at every boundary, bit flips, group commit, injected
 * failures, rotation, dropping segments, the folder lock and the space reserve. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "imap/base/crc32c.h"
#include "tests/unit/tmpdir.h"
#include "imap/base/limits.h"
#include "imap/base/log.h"
#include "imap/store/journal-private.h"
#include "tests/unit/test_gate.h"

#define SEG1 "0000000001.seg"

/* --- Records the tests write, and what replay gives back --- */

enum body_kind { BODY_NONE, BODY_MEMORY, BODY_FILE };

/* One record as written, with where the journal put it. */
struct spec {
	uint8_t type;
	uint8_t *meta;
	uint32_t meta_len;
	enum body_kind kind;
	uint8_t *body;
	uint64_t body_len;
	uint64_t lsn;
	uint64_t loc;
};

/* One record as replayed (copied out of the callback). */
struct got {
	uint8_t type;
	uint8_t *meta;
	uint32_t meta_len;
	uint8_t *body;
	bool has_body;
	uint64_t body_len;
	uint64_t loc;
	uint64_t lsn;
	uint32_t segment;
};

struct collector {
	struct got *r;
	size_t n, cap;
};

/* Small deterministic generator, so every run writes the same records. */
static uint64_t rng_next(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/* Fills s with record i of a run seeded by seed; sizes vary from empty to max_body. */
static void spec_make(struct spec *s, unsigned i, uint64_t seed, uint64_t max_body)
{
	uint64_t x = seed * 0x9E3779B97F4A7C15ull + i + 1;

	rng_next(&x);
	memset(s, 0, sizeof(*s));
	s->type = (uint8_t)(1 + i % 200);
	s->meta_len = (uint32_t)(rng_next(&x) % 5 == 0 ? 0 : rng_next(&x) % 80);
	s->kind = (enum body_kind)(rng_next(&x) % 3);
	s->body_len = s->kind == BODY_NONE ? 0 : rng_next(&x) % (max_body + 1);
	s->meta = malloc(s->meta_len + 1);
	s->body = malloc(s->body_len + 1);
	assert_non_null(s->meta);
	assert_non_null(s->body);
	for (uint32_t k = 0; k < s->meta_len; k++)
		s->meta[k] = (uint8_t)rng_next(&x);
	for (uint64_t k = 0; k < s->body_len; k++)
		s->body[k] = (uint8_t)rng_next(&x);
}

static void specs_free(struct spec *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(s[i].meta);
		free(s[i].body);
	}
}

/* Appends s (a file body goes through a temporary file in dir) and records its LSN and loc. */
static imapq_err spec_append(struct journal *j, struct spec *s, enum journal_class cls,
			     const char *dir)
{
	struct journal_body body = {.fd = -1, .len = s->body_len};
	imapq_err err;
	int fd = -1;

	body.crc = crc32c(0, s->body, s->body_len);
	if (s->kind == BODY_MEMORY) {
		body.data = s->body;
	} else if (s->kind == BODY_FILE) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/body.tmp", dir);
		fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		assert_true(fd >= 0);
		unlink(path);
		/* The body sits at an offset, as a streamed upload behind its headers would. */
		assert_int_equal(pwrite(fd, "prefix", 6, 0), 6);
		assert_int_equal(pwrite(fd, s->body, s->body_len, 6), (ssize_t)s->body_len);
		body.fd = fd;
		body.offset = 6;
	}
	err = journal_append(j, cls, s->type, s->meta, s->meta_len,
			     s->kind == BODY_NONE ? NULL : &body, &s->lsn, &s->loc);
	if (fd >= 0)
		close(fd); /* the journal keeps its own descriptor */
	return err;
}

static imapq_err collect(void *ctx, const struct journal_record *rec)
{
	struct collector *c = ctx;

	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 64;
		c->r = realloc(c->r, c->cap * sizeof(*c->r));
		assert_non_null(c->r);
	}
	struct got *g = &c->r[c->n++];
	g->type = rec->type;
	g->meta_len = rec->meta_len;
	g->meta = malloc(rec->meta_len + 1);
	memcpy(g->meta, rec->meta, rec->meta_len);
	g->has_body = rec->body != NULL;
	g->body_len = rec->body_len;
	g->body = malloc(rec->body_len + 1);
	if (rec->body_len > 0)
		memcpy(g->body, rec->body, rec->body_len);
	g->loc = rec->body_loc;
	g->lsn = rec->lsn;
	g->segment = rec->segment;
	return IMAPQ_OK;
}

static void collector_reset(struct collector *c)
{
	for (size_t i = 0; i < c->n; i++) {
		free(c->r[i].meta);
		free(c->r[i].body);
	}
	free(c->r);
	memset(c, 0, sizeof(*c));
}

/* True when a replayed record is exactly the written one, position included. */
static bool same(const struct spec *s, const struct got *g)
{
	return s->type == g->type && s->meta_len == g->meta_len &&
	       memcmp(s->meta, g->meta, s->meta_len) == 0 &&
	       (s->kind != BODY_NONE) == g->has_body && s->body_len == g->body_len &&
	       (s->body_len == 0 || memcmp(s->body, g->body, s->body_len) == 0) &&
	       s->loc == g->loc && s->lsn == g->lsn;
}

/* --- Folders and files --- */

/* A fresh temporary folder the caller frees with dir_drop(). */
static char *dir_new(void)
{
	char *d = malloc(TMPDIR_LEN);
	assert_non_null(d);
	assert_true(tmpdir_make(d));
	return d;
}

/* Removes a folder from dir_new() and frees its path. */
static void dir_drop(char *d)
{
	tmpdir_remove(d);
	free(d);
}

/* Reads a whole file into a new buffer. */
static uint8_t *file_read(const char *path, size_t *len_r)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	uint8_t *buf = malloc((size_t)st.st_size + 1);
	assert_non_null(buf);
	assert_int_equal(pread(fd, buf, (size_t)st.st_size, 0), st.st_size);
	close(fd);
	*len_r = (size_t)st.st_size;
	return buf;
}

/* Writes len bytes to path, replacing it. */
static void file_write(const char *path, const uint8_t *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	close(fd);
}

static bool file_exists(const char *dir, const char *name)
{
	char path[4096];
	int n = snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_true(n > 0 && (size_t)n < sizeof(path));
	return access(path, F_OK) == 0;
}

static struct journal *jopen(const char *dir, uint64_t seg_bytes, enum journal_fsync mode,
			     struct collector *c, struct journal_report *rep)
{
	struct journal_options o = {.dir = dir, .fsync = mode, .segment_bytes = seg_bytes};
	struct journal *j = NULL;

	assert_int_equal(journal_open(&o, collect, c, rep, &j), IMAPQ_OK);
	assert_non_null(j);
	return j;
}

/* Reads a record's body back through journal_body_read, whole and in two pieces. */
static void check_body_read(struct journal *j, const struct spec *s)
{
	if (s->kind == BODY_NONE) {
		assert_int_equal(s->loc, 0);
		return;
	}
	uint8_t *buf = malloc(s->body_len + 1);
	assert_int_equal(journal_body_read(j, s->loc, 0, buf, s->body_len), IMAPQ_OK);
	assert_memory_equal(buf, s->body, s->body_len);
	if (s->body_len > 2) {
		uint64_t half = s->body_len / 2;
		assert_int_equal(journal_body_read(j, s->loc, half, buf, s->body_len - half),
				 IMAPQ_OK);
		assert_memory_equal(buf, s->body + half, s->body_len - half);
	}
	free(buf);
}

/* --- Tests --- */

/* Varied records survive close and reopen: same order, contents, LSNs and body locations. */
static void test_roundtrip(void **state)
{
	enum { N = 300 };
	struct spec s[N];
	struct collector c = {0};
	struct journal_report rep;
	char *dir = dir_new();
	struct journal *j = jopen(dir, 0, JOURNAL_FSYNC_ALWAYS, &c, &rep);

	assert_int_equal(rep.records, 0);
	assert_int_equal(rep.segments, 0);
	for (unsigned i = 0; i < N; i++) {
		spec_make(&s[i], i, 1, 3000);
		if (i == 7) { /* one body larger than the flusher's copy chunk */
			s[i].kind = BODY_FILE;
			s[i].body_len = 3 * 1024 * 1024 + 17;
			s[i].body = realloc(s[i].body, s[i].body_len);
			for (uint64_t k = 0; k < s[i].body_len; k++)
				s[i].body[k] = (uint8_t)(k * 31 + k / 4096);
		}
		assert_int_equal(spec_append(j, &s[i], i % 2 ? JOURNAL_SHRINK : JOURNAL_GROW, dir),
				 IMAPQ_OK);
		if (i > 0)
			assert_true(s[i].lsn > s[i - 1].lsn);
		if (i % 50 == 0) /* read back while it may still be queued */
			check_body_read(j, &s[i]);
	}
	assert_int_equal(journal_append_lsn(j), s[N - 1].lsn);
	assert_int_equal(journal_wait(j, s[N - 1].lsn), IMAPQ_OK);
	assert_true(journal_durable_lsn(j) >= s[N - 1].lsn);
	journal_close(&j);
	assert_null(j);

	j = jopen(dir, 0, JOURNAL_FSYNC_ALWAYS, &c, &rep);
	assert_int_equal(c.n, N);
	assert_int_equal(rep.records, N);
	assert_int_equal(rep.damaged, 0);
	assert_int_equal(rep.dropped_bytes, 0);
	for (unsigned i = 0; i < N; i++) {
		assert_true(same(&s[i], &c.r[i]));
		assert_int_equal(c.r[i].segment, 1);
		check_body_read(j, &s[i]);
	}
	/* Appends continue after the replayed records. */
	struct spec more;
	spec_make(&more, 999, 1, 100);
	assert_int_equal(spec_append(j, &more, JOURNAL_GROW, dir), IMAPQ_OK);
	assert_true(more.lsn > s[N - 1].lsn);
	specs_free(&more, 1);
	journal_close(&j);
	collector_reset(&c);
	specs_free(s, N);
	dir_drop(dir);
}

/* Writes n small records to a fresh journal in dir and returns the segment file's bytes. */
static uint8_t *small_journal(const char *dir, struct spec *s, size_t n, uint64_t seed,
			      size_t *len_r)
{
	struct collector c = {0};
	struct journal *j = jopen(dir, 8192, JOURNAL_FSYNC_ALWAYS, &c, NULL);
	char path[4096];

	for (size_t i = 0; i < n; i++) {
		spec_make(&s[i], (unsigned)i, seed, 120);
		assert_int_equal(spec_append(j, &s[i], JOURNAL_GROW, dir), IMAPQ_OK);
	}
	assert_int_equal(journal_wait(j, s[n - 1].lsn), IMAPQ_OK);
	journal_close(&j);
	collector_reset(&c);
	snprintf(path, sizeof(path), "%s/" SEG1, dir);
	return file_read(path, len_r);
}

/* Opens dir after a cut at cut bytes and checks that exactly the records ending at or before
 * it come back; then appends two more and checks a second reopen. */
static void check_cut(const char *dir, const struct spec *s, size_t n, size_t cut, bool at_boundary)
{
	struct collector c = {0};
	struct journal_report rep;
	struct spec extra[2];
	size_t expect = 0;

	while (expect < n && s[expect].lsn <= cut)
		expect++;
	struct journal *j = jopen(dir, 8192, JOURNAL_FSYNC_ALWAYS, &c, &rep);
	assert_int_equal(c.n, expect);
	for (size_t i = 0; i < expect; i++)
		assert_true(same(&s[i], &c.r[i]));
	if (at_boundary || cut == 0) {
		assert_int_equal(rep.damaged, 0);
		assert_int_equal(rep.dropped_bytes, 0);
	} else {
		assert_int_equal(rep.damaged, 1);
		assert_true(rep.dropped_bytes > 0);
		assert_true(rep.dropped_bytes <= cut - (expect ? s[expect - 1].lsn : 0));
	}
	for (int k = 0; k < 2; k++) {
		spec_make(&extra[k], 500 + (unsigned)k, 77, 60);
		assert_int_equal(spec_append(j, &extra[k], JOURNAL_GROW, dir), IMAPQ_OK);
	}
	if (expect > 0)
		assert_true(extra[0].lsn > s[expect - 1].lsn);
	journal_close(&j);
	collector_reset(&c);

	j = jopen(dir, 8192, JOURNAL_FSYNC_ALWAYS, &c, &rep);
	assert_int_equal(c.n, expect + 2);
	for (size_t i = 0; i < expect; i++)
		assert_true(same(&s[i], &c.r[i]));
	assert_true(same(&extra[0], &c.r[expect]));
	assert_true(same(&extra[1], &c.r[expect + 1]));
	if (cut >= JOURNAL_SEG_HDR)
		assert_int_equal(rep.damaged, 0);
	check_body_read(j, &extra[0]);
	journal_close(&j);
	collector_reset(&c);
	specs_free(extra, 2);
}

/* A crash at every record boundary and at many offsets inside each record, as a truncated file
 * and as a preallocated file whose tail is zeros. */
static void test_crash_cuts(void **state)
{
	enum { N = 10 };
	struct spec s[N];
	char *src = dir_new();
	size_t len;
	uint8_t *seg = small_journal(src, s, N, 5, &len);
	size_t cuts[N * 12 + 8], ncuts = 0;

	/* Offsets: inside the segment header, each boundary, and points inside every record. */
	cuts[ncuts++] = 0;
	cuts[ncuts++] = 10;
	cuts[ncuts++] = JOURNAL_SEG_HDR;
	for (size_t i = 0; i < N; i++) {
		size_t start = i ? s[i - 1].lsn : JOURNAL_SEG_HDR, end = s[i].lsn;
		size_t inside[] = {
		    1, 4, 12, 19, 20, 23, 24, 25, 30, (end - start) / 2, end - start - 1};
		for (size_t k = 0; k < sizeof(inside) / sizeof(inside[0]); k++)
			if (start + inside[k] < end)
				cuts[ncuts++] = start + inside[k];
		cuts[ncuts++] = end;
	}
	for (size_t k = 0; k < ncuts; k++) {
		for (int zero_tail = 0; zero_tail < 2; zero_tail++) {
			size_t cut = cuts[k];
			bool boundary = cut == JOURNAL_SEG_HDR;
			for (size_t i = 0; i < N; i++)
				boundary = boundary || s[i].lsn == cut;
			if (cut < JOURNAL_SEG_HDR && cut > 0)
				continue; /* a broken segment header is covered below */
			char *dir = dir_new();
			char path[4096];
			uint8_t *img = calloc(1, len);
			memcpy(img, seg, cut);
			snprintf(path, sizeof(path), "%s/" SEG1, dir);
			file_write(path, img, zero_tail ? len : cut);
			free(img);
			check_cut(dir, s, N, cut, boundary);
			dir_drop(dir);
		}
	}
	free(seg);
	specs_free(s, N);
	dir_drop(src);
}

/* A segment whose header is damaged is reported and skipped; a new segment takes the appends. */
static void test_bad_segment_header(void **state)
{
	enum { N = 6 };
	struct spec s[N], more;
	struct collector c = {0};
	struct journal_report rep;
	char *dir = dir_new();
	char path[4096];
	size_t len;
	uint8_t *seg = small_journal(dir, s, N, 9, &len);

	seg[20] ^= 0x40; /* the start LSN, covered by the header crc */
	snprintf(path, sizeof(path), "%s/" SEG1, dir);
	file_write(path, seg, len);
	struct journal *j = jopen(dir, 8192, JOURNAL_FSYNC_ALWAYS, &c, &rep);
	assert_int_equal(c.n, 0);
	assert_int_equal(rep.damaged, 1);
	assert_int_equal(rep.dropped_bytes, len);
	assert_int_equal(rep.segments, 0);
	spec_make(&more, 1, 3, 50);
	assert_int_equal(spec_append(j, &more, JOURNAL_GROW, dir), IMAPQ_OK);
	assert_true(more.lsn > s[N - 1].lsn); /* LSNs never go back, even past a lost header */
	if (more.kind != BODY_NONE)
		assert_int_equal(journal_loc_segment(more.loc), 2);
	journal_close(&j);
	collector_reset(&c);

	j = jopen(dir, 8192, JOURNAL_FSYNC_ALWAYS, &c, &rep);
	assert_int_equal(c.n, 1);
	assert_true(same(&more, &c.r[0]));
	assert_int_equal(rep.damaged, 1);
	/* The bad segment is the oldest and can be dropped. */
	assert_int_equal(journal_drop_oldest(j), IMAPQ_OK);
	assert_false(file_exists(dir, SEG1));
	journal_close(&j);
	collector_reset(&c);
	free(seg);
	specs_free(s, N);
	specs_free(&more, 1);
	dir_drop(dir);
}

/* Random bit flips and garbage never crash recovery; what replays is intact original data. */
static void test_bit_flips(void **state)
{
	enum { N = 30, SEEDS = 150 };
	struct spec s[N];
	char *src = dir_new();
	size_t len;
	uint8_t *seg = small_journal(src, s, N, 11, &len);
	size_t end = s[N - 1].lsn;

	for (uint64_t seed = 1; seed <= SEEDS; seed++) {
		uint64_t x = seed * 0x2545F4914F6CDD1Dull;
		uint8_t *img = malloc(len);
		memcpy(img, seg, len);
		rng_next(&x);
		if (seed % 10 == 0) {
			/* A burst of garbage, which makes hostile length fields likely. */
			size_t at = JOURNAL_SEG_HDR + rng_next(&x) % (end - JOURNAL_SEG_HDR - 32);
			for (int k = 0; k < 32; k++)
				img[at + k] = (uint8_t)rng_next(&x);
			if (memcmp(img + at, seg + at, 32) == 0)
				img[at] ^= 1;
		} else {
			int flips = 1 + (int)(rng_next(&x) % 3);
			for (int k = 0; k < flips; k++) {
				size_t bit = JOURNAL_SEG_HDR * 8 +
					     rng_next(&x) % ((end - JOURNAL_SEG_HDR) * 8);
				img[bit / 8] ^= (uint8_t)(1u << (bit % 8));
			}
			if (memcmp(img, seg, len) == 0)
				img[JOURNAL_SEG_HDR] ^= 1;
		}

		char *dir = dir_new();
		char path[4096];
		struct collector c = {0};
		struct journal_report rep;
		snprintf(path, sizeof(path), "%s/" SEG1, dir);
		file_write(path, img, len);
		struct journal *j = jopen(dir, 8192, JOURNAL_FSYNC_OFF, &c, &rep);
		assert_true(rep.damaged > 0);
		assert_true(rep.dropped_bytes > 0);
		assert_true(c.n < N);
		size_t k = 0;
		for (size_t i = 0; i < c.n; i++) {
			while (k < N && s[k].lsn != c.r[i].lsn)
				k++;
			assert_true(k < N);
			assert_true(same(&s[k], &c.r[i]));
		}
		journal_close(&j);
		collector_reset(&c);
		dir_drop(dir);
		free(img);
	}
	free(seg);
	specs_free(s, N);
	dir_drop(src);
}

/* Counts commit hook calls and checks durable LSNs only grow. */
struct hook_state {
	pthread_mutex_t mu;
	uint64_t calls, last;
	bool backwards;
};

static void hook_fn(void *arg, uint64_t lsn)
{
	struct hook_state *h = arg;
	pthread_mutex_lock(&h->mu);
	if (lsn < h->last)
		h->backwards = true;
	h->last = lsn;
	h->calls++;
	pthread_mutex_unlock(&h->mu);
}

struct committer {
	struct journal *j;
	unsigned id;
	unsigned n;
	uint64_t max_lsn;
	int errors;
};

static void *committer_main(void *arg)
{
	struct committer *c = arg;
	uint8_t meta[40];

	for (unsigned i = 0; i < c->n; i++) {
		uint64_t lsn;
		memset(meta, (int)(c->id * 16 + i % 16), sizeof(meta));
		if (journal_append(c->j, JOURNAL_SHRINK, (uint8_t)c->id, meta, 8 + i % 32, NULL,
				   &lsn, NULL) != IMAPQ_OK ||
		    journal_wait(c->j, lsn) != IMAPQ_OK)
			c->errors++;
		if (lsn > c->max_lsn)
			c->max_lsn = lsn;
	}
	return NULL;
}

/* Many threads appending and waiting share fsyncs; everything is durable and replays. */
static void test_group_commit(void **state)
{
	enum { THREADS = 16, EACH = 150 };
	struct committer cm[THREADS];
	pthread_t th[THREADS];
	struct hook_state hs = {.mu = PTHREAD_MUTEX_INITIALIZER};
	struct collector c = {0};
	struct journal_stats st;
	char *dir = dir_new();
	struct journal *j = jopen(dir, 0, JOURNAL_FSYNC_ALWAYS, &c, NULL);
	uint64_t max_lsn = 0;

	journal_set_commit_hook(j, hook_fn, &hs);
	for (unsigned t = 0; t < THREADS; t++) {
		cm[t] = (struct committer){.j = j, .id = t + 1, .n = EACH};
		assert_int_equal(pthread_create(&th[t], NULL, committer_main, &cm[t]), 0);
	}
	for (unsigned t = 0; t < THREADS; t++) {
		pthread_join(th[t], NULL);
		assert_int_equal(cm[t].errors, 0);
		if (cm[t].max_lsn > max_lsn)
			max_lsn = cm[t].max_lsn;
	}
	assert_true(journal_durable_lsn(j) >= max_lsn);
	journal_stats(j, &st);
	assert_int_equal(st.records, THREADS * EACH);
	assert_true(st.fsyncs > 0);
	assert_true(st.fsyncs < st.records);
	assert_false(st.failed);
	print_message("%llu records, %llu fsyncs, %llu commits\n", (unsigned long long)st.records,
		      (unsigned long long)st.fsyncs, (unsigned long long)st.commits);
	/* Waiters may return before the hook reports the same commit: give it up to 5 s. */
	for (int tries = 0; tries < 500; tries++) {
		pthread_mutex_lock(&hs.mu);
		bool caught_up = hs.last >= max_lsn;
		pthread_mutex_unlock(&hs.mu);
		if (caught_up)
			break;
		usleep(10000);
	}
	pthread_mutex_lock(&hs.mu);
	assert_true(hs.calls > 0);
	assert_false(hs.backwards);
	assert_true(hs.last >= max_lsn);
	pthread_mutex_unlock(&hs.mu);
	journal_close(&j);

	j = jopen(dir, 0, JOURNAL_FSYNC_ALWAYS, &c, NULL);
	assert_int_equal(c.n, THREADS * EACH);
	/* Each thread's records replay in its own order. */
	unsigned seen[THREADS + 1] = {0};
	for (size_t i = 0; i < c.n; i++) {
		unsigned id = c.r[i].type;
		assert_true(id >= 1 && id <= THREADS);
		assert_int_equal(c.r[i].meta_len, 8 + seen[id] % 32);
		assert_int_equal(c.r[i].meta[0], (uint8_t)(id * 16 + seen[id] % 16));
		seen[id]++;
	}
	journal_close(&j);
	collector_reset(&c);
	dir_drop(dir);
}

/* The weaker policies return once written; close still syncs, and the records replay. */
static void test_batch_and_off(void **state)
{
	for (int mode = JOURNAL_FSYNC_BATCH; mode <= JOURNAL_FSYNC_OFF; mode++) {
		struct collector c = {0};
		struct journal_stats st;
		char *dir = dir_new();
		struct journal *j = jopen(dir, 0, (enum journal_fsync)mode, &c, NULL);
		uint64_t lsn = 0;

		for (int i = 0; i < 100; i++) {
			assert_int_equal(
			    journal_append(j, JOURNAL_GROW, 3, &i, sizeof(i), NULL, &lsn, NULL),
			    IMAPQ_OK);
			if (i % 10 == 9)
				assert_int_equal(journal_wait(j, lsn), IMAPQ_OK);
		}
		assert_true(journal_durable_lsn(j) >= lsn);
		if (mode == JOURNAL_FSYNC_BATCH) {
			/* The batch timer syncs within a few intervals, even on a busy machine. */
			for (int k = 0; k < 400; k++) {
				journal_stats(j, &st);
				if (st.fsyncs > 0)
					break;
				usleep(IMAPQ_JOURNAL_BATCH_MS * 1000);
			}
			assert_true(st.fsyncs > 0);
		} else {
			journal_stats(j, &st);
			assert_int_equal(st.fsyncs, 0);
		}
		journal_close(&j);
		j = jopen(dir, 0, JOURNAL_FSYNC_ALWAYS, &c, NULL);
		assert_int_equal(c.n, 100);
		for (int i = 0; i < 100; i++)
			assert_memory_equal(c.r[i].meta, &i, sizeof(i));
		journal_close(&j);
		collector_reset(&c);
		dir_drop(dir);
	}
}

/* Bytes of [0, end) of the file at path that lie in unwritten (fallocated, never written)
 * extents, or -1 when the file system cannot tell (no FIEMAP). */
static long long unwritten_bytes(const char *path, uint64_t end)
{
	enum { MAX_EXTENTS = 64 };
	size_t size = sizeof(struct fiemap) + MAX_EXTENTS * sizeof(struct fiemap_extent);
	struct fiemap *fm = calloc(1, size);
	int fd = open(path, O_RDONLY);
	long long unwritten = 0;

	assert_non_null(fm);
	assert_true(fd >= 0);
	fm->fm_length = end;
	fm->fm_flags = FIEMAP_FLAG_SYNC;
	fm->fm_extent_count = MAX_EXTENTS;
	if (ioctl(fd, FS_IOC_FIEMAP, fm) != 0) {
		unwritten = -1;
	} else {
		for (unsigned i = 0; i < fm->fm_mapped_extents; i++) {
			const struct fiemap_extent *e = &fm->fm_extents[i];
			uint64_t from = e->fe_logical, to = e->fe_logical + e->fe_length;
			if (!(e->fe_flags & FIEMAP_EXTENT_UNWRITTEN) || from >= end)
				continue;
			unwritten += (long long)((to < end ? to : end) - from);
		}
	}
	close(fd);
	free(fm);
	return unwritten;
}

/* The flusher writes zeros ahead of the records, so syncs of the active segment do not have to
 * convert fallocated extents each time: the stretch just past the records is really written. */
static void test_zeros_ahead(void **state)
{
	struct collector c = {0};
	char *dir = dir_new();
	struct journal *j = jopen(dir, 0, JOURNAL_FSYNC_ALWAYS, &c, NULL);
	char path[4096];
	uint8_t meta[100] = {0};
	uint64_t lsn = 0;

	for (int i = 0; i < 20; i++) {
		assert_int_equal(
		    journal_append(j, JOURNAL_GROW, 1, meta, sizeof(meta), NULL, &lsn, NULL),
		    IMAPQ_OK);
		assert_int_equal(journal_wait(j, lsn), IMAPQ_OK);
	}
	snprintf(path, sizeof(path), "%s/%s", dir, SEG1);
	long long unwritten = unwritten_bytes(path, 512 * 1024);
	if (unwritten >= 0)
		assert_int_equal(unwritten, 0);
	journal_close(&j);
	j = jopen(dir, 0, JOURNAL_FSYNC_ALWAYS, &c, NULL);
	assert_int_equal(c.n, 20);
	journal_close(&j);
	collector_reset(&c);
	dir_drop(dir);
}

static int failing_fdatasync(int fd)
{
	errno = EIO;
	return -1;
}

static ssize_t failing_pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
	errno = ENOSPC;
	return -1;
}

/* After an injected fdatasync or write failure, the waiter and every later append get
 * IMAPQ_E_READONLY; records durable before the failure are still fine. */
static void test_injected_failures(void **state)
{
	for (int which = 0; which < 2; which++) {
		struct hook_state hs = {.mu = PTHREAD_MUTEX_INITIALIZER};
		struct collector c = {0};
		struct journal_stats st;
		char *dir = dir_new();
		struct journal *j = jopen(dir, 0, JOURNAL_FSYNC_ALWAYS, &c, NULL);
		uint64_t lsn1, lsn2, lsn3;

		journal_set_commit_hook(j, hook_fn, &hs);
		assert_int_equal(journal_append(j, JOURNAL_GROW, 1, "a", 1, NULL, &lsn1, NULL),
				 IMAPQ_OK);
		assert_int_equal(journal_wait(j, lsn1), IMAPQ_OK);
		if (which == 0)
			atomic_store(&journal_fdatasync_fn, failing_fdatasync);
		else
			atomic_store(&journal_pwritev_fn, failing_pwritev);
		assert_int_equal(journal_append(j, JOURNAL_GROW, 1, "b", 1, NULL, &lsn2, NULL),
				 IMAPQ_OK);
		assert_int_equal(journal_wait(j, lsn2), IMAPQ_E_READONLY);
		assert_int_equal(journal_wait(j, lsn1), IMAPQ_OK);
		assert_int_equal(journal_append(j, JOURNAL_SHRINK, 1, "c", 1, NULL, &lsn3, NULL),
				 IMAPQ_E_READONLY);
		assert_int_equal(journal_rotate(j, NULL), IMAPQ_E_READONLY);
		journal_stats(j, &st);
		assert_true(st.failed);
		/* One call for lsn1, one for the failure; the hook may run just after the wake-up.
		 */
		uint64_t calls = 0;
		for (int k = 0; k < 2000 && calls < 2; k++) {
			pthread_mutex_lock(&hs.mu);
			calls = hs.calls;
			pthread_mutex_unlock(&hs.mu);
			if (calls < 2)
				usleep(1000);
		}
		assert_true(calls >= 2);
		journal_close(&j);
		atomic_store(&journal_fdatasync_fn, fdatasync);
		atomic_store(&journal_pwritev_fn, pwritev);

		j = jopen(dir, 0, JOURNAL_FSYNC_ALWAYS, &c, NULL);
		assert_true(c.n >= 1);
		assert_int_equal(c.r[0].meta[0], 'a');
		journal_close(&j);
		collector_reset(&c);
		dir_drop(dir);
	}
}

/* Rotation starts a new segment, LSNs stay monotonic across reopen, drop_oldest removes only
 * old segments and leaves the rest readable. */
static void test_rotation_and_drop(void **state)
{
	enum { N = 40 };
	struct spec s[N];
	struct collector c = {0};
	struct journal_segment_info info[8];
	struct journal_stats st;
	size_t n;
	uint32_t segno = 0;
	char *dir = dir_new();
	struct journal *j = jopen(dir, 4096, JOURNAL_FSYNC_ALWAYS, &c, NULL);
	unsigned first_in_2 = 0;

	assert_int_equal(journal_drop_oldest(j), IMAPQ_E_INVALID); /* only the active one */
	assert_false(journal_wants_rotation(j));
	for (unsigned i = 0; i < N; i++) {
		spec_make(&s[i], i, 21, 400);
		if (first_in_2 == 0 && journal_wants_rotation(j)) {
			assert_int_equal(journal_rotate(j, &segno), IMAPQ_OK);
			assert_int_equal(segno, 2);
			assert_false(journal_wants_rotation(j));
			first_in_2 = i;
		}
		assert_int_equal(spec_append(j, &s[i], JOURNAL_GROW, dir), IMAPQ_OK);
		if (i > 0)
			assert_true(s[i].lsn > s[i - 1].lsn);
	}
	assert_true(first_in_2 > 0);
	for (unsigned i = 0; i < N; i++)
		if (s[i].kind != BODY_NONE)
			assert_int_equal(journal_loc_segment(s[i].loc), i < first_in_2 ? 1 : 2);
	journal_segments(j, info, 8, &n);
	assert_int_equal(n, 2);
	assert_int_equal(info[0].number, 1);
	assert_int_equal(info[1].number, 2);
	assert_true(info[0].bytes >= 4096 - JOURNAL_SEG_HDR);
	check_body_read(j, &s[0]);
	check_body_read(j, &s[N - 1]);
	journal_close(&j);

	j = jopen(dir, 4096, JOURNAL_FSYNC_ALWAYS, &c, NULL);
	assert_int_equal(c.n, N);
	for (unsigned i = 0; i < N; i++) {
		assert_true(same(&s[i], &c.r[i]));
		assert_int_equal(c.r[i].segment, i < first_in_2 ? 1 : 2);
	}
	collector_reset(&c);
	uint64_t lsn;
	assert_int_equal(journal_append(j, JOURNAL_GROW, 9, "x", 1, NULL, &lsn, NULL), IMAPQ_OK);
	assert_true(lsn > s[N - 1].lsn);
	assert_int_equal(journal_drop_oldest(j), IMAPQ_OK);
	assert_false(file_exists(dir, SEG1));
	assert_true(file_exists(dir, "0000000002.seg"));
	assert_int_equal(journal_drop_oldest(j), IMAPQ_E_INVALID);
	uint8_t byte;
	for (unsigned i = 0; i < N; i++) {
		if (s[i].kind == BODY_NONE || s[i].body_len == 0)
			continue;
		assert_int_equal(journal_body_read(j, s[i].loc, 0, &byte, 1),
				 i < first_in_2 ? IMAPQ_E_NOTFOUND : IMAPQ_OK);
	}
	journal_stats(j, &st);
	assert_int_equal(st.segments, 1);
	/* A rotation, then a reopen: the new segment starts past every earlier LSN. */
	assert_int_equal(journal_rotate(j, &segno), IMAPQ_OK);
	assert_int_equal(segno, 3);
	journal_close(&j);
	j = jopen(dir, 4096, JOURNAL_FSYNC_ALWAYS, &c, NULL);
	assert_int_equal(c.n, N - first_in_2 + 1);
	uint64_t lsn2;
	assert_int_equal(journal_append(j, JOURNAL_GROW, 9, "y", 1, NULL, &lsn2, NULL), IMAPQ_OK);
	assert_true(lsn2 > lsn);
	journal_close(&j);
	collector_reset(&c);
	specs_free(s, N);
	dir_drop(dir);
}

/* A reader holding a segment keeps reading it while drop_oldest unlinks it. */
struct reader {
	struct journal *j;
	uint64_t loc;
	uint64_t len;
	const uint8_t *expect;
	atomic_int ok, bad;
	atomic_bool stop;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	uint8_t buf[512];

	while (!atomic_load(&r->stop)) {
		size_t n = r->len < sizeof(buf) ? (size_t)r->len : sizeof(buf);
		imapq_err err = journal_body_read(r->j, r->loc, 0, buf, n);
		if (err == IMAPQ_OK && memcmp(buf, r->expect, n) == 0)
			atomic_fetch_add(&r->ok, 1);
		else if (err != IMAPQ_E_NOTFOUND)
			atomic_fetch_add(&r->bad, 1);
		else
			break;
	}
	return NULL;
}

static void test_read_during_drop(void **state)
{
	struct collector c = {0};
	char *dir = dir_new();
	struct journal *j = jopen(dir, 4096, JOURNAL_FSYNC_ALWAYS, &c, NULL);
	uint8_t body[300];
	struct reader r = {.j = j, .len = sizeof(body), .expect = body};
	pthread_t th;
	uint64_t lsn;

	for (size_t i = 0; i < sizeof(body); i++)
		body[i] = (uint8_t)(i ^ 0x5a);
	struct journal_body b = {.data = body, .fd = -1, .len = sizeof(body)};
	b.crc = crc32c(0, body, sizeof(body));
	assert_int_equal(journal_append(j, JOURNAL_GROW, 1, NULL, 0, &b, &lsn, &r.loc), IMAPQ_OK);
	assert_int_equal(journal_rotate(j, NULL), IMAPQ_OK);
	assert_int_equal(pthread_create(&th, NULL, reader_main, &r), 0);
	while (atomic_load(&r.ok) < 20)
		usleep(100);
	assert_int_equal(journal_drop_oldest(j), IMAPQ_OK);
	atomic_store(&r.stop, true);
	pthread_join(th, NULL);
	assert_int_equal(atomic_load(&r.bad), 0);
	journal_close(&j);
	dir_drop(dir);
}

/* A second open of a folder in use fails with IMAPQ_E_LOCKED; after close it succeeds. */
static void test_lock(void **state)
{
	struct collector c = {0};
	struct journal_options o = {.dir = NULL, .fsync = JOURNAL_FSYNC_ALWAYS};
	char *dir = dir_new();
	char sub[4096];
	struct journal *j2 = (struct journal *)&o;

	snprintf(sub, sizeof(sub), "%s/data/journal", dir); /* created with its parents */
	o.dir = sub;
	struct journal *j = jopen(sub, 0, JOURNAL_FSYNC_ALWAYS, &c, NULL);
	assert_true(file_exists(sub, "LOCK"));
	assert_int_equal(journal_open(&o, collect, &c, NULL, &j2), IMAPQ_E_LOCKED);
	assert_null(j2);
	journal_close(&j);
	j = jopen(sub, 0, JOURNAL_FSYNC_ALWAYS, &c, NULL);
	journal_close(&j);
	collector_reset(&c);
	dir_drop(dir);
}

static int enospc_fallocate(int fd, int mode, off_t off, off_t len)
{
	errno = ENOSPC;
	return -1;
}

/* With the disk full, GROW appends that would eat into the reserve fail with IMAPQ_E_NOSPACE and
 * queue nothing; SHRINK appends keep using the reserve, past the rotation size. */
static void test_reserve(void **state)
{
	enum { SEG = 8192, RESERVE = 6000 };
	struct collector c = {0};
	char *dir = dir_new();
	struct journal *j = jopen(dir, SEG, JOURNAL_FSYNC_ALWAYS, &c, NULL);
	uint8_t meta[100];
	uint64_t lsn, grown = 0, shrunk = 0;
	imapq_err err;

	memset(meta, 'g', sizeof(meta));
	journal_reserve_add(j, RESERVE + 1000);
	journal_reserve_add(j, -1000);
	/* While the disk has room, GROW appends run past the rotation size, keeping the reserve
	 * preallocated beyond them. */
	while (!journal_wants_rotation(j)) {
		assert_int_equal(
		    journal_append(j, JOURNAL_GROW, 1, meta, sizeof(meta), NULL, &lsn, NULL),
		    IMAPQ_OK);
		grown++;
	}
	/* The disk is now full: GROW appends fill the preallocation up to the reserve, no more. */
	atomic_store(&journal_fallocate_fn, enospc_fallocate);
	while ((err = journal_append(j, JOURNAL_GROW, 1, meta, sizeof(meta), NULL, &lsn, NULL)) ==
	       IMAPQ_OK)
		grown++;
	assert_int_equal(err, IMAPQ_E_NOSPACE);
	uint64_t before = journal_append_lsn(j);
	assert_int_equal(journal_append(j, JOURNAL_GROW, 1, meta, sizeof(meta), NULL, &lsn, NULL),
			 IMAPQ_E_NOSPACE);
	assert_int_equal(journal_append_lsn(j), before); /* nothing was queued */
	assert_int_equal(journal_rotate(j, NULL), IMAPQ_E_NOSPACE);
	assert_false(file_exists(dir, "0000000002.seg"));

	/* SHRINK appends use the reserve. */
	memset(meta, 's', sizeof(meta));
	while ((err = journal_append(j, JOURNAL_SHRINK, 2, meta, sizeof(meta), NULL, &lsn, NULL)) ==
	       IMAPQ_OK)
		shrunk++;
	assert_int_equal(err, IMAPQ_E_NOSPACE);
	assert_true(shrunk * (sizeof(meta) + JOURNAL_REC_HDR) >= RESERVE - 200);
	assert_true(shrunk * (sizeof(meta) + JOURNAL_REC_HDR) <= RESERVE + 200);
	assert_int_equal(journal_wait(j, lsn), IMAPQ_OK);
	atomic_store(&journal_fallocate_fn, fallocate);

	/* Space came back: rotation works and GROW appends go on in the new segment. */
	assert_int_equal(journal_rotate(j, NULL), IMAPQ_OK);
	assert_int_equal(journal_append(j, JOURNAL_GROW, 3, meta, 1, NULL, &lsn, NULL), IMAPQ_OK);
	journal_close(&j);

	j = jopen(dir, SEG, JOURNAL_FSYNC_ALWAYS, &c, NULL);
	assert_int_equal(c.n, grown + shrunk + 1);
	assert_int_equal(c.r[grown - 1].type, 1);
	assert_int_equal(c.r[grown].type, 2);
	assert_int_equal(c.r[c.n - 1].type, 3);
	journal_close(&j);
	collector_reset(&c);
	dir_drop(dir);
}

/* Bad arguments are refused before anything is queued. */
static void test_invalid_arguments(void **state)
{
	struct collector c = {0};
	char *dir = dir_new();
	struct journal *j = jopen(dir, 0, JOURNAL_FSYNC_ALWAYS, &c, NULL);
	struct journal_body b = {.data = "abc", .fd = -1, .len = 3, .crc = 0};
	uint64_t lsn, loc;
	uint8_t buf[4];

	assert_int_equal(journal_append(j, JOURNAL_GROW, 1, NULL, 5, NULL, &lsn, NULL),
			 IMAPQ_E_INVALID);
	assert_int_equal(
	    journal_append(j, JOURNAL_GROW, 1, "m", IMAPQ_JOURNAL_MAX_META + 1, NULL, &lsn, NULL),
	    IMAPQ_E_TOOBIG);
	assert_int_equal(journal_append(j, JOURNAL_GROW, 1, NULL, 0, &b, &lsn, NULL),
			 IMAPQ_E_INVALID); /* wrong crc */
	b.crc = crc32c(0, "abc", 3);
	assert_int_equal(journal_append(j, JOURNAL_GROW, 1, NULL, 0, &b, &lsn, &loc), IMAPQ_OK);
	assert_int_equal(journal_wait(j, lsn + 1), IMAPQ_E_INVALID);
	assert_int_equal(journal_body_read(j, loc, 0, buf, 3), IMAPQ_OK);
	assert_memory_equal(buf, "abc", 3);
	assert_int_equal(journal_body_read(j, loc, 0, buf, 4), IMAPQ_E_INVALID);
	assert_int_equal(journal_body_read(j, loc + (UINT64_C(7) << 40), 0, buf, 1),
			 IMAPQ_E_NOTFOUND);
	assert_int_equal(journal_body_read(j, 5, 0, buf, 1), IMAPQ_E_INVALID);
	journal_close(&j);
	collector_reset(&c);
	dir_drop(dir);
}

/* A replay error stops recovery and journal_open returns it. */
static imapq_err refuse_third(void *ctx, const struct journal_record *rec)
{
	int *n = ctx;
	return ++*n == 3 ? IMAPQ_E_CORRUPT : IMAPQ_OK;
}

static void test_replay_error(void **state)
{
	struct collector c = {0};
	struct journal_options o = {.dir = NULL, .fsync = JOURNAL_FSYNC_ALWAYS};
	char *dir = dir_new();
	struct journal *j = jopen(dir, 0, JOURNAL_FSYNC_ALWAYS, &c, NULL);
	uint64_t lsn;
	int n = 0;

	for (int i = 0; i < 5; i++)
		assert_int_equal(
		    journal_append(j, JOURNAL_GROW, 1, &i, sizeof(i), NULL, &lsn, NULL), IMAPQ_OK);
	journal_close(&j);
	o.dir = dir;
	assert_int_equal(journal_open(&o, refuse_third, &n, NULL, &j), IMAPQ_E_CORRUPT);
	assert_null(j);
	assert_int_equal(n, 3);
	j = jopen(dir, 0, JOURNAL_FSYNC_ALWAYS, &c, NULL); /* the lock was released */
	assert_int_equal(c.n, 5);
	journal_close(&j);
	collector_reset(&c);
	dir_drop(dir);
}

/* journal_body_crc gives the checksum a body was written with, and only for the lengths its
 * header holds; a body marked damaged is written with the checksum given, which it fails at the
 * next open, while an unmarked mismatch is refused. */
static void test_body_crc_and_damaged_bodies(void **state)
{
	(void)state;
	struct collector c = {0};
	struct journal_report rep;
	char *dir = dir_new();
	struct journal *j = jopen(dir, 0, JOURNAL_FSYNC_OFF, &c, NULL);
	const char meta[40] = "message header";
	const char text[] = "a body of some bytes";
	struct journal_body body = {.data = text, .fd = -1, .len = sizeof text - 1};
	body.crc = crc32c(0, text, body.len);
	uint64_t lsn, loc;
	assert_int_equal(journal_append(j, JOURNAL_GROW, 7, meta, sizeof meta, &body, &lsn, &loc),
			 IMAPQ_OK);
	uint32_t crc = 0;
	assert_int_equal(journal_body_crc(j, loc, sizeof meta, body.len, &crc), IMAPQ_OK);
	assert_int_equal(crc, body.crc);
	assert_int_equal(journal_body_crc(j, loc, sizeof meta - 1, body.len, &crc),
			 IMAPQ_E_CORRUPT);
	assert_int_equal(journal_body_crc(j, loc, sizeof meta, body.len + 1, &crc),
			 IMAPQ_E_CORRUPT);
	assert_int_equal(journal_body_crc(j, 0, sizeof meta, body.len, &crc), IMAPQ_E_INVALID);

	struct journal_body changed = body;
	changed.data = "A body of some bytes";
	assert_int_equal(
	    journal_append(j, JOURNAL_GROW, 7, meta, sizeof meta, &changed, &lsn, &loc),
	    IMAPQ_E_INVALID);
	changed.damaged = true;
	assert_int_equal(
	    journal_append(j, JOURNAL_GROW, 7, meta, sizeof meta, &changed, &lsn, &loc), IMAPQ_OK);
	assert_int_equal(journal_body_crc(j, loc, sizeof meta, body.len, &crc), IMAPQ_OK);
	assert_int_equal(crc, body.crc);
	journal_close(&j);

	j = jopen(dir, 0, JOURNAL_FSYNC_OFF, &c, &rep);
	assert_int_equal(c.n, 1);
	assert_int_equal(rep.damaged, 1);
	journal_close(&j);
	collector_reset(&c);
	dir_drop(dir);
}

/* Closes of segment files pass this gate. */
static struct test_gate close_gate = TEST_GATE_INIT;

static int gated_close(int fd)
{
	test_gate_pass(&close_gate, true);
	return close(fd);
}

struct drop_job {
	struct journal *j;
	imapq_err err;
};

static void *drop_main(void *arg)
{
	struct drop_job *job = arg;
	job->err = journal_drop_oldest(job->j);
	return NULL;
}

static void *append_one_main(void *arg)
{
	struct drop_job *job = arg;
	uint64_t lsn;
	job->err = journal_append(job->j, JOURNAL_GROW, 9, "y", 1, NULL, &lsn, NULL);
	test_gate_set(&close_gate, &close_gate.done);
	return NULL;
}

/* Closing a dropped segment's file frees its blocks, which can take tens of milliseconds: it
 * happens after the journal's mutex is released, so an append goes on meanwhile. */
static void test_drop_closes_outside_the_lock(void **state)
{
	(void)state;
	struct collector c = {0};
	char *dir = dir_new();
	struct journal *j = jopen(dir, 4096, JOURNAL_FSYNC_ALWAYS, &c, NULL);
	uint64_t lsn;
	assert_int_equal(journal_append(j, JOURNAL_GROW, 9, "x", 1, NULL, &lsn, NULL), IMAPQ_OK);
	assert_int_equal(journal_rotate(j, NULL), IMAPQ_OK);
	close_gate.armed = true;
	atomic_store(&journal_close_fn, gated_close);
	struct drop_job dropper = {.j = j}, appender = {.j = j};
	pthread_t dt, at;
	assert_int_equal(pthread_create(&dt, NULL, drop_main, &dropper), 0);
	bool closing = test_gate_wait(&close_gate, &close_gate.reached, 10);
	assert_int_equal(pthread_create(&at, NULL, append_one_main, &appender), 0);
	bool appended = test_gate_wait(&close_gate, &close_gate.done, 5);
	test_gate_set(&close_gate, &close_gate.open);
	pthread_join(at, NULL);
	pthread_join(dt, NULL);
	atomic_store(&journal_close_fn, close);
	assert_true(closing);
	assert_true(appended);
	assert_int_equal(appender.err, IMAPQ_OK);
	assert_int_equal(dropper.err, IMAPQ_OK);
	journal_close(&j);
	dir_drop(dir);
}

/* What a drop did to its file, in order. */
static struct {
	off_t sizes[16];
	int truncates;
	int truncates_before_close; /* -1 until the close */
} release;

static int recording_ftruncate(int fd, off_t len)
{
	if (release.truncates < 16)
		release.sizes[release.truncates] = len;
	release.truncates++;
	return ftruncate(fd, len);
}

static int recording_close(int fd)
{
	if (release.truncates_before_close < 0)
		release.truncates_before_close = release.truncates;
	return close(fd);
}

/* A dropped segment of about 21 MiB is shortened in steps of IMAPQ_JOURNAL_RELEASE_STEP before
 * its file is closed, so that the disk frees its blocks a little at a time. */
static void test_drop_releases_in_steps(void **state)
{
	(void)state;
	struct collector c = {0};
	char *dir = dir_new();
	struct journal *j = jopen(dir, 0, JOURNAL_FSYNC_OFF, &c, NULL);
	size_t len = 3u << 20;
	char *data = calloc(1, len);
	assert_non_null(data);
	struct journal_body body = {.data = data, .fd = -1, .len = len};
	body.crc = crc32c(0, data, len);
	uint64_t lsn;
	for (int i = 0; i < 7; i++)
		assert_int_equal(journal_append(j, JOURNAL_GROW, 1, "m", 1, &body, &lsn, NULL),
				 IMAPQ_OK);
	free(data);
	assert_int_equal(journal_rotate(j, NULL), IMAPQ_OK);
	release.truncates = 0;
	release.truncates_before_close = -1;
	atomic_store(&journal_ftruncate_fn, recording_ftruncate);
	atomic_store(&journal_close_fn, recording_close);
	assert_int_equal(journal_drop_oldest(j), IMAPQ_OK);
	atomic_store(&journal_ftruncate_fn, ftruncate);
	atomic_store(&journal_close_fn, close);
	/* 21 MiB and some: down to 13 MiB, then 5 MiB, then the close frees the rest. */
	assert_int_equal(release.truncates, 2);
	assert_int_equal(release.truncates_before_close, 2);
	assert_true(release.sizes[0] > (off_t)(12u << 20));
	assert_int_equal(release.sizes[0] - release.sizes[1], (off_t)IMAPQ_JOURNAL_RELEASE_STEP);
	assert_true(release.sizes[1] <= (off_t)IMAPQ_JOURNAL_RELEASE_STEP);
	journal_close(&j);
	dir_drop(dir);
}

static int quiet_logs(void **state)
{
	log_set_level(LOG_ERROR);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_roundtrip),
	    cmocka_unit_test(test_crash_cuts),
	    cmocka_unit_test(test_bad_segment_header),
	    cmocka_unit_test(test_bit_flips),
	    cmocka_unit_test(test_group_commit),
	    cmocka_unit_test(test_batch_and_off),
	    cmocka_unit_test(test_injected_failures),
	    cmocka_unit_test(test_rotation_and_drop),
	    cmocka_unit_test(test_read_during_drop),
	    cmocka_unit_test(test_lock),
	    cmocka_unit_test(test_reserve),
	    cmocka_unit_test(test_invalid_arguments),
	    cmocka_unit_test(test_zeros_ahead),
	    cmocka_unit_test(test_replay_error),
	    cmocka_unit_test(test_body_crc_and_damaged_bodies),
	    cmocka_unit_test(test_drop_closes_outside_the_lock),
	    cmocka_unit_test(test_drop_releases_in_steps),
	};
	return cmocka_run_group_tests(tests, quiet_logs, NULL);
}
