/* The HTTP/JSON front: a libmicrohttpd server (epoll, an internal thread pool, suspend/resume
 * for long-polled claims) that maps the REST API of docs/http.md onto the queue layer. It never
 * touches mailboxes itself; every change goes through queue/ and is answered only once it is
 * durable: the reply is held and its connection suspended until the store's commit notice.
 *
 * Threads: libmicrohttpd runs IMAPQ_HTTP_THREADS_PER_CORE pool threads per core, an acceptor
 * thread hands them connections evenly (http_accept.c), and one more thread resumes
 * parked long polls when a job arrives or their wait ends, so a waiting client costs no thread;
 * held replies are resumed from the journal's flusher. The store must outlive the server. */
#ifndef IMAPQ_HTTP_H
#define IMAPQ_HTTP_H

#include "imap/base/error.h"
#include "imap/store/store.h"
#include "queue/queue.h"

struct access;
struct http_server;

/* What an endpoint needs of the caller's token (DESIGN.md, "Security and limits"). */
enum http_role {
	HTTP_ROLE_ANY,	    /* any valid token: listings, queue details */
	HTTP_ROLE_PRODUCER, /* enqueue */
	HTTP_ROLE_CONSUMER, /* claim, ack, nack, extend, peek, change feed */
	HTTP_ROLE_ADMIN,    /* create, change, purge and delete queues; requeue; metrics */
};

/* Checks a bearer token for role on queue ("" when the request names no valid queue: the role
 * must then hold on every queue), from any pool thread: IMAPQ_OK with the token's roles in
 * *access_r (NULL for every role; valid while the server lives), IMAPQ_E_AUTH (unknown token,
 * answered 401), IMAPQ_E_NONEXISTENT (a queue the token may not see, answered 404 like a missing
 * one) or IMAPQ_E_NOPERM (the token lacks the role, answered 403). */
typedef imapq_err http_auth_fn(void *ctx, const char *token, enum http_role role, const char *queue,
			       const struct access **access_r);

struct http_options {
	struct queue_service *qs; /* borrowed; must outlive the server */
	struct store *store;	  /* the queue service's store, for store_wait() and statistics */
	const char *host;	  /* address to bind: IPv4 or IPv6 literal or a name */
	unsigned port;		  /* 0 picks a free port (see http_server_port()) */
	http_auth_fn *auth;	  /* NULL refuses every request but GET /healthz */
	void *auth_ctx;
	/* PEM text of a certificate chain and its key: both set serve HTTPS (TLS 1.2 or newer)
	 * instead of HTTP. Borrowed; they must stay valid until the server is destroyed. */
	const char *tls_cert_pem;
	const char *tls_key_pem;
};

/* Binds host:port and starts serving. IMAPQ_E_IO when the address cannot be bound,
 * IMAPQ_E_NOMEM or IMAPQ_E_UNAVAILABLE when libmicrohttpd cannot start. */
imapq_err http_server_create(const struct http_options *opts, struct http_server **server_r);

/* The bound TCP port. */
unsigned http_server_port(const struct http_server *server);

/* Shuts the front down: new requests get 503, every parked long poll is resumed and answered with
 * what it holds (an empty list), and the daemon stops once they have gone out (or after a short
 * grace period). Blocks until then; calling it again does nothing. */
void http_server_stop(struct http_server *server);

/* Stops the server if still running and frees it; *server becomes NULL. */
void http_server_destroy(struct http_server **server);

#endif
