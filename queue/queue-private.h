/* Internals shared by the files of the queue layer: the service, its cache of mailboxes, the
 * events the store's message hook records, the timer set the service's thread runs, and helpers.
 *
 * Locking: qs->mu guards the mailbox cache (boxes, their counters and waiters) and the pending
 * events. The store's message hook takes qs->mu with the store's mutex held, so nothing may call
 * the store while holding qs->mu. The timer set is touched only by the service's own thread. */
#ifndef IMAPQ_QUEUE_PRIVATE_H
#define IMAPQ_QUEUE_PRIVATE_H

#include <pthread.h>
#include <stdatomic.h>

#include "imap/base/loop.h"
#include "queue/queue.h"

/* Milliseconds events gather before the service thread handles them: bounds its wake-ups under
 * load, while long polls still wake within about a millisecond. */
#define QUEUE_DRAIN_DELAY_MS 1
/* Events a drained buffer may hold and still be kept for the next drain: the two buffers take
 * turns, so a steady load allocates nothing, while a burst's large buffer is given back. */
#define QUEUE_EVENTS_KEEP 4096
#define QUEUE_LOG	  "queue"

/* Seconds a $Delayed message without a not-before time waits before the service releases it:
 * an enqueue with a delay appends first and sets the time a moment later. */
#define QUEUE_UNTIMED_DELAY_S 5
/* Seconds before a timer action that failed for a reason other than a lost race is retried. */
#define QUEUE_RETRY_S 5
/* Milliseconds between dead-letter retention sweeps when nothing is due sooner. */
#define QUEUE_SWEEP_MS 60000u
/* Failed conditional stores one claim tolerates (each means another claimer won a job) before
 * it returns what it has. */
#define QUEUE_CLAIM_RETRIES 64
/* UIDs handled per step when purging or sweeping, bounding the RAM of one step. */
#define QUEUE_BATCH 4096
/* Longest Content-Type value accepted for an enqueue. */
#define QUEUE_MAX_CONTENT_TYPE 255
/* Bytes reserved for the headers queue_enqueue writes in front of the payload. */
#define QUEUE_HEADER_ROOM (QUEUE_MAX_CONTENT_TYPE + 256)

/* Per-queue counters since the service started. */
struct queue_counters {
	uint64_t enqueued, claims, acks, nacks, expired, dead_lettered;
};

/* What the service knows of one mailbox. The keyword bits never change once defined. */
struct queue_box {
	uint32_t id;
	uint32_t uidvalidity;
	bool dead;	  /* a dead-letter mailbox ("<queue>/dead") */
	uint32_t parent;  /* a dead-letter mailbox's queue id; 0 when that queue is unknown */
	uint64_t claimed; /* flag bit of $Claimed; 0 while undefined */
	uint64_t delayed; /* flag bit of $Delayed; 0 while undefined */
	struct queue_counters counters;
	struct queue_waiter *waiters; /* registered and not yet fired */
};

/* A long-poll registration; owned by the caller until queue_wait_cancel(). */
struct queue_waiter {
	uint32_t box;
	queue_wake_fn *fn;
	void *arg;
	struct queue_waiter **head; /* list it is linked in, NULL when in none */
	struct queue_waiter *prev, *next;
	bool firing;	/* fn is running on the service's thread */
	bool cancelled; /* cancelled from inside fn: the service's thread frees it */
};

enum queue_event_kind {
	QUEUE_EV_MESSAGE, /* a message was appended, changed or removed */
	QUEUE_EV_WAKE,	  /* fire the waiters of a queue (it may have work, or was deleted) */
};

/* One change noted by the store's message hook, handled later on the service's thread. */
struct queue_event {
	enum queue_event_kind kind;
	uint32_t box;
	bool has_before, has_after;
	bool counted;  /* the counters already include it */
	bool by_timer; /* made by the service's own thread (lease expiry and the like) */
	uint32_t at;   /* seconds since the epoch when the store made the change */
	struct store_message before, after;
};

