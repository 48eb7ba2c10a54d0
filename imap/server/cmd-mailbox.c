/* Mailbox commands: CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB, STATUS. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/base/limits.h"
#include "imap/server/access.h"
#include "imap/server/server-private.h"

/* The annotation that marks a mailbox as subscribed; not a METADATA entry name (those start
 * with "/"), so clients cannot see or change it through METADATA. */
#define SUBSCRIBED_KEY "imapq.subscribed"

#define MAILBOX_BUF (IMAPQ_MAX_MAILBOX_NAME * 4 + 1)

/* Store errors worded for mailbox commands. */
static void fail_mailbox(struct cmd *c, imapq_err err)
{
	switch (err) {
	case IMAPQ_E_NONEXISTENT:
		cmd_no(c, "NONEXISTENT", "No such mailbox");
		break;
	case IMAPQ_E_EXISTS:
		cmd_no(c, "ALREADYEXISTS", "Mailbox already exists");
		break;
	case IMAPQ_E_INVALID:
		cmd_no(c, "CANNOT", "Invalid mailbox name or operation");
		break;
	default:
		cmd_fail(c, err, NULL);
	}
}

bool cmd_allow(struct cmd *c, const char *name, unsigned role)
{
	imapq_err err = access_check(c->s->access, name, role);
	if (err == IMAPQ_E_NONEXISTENT)
		cmd_no(c, "NONEXISTENT", "No such mailbox");
	else if (err != IMAPQ_OK)
		cmd_no(c, "NOPERM", "Your roles do not allow this on that mailbox");
	return err == IMAPQ_OK;
}

/* Creating a name needs admin on it; a name outside the user's patterns gets the same NOPERM
 * whether it exists or not, so CREATE does not reveal hidden mailboxes. */
static bool may_create(struct cmd *c, const char *name)
{
	if (access_check(c->s->access, name, ACCESS_ADMIN) == IMAPQ_OK)
		return true;
	cmd_no(c, "NOPERM", "Your roles do not allow creating that mailbox");
	return false;
}

void cmd_create(struct cmd *c)
{
	uint64_t lsn; /* the reply waits for it through the session's seal */
	char name[MAILBOX_BUF];
	if (!cmd_want_args(c, 1, 1) || !cmd_arg_mailbox(c, 0, name, sizeof name))
		return;
	/* A trailing separator only says the client intends children (RFC 3501 6.3.3). */
	size_t len = strlen(name);
	if (len > 1 && name[len - 1] == '/')
		name[len - 1] = '\0';
	if (!may_create(c, name))
		return;
	uint32_t id;
	imapq_err err = store_mailbox_create(c->s->server->opts.store, name, &id, &lsn);
	if (err != IMAPQ_OK) {
		fail_mailbox(c, err);
		return;
	}
	cmd_ok(c, NULL, "CREATE completed");
}

void cmd_delete(struct cmd *c)
{
	uint64_t lsn; /* the reply waits for it through the session's seal */
	char name[MAILBOX_BUF];
	if (!cmd_want_args(c, 1, 1) || !cmd_arg_mailbox(c, 0, name, sizeof name))
		return;
	if (strcmp(name, "INBOX") == 0) {
		cmd_no(c, "CANNOT", "INBOX cannot be deleted");
		return;
	}
	if (!cmd_allow(c, name, ACCESS_ADMIN))
		return;
	struct session *s = c->s;
	uint32_t id = 0;
	store_mailbox_find(s->server->opts.store, name, &id);
	imapq_err err = store_mailbox_delete(s->server->opts.store, name, &lsn);
	if (err != IMAPQ_OK) {
		fail_mailbox(c, err);
		return;
	}
	/* Deleting the selected mailbox deselects it (other sessions are disconnected). */
	if ((s->state & STATE_SELECTED) && s->view.id == id) {
		view_close(s);
		session_lit(s, "* OK [CLOSED] Mailbox deleted\r\n");
	}
	cmd_ok(c, NULL, "DELETE completed");
}

/* Collects every UID of a mailbox for RENAME INBOX. */
struct uid_collect {
	struct uid_range *ranges;
	size_t n, cap;
	bool failed;
};

