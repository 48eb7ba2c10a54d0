/* Message primitives shared by live operations, replay and compaction. Each keeps the counters
 * (per mailbox and store-wide), the journal reserve and the per-segment live bytes current, and
 * tells the message hook of the transition, so no caller has to remember them. While the journal
 * replays, messages live in a UID map and only the map changes; store_replay_finish() then
 * computes the accounting once. Replay and compaction (which only moves bodies) never call the
 * message hook. */
#include <stdlib.h>
#include <string.h>

#include "imap/base/log.h"
#include "imap/store/store-private.h"

struct store_message store_public_msg(const struct msg *m)
{
	return (struct store_message){.uid = m->uid,
				      .size = m->size,
				      .modseq = m->modseq,
				      .flags = m->flags,
				      .internaldate = m->internaldate,
				      .attempts = m->attempts,
				      .due = m->due};
}

/* Tells the message hook that a message of mb went from before to after (either may be NULL). */
static void notify(struct store *s, struct mailbox *mb, const struct msg *before,
		   const struct msg *after)
{
	if (s->replaying || s->msg_hook_fn == NULL)
		return;
	struct store_message b = {0}, a = {0};
	if (before)
		b = store_public_msg(before);
	if (after)
		a = store_public_msg(after);
	s->msg_hook_fn(s->msg_hook_arg, mb->id, before ? &b : NULL, after ? &a : NULL);
}

const struct msg *store_msg_find(struct mailbox *mb, uint32_t uid)
{
	if (mb->replay)
		return store_uidmap_find(mb->replay, uid);
	return msgtable_find(mb->msgs, uid);
}

/* Adds (sign 1) or takes away (sign -1) a message with these flags from mb's unseen and deleted
 * counts. */
static void count_flags(struct mailbox *mb, uint64_t flags, int sign)
{
	if (!(flags & STORE_SEEN))
		mb->unseen += (uint32_t)sign;
	if (flags & STORE_DELETED)
		mb->deleted += (uint32_t)sign;
}

/* Keeps the journal's reserve in step with the messages; during replay the journal is not open
 * yet and store_replay_finish() reserves for every replayed message at once. */
static void reserve_for(struct store *s, int64_t messages)
{
	if (!s->replaying)
		journal_reserve_add(s->journal, messages * STORE_ACK_RESERVE);
}

/* Moves every message of mb's table into its replay map, undoing their accounting: replay
 * met a message out of UID order (a carried record) and the table takes only rising UIDs. */
static imapq_err switch_to_map(struct store *s, struct mailbox *mb)
{
	uint32_t n = msgtable_count(mb->msgs);
	struct msg *v = malloc(((size_t)n + 1) * sizeof *v);
	if (v == NULL)
		return IMAPQ_E_NOMEM;
	size_t k = 0;
	struct msgtable_cursor c;
	for (const struct msg *m = msgtable_seek(mb->msgs, 1, &c); m != NULL;
	     m = msgtable_next(mb->msgs, &c))
		v[k++] = *m;
	imapq_err err = IMAPQ_OK;
	/* Empty the table before the map exists: store_msg_remove() looks in the map once it
	 * does, and would leave the rest in the table, counted twice. */
	for (size_t i = 0; i < k; i++)
		store_msg_remove(s, mb, v[i].uid, 0, NULL);
	for (size_t i = 0; i < k && err == IMAPQ_OK; i++)
		err = store_uidmap_put(&mb->replay, &v[i]);
	free(v);
	/* The emptied table still remembers the highest UID it took and would refuse the lower
	 * ones store_replay_finish() puts back in order: start again from a fresh one. */
	struct msgtable *fresh = err == IMAPQ_OK ? msgtable_create() : NULL;
	if (fresh == NULL)
		return err == IMAPQ_OK ? IMAPQ_E_NOMEM : err;
	msgtable_destroy(&mb->msgs);
	mb->msgs = fresh;
	return IMAPQ_OK;
}

