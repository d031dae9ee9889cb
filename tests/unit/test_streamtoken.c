/* Unit tests for streamtoken: mint and verify, every refusal (missing,
 * malformed, unknown key, tampered, other path, other address, other
 * action, expired), rotation with two keys, the leeway, every one-character
 * mutation of a token, the query parser and the base64url decoder it uses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "b64.h"
#include "streamtoken.h"

#define NOW 1700000000ull

static streamtoken_key key_a, key_b;

static int setup(void **state) {
  (void)state;
  key_a.id = 7;
  key_b.id = 8;
  for (int i = 0; i < STREAMTOKEN_KEY_LEN; i++) {
    key_a.key[i] = (uint8_t)i;
    key_b.key[i] = (uint8_t)(0xa0 + i);
  }
  return 0;
}

static int verify1(const streamtoken_key *k, const char *tok, int action, const char *path,
                   const char *addr, uint64_t now) {
  return streamtoken_verify(k, 1, tok, tok ? strlen(tok) : 0, action, path, addr, now);
}

static void test_roundtrip(void **state) {
  (void)state;
  char t[STREAMTOKEN_LEN + 1];
  assert_int_equal(streamtoken_mint(&key_a, STREAMTOKEN_PUBLISH, "live/cam1", NOW + 60, NULL, t,
                                    sizeof(t)), 0);
  assert_int_equal(strlen(t), STREAMTOKEN_LEN);
  for (const char *p = t; *p; p++)
    assert_true((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
                *p == '-' || *p == '_');
  assert_int_equal(verify1(&key_a, t, STREAMTOKEN_PUBLISH, "live/cam1", "10.0.0.1", NOW), 0);
  streamtoken_info info;
  assert_int_equal(streamtoken_parse(t, strlen(t), &info), 0);
  assert_int_equal(info.action, STREAMTOKEN_PUBLISH);
  assert_int_equal(info.bound, 0);
  assert_int_equal(info.key_id, 7);
  assert_int_equal(info.expires, NOW + 60);
}

static void test_refusals(void **state) {
  (void)state;
  char t[STREAMTOKEN_LEN + 1];
  assert_int_equal(streamtoken_mint(&key_a, STREAMTOKEN_PLAY, "live/cam1", NOW + 60, NULL, t,
                                    sizeof(t)), 0);
  assert_int_equal(verify1(&key_a, NULL, STREAMTOKEN_PLAY, "live/cam1", NULL, NOW),
                   STREAMTOKEN_EMISSING);
  assert_int_equal(verify1(&key_a, "", STREAMTOKEN_PLAY, "live/cam1", NULL, NOW),
                   STREAMTOKEN_EMISSING);
  assert_int_equal(verify1(&key_a, "abc", STREAMTOKEN_PLAY, "live/cam1", NULL, NOW),
                   STREAMTOKEN_EMALFORMED);
  /* another path, a prefix of it, a longer one */
  assert_int_equal(verify1(&key_a, t, STREAMTOKEN_PLAY, "live/cam2", NULL, NOW), STREAMTOKEN_EMAC);
  assert_int_equal(verify1(&key_a, t, STREAMTOKEN_PLAY, "live/cam", NULL, NOW), STREAMTOKEN_EMAC);
  assert_int_equal(verify1(&key_a, t, STREAMTOKEN_PLAY, "live/cam10", NULL, NOW), STREAMTOKEN_EMAC);
  /* a play token does not publish */
  assert_int_equal(verify1(&key_a, t, STREAMTOKEN_PUBLISH, "live/cam1", NULL, NOW),
                   STREAMTOKEN_EACTION);
  /* another key with the same id: bad signature; another id: unknown key */
  streamtoken_key other = key_b;
  other.id = key_a.id;
  assert_int_equal(verify1(&other, t, STREAMTOKEN_PLAY, "live/cam1", NULL, NOW), STREAMTOKEN_EMAC);
  assert_int_equal(verify1(&key_b, t, STREAMTOKEN_PLAY, "live/cam1", NULL, NOW), STREAMTOKEN_EKEY);
  assert_int_equal(streamtoken_verify(&key_a, 0, t, strlen(t), STREAMTOKEN_PLAY, "live/cam1",
                                      NULL, NOW), STREAMTOKEN_EKEY);
  /* expiry, with the leeway for clock skew */
  assert_int_equal(verify1(&key_a, t, STREAMTOKEN_PLAY, "live/cam1", NULL,
                           NOW + 60 + STREAMTOKEN_LEEWAY_S), 0);
  assert_int_equal(verify1(&key_a, t, STREAMTOKEN_PLAY, "live/cam1", NULL,
                           NOW + 61 + STREAMTOKEN_LEEWAY_S), STREAMTOKEN_EEXPIRED);
  /* an expiry so large that the leeway wraps is expired, not forever */
  assert_int_equal(streamtoken_mint(&key_a, STREAMTOKEN_PLAY, "live/cam1", UINT64_MAX - 1, NULL,
                                    t, sizeof(t)), 0);
  assert_int_equal(verify1(&key_a, t, STREAMTOKEN_PLAY, "live/cam1", NULL, NOW),
                   STREAMTOKEN_EEXPIRED);
  assert_int_equal(streamtoken_status(STREAMTOKEN_EMISSING), 401);
  assert_int_equal(streamtoken_status(STREAMTOKEN_EEXPIRED), 401);
  assert_int_equal(streamtoken_status(STREAMTOKEN_EMAC), 403);
  assert_int_equal(streamtoken_status(STREAMTOKEN_EKEY), 403);
  assert_int_equal(streamtoken_status(STREAMTOKEN_EACTION), 403);
  assert_int_equal(streamtoken_status(STREAMTOKEN_EMALFORMED), 403);
}

