/* Unit tests for controller/authwait.c: control connections on which no
 * node authenticated are closed after control.authtimeout of silence, on a
 * virtual clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "authwait.h"

static void silent_connections_expire(void **state) {
  (void)state;
  authwait_t *t = calloc(1, sizeof(*t));
  uint32_t ids[8];
  assert_int_equal(authwait_add(t, 1, 1000), 0);
  assert_int_equal(authwait_add(t, 2, 1000), 0);
  assert_int_equal(authwait_add(t, 3, 1000), 0);
  authwait_seen(t, 2, 3000, 0);               /* talks, no session yet */
  authwait_seen(t, 3, 1500, 1);               /* authenticated: never expires */
  authwait_seen(t, 99, 1500, 1);              /* unknown: ignored */
  assert_int_equal(authwait_expire(t, 6000, 5000, ids, 8), 0); /* 5000 exactly: not yet */
  assert_int_equal(authwait_expire(t, 6001, 5000, ids, 8), 1);
  assert_int_equal(ids[0], 1);
  assert_int_equal(authwait_expire(t, 6002, 5000, ids, 8), 0); /* not twice at once */
  assert_int_equal(authwait_expire(t, 8001, 5000, ids, 8), 1);
  assert_int_equal(ids[0], 2);
  assert_int_equal(authwait_expire(t, 100000, 5000, ids, 8), 2); /* 1 and 2 again, not 3 */
  assert_true((ids[0] == 1 && ids[1] == 2) || (ids[0] == 2 && ids[1] == 1));
  authwait_clear(t);
  free(t);
}

static void removed_and_bounded(void **state) {
  (void)state;
  authwait_t *t = calloc(1, sizeof(*t));
  struct {
    uint32_t ids[2];
    uint32_t guard[4];                        /* untouched: at most |max| written */
  } out = {{0, 0}, {7, 7, 7, 7}};
  for (uint32_t i = 1; i <= 5; i++) authwait_add(t, i, 0);
  authwait_remove(t, 3);
  authwait_remove(t, 42);                     /* unknown: nothing */
  assert_int_equal(authwait_expire(t, 10, 5, out.ids, 2), 2); /* at most |max| */
  for (int i = 0; i < 4; i++) assert_int_equal(out.guard[i], 7);
  uint32_t all[8];
  size_t n = authwait_expire(t, 10, 5, all, 8);
  assert_int_equal(n, 2);                     /* the other two; 3 is gone */
  for (size_t i = 0; i < n; i++) assert_int_not_equal(all[i], 3);
  authwait_add(t, 4, 20);                     /* the same id again: the old entry goes */
  n = authwait_expire(t, 20, 5, all, 8);
  assert_int_equal(n, 3);                     /* 1, 2 and 5 (clocks restarted at 10), not 4 */
  for (size_t i = 0; i < n; i++) assert_int_not_equal(all[i], 4);
  authwait_clear(t);
  free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(silent_connections_expire),
      cmocka_unit_test(removed_and_bounded),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
