/* Preloading a queue for bench_imap: by APPEND over the IMAP client library (MULTIAPPEND when
 * offered, else single APPENDs, several in flight, literals under LITERAL+), or by HTTP batches
 * into imapqd; either way the UIDs the server assigned are collected. Header-only, because every
 * tests/bench/bench_*.c is its own program; only bench_imap.c includes it. */
#ifndef IMAPQ_BENCH_IMAP_LOAD_H
#define IMAPQ_BENCH_IMAP_LOAD_H

#include <pthread.h>
#include <stdatomic.h>

#include "bench.h"
#include "bench_imap_servers.h"
#include "imap/client/client.h"
#include "imap/protocol/seqset.h"

/* Bytes of padding in each job body. */
#define PAD 64
/* Preloading: APPEND commands in flight, and messages per MULTIAPPEND command (RFC 3502). */
#define APPEND_WINDOW 128
#define MULTI_BATCH   250
/* The HTTP batch load of the latency phases: jobs per request and parallel connections. */
#define HTTP_BATCH   1000
#define HTTP_LOADERS 2

/* Writes job number n as a small message (headers and a JSON body); returns its length. */
static inline size_t job_message(char *buf, size_t cap, uint64_t n)
{
	static const char pad[PAD + 1] =
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
	int len =
	    snprintf(buf, cap,
		     "From: bench@imapq.invalid\r\nSubject: job %llu\r\n"
		     "Content-Type: application/json\r\n\r\n{\"job\":%llu,\"pad\":\"%s\"}\r\n",
		     (unsigned long long)n, (unsigned long long)n, pad);

	return len > 0 && (size_t)len < cap ? (size_t)len : 0;
}

/* --- Preloading by APPEND --- */

/* What the APPENDs of a preload returned. */
struct load {
	struct seqset *uids; /* from APPENDUID */
	unsigned done_tag;   /* newest command answered (answers come in order) */
	unsigned failed;
	char why[512];
	const char *how;      /* the way the jobs went in, for the table */
	pthread_mutex_t lock; /* the HTTP loaders share uids */
};

static inline void load_done(unsigned tag, const struct client_response *r, void *ctx)
{
	struct load *l = ctx;

	l->done_tag = tag;
	if (!r || r->status != CLIENT_STATUS_OK || r->code.type != CLIENT_CODE_APPENDUID ||
	    !r->code.set) {
		if (l->failed++ == 0)
			snprintf(l->why, sizeof(l->why), "APPEND answered %s %s",
				 !r				 ? "nothing"
				 : r->status != CLIENT_STATUS_OK ? "NO/BAD"
								 : "OK without APPENDUID",
				 r && r->text ? r->text : "");
		return;
	}
	for (size_t i = 0; i < seqset_range_count(r->code.set); i++) {
		const struct seqset_range *g = &seqset_ranges(r->code.set)[i];

		if (seqset_add(l->uids, g->lo, g->hi) != IMAPQ_OK && l->failed++ == 0)
			snprintf(l->why, sizeof(l->why), "out of memory");
	}
}

/* Waits for command tag unless its answer (or a later one) already came. */
static inline imapq_err load_wait(struct client *c, struct load *l, unsigned tag)
{
	if (tag == 0 || l->done_tag >= tag)
		return IMAPQ_OK;
	return client_wait(c, tag);
}

/* Appends n jobs to queue over c: MULTIAPPEND commands when offered, else single APPENDs, in
 * both cases with literals sent at once under LITERAL+ and several commands in flight. */
static inline bool preload_imap(struct client *c, const char *queue, uint32_t n, struct load *l)
{
	bool multi = client_has_cap(c, "MULTIAPPEND");
	unsigned per = multi ? MULTI_BATCH : 1;
	unsigned window = multi ? 4 : APPEND_WINDOW; /* commands in flight */
	size_t msg_cap = 512;
	char *bodies = malloc((size_t)per * msg_cap);
	struct client_part *parts = calloc(1 + 2 * (size_t)per, sizeof(*parts));
	unsigned *tags = calloc(window, sizeof(*tags));
	char head[128];
	uint64_t seq = 0;
	imapq_err err = IMAPQ_OK;

	if (!bodies || !parts || !tags) {
		snprintf(l->why, sizeof(l->why), "out of memory");
		l->failed++;
		goto out;
	}
	l->how = multi ? "MULTIAPPEND of 250, 4 in flight" : "APPEND, 128 in flight";
	snprintf(head, sizeof(head), "APPEND %s", queue);
	for (unsigned cmd = 0; seq < n && err == IMAPQ_OK && !l->failed; cmd++) {
		size_t np = 0;

		parts[np++] = (struct client_part){.type = CLIENT_PART_TEXT, .data = head};
		for (unsigned i = 0; i < per && seq < n; i++) {
			char *b = bodies + (size_t)i * msg_cap;
			size_t len = job_message(b, msg_cap, ++seq);

			parts[np++] = (struct client_part){.type = CLIENT_PART_TEXT, .data = " "};
			parts[np++] = (struct client_part){
			    .type = CLIENT_PART_LITERAL, .data = b, .len = len};
		}
		/* The slot's previous command must be answered before it is reused. */
		err = load_wait(c, l, tags[cmd % window]);
		if (err == IMAPQ_OK)
			err = client_submit(c, parts, np, load_done, l, &tags[cmd % window]);
		if (err == IMAPQ_OK)
			err = client_flush(c);
	}
	for (unsigned i = 0; i < window && err == IMAPQ_OK; i++)
		err = load_wait(c, l, tags[i]);
	if (err != IMAPQ_OK && !l->failed) {
		snprintf(l->why, sizeof(l->why), "%s", client_error(c));
		l->failed++;
	}
out:
	free(bodies);
	free(parts);
	free(tags);
	return !l->failed && err == IMAPQ_OK;
}

