/* The store benchmark: the disk's raw fdatasync rate, durable appends and conditional stores
 * through group commit with 1 and 64 committers, RAM per message, recovery time of a
 * million-message journal, the cost of the "lowest ready UID" lookup in a small versus a
 * large mailbox, and durable appends while compaction carries that million-message backlog. Drives
 * imap/store in-process; prints a table and "bench:" lines (see bench.h and docs/benchmarks.md).
 * Exits 0 unless something failed functionally; timings are never judged. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "imap/base/crc32c.h"
#include "imap/base/error.h"
#include "imap/base/log.h"
#include "imap/store/store.h"

#include "bench.h"

/* Length of each raw fdatasync loop, seconds, and bytes written before each fdatasync. */
#define DISK_SECONDS 2.0
#define DISK_RECORD  256
/* Size preallocated for the raw loop: one journal segment. */
#define DISK_PREALLOC (64ull * 1024 * 1024)
/* Length of each durable store run, seconds, and the body bytes of its messages. */
#define RUN_SECONDS 3.0
#define RUN_BODY    256
/* Committer threads of the concurrent runs. */
#define MANY_THREADS 64
/* Bounds of the number of messages preloaded for the claim runs. */
#define CLAIM_POOL_MIN 20000
#define CLAIM_POOL_MAX 3000000
/* Messages of the RAM, recovery and lookup figures, and their body bytes. */
#define MILLION	   1000000u
#define SMALL_BODY 100
/* Mailbox A of the lookup figure, and the claimed lowest UIDs of mailbox B. */
#define SMALL_MAILBOX  1000u
#define CLAIMED_PREFIX 10000u
/* Lookups per timed run, and runs per mailbox (interleaved A, B). */
#define LOOKUP_CALLS  1000000u
#define LOOKUP_ROUNDS 5
/* Headline figures one run can record. */
#define MAX_FIGURES 16

/* One headline figure, printed as a "bench:" line at the end. */
struct figure {
	const char *name;
	double value;
	int decimals;
	const char *unit;
};

static struct figure figures[MAX_FIGURES];
static size_t n_figures;

/* Records a headline figure for the "bench:" lines printed at the end. */
static void figure_add(const char *name, double value, int decimals, const char *unit)
{
	if (n_figures < MAX_FIGURES)
		figures[n_figures++] = (struct figure){name, value, decimals, unit};
}

/* Reports a failed store call; returns true when err is a failure. */
static bool failed(imapq_err err, const char *what)
{
	if (err == IMAPQ_OK)
		return false;
	bench_fail("%s: %s (%s)", what, imapq_err_name(err), imapq_err_message(err));
	return true;
}

/* A body of len bytes of printable text with its checksum; data points at static storage. */
static struct journal_body make_body(size_t len)
{
	static char text[RUN_BODY];
	struct journal_body b = {.data = text, .fd = -1, .offset = 0, .len = len};

	for (size_t i = 0; i < sizeof(text); i++)
		text[i] = (i % 64 == 63) ? '\n' : (char)('a' + i % 26);
	b.crc = crc32c(0, text, len);
	return b;
}

/* --- 1. The disk's raw fdatasync rate --- */

/* Runs pwrite(DISK_RECORD bytes) + fdatasync at successive offsets of a new file for about
 * seconds, on a file preallocated with fallocate() or on one that grows; returns ops/s, or -1. */
