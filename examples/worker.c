/* A queue worker for imapq on the C client library (imap/client).
 *
 *     worker --host 127.0.0.1 --port 1143 --user demo --password PW --queue jobs
 *            [--tls | --starttls] [--ca-file FILE] [--insecure] [--once] [--max-jobs N]
 *
 * Each round it claims the lowest ready job with a conditional store, reads it, processes it and
 * acks it; a job that fails (a body with the word "fail" stands for one) is released for another
 * attempt, and after its last attempt the server moves it to "<queue>/dead". When the queue is
 * empty it waits with IDLE (or, with --once, exits). SIGTERM or Ctrl-C ends it after the job in
 * hand. The steps are those of README.md "Workers over IMAP"; examples/worker.py is the same
 * worker on Python's imaplib. */
#include "imap/client/jobs.h"

#include <ctype.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Milliseconds one IDLE lasts before the worker searches again. */
#define WORKER_IDLE_MS (300 * 1000)

static volatile sig_atomic_t worker_stopping;

static void worker_on_signal(int sig)
{
	(void)sig;
	worker_stopping = 1;
}

static bool worker_word_char(char ch)
{
	return isalnum((unsigned char)ch) || ch == '_';
}

/* True when the body holds the word "fail": the stand-in for a job that cannot be done. */
static bool worker_fails(const char *body)
{
	for (const char *p = strstr(body, "fail"); p != NULL; p = strstr(p + 1, "fail"))
		if ((p == body || !worker_word_char(p[-1])) && !worker_word_char(p[4]))
			return true;
	return false;
}

/* Prints the job's body without surrounding white space. */
static void worker_print(uint32_t uid, const char *body, size_t len)
{
	while (len > 0 && isspace((unsigned char)body[0])) {
		body++;
		len--;
	}
	while (len > 0 && isspace((unsigned char)body[len - 1]))
		len--;
	printf("job %u: %.*s\n", uid, (int)len, body);
}

/* Processes one claimed job and acks or releases it. Returns false on a client error. */
static bool worker_handle(struct client *c, struct client_job *job)
{
	const char *body = job->body ? job->body : "";
	unsigned attempts = 0;
	imapq_err err;

	worker_print(job->uid, body, job->body_len);
	if (!worker_fails(body)) {
		err = client_job_ack(c, job->uid, job->receipt);
		if (err == IMAPQ_E_MODIFIED || err == IMAPQ_E_NOTFOUND)
			printf("job %u: lost before the ack (lease expired)\n", job->uid);
		else if (err == IMAPQ_OK)
			printf("job %u: acked\n", job->uid);
		else
			goto fail;
		return true;
	}
	/* The attempt count (imapqd only) tells whether this was the last one. */
	err = client_job_attempts(c, job->uid, &attempts);
	if (err != IMAPQ_OK && err != IMAPQ_E_UNSUPPORTED && err != IMAPQ_E_NOTFOUND)
		goto fail;
	err = client_job_release(c, job->uid, job->receipt, NULL);
	if (err == IMAPQ_E_MODIFIED || err == IMAPQ_E_NOTFOUND)
		printf("job %u: lost before the release (lease expired)\n", job->uid);
	else if (err == IMAPQ_OK)
		printf("job %u: failed, released after attempt %u\n", job->uid, attempts);
	else
		goto fail;
	return true;
fail:
	fprintf(stderr, "worker: job %u: %s: %s\n", job->uid, imapq_err_message(err),
		client_error(c));
	return false;
}

/* Claims and handles jobs until told to stop. Returns the number handled, -1 on an error. */
static long worker_run(struct client *c, bool once, long max_jobs)
{
	long done = 0;

	while (!worker_stopping && (max_jobs < 0 || done < max_jobs)) {
		struct client_job job;
		imapq_err err = client_job_claim(c, "TEXT", &job);
		bool woke;

		if (err == IMAPQ_OK) {
			bool ok = worker_handle(c, &job);

			client_job_clear(&job);
			fflush(stdout);
			if (!ok)
				return -1;
			done++;
			continue;
		}
		if (err != IMAPQ_E_NOTFOUND) {
			fprintf(stderr, "worker: claim: %s: %s\n", imapq_err_message(err),
				client_error(c));
			return -1;
		}
		if (once)
			break;
		err = client_job_wait(c, WORKER_IDLE_MS, &woke);
		if (err != IMAPQ_OK) {
			fprintf(stderr, "worker: wait: %s: %s\n", imapq_err_message(err),
				client_error(c));
			return -1;
		}
	}
	return done;
}

