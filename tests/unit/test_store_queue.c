/* Unit tests of the store's queue fields: the claim primitive (attempts and due time decided with
 * the conditional store), lease renewal, the per-mailbox settings, the conditional move used for
 * dead letters, the message hook, and replay of all of it. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "imap/store/msgtable.h"
#include "imap/store/store.h"
#include "tests/unit/journal_files.h"
#include "tests/unit/queue_fixture.h"

/* Rounds of the claim race. */
#define ROUNDS 40

_Static_assert(sizeof(struct msg) == 48, "a message's RAM entry is 48 bytes");

struct fixture {
	char dir[TMPDIR_LEN];
	struct store *s;
	uint32_t q;	  /* mailbox "q" */
	uint64_t claimed; /* flag bit of $Claimed in q */
	uint64_t segment; /* segment size of the store */
};

/* Opens (or reopens) the fixture's store. */
static void reopen(struct fixture *f)
{
	fixture_store_reopen(f->dir, JOURNAL_FSYNC_OFF, f->segment, &f->s);
}

static uint64_t keyword_bit(struct store *s, uint32_t id, const char *name)
{
	unsigned k;
	assert_int_equal(store_keyword(s, id, name, true, &k, NULL), IMAPQ_OK);
	return STORE_KEYWORD(k);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	if (!tmpdir_make(f->dir))
		return -1;
	reopen(f);
	assert_int_equal(store_mailbox_create(f->s, "q", &f->q, NULL), IMAPQ_OK);
	f->claimed = keyword_bit(f->s, f->q, STORE_CLAIM_KEYWORD);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	fixture_store_remove(f->dir, &f->s);
	free(f);
	return 0;
}

static struct store_message get(struct store *s, uint32_t id, uint32_t uid)
{
	struct store_message m;
	assert_int_equal(store_message_get(s, id, uid, &m), IMAPQ_OK);
	return m;
}

/* The outcome and resulting state of a one-message update. */
struct result {
	enum store_flag_outcome outcome;
	struct store_message m;
	int calls;
};

static void note_result(void *ctx, const struct store_message *m, enum store_flag_outcome o)
{
	struct result *r = ctx;
	r->outcome = o;
	r->m = *m;
	r->calls++;
}

/* Applies u to uid alone and returns what the callback saw. */
static struct result update(struct store *s, uint32_t id, uint32_t uid,
			    const struct store_update *u)
{
	struct result r = {0};
	struct uid_range range = {uid, uid};
	assert_int_equal(store_update(s, id, &range, 1, u, note_result, &r, NULL), IMAPQ_OK);
	assert_int_equal(r.calls, 1);
	return r;
}

/* A conditional claim of uid against the mod-sequence since. */
static struct result claim(struct fixture *f, uint32_t uid, uint64_t since)
{
	struct store_update u = {
	    .op = STORE_FLAGS_ADD, .flags = f->claimed, .unchangedsince = &since};
	return update(f->s, f->q, uid, &u);
}

/* Asserts that due lies in [lo + lease, hi + lease + 1]: a lease end is rounded up to a second. */
static void assert_due_near(uint32_t due, time_t lo, time_t hi, uint32_t lease)
{
	assert_true(due >= (uint64_t)lo + lease);
	assert_true(due <= (uint64_t)hi + lease + 1);
}

