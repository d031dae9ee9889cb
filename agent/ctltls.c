/* The control channel's GnuTLS engine for nng: see ctltls.h. */
#include "ctltls.h"

#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <nng/nng.h>
#include <nng/supplemental/tls/engine.h>
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

/* ---- process-wide state of the engine ---- */

static ctltls_store_t *store;          /* set once by ctltls_register */
static _Thread_local uint64_t next_cfg_key;
static atomic_uint_fast64_t key_seq, n_full, n_resumed;

uint64_t ctltls_new_key(void) { return atomic_fetch_add(&key_seq, 1) + 1; }

void ctltls_use_key(uint64_t key) { next_cfg_key = key; }

void ctltls_forget(uint64_t key) {
  if (key) ctltls_store_drop(store, key);
}

void ctltls_handshakes(uint64_t *full, uint64_t *resumed) {
  *full = atomic_load(&n_full);
  *resumed = atomic_load(&n_resumed);
}

/* ---- nng's engine ---- */

struct nng_tls_engine_config {
  gnutls_certificate_credentials_t cred;
  gnutls_priority_t prio;
  char *server;                  /* owned; NULL: none set */
  int auth;                      /* nng_tls_auth_mode */
  uint8_t ca_digest[32];         /* chain_digest of the CA chains; zeros: none */
  uint64_t key;                  /* the client's store key; 0: no resumption */
};

struct nng_tls_engine_conn {
  void *tls;                     /* nng's side, for nng_tls_engine_send/recv */
  nng_tls_engine_config *cfg;    /* nng holds it while the connection lives */
  gnutls_session_t s;
  uint8_t fp[CTLTLS_FP_LEN];
  int offered;                   /* a stored session was offered */
  int offered_verified;          /* ... and its certificate had been verified */
  int done;                      /* handshake over */
  int verified;
  int stored;                    /* this connection's ticket went to the store */
  int closed;
  int pull_blocked;              /* the last pull found nothing to read */
};

static ssize_t conn_push(gnutls_transport_ptr_t p, const void *buf, size_t len) {
  nng_tls_engine_conn *c = p;
  size_t n = len;
  int rv = nng_tls_engine_send(c->tls, buf, &n);
  if (rv == 0) return (ssize_t)n;
  gnutls_transport_set_errno(c->s, rv == NNG_EAGAIN ? EAGAIN : ECONNRESET);
  return -1;
}

static ssize_t conn_pull(gnutls_transport_ptr_t p, void *buf, size_t len) {
  nng_tls_engine_conn *c = p;
  size_t n = len;
  int rv = nng_tls_engine_recv(c->tls, buf, &n);
  c->pull_blocked = rv == NNG_EAGAIN;
  if (rv == 0) return (ssize_t)n;
  gnutls_transport_set_errno(c->s, rv == NNG_EAGAIN ? EAGAIN : ECONNRESET);
  return -1;
}

static int prio_set(nng_tls_engine_config *cfg, nng_tls_version min, nng_tls_version max) {
  char p[512];
  int v12 = min <= NNG_TLS_1_2 && max >= NNG_TLS_1_2, v13 = min <= NNG_TLS_1_3 && max >= NNG_TLS_1_3;
  if (!v12 && !v13) return NNG_ENOTSUP;
  snprintf(p, sizeof(p), "%s:-VERS-ALL%s%s", CTLTLS_PRIORITY_BASE, v13 ? ":+VERS-TLS1.3" : "",
           v12 ? ":+VERS-TLS1.2" : "");
  gnutls_priority_t np;
  if (gnutls_priority_init(&np, p, NULL) < 0) return NNG_EINVAL;
  if (cfg->prio) gnutls_priority_deinit(cfg->prio);
  cfg->prio = np;
  return 0;
}

