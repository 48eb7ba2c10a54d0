/* A session: one client connection, its input parser, its output queue held for durability,
 * and its state (RFC 3501 section 3). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "imap/base/crc32c.h"
#include "imap/base/limits.h"
#include "imap/base/log.h"
#include "imap/base/net.h"
#include "imap/server/server-private.h"

void session_write(struct session *s, const char *data, size_t len)
{
	buf_append(&s->out, data, len);
}

void session_printf(struct session *s, const char *fmt, ...)
{
	char small[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof small, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof small) {
		buf_append(&s->out, small, (size_t)n);
		return;
	}
	char *big = malloc((size_t)n + 1);
	if (big == NULL) {
		s->out.failed = true;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	buf_append(&s->out, big, (size_t)n);
	free(big);
}

size_t session_output_limit(const struct session *s)
{
	return (s->state & STATE_NOT_AUTHENTICATED) ? IMAPQ_MAX_PENDING_OUTPUT_PREAUTH
						    : IMAPQ_MAX_PENDING_OUTPUT;
}

void session_addr_of(const char *peer, char *addr, size_t cap)
{
	const char *colon = strrchr(peer, ':');
	size_t len = colon != NULL ? (size_t)(colon - peer) : strlen(peer);
	if (cap == 0)
		return;
	if (len >= cap)
		len = cap - 1;
	memcpy(addr, peer, len);
	addr[len] = '\0';
}

/* Remembers whether the peer took output: the tick ends sessions whose output stalls too long. */
static void note_output_progress(struct session *s, size_t before)
{
	if (s->writable == 0)
		s->stalled_ms = 0;
	else if (s->writable < before || s->stalled_ms == 0)
		s->stalled_ms = loop_now_ms(s->server->opts.loop);
}

/* Watches for input while the session reads and for output while it has bytes to send; TLS can
 * turn either around (a read that needs to write, a write that needs to read). */
static void session_update_events(struct session *s)
{
	bool want_read = !s->closing && buf_len(&s->out) < session_output_limit(s) &&
			 s->auth_delay == NULL && s->auth_check == NULL && s->search_job == NULL;
	bool want_write = s->writable > 0;
	switch (s->tls_state) {
	case SESSION_TLS_NONE:
		break;
	case SESSION_TLS_STARTING:
		want_read = false;
		break;
	case SESSION_TLS_HANDSHAKE:
		want_read = !s->closing && !s->tls_read_wants_write;
		want_write = !s->closing && s->tls_read_wants_write;
		break;
	case SESSION_TLS_ON:
		if (s->tls_read_wants_write) {
			want_read = false;
			want_write = true;
		}
		if (s->tls_write_wants_read) {
			want_write = false;
			want_read = true;
		}
		break;
	}
	loop_io_set(s->io, (want_read ? LOOP_READ : 0u) | (want_write ? LOOP_WRITE : 0u));
}

/* The peer is gone or the stream broke: nothing more can be delivered. */
static void drop_output(struct session *s)
{
	buf_reset(&s->out);
	s->writable = 0;
	s->closing = true;
	auth_worker_cancel(&s->auth_check);
	worker_cancel(&s->search_job);
}

void session_abort(struct session *s)
{
	drop_output(s);
	session_update_events(s);
}

/* Sends what TLS accepts of the writable bytes. */
static void flush_tls(struct session *s)
{
	while (s->writable > 0) {
		size_t n;
		enum tls_io r = tls_conn_write(s->tls, buf_bytes(&s->out), s->writable, &n);
		s->tls_write_wants_read = r == TLS_IO_WANT_READ;
		if (r == TLS_IO_OK) {
			buf_consume(&s->out, n);
			s->writable -= n;
			continue;
		}
		if (r == TLS_IO_ERROR)
			log_info(SERVER_LOG, "%s: TLS write failed: %s", s->peer,
				 tls_conn_error(s->tls));
		if (r != TLS_IO_WANT_READ && r != TLS_IO_WANT_WRITE)
			drop_output(s);
		break;
	}
}

