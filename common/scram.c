/* SCRAM-SHA-256: see scram.h.
 *
 * The secret is used as raw bytes, without SASLprep (RFC 4013). PostgreSQL
 * does the same for passwords it cannot normalise; for the ASCII secrets the
 * controller generates the two are identical, so verifiers made here and by
 * PostgreSQL agree. Keys that allow impersonation (SaltedPassword, ClientKey)
 * are wiped from the stack before returning. */
#include "scram.h"

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdio.h>
#include <string.h>

#include "b64.h"

#define SCRAM_PREFIX "SCRAM-SHA-256$"

/* Compares without an early exit, so the time taken does not tell an
 * attacker how many leading bytes of a key they guessed right. */
static int ct_memeq(const uint8_t *a, const uint8_t *b, size_t n) {
  volatile uint8_t diff = 0;
  for (size_t i = 0; i < n; i++) diff |= a[i] ^ b[i];
  return diff == 0;
}

static int scram_params_ok(const void *secret, size_t secret_len,
                           const uint8_t *salt, size_t salt_len,
                           unsigned iter) {
  return secret != NULL && secret_len >= 1 && secret_len <= SCRAM_SECRET_MAX &&
         salt != NULL && salt_len >= 1 && salt_len <= SCRAM_SALT_MAX &&
         iter >= SCRAM_ITER_MIN && iter <= SCRAM_ITER_MAX;
}

/* SaltedPassword = PBKDF2-HMAC-SHA256(secret, salt, iter). */
static int scram_salted_password(const void *secret, size_t secret_len,
                                 const uint8_t *salt, size_t salt_len,
                                 unsigned iter, uint8_t out[SCRAM_KEY_LEN]) {
  /* gnutls_datum_t is not const-qualified; gnutls only reads these. */
  gnutls_datum_t key = {(unsigned char *)secret, (unsigned)secret_len};
  gnutls_datum_t s = {(unsigned char *)salt, (unsigned)salt_len};
  if (gnutls_pbkdf2(GNUTLS_MAC_SHA256, &key, &s, iter, out, SCRAM_KEY_LEN) < 0)
    return -1;
  return 0;
}

static int scram_hmac(const uint8_t key[SCRAM_KEY_LEN], const void *msg,
                      size_t msg_len, uint8_t out[SCRAM_KEY_LEN]) {
  return gnutls_hmac_fast(GNUTLS_MAC_SHA256, key, SCRAM_KEY_LEN, msg, msg_len,
                          out) < 0
             ? -1
             : 0;
}

static int scram_sha256(const uint8_t *msg, size_t msg_len,
                        uint8_t out[SCRAM_KEY_LEN]) {
  return gnutls_hash_fast(GNUTLS_DIG_SHA256, msg, msg_len, out) < 0 ? -1 : 0;
}

int scram_verifier_make(const void *secret, size_t secret_len,
                        const uint8_t *salt, size_t salt_len, unsigned iter,
                        scram_verifier_t *out) {
  if (out == NULL || !scram_params_ok(secret, secret_len, salt, salt_len, iter))
    return -1;

  uint8_t salted[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN];
  scram_verifier_t v;
  int rv = -1;
  /* Zero the whole struct, so unused salt bytes and padding are
   * deterministic and verifiers compare equal with memcmp. */
  memset(&v, 0, sizeof(v));
  v.iter = iter;
  v.salt_len = salt_len;
  memcpy(v.salt, salt, salt_len);

  if (scram_salted_password(secret, secret_len, salt, salt_len, iter,
                            salted) != 0 ||
      scram_hmac(salted, "Client Key", 10, client_key) != 0 ||
      scram_sha256(client_key, SCRAM_KEY_LEN, v.stored_key) != 0 ||
      scram_hmac(salted, "Server Key", 10, v.server_key) != 0)
    goto out;
  memcpy(out, &v, sizeof(v));
  rv = 0;
out:
  gnutls_memset(salted, 0, sizeof(salted));
  gnutls_memset(client_key, 0, sizeof(client_key));
  gnutls_memset(&v, 0, sizeof(v));
  return rv;
}

