/* Unit tests of the HTTP front's pure parts: routing, percent-decoding, the JSON precheck and
 * strict field readers, receipts and numbers; and a claim whose job bodies cannot all be read,
 * through a real server with a journal read seam. The served API is tested end to end by
 * tests/integration/test_http.py. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/http-private.h"
#include "imap/store/journal-private.h"
#include "tests/unit/queue_fixture.h"

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

/* Precheck of text (a C string) with room for depth 8. */
static imapq_err strict(const char *text)
{
	const char *why = NULL;
	imapq_err err = http_json_precheck(text, strlen(text), 8, &why);
	assert_true(err == IMAPQ_OK || why != NULL);
	return err;
}

static void test_json_strict(void **state)
{
	(void)state;
	/* RFC 8259 numbers pass, alone and in every position. */
	static const char *const good[] = {
	    "0",
	    "-0",
	    "7",
	    "-12",
	    "0.5",
	    "-0.5",
	    "1e5",
	    "1E+5",
	    "1e-05",
	    "1.25E-3",
	    "[0,-1,2]",
	    "{\"a\":0}",
	    "{\"a\":-1.5e3}",
	    "[1]",
	    " \t\r\n1 ",
	    "[true,false,null]",
	    "\"01 -.5 \\u00e9\"",
	    "{\"a\":[{\"b\":1.0}]}",
	};
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		assert_int_equal(strict(good[i]), IMAPQ_OK);
		cJSON *root = NULL;
		const char *why = NULL;
		assert_int_equal(http_json_parse(good[i], strlen(good[i]), &root, &why), IMAPQ_OK);
		cJSON_Delete(root);
	}
	/* What cJSON also takes: numbers outside the grammar, control bytes as whitespace, a
	 * BOM, and any other byte between tokens. */
	static const char *const bad[] = {
	    "01",	  "-01",    "00",	  "1.",		"-.5",	       ".5",
	    "+1",	  "1e",	    "1e+",	  "1.e5",	"-",	       "1.5.5",
	    "1e5e5",	  "1.5e",   "{\"a\":01}", "{\"a\":1.}", "{\"a\":-.5}", "[1,-]",
	    "[1-2]",	  "\x01{}", "{\x1f}",	  "[1,\x0b 2]", "{}\x7f",      "\xef\xbb\xbf{}",
	    "[\xc2\xa0]", "[1\f]",  "[TRUE]",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_int_equal(strict(bad[i]), IMAPQ_E_INVALID);
		cJSON *root = NULL;
		const char *why = NULL;
		assert_int_equal(http_json_parse(bad[i], strlen(bad[i]), &root, &why),
				 IMAPQ_E_INVALID);
		assert_null(root);
	}
	/* Letters are left to cJSON, which takes only true, false and null. */
	cJSON *hex = NULL;
	const char *why = NULL;
	assert_int_equal(http_json_parse("0x10", 4, &hex, &why), IMAPQ_E_INVALID);
	assert_int_equal(http_json_parse("[nul]", 5, &hex, &why), IMAPQ_E_INVALID);
	assert_null(hex);
	/* Long numbers pass whole. */
	char num[101];
	memset(num, '1', 100);
	num[100] = '\0';
	cJSON *n = NULL;
	const char *nwhy = NULL;
	assert_int_equal(http_json_parse(num, 100, &n, &nwhy), IMAPQ_OK);
	assert_true(cJSON_IsNumber(n));
	cJSON_Delete(n);
	/* Inputs cJSON alone accepts. */
	static const char *const lenient[] = {"{\"a\":01}", "\x01{\"b\":-.5,\"c\":1.}",
					      "\xef\xbb\xbf{\"a\":1}"};
	for (size_t i = 0; i < sizeof lenient / sizeof lenient[0]; i++) {
		cJSON *root = cJSON_Parse(lenient[i]);
		assert_non_null(root);
		cJSON_Delete(root);
		assert_int_equal(strict(lenient[i]), IMAPQ_E_INVALID);
	}
	/* A number that ends the text is checked to its last byte. */
	assert_int_equal(http_json_precheck("[1.5", 4, 8, &why), IMAPQ_OK);
	assert_int_equal(http_json_precheck("1.5", 2, 8, &why), IMAPQ_E_INVALID);
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

/* --- A claim whose jobs cannot all be read, through a real server on a loopback port --- */

/* Bodies holding this text cannot be read: their journal reads fail with EIO. */
static const char poison[] = "poisoned-body";

static ssize_t poisoned_pread(int fd, void *buf, size_t len, off_t offset)
{
	ssize_t n = pread(fd, buf, len, offset);
	if (n > 0 && memmem(buf, (size_t)n, poison, sizeof poison - 1) != NULL) {
		errno = EIO;
		return -1;
	}
	return n;
}

static imapq_err allow_all(void *ctx, const char *token, enum http_role role, const char *queue,
			   const struct access **access_r)
{
	(void)ctx;
	(void)token;
	(void)role;
	(void)queue;
	*access_r = NULL;
	return IMAPQ_OK;
}

/* A claim of up to 10 jobs of "jobs", and a peek at its ready jobs with their bodies. */
static const char claim_request[] =
    "POST /v1/queues/jobs/claims HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer t\r\n"
    "Content-Type: application/json\r\nContent-Length: 10\r\nConnection: close\r\n\r\n"
    "{\"max\":10}";
static const char peek_request[] =
    "GET /v1/queues/jobs/messages?state=ready&body=true HTTP/1.1\r\nHost: t\r\n"
    "Authorization: Bearer t\r\nConnection: close\r\n\r\n";

