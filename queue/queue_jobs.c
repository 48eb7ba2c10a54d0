/* The worker-facing operations: enqueue, claim, ack, nack and extend. Each is one or two of the
 * engine's operations (append, conditional store, expunge, conditional move), the same ones an
 * IMAP session uses, so HTTP and IMAP workers contend through one UNCHANGEDSINCE check. */
#include <stdlib.h>

#include "imap/base/crc32c.h"
#include "imap/base/limits.h"
#include "imap/base/log.h"
#include "queue/queue-private.h"

/* The outcome store_update() reported for the one message it was given. */
struct outcome {
	bool seen;
	enum store_flag_outcome outcome;
	struct store_message m;
};

static void note_outcome(void *ctx, const struct store_message *m, enum store_flag_outcome o)
{
	struct outcome *c = ctx;
	c->seen = true;
	c->outcome = o;
	c->m = *m;
}

/* Applies u to job uid of queue id; IMAPQ_E_NOTFOUND when it is gone, IMAPQ_E_MODIFIED when
 * the UNCHANGEDSINCE test failed. */
static imapq_err update_one(struct queue_service *qs, uint32_t id, uint32_t uid,
			    const struct store_update *u, struct outcome *c, uint64_t *lsn)
{
	struct uid_range r = {uid, uid};
	*c = (struct outcome){0};
	imapq_err err = store_update(qs->store, id, &r, 1, u, note_outcome, c, lsn);
	if (err != IMAPQ_OK)
		return err;
	if (!c->seen)
		return IMAPQ_E_NOTFOUND;
	return c->outcome == STORE_FAILED ? IMAPQ_E_MODIFIED : IMAPQ_OK;
}

imapq_err queue_enqueue(struct queue_service *qs, const char *name, const void *payload, size_t len,
			const char *content_type, uint32_t delay, struct queue_job *job_r,
			uint64_t *lsn_r)
{
	struct queue_new_job job = {
	    .payload = payload, .len = len, .content_type = content_type, .delay = delay};
	size_t done;
	return queue_enqueue_batch(qs, name, &job, 1, job_r, &done, lsn_r);
}

imapq_err queue_enqueue_batch(struct queue_service *qs, const char *name,
			      const struct queue_new_job *jobs, size_t n, struct queue_job *jobs_r,
			      size_t *done_r, uint64_t *lsn_r)
{
	*done_r = 0;
	for (size_t i = 0; i < n; i++)
		if (jobs[i].delay > IMAPQ_MAX_QUEUE_SETTING)
			return IMAPQ_E_INVALID;
	struct queue_ref ref;
	imapq_err err = queue_ref_get(qs, name, &ref);
	if (err != IMAPQ_OK)
		return err;
	struct store_new_message *msgs = calloc(n ? n : 1, sizeof *msgs);
	if (msgs == NULL)
		return IMAPQ_E_NOMEM;
	int64_t now = (int64_t)(queue_now_ms() / 1000);
	for (size_t i = 0; i < n && err == IMAPQ_OK; i++) {
		char *msg = NULL;
		size_t mlen;
		err = queue_message_build(jobs[i].payload, jobs[i].len, jobs[i].content_type, &msg,
					  &mlen);
		if (err != IMAPQ_OK)
			break;
		bool delayed = jobs[i].delay > 0;
		msgs[i] = (struct store_new_message){
		    .flags = delayed ? ref.delayed : 0,
		    .due = delayed ? queue_due_in(jobs[i].delay) : 0,
		    .internaldate = now,
		    .body = {.data = msg, .fd = -1, .len = mlen, .crc = crc32c(0, msg, mlen)}};
	}
	uint64_t lsn = 0;
	if (err == IMAPQ_OK)
		err = store_append_batch(qs->store, ref.id, msgs, n, done_r, &lsn);
	for (size_t i = 0; i < *done_r && jobs_r != NULL; i++) {
		struct store_message m = {.uid = msgs[i].uid,
					  .size = (uint32_t)msgs[i].body.len,
					  .modseq = msgs[i].modseq,
					  .flags = msgs[i].flags,
					  .internaldate = now,
					  .due = msgs[i].due};
		queue_job_from(&ref, false, &m, &jobs_r[i]);
	}
	for (size_t i = 0; i < n; i++)
		free((void *)msgs[i].body.data);
	free(msgs);
	return queue_finish(qs, err, lsn, lsn_r);
}

