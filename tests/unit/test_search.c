/* Tests of SEARCH programs: parsing of every key (through the real command parser), bad input,
 * the plan that routes flag conjunctions to the store's index, and evaluation on synthetic
 * messages with a synthetic content source. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "imap/base/limits.h"
#include "imap/protocol/parser.h"
#include "imap/protocol/seqset.h"
#include "imap/server/search.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* --- Fixtures: a command parser, a resolver and a content source --- */

/* Keywords the synthetic mailbox defines: $Claimed is keyword 0, $Delayed keyword 1. */
static imapq_err fake_keyword(void *ctx, const char *name, unsigned *index_r)
{
	(void)ctx;
	if (strcasecmp(name, "$Claimed") == 0)
		*index_r = 0;
	else if (strcasecmp(name, "$Delayed") == 0)
		*index_r = 1;
	else
		return IMAPQ_E_NOTFOUND;
	return IMAPQ_OK;
}

/* UID sets pass through (largest UID 1000); sequence number n is UID 10 * n (100 messages). */
static imapq_err fake_set(void *ctx, const char *text, size_t len, bool uid,
			  struct uid_range **ranges_r, size_t *n_r)
{
	(void)ctx;
	struct seqset *set;
	imapq_err err = seqset_parse(text, len, uid ? 1000 : 100, 0, &set);
	if (err != IMAPQ_OK)
		return err;
	size_t n = seqset_range_count(set);
	const struct seqset_range *r = seqset_ranges(set);
	struct uid_range *out = calloc(n + 1, sizeof *out);
	assert_non_null(out);
	for (size_t i = 0; i < n; i++)
		out[i] =
		    (struct uid_range){uid ? r[i].lo : r[i].lo * 10, uid ? r[i].hi : r[i].hi * 10};
	seqset_destroy(&set);
	*ranges_r = out;
	*n_r = n;
	return IMAPQ_OK;
}

static const struct search_resolver resolver = {fake_keyword, fake_set, NULL};

/* Parses "t SEARCH <keys>" with the real command parser and returns the command. */
static const struct parser_command *command(struct parser **p, const char *keys)
{
	struct parser_limits limits = parser_limits_default(true);
	assert_int_equal(parser_create(&limits, p), IMAPQ_OK);
	char line[8192];
	int n = snprintf(line, sizeof line, "t SEARCH %s\r\n", keys);
	assert_true(n > 0 && (size_t)n < sizeof line);
	size_t used;
	enum parser_result r = parser_feed(*p, line, (size_t)n, &used);
	assert_int_equal(r, PARSER_COMMAND);
	return parser_command(*p);
}

/* Compiles keys; returns the error and sets *prog_r (NULL on failure). */
static imapq_err compile(const char *keys, struct search_program **prog_r, const char **error_r)
{
	struct parser *p;
	const struct parser_command *pc = command(&p, keys);
	const char *error = NULL;
	imapq_err err = search_parse(pc->args, pc->count, &resolver, prog_r, &error);
	parser_destroy(&p);
	if (error_r != NULL)
		*error_r = error;
	if (err == IMAPQ_OK)
		assert_non_null(*prog_r);
	else
		assert_null(*prog_r);
	return err;
}

static struct search_program *compile_ok(const char *keys)
{
	struct search_program *prog;
	imapq_err err = compile(keys, &prog, NULL);
	if (err != IMAPQ_OK)
		fail_msg("\"%s\" did not parse: %d", keys, (int)err);
	return prog;
}

/* A synthetic message's content. */
struct fake_content {
	const char *headers[8][2]; /* field, value */
	const char *body;
	bool has_date;
	int64_t sent_day;
	imapq_err fail; /* returned by every read when set */
	unsigned reads; /* how often content was consulted */
};

/* Case-insensitive substring test. */
static bool contains(const char *hay, const char *needle, size_t len)
{
	for (size_t i = 0; hay[i] != '\0'; i++) {
		if (strncasecmp(hay + i, needle, len) == 0)
			return true;
	}
	return len == 0;
}

