/* Internals of the HTTP front shared by its files: the server and request objects, routing,
 * JSON helpers, replies, handlers and the long-poll parking lot. */
#ifndef IMAPQ_HTTP_PRIVATE_H
#define IMAPQ_HTTP_PRIVATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "http/http.h"
#include "imap/base/buf.h"
#include "imap/base/limits.h"

/* --- Routing --- */

enum http_route {
	HTTP_ROUTE_NONE, /* no such resource: 404 */
	HTTP_ROUTE_HEALTHZ,
	HTTP_ROUTE_METRICS,
	HTTP_ROUTE_QUEUES,	/* /v1/queues */
	HTTP_ROUTE_QUEUE,	/* /v1/queues/{q} */
	HTTP_ROUTE_PURGE,	/* /v1/queues/{q}/purge */
	HTTP_ROUTE_MESSAGES,	/* /v1/queues/{q}/messages */
	HTTP_ROUTE_CLAIMS,	/* /v1/queues/{q}/claims */
	HTTP_ROUTE_ACK,		/* /v1/queues/{q}/messages/{id}/ack */
	HTTP_ROUTE_NACK,	/* /v1/queues/{q}/messages/{id}/nack */
	HTTP_ROUTE_EXTEND,	/* /v1/queues/{q}/messages/{id}/extend */
	HTTP_ROUTE_REQUEUE_ALL, /* /v1/queues/{q}/dead/requeue */
	HTTP_ROUTE_REQUEUE_ONE, /* /v1/queues/{q}/dead/{id}/requeue */
	HTTP_ROUTE_CHANGES,	/* /v1/queues/{q}/changes */
	HTTP_ROUTE__COUNT
};

enum http_method {
	HTTP_GET = 1 << 0,
	HTTP_HEAD = 1 << 1,
	HTTP_POST = 1 << 2,
	HTTP_PUT = 1 << 3,
	HTTP_DELETE = 1 << 4,
	HTTP_OTHER = 1 << 5,
};

/* A parsed request target. */
struct http_target {
	enum http_route route;
	char queue[IMAPQ_MAX_MAILBOX_NAME + 1]; /* percent-decoded; "" when the route has none */
	uint32_t id;				/* job id for ACK/NACK/EXTEND/REQUEUE_ONE */
	imapq_err err;	     /* IMAPQ_E_INVALID for a bad queue name or id, else IMAPQ_OK */
	const char *problem; /* what was wrong, when err is set */
};

/* Splits path (the undecoded URL path, without the query) into a route and its parameters. */
void http_route_parse(const char *path, struct http_target *t);
/* The methods a route accepts (HTTP_* bits). */
unsigned http_route_methods(enum http_route route);
/* The role a route needs for method. */
enum http_role http_route_role(enum http_route route, enum http_method method);
/* Short route name for metrics and logs. */
const char *http_route_name(enum http_route route);
/* Maps a method name to its bit (HTTP_OTHER when unknown). */
enum http_method http_method_parse(const char *method);
/* Writes the Allow header value for route into buf ("GET, HEAD, POST"). */
void http_route_allow(enum http_route route, char *buf, size_t cap);

/* Decodes %XX escapes of src[0..len) into dst (NUL-terminated, at most cap - 1 bytes); false
 * on a malformed escape, an encoded NUL, or a result that does not fit. */
bool http_percent_decode(const char *src, size_t len, char *dst, size_t cap);

/* --- JSON --- */

/* Checks a JSON text before cJSON sees it, for what cJSON lets through: valid UTF-8, no raw
 * control characters inside strings, no NUL byte, no byte order mark, whitespace outside strings
 * only space, tab, CR and LF, numbers as RFC 8259 writes them, and arrays/objects nested at most
 * max_depth deep. IMAPQ_OK or IMAPQ_E_INVALID with *why set to a static description. */
imapq_err http_json_precheck(const char *text, size_t len, unsigned max_depth, const char **why);
/* Prechecks and parses text[0..len) (trailing whitespace allowed). *root_r is the tree, freed by
 * the caller with cJSON_Delete. IMAPQ_E_INVALID with *why on failure. */
imapq_err http_json_parse(const char *text, size_t len, cJSON **root_r, const char **why);
/* True when text[0..len) is valid UTF-8 without NUL bytes. */
bool http_utf8_valid(const char *text, size_t len);
/* True when ctype (a Content-Type value, parameters allowed) is application/json or a
 * "+json" type. */
