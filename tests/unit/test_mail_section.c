/* The message module's BODY[section]<partial> resolution, SEARCH helpers and date parsing. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap/base/limits.h"
#include "imap/mail/mail.h"
#include "tests/unit/test_mail_util.h"

/* A parsed message with its reader; chunk caps each read. */
struct fixture {
	struct mem_msg m;
	const struct mail_reader *r;
	struct mail *mail;
};

static void fixture_open(struct fixture *f, const char *msg, size_t len, size_t chunk)
{
	f->m = mem_msg_make(msg, len, chunk);
	f->r = mem_msg_bind(&f->m);
	assert_int_equal(mail_parse(f->r, &f->mail), IMAPQ_OK);
}

static void fixture_close(struct fixture *f)
{
	mail_free(&f->mail);
}

/* Resolves a section (with a partial when origin is not UINT64_MAX) and returns its bytes as a
 * string, or NULL for a NIL section. */
static char *section_of(struct fixture *f, const char *spec, uint64_t origin, uint64_t count)
{
	struct buf text = {0}, out = {0};
	struct mail_section sec;

	assert_int_equal(mail_section_resolve(f->mail, f->r, spec, strlen(spec), &text, &sec),
			 IMAPQ_OK);
	if (sec.nil) {
		buf_free(&text);
		return NULL;
	}
	if (origin != UINT64_MAX)
		mail_section_partial(&sec, origin, count);
	assert_int_equal(mail_section_copy(f->r, &text, &sec, &out), IMAPQ_OK);
	buf_free(&text);
	return buf_to_str(&out);
}

static void expect_section(struct fixture *f, const char *spec, const char *want)
{
	char *got = section_of(f, spec, UINT64_MAX, 0);

	if (want == NULL) {
		assert_null(got);
		return;
	}
	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);
}

static void expect_partial(struct fixture *f, const char *spec, uint64_t origin, uint64_t count,
			   const char *want)
{
	char *got = section_of(f, spec, origin, count);

	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);
}

static void expect_invalid(struct fixture *f, const char *spec)
{
	struct buf text = {0};
	struct mail_section sec;

	assert_int_equal(mail_section_resolve(f->mail, f->r, spec, strlen(spec), &text, &sec),
			 IMAPQ_E_INVALID);
	buf_free(&text);
}

#define HDR_TOP                                                                                    \
	"From: outer@x.com\r\n"                                                                    \
	"Subject: fwd\r\n"                                                                         \
	" folded\r\n"                                                                              \
	"X-Other: 1\r\n"                                                                           \
	"SUBJECT: second\r\n"                                                                      \
	"Content-Type: multipart/mixed; boundary=b\r\n"                                            \
	"\r\n"
#define PART1_MIME "Content-Type: text/plain\r\n\r\n"
#define PART2_MIME "Content-Type: message/rfc822\r\n\r\n"
#define INNER_HDR                                                                                  \
	"From: inner@y.org\r\n"                                                                    \
	"Subject: inner subject\r\n"                                                               \
	"\r\n"
#define BODY_TOP                                                                                   \
	"--b\r\n" PART1_MIME "see attached\r\n"                                                    \
	"--b\r\n" PART2_MIME INNER_HDR "inner body\r\n"                                            \
	"--b--\r\n"

static const char msg[] = HDR_TOP BODY_TOP;

static void test_sections(void **state)
{
	struct fixture f;

	fixture_open(&f, msg, strlen(msg), 0);
	expect_section(&f, "", msg);
	expect_section(&f, "HEADER", HDR_TOP);
	expect_section(&f, "header", HDR_TOP);
	expect_section(&f, "TEXT", BODY_TOP);
	expect_section(&f, "1", "see attached");
	expect_section(&f, "1.MIME", PART1_MIME);
	expect_section(&f, "2", INNER_HDR "inner body");
	expect_section(&f, "2.MIME", PART2_MIME);
	expect_section(&f, "2.HEADER", INNER_HDR);
	expect_section(&f, "2.TEXT", "inner body");
	expect_section(&f, "2.1", "inner body");
	expect_section(&f, "2.1.MIME", INNER_HDR);
	expect_section(&f, "2.HEADER.FIELDS (SUBJECT)", "Subject: inner subject\r\n\r\n");
	/* Parts the message lacks, and HEADER/TEXT of a part that is no message: NIL. */
	expect_section(&f, "3", NULL);
	expect_section(&f, "3.MIME", NULL);
	expect_section(&f, "1.1", NULL);
	expect_section(&f, "2.2", NULL);
	expect_section(&f, "9.8.7.HEADER.FIELDS (A)", NULL);
	expect_section(&f, "1.HEADER", NULL);
	expect_section(&f, "1.TEXT", NULL);
	fixture_close(&f);
}

