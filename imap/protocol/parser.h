/* Incremental IMAP command parser: one object per connection turns the bytes a client sends, split
 * anywhere, into commands (tag, name, argument tree) and tells the caller when to send a literal
 * continuation. It knows no sockets and no storage; docs/protocol.md describes its behaviour. */
#ifndef IMAPQ_PARSER_H
#define IMAPQ_PARSER_H

#include "imap/base/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct parser;

/* What one call of parser_feed() found. */
enum parser_result {
	PARSER_NEED_MORE, /* every byte was consumed and no command is complete yet */
	PARSER_COMMAND,	  /* a command is complete: read it with parser_command() */
	PARSER_CONTINUE,  /* a synchronising literal was accepted: send "+ ..." now, then feed on */
	PARSER_ERROR,	  /* a command failed to parse: read parser_error() */
};

/* Kinds of argument. */
enum parser_arg_type {
	PARSER_ARG_ATOM, /* bare word, incl. sections such as BODY.PEEK[HEADER.FIELDS (A B)]<0.9> */
	PARSER_ARG_NIL,	 /* the atom NIL in any case; str still holds the text as sent */
	PARSER_ARG_QUOTED,  /* quoted string, escapes removed */
	PARSER_ARG_LITERAL, /* literal buffered in memory */
	PARSER_ARG_STREAM,  /* literal handed to the sink; len is its size, str is NULL */
	PARSER_ARG_LIST,    /* parenthesised list; its members are list[0..count) */
};

/* One argument. Text arguments (every type but LIST and STREAM) have str NUL-terminated with len
 * bytes and no NUL inside. */
struct parser_arg {
	enum parser_arg_type type;
	const char *str;
	size_t len;
	const struct parser_arg *list;
	size_t count;
};

/* A complete (or, inside the sink's begin hook, partial) command. Everything points into the
 * parser and stays valid until the next parser_feed(), parser_reset() or parser_destroy(). */
struct parser_command {
	const char *tag;
	const char *name; /* as sent; compare case-insensitively */
	const struct parser_arg *args;
	size_t count;
};

/* Why a command failed. The command was not executed: the server answers "<tag> BAD <message>"
 * (with the IMAP response code of code for limits), or "* BAD ..." when tag is NULL. */
struct parser_error {
	imapq_err code;	     /* IMAPQ_E_INVALID syntax, IMAPQ_E_TOOBIG size, IMAPQ_E_LIMIT count,
				IMAPQ_E_NOMEM, or what the sink returned */
	const char *message; /* readable sentence without a trailing period */
	const char *tag;     /* the command's tag, or NULL when it could not be read */
	bool fatal;	     /* the stream cannot be resynchronised: close the connection */
};

/* Limits of one command; see imap/base/limits.h for the values the server uses. */
struct parser_limits {
	size_t max_line;    /* bytes of command text (all lines, literal data excluded) */
	size_t max_literal; /* literal bytes one command may buffer in total */
	size_t max_depth;   /* nesting of parenthesised lists */
	size_t max_args;    /* arguments, list members and lists included */
};

/* Streams large literals (APPEND bodies) to the caller instead of buffering them. Every literal
 * larger than threshold is offered to begin(), which sees the command read so far (valid only
 * during the call) and the literal's size. begin() returns IMAPQ_OK and sets *stream_r to take the
 * literal (data() then gets its bytes in order, in chunks of any size, and end() follows), IMAPQ_OK
 * with *stream_r false to let the parser buffer it under max_literal, or an error to refuse the
 * command: the parser reports that error before any continuation is sent (and discards the bytes
 * of a non-synchronising literal). An error from data() refuses the command the same way; the
 * rest of the literal is discarded. end() runs exactly once per accepted literal, with complete
 * true after its last byte or false when it was abandoned (data() error, reset, destroy). A
 * streamed literal belongs to its command: if that command then ends in PARSER_ERROR, the caller
 * discards what it stored. Streamed bytes are passed on unchecked (NUL included). The hooks must
 * not call back into the parser. */
struct parser_sink {
	uint64_t threshold;
	imapq_err (*begin)(void *ctx, const struct parser_command *partial, uint64_t size,
			   bool *stream_r);
	imapq_err (*data)(void *ctx, const void *buf, size_t len);
	void (*end)(void *ctx, bool complete);
	void *ctx;
};

/* The limits the server applies before (authenticated false) or after login. */
struct parser_limits parser_limits_default(bool authenticated);

/* Creates a parser with the given limits (copied). Returns IMAPQ_OK or IMAPQ_E_NOMEM. */
imapq_err parser_create(const struct parser_limits *limits, struct parser **parser_r);
/* Frees the parser (abandoning a streamed literal) and sets *parser to NULL; NULL is ignored. */
void parser_destroy(struct parser **parser);

/* Replaces the limits; call between commands (e.g. right after a successful LOGIN). */
void parser_set_limits(struct parser *parser, const struct parser_limits *limits);
/* Installs (copies) a literal sink, or removes it when sink is NULL; call between commands. */
void parser_set_sink(struct parser *parser, const struct parser_sink *sink);

/* Consumes bytes from data[0..len) up to the first event and returns it; *consumed_r says how
 * many bytes were used, and the caller feeds the rest again. PARSER_NEED_MORE always consumes all
 * of len. After a fatal error every call returns PARSER_ERROR and consumes nothing. */
enum parser_result parser_feed(struct parser *parser, const void *data, size_t len,
			       size_t *consumed_r);

/* The command of the last PARSER_COMMAND result; NULL when the last result was another. */
const struct parser_command *parser_command(const struct parser *parser);
/* The error of the last PARSER_ERROR result; NULL when the last result was another. */
const struct parser_error *parser_error(const struct parser *parser);

/* Drops a partly read command (abandoning a streamed literal) so the next byte starts a new one;
 * used when the server discards buffered input, e.g. for STARTTLS. A fatal error stays. */
void parser_reset(struct parser *parser);

/* True when arg is an atom equal to word, ignoring ASCII case. */
bool parser_arg_is_atom(const struct parser_arg *arg, const char *word);
/* Gives the text of an astring (atom, NIL read as the word, quoted or literal); false otherwise. */
bool parser_arg_astring(const struct parser_arg *arg, const char **str_r, size_t *len_r);
/* Reads an atom that is a decimal number of at most max (no sign, no leading "+"); false when
 * arg is anything else or the number is larger. */
bool parser_arg_number(const struct parser_arg *arg, uint64_t max, uint64_t *value_r);
/* Gives the text of an nstring (quoted or literal; NIL gives NULL and 0); false otherwise. */
bool parser_arg_nstring(const struct parser_arg *arg, const char **str_r, size_t *len_r);

#endif
