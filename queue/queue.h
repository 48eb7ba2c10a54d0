/* Queue semantics on top of the engine: a queue is a mailbox, a job is a message, its UID is the
 * job id, claims are conditional stores of $Claimed (the engine counts the attempt and sets the
 * lease atomically), acks are conditional \Deleted + expunge, and dead letters live in
 * "<queue>/dead". Everything goes through the store's operations, the same ones an IMAP session
 * uses, so an HTTP claim and an IMAP claim contend through one UNCHANGEDSINCE check.
 *
 * The service runs one thread of its own for timers: lease expiry (a conditional store against
 * the receipt the job was claimed with, so an ack or renewal that lands first always wins),
 * delays, and dead-lettering past max_attempts. All functions are thread-safe. Mutating calls
 * set *lsn_r; the caller waits for it (store_wait) before reporting success, or passes NULL to
 * have the call wait itself. */
#ifndef IMAPQ_QUEUE_H
#define IMAPQ_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap/base/error.h"
#include "imap/store/store.h"

/* The mailbox holding a queue's dead letters is "<queue>" QUEUE_DEAD_SUFFIX. */
#define QUEUE_DEAD_SUFFIX "/dead"

struct queue_service;

/* A job's place in its queue. */
enum queue_state {
	QUEUE_READY,   /* claimable: neither claimed, delayed nor deleted */
	QUEUE_CLAIMED, /* held under a lease */
	QUEUE_DELAYED, /* waiting for its not-before time */
	QUEUE_DEAD,    /* in the dead-letter mailbox */
};

/* A claim's receipt: the message's mod-sequence after the claim (or last extension), with the
 * queue's UIDVALIDITY so that a receipt from a deleted and recreated queue never matches. Over
 * HTTP it travels as the string "<uidvalidity>-<modseq>". */
struct queue_receipt {
	uint32_t uidvalidity;
	uint64_t modseq;
};

struct queue_job {
	uint32_t id; /* the UID */
	enum queue_state state;
	struct queue_receipt receipt; /* current mod-sequence; a receipt when claimed */
	uint32_t attempts;
	uint32_t size;	     /* message bytes */
	int64_t enqueued_at; /* internal date, seconds since the epoch */
	uint32_t due;	     /* lease end (claimed) or not-before (delayed), 0 for none */
};

struct queue_settings {
	uint32_t lease;	       /* seconds a claim lasts unless extended */
	uint32_t max_attempts; /* claims before a failing job is dead-lettered */
	uint32_t retention;    /* seconds dead letters are kept */
	uint32_t max_messages; /* jobs the queue may hold (STORE_SETTING_MAX_MESSAGES); reads give
				  the effective limit, the store's default while unset */
};

struct queue_stats {
	uint32_t ready, claimed, delayed, dead;
	uint32_t messages; /* every message of the queue's mailbox: what max_messages limits */
	int64_t oldest_ready_age; /* seconds; -1 when nothing is ready */
	uint64_t highestmodseq;
	/* Since the daemon started. */
	uint64_t enqueued, claims, acks, nacks, expired, dead_lettered;
};

struct queue_options {
	struct store *store;
};

imapq_err queue_service_create(const struct queue_options *opts, struct queue_service **qs_r);
/* Stops the timer thread and frees the service (the store stays open). */
void queue_service_destroy(struct queue_service **qs);

/* True when name is a valid queue name (a valid mailbox name not ending in QUEUE_DEAD_SUFFIX). */
bool queue_name_valid(const char *name);

/* --- Queues --- */

/* Creates the queue and its dead-letter mailbox; settings may be NULL for the defaults. */
imapq_err queue_create(struct queue_service *qs, const char *name,
		       const struct queue_settings *settings, uint64_t *lsn_r);
/* Deletes the queue, its dead letters and every job. */
imapq_err queue_delete(struct queue_service *qs, const char *name, uint64_t *lsn_r);
/* Removes every job that is not claimed (claimed jobs finish or expire). *removed_r may be NULL. */
imapq_err queue_purge(struct queue_service *qs, const char *name, uint32_t *removed_r,
		      uint64_t *lsn_r);
imapq_err queue_settings_get(struct queue_service *qs, const char *name,
			     struct queue_settings *settings_r);
/* Changes the settings (fields left 0 keep their value). */
imapq_err queue_settings_set(struct queue_service *qs, const char *name,
			     const struct queue_settings *settings, uint64_t *lsn_r);
imapq_err queue_stats(struct queue_service *qs, const char *name, struct queue_stats *stats_r);
typedef void queue_name_fn(void *ctx, const char *name);
/* Calls fn for every queue (mailboxes that are not dead-letter mailboxes), in name order. */
void queue_list(struct queue_service *qs, queue_name_fn *fn, void *ctx);

/* --- Jobs --- */

/* Enqueues a job whose body is payload (content_type e.g. "application/json"), available after
 * delay seconds (0: at once). The message gets Content-Type, Date and Message-ID headers.
 * IMAPQ_E_OVERQUOTA when the queue (or the store) holds as many messages as it may. */
imapq_err queue_enqueue(struct queue_service *qs, const char *name, const void *payload, size_t len,
			const char *content_type, uint32_t delay, struct queue_job *job_r,
			uint64_t *lsn_r);

