/* The agent's QUIC links: see links.h and docs/protocol.md ("Links").
 *
 * Ownership: |L| owns the endpoint, the qsvc table and one link_peer per
 * connection it knows (the quic user data of that connection), freed in
 * on_close. Connections the parent refuses carry no peer (user data NULL).
 * The parent link is a link_fsm; children are records by node id (kept
 * while the topology names them, for status) with their live peer. */
#define _GNU_SOURCE /* asprintf */
#include "links.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "agent_backoff.h"
#include "hostaddr.h"
#include "link_fsm.h"
#include "log.h"
#include "timefmt.h"
#include "qsvc.h"
#include "quic.h"
#include "relay.h"
#include "resolve.h"
#include "x509.h"

#define MOD "link"
#define ERRLEN 400
#define TICK_S 1.0
#define LOG_RL_S 5.0          /* one line per reason per this period */
#define EP_RETRY_MAX_S 30.0
#define ROLE_PARENT 1
#define ROLE_CHILD 2

enum {
  RL_NOT_ASSIGNED,
  RL_TOO_MANY,
  RL_BAD_CERT,
  RL_WRONG_PARENT,
  RL_PARENT_FAIL,
  RL_EP,
  RL_STALE,
  RL_PROBE,
  RL_N
};
enum { REF_NOT_ASSIGNED, REF_TOO_MANY, REF_BAD_CERT, REF_WRONG_PARENT, REF_STALE_CERT, REF_N };
static const char *const ref_names[REF_N] = {"not_assigned", "too_many", "bad_cert",
                                             "wrong_parent", "stale_cert"};

typedef struct link_rec link_rec_t;

typedef struct link_peer {
  struct link_peer *next;     /* every peer of |L| */
  links_t *L;
  quic_conn *conn;            /* valid until on_close */
  int role;
  int64_t id;                 /* the peer's node id, 0 until verified */
  int64_t epoch;              /* the credential epoch its certificate names (-1 none) */
  int up;
  int orphan;                 /* a parent link replaced: on_close only frees */
  double since;               /* ev_now when up */
  time_t since_wall;
  char close_reason[ERRLEN];     /* why we closed it, for last_error */
  link_rec_t *rec;            /* children: their record */
} link_peer_t;

struct link_rec {
  link_rec_t *next;
  int64_t id;
  char name[80];
  link_peer_t *peer;          /* live link, or NULL */
  time_t since_wall;          /* of the current state */
  char last_error[ERRLEN];
  quic_conn_stats last;       /* figures of the last link, once down */
};

typedef struct linktest {
  int busy, have;
  quic_conn *conn;
  int64_t sid;
  uint64_t want, got;
  double t0, t1;
  int ok;
  char error[ERRLEN];
} linktest_t;

struct links {
  struct ev_loop *loop;
  const agent_config_t *cfg;
  ctlc_t *ctl;
  quic_endpoint *ep;          /* owned */
  qsvc *svc;                  /* owned */
  relay_t *relay;             /* owned: PUSH/PULL on this endpoint's links, NULL without hub */
  hub_t *hub;                 /* not owned: the media hub the relay feeds */
  links_parent_fn on_parent;  /* the cascade hears of the parent link through it */
  void *on_parent_arg;
  char *ep_cert;              /* owned: the certificate |ep| presents */
  time_t ep_not_before, ep_not_after;
  int ep_server, ep_family;
  int renewing;               /* links closed to restart the endpoint */
  int draining;               /* links_drain: shutting down */
  double ep_retry_at, ep_retry_s;
  size_t nconns;              /* connections with a peer, until on_close */
  link_peer_t *peers;         /* owned list: every connection with a peer */
  ev_timer tick, retry;
  uint64_t rng;

  /* parent */
  link_fsm_t fsm;
  time_t p_since_wall;
  link_peer_t *parent;        /* connecting or up */
  resolve_req_t *presolve;    /* owned: the lookup of paddr's host name under way */
  char paddr[260];
  int64_t pepoch;             /* credential epoch the parent must present, 0: any */
  int64_t pexpect;            /* 0: a static parent address to probe (no media) */
  char pname[80];
  char plast_error[ERRLEN];
  quic_conn_stats plast;

  link_rec_t *children;       /* owned list */
  uint64_t refused[REF_N];
  uint64_t accepted;
  double rl_last[RL_N];
  unsigned rl_supp[RL_N];
  linktest_t lt;
  uint8_t pattern[QSVC_SOURCE_MOD * 64];
};

/* ---- helpers -------------------------------------------------------------- */

/* log_rl logs at most one line per LOG_RL_S for |slot|, then says how many
 * were held back. */
static void log_rl(links_t *L, int slot, log_level_t lvl, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void log_rl(links_t *L, int slot, log_level_t lvl, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  double now = ev_now(L->loop);
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  if (L->rl_last[slot] != 0 && now - L->rl_last[slot] < LOG_RL_S) {
    L->rl_supp[slot]++;
    log_debug(MOD, "%s", msg);
    return;
  }
  if (L->rl_supp[slot])
    log_msg(lvl, MOD, "%s (%u similar lines held back)", msg, L->rl_supp[slot]);
  else
    log_msg(lvl, MOD, "%s", msg);
  L->rl_last[slot] = now;
  L->rl_supp[slot] = 0;
}

static const char *ca_of(const links_t *L) {
  return L->ctl->node_ca_pem ? L->ctl->node_ca_pem : L->ctl->hub->ca_pem;
}

static const char *err_name(uint64_t code) {
  switch (code) {
  case LINK_ERR_CLOSED: return "closed";
  case LINK_ERR_NOT_ASSIGNED: return "not assigned to this parent";
  case LINK_ERR_TOO_MANY: return "parent has too many children";
  case LINK_ERR_WRONG_PARENT: return "not the parent the controller named";
  case LINK_ERR_BAD_CERT: return "certificate names no node";
  case LINK_ERR_SUPERSEDED: return "superseded by a newer link";
  case LINK_ERR_PARENT_CHANGED: return "parent changed";
  case LINK_ERR_RENEW: return "certificate renewed";
  case LINK_ERR_STALE_CERT: return "certificate of old credentials";
  case LINK_ERR_PROBE: return "static parent probed";
  case LINK_ERR_GOING_AWAY: return "going away (the node shuts down)";
  default: return "application error";
  }
}

/* peer_node reads the node id the peer's certificate names (-1: none) and
 * its credential epoch (-1: none). */
static int64_t peer_node(const quic_conn *c, int64_t *epoch) {
  const uint8_t *der;
  size_t len;
  gnutls_datum_t in, out = {NULL, 0};
  int64_t id = -1;
  char err[128];
  *epoch = -1;
  if (quic_conn_peer_cert(c, 0, &der, &len) != 0) return -1;
  in.data = (unsigned char *)der;
  in.size = (unsigned)len;
  if (gnutls_pem_base64_encode2("CERTIFICATE", &in, &out) < 0) return -1;
  char *pem = malloc(out.size + 1);
  if (pem) {
    memcpy(pem, out.data, out.size);
    pem[out.size] = '\0';
    if (x509_cert_node(pem, &id, epoch, NULL, NULL, err, sizeof(err)) != 0) id = -1;
    /* Certificates from before epochs were named belong to epoch 1 (no
     * secret change since): an upgrade does not cut links. */
    if (id >= 0 && *epoch < 0) *epoch = 1;
  }
  free(pem);
  gnutls_free(out.data);
  return id;
}

/* parse_addr reads a numeric "host:port" or "[v6]:port"; an empty host
 * (":port") is the wildcard when |wild| (binding) and an error otherwise.
 * Names are not resolved: DNS would block the loop. */
static int parse_addr(const char *s, int wild, struct sockaddr_storage *ss, socklen_t *len,
                      char *err, size_t errlen) {
  char host[256];
  const char *port;
  size_t hl;
  if (s[0] == '[') {
    const char *e = strchr(s, ']');
    if (e == NULL || e[1] != ':') goto bad;
    hl = (size_t)(e - s - 1);
    if (hl >= sizeof(host)) goto bad;
    memcpy(host, s + 1, hl);
    port = e + 2;
  } else {
    const char *e = strrchr(s, ':');
    if (e == NULL) goto bad;
    hl = (size_t)(e - s);
    if (hl >= sizeof(host)) goto bad;
    memcpy(host, s, hl);
    port = e + 1;
  }
  host[hl] = '\0';
  char *end;
  long p = strtol(port, &end, 10);
  if (*port == '\0' || *end != '\0' || p < 0 || p > 65535 || (!wild && p == 0)) goto bad;
  memset(ss, 0, sizeof(*ss));
  if (hl == 0) {
    if (!wild) {
      snprintf(err, errlen, "address '%s' has no host", s);
      return -1;
    }
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)p);
    *len = sizeof(*in);
    return 0;
  }
  struct sockaddr_in *in = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
  if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)p);
    *len = sizeof(*in);
    return 0;
  }
  if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)p);
    *len = sizeof(*in6);
    return 0;
  }
  snprintf(err, errlen, "address '%s' is not a numeric IP address and port", s);
  return -1;
