/* The control client: see ctlc.h and docs/protocol.md. */
#define _GNU_SOURCE
#include "ctlc.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent_backoff.h"
#include "b64.h"
#include "ctl_urls.h"
#include "agentmsg.h"
#include "ctltls.h"
#include "log.h"
#include "state.h"
#include "x509.h"

#ifndef CASCADE_VERSION
#define CASCADE_VERSION "0"
#endif

#define MOD "ctlc"
#define RPC_TIMEOUT_MS AGENT_ANSWER_CAP_MS
#define POLL_TIMEOUT_MS 40000
#define CERT_RETRY_S 30
#define LOG_REPEAT_S 60.0

enum { OP_POLL = 1, OP_RPC };
#define RESOLVE_EVERY_S 30.0  /* names in controller.url: resolved again at most this often */

/* What a resolver thread hands the loop. */
struct ctlc_event {
  ctlc_event_t *next;
  ctlc_t *c;
  char **urls;        /* owned: the expanded list */
  size_t nurls;
};

static void start_connect(ctlc_t *c);
static void save_state(ctlc_t *c, const agentmsg_config_t *cf);
static void log_failure(ctlc_t *c, log_level_t lvl, const char *msg);
static void changed(ctlc_t *c);
static void ctlc_fail(ctlc_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

const char *ctlc_state_name(ctlc_state_t s) {
  switch (s) {
  case CTLC_BACKOFF: return "backoff";
  case CTLC_CA_FETCH: return "connecting";
  case CTLC_REGISTER: return "registering";
  case CTLC_AUTH_START:
  case CTLC_AUTH_FINISH: return "authenticating";
  case CTLC_CERT:
  case CTLC_RUNNING: return "running";
  }
  return "backoff";
}

/* ---- resolver threads -> loop ------------------------------------------- */

static void hub_push(ctlc_hub_t *hub, ctlc_event_t *ev) {
  pthread_mutex_lock(&hub->mu);
  if (hub->tail) hub->tail->next = ev;
  else hub->head = ev;
  hub->tail = ev;
  pthread_mutex_unlock(&hub->mu);
  ev_async_send(hub->loop, &hub->wake);
}

/* ---- logging ------------------------------------------------------------ */

/* A failure that repeats (the controller is down for an hour) is logged
 * when it changes and then once a minute; in simulation, thousands of
 * clients share one line a second. */
static void log_failure(ctlc_t *c, log_level_t lvl, const char *msg) {
  ctlc_hub_t *hub = c->hub;
  ev_tstamp now = ev_now(hub->loop);

  if (hub->simulate) {
    if (now - hub->log_last < 1.0) {
      hub->log_suppressed++;
      return;
    }
    if (hub->log_suppressed)
      log_msg(lvl, MOD, "[%s] %s (and %u more failures)", c->name, msg, hub->log_suppressed);
    else
      log_msg(lvl, MOD, "[%s] %s", c->name, msg);
    hub->log_last = now;
    hub->log_suppressed = 0;
    return;
  }
  if (strcmp(msg, c->last_logged) == 0 && now - c->last_logged_at < LOG_REPEAT_S) {
    log_debug(MOD, "[%s] %s", c->name, msg);
    return;
  }
  log_msg(lvl, MOD, "[%s] %s", c->name, msg);
  snprintf(c->last_logged, sizeof(c->last_logged), "%s", msg);
  c->last_logged_at = now;
}

static void changed(ctlc_t *c) {
  if (c->hub->on_change) c->hub->on_change(c, c->hub->on_change_arg);
}

/* ---- session ------------------------------------------------------------ */

const char *ctlc_url(const ctlc_t *c) {
  return c->ntargets ? c->targets[c->url_idx % c->ntargets] : "";
}

/* several_targets tells whether the client has another URL to move to. */
static int several_targets(const ctlc_t *c) {
  return c->ntargets > 1 || (c->next_targets && c->nnext > 1);
}

/* With somewhere else to go, a silent controller is left sooner, unless
 * waits ran out in a row (agent_patience_ms). */
static int rpc_timeout_ms(const ctlc_t *c) {
  return several_targets(c)
             ? (int)agent_patience_ms(AGENT_ANSWER_BASE_MS, AGENT_ANSWER_CAP_MS, c->slow)
             : RPC_TIMEOUT_MS;
}

static double connect_timeout_s(const ctlc_t *c) {
  return (double)agent_patience_ms(AGENT_CONNECT_BASE_MS, AGENT_CONNECT_CAP_MS, c->slow) /
         1000.0;
}

/* ---- host names in controller.url ---------------------------------------- */

typedef struct resolve {
  ctlc_t *c;                     /* only to name the event */
  ctlc_hub_t *hub;
} resolve_t;

static void *resolve_main(void *arg) {
  resolve_t *r = arg;
  const cfg_strlist_t *u = &r->hub->cfg->ctl_urls;
  char **v = NULL;
  size_t n = 0;
  ctlc_event_t *ev = calloc(1, sizeof(*ev));
  if (ev && ctl_urls_resolve(u->v, u->n, &v, &n) == 0) {
    ev->urls = v;
    ev->nurls = n;
  }
  if (ev) {
    ev->c = r->c;
    hub_push(r->hub, ev);
  }
  free(r);
  return NULL;
}

/* resolve_start looks the names of controller.url up on a thread of its
 * own (getaddrinfo blocks); the loop gets the list as EV_RESOLVED. */
static void resolve_start(ctlc_t *c) {
  resolve_t *r;
  if (c->resolving || !c->has_names) return;
  if ((r = calloc(1, sizeof(*r))) == NULL) return;
  r->c = c;
  r->hub = c->hub;
  if (pthread_create(&c->resolve_thread, NULL, resolve_main, r) != 0) {
    free(r);
    return;
  }
  c->resolving = 1;
}

static void resolve_done(ctlc_t *c, char **v, size_t n) {
  int same = n == c->ntargets;
  pthread_join(c->resolve_thread, NULL);
  c->resolving = 0;
  c->resolved_at = ev_now(c->hub->loop);
  for (size_t i = 0; same && i < n; i++) same = strcmp(v[i], c->targets[i]) == 0;
  if (v == NULL || n == 0 || same) {
    ctl_urls_free(v, n);
  } else {
    /* Taken at the next move: the session on the current URL stays. */
    ctl_urls_free(c->next_targets, c->nnext);
    c->next_targets = v;
    c->nnext = n;
    log_debug(MOD, "[%s] controller.url resolves to %zu URLs", c->name, n);
  }
  if (c->wait_resolve) {
    c->wait_resolve = 0;
    start_connect(c);
  }
}

/* take_resolved moves to the newest expansion, at the first address of
 * the controller.url entry in use (the URL in use names a host). */
static void take_resolved(ctlc_t *c) {
  const cfg_strlist_t *u = &c->hub->cfg->ctl_urls;
  size_t from = ctl_urls_origin(u->v, u->n, ctlc_url(c)), k = 0;
  while (k < c->nnext && ctl_urls_origin(u->v, u->n, c->next_targets[k]) != from) k++;
  ctl_urls_free(c->targets, c->ntargets);
  c->targets = c->next_targets;
  c->ntargets = c->nnext;
  c->next_targets = NULL;
  c->nnext = 0;
  c->url_idx = k < c->ntargets ? k : 0;
}

/* next_target moves to the URL after the current one, in the newest
 * expansion when there is one. */
static void next_target(ctlc_t *c) {
  if (c->next_targets) {
    const cfg_strlist_t *u = &c->hub->cfg->ctl_urls;
    size_t j = c->nnext, from = ctl_urls_origin(u->v, u->n, ctlc_url(c)), k = 0;
    for (size_t i = 0; i < c->nnext; i++)
      if (strcmp(c->next_targets[i], ctlc_url(c)) == 0) j = i;
    /* Not in the new list (it was the name itself): the first address of
     * the next controller.url entry, so no URL is tried twice in a row. */
    if (j == c->nnext) {
      while (k < c->nnext && ctl_urls_origin(u->v, u->n, c->next_targets[k]) <= from) k++;
      if (k == c->nnext) k = 0;
    } else {
      k = (j + 1) % c->nnext;
    }
    ctl_urls_free(c->targets, c->ntargets);
    c->targets = c->next_targets;
    c->ntargets = c->nnext;
    c->next_targets = NULL;
    c->nnext = 0;
    c->url_idx = k;
    return;
  }
  c->url_idx = (c->url_idx + 1) % c->ntargets;
  if (c->url_idx == 0 && ev_now(c->hub->loop) - c->resolved_at >= RESOLVE_EVERY_S)
    resolve_start(c); /* a round over: the names may point elsewhere now */
}

static int is_tls(const ctlc_t *c) { return strncmp(ctlc_url(c), "tls+", 4) == 0; }

/* join_end gives back a simulated client's place among those joining. */
static void join_end(ctlc_t *c) {
  if (!c->joining) return;
  c->joining = 0;
  c->hub->joining--;
}

static void session_close(ctlc_t *c) {
  join_end(c);
  if (!c->open) return;
  c->open = 0;
  c->was_up = c->has_session;
  c->epoch++;
  ev_timer_stop(c->hub->loop, &c->beat);
  ev_timer_stop(c->hub->loop, &c->connect_timer);
  /* Nothing of this session is delivered any more (a late reply is dropped). */
  ctlsp_req_cancel(&c->poll.req);
  ctlsp_req_cancel(&c->rpc.req);
  c->poll.busy = c->rpc.busy = 0;
  free(c->auth_msg);
  c->auth_msg = NULL;
  c->keys = NULL;
  c->has_session = 0;
  gnutls_memset(c->session, 0, sizeof(c->session));
  c->connected_since = 0;
}

/* conn_close ends the connection (a close(2): it never waits). */
static void conn_close(ctlc_t *c) {
  session_close(c);
  ctlsp_close(c->sp);
  c->sp = NULL;
  c->conn_up = 0;
}

static void conn_up_cb(ctlsp_t *sp, void *arg) {
  ctlc_t *c = arg;
  (void)sp;
  c->conn_up = 1;
  ev_timer_stop(c->hub->loop, &c->connect_timer);
}

static void conn_down_cb(ctlsp_t *sp, const char *why, void *arg) {
  ctlc_t *c = arg;
  (void)sp;
  int was_open = c->open && c->state != CTLC_BACKOFF;
  ctlsp_close(c->sp);
  c->sp = NULL;
  c->conn_up = 0;
  if (was_open) ctlc_fail(c, "%s", why);
}

/* conn_open opens the client's connection to the URL in use. */
static int conn_open(ctlc_t *c, int verified, char *err, size_t errlen) {
  ctlc_hub_t *hub = c->hub;
  ctlsp_opts_t o = {0};
  o.url = ctlc_url(c);
  if (is_tls(c)) {
    o.cred = verified ? hub->cred_ca : hub->cred_none;
    o.prio = hub->prio;
    o.servername = hub->cfg->ctl_servername;
    o.verify = verified;
    o.tls_key = c->tls_key;
    o.trust_fp = hub->trust_fp;
  }
  o.max_msg = CTLMSG_MAX;
  o.on_up = conn_up_cb;
  o.on_down = conn_down_cb;
  o.arg = c;
  if ((c->sp = ctlsp_open(hub->loop, &o, err, errlen)) == NULL) return -1;
  c->sp_verified = verified;
  c->conn_up = 0;
  c->conn_stale = 0;
  return 0;
}

static int session_open(ctlc_t *c, int verified) {
  char err[256];
  if (c->sp && (c->sp_verified != verified || c->conn_stale)) conn_close(c);
  if (c->sp == NULL && conn_open(c, verified, err, sizeof(err)) != 0) {
    ctlc_fail(c, "cannot connect to %s: %s", ctlc_url(c), err);
    return -1;
  }
  c->open = 1;
  c->epoch++;
  return 0;
}

/* next_head is what the next request carries: a new id, and the session
 * once authenticated. */
static agentmsg_head_t next_head(ctlc_t *c) {
  agentmsg_head_t h = {++c->next_id, c->has_session ? c->session : NULL};
  return h;
}

/* send_req starts request |h| packed in |buf| (|len| bytes, taken; NULL:
 * the codec could not pack it) on |op| with |timeout_ms| for the whole
 * exchange. */
static int send_req(ctlc_t *c, ctlc_op_t *op, const agentmsg_head_t *h, uint8_t *buf, size_t len,
                    int timeout_ms) {
  if (buf == NULL) {
    ctlc_fail(c, "cannot pack a request");
    return -1;
  }
  int rv = ctlsp_send(c->sp, &op->req, buf, len, timeout_ms);
  free(buf);
  if (rv != 0) {
    /* A connection refused at once ended before its first request. */
    const char *why = ctlsp_why(c->sp);
    ctlc_fail(c, "%s", rv == CTLSP_ENOMEM ? "out of memory"
                       : why[0] ? why : "connection to the controller lost");
    return -1;
  }
  op->busy = 1;
  op->req_id = h->id;
  return 0;
}

/* ---- failure and backoff ------------------------------------------------ */

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)loop;
  (void)revents;
  start_connect(w->data);
}

