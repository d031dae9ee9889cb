/* The control channel's server: see ctlsrv.h and docs/protocol.md.
 *
 * Threads: the control gate (ctlgate.h) reads the agents' requests and
 * writes the replies; control.workers workers each take a request from
 * its queue (ctlgate_recv) and answer synchronously (ctlgate_reply; a
 * request may touch PostgreSQL through the pool). A long poll with nothing
 * to say is parked: its connection id and request id move into the
 * session, and it is answered later from whichever thread has the answer.
 * One sweeper thread, woken every second or by ctlsrv_wake(), flushes
 * heartbeats in one statement, ends silent sessions, answers polls that
 * timed out, and reconciles every session with the registry (generations,
 * deletions, secret changes).
 *
 * The bookkeeping without I/O is elsewhere and unit-tested alone: the
 * sessions, their parked polls, generations, relay queues and lease state
 * in session.c, the SCRAM exchanges in exch.c, the connections awaiting
 * authentication in authwait.c, the lease decisions in lease.c. This file holds the lock around them and does the gate,
 * PostgreSQL and thread work. The API relay is reached through
 * relay_sessions.h only. */
#include "ctlsrv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <nng/nng.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "advert.h"
#include "auth.h"
#include "authwait.h"
#include "b64.h"
#include "ctl.h"
#include "ctlgate.h"
#include "ctlgate_tls.h"
#include "ctlmsg.h"
#include "db.h"
#include "exch.h"
#include "log.h"
#include "reglimit.h"
#include "report.h"
#include "relay_sessions.h"
#include "scram.h"
#include "session.h"
#include "valid.h"
#include "wake.h"
#include "lease.h"
#include "fwdsig.h"
#include "streamauth.h"
#include "x509.h"

#define REVOKED_TTL_MS 30000
#define RECONCILE_MS 2000
/* A wake-up (a node connected, a rule changed, another replica's NOTIFY)
 * reconciles at once, but not within this long of the last reconcile: in a
 * storm of joins every connect wakes the sweeper, and each reconcile reads
 * every session's row. */
#define RECONCILE_WAKE_MS 200
#define TOKEN_LEN SESS_TOKEN_LEN
#define LINKS_MAX 1024             /* link reports read per heartbeat */
#define POLL_RELAY_BYTES (CTLMSG_MAX - 96 * 1024) /* relay requests per poll answer */
#define MINUTE_MS 60000
#define EVENTS_RL_PER_MIN 120      /* unauthenticated audit events (auth failures) per minute */
#define LEASE_SWEEP_MS 1000        /* the sessions' lease sweep, at most this often */
#define LISTEN_SLICE_MS 250        /* the LISTEN thread looks at s->stopping this often */
#define LISTEN_RETRY_MS 1000       /* between attempts to reconnect the LISTEN connection */
#define WAKE_IDS_MAX 1024
#define REPLICA_ID_LEN 32          /* hex digits */

_Static_assert(SESS_TOKEN_LEN == CTLMSG_SESSION_LEN, "a session token is CTLMSG_SESSION_LEN bytes");
_Static_assert(EXCH_HANDLE_LEN == CTLMSG_SESSION_LEN, "an exchange handle is as long");
_Static_assert(CTLSRV_ORIGIN_UNKNOWN == CASCADE__CONTROL__STREAM_ORIGIN__ORIGIN_UNKNOWN &&
                   CTLSRV_ORIGIN_LOCAL == CASCADE__CONTROL__STREAM_ORIGIN__ORIGIN_LOCAL &&
                   CTLSRV_ORIGIN_PUSHED == CASCADE__CONTROL__STREAM_ORIGIN__ORIGIN_PUSHED &&
                   CTLSRV_ORIGIN_PULLED == CASCADE__CONTROL__STREAM_ORIGIN__ORIGIN_PULLED,
               "stream origins keep the wire's numbers (stored in sessions.report)");
_Static_assert(SESS_RELAYS_MAX >= RELAY_MAX_PER_NODE,
               "a session queues every relay the registry admits for its node");

typedef Cascade__Control__Request req_t;
typedef Cascade__Control__Response resp_t;

/* A long poll waiting for something to say, or a relay ack held back
 * (relay_sessions_t.ack answers it). */
typedef struct park {
  sess_park_t core;          /* first: what the session core sees */
  ctlgate_t *gate;           /* where the answer goes */
  uint32_t conn;             /* the request's connection and SP request id */
  uint32_t rid;
} park_t;


/* A relay request waiting for the node's next poll: a sess_relay_t whose
 * item is a ctl_relay_t reference. */
typedef sess_relay_t pend_t;

/* A node's session: the core's bookkeeping (session.h), and what its
 * heartbeats reported. */
typedef struct node_sess {
  sess_t core;               /* first; its park is a park_t (owned) */
  char name[VALID_NAME_MAX + 1];
  ctlsrv_link_t *links;      /* owned: the last heartbeat's link reports */
  size_t nlinks;
  ctlsrv_stream_t *streams;  /* owned: the last heartbeat's stream reports */
  size_t nstreams;
  uint32_t streams_total;    /* the node's own count (above nstreams: not all reported) */
  int64_t static_tried;      /* the static parent id last tried (Heartbeat.static_parent_id) */
  int report_dirty;          /* links or streams changed since the last DB_SESSION_REPORTS */
} node_sess_t;

#define NODE_SESS(x) ((node_sess_t *)(x))
#define PARK(p) ((park_t *)(p))

/* A SCRAM exchange between AuthStart and AuthFinish. */
typedef struct exch {
  exch_entry_t core;         /* first: handle, creation time (exch.h) */
  int64_t id;                /* 0: the name is unknown; the proof cannot pass */
  int64_t epoch;
  int pending;               /* the node awaits approval: no session */
  scram_verifier_t v;
  char name[VALID_NAME_MAX + 1];
  char auth_msg[640];
} exch_t;

struct ctlsrv {
  ctl_t *ctl;
  ctlgate_t *gate;           /* control.listenaddr and the agents' connections; ctl frees it */
  int nworkers;
  pthread_t *workers;
  pthread_t sweeper;
  pthread_mutex_t mu;        /* sessions, exchanges, the flags below */
  pthread_cond_t cv;
  int stopping;
  int wake;
  sess_table_t sessions;
  exch_table_t exch;
  auth_t fails;              /* auth failures per source address */
  authwait_t pipes;          /* under mu: the gate's live connections (authwait.h) */
  atomic_ulong auth_timeouts;
  reglimit_t reg;            /* self-registrations per address and overall */
  reglimit_t events_rl;      /* audit events unauthenticated peers cause */
  int has_join;
  uint8_t join_hash[AUTH_HASH_LEN]; /* SHA-256 of cascadeserver.jointoken */
  uint8_t fake_key[32];      /* salts for unknown names, stable per process */
  char *ca_cert;             /* signs node certificates */
  char *ca_key;
  atomic_ulong bad_messages;
  atomic_ulong auth_failures;
  atomic_ulong requests;
  atomic_ulong registrations;
  atomic_ulong registrations_refused;
  atomic_ulong pending_refused;
  atomic_ulong events_dropped;
  int64_t last_bad_log_ms;
  int64_t last_reg_log_ms;
  int64_t last_pending_log_ms;
  int64_t last_unseal_log_ms; /* a stream key that cannot be unsealed: once per 10 s */
  char replica[REPLICA_ID_LEN + 1]; /* this process's replica id, random per start */
  char address[160];         /* under mu: where other replicas reach this one (its API) */
  int address_new;           /* under mu: set, not yet written by a renewal */
  int64_t last_renew_ms;     /* sweeper only: the last DB_REPLICA_RENEW */
  int64_t last_lease_sweep_ms; /* sweeper only: the last DB_CTL_SWEEP */
  pthread_t waker;           /* LISTEN cascade_wake (wake-ups from other replicas) */
  int has_listener;
  atomic_ulong wakeups_heard;
  atomic_ulong listen_reconnects;
  atomic_ulong sessions_taken;  /* local sessions another replica took over */
};

/* ---- small helpers ------------------------------------------------------ */

static nng_msg *pack(const resp_t *resp) {
  size_t len = 0;
  uint8_t *buf = ctlmsg_pack_response(resp, &len);
  nng_msg *m = NULL;
  if (buf == NULL) return NULL;
  if (nng_msg_alloc(&m, 0) != 0 || nng_msg_append(m, buf, len) != 0) {
    if (m) nng_msg_free(m);
    m = NULL;
  }
  free(buf);
  return m;
}

static nng_msg *status_reply(uint64_t id, Cascade__Control__Code code, const char *message) {
  resp_t r = CASCADE__CONTROL__RESPONSE__INIT;
  Cascade__Control__Status st = CASCADE__CONTROL__STATUS__INIT;
  st.code = code;
  st.message = (char *)message;
  r.id = id;
  r.status = &st;
  return pack(&r);
}

/* ---- connections and their authentication deadline ----------------------- */

/* Runs on the gate's thread (ctlgate_conn_cb). */
static void pipe_cb(void *arg, uint32_t id, int up) {
  ctlsrv_t *s = arg;
  int64_t now = db_now_ms();
  pthread_mutex_lock(&s->mu);
  if (up) authwait_add(&s->pipes, id, now);
  else authwait_remove(&s->pipes, id);
  pthread_mutex_unlock(&s->mu);
}

/* pipe_seen notes a request on connection |id|; |authed|: it carries a
 * live session. */
static void pipe_seen(ctlsrv_t *s, uint32_t id, int authed) {
  int64_t now = db_now_ms();
  pthread_mutex_lock(&s->mu);
  authwait_seen(&s->pipes, id, now, authed);
  pthread_mutex_unlock(&s->mu);
}

/* pipes_expire closes the connections on which nobody authenticated and
 * which were silent for control.authtimeout: past the TLS and SP
 * handshakes (the gate's deadline), a connection that only holds its place
 * would still keep agents out. */
static void pipes_expire(ctlsrv_t *s) {
  uint32_t ids[256];
  int64_t now = db_now_ms(), limit = s->ctl->cfg->control_auth_ms;
  pthread_mutex_lock(&s->mu);
  size_t n = authwait_expire(&s->pipes, now, limit, ids, sizeof(ids) / sizeof(ids[0]));
  pthread_mutex_unlock(&s->mu);
  for (size_t i = 0; i < n; i++) {
    ctlgate_close(s->gate, ids[i]);
    atomic_fetch_add(&s->auth_timeouts, 1);
  }
  if (n)
    log_info("control", "closed %zu control connection(s) on which no node authenticated "
                        "within control.authtimeout (%lld ms)",
             n, (long long)limit);
}

static void event(ctlsrv_t *s, const char *actor, const char *action, int64_t id,
                  const char *source, json_t *detail) {
  char ids[24];
  char *d = json_dumps(detail, JSON_COMPACT);
  json_decref(detail);
  snprintf(ids, sizeof(ids), "%lld", (long long)id);
  const char *p[5] = {actor, action, id > 0 ? ids : NULL, source, d ? d : "{}"};
  int err = 0;
  db_conn_t *c = db_acquire(&s->ctl->db, &err);
  if (c) PQclear(db_exec(&s->ctl->db, c, DB_CTL_EVENT, 5, p, &err));
  db_release(&s->ctl->db, c);
  free(d);
}

/* exec1 runs one statement on a pooled connection; NULL when unavailable. */
static PGresult *exec1(ctlsrv_t *s, db_stmt_t st, int n, const char *const *p) {
  int err = 0;
  db_conn_t *c = db_acquire(&s->ctl->db, &err);
  if (c == NULL) return NULL;
  PGresult *r = db_exec(&s->ctl->db, c, st, n, p, &err);
  db_release(&s->ctl->db, c);
  if (r != NULL && !db_ok(r)) {
    char q[256];
    log_warn("control", "statement %d failed: %s", (int)st,
             log_quote(PQresultErrorMessage(r), q, sizeof(q)));
    PQclear(r);
    return NULL;
  }
  return r;
}

/* ---- sessions (callers hold s->mu; the bookkeeping is session.c's) -------- */

static node_sess_t *sess_by_token(ctlsrv_t *s, const uint8_t *tok) {
  return NODE_SESS(sess_find_token(&s->sessions, tok));
}

static node_sess_t *sess_by_id(ctlsrv_t *s, int64_t id) {
  return NODE_SESS(sess_find_id(&s->sessions, id));
}

/* ---- parked polls --------------------------------------------------------- */

/* park_new parks request |in| (answered later by park_answer). */
static park_t *park_new(ctlsrv_t *s, const ctlgate_req_t *in, uint64_t req_id) {
  park_t *p = calloc(1, sizeof(*p));
  if (p == NULL) return NULL;
  p->gate = s->gate;
  p->conn = in->conn;
  p->rid = in->id;
  p->core.req_id = req_id;
  p->core.since_ms = db_now_ms();
  return p;
}

