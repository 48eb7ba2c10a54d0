/* Unit tests of compaction's policy: when a pass starts and where it stops, that a backlog is
 * re-written once per pass and survives it, and that the work is cut into slices; and that a
 * carried or copied body keeps the checksum it was written with. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "imap/base/crc32c.h"
#include "imap/base/limits.h"
#include "imap/base/log.h"
#include "imap/store/journal-private.h"
#include "imap/store/store-private.h"
#include "imap/store/store.h"
#include "tests/unit/queue_fixture.h"
#include "tests/unit/test_gate.h"

#define SEGMENT_BYTES (64 * 1024)
#define SLACK	      (IMAPQ_COMPACT_SLACK_SEGMENTS * SEGMENT_BYTES)
#define BACKLOG	      6000
#define BACKLOG_BODY  40
#define CHURN_BODY    1000

/* Appends a body of len bytes, each the byte fill; returns its UID. */
static uint32_t append_fill(struct store *s, uint32_t id, char fill, size_t len)
{
	char body[CHURN_BODY + 1];
	assert_true(len < sizeof body);
	memset(body, fill, len);
	body[len] = '\0';
	return append_text(s, id, 0, body);
}

/* The journal's bytes beyond what the live state needs. */
static uint64_t dead_bytes(struct store *s)
{
	struct store_stats st;
	store_stats(s, &st);
	return st.journal.disk_bytes > st.needed_bytes ? st.journal.disk_bytes - st.needed_bytes
						       : 0;
}

/* Appends and expunges job after job in mailbox id until the dead bytes pass target. */
static void churn_until(struct store *s, uint32_t id, uint64_t target)
{
	while (dead_bytes(s) <= target) {
		uint32_t uid = append_fill(s, id, 'c', CHURN_BODY);
		struct uid_range r = {uid, uid};
		assert_int_equal(store_flags(s, id, &r, 1, STORE_FLAGS_ADD, STORE_DELETED, NULL,
					     NULL, NULL, NULL),
				 IMAPQ_OK);
		assert_int_equal(store_expunge(s, id, &r, 1, NULL, NULL, NULL), IMAPQ_OK);
	}
}

/* Every backlog message is there with its body. */
static void check_backlog(struct store *s, uint32_t id)
{
	struct store_mailbox_status st;
	assert_int_equal(store_mailbox_status(s, id, &st), IMAPQ_OK);
	assert_int_equal(st.messages, BACKLOG);
	for (uint32_t uid = 1; uid <= BACKLOG; uid++) {
		char buf[BACKLOG_BODY + 1];
		size_t got = 0;
		assert_int_equal(store_body_read(s, id, uid, 0, buf, sizeof buf, &got), IMAPQ_OK);
		assert_int_equal(got, BACKLOG_BODY);
		assert_int_equal(buf[0], (char)('a' + uid % 26));
		assert_int_equal(buf[BACKLOG_BODY - 1], (char)('a' + uid % 26));
	}
}

/* A pass waits until the dead bytes pass both the slack and the live state, carries the backlog
 * once, and stops once they are back within the slack. */
