/* Fuzz target for the server handshake: input split at a point taken from
 * its first byte, fed in two pieces; the handshake finishes, waits, or is
 * refused, never reading or writing out of bounds. Inputs of 1536+ bytes
 * also go through the digest search directly. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rtmp_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  rtmp_hs_t *hs = malloc(sizeof(*hs));
  if (hs == NULL) return 0;
  rtmp_hs_init(hs, RTMP_HS_SERVER, 1);
  size_t cut = size ? (size_t)data[0] * 13 % (size + 1) : 0;
  ssize_t a = rtmp_hs_feed(hs, data, cut);
  if (a >= 0) {
    if ((size_t)a > cut) abort();
    ssize_t b = rtmp_hs_feed(hs, data + cut, size - cut);
    if (b > (ssize_t)(size - cut)) abort();
    if (b >= 0 && (size_t)b < size - cut && !rtmp_hs_done(hs)) abort();
    size_t n;
    const uint8_t *o = rtmp_hs_output(hs, &n);
    if (n > sizeof(hs->out)) abort();
    volatile uint8_t sink = n ? o[n - 1] : 0;
    (void)sink;
  }
  if (size >= RTMP_HANDSHAKE_SIZE) {
    int p = rtmp_hs_digest_find(data, rtmp_fp_key, RTMP_FP_KEY_OPEN);
    if (p >= 0 && (size_t)p + 32 > RTMP_HANDSHAKE_SIZE) abort();
  }
  /* The client side on the same bytes. */
  rtmp_hs_init(hs, RTMP_HS_CLIENT, 1);
  ssize_t c = rtmp_hs_feed(hs, data, size);
  if (c > (ssize_t)size) abort();
  free(hs);
  return 0;
}