static imapq_err fake_header(void *ctx, const char *field, const char *needle, size_t len,
			     bool *match_r)
{
	struct fake_content *c = ctx;
	c->reads++;
	*match_r = false;
	if (c->fail != IMAPQ_OK)
		return c->fail;
	for (size_t i = 0; i < 8 && c->headers[i][0] != NULL; i++) {
		if (strcasecmp(c->headers[i][0], field) == 0 &&
		    contains(c->headers[i][1], needle, len))
			*match_r = true;
	}
	return IMAPQ_OK;
}

static imapq_err fake_text(void *ctx, const char *needle, size_t len, bool headers_too,
			   bool *match_r)
{
	struct fake_content *c = ctx;
	c->reads++;
	if (c->fail != IMAPQ_OK)
		return c->fail;
	*match_r = contains(c->body, needle, len);
	for (size_t i = 0; headers_too && i < 8 && c->headers[i][0] != NULL; i++)
		*match_r = *match_r || contains(c->headers[i][1], needle, len);
	return IMAPQ_OK;
}

static imapq_err fake_sent_day(void *ctx, int64_t *day_r)
{
	struct fake_content *c = ctx;
	c->reads++;
	if (c->fail != IMAPQ_OK)
		return c->fail;
	if (!c->has_date)
		return IMAPQ_E_NOTFOUND;
	*day_r = c->sent_day;
	return IMAPQ_OK;
}

/* Evaluates keys on a message fully; fails the test on an evaluation error. */
static bool matches(const char *keys, const struct store_message *m, bool recent,
		    struct fake_content *c)
{
	struct search_program *prog = compile_ok(keys);
	struct search_source src = {fake_header, fake_text, fake_sent_day, c};
	bool match;
	assert_int_equal(search_match(prog, m, recent, &src, &match), IMAPQ_OK);
	search_program_free(&prog);
	assert_null(prog);
	return match;
}

/* 1-Feb-1994 00:00 UTC, and the day number of that date. */
#define FEB1_1994     760060800
#define FEB1_1994_DAY 8797

/* --- Parsing --- */

static void test_every_key_parses(void **state)
{
	(void)state;
	static const char *const keys[] = {
	    "ALL",
	    "ANSWERED",
	    "BCC joe",
	    "BEFORE 1-Feb-1994",
	    "BODY \"some text\"",
	    "CC {3+}\r\nabc",
	    "DELETED",
	    "DRAFT",
	    "FLAGGED",
	    "FROM smith",
	    "HEADER X-Queue high",
	    "HEADER \"List-Id\" \"\"",
	    "KEYWORD $Claimed",
	    "KEYWORD $Undefined",
	    "KEYWORD \\Seen",
	    "LARGER 100",
	    "NEW",
	    "NOT SEEN",
	    "OLD",
	    "ON \"01-Feb-1994\"",
	    "OR SEEN DELETED",
	    "RECENT",
	    "SEEN",
	    "SENTBEFORE 1-Jan-2000",
	    "SENTON 29-Feb-2000",
	    "SENTSINCE 31-Dec-1999",
	    "SINCE 1-feb-1994",
	    "SMALLER 4294967295",
	    "SUBJECT hello",
	    "TEXT world",
	    "TO bob",
	    "UID 1:5,7,9:*",
	    "UNANSWERED",
	    "UNDELETED",
	    "UNDRAFT",
	    "UNFLAGGED",
	    "UNKEYWORD $Delayed",
	    "UNSEEN",
	    "1:3,5",
	    "*",
	    "(SEEN FLAGGED)",
	    "OR (SEEN UNFLAGGED) NOT (DELETED OR DRAFT ANSWERED)",
	    "MODSEQ 0",
	    "MODSEQ 9223372036854775807",
	    "MODSEQ \"/flags/\\\\draft\" all 620162338",
	    "MODSEQ \"/flags/$Claimed\" priv 5",
	    "all seen not deleted",
	    "UNKEYWORD $Claimed UNKEYWORD $Delayed UNDELETED",
	};
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		struct search_program *prog = compile_ok(keys[i]);
		search_program_free(&prog);
	}
	search_program_free(NULL);
}

