/* Compaction: frees the oldest journal segment by re-appending ("carrying") the live messages
 * whose bodies it holds and folding the expunges it recorded into each mailbox's expunge floor;
 * the metadata it held is already in the checkpoint that starts the next segment. The carrying
 * runs in slices with the store lock released in between, so foreground work goes on. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "imap/base/limits.h"
#include "imap/base/log.h"
#include "imap/base/vec.h"
#include "imap/store/store-private.h"
#include "imap/store/store_records.h"

/* Journal bytes that are metadata rather than bodies: the latest record of each message (a
 * carried record's framing and fields), and per mailbox in a checkpoint until one was written. */
#define STORE_META_PER_MESSAGE 64
#define STORE_META_PER_MAILBOX 512

uint64_t store_needed_bytes(const struct store *s)
{
	uint64_t records = s->live_bytes + s->messages * STORE_META_PER_MESSAGE;
	uint64_t checkpoint = (uint64_t)s->nmailboxes * STORE_META_PER_MAILBOX;
	if (s->checkpoint_bytes > checkpoint)
		checkpoint = s->checkpoint_bytes;
	/* Every segment of the compacted journal starts with a checkpoint. */
	return records + checkpoint * (records / s->segment_bytes + 1);
}

/* Dead journal bytes: those beyond what the live state needs; *needed_r gets the latter. */
static uint64_t dead_bytes(struct store *s, uint64_t *needed_r)
{
	struct journal_stats js;
	journal_stats(s->journal, &js);
	pthread_mutex_lock(&s->lock);
	uint64_t needed = store_needed_bytes(s);
	pthread_mutex_unlock(&s->lock);
	*needed_r = needed;
	return js.disk_bytes > needed ? js.disk_bytes - needed : 0;
}

bool store_compact_due(uint64_t dead, uint64_t needed, uint64_t slack, uint64_t disk_free)
{
	uint64_t share = needed * IMAPQ_COMPACT_DEAD_PERCENT / 100;
	return dead > slack && (dead > share || disk_free < share);
}

