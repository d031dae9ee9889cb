/* Unit tests for agent/link_fsm.c on a virtual clock: full-jitter bounds,
 * growth to the cap, reset after a stable link, not after a flapping one,
 * immediate first attempt, and stop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "agent_backoff.h"
#include "link_fsm.h"

static void test_delay_bounds(void **state) {
  (void)state;
  assert_int_equal(link_fsm_delay_ms(0, 5000, 0.0), 0);
  assert_int_equal(link_fsm_delay_ms(0, 5000, 1.0), 100);
  assert_int_equal(link_fsm_delay_ms(3, 5000, 1.0), 800);
  assert_int_equal(link_fsm_delay_ms(6, 5000, 1.0), 5000);   /* 6400 capped */
  assert_int_equal(link_fsm_delay_ms(1000, 5000, 1.0), 5000); /* no overflow */
  assert_int_equal(link_fsm_delay_ms(2, 5000, 0.5), 200);
  assert_int_equal(link_fsm_delay_ms(2, 5000, 7.0), 400);     /* r clamped */
  assert_int_equal(link_fsm_delay_ms(2, 5000, -1.0), 0);
  /* full jitter: draws spread over the whole [0, bound] range */
  uint64_t rng = 42;
  long long lo = 1 << 30, hi = -1;
  for (int i = 0; i < 10000; i++) {
    long long d = link_fsm_delay_ms(4, 5000, agent_rng_next(&rng));
    assert_true(d >= 0 && d <= 1600);
    if (d < lo) lo = d;
    if (d > hi) hi = d;
  }
  assert_true(lo < 50);
  assert_true(hi > 1550);
}

static void test_cycle(void **state) {
  (void)state;
  link_fsm_t f;
  double now = 100.0;
  link_fsm_init(&f, now);
  assert_int_equal(f.state, LINK_FSM_IDLE);
  assert_false(link_fsm_due(&f, now));
  link_fsm_start(&f, now);
  assert_true(link_fsm_due(&f, now)); /* the first attempt goes at once */
  /* failures grow the bound to the cap */
  long long bound = 100;
  for (int i = 0; i < 10; i++) {
    link_fsm_connecting(&f, now);
    assert_int_equal(f.state, LINK_FSM_CONNECTING);
    long long d = link_fsm_failed(&f, now, 5000, 1.0);
    assert_int_equal(d, bound);
    assert_int_equal(f.state, LINK_FSM_BACKOFF);
    assert_false(link_fsm_due(&f, now + (double)d / 1000.0 - 0.001));
    assert_true(link_fsm_due(&f, now + (double)d / 1000.0));
    now += (double)d / 1000.0;
    bound = bound * 2 > 5000 ? 5000 : bound * 2;
  }
  assert_int_equal(f.connects, 10);
  assert_int_equal(f.failures, 10);
  /* a link that flaps (up for less than LINK_FSM_STABLE_S) keeps backing off */
  link_fsm_connecting(&f, now);
  link_fsm_up(&f, now);
  assert_int_equal(link_fsm_failed(&f, now + 0.2, 5000, 1.0), 5000);
  /* a stable link starts the delays over */
  now += 10;
  link_fsm_connecting(&f, now);
  link_fsm_up(&f, now);
  assert_string_equal(link_fsm_state_name(f.state), "up");
  now += LINK_FSM_STABLE_S + 5;
  assert_int_equal(link_fsm_failed(&f, now, 5000, 1.0), 100);
  assert_int_equal(link_fsm_failed(&f, now, 5000, 1.0), 200);
  /* nothing to link to: idle, failures forgotten; a new target dials at once */
  link_fsm_stop(&f, now);
  assert_string_equal(link_fsm_state_name(f.state), "down");
  assert_false(link_fsm_due(&f, now + 100));
  link_fsm_start(&f, now);
  assert_true(link_fsm_due(&f, now));
  link_fsm_connecting(&f, now);
  assert_int_equal(link_fsm_failed(&f, now, 5000, 1.0), 100);
  /* start on a running machine changes nothing */
  link_fsm_start(&f, now);
  assert_int_equal(f.state, LINK_FSM_BACKOFF);
  assert_false(link_fsm_due(&f, now));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_delay_bounds),
      cmocka_unit_test(test_cycle),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