static double disk_fdatasync_rate(const char *path, bool prealloc, double seconds)
{
	char rec[DISK_RECORD];
	uint64_t ops = 0, off = 0, start;
	double elapsed;
	int fd;

	memset(rec, 'x', sizeof(rec));
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		bench_fail("open %s: %s", path, strerror(errno));
		return -1;
	}
	if (prealloc && (fallocate(fd, 0, 0, (off_t)DISK_PREALLOC) != 0 || fdatasync(fd) != 0)) {
		bench_fail("fallocate %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	start = bench_now_ns();
	do {
		if (prealloc && off + sizeof(rec) > DISK_PREALLOC)
			off = 0;
		if (pwrite(fd, rec, sizeof(rec), (off_t)off) != (ssize_t)sizeof(rec) ||
		    fdatasync(fd) != 0) {
			bench_fail("write %s: %s", path, strerror(errno));
			close(fd);
			return -1;
		}
		off += sizeof(rec);
		ops++;
	} while ((elapsed = bench_since_s(start)) < seconds);
	close(fd);
	unlink(path);
	return (double)ops / elapsed;
}

/* Measures both files and records disk.fdatasync_per_s; returns the rate, or -1. */
static double bench_disk(const char *dir)
{
	char path[1200], note[64];
	double pre, app;

	bench_section("1. Raw disk: pwrite(256 B) + fdatasync, one writer");
	snprintf(path, sizeof(path), "%s/fsync-prealloc", dir);
	pre = disk_fdatasync_rate(path, true, DISK_SECONDS);
	if (pre < 0)
		return -1;
	snprintf(note, sizeof(note), "%.0f us per round", 1e6 / pre);
	bench_row("preallocated file (fallocate, as the journal)", pre, 0, "ops/s", note);
	snprintf(path, sizeof(path), "%s/fsync-append", dir);
	app = disk_fdatasync_rate(path, false, DISK_SECONDS);
	if (app < 0)
		return -1;
	snprintf(note, sizeof(note), "%.0f us per round", 1e6 / app);
	bench_row("appending file (size grows each write)", app, 0, "ops/s", note);
	figure_add("disk.fdatasync_per_s", pre, 0, "ops/s");
	return pre;
}

/* --- 2 and 3. Durable appends and conditional stores through group commit --- */

/* State shared by the committer threads of one run. */
struct run {
	struct store *store;
	uint32_t mailbox;
	uint64_t claimed; /* flag bit of $Claimed in mailbox */
	struct journal_body body;
	pthread_mutex_t gate_lock;
	pthread_cond_t gate;
	bool go;	      /* set once every thread exists */
	atomic_bool stop;     /* set when the run's time is up */
	atomic_uint next_uid; /* next message to claim */
	uint32_t last_uid;    /* last preloaded message */
	atomic_bool exhausted;
	atomic_int errors;
};

/* One committer thread and what it measured. */
struct worker {
	struct run *run;
	pthread_t thread;
	uint64_t ops;
	double *lat_us; /* latency of each operation, microseconds */
	size_t n_lat, cap_lat;
};

/* What one run measured. */
struct run_result {
	uint64_t ops;
	double seconds, rate, p50_us, p99_us, max_us;
	uint64_t fsyncs;
	double fsync_us; /* mean time of one journal fdatasync during the run */
	bool exhausted;
};

/* Keeps one latency sample; drops samples when memory runs out (the rate is unaffected). */
static void worker_sample(struct worker *w, uint64_t start_ns)
{
	if (w->n_lat == w->cap_lat) {
		size_t cap = w->cap_lat ? w->cap_lat * 2 : 4096;
		double *p = realloc(w->lat_us, cap * sizeof(*p));

		if (!p)
			return;
		w->lat_us = p;
		w->cap_lat = cap;
	}
	w->lat_us[w->n_lat++] = (double)(bench_now_ns() - start_ns) / 1e3;
}

/* Blocks a new thread until the run starts. */
static void run_gate_wait(struct run *r)
{
	pthread_mutex_lock(&r->gate_lock);
	while (!r->go)
		pthread_cond_wait(&r->gate, &r->gate_lock);
	pthread_mutex_unlock(&r->gate_lock);
}

/* Opens the gate for every thread of the run. */
static void run_gate_open(struct run *r)
{
	pthread_mutex_lock(&r->gate_lock);
	r->go = true;
	pthread_cond_broadcast(&r->gate);
	pthread_mutex_unlock(&r->gate_lock);
}

/* Committer of the append runs: append one body, wait until it is durable, repeat. */
static void *append_worker(void *arg)
{
	struct worker *w = arg;
	struct run *r = w->run;
	uint64_t modseq, lsn, t0;
	uint32_t uid;

	run_gate_wait(r);
	while (!atomic_load(&r->stop)) {
		t0 = bench_now_ns();
		if (failed(store_append(r->store, r->mailbox, 0, time(NULL), &r->body, &uid,
					&modseq, &lsn),
			   "store_append") ||
		    failed(store_wait(r->store, lsn), "store_wait")) {
			atomic_fetch_add(&r->errors, 1);
			break;
		}
		worker_sample(w, t0);
		w->ops++;
	}
	return NULL;
}

/* Records the outcome store_flags() reports for the single message of a claim. */
static void claim_outcome(void *ctx, const struct store_message *m, enum store_flag_outcome outcome)
{
	(void)m;
	*(int *)ctx = (int)outcome;
}

/* Claims one message as a worker does: read its mod-sequence, store +$Claimed UNCHANGEDSINCE
 * that mod-sequence, wait until durable. Returns false on any functional failure. */
static bool claim_one(struct run *r, uint32_t uid)
{
	struct uid_range range = {uid, uid};
	struct store_message m;
	int outcome = -1;
	uint64_t lsn;

	if (failed(store_message_get(r->store, r->mailbox, uid, &m), "store_message_get") ||
	    failed(store_flags(r->store, r->mailbox, &range, 1, STORE_FLAGS_ADD, r->claimed,
			       &m.modseq, claim_outcome, &outcome, &lsn),
		   "store_flags"))
		return false;
	if (outcome != STORE_CHANGED) {
		bench_fail("claim of uid %u: outcome %d, expected a change", uid, outcome);
		return false;
	}
	return !failed(store_wait(r->store, lsn), "store_wait");
}

/* Committer of the claim runs: each takes the next unclaimed message of the shared pool. */
static void *claim_worker(void *arg)
{
	struct worker *w = arg;
	struct run *r = w->run;
	uint64_t t0;
	uint32_t uid;

	run_gate_wait(r);
	while (!atomic_load(&r->stop)) {
		uid = atomic_fetch_add(&r->next_uid, 1);
		if (uid > r->last_uid) {
			atomic_store(&r->exhausted, true);
			break;
		}
		t0 = bench_now_ns();
		if (!claim_one(r, uid)) {
			atomic_fetch_add(&r->errors, 1);
			break;
		}
		worker_sample(w, t0);
		w->ops++;
	}
	return NULL;
}

/* Sleeps until seconds have passed since start_ns or the claim pool ran dry. */
static void run_sleep(struct run *r, uint64_t start_ns, double seconds)
{
	struct timespec tick = {0, 5 * 1000 * 1000};

	while (bench_since_s(start_ns) < seconds && !atomic_load(&r->exhausted) &&
	       atomic_load(&r->errors) == 0)
		nanosleep(&tick, NULL);
}

/* Merges the threads' samples and computes the run's rate and latency percentiles. */
static void run_summarize(struct worker *w, int n, struct run_result *res)
{
	size_t total = 0, k = 0;
	double *all;

	for (int i = 0; i < n; i++) {
		res->ops += w[i].ops;
		total += w[i].n_lat;
	}
	res->rate = res->seconds > 0 ? (double)res->ops / res->seconds : 0;
	all = total ? malloc(total * sizeof(*all)) : NULL;
	if (all) {
		for (int i = 0; i < n; i++) {
			memcpy(all + k, w[i].lat_us, w[i].n_lat * sizeof(*all));
			k += w[i].n_lat;
		}
		res->p50_us = bench_percentile(all, total, 50);
		res->p99_us = bench_percentile(all, total, 99);
		for (size_t i = 0; i < total; i++)
			if (all[i] > res->max_us)
				res->max_us = all[i];
		free(all);
	}
}

/* Runs n threads of fn against r for about seconds; returns false on a functional failure. */
static bool run_threads(struct run *r, int n, void *(*fn)(void *), double seconds,
			struct run_result *res)
{
	struct worker *w = calloc((size_t)n, sizeof(*w));
	struct store_stats before, after;
	uint64_t start;
	int started = 0;
	bool ok = true;

	memset(res, 0, sizeof(*res));
	if (!w) {
		bench_fail("out of memory");
		return false;
	}
	r->go = false;
	atomic_store(&r->stop, false);
	atomic_store(&r->exhausted, false);
	for (; started < n; started++) {
		w[started].run = r;
		if (pthread_create(&w[started].thread, NULL, fn, &w[started]) != 0) {
			bench_fail("pthread_create failed");
			atomic_store(&r->stop, true);
			ok = false;
			break;
		}
	}
	store_stats(r->store, &before);
	start = bench_now_ns();
	run_gate_open(r);
	if (ok)
		run_sleep(r, start, seconds);
	atomic_store(&r->stop, true);
	for (int i = 0; i < started; i++)
		pthread_join(w[i].thread, NULL);
	res->seconds = bench_since_s(start);
	store_stats(r->store, &after);
	res->fsyncs = after.journal.fsyncs - before.journal.fsyncs;
	if (res->fsyncs)
		res->fsync_us = (double)(after.journal.fsync_ns - before.journal.fsync_ns) / 1e3 /
				(double)res->fsyncs;
	res->exhausted = atomic_load(&r->exhausted);
	run_summarize(w, started, res);
	for (int i = 0; i < started; i++)
		free(w[i].lat_us);
	free(w);
	return ok && atomic_load(&r->errors) == 0;
}

/* Prints a run's rate with its latency and group-commit size. */
static void run_print(const char *label, const struct run_result *res)
{
	char note[160];

	snprintf(note, sizeof(note), "p50 %.0f us, p99 %.0f us, %.1f ops/fsync of %.0f us%s",
		 res->p50_us, res->p99_us,
		 res->fsyncs ? (double)res->ops / (double)res->fsyncs : 0.0, res->fsync_us,
		 res->exhausted ? ", pool ran dry early" : "");
	bench_row(label, res->rate, 0, "ops/s", note);
}

/* Creates a mailbox and waits until it is durable. */
static bool mailbox_make(struct store *s, const char *name, uint32_t *id_r)
{
	uint64_t lsn;

	return !failed(store_mailbox_create(s, name, id_r, &lsn), "store_mailbox_create") &&
	       !failed(store_wait(s, lsn), "store_wait");
}

/* Defines keyword name in mailbox id and returns its flag bit in *bit_r. */
static bool keyword_make(struct store *s, uint32_t id, const char *name, uint64_t *bit_r)
{
	unsigned k;
	uint64_t lsn = 0;

	if (failed(store_keyword(s, id, name, true, &k, &lsn), "store_keyword") ||
	    (lsn && failed(store_wait(s, lsn), "store_wait")))
		return false;
	*bit_r = STORE_KEYWORD(k);
	return true;
}

/* Appends n messages of body to mailbox id without waiting on each, then waits once for the
 * last; *first_r and *last_r receive the first and last UID assigned. */
static bool append_many(struct store *s, uint32_t id, uint32_t n, const struct journal_body *body,
			uint32_t *first_r, uint32_t *last_r)
{
	uint64_t modseq, lsn = 0;
	int64_t now = time(NULL);
	uint32_t uid = 0;

	for (uint32_t i = 0; i < n; i++) {
		if (failed(store_append(s, id, 0, now, body, &uid, &modseq, &lsn), "store_append"))
			return false;
		if (i == 0 && first_r)
			*first_r = uid;
	}
	if (last_r)
		*last_r = uid;
	return !failed(store_wait(s, lsn), "store_wait");
}

/* Measures figures 2 to 4 in a store opened with fsync always. */
/* 64 committers the way imapqd has them: one event-loop thread keeps 64 appends in flight and
 * issues a new one for each that became durable, so no thread sleeps per commit. Returns ops/s,
 * or a negative value on failure. */
static double pipelined_appends(struct store *store, uint32_t mailbox,
				const struct journal_body *body, int inflight, double seconds)
{
	uint64_t lsn[MANY_THREADS];
	uint64_t done = 0, start = bench_now_ns();
	uint64_t until = start + (uint64_t)(seconds * 1e9);
	uint32_t uid;
	uint64_t modseq;

	for (int i = 0; i < inflight; i++) {
		if (failed(store_append(store, mailbox, 0, 0, body, &uid, &modseq, &lsn[i]),
			   "store_append"))
			return -1;
	}
	while (bench_now_ns() < until) {
		uint64_t oldest = UINT64_MAX;
		for (int i = 0; i < inflight; i++)
			if (lsn[i] < oldest)
				oldest = lsn[i];
		if (failed(store_wait(store, oldest), "store_wait"))
			return -1;
		uint64_t durable = store_durable_lsn(store);
		for (int i = 0; i < inflight; i++) {
			if (lsn[i] > durable)
				continue;
			done++;
			if (failed(store_append(store, mailbox, 0, 0, body, &uid, &modseq, &lsn[i]),
				   "store_append"))
				return -1;
		}
	}
	return (double)done / ((double)(bench_now_ns() - start) / 1e9);
}

/* Readies r for runs of committers on the store of dir, opened with fsync always. */
static bool run_open(struct run *r, const char *dir)
{
	struct store_options opts = {.dir = dir, .fsync = JOURNAL_FSYNC_ALWAYS};
	struct store_report rep;
	*r = (struct run){.body = make_body(RUN_BODY)};
	pthread_mutex_init(&r->gate_lock, NULL);
	pthread_cond_init(&r->gate, NULL);
	return !failed(store_open(&opts, &rep, &r->store), "store_open");
}

/* Closes the store of r (when it opened) and what run_open set up. */
static void run_close(struct run *r)
{
	if (r->store)
		store_close(&r->store);
	pthread_cond_destroy(&r->gate);
	pthread_mutex_destroy(&r->gate_lock);
}

static bool bench_durable(const char *dir, double disk_rate)
{
	struct run_result a1, a64, c1, c64;
	struct run r;
	uint32_t first = 0, last = 0, pool;
	bool ok = false;

	if (!run_open(&r, dir))
		goto out;

	bench_section("2. Durable appends (256 B body, store_append + store_wait, fsync always)");
	if (!mailbox_make(r.store, "bench/append", &r.mailbox) ||
	    !run_threads(&r, 1, append_worker, RUN_SECONDS, &a1))
		goto out;
	run_print("1 committer", &a1);
	if (!run_threads(&r, MANY_THREADS, append_worker, RUN_SECONDS, &a64))
		goto out;
	run_print("64 committers, a thread each", &a64);
	double loop64 = pipelined_appends(r.store, r.mailbox, &r.body, MANY_THREADS, RUN_SECONDS);
	if (loop64 < 0)
		goto out;
	bench_row("64 committers on one event-loop thread", loop64, 0, "ops/s",
		  "as imapqd's sessions commit");
	figure_add("store.append_c1", a1.rate, 0, "ops/s");
	figure_add("store.append_c64", loop64, 0, "ops/s");
	figure_add("store.append_c64_threads", a64.rate, 0, "ops/s");

	bench_section("3. Durable conditional stores (+$Claimed UNCHANGEDSINCE, store_wait)");
	/* Preload enough for both runs at the measured append rates, with margin. */
	pool = (uint32_t)((a1.rate + a64.rate) * RUN_SECONDS * 2.5);
	if (pool < CLAIM_POOL_MIN)
		pool = CLAIM_POOL_MIN;
	if (pool > CLAIM_POOL_MAX)
		pool = CLAIM_POOL_MAX;
	if (!mailbox_make(r.store, "bench/claim", &r.mailbox) ||
	    !keyword_make(r.store, r.mailbox, "$Claimed", &r.claimed) ||
	    !append_many(r.store, r.mailbox, pool, &r.body, &first, &last))
		goto out;
	atomic_store(&r.next_uid, first);
	r.last_uid = last;
	if (!run_threads(&r, 1, claim_worker, RUN_SECONDS, &c1))
		goto out;
	run_print("1 committer", &c1);
	if (!run_threads(&r, MANY_THREADS, claim_worker, RUN_SECONDS, &c64))
		goto out;
	run_print("64 committers", &c64);
	figure_add("store.cond_store_c1", c1.rate, 0, "ops/s");
	figure_add("store.cond_store_c64", c64.rate, 0, "ops/s");

	bench_section("4. Group commit");
	bench_row("append_c64 / raw fdatasync/s", loop64 / disk_rate, 2, "x", "target >= 10");
	bench_row("append_c64_threads / raw fdatasync/s", a64.rate / disk_rate, 2, "x",
		  "a sleeping thread per commit");
	figure_add("store.group_commit_ratio_c64", loop64 / disk_rate, 2, "x");
	figure_add("store.group_commit_ratio_c64_threads", a64.rate / disk_rate, 2, "x");
	ok = true;
out:
	run_close(&r);
	return ok;
}

/* --- 5, 6 and 7. A million messages: RAM, recovery, ready lookup --- */

/* Flushes one file of the data folder to disk and, with evict, drops it from the page cache. */
static void file_settle(const char *path, bool evict)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	fdatasync(fd);
	if (evict)
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	close(fd);
}

