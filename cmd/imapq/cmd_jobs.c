/* Job commands: enqueue, claim, ack, nack, extend. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/imapq/api.h"
#include "cmd/imapq/cli.h"
#include "cmd/imapq/output.h"
#include "cmd/imapq/rawjson.h"
#include "imap/base/buf.h"
#include "imap/base/limits.h"

/* The content type a body gets when none is given: JSON when it parses as JSON, text when it
 * looks like text, bytes otherwise. */
static const char *guess_type(const char *body, size_t len)
{
	const char *end = NULL;
	cJSON *probe = len ? cJSON_ParseWithLengthOpts(body, len, &end, 0) : NULL;
	bool json = probe != NULL;
	for (const char *p = end; json && p < body + len; p++)
		json = *p == ' ' || *p == '\t' || *p == '\r' || *p == '\n';
	cJSON_Delete(probe);
	if (json)
		return "application/json";
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)body[i];
		if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
			return "application/octet-stream";
	}
	return "text/plain";
}

/* Reads all of f into b (NUL-terminated, the NUL not counted), refusing more than max bytes. */
static int read_all(FILE *f, const char *what, size_t max, struct buf *b)
{
	for (;;) {
		char *room = buf_reserve(b, 64 * 1024);
		if (room == NULL)
			return cli_no_memory();
		size_t n = fread(room, 1, 64 * 1024, f);
		buf_commit(b, n);
		if (buf_len(b) > max) {
			fprintf(stderr, "imapq: %s holds more than %zu bytes\n", what, max);
			return CLI_EXIT_ERROR;
		}
		if (n == 0)
			break;
	}
	if (ferror(f)) {
		fprintf(stderr, "imapq: cannot read %s: %s\n", what, strerror(errno));
		return CLI_EXIT_ERROR;
	}
	return buf_failed(b) ? cli_no_memory() : CLI_EXIT_OK;
}

/* Prints the ids of an enqueue reply (one job or a batch). */
static void print_enqueued(const char *queue, const cJSON *root)
{
	const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "messages");
	const cJSON *one;
	char scratch[32];
	if (!cJSON_IsArray(list)) {
		printf("enqueued job %s on %s\n", out_field(root, "id", scratch, sizeof scratch),
		       queue);
		return;
	}
	cJSON_ArrayForEach(one, list)
	{
		printf("enqueued job %s on %s\n", out_field(one, "id", scratch, sizeof scratch),
		       queue);
	}
}

/* Sends one batch of line jobs and empties it. */
static int send_batch(struct cli *cli, const char *path, const char *queue, cJSON **batch)
{
	struct api_call *call;
	int status = out_request(cli, "POST", path, *batch, IMAPQ_CLI_REQUEST_TIMEOUT_S, &call);
	cJSON_Delete(*batch);
	*batch = NULL;
	if (status != CLI_EXIT_OK)
		return status;
	if (cli->json)
		out_raw(call);
	else
		print_enqueued(queue, out_reply_object(call));
	api_call_destroy(&call);
	return CLI_EXIT_OK;
}

/* Enqueues every non-empty line of f as one job, in batches. */
static int enqueue_lines(struct cli *cli, const char *path, const char *queue, FILE *f,
			 const char *ctype)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	cJSON *batch = NULL;
	cJSON *entries = NULL;
	int count = 0;
	int status = CLI_EXIT_OK;
	while (status == CLI_EXIT_OK && (n = getline(&line, &cap, f)) >= 0) {
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		if (n == 0)
			continue;
		if (batch == NULL) {
			batch = cJSON_CreateObject();
			entries = cJSON_AddArrayToObject(batch, "messages");
			if (entries == NULL) {
				status = cli_no_memory();
				break;
			}
		}
		const char *type = ctype ? ctype : guess_type(line, (size_t)n);
		cJSON *entry = cJSON_CreateObject();
		cJSON_AddItemToArray(entries, entry);
		cJSON *body = strcmp(type, "application/json") == 0 ? cJSON_Parse(line)
								    : cJSON_CreateString(line);
		if (body == NULL) {
			fprintf(stderr, "imapq: line %d is not valid JSON\n", count + 1);
			status = CLI_EXIT_USAGE;
			break;
		}
		cJSON_AddItemToObject(entry, "body", body);
		if (strcmp(type, "application/json") != 0)
			cJSON_AddStringToObject(entry, "content_type", type);
		if (++count % IMAPQ_HTTP_MAX_BATCH == 0)
			status = send_batch(cli, path, queue, &batch);
	}
	if (status == CLI_EXIT_OK && batch != NULL)
		status = send_batch(cli, path, queue, &batch);
	cJSON_Delete(batch);
	free(line);
	return status;
}