/* park_answer sends |m| (taken; NULL: no answer, the request is given
 * up) to the parked request's connection and frees |p|. Any thread. */
static void park_answer(park_t *p, nng_msg *m) {
  ctlgate_reply(p->gate, p->conn, p->rid, m ? nng_msg_body(m) : NULL, m ? nng_msg_len(m) : 0);
  if (m) nng_msg_free(m);
  free(p);
}

static void streams_free(ctlsrv_stream_t *v, size_t n) {
  for (size_t i = 0; i < n; i++) free(v[i].path);
  free(v);
}

static void relay_release(void *rl) { relay_unref(rl); }

static void pend_free(pend_t *p) { sess_relays_free(p, relay_release); }

/* relay_size: the bytes relay |rl| adds to a poll answer (0: it is over). */
static size_t relay_size(void *rl) {
  relay_request_t tmp;
  return relay_fill(rl, &tmp);
}

/* take_relays takes from session |x| the relay requests that fit in one
 * poll answer (at least one). Under s->mu. */
static pend_t *take_relays(node_sess_t *x) {
  return sess_relays_take(&x->core, CTLMSG_RELAY_PER_POLL, POLL_RELAY_BYTES, relay_size);
}

/* reply_ack answers the held-back RelayResponse |p| with a RelayAck and
 * frees it. Any thread. */
static void reply_ack(void *arg, park_t *p, int cancelled) {
  resp_t resp = CASCADE__CONTROL__RESPONSE__INIT;
  Cascade__Control__Status st = CASCADE__CONTROL__STATUS__INIT;
  Cascade__Control__RelayAck ack = CASCADE__CONTROL__RELAY_ACK__INIT;
  st.message = "";
  ack.cancelled = cancelled != 0;
  resp.id = p->core.req_id;
  resp.status = &st;
  resp.body_case = CASCADE__CONTROL__RESPONSE__BODY_RELAY_ACK;
  resp.relay_ack = &ack;
  park_answer(p, pack(&resp));
}

/* pack_with_relays packs |resp| carrying the relay requests of |rel|. */
static nng_msg *pack_with_relays(resp_t *resp, pend_t *rel) {
  size_t n = 0, nh = 0;
  for (pend_t *p = rel; p; p = p->next) n++;
  relay_request_t *views = n ? calloc(n, sizeof(*views)) : NULL;
  Cascade__Control__RelayRequest *v = n ? calloc(n, sizeof(*v)) : NULL;
  Cascade__Control__RelayRequest **pv = n ? calloc(n, sizeof(*pv)) : NULL;
  Cascade__Control__Header *hv = NULL, **hp = NULL;
  size_t k = 0;
  if (n && (views == NULL || v == NULL || pv == NULL)) n = 0;
  for (pend_t *p = rel; p && n; p = p->next)
    if (relay_fill(p->item, &views[k])) nh += views[k++].nheaders;
  if (nh && ((hv = calloc(nh, sizeof(*hv))) == NULL || (hp = calloc(nh, sizeof(*hp))) == NULL))
    k = 0;
  for (size_t i = 0, h = 0; i < k; h += views[i++].nheaders) {
    ctlmsg_relay_request_wire(&views[i], &v[i], hv ? hv + h : NULL, hp ? hp + h : NULL);
    pv[i] = &v[i];
  }
  resp->n_relay = k;
  resp->relay = pv;
  nng_msg *m = pack(resp);
  if (m)
    for (pend_t *p = rel; p; p = p->next) relay_sent(p->item);
  free(views);
  free(v);
  free(pv);
  free(hv);
  free(hp);
  resp->n_relay = 0;
  resp->relay = NULL;
  return m;
}

/* ---- configuration -------------------------------------------------------- */

/* The stream authorization of one Config: the node's rules then the
 * deployment's, the keys unsealed, the hooks. Filled from the JSON columns
 * of DB_CTL_CONFIG; freed by sa_msg_free (the keys wiped). */
typedef struct sa_msg {
  Cascade__Control__StreamAuth sa;
  Cascade__Control__StreamHooks hooks;
  Cascade__Control__StreamAuthRule rule_v[2 * SA_RULES_MAX];
  Cascade__Control__StreamAuthRule *rule_p[2 * SA_RULES_MAX];
  Cascade__Control__StreamKey key_v[SA_KEYS_MAX];
  Cascade__Control__StreamKey *key_p[SA_KEYS_MAX];
  uint8_t keys[SA_KEYS_MAX][STREAMTOKEN_KEY_LEN];
  json_t *policy, *node, *hj, *kj;
} sa_msg_t;

static int sa_mode(const char *m) {
  return m && strcmp(m, "token") == 0  ? CASCADE__CONTROL__STREAM_AUTH_MODE__STREAM_AUTH_TOKEN
         : m && strcmp(m, "hook") == 0 ? CASCADE__CONTROL__STREAM_AUTH_MODE__STREAM_AUTH_HOOK
                                        : CASCADE__CONTROL__STREAM_AUTH_MODE__STREAM_AUTH_NONE;
}

static void sa_add_rules(sa_msg_t *m, const json_t *list) {
  for (size_t i = 0; i < json_array_size(list) && m->sa.n_rules < 2 * SA_RULES_MAX; i++) {
    json_t *e = json_array_get(list, i);
    Cascade__Control__StreamAuthRule *r = &m->rule_v[m->sa.n_rules];
    cascade__control__stream_auth_rule__init(r);
    r->pattern = (char *)json_string_value(json_object_get(e, "pattern"));
    if (r->pattern == NULL) continue;
    r->publish = sa_mode(json_string_value(json_object_get(e, "publish")));
    r->play = sa_mode(json_string_value(json_object_get(e, "play")));
    m->rule_p[m->sa.n_rules++] = r;
  }
}

static const char *sa_str(const json_t *o, const char *k) {
  const char *v = json_string_value(json_object_get(o, k));
  return v ? v : "";
}

/* sa_msg_fill builds |m| from row 0 of |r|; 0, or -1 when the policy
 * cannot be read (the Config then carries none and the node refuses
 * what it leaves to the controller). */
static int log_once_per(ctlsrv_t *s, int64_t *last, int64_t every_ms);

static int sa_msg_fill(ctlsrv_t *s, const PGresult *r, sa_msg_t *m) {
  memset(m, 0, sizeof(*m));
  cascade__control__stream_auth__init(&m->sa);
  cascade__control__stream_hooks__init(&m->hooks);
  if (PQnfields(r) < 15 || PQgetisnull(r, 0, 11) || PQgetisnull(r, 0, 12)) return -1;
  m->policy = json_loads(PQgetvalue(r, 0, 11), 0, NULL);
  m->hj = json_loads(PQgetvalue(r, 0, 12), 0, NULL);
  if (!PQgetisnull(r, 0, 13)) m->node = json_loads(PQgetvalue(r, 0, 13), 0, NULL);
  if (!PQgetisnull(r, 0, 14)) m->kj = json_loads(PQgetvalue(r, 0, 14), 0, NULL);
  if (m->policy == NULL || m->hj == NULL) return -1;
  sa_add_rules(m, m->node);
  sa_add_rules(m, m->policy);
  m->sa.rules = m->rule_p;
  for (size_t i = 0; i < json_array_size(m->kj) && m->sa.n_keys < SA_KEYS_MAX; i++) {
    json_t *e = json_array_get(m->kj, i);
    const char *hex = json_string_value(json_array_get(e, 1));
    uint8_t sealed[SA_SEALED_LEN];
    char bx[2 * SA_SEALED_LEN + 3];
    if (hex == NULL || !s->ctl->has_stream_kek) continue;
    snprintf(bx, sizeof(bx), "\\x%s", hex);
    size_t k = m->sa.n_keys;
    if (sa_hex_decode(bx, sealed, sizeof(sealed)) != SA_SEALED_LEN ||
        sa_unseal(s->ctl->stream_kek, sealed, SA_SEALED_LEN, m->keys[k]) != 0) {
      /* Every configuration answer meets it again: say it once per 10 s. */
      if (log_once_per(s, &s->last_unseal_log_ms, 10000))
        log_error("ctl", "stream key %lld cannot be unsealed (sealed under another CA?): left out",
                  (long long)json_integer_value(json_array_get(e, 0)));
      continue;
    }
    cascade__control__stream_key__init(&m->key_v[k]);
    m->key_v[k].id = (uint32_t)json_integer_value(json_array_get(e, 0));
    m->key_v[k].key.data = m->keys[k];
    m->key_v[k].key.len = STREAMTOKEN_KEY_LEN;
    m->key_p[k] = &m->key_v[k];
    m->sa.n_keys++;
  }
  m->sa.keys = m->key_p;
  m->hooks.on_publish = (char *)sa_str(m->hj, "on_publish");
  m->hooks.on_play = (char *)sa_str(m->hj, "on_play");
  m->hooks.on_stop = (char *)sa_str(m->hj, "on_stop");
  m->hooks.on_unpublish = (char *)sa_str(m->hj, "on_unpublish");
  m->hooks.timeout_ms = (uint32_t)json_integer_value(json_object_get(m->hj, "timeout_ms"));
  m->hooks.cache_ms = (uint32_t)json_integer_value(json_object_get(m->hj, "cache_ms"));
  m->hooks.fail_open = json_is_true(json_object_get(m->hj, "fail_open"));
  m->sa.hooks = &m->hooks;
  return 0;
}

static void sa_msg_free(sa_msg_t *m) {
  gnutls_memset(m->keys, 0, sizeof(m->keys));
  json_decref(m->policy);
  json_decref(m->node);
  json_decref(m->hj);
  json_decref(m->kj);
}

/* config_reply loads node |id|'s desired configuration: the reply to a
 * poll, or NULL when the database cannot say. *gen gets its generation. */
