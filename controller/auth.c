/* Management API authentication: see auth.h. */
#include "auth.h"

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "b64.h"

#define FAIL_LOG_PER_WINDOW 5

int auth_hash(const char *token, size_t len, uint8_t out[AUTH_HASH_LEN]) {
  return gnutls_hash_fast(GNUTLS_DIG_SHA256, token, len, out) == 0 ? 0 : -1;
}

static int ct_eq(const uint8_t *a, const uint8_t *b, size_t n) {
  uint8_t d = 0;
  for (size_t i = 0; i < n; i++) d |= a[i] ^ b[i];
  return d == 0;
}

int auth_init(auth_t *a, const char *admintoken) {
  memset(a, 0, sizeof(*a));
  if (admintoken && *admintoken) {
    if (auth_hash(admintoken, strlen(admintoken), a->admin_hash) != 0) return -1;
    a->has_admin = 1;
  }
  pthread_mutex_init(&a->mu, NULL);
  return 0;
}

void auth_free(auth_t *a) {
  pthread_mutex_destroy(&a->mu);
  memset(a, 0, sizeof(*a));
}

static unsigned slot_of(const uint8_t hash[AUTH_HASH_LEN]) {
  /* The hash is uniformly random: its first bytes index the cache. */
  return ((unsigned)hash[0] | (unsigned)hash[1] << 8) % AUTH_CACHE_SLOTS;
}

int auth_check(auth_t *a, db_pool_t *db, const char *header, int64_t *token_id) {
  uint8_t h[AUTH_HASH_LEN];
  const char *tok;
  size_t len;
  int role = ROLE_NONE, err = 0;

  *token_id = 0;
  if (header == NULL || strncasecmp(header, "Bearer ", 7) != 0) return ROLE_NONE;
  tok = header + 7;
  while (*tok == ' ') tok++;
  len = strlen(tok);
  if (len == 0 || len > AUTH_TOKEN_MAX) return ROLE_NONE;
  if (auth_hash(tok, len, h) != 0) return ROLE_NONE;
  if (a->has_admin && ct_eq(h, a->admin_hash, AUTH_HASH_LEN)) return ROLE_ADMIN;
  /* Stored tokens have a fixed shape; anything else need not reach the DB. */
  if (len != 47 || strncmp(tok, "cas_", 4) != 0) return ROLE_NONE;

  unsigned s = slot_of(h);
  int64_t now = db_now_ms();
  pthread_mutex_lock(&a->mu);
  auth_cache_slot_t *c = &a->cache[s];
  if (c->role != ROLE_NONE && c->expires_ms > now && ct_eq(c->hash, h, AUTH_HASH_LEN)) {
    role = c->role;
    *token_id = c->token_id;
  }
  pthread_mutex_unlock(&a->mu);
  if (role != ROLE_NONE) return role;

  char hex[2 + 2 * AUTH_HASH_LEN + 1] = "\\x";
  for (int i = 0; i < AUTH_HASH_LEN; i++) snprintf(hex + 2 + 2 * i, 3, "%02x", h[i]);
  const char *params[1] = {hex};
  db_conn_t *conn = db_acquire(db, &err);
  if (conn == NULL) return err;
  PGresult *r = db_exec(db, conn, DB_TOKEN_LOOKUP, 1, params, &err);
  db_release(db, conn);
  if (r == NULL) return err;
  if (db_ok(r) && PQntuples(r) == 1) {
    *token_id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    role = strcmp(PQgetvalue(r, 0, 1), "admin") == 0 ? ROLE_ADMIN : ROLE_VIEWER;
  } else if (!db_ok(r)) {
    err = DB_ERR_UNAVAILABLE;
  }
  PQclear(r);
  if (err) return err;
  if (role != ROLE_NONE) {
    pthread_mutex_lock(&a->mu);
    memcpy(c->hash, h, AUTH_HASH_LEN);
    c->role = role;
    c->token_id = *token_id;
    c->expires_ms = now + AUTH_CACHE_TTL_MS;
    pthread_mutex_unlock(&a->mu);
  }
  return role;
}

void auth_forget(auth_t *a, const uint8_t hash[AUTH_HASH_LEN]) {
  pthread_mutex_lock(&a->mu);
  auth_cache_slot_t *c = &a->cache[slot_of(hash)];
  if (ct_eq(c->hash, hash, AUTH_HASH_LEN)) memset(c, 0, sizeof(*c));
  pthread_mutex_unlock(&a->mu);
}

static auth_fail_slot_t *fail_slot(auth_t *a, const char *addr) {
  unsigned h = 2166136261u;
  for (const char *p = addr; *p; p++) h = (h ^ (unsigned char)*p) * 16777619u;
  return &a->fails[h % AUTH_FAIL_SLOTS];
}

static int in_window(const auth_fail_slot_t *f, const char *addr, int64_t now) {
  return strcmp(f->addr, addr) == 0 && now - f->window_start_ms < AUTH_FAIL_WINDOW_MS;
}

int auth_limited(auth_t *a, const char *addr, int *retry_after_s) {
  int64_t now = db_now_ms();
  pthread_mutex_lock(&a->mu);
  auth_fail_slot_t *f = fail_slot(a, addr);
  int limited = in_window(f, addr, now) && f->count >= AUTH_FAIL_MAX;
  if (limited && retry_after_s)
    *retry_after_s = (int)((f->window_start_ms + AUTH_FAIL_WINDOW_MS - now + 999) / 1000);
  pthread_mutex_unlock(&a->mu);
  return limited;
}

int auth_failed(auth_t *a, const char *addr) {
  int64_t now = db_now_ms();
  pthread_mutex_lock(&a->mu);
  auth_fail_slot_t *f = fail_slot(a, addr);
  if (!in_window(f, addr, now)) {
    /* The window opens at the first failure. A colliding address takes
     * the slot over: the limit is best effort, never a lock-out of others. */
    snprintf(f->addr, sizeof(f->addr), "%s", addr);
    f->window_start_ms = now;
    f->count = 0;
    f->logged = 0;
  }
  f->count++;
  int log = f->logged < FAIL_LOG_PER_WINDOW;
  if (log) f->logged++;
  pthread_mutex_unlock(&a->mu);
  return log;
}

int auth_token_new(char *out, size_t len, uint8_t hash[AUTH_HASH_LEN]) {
  uint8_t raw[32];
  if (len < 48) return -1;
  if (gnutls_rnd(GNUTLS_RND_KEY, raw, sizeof(raw)) != 0) return -1;
  memcpy(out, "cas_", 4);
  if (b64url_encode(raw, sizeof(raw), out + 4, len - 4) != 43) return -1;
  gnutls_memset(raw, 0, sizeof(raw));
  return auth_hash(out, 47, hash);
}
