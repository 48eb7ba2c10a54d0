/* The long-poll parking lot. A claim that finds nothing parks here and its connection is
 * suspended; the queue's wake-up (or the request's deadline) marks it fired, and one thread
 * resumes fired connections, so no thread waits per client. The lot's mutex is a leaf lock:
 * nothing else is called while it is held, which makes it safe to take from queue wake-ups that
 * run under the queue's or the store's locks. */
#include <errno.h>
#include <time.h>

#include "http/http-private.h"
#include "imap/base/log.h"

/* Pushes req onto the resume list; the caller holds the mutex. */
static void schedule_resume(struct http_waitlist *w, struct http_request *req)
{
	req->resume_next = w->resume_head;
	w->resume_head = req;
	pthread_cond_signal(&w->cond);
}

/* Marks req fired (once) and schedules its resumption when it is suspended already. */
static void fire_locked(struct http_waitlist *w, struct http_request *req)
{
	if (!req->parked || req->fired)
		return;
	req->fired = true;
	if (req->suspended)
		schedule_resume(w, req);
}

/* Unlinks req from the parked list; the caller holds the mutex. */
static void unlink_locked(struct http_waitlist *w, struct http_request *req)
{
	if (!req->parked)
		return;
	if (req->park_prev != NULL)
		req->park_prev->park_next = req->park_next;
	else
		w->parked = req->park_next;
	if (req->park_next != NULL)
		req->park_next->park_prev = req->park_prev;
	req->park_prev = req->park_next = NULL;
	req->parked = false;
	w->count--;
}

/* Fires every request whose deadline has passed; returns the earliest deadline still ahead
 * (INT64_MAX when none). */
static int64_t expire_locked(struct http_waitlist *w, int64_t now)
{
	int64_t next = INT64_MAX;
	for (struct http_request *req = w->parked; req != NULL; req = req->park_next) {
		if (req->fired)
			continue;
		if (req->deadline_ms <= now)
			fire_locked(w, req);
		else if (req->deadline_ms < next)
			next = req->deadline_ms;
	}
	return next;
}

/* The resume thread: resumes fired connections and fires expired ones. */
static void *resume_main(void *arg)
{
	struct http_waitlist *w = arg;
	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (w->resume_head != NULL) {
			struct http_request *req = w->resume_head;
			w->resume_head = req->resume_next;
			req->resume_next = NULL;
			unlink_locked(w, req);
			struct MHD_Connection *conn = req->conn;
			/* Once resumed the request may run and end at any moment: touch it no more.
			 */
			pthread_mutex_unlock(&w->mu);
			MHD_resume_connection(conn);
			pthread_mutex_lock(&w->mu);
		}
		if (w->quit)
			break;
		int64_t next = expire_locked(w, http_now_ms());
		if (w->resume_head != NULL)
			continue;
		if (next == INT64_MAX) {
			pthread_cond_wait(&w->cond, &w->mu);
		} else {
			struct timespec ts = {.tv_sec = next / 1000,
					      .tv_nsec = (long)(next % 1000) * 1000000};
			pthread_cond_timedwait(&w->cond, &w->mu, &ts);
		}
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

imapq_err http_wait_init(struct http_waitlist *w)
{
	pthread_condattr_t attr;
	if (pthread_mutex_init(&w->mu, NULL) != 0)
		return IMAPQ_E_NOMEM;
	if (pthread_condattr_init(&attr) != 0 ||
	    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) != 0 ||
	    pthread_cond_init(&w->cond, &attr) != 0) {
		pthread_mutex_destroy(&w->mu);
		return IMAPQ_E_NOMEM;
	}
	pthread_condattr_destroy(&attr);
	if (pthread_create(&w->thread, NULL, resume_main, w) != 0) {
		pthread_cond_destroy(&w->cond);
		pthread_mutex_destroy(&w->mu);
		return IMAPQ_E_NOMEM;
	}
	w->thread_started = true;
	return IMAPQ_OK;
}

void http_wait_stop(struct http_waitlist *w)
{
	if (!w->thread_started)
		return;
	pthread_mutex_lock(&w->mu);
	w->quit = true;
	w->closing = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	w->thread_started = false;
}

void http_wait_fini(struct http_waitlist *w)
{
	http_wait_stop(w);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->mu);
}

imapq_err http_wait_park(struct http_waitlist *w, struct http_request *req)
{
	imapq_err err = IMAPQ_OK;
	pthread_mutex_lock(&w->mu);
	if (w->closing) {
		err = IMAPQ_E_UNAVAILABLE;
	} else if (w->count >= IMAPQ_HTTP_MAX_LONG_POLLS) {
		err = IMAPQ_E_LIMIT;
	} else {
		req->parked = true;
		req->fired = req->suspended = false;
		req->park_prev = NULL;
		req->park_next = w->parked;
		if (w->parked != NULL)
			w->parked->park_prev = req;
		w->parked = req;
		w->count++;
		/* The thread recomputes its next deadline. */
		pthread_cond_signal(&w->cond);
	}
	pthread_mutex_unlock(&w->mu);
	return err;
}

void http_wait_unpark(struct http_waitlist *w, struct http_request *req)
{
	pthread_mutex_lock(&w->mu);
	unlink_locked(w, req);
	pthread_mutex_unlock(&w->mu);
}

void http_wait_suspended(struct http_waitlist *w, struct http_request *req)
{
	bool resume_here = false;
	pthread_mutex_lock(&w->mu);
	req->suspended = true;
	if (req->fired) {
		if (w->quit) {
			/* The resume thread is gone (shutdown): resume from this thread. */
			unlink_locked(w, req);
			resume_here = true;
		} else {
			schedule_resume(w, req);
		}
	}
	pthread_mutex_unlock(&w->mu);
	if (resume_here)
		MHD_resume_connection(req->conn);
}

void http_wait_wake(void *arg)
{
	struct http_request *req = arg;
	struct http_waitlist *w = &req->server->wait;
	pthread_mutex_lock(&w->mu);
	fire_locked(w, req);
	pthread_mutex_unlock(&w->mu);
}

void http_wait_fire_all(struct http_waitlist *w)
{
	pthread_mutex_lock(&w->mu);
	w->closing = true;
	for (struct http_request *req = w->parked; req != NULL; req = req->park_next)
		fire_locked(w, req);
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->mu);
}

unsigned http_wait_count(struct http_waitlist *w)
{
	pthread_mutex_lock(&w->mu);
	unsigned n = w->count;
	pthread_mutex_unlock(&w->mu);
	return n;
}
