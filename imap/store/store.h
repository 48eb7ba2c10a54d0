/* The mailbox store: mailboxes, messages, UIDs, mod-sequences, flags and keywords, expunge
 * history, with every change written to the journal. Metadata lives in RAM (about 48 bytes a
 * message); bodies stay on disk in the journal.
 *
 * Thread safety: every function may be called from any thread. One mutex guards the state and is
 * held only for in-memory work and for queueing journal records, never across an fsync. A
 * mutating call returns an LSN; the change is visible to other callers at once but durable only
 * once store_wait(lsn) returns, so a reply that reports it must wait for that. A caller may pass
 * NULL for lsn_r: the call then waits for durability itself before returning. A call that changed
 * nothing returns the LSN of everything appended so far, so waiting for it makes the state the
 * caller observed durable. Callbacks run with the mutex held: they must not call into the store.
 *
 * Flags: a message's flags are one 64-bit mask. Bits 0-4 are the system flags below; bit
 * STORE_KEYWORD_BASE + k is keyword k of the message's mailbox (see store_keyword()). */
#ifndef IMAPQ_STORE_H
#define IMAPQ_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap/base/error.h"
#include "imap/store/journal.h"

#define STORE_SEEN	   (1ull << 0)
#define STORE_ANSWERED	   (1ull << 1)
#define STORE_FLAGGED	   (1ull << 2)
#define STORE_DELETED	   (1ull << 3)
#define STORE_DRAFT	   (1ull << 4)
#define STORE_KEYWORD_BASE 5
#define STORE_KEYWORD(k)   (1ull << (STORE_KEYWORD_BASE + (k)))

struct store;

struct store_options {
	const char *dir; /* data folder; the journal lives in dir/journal */
	enum journal_fsync fsync;
	uint64_t segment_bytes; /* 0 means IMAPQ_JOURNAL_SEGMENT_BYTES */
	bool auto_compact;	/* run compaction from a background thread */
	/* Message limits of appends and copies (see "Message limits" below). */
	uint32_t max_mailbox_messages; /* per mailbox; 0 means IMAPQ_MAX_MAILBOX_MESSAGES */
	uint64_t max_messages;	       /* in the whole store; 0 means IMAPQ_MAX_STORE_MESSAGES */
};

/* What opening found. */
struct store_report {
	struct journal_report journal;
	uint32_t mailboxes;
	uint64_t messages;
};

/* An inclusive UID range; a set of them, ascending and disjoint, names messages. */
struct uid_range {
	uint32_t lo, hi;
};

/* A message's metadata. */
struct store_message {
	uint32_t uid;
	uint32_t size; /* body bytes */
	uint64_t modseq;
	uint64_t flags;
	int64_t internaldate; /* seconds since the epoch */
	uint32_t attempts;    /* times the message gained the claim keyword (STORE_CLAIM_KEYWORD) */
	uint32_t due;	      /* seconds since the epoch: lease end while claimed, not-before while
				 delayed; 0 for none */
};

/* The engine's claim primitive. A message that gains the keyword STORE_CLAIM_KEYWORD counts an
 * attempt and, unless the same change sets its due time, gets due = now + the mailbox's lease
 * (STORE_SETTING_LEASE); losing the keyword clears the due time unless the change sets one. Both
 * happen atomically with the conditional store that claims, so a worker's receipt (the new
 * mod-sequence) covers its lease. */
#define STORE_CLAIM_KEYWORD "$Claimed"
#define STORE_DELAY_KEYWORD "$Delayed"

/* Per-mailbox settings, kept as annotations (RFC 5464 entry names) and validated when set:
 * decimal seconds or counts. The store reads the lease and the message limit itself; the others
 * are for queue/. */
#define STORE_SETTING_LEASE	   "/shared/vendor/imapq/lease-seconds"
#define STORE_SETTING_MAX_ATTEMPTS "/shared/vendor/imapq/max-attempts"
#define STORE_SETTING_RETENTION	   "/shared/vendor/imapq/dead-retention-seconds"
#define STORE_SETTING_MAX_MESSAGES "/shared/vendor/imapq/max-messages"
#define STORE_DEFAULT_LEASE	   30
#define STORE_DEFAULT_MAX_ATTEMPTS 5
#define STORE_DEFAULT_RETENTION	   (7 * 24 * 3600)

