/* Listening sockets and descriptor limits: see net.h. */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

int net_listen_tcp(const char *key, const char *addr, int nonblock, char *shown, size_t shownlen,
                   char *err, size_t errlen) {
  char host[256], port[16];
  const char *colon = strrchr(addr, ':');
  struct addrinfo hints, *ai = NULL;
  int fd = -1, one = 1, rc;

  if (colon == NULL || colon[1] == '\0' || strlen(colon + 1) >= sizeof(port) ||
      (size_t)(colon - addr) >= sizeof(host)) {
    snprintf(err, errlen, "%s '%s': expected host:port", key, addr);
    return -1;
  }
  memcpy(host, addr, (size_t)(colon - addr));
  host[colon - addr] = '\0';
  snprintf(port, sizeof(port), "%s", colon + 1);
  if (host[0] == '[') {
    size_t n = strlen(host);
    if (n < 2 || host[n - 1] != ']') {
      snprintf(err, errlen, "%s '%s': bad IPv6 literal", key, addr);
      return -1;
    }
    memmove(host, host + 1, n - 2);
    host[n - 2] = '\0';
  }
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  if ((rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai)) != 0) {
    snprintf(err, errlen, "%s '%s': %s", key, addr, gai_strerror(rc));
    return -1;
  }
  struct addrinfo *pick = ai;
  for (struct addrinfo *p = ai; !host[0] && p; p = p->ai_next)
    if (p->ai_family == AF_INET6) pick = p;
  fd = socket(pick->ai_family, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
  if (fd < 0 && !host[0] && pick->ai_family == AF_INET6) {
    /* A host without IPv6: fall back to the IPv4 wildcard. */
    for (struct addrinfo *p = ai; p; p = p->ai_next)
      if (p->ai_family == AF_INET) pick = p;
    fd = socket(pick->ai_family, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
  }
  if (fd < 0) goto fail;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (pick->ai_family == AF_INET6) {
    int zero = 0;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
  }
  /* A fleet reconnecting at once arrives faster than one accept loop takes it:
   * the kernel clamps this to net.core.somaxconn. */
  if (bind(fd, pick->ai_addr, pick->ai_addrlen) != 0 || listen(fd, 4096) != 0) goto fail;
  {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char h[INET6_ADDRSTRLEN] = "?";
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    if (ss.ss_family == AF_INET) {
      inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, h, sizeof(h));
      snprintf(shown, shownlen, "%s:%d", h, ntohs(((struct sockaddr_in *)&ss)->sin_port));
    } else {
      inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, h, sizeof(h));
      snprintf(shown, shownlen, "[%s]:%d", h, ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
    }
  }
  freeaddrinfo(ai);
  return fd;

fail:
  snprintf(err, errlen, "%s '%s': %s", key, addr, strerror(errno));
  if (fd >= 0) close(fd);
  freeaddrinfo(ai);
  return -1;
}


void net_peer_name(int fd, char *buf, size_t len) {
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  char host[INET6_ADDRSTRLEN] = "?";
  if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0) {
    snprintf(buf, len, "?");
  } else if (ss.ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
    snprintf(buf, len, "%s:%u", host, (unsigned)ntohs(a->sin_port));
  } else if (ss.ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
    snprintf(buf, len, "[%s]:%u", host, (unsigned)ntohs(a->sin6_port));
  } else {
    snprintf(buf, len, "local");
  }
}

void net_raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  rlim_t was = rl.rlim_cur;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
      log_warn("main", "cannot raise the open-file limit from %llu: %s",
               (unsigned long long)was, strerror(errno));
      return;
    }
    log_info("main", "open-file limit raised from %llu to %llu (the hard limit)",
             (unsigned long long)was, (unsigned long long)rl.rlim_cur);
  } else {
    log_info("main", "open-file limit %llu (the hard limit)", (unsigned long long)rl.rlim_cur);
  }
}