static void test_pass_starts_past_live_state(void **state)
{
	struct store_fixture *f = *state;
	fixture_store_reopen(f->dir, JOURNAL_FSYNC_OFF, SEGMENT_BYTES, &f->s);
	struct store *s = f->s;
	uint32_t backlog = fixture_mailbox(s, "backlog");
	uint32_t churn = fixture_mailbox(s, "churn");
	for (uint32_t i = 1; i <= BACKLOG; i++)
		assert_int_equal(append_fill(s, backlog, (char)('a' + i % 26), BACKLOG_BODY), i);
	struct store_stats st;
	store_stats(s, &st);
	/* The backlog alone is several segments and far more than the slack. */
	assert_true(st.needed_bytes > 2 * SLACK);
	uint64_t live = st.needed_bytes;

	/* Dead bytes past the slack but within the live state: no pass. */
	churn_until(s, churn, SLACK + SEGMENT_BYTES);
	assert_true(dead_bytes(s) < live);
	assert_int_equal(store_compact(s, false), IMAPQ_OK);
	store_stats(s, &st);
	assert_int_equal(st.compactions, 0);
	assert_int_equal(st.carried, 0);

	/* Past the live state: one pass carries the backlog once and frees the churn. */
	churn_until(s, churn, live + SEGMENT_BYTES);
	store_stats(s, &st);
	uint64_t segments = st.journal.segments;
	assert_int_equal(store_compact(s, false), IMAPQ_OK);
	store_stats(s, &st);
	assert_true(st.compactions > 0);
	assert_true(st.compactions <= segments);
	assert_true(st.carried >= BACKLOG);
	assert_true(st.carried < 2 * BACKLOG);
	assert_int_equal(st.damaged_bodies, 0);
	assert_true(dead_bytes(s) <= SLACK);
	/* The work came in slices of at most IMAPQ_COMPACT_SLICE_MESSAGES: a segment of the
	 * backlog holds about 600 messages. */
	assert_true(st.compact_slices >= st.carried / IMAPQ_COMPACT_SLICE_MESSAGES);
	assert_true(st.compact_slices > st.compactions);

	/* Nothing is due now; a forced call still frees a segment. */
	uint64_t done = st.compactions;
	assert_int_equal(store_compact(s, false), IMAPQ_OK);
	store_stats(s, &st);
	assert_int_equal(st.compactions, done);
	assert_int_equal(store_compact(s, true), IMAPQ_OK);
	store_stats(s, &st);
	assert_int_equal(st.compactions, done + 1);

	check_backlog(s, backlog);
	fixture_store_reopen(f->dir, JOURNAL_FSYNC_OFF, SEGMENT_BYTES, &f->s);
	check_backlog(f->s, backlog);
}

/* With little live data, dead bytes past the slack are enough. */
static void test_small_store_keeps_within_slack(void **state)
{
	struct store_fixture *f = *state;
	fixture_store_reopen(f->dir, JOURNAL_FSYNC_OFF, SEGMENT_BYTES, &f->s);
	struct store *s = f->s;
	uint32_t churn = fixture_mailbox(s, "churn");
	uint32_t keep = append_fill(s, churn, 'k', 10);
	churn_until(s, churn, SLACK + SEGMENT_BYTES);
	assert_int_equal(store_compact(s, false), IMAPQ_OK);
	struct store_stats st;
	store_stats(s, &st);
	assert_true(st.compactions > 0);
	assert_true(dead_bytes(s) <= SLACK);
	assert_true(st.journal.disk_bytes <= st.needed_bytes + SLACK);
	char buf[16];
	size_t got = 0;
	assert_int_equal(store_body_read(s, churn, keep, 0, buf, sizeof buf, &got), IMAPQ_OK);
	assert_int_equal(got, 10);
}

/* The starting rule alone: dead bytes past the slack and past the live state, or past the slack
 * on a file system with less room left than the live state. */
static void test_rule_with_little_disk_left(void **state)
{
	(void)state;
	const uint64_t mib = 1024 * 1024, slack = 128 * mib, live = 1024 * mib;
	const uint64_t roomy = 100 * 1024 * mib;
	/* Within the slack nothing starts, however full the disk. */
	assert_false(store_compact_due(slack, live, slack, 0));
	assert_false(store_compact_due(slack, 0, slack, roomy));
	/* Past the slack with a small live state. */
	assert_true(store_compact_due(slack + 1, 10 * mib, slack, roomy));
	/* A large live state waits for as many dead bytes, while the disk has room. */
	assert_false(store_compact_due(slack + 1, live, slack, roomy));
	assert_false(store_compact_due(live, live, slack, roomy));
	assert_true(store_compact_due(live + 1, live, slack, roomy));
	assert_false(store_compact_due(slack + 1, live, slack, UINT64_MAX));
	/* With less room left than the live state, past the slack is enough. */
	assert_true(store_compact_due(slack + 1, live, slack, live - 1));
	assert_false(store_compact_due(slack + 1, live, slack, live));
}

/* About five segments of appends that are expunged again, then 20,000 live messages; the store
 * is opened again, so that its per-segment counts come from the recount. Gives the live
 * mailbox. */
