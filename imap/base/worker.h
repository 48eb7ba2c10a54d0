/* A background thread for work that would stall the event loop (a password hash, a SEARCH that
 * reads message content). Jobs queued here run one at a time, in order, on the worker's thread,
 * and each result is handed back to the loop with loop_post().
 *
 * Every function here runs on the loop thread, except worker_job_cancelled(), which the job's
 * run function calls from the worker's thread. */
#ifndef IMAPQ_WORKER_H
#define IMAPQ_WORKER_H

#include <stdbool.h>

#include "imap/base/error.h"
#include "imap/base/loop.h"

struct worker;
struct worker_job;

/* Runs on the worker's thread; job is for worker_job_cancelled() only. */
typedef void worker_run_fn(void *data, const struct worker_job *job);
/* Runs on the loop once the job ran, unless it was cancelled. */
typedef void worker_done_fn(void *data);
/* Frees data: after done, when a job is cancelled, or when the worker is destroyed. Runs on the
 * loop (or in worker_destroy()), never while run does. */
typedef void worker_free_fn(void *data);

/* Starts the worker thread; at most max_pending jobs may be outstanding at once. */
imapq_err worker_create(struct loop *loop, unsigned max_pending, struct worker **worker_r);

/* Queues a job. run(data, job) runs on the thread, then done(data) on the loop, then
 * free_data(data); *job_r holds the job until then and becomes NULL just before done runs.
 * IMAPQ_E_LIMIT when max_pending jobs are outstanding, IMAPQ_E_NOMEM; data stays the caller's
 * on failure. */
imapq_err worker_submit(struct worker *worker, worker_run_fn *run, worker_done_fn *done,
			worker_free_fn *free_data, void *data, struct worker_job **job_r);

/* Forgets a job, so its done never runs (for an owner that goes away). A job not started yet is
 * freed at once; a running one is told so (worker_job_cancelled()) and freed when it returns.
 * *job becomes NULL; NULL is fine. */
void worker_cancel(struct worker_job **job);

/* True once the job was cancelled; a long run checks it to stop early. Any thread. */
bool worker_job_cancelled(const struct worker_job *job);

/* Jobs outstanding: queued, running, or finished but not yet handed back (cancelled ones until
 * they are freed). */
unsigned worker_pending(const struct worker *worker);

/* Tells the job that runs it is cancelled and waits for it, stops the thread and frees every job
 * without calling done.
 * Results posted to the loop are dropped with it: the loop must not run again after this (stop
 * it first, then destroy it). NULL is fine; *worker becomes NULL. */
void worker_destroy(struct worker **worker);

#endif