bool http_content_type_is_json(const char *ctype);
/* Fails with *why when obj has a member not named in the NULL-terminated list, or one twice. */
imapq_err http_json_fields(const cJSON *obj, const char *const *allowed, const char **why);
/* Reads member key of obj as an integer in [min, max] (a JSON number or a string of digits);
 * absent or null leaves *out alone. IMAPQ_E_INVALID with *why otherwise. */
imapq_err http_json_uint(const cJSON *obj, const char *key, uint32_t min, uint32_t max,
			 uint32_t *out, const char **why);
/* Parses a receipt "<uidvalidity>-<modseq>" strictly. */
bool http_receipt_parse(const char *text, struct queue_receipt *r);
/* Formats a receipt into buf (at least 32 bytes). */
void http_receipt_format(struct queue_receipt r, char *buf, size_t cap);
/* Parses a decimal unsigned number in [min, max] with no sign, spaces or leading junk. */
bool http_parse_u64(const char *text, uint64_t min, uint64_t max, uint64_t *out);
/* Formats seconds since the epoch as RFC 3339 UTC ("2024-01-02T03:04:05Z") into buf (>= 32). */
void http_time_format(int64_t t, char *buf, size_t cap);
/* The member adders below take key as a string literal: cJSON keeps the pointer instead of a
 * copy, which spares an allocation per member of every reply. */
/* Adds item to obj under key, or deletes it; false when item is NULL or memory is short. */
bool http_json_put(cJSON *obj, const char *key, cJSON *item);
/* Adds a copy of value as a string member; false when memory is short. */
bool http_json_add_string(cJSON *obj, const char *key, const char *value);
/* Adds a decimal string member (ids, mod-sequences) to obj; false when memory is short. */
bool http_json_add_u64_string(cJSON *obj, const char *key, uint64_t v);
/* Adds an unsigned integer as a JSON number member, printed without cJSON's floating-point
 * formatting; false when memory is short. */
bool http_json_add_uint(cJSON *obj, const char *key, uint64_t v);

/* --- Request bodies, decoded without a connection (http_jobs.c, http_queues.c) --- */

/* True when ctype can be stored as a job's Content-Type header (printable ASCII, bounded). */
bool http_content_type_ok(const char *ctype);
/* Decodes standard base64 text into a new buffer (freed with free()); false when it is
 * malformed. */
bool http_base64_decode(const char *text, char **out_r, size_t *len_r);

/* One job of a batch enqueue, ready to enqueue. */
struct http_batch_item {
	char *payload;
	size_t len;
	const char *ctype; /* points into the parsed tree or at a static string */
	uint32_t delay;
	bool printed; /* payload comes from cJSON (cJSON_free) rather than malloc (free) */
};
/* The "messages" array when root is exactly {"messages":[...]} (a batch), else NULL. */
const cJSON *http_batch_list(const cJSON *root);
/* Turns a batch entry {"body","delay","content_type","body_encoding"} into *it (zeroed by the
 * caller); delay is the request's default. IMAPQ_E_INVALID with *why, or IMAPQ_E_NOMEM. *it may
 * hold a payload even on failure: release it with http_batch_item_clear() either way. */
imapq_err http_batch_item_decode(const cJSON *entry, uint32_t delay, struct http_batch_item *it,
				 const char **why);
void http_batch_item_clear(struct http_batch_item *it);
/* Reads a claim body {"max","lease","wait"} (empty: max 1, lease 0, wait 0). IMAPQ_E_INVALID with
 * *why on failure. */
imapq_err http_claim_decode(const char *body, size_t len, uint32_t *max_r, uint32_t *lease_r,
			    uint32_t *wait_r, const char **why);
/* Reads an ack, nack or extend body (route says which fields are allowed): the receipt, and
 * delay and lease (0 when absent). IMAPQ_E_INVALID with *why on failure. */
imapq_err http_settle_decode(enum http_route route, const char *body, size_t len,
			     struct queue_receipt *receipt_r, uint32_t *delay_r, uint32_t *lease_r,
			     const char **why);
/* Reads an optional queue settings body; *given_r tells whether any field was set. */
imapq_err http_settings_decode(const char *body, size_t len, struct queue_settings *set,
			       bool *given_r, const char **why);

/* --- Server and requests --- */

/* Status classes the request counters keep: 1xx..5xx, then requests that ended without a reply
 * (the client left a long poll or a reply waiting for its sync). */
#define HTTP_CLASS_ABORTED 5
#define HTTP_CLASSES	   6

/* Request counters, by route and by status class. */
struct http_counters {
	atomic_ullong requests[HTTP_ROUTE__COUNT][HTTP_CLASSES];
};

