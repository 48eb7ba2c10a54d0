/* Password checks off the event loop. A password hash costs tens of milliseconds of CPU (PBKDF2,
 * docs/security.md); run on the loop, every login would stall every other session. One
 * background thread runs the server's auth callback for the checks queued here, one at a time,
 * and hands each result back to the loop with loop_post().
 *
 * Every function here runs on the loop thread; only the auth callback runs on the worker's. */
#ifndef IMAPQ_AUTH_WORKER_H
#define IMAPQ_AUTH_WORKER_H

#include "imap/base/error.h"
#include "imap/base/loop.h"
#include "imap/server/server.h"

struct access;
struct auth_worker;
struct auth_check;

/* The result of a check, on the loop: err and access as the auth callback gave them, user as it
 * was submitted (valid during the call only). */
typedef void auth_worker_done_fn(void *arg, const char *user, imapq_err err,
				 const struct access *access);

/* Starts the worker thread for auth(auth_ctx, ...), which must be safe to call from it. */
imapq_err auth_worker_create(struct loop *loop, imap_auth_fn *auth, void *auth_ctx,
			     struct auth_worker **worker_r);

/* Queues a check of user and password (both copied; the password copy is cleansed once it has
 * been checked). done(arg, ...) runs later on the loop, unless the check is cancelled first;
 * *check_r holds the check until then and is set to NULL just before done runs. IMAPQ_E_LIMIT
 * when IMAPQ_MAX_PENDING_LOGINS checks are outstanding already, IMAPQ_E_NOMEM. */
imapq_err auth_worker_submit(struct auth_worker *worker, const char *user, const char *password,
			     auth_worker_done_fn *done, void *arg, struct auth_check **check_r);

/* Forgets a check, so its done never runs (for an owner that goes away). A check not started yet
 * is dropped at once; a running one is freed when its result comes back. *check becomes NULL;
 * NULL is fine. */
void auth_worker_cancel(struct auth_check **check);

/* Checks outstanding: queued, running, or checked but not yet handed back (cancelled ones until
 * they are freed). */
unsigned auth_worker_pending(const struct auth_worker *worker);

/* Waits for the check that runs, stops the thread and frees every check without calling done.
 * Results posted to the loop are dropped with it: the loop must not run again after this (stop
 * it first, then destroy it). NULL is fine; *worker becomes NULL. */
void auth_worker_destroy(struct auth_worker **worker);

#endif