/* Replays one message record: straight into the table while UIDs rise (the common case, which
 * keeps recovery fast), through the replay map once they do not. */
static imapq_err replay_add(struct store *s, struct mailbox *mb, const struct msg *m)
{
	if (!mb->replay) {
		/* Rising UIDs (nearly every record) go straight in; the table refuses the rest. */
		imapq_err err = msgtable_append(mb->msgs, m);
		if (err == IMAPQ_OK) {
			count_flags(mb, m->flags, 1);
			mb->bytes += m->size;
			s->messages++;
			s->live_bytes += m->size;
			store_segment_account(s, m->loc, m->size, true);
			reserve_for(s, 1);
			return IMAPQ_OK;
		}
		if (err != IMAPQ_E_INVALID)
			return err;
		if (msgtable_find(mb->msgs, m->uid) != NULL) {
			/* A carried copy replaces the message's state and location. */
			store_msg_update(s, mb, m);
			store_msg_set_loc(s, mb, m->uid, m->loc);
			return IMAPQ_OK;
		}
		err = switch_to_map(s, mb);
		if (err != IMAPQ_OK)
			return err;
	}
	return store_uidmap_put(&mb->replay, m);
}

imapq_err store_msg_add(struct store *s, struct mailbox *mb, const struct msg *m)
{
	if (mb->replay || s->replaying)
		return replay_add(s, mb, m);
	imapq_err err = msgtable_append(mb->msgs, m);
	if (err != IMAPQ_OK)
		return err;
	count_flags(mb, m->flags, 1);
	mb->bytes += m->size;
	s->messages++;
	s->live_bytes += m->size;
	store_segment_account(s, m->loc, m->size, true);
	reserve_for(s, 1);
	notify(s, mb, NULL, m);
	return IMAPQ_OK;
}

void store_msg_update(struct store *s, struct mailbox *mb, const struct msg *m)
{
	if (mb->replay) {
		const struct msg *old = store_uidmap_find(mb->replay, m->uid);
		if (old) {
			struct msg next = *old;
			next.flags = m->flags;
			next.modseq = m->modseq;
			next.attempts = m->attempts;
			next.due = m->due;
			store_uidmap_put(&mb->replay, &next);
		}
		return;
	}
	const struct msg *found = msgtable_find(mb->msgs, m->uid);
	if (!found)
		return;
	struct msg before = *found;
	count_flags(mb, before.flags, -1);
	count_flags(mb, m->flags, 1);
	msgtable_update(mb->msgs, m->uid, m->flags, m->modseq);
	msgtable_set_queue(mb->msgs, m->uid, m->attempts, m->due);
	notify(s, mb, &before, msgtable_find(mb->msgs, m->uid));
}

void store_msg_set_loc(struct store *s, struct mailbox *mb, uint32_t uid, uint64_t loc)
{
	if (mb->replay) {
		const struct msg *old = store_uidmap_find(mb->replay, uid);
		if (old) {
			struct msg m = *old;
			m.loc = loc;
			store_uidmap_put(&mb->replay, &m);
		}
		return;
	}
	const struct msg *old = msgtable_find(mb->msgs, uid);
	if (!old)
		return;
	store_segment_account(s, old->loc, old->size, false);
	store_segment_account(s, loc, old->size, true);
	msgtable_set_loc(mb->msgs, uid, loc);
}

bool store_msg_remove(struct store *s, struct mailbox *mb, uint32_t uid, uint64_t expunge_modseq,
		      struct msg *removed_r)
{
	struct msg m;
	if (mb->replay) {
		if (!store_uidmap_remove(mb->replay, uid, &m))
			return false;
	} else {
		if (!msgtable_remove(mb->msgs, uid, &m))
			return false;
		count_flags(mb, m.flags, -1);
		mb->bytes -= m.size;
		s->messages--;
		s->live_bytes -= m.size;
		store_segment_account(s, m.loc, m.size, false);
		reserve_for(s, -1);
		notify(s, mb, &m, NULL);
	}
	if (expunge_modseq) {
		/* The log needs non-decreasing mod-sequences; a hostile journal may not give them.
		 */
		if (expunge_modseq < mb->expunge_last)
			expunge_modseq = mb->expunge_last;
		if (expunge_log_add(mb->expunged, uid, expunge_modseq) != IMAPQ_OK)
			expunge_log_raise_floor(mb->expunged, expunge_modseq, uid);
		mb->expunge_last = expunge_modseq;
	}
	if (removed_r)
		*removed_r = m;
	return true;
}

