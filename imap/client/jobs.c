/* Queue helpers: the claim loop and the conditional stores of ack, release, delay and extend. */
#include "imap/client/jobs.h"

#include "imap/base/limits.h"
#include "imap/client/client-private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* The search keys of a ready job. */
#define JOBS_READY "UNKEYWORD " CLIENT_JOB_CLAIMED " UNKEYWORD " CLIENT_JOB_DELAYED " UNDELETED"
/* Milliseconds between NOOPs when the server offers no IDLE. */
#define JOBS_POLL_MS 1000

void client_job_clear(struct client_job *job)
{
	free(job->body);
	memset(job, 0, sizeof(*job));
}

/* What the untagged responses of one command said about one UID. */
struct jobs_seen {
	uint32_t uid;
	bool found;	 /* a SEARCH/ESEARCH result, or a FETCH for uid */
	bool echo;	 /* a FETCH for uid with MODSEQ and without FLAGS */
	bool flags_echo; /* a FETCH for uid that carries FLAGS */
	bool busy;	 /* its FLAGS hold $Claimed, $Delayed or \Deleted */
	uint64_t modseq; /* MODSEQ of the echo (or of the FETCH) */
	uint32_t min;	 /* lowest UID a search found */
	char *section;	 /* a copied body section */
	size_t section_len;
	bool section_oom;
	uint64_t number; /* an annotation's value */
	bool have_number;
};

static bool jobs_busy_flag(const struct client_value *v)
{
	return client_value_is(v, CLIENT_JOB_CLAIMED) || client_value_is(v, CLIENT_JOB_DELAYED) ||
	       client_value_is(v, "\\Deleted");
}

static void jobs_on_fetch(const struct client_fetch *f, struct jobs_seen *s)
{
	if (!(f->have & CLIENT_FETCH_UID) || f->uid != s->uid)
		return;
	s->found = true;
	if (f->have & CLIENT_FETCH_FLAGS) {
		s->flags_echo = true;
		for (size_t i = 0; i < f->flag_count; i++)
			s->busy |= jobs_busy_flag(&f->flags[i]);
	} else if (f->have & CLIENT_FETCH_MODSEQ) {
		s->echo = true;
	}
	if (f->have & CLIENT_FETCH_MODSEQ)
		s->modseq = f->modseq;
	if (f->section_count > 0 && s->section == NULL && !s->section_oom) {
		const struct client_section *sec = &f->sections[0];

		s->section = malloc(sec->len + 1);
		if (s->section == NULL) {
			s->section_oom = true;
			return;
		}
		if (sec->len > 0)
			memcpy(s->section, sec->data, sec->len);
		s->section[sec->len] = '\0';
		s->section_len = sec->len;
	}
	for (size_t i = 0; i < f->annotation_count; i++) {
		const struct client_annotation *a = &f->annotations[i];
		struct client_value v = {.type = CLIENT_VALUE_ATOM, .str = a->value, .len = a->len};

		if (a->value != NULL && client_value_number(&v, UINT32_MAX, &s->number))
			s->have_number = true;
	}
}

static void jobs_collect(const struct client_response *r, void *ctx)
{
	struct jobs_seen *s = ctx;

	if (r->type == CLIENT_RESP_FETCH) {
		jobs_on_fetch(&r->fetch, s);
	} else if (r->type == CLIENT_RESP_ESEARCH && (r->esearch.have & CLIENT_ESEARCH_MIN)) {
		s->found = true;
		s->min = r->esearch.min;
	} else if (r->type == CLIENT_RESP_SEARCH) {
		for (size_t i = 0; i < r->search.count; i++) {
			if (!s->found || r->search.numbers[i] < s->min)
				s->min = r->search.numbers[i];
			s->found = true;
		}
	}
}

/* Finds the lowest ready UID; IMAPQ_E_NOTFOUND when there is none. */
static imapq_err jobs_search(struct client *c, uint32_t *uid_r)
{
	struct jobs_seen s = {0};
	imapq_err err;

	if (client_has_cap(c, "ESEARCH"))
		err = client_cmdf(c, jobs_collect, &s, "UID SEARCH RETURN (MIN) " JOBS_READY);
	else
		err = client_cmdf(c, jobs_collect, &s, "UID SEARCH " JOBS_READY);
	if (err != IMAPQ_OK)
		return err;
	if (!s.found)
		return IMAPQ_E_NOTFOUND;
	*uid_r = s.min;
	return IMAPQ_OK;
}