/* --- Preloading by HTTP batches (imapqd, for the large latency queue) --- */

struct http_load {
	const struct target *t;
	const char *queue;
	uint32_t n;
	atomic_uint next; /* next batch to send */
	struct load *l;
};

static inline void *http_loader(void *arg)
{
	struct http_load *h = arg;
	size_t cap = (size_t)HTTP_BATCH * 160 + 64;
	char *body = malloc(cap);
	char *reply = malloc(64 * 1024);
	char path[128], id[32];

	snprintf(path, sizeof(path), "/v1/queues/%s/messages", h->queue);
	while (body && reply) {
		uint64_t first = (uint64_t)atomic_fetch_add(&h->next, 1) * HTTP_BATCH;
		size_t len = 0, pos = 0;
		unsigned status, got = 0;
		uint32_t count;

		if (first >= h->n)
			break;
		count = (uint32_t)(h->n - first < HTTP_BATCH ? h->n - first : HTTP_BATCH);
		len += (size_t)snprintf(body, cap, "{\"messages\":[");
		for (uint32_t i = 0; i < count; i++)
			len += (size_t)snprintf(
			    body + len, cap - len, "%s{\"body\":{\"job\":%llu,\"pad\":\"%0*d\"}}",
			    i ? "," : "", (unsigned long long)(first + i + 1), PAD, 0);
		snprintf(body + len, cap - len, "]}");
		status = bench_http_call(h->t->http_port, h->t->token, "POST", path, body, reply,
					 64 * 1024);
		pthread_mutex_lock(&h->l->lock);
		while (status == 201 &&
		       bench_json_next(reply, strlen(reply), &pos, "id", id, sizeof(id))) {
			unsigned long v = strtoul(id, NULL, 10);

			if (v == 0 || v > UINT32_MAX ||
			    seqset_add(h->l->uids, (uint32_t)v, (uint32_t)v) != IMAPQ_OK)
				break;
			got++;
		}
		if (got != count && h->l->failed++ == 0)
			snprintf(h->l->why, sizeof(h->l->why), "POST %s answered %u: %.150s", path,
				 status, reply);
		pthread_mutex_unlock(&h->l->lock);
		if (got != count)
			break;
	}
	if (!body || !reply) {
		pthread_mutex_lock(&h->l->lock);
		if (h->l->failed++ == 0)
			snprintf(h->l->why, sizeof(h->l->why), "out of memory");
		pthread_mutex_unlock(&h->l->lock);
	}
	free(body);
	free(reply);
	return NULL;
}

/* Enqueues n jobs into queue (created first) with HTTP batches over HTTP_LOADERS connections. */
static inline bool preload_http(const struct target *t, const char *queue, uint32_t n,
				struct load *l)
{
	struct http_load h = {.t = t, .queue = queue, .n = n, .l = l};
	pthread_t th[HTTP_LOADERS];
	unsigned started = 0;
	char path[128], reply[512];
	unsigned st;

	l->how = "HTTP batches of 1000";
	snprintf(path, sizeof(path), "/v1/queues/%s", queue);
	st = bench_http_call(t->http_port, t->token, "PUT", path, "{}", reply, sizeof(reply));
	if (st != 200 && st != 201 && st != 204) {
		snprintf(l->why, sizeof(l->why), "PUT %s answered %u: %.200s", path, st, reply);
		l->failed++;
		return false;
	}
	for (; started < HTTP_LOADERS; started++)
		if (pthread_create(&th[started], NULL, http_loader, &h) != 0)
			break;
	if (started == 0)
		http_loader(&h);
	for (unsigned i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	return !l->failed;
}

#endif
