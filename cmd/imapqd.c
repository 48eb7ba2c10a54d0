/* imapqd: the daemon's composition root. It parses the command line, opens and recovers the
 * store, loads the users file (or makes sure there is a demo account), starts the listeners on
 * one event loop, announces readiness through the port file, reloads the users file and the TLS
 * certificate on SIGHUP, and shuts down cleanly on SIGTERM or SIGINT. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "cmd/daemon/accounts.h"
#include "cmd/daemon/options.h"
#include "cmd/daemon/portfile.h"
#include "http/http.h"
#include "imap/base/log.h"
#include "imap/base/loop.h"
#include "imap/server/server.h"
#include "imap/server/tls.h"
#include "imap/store/store.h"
#include "queue/queue.h"

/* How often shutdown checks whether the last session has gone. */
#define SHUTDOWN_POLL_MS 20
/* Largest PEM file read for HTTPS: a long certificate chain stays far below. */
#define PEM_MAX_BYTES (1024 * 1024)

struct daemon {
	struct daemon_options opts;
	struct loop *loop;
	struct store *store;
	struct imap_server *imap;
	struct queue_service *queues;
	struct http_server *http;
	struct accounts *accounts;
	struct tls_server *tls;
	char *tls_cert_pem, *tls_key_pem; /* the same pair for HTTPS */
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

/* Reads a whole PEM file into a NUL-terminated string; NULL (logged) on failure. */
static char *read_pem(const char *path)
{
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		log_error("imapqd", "cannot open %s: %s", path, strerror(errno));
		return NULL;
	}
	char *text = malloc(PEM_MAX_BYTES + 1);
	size_t n = text != NULL ? fread(text, 1, PEM_MAX_BYTES + 1, f) : 0;
	bool ok = text != NULL && !ferror(f) && n > 0 && n <= PEM_MAX_BYTES;
	fclose(f);
	if (!ok) {
		log_error("imapqd", "cannot read %s: empty, unreadable or above %d bytes", path,
			  PEM_MAX_BYTES);
		free(text);
		return NULL;
	}
	text[n] = '\0';
	return text;
}

/* Loads the certificate and key for IMAP (checked by OpenSSL) and for HTTPS. */
static bool load_tls(struct daemon *d)
{
	if (d->opts.tls_cert[0] == '\0')
		return true;
	if (tls_server_create(d->opts.tls_cert, d->opts.tls_key, &d->tls) != IMAPQ_OK)
		return false;
	d->tls_cert_pem = read_pem(d->opts.tls_cert);
	d->tls_key_pem = read_pem(d->opts.tls_key);
	return d->tls_cert_pem != NULL && d->tls_key_pem != NULL;
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
			accounts_reload(d->accounts);
			if (d->tls == NULL) {
				log_info("imapqd", "SIGHUP: no certificate to reload");
			} else if (tls_server_reload(d->tls) == IMAPQ_OK) {
				log_info("imapqd",
					 "SIGHUP: new IMAP connections use the reloaded "
					 "certificate; HTTPS keeps its own until a restart");
			}
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
	    .auth = accounts_check_login,
	    .auth_ctx = d->accounts,
	    .allow_plaintext = d->opts.allow_plaintext,
	    .tls = d->tls,
	    .spool_dir = d->opts.data,
	};
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
	if (d->opts.imaps.set) {
		err =
		    imap_server_listen_tls(d->imap, d->opts.imaps.host, d->opts.imaps.port, &port);
		if (err != IMAPQ_OK) {
			log_error("imapqd", "cannot listen on %s:%u: %s", d->opts.imaps.host,
				  d->opts.imaps.port, imapq_err_message(err));
			return false;
		}
		ports[nports++] = (struct portfile_entry){"imaps", port};
	}
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
	    .auth = accounts_check_token,
	    .auth_ctx = d->accounts,
	    .tls_cert_pem = d->tls_cert_pem,
	    .tls_key_pem = d->tls_key_pem,
	};
	err = http_server_create(&ho, &d->http);
	if (err != IMAPQ_OK) {
		log_error("imapqd", "cannot serve HTTP on %s:%u: %s", d->opts.http.host,
			  d->opts.http.port, imapq_err_message(err));
		return false;
	}
	ports[nports++] = (struct portfile_entry){"http", http_server_port(d->http)};
	log_info("http", "listening on %s:%u%s", d->opts.http.host, http_server_port(d->http),
		 d->tls != NULL ? " (HTTPS)" : "");
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
	    .max_mailbox_messages = d->opts.max_queue_messages,
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
	if (!load_tls(&d) || !open_store(&d) ||
	    accounts_open(d.opts.data, d.opts.users, &d.accounts) != IMAPQ_OK ||
	    !start_listeners(&d))
		goto out;
	log_info("imapqd", "ready; data in %s", d.opts.data);
	status = loop_run(d.loop) == IMAPQ_OK ? 0 : 1;
out:
	http_server_destroy(&d.http);
	queue_service_destroy(&d.queues);
	imap_server_destroy(&d.imap);
	accounts_destroy(&d.accounts);
	tls_server_destroy(&d.tls);
	if (d.tls_key_pem != NULL)
		OPENSSL_cleanse(d.tls_key_pem, strlen(d.tls_key_pem));
	free(d.tls_key_pem);
	free(d.tls_cert_pem);
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
