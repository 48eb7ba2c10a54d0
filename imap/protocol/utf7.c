/* Modified UTF-7 codec. The BASE64 variant (',' for '/', no padding, bit-exact ends) is coded
 * here directly: OpenSSL's decoder would need the input rewritten and padded first, and the
 * canonical-form checks need the bit stream anyway. */
#include "imap/protocol/utf7.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

static const char b64_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/* Value of a modified BASE64 character, or -1. */
static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == ',')
		return 63;
	return -1;
}

/* True for the characters that represent themselves. */
static bool is_direct(uint32_t cp)
{
	return cp >= 0x20 && cp <= 0x7e;
}

/* Writes cp as UTF-8 at out; returns the bytes written. */
static size_t put_utf8(char *out, uint32_t cp)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Decodes one shift starting after its '&' at *pos up to and including its '-'. */
static imapq_err decode_shift(const char *in, size_t len, size_t *pos, char *out, size_t *w)
{
	uint32_t bits = 0;
	unsigned nbits = 0;
	uint32_t high = 0; /* pending high surrogate */
	size_t units = 0;
	size_t i = *pos;

	for (;; i++) {
		int v;

		if (i == len)
			return IMAPQ_E_INVALID;
		if (in[i] == '-')
			break;
		v = b64_value((unsigned char)in[i]);
		if (v < 0)
			return IMAPQ_E_INVALID;
		bits = (bits << 6) | (uint32_t)v;
		nbits += 6;
		if (nbits < 16)
			continue;
		nbits -= 16;
		uint32_t unit = (bits >> nbits) & 0xffff;

		bits &= (1u << nbits) - 1;
		units++;
		if (high != 0) {
			if (unit < 0xdc00 || unit > 0xdfff)
				return IMAPQ_E_INVALID;
			*w +=
			    put_utf8(out + *w, 0x10000 + ((high - 0xd800) << 10) + (unit - 0xdc00));
			high = 0;
		} else if (unit >= 0xd800 && unit <= 0xdbff) {
			high = unit;
		} else if (unit >= 0xdc00 && unit <= 0xdfff) {
			return IMAPQ_E_INVALID;
		} else if (is_direct(unit) || unit == 0) {
			/* U+0000 would end the decoded C string early: "a&AAA-b" must not read as
			 * "a". utf7_encode() refuses NUL too. */
			return IMAPQ_E_INVALID;
		} else {
			*w += put_utf8(out + *w, unit);
		}
	}
	if (units == 0 || high != 0 || nbits >= 6 || bits != 0)
		return IMAPQ_E_INVALID;
	*pos = i + 1;
	return IMAPQ_OK;
}

imapq_err utf7_decode(const char *in, size_t len, char **out_r)
{
	char *out;
	size_t w = 0;
	size_t i = 0;
	bool after_shift = false;

	*out_r = NULL;
	/* Every input byte yields at most two output bytes. */
	out = malloc(len * 2 + 1);
	if (out == NULL)
		return IMAPQ_E_NOMEM;
	while (i < len) {
		unsigned char c = (unsigned char)in[i];

		if (!is_direct(c))
			goto invalid;
		if (c != '&') {
			out[w++] = (char)c;
			after_shift = false;
			i++;
		} else if (i + 1 < len && in[i + 1] == '-') {
			out[w++] = '&';
			after_shift = false;
			i += 2;
		} else {
			i++;
			if (after_shift || decode_shift(in, len, &i, out, &w) != IMAPQ_OK)
				goto invalid;
			after_shift = true;
		}
	}
	out[w] = '\0';
	*out_r = out;
	return IMAPQ_OK;
invalid:
	free(out);
	return IMAPQ_E_INVALID;
}

/* Reads one UTF-8 code point at *pos; false when malformed. */
static bool read_utf8(const unsigned char *s, size_t len, size_t *pos, uint32_t *cp_r)
{
	size_t i = *pos;
	uint32_t cp = s[i];
	size_t extra;
	uint32_t min;

	if (cp < 0x80) {
		extra = 0;
		min = 0;
	} else if ((cp & 0xe0) == 0xc0) {
		extra = 1;
		cp &= 0x1f;
		min = 0x80;
	} else if ((cp & 0xf0) == 0xe0) {
		extra = 2;
		cp &= 0x0f;
		min = 0x800;
	} else if ((cp & 0xf8) == 0xf0) {
		extra = 3;
		cp &= 0x07;
		min = 0x10000;
	} else {
		return false;
	}
	if (extra > len - i - 1)
		return false;
	for (size_t k = 1; k <= extra; k++) {
		if ((s[i + k] & 0xc0) != 0x80)
			return false;
		cp = (cp << 6) | (s[i + k] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || cp == 0)
		return false;
	*pos = i + 1 + extra;
	*cp_r = cp;
	return true;
}

/* Appends the low nbits of bits as BASE64 characters, six at a time. */
static void flush_bits(char *out, size_t *w, uint32_t *bits, unsigned *nbits)
{
	while (*nbits >= 6) {
		*nbits -= 6;
		out[(*w)++] = b64_chars[(*bits >> *nbits) & 0x3f];
	}
	*bits &= (1u << *nbits) - 1;
}

imapq_err utf7_encode(const char *in, size_t len, char **out_r)
{
	const unsigned char *s = (const unsigned char *)in;
	char *out;
	size_t w = 0;
	size_t i = 0;
	bool shifted = false;
	uint32_t bits = 0;
	unsigned nbits = 0;

	*out_r = NULL;
	/* A code point of n UTF-8 bytes takes at most 4n + 2 characters (one unit per shift). */
	out = malloc(len * 6 + 3);
	if (out == NULL)
		return IMAPQ_E_NOMEM;
	while (i < len) {
		uint32_t cp;

		if (!read_utf8(s, len, &i, &cp)) {
			free(out);
			return IMAPQ_E_INVALID;
		}
		if (is_direct(cp)) {
			if (shifted) {
				if (nbits > 0)
					out[w++] = b64_chars[(bits << (6 - nbits)) & 0x3f];
				out[w++] = '-';
				shifted = false;
				bits = 0;
				nbits = 0;
			}
			out[w++] = (char)cp;
			if (cp == '&')
				out[w++] = '-';
			continue;
		}
		if (!shifted) {
			out[w++] = '&';
			shifted = true;
		}
		if (cp >= 0x10000) {
			cp -= 0x10000;
			bits = (bits << 16) | (0xd800 + (cp >> 10));
			nbits += 16;
			flush_bits(out, &w, &bits, &nbits);
			cp = 0xdc00 + (cp & 0x3ff);
		}
		bits = (bits << 16) | cp;
		nbits += 16;
		flush_bits(out, &w, &bits, &nbits);
	}
	if (shifted) {
		if (nbits > 0)
			out[w++] = b64_chars[(bits << (6 - nbits)) & 0x3f];
		out[w++] = '-';
	}
	out[w] = '\0';
	*out_r = out;
	return IMAPQ_OK;
}
