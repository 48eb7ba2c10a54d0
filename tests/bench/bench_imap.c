/* The IMAP claim benchmark: the full claim cycle of README.md "Workers over IMAP", driven by the
 * project's IMAP client library, against imapqd and against Dovecot, both durable. It starts
 * imapqd (--fsync always) and a throwaway Dovecot (sdbox, its default fsync) on loopback in
 * scratch folders; for 1, 8 and 64 workers (one thread and connection each) it preloads one
 * queue mailbox by APPEND, lets the workers claim (search, fetch FLAGS and MODSEQ, conditional
 * store of $Claimed), read and ack (conditional \Deleted, UID EXPUNGE) for a warm-up and a
 * measured window, and checks every job: on imapqd each must be claimed and acked at most once
 * and every one accounted for, or the run fails; on Dovecot double claims are counted as a
 * finding about the peer. It then measures one worker's claim latency with 1,000 and with
 * 1,000,000 ready jobs in imapqd. Prints a table and "bench:" lines (bench.h,
 * docs/benchmarks.md); exits non-zero only on a functional failure.
 *
 * Usage: bench_imap [--smoke]   (--smoke: 200 jobs and 1 s phases, the same checks)
 * Environment: IMAPQ_IMAPQD (default <build>/imapqd), IMAPQ_DOVECOT (default: dovecot on PATH),
 * IMAPQ_BENCH_IMAP_SECONDS (measured seconds per phase, 5), IMAPQ_BENCH_DIR (see bench.h). */
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include "bench.h"
#include "bench_imap_load.h"
#include "bench_imap_servers.h"
#include "imap/client/client.h"
#include "imap/client/jobs.h"
#include "imap/protocol/seqset.h"

/* Warm-up before each measured window, and the window (IMAPQ_BENCH_IMAP_SECONDS), seconds. */
#define WARM_S	  1.0
#define MEASURE_S 5.0
/* The smoke mode: short phases and a fixed small preload. */
#define SMOKE_WARM_S	0.05
#define SMOKE_MEASURE_S 1.0
#define SMOKE_JOBS	600
/* Every timed phase of both servers starts with the same number of ready jobs
 * (IMAPQ_BENCH_IMAP_DEPTH): the same workload for both. Depth matters to a server whose search
 * for the lowest ready UID reads the mailbox (Dovecot slows as the queue deepens; imapqd answers
 * from an index), so the figure names the depth and docs/benchmarks.md shows the effect. */
#define PHASE_DEPTH 20000
#define PRELOAD_MAX 1500000
/* Tries of a phase whose queue runs dry inside the window, each with PRELOAD_RETRY times the
 * jobs of the one before. */
#define ATTEMPTS      3
#define PRELOAD_RETRY 3
/* The latency phases: ready jobs in the queue, and cycles run before and while sampling. */
#define LAT_SMALL	  1000u
#define LAT_LARGE	  1000000u
#define LAT_SMOKE_LARGE	  10000u
#define LAT_WARM_CYCLES	  200u
#define LAT_SAMPLES	  2000u
#define LAT_SMOKE_WARM	  20u
#define LAT_SMOKE_SAMPLES 200u

/* Per-job bits of the exactly-once check, one byte per UID. */
#define JOB_APPENDED 1u
#define JOB_CLAIMED  2u
#define JOB_ACKED    4u

static const unsigned worker_counts[] = {1, 8, 64};
#define N_COUNTS (sizeof(worker_counts) / sizeof(worker_counts[0]))

/* One measured phase: a queue, its preloaded jobs and the workers draining it. */
struct phase {
	struct target *t;
	char queue[64];
	unsigned workers;
	uint64_t warm_cycles, cycles; /* a latency phase: cycles run by its single worker */
	uint32_t jobs;		      /* preloaded */
	_Atomic uint8_t *bits;	      /* JOB_* per UID, bits[0..cap) */
	uint32_t cap;
	uint64_t t0, warm_end, end; /* start, and the window of a timed phase */
	pthread_mutex_t lock;	    /* guards go and error */
	pthread_cond_t cond;
	bool go;
	atomic_bool stop; /* a failure: every worker ends */
	char error[512];
	/* Results, summed from the workers. */
	uint64_t claims, acks; /* completed inside the window (or sampled) */
	uint64_t all_claims, all_acks, conflicts, double_claims, double_acks, acks_lost;
	uint64_t bodies_missing;
	uint64_t stranded;	  /* left claimed because every ack of them was refused */
	uint64_t dry_ns;	  /* when a worker first found no ready job; 0: never */
	struct bench_samples lat; /* claim latency (search, fetch, store), ms */
	double client_cpu, server_cpu;
};