/* nftw() visitor that flushes every file, keeping it cached. */
static int sync_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (type == FTW_F)
		file_settle(path, false);
	return 0;
}

/* nftw() visitor that flushes every file and evicts it from the page cache. */
static int evict_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (type == FTW_F)
		file_settle(path, true);
	return 0;
}

/* Opens the store in opts->dir and times it, with the journal's own replay time in
 * *replay_r; checks that every message came back. */
static bool timed_open(const struct store_options *opts, uint64_t expect, struct store **s_r,
		       double *seconds_r, double *replay_r)
{
	struct store_report rep;
	uint64_t start = bench_now_ns();

	if (failed(store_open(opts, &rep, s_r), "store_open"))
		return false;
	*seconds_r = bench_since_s(start);
	*replay_r = (double)rep.journal.elapsed_ns / 1e9;
	if (rep.messages != expect || rep.journal.damaged != 0) {
		bench_fail(
		    "recovery found %llu messages and %u damaged regions, expected %llu and 0",
		    (unsigned long long)rep.messages, rep.journal.damaged,
		    (unsigned long long)expect);
		return false;
	}
	return true;
}

/* Mailbox ids and the ready mask of each for figure 7. */
struct lookup_setup {
	uint32_t a, b;
	uint64_t mask_a, mask_b;
};