static int config_init(nng_tls_engine_config *cfg, nng_tls_mode mode) {
  uint64_t key = next_cfg_key;
  next_cfg_key = 0;
  if (mode != NNG_TLS_MODE_CLIENT) return NNG_ENOTSUP; /* the agent only dials */
  cfg->auth = NNG_TLS_AUTH_MODE_REQUIRED;
  cfg->key = key;
  if (gnutls_certificate_allocate_credentials(&cfg->cred) < 0) return NNG_ENOMEM;
  int rv = prio_set(cfg, NNG_TLS_1_2, NNG_TLS_1_3);
  if (rv != 0) {
    gnutls_certificate_free_credentials(cfg->cred);
    cfg->cred = NULL;
  }
  return rv;
}

static void config_fini(nng_tls_engine_config *cfg) {
  if (cfg->prio) gnutls_priority_deinit(cfg->prio);
  if (cfg->cred) gnutls_certificate_free_credentials(cfg->cred);
  free(cfg->server);
}

static int config_server(nng_tls_engine_config *cfg, const char *name) {
  char *dup = NULL;
  if (name && (dup = strdup(name)) == NULL) return NNG_ENOMEM;
  free(cfg->server);
  cfg->server = dup;
  return 0;
}

static int config_auth(nng_tls_engine_config *cfg, nng_tls_auth_mode mode) {
  if (mode != NNG_TLS_AUTH_MODE_NONE && mode != NNG_TLS_AUTH_MODE_OPTIONAL &&
      mode != NNG_TLS_AUTH_MODE_REQUIRED)
    return NNG_EINVAL;
  cfg->auth = mode;
  return 0;
}

static int config_ca(nng_tls_engine_config *cfg, const char *ca, const char *crl) {
  if (crl != NULL) return NNG_ENOTSUP;
  if (ca == NULL) return NNG_EINVAL;
  gnutls_datum_t d = {(unsigned char *)ca, (unsigned)strlen(ca)};
  if (gnutls_certificate_set_x509_trust_mem(cfg->cred, &d, GNUTLS_X509_FMT_PEM) <= 0)
    return NNG_EINVAL;
  return chain_digest(cfg->ca_digest, ca) == 0 ? 0 : NNG_EINTERNAL;
}

static int config_own_cert(nng_tls_engine_config *cfg, const char *cert, const char *key,
                           const char *pass) {
  (void)cfg;
  (void)cert;
  (void)key;
  (void)pass;
  return NNG_ENOTSUP;
}

static int config_version(nng_tls_engine_config *cfg, nng_tls_version min, nng_tls_version max) {
  return min > max ? NNG_ENOTSUP : prio_set(cfg, min, max);
}

static int conn_init(nng_tls_engine_conn *c, void *tls, nng_tls_engine_config *cfg) {
  int rc;
  c->tls = tls;
  c->cfg = cfg;
  if (fingerprint_of(cfg->auth, cfg->ca_digest, c->fp) != 0) return NNG_EINTERNAL;
  if ((rc = gnutls_init(&c->s, GNUTLS_CLIENT | GNUTLS_NONBLOCK)) < 0) return NNG_ENOMEM;
  if (gnutls_priority_set(c->s, cfg->prio) < 0 ||
      gnutls_credentials_set(c->s, GNUTLS_CRD_CERTIFICATE, cfg->cred) < 0) {
    gnutls_deinit(c->s);
    c->s = NULL;
    return NNG_ENOMEM;
  }
  if (cfg->server) {
    /* GnuTLS sends no SNI for an IP address; the name is still checked. */
    gnutls_server_name_set(c->s, GNUTLS_NAME_DNS, cfg->server, strlen(cfg->server));
  }
  if (cfg->auth == NNG_TLS_AUTH_MODE_REQUIRED) gnutls_session_set_verify_cert(c->s, cfg->server, 0);
  gnutls_transport_set_ptr(c->s, c);
  gnutls_transport_set_push_function(c->s, conn_push);
  gnutls_transport_set_pull_function(c->s, conn_pull);
  /* Only a verified session is kept, and only for the same server name and
   * trust settings is it offered: resuming skips the certificate. */
  uint8_t *data = NULL;
  size_t len = 0;
  int verified = 0;
  if (cfg->key && cfg->auth == NNG_TLS_AUTH_MODE_REQUIRED &&
      ctltls_store_get(store, cfg->key, cfg->server, c->fp, &data, &len, &verified) == 0) {
    if (verified && gnutls_session_set_data(c->s, data, len) == 0) {
      c->offered = 1;
      c->offered_verified = verified;
    }
    gnutls_memset(data, 0, len);
    free(data);
  }
  return 0;
}