/* One job of queue_enqueue_batch(). */
struct queue_new_job {
	const void *payload;
	size_t len;
	const char *content_type;
	uint32_t delay;
};
/* Enqueues jobs[0..n) as queue_enqueue() would, in order, all or none against the message
 * limits: a batch that does not fit enqueues nothing (IMAPQ_E_OVERQUOTA). A later failure leaves
 * jobs[0..*done_r) enqueued, described in jobs_r[0..*done_r) (jobs_r may be NULL). */
imapq_err queue_enqueue_batch(struct queue_service *qs, const char *name,
			      const struct queue_new_job *jobs, size_t n, struct queue_job *jobs_r,
			      size_t *done_r, uint64_t *lsn_r);

/* Claims up to max ready jobs, lowest id first, with a lease of lease seconds (0: the queue's);
 * jobs[0..*n_r) receive them with their receipts. *n_r is 0 when none is ready. */
imapq_err queue_claim(struct queue_service *qs, const char *name, uint32_t max, uint32_t lease,
		      struct queue_job *jobs, uint32_t *n_r, uint64_t *lsn_r);

/* Completes a job (conditional \Deleted against the receipt, then expunge). IMAPQ_E_MODIFIED when
 * the receipt is stale (lease lost, or the job was claimed again); IMAPQ_E_NOTFOUND when the job
 * is gone. */
imapq_err queue_ack(struct queue_service *qs, const char *name, uint32_t id,
		    struct queue_receipt receipt, uint64_t *lsn_r);
/* Releases a claimed job, ready at once or after delay seconds; dead-letters it instead when it
 * has used max_attempts. Errors as queue_ack(). */
imapq_err queue_nack(struct queue_service *qs, const char *name, uint32_t id,
		     struct queue_receipt receipt, uint32_t delay, uint64_t *lsn_r);
/* Renews the lease to lease seconds from now (0: the queue's); *receipt_r is the new receipt.
 * Errors as queue_ack(). */
imapq_err queue_extend(struct queue_service *qs, const char *name, uint32_t id,
		       struct queue_receipt receipt, uint32_t lease,
		       struct queue_receipt *receipt_r, uint64_t *lsn_r);

/* Reads a job's body: the payload after the message header (with the Content-Type that
 * queue_enqueue wrote, or of the message's own header for jobs appended over IMAP). The caller
 * frees *payload_r. */
imapq_err queue_job_payload(struct queue_service *qs, const char *name, enum queue_state state,
			    uint32_t id, char **payload_r, size_t *len_r, char *content_type,
			    size_t content_type_cap);

typedef void queue_job_fn(void *ctx, const struct queue_job *job);
/* Lists up to limit jobs in state, lowest id first, claiming nothing. */
imapq_err queue_peek(struct queue_service *qs, const char *name, enum queue_state state,
		     uint32_t limit, queue_job_fn *fn, void *ctx);
/* Moves dead letters back to the queue as new ready jobs (attempts start again): the one with
 * id, or all when id is 0. *moved_r may be NULL. */
imapq_err queue_requeue_dead(struct queue_service *qs, const char *name, uint32_t id,
			     uint32_t *moved_r, uint64_t *lsn_r);

/* Ranges of job ids the change feed reports removed. */
typedef void queue_gone_fn(void *ctx, uint32_t lo, uint32_t hi);

/* Where a page of the change feed ended (queue_changes_page). */
struct queue_changes_page {
	uint64_t highestmodseq; /* the queue's, read before the scans */
	uint64_t next;		/* the since of the following page */
	bool more;		/* jobs changed after next remain: ask again at once */
};
/* The change feed a page at a time, holding O(limit) jobs whatever the queue holds (queue_feed.c):
 * fn with the limit (>= 1) jobs changed after since that have the lowest mod-sequences, in
 * ascending mod-sequence order and current state; then gone_fn with the ids removed after since
 * and up to page_r->next (ascending ranges, a superset as for QRESYNC). next is the last job's
 * mod-sequence while more, else (at least) the queue's highest. Following next from page to page
 * reports every change once: a job that changes again later shows again with its new mod-sequence,
 * and an id removed after next is left to a later page. */
imapq_err queue_changes_page(struct queue_service *qs, const char *name, uint64_t since,
			     uint32_t limit, queue_job_fn *fn, queue_gone_fn *gone_fn, void *ctx,
			     struct queue_changes_page *page_r);

/* --- Waiting for work (long polls) --- */

struct queue_waiter;
typedef void queue_wake_fn(void *arg);
/* Calls fn once (from any thread) as soon as a job may be ready in the queue, however it got there
 * (HTTP or IMAP enqueue, release, expiry, delay end). Cancel before freeing arg. */
imapq_err queue_wait(struct queue_service *qs, const char *name, queue_wake_fn *fn, void *arg,
		     struct queue_waiter **waiter_r);
/* Forgets a waiter that has not fired (or has: then it only frees it). *waiter becomes NULL. */
void queue_wait_cancel(struct queue_service *qs, struct queue_waiter **waiter);

/* Prometheus text for every queue (depths, counters) appended to out via fn. */
typedef void queue_text_fn(void *ctx, const char *text, size_t len);
void queue_metrics(struct queue_service *qs, queue_text_fn *fn, void *ctx);

#endif
