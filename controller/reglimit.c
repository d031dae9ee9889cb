/* Registration limits: see reglimit.h. */
#include "reglimit.h"

#include <stdio.h>
#include <string.h>

void reglimit_init(reglimit_t *l, long long per_addr, long long total, int64_t window_ms) {
  memset(l, 0, sizeof(*l));
  pthread_mutex_init(&l->mu, NULL);
  l->per_addr = per_addr;
  l->total = total;
  l->window_ms = window_ms;
  l->total_start_ms = INT64_MIN;
  for (size_t i = 0; i < REGLIMIT_SLOTS; i++) l->slots[i].start_ms = INT64_MIN;
}

void reglimit_free(reglimit_t *l) {
  if (l != NULL) pthread_mutex_destroy(&l->mu);
}

static unsigned slot_of(const char *addr) {
  unsigned h = 2166136261u;
  for (const char *p = addr; *p; p++) h = (h ^ (unsigned char)*p) * 16777619u;
  return h % REGLIMIT_SLOTS;
}

/* The window opens at the first count. A colliding address takes the slot
 * over: the per-address limit is best effort; the total bounds everyone. */
static reglimit_slot_t *slot(reglimit_t *l, const char *addr, int64_t now, int take_over) {
  reglimit_slot_t *s = &l->slots[slot_of(addr)];
  int live = s->start_ms != INT64_MIN && now - s->start_ms < l->window_ms;
  if (live && strcmp(s->addr, addr) == 0) return s;
  if (!take_over) return NULL;
  snprintf(s->addr, sizeof(s->addr), "%s", addr);
  s->start_ms = now;
  s->count = 0;
  return s;
}

static int total_live(const reglimit_t *l, int64_t now) {
  return l->total_start_ms != INT64_MIN && now - l->total_start_ms < l->window_ms;
}

static int check_locked(reglimit_t *l, const char *addr, int64_t now) {
  if (total_live(l, now) && l->total_count >= l->total) return 0;
  reglimit_slot_t *s = slot(l, addr, now, 0);
  return s == NULL || s->count < l->per_addr;
}

static void count_locked(reglimit_t *l, const char *addr, int64_t now) {
  if (!total_live(l, now)) {
    l->total_start_ms = now;
    l->total_count = 0;
  }
  l->total_count++;
  slot(l, addr, now, 1)->count++;
}

int reglimit_check(reglimit_t *l, const char *addr, int64_t now_ms) {
  pthread_mutex_lock(&l->mu);
  int ok = check_locked(l, addr, now_ms);
  pthread_mutex_unlock(&l->mu);
  return ok;
}

void reglimit_count(reglimit_t *l, const char *addr, int64_t now_ms) {
  pthread_mutex_lock(&l->mu);
  count_locked(l, addr, now_ms);
  pthread_mutex_unlock(&l->mu);
}

int reglimit_take(reglimit_t *l, const char *addr, int64_t now_ms) {
  pthread_mutex_lock(&l->mu);
  int ok = check_locked(l, addr, now_ms);
  if (ok) count_locked(l, addr, now_ms);
  pthread_mutex_unlock(&l->mu);
  return ok;
}
