/* Incremental parser of IMAP server responses (RFC 3501 section 7 with the CONDSTORE, QRESYNC,
 * ESEARCH, UIDPLUS and ANNOTATE additions). It is fed bytes split anywhere and yields one typed
 * response at a time; it knows no sockets, so it can be tested and fuzzed on canned bytes. */
#ifndef IMAPQ_CLIENT_RESPONSE_H
#define IMAPQ_CLIENT_RESPONSE_H

#include "imap/base/error.h"
#include "imap/protocol/seqset.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct client_parser;

/* One value of a response. ATOM and STRING text is NUL-terminated with len bytes (a literal may
 * hold NUL bytes of its own; len counts them all). */
enum client_value_type {
	CLIENT_VALUE_ATOM,   /* bare word or number, incl. sections like BODY[HEADER.FIELDS (A)] */
	CLIENT_VALUE_STRING, /* quoted string (escapes removed) or literal */
	CLIENT_VALUE_NIL,
	CLIENT_VALUE_LIST, /* parenthesised list: items[0..count) */
};

struct client_value {
	enum client_value_type type;
	const char *str;
	size_t len;
	const struct client_value *items;
	size_t count;
};

/* Kinds of response. */
enum client_resp_type {
	CLIENT_RESP_TAGGED,	/* "<tag> OK|NO|BAD ..." */
	CLIENT_RESP_CONTINUE,	/* "+ ..." */
	CLIENT_RESP_STATUS,	/* "* OK|NO|BAD|BYE|PREAUTH ..." */
	CLIENT_RESP_CAPABILITY, /* words: the capabilities */
	CLIENT_RESP_ENABLED,	/* words: the extensions enabled */
	CLIENT_RESP_FLAGS,	/* words: the flags */
	CLIENT_RESP_EXISTS,	/* number */
	CLIENT_RESP_RECENT,	/* number */
	CLIENT_RESP_EXPUNGE,	/* number: the sequence number expunged */
	CLIENT_RESP_FETCH,	/* fetch */
	CLIENT_RESP_SEARCH,	/* search */
	CLIENT_RESP_ESEARCH,	/* esearch */
	CLIENT_RESP_VANISHED,	/* vanished */
	CLIENT_RESP_OTHER,	/* name and words: LIST, STATUS, METADATA, NAMESPACE, ID, ... */
};

enum client_status {
	CLIENT_STATUS_NONE,
	CLIENT_STATUS_OK,
	CLIENT_STATUS_NO,
	CLIENT_STATUS_BAD,
	CLIENT_STATUS_BYE,
	CLIENT_STATUS_PREAUTH,
};

/* Response codes this parser reads into typed fields; every other one is CLIENT_CODE_OTHER with
 * its name and arguments. */
enum client_code_type {
	CLIENT_CODE_NONE,
	CLIENT_CODE_OTHER,
	CLIENT_CODE_ALERT,
	CLIENT_CODE_CAPABILITY,	    /* args: the capabilities */
	CLIENT_CODE_PERMANENTFLAGS, /* args[0]: the list */
	CLIENT_CODE_READ_ONLY,
	CLIENT_CODE_READ_WRITE,
	CLIENT_CODE_TRYCREATE,
	CLIENT_CODE_UIDNEXT,	   /* number */
	CLIENT_CODE_UIDVALIDITY,   /* number */
	CLIENT_CODE_UNSEEN,	   /* number */
	CLIENT_CODE_HIGHESTMODSEQ, /* number */
	CLIENT_CODE_NOMODSEQ,
	CLIENT_CODE_MODIFIED,  /* set: the UIDs (or sequence numbers) a conditional STORE skipped */
	CLIENT_CODE_APPENDUID, /* number: UIDVALIDITY; set: the appended UIDs */
	CLIENT_CODE_COPYUID,   /* number: UIDVALIDITY; set: source UIDs; set2: destination UIDs */
	CLIENT_CODE_CLOSED,
};

struct client_code {
	enum client_code_type type;
	const char *name; /* upper-cased as sent; NULL with CLIENT_CODE_NONE */
	const char *text; /* the arguments as sent ("" when none) */
	/* The arguments as values, for the typed codes only (OTHER and ALERT may carry free text).
	 */
	const struct client_value *args;
	size_t arg_count;
	uint64_t number;
	const struct seqset *set;
	const struct seqset *set2;
};

/* Which fields of a FETCH response were present. */
enum client_fetch_have {
	CLIENT_FETCH_UID = 1 << 0,
	CLIENT_FETCH_FLAGS = 1 << 1,
	CLIENT_FETCH_MODSEQ = 1 << 2,
	CLIENT_FETCH_SIZE = 1 << 3,
	CLIENT_FETCH_INTERNALDATE = 1 << 4,
};

