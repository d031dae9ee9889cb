/* Unit tests for the agent's probes on a virtual clock: a loop that keeps
 * turning stays live, a stall over the bound fails liveness while it lasts
 * and for HEALTH_WINDOW_S after, and readiness needs listeners and a
 * configuration. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "health.h"

static void test_interval(void **state) {
  (void)state;
  assert_true(health_interval(5.0) == 1.0);
  assert_true(health_interval(0.4) == 0.1);
}

static void test_turning_loop_is_live(void **state) {
  (void)state;
  health_t h;
  char why[200];
  double iv = health_interval(5.0);
  health_init(&h, 5.0, 1000.0);
  for (double t = 1000.0; t < 1100.0; t += iv) {
    health_tick(&h, iv, t + 0.2); /* late by a little: still live */
    assert_int_equal(health_live(&h, iv, t + 0.3, why, sizeof(why)), 1);
  }
}

static void test_stall(void **state) {
  (void)state;
  health_t h;
  char why[200];
  double iv = health_interval(5.0);
  health_init(&h, 5.0, 1000.0);
  health_tick(&h, iv, 1001.0);
  /* stuck: no tick; a probe answered in the turn that ends it fails */
  assert_int_equal(health_live(&h, iv, 1006.5, why, sizeof(why)), 1);
  assert_int_equal(health_live(&h, iv, 1008.0, why, sizeof(why)), 0);
  assert_non_null(strstr(why, "did not turn for 6.0 s"));
  /* the tick runs: the stall is recorded and fails for the window */
  health_tick(&h, iv, 1008.0);
  assert_int_equal(health_live(&h, iv, 1008.1, why, sizeof(why)), 0);
  assert_non_null(strstr(why, "6.0 s"));
  for (double t = 1009.0; t < 1008.0 + HEALTH_WINDOW_S - 0.5; t += iv) {
    health_tick(&h, iv, t);
    assert_int_equal(health_live(&h, iv, t, why, sizeof(why)), 0);
  }
  double t = 1008.0 + HEALTH_WINDOW_S + 0.1;
  health_tick(&h, iv, t);
  assert_int_equal(health_live(&h, iv, t, why, sizeof(why)), 1);
  /* a gap just under the bound is no stall */
  health_tick(&h, iv, t + 5.9);
  assert_int_equal(health_live(&h, iv, t + 5.9, why, sizeof(why)), 1);
}

static void test_ready(void **state) {
  (void)state;
  char why[200];
  assert_int_equal(health_ready(0, 7, 0, why, sizeof(why)), 0);
  assert_non_null(strstr(why, "listeners"));
  assert_int_equal(health_ready(1, 0, 0, why, sizeof(why)), 0);
  assert_non_null(strstr(why, "no configuration"));
  assert_int_equal(health_ready(1, 0, 1, why, sizeof(why)), 1);
  assert_int_equal(health_ready(1, 3, 0, why, sizeof(why)), 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_interval),
      cmocka_unit_test(test_turning_loop_is_live),
      cmocka_unit_test(test_stall),
      cmocka_unit_test(test_ready),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
