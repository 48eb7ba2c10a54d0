/* Job endpoints: enqueue (one or a batch), claim with long polls, ack/nack/extend, and peek. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "http/http-private.h"
#include "imap/base/log.h"

/* Longest Content-Type kept with a job. */
#define CONTENT_TYPE_MAX 255

static const char json_type[] = "application/json";

bool http_content_type_ok(const char *ctype)
{
	size_t len = strlen(ctype);
	if (len == 0 || len > CONTENT_TYPE_MAX || strchr(ctype, '/') == NULL)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (ctype[i] < 0x20 || ctype[i] > 0x7e)
			return false;
	}
	return true;
}

bool http_base64_decode(const char *text, char **out_r, size_t *len_r)
{
	size_t len = strlen(text);
	if (len % 4 != 0 || len > IMAPQ_HTTP_MAX_JSON)
		return false;
	/* EVP_DecodeBlock skips surrounding whitespace and takes '=' anywhere: allow only the
	 * alphabet, with padding at the end, so that the length worked out below is the truth. */
	for (size_t i = 0; i < len; i++) {
		char c = text[i];
		bool pad = c == '=' && (i + 1 == len || (i + 2 == len && text[len - 1] == '='));
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '+' || c == '/' || pad))
			return false;
	}
	unsigned char *out = malloc(len / 4 * 3 + 1);
	if (out == NULL)
		return false;
	int n = len ? EVP_DecodeBlock(out, (const unsigned char *)text, (int)len) : 0;
	if (n < 0) {
		free(out);
		return false;
	}
	if (len >= 1 && text[len - 1] == '=')
		n--;
	if (len >= 2 && text[len - 2] == '=')
		n--;
	*out_r = (char *)out;
	*len_r = (size_t)n;
	return true;
}

/* Reads the "delay" query argument (seconds) into *delay; false after replying 400. */
static bool query_delay(struct http_request *req, uint32_t *delay, enum MHD_Result *ret)
{
	char buf[32];
	bool bad = false;
	const char *text = http_query(req, "delay", buf, sizeof buf, &bad);
	uint64_t v = 0;
	if (bad || (text != NULL && !http_parse_u64(text, 0, IMAPQ_MAX_QUEUE_SETTING, &v))) {
		*ret = http_reply_error(req, IMAPQ_E_INVALID,
					"delay must be a whole number of seconds up to 31536000");
		return false;
	}
	*delay = (uint32_t)v;
	return true;
}

imapq_err http_batch_item_decode(const cJSON *entry, uint32_t delay, struct http_batch_item *it,
				 const char **why)
{
	static const char *const fields[] = {"body", "delay", "content_type", "body_encoding",
					     NULL};
	if (!cJSON_IsObject(entry)) {
		*why = "each entry of \"messages\" must be an object with a \"body\"";
		return IMAPQ_E_INVALID;
	}
	imapq_err err = http_json_fields(entry, fields, why);
	if (err == IMAPQ_OK)
		err = http_json_uint(entry, "delay", 0, IMAPQ_MAX_QUEUE_SETTING, &delay, why);
	if (err != IMAPQ_OK)
		return err;
	const cJSON *body = cJSON_GetObjectItemCaseSensitive(entry, "body");
	const cJSON *ct = cJSON_GetObjectItemCaseSensitive(entry, "content_type");
	const cJSON *enc = cJSON_GetObjectItemCaseSensitive(entry, "body_encoding");
	it->delay = delay;
	it->ctype = json_type;
	if (body == NULL) {
		*why = "a batch entry has no \"body\"";
		return IMAPQ_E_INVALID;
	}
	if (ct != NULL && (!cJSON_IsString(ct) || !http_content_type_ok(ct->valuestring))) {
		*why = "\"content_type\" must be a media type such as text/plain";
		return IMAPQ_E_INVALID;
	}
	if (ct == NULL || http_content_type_is_json(ct->valuestring)) {
		if (enc != NULL) {
			*why = "\"body_encoding\" applies to non-JSON content types only";
			return IMAPQ_E_INVALID;
		}
		it->payload = cJSON_PrintUnformatted(body);
		it->printed = true;
		if (it->payload == NULL)
			return IMAPQ_E_NOMEM;
		it->len = strlen(it->payload);
		return IMAPQ_OK;
	}
	it->ctype = ct->valuestring;
	if (!cJSON_IsString(body)) {
		*why = "the body of a non-JSON entry must be a string";
		return IMAPQ_E_INVALID;
	}
	if (enc != NULL) {
		if (!cJSON_IsString(enc) || strcmp(enc->valuestring, "base64") != 0 ||
		    !http_base64_decode(body->valuestring, &it->payload, &it->len)) {
			*why = "\"body_encoding\" must be \"base64\" with a valid base64 body";
			return IMAPQ_E_INVALID;
		}
		return IMAPQ_OK;
	}
	it->payload = strdup(body->valuestring);
	if (it->payload == NULL)
		return IMAPQ_E_NOMEM;
	it->len = strlen(it->payload);
	return IMAPQ_OK;
}

