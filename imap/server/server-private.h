/* Internals of the IMAP server shared by its files: the server, sessions, the selected-mailbox
 * view and the command context. Nothing outside imap/server/ includes this. */
#ifndef IMAPQ_SERVER_PRIVATE_H
#define IMAPQ_SERVER_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap/base/buf.h"
#include "imap/base/loop.h"
#include "imap/base/worker.h"
#include "imap/protocol/parser.h"
#include "imap/server/auth-worker.h"
#include "imap/server/server.h"
#include "imap/server/tls.h"
#include "imap/store/store.h"

#define SERVER_LOG "imap"

/* Extensions a client turned on with ENABLE (or implicitly, RFC 7162 3.1). */
enum session_enabled {
	ENABLED_CONDSTORE = 1u << 0,
	ENABLED_QRESYNC = 1u << 1,
};

enum session_state {
	STATE_NOT_AUTHENTICATED = 1u << 0,
	STATE_AUTHENTICATED = 1u << 1,
	STATE_SELECTED = 1u << 2,
	STATE_LOGOUT = 1u << 3,
};

/* Where a connection stands with TLS. */
enum session_tls {
	SESSION_TLS_NONE,      /* cleartext */
	SESSION_TLS_STARTING,  /* STARTTLS answered: its OK drains in cleartext, input is ignored */
	SESSION_TLS_HANDSHAKE, /* the handshake runs: nothing is read or written in the clear */
	SESSION_TLS_ON,	       /* every byte goes through tls */
};

/* The selected mailbox as this session knows it. Messages with a UID up to uid_max are in the
 * view; pending[] holds UIDs the store has expunged but the session has not announced yet (they
 * still count in message sequence numbers until an EXPUNGE or VANISHED response goes out). */
struct view {
	uint32_t id;
	uint32_t uidvalidity;
	bool readonly;
	uint32_t uid_max;      /* highest UID announced with EXISTS */
	uint32_t exists;       /* the count last announced */
	uint64_t modseq;       /* flag changes up to this were reported */
	uint64_t xmodseq;      /* expunges up to this are announced or in pending[] */
	uint64_t pending_base; /* mod-sequence before the first pending expunge */
	uint32_t keywords;     /* keywords announced in FLAGS */
	uint32_t recent_lo;    /* UIDs in [recent_lo, recent_hi] are \Recent to this session */
	uint32_t recent_hi;
	uint32_t *pending; /* ascending */
	size_t npending, cappending;
	/* (uid, modseq) pairs this command already reported, so the sync does not repeat them. */
	struct view_echo {
		uint32_t uid;
		uint64_t modseq;
	} * echoed;
	size_t nechoed, capechoed;
};

/* An APPEND body as it streams in: in memory up to a threshold, then in an unlinked file. */
struct spool {
	bool active;
	bool complete;
	uint64_t size;
	uint64_t got;
	uint32_t crc;
	int fd;
	struct buf mem;
};

struct session {
	struct imap_server *server;
	struct session *prev, *next;
	int fd;
	struct loop_io *io;
	char peer[64];
	char addr[64]; /* the peer's address without its port, for the per-address limit */
	bool loopback;
	enum session_tls tls_state;
	struct tls_conn *tls; /* set from the start of the handshake on */
	bool tls_after_starttls;
	bool tls_read_wants_write; /* a read waits for the socket to become writable */
	bool tls_write_wants_read; /* a write waits for the socket to become readable */
	uint64_t tls_started_ms;
	unsigned state;
	unsigned enabled;
	char user[64];
	const struct access *access;   /* the user's roles; NULL: every role (access.h) */
	struct loop_timer *auth_delay; /* a failed login's answer waits; input is not read */
	struct auth_check *auth_check; /* a password is being checked; input is not read */
	struct worker_job *search_job; /* a SEARCH reads content off the loop; input is not read */
	struct parser *parser;
	struct buf in;	/* bytes read, not yet parsed */
	struct buf out; /* replies; the first `writable` bytes may go to the socket */
	size_t writable;
	uint64_t hold_lsn; /* the rest waits until the journal is durable up to here */
	bool held;	   /* on the server's list of sessions waiting for durability */
	struct session *next_held;
	bool closing; /* close once the output is written */
	bool idling;
	bool idle_owed; /* an IDLE update was put off while the output was full */
	char idle_tag[64];
	bool auth_pending; /* AUTHENTICATE waits for the client's response line */
	char auth_tag[64];
	unsigned auth_failures;
	uint64_t connected_ms;
	uint64_t last_active_ms;
	uint64_t stalled_ms; /* since when output waits for a peer that reads nothing; 0: not */
	struct loop_timer *resume; /* runs commands left in `in` once held output went out */
	struct view view;
	struct spool spool;
};

