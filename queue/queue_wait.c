/* Waiters for long polls: registered per queue, fired once (and forgotten) from the service's
 * thread when a job of the queue may have become ready, never under the store's mutex. */
#include <stdlib.h>

#include "queue/queue-private.h"

/* Links w at the front of *head. Caller holds qs->mu. */
static void link_waiter(struct queue_waiter **head, struct queue_waiter *w)
{
	w->head = head;
	w->prev = NULL;
	w->next = *head;
	if (*head != NULL)
		(*head)->prev = w;
	*head = w;
}

/* Unlinks w from the list it is in. Caller holds qs->mu. */
static void unlink_waiter(struct queue_waiter *w)
{
	if (w->prev != NULL)
		w->prev->next = w->next;
	else
		*w->head = w->next;
	if (w->next != NULL)
		w->next->prev = w->prev;
	w->head = NULL;
	w->prev = w->next = NULL;
}

imapq_err queue_wait(struct queue_service *qs, const char *name, queue_wake_fn *fn, void *arg,
		     struct queue_waiter **waiter_r)
{
	if (fn == NULL)
		return IMAPQ_E_INVALID;
	struct queue_ref ref;
	imapq_err err = queue_ref_get(qs, name, &ref);
	if (err != IMAPQ_OK)
		return err;
	struct queue_waiter *w = calloc(1, sizeof *w);
	if (w == NULL)
		return IMAPQ_E_NOMEM;
	*w = (struct queue_waiter){.box = ref.id, .fn = fn, .arg = arg};
	pthread_mutex_lock(&qs->mu);
	struct queue_box *box = queue_box_find(qs, ref.id);
	if (box != NULL)
		link_waiter(&box->waiters, w);
	pthread_mutex_unlock(&qs->mu);
	if (box == NULL) {
		free(w); /* deleted a moment ago */
		return IMAPQ_E_NONEXISTENT;
	}
	/* A job that became ready between the caller's empty claim and now must not be missed. */
	uint32_t uid = 0;
	if (store_first_match(qs->store, ref.id, queue_ready_mask(&ref), 0, 1, &uid) != IMAPQ_OK ||
	    uid != 0) {
		struct queue_event ev = {.kind = QUEUE_EV_WAKE, .box = ref.id};
		pthread_mutex_lock(&qs->mu);
		queue_event_push(qs, &ev);
		pthread_mutex_unlock(&qs->mu);
	}
	*waiter_r = w;
	return IMAPQ_OK;
}

void queue_wait_cancel(struct queue_service *qs, struct queue_waiter **waiterp)
{
	struct queue_waiter *w = *waiterp;
	if (w == NULL)
		return;
	*waiterp = NULL;
	pthread_mutex_lock(&qs->mu);
	if (w->head != NULL)
		unlink_waiter(w);
	if (w->firing && pthread_equal(pthread_self(), qs->thread)) {
		/* Cancelled from inside its own fn: the firing loop frees it when fn returns. */
		w->cancelled = true;
		pthread_mutex_unlock(&qs->mu);
		return;
	}
	while (w->firing)
		pthread_cond_wait(&qs->fired, &qs->mu);
	pthread_mutex_unlock(&qs->mu);
	free(w);
}

void queue_waiters_fire(struct queue_service *qs, uint32_t id)
{
	pthread_mutex_lock(&qs->mu);
	struct queue_box *box = queue_box_find(qs, id);
	if (box == NULL || box->waiters == NULL) {
		pthread_mutex_unlock(&qs->mu);
		return;
	}
	/* Detach them all first: a waiter registered by a fn waits for the next change. */
	while (box->waiters != NULL) {
		struct queue_waiter *w = box->waiters;
		unlink_waiter(w);
		link_waiter(&qs->firing, w);
	}
	while (qs->firing != NULL) {
		struct queue_waiter *w = qs->firing;
		unlink_waiter(w);
		w->firing = true;
		pthread_mutex_unlock(&qs->mu);
		w->fn(w->arg);
		pthread_mutex_lock(&qs->mu);
		w->firing = false;
		if (w->cancelled)
			free(w);
		else
			pthread_cond_broadcast(&qs->fired);
	}
	pthread_mutex_unlock(&qs->mu);
}