static void go_backoff(ctlc_t *c) {
  ctlc_hub_t *hub = c->hub;
  long long ms;
  if (c->ntargets > 1 || c->next_targets) {
    /* The next URL, after a delay that spreads the agents of a replica
     * that went away (agent_backoff.h). The socket dialed the old one. */
    ms = agent_failover_ms(c->attempt, hub->cfg->backoffmax_ms, c->was_up,
                           agent_rng_next(&hub->rng));
    conn_close(c);
    next_target(c);
    c->url_moves++;
    if (!hub->simulate)
      log_info(MOD, "[%s] trying controller %s in %lld ms", c->name, ctlc_url(c), ms);
  } else {
    ms = agent_backoff_ms(c->attempt, hub->cfg->backoffmax_ms, agent_rng_next(&hub->rng));
    /* A connection that is up and answers is kept for the next session
     * (an authentication failure, say); any other gets replaced. */
    if (!c->conn_up || c->conn_stale) conn_close(c);
    /* One name with one address: it may point elsewhere now (taken at the
     * next move, as with several). */
    if (c->has_names && ev_now(hub->loop) - c->resolved_at >= RESOLVE_EVERY_S) resolve_start(c);
  }
  c->was_up = 0;
  if (c->attempt < 64) c->attempt++;
  c->state = CTLC_BACKOFF;
  ev_timer_stop(hub->loop, &c->retry);
  ev_timer_set(&c->retry, (ev_tstamp)ms / 1000.0, 0.);
  ev_timer_start(hub->loop, &c->retry);
  log_debug(MOD, "[%s] reconnecting in %lld ms", c->name, ms);
  changed(c);
}

