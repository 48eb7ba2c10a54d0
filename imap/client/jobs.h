/* Queue work over IMAP on top of the client: claim, ack, release, delay, extend, attempts and
 * waiting for work, as README.md "Workers over IMAP" describes them. Claim, ack, release and
 * wait need only CONDSTORE (and IDLE for waiting without polling), so they work against any
 * CONDSTORE server such as Dovecot; delay, extend and attempts need imapqd's
 * ANNOTATE-EXPERIMENT-1 entries. The mailbox of the queue must be selected (client_select()).
 *
 * Every helper tells a lost job apart from a failure:
 *   IMAPQ_E_MODIFIED  the receipt is stale: the job was released, expired, or another worker
 *                     holds it (a [MODIFIED] reply, or an echo that carries FLAGS);
 *   IMAPQ_E_NOTFOUND  the job is gone (acked elsewhere, dead-lettered), or for a claim: no job is
 *                     ready;
 *   IMAPQ_E_UNSUPPORTED  the server lacks the extension the helper needs;
 * anything else is an error of the client or a refusal (see client.h). */
#ifndef IMAPQ_CLIENT_JOBS_H
#define IMAPQ_CLIENT_JOBS_H

#include "imap/client/client.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A claimed job. */
struct client_job {
	uint32_t uid;	  /* the job id */
	uint64_t receipt; /* the mod-sequence after the claim: the base of the next change */
	char *body;	  /* the section asked for, NUL-terminated (owned), or NULL */
	size_t body_len;
	unsigned lost; /* rounds this claim lost to other workers before it won */
};

/* The claim keyword, and the flags that make a job not ready. */
#define CLIENT_JOB_CLAIMED "$Claimed"
#define CLIENT_JOB_DELAYED "$Delayed"

/* Claims the lowest ready job: search (ESEARCH MIN when offered), fetch FLAGS and MODSEQ, and a
 * conditional +FLAGS.SILENT ($Claimed); a lost round starts again. When section is not NULL the
 * job's BODY.PEEK[section] is fetched too ("" for the whole message, "TEXT" for the body without
 * its header); body stays NULL when the job vanished right after the claim, which the next ack
 * reports. Returns IMAPQ_OK with *job_r filled (free it with client_job_clear()),
 * IMAPQ_E_NOTFOUND when no job is ready, IMAPQ_E_UNSUPPORTED without CONDSTORE, IMAPQ_E_LIMIT
 * after IMAPQ_CLIENT_CLAIM_ROUNDS lost rounds, or an error. */
imapq_err client_job_claim(struct client *client, const char *section, struct client_job *job_r);
/* Frees the body and zeroes the job. */
void client_job_clear(struct client_job *job);

/* Completes a job: conditional +FLAGS.SILENT (\Deleted) against receipt, then UID EXPUNGE (or
 * EXPUNGE without UIDPLUS). IMAPQ_OK, IMAPQ_E_MODIFIED, IMAPQ_E_NOTFOUND or an error. */
imapq_err client_job_ack(struct client *client, uint32_t uid, uint64_t receipt);
/* Gives a job back at once: conditional -FLAGS.SILENT ($Claimed). *receipt_r (may be NULL) gets
 * the new mod-sequence. Returns as client_job_ack(). */
imapq_err client_job_release(struct client *client, uint32_t uid, uint64_t receipt,
			     uint64_t *receipt_r);
/* Gives a job back to be ready after seconds (imapqd's /vendor/imapq/delay). Returns as
 * client_job_ack(), or IMAPQ_E_UNSUPPORTED. */
imapq_err client_job_release_delay(struct client *client, uint32_t uid, uint64_t receipt,
				   unsigned seconds, uint64_t *receipt_r);
/* Renews the lease for seconds from now (imapqd's /vendor/imapq/lease); *receipt_r gets the new
 * receipt, which replaces the old one. Returns as client_job_release_delay(). */
imapq_err client_job_extend(struct client *client, uint32_t uid, uint64_t receipt, unsigned seconds,
			    uint64_t *receipt_r);
/* How many times the job has been claimed (imapqd's /vendor/imapq/attempts). IMAPQ_OK,
 * IMAPQ_E_NOTFOUND, IMAPQ_E_UNSUPPORTED or an error. */
imapq_err client_job_attempts(struct client *client, uint32_t uid, unsigned *attempts_r);

/* Waits up to timeout_ms for the queue to change (a new job, a release, an expunge): with IDLE
 * when offered, else by NOOP once a second. *woke_r says whether a change came; a signal ends
 * the wait early with IMAPQ_OK and *woke_r false. */
imapq_err client_job_wait(struct client *client, int timeout_ms, bool *woke_r);

#endif
