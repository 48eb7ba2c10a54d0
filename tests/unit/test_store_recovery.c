/* Crash-recovery tests of the store: a seeded random workload (claims, releases and lease
 * renewals included), then torn tails at every record boundary and inside records of the newest
 * segment, random bit flips, compaction and restarts. The recovered state must always be the
 * state after some prefix of the operations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "imap/base/crc32c.h"
#include "imap/base/limits.h"
#include "tests/unit/tmpdir.h"
#include "tests/unit/journal_files.h"
#include "imap/base/log.h"
#include "imap/store/journal-private.h"
#include "imap/store/store.h"

#define SEGMENT_BYTES (6 * 1024)
#define OPS	      260

static const char *const annotation_keys[] = {"/shared/lease", "/shared/max", "/private/x",
					      STORE_SETTING_LEASE, STORE_SETTING_MAX_ATTEMPTS};
#define NKEYS (sizeof annotation_keys / sizeof *annotation_keys)
static const char *const names[] = {"q0", "q1", "q1/dead", "q2", "q3", "moved", "moved/dead"};
#define NNAMES (sizeof names / sizeof *names)

static uint64_t rng_state;

/* xorshift64*: a small deterministic generator, so a failure can be replayed. */
static uint32_t rnd(uint32_t n)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint32_t)((rng_state * 2685821657736338717ull) >> 33) % n;
}

static struct store *open_store_sized(const char *dir, uint64_t segment_bytes)
{
	struct store_options o = {
	    .dir = dir, .fsync = JOURNAL_FSYNC_OFF, .segment_bytes = segment_bytes};
	struct store *s = NULL;
	assert_int_equal(store_open(&o, NULL, &s), IMAPQ_OK);
	return s;
}

static struct store *open_store(const char *dir)
{
	return open_store_sized(dir, SEGMENT_BYTES);
}

/* A growable text that states are printed into. */
struct text {
	char *p;
	size_t len, cap;
};