static void test_bad_input_is_refused(void **state)
{
	(void)state;
	static const char *const bad[] = {
	    "FOO",
	    "SEEN FOO",
	    "LARGER",
	    "LARGER x",
	    "LARGER -1",
	    "LARGER 4294967296",
	    "BEFORE",
	    "BEFORE 32-Jan-2020",
	    "BEFORE 29-Feb-2001",
	    "BEFORE 1-Foo-2020",
	    "BEFORE 1-Feb-94",
	    "BEFORE 001-Feb-1994",
	    "BEFORE 1Feb1994",
	    "BEFORE (1-Feb-1994)",
	    "OR SEEN",
	    "OR",
	    "NOT",
	    "()",
	    "(SEEN ())",
	    "HEADER Subject",
	    "HEADER",
	    "SUBJECT",
	    "SUBJECT (a b)",
	    "UID",
	    "UID x:y",
	    "UID 0",
	    "UID \"1:2\"",
	    "1:x",
	    "KEYWORD",
	    "KEYWORD (a)",
	    "KEYWORD \\Recent",
	    "MODSEQ",
	    "MODSEQ x",
	    "MODSEQ 9223372036854775808",
	    "MODSEQ \"/flags/x\" bogus 5",
	    "MODSEQ \"/other/x\" all 5",
	    "MODSEQ \"/flags/x\" all",
	    "\"SEEN\"",
	    "NIL",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct search_program *prog;
		const char *error;
		imapq_err err = compile(bad[i], &prog, &error);
		if (err != IMAPQ_E_INVALID)
			fail_msg("\"%s\" gave %d", bad[i], (int)err);
		assert_non_null(error);
	}
	/* No keys at all. */
	struct search_program *prog;
	const char *error;
	assert_int_equal(search_parse(NULL, 0, &resolver, &prog, &error), IMAPQ_E_INVALID);
	assert_string_equal(error, "Missing search keys");
}

static void test_unknown_key_names_itself(void **state)
{
	(void)state;
	struct search_program *prog;
	const char *error;
	assert_int_equal(compile("SEEN BOGUS", &prog, &error), IMAPQ_E_INVALID);
	assert_string_equal(error, "Unknown search key");
	assert_int_equal(compile("LARGER", &prog, &error), IMAPQ_E_INVALID);
	assert_string_equal(error, "Missing argument to a search key");
}

static void test_nesting_is_bounded(void **state)
{
	(void)state;
	char keys[4096] = "";
	for (int i = 0; i < IMAPQ_MAX_SEARCH_DEPTH + 5; i++)
		strcat(keys, "NOT ");
	strcat(keys, "SEEN");
	struct search_program *prog;
	const char *error;
	assert_int_equal(compile(keys, &prog, &error), IMAPQ_E_INVALID);
	assert_string_equal(error, "Search keys nested too deeply");

	/* Within the limit, NOT NOT ... folds to a plain flag test. */
	keys[0] = '\0';
	for (int i = 0; i < 10; i++)
		strcat(keys, "NOT ");
	strcat(keys, "SEEN");
	prog = compile_ok(keys);
	struct search_plan plan;
	search_program_plan(prog, &plan);
	assert_true(plan.indexed);
	assert_int_equal(plan.mask, STORE_SEEN);
	assert_int_equal(plan.want, STORE_SEEN);
	search_program_free(&prog);
}

/* A resolver error other than NOTFOUND fails the parse with that error. */
static imapq_err broken_keyword(void *ctx, const char *name, unsigned *index_r)
{
	(void)ctx;
	(void)name;
	(void)index_r;
	return IMAPQ_E_NONEXISTENT;
}

