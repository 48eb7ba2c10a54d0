/* Per-message annotations (RFC 5257, ANNOTATE-EXPERIMENT-1) for queue workers. The entries are
 * virtual, backed by the engine's queue fields rather than stored text:
 *   /vendor/imapq/attempts  read: how many times the job was claimed
 *   /vendor/imapq/due       read: lease end while claimed, not-before while delayed (seconds
 *                           since the epoch), NIL when none
 *   /vendor/imapq/lease     store: renew a claimed job's lease to now + the value in seconds
 *   /vendor/imapq/delay     store: release a claimed job, claimable again after the value in
 *                           seconds (-$Claimed +$Delayed; 0 releases it at once)
 * Only shared values exist. A store needs UNCHANGEDSINCE with the claim's receipt and answers
 * like a conditional flag store: an untagged FETCH with the new MODSEQ (the new receipt) for each
 * job it changed, [MODIFIED] for each whose receipt is stale. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "imap/base/limits.h"
#include "imap/base/vec.h"
#include "imap/protocol/seqset.h"
#include "imap/server/server-private.h"

#define ENTRY_ATTEMPTS "/vendor/imapq/attempts"
#define ENTRY_DUE      "/vendor/imapq/due"
#define ENTRY_LEASE    "/vendor/imapq/lease"
#define ENTRY_DELAY    "/vendor/imapq/delay"

/* Longest name a pattern is matched against (entry or attribute). */
#define MATCH_MAX 32

/* The readable entries, in the order FETCH lists them. */
static const char *const readable[] = {ENTRY_ATTEMPTS, ENTRY_DUE};
#define NREADABLE (sizeof readable / sizeof readable[0])

/* The attributes, in the order FETCH lists them; bit k of annotate_fetch.attribs is attribs[k]. */
static const char *const attribs[] = {"value.priv", "value.shared", "size.priv", "size.shared"};
#define NATTRIBS (sizeof attribs / sizeof attribs[0])

/* True when name matches pattern, ASCII case-insensitively: "*" matches any run of characters,
 * "%" any run without "/" (RFC 5257 3.3). Dynamic programming over the name's prefixes, so no
 * pattern costs more than its length times MATCH_MAX steps. */
static bool pattern_match(const char *pattern, size_t plen, const char *name)
{
	size_t n = strlen(name);
	if (n > MATCH_MAX)
		return false;
	bool cur[MATCH_MAX + 1], next[MATCH_MAX + 1];
	memset(cur, 0, sizeof cur);
	cur[0] = true;
	for (size_t p = 0; p < plen; p++) {
		char pc = pattern[p];
		for (size_t j = 0; j <= n; j++) {
			if (pc == '*')
				next[j] = cur[j] || (j > 0 && next[j - 1]);
			else if (pc == '%')
				next[j] = cur[j] || (j > 0 && next[j - 1] && name[j - 1] != '/');
			else
				next[j] = j > 0 && cur[j - 1] &&
					  tolower((unsigned char)pc) ==
					      tolower((unsigned char)name[j - 1]);
		}
		memcpy(cur, next, sizeof cur);
	}
	return cur[n];
}

/* True when a pattern holds a wildcard. */
static bool has_wildcard(const char *str, size_t len)
{
	return memchr(str, '*', len) != NULL || memchr(str, '%', len) != NULL;
}

/* The attribute bits one attribute pattern selects; "value" and "size" mean both kinds. */
static unsigned attrib_bits(const char *str, size_t len)
{
	if (len == 5 && strncasecmp(str, "value", 5) == 0)
		return 3u;
	if (len == 4 && strncasecmp(str, "size", 4) == 0)
		return 12u;
	unsigned bits = 0;
	for (size_t k = 0; k < NATTRIBS; k++) {
		if (pattern_match(str, len, attribs[k]))
			bits |= 1u << k;
	}
	return bits;
}

/* Gives the members of an argument that is one string or a non-empty list of strings. */
static bool string_list(const struct parser_arg *a, const struct parser_arg **list_r, size_t *n_r)
{
	*list_r = a;
	*n_r = 1;
	if (a->type == PARSER_ARG_LIST) {
		*list_r = a->list;
		*n_r = a->count;
	}
	if (*n_r == 0)
		return false;
	for (size_t i = 0; i < *n_r; i++) {
		const char *str;
		size_t len;
		if (!parser_arg_astring(&(*list_r)[i], &str, &len) || len == 0)
			return false;
	}
	return true;
}

