/* GETMETADATA and SETMETADATA (RFC 5464). Mailbox entries are the store's annotations of the
 * mailbox, the queue settings (STORE_SETTING_*) among them; those always read as their
 * effective value, the default while unset, and take only whole numbers. Server entries (mailbox
 * "") are read-only: a comment and the defaults a queue uses until it sets its own. Private
 * entries are not kept: setting one fails with [METADATA NOPRIVATE] and reading finds none. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/base/limits.h"
#include "imap/base/vec.h"
#include "imap/protocol/quote.h"
#include "imap/server/access.h"
#include "imap/server/server-private.h"

#define MAILBOX_BUF (IMAPQ_MAX_MAILBOX_NAME * 4 + 1)

/* DEPTH INFINITY (RFC 5464 4.2.2). */
#define DEPTH_INFINITY 2

/* The value of the server's /shared/comment entry. */
#define SERVER_COMMENT "imapq message queue"

/* One entry with its value, both owned. */
struct md_entry {
	char *key;
	char *value;
};

/* A set of entries of one mailbox (or the server). */
struct md_list {
	struct md_entry *v;
	size_t n, cap;
	bool failed;
};

/* The queue settings with their defaults (0: the store's own) and largest values, in the order
 * they are listed. */
static const struct {
	const char *key;
	uint32_t fallback;
	uint32_t max;
} settings[] = {
    {STORE_SETTING_LEASE, STORE_DEFAULT_LEASE, IMAPQ_MAX_QUEUE_SETTING},
    {STORE_SETTING_MAX_ATTEMPTS, STORE_DEFAULT_MAX_ATTEMPTS, IMAPQ_MAX_QUEUE_SETTING},
    {STORE_SETTING_RETENTION, STORE_DEFAULT_RETENTION, IMAPQ_MAX_QUEUE_SETTING},
    {STORE_SETTING_MAX_MESSAGES, 0, IMAPQ_MAX_MESSAGES_SETTING},
};
#define NSETTINGS (sizeof settings / sizeof settings[0])

bool metadata_parse_number(const char *str, size_t len, uint32_t min, uint32_t max, uint32_t *v_r)
{
	if (str == NULL || len == 0 || len > 10 || (str[0] == '0' && len > 1))
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < len; i++) {
		if (str[i] < '0' || str[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(str[i] - '0');
	}
	if (v < min || v > max)
		return false;
	*v_r = (uint32_t)v;
	return true;
}

/* The index of key in settings[], or -1 when it is not a queue setting. */
static int setting_index(const char *key)
{
	for (size_t i = 0; i < NSETTINGS; i++) {
		if (strcasecmp(settings[i].key, key) == 0)
			return (int)i;
	}
	return -1;
}

/* The entry of l named key (ASCII case-insensitively, as entry names compare), or NULL. */
static struct md_entry *md_find(struct md_list *l, const char *key)
{
	for (size_t i = 0; i < l->n; i++) {
		if (strcasecmp(l->v[i].key, key) == 0)
			return &l->v[i];
	}
	return NULL;
}

/* Adds a copy of (key, value) unless key is present; a failed allocation marks l failed. */
static void md_add(struct md_list *l, const char *key, const char *value)
{
	if (l->failed || md_find(l, key) != NULL)
		return;
	struct md_entry e = {strdup(key), strdup(value)};
	if (e.key == NULL || e.value == NULL ||
	    !vec_push((void **)&l->v, &l->n, &l->cap, sizeof e, &e)) {
		free(e.key);
		free(e.value);
		l->failed = true;
	}
}

static void md_free(struct md_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].key);
		free(l->v[i].value);
	}
	free(l->v);
	*l = (struct md_list){0};
}

/* Store callback: keeps the annotations that are entries (internal keys do not start with "/").
 * Runs under the store's lock, so it only copies. */
static void collect_annotation(void *ctx, const char *key, const char *value)
{
	if (key[0] == '/')
		md_add(ctx, key, value);
}

/* Adds each setting that l does not hold yet, with its effective value values[i]. */
static void add_settings(struct md_list *l, const uint32_t values[NSETTINGS])
{
	for (size_t i = 0; i < NSETTINGS; i++) {
		char text[16];
		snprintf(text, sizeof text, "%u", values[i]);
		md_add(l, settings[i].key, text);
	}
}

