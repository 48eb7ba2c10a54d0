/* imapq: the operator and worker command line of imapqd, over its HTTP/JSON API. This file picks
 * the command; each command family lives in cmd/imapq/. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>

#include "cmd/imapq/cli.h"
#include "cmd/imapq/user.h"

struct command {
	const char *name;
	int (*run)(struct cli *cli, int argc, char **argv);
};

static const struct command commands[] = {
    {"queues", cli_cmd_queues}, {"stats", cli_cmd_stats}, {"create", cli_cmd_create},
    {"delete", cli_cmd_delete}, {"purge", cli_cmd_purge}, {"enqueue", cli_cmd_enqueue},
    {"claim", cli_cmd_claim},	{"ack", cli_cmd_ack},	  {"nack", cli_cmd_nack},
    {"extend", cli_cmd_extend}, {"peek", cli_cmd_peek},	  {"dead", cli_cmd_dead},
    {"tail", cli_cmd_tail},	{"work", cli_cmd_work},
};

static void usage(FILE *out)
{
	fputs("Usage: imapq [OPTION]... COMMAND [ARG]...\n"
	      "Operate imapqd's queues over its HTTP API, and run jobs with 'imapq work'.\n\n"
	      "Commands:\n"
	      "  queues                       list every queue with its job counts\n"
	      "  stats QUEUE                  show a queue's settings and counts\n"
	      "  create QUEUE                 create a queue, or change its settings\n"
	      "  delete QUEUE                 delete a queue and all its jobs\n"
	      "  purge QUEUE                  remove every job that is not claimed\n"
	      "  enqueue QUEUE [BODY]         add a job (body from BODY, --file or stdin)\n"
	      "  claim QUEUE                  claim jobs and print them with their receipts\n"
	      "  ack QUEUE ID RECEIPT         complete a claimed job\n"
	      "  nack QUEUE ID RECEIPT        give a claimed job back (--delay S)\n"
	      "  extend QUEUE ID RECEIPT      renew a lease; prints the new receipt\n"
	      "  peek QUEUE                   list jobs in a state without claiming them\n"
	      "  dead list|requeue QUEUE      list dead letters, or requeue them\n"
	      "  tail QUEUE                   follow a queue's changes until Ctrl-C\n"
	      "  work --queue Q -- CMD [ARG]  run CMD for each job (body on stdin)\n"
	      "  user add|passwd|roles|token|del|list --users FILE ...\n"
	      "                               edit the users file of imapqd (no daemon needed)\n\n"
	      "Options, before or after the command:\n",
	      out);
	fputs(cli_common_help, out);
	fputs("      --version       show the version and exit\n\n"
	      "Exit status:\n"
	      "  0  success\n"
	      "  1  error: the daemon cannot be reached, a server error or an unexpected reply\n"
	      "  2  bad usage\n"
	      "  3  not found: no such queue or job, or nothing to claim\n"
	      "  4  conflict: a stale receipt (the lease was lost), or a name clash\n"
	      "  5  not authorised: no token, an unknown token, or one without the role\n"
	      "Errors from the daemon are printed as \"HTTP STATUS CODE: MESSAGE\".\n\n"
	      "'imapq COMMAND --help' describes each command.\n",
	      out);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    CLI_COMMON_OPTIONS,
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	struct cli cli = {0};
	bool help = false;
	int opt;
	/* '+' stops at the command name, whose own options follow it. */
	while ((opt = cli_getopt(&cli, argc, argv, "+h", opts, &help)) != -1) {
		if (opt == 'V') {
			puts("imapq 0.1.0");
			return CLI_EXIT_OK;
		}
		fputs("Try 'imapq --help'.\n", stderr);
		return CLI_EXIT_USAGE;
	}
	if (help || optind == argc || strcmp(argv[optind], "help") == 0) {
		usage(help || optind < argc ? stdout : stderr);
		return help || optind < argc ? CLI_EXIT_OK : CLI_EXIT_USAGE;
	}
	/* Users are edited in a local file: no daemon, no HTTP. */
	if (strcmp(argv[optind], "user") == 0) {
		int sub_argc = argc - optind;
		char **sub_argv = argv + optind;
		optind = 0;
		return cli_user_main(sub_argc, sub_argv);
	}
	const struct command *cmd = NULL;
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
		if (strcmp(argv[optind], commands[i].name) == 0)
			cmd = &commands[i];
	}
	if (cmd == NULL) {
		fprintf(stderr, "imapq: unknown command '%s'\nTry 'imapq --help'.\n", argv[optind]);
		return CLI_EXIT_USAGE;
	}
	/* A reader that goes away (imapq ... | head) must not kill the tool mid-request. */
	signal(SIGPIPE, SIG_IGN);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "imapq: cannot initialise libcurl\n");
		return CLI_EXIT_ERROR;
	}
	int sub_argc = argc - optind;
	char **sub_argv = argv + optind;
	optind = 0; /* glibc: 0 starts getopt afresh for the command's own options */
	int status = cmd->run(&cli, sub_argc, sub_argv);
	curl_global_cleanup();
	return status;
}
