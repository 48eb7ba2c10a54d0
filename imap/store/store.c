/* The store's lifecycle (open, close, wait), its journal plumbing (appending records, rotation
 * with checkpoints) and statistics. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "imap/base/limits.h"
#include "imap/base/log.h"
#include "imap/store/store-private.h"
#include "imap/store/store_records.h"

imapq_err store_log(struct store *s, enum journal_class cls, uint8_t type, const void *meta,
		    size_t meta_len, const struct journal_body *body, uint64_t *lsn_r,
		    uint64_t *loc_r)
{
	uint64_t lsn = 0, loc = 0;
	imapq_err err =
	    journal_append(s->journal, cls, type, meta, (uint32_t)meta_len, body, &lsn, &loc);
	if (err != IMAPQ_OK)
		return err;
	if (lsn_r)
		*lsn_r = lsn;
	if (loc_r)
		*loc_r = loc;
	return IMAPQ_OK;
}

imapq_err store_done(struct store *s, imapq_err err, uint64_t lsn, uint64_t *lsn_r)
{
	if (err != IMAPQ_OK)
		return err;
	if (lsn_r) {
		*lsn_r = lsn;
		return IMAPQ_OK;
	}
	return lsn ? journal_wait(s->journal, lsn) : IMAPQ_OK;
}

/* Encodes one mailbox's full metadata as a CHECKPOINT_MAILBOX payload. */
static void encode_mailbox_state(struct store_buf *b, const struct mailbox *mb)
{
	uint64_t floor_modseq;
	uint32_t floor_uid;
	expunge_log_floor(mb->expunged, &floor_modseq, &floor_uid);
	size_t len = strlen(mb->name);
	store_buf_u32(b, mb->id);
	store_buf_u32(b, mb->uidvalidity);
	store_buf_u32(b, mb->uidnext);
	store_buf_u64(b, mb->highestmodseq);
	store_buf_u64(b, floor_modseq);
	store_buf_u32(b, floor_uid);
	store_buf_u16(b, (uint16_t)len);
	store_buf_bytes(b, mb->name, len);
	store_buf_u8(b, (uint8_t)mb->nkeywords);
	store_buf_u16(b, (uint16_t)mb->nannotations);
	for (uint32_t i = 0; i < mb->nkeywords; i++) {
		len = strlen(mb->keywords[i]);
		store_buf_u8(b, (uint8_t)len);
		store_buf_bytes(b, mb->keywords[i], len);
	}
	for (uint32_t i = 0; i < mb->nannotations; i++) {
		len = strlen(mb->annotations[i].key);
		store_buf_u16(b, (uint16_t)len);
		store_buf_bytes(b, mb->annotations[i].key, len);
		len = strlen(mb->annotations[i].value);
		store_buf_u32(b, (uint32_t)len);
		store_buf_bytes(b, mb->annotations[i].value, len);
	}
}

/* Writes one mailbox's checkpoint record; the first failure is kept in *ctx. */
static void checkpoint_mailbox(struct store *s, struct mailbox *mb, void *ctx)
{
	imapq_err *err = ctx;
	if (*err != IMAPQ_OK)
		return;
	struct store_buf b = {0};
	encode_mailbox_state(&b, mb);
	*err = store_buf_failed(&b) ? IMAPQ_E_NOMEM
				    : store_log(s, JOURNAL_SHRINK, STORE_REC_CHECKPOINT_MAILBOX,
						b.data, b.len, NULL, NULL, NULL);
	store_buf_free(&b);
}

