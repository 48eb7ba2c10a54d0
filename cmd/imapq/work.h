/* imapq work: the worker that claims jobs over HTTP and runs a command for each. One thread
 * drives everything through a curl multi handle and a signalfd (SIGCHLD, SIGTERM, SIGINT), so a
 * long-polled claim never holds back a lease extension, an ack or a release.
 *
 * work.c holds the options, the loop, claims and signals; work_job.c runs one job: spawning the
 * command, extending its lease, reporting its outcome. */
#ifndef IMAPQ_CLI_WORK_H
#define IMAPQ_CLI_WORK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "cmd/imapq/api.h"
#include "cmd/imapq/cli.h"
#include "cmd/imapq/rawjson.h"

struct work_options {
	const char *queue;
	unsigned concurrency; /* jobs run at once */
	uint64_t lease;	      /* seconds each claim and extension asks for */
	uint64_t backoff;     /* release delay after a first failure, doubled per attempt */
	uint64_t max_backoff; /* ceiling of that delay */
	char **cmd;	      /* the command and its arguments, NULL-terminated */
};

/* The request a job has in flight, at most one at a time. */
enum work_request { WORK_REQ_NONE, WORK_REQ_EXTEND, WORK_REQ_ACK, WORK_REQ_NACK };

struct work_job {
	char id[24];
	char receipt[64]; /* the latest receipt: each extension replaces it */
	unsigned attempts;
	pid_t pid;	 /* the command's process (and process group); 0 before spawn */
	bool exited;	 /* the command has ended and been reaped */
	int wait_status; /* its waitpid() status */
	bool lost;	 /* the lease is gone: nothing more is reported for this job */
	bool killed;	 /* the worker killed the command (second signal) */
	bool finished;	 /* nothing left to do: the job is freed */
	uint64_t started_ms;
	uint64_t ended_ms;
	uint64_t extend_at_ms; /* when the next extension is due */
	uint64_t retry_at_ms;  /* when a failed ack or release is retried */
	unsigned retries;
	uint64_t sent_ms; /* when the request in flight was sent */
	enum work_request req;
	struct api_call *call;
};

struct work {
	struct cli *cli;
	struct work_options opt;
	unsigned max_attempts; /* the queue's, to say when a release dead-letters a job */
	CURLM *multi;
	struct work_job **jobs;
	size_t njobs, cap;
	struct api_call *claim; /* the claim in flight, if any */
	unsigned claim_failures;
	uint64_t claim_at_ms; /* no claim before this (after a failed one) */
	unsigned signals;     /* SIGTERM/SIGINT received */
	bool stopping;	      /* a fatal error: claim no more, finish, then exit */
	int exit_status;
};

/* Milliseconds on the monotonic clock. */
uint64_t work_now_ms(void);

/* Adds a request to the multi handle; false (logged) when curl refuses it. */
bool work_send(struct work *w, struct api_call *call);

/* Starts a job from one claimed message: writes its payload to a memory file, spawns the command
 * with it on stdin. When that fails the job is released at once and the worker stops. The job is
 * added to w->jobs either way. */
void work_job_start(struct work *w, const cJSON *msg, const char *reply,
		    const struct rawjson_span *span);

/* The command of job ended with waitpid() status st. */
void work_job_exited(struct work *w, struct work_job *job, int st);

/* Sends what is due now: an extension while the command runs, the ack or release after. */
void work_job_tick(struct work *w, struct work_job *job, uint64_t now);

/* The earliest time work_job_tick has something to do (UINT64_MAX: nothing planned). */
uint64_t work_job_deadline(const struct work_job *job);

/* The job's request came back; ok is api_call_done's verdict. Takes the call. */
void work_job_reply(struct work *w, struct work_job *job, bool ok);

/* Kills the job's command and its process group with sig (no-op once it has exited). */
void work_job_kill(struct work_job *job, int sig);

/* Frees a job and its request (which must be out of the multi handle). */
void work_job_free(struct work_job **job);

#endif
