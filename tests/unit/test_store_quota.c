/* Unit tests of the message limits: appends, batches, copies and moves refused at a mailbox's
 * limit or the store's total with nothing written, the conditional move (dead-lettering) exempt,
 * the per-mailbox setting overriding the store's default, replay keeping everything over a
 * lowered limit, and the queue layer's batch enqueue and dead-lettering on top of them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap/base/limits.h"
#include "imap/store/store.h"
#include "tests/unit/queue_fixture.h"

/* The limits most tests open the store with: small enough to fill in a few appends. */
#define MAILBOX_LIMIT 3
#define STORE_LIMIT   8

/* A store in a temporary folder, opened with explicit limits. */
struct quota_fixture {
	char dir[TMPDIR_LEN];
	struct store *s;
};

/* Opens (or reopens) the fixture's store with these limits (0: the built-in defaults). */
static void quota_open(struct quota_fixture *f, uint32_t per_mailbox, uint64_t total)
{
	if (f->s != NULL)
		store_close(&f->s);
	struct store_options o = {.dir = f->dir,
				  .fsync = JOURNAL_FSYNC_OFF,
				  .max_mailbox_messages = per_mailbox,
				  .max_messages = total};
	struct store_report rep;
	assert_int_equal(store_open(&o, &rep, &f->s), IMAPQ_OK);
}

static int quota_setup(void **state)
{
	struct quota_fixture *f = calloc(1, sizeof *f);
	if (f == NULL || !tmpdir_make(f->dir)) {
		free(f);
		return -1;
	}
	quota_open(f, MAILBOX_LIMIT, STORE_LIMIT);
	*state = f;
	return 0;
}

static int quota_teardown(void **state)
{
	struct quota_fixture *f = *state;
	fixture_store_remove(f->dir, &f->s);
	free(f);
	return 0;
}

/* Tries one append with a short body; returns the store's answer. */
static imapq_err try_append(struct store *s, uint32_t id)
{
	static const char text[] = "Subject: q\r\n\r\nbody";
	struct journal_body b = {.data = text, .fd = -1, .len = sizeof text - 1};
	b.crc = crc32c(0, text, b.len);
	return store_append(s, id, 0, 1700000000, &b, NULL, NULL, NULL);
}

/* What a refused operation must leave as it was: the mailbox's counters and the journal. */
struct snapshot {
	struct store_mailbox_status st;
	uint64_t records;
	uint64_t messages;
};

static struct snapshot snap(struct store *s, uint32_t id)
{
	struct snapshot sn;
	assert_int_equal(store_mailbox_status(s, id, &sn.st), IMAPQ_OK);
	struct store_stats stats;
	store_stats(s, &stats);
	sn.records = stats.journal.records;
	sn.messages = stats.messages;
	return sn;
}

static void assert_unchanged(struct store *s, uint32_t id, const struct snapshot *before)
{
	struct snapshot now = snap(s, id);
	assert_int_equal(now.st.messages, before->st.messages);
	assert_int_equal(now.st.uidnext, before->st.uidnext);
	assert_int_equal(now.st.highestmodseq, before->st.highestmodseq);
	assert_int_equal(now.st.keywords, before->st.keywords);
	assert_int_equal(now.records, before->records);
	assert_int_equal(now.messages, before->messages);
}

static uint32_t count_of(struct store *s, uint32_t id)
{
	struct store_mailbox_status st;
	assert_int_equal(store_mailbox_status(s, id, &st), IMAPQ_OK);
	return st.messages;
}

