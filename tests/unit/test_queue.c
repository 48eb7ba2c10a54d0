/* Unit tests of the queue layer's operations on a real store: queues and settings, enqueue and
 * payloads, claim, ack, nack, extend, peek, purge, stats, the change feed, metrics, and the
 * errors of each. Timers, waiters, races and restarts are in test_queue_timers.c. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "imap/base/limits.h"
#include "imap/base/log.h"
#include "queue/queue.h"
#include "tests/unit/queue_fixture.h"

/* Collects peeked jobs. */
struct jobs {
	struct queue_job v[64];
	size_t n;
};

static void collect_job(void *ctx, const struct queue_job *job)
{
	struct jobs *j = ctx;
	if (j->n < 64)
		j->v[j->n++] = *job;
}

static size_t peek(struct queue_fixture *f, enum queue_state state, struct jobs *j)
{
	j->n = 0;
	assert_int_equal(queue_peek(f->qs, "jobs", state, 64, collect_job, j), IMAPQ_OK);
	return j->n;
}

static void test_name_valid(void **state)
{
	(void)state;
	assert_true(queue_name_valid("jobs"));
	assert_true(queue_name_valid("team/emails"));
	assert_true(queue_name_valid("dead"));
	assert_true(queue_name_valid("a/dead/b"));
	assert_false(queue_name_valid("jobs/dead"));
	assert_false(queue_name_valid(""));
	assert_false(queue_name_valid("a//b"));
	assert_false(queue_name_valid(NULL));
	char name[IMAPQ_MAX_MAILBOX_NAME + 1];
	memset(name, 'q', sizeof name - 1);
	name[sizeof name - 1] = '\0';
	/* Its dead-letter mailbox would not fit. */
	assert_false(queue_name_valid(name));
	name[IMAPQ_MAX_MAILBOX_NAME - strlen(QUEUE_DEAD_SUFFIX)] = '\0';
	assert_true(queue_name_valid(name));
}

struct names {
	char v[16][64];
	size_t n;
};

static void collect_name(void *ctx, const char *name)
{
	struct names *n = ctx;
	if (n->n < 16)
		snprintf(n->v[n->n++], 64, "%s", name);
}

static void test_create_list_delete(void **state)
{
	struct queue_fixture *f = *state;
	uint64_t lsn = 0;
	assert_int_equal(queue_create(f->qs, "jobs", NULL, NULL), IMAPQ_E_EXISTS);
	assert_int_equal(queue_create(f->qs, "x/dead", NULL, NULL), IMAPQ_E_INVALID);
	assert_int_equal(queue_create(f->qs, "mail", NULL, &lsn), IMAPQ_OK);
	assert_true(lsn > 0);
	assert_int_equal(store_wait(f->store, lsn), IMAPQ_OK);
	uint32_t id;
	assert_int_equal(store_mailbox_find(f->store, "mail/dead", &id), IMAPQ_OK);

	struct names n = {0};
	queue_list(f->qs, collect_name, &n);
	assert_int_equal(n.n, 3); /* INBOX, jobs, mail: never the dead-letter mailboxes */
	assert_string_equal(n.v[0], "INBOX");
	assert_string_equal(n.v[1], "jobs");
	assert_string_equal(n.v[2], "mail");

	put(f, "mail", "x", 0);
	assert_int_equal(queue_delete(f->qs, "mail", NULL), IMAPQ_OK);
	assert_int_equal(store_mailbox_find(f->store, "mail", &id), IMAPQ_E_NONEXISTENT);
	assert_int_equal(store_mailbox_find(f->store, "mail/dead", &id), IMAPQ_E_NONEXISTENT);
	assert_int_equal(queue_delete(f->qs, "mail", NULL), IMAPQ_E_NONEXISTENT);
	assert_int_equal(queue_delete(f->qs, "mail/dead", NULL), IMAPQ_E_INVALID);
	struct queue_stats s;
	assert_int_equal(queue_stats(f->qs, "mail", &s), IMAPQ_E_NONEXISTENT);

	/* A recreated queue starts afresh and a receipt of the old one never matches. */
	assert_int_equal(queue_create(f->qs, "mail", NULL, NULL), IMAPQ_OK);
	s = stats_of(f, "mail");
	assert_int_equal(s.ready, 0);
	assert_int_equal(s.enqueued, 0);
}