static const char enqueue_help[] =
    "Usage: imapq enqueue [OPTION]... QUEUE [BODY]\n"
    "Add a job to a queue. The body is BODY, or the content of --file, or standard input.\n"
    "Without --content-type a body that parses as JSON is sent as application/json, other\n"
    "text as text/plain and anything else as application/octet-stream.\n\n"
    "      --delay S            hold the job back for S seconds\n"
    "      --content-type TYPE  the body's media type\n"
    "  -f, --file FILE          read the body from FILE ('-': standard input)\n"
    "      --lines              one job per non-empty input line (sent in batches of 1000)\n";

int cli_cmd_enqueue(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"delay", required_argument, NULL, 'd'},
	    {"content-type", required_argument, NULL, 't'},
	    {"file", required_argument, NULL, 'f'},
	    {"lines", no_argument, NULL, 'L'},
	    CLI_COMMON_OPTIONS,
	    {NULL, 0, NULL, 0},
	};
	const char *ctype = NULL;
	const char *file = NULL;
	const char *delay = NULL;
	bool lines = false;
	bool help = false;
	uint64_t value;
	int opt;
	while ((opt = cli_getopt(cli, argc, argv, "hf:", opts, &help)) != -1) {
		switch (opt) {
		case 'd':
			if (!cli_parse_uint(optarg, 0, IMAPQ_MAX_QUEUE_SETTING, "--delay", &value))
				return CLI_EXIT_USAGE;
			delay = optarg;
			break;
		case 't':
			ctype = optarg;
			break;
		case 'f':
			file = optarg;
			break;
		case 'L':
			lines = true;
			break;
		default:
			return cli_usage_error(argv[0], "bad option");
		}
	}
	int status = cli_operands(argc, argv, help, enqueue_help, 1, 2,
				  "expects QUEUE and at most one BODY");
	if (status >= 0)
		return status;
	int args = argc - optind;
	if (args == 2 && file != NULL)
		return cli_usage_error(argv[0], "takes BODY or --file, not both");
	const char *queue = argv[optind];
	if (cli_resolve(cli) != IMAPQ_OK)
		return CLI_EXIT_ERROR;

	char suffix[64] = "/messages";
	if (delay != NULL)
		snprintf(suffix, sizeof suffix, "/messages?delay=%s", delay);
	char *path = api_queue_path(queue, suffix);
	if (path == NULL)
		return cli_no_memory();

	FILE *in = stdin;
	if (file != NULL && strcmp(file, "-") != 0) {
		in = fopen(file, "rb");
		if (in == NULL) {
			fprintf(stderr, "imapq: cannot open %s: %s\n", file, strerror(errno));
			free(path);
			return CLI_EXIT_ERROR;
		}
	}
	struct buf body = {0};
	if (lines && args == 2) {
		FILE *mem = fmemopen(argv[optind + 1], strlen(argv[optind + 1]), "r");
		status = mem ? enqueue_lines(cli, path, queue, mem, ctype) : cli_no_memory();
		if (mem != NULL)
			fclose(mem);
	} else if (lines) {
		status = enqueue_lines(cli, path, queue, in, ctype);
	} else {
		if (args == 2)
			buf_puts(&body, argv[optind + 1]);
		status = args == 2 ? (buf_failed(&body) ? cli_no_memory() : CLI_EXIT_OK)
				   : read_all(in, file ? file : "standard input",
					      IMAPQ_HTTP_MAX_BODY, &body);
		struct api_call *call = NULL;
		if (status == CLI_EXIT_OK) {
			const char *type =
			    ctype ? ctype : guess_type(buf_bytes(&body), buf_len(&body));
			status =
			    out_request_raw(cli, "POST", path, buf_bytes(&body), buf_len(&body),
					    type, IMAPQ_CLI_REQUEST_TIMEOUT_S, &call);
		}
		if (status == CLI_EXIT_OK) {
			if (cli->json)
				out_raw(call);
			else
				print_enqueued(queue, out_reply_object(call));
		}
		api_call_destroy(&call);
	}
	if (in != stdin)
		fclose(in);
	buf_free(&body);
	free(path);
	return status;
}

