/* Client side of SCRAM-SHA-256: see agent_scram.h. The math is RFC 5802's,
 * the same as common/scram.c; the unit test checks both agree. */
#include "agent_scram.h"

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <string.h>

static int derive(const void *secret, size_t secret_len, const uint8_t *salt, size_t salt_len,
                  unsigned iter, agent_scram_keys_t *k) {
  uint8_t salted[SCRAM_KEY_LEN];
  gnutls_datum_t key = {(unsigned char *)secret, (unsigned)secret_len};
  gnutls_datum_t s = {(unsigned char *)salt, (unsigned)salt_len};
  int rv = -1;

  memset(k, 0, sizeof(*k));
  if (gnutls_pbkdf2(GNUTLS_MAC_SHA256, &key, &s, iter, salted, sizeof(salted)) < 0 ||
      gnutls_hmac_fast(GNUTLS_MAC_SHA256, salted, SCRAM_KEY_LEN, "Client Key", 10,
                       k->client_key) < 0 ||
      gnutls_hash_fast(GNUTLS_DIG_SHA256, k->client_key, SCRAM_KEY_LEN,
                       k->verifier.stored_key) < 0 ||
      gnutls_hmac_fast(GNUTLS_MAC_SHA256, salted, SCRAM_KEY_LEN, "Server Key", 10,
                       k->verifier.server_key) < 0)
    goto out;
  k->iter = k->verifier.iter = iter;
  k->salt_len = k->verifier.salt_len = salt_len;
  memcpy(k->salt, salt, salt_len);
  memcpy(k->verifier.salt, salt, salt_len);
  k->used = 1;
  rv = 0;
out:
  gnutls_memset(salted, 0, sizeof(salted));
  if (rv != 0) gnutls_memset(k, 0, sizeof(*k));
  return rv;
}

const agent_scram_keys_t *agent_scram_keys(agent_scram_cache_t *cache, const void *secret,
                                           size_t secret_len, const uint8_t *salt,
                                           size_t salt_len, unsigned iter) {
  if (secret == NULL || secret_len < 1 || secret_len > SCRAM_SECRET_MAX || salt == NULL ||
      salt_len < 1 || salt_len > SCRAM_SALT_MAX || iter < SCRAM_ITER_MIN || iter > SCRAM_ITER_MAX)
    return NULL;
  for (unsigned i = 0; i < AGENT_SCRAM_CACHE; i++) {
    const agent_scram_keys_t *k = &cache->e[i];
    if (k->used && k->iter == iter && k->salt_len == salt_len &&
        memcmp(k->salt, salt, salt_len) == 0)
      return k;
  }
  agent_scram_keys_t *k = &cache->e[cache->next];
  if (derive(secret, secret_len, salt, salt_len, iter, k) != 0) return NULL;
  cache->next = (cache->next + 1) % AGENT_SCRAM_CACHE;
  cache->derivations++;
  return k;
}

int agent_scram_register_verifier(agent_scram_cache_t *cache, const void *secret,
                                  size_t secret_len, unsigned iter, char *out, size_t outlen) {
  uint8_t salt[SCRAM_SALT_LEN];
  if (gnutls_rnd(GNUTLS_RND_RANDOM, salt, sizeof(salt)) < 0) return -1;
  const agent_scram_keys_t *k =
      agent_scram_keys(cache, secret, secret_len, salt, sizeof(salt), iter);
  if (k == NULL) return -1;
  return scram_verifier_format(&k->verifier, out, outlen) < 0 ? -1 : 0;
}

int agent_scram_proof(const agent_scram_keys_t *k, const char *auth_msg, size_t auth_len,
                      uint8_t proof[SCRAM_KEY_LEN]) {
  uint8_t sig[SCRAM_KEY_LEN];
  if (gnutls_hmac_fast(GNUTLS_MAC_SHA256, k->verifier.stored_key, SCRAM_KEY_LEN, auth_msg,
                       auth_len, sig) < 0)
    return -1;
  for (int i = 0; i < SCRAM_KEY_LEN; i++) proof[i] = k->client_key[i] ^ sig[i];
  return 0;
}

int agent_scram_server_ok(const agent_scram_keys_t *k, const char *auth_msg, size_t auth_len,
                          const uint8_t *sig, size_t sig_len) {
  uint8_t want[SCRAM_KEY_LEN];
  volatile uint8_t diff = 0;
  if (sig == NULL || sig_len != SCRAM_KEY_LEN) return 0;
  if (scram_server_signature(&k->verifier, auth_msg, auth_len, want) != 0) return 0;
  /* No early exit: timing must not tell how much of a forgery was right. */
  for (int i = 0; i < SCRAM_KEY_LEN; i++) diff |= want[i] ^ sig[i];
  return diff == 0;
}

void agent_scram_cache_wipe(agent_scram_cache_t *cache) {
  gnutls_memset(cache, 0, sizeof(*cache));
}
