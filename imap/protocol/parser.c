/* Byte-at-a-time state machine for IMAP commands (RFC 3501 section 9, LITERAL+ of RFC 7888).
 * Arguments are recorded as a flat pre-order node list whose text lives in one growable buffer;
 * the public tree with contiguous list members is built only when a command completes. */
#include "imap/protocol/parser.h"

#include "imap/base/limits.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Marks a list whose ')' has not been read yet, and a node outside any list. */
#define NODE_OPEN SIZE_MAX
#define NODE_NONE SIZE_MAX
/* Buffers grown past these sizes are freed between commands so idle connections stay small. */
#define TEXT_KEEP_BYTES (16 * 1024)
#define NODES_KEEP	256

enum pstate {
	ST_TAG,		   /* reading the tag */
	ST_NAME_START,	   /* after the tag's space, before the command name */
	ST_NAME,	   /* reading the command name */
	ST_ARG,		   /* an argument, ')' or the end of line may follow */
	ST_SEP,		   /* just after an argument: space, ')' or end of line */
	ST_ATOM,	   /* inside an atom */
	ST_BRACKET,	   /* inside the [...] part of an atom */
	ST_BRACKET_QUOTED, /* inside a quoted string within [...] */
	ST_BRACKET_ESC,	   /* after a backslash in a quoted string within [...] */
	ST_QUOTED,	   /* inside a quoted string */
	ST_QUOTED_ESC,	   /* after a backslash in a quoted string */
	ST_LITHDR,	   /* inside {N} or {N+} and its line end */
	ST_LITDATA,	   /* copying a buffered literal's bytes */
	ST_LITSTREAM,	   /* passing a literal's bytes to the sink */
	ST_CR,		   /* after CR at the end of a line */
	ST_DRAIN,	   /* skipping the rest of a failed command's line */
	ST_DRAIN_LIT,	   /* skipping a literal of a failed command */
	ST_DEAD,	   /* a fatal error happened */
};

/* Progress through a literal header "{" digits ["+"] "}" [CR] LF. */
enum lit_stage { LIT_NONE, LIT_OPEN, LIT_DIGITS, LIT_PLUS, LIT_CLOSED, LIT_CR };

struct lit_hdr {
	uint64_t size;
	enum lit_stage stage;
	bool nonsync;
	bool overflow; /* the digits exceed 64 bits; size is saturated */
};

/* What handling one byte led to. */
enum step {
	STEP_NEXT,  /* the byte is used; go on with the next */
	STEP_AGAIN, /* the state changed; handle the same byte again */
	STEP_EVENT, /* the byte is used and p->last holds a result for the caller */
};

struct pnode {
	enum parser_arg_type type;
	size_t off;    /* text offset of the value */
	size_t len;    /* text length, or a streamed literal's size */
	size_t end;    /* LIST: index after its last descendant, NODE_OPEN while open */
	size_t parent; /* index of the enclosing list or NODE_NONE */
};

struct parser {
	struct parser_limits limits;
	struct parser_sink sink;
	bool has_sink;

	enum pstate state;
	enum parser_result last; /* result of the last parser_feed() */
	bool fresh;		 /* per-command state must be cleared before the next byte */

	char *text; /* tag, name and argument values, each NUL-terminated */
	size_t text_len, text_cap;
	size_t name_off, name_len;
	bool tag_done;

	struct pnode *nodes;
	size_t n_nodes, nodes_cap;
	size_t cur_list; /* innermost open list or NODE_NONE */
	size_t depth;

	struct parser_arg *tree; /* the built argument tree */
	size_t *order;		 /* node index of each tree slot, used while building */
	size_t tree_cap;

	size_t line_bytes;  /* command text read, literal data excluded */
	size_t lit_bytes;   /* literal bytes buffered by this command */
	struct lit_hdr lit; /* the literal header being read, also while draining */
	uint64_t lit_left;  /* bytes of the current literal still to come */
	bool streaming;	    /* the sink took the current literal and is owed end() */

	struct parser_error err;
	struct parser_command cmd;
};

