/* A job as a message: the RFC 5322 message queue_enqueue() writes (Content-Type, Date,
 * Message-ID and MIME-Version headers, a blank line, the payload), and reading a job back as its
 * body and Content-Type, whoever appended it. */
#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "imap/base/limits.h"
#include "imap/base/decimal.h"
#include "queue/queue-private.h"

/* Bytes of the message read per step while looking for the end of the header. */
#define HEADER_STEP 4096

/* True when ct is a usable Content-Type value: "type/subtype" and parameters in printable
 * ASCII, so it cannot break the header it goes into. */
static bool content_type_valid(const char *ct)
{
	size_t len = strlen(ct);
	if (len == 0 || len > QUEUE_MAX_CONTENT_TYPE || strchr(ct, '/') == NULL || ct[0] == '/')
		return false;
	for (size_t i = 0; i < len; i++)
		if (ct[i] < 0x20 || ct[i] > 0x7e)
			return false;
	return true;
}

/* The per-process half of every Message-ID: random hex drawn once, made unique per message by
 * a counter, which is as unique as fresh random bytes for each message and far cheaper. */
static char id_prefix[2 * 12 + 1];
static bool id_prefix_ok;
static pthread_once_t id_prefix_once = PTHREAD_ONCE_INIT;
static atomic_uint_fast64_t id_counter;

/* Draws the Message-ID prefix. */
static void id_prefix_init(void)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char rnd[(sizeof id_prefix - 1) / 2];
	if (RAND_bytes(rnd, sizeof rnd) != 1)
		return;
	for (size_t i = 0; i < sizeof rnd; i++) {
		id_prefix[2 * i] = hex[rnd[i] >> 4];
		id_prefix[2 * i + 1] = hex[rnd[i] & 0xf];
	}
	id_prefix[sizeof id_prefix - 1] = '\0';
	id_prefix_ok = true;
}

/* Writes v in decimal at p (room for 21 bytes); returns the end. */
static char *put_u64(char *p, uint64_t v)
{
	return p + decimal_u64(v, p);
}

/* Copies text[0..len) to p; returns the end. */
static char *put_text(char *p, const char *text, size_t len)
{
	memcpy(p, text, len);
	return p + len;
}

/* Copies a string literal without its NUL; returns the end. */
#define PUT_LITERAL(p, lit) put_text((p), (lit), sizeof(lit) - 1)

/* The RFC 5322 date of now into *date_r (its length in *len_r); each thread keeps the string of
 * the last second it formatted, sparing gmtime_r's lock and strftime on most messages. */
static void date_now(const char **date_r, size_t *len_r)
{
	static _Thread_local time_t cached_t = (time_t)-1;
	static _Thread_local char cached[64];
	static _Thread_local size_t cached_len;
	time_t now = time(NULL);
	if (now != cached_t) {
		struct tm tm;
		gmtime_r(&now, &tm);
		/* The C locale's day and month names are the English ones RFC 5322 wants. */
		cached_len = strftime(cached, sizeof cached, "%a, %d %b %Y %H:%M:%S +0000", &tm);
		cached_t = now;
	}
	*date_r = cached;
	*len_r = cached_len;
}

imapq_err queue_message_build(const void *payload, size_t len, const char *content_type,
			      char **msg_r, size_t *len_r)
{
	if (content_type == NULL)
		content_type = "application/octet-stream";
	if (!content_type_valid(content_type) || (payload == NULL && len > 0))
		return IMAPQ_E_INVALID;
	if (len > IMAPQ_MAX_MESSAGE_SIZE - QUEUE_HEADER_ROOM)
		return IMAPQ_E_TOOBIG;
	pthread_once(&id_prefix_once, id_prefix_init);
	if (!id_prefix_ok)
		return IMAPQ_E_IO;
	uint64_t seq = atomic_fetch_add(&id_counter, 1);
	const char *date;
	size_t date_len;
	date_now(&date, &date_len);
	/* The content type is at most QUEUE_MAX_CONTENT_TYPE bytes; the rest fits the 256 more. */
	char header[QUEUE_HEADER_ROOM];
	char *p = header;
	p = PUT_LITERAL(p, "Content-Type: ");
	p = put_text(p, content_type, strlen(content_type));
	p = PUT_LITERAL(p, "\r\nDate: ");
	p = put_text(p, date, date_len);
	p = PUT_LITERAL(p, "\r\nMessage-ID: <");
	p = put_text(p, id_prefix, sizeof id_prefix - 1);
	*p++ = '.';
	p = put_u64(p, seq);
	p = PUT_LITERAL(p, "@imapq>\r\nMIME-Version: 1.0\r\n\r\n");
	size_t hlen = (size_t)(p - header);
	char *msg = malloc(hlen + len);
	if (msg == NULL)
		return IMAPQ_E_NOMEM;
	memcpy(msg, header, hlen);
	if (len > 0)
		memcpy(msg + hlen, payload, len);
	*msg_r = msg;
	*len_r = hlen + len;
	return IMAPQ_OK;
}

