/* Unit tests for agent/streamadm.c's parsers: a kick's {"id": N} and a
 * drop's {"path": "app/name"} are taken exactly (a positive integer, a
 * valid stream path, no other member), everything else gets 400 with a
 * reason, an oversized body 413; path= in a query is percent-decoded and
 * checked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "streamadm.h"

static int kick(const char *b, uint64_t *id) {
  char why[256] = "";
  int st = streamadm_parse_kick(b, strlen(b), id, why, sizeof(why));
  if (st) assert_true(why[0] != '\0');
  return st;
}

static int drop(const char *b, char *path) {
  char why[256] = "";
  int st = streamadm_parse_drop(b, strlen(b), path, 1025, why, sizeof(why));
  if (st) assert_true(why[0] != '\0');
  return st;
}

static void test_kick_body(void **state) {
  (void)state;
  uint64_t id = 0;
  assert_int_equal(kick("{\"id\": 42}", &id), 0);
  assert_int_equal(id, 42);
  assert_int_equal(kick(" { \"id\" : 9007199254740993 } ", &id), 0);
  assert_int_equal(id, 9007199254740993ull);
  id = 5;
  const char *bad[] = {"", "{", "[]", "42", "null", "{\"id\": \"42\"}", "{\"id\": 0}",
                       "{\"id\": -3}", "{\"id\": 1.5}", "{\"id\": true}", "{}",
                       "{\"id\": 1, \"x\": 2}", "{\"id\": 1, \"id\": 2}", "{\"ID\": 1}",
                       "{\"id\": 1} trailing"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(kick(bad[i], &id), 400);
    assert_int_equal(id, 5); /* unchanged */
  }
  size_t n = STREAMADM_BODY_MAX + 1;
  char *big = malloc(n + 1);
  memset(big, ' ', n);
  memcpy(big, "{\"id\": 1}", 9);
  big[n] = 0;
  char why[128];
  assert_int_equal(streamadm_parse_kick(big, n, &id, why, sizeof(why)), 413);
  free(big);
}

static void test_drop_body(void **state) {
  (void)state;
  char path[1025] = "untouched";
  assert_int_equal(drop("{\"path\": \"live/cam1\"}", path), 0);
  assert_string_equal(path, "live/cam1");
  snprintf(path, sizeof(path), "untouched");
  const char *bad[] = {"{\"path\": \"cam1\"}", "{\"path\": \"live/../x\"}", "{\"path\": \"\"}",
                       "{\"path\": \"live//x\"}", "{\"path\": 3}", "{\"path\": null}",
                       "{\"path\": \"live/a\\u0000b\"}", "{\"path\": \"live/a\\nb\"}",
                       "{\"path\": \"live/a\", \"all\": true}", "{\"stream\": \"live/a\"}",
                       "[\"live/a\"]", "\"live/a\""};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(drop(bad[i], path), 400);
    assert_string_equal(path, "untouched");
  }
}

static void test_query_path(void **state) {
  (void)state;
  char p[1025];
  assert_int_equal(streamadm_query_path("", p, sizeof(p)), 0);
  assert_int_equal(streamadm_query_path("x=1&y=2", p, sizeof(p)), 0);
  assert_int_equal(streamadm_query_path("path=live/cam1", p, sizeof(p)), 1);
  assert_string_equal(p, "live/cam1");
  assert_int_equal(streamadm_query_path("x=1&path=live%2Fcam%201&y", p, sizeof(p)), 1);
  assert_string_equal(p, "live/cam 1");
  assert_int_equal(streamadm_query_path("path=live/a%00b", p, sizeof(p)), -1);
  assert_int_equal(streamadm_query_path("path=live/a%zz", p, sizeof(p)), -1);
  assert_int_equal(streamadm_query_path("path=cam1", p, sizeof(p)), -1);
  assert_int_equal(streamadm_query_path("path=", p, sizeof(p)), -1);
  assert_int_equal(streamadm_query_path("path=live/abcdef", p, 8), -1); /* does not fit */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_kick_body),
      cmocka_unit_test(test_drop_body),
      cmocka_unit_test(test_query_path),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
