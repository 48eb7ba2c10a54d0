/* Reads a framed response into its typed form: status responses with their codes, FETCH items,
 * SEARCH, ESEARCH, VANISHED and the simple untagged data. */
#include "imap/client/response-private.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool client_value_is(const struct client_value *v, const char *s)
{
	if (v->type == CLIENT_VALUE_LIST)
		return false;
	return v->str != NULL && strlen(s) == v->len && strncasecmp(v->str, s, v->len) == 0;
}

bool client_value_number(const struct client_value *v, uint64_t max, uint64_t *n_r)
{
	uint64_t n = 0;

	if (v->type != CLIENT_VALUE_ATOM || v->len == 0 || v->len > 20)
		return false;
	for (size_t i = 0; i < v->len; i++) {
		unsigned d = (unsigned)(v->str[i] - '0');

		if (d > 9 || n > (UINT64_MAX - d) / 10)
			return false;
		n = n * 10 + d;
	}
	if (n > max)
		return false;
	*n_r = n;
	return true;
}

/* A number that must be present: records an error otherwise. */
static imapq_err typed_number(struct client_parser *p, const struct client_value *v, uint64_t max,
			      uint64_t *n_r)
{
	if (!client_value_number(v, max, n_r))
		return resp_fail(p, IMAPQ_E_INVALID, "a number is malformed");
	return IMAPQ_OK;
}

static char *typed_upper(struct client_parser *p, const char *s, size_t len)
{
	char *u = resp_strdup(p, s, len);

	for (size_t i = 0; u != NULL && i < len; i++)
		if (u[i] >= 'a' && u[i] <= 'z')
			u[i] = (char)(u[i] - 'a' + 'A');
	return u;
}

static const struct {
	const char *name;
	enum client_code_type type;
} typed_codes[] = {
    {"ALERT", CLIENT_CODE_ALERT},
    {"CAPABILITY", CLIENT_CODE_CAPABILITY},
    {"PERMANENTFLAGS", CLIENT_CODE_PERMANENTFLAGS},
    {"READ-ONLY", CLIENT_CODE_READ_ONLY},
    {"READ-WRITE", CLIENT_CODE_READ_WRITE},
    {"TRYCREATE", CLIENT_CODE_TRYCREATE},
    {"UIDNEXT", CLIENT_CODE_UIDNEXT},
    {"UIDVALIDITY", CLIENT_CODE_UIDVALIDITY},
    {"UNSEEN", CLIENT_CODE_UNSEEN},
    {"HIGHESTMODSEQ", CLIENT_CODE_HIGHESTMODSEQ},
    {"NOMODSEQ", CLIENT_CODE_NOMODSEQ},
    {"MODIFIED", CLIENT_CODE_MODIFIED},
    {"APPENDUID", CLIENT_CODE_APPENDUID},
    {"COPYUID", CLIENT_CODE_COPYUID},
    {"CLOSED", CLIENT_CODE_CLOSED},
};

/* Reads the arguments of a known response code into its typed fields. */
static imapq_err typed_code_args(struct client_parser *p, struct client_code *c)
{
	const struct client_value *a = c->args;
	size_t n = c->arg_count;

	switch (c->type) {
	case CLIENT_CODE_UIDNEXT:
	case CLIENT_CODE_UIDVALIDITY:
	case CLIENT_CODE_UNSEEN:
		if (n < 1)
			return resp_fail(p, IMAPQ_E_INVALID, "a response code lacks its number");
		return typed_number(p, &a[0], UINT32_MAX, &c->number);
	case CLIENT_CODE_HIGHESTMODSEQ:
		if (n < 1)
			return resp_fail(p, IMAPQ_E_INVALID, "a response code lacks its number");
		return typed_number(p, &a[0], UINT64_MAX, &c->number);
	case CLIENT_CODE_MODIFIED:
		if (n < 1)
			return resp_fail(p, IMAPQ_E_INVALID, "MODIFIED lacks its set");
		return resp_read_set(p, &a[0], &c->set);
	case CLIENT_CODE_APPENDUID:
	case CLIENT_CODE_COPYUID:
		if (n < (c->type == CLIENT_CODE_COPYUID ? 3u : 2u))
			return resp_fail(p, IMAPQ_E_INVALID, "a UIDPLUS code lacks arguments");
		if (typed_number(p, &a[0], UINT32_MAX, &c->number) != IMAPQ_OK ||
		    resp_read_set(p, &a[1], &c->set) != IMAPQ_OK)
			return p->err;
		if (c->type == CLIENT_CODE_COPYUID)
			return resp_read_set(p, &a[2], &c->set2);
		return IMAPQ_OK;
	default:
		return IMAPQ_OK;
	}
}

