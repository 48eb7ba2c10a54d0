/* The message module: ENVELOPE and BODY/BODYSTRUCTURE of hand-checked messages, malformed and
 * hostile input, and the limits that bound it. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap/base/limits.h"
#include "imap/mail/mail-private.h"
#include "imap/mail/mail.h"
#include "tests/unit/test_mail_util.h"

/* Envelope of a message, as a NUL-terminated string owned by the caller. */
static char *envelope_of(const char *msg, size_t len)
{
	struct mem_msg m = mem_msg_make(msg, len, 0);
	struct mail *mail;
	struct buf out = {0};

	assert_int_equal(mail_parse(mem_msg_bind(&m), &mail), IMAPQ_OK);
	assert_int_equal(mail_write_envelope(mail, &out), IMAPQ_OK);
	mail_free(&mail);
	assert_null(mail);
	return buf_to_str(&out);
}

/* BODY (extended false) or BODYSTRUCTURE of a message. */
static char *body_of(const char *msg, size_t len, bool extended)
{
	struct mem_msg m = mem_msg_make(msg, len, 0);
	struct mail *mail;
	struct buf out = {0};

	assert_int_equal(mail_parse(mem_msg_bind(&m), &mail), IMAPQ_OK);
	assert_int_equal(mail_write_bodystructure(mail, extended, &out), IMAPQ_OK);
	mail_free(&mail);
	return buf_to_str(&out);
}

static void expect_envelope(const char *msg, const char *want)
{
	char *got = envelope_of(msg, strlen(msg));

	assert_string_equal(got, want);
	free(got);
}

static void expect_body(const char *msg, bool extended, const char *want)
{
	char *got = body_of(msg, strlen(msg), extended);

	assert_string_equal(got, want);
	free(got);
}

static const char simple_msg[] = "From: Alice <alice@example.com>\r\n"
				 "To: bob@example.org\r\n"
				 "Subject: Hello\r\n"
				 "Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
				 "Message-ID: <1@example.com>\r\n"
				 "In-Reply-To: <0@example.com>\r\n"
				 "\r\n"
				 "Line one\r\n"
				 "Line two\r\n";

static void test_simple_text(void **state)
{
	const char *alice = "((\"Alice\" NIL \"alice\" \"example.com\"))";
	char want[512];

	snprintf(want, sizeof(want),
		 "(\"Mon, 7 Feb 1994 21:52:25 -0800\" \"Hello\" %s %s %s "
		 "((NIL NIL \"bob\" \"example.org\")) NIL NIL \"<0@example.com>\" "
		 "\"<1@example.com>\")",
		 alice, alice, alice);
	expect_envelope(simple_msg, want);
	expect_body(simple_msg, false,
		    "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 20 2)");
	expect_body(simple_msg, true,
		    "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 20 2 NIL NIL "
		    "NIL NIL)");
}

