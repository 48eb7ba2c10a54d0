/* The messages of one mailbox in UID order, with the indexes the store answers from:
 * UID lookup, sequence-number rank and select, "lowest UID whose flags match (mask, want)"
 * (the claim query), counts of such matches, and "changed since a mod-sequence".
 * Not thread-safe: the store's mutex guards it. */
#ifndef IMAPQ_MSGTABLE_H
#define IMAPQ_MSGTABLE_H

#include <stddef.h>
#include <stdint.h>

#include "imap/base/error.h"

/* One message's metadata: 48 bytes. */
struct msg {
	uint32_t uid;
	uint32_t size; /* body bytes */
	uint64_t modseq;
	uint64_t flags;	      /* system flags and keyword bits, as in store.h */
	uint64_t loc;	      /* journal location of the body */
	int64_t internaldate; /* seconds since the epoch */
	uint32_t attempts;    /* times the message gained the claim keyword */
	uint32_t due;	      /* seconds since the epoch: lease end or not-before, 0 for none */
};

struct msgtable;

/* Position of an iteration; stays valid across msgtable_update() and msgtable_remove(), not
 * across msgtable_append(). */
struct msgtable_cursor {
	uint64_t slot;
};

struct msgtable *msgtable_create(void);
void msgtable_destroy(struct msgtable **t);

/* Adds a message; m->uid must be above every UID the table has ever held. May reclaim the
 * space of removed messages (amortized O(1)). IMAPQ_E_NOMEM leaves the table unchanged. */
imapq_err msgtable_append(struct msgtable *t, const struct msg *m);

/* The message with this UID, or NULL. The pointer is valid until the next append or remove;
 * change its flags, modseq or loc only through the functions below. O(log n). */
const struct msg *msgtable_find(const struct msgtable *t, uint32_t uid);

/* Sets flags and modseq of an existing message, keeping every index current. O(log n). */
void msgtable_update(struct msgtable *t, uint32_t uid, uint64_t flags, uint64_t modseq);

/* Sets the queue fields of an existing message; no index depends on them. O(log n). */
void msgtable_set_queue(struct msgtable *t, uint32_t uid, uint32_t attempts, uint32_t due);

/* Sets the body location of an existing message (compaction moves bodies). */
void msgtable_set_loc(struct msgtable *t, uint32_t uid, uint64_t loc);

/* Removes a message; returns 0 when it was absent, else 1 with its last state in *removed_r
 * (which may be NULL). O(log n). */
int msgtable_remove(struct msgtable *t, uint32_t uid, struct msg *removed_r);

/* Number of messages. */
uint32_t msgtable_count(const struct msgtable *t);

/* The first message with a UID >= from, or NULL; sets *c for msgtable_next(). */
const struct msg *msgtable_seek(const struct msgtable *t, uint32_t from, struct msgtable_cursor *c);
/* The message after the one at *c, or NULL; advances *c. */
const struct msg *msgtable_next(const struct msgtable *t, struct msgtable_cursor *c);

/* The number of messages whose UID is at most uid. O(log n). */
uint32_t msgtable_rank(const struct msgtable *t, uint32_t uid);
/* The UID of the seq-th message (1-based), 0 when seq is out of range. O(log n). */
uint32_t msgtable_select(const struct msgtable *t, uint32_t seq);

/* Predicate indexes. At most MSGTABLE_MAX_INDEXES (mask, want) pairs are kept; a new pair
 * beyond that replaces the least recently used one. Building one costs O(n), once; each append,
 * update and remove keeps every index current in O(log n). */
#define MSGTABLE_MAX_INDEXES 8
/* The lowest UID >= from whose flags f satisfy (f & mask) == want, 0 when none. O(log n) after
 * the index exists, however many messages fail the test. IMAPQ_E_NOMEM when the index cannot be
 * built. */
imapq_err msgtable_first_match(struct msgtable *t, uint64_t mask, uint64_t want, uint32_t from,
			       uint32_t *uid_r);
/* The number of messages matching (mask, want), from the same index. */
imapq_err msgtable_count_match(struct msgtable *t, uint64_t mask, uint64_t want, uint32_t *count_r);

/* The first message at or after *c (start with slot 0) whose modseq is above modseq, or NULL;
 * skips whole blocks of unchanged messages using per-block maxima. Advance c->slot by one to
 * continue past the returned message. */
const struct msg *msgtable_changed_next(const struct msgtable *t, uint64_t modseq,
					struct msgtable_cursor *c);

/* Bytes of RAM the table holds, indexes included. */
size_t msgtable_memory(const struct msgtable *t);

#endif
