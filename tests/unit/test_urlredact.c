/* Unit tests for common/urlredact.c: userinfo and query masked in every
 * scheme the agent dials, nothing else changed, truncation safe. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "urlredact.h"

static void test_redact(void **state) {
  (void)state;
  static const char *const v[][2] = {
      {"rtmp://user:pass@host:1935/live/x", "rtmp://***@host:1935/live/x"},
      {"http://u:p@h/flv/x.flv?key=s3cret", "http://***@h/flv/x.flv?***"},
      {"http://h/flv/x.flv?key=s3cret#frag", "http://h/flv/x.flv?***"},
      {"m7s://live/x", "m7s://live/x"},
      {"rtmp://host/live/x", "rtmp://host/live/x"},
      {"rtmp://a@b@host/live", "rtmp://***@host/live"},
      {"http://host/p@th", "http://host/p@th"},
      {"", ""},
  };
  char out[128];
  for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
    assert_string_equal(urlredact(v[i][0], out, sizeof(out)), v[i][1]);
  char small[8];
  urlredact("rtmp://user:pass@host/x", small, sizeof(small));
  assert_int_equal(strlen(small), 7);
  assert_null(strstr(small, "pass"));
  assert_string_equal(urlredact(NULL, out, sizeof(out)), "");
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_redact)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
