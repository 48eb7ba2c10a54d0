/* libFuzzer target: a whole IMAP server session in process. The input is what a client sends
 * after logging in and selecting a mailbox of a small store (plain, multipart and nested
 * messages, keywords, settings), so every command handler sees hostile arguments: FETCH
 * sections, SEARCH keys, STORE with UNCHANGEDSINCE, APPEND literals, METADATA, IDLE...
 *
 * The session runs on the server's own event loop over a socketpair, on this thread: the client
 * end writes the input, half-closes, and reads every reply until the server closes. A session
 * that goes SESSION_STALL_MS without sending a byte fails the run as a hang; long honest work
 * that keeps answering does not. Failed logins are delayed by 1 ms instead of 250 ms, so inputs
 * with wrong passwords still take the delay path without idling the fuzzer. The store is made once
 * per process and made again after any input that changed it, so every input starts from the
 * same state and a crash reproduces from its input alone.
 *
 * Input: byte 0 picks the mailbox and how it is opened; the rest is the client's bytes. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "imap/base/crc32c.h"
#include "imap/base/log.h"
#include "imap/base/loop.h"
#include "imap/server/server-private.h"
#include "imap/store/store.h"
#include "tests/fuzz/fuzz.h"

/* Milliseconds a session may go without answering before the run counts as a hang. */
#define SESSION_STALL_MS 5000
/* Journal rotation size of the fuzzed store: small, so making it again stays cheap. */
#define SEGMENT_BYTES (256 * 1024)
/* Message limits of the fuzzed store: small, so inputs reach OVERQUOTA (a COPY of a mailbox onto
 * itself, repeated, would otherwise double it each time) and every input stays quick. */
#define MAILBOX_MESSAGES 200
#define STORE_MESSAGES	 1000

/* The world every input starts from, and the loop of the session being run. */
static struct store *store;
static char dir[TMPDIR_LEN];
static struct loop *loop;

/* How the session starts, picked by byte 0. */
static const char *const openings[] = {
    "1 LOGIN u p\r\n2 SELECT q\r\n",
    "1 LOGIN u p\r\n2 SELECT INBOX (CONDSTORE)\r\n",
    "1 LOGIN u p\r\n2 ENABLE QRESYNC\r\n3 SELECT q (QRESYNC (1 1))\r\n",
    "1 LOGIN u p\r\n2 EXAMINE q\r\n",
    "1 LOGIN u p\r\n",
    "",
};

static const char *const messages[] = {
    "From: Producer <p@example.com>\r\nTo: q@example.com\r\nSubject: job 1\r\n"
    "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n"
    "Content-Type: application/json\r\n\r\n{\"photo\": 42}\r\n",
    "From: =?UTF-8?B?SsO2cmc=?= <j@example.com>\r\nSubject: =?ISO-8859-1?Q?caf=E9?=\r\n"
    "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
    "preamble\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n"
    "--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
    "Content-Disposition: attachment; filename=\"a.bin\"\r\n\r\nAAECAwQF\r\n"
    "--b1\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n"
    "Content-Type: multipart/alternative; boundary=b2\r\n\r\n--b2\r\n\r\nplain\r\n"
    "--b2\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--b2--\r\n--b1--\r\nepilogue\r\n",
    "Subject: no body",
    "",
    ("From: a@b\r\nTo: \"Group\": x@y, (comment) z@w;\r\nCc: <@route:u@h>\r\n"
     "In-Reply-To: <1@example.com>\r\nReply-To: r@example.com\r\n\r\nline\r\nline\r\n"),
};

static void add_message(uint32_t id, uint64_t flags, const char *text)
{
	struct journal_body b = {.data = text, .fd = -1, .len = strlen(text)};
	b.crc = crc32c(0, text, b.len);
	uint32_t uid;
	uint64_t modseq;
	fuzz_check(store_append(store, id, flags, 1700000000, &b, &uid, &modseq, NULL) == IMAPQ_OK);
}

/* Makes the store every input starts from, in a fresh folder. */
static void world_make(void)
{
	fuzz_tmpdir_make(dir);
	struct store_options so = {.dir = dir,
				   .fsync = JOURNAL_FSYNC_OFF,
				   .segment_bytes = SEGMENT_BYTES,
				   .max_mailbox_messages = MAILBOX_MESSAGES,
				   .max_messages = STORE_MESSAGES};
	struct store_report rep;
	fuzz_check(store_open(&so, &rep, &store) == IMAPQ_OK);
	uint32_t inbox, q, dead;
	fuzz_check(store_mailbox_find(store, "INBOX", &inbox) == IMAPQ_OK);
	fuzz_check(store_mailbox_create(store, "q", &q, NULL) == IMAPQ_OK);
	fuzz_check(store_mailbox_create(store, "q/dead", &dead, NULL) == IMAPQ_OK);
	unsigned claimed;
	uint64_t lsn;
	fuzz_check(store_keyword(store, q, STORE_CLAIM_KEYWORD, true, &claimed, &lsn) == IMAPQ_OK);
	fuzz_check(store_annotation_set(store, q, STORE_SETTING_LEASE, "60", NULL) == IMAPQ_OK);
	fuzz_check(store_annotation_set(store, q, "/shared/comment", "jobs", NULL) == IMAPQ_OK);
	size_t n = sizeof messages / sizeof messages[0];
	for (size_t i = 0; i < n; i++) {
		add_message(q, i % 2 ? STORE_SEEN : STORE_KEYWORD(claimed), messages[i]);
		add_message(inbox, i == 1 ? STORE_DELETED : 0, messages[(i + 1) % n]);
	}
	add_message(dead, STORE_FLAGGED, messages[0]);
	/* One expunge, so QRESYNC and VANISHED have history to answer from. */
	struct uid_range r = {2, 2};
	fuzz_check(store_flags(store, q, &r, 1, STORE_FLAGS_ADD, STORE_DELETED, NULL, NULL, NULL,
			       NULL) == IMAPQ_OK);
	fuzz_check(store_expunge(store, q, &r, 1, NULL, NULL, NULL) == IMAPQ_OK);
}

