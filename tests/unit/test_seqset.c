/* Tests of sequence-set parsing, normalising and formatting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "imap/protocol/seqset.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Parses str against max and returns its formatted form in a static buffer, or "ERR". */
static const char *norm(const char *str, uint32_t max, unsigned flags)
{
	static char out[256];
	struct seqset *set;

	if (seqset_parse(str, strlen(str), max, flags, &set) != IMAPQ_OK) {
		assert_null(set);
		return "ERR";
	}
	assert_true(seqset_format(set, out, sizeof(out)) < sizeof(out));
	seqset_destroy(&set);
	assert_null(set);
	return out;
}

static void test_parse_and_merge(void **state)
{
	(void)state;

	assert_string_equal(norm("1", 10, 0), "1");
	assert_string_equal(norm("1,3:5,7:*", 10, 0), "1,3:5,7:10");
	assert_string_equal(norm("5:3", 10, 0), "3:5");
	assert_string_equal(norm("9,1,5,3:4,2", 10, 0), "1:5,9");
	assert_string_equal(norm("1:3,2:6,8,7", 10, 0), "1:8");
	assert_string_equal(norm("4:2,3:9,1", 100, 0), "1:9");
	assert_string_equal(norm("*", 7, 0), "7");
	assert_string_equal(norm("*:3", 7, 0), "3:7");
	/* n:* with n above the largest number in use still names the largest (RFC 3501 9). */
	assert_string_equal(norm("20:*", 7, 0), "7:20");
	assert_string_equal(norm("4294967295", 7, 0), "4294967295");
	assert_string_equal(norm("1:4294967295,5", 7, 0), "1:4294967295");
	assert_string_equal(norm("4294967294,4294967295,1", 7, 0), "1,4294967294:4294967295");
}

static void test_empty_mailbox(void **state)
{
	(void)state;

	assert_string_equal(norm("1:*", 0, 0), "");
	assert_string_equal(norm("*", 0, 0), "");
	assert_string_equal(norm("3,*", 0, 0), "3");
}

static void test_rejects(void **state)
{
	(void)state;

	static const char *const bad[] = {
	    "",	  "0",	"0:5", "5:0",  "01",	"1,", ",1", "1::2",	  "1:",		 ":1",
	    "a",  "1 ", " 1",  "1,,2", "1:2:3", "-1", "+1", "4294967296", "99999999999", "1.5",
	    "**", "$",	"1,$", "$,1",  "*1",	"1*",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (strcmp(norm(bad[i], 10, 0), "ERR") != 0)
			fail_msg("accepted \"%s\"", bad[i]);
	}
	assert_string_equal(norm("*", 10, SEQSET_NO_STAR), "ERR");
	assert_string_equal(norm("1:*", 10, SEQSET_NO_STAR), "ERR");
	assert_string_equal(norm("1:5", 10, SEQSET_NO_STAR), "1:5");
	assert_string_equal(norm("1,$", 10, SEQSET_ALLOW_SAVED), "ERR");
}

static void test_saved(void **state)
{
	(void)state;

	struct seqset *set;

	assert_int_equal(seqset_parse("$", 1, 10, SEQSET_ALLOW_SAVED, &set), IMAPQ_OK);
	assert_true(seqset_is_saved(set));
	assert_int_equal(seqset_range_count(set), 0);
	seqset_destroy(&set);
	assert_int_equal(seqset_parse("1:2", 3, 10, SEQSET_ALLOW_SAVED, &set), IMAPQ_OK);
	assert_false(seqset_is_saved(set));
	seqset_destroy(&set);
}

static void test_queries(void **state)
{
	(void)state;

	struct seqset *set;
	const struct seqset_range *r;

	assert_int_equal(seqset_parse("1:3,10,20:*", 11, 25, 0, &set), IMAPQ_OK);
	assert_int_equal(seqset_range_count(set), 3);
	r = seqset_ranges(set);
	assert_int_equal(r[2].lo, 20);
	assert_int_equal(r[2].hi, 25);
	assert_int_equal(seqset_size(set), 3 + 1 + 6);
	assert_true(seqset_contains(set, 1));
	assert_true(seqset_contains(set, 3));
	assert_false(seqset_contains(set, 4));
	assert_true(seqset_contains(set, 10));
	assert_false(seqset_contains(set, 11));
	assert_true(seqset_contains(set, 25));
	assert_false(seqset_contains(set, 26));
	assert_false(seqset_contains(set, 0));
	seqset_destroy(&set);
	seqset_destroy(&set);
}

