/* Fuzz target for the FLV kinds sniffer (dataplane/flv.c flv_kinds_*):
 * arbitrary bytes read as a sequence of frames (script bodies included)
 * never cause a memory error or a leak; the sniffer decides within its
 * frame cap, only ever flags 1, 4 or 5, never changes its mind, and
 * decides the same on the same input.
 *
 * Input: byte 0 odd: the rest is one script body (onMetaData or not).
 * Else records of [kind][ts delta, 2 bytes, signed][len, 2 bytes][body]:
 * kind bits 0-1 pick audio/video/script/other, bit 2 the seq_header flag. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "flv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int valid(uint8_t f) {
  return f == FLV_FLAG_AUDIO || f == FLV_FLAG_VIDEO || f == (FLV_FLAG_AUDIO | FLV_FLAG_VIDEO);
}

/* run feeds the records and returns the decision (finish at the end). */
static uint8_t run(const uint8_t *data, size_t size, unsigned *fed_until) {
  static const uint8_t types[4] = {HUB_AUDIO, HUB_VIDEO, HUB_SCRIPT, 0};
  flv_kinds_t k;
  flv_kinds_init(&k);
  uint8_t decided = 0;
  uint32_t ts = 0;
  unsigned n = 0;
  size_t off = 1;
  while (off + 5 <= size) {
    uint8_t kind = data[off];
    ts += (uint32_t)(int16_t)(data[off + 1] << 8 | data[off + 2]);
    size_t len = (size_t)data[off + 3] << 8 | data[off + 4];
    off += 5;
    if (len > size - off) len = size - off;
    uint8_t type = types[kind & 3] ? types[kind & 3] : kind;
    /* a copy of exactly |len| bytes, so reading past it is caught */
    uint8_t *body = len ? malloc(len) : NULL;
    if (len && body == NULL) abort();
    if (len) memcpy(body, data + off, len);
    uint8_t r = flv_kinds_feed(&k, type, (kind >> 2) & 1, ts, body, len);
    free(body);
    off += len;
    n++;
    if (decided && r != decided) abort(); /* never changes its mind */
    if (r && !valid(r)) abort();
    if (r && !decided) {
      decided = r;
      *fed_until = n;
    }
    if (!decided && n >= FLV_KINDS_MAX_FRAMES) abort(); /* bounded */
  }
  uint8_t fin = flv_kinds_finish(&k);
  if (!valid(fin) || (decided && fin != decided)) abort();
  return fin;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  if (data[0] & 1) {
    uint8_t m = flv_kinds_meta(data + 1, size - 1);
    if (m & ~(FLV_FLAG_AUDIO | FLV_FLAG_VIDEO)) abort();
    if (flv_kinds_meta(data + 1, size - 1) != m) abort();
    flv_kinds_t k;
    flv_kinds_init(&k);
    if (flv_kinds_feed(&k, HUB_SCRIPT, 0, 0, data + 1, size - 1) != 0) abort(); /* no kind seen yet */
    if (k.meta != m) abort();
    return 0;
  }
  unsigned a = 0, b = 0;
  if (run(data, size, &a) != run(data, size, &b) || a != b) abort();
  return 0;
}
