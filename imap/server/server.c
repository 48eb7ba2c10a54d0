/* The IMAP server object: listeners, the session list, and the wake-ups that connect the store's
 * other threads (journal flusher, HTTP workers) to the sessions on the loop. */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "imap/base/limits.h"
#include "imap/base/log.h"
#include "imap/base/net.h"
#include "imap/server/server-private.h"

#define SERVER_TICK_MS		 1000
#define SERVER_SHUTDOWN_GRACE_MS 5000

void server_release_held(struct imap_server *server, bool destroy)
{
	uint64_t durable = store_durable_lsn(server->opts.store);
	struct session **pp = &server->held;
	while (*pp != NULL) {
		struct session *s = *pp;
		if (s->hold_lsn <= durable) {
			*pp = s->next_held;
			s->next_held = NULL;
			atomic_fetch_sub(&server->nheld, 1);
			session_release(s, durable);
			if (destroy && session_done(s))
				session_destroy(s);
		} else {
			pp = &s->next_held;
		}
	}
}

void server_note_idle(struct imap_server *server, bool idling)
{
	if (idling)
		atomic_fetch_add(&server->nidle, 1);
	else
		atomic_fetch_sub(&server->nidle, 1);
}

/* On the loop: hands out output whose state became durable. */
static void on_durable(void *arg)
{
	struct imap_server *server = arg;
	atomic_store(&server->durable_posted, 0);
	server_release_held(server, true);
}

/* From the journal's flusher thread: one wake-up per loop round is enough. */
static void commit_hook(void *arg, uint64_t durable_lsn)
{
	struct imap_server *server = arg;
	(void)durable_lsn;
	if (atomic_load(&server->nheld) > 0 && atomic_exchange(&server->durable_posted, 1) == 0)
		loop_post(server->opts.loop, on_durable, server);
}

/* On the loop: idling sessions report what changed at once (RFC 2177). */
static void on_change(void *arg)
{
	struct imap_server *server = arg;
	atomic_store(&server->change_posted, 0);
	for (struct session *s = server->sessions, *next; s != NULL; s = next) {
		next = s->next;
		session_idle_update(s);
		if (session_done(s))
			session_destroy(s);
	}
}

/* From whichever thread changed a mailbox, with the store's lock held. */
static void change_hook(void *arg, uint32_t id)
{
	struct imap_server *server = arg;
	(void)id;
	if (atomic_load(&server->nidle) > 0 && atomic_exchange(&server->change_posted, 1) == 0)
		loop_post(server->opts.loop, on_change, server);
}

/* Ends sessions that stayed silent past their timeout, and keeps the others' views current. */
static void on_tick(void *arg)
{
	struct imap_server *server = arg;
	server->tick = NULL;
	uint64_t now = loop_now_ms(server->opts.loop);
	for (struct session *s = server->sessions, *next; s != NULL; s = next) {
		next = s->next;
		uint64_t limit = (s->state & STATE_NOT_AUTHENTICATED) ? IMAPQ_PREAUTH_TIMEOUT_S
								      : IMAPQ_AUTH_TIMEOUT_S;
		if (s->tls_state == SESSION_TLS_HANDSHAKE && !s->closing &&
		    now - s->tls_started_ms > IMAPQ_TLS_HANDSHAKE_TIMEOUT_S * 1000) {
			log_info(SERVER_LOG, "%s: TLS handshake timed out", s->peer);
			session_abort(s);
		} else if (s->stalled_ms != 0 && now - s->stalled_ms > limit * 1000) {
			/* A peer that takes no output would hold its session and output forever. */
			log_info(SERVER_LOG, "%s: output stalled for %llu s; closing", s->peer,
				 (unsigned long long)limit);
			session_abort(s);
		} else if (!s->closing && (s->state & STATE_NOT_AUTHENTICATED) &&
			   now - s->connected_ms > IMAPQ_LOGIN_DEADLINE_S * 1000) {
			log_info(SERVER_LOG, "%s: no login within %u s", s->peer,
				 (unsigned)IMAPQ_LOGIN_DEADLINE_S);
			session_lit(s, "* BYE Autologout; no login in time\r\n");
			session_close_after_output(s);
			session_seal(s);
		} else if (!s->closing && now - s->last_active_ms > limit * 1000) {
			log_info(SERVER_LOG, "%s: idle timeout", s->peer);
			session_lit(s, "* BYE Autologout; idle for too long\r\n");
			session_close_after_output(s);
			session_seal(s);
		} else if (!s->closing && (s->state & STATE_SELECTED) && !view_load_expunges(s)) {
			/* Loading them each tick (without announcing) keeps a session between
			 * commands from falling behind the expunge history, which folds its oldest
			 * half past EXPUNGE_LOG_MAX_RUNS runs. */
			session_seal(s);
		}
		if (session_done(s))
			session_destroy(s);
	}
	if (server->shutting_down && server->nsessions > 0 &&
	    now - server->shutdown_ms > SERVER_SHUTDOWN_GRACE_MS) {
		while (server->sessions != NULL)
			session_destroy(server->sessions);
	}
	loop_timer_add(server->opts.loop, SERVER_TICK_MS, on_tick, server, &server->tick);
}

