/* Peer address syntax: see hostaddr.h. */
#include "hostaddr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#define MAX_INPUT 300 /* longer than any address it accepts */

static int why_set(char *why, size_t len, const char *msg) {
  if (why != NULL && len > 0) snprintf(why, len, "%s", msg);
  return -1;
}

int hostaddr_split(const char *s, char *host, size_t hostlen, char *port, size_t portlen,
                   char *why, size_t whylen) {
  const char *h, *p;
  size_t hl, n = strnlen(s, MAX_INPUT + 1);
  if (n > MAX_INPUT) return why_set(why, whylen, "too long");
  if (s[0] == '[') {
    const char *e = memchr(s, ']', n);
    if (e == NULL || e[1] != ':')
      return why_set(why, whylen, "expected [IPv6]:port");
    h = s + 1;
    hl = (size_t)(e - h);
    p = e + 2;
    if (hl == 0) return why_set(why, whylen, "empty IPv6 address");
  } else {
    const char *e = strrchr(s, ':');
    if (e == NULL) return why_set(why, whylen, "expected host:port");
    if (memchr(s, ':', (size_t)(e - s)) != NULL)
      return why_set(why, whylen, "an IPv6 address needs brackets: [v6]:port");
    h = s;
    hl = (size_t)(e - s);
    p = e + 1;
  }
  size_t pl = strlen(p);
  if (pl == 0 || pl > 5 || p[0] == '0') return why_set(why, whylen, "bad port");
  unsigned long v = 0;
  for (size_t i = 0; i < pl; i++) {
    if (p[i] < '0' || p[i] > '9') return why_set(why, whylen, "bad port");
    v = v * 10 + (unsigned long)(p[i] - '0');
  }
  if (v < 1 || v > 65535) return why_set(why, whylen, "port out of range 1..65535");
  if (hl >= hostlen || pl >= portlen) return why_set(why, whylen, "too long");
  memcpy(host, h, hl);
  host[hl] = '\0';
  memcpy(port, p, pl + 1);
  return 0;
}

int hostaddr_is_numeric(const char *host) {
  struct in_addr a4;
  struct in6_addr a6;
  return inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1;
}

static int is_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

int hostaddr_is_name(const char *host) {
  size_t n = strnlen(host, HOSTADDR_HOST_MAX + 1);
  if (n > 0 && host[n - 1] == '.') n--; /* the root: "name." */
  if (n == 0 || n > 253) return 0;
  size_t start = 0;
  int all_digits = 1;
  for (size_t i = 0; i <= n; i++) {
    if (i == n || host[i] == '.') {
      size_t len = i - start;
      if (len == 0 || len > 63 || host[start] == '-' || host[i - 1] == '-') return 0;
      if (i == n && all_digits) return 0; /* 1.2.3.999 is no name */
      start = i + 1;
      all_digits = 1;
      continue;
    }
    if (!is_alnum(host[i]) && host[i] != '-') return 0;
    if (host[i] < '0' || host[i] > '9') all_digits = 0;
  }
  return 1;
}

int hostaddr_check(const char *s, char *why, size_t whylen) {
  char host[HOSTADDR_HOST_MAX + 1], port[8];
  if (hostaddr_split(s, host, sizeof(host), port, sizeof(port), why, whylen) != 0) return -1;
  if (host[0] == '\0') return why_set(why, whylen, "no host (others cannot dial \":port\")");
  struct in6_addr a6;
  struct in_addr a4;
  if (s[0] == '[') {
    if (inet_pton(AF_INET6, host, &a6) != 1) return why_set(why, whylen, "not an IPv6 address");
    if (IN6_IS_ADDR_UNSPECIFIED(&a6))
      return why_set(why, whylen, "a wildcard address, which nobody can dial");
    return 0;
  }
  if (inet_pton(AF_INET, host, &a4) == 1)
    return a4.s_addr == htonl(INADDR_ANY)
               ? why_set(why, whylen, "a wildcard address, which nobody can dial")
               : 0;
  if (hostaddr_is_name(host)) return 0;
  return why_set(why, whylen, "neither an IP address nor a valid host name");
}