__attribute__((format(printf, 2, 3))) static void tprintf(struct text *t, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (t->len + (size_t)n + 1 > t->cap) {
		t->cap = (t->len + (size_t)n + 1) * 2;
		t->p = realloc(t->p, t->cap);
		assert_non_null(t->p);
	}
	va_start(ap, fmt);
	vsnprintf(t->p + t->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	t->len += (size_t)n;
}

struct id_list {
	uint32_t id[32];
	size_t n;
};

static void collect_id(void *ctx, uint32_t id, const char *name)
{
	struct id_list *l = ctx;
	(void)name;
	if (l->n < 32)
		l->id[l->n++] = id;
}

#define MSG_LIST_MAX 4096

struct msg_list {
	struct store_message m[MSG_LIST_MAX];
	size_t n;
};

static void collect_msg(void *ctx, const struct store_message *m)
{
	struct msg_list *l = ctx;
	assert_true(l->n < MSG_LIST_MAX);
	l->m[l->n++] = *m;
}

/* Prints everything observable about the store: mailboxes, counters, keywords, annotations,
 * messages with their flags, modseqs, dates and body checksums. With lenient, unreadable bodies
 * are printed as such instead of failing. */
static char *dump(struct store *s, bool lenient)
{
	struct text t = {0};
	struct id_list ids = {0};
	store_mailbox_list(s, collect_id, &ids);
	for (size_t i = 0; i < ids.n; i++) {
		char name[300], buf[4200];
		struct store_mailbox_status st;
		assert_int_equal(store_mailbox_name(s, ids.id[i], name, sizeof name), IMAPQ_OK);
		assert_int_equal(store_mailbox_status(s, ids.id[i], &st), IMAPQ_OK);
		tprintf(&t,
			"mailbox %u %s uv=%u next=%u hms=%llu n=%u unseen=%u del=%u bytes=%llu "
			"lease=%u max=%u ret=%u\n",
			st.id, name, st.uidvalidity, st.uidnext,
			(unsigned long long)st.highestmodseq, st.messages, st.unseen, st.deleted,
			(unsigned long long)st.bytes, st.lease, st.max_attempts, st.retention);
		for (unsigned k = 0; k < st.keywords; k++) {
			assert_int_equal(store_keyword_name(s, st.id, k, buf, sizeof buf),
					 IMAPQ_OK);
			tprintf(&t, " kw %u %s\n", k, buf);
		}
		for (size_t a = 0; a < NKEYS; a++)
			if (store_annotation_get(s, st.id, annotation_keys[a], buf, sizeof buf) ==
			    IMAPQ_OK)
				tprintf(&t, " ann %s=%s\n", annotation_keys[a], buf);
		struct msg_list *l = calloc(1, sizeof *l);
		assert_int_equal(store_messages(s, st.id, NULL, 0, collect_msg, l), IMAPQ_OK);
		for (size_t m = 0; m < l->n; m++) {
			size_t got = 0;
			imapq_err err =
			    store_body_read(s, st.id, l->m[m].uid, 0, buf, sizeof buf, &got);
			if (!lenient)
				assert_int_equal(err, IMAPQ_OK);
			tprintf(&t,
				" msg %u ms=%llu f=%llx d=%lld size=%u crc=%08x att=%u due=%u%s\n",
				l->m[m].uid, (unsigned long long)l->m[m].modseq,
				(unsigned long long)l->m[m].flags, (long long)l->m[m].internaldate,
				l->m[m].size, crc32c(0, buf, got), l->m[m].attempts, l->m[m].due,
				err == IMAPQ_OK ? "" : " unreadable");
		}
		free(l);
	}
	tprintf(&t, "end\n");
	return t.p;
}

/* Picks an existing mailbox id at random; 0 when none. */
static uint32_t some_mailbox(struct store *s)
{
	struct id_list ids = {0};
	store_mailbox_list(s, collect_id, &ids);
	return ids.n ? ids.id[rnd((uint32_t)ids.n)] : 0;
}

/* Picks an existing message of id at random; false when it has none. */
static bool some_message(struct store *s, uint32_t id, struct store_message *m_r)
{
	struct store_mailbox_status st;
	uint32_t uid;
	if (store_mailbox_status(s, id, &st) != IMAPQ_OK || st.messages == 0)
		return false;
	assert_int_equal(store_uid_of_seq(s, id, 1 + rnd(st.messages), &uid), IMAPQ_OK);
	assert_int_equal(store_message_get(s, id, uid, m_r), IMAPQ_OK);
	return true;
}

/* Random flags valid in mailbox id. */
static uint64_t some_flags(struct store *s, uint32_t id)
{
	struct store_mailbox_status st;
	assert_int_equal(store_mailbox_status(s, id, &st), IMAPQ_OK);
	uint64_t f = rnd(32);
	if (st.keywords)
		f |= rnd(2) ? STORE_KEYWORD(rnd(st.keywords)) : 0;
	return f;
}

/* Runs one random operation, each of which writes at most one journal record, so every
 * recovered state is the state after some prefix of them. */
static void random_op(struct store *s)
{
	uint32_t id = some_mailbox(s);
	struct store_message m;
	char body[200];
	switch (rnd(14)) {
	case 0:
		store_mailbox_create(s, names[rnd(NNAMES)], NULL, NULL);
		break;
	case 1:
		if (rnd(3) == 0)
			store_mailbox_delete(s, names[rnd(NNAMES)], NULL);
		break;
	case 2:
		store_mailbox_rename(s, names[rnd(NNAMES)], names[rnd(NNAMES)], NULL);
		break;
	case 3: {
		char kw[16];
		unsigned k;
		unsigned n = rnd(5);
		if (n == 4)
			snprintf(kw, sizeof kw, "%s", STORE_CLAIM_KEYWORD);
		else
			snprintf(kw, sizeof kw, "$kw%u", n);
		store_keyword(s, id, kw, true, &k, NULL);
		break;
	}
	case 4: {
		/* Settings take numbers (and refuse "value" without writing anything). */
		const char *values[] = {"value", "45", "3", NULL};
		store_annotation_set(s, id, annotation_keys[rnd(NKEYS)], values[rnd(4)], NULL);
		break;
	}
	case 5:
	case 6:
	case 7: {
		size_t len = 1 + rnd(sizeof body - 1);
		for (size_t i = 0; i < len; i++)
			body[i] = (char)('a' + rnd(26));
		struct journal_body b = {.data = body, .fd = -1, .len = len};
		b.crc = crc32c(0, body, len);
		assert_int_equal(
		    store_append(s, id, some_flags(s, id), rnd(1000000), &b, NULL, NULL, NULL),
		    IMAPQ_OK);
		break;
	}
	case 8:
	case 9:
		if (some_message(s, id, &m)) {
			uint64_t since = m.modseq - rnd(2);
			struct uid_range r = {m.uid, m.uid + rnd(4)};
			assert_int_equal(store_flags(s, id, &r, 1, (enum store_flag_op)rnd(3),
						     some_flags(s, id), rnd(2) ? &since : NULL,
						     NULL, NULL, NULL),
					 IMAPQ_OK);
		}
		break;
	case 12:
	case 13: {
		/* Claims, releases and lease renewals: one flags record each. */
		unsigned k;
		if (store_keyword(s, id, STORE_CLAIM_KEYWORD, false, &k, NULL) != IMAPQ_OK) {
			store_keyword(s, id, STORE_CLAIM_KEYWORD, true, &k, NULL);
			break;
		}
		if (!some_message(s, id, &m))
			break;
		uint64_t since = m.modseq - rnd(2);
		struct store_update u = {.op = rnd(2) ? STORE_FLAGS_ADD : STORE_FLAGS_REMOVE,
					 .flags = STORE_KEYWORD(k),
					 .unchangedsince = rnd(2) ? &since : NULL,
					 .set_due = rnd(3) == 0,
					 .due = rnd(1000000)};
		struct uid_range r = {m.uid, m.uid + rnd(3)};
		assert_int_equal(store_update(s, id, &r, 1, &u, NULL, NULL, NULL), IMAPQ_OK);
		break;
	}
	case 10:
		if (some_message(s, id, &m)) {
			struct uid_range r = {m.uid > 3 ? m.uid - 3 : 1, m.uid + 3};
			assert_int_equal(store_expunge(s, id, &r, 1, NULL, NULL, NULL), IMAPQ_OK);
		}
		break;
	default:
		/* A copy of a keyword-free message writes exactly one record. */
		if (some_message(s, id, &m) && m.flags < STORE_KEYWORD(0)) {
			uint32_t dst = some_mailbox(s);
			assert_int_equal(store_copy(s, id, &(struct uid_range){m.uid, m.uid}, 1,
						    dst, false, NULL, NULL, NULL),
					 IMAPQ_OK);
		}
		break;
	}
}

/* Reads a whole file. */
static uint8_t *slurp(const char *path, size_t *len_r)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	uint8_t *p = malloc((size_t)st.st_size + 1);
	assert_int_equal(read(fd, p, (size_t)st.st_size), st.st_size);
	close(fd);
	*len_r = (size_t)st.st_size;
	return p;
}

