/* Tests of the incremental IMAP command parser: every input is fed whole, one byte at a time and
 * in random splits, and the transcript of results must be the same each way. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "imap/base/limits.h"
#include "imap/protocol/parser.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A growable string for transcripts. */
struct sbuf {
	char *s;
	size_t len;
	size_t cap;
};

/* Appends n bytes, keeping the text NUL-terminated. */
static void sb_put(struct sbuf *b, const char *bytes, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;

		while (cap < b->len + n + 1)
			cap *= 2;
		b->s = realloc(b->s, cap);
		assert_non_null(b->s);
		b->cap = cap;
	}
	memcpy(b->s + b->len, bytes, n);
	b->len += n;
	b->s[b->len] = '\0';
}

/* Appends formatted text. */
static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	assert_true(n >= 0 && (size_t)n < sizeof(tmp));
	sb_put(b, tmp, (size_t)n);
}

/* Appends bytes with anything unprintable shown as \xHH. */
static void sb_escaped(struct sbuf *b, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= 0x20 && c < 0x7f)
			sb_put(b, s + i, 1);
		else
			sb_printf(b, "\\x%02x", c);
	}
}

/* What a run records: the transcript and the sink's view. */
struct rec {
	struct sbuf out;
	struct sbuf lit;      /* bytes of the literal being streamed */
	size_t chunks;	      /* data() calls */
	uint64_t refuse_over; /* begin() refuses larger literals with IMAPQ_E_TOOBIG; 0 never */
	size_t fail_at;	      /* data() fails once this many bytes were given; 0 never */
	size_t given;
	int open_streams; /* begin() acceptances minus end() calls */
	int ends_incomplete;
};

/* Appends arguments as A<atom> N<nil> Q<quoted> L<literal> S<size> (list). */
static void describe_args(struct sbuf *b, const struct parser_arg *args, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		const struct parser_arg *a = &args[i];

		if (i > 0)
			sb_put(b, " ", 1);
		switch (a->type) {
		case PARSER_ARG_ATOM:
			sb_put(b, "A<", 2);
			break;
		case PARSER_ARG_NIL:
			sb_put(b, "N<", 2);
			break;
		case PARSER_ARG_QUOTED:
			sb_put(b, "Q<", 2);
			break;
		case PARSER_ARG_LITERAL:
			sb_put(b, "L<", 2);
			break;
		case PARSER_ARG_STREAM:
			sb_printf(b, "S<%zu>", a->len);
			continue;
		case PARSER_ARG_LIST:
			sb_put(b, "(", 1);
			describe_args(b, a->list, a->count);
			sb_put(b, ")", 1);
			continue;
		}
		assert_int_equal(strlen(a->str), a->len);
		sb_escaped(b, a->str, a->len);
		sb_put(b, ">", 1);
	}
}

/* Streams the literals of APPEND (unless too large), declines all others. */
static imapq_err sink_begin(void *ctx, const struct parser_command *partial, uint64_t size,
			    bool *stream_r)
{
	struct rec *r = ctx;

	sb_printf(&r->out, "B<%s %s %zu %llu>\n", partial->tag, partial->name, partial->count,
		  (unsigned long long)size);
	if (strcasecmp(partial->name, "APPEND") != 0)
		return IMAPQ_OK;
	if (r->refuse_over && size > r->refuse_over)
		return IMAPQ_E_TOOBIG;
	*stream_r = true;
	r->open_streams++;
	r->lit.len = 0;
	r->given = 0;
	return IMAPQ_OK;
}

/* Collects streamed bytes, failing on request once fail_at bytes were given. */
static imapq_err sink_data(void *ctx, const void *buf, size_t len)
{
	struct rec *r = ctx;

	assert_true(len > 0);
	assert_int_equal(r->open_streams, 1);
	r->chunks++;
	r->given += len;
	if (r->fail_at && r->given >= r->fail_at)
		return IMAPQ_E_IO;
	sb_put(&r->lit, buf, len);
	return IMAPQ_OK;
}

/* Records the end of a streamed literal and how many bytes it delivered. */
static void sink_end(void *ctx, bool complete)
{
	struct rec *r = ctx;

	r->open_streams--;
	assert_int_equal(r->open_streams, 0);
	if (!complete)
		r->ends_incomplete++;
	if (complete)
		sb_printf(&r->out, "END<1 %zu>\n", r->lit.len);
	else
		sb_put(&r->out, "END<0>\n", 7);
}

/* Records one parser result; false once the parser is dead. */
static bool record(struct parser *p, enum parser_result res, size_t offset, struct rec *r)
{
	const struct parser_command *cmd = parser_command(p);
	const struct parser_error *err = parser_error(p);

	switch (res) {
	case PARSER_NEED_MORE:
		assert_null(cmd);
		assert_null(err);
		return true;
	case PARSER_CONTINUE:
		sb_printf(&r->out, "+@%zu\n", offset);
		return true;
	case PARSER_COMMAND:
		assert_non_null(cmd);
		assert_null(err);
		sb_printf(&r->out, "C[%s %s", cmd->tag, cmd->name);
		if (cmd->count > 0)
			sb_put(&r->out, " ", 1);
		describe_args(&r->out, cmd->args, cmd->count);
		sb_put(&r->out, "]\n", 2);
		return true;
	case PARSER_ERROR:
		assert_non_null(err);
		assert_null(cmd);
		assert_non_null(err->message);
		sb_printf(&r->out, "E[%s %s %s%s]\n", err->tag ? err->tag : "-",
			  imapq_err_name(err->code), err->message, err->fatal ? " FATAL" : "");
		return !err->fatal;
	}
	fail();
	return false;
}

