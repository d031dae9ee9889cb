/* The hook client's answer cache: an on_publish / on_play answer reused
 * for a configured time, keyed by the event, path, client address,
 * protocol and query. Bounded; the clock is passed in, so it is pure. */
#ifndef CASCADE_HOOKCACHE_H
#define CASCADE_HOOKCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "hooks.h"

typedef struct hookcache hookcache_t;

/* hookcache_new makes an empty cache of at most |max| answers (>= 1);
 * NULL when out of memory. */
hookcache_t *hookcache_new(size_t max);

/* hookcache_free frees |c|; accepts NULL. */
void hookcache_free(hookcache_t *c);

/* hookcache_get finds the answer for |r| still fresh at |now_ms|: returns 1
 * with the verdict (HOOK_ALLOW / HOOK_DENY) and the HTTP status it came
 * from, or 0. */
int hookcache_get(hookcache_t *c, const hook_req *r, uint64_t now_ms, int *verdict, int *status);

/* hookcache_put keeps |verdict| and |status| for |r| until now_ms + ttl_ms
 * (ttl_ms 0: nothing is kept), replacing an answer for the same key. When
 * full, expired answers go first, then the one closest to expiry. Returns
 * 0, or -1 when out of memory (the cache is unchanged). */
int hookcache_put(hookcache_t *c, const hook_req *r, int verdict, int status, uint64_t now_ms,
                  uint32_t ttl_ms);

/* hookcache_clear drops every answer. */
void hookcache_clear(hookcache_t *c);

/* hookcache_count is the number of answers held (fresh or not). */
size_t hookcache_count(const hookcache_t *c);

#endif