/* The long-poll parking lot: parked claims, a thread that resumes them. */
struct http_waitlist {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	pthread_t thread;
	bool thread_started;
	bool quit;
	struct http_request *parked;	  /* doubly linked through park_prev/park_next */
	struct http_request *resume_head; /* fired and suspended: to resume, singly linked */
	unsigned count;			  /* parked requests */
	bool closing;			  /* shutdown began: no more parking */
};

/* Replies held until their changes are durable: the connection is suspended, and the store's
 * commit hook resumes it once the durable LSN reaches the reply's. */
struct http_durable {
	pthread_mutex_t mu;
	struct http_request *held; /* singly linked through held_next */
	uint64_t last_lsn;	   /* the durable LSN of the latest commit notice */
	bool failed;		   /* the journal failed: durability will not advance again */
	bool closing;		   /* shutdown began: hold no more, wait in the thread instead */
	bool hooked;		   /* subscribed to the store's commit notices */
};

struct http_server {
	struct http_options opts;
	/* Two libmicrohttpd daemons share the connections (http/http_accept.c). */
	struct MHD_Daemon *poll_daemon;	 /* poll(): the first poll_cap connections */
	struct MHD_Daemon *epoll_daemon; /* epoll: every other connection */
	unsigned poll_cap;
	atomic_uint poll_open;	/* connections handed to poll_daemon and not closed yet */
	atomic_uint epoll_open; /* connections handed to epoll_daemon and not closed yet */
	unsigned port;
	int listen_fd; /* the acceptor's; closed after the daemons stop */
	pthread_t acceptor;
	bool acceptor_running;
	atomic_bool accept_stop;
	atomic_bool stopping;
	atomic_uint active; /* requests with a context, for the shutdown drain */
	bool stopped;
	struct http_waitlist wait;
	struct http_durable durable;
	struct http_counters counters;
};

/* One request, from its first header callback to MHD's completion notice. */
struct http_request {
	struct http_server *server;
	struct MHD_Connection *conn;
	enum http_method method;
	struct http_target target;
	unsigned status; /* the status queued, for the counters */

	/* The request body, NUL-terminated when body != NULL. */
	char *body;
	size_t body_len, body_cap;
	size_t body_limit; /* bytes accepted before the answer becomes 413 */
	size_t body_seen;  /* bytes received, kept ones or not */
	bool too_big;
	/* An answer decided on the first call (auth, route), sent once any body has been read. */
	imapq_err early_err;
	const char *early_why;
	bool bad_token; /* a token was given and refused (WWW-Authenticate error="invalid_token") */
	const struct access *access; /* the token's roles (access.h); NULL: every role */

	/* A claim in progress: its parameters and the long poll's state. */
	bool claim_started;
	uint32_t claim_max, claim_lease;
	int64_t deadline_ms; /* monotonic; when the long poll answers empty-handed */
	struct queue_waiter *waiter;
	/* Guarded by the waitlist's mutex. */
	bool parked, fired, suspended;
	struct http_request *park_prev, *park_next, *resume_next;

	/* The reply may leave only once this LSN is durable (0: at once). A reply built before
	 * then is held (the response and its status) while the connection is suspended. */
	uint64_t reply_lsn;
	struct MHD_Response *held_resp;
	unsigned held_status;
	/* Guarded by the durable list's mutex. */
	bool held_listed, held_suspended;
	struct http_request *held_next;

	/* Jobs handed out by this request's reply: released if the reply never reaches the client.
	 */
	struct queue_job *claimed;
	uint32_t n_claimed;
};

/* Milliseconds of CLOCK_MONOTONIC. */
int64_t http_now_ms(void);

/* --- Replies (each queues the response and returns MHD's verdict) --- */

/* Sends body (ownership taken, freed with free()) with content type ctype. */
enum MHD_Result http_reply_raw(struct http_request *req, unsigned status, const char *ctype,
			       char *body, size_t len);
/* Prints root (which is then deleted) as the reply; 503 when memory is short. */
enum MHD_Result http_reply_json(struct http_request *req, unsigned status, cJSON *root);
/* {"error":{"code","message"}} with err's status; message NULL uses the table's sentence. */
enum MHD_Result http_reply_error(struct http_request *req, imapq_err err, const char *message);
/* A reply without a body (204). */
enum MHD_Result http_reply_empty(struct http_request *req, unsigned status);
/* Makes every later reply of req wait until lsn is durable; no thread waits for it: the reply
 * is held and the connection suspended until the journal's commit notice (http_durable.c). Should
 * durability fail, the held reply is replaced by the error. */
void http_after(struct http_request *req, uint64_t lsn);
/* The same for everything visible now, so a reply built from read state never shows a change
 * that a crash could take back. */
void http_after_visible(struct http_request *req);
/* A query argument of the request, percent-decoded into buf; NULL when absent or malformed
 * (*bad_r set for malformed). */
