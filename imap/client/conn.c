/* TCP connect with a deadline, TLS through OpenSSL, and non-blocking reads and writes. */
#include "imap/client/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct client_conn {
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
	short read_events;  /* what the last TLS read waits for (0: plain POLLIN) */
	short write_events; /* what the last TLS write waits for (0: plain POLLOUT) */
};

/* Milliseconds on a monotonic clock, for deadlines. */
static long long conn_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left until deadline (-1 for none), at least 0. */
static int conn_left_ms(long long deadline)
{
	long long left;

	if (deadline < 0)
		return -1;
	left = deadline - conn_now_ms();
	return left < 0 ? 0 : (int)left;
}

static long long conn_deadline(int timeout_ms)
{
	return timeout_ms < 0 ? -1 : conn_now_ms() + timeout_ms;
}

/* Connects one address within the deadline. */
static imapq_err conn_try(const struct addrinfo *ai, long long deadline, int *fd_r, int *errno_r)
{
	int fd =
	    socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
	int one = 1, soerr = 0;
	socklen_t len = sizeof(soerr);

	if (fd < 0) {
		*errno_r = errno;
		return IMAPQ_E_IO;
	}
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
		struct pollfd pfd = {.fd = fd, .events = POLLOUT};
		int r;

		if (errno != EINPROGRESS) {
			*errno_r = errno;
			close(fd);
			return IMAPQ_E_IO;
		}
		do
			r = poll(&pfd, 1, conn_left_ms(deadline));
		while (r < 0 && errno == EINTR);
		if (r == 0) {
			close(fd);
			*errno_r = ETIMEDOUT;
			return IMAPQ_E_TIMEOUT;
		}
		if (r < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 ||
		    soerr != 0) {
			*errno_r = r < 0 ? errno : soerr;
			close(fd);
			return IMAPQ_E_IO;
		}
	}
	/* Nagle with delayed ACKs adds tens of milliseconds to every command round trip. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	*fd_r = fd;
	return IMAPQ_OK;
}

imapq_err client_conn_open(const char *host, unsigned port, int timeout_ms, char *errbuf,
			   size_t errcap, struct client_conn **conn_r)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *list = NULL;
	long long deadline = conn_deadline(timeout_ms);
	char service[16];
	imapq_err err = IMAPQ_E_IO;
	int fd = -1, last_errno = 0, r;
	struct sigaction sa;

	*conn_r = NULL;
	if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
		signal(SIGPIPE, SIG_IGN);
	snprintf(service, sizeof(service), "%u", port);
	r = getaddrinfo(host, service, &hints, &list);
	if (r != 0) {
		snprintf(errbuf, errcap, "cannot resolve %s: %s", host, gai_strerror(r));
		return IMAPQ_E_IO;
	}
	for (const struct addrinfo *ai = list; ai != NULL; ai = ai->ai_next) {
		err = conn_try(ai, deadline, &fd, &last_errno);
		if (err == IMAPQ_OK || err == IMAPQ_E_TIMEOUT)
			break;
	}
	freeaddrinfo(list);
	if (err != IMAPQ_OK) {
		snprintf(errbuf, errcap, "cannot connect to %s port %u: %s", host, port,
			 strerror(last_errno));
		return err;
	}
	struct client_conn *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		close(fd);
		snprintf(errbuf, errcap, "out of memory");
		return IMAPQ_E_NOMEM;
	}
	c->fd = fd;
	*conn_r = c;
	return IMAPQ_OK;
}

void client_conn_close(struct client_conn **conn)
{
	struct client_conn *c = *conn;

	if (c == NULL)
		return;
	SSL_free(c->ssl);
	SSL_CTX_free(c->ctx);
	close(c->fd);
	free(c);
	*conn = NULL;
}

bool client_conn_is_tls(const struct client_conn *c)
{
	return c->ssl != NULL;
}

int client_conn_fd(const struct client_conn *c)
{
	return c->fd;
}

/* Builds the context and the SSL object, with peer checks unless tls->insecure. */
static imapq_err conn_tls_setup(struct client_conn *c, const char *name,
				const struct client_conn_tls *tls, char *errbuf, size_t errcap)
{
	unsigned char addr[16];
	bool is_ip = inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1;

	c->ctx = SSL_CTX_new(TLS_client_method());
	if (c->ctx == NULL)
		goto nomem;
	SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(c->ctx,
			 SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (!tls->insecure) {
		int ok = tls->ca_file ? SSL_CTX_load_verify_locations(c->ctx, tls->ca_file, NULL)
				      : SSL_CTX_set_default_verify_paths(c->ctx);

		if (ok != 1) {
			snprintf(errbuf, errcap, "cannot load the trusted certificates%s%s",
				 tls->ca_file ? " from " : "", tls->ca_file ? tls->ca_file : "");
			return IMAPQ_E_IO;
		}
		SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
	}
	c->ssl = SSL_new(c->ctx);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
		goto nomem;
	if (!is_ip)
		SSL_set_tlsext_host_name(c->ssl, name);
	if (!tls->insecure) {
		int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), name)
			       : SSL_set1_host(c->ssl, name);

		if (ok != 1)
			goto nomem;
	}
	return IMAPQ_OK;
