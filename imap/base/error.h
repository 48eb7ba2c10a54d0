/* One error vocabulary for every layer, with one table that says how each code is reported over
 * IMAP (tagged NO or BAD plus a response code) and over HTTP (a status and a JSON code). */
#ifndef IMAPQ_ERROR_H
#define IMAPQ_ERROR_H

#include <stdbool.h>

typedef enum imapq_err {
	IMAPQ_OK = 0,
	IMAPQ_E_NOMEM,	     /* an allocation failed */
	IMAPQ_E_IO,	     /* a read, write or fsync failed */
	IMAPQ_E_READONLY,    /* the journal failed earlier; the store refuses writes */
	IMAPQ_E_NOSPACE,     /* the disk is full (space for a record could not be reserved) */
	IMAPQ_E_CORRUPT,     /* stored data failed its checksum */
	IMAPQ_E_INVALID,     /* an argument or input is malformed */
	IMAPQ_E_NONEXISTENT, /* the mailbox (queue) does not exist */
	IMAPQ_E_EXISTS,	     /* the mailbox (queue) already exists */
	IMAPQ_E_NOTFOUND,    /* the message does not exist (any more) */
	IMAPQ_E_MODIFIED,    /* a conditional store failed: the message changed since */
	IMAPQ_E_TOOBIG,	     /* an input exceeds a size limit */
	IMAPQ_E_LIMIT,	     /* a count limit was reached */
	IMAPQ_E_LOCKED,	     /* another process holds the data folder */
	IMAPQ_E_NOPERM,	     /* the user lacks the role for this */
	IMAPQ_E_AUTH,	     /* authentication failed */
	IMAPQ_E_UNAVAILABLE, /* the server is shutting down or overloaded */
	IMAPQ_E_REFUSED,     /* a remote IMAP server answered NO or BAD */
	IMAPQ_E_UNSUPPORTED, /* a remote IMAP server lacks a needed extension */
	IMAPQ_E_TIMEOUT,     /* a remote server did not answer in time */
	IMAPQ_E_OVERQUOTA,   /* a message limit (of the mailbox or of the store) would be passed */
	IMAPQ_E__COUNT
} imapq_err;

/* Short stable identifier, e.g. "nonexistent"; used as the JSON error code. */
const char *imapq_err_name(imapq_err err);
/* One human sentence describing the failure. */
const char *imapq_err_message(imapq_err err);
/* HTTP status for this failure (200 for IMAPQ_OK). */
int imapq_err_http_status(imapq_err err);
/* IMAP response code without brackets, e.g. "NONEXISTENT"; NULL when none applies. */
const char *imapq_err_imap_code(imapq_err err);
/* True when IMAP reports this failure as BAD rather than NO. */
bool imapq_err_imap_is_bad(imapq_err err);

#endif