/* Begins the STARTTLS handshake once the cleartext OK has left. */
static void begin_starttls_handshake(struct session *s)
{
	if (s->closing)
		return;
	if (tls_conn_create(s->server->opts.tls, s->fd, &s->tls) != IMAPQ_OK) {
		log_error(SERVER_LOG, "%s: out of memory starting TLS; closing", s->peer);
		drop_output(s);
		return;
	}
	s->tls_state = SESSION_TLS_HANDSHAKE;
	s->tls_after_starttls = true;
	s->tls_started_ms = loop_now_ms(s->server->opts.loop);
}

void session_flush(struct session *s)
{
	size_t before = s->writable;
	if (s->tls_state == SESSION_TLS_HANDSHAKE) {
		/* Output queued meanwhile (the greeting) leaves once the handshake is done. */
		session_update_events(s);
		return;
	}
	if (s->tls_state == SESSION_TLS_ON) {
		flush_tls(s);
		note_output_progress(s, before);
		session_update_events(s);
		return;
	}
	while (s->writable > 0) {
		ssize_t n = write(s->fd, buf_bytes(&s->out), s->writable);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				drop_output(s);
			break;
		}
		buf_consume(&s->out, (size_t)n);
		s->writable -= (size_t)n;
	}
	note_output_progress(s, before);
	if (s->tls_state == SESSION_TLS_STARTING && buf_len(&s->out) == 0 && !s->held)
		begin_starttls_handshake(s);
	session_update_events(s);
}

void session_seal(struct session *s)
{
	if (buf_failed(&s->out)) {
		/* A reply could not be built: the stream is no longer trustworthy. */
		log_error(SERVER_LOG, "%s: out of memory building a reply; closing", s->peer);
		drop_output(s);
		return;
	}
	struct store *store = s->server->opts.store;
	uint64_t visible = store_visible_lsn(store);
	if (!s->held && store_durable_lsn(store) >= visible) {
		s->writable = buf_len(&s->out);
	} else {
		if (visible > s->hold_lsn)
			s->hold_lsn = visible;
		if (!s->held) {
			s->held = true;
			s->next_held = s->server->held;
			s->server->held = s;
			atomic_fetch_add(&s->server->nheld, 1);
			/* The commit hook skips its wake-up while nothing is held: a commit that
			 * slipped in before the count went up is caught here. */
			if (store_durable_lsn(store) >= s->hold_lsn) {
				server_release_held(s->server, false);
				return;
			}
		}
	}
	session_flush(s);
}

/* Runs what waited while held output filled the session's limit: an IDLE update, commands. */
static void resume_input(void *arg)
{
	struct session *s = arg;
	s->resume = NULL;
	if (s->idle_owed)
		session_idle_update(s);
	session_resume(s);
}

void session_release(struct session *s, uint64_t durable_lsn)
{
	if (durable_lsn < s->hold_lsn)
		return;
	s->held = false;
	s->writable = buf_len(&s->out);
	session_flush(s);
	/* Pipelined commands that stopped at the output limit get no socket event of their own
	 * once the output is gone: run them from the loop rather than from inside this release,
	 * which may come from a command's own seal. */
	if ((buf_len(&s->in) > 0 || s->idle_owed) && !s->closing && s->resume == NULL &&
	    buf_len(&s->out) < session_output_limit(s))
		loop_timer_add(s->server->opts.loop, 0, resume_input, s, &s->resume);
}

void session_close_after_output(struct session *s)
{
	s->closing = true;
	/* A login still being checked, or a search, gets no answer after the farewell. */
	auth_worker_cancel(&s->auth_check);
	worker_cancel(&s->search_job);
	session_update_events(s);
}

/* Frees the spool of an APPEND body. */
static void spool_clear(struct spool *sp)
{
	if (sp->fd >= 0)
		close(sp->fd);
	buf_free(&sp->mem);
	*sp = (struct spool){.fd = -1};
}

