/* libFuzzer target: the IMAP client's response parser (imap/client/response.h), fed a server's
 * stream whole and again split at points the input chooses. Both feeds must yield the same
 * responses and end in the same state, and every field of every response is read so that a
 * dangling pointer or a length past its data shows up under ASan.
 *
 * Input: byte 0 picks the response size limit; bytes 1-8 are chunk sizes (each 1-256 bytes,
 * used in turn); the rest is the stream. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "imap/client/response.h"
#include "tests/fuzz/fuzz.h"

/* Responses compared per input: enough for any stream the fuzzer builds in its length limit. */
#define MAX_RESPONSES 4096

/* A digest of one response: every byte the parser hands out goes into it. */
static uint64_t mix(uint64_t h, const void *p, size_t len)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < len; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h;
}

static uint64_t mix_u64(uint64_t h, uint64_t v)
{
	return mix(h, &v, sizeof v);
}

static uint64_t mix_str(uint64_t h, const char *s)
{
	return s == NULL ? mix_u64(h, 0x6e756c6c) : mix(h, s, strlen(s) + 1);
}

static uint64_t digest_value(uint64_t h, const struct client_value *v, unsigned depth)
{
	fuzz_check(depth < 1000);
	h = mix_u64(h, v->type);
	switch (v->type) {
	case CLIENT_VALUE_ATOM:
	case CLIENT_VALUE_STRING:
		fuzz_check(v->str != NULL && v->str[v->len] == '\0');
		h = mix(h, v->str, v->len);
		break;
	case CLIENT_VALUE_NIL:
		break;
	case CLIENT_VALUE_LIST:
		fuzz_check(v->count == 0 || v->items != NULL);
		for (size_t i = 0; i < v->count; i++)
			h = digest_value(h, &v->items[i], depth + 1);
		break;
	}
	uint64_t n;
	if (client_value_number(v, UINT64_MAX, &n))
		h = mix_u64(h, n);
	return h;
}

static uint64_t digest_values(uint64_t h, const struct client_value *v, size_t count)
{
	fuzz_check(count == 0 || v != NULL);
	for (size_t i = 0; i < count; i++)
		h = digest_value(h, &v[i], 0);
	return h;
}

static uint64_t digest_set(uint64_t h, const struct seqset *set)
{
	if (set == NULL)
		return mix_u64(h, 0);
	const struct seqset_range *r = seqset_ranges(set);
	size_t n = seqset_range_count(set);
	fuzz_check(n == 0 || r != NULL);
	h = mix(h, r, n * sizeof(*r));
	return mix_u64(h, seqset_size(set));
}

static uint64_t digest_fetch(uint64_t h, const struct client_fetch *f)
{
	h = mix_u64(h, f->have);
	h = mix_u64(h, f->uid);
	h = mix_u64(h, f->modseq);
	h = mix_u64(h, f->size);
	h = mix_str(h, f->internaldate);
	h = digest_values(h, f->flags, f->flag_count);
	for (size_t i = 0; i < f->section_count; i++) {
		h = mix_str(h, f->sections[i].name);
		if (f->sections[i].data != NULL)
			h = mix(h, f->sections[i].data, f->sections[i].len);
	}
	for (size_t i = 0; i < f->annotation_count; i++) {
		h = mix_str(h, f->annotations[i].entry);
		h = mix_str(h, f->annotations[i].attribute);
		if (f->annotations[i].value != NULL)
			h = mix(h, f->annotations[i].value, f->annotations[i].len);
	}
	return digest_values(h, f->items, f->item_count);
}

