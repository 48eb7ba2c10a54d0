#include "imap/server/users.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "imap/base/limits.h"

#define HASH_PREFIX  "$pbkdf2-sha256$i="
#define TOKEN_PREFIX "$sha256$"
#define SALT_BYTES   16
#define KEY_BYTES    32 /* SHA-256 output: PBKDF2 gains nothing from a longer key */
#define TOKEN_BYTES  32

struct user {
	char name[USERS_NAME_MAX];
	struct access *access;
	char hash[USERS_HASH_MAX]; /* empty: no password (token-only) */
	unsigned char tokens[IMAPQ_USERS_MAX_TOKENS][KEY_BYTES];
	size_t ntokens;
};

struct users {
	struct user **v;
	size_t n;
	uint32_t iterations;	   /* for new hashes */
	uint32_t decoy_iterations; /* the largest count among the hashes held; 0: none yet */
};

imapq_err users_create(struct users **users_r)
{
	struct users *u = calloc(1, sizeof *u);
	if (u == NULL)
		return IMAPQ_E_NOMEM;
	u->iterations = USERS_PBKDF2_ITERATIONS;
	*users_r = u;
	return IMAPQ_OK;
}

imapq_err users_set_iterations(struct users *users, uint32_t iterations)
{
	if (iterations < IMAPQ_USERS_MIN_ITERATIONS || iterations > IMAPQ_USERS_MAX_ITERATIONS)
		return IMAPQ_E_INVALID;
	users->iterations = iterations;
	return IMAPQ_OK;
}

size_t users_count(const struct users *users)
{
	return users->n;
}

static void user_free(struct user *user)
{
	access_destroy(&user->access);
	OPENSSL_cleanse(user, sizeof *user);
	free(user);
}

void users_destroy(struct users **users)
{
	if (*users == NULL)
		return;
	for (size_t i = 0; i < (*users)->n; i++)
		user_free((*users)->v[i]);
	free((*users)->v);
	free(*users);
	*users = NULL;
}

bool users_name_valid(const char *name)
{
	size_t len = strlen(name);
	if (len == 0 || len >= USERS_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' || c == '@';
		if (!ok)
			return false;
	}
	return true;
}

static struct user *find(const struct users *users, const char *name)
{
	for (size_t i = 0; i < users->n; i++) {
		if (strcmp(users->v[i]->name, name) == 0)
			return users->v[i];
	}
	return NULL;
}

const char *users_name_at(const struct users *users, size_t i)
{
	return users->v[i]->name;
}

const struct access *users_access(const struct users *users, const char *name)
{
	const struct user *user = find(users, name);
	return user != NULL ? user->access : NULL;
}

/* --- Encodings --- */

/* Standard base64 of n bytes into out (4 * ceil(n / 3) + 1 bytes). */
static void b64_encode(char *out, const unsigned char *in, size_t n)
{
	EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

/* Decodes exactly want bytes from the base64 text[0..len); false unless it is that long. */
static bool b64_decode(const char *text, size_t len, unsigned char *out, size_t want)
{
	unsigned char raw[64];
	if (len == 0 || len % 4 != 0 || len / 4 * 3 > sizeof raw || len != (want + 2) / 3 * 4)
		return false;
	int n = EVP_DecodeBlock(raw, (const unsigned char *)text, (int)len);
	size_t pad = (text[len - 1] == '=') + (len >= 2 && text[len - 2] == '=');
	bool ok = n >= 0 && (size_t)n - pad == want;
	if (ok)
		memcpy(out, raw, want);
	OPENSSL_cleanse(raw, sizeof raw);
	return ok;
}

static bool pbkdf2(const char *password, const unsigned char *salt, uint32_t iterations,
		   unsigned char *key)
{
	return PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, SALT_BYTES, (int)iterations,
				 EVP_sha256(), KEY_BYTES, key) == 1;
}

imapq_err users_hash_password(const char *password, uint32_t iterations, char *out)
{
	unsigned char salt[SALT_BYTES], key[KEY_BYTES];
	char salt64[(SALT_BYTES + 2) / 3 * 4 + 1], key64[(KEY_BYTES + 2) / 3 * 4 + 1];
	if (iterations < IMAPQ_USERS_MIN_ITERATIONS || iterations > IMAPQ_USERS_MAX_ITERATIONS)
		return IMAPQ_E_INVALID;
	if (RAND_bytes(salt, sizeof salt) != 1 || !pbkdf2(password, salt, iterations, key))
		return IMAPQ_E_IO;
	b64_encode(salt64, salt, sizeof salt);
	b64_encode(key64, key, sizeof key);
	OPENSSL_cleanse(key, sizeof key);
	int n = snprintf(out, USERS_HASH_MAX, HASH_PREFIX "%u$%s$%s", iterations, salt64, key64);
	return n > 0 && n < USERS_HASH_MAX ? IMAPQ_OK : IMAPQ_E_TOOBIG;
}

