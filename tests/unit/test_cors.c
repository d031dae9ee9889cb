/* Unit tests for controller/cors.c: http.cors.origins entries and the
 * Access-Control-Allow-Origin a request's Origin gets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "cors.h"

static void valid_origins(void **state) {
  (void)state;
  const char *why;
  const char *ok[] = {"*", "https://console.example.com", "http://127.0.0.1:8080",
                      "http://localhost", "https://[::1]:8443", "https://a-b.c", "http://x:65535",
                      NULL};
  for (int i = 0; ok[i]; i++) {
    assert_int_equal(cors_origin_check(ok[i], &why), 0);
    assert_null(why);
  }
}

static void invalid_origins(void **state) {
  (void)state;
  const char *why;
  const char *bad[] = {"", "**", "console.example.com", "ftp://x", "https://", "https://x/",
                       "https://x/path", "https://X.example", "https://x:0", "https://x:65536",
                       "https://x:080", "https://x:", "https://user@x", "https://x?q",
                       "https://.x", "https://x.", "https://-x", "https://[::1", "https://[]",
                       "https://[G::1]", "http://x y", "null", NULL};
  for (int i = 0; bad[i]; i++) {
    why = NULL;
    assert_int_equal(cors_origin_check(bad[i], &why), -1);
    assert_non_null(why);
  }
  char longer[CORS_ORIGIN_MAX + 2];
  memset(longer, 'a', sizeof(longer) - 1);
  memcpy(longer, "https://", 8);
  longer[sizeof(longer) - 1] = '\0';
  assert_int_equal(cors_origin_check(longer, &why), -1);
  assert_int_equal(cors_origin_check(NULL, &why), -1);
}

static void match_exact(void **state) {
  (void)state;
  char *list[] = {"https://a.example", "http://127.0.0.1:9000"};
  assert_string_equal(cors_match(list, 2, "https://a.example"), "https://a.example");
  assert_string_equal(cors_match(list, 2, "http://127.0.0.1:9000"), "http://127.0.0.1:9000");
  /* exact, byte for byte: no prefix, no case folding, no trailing slash */
  assert_null(cors_match(list, 2, "https://a.example.evil.net"));
  assert_null(cors_match(list, 2, "https://a.exampl"));
  assert_null(cors_match(list, 2, "HTTPS://A.EXAMPLE"));
  assert_null(cors_match(list, 2, "https://a.example/"));
  assert_null(cors_match(list, 2, "http://a.example"));
  assert_null(cors_match(list, 2, "null"));
  assert_null(cors_match(list, 2, ""));
  assert_null(cors_match(list, 2, NULL));
  assert_null(cors_match(list, 0, "https://a.example"));
}

static void match_star(void **state) {
  (void)state;
  char *list[] = {"https://a.example", "*"};
  assert_string_equal(cors_match(list, 2, "https://a.example"), "https://a.example");
  assert_string_equal(cors_match(list, 2, "https://other.example"), "*");
  assert_null(cors_match(list, 2, NULL)); /* no Origin: not a cross-origin request */
  char huge[CORS_ORIGIN_MAX + 10];
  memset(huge, 'x', sizeof(huge) - 1);
  huge[sizeof(huge) - 1] = '\0';
  assert_null(cors_match(list, 2, huge));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(valid_origins),
      cmocka_unit_test(invalid_origins),
      cmocka_unit_test(match_exact),
      cmocka_unit_test(match_star),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
