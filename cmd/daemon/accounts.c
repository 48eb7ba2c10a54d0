#include "cmd/daemon/accounts.h"

#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cmd/daemon/credentials.h"
#include "imap/base/log.h"
#include "imap/server/access.h"
#include "imap/server/users.h"

#define ACCOUNTS_LOG "imapqd"

struct accounts {
	char path[PATH_MAX]; /* the users file; "" for the demo account */
	struct credentials demo;
	_Atomic(struct users *) current;
	struct users **retired; /* replaced by a reload, freed at the end */
	size_t nretired;
	atomic_ullong login_failures, token_failures;
};

/* Loads the users file; logs why it cannot be used. */
static imapq_err load_users(const char *path, struct users **users_r)
{
	char why[256] = "";
	imapq_err err = users_load(path, users_r, why, sizeof why);
	if (err != IMAPQ_OK) {
		log_error(ACCOUNTS_LOG, "users file %s: %s", path,
			  why[0] != '\0' ? why : imapq_err_message(err));
		return err == IMAPQ_E_NONEXISTENT ? IMAPQ_E_INVALID : err;
	}
	if (users_count(*users_r) == 0) {
		log_error(ACCOUNTS_LOG, "users file %s: no users (add one with imapq user add)",
			  path);
		users_destroy(users_r);
		return IMAPQ_E_INVALID;
	}
	struct stat st;
	if (stat(path, &st) == 0 && (st.st_mode & 0077) != 0)
		log_warn(ACCOUNTS_LOG, "users file %s can be read by other users; chmod 600 it",
			 path);
	return IMAPQ_OK;
}

/* Sets up the demo account, printing it when it is new. */
static imapq_err open_demo(struct accounts *a, const char *data_dir)
{
	bool created;
	imapq_err err = credentials_ensure(data_dir, &a->demo, &created);
	if (err != IMAPQ_OK) {
		log_error(ACCOUNTS_LOG, "cannot set up %s/%s: %s", data_dir, CREDENTIALS_FILE,
			  imapq_err_message(err));
		return err;
	}
	if (created) {
		printf("imapqd: created the demo account (kept in %s/%s):\n"
		       "  user=%s\n  password=%s\n  token=%s\n",
		       data_dir, CREDENTIALS_FILE, a->demo.user, a->demo.password, a->demo.token);
		fflush(stdout);
	} else {
		log_info(ACCOUNTS_LOG, "account '%s' from %s/%s", a->demo.user, data_dir,
			 CREDENTIALS_FILE);
	}
	return IMAPQ_OK;
}

imapq_err accounts_open(const char *data_dir, const char *users_path, struct accounts **accounts_r)
{
	struct accounts *a = calloc(1, sizeof *a);
	if (a == NULL)
		return IMAPQ_E_NOMEM;
	imapq_err err;
	if (users_path[0] != '\0') {
		struct users *users = NULL;
		if (strlen(users_path) >= sizeof a->path) {
			log_error(ACCOUNTS_LOG, "users file path too long");
			err = IMAPQ_E_INVALID;
		} else {
			strcpy(a->path, users_path);
			err = load_users(users_path, &users);
		}
		if (err == IMAPQ_OK) {
			log_info(ACCOUNTS_LOG, "%zu users from %s", users_count(users), users_path);
			atomic_store(&a->current, users);
		}
	} else {
		err = open_demo(a, data_dir);
	}
	if (err != IMAPQ_OK) {
		accounts_destroy(&a);
		return err;
	}
	*accounts_r = a;
	return IMAPQ_OK;
}

void accounts_reload(struct accounts *a)
{
	if (a->path[0] == '\0')
		return;
	struct users *fresh;
	if (load_users(a->path, &fresh) != IMAPQ_OK) {
		log_warn(ACCOUNTS_LOG, "SIGHUP: kept the users loaded before");
		return;
	}
	struct users **grown = realloc(a->retired, (a->nretired + 1) * sizeof *grown);
	if (grown == NULL) {
		users_destroy(&fresh);
		log_warn(ACCOUNTS_LOG, "SIGHUP: out of memory; kept the users loaded before");
		return;
	}
	a->retired = grown;
	a->retired[a->nretired++] = atomic_exchange(&a->current, fresh);
	log_info(ACCOUNTS_LOG, "SIGHUP: %zu users from %s", users_count(fresh), a->path);
}

/* Runs on the IMAP server's password thread while HTTP threads check tokens and SIGHUP may swap
 * the table: it reads the current table once (retired ones stay alive) and counts atomically. */
imapq_err accounts_check_login(void *ctx, const char *user, const char *password,
			       const struct access **access_r)
{
	struct accounts *a = ctx;
	struct users *users = atomic_load(&a->current);
	imapq_err err;
	*access_r = NULL;
	if (users != NULL)
		err = users_verify_password(users, user, password, access_r);
	else
		err = credentials_check(&a->demo, user, password);
	if (err == IMAPQ_E_AUTH)
		log_info(ACCOUNTS_LOG, "imap: failed login (%llu since start)",
			 (unsigned long long)atomic_fetch_add(&a->login_failures, 1) + 1);
	return err;
}

/* The access bits an HTTP role stands for. */
static unsigned role_bits(enum http_role role)
{
	switch (role) {
	case HTTP_ROLE_PRODUCER:
		return ACCESS_PRODUCER;
	case HTTP_ROLE_CONSUMER:
		return ACCESS_CONSUMER;
	case HTTP_ROLE_ADMIN:
		return ACCESS_ADMIN;
	default:
		return 0;
	}
}

imapq_err accounts_check_token(void *ctx, const char *token, enum http_role role, const char *queue,
			       const struct access **access_r)
{
	struct accounts *a = ctx;
	struct users *users = atomic_load(&a->current);
	*access_r = NULL;
	if (users == NULL) {
		imapq_err err = credentials_check_token(&a->demo, token);
		if (err == IMAPQ_E_AUTH)
			log_info(ACCOUNTS_LOG, "http: unknown token refused (%llu since start)",
				 (unsigned long long)atomic_fetch_add(&a->token_failures, 1) + 1);
		return err;
	}
	const char *name = NULL;
	if (users_verify_token(users, token, access_r, &name) != IMAPQ_OK) {
		log_info(ACCOUNTS_LOG, "http: unknown token refused (%llu since start)",
			 (unsigned long long)atomic_fetch_add(&a->token_failures, 1) + 1);
		return IMAPQ_E_AUTH;
	}
	unsigned need = role_bits(role);
	if (queue[0] != '\0')
		return access_check(*access_r, queue, need);
	return (access_global_roles(*access_r) & need) == need ? IMAPQ_OK : IMAPQ_E_NOPERM;
}

void accounts_destroy(struct accounts **accounts)
{
	struct accounts *a = *accounts;
	if (a == NULL)
		return;
	struct users *users = atomic_load(&a->current);
	users_destroy(&users);
	for (size_t i = 0; i < a->nretired; i++)
		users_destroy(&a->retired[i]);
	free(a->retired);
	memset(&a->demo, 0, sizeof a->demo);
	free(a);
	*accounts = NULL;
}
