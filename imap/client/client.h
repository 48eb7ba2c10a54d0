/* A small IMAP client: connect (plain, STARTTLS or implicit TLS), log in, select with CONDSTORE,
 * run commands blocking or pipelined, and IDLE. Responses arrive typed (imap/client/response.h).
 *
 * Blocking use: client_connect(), client_login(), client_select(), then client_cmdf() per
 * command. Non-blocking use: client_submitf() queues commands (any number in flight), and a loop
 * polls client_fd() for client_events(), then calls client_flush() and client_process(); each
 * command's done callback receives its tagged reply. The two styles mix: client_wait() blocks
 * until one submitted command completes.
 *
 * Errors: IMAPQ_E_IO (connection lost), IMAPQ_E_TIMEOUT, IMAPQ_E_INVALID (the server sent a
 * malformed response) and IMAPQ_E_UNAVAILABLE (the server said BYE) break the client: every
 * later call returns the same error and the caller destroys it. A tagged NO or BAD is not a
 * broken client; see client_cmdf() for its codes. client_error() tells the details. */
#ifndef IMAPQ_CLIENT_H
#define IMAPQ_CLIENT_H

#include "imap/base/error.h"
#include "imap/client/response.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct client;

enum client_tls_mode {
	CLIENT_TLS_NONE,
	CLIENT_TLS_STARTTLS, /* plain connect, then STARTTLS before anything else */
	CLIENT_TLS_IMPLICIT, /* TLS from the first byte (imaps) */
};

struct client_options {
	const char *host; /* name or IP literal; NULL: 127.0.0.1 */
	unsigned port;	  /* 0: 143, or 993 with CLIENT_TLS_IMPLICIT */
	enum client_tls_mode tls;
	const char *ca_file;	 /* trusted CAs (PEM); NULL: the system store */
	const char *server_name; /* name the certificate must match; NULL: host */
	bool tls_insecure;	 /* accept any certificate: never for real deployments */
	int timeout_ms;		 /* per blocking call; 0: IMAPQ_CLIENT_TIMEOUT_MS, < 0: none */
};

/* Called for each untagged response; resp lives only during the call. Callbacks may submit
 * commands but must not call blocking functions. */
typedef void client_response_fn(const struct client_response *resp, void *ctx);
/* Called when a submitted command completes; tagged is its tagged response (status, code), or
 * NULL when the client broke before the answer came. */
typedef void client_done_fn(unsigned tag, const struct client_response *tagged, void *ctx);

/* The tagged reply of the last command completed by client_cmdf() or client_wait(); owned by
 * the client, valid until the next such call. */
struct client_reply {
	enum client_status status;
	enum client_code_type code;
	const char *code_name; /* NULL when the reply had no code */
	const char *code_text; /* the code's arguments as sent */
	const char *text;
	uint64_t number;	  /* as in struct client_code */
	const struct seqset *set; /* MODIFIED, APPENDUID, COPYUID (source) */
	const struct seqset *set2;
};

/* The selected mailbox as the server last described it. */
struct client_mailbox {
	uint32_t exists;
	uint32_t uidvalidity;
	uint32_t uidnext;
	uint64_t highestmodseq; /* 0 when the server sent none (NOMODSEQ or no CONDSTORE) */
	bool read_only;
};

/* Connects, reads the greeting, runs STARTTLS when asked and learns the capabilities. Returns
 * IMAPQ_OK with a new client in *client_r, or an error with *client_r NULL and the reason in
 * errbuf[0..errcap) (which may be NULL): IMAPQ_E_IO, IMAPQ_E_TIMEOUT, IMAPQ_E_AUTH (certificate
 * not trusted), IMAPQ_E_UNSUPPORTED (STARTTLS not offered), IMAPQ_E_UNAVAILABLE (BYE greeting),
 * IMAPQ_E_INVALID, IMAPQ_E_NOMEM. */
imapq_err client_connect(const struct client_options *options, char *errbuf, size_t errcap,
			 struct client **client_r);
/* Closes the connection, frees the client and sets *client to NULL; NULL is ignored. Commands
 * still in flight get their done callback with NULL. */
void client_destroy(struct client **client);

/* A sentence about the last failure (a broken connection or the last NO/BAD). */
const char *client_error(const struct client *client);
/* True when the server announced the capability (ignoring case), e.g. "CONDSTORE", "AUTH=PLAIN". */
bool client_has_cap(const struct client *client, const char *name);
/* The socket, for poll(). */
int client_fd(const struct client *client);
/* True once TLS runs. */
bool client_is_tls(const struct client *client);

/* Logs in: AUTHENTICATE PLAIN (in one round trip with SASL-IR) when offered, else LOGIN.
 * Returns IMAPQ_OK, IMAPQ_E_AUTH (refused), IMAPQ_E_UNSUPPORTED (LOGINDISABLED and no PLAIN), or
 * an error of a broken client. */
imapq_err client_login(struct client *client, const char *user, const char *password);

