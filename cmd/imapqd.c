/* imapqd: the daemon's composition root. It parses the command line, opens and recovers the
 * store, makes sure there is an account, starts the listeners on one event loop, announces
 * readiness through the port file, and shuts down cleanly on SIGTERM or SIGINT. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd/daemon/credentials.h"
#include "cmd/daemon/options.h"
#include "cmd/daemon/portfile.h"
#include "http/http.h"
#include "imap/base/log.h"
#include "imap/base/loop.h"
#include "imap/server/server.h"
#include "imap/store/store.h"
#include "queue/queue.h"

/* How often shutdown checks whether the last session has gone. */
#define SHUTDOWN_POLL_MS 20

struct daemon {
	struct daemon_options opts;
	struct loop *loop;
	struct store *store;
	struct imap_server *imap;
	struct queue_service *queues;
	struct http_server *http;
	struct credentials creds;
	int sigfd;
	struct loop_io *sig_io;
	bool stopping;
};

/* Creates the data folder (mode 0700) when missing. */
static bool make_data_dir(const char *dir)
{
	if (mkdir(dir, 0700) == 0 || errno == EEXIST)
		return true;
	log_error("imapqd", "cannot create data folder %s: %s", dir, strerror(errno));
	return false;
}

/* Raises the open-file limit to its hard maximum: every connection is a descriptor. */
static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* Loads the demo account, creating and printing it on the first start. */
static bool setup_account(struct daemon *d)
{
	const struct daemon_options *opts = &d->opts;
	if (opts->users[0] != '\0') {
		log_error("imapqd",
			  "--users: users files are not supported by this version; "
			  "remove the option to use %s/%s",
			  opts->data, CREDENTIALS_FILE);
		return false;
	}
	bool created;
	imapq_err err = credentials_ensure(opts->data, &d->creds, &created);
	if (err != IMAPQ_OK) {
		log_error("imapqd", "cannot set up %s/%s: %s", opts->data, CREDENTIALS_FILE,
			  imapq_err_message(err));
		return false;
	}
	if (created) {
		printf("imapqd: created the demo account (kept in %s/%s):\n"
		       "  user=%s\n  password=%s\n  token=%s\n",
		       opts->data, CREDENTIALS_FILE, d->creds.user, d->creds.password,
		       d->creds.token);
		fflush(stdout);
	} else {
		log_info("imapqd", "account '%s' from %s/%s", d->creds.user, opts->data,
			 CREDENTIALS_FILE);
	}
	return true;
}

static imapq_err check_login(void *ctx, const char *user, const char *password)
{
	const struct daemon *d = ctx;
	return credentials_check(&d->creds, user, password);
}

/* Checks an HTTP bearer token: the demo account's token carries every role. */
static imapq_err check_token(void *ctx, const char *token, enum http_role role)
{
	const struct daemon *d = ctx;
	(void)role;
	return credentials_check_token(&d->creds, token);
}

/* Stops the loop once every session has said goodbye. */
static void poll_shutdown(void *arg)
{
	struct daemon *d = arg;
	if (imap_server_sessions(d->imap) == 0)
		loop_stop(d->loop);
	else
		loop_timer_add(d->loop, SHUTDOWN_POLL_MS, poll_shutdown, d, NULL);
}

