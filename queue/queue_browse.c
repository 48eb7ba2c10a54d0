/* Reading a queue without claiming: a job's payload, peeking at jobs by state, the change feed,
 * and bringing dead letters back. */
#include <stdlib.h>

#include "imap/base/crc32c.h"
#include "imap/base/log.h"
#include "imap/base/vec.h"
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

/* Messages and ranges gathered under the store's mutex, handed out after it. */
struct gathered {
	struct store_message *msgs;
	size_t nmsgs, msgs_cap;
	struct uid_range *ranges;
	size_t nranges, ranges_cap;
	bool nomem;
};

static void gather_message(void *ctx, const struct store_message *m)
{
	struct gathered *g = ctx;
	if (!vec_push((void **)&g->msgs, &g->nmsgs, &g->msgs_cap, sizeof *m, m))
		g->nomem = true;
}

static void gather_range(void *ctx, uint32_t lo, uint32_t hi)
{
	struct gathered *g = ctx;
	struct uid_range r = {lo, hi};
	if (!vec_push((void **)&g->ranges, &g->nranges, &g->ranges_cap, sizeof r, &r))
		g->nomem = true;
}

imapq_err queue_changes(struct queue_service *qs, const char *name, uint64_t since,
			queue_job_fn *fn, queue_gone_fn *gone_fn, void *ctx,
			uint64_t *highestmodseq_r)
{
	struct queue_ref ref;
	struct store_mailbox_status st;
	/* Read first: a change that lands during the scans shows now and again next time. */
	imapq_err err = queue_ref_status(qs, name, &ref, &st);
	if (err != IMAPQ_OK)
		return err;
	struct gathered g = {0};
	if (fn != NULL)
		err = store_changed_since(qs->store, ref.id, since, gather_message, &g);
	if (err == IMAPQ_OK && gone_fn != NULL)
		err = store_vanished_since(qs->store, ref.id, since, gather_range, &g);
	if (err == IMAPQ_OK && g.nomem)
		err = IMAPQ_E_NOMEM;
	for (size_t i = 0; err == IMAPQ_OK && i < g.nmsgs; i++) {
		/* A job marked \Deleted is being completed; it is reported once it is gone. */
		if (g.msgs[i].flags & STORE_DELETED)
			continue;
		struct queue_job job;
		queue_job_from(&ref, false, &g.msgs[i], &job);
		fn(ctx, &job);
	}
	for (size_t i = 0; err == IMAPQ_OK && i < g.nranges; i++)
		gone_fn(ctx, g.ranges[i].lo, g.ranges[i].hi);
	free(g.msgs);
	free(g.ranges);
	if (err == IMAPQ_OK && highestmodseq_r != NULL)
		*highestmodseq_r = st.highestmodseq;
	return err;
}

/* Reads the whole of message uid of mailbox id into a new buffer. */
static imapq_err read_message(struct store *s, uint32_t id, const struct store_message *m,
			      char **buf_r)
{
	char *buf = malloc(m->size ? m->size : 1);
	if (buf == NULL)
		return IMAPQ_E_NOMEM;
	size_t have = 0;
	while (have < m->size) {
		size_t got;
		imapq_err err =
		    store_body_read(s, id, m->uid, have, buf + have, m->size - have, &got);
		if (err != IMAPQ_OK || got == 0) {
			free(buf);
			return err != IMAPQ_OK ? err : IMAPQ_E_IO;
		}
		have += got;
	}
	*buf_r = buf;
	return IMAPQ_OK;
}

/* Notes whether the conditional store of \Deleted took. */
static void note_taken(void *ctx, const struct store_message *m, enum store_flag_outcome o)
{
	(void)m;
	*(enum store_flag_outcome *)ctx = o;
}

/* Moves one dead letter back into its queue as a new ready job with no attempts. The letter is
 * first marked \Deleted conditionally, so two requeues of it never both succeed. */
static imapq_err requeue_one(struct queue_service *qs, const struct queue_ref *ref, uint32_t dead,
			     uint32_t uid, uint64_t *lsn)
{
	struct store_message m;
	imapq_err err = store_message_get(qs->store, dead, uid, &m);
	if (err != IMAPQ_OK)
		return err;
	if (m.flags & STORE_DELETED)
		return IMAPQ_E_NOTFOUND;
	char *buf = NULL;
	err = read_message(qs->store, dead, &m, &buf);
	if (err != IMAPQ_OK)
		return err;
	struct uid_range r = {uid, uid};
	enum store_flag_outcome outcome = STORE_FAILED;
	err = store_flags(qs->store, dead, &r, 1, STORE_FLAGS_ADD, STORE_DELETED, &m.modseq,
			  note_taken, &outcome, lsn);
	bool taken = err == IMAPQ_OK && outcome == STORE_CHANGED;
	if (err == IMAPQ_OK && !taken)
		err = IMAPQ_E_NOTFOUND; /* another requeue or the sweep got it */
	if (err == IMAPQ_OK) {
		struct journal_body body = {
		    .data = buf, .fd = -1, .len = m.size, .crc = crc32c(0, buf, m.size)};
		uint32_t nuid;
		uint64_t modseq;
		err = store_append(qs->store, ref->id, 0, (int64_t)(queue_now_ms() / 1000), &body,
				   &nuid, &modseq, lsn);
	}
	free(buf);
	if (err == IMAPQ_OK)
		return store_expunge(qs->store, dead, &r, 1, NULL, NULL, lsn);
	if (taken) {
		/* Keep the letter when its job could not be enqueued again. */
		store_flags(qs->store, dead, &r, 1, STORE_FLAGS_REMOVE, STORE_DELETED, NULL, NULL,
			    NULL, lsn);
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