enum client_select_flags {
	CLIENT_SELECT_READ_ONLY = 1 << 0, /* EXAMINE */
	CLIENT_SELECT_QRESYNC = 1 << 1,	  /* also ENABLE QRESYNC (expunges arrive as VANISHED) */
};
/* ENABLEs CONDSTORE (and QRESYNC when asked and offered) once, then SELECTs or EXAMINEs mailbox.
 * mailbox_r (may be NULL) receives its state. Returns IMAPQ_OK, IMAPQ_E_NONEXISTENT (NO with
 * [NONEXISTENT] or [TRYCREATE]), IMAPQ_E_REFUSED (any other NO or BAD) or a broken client's
 * error. */
imapq_err client_select(struct client *client, const char *mailbox, unsigned flags,
			struct client_mailbox *mailbox_r);
/* The selected mailbox's state, kept up to date by EXISTS and response codes. */
const struct client_mailbox *client_mailbox(const struct client *client);
/* True when ENABLE turned CONDSTORE (or QRESYNC) on, or a CONDSTORE-enabling command did. */
bool client_condstore(const struct client *client);

/* Sends one command (fmt with printf arguments gives the text after the tag, without CRLF) and
 * waits for its tagged reply, passing each untagged response to fn (may be NULL: the handler of
 * client_set_handler() gets them). Returns IMAPQ_OK for OK; for NO a code that fits its response
 * code (IMAPQ_E_NONEXISTENT, IMAPQ_E_EXISTS, IMAPQ_E_NOPERM, IMAPQ_E_AUTH, IMAPQ_E_LIMIT,
 * IMAPQ_E_TOOBIG, IMAPQ_E_OVERQUOTA, IMAPQ_E_UNAVAILABLE) or IMAPQ_E_REFUSED; IMAPQ_E_REFUSED for
 * BAD; or a broken client's error. client_reply() holds the reply. */
imapq_err client_cmdf(struct client *client, client_response_fn *fn, void *ctx, const char *fmt,
		      ...) __attribute__((format(printf, 4, 5)));

/* One piece of a command. A TEXT or STRING part with len 0 and data not NULL is read as a
 * NUL-terminated string; a LITERAL part always sends exactly len bytes. */
enum client_part_type {
	CLIENT_PART_TEXT,    /* bytes sent as they are */
	CLIENT_PART_LITERAL, /* a literal: {N+} with LITERAL+, else {N} and wait for "+" */
	CLIENT_PART_STRING,  /* an astring: atom, quoted or literal, whichever carries the bytes */
	CLIENT_PART_CONTINUATION, /* ends the line, waits for "+" and sends the rest (SASL) */
};
struct client_part {
	enum client_part_type type;
	const char *data;
	size_t len;
};

/* As client_cmdf() for a command built from parts (literals, strings needing quotes). */
imapq_err client_cmd_parts(struct client *client, client_response_fn *fn, void *ctx,
			   const struct client_part *parts, size_t count);
const struct client_reply *client_reply(const struct client *client);

/* Maps a tagged status and code to the imapq_err client_cmdf() returns. */
imapq_err client_status_err(enum client_status status, const char *code_name);

/* Non-blocking use. */
/* Queues a command without waiting; *tag_r (may be NULL) receives its tag number, and done (may
 * be NULL) runs when it completes. Returns IMAPQ_OK, IMAPQ_E_NOMEM or a broken client's error.
 * Nothing is written until client_flush() (the blocking calls flush too). */
imapq_err client_submitf(struct client *client, client_done_fn *done, void *ctx, unsigned *tag_r,
			 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
imapq_err client_submit(struct client *client, const struct client_part *parts, size_t count,
			client_done_fn *done, void *ctx, unsigned *tag_r);
/* Sets the handler of untagged responses that no blocking call collects. */
void client_set_handler(struct client *client, client_response_fn *fn, void *ctx);
/* Writes what the socket takes now. Returns IMAPQ_OK or a broken client's error. */
imapq_err client_flush(struct client *client);
/* Reads what is readable now and dispatches every complete response. Never blocks. */
imapq_err client_process(struct client *client);
/* poll() events the client waits for now (POLLIN, plus POLLOUT while output is queued). */
short client_events(const struct client *client);
/* Commands submitted whose tagged reply has not come yet. */
size_t client_in_flight(const struct client *client);
/* Blocks until the command tag completes (flushing and processing meanwhile); its reply is then
 * client_reply(). Returns as client_cmdf(). */
imapq_err client_wait(struct client *client, unsigned tag);

/* IDLE (RFC 2177). Untagged responses go to the handler of client_set_handler(). */
/* Sends IDLE and waits for the server's "+". Returns IMAPQ_OK, IMAPQ_E_UNSUPPORTED (no IDLE),
 * IMAPQ_E_REFUSED, or a broken client's error. */
imapq_err client_idle_start(struct client *client);
/* Waits up to timeout_ms for updates while idling. *woke_r is true when a response reporting a
 * mailbox change (EXISTS, EXPUNGE, FETCH, VANISHED) arrived during this call or since
 * client_idle_start() began. Returns early with IMAPQ_OK when a signal interrupts the wait, so
 * callers can check their flags. A timeout is IMAPQ_OK with *woke_r false. */
imapq_err client_idle_wait(struct client *client, int timeout_ms, bool *woke_r);
/* Sends DONE and waits for IDLE's tagged reply. */
imapq_err client_idle_done(struct client *client);

/* LOGOUT, waiting for the server's answer. */
imapq_err client_logout(struct client *client);

#endif
