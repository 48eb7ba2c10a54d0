/* Unit tests of the mailbox store: mailboxes, names, UIDVALIDITY, messages, conditional stores,
 * the claim race, expunge/copy/move, QRESYNC queries and the claim predicate. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "imap/base/limits.h"
#include "imap/store/store.h"
#include "tests/unit/queue_fixture.h"

#define CLAIMED_MASK (STORE_DELETED | STORE_KEYWORD(0) | STORE_KEYWORD(1))

/* Opens (or reopens) the store of the fixture's folder. */
static void reopen(struct store_fixture *f, uint64_t segment_bytes)
{
	fixture_store_reopen(f->dir, JOURNAL_FSYNC_OFF, segment_bytes, &f->s);
}

static uint64_t modseq_of(struct store *s, uint32_t id, uint32_t uid)
{
	struct store_message m;
	assert_int_equal(store_message_get(s, id, uid, &m), IMAPQ_OK);
	return m.modseq;
}

static uint64_t flags_of(struct store *s, uint32_t id, uint32_t uid)
{
	struct store_message m;
	assert_int_equal(store_message_get(s, id, uid, &m), IMAPQ_OK);
	return m.flags;
}

static void test_name_validation(void **state)
{
	(void)state;
	char longname[301];
	memset(longname, 'a', 300);
	longname[300] = '\0';
	const char *good[] = {"INBOX", "queue", "jobs/dead", "a/b/c", "Ünïcödé/名前", "..", "x.y"};
	const char *bad[] = {"",      "a//b",	  "/x",		  "x/",	      "*",
			     "a*b",   "a%",	  "a\tb",	  "a\nb",     "\x7f",
			     "\xc3",  "\xc3\x28", "\xed\xa0\x80", "\xc0\xaf", "\xc2\x85",
			     longname};
	for (size_t i = 0; i < sizeof good / sizeof *good; i++)
		assert_true(store_mailbox_name_valid(good[i]));
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		assert_false(store_mailbox_name_valid(bad[i]));
	assert_false(store_mailbox_name_valid(NULL));
	/* "../x" is a plain name here: names never reach the filesystem. */
	assert_true(store_mailbox_name_valid("../x"));
	memset(longname, 'b', IMAPQ_MAX_MAILBOX_NAME);
	longname[IMAPQ_MAX_MAILBOX_NAME] = '\0';
	assert_true(store_mailbox_name_valid(longname));
	longname[IMAPQ_MAX_MAILBOX_NAME - 1] = '/';
	assert_false(store_mailbox_name_valid(longname));
}

/* Collects mailbox names from store_mailbox_list. */
struct names {
	char list[16][64];
	size_t n;
};

static void collect_name(void *ctx, uint32_t id, const char *name)
{
	struct names *nm = ctx;
	(void)id;
	if (nm->n < 16)
		snprintf(nm->list[nm->n++], 64, "%s", name);
}

static void test_mailbox_lifecycle(void **state)
{
	struct store_fixture *f = *state;
	struct store *s = f->s;
	uint32_t inbox, id;
	assert_int_equal(store_mailbox_find(s, "inbox", &inbox), IMAPQ_OK);
	assert_int_equal(store_mailbox_find(s, "INBOX", &id), IMAPQ_OK);
	assert_int_equal(inbox, id);
	assert_int_equal(store_mailbox_create(s, "Inbox", NULL, NULL), IMAPQ_E_EXISTS);
	assert_int_equal(store_mailbox_delete(s, "inbox", NULL), IMAPQ_E_INVALID);
	assert_int_equal(store_mailbox_rename(s, "INBOX", "x", NULL), IMAPQ_E_INVALID);
	assert_int_equal(store_mailbox_create(s, "a//b", NULL, NULL), IMAPQ_E_INVALID);

	uint32_t foo = fixture_mailbox(s, "foo");
	uint32_t foox = fixture_mailbox(s, "foo/x");
	uint32_t fooxy = fixture_mailbox(s, "foo/x/y");
	uint32_t foobar = fixture_mailbox(s, "foobar");
	assert_int_equal(store_mailbox_create(s, "foo", NULL, NULL), IMAPQ_E_EXISTS);
	/* Non-INBOX names are case-sensitive. */
	assert_int_equal(store_mailbox_find(s, "FOO", &id), IMAPQ_E_NONEXISTENT);
	struct store_mailbox_status st_before;
	assert_int_equal(store_mailbox_status(s, foox, &st_before), IMAPQ_OK);
	append_text(s, foox, 0, "hello");

	assert_int_equal(store_mailbox_rename(s, "foo", "foobar", NULL), IMAPQ_E_EXISTS);
	assert_int_equal(store_mailbox_rename(s, "foo", "foo/z", NULL), IMAPQ_E_INVALID);
	assert_int_equal(store_mailbox_rename(s, "nope", "z", NULL), IMAPQ_E_NONEXISTENT);
	assert_int_equal(store_mailbox_rename(s, "foo", "bar", NULL), IMAPQ_OK);
	assert_int_equal(store_mailbox_find(s, "bar", &id), IMAPQ_OK);
	assert_int_equal(id, foo);
	assert_int_equal(store_mailbox_find(s, "bar/x", &id), IMAPQ_OK);
	assert_int_equal(id, foox);
	assert_int_equal(store_mailbox_find(s, "bar/x/y", &id), IMAPQ_OK);
	assert_int_equal(id, fooxy);
	assert_int_equal(store_mailbox_find(s, "foobar", &id), IMAPQ_OK);
	assert_int_equal(id, foobar);
	assert_int_equal(store_mailbox_find(s, "foo/x", &id), IMAPQ_E_NONEXISTENT);
	struct store_mailbox_status st;
	assert_int_equal(store_mailbox_status(s, foox, &st), IMAPQ_OK);
	assert_int_equal(st.uidvalidity, st_before.uidvalidity);
	assert_int_equal(st.messages, 1);
	assert_int_equal(st.unseen, 1);
	assert_int_equal(st.bytes, 5);
	assert_int_equal(st.uidnext, 2);
	assert_int_equal(st.highestmodseq, 2);
	char name[64];
	assert_int_equal(store_mailbox_name(s, foox, name, sizeof name), IMAPQ_OK);
	assert_string_equal(name, "bar/x");
	assert_int_equal(store_mailbox_name(s, foox, name, 3), IMAPQ_E_TOOBIG);

	struct names nm = {0};
	store_mailbox_list(s, collect_name, &nm);
	assert_int_equal(nm.n, 5);
	assert_string_equal(nm.list[0], "INBOX");
	assert_string_equal(nm.list[1], "bar");
	assert_string_equal(nm.list[2], "bar/x");
	assert_string_equal(nm.list[3], "bar/x/y");
	assert_string_equal(nm.list[4], "foobar");

	/* Deleting a parent leaves its children. */
	assert_int_equal(store_mailbox_delete(s, "bar", NULL), IMAPQ_OK);
	assert_int_equal(store_mailbox_status(s, foo, &st), IMAPQ_E_NONEXISTENT);
	assert_int_equal(store_mailbox_find(s, "bar/x", &id), IMAPQ_OK);
	assert_int_equal(store_mailbox_delete(s, "bar", NULL), IMAPQ_E_NONEXISTENT);
	/* Ids are never reused. */
	uint32_t again = fixture_mailbox(s, "bar");
	assert_true(again > foobar);

	reopen(f, 0);
	s = f->s;
	assert_int_equal(store_mailbox_find(s, "bar/x/y", &id), IMAPQ_OK);
	assert_int_equal(id, fooxy);
	assert_int_equal(store_mailbox_find(s, "bar", &id), IMAPQ_OK);
	assert_int_equal(id, again);
	assert_int_equal(store_mailbox_status(s, foox, &st), IMAPQ_OK);
	assert_int_equal(st.messages, 1);
	assert_int_equal(store_mailbox_find(s, "INBOX", &id), IMAPQ_OK);
	assert_int_equal(id, inbox);
}

