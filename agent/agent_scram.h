/* Client side of SCRAM-SHA-256 for the control channel, built so that a
 * reconnect costs no PBKDF2: the keys derived from (secret, salt,
 * iterations) are kept in a small cache the caller owns. The verifier sent
 * in Register comes from the same derivation, so a node that registered
 * itself meets its own salt again in the challenge and derives nothing. */
#ifndef CASCADE_AGENT_SCRAM_H
#define CASCADE_AGENT_SCRAM_H

#include <stddef.h>
#include <stdint.h>

#include "scram.h"

#define AGENT_SCRAM_CACHE 4

typedef struct agent_scram_keys {
  int used;
  unsigned iter;
  size_t salt_len;
  uint8_t salt[SCRAM_SALT_MAX];
  uint8_t client_key[SCRAM_KEY_LEN];   /* impersonates the node: never logged */
  scram_verifier_t verifier;           /* StoredKey, ServerKey */
} agent_scram_keys_t;

typedef struct agent_scram_cache {
  agent_scram_keys_t e[AGENT_SCRAM_CACHE];
  unsigned next;                       /* round-robin victim */
  unsigned derivations;                /* PBKDF2 runs, for tests and logs */
} agent_scram_cache_t;

/* agent_scram_keys returns the keys of |secret| for |salt|/|iter|, from
 * the cache or derived once (one PBKDF2) into it. NULL on bad arguments. */
const agent_scram_keys_t *agent_scram_keys(agent_scram_cache_t *cache, const void *secret,
                                           size_t secret_len, const uint8_t *salt,
                                           size_t salt_len, unsigned iter);

/* agent_scram_register_verifier makes the text verifier for Register with
 * a fresh random salt (what scram_verifier_new does) and leaves its keys in
 * the cache. Returns 0 or -1. */
int agent_scram_register_verifier(agent_scram_cache_t *cache, const void *secret,
                                  size_t secret_len, unsigned iter, char *out, size_t outlen);

/* agent_scram_proof computes ClientProof over |auth_msg|. */
int agent_scram_proof(const agent_scram_keys_t *k, const char *auth_msg, size_t auth_len,
                      uint8_t proof[SCRAM_KEY_LEN]);

/* agent_scram_server_ok checks the controller's ServerSignature in
 * constant time: 1 when it proves knowledge of the verifier, else 0. */
int agent_scram_server_ok(const agent_scram_keys_t *k, const char *auth_msg, size_t auth_len,
                          const uint8_t *sig, size_t sig_len);

/* agent_scram_cache_wipe zeroes the cache (keys included). */
void agent_scram_cache_wipe(agent_scram_cache_t *cache);

#endif