bool annotate_fetch_parse(const struct parser_arg *a, struct annotate_fetch *r)
{
	if (r->entries != NULL || a->type != PARSER_ARG_LIST || a->count != 2)
		return false;
	const struct parser_arg *atts;
	size_t natts;
	if (!string_list(&a->list[0], &r->entries, &r->nentries) ||
	    !string_list(&a->list[1], &atts, &natts))
		return false;
	for (size_t i = 0; i < natts; i++) {
		const char *str;
		size_t len;
		parser_arg_astring(&atts[i], &str, &len);
		unsigned bits = attrib_bits(str, len);
		if (bits == 0 && !has_wildcard(str, len))
			return false;
		r->attribs |= bits;
	}
	return r->attribs != 0;
}

/* The shared value of a readable entry for m, written into buf; false for NIL. */
static bool entry_value(const char *entry, const struct store_message *m, char *buf, size_t cap)
{
	if (strcasecmp(entry, ENTRY_ATTEMPTS) == 0) {
		snprintf(buf, cap, "%u", m->attempts);
		return true;
	}
	if (strcasecmp(entry, ENTRY_DUE) == 0 && m->due != 0) {
		snprintf(buf, cap, "%u", m->due);
		return true;
	}
	return false;
}

/* Writes one "entry (attribute value ...)" group. */
static void write_entry(struct session *s, const char *entry, size_t len, unsigned bits,
			const struct store_message *m)
{
	char value[16] = "";
	char name[MATCH_MAX + 1];
	bool known = len <= MATCH_MAX;
	if (known) {
		memcpy(name, entry, len);
		name[len] = '\0';
	}
	bool shared = known && entry_value(name, m, value, sizeof value);
	cmd_write_string(s, entry, len);
	session_lit(s, " (");
	bool first = true;
	for (size_t k = 0; k < NATTRIBS; k++) {
		if (!(bits & (1u << k)))
			continue;
		session_printf(s, "%s%s ", first ? "" : " ", attribs[k]);
		first = false;
		if (k == 0)
			session_lit(s, "NIL");
		else if (k == 1 && shared)
			session_printf(s, "\"%s\"", value);
		else if (k == 1)
			session_lit(s, "NIL");
		else if (k == 2)
			session_lit(s, "\"0\"");
		else
			session_printf(s, "\"%zu\"", shared ? strlen(value) : (size_t)0);
	}
	session_lit(s, ")");
}

void annotate_fetch_write(struct session *s, const struct annotate_fetch *r,
			  const struct store_message *m)
{
	bool listed[NREADABLE] = {false};
	bool first = true;
	session_lit(s, "ANNOTATION (");
	/* Wildcards expand to the readable entries they match; a plain name is answered as asked,
	 * with NIL values when it is not one of them (RFC 5257 4.4). */
	for (size_t i = 0; i < r->nentries; i++) {
		const char *str;
		size_t len;
		parser_arg_astring(&r->entries[i], &str, &len);
		bool wild = has_wildcard(str, len);
		for (size_t k = 0; k < NREADABLE; k++) {
			bool hit = wild ? pattern_match(str, len, readable[k])
					: strlen(readable[k]) == len &&
					      strncasecmp(str, readable[k], len) == 0;
			if (!hit || listed[k])
				continue;
			listed[k] = true;
			if (!first)
				session_lit(s, " ");
			first = false;
			write_entry(s, readable[k], strlen(readable[k]), r->attribs, m);
		}
		bool ours = false;
		for (size_t k = 0; k < NREADABLE; k++)
			ours |=
			    strlen(readable[k]) == len && strncasecmp(str, readable[k], len) == 0;
		if (wild || ours)
			continue;
		if (!first)
			session_lit(s, " ");
		first = false;
		write_entry(s, str, len, r->attribs, m);
	}
	session_lit(s, ")");
}

/* What a STORE ANNOTATION asks for. */
enum annotate_action { ACTION_LEASE, ACTION_DELAY };

/* Parses "ANNOTATION (entry (value.shared "n"))" at args[i]; replies and returns false when it
 * is malformed or asks for something that cannot be stored. */
