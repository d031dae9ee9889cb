/* Player timelines: see tsmap.h. */
#include "tsmap.h"

#include "hub.h"

void tsmap_init(tsmap_t *m) {
  m->started = 0;
  m->prev_in = 0;
  m->prev_out = 0;
  m->cur = 0;
  m->track[0] = m->track[1] = 0;
  m->resets = 0;
}

uint32_t tsmap_map(tsmap_t *m, uint8_t type, int header, uint32_t ts) {
  if (header || (type != HUB_AUDIO && type != HUB_VIDEO)) {
    /* Headers describe what follows them and carry no time of their own
     * that a player could use: a cached one is as old as the stream. */
    return (uint32_t)m->cur;
  }
  int64_t out;
  if (!m->started) {
    m->started = 1;
    out = 0;
  } else {
    /* Steps in 32-bit arithmetic, so a wrap of a continuous stream is a
     * small step forward rather than a jump back by 49 days. */
    out = m->prev_out + (int32_t)(ts - m->prev_in);
    if (out < m->cur - TSMAP_MAX_BACK_MS || out > m->cur + TSMAP_MAX_JUMP_MS) {
      out = m->cur + 1;
      m->resets++;
    }
  }
  m->prev_in = ts;
  m->prev_out = out;
  /* The unclamped value stays in prev_out: an audio frame a little before
   * the first keyframe goes out at 0 without shifting what follows. */
  if (out < 0) out = 0;
  int64_t *t = &m->track[type == HUB_VIDEO];
  /* Within a track dts never decreases in a sane stream; after a re-anchor
   * the other track's first frames could, and MP4 muxers refuse that. */
  if (out < *t) out = *t;
  *t = out;
  if (out > m->cur) m->cur = out;
  return (uint32_t)out;
}
