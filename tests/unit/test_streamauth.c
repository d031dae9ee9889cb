/* Unit tests for controller/streamauth.c: the policy, hooks, PUT and token
 * bodies (every refusal: bad pattern, bad mode, unknown field, bad URL, ttl
 * bounds, bad address), and key sealing (round trip, another CA's key,
 * any altered byte). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "streamauth.h"

static int update(const char *body, sa_update_t *u, char *err) {
  return sa_update_body(body, strlen(body), u, err, 320);
}

static void test_update_body(void **state) {
  (void)state;
  sa_update_t u;
  char err[320];
  assert_int_equal(update("{\"policy\":[{\"pattern\":\"live/.*\",\"publish\":\"token\","
                          "\"play\":\"none\"}]}", &u, err), 0);
  assert_string_equal(u.policy, "[{\"pattern\":\"live/.*\",\"publish\":\"token\",\"play\":\"none\"}]");
  assert_null(u.hooks);
  sa_update_free(&u);
  assert_int_equal(update("{\"hooks\":{\"on_publish\":\"https://h.example/p\",\"timeout_ms\":500}}",
                          &u, err), 0);
  assert_null(u.policy);
  assert_non_null(u.hooks);
  sa_update_free(&u);
  assert_int_equal(update("{\"policy\":[]}", &u, err), 0);
  sa_update_free(&u);
  static const char *const bad[][2] = {
      {"{}", "nothing to change"},
      {"[]", "JSON object"},
      {"{\"policy\":[{\"pattern\":\"(\",\"publish\":\"token\",\"play\":\"token\"}]}", "bad pattern"},
      {"{\"policy\":[{\"pattern\":\"x\",\"publish\":\"open\",\"play\":\"token\"}]}", "none, token or hook"},
      {"{\"policy\":[{\"pattern\":\"x\",\"publish\":\"none\"}]}", "none, token or hook"},
      {"{\"policy\":[{\"pattern\":\"\",\"publish\":\"none\",\"play\":\"none\"}]}", "pattern"},
      {"{\"policy\":[{\"pattern\":\"x\",\"publish\":\"none\",\"play\":\"none\",\"x\":1}]}", "unknown field"},
      {"{\"policy\":{}}", "list"},
      {"{\"hooks\":{\"on_play\":\"ftp://x\"}}", "hooks.on_play"},
      {"{\"hooks\":{\"on_play\":\"http://\"}}", "hooks.on_play"},
      {"{\"hooks\":{\"on_play\":\"http://a b\"}}", "hooks.on_play"},
      {"{\"hooks\":{\"timeout_ms\":0}}", "timeout_ms"},
      {"{\"hooks\":{\"timeout_ms\":60001}}", "timeout_ms"},
      {"{\"hooks\":{\"cache_ms\":-1}}", "cache_ms"},
      {"{\"hooks\":{\"fail_open\":1}}", "fail_open"},
      {"{\"hooks\":{\"on_connect\":\"\"}}", "unknown field"},
      {"{\"policy\":[],\"keys\":[]}", "unknown field"},
      {"{\"policy\":[], \"policy\":[]}", "invalid JSON"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    memset(&u, 0x5a, sizeof(u));
    if (update(bad[i][0], &u, err) != -1) fail_msg("accepted: %s", bad[i][0]);
    if (strstr(err, bad[i][1]) == NULL) fail_msg("%s: '%s' lacks '%s'", bad[i][0], err, bad[i][1]);
    assert_null(u.policy); /* nothing kept from a bad request */
    assert_null(u.hooks);
  }
  /* 33 rules: over the bound */
  char big[8192] = "{\"policy\":[";
  for (int i = 0; i <= SA_RULES_MAX; i++)
    strcat(big, i ? ",{\"pattern\":\"a\",\"publish\":\"none\",\"play\":\"none\"}"
                  : "{\"pattern\":\"a\",\"publish\":\"none\",\"play\":\"none\"}");
  strcat(big, "]}");
  assert_int_equal(update(big, &u, err), -1);
  assert_non_null(strstr(err, "at most 32"));
}

static void test_hooks_merge(void **state) {
  (void)state;
  char *out = NULL, err[320];
  json_t *base = json_pack("{s:s,s:i}", "on_play", "http://a/p", "cache_ms", 5);
  json_t *v = json_pack("{s:s}", "on_stop", "http://a/s");
  assert_int_equal(sa_hooks_check(v, base, &out, err, sizeof(err)), 0);
  assert_non_null(strstr(out, "\"on_play\":\"http://a/p\""));
  assert_non_null(strstr(out, "\"on_stop\":\"http://a/s\""));
  assert_non_null(strstr(out, "\"cache_ms\":5"));
  assert_non_null(strstr(out, "\"timeout_ms\":2000"));
  free(out);
  json_decref(base);
  json_decref(v);
}

