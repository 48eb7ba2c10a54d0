/* libFuzzer target: crash recovery of the store over damaged journals. A real journal is written
 * once per process through the store API (mailboxes, keywords, settings, appends, flag changes,
 * expunges, a rename, a delete and a forced compaction, so every record type is present). Each
 * input rebuilds segment files from it and opens the store on them: recovery must never crash,
 * leak, loop or fail, and the recovered store must take an append that survives a reopen.
 *
 * Input: byte 0 picks how the segments are made from the input:
 *   0  the input itself is the record area of segment 1 (behind a valid header);
 *   1  the real journal with byte edits (u16 offset, u8 xor) that break checksums;
 *   2  the real journal's records edited as records (type, meta and body bytes, deletions,
 *      copies, swaps, new records, segment breaks), then re-checksummed, so replay sees
 *      well-framed records with hostile contents;
 *   3  as 2, followed by byte edits and a cut at a chosen length (a torn tail). */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "imap/base/crc32c.h"
#include "imap/base/log.h"
#include "imap/store/journal-private.h"
#include "imap/store/store.h"
#include "tests/fuzz/fuzz.h"

/* Rotation size of the stores built here: small, so the real journal spans a few segments. */
#define SEGMENT_BYTES 4096
/* Records kept in a rebuilt journal and segments it may be split into. */
#define MAX_RECORDS  256
#define MAX_SEGMENTS 8
/* Largest new meta part an input may add to a record. */
#define MAX_NEW_META 255

/* One record of the real journal, or one made by an input. */
struct rec {
	uint8_t type;
	uint8_t *meta;
	uint32_t meta_len;
	uint8_t *body; /* NULL for a record without a body */
	uint32_t body_len;
	bool seg_break; /* starts a new segment */
};

/* The real journal, read once. */
static struct rec *template_recs;
static size_t template_n;
static char work_dir[TMPDIR_LEN];

/* Replay callback that copies every record of the real journal. */
static imapq_err collect(void *ctx, const struct journal_record *jr)
{
	uint32_t *last_seg = ctx;
	struct rec *r = &template_recs[template_n++];
	fuzz_check(template_n <= MAX_RECORDS && jr->body_len <= UINT32_MAX);
	*r = (struct rec){.type = jr->type, .meta_len = jr->meta_len};
	r->meta = malloc(jr->meta_len + 1);
	fuzz_check(r->meta != NULL);
	memcpy(r->meta, jr->meta, jr->meta_len);
	if (jr->body != NULL) {
		r->body_len = (uint32_t)jr->body_len;
		r->body = malloc(r->body_len + 1);
		fuzz_check(r->body != NULL);
		memcpy(r->body, jr->body, r->body_len);
	}
	r->seg_break = template_n > 1 && jr->segment != *last_seg;
	*last_seg = jr->segment;
	return IMAPQ_OK;
}

/* Appends message n to mailbox id. */
static void add_message(struct store *s, uint32_t id, uint64_t flags, unsigned n)
{
	char text[256];
	int len = snprintf(text, sizeof text,
			   "From: p@example.com\r\nSubject: job %u\r\nContent-Type: text/plain\r\n"
			   "\r\npayload %u\r\n",
			   n, n);
	struct journal_body b = {.data = text, .fd = -1, .len = (uint64_t)len};
	b.crc = crc32c(0, text, b.len);
	uint32_t uid;
	uint64_t modseq;
	fuzz_check(store_append(s, id, flags, 1700000000 + n, &b, &uid, &modseq, NULL) == IMAPQ_OK);
}

