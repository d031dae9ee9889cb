/* URL redaction: see urlredact.h. */
#include "urlredact.h"

#include <stdio.h>
#include <string.h>

char *urlredact(const char *url, char *out, size_t outlen) {
  if (outlen == 0) return out;
  if (url == NULL) url = "";
  const char *scheme = strstr(url, "://");
  /* A scheme is letters and such before "://", nothing that could start a
   * path, a query or userinfo. */
  if (scheme && strcspn(url, ":/?#@") != (size_t)(scheme - url)) scheme = NULL;
  const char *auth = scheme ? scheme + 3 : url;
  size_t alen = strcspn(auth, "/?#");
  const char *at = NULL;
  for (const char *p = auth; p < auth + alen; p++)
    if (*p == '@') at = p; /* the last '@' of the authority ends the userinfo */
  const char *host = at ? at + 1 : auth;
  size_t rest = strcspn(host, "?#");
  int cut = host[rest] != '\0';
  snprintf(out, outlen, "%.*s%s%.*s%s", (int)(auth - url), url, at ? "***@" : "", (int)rest, host,
           cut ? "?***" : "");
  return out;
}
