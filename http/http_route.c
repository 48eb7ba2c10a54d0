/* Request targets: the URL path split into segments, each percent-decoded on its own so that a
 * queue name may carry "/" as %2F, and matched against the API's routes. */
#include <stdio.h>
#include <string.h>

#include "http/http-private.h"

/* Segments of the longest route: v1 queues {q} messages {id} ack. */
#define ROUTE_MAX_SEGMENTS 6

struct route_info {
	const char *name;
	unsigned methods;
};

static const struct route_info routes[HTTP_ROUTE__COUNT] = {
    [HTTP_ROUTE_NONE] = {"unknown", 0},
    [HTTP_ROUTE_HEALTHZ] = {"healthz", HTTP_GET | HTTP_HEAD},
    [HTTP_ROUTE_METRICS] = {"metrics", HTTP_GET | HTTP_HEAD},
    [HTTP_ROUTE_QUEUES] = {"queues", HTTP_GET | HTTP_HEAD},
    [HTTP_ROUTE_QUEUE] = {"queue", HTTP_GET | HTTP_HEAD | HTTP_PUT | HTTP_DELETE},
    [HTTP_ROUTE_PURGE] = {"purge", HTTP_POST},
    [HTTP_ROUTE_MESSAGES] = {"messages", HTTP_GET | HTTP_HEAD | HTTP_POST},
    [HTTP_ROUTE_CLAIMS] = {"claims", HTTP_POST},
    [HTTP_ROUTE_ACK] = {"ack", HTTP_POST},
    [HTTP_ROUTE_NACK] = {"nack", HTTP_POST},
    [HTTP_ROUTE_EXTEND] = {"extend", HTTP_POST},
    [HTTP_ROUTE_REQUEUE_ALL] = {"requeue", HTTP_POST},
    [HTTP_ROUTE_REQUEUE_ONE] = {"requeue", HTTP_POST},
    [HTTP_ROUTE_CHANGES] = {"changes", HTTP_GET | HTTP_HEAD},
};

const char *http_route_name(enum http_route route)
{
	return (unsigned)route < HTTP_ROUTE__COUNT ? routes[route].name : "unknown";
}

unsigned http_route_methods(enum http_route route)
{
	return (unsigned)route < HTTP_ROUTE__COUNT ? routes[route].methods : 0;
}

enum http_role http_route_role(enum http_route route, enum http_method method)
{
	switch (route) {
	case HTTP_ROUTE_MESSAGES:
		return method == HTTP_POST ? HTTP_ROLE_PRODUCER : HTTP_ROLE_CONSUMER;
	case HTTP_ROUTE_CLAIMS:
	case HTTP_ROUTE_ACK:
	case HTTP_ROUTE_NACK:
	case HTTP_ROUTE_EXTEND:
	case HTTP_ROUTE_CHANGES:
		return HTTP_ROLE_CONSUMER;
	case HTTP_ROUTE_QUEUE:
		return method == HTTP_GET || method == HTTP_HEAD ? HTTP_ROLE_ANY : HTTP_ROLE_ADMIN;
	case HTTP_ROUTE_METRICS: /* per-queue series name every queue */
	case HTTP_ROUTE_PURGE:
	case HTTP_ROUTE_REQUEUE_ALL:
	case HTTP_ROUTE_REQUEUE_ONE:
		return HTTP_ROLE_ADMIN;
	default:
		return HTTP_ROLE_ANY;
	}
}

enum http_method http_method_parse(const char *method)
{
	static const struct {
		const char *name;
		enum http_method bit;
	} methods[] = {
	    {"GET", HTTP_GET}, {"HEAD", HTTP_HEAD},	{"POST", HTTP_POST},
	    {"PUT", HTTP_PUT}, {"DELETE", HTTP_DELETE},
	};
	for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
		if (strcmp(method, methods[i].name) == 0)
			return methods[i].bit;
	}
	return HTTP_OTHER;
}

void http_route_allow(enum http_route route, char *buf, size_t cap)
{
	static const char *const names[] = {"GET", "HEAD", "POST", "PUT", "DELETE"};
	unsigned methods = http_route_methods(route);
	size_t used = 0;
	buf[0] = '\0';
	for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++) {
		if (!(methods & (1u << i)))
			continue;
		int n = snprintf(buf + used, cap - used, "%s%s", used ? ", " : "", names[i]);
		if (n < 0 || (size_t)n >= cap - used)
			return;
		used += (size_t)n;
	}
}

/* Value of one hex digit, or -1. */
static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

bool http_percent_decode(const char *src, size_t len, char *dst, size_t cap)
{
	size_t out = 0;
	for (size_t i = 0; i < len; i++) {
		char c = src[i];
		if (c == '%') {
			if (i + 2 >= len)
				return false;
			int hi = hex_value(src[i + 1]), lo = hex_value(src[i + 2]);
			if (hi < 0 || lo < 0)
				return false;
			c = (char)(hi * 16 + lo);
			if (c == '\0')
				return false;
			i += 2;
		}
		if (out + 1 >= cap)
			return false;
		dst[out++] = c;
	}
	dst[out] = '\0';
	return true;
}

