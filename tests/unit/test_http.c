/* Unit tests of the HTTP front's pure parts: routing, percent-decoding, the JSON precheck and
 * strict field readers, receipts and numbers. The served API is tested end to end by
 * tests/integration/test_http.py. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "http/http-private.h"

static void test_routes(void **state)
{
	(void)state;
	struct http_target t;
	http_route_parse("/healthz", &t);
	assert_int_equal(t.route, HTTP_ROUTE_HEALTHZ);
	http_route_parse("/v1/queues", &t);
	assert_int_equal(t.route, HTTP_ROUTE_QUEUES);
	http_route_parse("/v1/queues/", &t);
	assert_int_equal(t.route, HTTP_ROUTE_QUEUES);
	http_route_parse("/v1/queues/jobs", &t);
	assert_int_equal(t.route, HTTP_ROUTE_QUEUE);
	assert_string_equal(t.queue, "jobs");
	http_route_parse("/v1/queues/a%2Fb/messages/42/ack", &t);
	assert_int_equal(t.route, HTTP_ROUTE_ACK);
	assert_string_equal(t.queue, "a/b");
	assert_int_equal(t.id, 42);
	assert_int_equal(t.err, IMAPQ_OK);
	http_route_parse("/v1/queues/q/dead/7/requeue", &t);
	assert_int_equal(t.route, HTTP_ROUTE_REQUEUE_ONE);
	assert_int_equal(t.id, 7);
	http_route_parse("/v1/queues/q/dead/requeue", &t);
	assert_int_equal(t.route, HTTP_ROUTE_REQUEUE_ALL);
	http_route_parse("/v1/queues/q/changes", &t);
	assert_int_equal(t.route, HTTP_ROUTE_CHANGES);
	http_route_parse("/v1/queues/q/claims", &t);
	assert_int_equal(t.route, HTTP_ROUTE_CLAIMS);

	/* Unknown resources and bad parameters. */
	http_route_parse("/v1/queues/q/nothing", &t);
	assert_int_equal(t.route, HTTP_ROUTE_NONE);
	http_route_parse("/v1//queues", &t);
	assert_int_equal(t.route, HTTP_ROUTE_NONE);
	http_route_parse("/v2/queues", &t);
	assert_int_equal(t.route, HTTP_ROUTE_NONE);
	http_route_parse("/v1/queues/q/messages/0/ack", &t);
	assert_int_equal(t.err, IMAPQ_E_INVALID);
	http_route_parse("/v1/queues/q/messages/4294967296/ack", &t);
	assert_int_equal(t.err, IMAPQ_E_INVALID);
	http_route_parse("/v1/queues/q/messages/12x/nack", &t);
	assert_int_equal(t.err, IMAPQ_E_INVALID);
	http_route_parse("/v1/queues/bad%00name", &t);
	assert_int_equal(t.err, IMAPQ_E_INVALID);
	http_route_parse("/v1/queues/q%2Fdead", &t);
	assert_int_equal(t.err, IMAPQ_E_INVALID);
}

static void test_methods_and_roles(void **state)
{
	(void)state;
	assert_true(http_route_methods(HTTP_ROUTE_QUEUE) & HTTP_DELETE);
	assert_false(http_route_methods(HTTP_ROUTE_CLAIMS) & HTTP_GET);
	assert_int_equal(http_method_parse("PATCH"), HTTP_OTHER);
	assert_int_equal(http_route_role(HTTP_ROUTE_MESSAGES, HTTP_POST), HTTP_ROLE_PRODUCER);
	assert_int_equal(http_route_role(HTTP_ROUTE_MESSAGES, HTTP_GET), HTTP_ROLE_CONSUMER);
	assert_int_equal(http_route_role(HTTP_ROUTE_QUEUE, HTTP_PUT), HTTP_ROLE_ADMIN);
	char allow[64];
	http_route_allow(HTTP_ROUTE_MESSAGES, allow, sizeof allow);
	assert_string_equal(allow, "GET, HEAD, POST");
}

static void test_percent_decode(void **state)
{
	(void)state;
	char out[8];
	assert_true(http_percent_decode("a%2fb", 5, out, sizeof out));
	assert_string_equal(out, "a/b");
	assert_false(http_percent_decode("a%2", 3, out, sizeof out));
	assert_false(http_percent_decode("a%zz", 4, out, sizeof out));
	assert_false(http_percent_decode("%00", 3, out, sizeof out));
	assert_false(http_percent_decode("12345678", 8, out, sizeof out));
	assert_true(http_percent_decode("1234567", 7, out, sizeof out));
}

static void test_json_precheck(void **state)
{
	(void)state;
	const char *why = NULL;
	char deep[200];
	memset(deep, '[', 65);
	memset(deep + 65, ']', 65);
	assert_int_equal(http_json_precheck(deep, 130, 64, &why), IMAPQ_E_INVALID);
	assert_int_equal(http_json_precheck(deep + 1, 128, 64, &why), IMAPQ_OK);
	/* Brackets inside strings do not count, escaped quotes do not end them. */
	const char *s = "{\"a\":\"[[[[\\\"[[[\"}";
	assert_int_equal(http_json_precheck(s, strlen(s), 1, &why), IMAPQ_OK);
	assert_int_equal(http_json_precheck("\"a\nb\"", 5, 8, &why), IMAPQ_E_INVALID);
	assert_int_equal(http_json_precheck("\"\xc3\x28\"", 4, 8, &why), IMAPQ_E_INVALID);
	assert_int_equal(http_json_precheck("\"\xed\xa0\x80\"", 5, 8, &why), IMAPQ_E_INVALID);
	assert_int_equal(http_json_precheck("\"a\0\"", 4, 8, &why), IMAPQ_E_INVALID);
	assert_int_equal(http_json_precheck("\"\xe2\x82\xac\"", 5, 8, &why), IMAPQ_OK);
}

