#include "cmd/daemon/credentials.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "imap/base/log.h"

/* Fills out with n random bytes in hex: only letters and digits, so the secret never starts
 * with '-' and passes through any command line, header or URL unchanged. */
static bool random_text(char *out, size_t cap, size_t n)
{
	unsigned char raw[48];
	if (n > sizeof raw || RAND_bytes(raw, (int)n) != 1)
		return false;
	bool ok = OPENSSL_buf2hexstr_ex(out, cap, NULL, raw, n, '\0') == 1;
	OPENSSL_cleanse(raw, sizeof raw);
	return ok;
}

/* Copies the value of "key=value" into dst when line has that key. */
static bool take_value(const char *line, const char *key, char *dst, size_t cap)
{
	size_t klen = strlen(key);
	if (strncmp(line, key, klen) != 0 || line[klen] != '=')
		return false;
	const char *value = line + klen + 1;
	size_t vlen = strcspn(value, "\r\n");
	if (vlen == 0 || vlen >= cap)
		return false;
	memcpy(dst, value, vlen);
	dst[vlen] = '\0';
	return true;
}

imapq_err credentials_load(const char *path, struct credentials *c)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return errno == ENOENT ? IMAPQ_E_NONEXISTENT : IMAPQ_E_IO;
	memset(c, 0, sizeof *c);
	char line[256];
	while (fgets(line, sizeof line, f) != NULL) {
		if (!take_value(line, "user", c->user, sizeof c->user) &&
		    !take_value(line, "password", c->password, sizeof c->password))
			take_value(line, "token", c->token, sizeof c->token);
	}
	fclose(f);
	if (c->user[0] == '\0' || c->password[0] == '\0' || c->token[0] == '\0')
		return IMAPQ_E_CORRUPT;
	return IMAPQ_OK;
}

imapq_err credentials_create(const char *path, struct credentials *c)
{
	memset(c, 0, sizeof *c);
	strcpy(c->user, CREDENTIALS_DEMO_USER);
	if (!random_text(c->password, sizeof c->password, 18) ||
	    !random_text(c->token, sizeof c->token, 32))
		return IMAPQ_E_IO;

	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
		return IMAPQ_E_INVALID;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return IMAPQ_E_IO;
	char text[512];
	int len = snprintf(text, sizeof text, "user=%s\npassword=%s\ntoken=%s\n", c->user,
			   c->password, c->token);
	bool ok = write(fd, text, (size_t)len) == len && fsync(fd) == 0;
	ok = close(fd) == 0 && ok;
	if (!ok || rename(tmp, path) != 0) {
		unlink(tmp);
		return IMAPQ_E_IO;
	}
	return IMAPQ_OK;
}

imapq_err credentials_ensure(const char *data_dir, struct credentials *c, bool *created_r)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof path, "%s/%s", data_dir, CREDENTIALS_FILE) >= (int)sizeof path)
		return IMAPQ_E_INVALID;
	*created_r = false;
	imapq_err err = credentials_load(path, c);
	if (err != IMAPQ_E_NONEXISTENT)
		return err;
	err = credentials_create(path, c);
	if (err == IMAPQ_OK)
		*created_r = true;
	return err;
}

/* Compares the presented string given with the stored secret without leaking where they differ:
 * the time depends only on the lengths, never on the secret's bytes, and needs no hashing. */
static bool equal_secret(const char *secret, const char *given)
{
	size_t slen = strlen(secret), glen = strlen(given);
	unsigned char diff = slen != glen || slen == 0;
	/* Walk the presented string in full, reading the secret cyclically, so a shorter or
	 * longer guess takes as long as its own length. */
	for (size_t i = 0, j = 0; i < glen; i++) {
		diff |= (unsigned char)(given[i] ^ secret[j]);
		j = j + 1 < slen ? j + 1 : 0;
	}
	return diff == 0;
}

imapq_err credentials_check(const struct credentials *c, const char *user, const char *password)
{
	bool user_ok = equal_secret(c->user, user);
	bool password_ok = equal_secret(c->password, password);
	return user_ok && password_ok ? IMAPQ_OK : IMAPQ_E_AUTH;
}

imapq_err credentials_check_token(const struct credentials *c, const char *token)
{
	return c->token[0] != '\0' && equal_secret(c->token, token) ? IMAPQ_OK : IMAPQ_E_AUTH;
}
