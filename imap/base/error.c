#include "imap/base/error.h"

#include <stddef.h>

struct err_desc {
	const char *name;
	const char *message;
	int http_status;
	const char *imap_code;
	bool imap_bad;
};

static const struct err_desc err_table[IMAPQ_E__COUNT] = {
    [IMAPQ_OK] = {"ok", "success", 200, NULL, false},
    [IMAPQ_E_NOMEM] = {"out_of_memory", "the server ran out of memory", 503, "SERVERBUG", false},
    [IMAPQ_E_IO] = {"io_error", "a disk operation failed", 500, "SERVERBUG", false},
    [IMAPQ_E_READONLY] = {"read_only", "the journal failed; the store refuses writes", 503,
			  "SERVERBUG", false},
    [IMAPQ_E_NOSPACE] = {"no_space", "the disk is full", 507, "OVERQUOTA", false},
    [IMAPQ_E_CORRUPT] = {"corrupt", "stored data failed its checksum", 500, "CORRUPTION", false},
    [IMAPQ_E_INVALID] = {"invalid", "the request is malformed", 400, "CLIENTBUG", true},
    [IMAPQ_E_NONEXISTENT] = {"not_found", "no such queue or mailbox", 404, "NONEXISTENT", false},
    [IMAPQ_E_EXISTS] = {"exists", "the queue or mailbox already exists", 409, "ALREADYEXISTS",
			false},
    [IMAPQ_E_NOTFOUND] = {"no_message", "no such message", 404, "NONEXISTENT", false},
    [IMAPQ_E_MODIFIED] = {"modified", "the message changed since the given mod-sequence", 409,
			  "MODIFIED", false},
    [IMAPQ_E_TOOBIG] = {"too_big", "the input exceeds a size limit", 413, "TOOBIG", false},
    [IMAPQ_E_LIMIT] = {"limit", "a server limit was reached", 429, "LIMIT", false},
    [IMAPQ_E_LOCKED] = {"locked", "the data folder is in use by another process", 503, "INUSE",
			false},
    [IMAPQ_E_NOPERM] = {"forbidden", "permission denied", 403, "NOPERM", false},
    [IMAPQ_E_AUTH] = {"unauthorized", "authentication failed", 401, "AUTHENTICATIONFAILED", false},
    [IMAPQ_E_UNAVAILABLE] = {"unavailable", "the server is not available", 503, "UNAVAILABLE",
			     false},
    [IMAPQ_E_REFUSED] = {"refused", "the remote server refused the command", 502, NULL, false},
    [IMAPQ_E_UNSUPPORTED] = {"unsupported", "the remote server lacks a needed extension", 501,
			     "CANNOT", false},
    [IMAPQ_E_TIMEOUT] = {"timeout", "the remote server did not answer in time", 504, "UNAVAILABLE",
			 false},
    [IMAPQ_E_OVERQUOTA] = {"over_quota",
			   "the queue is at its message limit, or the server at its total", 507,
			   "OVERQUOTA", false},
};

static const struct err_desc *err_lookup(imapq_err err)
{
	if ((unsigned)err >= IMAPQ_E__COUNT)
		err = IMAPQ_E_IO;
	return &err_table[err];
}

const char *imapq_err_name(imapq_err err)
{
	return err_lookup(err)->name;
}

const char *imapq_err_message(imapq_err err)
{
	return err_lookup(err)->message;
}

int imapq_err_http_status(imapq_err err)
{
	return err_lookup(err)->http_status;
}

const char *imapq_err_imap_code(imapq_err err)
{
	return err_lookup(err)->imap_code;
}

bool imapq_err_imap_is_bad(imapq_err err)
{
	return err_lookup(err)->imap_bad;
}