bad:
  snprintf(err, errlen, "address '%s' is not host:port", s);
  return -1;
}

static double rnd(links_t *L) { return agent_rng_next(&L->rng); }

/* ---- children records ----------------------------------------------------- */

static link_rec_t *rec_find(links_t *L, int64_t id) {
  for (link_rec_t *r = L->children; r; r = r->next)
    if (r->id == id) return r;
  return NULL;
}

static const ctlc_child_t *topo_child(const links_t *L, int64_t id) {
  for (size_t i = 0; i < L->ctl->nchildren; i++)
    if (L->ctl->children[i].id == id) return &L->ctl->children[i];
  return NULL;
}

static link_rec_t *rec_get(links_t *L, int64_t id, const char *name) {
  link_rec_t *r = rec_find(L, id);
  if (r == NULL) {
    if ((r = calloc(1, sizeof(*r))) == NULL) return NULL;
    r->id = id;
    r->since_wall = time(NULL);
    r->next = L->children;
    L->children = r;
  }
  if (name) snprintf(r->name, sizeof(r->name), "%s", name);
  return r;
}

static size_t children_up(const links_t *L) {
  size_t n = 0;
  for (link_rec_t *r = L->children; r; r = r->next)
    if (r->peer && r->peer->up) n++;
  return n;
}

static link_peer_t *peer_new(links_t *L, int role) {
  link_peer_t *p = calloc(1, sizeof(*p));
  if (p == NULL) return NULL;
  p->L = L;
  p->role = role;
  p->next = L->peers;
  L->peers = p;
  L->nconns++;
  return p;
}

static void peer_free(links_t *L, link_peer_t *p) {
  for (link_peer_t **pp = &L->peers; *pp; pp = &(*pp)->next) {
    if (*pp == p) {
      *pp = p->next;
      L->nconns--;
      break;
    }
  }
  free(p);
}

/* ---- closing -------------------------------------------------------------- */

/* close_peer closes |p|'s connection with |code|; |why| becomes its last
 * error. on_close follows. */
static void close_peer(link_peer_t *p, uint64_t code, const char *why) {
  if (p == NULL || p->conn == NULL) return;
  snprintf(p->close_reason, sizeof(p->close_reason), "%s", why);
  quic_conn_close(p->conn, code);
}

static void describe_close(const link_peer_t *p, const quic_close_info *info, char *out,
                           size_t len) {
  if (p->close_reason[0]) snprintf(out, len, "%s", p->close_reason);
  else if (info->by_peer && info->is_app)
    snprintf(out, len, "closed by the peer: %s (0x%llx)", err_name(info->code),
             (unsigned long long)info->code);
  else if (info->idle)
    snprintf(out, len, info->established ? "idle timeout: nothing heard from the peer"
                                         : "handshake timeout: no answer");
  else if (!info->established)
    snprintf(out, len, "handshake failed (%s error 0x%llx)", info->is_app ? "application" : "TLS",
             (unsigned long long)info->code);
  else
    snprintf(out, len, "connection error (%s 0x%llx)", info->is_app ? "application" : "transport",
             (unsigned long long)info->code);
}

/* ---- parent link ---------------------------------------------------------- */

static void arm_retry(links_t *L) {
  ev_timer_stop(L->loop, &L->retry);
  if (L->fsm.state != LINK_FSM_BACKOFF) return;
  double d = L->fsm.retry_at - ev_now(L->loop);
  ev_timer_set(&L->retry, d > 0 ? d : 0., 0.);
  ev_timer_start(L->loop, &L->retry);
}

static void parent_failed(links_t *L, const char *why) {
  snprintf(L->plast_error, sizeof(L->plast_error), "%s", why);
  long long ms = link_fsm_failed(&L->fsm, ev_now(L->loop), L->cfg->reconnectmax_ms, rnd(L));
  L->p_since_wall = time(NULL);
  log_rl(L, RL_PARENT_FAIL, LOG_WARN, "[link %s %s] parent link: %s; retrying in %lld ms",
         L->pname, L->paddr, why, ms);
  arm_retry(L);
}

static int ep_make(links_t *L, int family);

static void parent_dial_to(links_t *L, const struct sockaddr_storage *ssp, socklen_t sl);

/* parent_resolved gets the addresses of the parent's host name (looked up
 * at each attempt: the name may point elsewhere since the last one). With
 * several, attempts take them in turn, so one that does not answer (an
 * IPv6 address of a parent listening on IPv4 only) does not stop the
 * others. */