static void test_uidvalidity_and_counters(void **state)
{
	struct store_fixture *f = *state;
	uint32_t seen[8];
	size_t n = 0;
	struct store_mailbox_status st;
	for (int round = 0; round < 3; round++) {
		uint32_t id = fixture_mailbox(f->s, "q");
		assert_int_equal(store_mailbox_status(f->s, id, &st), IMAPQ_OK);
		for (size_t i = 0; i < n; i++)
			assert_true(st.uidvalidity > seen[i]);
		seen[n++] = st.uidvalidity;
		reopen(f, 0);
		assert_int_equal(store_mailbox_status(f->s, id, &st), IMAPQ_OK);
		assert_int_equal(st.uidvalidity, seen[n - 1]);
		assert_int_equal(store_mailbox_delete(f->s, "q", NULL), IMAPQ_OK);
		if (round == 1)
			reopen(f, 0);
	}
	/* UIDNEXT and HIGHESTMODSEQ survive restarts even when every message is gone. */
	uint32_t id = fixture_mailbox(f->s, "keep");
	for (int i = 0; i < 5; i++)
		append_text(f->s, id, STORE_DELETED, "x");
	assert_int_equal(store_expunge(f->s, id, NULL, 0, NULL, NULL, NULL), IMAPQ_OK);
	assert_int_equal(store_mailbox_status(f->s, id, &st), IMAPQ_OK);
	assert_int_equal(st.messages, 0);
	assert_int_equal(st.uidnext, 6);
	/* One expunge of five messages takes one mod-sequence. */
	assert_int_equal(st.highestmodseq, 7);
	reopen(f, 0);
	assert_int_equal(store_mailbox_status(f->s, id, &st), IMAPQ_OK);
	assert_int_equal(st.uidnext, 6);
	assert_int_equal(st.highestmodseq, 7);
	assert_int_equal(append_text(f->s, id, 0, "y"), 6);
	assert_int_equal(modseq_of(f->s, id, 6), 8);
}