/* Writes a journal with every kind of record through the store API and copies its records. */
static void build_template(void)
{
	char dir[TMPDIR_LEN];
	fuzz_tmpdir_make(dir);
	struct store_options so = {
	    .dir = dir, .fsync = JOURNAL_FSYNC_OFF, .segment_bytes = SEGMENT_BYTES};
	struct store_report rep;
	struct store *s = NULL;
	fuzz_check(store_open(&so, &rep, &s) == IMAPQ_OK);
	uint32_t inbox, q, dead, gone;
	if (store_mailbox_find(s, "INBOX", &inbox) != IMAPQ_OK)
		fuzz_check(store_mailbox_create(s, "INBOX", &inbox, NULL) == IMAPQ_OK);
	fuzz_check(store_mailbox_create(s, "q", &q, NULL) == IMAPQ_OK);
	fuzz_check(store_mailbox_create(s, "q/dead", &dead, NULL) == IMAPQ_OK);
	fuzz_check(store_mailbox_create(s, "old", &gone, NULL) == IMAPQ_OK);
	unsigned claimed, delayed;
	uint64_t lsn;
	fuzz_check(store_keyword(s, q, STORE_CLAIM_KEYWORD, true, &claimed, &lsn) == IMAPQ_OK);
	fuzz_check(store_keyword(s, q, STORE_DELAY_KEYWORD, true, &delayed, &lsn) == IMAPQ_OK);
	fuzz_check(store_annotation_set(s, q, STORE_SETTING_LEASE, "60", NULL) == IMAPQ_OK);
	fuzz_check(store_annotation_set(s, q, "/shared/comment", "jobs", NULL) == IMAPQ_OK);
	for (unsigned i = 1; i <= 8; i++)
		add_message(s, i % 3 ? q : inbox, i % 2 ? 0 : STORE_SEEN, i);
	add_message(s, gone, 0, 9);
	/* Compaction first, so the kept segment holds a checkpoint, carried messages and the
	 * records that follow. */
	fuzz_check(store_compact(s, true) == IMAPQ_OK);
	struct uid_range all = {1, 100};
	uint64_t since = 1;
	fuzz_check(store_flags(s, q, &all, 1, STORE_FLAGS_ADD, STORE_KEYWORD(claimed), &since, NULL,
			       NULL, NULL) == IMAPQ_OK);
	struct store_update u = {.op = STORE_FLAGS_ADD,
				 .flags = STORE_KEYWORD(claimed),
				 .set_due = true,
				 .due = 1800000000};
	struct uid_range first = {1, 2};
	fuzz_check(store_update(s, q, &first, 1, &u, NULL, NULL, NULL) == IMAPQ_OK);
	fuzz_check(store_flags(s, q, &first, 1, STORE_FLAGS_ADD, STORE_DELETED, NULL, NULL, NULL,
			       NULL) == IMAPQ_OK);
	fuzz_check(store_expunge(s, q, &first, 1, NULL, NULL, NULL) == IMAPQ_OK);
	struct store_mailbox_status st;
	fuzz_check(store_mailbox_status(s, q, &st) == IMAPQ_OK);
	uint32_t moved;
	fuzz_check(store_move_if_unchanged(s, q, 4, st.highestmodseq, dead, 0, &moved, NULL) ==
		   IMAPQ_OK);
	struct uid_range some = {1, 3};
	fuzz_check(store_copy(s, inbox, &some, 1, q, true, NULL, NULL, NULL) == IMAPQ_OK);
	fuzz_check(store_mailbox_rename(s, "q/dead", "q/graveyard", NULL) == IMAPQ_OK);
	fuzz_check(store_mailbox_delete(s, "old", NULL) == IMAPQ_OK);
	add_message(s, q, 0, 10);
	store_close(&s);

	/* Read the segments back through the journal's own replay. */
	template_recs = calloc(MAX_RECORDS, sizeof *template_recs);
	fuzz_check(template_recs != NULL);
	char jdir[TMPDIR_LEN + 16];
	snprintf(jdir, sizeof jdir, "%s/journal", dir);
	struct journal_options jo = {.dir = jdir, .fsync = JOURNAL_FSYNC_OFF};
	struct journal_report jrep;
	struct journal *j = NULL;
	uint32_t last_seg = 0;
	fuzz_check(journal_open(&jo, collect, &last_seg, &jrep, &j) == IMAPQ_OK);
	journal_close(&j);
	fuzz_check(jrep.damaged == 0 && template_n > 20);
	tmpdir_remove(dir);
}

/* A growable byte string for the segment files being built. */
struct seg_buf {
	uint8_t *p;
	size_t len, cap;
};