static void ctlc_vfail(ctlc_t *c, log_level_t lvl, const char *fmt, va_list ap) {
  vsnprintf(c->last_error, sizeof(c->last_error), fmt, ap);
  log_failure(c, lvl, c->last_error);
  c->failed = 1;
  session_close(c);
  go_backoff(c);
}

static void ctlc_fail(ctlc_t *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  ctlc_vfail(c, LOG_WARN, fmt, ap);
  va_end(ap);
}

/* An authentication failure is an operator's problem (a wrong secret, a
 * node deleted): one error line when it starts, not one per retry. */
static void auth_failed(ctlc_t *c, const char *why) {
  if (!c->auth_failed_logged && !c->hub->simulate) {
    log_error(MOD, "[%s] authentication failed: check node.secret (%s)", c->name, why);
    c->auth_failed_logged = 1;
    snprintf(c->last_logged, sizeof(c->last_logged), "authentication failed");
    c->last_logged_at = ev_now(c->hub->loop);
  }
  snprintf(c->last_error, sizeof(c->last_error), "authentication failed");
  if (c->hub->simulate) log_failure(c, LOG_ERROR, "authentication failed");
  c->known = 0; /* the node may be gone (database restored): register again */
  c->failed = 1;
  session_close(c);
  go_backoff(c);
}

/* ---- requests ----------------------------------------------------------- */

static void send_ca_request(ctlc_t *c) {
  agentmsg_head_t h = next_head(c);
  size_t len = 0;
  uint8_t *buf = agentmsg_pack_ca_request(&h, &len);
  send_req(c, &c->rpc, &h, buf, len, rpc_timeout_ms(c));
}

static void send_register(ctlc_t *c) {
  agentmsg_head_t h = next_head(c);
  size_t len = 0;
  /* The join token only ever goes to a verified controller: the pin
   * bootstrap sends nothing but CaRequest. */
  uint8_t *buf = agentmsg_pack_register(&h, c->name, c->hub->verifier, c->hub->cfg->jointoken,
                                        &len);
  c->state = CTLC_REGISTER;
  send_req(c, &c->rpc, &h, buf, len, rpc_timeout_ms(c));
}

static void send_auth_start(ctlc_t *c) {
  agentmsg_head_t h;
  size_t len = 0;
  uint8_t raw[24], *buf;

  /* 24 random bytes in base64url: 32 printable characters, never a ','. */
  if (gnutls_rnd(GNUTLS_RND_NONCE, raw, sizeof(raw)) < 0 ||
      b64url_encode(raw, sizeof(raw), c->nonce, sizeof(c->nonce)) < 0) {
    ctlc_fail(c, "cannot make a nonce");
    return;
  }
  h = next_head(c);
  buf = agentmsg_pack_auth_start(&h, c->name, c->nonce, &len);
  c->state = CTLC_AUTH_START;
  changed(c);
  send_req(c, &c->rpc, &h, buf, len, rpc_timeout_ms(c));
}

/* scram_name writes the saslname form of |name| (',' and '=' escaped). */
static void scram_name(const char *name, char *out, size_t outlen) {
  size_t o = 0;
  for (; *name && o + 4 < outlen; name++) {
    if (*name == ',') o += (size_t)snprintf(out + o, outlen - o, "=2C");
    else if (*name == '=') o += (size_t)snprintf(out + o, outlen - o, "=3D");
    else out[o++] = *name;
  }
  out[o] = '\0';
}

static void on_challenge(ctlc_t *c, const agentmsg_response_t *r) {
  const agent_config_t *cfg = c->hub->cfg;
  const char *nonce = r->challenge.nonce;
  agentmsg_head_t h;
  agentmsg_advertise_t adv;
  char sname[200], salt[SCRAM_SALT_MAX / 3 * 4 + 8];
  uint8_t proof[SCRAM_KEY_LEN], *buf;
  size_t nl = strlen(c->nonce), len = 0;

  /* The combined nonce must extend ours, or this answer is not for us. */
  if (strlen(nonce) <= nl || strncmp(nonce, c->nonce, nl) != 0) {
    ctlc_fail(c, "controller's nonce does not extend ours");
    return;
  }
  c->keys = agent_scram_keys(&c->hub->keys, cfg->node_secret, strlen(cfg->node_secret),
                             r->challenge.salt, r->challenge.salt_len, r->challenge.iterations);
  if (c->keys == NULL ||
      b64_encode(r->challenge.salt, r->challenge.salt_len, salt, sizeof(salt)) < 0) {
    ctlc_fail(c, "cannot derive the SCRAM keys");
    return;
  }
  scram_name(c->name, sname, sizeof(sname));
  free(c->auth_msg);
  if (asprintf(&c->auth_msg, "n=%s,r=%s,r=%s,s=%s,i=%u,c=biws,r=%s", sname, c->nonce, nonce,
               salt, r->challenge.iterations, nonce) < 0) {
    c->auth_msg = NULL;
    ctlc_fail(c, "out of memory");
    return;
  }
  if (agent_scram_proof(c->keys, c->auth_msg, strlen(c->auth_msg), proof) != 0) {
    ctlc_fail(c, "cannot compute the SCRAM proof");
    return;
  }
  memcpy(c->exchange, r->challenge.exchange, sizeof(c->exchange));
  adv.quic = cfg->advertise[0] ? cfg->advertise : cfg->quic_listenaddr; /* node.advertise */
  adv.http = cfg->http_listenaddr;
  adv.rtmp = "";
  adv.static_parent = cfg->client_enable ? cfg->client_server : "";
  adv.version = CASCADE_VERSION;
  h = next_head(c);
  buf = agentmsg_pack_auth_finish(&h, c->exchange, proof, sizeof(proof), &adv, &len);
  c->state = CTLC_AUTH_FINISH;
  send_req(c, &c->rpc, &h, buf, len, rpc_timeout_ms(c));
  gnutls_memset(proof, 0, sizeof(proof));
}

static void send_poll(ctlc_t *c) {
  agentmsg_head_t h = next_head(c);
  size_t len = 0;
  uint8_t *buf = agentmsg_pack_poll(&h, c->known_gen, &len);
  send_req(c, &c->poll, &h, buf, len, POLL_TIMEOUT_MS);
}