static void world_free(void)
{
	store_close(&store);
	tmpdir_remove(dir);
}

static imapq_err auth(void *ctx, const char *user, const char *password,
		      const struct access **access_r)
{
	(void)ctx;
	*access_r = NULL;
	return strcmp(user, "u") == 0 && strcmp(password, "p") == 0 ? IMAPQ_OK : IMAPQ_E_AUTH;
}

/* The client end of one session. */
struct client {
	int fd;
	struct loop_io *io;
	const char *out; /* what is left to send */
	size_t out_len;
	bool shut;	   /* everything was sent and the sending side closed */
	bool finished;	   /* the server closed the connection */
	bool echo;	   /* copy the replies to stderr (FUZZ_ECHO set), to see what a seed does */
	uint64_t got;	   /* reply bytes read */
	uint64_t got_seen; /* reply bytes read when the stall guard last looked */
	struct loop_timer *guard;
};

/* Sends what the socket takes, half-closes when all is sent, and drains the replies. */
static void client_io(void *arg, unsigned events)
{
	struct client *c = arg;
	if (c->out_len > 0) {
		ssize_t n = write(c->fd, c->out, c->out_len);
		if (n > 0) {
			c->out += n;
			c->out_len -= (size_t)n;
		} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
			c->out_len = 0; /* the server closed first, e.g. after LOGOUT */
		}
	}
	if (c->out_len == 0 && !c->shut) {
		shutdown(c->fd, SHUT_WR);
		loop_io_set(c->io, LOOP_READ);
		c->shut = true;
	}
	if (!(events & (LOOP_READ | LOOP_HANGUP)))
		return;
	char buf[65536];
	for (;;) {
		ssize_t n = read(c->fd, buf, sizeof buf);
		if (n > 0 && c->echo)
			fwrite(buf, 1, (size_t)n, stderr);
		if (n > 0) {
			c->got += (uint64_t)n;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		c->finished = true;
		loop_io_remove(&c->io);
		loop_stop(loop);
		return;
	}
}

/* Fails the run when the server sent nothing since the last look; looks again otherwise. */
static void session_stall_check(void *arg)
{
	struct client *c = arg;
	c->guard = NULL;
	fuzz_check(c->got != c->got_seen && "the session stopped answering");
	c->got_seen = c->got;
	fuzz_check(loop_timer_add(loop, SESSION_STALL_MS, session_stall_check, c, &c->guard) ==
		   IMAPQ_OK);
}

/* Serves one connection whose client sends text[0..len). */
static void run_session(const char *text, size_t len)
{
	/* A fresh loop per session: the old server's wake-ups still queued on a loop are freed
	 * with it, never run (imap_server_destroy() leaves them, as the daemon ends its loop). */
	fuzz_check(loop_create(&loop) == IMAPQ_OK);
	struct imap_server_options o = {.loop = loop,
					.store = store,
					.auth = auth,
					.allow_plaintext = true,
					.spool_dir = dir,
					.auth_fail_delay_ms = 1};
	struct imap_server *server = NULL;
	fuzz_check(imap_server_create(&o, &server) == IMAPQ_OK);
	int fds[2];
	fuzz_check(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
	struct client c = {
	    .fd = fds[0], .out = text, .out_len = len, .echo = getenv("FUZZ_ECHO") != NULL};
	fuzz_check(loop_io_add(loop, c.fd, LOOP_READ | LOOP_WRITE, client_io, &c, &c.io) ==
		   IMAPQ_OK);
	session_accept(server, fds[1], false);
	fuzz_check(imap_server_sessions(server) == 1);
	fuzz_check(loop_timer_add(loop, SESSION_STALL_MS, session_stall_check, &c, &c.guard) ==
		   IMAPQ_OK);
	fuzz_check(loop_run(loop) == IMAPQ_OK);
	loop_timer_cancel(&c.guard);
	fuzz_check(c.finished && imap_server_sessions(server) == 0);
	close(c.fd);
	imap_server_destroy(&server);
	loop_destroy(&loop);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (store == NULL) {
		signal(SIGPIPE, SIG_IGN);
		log_set_level(LOG_ERROR);
		world_make();
		atexit(world_free); /* libFuzzer ends with exit() after -max_total_time or -runs */
	}
	struct fuzz_input in = {data, size};
	const char *opening = openings[fuzz_u8(&in) % (sizeof openings / sizeof openings[0])];
	size_t olen = strlen(opening);
	char *text = malloc(olen + in.left + 1);
	fuzz_check(text != NULL);
	memcpy(text, opening, olen);
	memcpy(text + olen, in.p, in.left);

	uint64_t before = store_visible_lsn(store);
	run_session(text, olen + in.left);
	free(text);
	if (store_visible_lsn(store) != before) {
		world_free();
		world_make();
	}
	return 0;
}