/* Splits an encoded hash into its parts; false when malformed. */
static bool parse_hash(const char *encoded, uint32_t *iterations, unsigned char *salt,
		       unsigned char *key)
{
	size_t plen = strlen(HASH_PREFIX);
	if (strncmp(encoded, HASH_PREFIX, plen) != 0)
		return false;
	const char *p = encoded + plen;
	uint64_t it = 0;
	size_t digits = 0;
	for (; *p >= '0' && *p <= '9' && digits < 10; p++, digits++)
		it = it * 10 + (uint64_t)(*p - '0');
	if (digits == 0 || *p != '$' || it < IMAPQ_USERS_MIN_ITERATIONS ||
	    it > IMAPQ_USERS_MAX_ITERATIONS)
		return false;
	const char *salt64 = p + 1;
	const char *dollar = strchr(salt64, '$');
	if (dollar == NULL || !b64_decode(salt64, (size_t)(dollar - salt64), salt, SALT_BYTES) ||
	    !b64_decode(dollar + 1, strlen(dollar + 1), key, KEY_BYTES))
		return false;
	*iterations = (uint32_t)it;
	return true;
}

imapq_err users_check_hash(const char *encoded, const char *password)
{
	uint32_t iterations;
	unsigned char salt[SALT_BYTES], want[KEY_BYTES], got[KEY_BYTES];
	if (!parse_hash(encoded, &iterations, salt, want))
		return IMAPQ_E_INVALID;
	bool ok =
	    pbkdf2(password, salt, iterations, got) && CRYPTO_memcmp(got, want, KEY_BYTES) == 0;
	OPENSSL_cleanse(got, sizeof got);
	OPENSSL_cleanse(want, sizeof want);
	return ok ? IMAPQ_OK : IMAPQ_E_AUTH;
}

static void token_digest(const char *token, unsigned char *out)
{
	unsigned int len = KEY_BYTES;
	EVP_Digest(token, strlen(token), out, &len, EVP_sha256(), NULL);
}

/* Notes the iteration count of a hash the table now holds, for the decoy. */
static void note_hash(struct users *users, const char *encoded)
{
	uint32_t it;
	unsigned char salt[SALT_BYTES], key[KEY_BYTES];
	if (parse_hash(encoded, &it, salt, key) && it > users->decoy_iterations)
		users->decoy_iterations = it;
	OPENSSL_cleanse(key, sizeof key);
}

/* --- Verification --- */

imapq_err users_verify_password(const struct users *users, const char *name, const char *password,
				const struct access **access_r)
{
	const struct user *user = find(users, name);
	if (user == NULL || user->hash[0] == '\0') {
		/* The decoy costs what a real check costs, so timing does not tell names apart. */
		static const unsigned char decoy_salt[SALT_BYTES] = "imapq-decoy-salt";
		unsigned char key[KEY_BYTES];
		uint32_t it = users->decoy_iterations ? users->decoy_iterations : users->iterations;
		pbkdf2(password, decoy_salt, it, key);
		OPENSSL_cleanse(key, sizeof key);
		return IMAPQ_E_AUTH;
	}
	if (users_check_hash(user->hash, password) != IMAPQ_OK)
		return IMAPQ_E_AUTH;
	*access_r = user->access;
	return IMAPQ_OK;
}

imapq_err users_verify_token(const struct users *users, const char *token,
			     const struct access **access_r, const char **name_r)
{
	unsigned char digest[KEY_BYTES];
	const struct user *match = NULL;
	token_digest(token, digest);
	/* Every stored hash is compared, so the time does not depend on which one matches. */
	for (size_t i = 0; i < users->n; i++) {
		const struct user *user = users->v[i];
		for (size_t t = 0; t < user->ntokens; t++) {
			if (CRYPTO_memcmp(digest, user->tokens[t], KEY_BYTES) == 0)
				match = user;
		}
	}
	if (match == NULL)
		return IMAPQ_E_AUTH;
	*access_r = match->access;
	if (name_r != NULL)
		*name_r = match->name;
	return IMAPQ_OK;
}

/* --- Changes --- */

