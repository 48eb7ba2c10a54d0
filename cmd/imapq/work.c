/* imapq work: options, the event loop, claims and signals (see work.h). */
#include "cmd/imapq/work.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cmd/imapq/output.h"
#include "imap/base/limits.h"
#include "imap/base/log.h"

#define LOG_MODULE "work"

uint64_t work_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

bool work_send(struct work *w, struct api_call *call)
{
	CURLMcode mc = curl_multi_add_handle(w->multi, api_call_handle(call));
	if (mc != CURLM_OK) {
		log_error(LOG_MODULE, "cannot start a request: %s", curl_multi_strerror(mc));
		return false;
	}
	return true;
}

/* Jobs whose command still runs: they hold a slot. */
static unsigned busy_slots(const struct work *w)
{
	unsigned n = 0;
	for (size_t i = 0; i < w->njobs; i++)
		n += !w->jobs[i]->exited;
	return n;
}

static bool claiming(const struct work *w)
{
	return w->signals == 0 && !w->stopping;
}

/* Long-polls for as many jobs as there are free slots. */
static void start_claim(struct work *w, uint64_t now)
{
	unsigned free_slots = w->opt.concurrency - busy_slots(w);
	if (!claiming(w) || w->claim != NULL || free_slots == 0 || now < w->claim_at_ms)
		return;
	char *path = api_queue_path(w->opt.queue, "/claims");
	cJSON *body = cJSON_CreateObject();
	bool ok = path != NULL && body != NULL &&
		  cJSON_AddNumberToObject(body, "max", free_slots) != NULL &&
		  cJSON_AddNumberToObject(body, "lease", (double)w->opt.lease) != NULL &&
		  cJSON_AddNumberToObject(body, "wait", IMAPQ_CLI_WORK_WAIT_S) != NULL &&
		  api_call_create_json(w->cli, "POST", path, body,
				       IMAPQ_CLI_WORK_WAIT_S + IMAPQ_CLI_REQUEST_TIMEOUT_S,
				       &w->claim) == IMAPQ_OK;
	free(path);
	cJSON_Delete(body);
	if (ok && work_send(w, w->claim))
		return;
	api_call_destroy(&w->claim);
	w->claim_at_ms = now + IMAPQ_CLI_RETRY_MS;
}

/* Stops the worker after a failure that more claims cannot mend. */
static void stop(struct work *w, int status)
{
	w->stopping = true;
	w->exit_status = status;
}

static void start_job(void *ctx, const cJSON *msg, const char *reply,
		      const struct rawjson_span *span)
{
	work_job_start(ctx, msg, reply, span);
}

/* Handles the claim's reply: a job per message, or a pause after a failure. */
static void claim_done(struct work *w, bool ok)
{
	struct api_call *call = w->claim;
	w->claim = NULL;
	char why[512];
	if (!ok || !api_call_ok(call)) {
		api_call_error(call, why, sizeof why);
		long status = api_call_status(call);
		if (ok && (status == 400 || status == 401 || status == 403 || status == 404)) {
			/* The queue is gone or the token is refused: retrying cannot help. */
			log_error(LOG_MODULE, "claim refused: %s", why);
			stop(w, api_call_exit_status(call));
		} else {
			uint64_t pause = IMAPQ_CLI_RETRY_MS
					 << (w->claim_failures < 5 ? w->claim_failures : 5);
			w->claim_failures++;
			log_warn(LOG_MODULE, "claim failed: %s; trying again in %.0f s", why,
				 (double)pause / 1000.0);
			w->claim_at_ms = work_now_ms() + pause;
		}
		api_call_destroy(&call);
		return;
	}
	w->claim_failures = 0;
	const cJSON *list = cJSON_GetObjectItemCaseSensitive(api_call_json(call), "messages");
	out_each_message(call, list, start_job, w);
	api_call_destroy(&call);
}

/* Hands each finished transfer to its owner. */
static void collect_transfers(struct work *w)
{
	CURLMsg *m;
	int left;
	while ((m = curl_multi_info_read(w->multi, &left)) != NULL) {
		if (m->msg != CURLMSG_DONE)
			continue;
		CURL *easy = m->easy_handle;
		CURLcode code = m->data.result;
		struct api_call *call = NULL;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&call);
		curl_multi_remove_handle(w->multi, easy);
		bool ok = api_call_done(call, code) == IMAPQ_OK;
		if (call == w->claim) {
			claim_done(w, ok);
			continue;
		}
		struct work_job *job = api_call_data(call);
		work_job_reply(w, job, ok);
	}
}

/* Reaps every command that ended. */
static void reap(struct work *w)
{
	int st;
	pid_t pid;
	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		for (size_t i = 0; i < w->njobs; i++) {
			struct work_job *job = w->jobs[i];
			if (job->pid == pid && !job->exited) {
				work_job_exited(w, job, st);
				break;
			}
		}
	}
}