static void test_single_part_numbering(void **state)
{
	const char *m = "Subject: s\r\n\r\nbody\r\n";
	struct fixture f;

	fixture_open(&f, m, strlen(m), 0);
	expect_section(&f, "1", "body\r\n");
	expect_section(&f, "1.MIME", "Subject: s\r\n\r\n");
	expect_section(&f, "2", NULL);
	expect_section(&f, "1.1", NULL);
	fixture_close(&f);
}

static void test_header_fields(void **state)
{
	struct fixture f;

	fixture_open(&f, msg, strlen(msg), 5);
	expect_section(&f, "HEADER.FIELDS (SUBJECT)",
		       "Subject: fwd\r\n folded\r\nSUBJECT: second\r\n\r\n");
	expect_section(&f, "HEADER.FIELDS (\"x-other\" From)",
		       "From: outer@x.com\r\nX-Other: 1\r\n\r\n");
	expect_section(&f, "HEADER.FIELDS ({7}\r\nX-OTHER)", "X-Other: 1\r\n\r\n");
	expect_section(&f, "header.fields.not (Subject Content-Type)",
		       "From: outer@x.com\r\nX-Other: 1\r\n\r\n");
	expect_section(&f, "HEADER.FIELDS (Absent)", "\r\n");
	fixture_close(&f);

	/* A bare-LF header keeps its style; a last field without a line break gets one. */
	const char *lf = "A: 1\nB: 2";

	fixture_open(&f, lf, strlen(lf), 0);
	expect_section(&f, "HEADER.FIELDS (B)", "B: 2\n\n");
	expect_section(&f, "HEADER.FIELDS (A)", "A: 1\n\n");
	fixture_close(&f);
}