static void worker_usage(FILE *out)
{
	fprintf(out, "usage: worker --user USER --password PW --queue QUEUE [--host HOST] "
		     "[--port PORT]\n"
		     "              [--tls | --starttls] [--ca-file FILE] [--insecure] [--once] "
		     "[--max-jobs N]\n");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"host", required_argument, NULL, 'h'},
	    {"port", required_argument, NULL, 'p'},
	    {"user", required_argument, NULL, 'u'},
	    {"password", required_argument, NULL, 'w'},
	    {"queue", required_argument, NULL, 'q'},
	    {"tls", no_argument, NULL, 't'},
	    {"starttls", no_argument, NULL, 's'},
	    {"ca-file", required_argument, NULL, 'c'},
	    {"insecure", no_argument, NULL, 'k'},
	    {"once", no_argument, NULL, 'o'},
	    {"max-jobs", required_argument, NULL, 'm'},
	    {"help", no_argument, NULL, 'H'},
	    {NULL, 0, NULL, 0},
	};
	struct client_options opt = {.host = "127.0.0.1", .port = 1143};
	const char *user = NULL, *password = NULL, *queue = NULL;
	bool once = false;
	long max_jobs = -1, done;
	struct client *c = NULL;
	struct sigaction sa = {.sa_handler = worker_on_signal};
	char errbuf[256], *end;
	imapq_err err;
	int ch;

	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'h':
			opt.host = optarg;
			break;
		case 'p':
			opt.port = (unsigned)strtoul(optarg, &end, 10);
			if (*end != '\0' || opt.port == 0 || opt.port > 65535) {
				fprintf(stderr, "worker: bad --port %s\n", optarg);
				return 2;
			}
			break;
		case 'u':
			user = optarg;
			break;
		case 'w':
			password = optarg;
			break;
		case 'q':
			queue = optarg;
			break;
		case 't':
			opt.tls = CLIENT_TLS_IMPLICIT;
			break;
		case 's':
			opt.tls = CLIENT_TLS_STARTTLS;
			break;
		case 'c':
			opt.ca_file = optarg;
			break;
		case 'k':
			opt.tls_insecure = true;
			break;
		case 'o':
			once = true;
			break;
		case 'm':
			max_jobs = strtol(optarg, &end, 10);
			if (*end != '\0' || max_jobs < 0) {
				fprintf(stderr, "worker: bad --max-jobs %s\n", optarg);
				return 2;
			}
			break;
		case 'H':
			worker_usage(stdout);
			return 0;
		default:
			worker_usage(stderr);
			return 2;
		}
	}
	if (user == NULL || password == NULL || queue == NULL || optind != argc) {
		worker_usage(stderr);
		return 2;
	}
	/* No SA_RESTART: a signal must interrupt the wait in IDLE. */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	err = client_connect(&opt, errbuf, sizeof(errbuf), &c);
	if (err != IMAPQ_OK) {
		fprintf(stderr, "worker: %s\n", errbuf);
		return 1;
	}
	err = client_login(c, user, password);
	if (err == IMAPQ_OK)
		err = client_select(c, queue, 0, NULL);
	if (err != IMAPQ_OK) {
		fprintf(stderr, "worker: %s: %s\n", imapq_err_message(err), client_error(c));
		client_destroy(&c);
		return 1;
	}
	done = worker_run(c, once, max_jobs);
	if (done >= 0)
		client_logout(c);
	client_destroy(&c);
	if (done < 0)
		return 1;
	printf("handled %ld job%s\n", done, done == 1 ? "" : "s");
	return 0;
}
