#include "cmd/imapq/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap/base/buf.h"
#include "imap/base/limits.h"

struct api_call {
	CURL *easy;
	struct curl_slist *headers;
	char *body;	  /* request body, kept alive for curl */
	struct buf reply; /* response body, NUL-terminated once done */
	cJSON *json;	  /* parsed reply, built on first use */
	bool parsed;
	bool too_big;
	long status;
	CURLcode code;
	char url[4096];
	char errbuf[CURL_ERROR_SIZE];
	void *data;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct api_call *call = arg;
	size_t n = size * nmemb;
	if (buf_len(&call->reply) + n > IMAPQ_CLI_MAX_REPLY) {
		call->too_big = true;
		return 0; /* makes curl fail the transfer with CURLE_WRITE_ERROR */
	}
	buf_append(&call->reply, ptr, n);
	return buf_failed(&call->reply) ? 0 : n;
}

imapq_err api_call_create(const struct cli *cli, const char *method, const char *path,
			  const void *body, size_t len, const char *ctype, long timeout_s,
			  struct api_call **call_r)
{
	struct api_call *call = calloc(1, sizeof *call);
	if (call == NULL)
		return IMAPQ_E_NOMEM;
	if (snprintf(call->url, sizeof call->url, "%s%s", cli->url, path) >=
	    (int)sizeof call->url) {
		free(call);
		return IMAPQ_E_TOOBIG;
	}
	call->easy = curl_easy_init();
	if (call->easy == NULL)
		goto nomem;

	char header[512];
	if (cli->token != NULL) {
		snprintf(header, sizeof header, "Authorization: Bearer %s", cli->token);
		struct curl_slist *h = curl_slist_append(call->headers, header);
		if (h == NULL)
			goto nomem;
		call->headers = h;
	}
	/* "Content-Type:" with nothing after it drops the form type curl adds to bodiless POSTs;
	 * "Expect:" spares the 100-continue round trip on large bodies. */
	snprintf(header, sizeof header, "Content-Type:%s%s", ctype ? " " : "", ctype ? ctype : "");
	const char *extra[] = {header, "Expect:", "Accept: application/json"};
	for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) {
		struct curl_slist *h = curl_slist_append(call->headers, extra[i]);
		if (h == NULL)
			goto nomem;
		call->headers = h;
	}

	CURL *e = call->easy;
	curl_easy_setopt(e, CURLOPT_URL, call->url);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, call->headers);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, call);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, call->errbuf);
	curl_easy_setopt(e, CURLOPT_PRIVATE, call);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, timeout_s);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "imapq");
	if (strcmp(method, "GET") == 0) {
		curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	} else {
		call->body = malloc(len + 1);
		if (call->body == NULL)
			goto nomem;
		if (len > 0)
			memcpy(call->body, body, len);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, call->body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
		if (strcmp(method, "POST") != 0)
			curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	}
	*call_r = call;
	return IMAPQ_OK;
nomem:
	api_call_destroy(&call);
	return IMAPQ_E_NOMEM;
}

imapq_err api_call_create_json(const struct cli *cli, const char *method, const char *path,
			       const cJSON *obj, long timeout_s, struct api_call **call_r)
{
	if (obj == NULL)
		return api_call_create(cli, method, path, NULL, 0, NULL, timeout_s, call_r);
	char *text = cJSON_PrintUnformatted(obj);
	if (text == NULL)
		return IMAPQ_E_NOMEM;
	imapq_err err = api_call_create(cli, method, path, text, strlen(text), "application/json",
					timeout_s, call_r);
	cJSON_free(text);
	return err;
}

imapq_err api_call_done(struct api_call *call, CURLcode code)
{
	call->code = code;
	buf_append(&call->reply, "", 1);
	if (buf_failed(&call->reply) && code == CURLE_OK)
		call->code = CURLE_OUT_OF_MEMORY;
	if (call->code != CURLE_OK)
		return IMAPQ_E_IO;
	curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &call->status);
	return IMAPQ_OK;
}

