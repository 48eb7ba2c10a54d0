/* The service's thread: turns the changes the store's hook noted into lease and delay timers,
 * releases jobs whose lease ran out (a conditional store against the mod-sequence recorded with
 * the lease, so an ack or renewal that landed first wins), ends delays, dead-letters jobs past
 * max_attempts, wakes waiters when a job becomes ready, and removes dead letters past the
 * queue's retention. */
#include <stdlib.h>

#include "imap/base/log.h"
#include "imap/base/vec.h"
#include "queue/queue-private.h"

static void on_wake(void *arg);

/* Arms the loop timer for the timer due first (or disarms it when there is none). */
static void arm(struct queue_service *qs)
{
	struct queue_timer *t = queue_timer_set_first(&qs->timers);
	if (t == NULL) {
		loop_timer_cancel(&qs->wake_timer);
		return;
	}
	uint64_t at = (uint64_t)t->due * 1000;
	if (qs->wake_timer != NULL && qs->wake_at_ms == at)
		return;
	loop_timer_cancel(&qs->wake_timer);
	uint64_t now = queue_now_ms();
	if (loop_timer_add(qs->loop, at > now ? at - now : 0, on_wake, qs, &qs->wake_timer) !=
	    IMAPQ_OK) {
		/* The sweep re-arms within a minute. */
		log_error(QUEUE_LOG, "out of memory arming the lease timer");
		qs->wake_timer = NULL;
	}
	qs->wake_at_ms = at;
}

/* The keyword bits of queue id (0 for one not defined), resolving it when the cache lacks
 * them; false when the mailbox is gone. */
static bool ref_of(struct queue_service *qs, uint32_t id, struct queue_ref *ref_r)
{
	pthread_mutex_lock(&qs->mu);
	struct queue_box *box = queue_box_find(qs, id);
	bool known = box != NULL && !box->dead && box->claimed != 0 && box->delayed != 0;
	if (known)
		*ref_r = (struct queue_ref){.id = id,
					    .uidvalidity = box->uidvalidity,
					    .claimed = box->claimed,
					    .delayed = box->delayed};
	pthread_mutex_unlock(&qs->mu);
	if (known)
		return true;
	return queue_box_resolve(qs, id, false, ref_r) == IMAPQ_OK;
}

/* Puts a timer back after an action failed for a reason other than a lost race. */
static void retry_later(struct queue_service *qs, const struct queue_timer *t, imapq_err err)
{
	log_warn(QUEUE_LOG, "mailbox %u uid %u: timer action failed (%s); retrying", t->box, t->uid,
		 imapq_err_message(err));
	if (!queue_timer_set_put(&qs->timers, t->box, t->uid, queue_due_in(QUEUE_RETRY_S),
				 t->claimed, t->released, t->modseq))
		log_error(QUEUE_LOG, "out of memory: mailbox %u uid %u loses its timer", t->box,
			  t->uid);
}

/* A lease ran out: releases the job, or dead-letters it once it has used max_attempts. */
static void expire_lease(struct queue_service *qs, const struct queue_timer *t)
{
	struct store_message m;
	struct store_mailbox_status st;
	struct queue_ref ref;
	if (store_message_get(qs->store, t->box, t->uid, &m) != IMAPQ_OK ||
	    store_mailbox_status(qs->store, t->box, &st) != IMAPQ_OK || !ref_of(qs, t->box, &ref))
		return;
	/* A newer change (ack, renewal, another claim) has its own event and timer. */
	if (m.modseq != t->modseq || ref.claimed == 0 || !(m.flags & ref.claimed) ||
	    (m.flags & STORE_DELETED))
		return;
	uint64_t lsn;
	imapq_err err = IMAPQ_OK;
	bool release = m.attempts < st.max_attempts;
	if (!release) {
		err = queue_dead_letter(qs, &ref, t->uid, t->modseq, &lsn);
		release = err == IMAPQ_E_TOOBIG;
		if (err == IMAPQ_OK) {
			if (!t->released)
				queue_count_release(qs, t->box, true);
			log_info(QUEUE_LOG, "mailbox %u job %u dead-lettered after %u attempts",
				 t->box, t->uid, m.attempts);
		} else if (err == IMAPQ_E_TOOBIG) {
			log_warn(QUEUE_LOG,
				 "mailbox %u job %u used its %u attempts, but the mailbox's name "
				 "leaves no room for a dead-letter mailbox: released instead",
				 t->box, t->uid, m.attempts);
		}
	}
	if (release) {
		struct store_update u = {.op = STORE_FLAGS_REMOVE,
					 .flags = ref.claimed,
					 .unchangedsince = &t->modseq,
					 .set_due = true,
					 .due = 0};
		struct uid_range r = {t->uid, t->uid};
		err = store_update(qs->store, t->box, &r, 1, &u, NULL, NULL, &lsn);
	}
	/* Durability comes with the next commit: if it is lost, the restart scan redoes this. */
	if (err != IMAPQ_OK && err != IMAPQ_E_MODIFIED && err != IMAPQ_E_NOTFOUND &&
	    err != IMAPQ_E_NONEXISTENT)
		retry_later(qs, t, err);
}