/* A claimed or delayed job waiting for its due time. */
struct queue_timer {
	uint32_t box, uid;
	uint32_t due;	 /* seconds since the epoch */
	bool claimed;	 /* a lease end; otherwise a delay end */
	bool released;	 /* a lease the engine ended at a worker's release on the last attempt:
			    counted as a nack when it happened, so its end counts no expiry */
	uint64_t modseq; /* the job's mod-sequence when its due time was recorded */
	size_t heap_index;
	struct queue_timer *hash_next;
};

/* Timers by due time (a binary heap) and by (box, uid) (a chained hash table). */
struct queue_timer_set {
	struct queue_timer **heap;
	size_t len, cap;
	struct queue_timer **buckets;
	size_t nbuckets;
};

struct queue_service {
	struct store *store;
	struct loop *loop;
	pthread_t thread;
	bool thread_started;
	atomic_bool stopping;

	pthread_mutex_t mu;
	pthread_cond_t fired;	  /* a waiter's fn returned */
	struct queue_box **boxes; /* sorted by id */
	size_t nboxes, boxes_cap;
	struct queue_event *pending;
	size_t npending, pending_cap;
	bool drain_posted; /* a drain is posted to the loop and has not started */

	/* The service's thread only. */
	struct queue_event *spare; /* the last drain's buffer, swapped in for pending next time */
	size_t spare_cap;
	struct queue_timer_set timers;
	struct loop_timer *wake_timer;
	uint64_t wake_at_ms; /* wall-clock time the wake timer was armed for */
	struct loop_timer *sweep_timer;
	uint64_t sweep_at_ms;
	struct queue_waiter *firing; /* waiters detached for firing */
};

/* A queue as an operation sees it: a snapshot of its cache entry. */
struct queue_ref {
	uint32_t id;
	uint32_t uidvalidity;
	uint64_t claimed, delayed;
};

/* --- queue.c --- */

/* Wall-clock milliseconds since the epoch. */
uint64_t queue_now_ms(void);
/* The due time seconds from now, rounded up so that at least that many seconds pass. */
uint32_t queue_due_in(uint32_t seconds);
/* Hands lsn to the caller through lsn_r, or waits for it when lsn_r is NULL. */
imapq_err queue_finish(struct queue_service *qs, imapq_err err, uint64_t lsn, uint64_t *lsn_r);
/* Looks a queue up by name (IMAPQ_E_INVALID for a bad name, IMAPQ_E_NONEXISTENT when missing),
 * defining its keywords when needed. */
imapq_err queue_ref_get(struct queue_service *qs, const char *name, struct queue_ref *ref_r);
/* queue_ref_get(), then the queue mailbox's status into *st_r (queue_admin.c). */
imapq_err queue_ref_status(struct queue_service *qs, const char *name, struct queue_ref *ref_r,
			   struct store_mailbox_status *st_r);
/* Caches mailbox id (with define, defines a queue's keywords); fills ref_r when not NULL.
 * IMAPQ_E_NONEXISTENT when the mailbox is gone. Never call with qs->mu held. */
imapq_err queue_box_resolve(struct queue_service *qs, uint32_t id, bool define,
			    struct queue_ref *ref_r);
/* The cache entry of mailbox id or NULL. Caller holds qs->mu. */
struct queue_box *queue_box_find(struct queue_service *qs, uint32_t id);
/* Drops mailbox id from the cache when it has no waiters. Caller holds qs->mu. */
void queue_box_forget(struct queue_service *qs, uint32_t id);
/* The dead-letter mailbox of queue id, created when missing and create is set. */
imapq_err queue_dead_id(struct queue_service *qs, uint32_t id, bool create, uint32_t *dead_r,
			uint64_t *lsn_r);
/* Moves job uid of queue ref, held at modseq, into the queue's dead-letter mailbox (made when
 * missing), without the queue's keywords or \Deleted. IMAPQ_E_TOOBIG when the queue's name (a
 * mailbox made over IMAP) leaves no room for the suffix: such a queue cannot dead-letter, and
 * the callers release the job instead. */
