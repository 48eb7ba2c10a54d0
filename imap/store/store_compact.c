/* Compaction: frees the oldest journal segment by re-appending ("carrying") the live messages
 * whose bodies it holds and folding the expunges it recorded into each mailbox's expunge floor;
 * the metadata it held is already in the checkpoint that starts the next segment. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "imap/base/limits.h"
#include "imap/base/log.h"
#include "imap/store/store-private.h"
#include "imap/store/store_records.h"

/* Estimated journal bytes that are metadata rather than bodies: the checkpoint and the latest
 * record of each message. */
#define STORE_META_PER_MAILBOX 512
#define STORE_META_PER_MESSAGE 64

/* True when the journal holds enough dead bytes to be worth compacting. */
static bool compaction_due(struct store *s)
{
	struct journal_stats js;
	journal_stats(s->journal, &js);
	pthread_mutex_lock(&s->lock);
	uint64_t needed = s->live_bytes + (uint64_t)s->nmailboxes * STORE_META_PER_MAILBOX +
			  s->messages * STORE_META_PER_MESSAGE;
	pthread_mutex_unlock(&s->lock);
	return js.disk_bytes > needed + IMAPQ_COMPACT_SLACK_BYTES;
}

/* The state of one compaction pass over the mailboxes. */
struct carry_ctx {
	uint32_t segment;
	imapq_err err;
	uint64_t carried;
	struct msg *v;
	size_t n, cap;
};

/* Carries every live message of mb whose body is in the segment being freed. */
static void carry_mailbox(struct store *s, struct mailbox *mb, void *arg)
{
	struct carry_ctx *cc = arg;
	if (cc->err != IMAPQ_OK)
		return;
	cc->n = 0;
	struct msgtable_cursor c;
	for (const struct msg *m = msgtable_seek(mb->msgs, 0, &c); m;
	     m = msgtable_next(mb->msgs, &c)) {
		if (m->loc == 0 || journal_loc_segment(m->loc) != cc->segment)
			continue;
		if (cc->n == cc->cap) {
			size_t cap = cc->cap ? cc->cap * 2 : 64;
			struct msg *v = realloc(cc->v, cap * sizeof *v);
			if (!v) {
				cc->err = IMAPQ_E_NOMEM;
				return;
			}
			cc->v = v;
			cc->cap = cap;
		}
		cc->v[cc->n++] = *m;
	}
	for (size_t i = 0; i < cc->n && cc->err == IMAPQ_OK; i++) {
		cc->err = store_message_carry(s, mb, &cc->v[i], NULL);
		cc->carried++;
	}
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

/* Frees the oldest segment: rotates when it is the active one, carries, folds, then drops. */
static imapq_err compact_oldest(struct store *s)
{
	struct journal_segment_info segs[2];
	size_t n = 0;
	imapq_err err = IMAPQ_OK;
	struct carry_ctx cc = {.err = IMAPQ_OK};
	pthread_mutex_lock(&s->lock);
	journal_segments(s->journal, segs, 2, &n);
	if (n == 1) {
		err = store_rotate(s);
		journal_segments(s->journal, segs, 2, &n);
	}
	if (err == IMAPQ_OK && (n < 2 || segs[0].number == s->active_segment))
		err = IMAPQ_E_INVALID;
	if (err == IMAPQ_OK) {
		cc.segment = segs[0].number;
		store_mailboxes_each(s, carry_mailbox, &cc);
		err = cc.err;
	}
	struct store_segment *seg =
	    err == IMAPQ_OK ? store_segment_get(s, cc.segment, false) : NULL;
	if (seg)
		err = fold_floors(s, seg);
	if (err == IMAPQ_OK)
		forget_segment(s, cc.segment);
	store_finish_write(s, 0);
	pthread_mutex_unlock(&s->lock);
	free(cc.v);
	if (err == IMAPQ_OK)
		err = journal_drop_oldest(s->journal);
	if (err == IMAPQ_OK)
		log_info(STORE_LOG, "compacted segment %u: %llu messages carried", cc.segment,
			 (unsigned long long)cc.carried);
	else
		log_warn(STORE_LOG, "compaction failed: %s", imapq_err_message(err));
	return err;
}

imapq_err store_compact(struct store *s, bool force)
{
	imapq_err err = IMAPQ_OK;
	pthread_mutex_lock(&s->compact_run);
	struct journal_stats js;
	journal_stats(s->journal, &js);
	/* Each pass frees one segment; never more passes than there were segments. */
	for (uint32_t pass = 0; pass < js.segments && err == IMAPQ_OK; pass++) {
		if (!(force && pass == 0) && !compaction_due(s))
			break;
		err = compact_oldest(s);
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
