/* Tests of password checks off the event loop (imap/server/auth-worker.c), through a real server:
 * the auth callback runs on another thread while the loop keeps serving other sessions; commands
 * pipelined after LOGIN or AUTHENTICATE run after its answer, in order; a session that goes away
 * or a server that shuts down while a check is pending neither crashes nor leaks; past
 * IMAPQ_MAX_PENDING_LOGINS a login is refused at once; without a callback every login fails.
 *
 * The callback accepts any user with the password "p". User "gated" blocks until the test opens
 * the gate, so a check is in flight for exactly as long as a test needs; user "slow" sleeps. */
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "imap/base/limits.h"
#include "imap/server/server.h"
#include "tests/unit/imap_harness.h"

/* Milliseconds the "slow" user's check takes. */
#define SLOW_MS 200
/* Seconds a gated check waits at most, so a failed test cannot hang its teardown. */
#define GATE_LIMIT_S 10

/* What the callback saw, and the gate that holds "gated" checks. */
static struct {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	bool open;
	unsigned calls;	   /* checks started */
	unsigned returned; /* checks finished */
	unsigned on_loop;  /* checks that ran on the loop thread (must stay 0) */
	pthread_t loop_thread;
} gate = {.mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static imapq_err test_auth(void *ctx, const char *user, const char *password,
			   const struct access **access_r)
{
	(void)ctx;
	*access_r = NULL;
	pthread_mutex_lock(&gate.mu);
	gate.calls++;
	gate.on_loop += pthread_equal(pthread_self(), gate.loop_thread) != 0;
	pthread_cond_broadcast(&gate.cond);
	if (strcmp(user, "gated") == 0) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += GATE_LIMIT_S;
		while (!gate.open &&
		       pthread_cond_timedwait(&gate.cond, &gate.mu, &until) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&gate.mu);
	if (strcmp(user, "slow") == 0) {
		struct timespec pause = {.tv_nsec = SLOW_MS * 1000000L};
		nanosleep(&pause, NULL);
	}
	pthread_mutex_lock(&gate.mu);
	gate.returned++;
	pthread_cond_broadcast(&gate.cond);
	pthread_mutex_unlock(&gate.mu);
	return strcmp(password, "p") == 0 ? IMAPQ_OK : IMAPQ_E_AUTH;
}

static void gate_open(void)
{
	pthread_mutex_lock(&gate.mu);
	gate.open = true;
	pthread_cond_broadcast(&gate.cond);
	pthread_mutex_unlock(&gate.mu);
}

/* Waits until n checks have started; fails the test after a few seconds. */
static void gate_wait_calls(unsigned n)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += HARNESS_READ_TIMEOUT_S;
	pthread_mutex_lock(&gate.mu);
	while (gate.calls < n && pthread_cond_timedwait(&gate.cond, &gate.mu, &until) != ETIMEDOUT)
		;
	unsigned calls = gate.calls;
	pthread_mutex_unlock(&gate.mu);
	assert_true(calls >= n);
}

static unsigned gate_read(const unsigned *counter)
{
	pthread_mutex_lock(&gate.mu);
	unsigned v = *counter;
	pthread_mutex_unlock(&gate.mu);
	return v;
}

/* Starts a server with the given auth callback (NULL allowed) and a closed gate. */
static struct harness *start_with(imap_auth_fn *auth)
{
	pthread_mutex_lock(&gate.mu);
	gate.open = false;
	gate.calls = gate.returned = gate.on_loop = 0;
	pthread_mutex_unlock(&gate.mu);
	struct harness *h = harness_start_with(auth);
	pthread_mutex_lock(&gate.mu);
	gate.loop_thread = h->thread;
	pthread_mutex_unlock(&gate.mu);
	return h;
}

static int setup(void **state)
{
	*state = start_with(test_auth);
	return 0;
}

static int setup_no_auth(void **state)
{
	*state = start_with(NULL);
	return 0;
}

static int teardown(void **state)
{
	struct harness *h = *state;
	/* A test that failed midway may leave a check at the gate: the server waits for it. */
	gate_open();
	harness_stop(&h);
	assert_int_equal(gate.on_loop, 0);
	return 0;
}

/* True when the server sent c nothing it has not read (checked without waiting). */
static bool conn_silent(struct conn *c)
{
	struct pollfd p = {.fd = c->fd, .events = POLLIN};
	return c->len == 0 && poll(&p, 1, 0) == 0;
}

/* Makes the peer see a reset rather than a clean close: a paused session learns of it at once. */
static void conn_reset(struct conn **cp)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	setsockopt((*cp)->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	conn_close(cp);
}

/* Two round trips on an idle session: whatever reached the server's sockets before has been
 * handled by the loop by then (its epoll is level-triggered). */