static void test_resolver_errors_pass_through(void **state)
{
	(void)state;
	struct search_resolver broken = {broken_keyword, fake_set, NULL};
	struct parser *p;
	const struct parser_command *pc = command(&p, "KEYWORD $Claimed");
	struct search_program *prog;
	const char *error;
	assert_int_equal(search_parse(pc->args, pc->count, &broken, &prog, &error),
			 IMAPQ_E_NONEXISTENT);
	assert_null(prog);
	parser_destroy(&p);
}

static void test_return_options(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		imapq_err err;
		unsigned opts;
	} cases[] = {
	    {"RETURN () ALL", IMAPQ_OK, SEARCH_RETURN_ALL},
	    {"RETURN (MIN) ALL", IMAPQ_OK, SEARCH_RETURN_MIN},
	    {"RETURN (min MAX count) ALL", IMAPQ_OK,
	     SEARCH_RETURN_MIN | SEARCH_RETURN_MAX | SEARCH_RETURN_COUNT},
	    {"RETURN (ALL COUNT) ALL", IMAPQ_OK, SEARCH_RETURN_ALL | SEARCH_RETURN_COUNT},
	    {"RETURN (SAVE) ALL", IMAPQ_E_INVALID, 0},
	    {"RETURN (MIN (X)) ALL", IMAPQ_E_INVALID, 0},
	    {"RETURN MIN ALL", IMAPQ_E_INVALID, 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct parser *p;
		const struct parser_command *pc = command(&p, cases[i].text);
		unsigned opts;
		const char *error;
		assert_int_equal(search_parse_return(&pc->args[1], &opts, &error), cases[i].err);
		if (cases[i].err == IMAPQ_OK)
			assert_int_equal(opts, cases[i].opts);
		else
			assert_non_null(error);
		parser_destroy(&p);
	}
}

static void test_charsets(void **state)
{
	(void)state;
	assert_true(search_charset_supported("US-ASCII", 8));
	assert_true(search_charset_supported("utf-8", 5));
	assert_false(search_charset_supported("ISO-8859-1", 10));
	assert_false(search_charset_supported("UTF-7", 5));
	assert_false(search_charset_supported("UTF-8X", 6));
}

static void test_dates(void **state)
{
	(void)state;
	int64_t day;
	assert_true(search_parse_date("1-Jan-1970", 10, &day));
	assert_int_equal(day, 0);
	assert_true(search_parse_date("1-Feb-1994", 10, &day));
	assert_int_equal(day, FEB1_1994_DAY);
	assert_true(search_parse_date("01-FEB-1994", 11, &day));
	assert_int_equal(day, FEB1_1994_DAY);
	assert_true(search_parse_date("29-Feb-2000", 11, &day));
	assert_int_equal(day, 11016);
	assert_true(search_parse_date("31-Dec-1969", 11, &day));
	assert_int_equal(day, -1);
	assert_false(search_parse_date("29-Feb-1900", 11, &day));
	assert_false(search_parse_date("0-Feb-1994", 10, &day));
	assert_false(search_parse_date("1-Feb-1994x", 11, &day));
	assert_false(search_parse_date("", 0, &day));
	assert_int_equal(search_day_of(0), 0);
	assert_int_equal(search_day_of(86399), 0);
	assert_int_equal(search_day_of(86400), 1);
	assert_int_equal(search_day_of(-1), -1);
	assert_int_equal(search_day_of(-86400), -1);
	assert_int_equal(search_day_of(-86401), -2);
	assert_int_equal(search_day_of(FEB1_1994 + 3600), FEB1_1994_DAY);
}

/* --- Plans --- */