static void test_claim_counts_and_leases(void **state)
{
	struct fixture *f = *state;
	uint32_t uid = append_text(f->s, f->q, STORE_SEEN, "job");
	struct store_message m = get(f->s, f->q, uid);
	assert_int_equal(m.attempts, 0);
	assert_int_equal(m.due, 0);

	time_t lo = time(NULL);
	struct result r = claim(f, uid, m.modseq);
	time_t hi = time(NULL);
	assert_int_equal(r.outcome, STORE_CHANGED);
	assert_int_equal(r.m.attempts, 1);
	assert_due_near(r.m.due, lo, hi, STORE_DEFAULT_LEASE);
	assert_true(r.m.modseq > m.modseq);
	assert_int_equal(r.m.flags, STORE_SEEN | f->claimed);
	m = get(f->s, f->q, uid);
	assert_int_equal(m.attempts, 1);
	assert_int_equal(m.due, r.m.due);

	/* Adding $Claimed again changes nothing: no attempt, same lease. */
	struct store_update again = {.op = STORE_FLAGS_ADD, .flags = f->claimed};
	r = update(f->s, f->q, uid, &again);
	assert_int_equal(r.outcome, STORE_UNCHANGED);
	assert_int_equal(get(f->s, f->q, uid).attempts, 1);
	/* A change of other flags while claimed keeps the lease and the count. */
	struct store_update flag = {.op = STORE_FLAGS_ADD, .flags = STORE_FLAGGED};
	r = update(f->s, f->q, uid, &flag);
	assert_int_equal(r.outcome, STORE_CHANGED);
	assert_int_equal(r.m.attempts, 1);
	assert_int_equal(r.m.due, m.due);

	/* Release clears the due time and keeps the count. */
	assert_int_equal(store_flags(f->s, f->q, &(struct uid_range){uid, uid}, 1,
				     STORE_FLAGS_REMOVE, f->claimed, NULL, NULL, NULL, NULL),
			 IMAPQ_OK);
	m = get(f->s, f->q, uid);
	assert_int_equal(m.attempts, 1);
	assert_int_equal(m.due, 0);

	/* The mailbox's lease setting applies to the next claim; a SET that includes the keyword
	 * claims too. */
	assert_int_equal(store_annotation_set(f->s, f->q, STORE_SETTING_LEASE, "120", NULL),
			 IMAPQ_OK);
	struct store_update set = {.op = STORE_FLAGS_SET, .flags = f->claimed};
	lo = time(NULL);
	r = update(f->s, f->q, uid, &set);
	hi = time(NULL);
	assert_int_equal(r.outcome, STORE_CHANGED);
	assert_int_equal(r.m.attempts, 2);
	assert_due_near(r.m.due, lo, hi, 120);
	/* A SET without the keyword releases. */
	set.flags = STORE_SEEN;
	r = update(f->s, f->q, uid, &set);
	assert_int_equal(r.m.due, 0);
	assert_int_equal(r.m.attempts, 2);

	/* A claim that sets its own due time keeps it and still counts. */
	struct store_update own = {
	    .op = STORE_FLAGS_ADD, .flags = f->claimed, .set_due = true, .due = 1234567};
	r = update(f->s, f->q, uid, &own);
	assert_int_equal(r.m.attempts, 3);
	assert_int_equal(r.m.due, 1234567);
	/* A release with a due time (nack with delay) keeps that due time. */
	uint64_t delayed = keyword_bit(f->s, f->q, STORE_DELAY_KEYWORD);
	struct store_update nack = {
	    .op = STORE_FLAGS_SET, .flags = delayed, .set_due = true, .due = 2000000000u};
	r = update(f->s, f->q, uid, &nack);
	assert_int_equal(r.m.flags, delayed);
	assert_int_equal(r.m.due, 2000000000u);
	assert_int_equal(r.m.attempts, 3);
}

static void test_keyword_defined_later(void **state)
{
	struct fixture *f = *state;
	uint32_t other;
	assert_int_equal(store_mailbox_create(f->s, "late", &other, NULL), IMAPQ_OK);
	uint64_t first = keyword_bit(f->s, other, "$First");
	uint32_t uid = append_text(f->s, other, first, "job");
	/* Without $Claimed in the mailbox, flag changes never count attempts. */
	struct store_update u = {.op = STORE_FLAGS_REMOVE, .flags = first};
	struct result r = update(f->s, other, uid, &u);
	assert_int_equal(r.m.attempts, 0);
	/* Defined now, at another index than in "q": the claim is recognised by name. */
	uint64_t claimed = keyword_bit(f->s, other, "$claimed");
	assert_int_not_equal(claimed, f->claimed);
	u = (struct store_update){.op = STORE_FLAGS_ADD, .flags = claimed};
	r = update(f->s, other, uid, &u);
	assert_int_equal(r.m.attempts, 1);
	assert_true(r.m.due > 0);
}

static void test_renewal_moves_modseq(void **state)
{
	struct fixture *f = *state;
	uint32_t uid = append_text(f->s, f->q, 0, "job");
	struct result r = claim(f, uid, get(f->s, f->q, uid).modseq);
	uint64_t receipt = r.m.modseq;
	uint32_t due = r.m.due;

	/* Renewal: conditional on the receipt, sets due only. Equal values still change. */
	struct store_update renew = {
	    .op = STORE_FLAGS_ADD, .unchangedsince = &receipt, .set_due = true, .due = due};
	r = update(f->s, f->q, uid, &renew);
	assert_int_equal(r.outcome, STORE_CHANGED);
	assert_true(r.m.modseq > receipt);
	assert_int_equal(r.m.due, due);
	assert_int_equal(r.m.attempts, 1);
	uint64_t second = r.m.modseq;
	/* The old receipt no longer renews: MODIFIED, nothing moves. */
	renew.due = due + 100;
	r = update(f->s, f->q, uid, &renew);
	assert_int_equal(r.outcome, STORE_FAILED);
	assert_int_equal(r.m.modseq, second);
	assert_int_equal(r.m.due, due);
	/* With the new receipt it does. */
	renew.unchangedsince = &second;
	r = update(f->s, f->q, uid, &renew);
	assert_int_equal(r.outcome, STORE_CHANGED);
	assert_int_equal(r.m.due, due + 100);
	struct store_mailbox_status st;
	assert_int_equal(store_mailbox_status(f->s, f->q, &st), IMAPQ_OK);
	assert_int_equal(st.highestmodseq, r.m.modseq);
}