struct parser_limits parser_limits_default(bool authenticated)
{
	struct parser_limits limits = {
	    .max_line = authenticated ? IMAPQ_MAX_LINE : IMAPQ_MAX_LINE_PREAUTH,
	    .max_literal = authenticated ? IMAPQ_MAX_LITERAL : IMAPQ_MAX_LITERAL_PREAUTH,
	    .max_depth = IMAPQ_MAX_NESTING,
	    .max_args = IMAPQ_MAX_ARGS,
	};
	return limits;
}

/* ATOM-CHAR plus the characters commands use in atom positions: list wildcards, '\' of flags,
 * ']' of astrings and '[' of sections. */
static bool is_atom_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f && c != '(' && c != ')' && c != '{' && c != '"';
}

/* Tag characters: ASTRING-CHAR except '+' (RFC 3501 "tag"). */
static bool is_tag_char(unsigned char c)
{
	return is_atom_char(c) && c != '+' && c != '%' && c != '*' && c != '\\';
}

/* Command name characters: a plain atom. */
static bool is_name_char(unsigned char c)
{
	return is_tag_char(c) && c != '[' && c != ']';
}

/* Clears the per-command state so the next byte starts a command. */
static void command_start(struct parser *p)
{
	if (p->text_cap > TEXT_KEEP_BYTES) {
		free(p->text);
		p->text = NULL;
		p->text_cap = 0;
	}
	if (p->nodes_cap > NODES_KEEP) {
		free(p->nodes);
		free(p->tree);
		free(p->order);
		p->nodes = NULL;
		p->tree = NULL;
		p->order = NULL;
		p->nodes_cap = 0;
		p->tree_cap = 0;
	}
	p->state = ST_TAG;
	p->fresh = false;
	p->text_len = 0;
	p->name_off = 0;
	p->name_len = 0;
	p->tag_done = false;
	p->n_nodes = 0;
	p->cur_list = NODE_NONE;
	p->depth = 0;
	p->line_bytes = 0;
	p->lit_bytes = 0;
	p->lit.stage = LIT_NONE;
	p->lit_left = 0;
	memset(&p->err, 0, sizeof(p->err));
}

imapq_err parser_create(const struct parser_limits *limits, struct parser **parser_r)
{
	struct parser *p = calloc(1, sizeof(*p));

	*parser_r = NULL;
	if (p == NULL)
		return IMAPQ_E_NOMEM;
	p->limits = *limits;
	p->last = PARSER_NEED_MORE;
	command_start(p);
	*parser_r = p;
	return IMAPQ_OK;
}

/* Tells the sink that the literal it took will not be completed. */
static void abandon_stream(struct parser *p)
{
	if (p->streaming) {
		p->streaming = false;
		p->sink.end(p->sink.ctx, false);
	}
}

void parser_destroy(struct parser **parser)
{
	struct parser *p = *parser;

	if (p == NULL)
		return;
	abandon_stream(p);
	free(p->text);
	free(p->nodes);
	free(p->tree);
	free(p->order);
	free(p);
	*parser = NULL;
}

void parser_set_limits(struct parser *parser, const struct parser_limits *limits)
{
	parser->limits = *limits;
}

void parser_set_sink(struct parser *parser, const struct parser_sink *sink)
{
	parser->has_sink = sink != NULL;
	if (sink != NULL)
		parser->sink = *sink;
}

void parser_reset(struct parser *parser)
{
	abandon_stream(parser);
	if (parser->state != ST_DEAD) {
		command_start(parser);
		parser->last = PARSER_NEED_MORE;
	}
}

const struct parser_command *parser_command(const struct parser *parser)
{
	return parser->last == PARSER_COMMAND ? &parser->cmd : NULL;
}

const struct parser_error *parser_error(const struct parser *parser)
{
	return parser->last == PARSER_ERROR ? &parser->err : NULL;
}