/* One worker thread with its own connection. */
struct worker {
	struct phase *ph;
	struct client *c;
	pthread_t thread;
	bool started;
	uint64_t claims, acks, all_claims, all_acks, conflicts, double_claims, double_acks;
	uint64_t acks_lost, bodies_missing, dry_ns;
	struct bench_samples lat;
};

/* Figures for the "bench:" lines: [0] imapqd and [1] Dovecot for the timed phases (by index into
 * worker_counts), [0] the small and [1] the large queue for the latency phases. */
struct results {
	double rate[2][N_COUNTS];
	uint64_t conflicts[2][N_COUNTS];
	bool have[2][N_COUNTS];
	uint64_t double_claims, stranded;
	double p50[2], p99[2];
	bool have_lat[2];
	char lat_name[2][8];
	bool have_dovecot;
};

static bool smoke;
static double warm_s = WARM_S, measure_s = MEASURE_S;
static uint32_t phase_depth = PHASE_DEPTH;

/* --- Failures inside a phase --- */

/* Records the phase's first failure and stops every worker. */
__attribute__((format(printf, 2, 3))) static void phase_fail(struct phase *ph, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&ph->lock);
	if (ph->error[0] == '\0') {
		va_start(ap, fmt);
		vsnprintf(ph->error, sizeof(ph->error), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&ph->lock);
	atomic_store(&ph->stop, true);
}

/* --- Workers --- */

/* Marks bit for uid; a UID that was not preloaded fails the phase, and a bit set twice fails an
 * exact target's phase and is counted on the other. */
static bool job_mark(struct worker *w, uint32_t uid, unsigned bit)
{
	struct phase *ph = w->ph;
	uint8_t old;

	if (uid == 0 || uid >= ph->cap || !(atomic_load(&ph->bits[uid]) & JOB_APPENDED)) {
		phase_fail(ph, "%s: worker got UID %u, which was not preloaded", ph->queue, uid);
		return false;
	}
	old = atomic_fetch_or(&ph->bits[uid], (uint8_t)bit);
	if (!(old & bit))
		return true;
	if (ph->t->exact) {
		phase_fail(ph, "%s: job %u was %s twice", ph->queue, uid,
			   bit == JOB_CLAIMED ? "claimed" : "acked");
		return false;
	}
	if (bit == JOB_CLAIMED)
		w->double_claims++;
	else
		w->double_acks++;
	return true;
}

/* Looks for the body of the UID in an untagged FETCH. */
struct body_seen {
	uint32_t uid;
	bool found;
};

static void body_collect(const struct client_response *r, void *ctx)
{
	struct body_seen *s = ctx;

	if (r->type == CLIENT_RESP_FETCH && r->fetch.uid == s->uid) {
		for (size_t i = 0; i < r->fetch.section_count; i++)
			s->found |= r->fetch.sections[i].data && r->fetch.sections[i].len > 0;
	}
}

/* Whether time t counts: inside the window of a timed phase, or past the warm-up cycles of a
 * latency phase (done cycles completed before this one). */
static bool counts(const struct phase *ph, uint64_t t, uint64_t done)
{
	if (ph->cycles)
		return done >= ph->warm_cycles;
	return t >= ph->warm_end && t < ph->end;
}