/* How run() cuts its input. */
enum split { SPLIT_WHOLE, SPLIT_BYTES, SPLIT_RANDOM };

/* Feeds input to a fresh parser cut as asked and returns the transcript (caller frees). */
static char *run_with(const char *input, size_t len, const struct parser_limits *limits,
		      const struct parser_sink *sink_opts, enum split split, unsigned seed,
		      struct rec *r)
{
	struct parser *p;
	size_t pos = 0;
	bool alive = true;

	assert_int_equal(parser_create(limits, &p), IMAPQ_OK);
	if (sink_opts != NULL) {
		struct parser_sink sink = *sink_opts;

		sink.begin = sink_begin;
		sink.data = sink_data;
		sink.end = sink_end;
		sink.ctx = r;
		parser_set_sink(p, &sink);
	}
	srand(seed);
	while (pos < len && alive) {
		size_t chunk = len - pos;
		size_t used = 0;

		if (split == SPLIT_BYTES)
			chunk = 1;
		else if (split == SPLIT_RANDOM && chunk > 1)
			chunk = 1 + (size_t)rand() % (chunk < 23 ? chunk : 23);
		while (used < chunk && alive) {
			size_t consumed = 0;
			enum parser_result res =
			    parser_feed(p, input + pos + used, chunk - used, &consumed);

			assert_true(consumed <= chunk - used);
			if (res == PARSER_NEED_MORE)
				assert_int_equal(consumed, chunk - used);
			else if (res != PARSER_ERROR)
				assert_true(consumed > 0);
			used += consumed;
			alive = record(p, res, pos + used, r);
		}
		pos += chunk;
	}
	parser_destroy(&p);
	assert_null(p);
	assert_int_equal(r->open_streams, 0);
	free(r->lit.s);
	r->lit.s = NULL;
	r->lit.cap = 0;
	r->lit.len = 0;
	return r->out.s != NULL ? r->out.s : strdup("");
}

/* Runs with default authenticated limits and no sink. */
static char *run(const char *input, size_t len, enum split split, unsigned seed)
{
	struct parser_limits limits = parser_limits_default(true);
	struct rec r = {0};

	return run_with(input, len, &limits, NULL, split, seed, &r);
}

/* Feeds input whole, bytewise and in several random splits; every transcript must be expected. */
static void check_all_splits(const char *input, size_t len, const char *expected)
{
	char *t = run(input, len, SPLIT_WHOLE, 0);

	assert_string_equal(t, expected);
	free(t);
	t = run(input, len, SPLIT_BYTES, 0);
	assert_string_equal(t, expected);
	free(t);
	for (unsigned seed = 1; seed <= 8; seed++) {
		t = run(input, len, SPLIT_RANDOM, seed);
		assert_string_equal(t, expected);
		free(t);
	}
}

#define CHECK(input, expected) check_all_splits(input, sizeof(input) - 1, expected)

static void test_command_forms(void **state)
{
	(void)state;

	CHECK("a1 NOOP\r\n", "C[a1 NOOP]\n");
	CHECK("a1 NOOP\n", "C[a1 NOOP]\n");
	CHECK("a1 NOOP\r\na2 capability\r\n", "C[a1 NOOP]\nC[a2 capability]\n");
	CHECK("A2 login user \"pa ss\\\"w\\\\d\"\r\n", "C[A2 login A<user> Q<pa ss\"w\\d>]\n");
	CHECK("a3 FETCH 1:*,5 (FLAGS BODY.PEEK[HEADER.FIELDS (Subject From)]<0.10> UID)\r\n",
	      "C[a3 FETCH A<1:*,5> (A<FLAGS> A<BODY.PEEK[HEADER.FIELDS (Subject From)]<0.10>> "
	      "A<UID>)]\n");
	CHECK("a4 FETCH 1 BODY[]\r\n", "C[a4 FETCH A<1> A<BODY[]>]\n");
	CHECK("a4 FETCH 1 (BINARY.PEEK[1]<0.100> BODY[1.2.MIME])\r\n",
	      "C[a4 FETCH A<1> (A<BINARY.PEEK[1]<0.100>> A<BODY[1.2.MIME]>)]\n");
	CHECK("a5 FETCH 1 BODY[HEADER.FIELDS (\"Sub ject]\" X)]\r\n",
	      "C[a5 FETCH A<1> A<BODY[HEADER.FIELDS (\"Sub ject]\" X)]>]\n");
	CHECK("a6 STORE 1 +FLAGS (\\Seen $Claimed)\r\n",
	      "C[a6 STORE A<1> A<+FLAGS> (A<\\Seen> A<$Claimed>)]\n");
	CHECK("a7 UID STORE 1:3 (UNCHANGEDSINCE 12345) +FLAGS.SILENT ($Claimed)\r\n",
	      "C[a7 UID A<STORE> A<1:3> (A<UNCHANGEDSINCE> A<12345>) A<+FLAGS.SILENT> "
	      "(A<$Claimed>)]\n");
	CHECK("a8 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))\r\n",
	      "C[a8 SELECT A<INBOX> (A<QRESYNC> (A<67890007> A<20050715194045000> "
	      "A<41,43:211,214:541>))]\n");
	CHECK("a9 X NIL nil () (()) \"\" \"NIL\"\r\n",
	      "C[a9 X N<NIL> N<nil> () (()) Q<> Q<NIL>]\n");
	CHECK("a10 LIST \"\" %\r\na11 LIST \"\" foo/*\r\n",
	      "C[a10 LIST Q<> A<%>]\nC[a11 LIST Q<> A<foo/*>]\n");
	CHECK("a12 SELECT foo]bar\r\n", "C[a12 SELECT A<foo]bar>]\n");
	CHECK("a13 UID SEARCH RETURN (MIN) UNKEYWORD $Claimed UNDELETED\r\n",
	      "C[a13 UID A<SEARCH> A<RETURN> (A<MIN>) A<UNKEYWORD> A<$Claimed> A<UNDELETED>]\n");
	CHECK("a14 X  a   b \r\n", "C[a14 X A<a> A<b>]\n");
	CHECK("a15 X ( a (b ) )\r\n", "C[a15 X (A<a> (A<b>))]\n");
	CHECK("a16 ENABLE QRESYNC CONDSTORE\r\n", "C[a16 ENABLE A<QRESYNC> A<CONDSTORE>]\n");
}

