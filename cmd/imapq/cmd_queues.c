/* Queue commands: queues (list), stats, create (and change settings), delete, purge. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/imapq/api.h"
#include "cmd/imapq/cli.h"
#include "cmd/imapq/output.h"
#include "imap/base/limits.h"

/* Parses a command that takes only the common options and QUEUE (or nothing when want_queue is
 * false). Returns -1 to go on, or the exit status to return. */
static int parse_simple(struct cli *cli, int argc, char **argv, const char *help, bool want_queue,
			const char **queue_r)
{
	static const struct option opts[] = {CLI_COMMON_OPTIONS, {NULL, 0, NULL, 0}};
	bool show_help = false;
	int opt = cli_getopt(cli, argc, argv, "h", opts, &show_help);
	if (opt != -1)
		return cli_usage_error(argv[0], "bad option");
	int want = want_queue ? 1 : 0;
	int status = cli_operands(argc, argv, show_help, help, want, want,
				  want ? "expects one QUEUE" : "takes no arguments");
	if (status >= 0)
		return status;
	if (want_queue)
		*queue_r = argv[optind];
	if (cli_resolve(cli) != IMAPQ_OK)
		return CLI_EXIT_ERROR;
	return -1;
}

/* Runs METHOD on /v1/queues/QUEUE+suffix; the reply is left in *call_r. */
static int queue_request(struct cli *cli, const char *method, const char *queue, const char *suffix,
			 const cJSON *body, struct api_call **call_r)
{
	return out_queue_request(cli, method, queue, suffix, body, IMAPQ_CLI_REQUEST_TIMEOUT_S,
				 call_r);
}

static const char queues_help[] = "Usage: imapq queues [OPTION]...\n"
				  "List every queue with its job counts.\n\n";

int cli_cmd_queues(struct cli *cli, int argc, char **argv)
{
	int status = parse_simple(cli, argc, argv, queues_help, false, NULL);
	if (status >= 0)
		return status;
	struct api_call *call;
	status = out_request(cli, "GET", "/v1/queues", NULL, IMAPQ_CLI_REQUEST_TIMEOUT_S, &call);
	if (status != CLI_EXIT_OK)
		return status;
	if (cli->json) {
		out_raw(call);
		api_call_destroy(&call);
		return CLI_EXIT_OK;
	}
	const cJSON *root = out_reply_object(call);
	const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "queues");
	if (!cJSON_IsArray(list)) {
		api_call_destroy(&call);
		return CLI_EXIT_ERROR;
	}
	int width = 5;
	const cJSON *q;
	cJSON_ArrayForEach(q, list)
	{
		const cJSON *name = cJSON_GetObjectItemCaseSensitive(q, "name");
		if (cJSON_IsString(name) && (int)strlen(name->valuestring) > width)
			width = (int)strlen(name->valuestring);
	}
	printf("%-*s %9s %9s %9s %9s\n", width, "QUEUE", "READY", "CLAIMED", "DELAYED", "DEAD");
	cJSON_ArrayForEach(q, list)
	{
		char a[32], b[32], c[32], d[32], e[32];
		printf("%-*s %9s %9s %9s %9s\n", width, out_field(q, "name", a, sizeof a),
		       out_field(q, "ready", b, sizeof b), out_field(q, "claimed", c, sizeof c),
		       out_field(q, "delayed", d, sizeof d), out_field(q, "dead", e, sizeof e));
	}
	api_call_destroy(&call);
	return CLI_EXIT_OK;
}

/* True for the members that count seconds, which are printed with their unit. */
static bool is_seconds(const char *key)
{
	return strcmp(key, "lease") == 0 || strcmp(key, "retention") == 0 ||
	       strcmp(key, "oldest_ready_age") == 0;
}

/* Prints every member of obj as "name  value" lines. */
static void print_members(const cJSON *obj)
{
	const cJSON *item;
	cJSON_ArrayForEach(item, obj)
	{
		char scratch[32];
		bool seconds = is_seconds(item->string) && cJSON_IsNumber(item);
		printf("  %-18s %s%s\n", item->string,
		       out_field(obj, item->string, scratch, sizeof scratch), seconds ? " s" : "");
	}
}

/* Prints a queue as GET /v1/queues/{q} and PUT answer it. */
static int print_queue(struct api_call *call)
{
	const cJSON *root = out_reply_object(call);
	if (root == NULL)
		return CLI_EXIT_ERROR;
	char scratch[32];
	printf("queue %s\n", out_field(root, "name", scratch, sizeof scratch));
	const cJSON *settings = cJSON_GetObjectItemCaseSensitive(root, "settings");
	const cJSON *stats = cJSON_GetObjectItemCaseSensitive(root, "stats");
	if (cJSON_IsObject(settings)) {
		printf("settings:\n");
		print_members(settings);
	}
	if (cJSON_IsObject(stats)) {
		printf("stats:\n");
		print_members(stats);
	}
	return CLI_EXIT_OK;
}