static void parent_resolved(void *arg, size_t n, const struct sockaddr_storage *ss,
                            const socklen_t *sslen, const char *why) {
  links_t *L = arg;
  L->presolve = NULL;
  if (L->parent != NULL || L->paddr[0] == '\0') return;
  if (n == 0) {
    char msg[300], host[HOSTADDR_HOST_MAX + 1], port[8], q[128];
    if (hostaddr_split(L->paddr, host, sizeof(host), port, sizeof(port), NULL, 0) != 0)
      snprintf(host, sizeof(host), "?");
    snprintf(msg, sizeof(msg), "cannot resolve '%s': %s", log_quote(host, q, sizeof(q)), why);
    parent_failed(L, msg);
    return;
  }
  size_t i = (size_t)((L->fsm.connects ? L->fsm.connects - 1 : 0) % n);
  parent_dial_to(L, &ss[i], sslen[i]);
}

static void parent_dial(links_t *L) {
  struct sockaddr_storage ss;
  socklen_t sl;
  char err[200];
  if (L->parent != NULL || L->presolve != NULL || L->paddr[0] == '\0') return;
  if (parse_addr(L->paddr, 0, &ss, &sl, err, sizeof(err)) != 0) {
    char host[HOSTADDR_HOST_MAX + 1], port[8];
    link_fsm_connecting(&L->fsm, ev_now(L->loop));
    L->p_since_wall = time(NULL);
    if (hostaddr_split(L->paddr, host, sizeof(host), port, sizeof(port), NULL, 0) == 0 &&
        hostaddr_is_name(host)) {
      /* A host name: looked up off the loop, the dial follows. A listening
       * endpoint can only reach its own address family. */
      L->presolve = resolve_start(L->loop, host, port, L->ep_server ? L->ep_family : AF_UNSPEC,
                                  parent_resolved, L);
      if (L->presolve == NULL) parent_failed(L, "cannot start a name lookup");
      return;
    }
    parent_failed(L, err);
    return;
  }
  link_fsm_connecting(&L->fsm, ev_now(L->loop));
  parent_dial_to(L, &ss, sl);
}

static void parent_dial_to(links_t *L, const struct sockaddr_storage *ssp, socklen_t sl) {
  struct sockaddr_storage ss = *ssp;
  if ((int)ss.ss_family != L->ep_family) {
    /* A client-only endpoint follows the parent's address family. */
    if (!L->ep_server && L->nconns == 0 && ep_make(L, ss.ss_family) == 0) {
      /* made anew */
    } else {
      parent_failed(L, "the parent's address family differs from cascadeserver.quic.listenaddr");
      return;
    }
  }
  link_peer_t *p = peer_new(L, ROLE_PARENT);
  L->p_since_wall = time(NULL);
  if (p == NULL) {
    parent_failed(L, "out of memory");
    return;
  }
  if ((p->conn = quic_connect(L->ep, (struct sockaddr *)&ss, sl)) == NULL) {
    peer_free(L, p);
    parent_failed(L, "cannot start a connection");
    return;
  }
  quic_conn_set_user_data(p->conn, p);
  L->parent = p;
  log_debug(MOD, "[link %s %s] connecting (attempt %llu)", L->pname, L->paddr,
            (unsigned long long)L->fsm.connects);
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  links_t *L = w->data;
  (void)loop;
  (void)revents;
  if (L->ep && link_fsm_due(&L->fsm, ev_now(L->loop))) parent_dial(L);
}

/* ---- endpoint callbacks ----------------------------------------------------- */

static link_peer_t *peer_of(const links_t *L, quic_conn *c) {
  void *u = quic_conn_get_user_data(c);
  return u == NULL || u == (const void *)L ? NULL : u;
}

static void refuse(links_t *L, quic_conn *c, int ref, int rl, uint64_t code, const char *fmt,
                   ...) __attribute__((format(printf, 6, 7)));
static void refuse(links_t *L, quic_conn *c, int ref, int rl, uint64_t code, const char *fmt,
                   ...) {
  char why[ERRLEN];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof(why), fmt, ap);
  va_end(ap);
  L->refused[ref]++;
  quic_conn_set_user_data(c, NULL);
  quic_conn_close(c, code);
  log_rl(L, rl, LOG_WARN, "[link %s] child refused (0x%llx): %s", quic_conn_peer_name(c),
         (unsigned long long)code, why);
}

static void on_accept(quic_conn *c, void *ud) {
  links_t *L = ud;
  int64_t epoch;
  int64_t id = peer_node(c, &epoch);
  const ctlc_child_t *k;

  if (L->draining) {
    quic_conn_set_user_data(c, NULL);
    quic_conn_close(c, LINK_ERR_GOING_AWAY);
    return;
  }
  if (id < 0) {
    refuse(L, c, REF_BAD_CERT, RL_BAD_CERT, LINK_ERR_BAD_CERT,
           "its certificate names no cascade node");
    return;
  }
  if ((k = topo_child(L, id)) == NULL) {
    refuse(L, c, REF_NOT_ASSIGNED, RL_NOT_ASSIGNED, LINK_ERR_NOT_ASSIGNED,
           "node %lld is not a child of this node in the topology", (long long)id);
    return;
  }
  if (k->epoch > 0 && epoch != k->epoch) {
    /* Its secret changed (or it was suspended) after this certificate was
     * issued: whoever holds it is not the node any more. */
    refuse(L, c, REF_STALE_CERT, RL_STALE, LINK_ERR_STALE_CERT,
           "node %lld (%s): its certificate names credential epoch %lld, the controller %lld",
           (long long)id, k->name, (long long)epoch, (long long)k->epoch);
    return;
  }
  link_rec_t *r = rec_get(L, id, k->name);
  if (r == NULL) {
    quic_conn_set_user_data(c, NULL);
    quic_conn_close(c, LINK_ERR_CLOSED);
    return;
  }
  if (r->peer == NULL && children_up(L) >= (size_t)L->cfg->maxchildren) {
    refuse(L, c, REF_TOO_MANY, RL_TOO_MANY, LINK_ERR_TOO_MANY,
           "node %lld (%s): cascadeserver.maxchildren (%lld) reached", (long long)id, k->name,
           L->cfg->maxchildren);
    return;
  }
  link_peer_t *p = peer_new(L, ROLE_CHILD);
  if (p == NULL) {
    quic_conn_set_user_data(c, NULL);
    quic_conn_close(c, LINK_ERR_CLOSED);
    return;
  }
  if (r->peer) {
    /* The child came back (restarted, new address): the old link is dead. */
    link_peer_t *old = r->peer;
    old->rec = NULL;
    close_peer(old, LINK_ERR_SUPERSEDED, "superseded by a newer link from the same node");
  }
  p->conn = c;
  p->id = id;
  p->epoch = epoch;
  p->up = 1;
  p->since = ev_now(L->loop);
  p->since_wall = time(NULL);
  p->rec = r;
  r->peer = p;
  r->since_wall = p->since_wall;
  r->last_error[0] = '\0';
  quic_conn_set_user_data(c, p);
  L->accepted++;
  log_info(MOD, "[link %s %s] child up: node %lld, %s", k->name, quic_conn_peer_name(c),
           (long long)id, quic_conn_cipher(c) ? quic_conn_cipher(c) : "?");
}

