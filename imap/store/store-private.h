/* Internals shared by the files of the store module: the store and mailbox structs, the message
 * primitives that keep counters current, and the hooks between live operations, replay and
 * compaction. Nothing outside imap/store/store*.c includes this. */
#ifndef IMAPQ_STORE_PRIVATE_H
#define IMAPQ_STORE_PRIVATE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap/base/error.h"
#include "imap/store/expunge_log.h"
#include "imap/store/journal.h"
#include "imap/store/msgtable.h"
#include "imap/store/store.h"

/* Log module name of the store. */
#define STORE_LOG "store"

/* Journal bytes an ack needs once its message exists: a flags record and an expunge record with
 * one entry each (8-byte head plus a 28- or 12-byte entry), each in the journal's 24-byte record
 * framing. */
#define STORE_ACK_RESERVE (2 * 24 + (8 + 28) + (8 + 12))

/* Entries per flags or expunge record, so one record's meta stays far below 1 MiB. */
#define STORE_RECORD_MAX_ENTRIES 32768

struct store_uidmap;

/* Durability subscribers at most: the IMAP server and the HTTP front, with room to spare. */
#define STORE_COMMIT_HOOKS_MAX 4

/* One durability subscriber (see store_add_commit_hook). */
struct store_commit_hook {
	journal_commit_fn *fn;
	void *arg;
};

/* One metadata entry of a mailbox. */
struct store_annotation {
	char *key;
	char *value;
};

/* The per-mailbox settings (STORE_SETTING_* annotations) the store caches as numbers. */
enum store_setting_index {
	STORE_SET_LEASE,
	STORE_SET_MAX_ATTEMPTS,
	STORE_SET_RETENTION,
	STORE_SET_MAX_MESSAGES,
	STORE_NSETTINGS
};

/* One mailbox; owned by the store's tables. */
struct mailbox {
	uint32_t id;
	uint32_t uidvalidity;
	uint32_t uidnext;
	uint32_t name_hash;
	uint64_t highestmodseq;
	uint64_t bytes;	 /* body bytes of its messages */
	uint32_t unseen; /* messages without \Seen */
	uint32_t deleted;
	uint32_t nkeywords;
	uint32_t nannotations;
	char *name;
	char **keywords; /* nkeywords names, index = keyword number */
	struct store_annotation *annotations;
	uint32_t settings[STORE_NSETTINGS]; /* parsed setting annotations, 0 when unset */
	struct msgtable *msgs;
	struct expunge_log *expunged;
	struct store_uidmap *replay; /* messages while the journal replays, else NULL */
	uint64_t expunge_last;	     /* highest modseq handed to the expunge log */
	uint32_t expunge_segment;    /* segment of this mailbox's latest expunge record */
	uint32_t expunge_slot;	     /* its entry in that segment's floor list */
	struct mailbox *next_by_name;
	struct mailbox *next_by_id;
};

/* Per segment: the highest expunge a mailbox recorded there, folded into the expunge floor when
 * the segment is dropped. */
struct store_floor {
	uint32_t id;
	uint32_t uid;
	uint64_t modseq;
};

/* What the store knows of one journal segment. */
struct store_segment {
	uint32_t number;
	bool checkpointed; /* it starts with a complete checkpoint */
	bool started;	   /* replay saw its first record */
	bool in_checkpoint;
	uint64_t live_bytes;	/* body bytes of live messages stored in it */
	uint64_t live_messages; /* live messages whose bodies are stored in it */
	struct store_floor *floors;
	size_t nfloors, capfloors;
};

struct store {
	pthread_mutex_t lock;
	struct journal *journal;
	uint32_t next_id; /* next mailbox id */
	uint32_t last_uidvalidity;
	bool replaying;
	/* Mailbox tables: chained hashes by name and by id, nbuckets each. */
	struct mailbox **by_name;
	struct mailbox **by_id;
	size_t nbuckets;
	uint32_t nmailboxes;
	uint64_t messages;
	uint64_t live_bytes;
	/* Message limits of live appends and copies (never of replay): per mailbox unless its
	 * STORE_SETTING_MAX_MESSAGES says otherwise, and for the whole store. */
	uint32_t max_mailbox_messages;
	uint64_t max_messages;
	struct store_segment *segments; /* oldest first */
	size_t nsegments, capsegments;
	uint32_t active_segment;
	/* The journal's rotation size; compaction leaves IMAPQ_COMPACT_SLACK_SEGMENTS of it dead.
	 */
	uint64_t segment_bytes;
	/* Journal bytes of the last checkpoint written (each segment starts with one). */
	uint64_t checkpoint_bytes;
	/* Set when a segment's live count could not be kept (no memory for its entry): compaction
	 * then examines every message instead of stopping once a segment's count is zero. */
	bool segment_counts_lost;
	/* What compaction did since open (store_stats); under lock. */
	uint64_t compactions, carried, carried_bytes, compact_slices;
	uint64_t damaged_bodies; /* copied or carried bodies that failed their check */
	/* Compaction runs one at a time under compact_run; the background thread sleeps on
	 * compact_cond with compact_lock, which also guards stopping. */
	pthread_mutex_t compact_run;
	pthread_mutex_t compact_lock;
	pthread_cond_t compact_cond;
	pthread_t compact_thread;
	bool compact_running;
	bool stopping;
	/* Told of durability advances (see store_add_commit_hook); guarded by hooks_lock, which
	 * is held while they run. */
	pthread_mutex_t hooks_lock;
	struct store_commit_hook commit_hooks[STORE_COMMIT_HOOKS_MAX];
	/* Told of every change, under the lock (see store_set_change_hook). */
	store_change_fn *change_fn;
	void *change_arg;
	/* Told of every message transition, under the lock (see store_set_message_hook). */
	store_message_hook_fn *msg_hook_fn;
	void *msg_hook_arg;
};