/* Makes room for extra more bytes of text; false when memory ran out. */
static bool text_reserve(struct parser *p, size_t extra)
{
	size_t cap = p->text_cap ? p->text_cap : 256;
	char *text;

	if (extra <= p->text_cap - p->text_len)
		return true;
	if (extra > SIZE_MAX / 2 - p->text_len)
		return false;
	while (cap - p->text_len < extra)
		cap *= 2;
	text = realloc(p->text, cap);
	if (text == NULL)
		return false;
	p->text = text;
	p->text_cap = cap;
	return true;
}

/* Appends one byte of text; false when memory ran out. */
static bool text_push(struct parser *p, char c)
{
	if (p->text_len == p->text_cap && !text_reserve(p, 1))
		return false;
	p->text[p->text_len++] = c;
	return true;
}

/* Records the first error of a command. */
static void set_error(struct parser *p, imapq_err code, const char *message)
{
	p->err.code = code;
	p->err.message = message;
	p->err.tag = p->tag_done ? p->text : NULL;
	p->err.fatal = false;
}

/* Fails the command and skips the rest of its line; the byte is handled again while skipping. */
static enum step fail(struct parser *p, imapq_err code, const char *message)
{
	set_error(p, code, message);
	abandon_stream(p);
	if (p->state != ST_LITHDR)
		p->lit.stage = LIT_NONE;
	p->state = ST_DRAIN;
	return STEP_AGAIN;
}

/* Fails the command for an allocation failure or a count limit. */
static enum step fail_err(struct parser *p, imapq_err err)
{
	return fail(p, err, err == IMAPQ_E_LIMIT ? "Too many arguments" : "Out of memory");
}

/* Fails the command for a byte that may not appear where it did. */
static enum step fail_char(struct parser *p, unsigned char c, const char *message)
{
	if (c == 0)
		return fail(p, IMAPQ_E_INVALID, "NUL byte in command");
	if (c >= 0x80)
		return fail(p, IMAPQ_E_INVALID, "8-bit character in command");
	return fail(p, IMAPQ_E_INVALID, message);
}

/* Hands the recorded error to the caller now; the connection closes when fatal. */
static enum step report_error(struct parser *p, bool fatal)
{
	p->err.fatal = fatal;
	p->last = PARSER_ERROR;
	if (fatal) {
		abandon_stream(p);
		p->state = ST_DEAD;
	} else {
		p->fresh = true;
	}
	return STEP_EVENT;
}

/* Records and reports an error found at the end of a line. */
static enum step report(struct parser *p, imapq_err code, const char *message)
{
	set_error(p, code, message);
	return report_error(p, false);
}

/* Appends a node of the given type as the next argument. */
static imapq_err add_node(struct parser *p, enum parser_arg_type type)
{
	struct pnode *n;

	if (p->n_nodes >= p->limits.max_args)
		return IMAPQ_E_LIMIT;
	if (p->n_nodes == p->nodes_cap) {
		size_t cap = p->nodes_cap ? p->nodes_cap * 2 : 16;
		struct pnode *nodes = realloc(p->nodes, cap * sizeof(*nodes));

		if (nodes == NULL)
			return IMAPQ_E_NOMEM;
		p->nodes = nodes;
		p->nodes_cap = cap;
	}
	n = &p->nodes[p->n_nodes++];
	n->type = type;
	n->off = p->text_len;
	n->len = 0;
	n->end = NODE_OPEN;
	n->parent = p->cur_list;
	return IMAPQ_OK;
}

/* Ends the text of the last node with a NUL; false when memory ran out. */
static bool finish_text(struct parser *p)
{
	struct pnode *n = &p->nodes[p->n_nodes - 1];

	n->len = p->text_len - n->off;
	return text_push(p, '\0');
}

/* Index of the node after node i and its descendants, for lists open up to node n. */
static size_t node_next(const struct parser *p, size_t i, size_t n)
{
	const struct pnode *node = &p->nodes[i];

	if (node->type != PARSER_ARG_LIST)
		return i + 1;
	return node->end == NODE_OPEN || node->end > n ? n : node->end;
}