static void settle(struct conn *c)
{
	command_ok(c, "NOOP", "OK", NULL);
	command_ok(c, "NOOP", "OK", NULL);
}

/* Sends text as it is (several command lines at once, so they arrive together). */
static void send_text(struct conn *c, const char *text)
{
	send_raw(c, text, strlen(text));
}

/* Reads the tagged reply of tag and asserts it starts with want (after the tag). */
static void expect_reply(struct conn *c, const char *tag, const char *want, struct lines *untagged)
{
	char *line = expect(c, tag, untagged);
	const char *rest = line + strlen(tag) + 1;
	if (strncmp(rest, want, strlen(want)) != 0)
		fail_msg("%s -> [%s], wanted [%s...]", tag, line, want);
	free(line);
}

static void test_check_does_not_hold_the_loop(void **state)
{
	struct harness *h = *state;
	struct conn *a = conn_open(h);
	struct conn *b = conn_open_raw(h, NULL);
	send_line(b, "b1 LOGIN gated p");
	gate_wait_calls(2); /* a's login, then b's, which now waits at the gate */
	/* The check is running: other sessions are served meanwhile. */
	command_ok(a, "NOOP", "OK", NULL);
	command_ok(a, "SELECT INBOX", "OK", NULL);
	struct conn *c = conn_open_raw(h, NULL);
	command_ok(c, "CAPABILITY", "OK", NULL);
	assert_int_equal(gate_read(&gate.returned), 1);
	assert_true(conn_silent(b));
	gate_open();
	struct lines untagged = {0};
	expect_reply(b, "b1", "OK Logged in", &untagged);
	assert_int_equal(lines_count(&untagged, "* CAPABILITY "), 1);
	lines_free(&untagged);
	command_ok(b, "SELECT INBOX", "OK", NULL);
	conn_close(&a);
	conn_close(&b);
	conn_close(&c);
}

static void test_pipelined_after_login_run_after_it(void **state)
{
	struct harness *h = *state;
	struct conn *b = conn_open_raw(h, NULL);
	/* SELECT is valid only once logged in: run before the answer, it would get BAD. */
	send_text(b, "b1 LOGIN slow p\r\nb2 NOOP\r\nb3 SELECT INBOX\r\nb4 LOGOUT\r\n");
	const char *tags[] = {"b1", "b2", "b3", "b4"};
	const char *want[] = {"OK Logged in", "OK", "OK", "OK"};
	for (size_t i = 0; i < 4; i++) {
		/* expect() would skip a tagged line of another command: read line by line. */
		char *line;
		for (line = conn_line(b); line[0] == '*'; line = conn_line(b))
			free(line);
		char prefix[32];
		snprintf(prefix, sizeof prefix, "%s %s", tags[i], want[i]);
		if (strncmp(line, prefix, strlen(prefix)) != 0)
			fail_msg("reply %zu is [%s], wanted [%s...]", i, line, prefix);
		free(line);
	}
	assert_true(conn_closed(b));
	conn_close(&b);
}

static void test_failed_login_then_pipelined(void **state)
{
	struct harness *h = *state;
	struct conn *b = conn_open_raw(h, NULL);
	send_text(b, "b1 LOGIN slow wrong\r\nb2 LOGIN u p\r\nb3 NOOP\r\n");
	expect_reply(b, "b1", "NO [AUTHENTICATIONFAILED]", NULL);
	expect_reply(b, "b2", "OK Logged in", NULL);
	expect_reply(b, "b3", "OK", NULL);
	assert_int_equal(gate_read(&gate.calls), 2);
	conn_close(&b);
}

static void test_authenticate_goes_through_the_worker(void **state)
{
	struct harness *h = *state;
	struct conn *a = conn_open(h);
	struct conn *b = conn_open_raw(h, NULL);
	/* "\0gated\0p" in base64, with SASL-IR, then as a continuation response. */
	send_text(b, "b1 AUTHENTICATE PLAIN AGdhdGVkAHA=\r\nb2 NOOP\r\n");
	gate_wait_calls(2);
	command_ok(a, "NOOP", "OK", NULL);
	assert_true(conn_silent(b));
	gate_open();
	expect_reply(b, "b1", "OK Logged in", NULL);
	expect_reply(b, "b2", "OK", NULL);

	struct conn *c = conn_open_raw(h, NULL);
	send_line(c, "c1 AUTHENTICATE PLAIN");
	char *cont = conn_line(c);
	assert_tagged(cont, "+");
	free(cont);
	send_text(c, "AHNsb3cAcA==\r\nc2 SELECT INBOX\r\n");
	expect_reply(c, "c1", "OK Logged in", NULL);
	expect_reply(c, "c2", "OK", NULL);
	assert_int_equal(gate_read(&gate.calls), 3);
	conn_close(&a);
	conn_close(&b);
	conn_close(&c);
}