/* The limits as opened show in the status and the stats. */
static void test_limits_reported(void **state)
{
	struct quota_fixture *f = *state;
	uint32_t id = fixture_mailbox(f->s, "jobs");
	struct store_mailbox_status st;
	assert_int_equal(store_mailbox_status(f->s, id, &st), IMAPQ_OK);
	assert_int_equal(st.max_messages, MAILBOX_LIMIT);
	uint32_t per;
	uint64_t total;
	store_message_limits(f->s, &per, &total);
	assert_int_equal(per, MAILBOX_LIMIT);
	assert_int_equal(total, STORE_LIMIT);
	struct store_stats stats;
	store_stats(f->s, &stats);
	assert_int_equal(stats.max_messages, STORE_LIMIT);
	assert_int_equal(stats.max_mailbox_messages, MAILBOX_LIMIT);
	/* 0 in the options means the built-in defaults. */
	quota_open(f, 0, 0);
	store_message_limits(f->s, &per, &total);
	assert_int_equal(per, IMAPQ_MAX_MAILBOX_MESSAGES);
	assert_int_equal(total, IMAPQ_MAX_STORE_MESSAGES);
}

/* An append past the mailbox's limit fails and writes nothing. */
static void test_append_at_limit(void **state)
{
	struct quota_fixture *f = *state;
	uint32_t id = fixture_mailbox(f->s, "jobs");
	for (int i = 0; i < MAILBOX_LIMIT; i++)
		assert_int_equal(try_append(f->s, id), IMAPQ_OK);
	struct snapshot before = snap(f->s, id);
	assert_int_equal(try_append(f->s, id), IMAPQ_E_OVERQUOTA);
	uint32_t uid = 0;
	static const char text[] = "later";
	struct journal_body b = {.data = text, .fd = -1, .len = 5, .crc = crc32c(0, text, 5)};
	assert_int_equal(
	    store_append_due(f->s, id, 0, 1800000000, 1700000000, &b, &uid, NULL, NULL),
	    IMAPQ_E_OVERQUOTA);
	assert_int_equal(uid, 0);
	assert_unchanged(f->s, id, &before);
	/* Room made by an expunge is room again. */
	struct uid_range r = {1, 1};
	assert_int_equal(
	    store_flags(f->s, id, &r, 1, STORE_FLAGS_ADD, STORE_DELETED, NULL, NULL, NULL, NULL),
	    IMAPQ_OK);
	assert_int_equal(store_expunge(f->s, id, &r, 1, NULL, NULL, NULL), IMAPQ_OK);
	assert_int_equal(try_append(f->s, id), IMAPQ_OK);
	assert_int_equal(count_of(f->s, id), MAILBOX_LIMIT);
}

/* A batch is taken whole or refused whole. */
static void test_batch_all_or_nothing(void **state)
{
	struct quota_fixture *f = *state;
	uint32_t id = fixture_mailbox(f->s, "jobs");
	static const char text[] = "job";
	struct store_new_message m[MAILBOX_LIMIT + 1];
	for (size_t i = 0; i < MAILBOX_LIMIT + 1; i++)
		m[i] = (struct store_new_message){
		    .internaldate = 1700000000,
		    .body = {.data = text, .fd = -1, .len = 3, .crc = crc32c(0, text, 3)}};
	struct snapshot before = snap(f->s, id);
	size_t done = 99;
	assert_int_equal(store_append_batch(f->s, id, m, MAILBOX_LIMIT + 1, &done, NULL),
			 IMAPQ_E_OVERQUOTA);
	assert_int_equal(done, 0);
	assert_unchanged(f->s, id, &before);
	assert_int_equal(store_append_batch(f->s, id, m, MAILBOX_LIMIT, &done, NULL), IMAPQ_OK);
	assert_int_equal(done, MAILBOX_LIMIT);
	for (size_t i = 0; i < MAILBOX_LIMIT; i++)
		assert_int_equal(m[i].uid, i + 1);
	assert_int_equal(count_of(f->s, id), MAILBOX_LIMIT);
}