/* Times LOOKUP_CALLS ready lookups in mailbox id, checking each answer; returns ns per call,
 * or -1 on a failure. */
static double lookup_run(struct store *s, uint32_t id, uint64_t mask, uint32_t expect)
{
	uint64_t start = bench_now_ns();
	uint32_t uid;

	for (uint32_t i = 0; i < LOOKUP_CALLS; i++) {
		if (failed(store_first_match(s, id, mask, 0, 1, &uid), "store_first_match"))
			return -1;
		if (uid != expect) {
			bench_fail("lowest ready UID is %u, expected %u", uid, expect);
			return -1;
		}
	}
	return (double)(bench_now_ns() - start) / LOOKUP_CALLS;
}

/* Builds mailbox A, claims the lowest CLAIMED_PREFIX messages of B and times both lookups. */
static bool bench_lookup(struct store *s, uint32_t b, const struct journal_body *body)
{
	struct lookup_setup l = {.b = b};
	struct uid_range prefix = {1, CLAIMED_PREFIX};
	double ns_a[LOOKUP_ROUNDS], ns_b[LOOKUP_ROUNDS], med_a, med_b;
	uint64_t claimed_a, delayed_a, claimed_b, delayed_b, lsn;
	struct store_stats st;
	uint32_t uid;
	unsigned k;

	bench_section("7. Lowest ready UID (store_first_match, mask \\Deleted $Claimed $Delayed)");
	if (!mailbox_make(s, "queue/small", &l.a) ||
	    !keyword_make(s, l.a, "$Claimed", &claimed_a) ||
	    !keyword_make(s, l.a, "$Delayed", &delayed_a) ||
	    !append_many(s, l.a, SMALL_MAILBOX, body, NULL, NULL))
		return false;
	if (failed(store_keyword(s, b, "$Claimed", false, &k, &lsn), "store_keyword"))
		return false;
	claimed_b = STORE_KEYWORD(k);
	if (failed(store_keyword(s, b, "$Delayed", false, &k, &lsn), "store_keyword"))
		return false;
	delayed_b = STORE_KEYWORD(k);
	l.mask_a = STORE_DELETED | claimed_a | delayed_a;
	l.mask_b = STORE_DELETED | claimed_b | delayed_b;
	if (failed(
		store_flags(s, b, &prefix, 1, STORE_FLAGS_ADD, claimed_b, NULL, NULL, NULL, &lsn),
		"store_flags") ||
	    failed(store_wait(s, lsn), "store_wait"))
		return false;
	/* The first call per mailbox builds the index; keep it out of the timings. */
	if (failed(store_first_match(s, l.a, l.mask_a, 0, 1, &uid), "store_first_match") ||
	    failed(store_first_match(s, l.b, l.mask_b, 0, 1, &uid), "store_first_match"))
		return false;
	for (int i = 0; i < LOOKUP_ROUNDS; i++) {
		/* Alternate the order so neither mailbox always runs with a warmer cache. */
		if (i % 2 == 0) {
			ns_a[i] = lookup_run(s, l.a, l.mask_a, 1);
			ns_b[i] =
			    ns_a[i] < 0 ? -1 : lookup_run(s, l.b, l.mask_b, CLAIMED_PREFIX + 1);
		} else {
			ns_b[i] = lookup_run(s, l.b, l.mask_b, CLAIMED_PREFIX + 1);
			ns_a[i] = ns_b[i] < 0 ? -1 : lookup_run(s, l.a, l.mask_a, 1);
		}
		if (ns_a[i] < 0 || ns_b[i] < 0)
			return false;
	}
	med_a = bench_median(ns_a, LOOKUP_ROUNDS);
	med_b = bench_median(ns_b, LOOKUP_ROUNDS);
	bench_row("A: 1,000 messages, none claimed", med_a, 1, "ns",
		  "median of 5 runs x 1e6 calls");
	bench_row("B: 1,000,000 messages, lowest 10,000 claimed", med_b, 1, "ns",
		  "median of 5 runs x 1e6 calls");
	bench_row("B / A", med_b / med_a, 2, "x", "target <= 1.2");
	store_stats(s, &st);
	bench_row("store RAM with both ready indexes built", (double)st.memory_bytes / 1048576.0, 1,
		  "MiB", "");
	figure_add("store.ready_lookup_ratio_1m_1k", med_b / med_a, 2, "x");
	return true;
}

