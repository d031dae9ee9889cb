/* Controller URL expansion: see ctl_urls.h. */
#define _GNU_SOURCE
#include "ctl_urls.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int ctl_urls_split(const char *url, char *host, size_t hlen, char *port, size_t plen) {
  static const char *const schemes[] = {"tls+tcp://", "tls+tcp4://", "tls+tcp6://", "tcp://",
                                        "tcp4://", "tcp6://", NULL};
  const char *p = NULL, *colon, *hs, *he;
  for (size_t i = 0; schemes[i]; i++)
    if (strncmp(url, schemes[i], strlen(schemes[i])) == 0) {
      p = url + strlen(schemes[i]);
      break;
    }
  if (p == NULL || *p == '\0') return -1;
  if (*p == '[') {
    hs = p + 1;
    if ((he = strchr(hs, ']')) == NULL || he[1] != ':') return -1;
    colon = he + 1;
  } else {
    hs = p;
    if ((colon = strrchr(p, ':')) == NULL) return -1;
    he = colon;
    if (memchr(hs, ':', (size_t)(he - hs)) != NULL) return -1; /* v6 without brackets */
  }
  size_t n = (size_t)(he - hs), m = strlen(colon + 1);
  if (n == 0 || n >= hlen || m == 0 || m >= plen || m > 5) return -1;
  for (const char *q = hs; q < he; q++)
    if ((unsigned char)*q <= ' ' || (unsigned char)*q >= 0x7f || strchr("[]/@?#", *q)) return -1;
  for (const char *d = colon + 1; *d; d++)
    if (*d < '0' || *d > '9') return -1;
  if (atoi(colon + 1) > 65535) return -1;
  memcpy(host, hs, n);
  host[n] = '\0';
  memcpy(port, colon + 1, m + 1);
  return 0;
}

int ctl_urls_host_is_numeric(const char *url) {
  char host[256], port[8];
  struct in6_addr a6;
  struct in_addr a4;
  if (ctl_urls_split(url, host, sizeof(host), port, sizeof(port)) != 0) return 1;
  return inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1;
}

static int push(char **out, size_t max, size_t *n, char *s) {
  if (s == NULL) return -1;
  for (size_t i = 0; i < *n; i++) {
    if (strcmp(out[i], s) == 0) {
      free(s);
      return 0;
    }
  }
  if (*n >= max) {
    free(s);
    return 0;
  }
  out[(*n)++] = s;
  return 0;
}

int ctl_urls_expand(const char *url, const char *const *addrs, size_t naddrs, char **out,
                    size_t max, size_t *n) {
  char host[256], port[8];
  const char *sep = strstr(url, "://");
  if (naddrs == 0 || sep == NULL ||
      ctl_urls_split(url, host, sizeof(host), port, sizeof(port)) != 0)
    return push(out, max, n, strdup(url));
  for (size_t i = 0; i < naddrs && i < CTL_URLS_PER_NAME; i++) {
    char *s = NULL;
    int v6 = strchr(addrs[i], ':') != NULL;
    if (asprintf(&s, "%.*s://%s%s%s:%s", (int)(sep - url), url, v6 ? "[" : "", addrs[i],
                 v6 ? "]" : "", port) < 0)
      return -1;
    if (push(out, max, n, s) != 0) return -1;
  }
  return 0;
}

int ctl_urls_resolve(char *const *in, size_t nin, char ***out, size_t *nout) {
  char **v = calloc(CTL_URLS_MAX, sizeof(*v));
  size_t n = 0;
  if (v == NULL) return -1;
  for (size_t i = 0; i < nin; i++) {
    char host[256], port[8], addr[CTL_URLS_PER_NAME][INET6_ADDRSTRLEN];
    const char *ap[CTL_URLS_PER_NAME];
    size_t na = 0;
    struct addrinfo hints, *res = NULL;
    if (!ctl_urls_host_is_numeric(in[i]) &&
        ctl_urls_split(in[i], host, sizeof(host), port, sizeof(port)) == 0) {
      memset(&hints, 0, sizeof(hints));
      hints.ai_family = strstr(in[i], "tcp4://") ? AF_INET
                        : strstr(in[i], "tcp6://") ? AF_INET6 : AF_UNSPEC;
      hints.ai_socktype = SOCK_STREAM;
      if (getaddrinfo(host, port, &hints, &res) == 0) {
        for (struct addrinfo *a = res; a && na < CTL_URLS_PER_NAME; a = a->ai_next) {
          const void *src = a->ai_family == AF_INET
                                ? (const void *)&((struct sockaddr_in *)a->ai_addr)->sin_addr
                                : (const void *)&((struct sockaddr_in6 *)a->ai_addr)->sin6_addr;
          if ((a->ai_family == AF_INET || a->ai_family == AF_INET6) &&
              inet_ntop(a->ai_family, src, addr[na], sizeof(addr[na])) != NULL) {
            ap[na] = addr[na];
            na++;
          }
        }
        freeaddrinfo(res);
      }
    }
    if (ctl_urls_expand(in[i], ap, na, v, CTL_URLS_MAX, &n) != 0) {
      ctl_urls_free(v, n);
      return -1;
    }
  }
  *out = v;
  *nout = n;
  return 0;
}

void ctl_urls_free(char **v, size_t n) {
  if (v == NULL) return;
  for (size_t i = 0; i < n; i++) free(v[i]);
  free(v);
}

size_t ctl_urls_origin(char *const *in, size_t nin, const char *u) {
  char h1[256], p1[8], h2[256], p2[8];
  const char *s1 = strstr(u, "://");
  if (s1 == NULL || ctl_urls_split(u, h1, sizeof(h1), p1, sizeof(p1)) != 0) return nin;
  for (size_t i = 0; i < nin; i++)
    if (strcmp(in[i], u) == 0) return i;
  for (size_t i = 0; i < nin; i++) {
    const char *s2 = strstr(in[i], "://");
    if (s2 == NULL || s2 - in[i] != s1 - u || strncmp(in[i], u, (size_t)(s1 - u)) != 0 ||
        ctl_urls_host_is_numeric(in[i]) ||
        ctl_urls_split(in[i], h2, sizeof(h2), p2, sizeof(p2)) != 0 || strcmp(p1, p2) != 0)
      continue;
    return i;
  }
  return nin;
}