/* The store's total bounds every mailbox together. */
static void test_store_total(void **state)
{
	struct quota_fixture *f = *state;
	uint32_t ids[3] = {fixture_mailbox(f->s, "a"), fixture_mailbox(f->s, "b"),
			   fixture_mailbox(f->s, "c")};
	for (int i = 0; i < STORE_LIMIT; i++)
		assert_int_equal(try_append(f->s, ids[i % 3]), IMAPQ_OK);
	/* "c" holds 2 of its 3, but the store holds its 8. */
	assert_int_equal(count_of(f->s, ids[2]), 2);
	struct snapshot before = snap(f->s, ids[2]);
	assert_int_equal(try_append(f->s, ids[2]), IMAPQ_E_OVERQUOTA);
	assert_unchanged(f->s, ids[2], &before);
	/* A mailbox delete frees its share. */
	assert_int_equal(store_mailbox_delete(f->s, "a", NULL), IMAPQ_OK);
	assert_int_equal(try_append(f->s, ids[2]), IMAPQ_OK);
}

/* COPY and MOVE are all or nothing against the destination's limit; a move adds nothing to the
 * total, and a move within one mailbox adds nothing at all. */
static void test_copy_and_move(void **state)
{
	struct quota_fixture *f = *state;
	uint32_t src = fixture_mailbox(f->s, "src");
	uint32_t dst = fixture_mailbox(f->s, "dst");
	for (int i = 0; i < 3; i++)
		assert_int_equal(try_append(f->s, src), IMAPQ_OK);
	assert_int_equal(try_append(f->s, dst), IMAPQ_OK);
	/* dst has room for 2: copying 3 copies none, and defines no keyword. */
	struct snapshot before_dst = snap(f->s, dst);
	struct snapshot before_src = snap(f->s, src);
	assert_int_equal(store_copy(f->s, src, NULL, 0, dst, false, NULL, NULL, NULL),
			 IMAPQ_E_OVERQUOTA);
	assert_int_equal(store_copy(f->s, src, NULL, 0, dst, true, NULL, NULL, NULL),
			 IMAPQ_E_OVERQUOTA);
	assert_unchanged(f->s, dst, &before_dst);
	assert_unchanged(f->s, src, &before_src);
	/* Two fit. */
	struct uid_range two = {1, 2};
	assert_int_equal(store_copy(f->s, src, &two, 1, dst, false, NULL, NULL, NULL), IMAPQ_OK);
	assert_int_equal(count_of(f->s, dst), 3);
	/* src is full too: a move within it is not refused. */
	struct uid_range one = {3, 3};
	assert_int_equal(store_copy(f->s, src, &one, 1, src, true, NULL, NULL, NULL), IMAPQ_OK);
	assert_int_equal(count_of(f->s, src), 3);
	/* Copying src onto itself is refused, whatever the set. */
	assert_int_equal(store_copy(f->s, src, NULL, 0, src, false, NULL, NULL, NULL),
			 IMAPQ_E_OVERQUOTA);
	/* An empty set copies nothing and is never refused. */
	struct uid_range none = {100, 200};
	assert_int_equal(store_copy(f->s, src, &none, 1, dst, false, NULL, NULL, NULL), IMAPQ_OK);
}

/* At the store's total, a move still works (it adds nothing) while a copy does not. */
static void test_move_at_store_total(void **state)
{
	struct quota_fixture *f = *state;
	quota_open(f, 100, 4);
	uint32_t a = fixture_mailbox(f->s, "a");
	uint32_t b = fixture_mailbox(f->s, "b");
	for (int i = 0; i < 4; i++)
		assert_int_equal(try_append(f->s, a), IMAPQ_OK);
	struct uid_range one = {1, 1};
	assert_int_equal(store_copy(f->s, a, &one, 1, b, false, NULL, NULL, NULL),
			 IMAPQ_E_OVERQUOTA);
	assert_int_equal(store_copy(f->s, a, &one, 1, b, true, NULL, NULL, NULL), IMAPQ_OK);
	assert_int_equal(count_of(f->s, a), 3);
	assert_int_equal(count_of(f->s, b), 1);
}