/* Builds the argument tree of nodes [0, n) into p->cmd, members of each list side by side. */
static imapq_err build_tree(struct parser *p, size_t n)
{
	size_t w = 0;

	if (n > p->tree_cap) {
		struct parser_arg *tree = realloc(p->tree, n * sizeof(*tree));
		size_t *order;

		if (tree == NULL)
			return IMAPQ_E_NOMEM;
		p->tree = tree;
		order = realloc(p->order, n * sizeof(*order));
		if (order == NULL)
			return IMAPQ_E_NOMEM;
		p->order = order;
		p->tree_cap = n;
	}
	for (size_t i = 0; i < n; i = node_next(p, i, n))
		p->order[w++] = i;
	p->cmd.args = p->tree;
	p->cmd.count = w;
	for (size_t k = 0; k < w; k++) {
		const struct pnode *node = &p->nodes[p->order[k]];
		struct parser_arg *arg = &p->tree[k];

		arg->type = node->type;
		arg->str = NULL;
		arg->len = node->len;
		arg->list = NULL;
		arg->count = 0;
		if (node->type == PARSER_ARG_LIST) {
			size_t first = w;
			size_t end = node_next(p, p->order[k], n);

			for (size_t i = p->order[k] + 1; i < end; i = node_next(p, i, n))
				p->order[w++] = i;
			arg->list = p->tree + first;
			arg->count = w - first;
			arg->len = 0;
		} else if (node->type != PARSER_ARG_STREAM) {
			arg->str = p->text + node->off;
		}
	}
	p->cmd.tag = p->text;
	p->cmd.name = p->text + p->name_off;
	return IMAPQ_OK;
}

/* Completes the command at the end of its last line. */
static enum step end_of_line(struct parser *p)
{
	if (!p->tag_done)
		return report(p, IMAPQ_E_INVALID, "Empty command line");
	if (p->name_len == 0)
		return report(p, IMAPQ_E_INVALID, "Missing command");
	if (p->depth > 0)
		return report(p, IMAPQ_E_INVALID, "Missing ')'");
	if (build_tree(p, p->n_nodes) != IMAPQ_OK)
		return report(p, IMAPQ_E_NOMEM, "Out of memory");
	p->last = PARSER_COMMAND;
	p->fresh = true;
	return STEP_EVENT;
}

/* Advances a literal header by one byte other than '{' and LF; false when it does not fit. */
static bool lit_step(struct lit_hdr *l, unsigned char c)
{
	switch (l->stage) {
	case LIT_OPEN:
	case LIT_DIGITS:
		if (c >= '0' && c <= '9') {
			unsigned d = c - '0';

			if (l->overflow || l->size > (UINT64_MAX - d) / 10) {
				l->overflow = true;
				l->size = UINT64_MAX;
			} else {
				l->size = l->size * 10 + d;
			}
			l->stage = LIT_DIGITS;
			return true;
		}
		if (l->stage == LIT_DIGITS && c == '+') {
			l->nonsync = true;
			l->stage = LIT_PLUS;
			return true;
		}
		if (l->stage == LIT_DIGITS && c == '}') {
			l->stage = LIT_CLOSED;
			return true;
		}
		break;
	case LIT_PLUS:
		if (c == '}') {
			l->stage = LIT_CLOSED;
			return true;
		}
		break;
	case LIT_CLOSED:
		if (c == '\r') {
			l->stage = LIT_CR;
			return true;
		}
		break;
	default:
		break;
	}
	l->stage = LIT_NONE;
	return false;
}

/* Starts reading a literal header at its '{'. */
static void lit_open(struct lit_hdr *l)
{
	l->size = 0;
	l->stage = LIT_OPEN;
	l->nonsync = false;
	l->overflow = false;
}

/* True when the literal size is beyond what is skipped to stay in sync. */
static bool lit_undrainable(const struct lit_hdr *l)
{
	return l->overflow || l->size > IMAPQ_MAX_LITERAL_DRAIN;
}