static void test_claim_search_is_indexed(void **state)
{
	(void)state;
	struct search_program *prog = compile_ok("UNKEYWORD $Claimed UNKEYWORD $Delayed UNDELETED");
	struct search_plan plan;
	search_program_plan(prog, &plan);
	assert_true(plan.indexed);
	assert_false(plan.none);
	assert_false(plan.has_ranges);
	assert_int_equal(plan.mask, STORE_KEYWORD(0) | STORE_KEYWORD(1) | STORE_DELETED);
	assert_int_equal(plan.want, 0);
	assert_false(search_program_has_modseq(prog));
	assert_false(search_program_needs_content(prog));
	search_program_free(&prog);
}

static void test_plans(void **state)
{
	(void)state;
	static const struct {
		const char *keys;
		bool indexed, none, has_ranges;
		uint64_t mask, want;
	} cases[] = {
	    {"ALL", true, false, false, 0, 0},
	    {"SEEN UNSEEN", true, true, false, STORE_SEEN, STORE_SEEN},
	    {"KEYWORD $Undefined", true, true, false, 0, 0},
	    {"UNKEYWORD $Undefined SEEN", true, false, false, STORE_SEEN, STORE_SEEN},
	    {"KEYWORD $Claimed UNKEYWORD $Claimed", true, true, false, STORE_KEYWORD(0),
	     STORE_KEYWORD(0)},
	    {"NOT SEEN FLAGGED", true, false, false, STORE_SEEN | STORE_FLAGGED, STORE_FLAGGED},
	    {"(SEEN (DELETED (ALL)))", true, false, false, STORE_SEEN | STORE_DELETED,
	     STORE_SEEN | STORE_DELETED},
	    {"UID 1:5 SEEN UID 3:9", true, false, true, STORE_SEEN, STORE_SEEN},
	    {"UID 1:5 UID 7:9", true, true, true, 0, 0},
	    {"2:3 UNDELETED", true, false, true, STORE_DELETED, 0},
	    {"SEEN LARGER 5", false, false, false, STORE_SEEN, STORE_SEEN},
	    {"OR SEEN DELETED", false, false, false, 0, 0},
	    {"NEW", false, false, false, STORE_SEEN, 0},
	    {"OLD", false, false, false, 0, 0},
	    {"NOT (SEEN DELETED)", false, false, false, 0, 0},
	    {"SUBJECT x SEEN", false, false, false, STORE_SEEN, STORE_SEEN},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct search_program *prog = compile_ok(cases[i].keys);
		struct search_plan plan;
		search_program_plan(prog, &plan);
		if (plan.indexed != cases[i].indexed || plan.none != cases[i].none ||
		    plan.has_ranges != cases[i].has_ranges || plan.mask != cases[i].mask ||
		    plan.want != cases[i].want)
			fail_msg("plan of \"%s\"", cases[i].keys);
		search_program_free(&prog);
	}

	/* Ranges of several sets intersect; sequence numbers arrive resolved to UIDs. */
	struct search_program *prog = compile_ok("UID 1:5,8:20 SEEN UID 3:9");
	struct search_plan plan;
	search_program_plan(prog, &plan);
	assert_int_equal(plan.nranges, 2);
	assert_int_equal(plan.ranges[0].lo, 3);
	assert_int_equal(plan.ranges[0].hi, 5);
	assert_int_equal(plan.ranges[1].lo, 8);
	assert_int_equal(plan.ranges[1].hi, 9);
	search_program_free(&prog);
	prog = compile_ok("2:3");
	search_program_plan(prog, &plan);
	assert_int_equal(plan.nranges, 1);
	assert_int_equal(plan.ranges[0].lo, 20);
	assert_int_equal(plan.ranges[0].hi, 30);
	search_program_free(&prog);

	/* MODSEQ makes a scan bounded by the highest MODSEQ of the conjunction. */
	prog = compile_ok("MODSEQ 5 SEEN MODSEQ 7");
	search_program_plan(prog, &plan);
	assert_false(plan.indexed);
	assert_int_equal(plan.modseq_min, 7);
	assert_true(search_program_has_modseq(prog));
	search_program_free(&prog);
	prog = compile_ok("OR MODSEQ 5 SEEN");
	search_program_plan(prog, &plan);
	assert_int_equal(plan.modseq_min, 0);
	assert_true(search_program_has_modseq(prog));
	search_program_free(&prog);
}

