/* Unit tests for amf: byte-exact encodings of every type, decode/encode
 * round trips, a real connect command, and every bound and malformed
 * input the decoder must refuse. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "amf.h"

static void test_encode_bytes(void **state) {
  (void)state;
  amf_buf_t b;
  amf_buf_init(&b);
  amf_put_number(&b, 1.0);
  amf_put_bool(&b, 1);
  amf_put_string(&b, "ab");
  amf_put_null(&b);
  amf_put_undefined(&b);
  amf_put_object_start(&b);
  amf_put_prop_number(&b, "x", 0);
  amf_put_object_end(&b);
  amf_put_ecma_start(&b, 1);
  amf_put_prop_bool(&b, "k", 0);
  amf_put_object_end(&b);
  static const uint8_t want[] = {
      0x00, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0,          /* number 1.0 */
      0x01, 0x01,                                  /* true */
      0x02, 0x00, 0x02, 'a', 'b',                  /* "ab" */
      0x05, 0x06,                                  /* null, undefined */
      0x03, 0x00, 0x01, 'x', 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x00, 0x09,
      0x08, 0, 0, 0, 1, 0x00, 0x01, 'k', 0x01, 0x00, 0x00, 0x00, 0x09};
  assert_int_equal(b.err, 0);
  assert_int_equal(b.len, sizeof(want));
  assert_memory_equal(b.data, want, sizeof(want));
  amf_buf_free(&b);
}

static void test_decode_all_types(void **state) {
  (void)state;
  static const uint8_t in[] = {
      0x00, 0x40, 0x59, 0, 0, 0, 0, 0, 0,          /* 100.0 */
      0x01, 0x00,                                  /* false */
      0x02, 0x00, 0x03, 'c', 'a', 'm',             /* "cam" */
      0x0c, 0, 0, 0, 2, 'h', 'i',                  /* long "hi" */
      0x0a, 0, 0, 0, 2, 0x05, 0x01, 0x01,          /* [null, true] */
      0x0b, 0x42, 0x70, 0, 0, 0, 0, 0, 0, 0x00, 0x00, /* date */
      0x08, 0, 0, 0, 9, 0x00, 0x01, 'w', 0x00, 0x40, 0x94, 0, 0, 0, 0, 0, 0, 0, 0, 0x09,
      0x03, 0x00, 0x01, 'o', 0x03, 0x00, 0x00, 0x09, 0x00, 0x00, 0x09};
  amf_value_t *v = NULL;
  assert_int_equal(amf_decode_list(in, sizeof(in), NULL, &v), 0);
  assert_int_equal(v->count, 8);
  double d = 0;
  assert_int_equal(amf_num(amf_at(v, 0), &d), 0);
  assert_true(d == 100.0);
  assert_int_equal(amf_at(v, 1)->type, AMF_BOOLEAN);
  assert_int_equal(amf_at(v, 1)->boolean, 0);
  assert_string_equal(amf_str(amf_at(v, 2)), "cam");
  assert_int_equal(amf_at(v, 3)->type, AMF_LONG_STRING);
  assert_string_equal(amf_str(amf_at(v, 3)), "hi");
  assert_int_equal(amf_at(v, 4)->count, 2);
  assert_int_equal(amf_at(amf_at(v, 4), 1)->boolean, 1);
  assert_int_equal(amf_at(v, 5)->type, AMF_DATE);
  assert_int_equal(amf_num(amf_get(amf_at(v, 6), "w"), &d), 0);
  assert_true(d == 1280.0);   /* ECMA count 9 is a hint only */
  assert_non_null(amf_get(amf_at(v, 7), "o"));
  assert_int_equal(amf_get(amf_at(v, 7), "o")->type, AMF_OBJECT);
  assert_null(amf_get(amf_at(v, 7), "missing"));
  assert_null(amf_at(v, 8));
  assert_int_equal(amf_num(amf_at(v, 2), &d), -1);
  assert_null(amf_str(amf_at(v, 0)));

  /* Encoding the tree gives the input back, except the ECMA count hint. */
  amf_buf_t b;
  amf_buf_init(&b);
  assert_int_equal(amf_encode(&b, v, 1), 0);
  assert_int_equal(b.len, sizeof(in));
  uint8_t fixed[sizeof(in)];
  memcpy(fixed, in, sizeof(in));
  fixed[47] = 1;   /* the ECMA count byte, now the real count */
  assert_memory_equal(b.data, fixed, sizeof(in));
  amf_buf_free(&b);
  amf_free(v);
}