static uint32_t dead_segments_then_live(struct store_fixture *f)
{
	fixture_store_reopen(f->dir, JOURNAL_FSYNC_OFF, SEGMENT_BYTES, &f->s);
	uint32_t churn = fixture_mailbox(f->s, "churn");
	uint32_t live = fixture_mailbox(f->s, "live");
	churn_until(f->s, churn, 5 * SEGMENT_BYTES);
	for (uint32_t i = 0; i < 20000; i++)
		append_fill(f->s, live, 'l', 8);
	assert_true(20000 > IMAPQ_COMPACT_SLICE_SCAN);
	fixture_store_reopen(f->dir, JOURNAL_FSYNC_OFF, SEGMENT_BYTES, &f->s);
	return live;
}

/* Without trustworthy counts (one was lost to a failed allocation), compaction cannot know a
 * segment is empty and examines every message, in slices of IMAPQ_COMPACT_SLICE_SCAN; it still
 * frees the dead segments and keeps every live message. */
static void test_lost_counts_examine_every_message(void **state)
{
	struct store_fixture *f = *state;
	uint32_t live = dead_segments_then_live(f);
	f->s->segment_counts_lost = true;
	struct store_stats st;
	assert_int_equal(store_compact(f->s, true), IMAPQ_OK);
	store_stats(f->s, &st);
	assert_true(st.compactions >= 2);
	assert_true(st.compact_slices >= 2 * st.compactions);
	assert_int_equal(st.carried, 0);
	struct store_mailbox_status ms;
	assert_int_equal(store_mailbox_status(f->s, live, &ms), IMAPQ_OK);
	assert_int_equal(ms.messages, 20000);
}

/* A segment that holds no live message is freed in one slice, without examining the 20,000 live
 * messages of newer segments (more than one slice may examine). The store is reopened first, so
 * the segments' live counts are the ones replay rebuilt; compaction through the live segments
 * then keeps every message. */
static void test_dead_segment_takes_one_slice(void **state)
{
	struct store_fixture *f = *state;
	uint32_t live = dead_segments_then_live(f);

	/* The pass frees dead segments until within the slack, one slice each. */
	struct store_stats st;
	assert_int_equal(store_compact(f->s, true), IMAPQ_OK);
	store_stats(f->s, &st);
	assert_true(st.compactions >= 2);
	assert_int_equal(st.compact_slices, st.compactions);
	assert_int_equal(st.carried, 0);

	/* On through the live segments (some carried copies are carried again on the way):
	 * every message stays. */
	for (int i = 0; i < 100 && st.carried < 20000; i++) {
		assert_int_equal(store_compact(f->s, true), IMAPQ_OK);
		store_stats(f->s, &st);
	}
	assert_true(st.carried >= 20000);
	fixture_store_reopen(f->dir, JOURNAL_FSYNC_OFF, SEGMENT_BYTES, &f->s);
	struct store_mailbox_status ms;
	assert_int_equal(store_mailbox_status(f->s, live, &ms), IMAPQ_OK);
	assert_int_equal(ms.messages, 20000);
	char buf[16];
	size_t got = 0;
	assert_int_equal(store_body_read(f->s, live, 20000, 0, buf, sizeof buf, &got), IMAPQ_OK);
	assert_int_equal(got, 8);
}

/* Large bodies: a slice carries at most IMAPQ_COMPACT_SLICE_BYTES of them (and at least one). */
static void test_slice_stops_at_its_bytes(void **state)
{
	struct store_fixture *f = *state;
	const size_t big = 300 * 1000;
	fixture_store_reopen(f->dir, JOURNAL_FSYNC_OFF, 4 * 1024 * 1024, &f->s);
	uint32_t id = fixture_mailbox(f->s, "big");
	char *body = malloc(big);
	assert_non_null(body);
	memset(body, 'b', big);
	struct journal_body b = {.data = body, .fd = -1, .len = big, .crc = crc32c(0, body, big)};
	for (int i = 0; i < 20; i++)
		assert_int_equal(store_append(f->s, id, 0, 1, &b, NULL, NULL, NULL), IMAPQ_OK);
	free(body);
	assert_int_equal(store_compact(f->s, true), IMAPQ_OK);
	struct store_stats st;
	store_stats(f->s, &st);
	/* The oldest segment held about 13 of them; four fit in 1 MiB, the fourth passing it. */
	assert_true(st.carried >= 10);
	size_t per_slice = IMAPQ_COMPACT_SLICE_BYTES / big + 1;
	assert_true(st.compact_slices >= (st.carried + per_slice - 1) / per_slice);
	struct store_mailbox_status ms;
	assert_int_equal(store_mailbox_status(f->s, id, &ms), IMAPQ_OK);
	assert_int_equal(ms.messages, 20);
}

