/* The users file: who may log in, with which password or HTTP token, holding which roles
 * (docs/security.md has the format).
 *
 * One user per line, fields separated by blanks:
 *
 *     NAME roles=GRANT[,GRANT...] [password=$pbkdf2-sha256$i=N$SALT$HASH] [tokens=$sha256$H[,...]]
 *
 * Passwords are kept as PBKDF2-HMAC-SHA256 with a random 16-byte salt; tokens as the SHA-256 of
 * the token text (tokens are 256 random bits, so a fast hash is enough). Every comparison runs in
 * constant time, and an unknown user costs one full password hash, like a wrong password.
 *
 * A loaded table is read-only to the verify functions, so any thread may call them at once; the
 * functions that change a table need the caller to serialise them. */
#ifndef IMAPQ_USERS_H
#define IMAPQ_USERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap/base/error.h"
#include "imap/server/access.h"

/* PBKDF2 iterations for new password hashes (OWASP's 2023 figure for PBKDF2-HMAC-SHA256). */
#define USERS_PBKDF2_ITERATIONS 210000
/* Bytes of a user name, NUL included: letters, digits, '.', '_', '-' and '@'. */
#define USERS_NAME_MAX 64
/* Bytes of an encoded password hash, NUL included. */
#define USERS_HASH_MAX 128
/* Bytes of a token as issued (43 url-safe base64 characters), NUL included. */
#define USERS_TOKEN_MAX 64

struct users;

/* Makes an empty table whose new hashes use USERS_PBKDF2_ITERATIONS. */
imapq_err users_create(struct users **users_r);

/* Parses a users file. IMAPQ_E_NONEXISTENT when it is missing, IMAPQ_E_IO when unreadable,
 * IMAPQ_E_INVALID for a malformed line (why names the line and the problem), IMAPQ_E_LIMIT past
 * IMAPQ_USERS_MAX users. why may be NULL. */
imapq_err users_load(const char *path, struct users **users_r, char *why, size_t why_cap);

/* Parses users file text of len bytes, as users_load(). */
imapq_err users_parse(const char *text, size_t len, struct users **users_r, char *why,
		      size_t why_cap);

/* Writes the table to path atomically: a temporary file of mode 0600 in the same folder, fsync,
 * rename over path, fsync of the folder. Comments of a loaded file are not kept. */
imapq_err users_save(const struct users *users, const char *path);

/* Sets the PBKDF2 iteration count of hashes made from now on (and of the unknown-user decoy).
 * IMAPQ_E_INVALID outside IMAPQ_USERS_MIN_ITERATIONS..IMAPQ_USERS_MAX_ITERATIONS. */
imapq_err users_set_iterations(struct users *users, uint32_t iterations);

/* Number of users. */
size_t users_count(const struct users *users);

/* Checks name and password: IMAPQ_OK with *access_r set to the user's grants (owned by the
 * table, valid while it lives), or IMAPQ_E_AUTH. An unknown user, or one without a password,
 * costs one hash of the largest iteration count the table holds (the new-hash count when it
 * holds none), like a wrong password. */
imapq_err users_verify_password(const struct users *users, const char *name, const char *password,
				const struct access **access_r);

/* Checks an HTTP token: IMAPQ_OK with the owner's grants in *access_r and its name in *name_r
 * (both owned by the table; name_r may be NULL), or IMAPQ_E_AUTH. */
imapq_err users_verify_token(const struct users *users, const char *token,
			     const struct access **access_r, const char **name_r);

/* Adds a user with grants (a comma-separated list, see access.h) and a password (NULL for a
 * token-only user). IMAPQ_E_EXISTS when the name is taken, IMAPQ_E_INVALID for a bad name or
 * grant, IMAPQ_E_LIMIT past IMAPQ_USERS_MAX. */
imapq_err users_add(struct users *users, const char *name, const char *grants,
		    const char *password);

/* Replaces a user's grants. IMAPQ_E_NONEXISTENT for an unknown user, IMAPQ_E_INVALID. */
imapq_err users_set_grants(struct users *users, const char *name, const char *grants);

/* Replaces a user's password (NULL removes it). IMAPQ_E_NONEXISTENT for an unknown user. */
imapq_err users_set_password(struct users *users, const char *name, const char *password);

/* Removes a user. IMAPQ_E_NONEXISTENT for an unknown user. */
imapq_err users_remove(struct users *users, const char *name);

/* Makes a new random token for name, keeps only its hash, and writes the token itself to token
 * (USERS_TOKEN_MAX bytes): it cannot be recovered later. IMAPQ_E_NONEXISTENT for an unknown
 * user, IMAPQ_E_LIMIT when the user holds IMAPQ_USERS_MAX_TOKENS already. */
imapq_err users_issue_token(struct users *users, const char *name, char *token);

/* Forgets every token of name. IMAPQ_E_NONEXISTENT for an unknown user. */
imapq_err users_revoke_tokens(struct users *users, const char *name);

/* The name of user i (0 <= i < users_count()), in file order. */
const char *users_name_at(const struct users *users, size_t i);

/* The grants of name, NULL for an unknown user. */
const struct access *users_access(const struct users *users, const char *name);

/* Encodes a PBKDF2-HMAC-SHA256 hash of password with a fresh salt into out (USERS_HASH_MAX
 * bytes): "$pbkdf2-sha256$i=N$SALT$HASH", salt and hash in base64. */
imapq_err users_hash_password(const char *password, uint32_t iterations, char *out);

/* Checks password against an encoded hash in constant time: IMAPQ_OK, IMAPQ_E_AUTH, or
 * IMAPQ_E_INVALID when the encoding is malformed. */
imapq_err users_check_hash(const char *encoded, const char *password);

/* True when name is a valid user name. */
bool users_name_valid(const char *name);

void users_destroy(struct users **users);

#endif
