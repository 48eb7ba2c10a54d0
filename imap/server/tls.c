/* OpenSSL server contexts and non-blocking connections for IMAP STARTTLS and implicit TLS. */
#include "imap/server/tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "imap/base/log.h"

#define TLS_LOG "tls"

/* TLS 1.2 suites: ephemeral key exchange and AEAD only (TLS 1.3 suites are all of that kind). */
#define TLS_CIPHERS_12 "ECDHE+AESGCM:ECDHE+CHACHA20"

struct tls_server {
	char *cert_path;
	char *key_path;
	SSL_CTX *ctx; /* the context new connections use */
};

struct tls_conn {
	SSL *ssl;
	bool failed; /* a fatal error happened: no close_notify may follow */
	char error[160];
};

/* Writes OpenSSL's most recent queued reason (or fallback) into buf and clears the queue. */
static void take_reason(char *buf, size_t cap, const char *fallback)
{
	unsigned long e = ERR_peek_last_error();
	const char *reason = e != 0 ? ERR_reason_error_string(e) : NULL;
	snprintf(buf, cap, "%s", reason != NULL ? reason : fallback);
	ERR_clear_error();
}

/* Refuses encrypted keys instead of letting OpenSSL prompt on the terminal. */
static int no_password(char *buf, int size, int rwflag, void *arg)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)arg;
	return 0;
}

/* Builds a context from the two files; NULL (logged) when they cannot be used. */
static SSL_CTX *load_context(const char *cert_path, const char *key_path)
{
	char why[160];
	ERR_clear_error();
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		take_reason(why, sizeof why, "out of memory");
		log_error(TLS_LOG, "cannot create a TLS context: %s", why);
		return NULL;
	}
	SSL_CTX_set_default_passwd_cb(ctx, no_password);
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
				     SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				  SSL_MODE_RELEASE_BUFFERS);
	/* Stateless tickets still resume sessions; a cache would grow with every client. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (SSL_CTX_set_cipher_list(ctx, TLS_CIPHERS_12) != 1) {
		take_reason(why, sizeof why, "no usable cipher");
		log_error(TLS_LOG, "cannot set the TLS 1.2 ciphers: %s", why);
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1) {
		take_reason(why, sizeof why, "unreadable");
		log_error(TLS_LOG, "cannot use the certificate %s: %s", cert_path, why);
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1) {
		take_reason(why, sizeof why, "unreadable");
		log_error(TLS_LOG, "cannot use the private key %s: %s", key_path, why);
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		take_reason(why, sizeof why, "mismatch");
		log_error(TLS_LOG, "the private key %s does not match the certificate %s: %s",
			  key_path, cert_path, why);
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

imapq_err tls_server_create(const char *cert_path, const char *key_path,
			    struct tls_server **server_r)
{
	*server_r = NULL;
	struct tls_server *server = calloc(1, sizeof *server);
	if (server == NULL)
		return IMAPQ_E_NOMEM;
	server->cert_path = strdup(cert_path);
	server->key_path = strdup(key_path);
	if (server->cert_path == NULL || server->key_path == NULL) {
		tls_server_destroy(&server);
		return IMAPQ_E_NOMEM;
	}
	server->ctx = load_context(cert_path, key_path);
	if (server->ctx == NULL) {
		tls_server_destroy(&server);
		return IMAPQ_E_INVALID;
	}
	*server_r = server;
	return IMAPQ_OK;
}

imapq_err tls_server_reload(struct tls_server *server)
{
	SSL_CTX *ctx = load_context(server->cert_path, server->key_path);
	if (ctx == NULL) {
		log_error(TLS_LOG, "keeping the previous certificate");
		return IMAPQ_E_INVALID;
	}
	/* Live connections hold their own reference to the old context. */
	SSL_CTX_free(server->ctx);
	server->ctx = ctx;
	log_info(TLS_LOG, "loaded %s and %s for new connections", server->cert_path,
		 server->key_path);
	return IMAPQ_OK;
}

void tls_server_destroy(struct tls_server **serverp)
{
	struct tls_server *server = *serverp;
	if (server == NULL)
		return;
	*serverp = NULL;
	SSL_CTX_free(server->ctx);
	free(server->cert_path);
	free(server->key_path);
	free(server);
}

