#include "cmd/imapq/work.h"

#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cmd/imapq/payload.h"
#include "imap/base/limits.h"
#include "imap/base/log.h"
#include "imap/base/vec.h"

extern char **environ;

#define LOG_MODULE "work"

/* Copies a string member into dst (empty when absent). */
static void take_string(const cJSON *msg, const char *key, char *dst, size_t cap)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(msg, key);
	snprintf(dst, cap, "%s", cJSON_IsString(item) ? item->valuestring : "");
}

/* Writes the payload to an anonymous memory file positioned at its start, the command's stdin:
 * the command reads it at its own pace and the loop never blocks on a pipe. -1 on failure. */
static int payload_file(const char *data, size_t len)
{
	int fd = memfd_create("imapq-job", MFD_CLOEXEC);
	if (fd < 0)
		return -1;
	for (size_t off = 0; off < len;) {
		ssize_t n = write(fd, data + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			close(fd);
			return -1;
		}
		off += (size_t)n;
	}
	if (lseek(fd, 0, SEEK_SET) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Names of the variables the command gets; any inherited ones are replaced. */
static const char *const env_names[] = {
    "IMAPQ_QUEUE",	  "IMAPQ_JOB_ID",	"IMAPQ_RECEIPT",     "IMAPQ_ATTEMPTS",
    "IMAPQ_MAX_ATTEMPTS", "IMAPQ_CONTENT_TYPE", "IMAPQ_ENQUEUED_AT", "IMAPQ_LEASE_UNTIL",
};
#define ENV_COUNT (sizeof env_names / sizeof env_names[0])

static bool env_is_ours(const char *entry)
{
	for (size_t i = 0; i < ENV_COUNT; i++) {
		size_t len = strlen(env_names[i]);
		if (strncmp(entry, env_names[i], len) == 0 && entry[len] == '=')
			return true;
	}
	return false;
}

/* The command's environment: ours plus every inherited variable. The strings of ours are
 * allocated after the array, in one block the caller frees. */
static char **make_env(const char *const values[ENV_COUNT])
{
	size_t inherited = 0, bytes = 0;
	for (char **e = environ; *e != NULL; e++)
		inherited++;
	for (size_t i = 0; i < ENV_COUNT; i++)
		bytes += strlen(env_names[i]) + strlen(values[i]) + 2;
	size_t slots = inherited + ENV_COUNT + 1;
	char **env = malloc(slots * sizeof *env + bytes);
	if (env == NULL)
		return NULL;
	char *text = (char *)(env + slots);
	size_t n = 0;
	for (size_t i = 0; i < ENV_COUNT; i++) {
		env[n++] = text;
		text += sprintf(text, "%s=%s", env_names[i], values[i]) + 1;
	}
	for (char **e = environ; *e != NULL; e++) {
		if (!env_is_ours(*e))
			env[n++] = *e;
	}
	env[n] = NULL;
	return env;
}

/* Starts the command with stdin_fd as its standard input in a process group of its own, so a
 * Ctrl-C at the terminal reaches the worker, which drains, and not the commands. */
static int spawn(struct work *w, int stdin_fd, char **env, pid_t *pid_r)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, dflt;
	sigemptyset(&none);
	sigemptyset(&dflt);
	sigaddset(&dflt, SIGPIPE);
	sigaddset(&dflt, SIGINT);
	sigaddset(&dflt, SIGTERM);
	sigaddset(&dflt, SIGCHLD);
	int rc = posix_spawn_file_actions_init(&fa);
	if (rc != 0)
		return rc;
	rc = posix_spawnattr_init(&attr);
	if (rc != 0) {
		posix_spawn_file_actions_destroy(&fa);
		return rc;
	}
	if ((rc = posix_spawn_file_actions_adddup2(&fa, stdin_fd, STDIN_FILENO)) == 0 &&
	    (rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
						      POSIX_SPAWN_SETSIGDEF)) == 0 &&
	    (rc = posix_spawnattr_setpgroup(&attr, 0)) == 0 &&
	    (rc = posix_spawnattr_setsigmask(&attr, &none)) == 0 &&
	    (rc = posix_spawnattr_setsigdefault(&attr, &dflt)) == 0)
		rc = posix_spawnp(pid_r, w->opt.cmd[0], &fa, &attr, w->opt.cmd, env);
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	return rc;
}

/* Spawns the command for job with the message's payload and metadata. 0 or an errno value. */
static int run_command(struct work *w, struct work_job *job, const cJSON *msg, const char *reply,
		       const struct rawjson_span *span)
{
	char *data;
	size_t len;
	imapq_err err = payload_extract(msg, reply, span, &data, &len, NULL);
	if (err != IMAPQ_OK)
		return err == IMAPQ_E_NOMEM ? ENOMEM : EINVAL;
	int fd = payload_file(data, len);
	free(data);
	if (fd < 0)
		return errno ? errno : EIO;

	char attempts[16], max_attempts[16], ctype[256], enqueued[64], lease_until[64];
	snprintf(attempts, sizeof attempts, "%u", job->attempts);
	snprintf(max_attempts, sizeof max_attempts, "%u", w->max_attempts);
	take_string(msg, "content_type", ctype, sizeof ctype);
	take_string(msg, "enqueued_at", enqueued, sizeof enqueued);
	take_string(msg, "lease_until", lease_until, sizeof lease_until);
	const char *values[ENV_COUNT] = {w->opt.queue, job->id, job->receipt, attempts,
					 max_attempts, ctype,	enqueued,     lease_until};
	char **env = make_env(values);
	int rc = env ? spawn(w, fd, env, &job->pid) : ENOMEM;
	free(env);
	close(fd);
	return rc;
}