/* A delay ended: the job becomes ready unless it changed since. */
static void end_delay(struct queue_service *qs, const struct queue_timer *t)
{
	struct queue_ref ref;
	if (!ref_of(qs, t->box, &ref) || ref.delayed == 0)
		return;
	struct store_update u = {.op = STORE_FLAGS_REMOVE,
				 .flags = ref.delayed,
				 .unchangedsince = &t->modseq,
				 .set_due = true,
				 .due = 0};
	struct uid_range r = {t->uid, t->uid};
	uint64_t lsn;
	imapq_err err = store_update(qs->store, t->box, &r, 1, &u, NULL, NULL, &lsn);
	if (err != IMAPQ_OK && err != IMAPQ_E_NONEXISTENT)
		retry_later(qs, t, err);
}

/* The loop timer: runs every timer that is due, then re-arms. */
static void on_wake(void *arg)
{
	struct queue_service *qs = arg;
	qs->wake_timer = NULL;
	uint64_t now = queue_now_ms();
	for (;;) {
		struct queue_timer *first = queue_timer_set_first(&qs->timers);
		if (first == NULL || (uint64_t)first->due * 1000 > now ||
		    atomic_load(&qs->stopping))
			break;
		struct queue_timer t = *first;
		queue_timer_set_remove(&qs->timers, first);
		if (t.claimed)
			expire_lease(qs, &t);
		else
			end_delay(qs, &t);
	}
	arm(qs);
}

/* The due time of a claimed job that has none (copied in by IMAP COPY): one lease from now. */
static uint32_t lease_from_now(struct queue_service *qs, uint32_t id)
{
	struct store_mailbox_status st;
	uint32_t lease = STORE_DEFAULT_LEASE;
	if (store_mailbox_status(qs->store, id, &st) == IMAPQ_OK)
		lease = st.lease;
	return queue_due_in(lease);
}

/* Sets or moves the timer of a job. */
static void put_timer(struct queue_service *qs, uint32_t id, const struct store_message *m,
		      uint32_t due, bool claimed, bool released)
{
	if (!queue_timer_set_put(&qs->timers, id, m->uid, due, claimed, released, m->modseq))
		log_error(QUEUE_LOG, "out of memory: mailbox %u uid %u loses its timer", id,
			  m->uid);
}

/* A message entered a dead-letter mailbox: the sweep must run when it expires. */
static void note_dead_letter(struct queue_service *qs, uint32_t parent,
			     const struct store_message *m)
{
	struct store_mailbox_status st;
	uint32_t retention = STORE_DEFAULT_RETENTION;
	if (parent != 0 && store_mailbox_status(qs->store, parent, &st) == IMAPQ_OK)
		retention = st.retention;
	int64_t at = m->internaldate + (int64_t)retention;
	queue_sweep_schedule(qs, at > 0 ? (uint64_t)at * 1000 : 0);
}

