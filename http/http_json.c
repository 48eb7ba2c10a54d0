/* JSON and value helpers of the HTTP front: a precheck that bounds what cJSON is given (depth,
 * UTF-8, control characters, and RFC 8259 whitespace and numbers where cJSON is lenient), strict
 * field readers, receipts, numbers and times as text. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "http/http-private.h"
#include "imap/base/decimal.h"

/* Length of the UTF-8 sequence starting at s[0..n), or 0 when it is malformed (overlong forms,
 * surrogates and code points past U+10FFFF included). */
static size_t utf8_sequence(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	if (c < 0x80)
		return 1;
	size_t len;
	uint32_t cp;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

bool http_utf8_valid(const char *text, size_t len)
{
	const unsigned char *s = (const unsigned char *)text;
	size_t i = 0;
	while (i < len) {
		if (s[i] == 0)
			return false;
		size_t step = utf8_sequence(s + i, len - i);
		if (step == 0)
			return false;
		i += step;
	}
	return true;
}

/* True for the bytes cJSON takes into a number token. */
static bool number_byte(unsigned char c)
{
	return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

/* Length of the RFC 8259 number at s[0..n), or 0 when the run of number bytes there is not one
 * (cJSON also takes 01, 1., -.5 and 1e, handing strtod whatever follows). */
static size_t number_length(const unsigned char *s, size_t n)
{
	size_t i = 0;
	if (i < n && s[i] == '-')
		i++;
	if (i < n && s[i] == '0') {
		i++;
	} else if (i < n && s[i] >= '1' && s[i] <= '9') {
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
	} else {
		return 0;
	}
	if (i < n && s[i] == '.') {
		if (++i >= n || s[i] < '0' || s[i] > '9')
			return 0;
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		if (++i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		if (i >= n || s[i] < '0' || s[i] > '9')
			return 0;
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
	}
	return i < n && number_byte(s[i]) ? 0 : i;
}

imapq_err http_json_precheck(const char *text, size_t len, unsigned max_depth, const char **why)
{
	if (!http_utf8_valid(text, len)) {
		*why = "the body is not valid UTF-8 (or holds a NUL byte)";
		return IMAPQ_E_INVALID;
	}
	/* cJSON skips a leading BOM, and any byte up to 0x20 as whitespace: RFC 8259 does not. */
	if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0) {
		*why = "JSON must not start with a byte order mark";
		return IMAPQ_E_INVALID;
	}
	unsigned depth = 0;
	bool in_string = false, escaped = false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];
		if (in_string) {
			if (escaped)
				escaped = false;
			else if (c == '\\')
				escaped = true;
			else if (c == '"')
				in_string = false;
			else if (c < 0x20) {
				*why = "a JSON string holds a raw control character";
				return IMAPQ_E_INVALID;
			}
			continue;
		}
		if (c == '"') {
			in_string = true;
		} else if (c == '[' || c == '{') {
			if (++depth > max_depth) {
				*why = "JSON nested too deeply";
				return IMAPQ_E_INVALID;
			}
		} else if ((c == ']' || c == '}') && depth > 0) {
			depth--;
		} else if (c == '-' || (c >= '0' && c <= '9')) {
			size_t n = number_length((const unsigned char *)text + i, len - i);
			if (n == 0) {
				*why = "a JSON number is malformed (RFC 8259 numbers only)";
				return IMAPQ_E_INVALID;
			}
			i += n - 1;
		} else if (memchr(" \t\r\n]},:", c, 8) == NULL && !(c >= 'a' && c <= 'z')) {
			/* Letters are left to cJSON, which reads true, false and null exactly. */
			*why = "JSON holds a byte outside strings that is neither syntax nor "
			       "whitespace";
			return IMAPQ_E_INVALID;
		}
	}
	return IMAPQ_OK;
}

imapq_err http_json_parse(const char *text, size_t len, cJSON **root_r, const char **why)
{
	*root_r = NULL;
	imapq_err err = http_json_precheck(text, len, IMAPQ_HTTP_MAX_JSON_DEPTH, why);
	if (err != IMAPQ_OK)
		return err;
	const char *end = NULL;
	cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
	if (root == NULL) {
		*why = "the body is not valid JSON";
		return IMAPQ_E_INVALID;
	}
	while (end < text + len && strchr(" \t\r\n", *end) != NULL)
		end++;
	if (end != text + len) {
		cJSON_Delete(root);
		*why = "the body holds data after the JSON value";
		return IMAPQ_E_INVALID;
	}
	*root_r = root;
	return IMAPQ_OK;
}

bool http_content_type_is_json(const char *ctype)
{
	if (ctype == NULL)
		return false;
	while (*ctype == ' ' || *ctype == '\t')
		ctype++;
	size_t len = strcspn(ctype, "; \t");
	if (len == 16 && strncasecmp(ctype, "application/json", 16) == 0)
		return true;
	const char *slash = memchr(ctype, '/', len);
	return slash != NULL && len >= 5 && strncasecmp(ctype + len - 5, "+json", 5) == 0;
}

