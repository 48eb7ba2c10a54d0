/* The client's transport: a non-blocking TCP socket with TCP_NODELAY and, once started, TLS
 * through OpenSSL. Reads and writes never block; client_conn_wait() blocks with a timeout. */
#ifndef IMAPQ_CLIENT_CONN_H
#define IMAPQ_CLIENT_CONN_H

#include "imap/base/error.h"

#include <stdbool.h>
#include <stddef.h>

struct client_conn;

/* How the peer's certificate is checked. */
struct client_conn_tls {
	const char *ca_file;	 /* PEM file of trusted CAs; NULL: the system store */
	const char *server_name; /* name (or IP literal) the certificate must match; NULL: host */
	bool insecure;		 /* skip every check of the peer (tests, private networks) */
};

/* Connects to host:port (a name or an IPv4/IPv6 literal), trying each address in turn, within
 * timeout_ms (negative: no limit). Returns IMAPQ_OK, IMAPQ_E_IO, IMAPQ_E_TIMEOUT or
 * IMAPQ_E_NOMEM; on failure *conn_r is NULL and errbuf[0..errcap) holds the reason. Writing to a
 * peer that closed must not kill the process, so SIGPIPE is set to be ignored when it still has
 * its default action. */
imapq_err client_conn_open(const char *host, unsigned port, int timeout_ms, char *errbuf,
			   size_t errcap, struct client_conn **conn_r);

/* Closes the socket, frees the TLS state and sets *conn to NULL; NULL is ignored. */
void client_conn_close(struct client_conn **conn);

/* Performs the TLS handshake (blocking up to timeout_ms) and checks the peer as tls says.
 * Returns IMAPQ_OK, IMAPQ_E_AUTH when the peer's certificate fails the check, IMAPQ_E_IO,
 * IMAPQ_E_TIMEOUT or IMAPQ_E_NOMEM; the reason goes to errbuf. */
imapq_err client_conn_start_tls(struct client_conn *conn, const char *host,
				const struct client_conn_tls *tls, int timeout_ms, char *errbuf,
				size_t errcap);

/* True once TLS is running. */
bool client_conn_is_tls(const struct client_conn *conn);

/* Reads up to cap bytes without blocking: IMAPQ_OK with *n_r > 0, IMAPQ_OK with *n_r == 0 when
 * nothing is readable now, IMAPQ_E_IO when the peer closed or the read failed. */
imapq_err client_conn_read(struct client_conn *conn, void *data, size_t cap, size_t *n_r);

/* Writes up to len bytes without blocking: *n_r says how many went (0 when the socket is full).
 * Returns IMAPQ_OK or IMAPQ_E_IO. */
imapq_err client_conn_write(struct client_conn *conn, const void *data, size_t len, size_t *n_r);

/* True when TLS holds decrypted bytes that no socket event will announce. */
bool client_conn_pending(const struct client_conn *conn);

/* poll() events to wait for, given whether the caller wants to read and to write; TLS may turn a
 * wish to read into a wait for writability and the other way round. */
short client_conn_events(const struct client_conn *conn, bool want_read, bool want_write);

/* Waits up to timeout_ms (negative: no limit) for the events of client_conn_events(). Returns
 * IMAPQ_OK when ready or interrupted by a signal (*ready_r says which), IMAPQ_E_TIMEOUT, or
 * IMAPQ_E_IO. */
imapq_err client_conn_wait(struct client_conn *conn, bool want_read, bool want_write,
			   int timeout_ms, bool *ready_r);

/* The socket, for callers that poll it themselves. */
int client_conn_fd(const struct client_conn *conn);

#endif
