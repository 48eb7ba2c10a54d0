/* Mailboxes: name rules, the id and name tables, create/delete/rename/list/status, keywords and
 * annotations. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "imap/base/limits.h"
#include "imap/base/log.h"
#include "imap/store/store-private.h"
#include "imap/store/store_records.h"

/* Length in bytes of the well-formed UTF-8 sequence at p (at most left bytes) and its code point,
 * or 0 when it is malformed (overlong, surrogate, above U+10FFFF or truncated). */
static size_t utf8_decode(const unsigned char *p, size_t left, uint32_t *cp_r)
{
	uint32_t cp;
	size_t n;
	if (p[0] < 0x80) {
		*cp_r = p[0];
		return 1;
	} else if ((p[0] & 0xe0) == 0xc0) {
		cp = p[0] & 0x1f;
		n = 2;
	} else if ((p[0] & 0xf0) == 0xe0) {
		cp = p[0] & 0x0f;
		n = 3;
	} else if ((p[0] & 0xf8) == 0xf0) {
		cp = p[0] & 0x07;
		n = 4;
	} else {
		return 0;
	}
	if (left < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
	if (cp < min_cp[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	*cp_r = cp;
	return n;
}

bool store_mailbox_name_valid(const char *name)
{
	if (!name)
		return false;
	size_t len = strlen(name);
	if (len == 0 || len > IMAPQ_MAX_MAILBOX_NAME)
		return false;
	if (name[0] == '/' || name[len - 1] == '/' || strstr(name, "//"))
		return false;
	const unsigned char *p = (const unsigned char *)name;
	for (size_t i = 0; i < len;) {
		uint32_t cp;
		size_t n = utf8_decode(p + i, len - i, &cp);
		if (n == 0)
			return false;
		/* C0 and C1 controls, DEL, and the LIST wildcards. */
		if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == '%' || cp == '*')
			return false;
		i += n;
	}
	return true;
}

const char *store_name_canonical(const char *name)
{
	return strcasecmp(name, "INBOX") == 0 ? "INBOX" : name;
}

uint32_t store_name_hash(const char *name)
{
	uint32_t h = 2166136261u;
	for (const unsigned char *p = (const unsigned char *)store_name_canonical(name); *p; p++)
		h = (h ^ *p) * 16777619u;
	return h;
}

struct mailbox *store_mailbox_by_name(struct store *s, const char *name)
{
	if (s->nbuckets == 0)
		return NULL;
	const char *canon = store_name_canonical(name);
	uint32_t h = store_name_hash(canon);
	for (struct mailbox *mb = s->by_name[h % s->nbuckets]; mb; mb = mb->next_by_name)
		if (mb->name_hash == h && strcmp(mb->name, canon) == 0)
			return mb;
	return NULL;
}

struct mailbox *store_mailbox_by_id(struct store *s, uint32_t id)
{
	if (s->nbuckets == 0)
		return NULL;
	for (struct mailbox *mb = s->by_id[id % s->nbuckets]; mb; mb = mb->next_by_id)
		if (mb->id == id)
			return mb;
	return NULL;
}

/* Grows both tables so chains stay short; false on NOMEM (the old tables stay usable). */
static bool tables_grow(struct store *s)
{
	size_t n = s->nbuckets ? s->nbuckets * 2 : 64;
	struct mailbox **by_name = calloc(n, sizeof *by_name);
	struct mailbox **by_id = calloc(n, sizeof *by_id);
	if (!by_name || !by_id) {
		free(by_name);
		free(by_id);
		return false;
	}
	for (size_t i = 0; i < s->nbuckets; i++) {
		for (struct mailbox *mb = s->by_id[i], *next; mb; mb = next) {
			next = mb->next_by_id;
			mb->next_by_id = by_id[mb->id % n];
			by_id[mb->id % n] = mb;
			mb->next_by_name = by_name[mb->name_hash % n];
			by_name[mb->name_hash % n] = mb;
		}
	}
	free(s->by_name);
	free(s->by_id);
	s->by_name = by_name;
	s->by_id = by_id;
	s->nbuckets = n;
	return true;
}

/* Takes mb out of its name chain. */
static void unlink_name(struct store *s, struct mailbox *mb)
{
	struct mailbox **pp = &s->by_name[mb->name_hash % s->nbuckets];
	while (*pp != mb)
		pp = &(*pp)->next_by_name;
	*pp = mb->next_by_name;
}

/* Frees a mailbox that is in no table. */
static void mailbox_free(struct mailbox *mb)
{
	for (uint32_t i = 0; i < mb->nkeywords; i++)
		free(mb->keywords[i]);
	for (uint32_t i = 0; i < mb->nannotations; i++) {
		free(mb->annotations[i].key);
		free(mb->annotations[i].value);
	}
	free(mb->keywords);
	free(mb->annotations);
	msgtable_destroy(&mb->msgs);
	expunge_log_destroy(&mb->expunged);
	store_uidmap_free(&mb->replay);
	free(mb->name);
	free(mb);
}

struct mailbox *store_mailbox_insert(struct store *s, uint32_t id, uint32_t uidvalidity,
				     const char *name)
{
	name = store_name_canonical(name);
	if (store_mailbox_by_id(s, id) || store_mailbox_by_name(s, name))
		return NULL;
	if (s->nmailboxes >= s->nbuckets && !tables_grow(s))
		return NULL;
	struct mailbox *mb = calloc(1, sizeof *mb);
	if (!mb)
		return NULL;
	mb->id = id;
	mb->uidvalidity = uidvalidity;
	mb->uidnext = 1;
	mb->highestmodseq = 1;
	mb->name = strdup(name);
	mb->msgs = msgtable_create();
	mb->expunged = expunge_log_create();
	if (!mb->name || !mb->msgs || !mb->expunged) {
		mailbox_free(mb);
		return NULL;
	}
	mb->name_hash = store_name_hash(name);
	mb->next_by_id = s->by_id[id % s->nbuckets];
	s->by_id[id % s->nbuckets] = mb;
	mb->next_by_name = s->by_name[mb->name_hash % s->nbuckets];
	s->by_name[mb->name_hash % s->nbuckets] = mb;
	s->nmailboxes++;
	if (id >= s->next_id)
		s->next_id = id + 1;
	if (uidvalidity > s->last_uidvalidity)
		s->last_uidvalidity = uidvalidity;
	return mb;
}

void store_mailbox_remove(struct store *s, struct mailbox *mb)
{
	if (!mb->replay) {
		struct msgtable_cursor c;
		for (const struct msg *m = msgtable_seek(mb->msgs, 0, &c); m;
		     m = msgtable_next(mb->msgs, &c)) {
			store_segment_account(s, m->loc, m->size, false);
			if (s->journal)
				journal_reserve_add(s->journal, -STORE_ACK_RESERVE);
		}
		s->messages -= msgtable_count(mb->msgs);
		s->live_bytes -= mb->bytes;
	}
	unlink_name(s, mb);
	struct mailbox **pp = &s->by_id[mb->id % s->nbuckets];
	while (*pp != mb)
		pp = &(*pp)->next_by_id;
	*pp = mb->next_by_id;
	s->nmailboxes--;
	mailbox_free(mb);
}

imapq_err store_mailbox_set_name(struct store *s, struct mailbox *mb, const char *name)
{
	char *copy = strdup(store_name_canonical(name));
	if (!copy)
		return IMAPQ_E_NOMEM;
	unlink_name(s, mb);
	free(mb->name);
	mb->name = copy;
	mb->name_hash = store_name_hash(copy);
	mb->next_by_name = s->by_name[mb->name_hash % s->nbuckets];
	s->by_name[mb->name_hash % s->nbuckets] = mb;
	return IMAPQ_OK;
}

void store_mailboxes_each(struct store *s, void (*fn)(struct store *, struct mailbox *, void *),
			  void *ctx)
{
	for (size_t i = 0; i < s->nbuckets; i++) {
		for (struct mailbox *mb = s->by_id[i], *next; mb; mb = next) {
			next = mb->next_by_id;
			fn(s, mb, ctx);
		}
	}
}

void store_mailboxes_free(struct store *s)
{
	for (size_t i = 0; i < s->nbuckets; i++) {
		for (struct mailbox *mb = s->by_id[i], *next; mb; mb = next) {
			next = mb->next_by_id;
			mailbox_free(mb);
		}
	}
	free(s->by_id);
	free(s->by_name);
	s->by_id = s->by_name = NULL;
	s->nbuckets = 0;
	s->nmailboxes = 0;
}

uint64_t store_mailbox_flag_mask(const struct mailbox *mb)
{
	unsigned bits = STORE_KEYWORD_BASE + mb->nkeywords;
	return bits >= 64 ? UINT64_MAX : (1ull << bits) - 1;
}

/* The next UIDVALIDITY: the clock, but always above every value handed out before. */
static uint32_t next_uidvalidity(struct store *s)
{
	time_t now = time(NULL);
	uint32_t v = now > 0 && (uint64_t)now < UINT32_MAX ? (uint32_t)now : 1;
	if (v <= s->last_uidvalidity)
		v = s->last_uidvalidity + 1;
	return v;
}

imapq_err store_mailbox_create(struct store *s, const char *name, uint32_t *id_r, uint64_t *lsn_r)
{
	if (!store_mailbox_name_valid(name))
		return IMAPQ_E_INVALID;
	name = store_name_canonical(name);
	uint64_t lsn = 0;
	imapq_err err = IMAPQ_OK;
	pthread_mutex_lock(&s->lock);
	if (store_mailbox_by_name(s, name)) {
		err = IMAPQ_E_EXISTS;
	} else if (s->nmailboxes >= IMAPQ_MAX_MAILBOXES || s->next_id == UINT32_MAX ||
		   s->last_uidvalidity == UINT32_MAX) {
		err = IMAPQ_E_LIMIT;
	} else {
		uint32_t id = s->next_id, uidvalidity = next_uidvalidity(s);
		struct store_buf b = {0};
		size_t len = strlen(name);
		store_buf_u32(&b, id);
		store_buf_u32(&b, uidvalidity);
		store_buf_u16(&b, (uint16_t)len);
		store_buf_bytes(&b, name, len);
		err = store_buf_failed(&b) ? IMAPQ_E_NOMEM
					   : store_log(s, JOURNAL_SHRINK, STORE_REC_MAILBOX_CREATE,
						       b.data, b.len, NULL, &lsn, NULL);
		store_buf_free(&b);
		if (err == IMAPQ_OK && !store_mailbox_insert(s, id, uidvalidity, name)) {
			log_error(STORE_LOG, "mailbox %u logged but not created: out of memory",
				  id);
			err = IMAPQ_E_NOMEM;
		}
		if (err == IMAPQ_OK && id_r)
			*id_r = id;
		store_finish_write(s, err == IMAPQ_OK ? id : 0);
	}
	pthread_mutex_unlock(&s->lock);
	return store_done(s, err, lsn, lsn_r);
}

imapq_err store_mailbox_delete(struct store *s, const char *name, uint64_t *lsn_r)
{
	if (!name)
		return IMAPQ_E_INVALID;
	name = store_name_canonical(name);
	if (strcmp(name, "INBOX") == 0)
		return IMAPQ_E_INVALID;
	uint64_t lsn = 0;
	imapq_err err;
	pthread_mutex_lock(&s->lock);
	struct mailbox *mb = store_mailbox_by_name(s, name);
	if (!mb) {
		err = IMAPQ_E_NONEXISTENT;
	} else {
		uint8_t meta[4] = {(uint8_t)mb->id, (uint8_t)(mb->id >> 8), (uint8_t)(mb->id >> 16),
				   (uint8_t)(mb->id >> 24)};
		err = store_log(s, JOURNAL_SHRINK, STORE_REC_MAILBOX_DELETE, meta, sizeof meta,
				NULL, &lsn, NULL);
		uint32_t deleted = err == IMAPQ_OK ? mb->id : 0;
		if (err == IMAPQ_OK)
			store_mailbox_remove(s, mb);
		store_finish_write(s, deleted);
	}
	pthread_mutex_unlock(&s->lock);
	return store_done(s, err, lsn, lsn_r);
}

/* A mailbox to rename, with its new name. */
struct rename_item {
	struct mailbox *mb;
	char *name;
};

/* Collects mb into the rename set when it is from or one of its children. */
struct rename_ctx {
	const char *from, *to;
	size_t from_len;
	struct rename_item *items;
	size_t n, cap;
	imapq_err err;
};

static void rename_collect(struct store *s, struct mailbox *mb, void *arg)
{
	struct rename_ctx *rc = arg;
	if (rc->err != IMAPQ_OK || strncmp(mb->name, rc->from, rc->from_len) != 0)
		return;
	const char *suffix = mb->name + rc->from_len;
	if (*suffix != '\0' && *suffix != '/')
		return;
	if (rc->n == rc->cap) {
		size_t cap = rc->cap ? rc->cap * 2 : 8;
		struct rename_item *items = realloc(rc->items, cap * sizeof *items);
		if (!items) {
			rc->err = IMAPQ_E_NOMEM;
			return;
		}
		rc->items = items;
		rc->cap = cap;
	}
	size_t len = strlen(rc->to) + strlen(suffix);
	char *name = malloc(len + 1);
	if (!name) {
		rc->err = IMAPQ_E_NOMEM;
		return;
	}
	strcpy(name, rc->to);
	strcat(name, suffix);
	if (!store_mailbox_name_valid(name))
		rc->err = IMAPQ_E_INVALID;
	else if (store_mailbox_by_name(s, name))
		rc->err = IMAPQ_E_EXISTS;
	rc->items[rc->n].mb = mb;
	rc->items[rc->n++].name = name;
}

/* Logs and applies the rename of the collected set as one record, so it is all or nothing. */
static imapq_err rename_apply(struct store *s, struct rename_ctx *rc, uint64_t *lsn_r)
{
	struct store_buf b = {0};
	store_buf_u32(&b, (uint32_t)rc->n);
	for (size_t i = 0; i < rc->n; i++) {
		size_t len = strlen(rc->items[i].name);
		store_buf_u32(&b, rc->items[i].mb->id);
		store_buf_u16(&b, (uint16_t)len);
		store_buf_bytes(&b, rc->items[i].name, len);
	}
	imapq_err err = store_buf_failed(&b)
			    ? IMAPQ_E_NOMEM
			    : store_log(s, JOURNAL_SHRINK, STORE_REC_MAILBOX_RENAME, b.data, b.len,
					NULL, lsn_r, NULL);
	store_buf_free(&b);
	for (size_t i = 0; err == IMAPQ_OK && i < rc->n; i++)
		err = store_mailbox_set_name(s, rc->items[i].mb, rc->items[i].name);
	return err;
}

imapq_err store_mailbox_rename(struct store *s, const char *from, const char *to, uint64_t *lsn_r)
{
	if (!from || !store_mailbox_name_valid(to))
		return IMAPQ_E_INVALID;
	from = store_name_canonical(from);
	to = store_name_canonical(to);
	size_t from_len = strlen(from);
	if (strcmp(from, "INBOX") == 0)
		return IMAPQ_E_INVALID;
	if (strncmp(to, from, from_len) == 0 && (to[from_len] == '/' || to[from_len] == '\0'))
		return strcmp(to, from) == 0 ? IMAPQ_E_EXISTS : IMAPQ_E_INVALID;
	uint64_t lsn = 0;
	struct rename_ctx rc = {.from = from, .to = to, .from_len = from_len, .err = IMAPQ_OK};
	pthread_mutex_lock(&s->lock);
	if (!store_mailbox_by_name(s, from)) {
		rc.err = IMAPQ_E_NONEXISTENT;
	} else if (store_mailbox_by_name(s, to)) {
		rc.err = IMAPQ_E_EXISTS;
	} else {
		store_mailboxes_each(s, rename_collect, &rc);
		if (rc.err == IMAPQ_OK)
			rc.err = rename_apply(s, &rc, &lsn);
		store_finish_write(s, 0);
	}
	pthread_mutex_unlock(&s->lock);
	for (size_t i = 0; i < rc.n; i++)
		free(rc.items[i].name);
	free(rc.items);
	return store_done(s, rc.err, lsn, lsn_r);
}

imapq_err store_mailbox_find(struct store *s, const char *name, uint32_t *id_r)
{
	if (!name)
		return IMAPQ_E_INVALID;
	pthread_mutex_lock(&s->lock);
	struct mailbox *mb = store_mailbox_by_name(s, name);
	if (mb && id_r)
		*id_r = mb->id;
	pthread_mutex_unlock(&s->lock);
	return mb ? IMAPQ_OK : IMAPQ_E_NONEXISTENT;
}

/* Copies a string into a caller's buffer; IMAPQ_E_TOOBIG when it does not fit. */
static imapq_err copy_out(const char *src, char *buf, size_t cap)
{
	size_t len = strlen(src);
	if (len >= cap)
		return IMAPQ_E_TOOBIG;
	memcpy(buf, src, len + 1);
	return IMAPQ_OK;
}

imapq_err store_mailbox_name(struct store *s, uint32_t id, char *buf, size_t cap)
{
	pthread_mutex_lock(&s->lock);
	struct mailbox *mb = store_mailbox_by_id(s, id);
	imapq_err err = mb ? copy_out(mb->name, buf, cap) : IMAPQ_E_NONEXISTENT;
	pthread_mutex_unlock(&s->lock);
	return err;
}

/* Collects every mailbox into an array for sorting. */
struct list_ctx {
	struct mailbox **v;
	size_t n;
};

static void list_collect(struct store *s, struct mailbox *mb, void *arg)
{
	struct list_ctx *lc = arg;
	lc->v[lc->n++] = mb;
}

static int list_cmp(const void *a, const void *b)
{
	const struct mailbox *x = *(const struct mailbox *const *)a;
	const struct mailbox *y = *(const struct mailbox *const *)b;
	return strcmp(x->name, y->name);
}

void store_mailbox_list(struct store *s, store_mailbox_fn *fn, void *ctx)
{
	pthread_mutex_lock(&s->lock);
	struct list_ctx lc = {.v = malloc((s->nmailboxes + 1) * sizeof *lc.v)};
	if (lc.v) {
		store_mailboxes_each(s, list_collect, &lc);
		qsort(lc.v, lc.n, sizeof *lc.v, list_cmp);
		for (size_t i = 0; i < lc.n; i++)
			fn(ctx, lc.v[i]->id, lc.v[i]->name);
		free(lc.v);
	} else {
		log_error(STORE_LOG, "mailbox list: out of memory");
	}
	pthread_mutex_unlock(&s->lock);
}

imapq_err store_mailbox_status(struct store *s, uint32_t id, struct store_mailbox_status *st_r)
{
	pthread_mutex_lock(&s->lock);
	struct mailbox *mb = store_mailbox_by_id(s, id);
	if (mb) {
		*st_r = (struct store_mailbox_status){
		    .id = mb->id,
		    .lease = store_setting_get(mb, STORE_SET_LEASE),
		    .max_attempts = store_setting_get(mb, STORE_SET_MAX_ATTEMPTS),
		    .retention = store_setting_get(mb, STORE_SET_RETENTION),
		    .max_messages = store_mailbox_limit(s, mb),
		    .uidvalidity = mb->uidvalidity,
		    .uidnext = mb->uidnext,
		    .messages = msgtable_count(mb->msgs),
		    .unseen = mb->unseen,
		    .deleted = mb->deleted,
		    .highestmodseq = mb->highestmodseq,
		    .bytes = mb->bytes,
		    .keywords = mb->nkeywords,
		};
	}
	pthread_mutex_unlock(&s->lock);
	return mb ? IMAPQ_OK : IMAPQ_E_NONEXISTENT;
}

/* --- Keywords --- */

/* True for an IMAP flag-keyword atom: printable ASCII without atom-specials, not a "\" flag. */
static bool keyword_valid(const char *name, size_t len)
{
	if (len == 0 || len > IMAPQ_MAX_KEYWORD)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c <= 0x20 || c >= 0x7f || strchr("(){%*\"\\]", c))
			return false;
	}
	return true;
}