static nng_msg *config_reply(ctlsrv_t *s, uint64_t req_id, int64_t id, uint64_t *gen,
                             pend_t *rel) {
  char ids[24];
  snprintf(ids, sizeof(ids), "%lld", (long long)id);
  const char *p[1] = {ids};
  PGresult *r = exec1(s, DB_CTL_CONFIG, 1, p);
  if (r == NULL) return NULL;
  if (PQntuples(r) != 1) {
    PQclear(r);
    return status_reply(req_id, CASCADE__CONTROL__CODE__REVOKED, "node deleted");
  }
  resp_t resp = CASCADE__CONTROL__RESPONSE__INIT;
  Cascade__Control__Status st = CASCADE__CONTROL__STATUS__INIT;
  Cascade__Control__Config cfg = CASCADE__CONTROL__CONFIG__INIT;
  Cascade__Control__Topology topo = CASCADE__CONTROL__TOPOLOGY__INIT;
  Cascade__Control__Rules rules = CASCADE__CONTROL__RULES__INIT;
  Cascade__Control__RelayApi relay = CASCADE__CONTROL__RELAY_API__INIT;
  Cascade__Control__PullRules pulls = CASCADE__CONTROL__PULL_RULES__INIT;
  Cascade__Control__Flag autopush = CASCADE__CONTROL__FLAG__INIT;
  json_t *allow = NULL, *deny = NULL, *onsub = NULL, *kids = NULL;
  Cascade__Control__Child *child_v = NULL, **child_p = NULL;
  Cascade__Control__PullRule *rule_v = NULL, **rule_p = NULL;
  char **allow_p = NULL, **deny_p = NULL;
  char parent_addr[320];
  nng_msg *m = NULL;
  sa_msg_t *sam = calloc(1, sizeof(*sam)); /* large: not on the stack */
  if (sam == NULL) {
    PQclear(r);
    return NULL;
  }

  cfg.generation = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
  *gen = cfg.generation;
  if (!PQgetisnull(r, 0, 1)) {
    topo.parent_id = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    topo.parent_name = PQgetvalue(r, 0, 2);
    topo.parent_quic = PQgetvalue(r, 0, 3);
    topo.parent_epoch = strtoll(PQgetvalue(r, 0, 10), NULL, 10);
    /* A wildcard (":port", "0.0.0.0:port", "[::]:port": every address of
     * the parent) is completed with the address the parent's control
     * connection comes from. */
    if (advert_parent_addr(topo.parent_quic, PQgetvalue(r, 0, 9), parent_addr,
                           sizeof(parent_addr)) == 1)
      topo.parent_quic = parent_addr;
  }
  if (!PQgetisnull(r, 0, 8) && (kids = json_loads(PQgetvalue(r, 0, 8), 0, NULL)) != NULL) {
    size_t n = json_array_size(kids);
    child_v = calloc(n ? n : 1, sizeof(*child_v));
    child_p = calloc(n ? n : 1, sizeof(*child_p));
    if (child_v == NULL || child_p == NULL) goto done;
    for (size_t i = 0; i < n; i++) {
      json_t *e = json_array_get(kids, i);
      cascade__control__child__init(&child_v[i]);
      child_v[i].id = json_integer_value(json_array_get(e, 0));
      child_v[i].name = (char *)json_string_value(json_array_get(e, 1));
      child_v[i].epoch = json_integer_value(json_array_get(e, 2));
      child_p[i] = &child_v[i];
    }
    topo.n_children = n;
    topo.children = child_p;
  }
  cfg.topology = &topo;
  if (!PQgetisnull(r, 0, 4) || !PQgetisnull(r, 0, 5)) {
    allow = PQgetisnull(r, 0, 4) ? json_array() : json_loads(PQgetvalue(r, 0, 4), 0, NULL);
    deny = PQgetisnull(r, 0, 5) ? json_array() : json_loads(PQgetvalue(r, 0, 5), 0, NULL);
    size_t na = json_array_size(allow), nd = json_array_size(deny);
    allow_p = calloc(na ? na : 1, sizeof(char *));
    deny_p = calloc(nd ? nd : 1, sizeof(char *));
    if (allow_p == NULL || deny_p == NULL) goto done;
    for (size_t i = 0; i < na; i++) allow_p[i] = (char *)json_string_value(json_array_get(allow, i));
    for (size_t i = 0; i < nd; i++) deny_p[i] = (char *)json_string_value(json_array_get(deny, i));
    relay.n_allow = na;
    relay.allow = allow_p;
    relay.n_deny = nd;
    relay.deny = deny_p;
    rules.relayapi = &relay;
  }
  if (!PQgetisnull(r, 0, 6) && (onsub = json_loads(PQgetvalue(r, 0, 6), 0, NULL)) != NULL) {
    size_t n = json_array_size(onsub);
    rule_v = calloc(n ? n : 1, sizeof(*rule_v));
    rule_p = calloc(n ? n : 1, sizeof(*rule_p));
    if (rule_v == NULL || rule_p == NULL) goto done;
    for (size_t i = 0; i < n; i++) {
      json_t *e = json_array_get(onsub, i);
      cascade__control__pull_rule__init(&rule_v[i]);
      rule_v[i].pattern = (char *)json_string_value(json_array_get(e, 0));
      rule_v[i].target = (char *)json_string_value(json_array_get(e, 1));
      rule_p[i] = &rule_v[i];
    }
    pulls.n_rules = n;
    pulls.rules = rule_p;
    rules.onsub_pull = &pulls;
  }
  if (!PQgetisnull(r, 0, 7)) {
    autopush.value = PQgetvalue(r, 0, 7)[0] == 't';
    rules.autopush = &autopush;
  }
  if (sa_msg_fill(s, r, sam) == 0) rules.streamauth = &sam->sa;
  cfg.rules = &rules;
  st.code = CASCADE__CONTROL__CODE__OK;
  st.message = "";
  resp.id = req_id;
  resp.status = &st;
  resp.body_case = CASCADE__CONTROL__RESPONSE__BODY_CONFIG;
  resp.config = &cfg;
  m = pack_with_relays(&resp, rel);

done:
  free(child_v);
  free(child_p);
  free(rule_v);
  free(rule_p);
  free(allow_p);
  free(deny_p);
  json_decref(allow);
  json_decref(deny);
  json_decref(onsub);
  json_decref(kids);
  sa_msg_free(sam);
  free(sam);
  PQclear(r);
  return m;
}

static nng_msg *empty_config(uint64_t req_id, pend_t *rel) {
  resp_t resp = CASCADE__CONTROL__RESPONSE__INIT;
  Cascade__Control__Status st = CASCADE__CONTROL__STATUS__INIT;
  Cascade__Control__Config cfg = CASCADE__CONTROL__CONFIG__INIT;
  st.message = "";
  resp.id = req_id;
  resp.status = &st;
  resp.body_case = CASCADE__CONTROL__RESPONSE__BODY_CONFIG;
  resp.config = &cfg;
  return pack_with_relays(&resp, rel);
}

/* ---- request handlers ------------------------------------------------------ */

/* log_once_per reports whether a line rate-limited to one per |every_ms|
 * through |last| may be written now. */
static int log_once_per(ctlsrv_t *s, int64_t *last, int64_t every_ms) {
  int64_t now = db_now_ms();
  pthread_mutex_lock(&s->mu);
  int ok = now - *last >= every_ms;
  if (ok) *last = now;
  pthread_mutex_unlock(&s->mu);
  return ok;
}

/* join_ok checks a presented join token in constant time. */
static int join_ok(ctlsrv_t *s, const char *token) {
  uint8_t h[AUTH_HASH_LEN];
  if (!s->has_join || token == NULL || token[0] == '\0') return 0;
  if (auth_hash(token, strlen(token), h) != 0) return 0;
  return gnutls_memcmp(h, s->join_hash, AUTH_HASH_LEN) == 0;
}

static nng_msg *on_register(ctlsrv_t *s, const req_t *q, const char *ip) {
  const Cascade__Control__Register *g = q->register_;
  const ctl_config_t *cfg = s->ctl->cfg;
  scram_verifier_t v;
  char err[128], qn[80], maxp[24];

  if (valid_name(g->name, strlen(g->name), err, sizeof(err)) != 0 ||
      scram_verifier_parse(g->verifier, &v) != 0)
    return status_reply(q->id, CASCADE__CONTROL__CODE__BAD_REQUEST, "bad name or verifier");
  int token = g->join_token && g->join_token[0];
  int approved = join_ok(s, g->join_token);
  if (token && !approved) {
    /* A wrong join token is a failed authentication: counted, limited. */
    atomic_fetch_add(&s->auth_failures, 1);
    if (auth_failed(&s->fails, ip)) {
      log_warn("control", "join token refused name=%s source=%s",
               log_quote(g->name, qn, sizeof(qn)), ip);
      if (reglimit_take(&s->events_rl, "", db_now_ms()))
        event(s, "control", "auth.failure", 0, ip,
              json_pack("{s:s,s:s}", "name", g->name, "reason", "join token"));
      else
        atomic_fetch_add(&s->events_dropped, 1);
    }
  }
  if (cfg->autoregister) {
    /* Without the join token, limits before the database: an address (and
     * everyone together) can only create so many rows a minute. Known names
     * create nothing and are not counted. A valid join token is a credential
     * the operator issued: its holders are not limited (a fleet joins at once). */
    if (!approved && !reglimit_check(&s->reg, ip, db_now_ms())) {
      atomic_fetch_add(&s->registrations_refused, 1);
      if (log_once_per(s, &s->last_reg_log_ms, 1000))
        log_warn("control", "registration refused: rate limit (cascadeserver.registerrate%s) "
                            "name=%s source=%s",
                 reglimit_check(&s->reg, "", db_now_ms()) ? "peraddr" : "",
                 log_quote(g->name, qn, sizeof(qn)), ip);
      return status_reply(q->id, CASCADE__CONTROL__CODE__OK, "");
    }
    snprintf(maxp, sizeof(maxp), "%lld", cfg->maxpending);
    const char *p[5] = {g->name, g->verifier, ip, approved ? "true" : "false", maxp};
    PGresult *r = exec1(s, DB_CTL_REGISTER, 5, p);
    if (r == NULL)
      return status_reply(q->id, CASCADE__CONTROL__CODE__UNAVAILABLE, "database unavailable");
    if (PQntuples(r) == 1) {
      if (!approved) reglimit_count(&s->reg, ip, db_now_ms());
      atomic_fetch_add(&s->registrations, 1);
      log_info("control", "node registered id=%s name=%s source=%s%s", PQgetvalue(r, 0, 0),
               log_quote(g->name, qn, sizeof(qn)), ip,
               PQgetvalue(r, 0, 1)[0] == 't' ? " (pending approval)" : " (join token)");
      ctlsrv_wake(s);
    }
    /* Nothing made: a known name, a deleted one, or the pending list full. */
    PQclear(r);
  }
  /* The same answer whatever happened: a name cannot be probed. */
  return status_reply(q->id, CASCADE__CONTROL__CODE__OK, "");
}

/* saslname escapes a name for the SCRAM messages (RFC 5802 5.1). */
static void saslname(const char *name, char *out, size_t len) {
  size_t o = 0;
  for (const char *p = name; *p && o + 4 < len; p++) {
    if (*p == ',') {
      memcpy(out + o, "=2C", 3);
      o += 3;
    } else if (*p == '=') {
      memcpy(out + o, "=3D", 3);
      o += 3;
    } else {
      out[o++] = *p;
    }
  }
  out[o] = '\0';
}

static nng_msg *on_auth_start(ctlsrv_t *s, const req_t *q, const char *ip) {
  const Cascade__Control__AuthStart *a = q->auth_start;
  exch_t *x = calloc(1, sizeof(*x));
  uint8_t snonce_raw[18];
  char snonce[32], salt64[96], esc[200], err[128];
  nng_msg *m;

  if (x == NULL) return NULL;
  if (valid_name(a->name, strlen(a->name), err, sizeof(err)) != 0) {
    free(x);
    return status_reply(q->id, CASCADE__CONTROL__CODE__AUTH_FAILED, "authentication failed");
  }
  snprintf(x->name, sizeof(x->name), "%s", a->name);
  const char *p[1] = {a->name};
  PGresult *r = exec1(s, DB_CTL_LOOKUP, 1, p);
  if (r == NULL) {
    free(x);
    return status_reply(q->id, CASCADE__CONTROL__CODE__UNAVAILABLE, "database unavailable");
  }
  if (PQntuples(r) == 1 && scram_verifier_parse(PQgetvalue(r, 0, 1), &x->v) == 0) {
    x->id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    x->epoch = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
    x->pending = PQgetvalue(r, 0, 3)[0] == 't';
  } else {
    /* Unknown: a salt that looks real and stays the same for this name,
     * so two tries cannot tell it from a known one. */
    uint8_t mac[32];
    gnutls_hmac_fast(GNUTLS_MAC_SHA256, s->fake_key, sizeof(s->fake_key), a->name,
                     strlen(a->name), mac);
    memcpy(x->v.salt, mac, SCRAM_SALT_LEN);
    x->v.salt_len = SCRAM_SALT_LEN;
    x->v.iter = SCRAM_ITER_DEFAULT;
    x->id = 0;
  }
  PQclear(r);
  gnutls_rnd(GNUTLS_RND_NONCE, x->core.handle, sizeof(x->core.handle));
  gnutls_rnd(GNUTLS_RND_NONCE, snonce_raw, sizeof(snonce_raw));
  b64url_encode(snonce_raw, sizeof(snonce_raw), snonce, sizeof(snonce));
  b64_encode(x->v.salt, x->v.salt_len, salt64, sizeof(salt64));
  saslname(a->name, esc, sizeof(esc));
  char nonce[160];
  snprintf(nonce, sizeof(nonce), "%s%s", a->client_nonce, snonce);
  snprintf(x->auth_msg, sizeof(x->auth_msg), "n=%s,r=%s,r=%s,s=%s,i=%u,c=biws,r=%s", esc,
           a->client_nonce, nonce, salt64, x->v.iter, nonce);
  x->core.created_ms = db_now_ms();

  pthread_mutex_lock(&s->mu);
  if (exch_add(&s->exch, &x->core) != 0) {
    pthread_mutex_unlock(&s->mu);
    free(x);
    return status_reply(q->id, CASCADE__CONTROL__CODE__UNAVAILABLE, "busy");
  }
  pthread_mutex_unlock(&s->mu);

  resp_t resp = CASCADE__CONTROL__RESPONSE__INIT;
  Cascade__Control__Status st = CASCADE__CONTROL__STATUS__INIT;
  Cascade__Control__AuthChallenge ch = CASCADE__CONTROL__AUTH_CHALLENGE__INIT;
  st.message = "";
  ch.exchange.data = x->core.handle;
  ch.exchange.len = TOKEN_LEN;
  ch.salt.data = x->v.salt;
  ch.salt.len = x->v.salt_len;
  ch.iterations = x->v.iter;
  ch.nonce = nonce;
  resp.id = q->id;
  resp.status = &st;
  resp.body_case = CASCADE__CONTROL__RESPONSE__BODY_AUTH_CHALLENGE;
  resp.auth_challenge = &ch;
  m = pack(&resp);
  (void)ip;
  return m;
}

static exch_t *exchange_take(ctlsrv_t *s, const uint8_t *handle) {
  pthread_mutex_lock(&s->mu);
  exch_t *x = (exch_t *)exch_take(&s->exch, handle);
  pthread_mutex_unlock(&s->mu);
  return x;
}

