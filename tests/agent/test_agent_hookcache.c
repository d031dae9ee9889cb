/* Unit tests for agent/hookcache.c: an answer is reused until its time is
 * up, every part of the key tells answers apart (a missing query differs
 * from an empty one), a TTL of 0 keeps nothing, and a full cache evicts
 * expired answers first, then the one closest to expiry. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "hookcache.h"

static hook_req req(hook_event ev, const char *path, const char *addr, const char *proto,
                    const char *query) {
  hook_req r = {.event = ev, .node = "edge-1", .path = path, .addr = addr, .proto = proto,
                .query = query};
  return r;
}

static void test_hit_until_expiry(void **state) {
  (void)state;
  hookcache_t *c = hookcache_new(16);
  hook_req r = req(HOOK_ON_PLAY, "live/a", "10.0.0.1", "rtmp", "token=x");
  int v = -1, st = -1;
  assert_int_equal(hookcache_get(c, &r, 1000, &v, &st), 0);
  assert_int_equal(hookcache_put(c, &r, HOOK_DENY, 403, 1000, 500), 0);
  assert_int_equal(hookcache_get(c, &r, 1000, &v, &st), 1);
  assert_int_equal(v, HOOK_DENY);
  assert_int_equal(st, 403);
  assert_int_equal(hookcache_get(c, &r, 1499, &v, &st), 1);
  assert_int_equal(hookcache_get(c, &r, 1500, &v, &st), 0);
  assert_int_equal(hookcache_count(c), 0); /* the stale answer is gone */
  hookcache_free(c);
}

static void test_every_field_is_part_of_the_key(void **state) {
  (void)state;
  hookcache_t *c = hookcache_new(16);
  hook_req base = req(HOOK_ON_PLAY, "live/a", "10.0.0.1", "rtmp", NULL);
  assert_int_equal(hookcache_put(c, &base, HOOK_ALLOW, 200, 0, 1000), 0);
  hook_req other[] = {
      req(HOOK_ON_PUBLISH, "live/a", "10.0.0.1", "rtmp", NULL),
      req(HOOK_ON_PLAY, "live/b", "10.0.0.1", "rtmp", NULL),
      req(HOOK_ON_PLAY, "live/a", "10.0.0.2", "rtmp", NULL),
      req(HOOK_ON_PLAY, "live/a", "10.0.0.1", "httpflv", NULL),
      req(HOOK_ON_PLAY, "live/a", "10.0.0.1", "rtmp", ""),
      req(HOOK_ON_PLAY, "live/a", "10.0.0.1", "rtmp", "t=1"),
      /* fields shifted across the boundary must not collide */
      req(HOOK_ON_PLAY, "live/a10.0.0.1", "", "rtmp", NULL),
  };
  int v, st;
  for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++)
    assert_int_equal(hookcache_get(c, &other[i], 1, &v, &st), 0);
  hook_req same = req(HOOK_ON_PLAY, "live/a", "10.0.0.1", "rtmp", NULL);
  assert_int_equal(hookcache_get(c, &same, 1, &v, &st), 1);
  assert_int_equal(v, HOOK_ALLOW);
  hookcache_free(c);
}

static void test_ttl_zero_keeps_nothing_and_put_replaces(void **state) {
  (void)state;
  hookcache_t *c = hookcache_new(4);
  hook_req r = req(HOOK_ON_PUBLISH, "live/a", "::1", "rtmp", "k=v");
  int v, st;
  assert_int_equal(hookcache_put(c, &r, HOOK_ALLOW, 200, 0, 0), 0);
  assert_int_equal(hookcache_count(c), 0);
  assert_int_equal(hookcache_get(c, &r, 0, &v, &st), 0);
  hookcache_put(c, &r, HOOK_ALLOW, 200, 0, 100);
  hookcache_put(c, &r, HOOK_DENY, 401, 50, 100);
  assert_int_equal(hookcache_count(c), 1);
  assert_int_equal(hookcache_get(c, &r, 120, &v, &st), 1);
  assert_int_equal(v, HOOK_DENY);
  assert_int_equal(st, 401);
  hookcache_clear(c);
  assert_int_equal(hookcache_count(c), 0);
  assert_int_equal(hookcache_get(c, &r, 120, &v, &st), 0);
  hookcache_free(c);
}

static void test_bounded_with_eviction(void **state) {
  (void)state;
  hookcache_t *c = hookcache_new(3);
  hook_req a = req(HOOK_ON_PLAY, "a", "1.1.1.1", "rtmp", NULL);
  hook_req b = req(HOOK_ON_PLAY, "b", "1.1.1.1", "rtmp", NULL);
  hook_req d = req(HOOK_ON_PLAY, "d", "1.1.1.1", "rtmp", NULL);
  hook_req e = req(HOOK_ON_PLAY, "e", "1.1.1.1", "rtmp", NULL);
  hook_req f = req(HOOK_ON_PLAY, "f", "1.1.1.1", "rtmp", NULL);
  int v, st;
  hookcache_put(c, &a, HOOK_ALLOW, 200, 0, 300); /* expires 300 */
  hookcache_put(c, &b, HOOK_ALLOW, 200, 0, 100); /* expires 100 */
  hookcache_put(c, &d, HOOK_ALLOW, 200, 0, 200); /* expires 200 */
  /* full, none expired at 50: b, closest to expiry, goes */
  hookcache_put(c, &e, HOOK_ALLOW, 200, 50, 1000);
  assert_int_equal(hookcache_count(c), 3);
  assert_int_equal(hookcache_get(c, &b, 60, &v, &st), 0);
  assert_int_equal(hookcache_get(c, &a, 60, &v, &st), 1);
  assert_int_equal(hookcache_get(c, &d, 60, &v, &st), 1);
  assert_int_equal(hookcache_get(c, &e, 60, &v, &st), 1);
  /* at 250 d has expired: it goes, a (fresh till 300) stays */
  hookcache_put(c, &f, HOOK_DENY, 403, 250, 1000);
  assert_int_equal(hookcache_count(c), 3);
  assert_int_equal(hookcache_get(c, &a, 260, &v, &st), 1);
  assert_int_equal(hookcache_get(c, &f, 260, &v, &st), 1);
  assert_int_equal(v, HOOK_DENY);
  hookcache_free(c);
  hookcache_free(NULL);
  assert_null(hookcache_new(0));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hit_until_expiry),
      cmocka_unit_test(test_every_field_is_part_of_the_key),
      cmocka_unit_test(test_ttl_zero_keeps_nothing_and_put_replaces),
      cmocka_unit_test(test_bounded_with_eviction),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