int store_keyword_lookup(const struct mailbox *mb, const char *name, size_t len)
{
	for (uint32_t i = 0; i < mb->nkeywords; i++)
		if (strncasecmp(mb->keywords[i], name, len) == 0 && mb->keywords[i][len] == '\0')
			return (int)i;
	return -1;
}

imapq_err store_keyword_insert(struct mailbox *mb, const char *name, size_t len)
{
	if (mb->nkeywords >= IMAPQ_MAX_KEYWORDS)
		return IMAPQ_E_LIMIT;
	char **v = realloc(mb->keywords, (mb->nkeywords + 1) * sizeof *v);
	if (!v)
		return IMAPQ_E_NOMEM;
	mb->keywords = v;
	char *copy = strndup(name, len);
	if (!copy)
		return IMAPQ_E_NOMEM;
	v[mb->nkeywords++] = copy;
	return IMAPQ_OK;
}

imapq_err store_keyword(struct store *s, uint32_t id, const char *name, bool create,
			unsigned *index_r, uint64_t *lsn_r)
{
	size_t len = name ? strlen(name) : 0;
	if (!keyword_valid(name, len))
		return IMAPQ_E_INVALID;
	uint64_t lsn = 0;
	imapq_err err = IMAPQ_OK;
	pthread_mutex_lock(&s->lock);
	struct mailbox *mb = store_mailbox_by_id(s, id);
	int k = mb ? store_keyword_lookup(mb, name, len) : -1;
	if (!mb) {
		err = IMAPQ_E_NONEXISTENT;
	} else if (k < 0 && !create) {
		err = IMAPQ_E_NOTFOUND;
	} else if (k < 0 && mb->nkeywords >= IMAPQ_MAX_KEYWORDS) {
		err = IMAPQ_E_LIMIT;
	} else if (k < 0) {
		struct store_buf b = {0};
		store_buf_u32(&b, id);
		store_buf_u8(&b, (uint8_t)mb->nkeywords);
		store_buf_u8(&b, (uint8_t)len);
		store_buf_bytes(&b, name, len);
		err = store_buf_failed(&b) ? IMAPQ_E_NOMEM
					   : store_log(s, JOURNAL_SHRINK, STORE_REC_KEYWORD, b.data,
						       b.len, NULL, &lsn, NULL);
		store_buf_free(&b);
		k = (int)mb->nkeywords;
		if (err == IMAPQ_OK)
			err = store_keyword_insert(mb, name, len);
		store_finish_write(s, id);
	}
	if (err == IMAPQ_OK && index_r)
		*index_r = (unsigned)k;
	pthread_mutex_unlock(&s->lock);
	return store_done(s, err, lsn, lsn_r);
}