static void seg_put(struct seg_buf *b, const void *p, size_t len)
{
	if (b->len + len > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + len)
			cap *= 2;
		b->p = realloc(b->p, cap);
		fuzz_check(b->p != NULL);
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, len);
	b->len += len;
}

/* Starts segment number at start_lsn with a valid header. */
static void seg_begin(struct seg_buf *b, uint32_t number, uint64_t start_lsn)
{
	uint8_t hdr[JOURNAL_SEG_HDR];
	struct journal_seg_header h = {.version = JOURNAL_SEG_VERSION,
				       .number = number,
				       .start_lsn = start_lsn,
				       .created_ns = 1700000000000000000ull};
	journal_seg_header_encode(hdr, &h);
	b->len = 0;
	seg_put(b, hdr, sizeof hdr);
}

/* Appends one record with correct checksums. */
static void seg_record(struct seg_buf *b, const struct rec *r)
{
	uint8_t hdr[JOURNAL_REC_HDR];
	uint32_t crc = r->body ? crc32c(0, r->body, r->body_len) : 0;
	journal_rec_header_encode(hdr, r->type, r->meta, r->meta_len, r->body != NULL, r->body_len,
				  crc);
	seg_put(b, hdr, sizeof hdr);
	seg_put(b, r->meta, r->meta_len);
	if (r->body != NULL)
		seg_put(b, r->body, r->body_len);
}