static void test_literals(void **state)
{
	(void)state;

	CHECK("a5 LOGIN {4}\r\nuser {0}\r\n\r\n", "+@14\n+@24\nC[a5 LOGIN L<user> L<>]\n");
	CHECK("a6 LOGIN {4+}\r\nuser {3+}\r\npwd\r\n", "C[a6 LOGIN L<user> L<pwd>]\n");
	CHECK("a6 LOGIN {0+}\r\n {0+}\r\n\r\n", "C[a6 LOGIN L<> L<>]\n");
	CHECK("a7 X ({4}\r\n()\r\n)\r\n", "+@11\nC[a7 X (L<()\\x0d\\x0a>)]\n");
	CHECK("a8 X {5}\n\"a b\"\n", "+@9\nC[a8 X L<\"a b\">]\n");
	CHECK("a9 X {003}\r\nabc\r\n", "+@12\nC[a9 X L<abc>]\n");
	CHECK("a SEARCH CHARSET UTF-8 SUBJECT {4}\r\n\xc3\xa9t\xc3\r\n",
	      "+@36\nC[a SEARCH A<CHARSET> A<UTF-8> A<SUBJECT> L<\\xc3\\xa9t\\xc3>]\n");
	/* A literal must be followed by a space, ')' or the end of the line. */
	CHECK("a X {1+}\r\nab\r\nb NOOP\r\n",
	      "E[a invalid Missing space between arguments]\nC[b NOOP]\n");
}

static void test_syntax_errors(void **state)
{
	(void)state;

	CHECK("\r\na NOOP\r\n", "E[- invalid Empty command line]\nC[a NOOP]\n");
	CHECK(" NOOP\r\n", "E[- invalid Missing tag]\n");
	CHECK("+ NOOP\r\n", "E[- invalid Missing tag]\n");
	CHECK("a* NOOP\r\n", "E[- invalid Invalid character in tag]\n");
	CHECK("a\r\n", "E[a invalid Missing command]\n");
	CHECK("a \r\n", "E[a invalid Missing command]\n");
	CHECK("a NO(OP\r\n", "E[a invalid Invalid character in command name]\n");
	CHECK("a X \"abc\r\nb NOOP\r\n", "E[a invalid Unterminated quoted string]\nC[b NOOP]\n");
	CHECK("a X \"a\\b\"\r\n", "E[a invalid Invalid escape in quoted string]\n");
	CHECK("a X \"\xc3\xa9\"\r\n", "E[a invalid 8-bit character in quoted string]\n");
	CHECK("a X \xc3\xa9\r\n", "E[a invalid 8-bit character in command]\n");
	CHECK("a X a\0b\r\n", "E[a invalid NUL byte in command]\n");
	CHECK("a X \"a\0\"\r\n", "E[a invalid NUL byte in command]\n");
	CHECK("a X (a\r\n", "E[a invalid Missing ')']\n");
	CHECK("a X a)\r\nb NOOP\r\n", "E[a invalid Unexpected ')']\nC[b NOOP]\n");
	CHECK("a X \"a\"b\r\n", "E[a invalid Missing space between arguments]\n");
	CHECK("a X (a)(b)\r\n", "E[a invalid Missing space between arguments]\n");
	CHECK("a X f\"oo\r\n", "E[a invalid Invalid character in atom]\n");
	CHECK("a X f{3}\r\n", "E[a invalid Invalid character in atom]\n");
	CHECK("a X \x01\r\n", "E[a invalid Invalid character in atom]\n");
	CHECK("a X BODY[HEADER\r\nb NOOP\r\n", "E[a invalid Missing ']']\nC[b NOOP]\n");
	CHECK("a X {3}x\r\n", "E[a invalid Invalid literal]\n");
	CHECK("a X {}\r\n", "E[a invalid Invalid literal]\n");
	CHECK("a X {+}\r\n", "E[a invalid Invalid literal]\n");
	CHECK("a X {3\r\n", "E[a invalid Invalid literal]\n");
	CHECK("a X a\rb\r\nb NOOP\r\n", "E[a invalid CR not followed by LF]\nC[b NOOP]\n");
	/* An error before a non-synchronising literal still skips the literal's bytes. */
	CHECK("a X \"\\x\" {10+}\r\nb NOOP\r\nxx\r\nc NOOP\r\n",
	      "E[a invalid Invalid escape in quoted string]\nC[c NOOP]\n");
	/* A synchronising literal of a failed line is never sent by the client. */
	CHECK("a X \"\\x\" {10}\r\nb NOOP\r\n", "E[a invalid Invalid escape in quoted string]\n"
						"C[b NOOP]\n");
	CHECK("a X {3+}\r\na\0c\r\nb NOOP\r\n", "E[a invalid NUL byte in literal]\nC[b NOOP]\n");
	CHECK("a X {3}\r\na\0c {2+}\r\nxx\r\nb NOOP\r\n",
	      "+@9\nE[a invalid NUL byte in literal]\nC[b NOOP]\n");
}