/* Runs "UID STORE uid (UNCHANGEDSINCE since) <change>" and reads the outcome: IMAPQ_OK with the
 * new mod-sequence when the store took for this session, IMAPQ_E_MODIFIED when it did not
 * (MODIFIED, or an echo with FLAGS: Dovecot's answer to a store that changed nothing),
 * IMAPQ_E_NOTFOUND when the message is gone. */
static imapq_err jobs_store(struct client *c, uint32_t uid, uint64_t since, const char *change,
			    uint64_t *modseq_r)
{
	struct jobs_seen s = {.uid = uid};
	const struct client_reply *rep = client_reply(c);
	imapq_err err;

	err = client_cmdf(c, jobs_collect, &s, "UID STORE %u (UNCHANGEDSINCE %llu) %s", uid,
			  (unsigned long long)since, change);
	if (err == IMAPQ_E_REFUSED && rep->status == CLIENT_STATUS_NO && rep->code_name &&
	    strcmp(rep->code_name, "CANNOT") == 0 && strstr(rep->text, "not claimed") != NULL)
		return IMAPQ_E_MODIFIED; /* imapqd: nobody holds the job any more */
	if (err != IMAPQ_OK)
		return err;
	if (rep->code == CLIENT_CODE_MODIFIED || (s.flags_echo && !s.echo))
		return IMAPQ_E_MODIFIED;
	if (!s.echo)
		return IMAPQ_E_NOTFOUND;
	if (modseq_r != NULL)
		*modseq_r = s.modseq;
	return IMAPQ_OK;
}

static imapq_err jobs_need_condstore(struct client *c)
{
	if (client_has_cap(c, "CONDSTORE") || client_condstore(c))
		return IMAPQ_OK;
	snprintf(c->error, sizeof(c->error), "the server does not offer CONDSTORE");
	return IMAPQ_E_UNSUPPORTED;
}

static imapq_err jobs_need_annotate(struct client *c)
{
	if (client_has_cap(c, "ANNOTATE-EXPERIMENT-1"))
		return IMAPQ_OK;
	snprintf(c->error, sizeof(c->error),
		 "the server does not offer ANNOTATE-EXPERIMENT-1 (imapqd's lease, delay and "
		 "attempts)");
	return IMAPQ_E_UNSUPPORTED;
}

/* Fetches BODY.PEEK[section] of a claimed job into job. */
static imapq_err jobs_fetch_body(struct client *c, const char *section, struct client_job *job)
{
	struct jobs_seen s = {.uid = job->uid};
	imapq_err err =
	    client_cmdf(c, jobs_collect, &s, "UID FETCH %u (BODY.PEEK[%s])", job->uid, section);

	if (err == IMAPQ_OK && s.section_oom)
		err = IMAPQ_E_NOMEM;
	else if (err == IMAPQ_OK && s.section == NULL)
		err = IMAPQ_E_NOTFOUND;
	if (err != IMAPQ_OK) {
		free(s.section);
		return err;
	}
	job->body = s.section;
	job->body_len = s.section_len;
	return IMAPQ_OK;
}

imapq_err client_job_claim(struct client *c, const char *section, struct client_job *job_r)
{
	imapq_err err = jobs_need_condstore(c);
	unsigned lost = 0;

	memset(job_r, 0, sizeof(*job_r));
	if (err != IMAPQ_OK)
		return err;
	for (unsigned round = 0; round < IMAPQ_CLIENT_CLAIM_ROUNDS; round++) {
		struct jobs_seen s = {0};
		uint64_t receipt;

		err = jobs_search(c, &s.uid);
		if (err != IMAPQ_OK)
			return err;
		/* FLAGS with MODSEQ: a mod-sequence read after another worker's claim would pass
		 * UNCHANGEDSINCE with a store that changes nothing. */
		err = client_cmdf(c, jobs_collect, &s, "UID FETCH %u (FLAGS MODSEQ)", s.uid);
		if (err != IMAPQ_OK)
			return err;
		if (!s.found || s.busy || s.modseq == 0) {
			lost++;
			continue; /* the search answer was already stale */
		}
		err = jobs_store(c, s.uid, s.modseq, "+FLAGS.SILENT (" CLIENT_JOB_CLAIMED ")",
				 &receipt);
		if (err == IMAPQ_E_MODIFIED || err == IMAPQ_E_NOTFOUND) {
			lost++;
			continue;
		}
		if (err != IMAPQ_OK)
			return err;
		job_r->uid = s.uid;
		job_r->receipt = receipt;
		job_r->lost = lost;
		if (section != NULL) {
			err = jobs_fetch_body(c, section, job_r);
			if (err != IMAPQ_OK && err != IMAPQ_E_NOTFOUND)
				return err;
		}
		return IMAPQ_OK;
	}
	snprintf(c->error, sizeof(c->error), "no claim won in %d rounds",
		 IMAPQ_CLIENT_CLAIM_ROUNDS);
	return IMAPQ_E_LIMIT;
}

