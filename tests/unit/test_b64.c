/* Unit tests for b64: RFC 4648 vectors, the URL-safe variant, every input
 * the strict decoder must refuse, and short output buffers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "b64.h"

/* RFC 4648 section 10. */
static const struct {
  const char *plain;
  const char *enc;
} rfc4648[] = {
    {"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},
    {"foo", "Zm9v"},  {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};
#define NVEC (sizeof(rfc4648) / sizeof(rfc4648[0]))

static void test_rfc4648_encode(void **state) {
  (void)state;
  for (size_t i = 0; i < NVEC; i++) {
    char out[16];
    size_t n = strlen(rfc4648[i].plain);
    long r = b64_encode((const uint8_t *)rfc4648[i].plain, n, out, sizeof(out));
    assert_int_equal(r, strlen(rfc4648[i].enc));
    assert_string_equal(out, rfc4648[i].enc);
    assert_int_equal(b64_encoded_len(n), strlen(rfc4648[i].enc));
  }
}

static void test_rfc4648_decode(void **state) {
  (void)state;
  for (size_t i = 0; i < NVEC; i++) {
    uint8_t out[16];
    memset(out, 0xaa, sizeof(out));
    long r = b64_decode(rfc4648[i].enc, strlen(rfc4648[i].enc), out,
                        sizeof(out));
    assert_int_equal(r, strlen(rfc4648[i].plain));
    assert_memory_equal(out, rfc4648[i].plain, (size_t)r);
    /* Nothing written past the decoded length. */
    assert_int_equal(out[r], 0xaa);
  }
}

static void test_url_variant(void **state) {
  (void)state;
  /* 0xfb 0xff is "+/8=" in the standard alphabet: both URL substitutions. */
  const uint8_t in[] = {0xfb, 0xff, 0xfe};
  char out[16];
  assert_int_equal(b64_encode(in, 2, out, sizeof(out)), 4);
  assert_string_equal(out, "+/8=");
  assert_int_equal(b64url_encode(in, 2, out, sizeof(out)), 3);
  assert_string_equal(out, "-_8");
  assert_int_equal(b64url_encode(in, 3, out, sizeof(out)), 4);
  assert_string_equal(out, "-__-");
  /* Unpadded RFC 4648 vectors. */
  static const char *const unpadded[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg",
                                         "Zm9vYmE", "Zm9vYmFy"};
  for (size_t i = 0; i < NVEC; i++) {
    long r = b64url_encode((const uint8_t *)rfc4648[i].plain,
                           strlen(rfc4648[i].plain), out, sizeof(out));
    assert_int_equal(r, strlen(unpadded[i]));
    assert_string_equal(out, unpadded[i]);
  }
}

static void test_all_bytes_round_trip(void **state) {
  (void)state;
  uint8_t in[256], back[256];
  char enc[400];
  for (int i = 0; i < 256; i++) in[i] = (uint8_t)i;
  for (size_t n = 0; n <= sizeof(in); n++) {
    long e = b64_encode(in, n, enc, sizeof(enc));
    assert_int_equal(e, b64_encoded_len(n));
    long d = b64_decode(enc, (size_t)e, back, sizeof(back));
    assert_int_equal(d, n);
    assert_memory_equal(back, in, n);
  }
}

static void expect_reject(const char *s, size_t n) {
  uint8_t out[64];
  long r = b64_decode(s, n, out, sizeof(out));
  if (r != -1) fail_msg("accepted \"%.*s\" (%zu chars)", (int)n, s, n);
}

static void test_decode_rejects(void **state) {
  (void)state;
  static const char *const bad[] = {
      /* length not a multiple of 4 */
      "Z", "Zg", "Zg=", "Zm9", "Zm9vY", "Zg===",
      /* padding anywhere but the end */
      "====", "Z===", "=g==", "Z=g=", "Zg==Zg==", "Zm8=Zm8=", "Zg=A",
      /* non-zero bits after the last byte */
      "Zh==", "Zv==", "Zm9=", "Zm/=",
      /* whitespace, URL alphabet, other characters */
      " Zg=", "Zg= ", "Zm9v\n", "Zm\r\n9v", "Zm\t9", "Zm-v", "Zm_v",
      "Zm.v", "Zm9v====", "\xffZm9",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    expect_reject(bad[i], strlen(bad[i]));
  /* An embedded NUL inside the given length. */
  expect_reject("Zm\0v", 4);
  /* NULL input with a length. */
  uint8_t out[4];
  assert_int_equal(b64_decode(NULL, 4, out, sizeof(out)), -1);
}

static void test_short_buffers(void **state) {
  (void)state;
  const uint8_t in[] = "foobar";
  char enc[16];
  /* Encoding needs its length plus the NUL. */
  assert_int_equal(b64_encode(in, 6, enc, 8), -1);
  assert_int_equal(b64_encode(in, 6, enc, 9), 8);
  assert_string_equal(enc, "Zm9vYmFy");
  assert_int_equal(b64_encode(in, 0, enc, 0), -1);
  assert_int_equal(b64_encode(in, 0, enc, 1), 0);
  assert_string_equal(enc, "");
  assert_int_equal(b64url_encode(in, 5, enc, 7), -1);
  assert_int_equal(b64url_encode(in, 5, enc, 8), 7);
  assert_string_equal(enc, "Zm9vYmE");

  /* Decoding needs exactly the decoded length, padding excluded. */
  uint8_t dec[8];
  assert_int_equal(b64_decode("Zm9vYmE=", 8, dec, 4), -1);
  assert_int_equal(b64_decode("Zm9vYmE=", 8, dec, 5), 5);
  assert_memory_equal(dec, "fooba", 5);
  assert_int_equal(b64_decode("Zm9vYg==", 8, dec, 3), -1);
  assert_int_equal(b64_decode("Zm9vYg==", 8, dec, 4), 4);
  assert_int_equal(b64_decode("Zm9vYmFy", 8, dec, 5), -1);
  assert_int_equal(b64_decode("Zm9vYmFy", 8, dec, 6), 6);
  assert_int_equal(b64_decode("", 0, dec, 0), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rfc4648_encode),
      cmocka_unit_test(test_rfc4648_decode),
      cmocka_unit_test(test_url_variant),
      cmocka_unit_test(test_all_bytes_round_trip),
      cmocka_unit_test(test_decode_rejects),
      cmocka_unit_test(test_short_buffers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
