/* Tests of the modified UTF-7 codec for mailbox names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "imap/protocol/utf7.h"

#include <stdlib.h>
#include <string.h>

/* Checks that utf8 encodes to utf7 and utf7 decodes back to utf8. */
static void round_trip(const char *utf8, const char *utf7)
{
	char *out;

	assert_int_equal(utf7_encode(utf8, strlen(utf8), &out), IMAPQ_OK);
	assert_string_equal(out, utf7);
	free(out);
	assert_int_equal(utf7_decode(utf7, strlen(utf7), &out), IMAPQ_OK);
	assert_string_equal(out, utf8);
	free(out);
}

static void test_round_trips(void **state)
{
	(void)state;

	round_trip("", "");
	round_trip("INBOX", "INBOX");
	round_trip("a&b", "a&-b");
	round_trip("&", "&-");
	round_trip("&&", "&-&-");
	/* RFC 3501 section 5.1.3's example. */
	round_trip("~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
		   "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
	round_trip("Entw\xc3\xbc"
		   "rfe",
		   "Entw&APw-rfe");
	round_trip("\xc3\xa9", "&AOk-");
	round_trip("\xc3\xa9\xc3\xa9", "&AOkA6Q-");
	round_trip("\xc3\xa9\xc3\xa9\xc3\xa9", "&AOkA6QDp-");
	round_trip("\xc3\xa9-", "&AOk--");
	/* Outside the BMP: a surrogate pair. */
	round_trip("\xf0\x9f\x98\x80", "&2D3eAA-");
	round_trip("q/\xf0\x9f\x98\x80/dead", "q/&2D3eAA-/dead");
	/* Controls are not printable and so are encoded. */
	round_trip("a\tb", "a&AAk-b");
	round_trip("\xef\xbf\xbf", "&,,8-");
}

static void test_decode_invalid(void **state)
{
	(void)state;

	static const char *const bad[] = {
	    "&",	  /* unterminated shift */
	    "&AOk",	  /* unterminated shift */
	    "&AOk-&AOk-", /* adjacent shifts must be one */
	    "&AGE-",	  /* "a" encoded although printable */
	    "&ACY-",	  /* "&" encoded */
	    "&AO-",	  /* too few bits for a unit */
	    "&AOl-",	  /* non-zero padding bits */
	    "&AOkA-",	  /* six leftover bits */
	    "&2D0-",	  /* lone high surrogate */
	    "&3gA-",	  /* lone low surrogate */
	    "&2D3YPQ-",	  /* high surrogate followed by another high */
	    "&A.k-",	  /* not a BASE64 character */
	    "&AO/-",	  /* '/' instead of ',' */
	    "a\tb",	  /* control character sent directly */
	    "\xc3\xa9",	  /* 8-bit sent directly */
	    "a\x7f",	  /* DEL */
	};
	char *out = (char *)1;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (utf7_decode(bad[i], strlen(bad[i]), &out) != IMAPQ_E_INVALID)
			fail_msg("accepted \"%s\"", bad[i]);
		assert_null(out);
	}
	assert_int_equal(utf7_decode("a\0b", 3, &out), IMAPQ_E_INVALID);
}

static void test_encode_invalid(void **state)
{
	(void)state;

	static const char *const bad[] = {
	    "\xc3",		/* truncated */
	    "\xc3(",		/* bad continuation */
	    "\xc0\xaf",		/* overlong */
	    "\xe0\x80\xaf",	/* overlong */
	    "\xed\xa0\x80",	/* surrogate */
	    "\xf4\x90\x80\x80", /* above U+10FFFF */
	    "\xff",		/* never valid */
	    "\x80",		/* lone continuation */
	};
	char *out = (char *)1;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (utf7_encode(bad[i], strlen(bad[i]), &out) != IMAPQ_E_INVALID)
			fail_msg("accepted case %zu", i);
		assert_null(out);
	}
	assert_int_equal(utf7_encode("a\0b", 3, &out), IMAPQ_E_INVALID);
}

/* Every code point class in random mixes survives a round trip. */
static void test_random_round_trips(void **state)
{
	(void)state;

	static const char *const pieces[] = {
	    "a",
	    "&",
	    "-",
	    " ",
	    "\xc3\xa9",
	    "\xe2\x82\xac",
	    "\xf0\x9f\x98\x80",
	    "\x01",
	    "~",
	    "\xe5\x8f\xb0",
	    "/",
	};
	char in[256];

	srand(7);
	for (int iter = 0; iter < 2000; iter++) {
		size_t n = 0;
		char *enc, *dec;

		for (int k = rand() % 30; k > 0; k--) {
			const char *p =
			    pieces[(size_t)rand() % (sizeof(pieces) / sizeof(pieces[0]))];

			memcpy(in + n, p, strlen(p));
			n += strlen(p);
		}
		assert_int_equal(utf7_encode(in, n, &enc), IMAPQ_OK);
		assert_int_equal(utf7_decode(enc, strlen(enc), &dec), IMAPQ_OK);
		assert_int_equal(strlen(dec), n);
		assert_memory_equal(dec, in, n);
		free(enc);
		free(dec);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_round_trips),
	    cmocka_unit_test(test_decode_invalid),
	    cmocka_unit_test(test_encode_invalid),
	    cmocka_unit_test(test_random_round_trips),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
