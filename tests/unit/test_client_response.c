/* The client's response parser on canned bytes: every kind of response, typed fields, literals,
 * responses fed whole, byte by byte and in random splits, and malformed input. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "imap/base/buf.h"
#include "imap/client/response.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Appends a readable summary of one value. */
static void describe_value(struct buf *b, const struct client_value *v)
{
	switch (v->type) {
	case CLIENT_VALUE_ATOM:
		buf_printf(b, "%s", v->str);
		break;
	case CLIENT_VALUE_STRING:
		buf_printf(b, "\"%.*s\"", (int)v->len, v->str);
		break;
	case CLIENT_VALUE_NIL:
		buf_puts(b, "NIL");
		break;
	case CLIENT_VALUE_LIST:
		buf_puts(b, "(");
		for (size_t i = 0; i < v->count; i++) {
			if (i > 0)
				buf_puts(b, " ");
			describe_value(b, &v->items[i]);
		}
		buf_puts(b, ")");
		break;
	}
}

static void describe_set(struct buf *b, const char *label, const struct seqset *set)
{
	char text[256];

	if (set == NULL)
		return;
	seqset_format(set, text, sizeof(text));
	buf_printf(b, " %s=%s", label, text);
}

/* A summary of everything typed in a response, so that two parses can be compared. */
static void describe(struct buf *b, const struct client_response *r)
{
	buf_printf(b, "type=%d name=%s", r->type, r->name ? r->name : "-");
	if (r->tag)
		buf_printf(b, " tag=%s", r->tag);
	if (r->status)
		buf_printf(b, " status=%d", r->status);
	if (r->code.name)
		buf_printf(b, " code=%s/%d[%s] n=%llu", r->code.name, r->code.type, r->code.text,
			   (unsigned long long)r->code.number);
	describe_set(b, "set", r->code.set);
	describe_set(b, "set2", r->code.set2);
	if (r->text)
		buf_printf(b, " text=%s", r->text);
	if (r->number)
		buf_printf(b, " number=%u", r->number);
	for (size_t i = 0; i < r->word_count; i++) {
		buf_puts(b, i ? " " : " words=");
		describe_value(b, &r->words[i]);
	}
	if (r->type == CLIENT_RESP_FETCH) {
		const struct client_fetch *f = &r->fetch;

		buf_printf(b, " have=%u uid=%u modseq=%llu size=%llu date=%s", f->have, f->uid,
			   (unsigned long long)f->modseq, (unsigned long long)f->size,
			   f->internaldate ? f->internaldate : "-");
		for (size_t i = 0; i < f->flag_count; i++)
			buf_printf(b, " flag=%s", f->flags[i].str);
		for (size_t i = 0; i < f->section_count; i++)
			buf_printf(b, " %s=<%.*s>", f->sections[i].name,
				   f->sections[i].data ? (int)f->sections[i].len : 3,
				   f->sections[i].data ? f->sections[i].data : "NIL");
		for (size_t i = 0; i < f->annotation_count; i++)
			buf_printf(b, " ann=%s/%s=%s", f->annotations[i].entry,
				   f->annotations[i].attribute,
				   f->annotations[i].value ? f->annotations[i].value : "NIL");
	}
	if (r->type == CLIENT_RESP_SEARCH) {
		for (size_t i = 0; i < r->search.count; i++)
			buf_printf(b, " n=%u", r->search.numbers[i]);
		if (r->search.have_modseq)
			buf_printf(b, " modseq=%llu", (unsigned long long)r->search.modseq);
	}
	if (r->type == CLIENT_RESP_ESEARCH) {
		const struct client_esearch *e = &r->esearch;

		buf_printf(b, " etag=%s uid=%d have=%u min=%u max=%u count=%llu emodseq=%llu",
			   e->tag ? e->tag : "-", e->uid, e->have, e->min, e->max,
			   (unsigned long long)e->count, (unsigned long long)e->modseq);
		describe_set(b, "all", e->all);
	}
	if (r->type == CLIENT_RESP_VANISHED) {
		buf_printf(b, " earlier=%d", r->vanished.earlier);
		describe_set(b, "uids", r->vanished.uids);
	}
	buf_puts(b, "\n");
}