/* One claim cycle: claim, read the body, ack. False when the worker should stop. */
static bool worker_cycle(struct worker *w, uint64_t done)
{
	struct phase *ph = w->ph;
	struct client_job job;
	struct body_seen seen = {0};
	uint64_t t0 = bench_now_ns(), t1, t2;
	imapq_err err = client_job_claim(w->c, NULL, &job);

	t1 = bench_now_ns();
	if (err == IMAPQ_E_NOTFOUND) {
		w->dry_ns = t1;
		return false;
	}
	if (err != IMAPQ_OK) {
		phase_fail(ph, "%s: claim: %s", ph->queue, client_error(w->c));
		return false;
	}
	w->all_claims++;
	w->conflicts += job.lost;
	if (counts(ph, t1, done)) {
		w->claims++;
		if (bench_samples_add(&w->lat, (double)(t1 - t0) / 1e6)) {
			phase_fail(ph, "out of memory for latency samples");
			return false;
		}
	}
	if (!job_mark(w, job.uid, JOB_CLAIMED))
		return false;
	seen.uid = job.uid;
	err = client_cmdf(w->c, body_collect, &seen, "UID FETCH %u (BODY.PEEK[TEXT])", job.uid);
	if (err != IMAPQ_OK) {
		phase_fail(ph, "%s: fetch of job %u: %s", ph->queue, job.uid, client_error(w->c));
		return false;
	}
	if (!seen.found) {
		if (ph->t->exact) {
			phase_fail(ph, "%s: claimed job %u has no body", ph->queue, job.uid);
			return false;
		}
		w->bodies_missing++;
	}
	err = client_job_ack(w->c, job.uid, job.receipt);
	t2 = bench_now_ns();
	if (err == IMAPQ_OK) {
		w->all_acks++;
		w->acks += counts(ph, t2, done);
		return job_mark(w, job.uid, JOB_ACKED);
	}
	if ((err == IMAPQ_E_MODIFIED || err == IMAPQ_E_NOTFOUND) && !ph->t->exact) {
		w->acks_lost++;
		return true;
	}
	phase_fail(ph, "%s: ack of job %u (receipt %llu): %s", ph->queue, job.uid,
		   (unsigned long long)job.receipt, client_error(w->c));
	return false;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct phase *ph = w->ph;
	uint64_t done = 0;

	pthread_mutex_lock(&ph->lock);
	while (!ph->go)
		pthread_cond_wait(&ph->cond, &ph->lock);
	pthread_mutex_unlock(&ph->lock);
	while (!atomic_load(&ph->stop)) {
		if (ph->cycles ? done >= ph->warm_cycles + ph->cycles : bench_now_ns() >= ph->end)
			break;
		if (!worker_cycle(w, done))
			break;
		done++;
	}
	return NULL;
}

/* Adds a worker's counts to the phase. */
static void phase_collect(struct phase *ph, struct worker *w)
{
	ph->claims += w->claims;
	ph->acks += w->acks;
	ph->all_claims += w->all_claims;
	ph->all_acks += w->all_acks;
	ph->conflicts += w->conflicts;
	ph->double_claims += w->double_claims;
	ph->double_acks += w->double_acks;
	ph->acks_lost += w->acks_lost;
	ph->bodies_missing += w->bodies_missing;
	if (w->dry_ns && (!ph->dry_ns || w->dry_ns < ph->dry_ns))
		ph->dry_ns = w->dry_ns;
	for (size_t i = 0; i < w->lat.n; i++)
		bench_samples_add(&ph->lat, w->lat.v[i]);
	bench_samples_free(&w->lat);
}

/* Sleeps until monotonic time t (nanoseconds). */
static void sleep_until(uint64_t t)
{
	uint64_t now = bench_now_ns();

	if (t > now) {
		struct timespec ts = {.tv_sec = (time_t)((t - now) / 1000000000u),
				      .tv_nsec = (long)((t - now) % 1000000000u)};

		nanosleep(&ts, NULL);
	}
}

/* Connects the workers, runs them until the window ends (or the latency cycles are done) and
 * collects their counts. False on a failure, reported in ph->error. */