imapq_err store_keyword_name(struct store *s, uint32_t id, unsigned k, char *buf, size_t cap)
{
	pthread_mutex_lock(&s->lock);
	struct mailbox *mb = store_mailbox_by_id(s, id);
	imapq_err err = !mb		     ? IMAPQ_E_NONEXISTENT
			: k >= mb->nkeywords ? IMAPQ_E_NOTFOUND
					     : copy_out(mb->keywords[k], buf, cap);
	pthread_mutex_unlock(&s->lock);
	return err;
}

/* --- Annotations --- */

/* True for an entry name: printable ASCII, no LIST wildcards, within the length limit. */
static bool annotation_key_valid(const char *key, size_t len)
{
	if (len == 0 || len > IMAPQ_MAX_ANNOTATION_KEY)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)key[i];
		if (c <= 0x20 || c >= 0x7f || c == '*' || c == '%')
			return false;
	}
	return true;
}

/* The index of key in mb's annotations (ASCII case-insensitive, as RFC 5464 entries), or -1. */
static int annotation_lookup(const struct mailbox *mb, const char *key, size_t klen)
{
	for (uint32_t i = 0; i < mb->nannotations; i++)
		if (strncasecmp(mb->annotations[i].key, key, klen) == 0 &&
		    mb->annotations[i].key[klen] == '\0')
			return (int)i;
	return -1;
}

