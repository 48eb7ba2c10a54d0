#include "imap/server/access.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/base/limits.h"

/* Suffix of a queue's dead-letter mailbox, judged as the queue itself. */
#define DEAD_SUFFIX "/dead"

struct grant {
	unsigned role;
	char *pattern; /* NULL: every name */
};

struct access {
	struct grant *grants;
	size_t n;
};

static const struct {
	const char *name;
	unsigned role;
} role_names[] = {
    {"producer", ACCESS_PRODUCER},
    {"consumer", ACCESS_CONSUMER},
    {"admin", ACCESS_ADMIN},
};

const char *access_role_name(unsigned role)
{
	for (size_t i = 0; i < sizeof role_names / sizeof role_names[0]; i++) {
		if (role_names[i].role == role)
			return role_names[i].name;
	}
	return "none";
}

imapq_err access_create(struct access **access_r)
{
	*access_r = calloc(1, sizeof **access_r);
	return *access_r != NULL ? IMAPQ_OK : IMAPQ_E_NOMEM;
}

/* True when every byte of a pattern may appear in a users file field and a mailbox name. */
static bool pattern_valid(const char *p, size_t len)
{
	if (len == 0 || len > IMAPQ_MAX_MAILBOX_NAME)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)p[i];
		if (ch <= ' ' || ch == 0x7f || ch == ',')
			return false;
	}
	return true;
}

/* Adds the grant text[0..len). */
static imapq_err add_grant(struct access *a, const char *text, size_t len)
{
	const char *colon = memchr(text, ':', len);
	size_t rlen = colon != NULL ? (size_t)(colon - text) : len;
	unsigned role = 0;
	for (size_t i = 0; i < sizeof role_names / sizeof role_names[0]; i++) {
		if (strlen(role_names[i].name) == rlen &&
		    memcmp(role_names[i].name, text, rlen) == 0)
			role = role_names[i].role;
	}
	if (role == 0)
		return IMAPQ_E_INVALID;
	char *pattern = NULL;
	if (colon != NULL) {
		size_t plen = len - rlen - 1;
		if (!pattern_valid(colon + 1, plen))
			return IMAPQ_E_INVALID;
		pattern = strndup(colon + 1, plen);
		if (pattern == NULL)
			return IMAPQ_E_NOMEM;
	}
	if (a->n == IMAPQ_ACCESS_MAX_GRANTS) {
		free(pattern);
		return IMAPQ_E_LIMIT;
	}
	struct grant *grown = realloc(a->grants, (a->n + 1) * sizeof *grown);
	if (grown == NULL) {
		free(pattern);
		return IMAPQ_E_NOMEM;
	}
	a->grants = grown;
	a->grants[a->n++] = (struct grant){role, pattern};
	return IMAPQ_OK;
}

imapq_err access_add(struct access *access, const char *grant)
{
	return add_grant(access, grant, strlen(grant));
}

imapq_err access_add_list(struct access *access, const char *list)
{
	const char *p = list;
	for (;;) {
		size_t len = strcspn(p, ",");
		imapq_err err = add_grant(access, p, len);
		if (err != IMAPQ_OK)
			return err;
		if (p[len] == '\0')
			return IMAPQ_OK;
		p += len + 1;
	}
}

bool access_pattern_match(const char *pattern, const char *name)
{
	/* Greedy glob with one backtrack point: the last '*' seen absorbs one more byte whenever
	 * the rest fails, which is enough for a single wildcard kind and never exponential. */
	const char *p = pattern, *n = name;
	const char *star = NULL, *resume = NULL;
	while (*n != '\0') {
		if (*p == '*') {
			star = p++;
			resume = n;
		} else if (*p == *n) {
			p++;
			n++;
		} else if (star != NULL) {
			p = star + 1;
			n = ++resume;
		} else {
			return false;
		}
	}
	while (*p == '*')
		p++;
	return *p == '\0';
}

unsigned access_roles(const struct access *access, const char *name)
{
	if (access == NULL)
		return ACCESS_ALL;
	/* Every spelling of INBOX is the one INBOX (RFC 3501 5.1); patterns use capitals. */
	if (strcasecmp(name, "INBOX") == 0)
		name = "INBOX";
	/* "<q>/dead" is judged as "<q>": strip one suffix (never the whole name). */
	char base[IMAPQ_MAX_MAILBOX_NAME + 1];
	size_t len = strlen(name), slen = strlen(DEAD_SUFFIX);
	const char *judged = name;
	if (len > slen && len - slen < sizeof base && strcmp(name + len - slen, DEAD_SUFFIX) == 0) {
		memcpy(base, name, len - slen);
		base[len - slen] = '\0';
		judged = base;
	}
	unsigned roles = 0;
	for (size_t i = 0; i < access->n; i++) {
		const struct grant *g = &access->grants[i];
		if (g->pattern == NULL || access_pattern_match(g->pattern, judged))
			roles |= g->role;
	}
	return roles & ACCESS_ADMIN ? ACCESS_ALL : roles;
}

unsigned access_global_roles(const struct access *access)
{
	if (access == NULL)
		return ACCESS_ALL;
	unsigned roles = 0;
	for (size_t i = 0; i < access->n; i++) {
		const struct grant *g = &access->grants[i];
		if (g->pattern == NULL || strspn(g->pattern, "*") == strlen(g->pattern))
			roles |= g->role;
	}
	return roles & ACCESS_ADMIN ? ACCESS_ALL : roles;
}

imapq_err access_check(const struct access *access, const char *name, unsigned role)
{
	unsigned roles = access_roles(access, name);
	if (roles == 0)
		return IMAPQ_E_NONEXISTENT;
	return (roles & role) == role ? IMAPQ_OK : IMAPQ_E_NOPERM;
}

imapq_err access_format(const struct access *access, char *buf, size_t cap)
{
	size_t used = 0;
	if (cap == 0)
		return IMAPQ_E_TOOBIG;
	buf[0] = '\0';
	for (size_t i = 0; access != NULL && i < access->n; i++) {
		const struct grant *g = &access->grants[i];
		int n = snprintf(buf + used, cap - used, "%s%s%s%s", i > 0 ? "," : "",
				 access_role_name(g->role), g->pattern != NULL ? ":" : "",
				 g->pattern != NULL ? g->pattern : "");
		if (n < 0 || (size_t)n >= cap - used)
			return IMAPQ_E_TOOBIG;
		used += (size_t)n;
	}
	return IMAPQ_OK;
}

void access_destroy(struct access **access)
{
	if (*access == NULL)
		return;
	for (size_t i = 0; i < (*access)->n; i++)
		free((*access)->grants[i].pattern);
	free((*access)->grants);
	free(*access);
	*access = NULL;
}
