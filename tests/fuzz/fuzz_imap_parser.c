/* libFuzzer target: the incremental IMAP command parser fed a command stream split at points the
 * input chooses, every argument read through the accessors the server uses, and the text
 * arguments run through sequence-set parsing, quoting and modified UTF-7 with round-trip checks.
 *
 * Input: byte 0 picks the limits and the literal sink; bytes 1-8 are chunk sizes (each 1-256
 * bytes, used in turn); byte 9 is the "*" value for sequence sets; the rest is the stream. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "imap/base/limits.h"
#include "imap/protocol/parser.h"
#include "imap/protocol/quote.h"
#include "imap/protocol/seqset.h"
#include "imap/protocol/utf7.h"
#include "tests/fuzz/fuzz.h"

/* Header bytes before the stream. */
#define HEAD_BYTES 10
/* Strings longer than this skip the costlier round trips (they add no new paths). */
#define ROUNDTRIP_MAX 512

/* What the literal sink saw, checked against the parser's contract. */
struct sink_state {
	bool refuse;	  /* begin() refuses every literal it is offered */
	bool streaming;	  /* a literal was taken and end() is owed */
	uint64_t size;	  /* its announced size */
	uint64_t got;	  /* bytes data() received for it */
	unsigned fail_at; /* data() fails on this call (0: never) */
	unsigned calls;
};

static imapq_err sink_begin(void *ctx, const struct parser_command *partial, uint64_t size,
			    bool *stream_r)
{
	struct sink_state *st = ctx;
	fuzz_check(!st->streaming);
	fuzz_check(partial->tag != NULL && partial->name != NULL);
	*stream_r = false;
	if (st->refuse)
		return IMAPQ_E_TOOBIG;
	if (size % 3 == 0)
		return IMAPQ_OK; /* let the parser buffer this one */
	st->streaming = true;
	st->size = size;
	st->got = 0;
	st->calls = 0;
	*stream_r = true;
	return IMAPQ_OK;
}

static imapq_err sink_data(void *ctx, const void *buf, size_t len)
{
	struct sink_state *st = ctx;
	fuzz_check(st->streaming);
	fuzz_check(len > 0 && buf != NULL);
	st->got += len;
	fuzz_check(st->got <= st->size);
	return ++st->calls == st->fail_at ? IMAPQ_E_IO : IMAPQ_OK;
}

static void sink_end(void *ctx, bool complete)
{
	struct sink_state *st = ctx;
	fuzz_check(st->streaming);
	fuzz_check(!complete || st->got == st->size);
	st->streaming = false;
}

/* Checks a parsed set: ascending, disjoint, non-adjacent ranges whose size adds up, and that
 * its text form parses back to the same ranges. */
static void check_seqset(const struct seqset *set, uint32_t max, unsigned flags)
{
	size_t n = seqset_range_count(set);
	const struct seqset_range *r = seqset_ranges(set);
	uint64_t size = 0;
	for (size_t i = 0; i < n; i++) {
		fuzz_check(r[i].lo >= 1 && r[i].lo <= r[i].hi);
		fuzz_check(i == 0 || (uint64_t)r[i - 1].hi + 1 < r[i].lo);
		fuzz_check(seqset_contains(set, r[i].lo) && seqset_contains(set, r[i].hi));
		fuzz_check(r[i].lo == 1 || !seqset_contains(set, r[i].lo - 1));
		size += (uint64_t)r[i].hi - r[i].lo + 1;
	}
	fuzz_check(seqset_size(set) == size);
	if (n == 0 || seqset_is_saved(set))
		return;
	size_t len = seqset_format(set, NULL, 0);
	char *text = malloc(len + 1);
	fuzz_check(text != NULL);
	fuzz_check(seqset_format(set, text, len + 1) == len && strlen(text) == len);
	struct seqset *again = NULL;
	fuzz_check(seqset_parse(text, len, max, flags & ~SEQSET_NO_STAR, &again) == IMAPQ_OK);
	fuzz_check(seqset_range_count(again) == n);
	fuzz_check(memcmp(seqset_ranges(again), r, n * sizeof *r) == 0);
	seqset_destroy(&again);
	free(text);
}

/* Feeds text to a fresh parser as the argument of a command and checks that it reads back as
 * the bytes s[0..len) (the quoting module writes what the parser must read). */
