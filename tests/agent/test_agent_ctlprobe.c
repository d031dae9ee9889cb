/* Unit tests for agent/ctlprobe.c: the controller URL forms it reads, and
 * what it says when nothing listens (a refused connection on loopback). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ctlprobe.h"

static void test_parse_url(void **state) {
  (void)state;
  char h[64], p[8];
  assert_int_equal(ctlprobe_parse_url("tls+tcp://127.0.0.1:44945", h, sizeof(h), p, sizeof(p)), 0);
  assert_string_equal(h, "127.0.0.1");
  assert_string_equal(p, "44945");
  assert_int_equal(ctlprobe_parse_url("tls+tcp://[::1]:9", h, sizeof(h), p, sizeof(p)), 0);
  assert_string_equal(h, "::1");
  assert_string_equal(p, "9");
  assert_int_equal(ctlprobe_parse_url("tcp://ctl.example:1", h, sizeof(h), p, sizeof(p)), 0);
  assert_string_equal(h, "ctl.example");
  assert_int_equal(ctlprobe_parse_url("tls+tcp6://[2001:db8::2]:443", h, sizeof(h), p, sizeof(p)),
                   0);
  assert_string_equal(h, "2001:db8::2");
  static const char *const bad[] = {
      "",  "tls+tcp://",        "http://h:1",       "tls+tcp://h",      "tls+tcp://:1",
      "tls+tcp://h:",      "tls+tcp://h:x1",   "tls+tcp://h:123456", "tls+tcp://::1:5",
      "tls+tcp://[::1]5",  "tls+tcp://[::1",   "tcp://a]b:1",      "tcp://a b:1",
      "tcp://u@h:1",       NULL};
  for (size_t i = 0; bad[i]; i++)
    assert_int_equal(ctlprobe_parse_url(bad[i], h, sizeof(h), p, sizeof(p)), -1);
  /* Too long for the caller's buffers. */
  assert_int_equal(ctlprobe_parse_url("tcp://a-rather-long-host-name:1", h, 8, p, sizeof(p)), -1);
}

static void test_refused_connection_is_named(void **state) {
  (void)state;
  char why[320];
  /* Port 1 on loopback: nothing listens there in a test machine. */
  assert_int_equal(ctlprobe_tls("tls+tcp://127.0.0.1:1", NULL, "cascade-controller", 1000, why,
                                sizeof(why)),
                   -1);
  assert_non_null(strstr(why, "cannot connect to 127.0.0.1:1"));
  assert_int_equal(ctlprobe_tls("tls+tcp://nonsense", NULL, "x", 1000, why, sizeof(why)), -1);
  assert_non_null(strstr(why, "is not host:port"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_url),
      cmocka_unit_test(test_refused_connection_is_named),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
