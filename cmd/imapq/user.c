/* imapq user add|passwd|roles|token|del|list --users FILE: the users file's editor. Every change
 * rewrites the file atomically (mode 0600); imapqd reads it again on SIGHUP. Passwords are read
 * from standard input (without echo on a terminal), never from the command line, where other
 * users could see them. */
#include "cmd/imapq/user.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "cmd/imapq/cli.h"
#include "imap/base/limits.h"
#include "imap/server/access.h"
#include "imap/server/users.h"

/* Bytes of a password read from standard input, NUL included. */
#define PASSWORD_MAX 256

static const char user_help[] =
    "Usage: imapq user SUBCOMMAND --users FILE [OPTIONS] [NAME]\n"
    "\n"
    "Edits the users file of imapqd (see docs/security.md); send imapqd SIGHUP to apply.\n"
    "\n"
    "  add NAME --roles GRANTS [--no-password]\n"
    "                     add a user; the password is read from standard input\n"
    "  passwd NAME        set a new password, read from standard input\n"
    "  roles NAME --roles GRANTS\n"
    "                     replace the user's roles\n"
    "  token NAME [--revoke]\n"
    "                     issue an HTTP token and print it (it is shown only once), or\n"
    "                     with --revoke forget every token of the user\n"
    "  del NAME           remove the user\n"
    "  list               print each user's name and roles\n"
    "\n"
    "Options:\n"
    "      --users FILE      the users file (created by add when missing)\n"
    "      --roles GRANTS    comma-separated producer, consumer, admin, each optionally\n"
    "                        limited to queues by a pattern: consumer:jobs*,producer\n"
    "      --no-password     add a user that logs in with tokens only\n"
    "      --iterations N    PBKDF2 iterations for the new hash (default 210000)\n"
    "  -h, --help            this text\n"
    "\n"
    "Exit status: 0 done, 1 the file could not be read or written, 2 bad usage,\n"
    "3 no such user, 4 the user exists already.\n";

struct user_args {
	const char *sub;
	const char *name;
	const char *users;
	const char *roles;
	bool no_password;
	bool revoke;
	unsigned long iterations;
};

/* Reads one line from standard input into buf, without echo when it is a terminal. */
static bool read_password(char *buf, size_t cap)
{
	struct termios old, quiet;
	bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
	if (tty) {
		fputs("Password: ", stderr);
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	}
	bool ok = fgets(buf, (int)cap, stdin) != NULL;
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
		fputc('\n', stderr);
	}
	if (!ok)
		return false;
	buf[strcspn(buf, "\r\n")] = '\0';
	return buf[0] != '\0';
}

/* Maps a users_* failure to a message and an exit status. */
static int report(const struct user_args *a, imapq_err err)
{
	switch (err) {
	case IMAPQ_OK:
		return CLI_EXIT_OK;
	case IMAPQ_E_NONEXISTENT:
		fprintf(stderr, "imapq user: no user '%s' in %s\n", a->name, a->users);
		return CLI_EXIT_NOT_FOUND;
	case IMAPQ_E_EXISTS:
		fprintf(stderr, "imapq user: '%s' exists already in %s\n", a->name, a->users);
		return CLI_EXIT_CONFLICT;
	case IMAPQ_E_INVALID:
		fprintf(
		    stderr,
		    "imapq user: invalid name or roles (names: letters, digits, . _ - @; roles: "
		    "producer, consumer, admin, each optionally :PATTERN)\n");
		return CLI_EXIT_USAGE;
	case IMAPQ_E_LIMIT:
		fprintf(stderr, "imapq user: limit reached (%s)\n", imapq_err_message(err));
		return CLI_EXIT_ERROR;
	default:
		fprintf(stderr, "imapq user: %s\n", imapq_err_message(err));
		return CLI_EXIT_ERROR;
	}
}