static const char stats_help[] =
    "Usage: imapq stats [OPTION]... QUEUE\n"
    "Show a queue's settings, its job counts and its counters since the daemon started.\n\n";

int cli_cmd_stats(struct cli *cli, int argc, char **argv)
{
	const char *queue;
	int status = parse_simple(cli, argc, argv, stats_help, true, &queue);
	if (status >= 0)
		return status;
	struct api_call *call;
	status = queue_request(cli, "GET", queue, "", NULL, &call);
	if (status != CLI_EXIT_OK)
		return status;
	if (cli->json)
		out_raw(call);
	else
		status = print_queue(call);
	api_call_destroy(&call);
	return status;
}

static const char create_help[] =
    "Usage: imapq create [OPTION]... QUEUE\n"
    "Create a queue (and its dead letters), or change the given settings of an existing one.\n\n"
    "      --lease S          seconds a claim lasts unless extended (default 30)\n"
    "      --max-attempts N   claims before a failing job is dead-lettered (default 5)\n"
    "      --retention S      seconds dead letters are kept (default 604800)\n";

int cli_cmd_create(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"lease", required_argument, NULL, 'l'},
	    {"max-attempts", required_argument, NULL, 'm'},
	    {"retention", required_argument, NULL, 'r'},
	    CLI_COMMON_OPTIONS,
	    {NULL, 0, NULL, 0},
	};
	static const char *const names[] = {"lease", "max_attempts", "retention"};
	uint64_t values[3];
	bool given[3] = {false, false, false};
	bool help = false;
	int opt;
	while ((opt = cli_getopt(cli, argc, argv, "h", opts, &help)) != -1) {
		int i = opt == 'l' ? 0 : opt == 'm' ? 1 : opt == 'r' ? 2 : -1;
		if (i < 0)
			return cli_usage_error(argv[0], "bad option");
		if (!cli_parse_uint(optarg, 1, IMAPQ_MAX_QUEUE_SETTING, opts[i].name, &values[i]))
			return CLI_EXIT_USAGE;
		given[i] = true;
	}
	int status = cli_operands(argc, argv, help, create_help, 1, 1, "expects one QUEUE");
	if (status >= 0)
		return status;
	const char *queue = argv[optind];
	if (cli_resolve(cli) != IMAPQ_OK)
		return CLI_EXIT_ERROR;

	cJSON *body = cJSON_CreateObject();
	for (int i = 0; i < 3 && body != NULL; i++) {
		if (given[i] &&
		    cJSON_AddNumberToObject(body, names[i], (double)values[i]) == NULL) {
			cJSON_Delete(body);
			body = NULL;
		}
	}
	if (body == NULL)
		return cli_no_memory();
	struct api_call *call;
	status = queue_request(cli, "PUT", queue, "", body, &call);
	cJSON_Delete(body);
	if (status != CLI_EXIT_OK)
		return status;
	if (cli->json) {
		out_raw(call);
	} else {
		printf("%s queue %s\n", api_call_status(call) == 201 ? "created" : "updated",
		       queue);
		status = print_queue(call);
	}
	api_call_destroy(&call);
	return status;
}

static const char delete_help[] = "Usage: imapq delete [OPTION]... QUEUE\n"
				  "Delete a queue, its dead letters and every job in them.\n\n";

int cli_cmd_delete(struct cli *cli, int argc, char **argv)
{
	const char *queue;
	int status = parse_simple(cli, argc, argv, delete_help, true, &queue);
	if (status >= 0)
		return status;
	struct api_call *call;
	status = queue_request(cli, "DELETE", queue, "", NULL, &call);
	if (status != CLI_EXIT_OK)
		return status;
	if (!cli->json)
		printf("deleted queue %s\n", queue);
	api_call_destroy(&call);
	return CLI_EXIT_OK;
}

static const char purge_help[] =
    "Usage: imapq purge [OPTION]... QUEUE\n"
    "Remove every job of a queue that is not claimed; claimed jobs finish or expire.\n\n";

int cli_cmd_purge(struct cli *cli, int argc, char **argv)
{
	const char *queue;
	int status = parse_simple(cli, argc, argv, purge_help, true, &queue);
	if (status >= 0)
		return status;
	struct api_call *call;
	status = queue_request(cli, "POST", queue, "/purge", NULL, &call);
	if (status != CLI_EXIT_OK)
		return status;
	if (cli->json) {
		out_raw(call);
	} else {
		char scratch[32];
		const cJSON *root = out_reply_object(call);
		printf("purged %s jobs from %s\n",
		       out_field(root, "purged", scratch, sizeof scratch), queue);
	}
	api_call_destroy(&call);
	return CLI_EXIT_OK;
}