static void test_append_and_read(void **state)
{
	struct store_fixture *f = *state;
	struct store *s = f->s;
	uint32_t id = fixture_mailbox(s, "msgs");
	uint32_t u1 = append_text(s, id, STORE_SEEN, "first body");
	/* A body given as a file range. */
	char path[128];
	snprintf(path, sizeof path, "%s/body.txt", f->dir);
	int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600);
	assert_true(fd >= 0);
	const char *text = "xxxxSubject: from a file\r\n\r\nbody\r\nyyyy";
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	size_t blen = strlen(text) - 8;
	struct journal_body b = {.fd = fd, .offset = 4, .len = blen};
	b.crc = crc32c(0, text + 4, blen);
	uint32_t u2;
	uint64_t ms2, lsn;
	assert_int_equal(store_append(s, id, STORE_FLAGGED, 42, &b, &u2, &ms2, &lsn), IMAPQ_OK);
	assert_int_equal(store_wait(s, lsn), IMAPQ_OK);
	close(fd);
	uint32_t u3 = append_text(s, id, 0, "third");
	assert_int_equal(u1, 1);
	assert_int_equal(u2, 2);
	assert_int_equal(u3, 3);

	struct store_message m;
	assert_int_equal(store_message_get(s, id, u2, &m), IMAPQ_OK);
	assert_int_equal(m.size, blen);
	assert_int_equal(m.flags, STORE_FLAGGED);
	assert_int_equal(m.internaldate, 42);
	assert_int_equal(m.modseq, ms2);
	assert_int_equal(store_message_get(s, id, 99, &m), IMAPQ_E_NOTFOUND);
	assert_int_equal(store_message_get(s, 9999, 1, &m), IMAPQ_E_NONEXISTENT);

	char buf[64];
	size_t got;
	assert_int_equal(store_body_read(s, id, u2, 0, buf, sizeof buf, &got), IMAPQ_OK);
	assert_int_equal(got, blen);
	assert_memory_equal(buf, text + 4, blen);
	assert_int_equal(store_body_read(s, id, u2, 9, buf, 4, &got), IMAPQ_OK);
	assert_int_equal(got, 4);
	assert_memory_equal(buf, text + 13, 4);
	assert_int_equal(store_body_read(s, id, u1, 6, buf, sizeof buf, &got), IMAPQ_OK);
	assert_int_equal(got, 4);
	assert_memory_equal(buf, "body", 4);
	assert_int_equal(store_body_read(s, id, u1, 100, buf, sizeof buf, &got), IMAPQ_OK);
	assert_int_equal(got, 0);

	/* Flags of undefined keywords are refused. */
	struct journal_body tb = {.data = "z", .fd = -1, .len = 1, .crc = crc32c(0, "z", 1)};
	assert_int_equal(store_append(s, id, STORE_KEYWORD(0), 0, &tb, NULL, NULL, NULL),
			 IMAPQ_E_INVALID);

	uint32_t seq, uid;
	assert_int_equal(store_seq_of_uid(s, id, u2, &seq), IMAPQ_OK);
	assert_int_equal(seq, 2);
	assert_int_equal(store_uid_of_seq(s, id, 3, &uid), IMAPQ_OK);
	assert_int_equal(uid, u3);
	assert_int_equal(store_uid_of_seq(s, id, 4, &uid), IMAPQ_E_NOTFOUND);
	assert_int_equal(store_flags(s, id, &(struct uid_range){2, 2}, 1, STORE_FLAGS_ADD,
				     STORE_DELETED, NULL, NULL, NULL, NULL),
			 IMAPQ_OK);
	assert_int_equal(store_expunge(s, id, NULL, 0, NULL, NULL, NULL), IMAPQ_OK);
	assert_int_equal(store_seq_of_uid(s, id, u3, &seq), IMAPQ_OK);
	assert_int_equal(seq, 2);
	assert_int_equal(store_uid_of_seq(s, id, 2, &uid), IMAPQ_OK);
	assert_int_equal(uid, u3);

	/* Bodies survive a restart. */
	reopen(f, 0);
	assert_int_equal(store_body_read(f->s, id, u3, 0, buf, sizeof buf, &got), IMAPQ_OK);
	assert_int_equal(got, 5);
	assert_memory_equal(buf, "third", 5);
}

/* Records outcomes of a flags call. */
struct outcomes {
	uint32_t uid[16];
	enum store_flag_outcome o[16];
	uint64_t modseq[16];
	size_t n;
};

static void note_outcome(void *ctx, const struct store_message *m, enum store_flag_outcome o)
{
	struct outcomes *oc = ctx;
	oc->uid[oc->n] = m->uid;
	oc->modseq[oc->n] = m->modseq;
	oc->o[oc->n++] = o;
}

/* Collects the UIDs a page visits. */
struct page_uids {
	uint32_t v[16];
	size_t n;
};

static void page_collect(void *ctx, const struct store_message *m)
{
	struct page_uids *p = ctx;
	assert_true(p->n < 16);
	p->v[p->n++] = m->uid;
}

/* A page's UIDs and next as text ("1 2 3 | next 4"). */
static const char *page_text(const struct page_uids *p, uint32_t next)
{
	static char text[256];
	size_t len = 0;
	for (size_t i = 0; i < p->n; i++)
		len += (size_t)snprintf(text + len, sizeof text - len, "%u ", p->v[i]);
	snprintf(text + len, sizeof text - len, "| next %u", next);
	return text;
}

/* One page of store_messages_page() as text. */
static const char *page(struct store *s, uint32_t id, const struct uid_range *ranges, size_t n,
			uint32_t from, size_t max)
{
	struct page_uids p = {0};
	uint32_t next = 7777;
	assert_int_equal(store_messages_page(s, id, ranges, n, from, max, page_collect, &p, &next),
			 IMAPQ_OK);
	return page_text(&p, next);
}

static void test_messages_page(void **state)
{
	struct store_fixture *f = *state;
	struct store *s = f->s;
	uint32_t id = fixture_mailbox(s, "paged");
	for (int uid = 1; uid <= 9; uid++)
		append_text(s, id, uid == 4 || uid == 5 ? STORE_DELETED : 0, "job");
	struct uid_range gone = {4, 5};
	uint64_t lsn;
	assert_int_equal(store_expunge(s, id, &gone, 1, NULL, NULL, &lsn), IMAPQ_OK);
	/* The whole mailbox (UIDs 1-3, 6-9) in pages of three. */
	assert_string_equal(page(s, id, NULL, 0, 1, 3), "1 2 3 | next 6");
	assert_string_equal(page(s, id, NULL, 0, 6, 3), "6 7 8 | next 9");
	assert_string_equal(page(s, id, NULL, 0, 9, 3), "9 | next 0");
	assert_string_equal(page(s, id, NULL, 0, 4, 3), "6 7 8 | next 9");
	assert_string_equal(page(s, id, NULL, 0, 10, 3), "| next 0");
	/* A page ends exactly at the last message: nothing is left. */
	assert_string_equal(page(s, id, NULL, 0, 7, 3), "7 8 9 | next 0");
	/* Ranges: pages run across them, and from skips what lies before it. */
	struct uid_range r[] = {{2, 3}, {5, 6}, {8, 20}};
	assert_string_equal(page(s, id, r, 3, 1, 2), "2 3 | next 6");
	assert_string_equal(page(s, id, r, 3, 6, 2), "6 8 | next 9");
	assert_string_equal(page(s, id, r, 3, 9, 2), "9 | next 0");
	assert_string_equal(page(s, id, r, 3, 3, 10), "3 6 8 9 | next 0");
	/* Refusals. */
	uint32_t next;
	struct page_uids p = {0};
	assert_int_equal(store_messages_page(s, id, NULL, 0, 1, 0, page_collect, &p, &next),
			 IMAPQ_E_INVALID);
	struct uid_range backwards[] = {{5, 6}, {1, 2}};
	assert_int_equal(store_messages_page(s, id, backwards, 2, 1, 4, page_collect, &p, &next),
			 IMAPQ_E_INVALID);
	assert_int_equal(store_messages_page(s, 9999, NULL, 0, 1, 4, page_collect, &p, &next),
			 IMAPQ_E_NONEXISTENT);
	assert_int_equal(p.n, 0);
}