struct store_mailbox_status {
	uint32_t id;
	uint32_t lease;	       /* STORE_SETTING_LEASE, or STORE_DEFAULT_LEASE */
	uint32_t max_attempts; /* STORE_SETTING_MAX_ATTEMPTS, or STORE_DEFAULT_MAX_ATTEMPTS */
	uint32_t retention;    /* STORE_SETTING_RETENTION, or STORE_DEFAULT_RETENTION */
	uint32_t max_messages; /* STORE_SETTING_MAX_MESSAGES, or the store's max_mailbox_messages */
	uint32_t uidvalidity;
	uint32_t uidnext;
	uint32_t messages;
	uint32_t unseen;  /* messages without \Seen */
	uint32_t deleted; /* messages with \Deleted */
	uint64_t highestmodseq;
	uint64_t bytes; /* body bytes of all messages */
	uint32_t keywords;
};

/* Opens the store in opts->dir, replaying the journal. */
imapq_err store_open(const struct store_options *opts, struct store_report *report_r,
		     struct store **store_r);
/* Makes everything durable, stops background work and frees the store; *store becomes NULL. */
void store_close(struct store **store);

/* Blocks until the change with this LSN is durable. */
imapq_err store_wait(struct store *s, uint64_t lsn);
/* Subscribes fn(arg, durable_lsn) to durability advances: it is called from the journal's
 * flusher thread (see journal_commit_fn) each time the durable LSN grows, and once with an
 * unchanged LSN when the journal fails. Calls are serialized with each other and with
 * store_remove_commit_hook(), so fn may take its own locks but must not call into the store or
 * block. IMAPQ_E_LIMIT when the few slots (STORE_COMMIT_HOOKS_MAX) are taken. */
imapq_err store_add_commit_hook(struct store *s, journal_commit_fn *fn, void *arg);
/* Unsubscribes the pair (fn, arg); once this returns fn is not running and is never called
 * again for it. Removing a pair that is not subscribed does nothing. */
void store_remove_commit_hook(struct store *s, journal_commit_fn *fn, void *arg);

/* --- Mailboxes. Names are UTF-8, "/"-separated, validated here (no empty levels, no control
 * characters, at most IMAPQ_MAX_MAILBOX_NAME bytes). "INBOX" is case-insensitive. A mailbox's id
 * never changes and is never reused; operations on a deleted one fail with NONEXISTENT. --- */

/* True when name is acceptable as a mailbox name. */
bool store_mailbox_name_valid(const char *name);
imapq_err store_mailbox_create(struct store *s, const char *name, uint32_t *id_r, uint64_t *lsn_r);
/* Deletes the mailbox and its messages. */
imapq_err store_mailbox_delete(struct store *s, const char *name, uint64_t *lsn_r);
/* Renames; the id, UIDVALIDITY and messages stay. Renaming INBOX is refused (IMAPQ_E_INVALID). */
imapq_err store_mailbox_rename(struct store *s, const char *from, const char *to, uint64_t *lsn_r);
/* Looks a name up. */
imapq_err store_mailbox_find(struct store *s, const char *name, uint32_t *id_r);
/* Copies the current name of mailbox id into buf. */
imapq_err store_mailbox_name(struct store *s, uint32_t id, char *buf, size_t cap);
typedef void store_mailbox_fn(void *ctx, uint32_t id, const char *name);
/* Calls fn for every mailbox in name order. */
void store_mailbox_list(struct store *s, store_mailbox_fn *fn, void *ctx);
imapq_err store_mailbox_status(struct store *s, uint32_t id, struct store_mailbox_status *st_r);

/* Per-mailbox metadata (RFC 5464 entries, queue settings). value NULL deletes the key. The
 * STORE_SETTING_* keys take a decimal number from 1 to 31536000, STORE_SETTING_MAX_MESSAGES from
 * 1 to IMAPQ_MAX_MESSAGES_SETTING (IMAPQ_E_INVALID otherwise). */
imapq_err store_annotation_set(struct store *s, uint32_t id, const char *key, const char *value,
			       uint64_t *lsn_r);
/* Copies the value into buf; IMAPQ_E_NOTFOUND when unset. */
imapq_err store_annotation_get(struct store *s, uint32_t id, const char *key, char *buf,
			       size_t cap);
typedef void store_annotation_fn(void *ctx, const char *key, const char *value);
/* Calls fn for every annotation of mailbox id, in no set order, with the store's lock held: fn
 * only copies what it needs. */
imapq_err store_annotation_list(struct store *s, uint32_t id, store_annotation_fn *fn, void *ctx);

