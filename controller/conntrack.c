/* Connection bookkeeping: see conntrack.h. */
#include "conntrack.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct conntrack_peer {
  uint8_t key[CONNTRACK_KEY_LEN];
  size_t count;
  struct conntrack_peer *next;
};

#define MIN_BUCKETS 64

int conntrack_key(const struct sockaddr *sa, uint8_t key[CONNTRACK_KEY_LEN]) {
  memset(key, 0, CONNTRACK_KEY_LEN);
  if (sa->sa_family == AF_INET) {
    key[10] = key[11] = 0xff;
    memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    return 0;
  }
  if (sa->sa_family == AF_INET6) {
    const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(a, mapped, sizeof(mapped)) == 0)
      memcpy(key, a, CONNTRACK_KEY_LEN);
    else
      memcpy(key, a, 8);
    return 0;
  }
  return -1;
}

static size_t bucket_of(const conntrack_t *ct, const uint8_t *key) {
  uint32_t h = 2166136261u ^ ct->seed;
  for (int i = 0; i < CONNTRACK_KEY_LEN; i++) h = (h ^ key[i]) * 16777619u;
  h ^= h >> 15;
  return h & (ct->nbuckets - 1);
}

int conntrack_init(conntrack_t *ct, size_t max_total, size_t max_per_addr, int64_t timeout_ms,
                   uint32_t seed) {
  memset(ct, 0, sizeof(*ct));
  ct->max_total = max_total;
  ct->max_per_addr = max_per_addr;
  ct->timeout_ms = timeout_ms;
  ct->seed = seed;
  if (max_per_addr) {
    ct->nbuckets = MIN_BUCKETS;
    ct->buckets = calloc(ct->nbuckets, sizeof(*ct->buckets));
    if (ct->buckets == NULL) return -1;
  }
  return 0;
}

void conntrack_free(conntrack_t *ct) {
  if (ct == NULL || ct->buckets == NULL) return;
  for (size_t b = 0; b < ct->nbuckets; b++) {
    conntrack_peer_t *p = ct->buckets[b];
    while (p) {
      conntrack_peer_t *next = p->next;
      free(p);
      p = next;
    }
  }
  free(ct->buckets);
  ct->buckets = NULL;
  ct->nbuckets = ct->npeers = 0;
}

/* grow doubles the table when addresses outnumber buckets (attackers may
 * bring many); on failure the table stays as it is, only slower. */
static void grow(conntrack_t *ct) {
  size_t n = ct->nbuckets * 2;
  conntrack_peer_t **nb = calloc(n, sizeof(*nb));
  if (nb == NULL) return;
  conntrack_peer_t **old = ct->buckets;
  size_t oldn = ct->nbuckets;
  ct->buckets = nb;
  ct->nbuckets = n;
  for (size_t b = 0; b < oldn; b++) {
    conntrack_peer_t *p = old[b];
    while (p) {
      conntrack_peer_t *next = p->next;
      size_t i = bucket_of(ct, p->key);
      p->next = nb[i];
      nb[i] = p;
      p = next;
    }
  }
  free(old);
}

static conntrack_peer_t *find(const conntrack_t *ct, const uint8_t *key) {
  for (conntrack_peer_t *p = ct->buckets[bucket_of(ct, key)]; p; p = p->next)
    if (memcmp(p->key, key, CONNTRACK_KEY_LEN) == 0) return p;
  return NULL;
}

static void enqueue(conntrack_t *ct, conntrack_entry_t *e, int64_t deadline) {
  e->deadline_ms = deadline;
  e->next = NULL;
  e->prev = ct->tail;
  if (ct->tail)
    ct->tail->next = e;
  else
    ct->head = e;
  ct->tail = e;
  e->queued = 1;
}

static void dequeue(conntrack_t *ct, conntrack_entry_t *e) {
  if (!e->queued) return;
  if (e->prev)
    e->prev->next = e->next;
  else
    ct->head = e->next;
  if (e->next)
    e->next->prev = e->prev;
  else
    ct->tail = e->prev;
  e->prev = e->next = NULL;
  e->queued = 0;
  e->deadline_ms = 0;
}

int conntrack_add(conntrack_t *ct, conntrack_entry_t *e, const uint8_t key[CONNTRACK_KEY_LEN],
                  int64_t now_ms) {
  conntrack_peer_t *p = NULL;

  if (ct->max_total && ct->count >= ct->max_total) return CONNTRACK_FULL;
  if (ct->max_per_addr) {
    p = find(ct, key);
    if (p && p->count >= ct->max_per_addr) return CONNTRACK_ADDR_FULL;
    if (p == NULL) {
      if ((p = calloc(1, sizeof(*p))) == NULL) return -1;
      memcpy(p->key, key, CONNTRACK_KEY_LEN);
      size_t b = bucket_of(ct, key);
      p->next = ct->buckets[b];
      ct->buckets[b] = p;
      if (++ct->npeers > ct->nbuckets) grow(ct);
    }
    p->count++;
  }
  memset(e, 0, sizeof(*e));
  e->peer = p;
  e->added = 1;
  ct->count++;
  if (ct->timeout_ms > 0) enqueue(ct, e, now_ms + ct->timeout_ms);
  return 0;
}

void conntrack_settle(conntrack_t *ct, conntrack_entry_t *e) { dequeue(ct, e); }

void conntrack_rearm(conntrack_t *ct, conntrack_entry_t *e, int64_t now_ms) {
  dequeue(ct, e);
  if (ct->timeout_ms > 0) enqueue(ct, e, now_ms + ct->timeout_ms);
}

void conntrack_del(conntrack_t *ct, conntrack_entry_t *e) {
  conntrack_peer_t *p = e->peer;
  dequeue(ct, e);
  if (p) {
    if (--p->count == 0) {
      conntrack_peer_t **pp = &ct->buckets[bucket_of(ct, p->key)];
      while (*pp != p) pp = &(*pp)->next;
      *pp = p->next;
      free(p);
      ct->npeers--;
    }
    e->peer = NULL;
  }
  if (e->added) {
    e->added = 0;
    ct->count--;
  }
}

conntrack_entry_t *conntrack_expired(conntrack_t *ct, int64_t now_ms) {
  conntrack_entry_t *e = ct->head;
  if (e == NULL || e->deadline_ms > now_ms) return NULL;
  dequeue(ct, e);
  return e;
}

int64_t conntrack_next_deadline(const conntrack_t *ct) {
  return ct->head ? ct->head->deadline_ms : 0;
}

size_t conntrack_addr_count(const conntrack_t *ct, const uint8_t key[CONNTRACK_KEY_LEN]) {
  if (ct->buckets == NULL) return 0;
  const conntrack_peer_t *p = find(ct, key);
  return p ? p->count : 0;
}