static void test_settings(void **state)
{
	struct queue_fixture *f = *state;
	struct queue_settings s;
	assert_int_equal(queue_settings_get(f->qs, "jobs", &s), IMAPQ_OK);
	assert_int_equal(s.lease, STORE_DEFAULT_LEASE);
	assert_int_equal(s.max_attempts, STORE_DEFAULT_MAX_ATTEMPTS);
	assert_int_equal(s.retention, STORE_DEFAULT_RETENTION);

	struct queue_settings init = {.lease = 7, .max_attempts = 3, .retention = 100};
	assert_int_equal(queue_create(f->qs, "tuned", &init, NULL), IMAPQ_OK);
	assert_int_equal(queue_settings_get(f->qs, "tuned", &s), IMAPQ_OK);
	assert_int_equal(s.lease, 7);
	assert_int_equal(s.max_attempts, 3);
	assert_int_equal(s.retention, 100);

	struct queue_settings change = {.max_attempts = 9};
	assert_int_equal(queue_settings_set(f->qs, "tuned", &change, NULL), IMAPQ_OK);
	assert_int_equal(queue_settings_get(f->qs, "tuned", &s), IMAPQ_OK);
	assert_int_equal(s.lease, 7);
	assert_int_equal(s.max_attempts, 9);
	assert_int_equal(s.retention, 100);

	/* The settings are the mailbox's annotations, as IMAP METADATA shows them. */
	uint32_t id;
	char value[32];
	assert_int_equal(store_mailbox_find(f->store, "tuned", &id), IMAPQ_OK);
	assert_int_equal(
	    store_annotation_get(f->store, id, STORE_SETTING_MAX_ATTEMPTS, value, sizeof value),
	    IMAPQ_OK);
	assert_string_equal(value, "9");

	struct queue_settings bad = {.lease = IMAPQ_MAX_QUEUE_SETTING + 1};
	assert_int_equal(queue_settings_set(f->qs, "tuned", &bad, NULL), IMAPQ_E_INVALID);
	assert_int_equal(queue_create(f->qs, "other", &bad, NULL), IMAPQ_E_INVALID);
	assert_int_equal(store_mailbox_find(f->store, "other", &id), IMAPQ_E_NONEXISTENT);
	assert_int_equal(queue_settings_set(f->qs, "nope", &change, NULL), IMAPQ_E_NONEXISTENT);
	assert_int_equal(queue_settings_get(f->qs, "nope", &s), IMAPQ_E_NONEXISTENT);
}

static void test_enqueue_payload(void **state)
{
	struct queue_fixture *f = *state;
	const char *json = "{\"to\":\"a@b\"}";
	struct queue_job job;
	uint64_t lsn = 0;
	assert_int_equal(
	    queue_enqueue(f->qs, "jobs", json, strlen(json), "application/json", 0, &job, &lsn),
	    IMAPQ_OK);
	assert_true(lsn > 0);
	assert_int_equal(job.state, QUEUE_READY);
	assert_int_equal(job.attempts, 0);
	assert_int_equal(job.due, 0);
	assert_true(job.size > strlen(json));
	assert_true(job.receipt.modseq > 0);

	char *payload = NULL;
	size_t len = 0;
	char ct[64];
	assert_int_equal(
	    queue_job_payload(f->qs, "jobs", QUEUE_READY, job.id, &payload, &len, ct, sizeof ct),
	    IMAPQ_OK);
	assert_int_equal(len, strlen(json));
	assert_memory_equal(payload, json, len);
	assert_string_equal(ct, "application/json");
	free(payload);

	/* The message carries the headers a mail client expects. */
	char head[512] = {0};
	size_t got;
	uint32_t id;
	assert_int_equal(store_mailbox_find(f->store, "jobs", &id), IMAPQ_OK);
	assert_int_equal(store_body_read(f->store, id, job.id, 0, head, sizeof head - 1, &got),
			 IMAPQ_OK);
	assert_non_null(strstr(head, "Content-Type: application/json\r\n"));
	assert_non_null(strstr(head, "\r\nDate: "));
	assert_non_null(strstr(head, "@imapq>\r\nMIME-Version: 1.0\r\n\r\n{"));

	/* An empty payload is a job too. */
	assert_int_equal(queue_enqueue(f->qs, "jobs", NULL, 0, NULL, 0, &job, NULL), IMAPQ_OK);
	assert_int_equal(
	    queue_job_payload(f->qs, "jobs", QUEUE_READY, job.id, &payload, &len, ct, sizeof ct),
	    IMAPQ_OK);
	assert_int_equal(len, 0);
	assert_string_equal(ct, "application/octet-stream");
	free(payload);

	assert_int_equal(queue_enqueue(f->qs, "jobs", "x", 1, "bad\r\nX-Evil: 1", 0, NULL, NULL),
			 IMAPQ_E_INVALID);
	assert_int_equal(queue_enqueue(f->qs, "jobs", "x", 1, "nocategory", 0, NULL, NULL),
			 IMAPQ_E_INVALID);
	assert_int_equal(
	    queue_enqueue(f->qs, "jobs", "x", IMAPQ_MAX_MESSAGE_SIZE, "text/plain", 0, NULL, NULL),
	    IMAPQ_E_TOOBIG);
	assert_int_equal(queue_enqueue(f->qs, "nope", "x", 1, "text/plain", 0, NULL, NULL),
			 IMAPQ_E_NONEXISTENT);
	assert_int_equal(queue_enqueue(f->qs, "jobs", "x", 1, "text/plain",
				       IMAPQ_MAX_QUEUE_SETTING + 1, NULL, NULL),
			 IMAPQ_E_INVALID);
	assert_int_equal(
	    queue_job_payload(f->qs, "jobs", QUEUE_READY, 999, &payload, &len, ct, sizeof ct),
	    IMAPQ_E_NOTFOUND);
	assert_int_equal(
	    queue_job_payload(f->qs, "nope", QUEUE_READY, 1, &payload, &len, ct, sizeof ct),
	    IMAPQ_E_NONEXISTENT);
}

