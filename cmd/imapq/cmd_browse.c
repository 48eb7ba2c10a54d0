/* Browsing commands that claim nothing: peek, dead (list and requeue), tail (the change feed). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd/imapq/api.h"
#include "cmd/imapq/cli.h"
#include "cmd/imapq/output.h"
#include "cmd/imapq/rawjson.h"
#include "imap/base/limits.h"

/* The due time of a job: the lease end of a claimed job, the not-before time of a delayed one. */
static const char *due_of(const cJSON *msg, char *scratch, size_t cap)
{
	const char *due = out_field(msg, "lease_until", scratch, cap);
	return strcmp(due, "-") != 0 ? due : out_field(msg, "not_before", scratch, cap);
}

/* Prints one row of the job table, its body under it when asked for (ctx points to a bool). */
static void print_job_row(void *ctx, const cJSON *msg, const char *reply,
			  const struct rawjson_span *span)
{
	char a[32], b[32], c[32], d[64], e[64], f[32];
	printf("%-10s %-8s %8s  %-20s  %-20s %9s\n", out_field(msg, "id", a, sizeof a),
	       out_field(msg, "state", b, sizeof b), out_field(msg, "attempts", c, sizeof c),
	       out_field(msg, "enqueued_at", d, sizeof d), due_of(msg, e, sizeof e),
	       out_field(msg, "size", f, sizeof f));
	if (*(const bool *)ctx)
		out_job_body(stdout, msg, reply, span);
}

/* Lists jobs in one state as a table, bodies under their line when asked for. */
static int list_jobs(struct cli *cli, const char *queue, const char *state, uint64_t limit,
		     bool bodies)
{
	char suffix[96];
	snprintf(suffix, sizeof suffix, "/messages?state=%s&limit=%llu%s", state,
		 (unsigned long long)limit, bodies ? "&body=true" : "");
	struct api_call *call;
	int status =
	    out_queue_request(cli, "GET", queue, suffix, NULL, IMAPQ_CLI_REQUEST_TIMEOUT_S, &call);
	if (status != CLI_EXIT_OK)
		return status;
	if (cli->json) {
		out_raw(call);
		api_call_destroy(&call);
		return CLI_EXIT_OK;
	}
	const cJSON *list = cJSON_GetObjectItemCaseSensitive(out_reply_object(call), "messages");
	printf("%-10s %-8s %8s  %-20s  %-20s %9s\n", "ID", "STATE", "ATTEMPTS", "ENQUEUED", "DUE",
	       "SIZE");
	out_each_message(call, list, print_job_row, &bodies);
	api_call_destroy(&call);
	return CLI_EXIT_OK;
}

static const char peek_help[] =
    "Usage: imapq peek [OPTION]... QUEUE\n"
    "List jobs in one state, lowest id first, without claiming them.\n\n"
    "  -s, --state STATE  ready (default), claimed, delayed or dead\n"
    "  -n, --limit N      list at most N jobs (1 to 1000, default 100)\n"
    "  -b, --body         print each job's body under its line\n";

int cli_cmd_peek(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"state", required_argument, NULL, 's'},
	    {"limit", required_argument, NULL, 'n'},
	    {"body", no_argument, NULL, 'b'},
	    CLI_COMMON_OPTIONS,
	    {NULL, 0, NULL, 0},
	};
	const char *state = "ready";
	uint64_t limit = 100;
	bool bodies = false;
	bool help = false;
	int opt;
	while ((opt = cli_getopt(cli, argc, argv, "hs:n:b", opts, &help)) != -1) {
		if (opt == 's') {
			state = optarg;
		} else if (opt == 'n') {
			if (!cli_parse_uint(optarg, 1, IMAPQ_HTTP_MAX_PEEK, "--limit", &limit))
				return CLI_EXIT_USAGE;
		} else if (opt == 'b') {
			bodies = true;
		} else {
			return cli_usage_error(argv[0], "bad option");
		}
	}
	int status = cli_operands(argc, argv, help, peek_help, 1, 1, "expects one QUEUE");
	if (status >= 0)
		return status;
	static const char *const states[] = {"ready", "claimed", "delayed", "dead"};
	bool known = false;
	for (size_t i = 0; i < sizeof states / sizeof states[0]; i++)
		known = known || strcmp(state, states[i]) == 0;
	if (!known)
		return cli_usage_error(argv[0], "--state must be ready, claimed, delayed or dead");
	if (cli_resolve(cli) != IMAPQ_OK)
		return CLI_EXIT_ERROR;
	return list_jobs(cli, argv[optind], state, limit, bodies);
}