/* Parses grants into a fresh access set. */
static imapq_err grants_parse(const char *grants, struct access **access_r)
{
	struct access *a;
	imapq_err err = access_create(&a);
	if (err != IMAPQ_OK)
		return err;
	err = access_add_list(a, grants);
	if (err != IMAPQ_OK) {
		access_destroy(&a);
		return err;
	}
	*access_r = a;
	return IMAPQ_OK;
}

/* Appends a user that has its name and grants set; takes ownership. */
static imapq_err append_user(struct users *users, struct user *user)
{
	if (users->n == IMAPQ_USERS_MAX)
		return IMAPQ_E_LIMIT;
	struct user **grown = realloc(users->v, (users->n + 1) * sizeof *grown);
	if (grown == NULL)
		return IMAPQ_E_NOMEM;
	users->v = grown;
	users->v[users->n++] = user;
	return IMAPQ_OK;
}

imapq_err users_add(struct users *users, const char *name, const char *grants, const char *password)
{
	if (!users_name_valid(name))
		return IMAPQ_E_INVALID;
	if (find(users, name) != NULL)
		return IMAPQ_E_EXISTS;
	struct user *user = calloc(1, sizeof *user);
	if (user == NULL)
		return IMAPQ_E_NOMEM;
	strcpy(user->name, name);
	imapq_err err = grants_parse(grants, &user->access);
	if (err == IMAPQ_OK && password != NULL)
		err = users_hash_password(password, users->iterations, user->hash);
	if (err == IMAPQ_OK)
		err = append_user(users, user);
	if (err == IMAPQ_OK)
		note_hash(users, user->hash);
	if (err != IMAPQ_OK)
		user_free(user);
	return err;
}

imapq_err users_set_grants(struct users *users, const char *name, const char *grants)
{
	struct user *user = find(users, name);
	if (user == NULL)
		return IMAPQ_E_NONEXISTENT;
	struct access *a;
	imapq_err err = grants_parse(grants, &a);
	if (err != IMAPQ_OK)
		return err;
	access_destroy(&user->access);
	user->access = a;
	return IMAPQ_OK;
}

imapq_err users_set_password(struct users *users, const char *name, const char *password)
{
	struct user *user = find(users, name);
	if (user == NULL)
		return IMAPQ_E_NONEXISTENT;
	if (password == NULL) {
		user->hash[0] = '\0';
		return IMAPQ_OK;
	}
	imapq_err err = users_hash_password(password, users->iterations, user->hash);
	if (err == IMAPQ_OK)
		note_hash(users, user->hash);
	return err;
}

imapq_err users_remove(struct users *users, const char *name)
{
	for (size_t i = 0; i < users->n; i++) {
		if (strcmp(users->v[i]->name, name) == 0) {
			user_free(users->v[i]);
			memmove(&users->v[i], &users->v[i + 1],
				(users->n - i - 1) * sizeof users->v[0]);
			users->n--;
			return IMAPQ_OK;
		}
	}
	return IMAPQ_E_NONEXISTENT;
}