/* static_found notes |id| as the node answering at cascadeclient.server;
 * the next heartbeat tells the controller. */
static void static_found(links_t *L, int64_t id) {
  if (L->ctl->static_parent_found != id)
    log_info(MOD, "[link %s %s] node %lld answers at the static parent address; waiting for "
                  "the controller to assign it",
             L->pname, L->paddr, (long long)id);
  L->ctl->static_parent_found = id;
}

static void on_connected(quic_conn *c, void *ud) {
  links_t *L = ud;
  link_peer_t *p = peer_of(L, c);
  if (p == NULL || p->orphan || p != L->parent) return;
  int64_t epoch;
  int64_t id = peer_node(c, &epoch);
  if (id < 0) {
    L->refused[REF_BAD_CERT]++;
    log_rl(L, RL_BAD_CERT, LOG_WARN, "[link %s %s] parent refused: its certificate names no node",
           L->pname, L->paddr);
    close_peer(p, LINK_ERR_BAD_CERT, "the parent's certificate names no node");
    return;
  }
  if (L->pexpect != 0 && id != L->pexpect) {
    L->refused[REF_WRONG_PARENT]++;
    char why[ERRLEN];
    snprintf(why, sizeof(why), "the parent at %s is node %lld, the controller named node %lld",
             L->paddr, (long long)id, (long long)L->pexpect);
    log_rl(L, RL_WRONG_PARENT, LOG_WARN, "[link %s %s] parent refused (0x%x): %s", L->pname,
           L->paddr, LINK_ERR_WRONG_PARENT, why);
    close_peer(p, LINK_ERR_WRONG_PARENT, why);
    return;
  }
  if (L->pexpect == 0) {
    /* A static parent address: the handshake showed which node is there
     * (its certificate chains to the CA). Tell the controller, which may
     * place this node under it; until then nothing is sent on this link. */
    char why[ERRLEN];
    static_found(L, id);
    snprintf(why, sizeof(why),
             "node %lld answers at %s; waiting for the controller to assign it as the parent "
             "(an approved node, no loop)",
             (long long)id, L->paddr);
    close_peer(p, LINK_ERR_PROBE, why);
    return;
  }
  if (L->pepoch > 0 && epoch != L->pepoch) {
    L->refused[REF_STALE_CERT]++;
    char why[ERRLEN];
    snprintf(why, sizeof(why),
             "the parent's certificate names credential epoch %lld, the controller %lld",
             (long long)epoch, (long long)L->pepoch);
    log_rl(L, RL_STALE, LOG_WARN, "[link %s %s] parent refused (0x%x): %s", L->pname, L->paddr,
           LINK_ERR_STALE_CERT, why);
    close_peer(p, LINK_ERR_STALE_CERT, why);
    return;
  }
  p->id = id;
  p->epoch = epoch;
  p->up = 1;
  p->since = ev_now(L->loop);
  p->since_wall = time(NULL);
  link_fsm_up(&L->fsm, p->since);
  if (L->on_parent) L->on_parent(L->on_parent_arg, c, L->relay, id);
  L->p_since_wall = p->since_wall;
  L->plast_error[0] = '\0';
  L->rl_last[RL_PARENT_FAIL] = 0; /* the next failure is news */
  log_info(MOD, "[link %s %s] parent up: node %lld, %s", L->pname, L->paddr, (long long)id,
           quic_conn_cipher(c) ? quic_conn_cipher(c) : "?");
}

static void on_stream_open(quic_conn *c, int64_t sid, void *ud) {
  links_t *L = ud;
  link_peer_t *p = peer_of(L, c);
  /* Streams of a link not verified (yet) are never served. */
  if (p == NULL || !p->up) {
    log_debug(MOD, "[link %s] stream %lld before the link was verified: ignored",
              quic_conn_peer_name(c), (long long)sid);
    return;
  }
  qsvc_accept_stream(L->svc, c, sid);
}

static void on_data(quic_conn *c, int64_t sid, const uint8_t *data, size_t len, int fin,
                    void *ud) {
  links_t *L = ud;
  if (!qsvc_on_data(L->svc, c, sid, data, len, fin) && L->relay)
    relay_on_data(L->relay, c, sid, data, len, fin);
}

static void on_writable(quic_conn *c, int64_t sid, void *ud) {
  links_t *L = ud;
  if (!qsvc_on_writable(L->svc, c, sid) && L->relay) relay_on_writable(L->relay, c, sid);
}

static void on_stream_close(quic_conn *c, int64_t sid, uint64_t app_code, void *ud) {
  links_t *L = ud;
  if (!qsvc_on_stream_close(L->svc, c, sid, app_code) && L->relay)
    relay_on_stream_close(L->relay, c, sid, app_code);
}

static void on_stream_stop_sending(quic_conn *c, int64_t sid, void *ud) {
  links_t *L = ud;
  if (L->relay) relay_on_stream_stop_sending(L->relay, c, sid);
}

static void on_close(quic_conn *c, const quic_close_info *info, void *ud) {
  links_t *L = ud;
  link_peer_t *p = peer_of(L, c);
  char why[ERRLEN];

  qsvc_on_conn_close(L->svc, c);
  if (L->relay) relay_on_conn_close(L->relay, c);
  if (p == NULL) return;
  quic_conn_set_user_data(c, NULL);
  describe_close(p, info, why, sizeof(why));
  if (p->role == ROLE_CHILD) {
    link_rec_t *r = p->rec;
    if (r && r->peer == p) {
      r->peer = NULL;
      quic_conn_get_stats(c, &r->last);
      r->since_wall = time(NULL);
      snprintf(r->last_error, sizeof(r->last_error), "%s", why);
    }
    log_info(MOD, "[link %s %s] child down: node %lld: %s", r ? r->name : "-",
             quic_conn_peer_name(c), (long long)p->id, why);
  } else if (!p->orphan && p == L->parent) {
    if (!p->up && L->pexpect == 0 && info->by_peer && info->is_app) {
      /* Probing a static parent address: the node there refused us (it is
       * not our parent yet) after a handshake that verified its certificate
       * against the CA. Which node it is is what the controller needs. */
      int64_t ep;
      int64_t id = peer_node(c, &ep);
      if (id > 0) {
        static_found(L, id);
        snprintf(why, sizeof(why),
                 "node %lld answers at %s; waiting for the controller to assign it as the "
                 "parent (an approved node, no loop)",
                 (long long)id, L->paddr);
      }
    }
    L->parent = NULL;
    if (p->up && L->on_parent) L->on_parent(L->on_parent_arg, NULL, NULL, 0);
    quic_conn_get_stats(c, &L->plast);
    if (p->up) log_info(MOD, "[link %s %s] parent down: %s", L->pname, L->paddr, why);
    if (L->draining) {
      link_fsm_stop(&L->fsm, ev_now(L->loop));
    } else if (info->by_peer && info->is_app && info->code == LINK_ERR_GOING_AWAY) {
      /* The parent shuts down (a restart, most often): no failure to warn
       * about; the backoff starts over and the next failures, while it is
       * away, are logged as usual. */
      snprintf(L->plast_error, sizeof(L->plast_error), "%s", why);
      if (L->fsm.state == LINK_FSM_UP) L->fsm.since = 0; /* counts as stable */
      long long ms = link_fsm_failed(&L->fsm, ev_now(L->loop), L->cfg->reconnectmax_ms, rnd(L));
      L->p_since_wall = time(NULL);
      log_info(MOD, "[link %s %s] the parent is going away; reconnecting in %lld ms", L->pname,
               L->paddr, ms);
      arm_retry(L);
    } else {
      parent_failed(L, why);
    }
  }
  peer_free(L, p);
}

