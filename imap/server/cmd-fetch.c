/* FETCH and UID FETCH (RFC 3501 6.4.5) with MODSEQ and CHANGEDSINCE/VANISHED (RFC 7162):
 * message data straight from the store, and structure from the message module. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "imap/mail/mail.h"
#include "imap/protocol/seqset.h"
#include "imap/base/limits.h"
#include "imap/base/log.h"
#include "imap/base/vec.h"
#include "imap/server/server-private.h"

#define FETCH_MAX_ITEMS 64

enum fetch_kind {
	FETCH_FLAGS,
	FETCH_UID,
	FETCH_INTERNALDATE,
	FETCH_SIZE,
	FETCH_MODSEQ,
	FETCH_ENVELOPE,
	FETCH_BODY, /* BODY without a section: BODYSTRUCTURE without extensions */
	FETCH_BODYSTRUCTURE,
	FETCH_SECTION, /* BODY[...], BODY.PEEK[...], RFC822, RFC822.HEADER, RFC822.TEXT */
	/* ANNOTATION (entries attributes), RFC 5257 (cmd-annotate.c) */
	FETCH_ANNOTATION,
};

struct fetch_item {
	enum fetch_kind kind;
	const char *label;   /* response name for RFC822*, else NULL */
	const char *section; /* text between the brackets */
	size_t section_len;
	bool peek;
	bool partial;
	uint64_t origin, count;
};

struct fetch_request {
	struct fetch_item items[FETCH_MAX_ITEMS];
	size_t n;
	bool needs_mail; /* a parsed message is needed */
	bool sets_seen;	 /* a non-PEEK body section marks messages \Seen */
	bool has_flags, has_uid, has_modseq;
	struct annotate_fetch annotation;
};

static bool add_item(struct fetch_request *r, struct fetch_item item)
{
	if (r->n == FETCH_MAX_ITEMS)
		return false;
	r->items[r->n++] = item;
	if (item.kind == FETCH_FLAGS)
		r->has_flags = true;
	if (item.kind == FETCH_UID)
		r->has_uid = true;
	if (item.kind == FETCH_MODSEQ)
		r->has_modseq = true;
	if (item.kind == FETCH_ENVELOPE || item.kind == FETCH_BODY ||
	    item.kind == FETCH_BODYSTRUCTURE ||
	    (item.kind == FETCH_SECTION && item.section_len > 0))
		r->needs_mail = true;
	if (item.kind == FETCH_SECTION && !item.peek)
		r->sets_seen = true;
	return true;
}

/* Reads the digits at *p (at least one, up to end) as an unsigned 32-bit number. */
static bool parse_u32(const char **p, const char *end, uint32_t *v_r)
{
	const char *q = *p;
	uint64_t v = 0;
	while (q < end && *q >= '0' && *q <= '9' && v <= UINT32_MAX)
		v = v * 10 + (uint64_t)(*q++ - '0');
	if (q == *p || v > UINT32_MAX)
		return false;
	*p = q;
	*v_r = (uint32_t)v;
	return true;
}

/* Parses "[section]<origin.count>" following BODY or BODY.PEEK. */
static bool parse_section(const char *s, size_t len, struct fetch_item *item)
{
	if (len < 2 || s[0] != '[')
		return false;
	const char *close = memchr(s, ']', len);
	if (close == NULL)
		return false;
	item->section = s + 1;
	item->section_len = (size_t)(close - s - 1);
	const char *rest = close + 1;
	size_t rlen = len - (size_t)(rest - s);
	if (rlen == 0)
		return true;
	/* "<" number "." nz-number ">", both unsigned 32-bit (RFC 3501 9). */
	uint32_t origin, count;
	const char *p = rest, *end = rest + rlen;
	if (*p++ != '<' || !parse_u32(&p, end, &origin) || p == end || *p++ != '.' || p == end ||
	    *p == '0' || !parse_u32(&p, end, &count) || p + 1 != end || *p != '>')
		return false;
	item->partial = true;
	item->origin = origin;
	item->count = count;
	return true;
}