/* exchanges_free frees a list of exchanges (exch_expire, exch_drain). */
static void exchanges_free(exch_entry_t *e) {
  while (e) {
    exch_entry_t *next = e->next;
    free(e);
    e = next;
  }
}

/* link gives parentless node |id| the parent |pid| unless that would make a
 * loop (the topology lock serialises it with REST moves). */
static void link(ctlsrv_t *s, const char *ids, const char *pid) {
  int err = 0;
  db_pool_t *db = &s->ctl->db;
  db_conn_t *c = db_acquire(db, &err);
  if (c == NULL) return;
  PGresult *r = db_exec_sql(db, c, "BEGIN; SELECT pg_advisory_xact_lock(7072016531)", 0, &err);
  int ok = db_ok(r);
  PQclear(r);
  if (ok) {
    const char *p[2] = {ids, pid};
    r = db_exec(db, c, DB_NODE_CYCLE, 2, p, &err);
    int loop = !db_ok(r) || PQntuples(r) > 0;
    PQclear(r);
    if (!loop) PQclear(db_exec(db, c, DB_CTL_SET_PARENT, 2, p, &err));
    PQclear(db_exec_sql(db, c, loop ? "ROLLBACK" : "COMMIT", 0, &err));
  }
  db_release(db, c);
}

/* link_static puts parentless node |id| under |pid|, the node its agent
 * found answering at its cascadeclient.server address (the certificate
 * named it; an advertised address proves nothing). */
static void link_static(ctlsrv_t *s, int64_t id, int64_t pid) {
  char ids[24], pids[24];
  snprintf(ids, sizeof(ids), "%lld", (long long)id);
  snprintf(pids, sizeof(pids), "%lld", (long long)pid);
  link(s, ids, pids);
}

static nng_msg *auth_failed_reply(ctlsrv_t *s, const req_t *q, const char *ip,
                                  const char *name, int64_t id) {
  atomic_fetch_add(&s->auth_failures, 1);
  if (auth_failed(&s->fails, ip)) {
    char qn[80];
    log_warn("control", "authentication failed name=%s source=%s",
             log_quote(name, qn, sizeof(qn)), ip);
    /* Per address the log is limited; the events table is also limited
     * overall, so many addresses cannot fill it. */
    if (reglimit_take(&s->events_rl, "", db_now_ms()))
      event(s, "control", "auth.failure", id, ip, json_pack("{s:s}", "name", name));
    else
      atomic_fetch_add(&s->events_dropped, 1);
  }
  return status_reply(q->id, CASCADE__CONTROL__CODE__AUTH_FAILED, "authentication failed");
}

static nng_msg *on_auth_finish(ctlsrv_t *s, const req_t *q, const char *ip) {
  const Cascade__Control__AuthFinish *f = q->auth_finish;
  exch_t *x = exchange_take(s, f->exchange.data);
  uint8_t sig[SCRAM_KEY_LEN];
  char ids[24];
  park_t *old_park = NULL;

  if (x == NULL || !exch_live(&x->core, db_now_ms()) || x->id == 0 ||
      scram_verify_proof(&x->v, x->auth_msg, strlen(x->auth_msg), f->proof.data) != 0) {
    nng_msg *m = auth_failed_reply(s, q, ip, x ? x->name : "?", x ? x->id : 0);
    free(x);
    return m;
  }
  if (x->pending) {
    /* The right secret, but nobody approved the node: no session, so no
     * certificate, configuration, relay or place in the tree. */
    char qn[80];
    atomic_fetch_add(&s->pending_refused, 1);
    if (log_once_per(s, &s->last_pending_log_ms, 5000))
      log_info("control", "node %lld name=%s source=%s awaits approval "
                          "(PUT /api/cascade/clients/%lld {\"pending\": false})",
               (long long)x->id, log_quote(x->name, qn, sizeof(qn)), ip, (long long)x->id);
    free(x);
    return status_reply(q->id, CASCADE__CONTROL__CODE__PENDING, "awaiting approval by an operator");
  }
  scram_server_signature(&x->v, x->auth_msg, strlen(x->auth_msg), sig);

  /* The session, replacing any older one of this node without a gap in
   * its online state. */
  node_sess_t *n = calloc(1, sizeof(*n));
  if (n == NULL) {
    free(x);
    return NULL;
  }
  gnutls_rnd(GNUTLS_RND_KEY, n->core.token, TOKEN_LEN);
  n->core.id = x->id;
  n->core.epoch = x->epoch;
  snprintf(n->name, sizeof(n->name), "%s", x->name);
  n->core.last_hb_ms = db_now_ms();
  uint8_t token[TOKEN_LEN];
  memcpy(token, n->core.token, TOKEN_LEN);
  pend_t *old_relays = NULL;
  sess_park_t *replaced_park = NULL;
  pthread_mutex_lock(&s->mu);
  sess_t *old = sess_add(&s->sessions, &n->core, db_now_ms(), &replaced_park, &old_relays);
  pthread_mutex_unlock(&s->mu);
  old_park = PARK(replaced_park);
  if (old_park)
    park_answer(old_park, status_reply(old_park->core.req_id, CASCADE__CONTROL__CODE__REVOKED,
                                       "replaced by a newer session"));
  if (old) {
    /* The agent restarted: what its old process was answering is lost. */
    pend_free(old_relays);
    relay_node_gone(s->ctl->relays, x->id, "its agent restarted");
  }

  const Cascade__Control__Advertise *a = f->advertise;
  snprintf(ids, sizeof(ids), "%lld", (long long)x->id);
  char lease[24];
  snprintf(lease, sizeof(lease), "%lld", s->ctl->cfg->control_sessionlease_ms);
  const char *p[9] = {ids, ip, a ? a->quic : "", a ? a->http : "", a ? a->rtmp : "",
                      a ? a->version : "", a ? a->static_parent : "", s->replica, lease};
  PGresult *cr = exec1(s, DB_CTL_CONNECT, 9, p);
  if (cr != NULL && PQntuples(cr) == 1) {
    pthread_mutex_lock(&s->mu);
    node_sess_t *me = sess_by_token(s, token);
    if (me) me->core.claimed = 1;
    pthread_mutex_unlock(&s->mu);
  }
  PQclear(cr);
  log_info("control", "node connected id=%lld name=%s source=%s", (long long)x->id, x->name, ip);
  ctlsrv_wake(s);

  resp_t resp = CASCADE__CONTROL__RESPONSE__INIT;
  Cascade__Control__Status st = CASCADE__CONTROL__STATUS__INIT;
  Cascade__Control__AuthOk ok = CASCADE__CONTROL__AUTH_OK__INIT;
  st.message = "";
  ok.server_signature.data = sig;
  ok.server_signature.len = sizeof(sig);
  ok.session.data = token;
  ok.session.len = TOKEN_LEN;
  ok.instance_id = x->id;
  ok.heartbeat_ms = (uint32_t)s->ctl->cfg->control_heartbeat_ms;
  ok.epoch = x->epoch;
  resp.id = q->id;
  resp.status = &st;
  resp.body_case = CASCADE__CONTROL__RESPONSE__BODY_AUTH_OK;
  resp.auth_ok = &ok;
  free(x);
  return pack(&resp);
}

/* session_epoch finds the request's live session (copying what the caller
 * needs: its node id and credential epoch), or answers NO_SESSION / REVOKED. */
static int session_epoch(ctlsrv_t *s, const req_t *q, int64_t *id, int64_t *epoch,
                         nng_msg **reply) {
  int rv = -1;
  pthread_mutex_lock(&s->mu);
  sess_t *x = q->session.len == TOKEN_LEN ? sess_find_token(&s->sessions, q->session.data) : NULL;
  if (x == NULL)
    *reply = status_reply(q->id, CASCADE__CONTROL__CODE__NO_SESSION, "no such session");
  else if (x->revoked)
    *reply = status_reply(q->id, CASCADE__CONTROL__CODE__REVOKED, "session revoked");
  else {
    *id = x->id;
    if (epoch) *epoch = x->epoch;
    rv = 0;
  }
  pthread_mutex_unlock(&s->mu);
  return rv;
}

static int session_of(ctlsrv_t *s, const req_t *q, int64_t *id, nng_msg **reply) {
  return session_epoch(s, q, id, NULL, reply);
}

/* text_json is |s| as a JSON string; a node's text that is not UTF-8 (a
 * stream path may hold any byte but control ones) has its non-ASCII bytes
 * shown as '?', so that its event is recorded rather than refused forever. */
static json_t *text_json(const char *s) {
  json_t *j = json_string(s ? s : "");
  if (j) return j;
  char *c = strdup(s);
  if (c == NULL) return NULL;
  for (char *p = c; *p; p++)
    if ((unsigned char)*p >= 0x80) *p = '?';
  j = json_string(c);
  free(c);
  return j;
}

/* stream_events writes the kicks and drops a node reports (at most
 * CTLMSG_STREAM_EVENTS_MAX a heartbeat) into the audit trail, in one
 * statement: all or none, so that a node whose heartbeat failed sends them
 * again. 0, or -1 when the database did not take them. */
static int stream_events(ctlsrv_t *s, const Cascade__Control__Heartbeat *hb, int64_t id,
                         const char *name) {
  size_t n = hb->n_stream_events < CTLMSG_STREAM_EVENTS_MAX ? hb->n_stream_events
                                                            : CTLMSG_STREAM_EVENTS_MAX;
  json_t *a = json_array();
  for (size_t i = 0; a && i < n; i++) {
    const Cascade__Control__StreamEvent *e = hb->stream_events[i];
    /* json_pack takes the "o" references even when it fails */
    json_t *d = json_pack("{s:s,s:o,s:o,s:I,s:I}", "action", e->action, "path",
                          text_json(e->path), "node_name", text_json(name), "seq",
                          (json_int_t)e->seq, "node_time", (json_int_t)e->time);
    if (d && e->connection) {
      json_object_set_new(d, "connection", json_integer((json_int_t)e->connection));
      json_object_set_new(d, "addr", text_json(e->addr));
      json_object_set_new(d, "kind", text_json(e->kind));
      json_object_set_new(d, "protocol", text_json(e->protocol));
    }
    if (d) json_object_set_new(d, "ended", json_integer(e->ended));
    if (d && hb->stream_events_dropped)
      json_object_set_new(d, "node_dropped",
                          json_integer((json_int_t)hb->stream_events_dropped));
    if (d == NULL || json_array_append_new(a, d) != 0) {
      json_decref(a);
      return -1;
    }
  }
  char *text = a ? json_dumps(a, JSON_COMPACT) : NULL;
  json_decref(a);
  if (text == NULL) return -1;
  char ids[24];
  snprintf(ids, sizeof(ids), "%lld", (long long)id);
  const char *p[2] = {ids, text};
  PGresult *r = exec1(s, DB_CTL_STREAM_EVENTS, 2, p);
  free(text);
  if (r == NULL) return -1;
  PQclear(r);
  return 0;
}