void session_destroy(struct session *s)
{
	struct imap_server *server = s->server;
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		server->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	server->nsessions--;
	if (s->held) {
		struct session **pp = &server->held;
		while (*pp != s)
			pp = &(*pp)->next_held;
		*pp = s->next_held;
		atomic_fetch_sub(&server->nheld, 1);
	}
	if (s->idling)
		server_note_idle(server, false);
	loop_timer_cancel(&s->auth_delay);
	/* A login still being checked, or a search, must never reach the freed session. */
	auth_worker_cancel(&s->auth_check);
	worker_cancel(&s->search_job);
	loop_timer_cancel(&s->resume);
	loop_io_remove(&s->io);
	tls_conn_destroy(&s->tls);
	close(s->fd);
	parser_destroy(&s->parser);
	view_close(s);
	spool_clear(&s->spool);
	buf_free(&s->in);
	buf_free(&s->out);
	log_debug(SERVER_LOG, "%s: closed", s->peer);
	free(s);
}

/* --- APPEND bodies streamed from the parser --- */

static imapq_err spool_begin(void *ctx, const struct parser_command *partial, uint64_t size,
			     bool *stream_r)
{
	struct session *s = ctx;
	*stream_r = false;
	/* Only the message literal of APPEND streams: it follows the mailbox argument. */
	if (strcasecmp(partial->name, "APPEND") != 0 || partial->count == 0)
		return IMAPQ_OK;
	if (!(s->state & (STATE_AUTHENTICATED | STATE_SELECTED)))
		return IMAPQ_OK;
	if (size > IMAPQ_MAX_MESSAGE_SIZE)
		return IMAPQ_E_TOOBIG;
	spool_clear(&s->spool);
	s->spool.active = true;
	s->spool.size = size;
	if (size > IMAPQ_SPOOL_MEMORY) {
		s->spool.fd = open(s->server->spool_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
		if (s->spool.fd < 0) {
			log_error(SERVER_LOG, "cannot create a spool file in %s: %s",
				  s->server->spool_dir, strerror(errno));
			spool_clear(&s->spool);
			return IMAPQ_E_IO;
		}
	}
	*stream_r = true;
	return IMAPQ_OK;
}

static imapq_err spool_data(void *ctx, const void *data, size_t len)
{
	struct session *s = ctx;
	struct spool *sp = &s->spool;
	sp->crc = crc32c(sp->crc, data, len);
	sp->got += len;
	if (sp->fd < 0) {
		buf_append(&sp->mem, data, len);
		return buf_failed(&sp->mem) ? IMAPQ_E_NOMEM : IMAPQ_OK;
	}
	const char *p = data;
	while (len > 0) {
		ssize_t n = write(sp->fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == ENOSPC ? IMAPQ_E_NOSPACE : IMAPQ_E_IO;
		}
		p += n;
		len -= (size_t)n;
	}
	return IMAPQ_OK;
}

static void spool_end(void *ctx, bool complete)
{
	struct session *s = ctx;
	if (complete)
		s->spool.complete = true;
	else
		spool_clear(&s->spool);
}

/* --- input --- */

/* Replies to a command that failed to parse. */
static void reply_parse_error(struct session *s, const struct parser_error *e)
{
	const char *code = imapq_err_imap_code(e->code);
	bool bad = e->code == IMAPQ_E_INVALID || e->code == IMAPQ_E_LIMIT ||
		   imapq_err_imap_is_bad(e->code);
	const char *tag = e->tag != NULL ? e->tag : "*";
	if (code != NULL && e->code != IMAPQ_E_INVALID)
		session_printf(s, "%s %s [%s] %s\r\n", tag, bad ? "BAD" : "NO", code, e->message);
	else
		session_printf(s, "%s BAD %s\r\n", tag, e->message);
	/* A breached limit is worth an operator's attention; plain syntax errors are not. */
	if (e->code == IMAPQ_E_INVALID)
		log_debug(SERVER_LOG, "%s: %s: %s", s->peer, tag, e->message);
	else
		log_info(SERVER_LOG, "%s: %s refused: %s%s", s->peer, tag, e->message,
			 e->fatal ? " (closing)" : "");
	spool_clear(&s->spool);
}

/* Takes one line from the input while the session waits for a line that is not a command (the
 * DONE of IDLE, RFC 2177, or an AUTHENTICATE response); false when no full line is there yet. */
static bool take_line(struct session *s, char *line, size_t cap, size_t *len_r)
{
	const char *data = buf_bytes(&s->in);
	size_t len = buf_len(&s->in);
	const char *lf = memchr(data, '\n', len);
	if (lf == NULL) {
		if (len < cap)
			return false;
		/* Longer than any valid answer: take it as a bad one. */
		buf_reset(&s->in);
		*len_r = cap;
		return true;
	}
	size_t n = (size_t)(lf - data);
	size_t text = n > 0 && data[n - 1] == '\r' ? n - 1 : n;
	if (text >= cap) {
		*len_r = cap;
	} else {
		memcpy(line, data, text);
		line[text] = '\0';
		*len_r = text;
	}
	buf_consume(&s->in, n + 1);
	return true;
}

/* Handles input while IDLE or AUTHENTICATE waits; false when more input is needed. */
static bool process_line_input(struct session *s)
{
	char line[2048];
	size_t len;
	if (!take_line(s, line, sizeof line, &len))
		return false;
	if (s->auth_pending) {
		if (len >= sizeof line) {
			line[0] = '\0';
			len = 0;
		}
		session_auth_response(s, line, len);
	} else {
		s->idling = false;
		s->idle_owed = false; /* DONE syncs the view below */
		server_note_idle(s->server, false);
		if (len == 4 && strncasecmp(line, "DONE", 4) == 0) {
			if (s->state & STATE_SELECTED)
				view_sync(s, true);
			session_printf(s, "%s OK IDLE terminated\r\n", s->idle_tag);
		} else {
			session_printf(s, "%s BAD Expected DONE\r\n", s->idle_tag);
		}
	}
	session_seal(s);
	return true;
}

/* Parses and runs commands from the input buffer until it is empty or output must drain. */
static void process_input(struct session *s)
{
	while (buf_len(&s->in) > 0 && !s->closing && buf_len(&s->out) < session_output_limit(s)) {
		if (s->auth_delay != NULL || s->auth_check != NULL || s->search_job != NULL)
			return;
		if (s->idling || s->auth_pending) {
			if (!process_line_input(s))
				return;
			continue;
		}
		size_t used = 0;
		enum parser_result r =
		    parser_feed(s->parser, buf_bytes(&s->in), buf_len(&s->in), &used);
		buf_consume(&s->in, used);
		switch (r) {
		case PARSER_NEED_MORE:
			return;
		case PARSER_CONTINUE:
			session_lit(s, "+ Ready for literal data\r\n");
			session_seal(s);
			break;
		case PARSER_COMMAND:
			session_dispatch(s, parser_command(s->parser));
			session_seal(s);
			break;
		case PARSER_ERROR: {
			const struct parser_error *e = parser_error(s->parser);
			reply_parse_error(s, e);
			if (e->fatal) {
				session_lit(s, "* BYE Protocol error\r\n");
				s->closing = true;
			}
			session_seal(s);
			if (e->fatal)
				return;
			break;
		}
		}
	}
}

/* Reads decrypted input: record after record until OpenSSL wants the socket, or a chunk is in and
 * OpenSSL holds nothing back (epoll reports what is still in the socket, not what OpenSSL has
 * buffered). False when the peer is gone. */
static bool read_tls_input(struct session *s)
{
	size_t total = 0;
	for (;;) {
		char *dst = buf_reserve(&s->in, IMAPQ_READ_CHUNK);
		if (dst == NULL)
			return false;
		size_t n;
		enum tls_io r = tls_conn_read(s->tls, dst, IMAPQ_READ_CHUNK, &n);
		s->tls_read_wants_write = r == TLS_IO_WANT_WRITE;
		if (r == TLS_IO_OK) {
			buf_commit(&s->in, n);
			total += n;
			if (total >= IMAPQ_READ_CHUNK && !tls_conn_pending(s->tls))
				break;
			continue;
		}
		if (r == TLS_IO_WANT_READ || r == TLS_IO_WANT_WRITE)
			break;
		if (r == TLS_IO_ERROR)
			log_info(SERVER_LOG, "%s: TLS read failed: %s", s->peer,
				 tls_conn_error(s->tls));
		return false;
	}
	if (total > 0)
		s->last_active_ms = loop_now_ms(s->server->opts.loop);
	return true;
}

/* Reads what the socket has; false when the peer is gone. */
static bool read_input(struct session *s)
{
	if (s->tls_state == SESSION_TLS_ON)
		return read_tls_input(s);
	char *dst = buf_reserve(&s->in, IMAPQ_READ_CHUNK);
	if (dst == NULL)
		return false;
	ssize_t n = read(s->fd, dst, IMAPQ_READ_CHUNK);
	if (n > 0) {
		buf_commit(&s->in, (size_t)n);
		s->last_active_ms = loop_now_ms(s->server->opts.loop);
		return true;
	}
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return true;
	return false;
}

/* True when the session has nothing left to do and should be freed. */
bool session_done(const struct session *s)
{
	return s->closing && buf_len(&s->out) == 0 && !s->held;
}

/* The session as it starts over TLS: after STARTTLS everything learned in cleartext is forgotten
 * (RFC 3501 6.2.1) and the capabilities are announced again. */
static void tls_established(struct session *s)
{
	char desc[128];
	tls_conn_describe(s->tls, desc, sizeof desc);
	log_debug(SERVER_LOG, "%s: TLS established (%s)", s->peer, desc);
	s->tls_state = SESSION_TLS_ON;
	s->last_active_ms = loop_now_ms(s->server->opts.loop);
	if (s->tls_after_starttls) {
		parser_reset(s->parser);
		buf_reset(&s->in);
		s->enabled = 0;
		session_lit(s, "* CAPABILITY ");
		cmd_write_capabilities(s);
		session_lit(s, "\r\n");
		session_seal(s);
	}
}

/* Advances the handshake; a failed one ends the session (the caller checks session_done). */
static void handshake_step(struct session *s)
{
	enum tls_io r = tls_conn_handshake(s->tls);
	s->tls_read_wants_write = r == TLS_IO_WANT_WRITE;
	switch (r) {
	case TLS_IO_OK:
		tls_established(s);
		return;
	case TLS_IO_WANT_READ:
	case TLS_IO_WANT_WRITE:
		session_update_events(s);
		return;
	case TLS_IO_CLOSED:
		log_info(SERVER_LOG, "%s: TLS handshake failed: connection closed by the peer",
			 s->peer);
		break;
	case TLS_IO_ERROR:
		log_info(SERVER_LOG, "%s: TLS handshake failed: %s", s->peer,
			 tls_conn_error(s->tls));
		break;
	}
	session_abort(s);
}

void session_resume(struct session *s)
{
	process_input(s);
	session_update_events(s);
	if (session_done(s))
		session_destroy(s);
}

static void on_io(void *arg, unsigned events)
{
	struct session *s = arg;
	if (s->tls_state == SESSION_TLS_HANDSHAKE && !s->closing) {
		handshake_step(s);
		if (s->tls_state != SESSION_TLS_ON) {
			if (session_done(s))
				session_destroy(s);
			return;
		}
		/* The greeting goes out now, and the client may have sent a command already. */
		events |= LOOP_READ | LOOP_WRITE;
	}
	bool can_write = events & LOOP_WRITE;
	bool can_read = events & (LOOP_READ | LOOP_HANGUP);
	if (s->tls_write_wants_read)
		can_write = can_read;
	if (s->tls_read_wants_write)
		can_read = can_write || (events & LOOP_HANGUP);
	if (can_write)
		session_flush(s);
	if (s->idle_owed && !s->closing && buf_len(&s->out) < session_output_limit(s))
		session_idle_update(s);
	if (can_read && !s->closing && s->tls_state != SESSION_TLS_STARTING) {
		if (!read_input(s)) {
			/* The peer closed or failed: nothing more can reach it. */
			session_destroy(s);
			return;
		}
		process_input(s);
		session_update_events(s);
	} else if (!can_read && buf_len(&s->in) > 0 && !s->closing) {
		/* Output drained below the limit: resume commands that were waiting. */
		process_input(s);
		session_update_events(s);
	}
	if (session_done(s))
		session_destroy(s);
}

void session_enable_condstore(struct session *s)
{
	if (s->enabled & ENABLED_CONDSTORE)
		return;
	s->enabled |= ENABLED_CONDSTORE;
	struct store_mailbox_status st;
	if ((s->state & STATE_SELECTED) &&
	    store_mailbox_status(s->server->opts.store, s->view.id, &st) == IMAPQ_OK)
		session_printf(s, "* OK [HIGHESTMODSEQ %llu] Highest\r\n",
			       (unsigned long long)st.highestmodseq);
}

void session_idle_update(struct session *s)
{
	if (!s->idling || !(s->state & STATE_SELECTED))
		return;
	/* A client that reads nothing while it idles must not make the server queue every change:
	 * the view remembers what was reported, so one sync after the output drains catches up. */
	s->idle_owed = buf_len(&s->out) >= session_output_limit(s);
	if (s->idle_owed)
		return;
	view_sync(s, true);
	session_seal(s);
}

void session_start_tls(struct session *s)
{
	buf_reset(&s->in);
	parser_reset(s->parser);
	s->tls_state = SESSION_TLS_STARTING;
}

bool session_is_tls(const struct session *s)
{
	return s->tls != NULL;
}

bool session_password_allowed(const struct session *s)
{
	return s->tls != NULL || s->loopback || s->server->opts.allow_plaintext;
}

void session_accept(struct imap_server *server, int fd, bool tls)
{
	struct session *s = calloc(1, sizeof *s);
	if (s == NULL) {
		close(fd);
		return;
	}
	s->server = server;
	s->fd = fd;
	s->spool.fd = -1;
	s->state = STATE_NOT_AUTHENTICATED;
	net_peer_name(fd, s->peer, sizeof s->peer);
	session_addr_of(s->peer, s->addr, sizeof s->addr);
	s->loopback = net_peer_is_loopback(fd);
	s->last_active_ms = loop_now_ms(server->opts.loop);
	s->connected_ms = s->last_active_ms;
	struct parser_limits limits = parser_limits_default(false);
	struct parser_sink sink = {
	    .threshold = 0, .begin = spool_begin, .data = spool_data, .end = spool_end, .ctx = s};
	if (parser_create(&limits, &s->parser) != IMAPQ_OK ||
	    loop_io_add(server->opts.loop, fd, LOOP_READ, on_io, s, &s->io) != IMAPQ_OK) {
		parser_destroy(&s->parser);
		close(fd);
		free(s);
		return;
	}
	if (tls) {
		if (tls_conn_create(server->opts.tls, fd, &s->tls) != IMAPQ_OK) {
			log_error(SERVER_LOG, "%s: out of memory starting TLS", s->peer);
			loop_io_remove(&s->io);
			parser_destroy(&s->parser);
			close(fd);
			free(s);
			return;
		}
		s->tls_state = SESSION_TLS_HANDSHAKE;
		s->tls_started_ms = s->last_active_ms;
	}
	parser_set_sink(s->parser, &sink);
	s->next = server->sessions;
	if (server->sessions != NULL)
		server->sessions->prev = s;
	server->sessions = s;
	server->nsessions++;
	log_debug(SERVER_LOG, "%s: connected", s->peer);

	session_lit(s, "* OK [CAPABILITY ");
	cmd_write_capabilities(s);
	session_lit(s, "] imapq ready\r\n");
	session_seal(s);
}
