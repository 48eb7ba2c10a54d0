/* Finds the exact text of each job's "body" in a reply of the form {"messages":[{...},...]}.
 * imapqd inlines a JSON body byte for byte, and cJSON would turn its numbers into doubles, so
 * a worker hands the child this span rather than a re-serialised tree. */
#ifndef IMAPQ_CLI_RAWJSON_H
#define IMAPQ_CLI_RAWJSON_H

#include <stddef.h>

#include "imap/base/error.h"

struct rawjson_span {
	size_t off; /* offset of the value's first byte in the reply; 0 with len 0 when absent */
	size_t len;
};

/* Fills spans[i] for the i-th element of "messages" (up to max); *n_r is the number of
 * elements seen (at most max). IMAPQ_E_INVALID when text is not such a reply. */
imapq_err rawjson_message_bodies(const char *text, size_t len, struct rawjson_span *spans,
				 size_t max, size_t *n_r);

#endif
