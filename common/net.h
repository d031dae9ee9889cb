/* Listening sockets from configuration addresses, and the descriptor limit. */
#ifndef CASCADE_NET_H
#define CASCADE_NET_H

#include <stddef.h>

/* net_listen_tcp binds and listens on "host:port", "[v6]:port" or ":port"
 * (all addresses: IPv6 and IPv4 when the host has IPv6). |key| names the
 * configuration key in errors. The address actually bound (port 0 resolved)
 * goes to |shown|. Returns the socket (close-on-exec, and non-blocking
 * when |nonblock|) or -1 with |err|. */
int net_listen_tcp(const char *key, const char *addr, int nonblock, char *shown, size_t shownlen,
                   char *err, size_t errlen);

/* net_peer_name writes the peer of socket |fd| as "1.2.3.4:5678",
 * "[::1]:5678" or "local". */
void net_peer_name(int fd, char *buf, size_t len);

/* net_raise_nofile lifts the soft limit on open files to the hard one (every
 * player, publisher, link and connection is a descriptor) and logs the
 * limit in force. */
void net_raise_nofile(void);

#endif
