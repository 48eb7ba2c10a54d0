#include "cmd/imapq/output.h"

#include <stdlib.h>
#include <string.h>

#include "cmd/imapq/payload.h"

int out_request_raw(struct cli *cli, const char *method, const char *path, const void *body,
		    size_t len, const char *ctype, long timeout_s, struct api_call **call_r)
{
	struct api_call *call;
	*call_r = NULL;
	if (api_call_create(cli, method, path, body, len, ctype, timeout_s, &call) != IMAPQ_OK)
		return cli_no_memory();
	char text[1024];
	if (api_call_perform(call) != IMAPQ_OK) {
		api_call_error(call, text, sizeof text);
		fprintf(stderr, "imapq: %s\n", text);
		api_call_destroy(&call);
		return CLI_EXIT_ERROR;
	}
	if (!api_call_ok(call)) {
		api_call_error(call, text, sizeof text);
		fprintf(stderr, "imapq: %s\n", text);
		if (cli->json)
			out_raw(call);
		int status = api_call_exit_status(call);
		api_call_destroy(&call);
		return status;
	}
	*call_r = call;
	return CLI_EXIT_OK;
}

int out_request(struct cli *cli, const char *method, const char *path, const cJSON *obj,
		long timeout_s, struct api_call **call_r)
{
	if (obj == NULL)
		return out_request_raw(cli, method, path, NULL, 0, NULL, timeout_s, call_r);
	char *text = cJSON_PrintUnformatted(obj);
	if (text == NULL)
		return cli_no_memory();
	int status = out_request_raw(cli, method, path, text, strlen(text), "application/json",
				     timeout_s, call_r);
	cJSON_free(text);
	return status;
}

int out_queue_request(struct cli *cli, const char *method, const char *queue, const char *suffix,
		      const cJSON *obj, long timeout_s, struct api_call **call_r)
{
	*call_r = NULL;
	char *path = api_queue_path(queue, suffix);
	if (path == NULL)
		return cli_no_memory();
	int status = out_request(cli, method, path, obj, timeout_s, call_r);
	free(path);
	return status;
}

void out_raw(struct api_call *call)
{
	size_t len;
	const char *body = api_call_body(call, &len);
	if (len == 0)
		return;
	fwrite(body, 1, len, stdout);
	if (body[len - 1] != '\n')
		fputc('\n', stdout);
}

const cJSON *out_reply_object(struct api_call *call)
{
	const cJSON *root = api_call_json(call);
	if (!cJSON_IsObject(root)) {
		fprintf(stderr, "imapq: unexpected reply (HTTP %ld): not a JSON object\n",
			api_call_status(call));
		return NULL;
	}
	return root;
}

const char *out_field(const cJSON *obj, const char *key, char *scratch, size_t cap)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
	if (cJSON_IsString(item))
		return item->valuestring;
	if (cJSON_IsNumber(item)) {
		snprintf(scratch, cap, "%.0f", item->valuedouble);
		return scratch;
	}
	if (cJSON_IsBool(item))
		return cJSON_IsTrue(item) ? "true" : "false";
	return "-";
}

void out_each_message(struct api_call *call, const cJSON *list, out_message_fn *fn, void *ctx)
{
	int count = cJSON_GetArraySize(list);
	if (count <= 0)
		return;
	size_t len;
	const char *text = api_call_body(call, &len);
	struct rawjson_span *spans = calloc((size_t)count, sizeof *spans);
	size_t n = 0;
	if (spans == NULL ||
	    rawjson_message_bodies(text, len, spans, (size_t)count, &n) != IMAPQ_OK)
		n = 0;
	size_t i = 0;
	const cJSON *msg;
	cJSON_ArrayForEach(msg, list)
	{
		fn(ctx, msg, text, i < n ? &spans[i] : NULL);
		i++;
	}
	free(spans);
}

void out_job_body(FILE *f, const cJSON *msg, const char *reply, const struct rawjson_span *span)
{
	if (cJSON_GetObjectItemCaseSensitive(msg, "body") == NULL)
		return;
	const cJSON *enc = cJSON_GetObjectItemCaseSensitive(msg, "body_encoding");
	const cJSON *body = cJSON_GetObjectItemCaseSensitive(msg, "body");
	if (cJSON_IsString(enc) && cJSON_IsString(body)) {
		fprintf(f, "(%s) %s\n", enc->valuestring, body->valuestring);
		return;
	}
	char *data;
	size_t len;
	if (payload_extract(msg, reply, span, &data, &len, NULL) != IMAPQ_OK) {
		fprintf(f, "(body not shown: out of memory)\n");
		return;
	}
	fwrite(data, 1, len, f);
	if (len == 0 || data[len - 1] != '\n')
		fputc('\n', f);
	free(data);
}
