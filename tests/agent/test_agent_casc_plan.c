/* Unit tests for agent/casc_plan.c, the cascade's decisions without the
 * loop or the hub: which live streams go up; a pull's fate at each
 * reconcile on a virtual clock (displaced by a publisher here, abandoned by
 * its players before delivering, lingering then stopped, its idle clock
 * reset by a returning player); and which pull rule serves a path, with the
 * reasons a matching rule's target is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "casc_plan.h"

static void test_push_wanted(void **state) {
  (void)state;
  assert_true(casc_push_wanted(1, 1, HUB_ORIGIN_LOCAL));
  assert_true(casc_push_wanted(1, 1, HUB_ORIGIN_PUSHED)); /* a child's: on up */
  assert_false(casc_push_wanted(1, 1, HUB_ORIGIN_PULLED)); /* came from up there */
  assert_false(casc_push_wanted(0, 1, HUB_ORIGIN_LOCAL));  /* not live */
  assert_false(casc_push_wanted(1, 0, HUB_ORIGIN_LOCAL));  /* autopush off */
}

static void test_pull_fate(void **state) {
  (void)state;
  double idle = 0;
  casc_pull_view_t v = {.published = 1, .kind = HUB_ORIGIN_PULLED, .players = 2,
                        .delivering = 1};
  /* delivering to players: runs, no idle clock */
  assert_int_equal(casc_pull_fate(&v, 10, 5, &idle), CASC_PULL_RUN);
  assert_true(idle == 0);
  /* the players leave: the clock starts, the pull lingers ... */
  v.players = 0;
  assert_int_equal(casc_pull_fate(&v, 11, 5, &idle), CASC_PULL_RUN);
  assert_true(idle == 11);
  assert_int_equal(casc_pull_fate(&v, 15.9, 5, &idle), CASC_PULL_RUN);
  assert_true(idle == 11); /* not restarted by later passes */
  /* ... a player returns: the clock is cleared */
  v.players = 1;
  assert_int_equal(casc_pull_fate(&v, 16, 5, &idle), CASC_PULL_RUN);
  assert_true(idle == 0);
  /* gone again: linger counts from the new start, stops at its end */
  v.players = 0;
  assert_int_equal(casc_pull_fate(&v, 20, 5, &idle), CASC_PULL_RUN);
  assert_int_equal(casc_pull_fate(&v, 24.9, 5, &idle), CASC_PULL_RUN);
  assert_int_equal(casc_pull_fate(&v, 25, 5, &idle), CASC_PULL_LINGERED);
  /* linger 0: stops at the first pass without players */
  idle = 0;
  assert_int_equal(casc_pull_fate(&v, 30, 0, &idle), CASC_PULL_LINGERED);
}

static void test_pull_fate_waiting(void **state) {
  (void)state;
  /* waiting for the source (nothing published yet), players waiting: runs */
  double idle = 0;
  casc_pull_view_t v = {.published = 0, .players = 1, .delivering = 0};
  assert_int_equal(casc_pull_fate(&v, 1, 30, &idle), CASC_PULL_RUN);
  /* every player gave up before anything came: no linger for that */
  v.players = 0;
  assert_int_equal(casc_pull_fate(&v, 2, 30, &idle), CASC_PULL_ABANDONED);
}

static void test_pull_fate_displaced(void **state) {
  (void)state;
  double idle = 0;
  /* a local publisher or a child's push of the same path ends the pull,
   * players or not */
  casc_pull_view_t v = {.published = 1, .kind = HUB_ORIGIN_LOCAL, .players = 3,
                        .delivering = 1};
  assert_int_equal(casc_pull_fate(&v, 1, 30, &idle), CASC_PULL_DISPLACED);
  v.kind = HUB_ORIGIN_PUSHED;
  assert_int_equal(casc_pull_fate(&v, 1, 30, &idle), CASC_PULL_DISPLACED);
  v.delivering = 0;
  v.players = 0;
  assert_int_equal(casc_pull_fate(&v, 1, 30, &idle), CASC_PULL_DISPLACED);
  assert_string_equal(casc_pull_fate_name(CASC_PULL_DISPLACED), "displaced");
  assert_string_equal(casc_pull_fate_name(CASC_PULL_LINGERED), "lingered");
}