nomem:
	snprintf(errbuf, errcap, "cannot set up TLS");
	return IMAPQ_E_NOMEM;
}

imapq_err client_conn_start_tls(struct client_conn *c, const char *host,
				const struct client_conn_tls *tls, int timeout_ms, char *errbuf,
				size_t errcap)
{
	const char *name = tls->server_name ? tls->server_name : host;
	long long deadline = conn_deadline(timeout_ms);
	imapq_err err;

	if (c->ssl != NULL) {
		snprintf(errbuf, errcap, "TLS is already running");
		return IMAPQ_E_INVALID;
	}
	err = conn_tls_setup(c, name, tls, errbuf, errcap);
	if (err != IMAPQ_OK)
		return err;
	for (;;) {
		struct pollfd pfd = {.fd = c->fd};
		int r;

		ERR_clear_error();
		r = SSL_connect(c->ssl);
		if (r == 1)
			return IMAPQ_OK;
		switch (SSL_get_error(c->ssl, r)) {
		case SSL_ERROR_WANT_READ:
			pfd.events = POLLIN;
			break;
		case SSL_ERROR_WANT_WRITE:
			pfd.events = POLLOUT;
			break;
		default: {
			long v = SSL_get_verify_result(c->ssl);
			unsigned long e = ERR_peek_last_error();

			if (v != X509_V_OK) {
				snprintf(errbuf, errcap,
					 "the server's certificate is not trusted: %s",
					 X509_verify_cert_error_string(v));
				return IMAPQ_E_AUTH;
			}
			snprintf(errbuf, errcap, "TLS handshake failed: %s",
				 e ? ERR_reason_error_string(e) : "the connection closed");
			return IMAPQ_E_IO;
		}
		}
		do
			r = poll(&pfd, 1, conn_left_ms(deadline));
		while (r < 0 && errno == EINTR);
		if (r == 0) {
			snprintf(errbuf, errcap, "TLS handshake timed out");
			return IMAPQ_E_TIMEOUT;
		}
		if (r < 0) {
			snprintf(errbuf, errcap, "poll failed: %s", strerror(errno));
			return IMAPQ_E_IO;
		}
	}
}

imapq_err client_conn_read(struct client_conn *c, void *data, size_t cap, size_t *n_r)
{
	*n_r = 0;
	if (c->ssl == NULL) {
		ssize_t n;

		do
			n = recv(c->fd, data, cap, 0);
		while (n < 0 && errno == EINTR);
		if (n > 0) {
			*n_r = (size_t)n;
			return IMAPQ_OK;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return IMAPQ_OK;
		return IMAPQ_E_IO;
	}
	ERR_clear_error();
	c->read_events = 0;
	int r = SSL_read_ex(c->ssl, data, cap, n_r);

	if (r == 1)
		return IMAPQ_OK;
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		c->read_events = POLLIN;
		return IMAPQ_OK;
	case SSL_ERROR_WANT_WRITE:
		c->read_events = POLLOUT;
		return IMAPQ_OK;
	default:
		return IMAPQ_E_IO;
	}
}

imapq_err client_conn_write(struct client_conn *c, const void *data, size_t len, size_t *n_r)
{
	*n_r = 0;
	if (len == 0)
		return IMAPQ_OK;
	if (c->ssl == NULL) {
		ssize_t n;

		do
			n = send(c->fd, data, len, MSG_NOSIGNAL);
		while (n < 0 && errno == EINTR);
		if (n >= 0) {
			*n_r = (size_t)n;
			return IMAPQ_OK;
		}
		return errno == EAGAIN || errno == EWOULDBLOCK ? IMAPQ_OK : IMAPQ_E_IO;
	}
	ERR_clear_error();
	c->write_events = 0;
	int r = SSL_write_ex(c->ssl, data, len, n_r);

	if (r == 1)
		return IMAPQ_OK;
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		c->write_events = POLLIN;
		return IMAPQ_OK;
	case SSL_ERROR_WANT_WRITE:
		c->write_events = POLLOUT;
		return IMAPQ_OK;
	default:
		return IMAPQ_E_IO;
	}
}

bool client_conn_pending(const struct client_conn *c)
{
	return c->ssl != NULL && SSL_pending(c->ssl) > 0;
}

short client_conn_events(const struct client_conn *c, bool want_read, bool want_write)
{
	short ev = 0;

	if (want_read)
		ev |= c->read_events ? c->read_events : POLLIN;
	if (want_write)
		ev |= c->write_events ? c->write_events : POLLOUT;
	return ev;
}

imapq_err client_conn_wait(struct client_conn *c, bool want_read, bool want_write, int timeout_ms,
			   bool *ready_r)
{
	struct pollfd pfd = {.fd = c->fd, .events = client_conn_events(c, want_read, want_write)};
	int r;

	*ready_r = false;
	if (want_read && client_conn_pending(c)) {
		*ready_r = true;
		return IMAPQ_OK;
	}
	r = poll(&pfd, 1, timeout_ms);
	if (r < 0)
		return errno == EINTR ? IMAPQ_OK : IMAPQ_E_IO;
	if (r == 0)
		return IMAPQ_E_TIMEOUT;
	*ready_r = true;
	return IMAPQ_OK;
}