/* Appends a raw message to the queue's mailbox the way an IMAP APPEND would. */
static uint32_t append_raw(struct queue_fixture *f, const char *text)
{
	uint32_t id;
	assert_int_equal(store_mailbox_find(f->store, "jobs", &id), IMAPQ_OK);
	return append_text(f->store, id, 0, text);
}

static void test_payload_of_imap_messages(void **state)
{
	struct queue_fixture *f = *state;
	char *payload;
	size_t len;
	char ct[32];

	uint32_t a =
	    append_raw(f, "Subject: hi\nContent-type:\n text/csv;\n\tcharset=utf-8\n\nx,y\n");
	assert_int_equal(
	    queue_job_payload(f->qs, "jobs", QUEUE_READY, a, &payload, &len, ct, sizeof ct),
	    IMAPQ_OK);
	assert_string_equal(ct, "text/csv; charset=utf-8");
	assert_int_equal(len, 4);
	assert_memory_equal(payload, "x,y\n", 4);
	free(payload);

	uint32_t b = append_raw(f, "Subject: none\r\n\r\nbody\r\n");
	char small[5];
	assert_int_equal(
	    queue_job_payload(f->qs, "jobs", QUEUE_READY, b, &payload, &len, small, sizeof small),
	    IMAPQ_OK);
	assert_string_equal(small, "text"); /* "text/plain" cut to the buffer */
	assert_string_equal(payload, "body\r\n");
	free(payload);

	/* A message without a blank line is all header. */
	uint32_t c = append_raw(f, "Subject: only a header\r\n");
	assert_int_equal(queue_job_payload(f->qs, "jobs", QUEUE_READY, c, &payload, &len, NULL, 0),
			 IMAPQ_OK);
	assert_int_equal(len, 0);
	free(payload);

	/* A blank line split across reads of the header is still found. */
	char big[9000];
	memset(big, 0, sizeof big);
	strcpy(big, "X-Long: ");
	memset(big + 8, 'a', 4094 - 8);
	strcat(big, "\r\n\r\npayload");
	uint32_t d = append_raw(f, big);
	assert_int_equal(
	    queue_job_payload(f->qs, "jobs", QUEUE_READY, d, &payload, &len, ct, sizeof ct),
	    IMAPQ_OK);
	assert_string_equal(payload, "payload");
	free(payload);
}