static void test_connect_command(void **state) {
  (void)state;
  amf_buf_t b;
  amf_buf_init(&b);
  amf_put_string(&b, "connect");
  amf_put_number(&b, 1);
  amf_put_object_start(&b);
  amf_put_prop_string(&b, "app", "live");
  amf_put_prop_string(&b, "flashVer", "FMLE/3.0 (compatible; FMSc/1.0)");
  amf_put_prop_string(&b, "tcUrl", "rtmp://127.0.0.1:1935/live");
  amf_put_prop_number(&b, "objectEncoding", 0);
  amf_put_object_end(&b);
  amf_value_t *v = NULL;
  assert_int_equal(amf_decode_list(b.data, b.len, NULL, &v), 0);
  assert_string_equal(amf_str(amf_at(v, 0)), "connect");
  assert_string_equal(amf_str(amf_get(amf_at(v, 2), "app")), "live");
  assert_string_equal(amf_str(amf_get(amf_at(v, 2), "tcUrl")), "rtmp://127.0.0.1:1935/live");
  amf_free(v);
  amf_buf_free(&b);
}

static void test_truncated_every_prefix(void **state) {
  (void)state;
  amf_buf_t b;
  amf_buf_init(&b);
  amf_put_object_start(&b);
  amf_put_prop_string(&b, "k", "value");
  amf_put_key(&b, "arr");
  amf_put_ecma_start(&b, 1);
  amf_put_prop_number(&b, "n", 3);
  amf_put_object_end(&b);
  amf_put_object_end(&b);
  for (size_t n = 0; n < b.len; n++) {
    amf_value_t *v = (amf_value_t *)1;
    size_t used = 99;
    uint8_t *copy = malloc(n ? n : 1);
    memcpy(copy, b.data, n);
    assert_int_equal(amf_decode(copy, n, NULL, &v, &used), AMF_ETRUNC);
    assert_null(v);
    free(copy);
  }
  amf_value_t *v = NULL;
  size_t used = 0;
  assert_int_equal(amf_decode(b.data, b.len, NULL, &v, &used), 0);
  assert_int_equal(used, b.len);
  amf_free(v);
  amf_buf_free(&b);
}

static amf_buf_t nested(unsigned depth) {
  amf_buf_t b;
  amf_buf_init(&b);
  for (unsigned i = 0; i < depth; i++) {
    amf_put_object_start(&b);
    amf_put_key(&b, "a");
  }
  amf_put_null(&b);
  for (unsigned i = 0; i < depth; i++) amf_put_object_end(&b);
  return b;
}

static void test_depth_limit(void **state) {
  (void)state;
  amf_buf_t ok = nested(AMF_MAX_DEPTH), bad = nested(AMF_MAX_DEPTH + 1);
  amf_value_t *v = NULL;
  assert_int_equal(amf_decode_list(ok.data, ok.len, NULL, &v), 0);
  amf_free(v);
  assert_int_equal(amf_decode_list(bad.data, bad.len, NULL, &v), AMF_EDEPTH);
  assert_null(v);
  /* A smaller configured depth applies; a larger one is capped at 32. */
  amf_limits_t lim = {4, 1000, 1 << 20};
  assert_int_equal(amf_decode_list(ok.data, ok.len, &lim, &v), AMF_EDEPTH);
  lim.depth = 1000;
  assert_int_equal(amf_decode_list(bad.data, bad.len, &lim, &v), AMF_EDEPTH);
  /* Strict arrays nest too. */
  amf_buf_t arr;
  amf_buf_init(&arr);
  for (int i = 0; i < 40; i++) {
    amf_put_raw(&arr, "\x0a\x00\x00\x00\x01", 5);
  }
  amf_put_null(&arr);
  assert_int_equal(amf_decode_list(arr.data, arr.len, NULL, &v), AMF_EDEPTH);
  amf_buf_free(&arr);
  amf_buf_free(&ok);
  amf_buf_free(&bad);
}