/* One page of store_changed_since_page() as text. */
static const char *changed_page(struct store *s, uint32_t id, uint64_t modseq, uint32_t from,
				size_t max)
{
	struct page_uids p = {0};
	uint32_t next = 7777;
	assert_int_equal(
	    store_changed_since_page(s, id, modseq, from, max, page_collect, &p, &next), IMAPQ_OK);
	return page_text(&p, next);
}

static void test_changed_since_page(void **state)
{
	struct store_fixture *f = *state;
	struct store *s = f->s;
	uint32_t id = fixture_mailbox(s, "changes");
	for (int i = 0; i < 200; i++)
		append_text(s, id, 0, "job");
	uint64_t since = modseq_of(s, id, 200);
	/* Changes spread over the table's blocks, one of them twice. */
	uint32_t changed[] = {3, 64, 65, 130, 199};
	for (size_t i = 0; i < 5; i++) {
		struct uid_range r = {changed[i], changed[i]};
		assert_int_equal(
		    store_flags(s, id, &r, 1, STORE_FLAGS_ADD, STORE_SEEN, NULL, NULL, NULL, NULL),
		    IMAPQ_OK);
	}
	struct uid_range again = {64, 64};
	assert_int_equal(
	    store_flags(s, id, &again, 1, STORE_FLAGS_ADD, STORE_FLAGGED, NULL, NULL, NULL, NULL),
	    IMAPQ_OK);
	assert_string_equal(changed_page(s, id, since, 1, 2), "3 64 | next 65");
	assert_string_equal(changed_page(s, id, since, 65, 2), "65 130 | next 199");
	assert_string_equal(changed_page(s, id, since, 199, 2), "199 | next 0");
	assert_string_equal(changed_page(s, id, since, 66, 10), "130 199 | next 0");
	assert_string_equal(changed_page(s, id, since, 200, 10), "| next 0");
	assert_string_equal(changed_page(s, id, modseq_of(s, id, 199), 1, 10), "64 | next 0");
	uint32_t next;
	struct page_uids p = {0};
	assert_int_equal(store_changed_since_page(s, id, since, 0, 4, page_collect, &p, &next),
			 IMAPQ_E_INVALID);
	assert_int_equal(store_changed_since_page(s, id, since, 1, 0, page_collect, &p, &next),
			 IMAPQ_E_INVALID);
	assert_int_equal(store_changed_since_page(s, 9999, since, 1, 4, page_collect, &p, &next),
			 IMAPQ_E_NONEXISTENT);
}

static void test_conditional_store(void **state)
{
	struct store_fixture *f = *state;
	struct store *s = f->s;
	uint32_t id = fixture_mailbox(s, "cs");
	unsigned claimed, delayed, k;
	assert_int_equal(store_keyword(s, id, "$Claimed", false, &k, NULL), IMAPQ_E_NOTFOUND);
	assert_int_equal(store_keyword(s, id, "$Claimed", true, &claimed, NULL), IMAPQ_OK);
	assert_int_equal(store_keyword(s, id, "$delayed", true, &delayed, NULL), IMAPQ_OK);
	assert_int_equal(store_keyword(s, id, "$CLAIMED", true, &k, NULL), IMAPQ_OK);
	assert_int_equal(k, claimed);
	assert_int_equal(store_keyword(s, id, "bad keyword", true, &k, NULL), IMAPQ_E_INVALID);
	assert_int_equal(store_keyword(s, id, "\\Seen", true, &k, NULL), IMAPQ_E_INVALID);
	char kname[32];
	assert_int_equal(store_keyword_name(s, id, delayed, kname, sizeof kname), IMAPQ_OK);
	assert_string_equal(kname, "$delayed");
	uint64_t C = STORE_KEYWORD(claimed);

	for (int i = 0; i < 4; i++)
		append_text(s, id, 0, "job");
	uint64_t ms1 = modseq_of(s, id, 1);
	struct uid_range one = {1, 1};
	struct outcomes oc = {0};

	/* Pass: UNCHANGEDSINCE equal to the current modseq. */
	assert_int_equal(
	    store_flags(s, id, &one, 1, STORE_FLAGS_ADD, C, &ms1, note_outcome, &oc, NULL),
	    IMAPQ_OK);
	assert_int_equal(oc.n, 1);
	assert_int_equal(oc.o[0], STORE_CHANGED);
	uint64_t receipt = oc.modseq[0];
	assert_true(receipt > ms1);
	assert_int_equal(flags_of(s, id, 1), C);

	/* Fail, even though adding $Claimed again would change nothing. */
	oc.n = 0;
	assert_int_equal(
	    store_flags(s, id, &one, 1, STORE_FLAGS_ADD, C, &ms1, note_outcome, &oc, NULL),
	    IMAPQ_OK);
	assert_int_equal(oc.o[0], STORE_FAILED);
	assert_int_equal(modseq_of(s, id, 1), receipt);

	/* UNCHANGEDSINCE 0 always fails. */
	uint64_t zero = 0;
	oc.n = 0;
	assert_int_equal(
	    store_flags(s, id, &one, 1, STORE_FLAGS_REMOVE, C, &zero, note_outcome, &oc, NULL),
	    IMAPQ_OK);
	assert_int_equal(oc.o[0], STORE_FAILED);
	assert_int_equal(flags_of(s, id, 1), C);

	/* Unconditional no-op store: UNCHANGED, modseq kept. */
	oc.n = 0;
	assert_int_equal(
	    store_flags(s, id, &one, 1, STORE_FLAGS_ADD, C, NULL, note_outcome, &oc, NULL),
	    IMAPQ_OK);
	assert_int_equal(oc.o[0], STORE_UNCHANGED);
	assert_int_equal(modseq_of(s, id, 1), receipt);

	/* Mixed: UIDs 1-4 with UNCHANGEDSINCE between message 2's and message 1's modseq. */
	uint64_t ms4 = modseq_of(s, id, 4);
	oc.n = 0;
	struct uid_range all = {1, 10};
	assert_int_equal(store_flags(s, id, &all, 1, STORE_FLAGS_ADD, STORE_SEEN | C, &ms4,
				     note_outcome, &oc, NULL),
			 IMAPQ_OK);
	assert_int_equal(oc.n, 4);
	assert_int_equal(oc.o[0], STORE_FAILED);
	assert_int_equal(flags_of(s, id, 1), C);
	uint64_t last = 0;
	for (size_t i = 1; i < 4; i++) {
		assert_int_equal(oc.o[i], STORE_CHANGED);
		assert_true(oc.modseq[i] > last);
		assert_true(oc.modseq[i] > receipt);
		last = oc.modseq[i];
		assert_int_equal(flags_of(s, id, oc.uid[i]), STORE_SEEN | C);
	}
	struct store_mailbox_status st;
	assert_int_equal(store_mailbox_status(s, id, &st), IMAPQ_OK);
	assert_int_equal(st.highestmodseq, last);
	assert_int_equal(st.unseen, 1);

	/* SET and REMOVE with keywords. */
	oc.n = 0;
	assert_int_equal(store_flags(s, id, &(struct uid_range){2, 3}, 1, STORE_FLAGS_SET,
				     STORE_KEYWORD(delayed) | STORE_ANSWERED, NULL, note_outcome,
				     &oc, NULL),
			 IMAPQ_OK);
	assert_int_equal(flags_of(s, id, 2), STORE_KEYWORD(delayed) | STORE_ANSWERED);
	assert_int_equal(store_flags(s, id, &(struct uid_range){3, 3}, 1, STORE_FLAGS_REMOVE,
				     STORE_ANSWERED, NULL, NULL, NULL, NULL),
			 IMAPQ_OK);
	assert_int_equal(flags_of(s, id, 3), STORE_KEYWORD(delayed));
	/* Unknown keyword bits and malformed ranges are refused. */
	assert_int_equal(
	    store_flags(s, id, &one, 1, STORE_FLAGS_ADD, STORE_KEYWORD(7), NULL, NULL, NULL, NULL),
	    IMAPQ_E_INVALID);
	struct uid_range bad[2] = {{3, 4}, {1, 2}};
	assert_int_equal(
	    store_flags(s, id, bad, 2, STORE_FLAGS_ADD, STORE_SEEN, NULL, NULL, NULL, NULL),
	    IMAPQ_E_INVALID);
	/* Everything survives a restart, modseqs included. */
	uint64_t ms3 = modseq_of(s, id, 3);
	reopen(f, 0);
	assert_int_equal(modseq_of(f->s, id, 3), ms3);
	assert_int_equal(flags_of(f->s, id, 1), C);
	assert_int_equal(store_keyword_name(f->s, id, claimed, kname, sizeof kname), IMAPQ_OK);
	assert_string_equal(kname, "$Claimed");
}

