/* Prometheus text exposition (format 0.0.4) of every queue's depths and counters. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap/base/limits.h"
#include "imap/base/vec.h"
#include "queue/queue-private.h"

/* Bytes of one line: an escaped queue name and room for the longest metric name and value. */
#define QUEUE_METRICS_LINE (2 * IMAPQ_MAX_MAILBOX_NAME + 128)

/* One queue's figures, read before any line is written. */
struct queue_figures {
	char name[2 * IMAPQ_MAX_MAILBOX_NAME + 1]; /* escaped for a label value */
	struct queue_stats stats;
};

struct figures {
	struct queue_figures *v;
	size_t n, cap;
	struct queue_service *qs;
};

/* Escapes a label value as the text format asks: backslash, double quote and line feed. */
static void escape_label(const char *in, char *out, size_t cap)
{
	size_t o = 0;
	for (; *in != '\0' && o + 2 < cap; in++) {
		if (*in == '\\' || *in == '"' || *in == '\n') {
			out[o++] = '\\';
			out[o++] = *in == '\n' ? 'n' : *in;
		} else {
			out[o++] = *in;
		}
	}
	out[o] = '\0';
}

static void gather(void *ctx, const char *name)
{
	struct figures *f = ctx;
	struct queue_figures q = {0};
	if (queue_stats(f->qs, name, &q.stats) != IMAPQ_OK)
		return; /* deleted meanwhile */
	escape_label(name, q.name, sizeof q.name);
	vec_push((void **)&f->v, &f->n, &f->cap, sizeof q, &q);
}

/* The metrics: name, type, help, and where each queue's value is. */
enum figure {
	F_READY,
	F_CLAIMED,
	F_DELAYED,
	F_DEAD,
	F_OLDEST,
	F_ENQUEUED,
	F_CLAIMS,
	F_ACKS,
	F_NACKS,
	F_EXPIRED,
	F_DEAD_LETTERED,
	F__COUNT
};

static const struct {
	const char *name, *type, *help;
} metrics[F__COUNT] = {
    [F_READY] = {"imapq_queue_ready", "gauge", "Jobs ready to be claimed."},
    [F_CLAIMED] = {"imapq_queue_claimed", "gauge", "Jobs held under a lease."},
    [F_DELAYED] = {"imapq_queue_delayed", "gauge", "Jobs waiting for their not-before time."},
    [F_DEAD] = {"imapq_queue_dead", "gauge", "Jobs in the dead-letter mailbox."},
    [F_OLDEST] = {"imapq_queue_oldest_ready_age_seconds", "gauge",
		  "Age of the oldest ready job (-1 when none is ready)."},
    [F_ENQUEUED] = {"imapq_queue_enqueued_total", "counter", "Jobs enqueued."},
    [F_CLAIMS] = {"imapq_queue_claims_total", "counter", "Claims (attempts) made."},
    [F_ACKS] = {"imapq_queue_acks_total", "counter", "Jobs completed."},
    [F_NACKS] = {"imapq_queue_nacks_total", "counter", "Jobs released by their workers."},
    [F_EXPIRED] = {"imapq_queue_expired_total", "counter", "Leases that ran out."},
    [F_DEAD_LETTERED] = {"imapq_queue_dead_lettered_total", "counter",
			 "Jobs moved to the dead-letter mailbox."},
};

static int64_t figure_of(const struct queue_stats *s, enum figure f)
{
	switch (f) {
	case F_READY:
		return s->ready;
	case F_CLAIMED:
		return s->claimed;
	case F_DELAYED:
		return s->delayed;
	case F_DEAD:
		return s->dead;
	case F_OLDEST:
		return s->oldest_ready_age;
	case F_ENQUEUED:
		return (int64_t)s->enqueued;
	case F_CLAIMS:
		return (int64_t)s->claims;
	case F_ACKS:
		return (int64_t)s->acks;
	case F_NACKS:
		return (int64_t)s->nacks;
	case F_EXPIRED:
		return (int64_t)s->expired;
	case F_DEAD_LETTERED:
		return (int64_t)s->dead_lettered;
	case F__COUNT:
		break;
	}
	return 0;
}

/* Hands one formatted line (snprintf's result for a buffer of QUEUE_METRICS_LINE) to fn. */
static void emit(queue_text_fn *fn, void *ctx, const char *line, int len)
{
	if (len > 0)
		fn(ctx, line,
		   (size_t)len < QUEUE_METRICS_LINE ? (size_t)len : QUEUE_METRICS_LINE - 1);
}

void queue_metrics(struct queue_service *qs, queue_text_fn *fn, void *ctx)
{
	struct figures f = {.qs = qs};
	queue_list(qs, gather, &f);
	char line[QUEUE_METRICS_LINE];
	for (int m = 0; m < F__COUNT; m++) {
		int len =
		    snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s %s\n", metrics[m].name,
			     metrics[m].help, metrics[m].name, metrics[m].type);
		emit(fn, ctx, line, len);
		for (size_t i = 0; i < f.n; i++) {
			len = snprintf(line, sizeof line, "%s{queue=\"%s\"} %" PRId64 "\n",
				       metrics[m].name, f.v[i].name,
				       figure_of(&f.v[i].stats, (enum figure)m));
			emit(fn, ctx, line, len);
		}
	}
	free(f.v);
}
