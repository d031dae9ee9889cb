/* Unit tests for agent/ctltls.c's keyed session store and trust
 * fingerprint: what a control client may offer on its next connection.
 * The engine itself runs against the controller's gate in
 * tests/integration/test_tls_resume.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <nng/nng.h>
#include <nng/supplemental/tls/tls.h>

#include "ctltls.h"

static const char *const ca1 = "-----BEGIN CERTIFICATE-----\nCA one\n-----END CERTIFICATE-----\n";
static const char *const ca2 = "-----BEGIN CERTIFICATE-----\nCA two\n-----END CERTIFICATE-----\n";

static void test_put_get_replace_drop(void **state) {
  (void)state;
  uint8_t fp[CTLTLS_FP_LEN], *d = NULL;
  size_t len = 0;
  int ver = -1;
  assert_int_equal(ctltls_fingerprint(NNG_TLS_AUTH_MODE_REQUIRED, ca1, fp), 0);
  ctltls_store_t *s = ctltls_store_new(8);
  assert_non_null(s);
  assert_int_equal(ctltls_store_get(s, 1, "ctl", fp, &d, &len, &ver), -1);
  assert_int_equal(ctltls_store_put(s, 1, "ctl", fp, "first", 5, 1), 0);
  assert_int_equal(ctltls_store_put(s, 2, "ctl", fp, "other", 5, 0), 0);
  assert_int_equal(ctltls_store_get(s, 1, "ctl", fp, &d, &len, &ver), 0);
  assert_int_equal(len, 5);
  assert_memory_equal(d, "first", 5);
  assert_int_equal(ver, 1);
  free(d);
  assert_int_equal(ctltls_store_get(s, 2, "ctl", fp, &d, &len, &ver), 0);
  assert_int_equal(ver, 0);
  free(d);
  /* a newer ticket replaces the older one */
  assert_int_equal(ctltls_store_put(s, 1, "ctl", fp, "second!", 7, 1), 0);
  assert_int_equal(ctltls_store_count(s), 2);
  assert_int_equal(ctltls_store_get(s, 1, "ctl", fp, &d, &len, &ver), 0);
  assert_int_equal(len, 7);
  assert_memory_equal(d, "second!", 7);
  free(d);
  ctltls_store_drop(s, 1);
  ctltls_store_drop(s, 1); /* twice is harmless */
  ctltls_store_drop(s, 99);
  assert_int_equal(ctltls_store_count(s), 1);
  assert_int_equal(ctltls_store_get(s, 1, "ctl", fp, &d, &len, &ver), -1);
  ctltls_store_free(s);
  ctltls_store_free(NULL);
}

static void test_never_across_names_or_trust(void **state) {
  (void)state;
  uint8_t fp1[CTLTLS_FP_LEN], fp2[CTLTLS_FP_LEN], fpn[CTLTLS_FP_LEN], *d = NULL;
  size_t len = 0;
  int ver = 0;
  assert_int_equal(ctltls_fingerprint(NNG_TLS_AUTH_MODE_REQUIRED, ca1, fp1), 0);
  assert_int_equal(ctltls_fingerprint(NNG_TLS_AUTH_MODE_REQUIRED, ca2, fp2), 0);
  assert_int_equal(ctltls_fingerprint(NNG_TLS_AUTH_MODE_NONE, ca1, fpn), 0);
  assert_memory_not_equal(fp1, fp2, CTLTLS_FP_LEN); /* another CA */
  assert_memory_not_equal(fp1, fpn, CTLTLS_FP_LEN); /* pin bootstrap, same CA text */
  ctltls_store_t *s = ctltls_store_new(8);
  assert_int_equal(ctltls_store_put(s, 7, "cascade-controller", fp1, "tkt", 3, 1), 0);
  assert_int_equal(ctltls_store_get(s, 7, "other-controller", fp1, &d, &len, &ver), -1);
  assert_int_equal(ctltls_store_get(s, 7, "cascade-controller.", fp1, &d, &len, &ver), -1);
  assert_int_equal(ctltls_store_get(s, 7, NULL, fp1, &d, &len, &ver), -1);
  assert_int_equal(ctltls_store_get(s, 7, "cascade-controller", fp2, &d, &len, &ver), -1);
  assert_int_equal(ctltls_store_get(s, 7, "cascade-controller", fpn, &d, &len, &ver), -1);
  assert_int_equal(ctltls_store_get(s, 8, "cascade-controller", fp1, &d, &len, &ver), -1);
  assert_int_equal(ctltls_store_get(s, 7, "cascade-controller", fp1, &d, &len, &ver), 0);
  free(d);
  /* no name is a name of its own */
  assert_int_equal(ctltls_store_put(s, 9, NULL, fp1, "tkt", 3, 1), 0);
  assert_int_equal(ctltls_store_get(s, 9, "cascade-controller", fp1, &d, &len, &ver), -1);
  assert_int_equal(ctltls_store_get(s, 9, NULL, fp1, &d, &len, &ver), 0);
  free(d);
  ctltls_store_free(s);
}

