/* The control sessions' bookkeeping: see session.h. */
#include "session.h"

#include <stdlib.h>
#include <string.h>

#include "lease.h"

static unsigned hash_bytes(const uint8_t *b, size_t n) {
  unsigned h = 2166136261u;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 16777619u;
  return h;
}

static unsigned hash_id(int64_t id) { return (unsigned)((uint64_t)id * 0x9e3779b97f4a7c15ull >> 40); }

/* ---- the table ---- */

void sess_table_init(sess_table_t *t) { memset(t, 0, sizeof(*t)); }

sess_t *sess_find_token(sess_table_t *t, const uint8_t *token) {
  for (sess_t *x = t->by_token[hash_bytes(token, SESS_TOKEN_LEN) % SESS_BUCKETS]; x;
       x = x->tok_next)
    if (memcmp(x->token, token, SESS_TOKEN_LEN) == 0) return x;
  return NULL;
}

sess_t *sess_find_id(sess_table_t *t, int64_t id) {
  for (sess_t *x = t->by_id[hash_id(id) % SESS_BUCKETS]; x; x = x->id_next)
    if (x->id == id && !x->revoked) return x;
  return NULL;
}

sess_t *sess_add(sess_table_t *t, sess_t *n, int64_t now, sess_park_t **old_park,
                 sess_relay_t **old_relays) {
  sess_t *old = sess_find_id(t, n->id);
  *old_park = NULL;
  *old_relays = NULL;
  if (old) sess_revoke(old, now, old_park, old_relays);
  unsigned bt = hash_bytes(n->token, SESS_TOKEN_LEN) % SESS_BUCKETS;
  unsigned bi = hash_id(n->id) % SESS_BUCKETS;
  n->tok_next = t->by_token[bt];
  t->by_token[bt] = n;
  n->id_next = t->by_id[bi];
  t->by_id[bi] = n;
  t->n++;
  return old;
}

void sess_remove(sess_table_t *t, sess_t *x) {
  sess_t **pp = &t->by_token[hash_bytes(x->token, SESS_TOKEN_LEN) % SESS_BUCKETS];
  while (*pp && *pp != x) pp = &(*pp)->tok_next;
  if (*pp) *pp = x->tok_next;
  pp = &t->by_id[hash_id(x->id) % SESS_BUCKETS];
  while (*pp && *pp != x) pp = &(*pp)->id_next;
  if (*pp) *pp = x->id_next;
  t->n--;
}

size_t sess_count(const sess_table_t *t) { return t->n; }

void sess_foreach(sess_table_t *t, void (*fn)(sess_t *x, void *arg), void *arg) {
  for (size_t b = 0; b < SESS_BUCKETS; b++) {
    sess_t *x = t->by_token[b];
    while (x) {
      sess_t *next = x->tok_next;
      fn(x, arg);
      x = next;
    }
  }
}

void sess_revoke(sess_t *x, int64_t now, sess_park_t **park, sess_relay_t **relays) {
  x->revoked = 1;
  x->revoked_ms = now;
  *park = x->park;
  x->park = NULL;
  *relays = x->relays;
  x->relays = x->relays_tail = NULL;
  x->nrelays = 0;
}

int sess_expired(const sess_t *x, int64_t now, int64_t silent_ms, int64_t revoked_ttl_ms) {
  if (!x->revoked) return now - x->last_hb_ms > silent_ms ? 2 : 0;
  return now - x->revoked_ms > revoked_ttl_ms ? 1 : 0;
}

/* ---- generations and heartbeats ---- */

uint64_t sess_heartbeat(sess_t *x, int64_t now, uint64_t applied) {
  x->last_hb_ms = now;
  x->applied = applied;
  x->hb_dirty = 1;
  return x->desired;
}

int sess_take_heartbeat(sess_t *x, uint64_t *applied) {
  if (!x->hb_dirty || x->revoked) return 0;
  x->hb_dirty = 0;
  *applied = x->applied;
  return 1;
}

sess_reconcile_t sess_reconcile(sess_t *x, int64_t gen, int64_t epoch, int64_t now,
                                sess_park_t **park, sess_relay_t **relays) {
  *park = NULL;
  *relays = NULL;
  if (gen < 0 || epoch != x->epoch) {
    sess_revoke(x, now, park, relays);
    return gen < 0 ? SESS_DELETED : SESS_SECRET;
  }
  x->desired = (uint64_t)gen;
  if (x->park && x->park->known != (uint64_t)gen) {
    *park = sess_park_take(x);
    return SESS_ANSWER;
  }
  return SESS_KEEP;
}

/* ---- parked polls ---- */

sess_park_t *sess_park_set(sess_t *x, sess_park_t *p, uint64_t desired) {
  sess_park_t *prev = x->park;
  x->desired = desired;
  x->park = p;
  return prev;
}

sess_park_t *sess_park_take(sess_t *x) {
  sess_park_t *p = x->park;
  x->park = NULL;
  return p;
}

sess_park_t *sess_poll_timeout(sess_t *x, int64_t now, int64_t timeout_ms) {
  if (x->park == NULL || now - x->park->since_ms <= timeout_ms) return NULL;
  return sess_park_take(x);
}

/* ---- relay requests ---- */

int sess_relay_push(sess_t *x, void *item, sess_park_t **answer) {
  if (x->nrelays >= SESS_RELAYS_MAX) return -1;
  sess_relay_t *e = calloc(1, sizeof(*e));
  if (e == NULL) return -1;
  e->item = item;
  if (x->relays_tail) x->relays_tail->next = e;
  else x->relays = e;
  x->relays_tail = e;
  x->nrelays++;
  if (x->park) *answer = sess_park_take(x);
  return 0;
}

sess_relay_t *sess_relays_take(sess_t *x, size_t max_n, size_t max_bytes,
                               size_t (*size)(void *item)) {
  sess_relay_t *head = x->relays, **pp = &x->relays, *p;
  size_t bytes = 0, n = 0;
  if (max_n == 0) return NULL;
  while ((p = *pp) != NULL && n < max_n) {
    size_t sz = size(p->item);
    if (n > 0 && bytes + sz > max_bytes) break;
    bytes += sz;
    n++;
    pp = &p->next;
  }
  x->relays = *pp;
  if (x->relays == NULL) x->relays_tail = NULL;
  *pp = NULL;
  x->nrelays -= n;
  return n ? head : NULL;
}

void sess_relays_free(sess_relay_t *r, void (*release)(void *item)) {
  while (r) {
    sess_relay_t *next = r->next;
    if (release) release(r->item);
    free(r);
    r = next;
  }
}

/* ---- leases ---- */

int sess_lease_apply(sess_t *x, int renewed, int64_t now, sess_park_t **park,
                     sess_relay_t **relays) {
  lease_verdict_t v = lease_verdict(x->claimed, renewed);
  *park = NULL;
  *relays = NULL;
  if (v == LEASE_CLAIM) x->claimed = 1;
  else if (v == LEASE_LOST) sess_revoke(x, now, park, relays);
  return (int)v;
}