static bool phase_workers(struct phase *ph)
{
	struct worker *ws = calloc(ph->workers, sizeof(*ws));
	char err[256];

	if (!ws) {
		phase_fail(ph, "out of memory");
		return false;
	}
	for (unsigned i = 0; i < ph->workers && !atomic_load(&ph->stop); i++) {
		ws[i].ph = ph;
		ws[i].c = target_connect(ph->t, ph->queue, err, sizeof(err));
		if (!ws[i].c)
			phase_fail(ph, "%s: worker %u cannot connect: %s", ph->t->name, i, err);
		else if (pthread_create(&ws[i].thread, NULL, worker_main, &ws[i]) != 0)
			phase_fail(ph, "cannot start worker thread %u", i);
		else
			ws[i].started = true;
	}
	ph->t0 = bench_now_ns();
	ph->warm_end = ph->t0 + (uint64_t)(warm_s * 1e9);
	ph->end = ph->warm_end + (uint64_t)(measure_s * 1e9);
	pthread_mutex_lock(&ph->lock);
	ph->go = true;
	pthread_cond_broadcast(&ph->cond);
	pthread_mutex_unlock(&ph->lock);
	if (!ph->cycles) {
		sleep_until(ph->warm_end);
		ph->client_cpu = -bench_cpu_self();
		ph->server_cpu = -bench_cpu_tree(ph->t->pid);
		sleep_until(ph->end);
		ph->client_cpu += bench_cpu_self();
		ph->server_cpu += bench_cpu_tree(ph->t->pid);
	}
	for (unsigned i = 0; i < ph->workers; i++) {
		if (ws[i].started)
			pthread_join(ws[i].thread, NULL);
		phase_collect(ph, &ws[i]);
		client_destroy(&ws[i].c);
	}
	free(ws);
	return !atomic_load(&ph->stop);
}

/* --- Checks after a phase --- */

/* The answers of an ESEARCH (ALL and COUNT). */
struct search_seen {
	struct seqset *all;
	uint64_t count;
	bool oom;
};

static void search_collect(const struct client_response *r, void *ctx)
{
	struct search_seen *s = ctx;

	if (r->type != CLIENT_RESP_ESEARCH)
		return;
	if (r->esearch.have & CLIENT_ESEARCH_COUNT)
		s->count = r->esearch.count;
	for (size_t i = 0; (r->esearch.have & CLIENT_ESEARCH_ALL) && s->all &&
			   i < seqset_range_count(r->esearch.all);
	     i++) {
		const struct seqset_range *g = &seqset_ranges(r->esearch.all)[i];

		s->oom |= seqset_add(s->all, g->lo, g->hi) != IMAPQ_OK;
	}
}

/* After the workers: every preloaded job is either acked or still in the mailbox (never both),
 * no job remains claimed, and nothing else is there. A failure fails the run on both servers:
 * it means a job was lost or the accounting is wrong. The one exception is a server whose
 * conditional store is not exact: when two workers both won a claim, each ack can be refused
 * against the other's store, and the job stays claimed; such jobs (no more than the refused
 * acks) are counted as stranded, a finding about that server. */
static bool phase_check(struct phase *ph, struct client *ctl)
{
	struct search_seen left = {0}, claimed = {0};
	uint64_t lost = 0, both = 0, unacked = 0, stray = 0, acked = 0;
	imapq_err err = seqset_create(&left.all);

	if (err == IMAPQ_OK)
		err = client_select(ctl, ph->queue, CLIENT_SELECT_READ_ONLY, NULL);
	if (err == IMAPQ_OK)
		err = client_cmdf(ctl, search_collect, &left, "UID SEARCH RETURN (ALL) ALL");
	if (err == IMAPQ_OK)
		err = client_cmdf(ctl, search_collect, &claimed,
				  "UID SEARCH RETURN (COUNT) KEYWORD " CLIENT_JOB_CLAIMED);
	if (err == IMAPQ_OK)
		err = client_cmdf(ctl, NULL, NULL, "UNSELECT");
	if (err != IMAPQ_OK || left.oom) {
		phase_fail(ph, "%s: checking the queue failed: %s", ph->queue,
			   left.oom ? "out of memory" : client_error(ctl));
		seqset_destroy(&left.all);
		return false;
	}
	for (uint32_t uid = 1; uid < ph->cap; uid++) {
		uint8_t b = atomic_load(&ph->bits[uid]);
		bool there = seqset_contains(left.all, uid);

		if (!(b & JOB_APPENDED)) {
			stray += there;
			continue;
		}
		acked += !!(b & JOB_ACKED);
		lost += !(b & JOB_ACKED) && !there;
		both += (b & JOB_ACKED) && there;
		unacked += (b & JOB_CLAIMED) && !(b & JOB_ACKED);
	}
	for (size_t i = 0; i < seqset_range_count(left.all); i++) {
		const struct seqset_range *g = &seqset_ranges(left.all)[i];

		if (g->hi >= ph->cap)
			stray += (uint64_t)g->hi - (g->lo > ph->cap ? g->lo : ph->cap) + 1;
	}
	seqset_destroy(&left.all);
	if (!ph->t->exact && unacked <= ph->acks_lost && claimed.count == unacked) {
		ph->stranded = unacked;
		unacked = claimed.count = 0;
	}
	if (lost || both || unacked || stray || claimed.count) {
		phase_fail(ph,
			   "%s on %s: %llu jobs vanished without an ack, %llu acked but still "
			   "there, %llu claimed but never acked, %llu unknown messages, %llu still "
			   "carry " CLIENT_JOB_CLAIMED,
			   ph->queue, ph->t->name, (unsigned long long)lost,
			   (unsigned long long)both, (unsigned long long)unacked,
			   (unsigned long long)stray, (unsigned long long)claimed.count);
		return false;
	}
	if (acked != ph->all_acks) {
		phase_fail(ph, "%s: %llu jobs acked, but the workers counted %llu acks", ph->queue,
			   (unsigned long long)acked, (unsigned long long)ph->all_acks);
		return false;
	}
	return true;
}

