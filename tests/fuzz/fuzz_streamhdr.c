/* Fuzz target for the QUIC stream header and answer parsers: whatever
 * parses re-encodes (kind and path) and parses back the same. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "streamhdr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  streamhdr_t h, again;
  char err[128], reason[256];
  int ok;
  uint32_t code;
  long n = streamhdr_parse(data, size, &h, err, sizeof(err));
  if (n > 0) {
    uint8_t buf[STREAMHDR_MAX + 2];
    long m = streamhdr_encode(h.kind, h.path, buf, sizeof(buf));
    if (m <= 0 || streamhdr_parse(buf, (size_t)m, &again, err, sizeof(err)) != m ||
        again.kind != h.kind || strcmp(again.path, h.path) != 0)
      abort();
    streamhdr_free(&again);
    streamhdr_free(&h);
  }
  streamhdr_answer_parse(data, size, &ok, &code, reason, sizeof(reason), err, sizeof(err));
  return 0;
}
