/* Queue endpoints: list, create or change (PUT), inspect, delete, purge, requeue dead letters,
 * and the change feed. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http-private.h"
#include "imap/server/access.h"

/* Adds the queue's counts to obj (ready, claimed, delayed, dead). */
static void add_counts(cJSON *obj, const struct queue_stats *st)
{
	cJSON_AddNumberToObject(obj, "ready", st->ready);
	cJSON_AddNumberToObject(obj, "claimed", st->claimed);
	cJSON_AddNumberToObject(obj, "delayed", st->delayed);
	cJSON_AddNumberToObject(obj, "dead", st->dead);
}

/* Names gathered by queue_list (the callback copies only). */
struct name_list {
	char **names;
	size_t n, cap;
	bool failed;
};

static void collect_name(void *arg, const char *name)
{
	struct name_list *l = arg;
	if (l->failed)
		return;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		char **grown = realloc(l->names, cap * sizeof *grown);
		if (grown == NULL) {
			l->failed = true;
			return;
		}
		l->names = grown;
		l->cap = cap;
	}
	l->names[l->n] = strdup(name);
	if (l->names[l->n] == NULL)
		l->failed = true;
	else
		l->n++;
}

enum MHD_Result http_handle_queues(struct http_request *req)
{
	struct queue_service *qs = req->server->opts.qs;
	struct name_list l = {0};
	queue_list(qs, collect_name, &l);
	cJSON *root = cJSON_CreateObject();
	cJSON *list = cJSON_AddArrayToObject(root, "queues");
	bool ok = !l.failed && list != NULL;
	for (size_t i = 0; i < l.n && ok; i++) {
		struct queue_stats st;
		if (access_roles(req->access, l.names[i]) == 0)
			continue; /* hidden from this token */
		if (queue_stats(qs, l.names[i], &st) != IMAPQ_OK)
			continue; /* deleted since the listing */
		cJSON *q = cJSON_CreateObject();
		ok = q != NULL && cJSON_AddItemToArray(list, q) &&
		     cJSON_AddStringToObject(q, "name", l.names[i]);
		if (ok)
			add_counts(q, &st);
	}
	for (size_t i = 0; i < l.n; i++)
		free(l.names[i]);
	free(l.names);
	if (!ok) {
		cJSON_Delete(root);
		return http_reply_error(req, IMAPQ_E_NOMEM, NULL);
	}
	http_after_visible(req);
	return http_reply_json(req, 200, root);
}

/* Replies with the queue's settings and statistics under status. */
static enum MHD_Result reply_queue(struct http_request *req, unsigned status)
{
	struct queue_service *qs = req->server->opts.qs;
	struct queue_settings set;
	struct queue_stats st;
	imapq_err err = queue_settings_get(qs, req->target.queue, &set);
	if (err == IMAPQ_OK)
		err = queue_stats(qs, req->target.queue, &st);
	if (err != IMAPQ_OK)
		return http_reply_error(req, err, NULL);
	http_after_visible(req);
	cJSON *root = cJSON_CreateObject();
	cJSON_AddStringToObject(root, "name", req->target.queue);
	cJSON *s = cJSON_AddObjectToObject(root, "settings");
	cJSON_AddNumberToObject(s, "lease", set.lease);
	cJSON_AddNumberToObject(s, "max_attempts", set.max_attempts);
	cJSON_AddNumberToObject(s, "retention", set.retention);
	cJSON_AddNumberToObject(s, "max_messages", set.max_messages);
	cJSON *t = cJSON_AddObjectToObject(root, "stats");
	add_counts(t, &st);
	cJSON_AddNumberToObject(t, "messages", st.messages);
	if (st.oldest_ready_age >= 0)
		cJSON_AddNumberToObject(t, "oldest_ready_age", (double)st.oldest_ready_age);
	else
		cJSON_AddNullToObject(t, "oldest_ready_age");
	http_json_add_u64_string(t, "highestmodseq", st.highestmodseq);
	cJSON_AddNumberToObject(t, "enqueued", (double)st.enqueued);
	cJSON_AddNumberToObject(t, "claims", (double)st.claims);
	cJSON_AddNumberToObject(t, "acks", (double)st.acks);
	cJSON_AddNumberToObject(t, "nacks", (double)st.nacks);
	cJSON_AddNumberToObject(t, "expired", (double)st.expired);
	cJSON_AddNumberToObject(t, "dead_lettered", (double)st.dead_lettered);
	return http_reply_json(req, status, root);
}