/* --- Phases --- */

/* Preloads the phase's queue, runs its workers and checks the queue, then deletes it. The HTTP
 * load is used when by_http (imapqd only). False on a failure, reported in ph->error. */
static bool phase_run(struct phase *ph, struct client *ctl, bool by_http)
{
	struct load l = {.lock = PTHREAD_MUTEX_INITIALIZER};
	uint64_t t0 = bench_now_ns();
	bool ok;

	if (seqset_create(&l.uids) != IMAPQ_OK) {
		phase_fail(ph, "out of memory");
		return false;
	}
	if (by_http) {
		ok = preload_http(ph->t, ph->queue, ph->jobs, &l);
	} else {
		imapq_err err = client_cmdf(ctl, NULL, NULL, "CREATE %s", ph->queue);

		ok = err == IMAPQ_OK || err == IMAPQ_E_EXISTS;
		if (!ok)
			snprintf(l.why, sizeof(l.why), "CREATE %s: %s", ph->queue,
				 client_error(ctl));
		ok = ok && preload_imap(ctl, ph->queue, ph->jobs, &l);
	}
	if (ok && seqset_size(l.uids) != ph->jobs)
		snprintf(l.why, sizeof(l.why), "%llu UIDs for %u jobs",
			 (unsigned long long)seqset_size(l.uids), ph->jobs);
	if (!ok || seqset_size(l.uids) != ph->jobs) {
		phase_fail(ph, "preloading %s on %s: %s", ph->queue, ph->t->name, l.why);
		seqset_destroy(&l.uids);
		return false;
	}
	bench_row("  preloaded", ph->jobs / bench_since_s(t0), 0, "jobs/s", l.how);
	ph->cap = seqset_ranges(l.uids)[seqset_range_count(l.uids) - 1].hi + 1;
	ph->bits = calloc(ph->cap, 1);
	for (size_t i = 0; ph->bits && i < seqset_range_count(l.uids); i++)
		for (uint32_t u = seqset_ranges(l.uids)[i].lo; u <= seqset_ranges(l.uids)[i].hi;
		     u++)
			ph->bits[u] = JOB_APPENDED;
	seqset_destroy(&l.uids);
	if (!ph->bits) {
		phase_fail(ph, "out of memory");
		return false;
	}
	ok = phase_workers(ph) && phase_check(ph, ctl);
	if (ok && client_cmdf(ctl, NULL, NULL, "DELETE %s", ph->queue) != IMAPQ_OK) {
		phase_fail(ph, "DELETE %s: %s", ph->queue, client_error(ctl));
		ok = false;
	}
	return ok;
}

/* Frees what a phase holds. */
static void phase_free(struct phase *ph)
{
	free((void *)ph->bits);
	bench_samples_free(&ph->lat);
	pthread_mutex_destroy(&ph->lock);
	pthread_cond_destroy(&ph->cond);
}