/* Sends req to port and returns the status; *body_r is the parsed reply (NULL when it is not
 * JSON). */
static unsigned send_over_http(unsigned port, const char *req, cJSON **body_r)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	static char reply[65536];
	size_t have = 0;
	ssize_t n;
	while ((n = read(fd, reply + have, sizeof reply - 1 - have)) > 0)
		have += (size_t)n;
	close(fd);
	reply[have] = '\0';
	unsigned status = 0;
	assert_int_equal(sscanf(reply, "HTTP/1.1 %u", &status), 1);
	const char *body = strstr(reply, "\r\n\r\n");
	assert_non_null(body);
	*body_r = cJSON_Parse(body + 4);
	return status;
}

/* Ids of the jobs of "jobs" in state, as a bit set (ids below 64). */
static void collect_id(void *arg, const struct queue_job *job)
{
	if (job->id < 64)
		*(uint64_t *)arg |= 1ull << job->id;
}

static uint64_t ids_in(struct queue_fixture *f, enum queue_state state)
{
	uint64_t ids = 0;
	assert_int_equal(queue_peek(f->qs, "jobs", state, 64, collect_id, &ids), IMAPQ_OK);
	return ids;
}

/* Starts a server on f and sends req with poisoned bodies unreadable. */
static unsigned send_poisoned(struct queue_fixture *f, const char *req, cJSON **body_r)
{
	struct http_options ho = {
	    .qs = f->qs, .store = f->store, .host = "127.0.0.1", .auth = allow_all};
	struct http_server *server = NULL;
	assert_int_equal(http_server_create(&ho, &server), IMAPQ_OK);
	atomic_store(&journal_pread_fn, poisoned_pread);
	unsigned status = send_over_http(http_server_port(server), req, body_r);
	atomic_store(&journal_pread_fn, pread);
	http_server_destroy(&server);
	return status;
}

/* One unreadable job is left out of the claim's reply and released alone; the others are
 * answered with 200 and stay claimed. */
static void test_claim_leaves_out_an_unreadable_job(void **state)
{
	struct queue_fixture *f = *state;
	uint32_t a = put(f, "jobs", "{\"n\":1}", 0);
	uint32_t bad = put(f, "jobs", poison, 0);
	uint32_t c = put(f, "jobs", "three", 0);
	cJSON *body = NULL;
	assert_int_equal(send_poisoned(f, claim_request, &body), 200);
	assert_non_null(body);
	const cJSON *list = cJSON_GetObjectItemCaseSensitive(body, "messages");
	assert_int_equal(cJSON_GetArraySize(list), 2);
	char ida[16], idc[16];
	snprintf(ida, sizeof ida, "%u", a);
	snprintf(idc, sizeof idc, "%u", c);
	assert_string_equal(
	    cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(list, 0), "id")->valuestring, ida);
	assert_string_equal(
	    cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(list, 1), "id")->valuestring, idc);
	cJSON_Delete(body);
	assert_true(ids_in(f, QUEUE_READY) == 1ull << bad);
	assert_true(ids_in(f, QUEUE_CLAIMED) == ((1ull << a) | (1ull << c)));
}

/* When no claimed job can be read, the claim fails as a whole and every job goes back. */
static void test_claim_of_only_unreadable_jobs_fails(void **state)
{
	struct queue_fixture *f = *state;
	uint32_t a = put(f, "jobs", poison, 0);
	uint32_t b = put(f, "jobs", poison, 0);
	cJSON *body = NULL;
	assert_int_equal(send_poisoned(f, claim_request, &body), 500);
	assert_non_null(body);
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(
				cJSON_GetObjectItemCaseSensitive(body, "error"), "code")
				->valuestring,
			    "io_error");
	cJSON_Delete(body);
	assert_true(ids_in(f, QUEUE_READY) == ((1ull << a) | (1ull << b)));
	assert_true(ids_in(f, QUEUE_CLAIMED) == 0);
}

/* A peek shows a job whose body cannot be read, with body_error instead of its body. */
static void test_peek_shows_an_unreadable_job(void **state)
{
	struct queue_fixture *f = *state;
	put(f, "jobs", "one", 0);
	put(f, "jobs", poison, 0);
	cJSON *body = NULL;
	assert_int_equal(send_poisoned(f, peek_request, &body), 200);
	assert_non_null(body);
	const cJSON *list = cJSON_GetObjectItemCaseSensitive(body, "messages");
	assert_int_equal(cJSON_GetArraySize(list), 2);
	const cJSON *good = cJSON_GetArrayItem(list, 0), *bad = cJSON_GetArrayItem(list, 1);
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(good, "body")->valuestring, "one");
	assert_null(cJSON_GetObjectItemCaseSensitive(good, "body_error"));
	assert_null(cJSON_GetObjectItemCaseSensitive(bad, "body"));
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(bad, "body_error")->valuestring,
			    "io_error");
	cJSON_Delete(body);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_routes),
	    cmocka_unit_test(test_methods_and_roles),
	    cmocka_unit_test(test_percent_decode),
	    cmocka_unit_test(test_json_precheck),
	    cmocka_unit_test(test_json_strict),
	    cmocka_unit_test(test_json_parse_and_fields),
	    cmocka_unit_test(test_receipts_and_numbers),
	    cmocka_unit_test_setup_teardown(test_claim_leaves_out_an_unreadable_job,
					    queue_fixture_setup, queue_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_claim_of_only_unreadable_jobs_fails,
					    queue_fixture_setup, queue_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_peek_shows_an_unreadable_job, queue_fixture_setup,
					    queue_fixture_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
