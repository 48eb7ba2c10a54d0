/* Compiles the search keys of SEARCH (RFC 3501 6.4.4 and its formal syntax, RFC 7162 MODSEQ)
 * into a tree; RETURN options of RFC 4731 and the CHARSET check live here too. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/base/limits.h"
#include "imap/server/flags.h"
#include "imap/server/search-private.h"

/* Where parsing is: the key list being read and the first failure. */
struct parse_state {
	const struct search_resolver *resolver;
	imapq_err err;
	const char *error;
	bool has_modseq;
	bool needs_content;
};

/* A cursor over one argument list (the command's or a parenthesised group's). */
struct arg_cursor {
	const struct parser_arg *args;
	size_t count;
	size_t pos;
};

/* Records the first failure; later ones are ignored. Returns NULL for the callers' convenience. */
static struct search_node *fail(struct parse_state *ps, imapq_err err, const char *error)
{
	if (ps->err == IMAPQ_OK) {
		ps->err = err;
		ps->error = error;
	}
	return NULL;
}

/* Allocates a node of the given kind. */
static struct search_node *node_new(struct parse_state *ps, enum search_op op)
{
	struct search_node *n = calloc(1, sizeof *n);
	if (n == NULL)
		return fail(ps, IMAPQ_E_NOMEM, NULL);
	n->op = op;
	return n;
}

/* A flag test node: mask bits must equal want. */
static struct search_node *node_flags(struct parse_state *ps, uint64_t mask, uint64_t want)
{
	struct search_node *n = node_new(ps, SEARCH_OP_FLAGS);
	if (n != NULL) {
		n->u.flags.mask = mask;
		n->u.flags.want = want;
	}
	return n;
}

void search_node_free(struct search_node *n)
{
	if (n == NULL)
		return;
	switch (n->op) {
	case SEARCH_OP_UIDS:
		free(n->u.set.ranges);
		break;
	case SEARCH_OP_HEADER:
	case SEARCH_OP_BODY:
	case SEARCH_OP_TEXT:
		free(n->u.text.field);
		free(n->u.text.needle);
		break;
	case SEARCH_OP_AND:
	case SEARCH_OP_OR:
	case SEARCH_OP_NOT:
		for (size_t i = 0; i < n->u.list.n; i++)
			search_node_free(n->u.list.kids[i]);
		free(n->u.list.kids);
		break;
	default:
		break;
	}
	free(n);
}

/* Appends kid to a list node, taking ownership (freeing kid on failure). */
static bool list_push(struct parse_state *ps, struct search_node *list, struct search_node *kid)
{
	struct search_node **kids =
	    realloc(list->u.list.kids, (list->u.list.n + 1) * sizeof *list->u.list.kids);
	if (kids == NULL) {
		search_node_free(kid);
		fail(ps, IMAPQ_E_NOMEM, NULL);
		return false;
	}
	list->u.list.kids = kids;
	kids[list->u.list.n++] = kid;
	return true;
}

/* A node with the children a and, when two, b; takes ownership of both (either may be NULL
 * after a failure that is already recorded). */
static struct search_node *node_list(struct parse_state *ps, enum search_op op,
				     struct search_node *a, struct search_node *b, bool two)
{
	struct search_node *n = NULL;
	if (a != NULL && (!two || b != NULL))
		n = node_new(ps, op);
	if (n == NULL) {
		search_node_free(a);
		search_node_free(b);
		return fail(ps, IMAPQ_E_NOMEM, NULL);
	}
	if (!list_push(ps, n, a)) {
		search_node_free(b);
		search_node_free(n);
		return NULL;
	}
	if (two && !list_push(ps, n, b)) {
		search_node_free(n);
		return NULL;
	}
	return n;
}

/* The next argument of the current list, or NULL (recording why) when there is none. */
static const struct parser_arg *next_arg(struct parse_state *ps, struct arg_cursor *cur)
{
	if (cur->pos >= cur->count) {
		fail(ps, IMAPQ_E_INVALID, "Missing argument to a search key");
		return NULL;
	}
	return &cur->args[cur->pos++];
}

/* Copies an astring argument into a new NUL-terminated string. */
static char *next_string(struct parse_state *ps, struct arg_cursor *cur, size_t *len_r)
{
	const struct parser_arg *a = next_arg(ps, cur);
	const char *str;
	size_t len;
	if (a == NULL)
		return NULL;
	if (!parser_arg_astring(a, &str, &len)) {
		fail(ps, IMAPQ_E_INVALID, "Expected a string argument");
		return NULL;
	}
	char *copy = malloc(len + 1);
	if (copy == NULL) {
		fail(ps, IMAPQ_E_NOMEM, NULL);
		return NULL;
	}
	memcpy(copy, str, len);
	copy[len] = '\0';
	if (len_r != NULL)
		*len_r = len;
	return copy;
}

