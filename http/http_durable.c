/* Durable replies without a waiting thread. A reply that reports a change may leave only once
 * the change is on disk; instead of blocking a pool thread in store_wait(), the reply is built,
 * held, and its connection suspended. The store's commit notice (from the journal's flusher)
 * resumes every held connection whose LSN became durable, so all connections in flight share
 * each fsync however few pool threads there are. The list's mutex is a leaf lock: nothing else
 * is called while it is held. */
#include <stdlib.h>

#include "http/http-private.h"
#include "imap/base/log.h"

/* Queues resp with status on req's connection and drops our reference. */
static enum MHD_Result queue_reply(struct http_request *req, struct MHD_Response *resp,
				   unsigned status)
{
	req->status = status;
	enum MHD_Result ret = MHD_queue_response(req->conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* Waits in this thread for req's LSN (at once when durable or failed), then sends resp, or the
 * error when durability failed. */
static enum MHD_Result send_after_wait(struct http_request *req, struct MHD_Response *resp,
				       unsigned status)
{
	imapq_err err = store_wait(req->server->opts.store, req->reply_lsn);
	if (err == IMAPQ_OK)
		return queue_reply(req, resp, status);
	MHD_destroy_response(resp);
	log_error("http", "%s: the change did not become durable: %s",
		  http_route_name(req->target.route), imapq_err_message(err));
	req->reply_lsn = 0;
	req->n_claimed = 0; /* the claim did not take: nothing to release */
	return http_reply_error(req, err, NULL);
}

/* Unlinks req from the held list; the caller holds the mutex. */
static void unlink_locked(struct http_durable *d, struct http_request *req)
{
	if (!req->held_listed)
		return;
	for (struct http_request **pp = &d->held; *pp != NULL; pp = &(*pp)->held_next) {
		if (*pp == req) {
			*pp = req->held_next;
			break;
		}
	}
	req->held_next = NULL;
	req->held_listed = false;
}

/* Unlinks the suspended requests whose reply may go (all of them with everything) and returns
 * them as a list. Caller holds d->mu. */
static struct http_request *take_ready(struct http_durable *d, uint64_t durable_lsn,
				       bool everything)
{
	struct http_request *ready = NULL;
	for (struct http_request **pp = &d->held; *pp != NULL;) {
		struct http_request *req = *pp;
		if (req->held_suspended && (everything || req->reply_lsn <= durable_lsn)) {
			*pp = req->held_next;
			req->held_listed = false;
			req->held_next = ready;
			ready = req;
		} else {
			pp = &req->held_next;
		}
	}
	return ready;
}

/* Resumes a list from take_ready(). Each request stays suspended, hence alive, until its own
 * resumption: its link is read first. */
static void resume_all(struct http_request *ready)
{
	while (ready != NULL) {
		struct http_request *req = ready;
		ready = req->held_next;
		req->held_next = NULL;
		MHD_resume_connection(req->conn);
	}
}

/* The store's commit notice, on the journal's flusher thread: resumes every suspended request
 * whose LSN is now durable (all of them once the journal failed, to answer with the error). */
static void on_commit(void *arg, uint64_t durable_lsn)
{
	struct http_durable *d = &((struct http_server *)arg)->durable;
	pthread_mutex_lock(&d->mu);
	/* Durability only grows; a notice without progress says the journal failed. */
	if (durable_lsn <= d->last_lsn)
		d->failed = true;
	else
		d->last_lsn = durable_lsn;
	struct http_request *ready = take_ready(d, durable_lsn, d->failed);
	pthread_mutex_unlock(&d->mu);
	resume_all(ready);
}

imapq_err http_durable_init(struct http_server *server)
{
	struct http_durable *d = &server->durable;
	if (pthread_mutex_init(&d->mu, NULL) != 0)
		return IMAPQ_E_NOMEM;
	d->last_lsn = store_durable_lsn(server->opts.store);
	imapq_err err = store_add_commit_hook(server->opts.store, on_commit, server);
	if (err != IMAPQ_OK) {
		pthread_mutex_destroy(&d->mu);
		return err;
	}
	d->hooked = true;
	return IMAPQ_OK;
}

enum MHD_Result http_durable_hold(struct http_request *req, struct MHD_Response *resp,
				  unsigned status)
{
	struct store *store = req->server->opts.store;
	struct http_durable *d = &req->server->durable;
	if (req->reply_lsn <= store_durable_lsn(store))
		return queue_reply(req, resp, status);
	pthread_mutex_lock(&d->mu);
	if (d->closing || d->failed) {
		pthread_mutex_unlock(&d->mu);
		return send_after_wait(req, resp, status);
	}
	req->held_resp = resp;
	req->held_status = status;
	req->held_suspended = false;
	req->held_listed = true;
	req->held_next = d->held;
	d->held = req;
	pthread_mutex_unlock(&d->mu);

	MHD_suspend_connection(req->conn);
	/* A notice that came before the connection was suspended skipped it: look again. */
	pthread_mutex_lock(&d->mu);
	req->held_suspended = true;
	bool resume_here = req->held_listed &&
			   (req->reply_lsn <= store_durable_lsn(store) || d->failed || d->closing);
	if (resume_here)
		unlink_locked(d, req);
	pthread_mutex_unlock(&d->mu);
	if (resume_here)
		MHD_resume_connection(req->conn);
	return MHD_YES;
}

enum MHD_Result http_durable_send(struct http_request *req)
{
	struct MHD_Response *resp = req->held_resp;
	req->held_resp = NULL;
	return send_after_wait(req, resp, req->held_status);
}

void http_durable_forget(struct http_request *req)
{
	struct http_durable *d = &req->server->durable;
	pthread_mutex_lock(&d->mu);
	unlink_locked(d, req);
	pthread_mutex_unlock(&d->mu);
	if (req->held_resp != NULL) {
		MHD_destroy_response(req->held_resp);
		req->held_resp = NULL;
	}
}

void http_durable_close(struct http_server *server)
{
	struct http_durable *d = &server->durable;
	if (d->hooked) {
		store_remove_commit_hook(server->opts.store, on_commit, server);
		d->hooked = false;
	}
	pthread_mutex_lock(&d->mu);
	d->closing = true;
	/* A request not yet suspended sees closing once it has, and resumes itself. */
	struct http_request *ready = take_ready(d, UINT64_MAX, true);
	pthread_mutex_unlock(&d->mu);
	resume_all(ready);
}

void http_durable_fini(struct http_server *server)
{
	http_durable_close(server);
	pthread_mutex_destroy(&server->durable.mu);
}