imapq_err http_json_fields(const cJSON *obj, const char *const *allowed, const char **why)
{
	for (const cJSON *item = obj->child; item != NULL; item = item->next) {
		bool known = false;
		for (size_t i = 0; allowed[i] != NULL && !known; i++)
			known = item->string != NULL && strcmp(item->string, allowed[i]) == 0;
		for (const cJSON *prev = obj->child; known && prev != item; prev = prev->next)
			known = strcmp(prev->string, item->string) != 0;
		if (!known) {
			*why = "the body has an unknown or repeated field";
			return IMAPQ_E_INVALID;
		}
	}
	return IMAPQ_OK;
}

bool http_parse_u64(const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
	if (text[0] == '\0' || strlen(text) > 20)
		return false;
	uint64_t v = 0;
	for (const char *p = text; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return false;
		unsigned d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	if (v < min || v > max)
		return false;
	*out = v;
	return true;
}

imapq_err http_json_uint(const cJSON *obj, const char *key, uint32_t min, uint32_t max,
			 uint32_t *out, const char **why)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
	if (item == NULL || cJSON_IsNull(item))
		return IMAPQ_OK;
	uint64_t v;
	if (cJSON_IsNumber(item)) {
		double d = item->valuedouble;
		if (!(d >= (double)min && d <= (double)max) || d != (double)(uint64_t)d)
			goto bad;
		v = (uint64_t)d;
	} else if (cJSON_IsString(item)) {
		if (!http_parse_u64(item->valuestring, min, max, &v))
			goto bad;
	} else {
		goto bad;
	}
	*out = (uint32_t)v;
	return IMAPQ_OK;
bad:
	*why = "a numeric field is not a whole number in its allowed range";
	return IMAPQ_E_INVALID;
}

bool http_receipt_parse(const char *text, struct queue_receipt *r)
{
	const char *dash = strchr(text, '-');
	char head[16];
	uint64_t uv, ms;
	if (dash == NULL || (size_t)(dash - text) >= sizeof head)
		return false;
	memcpy(head, text, (size_t)(dash - text));
	head[dash - text] = '\0';
	if (!http_parse_u64(head, 1, UINT32_MAX, &uv) ||
	    !http_parse_u64(dash + 1, 1, INT64_MAX, &ms))
		return false;
	r->uidvalidity = (uint32_t)uv;
	r->modseq = ms;
	return true;
}

/* Copies text[0..len) into buf (cap bytes), truncated and NUL-terminated like snprintf. */
static void copy_text(char *buf, size_t cap, const char *text, size_t len)
{
	if (cap == 0)
		return;
	if (len >= cap)
		len = cap - 1;
	memcpy(buf, text, len);
	buf[len] = '\0';
}

void http_receipt_format(struct queue_receipt r, char *buf, size_t cap)
{
	char text[48];
	size_t n = decimal_u64(r.uidvalidity, text);
	text[n++] = '-';
	n += decimal_u64(r.modseq, text + n);
	copy_text(buf, cap, text, n);
}

void http_time_format(int64_t t, char *buf, size_t cap)
{
	/* Replies name the same few seconds over and over: each thread keeps the last two it
	 * formatted, which spares gmtime_r's lock and strftime. Two, because a claimed job's
	 * reply names its enqueue time and its lease's end in turn. */
	static _Thread_local struct {
		int64_t t;
		char text[32];
		size_t len;
	} cached[2] = {{.t = INT64_MIN}, {.t = INT64_MIN}};
	static _Thread_local unsigned older;
	for (unsigned i = 0; i < 2; i++) {
		if (cached[i].t == t) {
			copy_text(buf, cap, cached[i].text, cached[i].len);
			return;
		}
	}
	unsigned i = older;
	older ^= 1;
	time_t tt = (time_t)t;
	struct tm tm;
	if (gmtime_r(&tt, &tm) == NULL ||
	    strftime(cached[i].text, sizeof cached[i].text, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(cached[i].text, sizeof cached[i].text, "1970-01-01T00:00:00Z");
	cached[i].len = strlen(cached[i].text);
	cached[i].t = t;
	copy_text(buf, cap, cached[i].text, cached[i].len);
}

bool http_json_put(cJSON *obj, const char *key, cJSON *item)
{
	if (item == NULL)
		return false;
	if (!cJSON_AddItemToObjectCS(obj, key, item)) {
		cJSON_Delete(item);
		return false;
	}
	return true;
}

bool http_json_add_string(cJSON *obj, const char *key, const char *value)
{
	return http_json_put(obj, key, cJSON_CreateString(value));
}

bool http_json_add_u64_string(cJSON *obj, const char *key, uint64_t v)
{
	char text[24];
	decimal_u64(v, text);
	return http_json_add_string(obj, key, text);
}

bool http_json_add_uint(cJSON *obj, const char *key, uint64_t v)
{
	char text[24];
	decimal_u64(v, text);
	return http_json_put(obj, key, cJSON_CreateRaw(text));
}