static const quic_callbacks link_cbs = {
    .on_accept = on_accept,
    .on_connected = on_connected,
    .on_stream_open = on_stream_open,
    .on_data = on_data,
    .on_writable = on_writable,
    .on_stream_close = on_stream_close,
    .on_close = on_close,
    .on_stream_stop_sending = on_stream_stop_sending,
};

/* ---- endpoint --------------------------------------------------------------- */

/* ep_drop frees the endpoint; every connection goes without a callback, so
 * the peers are released here. */
static void ep_drop(links_t *L) {
  if (L->ep == NULL) return;
  if (L->lt.busy) {
    L->lt.busy = 0;
    L->lt.have = 1;
    L->lt.ok = 0;
    snprintf(L->lt.error, sizeof(L->lt.error), "the endpoint was restarted");
  }
  for (link_rec_t *r = L->children; r; r = r->next) {
    if (r->peer) {
      r->peer = NULL;
      snprintf(r->last_error, sizeof(r->last_error), "endpoint restarted");
    }
  }
  if (L->parent) {
    if (L->parent->up && L->on_parent) L->on_parent(L->on_parent_arg, NULL, NULL, 0);
    L->parent = NULL;
    if (L->fsm.state != LINK_FSM_IDLE) link_fsm_failed(&L->fsm, ev_now(L->loop), 0, 0);
  }
  while (L->peers) peer_free(L, L->peers);
  quic_endpoint_free(L->ep);
  relay_free(L->relay);
  L->relay = NULL;
  qsvc_free(L->svc);
  L->ep = NULL;
  L->svc = NULL;
  L->nconns = 0;
  free(L->ep_cert);
  L->ep_cert = NULL;
}

/* ep_make (re)creates the endpoint with the current certificate: bound to
 * cascadeserver.quic.listenaddr, or an ephemeral port of |family|. */
static int ep_make(links_t *L, int family) {
  const agent_config_t *cfg = L->cfg;
  const ctlc_t *c = L->ctl;
  struct sockaddr_storage ss;
  socklen_t sl = 0;
  char err[200];
  int server = cfg->quic_listenaddr[0] != '\0';
  quic_config qc;

  if (server) {
    if (parse_addr(cfg->quic_listenaddr, 1, &ss, &sl, err, sizeof(err)) != 0) {
      log_rl(L, RL_EP, LOG_ERROR, "key 'cascadeserver.quic.listenaddr': %s", err);
      return -1;
    }
  } else {
    memset(&ss, 0, sizeof(ss));
    ss.ss_family = (sa_family_t)family;
    sl = family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  }
  ep_drop(L);
  quic_config_default(&qc);
  qc.cert_pem = c->cert_pem;
  qc.key_pem = c->key_pem;
  qc.ca_pem = ca_of(L);
  qc.accept = server;
  qc.idle_timeout = (double)cfg->quic_idle_ms / 1000.0;
  qc.keepalive = (double)cfg->quic_keepalive_ms / 1000.0;
  qc.handshake_timeout = (double)cfg->quic_handshake_ms / 1000.0;
  qc.max_data = (uint64_t)cfg->quic_maxdata;
  qc.max_stream_data = (uint64_t)cfg->quic_maxstreamdata;
  qc.max_stream_window = (uint64_t)cfg->quic_maxstreamwindow;
  qc.max_window = (uint64_t)cfg->quic_maxwindow;
  qc.max_streams_bidi = (uint64_t)cfg->quic_maxstreams;
  qc.stream_sndbuf = (size_t)cfg->quic_sndbuf;
  qc.max_stream_sndbuf = (size_t)cfg->quic_maxsndbuf;
  static const char *const ccs[] = {"auto", "bbr", "bbr2", "cubic", "reno"};
  qc.cc = ccs[cfg->quic_cc];
  qc.lan_rtt = (double)cfg->quic_lanrtt_ms / 1000.0;
  qc.max_probe_interval = (double)cfg->quic_probe_ms / 1000.0;
  qc.max_udp_payload = (size_t)cfg->quic_maxudppayload;
  relay_config_t rc = {.node_id = c->instance_id};
  if ((L->svc = qsvc_new(L->loop)) == NULL ||
      (L->hub && (L->relay = relay_new(L->loop, L->hub, L->svc, &rc)) == NULL) ||
      (L->ep = quic_endpoint_new(L->loop, &qc, (struct sockaddr *)&ss, sl, &link_cbs, L)) ==
          NULL ||
      (L->ep_cert = strdup(c->cert_pem)) == NULL) {
    quic_endpoint_free(L->ep);
    relay_free(L->relay);
    L->relay = NULL;
    qsvc_free(L->svc);
    L->ep = NULL;
    L->svc = NULL;
    L->ep_retry_s = L->ep_retry_s < 1 ? 1 : L->ep_retry_s * 2;
    if (L->ep_retry_s > EP_RETRY_MAX_S) L->ep_retry_s = EP_RETRY_MAX_S;
    L->ep_retry_at = ev_now(L->loop) + L->ep_retry_s;
    log_rl(L, RL_EP, LOG_WARN, "QUIC endpoint on %s not available; trying again in %.0f s",
           server ? cfg->quic_listenaddr : "an ephemeral port", L->ep_retry_s);
    return -1;
  }
  L->ep_retry_s = 0;
  L->ep_server = server;
  L->ep_family = ss.ss_family;
  x509_cert_info(c->cert_pem, NULL, &L->ep_not_before, &L->ep_not_after, err, sizeof(err));
  struct sockaddr_storage bound;
  socklen_t bl;
  char shown[INET6_ADDRSTRLEN + 8] = "?";
  if (quic_endpoint_local_addr(L->ep, &bound, &bl) == 0) {
    char h[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (bound.ss_family == AF_INET) {
      inet_ntop(AF_INET, &((struct sockaddr_in *)&bound)->sin_addr, h, sizeof(h));
      port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    } else {
      inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&bound)->sin6_addr, h, sizeof(h));
      port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
    }
    snprintf(shown, sizeof(shown), "%s:%u", h, port);
  }
  log_info(MOD, "QUIC endpoint on %s (%s) as node %lld", shown,
           server ? "children may link" : "parent link only", (long long)c->instance_id);
  return 0;
}

