#include "cmd/daemon/options.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "imap/base/limits.h"

enum opt_id {
	OPT_DATA = 'd',
	OPT_HELP = 'h',
	OPT_VERBOSE = 'v',
	OPT_IMAP = 256,
	OPT_IMAPS,
	OPT_HTTP,
	OPT_USERS,
	OPT_TLS_CERT,
	OPT_TLS_KEY,
	OPT_FSYNC,
	OPT_PORT_FILE,
	OPT_CONFIG,
	OPT_VERSION,
	OPT_ALLOW_PLAINTEXT,
	OPT_MAX_QUEUE_MESSAGES,
};

static const struct option long_options[] = {
    {"data", required_argument, NULL, OPT_DATA},
    {"imap", required_argument, NULL, OPT_IMAP},
    {"imaps", required_argument, NULL, OPT_IMAPS},
    {"http", required_argument, NULL, OPT_HTTP},
    {"users", required_argument, NULL, OPT_USERS},
    {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
    {"tls-key", required_argument, NULL, OPT_TLS_KEY},
    {"fsync", required_argument, NULL, OPT_FSYNC},
    {"port-file", required_argument, NULL, OPT_PORT_FILE},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"allow-plaintext", no_argument, NULL, OPT_ALLOW_PLAINTEXT},
    {"max-queue-messages", required_argument, NULL, OPT_MAX_QUEUE_MESSAGES},
    {"verbose", no_argument, NULL, OPT_VERBOSE},
    {"help", no_argument, NULL, OPT_HELP},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: imapqd [OPTION]...\n"
		"Serve IMAP mailboxes as durable work queues.\n\n"
		"  -d, --data DIR          data folder (default " DAEMON_DEFAULT_DATA ")\n"
		"      --imap HOST:PORT    IMAP listener (default " DAEMON_DEFAULT_IMAP
		"; port 0 picks one)\n"
		"      --imaps HOST:PORT   implicit-TLS IMAP listener (off by default)\n"
		"      --http HOST:PORT    HTTP/JSON listener (default " DAEMON_DEFAULT_HTTP ")\n"
		"      --users FILE        users file (default: the demo user in DIR/credentials)\n"
		"      --tls-cert FILE     TLS certificate (PEM)\n"
		"      --tls-key FILE      TLS private key (PEM); with a certificate, IMAP offers\n"
		"                          STARTTLS, HTTP becomes HTTPS, and SIGHUP reloads the\n"
		"                          pair for new IMAP connections\n"
		"      --allow-plaintext   allow LOGIN and AUTHENTICATE PLAIN on cleartext IMAP\n"
		"                          from non-loopback peers\n"
		"      --fsync MODE        always (default): reply after fdatasync;\n"
		"                          batch: fdatasync every few ms; off: never\n"
		"      --max-queue-messages N\n"
		"                          messages a queue may hold unless it sets its own\n"
		"                          limit (default %u)\n"
		"      --port-file FILE    write the bound ports as name=port lines when ready\n"
		"      --config FILE       read options from FILE (one \"name = value\" a line)\n"
		"  -v, --verbose           log debug messages\n"
		"  -h, --help              show this help and exit\n"
		"      --version           show the version and exit\n\n"
		"Exit status: 0 after a clean shutdown (SIGTERM or SIGINT), 1 on a runtime\n"
		"failure, 2 on bad usage.\n",
		(unsigned)IMAPQ_MAX_MAILBOX_MESSAGES);
}

bool daemon_addr_parse(const char *text, struct daemon_addr *addr)
{
	const char *colon;
	const char *host = text;
	size_t host_len;

	if (text[0] == '[') {
		const char *end = strchr(text, ']');
		if (end == NULL || end[1] != ':')
			return false;
		host = text + 1;
		host_len = (size_t)(end - host);
		colon = end + 1;
	} else {
		colon = strrchr(text, ':');
		if (colon == NULL)
			return false;
		host_len = (size_t)(colon - text);
	}
	if (host_len >= sizeof addr->host)
		return false;

	const char *port = colon + 1;
	if (*port == '\0')
		return false;
	unsigned long value = 0;
	for (const char *p = port; *p != '\0'; p++) {
		if (!isdigit((unsigned char)*p))
			return false;
		value = value * 10 + (unsigned long)(*p - '0');
		if (value > 65535)
			return false;
	}
	memcpy(addr->host, host, host_len);
	addr->host[host_len] = '\0';
	if (host_len == 0)
		strcpy(addr->host, "127.0.0.1");
	addr->port = (unsigned)value;
	addr->set = true;
	return true;
}

