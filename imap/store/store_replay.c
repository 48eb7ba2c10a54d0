/* Recovery: applies journal records to the store. Every record is decoded defensively; one that
 * cannot be decoded is logged and skipped, and records naming unknown mailboxes or messages are
 * ignored, so any journal yields a valid store. While replaying, each mailbox keeps its messages
 * in a UID hash map, because carried records (compaction) bring back old UIDs after newer ones
 * and the msgtable only takes ascending UIDs; the maps become msgtables at the end. */
#include <stdlib.h>
#include <string.h>

#include "imap/base/limits.h"
#include "imap/base/log.h"
#include "imap/store/store-private.h"
#include "imap/store/store_records.h"

/* Open addressing with linear probing; UID 0 marks a free slot. */
struct store_uidmap {
	struct msg *slots;
	uint32_t mask; /* capacity - 1, a power of two minus one */
	uint32_t n;
};

static uint32_t uidmap_slot(const struct store_uidmap *map, uint32_t uid)
{
	return (uint32_t)((uid * 2654435761u) & map->mask);
}

void store_uidmap_free(struct store_uidmap **map)
{
	if (!*map)
		return;
	free((*map)->slots);
	free(*map);
	*map = NULL;
}

const struct msg *store_uidmap_find(const struct store_uidmap *map, uint32_t uid)
{
	if (!map || uid == 0)
		return NULL;
	for (uint32_t i = uidmap_slot(map, uid);; i = (i + 1) & map->mask) {
		if (map->slots[i].uid == uid)
			return &map->slots[i];
		if (map->slots[i].uid == 0)
			return NULL;
	}
}

/* Moves every entry into a table of twice the size. */
static imapq_err uidmap_grow(struct store_uidmap *map)
{
	uint32_t cap = map->mask ? (map->mask + 1) * 2 : 64;
	struct msg *slots = calloc(cap, sizeof *slots);
	if (!slots)
		return IMAPQ_E_NOMEM;
	struct store_uidmap bigger = {.slots = slots, .mask = cap - 1};
	for (uint32_t i = 0; map->slots && i <= map->mask; i++) {
		if (map->slots[i].uid == 0)
			continue;
		uint32_t j = uidmap_slot(&bigger, map->slots[i].uid);
		while (slots[j].uid)
			j = (j + 1) & bigger.mask;
		slots[j] = map->slots[i];
	}
	free(map->slots);
	map->slots = slots;
	map->mask = bigger.mask;
	return IMAPQ_OK;
}

imapq_err store_uidmap_put(struct store_uidmap **mapp, const struct msg *m)
{
	if (m->uid == 0)
		return IMAPQ_E_INVALID;
	if (!*mapp && !(*mapp = calloc(1, sizeof **mapp)))
		return IMAPQ_E_NOMEM;
	struct store_uidmap *map = *mapp;
	if (!map->slots || (uint64_t)(map->n + 1) * 10 > (uint64_t)(map->mask + 1) * 7) {
		imapq_err err = uidmap_grow(map);
		if (err != IMAPQ_OK)
			return err;
	}
	uint32_t i = uidmap_slot(map, m->uid);
	while (map->slots[i].uid && map->slots[i].uid != m->uid)
		i = (i + 1) & map->mask;
	if (map->slots[i].uid == 0)
		map->n++;
	map->slots[i] = *m;
	return IMAPQ_OK;
}

bool store_uidmap_remove(struct store_uidmap *map, uint32_t uid, struct msg *removed_r)
{
	struct msg *hit = (struct msg *)store_uidmap_find(map, uid);
	if (!hit)
		return false;
	if (removed_r)
		*removed_r = *hit;
	/* Backward-shift deletion keeps probe chains intact without tombstones. */
	uint32_t i = (uint32_t)(hit - map->slots);
	for (uint32_t j = (i + 1) & map->mask; map->slots[j].uid; j = (j + 1) & map->mask) {
		uint32_t home = uidmap_slot(map, map->slots[j].uid);
		if (((j - home) & map->mask) >= ((j - i) & map->mask)) {
			map->slots[i] = map->slots[j];
			i = j;
		}
	}
	map->slots[i].uid = 0;
	map->n--;
	return true;
}

/* Logs a record that cannot be decoded; replay goes on without it. */
static imapq_err skip(const struct journal_record *rec, const char *why)
{
	log_warn(STORE_LOG, "skipping journal record type %u at lsn %llu: %s", rec->type,
		 (unsigned long long)rec->lsn, why);
	return IMAPQ_OK;
}

