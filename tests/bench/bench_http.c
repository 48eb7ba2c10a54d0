/* The HTTP benchmark: imapqd's HTTP/JSON front against beanstalkd, both durable. It starts
 * imapqd (--fsync always, its default) and beanstalkd (-f 0: fsync after every write) on
 * loopback in scratch folders, drives each with 64 keep-alive connections from one epoll thread,
 * and measures single and batched enqueues over HTTP and the full enqueue -> claim -> ack cycle
 * on both, in rounds that alternate between the two servers (the cycle figures are the rounds'
 * medians). Every cycle phase checks that each enqueued job was claimed and acked exactly once.
 * Prints a table and "bench:" lines (see bench.h and docs/benchmarks.md); exits non-zero only on
 * a functional failure. Timings are never judged.
 *
 * Environment: IMAPQ_IMAPQD (the daemon; default <build>/imapqd for <build>/bench/bench_http),
 * IMAPQ_BEANSTALKD (default: beanstalkd on PATH), IMAPQ_BENCH_HTTP_CLIENTS (connections, 64),
 * IMAPQ_BENCH_HTTP_SECONDS (measured seconds per phase, 5), IMAPQ_BENCH_HTTP_ROUNDS (cycle
 * rounds per server, 5), IMAPQ_BENCH_DIR (see bench.h). */
#include <limits.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/stat.h>

#include "bench.h"

/* Connections per phase, unless IMAPQ_BENCH_HTTP_CLIENTS says otherwise (1..MAX_CLIENTS). */
#define CLIENTS	    64
#define MAX_CLIENTS 1024
/* Warm-up before each measured window, and the window, seconds (IMAPQ_BENCH_HTTP_SECONDS). */
#define WARM_S	  1.0
#define MEASURE_S 5.0
/* Rounds of the cycle phase per server, alternating between them (IMAPQ_BENCH_HTTP_ROUNDS);
 * the cycle figures are the medians of the rounds. */
#define ROUNDS	   5
#define MAX_ROUNDS 9
/* How long the units in flight at the end of a window may take to finish, seconds. */
#define DRAIN_S 20.0
/* How long a daemon may take to become ready, and to exit after SIGTERM, seconds. */
#define START_S 30.0
#define STOP_S	15.0
/* Jobs per request of the batch phase. */
#define BATCH 100
/* Bytes of padding in each job body, which is about 40 bytes longer. */
#define PAD 64
/* Per-connection buffers: a reply (a claim carries the job) and a request (a batch of jobs). */
#define IN_CAP	(256 * 1024)
#define OUT_CAP (32 * 1024)
/* Longest id or receipt kept from a reply. */
#define TOKEN_CAP 96
/* Largest job id the exactly-once check tracks (a fresh queue numbers from 1). */
#define MAX_ID 100000000u
/* Queues of the three HTTP phases, and the beanstalkd tube. */
#define Q_SINGLE "bench-enqueue"
#define Q_BATCH	 "bench-batch"
#define Q_CYCLE	 "bench-cycle"
#define TUBE	 "bench-cycle"

/* The id-set bits of the exactly-once check. */
#define ID_ENQUEUED 1u
#define ID_CLAIMED  2u
#define ID_ACKED    4u

enum proto { PROTO_HTTP, PROTO_BEANSTALK };

/* What each connection repeats: one job per request, a batch per request, or a full cycle. */
enum workload { WL_SINGLE, WL_BATCH, WL_CYCLE };

/* The request a connection awaits the reply to. */
enum step { STEP_SETUP, STEP_ENQUEUE, STEP_CLAIM, STEP_ACK };

struct run;

/* One keep-alive connection of the client; at most one request in flight (beanstalkd's setup
 * commands excepted, which are answered in order). */
struct conn {
	struct run *run;
	int fd;
	bool want_out;	    /* EPOLLOUT is registered: out has unsent bytes */
	enum step step;	    /* what the next reply answers */
	unsigned replies;   /* replies owed (beanstalkd setup sends three commands) */
	uint64_t unit_ns;   /* when the current unit of work began */
	char id[TOKEN_CAP]; /* the claimed job */
	char receipt[TOKEN_CAP];
	size_t out_len, out_off;
	size_t in_len;
	char out[OUT_CAP];
	char in[IN_CAP];
};

/* Job ids seen in one phase, one byte of ID_* bits each. */
struct idset {
	uint8_t *bits;
	size_t cap;
	uint64_t enqueued, acked;
};

/* One measured phase against one server. */
struct run {
	const char *title;
	enum proto proto;
	enum workload wl;
	unsigned port;
	const char *token; /* bearer token (HTTP) */
	const char *queue;
	pid_t server; /* for its CPU time */
	int epfd;
	struct conn **conns;
	unsigned n_conns;
	unsigned busy; /* connections with a unit in progress */
	uint64_t t0, warm_end, end;
	uint64_t seq; /* job bodies written */
	/* Results: units and jobs completed inside the window, and their latencies. */
	uint64_t units, jobs, all_units;
	struct bench_samples lat; /* milliseconds */
	uint64_t empty_claims, reconnects;
	struct idset ids;
	/* CPU seconds of this process and of the server at the window's start and end. */
	bool cpu_started, cpu_ended;
	double client_cpu[2], server_cpu[2];
	/* imapqd's journal fdatasync calls and seconds in them at the window's start and end, from
	 * /metrics: how many cycles shared one sync. */
	bool fsyncs_ok;
	double fsyncs[2], fsync_s[2];
};

