/* An in-process IMAP server for tests: a fresh store in a temporary folder, the server on
 * 127.0.0.1 with a port picked by the kernel, its event loop on a background thread, and blocking
 * client connections that exchange lines with it.
 *
 * Include after <cmocka.h>; every helper asserts with cmocka, so a broken exchange fails the test
 * that made it. The only account is user "u" with password "p". Reads time out after a few
 * seconds, so a server that stays silent fails a test instead of hanging it. */
#ifndef IMAPQ_TEST_IMAP_HARNESS_H
#define IMAPQ_TEST_IMAP_HARNESS_H

#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "imap/base/crc32c.h"
#include "tests/unit/tmpdir.h"
#include "imap/base/log.h"
#include "imap/base/loop.h"
#include "imap/server/server.h"
#include "imap/store/store.h"

/* Seconds a read waits for the server before the test fails. */
#define HARNESS_READ_TIMEOUT_S 5
/* Client connections one test may hold open at once. */
#define HARNESS_MAX_CONNS 16

struct conn;

/* A running server and everything it owns. */
struct harness {
	char dir[64];
	struct store *store;
	struct loop *loop;
	struct imap_server *server;
	unsigned port;
	pthread_t thread;
	/* Connections still open, closed by harness_stop() when a test ends early. */
	struct conn *conns[HARNESS_MAX_CONNS];
};

/* One client connection with its unread input. */
struct conn {
	struct harness *h;
	int fd;
	char *in;
	size_t off, len, cap; /* unread input: in[off .. off + len) */
	unsigned next_tag;
};

/* Response lines, each without its final CRLF; a literal stays inline as "{N}\r\n" and its
 * bytes, as it came on the wire. */
struct lines {
	char **v;
	size_t n;
};

/* Accepts exactly the user "u" with the password "p". */
static inline imapq_err harness_auth(void *ctx, const char *user, const char *password,
				     const struct access **access_r)
{
	(void)ctx;
	*access_r = NULL;
	return strcmp(user, "u") == 0 && strcmp(password, "p") == 0 ? IMAPQ_OK : IMAPQ_E_AUTH;
}

/* The loop thread's body. */
static inline void *harness_run(void *arg)
{
	struct harness *h = arg;
	loop_run(h->loop);
	return NULL;
}

/* Starts a server over a fresh store with the given auth callback (NULL allowed) and the given
 * time limit for searches on the search thread (0: the server's default); the caller ends it
 * with harness_stop(). */
static inline struct harness *harness_start_opts(imap_auth_fn *auth, unsigned search_ms)
{
	struct harness *h = calloc(1, sizeof *h);
	assert_non_null(h);
	log_set_level(LOG_ERROR);
	assert_true(tmpdir_make(h->dir));
	struct store_options so = {.dir = h->dir, .fsync = JOURNAL_FSYNC_OFF};
	struct store_report rep;
	assert_int_equal(store_open(&so, &rep, &h->store), IMAPQ_OK);
	assert_int_equal(loop_create(&h->loop), IMAPQ_OK);
	struct imap_server_options o = {.loop = h->loop,
					.store = h->store,
					.auth = auth,
					.spool_dir = h->dir,
					.search_ms = search_ms};
	assert_int_equal(imap_server_create(&o, &h->server), IMAPQ_OK);
	assert_int_equal(imap_server_listen(h->server, "127.0.0.1", 0, &h->port), IMAPQ_OK);
	assert_int_equal(pthread_create(&h->thread, NULL, harness_run, h), 0);
	return h;
}

/* Starts a server over a fresh store with the given auth callback (NULL allowed). */
static inline struct harness *harness_start_with(imap_auth_fn *auth)
{
	return harness_start_opts(auth, 0);
}

/* Starts a server over a fresh store that accepts harness_auth's users. */
static inline struct harness *harness_start(void)
{
	return harness_start_with(harness_auth);
}

static inline void conn_close(struct conn **cp);

