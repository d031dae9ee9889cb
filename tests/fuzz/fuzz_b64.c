/* Fuzz target for b64_decode: any input decodes or is refused without a
 * memory error, and whatever decodes encodes back to the identical input
 * (strict decoding means one encoding per byte string). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* Decoded output is at most 3/4 of the input; +1 so size 0 mallocs. */
  uint8_t *dec = malloc(size / 4 * 3 + 1);
  if (dec == NULL) return 0;
  long n = b64_decode((const char *)data, size, dec, size / 4 * 3);
  if (n >= 0) {
    size_t elen = b64_encoded_len((size_t)n);
    if (elen != size) abort();
    char *enc = malloc(elen + 1);
    if (enc == NULL) abort();
    if (b64_encode(dec, (size_t)n, enc, elen + 1) != (long)size) abort();
    if (memcmp(enc, data, size) != 0) abort();
    /* One byte short must be refused, not truncated. */
    if (b64_encode(dec, (size_t)n, enc, elen) != -1) abort();
    free(enc);
  }
  free(dec);
  return 0;
}
