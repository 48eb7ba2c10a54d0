/* One HTTP request to imapqd's JSON API over libcurl, usable blocking (api_call_perform) or
 * inside a curl multi handle (api_call_handle, then api_call_done when curl reports it). */
#ifndef IMAPQ_CLI_API_H
#define IMAPQ_CLI_API_H

#include <stddef.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "cmd/imapq/cli.h"
#include "imap/base/error.h"

struct api_call;

/* Prepares METHOD URL+path with cli's token. body (len bytes, copied) may be NULL; ctype is its
 * Content-Type. timeout_s bounds the whole request (0: none). IMAPQ_E_NOMEM on failure. */
imapq_err api_call_create(const struct cli *cli, const char *method, const char *path,
			  const void *body, size_t len, const char *ctype, long timeout_s,
			  struct api_call **call_r);

/* Prepares a request whose body is the JSON of obj (NULL: no body). obj stays the caller's. */
imapq_err api_call_create_json(const struct cli *cli, const char *method, const char *path,
			       const cJSON *obj, long timeout_s, struct api_call **call_r);

/* Runs the request to its end. IMAPQ_OK when an HTTP reply arrived, whatever its status;
 * IMAPQ_E_IO when none did (api_call_error tells why). */
imapq_err api_call_perform(struct api_call *call);

/* The easy handle, for curl_multi_add_handle; its CURLOPT_PRIVATE is the call. */
CURL *api_call_handle(struct api_call *call);
/* Records the result curl_multi_info_read reported; returns as api_call_perform does. */
imapq_err api_call_done(struct api_call *call, CURLcode code);

/* The HTTP status, 0 before a reply. */
long api_call_status(const struct api_call *call);
/* True for a 2xx reply. */
bool api_call_ok(const struct api_call *call);
/* The reply's body, NUL-terminated (len_r may be NULL); owned by the call. */
const char *api_call_body(const struct api_call *call, size_t *len_r);
/* The reply parsed as JSON, NULL when it is not JSON; owned by the call. */
const cJSON *api_call_json(struct api_call *call);

/* Describes a failed call: "HTTP 404 not_found: no such queue" from the server's error object,
 * or the transport failure ("cannot reach URL: ..."). */
void api_call_error(struct api_call *call, char *out, size_t cap);
/* The exit status a failed call maps to (cli_exit). */
int api_call_exit_status(const struct api_call *call);

/* Caller data carried by the call. */
void api_call_set_data(struct api_call *call, void *data);
void *api_call_data(const struct api_call *call);

void api_call_destroy(struct api_call **call);

/* "/v1/queues/<queue, percent-encoded>" followed by suffix (may be ""): malloc'd, NULL when
 * memory runs out. */
char *api_queue_path(const char *queue, const char *suffix);

#endif