static void test_invalid_sections(void **state)
{
	static const char *const bad[] = {
	    "0",
	    "01",
	    "1.",
	    "1..2",
	    "MIME",
	    "HEADERX",
	    "TEXT.X",
	    "1.FOO",
	    ".1",
	    "1 ",
	    "x",
	    "HEADER.FIELDS",
	    "HEADER.FIELDS ()",
	    "HEADER.FIELDS (A",
	    "HEADER.FIELDS (A) ",
	    "HEADER.FIELDS(A)",
	    "HEADER.FIELDS (A  B)",
	    "HEADER.FIELDS (\"A)",
	    "HEADER.FIELDS ({9}\r\nA)",
	    "4294967296",
	    "1.MIME.TEXT",
	};
	struct fixture f;

	fixture_open(&f, msg, strlen(msg), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_invalid(&f, bad[i]);
	fixture_close(&f);
}

static void test_partials(void **state)
{
	struct fixture f;

	fixture_open(&f, msg, strlen(msg), 3);
	expect_partial(&f, "1", 0, 3, "see");
	expect_partial(&f, "1", 4, 100, "attached");
	expect_partial(&f, "1", 11, 1, "d");
	expect_partial(&f, "1", 12, 5, "");
	expect_partial(&f, "1", 13, 5, "");
	expect_partial(&f, "1", UINT64_MAX - 1, UINT64_MAX, "");
	expect_partial(&f, "1", 0, 0, "");
	expect_partial(&f, "HEADER.FIELDS (X-Other)", 2, 6, "Other:");
	expect_partial(&f, "HEADER.FIELDS (X-Other)", 12, 10, "\r\n");
	fixture_close(&f);
}

static void test_header_contains(void **state)
{
	struct fixture f;
	bool match;

	fixture_open(&f, msg, strlen(msg), 4);
	assert_int_equal(mail_header_contains(f.mail, f.r, "subject", "FWD FOLDED", 10, &match),
			 IMAPQ_OK);
	assert_true(match);
	assert_int_equal(mail_header_contains(f.mail, f.r, "Subject", "second", 6, &match),
			 IMAPQ_OK);
	assert_true(match);
	assert_int_equal(mail_header_contains(f.mail, f.r, "Subject", "inner", 5, &match),
			 IMAPQ_OK);
	assert_false(match);
	assert_int_equal(mail_header_contains(f.mail, f.r, "From", "OUTER@X", 7, &match), IMAPQ_OK);
	assert_true(match);
	assert_int_equal(mail_header_contains(f.mail, f.r, "X-Other", "", 0, &match), IMAPQ_OK);
	assert_true(match);
	assert_int_equal(mail_header_contains(f.mail, f.r, "X-Absent", "", 0, &match), IMAPQ_OK);
	assert_false(match);
	assert_int_equal(mail_header_contains(f.mail, f.r, "Cc", "x", 1, &match), IMAPQ_OK);
	assert_false(match);
	fixture_close(&f);
}

/* Builds "Subject: s\r\n\r\n" then filler so that needle starts at offset at. */
static char *straddle_msg(size_t at, const char *needle, size_t *len_r)
{
	const char *hdr = "Subject: s\r\n\r\n";
	size_t len = at + strlen(needle) + 10;
	char *m = malloc(len + 1);

	assert_non_null(m);
	memset(m, 'y', len);
	memcpy(m, hdr, strlen(hdr));
	memcpy(m + at, needle, strlen(needle));
	m[len] = '\0';
	*len_r = len;
	return m;
}

static void test_text_contains_straddling(void **state)
{
	const char *hdr = "Subject: s\r\n\r\n";
	size_t body_off = strlen(hdr);
	/* Straddles the windows of a whole-text search, then those of a body search. */
	size_t spots[] = {MAIL_READ_WINDOW - 3, body_off + MAIL_READ_WINDOW - 1,
			  body_off + 2 * MAIL_READ_WINDOW - 5};

	for (size_t i = 0; i < sizeof(spots) / sizeof(spots[0]); i++) {
		size_t len;
		char *m = straddle_msg(spots[i], "NeEdLe", &len);
		struct fixture f;
		bool match;

		fixture_open(&f, m, len, 1000);
		assert_int_equal(mail_text_contains(f.mail, f.r, "needle", 6, true, &match),
				 IMAPQ_OK);
		assert_true(match);
		assert_int_equal(mail_text_contains(f.mail, f.r, "NEEDLE", 6, false, &match),
				 IMAPQ_OK);
		assert_true(match);
		assert_int_equal(mail_text_contains(f.mail, f.r, "needles", 7, true, &match),
				 IMAPQ_OK);
		assert_false(match);
		assert_int_equal(mail_text_contains(f.mail, f.r, "yyyyy", 5, false, &match),
				 IMAPQ_OK);
		assert_true(match);
		fixture_close(&f);
		free(m);
	}
}

static void test_body_vs_text(void **state)
{
	struct fixture f;
	bool match;

	fixture_open(&f, msg, strlen(msg), 2);
	assert_int_equal(mail_text_contains(f.mail, f.r, "x-other", 7, true, &match), IMAPQ_OK);
	assert_true(match);
	assert_int_equal(mail_text_contains(f.mail, f.r, "x-other", 7, false, &match), IMAPQ_OK);
	assert_false(match);
	assert_int_equal(mail_text_contains(f.mail, f.r, "INNER BODY", 10, false, &match),
			 IMAPQ_OK);
	assert_true(match);
	assert_int_equal(mail_text_contains(f.mail, f.r, "", 0, false, &match), IMAPQ_OK);
	assert_true(match);
	assert_int_equal(mail_text_contains(f.mail, f.r, "b--\r\n", 5, false, &match), IMAPQ_OK);
	assert_true(match);
	fixture_close(&f);
}

/* Parses a date and checks its epoch and zone. */
static void expect_date(const char *s, int64_t epoch, int tz)
{
	int64_t got_epoch = 0;
	int got_tz = 1;

	assert_int_equal(mail_date_parse(s, strlen(s), &got_epoch, &got_tz), IMAPQ_OK);
	assert_int_equal(got_epoch, epoch);
	assert_int_equal(got_tz, tz);
}

static void test_dates(void **state)
{
	expect_date("Mon, 7 Feb 1994 21:52:25 -0800", 760686745, -480);
	expect_date("7 Feb 94 21:52 PST", 760686720, -480);
	expect_date("Tue, 1 Jul 2003 10:52:37 +0200 (CEST)", 1057049557, 120);
	expect_date("  Tue ,  01  Jul  2003  10 : 52 : 37  +0200", 1057049557, 120);
	expect_date("1 Jan 103 00:00 +0000", 1041379200, 0);
	expect_date("1 Jan 03 00:00 GMT", 1041379200, 0);
	expect_date("1 Jan 1970 00:00:00 Z", 0, 0);
	expect_date("1 Jan 1970 00:00:00 A", 0, 0);
	expect_date("1 Jan 1970 00:00:00", 0, 0);
	expect_date("Thu, 1 January 1970 01:00:00 +0100", 0, 60);
	expect_date("29 Feb 2000 00:00 +0000", 951782400, 0);
	expect_date("31 Dec 1969 23:59:59 +0000", -1, 0);

	static const char *const bad[] = {
	    "",
	    "garbage",
	    "32 Jan 2000 00:00 +0000",
	    "29 Feb 2001 00:00 +0000",
	    "1 Foo 2000 00:00",
	    "1 Jan 2000 24:00",
	    "1 Jan 2000 10:60",
	    "1 Jan 2000 10:00 +0260",
	    "1 Jan 2000 10:00 XYZ",
	    "1 Jan 2000 10:00 +0000 junk",
	    "1 Jan 2000",
	    "1 Jan 2 10:00",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(mail_date_parse(bad[i], strlen(bad[i]), NULL, NULL),
				 IMAPQ_E_INVALID);
}

static void test_sent_date(void **state)
{
	const char *m = "Date: Mon, 7 Feb 1994 23:30:00 -0800\r\n\r\n";
	struct fixture f;
	int64_t epoch, day;
	int tz;

	fixture_open(&f, m, strlen(m), 0);
	assert_int_equal(mail_sent_date(f.mail, &epoch, &tz), IMAPQ_OK);
	assert_int_equal(epoch, 760692600);
	assert_int_equal(tz, -480);
	/* The header's own calendar day (Feb 7), though it is Feb 8 in UTC. */
	assert_int_equal(mail_sent_day(f.mail, &day), IMAPQ_OK);
	assert_int_equal(day, 8803);
	fixture_close(&f);

	fixture_open(&f, "Subject: x\r\n\r\n", 14, 0);
	assert_int_equal(mail_sent_date(f.mail, &epoch, NULL), IMAPQ_E_NOTFOUND);
	fixture_close(&f);
	fixture_open(&f, "Date: yesterday\r\n\r\n", 19, 0);
	assert_int_equal(mail_sent_day(f.mail, &day), IMAPQ_E_INVALID);
	fixture_close(&f);
}

static void test_large_message_streams(void **state)
{
	/* A 3 MiB body with one part boundary near the end: parsed through the window. */
	size_t body = 3u << 20;
	const char *head = "Content-Type: multipart/mixed; boundary=big\r\n\r\n--big\r\n\r\n";
	const char *tail = "\r\n--big\r\nContent-Type: text/x\r\n\r\nend\r\n--big--\r\n";
	size_t len = strlen(head) + body + strlen(tail);
	char *m = malloc(len + 1);
	struct fixture f;

	assert_non_null(m);
	strcpy(m, head);
	for (size_t i = 0; i < body; i++)
		m[strlen(head) + i] = (i % 80 == 79) ? '\n' : 'z';
	strcpy(m + strlen(head) + body, tail);
	fixture_open(&f, m, len, 0);

	struct buf out = {0};

	assert_int_equal(mail_write_bodystructure(f.mail, false, &out), IMAPQ_OK);
	char *got = buf_to_str(&out);
	char want[256];

	snprintf(want, sizeof(want),
		 "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" %zu %zu)"
		 "(\"text\" \"x\" NIL NIL NIL \"7BIT\" 3 1) \"mixed\")",
		 body, body / 80 + 1);
	assert_string_equal(got, want);
	free(got);
	expect_section(&f, "2", "end");
	fixture_close(&f);
	free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sections),
	    cmocka_unit_test(test_single_part_numbering),
	    cmocka_unit_test(test_header_fields),
	    cmocka_unit_test(test_invalid_sections),
	    cmocka_unit_test(test_partials),
	    cmocka_unit_test(test_header_contains),
	    cmocka_unit_test(test_text_contains_straddling),
	    cmocka_unit_test(test_body_vs_text),
	    cmocka_unit_test(test_dates),
	    cmocka_unit_test(test_sent_date),
	    cmocka_unit_test(test_large_message_streams),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