static void collect_uid(void *ctx, const struct store_message *m)
{
	struct uid_collect *u = ctx;
	if (u->failed)
		return;
	if (u->n > 0 && u->ranges[u->n - 1].hi + 1 == m->uid) {
		u->ranges[u->n - 1].hi = m->uid;
		return;
	}
	if (u->n == u->cap) {
		size_t cap = u->cap ? u->cap * 2 : 16;
		struct uid_range *r = realloc(u->ranges, cap * sizeof *r);
		if (r == NULL) {
			u->failed = true;
			return;
		}
		u->ranges = r;
		u->cap = cap;
	}
	u->ranges[u->n++] = (struct uid_range){m->uid, m->uid};
}

/* RENAME INBOX moves its messages to a new mailbox and leaves INBOX empty (RFC 3501 6.3.5). */
static void rename_inbox(struct cmd *c, const char *to)
{
	uint64_t lsn; /* the reply waits for it through the session's seal */
	struct store *store = c->s->server->opts.store;
	uint32_t inbox, dst;
	imapq_err err = store_mailbox_find(store, "INBOX", &inbox);
	if (err == IMAPQ_OK)
		err = store_mailbox_create(store, to, &dst, &lsn);
	if (err != IMAPQ_OK) {
		fail_mailbox(c, err);
		return;
	}
	struct uid_collect u = {0};
	err = store_messages(store, inbox, NULL, 0, collect_uid, &u);
	if (err == IMAPQ_OK && u.failed)
		err = IMAPQ_E_NOMEM;
	if (err == IMAPQ_OK && u.n > 0)
		err = store_copy(store, inbox, u.ranges, u.n, dst, true, NULL, NULL, &lsn);
	free(u.ranges);
	if (err != IMAPQ_OK) {
		cmd_fail(c, err, NULL);
		return;
	}
	cmd_ok(c, NULL, "RENAME completed");
}

/* The children a RENAME carries along (RFC 3501 6.3.5) need admin under their old name and their
 * new one: else a rename would move a mailbox hidden from the user to a name it can read, or put
 * a mailbox on a name outside the user's patterns. */
struct rename_check {
	const struct access *access;
	const char *from, *to;
	size_t from_len;
	bool denied;
};

static void rename_check_child(void *ctx, uint32_t id, const char *name)
{
	struct rename_check *r = ctx;
	char renamed[2 * MAILBOX_BUF];
	(void)id;
	if (r->denied || strncmp(name, r->from, r->from_len) != 0 || name[r->from_len] != '/')
		return;
	if (snprintf(renamed, sizeof renamed, "%s%s", r->to, name + r->from_len) >=
		(int)sizeof renamed ||
	    access_check(r->access, name, ACCESS_ADMIN) != IMAPQ_OK ||
	    access_check(r->access, renamed, ACCESS_ADMIN) != IMAPQ_OK)
		r->denied = true;
}

void cmd_rename(struct cmd *c)
{
	uint64_t lsn; /* the reply waits for it through the session's seal */
	char from[MAILBOX_BUF], to[MAILBOX_BUF];
	if (!cmd_want_args(c, 2, 2) || !cmd_arg_mailbox(c, 0, from, sizeof from) ||
	    !cmd_arg_mailbox(c, 1, to, sizeof to))
		return;
	if (strcmp(to, "INBOX") == 0) {
		cmd_no(c, "ALREADYEXISTS", "INBOX already exists");
		return;
	}
	if (!cmd_allow(c, from, ACCESS_ADMIN) || !may_create(c, to))
		return;
	if (strcmp(from, "INBOX") == 0) {
		rename_inbox(c, to);
		return;
	}
	struct rename_check rc = {
	    .access = c->s->access, .from = from, .to = to, .from_len = strlen(from)};
	store_mailbox_list(c->s->server->opts.store, rename_check_child, &rc);
	if (rc.denied) {
		cmd_no(c, "NOPERM", "Your roles do not allow this on a mailbox below that one");
		return;
	}
	imapq_err err = store_mailbox_rename(c->s->server->opts.store, from, to, &lsn);
	if (err != IMAPQ_OK) {
		fail_mailbox(c, err);
		return;
	}
	cmd_ok(c, NULL, "RENAME completed");
}