/* The offset just past the blank line that ends the header in buf[0, len), looking at line ends
 * from offset from on (earlier bytes were searched before), or 0 when there is none yet. A
 * message that starts with a blank line has an empty header. */
static size_t header_end(const char *buf, size_t len, size_t from)
{
	if (from == 0) {
		if (len >= 1 && buf[0] == '\n')
			return 1;
		if (len >= 2 && buf[0] == '\r' && buf[1] == '\n')
			return 2;
	}
	/* Back up two bytes: a line end at the edge of the last step could not be judged. */
	for (size_t i = from >= 2 ? from - 2 : 0; i + 1 < len; i++) {
		if (buf[i] != '\n')
			continue;
		if (buf[i + 1] == '\n')
			return i + 2;
		if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

/* Copies the unfolded, trimmed value of the Content-Type field of header[0, len) into out
 * (cap bytes, truncated to fit); false when there is no such field. */
static bool find_content_type(const char *h, size_t len, char *out, size_t cap)
{
	static const char field[] = "content-type:";
	size_t flen = sizeof field - 1;
	for (size_t i = 0; i < len;) {
		size_t eol = i;
		while (eol < len && h[eol] != '\n')
			eol++;
		if (eol - i >= flen && strncasecmp(h + i, field, flen) == 0) {
			size_t o = 0;
			bool space = false;
			for (size_t j = i + flen; j < len; j++) {
				/* A line break followed by white space continues the field. */
				if (h[j] == '\r' || h[j] == '\n') {
					if (h[j] == '\n' &&
					    (j + 1 >= len || (h[j + 1] != ' ' && h[j + 1] != '\t')))
						break;
					space = o > 0;
					continue;
				}
				if (h[j] == ' ' || h[j] == '\t') {
					space = o > 0;
					continue;
				}
				if (space && o + 1 < cap)
					out[o++] = ' ';
				space = false;
				if (o + 1 < cap)
					out[o++] = h[j];
			}
			if (cap > 0)
				out[o] = '\0';
			return o > 0;
		}
		i = eol + 1;
	}
	return false;
}

imapq_err queue_message_read(struct store *s, uint32_t id, uint32_t uid, char **payload_r,
			     size_t *len_r, char *content_type, size_t content_type_cap)
{
	struct store_message m;
	imapq_err err = store_message_get(s, id, uid, &m);
	if (err != IMAPQ_OK)
		return err;
	/* Read the header a step at a time until its blank line shows up. */
	char *head = NULL;
	size_t have = 0, hend = 0;
	while (hend == 0 && have < m.size && have < MAIL_MAX_HEADER_BYTES) {
		size_t want = m.size - have < HEADER_STEP ? m.size - have : HEADER_STEP;
		char *h = realloc(head, have + want);
		if (h == NULL) {
			free(head);
			return IMAPQ_E_NOMEM;
		}
		head = h;
		size_t got;
		err = store_body_read(s, id, uid, have, head + have, want, &got);
		if (err != IMAPQ_OK) {
			free(head);
			return err;
		}
		if (got == 0)
			break;
		size_t from = have;
		have += got;
		hend = header_end(head, have, from);
	}
	/* Without a blank line the whole message is header and the body is empty. */
	size_t body_at = hend != 0 ? hend : (have < MAIL_MAX_HEADER_BYTES ? m.size : 0);
	if (content_type != NULL && content_type_cap > 0 &&
	    !find_content_type(head ? head : "", hend ? hend : have, content_type,
			       content_type_cap))
		snprintf(content_type, content_type_cap, "text/plain");
	size_t len = m.size - body_at;
	char *body = malloc(len + 1);
	if (body == NULL) {
		free(head);
		return IMAPQ_E_NOMEM;
	}
	size_t copied = 0;
	if (body_at < have) {
		copied = have - body_at < len ? have - body_at : len;
		memcpy(body, head + body_at, copied);
	}
	free(head);
	while (copied < len) {
		size_t got;
		err = store_body_read(s, id, uid, body_at + copied, body + copied, len - copied,
				      &got);
		if (err != IMAPQ_OK || got == 0) {
			free(body);
			return err != IMAPQ_OK ? err : IMAPQ_E_IO;
		}
		copied += got;
	}
	body[len] = '\0';
	*payload_r = body;
	*len_r = len;
	return IMAPQ_OK;
}