static void test_failed_claim_changes_nothing(void **state)
{
	struct fixture *f = *state;
	uint32_t uid = append_text(f->s, f->q, 0, "job");
	uint64_t stale = get(f->s, f->q, uid).modseq;
	struct result won = claim(f, uid, stale);
	assert_int_equal(won.outcome, STORE_CHANGED);
	/* Release and reclaim attempts with the stale mod-sequence all fail. */
	struct store_update release = {
	    .op = STORE_FLAGS_REMOVE, .flags = f->claimed, .unchangedsince = &stale};
	struct result r = update(f->s, f->q, uid, &release);
	assert_int_equal(r.outcome, STORE_FAILED);
	r = claim(f, uid, stale);
	assert_int_equal(r.outcome, STORE_FAILED);
	struct store_update due = {
	    .op = STORE_FLAGS_SET, .unchangedsince = &stale, .set_due = true};
	r = update(f->s, f->q, uid, &due);
	assert_int_equal(r.outcome, STORE_FAILED);
	struct store_message m = get(f->s, f->q, uid);
	assert_int_equal(m.modseq, won.m.modseq);
	assert_int_equal(m.attempts, 1);
	assert_int_equal(m.due, won.m.due);
	assert_int_equal(m.flags, f->claimed);
	/* UNCHANGEDSINCE 0 fails even a change-nothing store. */
	uint64_t zero = 0;
	struct store_update none = {.op = STORE_FLAGS_ADD, .unchangedsince = &zero};
	assert_int_equal(update(f->s, f->q, uid, &none).outcome, STORE_FAILED);
	/* Flags of undefined keywords are refused as by store_flags. */
	struct store_update bad = {.op = STORE_FLAGS_ADD, .flags = STORE_KEYWORD(40)};
	assert_int_equal(
	    store_update(f->s, f->q, &(struct uid_range){uid, uid}, 1, &bad, NULL, NULL, NULL),
	    IMAPQ_E_INVALID);
	assert_int_equal(
	    store_update(f->s, f->q, &(struct uid_range){uid, uid}, 1, NULL, NULL, NULL, NULL),
	    IMAPQ_E_INVALID);
}

/* The job raced for in each round. */
struct race {
	struct fixture_race sync;
	struct fixture *f;
	uint32_t uid;
	uint64_t since;
	uint32_t winner_attempts; /* written by the round's one winner */
};

/* One racer's try: a conditional claim. */
static int race_try(void *arg)
{
	struct race *r = arg;
	struct result res = claim(r->f, r->uid, r->since);
	if (res.outcome == STORE_CHANGED)
		r->winner_attempts = res.m.attempts;
	return (int)res.outcome;
}

/* A release after the last attempt keeps the claim with a lease that ends now, so the job never
 * becomes claimable again before the queue layer dead-letters it. */
static void test_release_after_last_attempt_expires_the_lease(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(store_annotation_set(f->s, f->q, STORE_SETTING_MAX_ATTEMPTS, "2", NULL),
			 IMAPQ_OK);
	uint32_t uid = append_text(f->s, f->q, 0, "poison");
	struct uid_range one = {uid, uid};
	for (uint32_t attempt = 1; attempt <= 2; attempt++) {
		struct result res = claim(f, uid, get(f->s, f->q, uid).modseq);
		assert_int_equal(res.outcome, STORE_CHANGED);
		assert_int_equal(res.m.attempts, attempt);
		uint64_t receipt = res.m.modseq;
		assert_int_equal(store_flags(f->s, f->q, &one, 1, STORE_FLAGS_REMOVE, f->claimed,
					     &receipt, NULL, NULL, NULL),
				 IMAPQ_OK);
		struct store_message m = get(f->s, f->q, uid);
		assert_true(m.modseq > receipt);
		if (attempt == 1) {
			assert_false(m.flags & f->claimed);
			assert_int_equal(m.due, 0);
		} else {
			/* The last attempt: still claimed, its lease ended. */
			assert_true(m.flags & f->claimed);
			assert_true(m.due > 0 && m.due <= (uint32_t)time(NULL));
		}
	}
}

static void test_claim_race_counts_once(void **state)
{
	struct fixture *f = *state;
	struct race r = {.f = f, .uid = append_text(f->s, f->q, 0, "job")};
	/* Every round releases the job again: allow more attempts than rounds. */
	assert_int_equal(
	    store_annotation_set(f->s, f->q, STORE_SETTING_MAX_ATTEMPTS, "100000", NULL), IMAPQ_OK);
	fixture_race_start(&r.sync, ROUNDS, race_try, &r);
	for (int round = 0; round < ROUNDS; round++) {
		/* The same job is released and raced for again: one attempt per round. */
		r.since = get(f->s, f->q, r.uid).modseq;
		int before = r.sync.changed;
		fixture_race_round(&r.sync);
		assert_int_equal(r.sync.changed - before, 1);
		assert_int_equal(r.winner_attempts, round + 1);
		struct store_message m = get(f->s, f->q, r.uid);
		assert_int_equal(m.attempts, round + 1);
		assert_true(m.due > 0);
		assert_int_equal(store_flags(f->s, f->q, &(struct uid_range){r.uid, r.uid}, 1,
					     STORE_FLAGS_REMOVE, f->claimed, NULL, NULL, NULL,
					     NULL),
				 IMAPQ_OK);
	}
	fixture_race_finish(&r.sync);
}