static int token(const char *body, sa_token_req_t *t, char *err) {
  return sa_token_body(body, strlen(body), t, err, 320);
}

static void test_token_body(void **state) {
  (void)state;
  sa_token_req_t t;
  char err[320];
  assert_int_equal(token("{\"path\":\"live/cam1\",\"action\":\"publish\"}", &t, err), 0);
  assert_string_equal(t.path, "live/cam1");
  assert_int_equal(t.action, STREAMTOKEN_PUBLISH);
  assert_int_equal(t.ttl, SA_TTL_DEFAULT);
  assert_string_equal(t.addr, "");
  assert_int_equal(token("{\"path\":\"a/b\",\"action\":\"play\",\"ttl\":10,\"addr\":\"::ffff:127.0.0.2\"}",
                         &t, err), 0);
  assert_int_equal(t.action, STREAMTOKEN_PLAY);
  assert_int_equal(t.ttl, 10);
  assert_string_equal(t.addr, "127.0.0.2");
  static const char *const bad[][2] = {
      {"{\"path\":\"/live/x\",\"action\":\"play\"}", "path"},
      {"{\"path\":\"live/x?token=1\",\"action\":\"play\"}", "path"},
      {"{\"path\":\"livex\",\"action\":\"play\"}", "path"},
      {"{\"path\":\"\",\"action\":\"play\"}", "path"},
      {"{\"path\":\"a/b\",\"action\":\"watch\"}", "action"},
      {"{\"path\":\"a/b\",\"action\":\"play\",\"ttl\":9}", "ttl"},
      {"{\"path\":\"a/b\",\"action\":\"play\",\"ttl\":604801}", "ttl"},
      {"{\"path\":\"a/b\",\"action\":\"play\",\"ttl\":\"60\"}", "ttl"},
      {"{\"path\":\"a/b\",\"action\":\"play\",\"addr\":\"host\"}", "addr"},
      {"{\"path\":\"a/b\",\"action\":\"play\",\"key\":1}", "unknown field"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    if (token(bad[i][0], &t, err) != -1) fail_msg("accepted: %s", bad[i][0]);
    if (strstr(err, bad[i][1]) == NULL) fail_msg("%s: '%s' lacks '%s'", bad[i][0], err, bad[i][1]);
  }
}

static void test_seal(void **state) {
  (void)state;
  uint8_t kek[32], kek2[32], key[STREAMTOKEN_KEY_LEN], back[STREAMTOKEN_KEY_LEN];
  uint8_t s1[SA_SEALED_LEN], s2[SA_SEALED_LEN];
  assert_int_equal(sa_kek("-----BEGIN PRIVATE KEY-----\nA\n", kek), 0);
  assert_int_equal(sa_kek("-----BEGIN PRIVATE KEY-----\nB\n", kek2), 0);
  assert_memory_not_equal(kek, kek2, 32);
  assert_int_equal(sa_kek("", kek2), -1);
  for (int i = 0; i < STREAMTOKEN_KEY_LEN; i++) key[i] = (uint8_t)(i * 3);
  assert_int_equal(sa_seal(kek, key, s1), 0);
  assert_int_equal(sa_seal(kek, key, s2), 0);
  assert_memory_not_equal(s1, s2, SA_SEALED_LEN); /* a fresh nonce each time */
  assert_memory_not_equal(s1 + 12, key, STREAMTOKEN_KEY_LEN); /* not in clear */
  assert_int_equal(sa_unseal(kek, s1, SA_SEALED_LEN, back), 0);
  assert_memory_equal(back, key, STREAMTOKEN_KEY_LEN);
  assert_int_equal(sa_unseal(kek2, s1, SA_SEALED_LEN, back), -1);
  assert_int_equal(sa_unseal(kek, s1, SA_SEALED_LEN - 1, back), -1);
  for (int i = 0; i < SA_SEALED_LEN; i++) {
    s1[i] ^= 1;
    assert_int_equal(sa_unseal(kek, s1, SA_SEALED_LEN, back), -1);
    s1[i] ^= 1;
  }
  uint8_t h[4];
  assert_int_equal(sa_hex_decode("\\x0aff", h, sizeof(h)), 2);
  assert_int_equal(h[1], 0xff);
  assert_int_equal(sa_hex_decode("0aff", h, sizeof(h)), -1);
  assert_int_equal(sa_hex_decode("\\x0af", h, sizeof(h)), -1);
  assert_int_equal(sa_hex_decode("\\x0g", h, sizeof(h)), -1);
  assert_int_equal(sa_hex_decode("\\x0102030405", h, sizeof(h)), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_update_body),
      cmocka_unit_test(test_hooks_merge),
      cmocka_unit_test(test_token_body),
      cmocka_unit_test(test_seal),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