/* Sets or clears the subscription mark of a mailbox. */
static void set_subscribed(struct cmd *c, bool on)
{
	uint64_t lsn; /* the reply waits for it through the session's seal */
	char name[MAILBOX_BUF];
	if (!cmd_want_args(c, 1, 1) || !cmd_arg_mailbox(c, 0, name, sizeof name))
		return;
	if (!cmd_allow(c, name, 0))
		return;
	struct store *store = c->s->server->opts.store;
	uint32_t id;
	imapq_err err = store_mailbox_find(store, name, &id);
	if (err == IMAPQ_OK)
		err = store_annotation_set(store, id, SUBSCRIBED_KEY, on ? "1" : NULL, &lsn);
	if (err == IMAPQ_E_NOTFOUND && !on)
		err = IMAPQ_OK;
	if (err != IMAPQ_OK) {
		fail_mailbox(c, err);
		return;
	}
	cmd_ok(c, NULL, on ? "SUBSCRIBE completed" : "UNSUBSCRIBE completed");
}

void cmd_subscribe(struct cmd *c)
{
	set_subscribed(c, true);
}

void cmd_unsubscribe(struct cmd *c)
{
	set_subscribed(c, false);
}

/* RFC 3501 LIST wildcards: '*' matches anything, '%' anything but the separator. The match walks
 * the pattern once, keeping the set of name positions reached so far: backtracking would take
 * time exponential in the number of wildcards, and the pattern is the client's. */
static bool list_match(const char *pattern, const char *name)
{
	bool reach[IMAPQ_MAX_MAILBOX_NAME + 1];
	size_t n = strlen(name);
	if (n > IMAPQ_MAX_MAILBOX_NAME)
		return false;
	memset(reach, 0, (n + 1) * sizeof reach[0]);
	reach[0] = true;
	for (const char *p = pattern; *p != '\0';) {
		if (*p == '*' || *p == '%') {
			/* A run of wildcards acts as one '*' when it holds one, else as one '%'. */
			bool star = false;
			for (; *p == '*' || *p == '%'; p++)
				star |= *p == '*';
			for (size_t j = 1; j <= n; j++)
				reach[j] |= reach[j - 1] && (star || name[j - 1] != '/');
			continue;
		}
		bool any = false;
		for (size_t j = n; j > 0; j--) {
			reach[j] = reach[j - 1] && name[j - 1] == *p;
			any |= reach[j];
		}
		reach[0] = false;
		if (!any)
			return false;
		p++;
	}
	return reach[n];
}

struct list_entry {
	char *name;
	bool exists;
	bool subscribed;
};

struct list_state {
	struct store *store;
	const struct access *access; /* names without any role are left out */
	struct list_entry *items;
	size_t n, cap;
	bool failed;
};

static bool list_add(struct list_state *l, const char *name, size_t len, bool exists)
{
	/* Mailboxes come in name order, so a parent is either the last entry or new. */
	for (size_t i = l->n; i-- > 0;) {
		if (strlen(l->items[i].name) == len && memcmp(l->items[i].name, name, len) == 0) {
			l->items[i].exists |= exists;
			return true;
		}
		if (i + 8 < l->n)
			break;
	}
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		struct list_entry *p = realloc(l->items, cap * sizeof *p);
		if (p == NULL)
			return false;
		l->items = p;
		l->cap = cap;
	}
	char *copy = strndup(name, len);
	if (copy == NULL)
		return false;
	l->items[l->n++] = (struct list_entry){.name = copy, .exists = exists};
	return true;
}

static void list_collect(void *ctx, uint32_t id, const char *name)
{
	struct list_state *l = ctx;
	(void)id;
	if (access_roles(l->access, name) == 0)
		return;
	/* Parents that only exist through their children appear as \Noselect. */
	for (const char *slash = strchr(name, '/'); slash != NULL; slash = strchr(slash + 1, '/'))
		if (!list_add(l, name, (size_t)(slash - name), false))
			l->failed = true;
	if (!list_add(l, name, strlen(name), true))
		l->failed = true;
}

