/* Expunge history of one mailbox, for QRESYNC: which UIDs were expunged after a given
 * mod-sequence. Recent expunges are kept exactly as UID runs; older ones are folded into a
 * floor, (floor_modseq, floor_uid), meaning "any UID up to floor_uid that no longer exists may
 * have been expunged at any mod-sequence up to floor_modseq". Answers are then a superset of the
 * truth, which RFC 7162 allows, and never miss an expunge. Not thread-safe. */
#ifndef IMAPQ_EXPUNGE_LOG_H
#define IMAPQ_EXPUNGE_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap/base/error.h"

/* Exact runs kept before about the oldest half is folded into the floor, whole expunges only (one
 * expunge of more separate stretches may take the log to four times this before it folds). */
#define EXPUNGE_LOG_MAX_RUNS 65536

struct expunge_log;

struct expunge_log *expunge_log_create(void);
void expunge_log_destroy(struct expunge_log **l);

/* Records that uid was expunged at modseq. modseq never decreases from call to call; a uid
 * following the previous run's last uid at the same modseq (one expunge of several messages)
 * extends that run, so answers above the floor stay exact. */
imapq_err expunge_log_add(struct expunge_log *l, uint32_t uid, uint64_t modseq);

/* Folds every run with modseq <= modseq into the floor. */
void expunge_log_fold(struct expunge_log *l, uint64_t modseq);

/* Raises the floor to at least (modseq, uid), folding runs it covers. */
void expunge_log_raise_floor(struct expunge_log *l, uint64_t modseq, uint32_t uid);

/* The current floor; (0, 0) when nothing was folded. */
void expunge_log_floor(const struct expunge_log *l, uint64_t *modseq_r, uint32_t *uid_r);

typedef void expunge_log_range_fn(void *ctx, uint32_t lo, uint32_t hi);
/* Calls fn for every exact run with modseq above since, in ascending UID order, merged where
 * runs touch. Returns the UID up to which the caller must also report every absent UID (the
 * floor_uid when since < floor_modseq, else 0). */
uint32_t expunge_log_since(const struct expunge_log *l, uint64_t since, expunge_log_range_fn *fn,
			   void *ctx);

/* Number of exact runs held. */
size_t expunge_log_runs(const struct expunge_log *l);
size_t expunge_log_memory(const struct expunge_log *l);

#endif