/* Prints one claimed job as a line about it and its body. */
static void print_claimed(void *ctx, const cJSON *msg, const char *reply,
			  const struct rawjson_span *span)
{
	(void)ctx;
	char a[32], b[32], c[64], d[64];
	printf("job %s attempt %s receipt %s lease until %s\n", out_field(msg, "id", a, sizeof a),
	       out_field(msg, "attempts", b, sizeof b), out_field(msg, "receipt", c, sizeof c),
	       out_field(msg, "lease_until", d, sizeof d));
	out_job_body(stdout, msg, reply, span);
}

static const char claim_help[] =
    "Usage: imapq claim [OPTION]... QUEUE\n"
    "Claim ready jobs, lowest id first, and print each with its receipt and body. Finish a job\n"
    "with 'imapq ack', give it back with 'imapq nack'. Exits 3 when nothing was claimed.\n\n"
    "  -n, --max N      claim up to N jobs (1 to 100, default 1)\n"
    "      --lease S    lease in seconds (default: the queue's)\n"
    "      --wait S     wait up to S seconds (at most 30) for a job when none is ready\n";

int cli_cmd_claim(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"max", required_argument, NULL, 'n'},
	    {"lease", required_argument, NULL, 'l'},
	    {"wait", required_argument, NULL, 'w'},
	    CLI_COMMON_OPTIONS,
	    {NULL, 0, NULL, 0},
	};
	uint64_t max = 1, lease = 0, wait = 0;
	bool help = false;
	int opt;
	while ((opt = cli_getopt(cli, argc, argv, "hn:", opts, &help)) != -1) {
		bool ok;
		if (opt == 'n')
			ok = cli_parse_uint(optarg, 1, IMAPQ_HTTP_MAX_CLAIM, "--max", &max);
		else if (opt == 'l')
			ok = cli_parse_uint(optarg, 1, IMAPQ_MAX_QUEUE_SETTING, "--lease", &lease);
		else if (opt == 'w')
			ok = cli_parse_uint(optarg, 0, IMAPQ_HTTP_MAX_WAIT, "--wait", &wait);
		else
			return cli_usage_error(argv[0], "bad option");
		if (!ok)
			return CLI_EXIT_USAGE;
	}
	int status = cli_operands(argc, argv, help, claim_help, 1, 1, "expects one QUEUE");
	if (status >= 0)
		return status;
	const char *queue = argv[optind];
	if (cli_resolve(cli) != IMAPQ_OK)
		return CLI_EXIT_ERROR;

	cJSON *body = cJSON_CreateObject();
	if (body == NULL || cJSON_AddNumberToObject(body, "max", (double)max) == NULL ||
	    (lease && cJSON_AddNumberToObject(body, "lease", (double)lease) == NULL) ||
	    (wait && cJSON_AddNumberToObject(body, "wait", (double)wait) == NULL)) {
		cJSON_Delete(body);
		return cli_no_memory();
	}
	struct api_call *call;
	status = out_queue_request(cli, "POST", queue, "/claims", body,
				   (long)wait + IMAPQ_CLI_REQUEST_TIMEOUT_S, &call);
	cJSON_Delete(body);
	if (status != CLI_EXIT_OK)
		return status;
	const cJSON *list = cJSON_GetObjectItemCaseSensitive(api_call_json(call), "messages");
	if (!cJSON_IsArray(list)) {
		fprintf(stderr, "imapq: unexpected reply: no \"messages\" list\n");
		status = CLI_EXIT_ERROR;
	} else if (cJSON_GetArraySize(list) == 0) {
		if (cli->json)
			out_raw(call);
		else
			fprintf(stderr, "imapq: nothing to claim in %s\n", queue);
		status = CLI_EXIT_NOT_FOUND;
	} else if (cli->json) {
		out_raw(call);
	} else {
		out_each_message(call, list, print_claimed, NULL);
	}
	api_call_destroy(&call);
	return status;
}

/* Shared by ack, nack and extend: QUEUE ID RECEIPT plus one optional number field. */
struct job_step {
	const char *verb; /* "ack", "nack", "extend" */
	const char *help;
	const char *field; /* "delay", "lease" or NULL */
	uint64_t field_min;
};

