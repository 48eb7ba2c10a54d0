/* Internals shared by the response parser's framing (response_parser.c) and its reading of
 * typed responses (response_typed.c). */
#ifndef IMAPQ_CLIENT_RESPONSE_PRIVATE_H
#define IMAPQ_CLIENT_RESPONSE_PRIVATE_H

#include "imap/base/buf.h"
#include "imap/client/response.h"

/* One block of the per-response arena. */
struct resp_block {
	struct resp_block *next;
	size_t used;
	size_t cap;
	max_align_t data[];
};

enum resp_frame_state {
	RESP_LINE,    /* reading line text up to LF */
	RESP_LITERAL, /* reading literal bytes */
	RESP_DONE,    /* a response is complete and was handed out */
	RESP_FAILED,  /* an error ended the stream */
};

struct client_parser {
	size_t max_response;
	enum resp_frame_state state;
	/* The response's bytes without CRLFs; each literal's bytes follow its "{N}" and are
	 * followed by one NUL, and the whole response ends with a NUL. */
	struct buf raw;
	size_t line_start;     /* where the current line part begins in raw */
	uint64_t literal_left; /* bytes of the current literal still to read */
	struct resp_block *arena;
	struct seqset **sets; /* sets owned by the current response */
	size_t set_count;
	size_t set_cap;
	struct client_response resp;
	imapq_err err;
	const char *message;
};

/* Reading position inside raw. */
struct resp_cursor {
	const char *p;
	const char *end;
};

/* Allocates size zeroed bytes that live until the next response; NULL when memory is short. */
void *resp_alloc(struct client_parser *parser, size_t size);
/* Copies s[0..len) with a NUL into the arena. */
char *resp_strdup(struct client_parser *parser, const char *s, size_t len);

/* Records an error; always returns the code, for "return resp_fail(...)". */
imapq_err resp_fail(struct client_parser *parser, imapq_err err, const char *message);

/* Reads one value at the cursor (skipping spaces before it). */
imapq_err resp_read_value(struct client_parser *parser, struct resp_cursor *cur, unsigned depth,
			  struct client_value *value_r);
/* Reads values up to the end of the cursor. */
imapq_err resp_read_values(struct client_parser *parser, struct resp_cursor *cur,
			   const struct client_value **values_r, size_t *count_r);
/* Parses a set of numbers ("1:3,5") into a set the response owns. */
imapq_err resp_read_set(struct client_parser *parser, const struct client_value *value,
			const struct seqset **set_r);

/* Reads the complete response in raw into parser->resp. */
imapq_err resp_interpret(struct client_parser *parser);

#endif
