#include "cmd/imapq/payload.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

bool payload_type_is_json(const char *ctype)
{
	if (ctype == NULL)
		return false;
	size_t len = strcspn(ctype, "; \t");
	if (len == 16 && strncasecmp(ctype, "application/json", 16) == 0)
		return true;
	return len > 5 && strncasecmp(ctype + len - 5, "+json", 5) == 0;
}

static imapq_err copy_out(const char *src, size_t len, char **data_r, size_t *len_r)
{
	char *data = malloc(len + 1);
	if (data == NULL)
		return IMAPQ_E_NOMEM;
	memcpy(data, src, len);
	data[len] = '\0';
	*data_r = data;
	*len_r = len;
	return IMAPQ_OK;
}

static imapq_err base64_decode(const char *text, char **data_r, size_t *len_r)
{
	size_t len = strlen(text);
	if (len % 4 != 0 || len > (size_t)INT32_MAX)
		return IMAPQ_E_INVALID;
	unsigned char *data = malloc(len / 4 * 3 + 1);
	if (data == NULL)
		return IMAPQ_E_NOMEM;
	int n = len ? EVP_DecodeBlock(data, (const unsigned char *)text, (int)len) : 0;
	if (n < 0) {
		free(data);
		return IMAPQ_E_INVALID;
	}
	/* EVP_DecodeBlock counts the padding as zero bytes. */
	for (size_t i = len; i > 0 && text[i - 1] == '=' && n > 0; i--)
		n--;
	data[n] = '\0';
	*data_r = (char *)data;
	*len_r = (size_t)n;
	return IMAPQ_OK;
}

imapq_err payload_extract(const cJSON *msg, const char *reply, const struct rawjson_span *span,
			  char **data_r, size_t *len_r, bool *binary_r)
{
	const cJSON *body = cJSON_GetObjectItemCaseSensitive(msg, "body");
	const cJSON *enc = cJSON_GetObjectItemCaseSensitive(msg, "body_encoding");
	const cJSON *ctype = cJSON_GetObjectItemCaseSensitive(msg, "content_type");
	bool has_span = span != NULL && span->len > 0;
	if (binary_r != NULL)
		*binary_r = false;
	if (body == NULL)
		return copy_out("", 0, data_r, len_r);
	if (cJSON_IsString(enc) && strcmp(enc->valuestring, "base64") == 0 &&
	    cJSON_IsString(body)) {
		if (binary_r != NULL)
			*binary_r = true;
		return base64_decode(body->valuestring, data_r, len_r);
	}
	bool json = cJSON_IsString(ctype) && payload_type_is_json(ctype->valuestring);
	if (cJSON_IsString(body) && !(json && has_span))
		return copy_out(body->valuestring, strlen(body->valuestring), data_r, len_r);
	if (has_span)
		return copy_out(reply + span->off, span->len, data_r, len_r);
	/* No span (the caller had none): the tree's own text is the best left. */
	char *text = cJSON_PrintUnformatted(body);
	if (text == NULL)
		return IMAPQ_E_NOMEM;
	imapq_err err = copy_out(text, strlen(text), data_r, len_r);
	cJSON_free(text);
	return err;
}
