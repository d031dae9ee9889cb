/* The control channel's TLS session store: see ctltls.h. */
#include "ctltls.h"

#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define MOD "ctltls"

/* ---- the keyed session store ---- */

#define STORE_BUCKETS 16384 /* a power of two */

typedef struct entry {
  struct entry *next;
  uint64_t key;
  char *server;                  /* owned */
  uint8_t fp[CTLTLS_FP_LEN];
  uint8_t *data;                 /* owned: the packed session */
  size_t len;
  int verified;
} entry_t;

struct ctltls_store {
  pthread_mutex_t mu;
  entry_t **buckets;
  size_t n, max;
};

static size_t bucket_of(uint64_t key) {
  key ^= key >> 33;
  key *= 0xff51afd7ed558ccdULL;
  key ^= key >> 33;
  return (size_t)(key & (STORE_BUCKETS - 1));
}

static void entry_free(entry_t *e) {
  if (e == NULL) return;
  if (e->data) gnutls_memset(e->data, 0, e->len); /* holds the resumption secret */
  free(e->data);
  free(e->server);
  free(e);
}

ctltls_store_t *ctltls_store_new(size_t max) {
  ctltls_store_t *s = calloc(1, sizeof(*s));
  if (s == NULL) return NULL;
  if ((s->buckets = calloc(STORE_BUCKETS, sizeof(*s->buckets))) == NULL) {
    free(s);
    return NULL;
  }
  pthread_mutex_init(&s->mu, NULL);
  s->max = max;
  return s;
}

