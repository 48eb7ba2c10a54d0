/* The demo account of a data folder without a users file: DIR/credentials, mode 0600, holding
 * "user=", "password=" and "token=" lines (DESIGN.md, "Running it"). */
#ifndef IMAPQ_CREDENTIALS_H
#define IMAPQ_CREDENTIALS_H

#include <stdbool.h>

#include "imap/base/error.h"

#define CREDENTIALS_FILE      "credentials"
#define CREDENTIALS_DEMO_USER "demo"

struct credentials {
	char user[64];
	char password[64];
	char token[96];
};

/* Reads the credentials file at path. IMAPQ_E_NONEXISTENT when it is missing, IMAPQ_E_CORRUPT
 * when a line is missing or malformed. */
imapq_err credentials_load(const char *path, struct credentials *c);

/* Makes a demo user with a random password and token and writes them to path atomically
 * (temporary file, fsync, rename), mode 0600. */
imapq_err credentials_create(const char *path, struct credentials *c);

/* Checks a user name and password against c in constant time: IMAPQ_OK or IMAPQ_E_AUTH. */
imapq_err credentials_check(const struct credentials *c, const char *user, const char *password);

/* Checks an HTTP bearer token against c's token in constant time: IMAPQ_OK or IMAPQ_E_AUTH. */
imapq_err credentials_check_token(const struct credentials *c, const char *token);

/* Loads DIR/credentials, creating it when missing; *created_r tells which happened. */
imapq_err credentials_ensure(const char *data_dir, struct credentials *c, bool *created_r);

#endif