/* Applies one message event to the timers and wakes the queue when a job became ready. */
static void handle_message(struct queue_service *qs, struct queue_event *ev)
{
	pthread_mutex_lock(&qs->mu);
	if (!ev->counted)
		ev->counted = queue_event_count(qs, ev, false);
	struct queue_box *known = queue_box_find(qs, ev->box);
	bool complete = known != NULL && (known->dead ? known->parent != 0
						      : known->claimed != 0 && known->delayed != 0);
	pthread_mutex_unlock(&qs->mu);
	if (!ev->counted || !complete) {
		/* Look again: the queue's keywords may have been defined since. */
		if (queue_box_resolve(qs, ev->box, false, NULL) != IMAPQ_OK)
			return; /* the mailbox is gone */
		pthread_mutex_lock(&qs->mu);
		if (!ev->counted)
			ev->counted = queue_event_count(qs, ev, true);
		pthread_mutex_unlock(&qs->mu);
	}
	pthread_mutex_lock(&qs->mu);
	struct queue_box *box = queue_box_find(qs, ev->box);
	bool dead = box != NULL && box->dead;
	uint32_t parent = box != NULL ? box->parent : 0;
	struct queue_ref ref = {0};
	if (box != NULL)
		ref = (struct queue_ref){.claimed = box->claimed, .delayed = box->delayed};
	pthread_mutex_unlock(&qs->mu);
	if (box == NULL)
		return;
	if (dead) {
		if (!ev->has_before && ev->has_after)
			note_dead_letter(qs, parent, &ev->after);
		return;
	}
	uint32_t uid = ev->has_after ? ev->after.uid : ev->before.uid;
	struct queue_timer *t = queue_timer_set_find(&qs->timers, ev->box, uid);
	if (!ev->has_after) {
		if (t != NULL)
			queue_timer_set_remove(&qs->timers, t);
		return;
	}
	const struct store_message *m = &ev->after;
	if (t != NULL && t->modseq > m->modseq)
		return; /* the startup scan already saw a newer state */
	if (ref.claimed != 0 && (m->flags & ref.claimed) && !(m->flags & STORE_DELETED)) {
		put_timer(qs, ev->box, m, m->due ? m->due : lease_from_now(qs, ev->box), true,
			  queue_event_is_last_release(ev, ref.claimed));
		return;
	}
	if (ref.delayed != 0 && (m->flags & ref.delayed) && !(m->flags & STORE_DELETED)) {
		put_timer(qs, ev->box, m, m->due ? m->due : queue_due_in(QUEUE_UNTIMED_DELAY_S),
			  false, false);
		return;
	}
	if (t != NULL)
		queue_timer_set_remove(&qs->timers, t);
	uint64_t mask = queue_ready_mask(&ref);
	if (!(m->flags & mask) && (!ev->has_before || (ev->before.flags & mask)))
		queue_waiters_fire(qs, ev->box);
}

/* Fires the waiters of a queue and forgets the queue when it was deleted. */
static void handle_wake(struct queue_service *qs, uint32_t id)
{
	queue_waiters_fire(qs, id);
	struct store_mailbox_status st;
	if (store_mailbox_status(qs->store, id, &st) == IMAPQ_E_NONEXISTENT) {
		pthread_mutex_lock(&qs->mu);
		queue_box_forget(qs, id);
		pthread_mutex_unlock(&qs->mu);
	}
}

void queue_timers_kick(void *arg)
{
	struct queue_service *qs = arg;
	if (loop_timer_add(qs->loop, QUEUE_DRAIN_DELAY_MS, queue_timers_drain, qs, NULL) !=
	    IMAPQ_OK)
		queue_timers_drain(qs);
}

void queue_timers_drain(void *arg)
{
	struct queue_service *qs = arg;
	pthread_mutex_lock(&qs->mu);
	struct queue_event *events = qs->pending;
	size_t n = qs->npending, cap = qs->pending_cap;
	qs->pending = qs->spare;
	qs->pending_cap = qs->spare_cap;
	qs->npending = 0;
	qs->drain_posted = false;
	pthread_mutex_unlock(&qs->mu);
	for (size_t i = 0; i < n && !atomic_load(&qs->stopping); i++) {
		if (events[i].kind == QUEUE_EV_WAKE)
			handle_wake(qs, events[i].box);
		else
			handle_message(qs, &events[i]);
	}
	if (cap > QUEUE_EVENTS_KEEP) {
		free(events);
		events = NULL;
		cap = 0;
	}
	qs->spare = events;
	qs->spare_cap = cap;
	arm(qs);
}

