/* Reading a queue without claiming, a job's payload and peeking at jobs by state, and bringing
 * dead letters back. The change feed is queue_feed.c. */
#include <stdlib.h>

#include "imap/base/log.h"
#include "queue/queue-private.h"

/* The mailbox holding jobs in state (the queue, or its dead letters) and its reference. */
static imapq_err state_box(struct queue_service *qs, const struct queue_ref *ref,
			   enum queue_state state, struct queue_ref *box_r)
{
	if (state != QUEUE_DEAD) {
		*box_r = *ref;
		return IMAPQ_OK;
	}
	uint32_t dead;
	imapq_err err = queue_dead_id(qs, ref->id, false, &dead, NULL);
	if (err == IMAPQ_OK)
		err = queue_box_resolve(qs, dead, false, box_r);
	return err;
}

imapq_err queue_job_payload(struct queue_service *qs, const char *name, enum queue_state state,
			    uint32_t id, char **payload_r, size_t *len_r, char *content_type,
			    size_t content_type_cap)
{
	struct queue_ref ref, box;
	imapq_err err = queue_ref_get(qs, name, &ref);
	if (err != IMAPQ_OK)
		return err;
	err = state_box(qs, &ref, state, &box);
	if (err == IMAPQ_E_NONEXISTENT)
		return IMAPQ_E_NOTFOUND; /* no dead letters were ever kept */
	if (err != IMAPQ_OK)
		return err;
	return queue_message_read(qs->store, box.id, id, payload_r, len_r, content_type,
				  content_type_cap);
}

/* The flag test (mask, want) that selects jobs in state. */
static bool state_test(const struct queue_ref *ref, enum queue_state state, uint64_t *mask_r,
		       uint64_t *want_r)
{
	switch (state) {
	case QUEUE_READY:
		*mask_r = queue_ready_mask(ref);
		*want_r = 0;
		return true;
	case QUEUE_CLAIMED:
		*mask_r = ref->claimed | STORE_DELETED;
		*want_r = ref->claimed;
		return true;
	case QUEUE_DELAYED:
		*mask_r = queue_ready_mask(ref);
		*want_r = ref->delayed;
		return true;
	case QUEUE_DEAD:
		*mask_r = STORE_DELETED;
		*want_r = 0;
		return true;
	}
	return false;
}

imapq_err queue_peek(struct queue_service *qs, const char *name, enum queue_state state,
		     uint32_t limit, queue_job_fn *fn, void *ctx)
{
	struct queue_ref ref, box;
	uint64_t mask, want;
	imapq_err err = queue_ref_get(qs, name, &ref);
	if (err != IMAPQ_OK)
		return err;
	if (!state_test(&ref, state, &mask, &want) || fn == NULL)
		return IMAPQ_E_INVALID;
	err = state_box(qs, &ref, state, &box);
	if (err == IMAPQ_E_NONEXISTENT)
		return IMAPQ_OK; /* no dead-letter mailbox: no dead letters */
	if (err != IMAPQ_OK)
		return err;
	uint32_t uid = 0;
	for (uint32_t n = 0; n < limit && uid < UINT32_MAX;) {
		err = store_first_match(qs->store, box.id, mask, want, uid + 1, &uid);
		if (err != IMAPQ_OK || uid == 0)
			break;
		struct store_message m;
		if (store_message_get(qs->store, box.id, uid, &m) != IMAPQ_OK)
			continue; /* removed meanwhile */
		struct queue_job job;
		queue_job_from(&box, state == QUEUE_DEAD, &m, &job);
		fn(ctx, &job);
		n++;
	}
	return err;
}

/* Reads of a dead letter that a requeue makes while other changes keep landing on it. */
#define REQUEUE_TRIES 8

/* Moves one dead letter back into its queue as a new ready job with no attempts, in one step of
 * the store: conditional on the letter's state as read, so two requeues of it never both
 * succeed, and a crash leaves it a letter, a job, or both, never neither. */
static imapq_err requeue_one(struct queue_service *qs, const struct queue_ref *ref, uint32_t dead,
			     uint32_t uid, uint64_t *lsn)
{
	imapq_err err = IMAPQ_E_MODIFIED;
	/* A flag changed between the read and the move (an IMAP client, say): read it again. */
	for (int tries = 0; err == IMAPQ_E_MODIFIED && tries < REQUEUE_TRIES; tries++) {
		struct store_message m;
		err = store_message_get(qs->store, dead, uid, &m);
		if (err != IMAPQ_OK)
			return err;
		if (m.flags & STORE_DELETED)
			return IMAPQ_E_NOTFOUND; /* the sweep or a purge has it */
		err = store_requeue_if_unchanged(qs->store, dead, uid, m.modseq, ref->id,
						 (int64_t)(queue_now_ms() / 1000), NULL, lsn);
	}
	return err;
}

imapq_err queue_requeue_dead(struct queue_service *qs, const char *name, uint32_t id,
			     uint32_t *moved_r, uint64_t *lsn_r)
{
	if (moved_r != NULL)
		*moved_r = 0;
	struct queue_ref ref;
	uint32_t dead;
	imapq_err err = queue_ref_get(qs, name, &ref);
	if (err != IMAPQ_OK)
		return err;
	err = queue_dead_id(qs, ref.id, false, &dead, NULL);
	if (err == IMAPQ_E_NONEXISTENT)
		return id == 0 ? IMAPQ_OK : IMAPQ_E_NOTFOUND;
	if (err != IMAPQ_OK)
		return err;
	uint64_t lsn = 0;
	uint32_t moved = 0;
	if (id != 0) {
		err = requeue_one(qs, &ref, dead, id, &lsn);
		moved = err == IMAPQ_OK;
	} else {
		uint32_t uid = 0;
		while (uid < UINT32_MAX) {
			err = store_first_match(qs->store, dead, STORE_DELETED, 0, uid + 1, &uid);
			if (err != IMAPQ_OK || uid == 0)
				break;
			err = requeue_one(qs, &ref, dead, uid, &lsn);
			if (err == IMAPQ_OK)
				moved++;
			else if (err != IMAPQ_E_NOTFOUND)
				break;
			err = IMAPQ_OK;
		}
	}
	if (moved_r != NULL)
		*moved_r = moved;
	if (err != IMAPQ_OK && moved > 0)
		log_warn(QUEUE_LOG, "requeue of %s stopped after %u jobs: %s", name, moved,
			 imapq_err_message(err));
	return queue_finish(qs, err, lsn, lsn_r);
}
