/* Unit tests for controller/http_framing.c: which request heads have a
 * body length that can be read only one way. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "http_framing.h"

static const char *check(size_t cl, size_t te, const char *val, int http10) {
  http_framing_t f = {cl, te, val, http10};
  return http_framing_check(&f);
}

static void test_accepted(void **state) {
  (void)state;
  assert_null(check(0, 0, NULL, 0));            /* no body */
  assert_null(check(1, 0, NULL, 0));            /* Content-Length */
  assert_null(check(1, 0, NULL, 1));
  assert_null(check(0, 1, "chunked", 0));       /* chunked */
  assert_null(check(0, 1, "Chunked", 0));       /* codings are case-insensitive */
}

static void test_refused(void **state) {
  (void)state;
  const char *why = check(1, 1, "chunked", 0);  /* the smuggling pair */
  assert_non_null(why);
  assert_non_null(strstr(why, "Content-Length and Transfer-Encoding"));
  assert_non_null(check(2, 1, "chunked", 0));
  assert_non_null(check(1, 1, "identity", 0));
  assert_non_null(check(2, 0, NULL, 0));        /* two lengths, even equal ones */
  assert_non_null(check(0, 2, "chunked", 0));   /* two codings lines */
  assert_non_null(check(0, 1, "chunked", 1));   /* HTTP/1.0 has no chunked */
  assert_non_null(check(0, 1, "gzip, chunked", 0));
  assert_non_null(check(0, 1, "chunked, identity", 0));
  assert_non_null(check(0, 1, "gzip", 0));
  assert_non_null(check(0, 1, "xchunked", 0));
  assert_non_null(check(0, 1, "", 0));
  assert_non_null(check(0, 1, NULL, 0));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_accepted),
      cmocka_unit_test(test_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