static void on_signal(void *arg, unsigned events)
{
	struct daemon *d = arg;
	struct signalfd_siginfo si;
	(void)events;
	while (read(d->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
		if (si.ssi_signo == SIGHUP) {
			log_info("imapqd", "SIGHUP: nothing to reload");
			continue;
		}
		if (d->stopping)
			continue;
		d->stopping = true;
		log_info("imapqd", "%s: shutting down",
			 si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
		/* HTTP first: its parked long polls are answered before the daemon stops. */
		http_server_stop(d->http);
		imap_server_shutdown(d->imap);
		poll_shutdown(d);
	}
}

/* Starts the listeners and writes the port file; false on failure. */
static bool start_listeners(struct daemon *d)
{
	struct imap_server_options io = {
	    .loop = d->loop,
	    .store = d->store,
	    .auth = check_login,
	    .auth_ctx = d,
	    .spool_dir = d->opts.data,
	};
	if (d->opts.imaps.set || d->opts.tls_cert[0] != '\0') {
		log_error("imapqd", "TLS (--imaps, --tls-cert, --tls-key) is not supported by this "
				    "version");
		return false;
	}
	if (imap_server_create(&io, &d->imap) != IMAPQ_OK)
		return false;
	struct portfile_entry ports[3];
	size_t nports = 0;
	unsigned port;
	imapq_err err = imap_server_listen(d->imap, d->opts.imap.host, d->opts.imap.port, &port);
	if (err != IMAPQ_OK) {
		log_error("imapqd", "cannot listen on %s:%u: %s", d->opts.imap.host,
			  d->opts.imap.port, imapq_err_message(err));
		return false;
	}
	ports[nports++] = (struct portfile_entry){"imap", port};
	if (queue_service_create(&(struct queue_options){.store = d->store}, &d->queues) !=
	    IMAPQ_OK) {
		log_error("imapqd", "cannot start the queue service");
		return false;
	}
	struct http_options ho = {
	    .qs = d->queues,
	    .store = d->store,
	    .host = d->opts.http.host,
	    .port = d->opts.http.port,
	    .auth = check_token,
	    .auth_ctx = d,
	};
	err = http_server_create(&ho, &d->http);
	if (err != IMAPQ_OK) {
		log_error("imapqd", "cannot serve HTTP on %s:%u: %s", d->opts.http.host,
			  d->opts.http.port, imapq_err_message(err));
		return false;
	}
	ports[nports++] = (struct portfile_entry){"http", http_server_port(d->http)};
	log_info("http", "listening on %s:%u", d->opts.http.host, http_server_port(d->http));
	if (d->opts.port_file[0] != '\0' &&
	    portfile_write(d->opts.port_file, ports, nports) != IMAPQ_OK) {
		log_error("imapqd", "cannot write port file %s", d->opts.port_file);
		return false;
	}
	return true;
}

/* Opens the store and logs what recovery found. */
static bool open_store(struct daemon *d)
{
	struct store_options sopts = {
	    .dir = d->opts.data,
	    .fsync = d->opts.fsync,
	    .auto_compact = true,
	};
	struct store_report report;
	imapq_err err = store_open(&sopts, &report, &d->store);
	if (err != IMAPQ_OK) {
		log_error("imapqd", "cannot open the store in %s: %s", d->opts.data,
			  imapq_err_message(err));
		return false;
	}
	log_info("imapqd",
		 "store open: %u mailboxes, %llu messages, %llu records in %u segments replayed in "
		 "%.3f s; %u damaged regions, %llu bytes dropped",
		 report.mailboxes, (unsigned long long)report.messages,
		 (unsigned long long)report.journal.records, report.journal.segments,
		 (double)report.journal.elapsed_ns / 1e9, report.journal.damaged,
		 (unsigned long long)report.journal.dropped_bytes);
	return true;
}

int main(int argc, char **argv)
{
	struct daemon d = {.sigfd = -1};
	switch (daemon_options_parse(&d.opts, argc, argv, stdout, stderr)) {
	case DAEMON_EXIT_OK:
		return 0;
	case DAEMON_EXIT_USAGE:
		return 2;
	case DAEMON_RUN:
		break;
	}
	if (d.opts.verbose)
		log_set_level(LOG_DEBUG);

	/* Signals arrive through a signalfd; block them before any thread starts. */
	signal(SIGPIPE, SIG_IGN);
	sigset_t signals;
	sigemptyset(&signals);
	sigaddset(&signals, SIGTERM);
	sigaddset(&signals, SIGINT);
	sigaddset(&signals, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &signals, NULL);

	raise_fd_limit();
	int status = 1;
	if (!make_data_dir(d.opts.data) || loop_create(&d.loop) != IMAPQ_OK)
		return 1;
	d.sigfd = signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC);
	if (d.sigfd < 0 ||
	    loop_io_add(d.loop, d.sigfd, LOOP_READ, on_signal, &d, &d.sig_io) != IMAPQ_OK)
		goto out;
	if (!open_store(&d) || !setup_account(&d) || !start_listeners(&d))
		goto out;
	log_info("imapqd", "ready; data in %s", d.opts.data);
	status = loop_run(d.loop) == IMAPQ_OK ? 0 : 1;
out:
	http_server_destroy(&d.http);
	queue_service_destroy(&d.queues);
	imap_server_destroy(&d.imap);
	store_close(&d.store);
	if (d.opts.port_file[0] != '\0')
		unlink(d.opts.port_file);
	loop_io_remove(&d.sig_io);
	if (d.sigfd >= 0)
		close(d.sigfd);
	loop_destroy(&d.loop);
	log_info("imapqd", "stopped");
	return status;
}
