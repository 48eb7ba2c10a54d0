/* Flag changes and the engine's claim primitive: store_flags() and store_update(). Every flag
 * change takes this one path, so the exact UNCHANGEDSINCE test, the attempt count and the lease
 * are decided together under the store mutex. A message that gains the mailbox's claim keyword
 * counts an attempt and gets due = now + lease; one that loses it gets due = 0; an explicit due
 * (set_due) overrides both and is itself a change. Losing the keyword after the last attempt
 * (STORE_SETTING_MAX_ATTEMPTS) keeps it, with due = now, for the queue layer to dead-letter. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "imap/store/store-private.h"
#include "imap/store/store_records.h"

/* One message's planned outcome in an update. */
struct flag_item {
	struct store_message m;
	enum store_flag_outcome outcome;
};

struct flag_plan {
	const struct store_update *u;
	uint64_t claim_bit; /* flag bit of STORE_CLAIM_KEYWORD in the mailbox, 0 when undefined */
	uint32_t claim_due; /* due time of a message claimed by this call */
	uint32_t max_attempts; /* the mailbox's STORE_SETTING_MAX_ATTEMPTS */
	uint64_t modseq;       /* last mod-sequence handed out */
	struct flag_item *items;
	size_t n, cap;
	size_t changed;
	bool nomem;
};

/* now + lease as a due time, saturating at the end of the u32 range. */
static uint32_t lease_end(uint32_t lease)
{
	/* Rounded up, so a lease lasts at least its seconds, as the queue layer's due times do; a
	 * lease of 0 ends within the current second. */
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	uint64_t end = (now.tv_sec > 0 ? (uint64_t)now.tv_sec : 0) + lease;
	if (lease > 0 && now.tv_nsec > 0)
		end++;
	return end > UINT32_MAX ? UINT32_MAX : (uint32_t)end;
}

/* Decides one message's outcome: fail on UNCHANGEDSINCE first, whatever the store would do. */
static void plan_update(void *arg, const struct msg *m)
{
	struct flag_plan *p = arg;
	const struct store_update *u = p->u;
	if (p->nomem)
		return;
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 16;
		struct flag_item *v = realloc(p->items, cap * sizeof *v);
		if (!v) {
			p->nomem = true;
			return;
		}
		p->items = v;
		p->cap = cap;
	}
	struct flag_item *it = &p->items[p->n++];
	it->m = store_public_msg(m);
	if (u->unchangedsince && m->modseq > *u->unchangedsince) {
		it->outcome = STORE_FAILED;
		return;
	}
	uint64_t f = u->op == STORE_FLAGS_SET	? u->flags
		     : u->op == STORE_FLAGS_ADD ? m->flags | u->flags
						: m->flags & ~u->flags;
	if (f == m->flags && !u->set_due) {
		it->outcome = STORE_UNCHANGED;
		return;
	}
	bool gained = (f & p->claim_bit) && !(m->flags & p->claim_bit);
	bool lost = !(f & p->claim_bit) && (m->flags & p->claim_bit);
	if (lost && !u->set_due && m->attempts >= p->max_attempts) {
		/* A release after the last attempt (a worker's -FLAGS) must not make the job
		 * claimable again: it becomes a lease that ended now, and the queue layer
		 * dead-letters it. The queue layer's own releases set the due time, and mean it. */
		it->outcome = STORE_CHANGED;
		it->m.due = lease_end(0);
		it->m.modseq = ++p->modseq;
		p->changed++;
		return;
	}
	if (gained && it->m.attempts < UINT32_MAX)
		it->m.attempts++;
	if (u->set_due)
		it->m.due = u->due;
	else if (gained)
		it->m.due = p->claim_due;
	else if (lost)
		it->m.due = 0;
	it->outcome = STORE_CHANGED;
	it->m.flags = f;
	it->m.modseq = ++p->modseq;
	p->changed++;
}