int scram_verifier_new(const void *secret, size_t secret_len, unsigned iter,
                       scram_verifier_t *out) {
  uint8_t salt[SCRAM_SALT_LEN];
  if (gnutls_rnd(GNUTLS_RND_RANDOM, salt, sizeof(salt)) < 0) return -1;
  return scram_verifier_make(secret, secret_len, salt, sizeof(salt), iter,
                             out);
}

/* A verifier that format would write but parse would refuse is a bug in the
 * caller; refusing it here keeps the text form always parseable. */
static int scram_verifier_ok(const scram_verifier_t *v) {
  return v != NULL && v->salt_len >= 1 && v->salt_len <= SCRAM_SALT_MAX &&
         v->iter >= SCRAM_ITER_MIN && v->iter <= SCRAM_ITER_MAX;
}

int scram_verifier_format(const scram_verifier_t *v, char *buf, size_t len) {
  char salt[SCRAM_SALT_MAX / 3 * 4 + 8];
  char stored[SCRAM_KEY_LEN / 3 * 4 + 8];
  char server[SCRAM_KEY_LEN / 3 * 4 + 8];
  if (!scram_verifier_ok(v) || buf == NULL) return -1;
  if (b64_encode(v->salt, v->salt_len, salt, sizeof(salt)) < 0 ||
      b64_encode(v->stored_key, SCRAM_KEY_LEN, stored, sizeof(stored)) < 0 ||
      b64_encode(v->server_key, SCRAM_KEY_LEN, server, sizeof(server)) < 0)
    return -1;
  int n = snprintf(buf, len, SCRAM_PREFIX "%u:%s$%s:%s", v->iter, salt, stored,
                   server);
  if (n < 0 || (size_t)n >= len) {
    /* Never leave a truncated verifier behind for a caller to store. */
    if (len > 0) buf[0] = '\0';
    return -1;
  }
  return n;
}

/* Decodes the base64 in [s, end) into |out|; the length must be in
 * [min, max]. Returns the decoded length or -1. */
static long scram_b64_field(const char *s, const char *end, uint8_t *out,
                            size_t min, size_t max) {
  long n = b64_decode(s, (size_t)(end - s), out, max);
  if (n < 0 || (size_t)n < min) return -1;
  return n;
}

int scram_verifier_parse(const char *s, scram_verifier_t *out) {
  if (s == NULL || out == NULL) return -1;
  /* Bounded scan: never read past SCRAM_VERIFIER_MAX bytes of an
   * unterminated or hostile input. */
  size_t len = strnlen(s, SCRAM_VERIFIER_MAX);
  if (len >= SCRAM_VERIFIER_MAX) return -1;
  const char *end = s + len;

  size_t plen = strlen(SCRAM_PREFIX);
  if (len < plen || memcmp(s, SCRAM_PREFIX, plen) != 0) return -1;
  const char *p = s + plen;

  /* Iteration count: plain decimal, as PostgreSQL writes it with %d. No
   * sign, no leading zero, so the text form is canonical. */
  if (*p < '1' || *p > '9') return -1;
  unsigned long iter = 0;
  while (*p >= '0' && *p <= '9') {
    iter = iter * 10 + (unsigned long)(*p - '0');
    if (iter > SCRAM_ITER_MAX) return -1;
    p++;
  }
  if (iter < SCRAM_ITER_MIN || *p != ':') return -1;
  p++;

  scram_verifier_t v;
  memset(&v, 0, sizeof(v));
  v.iter = (unsigned)iter;

  const char *dollar = memchr(p, '$', (size_t)(end - p));
  if (dollar == NULL) return -1;
  long n = scram_b64_field(p, dollar, v.salt, 1, SCRAM_SALT_MAX);
  if (n < 0) return -1;
  v.salt_len = (size_t)n;
  p = dollar + 1;

  const char *colon = memchr(p, ':', (size_t)(end - p));
  if (colon == NULL) return -1;
  if (scram_b64_field(p, colon, v.stored_key, SCRAM_KEY_LEN, SCRAM_KEY_LEN) < 0)
    return -1;
  p = colon + 1;

  /* The server key runs to the end: strict base64 rejects any trailing
   * separator, whitespace or second key. */
  if (scram_b64_field(p, end, v.server_key, SCRAM_KEY_LEN, SCRAM_KEY_LEN) < 0)
    return -1;

  memcpy(out, &v, sizeof(v));
  return 0;
}