/* Stops the loop, frees the server, the store and the loop, and removes the folder. */
static inline void harness_stop(struct harness **hp)
{
	struct harness *h = *hp;
	if (h == NULL)
		return;
	*hp = NULL;
	for (size_t i = 0; i < HARNESS_MAX_CONNS; i++)
		conn_close(&h->conns[i]);
	loop_stop(h->loop);
	pthread_join(h->thread, NULL);
	imap_server_destroy(&h->server);
	store_close(&h->store);
	loop_destroy(&h->loop);
	tmpdir_remove(h->dir);
	free(h);
}

/* --- lines --- */

static inline void lines_push(struct lines *l, char *line)
{
	char **v = realloc(l->v, (l->n + 1) * sizeof *v);
	assert_non_null(v);
	l->v = v;
	l->v[l->n++] = line;
}

static inline void lines_free(struct lines *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

/* Prints the lines, so a failing assertion shows what the server said. */
static inline void lines_dump(const struct lines *l, const char *what)
{
	print_message("%s (%zu lines):\n", what, l->n);
	for (size_t i = 0; i < l->n; i++)
		print_message("  [%s]\n", l->v[i]);
}

/* True when a line equals text exactly. */
static inline bool lines_has(const struct lines *l, const char *text)
{
	for (size_t i = 0; i < l->n; i++) {
		if (strcmp(l->v[i], text) == 0)
			return true;
	}
	return false;
}

/* The index of the first line starting with prefix, or -1. */
static inline int lines_find(const struct lines *l, const char *prefix)
{
	for (size_t i = 0; i < l->n; i++) {
		if (strncmp(l->v[i], prefix, strlen(prefix)) == 0)
			return (int)i;
	}
	return -1;
}

/* The number of lines starting with prefix. */
static inline size_t lines_count(const struct lines *l, const char *prefix)
{
	size_t k = 0;
	for (size_t i = 0; i < l->n; i++)
		k += strncmp(l->v[i], prefix, strlen(prefix)) == 0;
	return k;
}

/* The number of lines containing needle anywhere. */
static inline size_t lines_count_sub(const struct lines *l, const char *needle)
{
	size_t k = 0;
	for (size_t i = 0; i < l->n; i++)
		k += strstr(l->v[i], needle) != NULL;
	return k;
}

/* Fails unless a line equals text. */
#define assert_line(l, text)                                                                       \
	do {                                                                                       \
		if (!lines_has((l), (text))) {                                                     \
			lines_dump((l), "untagged");                                               \
			fail_msg("no line [%s]", (text));                                          \
		}                                                                                  \
	} while (0)

/* Fails when a line equals text. */
#define assert_no_line(l, text)                                                                    \
	do {                                                                                       \
		if (lines_has((l), (text))) {                                                      \
			lines_dump((l), "untagged");                                               \
			fail_msg("unexpected line [%s]", (text));                                  \
		}                                                                                  \
	} while (0)

/* Fails unless the tagged line starts with prefix. */
#define assert_tagged(tagged, prefix)                                                              \
	do {                                                                                       \
		if (strncmp((tagged), (prefix), strlen(prefix)) != 0)                              \
			fail_msg("tagged [%s] does not start with [%s]", (tagged), (prefix));      \
	} while (0)

/* The number after "key " or "key (" in text (e.g. "MODSEQ (12)"), or 0 when absent. */
static inline uint64_t line_number(const char *text, const char *key)
{
	const char *p = strstr(text, key);
	if (p == NULL)
		return 0;
	p += strlen(key);
	while (*p == ' ' || *p == '(')
		p++;
	return strtoull(p, NULL, 10);
}

/* --- connections --- */

/* Reads more bytes into the connection's buffer; fails the test on timeout or close. */
static inline void conn_fill(struct conn *c)
{
	if (c->off > 0 && c->off + c->len + 4096 > c->cap) {
		/* Reads take from the front without moving the rest; compact only here. */
		memmove(c->in, c->in + c->off, c->len);
		c->off = 0;
	}
	if (c->len + 4096 > c->cap) {
		c->cap = c->cap ? c->cap * 2 : 16384;
		c->in = realloc(c->in, c->cap);
		assert_non_null(c->in);
	}
	ssize_t n;
	do {
		n = recv(c->fd, c->in + c->off + c->len, c->cap - c->off - c->len, 0);
	} while (n < 0 && errno == EINTR);
	if (n <= 0)
		fail_msg("connection %s while reading", n == 0 ? "closed" : "timed out");
	c->len += (size_t)n;
}

/* True when the server closed the connection (reads 0 bytes after the buffered ones). */
static inline bool conn_closed(struct conn *c)
{
	if (c->len > 0)
		return false;
	char b;
	ssize_t n = recv(c->fd, &b, 1, 0);
	if (n == 1) {
		c->len = c->off = 0;
		if (c->cap == 0) {
			c->cap = 16384;
			c->in = malloc(c->cap);
			assert_non_null(c->in);
		}
		c->in[c->len++] = b;
	}
	return n == 0;
}

/* Takes n raw bytes from the input. */
static inline void conn_take(struct conn *c, char *dst, size_t n)
{
	while (c->len < n)
		conn_fill(c);
	memcpy(dst, c->in + c->off, n);
	c->off += n;
	c->len -= n;
	if (c->len == 0)
		c->off = 0;
}

/* Reads one response line (without its final CRLF); a literal {N} at a line's end is read and
 * kept inline, followed by the rest of the logical line. The caller frees the result. */
static inline char *conn_line(struct conn *c)
{
	char *out = NULL;
	size_t olen = 0;
	for (;;) {
		char *lf = c->len > 0 ? memchr(c->in + c->off, '\n', c->len) : NULL;
		while (lf == NULL) {
			conn_fill(c);
			lf = memchr(c->in + c->off, '\n', c->len);
		}
		size_t n = (size_t)(lf - (c->in + c->off)) + 1;
		out = realloc(out, olen + n + 1);
		assert_non_null(out);
		conn_take(c, out + olen, n);
		olen += n;
		olen -= 1; /* the LF */
		if (olen > 0 && out[olen - 1] == '\r')
			olen--;
		out[olen] = '\0';
		/* A literal: "{N}" ends the line; its N bytes follow. */
		size_t k = olen;
		if (k < 3 || out[k - 1] != '}')
			return out;
		size_t open = k - 1;
		while (open > 0 && out[open - 1] >= '0' && out[open - 1] <= '9')
			open--;
		if (open == 0 || out[open - 1] != '{' || open == k - 1)
			return out;
		size_t size = strtoul(out + open, NULL, 10);
		out = realloc(out, olen + 2 + size + 1);
		assert_non_null(out);
		memcpy(out + olen, "\r\n", 2);
		olen += 2;
		conn_take(c, out + olen, size);
		olen += size;
		out[olen] = '\0';
	}
}

/* Sends bytes exactly as given. */
static inline void send_raw(struct conn *c, const void *data, size_t len)
{
	const char *p = data;
	while (len > 0) {
		ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		assert_true(n > 0);
		p += n;
		len -= (size_t)n;
	}
}

/* Sends one line, adding CRLF. */
static inline void send_line(struct conn *c, const char *line)
{
	send_raw(c, line, strlen(line));
	send_raw(c, "\r\n", 2);
}

/* Reads lines until the one tagged tag; untagged (and continuation) lines go to *untagged when it
 * is not NULL. Returns the tagged line (the caller frees it). */
static inline char *expect(struct conn *c, const char *tag, struct lines *untagged)
{
	size_t tlen = strlen(tag);
	for (;;) {
		char *line = conn_line(c);
		if (strncmp(line, tag, tlen) == 0 && line[tlen] == ' ')
			return line;
		if (untagged != NULL)
			lines_push(untagged, line);
		else
			free(line);
	}
}

/* Connects a fresh connection outside the harness's table (the caller closes it with
 * conn_close()) and reads the greeting into *greeting_r (may be NULL). */
static inline struct conn *conn_connect(struct harness *h, char **greeting_r)
{
	struct conn *c = calloc(1, sizeof *c);
	assert_non_null(c);
	c->h = h;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(c->fd >= 0);
	struct timeval tv = {.tv_sec = HARNESS_READ_TIMEOUT_S};
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)h->port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(c->fd, (struct sockaddr *)&sa, sizeof sa), 0);
	char *greeting = conn_line(c);
	assert_tagged(greeting, "* OK ");
	if (greeting_r != NULL)
		*greeting_r = greeting;
	else
		free(greeting);
	return c;
}