void http_batch_item_clear(struct http_batch_item *it)
{
	if (it->printed)
		cJSON_free(it->payload);
	else
		free(it->payload);
	it->payload = NULL;
	it->len = 0;
}

const cJSON *http_batch_list(const cJSON *root)
{
	const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "messages");
	if (cJSON_IsObject(root) && cJSON_IsArray(list) && root->child == list &&
	    list->next == NULL)
		return list;
	return NULL;
}

/* Enqueues {"messages":[...]} and answers 201 with every id. */
static enum MHD_Result enqueue_batch(struct http_request *req, const cJSON *list, uint32_t delay)
{
	int n = cJSON_GetArraySize(list);
	if (n < 1 || n > IMAPQ_HTTP_MAX_BATCH)
		return http_reply_error(req, IMAPQ_E_INVALID,
					"\"messages\" must hold 1 to 1000 entries");
	struct http_batch_item *items = calloc((size_t)n, sizeof *items);
	if (items == NULL)
		return http_reply_error(req, IMAPQ_E_NOMEM, NULL);
	enum MHD_Result ret;
	const char *why = NULL;
	imapq_err err = IMAPQ_OK;
	int i = 0;
	for (const cJSON *e = list->child; e != NULL && err == IMAPQ_OK; e = e->next, i++)
		err = http_batch_item_decode(e, delay, &items[i], &why);
	cJSON *root = cJSON_CreateObject();
	cJSON *ids = cJSON_AddArrayToObject(root, "messages");
	if (err != IMAPQ_OK || ids == NULL ||
	    !http_json_add_string(root, "queue", req->target.queue)) {
		ret = http_reply_error(req, err != IMAPQ_OK ? err : IMAPQ_E_NOMEM, why);
		cJSON_Delete(root);
		goto out;
	}
	struct queue_new_job *jobs = calloc((size_t)n, sizeof *jobs);
	struct queue_job *done_jobs = calloc((size_t)n, sizeof *done_jobs);
	if (jobs == NULL || done_jobs == NULL) {
		free(jobs);
		free(done_jobs);
		cJSON_Delete(root);
		ret = http_reply_error(req, IMAPQ_E_NOMEM, NULL);
		goto out;
	}
	for (i = 0; i < n; i++)
		jobs[i] = (struct queue_new_job){.payload = items[i].payload,
						 .len = items[i].len,
						 .content_type = items[i].ctype,
						 .delay = items[i].delay};
	/* One call, so the message limits take the batch whole or refuse it whole. */
	size_t done = 0;
	uint64_t lsn = 0;
	err = queue_enqueue_batch(req->server->opts.qs, req->target.queue, jobs, (size_t)n,
				  done_jobs, &done, &lsn);
	for (size_t k = 0; k < done; k++) {
		cJSON *one = cJSON_CreateObject();
		cJSON_AddItemToArray(ids, one);
		http_json_add_u64_string(one, "id", done_jobs[k].id);
	}
	free(jobs);
	free(done_jobs);
	http_after(req, lsn);
	if (err != IMAPQ_OK && done == 0) {
		cJSON_Delete(root);
		ret = http_reply_error(req, err,
				       err == IMAPQ_E_OVERQUOTA
					   ? "the batch does not fit in the queue's message limit; "
					     "nothing was enqueued"
					   : NULL);
		goto out;
	}
	if (err != IMAPQ_OK) {
		/* The jobs before the failing one stay enqueued: say which. */
		cJSON *e = cJSON_AddObjectToObject(root, "error");
		cJSON_AddStringToObject(e, "code", imapq_err_name(err));
		cJSON_AddStringToObject(e, "message",
					"a job of the batch could not be enqueued; "
					"\"messages\" lists those that were");
		ret = http_reply_json(req, (unsigned)imapq_err_http_status(err), root);
		goto out;
	}
	ret = http_reply_json(req, 201, root);
out:
	for (i = 0; i < n; i++)
		http_batch_item_clear(&items[i]);
	free(items);
	return ret;
}