/* Reads "[CODE args] text" or "text" at the cursor into the response. */
static imapq_err typed_resp_text(struct client_parser *p, struct resp_cursor *cur)
{
	struct client_response *r = &p->resp;
	struct client_code *c = &r->code;

	while (cur->p < cur->end && *cur->p == ' ')
		cur->p++;
	if (cur->p < cur->end && *cur->p == '[') {
		const char *name = ++cur->p, *args, *close;
		struct resp_cursor sub;
		unsigned depth = 0;

		while (cur->p < cur->end && *cur->p != ' ' && *cur->p != ']')
			cur->p++;
		if (cur->p == name)
			return resp_fail(p, IMAPQ_E_INVALID, "empty response code");
		c->name = typed_upper(p, name, (size_t)(cur->p - name));
		if (c->name == NULL)
			return resp_fail(p, IMAPQ_E_NOMEM, "out of memory");
		args = cur->p < cur->end && *cur->p == ' ' ? cur->p + 1 : cur->p;
		for (close = args; close < cur->end; close++) {
			if (*close == '[')
				depth++;
			else if (*close == ']' && depth-- == 0)
				break;
		}
		if (close >= cur->end)
			return resp_fail(p, IMAPQ_E_INVALID, "unterminated response code");
		c->text = resp_strdup(p, args, (size_t)(close - args));
		if (c->text == NULL)
			return resp_fail(p, IMAPQ_E_NOMEM, "out of memory");
		c->type = CLIENT_CODE_OTHER;
		for (size_t i = 0; i < sizeof(typed_codes) / sizeof(typed_codes[0]); i++)
			if (strcmp(c->name, typed_codes[i].name) == 0)
				c->type = typed_codes[i].type;
		/* Unknown codes may carry free text; only known ones must tokenize. */
		if (c->type != CLIENT_CODE_OTHER && c->type != CLIENT_CODE_ALERT) {
			sub.p = c->text;
			sub.end = c->text + strlen(c->text);
			if (resp_read_values(p, &sub, &c->args, &c->arg_count) != IMAPQ_OK ||
			    typed_code_args(p, c) != IMAPQ_OK)
				return p->err;
		}
		cur->p = close + 1;
		while (cur->p < cur->end && *cur->p == ' ')
			cur->p++;
	} else {
		c->text = "";
	}
	r->text = resp_strdup(p, cur->p, (size_t)(cur->end - cur->p));
	if (r->text == NULL)
		return resp_fail(p, IMAPQ_E_NOMEM, "out of memory");
	return IMAPQ_OK;
}

static enum client_status typed_status(const struct client_value *v)
{
	static const char *const names[] = {"OK", "NO", "BAD", "BYE", "PREAUTH"};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (client_value_is(v, names[i]))
			return (enum client_status)(CLIENT_STATUS_OK + i);
	return CLIENT_STATUS_NONE;
}