static const char dead_help[] =
    "Usage: imapq dead list [OPTION]... QUEUE\n"
    "       imapq dead requeue [OPTION]... QUEUE [ID]\n"
    "List a queue's dead letters, or move them (all, or the one with that dead-letter ID)\n"
    "back to the queue as new ready jobs.\n\n"
    "  -n, --limit N      list at most N dead letters (1 to 1000, default 100)\n"
    "  -b, --body         print each dead letter's body under its line\n";

int cli_cmd_dead(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"limit", required_argument, NULL, 'n'},
	    {"body", no_argument, NULL, 'b'},
	    CLI_COMMON_OPTIONS,
	    {NULL, 0, NULL, 0},
	};
	uint64_t limit = 100;
	bool bodies = false;
	bool help = false;
	int opt;
	while ((opt = cli_getopt(cli, argc, argv, "hn:b", opts, &help)) != -1) {
		if (opt == 'n') {
			if (!cli_parse_uint(optarg, 1, IMAPQ_HTTP_MAX_PEEK, "--limit", &limit))
				return CLI_EXIT_USAGE;
		} else if (opt == 'b') {
			bodies = true;
		} else {
			return cli_usage_error(argv[0], "bad option");
		}
	}
	if (help)
		return cli_print_help(dead_help);
	int args = argc - optind;
	const char *sub = args > 0 ? argv[optind] : "";
	bool list = strcmp(sub, "list") == 0;
	bool requeue = strcmp(sub, "requeue") == 0;
	if (!list && !requeue)
		return cli_usage_error(argv[0], "expects 'list' or 'requeue'");
	if (list ? args != 2 : args < 2 || args > 3)
		return cli_usage_error(argv[0], list ? "list expects one QUEUE"
						     : "requeue expects QUEUE and at most one ID");
	const char *queue = argv[optind + 1];
	uint64_t id = 0;
	if (args == 3 && !cli_parse_uint(argv[optind + 2], 1, UINT32_MAX, "the ID", &id))
		return CLI_EXIT_USAGE;
	if (cli_resolve(cli) != IMAPQ_OK)
		return CLI_EXIT_ERROR;
	if (list)
		return list_jobs(cli, queue, "dead", limit, bodies);

	char suffix[64] = "/dead/requeue";
	if (args == 3)
		snprintf(suffix, sizeof suffix, "/dead/%llu/requeue", (unsigned long long)id);
	struct api_call *call;
	int status =
	    out_queue_request(cli, "POST", queue, suffix, NULL, IMAPQ_CLI_REQUEST_TIMEOUT_S, &call);
	if (status != CLI_EXIT_OK)
		return status;
	if (cli->json) {
		out_raw(call);
	} else {
		char scratch[32];
		printf("requeued %s jobs on %s\n",
		       out_field(out_reply_object(call), "requeued", scratch, sizeof scratch),
		       queue);
	}
	api_call_destroy(&call);
	return CLI_EXIT_OK;
}

static volatile sig_atomic_t tail_stop;

static void on_stop_signal(int sig)
{
	tail_stop = sig;
}

/* Prints one page of the change feed and advances since to where the next page starts (its
 * next, or highestmodseq from a server that does not page); *more_r: another page is waiting. */
static int print_changes(struct cli *cli, struct api_call *call, char *since, size_t cap,
			 bool *more_r)
{
	const cJSON *root = out_reply_object(call);
	const cJSON *highest = cJSON_GetObjectItemCaseSensitive(root, "highestmodseq");
	const cJSON *next = cJSON_GetObjectItemCaseSensitive(root, "next");
	const cJSON *changed = cJSON_GetObjectItemCaseSensitive(root, "changed");
	const cJSON *removed = cJSON_GetObjectItemCaseSensitive(root, "removed");
	if (!cJSON_IsString(highest) || !cJSON_IsArray(changed)) {
		fprintf(stderr, "imapq: unexpected reply from the change feed\n");
		return CLI_EXIT_ERROR;
	}
	const cJSON *msg;
	cJSON_ArrayForEach(msg, changed)
	{
		if (cli->json) {
			char *line = cJSON_PrintUnformatted(msg);
			if (line == NULL)
				return cli_no_memory();
			puts(line);
			cJSON_free(line);
			continue;
		}
		char a[32], b[32], c[32], d[32], e[64];
		const char *due = due_of(msg, e, sizeof e);
		const char *state = out_field(msg, "state", c, sizeof c);
		printf("%s job %s %s attempts %s", out_field(msg, "modseq", a, sizeof a),
		       out_field(msg, "id", b, sizeof b), state,
		       out_field(msg, "attempts", d, sizeof d));
		if (strcmp(due, "-") != 0)
			printf(" %s %s",
			       strcmp(state, "claimed") == 0 ? "lease until" : "not before", due);
		putchar('\n');
	}
	if (cJSON_IsString(removed) && removed->valuestring[0] != '\0') {
		if (cli->json)
			printf("{\"highestmodseq\":\"%s\",\"removed\":\"%s\"}\n",
			       highest->valuestring, removed->valuestring);
		else
			printf("%s removed %s\n", highest->valuestring, removed->valuestring);
	}
	fflush(stdout);
	snprintf(since, cap, "%s", cJSON_IsString(next) ? next->valuestring : highest->valuestring);
	*more_r =
	    cJSON_IsString(next) && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "more"));
	return CLI_EXIT_OK;
}

