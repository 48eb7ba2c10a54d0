/* Operations endpoints: /healthz for load balancers and /metrics in the Prometheus text format
 * (queue depths and counters, HTTP requests, journal fsyncs and their latency). */
#include <stdlib.h>
#include <string.h>

#include "http/http-private.h"

enum MHD_Result http_handle_healthz(struct http_request *req)
{
	struct store_stats st;
	store_stats(req->server->opts.store, &st);
	cJSON *root = cJSON_CreateObject();
	if (st.journal.failed) {
		cJSON_AddStringToObject(root, "status", "read_only");
		return http_reply_json(req, 503, root);
	}
	cJSON_AddStringToObject(root, "status", "ok");
	return http_reply_json(req, 200, root);
}

/* queue_metrics() output goes straight into the reply buffer. */
static void append_text(void *ctx, const char *text, size_t len)
{
	buf_append(ctx, text, len);
}

/* The HTTP request counters, one series per route and status class that saw traffic. */
static void http_metrics(struct http_server *server, struct buf *b)
{
	static const char *const class_names[HTTP_CLASSES] = {"1xx", "2xx", "3xx",
							      "4xx", "5xx", "aborted"};
	buf_puts(b, "# HELP imapq_http_requests_total HTTP requests, by route and status class "
		    "(aborted: ended without a reply).\n"
		    "# TYPE imapq_http_requests_total counter\n");
	for (unsigned r = 0; r < HTTP_ROUTE__COUNT; r++) {
		for (unsigned c = 0; c < HTTP_CLASSES; c++) {
			unsigned long long n = atomic_load(&server->counters.requests[r][c]);
			if (n == 0)
				continue;
			/* The two requeue routes share a name: give the single one its own. */
			const char *name =
			    r == HTTP_ROUTE_REQUEUE_ONE ? "requeue_one" : http_route_name(r);
			buf_printf(b, "imapq_http_requests_total{route=\"%s\",code=\"%s\"} %llu\n",
				   name, class_names[c], n);
		}
	}
	buf_printf(b,
		   "# HELP imapq_http_long_polls Claims parked waiting for a job.\n"
		   "# TYPE imapq_http_long_polls gauge\n"
		   "imapq_http_long_polls %u\n"
		   "# HELP imapq_http_connections Open HTTP connections, by the daemon serving "
		   "them.\n"
		   "# TYPE imapq_http_connections gauge\n"
		   "imapq_http_connections{daemon=\"poll\"} %u\n"
		   "imapq_http_connections{daemon=\"epoll\"} %u\n"
		   "# HELP imapq_http_poll_connections_max Connections the poll daemon takes "
		   "before new ones go to the epoll daemon.\n"
		   "# TYPE imapq_http_poll_connections_max gauge\n"
		   "imapq_http_poll_connections_max %u\n",
		   http_wait_count(&server->wait), atomic_load(&server->poll_open),
		   atomic_load(&server->epoll_open), server->poll_cap);
}

/* Journal figures from the store. */
static void store_metrics(struct store *store, struct buf *b)
{
	struct store_stats st;
	store_stats(store, &st);
	buf_printf(b,
		   "# HELP imapq_journal_fsync_seconds Time spent in fdatasync of the journal.\n"
		   "# TYPE imapq_journal_fsync_seconds summary\n"
		   "imapq_journal_fsync_seconds_sum %.9f\n"
		   "imapq_journal_fsync_seconds_count %llu\n"
		   "# HELP imapq_journal_commits_total Group commits that wrote records.\n"
		   "# TYPE imapq_journal_commits_total counter\n"
		   "imapq_journal_commits_total %llu\n"
		   "# HELP imapq_journal_records_total Journal records appended since start.\n"
		   "# TYPE imapq_journal_records_total counter\n"
		   "imapq_journal_records_total %llu\n"
		   "# HELP imapq_journal_disk_bytes Bytes of records in all journal segments.\n"
		   "# TYPE imapq_journal_disk_bytes gauge\n"
		   "imapq_journal_disk_bytes %llu\n"
		   "# HELP imapq_journal_needed_bytes Bytes the live state takes in the journal "
		   "once compacted (an estimate).\n"
		   "# TYPE imapq_journal_needed_bytes gauge\n"
		   "imapq_journal_needed_bytes %llu\n"
		   "# HELP imapq_journal_compactions_total Journal segments compaction freed.\n"
		   "# TYPE imapq_journal_compactions_total counter\n"
		   "imapq_journal_compactions_total %llu\n"
		   "# HELP imapq_journal_carried_bytes_total Body bytes compaction re-wrote.\n"
		   "# TYPE imapq_journal_carried_bytes_total counter\n"
		   "imapq_journal_carried_bytes_total %llu\n"
		   "# HELP imapq_journal_damaged_bodies_total Bodies found changed on disk when "
		   "copied or carried.\n"
		   "# TYPE imapq_journal_damaged_bodies_total counter\n"
		   "imapq_journal_damaged_bodies_total %llu\n"
		   "# HELP imapq_journal_failed 1 when the journal failed and refuses writes.\n"
		   "# TYPE imapq_journal_failed gauge\n"
		   "imapq_journal_failed %d\n"
		   "# HELP imapq_store_messages Messages held in all mailboxes.\n"
		   "# TYPE imapq_store_messages gauge\n"
		   "imapq_store_messages %llu\n",
		   (double)st.journal.fsync_ns / 1e9, (unsigned long long)st.journal.fsyncs,
		   (unsigned long long)st.journal.commits, (unsigned long long)st.journal.records,
		   (unsigned long long)st.journal.disk_bytes, (unsigned long long)st.needed_bytes,
		   (unsigned long long)st.compactions, (unsigned long long)st.carried_bytes,
		   (unsigned long long)st.damaged_bodies, st.journal.failed ? 1 : 0,
		   (unsigned long long)st.messages);
}

enum MHD_Result http_handle_metrics(struct http_request *req)
{
	struct buf b = {0};
	queue_metrics(req->server->opts.qs, append_text, &b);
	http_metrics(req->server, &b);
	store_metrics(req->server->opts.store, &b);
	if (buf_failed(&b)) {
		buf_free(&b);
		return http_reply_error(req, IMAPQ_E_NOMEM, NULL);
	}
	size_t len = buf_len(&b);
	char *body = malloc(len + 1);
	if (body == NULL) {
		buf_free(&b);
		return http_reply_error(req, IMAPQ_E_NOMEM, NULL);
	}
	memcpy(body, buf_bytes(&b), len);
	buf_free(&b);
	return http_reply_raw(req, 200, "text/plain; version=0.0.4; charset=utf-8", body, len);
}