struct listener {
	struct imap_server *server;
	int fd;
	bool tls; /* implicit TLS: sessions start with the handshake */
	struct loop_io *io;
};

struct imap_server {
	struct imap_server_options opts;
	struct listener **listeners;
	size_t nlisteners;
	struct session *sessions;
	unsigned nsessions;
	struct session *held; /* sessions with output waiting for durability */
	bool shutting_down;
	uint64_t shutdown_ms;
	struct loop_timer *tick;
	struct auth_worker *auth; /* checks passwords off the loop; NULL without opts.auth */
	struct worker *search;	  /* decides SEARCH keys that read message content (cmd-search.c) */
	/* Wake-ups from other threads, each coalesced into one loop_post. */
	_Atomic int durable_posted; /* the journal made more durable */
	_Atomic int change_posted;  /* a mailbox changed */
	/* Read by those threads to skip wake-ups nobody waits for: sessions on the held list, and
	 * sessions in IDLE. Changed on the loop only, before the state they announce. */
	_Atomic unsigned nheld;
	_Atomic unsigned nidle;
	/* First \Recent UID per mailbox: the first session to see a message gets \Recent. */
	struct recent_entry {
		uint32_t id;
		uint32_t floor;
	} * recent;
	size_t nrecent, caprecent;
	const char *spool_dir;
};

/* --- session.c --- */