/* Parses the command line into a; returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, struct user_args *a)
{
	enum { OPT_USERS = 1000, OPT_ROLES, OPT_NO_PASSWORD, OPT_REVOKE, OPT_ITERATIONS };
	static const struct option opts[] = {
	    {"users", required_argument, NULL, OPT_USERS},
	    {"roles", required_argument, NULL, OPT_ROLES},
	    {"no-password", no_argument, NULL, OPT_NO_PASSWORD},
	    {"revoke", no_argument, NULL, OPT_REVOKE},
	    {"iterations", required_argument, NULL, OPT_ITERATIONS},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int opt;
	optind = 0; /* glibc: 0 starts getopt afresh, forgetting the caller's "+" ordering */
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		char *end;
		switch (opt) {
		case OPT_USERS:
			a->users = optarg;
			break;
		case OPT_ROLES:
			a->roles = optarg;
			break;
		case OPT_NO_PASSWORD:
			a->no_password = true;
			break;
		case OPT_REVOKE:
			a->revoke = true;
			break;
		case OPT_ITERATIONS:
			a->iterations = strtoul(optarg, &end, 10);
			if (*end != '\0' || a->iterations < IMAPQ_USERS_MIN_ITERATIONS ||
			    a->iterations > IMAPQ_USERS_MAX_ITERATIONS) {
				fprintf(stderr, "imapq user: --iterations takes %d to %d\n",
					IMAPQ_USERS_MIN_ITERATIONS, IMAPQ_USERS_MAX_ITERATIONS);
				return CLI_EXIT_USAGE;
			}
			break;
		case 'h':
			fputs(user_help, stdout);
			return CLI_EXIT_OK;
		default:
			fputs("Try 'imapq user --help'.\n", stderr);
			return CLI_EXIT_USAGE;
		}
	}
	if (optind < argc)
		a->sub = argv[optind++];
	if (optind < argc)
		a->name = argv[optind++];
	bool wants_name = a->sub != NULL && strcmp(a->sub, "list") != 0;
	static const char *const subs[] = {"add", "passwd", "roles", "token", "del", "list"};
	bool known = false;
	for (size_t i = 0; a->sub != NULL && i < sizeof subs / sizeof subs[0]; i++)
		known |= strcmp(a->sub, subs[i]) == 0;
	const char *problem = NULL;
	if (a->sub == NULL)
		problem = "a subcommand is needed";
	else if (!known)
		problem = "unknown subcommand";
	else if (a->users == NULL)
		problem = "--users FILE is needed";
	else if (optind < argc || (wants_name && a->name == NULL) || (!wants_name && a->name))
		problem = wants_name ? "give exactly one user name" : "list takes no name";
	else if ((strcmp(a->sub, "add") == 0 || strcmp(a->sub, "roles") == 0) && !a->roles)
		problem = "--roles GRANTS is needed";
	if (problem != NULL) {
		fprintf(stderr, "imapq user: %s. Try 'imapq user --help'.\n", problem);
		return CLI_EXIT_USAGE;
	}
	return -1;
}

/* Prints every user with its roles. */
static int list_users(const struct user_args *a, const struct users *users)
{
	(void)a;
	for (size_t i = 0; i < users_count(users); i++) {
		const char *name = users_name_at(users, i);
		char grants[4096];
		if (access_format(users_access(users, name), grants, sizeof grants) != IMAPQ_OK)
			strcpy(grants, "(too many to show)");
		printf("%s\t%s\n", name, grants);
	}
	return CLI_EXIT_OK;
}

/* Runs a subcommand on users; *changed_r says whether the file must be written, and token gets
 * a new token (printed only once the file holds its hash). */
static int run(const struct user_args *a, struct users *users, bool *changed_r, char *token)
{
	char password[PASSWORD_MAX];
	imapq_err err;
	*changed_r = false;
	if (strcmp(a->sub, "list") == 0)
		return list_users(a, users);
	if (strcmp(a->sub, "add") == 0 || strcmp(a->sub, "passwd") == 0) {
		bool add = a->sub[0] == 'a';
		if (add && users_access(users, a->name) != NULL)
			return report(a, IMAPQ_E_EXISTS);
		if (!add && users_access(users, a->name) == NULL)
			return report(a, IMAPQ_E_NONEXISTENT);
		bool with_password = !(add && a->no_password);
		if (with_password && !read_password(password, sizeof password)) {
			fprintf(stderr, "imapq user: no password on standard input\n");
			return CLI_EXIT_USAGE;
		}
		const char *pw = with_password ? password : NULL;
		err = add ? users_add(users, a->name, a->roles, pw)
			  : users_set_password(users, a->name, pw);
		OPENSSL_cleanse(password, sizeof password);
	} else if (strcmp(a->sub, "roles") == 0) {
		err = users_set_grants(users, a->name, a->roles);
	} else if (strcmp(a->sub, "token") == 0 && a->revoke) {
		err = users_revoke_tokens(users, a->name);
	} else if (strcmp(a->sub, "token") == 0) {
		err = users_issue_token(users, a->name, token);
	} else {
		err = users_remove(users, a->name);
	}
	*changed_r = err == IMAPQ_OK;
	return report(a, err);
}

int cli_user_main(int argc, char **argv)
{
	struct user_args a = {.iterations = USERS_PBKDF2_ITERATIONS};
	int status = parse_args(argc, argv, &a);
	if (status >= 0)
		return status;
	struct users *users = NULL;
	char why[256] = "";
	imapq_err err = users_load(a.users, &users, why, sizeof why);
	if (err == IMAPQ_E_NONEXISTENT && strcmp(a.sub, "add") == 0)
		err = users_create(&users);
	if (err != IMAPQ_OK) {
		fprintf(stderr, "imapq user: %s: %s\n", a.users,
			why[0] != '\0' ? why : imapq_err_message(err));
		return err == IMAPQ_E_NONEXISTENT ? CLI_EXIT_NOT_FOUND : CLI_EXIT_ERROR;
	}
	users_set_iterations(users, (uint32_t)a.iterations);
	bool changed;
	char token[USERS_TOKEN_MAX] = "";
	status = run(&a, users, &changed, token);
	if (changed) {
		err = users_save(users, a.users);
		if (err != IMAPQ_OK) {
			fprintf(stderr, "imapq user: cannot write %s: %s\n", a.users,
				imapq_err_message(err));
			status = CLI_EXIT_ERROR;
		} else if (token[0] != '\0') {
			printf("%s\n", token);
		}
	}
	OPENSSL_cleanse(token, sizeof token);
	users_destroy(&users);
	return status;
}