static nng_msg *on_heartbeat(ctlsrv_t *s, const req_t *q) {
  uint64_t desired = 0;
  int state; /* 0 live, 1 none, 2 revoked */
  const Cascade__Control__Heartbeat *hb = q->heartbeat;
  size_t n = hb->n_links < LINKS_MAX ? hb->n_links : LINKS_MAX;
  ctlsrv_link_t *links = n ? calloc(n, sizeof(*links)) : NULL;
  int64_t now = db_now_ms();
  if (links == NULL) n = 0;
  for (size_t i = 0; i < n; i++) {
    const Cascade__Control__LinkReport *l = hb->links[i];
    links[i].peer_id = l->peer_id;
    links[i].role = l->role == CASCADE__CONTROL__LINK_ROLE__LINK_PARENT  ? CTLSRV_LINK_PARENT
                    : l->role == CASCADE__CONTROL__LINK_ROLE__LINK_CHILD ? CTLSRV_LINK_CHILD
                                                                         : 0;
    links[i].up = l->up;
    links[i].rtt_us = l->rtt_us;
    links[i].up_since = l->up_since;
    links[i].reported_ms = now;
  }
  ctlsrv_stream_t *streams = NULL;
  size_t ns = 0;
  if (hb->streams_reported) {
    size_t want = hb->n_streams < CTLMSG_STREAMS_MAX ? hb->n_streams : CTLMSG_STREAMS_MAX;
    streams = want ? calloc(want, sizeof(*streams)) : NULL;
    for (size_t i = 0; streams && i < want; i++) {
      const Cascade__Control__StreamReport *r = hb->streams[i];
      ctlsrv_stream_t *o = &streams[ns];
      if ((o->path = strdup(r->path)) == NULL) break;
      o->origin = (int)r->origin;
      o->origin_node = r->origin_node;
      o->since = r->publisher_since;
      for (size_t k = 0; k < r->n_players && o->nplayers < CTLSRV_STREAM_PROTOS; k++) {
        snprintf(o->players[o->nplayers].protocol, sizeof(o->players[0].protocol), "%s",
                 r->players[k]->protocol);
        o->players[o->nplayers++].count = r->players[k]->count;
      }
      ns++;
    }
  }
  pthread_mutex_lock(&s->mu);
  node_sess_t *x = q->session.len == TOKEN_LEN ? sess_by_token(s, q->session.data) : NULL;
  state = x == NULL ? 1 : x->core.revoked ? 2 : 0;
  if (state == 0 && hb->streams_reported) {
    ctlsrv_stream_t *old = x->streams;
    size_t oldn = x->nstreams;
    x->streams = streams;
    x->nstreams = ns;
    x->streams_total = hb->streams_total;
    streams = old;
    ns = oldn;
  }
  int64_t node_id = state == 0 ? x->core.id : 0;
  char node_name[VALID_NAME_MAX + 1] = "";
  if (state == 0) snprintf(node_name, sizeof(node_name), "%s", x->name);
  int64_t static_pid = 0, self = 0;
  if (state == 0 && hb->static_parent_id > 0 && hb->static_parent_id != x->static_tried &&
      hb->static_parent_id != x->core.id) {
    x->static_tried = static_pid = hb->static_parent_id;
    self = x->core.id;
  }
  if (state == 0) {
    desired = sess_heartbeat(&x->core, now, hb->applied_generation);
    x->report_dirty = 1;
    ctlsrv_link_t *old = x->links;
    x->links = links;
    x->nlinks = n;
    links = old;
  }
  pthread_mutex_unlock(&s->mu);
  free(links);
  streams_free(streams, ns);
  if (state == 1) return status_reply(q->id, CASCADE__CONTROL__CODE__NO_SESSION, "no such session");
  if (state == 2) return status_reply(q->id, CASCADE__CONTROL__CODE__REVOKED, "session revoked");
  if (hb->n_stream_events && stream_events(s, hb, node_id, node_name) != 0)
    return status_reply(q->id, CASCADE__CONTROL__CODE__UNAVAILABLE, "database unavailable");
  if (static_pid) {
    /* Only while the node has no parent, only under an approved node, never
     * into a loop (link, DB_CTL_SET_PARENT); once per id the node reports. */
    link_static(s, self, static_pid);
    ctlsrv_wake(s);
  }
  resp_t resp = CASCADE__CONTROL__RESPONSE__INIT;
  Cascade__Control__Status st = CASCADE__CONTROL__STATUS__INIT;
  Cascade__Control__HeartbeatReply hr = CASCADE__CONTROL__HEARTBEAT_REPLY__INIT;
  st.message = "";
  hr.desired_generation = desired;
  resp.id = q->id;
  resp.status = &st;
  resp.body_case = CASCADE__CONTROL__RESPONSE__BODY_HEARTBEAT_REPLY;
  resp.heartbeat_reply = &hr;
  return pack(&resp);
}

/* on_poll answers at once when the node's desired configuration differs
 * from what it knows; else parks |ctx| in the session (returns NULL with
 * *parked set: the caller must open a new context). */
static nng_msg *on_poll(ctlsrv_t *s, const req_t *q, const ctlgate_req_t *in, int *parked) {
  int64_t id = 0;
  uint64_t gen = 0;
  nng_msg *m = NULL;
  pend_t *rel = NULL;
  *parked = 0;
  if (session_of(s, q, &id, &m) != 0) return m;
  m = config_reply(s, q->id, id, &gen, NULL);
  if (m == NULL)
    return status_reply(q->id, CASCADE__CONTROL__CODE__UNAVAILABLE, "database unavailable");
  if (gen != q->poll->known_generation) {
    pthread_mutex_lock(&s->mu);
    node_sess_t *x = sess_by_token(s, q->session.data);
    if (x && !x->core.revoked) rel = take_relays(x);
    pthread_mutex_unlock(&s->mu);
    if (rel) {
      nng_msg_free(m);
      m = config_reply(s, q->id, id, &gen, rel);
      if (m == NULL) m = empty_config(q->id, rel);
      pend_free(rel);
    }
    return m;
  }
  nng_msg_free(m);

  park_t *p = park_new(s, in, q->id);
  if (p == NULL) return status_reply(q->id, CASCADE__CONTROL__CODE__UNAVAILABLE, "out of memory");
  p->core.known = q->poll->known_generation;
  park_t *prev = NULL;
  int gone = 1;
  pthread_mutex_lock(&s->mu);
  node_sess_t *x = sess_by_token(s, q->session.data);
  if (x && !x->core.revoked) {
    gone = 0;
    x->core.desired = gen;
    /* Relay requests waiting: answer now instead of parking. */
    if ((rel = take_relays(x)) == NULL) {
      prev = PARK(sess_park_set(&x->core, &p->core, gen));
      p = NULL;
    }
  }
  pthread_mutex_unlock(&s->mu);
  if (p != NULL) {
    free(p);
    if (gone) return status_reply(q->id, CASCADE__CONTROL__CODE__NO_SESSION, "no such session");
    m = empty_config(q->id, rel);
    pend_free(rel);
    return m;
  }
  if (prev) park_answer(prev, empty_config(prev->core.req_id, NULL));
  *parked = 1;
  return NULL;
}

/* relay_submit queues relay |rl| for node |node|'s next poll (its parked
 * poll is answered at once) and takes a reference; -1 when the node has no
 * session here. */
static int relay_submit(void *arg, int64_t node, struct ctl_relay *rl) {
  ctlsrv_t *s = arg;
  pend_t *rel = NULL;
  sess_park_t *answer = NULL;
  if (s == NULL) return -1;
  relay_ref(rl);
  pthread_mutex_lock(&s->mu);
  node_sess_t *x = sess_by_id(s, node);
  if (x == NULL || sess_relay_push(&x->core, rl, &answer) != 0) {
    pthread_mutex_unlock(&s->mu);
    relay_unref(rl);
    return -1;
  }
  if (answer) rel = take_relays(x);
  pthread_mutex_unlock(&s->mu);
  if (answer) {
    park_answer(PARK(answer), empty_config(answer->req_id, rel));
    pend_free(rel);
  }
  return 0;
}

/* node_held: node |node| has a live session here. */
static int node_held(void *arg, int64_t node) {
  ctlsrv_t *s = arg;
  if (s == NULL) return 0;
  pthread_mutex_lock(&s->mu);
  int on = sess_by_id(s, node) != NULL;
  pthread_mutex_unlock(&s->mu);
  return on;
}

/* on_relay_response hands one message of a relay answer to its relay; the
 * ack goes at once, or later from the HTTP side (backpressure: the context
 * is parked like a poll's). */
static nng_msg *on_relay_response(ctlsrv_t *s, const req_t *q, const ctlgate_req_t *in,
                                  int *parked) {
  int64_t id = 0;
  nng_msg *m = NULL;
  if (session_of(s, q, &id, &m) != 0) return m;
  park_t *p = park_new(s, in, q->id);
  if (p == NULL) return status_reply(q->id, CASCADE__CONTROL__CODE__UNAVAILABLE, "out of memory");
  relay_header_t hv[CTLMSG_RELAY_HEADERS_MAX];
  relay_response_t view;
  ctlmsg_relay_response_view(q->relay_response, &view, hv);
  int rv = relay_deliver(s->ctl->relays, id, &view, p);
  if (rv == 1) {
    *parked = 1;
    return NULL;
  }
  resp_t resp = CASCADE__CONTROL__RESPONSE__INIT;
  Cascade__Control__Status st = CASCADE__CONTROL__STATUS__INIT;
  Cascade__Control__RelayAck ack = CASCADE__CONTROL__RELAY_ACK__INIT;
  st.message = "";
  ack.cancelled = rv < 0;
  resp.id = q->id;
  resp.status = &st;
  resp.body_case = CASCADE__CONTROL__RESPONSE__BODY_RELAY_ACK;
  resp.relay_ack = &ack;
  free(p);
  return pack(&resp);
}

static nng_msg *on_cert(ctlsrv_t *s, const req_t *q) {
  int64_t id = 0, epoch = 0;
  nng_msg *m = NULL;
  char *cert = NULL, err[256], ids[24], na[24];
  time_t not_after = 0;

  if (session_epoch(s, q, &id, &epoch, &m) != 0) return m;
  if (x509_csr_sign(s->ca_cert, s->ca_key, q->cert_request->csr, id, epoch,
                    (unsigned)s->ctl->cfg->control_certlifetime_s, &cert, &not_after, err,
                    sizeof(err)) != 0) {
    log_warn("control", "certificate request of node %lld refused: %s", (long long)id, err);
    return status_reply(q->id, CASCADE__CONTROL__CODE__BAD_REQUEST, err);
  }
  snprintf(ids, sizeof(ids), "%lld", (long long)id);
  snprintf(na, sizeof(na), "%lld", (long long)not_after);
  const char *p[2] = {ids, na};
  PQclear(exec1(s, DB_CTL_CERT, 2, p));
  resp_t resp = CASCADE__CONTROL__RESPONSE__INIT;
  Cascade__Control__Status st = CASCADE__CONTROL__STATUS__INIT;
  Cascade__Control__Certificate c = CASCADE__CONTROL__CERTIFICATE__INIT;
  st.message = "";
  c.cert = cert;
  c.ca = s->ca_cert;
  c.not_after = not_after;
  resp.id = q->id;
  resp.status = &st;
  resp.body_case = CASCADE__CONTROL__RESPONSE__BODY_CERTIFICATE;
  resp.certificate = &c;
  m = pack(&resp);
  free(cert);
  return m;
}

static nng_msg *on_ca(ctlsrv_t *s, const req_t *q) {
  resp_t resp = CASCADE__CONTROL__RESPONSE__INIT;
  Cascade__Control__Status st = CASCADE__CONTROL__STATUS__INIT;
  Cascade__Control__CaCertificate c = CASCADE__CONTROL__CA_CERTIFICATE__INIT;
  st.message = "";
  c.ca = s->ca_cert;
  resp.id = q->id;
  resp.status = &st;
  resp.body_case = CASCADE__CONTROL__RESPONSE__BODY_CA;
  resp.ca = &c;
  return pack(&resp);
}

/* handle answers one request; NULL with *parked when it was parked (its
 * answer comes later through park_answer). */
static nng_msg *handle(ctlsrv_t *s, const ctlgate_req_t *in, int *parked) {
  char why[128];
  const char *ip = in->ip;
  nng_msg *m = NULL;

  *parked = 0;
  atomic_fetch_add(&s->requests, 1);
  req_t *q = ctlmsg_decode_request(in->body, in->len, why, sizeof(why));
  if (q == NULL) {
    atomic_fetch_add(&s->bad_messages, 1);
    int64_t now = db_now_ms();
    pthread_mutex_lock(&s->mu);
    int log = now - s->last_bad_log_ms >= 1000;
    if (log) s->last_bad_log_ms = now;
    pthread_mutex_unlock(&s->mu);
    if (log) log_warn("control", "bad message from %s: %s", ip, why);
    return status_reply(0, CASCADE__CONTROL__CODE__BAD_REQUEST, why);
  }
  pthread_mutex_lock(&s->mu);
  sess_t *live = q->session.len == TOKEN_LEN ? sess_find_token(&s->sessions, q->session.data) : NULL;
  int authed = live != NULL && !live->revoked;
  pthread_mutex_unlock(&s->mu);
  pipe_seen(s, in->conn, authed);
  int limited = auth_limited(&s->fails, ip, NULL);
  switch (q->body_case) {
  case CASCADE__CONTROL__REQUEST__BODY_REGISTER:
    m = limited ? status_reply(q->id, CASCADE__CONTROL__CODE__RATE_LIMITED, "too many failures")
                : on_register(s, q, ip);
    break;
  case CASCADE__CONTROL__REQUEST__BODY_AUTH_START:
    m = limited ? status_reply(q->id, CASCADE__CONTROL__CODE__RATE_LIMITED, "too many failures")
                : on_auth_start(s, q, ip);
    break;
  case CASCADE__CONTROL__REQUEST__BODY_AUTH_FINISH:
    m = limited ? status_reply(q->id, CASCADE__CONTROL__CODE__RATE_LIMITED, "too many failures")
                : on_auth_finish(s, q, ip);
    break;
  case CASCADE__CONTROL__REQUEST__BODY_HEARTBEAT:
    m = on_heartbeat(s, q);
    break;
  case CASCADE__CONTROL__REQUEST__BODY_POLL:
    m = on_poll(s, q, in, parked);
    break;
  case CASCADE__CONTROL__REQUEST__BODY_CERT_REQUEST:
    m = on_cert(s, q);
    break;
  case CASCADE__CONTROL__REQUEST__BODY_CA_REQUEST:
    m = on_ca(s, q);
    break;
  case CASCADE__CONTROL__REQUEST__BODY_RELAY_RESPONSE:
    m = on_relay_response(s, q, in, parked);
    break;
  default:
    m = status_reply(q->id, CASCADE__CONTROL__CODE__BAD_REQUEST, "unknown request");
  }
  ctlmsg_free_request(q);
  return m;
}

