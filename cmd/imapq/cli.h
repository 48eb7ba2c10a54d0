/* Shared pieces of the imapq command-line tool: the connection options every command takes, the
 * exit statuses, number parsing, and the commands themselves (one file per command family). */
#ifndef IMAPQ_CLI_H
#define IMAPQ_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>

#include "imap/base/error.h"

#define CLI_DEFAULT_URL	 "http://127.0.0.1:8080"
#define CLI_DEFAULT_DATA "./imapq-data"

/* Exit statuses, documented in `imapq --help` and docs/cli.md. */
enum cli_exit {
	CLI_EXIT_OK = 0,
	CLI_EXIT_ERROR = 1,	/* transport failure, server error, malformed reply */
	CLI_EXIT_USAGE = 2,	/* bad command line */
	CLI_EXIT_NOT_FOUND = 3, /* no such queue or job, or nothing to claim */
	CLI_EXIT_CONFLICT = 4,	/* stale receipt (lease lost) or a name clash */
	CLI_EXIT_AUTH = 5,	/* missing, unknown or insufficient token */
};

/* What every command knows: where the daemon is, how to authenticate, how to print. */
struct cli {
	const char *url;   /* --url, IMAPQ_URL or the default; no trailing slash needed */
	const char *token; /* --token, IMAPQ_TOKEN or read from the data folder; may be NULL */
	const char *data;  /* --data DIR, NULL when not given */
	bool json;	   /* --json: print the server's JSON instead of text */
	char token_buf[256];
	char url_buf[2048];
};

/* Long options every command accepts besides its own, and their ids. */
enum cli_common_opt {
	CLI_OPT_URL = 1000,
	CLI_OPT_TOKEN,
	CLI_OPT_DATA,
	CLI_OPT_JSON,
	CLI_OPT_HELP = 'h',
};
#define CLI_COMMON_OPTIONS                                                                         \
	{"url", required_argument, NULL, CLI_OPT_URL},                                             \
	    {"token", required_argument, NULL, CLI_OPT_TOKEN},                                     \
	    {"data", required_argument, NULL, CLI_OPT_DATA},                                       \
	    {"json", no_argument, NULL, CLI_OPT_JSON},                                             \
	{                                                                                          \
		"help", no_argument, NULL, CLI_OPT_HELP                                            \
	}

/* The help text of the common options, for each command's --help. */
extern const char cli_common_help[];

/* Applies a common option; false when opt is not one of them. */
bool cli_common_option(struct cli *cli, int opt, const char *arg);

/* Settles url and token from options, environment and the credentials file: IMAPQ_OK, or an
 * error already reported on stderr (IMAPQ_E_INVALID for a bad --data). */
imapq_err cli_resolve(struct cli *cli);

/* Parses a decimal whole number in [min, max]; false (and a message naming what) otherwise. */
bool cli_parse_uint(const char *text, uint64_t min, uint64_t max, const char *what,
		    uint64_t *value_r);

/* Prints "imapq CMD: MESSAGE" and a pointer to --help on stderr; returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints help (a command's usage) and the common options on stdout; returns CLI_EXIT_OK. */
int cli_print_help(const char *help);

/* Reports that memory ran out on stderr; returns CLI_EXIT_ERROR. */
int cli_no_memory(void);

/* Ends a command's option parsing: with help_wanted prints help (see cli_print_help), otherwise
 * checks that min to max operands follow the options and reports "expects" as a usage error when
 * not. Returns -1 when the command goes on, else the exit status it returns. */
int cli_operands(int argc, char **argv, bool help_wanted, const char *help, int min, int max,
		 const char *expects);

/* Runs getopt_long over a command's argv with its options (common ones included) and applies
 * the common ones; returns the next option of the command's own, -1 at the end, or '?' on a
 * bad option (already reported). help_r is set when --help was given. */
int cli_getopt(struct cli *cli, int argc, char **argv, const char *shortopts,
	       const struct option *longopts, bool *help_r);

/* Commands: each takes argv with argv[0] the command name and returns an exit status. */
int cli_cmd_queues(struct cli *cli, int argc, char **argv);
int cli_cmd_create(struct cli *cli, int argc, char **argv);
int cli_cmd_delete(struct cli *cli, int argc, char **argv);
int cli_cmd_purge(struct cli *cli, int argc, char **argv);
int cli_cmd_stats(struct cli *cli, int argc, char **argv);
int cli_cmd_enqueue(struct cli *cli, int argc, char **argv);
int cli_cmd_claim(struct cli *cli, int argc, char **argv);
int cli_cmd_ack(struct cli *cli, int argc, char **argv);
int cli_cmd_nack(struct cli *cli, int argc, char **argv);
int cli_cmd_extend(struct cli *cli, int argc, char **argv);
int cli_cmd_peek(struct cli *cli, int argc, char **argv);
int cli_cmd_dead(struct cli *cli, int argc, char **argv);
int cli_cmd_tail(struct cli *cli, int argc, char **argv);
int cli_cmd_work(struct cli *cli, int argc, char **argv);

#endif