static void test_claim_ack(void **state)
{
	struct queue_fixture *f = *state;
	uint32_t a = put(f, "jobs", "a", 0);
	uint32_t b = put(f, "jobs", "b", 0);
	uint32_t c = put(f, "jobs", "c", 0);

	struct queue_job jobs[4];
	uint32_t n = 0;
	uint64_t lsn = 0;
	assert_int_equal(queue_claim(f->qs, "jobs", 2, 0, jobs, &n, &lsn), IMAPQ_OK);
	assert_true(lsn > 0);
	assert_int_equal(n, 2);
	assert_int_equal(jobs[0].id, a);
	assert_int_equal(jobs[1].id, b);
	assert_int_equal(jobs[0].state, QUEUE_CLAIMED);
	assert_int_equal(jobs[0].attempts, 1);
	assert_true(jobs[0].due >= (uint32_t)time(NULL) + STORE_DEFAULT_LEASE);
	assert_true(jobs[0].receipt.modseq > 0);

	assert_int_equal(queue_ack(f->qs, "jobs", a, jobs[0].receipt, NULL), IMAPQ_OK);
	assert_int_equal(queue_ack(f->qs, "jobs", a, jobs[0].receipt, NULL), IMAPQ_E_NOTFOUND);

	struct queue_receipt stale = jobs[1].receipt;
	stale.modseq--;
	assert_int_equal(queue_ack(f->qs, "jobs", b, stale, NULL), IMAPQ_E_MODIFIED);
	struct queue_receipt other = jobs[1].receipt;
	other.uidvalidity++;
	assert_int_equal(queue_ack(f->qs, "jobs", b, other, NULL), IMAPQ_E_NOTFOUND);
	/* A ready job is held by no one: acking it with its current mod-sequence fails. */
	struct jobs ready;
	assert_int_equal(peek(f, QUEUE_READY, &ready), 1);
	assert_int_equal(queue_ack(f->qs, "jobs", c, ready.v[0].receipt, NULL), IMAPQ_E_MODIFIED);
	assert_int_equal(queue_ack(f->qs, "nope", b, jobs[1].receipt, NULL), IMAPQ_E_NONEXISTENT);

	/* A custom lease is honoured. */
	struct queue_job j = claim1(f, 600);
	assert_int_equal(j.id, c);
	assert_true(j.due >= (uint32_t)time(NULL) + 600);
	assert_int_equal(queue_claim(f->qs, "jobs", 4, 0, jobs, &n, NULL), IMAPQ_OK);
	assert_int_equal(n, 0);
	assert_int_equal(queue_ack(f->qs, "jobs", b, jobs[1].receipt, NULL), IMAPQ_OK);
	assert_int_equal(queue_ack(f->qs, "jobs", c, j.receipt, NULL), IMAPQ_OK);

	struct queue_stats s = stats_of(f, "jobs");
	assert_int_equal(s.ready + s.claimed + s.delayed, 0);
	assert_int_equal(s.enqueued, 3);
	assert_int_equal(s.claims, 3);
	assert_int_equal(s.acks, 3);
	assert_int_equal(queue_claim(f->qs, "jobs", 1, IMAPQ_MAX_QUEUE_SETTING + 1, jobs, &n, NULL),
			 IMAPQ_E_INVALID);
	assert_int_equal(queue_claim(f->qs, "nope", 1, 0, jobs, &n, NULL), IMAPQ_E_NONEXISTENT);
	assert_int_equal(queue_claim(f->qs, "a/dead", 1, 0, jobs, &n, NULL), IMAPQ_E_INVALID);
}

static void test_nack(void **state)
{
	struct queue_fixture *f = *state;
	uint32_t a = put(f, "jobs", "a", 0);
	struct queue_job j = claim1(f, 0);
	struct queue_receipt stale = j.receipt;
	stale.modseq--;
	assert_int_equal(queue_nack(f->qs, "jobs", a, stale, 0, NULL), IMAPQ_E_MODIFIED);
	assert_int_equal(queue_nack(f->qs, "jobs", a, j.receipt, 0, NULL), IMAPQ_OK);
	assert_int_equal(queue_nack(f->qs, "jobs", a, j.receipt, 0, NULL), IMAPQ_E_MODIFIED);
	struct jobs ready;
	assert_int_equal(peek(f, QUEUE_READY, &ready), 1);
	assert_int_equal(ready.v[0].id, a);
	assert_int_equal(ready.v[0].due, 0);

	j = claim1(f, 0);
	assert_int_equal(j.attempts, 2);
	/* A nack with a delay parks the job; it is neither ready nor claimed. */
	assert_int_equal(queue_nack(f->qs, "jobs", a, j.receipt, 300, NULL), IMAPQ_OK);
	struct jobs delayed;
	assert_int_equal(peek(f, QUEUE_DELAYED, &delayed), 1);
	assert_true(delayed.v[0].due >= (uint32_t)time(NULL) + 300);
	assert_int_equal(peek(f, QUEUE_READY, &ready), 0);
	uint32_t n;
	assert_int_equal(queue_claim(f->qs, "jobs", 1, 0, &j, &n, NULL), IMAPQ_OK);
	assert_int_equal(n, 0);
	struct queue_stats s = stats_of(f, "jobs");
	assert_int_equal(s.delayed, 1);
	assert_int_equal(s.nacks, 2);
	assert_int_equal(queue_nack(f->qs, "jobs", 999, j.receipt, 0, NULL), IMAPQ_E_NOTFOUND);
}