/* Logs and applies the changed items in records of at most STORE_RECORD_MAX_ENTRIES. */
static imapq_err commit_update(struct store *s, struct mailbox *mb, struct flag_plan *p,
			       uint64_t *lsn_r)
{
	size_t i = 0;
	while (i < p->n) {
		struct store_buf b = {0};
		size_t start = i, count = 0;
		store_buf_u32(&b, mb->id);
		store_buf_u32(&b, 0);
		for (; i < p->n && count < STORE_RECORD_MAX_ENTRIES; i++) {
			const struct store_message *m = &p->items[i].m;
			if (p->items[i].outcome != STORE_CHANGED)
				continue;
			struct store_rec_state st = {.uid = m->uid,
						     .modseq = m->modseq,
						     .flags = m->flags,
						     .attempts = m->attempts,
						     .due = m->due};
			store_rec_state_encode(&b, &st);
			count++;
		}
		store_buf_put_u32_at(&b, 4, (uint32_t)count);
		imapq_err err = IMAPQ_OK;
		if (count)
			err = store_buf_failed(&b) ? IMAPQ_E_NOMEM
						   : store_log(s, JOURNAL_SHRINK, STORE_REC_FLAGS,
							       b.data, b.len, NULL, lsn_r, NULL);
		store_buf_free(&b);
		if (err != IMAPQ_OK)
			return err;
		for (size_t k = start; k < i; k++) {
			const struct store_message *m = &p->items[k].m;
			if (p->items[k].outcome != STORE_CHANGED)
				continue;
			struct msg next = {.uid = m->uid,
					   .modseq = m->modseq,
					   .flags = m->flags,
					   .attempts = m->attempts,
					   .due = m->due};
			store_msg_update(s, mb, &next);
			mb->highestmodseq = m->modseq;
		}
	}
	return IMAPQ_OK;
}

imapq_err store_update(struct store *s, uint32_t id, const struct uid_range *ranges, size_t n,
		       const struct store_update *u, store_flag_fn *fn, void *ctx, uint64_t *lsn_r)
{
	if (!u || !store_ranges_valid(ranges, n) || u->op > STORE_FLAGS_REMOVE)
		return IMAPQ_E_INVALID;
	uint64_t lsn = 0;
	imapq_err err = IMAPQ_OK;
	struct flag_plan p = {.u = u};
	pthread_mutex_lock(&s->lock);
	struct mailbox *mb = store_mailbox_by_id(s, id);
	if (!mb) {
		err = IMAPQ_E_NONEXISTENT;
	} else if (u->flags & ~store_mailbox_flag_mask(mb)) {
		err = IMAPQ_E_INVALID;
	} else {
		int k = store_keyword_lookup(mb, STORE_CLAIM_KEYWORD, strlen(STORE_CLAIM_KEYWORD));
		p.claim_bit = k >= 0 ? STORE_KEYWORD(k) : 0;
		p.claim_due = lease_end(store_setting_get(mb, STORE_SET_LEASE));
		p.max_attempts = store_setting_get(mb, STORE_SET_MAX_ATTEMPTS);
		p.modseq = mb->highestmodseq;
		store_each_in_ranges(mb, ranges, n, plan_update, &p);
		if (p.nomem)
			err = IMAPQ_E_NOMEM;
		else if (p.changed)
			err = commit_update(s, mb, &p, &lsn);
		else
			lsn = journal_append_lsn(s->journal);
		for (size_t i = 0; err == IMAPQ_OK && fn && i < p.n; i++)
			fn(ctx, &p.items[i].m, p.items[i].outcome);
		store_finish_write(s, id);
	}
	pthread_mutex_unlock(&s->lock);
	free(p.items);
	return store_done(s, err, lsn, lsn_r);
}

imapq_err store_flags(struct store *s, uint32_t id, const struct uid_range *ranges, size_t n,
		      enum store_flag_op op, uint64_t flags, const uint64_t *unchangedsince,
		      store_flag_fn *fn, void *ctx, uint64_t *lsn_r)
{
	struct store_update u = {.op = op, .flags = flags, .unchangedsince = unchangedsince};
	return store_update(s, id, ranges, n, &u, fn, ctx, lsn_r);
}