/* Sessions connected from addr. A linear walk: accepting is rare next to commands, and the
 * walk costs far less than the session it may refuse. */
static unsigned sessions_from(const struct imap_server *server, const char *addr)
{
	unsigned n = 0;
	for (const struct session *s = server->sessions; s != NULL; s = s->next)
		n += strcmp(s->addr, addr) == 0;
	return n;
}

/* Says why a connection is refused and closes it; the socket is new, so the line fits. */
static void refuse(int fd, const char *line, size_t len)
{
	ssize_t n = write(fd, line, len);
	(void)n;
	close(fd);
}

/* Accepts every waiting connection. */
static void on_accept(void *arg, unsigned events)
{
	struct listener *l = arg;
	struct imap_server *server = l->server;
	(void)events;
	for (;;) {
		int fd = net_accept(l->fd);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
			    errno != ECONNABORTED)
				log_warn(SERVER_LOG, "accept: %s", strerror(errno));
			return;
		}
		if (server->shutting_down || server->nsessions >= IMAPQ_MAX_CONNECTIONS) {
			static const char busy[] = "* BYE [UNAVAILABLE] Too many connections\r\n";
			refuse(fd, busy, sizeof busy - 1);
			log_warn(SERVER_LOG, "connection refused: %u sessions", server->nsessions);
			continue;
		}
		char peer[64], addr[64];
		net_peer_name(fd, peer, sizeof peer);
		session_addr_of(peer, addr, sizeof addr);
		/* Loopback is exempt: a local proxy brings every client from there. */
		unsigned from = net_peer_is_loopback(fd) ? 0 : sessions_from(server, addr);
		if (from >= IMAPQ_MAX_CONNECTIONS_PER_ADDR) {
			static const char busy[] =
			    "* BYE [UNAVAILABLE] Too many connections from your address\r\n";
			refuse(fd, busy, sizeof busy - 1);
			log_warn(SERVER_LOG, "%s: connection refused: %u sessions from %s", peer,
				 from, addr);
			continue;
		}
		session_accept(server, fd, l->tls);
	}
}

imapq_err imap_server_create(const struct imap_server_options *opts, struct imap_server **server_r)
{
	struct imap_server *server = calloc(1, sizeof *server);
	if (server == NULL)
		return IMAPQ_E_NOMEM;
	server->opts = *opts;
	server->spool_dir = opts->spool_dir != NULL ? opts->spool_dir : "/tmp";
	if (server->opts.search_ms == 0)
		server->opts.search_ms = IMAPQ_SEARCH_MS;
	imapq_err err = IMAPQ_OK;
	if (opts->auth != NULL)
		err = auth_worker_create(opts->loop, opts->auth, opts->auth_ctx, &server->auth);
	if (err == IMAPQ_OK)
		err = worker_create(opts->loop, IMAPQ_MAX_PENDING_SEARCHES, &server->search);
	if (err == IMAPQ_OK)
		err = loop_timer_add(opts->loop, SERVER_TICK_MS, on_tick, server, &server->tick);
	if (err == IMAPQ_OK)
		err = store_add_commit_hook(opts->store, commit_hook, server);
	if (err != IMAPQ_OK) {
		loop_timer_cancel(&server->tick);
		worker_destroy(&server->search);
		auth_worker_destroy(&server->auth);
		free(server);
		return err;
	}
	store_set_change_hook(opts->store, change_hook, server);
	*server_r = server;
	return IMAPQ_OK;
}