/* Fills l with the entries of mailbox id, or of the server when id is 0 and server is true. */
static imapq_err md_load(struct store *store, bool server, uint32_t id, struct md_list *l)
{
	uint32_t values[NSETTINGS];
	if (server) {
		md_add(l, "/shared/comment", SERVER_COMMENT);
		for (size_t i = 0; i < NSETTINGS; i++)
			values[i] = settings[i].fallback;
		uint64_t total;
		store_message_limits(store, &values[3], &total);
	} else {
		imapq_err err = store_annotation_list(store, id, collect_annotation, l);
		if (err != IMAPQ_OK)
			return err;
		struct store_mailbox_status st;
		err = store_mailbox_status(store, id, &st);
		if (err != IMAPQ_OK)
			return err;
		values[0] = st.lease ? st.lease : STORE_DEFAULT_LEASE;
		values[1] = st.max_attempts ? st.max_attempts : STORE_DEFAULT_MAX_ATTEMPTS;
		values[2] = st.retention ? st.retention : STORE_DEFAULT_RETENTION;
		values[3] = st.max_messages;
	}
	add_settings(l, values);
	return l->failed ? IMAPQ_E_NOMEM : IMAPQ_OK;
}

/* Orders entries by name, so answers are stable. */
static int md_compare(const void *a, const void *b)
{
	return strcasecmp(((const struct md_entry *)a)->key, ((const struct md_entry *)b)->key);
}

/* True for an entry name by RFC 5464 3.2: printable ASCII without spaces, "*" or "%", starting
 * with "/", no "//", no trailing "/", in the /private or /shared tree. */
static bool entry_name_valid(const char *e, size_t len)
{
	if (len < 2 || e[0] != '/' || e[len - 1] == '/')
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)e[i];
		if (ch < 0x21 || ch > 0x7e || ch == '*' || ch == '%')
			return false;
		if (ch == '/' && i > 0 && e[i - 1] == '/')
			return false;
	}
	return (len >= 7 && strncasecmp(e, "/shared", 7) == 0 && (len == 7 || e[7] == '/')) ||
	       (len >= 8 && strncasecmp(e, "/private", 8) == 0 && (len == 8 || e[8] == '/'));
}

/* True when an entry name lies in the /private tree. */
static bool entry_is_private(const char *e)
{
	return strncasecmp(e, "/private", 8) == 0;
}

/* True when entry name key is wanted by the requested name at the given depth: the name itself,
 * its children (depth 1) or all its descendants (infinity). */
static bool entry_matches(const char *key, const char *want, int depth)
{
	size_t wlen = strlen(want);
	if (strncasecmp(key, want, wlen) != 0)
		return false;
	if (key[wlen] == '\0')
		return true;
	if (depth == 0 || key[wlen] != '/')
		return false;
	return depth == DEPTH_INFINITY || strchr(key + wlen + 1, '/') == NULL;
}

/* Writes an nstring value for the client: quoted when it can be, else a literal. */
static void write_value(struct session *s, const char *value)
{
	size_t len = strlen(value);
	size_t need = quote_nstring(NULL, 0, value, len);
	char *dst = buf_reserve(&s->out, need + 1);
	if (dst == NULL)
		return;
	quote_nstring(dst, need + 1, value, len);
	buf_commit(&s->out, need);
}

/* Parses GETMETADATA's options list: MAXSIZE n and DEPTH 0|1|infinity, each at most once. */
static bool parse_options(struct cmd *c, const struct parser_arg *a, uint64_t *maxsize, int *depth)
{
	bool have_max = false, have_depth = false;
	if (a->count == 0 || a->count % 2 != 0) {
		cmd_bad(c, "Invalid GETMETADATA options");
		return false;
	}
	for (size_t i = 0; i < a->count; i += 2) {
		const struct parser_arg *v = &a->list[i + 1];
		if (parser_arg_is_atom(&a->list[i], "MAXSIZE") && !have_max) {
			if (!cmd_arg_number(c, v, UINT32_MAX, maxsize))
				return false;
			have_max = true;
		} else if (parser_arg_is_atom(&a->list[i], "DEPTH") && !have_depth) {
			if (parser_arg_is_atom(v, "0")) {
				*depth = 0;
			} else if (parser_arg_is_atom(v, "1")) {
				*depth = 1;
			} else if (parser_arg_is_atom(v, "INFINITY")) {
				*depth = DEPTH_INFINITY;
			} else {
				cmd_bad(c, "DEPTH must be 0, 1 or infinity");
				return false;
			}
			have_depth = true;
		} else {
			cmd_bad(c, "Unknown or repeated GETMETADATA option");
			return false;
		}
	}
	return true;
}

/* Checks the entries argument (one entry or a list) and returns its members. */
static bool parse_entry_names(struct cmd *c, const struct parser_arg *a,
			      const struct parser_arg **names_r, size_t *n_r)
{
	*names_r = a;
	*n_r = 1;
	if (a->type == PARSER_ARG_LIST) {
		*names_r = a->list;
		*n_r = a->count;
	}
	if (*n_r == 0) {
		cmd_bad(c, "No entries given");
		return false;
	}
	for (size_t i = 0; i < *n_r; i++) {
		const char *str;
		size_t len;
		if (!parser_arg_astring(&(*names_r)[i], &str, &len) ||
		    !entry_name_valid(str, len)) {
			cmd_bad(c, "Invalid entry name");
			return false;
		}
	}
	return true;
}