static void check_quote_roundtrip(const char *s, size_t len)
{
	enum quote_form form = quote_form_for(s, len, true);
	size_t need = quote_write(NULL, 0, s, len, form);
	char *line = malloc(need + 16);
	fuzz_check(line != NULL);
	memcpy(line, "t X ", 4);
	fuzz_check(quote_write(line + 4, need + 1, s, len, form) == need);
	memcpy(line + 4 + need, "\r\n", 2);
	size_t total = need + 6;

	struct parser_limits limits = parser_limits_default(true);
	struct parser *p = NULL;
	fuzz_check(parser_create(&limits, &p) == IMAPQ_OK);
	size_t off = 0, used;
	enum parser_result r;
	while ((r = parser_feed(p, line + off, total - off, &used)) == PARSER_CONTINUE)
		off += used;
	fuzz_check(r == PARSER_COMMAND);
	const struct parser_command *c = parser_command(p);
	fuzz_check(c->count == 1);
	const char *back;
	size_t back_len;
	fuzz_check(parser_arg_astring(&c->args[0], &back, &back_len));
	fuzz_check(back_len == len && memcmp(back, s, len) == 0);
	fuzz_check(form != QUOTE_ATOM || c->args[0].type == PARSER_ARG_ATOM);
	parser_destroy(&p);
	free(line);
}

/* Modified UTF-7 both ways: what decodes re-encodes to itself, and what encodes decodes back. */
static void check_utf7(const char *s, size_t len)
{
	char *dec = NULL, *enc = NULL;
	if (utf7_decode(s, len, &dec) == IMAPQ_OK) {
		fuzz_check(utf7_encode(dec, strlen(dec), &enc) == IMAPQ_OK);
		fuzz_check(strlen(enc) == len && memcmp(enc, s, len) == 0);
		free(enc);
		enc = NULL;
		free(dec);
		dec = NULL;
	} else {
		fuzz_check(dec == NULL);
	}
	if (utf7_encode(s, len, &enc) == IMAPQ_OK) {
		fuzz_check(utf7_decode(enc, strlen(enc), &dec) == IMAPQ_OK);
		fuzz_check(strlen(dec) == len && memcmp(dec, s, len) == 0);
		free(dec);
		free(enc);
	} else {
		fuzz_check(enc == NULL);
	}
}

/* Runs one text argument through everything that reads text. */
static void check_text(const struct parser_arg *a, uint32_t star)
{
	fuzz_check(a->str != NULL && a->str[a->len] == '\0' && strlen(a->str) == a->len);
	const char *s;
	size_t len;
	fuzz_check(parser_arg_astring(a, &s, &len) && s == a->str && len == a->len);
	bool nstring = parser_arg_nstring(a, &s, &len);
	fuzz_check(nstring == (a->type != PARSER_ARG_ATOM));
	fuzz_check(!nstring || (a->type == PARSER_ARG_NIL ? s == NULL : s == a->str));
	fuzz_check(a->type != PARSER_ARG_NIL || (a->len == 3 && strcasecmp(a->str, "NIL") == 0));

	static const uint64_t maxima[] = {0, 9, 10, 99, UINT32_MAX, UINT64_MAX};
	for (size_t i = 0; i < sizeof maxima / sizeof maxima[0]; i++) {
		uint64_t v;
		if (parser_arg_number(a, maxima[i], &v))
			fuzz_check(a->type == PARSER_ARG_ATOM && v <= maxima[i]);
	}

	static const unsigned flag_sets[] = {0, SEQSET_ALLOW_SAVED, SEQSET_NO_STAR};
	for (size_t i = 0; i < sizeof flag_sets / sizeof flag_sets[0]; i++) {
		struct seqset *set = NULL;
		imapq_err err = seqset_parse(a->str, a->len, star, flag_sets[i], &set);
		fuzz_check((err == IMAPQ_OK) == (set != NULL));
		if (set != NULL) {
			fuzz_check(!seqset_is_saved(set) || (flag_sets[i] & SEQSET_ALLOW_SAVED));
			check_seqset(set, star, flag_sets[i]);
			seqset_destroy(&set);
		}
	}
	if (a->len <= ROUNDTRIP_MAX) {
		check_quote_roundtrip(a->str, a->len);
		check_utf7(a->str, a->len);
	}
}

