/* Request framing checks: see http_framing.h. */
#include "http_framing.h"

#include <strings.h>

const char *http_framing_check(const http_framing_t *f) {
  if (f->transfer_encoding == 0) {
    if (f->content_length > 1) return "more than one Content-Length header";
    return NULL;
  }
  if (f->content_length > 0)
    return "both Content-Length and Transfer-Encoding: the body length is ambiguous";
  if (f->transfer_encoding > 1) return "more than one Transfer-Encoding header";
  if (f->http10) return "Transfer-Encoding in an HTTP/1.0 request";
  /* libmicrohttpd decodes chunked only; anything else (a list, another
   * coding, padding) it would read as a body running to the end of the
   * connection. */
  if (f->te == NULL || strcasecmp(f->te, "chunked") != 0)
    return "unsupported Transfer-Encoding (only chunked)";
  return NULL;
}