struct run {
	char dir[64];
	char *states[OPS + 2];
	size_t nstates;
};

/* Runs the seeded workload, recording the state after each operation. */
static void run_workload(struct run *r, uint64_t seed)
{
	rng_state = seed;
	assert_true(tmpdir_make(r->dir));
	struct store *s = open_store(r->dir);
	r->states[r->nstates++] = dump(s, false);
	for (int i = 0; i < OPS; i++) {
		random_op(s);
		r->states[r->nstates++] = dump(s, false);
	}
	store_close(&s);
}

static void run_free(struct run *r)
{
	tmpdir_remove(r->dir);
	for (size_t i = 0; i < r->nstates; i++)
		free(r->states[i]);
}

/* The index of the recorded state equal to text, searching down from hint; -1 when none. */
static long find_state(const struct run *r, const char *text, long hint)
{
	for (long i = hint; i >= 0; i--)
		if (strcmp(r->states[i], text) == 0)
			return i;
	return -1;
}

/* Opens a copy of the run's folder with the newest segment cut to cut bytes; returns the
 * recovered state's index. */
static long recover_cut(const struct run *r, size_t cut, long hint)
{
	char dir[64], seg[512];
	copy_tree(r->dir, dir);
	newest_segment(dir, seg, sizeof seg);
	assert_int_equal(truncate(seg, (off_t)cut), 0);
	struct store *s = open_store(dir);
	char *text = dump(s, false);
	long k = find_state(r, text, hint);
	if (k < 0)
		fprintf(stderr, "cut at %zu recovered an unrecorded state:\n%s", cut, text);
	free(text);
	store_close(&s);
	tmpdir_remove(dir);
	return k;
}