/* Walks an argument tree; returns the number of nodes in it. */
static size_t walk(const struct parser_arg *args, size_t count, size_t depth,
		   const struct parser_limits *limits, uint32_t star)
{
	size_t nodes = 0;
	fuzz_check(depth <= limits->max_depth);
	for (size_t i = 0; i < count; i++) {
		const struct parser_arg *a = &args[i];
		nodes++;
		switch (a->type) {
		case PARSER_ARG_LIST:
			fuzz_check(a->count == 0 || a->list != NULL);
			nodes += walk(a->list, a->count, depth + 1, limits, star);
			break;
		case PARSER_ARG_STREAM:
			fuzz_check(a->str == NULL);
			break;
		case PARSER_ARG_ATOM:
		case PARSER_ARG_NIL:
		case PARSER_ARG_QUOTED:
		case PARSER_ARG_LITERAL:
			check_text(a, star);
			break;
		default:
			fuzz_check(!"unknown argument type");
		}
	}
	return nodes;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = {data, size};
	uint8_t mode = fuzz_u8(&in);
	uint8_t chunks[8];
	for (size_t i = 0; i < sizeof chunks; i++)
		chunks[i] = fuzz_u8(&in);
	uint32_t star = fuzz_u8(&in);
	if (star == 0xff)
		star = UINT32_MAX;

	/* Small limits reach every limit path with short inputs; the server's are real. */
	struct parser_limits limits = parser_limits_default(mode & 1);
	if (mode & 2)
		limits = (struct parser_limits){.max_line = 64 + (mode >> 4) * 16,
						.max_literal = 32 + (mode >> 4) * 8,
						.max_depth = 1 + (mode >> 4) % 4,
						.max_args = 4 + (mode >> 4)};
	struct parser *p = NULL;
	fuzz_check(parser_create(&limits, &p) == IMAPQ_OK);
	struct sink_state st = {.refuse = (mode & 8) != 0, .fail_at = (mode >> 5) & 3};
	if (mode & 4) {
		struct parser_sink sink = {.threshold = (mode & 16) ? 0 : 8,
					   .begin = sink_begin,
					   .data = sink_data,
					   .end = sink_end,
					   .ctx = &st};
		parser_set_sink(p, &sink);
	}

	const uint8_t *stream = in.p;
	size_t left = in.left, k = 0, stalls = 0;
	while (left > 0) {
		size_t chunk = (size_t)chunks[k++ % sizeof chunks] + 1;
		if (chunk > left)
			chunk = left;
		size_t used = 0;
		enum parser_result r = parser_feed(p, stream, chunk, &used);
		fuzz_check(used <= chunk);
		fuzz_check(r != PARSER_NEED_MORE || used == chunk);
		if (r == PARSER_COMMAND) {
			const struct parser_command *c = parser_command(p);
			fuzz_check(c != NULL && parser_error(p) == NULL);
			fuzz_check(c->tag != NULL && c->tag[0] != '\0' && c->name != NULL);
			fuzz_check(walk(c->args, c->count, 0, &limits, star) <= limits.max_args);
			/* Logging in raises the limits between commands, as the server does. */
			if (strcasecmp(c->name, "LOGIN") == 0) {
				limits = parser_limits_default(true);
				parser_set_limits(p, &limits);
			}
		} else if (r == PARSER_ERROR) {
			const struct parser_error *e = parser_error(p);
			fuzz_check(e != NULL && parser_command(p) == NULL);
			fuzz_check(e->message != NULL && e->code != IMAPQ_OK);
			if (e->fatal) {
				size_t again = 1;
				fuzz_check(parser_feed(p, "x", 1, &again) == PARSER_ERROR);
				fuzz_check(again == 0);
				break;
			}
		} else if (r == PARSER_CONTINUE) {
			fuzz_check(parser_command(p) == NULL && parser_error(p) == NULL);
		}
		/* A command may end before the chunk does: feed the rest again. Two events in a
		 * row that use no byte would repeat forever. */
		stalls = used > 0 ? 0 : stalls + 1;
		fuzz_check(stalls < 2);
		stream += used;
		left -= used;
	}
	if (mode & 0x80)
		parser_reset(p);
	parser_destroy(&p);
	fuzz_check(p == NULL && !st.streaming);
	return 0;
}
