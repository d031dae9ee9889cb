/* Unit tests for controller/wake.c: the payloads of NOTIFY cascade_wake. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "wake.h"

static void all(void **state) {
  (void)state;
  int64_t ids[4];
  size_t n = 7;
  assert_int_equal(wake_parse("all", ids, 4, &n), 1);
  assert_int_equal(n, 0);
}

static void ids_list(void **state) {
  (void)state;
  int64_t ids[4];
  size_t n = 0;
  assert_int_equal(wake_parse("3", ids, 4, &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(ids[0], 3);
  assert_int_equal(wake_parse("3,17,900000000000", ids, 4, &n), 0);
  assert_int_equal(n, 3);
  assert_int_equal(ids[1], 17);
  assert_int_equal(ids[2], 900000000000LL);
}

static void more_than_fit_wakes_all(void **state) {
  (void)state;
  int64_t ids[2];
  size_t n = 0;
  assert_int_equal(wake_parse("1,2,3", ids, 2, &n), 1);
}

static void malformed(void **state) {
  (void)state;
  int64_t ids[4];
  size_t n = 0;
  static const char *const bad[] = {"", ",", "1,", ",1", "1,,2", "0", "-1", "1 ,2", " 1",
                                    "x", "ALL", "all,1", "1;2", "1234567890123456789", "1,0"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(wake_parse(bad[i], ids, 4, &n), -1);
  }
  assert_int_equal(wake_parse(NULL, ids, 4, &n), -1);
}

static void too_long(void **state) {
  (void)state;
  static char big[WAKE_PAYLOAD_MAX + 8];
  int64_t ids[1];
  size_t n = 0;
  memset(big, '1', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  assert_int_equal(wake_parse(big, ids, 1, &n), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(all),
      cmocka_unit_test(ids_list),
      cmocka_unit_test(more_than_fit_wakes_all),
      cmocka_unit_test(malformed),
      cmocka_unit_test(too_long),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