static imapq_err replay_create(struct store *s, const struct journal_record *rec)
{
	struct store_reader r;
	char name[IMAPQ_MAX_MAILBOX_NAME + 1];
	store_reader_init(&r, rec->meta, rec->meta_len);
	uint32_t id = store_read_u32(&r), uidvalidity = store_read_u32(&r);
	uint16_t len = store_read_u16(&r);
	const uint8_t *p = store_read_bytes(&r, len);
	if (!store_reader_done(&r) || !store_rec_cstr(p, len, name, sizeof name) ||
	    !store_mailbox_name_valid(name) || id == 0 || id == UINT32_MAX)
		return skip(rec, "malformed mailbox create");
	if (id >= s->next_id)
		s->next_id = id + 1;
	if (uidvalidity > s->last_uidvalidity)
		s->last_uidvalidity = uidvalidity;
	if (store_mailbox_by_id(s, id) || store_mailbox_by_name(s, name))
		return skip(rec, "mailbox id or name already exists");
	return store_mailbox_insert(s, id, uidvalidity, name) ? IMAPQ_OK : IMAPQ_E_NOMEM;
}

static imapq_err replay_delete(struct store *s, const struct journal_record *rec)
{
	struct store_reader r;
	store_reader_init(&r, rec->meta, rec->meta_len);
	uint32_t id = store_read_u32(&r);
	if (!store_reader_done(&r))
		return skip(rec, "malformed mailbox delete");
	struct mailbox *mb = store_mailbox_by_id(s, id);
	if (mb && strcmp(mb->name, "INBOX") != 0)
		store_mailbox_remove(s, mb);
	return IMAPQ_OK;
}

static imapq_err replay_rename(struct store *s, const struct journal_record *rec)
{
	struct store_reader r;
	char name[IMAPQ_MAX_MAILBOX_NAME + 1];
	store_reader_init(&r, rec->meta, rec->meta_len);
	uint32_t count = store_read_u32(&r);
	for (uint32_t i = 0; i < count && !r.failed; i++) {
		uint32_t id = store_read_u32(&r);
		uint16_t len = store_read_u16(&r);
		const uint8_t *p = store_read_bytes(&r, len);
		if (r.failed || !store_rec_cstr(p, len, name, sizeof name) ||
		    !store_mailbox_name_valid(name))
			return skip(rec, "malformed mailbox rename");
		struct mailbox *mb = store_mailbox_by_id(s, id);
		struct mailbox *holder = store_mailbox_by_name(s, name);
		if (mb && !holder && strcmp(mb->name, "INBOX") != 0 &&
		    store_mailbox_set_name(s, mb, name) != IMAPQ_OK)
			return IMAPQ_E_NOMEM;
	}
	return store_reader_done(&r) ? IMAPQ_OK : skip(rec, "malformed mailbox rename");
}

static imapq_err replay_keyword(struct store *s, const struct journal_record *rec)
{
	struct store_reader r;
	store_reader_init(&r, rec->meta, rec->meta_len);
	uint32_t id = store_read_u32(&r);
	uint8_t index = store_read_u8(&r), len = store_read_u8(&r);
	const char *name = (const char *)store_read_bytes(&r, len);
	if (!store_reader_done(&r) || len == 0 || len > IMAPQ_MAX_KEYWORD || memchr(name, 0, len))
		return skip(rec, "malformed keyword");
	struct mailbox *mb = store_mailbox_by_id(s, id);
	if (!mb || index != mb->nkeywords || store_keyword_lookup(mb, name, len) >= 0 ||
	    mb->nkeywords >= IMAPQ_MAX_KEYWORDS)
		return IMAPQ_OK;
	return store_keyword_insert(mb, name, len);
}

/* Reads one annotation (key, set flag, value); false when malformed. */
static bool read_annotation(struct store_reader *r, bool with_flag, const char **key_r,
			    size_t *klen_r, const char **value_r, size_t *vlen_r)
{
	*klen_r = store_read_u16(r);
	*key_r = (const char *)store_read_bytes(r, *klen_r);
	bool set = with_flag ? store_read_u8(r) != 0 : true;
	*value_r = NULL;
	*vlen_r = 0;
	if (set) {
		*vlen_r = store_read_u32(r);
		*value_r = (const char *)store_read_bytes(r, *vlen_r);
	}
	return !r->failed && *klen_r > 0 && *klen_r <= IMAPQ_MAX_ANNOTATION_KEY &&
	       !memchr(*key_r, 0, *klen_r) && *vlen_r <= IMAPQ_MAX_ANNOTATION_VALUE &&
	       (!*value_r || !memchr(*value_r, 0, *vlen_r));
}