bool daemon_fsync_parse(const char *text, enum journal_fsync *fsync_r)
{
	if (strcmp(text, "always") == 0)
		*fsync_r = JOURNAL_FSYNC_ALWAYS;
	else if (strcmp(text, "batch") == 0)
		*fsync_r = JOURNAL_FSYNC_BATCH;
	else if (strcmp(text, "off") == 0)
		*fsync_r = JOURNAL_FSYNC_OFF;
	else
		return false;
	return true;
}

/* Copies value into a fixed buffer; false when it does not fit. */
static bool set_path(char *dst, size_t cap, const char *value)
{
	size_t len = strlen(value);
	if (len == 0 || len >= cap)
		return false;
	memcpy(dst, value, len + 1);
	return true;
}

/* Reads the value of a switch given in the config file. */
static bool parse_switch(const char *value)
{
	return strcmp(value, "true") == 0 || strcmp(value, "yes") == 0 || strcmp(value, "1") == 0;
}

/* Parses a decimal count from 1 to max without sign or spaces. */
static bool parse_count(const char *value, uint32_t max, uint32_t *v_r)
{
	uint64_t v = 0;
	if (*value == '\0' || *value == '0')
		return false;
	for (const char *p = value; *p != '\0'; p++) {
		if (!isdigit((unsigned char)*p))
			return false;
		v = v * 10 + (uint64_t)(*p - '0');
		if (v > max)
			return false;
	}
	*v_r = (uint32_t)v;
	return true;
}

/* Applies one option by id; false with a message on err when its value is bad. */
static bool apply_option(struct daemon_options *opts, int id, const char *value, FILE *err)
{
	bool ok = true;
	switch (id) {
	case OPT_DATA:
		ok = set_path(opts->data, sizeof opts->data, value);
		break;
	case OPT_IMAP:
		ok = daemon_addr_parse(value, &opts->imap);
		break;
	case OPT_IMAPS:
		ok = daemon_addr_parse(value, &opts->imaps);
		break;
	case OPT_HTTP:
		ok = daemon_addr_parse(value, &opts->http);
		break;
	case OPT_USERS:
		ok = set_path(opts->users, sizeof opts->users, value);
		break;
	case OPT_TLS_CERT:
		ok = set_path(opts->tls_cert, sizeof opts->tls_cert, value);
		break;
	case OPT_TLS_KEY:
		ok = set_path(opts->tls_key, sizeof opts->tls_key, value);
		break;
	case OPT_FSYNC:
		ok = daemon_fsync_parse(value, &opts->fsync);
		break;
	case OPT_PORT_FILE:
		ok = set_path(opts->port_file, sizeof opts->port_file, value);
		break;
	case OPT_VERBOSE:
		opts->verbose = parse_switch(value);
		break;
	case OPT_ALLOW_PLAINTEXT:
		opts->allow_plaintext = parse_switch(value);
		break;
	case OPT_MAX_QUEUE_MESSAGES:
		ok = parse_count(value, IMAPQ_MAX_MESSAGES_SETTING, &opts->max_queue_messages);
		break;
	default:
		ok = false;
	}
	if (!ok)
		fprintf(err, "imapqd: invalid value '%s'\n", value);
	return ok;
}

/* Strips leading and trailing white space in place. */
static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	char *end = s + strlen(s);
	while (end > s && isspace((unsigned char)end[-1]))
		*--end = '\0';
	return s;
}