/* Measures figures 5 to 7 in a store opened with fsync off. */
static bool bench_million(const char *dir)
{
	struct store_options opts = {.dir = dir, .fsync = JOURNAL_FSYNC_OFF};
	struct journal_body body = make_body(SMALL_BODY);
	struct store_stats st0, st1;
	struct mallinfo2 mi0, mi1;
	struct store_report rep;
	struct store *s = NULL;
	double per_store, per_malloc, warm, cold, replay, build;
	char note[96];
	uint64_t bit, start;
	size_t heap0, heap1;
	uint32_t b;
	bool ok = false;

	bench_section("5. RAM per message (1,000,000 appends of 100 B bodies, fsync off)");
	if (failed(store_open(&opts, &rep, &s), "store_open") ||
	    !mailbox_make(s, "queue/big", &b) || !keyword_make(s, b, "$Claimed", &bit) ||
	    !keyword_make(s, b, "$Delayed", &bit))
		goto out;
	store_stats(s, &st0);
	mi0 = mallinfo2();
	start = bench_now_ns();
	if (!append_many(s, b, MILLION, &body, NULL, NULL))
		goto out;
	build = bench_since_s(start);
	store_stats(s, &st1);
	mi1 = mallinfo2();
	per_store = (double)(st1.memory_bytes - st0.memory_bytes) / MILLION;
	/* uordblks misses blocks the allocator mmap()s on its own (large arrays): add hblkhd. */
	heap0 = mi0.uordblks + mi0.hblkhd;
	heap1 = mi1.uordblks + mi1.hblkhd;
	per_malloc = heap1 > heap0 ? (double)(heap1 - heap0) / MILLION : 0;
	bench_row("append rate while building (fsync off)", MILLION / build, 0, "ops/s", "");
	bench_row("store_stats memory_bytes delta / message", per_store, 1, "bytes", "");
	bench_row("mallinfo2 uordblks+hblkhd delta / message", per_malloc, 1, "bytes",
		  per_malloc > 0 ? "" : "allocator gives no figure (sanitizer build?)");
	figure_add("store.ram_per_message", per_store > per_malloc ? per_store : per_malloc, 1,
		   "bytes");

	bench_section("6. Recovery of a 1,000,000-message journal (store_open after close)");
	store_close(&s);
	/* The journal was written with fsync off: flush it first, so that the timed open measures
	 * recovery and not the kernel writing back dirty pages. */
	nftw(dir, sync_entry, 16, FTW_PHYS);
	if (!timed_open(&opts, MILLION, &s, &warm, &replay))
		goto out;
	snprintf(note, sizeof(note), "target < 1; journal replay %.3f s of it", replay);
	bench_row("first store_open after the build, cache warm", warm, 3, "s", note);
	store_close(&s);
	nftw(dir, evict_entry, 16, FTW_PHYS);
	if (!timed_open(&opts, MILLION, &s, &cold, &replay))
		goto out;
	snprintf(note, sizeof(note), "journal replay %.3f s of it", replay);
	bench_row("second store_open, journal evicted from cache", cold, 3, "s", note);
	figure_add("store.recovery_1m", warm, 3, "s");
	figure_add("store.recovery_1m_cold", cold, 3, "s");

	ok = bench_lookup(s, b, &body);
out:
	if (s)
		store_close(&s);
	return ok;
}

