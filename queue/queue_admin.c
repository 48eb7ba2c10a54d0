/* Managing queues: create, delete, purge, settings, statistics and the list of queues. A queue is
 * a mailbox; its dead letters live in "<queue>/dead"; its settings are the mailbox's annotations
 * (STORE_SETTING_*), so they persist with it and IMAP METADATA reads the same values. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap/base/limits.h"
#include "imap/base/vec.h"
#include "queue/queue-private.h"

/* True when every field is 0 (keep) or a value the store accepts. */
static bool settings_valid(const struct queue_settings *s)
{
	return s->lease <= IMAPQ_MAX_QUEUE_SETTING && s->max_attempts <= IMAPQ_MAX_QUEUE_SETTING &&
	       s->retention <= IMAPQ_MAX_QUEUE_SETTING &&
	       s->max_messages <= IMAPQ_MAX_MESSAGES_SETTING;
}

/* Writes the non-zero fields of s as annotations of mailbox id. */
static imapq_err settings_write(struct queue_service *qs, uint32_t id,
				const struct queue_settings *s, uint64_t *lsn)
{
	const struct {
		const char *key;
		uint32_t value;
	} fields[] = {{STORE_SETTING_LEASE, s->lease},
		      {STORE_SETTING_MAX_ATTEMPTS, s->max_attempts},
		      {STORE_SETTING_RETENTION, s->retention},
		      {STORE_SETTING_MAX_MESSAGES, s->max_messages}};
	for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
		if (fields[i].value == 0)
			continue;
		char value[16];
		snprintf(value, sizeof value, "%u", fields[i].value);
		imapq_err err = store_annotation_set(qs->store, id, fields[i].key, value, lsn);
		if (err != IMAPQ_OK)
			return err;
	}
	return IMAPQ_OK;
}

imapq_err queue_ref_status(struct queue_service *qs, const char *name, struct queue_ref *ref_r,
			   struct store_mailbox_status *st_r)
{
	imapq_err err = queue_ref_get(qs, name, ref_r);
	if (err == IMAPQ_OK)
		err = store_mailbox_status(qs->store, ref_r->id, st_r);
	return err;
}

imapq_err queue_create(struct queue_service *qs, const char *name,
		       const struct queue_settings *settings, uint64_t *lsn_r)
{
	if (!queue_name_valid(name) || (settings != NULL && !settings_valid(settings)))
		return IMAPQ_E_INVALID;
	uint32_t id, dead;
	uint64_t lsn = 0;
	imapq_err err = store_mailbox_create(qs->store, name, &id, &lsn);
	if (err != IMAPQ_OK)
		return queue_finish(qs, err, lsn, lsn_r);
	struct queue_ref ref;
	err = queue_box_resolve(qs, id, true, &ref);
	if (err == IMAPQ_OK && (ref.claimed == 0 || ref.delayed == 0))
		err = IMAPQ_E_LIMIT;
	if (err == IMAPQ_OK)
		err = queue_dead_id(qs, id, true, &dead, &lsn);
	if (err == IMAPQ_OK && settings != NULL)
		err = settings_write(qs, id, settings, &lsn);
	/* Keyword definitions were not waited for: everything visible now covers them. */
	uint64_t visible = store_visible_lsn(qs->store);
	return queue_finish(qs, err, visible > lsn ? visible : lsn, lsn_r);
}

imapq_err queue_delete(struct queue_service *qs, const char *name, uint64_t *lsn_r)
{
	struct queue_ref ref;
	imapq_err err = queue_ref_get(qs, name, &ref);
	if (err != IMAPQ_OK)
		return err;
	uint32_t dead = 0;
	uint64_t lsn = 0;
	if (queue_dead_id(qs, ref.id, false, &dead, NULL) != IMAPQ_OK)
		dead = 0;
	/* The queue goes first: a lease expiry or nack racing the delete then finds its queue
	 * gone, where it could otherwise move a job into a dead-letter mailbox made again between
	 * the two deletes, which a later queue of the name would inherit. */
	err = store_mailbox_delete(qs->store, name, &lsn);
	if (err == IMAPQ_OK) {
		char dname[IMAPQ_MAX_MAILBOX_NAME + 1];
		snprintf(dname, sizeof dname, "%s%s", name, QUEUE_DEAD_SUFFIX);
		err = store_mailbox_delete(qs->store, dname, &lsn);
		if (err == IMAPQ_E_NONEXISTENT)
			err = IMAPQ_OK;
	}
	/* Long polls on the queue end now (and find it gone); the service forgets it. */
	struct queue_event ev = {.kind = QUEUE_EV_WAKE, .box = ref.id};
	pthread_mutex_lock(&qs->mu);
	queue_event_push(qs, &ev);
	if (dead != 0) {
		ev.box = dead;
		queue_event_push(qs, &ev);
	}
	pthread_mutex_unlock(&qs->mu);
	return queue_finish(qs, err, lsn, lsn_r);
}