enum MHD_Result http_handle_enqueue(struct http_request *req)
{
	enum MHD_Result ret;
	uint32_t delay = 0;
	if (!query_delay(req, &delay, &ret))
		return ret;
	const char *ctype =
	    MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
	const char *payload = req->body ? req->body : "";
	size_t len = req->body_len;
	const char *stored_type = ctype ? ctype : "application/octet-stream";
	if (http_content_type_is_json(ctype)) {
		cJSON *root = NULL;
		const char *why = NULL;
		if (http_json_parse(payload, len, &root, &why) != IMAPQ_OK)
			return http_reply_error(req, IMAPQ_E_INVALID, why);
		const cJSON *list = http_batch_list(root);
		if (list != NULL) {
			ret = enqueue_batch(req, list, delay);
			cJSON_Delete(root);
			return ret;
		}
		cJSON_Delete(root);
		stored_type = json_type;
	} else if (!http_content_type_ok(stored_type)) {
		return http_reply_error(req, IMAPQ_E_INVALID, "unusable Content-Type");
	}
	struct queue_job job;
	uint64_t lsn;
	imapq_err err = queue_enqueue(req->server->opts.qs, req->target.queue, payload, len,
				      stored_type, delay, &job, &lsn);
	if (err != IMAPQ_OK)
		return http_reply_error(req, err, NULL);
	http_after(req, lsn);
	cJSON *root = cJSON_CreateObject();
	if (root == NULL || !http_json_add_u64_string(root, "id", job.id) ||
	    !http_json_add_string(root, "queue", req->target.queue)) {
		cJSON_Delete(root);
		return http_reply_error(req, IMAPQ_E_NOMEM, NULL);
	}
	return http_reply_json(req, 201, root);
}

/* Adds the body of a job to obj: JSON as JSON, UTF-8 text as a string, anything else base64.
 * A JSON type is trusted only after the check an enqueued body gets: a body stored over IMAP
 * never had it, and pasted raw it would break the whole reply. */
static imapq_err add_body(cJSON *obj, char *payload, size_t len, const char *ctype)
{
	const char *why;
	cJSON *probe = NULL;
	if (http_content_type_is_json(ctype) &&
	    http_json_parse(payload, len, &probe, &why) == IMAPQ_OK) {
		cJSON_Delete(probe);
		return http_json_put(obj, "body", cJSON_CreateRaw(payload)) ? IMAPQ_OK
									    : IMAPQ_E_NOMEM;
	}
	if (http_utf8_valid(payload, len))
		return http_json_add_string(obj, "body", payload) ? IMAPQ_OK : IMAPQ_E_NOMEM;
	if (len > IMAPQ_MAX_MESSAGE_SIZE)
		return IMAPQ_E_TOOBIG;
	char *b64 = malloc(4 * ((len + 2) / 3) + 1);
	if (b64 == NULL)
		return IMAPQ_E_NOMEM;
	EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)payload, (int)len);
	bool ok = cJSON_AddStringToObject(obj, "body", b64) &&
		  cJSON_AddStringToObject(obj, "body_encoding", "base64");
	free(b64);
	return ok ? IMAPQ_OK : IMAPQ_E_NOMEM;
}

/* Name of a state in replies and in the ?state= argument. */
static const char *state_name(enum queue_state s)
{
	switch (s) {
	case QUEUE_READY:
		return "ready";
	case QUEUE_CLAIMED:
		return "claimed";
	case QUEUE_DELAYED:
		return "delayed";
	case QUEUE_DEAD:
		return "dead";
	}
	return "unknown";
}

