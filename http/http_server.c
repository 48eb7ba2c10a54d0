/* The libmicrohttpd daemon of the HTTP front: start and stop, the access handler that collects
 * bodies, checks routes and tokens and dispatches, the completion notice, and the reply helpers. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "http/http-private.h"
#include "imap/base/log.h"
#include "imap/base/net.h"

/* Listen backlog: bursts of workers connecting at once. */
#define HTTP_BACKLOG 511
/* GnuTLS priorities for HTTPS: its defaults without anything older than TLS 1.2. */
#define HTTP_TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
/* Poll interval of the shutdown drain. */
#define HTTP_DRAIN_POLL_US 5000
/* The first allocation for a request body: typical jobs fit, and staying below glibc's 1 KiB
 * large-chunk size spares a consolidation of its fast bins on every request. */
#define HTTP_BODY_FIRST_CAP 512
/* Bytes of a reply printed in the pool thread's own buffer (a claim of one small job takes about
 * 400); larger ones are printed into memory of their own. */
#define HTTP_REPLY_BUF 4096

int64_t http_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- Replies --- */

/* Adds the headers every reply carries (and those its status needs) to resp and sends it once
 * its change is durable. */
static enum MHD_Result reply_send(struct http_request *req, unsigned status, const char *ctype,
				  struct MHD_Response *resp)
{
	if (ctype != NULL)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (status == 401)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
					req->bad_token
					    ? "Bearer realm=\"imapq\", error=\"invalid_token\""
					    : "Bearer realm=\"imapq\"");
	if (status == 405) {
		char allow[64];
		http_route_allow(req->target.route, allow, sizeof allow);
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
	}
	return http_durable_hold(req, resp, status);
}

enum MHD_Result http_reply_raw(struct http_request *req, unsigned status, const char *ctype,
			       char *body, size_t len)
{
	struct MHD_Response *resp;
	if (body != NULL)
		resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	else
		resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	if (resp == NULL) {
		free(body);
		return MHD_NO;
	}
	return reply_send(req, status, ctype, resp);
}

/* The reply of last resort when even an error body cannot be built. */
static enum MHD_Result reply_no_memory(struct http_request *req)
{
	static const char text[] = "{\"error\":{\"code\":\"out_of_memory\",\"message\":\"the "
				   "server ran out of memory\"}}\n";
	char *copy = strdup(text);
	return http_reply_raw(req, 503, "application/json", copy, copy ? strlen(copy) : 0);
}

enum MHD_Result http_reply_json(struct http_request *req, unsigned status, cJSON *root)
{
	/* Most replies fit this thread's buffer: printing there spares cJSON's growing
	 * allocations (a first block, reallocations, a final fit), and libmicrohttpd copies the
	 * text once. One byte is kept back for the newline. */
	static _Thread_local char text[HTTP_REPLY_BUF];
	if (root != NULL && cJSON_PrintPreallocated(root, text, (int)sizeof text - 1, false)) {
		cJSON_Delete(root);
		size_t len = strlen(text);
		text[len++] = '\n';
		struct MHD_Response *resp =
		    MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_COPY);
		return resp != NULL ? reply_send(req, status, "application/json", resp) : MHD_NO;
	}
	char *printed = root ? cJSON_PrintUnformatted(root) : NULL;
	cJSON_Delete(root);
	if (printed == NULL)
		return reply_no_memory(req);
	/* cJSON allocates with malloc (no hooks are installed): grow its text in place for the
	 * newline and hand it to libmicrohttpd, which frees it, instead of copying it. */
	size_t len = strlen(printed);
	char *body = realloc(printed, len + 2);
	if (body == NULL) {
		cJSON_free(printed);
		return reply_no_memory(req);
	}
	body[len++] = '\n';
	body[len] = '\0';
	return http_reply_raw(req, status, "application/json", body, len);
}

enum MHD_Result http_reply_error(struct http_request *req, imapq_err err, const char *message)
{
	cJSON *root = cJSON_CreateObject();
	cJSON *e = cJSON_AddObjectToObject(root, "error");
	if (e == NULL || !cJSON_AddStringToObject(e, "code", imapq_err_name(err)) ||
	    !cJSON_AddStringToObject(e, "message", message ? message : imapq_err_message(err))) {
		cJSON_Delete(root);
		return reply_no_memory(req);
	}
	return http_reply_json(req, (unsigned)imapq_err_http_status(err), root);
}

enum MHD_Result http_reply_empty(struct http_request *req, unsigned status)
{
	return http_reply_raw(req, status, NULL, NULL, 0);
}

