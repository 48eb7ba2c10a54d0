/* Helpers shared by the benchmarks under tests/bench: clocks, percentiles, a scratch data folder,
 * the output format, and what benchmarks against running daemons need (child processes, CPU
 * time, loopback sockets, an HTTP/1.1 response reader and a scanner for flat JSON members).
 * Header-only, because every tests/bench/bench_*.c is its own program.
 *
 * Output contract: a benchmark prints a readable table to stdout and, for each headline figure,
 * one line exactly "bench: <name> <value> <unit>" (see bench_figure()), so scripts can compare
 * runs. Benchmarks measure and print; they never assert timings. */
#ifndef IMAPQ_BENCH_H
#define IMAPQ_BENCH_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Nanoseconds on the monotonic clock. */
static inline uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Seconds elapsed since start_ns (a bench_now_ns() reading). */
static inline double bench_since_s(uint64_t start_ns)
{
	return (double)(bench_now_ns() - start_ns) / 1e9;
}

/* Comparison for qsort() over doubles, ascending. */
static inline int bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* The p-th percentile (0..100) of n values, interpolating linearly between neighbours. Sorts
 * values in place. Returns 0 when n is 0. */
static inline double bench_percentile(double *values, size_t n, double p)
{
	double rank, frac;
	size_t lo;

	if (n == 0)
		return 0;
	qsort(values, n, sizeof(*values), bench_cmp_double);
	if (p <= 0)
		return values[0];
	if (p >= 100)
		return values[n - 1];
	rank = p / 100.0 * (double)(n - 1);
	lo = (size_t)rank;
	frac = rank - (double)lo;
	if (lo + 1 >= n)
		return values[n - 1];
	return values[lo] + (values[lo + 1] - values[lo]) * frac;
}

/* The median of n values; sorts values in place. */
static inline double bench_median(double *values, size_t n)
{
	return bench_percentile(values, n, 50);
}

/* Prints a section title of the table. */
static inline void bench_section(const char *title)
{
	printf("\n%s\n", title);
	fflush(stdout);
}

/* Prints one table row: a label, a value with the given decimals, its unit and a note. */
static inline void bench_row(const char *label, double value, int decimals, const char *unit,
			     const char *note)
{
	printf("  %-44s %14.*f %-8s %s\n", label, decimals, value, unit, note ? note : "");
	fflush(stdout);
}

/* Prints a headline figure as the machine-readable line "bench: <name> <value> <unit>". */
static inline void bench_figure(const char *name, double value, int decimals, const char *unit)
{
	printf("bench: %s %.*f %s\n", name, decimals, value, unit);
	fflush(stdout);
}