/* The estimate counts a checkpoint per segment at the size of the last one written: ten
 * mailboxes with a 4,000-byte annotation each make checkpoints of over 40,000 bytes, far more
 * than the 512 bytes per mailbox assumed before the first. */
static void test_needed_bytes_count_checkpoints(void **state)
{
	struct store_fixture *f = *state;
	fixture_store_reopen(f->dir, JOURNAL_FSYNC_OFF, SEGMENT_BYTES, &f->s);
	char value[4001];
	memset(value, 'v', sizeof value - 1);
	value[sizeof value - 1] = '\0';
	for (int i = 0; i < 10; i++) {
		char name[16];
		snprintf(name, sizeof name, "annotated%d", i);
		uint32_t id = fixture_mailbox(f->s, name);
		assert_int_equal(store_annotation_set(f->s, id, "/shared/note", value, NULL),
				 IMAPQ_OK);
	}
	struct store_stats before, after;
	store_stats(f->s, &before);
	assert_int_equal(before.journal.segments, 1);
	assert_true(before.needed_bytes < 10 * 4000);
	after = before;
	/* Fill the first segment so the store rotates and writes a checkpoint. */
	uint32_t churn = fixture_mailbox(f->s, "churn");
	while (after.journal.segments < 2) {
		append_fill(f->s, churn, 'c', CHURN_BODY);
		store_stats(f->s, &after);
	}
	assert_true(after.needed_bytes > 10 * 4000);
}

/* Flips one bit at delta bytes from where marker starts in the journal's segment files. */
static void flip_in_journal(const char *dir, const char *marker, long delta)
{
	char jdir[TMPDIR_LEN + 16];
	snprintf(jdir, sizeof jdir, "%s/journal", dir);
	DIR *d = opendir(jdir);
	assert_non_null(d);
	bool done = false;
	for (struct dirent *e; !done && (e = readdir(d)) != NULL;) {
		if (strstr(e->d_name, ".seg") == NULL)
			continue;
		char path[sizeof jdir + 256];
		snprintf(path, sizeof path, "%s/%s", jdir, e->d_name);
		int fd = open(path, O_RDWR);
		assert_true(fd >= 0);
		struct stat sb;
		assert_int_equal(fstat(fd, &sb), 0);
		char *data = malloc((size_t)sb.st_size + 1);
		assert_non_null(data);
		assert_int_equal(pread(fd, data, (size_t)sb.st_size, 0), sb.st_size);
		char *at = memmem(data, (size_t)sb.st_size, marker, strlen(marker));
		if (at != NULL) {
			off_t pos = (off_t)(at - data) + delta;
			char c = (char)(data[pos] ^ 0x10);
			assert_int_equal(pwrite(fd, &c, 1, pos), 1);
			done = true;
		}
		free(data);
		close(fd);
	}
	closedir(d);
	assert_true(done);
}

/* Keeps the lowest UID seen. */
static void note_first(void *ctx, const struct store_message *m)
{
	uint32_t *uid = ctx;
	if (*uid == 0 || m->uid < *uid)
		*uid = m->uid;
}

/* The first UID of mailbox id (0 when it is empty) and its body. */
static uint32_t first_body(struct store *s, uint32_t id, char *buf, size_t cap)
{
	struct uid_range all = {1, UINT32_MAX};
	uint32_t uid = 0;
	assert_int_equal(store_messages(s, id, &all, 1, note_first, &uid), IMAPQ_OK);
	if (uid == 0)
		return 0;
	size_t got = 0;
	assert_int_equal(store_body_read(s, id, uid, 0, buf, cap - 1, &got), IMAPQ_OK);
	buf[got] = '\0';
	return uid;
}

#define ROTTEN "rotten-body-0123456789"
#define SOUND  "sound-body-0123456789"

/* Opens the fixture's store with small segments, appends text to a new mailbox name, and flips a
 * bit delta bytes from the start of that body on disk; returns the mailbox. */