static void test_settings(void **state)
{
	struct fixture *f = *state;
	struct store_mailbox_status st;
	assert_int_equal(store_mailbox_status(f->s, f->q, &st), IMAPQ_OK);
	assert_int_equal(st.lease, STORE_DEFAULT_LEASE);
	assert_int_equal(st.max_attempts, STORE_DEFAULT_MAX_ATTEMPTS);
	assert_int_equal(st.retention, STORE_DEFAULT_RETENTION);

	const char *keys[] = {STORE_SETTING_LEASE, STORE_SETTING_MAX_ATTEMPTS,
			      STORE_SETTING_RETENTION};
	const char *bad[] = {"",   "0",	  "-1",	 "+5",	     " 5",	    "5 ",	 "05",
			     "1x", "abc", "1e3", "31536001", "99999999999", "4294967297"};
	for (size_t k = 0; k < 3; k++)
		for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
			assert_int_equal(store_annotation_set(f->s, f->q, keys[k], bad[i], NULL),
					 IMAPQ_E_INVALID);
	char buf[32];
	assert_int_equal(store_annotation_get(f->s, f->q, STORE_SETTING_LEASE, buf, sizeof buf),
			 IMAPQ_E_NOTFOUND);
	/* Other keys take any value. */
	assert_int_equal(store_annotation_set(f->s, f->q, "/shared/comment", "0", NULL), IMAPQ_OK);

	assert_int_equal(store_annotation_set(f->s, f->q, STORE_SETTING_LEASE, "1", NULL),
			 IMAPQ_OK);
	assert_int_equal(
	    store_annotation_set(f->s, f->q, STORE_SETTING_MAX_ATTEMPTS, "31536000", NULL),
	    IMAPQ_OK);
	/* Entry names compare case-insensitively; the setting follows. */
	assert_int_equal(store_annotation_set(f->s, f->q,
					      "/Shared/Vendor/IMAPQ/dead-retention-seconds", "600",
					      NULL),
			 IMAPQ_OK);
	assert_int_equal(store_mailbox_status(f->s, f->q, &st), IMAPQ_OK);
	assert_int_equal(st.lease, 1);
	assert_int_equal(st.max_attempts, 31536000);
	assert_int_equal(st.retention, 600);
	/* A refused value keeps the old one. */
	assert_int_equal(store_annotation_set(f->s, f->q, STORE_SETTING_LEASE, "0", NULL),
			 IMAPQ_E_INVALID);
	assert_int_equal(store_mailbox_status(f->s, f->q, &st), IMAPQ_OK);
	assert_int_equal(st.lease, 1);

	/* Replay restores the numbers: a claim after reopening uses the stored lease. */
	assert_int_equal(store_annotation_set(f->s, f->q, STORE_SETTING_LEASE, "777", NULL),
			 IMAPQ_OK);
	reopen(f);
	assert_int_equal(store_mailbox_status(f->s, f->q, &st), IMAPQ_OK);
	assert_int_equal(st.lease, 777);
	assert_int_equal(st.max_attempts, 31536000);
	assert_int_equal(st.retention, 600);
	uint32_t uid = append_text(f->s, f->q, 0, "job");
	time_t lo = time(NULL);
	struct result r = claim(f, uid, get(f->s, f->q, uid).modseq);
	assert_due_near(r.m.due, lo, time(NULL), 777);

	/* Deleting a setting brings its default back, also after a restart. */
	assert_int_equal(store_annotation_set(f->s, f->q, STORE_SETTING_MAX_ATTEMPTS, NULL, NULL),
			 IMAPQ_OK);
	assert_int_equal(store_mailbox_status(f->s, f->q, &st), IMAPQ_OK);
	assert_int_equal(st.max_attempts, STORE_DEFAULT_MAX_ATTEMPTS);
	reopen(f);
	assert_int_equal(store_mailbox_status(f->s, f->q, &st), IMAPQ_OK);
	assert_int_equal(st.max_attempts, STORE_DEFAULT_MAX_ATTEMPTS);
	assert_int_equal(st.lease, 777);
}

static void test_settings_survive_checkpoints(void **state)
{
	struct fixture *f = *state;
	fixture_store_remove(f->dir, &f->s);
	assert_true(tmpdir_make(f->dir));
	f->segment = 4096;
	reopen(f);
	assert_int_equal(store_mailbox_create(f->s, "q", &f->q, NULL), IMAPQ_OK);
	assert_int_equal(store_annotation_set(f->s, f->q, STORE_SETTING_LEASE, "90", NULL),
			 IMAPQ_OK);
	assert_int_equal(store_annotation_set(f->s, f->q, STORE_SETTING_RETENTION, "86400", NULL),
			 IMAPQ_OK);
	/* Enough records to rotate several times; compaction then drops the segment that held
	 * the annotation records, so only checkpoints carry the settings. */
	for (int i = 0; i < 80; i++)
		append_text(f->s, f->q, STORE_DELETED, "a body that fills segments quickly");
	assert_int_equal(store_expunge(f->s, f->q, NULL, 0, NULL, NULL, NULL), IMAPQ_OK);
	struct store_stats stats;
	store_stats(f->s, &stats);
	assert_true(stats.journal.segments > 2);
	for (uint32_t i = 0; i < stats.journal.segments; i++)
		assert_int_equal(store_compact(f->s, true), IMAPQ_OK);
	reopen(f);
	struct store_mailbox_status st;
	assert_int_equal(store_mailbox_status(f->s, f->q, &st), IMAPQ_OK);
	assert_int_equal(st.lease, 90);
	assert_int_equal(st.retention, 86400);
	assert_int_equal(st.max_attempts, STORE_DEFAULT_MAX_ATTEMPTS);
}

