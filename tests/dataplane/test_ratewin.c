/* Unit tests for dataplane/ratewin.c on a virtual clock: a steady rate
 * reads as itself once the window is full, the start is read over the
 * time since the first byte (never as a burst over nothing), old slots
 * leave the window, a long gap empties it, and a clock that goes back
 * neither crashes nor loses bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "ratewin.h"

static void test_empty(void **state) {
  (void)state;
  ratewin_t w;
  ratewin_init(&w, 2.0);
  assert_int_equal(ratewin_bps(&w, 0), 0);
  assert_int_equal(ratewin_bps(&w, 1000.5), 0);
  ratewin_init(&w, -1); /* a bad window takes 2 s */
  assert_true(w.slot_s > 0.24 && w.slot_s < 0.26);
  ratewin_init(&w, 0.001); /* at least 0.1 s */
  assert_true(w.slot_s >= 0.1 / RATEWIN_SLOTS - 1e-9);
}

/* 125,000 bytes a second (1 Mbit/s) in 10 ms steps. */
static void test_steady(void **state) {
  (void)state;
  ratewin_t w;
  ratewin_init(&w, 2.0);
  double t = 100.0;
  for (int i = 0; i < 500; i++, t += 0.01) ratewin_add(&w, t, 1250);
  uint64_t bps = ratewin_bps(&w, t);
  assert_true(bps > 950000 && bps < 1050000);
  /* at the start, over the time since the first byte: not 8x too high */
  ratewin_init(&w, 2.0);
  t = 100.0;
  for (int i = 0; i < 50; i++, t += 0.01) ratewin_add(&w, t, 1250);
  bps = ratewin_bps(&w, t);
  assert_true(bps > 900000 && bps < 1100000);
}

static void test_window_slides(void **state) {
  (void)state;
  ratewin_t w;
  ratewin_init(&w, 2.0);
  ratewin_add(&w, 50.0, 1000000); /* one burst */
  assert_true(ratewin_bps(&w, 51.0) > 0);
  /* past the window: gone */
  assert_int_equal(ratewin_bps(&w, 52.5), 0);
  /* a long gap, then a new byte: the old burst is not counted */
  ratewin_add(&w, 500.0, 250);
  uint64_t bps = ratewin_bps(&w, 501.0);
  assert_true(bps < 10000);
  /* a burst alone is read over one slot at least */
  ratewin_init(&w, 2.0);
  ratewin_add(&w, 10.0, 1000);
  assert_int_equal(ratewin_bps(&w, 10.0), 1000 * 8 * 4); /* 8000 bits over 0.25 s */
}

static void test_clock_back(void **state) {
  (void)state;
  ratewin_t w;
  ratewin_init(&w, 2.0);
  ratewin_add(&w, 20.0, 1000);
  ratewin_add(&w, 19.0, 1000); /* counted in the newest slot */
  assert_true(ratewin_bps(&w, 19.5) > 0);
  assert_true(ratewin_bps(&w, 20.1) >= 16000 * 4 / 5);
  ratewin_add(&w, -5.0, 1000); /* ignored */
  assert_int_equal(ratewin_bps(&w, -1.0), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_empty),
      cmocka_unit_test(test_steady),
      cmocka_unit_test(test_window_slides),
      cmocka_unit_test(test_clock_back),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
