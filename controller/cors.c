/* Cross-origin access to the REST API: see cors.h. */
#include "cors.h"

#include <string.h>

static int host_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
}

int cors_origin_check(const char *s, const char **why) {
  const char *p;
  size_t len = s ? strnlen(s, CORS_ORIGIN_MAX + 1) : 0;
  *why = NULL;
  if (len == 0 || len > CORS_ORIGIN_MAX) {
    *why = "an origin is 1 to 256 bytes";
    return -1;
  }
  if (strcmp(s, "*") == 0) return 0;
  if (strncmp(s, "https://", 8) == 0) {
    p = s + 8;
  } else if (strncmp(s, "http://", 7) == 0) {
    p = s + 7;
  } else {
    *why = "an origin starts with http:// or https:// (or is \"*\")";
    return -1;
  }
  if (*p == '[') {
    /* An IPv6 literal: hex digits, colons and dots inside brackets. */
    const char *q = p + 1;
    while ((*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'f') || *q == ':' || *q == '.') q++;
    if (q == p + 1 || *q != ']') {
      *why = "a bracketed host is a lower-case IPv6 address";
      return -1;
    }
    p = q + 1;
  } else {
    const char *q = p;
    while (host_char(*q)) q++;
    if (q == p || *p == '.' || *p == '-' || q[-1] == '.' || q[-1] == '-') {
      *why = "the host is a lower-case DNS name or address (as browsers send it)";
      return -1;
    }
    p = q;
  }
  if (*p == ':') {
    const char *q = ++p;
    long port = 0;
    while (*q >= '0' && *q <= '9' && q - p < 5) port = port * 10 + (*q++ - '0');
    if (q == p || port < 1 || port > 65535 || (*p == '0')) {
      *why = "the port is a number from 1 to 65535";
      return -1;
    }
    p = q;
  }
  if (*p != '\0') {
    *why = "an origin has no path, query, user or trailing slash (scheme://host[:port])";
    return -1;
  }
  return 0;
}

const char *cors_match(char *const *origins, size_t n, const char *origin) {
  if (origin == NULL || n == 0) return NULL;
  size_t len = strnlen(origin, CORS_ORIGIN_MAX + 1);
  if (len == 0 || len > CORS_ORIGIN_MAX) return NULL;
  int star = 0;
  for (size_t i = 0; i < n; i++) {
    if (strcmp(origins[i], "*") == 0)
      star = 1;
    else if (strcmp(origins[i], origin) == 0)
      return origin;
  }
  return star ? "*" : NULL;
}