/* Reports a functional failure on stderr; the benchmark then exits non-zero. */
__attribute__((format(printf, 1, 2))) static inline void bench_fail(const char *fmt, ...)
{
	va_list ap;

	fputs("bench: FAILED: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* Creates a fresh scratch folder inside $IMAPQ_BENCH_DIR, or inside /tmp when that is unset,
 * and copies its path into buf. Returns 0, or -1 with errno set. */
static inline int bench_dir_create(char *buf, size_t cap)
{
	const char *parent = getenv("IMAPQ_BENCH_DIR");
	int n;

	if (!parent || !*parent)
		parent = "/tmp";
	n = snprintf(buf, cap, "%s/imapq-bench-XXXXXX", parent);
	if (n < 0 || (size_t)n >= cap) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return mkdtemp(buf) ? 0 : -1;
}

/* Removes one entry for bench_dir_remove(); nftw visits children before their folder. */
static inline int bench_dir_remove_entry(const char *path, const struct stat *st, int type,
					 struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return type == FTW_DP ? rmdir(path) : unlink(path);
}

/* Removes a scratch folder and everything in it. Returns 0, or -1 with errno set. */
static inline int bench_dir_remove(const char *path)
{
	return nftw(path, bench_dir_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A positive number from environment variable name (at most max), or def when it is unset;
 * a malformed or out-of-range value is reported on stderr and def used. */
static inline double bench_env_number(const char *name, double def, double max)
{
	const char *s = getenv(name);
	char *end;
	double v;

	if (!s || !*s)
		return def;
	v = strtod(s, &end);
	if (*end || v <= 0 || v > max) {
		fprintf(stderr, "bench: ignoring %s=%s\n", name, s);
		return def;
	}
	return v;
}

/* --- Latency samples --- */

/* A growable list of samples; zero-initialise, free with bench_samples_free(). */
struct bench_samples {
	double *v;
	size_t n, cap;
};

/* Appends a sample. Returns 0, or -1 when memory is short. */
static inline int bench_samples_add(struct bench_samples *s, double v)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 4096;
		double *nv = realloc(s->v, cap * sizeof(*nv));

		if (!nv)
			return -1;
		s->v = nv;
		s->cap = cap;
	}
	s->v[s->n++] = v;
	return 0;
}

/* Frees the samples and empties the list. */
static inline void bench_samples_free(struct bench_samples *s)
{
	free(s->v);
	*s = (struct bench_samples){0};
}

/* --- CPU time --- */

/* CPU seconds (user + system, every thread) this process has used so far. */
static inline double bench_cpu_self(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* CPU seconds (user + system, every thread) process pid has used so far, from /proc/PID/stat;
 * 0 when it cannot be read. */
static inline double bench_cpu_process(pid_t pid)
{
	char path[64], buf[1024];
	unsigned long utime = 0, stime = 0;
	const char *p;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* The fields follow the command name, which sits in parentheses and may hold spaces. */
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime,
			 &stime) != 2)
		return 0;
	return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* CPU seconds (user + system) that process pid and its living children have used so far, for
 * servers that fork a process per connection (Dovecot); 0 when /proc cannot be read. */
static inline double bench_cpu_tree(pid_t pid)
{
	double total = bench_cpu_process(pid);
	DIR *d = opendir("/proc");
	struct dirent *e;

	if (!d)
		return total;
	while ((e = readdir(d)) != NULL) {
		char path[300], buf[1024];
		const char *p;
		int ppid = 0;
		FILE *f;
		size_t n;

		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = '\0';
		p = strrchr(buf, ')');
		if (p && sscanf(p + 2, "%*c %d", &ppid) == 1 && ppid == (int)pid)
			total += bench_cpu_process((pid_t)strtol(e->d_name, NULL, 10));
	}
	closedir(d);
	return total;
}

/* --- Child processes (daemons under test, peers) --- */

/* Starts argv[0] (a path) with stdout and stderr appended to log_path. Returns its pid, or -1
 * with errno set when fork fails (a failed exec shows as exit status 127). */
static inline pid_t bench_proc_spawn(char *const argv[], const char *log_path)
{
	pid_t pid = fork();

	if (pid == 0) {
		int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
		}
		execv(argv[0], argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	return pid;
}

/* True when child *pid has exited; it is then reaped, *status holds its wait status and *pid
 * becomes -1. */
static inline bool bench_proc_exited(pid_t *pid, int *status)
{
	if (*pid > 0 && waitpid(*pid, status, WNOHANG) == *pid) {
		*pid = -1;
		return true;
	}
	return false;
}

/* Sends SIGTERM to child *pid and reaps it, with SIGKILL after timeout_s seconds. Returns 0 with
 * its wait status in *status, or -1 when it had to be killed. *pid becomes -1. */
static inline int bench_proc_stop(pid_t *pid, double timeout_s, int *status)
{
	uint64_t start = bench_now_ns();

	*status = 0;
	if (*pid <= 0)
		return 0;
	kill(*pid, SIGTERM);
	while (!bench_proc_exited(pid, status)) {
		if (bench_since_s(start) > timeout_s) {
			kill(*pid, SIGKILL);
			waitpid(*pid, status, 0);
			*pid = -1;
			return -1;
		}
		usleep(10000);
	}
	return 0;
}

/* Copies the value of the first "key=value" line of a file into out (the form of imapqd's port
 * file and credentials). Returns 0, or -1 when the file or the key is missing or the value does
 * not fit in cap bytes. */
static inline int bench_file_value(const char *path, const char *key, char *out, size_t cap)
{
	char line[512];
	size_t klen = strlen(key);
	int found = -1;
	FILE *f = fopen(path, "r");

	if (!f)
		return -1;
	while (found < 0 && fgets(line, sizeof(line), f)) {
		if (strncmp(line, key, klen) == 0 && line[klen] == '=') {
			size_t vlen = strcspn(line + klen + 1, "\r\n");

			if (vlen >= cap)
				break;
			memcpy(out, line + klen + 1, vlen);
			out[vlen] = '\0';
			found = 0;
		}
	}
	fclose(f);
	return found;
}

/* --- Loopback sockets --- */

/* A blocking TCP connection to 127.0.0.1:port with TCP_NODELAY, or -1 with errno set. */
static inline int bench_tcp_connect(unsigned port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

/* A TCP port of 127.0.0.1 that was free a moment ago, for a peer that cannot pick its own and
 * report it; 0 on failure. Another process may take it before the peer binds: retry then. */
static inline unsigned bench_free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	unsigned port = 0;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return 0;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

/* Waits until child *pid accepts TCP connections on 127.0.0.1:port, for peers that cannot report
 * a port they picked. Returns 1 when it listens, 0 when it exited first (reaped: *status holds
 * its wait status and *pid becomes -1), -1 after timeout_s seconds. */
static inline int bench_proc_wait_listen(pid_t *pid, unsigned port, double timeout_s, int *status)
{
	uint64_t start = bench_now_ns();

	while (!bench_proc_exited(pid, status)) {
		int fd = bench_tcp_connect(port);

		if (fd >= 0) {
			close(fd);
			return 1;
		}
		if (bench_since_s(start) > timeout_s)
			return -1;
		usleep(10000);
	}
	return 0;
}

/* Copies the last max bytes of file path to stream (a peer's log after it failed). */
static inline void bench_file_tail(const char *path, FILE *stream, long max)
{
	char buf[4096];
	size_t n;
	FILE *f = fopen(path, "r");

	if (!f) {
		fprintf(stream, "(cannot read %s: %s)\n", path, strerror(errno));
		return;
	}
	if (fseek(f, 0, SEEK_END) == 0 && ftell(f) > max)
		fseek(f, -max, SEEK_END);
	else
		fseek(f, 0, SEEK_SET);
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		fwrite(buf, 1, n, stream);
	fclose(f);
}

/* --- HTTP/1.1 responses and flat JSON --- */

/* One HTTP response read by bench_http_parse(); body points into the caller's buffer. */
struct bench_http_resp {
	unsigned status;
	const char *body;
	size_t body_len;
	bool close; /* the server closes the connection after this response */
};

/* Reads one HTTP/1.x response at the start of buf[0..len), without copying. Returns the bytes
 * it spans, 0 when more bytes are needed, or -1 when it cannot be read here: a bad status line,
 * chunked transfer coding, a body without Content-Length, or one larger than max_body. */
static inline long bench_http_parse(const char *buf, size_t len, size_t max_body,
				    struct bench_http_resp *resp)
{
	const char *end = memmem(buf, len, "\r\n\r\n", 4);
	const char *line, *next;
	size_t head, body = 0;
	bool have_length = false;

	if (!end)
		return 0;
	head = (size_t)(end - buf) + 4;
	if (head < 13 || memcmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ' || buf[9] < '1' ||
	    buf[9] > '5' || buf[10] < '0' || buf[10] > '9' || buf[11] < '0' || buf[11] > '9')
		return -1;
	resp->status = (unsigned)((buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0'));
	resp->close = buf[7] == '0'; /* HTTP/1.0 closes unless told otherwise */
	for (line = (const char *)memchr(buf, '\n', head) + 1; line < end; line = next + 1) {
		next = memchr(line, '\n', (size_t)(buf + head - line));
		if (strncasecmp(line, "Content-Length:", 15) == 0) {
			body = strtoul(line + 15, NULL, 10);
			have_length = true;
		} else if (strncasecmp(line, "Connection:", 11) == 0) {
			const char *v = line + 11;

			while (*v == ' ')
				v++;
			resp->close = strncasecmp(v, "close", 5) == 0;
		} else if (strncasecmp(line, "Transfer-Encoding:", 18) == 0) {
			return -1;
		}
	}
	if (!have_length && resp->status >= 200 && resp->status != 204 && resp->status != 304)
		return -1;
	if (body > max_body)
		return -1;
	if (len < head + body)
		return 0;
	resp->body = buf + head;
	resp->body_len = body;
	return (long)(head + body);
}

/* Finds the next member "key": value in json[*pos..len) whose value is a string without escapes
 * or an unsigned integer, copies the value (NUL-terminated) into out and moves *pos past it.
 * Returns false when there is none. A scanner, not a parser: it is meant for replies whose
 * shape the caller knows, and the key must not occur inside other strings. */
static inline bool bench_json_next(const char *json, size_t len, size_t *pos, const char *key,
				   char *out, size_t cap)
{
	char pat[64];
	int plen = snprintf(pat, sizeof(pat), "\"%s\"", key);

	if (plen < 0 || (size_t)plen >= sizeof(pat))
		return false;
	while (*pos < len) {
		const char *hit = memmem(json + *pos, len - *pos, pat, (size_t)plen);
		size_t i, start;
		bool quoted;

		if (!hit)
			break;
		i = (size_t)(hit - json) + (size_t)plen;
		*pos = i;
		while (i < len && (json[i] == ' ' || json[i] == '\t' || json[i] == '\n'))
			i++;
		if (i >= len || json[i] != ':')
			continue; /* the text was a value, not a key */
		i++;
		while (i < len && (json[i] == ' ' || json[i] == '\t' || json[i] == '\n'))
			i++;
		quoted = i < len && json[i] == '"';
		start = quoted ? i + 1 : i;
		for (i = start; i < len; i++) {
			if (quoted ? json[i] == '"' || json[i] == '\\'
				   : !(json[i] >= '0' && json[i] <= '9'))
				break;
		}
		*pos = i;
		if (i == start || i - start >= cap || (quoted && (i >= len || json[i] != '"')))
			continue;
		memcpy(out, json + start, i - start);
		out[i - start] = '\0';
		return true;
	}
	return false;
}

/* One blocking HTTP/1.1 request to 127.0.0.1:port with a JSON body (may be "") and, when token
 * is not NULL, "Authorization: Bearer <token>"; for setup and checks outside timed loops.
 * Returns the status, or 0 when the exchange failed or took over 10 s; the response body is
 * copied NUL-terminated (cut to fit) into body when body is not NULL. */
static inline unsigned bench_http_call(unsigned port, const char *token, const char *method,
				       const char *path, const char *json, char *body, size_t cap)
{
	enum { CALL_CAP = 1024 * 1024 };
	struct timeval tv = {.tv_sec = 10};
	struct bench_http_resp resp;
	unsigned status = 0;
	size_t len = 0;
	long n = 0;
	char *buf = malloc(CALL_CAP);
	int fd = bench_tcp_connect(port);
	int head;

	if (body && cap)
		body[0] = '\0';
	if (!buf || fd < 0)
		goto out;
	head = snprintf(buf, CALL_CAP,
			"%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s%sContent-Type: application/json"
			"\r\nContent-Length: %zu\r\n\r\n%s",
			method, path, token ? "Authorization: Bearer " : "", token ? token : "",
			token ? "\r\n" : "", strlen(json), json);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (head < 0 || head >= CALL_CAP || write(fd, buf, (size_t)head) != head)
		goto out;
	while ((n = bench_http_parse(buf, len, CALL_CAP, &resp)) == 0 && len < CALL_CAP) {
		ssize_t got = read(fd, buf + len, CALL_CAP - len);

		if (got <= 0)
			break;
		len += (size_t)got;
	}
	if (n > 0) {
		status = resp.status;
		if (body && cap)
			snprintf(body, cap, "%.*s", (int)resp.body_len, resp.body);
	}
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return status;
}

/* --- Programs to run --- */

/* Writes "dir/name" into out. Returns 0, or -1 when it does not fit in cap bytes. */
static inline int bench_path_join(char *out, size_t cap, const char *dir, const char *name)
{
	size_t dl = strlen(dir), nl = strlen(name);

	if (dl + nl + 2 > cap)
		return -1;
	memcpy(out, dir, dl);
	out[dl] = '/';
	memcpy(out + dl + 1, name, nl + 1);
	return 0;
}

/* Finds a program of the project's build: $env when set, else name in the build folder that
 * holds this program's folder (<build>/bench/bench_x -> <build>/name). Returns 0 with its path
 * in out (also on failure when it could be formed, for the message), or -1 when it is not an
 * executable file. */
static inline int bench_build_program(const char *env, const char *name, char *out, size_t cap)
{
	const char *set = getenv(env);
	char self[4096];
	ssize_t n;

	if (set && *set) {
		snprintf(out, cap, "%s", set);
		return access(out, X_OK) == 0 ? 0 : -1;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return -1;
	self[n] = '\0';
	for (int up = 0; up < 2; up++) {
		char *slash = strrchr(self, '/');

		if (!slash)
			return -1;
		*slash = '\0';
	}
	if (bench_path_join(out, cap, self, name) != 0)
		return -1;
	return access(out, X_OK) == 0 ? 0 : -1;
}

/* Finds an installed program: $env when set, else name on $PATH or in the usual system folders.
 * Returns 0 with its path in out, or -1 when there is none. */
static inline int bench_system_program(const char *env, const char *name, char *out, size_t cap)
{
	const char *set = getenv(env);
	const char *path = getenv("PATH");
	char dirs[4096];
	char *save = NULL;

	if (set && *set) {
		snprintf(out, cap, "%s", set);
		return access(out, X_OK) == 0 ? 0 : -1;
	}
	snprintf(dirs, sizeof(dirs), "%s:/usr/bin:/usr/sbin:/usr/local/bin:/usr/local/sbin",
		 path ? path : "");
	for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		if (bench_path_join(out, cap, d, name) == 0 && access(out, X_OK) == 0)
			return 0;
	}
	return -1;
}

#endif
