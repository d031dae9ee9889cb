/* SCRAM-SHA-256 (RFC 5802, RFC 7677) with GnuTLS primitives: the verifier a
 * node's secret is stored as, and the proofs of the challenge-response.
 *
 * Secrets are raw bytes: no SASLprep, as PostgreSQL does for passwords it
 * cannot normalise, so use ASCII secrets to interoperate with clients that
 * do normalise. Because the secret is an HMAC key, secrets that differ only
 * by trailing NUL bytes give the same verifier. */
#ifndef CASCADE_SCRAM_H
#define CASCADE_SCRAM_H

#include <stddef.h>
#include <stdint.h>

#define SCRAM_KEY_LEN 32
#define SCRAM_SALT_LEN 16         /* salt made by scram_verifier_new */
#define SCRAM_SALT_MAX 64
#define SCRAM_ITER_DEFAULT 4096
#define SCRAM_ITER_MIN 4096
#define SCRAM_ITER_MAX 1000000
#define SCRAM_SECRET_MAX 1024
#define SCRAM_VERIFIER_MAX 256    /* text form, with NUL */

typedef struct {
  unsigned iter;
  size_t salt_len;
  uint8_t salt[SCRAM_SALT_MAX];
  uint8_t stored_key[SCRAM_KEY_LEN];
  uint8_t server_key[SCRAM_KEY_LEN];
} scram_verifier_t;

/* scram_verifier_make derives the verifier of |secret| for a given salt and
 * iteration count. Returns 0 or -1 (bad arguments, crypto failure). */
int scram_verifier_make(const void *secret, size_t secret_len,
                        const uint8_t *salt, size_t salt_len, unsigned iter,
                        scram_verifier_t *out);

/* scram_verifier_new is scram_verifier_make with a fresh random salt. */
int scram_verifier_new(const void *secret, size_t secret_len, unsigned iter,
                       scram_verifier_t *out);

/* scram_verifier_format writes PostgreSQL's text form
 * "SCRAM-SHA-256$<iter>:<salt b64>$<StoredKey b64>:<ServerKey b64>".
 * Returns its length or -1 when |len| is too small. */
int scram_verifier_format(const scram_verifier_t *v, char *buf, size_t len);

/* scram_verifier_parse reads the text form strictly. Returns 0 or -1. */
int scram_verifier_parse(const char *s, scram_verifier_t *out);

/* scram_verifier_check tells whether |secret| matches |v| (0 = match), in
 * constant time with respect to the keys. */
int scram_verifier_check(const scram_verifier_t *v, const void *secret,
                         size_t secret_len);

/* scram_client_proof computes ClientProof = ClientKey XOR
 * HMAC(StoredKey, AuthMessage) from the secret, as a client does. */
int scram_client_proof(const void *secret, size_t secret_len,
                       const uint8_t *salt, size_t salt_len, unsigned iter,
                       const char *auth_msg, size_t auth_len,
                       uint8_t proof[SCRAM_KEY_LEN]);

/* scram_verify_proof checks a ClientProof against the verifier, as the
 * server does: H(ClientProof XOR ClientSignature) == StoredKey. 0 = valid. */
int scram_verify_proof(const scram_verifier_t *v, const char *auth_msg,
                       size_t auth_len, const uint8_t proof[SCRAM_KEY_LEN]);

/* scram_server_signature computes HMAC(ServerKey, AuthMessage). */
int scram_server_signature(const scram_verifier_t *v, const char *auth_msg,
                           size_t auth_len, uint8_t sig[SCRAM_KEY_LEN]);

#endif
