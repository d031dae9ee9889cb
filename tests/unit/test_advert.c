/* Unit tests for controller/advert.c: the parent address children get. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "advert.h"

static void expect(const char *adv, const char *ip, int rc, const char *want) {
  char out[128];
  int r = advert_parent_addr(adv, ip, out, sizeof(out));
  if (r != rc) fail_msg("'%s' from %s: rc %d, not %d", adv, ip, r, rc);
  assert_string_equal(out, want);
}

static void test_wildcards_completed(void **state) {
  (void)state;
  /* the seed's ":44944" and the other spellings of "every address" */
  expect(":44944", "10.0.0.1", 1, "10.0.0.1:44944");
  expect("0.0.0.0:44944", "10.0.0.1", 1, "10.0.0.1:44944");
  expect("[::]:44944", "10.0.0.1", 1, "10.0.0.1:44944");
  expect("[0:0:0:0:0:0:0:0]:44944", "10.0.0.1", 1, "10.0.0.1:44944");
  expect(":44944", "2001:db8::7", 1, "[2001:db8::7]:44944");
  expect("[::]:44944", "::ffff:192.0.2.9", 1, "192.0.2.9:44944");
}

static void test_addresses_kept(void **state) {
  (void)state;
  /* an address or a name (node.advertise) is what children dial, as given */
  expect("192.168.1.100:44944", "10.0.0.1", 0, "192.168.1.100:44944");
  expect("[2001:db8::1]:44944", "10.0.0.1", 0, "[2001:db8::1]:44944");
  expect("media-1.example.net:44944", "10.0.0.1", 0, "media-1.example.net:44944");
  expect("0.0.0.01:44944", "10.0.0.1", 0, "0.0.0.01:44944"); /* not the wildcard's spelling */
  /* no source address known: nothing to complete with */
  expect(":44944", "", 0, ":44944");
  expect(":44944", NULL, 0, ":44944");
  expect("", "10.0.0.1", 0, "");
  expect("garbage", "10.0.0.1", 0, "garbage");
}

static void test_small_buffer(void **state) {
  (void)state;
  char out[8];
  assert_int_equal(advert_parent_addr(":44944", "10.0.0.1", out, sizeof(out)), -1);
  assert_int_equal(advert_parent_addr("media-1.example.net:1", "", out, sizeof(out)), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_wildcards_completed),
      cmocka_unit_test(test_addresses_kept),
      cmocka_unit_test(test_small_buffer),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