imapq_err store_annotation_put(struct mailbox *mb, const char *key, size_t klen, const char *value,
			       size_t vlen)
{
	int i = annotation_lookup(mb, key, klen);
	if (!value) {
		/* Noted first: key may be the stored key that is freed below. */
		store_setting_note(mb, key, klen, NULL, 0);
		if (i >= 0) {
			free(mb->annotations[i].key);
			free(mb->annotations[i].value);
			mb->annotations[i] = mb->annotations[--mb->nannotations];
		}
		return IMAPQ_OK;
	}
	char *v = strndup(value, vlen);
	if (!v)
		return IMAPQ_E_NOMEM;
	if (i >= 0) {
		free(mb->annotations[i].value);
		mb->annotations[i].value = v;
		store_setting_note(mb, key, klen, value, vlen);
		return IMAPQ_OK;
	}
	struct store_annotation *a =
	    mb->nannotations < IMAPQ_MAX_ANNOTATIONS
		? realloc(mb->annotations, (mb->nannotations + 1) * sizeof *a)
		: NULL;
	char *k = a ? strndup(key, klen) : NULL;
	if (a)
		mb->annotations = a;
	if (!k) {
		free(v);
		return mb->nannotations >= IMAPQ_MAX_ANNOTATIONS ? IMAPQ_E_LIMIT : IMAPQ_E_NOMEM;
	}
	a[mb->nannotations++] = (struct store_annotation){.key = k, .value = v};
	store_setting_note(mb, key, klen, value, vlen);
	return IMAPQ_OK;
}