void work_job_start(struct work *w, const cJSON *msg, const char *reply,
		    const struct rawjson_span *span)
{
	struct work_job *job = calloc(1, sizeof *job);
	if (job == NULL ||
	    !vec_push((void **)&w->jobs, &w->njobs, &w->cap, sizeof *w->jobs, &job)) {
		free(job);
		log_error(LOG_MODULE, "out of memory: a claimed job returns when its lease ends");
		w->stopping = true;
		w->exit_status = CLI_EXIT_ERROR;
		return;
	}
	take_string(msg, "id", job->id, sizeof job->id);
	take_string(msg, "receipt", job->receipt, sizeof job->receipt);
	const cJSON *attempts = cJSON_GetObjectItemCaseSensitive(msg, "attempts");
	job->attempts = cJSON_IsNumber(attempts) ? (unsigned)attempts->valuedouble : 0;
	job->started_ms = work_now_ms();
	/* The lease began before the reply arrived; a third of it is ample margin for that. */
	job->extend_at_ms = job->started_ms + w->opt.lease * 1000 * 2 / 3;

	int rc = run_command(w, job, msg, reply, span);
	if (rc == 0) {
		log_info(LOG_MODULE, "job %s claimed (attempt %u), running %s as pid %ld", job->id,
			 job->attempts, w->opt.cmd[0], (long)job->pid);
		return;
	}
	log_error(LOG_MODULE, "job %s: cannot run %s: %s; releasing it and stopping", job->id,
		  w->opt.cmd[0], strerror(rc));
	w->stopping = true;
	w->exit_status = CLI_EXIT_ERROR;
	job->pid = 0;
	job->exited = true;
	job->killed = true; /* released without a delay: the job did not fail */
	job->ended_ms = job->started_ms;
}

/* True when the command ended with status 0 on its own. */
static bool succeeded(const struct work_job *job)
{
	return !job->killed && WIFEXITED(job->wait_status) && WEXITSTATUS(job->wait_status) == 0;
}

/* Seconds a failed job waits before it is ready again: backoff doubled per attempt. */
static uint64_t release_delay(const struct work *w, const struct work_job *job)
{
	if (job->killed)
		return 0;
	uint64_t delay = w->opt.backoff;
	for (unsigned i = 1; i < job->attempts && delay < w->opt.max_backoff; i++)
		delay *= 2;
	return delay < w->opt.max_backoff ? delay : w->opt.max_backoff;
}

/* "exit 3" or "killed by signal 9". */
static void describe_status(int st, char *out, size_t cap)
{
	if (WIFSIGNALED(st))
		snprintf(out, cap, "killed by signal %d", WTERMSIG(st));
	else
		snprintf(out, cap, "exit %d", WEXITSTATUS(st));
}

void work_job_exited(struct work *w, struct work_job *job, int st)
{
	job->exited = true;
	job->wait_status = st;
	job->ended_ms = work_now_ms();
	job->retry_at_ms = job->ended_ms;
	char how[48];
	describe_status(st, how, sizeof how);
	double secs = (double)(job->ended_ms - job->started_ms) / 1000.0;
	if (job->lost) {
		log_info(LOG_MODULE, "job %s ended (%s after %.1f s) after losing its lease",
			 job->id, how, secs);
	} else if (succeeded(job)) {
		log_info(LOG_MODULE, "job %s done: %s after %.1f s", job->id, how, secs);
	} else if (job->killed) {
		log_info(LOG_MODULE, "job %s stopped (%s after %.1f s); releasing it", job->id, how,
			 secs);
	} else if (w->max_attempts != 0 && job->attempts >= w->max_attempts) {
		log_info(LOG_MODULE,
			 "job %s failed: %s after %.1f s; attempt %u of %u, so it goes to the dead "
			 "letters",
			 job->id, how, secs, job->attempts, w->max_attempts);
	} else {
		log_info(LOG_MODULE, "job %s failed: %s after %.1f s; retry in %llu s", job->id,
			 how, secs, (unsigned long long)release_delay(w, job));
	}
}

