/* Stream authorization on the controller: the validation of what the REST
 * API takes (the policy, a node's rules, the hooks, a token request) and
 * the sealing of stream-signing keys at rest. Pure: no I/O, no database. */
#ifndef CASCADE_STREAMAUTH_H
#define CASCADE_STREAMAUTH_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "streamtoken.h"

#define SA_RULES_MAX 32            /* the deployment's, and a node's: 64 together at most */
#define SA_PATTERN_MAX 1024
#define SA_URL_MAX 1024
#define SA_TIMEOUT_MAX 60000       /* ms */
#define SA_CACHE_MAX 3600000       /* ms */
#define SA_TTL_MIN 10              /* s */
#define SA_TTL_MAX (7 * 86400)
#define SA_TTL_DEFAULT 3600
#define SA_SEALED_LEN (12 + STREAMTOKEN_KEY_LEN + 16) /* nonce, ciphertext, tag */
#define SA_KEYS_MAX 2

/* sa_rules_check validates a rule list [{pattern, publish, play}] (at most
 * SA_RULES_MAX, patterns compiled with pcre2, modes none | token | hook, no
 * other field) and sets *out to its canonical JSON text (malloc'd). 0, or -1
 * with the reason in |err|. */
int sa_rules_check(const json_t *v, char **out, char *err, size_t errlen);

/* sa_hooks_check validates a hooks object (on_publish, on_play, on_stop,
 * on_unpublish: "" or an http:// / https:// URL of at most SA_URL_MAX bytes;
 * timeout_ms 1..SA_TIMEOUT_MAX; cache_ms 0..SA_CACHE_MAX; fail_open), the
 * fields absent taken from |base| (the stored hooks, or NULL: defaults), and
 * sets *out to the whole object's JSON text (malloc'd). 0 or -1. */
int sa_hooks_check(const json_t *v, const json_t *base, char **out, char *err, size_t errlen);

/* A PUT /api/cascade/streamauth body, decoded. */
typedef struct sa_update {
  char *policy;                    /* owned JSON text, or NULL: unchanged */
  json_t *hooks;                   /* owned: the hooks object given, or NULL: unchanged */
} sa_update_t;

/* sa_update_body decodes a PUT body {policy?, hooks?} (one at least; no
 * other field). 0 or -1 with |err|. */
int sa_update_body(const char *body, size_t len, sa_update_t *out, char *err, size_t errlen);

/* sa_update_free frees |u|'s values; accepts a zeroed struct. */
void sa_update_free(sa_update_t *u);

/* A POST /api/cascade/streamauth/tokens body, decoded. */
typedef struct sa_token_req {
  char path[SA_PATTERN_MAX + 1];
  int action;                      /* STREAMTOKEN_PUBLISH or STREAMTOKEN_PLAY */
  long ttl;                        /* seconds */
  char addr[64];                   /* canonical, or "" when not bound */
} sa_token_req_t;

/* sa_token_body decodes {path, action: publish|play, ttl?, addr?}: the path
 * is app/name (no leading '/', no '?', no control character, no space, 1..
 * SA_PATTERN_MAX bytes), ttl SA_TTL_MIN..SA_TTL_MAX (default SA_TTL_DEFAULT),
 * addr an IPv4 or IPv6 address. 0 or -1 with |err|. */
int sa_token_body(const char *body, size_t len, sa_token_req_t *out, char *err, size_t errlen);

/* sa_kek derives the key that seals stream keys from the CA's private key
 * (PEM). 0 or -1. */
int sa_kek(const char *ca_key_pem, uint8_t kek[32]);

/* sa_seal writes nonce || AES-256-GCM(|key|) || tag to |out| (SA_SEALED_LEN
 * bytes). 0 or -1. */
int sa_seal(const uint8_t kek[32], const uint8_t key[STREAMTOKEN_KEY_LEN],
            uint8_t out[SA_SEALED_LEN]);

/* sa_unseal reverses sa_seal; -1 when |in| (|n| bytes) is not one sealed
 * with |kek| (another CA, or altered). */
int sa_unseal(const uint8_t kek[32], const uint8_t *in, size_t n,
              uint8_t key[STREAMTOKEN_KEY_LEN]);

/* sa_hex_decode decodes PostgreSQL's bytea hex output ("\x0a1b...") of at
 * most |max| bytes into |out|. The byte count, or -1. */
long sa_hex_decode(const char *s, uint8_t *out, size_t max);

#endif