static uint32_t append_and_damage(struct store_fixture *f, const char *name, const char *text,
				  long delta)
{
	fixture_store_reopen(f->dir, JOURNAL_FSYNC_OFF, SEGMENT_BYTES, &f->s);
	uint32_t id = fixture_mailbox(f->s, name);
	assert_int_equal(append_text(f->s, id, 0, text), 1);
	flip_in_journal(f->dir, text, delta);
	return id;
}

/* The store's counts of carried messages and of damaged bodies. */
static void assert_carried_damaged(struct store *s, uint64_t carried, uint64_t damaged)
{
	struct store_stats st;
	store_stats(s, &st);
	assert_int_equal(st.carried, carried);
	assert_int_equal(st.damaged_bodies, damaged);
}

/* A body that changed on disk after the store opened keeps the checksum it was written with
 * when carried: compaction counts it, and the next open finds the carried copy damaged as it
 * would have found the original, instead of a copy made valid by a fresh checksum. A sound
 * body beside it is carried as before. */
static void test_carry_keeps_written_checksum(void **state)
{
	struct store_fixture *f = *state;
	uint32_t rotten = append_and_damage(f, "rotten", ROTTEN, 3);
	uint32_t sound = fixture_mailbox(f->s, "sound");
	append_text(f->s, sound, 0, SOUND);
	char buf[64];
	assert_int_equal(first_body(f->s, rotten, buf, sizeof buf), 1);
	assert_string_not_equal(buf, ROTTEN);

	assert_int_equal(store_compact(f->s, true), IMAPQ_OK);
	assert_carried_damaged(f->s, 2, 1);

	store_close(&f->s);
	struct store_options o = {
	    .dir = f->dir, .fsync = JOURNAL_FSYNC_OFF, .segment_bytes = SEGMENT_BYTES};
	struct store_report rep;
	assert_int_equal(store_open(&o, &rep, &f->s), IMAPQ_OK);
	assert_int_equal(rep.journal.damaged, 1);
	assert_int_equal(first_body(f->s, rotten, buf, sizeof buf), 0);
	assert_int_equal(first_body(f->s, sound, buf, sizeof buf), 1);
	assert_string_equal(buf, SOUND);
}

/* A record whose header was damaged after the store opened, over a sound body: the header no
 * longer vouches for the body, so the carry counts it, and the copy takes the checksum of the
 * bytes read; the message outlives the segment and the next open. */
static void test_carry_past_damaged_header(void **state)
{
	struct store_fixture *f = *state;
	/* Into the meta, in the due time of the message header before the body. */
	uint32_t id = append_and_damage(f, "jobs", SOUND, -2);
	assert_int_equal(store_compact(f->s, true), IMAPQ_OK);
	assert_carried_damaged(f->s, 1, 1);
	fixture_store_reopen(f->dir, JOURNAL_FSYNC_OFF, SEGMENT_BYTES, &f->s);
	char buf[64];
	assert_int_equal(first_body(f->s, id, buf, sizeof buf), 1);
	assert_string_equal(buf, SOUND);
}

/* COPY takes the written checksum too: a copy of a changed body does not outlive a restart. */
static void test_copy_keeps_written_checksum(void **state)
{
	struct store_fixture *f = *state;
	uint32_t src = append_and_damage(f, "src", ROTTEN, 3);
	uint32_t dst = fixture_mailbox(f->s, "dst");
	struct uid_range r = {1, 1};
	assert_int_equal(store_copy(f->s, src, &r, 1, dst, false, NULL, NULL, NULL), IMAPQ_OK);
	assert_carried_damaged(f->s, 0, 1);
	char buf[64];
	assert_int_equal(first_body(f->s, dst, buf, sizeof buf), 1);
	assert_string_not_equal(buf, ROTTEN);
	fixture_store_reopen(f->dir, JOURNAL_FSYNC_OFF, SEGMENT_BYTES, &f->s);
	assert_int_equal(first_body(f->s, dst, buf, sizeof buf), 0);
}

/* The compacting thread's reads of the journal pass this gate. */
static struct test_gate gate = TEST_GATE_INIT;
static _Thread_local bool compacting_thread;

static ssize_t gated_pread(int fd, void *buf, size_t len, off_t offset)
{
	test_gate_pass(&gate, compacting_thread);
	return pread(fd, buf, len, offset);
}

struct gate_job {
	struct store *s;
	uint32_t id;
	imapq_err err;
};