/* Runs input with the given limits bytewise and whole; both transcripts must be expected. */
static void check_limits(const struct parser_limits *limits, const char *input, size_t len,
			 const char *expected)
{
	for (int split = SPLIT_WHOLE; split <= SPLIT_RANDOM; split++) {
		struct rec r = {0};
		char *t = run_with(input, len, limits, NULL, (enum split)split, 7, &r);

		assert_string_equal(t, expected);
		free(t);
	}
}

#define CHECK_LIMITS(limits, input, expected)                                                      \
	check_limits(limits, input, sizeof(input) - 1, expected)

static void test_literal_limits(void **state)
{
	(void)state;

	struct parser_limits limits = parser_limits_default(true);
	static const char drained[] = "a X {20+}\r\nb NOOP\r\nc NOOP\r\nxx more\r\nd NOOP\r\n";

	limits.max_literal = 10;
	CHECK_LIMITS(&limits, "a X {10}\r\n0123456789\r\n", "+@10\nC[a X L<0123456789>]\n");
	/* Refused before any continuation; the client then sends the next command. */
	CHECK_LIMITS(&limits, "a X {11}\r\nb NOOP\r\n",
		     "E[a too_big Literal too large]\nC[b NOOP]\n");
	CHECK_LIMITS(&limits, "a X {00000000000000000000000000000099}\r\nb NOOP\r\n",
		     "E[a too_big Literal too large]\nC[b NOOP]\n");
	CHECK_LIMITS(&limits, "a X {99999999999999999999999999999999}\r\nb NOOP\r\n",
		     "E[a too_big Literal too large]\nC[b NOOP]\n");
	/* The budget covers all literals of one command. */
	CHECK_LIMITS(&limits, "a X {6+}\r\n123456 {5}\r\nb NOOP\r\n",
		     "E[a too_big Literal too large]\nC[b NOOP]\n");
	/* A refused LITERAL+ is skipped, even when its bytes look like commands. */
	check_limits(&limits, drained, sizeof(drained) - 1,
		     "E[a too_big Literal too large]\nC[d NOOP]\n");
	/* Beyond what is worth skipping, or beyond 64 bits, the connection must close. */
	CHECK_LIMITS(&limits, "a X {99999999999+}\r\nb NOOP\r\n",
		     "E[a too_big Literal too large FATAL]\n");
	CHECK_LIMITS(&limits, "a X {99999999999999999999999+}\r\nb NOOP\r\n",
		     "E[a too_big Literal too large FATAL]\n");
}

static void test_dead_after_fatal(void **state)
{
	(void)state;

	struct parser_limits limits = parser_limits_default(false);
	struct parser *p;
	size_t used = 99;
	static const char in[] = "a X {99999999999+}\r\nb NOOP\r\n";

	assert_int_equal(parser_create(&limits, &p), IMAPQ_OK);
	assert_int_equal(parser_feed(p, in, sizeof(in) - 1, &used), PARSER_ERROR);
	assert_int_equal(used, 20);
	assert_true(parser_error(p)->fatal);
	assert_int_equal(parser_feed(p, "b NOOP\r\n", 8, &used), PARSER_ERROR);
	assert_int_equal(used, 0);
	parser_reset(p);
	assert_int_equal(parser_feed(p, "b NOOP\r\n", 8, &used), PARSER_ERROR);
	parser_destroy(&p);
	parser_destroy(&p);
}

/* Builds "<head><n x fill><tail>" in a new string. */
static char *make_line(const char *head, size_t n, char fill, const char *tail, size_t *len_r)
{
	size_t hl = strlen(head);
	size_t tl = strlen(tail);
	char *s = malloc(hl + n + tl + 1);

	assert_non_null(s);
	memcpy(s, head, hl);
	memset(s + hl, fill, n);
	memcpy(s + hl + n, tail, tl + 1);
	*len_r = hl + n + tl;
	return s;
}