/* Refuses a literal whose header was just read; a non-synchronising one is skipped first. */
static enum step refuse_literal(struct parser *p, imapq_err code, const char *message)
{
	set_error(p, code, message);
	if (!p->lit.nonsync)
		return report_error(p, false);
	if (lit_undrainable(&p->lit))
		return report_error(p, true);
	p->lit_left = p->lit.size;
	p->lit.stage = LIT_NONE;
	p->state = p->lit_left ? ST_DRAIN_LIT : ST_DRAIN;
	return STEP_NEXT;
}

/* Asks for a continuation when the accepted literal is synchronising. */
static enum step literal_accepted(struct parser *p)
{
	bool nonsync = p->lit.nonsync;

	p->lit.stage = LIT_NONE;
	if (nonsync)
		return STEP_NEXT;
	p->last = PARSER_CONTINUE;
	return STEP_EVENT;
}

/* Decides on a literal after its header's LF: stream it, buffer it or refuse it. */
static enum step literal_begin(struct parser *p)
{
	uint64_t size = p->lit.size;
	imapq_err err = add_node(p, PARSER_ARG_LITERAL);

	if (err != IMAPQ_OK)
		return refuse_literal(
		    p, err, err == IMAPQ_E_LIMIT ? "Too many arguments" : "Out of memory");
	if (p->has_sink && !p->lit.overflow && size > p->sink.threshold && size < SIZE_MAX) {
		bool stream = false;

		err = build_tree(p, p->n_nodes - 1);
		if (err == IMAPQ_OK)
			err = p->sink.begin(p->sink.ctx, &p->cmd, size, &stream);
		if (err != IMAPQ_OK)
			return refuse_literal(p, err, imapq_err_message(err));
		if (stream) {
			p->nodes[p->n_nodes - 1].type = PARSER_ARG_STREAM;
			p->nodes[p->n_nodes - 1].len = (size_t)size;
			p->streaming = true;
			p->lit_left = size;
			p->state = ST_LITSTREAM;
			return literal_accepted(p);
		}
	}
	if (p->lit.overflow || size > p->limits.max_literal - p->lit_bytes)
		return refuse_literal(p, IMAPQ_E_TOOBIG, "Literal too large");
	if (!text_reserve(p, (size_t)size + 1))
		return refuse_literal(p, IMAPQ_E_NOMEM, "Out of memory");
	p->lit_bytes += (size_t)size;
	p->lit_left = size;
	if (size == 0) {
		finish_text(p);
		p->state = ST_SEP;
	} else {
		p->state = ST_LITDATA;
	}
	return literal_accepted(p);
}

/* Skipping a failed line: watch for a non-synchronising literal whose bytes must be skipped too,
 * and report the error at the line's end. */
static enum step step_drain(struct parser *p, unsigned char c)
{
	if (c == '{') {
		lit_open(&p->lit);
		return STEP_NEXT;
	}
	if (c != '\n') {
		lit_step(&p->lit, c);
		return STEP_NEXT;
	}
	if ((p->lit.stage == LIT_CLOSED || p->lit.stage == LIT_CR) && p->lit.nonsync) {
		if (lit_undrainable(&p->lit))
			return report_error(p, true);
		p->lit_left = p->lit.size;
		p->lit.stage = LIT_NONE;
		if (p->lit_left > 0)
			p->state = ST_DRAIN_LIT;
		return STEP_NEXT;
	}
	return report_error(p, false);
}

/* Closes the innermost list at ')'. */
static enum step close_list(struct parser *p)
{
	if (p->depth == 0)
		return fail(p, IMAPQ_E_INVALID, "Unexpected ')'");
	p->nodes[p->cur_list].end = p->n_nodes;
	p->cur_list = p->nodes[p->cur_list].parent;
	p->depth--;
	p->state = ST_SEP;
	return STEP_NEXT;
}

/* Starts the argument that begins with byte c. */
static enum step step_arg(struct parser *p, unsigned char c)
{
	imapq_err err;