/* Reads a decimal number of at most max; false (recorded) when it is not one. */
static bool next_number(struct parse_state *ps, struct arg_cursor *cur, uint64_t max,
			uint64_t *value_r)
{
	const struct parser_arg *a = next_arg(ps, cur);
	if (a == NULL)
		return false;
	if (parser_arg_number(a, max, value_r))
		return true;
	fail(ps, IMAPQ_E_INVALID, "Invalid number in search key");
	return false;
}

/* A node for one of the string keys (HEADER with field, else BODY or TEXT). */
static struct search_node *text_key(struct parse_state *ps, struct arg_cursor *cur,
				    enum search_op op, const char *field)
{
	struct search_node *n = node_new(ps, op);
	if (n == NULL)
		return NULL;
	ps->needs_content = true;
	if (op == SEARCH_OP_HEADER) {
		if (field != NULL) {
			n->u.text.field = strdup(field);
			if (n->u.text.field == NULL)
				fail(ps, IMAPQ_E_NOMEM, NULL);
		} else {
			n->u.text.field = next_string(ps, cur, NULL);
		}
		if (n->u.text.field == NULL) {
			search_node_free(n);
			return NULL;
		}
	}
	n->u.text.needle = next_string(ps, cur, &n->u.text.len);
	if (n->u.text.needle == NULL) {
		search_node_free(n);
		return NULL;
	}
	return n;
}

/* A node for a date key. */
static struct search_node *date_key(struct parse_state *ps, struct arg_cursor *cur,
				    enum search_op op)
{
	const struct parser_arg *a = next_arg(ps, cur);
	if (a == NULL)
		return NULL;
	int64_t day;
	if ((a->type != PARSER_ARG_ATOM && a->type != PARSER_ARG_QUOTED) ||
	    !search_parse_date(a->str, a->len, &day))
		return fail(ps, IMAPQ_E_INVALID,
			    "Invalid date in search key (want e.g. 1-Feb-1994)");
	struct search_node *n = node_new(ps, op);
	if (n != NULL)
		n->u.day = day;
	if (op == SEARCH_OP_SENTBEFORE || op == SEARCH_OP_SENTON || op == SEARCH_OP_SENTSINCE)
		ps->needs_content = true;
	return n;
}

/* A node for a sequence set or the UID key's set. */
static struct search_node *set_key(struct parse_state *ps, const struct parser_arg *a, bool uid)
{
	if (a == NULL)
		return NULL;
	if (a->type != PARSER_ARG_ATOM)
		return fail(ps, IMAPQ_E_INVALID, "Invalid sequence set");
	struct uid_range *ranges = NULL;
	size_t n = 0;
	imapq_err err = ps->resolver->set(ps->resolver->ctx, a->str, a->len, uid, &ranges, &n);
	if (err != IMAPQ_OK)
		return fail(ps, err, err == IMAPQ_E_INVALID ? "Invalid sequence set" : NULL);
	struct search_node *node = node_new(ps, SEARCH_OP_UIDS);
	if (node == NULL) {
		free(ranges);
		return NULL;
	}
	node->u.set.ranges = ranges;
	node->u.set.n = n;
	return node;
}

/* KEYWORD (set true) or UNKEYWORD: a flag test, or a constant for an undefined keyword. */
static struct search_node *keyword_key(struct parse_state *ps, struct arg_cursor *cur, bool set)
{
	const struct parser_arg *a = next_arg(ps, cur);
	if (a == NULL)
		return NULL;
	if (a->type != PARSER_ARG_ATOM || a->len == 0)
		return fail(ps, IMAPQ_E_INVALID, "Invalid keyword");
	uint64_t bit = flag_system_bit(a->str, a->len);
	if (bit == 0) {
		for (size_t i = 0; i < a->len; i++) {
			unsigned char ch = (unsigned char)a->str[i];
			if (ch <= ' ' || ch >= 0x7f || strchr("(){%*\"\\]", ch) != NULL)
				return fail(ps, IMAPQ_E_INVALID, "Invalid keyword");
		}
		unsigned k;
		imapq_err err = a->len > IMAPQ_MAX_KEYWORD
				    ? IMAPQ_E_NOTFOUND
				    : ps->resolver->keyword(ps->resolver->ctx, a->str, &k);
		if (err == IMAPQ_E_NOTFOUND)
			return node_new(ps, set ? SEARCH_OP_NONE : SEARCH_OP_ALL);
		if (err != IMAPQ_OK)
			return fail(ps, err, NULL);
		bit = STORE_KEYWORD(k);
	}
	return node_flags(ps, bit, set ? bit : 0);
}

