/* Socket helpers shared by the listeners. */
#ifndef IMAPQ_NET_H
#define IMAPQ_NET_H

#include <stdbool.h>

#include "imap/base/error.h"

/* Binds and listens on host:port (IPv4 or IPv6 literal or a name; port 0 picks a free port) with
 * a non-blocking, close-on-exec socket; *port_r receives the bound port. */
imapq_err net_listen(const char *host, unsigned port, int backlog, int *fd_r, unsigned *port_r);

/* Accepts one connection as a non-blocking, close-on-exec socket with TCP_NODELAY set (Nagle
 * with delayed ACKs costs tens of milliseconds per command round trip). Returns -1 with errno
 * set (EAGAIN when none is waiting). */
int net_accept(int listen_fd);

/* True when the peer of fd is a loopback address. */
bool net_peer_is_loopback(int fd);

/* Writes the peer address of fd as text ("1.2.3.4:5678" or "[::1]:5678") into buf. */
void net_peer_name(int fd, char *buf, unsigned cap);

#endif
