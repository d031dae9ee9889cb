/* Fuzz target for http_framing_check: the first byte gives the header
 * counts and the HTTP version, the rest is the Transfer-Encoding value.
 * Whatever the value, a head with both length headers, two of either, or a
 * coding in HTTP/1.0 is refused, and only exactly "chunked" is accepted. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http_framing.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char te[256];
  if (size == 0) return 0;
  http_framing_t f = {data[0] & 3, (data[0] >> 2) & 3, NULL, (data[0] >> 4) & 1};
  size_t n = size - 1 < sizeof(te) - 1 ? size - 1 : sizeof(te) - 1;
  memcpy(te, data + 1, n);
  te[n] = '\0';
  if (!(data[0] & 0x20)) f.te = te;
  const char *why = http_framing_check(&f);
  int ok_expected = f.transfer_encoding == 0
                        ? f.content_length <= 1
                        : f.transfer_encoding == 1 && f.content_length == 0 && !f.http10 &&
                              f.te != NULL && strcasecmp(f.te, "chunked") == 0;
  if ((why == NULL) != ok_expected) abort();
  if (why != NULL && why[0] == '\0') abort();
  return 0;
}
