/* Unit tests for controller/fwdsig.c: the signature of relay requests one
 * replica forwards to another, and the reading of the answer's head. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "fwdsig.h"

#define NOW 1700000000000LL
static const char *const CA_KEY = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";

static void round_trip(void **state) {
  (void)state;
  uint8_t key[FWDSIG_KEY_LEN];
  char v[FWDSIG_VALUE_MAX + 1], actor[32];
  int role = 0;
  assert_int_equal(fwdsig_key(CA_KEY, key), 0);
  assert_int_equal(fwdsig_make(key, NOW, 2, "token:7", "POST", "/api/relay/3/api/x?a=1", "body",
                               4, v, sizeof(v)),
                   0);
  assert_true(strncmp(v, "v1 1700000000000 2 token:7 ", 27) == 0);
  assert_int_equal(fwdsig_check(key, v, NOW + 1000, "POST", "/api/relay/3/api/x?a=1", "body", 4,
                                &role, actor, sizeof(actor)),
                   FWDSIG_OK);
  assert_int_equal(role, 2);
  assert_string_equal(actor, "token:7");
}

static void binds_everything(void **state) {
  (void)state;
  uint8_t key[FWDSIG_KEY_LEN], other[FWDSIG_KEY_LEN];
  char v[FWDSIG_VALUE_MAX + 1], actor[32], t[FWDSIG_VALUE_MAX + 1];
  int role = 0;
  fwdsig_key(CA_KEY, key);
  fwdsig_key("another CA key", other);
  fwdsig_make(key, NOW, 1, "admin", "GET", "/api/relay/3/api/x", "", 0, v, sizeof(v));
  /* another method, target, body, key */
  assert_int_equal(fwdsig_check(key, v, NOW, "POST", "/api/relay/3/api/x", "", 0, &role, actor,
                                sizeof(actor)),
                   FWDSIG_BAD_MAC);
  assert_int_equal(fwdsig_check(key, v, NOW, "GET", "/api/relay/4/api/x", "", 0, &role, actor,
                                sizeof(actor)),
                   FWDSIG_BAD_MAC);
  assert_int_equal(fwdsig_check(key, v, NOW, "GET", "/api/relay/3/api/x", "x", 1, &role, actor,
                                sizeof(actor)),
                   FWDSIG_BAD_MAC);
  assert_int_equal(fwdsig_check(other, v, NOW, "GET", "/api/relay/3/api/x", "", 0, &role, actor,
                                sizeof(actor)),
                   FWDSIG_BAD_MAC);
  /* a raised role or another actor */
  snprintf(t, sizeof(t), "%s", v);
  t[17] = '2';
  assert_int_equal(fwdsig_check(key, t, NOW, "GET", "/api/relay/3/api/x", "", 0, &role, actor,
                                sizeof(actor)),
                   FWDSIG_BAD_MAC);
  /* stale either way */
  assert_int_equal(fwdsig_check(key, v, NOW + FWDSIG_SKEW_MS + 1, "GET", "/api/relay/3/api/x",
                                "", 0, &role, actor, sizeof(actor)),
                   FWDSIG_STALE);
  assert_int_equal(fwdsig_check(key, v, NOW - FWDSIG_SKEW_MS - 1, "GET", "/api/relay/3/api/x",
                                "", 0, &role, actor, sizeof(actor)),
                   FWDSIG_STALE);
  assert_int_equal(role, 0);
}

static void malformed(void **state) {
  (void)state;
  uint8_t key[FWDSIG_KEY_LEN];
  char actor[32];
  int role = 0;
  fwdsig_key(CA_KEY, key);
  static const char *const bad[] = {
      "", "v1", "v2 1 1 admin 00", "v1 x 1 admin " /* ... */,
      "v1 1 1 admin 0000000000000000000000000000000000000000000000000000000000000000 extra",
      "v1 1 0 admin 0000000000000000000000000000000000000000000000000000000000000000",
      "v1 1 12 admin 0000000000000000000000000000000000000000000000000000000000000000",
      "v1 1 1 ad min 0000000000000000000000000000000000000000000000000000000000000000",
      "v1 1 1 admin 000000000000000000000000000000000000000000000000000000000000000",
      "v1 1 1 admin 000000000000000000000000000000000000000000000000000000000000000G",
      "v1  1 1 admin 0000000000000000000000000000000000000000000000000000000000000000",
      "v1 1234567890123456 1 admin 0000000000000000000000000000000000000000000000000000000000000000",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_int_equal(fwdsig_check(key, bad[i], NOW, "GET", "/", "", 0, &role, actor,
                                  sizeof(actor)),
                     FWDSIG_MALFORMED);
  char v[64];
  assert_int_equal(fwdsig_make(key, NOW, 1, "bad actor", "GET", "/", "", 0, v, sizeof(v)), -1);
  assert_int_equal(fwdsig_make(key, NOW, 1, "admin", "GET", "/", "", 0, v, 20), -1);
  assert_int_equal(fwdsig_key("", key), -1);
}

static void head(void **state) {
  (void)state;
  char h1[] = "HTTP/1.0 502 Bad Gateway\r\nContent-Type: application/json\r\n"
              "X-Empty:\r\nContent-Length:  12 \r\n\r\n";
  fwdsig_hdr_t h[4];
  size_t n = 0;
  int status = 0;
  assert_int_equal(fwdsig_head(h1, strlen(h1), &status, h, 4, &n), 0);
  assert_int_equal(status, 502);
  assert_int_equal(n, 3);
  assert_string_equal(h[0].name, "Content-Type");
  assert_string_equal(h[0].value, "application/json");
  assert_string_equal(h[1].value, "");
  assert_string_equal(h[2].value, "12");
  char h2[] = "HTTP/1.1 200\r\n\r\n";
  assert_int_equal(fwdsig_head(h2, strlen(h2), &status, h, 4, &n), 0);
  assert_int_equal(n, 0);
  static const char *const bad[] = {
      "HTTP/2 200 OK\r\n\r\n",      "HTTP/1.1 099 X\r\n\r\n",       "HTTP/1.1 600 X\r\n\r\n",
      "HTTP/1.1 20 X\r\n\r\n",      "HTTP/1.1 200 OK\r\nNoColon\r\n\r\n",
      "HTTP/1.1 200 OK\r\n: v\r\n\r\n", "HTTP/1.1 200 OK\r\nA B: v\r\n\r\n",
      "HTTP/1.1 200 OK\nA: v\r\n\r\n", "HTTP/1.1 200 OK\r\nA: v\n\r\n",
      "HTTP/1.1 200 OK\r\nA: v\x01w\r\n\r\n", "HTTP/1.1 200 OK\r\n",
      "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char b[256];
    snprintf(b, sizeof(b), "%s", bad[i]);
    assert_int_equal(fwdsig_head(b, strlen(b), &status, h, 4, &n), -1);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(round_trip),
      cmocka_unit_test(binds_everything),
      cmocka_unit_test(malformed),
      cmocka_unit_test(head),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
