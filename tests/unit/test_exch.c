/* Unit tests for controller/exch.c: the SCRAM exchanges between AuthStart
 * and AuthFinish (used once, a cap, a time to live on a virtual clock). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "exch.h"

static exch_entry_t *mk(uint32_t k, int64_t created) {
  exch_entry_t *e = calloc(1, sizeof(*e));
  assert_non_null(e);
  memcpy(e->handle, &k, sizeof(k));
  e->created_ms = created;
  return e;
}

static const uint8_t *key(uint32_t k) {
  static uint8_t h[EXCH_HANDLE_LEN];
  memset(h, 0, sizeof(h));
  memcpy(h, &k, sizeof(k));
  return h;
}

static size_t free_list(exch_entry_t *e) {
  size_t n = 0;
  while (e) {
    exch_entry_t *next = e->next;
    free(e);
    e = next;
    n++;
  }
  return n;
}

static void take_once(void **state) {
  (void)state;
  exch_table_t *t = calloc(1, sizeof(*t));
  exch_entry_t *a = mk(1, 0), *b = mk(2, 0);
  assert_int_equal(exch_add(t, a), 0);
  assert_int_equal(exch_add(t, b), 0);
  assert_int_equal(exch_count(t), 2);
  assert_null(exch_take(t, key(3)));
  assert_ptr_equal(exch_take(t, key(2)), b);
  assert_null(exch_take(t, key(2)));         /* used once */
  assert_int_equal(exch_count(t), 1);
  assert_ptr_equal(exch_take(t, key(1)), a);
  assert_int_equal(exch_count(t), 0);
  free(a);
  free(b);
  free(t);
}

static void time_to_live(void **state) {
  (void)state;
  exch_table_t *t = calloc(1, sizeof(*t));
  exch_entry_t *old = mk(1, 1000), *young = mk(2, 5000);
  assert_true(exch_live(old, 1000 + EXCH_TTL_MS));
  assert_false(exch_live(old, 1001 + EXCH_TTL_MS));
  exch_add(t, old);
  exch_add(t, young);
  assert_null(exch_expire(t, 1000 + EXCH_TTL_MS)); /* both still live */
  exch_entry_t *dead = exch_expire(t, 1001 + EXCH_TTL_MS);
  assert_ptr_equal(dead, old);
  assert_null(dead->next);
  free_list(dead);
  assert_int_equal(exch_count(t), 1);
  assert_ptr_equal(exch_take(t, key(2)), young);
  free(young);
  free(t);
}

static void cap(void **state) {
  (void)state;
  exch_table_t *t = calloc(1, sizeof(*t));
  for (uint32_t i = 0; i < EXCH_MAX; i++) assert_int_equal(exch_add(t, mk(i, 0)), 0);
  exch_entry_t *extra = mk(EXCH_MAX, 0);
  assert_int_equal(exch_add(t, extra), -1);
  assert_null(exch_take(t, key(EXCH_MAX)));  /* not filed */
  assert_int_equal(exch_count(t), EXCH_MAX);
  free(extra);
  assert_int_equal(free_list(exch_drain(t)), EXCH_MAX);
  assert_int_equal(exch_count(t), 0);
  free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(take_once),
      cmocka_unit_test(time_to_live),
      cmocka_unit_test(cap),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