/* A path segment: where it starts in the path and its length. */
struct segment {
	const char *p;
	size_t len;
};

/* True when segment s is exactly word. */
static bool seg_is(const struct segment *s, const char *word)
{
	return s->len == strlen(word) && memcmp(s->p, word, s->len) == 0;
}

/* Parses a job id segment into t->id; sets t->err on failure. */
static void take_id(const struct segment *s, struct http_target *t)
{
	char text[16];
	uint64_t id;
	if (!http_percent_decode(s->p, s->len, text, sizeof text) ||
	    !http_parse_u64(text, 1, UINT32_MAX, &id)) {
		t->err = IMAPQ_E_INVALID;
		t->problem = "the job id must be a decimal number from 1 to 4294967295";
		return;
	}
	t->id = (uint32_t)id;
}

/* Decodes and checks the queue name segment into t->queue; sets t->err on failure. */
static void take_queue(const struct segment *s, struct http_target *t)
{
	if (!http_percent_decode(s->p, s->len, t->queue, sizeof t->queue) ||
	    !queue_name_valid(t->queue)) {
		t->err = IMAPQ_E_INVALID;
		t->problem = "invalid queue name (UTF-8, at most 255 bytes, \"/\" written as %2F, "
			     "no empty levels, not ending in /dead)";
		t->queue[0] = '\0';
	}
}

/* Matches the segments after /v1/queues/{q}. */
static enum http_route match_queue_tail(const struct segment *seg, size_t n, struct http_target *t)
{
	if (n == 0)
		return HTTP_ROUTE_QUEUE;
	if (n == 1) {
		if (seg_is(&seg[0], "purge"))
			return HTTP_ROUTE_PURGE;
		if (seg_is(&seg[0], "messages"))
			return HTTP_ROUTE_MESSAGES;
		if (seg_is(&seg[0], "claims"))
			return HTTP_ROUTE_CLAIMS;
		if (seg_is(&seg[0], "changes"))
			return HTTP_ROUTE_CHANGES;
		return HTTP_ROUTE_NONE;
	}
	if (n == 2 && seg_is(&seg[0], "dead") && seg_is(&seg[1], "requeue"))
		return HTTP_ROUTE_REQUEUE_ALL;
	if (n == 3 && seg_is(&seg[0], "dead") && seg_is(&seg[2], "requeue")) {
		take_id(&seg[1], t);
		return HTTP_ROUTE_REQUEUE_ONE;
	}
	if (n == 3 && seg_is(&seg[0], "messages")) {
		enum http_route r = HTTP_ROUTE_NONE;
		if (seg_is(&seg[2], "ack"))
			r = HTTP_ROUTE_ACK;
		else if (seg_is(&seg[2], "nack"))
			r = HTTP_ROUTE_NACK;
		else if (seg_is(&seg[2], "extend"))
			r = HTTP_ROUTE_EXTEND;
		if (r != HTTP_ROUTE_NONE)
			take_id(&seg[1], t);
		return r;
	}
	return HTTP_ROUTE_NONE;
}

void http_route_parse(const char *path, struct http_target *t)
{
	memset(t, 0, sizeof *t);
	t->route = HTTP_ROUTE_NONE;
	if (path[0] != '/')
		return;
	struct segment seg[ROUTE_MAX_SEGMENTS + 1];
	size_t n = 0;
	const char *p = path + 1;
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);
		if (n == ROUTE_MAX_SEGMENTS + 1)
			return;
		seg[n++] = (struct segment){p, len};
		if (slash == NULL)
			break;
		p = slash + 1;
	}
	/* A trailing slash ("/v1/queues/") names the same resource. */
	if (n > 1 && seg[n - 1].len == 0)
		n--;
	for (size_t i = 0; i < n; i++) {
		if (seg[i].len == 0)
			return;
	}
	if (n == 1 && seg_is(&seg[0], "healthz")) {
		t->route = HTTP_ROUTE_HEALTHZ;
		return;
	}
	if (n == 1 && seg_is(&seg[0], "metrics")) {
		t->route = HTTP_ROUTE_METRICS;
		return;
	}
	if (n < 2 || !seg_is(&seg[0], "v1") || !seg_is(&seg[1], "queues"))
		return;
	if (n == 2) {
		t->route = HTTP_ROUTE_QUEUES;
		return;
	}
	t->route = match_queue_tail(seg + 3, n - 3, t);
	if (t->route != HTTP_ROUTE_NONE && t->err == IMAPQ_OK)
		take_queue(&seg[2], t);
}