static void test_count_and_size_limits(void **state) {
  (void)state;
  amf_buf_t b;
  amf_buf_init(&b);
  for (int i = 0; i < 100; i++) amf_put_null(&b);
  amf_limits_t lim = {32, 50, 1 << 20};
  amf_value_t *v = NULL;
  assert_int_equal(amf_decode_list(b.data, b.len, &lim, &v), AMF_ECOUNT);
  lim.elements = 100;
  assert_int_equal(amf_decode_list(b.data, b.len, &lim, &v), 0);
  amf_free(v);
  lim.bytes = 99;
  assert_int_equal(amf_decode_list(b.data, b.len, &lim, &v), AMF_ESIZE);
  size_t used;
  assert_int_equal(amf_decode(b.data, b.len, &lim, &v, &used), 0);   /* one value fits */
  assert_int_equal(used, 1);
  amf_free(v);
  amf_buf_free(&b);

  /* A strict array claiming 4 billion items is refused before any allocation. */
  static const uint8_t huge[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0x05};
  assert_int_equal(amf_decode_list(huge, sizeof(huge), NULL, &v), AMF_ETRUNC);
  /* A long string longer than the input. */
  static const uint8_t lstr[] = {0x0c, 0x7f, 0xff, 0xff, 0xff, 'a'};
  assert_int_equal(amf_decode_list(lstr, sizeof(lstr), NULL, &v), AMF_ETRUNC);
}

static void test_bad_types(void **state) {
  (void)state;
  static const uint8_t types[] = {0x04, 0x07, 0x09, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0xff};
  for (size_t i = 0; i < sizeof(types); i++) {
    uint8_t in[8] = {types[i], 0, 1, 'a', 0, 0, 0, 0};
    amf_value_t *v = (amf_value_t *)1;
    assert_int_equal(amf_decode_list(in, sizeof(in), NULL, &v), AMF_ETYPE);
    assert_null(v);
  }
  /* An object whose member value is an OBJECT_END marker after a key. */
  static const uint8_t obj[] = {0x03, 0x00, 0x01, 'k', 0x09};
  amf_value_t *v = NULL;
  assert_int_equal(amf_decode_list(obj, sizeof(obj), NULL, &v), AMF_ETYPE);
}

static void test_tree_building(void **state) {
  (void)state;
  amf_value_t *o = amf_new_object();
  assert_int_equal(amf_add(o, "level", amf_new_string("status", 6)), 0);
  assert_int_equal(amf_add(o, "n", amf_new_number(2)), 0);
  assert_int_equal(amf_add(o, "b", amf_new_bool(1)), 0);
  assert_int_equal(amf_add(o, "z", amf_new_null()), 0);
  amf_buf_t b;
  amf_buf_init(&b);
  assert_int_equal(amf_encode(&b, o, 0), 0);
  amf_value_t *v = NULL;
  size_t used = 0;
  assert_int_equal(amf_decode(b.data, b.len, NULL, &v, &used), 0);
  assert_int_equal(used, b.len);
  assert_string_equal(amf_str(amf_get(v, "level")), "status");
  assert_int_equal(amf_get(v, "z")->type, AMF_NULL);
  amf_free(v);
  amf_free(o);
  amf_buf_free(&b);

  /* Strings past 65535 bytes become long strings. */
  char *big = malloc(70000);
  memset(big, 'x', 69999);
  big[69999] = 0;
  amf_buf_init(&b);
  amf_put_string(&b, big);
  assert_int_equal(b.data[0], AMF_LONG_STRING);
  assert_int_equal(amf_decode(b.data, b.len, NULL, &v, &used), 0);
  assert_int_equal(v->len, 69999);
  amf_free(v);
  amf_buf_free(&b);
  free(big);

  /* A buffer over its maximum reports the error and stays usable to free. */
  amf_buf_init(&b);
  b.max = 8;
  amf_put_string(&b, "too long for eight");
  assert_int_equal(b.err, AMF_ESIZE);
  amf_buf_free(&b);
  amf_free(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_encode_bytes),
      cmocka_unit_test(test_decode_all_types),
      cmocka_unit_test(test_connect_command),
      cmocka_unit_test(test_truncated_every_prefix),
      cmocka_unit_test(test_depth_limit),
      cmocka_unit_test(test_count_and_size_limits),
      cmocka_unit_test(test_bad_types),
      cmocka_unit_test(test_tree_building),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