#define ROUNDS 60

/* The message raced for in each round. */
struct race {
	struct fixture_race sync;
	struct store *s;
	uint32_t id;
	uint64_t claimed;
	uint32_t uid;
	uint64_t since;
};

/* One racer's try: a conditional store of $Claimed, waited for. */
static int race_try(void *arg)
{
	struct race *r = arg;
	struct outcomes oc = {0};
	uint64_t lsn;
	struct uid_range one = {r->uid, r->uid};
	imapq_err err = store_flags(r->s, r->id, &one, 1, STORE_FLAGS_ADD, r->claimed, &r->since,
				    note_outcome, &oc, &lsn);
	if (err == IMAPQ_OK)
		err = store_wait(r->s, lsn);
	return err == IMAPQ_OK && oc.n == 1 ? (int)oc.o[0] : -1;
}

static void test_claim_race(void **state)
{
	struct store_fixture *f = *state;
	struct race r = {.s = f->s, .id = fixture_mailbox(f->s, "race")};
	unsigned k;
	assert_int_equal(store_keyword(f->s, r.id, "$Claimed", true, &k, NULL), IMAPQ_OK);
	r.claimed = STORE_KEYWORD(k);
	fixture_race_start(&r.sync, ROUNDS, race_try, &r);
	for (int round = 0; round < ROUNDS; round++) {
		r.uid = append_text(f->s, r.id, 0, "job");
		r.since = modseq_of(f->s, r.id, r.uid);
		int before = r.sync.changed;
		fixture_race_round(&r.sync);
		assert_int_equal(r.sync.changed - before, 1);
	}
	fixture_race_finish(&r.sync);
}

struct uids {
	uint32_t v[64];
	size_t n;
};

static void note_uid(void *ctx, uint32_t uid)
{
	struct uids *u = ctx;
	u->v[u->n++] = uid;
}

struct pairs {
	uint32_t src[16], dst[16];
	size_t n;
};

static void note_pair(void *ctx, uint32_t src, uint32_t dst)
{
	struct pairs *p = ctx;
	p->src[p->n] = src;
	p->dst[p->n++] = dst;
}