/* Resolves the mailbox argument: "" is the server (*server_r), else an existing mailbox on which
 * the user holds role (0: any role; a hidden name answers like a missing one). */
static bool resolve_mailbox(struct cmd *c, size_t i, char *name, unsigned role, bool *server_r,
			    uint32_t *id_r)
{
	if (!cmd_arg_mailbox(c, i, name, MAILBOX_BUF))
		return false;
	*server_r = name[0] == '\0';
	*id_r = 0;
	if (*server_r)
		return true;
	if (!cmd_allow(c, name, role))
		return false;
	imapq_err err = store_mailbox_find(c->s->server->opts.store, name, id_r);
	if (err == IMAPQ_E_NONEXISTENT || err == IMAPQ_E_NOTFOUND) {
		cmd_no(c, "NONEXISTENT", "No such mailbox");
		return false;
	}
	if (err != IMAPQ_OK) {
		cmd_fail(c, err, NULL);
		return false;
	}
	return true;
}

void cmd_getmetadata(struct cmd *c)
{
	struct session *s = c->s;
	if (!cmd_want_args(c, 2, 3))
		return;
	uint64_t maxsize = UINT64_MAX;
	int depth = 0;
	size_t i = 0;
	if (c->count == 3) {
		if (c->args[0].type != PARSER_ARG_LIST) {
			cmd_bad(c, "Invalid GETMETADATA options");
			return;
		}
		if (!parse_options(c, &c->args[0], &maxsize, &depth))
			return;
		i = 1;
	}
	char name[MAILBOX_BUF];
	bool server;
	uint32_t id;
	const struct parser_arg *names;
	size_t nnames;
	if (!parse_entry_names(c, &c->args[i + 1], &names, &nnames) ||
	    !resolve_mailbox(c, i, name, 0, &server, &id))
		return;

	struct md_list l = {0};
	imapq_err err = md_load(s->server->opts.store, server, id, &l);
	if (err != IMAPQ_OK) {
		md_free(&l);
		cmd_fail(c, err, NULL);
		return;
	}
	qsort(l.v, l.n, sizeof l.v[0], md_compare);
	size_t longest = 0, written = 0;
	bool too_long = false;
	for (size_t k = 0; k < l.n; k++) {
		bool wanted = false;
		for (size_t w = 0; w < nnames && !wanted; w++) {
			const char *want;
			size_t wlen;
			parser_arg_astring(&names[w], &want, &wlen);
			wanted = entry_matches(l.v[k].key, want, depth);
		}
		if (!wanted)
			continue;
		size_t vlen = strlen(l.v[k].value);
		if (vlen > maxsize) {
			too_long = true;
			if (vlen > longest)
				longest = vlen;
			continue;
		}
		if (written++ == 0) {
			session_lit(s, "* METADATA ");
			cmd_write_mailbox(s, name);
			session_lit(s, " (");
		} else {
			session_lit(s, " ");
		}
		cmd_write_string(s, l.v[k].key, strlen(l.v[k].key));
		session_lit(s, " ");
		write_value(s, l.v[k].value);
	}
	if (written > 0)
		session_lit(s, ")\r\n");
	md_free(&l);
	if (too_long) {
		char code[48];
		snprintf(code, sizeof code, "METADATA LONGENTRIES %zu", longest);
		cmd_ok(c, code, "GETMETADATA completed");
		return;
	}
	cmd_ok(c, NULL, "GETMETADATA completed");
}

/* Counts the entries of a mailbox that one SETMETADATA adds, for the TOOMANY check. */
struct add_count {
	const struct parser_arg *pairs;
	size_t npairs;
	size_t existing; /* annotations the mailbox holds, internal ones included */
	bool *present;	 /* per pair: the entry exists already */
};

/* Store callback: counts annotations and notes which of the pairs' entries exist. */
static void count_annotation(void *ctx, const char *key, const char *value)
{
	struct add_count *a = ctx;
	(void)value;
	a->existing++;
	for (size_t i = 0; i < a->npairs; i++) {
		const char *str;
		size_t len;
		parser_arg_astring(&a->pairs[2 * i], &str, &len);
		if (strlen(key) == len && strncasecmp(key, str, len) == 0)
			a->present[i] = true;
	}
}

/* Checks every (entry, value) pair before anything is set, so a SETMETADATA that fails sets
 * nothing (short of a concurrent change). Replies and returns false on the first problem. */