imapq_err tls_conn_create(struct tls_server *server, int fd, struct tls_conn **conn_r)
{
	*conn_r = NULL;
	struct tls_conn *conn = calloc(1, sizeof *conn);
	if (conn == NULL)
		return IMAPQ_E_NOMEM;
	ERR_clear_error();
	conn->ssl = SSL_new(server->ctx);
	if (conn->ssl == NULL || SSL_set_fd(conn->ssl, fd) != 1) {
		ERR_clear_error();
		SSL_free(conn->ssl);
		free(conn);
		return IMAPQ_E_NOMEM;
	}
	SSL_set_accept_state(conn->ssl);
	*conn_r = conn;
	return IMAPQ_OK;
}

/* Maps the outcome of a failed SSL call (ret <= 0) to a result, noting the reason of errors. */
static enum tls_io classify(struct tls_conn *conn, int ret)
{
	int err = SSL_get_error(conn->ssl, ret);
	int saved_errno = errno;
	switch (err) {
	case SSL_ERROR_WANT_READ:
		return TLS_IO_WANT_READ;
	case SSL_ERROR_WANT_WRITE:
		return TLS_IO_WANT_WRITE;
	case SSL_ERROR_ZERO_RETURN:
		return TLS_IO_CLOSED;
	case SSL_ERROR_SYSCALL:
		conn->failed = true;
		if (ERR_peek_last_error() != 0) {
			take_reason(conn->error, sizeof conn->error, "system error");
		} else if (saved_errno == 0 || saved_errno == ECONNRESET || saved_errno == EPIPE) {
			/* The peer went away, mid-record or between records. */
			return TLS_IO_CLOSED;
		} else {
			snprintf(conn->error, sizeof conn->error, "%s", strerror(saved_errno));
		}
		return TLS_IO_ERROR;
	default:
		conn->failed = true;
		take_reason(conn->error, sizeof conn->error, "protocol error");
		return TLS_IO_ERROR;
	}
}

enum tls_io tls_conn_handshake(struct tls_conn *conn)
{
	ERR_clear_error();
	errno = 0;
	int ret = SSL_do_handshake(conn->ssl);
	return ret == 1 ? TLS_IO_OK : classify(conn, ret);
}

enum tls_io tls_conn_read(struct tls_conn *conn, void *buf, size_t cap, size_t *n_r)
{
	*n_r = 0;
	ERR_clear_error();
	errno = 0;
	size_t n;
	int ret = SSL_read_ex(conn->ssl, buf, cap, &n);
	if (ret == 1) {
		*n_r = n;
		return TLS_IO_OK;
	}
	return classify(conn, ret);
}

enum tls_io tls_conn_write(struct tls_conn *conn, const void *buf, size_t len, size_t *n_r)
{
	*n_r = 0;
	ERR_clear_error();
	errno = 0;
	size_t n;
	int ret = SSL_write_ex(conn->ssl, buf, len, &n);
	if (ret == 1) {
		*n_r = n;
		return TLS_IO_OK;
	}
	return classify(conn, ret);
}

bool tls_conn_pending(const struct tls_conn *conn)
{
	return SSL_pending(conn->ssl) > 0;
}

const char *tls_conn_error(const struct tls_conn *conn)
{
	return conn->error[0] != '\0' ? conn->error : "unknown error";
}

void tls_conn_describe(const struct tls_conn *conn, char *buf, size_t cap)
{
	const char *cipher = SSL_get_cipher_name(conn->ssl);
	snprintf(buf, cap, "%s %s", SSL_get_version(conn->ssl), cipher != NULL ? cipher : "-");
}

void tls_conn_destroy(struct tls_conn **connp)
{
	struct tls_conn *conn = *connp;
	if (conn == NULL)
		return;
	*connp = NULL;
	if (!conn->failed && SSL_is_init_finished(conn->ssl)) {
		ERR_clear_error();
		SSL_shutdown(conn->ssl);
	}
	ERR_clear_error();
	SSL_free(conn->ssl);
	free(conn);
}