static bool parse_store(struct cmd *c, size_t i, enum annotate_action *action, uint32_t *seconds)
{
	const struct parser_arg *a = i + 1 < c->count ? &c->args[i + 1] : NULL;
	if (i + 2 != c->count || a->type != PARSER_ARG_LIST || a->count != 2 ||
	    a->list[1].type != PARSER_ARG_LIST || a->list[1].count != 2) {
		cmd_bad(c, "Expected ANNOTATION (entry (value.shared value))");
		return false;
	}
	const char *entry, *att, *value;
	size_t elen, alen, vlen;
	if (!parser_arg_astring(&a->list[0], &entry, &elen) ||
	    !parser_arg_astring(&a->list[1].list[0], &att, &alen) ||
	    !parser_arg_nstring(&a->list[1].list[1], &value, &vlen)) {
		cmd_bad(c, "Expected ANNOTATION (entry (value.shared value))");
		return false;
	}
	if (strcasecmp(entry, ENTRY_LEASE) == 0) {
		*action = ACTION_LEASE;
	} else if (strcasecmp(entry, ENTRY_DELAY) == 0) {
		*action = ACTION_DELAY;
	} else if (strcasecmp(entry, ENTRY_ATTEMPTS) == 0 || strcasecmp(entry, ENTRY_DUE) == 0) {
		cmd_no(c, "CANNOT", "This entry is read-only");
		return false;
	} else {
		cmd_no(c, "CANNOT",
		       "Only " ENTRY_LEASE " and " ENTRY_DELAY " can be stored on a message");
		return false;
	}
	if (strcasecmp(att, "value.shared") != 0) {
		cmd_no(c, "CANNOT", "Only value.shared can be stored");
		return false;
	}
	uint32_t min = *action == ACTION_LEASE ? 1 : 0;
	if (!metadata_parse_number(value, vlen, min, IMAPQ_MAX_QUEUE_SETTING, seconds)) {
		char text[96];
		snprintf(text, sizeof text, "The value is a whole number of seconds from %u to %u",
			 min, (unsigned)IMAPQ_MAX_QUEUE_SETTING);
		cmd_no(c, "CANNOT", text);
		return false;
	}
	return true;
}

/* Messages of the set, copied out of the store's callback. */
struct message_list {
	struct store_message *v;
	size_t n, cap;
	bool failed;
};

/* Store callback: copies one message (runs under the store's lock). */
static void collect_message(void *ctx, const struct store_message *m)
{
	struct message_list *l = ctx;
	if (!l->failed && !vec_push((void **)&l->v, &l->n, &l->cap, sizeof *m, m))
		l->failed = true;
}

/* The outcome of one store_update() on one message. */
struct update_result {
	bool seen;
	struct store_message m;
	enum store_flag_outcome outcome;
};

/* Store callback: keeps the outcome (runs under the store's lock). */
static void collect_outcome(void *ctx, const struct store_message *m,
			    enum store_flag_outcome outcome)
{
	struct update_result *r = ctx;
	*r = (struct update_result){true, *m, outcome};
}

/* Adds a message to the MODIFIED set, by UID or sequence number as the command names them. */
static imapq_err note_modified(struct cmd *c, struct seqset **modified, uint32_t uid)
{
	uint32_t n = c->uid ? uid : view_msn(c->s, uid);
	if (*modified == NULL) {
		imapq_err err = seqset_create(modified);
		if (err != IMAPQ_OK)
			return err;
	}
	return seqset_add(*modified, n, n);
}

/* Applies the action to each listed message; echoes the changed ones and collects the stale
 * ones in *modified. */
static imapq_err apply(struct cmd *c, const struct message_list *l, uint64_t since,
		       enum annotate_action action, uint32_t seconds, uint64_t claimed,
		       uint64_t delayed, struct seqset **modified)
{
	uint64_t lsn; /* the reply waits for it through the session's seal */
	struct session *s = c->s;
	uint32_t now = (uint32_t)time(NULL);
	for (size_t k = 0; k < l->n; k++) {
		const struct store_message *m = &l->v[k];
		imapq_err err = IMAPQ_OK;
		struct update_result r = {0};
		if (m->modseq <= since) {
			struct store_update u = {.op = STORE_FLAGS_ADD,
						 .unchangedsince = &since,
						 .set_due = true,
						 .due = now + seconds};
			if (action == ACTION_DELAY) {
				/* One atomic change: the flags are known exactly, as the
				 * mod-sequence is unchanged since they were read. */
				u.op = STORE_FLAGS_SET;
				u.flags = (m->flags & ~claimed) | (seconds > 0 ? delayed : 0);
				u.due = seconds > 0 ? now + seconds : 0;
			}
			struct uid_range one = {m->uid, m->uid};
			err = store_update(s->server->opts.store, s->view.id, &one, 1, &u,
					   collect_outcome, &r, &lsn);
		} else {
			r = (struct update_result){true, *m, STORE_FAILED};
		}
		if (err == IMAPQ_OK && r.seen && r.outcome == STORE_FAILED)
			err = note_modified(c, modified, m->uid);
		else if (err == IMAPQ_OK && r.seen) {
			session_printf(s, "* %u FETCH (UID %u MODSEQ (%llu))\r\n",
				       view_msn(s, r.m.uid), r.m.uid,
				       (unsigned long long)r.m.modseq);
			view_note_echo(s, r.m.uid, r.m.modseq);
		}
		if (err != IMAPQ_OK)
			return err;
	}
	return IMAPQ_OK;
}