imapq_err client_job_ack(struct client *c, uint32_t uid, uint64_t receipt)
{
	imapq_err err = jobs_store(c, uid, receipt, "+FLAGS.SILENT (\\Deleted)", NULL);

	if (err != IMAPQ_OK)
		return err;
	if (client_has_cap(c, "UIDPLUS"))
		return client_cmdf(c, NULL, NULL, "UID EXPUNGE %u", uid);
	return client_cmdf(c, NULL, NULL, "EXPUNGE");
}

imapq_err client_job_release(struct client *c, uint32_t uid, uint64_t receipt, uint64_t *receipt_r)
{
	return jobs_store(c, uid, receipt, "-FLAGS.SILENT (" CLIENT_JOB_CLAIMED ")", receipt_r);
}

/* Stores one of imapqd's per-job entries with a number of seconds. */
static imapq_err jobs_store_entry(struct client *c, uint32_t uid, uint64_t receipt,
				  const char *entry, unsigned seconds, uint64_t *receipt_r)
{
	char change[128];
	imapq_err err = jobs_need_annotate(c);

	if (err != IMAPQ_OK)
		return err;
	snprintf(change, sizeof(change), "ANNOTATION (/vendor/imapq/%s (value.shared \"%u\"))",
		 entry, seconds);
	return jobs_store(c, uid, receipt, change, receipt_r);
}

imapq_err client_job_release_delay(struct client *c, uint32_t uid, uint64_t receipt,
				   unsigned seconds, uint64_t *receipt_r)
{
	return jobs_store_entry(c, uid, receipt, "delay", seconds, receipt_r);
}

imapq_err client_job_extend(struct client *c, uint32_t uid, uint64_t receipt, unsigned seconds,
			    uint64_t *receipt_r)
{
	return jobs_store_entry(c, uid, receipt, "lease", seconds, receipt_r);
}

imapq_err client_job_attempts(struct client *c, uint32_t uid, unsigned *attempts_r)
{
	struct jobs_seen s = {.uid = uid};
	imapq_err err = jobs_need_annotate(c);

	if (err == IMAPQ_OK)
		err = client_cmdf(c, jobs_collect, &s,
				  "UID FETCH %u (ANNOTATION (/vendor/imapq/attempts value.shared))",
				  uid);
	if (err != IMAPQ_OK)
		return err;
	if (!s.found)
		return IMAPQ_E_NOTFOUND;
	*attempts_r = s.have_number ? (unsigned)s.number : 0;
	return IMAPQ_OK;
}

static long long jobs_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool jobs_changed(const struct client *c, unsigned arg)
{
	(void)arg;
	return c->changes != c->idle_changes;
}

/* Polls with NOOP for a server without IDLE. */
static imapq_err jobs_poll(struct client *c, int timeout_ms, bool *woke_r)
{
	long long deadline = timeout_ms < 0 ? -1 : jobs_now_ms() + timeout_ms;

	c->idle_changes = c->changes;
	for (;;) {
		long long left = deadline < 0 ? JOBS_POLL_MS : deadline - jobs_now_ms();
		imapq_err err = client_cmdf(c, NULL, NULL, "NOOP");

		if (err != IMAPQ_OK)
			return err;
		if (c->changes != c->idle_changes) {
			*woke_r = true;
			return IMAPQ_OK;
		}
		if (left <= 0)
			return IMAPQ_OK;
		/* Sleep on the socket: an unsolicited update or a signal ends it early. */
		err = client_run_until(c, jobs_changed, 0,
				       (int)(left < JOBS_POLL_MS ? left : JOBS_POLL_MS), true);
		if (err == IMAPQ_OK && c->changes == c->idle_changes)
			return IMAPQ_OK; /* a signal */
		if (err != IMAPQ_OK && err != IMAPQ_E_TIMEOUT)
			return err;
	}
}

imapq_err client_job_wait(struct client *c, int timeout_ms, bool *woke_r)
{
	imapq_err err;

	*woke_r = false;
	if (!client_has_cap(c, "IDLE"))
		return jobs_poll(c, timeout_ms, woke_r);
	err = client_idle_start(c);
	if (err != IMAPQ_OK)
		return err;
	err = client_idle_wait(c, timeout_ms, woke_r);
	if (err != IMAPQ_OK)
		return err;
	return client_idle_done(c);
}