static void send_heartbeat(ctlc_t *c) {
  agentmsg_heartbeat_t hb;
  agentmsg_head_t h;
  ctlc_link_report_t *rep = NULL;
  agentmsg_stream_report_t *streams = NULL;
  size_t n = 0, len = 0;
  uint8_t *buf;

  memset(&hb, 0, sizeof(hb));
  hb.applied_generation = c->applied_gen;
  hb.static_parent_id = c->static_parent_found;
  if (c->hub->link_reports && (rep = calloc(CTLC_LINK_REPORTS_MAX, sizeof(*rep))) != NULL)
    n = c->hub->link_reports(c, rep, CTLC_LINK_REPORTS_MAX, c->hub->link_reports_arg);
  for (size_t i = 0; i < n; i++) {
    if (rep[i].up) hb.stats.links++;
    hb.stats.bytes_out += rep[i].bytes_sent;
    hb.stats.bytes_in += rep[i].bytes_recv;
  }
  hb.links = rep;
  hb.nlinks = n;
  /* Out of memory, this beat goes without a stream report; the
   * controller keeps the previous one. */
  if (c->hub->stream_reports &&
      (streams = calloc(CTLMSG_STREAMS_MAX, sizeof(*streams))) != NULL) {
    int ns = c->hub->stream_reports(c, streams, CTLMSG_STREAMS_MAX, &hb.streams_total,
                                    c->hub->stream_reports_arg);
    if (ns >= 0) {
      hb.streams = streams;
      hb.nstreams = (size_t)ns;
      hb.streams_reported = 1;
    } else {
      hb.streams_total = 0;
    }
  }
  agentmsg_stream_event_t events[CTLMSG_STREAM_EVENTS_MAX];
  c->hb_events = 0;
  if (c->hub->stream_events) {
    hb.nevents = c->hub->stream_events(c, events, CTLMSG_STREAM_EVENTS_MAX, &hb.events_dropped,
                                       c->hub->stream_events_arg);
    hb.events = events;
    c->hb_events = hb.nevents;
  }
  h = next_head(c);
  buf = agentmsg_pack_heartbeat(&h, &hb, &len);
  send_req(c, &c->rpc, &h, buf, len, rpc_timeout_ms(c));
  free(rep);
  free(streams);
}

static char *path_in(const char *dir, const char *name) {
  char *p = NULL;
  if (asprintf(&p, "%s/%s", dir, name) < 0) return NULL;
  return p;
}

/* write_file_atomic replaces |dir|/|name| by |data| (mode |mode|) through
 * a temporary file and rename, so a crash never leaves half a PEM. */
static int write_file_atomic(const char *dir, const char *name, const char *data, mode_t mode) {
  char *tmp = NULL, *dst = path_in(dir, name);
  size_t len = strlen(data), off = 0;
  int fd = -1, rv = -1;

  if (dst == NULL || asprintf(&tmp, "%s.tmp.XXXXXX", dst) < 0) {
    tmp = NULL;
    goto out;
  }
  if ((fd = mkstemp(tmp)) < 0) goto out;
  while (off < len) {
    ssize_t n = write(fd, data + off, len - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) goto out_unlink;
    off += (size_t)n;
  }
  if (fchmod(fd, mode) != 0 || fsync(fd) != 0) goto out_unlink;
  if (close(fd) != 0) {
    fd = -1;
    goto out_unlink;
  }
  fd = -1;
  if (rename(tmp, dst) != 0) goto out_unlink;
  rv = 0;
  goto out;
out_unlink:
  unlink(tmp);
out:
  if (fd >= 0) close(fd);
  free(tmp);
  free(dst);
  return rv;
}

static int need_cert(const ctlc_t *c, time_t now) {
  if (c->hub->simulate || now < c->cert_retry_at) return 0;
  if (c->cert_not_after == 0 || c->cert_id != c->instance_id) return 1;
  /* A secret change (or approval after suspension) raised the epoch: the
   * old certificate is refused by the node's peers. */
  if (c->node_epoch > 0 && (c->cert_epoch < 0 ? 1 : c->cert_epoch) != c->node_epoch) return 1;
  return now >= c->cert_not_before + (c->cert_not_after - c->cert_not_before) * 2 / 3;
}

static void send_cert_request(ctlc_t *c) {
  const agent_config_t *cfg = c->hub->cfg;
  agentmsg_head_t h;
  char err[256], *csr = NULL;
  size_t len = 0;
  uint8_t *buf;

  if (c->key_pem == NULL) {
    char *path = path_in(cfg->datadir, "node.key");
    if (path == NULL || x509_key_ensure(path, &c->key_pem, err, sizeof(err)) != 0) {
      if (path == NULL) snprintf(err, sizeof(err), "out of memory");
      log_error(MOD, "[%s] node key: %s; no certificate until this is fixed", c->name, err);
      c->key_pem = NULL;
      c->cert_retry_at = time(NULL) + 10 * CERT_RETRY_S;
      free(path);
      return;
    }
    free(path);
  }
  if (x509_csr_make(c->key_pem, c->name, &csr, err, sizeof(err)) != 0) {
    log_error(MOD, "[%s] certificate request: %s", c->name, err);
    c->cert_retry_at = time(NULL) + CERT_RETRY_S;
    return;
  }
  h = next_head(c);
  buf = agentmsg_pack_cert_request(&h, csr, &len);
  send_req(c, &c->rpc, &h, buf, len, rpc_timeout_ms(c));
  free(csr);
}

static void on_certificate(ctlc_t *c, const char *cert, const char *cert_ca) {
  char err[256];
  int64_t id = -1;
  time_t nb = 0, na = 0;

  int64_t ep = -1;
  if (x509_cert_node(cert, &id, &ep, &nb, &na, err, sizeof(err)) != 0 ||
      id != c->instance_id || na <= nb) {
    log_warn(MOD, "[%s] the controller sent an unusable certificate (%s)", c->name,
             id != c->instance_id ? "wrong node id" : err);
    c->cert_retry_at = time(NULL) + CERT_RETRY_S;
    return;
  }
  if (write_file_atomic(c->hub->cfg->datadir, "node.crt", cert, 0644) != 0) {
    log_error(MOD, "[%s] cannot write %s/node.crt: %s", c->name, c->hub->cfg->datadir,
              strerror(errno));
    c->cert_retry_at = time(NULL) + CERT_RETRY_S;
    return;
  }
  char *pem = strdup(cert), *ca = cert_ca[0] ? strdup(cert_ca) : NULL;
  if (pem == NULL || (cert_ca[0] && ca == NULL)) {
    free(pem);
    free(ca);
    c->cert_retry_at = time(NULL) + CERT_RETRY_S;
    return;
  }
  if (ca && write_file_atomic(c->hub->cfg->datadir, "node-ca.crt", ca, 0644) != 0)
    log_warn(MOD, "[%s] cannot write %s/node-ca.crt: %s", c->name, c->hub->cfg->datadir,
             strerror(errno));
  free(c->cert_pem);
  c->cert_pem = pem;
  if (ca) {
    free(c->node_ca_pem);
    c->node_ca_pem = ca;
  }
  c->cert_id = id;
  c->cert_epoch = ep;
  c->cert_not_before = nb;
  c->cert_not_after = na;
  log_info(MOD, "[%s] certificate for node %lld saved, valid until %lld", c->name, (long long)id,
           (long long)na);
  /* The state file names the CA and the epoch: keep it in step. */
  if (c->last_cf && !c->cached) save_state(c, c->last_cf);
  changed(c);
}

/* ---- desired state ------------------------------------------------------ */

static void free_topology(ctlc_t *c) {
  for (size_t i = 0; i < c->nchildren; i++) free(c->children[i].name);
  free(c->children);
  free(c->parent_name);
  free(c->parent_quic);
  c->children = NULL;
  c->nchildren = 0;
  c->parent_name = c->parent_quic = NULL;
  c->parent_id = 0;
  c->parent_epoch = 0;
}

/* apply_config makes |cf| the running configuration. The same generation
 * twice is a no-op; a rule set the agent cannot compile keeps the running
 * one and is not acknowledged. */
/* save_state keeps the configuration just applied in the state file
 * (state.h), for a start with no controller. */