static void test_no_header(void **state)
{
	const char *msg = "hello world\r\nsecond\r\n";

	expect_envelope(msg, "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
	expect_body(msg, false,
		    "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 21 2)");
	/* An empty header: only the blank line. */
	expect_body("\r\nbody\r\n", false,
		    "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 6 1)");
	/* An empty message. */
	expect_envelope("", "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
	expect_body("", false,
		    "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0)");
	/* A last line without a line break still counts. */
	expect_body("\r\nab\r\ncd", false,
		    "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 6 2)");
}

static void test_header_only(void **state)
{
	const char *msg = "Subject: x\r\nFrom: a@b\r\n";

	expect_envelope(msg, "(NIL \"x\" ((NIL NIL \"a\" \"b\")) ((NIL NIL \"a\" \"b\")) "
			     "((NIL NIL \"a\" \"b\")) NIL NIL NIL NIL NIL)");
	expect_body(msg, false,
		    "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0)");
}

static const char mixed_msg[] = "From: a@b\r\n"
				"Content-Type: multipart/mixed; boundary=\"XX\"\r\n"
				"\r\n"
				"preamble\r\n"
				"--XX\r\n"
				"Content-Type: text/plain; charset=utf-8\r\n"
				"\r\n"
				"Hi\r\n"
				"--XX\r\n"
				"Content-Type: application/pdf; name=\"a.pdf\"\r\n"
				"Content-Transfer-Encoding: base64\r\n"
				"Content-Disposition: attachment; filename=\"a.pdf\"\r\n"
				"Content-ID: <p1>\r\n"
				"Content-Description: A doc\r\n"
				"Content-Language: en, de\r\n"
				"Content-Location: http://x/a.pdf\r\n"
				"Content-MD5: abc=\r\n"
				"\r\n"
				"QUJD\r\n"
				"REVG\r\n"
				"--XX--\r\n"
				"epilogue\r\n";

static void test_multipart_mixed(void **state)
{
	expect_body(
	    mixed_msg, false,
	    "((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7BIT\" 2 1)"
	    "(\"application\" \"pdf\" (\"name\" \"a.pdf\") \"<p1>\" \"A doc\" \"base64\" 10) "
	    "\"mixed\")");
	expect_body(
	    mixed_msg, true,
	    "((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7BIT\" 2 1 NIL NIL NIL NIL)"
	    "(\"application\" \"pdf\" (\"name\" \"a.pdf\") \"<p1>\" \"A doc\" \"base64\" 10 "
	    "\"abc=\" (\"attachment\" (\"filename\" \"a.pdf\")) (\"en\" \"de\") "
	    "\"http://x/a.pdf\") \"mixed\" (\"boundary\" \"XX\") NIL NIL NIL)");
}

static const char nested_msg[] = "Content-Type: multipart/mixed; boundary=outer\r\n"
				 "\r\n"
				 "--outer\r\n"
				 "Content-Type: multipart/alternative; boundary=inner\r\n"
				 "\r\n"
				 "--inner\r\n"
				 "Content-Type: text/plain\r\n"
				 "\r\n"
				 "plain\r\n"
				 "--inner\r\n"
				 "Content-Type: text/html\r\n"
				 "\r\n"
				 "<p>html</p>\r\n"
				 "--inner--\r\n"
				 "--outer\r\n"
				 "Content-Type: image/png\r\n"
				 "\r\n"
				 "PNG\r\n"
				 "--outer--\r\n";

static void test_nested_alternative(void **state)
{
	expect_body(nested_msg, false,
		    "(((\"text\" \"plain\" NIL NIL NIL \"7BIT\" 5 1)"
		    "(\"text\" \"html\" NIL NIL NIL \"7BIT\" 11 1) \"alternative\")"
		    "(\"image\" \"png\" NIL NIL NIL \"7BIT\" 3) \"mixed\")");
	expect_body(nested_msg, true,
		    "(((\"text\" \"plain\" NIL NIL NIL \"7BIT\" 5 1 NIL NIL NIL NIL)"
		    "(\"text\" \"html\" NIL NIL NIL \"7BIT\" 11 1 NIL NIL NIL NIL) \"alternative\" "
		    "(\"boundary\" \"inner\") NIL NIL NIL)"
		    "(\"image\" \"png\" NIL NIL NIL \"7BIT\" 3 NIL NIL NIL NIL) \"mixed\" "
		    "(\"boundary\" \"outer\") NIL NIL NIL)");
}

static const char rfc822_msg[] = "From: outer@x.com\r\n"
				 "Subject: fwd\r\n"
				 "Content-Type: multipart/mixed; boundary=b\r\n"
				 "\r\n"
				 "--b\r\n"
				 "Content-Type: text/plain\r\n"
				 "\r\n"
				 "see attached\r\n"
				 "--b\r\n"
				 "Content-Type: message/rfc822\r\n"
				 "\r\n"
				 "From: inner@y.org\r\n"
				 "Subject: inner subject\r\n"
				 "\r\n"
				 "inner body\r\n"
				 "--b--\r\n";

static void test_message_rfc822(void **state)
{
	const char *inner = "((NIL NIL \"inner\" \"y.org\"))";
	char want[1024];

	snprintf(
	    want, sizeof(want),
	    "((\"text\" \"plain\" NIL NIL NIL \"7BIT\" 12 1 NIL NIL NIL NIL)"
	    "(\"message\" \"rfc822\" NIL NIL NIL \"7BIT\" 55 "
	    "(NIL \"inner subject\" %s %s %s NIL NIL NIL NIL NIL) "
	    "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 10 1 NIL NIL NIL NIL) "
	    "4 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"b\") NIL NIL NIL)",
	    inner, inner, inner);
	expect_body(rfc822_msg, true, want);
	expect_envelope(
	    rfc822_msg,
	    "(NIL \"fwd\" ((NIL NIL \"outer\" \"x.com\")) ((NIL NIL \"outer\" \"x.com\")) "
	    "((NIL NIL \"outer\" \"x.com\")) NIL NIL NIL NIL NIL)");
}

static void test_digest_default(void **state)
{
	const char *msg = "Content-Type: multipart/digest; boundary=d\r\n"
			  "\r\n"
			  "--d\r\n"
			  "\r\n"
			  "Subject: one\r\n"
			  "\r\n"
			  "1\r\n"
			  "--d--\r\n";

	expect_body(
	    msg, false,
	    "((\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 17 "
	    "(NIL \"one\" NIL NIL NIL NIL NIL NIL NIL NIL) "
	    "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 1 1) 3) \"digest\")");
}

static void test_addresses(void **state)
{
	const char *msg =
	    "From: =?UTF-8?Q?J=C3=B6rg?= <jorg@example.de>\r\n"
	    "Sender:\r\n"
	    "Reply-To: (only a comment)\r\n"
	    "To: undisclosed-recipients:;\r\n"
	    "Cc: \"Doe, John\" <john@example.com>, Team: a@x.com, \"B  B\" <b@y.com>;,\r\n"
	    " (Carol Comment) carol@z.com\r\n"
	    "Bcc: bare@host.com (Dave Comment), \"quoted\\\"name\" <q@h>,\r\n"
	    "\t<@route1,@route2:r@h.com>, nodomain, John Q. Public <jqp@x>\r\n"
	    "\r\n";
	const char *from = "((\"=?UTF-8?Q?J=C3=B6rg?=\" NIL \"jorg\" \"example.de\"))";
	char want[2048];

	snprintf(want, sizeof(want),
		 "(NIL NIL %s %s %s ((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) "
		 "((\"Doe, John\" NIL \"john\" \"example.com\")(NIL NIL \"Team\" NIL)"
		 "(NIL NIL \"a\" \"x.com\")(\"B  B\" NIL \"b\" \"y.com\")(NIL NIL NIL NIL)"
		 "(\"Carol Comment\" NIL \"carol\" \"z.com\")) "
		 "((\"Dave Comment\" NIL \"bare\" \"host.com\")(\"quoted\\\"name\" NIL \"q\" \"h\")"
		 "(NIL \"@route1,@route2\" \"r\" \"h.com\")(NIL NIL \"nodomain\" \"\")"
		 "(\"John Q. Public\" NIL \"jqp\" \"x\")) NIL NIL)",
		 from, from, from);
	expect_envelope(msg, want);
}

static void test_unterminated_group_and_junk(void **state)
{
	expect_envelope(
	    "To: G: a@b\r\nCc: ,,, ;\r\nBcc: <>\r\n\r\n",
	    "(NIL NIL NIL NIL NIL ((NIL NIL \"G\" NIL)(NIL NIL \"a\" \"b\")(NIL NIL NIL NIL)) "
	    "NIL ((NIL NIL \"\" \"\")) NIL NIL)");
}

static void test_eight_bit_literal(void **state)
{
	const char *msg = "Subject: caf\xc3\xa9\r\n\r\n";

	expect_envelope(msg, "(NIL {5}\r\ncaf\xc3\xa9 NIL NIL NIL NIL NIL NIL NIL NIL)");
}

static void test_missing_content_type_in_part(void **state)
{
	const char *msg = "Content-Type: multipart/mixed; boundary=q\r\n"
			  "\r\n"
			  "--q\r\n"
			  "X-Note: none\r\n"
			  "\r\n"
			  "text\r\n"
			  "--q\r\n"
			  "Content-Type: broken\r\n"
			  "\r\n"
			  "x\r\n"
			  "--q--";

	expect_body(
	    msg, false,
	    "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 4 1)"
	    "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 1 1) \"mixed\")");
}

static void test_line_endings(void **state)
{
	const char *lf = "Content-Type: multipart/mixed; boundary=b\n"
			 "\n"
			 "--b\n"
			 "\n"
			 "one\n"
			 "two\n"
			 "--b--\n";
	const char *crlf = "Content-Type: multipart/mixed; boundary=b\r\n"
			   "\r\n"
			   "--b\r\n"
			   "\r\n"
			   "one\r\n"
			   "two\r\n"
			   "--b--\r\n";

	expect_body(
	    lf, false,
	    "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 7 2) \"mixed\")");
	expect_body(
	    crlf, false,
	    "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 8 2) \"mixed\")");
	/* An empty last line before the boundary is a line of the body. */
	expect_body(
	    "Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\n\n--b--\n", false,
	    "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 4 1) \"mixed\")");
}

static void test_multipart_edge_cases(void **state)
{
	/* No boundary parameter: text/plain. */
	expect_body("Content-Type: multipart/mixed\r\n\r\nx\r\n", false,
		    "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 3 1)");
	/* No part at all: one empty text/plain part. */
	expect_body(
	    "Content-Type: multipart/mixed; boundary=z\r\n\r\nnothing\r\n", false,
	    "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0) \"mixed\")");
	/* No close delimiter; a part that ends in its header. */
	expect_body(
	    "Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\nContent-Type: "
	    "text/x\r\n--z\r\n\r\nlast",
	    false,
	    "((\"text\" \"x\" NIL NIL NIL \"7BIT\" 0 0)"
	    "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 4 1) \"mixed\")");
	/* A line that only starts like the boundary is body text. */
	expect_body(
	    "Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\n\r\n--zz\r\n--z--\r\n", false,
	    "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 4 1) \"mixed\")");
}

static void test_header_beyond_limit(void **state)
{
	const char *head = "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
			   "Content-Type: text/html\r\n";
	const char *tail = "\r\nbody\r\n--b\r\nContent-Type: image/gif\r\n\r\nGIF\r\n--b--\r\n";
	size_t long_len = MAIL_MAX_HEADER_BYTES + 100;
	size_t len = strlen(head) + 8 + long_len + 2 + strlen(tail);
	char *msg = malloc(len + 1);

	assert_non_null(msg);
	char *p = msg;

	p += sprintf(p, "%s", head);
	memcpy(p, "X-Long: ", 8);
	p += 8;
	memset(p, 'a', long_len);
	p += long_len;
	sprintf(p, "\r\n%s", tail);
	assert_int_equal(strlen(msg), len);

	char *got = body_of(msg, len, false);
	char want[256];

	/* The header stops before X-Long; that line, the blank line and "body" are the body. */
	snprintf(want, sizeof(want),
		 "((\"text\" \"html\" NIL NIL NIL \"7BIT\" %zu 3)(\"image\" \"gif\" NIL NIL NIL "
		 "\"7BIT\" 3) \"mixed\")",
		 8 + long_len + 2 + 2 + 4);
	assert_string_equal(got, want);
	free(got);
	free(msg);
}

/* Counts the deepest parenthesis nesting of a BODYSTRUCTURE without literals. */
static int max_nesting(const char *s)
{
	int depth = 0, max = 0;
	bool quoted = false;

	for (; *s != '\0'; s++) {
		if (quoted) {
			if (*s == '\\')
				s++;
			else if (*s == '"')
				quoted = false;
		} else if (*s == '"') {
			quoted = true;
		} else if (*s == '(') {
			if (++depth > max)
				max = depth;
		} else if (*s == ')') {
			depth--;
		}
	}
	assert_int_equal(depth, 0);
	return max;
}

static void test_deep_multipart(void **state)
{
	struct buf msg = {0};
	const int levels = 200;

	buf_puts(&msg, "Content-Type: multipart/mixed; boundary=b0\r\n\r\n");
	for (int i = 1; i < levels; i++)
		buf_printf(&msg, "--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n",
			   i - 1, i);
	buf_puts(&msg, "--b199\r\n\r\ninnermost\r\n");
	for (int i = levels - 1; i >= 0; i--)
		buf_printf(&msg, "--b%d--\r\n", i);
	char *got = body_of(buf_bytes(&msg), buf_len(&msg), true);
	int nest = max_nesting(got);

	assert_true(nest <= 2 * MAIL_MAX_DEPTH + 4);
	assert_true(nest >= MAIL_MAX_DEPTH);
	free(got);
	buf_free(&msg);
}

static void test_deep_rfc822(void **state)
{
	struct buf msg = {0};

	for (int i = 0; i < 200; i++)
		buf_puts(&msg, "Content-Type: message/rfc822\r\n\r\n");
	buf_puts(&msg, "Subject: deep\r\n\r\nbottom\r\n");
	char *got = body_of(buf_bytes(&msg), buf_len(&msg), false);

	assert_true(max_nesting(got) >= MAIL_MAX_DEPTH);
	free(got);
	got = envelope_of(buf_bytes(&msg), buf_len(&msg));
	assert_string_equal(got, "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
	free(got);
	buf_free(&msg);
}

static void test_many_parts(void **state)
{
	struct buf msg = {0};

	buf_puts(&msg, "Content-Type: multipart/mixed; boundary=p\r\n\r\n");
	for (int i = 0; i < MAIL_MAX_PARTS + 50; i++)
		buf_puts(&msg, "--p\r\n\r\nx\r\n");
	buf_puts(&msg, "--p--\r\n");
	struct mem_msg m = mem_msg_make(buf_bytes(&msg), buf_len(&msg), 0);
	struct mail *mail;

	assert_int_equal(mail_parse(mem_msg_bind(&m), &mail), IMAPQ_OK);
	size_t n = 0;

	for (const struct mail_part *c = mail->root->children; c != NULL; c = c->next)
		n++;
	assert_int_equal(n, MAIL_MAX_PARTS - 1);
	mail_free(&mail);
	buf_free(&msg);
}

/* Checks the offsets of a part tree against the message size. */
static void check_tree(const struct mail_part *part, uint64_t size)
{
	for (; part != NULL; part = part->next) {
		assert_true(part->hdr_off + part->hdr_size <= size);
		assert_true(part->body_off + part->body_size <= size);
		assert_true(part->hdr_off + part->hdr_size <= part->body_off);
		assert_true(part->body_lines <= part->body_size + 1);
		assert_non_null(part->type);
		assert_non_null(part->subtype);
		check_tree(part->children, size);
		check_tree(part->embedded, size);
	}
}

static void test_random_input(void **state)
{
	static const char *const pieces[] = {
	    "--b\r\n",
	    "--b--\r\n",
	    "--c\r\n",
	    "\r\n",
	    "\n",
	    "\r",
	    ":",
	    "From: a@b, <c@d>\r\n",
	    "Content-Type: multipart/mixed; boundary=b\r\n",
	    "Content-Type: multipart/digest; boundary=c\r\n",
	    "Content-Type: message/rfc822\r\n",
	    " folded\r\n",
	    "To: g:;\r\n",
	    "(((",
	    "\"",
	    "<",
	    "\\",
	    "x",
	    "\xff\x00",
	    "Subject: s\r\n",
	    "Date: 1 Jan 2000 00:00 +0000\r\n",
	};
	const size_t npieces = sizeof(pieces) / sizeof(pieces[0]);
	static const char *const sections[] = {
	    "",		 "1",	     "2",    "1.1",
	    "2.MIME",	 "1.HEADER", "TEXT", "HEADER.FIELDS (From Subject)",
	    "1.2.3.TEXT"};

	for (unsigned seed = 1; seed <= 400; seed++) {
		struct buf msg = {0};
		unsigned x = seed * 2654435761u;
		int n = (int)(x % (seed % 4 == 0 ? 2000 : 120));

		for (int i = 0; i < n; i++) {
			x = x * 1103515245u + 12345u;
			if (seed % 4 == 0 ||
			    (x >> 16) % 5 == 0) { /* every 4th message is pure noise */
				char c = (char)(x >> 8);

				buf_append(&msg, &c, 1);
			} else {
				const char *p = pieces[(x >> 16) % npieces];

				buf_append(&msg, p, p[0] == '\xff' ? 2 : strlen(p));
			}
		}
		const char *bytes = msg.data != NULL ? buf_bytes(&msg) : "";
		struct mem_msg m = mem_msg_make(bytes, buf_len(&msg), 1 + seed % 13);
		struct mail *mail;
		struct buf out = {0}, text = {0};
		bool match;

		assert_int_equal(mail_parse(mem_msg_bind(&m), &mail), IMAPQ_OK);
		check_tree(mail->root, buf_len(&msg));
		assert_int_equal(mail_write_envelope(mail, &out), IMAPQ_OK);
		assert_int_equal(mail_write_bodystructure(mail, true, &out), IMAPQ_OK);
		assert_int_equal(mail_write_bodystructure(mail, false, &out), IMAPQ_OK);
		for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
			struct mail_section sec;

			assert_int_equal(mail_section_resolve(mail, &m.reader, sections[i],
							      strlen(sections[i]), &text, &sec),
					 IMAPQ_OK);
			mail_section_partial(&sec, seed % 7, seed % 11);
			assert_int_equal(mail_section_copy(&m.reader, &text, &sec, &out), IMAPQ_OK);
		}
		assert_int_equal(mail_text_contains(mail, &m.reader, "b--", 3, true, &match),
				 IMAPQ_OK);
		assert_int_equal(mail_header_contains(mail, &m.reader, "from", "a", 1, &match),
				 IMAPQ_OK);
		mail_free(&mail);
		buf_free(&out);
		buf_free(&text);
		buf_free(&msg);
	}
}

/* A reader that fails after the first window. */
static imapq_err failing_read(void *ctx, uint64_t offset, void *buf, size_t len, size_t *got_r)
{
	if (offset > 0)
		return IMAPQ_E_IO;
	memset(buf, 'x', len);
	*got_r = len;
	return IMAPQ_OK;
}

static void test_reader_error(void **state)
{
	struct mail_reader r = {failing_read, NULL, 3 * MAIL_READ_WINDOW};
	struct mail *mail = (struct mail *)&r;

	assert_int_equal(mail_parse(&r, &mail), IMAPQ_E_IO);
	assert_null(mail);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_simple_text),
	    cmocka_unit_test(test_no_header),
	    cmocka_unit_test(test_header_only),
	    cmocka_unit_test(test_multipart_mixed),
	    cmocka_unit_test(test_nested_alternative),
	    cmocka_unit_test(test_message_rfc822),
	    cmocka_unit_test(test_digest_default),
	    cmocka_unit_test(test_addresses),
	    cmocka_unit_test(test_unterminated_group_and_junk),
	    cmocka_unit_test(test_eight_bit_literal),
	    cmocka_unit_test(test_missing_content_type_in_part),
	    cmocka_unit_test(test_line_endings),
	    cmocka_unit_test(test_multipart_edge_cases),
	    cmocka_unit_test(test_header_beyond_limit),
	    cmocka_unit_test(test_deep_multipart),
	    cmocka_unit_test(test_deep_rfc822),
	    cmocka_unit_test(test_many_parts),
	    cmocka_unit_test(test_random_input),
	    cmocka_unit_test(test_reader_error),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