/* ---- reconcile -------------------------------------------------------------- */

static int ready(const links_t *L) {
  const ctlc_t *c = L->ctl;
  return c->instance_id != 0 && c->cert_id == c->instance_id && c->cert_pem && c->key_pem &&
         ca_of(L) && c->applied_gen > 0;
}

/* parent_target is where the parent link should go: the controller's
 * assignment (at the static cascadeclient.server address when that is where
 * the node was found, else at the address it advertises), else the static
 * address to probe: a handshake that only learns which node answers there. */
static void parent_target(const links_t *L, char *addr, size_t alen, int64_t *id, char *name,
                          size_t nlen) {
  const ctlc_t *c = L->ctl;
  int statik = L->cfg->client_enable && L->cfg->client_server[0];
  addr[0] = name[0] = '\0';
  *id = 0;
  if (c->parent_id != 0) {
    if (statik && c->parent_id == c->static_parent_found)
      snprintf(addr, alen, "%s", L->cfg->client_server);
    else
      snprintf(addr, alen, "%s", c->parent_quic ? c->parent_quic : "");
    snprintf(name, nlen, "%s", c->parent_name ? c->parent_name : "");
    *id = c->parent_id;
    if (addr[0] == '\0') snprintf(addr, alen, "-"); /* assigned, but no address */
  } else if (statik) {
    snprintf(addr, alen, "%s", L->cfg->client_server);
    snprintf(name, nlen, "static parent");
  }
}

void links_reconcile(links_t *L) {
  char addr[260], name[80];
  int64_t id;

  if (L == NULL || L->draining || !ready(L)) return;
  const ctlc_t *c = L->ctl;
  double now = ev_now(L->loop);
  parent_target(L, addr, sizeof(addr), &id, name, sizeof(name));
  int server = L->cfg->quic_listenaddr[0] != '\0';

  if (L->ep == NULL) {
    if (!server && addr[0] == '\0') return;
    if (now < L->ep_retry_at) return;
    struct sockaddr_storage ss;
    socklen_t sl;
    char err[200];
    int fam = parse_addr(addr, 0, &ss, &sl, err, sizeof(err)) == 0 ? ss.ss_family : AF_INET;
    if (ep_make(L, fam) != 0) return;
  } else if (strcmp(L->ep_cert, c->cert_pem) != 0) {
    /* A renewed certificate: new links need it. The endpoint cannot swap
     * credentials, so it restarts when no link would be cut, or, at the
     * latest, when a sixth of the old certificate's life is left (renewal
     * comes at two thirds): links are then closed and come back at once. */
    time_t wall = time(NULL);
    time_t late = L->ep_not_after - (L->ep_not_after - L->ep_not_before) / 6;
    if (L->nconns == 0) {
      L->renewing = 0;
      log_info(MOD, "certificate renewed: restarting the QUIC endpoint");
      if (ep_make(L, L->ep_family) != 0) return;
    } else if (wall >= late && !L->renewing) {
      L->renewing = 1;
      log_info(MOD, "certificate renewed: closing %zu links to restart the QUIC endpoint",
               L->nconns);
      close_peer(L->parent, LINK_ERR_RENEW, "restarting with a renewed certificate");
      for (link_rec_t *r = L->children; r; r = r->next)
        close_peer(r->peer, LINK_ERR_RENEW, "restarting with a renewed certificate");
    }
  }

  /* Children the topology no longer gives this node lose their link now. */
  for (link_rec_t **pp = &L->children; *pp;) {
    link_rec_t *r = *pp;
    const ctlc_child_t *k = topo_child(L, r->id);
    if (k == NULL) {
      if (r->peer) {
        log_info(MOD, "[link %s %s] node %lld is no longer a child of this node: closing",
                 r->name, quic_conn_peer_name(r->peer->conn), (long long)r->id);
        r->peer->rec = NULL;
        close_peer(r->peer, LINK_ERR_NOT_ASSIGNED, "no longer assigned to this parent");
      }
      *pp = r->next;
      free(r);
      continue;
    }
    snprintf(r->name, sizeof(r->name), "%s", k->name);
    if (r->peer && r->peer->up && k->epoch > 0 && r->peer->epoch != k->epoch) {
      /* The node's credentials changed: the certificate this link was made
       * with no longer speaks for it. */
      log_info(MOD, "[link %s %s] node %lld has new credentials (epoch %lld): closing", r->name,
               quic_conn_peer_name(r->peer->conn), (long long)r->id, (long long)k->epoch);
      close_peer(r->peer, LINK_ERR_STALE_CERT, "its credentials changed (secret or approval)");
    }
    pp = &r->next;
  }
  for (size_t i = 0; i < c->nchildren; i++) rec_get(L, c->children[i].id, c->children[i].name);

  /* The parent: a new target drops the old link and dials at once. */
  if (strcmp(addr, L->paddr) != 0 || id != L->pexpect) {
    if (L->parent) {
      L->parent->orphan = 1;
      close_peer(L->parent, addr[0] ? LINK_ERR_PARENT_CHANGED : LINK_ERR_CLOSED,
                 "the controller assigned another parent");
      L->parent = NULL;
    }
    if (addr[0])
      log_info(MOD, "parent link: %s at %s (node %lld)", name, addr, (long long)id);
    else if (L->paddr[0])
      log_info(MOD, "parent link: none");
    resolve_cancel(L->presolve); /* a lookup for the old target */
    L->presolve = NULL;
    snprintf(L->paddr, sizeof(L->paddr), "%s", addr);
    snprintf(L->pname, sizeof(L->pname), "%s", name);
    L->pexpect = id;
    L->plast_error[0] = '\0';
    memset(&L->plast, 0, sizeof(L->plast));
    link_fsm_stop(&L->fsm, now);
    L->p_since_wall = time(NULL);
    ev_timer_stop(L->loop, &L->retry);
  }
  L->pepoch = id ? c->parent_epoch : 0;
  if (L->parent && L->parent->up && L->pepoch > 0 && L->parent->epoch != L->pepoch) {
    log_info(MOD, "[link %s %s] the parent has new credentials (epoch %lld): closing", L->pname,
             L->paddr, (long long)L->pepoch);
    close_peer(L->parent, LINK_ERR_STALE_CERT, "the parent's credentials changed");
  }
  if (L->paddr[0] == '\0') return;
  if (strcmp(L->paddr, "-") == 0) {
    snprintf(L->plast_error, sizeof(L->plast_error),
             "the parent node %lld advertises no QUIC address", (long long)L->pexpect);
    return;
  }
  if (L->fsm.state == LINK_FSM_IDLE) {
    link_fsm_start(&L->fsm, now);
    L->p_since_wall = time(NULL);
  }
  if (link_fsm_due(&L->fsm, now)) parent_dial(L);
  else arm_retry(L);
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)loop;
  (void)revents;
  links_reconcile(w->data);
}

