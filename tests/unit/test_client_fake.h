/* A scripted IMAP server for the client tests: a thread on a loopback port that checks the
 * exact bytes the client sends and answers with canned bytes, optionally over TLS (implicit or
 * after a STARTTLS step) with a certificate made at test time. Header-only, because CMake makes
 * every tests/unit/test_*.c an executable. Failures are recorded, not asserted, in the thread;
 * the test checks fake_finish() in its own thread. */
#ifndef IMAPQ_TEST_CLIENT_FAKE_H
#define IMAPQ_TEST_CLIENT_FAKE_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* In a reply, this byte ends one write: the server pauses briefly before the next, so the
 * client sees the response split there. */
#define FAKE_SPLIT "\x01"
/* Seconds the server waits for bytes the script expects before it gives up. */
#define FAKE_PATIENCE_S 5

/* One step: the bytes the client must send (NULL: none), then the reply (NULL: none). */
struct fake_step {
	const char *expect;
	const char *reply;
	bool starttls; /* start TLS after the reply */
	int pause_ms;  /* wait this long before the reply */
	int quiet_ms;  /* the client must send nothing more for this long (it awaits "+") */
};

enum fake_end {
	FAKE_END_WAIT,	/* read until the client closes; any byte is a failure */
	FAKE_END_CLOSE, /* close right after the last step */
	FAKE_END_HOLD,	/* read and ignore everything until the client closes */
};

struct fake_server {
	int listen_fd;
	int fd;
	unsigned port;
	pthread_t thread;
	const char *greeting;
	const struct fake_step *steps;
	size_t count;
	enum fake_end end;
	bool implicit_tls;
	SSL_CTX *ctx;
	SSL *ssl;
	size_t steps_done;
	char failure[512];
};

static inline void fake_fail(struct fake_server *fs, const char *what, const char *got, size_t len)
{
	if (fs->failure[0] == '\0')
		snprintf(fs->failure, sizeof(fs->failure), "step %zu: %s [%.*s]", fs->steps_done,
			 what, (int)(len > 300 ? 300 : len), got ? got : "");
}

static inline ssize_t fake_io_read(struct fake_server *fs, char *b, size_t n)
{
	if (fs->ssl != NULL) {
		size_t got = 0;

		return SSL_read_ex(fs->ssl, b, n, &got) == 1 ? (ssize_t)got : -1;
	}
	return read(fs->fd, b, n);
}

static inline bool fake_io_write(struct fake_server *fs, const char *b, size_t n)
{
	if (fs->ssl != NULL) {
		size_t put = 0;

		return n == 0 || SSL_write_ex(fs->ssl, b, n, &put) == 1;
	}
	while (n > 0) {
		ssize_t w = send(fs->fd, b, n, MSG_NOSIGNAL);

		if (w <= 0)
			return false;
		b += w;
		n -= (size_t)w;
	}
	return true;
}

static inline void fake_pause_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* Sends a reply, split at FAKE_SPLIT bytes. */
static inline bool fake_send(struct fake_server *fs, const char *reply)
{
	while (reply != NULL && *reply != '\0') {
		const char *cut = strchr(reply, FAKE_SPLIT[0]);
		size_t n = cut ? (size_t)(cut - reply) : strlen(reply);

		if (!fake_io_write(fs, reply, n))
			return false;
		if (cut == NULL)
			break;
		fake_pause_ms(5);
		reply = cut + 1;
	}
	return true;
}

static inline bool fake_start_tls(struct fake_server *fs)
{
	fs->ssl = SSL_new(fs->ctx);
	if (fs->ssl == NULL || SSL_set_fd(fs->ssl, fs->fd) != 1 || SSL_accept(fs->ssl) != 1) {
		fake_fail(fs, "TLS handshake failed", NULL, 0);
		return false;
	}
	return true;
}