static void test_session_gone_while_checked(void **state)
{
	struct harness *h = *state;
	struct conn *a = conn_open(h);
	struct conn *running = conn_open_raw(h, NULL);
	send_line(running, "r1 LOGIN gated p");
	gate_wait_calls(2);
	/* Queued behind the gated check; never started once its session is gone. */
	struct conn *queued = conn_open_raw(h, NULL);
	send_line(queued, "q1 LOGIN u p");
	settle(a);
	conn_reset(&queued);
	conn_reset(&running);
	settle(a);
	gate_open();
	/* The running check comes back to a session that no longer exists: nothing to answer. */
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += HARNESS_READ_TIMEOUT_S;
	pthread_mutex_lock(&gate.mu);
	while (gate.returned < 2 &&
	       pthread_cond_timedwait(&gate.cond, &gate.mu, &until) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&gate.mu);
	assert_int_equal(gate_read(&gate.returned), 2);
	settle(a);
	assert_int_equal(gate_read(&gate.calls), 2);
	/* The server goes on checking logins. */
	struct conn *b = conn_open(h);
	assert_int_equal(gate_read(&gate.calls), 3);
	conn_close(&a);
	conn_close(&b);
}

/* Runs on the loop: the SIGTERM path of the daemon. */
static void shutdown_server(void *arg)
{
	imap_server_shutdown(arg);
}

static void test_shutdown_while_checked(void **state)
{
	struct harness *h = *state;
	struct conn *b = conn_open_raw(h, NULL);
	send_line(b, "b1 LOGIN gated p");
	gate_wait_calls(1);
	struct conn *c = conn_open_raw(h, NULL);
	send_line(c, "c1 LOGIN u p");
	assert_int_equal(loop_post(h->loop, shutdown_server, h->server), IMAPQ_OK);
	/* Every session says goodbye and closes; the logins in flight get no answer. */
	char *line = conn_line(b);
	assert_string_equal(line, "* BYE Server shutting down");
	free(line);
	assert_true(conn_closed(b));
	line = conn_line(c);
	assert_string_equal(line, "* BYE Server shutting down");
	free(line);
	assert_true(conn_closed(c));
	conn_close(&b);
	conn_close(&c);
	gate_open();
}

static void test_stop_with_checks_in_flight(void **state)
{
	struct harness *h = *state;
	struct conn *b = conn_open_raw(h, NULL);
	struct conn *c = conn_open_raw(h, NULL);
	send_line(b, "b1 LOGIN gated p");
	send_line(c, "c1 LOGIN slow p");
	gate_wait_calls(1);
	/* The teardown frees the server while b's check runs and c's waits or runs. */
	gate_open();
}

static void test_pending_limit(void **state)
{
	struct harness *h = *state;
	struct conn *a = conn_open(h);
	struct conn *waiting[IMAPQ_MAX_PENDING_LOGINS];
	for (size_t i = 0; i < IMAPQ_MAX_PENDING_LOGINS; i++) {
		waiting[i] = conn_connect(h, NULL);
		send_line(waiting[i], "w1 LOGIN gated p");
	}
	gate_wait_calls(2);
	settle(a);
	/* Every slot is taken: the next login is refused at once, and the loop still serves. */
	struct conn *late = conn_connect(h, NULL);
	command_ok(late, "LOGIN u p", "NO [UNAVAILABLE] Too many logins in progress", NULL);
	command_ok(a, "NOOP", "OK", NULL);
	assert_int_equal(gate_read(&gate.calls), 2);
	gate_open();
	for (size_t i = 0; i < IMAPQ_MAX_PENDING_LOGINS; i++) {
		expect_reply(waiting[i], "w1", "OK Logged in", NULL);
		conn_close(&waiting[i]);
	}
	/* The refusal counted as no failure: the same session logs in once slots are free. */
	command_ok(late, "LOGIN u p", "OK", NULL);
	conn_close(&late);
	conn_close(&a);
}

static void test_no_callback_refuses(void **state)
{
	struct harness *h = *state;
	struct conn *b = conn_open_raw(h, NULL);
	send_text(b, "b1 LOGIN u p\r\nb2 CAPABILITY\r\n");
	expect_reply(b, "b1", "NO [AUTHENTICATIONFAILED] Invalid credentials", NULL);
	expect_reply(b, "b2", "OK", NULL);
	conn_close(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_check_does_not_hold_the_loop, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pipelined_after_login_run_after_it, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_failed_login_then_pipelined, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_authenticate_goes_through_the_worker, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_session_gone_while_checked, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_shutdown_while_checked, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stop_with_checks_in_flight, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pending_limit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_no_callback_refuses, setup_no_auth, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