/* MODSEQ [entry-name entry-type-req] mod-sequence-valzer (RFC 7162 3.1.5). */
static struct search_node *modseq_key(struct parse_state *ps, struct arg_cursor *cur)
{
	if (cur->pos < cur->count && cur->args[cur->pos].type == PARSER_ARG_QUOTED) {
		const struct parser_arg *name = &cur->args[cur->pos++];
		const struct parser_arg *type = next_arg(ps, cur);
		if (type == NULL)
			return NULL;
		if (name->len <= 7 || strncasecmp(name->str, "/flags/", 7) != 0)
			return fail(ps, IMAPQ_E_INVALID, "Invalid MODSEQ entry name");
		if (!parser_arg_is_atom(type, "priv") && !parser_arg_is_atom(type, "shared") &&
		    !parser_arg_is_atom(type, "all"))
			return fail(ps, IMAPQ_E_INVALID, "Invalid MODSEQ entry type");
	}
	uint64_t v;
	if (!next_number(ps, cur, INT64_MAX, &v))
		return NULL;
	struct search_node *n = node_new(ps, SEARCH_OP_MODSEQ);
	if (n != NULL)
		n->u.number = v;
	ps->has_modseq = true;
	return n;
}

/* Inverts a node: NOT of a one-bit flag test is the opposite test, so "NOT SEEN" stays
 * answerable from the index; NOT NOT x is x. Takes ownership of kid. */
static struct search_node *negate(struct parse_state *ps, struct search_node *kid)
{
	if (kid == NULL)
		return NULL;
	switch (kid->op) {
	case SEARCH_OP_ALL:
		kid->op = SEARCH_OP_NONE;
		return kid;
	case SEARCH_OP_NONE:
		kid->op = SEARCH_OP_ALL;
		return kid;
	case SEARCH_OP_FLAGS:
		if (__builtin_popcountll(kid->u.flags.mask) == 1) {
			kid->u.flags.want ^= kid->u.flags.mask;
			return kid;
		}
		break;
	case SEARCH_OP_NOT: {
		struct search_node *inner = kid->u.list.kids[0];
		kid->u.list.n = 0;
		search_node_free(kid);
		return inner;
	}
	default:
		break;
	}
	return node_list(ps, SEARCH_OP_NOT, kid, NULL, false);
}

/* The keys that take no argument, with their flag test (or another meaning). */
static const struct simple_key {
	const char *name;
	enum search_op op;
	uint64_t mask, want;
} simple_keys[] = {
    {"ALL", SEARCH_OP_ALL, 0, 0},
    {"ANSWERED", SEARCH_OP_FLAGS, STORE_ANSWERED, STORE_ANSWERED},
    {"DELETED", SEARCH_OP_FLAGS, STORE_DELETED, STORE_DELETED},
    {"DRAFT", SEARCH_OP_FLAGS, STORE_DRAFT, STORE_DRAFT},
    {"FLAGGED", SEARCH_OP_FLAGS, STORE_FLAGGED, STORE_FLAGGED},
    {"SEEN", SEARCH_OP_FLAGS, STORE_SEEN, STORE_SEEN},
    {"UNANSWERED", SEARCH_OP_FLAGS, STORE_ANSWERED, 0},
    {"UNDELETED", SEARCH_OP_FLAGS, STORE_DELETED, 0},
    {"UNDRAFT", SEARCH_OP_FLAGS, STORE_DRAFT, 0},
    {"UNFLAGGED", SEARCH_OP_FLAGS, STORE_FLAGGED, 0},
    {"UNSEEN", SEARCH_OP_FLAGS, STORE_SEEN, 0},
    {"RECENT", SEARCH_OP_RECENT, 0, 0},
};

/* The keys that compare a header field with a string. */
static const struct header_key {
	const char *name;
	const char *field;
} header_keys[] = {
    {"BCC", "Bcc"}, {"CC", "Cc"}, {"FROM", "From"}, {"SUBJECT", "Subject"}, {"TO", "To"},
};

