/* Running one request for a command and printing what came back: the raw JSON with --json,
 * readable text otherwise, and every failure as the server's code and message on stderr. */
#ifndef IMAPQ_CLI_OUTPUT_H
#define IMAPQ_CLI_OUTPUT_H

#include <stdio.h>

#include <cjson/cJSON.h>

#include "cmd/imapq/api.h"
#include "cmd/imapq/cli.h"
#include "cmd/imapq/rawjson.h"

/* Sends a request with a JSON body (obj may be NULL) and waits for the reply. On a 2xx reply
 * returns CLI_EXIT_OK with *call_r set (the caller destroys it). Otherwise prints the failure
 * (and with --json the server's error object on stdout) and returns its exit status. */
int out_request(struct cli *cli, const char *method, const char *path, const cJSON *obj,
		long timeout_s, struct api_call **call_r);
/* The same with a body of any type (body may be NULL). */
int out_request_raw(struct cli *cli, const char *method, const char *path, const void *body,
		    size_t len, const char *ctype, long timeout_s, struct api_call **call_r);

/* out_request on api_queue_path(queue, suffix), reporting when memory runs out. */
int out_queue_request(struct cli *cli, const char *method, const char *queue, const char *suffix,
		      const cJSON *obj, long timeout_s, struct api_call **call_r);

/* Prints the reply's body as it came, ending with a newline (nothing for an empty body). */
void out_raw(struct api_call *call);

/* The reply parsed as a JSON object, or NULL after reporting "unexpected reply" on stderr. */
const cJSON *out_reply_object(struct api_call *call);

/* Text of a member for tables: strings as they are, numbers in decimal, null and absent as "-".
 * The result lives in scratch (cap bytes) or in obj. */
const char *out_field(const cJSON *obj, const char *key, char *scratch, size_t cap);

/* Called for each job of a reply's "messages" list; span locates its body in reply, NULL when
 * the reply could not be scanned. */
typedef void out_message_fn(void *ctx, const cJSON *msg, const char *reply,
			    const struct rawjson_span *span);

/* Calls fn for every element of list, the "messages" array of call's reply, in order. */
void out_each_message(struct api_call *call, const cJSON *list, out_message_fn *fn, void *ctx);

/* Prints a job's body to f as text, ending with a newline; binary bodies show as base64 with a
 * note. span locates the body in reply (NULL: none). */
void out_job_body(FILE *f, const cJSON *msg, const char *reply, const struct rawjson_span *span);

#endif
