/* Message operations: append, fetch, expunge, copy and move (with the conditional move that
 * dead-lettering uses), the claim index and the CONDSTORE/QRESYNC queries. Flag changes live in
 * store_update.c. */
#include <stdlib.h>
#include <string.h>

#include "imap/base/crc32c.h"
#include "imap/base/limits.h"
#include "imap/base/log.h"
#include "imap/store/store-private.h"
#include "imap/store/store_records.h"

bool store_ranges_valid(const struct uid_range *ranges, size_t n)
{
	if (n && !ranges)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (ranges[i].lo > ranges[i].hi)
			return false;
		if (i && ranges[i].lo <= ranges[i - 1].hi)
			return false;
	}
	return true;
}

void store_each_in_ranges(struct mailbox *mb, const struct uid_range *ranges, size_t n,
			  void (*fn)(void *, const struct msg *), void *ctx)
{
	static const struct uid_range all = {0, UINT32_MAX};
	if (n == 0) {
		ranges = &all;
		n = 1;
	}
	for (size_t i = 0; i < n; i++) {
		struct msgtable_cursor c;
		for (const struct msg *m = msgtable_seek(mb->msgs, ranges[i].lo, &c);
		     m && m->uid <= ranges[i].hi; m = msgtable_next(mb->msgs, &c))
			fn(ctx, m);
	}
}

imapq_err store_append(struct store *s, uint32_t id, uint64_t flags, int64_t internaldate,
		       const struct journal_body *body, uint32_t *uid_r, uint64_t *modseq_r,
		       uint64_t *lsn_r)
{
	return store_append_due(s, id, flags, 0, internaldate, body, uid_r, modseq_r, lsn_r);
}

imapq_err store_append_due(struct store *s, uint32_t id, uint64_t flags, uint32_t due,
			   int64_t internaldate, const struct journal_body *body, uint32_t *uid_r,
			   uint64_t *modseq_r, uint64_t *lsn_r)
{
	if (!body)
		return IMAPQ_E_INVALID;
	struct store_new_message m = {
	    .flags = flags, .due = due, .internaldate = internaldate, .body = *body};
	size_t done;
	imapq_err err = store_append_batch(s, id, &m, 1, &done, lsn_r);
	if (err == IMAPQ_OK && uid_r)
		*uid_r = m.uid;
	if (err == IMAPQ_OK && modseq_r)
		*modseq_r = m.modseq;
	return err;
}

/* Logs and indexes one new message of mb under the lock. */
static imapq_err append_one(struct store *s, struct mailbox *mb, struct store_new_message *nm,
			    uint64_t *lsn)
{
	struct store_rec_message rm = {.id = mb->id,
				       .uid = mb->uidnext,
				       .modseq = mb->highestmodseq + 1,
				       .flags = nm->flags,
				       .internaldate = nm->internaldate,
				       .due = nm->due};
	struct store_buf b = {0};
	uint64_t loc = 0;
	store_rec_message_encode(&b, &rm);
	imapq_err err = store_buf_failed(&b) ? IMAPQ_E_NOMEM
					     : store_log(s, JOURNAL_GROW, STORE_REC_APPEND, b.data,
							 b.len, &nm->body, lsn, &loc);
	store_buf_free(&b);
	if (err != IMAPQ_OK)
		return err;
	struct msg m = {.uid = rm.uid,
			.size = (uint32_t)nm->body.len,
			.modseq = rm.modseq,
			.flags = nm->flags,
			.loc = loc,
			.internaldate = nm->internaldate,
			.due = nm->due};
	mb->uidnext++;
	mb->highestmodseq = rm.modseq;
	nm->uid = rm.uid;
	nm->modseq = rm.modseq;
	err = store_msg_add(s, mb, &m);
	if (err != IMAPQ_OK)
		log_error(STORE_LOG, "message %u/%u logged but not indexed", mb->id, m.uid);
	return err;
}