static void test_address(void **state) {
  (void)state;
  char t[STREAMTOKEN_LEN + 1];
  assert_int_equal(streamtoken_mint(&key_a, STREAMTOKEN_PLAY, "live/cam1", NOW + 60, "127.0.0.2",
                                    t, sizeof(t)), 0);
  assert_int_equal(verify1(&key_a, t, STREAMTOKEN_PLAY, "live/cam1", "127.0.0.2", NOW), 0);
  assert_int_equal(verify1(&key_a, t, STREAMTOKEN_PLAY, "live/cam1", "::ffff:127.0.0.2", NOW), 0);
  assert_int_equal(verify1(&key_a, t, STREAMTOKEN_PLAY, "live/cam1", "127.0.0.1", NOW),
                   STREAMTOKEN_EMAC);
  assert_int_equal(verify1(&key_a, t, STREAMTOKEN_PLAY, "live/cam1", NULL, NOW), STREAMTOKEN_EMAC);
  assert_int_equal(verify1(&key_a, t, STREAMTOKEN_PLAY, "live/cam1", "garbage", NOW),
                   STREAMTOKEN_EMAC);
  /* IPv6 in its canonical form, whatever the spelling */
  assert_int_equal(streamtoken_mint(&key_a, STREAMTOKEN_PLAY, "live/cam1", NOW + 60,
                                    "2001:DB8:0:0::1", t, sizeof(t)), 0);
  assert_int_equal(verify1(&key_a, t, STREAMTOKEN_PLAY, "live/cam1", "2001:db8::1", NOW), 0);
  assert_int_equal(verify1(&key_a, t, STREAMTOKEN_PLAY, "live/cam1", "2001:db8::2", NOW),
                   STREAMTOKEN_EMAC);
  char c[64];
  assert_int_equal(streamtoken_addr_canon("::ffff:10.1.2.3", c, sizeof(c)), 0);
  assert_string_equal(c, "10.1.2.3");
  assert_int_equal(streamtoken_addr_canon("10.1.2.3:80", c, sizeof(c)), STREAMTOKEN_EINVAL);
  assert_int_equal(streamtoken_addr_canon("host", c, sizeof(c)), STREAMTOKEN_EINVAL);
  /* an unbound token works from anywhere */
  assert_int_equal(streamtoken_mint(&key_a, STREAMTOKEN_PLAY, "live/cam1", NOW + 60, NULL, t,
                                    sizeof(t)), 0);
  assert_int_equal(verify1(&key_a, t, STREAMTOKEN_PLAY, "live/cam1", "127.0.0.9", NOW), 0);
}

static void test_rotation(void **state) {
  (void)state;
  char ta[STREAMTOKEN_LEN + 1], tb[STREAMTOKEN_LEN + 1];
  assert_int_equal(streamtoken_mint(&key_a, STREAMTOKEN_PLAY, "a/b", NOW + 5, NULL, ta,
                                    sizeof(ta)), 0);
  assert_int_equal(streamtoken_mint(&key_b, STREAMTOKEN_PLAY, "a/b", NOW + 5, NULL, tb,
                                    sizeof(tb)), 0);
  streamtoken_key both[2] = {key_b, key_a};
  assert_int_equal(streamtoken_verify(both, 2, ta, strlen(ta), STREAMTOKEN_PLAY, "a/b", NULL, NOW), 0);
  assert_int_equal(streamtoken_verify(both, 2, tb, strlen(tb), STREAMTOKEN_PLAY, "a/b", NULL, NOW), 0);
  /* a rotated out */
  assert_int_equal(streamtoken_verify(both, 1, ta, strlen(ta), STREAMTOKEN_PLAY, "a/b", NULL, NOW),
                   STREAMTOKEN_EKEY);
  assert_int_equal(streamtoken_verify(both, 1, tb, strlen(tb), STREAMTOKEN_PLAY, "a/b", NULL, NOW), 0);
}

/* Every single-character change of a token is refused: each byte of the
 * header and of the MAC is covered. */