/* Parses one fetch attribute atom. */
static bool parse_item(struct fetch_request *r, const struct parser_arg *a)
{
	static const struct {
		const char *name;
		enum fetch_kind kind;
	} simple[] = {{"FLAGS", FETCH_FLAGS},
		      {"UID", FETCH_UID},
		      {"INTERNALDATE", FETCH_INTERNALDATE},
		      {"RFC822.SIZE", FETCH_SIZE},
		      {"MODSEQ", FETCH_MODSEQ},
		      {"ENVELOPE", FETCH_ENVELOPE},
		      {"BODY", FETCH_BODY},
		      {"BODYSTRUCTURE", FETCH_BODYSTRUCTURE}};
	if (a->type != PARSER_ARG_ATOM)
		return false;
	for (size_t i = 0; i < sizeof simple / sizeof simple[0]; i++) {
		if (parser_arg_is_atom(a, simple[i].name))
			return add_item(r, (struct fetch_item){.kind = simple[i].kind});
	}
	if (parser_arg_is_atom(a, "RFC822"))
		return add_item(r, (struct fetch_item){
				       .kind = FETCH_SECTION, .label = "RFC822", .section = ""});
	if (parser_arg_is_atom(a, "RFC822.HEADER"))
		return add_item(r, (struct fetch_item){.kind = FETCH_SECTION,
						       .label = "RFC822.HEADER",
						       .section = "HEADER",
						       .section_len = 6,
						       .peek = true});
	if (parser_arg_is_atom(a, "RFC822.TEXT"))
		return add_item(r, (struct fetch_item){.kind = FETCH_SECTION,
						       .label = "RFC822.TEXT",
						       .section = "TEXT",
						       .section_len = 4});
	struct fetch_item item = {.kind = FETCH_SECTION};
	if (a->len > 9 && strncasecmp(a->str, "BODY.PEEK", 9) == 0) {
		item.peek = true;
		if (!parse_section(a->str + 9, a->len - 9, &item))
			return false;
	} else if (a->len > 4 && strncasecmp(a->str, "BODY", 4) == 0) {
		if (!parse_section(a->str + 4, a->len - 4, &item))
			return false;
	} else {
		return false;
	}
	return add_item(r, item);
}

/* Parses the attribute argument: a macro, one attribute or a list of them. */
static bool parse_request(struct fetch_request *r, const struct parser_arg *a)
{
	if (parser_arg_is_atom(a, "ALL") || parser_arg_is_atom(a, "FAST") ||
	    parser_arg_is_atom(a, "FULL")) {
		add_item(r, (struct fetch_item){.kind = FETCH_FLAGS});
		add_item(r, (struct fetch_item){.kind = FETCH_INTERNALDATE});
		add_item(r, (struct fetch_item){.kind = FETCH_SIZE});
		if (!parser_arg_is_atom(a, "FAST"))
			add_item(r, (struct fetch_item){.kind = FETCH_ENVELOPE});
		if (parser_arg_is_atom(a, "FULL"))
			add_item(r, (struct fetch_item){.kind = FETCH_BODY});
		return true;
	}
	if (a->type != PARSER_ARG_LIST)
		return parse_item(r, a);
	if (a->count == 0)
		return false;
	for (size_t i = 0; i < a->count; i++) {
		if (parser_arg_is_atom(&a->list[i], "ANNOTATION") && i + 1 < a->count) {
			if (!annotate_fetch_parse(&a->list[++i], &r->annotation) ||
			    !add_item(r, (struct fetch_item){.kind = FETCH_ANNOTATION}))
				return false;
			continue;
		}
		if (!parse_item(r, &a->list[i]))
			return false;
	}
	return true;
}

struct body_reader {
	struct store *store;
	uint32_t id, uid;
};