static void *worker_main(void *arg) {
  ctlsrv_t *s = arg;
  ctlgate_req_t in;
  int parked;

  while (ctlgate_recv(s->gate, &in) == 0) {
    nng_msg *out = handle(s, &in, &parked);
    free(in.body);
    if (parked) continue; /* the session holds it now */
    if (out == NULL) out = status_reply(0, CASCADE__CONTROL__CODE__UNAVAILABLE, "internal error");
    ctlgate_reply(s->gate, in.conn, in.id, out ? nng_msg_body(out) : NULL,
                  out ? nng_msg_len(out) : 0);
    if (out) nng_msg_free(out);
  }
  return NULL;
}

/* ---- the sweeper ------------------------------------------------------------ */

typedef struct {
  char *buf;
  size_t len, cap;
} sbuf_t;

static void sb_put(sbuf_t *b, const char *str) {
  size_t n = strlen(str);
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 256;
    while (cap < b->len + n + 1) cap *= 2;
    char *nb = realloc(b->buf, cap);
    if (nb == NULL) return;
    b->buf = nb;
    b->cap = cap;
  }
  memcpy(b->buf + b->len, str, n + 1);
  b->len += n;
}

/* sb_array writes a PostgreSQL array literal of integers: "{1,2,3}". */
static void sb_array(sbuf_t *b, const int64_t *v, size_t n) {
  char t[32];
  b->len = 0;
  sb_put(b, "{");
  for (size_t i = 0; i < n; i++) {
    snprintf(t, sizeof(t), i ? ",%lld" : "%lld", (long long)v[i]);
    sb_put(b, t);
  }
  sb_put(b, "}");
}

static void pipes_free(ctlsrv_t *s) { authwait_clear(&s->pipes); }

/* is_stopping: ctlsrv_stop has begun (the sweeper skips what is left of a
 * pass: each statement may wait database.timeout). */
static int is_stopping(ctlsrv_t *s) {
  pthread_mutex_lock(&s->mu);
  int st = s->stopping;
  pthread_mutex_unlock(&s->mu);
  return st;
}

/* renew renews this replica's lease and those of its sessions |ids| in
 * one statement. A claimed session whose row another replica now holds
 * (its agent authenticated there) is revoked here: the agent left. */
static void renew(ctlsrv_t *s, const int64_t *ids, size_t n, sbuf_t *a, int64_t now) {
  char lease[24], addr[sizeof(s->address)];
  snprintf(lease, sizeof(lease), "%lld", s->ctl->cfg->control_sessionlease_ms);
  pthread_mutex_lock(&s->mu);
  snprintf(addr, sizeof(addr), "%s", s->address);
  pthread_mutex_unlock(&s->mu);
  sb_array(a, ids, n);
  const char *p[4] = {s->replica, addr, lease, a->buf ? a->buf : "{}"};
  PGresult *r = exec1(s, DB_REPLICA_RENEW, 4, p);
  if (r == NULL) return; /* the database cannot say: keep everything */
  int got = PQntuples(r);
  int64_t *held = malloc((size_t)(got + 1) * sizeof(int64_t));
  if (held == NULL) {
    PQclear(r);
    return;
  }
  for (int i = 0; i < got; i++) held[i] = strtoll(PQgetvalue(r, i, 0), NULL, 10);
  PQclear(r);
  for (size_t k = 0; k < n; k++) {
    int mine = 0;
    for (int i = 0; i < got && !mine; i++) mine = held[i] == ids[k];
    sess_park_t *taken = NULL;
    pend_t *dropped = NULL;
    pthread_mutex_lock(&s->mu);
    sess_t *x = sess_find_id(&s->sessions, ids[k]);
    int v = x ? sess_lease_apply(x, mine, now, &taken, &dropped) : LEASE_KEEP;
    pthread_mutex_unlock(&s->mu);
    park_t *answer = PARK(taken);
    pend_free(dropped);
    if (v != LEASE_LOST) continue;
    atomic_fetch_add(&s->sessions_taken, 1);
    log_info("control", "session of node %lld ended: another controller holds it now",
             (long long)ids[k]);
    if (answer)
      park_answer(answer, status_reply(answer->core.req_id, CASCADE__CONTROL__CODE__REVOKED,
                                       "session taken over by another controller"));
    relay_node_gone(s->ctl->relays, ids[k], "its session moved to another controller");
  }
  free(held);
}

/* What one pass of the sweeper collected under s->mu, for the statements
 * and answers made after it is released. */
typedef struct sweep_pass {
  int64_t now;
  int64_t *hb_id, *hb_gen;   /* heartbeats to write: node, applied generation */
  int64_t *off_id;           /* sessions that went silent: nodes now offline */
  int64_t *all_id;           /* every live session's node */
  park_t **timed_out;        /* polls that waited control.polltimeout */
  size_t nhb, noff, nall, nto;
  sess_t *dead;              /* unlinked sessions to end, by tok_next */
  json_t *reports;           /* changed reports by node id, for DB_SESSION_REPORTS */
  sbuf_t a, g;               /* scratch array literals */
} sweep_pass_t;

static int sweep_pass_init(sweep_pass_t *w, size_t cap, int64_t now) {
  memset(w, 0, sizeof(*w));
  w->now = now;
  w->hb_id = malloc(cap * sizeof(int64_t));
  w->hb_gen = malloc(cap * sizeof(int64_t));
  w->off_id = malloc(cap * sizeof(int64_t));
  w->all_id = malloc(cap * sizeof(int64_t));
  w->timed_out = malloc(cap * sizeof(park_t *));
  return w->hb_id && w->hb_gen && w->off_id && w->all_id && w->timed_out ? 0 : -1;
}

static void sweep_pass_free(sweep_pass_t *w) {
  free(w->hb_id);
  free(w->hb_gen);
  free(w->off_id);
  free(w->all_id);
  free(w->timed_out);
  json_decref(w->reports);
  free(w->a.buf);
  free(w->g.buf);
}

/* sessions_scan goes through every session once: changed reports, silent
 * or long-revoked sessions (unlinked into w->dead), heartbeats to write,
 * polls that timed out, the live sessions' ids. Under s->mu. */
typedef struct {
  ctlsrv_t *s;
  sweep_pass_t *w;
} scan_t;

static void scan_one(sess_t *x, void *arg) {
  scan_t *sc = arg;
  sweep_pass_t *w = sc->w;
  const ctl_config_t *cfg = sc->s->ctl->cfg;
  node_sess_t *ns = NODE_SESS(x);
  if (ns->report_dirty && !x->revoked && w->reports) {
    char key[24];
    snprintf(key, sizeof(key), "%lld", (long long)x->id);
    json_object_set_new(w->reports, key,
                        report_json(ns->links, ns->nlinks, ns->streams, ns->nstreams,
                                    ns->streams_total));
    ns->report_dirty = 0;
  }
  int expired = sess_expired(x, w->now, 3 * cfg->control_heartbeat_ms, REVOKED_TTL_MS);
  if (expired) {
    if (expired == 2) w->off_id[w->noff++] = x->id;
    sess_remove(&sc->s->sessions, x);
    x->tok_next = w->dead;
    w->dead = x;
    return;
  }
  uint64_t applied;
  if (sess_take_heartbeat(x, &applied)) {
    w->hb_id[w->nhb] = x->id;
    w->hb_gen[w->nhb++] = (int64_t)applied;
  }
  sess_park_t *p = sess_poll_timeout(x, w->now, cfg->control_polltimeout_ms);
  if (p) w->timed_out[w->nto++] = PARK(p);
  if (!x->revoked) w->all_id[w->nall++] = x->id;
}

static void sessions_scan(ctlsrv_t *s, sweep_pass_t *w) {
  scan_t sc = {s, w};
  w->reports = json_object();
  sess_foreach(&s->sessions, scan_one, &sc);
}

/* node_sess_free frees session |x| and what it holds; its parked request
 * is given up unanswered. */
static void node_sess_free(sess_t *x) {
  park_t *p = PARK(x->park);
  if (p) park_answer(p, NULL);
  pend_free(x->relays);
  streams_free(NODE_SESS(x)->streams, NODE_SESS(x)->nstreams);
  free(NODE_SESS(x)->links);
  free(x);
}

static void node_sess_free_cb(sess_t *x, void *arg) { node_sess_free(x); }

/* sessions_end ends the sessions sessions_scan unlinked: their parked poll
 * is told, a silent node's relays fail, and they are freed. */
static void sessions_end(ctlsrv_t *s, sess_t *dead) {
  while (dead) {
    sess_t *x = dead;
    dead = x->tok_next;
    park_t *p = PARK(sess_park_take(x));
    if (p) park_answer(p, status_reply(p->core.req_id, CASCADE__CONTROL__CODE__NO_SESSION,
                                       "session expired"));
    if (!x->revoked) {
      log_info("control", "node offline id=%lld name=%s (no heartbeat)", (long long)x->id,
               NODE_SESS(x)->name);
      relay_node_gone(s->ctl->relays, x->id, "offline (no heartbeat)");
    }
    node_sess_free(x);
  }
}

/* reports_flush writes the changed reports to the sessions table. */
static void reports_flush(ctlsrv_t *s, json_t *reports) {
  if (reports == NULL || json_object_size(reports) == 0) return;
  char *text = json_dumps(reports, JSON_COMPACT);
  const char *p[2] = {text, s->replica};
  if (text) PQclear(exec1(s, DB_SESSION_REPORTS, 2, p));
  free(text);
}

/* heartbeats_flush writes the heartbeats of the pass in one statement, and
 * marks the silent nodes offline in another. */
static void heartbeats_flush(ctlsrv_t *s, sweep_pass_t *w) {
  if (w->nhb) {
    sb_array(&w->a, w->hb_id, w->nhb);
    sb_array(&w->g, w->hb_gen, w->nhb);
    const char *p[2] = {w->a.buf, w->g.buf};
    PQclear(exec1(s, DB_CTL_HEARTBEATS, 2, p));
  }
  if (w->noff) {
    sb_array(&w->a, w->off_id, w->noff);
    const char *p[3] = {w->a.buf, "heartbeat timeout", s->replica};
    PQclear(exec1(s, DB_CTL_OFFLINE, 3, p));
  }
}

/* reconcile_one applies node |id|'s row (|gen| -1: the node is gone; its
 * secret |epoch|) to its session: revoked when the node was deleted or its
 * secret changed, else its parked poll answered when the generation moved.
 * 1 when the session was revoked for a changed secret. */
static int reconcile_one(ctlsrv_t *s, int64_t id, int64_t gen, int64_t epoch, int64_t now) {
  sess_park_t *taken = NULL;
  pend_t *dropped = NULL;
  uint64_t req_id = 0;
  pthread_mutex_lock(&s->mu);
  sess_t *x = sess_find_id(&s->sessions, id);
  sess_reconcile_t v = x ? sess_reconcile(x, gen, epoch, now, &taken, &dropped) : SESS_KEEP;
  pthread_mutex_unlock(&s->mu);
  park_t *answer = PARK(taken);
  int revoke = v == SESS_DELETED || v == SESS_SECRET, secret = v == SESS_SECRET;
  pend_free(dropped);
  if (answer) req_id = answer->core.req_id;
  if (revoke) {
    log_info("control", "session of node %lld revoked (%s)", (long long)id,
             gen < 0 ? "node deleted" : "secret changed");
    if (answer)
      park_answer(answer, status_reply(req_id, CASCADE__CONTROL__CODE__REVOKED,
                                       gen < 0 ? "node deleted" : "secret changed"));
    relay_node_gone(s->ctl->relays, id, gen < 0 ? "node deleted" : "secret changed");
  } else if (answer) {
    uint64_t got = 0;
    nng_msg *m = config_reply(s, req_id, id, &got, NULL);
    park_answer(answer, m ? m : empty_config(req_id, NULL));
  }
  return secret;
}

typedef struct {
  int64_t id, gen, epoch;
} reg_row_t;

static int reg_row_cmp(const void *a, const void *b) {
  int64_t x = ((const reg_row_t *)a)->id, y = ((const reg_row_t *)b)->id;
  return (x > y) - (x < y);
}

/* reconcile compares every live session with the registry (generations,
 * deletions, secret epochs) in one statement. */