/* Sets up an empty phase of target t. */
static void phase_init(struct phase *ph, struct target *t, unsigned workers)
{
	*ph = (struct phase){.t = t, .workers = workers};
	pthread_mutex_init(&ph->lock, NULL);
	pthread_cond_init(&ph->cond, NULL);
}

/* Prints a timed phase's rows. */
static void phase_print(const struct phase *ph)
{
	char title[96], note[160];
	double rate = (double)ph->claims / measure_s;

	snprintf(title, sizeof(title), "%s, %u worker%s", ph->t->name, ph->workers,
		 ph->workers == 1 ? "" : "s");
	snprintf(note, sizeof(note), "%llu claims, %llu acks in %.1f s; %llu of %u jobs acked",
		 (unsigned long long)ph->claims, (unsigned long long)ph->acks, measure_s,
		 (unsigned long long)ph->all_acks, ph->jobs);
	bench_row(title, rate, 0, "claims/s", note);
	bench_row("  acks", (double)ph->acks / measure_s, 0, "acks/s", NULL);
	bench_row("  conflicts (lost claim rounds)", (double)ph->conflicts, 0, "",
		  "stale searches, [MODIFIED], echoes with FLAGS");
	bench_row("  claim latency p50", bench_percentile(ph->lat.v, ph->lat.n, 50), 2, "ms",
		  "search + fetch + store");
	bench_row("  claim latency p99", bench_percentile(ph->lat.v, ph->lat.n, 99), 2, "ms", NULL);
	bench_row("  client CPU", 100 * ph->client_cpu / measure_s, 0, "%", "of one core");
	bench_row("  server CPU", 100 * ph->server_cpu / measure_s, 0, "%",
		  ph->t->exact ? "of one core" : "of one core, master and its children");
	if (ph->dry_ns && ph->dry_ns < ph->end)
		bench_row("  queue ran dry after", (double)(ph->dry_ns - ph->t0) / 1e9, 2, "s",
			  smoke ? "expected with --smoke" : "the rate is a lower bound");
	if (ph->double_claims)
		bench_row("  double claims (both workers won)", (double)ph->double_claims, 0, "",
			  "a finding about the server");
	if (ph->double_acks)
		bench_row("  double acks", (double)ph->double_acks, 0, "",
			  "a finding about the server");
	if (ph->acks_lost)
		bench_row("  acks refused after a won claim", (double)ph->acks_lost, 0, "", NULL);
	if (ph->bodies_missing)
		bench_row("  claimed jobs without a body", (double)ph->bodies_missing, 0, "", NULL);
	if (ph->stranded)
		bench_row("  jobs left claimed (every ack refused)", (double)ph->stranded, 0, "",
			  "a finding about the server");
}

/* The jobs a timed phase preloads. */
static uint32_t preload_size(void)
{
	return smoke ? SMOKE_JOBS : phase_depth;
}

/* Runs the timed phases of 1, 8 and 64 workers against a started target. */
static bool target_phases(struct target *t, int which, struct results *res)
{
	char err[256];
	struct client *ctl = target_connect(t, NULL, err, sizeof(err));
	bool ok = ctl != NULL;
	if (!ctl)
		bench_fail("%s: cannot connect: %s", t->name, err);
	for (size_t k = 0; k < N_COUNTS && ok; k++) {
		uint32_t jobs = preload_size();

		for (unsigned attempt = 1; attempt <= ATTEMPTS && ok; attempt++) {
			struct phase ph;
			bool dry;

			phase_init(&ph, t, worker_counts[k]);
			ph.jobs = jobs;
			snprintf(ph.queue, sizeof(ph.queue), "bench-w%u-%u", ph.workers, attempt);
			ok = phase_run(&ph, ctl, false);
			if (!ok) {
				bench_fail("%s", ph.error);
				phase_free(&ph);
				break;
			}
			phase_print(&ph);
			dry = ph.dry_ns && ph.dry_ns < ph.end;
			res->rate[which][k] = ph.claims / measure_s;
			res->conflicts[which][k] = ph.conflicts;
			res->have[which][k] = true;
			res->double_claims += ph.double_claims;
			res->stranded += ph.stranded;
			phase_free(&ph);
			if (!dry || smoke || jobs >= PRELOAD_MAX)
				break;
			jobs =
			    jobs > PRELOAD_MAX / PRELOAD_RETRY ? PRELOAD_MAX : jobs * PRELOAD_RETRY;
			if (attempt < ATTEMPTS)
				printf("  the queue ran dry: again with %u jobs\n", jobs);
		}
	}
	if (ctl)
		client_logout(ctl);
	client_destroy(&ctl);
	return ok;
}