imapq_err store_rotate(struct store *s)
{
	uint32_t number;
	imapq_err err = journal_rotate(s->journal, &number);
	if (err != IMAPQ_OK)
		return err;
	s->active_segment = number;
	uint64_t start = journal_append_lsn(s->journal);
	struct store_segment *seg = store_segment_get(s, number, true);
	uint8_t head[12], end[4];
	struct store_buf b = {.data = head, .cap = sizeof head};
	store_buf_u32(&b, s->next_id);
	store_buf_u32(&b, s->last_uidvalidity);
	store_buf_u32(&b, s->nmailboxes);
	err =
	    store_log(s, JOURNAL_SHRINK, STORE_REC_CHECKPOINT, head, sizeof head, NULL, NULL, NULL);
	if (err == IMAPQ_OK)
		store_mailboxes_each(s, checkpoint_mailbox, &err);
	b = (struct store_buf){.data = end, .cap = sizeof end};
	store_buf_u32(&b, s->nmailboxes);
	if (err == IMAPQ_OK)
		err = store_log(s, JOURNAL_SHRINK, STORE_REC_CHECKPOINT_END, end, sizeof end, NULL,
				NULL, NULL);
	if (err == IMAPQ_OK && seg)
		seg->checkpointed = true;
	if (err == IMAPQ_OK)
		s->checkpoint_bytes = journal_append_lsn(s->journal) - start;
	if (err != IMAPQ_OK)
		log_error(STORE_LOG, "checkpoint of segment %u failed: %s", number,
			  imapq_err_message(err));
	return err;
}

void store_finish_write(struct store *s, uint32_t id)
{
	if (id != 0 && s->change_fn != NULL && !s->replaying)
		s->change_fn(s->change_arg, id);
	if (s->replaying || !journal_wants_rotation(s->journal))
		return;
	imapq_err err = store_rotate(s);
	if (err != IMAPQ_OK)
		log_warn(STORE_LOG, "rotation failed: %s", imapq_err_message(err));
}

imapq_err store_wait(struct store *s, uint64_t lsn)
{
	return lsn ? journal_wait(s->journal, lsn) : IMAPQ_OK;
}

/* The journal's one commit hook: passes each durability advance on to every subscriber. */
static void commit_dispatch(void *arg, uint64_t durable_lsn)
{
	struct store *s = arg;
	pthread_mutex_lock(&s->hooks_lock);
	for (size_t i = 0; i < STORE_COMMIT_HOOKS_MAX; i++) {
		if (s->commit_hooks[i].fn != NULL)
			s->commit_hooks[i].fn(s->commit_hooks[i].arg, durable_lsn);
	}
	pthread_mutex_unlock(&s->hooks_lock);
}

imapq_err store_add_commit_hook(struct store *s, journal_commit_fn *fn, void *arg)
{
	imapq_err err = IMAPQ_E_LIMIT;
	pthread_mutex_lock(&s->hooks_lock);
	for (size_t i = 0; i < STORE_COMMIT_HOOKS_MAX; i++) {
		if (s->commit_hooks[i].fn == NULL) {
			s->commit_hooks[i] = (struct store_commit_hook){.fn = fn, .arg = arg};
			err = IMAPQ_OK;
			break;
		}
	}
	pthread_mutex_unlock(&s->hooks_lock);
	return err;
}

void store_remove_commit_hook(struct store *s, journal_commit_fn *fn, void *arg)
{
	pthread_mutex_lock(&s->hooks_lock);
	for (size_t i = 0; i < STORE_COMMIT_HOOKS_MAX; i++) {
		if (s->commit_hooks[i].fn == fn && s->commit_hooks[i].arg == arg) {
			s->commit_hooks[i] = (struct store_commit_hook){0};
			break;
		}
	}
	pthread_mutex_unlock(&s->hooks_lock);
}

void store_set_change_hook(struct store *s, store_change_fn *fn, void *arg)
{
	pthread_mutex_lock(&s->lock);
	s->change_fn = fn;
	s->change_arg = arg;
	pthread_mutex_unlock(&s->lock);
}

void store_set_message_hook(struct store *s, store_message_hook_fn *fn, void *arg)
{
	pthread_mutex_lock(&s->lock);
	s->msg_hook_fn = fn;
	s->msg_hook_arg = arg;
	pthread_mutex_unlock(&s->lock);
}