static void test_nack_dead_letters_at_max_attempts(void **state)
{
	struct queue_fixture *f = *state;
	struct queue_settings one = {.max_attempts = 1};
	assert_int_equal(queue_settings_set(f->qs, "jobs", &one, NULL), IMAPQ_OK);
	uint32_t a = put(f, "jobs", "poison", 0);
	struct queue_job j = claim1(f, 0);
	assert_int_equal(queue_nack(f->qs, "jobs", a, j.receipt, 5, NULL), IMAPQ_OK);
	struct queue_stats s = stats_of(f, "jobs");
	assert_int_equal(s.ready + s.claimed + s.delayed, 0);
	assert_int_equal(s.dead, 1);
	assert_int_equal(s.dead_lettered, 1);
	assert_int_equal(s.nacks, 1);
	assert_int_equal(s.expired, 0);

	struct jobs dead;
	assert_int_equal(peek(f, QUEUE_DEAD, &dead), 1);
	assert_int_equal(dead.v[0].state, QUEUE_DEAD);
	assert_int_equal(dead.v[0].attempts, 1);
	assert_int_equal(dead.v[0].due, 0);
	char *payload;
	size_t len;
	assert_int_equal(
	    queue_job_payload(f->qs, "jobs", QUEUE_DEAD, dead.v[0].id, &payload, &len, NULL, 0),
	    IMAPQ_OK);
	assert_string_equal(payload, "poison");
	free(payload);
	assert_int_equal(queue_ack(f->qs, "jobs", a, j.receipt, NULL), IMAPQ_E_NOTFOUND);

	/* Requeue brings it back as a new ready job whose attempts start again. */
	uint32_t moved = 9;
	assert_int_equal(queue_requeue_dead(f->qs, "jobs", dead.v[0].id, &moved, NULL), IMAPQ_OK);
	assert_int_equal(moved, 1);
	assert_int_equal(queue_requeue_dead(f->qs, "jobs", dead.v[0].id, &moved, NULL),
			 IMAPQ_E_NOTFOUND);
	assert_int_equal(moved, 0);
	struct jobs ready;
	assert_int_equal(peek(f, QUEUE_READY, &ready), 1);
	assert_true(ready.v[0].id > a);
	assert_int_equal(ready.v[0].attempts, 0);
	assert_int_equal(
	    queue_job_payload(f->qs, "jobs", QUEUE_READY, ready.v[0].id, &payload, &len, NULL, 0),
	    IMAPQ_OK);
	assert_string_equal(payload, "poison");
	free(payload);
	assert_int_equal(stats_of(f, "jobs").dead, 0);
}

static void test_requeue_all(void **state)
{
	struct queue_fixture *f = *state;
	struct queue_settings one = {.max_attempts = 1};
	assert_int_equal(queue_settings_set(f->qs, "jobs", &one, NULL), IMAPQ_OK);
	for (int i = 0; i < 3; i++) {
		uint32_t id = put(f, "jobs", "x", 0);
		struct queue_job j = claim1(f, 0);
		assert_int_equal(queue_nack(f->qs, "jobs", id, j.receipt, 0, NULL), IMAPQ_OK);
	}
	assert_int_equal(stats_of(f, "jobs").dead, 3);
	uint32_t moved = 0;
	assert_int_equal(queue_requeue_dead(f->qs, "jobs", 0, &moved, NULL), IMAPQ_OK);
	assert_int_equal(moved, 3);
	struct queue_stats s = stats_of(f, "jobs");
	assert_int_equal(s.dead, 0);
	assert_int_equal(s.ready, 3);
	assert_int_equal(queue_requeue_dead(f->qs, "jobs", 0, &moved, NULL), IMAPQ_OK);
	assert_int_equal(moved, 0);
	assert_int_equal(queue_requeue_dead(f->qs, "nope", 0, &moved, NULL), IMAPQ_E_NONEXISTENT);
}