static void test_bounds(void **state) {
  (void)state;
  uint8_t fp[CTLTLS_FP_LEN] = {0}, *d = NULL;
  size_t len = 0;
  int ver = 0;
  ctltls_store_t *s = ctltls_store_new(3);
  for (uint64_t k = 1; k <= 3; k++) assert_int_equal(ctltls_store_put(s, k, "c", fp, "t", 1, 1), 0);
  /* full: a new key is refused, a kept key may still be replaced */
  assert_int_equal(ctltls_store_put(s, 4, "c", fp, "t", 1, 1), -1);
  assert_int_equal(ctltls_store_put(s, 2, "c", fp, "u", 1, 1), 0);
  assert_int_equal(ctltls_store_count(s), 3);
  ctltls_store_drop(s, 3);
  assert_int_equal(ctltls_store_put(s, 4, "c", fp, "t", 1, 1), 0);
  /* too large data or name, or none: refused, and the key's old entry goes */
  uint8_t *big = calloc(1, CTLTLS_SESSION_MAX + 1);
  assert_int_equal(ctltls_store_put(s, 4, "c", fp, big, CTLTLS_SESSION_MAX, 1), 0);
  assert_int_equal(ctltls_store_put(s, 4, "c", fp, big, CTLTLS_SESSION_MAX + 1, 1), -1);
  assert_int_equal(ctltls_store_get(s, 4, "c", fp, &d, &len, &ver), -1);
  free(big);
  char name[CTLTLS_NAME_MAX + 2];
  memset(name, 'a', sizeof(name) - 1);
  name[sizeof(name) - 1] = '\0';
  assert_int_equal(ctltls_store_put(s, 1, name, fp, "t", 1, 1), -1);
  assert_int_equal(ctltls_store_get(s, 1, "c", fp, &d, &len, &ver), -1);
  name[CTLTLS_NAME_MAX] = '\0';
  assert_int_equal(ctltls_store_put(s, 1, name, fp, "t", 1, 1), 0);
  assert_int_equal(ctltls_store_put(s, 2, "c", fp, "", 0, 1), -1);
  assert_int_equal(ctltls_store_count(s), 1);
  ctltls_store_free(s);
}

static void test_many_keys(void **state) {
  (void)state;
  uint8_t fp[CTLTLS_FP_LEN] = {1}, *d = NULL;
  size_t len = 0;
  int ver = 0;
  char data[16];
  ctltls_store_t *s = ctltls_store_new(CTLTLS_STORE_MAX);
  uint64_t k0 = ctltls_new_key(), k1 = ctltls_new_key();
  assert_true(k0 != 0 && k1 != 0 && k0 != k1);
  for (uint64_t k = 1; k <= 20000; k++) {
    snprintf(data, sizeof(data), "%llu", (unsigned long long)k);
    assert_int_equal(ctltls_store_put(s, k, "c", fp, data, strlen(data), 1), 0);
  }
  for (uint64_t k = 1; k <= 20000; k += 997) {
    snprintf(data, sizeof(data), "%llu", (unsigned long long)k);
    assert_int_equal(ctltls_store_get(s, k, "c", fp, &d, &len, &ver), 0);
    assert_int_equal(len, strlen(data));
    assert_memory_equal(d, data, len);
    free(d);
  }
  for (uint64_t k = 1; k <= 20000; k += 2) ctltls_store_drop(s, k);
  assert_int_equal(ctltls_store_count(s), 10000);
  ctltls_store_free(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_put_get_replace_drop),
      cmocka_unit_test(test_never_across_names_or_trust),
      cmocka_unit_test(test_bounds),
      cmocka_unit_test(test_many_keys),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