/* The flag bit of a keyword in the selected mailbox, 0 when it is not defined (and not create). */
static imapq_err keyword_bit(struct session *s, const char *name, bool create, uint64_t *bit_r)
{
	uint64_t lsn; /* the reply waits for it through the session's seal */
	unsigned k;
	*bit_r = 0;
	imapq_err err = store_keyword(s->server->opts.store, s->view.id, name, create, &k, &lsn);
	if (err == IMAPQ_E_NOTFOUND)
		return IMAPQ_OK;
	if (err == IMAPQ_OK)
		*bit_r = STORE_KEYWORD(k);
	return err;
}

void annotate_store(struct cmd *c, size_t i, const uint64_t *unchangedsince)
{
	struct session *s = c->s;
	enum annotate_action action;
	uint32_t seconds;
	if (!parse_store(c, i, &action, &seconds))
		return;
	if (s->view.readonly) {
		cmd_no(c, "CANNOT", "Mailbox is read-only");
		return;
	}
	if (unchangedsince == NULL) {
		cmd_no(c, "CANNOT", "Lease renewal and delay need (UNCHANGEDSINCE <receipt>)");
		return;
	}
	struct uid_range *ranges;
	size_t n;
	if (!cmd_arg_set(c, &c->args[0], c->uid, &ranges, &n))
		return;
	struct message_list l = {0};
	imapq_err err = IMAPQ_OK;
	if (n > 0)
		err = store_messages(s->server->opts.store, s->view.id, ranges, n, collect_message,
				     &l);
	free(ranges);
	if (err == IMAPQ_OK && l.failed)
		err = IMAPQ_E_NOMEM;
	uint64_t claimed = 0, delayed = 0;
	if (err == IMAPQ_OK)
		err = keyword_bit(s, STORE_CLAIM_KEYWORD, false, &claimed);
	if (err == IMAPQ_OK && action == ACTION_DELAY && seconds > 0)
		err = keyword_bit(s, STORE_DELAY_KEYWORD, true, &delayed);
	/* A job whose receipt is current but that nobody holds cannot be renewed or released:
	 * refuse the command before changing anything. */
	for (size_t k = 0; err == IMAPQ_OK && k < l.n; k++) {
		if (l.v[k].modseq <= *unchangedsince &&
		    (claimed == 0 || !(l.v[k].flags & claimed))) {
			char text[64];
			snprintf(text, sizeof text, "Job %u is not claimed", l.v[k].uid);
			free(l.v);
			cmd_no(c, "CANNOT", text);
			return;
		}
	}
	struct seqset *modified = NULL;
	if (err == IMAPQ_OK)
		err = apply(c, &l, *unchangedsince, action, seconds, claimed, delayed, &modified);
	free(l.v);
	if (err != IMAPQ_OK) {
		seqset_destroy(&modified);
		cmd_fail(c, err, NULL);
		return;
	}
	if (modified == NULL) {
		cmd_ok(c, NULL, "STORE completed");
		return;
	}
	size_t len = seqset_format(modified, NULL, 0);
	char *code = malloc(len + 10);
	if (code == NULL) {
		cmd_fail(c, IMAPQ_E_NOMEM, NULL);
	} else {
		memcpy(code, "MODIFIED ", 9);
		seqset_format(modified, code + 9, len + 1);
		cmd_ok(c, code, "Conditional STORE failed");
		free(code);
	}
	seqset_destroy(&modified);
}