/* Parses input fed in pieces of the given sizes (cycled; 0 = all at once) and returns every
 * response's summary, or "ERROR <message>" at the first error. The caller frees the text. */
static char *parse_all(const char *input, size_t len, const size_t *pieces, size_t npieces,
		       size_t max_response)
{
	struct client_parser *p;
	struct buf out = {0};
	size_t pos = 0, k = 0;
	char *text;

	assert_int_equal(client_parser_create(max_response, &p), IMAPQ_OK);
	while (pos < len) {
		size_t n = npieces && pieces[k % npieces] ? pieces[k % npieces] : len - pos;

		k++;
		if (n > len - pos)
			n = len - pos;
		/* Each piece lives in its own allocation so ASan sees any read past it. */
		char *piece = malloc(n);
		size_t off = 0;

		memcpy(piece, input + pos, n);
		while (off < n) {
			size_t used;
			enum client_parse_result r =
			    client_parser_feed(p, piece + off, n - off, &used);

			assert_true(used <= n - off);
			off += used;
			if (r == CLIENT_PARSE_ERROR) {
				const char *msg;

				client_parser_error(p, &msg);
				buf_printf(&out, "ERROR %s\n", msg);
				free(piece);
				goto done;
			}
			if (r == CLIENT_PARSE_RESPONSE)
				describe(&out, client_parser_response(p));
			else
				assert_int_equal(off, n);
		}
		free(piece);
		pos += n;
	}
done:
	client_parser_destroy(&p);
	assert_null(p);
	buf_append(&out, "", 1);
	text = strdup(buf_bytes(&out));
	buf_free(&out);
	return text;
}

/* A transcript with every kind of response the client reads. */
static const char transcript[] =
    "* OK [CAPABILITY IMAP4rev1 LITERAL+ IDLE CONDSTORE] imapq ready\r\n"
    "* CAPABILITY IMAP4rev1 ESEARCH QRESYNC AUTH=PLAIN\r\n"
    "* ENABLED CONDSTORE QRESYNC\r\n"
    "* FLAGS (\\Seen \\Deleted $Claimed)\r\n"
    "* OK [PERMANENTFLAGS (\\Seen \\*)] Flags permitted\r\n"
    "* 3 EXISTS\r\n"
    "* 0 RECENT\r\n"
    "* OK [UIDVALIDITY 1795511329] UIDs valid\r\n"
    "* OK [HIGHESTMODSEQ 9223372036854775807] Highest\r\n"
    "t1 OK [READ-WRITE] SELECT completed\r\n"
    "* 1 FETCH (UID 7 FLAGS (\\Recent $Claimed) MODSEQ (12) RFC822.SIZE 44 "
    "INTERNALDATE \"24-Nov-2026 09:37:02 +0000\")\r\n"
    "* 2 FETCH (UID 8 BODY[] {12}\r\nhello\r\nworld BODY[HEADER.FIELDS (SUBJECT)] NIL "
    "BODY[TEXT]<0> \"a \\\"q\\\"\")\r\n"
    "* 2 FETCH (UID 8 ANNOTATION (/vendor/imapq/attempts (value.shared \"2\") "
    "/vendor/imapq/due (value.shared NIL)))\r\n"
    "* SEARCH 4 2 9 (MODSEQ 17)\r\n"
    "* SEARCH\r\n"
    "* ESEARCH (TAG \"t6\") UID MIN 1 MAX 9 COUNT 4 ALL 1:3,9\r\n"
    "* ESEARCH (TAG \"t7\") UID\r\n"
    "* VANISHED (EARLIER) 1:5,9\r\n"
    "* VANISHED 12\r\n"
    "* 4 EXPUNGE\r\n"
    "t2 OK [MODIFIED 7,9:10] Conditional STORE failed\r\n"
    "t3 OK [APPENDUID 38505 3955] APPEND completed\r\n"
    "t4 OK [COPYUID 38505 304,319:320 3956:3958] Done\r\n"
    "t5 NO [TRYCREATE] No such mailbox\r\n"
    "t6 BAD Unknown command\r\n"
    "+ idling\r\n"
    "+\r\n"
    "* LIST (\\HasNoChildren) \"/\" {4}\r\njobs\r\n"
    "* OK [X-UNKNOWN [nested] text] odd\r\n"
    "* BYE shutting down\r\n";