/* Adds a listener; tls makes it an implicit-TLS one. */
static imapq_err listen_on(struct imap_server *server, const char *host, unsigned port, bool tls,
			   unsigned *port_r)
{
	struct listener **ls = realloc(server->listeners, (server->nlisteners + 1) * sizeof *ls);
	if (ls == NULL)
		return IMAPQ_E_NOMEM;
	server->listeners = ls;
	struct listener *l = calloc(1, sizeof *l);
	if (l == NULL)
		return IMAPQ_E_NOMEM;
	l->server = server;
	l->tls = tls;
	imapq_err err = net_listen(host, port, 512, &l->fd, port_r);
	if (err == IMAPQ_OK) {
		err = loop_io_add(server->opts.loop, l->fd, LOOP_READ, on_accept, l, &l->io);
		if (err != IMAPQ_OK)
			close(l->fd);
	}
	if (err != IMAPQ_OK) {
		free(l);
		return err;
	}
	server->listeners[server->nlisteners++] = l;
	log_info(SERVER_LOG, "listening on %s:%u%s", host, *port_r, tls ? " (implicit TLS)" : "");
	return IMAPQ_OK;
}

imapq_err imap_server_listen(struct imap_server *server, const char *host, unsigned port,
			     unsigned *port_r)
{
	return listen_on(server, host, port, false, port_r);
}

imapq_err imap_server_listen_tls(struct imap_server *server, const char *host, unsigned port,
				 unsigned *port_r)
{
	if (server->opts.tls == NULL)
		return IMAPQ_E_INVALID;
	return listen_on(server, host, port, true, port_r);
}

/* Closes the listening sockets. */
static void close_listeners(struct imap_server *server)
{
	for (size_t i = 0; i < server->nlisteners; i++) {
		loop_io_remove(&server->listeners[i]->io);
		close(server->listeners[i]->fd);
		free(server->listeners[i]);
	}
	free(server->listeners);
	server->listeners = NULL;
	server->nlisteners = 0;
}

void imap_server_shutdown(struct imap_server *server)
{
	if (server->shutting_down)
		return;
	server->shutting_down = true;
	server->shutdown_ms = loop_now_ms(server->opts.loop);
	close_listeners(server);
	for (struct session *s = server->sessions, *next; s != NULL; s = next) {
		next = s->next;
		if (s->tls_state == SESSION_TLS_HANDSHAKE) {
			/* Nothing can be said to a peer that has not finished its handshake. */
			session_abort(s);
			session_destroy(s);
			continue;
		}
		session_lit(s, "* BYE Server shutting down\r\n");
		session_close_after_output(s);
		session_seal(s);
		if (session_done(s))
			session_destroy(s);
	}
}

unsigned imap_server_sessions(const struct imap_server *server)
{
	return server->nsessions;
}

uint32_t server_recent_claim(struct imap_server *server, uint32_t id, uint32_t upto)
{
	struct recent_entry *e = NULL;
	for (size_t i = 0; i < server->nrecent; i++) {
		if (server->recent[i].id == id) {
			e = &server->recent[i];
			break;
		}
	}
	if (e == NULL) {
		if (server->nrecent == server->caprecent) {
			size_t cap = server->caprecent ? server->caprecent * 2 : 16;
			struct recent_entry *r = realloc(server->recent, cap * sizeof *r);
			if (r == NULL)
				return UINT32_MAX; /* no \Recent rather than a wrong one */
			server->recent = r;
			server->caprecent = cap;
		}
		e = &server->recent[server->nrecent++];
		*e = (struct recent_entry){.id = id, .floor = 1};
	}
	uint32_t floor = e->floor;
	if (upto >= e->floor)
		e->floor = upto + 1;
	return floor;
}

void imap_server_destroy(struct imap_server **serverp)
{
	struct imap_server *server = *serverp;
	if (server == NULL)
		return;
	*serverp = NULL;
	store_remove_commit_hook(server->opts.store, commit_hook, server);
	store_set_change_hook(server->opts.store, NULL, NULL);
	close_listeners(server);
	while (server->sessions != NULL)
		session_destroy(server->sessions);
	/* After the sessions, which cancel their jobs: each thread ends after the one it runs. */
	auth_worker_destroy(&server->auth);
	worker_destroy(&server->search);
	loop_timer_cancel(&server->tick);
	free(server->recent);
	free(server);
}
