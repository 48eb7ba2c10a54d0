/* TLS for the IMAP server (OpenSSL): a server context loaded from a certificate chain and a key,
 * replaceable at run time, and non-blocking connections that the session drives from the event
 * loop. Protocol code sees only this interface, never an SSL object.
 *
 * Contexts: TLS 1.2 or newer, forward-secret AEAD ciphers only for TLS 1.2 (OpenSSL's TLS 1.3
 * suites), no renegotiation, no compression, no server-side session cache.
 *
 * Threads: everything here runs on the event loop's thread. */
#ifndef IMAPQ_TLS_H
#define IMAPQ_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "imap/base/error.h"

struct tls_server;
struct tls_conn;

/* Loads the PEM certificate chain and private key at the two paths (kept for reloads) and checks
 * that they belong together. IMAPQ_E_INVALID (with a log line naming the file and OpenSSL's
 * reason) when they cannot be used, IMAPQ_E_NOMEM otherwise. */
imapq_err tls_server_create(const char *cert_path, const char *key_path,
			    struct tls_server **server_r);

/* Loads the two files again into a new context. On success new connections use it, and live
 * connections keep the one they started with; on failure the old context stays in use and the
 * reason is logged. Returns IMAPQ_OK or IMAPQ_E_INVALID / IMAPQ_E_NOMEM. */
imapq_err tls_server_reload(struct tls_server *server);

/* Frees the server; connections made from it stay usable until they are destroyed. */
void tls_server_destroy(struct tls_server **server);

/* What a non-blocking TLS call did. */
enum tls_io {
	TLS_IO_OK,	   /* done (or some bytes moved, see *n_r) */
	TLS_IO_WANT_READ,  /* call again once the socket is readable */
	TLS_IO_WANT_WRITE, /* call again once the socket is writable */
	TLS_IO_CLOSED,	   /* the peer closed the connection (close_notify or EOF) */
	TLS_IO_ERROR,	   /* the connection failed; tls_conn_error() says why */
};

/* Starts the server side of TLS on the connected, non-blocking socket fd (which stays the
 * caller's to close). IMAPQ_E_NOMEM when OpenSSL cannot allocate. */
imapq_err tls_conn_create(struct tls_server *server, int fd, struct tls_conn **conn_r);

/* Advances the handshake: TLS_IO_OK once it is complete. */
enum tls_io tls_conn_handshake(struct tls_conn *conn);

/* Reads decrypted bytes into buf: TLS_IO_OK with *n_r > 0, or another result with *n_r == 0. */
enum tls_io tls_conn_read(struct tls_conn *conn, void *buf, size_t cap, size_t *n_r);

/* Encrypts and sends up to len bytes: TLS_IO_OK with *n_r > 0 bytes taken. After a WANT result,
 * the next call must pass the same bytes again, possibly followed by more (the buffer may move).
 */
enum tls_io tls_conn_write(struct tls_conn *conn, const void *buf, size_t len, size_t *n_r);

/* True when decrypted bytes wait inside OpenSSL: no socket event will announce them. */
bool tls_conn_pending(const struct tls_conn *conn);

/* The reason for the last TLS_IO_ERROR, e.g. "unsupported protocol"; never NULL. */
const char *tls_conn_error(const struct tls_conn *conn);

/* The negotiated protocol and cipher, e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384", for logs. */
void tls_conn_describe(const struct tls_conn *conn, char *buf, size_t cap);

/* Sends close_notify if it fits in the socket now (best effort, never blocks), then frees the
 * connection; *conn becomes NULL. */
void tls_conn_destroy(struct tls_conn **conn);

#endif