void http_after(struct http_request *req, uint64_t lsn)
{
	if (lsn > req->reply_lsn)
		req->reply_lsn = lsn;
}

void http_after_visible(struct http_request *req)
{
	http_after(req, store_visible_lsn(req->server->opts.store));
}

const char *http_query(struct http_request *req, const char *key, char *buf, size_t cap,
		       bool *bad_r)
{
	const char *raw = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, key);
	if (raw == NULL)
		return NULL;
	if (!http_percent_decode(raw, strlen(raw), buf, cap)) {
		*bad_r = true;
		return NULL;
	}
	return buf;
}

bool http_query_limit(struct http_request *req, uint32_t def, uint32_t max, uint32_t *limit_r)
{
	char text[16];
	bool bad = false;
	uint64_t limit = def;
	const char *s = http_query(req, "limit", text, sizeof text, &bad);
	if (bad || (s != NULL && !http_parse_u64(s, 1, max, &limit)))
		return false;
	*limit_r = (uint32_t)limit;
	return true;
}

/* --- Requests --- */

/* libmicrohttpd hands the URL over undecoded: the router decodes each path segment by itself so
 * that %2F stays inside a queue name, and query values are decoded when read. */
static size_t unescape_none(void *cls, struct MHD_Connection *conn, char *s)
{
	(void)cls;
	(void)conn;
	return strlen(s);
}

/* Routes the libmicrohttpd log through ours. */
__attribute__((format(printf, 2, 0))) static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
	char line[512];
	(void)cls;
	vsnprintf(line, sizeof line, fmt, ap);
	line[strcspn(line, "\r\n")] = '\0';
	log_warn("http", "%s", line);
}

/* The bytes a request's body may have: raw job bodies may be larger than JSON. */
static size_t body_limit(struct http_request *req)
{
	if (req->target.route == HTTP_ROUTE_MESSAGES && req->method == HTTP_POST) {
		const char *ctype = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND,
								MHD_HTTP_HEADER_CONTENT_TYPE);
		if (!http_content_type_is_json(ctype))
			return IMAPQ_HTTP_MAX_BODY;
	}
	return IMAPQ_HTTP_MAX_JSON;
}

/* Checks the bearer token against the route's role; sets req->early_err on failure. */
static void check_token(struct http_request *req)
{
	struct http_server *server = req->server;
	const char *auth =
	    MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0) {
		req->early_err = IMAPQ_E_AUTH;
		req->early_why = "a bearer token is required (Authorization: Bearer TOKEN)";
		return;
	}
	const char *token = auth + 7;
	while (*token == ' ')
		token++;
	imapq_err err = server->opts.auth
			    ? server->opts.auth(server->opts.auth_ctx, token,
						http_route_role(req->target.route, req->method),
						req->target.queue, &req->access)
			    : IMAPQ_E_AUTH;
	if (err == IMAPQ_OK)
		return;
	req->early_err = err;
	if (err == IMAPQ_E_AUTH) {
		req->bad_token = true;
		req->early_why = "the bearer token is not valid";
	} else if (err == IMAPQ_E_NOPERM) {
		req->early_why = "the token lacks the role this endpoint needs";
	}
}

/* Decides on the first call what can be decided from the request line and headers. */
static void precheck(struct http_request *req)
{
	struct http_target *t = &req->target;
	if (atomic_load(&req->server->stopping)) {
		req->early_err = IMAPQ_E_UNAVAILABLE;
		req->early_why = "the server is shutting down";
	} else if (t->route == HTTP_ROUTE_NONE) {
		req->early_err = IMAPQ_E_NONEXISTENT;
		req->early_why = "no such resource";
	} else if (!(http_route_methods(t->route) & req->method)) {
		req->early_err = IMAPQ_E_INVALID; /* answered 405 */
		req->early_why = "method not allowed on this resource";
	} else if (t->route != HTTP_ROUTE_HEALTHZ) {
		check_token(req);
		/* A target that does not parse has no queue for the role check, which then asks
		 * for the role on every queue: a valid token limited to some queues gets the 400
		 * the target deserves, not a 403. */
		bool valid_token = req->early_err == IMAPQ_OK || req->early_err == IMAPQ_E_NOPERM;
		if (valid_token && t->err != IMAPQ_OK) {
			req->early_err = t->err;
			req->early_why = t->problem;
		}
	}
}