static void test_restart_preserves_everything(void **state)
{
	(void)state;
	struct run r = {0};
	run_workload(&r, 0x5eed0001);
	struct store *s = open_store(r.dir);
	char *text = dump(s, false);
	assert_string_equal(text, r.states[r.nstates - 1]);
	free(text);
	store_close(&s);
	s = open_store(r.dir);
	text = dump(s, false);
	assert_string_equal(text, r.states[r.nstates - 1]);
	free(text);
	store_close(&s);
	run_free(&r);
}

static void test_torn_tail(void **state)
{
	(void)state;
	struct run r = {0};
	run_workload(&r, 0x5eed0002);
	char seg[512];
	newest_segment(r.dir, seg, sizeof seg);
	size_t len;
	uint8_t *data = slurp(seg, &len);
	/* Record boundaries of the newest segment, from its records' own framing. */
	size_t *bounds = malloc((len / JOURNAL_REC_HDR + 2) * sizeof *bounds), nb = 0;
	size_t pos = JOURNAL_SEG_HDR;
	struct journal_parsed rec;
	bounds[nb++] = pos;
	while (journal_rec_parse(data, len, pos, &rec) == JOURNAL_PARSE_VALID) {
		pos += rec.total;
		bounds[nb++] = pos;
	}
	assert_true(nb > 3);
	long hint = (long)r.nstates - 1;
	size_t cuts = 0;
	/* From the end backwards: each boundary, then points inside the record before it. */
	for (size_t b = nb; b-- > 0;) {
		size_t at[3] = {bounds[b], 0, 0};
		if (b > 0) {
			at[1] = bounds[b] - 1;
			at[2] = bounds[b - 1] + (bounds[b] - bounds[b - 1]) / 2;
		}
		for (int i = 0; i < 3; i++) {
			if (at[i] < JOURNAL_SEG_HDR)
				continue;
			long k = recover_cut(&r, at[i], hint);
			assert_true(k >= 0);
			assert_true(k <= hint);
			hint = k;
			cuts++;
		}
	}
	assert_true(cuts >= nb);
	free(bounds);
	free(data);
	run_free(&r);
}

static void test_bit_flips(void **state)
{
	(void)state;
	struct run r = {0};
	run_workload(&r, 0x5eed0003);
	rng_state = 0xb17f11b5;
	for (int round = 0; round < 12; round++) {
		char dir[64], seg[512];
		copy_tree(r.dir, dir);
		newest_segment(dir, seg, sizeof seg);
		if (round % 2) {
			/* Damage an older segment instead, when there is one. */
			char jdir[256];
			snprintf(jdir, sizeof jdir, "%s/journal/0000000001.seg", dir);
			if (access(jdir, F_OK) == 0)
				snprintf(seg, sizeof seg, "%s", jdir);
		}
		size_t len;
		uint8_t *data = slurp(seg, &len);
		for (int i = 0; i < 1 + round; i++) {
			size_t at = JOURNAL_SEG_HDR + rnd((uint32_t)(len - JOURNAL_SEG_HDR));
			data[at] ^= (uint8_t)(1u << rnd(8));
		}
		int fd = open(seg, O_WRONLY);
		assert_int_equal(write(fd, data, len), (ssize_t)len);
		close(fd);
		free(data);
		struct store *s = open_store(dir);
		free(dump(s, true));
		/* The damaged store still works and survives another restart. */
		uint32_t id;
		assert_int_equal(store_mailbox_find(s, "INBOX", &id), IMAPQ_OK);
		struct journal_body b = {.data = "after", .fd = -1, .len = 5};
		b.crc = crc32c(0, "after", 5);
		uint32_t uid;
		assert_int_equal(store_append(s, id, STORE_SEEN, 1, &b, &uid, NULL, NULL),
				 IMAPQ_OK);
		char *before = dump(s, true);
		store_close(&s);
		s = open_store(dir);
		char *after = dump(s, true);
		assert_string_equal(before, after);
		free(before);
		free(after);
		store_close(&s);
		tmpdir_remove(dir);
	}
	run_free(&r);
}