/* Claims the ready job uid of queue ref; IMAPQ_E_MODIFIED when another claimer got it first. */
static imapq_err claim_one(struct queue_service *qs, const struct queue_ref *ref, uint32_t uid,
			   uint32_t lease, struct queue_job *job_r, uint64_t *lsn)
{
	struct store_message m;
	imapq_err err = store_message_get(qs->store, ref->id, uid, &m);
	if (err != IMAPQ_OK)
		return err == IMAPQ_E_NOTFOUND ? IMAPQ_E_MODIFIED : err;
	if (m.flags & queue_ready_mask(ref))
		return IMAPQ_E_MODIFIED;
	struct store_update u = {.op = STORE_FLAGS_ADD,
				 .flags = ref->claimed,
				 .unchangedsince = &m.modseq,
				 .set_due = true,
				 .due = queue_due_in(lease)};
	struct outcome c;
	err = update_one(qs, ref->id, uid, &u, &c, lsn);
	if (err == IMAPQ_E_NOTFOUND)
		return IMAPQ_E_MODIFIED;
	if (err == IMAPQ_OK)
		queue_job_from(ref, false, &c.m, job_r);
	return err;
}

imapq_err queue_claim(struct queue_service *qs, const char *name, uint32_t max, uint32_t lease,
		      struct queue_job *jobs, uint32_t *n_r, uint64_t *lsn_r)
{
	*n_r = 0;
	if (lease > IMAPQ_MAX_QUEUE_SETTING || (max > 0 && jobs == NULL))
		return IMAPQ_E_INVALID;
	struct queue_ref ref;
	imapq_err err = queue_ref_get(qs, name, &ref);
	if (err != IMAPQ_OK)
		return err;
	if (lease == 0) {
		struct store_mailbox_status st;
		err = store_mailbox_status(qs->store, ref.id, &st);
		if (err != IMAPQ_OK)
			return err;
		lease = st.lease;
	}
	uint64_t lsn = 0;
	uint32_t n = 0, from = 1, failures = 0;
	bool rewound = false;
	while (n < max) {
		uint32_t uid;
		err = store_first_match(qs->store, ref.id, queue_ready_mask(&ref), 0, from, &uid);
		if (err != IMAPQ_OK)
			break;
		if (uid == 0) {
			/* Jobs below from may have been released meanwhile: look once more. */
			if (from == 1 || rewound)
				break;
			rewound = true;
			from = 1;
			continue;
		}
		err = claim_one(qs, &ref, uid, lease, &jobs[n], &lsn);
		if (err == IMAPQ_OK)
			n++;
		else if (err != IMAPQ_E_MODIFIED || ++failures > QUEUE_CLAIM_RETRIES)
			break;
		/* Whoever won uid holds it; the next candidate lies above. */
		if (uid == UINT32_MAX)
			break;
		from = uid + 1;
	}
	if (err == IMAPQ_E_MODIFIED)
		err = IMAPQ_OK;
	if (err != IMAPQ_OK && n > 0) {
		/* The jobs already claimed must reach the caller, or they would wait out a lease.
		 */
		log_warn(QUEUE_LOG, "claim from %s stopped after %u jobs: %s", name, n,
			 imapq_err_message(err));
		err = IMAPQ_OK;
	}
	*n_r = n;
	return queue_finish(qs, err, lsn, lsn_r);
}

/* Checks that receipt holds job id of queue ref now: IMAPQ_E_NOTFOUND when the job is gone (or
 * the receipt is from an earlier queue of the same name), IMAPQ_E_MODIFIED when it was released,
 * claimed again, renewed by someone else or completed. */
static imapq_err check_held(struct queue_service *qs, const struct queue_ref *ref, uint32_t id,
			    struct queue_receipt receipt, struct store_message *m_r)
{
	if (receipt.uidvalidity != ref->uidvalidity)
		return IMAPQ_E_NOTFOUND;
	imapq_err err = store_message_get(qs->store, ref->id, id, m_r);
	if (err != IMAPQ_OK)
		return err;
	if (m_r->modseq != receipt.modseq || !(m_r->flags & ref->claimed) ||
	    (m_r->flags & STORE_DELETED))
		return IMAPQ_E_MODIFIED;
	return IMAPQ_OK;
}