imapq_err api_call_perform(struct api_call *call)
{
	return api_call_done(call, curl_easy_perform(call->easy));
}

CURL *api_call_handle(struct api_call *call)
{
	return call->easy;
}

long api_call_status(const struct api_call *call)
{
	return call->status;
}

bool api_call_ok(const struct api_call *call)
{
	return call->code == CURLE_OK && call->status >= 200 && call->status < 300;
}

const char *api_call_body(const struct api_call *call, size_t *len_r)
{
	size_t len = buf_len(&call->reply);
	if (len_r != NULL)
		*len_r = len ? len - 1 : 0;
	return len ? buf_bytes(&call->reply) : "";
}

const cJSON *api_call_json(struct api_call *call)
{
	if (!call->parsed) {
		size_t len;
		const char *text = api_call_body(call, &len);
		call->parsed = true;
		call->json = len ? cJSON_ParseWithLength(text, len) : NULL;
	}
	return call->json;
}

void api_call_error(struct api_call *call, char *out, size_t cap)
{
	if (call->code != CURLE_OK) {
		const char *why = call->errbuf[0] ? call->errbuf : curl_easy_strerror(call->code);
		if (call->too_big)
			why = "the reply is larger than the tool accepts";
		snprintf(out, cap, "cannot reach %s: %s", call->url, why);
		return;
	}
	const cJSON *root = api_call_json(call);
	const cJSON *error = cJSON_GetObjectItemCaseSensitive(root, "error");
	const cJSON *code = cJSON_GetObjectItemCaseSensitive(error, "code");
	const cJSON *msg = cJSON_GetObjectItemCaseSensitive(error, "message");
	if (cJSON_IsString(code) && cJSON_IsString(msg)) {
		snprintf(out, cap, "HTTP %ld %s: %s", call->status, code->valuestring,
			 msg->valuestring);
		return;
	}
	/* Not an imapq error object (a proxy, or libmicrohttpd's own 431): show its first line. */
	size_t len;
	const char *body = api_call_body(call, &len);
	int first = (int)strcspn(body, "\r\n");
	snprintf(out, cap, "HTTP %ld%s%.*s", call->status, first ? ": " : "",
		 first > 200 ? 200 : first, body);
}

int api_call_exit_status(const struct api_call *call)
{
	if (call->code != CURLE_OK)
		return CLI_EXIT_ERROR;
	switch (call->status) {
	case 404:
		return CLI_EXIT_NOT_FOUND;
	case 409:
		return CLI_EXIT_CONFLICT;
	case 401:
	case 403:
		return CLI_EXIT_AUTH;
	default:
		return call->status >= 200 && call->status < 300 ? CLI_EXIT_OK : CLI_EXIT_ERROR;
	}
}

void api_call_set_data(struct api_call *call, void *data)
{
	call->data = data;
}

void *api_call_data(const struct api_call *call)
{
	return call->data;
}

void api_call_destroy(struct api_call **call)
{
	struct api_call *c = *call;
	if (c == NULL)
		return;
	if (c->easy != NULL)
		curl_easy_cleanup(c->easy);
	curl_slist_free_all(c->headers);
	free(c->body);
	buf_free(&c->reply);
	cJSON_Delete(c->json);
	free(c);
	*call = NULL;
}

char *api_queue_path(const char *queue, const char *suffix)
{
	/* curl_easy_escape encodes everything but unreserved characters, so '/' becomes %2F. */
	char *escaped = curl_easy_escape(NULL, queue, 0);
	if (escaped == NULL)
		return NULL;
	size_t len = strlen("/v1/queues/") + strlen(escaped) + strlen(suffix) + 1;
	char *path = malloc(len);
	if (path != NULL)
		snprintf(path, len, "/v1/queues/%s%s", escaped, suffix);
	curl_free(escaped);
	return path;
}