imapq_err http_job_to_json(struct http_request *req, const struct queue_job *job,
			   enum http_job_body body, cJSON *array)
{
	char text[48];
	cJSON *obj = cJSON_CreateObject();
	if (obj == NULL)
		return IMAPQ_E_NOMEM;
	cJSON_AddItemToArray(array, obj);
	/* Every field or none: a job sent without its receipt could never be acked. */
	bool ok = http_json_add_u64_string(obj, "id", job->id);
	/* The state names are constants: referenced, not copied. */
	ok &= http_json_put(obj, "state", cJSON_CreateStringReference(state_name(job->state)));
	if (job->state == QUEUE_CLAIMED) {
		http_receipt_format(job->receipt, text, sizeof text);
		ok &= http_json_add_string(obj, "receipt", text);
	}
	ok &= http_json_add_u64_string(obj, "modseq", job->receipt.modseq);
	ok &= http_json_add_uint(obj, "attempts", job->attempts);
	http_time_format(job->enqueued_at, text, sizeof text);
	ok &= http_json_add_string(obj, "enqueued_at", text);
	if (job->due != 0 && (job->state == QUEUE_CLAIMED || job->state == QUEUE_DELAYED)) {
		http_time_format(job->due, text, sizeof text);
		ok &= http_json_add_string(
		    obj, job->state == QUEUE_CLAIMED ? "lease_until" : "not_before", text);
	}
	ok &= http_json_add_uint(obj, "size", job->size);
	if (!ok)
		return IMAPQ_E_NOMEM;
	if (body == HTTP_JOB_NO_BODY)
		return IMAPQ_OK;
	char *payload = NULL;
	size_t len = 0;
	char ctype[CONTENT_TYPE_MAX + 1] = "";
	imapq_err err = queue_job_payload(req->server->opts.qs, req->target.queue, job->state,
					  job->id, &payload, &len, ctype, sizeof ctype);
	if (err != IMAPQ_OK && err != IMAPQ_E_NOMEM && err != IMAPQ_E_NOTFOUND &&
	    body == HTTP_JOB_BODY_IF_READABLE) {
		log_warn("http", "peek of %s: job %u's body cannot be read: %s", req->target.queue,
			 job->id, imapq_err_message(err));
		return http_json_add_string(obj, "body_error", imapq_err_name(err)) ? IMAPQ_OK
										    : IMAPQ_E_NOMEM;
	}
	if (err != IMAPQ_OK)
		return err;
	char *terminated = realloc(payload, len + 1);
	if (terminated == NULL) {
		free(payload);
		return IMAPQ_E_NOMEM;
	}
	terminated[len] = '\0';
	err = http_json_add_string(obj, "content_type", ctype[0] ? ctype : "text/plain")
		  ? add_body(obj, terminated, len, ctype)
		  : IMAPQ_E_NOMEM;
	free(terminated);
	return err;
}

/* Answers a claim with the jobs it holds, remembering them in case the reply is lost. */
static enum MHD_Result claim_reply(struct http_request *req, struct queue_job *jobs, uint32_t n)
{
	cJSON *root = cJSON_CreateObject();
	cJSON *list = cJSON_CreateArray();
	imapq_err err = http_json_put(root, "messages", list) ? IMAPQ_OK : IMAPQ_E_NOMEM;
	bool built = err == IMAPQ_OK;
	uint32_t kept = 0;
	for (uint32_t i = 0; i < n && err == IMAPQ_OK; i++) {
		imapq_err job_err = http_job_to_json(req, &jobs[i], HTTP_JOB_BODY, list);
		if (job_err == IMAPQ_OK) {
			jobs[kept++] = jobs[i];
			continue;
		}
		/* A job whose body cannot be read leaves the reply and goes back alone: the
		 * others were claimed too and would pay an attempt for it. */
		cJSON_DeleteItemFromArray(list, (int)kept);
		uint64_t lsn;
		imapq_err nack_err = queue_nack(req->server->opts.qs, req->target.queue, jobs[i].id,
						jobs[i].receipt, 0, &lsn);
		log_warn("http", "claim reply for %s: job %u left out (%s), %s", req->target.queue,
			 jobs[i].id, imapq_err_message(job_err),
			 nack_err == IMAPQ_OK ? "released" : "left to its lease");
		if (kept == 0 && i + 1 == n)
			err = job_err; /* none could be sent: answer with the error */
	}
	if (built)
		n = kept; /* the jobs left out are released already */
	req->claimed = jobs;
	if (err != IMAPQ_OK) {
		cJSON_Delete(root);
		log_warn("http", "claim reply for %s failed: %s", req->target.queue,
			 imapq_err_message(err));
		/* The client never learns the receipts: give the jobs back at once. */
		for (uint32_t i = 0; i < n; i++) {
			uint64_t lsn;
			queue_nack(req->server->opts.qs, req->target.queue, jobs[i].id,
				   jobs[i].receipt, 0, &lsn);
		}
		return http_reply_error(req, err, NULL);
	}
	req->n_claimed = n;
	return http_reply_json(req, 200, root);
}