struct store_segment *store_segment_get(struct store *s, uint32_t number, bool create)
{
	size_t lo = 0, hi = s->nsegments;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (s->segments[mid].number < number)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < s->nsegments && s->segments[lo].number == number)
		return &s->segments[lo];
	if (!create)
		return NULL;
	if (s->nsegments == s->capsegments) {
		size_t cap = s->capsegments ? s->capsegments * 2 : 8;
		struct store_segment *v = realloc(s->segments, cap * sizeof *v);
		if (!v)
			return NULL;
		s->segments = v;
		s->capsegments = cap;
	}
	memmove(&s->segments[lo + 1], &s->segments[lo], (s->nsegments - lo) * sizeof *s->segments);
	s->segments[lo] = (struct store_segment){.number = number};
	s->nsegments++;
	return &s->segments[lo];
}

void store_segment_account(struct store *s, uint64_t loc, uint32_t size, bool add)
{
	if (loc == 0 || s->replaying)
		return;
	struct store_segment *seg = store_segment_get(s, journal_loc_segment(loc), true);
	if (!seg) {
		/* Out of memory: compaction may no longer trust the counts to skip a segment. */
		s->segment_counts_lost = true;
		return;
	}
	if (add) {
		seg->live_bytes += size;
		seg->live_messages++;
	} else {
		seg->live_bytes -= size;
		seg->live_messages--;
	}
}

/* Counts one mailbox's messages into their segments. */
static void recount_mailbox(struct store *s, struct mailbox *mb, void *arg)
{
	(void)arg;
	struct msgtable_cursor c;
	for (const struct msg *m = msgtable_seek(mb->msgs, 0, &c); m;
	     m = msgtable_next(mb->msgs, &c))
		store_segment_account(s, m->loc, m->size, true);
}

void store_segments_recount(struct store *s)
{
	s->segment_counts_lost = false;
	for (size_t i = 0; i < s->nsegments; i++) {
		s->segments[i].live_bytes = 0;
		s->segments[i].live_messages = 0;
	}
	store_mailboxes_each(s, recount_mailbox, NULL);
}

void store_segment_note_expunge(struct store *s, struct mailbox *mb, uint32_t number, uint32_t uid,
				uint64_t modseq)
{
	struct store_segment *seg = store_segment_get(s, number, true);
	if (!seg)
		return;
	if (mb->expunge_segment == number && mb->expunge_slot < seg->nfloors &&
	    seg->floors[mb->expunge_slot].id == mb->id) {
		struct store_floor *f = &seg->floors[mb->expunge_slot];
		if (uid > f->uid)
			f->uid = uid;
		if (modseq > f->modseq)
			f->modseq = modseq;
		return;
	}
	if (seg->nfloors == seg->capfloors) {
		size_t cap = seg->capfloors ? seg->capfloors * 2 : 4;
		struct store_floor *v = realloc(seg->floors, cap * sizeof *v);
		if (!v) {
			/* Without the note the segment's expunges would be forgotten on drop: fold
			 * them into the floor now, which only widens later answers. */
			expunge_log_raise_floor(mb->expunged, modseq, uid);
			log_warn(STORE_LOG, "expunge note lost (out of memory); floor raised");
			return;
		}
		seg->floors = v;
		seg->capfloors = cap;
	}
	mb->expunge_segment = number;
	mb->expunge_slot = (uint32_t)seg->nfloors;
	seg->floors[seg->nfloors++] =
	    (struct store_floor){.id = mb->id, .uid = uid, .modseq = modseq};
}