/* --- 8. Durable appends while compaction carries a backlog --- */

/* Frees the oldest segment again and again (each pass carries the backlog's messages in it)
 * until stop is set. */
struct compactor {
	struct store *store;
	pthread_t thread;
	atomic_bool stop;
	unsigned passes;
	bool failed;
};

static void *compact_worker(void *arg)
{
	struct compactor *c = arg;
	while (!atomic_load(&c->stop) && !c->failed) {
		c->failed = failed(store_compact(c->store, true), "store_compact");
		c->passes++;
	}
	return NULL;
}

/* Prints a run of section 8 with its worst wait. */
static void run_print_max(const char *label, const struct run_result *res)
{
	char note[160];

	snprintf(note, sizeof(note), "p50 %.0f us, p99 %.0f us, max %.1f ms", res->p50_us,
		 res->p99_us, res->max_us / 1e3);
	bench_row(label, res->rate, 0, "ops/s", note);
}

/* Runs the committers of r beside a thread that keeps compacting, prints the run as label with
 * what compaction carried meanwhile, and gives the run in *res. */
static bool run_beside_compaction(struct run *r, const char *label, struct run_result *res)
{
	struct compactor c = {.store = r->store};
	struct store_stats st0, st1;
	char note[160];

	store_stats(r->store, &st0);
	if (pthread_create(&c.thread, NULL, compact_worker, &c) != 0) {
		bench_fail("pthread_create failed");
		return false;
	}
	bool ok = run_threads(r, MANY_THREADS, append_worker, RUN_SECONDS, res);
	atomic_store(&c.stop, true);
	pthread_join(c.thread, NULL);
	store_stats(r->store, &st1);
	if (!ok || c.failed)
		return false;
	run_print_max(label, res);
	snprintf(note, sizeof(note), "%u segments freed, %.0f MB/s of bodies carried", c.passes,
		 (double)(st1.carried_bytes - st0.carried_bytes) / 1e6 / res->seconds);
	bench_row("carried by compaction meanwhile", (double)(st1.carried - st0.carried), 0,
		  "messages", note);
	return true;
}

