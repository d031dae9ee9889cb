/* Unit tests for agent/agent.c's link test requests: GET and HEAD only show
 * the test, even with bytes= (refused 405, never a start); only POST with a
 * decimal bytes= starts one; anything else is 400 or 405. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "agent.h"

static int parse(const char *method, const char *query, unsigned long long *n) {
  *n = 12345;
  return agent_linktest_parse(method, query, n);
}

static void test_read_only_methods(void **state) {
  unsigned long long n;
  (void)state;
  assert_int_equal(parse("GET", "", &n), AGENT_LINKTEST_SHOW);
  assert_int_equal(parse("HEAD", "", &n), AGENT_LINKTEST_SHOW);
  assert_int_equal(parse("GET", "x=1", &n), AGENT_LINKTEST_SHOW);
  assert_int_equal(parse("GET", "xbytes=1", &n), AGENT_LINKTEST_SHOW);
  /* the old way to start one is refused, not taken */
  assert_int_equal(parse("GET", "bytes=1073741824", &n), 405);
  assert_int_equal(parse("HEAD", "bytes=1", &n), 405);
  assert_int_equal(parse("GET", "a=1&bytes=1", &n), 405);
  assert_int_equal(parse("GET", "bytes=", &n), 405);
  assert_int_equal(n, 12345); /* nothing parsed */
}

static void test_post_starts(void **state) {
  unsigned long long n;
  (void)state;
  assert_int_equal(parse("POST", "bytes=1073741824", &n), AGENT_LINKTEST_START);
  assert_int_equal(n, 1073741824ULL);
  assert_int_equal(parse("POST", "a=b&bytes=7&c=d", &n), AGENT_LINKTEST_START);
  assert_int_equal(n, 7);
  assert_int_equal(parse("POST", "xbytes=5&bytes=9", &n), AGENT_LINKTEST_START);
  assert_int_equal(n, 9);
  /* out of range values are the link test's to refuse (400 there) */
  assert_int_equal(parse("POST", "bytes=0", &n), AGENT_LINKTEST_START);
  assert_int_equal(n, 0);
}

static void test_bad_requests(void **state) {
  unsigned long long n;
  (void)state;
  assert_int_equal(parse("POST", "", &n), 400);
  assert_int_equal(parse("POST", "xbytes=5", &n), 400);
  assert_int_equal(parse("POST", "bytes=", &n), 400);
  assert_int_equal(parse("POST", "bytes=-1", &n), 400);
  assert_int_equal(parse("POST", "bytes=+1", &n), 400);
  assert_int_equal(parse("POST", "bytes=1x", &n), 400);
  assert_int_equal(parse("POST", "bytes=%31", &n), 400);
  assert_int_equal(parse("POST", "bytes=99999999999999999999999", &n), 400);
  static const char *const others[] = {"PUT", "DELETE", "PATCH", "OPTIONS", "post", "get", "X"};
  for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++)
    assert_int_equal(parse(others[i], "bytes=1", &n), 405);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_read_only_methods),
      cmocka_unit_test(test_post_starts),
      cmocka_unit_test(test_bad_requests),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
