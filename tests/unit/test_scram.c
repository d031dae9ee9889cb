/* Unit tests for scram: the RFC 7677 test vector, PostgreSQL's verifier text
 * form (hand-computed and produced by libpq 15), the strict parser, and the
 * argument bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "b64.h"
#include "scram.h"

/* RFC 7677 section 3. */
#define V_PASSWORD "pencil"
#define V_SALT_B64 "W22ZaJ0SNY7soEsUEjb6gQ=="
#define V_ITER 4096
#define V_CLIENT_FIRST_BARE "n=user,r=rOprNGfwEbeRWgbNEkqO"
#define V_SERVER_FIRST                                         \
  "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=" V_SALT_B64 \
  ",i=4096"
#define V_CLIENT_FINAL_NO_PROOF \
  "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define V_AUTH_MSG \
  V_CLIENT_FIRST_BARE "," V_SERVER_FIRST "," V_CLIENT_FINAL_NO_PROOF
#define V_PROOF_B64 "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define V_SERVER_SIG_B64 "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

/* The verifier PostgreSQL stores for "pencil" with the vector's salt and
 * iterations, computed independently (Python hashlib/hmac) from the RFC
 * 5802 definitions; the same script reproduces the RFC's proof and
 * signature above, which cross-checks it. */
#define V_VERIFIER                                                  \
  "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"                    \
  "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"                   \
  "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="

/* Produced by libpq 15.18: PQencryptPasswordConn(conn, "correct horse
 * battery staple", "node", "scram-sha-256"), random salt. */
#define PG_SECRET "correct horse battery staple"
#define PG_VERIFIER                                                 \
  "SCRAM-SHA-256$4096:cbEBl0cp8+TpTF6Zl3+lew==$"                    \
  "vCZXja2EvWlyBOoKlpGYeGA2PUhDVfqgboNt8qWRiCk=:"                   \
  "Ub9O3rEp3cbeurrlU0AVR+Ca6KON9lzrWIo7esJtywc="

static size_t vector_salt(uint8_t salt[SCRAM_SALT_MAX]) {
  long n = b64_decode(V_SALT_B64, strlen(V_SALT_B64), salt, SCRAM_SALT_MAX);
  assert_int_equal(n, 16);
  return (size_t)n;
}

static void decode_key(const char *b64, uint8_t key[SCRAM_KEY_LEN]) {
  assert_int_equal(b64_decode(b64, strlen(b64), key, SCRAM_KEY_LEN),
                   SCRAM_KEY_LEN);
}

static void vector_verifier(scram_verifier_t *v) {
  uint8_t salt[SCRAM_SALT_MAX];
  size_t salt_len = vector_salt(salt);
  assert_int_equal(scram_verifier_make(V_PASSWORD, strlen(V_PASSWORD), salt,
                                       salt_len, V_ITER, v),
                   0);
}

static void test_rfc7677_client_proof(void **state) {
  (void)state;
  uint8_t salt[SCRAM_SALT_MAX], proof[SCRAM_KEY_LEN], want[SCRAM_KEY_LEN];
  size_t salt_len = vector_salt(salt);
  decode_key(V_PROOF_B64, want);
  assert_int_equal(scram_client_proof(V_PASSWORD, strlen(V_PASSWORD), salt,
                                      salt_len, V_ITER, V_AUTH_MSG,
                                      strlen(V_AUTH_MSG), proof),
                   0);
  assert_memory_equal(proof, want, SCRAM_KEY_LEN);
}

static void test_rfc7677_verify_proof(void **state) {
  (void)state;
  scram_verifier_t v;
  uint8_t proof[SCRAM_KEY_LEN];
  vector_verifier(&v);
  decode_key(V_PROOF_B64, proof);
  assert_int_equal(
      scram_verify_proof(&v, V_AUTH_MSG, strlen(V_AUTH_MSG), proof), 0);

  /* Any single flipped bit of the proof is refused. */
  for (size_t bit = 0; bit < SCRAM_KEY_LEN * 8; bit++) {
    uint8_t bad[SCRAM_KEY_LEN];
    memcpy(bad, proof, sizeof(bad));
    bad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    assert_int_equal(
        scram_verify_proof(&v, V_AUTH_MSG, strlen(V_AUTH_MSG), bad), -1);
  }
  /* The right proof for another conversation is refused too. */
  assert_int_equal(
      scram_verify_proof(&v, V_AUTH_MSG, strlen(V_AUTH_MSG) - 1, proof), -1);
}

