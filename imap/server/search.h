/* SEARCH programs (RFC 3501 6.4.4, RFC 4731, RFC 7162 3.1.5): the search keys of a command
 * compiled into a small tree, a plan that says whether the store's flag index can answer it,
 * and evaluation of the tree against one message. Knows no sessions: names (keywords, sequence
 * sets) are resolved through a resolver, and message content is read through a source, so the
 * command handler (cmd-search.c) supplies both and tests can supply synthetic ones. */
#ifndef IMAPQ_SEARCH_H
#define IMAPQ_SEARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap/base/error.h"
#include "imap/protocol/parser.h"
#include "imap/store/store.h"

struct search_program;

/* RETURN options of RFC 4731, as bits. */
enum search_return {
	SEARCH_RETURN_MIN = 1u << 0,
	SEARCH_RETURN_MAX = 1u << 1,
	SEARCH_RETURN_ALL = 1u << 2,
	SEARCH_RETURN_COUNT = 1u << 3,
};

/* Resolves the names a program refers to against the selected mailbox. */
struct search_resolver {
	/* The index k of a keyword (flag bit STORE_KEYWORD(k)); IMAPQ_E_NOTFOUND when the mailbox
	 * does not define it, any other error to fail the parse with it. */
	imapq_err (*keyword)(void *ctx, const char *name, unsigned *index_r);
	/* A sequence set (a UID set when uid) as ascending, disjoint UID ranges in a malloc'd
	 * array the caller frees (NULL and 0 when the set names no message). Returns IMAPQ_OK,
	 * IMAPQ_E_INVALID when the text is no sequence set, or IMAPQ_E_NOMEM. */
	imapq_err (*set)(void *ctx, const char *text, size_t len, bool uid,
			 struct uid_range **ranges_r, size_t *n_r);
	void *ctx;
};

/* Reads the content of the message being evaluated (see search_match()). */
struct search_source {
	/* Sets *match_r when a top-level header field named field contains needle (ASCII
	 * case-insensitive; an empty needle matches any such field). */
	imapq_err (*header_contains)(void *ctx, const char *field, const char *needle,
				     size_t needle_len, bool *match_r);
	/* Sets *match_r when the body (or with headers_too the whole message) contains needle. */
	imapq_err (*text_contains)(void *ctx, const char *needle, size_t needle_len,
				   bool headers_too, bool *match_r);
	/* The calendar day (days since 1970-01-01) of the Date: header; IMAPQ_E_NOTFOUND when it
	 * is missing or unreadable, which makes every SENT* key false. */
	imapq_err (*sent_day)(void *ctx, int64_t *day_r);
	void *ctx;
};

/* How the store can answer a program. Ranges point into the program. */
struct search_plan {
	bool none;     /* no message can match (e.g. KEYWORD of an undefined keyword) */
	bool indexed;  /* the program is exactly "(flags & mask) == want within ranges" */
	uint64_t mask; /* flag tests of the top-level conjunction */
	uint64_t want;
	bool has_ranges; /* the top-level conjunction names UID ranges (else all messages) */
	const struct uid_range *ranges;
	size_t nranges;
	uint64_t modseq_min; /* the top-level conjunction requires modseq >= this (0: no bound) */
};

/* Parses RETURN's option list (the LIST argument after RETURN) into SEARCH_RETURN_* bits;
 * "()" gives SEARCH_RETURN_ALL. Returns IMAPQ_OK or IMAPQ_E_INVALID with a sentence in
 * *error_r for an unknown or malformed option. */
imapq_err search_parse_return(const struct parser_arg *list, unsigned *opts_r,
			      const char **error_r);

/* True when a CHARSET name is one SEARCH accepts (US-ASCII or UTF-8). */
bool search_charset_supported(const char *name, size_t len);

/* Compiles search keys args[0..count) (everything after RETURN and CHARSET) into a program
 * owned by the caller. Returns IMAPQ_OK, IMAPQ_E_INVALID with a sentence for a BAD reply in
 * *error_r (syntax errors, unknown keys, nesting past IMAPQ_MAX_SEARCH_DEPTH), IMAPQ_E_NOMEM,
 * or an error the resolver returned (with *error_r NULL). */
imapq_err search_parse(const struct parser_arg *args, size_t count,
		       const struct search_resolver *resolver, struct search_program **prog_r,
		       const char **error_r);
/* Frees a program and clears the caller's pointer; NULL is allowed. */
void search_program_free(struct search_program **prog);

/* Describes how the program can be answered (see struct search_plan). */
void search_program_plan(const struct search_program *prog, struct search_plan *plan_r);
/* True when the program has a MODSEQ key: the reply then carries the highest mod-sequence. */
bool search_program_has_modseq(const struct search_program *prog);
/* True when evaluation may need message content (headers, body, Date:). */
bool search_program_needs_content(const struct search_program *prog);

/* The three answers of an evaluation that may not read content. */
enum search_answer {
	SEARCH_NO,
	SEARCH_YES,
	SEARCH_MAYBE, /* depends on message content */
};

/* Evaluates the program on a message's metadata alone; recent says whether it is \Recent to
 * the session. Never reads content, so it may run under the store's lock. */
enum search_answer search_match_meta(const struct search_program *prog,
				     const struct store_message *m, bool recent);
/* Evaluates the program fully, reading content through src only for the keys that need it.
 * Returns IMAPQ_OK with *match_r set, or the first error src returned. */
imapq_err search_match(const struct search_program *prog, const struct store_message *m,
		       bool recent, const struct search_source *src, bool *match_r);

/* Parses an RFC 3501 date ("1-Feb-1994", day of one or two digits) into days since
 * 1970-01-01. Returns false when the text is not such a date. */
bool search_parse_date(const char *str, size_t len, int64_t *day_r);
/* The UTC calendar day (days since 1970-01-01) of a time in seconds since the epoch. */
int64_t search_day_of(int64_t epoch);

#endif