/* A started daemon: its process and its scratch folder. */
struct server {
	const char *name;
	pid_t pid;
	char dir[PATH_MAX];
	char log[PATH_MAX + 16];
	unsigned port;
	char token[TOKEN_CAP];
};

static unsigned n_clients = CLIENTS;
static double measure_s = MEASURE_S;

/* --- Small helpers --- */

/* Parses a job id (decimal, 1..MAX_ID). */
static bool id_parse(const char *text, uint32_t *id)
{
	char *end;
	unsigned long v;

	if (*text < '0' || *text > '9')
		return false;
	errno = 0;
	v = strtoul(text, &end, 10);
	if (errno || *end || v == 0 || v > MAX_ID)
		return false;
	*id = (uint32_t)v;
	return true;
}

/* Records that job id reached state bit; a bit set twice (a duplicate id, a double claim or
 * ack) is a functional failure. False on failure, with the reason printed. */
static bool idset_mark(struct run *r, const char *text, unsigned bit)
{
	struct idset *s = &r->ids;
	uint32_t id;

	if (!id_parse(text, &id)) {
		bench_fail("%s: job id \"%s\" is not a number in 1..%u", r->title, text, MAX_ID);
		return false;
	}
	if (id >= s->cap) {
		size_t cap = s->cap ? s->cap : 65536;
		uint8_t *nb;

		while (cap <= id)
			cap *= 2;
		nb = realloc(s->bits, cap);
		if (!nb) {
			bench_fail("%s: out of memory for the id set", r->title);
			return false;
		}
		memset(nb + s->cap, 0, cap - s->cap);
		s->bits = nb;
		s->cap = cap;
	}
	if (s->bits[id] & bit) {
		bench_fail("%s: job %u %s twice", r->title, id,
			   bit == ID_ENQUEUED  ? "enqueued"
			   : bit == ID_CLAIMED ? "claimed"
					       : "acked");
		return false;
	}
	s->bits[id] |= (uint8_t)bit;
	s->enqueued += bit == ID_ENQUEUED;
	s->acked += bit == ID_ACKED;
	return true;
}

/* After a cycle phase: every job seen was enqueued, claimed and acked exactly once. */
static bool idset_check_cycles(struct run *r)
{
	const struct idset *s = &r->ids;

	for (size_t id = 0; id < s->cap; id++) {
		unsigned b = s->bits[id];

		if (b && b != (ID_ENQUEUED | ID_CLAIMED | ID_ACKED)) {
			bench_fail("%s: job %zu was%s%s%s", r->title, id,
				   b & ID_ENQUEUED ? " enqueued" : " never enqueued",
				   b & ID_CLAIMED ? ", claimed" : ", never claimed",
				   b & ID_ACKED ? ", acked" : ", never acked");
			return false;
		}
	}
	if (s->enqueued != r->all_units || s->acked != r->all_units) {
		bench_fail("%s: %llu cycles but %llu jobs enqueued and %llu acked", r->title,
			   (unsigned long long)r->all_units, (unsigned long long)s->enqueued,
			   (unsigned long long)s->acked);
		return false;
	}
	return true;
}

/* Writes one job body (a small JSON object) into buf; returns its length. */
static size_t job_body(struct run *r, char *buf, size_t cap)
{
	static const char pad[PAD + 1] =
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
	int n =
	    snprintf(buf, cap, "{\"job\":%llu,\"pad\":\"%s\"}", (unsigned long long)++r->seq, pad);

	return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* --- HTTP --- */

/* Puts an HTTP request with a JSON body into the connection's output buffer. */
static bool http_format(struct conn *c, const char *method, const char *path, const char *body,
			size_t body_len)
{
	int n = snprintf(c->out, OUT_CAP,
			 "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
			 "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
			 method, path, c->run->token, body_len);

	if (n < 0 || (size_t)n + body_len > OUT_CAP) {
		bench_fail("%s: request too large for the client's buffer", c->run->title);
		return false;
	}
	memcpy(c->out + n, body, body_len);
	c->out_len = (size_t)n + body_len;
	c->out_off = 0;
	c->replies = 1;
	return true;
}

/* --- The event loop --- */

static bool unit_start(struct conn *c);

/* Writes what the connection has pending; registers for EPOLLOUT while bytes remain. */
static bool conn_flush(struct conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0) {
			bench_fail("%s: write: %s", c->run->title, strerror(errno));
			return false;
		}
		c->out_off += (size_t)n;
	}
	if ((c->out_off < c->out_len) != c->want_out) {
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};

		c->want_out = !c->want_out;
		if (c->want_out)
			ev.events |= EPOLLOUT;
		epoll_ctl(c->run->epfd, EPOLL_CTL_MOD, c->fd, &ev);
	}
	return true;
}

/* Opens the connection's socket (non-blocking) and adds it to the loop. */
static bool conn_open(struct conn *c)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};

	c->fd = bench_tcp_connect(c->run->port);
	if (c->fd < 0) {
		bench_fail("%s: connect to 127.0.0.1:%u: %s", c->run->title, c->run->port,
			   strerror(errno));
		return false;
	}
	fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
	c->want_out = false;
	c->in_len = 0;
	return epoll_ctl(c->run->epfd, EPOLL_CTL_ADD, c->fd, &ev) == 0;
}