static void test_move_if_unchanged(void **state)
{
	struct fixture *f = *state;
	uint32_t dead;
	assert_int_equal(store_mailbox_create(f->s, "q/dead", &dead, NULL), IMAPQ_OK);
	uint64_t tag = keyword_bit(f->s, f->q, "$Tag");
	uint32_t uid = append_text(f->s, f->q, STORE_SEEN | tag, "poison");
	assert_int_equal(claim(f, uid, get(f->s, f->q, uid).modseq).outcome, STORE_CHANGED);
	assert_int_equal(claim(f, uid, 0).outcome, STORE_FAILED);
	struct store_message m = get(f->s, f->q, uid);
	assert_int_equal(m.attempts, 1);

	/* A stale mod-sequence: MODIFIED, and neither mailbox changes. */
	uint32_t dst_uid = 99;
	uint64_t lsn = 0;
	assert_int_equal(store_move_if_unchanged(f->s, f->q, uid, m.modseq - 1, dead, f->claimed,
						 &dst_uid, &lsn),
			 IMAPQ_E_MODIFIED);
	assert_int_equal(dst_uid, 99);
	struct store_mailbox_status st;
	assert_int_equal(store_mailbox_status(f->s, dead, &st), IMAPQ_OK);
	assert_int_equal(st.messages, 0);
	assert_int_equal(st.highestmodseq, 1);
	assert_int_equal(get(f->s, f->q, uid).modseq, m.modseq);

	/* Unknown mailboxes and messages. */
	assert_int_equal(
	    store_move_if_unchanged(f->s, f->q, uid + 50, m.modseq, dead, 0, NULL, NULL),
	    IMAPQ_E_NOTFOUND);
	assert_int_equal(
	    store_move_if_unchanged(f->s, f->q, uid, m.modseq, 9999, 0, &dst_uid, NULL),
	    IMAPQ_E_NONEXISTENT);
	assert_int_equal(
	    store_move_if_unchanged(f->s, 9999, uid, m.modseq, dead, 0, &dst_uid, NULL),
	    IMAPQ_E_NONEXISTENT);

	/* The move: clear_flags go, flags, attempts, date and body stay, due is cleared. */
	assert_int_equal(
	    store_move_if_unchanged(f->s, f->q, uid, m.modseq, dead, f->claimed, &dst_uid, &lsn),
	    IMAPQ_OK);
	assert_true(lsn > 0);
	assert_int_equal(store_wait(f->s, lsn), IMAPQ_OK);
	assert_int_equal(dst_uid, 1);
	assert_int_equal(store_message_get(f->s, f->q, uid, &m), IMAPQ_E_NOTFOUND);
	struct store_message d = get(f->s, dead, dst_uid);
	unsigned k;
	assert_int_equal(store_keyword(f->s, dead, "$Tag", false, &k, NULL), IMAPQ_OK);
	assert_int_equal(d.flags, STORE_SEEN | STORE_KEYWORD(k));
	assert_int_equal(store_keyword(f->s, dead, STORE_CLAIM_KEYWORD, false, &k, NULL),
			 IMAPQ_E_NOTFOUND);
	assert_int_equal(d.attempts, 1);
	assert_int_equal(d.due, 0);
	assert_int_equal(d.internaldate, 1700000000);
	assert_int_equal(d.size, 6);
	char buf[16];
	size_t got;
	assert_int_equal(store_body_read(f->s, dead, dst_uid, 0, buf, sizeof buf, &got), IMAPQ_OK);
	assert_memory_equal(buf, "poison", 6);

	/* The source recorded the expunge for QRESYNC; the move survives a restart. */
	assert_int_equal(store_mailbox_status(f->s, f->q, &st), IMAPQ_OK);
	assert_int_equal(st.messages, 0);
	reopen(f);
	assert_int_equal(store_message_get(f->s, f->q, uid, &m), IMAPQ_E_NOTFOUND);
	d = get(f->s, dead, dst_uid);
	assert_int_equal(d.attempts, 1);
	assert_int_equal(d.due, 0);
	/* Gone now: NOTFOUND. */
	assert_int_equal(store_move_if_unchanged(f->s, f->q, uid, UINT64_MAX, dead, 0, NULL, NULL),
			 IMAPQ_E_NOTFOUND);
}

/* Requeue: the copy starts over (no flags, attempts or due time, the given date), counts against
 * its queue's limit, and survives a restart. */
