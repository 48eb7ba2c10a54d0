/* Tests of the IMAP server's connection limits, in process: the values keep their promised order
 * (pre-authentication below post), peer addresses are keyed without their port, the output cap
 * follows the login state, loopback peers are exempt from the per-address limit (the limit itself
 * needs a second address: tests/integration/test_hostile.py), and a client that pipelines
 * without reading loses no reply. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "imap/base/limits.h"
#include "imap/server/server-private.h"
#include "tests/unit/imap_harness.h"

/* Pipelined commands in the flood test: their replies are many times the pre-login output cap. */
#define FLOOD_COMMANDS 2000

static void test_relations(void **state)
{
	(void)state;
	assert_true(IMAPQ_MAX_LINE_PREAUTH < IMAPQ_MAX_LINE);
	assert_true(IMAPQ_MAX_LITERAL_PREAUTH < IMAPQ_MAX_LITERAL);
	assert_true(IMAPQ_MAX_PENDING_OUTPUT_PREAUTH < IMAPQ_MAX_PENDING_OUTPUT);
	assert_true(IMAPQ_PREAUTH_TIMEOUT_S < IMAPQ_AUTH_TIMEOUT_S);
	assert_true(IMAPQ_LOGIN_DEADLINE_S >= IMAPQ_PREAUTH_TIMEOUT_S);
	/* RFC 3501 5.4: at least 30 minutes of silence before an autologout. */
	assert_true(IMAPQ_AUTH_TIMEOUT_S >= 30 * 60);
	assert_true(IMAPQ_MAX_CONNECTIONS_PER_ADDR <= IMAPQ_MAX_CONNECTIONS);
	assert_true(IMAPQ_HTTP_MAX_PER_IP <= IMAPQ_HTTP_MAX_CONNECTIONS);
	/* The poll daemon's share comes out of the per-address limit (http/http_accept.c). */
	assert_true(IMAPQ_HTTP_POLL_PER_THREAD * IMAPQ_HTTP_MAX_THREADS < IMAPQ_HTTP_MAX_PER_IP);
	/* A refused APPEND of any size up to the limit can be skipped to keep the stream. */
	assert_true(IMAPQ_MAX_LITERAL_DRAIN >= IMAPQ_MAX_MESSAGE_SIZE);
	assert_true(IMAPQ_HTTP_MAX_DRAIN >= IMAPQ_HTTP_MAX_BODY);
	assert_true(IMAPQ_HTTP_MAX_JSON <= IMAPQ_HTTP_MAX_BODY);
	/* One read never exceeds what a session may hold before it stops reading. */
	assert_true(IMAPQ_READ_CHUNK <= IMAPQ_MAX_PENDING_OUTPUT_PREAUTH);
}

static void test_addr_of(void **state)
{
	(void)state;
	char addr[64];
	session_addr_of("192.0.2.7:52094", addr, sizeof addr);
	assert_string_equal(addr, "192.0.2.7");
	session_addr_of("[2001:db8::1]:993", addr, sizeof addr);
	assert_string_equal(addr, "[2001:db8::1]");
	session_addr_of("?:0", addr, sizeof addr);
	assert_string_equal(addr, "?");
	session_addr_of("no-port", addr, sizeof addr);
	assert_string_equal(addr, "no-port");
	char small[4];
	session_addr_of("192.0.2.7:1", small, sizeof small);
	assert_string_equal(small, "192");
}

static void test_output_limit(void **state)
{
	(void)state;
	struct session s = {.state = STATE_NOT_AUTHENTICATED};
	assert_int_equal(session_output_limit(&s), IMAPQ_MAX_PENDING_OUTPUT_PREAUTH);
	s.state = STATE_AUTHENTICATED;
	assert_int_equal(session_output_limit(&s), IMAPQ_MAX_PENDING_OUTPUT);
	s.state = STATE_SELECTED;
	assert_int_equal(session_output_limit(&s), IMAPQ_MAX_PENDING_OUTPUT);
}

/* Connects to the harness's server (with a receive buffer of rcvbuf bytes unless 0) and reads
 * the first line into line (CRLF cut); returns the socket. */
static int connect_line(struct harness *h, int rcvbuf, char *line, size_t cap)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	if (rcvbuf > 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
	struct timeval tv = {.tv_sec = HARNESS_READ_TIMEOUT_S};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)h->port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	size_t len = 0;
	while (len + 1 < cap) {
		ssize_t n = read(fd, line + len, 1);
		assert_true(n >= 0);
		if (n == 0 || line[len] == '\n')
			break;
		len++;
	}
	line[len] = '\0';
	if (len > 0 && line[len - 1] == '\r')
		line[len - 1] = '\0';
	return fd;
}

static void test_loopback_exempt_from_per_address(void **state)
{
	struct harness *h = *state;
	static int fds[IMAPQ_MAX_CONNECTIONS_PER_ADDR + 1];
	char line[512];
	/* The harness listens on 127.0.0.1: a local proxy's clients all arrive from there. */
	for (size_t i = 0; i <= IMAPQ_MAX_CONNECTIONS_PER_ADDR; i++) {
		fds[i] = connect_line(h, 0, line, sizeof line);
		assert_true(strncmp(line, "* OK ", 5) == 0);
	}
	for (size_t i = 0; i <= IMAPQ_MAX_CONNECTIONS_PER_ADDR; i++)
		close(fds[i]);
}

static void test_pipelined_flood_loses_nothing(void **state)
{
	struct harness *h = *state;
	char line[512];
	/* A small receive buffer makes the replies back up into the server quickly. */
	struct conn *c = calloc(1, sizeof *c);
	assert_non_null(c);
	c->h = h;
	c->fd = connect_line(h, 4096, line, sizeof line);
	assert_true(strncmp(line, "* OK ", 5) == 0);
	/* Everything is sent before anything is read: the server must pause and resume reading
	 * (its output cap before login is far below the replies' total) without losing a reply. */
	char *all = malloc(FLOOD_COMMANDS * 24);
	assert_non_null(all);
	size_t len = 0;
	for (unsigned i = 0; i < FLOOD_COMMANDS; i++)
		len += (size_t)sprintf(all + len, "f%u CAPABILITY\r\n", i);
	send_raw(c, all, len);
	free(all);
	size_t answered = 0;
	for (unsigned i = 0; i < FLOOD_COMMANDS; i++) {
		char tag[16];
		snprintf(tag, sizeof tag, "f%u", i);
		struct lines untagged = {0};
		char *tagged = expect(c, tag, &untagged);
		assert_int_equal(untagged.n, 1);
		assert_true(strncmp(untagged.v[0], "* CAPABILITY ", 13) == 0);
		char want[32];
		snprintf(want, sizeof want, "%s OK ", tag);
		assert_true(strncmp(tagged, want, strlen(want)) == 0);
		answered++;
		free(tagged);
		lines_free(&untagged);
	}
	assert_int_equal(answered, FLOOD_COMMANDS);
	command_ok(c, "LOGIN u p", "OK", NULL);
	conn_close(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_relations),
	    cmocka_unit_test(test_addr_of),
	    cmocka_unit_test(test_output_limit),
	    cmocka_unit_test_setup_teardown(test_loopback_exempt_from_per_address, harness_setup,
					    harness_teardown),
	    cmocka_unit_test_setup_teardown(test_pipelined_flood_loses_nothing, harness_setup,
					    harness_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
