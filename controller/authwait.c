/* Connections awaiting authentication: see authwait.h. */
#include "authwait.h"

#include <stdlib.h>

static authwait_ent_t **slot(authwait_t *t, uint32_t id) {
  authwait_ent_t **pp = &t->b[(id * 2654435761u) % AUTHWAIT_BUCKETS];
  while (*pp && (*pp)->id != id) pp = &(*pp)->next;
  return pp;
}

int authwait_add(authwait_t *t, uint32_t id, int64_t now) {
  authwait_remove(t, id);
  authwait_ent_t *n = calloc(1, sizeof(*n));
  if (n == NULL) return -1;
  n->id = id;
  n->last_ms = now;
  n->next = t->b[(id * 2654435761u) % AUTHWAIT_BUCKETS];
  t->b[(id * 2654435761u) % AUTHWAIT_BUCKETS] = n;
  return 0;
}

void authwait_remove(authwait_t *t, uint32_t id) {
  authwait_ent_t **pp = slot(t, id), *old = *pp;
  if (old == NULL) return;
  *pp = old->next;
  free(old);
}

void authwait_seen(authwait_t *t, uint32_t id, int64_t now, int authed) {
  authwait_ent_t *e = *slot(t, id);
  if (e == NULL) return;
  e->last_ms = now;
  if (authed) e->authed = 1;
}

size_t authwait_expire(authwait_t *t, int64_t now, int64_t limit_ms, uint32_t *ids, size_t max) {
  size_t n = 0;
  for (size_t b = 0; b < AUTHWAIT_BUCKETS && n < max; b++)
    for (authwait_ent_t *e = t->b[b]; e && n < max; e = e->next)
      if (!e->authed && now - e->last_ms > limit_ms) {
        ids[n++] = e->id;
        e->last_ms = now;
      }
  return n;
}

void authwait_clear(authwait_t *t) {
  for (size_t b = 0; b < AUTHWAIT_BUCKETS; b++)
    while (t->b[b]) {
      authwait_ent_t *e = t->b[b];
      t->b[b] = e->next;
      free(e);
    }
}