static void test_requeue_if_unchanged(void **state)
{
	struct fixture *f = *state;
	uint32_t dead;
	assert_int_equal(store_mailbox_create(f->s, "q/dead", &dead, NULL), IMAPQ_OK);
	uint32_t uid = append_text(f->s, dead, STORE_SEEN | keyword_bit(f->s, dead, "$Tag"), "job");
	uint64_t claimed = keyword_bit(f->s, dead, STORE_CLAIM_KEYWORD);
	assert_int_equal(
	    update(f->s, dead, uid, &(struct store_update){.op = STORE_FLAGS_ADD, .flags = claimed})
		.outcome,
	    STORE_CHANGED);
	struct store_message m = get(f->s, dead, uid);
	assert_int_equal(m.attempts, 1);

	uint32_t dst_uid = 0;
	assert_int_equal(store_requeue_if_unchanged(f->s, dead, uid, m.modseq - 1, f->q, 1800000000,
						    &dst_uid, NULL),
			 IMAPQ_E_MODIFIED);
	assert_int_equal(get(f->s, dead, uid).modseq, m.modseq);

	/* A full queue refuses it and keeps the letter. */
	assert_int_equal(store_annotation_set(f->s, f->q, STORE_SETTING_MAX_MESSAGES, "1", NULL),
			 IMAPQ_OK);
	append_text(f->s, f->q, 0, "other");
	assert_int_equal(
	    store_requeue_if_unchanged(f->s, dead, uid, m.modseq, f->q, 1800000000, NULL, NULL),
	    IMAPQ_E_OVERQUOTA);
	assert_int_equal(get(f->s, dead, uid).modseq, m.modseq);
	assert_int_equal(store_annotation_set(f->s, f->q, STORE_SETTING_MAX_MESSAGES, "10", NULL),
			 IMAPQ_OK);

	uint64_t lsn = 0;
	assert_int_equal(
	    store_requeue_if_unchanged(f->s, dead, uid, m.modseq, f->q, 1800000000, &dst_uid, &lsn),
	    IMAPQ_OK);
	assert_int_equal(store_wait(f->s, lsn), IMAPQ_OK);
	assert_int_equal(store_message_get(f->s, dead, uid, &m), IMAPQ_E_NOTFOUND);
	for (int pass = 0; pass < 2; pass++) {
		struct store_message j = get(f->s, f->q, dst_uid);
		assert_int_equal(j.flags, 0);
		assert_int_equal(j.attempts, 0);
		assert_int_equal(j.due, 0);
		assert_int_equal(j.internaldate, 1800000000);
		char buf[8];
		size_t got;
		assert_int_equal(store_body_read(f->s, f->q, dst_uid, 0, buf, sizeof buf, &got),
				 IMAPQ_OK);
		assert_int_equal(got, 3);
		assert_memory_equal(buf, "job", 3);
		reopen(f);
	}
	assert_int_equal(
	    store_requeue_if_unchanged(f->s, dead, uid, UINT64_MAX, f->q, 0, NULL, NULL),
	    IMAPQ_E_NOTFOUND);
}

/* A crash at any byte of a requeue's records leaves the letter, the job, or both: never neither,
 * and never a job with the letter's attempts. */
static void test_requeue_crash_at_any_byte(void **state)
{
	struct fixture *f = *state;
	uint32_t dead;
	assert_int_equal(store_mailbox_create(f->s, "q/dead", &dead, NULL), IMAPQ_OK);
	uint32_t uid = append_text(f->s, dead, 0, "letter");
	uint64_t claimed = keyword_bit(f->s, dead, STORE_CLAIM_KEYWORD);
	struct uid_range r = {uid, uid};
	uint64_t before = 0, after = 0;
	assert_int_equal(
	    store_update(f->s, dead, &r, 1,
			 &(struct store_update){.op = STORE_FLAGS_ADD, .flags = claimed}, NULL,
			 NULL, &before),
	    IMAPQ_OK);
	assert_int_equal(
	    store_requeue_if_unchanged(f->s, dead, uid, UINT64_MAX, f->q, 1800000000, NULL, &after),
	    IMAPQ_OK);
	assert_true(after > before);
	store_close(&f->s);

	/* One fresh store holds one segment, which starts at LSN 0: an LSN is a file offset. Cut
	 * its preallocated rest first, so each copy below is small. */
	char seg[512];
	newest_segment(f->dir, seg, sizeof seg);
	assert_int_equal(truncate(seg, (off_t)after), 0);
	unsigned letter_only = 0, both = 0, job_only = 0;
	for (uint64_t cut = before; cut <= after; cut++) {
		char dir[TMPDIR_LEN];
		struct store *s = NULL;
		struct store_message m;
		copy_tree(f->dir, dir);
		newest_segment(dir, seg, sizeof seg);
		assert_int_equal(truncate(seg, (off_t)cut), 0);
		fixture_store_reopen(dir, JOURNAL_FSYNC_OFF, f->segment, &s);
		bool has_letter = store_message_get(s, dead, uid, &m) == IMAPQ_OK;
		bool has_job = store_message_get(s, f->q, 1, &m) == IMAPQ_OK;
		if (has_job)
			assert_int_equal(m.attempts, 0);
		assert_true(has_letter || has_job);
		letter_only += has_letter && !has_job;
		both += has_letter && has_job;
		job_only += has_job && !has_letter;
		fixture_store_remove(dir, &s);
	}
	/* Until the copy is whole only the letter; then both until the expunge is; then the job. */
	assert_true(letter_only > 0 && both > 0);
	assert_int_equal(job_only, 1);
	reopen(f);
}