static const char expected[] =
    "type=2 name=OK status=1 code=CAPABILITY/3[IMAP4rev1 LITERAL+ IDLE CONDSTORE] n=0 text=imapq "
    "ready\n"
    "type=3 name=CAPABILITY words=IMAP4rev1 ESEARCH QRESYNC AUTH=PLAIN\n"
    "type=4 name=ENABLED words=CONDSTORE QRESYNC\n"
    "type=5 name=FLAGS words=\\Seen \\Deleted $Claimed\n"
    "type=2 name=OK status=1 code=PERMANENTFLAGS/4[(\\Seen \\*)] n=0 text=Flags permitted\n"
    "type=6 name=EXISTS number=3\n"
    "type=7 name=RECENT\n"
    "type=2 name=OK status=1 code=UIDVALIDITY/9[1795511329] n=1795511329 text=UIDs valid\n"
    "type=2 name=OK status=1 code=HIGHESTMODSEQ/11[9223372036854775807] n=9223372036854775807 "
    "text=Highest\n"
    "type=0 name=OK tag=t1 status=1 code=READ-WRITE/6[] n=0 text=SELECT completed\n"
    "type=9 name=FETCH number=1 have=31 uid=7 modseq=12 size=44 date=24-Nov-2026 09:37:02 +0000 "
    "flag=\\Recent flag=$Claimed\n"
    "type=9 name=FETCH number=2 have=1 uid=8 modseq=0 size=0 date=- BODY[]=<hello\r\nworld> "
    "BODY[HEADER.FIELDS (SUBJECT)]=<NIL> BODY[TEXT]<0>=<a \"q\">\n"
    "type=9 name=FETCH number=2 have=1 uid=8 modseq=0 size=0 date=- "
    "ann=/vendor/imapq/attempts/value.shared=2 ann=/vendor/imapq/due/value.shared=NIL\n"
    "type=10 name=SEARCH words=4 2 9 (MODSEQ 17) n=4 n=2 n=9 modseq=17\n"
    "type=10 name=SEARCH\n"
    "type=11 name=ESEARCH words=(TAG \"t6\") UID MIN 1 MAX 9 COUNT 4 ALL 1:3,9 etag=t6 uid=1 "
    "have=15 min=1 max=9 count=4 emodseq=0 all=1:3,9\n"
    "type=11 name=ESEARCH words=(TAG \"t7\") UID etag=t7 uid=1 have=0 min=0 max=0 count=0 "
    "emodseq=0\n"
    "type=12 name=VANISHED words=(EARLIER) 1:5,9 earlier=1 uids=1:5,9\n"
    "type=12 name=VANISHED words=12 earlier=0 uids=12\n"
    "type=8 name=EXPUNGE number=4\n"
    "type=0 name=OK tag=t2 status=1 code=MODIFIED/13[7,9:10] n=0 set=7,9:10 text=Conditional "
    "STORE failed\n"
    "type=0 name=OK tag=t3 status=1 code=APPENDUID/14[38505 3955] n=38505 set=3955 text=APPEND "
    "completed\n"
    "type=0 name=OK tag=t4 status=1 code=COPYUID/15[38505 304,319:320 3956:3958] n=38505 "
    "set=304,319:320 set2=3956:3958 text=Done\n"
    "type=0 name=NO tag=t5 status=2 code=TRYCREATE/7[] n=0 text=No such mailbox\n"
    "type=0 name=BAD tag=t6 status=3 text=Unknown command\n"
    "type=1 name=+ text=idling\n"
    "type=1 name=+ text=\n"
    "type=13 name=LIST words=(\\HasNoChildren) \"/\" \"jobs\"\n"
    "type=2 name=OK status=1 code=X-UNKNOWN/1[[nested] text] n=0 text=odd\n"
    "type=2 name=BYE status=4 text=shutting down\n";