static void test_json_parse_and_fields(void **state)
{
	(void)state;
	const char *why = NULL;
	cJSON *root = NULL;
	const char *ok = "{\"max\": 5, \"wait\": \"3\"}  \n";
	assert_int_equal(http_json_parse(ok, strlen(ok), &root, &why), IMAPQ_OK);
	static const char *const fields[] = {"max", "wait", NULL};
	static const char *const only_max[] = {"max", NULL};
	assert_int_equal(http_json_fields(root, fields, &why), IMAPQ_OK);
	assert_int_equal(http_json_fields(root, only_max, &why), IMAPQ_E_INVALID);
	uint32_t v = 0;
	assert_int_equal(http_json_uint(root, "max", 1, 10, &v, &why), IMAPQ_OK);
	assert_int_equal(v, 5);
	assert_int_equal(http_json_uint(root, "wait", 0, 30, &v, &why), IMAPQ_OK);
	assert_int_equal(v, 3);
	assert_int_equal(http_json_uint(root, "max", 6, 10, &v, &why), IMAPQ_E_INVALID);
	v = 99;
	assert_int_equal(http_json_uint(root, "absent", 0, 1, &v, &why), IMAPQ_OK);
	assert_int_equal(v, 99);
	cJSON_Delete(root);

	const char *frac = "{\"max\": 1.5}";
	assert_int_equal(http_json_parse(frac, strlen(frac), &root, &why), IMAPQ_OK);
	assert_int_equal(http_json_uint(root, "max", 0, 10, &v, &why), IMAPQ_E_INVALID);
	cJSON_Delete(root);

	const char *dup = "{\"max\":1,\"max\":2}";
	assert_int_equal(http_json_parse(dup, strlen(dup), &root, &why), IMAPQ_OK);
	assert_int_equal(http_json_fields(root, fields, &why), IMAPQ_E_INVALID);
	cJSON_Delete(root);

	const char *trailing = "{} {}";
	assert_int_equal(http_json_parse(trailing, strlen(trailing), &root, &why), IMAPQ_E_INVALID);
	assert_null(root);
	assert_int_equal(http_json_parse("{", 1, &root, &why), IMAPQ_E_INVALID);
	assert_int_equal(http_json_parse("", 0, &root, &why), IMAPQ_E_INVALID);
}

static void test_receipts_and_numbers(void **state)
{
	(void)state;
	struct queue_receipt r;
	assert_true(http_receipt_parse("17-9007199254740993", &r));
	assert_int_equal(r.uidvalidity, 17);
	assert_true(r.modseq == 9007199254740993ull);
	char text[32];
	http_receipt_format(r, text, sizeof text);
	assert_string_equal(text, "17-9007199254740993");
	assert_false(http_receipt_parse("17", &r));
	assert_false(http_receipt_parse("-5", &r));
	assert_false(http_receipt_parse("17-", &r));
	assert_false(http_receipt_parse("17-5x", &r));
	assert_false(http_receipt_parse("4294967296-5", &r));
	assert_false(http_receipt_parse("1-9223372036854775808", &r));
	assert_false(http_receipt_parse("1--5", &r));

	uint64_t v;
	assert_true(http_parse_u64("18446744073709551615", 0, UINT64_MAX, &v));
	assert_false(http_parse_u64("18446744073709551616", 0, UINT64_MAX, &v));
	assert_false(http_parse_u64("", 0, 10, &v));
	assert_false(http_parse_u64("+1", 0, 10, &v));
	assert_false(http_parse_u64("11", 0, 10, &v));

	http_time_format(86400 * 365, text, sizeof text);
	assert_string_equal(text, "1971-01-01T00:00:00Z");
	/* The per-thread cache keeps two times: alternating, then a third, each still right. */
	for (int i = 0; i < 3; i++) {
		http_time_format(0, text, sizeof text);
		assert_string_equal(text, "1970-01-01T00:00:00Z");
		http_time_format(86400 * 365 + 61, text, sizeof text);
		assert_string_equal(text, "1971-01-01T00:01:01Z");
	}
	http_time_format(951782400, text, sizeof text);
	assert_string_equal(text, "2000-02-29T00:00:00Z");
	http_time_format(0, text, sizeof text);
	assert_string_equal(text, "1970-01-01T00:00:00Z");
	http_time_format(951782400, text, 11);
	assert_string_equal(text, "2000-02-29");
	assert_true(http_content_type_is_json("application/json; charset=utf-8"));
	assert_true(http_content_type_is_json("Application/JSON"));
	assert_true(http_content_type_is_json("application/problem+json"));
	assert_false(http_content_type_is_json("text/plain"));
	assert_false(http_content_type_is_json("application/jsonx"));
	assert_false(http_content_type_is_json(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_routes),
	    cmocka_unit_test(test_methods_and_roles),
	    cmocka_unit_test(test_percent_decode),
	    cmocka_unit_test(test_json_precheck),
	    cmocka_unit_test(test_json_parse_and_fields),
	    cmocka_unit_test(test_receipts_and_numbers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