/* The keys that compare a date. */
static const struct date_key {
	const char *name;
	enum search_op op;
} date_keys[] = {
    {"BEFORE", SEARCH_OP_BEFORE}, {"ON", SEARCH_OP_ON},
    {"SINCE", SEARCH_OP_SINCE},	  {"SENTBEFORE", SEARCH_OP_SENTBEFORE},
    {"SENTON", SEARCH_OP_SENTON}, {"SENTSINCE", SEARCH_OP_SENTSINCE},
};

static struct search_node *parse_key(struct parse_state *ps, struct arg_cursor *cur, size_t depth);
static struct search_node *parse_and(struct parse_state *ps, struct arg_cursor *cur, size_t depth);

/* Parses a key that is an atom: a named key or a sequence set. */
static struct search_node *parse_atom_key(struct parse_state *ps, struct arg_cursor *cur,
					  const struct parser_arg *a, size_t depth)
{
	const char *w = a->str;
	for (size_t i = 0; i < sizeof simple_keys / sizeof simple_keys[0]; i++) {
		const struct simple_key *k = &simple_keys[i];
		if (strcasecmp(w, k->name) == 0)
			return k->op == SEARCH_OP_FLAGS ? node_flags(ps, k->mask, k->want)
							: node_new(ps, k->op);
	}
	for (size_t i = 0; i < sizeof header_keys / sizeof header_keys[0]; i++) {
		if (strcasecmp(w, header_keys[i].name) == 0)
			return text_key(ps, cur, SEARCH_OP_HEADER, header_keys[i].field);
	}
	for (size_t i = 0; i < sizeof date_keys / sizeof date_keys[0]; i++) {
		if (strcasecmp(w, date_keys[i].name) == 0)
			return date_key(ps, cur, date_keys[i].op);
	}
	if (strcasecmp(w, "NEW") == 0) /* \Recent and not \Seen */
		return node_list(ps, SEARCH_OP_AND, node_new(ps, SEARCH_OP_RECENT),
				 node_flags(ps, STORE_SEEN, 0), true);
	if (strcasecmp(w, "OLD") == 0)
		return negate(ps, node_new(ps, SEARCH_OP_RECENT));
	if (strcasecmp(w, "HEADER") == 0)
		return text_key(ps, cur, SEARCH_OP_HEADER, NULL);
	if (strcasecmp(w, "BODY") == 0)
		return text_key(ps, cur, SEARCH_OP_BODY, NULL);
	if (strcasecmp(w, "TEXT") == 0)
		return text_key(ps, cur, SEARCH_OP_TEXT, NULL);
	if (strcasecmp(w, "KEYWORD") == 0 || strcasecmp(w, "UNKEYWORD") == 0)
		return keyword_key(ps, cur, w[0] == 'K' || w[0] == 'k');
	if (strcasecmp(w, "LARGER") == 0 || strcasecmp(w, "SMALLER") == 0) {
		uint64_t v;
		if (!next_number(ps, cur, UINT32_MAX, &v))
			return NULL;
		struct search_node *n =
		    node_new(ps, w[0] == 'L' || w[0] == 'l' ? SEARCH_OP_LARGER : SEARCH_OP_SMALLER);
		if (n != NULL)
			n->u.number = v;
		return n;
	}
	if (strcasecmp(w, "UID") == 0)
		return set_key(ps, next_arg(ps, cur), true);
	if (strcasecmp(w, "MODSEQ") == 0)
		return modseq_key(ps, cur);
	if (strcasecmp(w, "NOT") == 0)
		return negate(ps, parse_key(ps, cur, depth + 1));
	if (strcasecmp(w, "OR") == 0) {
		struct search_node *x = parse_key(ps, cur, depth + 1);
		struct search_node *y = x != NULL ? parse_key(ps, cur, depth + 1) : NULL;
		return node_list(ps, SEARCH_OP_OR, x, y, true);
	}
	if ((w[0] >= '0' && w[0] <= '9') || w[0] == '*')
		return set_key(ps, a, false);
	return fail(ps, IMAPQ_E_INVALID, "Unknown search key");
}

/* Parses one search key at the cursor. */
static struct search_node *parse_key(struct parse_state *ps, struct arg_cursor *cur, size_t depth)
{
	if (depth > IMAPQ_MAX_SEARCH_DEPTH)
		return fail(ps, IMAPQ_E_INVALID, "Search keys nested too deeply");
	if (cur->pos >= cur->count)
		return fail(ps, IMAPQ_E_INVALID, "Missing search key");
	const struct parser_arg *a = &cur->args[cur->pos++];
	if (a->type == PARSER_ARG_LIST) {
		if (a->count == 0)
			return fail(ps, IMAPQ_E_INVALID, "Empty search key group");
		struct arg_cursor inner = {a->list, a->count, 0};
		return parse_and(ps, &inner, depth + 1);
	}
	if (a->type != PARSER_ARG_ATOM)
		return fail(ps, IMAPQ_E_INVALID, "Expected a search key");
	return parse_atom_key(ps, cur, a, depth);
}