/* True once store_compact_stop() has asked the background thread to end. */
static bool compact_stopping(struct store *s)
{
	pthread_mutex_lock(&s->compact_lock);
	bool stopping = s->stopping;
	pthread_mutex_unlock(&s->compact_lock);
	return stopping;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Leaves the lock free for as long as the last slice held it: a waiting writer gets in, and
 * carried bytes reach the disk in steps that each foreground commit can absorb. */
static void pause_after(uint64_t held_ns)
{
	struct timespec ts = {.tv_sec = (time_t)(held_ns / 1000000000u),
			      .tv_nsec = (long)(held_ns % 1000000000u)};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* The state of freeing one segment. */
struct carry_ctx {
	uint32_t segment;
	uint32_t *ids; /* the mailboxes when the work began */
	size_t nids, capids;
	size_t at;     /* the mailbox the next slice goes on with (index into ids) */
	uint32_t next; /* and the UID in it */
	struct carry_item {
		uint32_t box;
		struct msg m; /* as gathered */
		struct store_loaded_body lb;
	} slice[IMAPQ_COMPACT_SLICE_MESSAGES];
	size_t nslice;
	uint64_t carried;
	imapq_err err;
};

/* Notes mb's id; mailboxes created later hold no body of an old segment. */
static void note_mailbox(struct store *s, struct mailbox *mb, void *arg)
{
	(void)s;
	struct carry_ctx *cc = arg;
	if (cc->err == IMAPQ_OK &&
	    !vec_push((void **)&cc->ids, &cc->nids, &cc->capids, sizeof *cc->ids, &mb->id))
		cc->err = IMAPQ_E_NOMEM;
}

/* True when the segment holds no live message any more, so nothing is left to carry. */
static bool segment_empty(struct store *s, uint32_t number)
{
	if (s->segment_counts_lost)
		return false;
	const struct store_segment *seg = store_segment_get(s, number, false);
	return !seg || seg->live_messages == 0;
}

/* What one slice may still do. */
struct slice_budget {
	size_t messages; /* to carry */
	uint64_t bytes;	 /* of bodies to carry; the first message goes whatever its size */
	size_t scan;	 /* messages and mailboxes to examine */
};

/* Adds to the slice, from cc's place on, messages of mb whose bodies are in the segment, while b
 * allows; moves cc's place past what it examined. */
static void gather(struct carry_ctx *cc, struct mailbox *mb, struct slice_budget *b)
{
	size_t n = 0;
	struct msgtable_cursor c;
	const struct msg *m = msgtable_seek(mb->msgs, cc->next, &c);
	for (; m && n < b->messages && b->bytes > 0 && b->scan > 0;
	     m = msgtable_next(mb->msgs, &c), b->scan--) {
		if (m->loc == 0 || journal_loc_segment(m->loc) != cc->segment)
			continue;
		cc->slice[cc->nslice + n++] = (struct carry_item){.box = mb->id, .m = *m};
		b->bytes = m->size < b->bytes ? b->bytes - m->size : 0;
	}
	b->messages -= n;
	cc->nslice += n;
	if (m) {
		cc->next = m->uid;
	} else {
		cc->at++;
		cc->next = 1;
	}
}

/* Gathers one slice, under the lock: goes on through the mailboxes from where the last slice
 * stopped, taking live messages whose bodies are in the segment, until it holds
 * IMAPQ_COMPACT_SLICE_MESSAGES or IMAPQ_COMPACT_SLICE_BYTES of bodies, has examined
 * IMAPQ_COMPACT_SLICE_SCAN messages and mailboxes, or the segment holds no live message any
 * more. */
static void gather_slice(struct store *s, struct carry_ctx *cc)
{
	struct slice_budget b = {.messages = IMAPQ_COMPACT_SLICE_MESSAGES,
				 .bytes = IMAPQ_COMPACT_SLICE_BYTES,
				 .scan = IMAPQ_COMPACT_SLICE_SCAN};
	cc->nslice = 0;
	s->compact_slices++;
	while (cc->at < cc->nids && b.messages > 0 && b.bytes > 0 && b.scan > 0) {
		if (segment_empty(s, cc->segment)) {
			cc->at = cc->nids;
			break;
		}
		b.scan--;
		struct mailbox *mb = store_mailbox_by_id(s, cc->ids[cc->at]);
		if (mb) {
			gather(cc, mb, &b);
		} else {
			cc->at++;
			cc->next = 1;
		}
	}
}

/* Frees the bodies the slice loaded. */
static void free_slice(struct carry_ctx *cc)
{
	for (size_t i = 0; i < cc->nslice; i++) {
		free((void *)cc->slice[i].lb.body.data);
		cc->slice[i].lb.body.data = NULL;
	}
}

/* Reads the slice's bodies, without the lock: a body never changes where it lies. */
static imapq_err load_slice(struct store *s, struct carry_ctx *cc)
{
	for (size_t i = 0; i < cc->nslice; i++) {
		imapq_err err = store_body_load(s->journal, &cc->slice[i].m, &cc->slice[i].lb);
		if (err != IMAPQ_OK) {
			cc->nslice = i;
			free_slice(cc);
			return err;
		}
	}
	return IMAPQ_OK;
}

/* Carries the loaded slice, under the lock, each message as it is now. One expunged or moved
 * since it was gathered is no longer there (or its body lies elsewhere) and is not carried. */
static imapq_err carry_slice(struct store *s, struct carry_ctx *cc)
{
	imapq_err err = IMAPQ_OK;
	for (size_t i = 0; i < cc->nslice && err == IMAPQ_OK; i++) {
		struct carry_item *it = &cc->slice[i];
		struct mailbox *mb = store_mailbox_by_id(s, it->box);
		const struct msg *now = mb ? store_msg_find(mb, it->m.uid) : NULL;
		if (!now || now->loc != it->m.loc)
			continue;
		struct msg m = *now;
		err = store_message_carry(s, mb, &m, &it->lb, NULL);
		if (err == IMAPQ_OK) {
			cc->carried++;
			s->carried++;
			s->carried_bytes += m.size;
		}
	}
	free_slice(cc);
	return err;
}

/* Carries every live message whose body is in the segment, slice by slice: gathered under the
 * lock, bodies read outside it, carried under it again. *stopped_r is set when the store began
 * to close first. */
static imapq_err carry_segment(struct store *s, struct carry_ctx *cc, bool *stopped_r)
{
	cc->at = 0;
	cc->next = 1;
	while (cc->at < cc->nids) {
		if (compact_stopping(s)) {
			*stopped_r = true;
			return IMAPQ_OK;
		}
		pthread_mutex_lock(&s->lock);
		uint64_t t0 = now_ns();
		gather_slice(s, cc);
		uint64_t held = now_ns() - t0;
		pthread_mutex_unlock(&s->lock);
		if (cc->nslice == 0) {
			pause_after(held);
			continue;
		}
		imapq_err err = load_slice(s, cc);
		if (err != IMAPQ_OK)
			return err;
		pthread_mutex_lock(&s->lock);
		t0 = now_ns();
		err = carry_slice(s, cc);
		store_finish_write(s, 0);
		held += now_ns() - t0;
		pthread_mutex_unlock(&s->lock);
		if (err != IMAPQ_OK)
			return err;
		pause_after(held);
	}
	return IMAPQ_OK;
}

/* Writes an expunge-floor record for each mailbox that expunged in seg, and raises its floor. */
static imapq_err fold_floors(struct store *s, const struct store_segment *seg)
{
	for (size_t i = 0; i < seg->nfloors; i++) {
		const struct store_floor *f = &seg->floors[i];
		struct mailbox *mb = store_mailbox_by_id(s, f->id);
		if (!mb)
			continue;
		uint8_t meta[16];
		struct store_buf b = {.data = meta, .cap = sizeof meta};
		store_buf_u32(&b, f->id);
		store_buf_u64(&b, f->modseq);
		store_buf_u32(&b, f->uid);
		imapq_err err = store_log(s, JOURNAL_SHRINK, STORE_REC_EXPUNGE_FLOOR, meta,
					  sizeof meta, NULL, NULL, NULL);
		if (err != IMAPQ_OK)
			return err;
		expunge_log_raise_floor(mb->expunged, f->modseq, f->uid);
	}
	return IMAPQ_OK;
}

/* Forgets the store's notes about segment number once its contents live elsewhere. */
static void forget_segment(struct store *s, uint32_t number)
{
	struct store_segment *seg = store_segment_get(s, number, false);
	if (!seg)
		return;
	free(seg->floors);
	size_t i = (size_t)(seg - s->segments);
	memmove(seg, seg + 1, (s->nsegments - i - 1) * sizeof *seg);
	s->nsegments--;
}

/* Picks the oldest segment, rotating first when it is the active one, and notes the mailboxes
 * to go through. Under the lock. */
static imapq_err choose_segment(struct store *s, struct carry_ctx *cc)
{
	struct journal_segment_info segs[2];
	size_t n = 0;
	imapq_err err = IMAPQ_OK;
	journal_segments(s->journal, segs, 2, &n);
	if (n == 1) {
		err = store_rotate(s);
		journal_segments(s->journal, segs, 2, &n);
	}
	if (err == IMAPQ_OK && (n < 2 || segs[0].number == s->active_segment))
		err = IMAPQ_E_INVALID;
	if (err != IMAPQ_OK)
		return err;
	cc->segment = segs[0].number;
	store_mailboxes_each(s, note_mailbox, cc);
	return cc->err;
}

/* Frees the oldest segment: chooses it, carries its live messages, then, under the lock once
 * more, folds its expunges and forgets it; outside the lock, drops it once all of that is
 * durable. *stopped_r is set when it gave up because the store is closing; what it carried by
 * then stays valid. */
static imapq_err compact_oldest(struct store *s, bool *stopped_r)
{
	struct carry_ctx *cc = calloc(1, sizeof *cc);
	if (!cc)
		return IMAPQ_E_NOMEM;
	cc->err = IMAPQ_OK;
	pthread_mutex_lock(&s->lock);
	imapq_err err = choose_segment(s, cc);
	store_finish_write(s, 0);
	pthread_mutex_unlock(&s->lock);
	if (err == IMAPQ_OK)
		err = carry_segment(s, cc, stopped_r);
	if (err == IMAPQ_OK && !*stopped_r) {
		pthread_mutex_lock(&s->lock);
		struct store_segment *seg = store_segment_get(s, cc->segment, false);
		if (seg)
			err = fold_floors(s, seg);
		if (err == IMAPQ_OK)
			forget_segment(s, cc->segment);
		store_finish_write(s, 0);
		pthread_mutex_unlock(&s->lock);
		if (err == IMAPQ_OK)
			err = journal_drop_oldest(s->journal);
		if (err == IMAPQ_OK) {
			pthread_mutex_lock(&s->lock);
			s->compactions++;
			pthread_mutex_unlock(&s->lock);
			log_info(STORE_LOG, "compacted segment %u: %llu messages carried",
				 cc->segment, (unsigned long long)cc->carried);
		}
	}
	if (err != IMAPQ_OK)
		log_warn(STORE_LOG, "compaction failed: %s", imapq_err_message(err));
	free(cc->ids);
	free(cc);
	return err;
}

imapq_err store_compact(struct store *s, bool force)
{
	imapq_err err = IMAPQ_OK;
	bool stopped = false;
	pthread_mutex_lock(&s->compact_run);
	struct journal_stats js;
	journal_stats(s->journal, &js);
	/* Each step frees one segment; never more steps than there were segments. A pass starts
	 * when due and, once started, goes on until the dead bytes are within the slack. */
	uint64_t slack = IMAPQ_COMPACT_SLACK_SEGMENTS * s->segment_bytes;
	for (uint32_t step = 0; step < js.segments && err == IMAPQ_OK && !stopped; step++) {
		uint64_t needed, dead = dead_bytes(s, &needed);
		bool go = step == 0 ? force || store_compact_due(dead, needed, slack,
								 journal_disk_free(s->journal))
				    : dead > slack;
		if (!go)
			break;
		err = compact_oldest(s, &stopped);
	}
	pthread_mutex_unlock(&s->compact_run);
	return err;
}

/* The background thread: checks once a second whether compaction is due. */
static void *compact_main(void *arg)
{
	struct store *s = arg;
	pthread_mutex_lock(&s->compact_lock);
	while (!s->stopping) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&s->compact_cond, &s->compact_lock, &ts);
		if (s->stopping)
			break;
		pthread_mutex_unlock(&s->compact_lock);
		store_compact(s, false);
		pthread_mutex_lock(&s->compact_lock);
	}
	pthread_mutex_unlock(&s->compact_lock);
	return NULL;
}

imapq_err store_compact_start(struct store *s)
{
	int rc = pthread_create(&s->compact_thread, NULL, compact_main, s);
	if (rc != 0) {
		log_error(STORE_LOG, "cannot start the compaction thread: %s", strerror(rc));
		return IMAPQ_E_NOMEM;
	}
	s->compact_running = true;
	return IMAPQ_OK;
}

void store_compact_stop(struct store *s)
{
	if (!s->compact_running)
		return;
	pthread_mutex_lock(&s->compact_lock);
	s->stopping = true;
	pthread_cond_signal(&s->compact_cond);
	pthread_mutex_unlock(&s->compact_lock);
	pthread_join(s->compact_thread, NULL);
	s->compact_running = false;
}
