/* Roles and queue-name patterns: what one user may do to which mailbox, decided in one place for
 * the IMAP server and the HTTP front (docs/security.md).
 *
 * A grant is a role, optionally limited to the mailbox names that match a pattern ("admin",
 * "consumer:jobs*"). The roles a user holds on a name are the union of the grants whose pattern
 * matches it; admin implies producer and consumer. A dead-letter mailbox "<q>/dead" is judged as
 * "<q>", and any spelling of INBOX as "INBOX". A user without any role on a name cannot see it at
 * all. An access set never changes after it is built, so threads may read it concurrently. */
#ifndef IMAPQ_ACCESS_H
#define IMAPQ_ACCESS_H

#include <stdbool.h>
#include <stddef.h>

#include "imap/base/error.h"

enum access_role {
	ACCESS_PRODUCER = 1u << 0, /* enqueue: APPEND, HTTP POST messages */
	ACCESS_CONSUMER = 1u << 1, /* claim, ack, nack, extend, read */
	ACCESS_ADMIN = 1u << 2,	   /* create, delete, purge, settings */
};
#define ACCESS_ALL (ACCESS_PRODUCER | ACCESS_CONSUMER | ACCESS_ADMIN)

struct access;

/* Makes an empty access set (no roles anywhere). */
imapq_err access_create(struct access **access_r);

/* Adds one grant, "role" or "role:pattern". IMAPQ_E_INVALID for an unknown role or a bad pattern
 * (empty, longer than a mailbox name, or holding a space, a control character or a comma),
 * IMAPQ_E_LIMIT past IMAPQ_ACCESS_MAX_GRANTS, IMAPQ_E_NOMEM. */
imapq_err access_add(struct access *access, const char *grant);

/* Adds every grant of a comma-separated list; stops at the first failure. */
imapq_err access_add_list(struct access *access, const char *list);

/* The roles held on mailbox name (ACCESS_* bits; admin expands to ACCESS_ALL). A NULL access
 * stands for an account with every role everywhere. */
unsigned access_roles(const struct access *access, const char *name);

/* The roles held on every possible name: grants without a pattern, or with "*". */
unsigned access_global_roles(const struct access *access);

/* Decides whether role may be used on mailbox name: IMAPQ_OK, IMAPQ_E_NONEXISTENT when the name
 * is hidden (no role at all: answered exactly like a missing mailbox) or IMAPQ_E_NOPERM when it
 * is visible without the role. role 0 asks only for visibility. */
imapq_err access_check(const struct access *access, const char *name, unsigned role);

/* True when pattern matches the whole of name; '*' matches any run of bytes, "/" included, and
 * every other byte matches itself. */
bool access_pattern_match(const char *pattern, const char *name);

/* Writes the grants as a comma-separated list (the form access_add_list() reads) into buf.
 * IMAPQ_E_TOOBIG when cap is too small. */
imapq_err access_format(const struct access *access, char *buf, size_t cap);

/* The name of one role bit ("producer", ...). */
const char *access_role_name(unsigned role);

void access_destroy(struct access **access);

#endif
