/* Fuzz target for player timelines (dataplane/tsmap.c): the input is a
 * sequence of frames (type, header flag, and a timestamp given as a small
 * step, a larger step or an absolute value), and every output is checked
 * against the promises of tsmap.h. */
#include <stdint.h>
#include <stdlib.h>

#include "hub.h"
#include "tsmap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t types[4] = {HUB_AUDIO, HUB_VIDEO, HUB_SCRIPT, 0x42};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  tsmap_t m;
  tsmap_init(&m);
  uint32_t in = 0;
  int media = 0;
  int64_t cur = 0, prev_raw = 0, track[2] = {0, 0};
  uint32_t prev_in = 0;
  size_t i = 0;
  while (i < size) {
    uint8_t b = data[i++];
    uint8_t type = types[b & 3];
    int header = (b >> 2) & 1;
    switch ((b >> 3) & 3) {
    case 0: /* interleaving: -640..635 ms */
      if (i + 1 > size) return 0;
      in += (uint32_t)(int32_t)((int8_t)data[i++] * 5);
      break;
    case 1: /* -32768..32767 ms */
      if (i + 2 > size) return 0;
      in += (uint32_t)(int32_t)(int16_t)(data[i] << 8 | data[i + 1]);
      i += 2;
      break;
    case 2: /* anywhere: restarts, wraps */
      if (i + 4 > size) return 0;
      in = (uint32_t)data[i] << 24 | (uint32_t)data[i + 1] << 16 | (uint32_t)data[i + 2] << 8 | data[i + 3];
      i += 4;
      break;
    default: /* the same time again */
      break;
    }
    int64_t out = tsmap_map(&m, type, header, in);
    /* never "negative": inputs this short cannot carry the output near 2^31 */
    if (out >= INT64_C(0x80000000)) abort();
    if (header || (type != HUB_AUDIO && type != HUB_VIDEO)) {
      /* headers at the current position, 0 before the first media frame */
      if (out != cur) abort();
      continue;
    }
    int t = type == HUB_VIDEO;
    if (!media) {
      if (out != 0) abort();
      media = 1;
      prev_raw = 0;
    } else {
      if (out < cur - TSMAP_MAX_BACK_MS || out > cur + TSMAP_MAX_JUMP_MS) abort();
      if (out < track[t]) abort();
      int64_t want = prev_raw + (int32_t)(in - prev_in);
      if (want >= cur - TSMAP_MAX_BACK_MS && want <= cur + TSMAP_MAX_JUMP_MS) {
        /* a step within the window passes as it is, unless held up */
        int64_t floor = track[t] > 0 ? track[t] : 0;
        if (out != (want > floor ? want : floor)) abort();
        prev_raw = want;
      } else {
        /* a discontinuity: just after the current position */
        if (out != cur + 1) abort();
        prev_raw = out;
      }
    }
    prev_in = in;
    track[t] = out;
    if (out > cur) cur = out;
    if (m.cur != cur) abort();
  }
  return 0;
}