static void test_line_limits(void **state)
{
	(void)state;

	struct parser_limits limits = parser_limits_default(true);
	size_t len, elen;
	char *s, *expected;

	limits.max_line = 32;
	s = make_line("a X ", 100, 'x', "\r\nb NOOP\r\n", &len);
	check_limits(&limits, s, len, "E[a too_big Line too long]\nC[b NOOP]\n");
	free(s);
	s = make_line("a X ", 100, 'x', " {5+}\r\n\r\nxy\r\nb NOOP\r\n", &len);
	check_limits(&limits, s, len, "E[a too_big Line too long]\nC[b NOOP]\n");
	free(s);
	/* The limit is hit inside the literal header: its bytes are still skipped. */
	s = make_line("a X ", 23, 'x', " {5+}\r\n\r\nxy\r\nb NOOP\r\n", &len);
	check_limits(&limits, s, len, "E[a too_big Line too long]\nC[b NOOP]\n");
	free(s);
	s = make_line("", 100, 't', " NOOP\r\nb NOOP\r\n", &len);
	check_limits(&limits, s, len, "E[- too_big Line too long]\nC[b NOOP]\n");
	free(s);
	/* Exactly at the limit (CRLF included) is fine. */
	s = make_line("a X ", 26, 'x', "\r\n", &len);
	assert_int_equal(len, 32);
	check_limits(&limits, s, len, "C[a X A<xxxxxxxxxxxxxxxxxxxxxxxxxx>]\n");
	free(s);
	/* Literal data does not count, but every line of the command does. */
	limits.max_literal = 1000;
	s = make_line("a X {100+}\r\n", 100, 'y', " z\r\n", &len);
	expected = make_line("C[a X L<", 100, 'y', "> A<z>]\n", &elen);
	check_limits(&limits, s, len, expected);
	free(expected);
	free(s);
	s = make_line("a X {1+}\r\n1 {1+}\r\n2 {1+}\r\n3 {1+}\r\n4 ", 0, ' ', "\r\nb NOOP\r\n",
		      &len);
	check_limits(&limits, s, len, "E[a too_big Line too long]\nC[b NOOP]\n");
	free(s);
}

static void test_limits_switch(void **state)
{
	(void)state;

	struct parser_limits pre = parser_limits_default(false);
	struct parser_limits post = parser_limits_default(true);
	struct parser *p;
	size_t len, used;
	char *s = make_line("a X ", 10 * 1024, 'x', "\r\n", &len);

	assert_int_equal(pre.max_line, IMAPQ_MAX_LINE_PREAUTH);
	assert_int_equal(post.max_line, IMAPQ_MAX_LINE);
	assert_int_equal(parser_create(&pre, &p), IMAPQ_OK);
	assert_int_equal(parser_feed(p, s, len, &used), PARSER_ERROR);
	assert_int_equal(used, len);
	assert_string_equal(parser_error(p)->message, "Line too long");
	parser_set_limits(p, &post);
	assert_int_equal(parser_feed(p, s, len, &used), PARSER_COMMAND);
	assert_int_equal(used, len);
	assert_int_equal(parser_command(p)->args[0].len, 10 * 1024);
	parser_destroy(&p);
	free(s);
}

static void test_nesting_and_count(void **state)
{
	(void)state;

	struct parser_limits limits = parser_limits_default(true);
	char in[128];
	size_t n = 0;
	char expected[128];

	n = (size_t)snprintf(in, sizeof(in), "a X ");
	for (int i = 0; i < IMAPQ_MAX_NESTING; i++)
		in[n++] = '(';
	for (int i = 0; i < IMAPQ_MAX_NESTING; i++)
		in[n++] = ')';
	memcpy(in + n, "\r\n", 2);
	memcpy(expected, "C[a X ", 6);
	memcpy(expected + 6, in + 4, 2 * IMAPQ_MAX_NESTING);
	memcpy(expected + 6 + 2 * IMAPQ_MAX_NESTING, "]\n", 3);
	check_limits(&limits, in, n + 2, expected);

	n = (size_t)snprintf(in, sizeof(in), "a X ");
	for (int i = 0; i <= IMAPQ_MAX_NESTING; i++)
		in[n++] = '(';
	for (int i = 0; i <= IMAPQ_MAX_NESTING; i++)
		in[n++] = ')';
	n += (size_t)snprintf(in + n, sizeof(in) - n, "\r\nb NOOP\r\n");
	check_limits(&limits, in, n, "E[a limit Too deeply nested]\nC[b NOOP]\n");

	limits.max_args = 4;
	CHECK_LIMITS(&limits, "a X 1 (2 3)\r\n", "C[a X A<1> (A<2> A<3>)]\n");
	CHECK_LIMITS(&limits, "a X 1 (2 3) 4\r\nb NOOP\r\n",
		     "E[a limit Too many arguments]\nC[b NOOP]\n");
	CHECK_LIMITS(&limits, "a X 1 2 3 4 {1+}\r\nx\r\nb NOOP\r\n",
		     "E[a limit Too many arguments]\nC[b NOOP]\n");
}

/* A random message body with every byte value. */
static char *random_body(size_t n, unsigned seed)
{
	char *s = malloc(n);

	assert_non_null(s);
	srand(seed);
	for (size_t i = 0; i < n; i++)
		s[i] = (char)(rand() & 0xff);
	return s;
}