/* True when the request announces a body (a Content-Length above 0 or chunked transfer). */
static bool has_body(struct http_request *req, uint64_t *length_r)
{
	const char *cl =
	    MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	const char *te = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND,
						     MHD_HTTP_HEADER_TRANSFER_ENCODING);
	*length_r = 0;
	if (cl != NULL && !http_parse_u64(cl, 0, UINT64_MAX, length_r))
		*length_r = UINT64_MAX;
	return *length_r > 0 || te != NULL;
}

/* Answers the early verdict. */
static enum MHD_Result reply_early(struct http_request *req)
{
	if (req->early_err == IMAPQ_E_INVALID && req->target.route != HTTP_ROUTE_NONE &&
	    !(http_route_methods(req->target.route) & req->method)) {
		cJSON *root = cJSON_CreateObject();
		cJSON *e = cJSON_AddObjectToObject(root, "error");
		cJSON_AddStringToObject(e, "code", "method_not_allowed");
		cJSON_AddStringToObject(e, "message", req->early_why);
		return http_reply_json(req, 405, root);
	}
	return http_reply_error(req, req->early_err, req->early_why);
}

/* The first call for a request: its context, routing and the checks that need no body. */
static enum MHD_Result request_begin(struct http_server *server, struct MHD_Connection *conn,
				     const char *url, const char *method, void **con_cls)
{
	struct http_request *req = calloc(1, sizeof *req);
	if (req == NULL)
		return MHD_NO;
	req->server = server;
	req->conn = conn;
	req->method = http_method_parse(method);
	http_route_parse(url, &req->target);
	*con_cls = req;
	atomic_fetch_add(&server->active, 1);
	precheck(req);
	req->body_limit = body_limit(req);
	uint64_t length;
	bool body = has_body(req, &length);
	if (length != UINT64_MAX && length > req->body_limit) {
		req->too_big = true;
		return http_reply_error(req, IMAPQ_E_TOOBIG, "the request body exceeds the limit");
	}
	/* Refuse before reading a body that would be thrown away; a bodiless request is answered
	 * on the next call, which keeps the connection alive. */
	if (req->early_err != IMAPQ_OK && body)
		return reply_early(req);
	return MHD_YES;
}

/* Takes a piece of the body; false when the peer keeps sending far past the limit. */
static bool body_take(struct http_request *req, const char *data, size_t n)
{
	req->body_seen += n;
	if (req->too_big || req->body_len + n > req->body_limit) {
		if (!req->too_big)
			log_info("http", "%s: request body over %zu bytes refused",
				 http_route_name(req->target.route), req->body_limit);
		req->too_big = true;
		free(req->body);
		req->body = NULL;
		req->body_len = req->body_cap = 0;
		return req->body_seen <= IMAPQ_HTTP_MAX_DRAIN;
	}
	if (req->body_len + n + 1 > req->body_cap) {
		size_t cap = req->body_cap ? req->body_cap : HTTP_BODY_FIRST_CAP;
		while (cap < req->body_len + n + 1)
			cap *= 2;
		char *grown = realloc(req->body, cap);
		if (grown == NULL)
			return false;
		req->body = grown;
		req->body_cap = cap;
	}
	memcpy(req->body + req->body_len, data, n);
	req->body_len += n;
	req->body[req->body_len] = '\0';
	return true;
}