static void test_compaction_keeps_state(void **state)
{
	(void)state;
	struct run r = {0};
	run_workload(&r, 0x5eed0004);
	struct store *s = open_store(r.dir);
	struct store_stats before;
	store_stats(s, &before);
	for (int i = 0; i < 6; i++)
		assert_int_equal(store_compact(s, true), IMAPQ_OK);
	struct store_stats after;
	store_stats(s, &after);
	assert_true(after.journal.segments <= before.journal.segments);
	char *text = dump(s, false);
	assert_string_equal(text, r.states[r.nstates - 1]);
	free(text);
	store_close(&s);
	s = open_store(r.dir);
	text = dump(s, false);
	assert_string_equal(text, r.states[r.nstates - 1]);
	free(text);
	/* More work after compaction, then a restart: UIDs and modseqs keep rising. */
	rng_state = 77;
	for (int i = 0; i < 40; i++)
		random_op(s);
	char *live = dump(s, false);
	store_close(&s);
	s = open_store(r.dir);
	text = dump(s, false);
	assert_string_equal(text, live);
	free(text);
	free(live);
	store_close(&s);
	run_free(&r);
}

/* Compaction carries old messages past newer appends, so replay meets UIDs out of order: the
 * reopened store must hold every message once, exactly as before. */
static void test_compaction_then_reopen(void **state)
{
	(void)state;
	char dir[TMPDIR_LEN];
	assert_true(tmpdir_make(dir));
	struct store *s = open_store(dir);
	uint32_t id;
	assert_int_equal(store_mailbox_find(s, "INBOX", &id), IMAPQ_OK);
	char body[200];
	memset(body, 'j', sizeof body);
	for (int i = 0; i < 40; i++) {
		struct journal_body b = {.data = body, .fd = -1, .len = sizeof body};
		b.crc = crc32c(0, body, sizeof body);
		uint32_t uid;
		assert_int_equal(store_append(s, id, 0, 1, &b, &uid, NULL, NULL), IMAPQ_OK);
		assert_int_equal(uid, (uint32_t)i + 1);
	}
	assert_int_equal(store_compact(s, true), IMAPQ_OK);
	char *before = dump(s, true);
	store_close(&s);
	s = open_store(dir);
	char *after = dump(s, true);
	assert_string_equal(before, after);
	struct store_stats st;
	store_stats(s, &st);
	assert_int_equal(st.messages, 40);
	free(before);
	free(after);
	store_close(&s);
	tmpdir_remove(dir);
}

/* A writer beside a compaction: operations on the mailbox being carried until told to stop. */
struct writer {
	struct store *s;
	uint32_t id, other;
	atomic_bool stop;
	atomic_ulong ops;
};

/* One operation of the writer: a flag change, an expunge, an append or a move of one message;
 * the plain, deleted and claimed forms of a message all meet the carrying. */
