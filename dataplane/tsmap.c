/* Player timelines: see tsmap.h. */
#include "tsmap.h"

#include "hub.h"

void tsmap_init(tsmap_t *m) {
  m->started = 0;
  m->cur = 0;
  for (int k = 0; k < 2; k++) {
    m->seen[k] = 0;
    m->in[k] = 0;
    m->raw[k] = 0;
    m->track[k] = 0;
    m->step[k] = 0;
  }
  m->resets = 0;
}

/* on_map places |ts| on track |k|'s map (its last frame and the step from
 * it, in 32-bit arithmetic: a continuous stream crosses the wrap). */
static int64_t on_map(const tsmap_t *m, int k, uint32_t ts) {
  return m->raw[k] + (int32_t)(ts - m->in[k]);
}

uint32_t tsmap_map(tsmap_t *m, uint8_t type, int header, uint32_t ts) {
  if (header || (type != HUB_AUDIO && type != HUB_VIDEO)) {
    /* Headers describe what follows them and carry no time of their own
     * that a player could use: a cached one is as old as the stream. */
    return (uint32_t)m->cur;
  }
  int k = type == HUB_VIDEO, o = !k;
  int64_t out;
  if (!m->started) {
    m->started = 1;
    out = 0;
  } else {
    int32_t own = (int32_t)(ts - m->in[k]);
    if (m->seen[k] && own >= -TSMAP_MAX_BACK_MS && own <= TSMAP_MAX_JUMP_MS) {
      out = on_map(m, k, ts); /* the track goes on */
      if (own > 0) m->step[k] = own < TSMAP_MAX_STEP_MS ? (uint32_t)own : TSMAP_MAX_STEP_MS;
    } else {
      /* a first frame, or a jump: the other track's map keeps them in
       * step (it may have jumped first, on the same restart) */
      out = on_map(m, m->seen[o] ? o : k, ts);
      int64_t back = m->seen[k] ? TSMAP_MAX_BACK_MS : TSMAP_MAX_OFFSET_MS;
      if (out < m->cur - back || out > m->cur + TSMAP_MAX_JUMP_MS) {
        out = m->cur + (m->step[k] ? m->step[k] : TSMAP_STEP_MS);
        m->resets++;
      }
    }
  }
  m->seen[k] = 1;
  m->in[k] = ts;
  /* The unclamped value stays in raw: an audio frame a little before the
   * first keyframe goes out at 0 without shifting what follows. */
  m->raw[k] = out;
  if (out < 0) out = 0;
  /* Within a track dts never decreases in a sane stream; after a re-anchor
   * the other track's first frames could, and MP4 muxers refuse that. */
  if (out < m->track[k]) out = m->track[k];
  m->track[k] = out;
  if (out > m->cur) m->cur = out;
  return (uint32_t)out;
}
