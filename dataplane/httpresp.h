/* Reading an HTTP/1.1 response as a client (the HTTP-FLV pull source): the
 * status line and the headers that matter, and a chunked body decoder.
 * Both are bounded and take bytes in any split. */
#ifndef CASCADE_HTTPRESP_H
#define CASCADE_HTTPRESP_H

#include <stddef.h>
#include <stdint.h>

/* httpresp_head parses a complete response head (|len| bytes ending with
 * the empty line). Returns 0 with the status code and whether the body is
 * chunked, or -1 when it is not an HTTP/1.x response. */
int httpresp_head(const char *head, size_t len, int *status, int *chunked);

typedef struct httpresp_chunked {
  int state;
  uint64_t left;            /* bytes left in the current chunk */
  unsigned digits;
  int done;                 /* the last chunk was read */
} httpresp_chunked_t;

void httpresp_chunked_init(httpresp_chunked_t *c);

/* httpresp_chunked_feed decodes |n| bytes, handing payload to |cb| as it
 * comes (|cb| may stop the decoding by returning nonzero: the function then
 * returns that value). Returns 0, the callback's value, or -1 with |*why|
 * on a malformed body (size over 8 hex digits, bad line ends). Bytes after
 * the last chunk are ignored (trailers are not read). */
int httpresp_chunked_feed(httpresp_chunked_t *c, const uint8_t *data, size_t n,
                          int (*cb)(void *arg, const uint8_t *data, size_t n), void *arg,
                          const char **why);

#endif