/* The final call: the whole request is in; answer it. */
static enum MHD_Result request_dispatch(struct http_request *req)
{
	if (req->too_big)
		return http_reply_error(req, IMAPQ_E_TOOBIG, "the request body exceeds the limit");
	if (req->early_err != IMAPQ_OK)
		return reply_early(req);
	switch (req->target.route) {
	case HTTP_ROUTE_HEALTHZ:
		return http_handle_healthz(req);
	case HTTP_ROUTE_METRICS:
		return http_handle_metrics(req);
	case HTTP_ROUTE_QUEUES:
		return http_handle_queues(req);
	case HTTP_ROUTE_QUEUE:
		return http_handle_queue(req);
	case HTTP_ROUTE_PURGE:
		return http_handle_purge(req);
	case HTTP_ROUTE_MESSAGES:
		return req->method == HTTP_POST ? http_handle_enqueue(req) : http_handle_peek(req);
	case HTTP_ROUTE_CLAIMS:
		return http_handle_claim(req);
	case HTTP_ROUTE_ACK:
	case HTTP_ROUTE_NACK:
	case HTTP_ROUTE_EXTEND:
		return http_handle_settle(req);
	case HTTP_ROUTE_REQUEUE_ALL:
	case HTTP_ROUTE_REQUEUE_ONE:
		return http_handle_requeue(req);
	case HTTP_ROUTE_CHANGES:
		return http_handle_changes(req);
	default:
		return http_reply_error(req, IMAPQ_E_NONEXISTENT, "no such resource");
	}
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
				 const char *method, const char *version, const char *upload_data,
				 size_t *upload_data_size, void **con_cls)
{
	struct http_request *req = *con_cls;
	(void)version;
	if (req == NULL)
		return request_begin(cls, conn, url, method, con_cls);
	if (req->held_resp != NULL)
		return http_durable_send(req);
	if (req->status != 0) {
		/* Answered early: discard whatever body still arrives. */
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (*upload_data_size != 0) {
		bool ok = body_take(req, upload_data, *upload_data_size);
		*upload_data_size = 0;
		return ok ? MHD_YES : MHD_NO;
	}
	return request_dispatch(req);
}

/* Gives back jobs whose reply never reached the client, so they need not wait for the lease. */
static void release_claims(struct http_request *req)
{
	for (uint32_t i = 0; i < req->n_claimed; i++) {
		uint64_t lsn;
		const struct queue_job *job = &req->claimed[i];
		imapq_err err = queue_nack(req->server->opts.qs, req->target.queue, job->id,
					   job->receipt, 0, &lsn);
		log_info("http", "claim reply to a vanished client: job %u of %s %s", job->id,
			 req->target.queue, err == IMAPQ_OK ? "released" : "left to its lease");
	}
}

/* Frees a request, leaving the parking lot and the queue's waiters first. */
static void request_free(struct http_request *req)
{
	if (req->waiter != NULL)
		queue_wait_cancel(req->server->opts.qs, &req->waiter);
	http_wait_unpark(&req->server->wait, req);
	http_durable_forget(req);
	free(req->claimed);
	free(req->body);
	free(req);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct http_server *server = cls;
	struct http_request *req = *con_cls;
	(void)conn;
	if (req == NULL)
		return;
	if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && req->n_claimed > 0)
		release_claims(req);
	unsigned cls_index =
	    req->status >= 100 && req->status < 600 ? req->status / 100 - 1 : HTTP_CLASS_ABORTED;
	atomic_fetch_add(&server->counters.requests[req->target.route][cls_index], 1);
	request_free(req);
	*con_cls = NULL;
	atomic_fetch_sub(&server->active, 1);
}

/* --- Server --- */

/* IMAPQ_HTTP_THREADS_PER_CORE threads per online core, at least two, at most
 * IMAPQ_HTTP_MAX_THREADS. */
static unsigned pool_size(void)
{
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned n = cores > 0 && cores <= IMAPQ_HTTP_MAX_THREADS
			 ? (unsigned)cores * IMAPQ_HTTP_THREADS_PER_CORE
			 : IMAPQ_HTTP_MAX_THREADS;
	return n < 2 ? 2 : n > IMAPQ_HTTP_MAX_THREADS ? IMAPQ_HTTP_MAX_THREADS : n;
}

/* Starts one libmicrohttpd daemon without a listen socket (the acceptor hands it connections),
 * waiting with poll() when poll is set and with epoll otherwise, with at most limit connections
 * and per_ip from one address (0: no limit of its own); open counts its open connections. */
static struct MHD_Daemon *start_daemon(struct http_server *server, bool poll, unsigned limit,
				       unsigned per_ip, atomic_uint *open)
{
	const struct http_options *opts = &server->opts;
	unsigned flags = (poll ? MHD_USE_POLL_INTERNAL_THREAD : MHD_USE_EPOLL_INTERNAL_THREAD) |
			 MHD_USE_NO_LISTEN_SOCKET | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC |
			 MHD_USE_ERROR_LOG;
	/* HTTPS: libmicrohttpd's TLS is GnuTLS, held to the same floor as the IMAP listeners. */
	struct MHD_OptionItem tls_options[] = {
	    {MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)opts->tls_cert_pem},
	    {MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)opts->tls_key_pem},
	    {MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)HTTP_TLS_PRIORITIES},
	    {MHD_OPTION_END, 0, NULL},
	};
	if (opts->tls_cert_pem != NULL && opts->tls_key_pem != NULL)
		flags |= MHD_USE_TLS;
	else
		tls_options[0].option = MHD_OPTION_END;
	return MHD_start_daemon(
	    flags, 0, NULL, NULL, on_access, server, MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL,
	    MHD_OPTION_THREAD_POOL_SIZE, pool_size(), MHD_OPTION_CONNECTION_LIMIT, limit,
	    MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_ip, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
	    (size_t)IMAPQ_HTTP_CONNECTION_MEMORY, MHD_OPTION_CONNECTION_TIMEOUT,
	    (unsigned)IMAPQ_HTTP_TIMEOUT_S, MHD_OPTION_NOTIFY_COMPLETED, on_completed, server,
	    MHD_OPTION_NOTIFY_CONNECTION, http_accept_on_connection, open,
	    MHD_OPTION_UNESCAPE_CALLBACK, unescape_none, NULL, MHD_OPTION_ARRAY, tls_options,
	    MHD_OPTION_END);
}

