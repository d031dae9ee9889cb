/* Request framing checks of the REST API server: a request whose body
 * length could be read two ways is refused, so a proxy in front and this
 * server can never disagree on where one request ends and the next begins
 * (request smuggling). */
#ifndef CASCADE_HTTP_FRAMING_H
#define CASCADE_HTTP_FRAMING_H

#include <stddef.h>

/* What a request head says about its body. */
typedef struct http_framing {
  size_t content_length;     /* Content-Length header lines */
  size_t transfer_encoding;  /* Transfer-Encoding header lines */
  const char *te;            /* the (first) Transfer-Encoding value, or NULL */
  int http10;                /* the request line says HTTP/1.0 */
} http_framing_t;

/* http_framing_check returns NULL when the framing is unambiguous (no body
 * header, one Content-Length, or one Transfer-Encoding that is exactly
 * "chunked" in HTTP/1.1), else the reason for a 400. */
const char *http_framing_check(const http_framing_t *f);

#endif