	switch (c) {
	case ' ':
		return STEP_NEXT;
	case '\r':
		p->state = ST_CR;
		return STEP_NEXT;
	case '\n':
		return end_of_line(p);
	case ')':
		return close_list(p);
	case '(':
		if (p->depth >= p->limits.max_depth)
			return fail(p, IMAPQ_E_LIMIT, "Too deeply nested");
		err = add_node(p, PARSER_ARG_LIST);
		if (err != IMAPQ_OK)
			return fail_err(p, err);
		p->cur_list = p->n_nodes - 1;
		p->depth++;
		return STEP_NEXT;
	case '"':
		err = add_node(p, PARSER_ARG_QUOTED);
		if (err != IMAPQ_OK)
			return fail_err(p, err);
		p->state = ST_QUOTED;
		return STEP_NEXT;
	case '{':
		lit_open(&p->lit);
		p->state = ST_LITHDR;
		return STEP_NEXT;
	default:
		if (!is_atom_char(c))
			return fail_char(p, c, "Invalid character in atom");
		err = add_node(p, PARSER_ARG_ATOM);
		if (err != IMAPQ_OK)
			return fail_err(p, err);
		p->state = ST_ATOM;
		return STEP_AGAIN;
	}
}

/* Ends an atom, telling NIL apart. */
static enum step finish_atom(struct parser *p)
{
	struct pnode *n = &p->nodes[p->n_nodes - 1];

	if (!finish_text(p))
		return fail_err(p, IMAPQ_E_NOMEM);
	if (n->len == 3 && strncasecmp(p->text + n->off, "NIL", 3) == 0)
		n->type = PARSER_ARG_NIL;
	p->state = ST_SEP;
	return STEP_AGAIN;
}

/* Reads the tag, which must be followed by a space. */
static enum step step_tag(struct parser *p, unsigned char c)
{
	if (is_tag_char(c)) {
		if (!text_push(p, (char)c))
			return fail_err(p, IMAPQ_E_NOMEM);
		return STEP_NEXT;
	}
	if (p->text_len > 0 && (c == ' ' || c == '\r' || c == '\n')) {
		if (!text_push(p, '\0'))
			return fail_err(p, IMAPQ_E_NOMEM);
		p->tag_done = true;
		p->state = ST_NAME_START;
		return c == ' ' ? STEP_NEXT : STEP_AGAIN;
	}
	if (p->text_len == 0 && c == '\r') {
		p->state = ST_CR;
		return STEP_NEXT;
	}
	if (p->text_len == 0 && c == '\n')
		return end_of_line(p);
	return fail_char(p, c, p->text_len == 0 ? "Missing tag" : "Invalid character in tag");
}

/* Reads the command name. */
static enum step step_name(struct parser *p, unsigned char c)
{
	if (is_name_char(c)) {
		if (p->state == ST_NAME_START) {
			p->name_off = p->text_len;
			p->state = ST_NAME;
		}
		if (!text_push(p, (char)c))
			return fail_err(p, IMAPQ_E_NOMEM);
		return STEP_NEXT;
	}
	if (p->state == ST_NAME && (c == ' ' || c == '\r' || c == '\n')) {
		p->name_len = p->text_len - p->name_off;
		if (!text_push(p, '\0'))
			return fail_err(p, IMAPQ_E_NOMEM);
		p->state = ST_ARG;
		return c == ' ' ? STEP_NEXT : STEP_AGAIN;
	}
	if (c == ' ')
		return STEP_NEXT;
	if (c == '\r') {
		p->state = ST_CR;
		return STEP_NEXT;
	}
	if (c == '\n')
		return end_of_line(p);
	return fail_char(p, c, "Invalid character in command name");
}

/* Reads a quoted string (in an argument or inside a section); escapes are kept in sections. */
static enum step step_quoted(struct parser *p, unsigned char c)
{
	bool section = p->state == ST_BRACKET_QUOTED || p->state == ST_BRACKET_ESC;
	bool escaped = p->state == ST_QUOTED_ESC || p->state == ST_BRACKET_ESC;
	enum pstate plain = section ? ST_BRACKET_QUOTED : ST_QUOTED;