static int job_step(struct cli *cli, int argc, char **argv, const struct job_step *step)
{
	static const struct option opts[] = {
	    {"delay", required_argument, NULL, 'd'},
	    {"lease", required_argument, NULL, 'l'},
	    CLI_COMMON_OPTIONS,
	    {NULL, 0, NULL, 0},
	};
	uint64_t value = 0;
	bool given = false;
	bool help = false;
	int opt;
	while ((opt = cli_getopt(cli, argc, argv, "h", opts, &help)) != -1) {
		const char *name = opt == 'd' ? "delay" : opt == 'l' ? "lease" : NULL;
		if (name == NULL || step->field == NULL || strcmp(name, step->field) != 0)
			return cli_usage_error(argv[0], "bad option");
		char what[16];
		snprintf(what, sizeof what, "--%s", name);
		if (!cli_parse_uint(optarg, step->field_min, IMAPQ_MAX_QUEUE_SETTING, what, &value))
			return CLI_EXIT_USAGE;
		given = true;
	}
	int status = cli_operands(argc, argv, help, step->help, 3, 3, "expects QUEUE ID RECEIPT");
	if (status >= 0)
		return status;
	const char *queue = argv[optind];
	const char *id = argv[optind + 1];
	const char *receipt = argv[optind + 2];
	uint64_t id_value;
	if (!cli_parse_uint(id, 1, UINT32_MAX, "the job ID", &id_value))
		return CLI_EXIT_USAGE;
	if (cli_resolve(cli) != IMAPQ_OK)
		return CLI_EXIT_ERROR;

	cJSON *body = cJSON_CreateObject();
	if (body == NULL || cJSON_AddStringToObject(body, "receipt", receipt) == NULL ||
	    (given && cJSON_AddNumberToObject(body, step->field, (double)value) == NULL)) {
		cJSON_Delete(body);
		return cli_no_memory();
	}
	char suffix[64];
	snprintf(suffix, sizeof suffix, "/messages/%s/%s", id, step->verb);
	struct api_call *call;
	status =
	    out_queue_request(cli, "POST", queue, suffix, body, IMAPQ_CLI_REQUEST_TIMEOUT_S, &call);
	cJSON_Delete(body);
	if (status != CLI_EXIT_OK)
		return status;
	char a[64], b[64];
	const cJSON *root = api_call_json(call);
	if (cli->json)
		out_raw(call);
	else if (strcmp(step->verb, "ack") == 0)
		printf("acked job %s\n", id);
	else if (strcmp(step->verb, "nack") == 0 && given && value > 0)
		printf("released job %s, ready again in %llu s\n", id, (unsigned long long)value);
	else if (strcmp(step->verb, "nack") == 0)
		printf("released job %s\n", id);
	else
		printf("extended job %s: receipt %s lease until %s\n", id,
		       out_field(root, "receipt", a, sizeof a),
		       out_field(root, "lease_until", b, sizeof b));
	api_call_destroy(&call);
	return CLI_EXIT_OK;
}

int cli_cmd_ack(struct cli *cli, int argc, char **argv)
{
	static const struct job_step step = {
	    "ack",
	    "Usage: imapq ack [OPTION]... QUEUE ID RECEIPT\n"
	    "Complete a claimed job. Exits 4 when the receipt is stale (the lease was lost) and 3\n"
	    "when the job is gone.\n\n",
	    NULL, 0};
	return job_step(cli, argc, argv, &step);
}

int cli_cmd_nack(struct cli *cli, int argc, char **argv)
{
	static const struct job_step step = {
	    "nack",
	    "Usage: imapq nack [OPTION]... QUEUE ID RECEIPT\n"
	    "Give a claimed job back: ready at once or after --delay, or dead-lettered when it "
	    "has\n"
	    "used the queue's max attempts. Exits 4 when the receipt is stale, 3 when the job is\n"
	    "gone.\n\n"
	    "      --delay S    hold the job back for S seconds\n",
	    "delay", 0};
	return job_step(cli, argc, argv, &step);
}

int cli_cmd_extend(struct cli *cli, int argc, char **argv)
{
	static const struct job_step step = {
	    "extend",
	    "Usage: imapq extend [OPTION]... QUEUE ID RECEIPT\n"
	    "Renew a claimed job's lease and print its new receipt; the old one is stale from "
	    "then\n"
	    "on. Exits 4 when the receipt is stale, 3 when the job is gone.\n\n"
	    "      --lease S    seconds from now (default: the queue's lease)\n",
	    "lease", 1};
	return job_step(cli, argc, argv, &step);
}