/* Collects mailbox ids for the startup scan. */
struct id_list {
	uint32_t *ids;
	size_t n, cap;
	bool nomem;
};

static void collect_id(void *ctx, uint32_t id, const char *name)
{
	struct id_list *l = ctx;
	(void)name;
	if (!vec_push((void **)&l->ids, &l->n, &l->cap, sizeof *l->ids, &id))
		l->nomem = true;
}

/* Schedules the claimed and delayed jobs of queue id as the store holds them now. */
static void scan_queue(struct queue_service *qs, uint32_t id, const struct queue_ref *ref)
{
	uint64_t now = queue_now_ms();
	uint32_t uid = 0;
	/* An ack or a purge that stopped between its \Deleted and its expunge: finish it. */
	struct store_mailbox_status st;
	if (ref->claimed != 0 && store_mailbox_status(qs->store, id, &st) == IMAPQ_OK &&
	    st.deleted > 0) {
		uint64_t lsn;
		store_expunge(qs->store, id, NULL, 0, NULL, NULL, &lsn);
	}
	/* Claimed jobs: a lease already past restarts from now, so holders get to finish. */
	while (ref->claimed != 0 && uid < UINT32_MAX && !atomic_load(&qs->stopping)) {
		struct store_message m;
		if (store_first_match(qs->store, id, ref->claimed, ref->claimed, uid + 1, &uid) !=
			IMAPQ_OK ||
		    uid == 0)
			break;
		if (store_message_get(qs->store, id, uid, &m) != IMAPQ_OK)
			continue;
		if (m.flags & STORE_DELETED)
			continue; /* marked since the expunge above: its ack expunges it */
		bool live = m.due != 0 && (uint64_t)m.due * 1000 > now;
		put_timer(qs, id, &m, live ? m.due : lease_from_now(qs, id), true, false);
	}
	uid = 0;
	uint64_t mask = queue_ready_mask(ref);
	while (ref->delayed != 0 && uid < UINT32_MAX && !atomic_load(&qs->stopping)) {
		struct store_message m;
		if (store_first_match(qs->store, id, mask, ref->delayed, uid + 1, &uid) !=
			IMAPQ_OK ||
		    uid == 0)
			break;
		if (store_message_get(qs->store, id, uid, &m) == IMAPQ_OK)
			put_timer(qs, id, &m, m.due ? m.due : (uint32_t)(now / 1000), false, false);
	}
}

/* Removes every dead letter past its queue's retention; schedules the next sweep. */
static void sweep(struct queue_service *qs);

static void on_sweep(void *arg)
{
	struct queue_service *qs = arg;
	qs->sweep_timer = NULL;
	sweep(qs);
	arm(qs);
}

void queue_sweep_schedule(struct queue_service *qs, uint64_t at_ms)
{
	if (qs->sweep_timer != NULL && qs->sweep_at_ms <= at_ms)
		return;
	loop_timer_cancel(&qs->sweep_timer);
	uint64_t now = queue_now_ms();
	if (loop_timer_add(qs->loop, at_ms > now ? at_ms - now : 0, on_sweep, qs,
			   &qs->sweep_timer) != IMAPQ_OK) {
		log_error(QUEUE_LOG, "out of memory scheduling the dead-letter sweep");
		qs->sweep_timer = NULL;
		return;
	}
	qs->sweep_at_ms = at_ms;
}

/* Dead letters of one mailbox that expired, and the earliest expiry of the rest. */
struct sweep_ctx {
	int64_t now, retention;
	int64_t next; /* seconds; INT64_MAX when none */
	uint32_t *uids;
	size_t n, cap;
	bool nomem;
};