uint64_t store_visible_lsn(struct store *s)
{
	return journal_append_lsn(s->journal);
}

uint64_t store_durable_lsn(struct store *s)
{
	return journal_durable_lsn(s->journal);
}

/* Creates dir when it does not exist. */
static imapq_err make_dir(const char *dir)
{
	if (mkdir(dir, 0700) == 0 || errno == EEXIST)
		return IMAPQ_OK;
	log_error(STORE_LOG, "cannot create %s: %s", dir, strerror(errno));
	return IMAPQ_E_IO;
}

/* Learns the active segment after replay and makes sure it starts with a complete checkpoint
 * whenever older segments exist, so dropping them never loses metadata. */
static imapq_err settle_segments(struct store *s)
{
	size_t n = 0;
	journal_segments(s->journal, NULL, 0, &n);
	struct journal_segment_info *v = calloc(n ? n : 1, sizeof *v);
	if (!v)
		return IMAPQ_E_NOMEM;
	journal_segments(s->journal, v, n, &n);
	imapq_err err = IMAPQ_OK;
	for (size_t i = 0; i < n; i++)
		if (!store_segment_get(s, v[i].number, true))
			err = IMAPQ_E_NOMEM;
	if (n)
		s->active_segment = v[n - 1].number;
	struct store_segment *active = store_segment_get(s, s->active_segment, false);
	if (err == IMAPQ_OK && n > 1 && active && !active->checkpointed)
		err = store_rotate(s);
	free(v);
	return err;
}

/* Frees what store_open built, in any state. */
static void store_free(struct store *s)
{
	if (s->journal)
		journal_close(&s->journal);
	store_mailboxes_free(s);
	for (size_t i = 0; i < s->nsegments; i++)
		free(s->segments[i].floors);
	free(s->segments);
	pthread_cond_destroy(&s->compact_cond);
	pthread_mutex_destroy(&s->compact_lock);
	pthread_mutex_destroy(&s->compact_run);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->hooks_lock);
	free(s);
}

imapq_err store_open(const struct store_options *opts, struct store_report *report_r,
		     struct store **store_r)
{
	*store_r = NULL;
	if (!opts || !opts->dir)
		return IMAPQ_E_INVALID;
	imapq_err err = make_dir(opts->dir);
	if (err != IMAPQ_OK)
		return err;
	char path[4096];
	if ((size_t)snprintf(path, sizeof path, "%s/journal", opts->dir) >= sizeof path)
		return IMAPQ_E_INVALID;
	struct store *s = calloc(1, sizeof *s);
	if (!s)
		return IMAPQ_E_NOMEM;
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->hooks_lock, NULL);
	pthread_mutex_init(&s->compact_lock, NULL);
	pthread_mutex_init(&s->compact_run, NULL);
	pthread_cond_init(&s->compact_cond, NULL);
	s->next_id = 1;
	s->replaying = true;
	s->max_mailbox_messages =
	    opts->max_mailbox_messages ? opts->max_mailbox_messages : IMAPQ_MAX_MAILBOX_MESSAGES;
	s->max_messages = opts->max_messages ? opts->max_messages : IMAPQ_MAX_STORE_MESSAGES;
	s->segment_bytes = opts->segment_bytes ? opts->segment_bytes : IMAPQ_JOURNAL_SEGMENT_BYTES;
	struct journal_options jo = {
	    .dir = path, .fsync = opts->fsync, .segment_bytes = opts->segment_bytes};
	struct journal_report jr = {0};
	pthread_mutex_lock(&s->lock);
	err = journal_open(&jo, store_replay_record, s, &jr, &s->journal);
	if (err == IMAPQ_OK)
		err = store_replay_finish(s);
	s->replaying = false;
	if (err == IMAPQ_OK)
		err = settle_segments(s);
	pthread_mutex_unlock(&s->lock);
	if (err == IMAPQ_OK)
		journal_set_commit_hook(s->journal, commit_dispatch, s);
	if (err == IMAPQ_OK && !store_mailbox_by_name(s, "INBOX")) {
		err = store_mailbox_create(s, "INBOX", NULL, NULL);
		/* Only a damaged journal can exhaust the ids or UIDVALIDITY values before INBOX
		 * exists: the store still opens, with its other mailboxes, and says so. */
		if (err == IMAPQ_E_LIMIT) {
			log_warn(STORE_LOG,
				 "%s: INBOX is missing and cannot be made: the journal "
				 "used up the mailbox ids or UIDVALIDITY values",
				 opts->dir);
			err = IMAPQ_OK;
		}
	}
	if (err == IMAPQ_OK && opts->auto_compact)
		err = store_compact_start(s);
	if (err != IMAPQ_OK) {
		log_error(STORE_LOG, "cannot open the store in %s: %s", opts->dir,
			  imapq_err_message(err));
		store_free(s);
		return err;
	}
	log_info(STORE_LOG, "opened %s: %u mailboxes, %llu messages, %llu journal records",
		 opts->dir, s->nmailboxes, (unsigned long long)s->messages,
		 (unsigned long long)jr.records);
	if (report_r)
		*report_r = (struct store_report){
		    .journal = jr, .mailboxes = s->nmailboxes, .messages = s->messages};
	*store_r = s;
	return IMAPQ_OK;
}