/* The queue's current highest mod-sequence, where following starts by default. */
static int current_modseq(struct cli *cli, const char *queue, char *since, size_t cap)
{
	struct api_call *call;
	int status =
	    out_queue_request(cli, "GET", queue, "", NULL, IMAPQ_CLI_REQUEST_TIMEOUT_S, &call);
	if (status != CLI_EXIT_OK)
		return status;
	const cJSON *stats = cJSON_GetObjectItemCaseSensitive(api_call_json(call), "stats");
	const cJSON *highest = cJSON_GetObjectItemCaseSensitive(stats, "highestmodseq");
	if (cJSON_IsString(highest)) {
		snprintf(since, cap, "%s", highest->valuestring);
	} else {
		fprintf(stderr, "imapq: unexpected reply: no highestmodseq\n");
		status = CLI_EXIT_ERROR;
	}
	api_call_destroy(&call);
	return status;
}

static const char tail_help[] =
    "Usage: imapq tail [OPTION]... QUEUE\n"
    "Follow a queue's change feed until interrupted (Ctrl-C), one line per changed job:\n"
    "\"MODSEQ job ID STATE attempts N [lease until|not before TIME]\", and\n"
    "\"MODSEQ removed IDS\" for jobs that left the queue (acked, purged, dead-lettered).\n"
    "With --json each change is one JSON object per line.\n\n"
    "      --since MODSEQ  start after this mod-sequence (0: every job now in the queue;\n"
    "                      default: only changes from now on)\n"
    "      --interval S    seconds between polls (1 to 3600, default 1)\n";

int cli_cmd_tail(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"since", required_argument, NULL, 's'},
	    {"interval", required_argument, NULL, 'i'},
	    CLI_COMMON_OPTIONS,
	    {NULL, 0, NULL, 0},
	};
	char since[32] = "";
	uint64_t interval = 1, value;
	bool help = false;
	int opt;
	while ((opt = cli_getopt(cli, argc, argv, "h", opts, &help)) != -1) {
		if (opt == 's') {
			if (!cli_parse_uint(optarg, 0, INT64_MAX, "--since", &value))
				return CLI_EXIT_USAGE;
			snprintf(since, sizeof since, "%llu", (unsigned long long)value);
		} else if (opt == 'i') {
			if (!cli_parse_uint(optarg, 1, 3600, "--interval", &interval))
				return CLI_EXIT_USAGE;
		} else {
			return cli_usage_error(argv[0], "bad option");
		}
	}
	int status = cli_operands(argc, argv, help, tail_help, 1, 1, "expects one QUEUE");
	if (status >= 0)
		return status;
	const char *queue = argv[optind];
	if (cli_resolve(cli) != IMAPQ_OK)
		return CLI_EXIT_ERROR;

	/* No SA_RESTART: the signal cuts the sleep between polls short. */
	struct sigaction sa = {0};
	sa.sa_handler = on_stop_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	status = since[0] ? CLI_EXIT_OK : current_modseq(cli, queue, since, sizeof since);
	while (status == CLI_EXIT_OK && !tail_stop) {
		char suffix[64];
		snprintf(suffix, sizeof suffix, "/changes?since=%s&limit=1000", since);
		struct api_call *call;
		status = out_queue_request(cli, "GET", queue, suffix, NULL,
					   IMAPQ_CLI_REQUEST_TIMEOUT_S, &call);
		if (status != CLI_EXIT_OK)
			break;
		bool more = false;
		status = print_changes(cli, call, since, sizeof since, &more);
		api_call_destroy(&call);
		struct timespec ts = {(time_t)interval, 0};
		while (status == CLI_EXIT_OK && !more && !tail_stop && nanosleep(&ts, &ts) != 0 &&
		       errno == EINTR)
			;
	}
	return tail_stop && status == CLI_EXIT_OK ? CLI_EXIT_OK : status;
}