imapq_err store_append_batch(struct store *s, uint32_t id, struct store_new_message *msgs, size_t n,
			     size_t *done_r, uint64_t *lsn_r)
{
	*done_r = 0;
	if (n > 0 && !msgs)
		return IMAPQ_E_INVALID;
	uint64_t mask = 0;
	for (size_t i = 0; i < n; i++) {
		if (msgs[i].body.len > IMAPQ_MAX_MESSAGE_SIZE)
			return IMAPQ_E_TOOBIG;
		mask |= msgs[i].flags;
		msgs[i].uid = 0;
		msgs[i].modseq = 0;
	}
	uint64_t lsn = 0;
	imapq_err err = IMAPQ_OK;
	pthread_mutex_lock(&s->lock);
	struct mailbox *mb = store_mailbox_by_id(s, id);
	if (!mb) {
		err = IMAPQ_E_NONEXISTENT;
	} else if (mask & ~store_mailbox_flag_mask(mb)) {
		err = IMAPQ_E_INVALID;
	} else if ((uint64_t)mb->uidnext + n > UINT32_MAX) {
		err = IMAPQ_E_LIMIT;
	} else if ((err = store_quota_check(s, mb, n, n)) == IMAPQ_OK) {
		/* A message whose record is written counts as done even if indexing failed. */
		for (size_t i = 0; i < n && err == IMAPQ_OK; i++) {
			err = append_one(s, mb, &msgs[i], &lsn);
			if (msgs[i].uid != 0)
				*done_r = i + 1;
		}
		if (n == 0)
			lsn = journal_append_lsn(s->journal);
		store_finish_write(s, id);
	}
	pthread_mutex_unlock(&s->lock);
	/* Messages appended before a failure are real: the caller may wait for them. */
	if (err != IMAPQ_OK && lsn_r)
		*lsn_r = lsn;
	return store_done(s, err, lsn, lsn_r);
}

imapq_err store_message_get(struct store *s, uint32_t id, uint32_t uid, struct store_message *m_r)
{
	pthread_mutex_lock(&s->lock);
	struct mailbox *mb = store_mailbox_by_id(s, id);
	const struct msg *m = mb ? msgtable_find(mb->msgs, uid) : NULL;
	if (m)
		*m_r = store_public_msg(m);
	pthread_mutex_unlock(&s->lock);
	return !mb ? IMAPQ_E_NONEXISTENT : m ? IMAPQ_OK : IMAPQ_E_NOTFOUND;
}

/* Adapts store_each_in_ranges to a store_message_fn. */
struct visit_ctx {
	store_message_fn *fn;
	void *ctx;
};

static void visit_message(void *arg, const struct msg *m)
{
	struct visit_ctx *v = arg;
	struct store_message pm = store_public_msg(m);
	v->fn(v->ctx, &pm);
}

imapq_err store_messages(struct store *s, uint32_t id, const struct uid_range *ranges, size_t n,
			 store_message_fn *fn, void *ctx)
{
	if (!store_ranges_valid(ranges, n) || !fn)
		return IMAPQ_E_INVALID;
	pthread_mutex_lock(&s->lock);
	struct mailbox *mb = store_mailbox_by_id(s, id);
	struct visit_ctx v = {fn, ctx};
	if (mb)
		store_each_in_ranges(mb, ranges, n, visit_message, &v);
	pthread_mutex_unlock(&s->lock);
	return mb ? IMAPQ_OK : IMAPQ_E_NONEXISTENT;
}