static void test_transcript_whole(void **state)
{
	char *got = parse_all(transcript, sizeof(transcript) - 1, NULL, 0, 0);

	assert_string_equal(got, expected);
	free(got);
}

static void test_transcript_byte_by_byte(void **state)
{
	static const size_t one[] = {1};
	char *got = parse_all(transcript, sizeof(transcript) - 1, one, 1, 0);

	assert_string_equal(got, expected);
	free(got);
}

static void test_transcript_random_splits(void **state)
{
	size_t pieces[64];

	srand(12345);
	for (int round = 0; round < 40; round++) {
		for (size_t i = 0; i < 64; i++)
			pieces[i] = 1 + (size_t)(rand() % 97);
		char *got = parse_all(transcript, sizeof(transcript) - 1, pieces, 64, 0);

		assert_string_equal(got, expected);
		free(got);
	}
}

/* Bare LF line ends are accepted; one feed stops after each response. */
static void test_feed_stops_after_each_response(void **state)
{
	static const char two[] = "* 1 EXISTS\na1 OK done\r\n";
	struct client_parser *p;
	size_t used;

	assert_int_equal(client_parser_create(0, &p), IMAPQ_OK);
	assert_int_equal(client_parser_feed(p, two, sizeof(two) - 1, &used), CLIENT_PARSE_RESPONSE);
	assert_int_equal(used, 11);
	assert_int_equal(client_parser_response(p)->type, CLIENT_RESP_EXISTS);
	assert_int_equal(client_parser_feed(p, two + used, sizeof(two) - 1 - used, &used),
			 CLIENT_PARSE_RESPONSE);
	assert_string_equal(client_parser_response(p)->tag, "a1");
	assert_string_equal(client_parser_response(p)->text, "done");
	assert_int_equal(client_parser_feed(p, "", 0, &used), CLIENT_PARSE_MORE);
	assert_int_equal(used, 0);
	client_parser_destroy(&p);
}

/* A literal holding NUL bytes and CRLFs keeps every byte and its length. */
static void test_literal_with_nul(void **state)
{
	static const char in[] = "* 1 FETCH (UID 2 BODY[] {6}\r\na\0\r\nb\n)\r\n";
	struct client_parser *p;
	size_t used;

	assert_int_equal(client_parser_create(0, &p), IMAPQ_OK);
	assert_int_equal(client_parser_feed(p, in, sizeof(in) - 1, &used), CLIENT_PARSE_RESPONSE);
	const struct client_fetch *f = &client_parser_response(p)->fetch;

	assert_int_equal(f->section_count, 1);
	assert_int_equal(f->sections[0].len, 6);
	assert_memory_equal(f->sections[0].data, "a\0\r\nb\n", 6);
	assert_int_equal(f->sections[0].data[6], '\0');
	client_parser_destroy(&p);
}

static void expect_error(const char *input, size_t max_response, const char *message)
{
	char *got = parse_all(input, strlen(input), NULL, 0, max_response);
	char want[256];

	snprintf(want, sizeof(want), "ERROR %s\n", message);
	assert_string_equal(got, want);
	free(got);
}