/* UIDs gathered under the store's mutex. */
struct uid_vec {
	uint32_t *v;
	size_t n, cap;
	bool nomem;
};

static void push_uid(struct uid_vec *u, uint32_t uid)
{
	if (!vec_push((void **)&u->v, &u->n, &u->cap, sizeof *u->v, &uid))
		u->nomem = true;
}

static void note_changed(void *ctx, const struct store_message *m, enum store_flag_outcome o)
{
	if (o == STORE_CHANGED)
		push_uid(ctx, m->uid);
}

static void note_removed(void *ctx, uint32_t uid)
{
	(*(uint32_t *)ctx)++;
	(void)uid;
}

/* Deletes and expunges the jobs matching (mask, want) that have not changed since modseq,
 * QUEUE_BATCH at a time; adds their number to *removed. */
static imapq_err purge_matching(struct queue_service *qs, uint32_t id, uint64_t mask, uint64_t want,
				uint64_t modseq, uint32_t *removed, uint64_t *lsn)
{
	uint32_t *uids = malloc(QUEUE_BATCH * sizeof *uids);
	struct uid_range *ranges = malloc(QUEUE_BATCH * sizeof *ranges);
	imapq_err err = uids && ranges ? IMAPQ_OK : IMAPQ_E_NOMEM;
	uint32_t uid = 0;
	while (err == IMAPQ_OK) {
		size_t n = 0;
		while (n < QUEUE_BATCH && uid < UINT32_MAX) {
			err = store_first_match(qs->store, id, mask, want, uid + 1, &uid);
			if (err != IMAPQ_OK || uid == 0)
				break;
			uids[n++] = uid;
		}
		if (err != IMAPQ_OK || n == 0)
			break;
		/* Only jobs unchanged since the purge began: one claimed meanwhile is kept. */
		size_t nr = queue_uids_to_ranges(uids, n, ranges);
		struct uid_vec changed = {0};
		err = store_flags(qs->store, id, ranges, nr, STORE_FLAGS_ADD, STORE_DELETED,
				  &modseq, note_changed, &changed, lsn);
		if (err == IMAPQ_OK && changed.nomem)
			err = IMAPQ_E_NOMEM;
		if (err == IMAPQ_OK && changed.n > 0) {
			struct uid_range *cr = malloc(changed.n * sizeof *cr);
			err = cr ? IMAPQ_OK : IMAPQ_E_NOMEM;
			if (cr != NULL) {
				size_t ncr = queue_uids_to_ranges(changed.v, changed.n, cr);
				err = store_expunge(qs->store, id, cr, ncr, note_removed, removed,
						    lsn);
				free(cr);
			}
		}
		free(changed.v);
		if (uid == 0 || uid == UINT32_MAX)
			break;
	}
	free(uids);
	free(ranges);
	return err;
}

imapq_err queue_purge(struct queue_service *qs, const char *name, uint32_t *removed_r,
		      uint64_t *lsn_r)
{
	uint32_t removed = 0;
	if (removed_r != NULL)
		*removed_r = 0;
	struct queue_ref ref;
	struct store_mailbox_status st;
	imapq_err err = queue_ref_status(qs, name, &ref, &st);
	if (err != IMAPQ_OK)
		return err;
	uint64_t lsn = 0;
	uint64_t mask = queue_ready_mask(&ref);
	err = purge_matching(qs, ref.id, mask, 0, st.highestmodseq, &removed, &lsn);
	if (err == IMAPQ_OK)
		err =
		    purge_matching(qs, ref.id, mask, ref.delayed, st.highestmodseq, &removed, &lsn);
	if (removed_r != NULL)
		*removed_r = removed;
	return queue_finish(qs, err, lsn, lsn_r);
}