/* --- Evaluation --- */

static void test_flag_keys(void **state)
{
	(void)state;
	struct fake_content c = {0};
	struct store_message m = {.uid = 7, .size = 100, .modseq = 10, .internaldate = FEB1_1994};
	m.flags = STORE_SEEN | STORE_FLAGGED | STORE_KEYWORD(0);
	assert_true(matches("ALL", &m, false, &c));
	assert_true(matches("SEEN", &m, false, &c));
	assert_false(matches("UNSEEN", &m, false, &c));
	assert_true(matches("FLAGGED", &m, false, &c));
	assert_false(matches("UNFLAGGED", &m, false, &c));
	assert_false(matches("ANSWERED", &m, false, &c));
	assert_true(matches("UNANSWERED", &m, false, &c));
	assert_false(matches("DELETED", &m, false, &c));
	assert_true(matches("UNDELETED", &m, false, &c));
	assert_false(matches("DRAFT", &m, false, &c));
	assert_true(matches("UNDRAFT", &m, false, &c));
	assert_true(matches("KEYWORD $claimed", &m, false, &c));
	assert_false(matches("UNKEYWORD $Claimed", &m, false, &c));
	assert_false(matches("KEYWORD $Delayed", &m, false, &c));
	assert_true(matches("UNKEYWORD $Delayed", &m, false, &c));
	assert_false(matches("KEYWORD $Undefined", &m, false, &c));
	assert_true(matches("UNKEYWORD $Undefined", &m, false, &c));
	assert_true(matches("KEYWORD \\Flagged", &m, false, &c));
	assert_false(matches("UNKEYWORD $Claimed UNKEYWORD $Delayed UNDELETED", &m, false, &c));
	m.flags = STORE_DELETED | STORE_ANSWERED | STORE_DRAFT;
	assert_true(matches("DELETED ANSWERED DRAFT UNSEEN", &m, false, &c));
	assert_false(matches("UNKEYWORD $Claimed UNKEYWORD $Delayed UNDELETED", &m, false, &c));
	m.flags = 0;
	assert_true(matches("UNKEYWORD $Claimed UNKEYWORD $Delayed UNDELETED", &m, false, &c));
	assert_int_equal(c.reads, 0);
}

static void test_recent_new_old(void **state)
{
	(void)state;
	struct fake_content c = {0};
	struct store_message m = {.uid = 1, .flags = 0};
	assert_true(matches("RECENT", &m, true, &c));
	assert_false(matches("RECENT", &m, false, &c));
	assert_true(matches("NEW", &m, true, &c));
	assert_false(matches("NEW", &m, false, &c));
	assert_false(matches("OLD", &m, true, &c));
	assert_true(matches("OLD", &m, false, &c));
	m.flags = STORE_SEEN;
	assert_false(matches("NEW", &m, true, &c));
	assert_true(matches("NOT NEW", &m, true, &c));
}

static void test_size_uid_modseq_keys(void **state)
{
	(void)state;
	struct fake_content c = {0};
	struct store_message m = {.uid = 30, .size = 100, .modseq = 50};
	assert_true(matches("LARGER 99", &m, false, &c));
	assert_false(matches("LARGER 100", &m, false, &c));
	assert_true(matches("SMALLER 101", &m, false, &c));
	assert_false(matches("SMALLER 100", &m, false, &c));
	assert_true(matches("UID 30", &m, false, &c));
	assert_true(matches("UID 1:10,25:35", &m, false, &c));
	assert_false(matches("UID 1:29,31:*", &m, false, &c));
	assert_true(matches("UID *:29", &m, false, &c)); /* 29:1000 */
	assert_true(matches("3", &m, false, &c));	 /* message 3 is UID 30 here */
	assert_false(matches("4:5", &m, false, &c));
	assert_true(matches("1:2,3", &m, false, &c));
	assert_true(matches("MODSEQ 50", &m, false, &c));
	assert_true(matches("MODSEQ 0", &m, false, &c));
	assert_false(matches("MODSEQ 51", &m, false, &c));
	assert_true(matches("MODSEQ \"/flags/\\\\Seen\" shared 49", &m, false, &c));
}