/* 64 durable committers on the million-message store of dir: alone, beside a thread that keeps
 * compacting, and the same once the journal is evicted from the page cache, so that compaction
 * reads its bodies from the disk. The worst wait shows how long compaction holds the store. */
static bool bench_compaction(const char *dir)
{
	struct run r;
	struct run_result alone, beside, cold;
	bool ok = false;

	bench_section("8. Durable appends while compaction carries 1,000,000 messages "
		      "(64 committer threads)");
	if (!run_open(&r, dir) || !mailbox_make(r.store, "bench/beside", &r.mailbox) ||
	    !run_threads(&r, MANY_THREADS, append_worker, RUN_SECONDS, &alone))
		goto out;
	run_print_max("no compaction", &alone);
	if (!run_beside_compaction(&r, "while compaction runs", &beside))
		goto out;
	nftw(dir, evict_entry, 16, FTW_PHYS);
	if (!run_beside_compaction(&r, "while compaction runs, journal evicted first", &cold))
		goto out;
	figure_add("store.append_c64_compacting", beside.rate, 0, "ops/s");
	figure_add("store.append_c64_compacting_max_ms", beside.max_us / 1e3, 1, "ms");
	figure_add("store.append_c64_compacting_cold_max_ms", cold.max_us / 1e3, 1, "ms");
	ok = true;
out:
	run_close(&r);
	return ok;
}