static inline void *fake_main(void *arg)
{
	struct fake_server *fs = arg;
	struct timeval tv = {FAKE_PATIENCE_S, 0};
	char buf[4096];

	fs->fd = accept(fs->listen_fd, NULL, NULL);
	if (fs->fd < 0) {
		fake_fail(fs, "accept failed", NULL, 0);
		return NULL;
	}
	setsockopt(fs->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (fs->implicit_tls && !fake_start_tls(fs))
		goto out;
	if (!fake_send(fs, fs->greeting))
		goto out;
	for (; fs->steps_done < fs->count; fs->steps_done++) {
		const struct fake_step *st = &fs->steps[fs->steps_done];
		size_t want = st->expect ? strlen(st->expect) : 0, have = 0;
		char *got = malloc(want + 1);

		while (got != NULL && have < want) {
			ssize_t n = fake_io_read(fs, got + have, want - have);

			if (n <= 0)
				break;
			have += (size_t)n;
		}
		if (got == NULL || have < want ||
		    (want > 0 && memcmp(got, st->expect, want) != 0)) {
			fake_fail(fs, have < want ? "client sent too little" : "client sent", got,
				  have);
			free(got);
			goto out;
		}
		free(got);
		if (st->quiet_ms > 0) {
			struct pollfd pfd = {.fd = fs->fd, .events = POLLIN};

			if ((fs->ssl != NULL && SSL_pending(fs->ssl) > 0) ||
			    poll(&pfd, 1, st->quiet_ms) > 0) {
				fake_fail(fs, "client sent more before the continuation", NULL, 0);
				goto out;
			}
		}
		if (st->pause_ms > 0)
			fake_pause_ms(st->pause_ms);
		if (!fake_send(fs, st->reply))
			goto out;
		if (st->starttls && !fake_start_tls(fs))
			goto out;
	}
	if (fs->end != FAKE_END_CLOSE) {
		ssize_t n;

		while ((n = fake_io_read(fs, buf, sizeof(buf))) > 0)
			if (fs->end == FAKE_END_WAIT)
				fake_fail(fs, "client sent more than the script expects", buf,
					  (size_t)n);
	}
out:
	if (fs->ssl != NULL) {
		SSL_free(fs->ssl);
		fs->ssl = NULL;
	}
	close(fs->fd);
	return NULL;
}

/* Listens on a loopback port and serves the script in a thread. */
static inline bool fake_start(struct fake_server *fs)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);

	fs->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fs->listen_fd < 0 || bind(fs->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(fs->listen_fd, 1) != 0 ||
	    getsockname(fs->listen_fd, (struct sockaddr *)&sa, &len) != 0)
		return false;
	fs->port = ntohs(sa.sin_port);
	return pthread_create(&fs->thread, NULL, fake_main, fs) == 0;
}

/* Joins the thread; returns the first failure or NULL when the script ran to its end. */
static inline const char *fake_finish(struct fake_server *fs)
{
	pthread_join(fs->thread, NULL);
	close(fs->listen_fd);
	if (fs->failure[0] == '\0' && fs->steps_done < fs->count)
		snprintf(fs->failure, sizeof(fs->failure), "only %zu of %zu steps ran",
			 fs->steps_done, fs->count);
	return fs->failure[0] ? fs->failure : NULL;
}

/* A self-signed P-256 certificate for CN=localhost with the names localhost and 127.0.0.1,
 * made with the OpenSSL API; the certificate is also written to cert_path (PEM) for use as a
 * CA file. Returns a server context or NULL. */
static inline SSL_CTX *fake_tls_context(const char *cert_path)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509V3_CTX v3;
	X509_NAME *name;
	SSL_CTX *ctx = NULL;
	FILE *f;
	static const struct {
		int nid;
		const char *value;
	} exts[] = {
	    {NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1"},
	    {NID_basic_constraints, "critical,CA:TRUE"},
	};

	if (key == NULL || x == NULL)
		goto out;
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), (long)time(NULL));
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, key);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1,
				   -1, 0);
	X509_set_issuer_name(x, name);
	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
		X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, exts[i].nid, exts[i].value);

		if (ext == NULL)
			goto out;
		X509_add_ext(x, ext, -1);
		X509_EXTENSION_free(ext);
	}
	if (X509_sign(x, key, EVP_sha256()) == 0)
		goto out;
	f = fopen(cert_path, "w");
	if (f == NULL)
		goto out;
	PEM_write_X509(f, x);
	fclose(f);
	ctx = SSL_CTX_new(TLS_server_method());
	if (ctx != NULL &&
	    (SSL_CTX_use_certificate(ctx, x) != 1 || SSL_CTX_use_PrivateKey(ctx, key) != 1)) {
		SSL_CTX_free(ctx);
		ctx = NULL;
	}
out:
	X509_free(x);
	EVP_PKEY_free(key);
	return ctx;
}

#endif