imapq_err queue_settings_get(struct queue_service *qs, const char *name,
			     struct queue_settings *settings_r)
{
	struct queue_ref ref;
	struct store_mailbox_status st;
	imapq_err err = queue_ref_status(qs, name, &ref, &st);
	if (err != IMAPQ_OK)
		return err;
	*settings_r = (struct queue_settings){.lease = st.lease,
					      .max_attempts = st.max_attempts,
					      .retention = st.retention,
					      .max_messages = st.max_messages};
	return IMAPQ_OK;
}

imapq_err queue_settings_set(struct queue_service *qs, const char *name,
			     const struct queue_settings *settings, uint64_t *lsn_r)
{
	if (settings == NULL || !settings_valid(settings))
		return IMAPQ_E_INVALID;
	struct queue_ref ref;
	imapq_err err = queue_ref_get(qs, name, &ref);
	if (err != IMAPQ_OK)
		return err;
	uint64_t lsn = 0;
	err = settings_write(qs, ref.id, settings, &lsn);
	return queue_finish(qs, err, lsn, lsn_r);
}

imapq_err queue_stats(struct queue_service *qs, const char *name, struct queue_stats *stats_r)
{
	struct queue_ref ref;
	struct store_mailbox_status st;
	imapq_err err = queue_ref_status(qs, name, &ref, &st);
	if (err != IMAPQ_OK)
		return err;
	struct queue_stats s = {
	    .messages = st.messages, .oldest_ready_age = -1, .highestmodseq = st.highestmodseq};
	uint64_t mask = queue_ready_mask(&ref);
	err = store_count_match(qs->store, ref.id, mask, 0, &s.ready);
	if (err == IMAPQ_OK)
		err = store_count_match(qs->store, ref.id, ref.claimed | STORE_DELETED, ref.claimed,
					&s.claimed);
	if (err == IMAPQ_OK)
		err = store_count_match(qs->store, ref.id, mask, ref.delayed, &s.delayed);
	uint32_t dead, uid = 0;
	if (err == IMAPQ_OK && queue_dead_id(qs, ref.id, false, &dead, NULL) == IMAPQ_OK)
		store_count_match(qs->store, dead, STORE_DELETED, 0, &s.dead);
	struct store_message m;
	if (err == IMAPQ_OK && store_first_match(qs->store, ref.id, mask, 0, 1, &uid) == IMAPQ_OK &&
	    uid != 0 && store_message_get(qs->store, ref.id, uid, &m) == IMAPQ_OK) {
		int64_t age = (int64_t)(queue_now_ms() / 1000) - m.internaldate;
		s.oldest_ready_age = age > 0 ? age : 0;
	}
	if (err != IMAPQ_OK)
		return err;
	pthread_mutex_lock(&qs->mu);
	struct queue_box *box = queue_box_find(qs, ref.id);
	if (box != NULL) {
		s.enqueued = box->counters.enqueued;
		s.claims = box->counters.claims;
		s.acks = box->counters.acks;
		s.nacks = box->counters.nacks;
		s.expired = box->counters.expired;
		s.dead_lettered = box->counters.dead_lettered;
	}
	pthread_mutex_unlock(&qs->mu);
	*stats_r = s;
	return IMAPQ_OK;
}

/* Names gathered under the store's mutex. */
struct name_list {
	char **v;
	size_t n, cap;
	bool nomem;
};

static void gather_name(void *ctx, uint32_t id, const char *name)
{
	struct name_list *l = ctx;
	(void)id;
	if (!queue_name_valid(name))
		return;
	char *copy = strdup(name);
	if (copy == NULL || !vec_push((void **)&l->v, &l->n, &l->cap, sizeof copy, &copy)) {
		free(copy);
		l->nomem = true;
	}
}

void queue_list(struct queue_service *qs, queue_name_fn *fn, void *ctx)
{
	struct name_list l = {0};
	store_mailbox_list(qs->store, gather_name, &l);
	for (size_t i = 0; i < l.n; i++) {
		fn(ctx, l.v[i]);
		free(l.v[i]);
	}
	free(l.v);
}