imapq_err queue_ack(struct queue_service *qs, const char *name, uint32_t id,
		    struct queue_receipt receipt, uint64_t *lsn_r)
{
	struct queue_ref ref;
	struct store_message m;
	imapq_err err = queue_ref_get(qs, name, &ref);
	if (err == IMAPQ_OK)
		err = check_held(qs, &ref, id, receipt, &m);
	if (err != IMAPQ_OK)
		return err;
	struct store_update u = {
	    .op = STORE_FLAGS_ADD, .flags = STORE_DELETED, .unchangedsince = &receipt.modseq};
	struct outcome c;
	uint64_t lsn = 0;
	err = update_one(qs, ref.id, id, &u, &c, &lsn);
	if (err == IMAPQ_OK) {
		struct uid_range r = {id, id};
		err = store_expunge(qs->store, ref.id, &r, 1, NULL, NULL, &lsn);
	}
	return queue_finish(qs, err, lsn, lsn_r);
}

/* Finds the queue, its status and the job held with receipt. */
static imapq_err find_held(struct queue_service *qs, const char *name, uint32_t id,
			   struct queue_receipt receipt, struct queue_ref *ref,
			   struct store_message *m, struct store_mailbox_status *st)
{
	imapq_err err = queue_ref_status(qs, name, ref, st);
	if (err == IMAPQ_OK)
		err = check_held(qs, ref, id, receipt, m);
	return err;
}

imapq_err queue_nack(struct queue_service *qs, const char *name, uint32_t id,
		     struct queue_receipt receipt, uint32_t delay, uint64_t *lsn_r)
{
	if (delay > IMAPQ_MAX_QUEUE_SETTING)
		return IMAPQ_E_INVALID;
	struct queue_ref ref;
	struct store_message m;
	struct store_mailbox_status st;
	imapq_err err = find_held(qs, name, id, receipt, &ref, &m, &st);
	if (err != IMAPQ_OK)
		return err;
	uint64_t lsn = 0;
	if (m.attempts >= st.max_attempts) {
		err = queue_dead_letter(qs, &ref, id, receipt.modseq, &lsn);
		if (err == IMAPQ_OK)
			queue_count_release(qs, ref.id, false);
		if (err != IMAPQ_E_TOOBIG) /* else released below, as the lease's end would */
			return queue_finish(qs, err, lsn, lsn_r);
	}
	struct store_update u = {.op = STORE_FLAGS_REMOVE,
				 .flags = ref.claimed,
				 .unchangedsince = &receipt.modseq,
				 .set_due = true,
				 .due = 0};
	if (delay > 0) {
		/* Trade $Claimed for $Delayed in one conditional change: m holds the current flags
		 * exactly, since any change since would fail the test. */
		u.op = STORE_FLAGS_SET;
		u.flags = (m.flags & ~ref.claimed) | ref.delayed;
		u.due = queue_due_in(delay);
	}
	struct outcome c;
	err = update_one(qs, ref.id, id, &u, &c, &lsn);
	return queue_finish(qs, err, lsn, lsn_r);
}

imapq_err queue_extend(struct queue_service *qs, const char *name, uint32_t id,
		       struct queue_receipt receipt, uint32_t lease,
		       struct queue_receipt *receipt_r, uint64_t *lsn_r)
{
	if (lease > IMAPQ_MAX_QUEUE_SETTING)
		return IMAPQ_E_INVALID;
	struct queue_ref ref;
	struct store_message m;
	struct store_mailbox_status st;
	imapq_err err = find_held(qs, name, id, receipt, &ref, &m, &st);
	if (err == IMAPQ_OK && lease == 0)
		lease = st.lease;
	if (err != IMAPQ_OK)
		return err;
	/* Setting the due time alone is a change, so the receipt always moves. */
	struct store_update u = {.op = STORE_FLAGS_ADD,
				 .unchangedsince = &receipt.modseq,
				 .set_due = true,
				 .due = queue_due_in(lease)};
	struct outcome c;
	uint64_t lsn = 0;
	err = update_one(qs, ref.id, id, &u, &c, &lsn);
	if (err == IMAPQ_OK && receipt_r != NULL)
		*receipt_r =
		    (struct queue_receipt){.uidvalidity = ref.uidvalidity, .modseq = c.m.modseq};
	return queue_finish(qs, err, lsn, lsn_r);
}
