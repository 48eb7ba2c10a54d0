/* The password-check thread. A check moves from the queue to the thread, which owns it while it
 * runs, and on to the done list, which the loop takes in one posted call; both lists are under
 * the worker's mutex. A check's owner link is touched on the loop only, so cancelling never waits
 * for the thread. */
#include "imap/server/auth-worker.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "imap/base/limits.h"

/* Milliseconds between attempts to wake the loop when it has no memory for the wake-up. */
#define AUTH_WORKER_POST_RETRY_MS 10

struct auth_check {
	struct auth_worker *worker;
	struct auth_check *next; /* in the queue or the done list */
	/* The owner's pointer to this check; NULL once cancelled. Loop thread only. */
	struct auth_check **link;
	auth_worker_done_fn *done;
	void *arg;
	bool started; /* taken by the thread: no longer in the queue (under the mutex) */
	imapq_err err;
	const struct access *access;
	char *password; /* points into text, after the user's NUL */
	size_t password_len;
	char user[]; /* user NUL password NUL */
};

struct auth_worker {
	struct loop *loop;
	imap_auth_fn *auth;
	void *auth_ctx;
	pthread_t thread;
	unsigned pending; /* loop thread only */
	pthread_mutex_t mu;
	pthread_cond_t cond;
	/* Under mu. */
	struct auth_check *queue, **queue_tail;
	struct auth_check *done, **done_tail;
	bool posted; /* a delivery is on its way to the loop */
	bool stopping;
};

/* Frees a check, wiping the password copy first (it is wiped after the check as well). */
static void check_free(struct auth_check *c)
{
	OPENSSL_cleanse(c->password, c->password_len);
	free(c);
}

/* On the loop: hands every finished check to its owner, or just frees it when cancelled. */
static void deliver(void *arg)
{
	struct auth_worker *w = arg;
	pthread_mutex_lock(&w->mu);
	struct auth_check *list = w->done;
	w->done = NULL;
	w->done_tail = &w->done;
	w->posted = false;
	pthread_mutex_unlock(&w->mu);
	while (list != NULL) {
		struct auth_check *c = list;
		list = c->next;
		w->pending--;
		if (c->link != NULL) {
			*c->link = NULL;
			c->done(c->arg, c->user, c->err, c->access);
		}
		check_free(c);
	}
}

/* Wakes the loop for the results. A lost wake-up would leave logins unanswered, so a failed post
 * is retried until it goes through or the worker stops. */
static void post_results(struct auth_worker *w)
{
	struct timespec pause = {.tv_nsec = AUTH_WORKER_POST_RETRY_MS * 1000000L};
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
	struct auth_worker *w = arg;
	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->stopping && w->queue == NULL)
			pthread_cond_wait(&w->cond, &w->mu);
		if (w->stopping)
			break;
		struct auth_check *c = w->queue;
		w->queue = c->next;
		if (w->queue == NULL)
			w->queue_tail = &w->queue;
		c->next = NULL;
		c->started = true;
		pthread_mutex_unlock(&w->mu);

		c->access = NULL;
		c->err = w->auth(w->auth_ctx, c->user, c->password, &c->access);
		OPENSSL_cleanse(c->password, c->password_len);

		pthread_mutex_lock(&w->mu);
		*w->done_tail = c;
		w->done_tail = &c->next;
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

imapq_err auth_worker_create(struct loop *loop, imap_auth_fn *auth, void *auth_ctx,
			     struct auth_worker **worker_r)
{
	struct auth_worker *w = calloc(1, sizeof *w);
	if (w == NULL)
		return IMAPQ_E_NOMEM;
	w->loop = loop;
	w->auth = auth;
	w->auth_ctx = auth_ctx;
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

imapq_err auth_worker_submit(struct auth_worker *w, const char *user, const char *password,
			     auth_worker_done_fn *done, void *arg, struct auth_check **check_r)
{
	if (w->pending >= IMAPQ_MAX_PENDING_LOGINS)
		return IMAPQ_E_LIMIT;
	size_t ulen = strlen(user), plen = strlen(password);
	struct auth_check *c = malloc(sizeof *c + ulen + 1 + plen + 1);
	if (c == NULL)
		return IMAPQ_E_NOMEM;
	*c = (struct auth_check){.worker = w, .link = check_r, .done = done, .arg = arg};
	memcpy(c->user, user, ulen + 1);
	c->password = c->user + ulen + 1;
	c->password_len = plen;
	memcpy(c->password, password, plen + 1);
	w->pending++;
	*check_r = c;
	pthread_mutex_lock(&w->mu);
	*w->queue_tail = c;
	w->queue_tail = &c->next;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->mu);
	return IMAPQ_OK;
}

void auth_worker_cancel(struct auth_check **checkp)
{
	struct auth_check *c = *checkp;
	if (c == NULL)
		return;
	*checkp = NULL;
	struct auth_worker *w = c->worker;
	c->link = NULL;
	pthread_mutex_lock(&w->mu);
	bool queued = !c->started;
	if (queued) {
		struct auth_check **pp = &w->queue;
		while (*pp != c)
			pp = &(*pp)->next;
		*pp = c->next;
		if (w->queue_tail == &c->next)
			w->queue_tail = pp;
	}
	pthread_mutex_unlock(&w->mu);
	if (queued) {
		/* Never started: nobody pays for a hash the client no longer waits for. */
		w->pending--;
		check_free(c);
	}
}

unsigned auth_worker_pending(const struct auth_worker *w)
{
	return w->pending;
}

/* Frees a list of checks. */
static void free_list(struct auth_check *c)
{
	while (c != NULL) {
		struct auth_check *next = c->next;
		if (c->link != NULL)
			*c->link = NULL;
		check_free(c);
		c = next;
	}
}

void auth_worker_destroy(struct auth_worker **workerp)
{
	struct auth_worker *w = *workerp;
	if (w == NULL)
		return;
	*workerp = NULL;
	pthread_mutex_lock(&w->mu);
	w->stopping = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	free_list(w->queue);
	free_list(w->done);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->mu);
	free(w);
}