/* Appends bytes for the client; they leave after session_seal(). */
void session_write(struct session *s, const char *data, size_t len);
void session_printf(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends a string literal. */
#define session_lit(s, lit) session_write((s), "" lit, sizeof(lit) - 1)
/* Marks everything written so far as ready once the state it shows is durable, and tries to send.
 */
void session_seal(struct session *s);
/* Sends what may be sent; closes the session when it is finished. */
void session_flush(struct session *s);
/* Releases held output whose LSN is now durable (called on the loop after each commit). */
void session_release(struct session *s, uint64_t durable_lsn);
/* Starts closing: no more input is read; output drains, then the connection closes. */
void session_close_after_output(struct session *s);
void session_destroy(struct session *s);
/* True when a closing session has delivered everything and can be freed. */
bool session_done(const struct session *s);
/* Writes the address part of a peer name ("1.2.3.4:5" or "[::1]:5") into addr. */
void session_addr_of(const char *peer, char *addr, size_t cap);
/* Output bytes the session may hold before its input stops being read (smaller before login). */
size_t session_output_limit(const struct session *s);
/* Called for a new connection; with tls the session starts with a TLS handshake. */
void session_accept(struct imap_server *server, int fd, bool tls);
/* Ends a session at once without a farewell (a failed or stalled handshake, shutdown): pending
 * output is dropped and the connection closes as soon as the caller checks session_done(). */
void session_abort(struct session *s);
/* STARTTLS: drops every byte the client sent after the command line (RFC 3501 6.2.1, so nothing
 * sent in the clear runs under TLS) and starts the handshake once the output queued so far has
 * gone out in cleartext. */
void session_start_tls(struct session *s);
/* True when the connection is encrypted (or its implicit-TLS handshake is under way). */
bool session_is_tls(const struct session *s);
/* True when LOGIN and AUTHENTICATE PLAIN may carry a password here: over TLS, from loopback, or
 * everywhere with the allow_plaintext option (RFC 3501 6.2.3, RFC 8314). */
bool session_password_allowed(const struct session *s);
/* Runs one parsed command. */
void session_dispatch(struct session *s, const struct parser_command *pc);
/* Turns CONDSTORE on for a CONDSTORE-enabling command (RFC 7162 3.1); the first one while a
 * mailbox is selected also reports its HIGHESTMODSEQ. */
void session_enable_condstore(struct session *s);
/* Reads and runs the commands that waited while input was paused (auth_delay, auth_check,
 * search_job). */
void session_resume(struct session *s);
/* Handles the response line of an AUTHENTICATE continuation (cmd-auth.c). */
void session_auth_response(struct session *s, const char *line, size_t len);
/* Handles a change notification while the session idles. */
void session_idle_update(struct session *s);

/* --- view.c --- */

/* Opens mailbox id as the selected mailbox and sends the SELECT/EXAMINE untagged data. */
imapq_err view_open(struct session *s, uint32_t id, bool readonly);
/* Leaves the selected mailbox (without expunging). */
void view_close(struct session *s);
/* The message sequence number of uid in the view, 0 when it is not in the view. */
uint32_t view_msn(struct session *s, uint32_t uid);
/* The UID of message sequence number msn, 0 when out of range. */
uint32_t view_uid(struct session *s, uint32_t msn);
/* Takes expunges the store made since the last look into pending[] without announcing them, so
 * sequence numbers stay right; false when the session had to end (mailbox gone, or history
 * folded past what it knew). */
bool view_load_expunges(struct session *s);
/* True when uid is expunged in the store but not yet announced to this session. */
bool view_is_pending(const struct session *s, uint32_t uid);
/* Sends untagged updates for what changed since the last sync: EXISTS/RECENT for new messages,
 * FETCH for flag changes by others and, when allow_expunge, EXPUNGE or VANISHED. */
void view_sync(struct session *s, bool allow_expunge);
/* Records that this command reported (uid, modseq) already. */
void view_note_echo(struct session *s, uint32_t uid, uint64_t modseq);
/* True when uid is \Recent to this session. */
bool view_is_recent(const struct session *s, uint32_t uid);
/* Writes the flag list of a message, e.g. "(\Seen $Claimed)". */
void view_write_flags(struct session *s, uint64_t flags, bool recent);

/* --- cmd.c: the command context and reply helpers --- */

struct cmd {
	struct session *s;
	const char *tag;
	const char *name; /* canonical upper case, with "UID " for UID commands */
	const struct parser_arg *args;
	size_t count;
	bool uid;
	bool replied;
};

/* Tagged replies. code is the response code without brackets, or NULL. */
void cmd_ok(struct cmd *c, const char *code, const char *text);
void cmd_no(struct cmd *c, const char *code, const char *text);
void cmd_bad(struct cmd *c, const char *text);
/* Replies NO or BAD for err, with the response code of the error table. */
void cmd_fail(struct cmd *c, imapq_err err, const char *text);

/* Argument helpers; each replies BAD and returns false when the argument is malformed. */
bool cmd_want_args(struct cmd *c, size_t min, size_t max);
bool cmd_arg_astring(struct cmd *c, size_t i, char *buf, size_t cap);
/* A mailbox name argument, decoded from modified UTF-7 and canonicalised (INBOX). */
bool cmd_arg_mailbox(struct cmd *c, size_t i, char *buf, size_t cap);
bool cmd_arg_number(struct cmd *c, const struct parser_arg *arg, uint64_t max, uint64_t *value_r);
/* A sequence set (a UID set for UID commands) resolved against the view into UID ranges. The
 * caller frees *ranges_r. */
bool cmd_arg_set(struct cmd *c, const struct parser_arg *arg, bool uid, struct uid_range **ranges_r,
		 size_t *n_r);
/* Parses a flag list (or a single flag); keywords are defined in the mailbox when create. */
bool cmd_arg_flags(struct cmd *c, const struct parser_arg *arg, bool create, uint64_t *flags_r);

/* True when the session's user holds role (access.h bits; 0: just sees it) on mailbox name;
 * otherwise replies NO [NONEXISTENT] for a name the user cannot see, exactly as for a missing
 * mailbox, or NO [NOPERM], and returns false (access.c). */
bool cmd_allow(struct cmd *c, const char *name, unsigned role);

/* Writes a mailbox name for the client (modified UTF-7, quoted or literal as needed). */
void cmd_write_mailbox(struct session *s, const char *name);
/* Writes an astring/nstring. */
void cmd_write_string(struct session *s, const char *str, size_t len);

typedef void cmd_handler(struct cmd *c);
struct cmd_def {
	const char *name;
	unsigned states; /* states the command is valid in */
	cmd_handler *handler;
	bool uid;	 /* may follow UID */
	bool no_expunge; /* EXPUNGE responses may not be sent while it runs (RFC 3501 7.4.1) */
};
/* Looks a command up by name (case-insensitively); NULL when unknown. */
const struct cmd_def *cmd_find(const char *name, bool uid);

/* The CAPABILITY list for this session, without the leading "* CAPABILITY ". */
void cmd_write_capabilities(struct session *s);

/* Handlers, one file per family. */
cmd_handler cmd_capability, cmd_noop, cmd_logout, cmd_id, cmd_enable, cmd_namespace;
cmd_handler cmd_login, cmd_authenticate, cmd_starttls;
cmd_handler cmd_create, cmd_delete, cmd_rename, cmd_subscribe, cmd_unsubscribe, cmd_list, cmd_lsub,
    cmd_status;
cmd_handler cmd_select, cmd_examine, cmd_close, cmd_unselect, cmd_check;
cmd_handler cmd_append;
cmd_handler cmd_store, cmd_expunge, cmd_copy, cmd_move;
cmd_handler cmd_fetch;
cmd_handler cmd_search;
cmd_handler cmd_idle;
cmd_handler cmd_getmetadata, cmd_setmetadata;
cmd_handler cmd_getquotaroot, cmd_getquota, cmd_setquota;

/* --- cmd-metadata.c, cmd-annotate.c: METADATA (RFC 5464), per-message ANNOTATE (RFC 5257) --- */

/* Parses a decimal number without leading zeros; false unless it lies in [min, max]. */
bool metadata_parse_number(const char *str, size_t len, uint32_t min, uint32_t max, uint32_t *v_r);

/* What a FETCH ANNOTATION item asked for: entry patterns (pointing into the command) and the
 * attributes as bits (value.priv, value.shared, size.priv, size.shared). */
struct annotate_fetch {
	const struct parser_arg *entries; /* NULL until parsed */
	size_t nentries;
	unsigned attribs;
};
/* Parses the "(entries attributes)" list that follows the ANNOTATION fetch item into *r (zeroed
 * by the caller); false when it is malformed or r already holds a request. */
bool annotate_fetch_parse(const struct parser_arg *a, struct annotate_fetch *r);
/* Writes "ANNOTATION (...)" for message m. */
void annotate_fetch_write(struct session *s, const struct annotate_fetch *r,
			  const struct store_message *m);
/* Runs a STORE whose item args[i] is ANNOTATION; unchangedsince is NULL without the modifier. */
void annotate_store(struct cmd *c, size_t i, const uint64_t *unchangedsince);

/* --- server.c --- */

/* Releases the output of every held session whose LSN is durable; with destroy, frees the ones
 * that are then finished (never pass it from inside a session's own callbacks). */
void server_release_held(struct imap_server *server, bool destroy);
/* Counts a session in or out of IDLE for the change wake-ups. */
void server_note_idle(struct imap_server *server, bool idling);

/* The first \Recent UID of mailbox id, raised to `upto` + 1 when the caller claims the messages
 * up to upto. Returns the floor before the claim. */
uint32_t server_recent_claim(struct imap_server *server, uint32_t id, uint32_t upto);

#endif
