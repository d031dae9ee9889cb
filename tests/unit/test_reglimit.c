/* Unit tests for controller/reglimit.c: registration limits per address and
 * overall, with the clock passed in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include "reglimit.h"

#define MIN 60000

static void per_address_limit(void **state) {
  (void)state;
  static reglimit_t l;
  reglimit_init(&l, 3, 100, MIN);
  for (int i = 0; i < 3; i++) assert_int_equal(reglimit_take(&l, "10.0.0.1", 1000 + i), 1);
  assert_int_equal(reglimit_take(&l, "10.0.0.1", 1010), 0);
  assert_int_equal(reglimit_check(&l, "10.0.0.1", 1010), 0);
  /* Others are not held by it. */
  assert_int_equal(reglimit_take(&l, "10.0.0.2", 1010), 1);
  /* The window ends a minute after it opened. */
  assert_int_equal(reglimit_take(&l, "10.0.0.1", 1000 + MIN - 1), 0);
  assert_int_equal(reglimit_take(&l, "10.0.0.1", 1000 + MIN), 1);
  reglimit_free(&l);
}

static void total_limit(void **state) {
  (void)state;
  static reglimit_t l;
  char a[48];
  reglimit_init(&l, 10, 50, MIN);
  /* 500 addresses, 1 each: only 50 get through in one window. */
  int ok = 0;
  for (int i = 0; i < 500; i++) {
    snprintf(a, sizeof(a), "2001:db8::%x", i);
    ok += reglimit_take(&l, a, 5000 + i);
  }
  assert_int_equal(ok, 50);
  snprintf(a, sizeof(a), "2001:db8::%x", 999);
  assert_int_equal(reglimit_check(&l, a, 5000 + MIN - 1), 0);
  assert_int_equal(reglimit_check(&l, a, 5000 + MIN), 1);
  reglimit_free(&l);
}

static void check_does_not_count(void **state) {
  (void)state;
  static reglimit_t l;
  reglimit_init(&l, 2, 2, MIN);
  for (int i = 0; i < 100; i++) assert_int_equal(reglimit_check(&l, "h", i), 1);
  reglimit_count(&l, "h", 200);
  assert_int_equal(reglimit_check(&l, "h", 201), 1);
  reglimit_count(&l, "h", 202);
  assert_int_equal(reglimit_check(&l, "h", 203), 0);
  assert_int_equal(reglimit_check(&l, "other", 203), 0); /* the total is reached too */
  reglimit_free(&l);
}

static void colliding_addresses_never_exceed_total(void **state) {
  (void)state;
  static reglimit_t l;
  char a[48];
  reglimit_init(&l, 1, 3000, MIN);
  /* Far more addresses than slots: every one may take its slot over, but
   * an address cannot take more than its own limit while its slot is live,
   * and the total still holds. */
  int ok = 0;
  for (int i = 0; i < 5000; i++) {
    snprintf(a, sizeof(a), "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
    ok += reglimit_take(&l, a, 100);
    ok += reglimit_take(&l, a, 101); /* the same address again at once */
  }
  assert_true(ok <= 3000);
  assert_true(ok >= 1024); /* each slot served at least one address */
  reglimit_free(&l);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(per_address_limit),
      cmocka_unit_test(total_limit),
      cmocka_unit_test(check_does_not_count),
      cmocka_unit_test(colliding_addresses_never_exceed_total),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