static void test_internal_date_keys(void **state)
{
	(void)state;
	struct fake_content c = {0};
	/* 23:59:59 UTC on 1 Feb 1994: the day is the UTC day. */
	struct store_message m = {.uid = 1, .internaldate = FEB1_1994 + 86399};
	assert_true(matches("ON 1-Feb-1994", &m, false, &c));
	assert_false(matches("ON 2-Feb-1994", &m, false, &c));
	assert_true(matches("BEFORE 2-Feb-1994", &m, false, &c));
	assert_false(matches("BEFORE 1-Feb-1994", &m, false, &c));
	assert_true(matches("SINCE 1-Feb-1994", &m, false, &c));
	assert_false(matches("SINCE 2-Feb-1994", &m, false, &c));
	assert_true(matches("SINCE 31-Jan-1994 BEFORE 2-Feb-1994", &m, false, &c));
	assert_int_equal(c.reads, 0);
}

static void test_content_keys(void **state)
{
	(void)state;
	struct fake_content c = {
	    .headers = {{"From", "Alice <alice@example.com>"},
			{"To", "bob@example.com"},
			{"Cc", "carol@example.com"},
			{"Bcc", "dave@example.com"},
			{"Subject", "Weekly report"},
			{"X-Queue", "high"}},
	    .body = "The numbers are in.\r\n",
	    .has_date = true,
	    .sent_day = FEB1_1994_DAY,
	};
	struct store_message m = {.uid = 1};
	assert_true(matches("FROM alice", &m, false, &c));
	assert_true(matches("FROM EXAMPLE.COM", &m, false, &c));
	assert_false(matches("FROM bob", &m, false, &c));
	assert_true(matches("TO bob", &m, false, &c));
	assert_true(matches("CC carol", &m, false, &c));
	assert_true(matches("BCC dave", &m, false, &c));
	assert_true(matches("SUBJECT report", &m, false, &c));
	assert_false(matches("SUBJECT invoice", &m, false, &c));
	assert_true(matches("HEADER X-Queue high", &m, false, &c));
	assert_true(matches("HEADER x-queue \"\"", &m, false, &c));
	assert_false(matches("HEADER X-Other \"\"", &m, false, &c));
	assert_true(matches("BODY numbers", &m, false, &c));
	assert_false(matches("BODY weekly", &m, false, &c));
	assert_true(matches("TEXT weekly", &m, false, &c));
	assert_true(matches("TEXT numbers", &m, false, &c));
	assert_true(matches("SENTON 1-Feb-1994", &m, false, &c));
	assert_true(matches("SENTSINCE 1-Feb-1994", &m, false, &c));
	assert_false(matches("SENTSINCE 2-Feb-1994", &m, false, &c));
	assert_true(matches("SENTBEFORE 2-Feb-1994", &m, false, &c));
	assert_false(matches("SENTBEFORE 1-Feb-1994", &m, false, &c));
	c.has_date = false; /* without a Date: header no SENT* key matches */
	assert_false(matches("SENTBEFORE 1-Jan-2100", &m, false, &c));
	assert_false(matches("SENTSINCE 1-Jan-1900", &m, false, &c));
	assert_true(matches("NOT SENTON 1-Feb-1994", &m, false, &c));
}

