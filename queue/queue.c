/* The queue service: its lifecycle and thread, the store's message hook, the cache of mailboxes
 * (keyword bits, counters, waiters) and helpers shared by the queue layer. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "imap/base/limits.h"
#include "imap/base/log.h"
#include "imap/base/vec.h"
#include "queue/queue-private.h"

/* The service whose thread this is, so the hook can tell the service's own changes apart. */
static _Thread_local const struct queue_service *service_of_thread;

uint64_t queue_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint32_t queue_due_in(uint32_t seconds)
{
	uint64_t due = (queue_now_ms() + 999) / 1000 + seconds;
	return due > UINT32_MAX ? UINT32_MAX : (uint32_t)due;
}

imapq_err queue_finish(struct queue_service *qs, imapq_err err, uint64_t lsn, uint64_t *lsn_r)
{
	if (lsn_r != NULL) {
		*lsn_r = lsn;
		return err;
	}
	if (lsn == 0)
		return err;
	imapq_err werr = store_wait(qs->store, lsn);
	return err != IMAPQ_OK ? err : werr;
}

bool queue_name_valid(const char *name)
{
	if (name == NULL || !store_mailbox_name_valid(name))
		return false;
	size_t len = strlen(name);
	size_t slen = strlen(QUEUE_DEAD_SUFFIX);
	if (len + slen > IMAPQ_MAX_MAILBOX_NAME)
		return false;
	return !(len >= slen && strcmp(name + len - slen, QUEUE_DEAD_SUFFIX) == 0);
}

/* True when name is a dead-letter mailbox's name; *qlen_r is then the length of its queue's. */
static bool name_is_dead(const char *name, size_t *qlen_r)
{
	size_t len = strlen(name);
	size_t slen = strlen(QUEUE_DEAD_SUFFIX);
	if (len <= slen || strcmp(name + len - slen, QUEUE_DEAD_SUFFIX) != 0)
		return false;
	*qlen_r = len - slen;
	return true;
}

