/* Password checks as jobs of a worker thread (imap/base/worker.h). A check carries copies of the
 * user and password; the password copy is wiped once checked and again when the check is freed.
 */
#include "imap/server/auth-worker.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "imap/base/limits.h"
#include "imap/base/worker.h"

struct auth_check {
	struct auth_worker *worker;
	struct worker_job *job;
	/* The owner's pointer to this check; NULL once cancelled. Loop thread only. */
	struct auth_check **link;
	auth_worker_done_fn *done;
	void *arg;
	imapq_err err;
	const struct access *access;
	char *password; /* points into user, after its NUL */
	size_t password_len;
	char user[]; /* user NUL password NUL */
};

struct auth_worker {
	struct worker *worker;
	imap_auth_fn *auth;
	void *auth_ctx;
};

/* On the worker's thread. */
static void check_run(void *data, const struct worker_job *job)
{
	(void)job;
	struct auth_check *c = data;
	c->access = NULL;
	c->err = c->worker->auth(c->worker->auth_ctx, c->user, c->password, &c->access);
	OPENSSL_cleanse(c->password, c->password_len);
}

/* On the loop: the owner learns the result. */
static void check_done(void *data)
{
	struct auth_check *c = data;
	*c->link = NULL;
	c->link = NULL; /* the owner may be gone once done returns */
	c->done(c->arg, c->user, c->err, c->access);
}

static void check_free(void *data)
{
	struct auth_check *c = data;
	if (c->link != NULL)
		*c->link = NULL;
	OPENSSL_cleanse(c->password, c->password_len);
	free(c);
}

imapq_err auth_worker_create(struct loop *loop, imap_auth_fn *auth, void *auth_ctx,
			     struct auth_worker **worker_r)
{
	struct auth_worker *w = calloc(1, sizeof *w);
	if (w == NULL)
		return IMAPQ_E_NOMEM;
	w->auth = auth;
	w->auth_ctx = auth_ctx;
	imapq_err err = worker_create(loop, IMAPQ_MAX_PENDING_LOGINS, &w->worker);
	if (err != IMAPQ_OK) {
		free(w);
		return err;
	}
	*worker_r = w;
	return IMAPQ_OK;
}

imapq_err auth_worker_submit(struct auth_worker *w, const char *user, const char *password,
			     auth_worker_done_fn *done, void *arg, struct auth_check **check_r)
{
	size_t ulen = strlen(user), plen = strlen(password);
	struct auth_check *c = malloc(sizeof *c + ulen + 1 + plen + 1);
	if (c == NULL)
		return IMAPQ_E_NOMEM;
	*c = (struct auth_check){.worker = w, .done = done, .arg = arg};
	memcpy(c->user, user, ulen + 1);
	c->password = c->user + ulen + 1;
	c->password_len = plen;
	memcpy(c->password, password, plen + 1);
	imapq_err err = worker_submit(w->worker, check_run, check_done, check_free, c, &c->job);
	if (err != IMAPQ_OK) {
		OPENSSL_cleanse(c->password, c->password_len);
		free(c);
		return err;
	}
	c->link = check_r;
	*check_r = c;
	return IMAPQ_OK;
}

void auth_worker_cancel(struct auth_check **checkp)
{
	struct auth_check *c = *checkp;
	if (c == NULL)
		return;
	*checkp = NULL;
	c->link = NULL;
	worker_cancel(&c->job); /* may free c */
}

unsigned auth_worker_pending(const struct auth_worker *w)
{
	return worker_pending(w->worker);
}

void auth_worker_destroy(struct auth_worker **workerp)
{
	struct auth_worker *w = *workerp;
	if (w == NULL)
		return;
	*workerp = NULL;
	worker_destroy(&w->worker);
	free(w);
}
