/* A SEARCH that scans: metadata decided under the store's lock a step of UIDs at a time, message
 * content read outside it for the messages a step left undecided, matches kept in UID order.
 * It knows no sessions: what it needs of the selected mailbox's view is copied in at creation,
 * so a scan can run on the server's search thread (cmd-search.c) while its session waits. */
#ifndef IMAPQ_SEARCH_SCAN_H
#define IMAPQ_SEARCH_SCAN_H

#include <stddef.h>
#include <stdint.h>

#include "imap/base/error.h"
#include "imap/base/worker.h"
#include "imap/server/search.h"
#include "imap/store/store.h"

/* One matching message. */
struct search_hit {
	uint32_t uid;
	uint64_t modseq;
};

/* What a scan needs of the session's view (borrowed during search_scan_create only). */
struct search_scan_view {
	uint32_t mailbox;
	uint32_t uid_max;	 /* messages above it are not the client's yet */
	const uint32_t *pending; /* expunged, not yet announced: skipped (ascending) */
	size_t npending;
	uint32_t recent_lo, recent_hi; /* \Recent to the session when recent_lo != 0 */
};

struct search_scan;

/* Prepares a scan of prog, which it takes (also on failure). limit_ms bounds the time
 * search_scan_run() may take (0: none). IMAPQ_E_NOMEM. */
imapq_err search_scan_create(struct store *store, struct search_program *prog,
			     const struct search_scan_view *view, uint64_t limit_ms,
			     struct search_scan **scan_r);

/* Runs the scan, on any thread. With job, it stops early once the job is cancelled. The outcome
 * is read with search_scan_hits(). */
void search_scan_run(struct search_scan *scan, const struct worker_job *job);

/* The matches in UID order (the caller may rewrite them in place), or the error that ended the
 * run: IMAPQ_E_LIMIT past the time limit (or cancelled), IMAPQ_E_NOMEM, a store error. */
imapq_err search_scan_hits(struct search_scan *scan, struct search_hit **hits_r, size_t *n_r);

/* Messages whose content was read, and milliseconds the run took (for the log). */
size_t search_scan_read_count(const struct search_scan *scan);
uint64_t search_scan_elapsed_ms(const struct search_scan *scan);

/* Frees the scan and its program; NULL is fine. *scan becomes NULL. */
void search_scan_free(struct search_scan **scan);

#endif
