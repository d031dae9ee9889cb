/* The API relay's request bounds: see relaybounds.h. */
#include "relaybounds.h"

#include <stdio.h>
#include <string.h>

#include "relpath.h"

_Static_assert(RELAYBOUNDS_PATH_MAX < RELPATH_MAX, "the node normalises what it receives");

const char *relaybounds_method(const char *m) {
  size_t n = 0;
  if (m == NULL || m[0] == '\0') return "no method";
  for (const char *p = m; *p; p++, n++) {
    if (n >= RELAYBOUNDS_METHOD_MAX) return "over 16 bytes";
    if (*p < 'A' || *p > 'Z') return "a byte other than A-Z";
  }
  return NULL;
}

/* visible: printable ASCII other than space. */
static int visible(unsigned char c) { return c > 0x20 && c < 0x7f; }

const char *relaybounds_path(const char *p) {
  size_t n = 0;
  if (p == NULL || p[0] != '/') return "the path must start with /";
  for (const unsigned char *s = (const unsigned char *)p; *s; s++, n++) {
    if (n >= RELAYBOUNDS_PATH_MAX) return "over 4095 bytes";
    if (!visible(*s) || *s == '?' || *s == '#') return "a byte that must be percent-encoded";
  }
  return NULL;
}

const char *relaybounds_query(const char *q) {
  size_t n = 0;
  if (q == NULL) return NULL;
  for (const unsigned char *s = (const unsigned char *)q; *s; s++, n++) {
    if (n >= RELAYBOUNDS_QUERY_MAX) return "over 4095 bytes";
    if (!visible(*s) || *s == '#') return "raw control, space, '#' or non-ASCII byte";
  }
  return NULL;
}

const char *relaybounds_header_add(relaybounds_headers_t *h, const char *name, const char *value) {
  size_t nl = 0, vl = 0;
  if (h->n >= RELAYBOUNDS_HEADERS_MAX) return "over 64 headers";
  if (name == NULL || name[0] == '\0') return "empty header name";
  for (const unsigned char *s = (const unsigned char *)name; *s; s++, nl++) {
    if (nl >= RELAYBOUNDS_HNAME_MAX) return "header name over 255 bytes";
    if (!visible(*s) || *s == ':') return "header name with a byte other than printable ASCII";
  }
  for (const unsigned char *s = (const unsigned char *)(value ? value : ""); *s; s++, vl++) {
    if (vl >= RELAYBOUNDS_HVALUE_MAX) return "header value over 4095 bytes";
    if (*s < 0x20 || *s >= 0x7f) return "header value with a byte other than printable ASCII";
  }
  if (h->bytes + nl + vl > RELAYBOUNDS_HBYTES_MAX) return "headers over 65536 bytes together";
  h->n++;
  h->bytes += nl + vl;
  return NULL;
}

/* quoted writes |s| for a message when it is short printable text. */
static const char *quoted(const char *s, char *buf, size_t len) {
  size_t n = strlen(s);
  if (n == 0 || n > 32) return "";
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    if (!visible(*p) || *p == '\'' || *p == '"' || *p == '\\') return "";
  snprintf(buf, len, " '%s'", s);
  return buf;
}

int relaybounds_target(const char *method, const char *raw, size_t rawlen, const char *query,
                       char *norm, size_t normlen, char *enc, size_t enclen, char *msg,
                       size_t msglen) {
  const char *why;
  char q[40];
  if ((why = relaybounds_method(method)) != NULL) {
    snprintf(msg, msglen, "invalid relay method%s: %s (a method is 1 to 16 letters A-Z)",
             quoted(method, q, sizeof(q)), why);
    return 400;
  }
  if (rawlen > RELAYBOUNDS_PATH_MAX) {
    snprintf(msg, msglen, "relay path over %d bytes", RELAYBOUNDS_PATH_MAX);
    return 414;
  }
  if (strlen(query) > RELAYBOUNDS_QUERY_MAX) {
    snprintf(msg, msglen, "relay query over %d bytes", RELAYBOUNDS_QUERY_MAX);
    return 414;
  }
  if (relaybounds_query(query) != NULL) {
    snprintf(msg, msglen, "invalid relay query: raw control, space, '#' or non-ASCII byte");
    return 400;
  }
  if (relpath_normalize(raw, rawlen, norm, normlen, &why) != 0) {
    snprintf(msg, msglen, "invalid relay path: %s", why);
    return 400;
  }
  long n = relpath_encode(norm, enc, enclen);
  if (n < 0) {
    snprintf(msg, msglen, "invalid relay path: too long to encode");
    return 400;
  }
  /* The caller's path fits; its encoded form (a '|' becomes "%7C") may
   * not, and that form is what the node receives. */
  if ((why = relaybounds_path(enc)) != NULL) {
    if (n > RELAYBOUNDS_PATH_MAX)
      snprintf(msg, msglen, "relay path over %d bytes once encoded for the node (%ld bytes)",
               RELAYBOUNDS_PATH_MAX, n);
    else
      snprintf(msg, msglen, "invalid relay path: %s", why);
    return 400;
  }
  return 0;
}