static void test_rfc7677_server_signature(void **state) {
  (void)state;
  scram_verifier_t v;
  uint8_t sig[SCRAM_KEY_LEN], want[SCRAM_KEY_LEN];
  vector_verifier(&v);
  decode_key(V_SERVER_SIG_B64, want);
  assert_int_equal(
      scram_server_signature(&v, V_AUTH_MSG, strlen(V_AUTH_MSG), sig), 0);
  assert_memory_equal(sig, want, SCRAM_KEY_LEN);
}

static void test_postgres_text_form(void **state) {
  (void)state;
  scram_verifier_t v, p;
  char buf[SCRAM_VERIFIER_MAX];
  vector_verifier(&v);
  int n = scram_verifier_format(&v, buf, sizeof(buf));
  assert_int_equal(n, strlen(V_VERIFIER));
  assert_string_equal(buf, V_VERIFIER);

  /* The stored text alone is enough to run the exchange. */
  assert_int_equal(scram_verifier_parse(V_VERIFIER, &p), 0);
  assert_memory_equal(&p, &v, sizeof(v));
  uint8_t proof[SCRAM_KEY_LEN];
  decode_key(V_PROOF_B64, proof);
  assert_int_equal(
      scram_verify_proof(&p, V_AUTH_MSG, strlen(V_AUTH_MSG), proof), 0);
}

static void test_postgres_libpq_verifier(void **state) {
  (void)state;
  scram_verifier_t v;
  char buf[SCRAM_VERIFIER_MAX];
  assert_int_equal(scram_verifier_parse(PG_VERIFIER, &v), 0);
  assert_int_equal(v.iter, 4096);
  assert_int_equal(v.salt_len, 16);
  assert_int_equal(scram_verifier_check(&v, PG_SECRET, strlen(PG_SECRET)), 0);
  assert_int_equal(scram_verifier_check(&v, "correct horse battery stapler",
                                        strlen(PG_SECRET) + 1),
                   -1);
  /* We write back exactly what PostgreSQL wrote. */
  assert_int_equal(scram_verifier_format(&v, buf, sizeof(buf)),
                   strlen(PG_VERIFIER));
  assert_string_equal(buf, PG_VERIFIER);
}

static void test_round_trip(void **state) {
  (void)state;
  uint8_t salt[SCRAM_SALT_MAX];
  for (size_t i = 0; i < sizeof(salt); i++) salt[i] = (uint8_t)(i * 37 + 1);
  static const size_t salt_lens[] = {1, 2, 3, 16, 63, SCRAM_SALT_MAX};
  static const unsigned iters[] = {SCRAM_ITER_MIN, 10000};
  for (size_t i = 0; i < sizeof(salt_lens) / sizeof(salt_lens[0]); i++) {
    scram_verifier_t v, p;
    char buf[SCRAM_VERIFIER_MAX], buf2[SCRAM_VERIFIER_MAX];
    unsigned iter = iters[i % 2];
    assert_int_equal(scram_verifier_make("s3cret", 6, salt, salt_lens[i], iter,
                                         &v),
                     0);
    int n = scram_verifier_format(&v, buf, sizeof(buf));
    assert_true(n > 0 && n < SCRAM_VERIFIER_MAX);
    assert_int_equal(scram_verifier_parse(buf, &p), 0);
    assert_memory_equal(&p, &v, sizeof(v));
    assert_int_equal(scram_verifier_format(&p, buf2, sizeof(buf2)), n);
    assert_string_equal(buf, buf2);
  }
  /* Formatting the largest verifier needs no more than SCRAM_VERIFIER_MAX,
   * and a buffer one byte short is refused without a truncated result. */
  scram_verifier_t v;
  char buf[SCRAM_VERIFIER_MAX];
  assert_int_equal(scram_verifier_make("s3cret", 6, salt, SCRAM_SALT_MAX,
                                       SCRAM_ITER_MAX, &v),
                   0);
  int n = scram_verifier_format(&v, buf, sizeof(buf));
  assert_true(n > 0 && n < SCRAM_VERIFIER_MAX);
  char small[SCRAM_VERIFIER_MAX];
  assert_int_equal(scram_verifier_format(&v, small, (size_t)n), -1);
  assert_string_equal(small, "");
  assert_int_equal(scram_verifier_format(&v, small, (size_t)n + 1), n);
  assert_string_equal(small, buf);
}

