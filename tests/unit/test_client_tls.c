/* The client's TLS: implicit TLS and STARTTLS against an in-test OpenSSL server whose
 * certificate is made at test time, peer verification against a CA file, the system store and
 * a wrong name, and the explicit opt-out. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "imap/client/client.h"
#include "test_client_fake.h"
#include "tmpdir.h"

#define GREETING "* OK [CAPABILITY IMAP4rev1 IDLE] ready\r\n"

struct tls_env {
	char dir[TMPDIR_LEN];
	char cert[TMPDIR_LEN + 16];
	SSL_CTX *ctx;
};

static int setup(void **state)
{
	struct tls_env *env = calloc(1, sizeof(*env));

	if (env == NULL || !tmpdir_make(env->dir))
		return -1;
	snprintf(env->cert, sizeof(env->cert), "%s/cert.pem", env->dir);
	env->ctx = fake_tls_context(env->cert);
	if (env->ctx == NULL)
		return -1;
	*state = env;
	return 0;
}

static int teardown(void **state)
{
	struct tls_env *env = *state;

	SSL_CTX_free(env->ctx);
	tmpdir_remove(env->dir);
	free(env);
	return 0;
}

static const struct fake_step noop[] = {
    {.expect = "c1 NOOP\r\n", .reply = "c1 OK NOOP completed\r\n"},
};

/* Serves one implicit-TLS connection and connects with options o; returns the connect result
 * and leaves the connected client (if any) in *c_r. */
static imapq_err implicit(struct tls_env *env, struct fake_server *fs, struct client_options *o,
			  char *err, size_t errcap, struct client **c_r)
{
	memset(fs, 0, sizeof(*fs));
	fs->greeting = GREETING;
	fs->implicit_tls = true;
	fs->ctx = env->ctx;
	fs->steps = noop;
	fs->count = 1;
	assert_true(fake_start(fs));
	o->host = "127.0.0.1";
	o->port = fs->port;
	o->tls = CLIENT_TLS_IMPLICIT;
	return client_connect(o, err, errcap, c_r);
}

static void test_implicit_tls_verified(void **state)
{
	struct tls_env *env = *state;
	struct client_options o = {.ca_file = env->cert};
	struct fake_server fs;
	struct client *c = NULL;
	char err[256];

	assert_int_equal(implicit(env, &fs, &o, err, sizeof(err), &c), IMAPQ_OK);
	assert_true(client_is_tls(c));
	assert_true(client_has_cap(c, "IDLE"));
	assert_int_equal(client_cmdf(c, NULL, NULL, "NOOP"), IMAPQ_OK);
	assert_string_equal(client_reply(c)->text, "NOOP completed");
	client_destroy(&c);
	assert_null(fake_finish(&fs));
}

/* Connects over implicit TLS with options o, which must succeed, and runs one NOOP. */
static void expect_accepted(struct tls_env *env, struct client_options *o)
{
	struct fake_server fs;
	struct client *c = NULL;
	char err[256];

	assert_int_equal(implicit(env, &fs, o, err, sizeof(err), &c), IMAPQ_OK);
	assert_int_equal(client_cmdf(c, NULL, NULL, "NOOP"), IMAPQ_OK);
	client_destroy(&c);
	assert_null(fake_finish(&fs));
}

/* Connects over implicit TLS with options o, whose check of the peer must fail with an error
 * naming why (NULL: any error). */
static void expect_refused(struct tls_env *env, struct client_options *o, const char *why)
{
	struct fake_server fs;
	struct client *c = NULL;
	char err[256];

	assert_int_equal(implicit(env, &fs, o, err, sizeof(err), &c), IMAPQ_E_AUTH);
	assert_null(c);
	if (why != NULL)
		assert_non_null(strstr(err, why));
	assert_non_null(fake_finish(&fs)); /* the server saw the handshake fail */
}

/* The certificate checked against its DNS name rather than its IP address. */
static void test_implicit_tls_by_name(void **state)
{
	struct tls_env *env = *state;
	struct client_options o = {.ca_file = env->cert, .server_name = "localhost"};

	expect_accepted(env, &o);
}

/* The system store does not know the test's certificate; the peer is refused by default. */
static void test_untrusted_certificate_refused(void **state)
{
	struct client_options o = {0};

	expect_refused(*state, &o, "not trusted");
}

static void test_wrong_name_refused(void **state)
{
	struct tls_env *env = *state;
	struct client_options o = {.ca_file = env->cert, .server_name = "imap.example.org"};

	expect_refused(env, &o, NULL);
}

static void test_insecure_skips_checks(void **state)
{
	struct client_options o = {.tls_insecure = true, .server_name = "imap.example.org"};

	expect_accepted(*state, &o);
}

/* STARTTLS: bytes injected after the OK in plaintext are dropped, capabilities from before TLS
 * are forgotten and asked again, and login then runs inside TLS. */
static void test_starttls(void **state)
{
	static const struct fake_step steps[] = {
	    {.expect = "c1 STARTTLS\r\n",
	     .reply = "c1 OK Begin TLS negotiation now\r\n* OK injected\r\n",
	     .starttls = true},
	    {.expect = "c2 CAPABILITY\r\n",
	     .reply = "* CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR\r\nc2 OK\r\n"},
	    {.expect = "c3 AUTHENTICATE PLAIN AGRlbW8AcHc=\r\n",
	     .reply = "c3 OK [CAPABILITY IMAP4rev1 IDLE CONDSTORE] Logged in\r\n"},
	};
	struct tls_env *env = *state;
	struct fake_server fs = {
	    .greeting = "* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] hi\r\n",
	    .ctx = env->ctx,
	    .steps = steps,
	    .count = 3,
	};
	struct client_options o = {
	    .host = "127.0.0.1", .tls = CLIENT_TLS_STARTTLS, .ca_file = env->cert};
	struct client *c = NULL;
	char err[256];

	assert_true(fake_start(&fs));
	o.port = fs.port;
	assert_int_equal(client_connect(&o, err, sizeof(err), &c), IMAPQ_OK);
	assert_true(client_is_tls(c));
	assert_false(client_has_cap(c, "STARTTLS"));
	assert_false(client_has_cap(c, "LOGINDISABLED"));
	assert_int_equal(client_login(c, "demo", "pw"), IMAPQ_OK);
	assert_true(client_has_cap(c, "CONDSTORE"));
	client_destroy(&c);
	const char *failure = fake_finish(&fs);

	if (failure != NULL)
		fail_msg("%s", failure);
}

static void test_starttls_not_offered(void **state)
{
	struct fake_server fs = {.greeting = GREETING, .end = FAKE_END_WAIT};
	struct client_options o = {.host = "127.0.0.1", .tls = CLIENT_TLS_STARTTLS};
	struct client *c = NULL;
	char err[256];

	assert_true(fake_start(&fs));
	o.port = fs.port;
	assert_int_equal(client_connect(&o, err, sizeof(err), &c), IMAPQ_E_UNSUPPORTED);
	assert_null(c);
	assert_non_null(strstr(err, "STARTTLS"));
	assert_null(fake_finish(&fs));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_implicit_tls_verified),
	    cmocka_unit_test(test_implicit_tls_by_name),
	    cmocka_unit_test(test_untrusted_certificate_refused),
	    cmocka_unit_test(test_wrong_name_refused),
	    cmocka_unit_test(test_insecure_skips_checks),
	    cmocka_unit_test(test_starttls),
	    cmocka_unit_test(test_starttls_not_offered),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