static void writer_op(struct writer *w)
{
	struct store_message m;
	char body[120];
	switch (rnd(5)) {
	case 0:
	case 1:
		if (some_message(w->s, w->id, &m)) {
			struct uid_range r = {m.uid, m.uid + rnd(3)};
			assert_int_equal(store_flags(w->s, w->id, &r, 1, (enum store_flag_op)rnd(3),
						     rnd(32), NULL, NULL, NULL, NULL),
					 IMAPQ_OK);
		}
		break;
	case 2:
		if (some_message(w->s, w->id, &m)) {
			struct uid_range r = {m.uid, m.uid};
			assert_int_equal(store_expunge(w->s, w->id, &r, 1, NULL, NULL, NULL),
					 IMAPQ_OK);
		}
		break;
	case 3: {
		size_t len = 1 + rnd(sizeof body - 1);
		memset(body, 'a' + (int)rnd(26), len);
		struct journal_body b = {.data = body, .fd = -1, .len = len};
		b.crc = crc32c(0, body, len);
		assert_int_equal(store_append(w->s, w->id, 0, 7, &b, NULL, NULL, NULL), IMAPQ_OK);
		break;
	}
	default:
		if (some_message(w->s, w->id, &m)) {
			struct uid_range r = {m.uid, m.uid};
			assert_int_equal(
			    store_copy(w->s, w->id, &r, 1, w->other, true, NULL, NULL, NULL),
			    IMAPQ_OK);
		}
		break;
	}
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	while (!atomic_load(&w->stop)) {
		writer_op(w);
		atomic_fetch_add(&w->ops, 1);
	}
	return NULL;
}

/* Compaction leaves the store lock between slices: another thread's changes land between them,
 * on messages already carried and on ones still to carry, and what is in memory afterwards is
 * exactly what the journal replays. */
static void test_compaction_beside_a_writer(void **state)
{
	(void)state;
	char dir[TMPDIR_LEN];
	assert_true(tmpdir_make(dir));
	struct store *s = open_store_sized(dir, 64 * 1024);
	struct writer w = {.s = s};
	assert_int_equal(store_mailbox_create(s, "q0", &w.id, NULL), IMAPQ_OK);
	assert_int_equal(store_mailbox_create(s, "q2", &w.other, NULL), IMAPQ_OK);
	char body[40];
	for (int i = 0; i < 3000; i++) {
		memset(body, 'a' + i % 26, sizeof body);
		struct journal_body b = {.data = body, .fd = -1, .len = sizeof body};
		b.crc = crc32c(0, body, sizeof body);
		assert_int_equal(
		    store_append(s, i % 4 ? w.id : w.other, 0, 1, &b, NULL, NULL, NULL), IMAPQ_OK);
	}
	rng_state = 0x5eed0005;
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, writer_main, &w), 0);
	while (atomic_load(&w.ops) == 0)
		sched_yield();
	unsigned long during = 0;
	for (int i = 0; i < 4; i++) {
		unsigned long before = atomic_load(&w.ops);
		assert_int_equal(store_compact(s, true), IMAPQ_OK);
		during += atomic_load(&w.ops) - before;
	}
	atomic_store(&w.stop, true);
	assert_int_equal(pthread_join(t, NULL), 0);
	struct store_stats st;
	store_stats(s, &st);
	assert_true(st.compactions >= 4);
	assert_true(st.carried > IMAPQ_COMPACT_SLICE_MESSAGES);
	/* q0 held more of each segment than one slice carries. */
	assert_true(st.compact_slices > st.compactions);
	assert_true(st.compact_slices >= st.carried / IMAPQ_COMPACT_SLICE_MESSAGES);
	assert_true(during > 0);
	char *live = dump(s, false);
	store_close(&s);
	s = open_store_sized(dir, 64 * 1024);
	char *text = dump(s, false);
	assert_string_equal(text, live);
	free(text);
	free(live);
	store_close(&s);
	tmpdir_remove(dir);
}

int main(void)
{
	log_set_level(LOG_ERROR);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_restart_preserves_everything),
	    cmocka_unit_test(test_torn_tail),
	    cmocka_unit_test(test_bit_flips),
	    cmocka_unit_test(test_compaction_keeps_state),
	    cmocka_unit_test(test_compaction_then_reopen),
	    cmocka_unit_test(test_compaction_beside_a_writer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
