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
  /* a model of the promises: per track its last input, place and output */
  int64_t cur = 0, raw[2] = {0, 0}, track[2] = {0, 0};
  uint32_t last[2] = {0, 0}, step[2] = {0, 0};
  int seen[2] = {0, 0};
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
    int k = type == HUB_VIDEO, o = !k;
    int64_t want;
    if (!media) {
      if (out != 0) abort();
      media = 1;
      want = 0;
    } else {
      /* never a leap forward, never back within a track */
      if (out > cur + TSMAP_MAX_JUMP_MS) abort();
      if (out < track[k]) abort();
      int32_t own = (int32_t)(in - last[k]);
      if (seen[k] && own >= -TSMAP_MAX_BACK_MS && own <= TSMAP_MAX_JUMP_MS) {
        want = raw[k] + own; /* a steady track passes its step as it is */
        if (own > 0) step[k] = own < TSMAP_MAX_STEP_MS ? (uint32_t)own : TSMAP_MAX_STEP_MS;
      } else {
        int r = seen[o] ? o : k;
        want = raw[r] + (int32_t)(in - last[r]);
        int64_t back = seen[k] ? TSMAP_MAX_BACK_MS : TSMAP_MAX_OFFSET_MS;
        if (want < cur - back || want > cur + TSMAP_MAX_JUMP_MS)
          want = cur + (step[k] ? step[k] : TSMAP_STEP_MS); /* one frame on */
      }
      int64_t floor = track[k] > 0 ? track[k] : 0;
      if (out != (want > floor ? want : floor)) abort();
    }
    seen[k] = 1;
    last[k] = in;
    raw[k] = want;
    track[k] = out;
    if (out > cur) cur = out;
    if (m.cur != cur) abort();
  }
  return 0;
}