imapq_err http_claim_decode(const char *body, size_t len, uint32_t *max_r, uint32_t *lease_r,
			    uint32_t *wait_r, const char **why)
{
	static const char *const fields[] = {"max", "lease", "wait", NULL};
	*max_r = 1;
	*lease_r = 0;
	*wait_r = 0;
	if (len == 0)
		return IMAPQ_OK;
	cJSON *root = NULL;
	imapq_err err = http_json_parse(body, len, &root, why);
	if (err == IMAPQ_OK && !cJSON_IsObject(root)) {
		err = IMAPQ_E_INVALID;
		*why = "the body must be a JSON object";
	}
	if (err == IMAPQ_OK)
		err = http_json_fields(root, fields, why);
	if (err == IMAPQ_OK)
		err = http_json_uint(root, "max", 1, IMAPQ_HTTP_MAX_CLAIM, max_r, why);
	if (err == IMAPQ_OK)
		err = http_json_uint(root, "lease", 1, IMAPQ_MAX_QUEUE_SETTING, lease_r, why);
	if (err == IMAPQ_OK)
		err = http_json_uint(root, "wait", 0, IMAPQ_HTTP_MAX_WAIT, wait_r, why);
	cJSON_Delete(root);
	return err;
}

/* Reads {"max","lease","wait"} once per request. */
static bool claim_params(struct http_request *req, enum MHD_Result *ret)
{
	uint32_t wait = 0;
	const char *why = NULL;
	imapq_err err = http_claim_decode(req->body, req->body_len, &req->claim_max,
					  &req->claim_lease, &wait, &why);
	if (err != IMAPQ_OK) {
		*ret = http_reply_error(req, err, why);
		return false;
	}
	req->deadline_ms = http_now_ms() + (int64_t)wait * 1000;
	req->claimed = calloc(req->claim_max, sizeof *req->claimed);
	if (req->claimed == NULL) {
		*ret = http_reply_error(req, IMAPQ_E_NOMEM, NULL);
		return false;
	}
	req->claim_started = true;
	return true;
}

/* One claim attempt; *n_r is 0 when nothing was ready. */
static imapq_err claim_once(struct http_request *req, struct queue_job *jobs, uint32_t *n_r,
			    uint64_t *lsn_r)
{
	*n_r = 0;
	return queue_claim(req->server->opts.qs, req->target.queue, req->claim_max,
			   req->claim_lease, jobs, n_r, lsn_r);
}