static agent_rules_t rules_of(const char *const *pt, size_t n) {
  agent_rules_t R;
  memset(&R, 0, sizeof(R));
  R.pull = test_calloc(n, sizeof(*R.pull));
  R.npull = n;
  for (size_t i = 0; i < n; i++) {
    char err[128];
    R.pull[i].pattern = (char *)pt[2 * i];
    R.pull[i].target = (char *)pt[2 * i + 1];
    R.pull[i].re = pattern_compile(pt[2 * i], err, sizeof(err));
    assert_non_null(R.pull[i].re);
  }
  return R;
}

static void rules_done(agent_rules_t *R) {
  for (size_t i = 0; i < R->npull; i++) pcre2_code_free(R->pull[i].re);
  test_free(R->pull);
}

static void test_pull_target(void **state) {
  (void)state;
  const char *pt[] = {
      "vip/(.*)", "rtmp://origin.example:1935/vip/$1", /* external */
      "bad/(.*)", "m7s://bad/../$1",                   /* not a stream path */
      "ftp/(.*)", "ftp://files/$1",                    /* not a pull source */
      "long/(.*)", "m7s://live/$1$1$1$1$1$1$1$1",      /* may not fit */
      ".*", "m7s://$0",                                /* the quick start's */
  };
  agent_rules_t R = rules_of(pt, 5);
  char out[64], err[128];
  long rule;
  assert_int_equal(casc_pull_target(&R, "live/a", out, sizeof(out), &rule, err, sizeof(err)),
                   CASC_PULL_M7S);
  assert_int_equal(rule, 4);
  assert_string_equal(out, "m7s://live/a");
  /* the first matching rule wins */
  assert_int_equal(casc_pull_target(&R, "vip/x", out, sizeof(out), &rule, err, sizeof(err)),
                   CASC_PULL_EXT);
  assert_int_equal(rule, 0);
  assert_string_equal(out, "rtmp://origin.example:1935/vip/x");
  /* a matching rule whose target is not usable: refused, with why */
  assert_int_equal(casc_pull_target(&R, "bad/y", out, sizeof(out), &rule, err, sizeof(err)),
                   CASC_PULL_NONE);
  assert_int_equal(rule, 1);
  assert_non_null(strstr(err, "stream path"));
  assert_int_equal(casc_pull_target(&R, "ftp/z", out, sizeof(out), &rule, err, sizeof(err)),
                   CASC_PULL_NONE);
  assert_int_equal(rule, 2);
  assert_true(err[0] != '\0');
  /* an expansion longer than the buffer: refused, nothing left in |out| */
  assert_int_equal(casc_pull_target(&R, "long/0123456789", out, sizeof(out), &rule, err,
                                    sizeof(err)),
                   CASC_PULL_NONE);
  assert_int_equal(rule, 3);
  assert_string_equal(out, "");
  assert_non_null(strstr(err, "does not fit"));
  rules_done(&R);
  /* no rule matches: none, rule -1 */
  const char *only[] = {"vip/(.*)", "m7s://vip/$1"};
  R = rules_of(only, 1);
  assert_int_equal(casc_pull_target(&R, "live/a", out, sizeof(out), &rule, err, sizeof(err)),
                   CASC_PULL_NONE);
  assert_int_equal(rule, -1);
  assert_string_equal(err, "");
  rules_done(&R);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_push_wanted),
      cmocka_unit_test(test_pull_fate),
      cmocka_unit_test(test_pull_fate_waiting),
      cmocka_unit_test(test_pull_fate_displaced),
      cmocka_unit_test(test_pull_target),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