/* Finds keyword name in mailbox id and returns its index k (flag bit STORE_KEYWORD(k)). With
 * create, defines it when missing (IMAPQ_E_LIMIT past IMAPQ_MAX_KEYWORDS); *lsn_r is then the
 * record to wait for, else 0. Without create, a missing keyword is IMAPQ_E_NOTFOUND. Keyword
 * names compare case-insensitively, as IMAP atoms do. */
imapq_err store_keyword(struct store *s, uint32_t id, const char *name, bool create,
			unsigned *index_r, uint64_t *lsn_r);
/* Copies the name of keyword k into buf. */
imapq_err store_keyword_name(struct store *s, uint32_t id, unsigned k, char *buf, size_t cap);

/* --- Messages ---
 *
 * Message limits: an append or copy that would leave a mailbox with more messages than its
 * limit (STORE_SETTING_MAX_MESSAGES, else the store's max_mailbox_messages), or the store with
 * more than its max_messages, fails with IMAPQ_E_OVERQUOTA before anything is written. A move
 * counts against its destination only (within one mailbox, against nothing) and never against
 * the store's total. store_move_if_unchanged() is exempt: dead-lettering never raises the total,
 * and a lease expiry must not fail because the dead-letter mailbox is full. Journal replay never
 * checks limits: recovery keeps whatever was written, also after a limit was lowered. */

/* The store's default limit per mailbox and its total limit, as opened. */
void store_message_limits(struct store *s, uint32_t *mailbox_r, uint64_t *total_r);

/* Appends a message with the given flags and internal date. body->len is at most
 * IMAPQ_MAX_MESSAGE_SIZE. */
imapq_err store_append(struct store *s, uint32_t id, uint64_t flags, int64_t internaldate,
		       const struct journal_body *body, uint32_t *uid_r, uint64_t *modseq_r,
		       uint64_t *lsn_r);
/* The same with a due time (seconds since the epoch, 0 for none) in the same record, so a
 * delayed job is never seen without its not-before time. */
imapq_err store_append_due(struct store *s, uint32_t id, uint64_t flags, uint32_t due,
			   int64_t internaldate, const struct journal_body *body, uint32_t *uid_r,
			   uint64_t *modseq_r, uint64_t *lsn_r);

/* One message of store_append_batch(); uid and modseq are set when it is appended. */
struct store_new_message {
	uint64_t flags;
	uint32_t due;
	int64_t internaldate;
	struct journal_body body;
	uint32_t uid;
	uint64_t modseq;
};
/* Appends msgs[0..n) in order under one hold of the lock. The limits are checked for all of them
 * first, so a batch that does not fit writes nothing (IMAPQ_E_OVERQUOTA). A later failure (the
 * journal's) leaves msgs[0..*done_r) appended. */
imapq_err store_append_batch(struct store *s, uint32_t id, struct store_new_message *msgs, size_t n,
			     size_t *done_r, uint64_t *lsn_r);

imapq_err store_message_get(struct store *s, uint32_t id, uint32_t uid, struct store_message *m_r);
typedef void store_message_fn(void *ctx, const struct store_message *m);
/* Calls fn for every message whose UID lies in ranges (all messages when n is 0), ascending. */
imapq_err store_messages(struct store *s, uint32_t id, const struct uid_range *ranges, size_t n,
			 store_message_fn *fn, void *ctx);
/* The same a page at a time: calls fn for at most max messages with a UID >= from, ascending,
 * holding the store's lock for those only, and sets *next_r to the UID to pass as from for the
 * next page (0 when no message is left). As above, n == 0 means every message; from must be at
 * least 1. For walks of any length that must not hold the lock throughout, or memory for every
 * message. */
imapq_err store_messages_page(struct store *s, uint32_t id, const struct uid_range *ranges,
			      size_t n, uint32_t from, size_t max, store_message_fn *fn, void *ctx,
			      uint32_t *next_r);
/* Reads body bytes [offset, offset+len) of a message; *got_r is less than len at its end. */
imapq_err store_body_read(struct store *s, uint32_t id, uint32_t uid, uint64_t offset, void *buf,
			  size_t len, size_t *got_r);

/* Message sequence numbers: the number of messages with a UID at most uid, and its inverse
 * (the UID of the seq-th message, 1-based). Both O(log n). */
imapq_err store_seq_of_uid(struct store *s, uint32_t id, uint32_t uid, uint32_t *seq_r);
imapq_err store_uid_of_seq(struct store *s, uint32_t id, uint32_t seq, uint32_t *uid_r);