static void test_extend(void **state)
{
	struct queue_fixture *f = *state;
	uint32_t a = put(f, "jobs", "a", 0);
	struct queue_job j = claim1(f, 5);
	struct queue_receipt r;
	assert_int_equal(queue_extend(f->qs, "jobs", a, j.receipt, 900, &r, NULL), IMAPQ_OK);
	assert_true(r.modseq > j.receipt.modseq);
	assert_int_equal(r.uidvalidity, j.receipt.uidvalidity);
	struct jobs claimed;
	assert_int_equal(peek(f, QUEUE_CLAIMED, &claimed), 1);
	assert_true(claimed.v[0].due >= (uint32_t)time(NULL) + 900);
	assert_int_equal(claimed.v[0].attempts, 1);

	/* The old receipt is spent; extending with the queue's lease moves it again. */
	struct queue_receipt r2;
	assert_int_equal(queue_extend(f->qs, "jobs", a, j.receipt, 0, &r2, NULL), IMAPQ_E_MODIFIED);
	assert_int_equal(queue_ack(f->qs, "jobs", a, j.receipt, NULL), IMAPQ_E_MODIFIED);
	assert_int_equal(queue_extend(f->qs, "jobs", a, r, 0, &r2, NULL), IMAPQ_OK);
	assert_true(r2.modseq > r.modseq);
	assert_int_equal(queue_extend(f->qs, "jobs", 999, r2, 0, &r, NULL), IMAPQ_E_NOTFOUND);
	assert_int_equal(queue_ack(f->qs, "jobs", a, r2, NULL), IMAPQ_OK);
	assert_int_equal(queue_extend(f->qs, "jobs", a, r2, 0, &r, NULL), IMAPQ_E_NOTFOUND);
}

static void test_peek_and_stats(void **state)
{
	struct queue_fixture *f = *state;
	for (int i = 0; i < 4; i++)
		put(f, "jobs", "r", 0);
	uint32_t d = put(f, "jobs", "later", 600);
	struct queue_job j = claim1(f, 0);

	struct jobs got;
	assert_int_equal(peek(f, QUEUE_READY, &got), 3);
	assert_true(got.v[0].id < got.v[1].id && got.v[1].id < got.v[2].id);
	assert_int_equal(got.v[0].state, QUEUE_READY);
	assert_int_equal(peek(f, QUEUE_CLAIMED, &got), 1);
	assert_int_equal(got.v[0].id, j.id);
	assert_int_equal(got.v[0].receipt.modseq, j.receipt.modseq);
	assert_int_equal(peek(f, QUEUE_DELAYED, &got), 1);
	assert_int_equal(got.v[0].id, d);
	assert_int_equal(got.v[0].state, QUEUE_DELAYED);
	assert_int_equal(peek(f, QUEUE_DEAD, &got), 0);

	got.n = 0;
	assert_int_equal(queue_peek(f->qs, "jobs", QUEUE_READY, 2, collect_job, &got), IMAPQ_OK);
	assert_int_equal(got.n, 2);
	assert_int_equal(queue_peek(f->qs, "jobs", (enum queue_state)42, 2, collect_job, &got),
			 IMAPQ_E_INVALID);
	assert_int_equal(queue_peek(f->qs, "nope", QUEUE_READY, 2, collect_job, &got),
			 IMAPQ_E_NONEXISTENT);

	struct queue_stats s = stats_of(f, "jobs");
	assert_int_equal(s.ready, 3);
	assert_int_equal(s.claimed, 1);
	assert_int_equal(s.delayed, 1);
	assert_int_equal(s.dead, 0);
	assert_true(s.oldest_ready_age >= 0 && s.oldest_ready_age < 60);
	assert_true(s.highestmodseq >= j.receipt.modseq);
	assert_int_equal(s.enqueued, 5);
	assert_int_equal(s.claims, 1);
	assert_int_equal(stats_of(f, "INBOX").oldest_ready_age, -1);
}