static void reconcile(ctlsrv_t *s, sweep_pass_t *w) {
  sb_array(&w->a, w->all_id, w->nall);
  const char *p[1] = {w->a.buf};
  PGresult *r = exec1(s, DB_CTL_GENERATIONS, 1, p);
  if (r == NULL) return;
  /* Rows by id (sorted: a search per session, not a scan of every row);
   * a session whose node has no row was deleted. */
  int n = PQntuples(r);
  reg_row_t *rows = malloc((size_t)(n + 1) * sizeof(*rows));
  int64_t *revoked_ids = malloc((w->nall + 1) * sizeof(int64_t));
  size_t nrev = 0;
  if (rows && revoked_ids) {
    for (int i = 0; i < n; i++) {
      rows[i].id = strtoll(PQgetvalue(r, i, 0), NULL, 10);
      rows[i].gen = strtoll(PQgetvalue(r, i, 1), NULL, 10);
      rows[i].epoch = strtoll(PQgetvalue(r, i, 2), NULL, 10);
    }
    qsort(rows, (size_t)n, sizeof(*rows), reg_row_cmp);
    for (size_t k = 0; k < w->nall; k++) {
      reg_row_t key = {w->all_id[k], -1, -1};
      const reg_row_t *row = bsearch(&key, rows, (size_t)n, sizeof(*rows), reg_row_cmp);
      int64_t gen = row ? row->gen : -1, epoch = row ? row->epoch : -1;
      if (reconcile_one(s, key.id, gen, epoch, w->now)) revoked_ids[nrev++] = key.id;
    }
    if (nrev) {
      sb_array(&w->a, revoked_ids, nrev);
      const char *p2[3] = {w->a.buf, "secret changed", s->replica};
      PQclear(exec1(s, DB_CTL_OFFLINE, 3, p2));
    }
  }
  free(rows);
  free(revoked_ids);
  PQclear(r);
}

/* lease_sweep marks offline the nodes whose session lease ran out with no
 * replica renewing it (any replica may do it; at most every LEASE_SWEEP_MS). */
static void lease_sweep(ctlsrv_t *s) {
  char lease[24];
  snprintf(lease, sizeof(lease), "%lld", s->ctl->cfg->control_sessionlease_ms);
  const char *p[1] = {lease};
  PGresult *r = exec1(s, DB_CTL_SWEEP, 1, p);
  if (r != NULL && PQntuples(r) > 0)
    log_info("control", "%d node(s) offline: their session lease ran out with no controller "
                        "holding it", PQntuples(r));
  PQclear(r);
}

/* sweep is one pass of the sweeper: each job above in turn; |reconcile|:
 * compare the sessions with the registry too. */
static void sweep(ctlsrv_t *s, int reconcile_now) {
  const ctl_config_t *cfg = s->ctl->cfg;
  sweep_pass_t w;
  pipes_expire(s);
  int64_t now = db_now_ms();

  pthread_mutex_lock(&s->mu);
  if (sweep_pass_init(&w, sess_count(&s->sessions) + 1, now) != 0) {
    pthread_mutex_unlock(&s->mu);
    sweep_pass_free(&w);
    return;
  }
  exch_entry_t *dead_exch = exch_expire(&s->exch, now);
  sessions_scan(s, &w);
  pthread_mutex_unlock(&s->mu);

  exchanges_free(dead_exch);
  sessions_end(s, w.dead);
  for (size_t i = 0; i < w.nto; i++)
    park_answer(w.timed_out[i], empty_config(w.timed_out[i]->core.req_id, NULL));
  reports_flush(s, w.reports);
  heartbeats_flush(s, &w);
  if (reconcile_now && w.nall && !is_stopping(s)) reconcile(s, &w);
  pthread_mutex_lock(&s->mu);
  int address_new = s->address_new;
  s->address_new = 0;
  pthread_mutex_unlock(&s->mu);
  if ((address_new || lease_renew_due(now, s->last_renew_ms, cfg->control_sessionlease_ms)) &&
      !is_stopping(s)) {
    s->last_renew_ms = now;
    renew(s, w.all_id, w.nall, &w.a, now);
  }
  if (now - s->last_lease_sweep_ms >= LEASE_SWEEP_MS && !is_stopping(s)) {
    s->last_lease_sweep_ms = now;
    lease_sweep(s);
  }
  sweep_pass_free(&w);
}

static void *sweeper_main(void *arg) {
  ctlsrv_t *s = arg;
  int64_t last_reconcile = 0;
  int owed = 0; /* woken since the last reconcile */
  pthread_mutex_lock(&s->mu);
  while (!s->stopping) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (owed) {
      /* The reconcile a wake-up asked for, once RECONCILE_WAKE_MS passed. */
      int64_t left = last_reconcile + RECONCILE_WAKE_MS - db_now_ms();
      if (left < 1) left = 1;
      if (left > 1000) left = 1000;
      ts.tv_nsec += (long)left * 1000000L;
      if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec += 1;
        ts.tv_nsec -= 1000000000L;
      }
    } else {
      ts.tv_sec += 1;
    }
    if (!s->wake) pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    if (s->stopping) break;
    if (s->wake) owed = 1;
    s->wake = 0;
    pthread_mutex_unlock(&s->mu);
    int64_t now = db_now_ms();
    int reconcile_now = (owed && now - last_reconcile >= RECONCILE_WAKE_MS) ||
                        now - last_reconcile >= RECONCILE_MS;
    if (reconcile_now) {
      last_reconcile = now;
      owed = 0;
    }
    sweep(s, reconcile_now);
    pthread_mutex_lock(&s->mu);
  }
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

/* ---- life cycle ---------------------------------------------------------------- */