/* A BODY[...], BINARY[...] or RFC822* item: name as sent (e.g. "BODY[TEXT]<0>"), data NULL for
 * NIL. */
struct client_section {
	const char *name;
	const char *data;
	size_t len;
};

/* One attribute of an ANNOTATION item (RFC 5257): value NULL for NIL. */
struct client_annotation {
	const char *entry;
	const char *attribute;
	const char *value;
	size_t len;
};

struct client_fetch {
	unsigned have; /* enum client_fetch_have bits */
	uint32_t uid;
	uint64_t modseq;
	uint64_t size; /* RFC822.SIZE */
	const char *internaldate;
	const struct client_value *flags; /* atoms */
	size_t flag_count;
	const struct client_section *sections;
	size_t section_count;
	const struct client_annotation *annotations;
	size_t annotation_count;
	const struct client_value *items; /* every item name and value, alternating */
	size_t item_count;
};

struct client_search {
	const uint32_t *numbers;
	size_t count;
	bool have_modseq;
	uint64_t modseq; /* "(MODSEQ n)" of RFC 7162 */
};

/* Which fields of an ESEARCH response were present. */
enum client_esearch_have {
	CLIENT_ESEARCH_MIN = 1 << 0,
	CLIENT_ESEARCH_MAX = 1 << 1,
	CLIENT_ESEARCH_COUNT = 1 << 2,
	CLIENT_ESEARCH_ALL = 1 << 3,
	CLIENT_ESEARCH_MODSEQ = 1 << 4,
};

struct client_esearch {
	const char *tag; /* the command's tag from "(TAG ...)", NULL when absent */
	bool uid;
	unsigned have; /* enum client_esearch_have bits */
	uint32_t min;
	uint32_t max;
	uint64_t count;
	uint64_t modseq;
	const struct seqset *all;
};

struct client_vanished {
	bool earlier;
	const struct seqset *uids;
};

/* One response. Every pointer points into the parser and stays valid until the next
 * client_parser_feed(), client_parser_reset() or client_parser_destroy(). Fields not named for a
 * type are zero. */
struct client_response {
	enum client_resp_type type;
	const char *tag;	   /* TAGGED */
	enum client_status status; /* TAGGED, STATUS */
	struct client_code code;   /* TAGGED, STATUS */
	const char *text;	   /* TAGGED, STATUS, CONTINUE: the human-readable text */
	uint32_t number;	   /* EXISTS, RECENT, EXPUNGE, FETCH (the sequence number) */
	const char *name; /* the keyword, upper-cased: "FETCH", "LIST", ... ("+" for CONTINUE) */
	const struct client_value *words; /* CAPABILITY, ENABLED, FLAGS, OTHER: what follows name */
	size_t word_count;
	struct client_fetch fetch;
	struct client_search search;
	struct client_esearch esearch;
	struct client_vanished vanished;
};

/* What one client_parser_feed() found. */
enum client_parse_result {
	CLIENT_PARSE_MORE,     /* every byte given was consumed; no response is complete yet */
	CLIENT_PARSE_RESPONSE, /* a response is complete: read it with client_parser_response() */
	CLIENT_PARSE_ERROR,    /* the input is malformed or too big: see client_parser_error() */
};

/* Creates a parser; max_response bounds one response in bytes (0: IMAPQ_CLIENT_MAX_RESPONSE).
 * Returns IMAPQ_OK or IMAPQ_E_NOMEM. */
imapq_err client_parser_create(size_t max_response, struct client_parser **parser_r);
/* Frees the parser and sets *parser to NULL; NULL is ignored. */
void client_parser_destroy(struct client_parser **parser);
/* Forgets any partial response and the previous one (for example after STARTTLS). */
void client_parser_reset(struct client_parser *parser);

/* Consumes bytes from data[0..len) up to the end of one response and stores in *used_r how many
 * it took; the caller feeds the rest again after reading the response. After an error every
 * further call fails too: the stream cannot be resynchronised, so the connection must close. */
enum client_parse_result client_parser_feed(struct client_parser *parser, const char *data,
					    size_t len, size_t *used_r);

/* The response that the last feed completed. */
const struct client_response *client_parser_response(const struct client_parser *parser);

/* After CLIENT_PARSE_ERROR: IMAPQ_E_INVALID (malformed), IMAPQ_E_TOOBIG (over a limit) or
 * IMAPQ_E_NOMEM, and a sentence saying what was wrong. */
imapq_err client_parser_error(const struct client_parser *parser, const char **message_r);

/* Helpers for reading values. */
/* True when v is an atom or string equal to s, ignoring ASCII case. */
bool client_value_is(const struct client_value *v, const char *s);
/* Reads an atom made only of digits into *n_r (at most max); false when it is not one. */
bool client_value_number(const struct client_value *v, uint64_t max, uint64_t *n_r);

#endif
