#include "cmd/imapq/cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char cli_common_help[] =
    "      --url URL       daemon's HTTP address (IMAPQ_URL, default " CLI_DEFAULT_URL ")\n"
    "      --token TOKEN   bearer token (IMAPQ_TOKEN, or token= of DIR/credentials)\n"
    "      --data DIR      read the token from DIR/credentials (default " CLI_DEFAULT_DATA
    " when it exists)\n"
    "      --json          print the server's JSON replies\n"
    "  -h, --help          show this help and exit\n";

bool cli_common_option(struct cli *cli, int opt, const char *arg)
{
	switch (opt) {
	case CLI_OPT_URL:
		cli->url = arg;
		return true;
	case CLI_OPT_TOKEN:
		cli->token = arg;
		return true;
	case CLI_OPT_DATA:
		cli->data = arg;
		return true;
	case CLI_OPT_JSON:
		cli->json = true;
		return true;
	default:
		return false;
	}
}

/* Reads the value of the token= line of a credentials file into cli->token_buf. ENOENT when the
 * file is missing, EINVAL when it has no token line, other errno values from fopen. */
static int read_token(struct cli *cli, const char *path)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return errno;
	char line[512];
	int rc = EINVAL;
	while (fgets(line, sizeof line, f) != NULL) {
		if (strncmp(line, "token=", 6) != 0)
			continue;
		size_t len = strcspn(line + 6, "\r\n");
		if (len == 0 || len >= sizeof cli->token_buf)
			break;
		memcpy(cli->token_buf, line + 6, len);
		cli->token_buf[len] = '\0';
		rc = 0;
		break;
	}
	fclose(f);
	return rc;
}

imapq_err cli_resolve(struct cli *cli)
{
	if (cli->url == NULL)
		cli->url = getenv("IMAPQ_URL");
	if (cli->url == NULL || cli->url[0] == '\0')
		cli->url = CLI_DEFAULT_URL;
	/* Paths are appended to the URL, so one trailing slash is dropped. */
	size_t len = strlen(cli->url);
	if (len >= sizeof cli->url_buf) {
		fprintf(stderr, "imapq: --url is longer than %zu bytes\n", sizeof cli->url_buf - 1);
		return IMAPQ_E_INVALID;
	}
	memcpy(cli->url_buf, cli->url, len + 1);
	while (len > 0 && cli->url_buf[len - 1] == '/')
		cli->url_buf[--len] = '\0';
	cli->url = cli->url_buf;

	if (cli->token == NULL && cli->data == NULL) {
		const char *env = getenv("IMAPQ_TOKEN");
		if (env != NULL && env[0] != '\0')
			cli->token = env;
	}
	if (cli->token != NULL)
		return IMAPQ_OK;

	char path[4096];
	const char *dir = cli->data ? cli->data : CLI_DEFAULT_DATA;
	if (snprintf(path, sizeof path, "%s/credentials", dir) >= (int)sizeof path) {
		fprintf(stderr, "imapq: --data path is too long\n");
		return IMAPQ_E_INVALID;
	}
	int rc = read_token(cli, path);
	if (rc == 0) {
		cli->token = cli->token_buf;
	} else if (cli->data != NULL || rc != ENOENT) {
		/* A folder named on purpose must work; the default one may simply be absent. */
		fprintf(stderr, "imapq: cannot read a token from %s: %s\n", path,
			rc == EINVAL ? "no token= line" : strerror(rc));
		return IMAPQ_E_INVALID;
	}
	return IMAPQ_OK;
}

bool cli_parse_uint(const char *text, uint64_t min, uint64_t max, const char *what,
		    uint64_t *value_r)
{
	uint64_t v = 0;
	const char *p = text;
	if (*p == '\0')
		goto bad;
	for (; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			goto bad;
		unsigned digit = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - digit) / 10)
			goto bad;
		v = v * 10 + digit;
	}
	if (v < min || v > max)
		goto bad;
	*value_r = v;
	return true;
bad:
	fprintf(stderr, "imapq: %s must be a whole number from %llu to %llu, not \"%s\"\n", what,
		(unsigned long long)min, (unsigned long long)max, text);
	return false;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "imapq %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'imapq %s --help'.\n", cmd);
	return CLI_EXIT_USAGE;
}

int cli_getopt(struct cli *cli, int argc, char **argv, const char *shortopts,
	       const struct option *longopts, bool *help_r)
{
	for (;;) {
		int opt = getopt_long(argc, argv, shortopts, longopts, NULL);
		if (opt == CLI_OPT_HELP) {
			*help_r = true;
			continue;
		}
		if (opt != -1 && cli_common_option(cli, opt, optarg))
			continue;
		return opt;
	}
}

int cli_print_help(const char *help)
{
	fputs(help, stdout);
	fputs(cli_common_help, stdout);
	return CLI_EXIT_OK;
}

int cli_no_memory(void)
{
	fprintf(stderr, "imapq: out of memory\n");
	return CLI_EXIT_ERROR;
}

int cli_operands(int argc, char **argv, bool help_wanted, const char *help, int min, int max,
		 const char *expects)
{
	if (help_wanted)
		return cli_print_help(help);
	int n = argc - optind;
	if (n < min || n > max)
		return cli_usage_error(argv[0], "%s", expects);
	return -1;
}
