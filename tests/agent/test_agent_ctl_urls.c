/* Unit tests for agent/ctl_urls.c: the URL forms split into host and port;
 * a host name's addresses become one URL
 * each (IPv6 bracketed, scheme and port kept, duplicates and the bounds
 * respected), numeric hosts stay, and localhost resolves. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ctl_urls.h"

static void test_split(void **state) {
  (void)state;
  char h[64], p[8];
  assert_int_equal(ctl_urls_split("tls+tcp://127.0.0.1:44945", h, sizeof(h), p, sizeof(p)), 0);
  assert_string_equal(h, "127.0.0.1");
  assert_string_equal(p, "44945");
  assert_int_equal(ctl_urls_split("tls+tcp://[::1]:9", h, sizeof(h), p, sizeof(p)), 0);
  assert_string_equal(h, "::1");
  assert_string_equal(p, "9");
  assert_int_equal(ctl_urls_split("tcp://ctl.example:1", h, sizeof(h), p, sizeof(p)), 0);
  assert_string_equal(h, "ctl.example");
  assert_int_equal(ctl_urls_split("tls+tcp6://[2001:db8::2]:443", h, sizeof(h), p, sizeof(p)),
                   0);
  assert_string_equal(h, "2001:db8::2");
  static const char *const bad[] = {
      "",  "tls+tcp://",        "http://h:1",       "tls+tcp://h",      "tls+tcp://:1",
      "tls+tcp://h:",      "tls+tcp://h:x1",   "tls+tcp://h:123456", "tls+tcp://::1:5",
      "tls+tcp://[::1]5",  "tls+tcp://[::1",   "tcp://a]b:1",      "tcp://a b:1",
      "tcp://u@h:1",       "tcp://h:65536",    NULL};
  for (size_t i = 0; bad[i]; i++)
    assert_int_equal(ctl_urls_split(bad[i], h, sizeof(h), p, sizeof(p)), -1);
  /* Too long for the caller's buffers. */
  assert_int_equal(ctl_urls_split("tcp://a-rather-long-host-name:1", h, 8, p, sizeof(p)), -1);
}

static void test_numeric(void **state) {
  (void)state;
  assert_true(ctl_urls_host_is_numeric("tls+tcp://127.0.0.1:44945"));
  assert_true(ctl_urls_host_is_numeric("tcp://[::1]:1"));
  assert_false(ctl_urls_host_is_numeric("tls+tcp://ctl.example:44945"));
  assert_false(ctl_urls_host_is_numeric("tcp://localhost:1"));
}

static void test_expand(void **state) {
  (void)state;
  char *out[CTL_URLS_MAX];
  size_t n = 0;
  const char *addrs[] = {"10.0.0.1", "2001:db8::2", "10.0.0.1", "10.0.0.3"};
  assert_int_equal(ctl_urls_expand("tls+tcp://ctl.example:44945", addrs, 4, out, CTL_URLS_MAX, &n),
                   0);
  assert_int_equal(n, 3);
  assert_string_equal(out[0], "tls+tcp://10.0.0.1:44945");
  assert_string_equal(out[1], "tls+tcp://[2001:db8::2]:44945");
  assert_string_equal(out[2], "tls+tcp://10.0.0.3:44945");
  /* No address: the URL as it is; an address already there is not added. */
  assert_int_equal(ctl_urls_expand("tcp://other:1", NULL, 0, out, CTL_URLS_MAX, &n), 0);
  assert_int_equal(ctl_urls_expand("tls+tcp://x:44945", addrs, 1, out, CTL_URLS_MAX, &n), 0);
  assert_int_equal(n, 4);
  assert_string_equal(out[3], "tcp://other:1");
  ctl_urls_free(NULL, 0);
  for (size_t i = 0; i < n; i++) free(out[i]);
  /* Bounds: at most CTL_URLS_PER_NAME from a name, CTL_URLS_MAX in all. */
  const char *many[20];
  char buf[20][16];
  for (int i = 0; i < 20; i++) {
    snprintf(buf[i], sizeof(buf[i]), "10.0.1.%d", i);
    many[i] = buf[i];
  }
  n = 0;
  assert_int_equal(ctl_urls_expand("tcp://a:1", many, 20, out, CTL_URLS_MAX, &n), 0);
  assert_int_equal(n, CTL_URLS_PER_NAME);
  assert_int_equal(ctl_urls_expand("tcp://a:2", many, 20, out, 10, &n), 0);
  assert_int_equal(n, 10);
  for (size_t i = 0; i < n; i++) free(out[i]);
}

static void test_resolve(void **state) {
  (void)state;
  char *in[] = {"tcp://localhost:7", "tls+tcp://127.0.0.1:8", "tcp://name.invalid:9"};
  char **v = NULL;
  size_t n = 0;
  assert_int_equal(ctl_urls_resolve(in, 3, &v, &n), 0);
  assert_true(n >= 3);
  int loop4 = 0, kept = 0, invalid = 0;
  for (size_t i = 0; i < n; i++) {
    loop4 |= strcmp(v[i], "tcp://127.0.0.1:7") == 0 || strcmp(v[i], "tcp://[::1]:7") == 0;
    kept |= strcmp(v[i], "tls+tcp://127.0.0.1:8") == 0;
    invalid |= strcmp(v[i], "tcp://name.invalid:9") == 0;
    assert_null(strstr(v[i], "localhost"));
  }
  assert_true(loop4 && kept && invalid);
  ctl_urls_free(v, n);
}

static void test_origin(void **state) {
  (void)state;
  char *in[] = {"tls+tcp://a.example:1", "tls+tcp://10.0.0.9:2", "tcp://b.example:3"};
  assert_int_equal(ctl_urls_origin(in, 3, "tls+tcp://a.example:1"), 0);
  assert_int_equal(ctl_urls_origin(in, 3, "tls+tcp://10.0.0.5:1"), 0);
  assert_int_equal(ctl_urls_origin(in, 3, "tls+tcp://[2001:db8::1]:1"), 0);
  assert_int_equal(ctl_urls_origin(in, 3, "tls+tcp://10.0.0.9:2"), 1);
  assert_int_equal(ctl_urls_origin(in, 3, "tcp://10.0.0.7:3"), 2);
  assert_int_equal(ctl_urls_origin(in, 3, "tcp://10.0.0.7:4"), 3);
  assert_int_equal(ctl_urls_origin(in, 3, "garbage"), 3);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_split),
      cmocka_unit_test(test_numeric),
      cmocka_unit_test(test_expand),
      cmocka_unit_test(test_resolve),
      cmocka_unit_test(test_origin),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