/* ANNOTATION (entry (attr value ...) entry (...) ...) */
static imapq_err typed_annotations(struct client_parser *p, const struct client_value *v,
				   struct client_annotation **out, size_t *n)
{
	if (v->type != CLIENT_VALUE_LIST || v->count % 2 != 0)
		return resp_fail(p, IMAPQ_E_INVALID, "ANNOTATION is malformed");
	for (size_t i = 0; i < v->count; i += 2) {
		const struct client_value *attrs = &v->items[i + 1];

		if (v->items[i].type == CLIENT_VALUE_LIST || attrs->type != CLIENT_VALUE_LIST ||
		    attrs->count % 2 != 0)
			return resp_fail(p, IMAPQ_E_INVALID, "ANNOTATION is malformed");
		for (size_t j = 0; j < attrs->count; j += 2) {
			const struct client_value *val = &attrs->items[j + 1];
			struct client_annotation *grown;

			if (val->type == CLIENT_VALUE_LIST ||
			    attrs->items[j].type == CLIENT_VALUE_LIST)
				return resp_fail(p, IMAPQ_E_INVALID, "ANNOTATION is malformed");
			grown = resp_alloc(p, (*n + 1) * sizeof(*grown));
			if (grown == NULL)
				return resp_fail(p, IMAPQ_E_NOMEM, "out of memory");
			if (*n > 0)
				memcpy(grown, *out, *n * sizeof(*grown));
			grown[*n] = (struct client_annotation){
			    .entry = v->items[i].str,
			    .attribute = attrs->items[j].str,
			    .value = val->type == CLIENT_VALUE_NIL ? NULL : val->str,
			    .len = val->type == CLIENT_VALUE_NIL ? 0 : val->len,
			};
			*out = grown;
			(*n)++;
		}
	}
	return IMAPQ_OK;
}

static bool typed_is_section(const struct client_value *name)
{
	return (name->len > 5 && strncasecmp(name->str, "BODY[", 5) == 0) ||
	       (name->len > 7 && strncasecmp(name->str, "BINARY[", 7) == 0) ||
	       client_value_is(name, "RFC822") || client_value_is(name, "RFC822.TEXT") ||
	       client_value_is(name, "RFC822.HEADER");
}

static imapq_err typed_fetch(struct client_parser *p, const struct client_value *list)
{
	struct client_fetch *f = &p->resp.fetch;
	struct client_section *sections;
	struct client_annotation *annotations = NULL;
	uint64_t n;

	if (list->type != CLIENT_VALUE_LIST || list->count % 2 != 0)
		return resp_fail(p, IMAPQ_E_INVALID, "FETCH data is malformed");
	f->items = list->items;
	f->item_count = list->count;
	sections = resp_alloc(p, list->count / 2 * sizeof(*sections));
	if (sections == NULL)
		return resp_fail(p, IMAPQ_E_NOMEM, "out of memory");
	for (size_t i = 0; i < list->count; i += 2) {
		const struct client_value *name = &list->items[i], *v = &list->items[i + 1];

		if (name->type != CLIENT_VALUE_ATOM)
			return resp_fail(p, IMAPQ_E_INVALID, "FETCH item name is malformed");
		if (client_value_is(name, "UID")) {
			if (typed_number(p, v, UINT32_MAX, &n) != IMAPQ_OK || n == 0)
				return resp_fail(p, IMAPQ_E_INVALID, "FETCH UID is malformed");
			f->uid = (uint32_t)n;
			f->have |= CLIENT_FETCH_UID;
		} else if (client_value_is(name, "FLAGS")) {
			if (v->type != CLIENT_VALUE_LIST)
				return resp_fail(p, IMAPQ_E_INVALID, "FETCH FLAGS is malformed");
			f->flags = v->items;
			f->flag_count = v->count;
			f->have |= CLIENT_FETCH_FLAGS;
		} else if (client_value_is(name, "MODSEQ")) {
			if (v->type != CLIENT_VALUE_LIST || v->count != 1 ||
			    typed_number(p, &v->items[0], UINT64_MAX, &f->modseq) != IMAPQ_OK)
				return resp_fail(p, IMAPQ_E_INVALID, "FETCH MODSEQ is malformed");
			f->have |= CLIENT_FETCH_MODSEQ;
		} else if (client_value_is(name, "RFC822.SIZE")) {
			if (typed_number(p, v, UINT64_MAX, &f->size) != IMAPQ_OK)
				return p->err;
			f->have |= CLIENT_FETCH_SIZE;
		} else if (client_value_is(name, "INTERNALDATE")) {
			if (v->type != CLIENT_VALUE_STRING)
				return resp_fail(p, IMAPQ_E_INVALID, "INTERNALDATE is malformed");
			f->internaldate = v->str;
			f->have |= CLIENT_FETCH_INTERNALDATE;
		} else if (client_value_is(name, "ANNOTATION")) {
			if (typed_annotations(p, v, &annotations, &f->annotation_count) != IMAPQ_OK)
				return p->err;
			f->annotations = annotations;
		} else if (typed_is_section(name)) {
			if (v->type == CLIENT_VALUE_LIST)
				return resp_fail(p, IMAPQ_E_INVALID,
						 "a FETCH section is malformed");
			sections[f->section_count++] = (struct client_section){
			    .name = name->str,
			    .data = v->type == CLIENT_VALUE_NIL ? NULL : v->str,
			    .len = v->type == CLIENT_VALUE_NIL ? 0 : v->len,
			};
		}
	}
	f->sections = sections;
	return IMAPQ_OK;
}