static void test_copy_keeps_attempts(void **state)
{
	struct fixture *f = *state;
	uint32_t other;
	assert_int_equal(store_mailbox_create(f->s, "other", &other, NULL), IMAPQ_OK);
	uint32_t uid = append_text(f->s, f->q, 0, "job");
	claim(f, uid, get(f->s, f->q, uid).modseq);
	uint32_t copies[2] = {0};
	for (int move = 0; move < 2; move++) {
		struct uid_range r = {uid, uid};
		assert_int_equal(store_copy(f->s, f->q, &r, 1, other, move, NULL, NULL, NULL),
				 IMAPQ_OK);
		struct store_mailbox_status st;
		assert_int_equal(store_mailbox_status(f->s, other, &st), IMAPQ_OK);
		copies[move] = st.uidnext - 1;
	}
	unsigned k;
	assert_int_equal(store_keyword(f->s, other, STORE_CLAIM_KEYWORD, false, &k, NULL),
			 IMAPQ_OK);
	for (int i = 0; i < 2; i++) {
		/* COPY keeps $Claimed (RFC 3501) but the lease stays with the source. */
		struct store_message c = get(f->s, other, copies[i]);
		assert_int_equal(c.attempts, 1);
		assert_int_equal(c.due, 0);
		assert_int_equal(c.flags, STORE_KEYWORD(k));
	}
}

/* One call of the message hook. */
struct event {
	uint32_t id;
	bool has_before, has_after;
	struct store_message before, after;
};

struct events {
	struct event v[64];
	size_t n;
};

static void hook(void *arg, uint32_t id, const struct store_message *before,
		 const struct store_message *after)
{
	struct events *e = arg;
	assert_true(e->n < 64);
	struct event *ev = &e->v[e->n++];
	*ev = (struct event){.id = id, .has_before = before != NULL, .has_after = after != NULL};
	if (before)
		ev->before = *before;
	if (after)
		ev->after = *after;
}

static void test_message_hook(void **state)
{
	struct fixture *f = *state;
	struct events e = {0};
	uint32_t dead;
	assert_int_equal(store_mailbox_create(f->s, "q/dead", &dead, NULL), IMAPQ_OK);
	store_set_message_hook(f->s, hook, &e);

	uint32_t a = append_text(f->s, f->q, 0, "first");
	uint32_t b = append_text(f->s, f->q, 0, "second");
	assert_int_equal(e.n, 2);
	assert_false(e.v[0].has_before);
	assert_true(e.v[0].has_after);
	assert_int_equal(e.v[0].id, f->q);
	assert_int_equal(e.v[0].after.uid, a);
	assert_int_equal(e.v[1].after.uid, b);

	/* A claim: one change with the state before and after. */
	uint64_t since = e.v[0].after.modseq;
	struct result r = claim(f, a, since);
	assert_int_equal(e.n, 3);
	assert_true(e.v[2].has_before && e.v[2].has_after);
	assert_int_equal(e.v[2].before.flags, 0);
	assert_int_equal(e.v[2].before.due, 0);
	assert_int_equal(e.v[2].after.flags, f->claimed);
	assert_int_equal(e.v[2].after.due, r.m.due);
	assert_int_equal(e.v[2].after.attempts, 1);
	assert_int_equal(e.v[2].after.modseq, r.m.modseq);
	/* Failed and unchanged stores are no transitions. */
	claim(f, a, since);
	struct store_update same = {.op = STORE_FLAGS_ADD, .flags = f->claimed};
	update(f->s, f->q, a, &same);
	assert_int_equal(e.n, 3);

	/* Expunge: before, then NULL. */
	assert_int_equal(store_flags(f->s, f->q, &(struct uid_range){b, b}, 1, STORE_FLAGS_ADD,
				     STORE_DELETED, NULL, NULL, NULL, NULL),
			 IMAPQ_OK);
	assert_int_equal(e.n, 4);
	assert_int_equal(store_expunge(f->s, f->q, NULL, 0, NULL, NULL, NULL), IMAPQ_OK);
	assert_int_equal(e.n, 5);
	assert_true(e.v[4].has_before);
	assert_false(e.v[4].has_after);
	assert_int_equal(e.v[4].before.uid, b);
	assert_int_equal(e.v[4].id, f->q);

	/* Move away: the append in the destination, then the source leaves. */
	uint32_t dst_uid;
	assert_int_equal(
	    store_move_if_unchanged(f->s, f->q, a, r.m.modseq, dead, f->claimed, &dst_uid, NULL),
	    IMAPQ_OK);
	assert_int_equal(e.n, 7);
	assert_int_equal(e.v[5].id, dead);
	assert_false(e.v[5].has_before);
	assert_int_equal(e.v[5].after.uid, dst_uid);
	assert_int_equal(e.v[5].after.attempts, 1);
	assert_int_equal(e.v[6].id, f->q);
	assert_true(e.v[6].has_before);
	assert_false(e.v[6].has_after);
	assert_int_equal(e.v[6].before.uid, a);
	assert_int_equal(e.v[6].before.due, r.m.due);

	/* IMAP MOVE reports the same two transitions. */
	assert_int_equal(store_copy(f->s, dead, &(struct uid_range){dst_uid, dst_uid}, 1, f->q,
				    true, NULL, NULL, NULL),
			 IMAPQ_OK);
	assert_int_equal(e.n, 9);
	assert_int_equal(e.v[7].id, f->q);
	assert_false(e.v[7].has_before);
	assert_int_equal(e.v[8].id, dead);
	assert_false(e.v[8].has_after);

	/* Compaction carries bodies without changing state: no calls. */
	size_t before_compact = e.n;
	assert_int_equal(store_compact(f->s, true), IMAPQ_OK);
	assert_int_equal(e.n, before_compact);

	/* Unhooked: no more calls. */
	store_set_message_hook(f->s, NULL, NULL);
	append_text(f->s, f->q, 0, "third");
	assert_int_equal(e.n, before_compact);
}

