/* Unit tests for controller/ctlgate.c's pure parts: the control URL it
 * binds and the number of connections that fit the descriptors. (The
 * gate's I/O runs in tests/integration/test_flood.py and test_spwire.py.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ctlgate.h"

static void split_ok(const char *url, const char *scheme, const char *hp) {
  char s[16], h[64];
  assert_int_equal(ctlgate_split_url(url, s, sizeof(s), h, sizeof(h)), 0);
  assert_string_equal(s, scheme);
  assert_string_equal(h, hp);
}

static void split_bad(const char *url) {
  char s[16], h[64];
  assert_int_equal(ctlgate_split_url(url, s, sizeof(s), h, sizeof(h)), -1);
}

static void test_split_url(void **state) {
  (void)state;
  split_ok("tls+tcp://0.0.0.0:44945", "tls+tcp", "0.0.0.0:44945");
  split_ok("tcp://127.0.0.1:1", "tcp", "127.0.0.1:1");
  split_ok("tls+tcp://[::]:44945", "tls+tcp", "[::]:44945");
  split_ok("tls+tcp://:44945", "tls+tcp", ":44945");
  split_bad("tls+tcp4://0.0.0.0:1");
  split_bad("ipc:///tmp/x");
  split_bad("tcp://");
  split_bad("tcp://host:1/path");
  split_bad("0.0.0.0:44945");
  split_bad("tcp://a-host-name-much-too-long-for-the-buffer-it-is-given-here.example:1");
}

static void test_fit(void **state) {
  (void)state;
  /* The reported attack's limit: 1,024 files, HTTP's default 1,024
   * connections and a pool of 4: HTTP keeps half of what is left, the
   * control channel fits in the other half at one descriptor each. */
  size_t n = ctlgate_fit(1024, 1024, 4);
  assert_int_equal(n, 1024 - 64 - 4 - 478);
  assert_true(n + 478 + 64 + 4 <= 1024);
  /* This machine's limit, 20,000 files: 10,000 agents fit with HTTP's
   * 1,024 connections beside them. */
  n = ctlgate_fit(20000, 1024, 4);
  assert_int_equal(n, 20000 - 64 - 4 - 1024);
  assert_true(n >= 10000);
  /* A large limit: no loopback source ports bound it any more. */
  assert_int_equal(ctlgate_fit(1048576, 1024, 4), 1048576 - 64 - 4 - 1024);
  /* a limit too small for anything still lets one connection in */
  assert_int_equal(ctlgate_fit(10, 1024, 4), 1);
  assert_int_equal(ctlgate_fit(70, 1024, 4), 1);
}

static void test_verdict(void **state) {
  (void)state;
  /* nothing sent: the client's turn from the accept */
  assert_int_equal(ctlgate_verdict(0, 0, 0, 9999, 10000), CTLGATE_WAIT);
  assert_int_equal(ctlgate_verdict(0, 0, 0, 10000, 10000), CTLGATE_CLIENT_LATE);
  /* the controller answered at 2 s (its flight), the client stalls */
  assert_int_equal(ctlgate_verdict(0, 0, 2000, 11999, 10000), CTLGATE_WAIT);
  assert_int_equal(ctlgate_verdict(0, 0, 2000, 12000, 10000), CTLGATE_CLIENT_LATE);
  /* the client spoke last: a slow controller is waited for ... */
  assert_int_equal(ctlgate_verdict(1, 0, 100, 30000, 10000), CTLGATE_WAIT);
  assert_int_equal(ctlgate_verdict(1, 0, 100, 59999, 10000), CTLGATE_WAIT);
  /* ... up to six deadlines in all (a partial hello cannot hold it longer) */
  assert_int_equal(ctlgate_verdict(1, 0, 100, 60000, 10000), CTLGATE_TOO_LONG);
  assert_int_equal(ctlgate_verdict(0, 0, 55000, 60000, 10000), CTLGATE_TOO_LONG);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_split_url),
      cmocka_unit_test(test_fit),
      cmocka_unit_test(test_verdict),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