imapq_err http_settings_decode(const char *body, size_t len, struct queue_settings *set,
			       bool *given_r, const char **why)
{
	static const char *const fields[] = {"lease", "max_attempts", "retention", "max_messages",
					     NULL};
	memset(set, 0, sizeof *set);
	*given_r = false;
	if (len == 0)
		return IMAPQ_OK;
	cJSON *root = NULL;
	imapq_err err = http_json_parse(body, len, &root, why);
	if (err == IMAPQ_OK && !cJSON_IsObject(root)) {
		err = IMAPQ_E_INVALID;
		*why = "the settings must be a JSON object";
	}
	if (err == IMAPQ_OK)
		err = http_json_fields(root, fields, why);
	if (err == IMAPQ_OK)
		err = http_json_uint(root, "lease", 1, IMAPQ_MAX_QUEUE_SETTING, &set->lease, why);
	if (err == IMAPQ_OK)
		err = http_json_uint(root, "max_attempts", 1, IMAPQ_MAX_QUEUE_SETTING,
				     &set->max_attempts, why);
	if (err == IMAPQ_OK)
		err = http_json_uint(root, "retention", 1, IMAPQ_MAX_QUEUE_SETTING, &set->retention,
				     why);
	if (err == IMAPQ_OK)
		err = http_json_uint(root, "max_messages", 1, IMAPQ_MAX_MESSAGES_SETTING,
				     &set->max_messages, why);
	cJSON_Delete(root);
	*given_r = set->lease || set->max_attempts || set->retention || set->max_messages;
	return err;
}

/* PUT: creates the queue (201) or changes the settings of an existing one (200). */
static enum MHD_Result put_queue(struct http_request *req)
{
	struct queue_service *qs = req->server->opts.qs;
	struct queue_settings set;
	bool given;
	const char *why = NULL;
	imapq_err err = http_settings_decode(req->body, req->body_len, &set, &given, &why);
	if (err != IMAPQ_OK)
		return http_reply_error(req, err, why);
	struct queue_settings full = {
	    .lease = set.lease ? set.lease : STORE_DEFAULT_LEASE,
	    .max_attempts = set.max_attempts ? set.max_attempts : STORE_DEFAULT_MAX_ATTEMPTS,
	    .retention = set.retention ? set.retention : STORE_DEFAULT_RETENTION,
	    .max_messages = set.max_messages, /* 0: the store's default, left unset */
	};
	uint64_t lsn = 0;
	unsigned status = 201;
	err = queue_create(qs, req->target.queue, &full, &lsn);
	if (err == IMAPQ_E_EXISTS) {
		status = 200;
		err = given ? queue_settings_set(qs, req->target.queue, &set, &lsn) : IMAPQ_OK;
		if (!given)
			lsn = store_visible_lsn(req->server->opts.store);
	}
	if (err != IMAPQ_OK)
		return http_reply_error(req, err, NULL);
	http_after(req, lsn);
	return reply_queue(req, status);
}

enum MHD_Result http_handle_queue(struct http_request *req)
{
	if (req->method == HTTP_PUT)
		return put_queue(req);
	if (req->method != HTTP_DELETE)
		return reply_queue(req, 200);
	uint64_t lsn = 0;
	imapq_err err = queue_delete(req->server->opts.qs, req->target.queue, &lsn);
	if (err != IMAPQ_OK)
		return http_reply_error(req, err, NULL);
	http_after(req, lsn);
	return http_reply_empty(req, 204);
}

/* Replies {"<key>": n} after the change with lsn is durable. */
static enum MHD_Result reply_count(struct http_request *req, imapq_err err, uint64_t lsn,
				   const char *key, uint32_t n)
{
	if (err != IMAPQ_OK)
		return http_reply_error(req, err, NULL);
	http_after(req, lsn);
	cJSON *root = cJSON_CreateObject();
	cJSON_AddNumberToObject(root, key, n);
	return http_reply_json(req, 200, root);
}