static void test_mutations(void **state) {
  (void)state;
  static const char alpha[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  char t[STREAMTOKEN_LEN + 1];
  assert_int_equal(streamtoken_mint(&key_a, STREAMTOKEN_PUBLISH, "live/x", NOW + 60, "10.0.0.1",
                                    t, sizeof(t)), 0);
  for (size_t i = 0; i < STREAMTOKEN_LEN; i++) {
    char orig = t[i];
    for (const char *a = alpha; *a; a++) {
      if (*a == orig) continue;
      t[i] = *a;
      assert_int_not_equal(verify1(&key_a, t, STREAMTOKEN_PUBLISH, "live/x", "10.0.0.1", NOW), 0);
    }
    t[i] = orig;
  }
  assert_int_equal(verify1(&key_a, t, STREAMTOKEN_PUBLISH, "live/x", "10.0.0.1", NOW), 0);
  /* truncated or extended */
  assert_int_equal(streamtoken_verify(&key_a, 1, t, STREAMTOKEN_LEN - 1, STREAMTOKEN_PUBLISH,
                                      "live/x", "10.0.0.1", NOW), STREAMTOKEN_EMALFORMED);
  char longer[STREAMTOKEN_LEN + 2];
  memcpy(longer, t, STREAMTOKEN_LEN);
  longer[STREAMTOKEN_LEN] = 'A';
  longer[STREAMTOKEN_LEN + 1] = 0;
  assert_int_equal(verify1(&key_a, longer, STREAMTOKEN_PUBLISH, "live/x", "10.0.0.1", NOW),
                   STREAMTOKEN_EMALFORMED);
}

static void test_mint_args(void **state) {
  (void)state;
  char t[STREAMTOKEN_LEN + 1];
  assert_int_equal(streamtoken_mint(&key_a, 3, "a/b", NOW, NULL, t, sizeof(t)), STREAMTOKEN_EINVAL);
  assert_int_equal(streamtoken_mint(&key_a, STREAMTOKEN_PLAY, "", NOW, NULL, t, sizeof(t)),
                   STREAMTOKEN_EINVAL);
  assert_int_equal(streamtoken_mint(&key_a, STREAMTOKEN_PLAY, "a/b", NOW, NULL, t, STREAMTOKEN_LEN),
                   STREAMTOKEN_EINVAL);
  assert_int_equal(streamtoken_mint(&key_a, STREAMTOKEN_PLAY, "a/b", NOW, "nope", t, sizeof(t)),
                   STREAMTOKEN_EINVAL);
  char big[STREAMTOKEN_PATH_MAX + 2];
  memset(big, 'a', sizeof(big) - 1);
  big[sizeof(big) - 1] = 0;
  assert_int_equal(streamtoken_mint(&key_a, STREAMTOKEN_PLAY, big, NOW, NULL, t, sizeof(t)),
                   STREAMTOKEN_EINVAL);
}

static void test_query(void **state) {
  (void)state;
  const char *tok = NULL;
  size_t n = 0;
  assert_int_equal(streamtoken_from_query(NULL, &tok, &n), 0);
  assert_int_equal(streamtoken_from_query("", &tok, &n), 0);
  assert_int_equal(streamtoken_from_query("mytoken=x&tokens=y", &tok, &n), 0);
  assert_int_equal(streamtoken_from_query("token=abc", &tok, &n), 1);
  assert_int_equal(n, 3);
  assert_memory_equal(tok, "abc", 3);
  assert_int_equal(streamtoken_from_query("a=1&token=xy&token=z", &tok, &n), 1);
  assert_int_equal(n, 2);
  assert_memory_equal(tok, "xy", 2);
  assert_int_equal(streamtoken_from_query("a=1&token=", &tok, &n), 1);
  assert_int_equal(n, 0);
}

static void test_b64url_decode(void **state) {
  (void)state;
  uint8_t out[8];
  assert_int_equal(b64url_decode("Zm9vYmFy", 8, out, sizeof(out)), 6);
  assert_memory_equal(out, "foobar", 6);
  assert_int_equal(b64url_decode("Zm8", 3, out, sizeof(out)), 2);
  assert_memory_equal(out, "fo", 2);
  assert_int_equal(b64url_decode("Zg", 2, out, sizeof(out)), 1);
  assert_int_equal(b64url_decode("", 0, out, sizeof(out)), 0);
  assert_int_equal(b64url_decode("-_8", 3, out, sizeof(out)), 2);
  assert_int_equal(out[0], 0xfb);
  assert_int_equal(out[1], 0xff);
  assert_int_equal(b64url_decode("Z", 1, out, sizeof(out)), -1);     /* 1 mod 4 */
  assert_int_equal(b64url_decode("Zh", 2, out, sizeof(out)), -1);    /* trailing bits */
  assert_int_equal(b64url_decode("Zm9=", 4, out, sizeof(out)), -1);  /* padding */
  assert_int_equal(b64url_decode("+/8", 3, out, sizeof(out)), -1);   /* standard alphabet */
  assert_int_equal(b64url_decode("Zm9vYmFy", 8, out, 5), -1);        /* short output */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_roundtrip, setup),
      cmocka_unit_test_setup(test_refusals, setup),
      cmocka_unit_test_setup(test_address, setup),
      cmocka_unit_test_setup(test_rotation, setup),
      cmocka_unit_test_setup(test_mutations, setup),
      cmocka_unit_test_setup(test_mint_args, setup),
      cmocka_unit_test_setup(test_query, setup),
      cmocka_unit_test_setup(test_b64url_decode, setup),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
