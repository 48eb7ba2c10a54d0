#include "imap/base/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

imapq_err net_listen(const char *host, unsigned port, int backlog, int *fd_r, unsigned *port_r)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *res;
	char service[16];
	snprintf(service, sizeof service, "%u", port);
	if (getaddrinfo(host[0] != '\0' ? host : NULL, service, &hints, &res) != 0)
		return IMAPQ_E_INVALID;

	imapq_err err = IMAPQ_E_IO;
	for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, backlog) != 0) {
			err = errno == EADDRINUSE ? IMAPQ_E_EXISTS : IMAPQ_E_IO;
			close(fd);
			continue;
		}
		struct sockaddr_storage ss;
		socklen_t len = sizeof ss;
		getsockname(fd, (struct sockaddr *)&ss, &len);
		*port_r = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
							 : ((struct sockaddr_in *)&ss)->sin_port);
		*fd_r = fd;
		err = IMAPQ_OK;
		break;
	}
	freeaddrinfo(res);
	return err;
}

int net_accept(int listen_fd)
{
	int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return -1;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

bool net_peer_is_loopback(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0)
		return false;
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
		return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
	}
	if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
		if (IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr))
			return true;
		return IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr) && sin6->sin6_addr.s6_addr[12] == 127;
	}
	return ss.ss_family == AF_UNIX;
}

void net_peer_name(int fd, char *buf, unsigned cap)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;
	if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET) {
			const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
			inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host);
			port = ntohs(sin->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
			inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof host);
			port = ntohs(sin6->sin6_port);
			snprintf(buf, cap, "[%s]:%u", host, port);
			return;
		}
	}
	snprintf(buf, cap, "%s:%u", host, port);
}