enum MHD_Result http_handle_purge(struct http_request *req)
{
	uint32_t removed = 0;
	uint64_t lsn = 0;
	imapq_err err = queue_purge(req->server->opts.qs, req->target.queue, &removed, &lsn);
	return reply_count(req, err, lsn, "purged", removed);
}

enum MHD_Result http_handle_requeue(struct http_request *req)
{
	uint32_t moved = 0;
	uint64_t lsn = 0;
	uint32_t id = req->target.route == HTTP_ROUTE_REQUEUE_ONE ? req->target.id : 0;
	imapq_err err =
	    queue_requeue_dead(req->server->opts.qs, req->target.queue, id, &moved, &lsn);
	return reply_count(req, err, lsn, "requeued", moved);
}

/* What the change feed gathered (callbacks copy only): at most cap jobs. */
struct changes_ctx {
	struct queue_job *jobs;
	size_t n, cap;
	struct buf removed; /* "1:3,5" */
};

static void change_collect(void *arg, const struct queue_job *job)
{
	struct changes_ctx *c = arg;
	if (c->n < c->cap)
		c->jobs[c->n++] = *job;
}

static void gone_collect(void *arg, uint32_t lo, uint32_t hi)
{
	struct changes_ctx *c = arg;
	const char *sep = buf_len(&c->removed) ? "," : "";
	if (lo == hi)
		buf_printf(&c->removed, "%s%" PRIu32, sep, lo);
	else
		buf_printf(&c->removed, "%s%" PRIu32 ":%" PRIu32, sep, lo, hi);
}

/* Builds the change feed's reply from what was gathered. */
static cJSON *changes_json(struct http_request *req, struct changes_ctx *c,
			   const struct queue_changes_page *page)
{
	cJSON *root = cJSON_CreateObject();
	if (root == NULL || !http_json_add_u64_string(root, "highestmodseq", page->highestmodseq))
		goto fail;
	cJSON *list = cJSON_AddArrayToObject(root, "changed");
	if (list == NULL)
		goto fail;
	for (size_t i = 0; i < c->n; i++) {
		if (http_job_to_json(req, &c->jobs[i], HTTP_JOB_NO_BODY, list) != IMAPQ_OK)
			goto fail;
	}
	buf_append(&c->removed, "", 1);
	if (buf_failed(&c->removed) ||
	    !cJSON_AddStringToObject(root, "removed", buf_bytes(&c->removed)) ||
	    !http_json_add_u64_string(root, "next", page->next) ||
	    !cJSON_AddBoolToObject(root, "more", page->more))
		goto fail;
	return root;
fail:
	cJSON_Delete(root);
	return NULL;
}

enum MHD_Result http_handle_changes(struct http_request *req)
{
	char text[32];
	bool bad = false;
	uint64_t since = 0;
	uint32_t limit = 0;
	const char *s = http_query(req, "since", text, sizeof text, &bad);
	if (bad || (s != NULL && !http_parse_u64(s, 0, INT64_MAX, &since)) ||
	    !http_query_limit(req, 100, IMAPQ_HTTP_MAX_CHANGES, &limit))
		return http_reply_error(req, IMAPQ_E_INVALID,
					"use since=MODSEQ (a decimal number) and limit=1..1000");
	struct changes_ctx c = {.cap = limit};
	c.jobs = calloc(c.cap, sizeof *c.jobs);
	if (c.jobs == NULL)
		return http_reply_error(req, IMAPQ_E_NOMEM, NULL);
	struct queue_changes_page page;
	imapq_err err = queue_changes_page(req->server->opts.qs, req->target.queue, since, limit,
					   change_collect, gone_collect, &c, &page);
	enum MHD_Result ret;
	if (err != IMAPQ_OK) {
		ret = http_reply_error(req, err, NULL);
	} else {
		http_after_visible(req);
		cJSON *root = changes_json(req, &c, &page);
		ret = root ? http_reply_json(req, 200, root)
			   : http_reply_error(req, IMAPQ_E_NOMEM, NULL);
	}
	free(c.jobs);
	buf_free(&c.removed);
	return ret;
}
