/* Unit tests for common/relpath.c: normalisation of relayed paths (dot
 * segments, repeated slashes, percent escapes decoded once), refusal of
 * encoded separators and control bytes, allow/deny prefix matching with
 * deny first, and the deny-bypass list each refused or caught. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "relpath.h"

static const char *norm(const char *in) {
  static char out[RELPATH_MAX + 1];
  const char *why = NULL;
  if (relpath_normalize(in, strlen(in), out, sizeof(out), &why) != 0) return NULL;
  return out;
}

static const char *why_of(const char *in) {
  char out[RELPATH_MAX + 1];
  const char *why = NULL;
  if (relpath_normalize(in, strlen(in), out, sizeof(out), &why) == 0) return NULL;
  return why;
}

static void test_normalize(void **state) {
  (void)state;
  assert_string_equal(norm("/api/stream/list"), "/api/stream/list");
  assert_string_equal(norm("/"), "/");
  assert_string_equal(norm("//"), "/");
  assert_string_equal(norm("/api//admin/x"), "/api/admin/x");
  assert_string_equal(norm("/api/./admin/x"), "/api/admin/x");
  assert_string_equal(norm("/api/%61dmin/x"), "/api/admin/x");
  assert_string_equal(norm("/flv/../api/admin/x"), "/api/admin/x");
  assert_string_equal(norm("/flv/%2e%2e/api/admin/x"), "/api/admin/x");
  assert_string_equal(norm("/flv/.%2E/api/admin/x"), "/api/admin/x");
  assert_string_equal(norm("/api/stream/"), "/api/stream/");
  assert_string_equal(norm("/api/stream/."), "/api/stream/");
  assert_string_equal(norm("/api/stream/.."), "/api/");
  assert_string_equal(norm("/a/b/../../c"), "/c");
  assert_string_equal(norm("/a/.."), "/");
  assert_string_equal(norm("/a/..b/.c"), "/a/..b/.c");
  /* decoded once: %2525 is "%25", not "%" */
  assert_string_equal(norm("/a/%2525"), "/a/%25");
  assert_string_equal(norm("/a%20b"), "/a b");
}

static void test_refusals(void **state) {
  (void)state;
  assert_non_null(why_of(""));
  assert_non_null(why_of("api/x"));
  assert_non_null(why_of("/.."));
  assert_non_null(why_of("/a/../.."));
  assert_non_null(why_of("/api%2fadmin/x"));
  assert_non_null(why_of("/api%2Fadmin/x"));
  assert_non_null(why_of("/api%5cadmin"));
  assert_non_null(why_of("/api\\admin"));
  assert_non_null(why_of("/api/%00x"));
  assert_non_null(why_of("/api/%0d%0aX-Injected: 1"));
  assert_non_null(why_of("/api/\r\n"));
  assert_non_null(why_of("/api/%1f"));
  assert_non_null(why_of("/api/%7F"));
  assert_non_null(why_of("/api/%"));
  assert_non_null(why_of("/api/%4"));
  assert_non_null(why_of("/api/%zz"));
  const char nul[] = {'/', 'a', 0, 'b'};
  char out[16];
  const char *why;
  assert_int_equal(relpath_normalize(nul, sizeof(nul), out, sizeof(out), &why), -1);
  /* the output bound is checked, never overrun */
  assert_int_equal(relpath_normalize("/abc", 4, out, 4, &why), -1);
  static char big[RELPATH_MAX + 2];
  memset(big, 'a', sizeof(big) - 1);
  big[0] = '/';
  static char bigout[RELPATH_MAX + 8];
  assert_int_equal(relpath_normalize(big, strlen(big), bigout, sizeof(bigout), &why), -1);
}

static void test_encode(void **state) {
  (void)state;
  char out[64];
  assert_int_equal(relpath_encode("/api/stream/list", out, sizeof(out)), 16);
  assert_string_equal(out, "/api/stream/list");
  assert_true(relpath_encode("/a b/%?#\xc3\xa9", out, sizeof(out)) > 0);
  assert_string_equal(out, "/a%20b/%25%3F%23%C3%A9");
  /* the encoding normalises back to the same path */
  assert_string_equal(norm(out), "/a b/%?#\xc3\xa9");
  assert_int_equal(relpath_encode("/abc", out, 4), -1);
  assert_int_equal(relpath_encode("/a b", out, 6), -1);
}

static void test_check(void **state) {
  (void)state;
  char *allow[] = {"/api/", "/flv/"};
  char *deny[] = {"/api/admin/"};
  const char *rule;
  assert_int_equal(relpath_check("/api/stream/list", allow, 2, deny, 1, &rule), RELPATH_ALLOWED);
  assert_string_equal(rule, "/api/");
  assert_int_equal(relpath_check("/flv/live/a.flv", allow, 2, deny, 1, &rule), RELPATH_ALLOWED);
  assert_int_equal(relpath_check("/api/admin/x", allow, 2, deny, 1, &rule), RELPATH_DENIED);
  assert_string_equal(rule, "/api/admin/");
  /* the prefix without its slash is covered too */
  assert_int_equal(relpath_check("/api/admin", allow, 2, deny, 1, &rule), RELPATH_DENIED);
  assert_int_equal(relpath_check("/api/administrator", allow, 2, deny, 1, &rule), RELPATH_ALLOWED);
  assert_int_equal(relpath_check("/metrics", allow, 2, deny, 1, &rule), RELPATH_NOT_ALLOWED);
  assert_null(rule);
  /* no allow list: nothing goes through */
  assert_int_equal(relpath_check("/api/stream/list", NULL, 0, NULL, 0, &rule),
                   RELPATH_NOT_ALLOWED);
  /* the bypass attempts, normalised first: each denied or refused */
  const char *tries[] = {"/api/admin/x", "/api//admin/x", "/api/./admin/x", "/api/%61dmin/x",
                         "/flv/../api/admin/x", "/api%2fadmin/x", "/api/admin%2fx",
                         "/api/%00/admin", "/API/../api/admin/x"};
  for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
    const char *n = norm(tries[i]);
    if (n != NULL) assert_int_equal(relpath_check(n, allow, 2, deny, 1, &rule), RELPATH_DENIED);
  }
}

static void test_rule_check(void **state) {
  (void)state;
  const char *good[] = {"/", "/api/", "/api", "/api/admin/", "/flv/live/a.flv", "/a b/",
                        "/\xc3\xa9/", "/x|y", "/api/.well-known/", "/a..b", "/..a/"};
  for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++)
    if (relpath_rule_check(good[i]) != NULL)
      fail_msg("'%s' refused: %s", good[i], relpath_rule_check(good[i]));
  const char *bad[] = {"", "api/", "*", "/api/cascade/*", "/api/*/x", "/api/?", "/api/x?y",
                       "/api/[a]", "/api/]", "/api/%61dmin/", "/api/%25", "/api//admin/",
                       "//", "/./", "/api/./x", "/api/../x", "/..", "/api/.", "/api/..",
                       "/a\\b", "/a\tb", "/a\x7f"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
    if (relpath_rule_check(bad[i]) == NULL) fail_msg("'%s' accepted", bad[i]);
  assert_non_null(strstr(relpath_rule_check("/api/cascade/*"), "not wildcards"));
  assert_non_null(strstr(relpath_rule_check("/api/%61"), "percent"));
  assert_non_null(strstr(relpath_rule_check("/api//x"), "normalised"));
  assert_non_null(strstr(relpath_rule_check("x"), "starting with /"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_normalize),
      cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_encode),
      cmocka_unit_test(test_check),
      cmocka_unit_test(test_rule_check),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
