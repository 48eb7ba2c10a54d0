/* APPEND (RFC 3501 6.3.11) with UIDPLUS's APPENDUID (RFC 4315) and APPENDLIMIT (RFC 7889); the
 * body arrives streamed into the session's spool, never as one allocation of its full size. */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "imap/base/crc32c.h"
#include "imap/base/limits.h"
#include "imap/server/access.h"
#include "imap/server/server-private.h"

/* Parses an RFC 3501 date-time: "dd-Mon-yyyy hh:mm:ss +zzzz" (day may be space-padded). */
static bool parse_date_time(const char *s, size_t len, int64_t *epoch_r)
{
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	char text[32];
	if (len < 25 || len > 26)
		return false;
	memcpy(text, s, len);
	text[len] = '\0';
	const char *p = text[0] == ' ' ? text + 1 : text;
	int day, year, hour, min, sec, zone;
	char mon[4], sign;
	int used = 0;
	if (sscanf(p, "%2d-%3c-%4d %2d:%2d:%2d %c%4d%n", &day, mon, &year, &hour, &min, &sec, &sign,
		   &zone, &used) != 8 ||
	    p[used] != '\0' || (sign != '+' && sign != '-'))
		return false;
	mon[3] = '\0';
	const char *m = strstr(months, mon);
	if (m == NULL || (m - months) % 3 != 0)
		return false;
	if (day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60 || zone % 100 > 59 ||
	    year < 1970 || year > 9999)
		return false;
	struct tm tm = {.tm_year = year - 1900,
			.tm_mon = (int)((m - months) / 3),
			.tm_mday = day,
			.tm_hour = hour,
			.tm_min = min,
			.tm_sec = sec};
	int64_t t = (int64_t)timegm(&tm);
	int64_t offset = (zone / 100) * 3600 + (zone % 100) * 60;
	*epoch_r = sign == '+' ? t - offset : t + offset;
	return true;
}

void cmd_append(struct cmd *c)
{
	struct session *s = c->s;
	struct spool *sp = &s->spool;
	char name[IMAPQ_MAX_MAILBOX_NAME * 4 + 1];
	uint64_t flags = 0;
	int64_t date = (int64_t)time(NULL);

	if (!cmd_want_args(c, 2, 4) || !cmd_arg_mailbox(c, 0, name, sizeof name))
		goto out;
	const struct parser_arg *body = &c->args[c->count - 1];
	if (body->type != PARSER_ARG_STREAM && body->type != PARSER_ARG_LITERAL) {
		cmd_bad(c, "APPEND needs the message as a literal");
		goto out;
	}
	struct store *store = s->server->opts.store;
	uint32_t id;
	/* Enqueueing needs the producer role; a hidden name answers like a missing one. */
	imapq_err err = access_check(s->access, name, ACCESS_PRODUCER);
	if (err == IMAPQ_OK)
		err = store_mailbox_find(store, name, &id);
	if (err == IMAPQ_E_NONEXISTENT) {
		cmd_no(c, "TRYCREATE", "No such mailbox");
		goto out;
	}
	if (err != IMAPQ_OK) {
		cmd_fail(c, err, NULL);
		goto out;
	}
	for (size_t i = 1; i + 1 < c->count; i++) {
		const struct parser_arg *a = &c->args[i];
		if (a->type == PARSER_ARG_LIST && i == 1) {
			/* Keywords are defined in the target mailbox, so resolve them there. */
			uint32_t selected = s->view.id;
			s->view.id = id;
			bool ok = cmd_arg_flags(c, a, true, &flags);
			s->view.id = selected;
			if (!ok)
				goto out;
		} else if (a->type == PARSER_ARG_QUOTED && parse_date_time(a->str, a->len, &date)) {
			continue;
		} else {
			cmd_bad(c, "Invalid APPEND arguments");
			goto out;
		}
	}

	struct journal_body jb = {.fd = -1};
	if (body->type == PARSER_ARG_STREAM) {
		if (!sp->active || !sp->complete || sp->got != body->len) {
			cmd_no(c, "SERVERBUG", "Message body was not received");
			goto out;
		}
		jb.len = sp->got;
		jb.crc = sp->crc;
		if (sp->fd >= 0) {
			jb.fd = sp->fd;
			jb.offset = 0;
		} else {
			jb.data = buf_bytes(&sp->mem);
		}
	} else {
		jb.data = body->str;
		jb.len = body->len;
		jb.crc = crc32c(0, body->str, body->len);
	}
	if (jb.len == 0) {
		cmd_no(c, "CANNOT", "Empty messages are not accepted");
		goto out;
	}
	uint32_t uid;
	uint64_t modseq, lsn;
	err = store_append(store, id, flags, date, &jb, &uid, &modseq, &lsn);
	if (err != IMAPQ_OK) {
		cmd_fail(c, err, NULL);
		goto out;
	}
	struct store_mailbox_status st;
	char code[64];
	if (store_mailbox_status(store, id, &st) == IMAPQ_OK)
		snprintf(code, sizeof code, "APPENDUID %u %u", st.uidvalidity, uid);
	else
		code[0] = '\0';
	cmd_ok(c, code[0] != '\0' ? code : NULL, "APPEND completed");
out:
	if (sp->fd >= 0)
		close(sp->fd);
	buf_free(&sp->mem);
	*sp = (struct spool){.fd = -1};
}