/* Creates the folder root/name for one store and copies its path into buf. */
static bool store_dir_make(const char *root, const char *name, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s/%s", root, name);
	if (mkdir(buf, 0700) == 0)
		return true;
	bench_fail("mkdir %s: %s", buf, strerror(errno));
	return false;
}

int main(void)
{
	char root[1024], sub[1100];
	double disk;
	bool ok = false;

	log_set_level(LOG_WARN);
	if (bench_dir_create(root, sizeof(root)) != 0) {
		bench_fail("cannot create a scratch folder: %s", strerror(errno));
		return 1;
	}
	printf("imapq store benchmark (data in %s)\n", root);
	disk = bench_disk(root);
	if (disk <= 0)
		goto out;
	if (!store_dir_make(root, "durable", sub, sizeof(sub)) || !bench_durable(sub, disk))
		goto out;
	if (!store_dir_make(root, "million", sub, sizeof(sub)) || !bench_million(sub) ||
	    !bench_compaction(sub))
		goto out;
	ok = true;
out:
	printf("\n");
	for (size_t i = 0; i < n_figures; i++)
		bench_figure(figures[i].name, figures[i].value, figures[i].decimals,
			     figures[i].unit);
	if (bench_dir_remove(root) != 0)
		fprintf(stderr, "bench: cannot remove %s: %s\n", root, strerror(errno));
	return ok ? 0 : 1;
}