static void test_expunge_copy_move(void **state)
{
	struct store_fixture *f = *state;
	struct store *s = f->s;
	uint32_t a = fixture_mailbox(s, "a"), b = fixture_mailbox(s, "b");
	unsigned ka, kb;
	assert_int_equal(store_keyword(s, a, "$Other", true, &ka, NULL), IMAPQ_OK);
	assert_int_equal(store_keyword(s, a, "$Claimed", true, &ka, NULL), IMAPQ_OK);
	for (int i = 0; i < 6; i++)
		append_text(s, a, i % 2 ? STORE_DELETED : 0, i == 4 ? "fifth" : "msg");
	/* Only \Deleted messages go, and only within the ranges. */
	struct uids ex = {0};
	struct uid_range r14 = {1, 4};
	assert_int_equal(store_expunge(s, a, &r14, 1, note_uid, &ex, NULL), IMAPQ_OK);
	assert_int_equal(ex.n, 2);
	assert_int_equal(ex.v[0], 2);
	assert_int_equal(ex.v[1], 4);
	struct store_message m;
	assert_int_equal(store_message_get(s, a, 6, &m), IMAPQ_OK);
	assert_int_equal(store_message_get(s, a, 2, &m), IMAPQ_E_NOTFOUND);

	/* Copy keeps flags (keywords renumbered for the destination) and dates. */
	assert_int_equal(store_flags(s, a, &(struct uid_range){5, 5}, 1, STORE_FLAGS_ADD,
				     STORE_KEYWORD(ka) | STORE_SEEN, NULL, NULL, NULL, NULL),
			 IMAPQ_OK);
	struct pairs pc = {0};
	assert_int_equal(
	    store_copy(s, a, &(struct uid_range){5, 6}, 1, b, false, note_pair, &pc, NULL),
	    IMAPQ_OK);
	assert_int_equal(pc.n, 2);
	assert_int_equal(pc.src[0], 5);
	assert_int_equal(pc.dst[0], 1);
	assert_int_equal(store_keyword(s, b, "$claimed", false, &kb, NULL), IMAPQ_OK);
	assert_int_equal(kb, 0);
	assert_int_equal(flags_of(s, b, 1), STORE_KEYWORD(kb) | STORE_SEEN);
	assert_int_equal(flags_of(s, b, 2), STORE_DELETED);
	char buf[16];
	size_t got;
	assert_int_equal(store_body_read(s, b, 1, 0, buf, sizeof buf, &got), IMAPQ_OK);
	assert_int_equal(got, 5);
	assert_memory_equal(buf, "fifth", 5);
	assert_int_equal(store_message_get(s, a, 5, &m), IMAPQ_OK);

	/* Move removes the source regardless of \Deleted. */
	pc.n = 0;
	assert_int_equal(
	    store_copy(s, a, &(struct uid_range){1, 5}, 1, b, true, note_pair, &pc, NULL),
	    IMAPQ_OK);
	assert_int_equal(pc.n, 3);
	assert_int_equal(store_message_get(s, a, 1, &m), IMAPQ_E_NOTFOUND);
	assert_int_equal(store_message_get(s, a, 5, &m), IMAPQ_E_NOTFOUND);
	assert_int_equal(store_message_get(s, a, 6, &m), IMAPQ_OK);
	assert_int_equal(store_message_get(s, b, 5, &m), IMAPQ_OK);
	assert_int_equal(store_copy(s, a, NULL, 0, 12345, false, NULL, NULL, NULL),
			 IMAPQ_E_NONEXISTENT);
	struct store_mailbox_status st;
	assert_int_equal(store_mailbox_status(s, b, &st), IMAPQ_OK);
	assert_int_equal(st.messages, 5);
	assert_int_equal(st.deleted, 1);
	reopen(f, 0);
	assert_int_equal(store_mailbox_status(f->s, b, &st), IMAPQ_OK);
	assert_int_equal(st.messages, 5);
	assert_int_equal(flags_of(f->s, b, 5), STORE_KEYWORD(kb) | STORE_SEEN);
	assert_int_equal(flags_of(f->s, b, 4), 0);
	assert_int_equal(store_message_get(f->s, a, 5, &m), IMAPQ_E_NOTFOUND);
}

/* Collects vanished ranges. */
struct ranges {
	struct uid_range v[256];
	size_t n;
};

static void note_range(void *ctx, uint32_t lo, uint32_t hi)
{
	struct ranges *r = ctx;
	assert_true(r->n < 256);
	r->v[r->n++] = (struct uid_range){lo, hi};
}

static bool in_ranges(const struct ranges *r, uint32_t uid)
{
	for (size_t i = 0; i < r->n; i++)
		if (uid >= r->v[i].lo && uid <= r->v[i].hi)
			return true;
	return false;
}

static void note_changed(void *ctx, const struct store_message *m)
{
	struct uids *u = ctx;
	u->v[u->n++] = m->uid;
}

/* Checks vanished_since(since) against the truth: every UID expunged after since is named, no
 * existing or unassigned UID is, ranges ascend and are disjoint. */
static void check_vanished(struct store *s, uint32_t id, uint64_t since, const uint64_t *exp_at,
			   uint32_t uidnext, bool exact)
{
	struct ranges r = {0};
	assert_int_equal(store_vanished_since(s, id, since, note_range, &r), IMAPQ_OK);
	for (size_t i = 1; i < r.n; i++)
		assert_true(r.v[i].lo > r.v[i - 1].hi + 1);
	for (uint32_t uid = 1; uid < uidnext + 3; uid++) {
		struct store_message m;
		bool exists = store_message_get(s, id, uid, &m) == IMAPQ_OK;
		bool named = in_ranges(&r, uid);
		if (exists || uid >= uidnext)
			assert_false(named);
		else if (exp_at[uid] > since)
			assert_true(named);
		else if (exact)
			assert_false(named);
	}
}