/* ---- status ----------------------------------------------------------------- */

/* ms_json: milliseconds (> 0) to the microsecond (3 decimals). */
static json_t *ms_json(double ms) {
  return json_real((double)(long long)(ms * 1000.0 + 0.5) / 1000.0);
}

static json_t *wall_json(time_t t) {
  char buf[TIMEFMT_LEN];
  const char *s = timefmt_rfc3339((int64_t)t, buf);
  return s ? json_string(s) : json_null();
}

static json_t *link_json(int64_t id, const char *name, const char *role, const char *addr,
                         const char *state, time_t since, const quic_conn *conn,
                         const quic_conn_stats *last, const char *err) {
  quic_conn_stats st;
  if (conn) quic_conn_get_stats(conn, &st);
  else st = *last;
  json_t *o = json_pack("{s:o,s:s,s:s,s:s,s:s,s:o,s:o,s:o,s:I,s:I,s:I,s:I,s:I,s:I,s:o}", "peer_id",
                   id > 0 ? json_integer(id) : json_null(), "peer_name", name, "role", role,
                   "address", addr, "state", state, "since", wall_json(since), "rtt_ms",
                   conn && st.srtt_ms > 0 ? ms_json(st.srtt_ms) : json_null(), "min_rtt_ms",
                   conn && st.min_rtt_ms > 0 ? ms_json(st.min_rtt_ms) : json_null(), "cwnd",
                   (json_int_t)(conn ? st.cwnd : 0), "in_flight",
                   (json_int_t)(conn ? st.bytes_in_flight : 0), "unsent",
                   (json_int_t)(conn ? st.bytes_unsent : 0), "bytes_in",
                   (json_int_t)st.bytes_recv, "bytes_out", (json_int_t)st.bytes_sent, "lost",
                   (json_int_t)st.pkts_lost, "last_error",
                   err && err[0] ? json_string(err) : json_null());
  if (o != NULL)
    json_object_set_new(o, "cc", conn && st.cc ? json_string(st.cc) : json_null());
  return o;
}

json_t *links_status(const links_t *L) {
  json_t *a = json_array();
  if (L == NULL || a == NULL) return a;
  if (L->paddr[0]) {
    const link_peer_t *p = L->parent;
    int64_t id = p && p->id ? p->id : L->pexpect;
    json_array_append_new(
        a, link_json(id, L->pname, "parent", strcmp(L->paddr, "-") ? L->paddr : "",
                     link_fsm_state_name(L->fsm.state), L->p_since_wall, p ? p->conn : NULL,
                     &L->plast, L->plast_error));
  }
  for (const link_rec_t *r = L->children; r; r = r->next) {
    const link_peer_t *p = r->peer;
    json_array_append_new(
        a, link_json(r->id, r->name, "child", p ? quic_conn_peer_name(p->conn) : "",
                     p && p->up ? "up" : "down", r->since_wall, p ? p->conn : NULL, &r->last,
                     r->last_error));
  }
  return a;
}

char *links_metrics(const links_t *L) {
  char *out = NULL;
  int pup = L && L->fsm.state == LINK_FSM_UP;
  size_t cup = L ? children_up(L) : 0;
  if (asprintf(&out,
               "# HELP cascade_links_up Links up, by the peer's role.\n"
               "# TYPE cascade_links_up gauge\n"
               "cascade_links_up{role=\"parent\"} %d\n"
               "cascade_links_up{role=\"child\"} %zu\n"
               "# HELP cascade_link_refused_total Links refused, by reason.\n"
               "# TYPE cascade_link_refused_total counter\n"
               "cascade_link_refused_total{reason=\"%s\"} %llu\n"
               "cascade_link_refused_total{reason=\"%s\"} %llu\n"
               "cascade_link_refused_total{reason=\"%s\"} %llu\n"
               "cascade_link_refused_total{reason=\"%s\"} %llu\n"
               "cascade_link_refused_total{reason=\"%s\"} %llu\n"
               "# HELP cascade_link_accepted_total Child links accepted.\n"
               "# TYPE cascade_link_accepted_total counter\n"
               "cascade_link_accepted_total %llu\n"
               "# HELP cascade_link_parent_attempts_total Attempts to link to the parent.\n"
               "# TYPE cascade_link_parent_attempts_total counter\n"
               "cascade_link_parent_attempts_total %llu\n"
               "# HELP cascade_link_parent_failures_total Parent attempts or links that failed.\n"
               "# TYPE cascade_link_parent_failures_total counter\n"
               "cascade_link_parent_failures_total %llu\n",
               pup, cup, ref_names[0], (unsigned long long)(L ? L->refused[0] : 0), ref_names[1],
               (unsigned long long)(L ? L->refused[1] : 0), ref_names[2],
               (unsigned long long)(L ? L->refused[2] : 0), ref_names[3],
               (unsigned long long)(L ? L->refused[3] : 0), ref_names[4],
               (unsigned long long)(L ? L->refused[4] : 0),
               (unsigned long long)(L ? L->accepted : 0),
               (unsigned long long)(L ? L->fsm.connects : 0),
               (unsigned long long)(L ? L->fsm.failures : 0)) < 0)
    return NULL;
  return out;
}

static void report(ctlc_link_report_t *o, int64_t id, int role, const link_peer_t *p) {
  quic_conn_stats st;
  memset(o, 0, sizeof(*o));
  o->peer_id = id;
  o->role = role;
  if (p == NULL || !p->up) return;
  quic_conn_get_stats(p->conn, &st);
  o->up = 1;
  o->rtt_us = (uint64_t)(st.srtt_ms * 1000.0);
  o->bytes_sent = st.bytes_sent;
  o->bytes_recv = st.bytes_recv;
  o->lost = st.pkts_lost;
  o->up_since = (int64_t)p->since_wall;
}

size_t links_reports(const links_t *L, ctlc_link_report_t *out, size_t max) {
  size_t n = 0;
  if (L == NULL) return 0;
  if (L->paddr[0] && n < max) {
    const link_peer_t *p = L->parent;
    report(&out[n++], p && p->id ? p->id : L->pexpect, ROLE_PARENT, p);
  }
  for (const link_rec_t *r = L->children; r && n < max; r = r->next)
    report(&out[n++], r->id, ROLE_CHILD, r->peer);
  return n;
}

/* ---- link test ---------------------------------------------------------------- */