static imapq_err typed_search(struct client_parser *p, const struct client_value *w, size_t count)
{
	struct client_search *s = &p->resp.search;
	uint32_t *numbers = resp_alloc(p, count * sizeof(*numbers));
	uint64_t n;

	if (numbers == NULL)
		return resp_fail(p, IMAPQ_E_NOMEM, "out of memory");
	for (size_t i = 0; i < count; i++) {
		if (w[i].type == CLIENT_VALUE_LIST) {
			/* "(MODSEQ n)" ends the list (RFC 7162 section 3.1.5). */
			if (i + 1 != count || w[i].count != 2 ||
			    !client_value_is(&w[i].items[0], "MODSEQ") ||
			    typed_number(p, &w[i].items[1], UINT64_MAX, &s->modseq) != IMAPQ_OK)
				return resp_fail(p, IMAPQ_E_INVALID, "SEARCH MODSEQ is malformed");
			s->have_modseq = true;
			break;
		}
		if (typed_number(p, &w[i], UINT32_MAX, &n) != IMAPQ_OK || n == 0)
			return resp_fail(p, IMAPQ_E_INVALID, "SEARCH result is malformed");
		numbers[s->count++] = (uint32_t)n;
	}
	s->numbers = numbers;
	return IMAPQ_OK;
}

static imapq_err typed_esearch(struct client_parser *p, const struct client_value *w, size_t count)
{
	struct client_esearch *e = &p->resp.esearch;
	size_t i = 0;
	uint64_t n;

	if (i < count && w[i].type == CLIENT_VALUE_LIST) {
		if (w[i].count != 2 || !client_value_is(&w[i].items[0], "TAG") ||
		    w[i].items[1].type != CLIENT_VALUE_STRING)
			return resp_fail(p, IMAPQ_E_INVALID, "ESEARCH correlator is malformed");
		e->tag = w[i].items[1].str;
		i++;
	}
	if (i < count && client_value_is(&w[i], "UID")) {
		e->uid = true;
		i++;
	}
	for (; i < count; i += 2) {
		const struct client_value *name = &w[i], *v = &w[i + 1];

		if (i + 1 >= count)
			return resp_fail(p, IMAPQ_E_INVALID, "ESEARCH data lacks a value");
		if (client_value_is(name, "MIN") || client_value_is(name, "MAX")) {
			if (typed_number(p, v, UINT32_MAX, &n) != IMAPQ_OK)
				return p->err;
			if (client_value_is(name, "MIN")) {
				e->min = (uint32_t)n;
				e->have |= CLIENT_ESEARCH_MIN;
			} else {
				e->max = (uint32_t)n;
				e->have |= CLIENT_ESEARCH_MAX;
			}
		} else if (client_value_is(name, "COUNT")) {
			if (typed_number(p, v, UINT64_MAX, &e->count) != IMAPQ_OK)
				return p->err;
			e->have |= CLIENT_ESEARCH_COUNT;
		} else if (client_value_is(name, "MODSEQ")) {
			if (typed_number(p, v, UINT64_MAX, &e->modseq) != IMAPQ_OK)
				return p->err;
			e->have |= CLIENT_ESEARCH_MODSEQ;
		} else if (client_value_is(name, "ALL")) {
			if (resp_read_set(p, v, &e->all) != IMAPQ_OK)
				return p->err;
			e->have |= CLIENT_ESEARCH_ALL;
		}
	}
	return IMAPQ_OK;
}