static void test_vanished_and_changed(void **state)
{
	struct store_fixture *f = *state;
	reopen(f, 16 * 1024);
	struct store *s = f->s;
	uint32_t id = fixture_mailbox(s, "qr");
	uint64_t exp_at[64] = {0};
	for (int i = 0; i < 40; i++)
		append_text(s, id, 0, "payload payload payload payload payload payload");
	/* Expunge in several steps, remembering each UID's expunge modseq. */
	for (uint32_t step = 0; step < 4; step++) {
		for (uint32_t uid = 1 + step; uid <= 40; uid += 5) {
			struct store_message m;
			if (store_message_get(s, id, uid, &m) == IMAPQ_OK)
				assert_int_equal(store_flags(s, id, &(struct uid_range){uid, uid},
							     1, STORE_FLAGS_ADD, STORE_DELETED,
							     NULL, NULL, NULL, NULL),
						 IMAPQ_OK);
		}
		struct uids ex = {0};
		assert_int_equal(store_expunge(s, id, NULL, 0, note_uid, &ex, NULL), IMAPQ_OK);
		struct store_mailbox_status st;
		assert_int_equal(store_mailbox_status(s, id, &st), IMAPQ_OK);
		/* One expunge, one mod-sequence for all its messages. */
		for (size_t i = 0; i < ex.n; i++)
			exp_at[ex.v[i]] = st.highestmodseq;
	}
	struct store_mailbox_status st;
	assert_int_equal(store_mailbox_status(s, id, &st), IMAPQ_OK);
	for (uint64_t since = 0; since <= st.highestmodseq; since += 7)
		check_vanished(s, id, since, exp_at, st.uidnext, true);

	/* changed_since names exactly the messages with a larger modseq. */
	uint64_t mid = st.highestmodseq - 10;
	struct uids ch = {0};
	assert_int_equal(store_changed_since(s, id, mid, note_changed, &ch), IMAPQ_OK);
	size_t expect = 0;
	for (uint32_t uid = 1; uid <= 40; uid++) {
		struct store_message m;
		if (store_message_get(s, id, uid, &m) == IMAPQ_OK && m.modseq > mid)
			expect++;
	}
	assert_int_equal(ch.n, expect);
	for (size_t i = 1; i < ch.n; i++)
		assert_true(ch.v[i] > ch.v[i - 1]);

	/* Compaction (which folds expunges into the floor) and restarts: still a superset. */
	for (int i = 0; i < 4; i++)
		assert_int_equal(store_compact(s, true), IMAPQ_OK);
	for (uint64_t since = 0; since <= st.highestmodseq; since += 3)
		check_vanished(s, id, since, exp_at, st.uidnext, false);
	reopen(f, 16 * 1024);
	s = f->s;
	for (uint64_t since = 0; since <= st.highestmodseq; since += 3)
		check_vanished(s, id, since, exp_at, st.uidnext, false);
	struct store_mailbox_status st2;
	assert_int_equal(store_mailbox_status(s, id, &st2), IMAPQ_OK);
	assert_int_equal(st2.highestmodseq, st.highestmodseq);
	assert_int_equal(st2.messages, st.messages);
	char buf[64];
	size_t got;
	assert_int_equal(store_body_read(s, id, 40, 0, buf, sizeof buf, &got), IMAPQ_OK);
	assert_int_equal(got, 47);
}

static void test_claim_predicate(void **state)
{
	struct store_fixture *f = *state;
	struct store *s = f->s;
	uint32_t id = fixture_mailbox(s, "pred");
	unsigned kc, kd;
	assert_int_equal(store_keyword(s, id, "$Claimed", true, &kc, NULL), IMAPQ_OK);
	assert_int_equal(store_keyword(s, id, "$Delayed", true, &kd, NULL), IMAPQ_OK);
	uint64_t mask = STORE_DELETED | STORE_KEYWORD(kc) | STORE_KEYWORD(kd);
	assert_int_equal(mask, CLAIMED_MASK);
	uint32_t uid;
	assert_int_equal(store_first_match(s, id, mask, 0, 1, &uid), IMAPQ_OK);
	assert_int_equal(uid, 0);
	append_text(s, id, STORE_KEYWORD(kc), "1");
	append_text(s, id, STORE_KEYWORD(kd), "2");
	append_text(s, id, STORE_DELETED, "3");
	append_text(s, id, STORE_SEEN, "4");
	append_text(s, id, 0, "5");
	uint32_t count;
	assert_int_equal(store_first_match(s, id, mask, 0, 1, &uid), IMAPQ_OK);
	assert_int_equal(uid, 4);
	assert_int_equal(store_count_match(s, id, mask, 0, &count), IMAPQ_OK);
	assert_int_equal(count, 2);
	assert_int_equal(store_first_match(s, id, mask, 0, 5, &uid), IMAPQ_OK);
	assert_int_equal(uid, 5);
	/* Claiming 4 moves the answer to 5; releasing 1 brings 1 back. */
	assert_int_equal(store_flags(s, id, &(struct uid_range){4, 4}, 1, STORE_FLAGS_ADD,
				     STORE_KEYWORD(kc), NULL, NULL, NULL, NULL),
			 IMAPQ_OK);
	assert_int_equal(store_first_match(s, id, mask, 0, 1, &uid), IMAPQ_OK);
	assert_int_equal(uid, 5);
	assert_int_equal(store_flags(s, id, &(struct uid_range){1, 1}, 1, STORE_FLAGS_REMOVE,
				     STORE_KEYWORD(kc), NULL, NULL, NULL, NULL),
			 IMAPQ_OK);
	assert_int_equal(store_first_match(s, id, mask, 0, 1, &uid), IMAPQ_OK);
	assert_int_equal(uid, 1);
	assert_int_equal(store_count_match(s, id, mask, 0, &count), IMAPQ_OK);
	assert_int_equal(count, 2);
	assert_int_equal(store_expunge(s, id, NULL, 0, NULL, NULL, NULL), IMAPQ_OK);
	assert_int_equal(store_count_match(s, id, STORE_DELETED, STORE_DELETED, &count), IMAPQ_OK);
	assert_int_equal(count, 0);
	assert_int_equal(store_first_match(s, 4242, mask, 0, 1, &uid), IMAPQ_E_NONEXISTENT);
}