/* The first SIGTERM/SIGINT drains; the second kills the commands and releases their jobs. */
static void on_signal(struct work *w, int sig)
{
	w->signals++;
	if (w->signals == 1) {
		if (w->claim != NULL) {
			/* The daemon releases at once the jobs of a claim it cannot deliver. */
			curl_multi_remove_handle(w->multi, api_call_handle(w->claim));
			api_call_destroy(&w->claim);
		}
		unsigned busy = busy_slots(w);
		if (busy == 0)
			log_info(LOG_MODULE, "%s: stopping", strsignal(sig));
		else
			log_info(LOG_MODULE,
				 "%s: draining, %u running job(s) to finish; signal again to kill "
				 "them",
				 strsignal(sig), busy);
		return;
	}
	if (w->signals == 2) {
		log_info(LOG_MODULE, "%s: killing %u running job(s) and releasing them",
			 strsignal(sig), busy_slots(w));
		for (size_t i = 0; i < w->njobs; i++) {
			if (!w->jobs[i]->exited) {
				w->jobs[i]->killed = true;
				work_job_kill(w->jobs[i], SIGKILL);
			}
		}
		w->exit_status = CLI_EXIT_ERROR;
	}
}

static void read_signals(struct work *w, int sigfd)
{
	struct signalfd_siginfo si;
	while (read(sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
		if (si.ssi_signo == SIGCHLD)
			reap(w);
		else
			on_signal(w, (int)si.ssi_signo);
	}
}

/* Sends what is due, frees finished jobs, and returns the next deadline. */
static uint64_t tick_jobs(struct work *w, uint64_t now)
{
	uint64_t next = UINT64_MAX;
	size_t kept = 0;
	for (size_t i = 0; i < w->njobs; i++) {
		struct work_job *job = w->jobs[i];
		work_job_tick(w, job, now);
		if (job->finished && job->call == NULL) {
			work_job_free(&job);
			continue;
		}
		uint64_t due = work_job_deadline(job);
		next = due < next ? due : next;
		w->jobs[kept++] = job;
	}
	w->njobs = kept;
	return next;
}

/* Runs until a drain (or a fatal error) has finished every job. */
static void run(struct work *w, int sigfd)
{
	for (;;) {
		uint64_t now = work_now_ms();
		start_claim(w, now);
		uint64_t next = tick_jobs(w, now);
		if (!claiming(w) && w->njobs == 0 && w->claim == NULL)
			return;
		if (claiming(w) && w->claim == NULL && w->claim_at_ms < next)
			next = w->claim_at_ms;
		now = work_now_ms();
		int timeout = next <= now ? 0 : next - now > 1000 ? 1000 : (int)(next - now);
		struct curl_waitfd extra = {.fd = sigfd, .events = CURL_WAIT_POLLIN};
		CURLMcode mc = curl_multi_poll(w->multi, &extra, 1, timeout, NULL);
		if (mc != CURLM_OK) {
			log_error(LOG_MODULE, "curl_multi_poll: %s", curl_multi_strerror(mc));
			return;
		}
		int running;
		curl_multi_perform(w->multi, &running);
		collect_transfers(w);
		read_signals(w, sigfd);
	}
}

/* Reads the queue's lease and max attempts: the defaults of the worker, and a check that the
 * queue exists before anything is claimed. */
static int load_settings(struct work *w, bool lease_given)
{
	struct cli quiet = *w->cli;
	quiet.json = false;
	struct api_call *call;
	int status = out_queue_request(&quiet, "GET", w->opt.queue, "", NULL,
				       IMAPQ_CLI_REQUEST_TIMEOUT_S, &call);
	if (status != CLI_EXIT_OK)
		return status;
	const cJSON *settings = cJSON_GetObjectItemCaseSensitive(api_call_json(call), "settings");
	const cJSON *lease = cJSON_GetObjectItemCaseSensitive(settings, "lease");
	const cJSON *max = cJSON_GetObjectItemCaseSensitive(settings, "max_attempts");
	if (!lease_given && cJSON_IsNumber(lease) && lease->valuedouble >= 1)
		w->opt.lease = (uint64_t)lease->valuedouble;
	if (cJSON_IsNumber(max))
		w->max_attempts = (unsigned)max->valuedouble;
	api_call_destroy(&call);
	return CLI_EXIT_OK;
}

static const char work_help[] =
    "Usage: imapq work --queue QUEUE [OPTION]... [--] CMD [ARG]...\n"
    "Claim jobs and run CMD for each (no shell), with the job's body on standard input and\n"
    "its metadata in the environment: IMAPQ_QUEUE, IMAPQ_JOB_ID, IMAPQ_RECEIPT (as claimed),\n"
    "IMAPQ_ATTEMPTS, IMAPQ_MAX_ATTEMPTS, IMAPQ_CONTENT_TYPE, IMAPQ_ENQUEUED_AT and\n"
    "IMAPQ_LEASE_UNTIL. Exit status 0 acks the job; any other status, or death by a signal,\n"
    "releases it with a delay of BACKOFF * 2^(attempts-1) seconds (at most --max-backoff), and\n"
    "the queue dead-letters it after its max attempts. The lease is extended while CMD runs,\n"
    "a third of the lease before it ends; a job whose lease is lost anyway has its CMD sent\n"
    "SIGTERM and is not reported. Progress goes to standard error.\n\n"
    "SIGTERM or SIGINT (Ctrl-C) drains: no more claims, running jobs finish and are acked or\n"
    "released, then the worker exits 0. A second signal kills the running commands, releases\n"
    "their jobs at once and exits 1.\n\n"
    "  -q, --queue QUEUE       the queue to work on (required)\n"
    "  -c, --concurrency N     run up to N jobs at once (1 to 100, default 1)\n"
    "      --lease S           lease of each claim and extension (default: the queue's)\n"
    "      --backoff S         release delay after a first failure (default 1)\n"
    "      --max-backoff S     longest release delay (default 300)\n";

int cli_cmd_work(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"queue", required_argument, NULL, 'q'},
	    {"concurrency", required_argument, NULL, 'c'},
	    {"lease", required_argument, NULL, 'l'},
	    {"backoff", required_argument, NULL, 'b'},
	    {"max-backoff", required_argument, NULL, 'm'},
	    CLI_COMMON_OPTIONS,
	    {NULL, 0, NULL, 0},
	};
	struct work w = {.cli = cli};
	w.opt.concurrency = 1;
	w.opt.backoff = 1;
	w.opt.max_backoff = 300;
	uint64_t value;
	bool lease_given = false;
	bool help = false;
	int opt;
	while ((opt = cli_getopt(cli, argc, argv, "+hq:c:", opts, &help)) != -1) {
		bool ok = true;
		switch (opt) {
		case 'q':
			w.opt.queue = optarg;
			break;
		case 'c':
			ok = cli_parse_uint(optarg, 1, IMAPQ_HTTP_MAX_CLAIM, "--concurrency",
					    &value);
			w.opt.concurrency = (unsigned)value;
			break;
		case 'l':
			ok = cli_parse_uint(optarg, 1, IMAPQ_MAX_QUEUE_SETTING, "--lease",
					    &w.opt.lease);
			lease_given = true;
			break;
		case 'b':
			ok = cli_parse_uint(optarg, 0, IMAPQ_MAX_QUEUE_SETTING, "--backoff",
					    &w.opt.backoff);
			break;
		case 'm':
			ok = cli_parse_uint(optarg, 0, IMAPQ_MAX_QUEUE_SETTING, "--max-backoff",
					    &w.opt.max_backoff);
			break;
		default:
			return cli_usage_error(argv[0], "bad option");
		}
		if (!ok)
			return CLI_EXIT_USAGE;
	}
	if (help)
		return cli_print_help(work_help);
	if (w.opt.queue == NULL)
		return cli_usage_error(argv[0], "--queue is required");
	if (optind >= argc)
		return cli_usage_error(argv[0], "expects a command to run (after --)");
	w.opt.cmd = argv + optind;
	if (cli_resolve(cli) != IMAPQ_OK)
		return CLI_EXIT_ERROR;
	w.opt.lease = lease_given ? w.opt.lease : 30;
	int status = load_settings(&w, lease_given);
	if (status != CLI_EXIT_OK)
		return status;

	/* Signals arrive through a signalfd polled with the transfers; block them first so that
	 * libcurl's resolver threads inherit the mask. */
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	int sigfd = -1;
	if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0 ||
	    (sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) {
		fprintf(stderr, "imapq: signalfd: %s\n", strerror(errno));
		return CLI_EXIT_ERROR;
	}
	w.multi = curl_multi_init();
	if (w.multi == NULL) {
		close(sigfd);
		fprintf(stderr, "imapq: cannot initialise libcurl\n");
		return CLI_EXIT_ERROR;
	}
	log_info(LOG_MODULE, "working on %s with up to %u job(s) at once, lease %llu s",
		 w.opt.queue, w.opt.concurrency, (unsigned long long)w.opt.lease);
	run(&w, sigfd);
	log_info(LOG_MODULE, "stopped");

	if (w.claim != NULL)
		curl_multi_remove_handle(w.multi, api_call_handle(w.claim));
	api_call_destroy(&w.claim);
	for (size_t i = 0; i < w.njobs; i++) {
		if (w.jobs[i]->call != NULL)
			curl_multi_remove_handle(w.multi, api_call_handle(w.jobs[i]->call));
		work_job_free(&w.jobs[i]);
	}
	free(w.jobs);
	curl_multi_cleanup(w.multi);
	close(sigfd);
	return w.exit_status;
}