const char *http_query(struct http_request *req, const char *key, char *buf, size_t cap,
		       bool *bad_r);
/* Reads ?limit= as a count in 1..max into *limit_r, def when absent; false when it is malformed
 * or out of range. */
bool http_query_limit(struct http_request *req, uint32_t def, uint32_t max, uint32_t *limit_r);

/* --- Handlers (http_jobs.c, http_queues.c, http_metrics.c) --- */

enum MHD_Result http_handle_enqueue(struct http_request *req);
enum MHD_Result http_handle_claim(struct http_request *req);
enum MHD_Result http_handle_settle(struct http_request *req); /* ack, nack, extend */
enum MHD_Result http_handle_peek(struct http_request *req);
enum MHD_Result http_handle_queues(struct http_request *req);
enum MHD_Result http_handle_queue(struct http_request *req);
enum MHD_Result http_handle_purge(struct http_request *req);
enum MHD_Result http_handle_requeue(struct http_request *req);
enum MHD_Result http_handle_changes(struct http_request *req);
enum MHD_Result http_handle_healthz(struct http_request *req);
enum MHD_Result http_handle_metrics(struct http_request *req);

/* What a job's reply object carries of its body. */
enum http_job_body {
	HTTP_JOB_NO_BODY,
	HTTP_JOB_BODY,		   /* the body, or the job fails: a claim must deliver it */
	HTTP_JOB_BODY_IF_READABLE, /* the body, or "body_error" naming why it cannot be read */
};

/* Adds a job's reply object (id, receipt, attempts, times, content type and body) to array;
 * reads the body through the queue layer. */
imapq_err http_job_to_json(struct http_request *req, const struct queue_job *job,
			   enum http_job_body body, cJSON *array);

/* --- Durable replies (http_durable.c) --- */

/* Subscribes the list to the store's commit notices. IMAPQ_E_LIMIT when the store has no slot. */
imapq_err http_durable_init(struct http_server *server);
/* Queues resp (ownership taken) with status once req->reply_lsn is durable: at once when it is
 * already, else by suspending the connection until the commit notice resumes it. */
enum MHD_Result http_durable_hold(struct http_request *req, struct MHD_Response *resp,
				  unsigned status);
/* The call of a request resumed by the commit notice: sends the held reply, or the error when
 * durability failed. */
enum MHD_Result http_durable_send(struct http_request *req);
/* Takes req off the list if it is there (a request freed while held). */
void http_durable_forget(struct http_request *req);
/* Shutdown: unsubscribes from the store, resumes every held request (each then waits for its
 * LSN in its pool thread), and makes later replies wait there too. */
void http_durable_close(struct http_server *server);
/* Frees the list's lock; no request may use it afterwards. */
void http_durable_fini(struct http_server *server);

/* --- Long polls (http_wait.c) --- */

imapq_err http_wait_init(struct http_waitlist *w);
/* Stops the resume thread after it resumed every fired request; later fired requests are
 * resumed by the thread that suspends them. The lot stays usable until http_wait_fini(). */
void http_wait_stop(struct http_waitlist *w);
/* Stops the thread if needed and frees the lot's locks; no request may use it afterwards. */
void http_wait_fini(struct http_waitlist *w);
/* Puts req into the lot until req->deadline_ms; IMAPQ_E_LIMIT when IMAPQ_HTTP_MAX_LONG_POLLS are
 * parked already. */
imapq_err http_wait_park(struct http_waitlist *w, struct http_request *req);
/* Takes req out of the lot if it is still there (a claim that found work before suspending). */
void http_wait_unpark(struct http_waitlist *w, struct http_request *req);
/* Records that req's connection is suspended; resumes it at once if it already fired. */
void http_wait_suspended(struct http_waitlist *w, struct http_request *req);
/* The queue_wake_fn of a parked claim (arg is the request): schedules its resumption. */
void http_wait_wake(void *arg);
/* Fires every parked request (shutdown). */
void http_wait_fire_all(struct http_waitlist *w);
/* Parked requests at the moment. */
unsigned http_wait_count(struct http_waitlist *w);

/* --- http_accept.c: the acceptor thread --- */

/* Starts accepting on server->listen_fd for the two daemons. */
imapq_err http_accept_start(struct http_server *server);
/* libmicrohttpd's connection notice for both daemons, cls their count (poll_open or
 * epoll_open): counts a closed connection out. */
void http_accept_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
			       enum MHD_ConnectionNotificationCode code);
/* Stops accepting; the listen socket stays open until the caller closes it. */
void http_accept_stop(struct http_server *server);

#endif
