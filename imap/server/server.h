/* The IMAP server: listeners, sessions and commands over the store, on one event loop.
 *
 * Every reply that reflects store state leaves only once that state is durable: a session's
 * output is sealed after each command with the store's visible LSN and held until the journal's
 * durable LSN reaches it, so many sessions' changes share one fsync and no client ever sees a
 * change that a crash could take back. */
#ifndef IMAPQ_IMAP_SERVER_H
#define IMAPQ_IMAP_SERVER_H

#include <stdbool.h>

#include "imap/base/error.h"
#include "imap/base/loop.h"
#include "imap/store/store.h"

struct access;
struct imap_server;
struct tls_server;

/* Checks a user's password; returns IMAPQ_OK, IMAPQ_E_AUTH or another error. On IMAPQ_OK,
 * *access_r holds the user's roles (access.h), NULL for every role; it must stay valid as long as
 * the server lives. It runs on the server's own password thread, never on the loop, so it may be
 * slow (a password hash) but must be safe to call from that thread. */
typedef imapq_err imap_auth_fn(void *ctx, const char *user, const char *password,
			       const struct access **access_r);

struct imap_server_options {
	struct loop *loop;
	struct store *store;
	imap_auth_fn *auth; /* NULL refuses every login */
	void *auth_ctx;
	/* Allow LOGIN and AUTHENTICATE PLAIN on cleartext connections from non-loopback peers. */
	bool allow_plaintext;
	/* TLS for STARTTLS and imap_server_listen_tls(); NULL leaves both off. Borrowed: it must
	 * outlive the server (reloading it is the owner's business). */
	struct tls_server *tls;
	/* Folder for unlinked spool files of large APPEND bodies (on the journal's file system). */
	const char *spool_dir;
	/* Delay before the first failed login is answered, doubling per further failure up to 16
	 * times it; 0 takes IMAPQ_AUTH_FAIL_DELAY_MS. Tests and fuzzers shorten it. */
	unsigned auth_fail_delay_ms;
	/* Time a SEARCH may run on the search thread before it answers NO [LIMIT]; 0 takes
	 * IMAPQ_SEARCH_MS. Tests shorten it. */
	unsigned search_ms;
};

/* Creates the server and, with opts->auth, starts its password thread. */
imapq_err imap_server_create(const struct imap_server_options *opts, struct imap_server **server_r);

/* Listens on host:port (0 picks a port, returned in *port_r). */
imapq_err imap_server_listen(struct imap_server *server, const char *host, unsigned port,
			     unsigned *port_r);

/* Listens on host:port for implicit TLS (RFC 8314): every connection starts with the handshake.
 * IMAPQ_E_INVALID when the server has no TLS context. */
imapq_err imap_server_listen_tls(struct imap_server *server, const char *host, unsigned port,
				 unsigned *port_r);

/* Stops accepting, ends idle sessions with BYE and closes every connection once its output is
 * written (or after a short grace period). */
void imap_server_shutdown(struct imap_server *server);

/* Sessions currently connected. */
unsigned imap_server_sessions(const struct imap_server *server);

/* Frees the server once its loop has stopped for good: wake-ups it posted must never run. A
 * password check that is running is waited for. */
void imap_server_destroy(struct imap_server **server);

#endif