/* The conditional move (dead-lettering) is exempt: it lands in a full mailbox. */
static void test_move_if_unchanged_exempt(void **state)
{
	struct quota_fixture *f = *state;
	uint32_t q = fixture_mailbox(f->s, "jobs");
	uint32_t dead = fixture_mailbox(f->s, "jobs/dead");
	assert_int_equal(try_append(f->s, q), IMAPQ_OK);
	for (int i = 0; i < MAILBOX_LIMIT; i++)
		assert_int_equal(try_append(f->s, dead), IMAPQ_OK);
	assert_int_equal(try_append(f->s, dead), IMAPQ_E_OVERQUOTA);
	struct store_message m;
	assert_int_equal(store_message_get(f->s, q, 1, &m), IMAPQ_OK);
	uint32_t dst_uid = 0;
	assert_int_equal(store_move_if_unchanged(f->s, q, 1, m.modseq, dead, 0, &dst_uid, NULL),
			 IMAPQ_OK);
	assert_int_equal(dst_uid, MAILBOX_LIMIT + 1);
	assert_int_equal(count_of(f->s, dead), MAILBOX_LIMIT + 1);
	assert_int_equal(count_of(f->s, q), 0);
}

/* The mailbox's setting overrides the store's default either way, and deleting it restores the
 * default. */
