/* libFuzzer target: the HTTP front's request decoding without a connection. The first line of
 * the input is a request target (path and query), the rest a body; the target goes through the
 * router and the query values through percent-decoding and the number and receipt readers the
 * handlers use, and the body through the JSON precheck and parser and every body decoder: batch
 * enqueues, claims, ack/nack/extend, queue settings, content types and base64. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "http/http-private.h"
#include "imap/base/limits.h"
#include "queue/queue.h"
#include "tests/fuzz/fuzz.h"

/* Bytes of a decoded query value, as the handlers size their buffers. */
#define QUERY_VALUE_MAX 32

/* Routes whose target names a queue. */
static bool route_has_queue(enum http_route r)
{
	return r != HTTP_ROUTE_NONE && r != HTTP_ROUTE_HEALTHZ && r != HTTP_ROUTE_METRICS &&
	       r != HTTP_ROUTE_QUEUES;
}

static void check_target(const char *path)
{
	struct http_target t;
	http_route_parse(path, &t);
	fuzz_check((unsigned)t.route < HTTP_ROUTE__COUNT);
	fuzz_check(http_route_name(t.route) != NULL);
	fuzz_check(strlen(t.queue) <= IMAPQ_MAX_MAILBOX_NAME);
	if (t.err != IMAPQ_OK) {
		fuzz_check(t.err == IMAPQ_E_INVALID && t.problem != NULL && t.queue[0] == '\0');
		return;
	}
	if (route_has_queue(t.route))
		fuzz_check(queue_name_valid(t.queue));
	bool has_id = t.route == HTTP_ROUTE_ACK || t.route == HTTP_ROUTE_NACK ||
		      t.route == HTTP_ROUTE_EXTEND || t.route == HTTP_ROUTE_REQUEUE_ONE;
	fuzz_check(has_id ? t.id >= 1 : t.id == 0);
	char allow[64];
	http_route_allow(t.route, allow, sizeof allow);
	fuzz_check(t.route == HTTP_ROUTE_NONE || allow[0] != '\0');
	static const enum http_method methods[] = {HTTP_GET, HTTP_HEAD,	  HTTP_POST,
						   HTTP_PUT, HTTP_DELETE, HTTP_OTHER};
	for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
		(void)http_route_role(t.route, methods[i]);
}

/* A receipt read back from its own formatting is the same receipt. */
static void check_receipt(const char *text)
{
	struct queue_receipt r, back;
	if (!http_receipt_parse(text, &r))
		return;
	fuzz_check(r.uidvalidity >= 1 && r.modseq >= 1 && r.modseq <= INT64_MAX);
	char buf[48];
	http_receipt_format(r, buf, sizeof buf);
	fuzz_check(http_receipt_parse(buf, &back));
	fuzz_check(back.uidvalidity == r.uidvalidity && back.modseq == r.modseq);
}

/* Decodes one query value the way http_query() does and reads it as the handlers would. */
static void check_query_value(const char *raw, size_t len)
{
	static const size_t caps[] = {1, 8, 16, QUERY_VALUE_MAX, 300};
	for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
		char buf[300];
		if (!http_percent_decode(raw, len, buf, caps[i]))
			continue;
		size_t n = strlen(buf);
		fuzz_check(n < caps[i] && n <= len);
		/* Escaping every byte again decodes to the same text. */
		char esc[3 * 300 + 1], again[300];
		for (size_t k = 0; k < n; k++)
			snprintf(esc + 3 * k, 4, "%%%02X", (unsigned char)buf[k]);
		fuzz_check(http_percent_decode(esc, 3 * n, again, sizeof again));
		fuzz_check(strcmp(again, buf) == 0);
		uint64_t v;
		if (http_parse_u64(buf, 1, 1000, &v))
			fuzz_check(v >= 1 && v <= 1000);
		check_receipt(buf);
	}
}

static void check_query(const char *query)
{
	while (*query != '\0') {
		size_t len = strcspn(query, "&");
		const char *eq = memchr(query, '=', len);
		if (eq != NULL)
			check_query_value(eq + 1, len - (size_t)(eq + 1 - query));
		query += len;
		if (*query == '&')
			query++;
	}
}

/* Exactly the bytes standard base64 stands for, padding included. */
static void check_base64(const char *text)
{
	char *out = NULL;
	size_t len = 0;
	if (!http_base64_decode(text, &out, &len))
		return;
	size_t n = strlen(text), pad = 0;
	fuzz_check(n % 4 == 0);
	if (n >= 1 && text[n - 1] == '=')
		pad++;
	if (n >= 2 && text[n - 2] == '=')
		pad++;
	fuzz_check(len == n / 4 * 3 - pad);
	free(out);
}

