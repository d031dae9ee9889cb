/* The agent's probes: see health.h. */
#include "health.h"

#include <stdio.h>

double health_interval(double bound) {
  double i = bound / 4;
  return i > 1.0 ? 1.0 : i;
}

void health_init(health_t *h, double bound, double now) {
  h->bound = bound;
  h->last_turn = now;
  h->stall_end = 0;
  h->stall_len = 0;
}

void health_tick(health_t *h, double interval, double now) {
  double gap = now - h->last_turn - interval;
  if (gap > h->bound) {
    h->stall_end = now;
    h->stall_len = gap;
  }
  h->last_turn = now;
}

int health_live(const health_t *h, double interval, double now, char *reason, size_t len) {
  double gap = now - h->last_turn - interval;
  if (gap > h->bound) {
    snprintf(reason, len, "the event loop did not turn for %.1f s (health.loopstall %.1f s)",
             gap, h->bound);
    return 0;
  }
  if (h->stall_end > 0 && now - h->stall_end < HEALTH_WINDOW_S) {
    snprintf(reason, len,
             "the event loop did not turn for %.1f s (health.loopstall %.1f s), %.1f s ago",
             h->stall_len, h->bound, now - h->stall_end);
    return 0;
  }
  return 1;
}

int health_ready(int listening, unsigned long long generation, int cached, char *reason,
                 size_t len) {
  if (!listening) {
    snprintf(reason, len, "the media listeners are not bound");
    return 0;
  }
  if (generation == 0 && !cached) {
    snprintf(reason, len, "no configuration yet: waiting for the controller (or a state "
                          "file in node.datadir)");
    return 0;
  }
  return 1;
}