imapq_err users_issue_token(struct users *users, const char *name, char *token)
{
	struct user *user = find(users, name);
	if (user == NULL)
		return IMAPQ_E_NONEXISTENT;
	if (user->ntokens == IMAPQ_USERS_MAX_TOKENS)
		return IMAPQ_E_LIMIT;
	unsigned char raw[TOKEN_BYTES];
	char b64[(TOKEN_BYTES + 2) / 3 * 4 + 1];
	if (RAND_bytes(raw, sizeof raw) != 1)
		return IMAPQ_E_IO;
	b64_encode(b64, raw, sizeof raw);
	OPENSSL_cleanse(raw, sizeof raw);
	/* url-safe and unpadded, so the token can travel in a header or a URL unchanged */
	size_t len = strcspn(b64, "=");
	for (size_t i = 0; i < len; i++)
		token[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : b64[i];
	token[len] = '\0';
	OPENSSL_cleanse(b64, sizeof b64);
	token_digest(token, user->tokens[user->ntokens++]);
	return IMAPQ_OK;
}

imapq_err users_revoke_tokens(struct users *users, const char *name)
{
	struct user *user = find(users, name);
	if (user == NULL)
		return IMAPQ_E_NONEXISTENT;
	OPENSSL_cleanse(user->tokens, sizeof user->tokens);
	user->ntokens = 0;
	return IMAPQ_OK;
}

/* --- The file --- */

/* Formats a parse failure into why. */
__attribute__((format(printf, 3, 4))) static imapq_err fail(char *why, size_t cap, const char *fmt,
							    ...)
{
	if (why != NULL && cap > 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(why, cap, fmt, ap);
		va_end(ap);
	}
	return IMAPQ_E_INVALID;
}

/* Parses the token hashes of a "tokens=" field into user. */
static bool parse_tokens(const char *list, struct user *user)
{
	size_t plen = strlen(TOKEN_PREFIX);
	for (const char *p = list;;) {
		size_t len = strcspn(p, ",");
		if (user->ntokens == IMAPQ_USERS_MAX_TOKENS || len <= plen ||
		    strncmp(p, TOKEN_PREFIX, plen) != 0 ||
		    !b64_decode(p + plen, len - plen, user->tokens[user->ntokens], KEY_BYTES))
			return false;
		user->ntokens++;
		if (p[len] == '\0')
			return true;
		p += len + 1;
	}
}

/* Parses one non-empty line (NUL-terminated, blanks as separators) into a new user. */
static imapq_err parse_line(struct users *users, char *line, unsigned lineno, char *why, size_t cap)
{
	char *save = NULL;
	const char *name = strtok_r(line, " \t", &save);
	if (!users_name_valid(name))
		return fail(why, cap, "line %u: invalid user name (letters, digits, . _ - @)",
			    lineno);
	if (find(users, name) != NULL)
		return fail(why, cap, "line %u: user '%s' appears twice", lineno, name);
	struct user *user = calloc(1, sizeof *user);
	if (user == NULL)
		return IMAPQ_E_NOMEM;
	strcpy(user->name, name);
	imapq_err err = IMAPQ_OK;
	bool have_tokens = false;
	for (char *field; err == IMAPQ_OK && (field = strtok_r(NULL, " \t", &save)) != NULL;) {
		if (strncmp(field, "roles=", 6) == 0 && user->access == NULL) {
			err = grants_parse(field + 6, &user->access);
			if (err == IMAPQ_E_INVALID || err == IMAPQ_E_LIMIT)
				err = fail(why, cap, "line %u: bad roles '%s' (%s)", lineno,
					   field + 6,
					   "producer, consumer or admin, each optionally :PATTERN");
		} else if (strncmp(field, "password=", 9) == 0 && user->hash[0] == '\0') {
			uint32_t it;
			unsigned char salt[SALT_BYTES], key[KEY_BYTES];
			if (strlen(field + 9) >= USERS_HASH_MAX ||
			    !parse_hash(field + 9, &it, salt, key))
				err = fail(why, cap,
					   "line %u: password is not $pbkdf2-sha256$i=N$SALT$HASH "
					   "(i from %d to %d)",
					   lineno, IMAPQ_USERS_MIN_ITERATIONS,
					   IMAPQ_USERS_MAX_ITERATIONS);
			else
				strcpy(user->hash, field + 9);
			if (err == IMAPQ_OK)
				note_hash(users, user->hash);
			OPENSSL_cleanse(key, sizeof key);
		} else if (strncmp(field, "tokens=", 7) == 0 && !have_tokens) {
			have_tokens = true;
			if (!parse_tokens(field + 7, user))
				err =
				    fail(why, cap,
					 "line %u: tokens are not a list of up to %d $sha256$HASH",
					 lineno, IMAPQ_USERS_MAX_TOKENS);
		} else {
			err = fail(why, cap, "line %u: unknown or repeated field '%.40s'", lineno,
				   field);
		}
	}
	if (err == IMAPQ_OK && user->access == NULL)
		err = fail(why, cap, "line %u: user '%s' has no roles= field", lineno, name);
	if (err == IMAPQ_OK) {
		err = append_user(users, user);
		if (err == IMAPQ_E_LIMIT)
			fail(why, cap, "line %u: more than %d users", lineno, IMAPQ_USERS_MAX);
	}
	if (err != IMAPQ_OK)
		user_free(user);
	return err;
}

imapq_err users_parse(const char *text, size_t len, struct users **users_r, char *why,
		      size_t why_cap)
{
	struct users *users;
	imapq_err err = users_create(&users);
	if (err != IMAPQ_OK)
		return err;
	char *line = malloc(IMAPQ_USERS_MAX_LINE + 1);
	if (line == NULL) {
		users_destroy(&users);
		return IMAPQ_E_NOMEM;
	}
	unsigned lineno = 0;
	for (size_t pos = 0; pos < len && err == IMAPQ_OK;) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t n = nl != NULL ? (size_t)(nl - (text + pos)) : len - pos;
		lineno++;
		if (n > 0 && text[pos + n - 1] == '\r')
			n--;
		if (n > IMAPQ_USERS_MAX_LINE) {
			err = fail(why, why_cap, "line %u: longer than %d bytes", lineno,
				   IMAPQ_USERS_MAX_LINE);
		} else if (memchr(text + pos, '\0', n) != NULL) {
			err = fail(why, why_cap, "line %u: holds a NUL byte", lineno);
		} else {
			memcpy(line, text + pos, n);
			line[n] = '\0';
			size_t lead = strspn(line, " \t");
			if (line[lead] != '\0' && line[lead] != '#')
				err = parse_line(users, line + lead, lineno, why, why_cap);
		}
		pos += (nl != NULL ? (size_t)(nl - (text + pos)) + 1 : len - pos);
	}
	OPENSSL_cleanse(line, IMAPQ_USERS_MAX_LINE + 1);
	free(line);
	if (err != IMAPQ_OK) {
		users_destroy(&users);
		return err;
	}
	*users_r = users;
	return IMAPQ_OK;
}