	if (c == '\r' || c == '\n')
		return fail(p, IMAPQ_E_INVALID, "Unterminated quoted string");
	if (c == 0)
		return fail(p, IMAPQ_E_INVALID, "NUL byte in command");
	if (c >= 0x80)
		return fail(p, IMAPQ_E_INVALID, "8-bit character in quoted string");
	if (escaped) {
		if (c != '"' && c != '\\')
			return fail(p, IMAPQ_E_INVALID, "Invalid escape in quoted string");
		p->state = plain;
	} else if (c == '\\') {
		p->state = section ? ST_BRACKET_ESC : ST_QUOTED_ESC;
		if (!section)
			return STEP_NEXT;
	} else if (c == '"') {
		if (!section) {
			if (!finish_text(p))
				return fail_err(p, IMAPQ_E_NOMEM);
			p->state = ST_SEP;
			return STEP_NEXT;
		}
		p->state = ST_BRACKET;
	}
	if (!text_push(p, (char)c))
		return fail_err(p, IMAPQ_E_NOMEM);
	return STEP_NEXT;
}

/* Reads an atom, including a [...] section that may hold spaces, lists and quoted strings. */
static enum step step_atom(struct parser *p, unsigned char c)
{
	if (p->state == ST_ATOM) {
		if (c == ' ' || c == ')' || c == '\r' || c == '\n')
			return finish_atom(p);
		if (!is_atom_char(c))
			return fail_char(p, c, "Invalid character in atom");
		if (c == '[')
			p->state = ST_BRACKET;
	} else {
		if (c == '\r' || c == '\n')
			return fail(p, IMAPQ_E_INVALID, "Missing ']'");
		if (c < 0x20 || c >= 0x7f)
			return fail_char(p, c, "Invalid character in section");
		if (c == ']')
			p->state = ST_ATOM;
		else if (c == '"')
			p->state = ST_BRACKET_QUOTED;
	}
	if (!text_push(p, (char)c))
		return fail_err(p, IMAPQ_E_NOMEM);
	return STEP_NEXT;
}

/* Reads a literal header up to its LF. */
static enum step step_lithdr(struct parser *p, unsigned char c)
{
	if (c == '\n') {
		if (p->lit.stage == LIT_CLOSED || p->lit.stage == LIT_CR)
			return literal_begin(p);
		return fail(p, IMAPQ_E_INVALID, "Invalid literal");
	}
	if (!lit_step(&p->lit, c))
		return fail_char(p, c, "Invalid literal");
	return STEP_NEXT;
}

/* Handles one byte of command text in the current state. */
static enum step step(struct parser *p, unsigned char c)
{
	switch (p->state) {
	case ST_TAG:
		return step_tag(p, c);
	case ST_NAME_START:
	case ST_NAME:
		return step_name(p, c);
	case ST_ARG:
		return step_arg(p, c);
	case ST_SEP:
		if (c == ' ') {
			p->state = ST_ARG;
			return STEP_NEXT;
		}
		if (c == ')')
			return close_list(p);
		if (c == '\r') {
			p->state = ST_CR;
			return STEP_NEXT;
		}
		if (c == '\n')
			return end_of_line(p);
		return fail_char(p, c, "Missing space between arguments");
	case ST_ATOM:
	case ST_BRACKET:
		return step_atom(p, c);
	case ST_QUOTED:
	case ST_QUOTED_ESC:
	case ST_BRACKET_QUOTED:
	case ST_BRACKET_ESC:
		return step_quoted(p, c);
	case ST_LITHDR:
		return step_lithdr(p, c);
	case ST_CR:
		if (c == '\n')
			return end_of_line(p);
		return fail(p, IMAPQ_E_INVALID, "CR not followed by LF");
	case ST_DRAIN:
		return step_drain(p, c);
	default:
		return STEP_NEXT;
	}
}