static void save_state(ctlc_t *c, const agentmsg_config_t *cf) {
  const char *ca = c->node_ca_pem ? c->node_ca_pem : c->hub->ca_pem;
  char fp[X509_FPR_LEN];
  if (c->hub->simulate || c->instance_id <= 0) return;
  if (ca == NULL || x509_fingerprint(ca, fp) != 0) {
    log_debug(MOD, "[%s] no node CA yet: state file not written", c->name);
    return;
  }
  agent_state_t st = {
      .node_id = c->instance_id,
      .node_name = c->name,
      .node_epoch = c->node_epoch,
      .ca_sha256 = fp,
      .saved_at = (int64_t)time(NULL),
      .config = (agentmsg_config_t *)cf, /* only read */
  };
  if (agent_state_save(c->hub->cfg->datadir, &st) != 0)
    log_warn(MOD, "[%s] cannot write %s/%s: %s", c->name, c->hub->cfg->datadir, AGENT_STATE_FILE,
             strerror(errno));
}

/* keep_config keeps a copy of |cf| in c->last_cf (none when out of memory). */
static void keep_config(ctlc_t *c, const agentmsg_config_t *cf) {
  agentmsg_config_t *copy = c->hub->simulate ? NULL : malloc(sizeof(*copy));
  agentmsg_config_free(c->last_cf);
  free(c->last_cf);
  c->last_cf = NULL;
  if (copy == NULL) return;
  if (agentmsg_config_copy(cf, copy) != 0) {
    free(copy);
    return;
  }
  c->last_cf = copy;
}

/* apply_config makes |cf| the running configuration; |cached|: it comes
 * from the state file, not from a controller. */
static void apply_config(ctlc_t *c, const agentmsg_config_t *cf, int cached) {
  agent_rules_t nr;
  ctlc_child_t *kids = NULL;
  size_t nkids = 0;
  char *pname = NULL, *pquic = NULL, err[320];

  /* A cached configuration is asked for again: the first poll gets the
   * controller's, which replaces it even at the same generation. */
  if (!cached) c->known_gen = cf->generation;
  if (cf->generation == c->applied_gen && !c->cached) return;
  if (agent_rules_build(c->hub->cfg, &cf->rules, &nr, err, sizeof(err)) != 0) {
    log_error(MOD, "[%s] config generation %llu refused, previous rules kept: %s", c->name,
              (unsigned long long)cf->generation, err);
    return;
  }
  if (cf->nchildren > 0 && (kids = calloc(cf->nchildren, sizeof(*kids))) == NULL)
    goto fail_oom;
  for (size_t i = 0; i < cf->nchildren; i++, nkids++) {
    kids[i].id = cf->children[i].id;
    kids[i].epoch = cf->children[i].epoch;
    if ((kids[i].name = strdup(cf->children[i].name ? cf->children[i].name : "")) == NULL)
      goto fail_oom;
  }
  if (cf->parent_id != 0 &&
      ((pname = strdup(cf->parent_name ? cf->parent_name : "")) == NULL ||
       (pquic = strdup(cf->parent_quic ? cf->parent_quic : "")) == NULL))
    goto fail_oom;

  free_topology(c);
  c->parent_id = cf->parent_id;
  c->parent_epoch = c->parent_id ? cf->parent_epoch : 0;
  c->parent_name = pname;
  c->parent_quic = pquic;
  c->children = kids;
  c->nchildren = nkids;
  agent_rules_free(&c->rules);
  c->rules = nr;
  c->applied_gen = cf->generation;
  keep_config(c, cf);
  if (cached) {
    c->cached = 1;
  } else {
    if (c->cached && !c->hub->simulate)
      log_info(MOD, "[%s] the controller's configuration replaces the cached one", c->name);
    c->cached = 0;
    save_state(c, cf);
  }
  if (c->hub->simulate)
    log_debug(MOD, "[%s] config generation %llu applied", c->name,
              (unsigned long long)cf->generation);
  else
    log_info(MOD, "[%s] config generation %llu applied: parent %lld, %zu children, %zu pull rules",
             c->name, (unsigned long long)cf->generation, (long long)c->parent_id, c->nchildren,
             c->rules.npull);
  changed(c);
  return;

fail_oom:
  for (size_t i = 0; i < nkids; i++) free(kids[i].name);
  free(kids);
  free(pname);
  free(pquic);
  agent_rules_free(&nr);
  log_error(MOD, "[%s] config generation %llu: out of memory", c->name,
            (unsigned long long)cf->generation);
}

/* ---- responses ---------------------------------------------------------- */

static void on_auth_ok(ctlc_t *c, const agentmsg_response_t *r) {
  if (!agent_scram_server_ok(c->keys, c->auth_msg, strlen(c->auth_msg),
                             r->auth_ok.server_signature, r->auth_ok.server_signature_len)) {
    auth_failed(c, "the controller did not prove it knows this node's verifier");
    return;
  }
  free(c->auth_msg);
  c->auth_msg = NULL;
  memcpy(c->session, r->auth_ok.session, sizeof(c->session));
  c->has_session = 1;
  if (c->instance_id != 0 && c->instance_id != r->auth_ok.instance_id && !c->hub->simulate)
    log_warn(MOD, "[%s] instance id changed from %lld to %lld", c->name,
             (long long)c->instance_id, (long long)r->auth_ok.instance_id);
  c->instance_id = r->auth_ok.instance_id;
  c->heartbeat_ms = r->auth_ok.heartbeat_ms;
  c->node_epoch = r->auth_ok.epoch;
  c->known = 1;
  c->attempt = 0;
  c->slow = 0;
  join_end(c);
  c->failed = 0;
  c->auth_failed_logged = 0;
  c->last_error[0] = '\0';
  c->last_logged[0] = '\0';
  c->connected_since = time(NULL);
  if (!c->hub->simulate)
    log_info(MOD, "[%s] authenticated as node %lld, heartbeat every %u ms", c->name,
             (long long)c->instance_id, c->heartbeat_ms);
  ev_timer_set(&c->beat, c->heartbeat_ms / 1000.0, c->heartbeat_ms / 1000.0);
  ev_timer_start(c->hub->loop, &c->beat);
  send_poll(c);
  if (!c->open) return;
  if (need_cert(c, time(NULL))) {
    c->state = CTLC_CERT;
    send_cert_request(c);
  } else {
    c->state = CTLC_RUNNING;
  }
  changed(c);
}

/* session_code handles the status codes that end a session whatever the
 * request was. Returns 1 when it did. */
static int session_code(ctlc_t *c, const agentmsg_response_t *r) {
  char q[200];
  switch (r->code) {
  case AGENTMSG_AUTH_FAILED:
    auth_failed(c, "the controller refused the proof");
    return 1;
  case AGENTMSG_NO_SESSION:
    ctlc_fail(c, "session unknown to the controller (restarted?): authenticating again");
    return 1;
  case AGENTMSG_REVOKED:
    c->known = 0; /* deleted, perhaps: Register makes it again where that is allowed */
    ctlc_fail(c, "session revoked: node deleted or its secret changed");
    return 1;
  case AGENTMSG_RATE_LIMITED:
    ctlc_fail(c, "rate limited by the controller");
    return 1;
  case AGENTMSG_PENDING:
    ctlc_fail(c, "awaiting approval: an operator must approve this node (PUT "
                 "/api/cascade/clients/{id} {\"pending\": false}), or give it node.jointoken");
    return 1;
  default:
    if (r->code == AGENTMSG_OK) return 0;
    if (c->state == CTLC_CERT || c->state == CTLC_RUNNING) return 0;
    ctlc_fail(c, "controller answered %d: %s", r->code, log_quote(r->message, q, sizeof(q)));
    return 1;
  }
}