/* APPENDs a 200 kB binary body through the sink and checks the transcript. */
static void check_stream(bool nonsync, enum split split, unsigned seed)
{
	struct parser_limits limits = parser_limits_default(true);
	struct parser_sink sink = {.threshold = 100};
	const size_t body_len = 200000;
	char *body = random_body(body_len, 99);
	char head[64];
	int hl = snprintf(head, sizeof(head), "a1 APPEND q (\\Seen) {%zu%s}\r\n", body_len,
			  nonsync ? "+" : "");
	static const char tail[] = "\r\na2 NOOP\r\n";
	size_t len = (size_t)hl + body_len + sizeof(tail) - 1;
	char *in = malloc(len);
	struct rec r = {0};
	char expected[256];
	char *t;

	memcpy(in, head, (size_t)hl);
	memcpy(in + hl, body, body_len);
	memcpy(in + hl + body_len, tail, sizeof(tail) - 1);
	t = run_with(in, len, &limits, &sink, split, seed, &r);
	if (nonsync)
		snprintf(expected, sizeof(expected),
			 "B<a1 APPEND 2 %zu>\nEND<1 %zu>\nC[a1 APPEND A<q> (A<\\Seen>) S<%zu>]\n"
			 "C[a2 NOOP]\n",
			 body_len, body_len, body_len);
	else
		snprintf(expected, sizeof(expected),
			 "B<a1 APPEND 2 %zu>\n+@%d\nEND<1 %zu>\n"
			 "C[a1 APPEND A<q> (A<\\Seen>) S<%zu>]\nC[a2 NOOP]\n",
			 body_len, hl, body_len, body_len);
	assert_string_equal(t, expected);
	assert_int_equal(r.ends_incomplete, 0);
	if (split == SPLIT_BYTES)
		assert_int_equal(r.chunks, body_len);
	free(t);
	free(in);
	free(body);
}

/* The streamed chunks, concatenated, are the literal's bytes exactly. */
static void test_stream_bytes_intact(void **state)
{
	(void)state;

	struct parser_limits limits = parser_limits_default(false);
	struct parser_sink sink = {
	    .threshold = 10, .begin = sink_begin, .data = sink_data, .end = sink_end};
	struct rec r = {0};
	const size_t body_len = 50000;
	char *body = random_body(body_len, 5);
	struct parser *p;
	char head[64];
	int hl = snprintf(head, sizeof(head), "t APPEND box {%zu+}\r\n", body_len);
	size_t used;
	size_t pos = 0;

	sink.ctx = &r;
	assert_int_equal(parser_create(&limits, &p), IMAPQ_OK);
	parser_set_sink(p, &sink);
	assert_int_equal(parser_feed(p, head, (size_t)hl, &used), PARSER_NEED_MORE);
	srand(3);
	while (pos < body_len) {
		size_t chunk = 1 + (size_t)rand() % 4000;

		if (chunk > body_len - pos)
			chunk = body_len - pos;
		assert_int_equal(parser_feed(p, body + pos, chunk, &used), PARSER_NEED_MORE);
		assert_int_equal(used, chunk);
		pos += chunk;
	}
	assert_int_equal(r.lit.len, body_len);
	assert_memory_equal(r.lit.s, body, body_len);
	assert_int_equal(parser_feed(p, "\r\n", 2, &used), PARSER_COMMAND);
	assert_int_equal(parser_command(p)->args[1].type, PARSER_ARG_STREAM);
	assert_int_equal(parser_command(p)->args[1].len, body_len);
	assert_null(parser_command(p)->args[1].str);
	parser_destroy(&p);
	free(r.out.s);
	free(r.lit.s);
	free(body);
}

static void test_stream(void **state)
{
	(void)state;

	check_stream(false, SPLIT_WHOLE, 0);
	check_stream(true, SPLIT_WHOLE, 0);
	check_stream(false, SPLIT_BYTES, 0);
	check_stream(true, SPLIT_BYTES, 0);
	for (unsigned seed = 1; seed < 4; seed++) {
		check_stream(false, SPLIT_RANDOM, seed);
		check_stream(true, SPLIT_RANDOM, seed);
	}
}