/* One worker's claim latency with depth ready jobs in imapqd (loaded by HTTP batches). */
static bool latency_phase(struct target *t, uint32_t depth, int which, struct results *res)
{
	struct phase ph;
	char err[256], title[96];
	struct client *ctl = target_connect(t, NULL, err, sizeof(err));
	bool ok = ctl != NULL;

	phase_init(&ph, t, 1);
	ph.warm_cycles = smoke ? LAT_SMOKE_WARM : LAT_WARM_CYCLES;
	ph.cycles = smoke ? LAT_SMOKE_SAMPLES : LAT_SAMPLES;
	ph.jobs = depth + (uint32_t)(ph.warm_cycles + ph.cycles);
	if (depth >= 1000000)
		snprintf(res->lat_name[which], sizeof(res->lat_name[which]), "%um",
			 depth / 1000000);
	else
		snprintf(res->lat_name[which], sizeof(res->lat_name[which]), "%uk", depth / 1000);
	snprintf(ph.queue, sizeof(ph.queue), "bench-latency-%s", res->lat_name[which]);
	snprintf(title, sizeof(title), "claim latency, 1 worker, %u to %u ready jobs", depth,
		 ph.jobs);
	bench_section(title);
	if (!ctl)
		bench_fail("%s: cannot connect: %s", t->name, err);
	if (ok && !phase_run(&ph, ctl, true)) {
		bench_fail("%s", ph.error);
		ok = false;
	}
	if (ok) {
		res->p50[which] = bench_percentile(ph.lat.v, ph.lat.n, 50);
		res->p99[which] = bench_percentile(ph.lat.v, ph.lat.n, 99);
		res->have_lat[which] = true;
		bench_row("  claim latency p50", res->p50[which], 3, "ms",
			  "search + fetch + store");
		bench_row("  claim latency p99", res->p99[which], 3, "ms", NULL);
		bench_row("  conflicts", (double)ph.conflicts, 0, "", NULL);
	}
	phase_free(&ph);
	client_destroy(&ctl);
	return ok;
}

/* Stops the target's server; removes its folder after a good run (ok), keeps it otherwise.
 * Returns ok, false too when the server did not stop cleanly. */
static bool target_finish(struct target *t, bool ok)
{
	if (t->pid > 0)
		ok = target_stop(t) && ok;
	if (ok)
		bench_dir_remove(t->dir);
	else
		fprintf(stderr, "bench_imap: kept %s for inspection\n", t->dir);
	return ok;
}

/* imapqd: the timed phases and the two latency phases. */
static bool bench_imapqd(struct results *res)
{
	struct target t = {.name = "imapqd", .exact = true, .pid = -1};
	char bin[PATH_MAX] = "";
	bool ok;

	if (bench_build_program("IMAPQ_IMAPQD", "imapqd", bin, sizeof(bin)) != 0) {
		bench_fail("no imapqd at %s (build it, or set IMAPQ_IMAPQD)", bin);
		return false;
	}
	if (!target_dir(&t))
		return false;
	bench_section("imapqd (--fsync always): claim -> fetch body -> ack cycles");
	ok = imapqd_start(&t, bin) && target_phases(&t, 0, res) &&
	     latency_phase(&t, LAT_SMALL, 0, res) &&
	     latency_phase(&t, smoke ? LAT_SMOKE_LARGE : LAT_LARGE, 1, res);
	return target_finish(&t, ok);
}