/* Writes segment number of the work folder's journal. */
static void seg_write(const struct seg_buf *b, uint32_t number)
{
	char path[TMPDIR_LEN + 64], name[JOURNAL_SEG_NAME_LEN + 1];
	journal_seg_name(number, name);
	snprintf(path, sizeof path, "%s/journal/%s", work_dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	fuzz_check(fd >= 0);
	fuzz_check(b->len == 0 || write(fd, b->p, b->len) == (ssize_t)b->len);
	close(fd);
}

/* Applies record-level edits from the input to a copy of the real journal's records. */
static size_t edit_records(struct fuzz_input *in, struct rec *v)
{
	size_t n = template_n;
	for (size_t i = 0; i < n; i++) {
		v[i] = template_recs[i];
		v[i].meta = malloc(v[i].meta_len + 1);
		fuzz_check(v[i].meta != NULL);
		memcpy(v[i].meta, template_recs[i].meta, v[i].meta_len);
		v[i].body = NULL;
		if (template_recs[i].body != NULL) {
			v[i].body = malloc(v[i].body_len + 1);
			fuzz_check(v[i].body != NULL);
			memcpy(v[i].body, template_recs[i].body, v[i].body_len);
		}
	}
	unsigned ops = fuzz_u8(in) % 32;
	for (unsigned k = 0; k < ops && in->left > 0; k++) {
		uint8_t op = fuzz_u8(in);
		size_t i = n ? fuzz_u8(in) % n : 0;
		uint8_t a = fuzz_u8(in), val = fuzz_u8(in);
		struct rec *r = n ? &v[i] : NULL;
		switch (op % 9) {
		case 0: /* a meta byte */
			if (r && r->meta_len)
				r->meta[a % r->meta_len] = val;
			break;
		case 1: /* the type */
			if (r)
				r->type = val % 16;
			break;
		case 2: /* delete */
			if (r) {
				free(r->meta);
				free(r->body);
				memmove(r, r + 1, (n - i - 1) * sizeof *r);
				n--;
			}
			break;
		case 3: /* duplicate */
			if (r && n < MAX_RECORDS) {
				memmove(r + 1, r, (n - i) * sizeof *r);
				n++;
				r[1].meta = malloc(r->meta_len + 1);
				fuzz_check(r[1].meta != NULL);
				memcpy(r[1].meta, r->meta, r->meta_len);
				if (r->body != NULL) {
					r[1].body = malloc(r->body_len + 1);
					fuzz_check(r[1].body != NULL);
					memcpy(r[1].body, r->body, r->body_len);
				}
			}
			break;
		case 4: /* cut the meta short */
			if (r && r->meta_len)
				r->meta_len = a % r->meta_len;
			break;
		case 5: { /* a new record of the input's making */
			if (n >= MAX_RECORDS)
				break;
			size_t len;
			const uint8_t *p = fuzz_bytes(in, a % (MAX_NEW_META + 1), &len);
			size_t at = r ? i : 0;
			memmove(&v[at + 1], &v[at], (n - at) * sizeof *v);
			n++;
			v[at] = (struct rec){.type = val % 16, .meta_len = (uint32_t)len};
			v[at].meta = malloc(len + 1);
			fuzz_check(v[at].meta != NULL);
			memcpy(v[at].meta, p, len);
			break;
		}
		case 6: /* a body byte */
			if (r && r->body && r->body_len)
				r->body[a % r->body_len] = val;
			break;
		case 7: /* swap with the next */
			if (r && i + 1 < n) {
				struct rec t = v[i];
				v[i] = v[i + 1];
				v[i + 1] = t;
			}
			break;
		case 8: /* a segment boundary before it */
			if (r)
				r->seg_break = !r->seg_break;
			break;
		}
	}
	return n;
}

/* Builds the work folder's segment files from the input. */
static void write_journal(struct fuzz_input *in, uint8_t mode)
{
	struct seg_buf b = {0};
	if (mode == 0) {
		seg_begin(&b, 1, 0);
		seg_put(&b, in->p, in->left);
		seg_write(&b, 1);
		free(b.p);
		return;
	}
	struct rec *v = calloc(MAX_RECORDS, sizeof *v);
	fuzz_check(v != NULL);
	size_t n;
	if (mode == 1) {
		n = template_n;
		memcpy(v, template_recs, n * sizeof *v);
	} else {
		n = edit_records(in, v);
	}
	/* Segment files, each a header and its records; edits and cuts apply to the last. */
	uint32_t number = 1;
	uint64_t lsn = 0;
	seg_begin(&b, number, lsn);
	for (size_t i = 0; i < n; i++) {
		if (v[i].seg_break && number < MAX_SEGMENTS && b.len > JOURNAL_SEG_HDR) {
			seg_write(&b, number);
			lsn += b.len;
			seg_begin(&b, ++number, lsn);
		}
		seg_record(&b, &v[i]);
	}
	if (mode == 1 || mode == 3) {
		unsigned edits = fuzz_u8(in) % 16;
		for (unsigned k = 0; k < edits; k++) {
			size_t off = fuzz_u16(in) % b.len;
			b.p[off] ^= fuzz_u8(in);
		}
		if (mode == 3 && fuzz_u8(in) & 1)
			b.len = JOURNAL_SEG_HDR + fuzz_u16(in) % (b.len - JOURNAL_SEG_HDR + 1);
	}
	seg_write(&b, number);
	free(b.p);
	if (mode != 1) {
		for (size_t i = 0; i < n; i++) {
			free(v[i].meta);
			free(v[i].body);
		}
	}
	free(v);
}

/* Opens the store over the work folder; the open must succeed whatever the journal holds. */
static struct store *open_store(struct store_report *rep)
{
	struct store_options so = {
	    .dir = work_dir, .fsync = JOURNAL_FSYNC_OFF, .segment_bytes = SEGMENT_BYTES};
	struct store *s = NULL;
	imapq_err err = store_open(&so, rep, &s);
	if (err != IMAPQ_OK)
		fprintf(stderr, "store_open: %s\n", imapq_err_name(err));
	fuzz_check(err == IMAPQ_OK && s != NULL);
	return s;
}

/* Mailbox ids gathered by store_mailbox_list(), whose callback may not call the store. */
struct id_list {
	uint32_t ids[256];
	size_t n;
};

static void collect_id(void *ctx, uint32_t id, const char *name)
{
	struct id_list *l = ctx;
	(void)name;
	if (l->n < sizeof l->ids / sizeof l->ids[0])
		l->ids[l->n++] = id;
}

/* The store's totals must be the sums of its mailboxes'. */
static void check_totals(struct store *s)
{
	struct id_list l = {.n = 0};
	store_mailbox_list(s, collect_id, &l);
	struct store_stats st;
	store_stats(s, &st);
	if (l.n != st.mailboxes || l.n == sizeof l.ids / sizeof l.ids[0])
		return;
	uint64_t messages = 0, bytes = 0;
	for (size_t i = 0; i < l.n; i++) {
		struct store_mailbox_status ms;
		fuzz_check(store_mailbox_status(s, l.ids[i], &ms) == IMAPQ_OK);
		fuzz_check(ms.deleted <= ms.messages && ms.unseen <= ms.messages);
		messages += ms.messages;
		bytes += ms.bytes;
	}
	fuzz_check(messages == st.messages && bytes == st.live_bytes);
}

/* Checks that the recovered store takes a new message in a new mailbox and keeps it. */
static void check_usable(void)
{
	struct store_report rep, rep2;
	struct store *s = open_store(&rep);
	check_totals(s);
	static const char body[] = "Subject: after recovery\r\n\r\nstill here\r\n";
	struct journal_body b = {.data = body, .fd = -1, .len = sizeof body - 1};
	b.crc = crc32c(0, body, b.len);
	uint32_t id, uid;
	uint64_t modseq;
	/* A well-checksummed record may name the last id or UIDVALIDITY there is: then no new
	 * mailbox can be made (LIMIT), and INBOX, which always exists, takes the message. */
	const char *name = "fuzz/recovered";
	imapq_err err = store_mailbox_create(s, name, &id, NULL);
	if (err == IMAPQ_E_LIMIT)
		name = "INBOX";
	if (err == IMAPQ_E_LIMIT && store_mailbox_find(s, name, &id) == IMAPQ_E_NONEXISTENT) {
		/* Even INBOX could not be made: the store must still open again, unchanged. */
		store_close(&s);
		s = open_store(&rep2);
		check_totals(s);
		store_close(&s);
		return;
	}
	if (err != IMAPQ_OK)
		fuzz_check(store_mailbox_find(s, name, &id) == IMAPQ_OK);
	fuzz_check(store_append(s, id, STORE_SEEN, 1700000000, &b, &uid, &modseq, NULL) ==
		   IMAPQ_OK);
	struct store_mailbox_status before;
	fuzz_check(store_mailbox_status(s, id, &before) == IMAPQ_OK);
	fuzz_check(before.highestmodseq >= modseq && before.uidnext > uid);
	store_close(&s);

	/* A torn tail was cut, a damaged region in the middle stays skipped: nothing new. */
	s = open_store(&rep2);
	fuzz_check(rep2.journal.damaged <= rep.journal.damaged);
	check_totals(s);
	uint32_t again;
	fuzz_check(store_mailbox_find(s, name, &again) == IMAPQ_OK && again == id);
	struct store_message m;
	fuzz_check(store_message_get(s, id, uid, &m) == IMAPQ_OK);
	fuzz_check(m.modseq == modseq && m.flags == STORE_SEEN && m.size == b.len);
	char back[sizeof body];
	size_t got = 0;
	fuzz_check(store_body_read(s, id, uid, 0, back, sizeof back, &got) == IMAPQ_OK);
	fuzz_check(got == b.len && memcmp(back, body, got) == 0);
	struct store_mailbox_status after;
	fuzz_check(store_mailbox_status(s, id, &after) == IMAPQ_OK);
	fuzz_check(after.uidvalidity == before.uidvalidity && after.uidnext == before.uidnext &&
		   after.highestmodseq == before.highestmodseq);
	store_close(&s);
}

static void remove_work_dir(void)
{
	tmpdir_remove(work_dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (template_recs == NULL) {
		log_set_level(getenv("FUZZ_LOG") ? LOG_DEBUG : LOG_ERROR);
		build_template();
		fuzz_tmpdir_make(work_dir);
		atexit(remove_work_dir); /* libFuzzer ends with exit() after -max_total_time */
	}
	struct fuzz_input in = {data, size};
	uint8_t mode = fuzz_u8(&in) % 4;

	char jdir[TMPDIR_LEN + 16];
	snprintf(jdir, sizeof jdir, "%s/journal", work_dir);
	fuzz_check(mkdir(jdir, 0700) == 0);
	write_journal(&in, mode);
	check_usable();
	tmpdir_remove(jdir);
	return 0;
}