static uint64_t digest(const struct client_response *r)
{
	uint64_t h = 0xcbf29ce484222325ull;

	h = mix_u64(h, r->type);
	h = mix_str(h, r->tag);
	h = mix_u64(h, r->status);
	h = mix_u64(h, r->code.type);
	h = mix_str(h, r->code.name);
	h = mix_str(h, r->code.text);
	h = digest_values(h, r->code.args, r->code.arg_count);
	h = mix_u64(h, r->code.number);
	h = digest_set(h, r->code.set);
	h = digest_set(h, r->code.set2);
	h = mix_str(h, r->text);
	h = mix_u64(h, r->number);
	h = mix_str(h, r->name);
	h = digest_values(h, r->words, r->word_count);
	h = digest_fetch(h, &r->fetch);
	fuzz_check(r->search.count == 0 || r->search.numbers != NULL);
	h = mix(h, r->search.numbers, r->search.count * sizeof(*r->search.numbers));
	h = mix_u64(h, r->search.have_modseq ? r->search.modseq : 1);
	h = mix_str(h, r->esearch.tag);
	h = mix_u64(h, r->esearch.have);
	h = mix_u64(h, r->esearch.min ^ (uint64_t)r->esearch.max << 32);
	h = mix_u64(h, r->esearch.count ^ r->esearch.modseq);
	h = digest_set(h, r->esearch.all);
	h = mix_u64(h, r->vanished.earlier);
	return digest_set(h, r->vanished.uids);
}

/* What one pass over the stream produced. */
struct pass {
	uint64_t digests[MAX_RESPONSES];
	size_t n;
	bool failed;
	imapq_err err;
	size_t consumed; /* bytes taken before the end or the error */
};

/* Feeds stream[0..len) in pieces of chunks[] (cycled; all zero: the whole stream at once). */
static void run_pass(size_t max_response, const uint8_t *stream, size_t len, const uint8_t *chunks,
		     struct pass *out)
{
	struct client_parser *p = NULL;
	size_t pos = 0, turn = 0;

	fuzz_check(client_parser_create(max_response, &p) == IMAPQ_OK);
	memset(out, 0, sizeof(*out));
	while (pos < len && !out->failed) {
		size_t piece = len - pos;
		if (chunks != NULL) {
			size_t want = (size_t)chunks[turn++ % 8] + 1;
			if (want < piece)
				piece = want;
		}
		/* A piece may hold several responses: feed its rest until it is used up. */
		size_t off = 0;
		while (off < piece) {
			size_t used = 0;
			enum client_parse_result res = client_parser_feed(
			    p, (const char *)stream + pos + off, piece - off, &used);
			fuzz_check(used <= piece - off);
			off += used;
			if (res == CLIENT_PARSE_ERROR) {
				const char *why = NULL;
				out->failed = true;
				out->err = client_parser_error(p, &why);
				fuzz_check(why != NULL && why[0] != '\0');
				fuzz_check(out->err != IMAPQ_OK);
				size_t again = 0;
				fuzz_check(client_parser_feed(p, "* OK\r\n", 6, &again) ==
					   CLIENT_PARSE_ERROR);
				break;
			}
			if (res == CLIENT_PARSE_MORE) {
				fuzz_check(off == piece);
				break;
			}
			const struct client_response *r = client_parser_response(p);
			fuzz_check(r != NULL);
			if (out->n < MAX_RESPONSES)
				out->digests[out->n] = digest(r);
			out->n++;
		}
		pos += off;
		out->consumed = pos;
	}
	client_parser_reset(p);
	size_t used = 0;
	/* After a reset the parser takes a fresh stream again. */
	fuzz_check(client_parser_feed(p, "* OK hi\r\n", 9, &used) == CLIENT_PARSE_RESPONSE);
	fuzz_check(used == 9);
	client_parser_destroy(&p);
	fuzz_check(p == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct pass whole, split;
	struct fuzz_input in = {data, size};
	uint8_t mode = fuzz_u8(&in);
	uint8_t chunks[8];

	for (size_t i = 0; i < sizeof chunks; i++)
		chunks[i] = fuzz_u8(&in);
	/* Small limits reach the size checks with short inputs; 0 is the client's default. */
	size_t max_response = (mode & 1) ? 0 : 16 + (size_t)(mode >> 1) * 8;
	const uint8_t *stream = in.p;
	size_t len = in.left;

	run_pass(max_response, stream, len, NULL, &whole);
	run_pass(max_response, stream, len, chunks, &split);
	fuzz_check(whole.failed == split.failed);
	fuzz_check(whole.n == split.n);
	fuzz_check(whole.err == split.err);
	size_t n = whole.n < MAX_RESPONSES ? whole.n : MAX_RESPONSES;
	for (size_t i = 0; i < n; i++)
		fuzz_check(whole.digests[i] == split.digests[i]);
	return 0;
}
