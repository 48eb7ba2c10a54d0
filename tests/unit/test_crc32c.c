/* CRC-32C: known vectors, chaining, and the SSE4.2 path against the table-driven one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "imap/base/crc32c.h"

/* Checks the standard check value and vectors from RFC 3720 (iSCSI), appendix B.4. */
static void test_vectors(void **state)
{
	uint8_t buf[32];

	assert_int_equal(crc32c(0, "123456789", 9), 0xE3069283u);
	assert_int_equal(crc32c_sw(0, "123456789", 9), 0xE3069283u);
	assert_int_equal(crc32c(0, "", 0), 0);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(crc32c(0, buf, sizeof(buf)), 0x8A9136AAu);
	memset(buf, 0xff, sizeof(buf));
	assert_int_equal(crc32c(0, buf, sizeof(buf)), 0x62A8AB43u);
	for (int i = 0; i < 32; i++)
		buf[i] = (uint8_t)i;
	assert_int_equal(crc32c(0, buf, sizeof(buf)), 0x46DD794Eu);
	assert_int_equal(crc32c_sw(0, buf, sizeof(buf)), 0x46DD794Eu);
}

/* Extending a CRC piece by piece equals computing it at once, at every split point. */
static void test_chaining(void **state)
{
	uint8_t buf[100];

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 7 + 3);
	uint32_t whole = crc32c(0, buf, sizeof(buf));
	for (size_t cut = 0; cut <= sizeof(buf); cut++) {
		assert_int_equal(crc32c(crc32c(0, buf, cut), buf + cut, sizeof(buf) - cut), whole);
		assert_int_equal(crc32c_sw(crc32c_sw(0, buf, cut), buf + cut, sizeof(buf) - cut),
				 whole);
	}
}

/* The dispatching crc32c (hardware when present) equals the table version on random data at
 * every alignment and many lengths. */
static void test_hw_matches_sw(void **state)
{
	enum { LEN = 70000 };
	uint8_t *buf = malloc(LEN);
	uint64_t x = 0x9E3779B97F4A7C15ull;

	assert_non_null(buf);
	for (size_t i = 0; i < LEN; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		buf[i] = (uint8_t)x;
	}
	for (size_t align = 0; align < 16; align++)
		for (size_t len = 0; len < 300; len += 1 + len / 8)
			assert_int_equal(crc32c(0x12345678u, buf + align, len),
					 crc32c_sw(0x12345678u, buf + align, len));
	assert_int_equal(crc32c(0, buf, LEN), crc32c_sw(0, buf, LEN));
	assert_int_equal(crc32c(0, buf + 3, LEN - 3), crc32c_sw(0, buf + 3, LEN - 3));
	print_message("crc32c uses %s\n", crc32c_hw_available() ? "SSE4.2" : "the table");
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_vectors),
	    cmocka_unit_test(test_chaining),
	    cmocka_unit_test(test_hw_matches_sw),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