/* Parses every key left at the cursor as a conjunction, flattening nested groups; a single key
 * stands alone. */
static struct search_node *parse_and(struct parse_state *ps, struct arg_cursor *cur, size_t depth)
{
	struct search_node *and = node_new(ps, SEARCH_OP_AND);
	if (and == NULL)
		return NULL;
	while (cur->pos < cur->count) {
		struct search_node *kid = parse_key(ps, cur, depth);
		if (kid == NULL) {
			search_node_free(and);
			return NULL;
		}
		if (kid->op == SEARCH_OP_AND) {
			for (size_t i = 0; i < kid->u.list.n; i++) {
				if (!list_push(ps, and, kid->u.list.kids[i])) {
					for (size_t j = i + 1; j < kid->u.list.n; j++)
						search_node_free(kid->u.list.kids[j]);
					kid->u.list.n = 0;
					search_node_free(kid);
					search_node_free(and);
					return NULL;
				}
			}
			kid->u.list.n = 0;
			search_node_free(kid);
		} else if (!list_push(ps, and, kid)) {
			search_node_free(and);
			return NULL;
		}
	}
	if (and->u.list.n == 1) {
		struct search_node *only = and->u.list.kids[0];
		and->u.list.n = 0;
		search_node_free(and);
		return only;
	}
	return and;
}

imapq_err search_parse(const struct parser_arg *args, size_t count,
		       const struct search_resolver *resolver, struct search_program **prog_r,
		       const char **error_r)
{
	struct parse_state ps = {.resolver = resolver};
	struct arg_cursor cur = {args, count, 0};
	*prog_r = NULL;
	*error_r = NULL;
	if (count == 0) {
		*error_r = "Missing search keys";
		return IMAPQ_E_INVALID;
	}
	struct search_node *root = parse_and(&ps, &cur, 0);
	if (root == NULL) {
		*error_r = ps.error;
		return ps.err != IMAPQ_OK ? ps.err : IMAPQ_E_NOMEM;
	}
	struct search_program *prog = calloc(1, sizeof *prog);
	if (prog == NULL) {
		search_node_free(root);
		return IMAPQ_E_NOMEM;
	}
	prog->root = root;
	prog->has_modseq = ps.has_modseq;
	prog->needs_content = ps.needs_content;
	if (search_program_compile_plan(prog) != IMAPQ_OK) {
		search_program_free(&prog);
		return IMAPQ_E_NOMEM;
	}
	*prog_r = prog;
	return IMAPQ_OK;
}

void search_program_free(struct search_program **prog)
{
	if (prog == NULL || *prog == NULL)
		return;
	search_node_free((*prog)->root);
	free((*prog)->plan_ranges);
	free(*prog);
	*prog = NULL;
}

imapq_err search_parse_return(const struct parser_arg *list, unsigned *opts_r, const char **error_r)
{
	static const struct {
		const char *name;
		unsigned bit;
	} options[] = {{"MIN", SEARCH_RETURN_MIN},
		       {"MAX", SEARCH_RETURN_MAX},
		       {"ALL", SEARCH_RETURN_ALL},
		       {"COUNT", SEARCH_RETURN_COUNT}};
	*opts_r = 0;
	*error_r = NULL;
	if (list->type != PARSER_ARG_LIST) {
		*error_r = "RETURN needs a list of options";
		return IMAPQ_E_INVALID;
	}
	for (size_t i = 0; i < list->count; i++) {
		const struct parser_arg *a = &list->list[i];
		unsigned bit = 0;
		for (size_t k = 0; k < sizeof options / sizeof options[0] && bit == 0; k++) {
			if (parser_arg_is_atom(a, options[k].name))
				bit = options[k].bit;
		}
		if (bit == 0) {
			*error_r = "Unknown RETURN option";
			return IMAPQ_E_INVALID;
		}
		*opts_r |= bit;
	}
	if (*opts_r == 0)
		*opts_r = SEARCH_RETURN_ALL; /* RFC 4731 3.1: RETURN () means ALL */
	return IMAPQ_OK;
}

bool search_charset_supported(const char *name, size_t len)
{
	return (len == 8 && strncasecmp(name, "US-ASCII", 8) == 0) ||
	       (len == 5 && strncasecmp(name, "UTF-8", 5) == 0);
}