static void test_boolean_structure(void **state)
{
	(void)state;
	struct fake_content c = {.headers = {{"Subject", "hello"}}, .body = ""};
	struct store_message m = {.uid = 5, .flags = STORE_SEEN, .size = 10};
	assert_true(matches("OR DELETED SEEN", &m, false, &c));
	assert_false(matches("OR DELETED FLAGGED", &m, false, &c));
	assert_true(matches("NOT (DELETED OR FLAGGED ANSWERED)", &m, false, &c));
	assert_true(matches("OR (DELETED SEEN) (SEEN LARGER 5)", &m, false, &c));
	assert_false(matches("OR (DELETED SEEN) (SEEN LARGER 50)", &m, false, &c));
	assert_true(matches("OR SUBJECT nope SUBJECT hello", &m, false, &c));
	assert_true(matches("NOT SUBJECT nope", &m, false, &c));
	assert_false(matches("NOT OR SUBJECT nope SUBJECT hello", &m, false, &c));
	assert_true(matches("SEEN (UID 5 (SMALLER 11 (SUBJECT hell)))", &m, false, &c));
}

/* Content is read only when metadata cannot decide. */
static void test_content_read_only_when_needed(void **state)
{
	(void)state;
	struct fake_content c = {.headers = {{"Subject", "hello"}}, .body = "text"};
	struct store_message m = {.uid = 5, .flags = 0};
	assert_false(matches("SEEN SUBJECT hello", &m, false, &c));
	assert_false(matches("SUBJECT hello SEEN", &m, false, &c));
	assert_true(matches("OR UNSEEN BODY text", &m, false, &c));
	assert_int_equal(c.reads, 0);
	assert_true(matches("UNSEEN SUBJECT hello", &m, false, &c));
	assert_int_equal(c.reads, 1);

	struct search_program *prog = compile_ok("UNSEEN SUBJECT hello");
	assert_int_equal(search_match_meta(prog, &m, false), SEARCH_MAYBE);
	m.flags = STORE_SEEN;
	assert_int_equal(search_match_meta(prog, &m, false), SEARCH_NO);
	assert_true(search_program_needs_content(prog));
	search_program_free(&prog);
	prog = compile_ok("OR SEEN SUBJECT hello");
	assert_int_equal(search_match_meta(prog, &m, false), SEARCH_YES);
	search_program_free(&prog);
}

static void test_source_errors_pass_through(void **state)
{
	(void)state;
	struct fake_content c = {.fail = IMAPQ_E_IO};
	struct store_message m = {.uid = 1};
	struct search_source src = {fake_header, fake_text, fake_sent_day, &c};
	static const char *const keys[] = {
	    "SUBJECT x",	   "BODY x",	    "TEXT x", "SENTON 1-Feb-1994",
	    "NOT (UNSEEN BODY x)", "OR SEEN TEXT y"};
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		struct search_program *prog = compile_ok(keys[i]);
		bool match = true;
		assert_int_equal(search_match(prog, &m, false, &src, &match), IMAPQ_E_IO);
		search_program_free(&prog);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_key_parses),
	    cmocka_unit_test(test_bad_input_is_refused),
	    cmocka_unit_test(test_unknown_key_names_itself),
	    cmocka_unit_test(test_nesting_is_bounded),
	    cmocka_unit_test(test_resolver_errors_pass_through),
	    cmocka_unit_test(test_return_options),
	    cmocka_unit_test(test_charsets),
	    cmocka_unit_test(test_dates),
	    cmocka_unit_test(test_claim_search_is_indexed),
	    cmocka_unit_test(test_plans),
	    cmocka_unit_test(test_flag_keys),
	    cmocka_unit_test(test_recent_new_old),
	    cmocka_unit_test(test_size_uid_modseq_keys),
	    cmocka_unit_test(test_internal_date_keys),
	    cmocka_unit_test(test_content_keys),
	    cmocka_unit_test(test_boolean_structure),
	    cmocka_unit_test(test_content_read_only_when_needed),
	    cmocka_unit_test(test_source_errors_pass_through),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