/* Collects every message of a mailbox. */
struct msgs {
	struct store_message v[64];
	size_t n;
};

static void collect(void *ctx, const struct store_message *m)
{
	struct msgs *l = ctx;
	if (l->n < 64)
		l->v[l->n++] = *m;
}

static void test_replay_restores_fields(void **state)
{
	struct fixture *f = *state;
	uint32_t uids[6];
	for (int i = 0; i < 6; i++)
		uids[i] = append_text(f->s, f->q, 0, "job");
	/* Varied states: claimed once or twice, released, renewed, delayed. */
	for (int i = 0; i < 6; i++)
		claim(f, uids[i], UINT64_MAX);
	struct store_update release = {.op = STORE_FLAGS_REMOVE, .flags = f->claimed};
	update(f->s, f->q, uids[1], &release);
	update(f->s, f->q, uids[2], &release);
	claim(f, uids[2], UINT64_MAX);
	struct store_update renew = {.op = STORE_FLAGS_ADD, .set_due = true, .due = 4000000000u};
	update(f->s, f->q, uids[3], &renew);
	uint64_t delayed = keyword_bit(f->s, f->q, STORE_DELAY_KEYWORD);
	struct store_update delay = {
	    .op = STORE_FLAGS_SET, .flags = delayed, .set_due = true, .due = 1800000000u};
	update(f->s, f->q, uids[4], &delay);

	struct msgs before = {0}, after = {0}, compacted = {0};
	assert_int_equal(store_messages(f->s, f->q, NULL, 0, collect, &before), IMAPQ_OK);
	assert_int_equal(before.n, 6);
	assert_int_equal(before.v[2].attempts, 2);
	assert_int_equal(before.v[1].due, 0);
	assert_int_equal(before.v[3].due, 4000000000u);
	reopen(f);
	assert_int_equal(store_messages(f->s, f->q, NULL, 0, collect, &after), IMAPQ_OK);
	assert_int_equal(after.n, 6);
	assert_memory_equal(before.v, after.v, sizeof before.v[0] * 6);

	/* Compaction carries the fields; a restart reads them from the carried records. */
	assert_int_equal(store_compact(f->s, true), IMAPQ_OK);
	reopen(f);
	assert_int_equal(store_messages(f->s, f->q, NULL, 0, collect, &compacted), IMAPQ_OK);
	assert_int_equal(compacted.n, 6);
	assert_memory_equal(before.v, compacted.v, sizeof before.v[0] * 6);
}

static void test_ram_per_message(void **state)
{
	struct fixture *f = *state;
	enum { N = 20000 };
	struct store_stats a, b;
	store_stats(f->s, &a);
	for (int i = 0; i < N; i++)
		append_text(f->s, f->q, 0, "x");
	/* The claim index and a second predicate cost their bits too. */
	uint32_t uid, count;
	assert_int_equal(store_first_match(f->s, f->q, f->claimed | STORE_DELETED, 0, 1, &uid),
			 IMAPQ_OK);
	assert_int_equal(store_count_match(f->s, f->q, f->claimed, f->claimed, &count), IMAPQ_OK);
	store_stats(f->s, &b);
	double per = (double)(b.memory_bytes - a.memory_bytes) / N;
	assert_true(per >= 48.0);
	assert_true(per <= 64.0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_claim_counts_and_leases, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_keyword_defined_later, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_renewal_moves_modseq, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_failed_claim_changes_nothing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_claim_race_counts_once, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_release_after_last_attempt_expires_the_lease,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_settings, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_settings_survive_checkpoints, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_move_if_unchanged, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_requeue_if_unchanged, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_requeue_crash_at_any_byte, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_copy_keeps_attempts, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_message_hook, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_replay_restores_fields, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ram_per_message, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