/* --- store_mailbox.c --- */

/* Hash of a mailbox name ("INBOX" in any case hashes as "INBOX"). */
uint32_t store_name_hash(const char *name);
/* The canonical spelling of name: "INBOX" for any case of it, else name itself. */
const char *store_name_canonical(const char *name);
struct mailbox *store_mailbox_by_name(struct store *s, const char *name);
struct mailbox *store_mailbox_by_id(struct store *s, uint32_t id);
/* Creates the in-memory mailbox (no journal record); NULL on NOMEM or duplicate id/name. */
struct mailbox *store_mailbox_insert(struct store *s, uint32_t id, uint32_t uidvalidity,
				     const char *name);
/* Removes the mailbox from the tables, drops its messages' accounting and frees it. */
void store_mailbox_remove(struct store *s, struct mailbox *mb);
/* Changes the name of mb, rehashing it. */
imapq_err store_mailbox_set_name(struct store *s, struct mailbox *mb, const char *name);
/* Defines keyword index k (== mb->nkeywords) in memory. */
imapq_err store_keyword_insert(struct mailbox *mb, const char *name, size_t len);
/* Finds keyword name (case-insensitively); -1 when absent. */
int store_keyword_lookup(const struct mailbox *mb, const char *name, size_t len);
/* Sets (value non-NULL) or removes an annotation in memory. */
imapq_err store_annotation_put(struct mailbox *mb, const char *key, size_t klen, const char *value,
			       size_t vlen);
/* Frees every mailbox and the tables. */
void store_mailboxes_free(struct store *s);
/* Calls fn for every mailbox in no particular order. */
void store_mailboxes_each(struct store *s, void (*fn)(struct store *, struct mailbox *, void *),
			  void *ctx);
/* The mask of flag bits valid in mb: system flags and its defined keywords. */
uint64_t store_mailbox_flag_mask(const struct mailbox *mb);

/* --- store_settings.c --- */

/* The setting a metadata key names (compared as annotation keys are), or -1 for other keys. */
int store_setting_of_key(const char *key, size_t klen);
/* Parses a value of setting k: a decimal from 1 to its largest value (IMAPQ_MAX_QUEUE_SETTING,
 * or IMAPQ_MAX_MESSAGES_SETTING for the message limit) without sign, spaces or leading zeros;
 * false when it is not one. */
bool store_setting_parse(int k, const char *value, size_t vlen, uint32_t *v_r);
/* Re-derives mb's cached setting after the annotation key was set to value (NULL: deleted); a
 * value that does not parse (only a damaged journal holds one) counts as unset. */
void store_setting_note(struct mailbox *mb, const char *key, size_t klen, const char *value,
			size_t vlen);
/* The setting's value in mb, or its default when unset. */
uint32_t store_setting_get(const struct mailbox *mb, enum store_setting_index k);
/* The message limit of mb: its STORE_SETTING_MAX_MESSAGES, else the store's default. */
uint32_t store_mailbox_limit(const struct store *s, const struct mailbox *mb);
/* IMAPQ_E_OVERQUOTA when mb gaining add messages, and the store gaining grow, would pass mb's
 * limit or the store's total; a change that adds nothing to a count is never refused, so a
 * mailbox over a lowered limit can still shrink or move messages within itself. */
imapq_err store_quota_check(const struct store *s, const struct mailbox *mb, uint64_t add,
			    uint64_t grow);

/* --- store_msgops.c: message primitives that keep counters, reserve and segment bytes, and
 * tell the message hook of every live transition (never during replay) --- */