static void lt_finish(links_t *L, int ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void lt_finish(links_t *L, int ok, const char *fmt, ...) {
  linktest_t *t = &L->lt;
  va_list ap;
  if (!t->busy) return;
  t->busy = 0;
  t->have = 1;
  t->ok = ok;
  t->t1 = ev_now(L->loop);
  va_start(ap, fmt);
  vsnprintf(t->error, sizeof(t->error), fmt, ap);
  va_end(ap);
  ev_now_update(L->loop);
  t->t1 = ev_now(L->loop);
  if (ok)
    log_info(MOD, "[link %s %s] link test: %llu bytes in %.3f s", L->pname, L->paddr,
             (unsigned long long)t->got, t->t1 - t->t0);
  else
    log_warn(MOD, "[link %s %s] link test failed after %llu bytes: %s", L->pname, L->paddr,
             (unsigned long long)t->got, t->error);
}

static void lt_answer(quic_conn *c, int64_t sid, int accepted, uint32_t code, const char *reason,
                      void *ud) {
  links_t *L = ud;
  char q[200];
  (void)c;
  if (!L->lt.busy || sid != L->lt.sid) return;
  if (!accepted) lt_finish(L, 0, "refused (0x%x): %s", code, log_quote(reason, q, sizeof(q)));
}

static void lt_data(quic_conn *c, int64_t sid, const uint8_t *data, size_t len, int fin,
                    void *ud) {
  links_t *L = ud;
  linktest_t *t = &L->lt;
  if (!t->busy || sid != t->sid) return;
  size_t off = 0;
  while (off < len) {
    size_t start = (size_t)((t->got + off) % QSVC_SOURCE_MOD);
    size_t n = sizeof(L->pattern) - start;
    if (n > len - off) n = len - off;
    if (memcmp(data + off, L->pattern + start, n) != 0) {
      t->got += off;
      quic_stream_reset(c, sid, QSVC_ERR_BAD_OPTION);
      lt_finish(L, 0, "byte mismatch near offset %llu", (unsigned long long)t->got);
      return;
    }
    off += n;
  }
  t->got += len;
  if (t->got > t->want) {
    quic_stream_reset(c, sid, QSVC_ERR_BAD_OPTION);
    lt_finish(L, 0, "more bytes than asked for");
    return;
  }
  if (fin) {
    quic_stream_write(c, sid, NULL, 0, 1); /* our direction ends too */
    if (t->got == t->want) lt_finish(L, 1, "%s", "");
    else lt_finish(L, 0, "stream ended after %llu of %llu bytes", (unsigned long long)t->got,
                   (unsigned long long)t->want);
  }
}

static void lt_close(quic_conn *c, int64_t sid, uint64_t app_code, void *ud) {
  links_t *L = ud;
  (void)c;
  if (!L->lt.busy || sid != L->lt.sid) return;
  lt_finish(L, 0, app_code == QSVC_ERR_CONN_CLOSED ? "the link went down"
                                                   : "stream reset (0x%llx)",
            (unsigned long long)app_code);
}

static const qsvc_call_cb lt_cbs = {
    .on_answer = lt_answer, .on_data = lt_data, .on_writable = NULL, .on_close = lt_close};

int links_linktest_start(links_t *L, uint64_t bytes) {
  linktest_t *t = &L->lt;
  char n[24];
  if (bytes == 0 || bytes > LINKTEST_MAX_BYTES) return -EINVAL;
  if (t->busy) return -EBUSY;
  if (L->parent == NULL || !L->parent->up || L->svc == NULL) return -ENOTCONN;
  snprintf(n, sizeof(n), "%llu", (unsigned long long)bytes);
  const char *keys[1] = {"bytes"}, *vals[1] = {n};
  memset(t, 0, sizeof(*t));
  int rv = qsvc_open(L->svc, L->parent->conn, STREAM_SOURCE, "linktest", 1, keys, vals, &lt_cbs,
                     L, &t->sid);
  if (rv != 0) return rv;
  t->busy = 1;
  t->conn = L->parent->conn;
  t->want = bytes;
  ev_now_update(L->loop);
  t->t0 = ev_now(L->loop);
  return 0;
}

json_t *links_linktest_json(const links_t *L) {
  const linktest_t *t = &L->lt;
  if (!t->busy && !t->have) return json_pack("{s:s}", "state", "idle");
  double el = (t->busy ? ev_now(L->loop) : t->t1) - t->t0;
  return json_pack("{s:s,s:I,s:I,s:f,s:o,s:o}", "state",
                   t->busy ? "running" : (t->ok ? "done" : "failed"), "bytes",
                   (json_int_t)t->want, "received", (json_int_t)t->got, "elapsed_s", el,
                   "goodput_mbps",
                   !t->busy && t->ok && el > 0 ? json_real((double)t->got * 8 / el / 1e6)
                                               : json_null(),
                   "error", !t->busy && !t->ok ? json_string(t->error) : json_null());
}

/* ---- life cycle --------------------------------------------------------------- */

links_t *links_new(struct ev_loop *loop, const agent_config_t *cfg, ctlc_t *ctl) {
  links_t *L = calloc(1, sizeof(*L));
  if (L == NULL) return NULL;
  L->loop = loop;
  L->cfg = cfg;
  L->ctl = ctl;
  L->rng = ctl->hub->rng ^ 0x5851f42d4c957f2dull;
  for (size_t i = 0; i < sizeof(L->pattern); i++) L->pattern[i] = (uint8_t)(i % QSVC_SOURCE_MOD);
  link_fsm_init(&L->fsm, ev_now(loop));
  ev_timer_init(&L->retry, retry_cb, 0., 0.);
  L->retry.data = L;
  ev_timer_init(&L->tick, tick_cb, TICK_S, TICK_S);
  L->tick.data = L;
  ev_timer_start(loop, &L->tick);
  return L;
}

void links_set_media(links_t *L, hub_t *hub, links_parent_fn fn, void *arg) {
  L->hub = hub;
  L->on_parent = fn;
  L->on_parent_arg = arg;
}

void links_drain(links_t *L) {
  if (L == NULL || L->draining) return;
  L->draining = 1;
  ev_timer_stop(L->loop, &L->retry);
  for (link_peer_t *p = L->peers; p; p = p->next) {
    if (p->conn == NULL) continue;
    if (p->role == ROLE_CHILD && p->up)
      log_info(MOD, "[link %s %s] closing: this node shuts down", p->rec ? p->rec->name : "-",
               quic_conn_peer_name(p->conn));
    close_peer(p, LINK_ERR_GOING_AWAY, "this node shuts down");
  }
  if (L->parent == NULL) link_fsm_stop(&L->fsm, ev_now(L->loop));
}

size_t links_open(const links_t *L) {
  size_t n = 0;
  for (const link_peer_t *p = L ? L->peers : NULL; p; p = p->next) n++;
  return n;
}

void links_free(links_t *L) {
  if (L == NULL) return;
  ev_timer_stop(L->loop, &L->tick);
  ev_timer_stop(L->loop, &L->retry);
  resolve_cancel(L->presolve);
  ep_drop(L);
  while (L->children) {
    link_rec_t *r = L->children;
    L->children = r->next;
    free(r);
  }
  free(L);
}