static void test_malformed(void **state)
{
	expect_error("* 1 FETCH (UID)\r\n", 0, "FETCH data is malformed");
	expect_error("* 1 FETCH (UID 0)\r\n", 0, "FETCH UID is malformed");
	expect_error("* 1 FETCH (MODSEQ 5)\r\n", 0, "FETCH MODSEQ is malformed");
	expect_error("* 1 FETCH (UID 1\r\n", 0, "unterminated list");
	expect_error("* 0 EXPUNGE\r\n", 0, "sequence number 0");
	expect_error("* ESEARCH (TAG \"x\") MIN\r\n", 0, "ESEARCH data lacks a value");
	expect_error("* ESEARCH ALL 3:x\r\n", 0, "a number set is malformed");
	expect_error("* SEARCH 1 two\r\n", 0, "a number is malformed");
	expect_error("* SEARCH 1 0\r\n", 0, "SEARCH result is malformed");
	expect_error("* VANISHED (LATER) 1\r\n", 0, "VANISHED is malformed");
	expect_error("a1 MAYBE fine\r\n", 0, "a tagged response lacks OK, NO or BAD");
	expect_error("a1 OK [MODIFIED x] no\r\n", 0, "a number set is malformed");
	expect_error("a1 OK [UIDNEXT] no\r\n", 0, "a response code lacks its number");
	expect_error("a1 OK [APPENDUID 1] no\r\n", 0, "a UIDPLUS code lacks arguments");
	expect_error("a1 OK [ALERT unterminated\r\n", 0, "unterminated response code");
	expect_error("* LIST () \"a\\x\" x\r\n", 0, "bad escape in a quoted string");
	expect_error("* LIST () \"open\r\n", 0, "unterminated quoted string");
	expect_error("*OK\r\n", 0, "'*' is not followed by a space");
	expect_error("* LIST ) x\r\n", 0, "unbalanced ')'");
	expect_error("(a) OK\r\n", 0, "a response starts with neither '*', '+' nor a tag");
	expect_error("\r\n", 0, "a value is missing");
	/* Limits: a literal or a line past the response size, and deep nesting. */
	expect_error("* 1 FETCH (BODY[] {100}\r\n", 64,
		     "a literal exceeds the response size limit");
	expect_error("* OK 0123456789012345678901234567890123456789012345678901234567890123456789",
		     64, "a response line is too long");
	char deep[400] = "* X ";

	for (int i = 0; i < 90; i++)
		strcat(deep, "(");
	strcat(deep, "\r\n");
	expect_error(deep, 0, "lists nest too deeply");
}

/* After an error the parser refuses everything: the stream cannot be trusted again. */
static void test_error_is_final(void **state)
{
	struct client_parser *p;
	size_t used;
	const char *msg;

	assert_int_equal(client_parser_create(0, &p), IMAPQ_OK);
	assert_int_equal(client_parser_feed(p, "garbage\r\n", 9, &used), CLIENT_PARSE_ERROR);
	assert_int_equal(client_parser_error(p, &msg), IMAPQ_E_INVALID);
	assert_int_equal(client_parser_feed(p, "* 1 EXISTS\r\n", 12, &used), CLIENT_PARSE_ERROR);
	client_parser_reset(p);
	assert_int_equal(client_parser_feed(p, "* 1 EXISTS\r\n", 12, &used), CLIENT_PARSE_RESPONSE);
	assert_int_equal(client_parser_error(p, &msg), IMAPQ_OK);
	client_parser_destroy(&p);
}

static void test_value_helpers(void **state)
{
	struct client_value v = {
	    .type = CLIENT_VALUE_ATOM, .str = "18446744073709551615", .len = 20};
	uint64_t n;

	assert_true(client_value_number(&v, UINT64_MAX, &n));
	assert_true(n == UINT64_MAX);
	assert_false(client_value_number(&v, UINT32_MAX, &n));
	v.str = "18446744073709551616";
	assert_false(client_value_number(&v, UINT64_MAX, &n));
	v.str = "12a";
	v.len = 3;
	assert_false(client_value_number(&v, UINT64_MAX, &n));
	v.str = "fetch";
	v.len = 5;
	assert_true(client_value_is(&v, "FETCH"));
	assert_false(client_value_is(&v, "FETCHX"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_transcript_whole),
	    cmocka_unit_test(test_transcript_byte_by_byte),
	    cmocka_unit_test(test_transcript_random_splits),
	    cmocka_unit_test(test_feed_stops_after_each_response),
	    cmocka_unit_test(test_literal_with_nul),
	    cmocka_unit_test(test_malformed),
	    cmocka_unit_test(test_error_is_final),
	    cmocka_unit_test(test_value_helpers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
