/* The tree of a SEARCH program, shared by its parser (search-parse.c) and its evaluator
 * (search-eval.c). Nothing else includes this. */
#ifndef IMAPQ_SEARCH_PRIVATE_H
#define IMAPQ_SEARCH_PRIVATE_H

#include "imap/server/search.h"

enum search_op {
	SEARCH_OP_ALL,
	SEARCH_OP_NONE,
	SEARCH_OP_FLAGS,  /* (flags & mask) == want */
	SEARCH_OP_RECENT, /* \Recent to the session */
	SEARCH_OP_UIDS,	  /* UID in a set (UID key and sequence sets, both resolved to UIDs) */
	SEARCH_OP_LARGER, /* size > number */
	SEARCH_OP_SMALLER,
	SEARCH_OP_MODSEQ, /* modseq >= number */
	SEARCH_OP_BEFORE, /* day of the internal date < day */
	SEARCH_OP_ON,
	SEARCH_OP_SINCE,
	SEARCH_OP_SENTBEFORE, /* day of the Date: header < day */
	SEARCH_OP_SENTON,
	SEARCH_OP_SENTSINCE,
	SEARCH_OP_HEADER, /* a header field contains a string */
	SEARCH_OP_BODY,	  /* the body contains a string */
	SEARCH_OP_TEXT,	  /* the whole message contains a string */
	SEARCH_OP_AND,
	SEARCH_OP_OR,
	SEARCH_OP_NOT,
};

struct search_node {
	enum search_op op;
	union {
		struct {
			uint64_t mask, want;
		} flags;
		struct {
			struct uid_range *ranges;
			size_t n;
		} set;
		uint64_t number;
		int64_t day;
		struct {
			char *field; /* HEADER only */
			char *needle;
			size_t len;
		} text;
		struct {
			struct search_node **kids;
			size_t n;
		} list;
	} u;
};

struct search_program {
	struct search_node *root;
	struct search_plan plan;
	struct uid_range *plan_ranges; /* owned storage behind plan.ranges */
	bool has_modseq;
	bool needs_content;
};

/* Frees a node and everything below it; NULL is allowed. */
void search_node_free(struct search_node *n);
/* Computes prog->plan (allocating prog->plan_ranges). Returns IMAPQ_OK or IMAPQ_E_NOMEM. */
imapq_err search_program_compile_plan(struct search_program *prog);

#endif
