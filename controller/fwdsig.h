/* The API relay between replicas (docs/architecture.md, "Replicas"): a
 * replica that gets ANY /api/relay/{id}/... for a node another replica
 * holds forwards the request to that replica's API with header
 * X-Cascade-Forwarded: "v1 <unix ms> <role> <actor> <hex HMAC-SHA256>".
 * The key is derived from the deployment CA's private key, which every
 * replica has and nobody else: the receiving replica serves the request
 * as the sending one authenticated it (role, actor) without the caller's
 * token travelling further. Also the reading of the answer's head. */
#ifndef CASCADE_FWDSIG_H
#define CASCADE_FWDSIG_H

#include <stddef.h>
#include <stdint.h>

#define FWDSIG_HEADER "X-Cascade-Forwarded"
#define FWDSIG_KEY_LEN 32
#define FWDSIG_VALUE_MAX 160      /* the header value's length at most */
#define FWDSIG_ACTOR_MAX 31
#define FWDSIG_SKEW_MS 30000      /* a signature this far from the receiver's clock is stale */

#define FWDSIG_OK 0
#define FWDSIG_MALFORMED (-1)
#define FWDSIG_BAD_MAC (-2)
#define FWDSIG_STALE (-3)

/* fwdsig_key derives the forwarding key from the CA private key PEM. */
int fwdsig_key(const char *ca_key_pem, uint8_t key[FWDSIG_KEY_LEN]);

/* fwdsig_make writes the header value for a request (|target|: the request
 * target as sent, with its query) at wall-clock |ts_ms|. 0 or -1. */
int fwdsig_make(const uint8_t key[FWDSIG_KEY_LEN], int64_t ts_ms, int role, const char *actor,
                const char *method, const char *target, const char *body, size_t body_len,
                char *out, size_t outlen);

/* fwdsig_check verifies header value |value| against the request received;
 * FWDSIG_OK with |*role| and |actor| set, or a FWDSIG_* error. */
int fwdsig_check(const uint8_t key[FWDSIG_KEY_LEN], const char *value, int64_t now_ms,
                 const char *method, const char *target, const char *body, size_t body_len,
                 int *role, char *actor, size_t actorlen);

typedef struct fwdsig_hdr {
  const char *name, *value;   /* NUL-terminated, inside the parsed head */
} fwdsig_hdr_t;

/* fwdsig_head parses an HTTP/1.x response head in place: |head| holds
 * |len| bytes ending with the empty line ("\r\n\r\n"). Returns 0 with the
 * status (100..599) and up to |max| headers in |h| (|*n|), or -1 when it is
 * not a response head or has more than |max| headers. */
int fwdsig_head(char *head, size_t len, int *status, fwdsig_hdr_t *h, size_t max, size_t *n);

#endif