static void test_add_and_format(void **state)
{
	(void)state;

	struct seqset *set;
	char small[6];

	assert_int_equal(seqset_create(&set), IMAPQ_OK);
	assert_int_equal(seqset_format(set, small, sizeof(small)), 0);
	assert_string_equal(small, "");
	assert_int_equal(seqset_add(set, 0, 3), IMAPQ_E_INVALID);
	assert_int_equal(seqset_add(set, 10, 12), IMAPQ_OK);
	assert_int_equal(seqset_add(set, 13, 13), IMAPQ_OK);
	assert_int_equal(seqset_add(set, 3, 1), IMAPQ_OK);
	assert_int_equal(seqset_add(set, 5, 5), IMAPQ_OK);
	assert_int_equal(seqset_add(set, 4, 4), IMAPQ_OK);
	assert_int_equal(seqset_add(set, UINT32_MAX, UINT32_MAX), IMAPQ_OK);
	assert_int_equal(seqset_range_count(set), 3);
	assert_int_equal(seqset_size(set), 5 + 4 + 1);
	/* Truncated like snprintf, full length returned. */
	assert_int_equal(seqset_format(set, small, sizeof(small)), strlen("1:5,10:13,4294967295"));
	assert_string_equal(small, "1:5,1");
	seqset_destroy(&set);
}

/* Many single numbers in random order merge into one range. */
static void test_many(void **state)
{
	(void)state;

	char buf[8000];
	size_t n = 0;
	struct seqset *set;

	for (unsigned i = 1000; i >= 1; i--)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%u", n ? "," : "", i);
	assert_int_equal(seqset_parse(buf, n, 0, 0, &set), IMAPQ_OK);
	assert_int_equal(seqset_range_count(set), 1);
	assert_int_equal(seqset_size(set), 1000);
	seqset_destroy(&set);
}

/* Intersecting ascending spans with a set through one cursor gives what testing every number
 * gives, also where one range of the set spans several of them. */
static void test_add_overlap(void **state)
{
	(void)state;
	struct seqset *want = NULL, *out = NULL;
	assert_int_equal(seqset_parse("2:9,12,20:40,45:46,60:1000", 26, 5000, 0, &want), IMAPQ_OK);
	assert_int_equal(seqset_create(&out), IMAPQ_OK);
	static const struct seqset_range spans[] = {{1, 1},   {3, 4},	   {7, 13},  {15, 19},
						    {21, 21}, {23, 30},	   {39, 50}, {70, 70},
						    {90, 95}, {2000, 3000}};
	size_t cursor = 0;
	for (size_t i = 0; i < sizeof spans / sizeof spans[0]; i++)
		assert_int_equal(seqset_add_overlap(out, seqset_ranges(want),
						    seqset_range_count(want), &cursor, spans[i].lo,
						    spans[i].hi),
				 IMAPQ_OK);
	for (uint32_t x = 1; x <= 3000; x++) {
		bool in_span = false;
		for (size_t i = 0; i < sizeof spans / sizeof spans[0]; i++)
			in_span |= spans[i].lo <= x && x <= spans[i].hi;
		assert_int_equal(seqset_contains(out, x), in_span && seqset_contains(want, x));
	}
	char text[128];
	seqset_format(out, text, sizeof text);
	assert_string_equal(text, "3:4,7:9,12,21,23:30,39:40,45:46,70,90:95");
	seqset_destroy(&want);
	seqset_destroy(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_and_merge),
	    cmocka_unit_test(test_empty_mailbox),
	    cmocka_unit_test(test_rejects),
	    cmocka_unit_test(test_saved),
	    cmocka_unit_test(test_queries),
	    cmocka_unit_test(test_add_and_format),
	    cmocka_unit_test(test_many),
	    cmocka_unit_test(test_add_overlap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