static void check_batch(const cJSON *root)
{
	const cJSON *list = http_batch_list(root);
	if (list == NULL)
		return;
	fuzz_check(cJSON_IsArray(list));
	for (const cJSON *e = list->child; e != NULL; e = e->next) {
		struct http_batch_item it = {0};
		const char *why = NULL;
		imapq_err err = http_batch_item_decode(e, 7, &it, &why);
		if (err == IMAPQ_OK) {
			fuzz_check(it.payload != NULL && it.ctype != NULL);
			fuzz_check(http_content_type_ok(it.ctype));
			fuzz_check(it.delay <= IMAPQ_MAX_QUEUE_SETTING);
			fuzz_check(!it.printed || it.len == strlen(it.payload));
		} else {
			fuzz_check(err == IMAPQ_E_INVALID || err == IMAPQ_E_NOMEM);
			fuzz_check(err != IMAPQ_E_INVALID || why != NULL);
		}
		http_batch_item_clear(&it);
		fuzz_check(it.payload == NULL);
	}
}

static void check_body(const char *body, size_t len)
{
	const char *why = NULL;
	cJSON *root = NULL;
	imapq_err err = http_json_parse(body, len, &root, &why);
	fuzz_check((err == IMAPQ_OK) == (root != NULL));
	fuzz_check(err == IMAPQ_OK || why != NULL);
	if (root != NULL) {
		/* What the front accepts, it can print and read again. */
		char *printed = cJSON_PrintUnformatted(root);
		fuzz_check(printed != NULL);
		cJSON *again = NULL;
		fuzz_check(http_json_parse(printed, strlen(printed), &again, &why) == IMAPQ_OK);
		cJSON_Delete(again);
		cJSON_free(printed);
		check_batch(root);
		cJSON_Delete(root);
	}

	uint32_t max, lease, wait, delay;
	if (http_claim_decode(body, len, &max, &lease, &wait, &why) == IMAPQ_OK)
		fuzz_check(max >= 1 && max <= IMAPQ_HTTP_MAX_CLAIM &&
			   lease <= IMAPQ_MAX_QUEUE_SETTING && wait <= IMAPQ_HTTP_MAX_WAIT);
	static const enum http_route settles[] = {HTTP_ROUTE_ACK, HTTP_ROUTE_NACK,
						  HTTP_ROUTE_EXTEND};
	for (size_t i = 0; i < sizeof settles / sizeof settles[0]; i++) {
		struct queue_receipt r;
		if (http_settle_decode(settles[i], body, len, &r, &delay, &lease, &why) !=
		    IMAPQ_OK) {
			fuzz_check(why != NULL);
			continue;
		}
		fuzz_check(r.uidvalidity >= 1 && r.modseq >= 1);
		fuzz_check(delay <= IMAPQ_MAX_QUEUE_SETTING && lease <= IMAPQ_MAX_QUEUE_SETTING);
		fuzz_check(settles[i] == HTTP_ROUTE_NACK || delay == 0);
		fuzz_check(settles[i] == HTTP_ROUTE_EXTEND || lease == 0);
	}
	struct queue_settings set;
	bool given;
	if (http_settings_decode(body, len, &set, &given, &why) == IMAPQ_OK)
		fuzz_check(given ==
			   (set.lease || set.max_attempts || set.retention || set.max_messages));

	/* The body as a header value and as a base64 text (C strings stop at a NUL). */
	if (http_content_type_ok(body))
		fuzz_check(strchr(body, '/') != NULL && strlen(body) <= 255);
	(void)http_content_type_is_json(body);
	check_base64(body);
	check_receipt(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	size_t tlen = nl != NULL ? (size_t)(nl - data) : size;
	char *target = fuzz_strndup(data, tlen);
	char *query = strchr(target, '?');
	if (query != NULL)
		*query++ = '\0';
	check_target(target);
	if (query != NULL)
		check_query(query);
	free(target);

	size_t blen = nl != NULL ? size - tlen - 1 : 0;
	/* Request bodies are NUL-terminated copies (http_request.body); so is this one. */
	char *body = fuzz_strndup(nl != NULL ? nl + 1 : data + size, blen);
	check_body(body, blen);
	free(body);
	return 0;
}