/* Connects without logging in, keeping the connection in the harness's table (harness_stop()
 * closes it), and reads the greeting into *greeting_r (may be NULL). */
static inline struct conn *conn_open_raw(struct harness *h, char **greeting_r)
{
	size_t slot = 0;
	while (slot < HARNESS_MAX_CONNS && h->conns[slot] != NULL)
		slot++;
	assert_true(slot < HARNESS_MAX_CONNS);
	h->conns[slot] = conn_connect(h, greeting_r);
	return h->conns[slot];
}

/* Runs one command with a fresh tag; returns the tagged line and fills *untagged (may be NULL). */
static inline char *command(struct conn *c, const char *text, struct lines *untagged)
{
	char tag[16], *line;
	snprintf(tag, sizeof tag, "t%u", ++c->next_tag);
	size_t len = strlen(tag) + 1 + strlen(text) + 1;
	line = malloc(len);
	assert_non_null(line);
	snprintf(line, len, "%s %s", tag, text);
	send_line(c, line);
	free(line);
	char *tagged = expect(c, tag, untagged);
	/* Return the line without its tag, so callers compare "OK ...", "NO ...", "BAD ...". */
	size_t skip = strlen(tag) + 1;
	memmove(tagged, tagged + skip, strlen(tagged + skip) + 1);
	return tagged;
}