imapq_err store_annotation_set(struct store *s, uint32_t id, const char *key, const char *value,
			       uint64_t *lsn_r)
{
	size_t klen = key ? strlen(key) : 0;
	size_t vlen = value ? strlen(value) : 0;
	uint32_t number;
	if (!annotation_key_valid(key, klen))
		return IMAPQ_E_INVALID;
	if (vlen > IMAPQ_MAX_ANNOTATION_VALUE)
		return IMAPQ_E_TOOBIG;
	int setting = store_setting_of_key(key, klen);
	if (value && setting >= 0 && !store_setting_parse(setting, value, vlen, &number))
		return IMAPQ_E_INVALID;
	uint64_t lsn = 0;
	imapq_err err = IMAPQ_OK;
	pthread_mutex_lock(&s->lock);
	struct mailbox *mb = store_mailbox_by_id(s, id);
	int i = mb ? annotation_lookup(mb, key, klen) : -1;
	if (!mb) {
		err = IMAPQ_E_NONEXISTENT;
	} else if (!value && i < 0) {
		lsn = journal_append_lsn(s->journal);
	} else if (value && i < 0 && mb->nannotations >= IMAPQ_MAX_ANNOTATIONS) {
		err = IMAPQ_E_LIMIT;
	} else {
		struct store_buf b = {0};
		store_buf_u32(&b, id);
		store_buf_u16(&b, (uint16_t)klen);
		store_buf_bytes(&b, key, klen);
		store_buf_u8(&b, value != NULL);
		if (value) {
			store_buf_u32(&b, (uint32_t)vlen);
			store_buf_bytes(&b, value, vlen);
		}
		err = store_buf_failed(&b) ? IMAPQ_E_NOMEM
					   : store_log(s, JOURNAL_SHRINK, STORE_REC_ANNOTATION,
						       b.data, b.len, NULL, &lsn, NULL);
		store_buf_free(&b);
		if (err == IMAPQ_OK)
			err = store_annotation_put(mb, key, klen, value, vlen);
		store_finish_write(s, id);
	}
	pthread_mutex_unlock(&s->lock);
	return store_done(s, err, lsn, lsn_r);
}

imapq_err store_annotation_get(struct store *s, uint32_t id, const char *key, char *buf, size_t cap)
{
	if (!key)
		return IMAPQ_E_INVALID;
	pthread_mutex_lock(&s->lock);
	struct mailbox *mb = store_mailbox_by_id(s, id);
	int i = mb ? annotation_lookup(mb, key, strlen(key)) : -1;
	imapq_err err = !mb	? IMAPQ_E_NONEXISTENT
			: i < 0 ? IMAPQ_E_NOTFOUND
				: copy_out(mb->annotations[i].value, buf, cap);
	pthread_mutex_unlock(&s->lock);
	return err;
}

imapq_err store_annotation_list(struct store *s, uint32_t id, store_annotation_fn *fn, void *ctx)
{
	pthread_mutex_lock(&s->lock);
	struct mailbox *mb = store_mailbox_by_id(s, id);
	if (mb)
		for (uint32_t i = 0; i < mb->nannotations; i++)
			fn(ctx, mb->annotations[i].key, mb->annotations[i].value);
	pthread_mutex_unlock(&s->lock);
	return mb ? IMAPQ_OK : IMAPQ_E_NONEXISTENT;
}