static void test_purge(void **state)
{
	struct queue_fixture *f = *state;
	put(f, "jobs", "a", 0);
	struct queue_job j = claim1(f, 0);
	put(f, "jobs", "b", 0);
	put(f, "jobs", "c", 0);
	put(f, "jobs", "d", 3600);
	uint32_t removed = 0;
	uint64_t lsn = 0;
	assert_int_equal(queue_purge(f->qs, "jobs", &removed, &lsn), IMAPQ_OK);
	assert_int_equal(removed, 3);
	assert_true(lsn > 0);
	struct queue_stats s = stats_of(f, "jobs");
	assert_int_equal(s.ready, 0);
	assert_int_equal(s.delayed, 0);
	assert_int_equal(s.claimed, 1);
	/* The claimed job finishes normally. */
	assert_int_equal(queue_ack(f->qs, "jobs", j.id, j.receipt, NULL), IMAPQ_OK);
	assert_int_equal(queue_purge(f->qs, "jobs", NULL, NULL), IMAPQ_OK);
	assert_int_equal(queue_purge(f->qs, "nope", &removed, NULL), IMAPQ_E_NONEXISTENT);
}

/* Collects the change feed. */
struct feed {
	struct jobs jobs;
	struct uid_range gone[16];
	size_t ngone;
};

static void feed_job(void *ctx, const struct queue_job *job)
{
	collect_job(&((struct feed *)ctx)->jobs, job);
}

static void feed_gone(void *ctx, uint32_t lo, uint32_t hi)
{
	struct feed *f = ctx;
	if (f->ngone < 16)
		f->gone[f->ngone++] = (struct uid_range){lo, hi};
}

static void test_changes(void **state)
{
	struct queue_fixture *f = *state;
	uint32_t a = put(f, "jobs", "a", 0);
	uint32_t b = put(f, "jobs", "b", 0);
	struct feed feed = {0};
	struct queue_changes_page page;
	assert_int_equal(
	    queue_changes_page(f->qs, "jobs", 0, 100, feed_job, feed_gone, &feed, &page), IMAPQ_OK);
	assert_int_equal(feed.jobs.n, 2);
	assert_int_equal(feed.ngone, 0);
	assert_false(page.more);
	assert_true(page.highestmodseq > 0);
	assert_true(page.next >= page.highestmodseq);

	/* A page of one: the lower mod-sequence first, then the other. */
	memset(&feed, 0, sizeof feed);
	assert_int_equal(queue_changes_page(f->qs, "jobs", 0, 1, feed_job, feed_gone, &feed, &page),
			 IMAPQ_OK);
	assert_int_equal(feed.jobs.n, 1);
	assert_int_equal(feed.jobs.v[0].id, a);
	assert_true(page.more);
	memset(&feed, 0, sizeof feed);
	assert_int_equal(
	    queue_changes_page(f->qs, "jobs", page.next, 1, feed_job, feed_gone, &feed, &page),
	    IMAPQ_OK);
	assert_int_equal(feed.jobs.n, 1);
	assert_int_equal(feed.jobs.v[0].id, b);
	uint64_t since = page.next;

	struct queue_job j = claim1(f, 0);
	assert_int_equal(j.id, a);
	assert_int_equal(queue_ack(f->qs, "jobs", a, j.receipt, NULL), IMAPQ_OK);
	uint32_t c = put(f, "jobs", "c", 0);
	memset(&feed, 0, sizeof feed);
	assert_int_equal(
	    queue_changes_page(f->qs, "jobs", since, 100, feed_job, feed_gone, &feed, &page),
	    IMAPQ_OK);
	assert_true(page.next > since);
	assert_int_equal(feed.jobs.n, 1);
	assert_int_equal(feed.jobs.v[0].id, c);
	assert_int_equal(feed.ngone, 1);
	assert_true(feed.gone[0].lo <= a && a <= feed.gone[0].hi);
	assert_false(feed.gone[0].lo <= b && b <= feed.gone[0].hi);

	memset(&feed, 0, sizeof feed);
	assert_int_equal(
	    queue_changes_page(f->qs, "jobs", page.next, 100, feed_job, feed_gone, &feed, &page),
	    IMAPQ_OK);
	assert_int_equal(feed.jobs.n, 0);
	assert_int_equal(feed.ngone, 0);
	assert_int_equal(
	    queue_changes_page(f->qs, "nope", 0, 100, feed_job, feed_gone, &feed, &page),
	    IMAPQ_E_NONEXISTENT);
}