enum store_flag_op { STORE_FLAGS_SET, STORE_FLAGS_ADD, STORE_FLAGS_REMOVE };
enum store_flag_outcome {
	STORE_CHANGED,	 /* flags changed; the message has a new mod-sequence */
	STORE_UNCHANGED, /* passed, but the flags already were as asked */
	STORE_FAILED,	 /* UNCHANGEDSINCE test failed: nothing changed (RFC 7162 MODIFIED) */
};
typedef void store_flag_fn(void *ctx, const struct store_message *m,
			   enum store_flag_outcome outcome);

/* Changes the flags of the messages in ranges (ascending, disjoint). With unchangedsince
 * non-NULL, each message whose mod-sequence is above *unchangedsince fails and stays as it was,
 * even when the store would change nothing; the rest are applied (all-or-nothing per message).
 * Each changed message gets its own new mod-sequence. fn (may be NULL) sees every existing
 * message in ranges with its outcome and resulting state. Flags of keywords not defined in the
 * mailbox are refused (IMAPQ_E_INVALID). */
imapq_err store_flags(struct store *s, uint32_t id, const struct uid_range *ranges, size_t n,
		      enum store_flag_op op, uint64_t flags, const uint64_t *unchangedsince,
		      store_flag_fn *fn, void *ctx, uint64_t *lsn_r);

/* A change of flags and queue fields, for store_update(). */
struct store_update {
	enum store_flag_op op;
	uint64_t flags;
	const uint64_t *unchangedsince; /* NULL: unconditional */
	bool set_due;			/* also set due (0 clears it); this alone is a change, so a
					   lease renewal always moves the mod-sequence */
	uint32_t due;
};

/* store_flags() with queue fields: applies u to each message in ranges with the same rules and
 * outcomes (a message changes when its flags or, with set_due, its due time are written). A
 * removal of the claim keyword without set_due from a message that used its mailbox's
 * max_attempts keeps the keyword and ends the lease now instead, so the queue layer
 * dead-letters it; with set_due the removal is done as asked. */
imapq_err store_update(struct store *s, uint32_t id, const struct uid_range *ranges, size_t n,
		       const struct store_update *u, store_flag_fn *fn, void *ctx, uint64_t *lsn_r);

/* Moves one message to dst when its mod-sequence is at most unchangedsince (IMAPQ_E_MODIFIED
 * otherwise, IMAPQ_E_NOTFOUND when it is gone), atomically: dead-lettering must not take a job
 * that a worker claimed a moment before. The copy keeps flags, attempts and internal date;
 * clear_flags are removed from it and its due time is cleared. Exempt from the message limits,
 * so dst may end up above its limit. */
imapq_err store_move_if_unchanged(struct store *s, uint32_t src, uint32_t uid,
				  uint64_t unchangedsince, uint32_t dst, uint64_t clear_flags,
				  uint32_t *dst_uid_r, uint64_t *lsn_r);

/* The same move for a job that starts over, as requeueing a dead letter needs: the copy has no
 * flags, no attempts, no due time and the given internal date. It counts against dst's message
 * limit like any move. The copy and the source's expunge are journaled in that order under one
 * hold of the lock, so a crash leaves the message in src, in both, or in dst, never in neither. */
imapq_err store_requeue_if_unchanged(struct store *s, uint32_t src, uint32_t uid,
				     uint64_t unchangedsince, uint32_t dst, int64_t internaldate,
				     uint32_t *dst_uid_r, uint64_t *lsn_r);

typedef void store_uid_fn(void *ctx, uint32_t uid);
/* Removes the messages in ranges (every message when n is 0) that carry \Deleted; fn sees each
 * removed UID. Expunges raise HIGHESTMODSEQ and enter the expunge history. */
imapq_err store_expunge(struct store *s, uint32_t id, const struct uid_range *ranges, size_t n,
			store_uid_fn *fn, void *ctx, uint64_t *lsn_r);

typedef void store_copy_fn(void *ctx, uint32_t src_uid, uint32_t dst_uid);
/* Copies (or, with move, moves) the messages in ranges of src to dst, keeping flags and internal
 * dates; fn sees each source UID with its new UID in dst. A move expunges the source messages
 * regardless of \Deleted (RFC 6851). All or nothing against the message limits
 * (IMAPQ_E_OVERQUOTA, nothing written). */
imapq_err store_copy(struct store *s, uint32_t src, const struct uid_range *ranges, size_t n,
		     uint32_t dst, bool move, store_copy_fn *fn, void *ctx, uint64_t *lsn_r);