static imapq_err replay_annotation(struct store *s, const struct journal_record *rec)
{
	struct store_reader r;
	const char *key, *value;
	size_t klen, vlen;
	store_reader_init(&r, rec->meta, rec->meta_len);
	uint32_t id = store_read_u32(&r);
	if (!read_annotation(&r, true, &key, &klen, &value, &vlen) || !store_reader_done(&r))
		return skip(rec, "malformed annotation");
	struct mailbox *mb = store_mailbox_by_id(s, id);
	if (!mb)
		return IMAPQ_OK;
	imapq_err err = store_annotation_put(mb, key, klen, value, vlen);
	return err == IMAPQ_E_LIMIT ? skip(rec, "too many annotations") : err;
}

/* Raises a mailbox's counters so they cover a message seen in the journal. */
static void cover(struct mailbox *mb, uint32_t uid, uint64_t modseq)
{
	if (uid >= mb->uidnext)
		mb->uidnext = uid == UINT32_MAX ? UINT32_MAX : uid + 1;
	if (modseq > mb->highestmodseq)
		mb->highestmodseq = modseq;
}

static imapq_err replay_message(struct store *s, const struct journal_record *rec)
{
	struct store_rec_message rm;
	if (store_rec_message_decode(rec->meta, rec->meta_len, &rm) != IMAPQ_OK)
		return skip(rec, "malformed message");
	if (rec->body_len > IMAPQ_MAX_MESSAGE_SIZE || (rec->body_len && !rec->body_loc))
		return skip(rec, "message body out of bounds");
	struct mailbox *mb = store_mailbox_by_id(s, rm.id);
	if (!mb)
		return IMAPQ_OK;
	struct msg m = {.uid = rm.uid,
			.size = (uint32_t)rec->body_len,
			.modseq = rm.modseq,
			.flags = rm.flags & store_mailbox_flag_mask(mb),
			.loc = rec->body_loc,
			.internaldate = rm.internaldate,
			.attempts = rm.attempts,
			.due = rm.due};
	cover(mb, rm.uid, rm.modseq);
	return store_msg_add(s, mb, &m);
}

static imapq_err replay_flags(struct store *s, const struct journal_record *rec)
{
	struct store_reader r;
	store_reader_init(&r, rec->meta, rec->meta_len);
	uint32_t id = store_read_u32(&r), count = store_read_u32(&r);
	if (r.failed || (uint64_t)count * STORE_REC_STATE_BYTES != r.left)
		return skip(rec, "malformed flags");
	struct mailbox *mb = store_mailbox_by_id(s, id);
	for (uint32_t i = 0; mb && i < count; i++) {
		struct store_rec_state st;
		store_rec_state_decode(&r, &st);
		if (!store_msg_find(mb, st.uid) || st.uid >= mb->uidnext || st.modseq == 0)
			continue;
		struct msg m = {.uid = st.uid,
				.modseq = st.modseq,
				.flags = st.flags & store_mailbox_flag_mask(mb),
				.attempts = st.attempts,
				.due = st.due};
		store_msg_update(s, mb, &m);
		cover(mb, st.uid, st.modseq);
	}
	return IMAPQ_OK;
}

static imapq_err replay_expunge(struct store *s, const struct journal_record *rec)
{
	struct store_reader r;
	store_reader_init(&r, rec->meta, rec->meta_len);
	uint32_t id = store_read_u32(&r), count = store_read_u32(&r);
	if (r.failed || (uint64_t)count * 12 != r.left)
		return skip(rec, "malformed expunge");
	struct mailbox *mb = store_mailbox_by_id(s, id);
	for (uint32_t i = 0; mb && i < count; i++) {
		uint32_t uid = store_read_u32(&r);
		uint64_t modseq = store_read_u64(&r);
		if (uid == 0 || uid >= mb->uidnext || modseq == 0)
			continue;
		/* An expunge whose message was already dropped with its segment is still history.
		 */
		if (!store_msg_remove(s, mb, uid, modseq, NULL)) {
			if (modseq < mb->expunge_last)
				modseq = mb->expunge_last;
			if (expunge_log_add(mb->expunged, uid, modseq) != IMAPQ_OK)
				expunge_log_raise_floor(mb->expunged, modseq, uid);
			mb->expunge_last = modseq;
		}
		store_segment_note_expunge(s, mb, rec->segment, uid, modseq);
		cover(mb, 0, modseq);
	}
	return IMAPQ_OK;
}