static void sweep_collect(void *arg, const struct store_message *m)
{
	struct sweep_ctx *c = arg;
	int64_t expiry = m->internaldate + c->retention;
	if (expiry > c->now) {
		if (expiry < c->next)
			c->next = expiry;
	} else if (!vec_push((void **)&c->uids, &c->n, &c->cap, sizeof *c->uids, &m->uid)) {
		c->nomem = true;
	}
}

/* Deletes and expunges the given dead letters, QUEUE_BATCH at a time. */
static void sweep_remove(struct queue_service *qs, uint32_t id, const uint32_t *uids, size_t n)
{
	struct uid_range *ranges = malloc(QUEUE_BATCH * sizeof *ranges);
	if (ranges == NULL)
		return;
	for (size_t i = 0; i < n; i += QUEUE_BATCH) {
		size_t k = n - i < QUEUE_BATCH ? n - i : QUEUE_BATCH;
		size_t nr = queue_uids_to_ranges(uids + i, k, ranges);
		uint64_t lsn;
		imapq_err err = store_flags(qs->store, id, ranges, nr, STORE_FLAGS_ADD,
					    STORE_DELETED, NULL, NULL, NULL, &lsn);
		if (err == IMAPQ_OK)
			err = store_expunge(qs->store, id, ranges, nr, NULL, NULL, &lsn);
		if (err != IMAPQ_OK) {
			log_warn(QUEUE_LOG, "mailbox %u: removing expired dead letters failed: %s",
				 id, imapq_err_message(err));
			break;
		}
	}
	free(ranges);
}

static void sweep(struct queue_service *qs)
{
	struct id_list dead = {0}, parents = {0};
	pthread_mutex_lock(&qs->mu);
	for (size_t i = 0; i < qs->nboxes; i++) {
		if (!qs->boxes[i]->dead)
			continue;
		collect_id(&dead, qs->boxes[i]->id, NULL);
		collect_id(&parents, qs->boxes[i]->parent, NULL);
	}
	pthread_mutex_unlock(&qs->mu);
	uint64_t now = queue_now_ms();
	uint64_t next = now + QUEUE_SWEEP_MS;
	for (size_t i = 0; i < dead.n && i < parents.n && !atomic_load(&qs->stopping); i++) {
		struct store_mailbox_status st;
		struct sweep_ctx c = {.now = (int64_t)(now / 1000),
				      .retention = STORE_DEFAULT_RETENTION,
				      .next = INT64_MAX};
		if (parents.ids[i] != 0 &&
		    store_mailbox_status(qs->store, parents.ids[i], &st) == IMAPQ_OK)
			c.retention = st.retention;
		if (store_messages(qs->store, dead.ids[i], NULL, 0, sweep_collect, &c) == IMAPQ_OK)
			sweep_remove(qs, dead.ids[i], c.uids, c.n);
		if (c.nomem)
			next = now + 1000; /* come back for the rest */
		if (c.next != INT64_MAX && (uint64_t)c.next * 1000 < next)
			next = (uint64_t)c.next * 1000;
		free(c.uids);
	}
	free(dead.ids);
	free(parents.ids);
	queue_sweep_schedule(qs, next);
}

void queue_timers_start(struct queue_service *qs)
{
	struct id_list l = {0};
	store_mailbox_list(qs->store, collect_id, &l);
	if (l.nomem)
		log_error(QUEUE_LOG,
			  "out of memory listing mailboxes: some leases are not watched");
	for (size_t i = 0; i < l.n && !atomic_load(&qs->stopping); i++) {
		struct queue_ref ref;
		/* Keywords are looked up, not defined: a mailbox never used as a queue stays as
		 * it is, and one without them holds no claimed or delayed job. */
		if (queue_box_resolve(qs, l.ids[i], false, &ref) == IMAPQ_OK)
			scan_queue(qs, l.ids[i], &ref);
	}
	free(l.ids);
	sweep(qs);
	arm(qs);
}

void queue_timers_free(struct queue_service *qs)
{
	loop_timer_cancel(&qs->wake_timer);
	loop_timer_cancel(&qs->sweep_timer);
	queue_timer_set_free(&qs->timers);
}
