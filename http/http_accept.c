/* The HTTP front's acceptor: one thread takes new connections from the listen socket and hands
 * each to one of two libmicrohttpd daemons with MHD_add_connection(), which gives it to a worker
 * thread of that daemon by its descriptor number, so the workers carry even shares. Left to
 * accept for themselves, the worker that wakes first takes up to ten connections of a burst at a
 * time, and with keep-alive clients one thread can end up serving nearly all of them.
 *
 * The first connections, up to poll_cap open at once, go to a daemon that waits with poll(); the
 * rest go to one that waits with epoll. A durable reply suspends its connection until its fsync
 * and resumes it after; in epoll mode libmicrohttpd takes the socket out of its epoll set and
 * puts it back for that (two epoll_ctl calls) and reads once more until EAGAIN, on every request.
 * In poll mode none of that happens, but each wake-up polls every connection of the thread, so
 * it only pays while a thread holds few. A connection stays with its daemon until it closes.
 *
 * Limits: poll_daemon can never hold more than poll_cap, so its own limits are set where they
 * never refuse; epoll_daemon gets the rest of the total and of the per-address limit, so one
 * address never holds more than IMAPQ_HTTP_MAX_PER_IP across both. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/http-private.h"
#include "imap/base/log.h"

/* Pause after an accept that failed for lack of descriptors or memory, so the thread does not
 * spin while the condition lasts; connections wait in the backlog meanwhile. */
#define HTTP_ACCEPT_PAUSE_MS 50

/* Gives the connection to poll_daemon while it has room, else to epoll_daemon, and counts it
 * into that daemon's open connections. Only this thread counts up, and before the hand-over, so
 * the close notice never finds a count at zero. A connection libmicrohttpd drops after taking it
 * but before it starts (no memory for its pool; at the total limit, a pool thread found full) is
 * never counted out: its count then stays one high, which for poll_open only sends more
 * connections to epoll_daemon. */
static void hand_over(struct http_server *server, int fd, struct sockaddr *addr, socklen_t len)
{
	bool poll = atomic_load(&server->poll_open) < server->poll_cap;
	atomic_uint *open = poll ? &server->poll_open : &server->epoll_open;
	atomic_fetch_add(open, 1);
	/* Closes the socket itself when it refuses it (a connection limit). */
	if (MHD_add_connection(poll ? server->poll_daemon : server->epoll_daemon, fd, addr, len) !=
	    MHD_YES)
		atomic_fetch_sub(open, 1);
}

void http_accept_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
			       enum MHD_ConnectionNotificationCode code)
{
	atomic_uint *open = cls;
	(void)conn;
	(void)socket_context;
	if (code == MHD_CONNECTION_NOTIFY_CLOSED)
		atomic_fetch_sub(open, 1);
}

static void *acceptor_main(void *arg)
{
	struct http_server *server = arg;
	for (;;) {
		struct sockaddr_storage addr;
		socklen_t len = sizeof addr;
		int fd = accept4(server->listen_fd, (struct sockaddr *)&addr, &len,
				 SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (atomic_load(&server->accept_stop)) {
			if (fd >= 0)
				close(fd);
			break;
		}
		if (fd >= 0) {
			hand_over(server, fd, (struct sockaddr *)&addr, len);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN || errno == EPROTO)
			continue;
		log_warn("http", "accept: %s; pausing %d ms", strerror(errno),
			 HTTP_ACCEPT_PAUSE_MS);
		usleep(HTTP_ACCEPT_PAUSE_MS * 1000);
	}
	return NULL;
}

imapq_err http_accept_start(struct http_server *server)
{
	int fd = server->listen_fd;
	/* The acceptor blocks in accept4(); shutdown() of the socket wakes it to stop. */
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0)
		return IMAPQ_E_IO;
	if (pthread_create(&server->acceptor, NULL, acceptor_main, server) != 0)
		return IMAPQ_E_NOMEM;
	server->acceptor_running = true;
	return IMAPQ_OK;
}

void http_accept_stop(struct http_server *server)
{
	if (!server->acceptor_running)
		return;
	atomic_store(&server->accept_stop, true);
	shutdown(server->listen_fd, SHUT_RDWR);
	pthread_join(server->acceptor, NULL);
	server->acceptor_running = false;
}