imapq_err store_messages_page(struct store *s, uint32_t id, const struct uid_range *ranges,
			      size_t n, uint32_t from, size_t max, store_message_fn *fn, void *ctx,
			      uint32_t *next_r)
{
	static const struct uid_range all = {0, UINT32_MAX};
	*next_r = 0;
	if (!store_ranges_valid(ranges, n) || !fn || max == 0)
		return IMAPQ_E_INVALID;
	if (n == 0) {
		ranges = &all;
		n = 1;
	}
	pthread_mutex_lock(&s->lock);
	struct mailbox *mb = store_mailbox_by_id(s, id);
	/* The first range that reaches from. */
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (ranges[mid].hi < from)
			lo = mid + 1;
		else
			hi = mid;
	}
	size_t seen = 0;
	for (size_t i = lo; mb && from != 0 && i < n; i++) {
		struct msgtable_cursor c;
		const struct msg *m =
		    msgtable_seek(mb->msgs, from > ranges[i].lo ? from : ranges[i].lo, &c);
		for (; m && m->uid <= ranges[i].hi; m = msgtable_next(mb->msgs, &c)) {
			if (seen == max) {
				*next_r = m->uid;
				from = 0; /* the page is full */
				break;
			}
			struct store_message pm = store_public_msg(m);
			fn(ctx, &pm);
			seen++;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return mb ? IMAPQ_OK : IMAPQ_E_NONEXISTENT;
}

/* Looks up where a message's body lives. */
static imapq_err body_where(struct store *s, uint32_t id, uint32_t uid, uint64_t *loc_r,
			    uint32_t *size_r)
{
	pthread_mutex_lock(&s->lock);
	struct mailbox *mb = store_mailbox_by_id(s, id);
	const struct msg *m = mb ? msgtable_find(mb->msgs, uid) : NULL;
	if (m) {
		*loc_r = m->loc;
		*size_r = m->size;
	}
	pthread_mutex_unlock(&s->lock);
	return !mb ? IMAPQ_E_NONEXISTENT : m ? IMAPQ_OK : IMAPQ_E_NOTFOUND;
}

imapq_err store_body_read(struct store *s, uint32_t id, uint32_t uid, uint64_t offset, void *buf,
			  size_t len, size_t *got_r)
{
	uint64_t loc;
	uint32_t size;
	*got_r = 0;
	imapq_err err = body_where(s, id, uid, &loc, &size);
	/* The read runs unlocked; compaction may move the body meanwhile, so a failed read is
	 * retried at the message's new location. */
	for (int attempt = 0; err == IMAPQ_OK && attempt < 3; attempt++) {
		if (offset >= size)
			return IMAPQ_OK;
		size_t want = size - offset < len ? (size_t)(size - offset) : len;
		err = journal_body_read(s->journal, loc, offset, buf, want);
		if (err == IMAPQ_OK) {
			*got_r = want;
			return IMAPQ_OK;
		}
		uint64_t old_loc = loc;
		if (body_where(s, id, uid, &loc, &size) != IMAPQ_OK || loc == old_loc)
			return err;
		err = IMAPQ_OK;
	}
	return err == IMAPQ_OK ? IMAPQ_E_IO : err;
}

imapq_err store_seq_of_uid(struct store *s, uint32_t id, uint32_t uid, uint32_t *seq_r)
{
	pthread_mutex_lock(&s->lock);
	struct mailbox *mb = store_mailbox_by_id(s, id);
	if (mb)
		*seq_r = msgtable_rank(mb->msgs, uid);
	pthread_mutex_unlock(&s->lock);
	return mb ? IMAPQ_OK : IMAPQ_E_NONEXISTENT;
}

imapq_err store_uid_of_seq(struct store *s, uint32_t id, uint32_t seq, uint32_t *uid_r)
{
	pthread_mutex_lock(&s->lock);
	struct mailbox *mb = store_mailbox_by_id(s, id);
	uint32_t uid = mb ? msgtable_select(mb->msgs, seq) : 0;
	*uid_r = uid;
	pthread_mutex_unlock(&s->lock);
	return !mb ? IMAPQ_E_NONEXISTENT : uid ? IMAPQ_OK : IMAPQ_E_NOTFOUND;
}

/* --- Expunge, copy, move --- */

/* A growable list of UIDs. */
struct uid_list {
	uint32_t *v;
	size_t n, cap;
	bool nomem;
	bool deleted_only;
};

static void uid_list_push(struct uid_list *l, uint32_t uid)
{
	if (l->nomem)
		return;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		uint32_t *v = realloc(l->v, cap * sizeof *v);
		if (!v) {
			l->nomem = true;
			return;
		}
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = uid;
}

static void collect_expunge(void *arg, const struct msg *m)
{
	struct uid_list *l = arg;
	if (!l->deleted_only || (m->flags & STORE_DELETED))
		uid_list_push(l, m->uid);
}

/* Logs and applies the expunge of uids (which must exist), all at one new mod-sequence. */
static imapq_err expunge_uids(struct store *s, struct mailbox *mb, const uint32_t *uids, size_t n,
			      store_uid_fn *fn, void *ctx, uint64_t *lsn_r)
{
	/* One expunge, one mod-sequence: the expunge history then keeps a run per stretch of
	 * adjacent UIDs, not one per message, so an EXPUNGE of a million messages does not push
	 * the history of every selected session out. */
	uint64_t modseq = n > 0 ? mb->highestmodseq + 1 : 0;
	for (size_t i = 0; i < n;) {
		size_t count = n - i < STORE_RECORD_MAX_ENTRIES ? n - i : STORE_RECORD_MAX_ENTRIES;
		struct store_buf b = {0};
		store_buf_u32(&b, mb->id);
		store_buf_u32(&b, (uint32_t)count);
		for (size_t k = 0; k < count; k++) {
			store_buf_u32(&b, uids[i + k]);
			store_buf_u64(&b, modseq);
		}
		imapq_err err = store_buf_failed(&b)
				    ? IMAPQ_E_NOMEM
				    : store_log(s, JOURNAL_SHRINK, STORE_REC_EXPUNGE, b.data, b.len,
						NULL, lsn_r, NULL);
		store_buf_free(&b);
		if (err != IMAPQ_OK)
			return err;
		mb->highestmodseq = modseq;
		for (size_t k = 0; k < count; k++) {
			store_msg_remove(s, mb, uids[i + k], modseq, NULL);
			store_segment_note_expunge(s, mb, s->active_segment, uids[i + k], modseq);
			if (fn)
				fn(ctx, uids[i + k]);
		}
		i += count;
	}
	return IMAPQ_OK;
}

imapq_err store_expunge(struct store *s, uint32_t id, const struct uid_range *ranges, size_t n,
			store_uid_fn *fn, void *ctx, uint64_t *lsn_r)
{
	if (!store_ranges_valid(ranges, n))
		return IMAPQ_E_INVALID;
	uint64_t lsn = 0;
	imapq_err err = IMAPQ_OK;
	struct uid_list l = {.deleted_only = true};
	pthread_mutex_lock(&s->lock);
	struct mailbox *mb = store_mailbox_by_id(s, id);
	if (!mb) {
		err = IMAPQ_E_NONEXISTENT;
	} else {
		store_each_in_ranges(mb, ranges, n, collect_expunge, &l);
		if (l.nomem)
			err = IMAPQ_E_NOMEM;
		else if (l.n)
			err = expunge_uids(s, mb, l.v, l.n, fn, ctx, &lsn);
		else
			lsn = journal_append_lsn(s->journal);
		store_finish_write(s, id);
	}
	pthread_mutex_unlock(&s->lock);
	free(l.v);
	return store_done(s, err, lsn, lsn_r);
}

/* Snapshot of the source messages of a copy. */
struct msg_list {
	struct msg *v;
	size_t n, cap;
	bool nomem;
	uint64_t flags_union;
};

static void collect_msg(void *arg, const struct msg *m)
{
	struct msg_list *l = arg;
	if (l->nomem)
		return;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		struct msg *v = realloc(l->v, cap * sizeof *v);
		if (!v) {
			l->nomem = true;
			return;
		}
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = *m;
	l->flags_union |= m->flags;
}

/* Builds kmap (source keyword -> destination keyword), defining missing keywords in dst. */
static imapq_err map_keywords(struct store *s, struct mailbox *src, struct mailbox *dst,
			      uint64_t used, unsigned *kmap, uint64_t *lsn_r)
{
	unsigned missing = 0;
	for (uint32_t k = 0; k < src->nkeywords; k++) {
		const char *name = src->keywords[k];
		if ((used & STORE_KEYWORD(k)) && store_keyword_lookup(dst, name, strlen(name)) < 0)
			missing++;
	}
	if (dst->nkeywords + missing > IMAPQ_MAX_KEYWORDS)
		return IMAPQ_E_LIMIT;
	for (uint32_t k = 0; k < src->nkeywords; k++) {
		if (!(used & STORE_KEYWORD(k)))
			continue;
		const char *name = src->keywords[k];
		size_t len = strlen(name);
		int d = store_keyword_lookup(dst, name, len);
		if (d < 0) {
			struct store_buf b = {0};
			store_buf_u32(&b, dst->id);
			store_buf_u8(&b, (uint8_t)dst->nkeywords);
			store_buf_u8(&b, (uint8_t)len);
			store_buf_bytes(&b, name, len);
			imapq_err err = store_buf_failed(&b)
					    ? IMAPQ_E_NOMEM
					    : store_log(s, JOURNAL_SHRINK, STORE_REC_KEYWORD,
							b.data, b.len, NULL, lsn_r, NULL);
			store_buf_free(&b);
			if (err == IMAPQ_OK)
				err = store_keyword_insert(dst, name, len);
			if (err != IMAPQ_OK)
				return err;
			d = (int)dst->nkeywords - 1;
		}
		kmap[k] = (unsigned)d;
	}
	return IMAPQ_OK;
}

/* Translates a source message's flags into the destination's keyword numbering. */
static uint64_t map_flags(uint64_t flags, const unsigned *kmap)
{
	uint64_t out = flags & (STORE_KEYWORD(0) - 1);
	for (unsigned k = 0; k < IMAPQ_MAX_KEYWORDS; k++)
		if (flags & STORE_KEYWORD(k))
			out |= STORE_KEYWORD(kmap[k]);
	return out;
}

imapq_err store_body_load(struct journal *j, const struct msg *m, struct store_loaded_body *out)
{
	void *data = malloc(m->size ? m->size : 1);
	if (!data)
		return IMAPQ_E_NOMEM;
	imapq_err err = m->size ? journal_body_read(j, m->loc, 0, data, m->size) : IMAPQ_OK;
	if (err != IMAPQ_OK) {
		free(data);
		return err;
	}
	uint32_t crc = crc32c(0, data, m->size), written = crc;
	if (m->size)
		err = journal_body_crc(j, m->loc, STORE_REC_MESSAGE_BYTES, m->size, &written);
	if (err != IMAPQ_OK && err != IMAPQ_E_CORRUPT) {
		free(data);
		return err;
	}
	*out = (struct store_loaded_body){.body = {.data = data,
						   .fd = -1,
						   .len = m->size,
						   .crc = written,
						   .damaged = written != crc},
					  .header_damaged = err == IMAPQ_E_CORRUPT};
	return IMAPQ_OK;
}

/* Counts and logs a body loaded from message m that failed its check. Under the lock. */
static void note_damage(struct store *s, const struct msg *m, const struct store_loaded_body *lb)
{
	if (!lb->body.damaged && !lb->header_damaged)
		return;
	s->damaged_bodies++;
	log_error(STORE_LOG, "the body of UID %u in segment %u %s; copied as it is", m->uid,
		  journal_loc_segment(m->loc),
		  lb->header_damaged ? "has a damaged record header"
				     : "no longer matches its checksum");
}

/* Writes the body lb, loaded from message m, again as a record of type whose state is rm. */
static imapq_err write_message(struct store *s, uint8_t type, const struct msg *m,
			       const struct store_loaded_body *lb,
			       const struct store_rec_message *rm, uint64_t *lsn_r, uint64_t *loc_r)
{
	note_damage(s, m, lb);
	struct store_buf b = {0};
	store_rec_message_encode(&b, rm);
	imapq_err err =
	    store_buf_failed(&b)
		? IMAPQ_E_NOMEM
		: store_log(s, type == STORE_REC_CARRIED ? JOURNAL_SHRINK : JOURNAL_GROW, type,
			    b.data, b.len, &lb->body, lsn_r, loc_r);
	store_buf_free(&b);
	return err;
}

imapq_err store_message_carry(struct store *s, struct mailbox *mb, const struct msg *m,
			      const struct store_loaded_body *lb, uint64_t *lsn_r)
{
	uint64_t loc = 0;
	struct store_rec_message rm = {.id = mb->id,
				       .uid = m->uid,
				       .modseq = m->modseq,
				       .flags = m->flags,
				       .internaldate = m->internaldate,
				       .attempts = m->attempts,
				       .due = m->due};
	imapq_err err = write_message(s, STORE_REC_CARRIED, m, lb, &rm, lsn_r, &loc);
	if (err == IMAPQ_OK)
		store_msg_set_loc(s, mb, m->uid, loc);
	return err;
}

/* How a copy is made: clear_flags (in the source's numbering) are removed from it; with fresh,
 * it starts over as a new job (no attempts, internal date fresh_date). */
struct copy_how {
	uint64_t clear_flags;
	bool fresh;
	int64_t fresh_date;
};

/* Copies the snapshot l into dst, calling fn for each; stops at the first failure. A copy keeps
 * flags, attempts and internal date unless how says otherwise; its due time belongs to the
 * source queue's timers and starts cleared. */
static imapq_err copy_messages(struct store *s, struct mailbox *dst, const struct msg_list *l,
			       const unsigned *kmap, const struct copy_how *how, store_copy_fn *fn,
			       void *ctx, uint32_t *dst_uid_r, uint64_t *lsn_r)
{
	for (size_t i = 0; i < l->n; i++) {
		const struct msg *m = &l->v[i];
		struct store_rec_message rm = {
		    .id = dst->id,
		    .uid = dst->uidnext,
		    .modseq = dst->highestmodseq + 1,
		    .flags = map_flags(m->flags & ~how->clear_flags, kmap),
		    .internaldate = how->fresh ? how->fresh_date : m->internaldate,
		    .attempts = how->fresh ? 0 : m->attempts};
		uint64_t loc = 0;
		struct store_loaded_body lb;
		imapq_err err = store_body_load(s->journal, m, &lb);
		if (err == IMAPQ_OK) {
			err = write_message(s, STORE_REC_APPEND, m, &lb, &rm, lsn_r, &loc);
			free((void *)lb.body.data);
		}
		if (err != IMAPQ_OK)
			return err;
		struct msg copy = *m;
		copy.uid = rm.uid;
		copy.modseq = rm.modseq;
		copy.flags = rm.flags;
		copy.internaldate = rm.internaldate;
		copy.attempts = rm.attempts;
		copy.due = 0;
		copy.loc = loc;
		dst->uidnext++;
		dst->highestmodseq = rm.modseq;
		err = store_msg_add(s, dst, &copy);
		if (err != IMAPQ_OK)
			return err;
		if (dst_uid_r)
			*dst_uid_r = rm.uid;
		if (fn)
			fn(ctx, m->uid, rm.uid);
	}
	return IMAPQ_OK;
}

/* Copies (and with move, expunges) the snapshot l of from into to, under the lock; tells the
 * change hook about from when messages left it. Unless exempt, the message limits are checked
 * first: a move adds to its destination only (nothing within one mailbox) and never to the
 * store's total. */
static imapq_err transfer(struct store *s, struct mailbox *from, struct mailbox *to,
			  const struct msg_list *l, const struct copy_how *how, bool move,
			  bool exempt, store_copy_fn *fn, void *ctx, uint32_t *dst_uid_r,
			  uint64_t *lsn_r)
{
	unsigned kmap[IMAPQ_MAX_KEYWORDS] = {0};
	struct uid_list moved = {0};
	imapq_err err = IMAPQ_OK;
	if ((uint64_t)to->uidnext + l->n >= UINT32_MAX)
		err = IMAPQ_E_LIMIT;
	else if (!exempt)
		err = store_quota_check(s, to, move && from == to ? 0 : l->n, move ? 0 : l->n);
	if (err == IMAPQ_OK)
		err = map_keywords(s, from, to, l->flags_union & ~how->clear_flags, kmap, lsn_r);
	if (err == IMAPQ_OK)
		err = copy_messages(s, to, l, kmap, how, fn, ctx, dst_uid_r, lsn_r);
	for (size_t i = 0; err == IMAPQ_OK && move && i < l->n; i++)
		uid_list_push(&moved, l->v[i].uid);
	if (err == IMAPQ_OK && moved.nomem)
		err = IMAPQ_E_NOMEM;
	if (err == IMAPQ_OK && moved.n)
		err = expunge_uids(s, from, moved.v, moved.n, NULL, NULL, lsn_r);
	if (err == IMAPQ_OK && *lsn_r == 0)
		*lsn_r = journal_append_lsn(s->journal);
	if (move && s->change_fn != NULL)
		s->change_fn(s->change_arg, from->id);
	free(moved.v);
	return err;
}

imapq_err store_copy(struct store *s, uint32_t src, const struct uid_range *ranges, size_t n,
		     uint32_t dst, bool move, store_copy_fn *fn, void *ctx, uint64_t *lsn_r)
{
	if (!store_ranges_valid(ranges, n))
		return IMAPQ_E_INVALID;
	uint64_t lsn = 0;
	imapq_err err = IMAPQ_OK;
	struct msg_list l = {0};
	pthread_mutex_lock(&s->lock);
	struct mailbox *from = store_mailbox_by_id(s, src);
	struct mailbox *to = store_mailbox_by_id(s, dst);
	if (!from || !to) {
		err = IMAPQ_E_NONEXISTENT;
	} else {
		store_each_in_ranges(from, ranges, n, collect_msg, &l);
		err = l.nomem ? IMAPQ_E_NOMEM
			      : transfer(s, from, to, &l, &(struct copy_how){0}, move, false, fn,
					 ctx, NULL, &lsn);
		store_finish_write(s, to->id);
	}
	pthread_mutex_unlock(&s->lock);
	free(l.v);
	return store_done(s, err, lsn, lsn_r);
}

/* Moves message uid of src to dst when its mod-sequence is at most unchangedsince, made as how
 * says; exempt skips the message limits. */
static imapq_err move_one(struct store *s, uint32_t src, uint32_t uid, uint64_t unchangedsince,
			  uint32_t dst, const struct copy_how *how, bool exempt,
			  uint32_t *dst_uid_r, uint64_t *lsn_r)
{
	uint64_t lsn = 0;
	uint32_t dst_uid = 0;
	imapq_err err = IMAPQ_OK;
	pthread_mutex_lock(&s->lock);
	struct mailbox *from = store_mailbox_by_id(s, src);
	struct mailbox *to = store_mailbox_by_id(s, dst);
	const struct msg *m = from ? msgtable_find(from->msgs, uid) : NULL;
	if (!from || !to) {
		err = IMAPQ_E_NONEXISTENT;
	} else if (!m) {
		err = IMAPQ_E_NOTFOUND;
	} else if (m->modseq > unchangedsince) {
		err = IMAPQ_E_MODIFIED;
	} else {
		struct msg snapshot = *m;
		struct msg_list l = {.v = &snapshot, .n = 1, .cap = 1, .flags_union = m->flags};
		err = transfer(s, from, to, &l, how, true, exempt, NULL, NULL, &dst_uid, &lsn);
		store_finish_write(s, to->id);
	}
	pthread_mutex_unlock(&s->lock);
	if (err == IMAPQ_OK && dst_uid_r)
		*dst_uid_r = dst_uid;
	return store_done(s, err, lsn, lsn_r);
}

imapq_err store_move_if_unchanged(struct store *s, uint32_t src, uint32_t uid,
				  uint64_t unchangedsince, uint32_t dst, uint64_t clear_flags,
				  uint32_t *dst_uid_r, uint64_t *lsn_r)
{
	/* Exempt from the limits: it never raises the total, and a lease expiry that dead-letters
	 * must not fail because the dead-letter mailbox is full. */
	return move_one(s, src, uid, unchangedsince, dst,
			&(struct copy_how){.clear_flags = clear_flags}, true, dst_uid_r, lsn_r);
}

imapq_err store_requeue_if_unchanged(struct store *s, uint32_t src, uint32_t uid,
				     uint64_t unchangedsince, uint32_t dst, int64_t internaldate,
				     uint32_t *dst_uid_r, uint64_t *lsn_r)
{
	const struct copy_how how = {
	    .clear_flags = UINT64_MAX, .fresh = true, .fresh_date = internaldate};
	return move_one(s, src, uid, unchangedsince, dst, &how, false, dst_uid_r, lsn_r);
}

/* --- Queries --- */

imapq_err store_first_match(struct store *s, uint32_t id, uint64_t mask, uint64_t want,
			    uint32_t from, uint32_t *uid_r)
{
	pthread_mutex_lock(&s->lock);
	struct mailbox *mb = store_mailbox_by_id(s, id);
	imapq_err err =
	    mb ? msgtable_first_match(mb->msgs, mask, want, from, uid_r) : IMAPQ_E_NONEXISTENT;
	pthread_mutex_unlock(&s->lock);
	return err;
}

imapq_err store_count_match(struct store *s, uint32_t id, uint64_t mask, uint64_t want,
			    uint32_t *count_r)
{
	pthread_mutex_lock(&s->lock);
	struct mailbox *mb = store_mailbox_by_id(s, id);
	imapq_err err =
	    mb ? msgtable_count_match(mb->msgs, mask, want, count_r) : IMAPQ_E_NONEXISTENT;
	pthread_mutex_unlock(&s->lock);
	return err;
}

/* Calls fn for at most max messages changed after modseq with a UID >= from; returns the UID of
 * the next one (0 when none is left). Caller holds the lock. */
static uint32_t changed_walk(const struct mailbox *mb, uint64_t modseq, uint32_t from, size_t max,
			     store_message_fn *fn, void *ctx)
{
	struct msgtable_cursor c;
	if (msgtable_seek(mb->msgs, from, &c) == NULL)
		return 0;
	size_t seen = 0;
	for (const struct msg *m; (m = msgtable_changed_next(mb->msgs, modseq, &c)); c.slot++) {
		if (seen++ == max)
			return m->uid;
		struct store_message pm = store_public_msg(m);
		fn(ctx, &pm);
	}
	return 0;
}

imapq_err store_changed_since(struct store *s, uint32_t id, uint64_t modseq, store_message_fn *fn,
			      void *ctx)
{
	uint32_t next;
	return store_changed_since_page(s, id, modseq, 1, SIZE_MAX, fn, ctx, &next);
}

imapq_err store_changed_since_page(struct store *s, uint32_t id, uint64_t modseq, uint32_t from,
				   size_t max, store_message_fn *fn, void *ctx, uint32_t *next_r)
{
	*next_r = 0;
	if (!fn || max == 0 || from == 0)
		return IMAPQ_E_INVALID;
	pthread_mutex_lock(&s->lock);
	struct mailbox *mb = store_mailbox_by_id(s, id);
	if (mb)
		*next_r = changed_walk(mb, modseq, from, max, fn, ctx);
	pthread_mutex_unlock(&s->lock);
	return mb ? IMAPQ_OK : IMAPQ_E_NONEXISTENT;
}

/* Ranges gathered for a vanished answer before sorting and merging. */
struct range_list {
	struct uid_range *v;
	size_t n, cap;
	bool nomem;
};

static void range_push(void *arg, uint32_t lo, uint32_t hi)
{
	struct range_list *l = arg;
	if (l->nomem)
		return;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		struct uid_range *v = realloc(l->v, cap * sizeof *v);
		if (!v) {
			l->nomem = true;
			return;
		}
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = (struct uid_range){lo, hi};
}

static int range_cmp(const void *a, const void *b)
{
	const struct uid_range *x = a, *y = b;
	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

imapq_err store_vanished_since(struct store *s, uint32_t id, uint64_t modseq, store_range_fn *fn,
			       void *ctx)
{
	if (!fn)
		return IMAPQ_E_INVALID;
	struct range_list l = {0};
	pthread_mutex_lock(&s->lock);
	struct mailbox *mb = store_mailbox_by_id(s, id);
	if (mb) {
		uint32_t floor_uid = 0;
		if (expunge_log_runs(mb->expunged) > 0) {
			floor_uid = expunge_log_since(mb->expunged, modseq, range_push, &l);
		} else {
			/* No exact runs: only the floor can answer. */
			uint64_t floor_modseq;
			expunge_log_floor(mb->expunged, &floor_modseq, &floor_uid);
			if (modseq >= floor_modseq)
				floor_uid = 0;
		}
		if (floor_uid >= mb->uidnext)
			floor_uid = mb->uidnext - 1;
		/* Below the floor every absent UID may have vanished: report the gaps. */
		uint32_t prev = 0;
		struct msgtable_cursor c;
		for (const struct msg *m = msgtable_seek(mb->msgs, 1, &c); m && m->uid <= floor_uid;
		     m = msgtable_next(mb->msgs, &c)) {
			if (m->uid > prev + 1)
				range_push(&l, prev + 1, m->uid - 1);
			prev = m->uid;
		}
		if (floor_uid > prev)
			range_push(&l, prev + 1, floor_uid);
		if (l.n > 1)
			qsort(l.v, l.n, sizeof *l.v, range_cmp);
		for (size_t i = 0; !l.nomem && i < l.n;) {
			struct uid_range r = l.v[i++];
			while (i < l.n && (uint64_t)l.v[i].lo <= (uint64_t)r.hi + 1) {
				if (l.v[i].hi > r.hi)
					r.hi = l.v[i].hi;
				i++;
			}
			fn(ctx, r.lo, r.hi);
		}
	}
	pthread_mutex_unlock(&s->lock);
	free(l.v);
	if (!mb)
		return IMAPQ_E_NONEXISTENT;
	return l.nomem ? IMAPQ_E_NOMEM : IMAPQ_OK;
}

imapq_err store_expunged_since(struct store *s, uint32_t id, uint64_t modseq, store_range_fn *fn,
			       void *ctx, uint64_t *highest_r)
{
	if (!fn)
		return IMAPQ_E_INVALID;
	struct range_list l = {0};
	imapq_err err = IMAPQ_OK;
	pthread_mutex_lock(&s->lock);
	struct mailbox *mb = store_mailbox_by_id(s, id);
	if (!mb) {
		err = IMAPQ_E_NONEXISTENT;
	} else {
		uint64_t floor_modseq;
		uint32_t floor_uid;
		*highest_r = mb->highestmodseq;
		expunge_log_floor(mb->expunged, &floor_modseq, &floor_uid);
		/* Below the floor the history is a superset: the caller cannot be answered. */
		if (modseq < floor_modseq ||
		    expunge_log_since(mb->expunged, modseq, range_push, &l) != 0)
			err = IMAPQ_E_LIMIT;
		else if (l.nomem)
			err = IMAPQ_E_NOMEM;
	}
	pthread_mutex_unlock(&s->lock);
	/* Runs arrive in ascending UID order, merged; the callback runs without the lock. */
	for (size_t i = 0; err == IMAPQ_OK && i < l.n; i++)
		fn(ctx, l.v[i].lo, l.v[i].hi);
	free(l.v);
	return err;
}
