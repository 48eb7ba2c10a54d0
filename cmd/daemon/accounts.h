/* Who may log in to imapqd: the users file given with --users, or else the demo account of
 * DIR/credentials (which holds every role). The checks run on the IMAP server's password thread
 * and on the HTTP pool threads at once; a reload on SIGHUP swaps the users table atomically and
 * keeps the previous tables until the daemon ends, because sessions and requests hold pointers
 * into them. */
#ifndef IMAPQ_DAEMON_ACCOUNTS_H
#define IMAPQ_DAEMON_ACCOUNTS_H

#include "http/http.h"
#include "imap/base/error.h"
#include "imap/server/server.h"

struct accounts;

/* Loads users_path when it is not empty, else the demo account in data_dir (created and printed
 * to stdout on the first start). Failures are logged with the reason; IMAPQ_E_INVALID for a
 * malformed or empty users file. */
imapq_err accounts_open(const char *data_dir, const char *users_path, struct accounts **accounts_r);

/* Reads the users file again; a file that fails to load is logged and the current table stays.
 * Does nothing for the demo account. Call it on one thread at a time. */
void accounts_reload(struct accounts *accounts);

/* The imap_auth_fn and http_auth_fn of the daemon; ctx is the accounts. */
imapq_err accounts_check_login(void *ctx, const char *user, const char *password,
			       const struct access **access_r);
imapq_err accounts_check_token(void *ctx, const char *token, enum http_role role, const char *queue,
			       const struct access **access_r);

void accounts_destroy(struct accounts **accounts);

#endif