/* Reads "name = value" lines (# starts a comment) naming long options without their dashes. */
static bool read_config(struct daemon_options *opts, const char *path, FILE *err)
{
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		fprintf(err, "imapqd: cannot open config %s: %s\n", path, strerror(errno));
		return false;
	}
	char line[8192];
	unsigned lineno = 0;
	bool ok = true;
	while (ok && fgets(line, sizeof line, f) != NULL) {
		lineno++;
		char *hash = strchr(line, '#');
		if (hash != NULL)
			*hash = '\0';
		char *text = trim(line);
		if (*text == '\0')
			continue;
		char *eq = strchr(text, '=');
		if (eq == NULL) {
			fprintf(err, "imapqd: %s:%u: expected name = value\n", path, lineno);
			ok = false;
			break;
		}
		*eq = '\0';
		char *name = trim(text);
		char *value = trim(eq + 1);
		const struct option *o = long_options;
		while (o->name != NULL && strcmp(o->name, name) != 0)
			o++;
		if (o->name == NULL || o->val == OPT_CONFIG || o->val == OPT_HELP ||
		    o->val == OPT_VERSION) {
			fprintf(err, "imapqd: %s:%u: unknown option '%s'\n", path, lineno, name);
			ok = false;
			break;
		}
		if (!apply_option(opts, o->val, value, err)) {
			fprintf(err, "imapqd: %s:%u: bad value for %s\n", path, lineno, name);
			ok = false;
		}
	}
	fclose(f);
	return ok;
}

enum daemon_parse_result daemon_options_parse(struct daemon_options *opts, int argc, char **argv,
					      FILE *out, FILE *err)
{
	memset(opts, 0, sizeof *opts);
	strcpy(opts->data, DAEMON_DEFAULT_DATA);
	daemon_addr_parse(DAEMON_DEFAULT_IMAP, &opts->imap);
	daemon_addr_parse(DAEMON_DEFAULT_HTTP, &opts->http);
	opts->fsync = JOURNAL_FSYNC_ALWAYS;

	/* First pass finds --config, so that the command line can override the file. */
	for (int i = 1; i < argc; i++) {
		const char *value = NULL;
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			value = argv[i + 1];
		else if (strncmp(argv[i], "--config=", 9) == 0)
			value = argv[i] + 9;
		else if (strcmp(argv[i], "--") == 0)
			break;
		if (value != NULL) {
			if (!set_path(opts->config, sizeof opts->config, value) ||
			    !read_config(opts, value, err))
				return DAEMON_EXIT_USAGE;
		}
	}

	optind = 1;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, ":d:hv", long_options, NULL)) != -1) {
		switch (c) {
		case OPT_HELP:
			usage(out);
			return DAEMON_EXIT_OK;
		case OPT_VERSION:
			fprintf(out, "imapqd 0.1.0\n");
			return DAEMON_EXIT_OK;
		case OPT_CONFIG:
			break;
		case OPT_VERBOSE:
			opts->verbose = true;
			break;
		case OPT_ALLOW_PLAINTEXT:
			opts->allow_plaintext = true;
			break;
		case ':':
			fprintf(err, "imapqd: option %s needs a value\n", argv[optind - 1]);
			return DAEMON_EXIT_USAGE;
		case '?':
			fprintf(err, "imapqd: unknown option %s (see --help)\n", argv[optind - 1]);
			return DAEMON_EXIT_USAGE;
		default:
			if (!apply_option(opts, c, optarg, err))
				return DAEMON_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(err, "imapqd: unexpected argument '%s' (see --help)\n", argv[optind]);
		return DAEMON_EXIT_USAGE;
	}
	if ((opts->tls_cert[0] != '\0') != (opts->tls_key[0] != '\0')) {
		fprintf(err, "imapqd: --tls-cert and --tls-key go together\n");
		return DAEMON_EXIT_USAGE;
	}
	if (opts->imaps.set && opts->tls_cert[0] == '\0') {
		fprintf(err, "imapqd: --imaps needs --tls-cert and --tls-key\n");
		return DAEMON_EXIT_USAGE;
	}
	return DAEMON_RUN;
}