void ctlsrv_wake(ctlsrv_t *s) {
  if (s == NULL) return;
  pthread_mutex_lock(&s->mu);
  s->wake = 1;
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

/* ---- wake-ups from other replicas (LISTEN cascade_wake) --------------------- */

/* listen_wait waits for |pg|'s socket until |deadline| in short slices.
 * 1 ready, 0 timeout, -1 error or stopping. */
static int listen_wait(ctlsrv_t *s, PGconn *pg, int for_write, int64_t deadline) {
  struct pollfd pfd = {.fd = PQsocket(pg), .events = for_write ? POLLOUT : POLLIN};
  if (pfd.fd < 0) return -1;
  for (;;) {
    if (is_stopping(s)) return -1;
    int64_t left = deadline - db_now_ms();
    if (left <= 0) return 0;
    int r = poll(&pfd, 1, (int)(left < LISTEN_SLICE_MS ? left : LISTEN_SLICE_MS));
    if (r > 0) return 1;
    if (r < 0 && errno != EINTR) return -1;
  }
}

/* listen_open connects a connection of its own (not the pool's: it stays
 * busy listening) and runs LISTEN, every wait bounded. */
static PGconn *listen_open(ctlsrv_t *s, char *why, size_t len) {
  int64_t deadline = db_now_ms() + s->ctl->cfg->db_timeout_ms;
  PostgresPollingStatusType st = PGRES_POLLING_WRITING;
  /* TCP keepalives: a connection that only listens must notice a silent
   * loss of the server (a restart closes it; a vanished host does not). The
   * DSN is expanded first, so these override it. */
  static const char *const keys[] = {"dbname",           "keepalives", "keepalives_idle",
                                     "keepalives_interval", "keepalives_count", NULL};
  const char *const vals[] = {s->ctl->db.dsn, "1", "10", "5", "3", NULL};
  PGconn *pg = PQconnectStartParams(keys, vals, 1);
  PGresult *r;
  int f, ok = 0;
  if (pg == NULL) {
    snprintf(why, len, "out of memory");
    return NULL;
  }
  if (PQstatus(pg) == CONNECTION_BAD) goto fail;
  while (st != PGRES_POLLING_OK) {
    if (st == PGRES_POLLING_FAILED) goto fail;
    if (listen_wait(s, pg, st == PGRES_POLLING_WRITING, deadline) <= 0) goto fail;
    st = PQconnectPoll(pg);
  }
  if (PQsetnonblocking(pg, 1) != 0 || !PQsendQuery(pg, "LISTEN " WAKE_CHANNEL)) goto fail;
  while ((f = PQflush(pg)) == 1)
    if (listen_wait(s, pg, 1, deadline) <= 0) goto fail;
  if (f < 0) goto fail;
  for (;;) {
    while (PQisBusy(pg))
      if (listen_wait(s, pg, 0, deadline) <= 0 || !PQconsumeInput(pg)) goto fail;
    if ((r = PQgetResult(pg)) == NULL) break;
    ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
  }
  if (ok) return pg;
fail:
  {
    char msg[256];
    snprintf(msg, sizeof(msg), "%s", PQerrorMessage(pg));
    for (size_t n = strlen(msg); n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '); n--)
      msg[n - 1] = '\0';
    snprintf(why, len, "%s", msg[0] ? msg : "no answer in time");
  }
  PQfinish(pg);
  return NULL;
}

/* on_wake_payload wakes the sweeper when a notified node has a session
 * here (or for "all", or a payload it cannot read). */
static void on_wake_payload(ctlsrv_t *s, const char *payload) {
  int64_t ids[WAKE_IDS_MAX];
  size_t n = 0;
  int rv = wake_parse(payload, ids, WAKE_IDS_MAX, &n);
  int ours = rv != 0;
  if (rv < 0) {
    char q[80];
    log_warn("control", "unreadable %s payload %s: waking every session", WAKE_CHANNEL,
             log_quote(payload, q, sizeof(q)));
  }
  pthread_mutex_lock(&s->mu);
  for (size_t i = 0; i < n && !ours; i++) ours = sess_by_id(s, ids[i]) != NULL;
  pthread_mutex_unlock(&s->mu);
  atomic_fetch_add(&s->wakeups_heard, 1);
  if (ours) ctlsrv_wake(s);
}

static void *listener_main(void *arg) {
  ctlsrv_t *s = arg;
  PGconn *pg = NULL;
  int64_t retry_at = 0;
  int down = 0;
  char why[256];
  while (!is_stopping(s)) {
    if (pg == NULL) {
      int64_t now = db_now_ms();
      if (now < retry_at) {
        struct timespec ts = {0, 100 * 1000000};
        nanosleep(&ts, NULL);
        continue;
      }
      if ((pg = listen_open(s, why, sizeof(why))) == NULL) {
        retry_at = db_now_ms() + LISTEN_RETRY_MS;
        if (!down++ && !is_stopping(s)) {
          char q[300];
          log_warn("control", "cannot listen for wake-ups from other controllers: %s "
                              "(retrying every %d ms)",
                   log_quote(why, q, sizeof(q)), LISTEN_RETRY_MS);
        }
        continue;
      }
      if (down) {
        log_info("control", "listening for wake-ups from other controllers again");
        atomic_fetch_add(&s->listen_reconnects, 1);
      }
      down = 0;
      /* What was notified while nobody listened is lost: reconcile now. */
      ctlsrv_wake(s);
    }
    struct pollfd pfd = {.fd = PQsocket(pg), .events = POLLIN};
    int r = pfd.fd < 0 ? -1 : poll(&pfd, 1, LISTEN_SLICE_MS);
    if (r < 0 && errno == EINTR) continue;
    if (r != 0 && (r < 0 || !PQconsumeInput(pg) || PQstatus(pg) != CONNECTION_OK)) {
      char q[300];
      snprintf(why, sizeof(why), "%s", PQerrorMessage(pg));
      why[strcspn(why, "\n")] = '\0';
      log_warn("control", "lost the connection that listens for wake-ups: %s",
               log_quote(why, q, sizeof(q)));
      PQfinish(pg);
      pg = NULL;
      down = 1;
      retry_at = db_now_ms() + LISTEN_SLICE_MS;
      continue;
    }
    PGnotify *nt;
    while ((nt = PQnotifies(pg)) != NULL) {
      on_wake_payload(s, nt->extra);
      PQfreemem(nt);
    }
  }
  PQfinish(pg);
  return NULL;
}

void ctlsrv_set_address(ctlsrv_t *s, const char *address) {
  if (s == NULL) return;
  pthread_mutex_lock(&s->mu);
  snprintf(s->address, sizeof(s->address), "%s", address);
  /* Written at once, not at the next renewal (up to a third of the lease
   * away): until then other replicas have no address to forward this one's
   * nodes' relay requests to. */
  s->address_new = 1;
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

const char *ctlsrv_replica(ctlsrv_t *s) { return s ? s->replica : ""; }

static const char *replica_of(void *arg) { return ctlsrv_replica(arg); }

relay_sessions_t ctlsrv_relay_sessions(ctlsrv_t *s) {
  relay_sessions_t r = {s, relay_submit, node_held, replica_of, reply_ack};
  return r;
}

size_t ctlsrv_sessions(ctlsrv_t *s) {
  if (s == NULL) return 0;
  pthread_mutex_lock(&s->mu);
  size_t n = sess_count(&s->sessions);
  pthread_mutex_unlock(&s->mu);
  return n;
}

void ctlsrv_metrics(ctlsrv_t *s, FILE *out) {
  if (s == NULL) return;
  fprintf(out,
          "# HELP cascade_control_sessions Agents with a live control session.\n"
          "# TYPE cascade_control_sessions gauge\ncascade_control_sessions %zu\n"
          "# HELP cascade_control_requests_total Control channel requests.\n"
          "# TYPE cascade_control_requests_total counter\ncascade_control_requests_total %lu\n"
          "# HELP cascade_control_bad_messages_total Control messages refused by the codec.\n"
          "# TYPE cascade_control_bad_messages_total counter\n"
          "cascade_control_bad_messages_total %lu\n"
          "# HELP cascade_control_auth_failures_total Refused agent authentications.\n"
          "# TYPE cascade_control_auth_failures_total counter\n"
          "cascade_control_auth_failures_total %lu\n"
          "# HELP cascade_control_registrations_total Nodes that registered themselves.\n"
          "# TYPE cascade_control_registrations_total counter\n"
          "cascade_control_registrations_total %lu\n"
          "# HELP cascade_control_registrations_refused_total Registrations over the rate limits.\n"
          "# TYPE cascade_control_registrations_refused_total counter\n"
          "cascade_control_registrations_refused_total %lu\n"
          "# HELP cascade_control_pending_refused_total Authentications of nodes awaiting approval.\n"
          "# TYPE cascade_control_pending_refused_total counter\n"
          "cascade_control_pending_refused_total %lu\n"
          "# HELP cascade_control_events_dropped_total Audit events over the unauthenticated limit.\n"
          "# TYPE cascade_control_events_dropped_total counter\n"
          "cascade_control_events_dropped_total %lu\n"
          "# HELP cascade_control_auth_timeouts_total Connections closed: no node authenticated "
          "within control.authtimeout.\n"
          "# TYPE cascade_control_auth_timeouts_total counter\n"
          "cascade_control_auth_timeouts_total %lu\n"
          "# HELP cascade_replica_wakeups_heard_total Wake-ups (NOTIFY cascade_wake) heard.\n"
          "# TYPE cascade_replica_wakeups_heard_total counter\n"
          "cascade_replica_wakeups_heard_total %lu\n"
          "# HELP cascade_replica_listen_reconnects_total LISTEN connections made again after "
          "a loss.\n"
          "# TYPE cascade_replica_listen_reconnects_total counter\n"
          "cascade_replica_listen_reconnects_total %lu\n"
          "# HELP cascade_replica_sessions_taken_total Sessions here another replica took over.\n"
          "# TYPE cascade_replica_sessions_taken_total counter\n"
          "cascade_replica_sessions_taken_total %lu\n",
          ctlsrv_sessions(s), atomic_load(&s->requests), atomic_load(&s->bad_messages),
          atomic_load(&s->auth_failures), atomic_load(&s->registrations),
          atomic_load(&s->registrations_refused), atomic_load(&s->pending_refused),
          atomic_load(&s->events_dropped), atomic_load(&s->auth_timeouts),
          atomic_load(&s->wakeups_heard), atomic_load(&s->listen_reconnects),
          atomic_load(&s->sessions_taken));
}

static char *read_pem(const char *path, char *err, size_t errlen) {
  return x509_read_file(path, 64 * 1024, err, errlen);
}

/* check_deployment_ca records the CA fingerprint on the deployment's first
 * start, or checks that this replica's CA (|path|) is the recorded one. */
static int check_deployment_ca(ctlsrv_t *s, const char *path, const char *fpr, char *err,
                               size_t errlen) {
  const char *p[1] = {fpr};
  for (int attempt = 0; attempt < 3; attempt++) {
    PGresult *r = exec1(s, DB_DEPLOYMENT_CA, 1, p);
    if (r == NULL) {
      snprintf(err, errlen, "control CA: cannot read the deployment's CA fingerprint "
                            "(database unavailable)");
      return -1;
    }
    if (PQntuples(r) == 0) { /* another replica's first start is committing */
      PQclear(r);
      continue;
    }
    int same = strcasecmp(PQgetvalue(r, 0, 0), fpr) == 0;
    if (!same)
      snprintf(err, errlen,
               "control CA: this controller's CA %s has fingerprint SHA256 %s, but the "
               "deployment's CA (recorded in the database by its first controller) has SHA256 "
               "%s: give every replica the same CA files (cascade-controller --init-ca DIR; "
               "control.tls.ca or control.datadir)",
               path, fpr, PQgetvalue(r, 0, 0));
    PQclear(r);
    return same ? 0 : -1;
  }
  snprintf(err, errlen, "control CA: the deployment's CA fingerprint could not be read");
  return -1;
}

ctlsrv_t *ctlsrv_start(ctl_t *ctl, char *err, size_t errlen) {
  const ctl_config_t *c = ctl->cfg;
  char path[4200], fpr[X509_FPR_LEN];
  char *cert = NULL, *key = NULL;
  int tls = strncmp(c->control_listenaddr, "tls+tcp://", 10) == 0;

  ctlsrv_t *s = calloc(1, sizeof(*s));
  if (s == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  s->ctl = ctl;
  pthread_mutex_init(&s->mu, NULL);
  {
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
  }
  auth_init(&s->fails, NULL);
  reglimit_init(&s->reg, c->register_rate_addr, c->register_rate, MINUTE_MS);
  reglimit_init(&s->events_rl, EVENTS_RL_PER_MIN, EVENTS_RL_PER_MIN, MINUTE_MS);
  if (c->jointoken && c->jointoken[0]) {
    if (auth_hash(c->jointoken, strlen(c->jointoken), s->join_hash) != 0) {
      snprintf(err, errlen, "join token: hash failed");
      goto fail;
    }
    s->has_join = 1;
  } else if (c->autoregister) {
    log_info("control", "no cascadeserver.jointoken: nodes that register themselves wait for "
                        "an operator's approval");
  }
  gnutls_rnd(GNUTLS_RND_KEY, s->fake_key, sizeof(s->fake_key));

  /* The CA that signs node certificates: the deployment's (control.tls.ca,
   * read only), or control.datadir's, made on first start. */
  if (c->control_tls_ca[0]) {
    snprintf(path, sizeof(path), "%s", c->control_tls_ca);
  } else {
    if (x509_ca_ensure(c->control_datadir, err, errlen) != 0) goto fail;
    snprintf(path, sizeof(path), "%s/ca.crt", c->control_datadir);
  }
  if ((s->ca_cert = read_pem(path, err, errlen)) == NULL) goto fail;
  char ca_path[sizeof(path)];
  snprintf(ca_path, sizeof(ca_path), "%s", path);
  size_t pl = strlen(path);
  if (pl > 4 && strcmp(path + pl - 4, ".crt") == 0) memcpy(path + pl - 4, ".key", 4);
  else snprintf(path + pl, sizeof(path) - pl, ".key");
  if ((s->ca_key = read_pem(path, err, errlen)) == NULL) goto fail;
  x509_fingerprint(s->ca_cert, fpr);
  ctl->has_fwd_key = fwdsig_key(s->ca_key, ctl->fwd_key) == 0;
  ctl->has_stream_kek = sa_kek(s->ca_key, ctl->stream_kek) == 0;
  if (check_deployment_ca(s, ca_path, fpr, err, errlen) != 0) goto fail;
  {
    uint8_t rid[REPLICA_ID_LEN / 2];
    static const char hex[] = "0123456789abcdef";
    gnutls_rnd(GNUTLS_RND_NONCE, rid, sizeof(rid));
    for (size_t i = 0; i < sizeof(rid); i++) {
      s->replica[2 * i] = hex[rid[i] >> 4];
      s->replica[2 * i + 1] = hex[rid[i] & 15];
    }
    s->replica[REPLICA_ID_LEN] = '\0';
  }

  if (tls) {
    if (c->control_tls_cert[0]) {
      cert = read_pem(c->control_tls_cert, err, errlen);
      key = cert ? read_pem(c->control_tls_key, err, errlen) : NULL;
    } else if (c->control_tls_ca[0]) {
      /* Issued by the deployment's CA at each start, never written: every
       * replica's certificate chains to the CA agents trust or pin. */
      char why[256];
      if (x509_server_issue(s->ca_cert, s->ca_key, &cert, &key, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "control TLS: server certificate from control.tls.ca: %s", why);
        goto fail;
      }
    } else {
      snprintf(path, sizeof(path), "%s/server.crt", c->control_datadir);
      cert = read_pem(path, err, errlen);
      snprintf(path, sizeof(path), "%s/server.key", c->control_datadir);
      key = cert ? read_pem(path, err, errlen) : NULL;
    }
    if (key == NULL) goto fail;
  } else {
    log_warn("control", "control channel WITHOUT TLS on %s: for tests only",
             c->control_listenaddr);
  }

  /* The gate takes control.listenaddr, ends TLS and speaks the SP wire;
   * the workers answer what it reads. A replica that starts changes no
   * node's status: sessions live in the database with their leases
   * (another replica may hold them). Session tickets under a key from the
   * CA's: what one replica issues, every replica and every restart
   * accepts. */
  uint8_t ticket_key[CTLGATE_TLS_TICKET_KEY_LEN];
  int has_ticket_key = tls && ctlgate_tls_ticket_key(s->ca_key, ticket_key) == 0;
  ctlgate_config_t gc = {c->control_listenaddr, c->control_handshake_ms,
                         (size_t)c->control_maxconnperaddr, (size_t)c->control_maxconns,
                         (size_t)c->http_maxconns, (size_t)c->db_poolsize, cert, key,
                         has_ticket_key ? ticket_key : NULL};
  s->gate = ctlgate_new(&gc, err, errlen);
  gnutls_memset(ticket_key, 0, sizeof(ticket_key));
  if (s->gate == NULL) goto fail;
  ctl->ctlgate = s->gate;
  if (ctlgate_start(s->gate, pipe_cb, s, err, errlen) != 0) goto fail;
  s->nworkers = (int)c->control_workers;
  s->workers = calloc((size_t)s->nworkers, sizeof(pthread_t));
  if (s->workers == NULL) goto fail;
  for (int i = 0; i < s->nworkers; i++) pthread_create(&s->workers[i], NULL, worker_main, s);
  pthread_create(&s->sweeper, NULL, sweeper_main, s);
  s->has_listener = pthread_create(&s->waker, NULL, listener_main, s) == 0;
  log_info("control", "agents connect to %s; CA %s fingerprint SHA256 %s; replica %s",
           c->control_listenaddr, ca_path, fpr, s->replica);
  free(cert);
  if (key) {
    gnutls_memset(key, 0, strlen(key));
    free(key);
  }
  return s;

fail:
  free(cert);
  if (key) {
    gnutls_memset(key, 0, strlen(key));
    free(key);
  }
  if (s->workers == NULL) {
    ctlgate_free(s->gate);
    ctl->ctlgate = NULL;
    pipes_free(s);
    free(s->ca_cert);
    if (s->ca_key) free(s->ca_key);
    auth_free(&s->fails);
    reglimit_free(&s->reg);
    reglimit_free(&s->events_rl);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
    return NULL;
  }
  ctlsrv_stop(s);
  return NULL;
}

void ctlsrv_stop(ctlsrv_t *s) {
  if (s == NULL) return;
  pthread_mutex_lock(&s->mu);
  s->stopping = 1;
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
  pthread_join(s->sweeper, NULL);
  if (s->has_listener) pthread_join(s->waker, NULL); /* its waits are LISTEN_SLICE_MS */
  {
    /* Other replicas stop sending this one relays; the sessions keep their
     * leases while the agents move. */
    const char *p[1] = {s->replica};
    PQclear(exec1(s, DB_REPLICA_GONE, 1, p));
  }
  /* Every connection closes and the workers stop after the request they
   * are answering (bounded by database.timeout). The gate itself lives
   * until main frees it: the API relay may still give up held-back acks. */
  ctlgate_stop(s->gate);
  for (int i = 0; i < s->nworkers; i++) pthread_join(s->workers[i], NULL);
  pipes_free(s);
  sess_foreach(&s->sessions, node_sess_free_cb, NULL);
  exchanges_free(exch_drain(&s->exch));
  free(s->workers);
  free(s->ca_cert);
  if (s->ca_key) {
    gnutls_memset(s->ca_key, 0, strlen(s->ca_key));
    free(s->ca_key);
  }
  auth_free(&s->fails);
  reglimit_free(&s->reg);
  reglimit_free(&s->events_rl);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  free(s);
}