static bool check_pairs(struct cmd *c, const struct parser_arg *a, bool server)
{
	if (a->type != PARSER_ARG_LIST || a->count == 0 || a->count % 2 != 0) {
		cmd_bad(c, "Expected a list of entries and values");
		return false;
	}
	bool private = false;
	for (size_t i = 0; i < a->count; i += 2) {
		const char *key, *value;
		size_t klen, vlen;
		if (!parser_arg_astring(&a->list[i], &key, &klen) || !entry_name_valid(key, klen) ||
		    strchr(key + 1, '/') == NULL) {
			cmd_bad(c, "Invalid entry name");
			return false;
		}
		if (!parser_arg_nstring(&a->list[i + 1], &value, &vlen)) {
			cmd_bad(c, "Entry values are strings or NIL");
			return false;
		}
		private |= entry_is_private(key);
	}
	if (server) {
		cmd_no(c, "NOPERM", "Server entries are read-only");
		return false;
	}
	if (private) {
		cmd_no(c, "METADATA NOPRIVATE", "Private entries are not supported");
		return false;
	}
	for (size_t i = 0; i < a->count; i += 2) {
		const char *key = a->list[i].str, *value;
		size_t vlen;
		parser_arg_nstring(&a->list[i + 1], &value, &vlen);
		if (strlen(key) > IMAPQ_MAX_ANNOTATION_KEY) {
			cmd_no(c, "LIMIT", "Entry name too long");
			return false;
		}
		if (vlen > IMAPQ_MAX_ANNOTATION_VALUE) {
			char code[48];
			snprintf(code, sizeof code, "METADATA MAXSIZE %u",
				 (unsigned)IMAPQ_MAX_ANNOTATION_VALUE);
			cmd_no(c, code, "Value too long");
			return false;
		}
		uint32_t v;
		int k = setting_index(key);
		if (value != NULL && k >= 0 &&
		    !metadata_parse_number(value, vlen, 1, settings[k].max, &v)) {
			char text[IMAPQ_MAX_ANNOTATION_KEY + 64];
			snprintf(text, sizeof text, "%.*s takes a whole number from 1 to %u",
				 IMAPQ_MAX_ANNOTATION_KEY, key, (unsigned)settings[k].max);
			cmd_no(c, "CANNOT", text);
			return false;
		}
	}
	return true;
}

/* Checks that the pairs' new entries fit in the mailbox's entry limit. */
static bool check_count(struct cmd *c, uint32_t id, const struct parser_arg *a)
{
	size_t npairs = a->count / 2;
	bool *present = calloc(npairs, sizeof *present);
	if (present == NULL) {
		cmd_fail(c, IMAPQ_E_NOMEM, NULL);
		return false;
	}
	struct add_count count = {.pairs = a->list, .npairs = npairs, .present = present};
	imapq_err err =
	    store_annotation_list(c->s->server->opts.store, id, count_annotation, &count);
	size_t added = 0;
	for (size_t i = 0; i < npairs; i++) {
		const char *value;
		size_t vlen;
		parser_arg_nstring(&a->list[2 * i + 1], &value, &vlen);
		/* A repeated new entry is counted once per mention: an upper bound is enough. */
		added += value != NULL && !present[i];
	}
	free(present);
	if (err != IMAPQ_OK) {
		cmd_fail(c, err, NULL);
		return false;
	}
	if (count.existing + added > IMAPQ_MAX_ANNOTATIONS) {
		cmd_no(c, "METADATA TOOMANY", "Too many entries on this mailbox");
		return false;
	}
	return true;
}

void cmd_setmetadata(struct cmd *c)
{
	uint64_t lsn; /* the reply waits for it through the session's seal */
	struct store *store = c->s->server->opts.store;
	if (!cmd_want_args(c, 2, 2))
		return;
	char name[MAILBOX_BUF];
	bool server;
	uint32_t id;
	if (!resolve_mailbox(c, 0, name, ACCESS_ADMIN, &server, &id) ||
	    !check_pairs(c, &c->args[1], server) || !check_count(c, id, &c->args[1]))
		return;
	const struct parser_arg *a = &c->args[1];
	for (size_t i = 0; i < a->count; i += 2) {
		const char *value;
		size_t vlen;
		parser_arg_nstring(&a->list[i + 1], &value, &vlen);
		imapq_err err = store_annotation_set(store, id, a->list[i].str, value, &lsn);
		if (err == IMAPQ_E_LIMIT) {
			cmd_no(c, "METADATA TOOMANY", "Too many entries on this mailbox");
			return;
		}
		if (err == IMAPQ_E_INVALID) {
			cmd_no(c, "CANNOT", "Entry or value refused");
			return;
		}
		if (err == IMAPQ_E_NONEXISTENT) {
			cmd_no(c, "NONEXISTENT", "No such mailbox");
			return;
		}
		if (err != IMAPQ_OK) {
			cmd_fail(c, err, NULL);
			return;
		}
	}
	cmd_ok(c, NULL, "SETMETADATA completed");
}