/* Closes the connection's socket (epoll forgets it with the descriptor). */
static void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* Ends a unit of work that moved jobs jobs: counts it when it finished inside the window and
 * starts the next one, or retires the connection when the window is over. */
static bool unit_done(struct conn *c, uint64_t jobs)
{
	struct run *r = c->run;
	uint64_t now = bench_now_ns();

	r->all_units++;
	if (now >= r->warm_end && now <= r->end) {
		r->units++;
		r->jobs += jobs;
		if (bench_samples_add(&r->lat, (double)(now - c->unit_ns) / 1e6)) {
			bench_fail("%s: out of memory for latency samples", r->title);
			return false;
		}
	}
	if (now >= r->end) {
		r->busy--;
		return true;
	}
	return unit_start(c);
}

/* Sends the claim of a cycle. */
static bool http_send_claim(struct conn *c)
{
	static const char claim[] = "{\"max\":1}";
	char path[256];

	snprintf(path, sizeof(path), "/v1/queues/%s/claims", c->run->queue);
	c->step = STEP_CLAIM;
	return http_format(c, "POST", path, claim, sizeof(claim) - 1) && conn_flush(c);
}

/* Reports a reply that the step did not expect. */
static bool http_unexpected(struct conn *c, const struct bench_http_resp *resp, const char *what)
{
	bench_fail("%s: %s answered %u: %.*s", c->run->title, what, resp->status,
		   (int)(resp->body_len < 300 ? resp->body_len : 300), resp->body);
	return false;
}

/* Handles the reply to a connection's HTTP request and sends the next one. */
static bool http_reply(struct conn *c, const struct bench_http_resp *resp)
{
	struct run *r = c->run;
	char id[TOKEN_CAP], path[256];
	char body[TOKEN_CAP + 32];
	size_t pos = 0;
	unsigned n = 0;

	switch (c->step) {
	case STEP_ENQUEUE:
		if (resp->status != 201)
			return http_unexpected(c, resp, "enqueue");
		while (bench_json_next(resp->body, resp->body_len, &pos, "id", id, sizeof(id))) {
			if (!idset_mark(r, id, ID_ENQUEUED))
				return false;
			n++;
		}
		if (n != (r->wl == WL_BATCH ? BATCH : 1))
			return http_unexpected(c, resp, "enqueue (ids counted wrong)");
		if (r->wl != WL_CYCLE)
			return unit_done(c, n);
		return http_send_claim(c);
	case STEP_CLAIM:
		if (resp->status != 200)
			return http_unexpected(c, resp, "claim");
		if (!bench_json_next(resp->body, resp->body_len, &pos, "id", c->id,
				     sizeof(c->id))) {
			r->empty_claims++;
			return http_send_claim(c);
		}
		pos = 0;
		if (!bench_json_next(resp->body, resp->body_len, &pos, "receipt", c->receipt,
				     sizeof(c->receipt)))
			return http_unexpected(c, resp, "claim (no receipt)");
		if (bench_json_next(resp->body, resp->body_len, &pos, "receipt", id, sizeof(id)))
			return http_unexpected(c, resp, "claim of max 1 (two jobs)");
		if (!idset_mark(r, c->id, ID_CLAIMED))
			return false;
		snprintf(path, sizeof(path), "/v1/queues/%s/messages/%s/ack", r->queue, c->id);
		snprintf(body, sizeof(body), "{\"receipt\":\"%s\"}", c->receipt);
		c->step = STEP_ACK;
		return http_format(c, "POST", path, body, strlen(body)) && conn_flush(c);
	case STEP_ACK:
		if (resp->status != 204)
			return http_unexpected(c, resp, "ack");
		return idset_mark(r, c->id, ID_ACKED) && unit_done(c, 1);
	case STEP_SETUP:
		break;
	}
	return false;
}

/* Queues text[0..len) as the connection's next request, which owes replies replies answering
 * step, and starts sending it. */
static bool conn_send(struct conn *c, enum step step, unsigned replies, const char *text,
		      size_t len)
{
	memcpy(c->out, text, len);
	c->out_len = len;
	c->out_off = 0;
	c->replies = replies;
	c->step = step;
	return conn_flush(c);
}

/* Sends "put" of one job to beanstalkd. */
static bool bean_send_put(struct conn *c)
{
	char job[256], cmd[320];
	size_t len = job_body(c->run, job, sizeof(job));
	int n = snprintf(cmd, sizeof(cmd), "put 1024 0 60 %zu\r\n%s\r\n", len, job);

	return conn_send(c, STEP_ENQUEUE, 1, cmd, (size_t)n);
}

/* Sends one beanstalkd command line. */
static bool bean_send(struct conn *c, enum step step, const char *line)
{
	char cmd[TOKEN_CAP + 32];
	int n = snprintf(cmd, sizeof(cmd), "%s\r\n", line);

	return conn_send(c, step, 1, cmd, (size_t)n);
}

/* Parses one beanstalkd reply at the start of buf, NUL-terminating its line in place of the CR.
 * Returns the bytes it spans (a RESERVED reply includes its job), 0 when more are needed, -1
 * when it cannot be read. */