/* Moves literal bytes (buffered, streamed or skipped) in one go; returns the bytes used. */
static size_t step_literal(struct parser *p, const unsigned char *s, size_t avail)
{
	size_t chunk = p->lit_left < avail ? (size_t)p->lit_left : avail;

	if (p->state == ST_LITDATA) {
		if (memchr(s, 0, chunk) != NULL) {
			set_error(p, IMAPQ_E_INVALID, "NUL byte in literal");
			p->state = ST_DRAIN_LIT;
			return 0;
		}
		memcpy(p->text + p->text_len, s, chunk);
		p->text_len += chunk;
	} else if (p->state == ST_LITSTREAM) {
		imapq_err err = p->sink.data(p->sink.ctx, s, chunk);

		if (err != IMAPQ_OK) {
			set_error(p, err, imapq_err_message(err));
			abandon_stream(p);
			p->state = ST_DRAIN_LIT;
		}
	}
	p->lit_left -= chunk;
	if (p->lit_left > 0)
		return chunk;
	if (p->state == ST_DRAIN_LIT) {
		p->state = ST_DRAIN;
	} else {
		if (p->state == ST_LITDATA)
			finish_text(p);
		if (p->streaming) {
			p->streaming = false;
			p->sink.end(p->sink.ctx, true);
		}
		p->state = ST_SEP;
	}
	return chunk;
}

/* True in the states whose bytes count against the line limit. */
static bool counts_line(enum pstate state)
{
	return state != ST_LITDATA && state != ST_LITSTREAM && state != ST_DRAIN &&
	       state != ST_DRAIN_LIT && state != ST_DEAD;
}

enum parser_result parser_feed(struct parser *parser, const void *data, size_t len,
			       size_t *consumed_r)
{
	struct parser *p = parser;
	const unsigned char *s = data;
	size_t i = 0;

	if (p->state == ST_DEAD) {
		*consumed_r = 0;
		p->last = PARSER_ERROR;
		return PARSER_ERROR;
	}
	if (p->fresh)
		command_start(p);
	p->last = PARSER_NEED_MORE;
	while (i < len) {
		enum step st;

		if (p->state == ST_LITDATA || p->state == ST_LITSTREAM ||
		    p->state == ST_DRAIN_LIT) {
			i += step_literal(p, s + i, len - i);
			continue;
		}
		if (counts_line(p->state) && ++p->line_bytes > p->limits.max_line)
			st = fail(p, IMAPQ_E_TOOBIG, "Line too long");
		else
			st = step(p, s[i]);
		while (st == STEP_AGAIN)
			st = step(p, s[i]);
		i++;
		if (st == STEP_EVENT)
			break;
	}
	*consumed_r = i;
	return p->last;
}

bool parser_arg_is_atom(const struct parser_arg *arg, const char *word)
{
	return arg->type == PARSER_ARG_ATOM && strcasecmp(arg->str, word) == 0;
}

bool parser_arg_astring(const struct parser_arg *arg, const char **str_r, size_t *len_r)
{
	switch (arg->type) {
	case PARSER_ARG_ATOM:
	case PARSER_ARG_NIL:
	case PARSER_ARG_QUOTED:
	case PARSER_ARG_LITERAL:
		*str_r = arg->str;
		*len_r = arg->len;
		return true;
	default:
		return false;
	}
}

bool parser_arg_nstring(const struct parser_arg *arg, const char **str_r, size_t *len_r)
{
	switch (arg->type) {
	case PARSER_ARG_NIL:
		*str_r = NULL;
		*len_r = 0;
		return true;
	case PARSER_ARG_QUOTED:
	case PARSER_ARG_LITERAL:
		*str_r = arg->str;
		*len_r = arg->len;
		return true;
	default:
		return false;
	}
}

bool parser_arg_number(const struct parser_arg *arg, uint64_t max, uint64_t *value_r)
{
	if (arg->type != PARSER_ARG_ATOM || arg->len == 0 || arg->len > 20)
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < arg->len; i++) {
		char ch = arg->str[i];
		if (ch < '0' || ch > '9')
			return false;
		uint64_t d = (uint64_t)(ch - '0');
		/* max - d must not wrap: a digit above a small max is already too large. */
		if (d > max || v > (max - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*value_r = v;
	return true;
}