static void test_stream_decisions(void **state)
{
	(void)state;

	struct parser_limits limits = parser_limits_default(true);
	struct parser_sink sink = {.threshold = 4};
	static const char small[] = "a APPEND q {4}\r\nabcd\r\n";
	static const char other[] = "a LOGIN u {5}\r\nsecre\r\n";
	static const char sync_big[] = "a APPEND q {50}\r\nb NOOP\r\n";
	static const char nonsync_big[] =
	    "a APPEND q {25+}\r\nb NOOP\r\nxxxxxxxxxxxxxxxxx\r\nc NOOP\r\n";
	static const char fails[] = "a APPEND q {10}\r\n0123456789\r\nb NOOP\r\n";

	for (int split = SPLIT_WHOLE; split <= SPLIT_RANDOM; split++) {
		struct rec r = {.refuse_over = 20};
		char *t;

		/* At or below the threshold a literal is buffered without asking. */
		t = run_with(small, sizeof(small) - 1, &limits, &sink, split, 1, &r);
		assert_string_equal(t, "+@16\nC[a APPEND A<q> L<abcd>]\n");
		free(t);
		/* The sink may decline: the literal is then buffered as usual. */
		memset(&r.out, 0, sizeof(r.out));
		t = run_with(other, sizeof(other) - 1, &limits, &sink, split, 1, &r);
		assert_string_equal(t, "B<a LOGIN 1 5>\n+@15\nC[a LOGIN A<u> L<secre>]\n");
		free(t);
		/* A refusal comes before the continuation. */
		memset(&r.out, 0, sizeof(r.out));
		t = run_with(sync_big, sizeof(sync_big) - 1, &limits, &sink, split, 1, &r);
		assert_string_equal(t, "B<a APPEND 1 50>\nE[a too_big the input exceeds a size "
				       "limit]\nC[b NOOP]\n");
		free(t);
		memset(&r.out, 0, sizeof(r.out));
		t = run_with(nonsync_big, sizeof(nonsync_big) - 1, &limits, &sink, split, 1, &r);
		assert_string_equal(t, "B<a APPEND 1 25>\nE[a too_big the input exceeds a size "
				       "limit]\nC[c NOOP]\n");
		free(t);
		/* A sink failure abandons the literal, skips its rest and fails the command. */
		memset(&r.out, 0, sizeof(r.out));
		r.fail_at = 5;
		t = run_with(fails, sizeof(fails) - 1, &limits, &sink, split, 1, &r);
		assert_string_equal(t, "B<a APPEND 1 10>\n+@17\nEND<0>\nE[a io_error a disk "
				       "operation failed]\nC[b NOOP]\n");
		assert_int_equal(r.ends_incomplete, 1);
		free(t);
	}
}

static void test_stream_abandoned(void **state)
{
	(void)state;

	struct parser_limits limits = parser_limits_default(true);
	struct rec r = {0};
	struct parser_sink sink = {
	    .threshold = 0, .begin = sink_begin, .data = sink_data, .end = sink_end, .ctx = &r};
	struct parser *p;
	size_t used;
	static const char in[] = "a APPEND q {10}\r\n01234";

	assert_int_equal(parser_create(&limits, &p), IMAPQ_OK);
	parser_set_sink(p, &sink);
	assert_int_equal(parser_feed(p, in, sizeof(in) - 1, &used), PARSER_CONTINUE);
	assert_int_equal(used, 17);
	assert_int_equal(parser_feed(p, in + used, sizeof(in) - 1 - used, &used), PARSER_NEED_MORE);
	assert_int_equal(r.open_streams, 1);
	parser_reset(p);
	assert_int_equal(r.open_streams, 0);
	assert_int_equal(r.ends_incomplete, 1);
	assert_int_equal(parser_feed(p, "b NOOP\r\n", 8, &used), PARSER_COMMAND);
	assert_string_equal(parser_command(p)->tag, "b");
	assert_int_equal(parser_feed(p, in, sizeof(in) - 1, &used), PARSER_CONTINUE);
	assert_int_equal(parser_feed(p, in + used, sizeof(in) - 1 - used, &used), PARSER_NEED_MORE);
	parser_destroy(&p);
	assert_int_equal(r.ends_incomplete, 2);
	assert_int_equal(r.open_streams, 0);
	free(r.out.s);
	free(r.lit.s);
}

static void test_partial_command_seen_by_sink(void **state)
{
	(void)state;

	struct parser_limits limits = parser_limits_default(true);
	struct parser_sink sink = {.threshold = 0};
	static const char in[] =
	    "x APPEND \"my box\" (\\Seen \\Flagged) \"24-Nov-2026 08:00:00 +0000\" {3+}\r\nabc\r\n";
	struct rec r = {0};
	char *t = run_with(in, sizeof(in) - 1, &limits, &sink, SPLIT_BYTES, 0, &r);

	assert_string_equal(t, "B<x APPEND 3 3>\nEND<1 3>\nC[x APPEND Q<my box> (A<\\Seen> "
			       "A<\\Flagged>) Q<24-Nov-2026 08:00:00 +0000> S<3>]\n");
	free(t);
}

static void test_continuation_once(void **state)
{
	(void)state;

	struct parser_limits limits = parser_limits_default(true);
	struct parser *p;
	static const char in[] = "a LOGIN {4}\r\nuser {4}\r\npass\r\n";
	size_t continues = 0;
	size_t commands = 0;

	assert_int_equal(parser_create(&limits, &p), IMAPQ_OK);
	for (size_t i = 0; i < sizeof(in) - 1; i++) {
		size_t used;
		enum parser_result res = parser_feed(p, in + i, 1, &used);

		assert_int_equal(used, 1);
		if (res == PARSER_CONTINUE) {
			continues++;
			/* Only right after the header's LF. */
			assert_true(i == 12 || i == 22);
		} else if (res == PARSER_COMMAND) {
			commands++;
			assert_int_equal(i, sizeof(in) - 2);
		} else {
			assert_int_equal(res, PARSER_NEED_MORE);
		}
	}
	assert_int_equal(continues, 2);
	assert_int_equal(commands, 1);
	parser_destroy(&p);
}