static long bean_parse(char *buf, size_t len)
{
	char *eol = memmem(buf, len, "\r\n", 2);
	unsigned long job_len;
	size_t need;

	if (!eol)
		return len >= 512 ? -1 : 0;
	*eol = '\0';
	need = (size_t)(eol - buf) + 2;
	if (strncmp(buf, "RESERVED ", 9) == 0) {
		if (sscanf(buf, "RESERVED %*u %lu", &job_len) != 1 || job_len > IN_CAP)
			return -1;
		need += job_len + 2;
	}
	if (len < need) {
		*eol = '\r';
		return 0;
	}
	return (long)need;
}

/* Handles one beanstalkd reply line and sends the next command. */
static bool bean_reply(struct conn *c, const char *line)
{
	struct run *r = c->run;
	char cmd[TOKEN_CAP + 16];

	switch (c->step) {
	case STEP_SETUP:
		if (strncmp(line, "USING ", 6) != 0 && strncmp(line, "WATCHING ", 9) != 0)
			break;
		return c->replies > 0 || unit_start(c);
	case STEP_ENQUEUE:
		if (strncmp(line, "INSERTED ", 9) != 0 || !idset_mark(r, line + 9, ID_ENQUEUED))
			break;
		return bean_send(c, STEP_CLAIM, "reserve-with-timeout 0");
	case STEP_CLAIM:
		if (strcmp(line, "TIMED_OUT") == 0 || strcmp(line, "DEADLINE_SOON") == 0) {
			r->empty_claims++;
			return bean_send(c, STEP_CLAIM, "reserve-with-timeout 0");
		}
		if (strncmp(line, "RESERVED ", 9) != 0 ||
		    sscanf(line + 9, "%63[0-9]", c->id) != 1 || !idset_mark(r, c->id, ID_CLAIMED))
			break;
		snprintf(cmd, sizeof(cmd), "delete %s", c->id);
		return bean_send(c, STEP_ACK, cmd);
	case STEP_ACK:
		if (strcmp(line, "DELETED") != 0 || !idset_mark(r, c->id, ID_ACKED))
			break;
		return unit_done(c, 1);
	}
	bench_fail("%s: unexpected beanstalkd reply \"%s\"", r->title, line);
	return false;
}