static imapq_err read_body(void *ctx, uint64_t offset, void *buf, size_t len, size_t *got_r)
{
	struct body_reader *b = ctx;
	return store_body_read(b->store, b->id, b->uid, offset, buf, len, got_r);
}

/* Writes "dd-Mon-yyyy hh:mm:ss +0000". */
static void write_internaldate(struct session *s, int64_t when)
{
	static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
					     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	time_t t = (time_t)when;
	struct tm tm;
	gmtime_r(&t, &tm);
	session_printf(s, "\"%02d-%s-%04d %02d:%02d:%02d +0000\"", tm.tm_mday, months[tm.tm_mon],
		       tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* Writes one BODY[...] item: its name, then its bytes as a literal (or NIL). */
static imapq_err write_section(struct session *s, const struct fetch_item *it,
			       const struct mail *mail, const struct mail_reader *reader,
			       uint64_t size)
{
	struct buf text = {0};
	struct mail_section sec = {.offset = 0, .size = size};
	imapq_err err = IMAPQ_OK;
	if (it->section_len > 0)
		err = mail_section_resolve(mail, reader, it->section, it->section_len, &text, &sec);
	if (err != IMAPQ_OK) {
		buf_free(&text);
		return err;
	}
	if (it->partial)
		mail_section_partial(&sec, it->origin, it->count);
	if (it->label != NULL)
		session_printf(s, "%s ", it->label);
	else if (it->partial)
		session_printf(s, "BODY[%.*s]<%llu> ", (int)it->section_len, it->section,
			       (unsigned long long)it->origin);
	else
		session_printf(s, "BODY[%.*s] ", (int)it->section_len, it->section);
	if (sec.nil) {
		session_lit(s, "NIL");
	} else {
		session_printf(s, "{%llu}\r\n", (unsigned long long)sec.size);
		err = mail_section_copy(reader, &text, &sec, &s->out);
	}
	buf_free(&text);
	return err;
}

/* Writes the FETCH response of one message. */
static imapq_err fetch_one(struct cmd *c, const struct fetch_request *r, struct store_message *m,
			   bool with_modseq)
{
	struct session *s = c->s;
	struct store *store = s->server->opts.store;
	bool add_flags = false;
	if (r->sets_seen && !s->view.readonly && !(m->flags & STORE_SEEN)) {
		uint64_t lsn;
		struct uid_range one = {m->uid, m->uid};
		imapq_err err = store_flags(store, s->view.id, &one, 1, STORE_FLAGS_ADD, STORE_SEEN,
					    NULL, NULL, NULL, &lsn);
		if (err != IMAPQ_OK)
			return err;
		if (store_message_get(store, s->view.id, m->uid, m) != IMAPQ_OK)
			return IMAPQ_OK;
		add_flags = !r->has_flags;
		/* The implicit change is reported like a STORE's, with UID and MODSEQ (RFC 7162).
		 */
		if (s->enabled & ENABLED_CONDSTORE)
			with_modseq = true;
	}
	struct body_reader br = {store, s->view.id, m->uid};
	struct mail_reader reader = {.read = read_body, .ctx = &br, .size = m->size};
	struct mail *mail = NULL;
	if (r->needs_mail) {
		imapq_err err = mail_parse(&reader, &mail);
		if (err != IMAPQ_OK)
			return err;
	}
	size_t mark = buf_len(&s->out);
	session_printf(s, "* %u FETCH (", view_msn(s, m->uid));
	bool first = true;
	imapq_err err = IMAPQ_OK;
	/* UID first when the client did not ask for it (UID FETCH always reports it). */
	if ((c->uid || (add_flags && (s->enabled & ENABLED_CONDSTORE))) && !r->has_uid) {
		session_printf(s, "UID %u", m->uid);
		first = false;
	}
	for (size_t i = 0; i < r->n + 2 && err == IMAPQ_OK; i++) {
		enum fetch_kind kind;
		const struct fetch_item *it = NULL;
		if (i < r->n) {
			it = &r->items[i];
			kind = it->kind;
		} else if (i == r->n && add_flags) {
			kind = FETCH_FLAGS;
		} else if (i == r->n + 1 && with_modseq && !r->has_modseq) {
			kind = FETCH_MODSEQ;
		} else {
			continue;
		}
		if (!first)
			session_lit(s, " ");
		first = false;
		switch (kind) {
		case FETCH_FLAGS:
			session_lit(s, "FLAGS ");
			view_write_flags(s, m->flags, view_is_recent(s, m->uid));
			break;
		case FETCH_UID:
			session_printf(s, "UID %u", m->uid);
			break;
		case FETCH_INTERNALDATE:
			session_lit(s, "INTERNALDATE ");
			write_internaldate(s, m->internaldate);
			break;
		case FETCH_SIZE:
			session_printf(s, "RFC822.SIZE %u", m->size);
			break;
		case FETCH_MODSEQ:
			session_printf(s, "MODSEQ (%llu)", (unsigned long long)m->modseq);
			break;
		case FETCH_ENVELOPE:
			session_lit(s, "ENVELOPE ");
			err = mail_write_envelope(mail, &s->out);
			break;
		case FETCH_BODY:
		case FETCH_BODYSTRUCTURE:
			session_printf(s, "%s ", kind == FETCH_BODY ? "BODY" : "BODYSTRUCTURE");
			err = mail_write_bodystructure(mail, kind == FETCH_BODYSTRUCTURE, &s->out);
			break;
		case FETCH_SECTION:
			err = write_section(s, it, mail, &reader, m->size);
			break;
		case FETCH_ANNOTATION:
			annotate_fetch_write(s, &r->annotation, m);
			break;
		}
	}
	session_lit(s, ")\r\n");
	mail_free(&mail);
	if (err != IMAPQ_OK) {
		buf_truncate(&s->out, mark); /* never half a response */
		return err;
	}
	/* A change this response showed in full (flags, and the mod-sequence once CONDSTORE is
	 * on), its own implicit \Seen or another client's, is not repeated by the sync after the
	 * command. */
	bool shown = (r->has_flags || add_flags) &&
		     (r->has_modseq || with_modseq || !(s->enabled & ENABLED_CONDSTORE));
	if (shown && m->modseq > s->view.modseq)
		view_note_echo(s, m->uid, m->modseq);
	return IMAPQ_OK;
}

struct fetch_list {
	struct store_message *items;
	size_t n, cap;
	uint64_t changedsince;
	bool failed;
};

static void collect_message(void *ctx, const struct store_message *m)
{
	struct fetch_list *l = ctx;
	if (l->failed || m->modseq <= l->changedsince)
		return;
	if (!vec_push((void **)&l->items, &l->n, &l->cap, sizeof *m, m))
		l->failed = true;
}

/* The removed UIDs that the command's set names. */
struct vanished_filter {
	struct seqset *want; /* the command's UID set */
	size_t cursor;
	struct seqset *out;
	bool failed;
};

static void collect_vanished(void *ctx, uint32_t lo, uint32_t hi)
{
	struct vanished_filter *f = ctx;
	if (!f->failed &&
	    seqset_add_overlap(f->out, seqset_ranges(f->want), seqset_range_count(f->want),
			       &f->cursor, lo, hi) != IMAPQ_OK)
		f->failed = true;
}

/* Parses "(CHANGEDSINCE n [VANISHED])". */
static bool parse_modifiers(struct cmd *c, const struct parser_arg *a, uint64_t *since,
			    bool *vanished)
{
	for (size_t i = 0; i < a->count; i++) {
		if (parser_arg_is_atom(&a->list[i], "CHANGEDSINCE") && i + 1 < a->count) {
			if (*since != 0) {
				cmd_bad(c, "CHANGEDSINCE given twice");
				return false;
			}
			if (!cmd_arg_number(c, &a->list[++i], INT64_MAX, since))
				return false;
			if (*since == 0) {
				cmd_bad(c, "CHANGEDSINCE must be positive");
				return false;
			}
		} else if (parser_arg_is_atom(&a->list[i], "VANISHED")) {
			if (*vanished) {
				cmd_bad(c, "VANISHED given twice");
				return false;
			}
			*vanished = true;
		} else {
			cmd_bad(c, "Unknown FETCH modifier");
			return false;
		}
	}
	if (*vanished && (*since == 0 || !c->uid || !(c->s->enabled & ENABLED_QRESYNC))) {
		cmd_bad(c, "VANISHED needs UID FETCH, CHANGEDSINCE and QRESYNC");
		return false;
	}
	return true;
}

void cmd_fetch(struct cmd *c)
{
	struct session *s = c->s;
	if (!cmd_want_args(c, 2, 3))
		return;
	struct fetch_request req = {0};
	if (!parse_request(&req, &c->args[1])) {
		cmd_bad(c, "Invalid FETCH attributes");
		return;
	}
	uint64_t since = 0;
	bool vanished = false;
	if (req.has_modseq)
		session_enable_condstore(s);
	if (c->count == 3) {
		if (c->args[2].type != PARSER_ARG_LIST) {
			cmd_bad(c, "Invalid FETCH modifiers");
			return;
		}
		if (!parse_modifiers(c, &c->args[2], &since, &vanished))
			return;
		session_enable_condstore(s);
	}
	struct uid_range *ranges;
	size_t n;
	if (!cmd_arg_set(c, &c->args[0], c->uid, &ranges, &n))
		return;
	struct store *store = s->server->opts.store;
	if (vanished) {
		struct vanished_filter f = {0};
		bool ready =
		    seqset_create(&f.want) == IMAPQ_OK && seqset_create(&f.out) == IMAPQ_OK;
		for (size_t i = 0; ready && i < n; i++)
			ready = seqset_add(f.want, ranges[i].lo, ranges[i].hi) == IMAPQ_OK;
		if (ready) {
			store_vanished_since(store, s->view.id, since, collect_vanished, &f);
			if (seqset_size(f.out) > 0) {
				size_t len = seqset_format(f.out, NULL, 0);
				char *text = malloc(len + 1);
				if (text != NULL) {
					seqset_format(f.out, text, len + 1);
					session_printf(s, "* VANISHED (EARLIER) %s\r\n", text);
					free(text);
				}
			}
		}
		seqset_destroy(&f.out);
		seqset_destroy(&f.want);
	}
	/* A page of messages at a time: the store's lock is held for one page, memory holds one,
	 * and a reply cut at the output limit reads no further. */
	struct fetch_list l = {.changedsince = since};
	imapq_err err = IMAPQ_OK;
	bool with_modseq = since > 0, cut = false;
	size_t done = 0;
	for (uint32_t from = n > 0 ? 1 : 0; from != 0 && err == IMAPQ_OK && !cut;) {
		l.n = 0;
		err = store_messages_page(store, s->view.id, ranges, n, from,
					  IMAPQ_SEARCH_SCAN_STEP, collect_message, &l, &from);
		if (err == IMAPQ_OK && l.failed)
			err = IMAPQ_E_NOMEM;
		for (size_t k = 0; k < l.n && err == IMAPQ_OK; k++, done++) {
			cut = buf_len(&s->out) >= IMAPQ_MAX_COMMAND_OUTPUT;
			if (cut)
				break;
			err = fetch_one(c, &req, &l.items[k], with_modseq);
		}
	}
	free(ranges);
	free(l.items);
	if (cut) {
		log_info(SERVER_LOG, "%s %s: FETCH reply cut after %zu messages", s->peer, c->tag,
			 done);
		cmd_no(c, "LIMIT", "FETCH reply too large; fetch the rest in smaller sets");
	} else if (err == IMAPQ_E_INVALID)
		cmd_bad(c, "Invalid section");
	else if (err != IMAPQ_OK)
		cmd_fail(c, err, NULL);
	else
		cmd_ok(c, NULL, "FETCH completed");
}