/* Dovecot: the timed phases; skipped when it is not installed. */
static bool bench_dovecot(struct results *res)
{
	struct target t = {.name = "dovecot", .pid = -1};
	char bin[PATH_MAX];
	bool ok;

	bench_section("Dovecot (sdbox, its default fsync): the same cycles");
	if (bench_system_program("IMAPQ_DOVECOT", "dovecot", bin, sizeof(bin)) != 0) {
		printf("  dovecot is not installed (make bench-deps installs dovecot-imapd, or set "
		       "IMAPQ_DOVECOT): skipping the peer figures\n");
		return true;
	}
	if (!target_dir(&t))
		return false;
	ok = dovecot_start(&t, bin);
	if (ok && !target_phases(&t, 1, res)) {
		fprintf(stderr, "bench_imap: Dovecot's log %s ends:\n", t.log);
		bench_file_tail(t.log, stderr, 4096);
		ok = false;
	}
	res->have_dovecot = ok;
	return target_finish(&t, ok);
}

/* Prints the "bench:" lines of what ran. */
static void print_figures(const struct results *res)
{
	static const char *const names[] = {"imapqd", "dovecot"};
	char name[96];

	printf("\n");
	for (int s = 0; s < 2; s++) {
		for (size_t k = 0; k < N_COUNTS; k++) {
			if (!res->have[s][k])
				continue;
			snprintf(name, sizeof(name), "imap.%s_claims_per_s_w%u", names[s],
				 worker_counts[k]);
			bench_figure(name, res->rate[s][k], 0, "claims/s");
			snprintf(name, sizeof(name), "imap.%s_conflicts_w%u", names[s],
				 worker_counts[k]);
			bench_figure(name, (double)res->conflicts[s][k], 0, "count");
		}
	}
	if (res->have[0][1] && res->have[1][1] && res->rate[1][1] > 0)
		bench_figure("imap.claim_ratio_vs_dovecot_w8", res->rate[0][1] / res->rate[1][1], 2,
			     "x");
	if (res->have_dovecot) {
		bench_figure("imap.dovecot_double_claims", (double)res->double_claims, 0, "count");
		bench_figure("imap.dovecot_stranded_jobs", (double)res->stranded, 0, "count");
	}
	for (int i = 0; i < 2; i++) {
		if (!res->have_lat[i])
			continue;
		snprintf(name, sizeof(name), "imap.claim_p50_ms_%s", res->lat_name[i]);
		bench_figure(name, res->p50[i], 3, "ms");
		snprintf(name, sizeof(name), "imap.claim_p99_ms_%s", res->lat_name[i]);
		bench_figure(name, res->p99[i], 3, "ms");
	}
	if (res->have_lat[0] && res->have_lat[1] && res->p50[0] > 0) {
		snprintf(name, sizeof(name), "imap.claim_p50_ratio_%s_%s", res->lat_name[1],
			 res->lat_name[0]);
		bench_figure(name, res->p50[1] / res->p50[0], 2, "x");
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"smoke", no_argument, NULL, 's'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	struct results res = {0};
	int opt;
	bool ok;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt == 's') {
			smoke = true;
			continue;
		}
		fprintf(opt == 'h' ? stdout : stderr,
			"usage: %s [--smoke]\n  --smoke  %u jobs per phase, %.0f s phases, "
			"%u ready jobs for the large latency queue\n",
			argv[0], SMOKE_JOBS, SMOKE_MEASURE_S, LAT_SMOKE_LARGE);
		return opt == 'h' ? 0 : 2;
	}
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument %s\n", argv[0], argv[optind]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (smoke) {
		warm_s = SMOKE_WARM_S;
		measure_s = SMOKE_MEASURE_S;
	} else {
		measure_s = bench_env_number("IMAPQ_BENCH_IMAP_SECONDS", MEASURE_S, 600);
		phase_depth =
		    (uint32_t)bench_env_number("IMAPQ_BENCH_IMAP_DEPTH", PHASE_DEPTH, PRELOAD_MAX);
	}
	printf("IMAP claim benchmark%s: 1, 8 and 64 workers (one connection and thread each), "
	       "%u ready jobs at the start of each phase, %.1f s warm-up, %.1f s measured per "
	       "phase\n",
	       smoke ? " (smoke)" : "", smoke ? SMOKE_JOBS : phase_depth, warm_s, measure_s);

	ok = bench_imapqd(&res);
	ok = bench_dovecot(&res) && ok;
	print_figures(&res);
	return ok ? 0 : 1;
}