static void test_check(void **state) {
  (void)state;
  scram_verifier_t v;
  vector_verifier(&v);
  assert_int_equal(scram_verifier_check(&v, "pencil", 6), 0);
  assert_int_equal(scram_verifier_check(&v, "Pencil", 6), -1);
  assert_int_equal(scram_verifier_check(&v, "pencil", 5), -1);
  assert_int_equal(scram_verifier_check(&v, "pencil\x01", 7), -1);
  /* Documented in scram.h: HMAC zero-pads its key, so trailing NULs do not
   * change the verifier (PostgreSQL behaves the same). */
  assert_int_equal(scram_verifier_check(&v, "pencil\0", 7), 0);
  /* A verifier whose ServerKey alone was tampered with does not match. */
  v.server_key[31] ^= 1;
  assert_int_equal(scram_verifier_check(&v, "pencil", 6), -1);
}

static void test_new_random_salt(void **state) {
  (void)state;
  scram_verifier_t a, b;
  assert_int_equal(scram_verifier_new("same", 4, SCRAM_ITER_DEFAULT, &a), 0);
  assert_int_equal(scram_verifier_new("same", 4, SCRAM_ITER_DEFAULT, &b), 0);
  assert_int_equal(a.salt_len, SCRAM_SALT_LEN);
  assert_int_equal(b.salt_len, SCRAM_SALT_LEN);
  assert_int_equal(a.iter, SCRAM_ITER_DEFAULT);
  assert_memory_not_equal(a.salt, b.salt, SCRAM_SALT_LEN);
  assert_memory_not_equal(a.stored_key, b.stored_key, SCRAM_KEY_LEN);
  assert_int_equal(scram_verifier_check(&a, "same", 4), 0);
  assert_int_equal(scram_verifier_check(&b, "same", 4), 0);
  assert_int_equal(scram_verifier_new("", 0, SCRAM_ITER_DEFAULT, &a), -1);
  assert_int_equal(scram_verifier_new("x", 1, SCRAM_ITER_MIN - 1, &a), -1);
}

static void test_make_bounds(void **state) {
  (void)state;
  static char secret[SCRAM_SECRET_MAX + 1];
  uint8_t salt[SCRAM_SALT_MAX + 1] = {1};
  scram_verifier_t v;
  memset(secret, 'x', sizeof(secret));

  /* Accepted at each limit. */
  assert_int_equal(scram_verifier_make(secret, 1, salt, 16, 4096, &v), 0);
  assert_int_equal(
      scram_verifier_make(secret, SCRAM_SECRET_MAX, salt, 16, 4096, &v), 0);
  assert_int_equal(scram_verifier_make(secret, 8, salt, 1, 4096, &v), 0);
  assert_int_equal(
      scram_verifier_make(secret, 8, salt, SCRAM_SALT_MAX, 4096, &v), 0);
  assert_int_equal(
      scram_verifier_make(secret, 8, salt, 16, SCRAM_ITER_MIN, &v), 0);
  assert_int_equal(
      scram_verifier_make(secret, 8, salt, 16, SCRAM_ITER_MAX, &v), 0);

  /* Refused one step beyond, and with missing pointers. */
  assert_int_equal(scram_verifier_make(secret, 0, salt, 16, 4096, &v), -1);
  assert_int_equal(
      scram_verifier_make(secret, SCRAM_SECRET_MAX + 1, salt, 16, 4096, &v),
      -1);
  assert_int_equal(scram_verifier_make(secret, 8, salt, 0, 4096, &v), -1);
  assert_int_equal(
      scram_verifier_make(secret, 8, salt, SCRAM_SALT_MAX + 1, 4096, &v), -1);
  assert_int_equal(
      scram_verifier_make(secret, 8, salt, 16, SCRAM_ITER_MIN - 1, &v), -1);
  assert_int_equal(
      scram_verifier_make(secret, 8, salt, 16, SCRAM_ITER_MAX + 1, &v), -1);
  assert_int_equal(scram_verifier_make(secret, 8, salt, 16, 0, &v), -1);
  assert_int_equal(scram_verifier_make(NULL, 8, salt, 16, 4096, &v), -1);
  assert_int_equal(scram_verifier_make(secret, 8, NULL, 16, 4096, &v), -1);
  assert_int_equal(scram_verifier_make(secret, 8, salt, 16, 4096, NULL), -1);

  /* The client side has the same bounds. */
  uint8_t proof[SCRAM_KEY_LEN];
  assert_int_equal(
      scram_client_proof(secret, 0, salt, 16, 4096, "m", 1, proof), -1);
  assert_int_equal(scram_client_proof(secret, SCRAM_SECRET_MAX + 1, salt, 16,
                                      4096, "m", 1, proof),
                   -1);
  assert_int_equal(
      scram_client_proof(secret, 8, salt, 0, 4096, "m", 1, proof), -1);
  assert_int_equal(
      scram_client_proof(secret, 8, salt, 16, SCRAM_ITER_MAX + 1, "m", 1,
                         proof),
      -1);

  /* Format refuses a struct parse could not read back. */
  char buf[SCRAM_VERIFIER_MAX];
  assert_int_equal(scram_verifier_make(secret, 8, salt, 16, 4096, &v), 0);
  v.iter = SCRAM_ITER_MIN - 1;
  assert_int_equal(scram_verifier_format(&v, buf, sizeof(buf)), -1);
  v.iter = 4096;
  v.salt_len = 0;
  assert_int_equal(scram_verifier_format(&v, buf, sizeof(buf)), -1);
  v.salt_len = SCRAM_SALT_MAX + 1;
  assert_int_equal(scram_verifier_format(&v, buf, sizeof(buf)), -1);
}