/* Shared body of LIST and LSUB. */
static void do_list(struct cmd *c, bool lsub)
{
	struct session *s = c->s;
	char ref[MAILBOX_BUF], pat[MAILBOX_BUF];
	/* The pattern is in modified UTF-7 like any name (RFC 3501 5.1.3); its wildcards are
	 * ASCII, so it decodes to the same pattern over the names the store keeps. */
	if (!cmd_want_args(c, 2, 2) || !cmd_arg_mailbox(c, 0, ref, sizeof ref) ||
	    !cmd_arg_mailbox(c, 1, pat, sizeof pat))
		return;
	const char *word = lsub ? "LSUB" : "LIST";
	if (pat[0] == '\0') {
		/* The hierarchy separator and root (RFC 3501 6.3.8). */
		session_printf(s, "* %s (\\Noselect) \"/\" \"\"\r\n", word);
		cmd_ok(c, NULL, lsub ? "LSUB completed" : "LIST completed");
		return;
	}
	char full[2 * MAILBOX_BUF];
	snprintf(full, sizeof full, "%s%s", pat[0] == '/' ? "" : ref, pat);
	/* INBOX is case-insensitive; the store spells it in capitals. */
	if (strncasecmp(full, "INBOX", 5) == 0 && (full[5] == '\0' || full[5] == '/'))
		memcpy(full, "INBOX", 5);

	struct list_state l = {.store = s->server->opts.store, .access = s->access};
	store_mailbox_list(l.store, list_collect, &l);
	if (l.failed) {
		cmd_fail(c, IMAPQ_E_NOMEM, NULL);
	} else {
		for (size_t i = 0; i < l.n; i++) {
			struct list_entry *e = &l.items[i];
			if (!list_match(full, e->name))
				continue;
			if (lsub) {
				uint32_t id;
				char v[4];
				if (!e->exists ||
				    store_mailbox_find(l.store, e->name, &id) != IMAPQ_OK ||
				    store_annotation_get(l.store, id, SUBSCRIBED_KEY, v,
							 sizeof v) != IMAPQ_OK)
					continue;
			}
			session_printf(s, "* %s (%s) \"/\" ", word, e->exists ? "" : "\\Noselect");
			cmd_write_mailbox(s, e->name);
			session_lit(s, "\r\n");
		}
		cmd_ok(c, NULL, lsub ? "LSUB completed" : "LIST completed");
	}
	for (size_t i = 0; i < l.n; i++)
		free(l.items[i].name);
	free(l.items);
}

void cmd_list(struct cmd *c)
{
	do_list(c, false);
}

void cmd_lsub(struct cmd *c)
{
	do_list(c, true);
}

void cmd_status(struct cmd *c)
{
	struct session *s = c->s;
	char name[MAILBOX_BUF];
	if (!cmd_want_args(c, 2, 2) || !cmd_arg_mailbox(c, 0, name, sizeof name))
		return;
	const struct parser_arg *items = &c->args[1];
	if (items->type != PARSER_ARG_LIST || items->count == 0) {
		cmd_bad(c, "STATUS takes a list of items");
		return;
	}
	if (!cmd_allow(c, name, 0))
		return;
	struct store *store = s->server->opts.store;
	uint32_t id;
	struct store_mailbox_status st;
	imapq_err err = store_mailbox_find(store, name, &id);
	if (err == IMAPQ_OK)
		err = store_mailbox_status(store, id, &st);
	if (err != IMAPQ_OK) {
		fail_mailbox(c, err);
		return;
	}
	char text[512];
	size_t len = 0;
	for (size_t i = 0; i < items->count; i++) {
		const struct parser_arg *a = &items->list[i];
		unsigned long long v;
		const char *item;
		if (parser_arg_is_atom(a, "MESSAGES")) {
			item = "MESSAGES";
			v = st.messages;
		} else if (parser_arg_is_atom(a, "RECENT")) {
			item = "RECENT";
			uint32_t floor = server_recent_claim(s->server, id, 0);
			uint32_t below = 0;
			if (floor > 1)
				store_seq_of_uid(store, id, floor - 1, &below);
			v = st.messages - below;
		} else if (parser_arg_is_atom(a, "UIDNEXT")) {
			item = "UIDNEXT";
			v = st.uidnext;
		} else if (parser_arg_is_atom(a, "UIDVALIDITY")) {
			item = "UIDVALIDITY";
			v = st.uidvalidity;
		} else if (parser_arg_is_atom(a, "UNSEEN")) {
			item = "UNSEEN";
			v = st.unseen;
		} else if (parser_arg_is_atom(a, "HIGHESTMODSEQ")) {
			item = "HIGHESTMODSEQ";
			v = st.highestmodseq;
			session_enable_condstore(s);
		} else {
			cmd_bad(c, "Unknown STATUS item");
			return;
		}
		if (len < sizeof text)
			len += (size_t)snprintf(text + len, sizeof text - len, "%s%s %llu",
						len ? " " : "", item, v);
	}
	session_lit(s, "* STATUS ");
	cmd_write_mailbox(s, name);
	session_printf(s, " (%s)\r\n", text);
	cmd_ok(c, NULL, "STATUS completed");
}