/* Runs a command and asserts its tagged reply starts with want (e.g. "OK"); frees the reply. */
static inline void command_ok(struct conn *c, const char *text, const char *want,
			      struct lines *untagged)
{
	char *tagged = command(c, text, untagged);
	if (strncmp(tagged, want, strlen(want)) != 0) {
		if (untagged != NULL)
			lines_dump(untagged, "untagged");
		fail_msg("%s -> [%s], wanted [%s...]", text, tagged, want);
	}
	free(tagged);
}

/* Connects and logs in as u/p. */
static inline struct conn *conn_open(struct harness *h)
{
	struct conn *c = conn_open_raw(h, NULL);
	command_ok(c, "LOGIN u p", "OK", NULL);
	return c;
}

/* Connects, logs in and selects mailbox (with extra SELECT parameters when params is not
 * NULL). */
static inline struct conn *conn_select(struct harness *h, const char *mailbox, const char *params)
{
	struct conn *c = conn_open(h);
	char text[512];
	snprintf(text, sizeof text, "SELECT %s%s%s", mailbox, params ? " " : "",
		 params ? params : "");
	command_ok(c, text, "OK", NULL);
	return c;
}

static inline void conn_close(struct conn **cp)
{
	struct conn *c = *cp;
	if (c == NULL)
		return;
	*cp = NULL;
	for (size_t i = 0; i < HARNESS_MAX_CONNS; i++) {
		if (c->h->conns[i] == c)
			c->h->conns[i] = NULL;
	}
	close(c->fd);
	free(c->in);
	free(c);
}

/* --- setting up mailbox state straight through the store --- */

/* A small RFC 5322 message whose subject and body carry n. */
static inline void harness_message(char *buf, size_t cap, unsigned n)
{
	snprintf(buf, cap,
		 "From: Producer <p@example.com>\r\nTo: q@example.com\r\nSubject: job %u\r\n"
		 "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <%u@example.com>\r\n\r\n"
		 "payload %u\r\n",
		 n, n, n);
}

/* The id of a mailbox, creating it when missing. */
static inline uint32_t harness_mailbox(struct harness *h, const char *name)
{
	uint32_t id;
	if (store_mailbox_find(h->store, name, &id) == IMAPQ_OK)
		return id;
	assert_int_equal(store_mailbox_create(h->store, name, &id, NULL), IMAPQ_OK);
	return id;
}

/* Appends message n to a mailbox with the given flags; returns its UID. With lsn_r the append
 * is not waited for (store_wait(*lsn_r) does that), else it is durable on return. */