static void test_arg_helpers(void **state)
{
	(void)state;

	struct parser_limits limits = parser_limits_default(true);
	struct parser *p;
	static const char in[] = "a X Fetch NIL \"q\" {1+}\r\nl ()\r\n";
	const struct parser_command *cmd;
	const char *s;
	size_t len;

	assert_int_equal(parser_create(&limits, &p), IMAPQ_OK);
	assert_int_equal(parser_feed(p, in, sizeof(in) - 1, &len), PARSER_COMMAND);
	cmd = parser_command(p);
	assert_int_equal(cmd->count, 5);
	assert_true(parser_arg_is_atom(&cmd->args[0], "FETCH"));
	assert_false(parser_arg_is_atom(&cmd->args[0], "FETC"));
	assert_false(parser_arg_is_atom(&cmd->args[2], "q"));
	assert_true(parser_arg_astring(&cmd->args[1], &s, &len));
	assert_string_equal(s, "NIL");
	assert_true(parser_arg_nstring(&cmd->args[1], &s, &len));
	assert_null(s);
	assert_int_equal(len, 0);
	assert_false(parser_arg_nstring(&cmd->args[0], &s, &len));
	assert_true(parser_arg_nstring(&cmd->args[3], &s, &len));
	assert_string_equal(s, "l");
	assert_true(parser_arg_astring(&cmd->args[2], &s, &len));
	assert_int_equal(len, 1);
	assert_false(parser_arg_astring(&cmd->args[4], &s, &len));
	assert_int_equal(cmd->args[4].count, 0);
	parser_destroy(&p);
}

/* Counts occurrences of needle in haystack. */
static size_t count_of(const char *haystack, const char *needle)
{
	size_t n = 0;

	for (const char *at = strstr(haystack, needle); at; at = strstr(at + 1, needle))
		n++;
	return n;
}

/* Runs one fuzz input whole, bytewise and randomly split: the transcripts must agree. */
static void fuzz_one(const char *buf, size_t len, int iter, size_t totals[3])
{
	struct parser_limits limits = {
	    .max_line = 200, .max_literal = 64, .max_depth = 4, .max_args = 16};
	struct parser_sink sink = {.threshold = 8};
	const struct parser_sink *use = iter % 2 ? &sink : NULL;
	char *first = NULL;

	for (int split = SPLIT_WHOLE; split <= SPLIT_RANDOM; split++) {
		struct rec r = {.refuse_over = 30, .fail_at = (size_t)(iter % 7 == 0 ? 20 : 0)};
		char *t = run_with(buf, len, &limits, use, (enum split)split, (unsigned)iter, &r);

		if (first == NULL) {
			first = t;
			continue;
		}
		assert_string_equal(t, first);
		free(t);
	}
	totals[0] += count_of(first, "C[");
	totals[1] += count_of(first, "E[");
	totals[2] += count_of(first, "+@");
	free(first);
}

/* Random bytes with many IMAP specials, and mutated valid commands, never crash, stall or
 * depend on how the input is split. */
static void test_fuzz(void **state)
{
	(void)state;

	static const char alphabet[] = "aX1 ()[]{}\"\\+*%<>.\r\n\r\n0123456789~$";
	static const char *const seeds[] = {
	    "a FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (A B)]<0.10>)\r\n",
	    "b APPEND q (\\Seen) {12+}\r\nhello world!\r\n",
	    "c LOGIN {4}\r\nuser \"pa\\\"ss\"\r\n",
	    "d UID STORE 1 (UNCHANGEDSINCE 5) +FLAGS.SILENT ($Claimed)\r\n",
	    "e X (((a) nil) \"\" {0}\r\n)\r\n",
	};
	size_t totals[3] = {0};
	char buf[600];

	srand(12345);
	for (int iter = 0; iter < 1500; iter++) {
		size_t len = 0;
		unsigned kind = (unsigned)rand() % 3;

		if (kind == 2) {
			while (len < sizeof(buf) - 100) {
				const char *s =
				    seeds[(size_t)rand() % (sizeof(seeds) / sizeof(seeds[0]))];

				memcpy(buf + len, s, strlen(s));
				len += strlen(s);
				if (rand() % 3 == 0)
					break;
			}
			for (int m = rand() % 4; m > 0; m--)
				buf[(size_t)rand() % len] =
				    alphabet[(size_t)rand() % (sizeof(alphabet) - 1)];
		} else {
			len = 1 + (size_t)rand() % sizeof(buf);
			for (size_t i = 0; i < len; i++)
				buf[i] = kind == 0
					     ? (char)(rand() & 0xff)
					     : alphabet[(size_t)rand() % (sizeof(alphabet) - 1)];
		}
		fuzz_one(buf, len, iter, totals);
	}
	/* The inputs reached every kind of result. */
	assert_true(totals[0] > 100);
	assert_true(totals[1] > 100);
	assert_true(totals[2] > 10);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_command_forms),
	    cmocka_unit_test(test_literals),
	    cmocka_unit_test(test_syntax_errors),
	    cmocka_unit_test(test_literal_limits),
	    cmocka_unit_test(test_dead_after_fatal),
	    cmocka_unit_test(test_line_limits),
	    cmocka_unit_test(test_limits_switch),
	    cmocka_unit_test(test_nesting_and_count),
	    cmocka_unit_test(test_stream),
	    cmocka_unit_test(test_stream_bytes_intact),
	    cmocka_unit_test(test_stream_decisions),
	    cmocka_unit_test(test_stream_abandoned),
	    cmocka_unit_test(test_partial_command_seen_by_sink),
	    cmocka_unit_test(test_continuation_once),
	    cmocka_unit_test(test_arg_helpers),
	    cmocka_unit_test(test_fuzz),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