static imapq_err replay_floor(struct store *s, const struct journal_record *rec)
{
	struct store_reader r;
	store_reader_init(&r, rec->meta, rec->meta_len);
	uint32_t id = store_read_u32(&r);
	uint64_t modseq = store_read_u64(&r);
	uint32_t uid = store_read_u32(&r);
	if (!store_reader_done(&r))
		return skip(rec, "malformed expunge floor");
	struct mailbox *mb = store_mailbox_by_id(s, id);
	if (mb && modseq)
		expunge_log_raise_floor(mb->expunged, modseq, uid);
	return IMAPQ_OK;
}

static imapq_err replay_checkpoint(struct store *s, const struct journal_record *rec)
{
	struct store_reader r;
	store_reader_init(&r, rec->meta, rec->meta_len);
	uint32_t next_id = store_read_u32(&r), last_uidvalidity = store_read_u32(&r);
	store_read_u32(&r);
	if (!store_reader_done(&r))
		return skip(rec, "malformed checkpoint");
	if (next_id > s->next_id)
		s->next_id = next_id;
	if (last_uidvalidity > s->last_uidvalidity)
		s->last_uidvalidity = last_uidvalidity;
	return IMAPQ_OK;
}

/* Checks that the keyword and annotation lists after a checkpoint head are well-formed. */
static bool checkpoint_lists_valid(struct store_reader r, const struct store_rec_mailbox_state *st)
{
	if (st->nkeywords > IMAPQ_MAX_KEYWORDS || st->nannotations > IMAPQ_MAX_ANNOTATIONS)
		return false;
	for (unsigned i = 0; i < st->nkeywords; i++) {
		uint8_t len = store_read_u8(&r);
		const uint8_t *p = store_read_bytes(&r, len);
		if (!p || len == 0 || len > IMAPQ_MAX_KEYWORD || memchr(p, 0, len))
			return false;
	}
	for (unsigned i = 0; i < st->nannotations; i++) {
		const char *key, *value;
		size_t klen, vlen;
		if (!read_annotation(&r, false, &key, &klen, &value, &vlen))
			return false;
	}
	return store_reader_done(&r);
}

/* Applies a checkpoint's lists: keywords not yet defined, then the whole annotation set. */
static imapq_err checkpoint_lists_apply(struct mailbox *mb, struct store_reader *r,
					const struct store_rec_mailbox_state *st)
{
	imapq_err err = IMAPQ_OK;
	for (unsigned i = 0; i < st->nkeywords && err == IMAPQ_OK; i++) {
		uint8_t len = store_read_u8(r);
		const char *name = (const char *)store_read_bytes(r, len);
		if (i == mb->nkeywords && store_keyword_lookup(mb, name, len) < 0)
			err = store_keyword_insert(mb, name, len);
	}
	while (mb->nannotations > 0) {
		char *key = mb->annotations[0].key;
		store_annotation_put(mb, key, strlen(key), NULL, 0);
	}
	for (unsigned i = 0; i < st->nannotations && err == IMAPQ_OK; i++) {
		const char *key, *value;
		size_t klen, vlen;
		read_annotation(r, false, &key, &klen, &value, &vlen);
		err = store_annotation_put(mb, key, klen, value, vlen);
	}
	return err;
}

static imapq_err replay_checkpoint_mailbox(struct store *s, const struct journal_record *rec)
{
	struct store_reader r;
	struct store_rec_mailbox_state st;
	char name[IMAPQ_MAX_MAILBOX_NAME + 1];
	store_reader_init(&r, rec->meta, rec->meta_len);
	if (store_rec_mailbox_state_decode(&r, &st) != IMAPQ_OK ||
	    !store_rec_cstr(st.name, st.name_len, name, sizeof name) ||
	    !store_mailbox_name_valid(name) || st.id == 0 || st.id == UINT32_MAX ||
	    !checkpoint_lists_valid(r, &st))
		return skip(rec, "malformed mailbox checkpoint");
	struct mailbox *mb = store_mailbox_by_id(s, st.id);
	struct mailbox *holder = store_mailbox_by_name(s, name);
	if (!mb && holder)
		return skip(rec, "checkpoint names a mailbox that exists under another id");
	if (!mb && !(mb = store_mailbox_insert(s, st.id, st.uidvalidity, name)))
		return IMAPQ_E_NOMEM;
	if (!holder && store_mailbox_set_name(s, mb, name) != IMAPQ_OK)
		return IMAPQ_E_NOMEM;
	if (st.uidnext > mb->uidnext)
		mb->uidnext = st.uidnext;
	if (st.highestmodseq > mb->highestmodseq)
		mb->highestmodseq = st.highestmodseq;
	if (st.floor_modseq)
		expunge_log_raise_floor(mb->expunged, st.floor_modseq, st.floor_uid);
	return checkpoint_lists_apply(mb, &r, &st);
}