enum MHD_Result http_handle_claim(struct http_request *req)
{
	struct http_server *server = req->server;
	enum MHD_Result ret;
	if (!req->claim_started && !claim_params(req, &ret))
		return ret;
	/* Resumed from the lot (or first time): forget the old waiter, try again. */
	if (req->waiter != NULL)
		queue_wait_cancel(server->opts.qs, &req->waiter);
	struct queue_job *jobs = req->claimed;
	req->claimed = NULL;
	uint32_t n;
	uint64_t lsn = 0;
	imapq_err err = claim_once(req, jobs, &n, &lsn);
	bool may_wait = http_now_ms() < req->deadline_ms && !atomic_load(&server->stopping);
	if (err == IMAPQ_OK && n == 0 && may_wait) {
		err = http_wait_park(&server->wait, req);
		if (err == IMAPQ_E_UNAVAILABLE) {
			err = IMAPQ_OK; /* shutting down: answer with nothing */
		} else if (err == IMAPQ_OK) {
			err = queue_wait(server->opts.qs, req->target.queue, http_wait_wake, req,
					 &req->waiter);
			/* A job that arrived before the waiter was registered is taken now. */
			if (err == IMAPQ_OK)
				err = claim_once(req, jobs, &n, &lsn);
			if (err == IMAPQ_OK && n == 0) {
				req->claimed = jobs;
				MHD_suspend_connection(req->conn);
				http_wait_suspended(&server->wait, req);
				return MHD_YES;
			}
			http_wait_unpark(&server->wait, req);
			if (req->waiter != NULL)
				queue_wait_cancel(server->opts.qs, &req->waiter);
		} else {
			free(jobs);
			return http_reply_error(req, err,
						"too many long polls at once; retry "
						"later or with a shorter wait");
		}
	}
	if (err != IMAPQ_OK) {
		free(jobs);
		return http_reply_error(req, err, NULL);
	}
	if (n > 0)
		http_after(req, lsn);
	return claim_reply(req, jobs, n);
}

imapq_err http_settle_decode(enum http_route route, const char *body, size_t len,
			     struct queue_receipt *receipt_r, uint32_t *delay_r, uint32_t *lease_r,
			     const char **why)
{
	static const char *const ack_fields[] = {"receipt", NULL};
	static const char *const nack_fields[] = {"receipt", "delay", NULL};
	static const char *const extend_fields[] = {"receipt", "lease", NULL};
	const char *const *fields = route == HTTP_ROUTE_ACK    ? ack_fields
				    : route == HTTP_ROUTE_NACK ? nack_fields
							       : extend_fields;
	cJSON *root = NULL;
	*why = "the body must be a JSON object with a \"receipt\"";
	*delay_r = 0;
	*lease_r = 0;
	imapq_err err = http_json_parse(body ? body : "", len, &root, why);
	if (err == IMAPQ_OK && !cJSON_IsObject(root))
		err = IMAPQ_E_INVALID;
	if (err == IMAPQ_OK)
		err = http_json_fields(root, fields, why);
	if (err == IMAPQ_OK) {
		const cJSON *r = cJSON_GetObjectItemCaseSensitive(root, "receipt");
		if (!cJSON_IsString(r) || !http_receipt_parse(r->valuestring, receipt_r)) {
			err = IMAPQ_E_INVALID;
			*why =
			    "\"receipt\" must be the string \"<uidvalidity>-<modseq>\" of a claim";
		}
	}
	if (err == IMAPQ_OK)
		err = http_json_uint(root, "delay", 0, IMAPQ_MAX_QUEUE_SETTING, delay_r, why);
	if (err == IMAPQ_OK)
		err = http_json_uint(root, "lease", 1, IMAPQ_MAX_QUEUE_SETTING, lease_r, why);
	cJSON_Delete(root);
	return err;
}

enum MHD_Result http_handle_settle(struct http_request *req)
{
	enum http_route route = req->target.route;
	const char *why = NULL;
	struct queue_receipt receipt;
	uint32_t delay = 0, lease = 0;
	imapq_err err =
	    http_settle_decode(route, req->body, req->body_len, &receipt, &delay, &lease, &why);
	if (err != IMAPQ_OK)
		return http_reply_error(req, err, why);