#define K1 "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
#define K2 "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
#define SALT V_SALT_B64

static void expect_parse_fail(const char *s) {
  scram_verifier_t v;
  memset(&v, 0x5a, sizeof(v));
  if (scram_verifier_parse(s, &v) != -1) fail_msg("accepted \"%s\"", s);
  /* A refused input leaves the output untouched. */
  for (size_t i = 0; i < sizeof(v); i++)
    assert_int_equal(((const uint8_t *)&v)[i], 0x5a);
}

static void test_parse_rejects(void **state) {
  (void)state;
  /* The unmodified reference parses, so each case below fails on its one
   * change. */
  scram_verifier_t v;
  assert_int_equal(
      scram_verifier_parse("SCRAM-SHA-256$4096:" SALT "$" K1 ":" K2, &v), 0);

  static const char *const bad[] = {
      /* prefix */
      "",
      "SCRAM-SHA-256",
      "SCRAM-SHA-256$",
      "SCRAM-SHA-1$4096:" SALT "$" K1 ":" K2,
      "scram-sha-256$4096:" SALT "$" K1 ":" K2,
      " SCRAM-SHA-256$4096:" SALT "$" K1 ":" K2,
      "SCRAM-SHA-256-PLUS$4096:" SALT "$" K1 ":" K2,
      "md5" "SCRAM-SHA-256$4096:" SALT "$" K1 ":" K2,
      /* iterations */
      "SCRAM-SHA-256$0:" SALT "$" K1 ":" K2,
      "SCRAM-SHA-256$:" SALT "$" K1 ":" K2,
      "SCRAM-SHA-256$4095:" SALT "$" K1 ":" K2,
      "SCRAM-SHA-256$1000001:" SALT "$" K1 ":" K2,
      "SCRAM-SHA-256$99999999999999999999999:" SALT "$" K1 ":" K2,
      "SCRAM-SHA-256$4294971392:" SALT "$" K1 ":" K2, /* 2^32 + 4096 */
      "SCRAM-SHA-256$04096:" SALT "$" K1 ":" K2,
      "SCRAM-SHA-256$+4096:" SALT "$" K1 ":" K2,
      "SCRAM-SHA-256$-4096:" SALT "$" K1 ":" K2,
      "SCRAM-SHA-256$ 4096:" SALT "$" K1 ":" K2,
      "SCRAM-SHA-256$4096 :" SALT "$" K1 ":" K2,
      "SCRAM-SHA-256$4O96:" SALT "$" K1 ":" K2,
      "SCRAM-SHA-256$0x1000:" SALT "$" K1 ":" K2,
      "SCRAM-SHA-256$4096" SALT "$" K1 ":" K2,
      /* salt */
      "SCRAM-SHA-256$4096:$" K1 ":" K2,
      "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ=$" K1 ":" K2,
      "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gR==$" K1 ":" K2,
      "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsU Ejb6gQ==$" K1 ":" K2,
      "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ$" K1 ":" K2,
      "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==" K1 ":" K2,
      /* 66-byte salt */
      "SCRAM-SHA-256$4096:"
      "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
      "AAAAAAAAAAAAAAAA$" K1 ":" K2,
      /* keys: wrong length, bad base64, missing */
      "SCRAM-SHA-256$4096:" SALT "$"
      "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4g==:" K2, /* 31 bytes */
      "SCRAM-SHA-256$4096:" SALT "$"
      "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA:" K2, /* 33 bytes */
      "SCRAM-SHA-256$4096:" SALT "$" K1 ":"
      "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2Q==", /* 31 bytes */
      "SCRAM-SHA-256$4096:" SALT "$" K1 ":" K2 "AAAA",
      "SCRAM-SHA-256$4096:" SALT "$" K1 ":",
      "SCRAM-SHA-256$4096:" SALT "$:" K2,
      "SCRAM-SHA-256$4096:" SALT "$" K1,
      "SCRAM-SHA-256$4096:" SALT "$" K1 K2,
      "SCRAM-SHA-256$4096:" SALT "$" K1 "$" K2,
      "SCRAM-SHA-256$4096:" SALT "$"
      "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qZ=:" K2, /* trailing bits */
      "SCRAM-SHA-256$4096:" SALT "$"
      "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY-:" K2, /* alphabet */
      /* trailing bytes */
      "SCRAM-SHA-256$4096:" SALT "$" K1 ":" K2 "\n",
      "SCRAM-SHA-256$4096:" SALT "$" K1 ":" K2 " ",
      "SCRAM-SHA-256$4096:" SALT "$" K1 ":" K2 ":",
      "SCRAM-SHA-256$4096:" SALT "$" K1 ":" K2 "=",
      "SCRAM-SHA-256$4096:" SALT "$" K1 ":" K2 "$",
      "SCRAM-SHA-256$4096:" SALT "$" K1 ":" K2 "$" K1 ":" K2,
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    expect_parse_fail(bad[i]);
  assert_int_equal(scram_verifier_parse(NULL, &v), -1);
  assert_int_equal(
      scram_verifier_parse("SCRAM-SHA-256$4096:" SALT "$" K1 ":" K2, NULL),
      -1);
}

static void test_parse_overlong(void **state) {
  (void)state;
  /* An input of SCRAM_VERIFIER_MAX bytes or more is refused on length,
   * without reading further: here an unterminated buffer of exactly that
   * size, so any read past the limit is caught by AddressSanitizer. */
  char *raw = malloc(SCRAM_VERIFIER_MAX);
  assert_non_null(raw);
  memset(raw, 'A', SCRAM_VERIFIER_MAX);
  memcpy(raw, "SCRAM-SHA-256$4096:", 19);
  scram_verifier_t v;
  memset(&v, 0x5a, sizeof(v));
  assert_int_equal(scram_verifier_parse(raw, &v), -1);
  free(raw);

  /* A terminated over-long input: a valid verifier followed by padding. */
  char s[SCRAM_VERIFIER_MAX + 64];
  int n = snprintf(s, sizeof(s), "SCRAM-SHA-256$4096:" SALT "$" K1 ":" K2);
  memset(s + n, 'A', sizeof(s) - (size_t)n - 1);
  s[sizeof(s) - 1] = '\0';
  expect_parse_fail(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rfc7677_client_proof),
      cmocka_unit_test(test_rfc7677_verify_proof),
      cmocka_unit_test(test_rfc7677_server_signature),
      cmocka_unit_test(test_postgres_text_form),
      cmocka_unit_test(test_postgres_libpq_verifier),
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_check),
      cmocka_unit_test(test_new_random_salt),
      cmocka_unit_test(test_make_bounds),
      cmocka_unit_test(test_parse_rejects),
      cmocka_unit_test(test_parse_overlong),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
