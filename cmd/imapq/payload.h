/* The bytes of a job as a claim or peek reply carries them: JSON bodies as their exact text,
 * text bodies as the string, binary bodies decoded from base64. */
#ifndef IMAPQ_CLI_PAYLOAD_H
#define IMAPQ_CLI_PAYLOAD_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "cmd/imapq/rawjson.h"
#include "imap/base/error.h"

/* True for application/json and any type/subtype+json, parameters ignored. */
bool payload_type_is_json(const char *ctype);

/* Extracts the body of msg (one element of "messages"); span is where its "body" sits in reply
 * (from rawjson_message_bodies). *data_r is malloc'd and NUL-terminated, the caller frees it;
 * binary_r (may be NULL) tells whether it came from base64. A job without a body gives "".
 * IMAPQ_E_INVALID for undecodable base64, IMAPQ_E_NOMEM. */
imapq_err payload_extract(const cJSON *msg, const char *reply, const struct rawjson_span *span,
			  char **data_r, size_t *len_r, bool *binary_r);

#endif
