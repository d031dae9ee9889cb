/* Stream tokens: signed permission to publish or to play one stream path
 * until a time, optionally from one client address. The controller mints
 * them with the deployment's current key; the cascade-agent verifies them
 * with every key still valid (two at most during a rotation).
 *
 * Format (v1): base64url without padding of 47 bytes, so 63 characters:
 *   [0]      version (1)
 *   [1]      action (STREAMTOKEN_PUBLISH or STREAMTOKEN_PLAY)
 *   [2]      flags (bit 0: bound to the client address)
 *   [3..6]   key id, big-endian
 *   [7..14]  expiry, unix seconds, big-endian
 *   [15..46] HMAC-SHA-256 with the key over a label, bytes [0..15), the
 *            length-prefixed path and, when bound, the length-prefixed
 *            canonical client address (see streamtoken_addr_canon).
 * Pure: no clock, no I/O; the caller passes the time. */
#ifndef CASCADE_STREAMTOKEN_H
#define CASCADE_STREAMTOKEN_H

#include <stddef.h>
#include <stdint.h>

#define STREAMTOKEN_KEY_LEN 32   /* HMAC-SHA-256 key bytes */
#define STREAMTOKEN_RAW_LEN 47   /* decoded v1 token */
#define STREAMTOKEN_LEN 63       /* encoded v1 token, without NUL */
#define STREAMTOKEN_MAX 256      /* longest token text looked at; longer is malformed */
#define STREAMTOKEN_LEEWAY_S 30  /* a token is still good this long after its expiry (clock skew) */
#define STREAMTOKEN_PATH_MAX 1024
#define STREAMTOKEN_ADDR_MAX 46  /* INET6_ADDRSTRLEN */

enum { STREAMTOKEN_PUBLISH = 1, STREAMTOKEN_PLAY = 2 };

enum {
  STREAMTOKEN_OK = 0,
  STREAMTOKEN_EMISSING = -1,   /* no token given */
  STREAMTOKEN_EMALFORMED = -2, /* not a token of a known version */
  STREAMTOKEN_EKEY = -3,       /* signed by a key that is not (or no longer) valid */
  STREAMTOKEN_EMAC = -4,       /* bad signature: tampered, or for another path or address */
  STREAMTOKEN_EACTION = -5,    /* a play token used to publish, or the reverse */
  STREAMTOKEN_EEXPIRED = -6,
  STREAMTOKEN_EINVAL = -7      /* bad arguments (mint, or an unusable client address) */
};

typedef struct streamtoken_key {
  uint32_t id;
  uint8_t key[STREAMTOKEN_KEY_LEN];
} streamtoken_key;

/* The fields of a parsed token (the MAC not yet checked). */
typedef struct streamtoken_info {
  int action;
  int bound;
  uint32_t key_id;
  uint64_t expires;
} streamtoken_info;

/* streamtoken_addr_canon writes the canonical text of the IPv4 or IPv6
 * address |addr| (no port; an IPv4-mapped IPv6 address as IPv4) to |out|.
 * 0, or STREAMTOKEN_EINVAL when it is not an address. */
int streamtoken_addr_canon(const char *addr, char *out, size_t outlen);

/* streamtoken_mint writes a token for |action| on |path| signed with |k|,
 * expiring at |expires|, bound to |addr| unless it is NULL, and a NUL to
 * |out| (at least STREAMTOKEN_LEN + 1 bytes). 0 or STREAMTOKEN_EINVAL. */
int streamtoken_mint(const streamtoken_key *k, int action, const char *path, uint64_t expires,
                     const char *addr, char *out, size_t outlen);

/* streamtoken_parse decodes the |n| bytes of |tok| into |info| without
 * checking the signature. 0 or STREAMTOKEN_EMALFORMED. */
int streamtoken_parse(const char *tok, size_t n, streamtoken_info *info);

/* streamtoken_verify checks that |tok| (|n| bytes; NULL: none) lets the
 * client at |addr| do |action| on |path| at unix time |now|, against the
 * |nkeys| valid keys. STREAMTOKEN_OK or one of the errors above; the MAC
 * is compared in constant time. */
int streamtoken_verify(const streamtoken_key *keys, size_t nkeys, const char *tok, size_t n,
                       int action, const char *path, const char *addr, uint64_t now);

/* streamtoken_from_query finds the first "token=" parameter of the query
 * string |q| (without '?'; NULL or "" : none) and points *tok and *n at its
 * value. 1 when found, 0 when absent. */
int streamtoken_from_query(const char *q, const char **tok, size_t *n);

/* streamtoken_status is the HTTP status for an error: 401 when the client
 * should come back with a (fresh) token, 403 otherwise. */
int streamtoken_status(int err);

/* streamtoken_strerror is a short reason fit for a client and a log. */
const char *streamtoken_strerror(int err);

#endif