int scram_verifier_check(const scram_verifier_t *v, const void *secret,
                         size_t secret_len) {
  scram_verifier_t mine;
  if (!scram_verifier_ok(v)) return -1;
  if (scram_verifier_make(secret, secret_len, v->salt, v->salt_len, v->iter,
                          &mine) != 0)
    return -1;
  /* Both keys, and no short-circuit between them. */
  int eq = ct_memeq(mine.stored_key, v->stored_key, SCRAM_KEY_LEN) &
           ct_memeq(mine.server_key, v->server_key, SCRAM_KEY_LEN);
  gnutls_memset(&mine, 0, sizeof(mine));
  return eq ? 0 : -1;
}

int scram_client_proof(const void *secret, size_t secret_len,
                       const uint8_t *salt, size_t salt_len, unsigned iter,
                       const char *auth_msg, size_t auth_len,
                       uint8_t proof[SCRAM_KEY_LEN]) {
  if (!scram_params_ok(secret, secret_len, salt, salt_len, iter) ||
      auth_msg == NULL || proof == NULL)
    return -1;

  uint8_t salted[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN];
  uint8_t stored_key[SCRAM_KEY_LEN], client_sig[SCRAM_KEY_LEN];
  int rv = -1;
  if (scram_salted_password(secret, secret_len, salt, salt_len, iter,
                            salted) != 0 ||
      scram_hmac(salted, "Client Key", 10, client_key) != 0 ||
      scram_sha256(client_key, SCRAM_KEY_LEN, stored_key) != 0 ||
      scram_hmac(stored_key, auth_msg, auth_len, client_sig) != 0)
    goto out;
  for (size_t i = 0; i < SCRAM_KEY_LEN; i++)
    proof[i] = client_key[i] ^ client_sig[i];
  rv = 0;
out:
  gnutls_memset(salted, 0, sizeof(salted));
  gnutls_memset(client_key, 0, sizeof(client_key));
  gnutls_memset(stored_key, 0, sizeof(stored_key));
  gnutls_memset(client_sig, 0, sizeof(client_sig));
  return rv;
}

int scram_verify_proof(const scram_verifier_t *v, const char *auth_msg,
                       size_t auth_len, const uint8_t proof[SCRAM_KEY_LEN]) {
  if (v == NULL || auth_msg == NULL || proof == NULL) return -1;

  uint8_t client_sig[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN];
  uint8_t stored_key[SCRAM_KEY_LEN];
  int rv = -1;
  if (scram_hmac(v->stored_key, auth_msg, auth_len, client_sig) != 0)
    goto out;
  /* The proof carries ClientKey masked by ClientSignature; unmask it and
   * check that it hashes to the StoredKey we hold. */
  for (size_t i = 0; i < SCRAM_KEY_LEN; i++)
    client_key[i] = proof[i] ^ client_sig[i];
  if (scram_sha256(client_key, SCRAM_KEY_LEN, stored_key) != 0) goto out;
  rv = ct_memeq(stored_key, v->stored_key, SCRAM_KEY_LEN) ? 0 : -1;
out:
  gnutls_memset(client_sig, 0, sizeof(client_sig));
  gnutls_memset(client_key, 0, sizeof(client_key));
  gnutls_memset(stored_key, 0, sizeof(stored_key));
  return rv;
}

int scram_server_signature(const scram_verifier_t *v, const char *auth_msg,
                           size_t auth_len, uint8_t sig[SCRAM_KEY_LEN]) {
  if (v == NULL || auth_msg == NULL || sig == NULL) return -1;
  return scram_hmac(v->server_key, auth_msg, auth_len, sig);
}