/* Sends VERB for job with a receipt and one optional number field. */
static void send_step(struct work *w, struct work_job *job, enum work_request req,
		      const char *field, uint64_t value)
{
	static const char *const verbs[] = {"", "extend", "ack", "nack"};
	char suffix[96];
	snprintf(suffix, sizeof suffix, "/messages/%s/%s", job->id, verbs[req]);
	char *path = api_queue_path(w->opt.queue, suffix);
	cJSON *body = cJSON_CreateObject();
	struct api_call *call = NULL;
	bool ok = path != NULL && body != NULL &&
		  cJSON_AddStringToObject(body, "receipt", job->receipt) != NULL &&
		  (field == NULL || cJSON_AddNumberToObject(body, field, (double)value) != NULL) &&
		  api_call_create_json(w->cli, "POST", path, body, IMAPQ_CLI_REQUEST_TIMEOUT_S,
				       &call) == IMAPQ_OK;
	free(path);
	cJSON_Delete(body);
	if (!ok) {
		/* Tried again on the next round, like a transport failure. */
		log_warn(LOG_MODULE, "job %s: out of memory for a request", job->id);
		job->retry_at_ms = job->extend_at_ms = work_now_ms() + IMAPQ_CLI_RETRY_MS;
		return;
	}
	api_call_set_data(call, job);
	if (!work_send(w, call)) {
		api_call_destroy(&call);
		job->retry_at_ms = job->extend_at_ms = work_now_ms() + IMAPQ_CLI_RETRY_MS;
		return;
	}
	job->call = call;
	job->req = req;
	job->sent_ms = work_now_ms();
}

void work_job_tick(struct work *w, struct work_job *job, uint64_t now)
{
	if (job->finished || job->call != NULL)
		return;
	if (!job->exited) {
		if (!job->lost && now >= job->extend_at_ms)
			send_step(w, job, WORK_REQ_EXTEND, "lease", w->opt.lease);
		return;
	}
	if (job->lost) {
		job->finished = true;
		return;
	}
	if (now < job->retry_at_ms)
		return;
	if (succeeded(job))
		send_step(w, job, WORK_REQ_ACK, NULL, 0);
	else
		send_step(w, job, WORK_REQ_NACK, "delay", release_delay(w, job));
}

uint64_t work_job_deadline(const struct work_job *job)
{
	if (job->finished || job->call != NULL)
		return UINT64_MAX;
	if (!job->exited)
		return job->lost ? UINT64_MAX : job->extend_at_ms;
	return job->lost ? 0 : job->retry_at_ms;
}

void work_job_kill(struct work_job *job, int sig)
{
	/* The negative pid names the process group, so helpers the command started go too. */
	if (job->pid > 0 && !job->exited)
		kill(-job->pid, sig);
}

/* The job's request succeeded. */
static void step_done(struct work *w, struct work_job *job, enum work_request req,
		      struct api_call *call)
{
	if (req == WORK_REQ_EXTEND) {
		const cJSON *receipt =
		    cJSON_GetObjectItemCaseSensitive(api_call_json(call), "receipt");
		if (cJSON_IsString(receipt))
			snprintf(job->receipt, sizeof job->receipt, "%s", receipt->valuestring);
		job->extend_at_ms = job->sent_ms + w->opt.lease * 1000 * 2 / 3;
		log_info(LOG_MODULE, "job %s lease extended by %llu s", job->id,
			 (unsigned long long)w->opt.lease);
		return;
	}
	log_info(LOG_MODULE, "job %s %s", job->id, req == WORK_REQ_ACK ? "acked" : "released");
	job->finished = true;
}

void work_job_reply(struct work *w, struct work_job *job, bool ok)
{
	struct api_call *call = job->call;
	enum work_request req = job->req;
	job->call = NULL;
	job->req = WORK_REQ_NONE;
	long status = api_call_status(call);
	char why[512];
	if (ok && api_call_ok(call)) {
		job->retries = 0;
		step_done(w, job, req, call);
	} else if (ok && (status == 404 || status == 409)) {
		/* Someone else holds the job now, or it is gone: stop working on it. */
		api_call_error(call, why, sizeof why);
		log_warn(LOG_MODULE, "job %s lost its lease (%s)%s", job->id, why,
			 job->exited ? "" : "; stopping its command");
		job->lost = true;
		work_job_kill(job, SIGTERM);
		if (job->exited)
			job->finished = true;
	} else if (req == WORK_REQ_EXTEND) {
		api_call_error(call, why, sizeof why);
		log_warn(LOG_MODULE, "job %s: extending the lease failed (%s); trying again",
			 job->id, why);
		job->extend_at_ms = work_now_ms() + IMAPQ_CLI_RETRY_MS;
	} else if (++job->retries > IMAPQ_CLI_REPORT_RETRIES) {
		api_call_error(call, why, sizeof why);
		log_error(LOG_MODULE,
			  "job %s: giving up on the %s (%s); it returns when its lease "
			  "ends",
			  job->id, req == WORK_REQ_ACK ? "ack" : "release", why);
		job->finished = true;
		w->exit_status = CLI_EXIT_ERROR;
	} else {
		api_call_error(call, why, sizeof why);
		log_warn(LOG_MODULE, "job %s: the %s failed (%s); trying again", job->id,
			 req == WORK_REQ_ACK ? "ack" : "release", why);
		job->retry_at_ms = work_now_ms() + IMAPQ_CLI_RETRY_MS;
	}
	api_call_destroy(&call);
}

void work_job_free(struct work_job **job)
{
	if (*job == NULL)
		return;
	api_call_destroy(&(*job)->call);
	free(*job);
	*job = NULL;
}
