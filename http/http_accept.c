/* The HTTP front's acceptor: one thread takes new connections from the listen socket and hands
 * them to libmicrohttpd with MHD_add_connection(), which gives each to a worker thread by its
 * descriptor number, so the workers carry even shares. Left to accept for themselves, the worker
 * that wakes first takes up to ten connections of a burst at a time, and with keep-alive clients
 * one thread can end up serving nearly all of them while the other idles. */
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
			/* Closes the socket itself when it refuses it (a connection limit). */
			(void)MHD_add_connection(server->daemon, fd, (struct sockaddr *)&addr, len);
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
	/* From now on libmicrohttpd's workers leave the listen socket alone. */
	MHD_socket fd = MHD_quiesce_daemon(server->daemon);
	if (fd == MHD_INVALID_SOCKET)
		return IMAPQ_E_UNAVAILABLE;
	server->listen_fd = fd;
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
