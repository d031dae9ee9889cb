/* Fuzz target for amf_decode_list: any input decodes within the limits or
 * is refused without a memory error; what decodes re-encodes, and that
 * encoding decodes to a tree that encodes identically (a fixed point). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "amf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  amf_limits_t lim = {AMF_MAX_DEPTH, 4096, 1 << 20};
  amf_value_t *v = NULL;
  if (amf_decode_list(data, size, &lim, &v) != 0) {
    if (v != NULL) abort();
    return 0;
  }
  amf_buf_t a, b;
  amf_buf_init(&a);
  amf_buf_init(&b);
  if (amf_encode(&a, v, 1) != 0) abort();
  amf_value_t *w = NULL;
  if (amf_decode_list(a.data, a.len, &lim, &w) != 0) abort();
  if (amf_encode(&b, w, 1) != 0) abort();
  if (a.len != b.len || (a.len && memcmp(a.data, b.data, a.len) != 0)) abort();
  /* Lookups on whatever came out. */
  for (size_t i = 0; i < v->count; i++) {
    const amf_value_t *x = amf_at(v, i);
    (void)amf_get(x, "code");
    (void)amf_str(x);
  }
  amf_free(v);
  amf_free(w);
  amf_buf_free(&a);
  amf_buf_free(&b);
  return 0;
}
