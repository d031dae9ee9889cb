/* The hook answer cache: see hookcache.h. A flat array scanned by hash:
 * the bound is small (hundreds) and a scan of hashes costs less than a
 * hook round trip by orders of magnitude. */
#include "hookcache.h"

#include <stdlib.h>
#include <string.h>

typedef struct entry {
  uint64_t hash;
  uint64_t expires; /* ms, on the caller's clock */
  int verdict;
  int status;
  size_t klen;
  char *key; /* owned */
} entry_t;

struct hookcache {
  size_t max, n;
  entry_t *e; /* max slots, n used */
};

hookcache_t *hookcache_new(size_t max) {
  if (max == 0) return NULL;
  hookcache_t *c = calloc(1, sizeof(*c));
  if (c == NULL) goto fail;
  c->e = calloc(max, sizeof(entry_t));
  if (c->e == NULL) goto fail_c;
  c->max = max;
  return c;

fail_c:
  free(c);
fail:
  return NULL;
}

void hookcache_clear(hookcache_t *c) {
  for (size_t i = 0; i < c->n; i++) free(c->e[i].key);
  c->n = 0;
}

void hookcache_free(hookcache_t *c) {
  if (c == NULL) return;
  hookcache_clear(c);
  free(c->e);
  free(c);
}

size_t hookcache_count(const hookcache_t *c) { return c->n; }

/* The key: the event, then each field as its length and bytes, so no two
 * different requests share one (a NULL query differs from an empty one). */
static char *make_key(const hook_req *r, size_t *klen) {
  const char *f[4] = {r->path, r->addr, r->proto, r->query};
  size_t len = 1;
  for (int i = 0; i < 4; i++) len += sizeof(uint32_t) + (f[i] ? strlen(f[i]) : 0);
  char *k = malloc(len), *p = k;
  if (k == NULL) return NULL;
  *p++ = (char)r->event;
  for (int i = 0; i < 4; i++) {
    uint32_t l = f[i] ? (uint32_t)strlen(f[i]) : UINT32_MAX;
    memcpy(p, &l, sizeof(l));
    p += sizeof(l);
    if (f[i]) {
      memcpy(p, f[i], l);
      p += l;
    }
  }
  *klen = len;
  return k;
}

static uint64_t fnv1a(const char *k, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)k[i]) * 0x100000001b3ull;
  return h;
}

static entry_t *find(hookcache_t *c, const char *k, size_t klen, uint64_t h) {
  for (size_t i = 0; i < c->n; i++)
    if (c->e[i].hash == h && c->e[i].klen == klen && memcmp(c->e[i].key, k, klen) == 0)
      return &c->e[i];
  return NULL;
}

static void drop(hookcache_t *c, size_t i) {
  free(c->e[i].key);
  c->e[i] = c->e[--c->n];
}

int hookcache_get(hookcache_t *c, const hook_req *r, uint64_t now_ms, int *verdict, int *status) {
  size_t klen;
  char *k = make_key(r, &klen);
  if (k == NULL) return 0;
  entry_t *e = find(c, k, klen, fnv1a(k, klen));
  free(k);
  if (e == NULL) return 0;
  if (now_ms >= e->expires) {
    drop(c, (size_t)(e - c->e));
    return 0;
  }
  *verdict = e->verdict;
  *status = e->status;
  return 1;
}

int hookcache_put(hookcache_t *c, const hook_req *r, int verdict, int status, uint64_t now_ms,
                  uint32_t ttl_ms) {
  if (ttl_ms == 0) return 0;
  size_t klen;
  char *k = make_key(r, &klen);
  if (k == NULL) return -1;
  uint64_t h = fnv1a(k, klen);
  entry_t *e = find(c, k, klen, h);
  if (e) {
    free(k);
  } else {
    if (c->n == c->max) {
      for (size_t i = c->n; i-- > 0;)
        if (now_ms >= c->e[i].expires) drop(c, i);
    }
    if (c->n == c->max) {
      size_t old = 0;
      for (size_t i = 1; i < c->n; i++)
        if (c->e[i].expires < c->e[old].expires) old = i;
      drop(c, old);
    }
    e = &c->e[c->n++];
    e->key = k;
    e->klen = klen;
    e->hash = h;
  }
  e->verdict = verdict;
  e->status = status;
  e->expires = now_ms + ttl_ms;
  return 0;
}