static void conn_fini(nng_tls_engine_conn *c) {
  if (c->s) gnutls_deinit(c->s);
  c->s = NULL;
}

static void conn_close(nng_tls_engine_conn *c) {
  if (c->closed || c->s == NULL) return;
  c->closed = 1;
  if (c->done) (void)gnutls_bye(c->s, GNUTLS_SHUT_WR); /* best effort, never waits */
}

/* keep_ticket stores this connection's session once the server's ticket
 * has come (TLS 1.3 sends it after the handshake, with the first records). */
static void keep_ticket(nng_tls_engine_conn *c) {
  if (c->stored || !c->verified || c->cfg->key == 0 || c->cfg->auth != NNG_TLS_AUTH_MODE_REQUIRED ||
      !(gnutls_session_get_flags(c->s) & GNUTLS_SFLAGS_SESSION_TICKET))
    return;
  c->stored = 1;
  gnutls_datum_t d = {NULL, 0};
  if (gnutls_session_get_data2(c->s, &d) < 0) return;
  ctltls_store_put(store, c->cfg->key, c->cfg->server, c->fp, d.data, d.size, 1);
  gnutls_memset(d.data, 0, d.size);
  gnutls_free(d.data);
}

/* RETRIES bounds the harmless returns (warning alerts) in a row;
 * RECV_RETRIES also the post-handshake messages (tickets) in a row. */
#define RETRIES 8
#define RECV_RETRIES 64

static int conn_handshake(nng_tls_engine_conn *c) {
  if (c->done) return 0;
  for (int k = 0; k < RETRIES; k++) {
    int rc = gnutls_handshake(c->s);
    if (rc == 0) {
      c->done = 1;
      if (gnutls_session_is_resumed(c->s)) {
        atomic_fetch_add(&n_resumed, 1);
        c->verified = c->offered && c->offered_verified;
      } else {
        atomic_fetch_add(&n_full, 1);
        if (c->cfg->auth == NNG_TLS_AUTH_MODE_REQUIRED) {
          c->verified = 1; /* GnuTLS checked chain and name in the handshake */
        } else if (c->cfg->auth == NNG_TLS_AUTH_MODE_OPTIONAL) {
          unsigned st = 1;
          c->verified = gnutls_certificate_verify_peers3(c->s, c->cfg->server, &st) == 0 && st == 0;
        }
      }
      keep_ticket(c);
      return 0;
    }
    if (rc == GNUTLS_E_AGAIN) return NNG_EAGAIN;
    if (rc == GNUTLS_E_INTERRUPTED || rc == GNUTLS_E_WARNING_ALERT_RECEIVED) continue;
    if (rc == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
      log_debug(MOD, "the controller's certificate was refused (status 0x%x)",
                gnutls_session_get_verify_cert_status(c->s));
      return NNG_EPEERAUTH;
    }
    log_debug(MOD, "TLS handshake failed: %s", gnutls_strerror(rc));
    return NNG_ECRYPTO;
  }
  return NNG_ECRYPTO;
}

/* io_error maps a failed record call's GnuTLS code to nng's. */
static int io_error(ssize_t n) {
  if (n == GNUTLS_E_AGAIN) return NNG_EAGAIN;
  if (n == 0 || n == GNUTLS_E_PREMATURE_TERMINATION || n == GNUTLS_E_PULL_ERROR ||
      n == GNUTLS_E_PUSH_ERROR)
    return NNG_ECLOSED;
  return NNG_ECRYPTO;
}