/* The public view of a message. */
struct store_message store_public_msg(const struct msg *m);
const struct msg *store_msg_find(struct mailbox *mb, uint32_t uid);
imapq_err store_msg_add(struct store *s, struct mailbox *mb, const struct msg *m);
/* Gives the message m->uid the flags, modseq, attempts and due of m. */
void store_msg_update(struct store *s, struct mailbox *mb, const struct msg *m);
void store_msg_set_loc(struct store *s, struct mailbox *mb, uint32_t uid, uint64_t loc);
/* Removes uid; false when absent. Records the expunge at modseq when expunge_modseq is non-0. */
bool store_msg_remove(struct store *s, struct mailbox *mb, uint32_t uid, uint64_t expunge_modseq,
		      struct msg *removed_r);
/* Counts a live message whose body of size bytes is stored at loc into (add) or out of its
 * segment's live figures. */
void store_segment_account(struct store *s, uint64_t loc, uint32_t size, bool add);
/* Counts every message into its segment's live figures afresh (after replay, which skips the
 * counting). */
void store_segments_recount(struct store *s);
struct store_segment *store_segment_get(struct store *s, uint32_t number, bool create);
/* Notes that mb recorded an expunge of uid at modseq in segment number. */
void store_segment_note_expunge(struct store *s, struct mailbox *mb, uint32_t number, uint32_t uid,
				uint64_t modseq);

/* --- store_messages.c --- */

/* True when ranges are well-formed: each lo <= hi, ascending and disjoint. */
bool store_ranges_valid(const struct uid_range *ranges, size_t n);
/* Calls fn for every message of mb in ranges (all when n is 0), ascending. The table must not
 * change while this runs. */
void store_each_in_ranges(struct mailbox *mb, const struct uid_range *ranges, size_t n,
			  void (*fn)(void *, const struct msg *), void *ctx);

/* A message's body read back for a copy, with the checksum its record was written with. */
struct store_loaded_body {
	struct journal_body body; /* data is the caller's to free */
	bool header_damaged; /* the record's header no longer checks: crc is of the bytes read */
};

/* Reads m's whole body from the journal, needing no store lock (bodies never change in place).
 * A body whose bytes no longer match the checksum it was written with keeps that checksum and is
 * marked damaged, so that a copy fails its check at open as the original would, instead of
 * getting a checksum of the changed bytes; a copy counts and logs such bodies. */
imapq_err store_body_load(struct journal *j, const struct msg *m, struct store_loaded_body *out);

/* Re-writes m's current state with the body lb (loaded from m->loc) as a carried record and
 * points the message at it. */
imapq_err store_message_carry(struct store *s, struct mailbox *mb, const struct msg *m,
			      const struct store_loaded_body *lb, uint64_t *lsn_r);

/* --- store.c --- */

/* Appends one record under the store lock. */
imapq_err store_log(struct store *s, enum journal_class cls, uint8_t type, const void *meta,
		    size_t meta_len, const struct journal_body *body, uint64_t *lsn_r,
		    uint64_t *loc_r);
/* Ends a write under the lock: tells the change hook that mailbox id changed (when id is not 0),
 * then rotates and checkpoints when the active segment is full. */
void store_finish_write(struct store *s, uint32_t id);
/* Rotates the journal and writes a checkpoint at the start of the new segment. */
imapq_err store_rotate(struct store *s);
/* After the lock is dropped: hands lsn to the caller or, when lsn_r is NULL, waits for it. */
imapq_err store_done(struct store *s, imapq_err err, uint64_t lsn, uint64_t *lsn_r);

/* --- store_replay.c --- */

/* The journal replay callback: applies one record to the store. */
imapq_err store_replay_record(void *ctx, const struct journal_record *rec);
/* Turns the replayed message maps into msgtables and rebuilds the accounting. */
imapq_err store_replay_finish(struct store *s);
void store_uidmap_free(struct store_uidmap **map);
const struct msg *store_uidmap_find(const struct store_uidmap *map, uint32_t uid);
imapq_err store_uidmap_put(struct store_uidmap **map, const struct msg *m);
bool store_uidmap_remove(struct store_uidmap *map, uint32_t uid, struct msg *removed_r);

/* --- store_compact.c --- */

/* Journal bytes the live state takes once compacted (an estimate); under the lock. */
uint64_t store_needed_bytes(const struct store *s);
/* The rule that starts a compaction pass: the dead bytes pass the slack, and either pass the
 * share of the live state (needed) that makes re-writing it worthwhile, or the file system has
 * less room left (disk_free) than that share, so a tight disk is compacted eagerly. */
bool store_compact_due(uint64_t dead, uint64_t needed, uint64_t slack, uint64_t disk_free);
imapq_err store_compact_start(struct store *s);
void store_compact_stop(struct store *s);

#endif