static void on_rpc(ctlc_t *c, const agentmsg_response_t *r) {
  char q[200];
  if (session_code(c, r)) return;
  switch (c->state) {
  case CTLC_CA_FETCH: {
    char err[256];
    if (r->body != AGENTMSG_BODY_CA) break;
    int m = x509_fingerprint_matches(r->ca, c->hub->cfg->ctl_pin);
    if (m != 0) {
      ctlc_fail(c, "the controller's CA does not match controller.pin%s",
                m < 0 ? " (unreadable certificate)" : "");
      return;
    }
    if (write_file_atomic(c->hub->cfg->datadir, "controller-ca.crt", r->ca, 0644) != 0) {
      snprintf(err, sizeof(err), "%s", strerror(errno));
      log_warn(MOD, "[%s] cannot save %s/controller-ca.crt: %s", c->name, c->hub->cfg->datadir,
               err);
    }
    free(c->hub->ca_pem);
    if ((c->hub->ca_pem = strdup(r->ca)) == NULL) {
      ctlc_fail(c, "out of memory");
      return;
    }
    if (ctlc_hub_trust(c->hub) != 0) {
      ctlc_fail(c, "cannot load the controller's CA");
      return;
    }
    log_info(MOD, "[%s] controller CA matches the pin; reconnecting verified", c->name);
    start_connect(c); /* replaces the unverified connection */
    return;
  }
  case CTLC_REGISTER:
    send_auth_start(c);
    return;
  case CTLC_AUTH_START:
    if (r->body != AGENTMSG_BODY_CHALLENGE) break;
    on_challenge(c, r);
    return;
  case CTLC_AUTH_FINISH:
    if (r->body != AGENTMSG_BODY_AUTH_OK) break;
    on_auth_ok(c, r);
    return;
  case CTLC_CERT:
  case CTLC_RUNNING:
    if (r->code != AGENTMSG_OK) {
      /* A certificate or heartbeat the controller cannot serve right now
       * (database down) does not end the session. */
      log_failure(c, LOG_WARN, log_quote(r->message, q, sizeof(q)));
      if (c->state == CTLC_CERT) {
        c->cert_retry_at = time(NULL) + CERT_RETRY_S;
        c->state = CTLC_RUNNING;
        changed(c);
      }
      return;
    }
    if (r->body == AGENTMSG_BODY_CERTIFICATE) {
      on_certificate(c, r->certificate.cert, r->certificate.ca);
      if (c->state == CTLC_CERT) {
        c->state = CTLC_RUNNING;
        changed(c);
      }
      return;
    }
    if (r->body == AGENTMSG_BODY_HEARTBEAT_REPLY) {
      /* the controller stored the events this beat carried */
      if (c->hb_events && c->hub->stream_events_ack)
        c->hub->stream_events_ack(c, c->hb_events, c->hub->stream_events_arg);
      c->hb_events = 0;
      if (r->heartbeat_reply.desired_generation != c->known_gen)
        log_debug(MOD, "[%s] desired generation %llu, known %llu", c->name,
                  (unsigned long long)r->heartbeat_reply.desired_generation,
                  (unsigned long long)c->known_gen);
      /* Renewal rides behind a heartbeat so it never takes a beat's place. */
      if (need_cert(c, time(NULL))) send_cert_request(c);
      return;
    }
    break;
  case CTLC_BACKOFF:
    return;
  }
  ctlc_fail(c, "unexpected response in state %s", ctlc_state_name(c->state));
}

static void on_poll(ctlc_t *c, const agentmsg_response_t *r) {
  if (session_code(c, r)) return;
  if (r->code != AGENTMSG_OK || r->body != AGENTMSG_BODY_CONFIG) {
    ctlc_fail(c, "unexpected answer to a poll");
    return;
  }
  /* Generation 0 is the controller's "nothing new" at the poll timeout. */
  if (r->config.generation != 0) apply_config(c, &r->config, 0);
  /* Poll again first: the next relay request should not wait for these. */
  send_poll(c);
  if (!c->open) return;
  for (size_t i = 0; i < r->nrelay && c->hub->on_relay; i++) {
    relay_header_t hv[RELAYBOUNDS_HEADERS_MAX];
    relay_request_t q;
    char bad[128];
    int ok = agentmsg_relay_request(r, i, &q, hv, bad, sizeof(bad)) == 0;
    c->hub->on_relay(c, &q, ok ? NULL : bad, c->hub->on_relay_arg);
  }
}

/* op_reply takes an exchange's outcome, on the loop (agent/ctlsp.h). */
static void op_reply(ctlsp_req_t *req, int rv, const uint8_t *body, size_t len, void *arg) {
  ctlc_op_t *op = arg;
  ctlc_t *c = op->c;
  agentmsg_response_t r;
  char why[128];

  (void)req;
  op->busy = 0;
  if (!c->open) return;
  if (rv != 0) {
    if (rv == CTLSP_ETIMEDOUT) {
      int ms = op->kind == OP_POLL ? POLL_TIMEOUT_MS : rpc_timeout_ms(c);
      c->conn_stale = 1;
      if (op->kind != OP_POLL && c->slow < 16) c->slow++;
      if (!op->req.sent)
        ctlc_fail(c, "no connection to the controller within %d s", ms / 1000);
      else
        ctlc_fail(c, "no answer from the controller within %d s", ms / 1000);
    } else {
      ctlc_fail(c, "%s", rv == CTLSP_ENOMEM ? "out of memory"
                         : "connection to the controller lost");
    }
    return;
  }
  if (agentmsg_decode_response(body, len, &r, why, sizeof(why)) != 0) {
    c->hub->bad_messages++;
    ctlc_fail(c, "bad message from the controller: %s", why);
    return;
  }
  if (r.id != op->req_id) ctlc_fail(c, "response id does not match the request");
  else if (op->kind == OP_POLL) on_poll(c, &r);
  else on_rpc(c, &r);
  agentmsg_response_free(&r);
}

static void wake_cb(struct ev_loop *loop, ev_async *w, int revents) {
  ctlc_hub_t *hub = w->data;
  ctlc_event_t *ev, *next;
  (void)loop;
  (void)revents;

  pthread_mutex_lock(&hub->mu);
  ev = hub->head;
  hub->head = hub->tail = NULL;
  pthread_mutex_unlock(&hub->mu);
  for (; ev; ev = next) {
    next = ev->next;
    resolve_done(ev->c, ev->urls, ev->nurls);
    free(ev);
  }
}

static void beat_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  ctlc_t *c = w->data;
  (void)loop;
  (void)revents;

  if (!c->open || !c->has_session) return;
  if (c->rpc.busy) return; /* a certificate request is in flight: next tick */
  send_heartbeat(c);
}

/* ---- lifecycle ---------------------------------------------------------- */

