/* The QUIC stream header and answer: round trips, partial input, bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "stream.pb-c.h"
#include "streamhdr.h"

static void test_round_trip_and_partial(void **state) {
  (void)state;
  uint8_t buf[STREAMHDR_MAX + 2];
  char err[128];
  streamhdr_t h;
  long n = streamhdr_encode(STREAM_PULL, "live/cam1", buf, sizeof(buf));
  assert_true(n > 2);
  for (long i = 0; i < n; i++) assert_int_equal(streamhdr_parse(buf, (size_t)i, &h, err, sizeof(err)), 0);
  assert_int_equal(streamhdr_parse(buf, (size_t)n, &h, err, sizeof(err)), n);
  assert_int_equal(h.kind, STREAM_PULL);
  assert_string_equal(h.path, "live/cam1");
  streamhdr_free(&h);
  /* bytes after the header are the stream's payload, not the header's */
  memcpy(buf + n, "payload", 7);
  assert_int_equal(streamhdr_parse(buf, (size_t)n + 7, &h, err, sizeof(err)), n);
  streamhdr_free(&h);
}

static void expect_bad(const uint8_t *buf, size_t len, const char *why) {
  streamhdr_t h;
  char err[128] = "";
  assert_int_equal(streamhdr_parse(buf, len, &h, err, sizeof(err)), -1);
  assert_non_null(strstr(err, why));
}

static long pack_header(uint32_t version, int kind, const char *path, uint8_t *buf, size_t len) {
  Cascade__Stream__Header h = CASCADE__STREAM__HEADER__INIT;
  h.version = version;
  h.kind = (Cascade__Stream__Kind)kind;
  h.path = (char *)path;
  size_t n = cascade__stream__header__get_packed_size(&h);
  assert_true(n + 2 <= len);
  buf[0] = (uint8_t)(n >> 8);
  buf[1] = (uint8_t)n;
  cascade__stream__header__pack(&h, buf + 2);
  return (long)(n + 2);
}

static void test_bounds(void **state) {
  (void)state;
  uint8_t buf[8192];
  static char long_path[STREAMHDR_PATH_MAX + 2];
  memset(long_path, 'p', STREAMHDR_PATH_MAX + 1);
  long_path[STREAMHDR_PATH_MAX + 1] = '\0';
  uint8_t zero[2] = {0, 0};
  expect_bad(zero, 2, "length");
  uint8_t huge[2] = {0x10, 0x01};
  expect_bad(huge, 2, "length");
  uint8_t junk[5] = {0, 3, 0xff, 0xff, 0xff};
  expect_bad(junk, 5, "decode");
  long n = pack_header(2, STREAM_ECHO, "a/b", buf, sizeof(buf));
  expect_bad(buf, (size_t)n, "version");
  n = pack_header(1, 99, "a/b", buf, sizeof(buf));
  expect_bad(buf, (size_t)n, "kind");
  n = pack_header(1, STREAM_PUSH, long_path, buf, sizeof(buf));
  expect_bad(buf, (size_t)n, "path");
  n = pack_header(1, STREAM_PUSH, "live/a\nb", buf, sizeof(buf));
  expect_bad(buf, (size_t)n, "path");
  assert_int_equal(streamhdr_encode(STREAM_PUSH, long_path, buf, sizeof(buf)), -1);
  assert_int_equal(streamhdr_encode(STREAM_PUSH, "live/x", buf, 4), -1);
}

static void test_answer(void **state) {
  (void)state;
  uint8_t buf[1100];
  char reason[64], err[128];
  int ok = -1;
  uint32_t code = 99;
  long n = streamhdr_answer_encode(1, 0, "", buf, sizeof(buf));
  assert_true(n > 2);
  assert_int_equal(streamhdr_answer_parse(buf, (size_t)n, &ok, &code, reason, sizeof(reason), err,
                                          sizeof(err)),
                   n);
  assert_int_equal(ok, 1);
  assert_int_equal(code, 0);
  n = streamhdr_answer_encode(0, 0x103, "path busy", buf, sizeof(buf));
  assert_int_equal(streamhdr_answer_parse(buf, (size_t)n, &ok, &code, reason, sizeof(reason), err,
                                          sizeof(err)),
                   n);
  assert_int_equal(ok, 0);
  assert_int_equal(code, 0x103);
  assert_string_equal(reason, "path busy");
  assert_int_equal(streamhdr_answer_encode(0, 0, "", buf, sizeof(buf)), -1);
  assert_int_equal(streamhdr_answer_parse(buf, 1, &ok, &code, reason, sizeof(reason), err,
                                          sizeof(err)),
                   0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip_and_partial),
      cmocka_unit_test(test_bounds),
      cmocka_unit_test(test_answer),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
