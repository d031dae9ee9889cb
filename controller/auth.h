/* Management API authentication: bearer tokens (the bootstrap admin token
 * from the configuration, and tokens stored hashed in the database), a
 * short-lived cache of verified tokens, and a per-address limit on failures. */
#ifndef CASCADE_AUTH_H
#define CASCADE_AUTH_H

#include <pthread.h>
#include <stdint.h>

#include "db.h"

typedef enum { ROLE_NONE = 0, ROLE_VIEWER = 1, ROLE_ADMIN = 2 } role_t;

#define AUTH_HASH_LEN 32
#define AUTH_TOKEN_MAX 128          /* longer Authorization values are refused */
#define AUTH_CACHE_SLOTS 1024
#define AUTH_CACHE_TTL_MS 10000     /* a token deleted elsewhere dies within this */
#define AUTH_FAIL_SLOTS 256
#define AUTH_FAIL_WINDOW_MS 60000
#define AUTH_FAIL_MAX 100           /* failures per address per window, then 429 */

typedef struct {
  uint8_t hash[AUTH_HASH_LEN];
  int64_t token_id;
  int role;                         /* ROLE_NONE = empty slot */
  int64_t expires_ms;
} auth_cache_slot_t;

typedef struct {
  char addr[48];
  int64_t window_start_ms;
  int count;
  int logged;
} auth_fail_slot_t;

typedef struct auth {
  int has_admin;
  uint8_t admin_hash[AUTH_HASH_LEN];
  pthread_mutex_t mu;               /* guards the two tables */
  auth_cache_slot_t cache[AUTH_CACHE_SLOTS];
  auth_fail_slot_t fails[AUTH_FAIL_SLOTS];
} auth_t;

/* auth_init sets up |a| with the bootstrap admin token (NULL/"" = none). */
int auth_init(auth_t *a, const char *admintoken);
void auth_free(auth_t *a);

/* auth_hash is SHA-256 of a token value. */
int auth_hash(const char *token, size_t len, uint8_t out[AUTH_HASH_LEN]);

/* auth_check verifies an Authorization header value. Returns the role
 * (ROLE_NONE: refused) and sets *token_id (0 for the bootstrap token), or
 * DB_ERR_* when the database is needed and unavailable. */
int auth_check(auth_t *a, db_pool_t *db, const char *header, int64_t *token_id);

/* auth_forget drops a token from the cache (after it is deleted). */
void auth_forget(auth_t *a, const uint8_t hash[AUTH_HASH_LEN]);

/* auth_limited tells whether |addr| has failed too often: 1 = refuse now,
 * with the seconds until its window ends in *retry_after_s. */
int auth_limited(auth_t *a, const char *addr, int *retry_after_s);

/* auth_failed counts a failure of |addr|; returns 1 when this failure should
 * be logged (the first ones of a window), 0 when the log is rate-limited. */
int auth_failed(auth_t *a, const char *addr);

/* auth_token_new makes a token value "cas_<43 base64url chars>" and its hash. */
int auth_token_new(char *out, size_t len, uint8_t hash[AUTH_HASH_LEN]);

#endif