/* The lowest UID >= from whose flags f satisfy (f & mask) == want, or 0 in *uid_r when none.
 * Answered from an index in O(log n) whatever the mailbox holds: the first call for a new
 * (mask, want) pair builds the index in O(n), later changes keep it current. At most
 * STORE_MAX_INDEXES pairs per mailbox are indexed; beyond that the oldest unused is dropped. */
#define STORE_MAX_INDEXES 8
imapq_err store_first_match(struct store *s, uint32_t id, uint64_t mask, uint64_t want,
			    uint32_t from, uint32_t *uid_r);
/* The number of messages whose flags satisfy (f & mask) == want, from the same index. */
imapq_err store_count_match(struct store *s, uint32_t id, uint64_t mask, uint64_t want,
			    uint32_t *count_r);

/* Calls fn for every message whose mod-sequence is above modseq, ascending by UID. */
imapq_err store_changed_since(struct store *s, uint32_t id, uint64_t modseq, store_message_fn *fn,
			      void *ctx);
/* The same a page at a time, as store_messages_page(): at most max messages with a UID >= from
 * (from > 0), and *next_r the UID to continue from (0 when no changed message is left). */
imapq_err store_changed_since_page(struct store *s, uint32_t id, uint64_t modseq, uint32_t from,
				   size_t max, store_message_fn *fn, void *ctx, uint32_t *next_r);
typedef void store_range_fn(void *ctx, uint32_t lo, uint32_t hi);
/* Calls fn with the UIDs expunged after modseq as ascending, disjoint ranges. The answer may
 * include UIDs expunged earlier (RFC 7162 allows a superset) but never misses one and never names
 * a UID that exists or was never assigned. */
imapq_err store_vanished_since(struct store *s, uint32_t id, uint64_t modseq, store_range_fn *fn,
			       void *ctx);

/* Like store_vanished_since() but exact: every range names only UIDs expunged after modseq, up
 * to *highest_r, the mailbox's HIGHESTMODSEQ read under the same hold of the lock. Fails with
 * IMAPQ_E_LIMIT when the history before modseq was folded into the floor. */
imapq_err store_expunged_since(struct store *s, uint32_t id, uint64_t modseq, store_range_fn *fn,
			       void *ctx, uint64_t *highest_r);

/* --- Change notification --- */

/* The LSN just past the last change made visible, and the LSN known durable: a reply built
 * from the store's state may leave once store_durable_lsn() reaches the store_visible_lsn() read
 * after building it. */
uint64_t store_visible_lsn(struct store *s);
uint64_t store_durable_lsn(struct store *s);
/* Called (with the store's mutex held, from whichever thread made the change) after every change
 * to mailbox id: it must only note the id and wake someone. */
typedef void store_change_fn(void *arg, uint32_t id);
void store_set_change_hook(struct store *s, store_change_fn *fn, void *arg);

/* Called (with the store's mutex held) for every message that is appended (before NULL),
 * changed, or expunged or moved away (after NULL), with its state before and after. For the queue
 * layer's lease and delay timers and long-poll wake-ups: note and return, never call the store. */
typedef void store_message_hook_fn(void *arg, uint32_t id, const struct store_message *before,
				   const struct store_message *after);
void store_set_message_hook(struct store *s, store_message_hook_fn *fn, void *arg);

/* --- Maintenance --- */

/* Frees journal space, oldest segment first: re-appends the still-live messages of a segment
 * and deletes it. Runs a pass when the journal's dead bytes are due (see
 * IMAPQ_COMPACT_SLACK_SEGMENTS), or with force frees at least one segment; a pass goes on until
 * they are within the slack. Releases the store lock between slices of the work. */
imapq_err store_compact(struct store *s, bool force);

struct store_stats {
	struct journal_stats journal;
	uint32_t mailboxes;
	uint64_t messages;
	uint64_t max_messages;	       /* the store's total limit */
	uint32_t max_mailbox_messages; /* the default limit per mailbox */
	uint64_t live_bytes;	       /* body bytes of all messages */
	uint64_t needed_bytes;	       /* journal bytes the live state takes once compacted */
	uint64_t compactions;	       /* segments compaction freed since open */
	uint64_t carried;	       /* messages it re-wrote to do so */
	uint64_t carried_bytes;	       /* and their body bytes */
	uint64_t compact_slices;       /* times it took the store lock */
	uint64_t damaged_bodies;       /* bodies found changed on disk when copied or carried */
	uint64_t memory_bytes;	       /* RAM held for metadata and indexes */
};
void store_stats(struct store *s, struct store_stats *st_r);

#endif