static void test_annotations_and_limits(void **state)
{
	struct store_fixture *f = *state;
	struct store *s = f->s;
	uint32_t id = fixture_mailbox(s, "meta");
	char buf[64];
	assert_int_equal(store_annotation_get(s, id, "/shared/lease", buf, sizeof buf),
			 IMAPQ_E_NOTFOUND);
	assert_int_equal(store_annotation_set(s, id, "/shared/lease", "30", NULL), IMAPQ_OK);
	assert_int_equal(store_annotation_set(s, id, "/shared/max", "5", NULL), IMAPQ_OK);
	assert_int_equal(store_annotation_set(s, id, "/shared/max", "7", NULL), IMAPQ_OK);
	assert_int_equal(store_annotation_set(s, id, "/shared/gone", "x", NULL), IMAPQ_OK);
	assert_int_equal(store_annotation_set(s, id, "/shared/gone", NULL, NULL), IMAPQ_OK);
	assert_int_equal(store_annotation_set(s, id, "/shared/never", NULL, NULL), IMAPQ_OK);
	assert_int_equal(store_annotation_set(s, id, "", "x", NULL), IMAPQ_E_INVALID);
	assert_int_equal(store_annotation_set(s, id, "/a*", "x", NULL), IMAPQ_E_INVALID);
	char *big = malloc(IMAPQ_MAX_ANNOTATION_VALUE + 2);
	memset(big, 'v', IMAPQ_MAX_ANNOTATION_VALUE + 1);
	big[IMAPQ_MAX_ANNOTATION_VALUE + 1] = '\0';
	assert_int_equal(store_annotation_set(s, id, "/big", big, NULL), IMAPQ_E_TOOBIG);
	free(big);
	assert_int_equal(store_annotation_get(s, id, "/shared/lease", buf, 2), IMAPQ_E_TOOBIG);
	for (int i = 2; i < IMAPQ_MAX_ANNOTATIONS; i++) {
		char key[32];
		snprintf(key, sizeof key, "/k%d", i);
		assert_int_equal(store_annotation_set(s, id, key, "v", NULL), IMAPQ_OK);
	}
	assert_int_equal(store_annotation_set(s, id, "/one/too/many", "v", NULL), IMAPQ_E_LIMIT);
	for (int i = 0; i < IMAPQ_MAX_KEYWORDS; i++) {
		char kw[16];
		unsigned k;
		snprintf(kw, sizeof kw, "kw%d", i);
		assert_int_equal(store_keyword(s, id, kw, true, &k, NULL), IMAPQ_OK);
		assert_int_equal(k, (unsigned)i);
	}
	unsigned k;
	assert_int_equal(store_keyword(s, id, "extra", true, &k, NULL), IMAPQ_E_LIMIT);
	assert_int_equal(store_flags(s, id, NULL, 0, STORE_FLAGS_ADD,
				     STORE_KEYWORD(IMAPQ_MAX_KEYWORDS - 1), NULL, NULL, NULL, NULL),
			 IMAPQ_OK);
	reopen(f, 0);
	assert_int_equal(store_annotation_get(f->s, id, "/SHARED/MAX", buf, sizeof buf), IMAPQ_OK);
	assert_string_equal(buf, "7");
	assert_int_equal(store_annotation_get(f->s, id, "/shared/gone", buf, sizeof buf),
			 IMAPQ_E_NOTFOUND);
	assert_int_equal(store_keyword_name(f->s, id, IMAPQ_MAX_KEYWORDS - 1, buf, sizeof buf),
			 IMAPQ_OK);
	assert_string_equal(buf, "kw58");
	struct store_stats st;
	store_stats(f->s, &st);
	assert_true(st.mailboxes >= 2);
	assert_true(st.memory_bytes > 0);
}

static void test_auto_compact_and_stats(void **state)
{
	(void)state;
	char dir[TMPDIR_LEN];
	assert_true(tmpdir_make(dir));
	struct store_options o = {
	    .dir = dir, .fsync = JOURNAL_FSYNC_ALWAYS, .segment_bytes = 4096, .auto_compact = true};
	struct store *s;
	struct store_report rep;
	assert_int_equal(store_open(&o, &rep, &s), IMAPQ_OK);
	assert_int_equal(rep.mailboxes, 1);
	uint32_t id = fixture_mailbox(s, "auto");
	for (int i = 0; i < 60; i++)
		append_text(s, id, i % 3 ? 0 : STORE_DELETED,
			    "a body of thirty-seven bytes, roughly");
	assert_int_equal(store_expunge(s, id, NULL, 0, NULL, NULL, NULL), IMAPQ_OK);
	struct store_stats st;
	store_stats(s, &st);
	assert_int_equal(st.messages, 40);
	assert_int_equal(st.live_bytes, 40 * 37);
	assert_true(st.journal.segments > 1);
	assert_true(st.journal.fsyncs > 0);
	/* Forced compaction until one old segment is left; state and bodies stay. */
	for (uint32_t i = 0; i < st.journal.segments; i++)
		assert_int_equal(store_compact(s, true), IMAPQ_OK);
	struct store_stats after;
	store_stats(s, &after);
	assert_true(after.journal.segments <= 2);
	assert_true(after.journal.disk_bytes < st.journal.disk_bytes);
	assert_int_equal(after.live_bytes, st.live_bytes);
	store_close(&s);
	assert_int_equal(store_open(&o, &rep, &s), IMAPQ_OK);
	assert_int_equal(rep.messages, 40);
	char buf[64];
	size_t got;
	assert_int_equal(store_body_read(s, id, 2, 0, buf, sizeof buf, &got), IMAPQ_OK);
	assert_int_equal(got, 37);
	store_close(&s);
	tmpdir_remove(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_name_validation),
	    cmocka_unit_test_setup_teardown(test_mailbox_lifecycle, store_fixture_setup,
					    store_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_messages_page, store_fixture_setup,
					    store_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_changed_since_page, store_fixture_setup,
					    store_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_uidvalidity_and_counters, store_fixture_setup,
					    store_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_append_and_read, store_fixture_setup,
					    store_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_conditional_store, store_fixture_setup,
					    store_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_claim_race, store_fixture_setup,
					    store_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_expunge_copy_move, store_fixture_setup,
					    store_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_vanished_and_changed, store_fixture_setup,
					    store_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_claim_predicate, store_fixture_setup,
					    store_fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_annotations_and_limits, store_fixture_setup,
					    store_fixture_teardown),
	    cmocka_unit_test(test_auto_compact_and_stats),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