/* Appends metrics text to a buffer. */
struct text {
	char buf[16384];
	size_t len;
};

static void add_text(void *ctx, const char *text, size_t len)
{
	struct text *t = ctx;
	assert_true(t->len + len < sizeof t->buf);
	memcpy(t->buf + t->len, text, len);
	t->len += len;
	t->buf[t->len] = '\0';
}

static void test_metrics(void **state)
{
	struct queue_fixture *f = *state;
	assert_int_equal(queue_create(f->qs, "odd\"name", NULL, NULL), IMAPQ_OK);
	put(f, "jobs", "a", 0);
	put(f, "jobs", "b", 0);
	claim1(f, 0);
	struct text t = {0};
	queue_metrics(f->qs, add_text, &t);
	assert_non_null(strstr(t.buf, "# TYPE imapq_queue_ready gauge\n"));
	assert_non_null(strstr(t.buf, "\nimapq_queue_ready{queue=\"jobs\"} 1\n"));
	assert_non_null(strstr(t.buf, "\nimapq_queue_claimed{queue=\"jobs\"} 1\n"));
	assert_non_null(strstr(t.buf, "# TYPE imapq_queue_claims_total counter\n"));
	assert_non_null(strstr(t.buf, "\nimapq_queue_enqueued_total{queue=\"jobs\"} 2\n"));
	assert_non_null(strstr(t.buf, "\nimapq_queue_ready{queue=\"odd\\\"name\"} 0\n"));
	assert_non_null(
	    strstr(t.buf, "imapq_queue_oldest_ready_age_seconds{queue=\"INBOX\"} -1\n"));
	assert_null(strstr(t.buf, "dead\"}"));
}

static void never_called(void *arg)
{
	(void)arg;
	fail();
}

static void test_unknown_queue(void **state)
{
	struct queue_fixture *f = *state;
	struct queue_receipt r = {1, 1};
	struct queue_settings s = {.lease = 1};
	struct queue_waiter *w = NULL;
	uint32_t n;
	struct queue_job j;
	assert_int_equal(queue_purge(f->qs, "nope", NULL, NULL), IMAPQ_E_NONEXISTENT);
	assert_int_equal(queue_settings_set(f->qs, "nope", &s, NULL), IMAPQ_E_NONEXISTENT);
	assert_int_equal(queue_nack(f->qs, "nope", 1, r, 0, NULL), IMAPQ_E_NONEXISTENT);
	assert_int_equal(queue_extend(f->qs, "nope", 1, r, 0, &r, NULL), IMAPQ_E_NONEXISTENT);
	assert_int_equal(queue_claim(f->qs, "nope", 1, 0, &j, &n, NULL), IMAPQ_E_NONEXISTENT);
	assert_int_equal(queue_wait(f->qs, "nope", never_called, NULL, &w), IMAPQ_E_NONEXISTENT);
	assert_null(w);
	assert_int_equal(queue_delete(f->qs, "nope", NULL), IMAPQ_E_NONEXISTENT);
	assert_int_equal(queue_stats(f->qs, "", NULL), IMAPQ_E_INVALID);
}

int main(void)
{
	log_set_level(LOG_WARN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_name_valid),
	    cmocka_unit_test_setup_teardown(test_create_list_delete, queue_fixture_setup,
					    queue_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_settings, queue_fixture_setup,
					    queue_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_enqueue_payload, queue_fixture_setup,
					    queue_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_payload_of_imap_messages, queue_fixture_setup,
					    queue_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_claim_ack, queue_fixture_setup,
					    queue_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_nack, queue_fixture_setup, queue_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_nack_dead_letters_at_max_attempts,
					    queue_fixture_setup, queue_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_requeue_all, queue_fixture_setup,
					    queue_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_extend, queue_fixture_setup,
					    queue_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_peek_and_stats, queue_fixture_setup,
					    queue_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_purge, queue_fixture_setup,
					    queue_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_changes, queue_fixture_setup,
					    queue_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_metrics, queue_fixture_setup,
					    queue_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_unknown_queue, queue_fixture_setup,
					    queue_fixture_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
