/* Unit tests for controller/lease.c: when a replica renews its leases, and
 * what a renewal's answer means for a local session. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include "lease.h"

static void renew_every_third(void **state) {
  (void)state;
  assert_true(lease_renew_due(1000, 0, 15000));        /* never renewed */
  assert_false(lease_renew_due(5999, 1000, 15000));
  assert_true(lease_renew_due(6000, 1000, 15000));     /* a third of 15 s */
  assert_true(lease_renew_due(60000, 1000, 15000));
  assert_false(lease_renew_due(1100, 1000, 1000));
  assert_true(lease_renew_due(1333, 1000, 1000));
}

static void verdicts(void **state) {
  (void)state;
  assert_int_equal(lease_verdict(1, 1), LEASE_KEEP);   /* ours, renewed */
  assert_int_equal(lease_verdict(0, 1), LEASE_CLAIM);  /* the renewal made it ours */
  assert_int_equal(lease_verdict(1, 0), LEASE_LOST);   /* another replica took it */
  assert_int_equal(lease_verdict(0, 0), LEASE_KEEP);   /* connect still on its way */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(renew_every_third),
      cmocka_unit_test(verdicts),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