imapq_err users_load(const char *path, struct users **users_r, char *why, size_t why_cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		if (why != NULL && why_cap > 0)
			snprintf(why, why_cap, "%s", strerror(e));
		return e == ENOENT ? IMAPQ_E_NONEXISTENT : IMAPQ_E_IO;
	}
	struct stat st;
	uint64_t max = (uint64_t)IMAPQ_USERS_MAX * (IMAPQ_USERS_MAX_LINE + 1);
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
		close(fd);
		if (why != NULL && why_cap > 0)
			snprintf(why, why_cap, "not a regular file of at most %llu bytes",
				 (unsigned long long)max);
		return IMAPQ_E_IO;
	}
	size_t size = (size_t)st.st_size;
	char *text = malloc(size + 1);
	size_t got = 0;
	while (text != NULL && got < size) {
		ssize_t r = read(fd, text + got, size - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	if (text == NULL)
		return IMAPQ_E_NOMEM;
	imapq_err err = IMAPQ_E_IO;
	if (got == size)
		err = users_parse(text, size, users_r, why, why_cap);
	else if (why != NULL && why_cap > 0)
		snprintf(why, why_cap, "read failed");
	OPENSSL_cleanse(text, size);
	free(text);
	return err;
}

/* Writes one user's line to f. */
static bool write_user(FILE *f, const struct user *user)
{
	char grants[IMAPQ_ACCESS_MAX_GRANTS * (IMAPQ_MAX_MAILBOX_NAME + 16)];
	if (access_format(user->access, grants, sizeof grants) != IMAPQ_OK)
		return false;
	fprintf(f, "%s roles=%s", user->name, grants);
	if (user->hash[0] != '\0')
		fprintf(f, " password=%s", user->hash);
	for (size_t t = 0; t < user->ntokens; t++) {
		char b64[(KEY_BYTES + 2) / 3 * 4 + 1];
		b64_encode(b64, user->tokens[t], KEY_BYTES);
		fprintf(f, "%s" TOKEN_PREFIX "%s", t == 0 ? " tokens=" : ",", b64);
	}
	return fputc('\n', f) != EOF;
}

/* Flushes the folder holding path so a rename in it is durable. */
static bool sync_parent(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	if (slash == NULL)
		strcpy(dir, ".");
	else if (slash == path)
		strcpy(dir, "/");
	else if ((size_t)(slash - path) < sizeof dir)
		snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
	else
		return false;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return false;
	bool ok = fsync(fd) == 0;
	close(fd);
	return ok;
}

imapq_err users_save(const struct users *users, const char *path)
{
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof tmp, "%s.XXXXXX", path) >= (int)sizeof tmp)
		return IMAPQ_E_INVALID;
	int fd = mkstemp(tmp); /* mode 0600 */
	if (fd < 0)
		return IMAPQ_E_IO;
	FILE *f = fdopen(fd, "w");
	if (f == NULL) {
		close(fd);
		unlink(tmp);
		return IMAPQ_E_IO;
	}
	bool ok = fchmod(fd, 0600) == 0;
	fprintf(f, "# imapq users: NAME roles=GRANTS [password=HASH] [tokens=HASHES] "
		   "(docs/security.md)\n");
	for (size_t i = 0; ok && i < users->n; i++)
		ok = write_user(f, users->v[i]);
	ok = fflush(f) == 0 && !ferror(f) && fsync(fd) == 0 && ok;
	ok = fclose(f) == 0 && ok;
	if (!ok || rename(tmp, path) != 0) {
		unlink(tmp);
		return IMAPQ_E_IO;
	}
	return sync_parent(path) ? IMAPQ_OK : IMAPQ_E_IO;
}