static void test_setting_overrides_default(void **state)
{
	struct quota_fixture *f = *state;
	uint32_t id = fixture_mailbox(f->s, "jobs");
	const char *bad[] = {"0", "-1", "05", "x", "1 ", "4294967295", "99999999999"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		assert_int_equal(
		    store_annotation_set(f->s, id, STORE_SETTING_MAX_MESSAGES, bad[i], NULL),
		    IMAPQ_E_INVALID);
	assert_int_equal(
	    store_annotation_set(f->s, id, STORE_SETTING_MAX_MESSAGES, "4294967294", NULL),
	    IMAPQ_OK);
	assert_int_equal(store_annotation_set(f->s, id, STORE_SETTING_MAX_MESSAGES, "5", NULL),
			 IMAPQ_OK);
	struct store_mailbox_status st;
	assert_int_equal(store_mailbox_status(f->s, id, &st), IMAPQ_OK);
	assert_int_equal(st.max_messages, 5);
	for (int i = 0; i < 5; i++)
		assert_int_equal(try_append(f->s, id), IMAPQ_OK);
	assert_int_equal(try_append(f->s, id), IMAPQ_E_OVERQUOTA);
	/* The setting survives a restart. */
	quota_open(f, MAILBOX_LIMIT, STORE_LIMIT);
	assert_int_equal(store_mailbox_status(f->s, id, &st), IMAPQ_OK);
	assert_int_equal(st.max_messages, 5);
	/* Lowered below the count: nothing is removed, appends are refused, removals work. */
	assert_int_equal(store_annotation_set(f->s, id, STORE_SETTING_MAX_MESSAGES, "1", NULL),
			 IMAPQ_OK);
	assert_int_equal(count_of(f->s, id), 5);
	assert_int_equal(try_append(f->s, id), IMAPQ_E_OVERQUOTA);
	/* Deleted: the store's default (3) again. */
	assert_int_equal(store_annotation_set(f->s, id, STORE_SETTING_MAX_MESSAGES, NULL, NULL),
			 IMAPQ_OK);
	assert_int_equal(store_mailbox_status(f->s, id, &st), IMAPQ_OK);
	assert_int_equal(st.max_messages, MAILBOX_LIMIT);
	/* A setting above the store's total still meets the total. */
	uint32_t big = fixture_mailbox(f->s, "big");
	assert_int_equal(store_annotation_set(f->s, big, STORE_SETTING_MAX_MESSAGES, "100", NULL),
			 IMAPQ_OK);
	for (int i = 0; i < STORE_LIMIT - 5; i++)
		assert_int_equal(try_append(f->s, big), IMAPQ_OK);
	assert_int_equal(try_append(f->s, big), IMAPQ_E_OVERQUOTA);
}

/* Replay keeps every message whatever the limits are now. */
static void test_replay_over_limit(void **state)
{
	struct quota_fixture *f = *state;
	quota_open(f, 20, 100);
	uint32_t a = fixture_mailbox(f->s, "a");
	uint32_t b = fixture_mailbox(f->s, "b");
	for (int i = 0; i < 10; i++)
		assert_int_equal(try_append(f->s, a), IMAPQ_OK);
	for (int i = 0; i < 4; i++)
		assert_int_equal(try_append(f->s, b), IMAPQ_OK);
	quota_open(f, 2, 5);
	assert_int_equal(count_of(f->s, a), 10);
	assert_int_equal(count_of(f->s, b), 4);
	struct store_stats stats;
	store_stats(f->s, &stats);
	assert_int_equal(stats.messages, 14);
	assert_int_equal(try_append(f->s, a), IMAPQ_E_OVERQUOTA);
	/* Removals still work, and the store stays over its total until they bring it under. */
	struct uid_range r = {1, 10};
	assert_int_equal(
	    store_flags(f->s, a, &r, 1, STORE_FLAGS_ADD, STORE_DELETED, NULL, NULL, NULL, NULL),
	    IMAPQ_OK);
	assert_int_equal(store_expunge(f->s, a, &r, 1, NULL, NULL, NULL), IMAPQ_OK);
	assert_int_equal(try_append(f->s, a), IMAPQ_OK);
	assert_int_equal(try_append(f->s, a), IMAPQ_E_OVERQUOTA);
	/* A compacted journal (checkpoints and carried records) replays the same way. */
	assert_int_equal(store_compact(f->s, true), IMAPQ_OK);
	quota_open(f, 1, 1);
	assert_int_equal(count_of(f->s, a), 1);
	assert_int_equal(count_of(f->s, b), 4);
}

/* --- the queue layer --- */

static int queue_quota_setup(void **state)
{
	struct queue_settings s = {.max_messages = 3, .max_attempts = 1};
	return queue_fixture_start(state, &s);
}

/* Enqueue at the limit fails; a batch that does not fit enqueues nothing; settings and stats
 * show the limit and the count. */
static void test_queue_enqueue_limit(void **state)
{
	struct queue_fixture *f = *state;
	struct queue_settings set;
	assert_int_equal(queue_settings_get(f->qs, "jobs", &set), IMAPQ_OK);
	assert_int_equal(set.max_messages, 3);
	struct queue_new_job jobs[3];
	for (int i = 0; i < 3; i++)
		jobs[i] =
		    (struct queue_new_job){.payload = "x", .len = 1, .content_type = "text/plain"};
	assert_int_equal(queue_enqueue(f->qs, "jobs", "a", 1, "text/plain", 0, NULL, NULL),
			 IMAPQ_OK);
	struct queue_job out[3];
	size_t done = 9;
	assert_int_equal(queue_enqueue_batch(f->qs, "jobs", jobs, 3, out, &done, NULL),
			 IMAPQ_E_OVERQUOTA);
	assert_int_equal(done, 0);
	struct queue_stats st;
	assert_int_equal(queue_stats(f->qs, "jobs", &st), IMAPQ_OK);
	assert_int_equal(st.messages, 1);
	assert_int_equal(st.ready, 1);
	assert_int_equal(queue_enqueue_batch(f->qs, "jobs", jobs, 2, out, &done, NULL), IMAPQ_OK);
	assert_int_equal(done, 2);
	assert_int_equal(out[0].id, 2);
	assert_int_equal(out[1].id, 3);
	assert_int_equal(queue_enqueue(f->qs, "jobs", "b", 1, "text/plain", 0, NULL, NULL),
			 IMAPQ_E_OVERQUOTA);
	/* Raising the limit makes room; 0 keeps it. */
	struct queue_settings more = {.max_messages = 4};
	assert_int_equal(queue_settings_set(f->qs, "jobs", &more, NULL), IMAPQ_OK);
	struct queue_settings keep = {.lease = 9};
	assert_int_equal(queue_settings_set(f->qs, "jobs", &keep, NULL), IMAPQ_OK);
	assert_int_equal(queue_settings_get(f->qs, "jobs", &set), IMAPQ_OK);
	assert_int_equal(set.max_messages, 4);
	assert_int_equal(queue_enqueue(f->qs, "jobs", "b", 1, "text/plain", 0, NULL, NULL),
			 IMAPQ_OK);
	struct queue_settings too_big = {.max_messages = UINT32_MAX};
	assert_int_equal(queue_settings_set(f->qs, "jobs", &too_big, NULL), IMAPQ_E_INVALID);
}

/* A job on its last attempt reaches the dead letters even when they are full. */
static void test_queue_dead_letter_when_full(void **state)
{
	struct queue_fixture *f = *state;
	uint32_t dead;
	assert_int_equal(store_mailbox_find(f->store, "jobs/dead", &dead), IMAPQ_OK);
	assert_int_equal(
	    store_annotation_set(f->store, dead, STORE_SETTING_MAX_MESSAGES, "3", NULL), IMAPQ_OK);
	/* Dated now: older letters would be the retention sweep's to remove. */
	struct journal_body letter = {.data = "letter", .fd = -1, .len = 6};
	letter.crc = crc32c(0, "letter", 6);
	for (int i = 0; i < 3; i++)
		assert_int_equal(
		    store_append(f->store, dead, 0, (int64_t)time(NULL), &letter, NULL, NULL, NULL),
		    IMAPQ_OK);
	assert_int_equal(store_append(f->store, dead, 0, 0,
				      &(struct journal_body){.data = "x", .fd = -1, .len = 1}, NULL,
				      NULL, NULL),
			 IMAPQ_E_OVERQUOTA);
	assert_int_equal(queue_enqueue(f->qs, "jobs", "a", 1, "text/plain", 0, NULL, NULL),
			 IMAPQ_OK);
	struct queue_job job;
	uint32_t n = 0;
	assert_int_equal(queue_claim(f->qs, "jobs", 1, 0, &job, &n, NULL), IMAPQ_OK);
	assert_int_equal(n, 1);
	/* max_attempts is 1: the nack dead-letters it. */
	assert_int_equal(queue_nack(f->qs, "jobs", job.id, job.receipt, 0, NULL), IMAPQ_OK);
	struct queue_stats st;
	assert_int_equal(queue_stats(f->qs, "jobs", &st), IMAPQ_OK);
	assert_int_equal(st.messages, 0);
	assert_int_equal(st.dead, 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_limits_reported, quota_setup, quota_teardown),
	    cmocka_unit_test_setup_teardown(test_append_at_limit, quota_setup, quota_teardown),
	    cmocka_unit_test_setup_teardown(test_batch_all_or_nothing, quota_setup, quota_teardown),
	    cmocka_unit_test_setup_teardown(test_store_total, quota_setup, quota_teardown),
	    cmocka_unit_test_setup_teardown(test_copy_and_move, quota_setup, quota_teardown),
	    cmocka_unit_test_setup_teardown(test_move_at_store_total, quota_setup, quota_teardown),
	    cmocka_unit_test_setup_teardown(test_move_if_unchanged_exempt, quota_setup,
					    quota_teardown),
	    cmocka_unit_test_setup_teardown(test_setting_overrides_default, quota_setup,
					    quota_teardown),
	    cmocka_unit_test_setup_teardown(test_replay_over_limit, quota_setup, quota_teardown),
	    cmocka_unit_test_setup_teardown(test_queue_enqueue_limit, queue_quota_setup,
					    queue_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_queue_dead_letter_when_full, queue_quota_setup,
					    queue_fixture_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