static void connect_timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  ctlc_t *c = w->data;
  (void)loop;
  (void)revents;
  if (c->open && !c->conn_up && !c->has_session) {
    double s = connect_timeout_s(c);
    if (c->slow < 16) c->slow++;
    ctlc_fail(c, "no connection to %s within %.0f s", ctlc_url(c), s);
  }
}

static void start_connect(ctlc_t *c) {
  int bootstrap = is_tls(c) && c->hub->ca_pem == NULL;
  ctlc_hub_t *hub = c->hub;
  ev_timer_stop(hub->loop, &c->retry);
  if (hub->simulate && !c->joining && hub->joining >= CTLC_SIM_JOINING_MAX) {
    ev_timer_set(&c->retry, 0.02 + 0.08 * agent_rng_next(&hub->rng), 0.);
    ev_timer_start(hub->loop, &c->retry);
    return;
  }
  session_close(c);
  if (!ctl_urls_host_is_numeric(ctlc_url(c))) {
    /* A host name: connect to its addresses once they are known. */
    if (c->next_targets && !c->resolving) {
      take_resolved(c);
    } else {
      c->wait_resolve = 1;
      if (!c->resolving && ev_now(hub->loop) - c->resolved_at < 1.0) {
        c->wait_resolve = 0;
        ctlc_fail(c, "cannot resolve the host of %s", ctlc_url(c));
      } else {
        resolve_start(c);
        if (!c->resolving) {
          c->wait_resolve = 0;
          ctlc_fail(c, "cannot resolve the host of %s (out of resources)", ctlc_url(c));
        }
      }
      return;
    }
  }
  if (session_open(c, !bootstrap) != 0) return;
  if (hub->simulate) {
    c->joining = 1;
    hub->joining++;
  }
  if (several_targets(c) && !c->conn_up) {
    ev_timer_set(&c->connect_timer, connect_timeout_s(c), 0.);
    ev_timer_start(c->hub->loop, &c->connect_timer);
  }
  if (bootstrap) {
    c->state = CTLC_CA_FETCH;
    changed(c);
    send_ca_request(c);
  } else if (c->known) {
    /* The controller already has this node: a rejoin costs it two
     * requests, not three (Register would create nothing). */
    send_auth_start(c);
  } else {
    send_register(c);
    changed(c);
  }
}

static void load_cert(ctlc_t *c) {
  char err[256], *path = path_in(c->hub->cfg->datadir, "node.crt"), *pem = NULL;
  if (path == NULL) return;
  if (access(path, F_OK) == 0 && (pem = x509_read_file(path, X509_PEM_MAX, err, sizeof(err)))) {
    int64_t id = -1, ep = -1;
    time_t nb = 0, na = 0;
    if (x509_cert_node(pem, &id, &ep, &nb, &na, err, sizeof(err)) == 0 && na > nb) {
      c->cert_id = id;
      c->cert_epoch = ep;
      c->cert_not_before = nb;
      c->cert_not_after = na;
      c->cert_pem = pem;
      pem = NULL;
    }
  }
  free(pem);
  free(path);
  if (c->cert_pem == NULL) return;
  /* The links need the key and the CA with the certificate kept from an
   * earlier run (they still wait for the controller's topology). */
  if ((path = path_in(c->hub->cfg->datadir, "node.key")) != NULL &&
      x509_key_ensure(path, &c->key_pem, err, sizeof(err)) != 0) {
    log_warn(MOD, "[%s] node key: %s", c->name, err);
    c->key_pem = NULL;
  }
  free(path);
  if ((path = path_in(c->hub->cfg->datadir, "node-ca.crt")) != NULL && access(path, F_OK) == 0)
    c->node_ca_pem = x509_read_file(path, X509_PEM_MAX, err, sizeof(err));
  free(path);
}

/* load_state runs the configuration of the state file until a controller
 * answers (cached mode). A file that cannot be read, is of another format
 * or version, or belongs to another node or CA is logged and ignored: the
 * agent then waits for a controller as a fresh node would. */
static void load_state(ctlc_t *c) {
  const char *dir = c->hub->cfg->datadir;
  agent_state_t st;
  char err[320];
  int rv = agent_state_load(dir, &st, err, sizeof(err));
  if (rv == 1) return;
  if (rv == 0 &&
      agent_state_check(&st, c->name, c->node_ca_pem ? c->node_ca_pem : c->hub->ca_pem, err,
                        sizeof(err)) != 0)
    rv = -1;
  if (rv == 0 && c->cert_pem && c->cert_id != st.node_id) {
    snprintf(err, sizeof(err), "it names node %lld, node.crt names node %lld",
             (long long)st.node_id, (long long)c->cert_id);
    rv = -1;
  }
  if (rv != 0) {
    log_warn(MOD, "[%s] ignoring the state file %s/%s: %s; waiting for a controller", c->name,
             dir, AGENT_STATE_FILE, err);
    agent_state_free(&st);
    return;
  }
  c->instance_id = st.node_id;
  c->node_epoch = st.node_epoch;
  apply_config(c, st.config, 1);
  if (c->cached) {
    time_t now = time(NULL);
    log_info(MOD, "[%s] cached mode: running node %lld's configuration generation %llu from "
             "%s/%s until a controller answers%s", c->name, (long long)st.node_id,
             (unsigned long long)st.config->generation, dir, AGENT_STATE_FILE,
             c->cert_pem == NULL ? " (no certificate: no links)"
             : c->cert_not_after <= now ? " (the certificate has expired: no links)" : "");
  }
  agent_state_free(&st);
}

ctlc_t *ctlc_new(ctlc_hub_t *hub, const char *name, char *err, size_t errlen) {
  ctlc_t *c = calloc(1, sizeof(*c));
  if (c == NULL) goto fail;
  c->hub = hub;
  c->tls_key = ctltls_new_key();
  if ((c->name = strdup(name)) == NULL) goto fail_free;
  if ((c->targets = calloc(hub->cfg->ctl_urls.n + 1, sizeof(*c->targets))) == NULL)
    goto fail_name;
  for (size_t i = 0; i < hub->cfg->ctl_urls.n; i++, c->ntargets++) {
    if ((c->targets[i] = strdup(hub->cfg->ctl_urls.v[i])) == NULL) goto fail_targets;
    c->has_names |= !ctl_urls_host_is_numeric(c->targets[i]);
  }
  if (agent_rules_build(hub->cfg, NULL, &c->rules, err, errlen) != 0) goto fail_targets;
  c->url_idx = agent_first_url(name, c->ntargets); /* spread over the replicas */
  c->poll.c = c->rpc.c = c;
  c->poll.kind = OP_POLL;
  c->rpc.kind = OP_RPC;
  ctlsp_req_init(&c->poll.req, hub->loop, op_reply, &c->poll);
  ctlsp_req_init(&c->rpc.req, hub->loop, op_reply, &c->rpc);
  ev_timer_init(&c->retry, retry_cb, 0., 0.);
  c->retry.data = c;
  ev_timer_init(&c->beat, beat_cb, 1., 1.);
  c->beat.data = c;
  ev_timer_init(&c->connect_timer, connect_timer_cb, AGENT_CONNECT_BASE_MS / 1000.0, 0.);
  c->connect_timer.data = c;
  if (!hub->simulate) {
    load_cert(c);
    load_state(c);
  }
  resolve_start(c);
  start_connect(c);
  return c;

fail_targets:
  ctl_urls_free(c->targets, c->ntargets);
fail_name:
  free(c->name);
fail_free:
  free(c);
  return NULL;
fail:
  snprintf(err, errlen, "out of memory");
  return NULL;
}