/* Starts both daemons, with the limits http/http_accept.c explains. */
static imapq_err start_daemons(struct http_server *server)
{
	server->poll_cap = pool_size() * IMAPQ_HTTP_POLL_PER_THREAD;
	server->poll_daemon =
	    start_daemon(server, true, IMAPQ_HTTP_MAX_CONNECTIONS, 0, &server->poll_open);
	if (server->poll_daemon == NULL)
		return IMAPQ_E_UNAVAILABLE;
	server->epoll_daemon =
	    start_daemon(server, false, IMAPQ_HTTP_MAX_CONNECTIONS - server->poll_cap,
			 IMAPQ_HTTP_MAX_PER_IP - server->poll_cap, &server->epoll_open);
	if (server->epoll_daemon == NULL) {
		MHD_stop_daemon(server->poll_daemon);
		server->poll_daemon = NULL;
		return IMAPQ_E_UNAVAILABLE;
	}
	return IMAPQ_OK;
}

static void stop_daemons(struct http_server *server)
{
	MHD_stop_daemon(server->poll_daemon);
	MHD_stop_daemon(server->epoll_daemon);
	server->poll_daemon = NULL;
	server->epoll_daemon = NULL;
}

imapq_err http_server_create(const struct http_options *opts, struct http_server **server_r)
{
	*server_r = NULL;
	if (opts->tls_cert_pem != NULL && opts->tls_key_pem != NULL &&
	    MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
		log_error("http", "this libmicrohttpd was built without TLS");
		return IMAPQ_E_UNAVAILABLE;
	}
	struct http_server *server = calloc(1, sizeof *server);
	if (server == NULL)
		return IMAPQ_E_NOMEM;
	server->opts = *opts;
	server->opts.host = NULL; /* not kept: only used to bind */
	imapq_err err = http_wait_init(&server->wait);
	if (err != IMAPQ_OK) {
		free(server);
		return err;
	}
	err = http_durable_init(server);
	if (err != IMAPQ_OK) {
		http_wait_fini(&server->wait);
		free(server);
		return err;
	}
	err = net_listen(opts->host, opts->port, HTTP_BACKLOG, &server->listen_fd, &server->port);
	if (err != IMAPQ_OK) {
		http_durable_fini(server);
		http_wait_fini(&server->wait);
		free(server);
		return err;
	}
	err = start_daemons(server);
	if (err != IMAPQ_OK) {
		log_error("http", "libmicrohttpd failed to start");
	} else if ((err = http_accept_start(server)) != IMAPQ_OK) {
		log_error("http", "cannot start accepting connections: %s", imapq_err_message(err));
		stop_daemons(server);
	}
	if (err != IMAPQ_OK) {
		close(server->listen_fd);
		http_durable_fini(server);
		http_wait_fini(&server->wait);
		free(server);
		return err;
	}
	*server_r = server;
	return IMAPQ_OK;
}

unsigned http_server_port(const struct http_server *server)
{
	return server->port;
}

void http_server_stop(struct http_server *server)
{
	if (server == NULL || server->stopped)
		return;
	server->stopped = true;
	atomic_store(&server->stopping, true);
	http_wait_fire_all(&server->wait);
	int64_t deadline = http_now_ms() + IMAPQ_HTTP_SHUTDOWN_GRACE_MS;
	while ((http_wait_count(&server->wait) > 0 || atomic_load(&server->active) > 0) &&
	       http_now_ms() < deadline)
		usleep(HTTP_DRAIN_POLL_US);
	/* Every parked request has been handed to the resume thread; joining it makes sure each
	 * resumption was issued before libmicrohttpd stops (a suspended connection must not
	 * remain). */
	http_wait_stop(&server->wait);
	/* Held replies are resumed too; from now on a reply waits for its LSN in its thread. */
	http_durable_close(server);
	http_accept_stop(server);
	stop_daemons(server);
	close(server->listen_fd);
	log_info("http", "stopped");
}

void http_server_destroy(struct http_server **server)
{
	if (*server == NULL)
		return;
	http_server_stop(*server);
	http_durable_fini(*server);
	http_wait_fini(&(*server)->wait);
	free(*server);
	*server = NULL;
}