static inline uint32_t harness_append_lsn(struct harness *h, const char *mailbox, uint64_t flags,
					  unsigned n, uint64_t *lsn_r)
{
	char text[512];
	harness_message(text, sizeof text, n);
	struct journal_body b = {.data = text, .fd = -1, .len = strlen(text)};
	b.crc = crc32c(0, text, b.len);
	uint32_t uid;
	uint64_t modseq;
	assert_int_equal(store_append(h->store, harness_mailbox(h, mailbox), flags, 1700000000, &b,
				      &uid, &modseq, lsn_r),
			 IMAPQ_OK);
	return uid;
}

/* Appends message n to a mailbox with the given flags, durably; returns its UID. */
static inline uint32_t harness_append(struct harness *h, const char *mailbox, uint64_t flags,
				      unsigned n)
{
	return harness_append_lsn(h, mailbox, flags, n, NULL);
}

/* Appends count messages numbered from 1. */
static inline void harness_fill(struct harness *h, const char *mailbox, unsigned count)
{
	/* One wait for durability at the end, not one per message. */
	uint64_t lsn = 0;
	for (unsigned i = 1; i <= count; i++)
		harness_append_lsn(h, mailbox, 0, i, &lsn);
	if (count > 0)
		assert_int_equal(store_wait(h->store, lsn), IMAPQ_OK);
}

/* Sets (op) flags on one message, as another client would. */
static inline void harness_flags(struct harness *h, const char *mailbox, uint32_t uid,
				 enum store_flag_op op, uint64_t flags)
{
	struct uid_range r = {uid, uid};
	assert_int_equal(store_flags(h->store, harness_mailbox(h, mailbox), &r, 1, op, flags, NULL,
				     NULL, NULL, NULL),
			 IMAPQ_OK);
}

/* The flag bit of a keyword, defining it in the mailbox when missing. */
static inline uint64_t harness_keyword(struct harness *h, const char *mailbox, const char *name)
{
	unsigned k;
	uint64_t lsn;
	assert_int_equal(store_keyword(h->store, harness_mailbox(h, mailbox), name, true, &k, &lsn),
			 IMAPQ_OK);
	return STORE_KEYWORD(k);
}

/* Expunges the given UIDs (marking them \Deleted first), as another client would. */
static inline void harness_expunge(struct harness *h, const char *mailbox, uint32_t lo, uint32_t hi)
{
	uint32_t id = harness_mailbox(h, mailbox);
	struct uid_range r = {lo, hi};
	assert_int_equal(store_flags(h->store, id, &r, 1, STORE_FLAGS_ADD, STORE_DELETED, NULL,
				     NULL, NULL, NULL),
			 IMAPQ_OK);
	assert_int_equal(store_expunge(h->store, id, &r, 1, NULL, NULL, NULL), IMAPQ_OK);
}

/* The mailbox's current status. */
static inline struct store_mailbox_status harness_status(struct harness *h, const char *mailbox)
{
	struct store_mailbox_status st;
	assert_int_equal(store_mailbox_status(h->store, harness_mailbox(h, mailbox), &st),
			 IMAPQ_OK);
	return st;
}

/* A message's mod-sequence. */
static inline uint64_t harness_modseq(struct harness *h, const char *mailbox, uint32_t uid)
{
	struct store_message m;
	assert_int_equal(store_message_get(h->store, harness_mailbox(h, mailbox), uid, &m),
			 IMAPQ_OK);
	return m.modseq;
}

/* A message's flags. */
static inline uint64_t harness_message_flags(struct harness *h, const char *mailbox, uint32_t uid)
{
	struct store_message m;
	assert_int_equal(store_message_get(h->store, harness_mailbox(h, mailbox), uid, &m),
			 IMAPQ_OK);
	return m.flags;
}

/* True when the message exists. */
static inline bool harness_exists(struct harness *h, const char *mailbox, uint32_t uid)
{
	struct store_message m;
	return store_message_get(h->store, harness_mailbox(h, mailbox), uid, &m) == IMAPQ_OK;
}

/* --- cmocka glue: every test gets a fresh server in *state --- */

static inline int harness_setup(void **state)
{
	*state = harness_start();
	return 0;
}

static inline int harness_teardown(void **state)
{
	struct harness *h = *state;
	harness_stop(&h);
	return 0;
}

#endif
