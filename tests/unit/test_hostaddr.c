/* Unit tests for common/hostaddr.c: the address syntax of node.advertise
 * and cascadeclient.server, and what the links resolve. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "hostaddr.h"

static void test_split(void **state) {
  (void)state;
  char host[HOSTADDR_HOST_MAX + 1], port[8], why[128];
  assert_int_equal(hostaddr_split("edge-1.example.net:44944", host, sizeof(host), port,
                                  sizeof(port), why, sizeof(why)), 0);
  assert_string_equal(host, "edge-1.example.net");
  assert_string_equal(port, "44944");
  assert_int_equal(hostaddr_split("[2001:db8::1]:1", host, sizeof(host), port, sizeof(port),
                                  why, sizeof(why)), 0);
  assert_string_equal(host, "2001:db8::1");
  assert_string_equal(port, "1");
  assert_int_equal(hostaddr_split(":44944", host, sizeof(host), port, sizeof(port), why,
                                  sizeof(why)), 0);
  assert_string_equal(host, "");
  static const struct {
    const char *in, *why;
  } bad[] = {
      {"", "expected host:port"},        {"edge", "expected host:port"},
      {"edge:", "bad port"},             {"edge:01", "bad port"},
      {"edge:+1", "bad port"},           {"edge:123456", "bad port"},
      {"edge:65536", "port out of range 1..65535"},
      {"[::1]", "expected [IPv6]:port"}, {"[]:1", "empty IPv6 address"},
      {"::1:44944", "an IPv6 address needs brackets: [v6]:port"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    why[0] = '\0';
    if (hostaddr_split(bad[i].in, host, sizeof(host), port, sizeof(port), why, sizeof(why)) !=
        -1)
      fail_msg("accepted '%s'", bad[i].in);
    assert_string_equal(why, bad[i].why);
  }
  /* A host longer than the caller's buffer is refused, not cut. */
  char small[4];
  assert_int_equal(hostaddr_split("abcd:1", small, sizeof(small), port, sizeof(port), why,
                                  sizeof(why)), -1);
  char big[400];
  memset(big, 'a', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  assert_int_equal(hostaddr_split(big, host, sizeof(host), port, sizeof(port), why, sizeof(why)),
                   -1);
  assert_string_equal(why, "too long");
}

static void test_names(void **state) {
  (void)state;
  assert_true(hostaddr_is_name("localhost"));
  assert_true(hostaddr_is_name("edge-1.example.net"));
  assert_true(hostaddr_is_name("edge-1.example.net."));
  assert_true(hostaddr_is_name("3com.example"));
  assert_true(hostaddr_is_name("a.b1"));
  assert_false(hostaddr_is_name(""));
  assert_false(hostaddr_is_name("."));
  assert_false(hostaddr_is_name("a..b"));
  assert_false(hostaddr_is_name("-a.b"));
  assert_false(hostaddr_is_name("a-.b"));
  assert_false(hostaddr_is_name("a_b.c"));
  assert_false(hostaddr_is_name("a b"));
  assert_false(hostaddr_is_name("10.0.0.1")); /* all-digit last label: an address, not a name */
  assert_false(hostaddr_is_name("1.2.3.999"));
  char label[70];
  memset(label, 'x', 64);
  label[64] = '\0';
  assert_false(hostaddr_is_name(label)); /* 64 > 63 */
  label[63] = '\0';
  assert_true(hostaddr_is_name(label));
  char name[300];
  size_t o = 0;
  while (o + 4 < 256) {
    memcpy(name + o, "abc.", 4);
    o += 4;
  }
  memcpy(name + o, "ab", 3); /* 254 bytes */
  assert_false(hostaddr_is_name(name));
  assert_true(hostaddr_is_numeric("10.0.0.1"));
  assert_true(hostaddr_is_numeric("::1"));
  assert_false(hostaddr_is_numeric("localhost"));
}

static void test_check(void **state) {
  (void)state;
  char why[128];
  assert_int_equal(hostaddr_check("10.0.0.1:44944", why, sizeof(why)), 0);
  assert_int_equal(hostaddr_check("[::1]:44944", why, sizeof(why)), 0);
  assert_int_equal(hostaddr_check("node-1.cascade.svc.cluster.local:44944", why, sizeof(why)), 0);
  assert_int_equal(hostaddr_check(":44944", why, sizeof(why)), -1);
  assert_int_equal(hostaddr_check("0.0.0.0:44944", why, sizeof(why)), -1);
  assert_string_equal(why, "a wildcard address, which nobody can dial");
  assert_int_equal(hostaddr_check("[::]:1", why, sizeof(why)), -1);
  assert_int_equal(hostaddr_check("[host]:1", why, sizeof(why)), -1);
  assert_string_equal(why, "not an IPv6 address");
  assert_int_equal(hostaddr_check("bad_name:1", why, sizeof(why)), -1);
  assert_string_equal(why, "neither an IP address nor a valid host name");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_split),
      cmocka_unit_test(test_names),
      cmocka_unit_test(test_check),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