imapq_err queue_dead_letter(struct queue_service *qs, const struct queue_ref *ref, uint32_t uid,
			    uint64_t modseq, uint64_t *lsn_r);
/* Counts a message event against its queue's counters; false when the mailbox is not cached
 * well enough yet (unknown, its claim keyword unknown, or a dead-letter mailbox of an unknown
 * queue). fresh: the cache entry was looked up after the event happened. Caller holds qs->mu. */
bool queue_event_count(struct queue_service *qs, const struct queue_event *ev, bool fresh);
/* Whether ev is a worker's release on its last attempt, which the engine turns into a lease that
 * ends at once (docs/store.md): still claimed, its due time moved to the moment of the change. */
bool queue_event_is_last_release(const struct queue_event *ev, uint64_t claimed);
/* Counts a release that dead-lettered its job (the hook sees only a move): a lease that ran
 * out when expired, else a worker's nack. */
void queue_count_release(struct queue_service *qs, uint32_t id, bool expired);
/* Adds an event for the service's thread and makes sure a drain is posted. Caller holds qs->mu. */
void queue_event_push(struct queue_service *qs, const struct queue_event *ev);
/* The ready mask: (flags & mask) == 0 means ready. */
static inline uint64_t queue_ready_mask(const struct queue_ref *ref)
{
	return STORE_DELETED | ref->claimed | ref->delayed;
}
/* A job as the API reports it, from a message of queue ref (dead for a dead letter). */
void queue_job_from(const struct queue_ref *ref, bool dead, const struct store_message *m,
		    struct queue_job *job_r);
/* Turns ascending UIDs into ranges in place of ranges (room for n); returns the range count. */
size_t queue_uids_to_ranges(const uint32_t *uids, size_t n, struct uid_range *ranges);

/* --- queue_timers.c (the service's thread) --- */

/* Runs on the service's thread: handles the pending events. */
void queue_timers_drain(void *arg);
/* On the service's thread: drains the events after QUEUE_DRAIN_DELAY_MS, so that a busy store
 * wakes the thread about once a millisecond rather than once per change. */
void queue_timers_kick(void *arg);
/* Schedules every claimed and delayed job of every queue, finishes interrupted acks, sweeps. */
void queue_timers_start(struct queue_service *qs);
/* Frees the timer set. */
void queue_timers_free(struct queue_service *qs);
/* Makes the dead-letter sweep run by wall-clock time at_ms (milliseconds) at the latest. */
void queue_sweep_schedule(struct queue_service *qs, uint64_t at_ms);

/* --- queue_timer_set.c --- */

struct queue_timer *queue_timer_set_find(struct queue_timer_set *ts, uint32_t box, uint32_t uid);
/* Adds or moves the timer of (box, uid); false when memory runs out. */
bool queue_timer_set_put(struct queue_timer_set *ts, uint32_t box, uint32_t uid, uint32_t due,
			 bool claimed, bool released, uint64_t modseq);
void queue_timer_set_remove(struct queue_timer_set *ts, struct queue_timer *t);
/* The timer due first, or NULL. */
struct queue_timer *queue_timer_set_first(const struct queue_timer_set *ts);
void queue_timer_set_free(struct queue_timer_set *ts);

/* --- queue_wait.c --- */

/* Fires (and detaches) every waiter of mailbox id; the service's thread only. */
void queue_waiters_fire(struct queue_service *qs, uint32_t id);

/* --- queue_message.c --- */

/* Builds the message of an enqueue: headers then payload. The caller frees *msg_r. */
imapq_err queue_message_build(const void *payload, size_t len, const char *content_type,
			      char **msg_r, size_t *len_r);
/* Reads message uid of mailbox id: its body after the header and its Content-Type. */
imapq_err queue_message_read(struct store *s, uint32_t id, uint32_t uid, char **payload_r,
			     size_t *len_r, char *content_type, size_t content_type_cap);

#endif