/* Tracks whether each segment starts with a complete checkpoint. */
static void note_segment(struct store *s, const struct journal_record *rec)
{
	struct store_segment *seg = store_segment_get(s, rec->segment, true);
	if (!seg)
		return;
	if (!seg->started) {
		seg->started = true;
		seg->in_checkpoint = rec->type == STORE_REC_CHECKPOINT;
	} else if (rec->type == STORE_REC_CHECKPOINT_END && seg->in_checkpoint) {
		seg->checkpointed = true;
		seg->in_checkpoint = false;
	} else if (rec->type != STORE_REC_CHECKPOINT_MAILBOX) {
		seg->in_checkpoint = false;
	}
}

imapq_err store_replay_record(void *ctx, const struct journal_record *rec)
{
	struct store *s = ctx;
	note_segment(s, rec);
	switch (rec->type) {
	case STORE_REC_MAILBOX_CREATE:
		return replay_create(s, rec);
	case STORE_REC_MAILBOX_DELETE:
		return replay_delete(s, rec);
	case STORE_REC_MAILBOX_RENAME:
		return replay_rename(s, rec);
	case STORE_REC_KEYWORD:
		return replay_keyword(s, rec);
	case STORE_REC_ANNOTATION:
		return replay_annotation(s, rec);
	case STORE_REC_APPEND:
	case STORE_REC_CARRIED:
		return replay_message(s, rec);
	case STORE_REC_FLAGS:
		return replay_flags(s, rec);
	case STORE_REC_EXPUNGE:
		return replay_expunge(s, rec);
	case STORE_REC_CHECKPOINT:
		return replay_checkpoint(s, rec);
	case STORE_REC_CHECKPOINT_MAILBOX:
		return replay_checkpoint_mailbox(s, rec);
	case STORE_REC_CHECKPOINT_END:
		return IMAPQ_OK;
	case STORE_REC_EXPUNGE_FLOOR:
		return replay_floor(s, rec);
	default:
		return skip(rec, "unknown record type");
	}
}

static int msg_cmp(const void *a, const void *b)
{
	const struct msg *x = a, *y = b;
	return x->uid < y->uid ? -1 : x->uid > y->uid;
}

/* Moves one mailbox's replayed messages into its msgtable, in UID order. */
static void finish_mailbox(struct store *s, struct mailbox *mb, void *ctx)
{
	imapq_err *err = ctx;
	struct store_uidmap *map = mb->replay;
	mb->replay = NULL;
	if (!map || *err != IMAPQ_OK) {
		store_uidmap_free(&map);
		return;
	}
	size_t n = 0;
	struct msg *v = malloc((map->n + 1) * sizeof *v);
	if (!v) {
		*err = IMAPQ_E_NOMEM;
		store_uidmap_free(&map);
		return;
	}
	for (uint32_t i = 0; i <= map->mask; i++)
		if (map->slots[i].uid)
			v[n++] = map->slots[i];
	store_uidmap_free(&map);
	qsort(v, n, sizeof *v, msg_cmp);
	for (size_t i = 0; i < n && *err == IMAPQ_OK; i++)
		*err = store_msg_add(s, mb, &v[i]);
	free(v);
}

imapq_err store_replay_finish(struct store *s)
{
	imapq_err err = IMAPQ_OK;
	s->replaying = false;
	/* Messages replayed straight into their tables still need their ack reserve. */
	journal_reserve_add(s->journal, (int64_t)s->messages * STORE_ACK_RESERVE);
	store_mailboxes_each(s, finish_mailbox, &err);
	if (err == IMAPQ_OK)
		store_segments_recount(s);
	return err;
}
