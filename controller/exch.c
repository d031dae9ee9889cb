/* The SCRAM exchanges' table: see exch.h. */
#include "exch.h"

#include <string.h>

static unsigned bucket(const uint8_t *handle) {
  unsigned h = 2166136261u;
  for (size_t i = 0; i < EXCH_HANDLE_LEN; i++) h = (h ^ handle[i]) * 16777619u;
  return h % EXCH_BUCKETS;
}

int exch_add(exch_table_t *t, exch_entry_t *e) {
  if (t->n >= EXCH_MAX) return -1;
  unsigned b = bucket(e->handle);
  e->next = t->b[b];
  t->b[b] = e;
  t->n++;
  return 0;
}

exch_entry_t *exch_take(exch_table_t *t, const uint8_t *handle) {
  exch_entry_t **pp = &t->b[bucket(handle)];
  while (*pp && memcmp((*pp)->handle, handle, EXCH_HANDLE_LEN) != 0) pp = &(*pp)->next;
  exch_entry_t *e = *pp;
  if (e) {
    *pp = e->next;
    t->n--;
  }
  return e;
}

int exch_live(const exch_entry_t *e, int64_t now) { return now - e->created_ms <= EXCH_TTL_MS; }

/* take_if removes the entries for which |dead| holds, as a list. */
static exch_entry_t *take_if(exch_table_t *t, int64_t now, int all) {
  exch_entry_t *dead = NULL;
  for (size_t b = 0; b < EXCH_BUCKETS; b++) {
    exch_entry_t **pp = &t->b[b];
    while (*pp) {
      if (all || !exch_live(*pp, now)) {
        exch_entry_t *e = *pp;
        *pp = e->next;
        e->next = dead;
        dead = e;
        t->n--;
      } else {
        pp = &(*pp)->next;
      }
    }
  }
  return dead;
}

exch_entry_t *exch_expire(exch_table_t *t, int64_t now) { return take_if(t, now, 0); }

exch_entry_t *exch_drain(exch_table_t *t) { return take_if(t, 0, 1); }

size_t exch_count(const exch_table_t *t) { return t->n; }