void ctltls_store_free(ctltls_store_t *s) {
  if (s == NULL) return;
  for (size_t i = 0; i < STORE_BUCKETS; i++)
    for (entry_t *e = s->buckets[i], *next; e; e = next) {
      next = e->next;
      entry_free(e);
    }
  free(s->buckets);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

/* unlink_locked takes the entry of |key| out of |s|; NULL when none. */
static entry_t *unlink_locked(ctltls_store_t *s, uint64_t key) {
  for (entry_t **pp = &s->buckets[bucket_of(key)]; *pp; pp = &(*pp)->next)
    if ((*pp)->key == key) {
      entry_t *e = *pp;
      *pp = e->next;
      s->n--;
      return e;
    }
  return NULL;
}

int ctltls_store_put(ctltls_store_t *s, uint64_t key, const char *server,
                     const uint8_t fp[CTLTLS_FP_LEN], const void *data, size_t len,
                     int verified) {
  if (s == NULL) return -1;
  size_t sl = server ? strlen(server) : 0;
  entry_t *e = NULL;
  if (len > 0 && len <= CTLTLS_SESSION_MAX && sl <= CTLTLS_NAME_MAX &&
      (e = calloc(1, sizeof(*e))) != NULL) {
    e->key = key;
    e->len = len;
    e->verified = verified != 0;
    memcpy(e->fp, fp, CTLTLS_FP_LEN);
    if ((e->server = malloc(sl + 1)) == NULL || (e->data = malloc(len)) == NULL) {
      entry_free(e);
      e = NULL;
    } else {
      memcpy(e->server, server ? server : "", sl + 1);
      memcpy(e->data, data, len);
    }
  }
  pthread_mutex_lock(&s->mu);
  entry_t *old = unlink_locked(s, key);
  if (e && s->n >= s->max) {
    entry_free(e);
    e = NULL;
  }
  if (e) {
    size_t b = bucket_of(key);
    e->next = s->buckets[b];
    s->buckets[b] = e;
    s->n++;
  }
  pthread_mutex_unlock(&s->mu);
  entry_free(old);
  return e ? 0 : -1;
}

int ctltls_store_get(ctltls_store_t *s, uint64_t key, const char *server,
                     const uint8_t fp[CTLTLS_FP_LEN], uint8_t **data, size_t *len,
                     int *verified) {
  int rc = -1;
  if (s == NULL) return -1;
  pthread_mutex_lock(&s->mu);
  for (entry_t *e = s->buckets[bucket_of(key)]; e; e = e->next) {
    if (e->key != key) continue;
    if (strcmp(e->server, server ? server : "") == 0 &&
        memcmp(e->fp, fp, CTLTLS_FP_LEN) == 0 && (*data = malloc(e->len)) != NULL) {
      memcpy(*data, e->data, e->len);
      *len = e->len;
      *verified = e->verified;
      rc = 0;
    }
    break;
  }
  pthread_mutex_unlock(&s->mu);
  return rc;
}

void ctltls_store_drop(ctltls_store_t *s, uint64_t key) {
  if (s == NULL) return;
  pthread_mutex_lock(&s->mu);
  entry_t *e = unlink_locked(s, key);
  pthread_mutex_unlock(&s->mu);
  entry_free(e);
}

size_t ctltls_store_count(ctltls_store_t *s) {
  if (s == NULL) return 0;
  pthread_mutex_lock(&s->mu);
  size_t n = s->n;
  pthread_mutex_unlock(&s->mu);
  return n;
}

/* fingerprint_of binds the auth mode and the CA's digest (zeros: no CA). */
static int fingerprint_of(int auth_mode, const uint8_t ca_digest[32], uint8_t fp[CTLTLS_FP_LEN]) {
  uint8_t buf[1 + 32];
  buf[0] = (uint8_t)auth_mode;
  memcpy(buf + 1, ca_digest, 32);
  return gnutls_hash_fast(GNUTLS_DIG_SHA256, buf, sizeof(buf), fp) == 0 ? 0 : -1;
}

/* chain_digest folds one more CA chain (PEM) into |d|: trust only grows
 * with more calls, so the digest covers them all, in order. */
static int chain_digest(uint8_t d[32], const char *ca_pem) {
  uint8_t buf[32 + 32];
  memcpy(buf, d, 32);
  if (gnutls_hash_fast(GNUTLS_DIG_SHA256, ca_pem, strlen(ca_pem), buf + 32) != 0 ||
      gnutls_hash_fast(GNUTLS_DIG_SHA256, buf, sizeof(buf), d) != 0)
    return -1;
  return 0;
}

int ctltls_fingerprint(int auth_mode, const char *ca_pem, uint8_t fp[CTLTLS_FP_LEN]) {
  uint8_t d[32] = {0};
  if (ca_pem && chain_digest(d, ca_pem) != 0) return -1;
  return fingerprint_of(auth_mode, d, fp);
}

/* ---- the process's store ---- */

static pthread_once_t store_once = PTHREAD_ONCE_INIT;
static ctltls_store_t *store;
static atomic_uint_fast64_t key_seq, n_full, n_resumed;

static void store_make(void) { store = ctltls_store_new(CTLTLS_STORE_MAX); }

int ctltls_init(void) {
  pthread_once(&store_once, store_make);
  return store ? 0 : -1;
}

void ctltls_shutdown(void) {
  ctltls_store_free(store);
  store = NULL;
}

uint64_t ctltls_new_key(void) { return atomic_fetch_add(&key_seq, 1) + 1; }

void ctltls_forget(uint64_t key) {
  if (key) ctltls_store_drop(store, key);
}

void ctltls_handshakes(uint64_t *full, uint64_t *resumed) {
  *full = atomic_load(&n_full);
  *resumed = atomic_load(&n_resumed);
}

void ctltls_count(int resumed) { atomic_fetch_add(resumed ? &n_resumed : &n_full, 1); }

int ctltls_offer(gnutls_session_t s, uint64_t key, const char *server,
                 const uint8_t fp[CTLTLS_FP_LEN]) {
  uint8_t *data = NULL;
  size_t len = 0;
  int verified = 0, offered = 0;
  if (key == 0 || ctltls_store_get(store, key, server, fp, &data, &len, &verified) != 0) return 0;
  if (verified && gnutls_session_set_data(s, data, len) == 0) offered = 1;
  gnutls_memset(data, 0, len);
  free(data);
  return offered;
}

int ctltls_keep(gnutls_session_t s, uint64_t key, const char *server,
                const uint8_t fp[CTLTLS_FP_LEN]) {
  if (key == 0 || !(gnutls_session_get_flags(s) & GNUTLS_SFLAGS_SESSION_TICKET)) return 0;
  gnutls_datum_t d = {NULL, 0};
  if (gnutls_session_get_data2(s, &d) < 0) return 1;
  ctltls_store_put(store, key, server, fp, d.data, d.size, 1);
  gnutls_memset(d.data, 0, d.size);
  gnutls_free(d.data);
  return 1;
}
