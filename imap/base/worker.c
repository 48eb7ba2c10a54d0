/* The worker thread. A job moves from the queue to the thread, which owns it while it runs, and
 * on to the done list, which the loop takes in one posted call; both lists are under the
 * worker's mutex. A job's owner link is touched on the loop only, so cancelling never waits for
 * the thread. */
#include "imap/base/worker.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

/* Milliseconds between attempts to wake the loop when it has no memory for the wake-up. */
#define WORKER_POST_RETRY_MS 10

struct worker_job {
	struct worker *worker;
	struct worker_job *next; /* in the queue or the done list */
	/* The owner's pointer to this job; NULL once cancelled. Loop thread only. */
	struct worker_job **link;
	worker_run_fn *run;
	worker_done_fn *done;
	worker_free_fn *free_data;
	void *data;
	bool started; /* taken by the thread: no longer in the queue (under the mutex) */
	atomic_bool cancelled;
};

struct worker {
	struct loop *loop;
	unsigned max_pending;
	pthread_t thread;
	unsigned pending; /* loop thread only */
	pthread_mutex_t mu;
	pthread_cond_t cond;
	/* Under mu. */
	struct worker_job *queue, **queue_tail;
	struct worker_job *done, **done_tail;
	struct worker_job *running;
	bool posted; /* a delivery is on its way to the loop */
	bool stopping;
};

static void job_free(struct worker_job *job)
{
	job->free_data(job->data);
	free(job);
}

/* On the loop: hands every finished job to its owner, or just frees it when cancelled. */
static void deliver(void *arg)
{
	struct worker *w = arg;
	pthread_mutex_lock(&w->mu);
	struct worker_job *list = w->done;
	w->done = NULL;
	w->done_tail = &w->done;
	w->posted = false;
	pthread_mutex_unlock(&w->mu);
	while (list != NULL) {
		struct worker_job *job = list;
		list = job->next;
		w->pending--;
		if (job->link != NULL) {
			*job->link = NULL;
			job->done(job->data);
		}
		job_free(job);
	}
}

/* Wakes the loop for the results. A lost wake-up would leave owners waiting for good, so a
 * failed post is retried until it goes through or the worker stops. */
static void post_results(struct worker *w)
{
	struct timespec pause = {.tv_nsec = WORKER_POST_RETRY_MS * 1000000L};
	while (loop_post(w->loop, deliver, w) != IMAPQ_OK) {
		pthread_mutex_lock(&w->mu);
		bool stopping = w->stopping;
		pthread_mutex_unlock(&w->mu);
		if (stopping)
			return;
		nanosleep(&pause, NULL);
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->stopping && w->queue == NULL)
			pthread_cond_wait(&w->cond, &w->mu);
		if (w->stopping)
			break;
		struct worker_job *job = w->queue;
		w->queue = job->next;
		if (w->queue == NULL)
			w->queue_tail = &w->queue;
		job->next = NULL;
		job->started = true;
		w->running = job;
		pthread_mutex_unlock(&w->mu);

		job->run(job->data, job);

		pthread_mutex_lock(&w->mu);
		w->running = NULL;
		*w->done_tail = job;
		w->done_tail = &job->next;
		bool post = !w->posted;
		w->posted = true;
		if (post) {
			pthread_mutex_unlock(&w->mu);
			post_results(w);
			pthread_mutex_lock(&w->mu);
		}
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

imapq_err worker_create(struct loop *loop, unsigned max_pending, struct worker **worker_r)
{
	struct worker *w = calloc(1, sizeof *w);
	if (w == NULL)
		return IMAPQ_E_NOMEM;
	w->loop = loop;
	w->max_pending = max_pending;
	w->queue_tail = &w->queue;
	w->done_tail = &w->done;
	if (pthread_mutex_init(&w->mu, NULL) != 0) {
		free(w);
		return IMAPQ_E_NOMEM;
	}
	if (pthread_cond_init(&w->cond, NULL) != 0) {
		pthread_mutex_destroy(&w->mu);
		free(w);
		return IMAPQ_E_NOMEM;
	}
	if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
		pthread_cond_destroy(&w->cond);
		pthread_mutex_destroy(&w->mu);
		free(w);
		return IMAPQ_E_NOMEM;
	}
	*worker_r = w;
	return IMAPQ_OK;
}

imapq_err worker_submit(struct worker *w, worker_run_fn *run, worker_done_fn *done,
			worker_free_fn *free_data, void *data, struct worker_job **job_r)
{
	if (w->pending >= w->max_pending)
		return IMAPQ_E_LIMIT;
	struct worker_job *job = malloc(sizeof *job);
	if (job == NULL)
		return IMAPQ_E_NOMEM;
	*job = (struct worker_job){.worker = w,
				   .link = job_r,
				   .run = run,
				   .done = done,
				   .free_data = free_data,
				   .data = data};
	atomic_init(&job->cancelled, false);
	w->pending++;
	*job_r = job;
	pthread_mutex_lock(&w->mu);
	*w->queue_tail = job;
	w->queue_tail = &job->next;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->mu);
	return IMAPQ_OK;
}

void worker_cancel(struct worker_job **jobp)
{
	struct worker_job *job = *jobp;
	if (job == NULL)
		return;
	*jobp = NULL;
	struct worker *w = job->worker;
	job->link = NULL;
	atomic_store(&job->cancelled, true);
	pthread_mutex_lock(&w->mu);
	bool queued = !job->started;
	if (queued) {
		struct worker_job **pp = &w->queue;
		while (*pp != job)
			pp = &(*pp)->next;
		*pp = job->next;
		if (w->queue_tail == &job->next)
			w->queue_tail = pp;
	}
	pthread_mutex_unlock(&w->mu);
	if (queued) {
		/* Never started: nobody pays for work no one waits for. */
		w->pending--;
		job_free(job);
	}
}

bool worker_job_cancelled(const struct worker_job *job)
{
	return atomic_load(&job->cancelled);
}

unsigned worker_pending(const struct worker *w)
{
	return w->pending;
}

/* Frees a list of jobs. */
static void free_list(struct worker_job *job)
{
	while (job != NULL) {
		struct worker_job *next = job->next;
		if (job->link != NULL)
			*job->link = NULL;
		job_free(job);
		job = next;
	}
}

void worker_destroy(struct worker **workerp)
{
	struct worker *w = *workerp;
	if (w == NULL)
		return;
	*workerp = NULL;
	pthread_mutex_lock(&w->mu);
	w->stopping = true;
	/* Its result will never be delivered: a run that checks may stop now. */
	if (w->running != NULL)
		atomic_store(&w->running->cancelled, true);
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	free_list(w->queue);
	free_list(w->done);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->mu);
	free(w);
}