/* nng's framework starts with a send or a receive, not a handshake (the
 * mbedTLS engine's record calls run it implicitly): so do these. */
static int conn_recv(nng_tls_engine_conn *c, uint8_t *buf, size_t *len) {
  int rv;
  if (!c->done && (rv = conn_handshake(c)) != 0) return rv;
  for (int k = 0; k < RECV_RETRIES; k++) {
    c->pull_blocked = 0;
    ssize_t n = gnutls_record_recv(c->s, buf, *len);
    keep_ticket(c);
    if (n > 0) {
      *len = (size_t)n;
      return 0;
    }
    if (n == GNUTLS_E_INTERRUPTED || n == GNUTLS_E_WARNING_ALERT_RECEIVED) continue;
    /* GnuTLS answers AGAIN after a post-handshake message (the session
     * ticket) though the records behind it may already sit in its buffer:
     * nng would wait for bytes that came. Only a pull that found nothing
     * means waiting. */
    if (n == GNUTLS_E_AGAIN && !c->pull_blocked) continue;
    /* A renegotiation request (TLS 1.2) is refused: the gate never sends one. */
    return io_error(n);
  }
  return NNG_ECRYPTO;
}

static int conn_send(nng_tls_engine_conn *c, const uint8_t *buf, size_t *len) {
  int rv;
  if (!c->done && (rv = conn_handshake(c)) != 0) return rv;
  for (int k = 0; k < RETRIES; k++) {
    ssize_t n = gnutls_record_send(c->s, buf, *len);
    if (n > 0) {
      *len = (size_t)n;
      return 0;
    }
    if (n == GNUTLS_E_INTERRUPTED) continue;
    return io_error(n);
  }
  return NNG_ECRYPTO;
}

static bool conn_verified(nng_tls_engine_conn *c) { return c->verified != 0; }

static nng_tls_engine_config_ops config_ops = {
    .size = sizeof(nng_tls_engine_config),
    .init = config_init,
    .fini = config_fini,
    .server = config_server,
    .auth = config_auth,
    .ca_chain = config_ca,
    .own_cert = config_own_cert,
    .version = config_version,
};

static nng_tls_engine_conn_ops conn_ops = {
    .size = sizeof(nng_tls_engine_conn),
    .init = conn_init,
    .fini = conn_fini,
    .close = conn_close,
    .handshake = conn_handshake,
    .recv = conn_recv,
    .send = conn_send,
    .verified = conn_verified,
};

static const nng_tls_engine engine = {
    .version = NNG_TLS_ENGINE_VERSION,
    .config_ops = &config_ops,
    .conn_ops = &conn_ops,
    .name = "gnutls",
    .description = "GnuTLS (Cascade control client, session resumption)",
    .fips_mode = false,
};

int ctltls_register(char *err, size_t errlen) {
  nng_tls_config *probe = NULL;
  int rv;
  if (store == NULL && (store = ctltls_store_new(CTLTLS_STORE_MAX)) == NULL) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  /* nng's initialisation registers its built-in engine: let it run first
   * (a config allocation starts it), then take its place. */
  if ((rv = nng_tls_config_alloc(&probe, NNG_TLS_MODE_CLIENT)) != 0) {
    snprintf(err, errlen, "nng TLS: %s", nng_strerror(rv));
    return -1;
  }
  nng_tls_config_free(probe);
  if ((rv = nng_tls_engine_register(&engine)) != 0) {
    snprintf(err, errlen, "cannot register the GnuTLS engine with nng: %s", nng_strerror(rv));
    return -1;
  }
  if (strcmp(nng_tls_engine_name(), engine.name) != 0) {
    snprintf(err, errlen, "nng kept its TLS engine '%s'", nng_tls_engine_name());
    return -1;
  }
  return 0;
}

void ctltls_shutdown(void) {
  ctltls_store_free(store);
  store = NULL;
}
