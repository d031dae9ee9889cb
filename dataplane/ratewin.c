/* A sliding-window byte rate: see ratewin.h. */
#include "ratewin.h"

#include <string.h>

void ratewin_init(ratewin_t *w, double window_s) {
  memset(w, 0, sizeof(*w));
  if (!(window_s > 0)) window_s = 2.0;
  if (window_s < 0.1) window_s = 0.1;
  w->slot_s = window_s / RATEWIN_SLOTS;
  w->cur = -1;
}

/* advance makes |idx| the newest slot, emptying the slots it passes. */
static void advance(ratewin_t *w, int64_t idx) {
  if (w->cur < 0 || idx - w->cur >= RATEWIN_SLOTS) {
    memset(w->bytes, 0, sizeof(w->bytes));
  } else {
    for (int64_t i = w->cur + 1; i <= idx; i++) w->bytes[i % RATEWIN_SLOTS] = 0;
  }
  w->cur = idx;
}

void ratewin_add(ratewin_t *w, double now, uint64_t bytes) {
  if (!(now >= 0)) return;
  int64_t idx = (int64_t)(now / w->slot_s) /* now >= 0: truncation is floor */;
  if (w->cur < 0) w->start = now;
  if (idx > w->cur) advance(w, idx);
  w->bytes[w->cur % RATEWIN_SLOTS] += bytes;
}

uint64_t ratewin_bps(const ratewin_t *w, double now) {
  if (w->cur < 0 || !(now >= 0)) return 0;
  int64_t idx = (int64_t)(now / w->slot_s) /* now >= 0: truncation is floor */;
  if (idx < w->cur) idx = w->cur; /* a clock that went back reads the newest slot */
  uint64_t sum = 0;
  /* the slots idx-SLOTS+1 .. idx, of which those up to cur hold bytes */
  for (int64_t i = idx - RATEWIN_SLOTS + 1; i <= w->cur; i++)
    if (i >= 0 && i > w->cur - RATEWIN_SLOTS) sum += w->bytes[i % RATEWIN_SLOTS];
  double from = (double)(idx - RATEWIN_SLOTS + 1) * w->slot_s;
  if (w->start > from) from = w->start;
  double span = now - from;
  if (span < w->slot_s) span = w->slot_s; /* a burst at the start is not read as a huge rate */
  return (uint64_t)((double)sum * 8.0 / span);
}
