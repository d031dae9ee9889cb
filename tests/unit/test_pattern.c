/* Unit tests for common/pattern.c: pull targets are checked the same way by
 * the controller and the agent; expansion matches the whole stream path
 * and fills $0..$9 (the seed's examples, an unset group, "$$", a too-small
 * buffer). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "pattern.h"

static int expand(const char *pat, const char *subject, const char *target, char *out,
                  size_t outlen) {
  char err[256];
  pcre2_code *re = pattern_compile(pat, err, sizeof(err));
  assert_non_null(re);
  int r = pattern_expand(re, subject, target, out, outlen);
  pcre2_code_free(re);
  return r;
}

static void test_expand(void **state) {
  (void)state;
  char out[256];
  assert_int_equal(expand(".*", "live/cam1", "m7s://$0", out, sizeof(out)), 1);
  assert_string_equal(out, "m7s://live/cam1");
  assert_int_equal(expand("live/(.*)", "live/cam1", "m7s://live/$1", out, sizeof(out)), 1);
  assert_string_equal(out, "m7s://live/cam1");
  /* anchored at both ends */
  assert_int_equal(expand("live/(.*)", "olive/cam1", "m7s://$1", out, sizeof(out)), 0);
  assert_int_equal(expand("live/cam", "live/cam1", "m7s://$0", out, sizeof(out)), 0);
  assert_int_equal(expand("(\\w+)/(\\w+)", "live/cam1", "rtmp://10.0.0.1/$1/$2?x=$$1", out,
                          sizeof(out)),
                   1);
  assert_string_equal(out, "rtmp://10.0.0.1/live/cam1?x=$1");
  /* a group that did not take part, and one that does not exist: empty */
  assert_int_equal(expand("(a)|(live)/(.*)", "live/x", "m7s://[$1][$2][$9]", out, sizeof(out)), 1);
  assert_string_equal(out, "m7s://[][live][]");
  /* the output bound is kept */
  assert_int_equal(expand(".*", "live/cam1", "m7s://$0", out, 15), -1);
  assert_int_equal(expand(".*", "live/cam1", "m7s://$0", out, 16), 1);
  assert_string_equal(out, "m7s://live/cam1");
}

static void test_target_check(void **state) {
  (void)state;
  char err[256];
  const char *good[] = {"m7s://$0", "rtmp://10.0.0.1:1935/live/$1", "http://h/flv/$0.flv",
                        "m7s://live/$$"};
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
    if (pattern_target_check(good[i], err, sizeof(err)) != 0) fail_msg("%s: %s", good[i], err);
  const char *bad[] = {"", "m7s://", "https://h/x", "ftp://h/x", "m7s://$a", "m7s://$",
                       "rtmp://h/a b", "m7s://x\n", "live/$0"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    if (pattern_target_check(bad[i], err, sizeof(err)) == 0) fail_msg("accepted %s", bad[i]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_expand),
      cmocka_unit_test(test_target_check),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