void store_close(struct store **store)
{
	struct store *s = *store;
	if (!s)
		return;
	*store = NULL;
	store_compact_stop(s);
	store_free(s);
}

/* Adds one mailbox's RAM to the total in ctx. */
static void mailbox_memory(struct store *s, struct mailbox *mb, void *ctx)
{
	uint64_t *total = ctx;
	*total += sizeof *mb + strlen(mb->name) + 1 + msgtable_memory(mb->msgs) +
		  expunge_log_memory(mb->expunged);
	*total += mb->nkeywords * sizeof *mb->keywords;
	for (uint32_t i = 0; i < mb->nkeywords; i++)
		*total += strlen(mb->keywords[i]) + 1;
	for (uint32_t i = 0; i < mb->nannotations; i++)
		*total += sizeof *mb->annotations + strlen(mb->annotations[i].key) +
			  strlen(mb->annotations[i].value) + 2;
}

void store_stats(struct store *s, struct store_stats *st_r)
{
	memset(st_r, 0, sizeof *st_r);
	journal_stats(s->journal, &st_r->journal);
	pthread_mutex_lock(&s->lock);
	st_r->mailboxes = s->nmailboxes;
	st_r->messages = s->messages;
	st_r->max_messages = s->max_messages;
	st_r->max_mailbox_messages = s->max_mailbox_messages;
	st_r->live_bytes = s->live_bytes;
	st_r->needed_bytes = store_needed_bytes(s);
	st_r->compactions = s->compactions;
	st_r->carried = s->carried;
	st_r->carried_bytes = s->carried_bytes;
	st_r->compact_slices = s->compact_slices;
	st_r->damaged_bodies = s->damaged_bodies;
	uint64_t memory =
	    sizeof *s + 2 * s->nbuckets * sizeof *s->by_id + s->capsegments * sizeof *s->segments;
	for (size_t i = 0; i < s->nsegments; i++)
		memory += s->segments[i].capfloors * sizeof *s->segments[i].floors;
	store_mailboxes_each(s, mailbox_memory, &memory);
	st_r->memory_bytes = memory;
	pthread_mutex_unlock(&s->lock);
}

void store_message_limits(struct store *s, uint32_t *mailbox_r, uint64_t *total_r)
{
	/* Both are fixed when the store opens, so no lock is needed. */
	*mailbox_r = s->max_mailbox_messages;
	*total_r = s->max_messages;
}