static imapq_err typed_vanished(struct client_parser *p, const struct client_value *w, size_t count)
{
	struct client_vanished *v = &p->resp.vanished;
	size_t i = 0;

	if (count > 0 && w[0].type == CLIENT_VALUE_LIST) {
		if (w[0].count != 1 || !client_value_is(&w[0].items[0], "EARLIER"))
			return resp_fail(p, IMAPQ_E_INVALID, "VANISHED is malformed");
		v->earlier = true;
		i++;
	}
	if (i + 1 != count)
		return resp_fail(p, IMAPQ_E_INVALID, "VANISHED is malformed");
	return resp_read_set(p, &w[i], &v->uids);
}

/* "* <n> EXISTS|RECENT|EXPUNGE|FETCH ..." */
static imapq_err typed_numbered(struct client_parser *p, struct resp_cursor *cur, uint64_t n)
{
	struct client_response *r = &p->resp;
	struct client_value word, data;

	if (resp_read_value(p, cur, 0, &word) != IMAPQ_OK)
		return p->err;
	if (word.type != CLIENT_VALUE_ATOM)
		return resp_fail(p, IMAPQ_E_INVALID, "a numbered response lacks its keyword");
	r->name = typed_upper(p, word.str, word.len);
	if (r->name == NULL)
		return resp_fail(p, IMAPQ_E_NOMEM, "out of memory");
	r->number = (uint32_t)n;
	if (strcmp(r->name, "EXISTS") == 0)
		r->type = CLIENT_RESP_EXISTS;
	else if (strcmp(r->name, "RECENT") == 0)
		r->type = CLIENT_RESP_RECENT;
	else if (strcmp(r->name, "EXPUNGE") == 0)
		r->type = CLIENT_RESP_EXPUNGE;
	else if (strcmp(r->name, "FETCH") == 0)
		r->type = CLIENT_RESP_FETCH;
	else
		r->type = CLIENT_RESP_OTHER;
	if (r->type == CLIENT_RESP_EXPUNGE || r->type == CLIENT_RESP_FETCH) {
		if (n == 0)
			return resp_fail(p, IMAPQ_E_INVALID, "sequence number 0");
	}
	if (r->type == CLIENT_RESP_FETCH) {
		if (resp_read_value(p, cur, 0, &data) != IMAPQ_OK ||
		    typed_fetch(p, &data) != IMAPQ_OK)
			return p->err;
	}
	return resp_read_values(p, cur, &r->words, &r->word_count);
}

