/* Tests of choosing and writing IMAP string forms. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "imap/protocol/parser.h"
#include "imap/protocol/quote.h"

#include <string.h>

static void test_forms(void **state)
{
	(void)state;

	assert_int_equal(quote_form_for("INBOX", 5, true), QUOTE_ATOM);
	assert_int_equal(quote_form_for("INBOX", 5, false), QUOTE_QUOTED);
	assert_int_equal(quote_form_for("foo]", 4, true), QUOTE_ATOM);
	assert_int_equal(quote_form_for("", 0, true), QUOTE_QUOTED);
	assert_int_equal(quote_form_for("nil", 3, true), QUOTE_QUOTED);
	assert_int_equal(quote_form_for("nils", 4, true), QUOTE_ATOM);
	assert_int_equal(quote_form_for("a b", 3, true), QUOTE_QUOTED);
	assert_int_equal(quote_form_for("a*", 2, true), QUOTE_QUOTED);
	assert_int_equal(quote_form_for("a%", 2, true), QUOTE_QUOTED);
	assert_int_equal(quote_form_for("(a", 2, true), QUOTE_QUOTED);
	assert_int_equal(quote_form_for("a{", 2, true), QUOTE_QUOTED);
	assert_int_equal(quote_form_for("\\a", 2, true), QUOTE_QUOTED);
	assert_int_equal(quote_form_for("\"", 1, true), QUOTE_QUOTED);
	assert_int_equal(quote_form_for("a\r", 2, true), QUOTE_LITERAL);
	assert_int_equal(quote_form_for("a\n", 2, true), QUOTE_LITERAL);
	assert_int_equal(quote_form_for("\xc3\xa9", 2, true), QUOTE_LITERAL);
	assert_int_equal(quote_form_for("a\0b", 3, true), QUOTE_LITERAL);
}

static void test_writes(void **state)
{
	(void)state;

	char out[64];

	assert_int_equal(quote_astring(out, sizeof(out), "INBOX", 5), 5);
	assert_string_equal(out, "INBOX");
	assert_int_equal(quote_astring(out, sizeof(out), "my box", 6), 8);
	assert_string_equal(out, "\"my box\"");
	assert_int_equal(quote_string(out, sizeof(out), "a\"b\\c", 5), 9);
	assert_string_equal(out, "\"a\\\"b\\\\c\"");
	assert_int_equal(quote_string(out, sizeof(out), "", 0), 2);
	assert_string_equal(out, "\"\"");
	assert_int_equal(quote_string(out, sizeof(out), "l\r\n", 3), 8);
	assert_string_equal(out, "{3}\r\nl\r\n");
	assert_int_equal(quote_nstring(out, sizeof(out), NULL, 0), 3);
	assert_string_equal(out, "NIL");
	assert_int_equal(quote_nstring(out, sizeof(out), "NIL", 3), 5);
	assert_string_equal(out, "\"NIL\"");
	/* Truncation behaves like snprintf. */
	assert_int_equal(quote_string(out, 4, "abcdef", 6), 8);
	assert_string_equal(out, "\"ab");
	assert_int_equal(quote_string(NULL, 0, "abcdef", 6), 8);
}

/* Whatever is written parses back to the same bytes. */
static void test_parser_reads_back(void **state)
{
	(void)state;

	static const char *const values[] = {
	    "plain",	     "two words",   "q\"uo\\te", "",	"NIL",
	    "line\r\nbreak", "caf\xc3\xa9", "[x]",	 "a)b", "*",
	};
	struct parser_limits limits = parser_limits_default(true);
	struct parser *p;

	assert_int_equal(parser_create(&limits, &p), IMAPQ_OK);
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		char line[128] = "t X ";
		size_t n = 4;
		size_t used, pos = 0;
		const char *s;
		size_t len;
		enum parser_result res;

		n += quote_astring(line + n, sizeof(line) - n, values[i], strlen(values[i]));
		memcpy(line + n, "\r\n", 2);
		n += 2;
		while ((res = parser_feed(p, line + pos, n - pos, &used)) == PARSER_CONTINUE)
			pos += used;
		assert_int_equal(res, PARSER_COMMAND);
		assert_int_equal(parser_command(p)->count, 1);
		assert_true(parser_arg_astring(&parser_command(p)->args[0], &s, &len));
		assert_int_equal(parser_command(p)->args[0].type == PARSER_ARG_NIL, 0);
		assert_int_equal(len, strlen(values[i]));
		assert_memory_equal(s, values[i], len);
	}
	parser_destroy(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_forms),
	    cmocka_unit_test(test_writes),
	    cmocka_unit_test(test_parser_reads_back),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