/* Index of the first cached box with an id at least id. Caller holds qs->mu. */
static size_t box_position(struct queue_service *qs, uint32_t id)
{
	size_t lo = 0, hi = qs->nboxes;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (qs->boxes[mid]->id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

struct queue_box *queue_box_find(struct queue_service *qs, uint32_t id)
{
	size_t i = box_position(qs, id);
	return i < qs->nboxes && qs->boxes[i]->id == id ? qs->boxes[i] : NULL;
}

/* The cache entry of id, added when missing; NULL when memory runs out. Caller holds qs->mu. */
static struct queue_box *box_get(struct queue_service *qs, uint32_t id)
{
	size_t i = box_position(qs, id);
	if (i < qs->nboxes && qs->boxes[i]->id == id)
		return qs->boxes[i];
	if (!vec_grow((void **)&qs->boxes, qs->nboxes, &qs->boxes_cap, sizeof *qs->boxes))
		return NULL;
	struct queue_box *box = calloc(1, sizeof *box);
	if (box == NULL)
		return NULL;
	box->id = id;
	memmove(&qs->boxes[i + 1], &qs->boxes[i], (qs->nboxes - i) * sizeof *qs->boxes);
	qs->boxes[i] = box;
	qs->nboxes++;
	return box;
}

void queue_box_forget(struct queue_service *qs, uint32_t id)
{
	size_t i = box_position(qs, id);
	if (i >= qs->nboxes || qs->boxes[i]->id != id || qs->boxes[i]->waiters != NULL)
		return;
	free(qs->boxes[i]);
	memmove(&qs->boxes[i], &qs->boxes[i + 1], (qs->nboxes - i - 1) * sizeof *qs->boxes);
	qs->nboxes--;
}

/* The flag bit of keyword name in mailbox id, defined when missing and define is set; 0 when it
 * is not defined. */
static uint64_t keyword_bit(struct queue_service *qs, uint32_t id, const char *name, bool define)
{
	unsigned k;
	uint64_t lsn;
	/* A definition needs no wait: any record using it comes later in the same journal. */
	if (store_keyword(qs->store, id, name, define, &k, &lsn) != IMAPQ_OK)
		return 0;
	return STORE_KEYWORD(k);
}

imapq_err queue_box_resolve(struct queue_service *qs, uint32_t id, bool define,
			    struct queue_ref *ref_r)
{
	char name[IMAPQ_MAX_MAILBOX_NAME + 1];
	struct store_mailbox_status st;
	imapq_err err = store_mailbox_name(qs->store, id, name, sizeof name);
	if (err == IMAPQ_OK)
		err = store_mailbox_status(qs->store, id, &st);
	if (err != IMAPQ_OK)
		return err;
	size_t qlen;
	bool dead = name_is_dead(name, &qlen);
	uint32_t parent = 0;
	uint64_t claimed = 0, delayed = 0;
	if (dead) {
		name[qlen] = '\0';
		if (store_mailbox_find(qs->store, name, &parent) != IMAPQ_OK ||
		    queue_box_resolve(qs, parent, define, NULL) != IMAPQ_OK)
			parent = 0;
	} else {
		claimed = keyword_bit(qs, id, STORE_CLAIM_KEYWORD, define);
		delayed = keyword_bit(qs, id, STORE_DELAY_KEYWORD, define);
	}
	pthread_mutex_lock(&qs->mu);
	struct queue_box *box = box_get(qs, id);
	if (box != NULL) {
		box->uidvalidity = st.uidvalidity;
		box->dead = dead;
		box->parent = parent;
		if (claimed != 0)
			box->claimed = claimed;
		if (delayed != 0)
			box->delayed = delayed;
		if (ref_r != NULL)
			*ref_r = (struct queue_ref){.id = id,
						    .uidvalidity = box->uidvalidity,
						    .claimed = box->claimed,
						    .delayed = box->delayed};
	}
	pthread_mutex_unlock(&qs->mu);
	return box != NULL ? IMAPQ_OK : IMAPQ_E_NOMEM;
}

imapq_err queue_ref_get(struct queue_service *qs, const char *name, struct queue_ref *ref_r)
{
	if (!queue_name_valid(name))
		return IMAPQ_E_INVALID;
	uint32_t id;
	imapq_err err = store_mailbox_find(qs->store, name, &id);
	if (err != IMAPQ_OK)
		return IMAPQ_E_NONEXISTENT;
	pthread_mutex_lock(&qs->mu);
	struct queue_box *box = queue_box_find(qs, id);
	bool complete = box != NULL && box->claimed != 0 && box->delayed != 0;
	if (complete)
		*ref_r = (struct queue_ref){.id = id,
					    .uidvalidity = box->uidvalidity,
					    .claimed = box->claimed,
					    .delayed = box->delayed};
	pthread_mutex_unlock(&qs->mu);
	if (complete)
		return IMAPQ_OK;
	err = queue_box_resolve(qs, id, true, ref_r);
	if (err != IMAPQ_OK)
		return err;
	/* Both keywords are needed; only a mailbox full of other keywords lacks room for them. */
	return ref_r->claimed != 0 && ref_r->delayed != 0 ? IMAPQ_OK : IMAPQ_E_LIMIT;
}

imapq_err queue_dead_id(struct queue_service *qs, uint32_t id, bool create, uint32_t *dead_r,
			uint64_t *lsn_r)
{
	char name[IMAPQ_MAX_MAILBOX_NAME + 1];
	imapq_err err =
	    store_mailbox_name(qs->store, id, name, sizeof name - strlen(QUEUE_DEAD_SUFFIX));
	if (err != IMAPQ_OK)
		return err;
	strcat(name, QUEUE_DEAD_SUFFIX);
	err = store_mailbox_find(qs->store, name, dead_r);
	if (err != IMAPQ_OK && create) {
		err = store_mailbox_create(qs->store, name, dead_r, lsn_r);
		if (err == IMAPQ_E_EXISTS)
			err = store_mailbox_find(qs->store, name, dead_r);
	}
	if (err != IMAPQ_OK)
		return err == IMAPQ_E_NOTFOUND ? IMAPQ_E_NONEXISTENT : err;
	/* Cached before any move into it, so the hook counts dead letters at once. */
	return queue_box_resolve(qs, *dead_r, false, NULL);
}

imapq_err queue_dead_letter(struct queue_service *qs, const struct queue_ref *ref, uint32_t uid,
			    uint64_t modseq, uint64_t *lsn_r)
{
	uint32_t dead;
	imapq_err err = queue_dead_id(qs, ref->id, true, &dead, lsn_r);
	if (err == IMAPQ_OK)
		err = store_move_if_unchanged(qs->store, ref->id, uid, modseq, dead,
					      ref->claimed | ref->delayed | STORE_DELETED, NULL,
					      lsn_r);
	return err;
}

void queue_job_from(const struct queue_ref *ref, bool dead, const struct store_message *m,
		    struct queue_job *job_r)
{
	enum queue_state state = QUEUE_READY;
	if (dead)
		state = QUEUE_DEAD;
	else if (m->flags & ref->claimed)
		state = QUEUE_CLAIMED;
	else if (m->flags & ref->delayed)
		state = QUEUE_DELAYED;
	*job_r =
	    (struct queue_job){.id = m->uid,
			       .state = state,
			       .receipt = {.uidvalidity = ref->uidvalidity, .modseq = m->modseq},
			       .attempts = m->attempts,
			       .size = m->size,
			       .enqueued_at = m->internaldate,
			       .due = m->due};
}

size_t queue_uids_to_ranges(const uint32_t *uids, size_t n, struct uid_range *ranges)
{
	size_t nr = 0;
	for (size_t i = 0; i < n; i++) {
		if (nr > 0 && ranges[nr - 1].hi + 1 == uids[i])
			ranges[nr - 1].hi = uids[i];
		else
			ranges[nr++] = (struct uid_range){uids[i], uids[i]};
	}
	return nr;
}

bool queue_event_count(struct queue_service *qs, const struct queue_event *ev, bool fresh)
{
	struct queue_box *box = queue_box_find(qs, ev->box);
	if (box == NULL)
		return false;
	if (box->dead) {
		struct queue_box *parent = box->parent ? queue_box_find(qs, box->parent) : NULL;
		if (parent == NULL)
			return false;
		if (!ev->has_before && ev->has_after)
			parent->counters.dead_lettered++;
		return true;
	}
	/* The claim keyword may have been defined a moment ago; after a fresh look-up, a bit still
	 * unknown was not defined when the event happened. */
	if (box->claimed == 0 && !fresh)
		return false;
	struct queue_counters *c = &box->counters;
	uint64_t cl = box->claimed;
	if (!ev->has_before) {
		c->enqueued++;
	} else if (!ev->has_after) {
		if ((ev->before.flags & cl) && (ev->before.flags & STORE_DELETED))
			c->acks++;
	} else if (cl == 0) {
		return true;
	} else if (!(ev->before.flags & cl) && (ev->after.flags & cl)) {
		c->claims++;
	} else if ((ev->before.flags & cl) && !(ev->after.flags & cl) &&
		   !(ev->after.flags & STORE_DELETED)) {
		if (ev->by_timer)
			c->expired++;
		else
			c->nacks++;
	} else if (queue_event_is_last_release(ev, cl)) {
		c->nacks++;
	}
	return true;
}

bool queue_event_is_last_release(const struct queue_event *ev, uint64_t claimed)
{
	/* A renewal's due time lies at least a second past its change; this one's is the change's
	 * own second. */
	return ev->has_before && ev->has_after && (ev->before.flags & claimed) &&
	       (ev->after.flags & claimed) && !(ev->after.flags & STORE_DELETED) &&
	       ev->after.due != 0 && ev->after.due <= ev->at && ev->after.due != ev->before.due;
}

void queue_count_release(struct queue_service *qs, uint32_t id, bool expired)
{
	pthread_mutex_lock(&qs->mu);
	struct queue_box *box = queue_box_find(qs, id);
	if (box != NULL && expired)
		box->counters.expired++;
	else if (box != NULL)
		box->counters.nacks++;
	pthread_mutex_unlock(&qs->mu);
}

void queue_event_push(struct queue_service *qs, const struct queue_event *ev)
{
	if (!vec_push((void **)&qs->pending, &qs->npending, &qs->pending_cap, sizeof *ev, ev))
		log_error(QUEUE_LOG, "out of memory: a change of mailbox %u goes unnoticed",
			  ev->box);
	if (!qs->drain_posted && loop_post(qs->loop, queue_timers_kick, qs) == IMAPQ_OK)
		qs->drain_posted = true;
}

/* The store's message hook: counts and notes the change, nothing more (the store's mutex is
 * held). */
static void message_hook(void *arg, uint32_t id, const struct store_message *before,
			 const struct store_message *after)
{
	struct queue_service *qs = arg;
	struct queue_event ev = {.kind = QUEUE_EV_MESSAGE,
				 .box = id,
				 .has_before = before != NULL,
				 .has_after = after != NULL,
				 .by_timer = service_of_thread == qs,
				 .at = (uint32_t)(queue_now_ms() / 1000)};
	if (before != NULL)
		ev.before = *before;
	if (after != NULL)
		ev.after = *after;
	pthread_mutex_lock(&qs->mu);
	ev.counted = queue_event_count(qs, &ev, false);
	queue_event_push(qs, &ev);
	pthread_mutex_unlock(&qs->mu);
}

/* The service's thread: schedules what the store holds, then runs timers and drains. */
static void *service_main(void *arg)
{
	struct queue_service *qs = arg;
	service_of_thread = qs;
	queue_timers_start(qs);
	imapq_err err = loop_run(qs->loop);
	if (err != IMAPQ_OK)
		log_error(QUEUE_LOG, "timer loop stopped: %s", imapq_err_message(err));
	return NULL;
}

imapq_err queue_service_create(const struct queue_options *opts, struct queue_service **qs_r)
{
	if (opts == NULL || opts->store == NULL)
		return IMAPQ_E_INVALID;
	struct queue_service *qs = calloc(1, sizeof *qs);
	if (qs == NULL)
		return IMAPQ_E_NOMEM;
	qs->store = opts->store;
	pthread_mutex_init(&qs->mu, NULL);
	pthread_cond_init(&qs->fired, NULL);
	imapq_err err = loop_create(&qs->loop);
	if (err != IMAPQ_OK) {
		queue_service_destroy(&qs);
		return err;
	}
	store_set_message_hook(qs->store, message_hook, qs);
	if (pthread_create(&qs->thread, NULL, service_main, qs) != 0) {
		queue_service_destroy(&qs);
		return IMAPQ_E_NOMEM;
	}
	qs->thread_started = true;
	*qs_r = qs;
	return IMAPQ_OK;
}

void queue_service_destroy(struct queue_service **qsp)
{
	struct queue_service *qs = *qsp;
	if (qs == NULL)
		return;
	*qsp = NULL;
	store_set_message_hook(qs->store, NULL, NULL);
	atomic_store(&qs->stopping, true);
	if (qs->thread_started) {
		loop_stop(qs->loop);
		pthread_join(qs->thread, NULL);
	}
	queue_timers_free(qs);
	loop_destroy(&qs->loop);
	for (size_t i = 0; i < qs->nboxes; i++) {
		/* Waiters belong to their callers, who cancel them before destroying the service.
		 */
		for (struct queue_waiter *w = qs->boxes[i]->waiters; w != NULL; w = w->next)
			w->head = NULL;
		free(qs->boxes[i]);
	}
	free(qs->boxes);
	free(qs->pending);
	free(qs->spare);
	pthread_cond_destroy(&qs->fired);
	pthread_mutex_destroy(&qs->mu);
	free(qs);
}