static void *compact_main(void *arg)
{
	struct gate_job *job = arg;
	compacting_thread = true;
	job->err = store_compact(job->s, true);
	return NULL;
}

static void *append_main(void *arg)
{
	struct gate_job *job = arg;
	struct journal_body b = {.data = "later", .fd = -1, .len = 5};
	b.crc = crc32c(0, b.data, b.len);
	job->err = store_append(job->s, job->id, 0, 1700000000, &b, NULL, NULL, NULL);
	test_gate_set(&gate, &gate.done);
	return NULL;
}

/* Compaction reads bodies without the store lock: while its first read is held up, a writer
 * appends, and a message it gathered is expunged and another flagged. It then carries the
 * flagged one as it is now and not the expunged one. */
static void test_bodies_read_outside_the_lock(void **state)
{
	struct store_fixture *f = *state;
	fixture_store_reopen(f->dir, JOURNAL_FSYNC_OFF, SEGMENT_BYTES, &f->s);
	uint32_t id = fixture_mailbox(f->s, "jobs");
	for (int i = 0; i < 3; i++)
		append_text(f->s, id, 0, SOUND);
	gate.armed = true;
	atomic_store(&journal_pread_fn, gated_pread);
	struct gate_job compactor = {.s = f->s}, writer = {.s = f->s, .id = id};
	pthread_t ct, wt;
	assert_int_equal(pthread_create(&ct, NULL, compact_main, &compactor), 0);
	bool reading = test_gate_wait(&gate, &gate.reached, 10);
	assert_int_equal(pthread_create(&wt, NULL, append_main, &writer), 0);
	bool appended = test_gate_wait(&gate, &gate.done, 5);
	struct uid_range two = {2, 2}, three = {3, 3};
	imapq_err flagged = IMAPQ_E_INVALID, expunged = IMAPQ_E_INVALID;
	if (appended) {
		flagged = store_flags(f->s, id, &three, 1, STORE_FLAGS_ADD, STORE_SEEN, NULL, NULL,
				      NULL, NULL);
		store_flags(f->s, id, &two, 1, STORE_FLAGS_ADD, STORE_DELETED, NULL, NULL, NULL,
			    NULL);
		expunged = store_expunge(f->s, id, &two, 1, NULL, NULL, NULL);
	}
	test_gate_set(&gate, &gate.open);
	pthread_join(wt, NULL);
	pthread_join(ct, NULL);
	atomic_store(&journal_pread_fn, pread);

	assert_true(reading);
	assert_true(appended);
	assert_int_equal(writer.err, IMAPQ_OK);
	assert_int_equal(flagged, IMAPQ_OK);
	assert_int_equal(expunged, IMAPQ_OK);
	assert_int_equal(compactor.err, IMAPQ_OK);
	assert_carried_damaged(f->s, 2, 0);
	fixture_store_reopen(f->dir, JOURNAL_FSYNC_OFF, SEGMENT_BYTES, &f->s);
	struct store_mailbox_status ms;
	assert_int_equal(store_mailbox_status(f->s, id, &ms), IMAPQ_OK);
	assert_int_equal(ms.messages, 3);
	struct store_message m;
	assert_int_equal(store_message_get(f->s, id, 3, &m), IMAPQ_OK);
	assert_true(m.flags & STORE_SEEN);
	assert_int_equal(store_message_get(f->s, id, 2, &m), IMAPQ_E_NOTFOUND);
}

int main(void)
{
	log_set_level(LOG_ERROR);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rule_with_little_disk_left),
	    cmocka_unit_test_setup_teardown(test_bodies_read_outside_the_lock, store_fixture_setup,
					    store_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_carry_keeps_written_checksum, store_fixture_setup,
					    store_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_carry_past_damaged_header, store_fixture_setup,
					    store_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_copy_keeps_written_checksum, store_fixture_setup,
					    store_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_needed_bytes_count_checkpoints,
					    store_fixture_setup, store_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_slice_stops_at_its_bytes, store_fixture_setup,
					    store_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_dead_segment_takes_one_slice, store_fixture_setup,
					    store_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_lost_counts_examine_every_message,
					    store_fixture_setup, store_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_pass_starts_past_live_state, store_fixture_setup,
					    store_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_small_store_keeps_within_slack,
					    store_fixture_setup, store_fixture_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
