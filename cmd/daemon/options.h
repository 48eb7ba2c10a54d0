/* The command line and config file of imapqd (DESIGN.md, "Running it"). */
#ifndef IMAPQ_DAEMON_OPTIONS_H
#define IMAPQ_DAEMON_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "imap/store/journal.h"

#define DAEMON_DEFAULT_DATA "./imapq-data"
#define DAEMON_DEFAULT_IMAP "127.0.0.1:1143"
#define DAEMON_DEFAULT_HTTP "127.0.0.1:8080"

/* A listening address as given: host and port (0 picks a free port). */
struct daemon_addr {
	char host[256];
	unsigned port;
	bool set;
};

struct daemon_options {
	char data[4096];
	struct daemon_addr imap, imaps, http;
	char users[4096];
	char tls_cert[4096];
	char tls_key[4096];
	enum journal_fsync fsync;
	char port_file[4096];
	char config[4096];
	bool allow_plaintext; /* LOGIN and AUTHENTICATE PLAIN on cleartext non-loopback IMAP */
	uint32_t max_queue_messages; /* default message limit per queue; 0: the store's own */
	bool verbose;
};

/* Outcome of parsing: run the daemon, exit 0 (after --help/--version), or exit 2 (bad usage). */
enum daemon_parse_result { DAEMON_RUN, DAEMON_EXIT_OK, DAEMON_EXIT_USAGE };

/* Fills opts from defaults, then the --config file (if named), then the command line, which
 * wins. Messages (help, errors) go to out and err. */
enum daemon_parse_result daemon_options_parse(struct daemon_options *opts, int argc, char **argv,
					      FILE *out, FILE *err);

/* Parses "HOST:PORT", "[V6]:PORT" or ":PORT" into addr; false when malformed. */
bool daemon_addr_parse(const char *text, struct daemon_addr *addr);

/* Parses always|batch|off. */
bool daemon_fsync_parse(const char *text, enum journal_fsync *fsync_r);

#endif
