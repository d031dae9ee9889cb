/* The live feed's pure parts: see feed.h. */
#include "feed.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int feed_ring_init(feed_ring_t *r, size_t cap) {
  memset(r, 0, sizeof(*r));
  if (cap == 0 || (r->v = calloc(cap, sizeof(*r->v))) == NULL) return -1;
  r->cap = cap;
  return 0;
}

static feed_event_t *slot(const feed_ring_t *r, size_t i) {
  return &r->v[(r->head + i) % r->cap];
}

void feed_ring_reset(feed_ring_t *r, int64_t base) {
  for (size_t i = 0; i < r->n; i++) {
    free(slot(r, i)->data);
    slot(r, i)->data = NULL;
  }
  r->head = r->n = 0;
  r->base = r->last = base;
}

void feed_ring_free(feed_ring_t *r) {
  if (r == NULL || r->v == NULL) return;
  feed_ring_reset(r, 0);
  free(r->v);
  r->v = NULL;
  r->cap = 0;
}

int feed_ring_push(feed_ring_t *r, int64_t id, const char *kind, const char *data, size_t len) {
  size_t klen = strnlen(kind, FEED_KIND_MAX);
  if (id <= r->last || klen == 0 || klen >= FEED_KIND_MAX || len > FEED_DATA_MAX ||
      memchr(data, '\n', len) != NULL || memchr(data, '\r', len) != NULL ||
      memchr(data, '\0', len) != NULL)
    return -1;
  char *copy = malloc(len + 1);
  if (copy == NULL) return -2;
  memcpy(copy, data, len);
  copy[len] = '\0';
  if (r->n == r->cap) {
    feed_event_t *old = slot(r, 0);
    r->base = old->id;
    free(old->data);
    old->data = NULL;
    r->head = (r->head + 1) % r->cap;
    r->n--;
  }
  feed_event_t *e = slot(r, r->n++);
  e->id = id;
  memcpy(e->kind, kind, klen + 1);
  e->data = copy;
  e->len = len;
  r->last = id;
  return 0;
}

int feed_ring_next(const feed_ring_t *r, int64_t after, const feed_event_t **ev) {
  *ev = NULL;
  if (after < r->base || after > r->last) return -1;
  if (after == r->last) return 0;
  /* The first held id above |after|: ids ascend along the ring. */
  size_t lo = 0, hi = r->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (slot(r, mid)->id <= after)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo == r->n) return 0;
  *ev = slot(r, lo);
  return 1;
}

size_t feed_gap_take(feed_gap_t *g, const int64_t *ids, size_t n, int64_t now_ms) {
  size_t taken = 0;
  for (; taken < n; taken++) {
    int64_t id = ids[taken];
    if (id <= g->cursor) break; /* not ascending: take nothing more */
    if (id != g->cursor + 1) {
      int64_t want = g->cursor + 1;
      if (g->gap_id != want) {
        g->gap_id = want;
        g->gap_since_ms = now_ms;
        break;
      }
      if (now_ms - g->gap_since_ms < FEED_GAP_HOLD_MS) break;
    }
    g->cursor = id;
    g->gap_id = 0;
  }
  return taken;
}

int feed_gap_waiting(const feed_gap_t *g) { return g->gap_id != 0; }

int feed_parse_uint(const char *s, int64_t max, int64_t *out) {
  int64_t v = 0;
  int digits = 0;
  if (s == NULL) return -1;
  for (; *s >= '0' && *s <= '9'; s++) {
    if (++digits > FEED_ID_DIGITS) return -1;
    v = v * 10 + (*s - '0');
  }
  if (digits == 0 || *s != '\0' || v > max) return -1;
  *out = v;
  return 0;
}

size_t feed_sse_format(const feed_event_t *e, char *buf, size_t cap) {
  int n = snprintf(buf, cap, "id: %" PRId64 "\nevent: %s\ndata: %s\n\n", e->id, e->kind,
                   e->data);
  return n < 0 ? 0 : (size_t)n;
}