static imapq_err typed_untagged(struct client_parser *p, struct resp_cursor *cur)
{
	struct client_response *r = &p->resp;
	struct client_value word;
	uint64_t n;

	if (resp_read_value(p, cur, 0, &word) != IMAPQ_OK)
		return p->err;
	if (client_value_number(&word, UINT32_MAX, &n))
		return typed_numbered(p, cur, n);
	if (word.type != CLIENT_VALUE_ATOM)
		return resp_fail(p, IMAPQ_E_INVALID, "an untagged response lacks its keyword");
	r->name = typed_upper(p, word.str, word.len);
	if (r->name == NULL)
		return resp_fail(p, IMAPQ_E_NOMEM, "out of memory");
	r->status = typed_status(&word);
	if (r->status != CLIENT_STATUS_NONE) {
		r->type = CLIENT_RESP_STATUS;
		return typed_resp_text(p, cur);
	}
	if (resp_read_values(p, cur, &r->words, &r->word_count) != IMAPQ_OK)
		return p->err;
	if (strcmp(r->name, "CAPABILITY") == 0)
		r->type = CLIENT_RESP_CAPABILITY;
	else if (strcmp(r->name, "ENABLED") == 0)
		r->type = CLIENT_RESP_ENABLED;
	else if (strcmp(r->name, "FLAGS") == 0)
		r->type = CLIENT_RESP_FLAGS;
	else if (strcmp(r->name, "SEARCH") == 0)
		r->type = CLIENT_RESP_SEARCH;
	else if (strcmp(r->name, "ESEARCH") == 0)
		r->type = CLIENT_RESP_ESEARCH;
	else if (strcmp(r->name, "VANISHED") == 0)
		r->type = CLIENT_RESP_VANISHED;
	else
		r->type = CLIENT_RESP_OTHER;
	if (r->type == CLIENT_RESP_FLAGS) {
		if (r->word_count != 1 || r->words[0].type != CLIENT_VALUE_LIST)
			return resp_fail(p, IMAPQ_E_INVALID, "FLAGS is malformed");
		const struct client_value *list = &r->words[0];

		r->words = list->items;
		r->word_count = list->count;
	}
	switch (r->type) {
	case CLIENT_RESP_SEARCH:
		return typed_search(p, r->words, r->word_count);
	case CLIENT_RESP_ESEARCH:
		return typed_esearch(p, r->words, r->word_count);
	case CLIENT_RESP_VANISHED:
		return typed_vanished(p, r->words, r->word_count);
	default:
		return IMAPQ_OK;
	}
}

imapq_err resp_interpret(struct client_parser *p)
{
	struct client_response *r = &p->resp;
	struct resp_cursor cur = {buf_bytes(&p->raw), buf_bytes(&p->raw) + buf_len(&p->raw) - 1};
	struct client_value tag;

	memset(r, 0, sizeof(*r));
	if (cur.p < cur.end && cur.p[0] == '+') {
		r->type = CLIENT_RESP_CONTINUE;
		r->name = "+";
		cur.p++;
		while (cur.p < cur.end && *cur.p == ' ')
			cur.p++;
		r->text = resp_strdup(p, cur.p, (size_t)(cur.end - cur.p));
		return r->text ? IMAPQ_OK : resp_fail(p, IMAPQ_E_NOMEM, "out of memory");
	}
	if (cur.p < cur.end && cur.p[0] == '*') {
		cur.p++;
		if (cur.p >= cur.end || *cur.p != ' ')
			return resp_fail(p, IMAPQ_E_INVALID, "'*' is not followed by a space");
		return typed_untagged(p, &cur);
	}
	if (resp_read_value(p, &cur, 0, &tag) != IMAPQ_OK)
		return p->err;
	if (tag.type != CLIENT_VALUE_ATOM)
		return resp_fail(p, IMAPQ_E_INVALID,
				 "a response starts with neither '*', '+' nor a tag");
	r->type = CLIENT_RESP_TAGGED;
	r->tag = tag.str;
	struct client_value word;

	if (resp_read_value(p, &cur, 0, &word) != IMAPQ_OK)
		return p->err;
	r->status = typed_status(&word);
	if (r->status == CLIENT_STATUS_NONE || r->status == CLIENT_STATUS_PREAUTH ||
	    r->status == CLIENT_STATUS_BYE)
		return resp_fail(p, IMAPQ_E_INVALID, "a tagged response lacks OK, NO or BAD");
	r->name = typed_upper(p, word.str, word.len);
	if (r->name == NULL)
		return resp_fail(p, IMAPQ_E_NOMEM, "out of memory");
	return typed_resp_text(p, &cur);
}