	struct queue_service *qs = req->server->opts.qs;
	const char *name = req->target.queue;
	uint32_t id = req->target.id;
	uint64_t lsn = 0;
	struct queue_receipt renewed;
	if (route == HTTP_ROUTE_ACK)
		err = queue_ack(qs, name, id, receipt, &lsn);
	else if (route == HTTP_ROUTE_NACK)
		err = queue_nack(qs, name, id, receipt, delay, &lsn);
	else
		err = queue_extend(qs, name, id, receipt, lease, &renewed, &lsn);
	if (err == IMAPQ_E_MODIFIED)
		return http_reply_error(req, err,
					"the receipt is stale: the lease expired or the job was "
					"claimed again");
	if (err == IMAPQ_E_NOTFOUND)
		return http_reply_error(req, err, "no such job: it was completed or never existed");
	if (err != IMAPQ_OK)
		return http_reply_error(req, err, NULL);
	http_after(req, lsn);
	if (route != HTTP_ROUTE_EXTEND)
		return http_reply_empty(req, 204);
	if (lease == 0) {
		struct queue_settings settings;
		lease = queue_settings_get(qs, name, &settings) == IMAPQ_OK ? settings.lease : 0;
	}
	char text[48];
	cJSON *reply = cJSON_CreateObject();
	http_receipt_format(renewed, text, sizeof text);
	http_json_add_string(reply, "receipt", text);
	http_time_format((int64_t)time(NULL) + lease, text, sizeof text);
	http_json_add_string(reply, "lease_until", text);
	return http_reply_json(req, 200, reply);
}

/* Jobs gathered by a peek (the callback may run under the queue's lock: copy only). */
struct peek_ctx {
	struct queue_job *jobs;
	uint32_t n, cap;
};

static void peek_collect(void *arg, const struct queue_job *job)
{
	struct peek_ctx *ctx = arg;
	if (ctx->n < ctx->cap)
		ctx->jobs[ctx->n++] = *job;
}

/* Maps ?state= to a state; false when unknown. */
static bool parse_state(const char *text, enum queue_state *s)
{
	static const enum queue_state states[] = {QUEUE_READY, QUEUE_CLAIMED, QUEUE_DELAYED,
						  QUEUE_DEAD};
	for (size_t i = 0; i < sizeof states / sizeof states[0]; i++) {
		if (strcmp(text, state_name(states[i])) == 0) {
			*s = states[i];
			return true;
		}
	}
	return false;
}

enum MHD_Result http_handle_peek(struct http_request *req)
{
	char sbuf[16], bbuf[8];
	bool bad = false;
	const char *st = http_query(req, "state", sbuf, sizeof sbuf, &bad);
	const char *body = http_query(req, "body", bbuf, sizeof bbuf, &bad);
	enum queue_state state = QUEUE_READY;
	uint32_t limit = 100;
	if (bad || (st != NULL && !parse_state(st, &state)) ||
	    !http_query_limit(req, limit, IMAPQ_HTTP_MAX_PEEK, &limit) ||
	    (body != NULL && strcmp(body, "true") != 0 && strcmp(body, "false") != 0))
		return http_reply_error(req, IMAPQ_E_INVALID,
					"use state=ready|claimed|delayed|dead, limit=1..1000 and "
					"body=true|false");
	struct peek_ctx ctx = {.cap = limit};
	ctx.jobs = calloc(ctx.cap, sizeof *ctx.jobs);
	if (ctx.jobs == NULL)
		return http_reply_error(req, IMAPQ_E_NOMEM, NULL);
	imapq_err err =
	    queue_peek(req->server->opts.qs, req->target.queue, state, ctx.cap, peek_collect, &ctx);
	if (err != IMAPQ_OK) {
		free(ctx.jobs);
		return http_reply_error(req, err, NULL);
	}
	http_after_visible(req);
	cJSON *root = cJSON_CreateObject();
	cJSON *list = cJSON_AddArrayToObject(root, "messages");
	enum http_job_body what = body != NULL && strcmp(body, "true") == 0
				      ? HTTP_JOB_BODY_IF_READABLE
				      : HTTP_JOB_NO_BODY;
	for (uint32_t i = 0; i < ctx.n && err == IMAPQ_OK && list != NULL; i++) {
		err = http_job_to_json(req, &ctx.jobs[i], what, list);
		if (err == IMAPQ_E_NOTFOUND)
			err = IMAPQ_OK; /* gone since the listing: the body is no longer there */
	}
	free(ctx.jobs);
	if (err != IMAPQ_OK || list == NULL) {
		cJSON_Delete(root);
		return http_reply_error(req, err != IMAPQ_OK ? err : IMAPQ_E_NOMEM, NULL);
	}
	return http_reply_json(req, 200, root);
}