/* Reads what arrived and handles every complete reply in it. */
static bool conn_read(struct conn *c)
{
	struct run *r = c->run;
	ssize_t n;
	size_t off = 0;

	n = read(c->fd, c->in + c->in_len, IN_CAP - c->in_len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return true;
	if (n <= 0) {
		bench_fail("%s: the server closed a connection with a request in flight%s%s",
			   r->title, n < 0 ? ": " : "", n < 0 ? strerror(errno) : "");
		return false;
	}
	c->in_len += (size_t)n;
	while (off < c->in_len) {
		long used;

		if (c->replies == 0) {
			bench_fail("%s: the server sent bytes nobody asked for", r->title);
			return false;
		}
		if (r->proto == PROTO_HTTP) {
			struct bench_http_resp resp = {0};

			used = bench_http_parse(c->in + off, c->in_len - off, IN_CAP, &resp);
			if (used > 0 && resp.close) {
				/* The server ends keep-alive: the next request goes over a new
				 * connection (the reply stays readable in the buffer). */
				r->reconnects++;
				conn_close(c);
				c->replies--;
				return conn_open(c) && http_reply(c, &resp);
			}
			if (used > 0) {
				off += (size_t)used;
				c->replies--;
				if (!http_reply(c, &resp))
					return false;
			}
		} else {
			used = bean_parse(c->in + off, c->in_len - off);
			if (used > 0) {
				const char *line = c->in + off;

				off += (size_t)used;
				c->replies--;
				if (!bean_reply(c, line))
					return false;
			}
		}
		if (used < 0) {
			bench_fail("%s: unreadable reply: %.*s", r->title,
				   (int)(c->in_len - off < 200 ? c->in_len - off : 200),
				   c->in + off);
			return false;
		}
		if (used == 0)
			break;
	}
	memmove(c->in, c->in + off, c->in_len - off);
	c->in_len -= off;
	if (c->in_len == IN_CAP) {
		bench_fail("%s: a reply larger than %d bytes", r->title, IN_CAP);
		return false;
	}
	return true;
}

/* Starts a connection's next unit of work. */
static bool unit_start(struct conn *c)
{
	static char body[OUT_CAP]; /* one thread: each request is copied out before the next */
	struct run *r = c->run;
	char path[256];
	size_t len = 0;

	c->unit_ns = bench_now_ns();
	if (r->proto == PROTO_BEANSTALK)
		return bean_send_put(c);
	if (r->wl == WL_BATCH) {
		len = (size_t)snprintf(body, OUT_CAP, "{\"messages\":[");
		for (unsigned i = 0; i < BATCH; i++) {
			len += (size_t)snprintf(body + len, OUT_CAP - len,
						"%s{\"body\":", i ? "," : "");
			len += job_body(r, body + len, OUT_CAP - len - 4);
			body[len++] = '}';
		}
		len += (size_t)snprintf(body + len, OUT_CAP - len, "]}");
	} else {
		len = job_body(r, body, OUT_CAP);
	}
	snprintf(path, sizeof(path), "/v1/queues/%s/messages", r->queue);
	c->step = STEP_ENQUEUE;
	return http_format(c, "POST", path, body, len) && conn_flush(c);
}

/* Reads imapqd's journal fdatasync count and seconds from /metrics into slot i of r. */
static void run_sample_fsyncs(struct run *r, int i)
{
	static char body[256 * 1024];
	const char *count, *sum;

	if (r->proto != PROTO_HTTP || r->wl != WL_CYCLE)
		return;
	if (bench_http_call(r->port, r->token, "GET", "/metrics", "", body, sizeof(body)) != 200 ||
	    !(count = strstr(body, "\nimapq_journal_fsync_seconds_count ")) ||
	    !(sum = strstr(body, "\nimapq_journal_fsync_seconds_sum "))) {
		r->fsyncs_ok = false;
		return;
	}
	r->fsyncs[i] = strtod(strchr(count + 1, ' '), NULL);
	r->fsync_s[i] = strtod(strchr(sum + 1, ' '), NULL);
	r->fsyncs_ok = i == 0 || r->fsyncs_ok;
}

/* Samples the CPU clocks (and imapqd's syncs) as the window opens and closes. */
static void run_sample_cpu(struct run *r, uint64_t now)
{
	if (!r->cpu_started && now >= r->warm_end) {
		r->cpu_started = true;
		r->client_cpu[0] = bench_cpu_self();
		r->server_cpu[0] = bench_cpu_process(r->server);
		run_sample_fsyncs(r, 0);
	}
	if (!r->cpu_ended && now >= r->end) {
		r->cpu_ended = true;
		r->client_cpu[1] = bench_cpu_self();
		r->server_cpu[1] = bench_cpu_process(r->server);
		run_sample_fsyncs(r, 1);
	}
}

/* Runs one phase: opens the connections, keeps every one busy until the window ends, then waits
 * for the units in flight. False on a functional failure (already reported). */
static bool run_phase(struct run *r)
{
	struct epoll_event evs[64];
	bool ok = true;

	r->epfd = epoll_create1(EPOLL_CLOEXEC);
	r->conns = calloc(n_clients, sizeof(*r->conns));
	if (r->epfd < 0 || !r->conns) {
		bench_fail("%s: cannot set up the client", r->title);
		ok = false;
		goto out;
	}
	for (r->n_conns = 0; r->n_conns < n_clients; r->n_conns++) {
		struct conn *c = malloc(sizeof(*c));

		if (!c) {
			bench_fail("%s: out of memory", r->title);
			ok = false;
			goto out;
		}
		memset(c, 0, offsetof(struct conn, out));
		c->run = r;
		c->fd = -1;
		r->conns[r->n_conns] = c;
		if (!conn_open(c)) {
			ok = false;
			r->n_conns++;
			goto out;
		}
	}
	r->t0 = bench_now_ns();
	r->warm_end = r->t0 + (uint64_t)(WARM_S * 1e9);
	r->end = r->warm_end + (uint64_t)(measure_s * 1e9);
	for (unsigned i = 0; i < r->n_conns && ok; i++) {
		struct conn *c = r->conns[i];

		r->busy++;
		if (r->proto == PROTO_BEANSTALK) {
			static const char setup[] =
			    "use " TUBE "\r\nwatch " TUBE "\r\nignore default\r\n";

			ok = conn_send(c, STEP_SETUP, 3, setup, sizeof(setup) - 1);
		} else {
			ok = unit_start(c);
		}
	}
	while (ok) {
		uint64_t now = bench_now_ns();
		int n;

		run_sample_cpu(r, now);
		if (now >= r->end && r->busy == 0)
			break;
		if (now >= r->end + (uint64_t)(DRAIN_S * 1e9)) {
			bench_fail(
			    "%s: %u connections still waited for replies %.0f s after the end",
			    r->title, r->busy, DRAIN_S);
			ok = false;
			break;
		}
		n = epoll_wait(r->epfd, evs, 64, 20);
		for (int i = 0; i < n && ok; i++) {
			struct conn *c = evs[i].data.ptr;

			if (evs[i].events & EPOLLOUT)
				ok = conn_flush(c);
			if (ok && evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
				ok = conn_read(c);
		}
	}
	if (ok && r->wl == WL_CYCLE)
		ok = idset_check_cycles(r);
out:
	for (unsigned i = 0; i < r->n_conns; i++) {
		conn_close(r->conns[i]);
		free(r->conns[i]);
	}
	free(r->conns);
	r->conns = NULL;
	if (r->epfd >= 0)
		close(r->epfd);
	return ok;
}

/* Frees what a phase collected. */
static void run_free(struct run *r)
{
	free(r->lat.v);
	free(r->ids.bits);
	r->lat.v = NULL;
	r->ids.bits = NULL;
}

/* Prints a phase's table rows: rate, latencies, CPU, and the oddities met. */
static void run_print(struct run *r, const char *unit)
{
	double rate = (double)r->jobs / measure_s;
	double client = r->client_cpu[1] - r->client_cpu[0];
	double server = r->server_cpu[1] - r->server_cpu[0];
	char note[96];

	snprintf(note, sizeof(note), "%llu %s in %.1f s", (unsigned long long)r->units,
		 r->wl == WL_CYCLE ? "cycles" : "requests", measure_s);
	bench_row(r->title, rate, 0, unit, note);
	bench_row("  latency p50", bench_percentile(r->lat.v, r->lat.n, 50), 2, "ms", NULL);
	bench_row("  latency p99", bench_percentile(r->lat.v, r->lat.n, 99), 2, "ms", NULL);
	bench_row("  client CPU", 100 * client / measure_s, 0, "%", "of one core");
	bench_row("  server CPU", 100 * server / measure_s, 0, "%", "of one core");
	if (r->fsyncs_ok && r->fsyncs[1] > r->fsyncs[0] && r->units > 0) {
		double n = r->fsyncs[1] - r->fsyncs[0];

		bench_row("  journal fdatasync per cycle", n / (double)r->units, 2, "",
			  "3 durable requests per cycle");
		bench_row("  journal fdatasync mean", 1000 * (r->fsync_s[1] - r->fsync_s[0]) / n, 3,
			  "ms", NULL);
	}
	if (r->empty_claims)
		bench_row("  empty claims (retried)", (double)r->empty_claims, 0, "", NULL);
	if (r->reconnects)
		bench_row("  reconnects (Connection: close)", (double)r->reconnects, 0, "", NULL);
}

/* --- Daemons --- */

/* Starts the server's program, its output going to s->log. */
static bool server_spawn(struct server *s, char *const argv[])
{
	s->pid = bench_proc_spawn(argv, s->log);
	if (s->pid < 0)
		bench_fail("%s: fork: %s", s->name, strerror(errno));
	return s->pid > 0;
}

/* Stops the server with SIGTERM. False when it had to be killed, or when want_clean_exit and it
 * did not exit with status 0 (beanstalkd dies of the signal: that is its normal way out). */
static bool server_stop(struct server *s, bool want_clean_exit)
{
	int status;

	if (bench_proc_stop(&s->pid, STOP_S, &status) != 0) {
		bench_fail("%s did not exit within %.0f s of SIGTERM", s->name, STOP_S);
		return false;
	}
	if (want_clean_exit && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
		bench_fail("%s exited with %s %d after SIGTERM (log: %s)", s->name,
			   WIFEXITED(status) ? "status" : "signal",
			   WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), s->log);
		return false;
	}
	return true;
}

/* Starts imapqd on ephemeral ports in a scratch folder and waits for its port file; reads the
 * HTTP port and the bearer token. */
static bool imapqd_start(struct server *s, const char *bin)
{
	char data[PATH_MAX + 8], ports[PATH_MAX + 8], creds[PATH_MAX + 24], port[16];
	char *argv[] = {(char *)bin, "--data",	    data,	   "--imap", "127.0.0.1:0",
			"--http",    "127.0.0.1:0", "--port-file", ports,    NULL};
	uint64_t start = bench_now_ns();
	int status;

	snprintf(data, sizeof(data), "%s/data", s->dir);
	snprintf(ports, sizeof(ports), "%s/ports", s->dir);
	snprintf(creds, sizeof(creds), "%s/credentials", data);
	snprintf(s->log, sizeof(s->log), "%s/imapqd.log", s->dir);
	if (!server_spawn(s, argv))
		return false;
	while (bench_file_value(ports, "http", port, sizeof(port))) {
		if (bench_proc_exited(&s->pid, &status)) {
			bench_fail("imapqd exited before serving (log: %s)", s->log);
			return false;
		}
		if (access(ports, F_OK) == 0) {
			bench_fail("imapqd's port file has no http= line: no HTTP front");
			return false;
		}
		if (bench_since_s(start) > START_S) {
			bench_fail("imapqd did not write %s within %.0f s", ports, START_S);
			return false;
		}
		usleep(10000);
	}
	s->port = (unsigned)strtoul(port, NULL, 10);
	if (bench_file_value(creds, "token", s->token, sizeof(s->token))) {
		bench_fail("no token= line in %s", creds);
		return false;
	}
	return true;
}

/* Starts beanstalkd with a binlog in the scratch folder, fsyncing every write, and waits until
 * it accepts connections; tries a few ports in case another process takes the one picked. */
static bool beanstalkd_start(struct server *s, const char *bin)
{
	char binlog[PATH_MAX + 8], port[16];
	char *argv[] = {(char *)bin, "-l", "127.0.0.1", "-p", port, "-b", binlog, "-f", "0", NULL};
	int status;

	snprintf(binlog, sizeof(binlog), "%s/binlog", s->dir);
	snprintf(s->log, sizeof(s->log), "%s/beanstalkd.log", s->dir);
	if (mkdir(binlog, 0700) != 0) {
		bench_fail("mkdir %s: %s", binlog, strerror(errno));
		return false;
	}
	for (int attempt = 0; attempt < 3; attempt++) {
		uint64_t start = bench_now_ns();

		s->port = bench_free_port();
		snprintf(port, sizeof(port), "%u", s->port);
		if (!server_spawn(s, argv))
			return false;
		while (!bench_proc_exited(&s->pid, &status)) {
			int fd = bench_tcp_connect(s->port);

			if (fd >= 0) {
				close(fd);
				return true;
			}
			if (bench_since_s(start) > START_S) {
				bench_fail("beanstalkd did not listen within %.0f s", START_S);
				return false;
			}
			usleep(10000);
		}
	}
	bench_fail("beanstalkd exited at start three times (log: %s)", s->log);
	return false;
}

/* --- Phases --- */

/* Creates the HTTP phases' queues. */
static bool http_setup(struct server *s)
{
	static const char *const queues[] = {Q_SINGLE, Q_BATCH, Q_CYCLE};
	char path[128], body[512];

	for (size_t i = 0; i < sizeof(queues) / sizeof(queues[0]); i++) {
		unsigned st;

		snprintf(path, sizeof(path), "/v1/queues/%s", queues[i]);
		st = bench_http_call(s->port, s->token, "PUT", path, "{}", body, sizeof(body));
		if (st != 200 && st != 201 && st != 204) {
			bench_fail("PUT %s answered %u: %s", path, st, body);
			return false;
		}
	}
	return true;
}

/* After a phase: the queue's "ready" count (when its description shows one) is what the phase
 * left behind, every acknowledged job after an enqueue phase and none after the cycles. */
static bool http_check_depth(struct server *s, struct run *r)
{
	uint64_t want = r->wl == WL_CYCLE ? 0 : r->ids.enqueued;
	char path[128], body[4096], ready[32];
	size_t pos = 0;
	unsigned st;

	snprintf(path, sizeof(path), "/v1/queues/%s", r->queue);
	st = bench_http_call(s->port, s->token, "GET", path, "", body, sizeof(body));
	if (st != 200) {
		bench_fail("GET %s answered %u: %s", path, st, body);
		return false;
	}
	if (!bench_json_next(body, strlen(body), &pos, "ready", ready, sizeof(ready)))
		return true;
	if (strtoull(ready, NULL, 10) != want) {
		bench_fail("%s: the queue should hold %llu ready jobs but says %s", r->title,
			   (unsigned long long)want, ready);
		return false;
	}
	return true;
}

/* Figures collected for the "bench:" lines. */
struct results {
	double enqueue, batch;
	double cycle[MAX_ROUNDS], bean[MAX_ROUNDS]; /* cycles/s of each round */
	unsigned cycle_rounds, bean_rounds;
	struct bench_samples lat; /* imapqd's cycle latencies, every round */
};

/* The two enqueue phases against a started imapqd. */
static bool http_enqueue_phases(struct server *s, struct results *res)
{
	struct run single = {
	    .title = "HTTP enqueue, 1 job per request", .wl = WL_SINGLE, .queue = Q_SINGLE};
	struct run batch = {
	    .title = "HTTP enqueue, 100 jobs per request", .wl = WL_BATCH, .queue = Q_BATCH};
	struct run *runs[] = {&single, &batch};
	bool ok = http_setup(s);

	for (size_t i = 0; i < 2 && ok; i++) {
		struct run *r = runs[i];

		r->proto = PROTO_HTTP;
		r->port = s->port;
		r->token = s->token;
		r->server = s->pid;
		ok = run_phase(r) && http_check_depth(s, r);
		if (ok)
			run_print(r, "jobs/s");
	}
	if (ok) {
		res->enqueue = (double)single.jobs / measure_s;
		res->batch = (double)batch.jobs / measure_s;
	}
	for (size_t i = 0; i < 2; i++)
		run_free(runs[i]);
	return ok;
}

/* One round of the cycle on imapqd: its rate and latencies go to res. */
static bool http_cycle_round(struct server *s, unsigned round, struct results *res)
{
	char title[96];
	struct run cycle = {.title = title,
			    .proto = PROTO_HTTP,
			    .wl = WL_CYCLE,
			    .queue = Q_CYCLE,
			    .port = s->port,
			    .token = s->token,
			    .server = s->pid};
	bool ok;

	snprintf(title, sizeof(title), "HTTP enqueue -> claim -> ack, round %u", round + 1);
	ok = run_phase(&cycle) && http_check_depth(s, &cycle);
	if (ok) {
		run_print(&cycle, "cycles/s");
		res->cycle[res->cycle_rounds++] = (double)cycle.jobs / measure_s;
		for (size_t i = 0; i < cycle.lat.n && ok; i++)
			ok = bench_samples_add(&res->lat, cycle.lat.v[i]) == 0;
	}
	run_free(&cycle);
	return ok;
}

/* One round of the cycle on beanstalkd. */
static bool bean_cycle_round(struct server *s, unsigned round, struct results *res)
{
	char title[96];
	struct run cycle = {.title = title,
			    .proto = PROTO_BEANSTALK,
			    .wl = WL_CYCLE,
			    .port = s->port,
			    .server = s->pid};
	bool ok;

	snprintf(title, sizeof(title), "beanstalkd put -> reserve -> delete, round %u", round + 1);
	ok = run_phase(&cycle);
	if (ok) {
		run_print(&cycle, "cycles/s");
		res->bean[res->bean_rounds++] = (double)cycle.jobs / measure_s;
	}
	run_free(&cycle);
	return ok;
}

/* Starts imapqd in its own scratch folder. */
static bool imapqd_up(struct server *s)
{
	char bin[PATH_MAX] = "";

	if (bench_build_program("IMAPQ_IMAPQD", "imapqd", bin, sizeof(bin)) != 0) {
		bench_fail("no imapqd at %s (build it, or set IMAPQ_IMAPQD)", bin);
		return false;
	}
	if (bench_dir_create(s->dir, sizeof(s->dir)) != 0) {
		bench_fail("cannot create a scratch folder: %s", strerror(errno));
		return false;
	}
	return imapqd_start(s, bin);
}

/* Starts beanstalkd in its own scratch folder; *missing when it is not installed. */
static bool beanstalkd_up(struct server *s, bool *missing)
{
	char bin[PATH_MAX];

	*missing = bench_system_program("IMAPQ_BEANSTALKD", "beanstalkd", bin, sizeof(bin)) != 0;
	if (*missing) {
		printf("  beanstalkd is not installed (make bench-deps installs it, or set "
		       "IMAPQ_BEANSTALKD): skipping the peer figures\n");
		return true;
	}
	if (bench_dir_create(s->dir, sizeof(s->dir)) != 0) {
		bench_fail("cannot create a scratch folder: %s", strerror(errno));
		return false;
	}
	return beanstalkd_start(s, bin);
}

/* Stops imapqd, which must exit 0; keeps its folder when anything failed. */
static bool imapqd_down(struct server *s, bool ok)
{
	if (s->pid > 0)
		ok = server_stop(s, true) && ok;
	if (ok)
		bench_dir_remove(s->dir);
	else if (s->dir[0] != '\0')
		fprintf(stderr, "bench_http: kept %s for inspection\n", s->dir);
	return ok;
}

/* Prints the rounds side by side with their ratios. */
static void print_rounds(const struct results *res)
{
	char label[64], note[96];

	bench_section("cycles by round (imapqd and beanstalkd alternate)");
	for (unsigned i = 0; i < res->cycle_rounds; i++) {
		snprintf(label, sizeof(label), "  round %u: imapqd / beanstalkd", i + 1);
		if (i < res->bean_rounds && res->bean[i] > 0) {
			snprintf(note, sizeof(note), "%.0f / %.0f cycles/s", res->cycle[i],
				 res->bean[i]);
			bench_row(label, res->cycle[i] / res->bean[i], 2, "x", note);
		} else {
			bench_row(label, res->cycle[i], 0, "cycles/s", NULL);
		}
	}
}

int main(void)
{
	struct results res = {0};
	struct server imapqd = {.name = "imapqd", .pid = -1};
	struct server bean = {.name = "beanstalkd", .pid = -1};
	double cycle = 0, bean_rate = 0;
	unsigned rounds;
	bool ok, bean_missing = true;

	signal(SIGPIPE, SIG_IGN);
	n_clients = (unsigned)bench_env_number("IMAPQ_BENCH_HTTP_CLIENTS", CLIENTS, MAX_CLIENTS);
	measure_s = bench_env_number("IMAPQ_BENCH_HTTP_SECONDS", MEASURE_S, 600);
	rounds = (unsigned)bench_env_number("IMAPQ_BENCH_HTTP_ROUNDS", ROUNDS, MAX_ROUNDS);
	if (rounds == 0)
		rounds = 1;
	printf("HTTP benchmark: %u keep-alive connections from one epoll thread, %.0f s warm-up, "
	       "%.1f s measured per phase, %u cycle rounds per server\n",
	       n_clients, WARM_S, measure_s, rounds);

	bench_section("imapqd HTTP/JSON front (--fsync always): enqueues");
	ok = imapqd_up(&imapqd) && http_enqueue_phases(&imapqd, &res);
	bench_section("beanstalkd (-f 0: fsync after every write)");
	ok = ok && beanstalkd_up(&bean, &bean_missing);
	/* The rounds alternate, so a slow spell of a shared machine touches both servers. */
	for (unsigned i = 0; i < rounds && ok; i++) {
		bench_section("the enqueue -> claim -> ack cycle");
		ok = http_cycle_round(&imapqd, i, &res);
		if (ok && !bean_missing)
			ok = bean_cycle_round(&bean, i, &res);
	}
	if (bean.pid > 0)
		server_stop(&bean, false);
	if (bean.dir[0] != '\0')
		bench_dir_remove(bean.dir);
	ok = imapqd_down(&imapqd, ok);
	if (ok)
		print_rounds(&res);

	printf("\n");
	if (ok) {
		cycle = bench_median(res.cycle, res.cycle_rounds);
		bench_figure("http.enqueue_per_s", res.enqueue, 0, "jobs/s");
		bench_figure("http.enqueue_batch100_per_s", res.batch, 0, "jobs/s");
		bench_figure("http.cycle_per_s", cycle, 0, "cycles/s");
		bench_figure("http.cycle_p50_ms", bench_percentile(res.lat.v, res.lat.n, 50), 2,
			     "ms");
		bench_figure("http.cycle_p99_ms", bench_percentile(res.lat.v, res.lat.n, 99), 2,
			     "ms");
	}
	if (ok && res.bean_rounds > 0) {
		bean_rate = bench_median(res.bean, res.bean_rounds);
		bench_figure("beanstalkd.cycle_per_s", bean_rate, 0, "cycles/s");
		if (bean_rate > 0)
			bench_figure("http.cycle_ratio_vs_beanstalkd", cycle / bean_rate, 2, "x");
	}
	bench_samples_free(&res.lat);
	return ok ? 0 : 1;
}
