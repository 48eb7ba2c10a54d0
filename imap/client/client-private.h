/* Internals shared by the client's files: client.c (connect, login, select), client_io.c
 * (queueing, writing, reading, dispatch) and client_idle.c. */
#ifndef IMAPQ_CLIENT_PRIVATE_H
#define IMAPQ_CLIENT_PRIVATE_H

#include "imap/base/buf.h"
#include "imap/client/client.h"
#include "imap/client/conn.h"

/* A point in the output stream where writing pauses until the server sends "+". */
struct client_gate {
	uint64_t at;  /* stream offset of the first byte held back */
	uint64_t end; /* stream offset just past the command, to drop it when refused early */
	unsigned tag;
};

/* A command awaiting its tagged reply. */
struct client_pending {
	unsigned tag;
	client_done_fn *done;
	void *ctx;
};

enum client_idle_state {
	CLIENT_IDLE_OFF,
	CLIENT_IDLE_STARTING, /* IDLE sent, "+" not yet seen */
	CLIENT_IDLE_ON,
};

struct client {
	struct client_conn *conn;
	struct client_parser *parser;
	char *host;
	int timeout_ms;
	struct buf in;
	struct buf out;
	uint64_t out_pos; /* stream offset of the first byte in out */
	struct client_gate *gates;
	size_t gate_count;
	size_t gate_cap;
	struct client_pending *pending;
	size_t pending_count;
	size_t pending_cap;
	unsigned next_tag;
	char **caps;
	size_t cap_count;
	bool condstore;
	bool qresync;
	bool logout;   /* LOGOUT was sent: its BYE is expected */
	bool saw_caps; /* a CAPABILITY response or code arrived since the flag was cleared */
	struct client_mailbox mailbox;
	client_response_fn *handler;
	void *handler_ctx;
	client_response_fn *collector; /* the blocking call's fn, ahead of handler */
	void *collector_ctx;
	unsigned wait_tag; /* tag whose reply client_reply() keeps */
	bool wait_done;
	struct client_reply reply;
	uint64_t changes; /* mailbox-change responses seen */
	enum client_idle_state idle;
	unsigned idle_tag;
	uint64_t idle_changes; /* changes counted when the current IDLE began */
	imapq_err broken;
	char error[256];
};

/* Marks the client broken with err and a message; returns err. */
imapq_err client_break(struct client *c, imapq_err err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Replaces the capability list with words[0..count). */
void client_set_caps(struct client *c, const struct client_value *words, size_t count);
/* Blocks until fn(c, arg) is true, flushing and processing; IMAPQ_OK, or the error that broke
 * the client (a timeout breaks it). When interruptible, a signal ends the wait with IMAPQ_OK and
 * a negative timeout_ms waits without limit. */
imapq_err client_run_until(struct client *c, bool (*fn)(const struct client *c, unsigned arg),
			   unsigned arg, int timeout_ms, bool interruptible);
/* True when tag is no longer in flight. */
bool client_tag_done(const struct client *c, unsigned tag);

#endif
