/* The --port-file contract: "name=port" lines written atomically once the daemon serves, so
 * harnesses can start imapqd on port 0 and never race it. */
#ifndef IMAPQ_PORTFILE_H
#define IMAPQ_PORTFILE_H

#include <stddef.h>

#include "imap/base/error.h"

struct portfile_entry {
	const char *name; /* "imap", "imaps", "http" */
	unsigned port;
};

/* Writes the entries to path through a temporary file and rename, so readers see all or none. */
imapq_err portfile_write(const char *path, const struct portfile_entry *entries, size_t n);

#endif