void ctlc_destroy(ctlc_t *c) {
  if (c == NULL) return;
  join_end(c);
  conn_close(c);
  ev_timer_stop(c->hub->loop, &c->retry);
  ev_timer_stop(c->hub->loop, &c->beat);
  ev_timer_stop(c->hub->loop, &c->connect_timer);
  if (c->resolving) pthread_join(c->resolve_thread, NULL);   /* bounded by the resolver's */
  /* Nothing queued for |c| may outlive it. */
  pthread_mutex_lock(&c->hub->mu);
  for (ctlc_event_t **pp = &c->hub->head, *prev = NULL; *pp;) {
    ctlc_event_t *ev = *pp;
    if (ev->c == c) {
      *pp = ev->next;
      if (c->hub->tail == ev) c->hub->tail = prev;
      ctl_urls_free(ev->urls, ev->nurls);
      free(ev);
    } else {
      prev = ev;
      pp = &ev->next;
    }
  }
  pthread_mutex_unlock(&c->hub->mu);
  free_topology(c);
  agent_rules_free(&c->rules);
  agentmsg_config_free(c->last_cf);
  free(c->last_cf);
  if (c->key_pem) {
    gnutls_memset(c->key_pem, 0, strlen(c->key_pem));
    free(c->key_pem);
  }
  free(c->cert_pem);
  free(c->node_ca_pem);
  ctl_urls_free(c->targets, c->ntargets);
  ctl_urls_free(c->next_targets, c->nnext);
  ctltls_forget(c->tls_key);
  free(c->name);
  free(c);
}

int ctlc_hub_trust(ctlc_hub_t *hub) {
  gnutls_certificate_credentials_t cred = NULL;
  gnutls_datum_t d = {(unsigned char *)hub->ca_pem, hub->ca_pem ? (unsigned)strlen(hub->ca_pem) : 0};
  uint8_t fp[CTLTLS_FP_LEN];
  if (hub->cred_ca) return 0; /* connections use it: never replaced */
  if (hub->ca_pem == NULL || gnutls_certificate_allocate_credentials(&cred) < 0) return -1;
  /* 2: the auth mode the fingerprint has always bound (verification required). */
  if (gnutls_certificate_set_x509_trust_mem(cred, &d, GNUTLS_X509_FMT_PEM) <= 0 ||
      ctltls_fingerprint(2, hub->ca_pem, fp) != 0) {
    gnutls_certificate_free_credentials(cred);
    return -1;
  }
  hub->cred_ca = cred;
  memcpy(hub->trust_fp, fp, sizeof(fp));
  return 0;
}

int ctlc_hub_init(ctlc_hub_t *hub, struct ev_loop *loop, const agent_config_t *cfg,
                  int simulate, char *err, size_t errlen) {
  memset(hub, 0, sizeof(*hub));
  hub->loop = loop;
  hub->cfg = cfg;
  hub->simulate = simulate;
  if (gnutls_rnd(GNUTLS_RND_NONCE, &hub->rng, sizeof(hub->rng)) < 0 || hub->rng == 0)
    hub->rng = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
  if (pthread_mutex_init(&hub->mu, NULL) != 0) {
    snprintf(err, errlen, "cannot create a mutex");
    return -1;
  }
  if (agent_scram_register_verifier(&hub->keys, cfg->node_secret, strlen(cfg->node_secret),
                                    SCRAM_ITER_DEFAULT, hub->verifier,
                                    sizeof(hub->verifier)) != 0) {
    snprintf(err, errlen, "cannot derive the SCRAM verifier");
    goto fail;
  }
  int any_tls = 0;
  for (size_t i = 0; i < cfg->ctl_urls.n; i++) any_tls |= strncmp(cfg->ctl_urls.v[i], "tls+", 4) == 0;
  if (any_tls) {
    if (cfg->ctl_ca[0]) {
      if ((hub->ca_pem = x509_read_file(cfg->ctl_ca, X509_PEM_MAX, err, errlen)) == NULL)
        goto fail;
      if (cfg->ctl_pin[0] && x509_fingerprint_matches(hub->ca_pem, cfg->ctl_pin) != 0) {
        snprintf(err, errlen, "key 'controller.pin': does not match controller.ca %s",
                 cfg->ctl_ca);
        goto fail;
      }
    } else {
      /* A CA fetched by pin on an earlier start is trusted again only if it
       * still matches the pin. */
      char e2[256], *path = path_in(cfg->datadir, "controller-ca.crt");
      if (path && access(path, F_OK) == 0) {
        hub->ca_pem = x509_read_file(path, X509_PEM_MAX, e2, sizeof(e2));
        if (hub->ca_pem && x509_fingerprint_matches(hub->ca_pem, cfg->ctl_pin) != 0) {
          log_warn(MOD, "%s does not match controller.pin: fetching the CA again", path);
          free(hub->ca_pem);
          hub->ca_pem = NULL;
        }
      }
      free(path);
    }
  }
  if (gnutls_priority_init(&hub->prio, CTLTLS_PRIORITY_BASE, NULL) < 0 ||
      gnutls_certificate_allocate_credentials(&hub->cred_none) < 0) {
    snprintf(err, errlen, "cannot set up TLS");
    goto fail;
  }
  if (hub->ca_pem && ctlc_hub_trust(hub) != 0) {
    snprintf(err, errlen, "cannot load the controller CA into TLS");
    goto fail;
  }
  ctltls_init(); /* without a store, no resumption: every handshake is full */
  ev_async_init(&hub->wake, wake_cb);
  hub->wake.data = hub;
  ev_async_start(loop, &hub->wake);
  return 0;

fail:
  if (hub->cred_ca) gnutls_certificate_free_credentials(hub->cred_ca);
  if (hub->cred_none) gnutls_certificate_free_credentials(hub->cred_none);
  if (hub->prio) gnutls_priority_deinit(hub->prio);
  hub->cred_ca = hub->cred_none = NULL;
  hub->prio = NULL;
  free(hub->ca_pem);
  hub->ca_pem = NULL;
  agent_scram_cache_wipe(&hub->keys);
  pthread_mutex_destroy(&hub->mu);
  return -1;
}

void ctlc_hub_destroy(ctlc_hub_t *hub) {
  ctlc_event_t *ev, *next;
  if (hub == NULL || hub->loop == NULL) return;
  ev_async_stop(hub->loop, &hub->wake);
  for (ev = hub->head; ev; ev = next) {
    next = ev->next;
    ctl_urls_free(ev->urls, ev->nurls);
    free(ev);
  }
  hub->head = hub->tail = NULL;
  if (hub->cred_ca) gnutls_certificate_free_credentials(hub->cred_ca);
  if (hub->cred_none) gnutls_certificate_free_credentials(hub->cred_none);
  if (hub->prio) gnutls_priority_deinit(hub->prio);
  hub->cred_ca = hub->cred_none = NULL;
  hub->prio = NULL;
  free(hub->ca_pem);
  hub->ca_pem = NULL;
  agent_scram_cache_wipe(&hub->keys);
  gnutls_memset(hub->verifier, 0, sizeof(hub->verifier));
  pthread_mutex_destroy(&hub->mu);
  hub->loop = NULL;
}
