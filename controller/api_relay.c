/* ANY /api/relay/{instanceId}/{path}: see api_relay.h and docs/api.md. The
 * control sessions are reached only through relay_sessions_t. */
#define _GNU_SOURCE
#include "api_relay.h"
#include "fwdsig.h"

#include <errno.h>
#include <stdarg.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "ctl.h"
#include "ctlmsg.h"
#include "http.h"
#include "log.h"
#include "relaybounds.h"
#include "relpath.h"
#include "valid.h"

#define MOD "relay"
#define PREFIX "/api/relay/"
#define READ_BLOCK (64 * 1024)

enum {
  R_QUEUED = 1, /* waiting for the node's poll */
  R_SENT,       /* handed to the node, no answer yet */
  R_HEAD,       /* status and headers known; body flowing */
  R_FAILED,     /* fail_status / fail_msg answer (before the head) or a cut body */
};

typedef struct hdr {
  char *name, *value;
} hdr_t;

struct ctl_relay {
  pthread_mutex_t mu;
  int refs;
  relay_reg_t *reg;
  uint64_t id;
  int64_t node;
  /* The request: fixed after creation. */
  char *method, *path, *query, *body;
  size_t body_len;
  relay_header_t *hv;          /* owned strings */
  size_t nh;
  size_t wire_size;
  /* State, under mu. */
  int state;
  int fail_status;
  char fail_msg[256];
  int status;
  hdr_t *rh;                  /* the node's response headers */
  size_t nrh;
  long long content_length;   /* -1 unknown */
  uint8_t *buf;               /* answer bytes not yet read by the caller */
  size_t off, len, cap;
  int end;                    /* the node sent its last message */
  int cancelled;              /* the caller's request is over */
  struct park *ack;           /* a parked ack, owned */
  struct MHD_Connection *conn;
  int suspended;              /* conn is suspended by us */
  int64_t deadline_ms;        /* first answer due */
  int64_t last_ms;            /* last message from the node */
  uint64_t bytes;
  int listed;                 /* in the registry */
};

struct relay_reg {
  struct ctl *ctl;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  ctl_relay_t **v;            /* the relays in progress (one reference each) */
  size_t n, cap;
  uint64_t next_id;
  int stopping;
  int fwd_threads;            /* forwarding threads running (relay_fwd.c) */
  int fwd_stop;               /* they must end: the controller is shutting down */
  relay_sessions_t sess;      /* set before the HTTP server starts, then read only */
  pthread_t reaper;
};

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the control sessions (relay_sessions.h) ------------------------------ */

void relay_reg_set_sessions(relay_reg_t *g, relay_sessions_t sessions) { g->sess = sessions; }

static int sess_submit(relay_reg_t *g, int64_t node, ctl_relay_t *rl) {
  return g->sess.submit ? g->sess.submit(g->sess.arg, node, rl) : -1;
}

static int sess_held_here(relay_reg_t *g, int64_t node) {
  return g->sess.held_here ? g->sess.held_here(g->sess.arg, node) : 0;
}

static const char *sess_replica(relay_reg_t *g) {
  return g->sess.replica ? g->sess.replica(g->sess.arg) : "";
}

static void sess_ack(relay_reg_t *g, struct park *ack, int cancelled) {
  g->sess.ack(g->sess.arg, ack, cancelled);
}

/* ---- references --------------------------------------------------------- */

void relay_ref(ctl_relay_t *rl) {
  pthread_mutex_lock(&rl->mu);
  rl->refs++;
  pthread_mutex_unlock(&rl->mu);
}

void relay_unref(ctl_relay_t *rl) {
  if (rl == NULL) return;
  pthread_mutex_lock(&rl->mu);
  int last = --rl->refs == 0;
  pthread_mutex_unlock(&rl->mu);
  if (!last) return;
  if (rl->ack) sess_ack(rl->reg, rl->ack, 1);
  for (size_t i = 0; i < rl->nh; i++) {
    free((char *)rl->hv[i].name);
    free((char *)rl->hv[i].value);
  }
  for (size_t i = 0; i < rl->nrh; i++) {
    free(rl->rh[i].name);
    free(rl->rh[i].value);
  }
  free(rl->hv);
  free(rl->rh);
  free(rl->method);
  free(rl->path);
  free(rl->query);
  free(rl->body);
  free(rl->buf);
  pthread_mutex_destroy(&rl->mu);
  free(rl);
}

/* resume_locked wakes the caller's connection if we suspended it. */
static void resume_locked(ctl_relay_t *rl) {
  if (rl->suspended) {
    rl->suspended = 0;
    MHD_resume_connection(rl->conn);
  }
}

/* fail_locked ends |rl| with an error answer (or cuts a started body). */
static void fail_locked(ctl_relay_t *rl, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail_locked(ctl_relay_t *rl, int status, const char *fmt, ...) {
  va_list ap;
  if (rl->state == R_FAILED || (rl->state == R_HEAD && rl->end)) return;
  rl->state = R_FAILED;
  rl->fail_status = status;
  va_start(ap, fmt);
  vsnprintf(rl->fail_msg, sizeof(rl->fail_msg), fmt, ap);
  va_end(ap);
  resume_locked(rl);
}

/* ---- the registry ----------------------------------------------------------- */

static void reg_remove_locked(relay_reg_t *g, ctl_relay_t *rl) {
  for (size_t i = 0; i < g->n; i++)
    if (g->v[i] == rl) {
      g->v[i] = g->v[--g->n];
      return;
    }
}

/* reg_unlist drops |rl| from the registry (its reference too). */
static void reg_unlist(relay_reg_t *g, ctl_relay_t *rl) {
  int had = 0;
  pthread_mutex_lock(&g->mu);
  pthread_mutex_lock(&rl->mu);
  if (rl->listed) {
    rl->listed = 0;
    had = 1;
    reg_remove_locked(g, rl);
  }
  pthread_mutex_unlock(&rl->mu);
  pthread_mutex_unlock(&g->mu);
  if (had) relay_unref(rl);
}

static void *reaper_main(void *arg) {
  relay_reg_t *g = arg;
  pthread_mutex_lock(&g->mu);
  while (!g->stopping) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += 100 * 1000000;
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&g->cv, &g->mu, &ts);
    int64_t now = now_ms();
    for (size_t i = 0; i < g->n; i++) {
      ctl_relay_t *rl = g->v[i];
      pthread_mutex_lock(&rl->mu);
      if ((rl->state == R_QUEUED || rl->state == R_SENT) && now >= rl->deadline_ms) {
        log_warn(MOD, "relay %llu to node %lld: no answer within %lld ms",
                 (unsigned long long)rl->id, (long long)rl->node,
                 (long long)g->ctl->cfg->relay_timeout_ms);
        fail_locked(rl, 504, "node %lld did not answer within %lld ms", (long long)rl->node,
                    (long long)g->ctl->cfg->relay_timeout_ms);
      } else if (rl->state == R_HEAD && !rl->end && rl->ack == NULL &&
                 now - rl->last_ms > RELAY_IDLE_MS) {
        fail_locked(rl, 504, "node %lld stopped sending", (long long)rl->node);
      }
      pthread_mutex_unlock(&rl->mu);
    }
  }
  pthread_mutex_unlock(&g->mu);
  return NULL;
}

relay_reg_t *relay_reg_new(struct ctl *ctl) {
  relay_reg_t *g = calloc(1, sizeof(*g));
  if (g == NULL) return NULL;
  g->ctl = ctl;
  pthread_mutex_init(&g->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&g->cv, &ca);
  pthread_condattr_destroy(&ca);
  g->cap = (size_t)ctl->cfg->relay_max;
  g->v = calloc(g->cap, sizeof(*g->v));
  if (g->v == NULL || pthread_create(&g->reaper, NULL, reaper_main, g) != 0) {
    free(g->v);
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g);
    return NULL;
  }
  return g;
}

void relay_reg_shutdown(relay_reg_t *g) {
  if (g == NULL) return;
  int64_t until = now_ms() + 2000;
  for (;;) {
    int suspended = 0;
    pthread_mutex_lock(&g->mu);
    g->fwd_stop = 1;
    suspended += g->fwd_threads; /* they see fwd_stop within their poll slice */
    for (size_t i = 0; i < g->n; i++) {
      ctl_relay_t *rl = g->v[i];
      pthread_mutex_lock(&rl->mu);
      fail_locked(rl, 503, "the controller is shutting down");
      resume_locked(rl);
      pthread_mutex_unlock(&rl->mu);
    }
    /* Count those still suspended: a reader may have suspended again. */
    for (size_t i = 0; i < g->n; i++) suspended += g->v[i]->suspended;
    pthread_mutex_unlock(&g->mu);
    if (!suspended || now_ms() > until) break;
    usleep(10000);
  }
}

void relay_reg_free(relay_reg_t *g) {
  if (g == NULL) return;
  pthread_mutex_lock(&g->mu);
  if (g->fwd_threads > 0) {
    /* A forwarding thread stuck past relay_reg_shutdown's wait: leave the
     * registry to the process exit rather than free it under the thread. */
    pthread_mutex_unlock(&g->mu);
    log_warn(MOD, "%d relay forwarding thread(s) still running at exit", g->fwd_threads);
    return;
  }
  g->stopping = 1;
  pthread_cond_signal(&g->cv);
  pthread_mutex_unlock(&g->mu);
  pthread_join(g->reaper, NULL);
  for (size_t i = 0; i < g->n; i++) relay_unref(g->v[i]);
  free(g->v);
  pthread_mutex_destroy(&g->mu);
  pthread_cond_destroy(&g->cv);
  free(g);
}

size_t relay_reg_active(relay_reg_t *g) {
  if (g == NULL) return 0;
  pthread_mutex_lock(&g->mu);
  size_t n = g->n;
  pthread_mutex_unlock(&g->mu);
  return n;
}

/* ---- the control server's side ---------------------------------------------- */

size_t relay_fill(ctl_relay_t *rl, relay_request_t *out) {
  pthread_mutex_lock(&rl->mu);
  int live = !rl->cancelled && rl->state == R_QUEUED;
  pthread_mutex_unlock(&rl->mu);
  if (!live) return 0;
  memset(out, 0, sizeof(*out));
  out->id = rl->id;
  out->method = rl->method;
  out->path = rl->path;
  out->query = rl->query;
  out->nheaders = rl->nh;
  out->headers = rl->hv;
  out->body = (const uint8_t *)rl->body;
  out->body_len = rl->body_len;
  return rl->wire_size;
}

void relay_sent(ctl_relay_t *rl) {
  pthread_mutex_lock(&rl->mu);
  if (rl->state == R_QUEUED) rl->state = R_SENT;
  pthread_mutex_unlock(&rl->mu);
}

static ctl_relay_t *reg_find(relay_reg_t *g, uint64_t id) {
  ctl_relay_t *rl = NULL;
  pthread_mutex_lock(&g->mu);
  for (size_t i = 0; i < g->n; i++)
    if (g->v[i]->id == id) {
      rl = g->v[i];
      relay_ref(rl);
      break;
    }
  pthread_mutex_unlock(&g->mu);
  return rl;
}

static const char *const hop_by_hop[] = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "trailers", "transfer-encoding", "upgrade", "proxy-connection", NULL};

/* hop_header: a hop-by-hop header, one the server sets itself, or one the
 * Connection header names. */
static int hop_header(const char *name, const char *connection) {
  for (int i = 0; hop_by_hop[i]; i++)
    if (strcasecmp(name, hop_by_hop[i]) == 0) return 1;
  if (strcasecmp(name, "content-length") == 0 || strcasecmp(name, "date") == 0 ||
      strcasecmp(name, "server") == 0)
    return 1;
  /* Which browser origins may read answers is the controller's rule
   * (http.cors.origins), not the node's. */
  if (strncasecmp(name, "access-control-", 15) == 0) return 1;
  if (connection) {
    size_t n = strlen(name);
    for (const char *p = connection; (p = strcasestr(p, name)) != NULL; p += n) {
      int start = p == connection || p[-1] == ',' || p[-1] == ' ';
      int stop = p[n] == '\0' || p[n] == ',' || p[n] == ' ';
      if (start && stop) return 1;
    }
  }
  return 0;
}

int relay_deliver(relay_reg_t *g, int64_t node, const relay_response_t *m, struct park *ack) {
  ctl_relay_t *rl = reg_find(g, m->id);
  int rv = 0;
  if (rl == NULL) return -1;
  pthread_mutex_lock(&rl->mu);
  if (rl->node != node || rl->cancelled || rl->state == R_FAILED ||
      (rl->state == R_HEAD && rl->end)) {
    rv = -1;
    goto out;
  }
  rl->last_ms = now_ms();
  if (rl->state != R_HEAD) {
    if (m->status == 0) {
      fail_locked(rl, 502, "node %lld answered without a status", (long long)node);
      rv = -1;
      goto out;
    }
    const char *connection = NULL;
    for (size_t i = 0; i < m->nheaders; i++)
      if (strcasecmp(m->headers[i].name, "connection") == 0) connection = m->headers[i].value;
    rl->rh = calloc(m->nheaders ? m->nheaders : 1, sizeof(*rl->rh));
    if (rl->rh == NULL) {
      fail_locked(rl, 500, "out of memory");
      rv = -1;
      goto out;
    }
    rl->content_length = -1;
    for (size_t i = 0; i < m->nheaders; i++) {
      const relay_header_t *h = &m->headers[i];
      if (strcasecmp(h->name, "content-length") == 0) {
        char *end = NULL;
        long long v = strtoll(h->value, &end, 10);
        if (end != h->value && *end == '\0' && v >= 0) rl->content_length = v;
      }
      if (hop_header(h->name, connection)) continue;
      hdr_t *o = &rl->rh[rl->nrh];
      if ((o->name = strdup(h->name)) == NULL || (o->value = strdup(h->value)) == NULL) {
        free(o->name);
        continue;
      }
      rl->nrh++;
    }
    rl->status = (int)m->status;
    rl->state = R_HEAD;
  } else if (m->status != 0) {
    fail_locked(rl, 502, "node %lld sent a second status", (long long)node);
    rv = -1;
    goto out;
  }
  if (m->len) {
    if (rl->off > 0 && rl->off == rl->len) rl->off = rl->len = 0;
    if (rl->len + m->len > rl->cap) {
      if (rl->off) {
        memmove(rl->buf, rl->buf + rl->off, rl->len - rl->off);
        rl->len -= rl->off;
        rl->off = 0;
      }
      size_t cap = rl->cap ? rl->cap : 64 * 1024;
      while (cap < rl->len + m->len) cap *= 2;
      if (cap != rl->cap) {
        uint8_t *b = realloc(rl->buf, cap);
        if (b == NULL) {
          fail_locked(rl, 500, "out of memory");
          rv = -1;
          goto out;
        }
        rl->buf = b;
        rl->cap = cap;
      }
    }
    memcpy(rl->buf + rl->len, m->data, m->len);
    rl->len += m->len;
    rl->bytes += m->len;
  }
  if (m->end) rl->end = 1;
  resume_locked(rl);
  /* Backpressure: the node sends its next message only after this ack. */
  if (!rl->end && rl->len - rl->off > RELAY_QUEUE_HIGH && rl->ack == NULL) {
    rl->ack = ack;
    rv = 1;
  }
out:
  pthread_mutex_unlock(&rl->mu);
  relay_unref(rl);
  return rv;
}

void relay_fail(ctl_relay_t *rl, int status, const char *why) {
  pthread_mutex_lock(&rl->mu);
  fail_locked(rl, status, "%s", why);
  pthread_mutex_unlock(&rl->mu);
}

long long relay_backlog(ctl_relay_t *rl) {
  pthread_mutex_lock(&rl->mu);
  long long v = rl->cancelled || rl->state == R_FAILED ? -1 : (long long)(rl->len - rl->off);
  pthread_mutex_unlock(&rl->mu);
  return v;
}

uint64_t relay_id(ctl_relay_t *rl) { return rl->id; }

int64_t relay_node(ctl_relay_t *rl) { return rl->node; }

int relay_reg_fwd_enter(relay_reg_t *g) {
  pthread_mutex_lock(&g->mu);
  int ok = !g->fwd_stop && !g->stopping;
  if (ok) g->fwd_threads++;
  pthread_mutex_unlock(&g->mu);
  return ok ? 0 : -1;
}

void relay_reg_fwd_leave(relay_reg_t *g) {
  pthread_mutex_lock(&g->mu);
  g->fwd_threads--;
  pthread_mutex_unlock(&g->mu);
}

int relay_reg_fwd_stopping(relay_reg_t *g) {
  pthread_mutex_lock(&g->mu);
  int st = g->fwd_stop || g->stopping;
  pthread_mutex_unlock(&g->mu);
  return st;
}

void relay_node_gone(relay_reg_t *g, int64_t node, const char *why) {
  if (g == NULL) return;
  pthread_mutex_lock(&g->mu);
  for (size_t i = 0; i < g->n; i++) {
    ctl_relay_t *rl = g->v[i];
    if (rl->node != node) continue;
    pthread_mutex_lock(&rl->mu);
    fail_locked(rl, 502, "node %lld: %s", (long long)node, why);
    pthread_mutex_unlock(&rl->mu);
  }
  pthread_mutex_unlock(&g->mu);
}

/* ---- the HTTP side ------------------------------------------------------------ */

typedef struct hcollect {
  ctl_relay_t *rl;
  const char *connection;
  relaybounds_headers_t hb;
  char err[300];              /* the first header refused */
} hcollect_t;

/* header_error says why header |key| is refused, naming it when it is
 * short printable text. */
static void header_error(hcollect_t *hc, const char *key, const char *why) {
  int plain = strlen(key) <= 64;
  for (const char *p = key; plain && *p; p++)
    if (*p <= 0x20 || *p >= 0x7f || *p == '\'' || *p == '"' || *p == '\\') plain = 0;
  if (hc->hb.n >= RELAYBOUNDS_HEADERS_MAX - 1)
    snprintf(hc->err, sizeof(hc->err),
             "too many relay request headers: at most %d (the relay adds X-Forwarded-For)",
             RELAYBOUNDS_HEADERS_MAX - 1);
  else if (plain)
    snprintf(hc->err, sizeof(hc->err), "invalid relay request header '%s': %s", key, why);
  else
    snprintf(hc->err, sizeof(hc->err), "invalid relay request header: %s", why);
}

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value) {
  hcollect_t *hc = cls;
  ctl_relay_t *rl = hc->rl;
  const char *why;
  (void)kind;
  if (key == NULL || value == NULL) return MHD_YES;
  /* The caller's credentials are for the controller, never for the node;
   * Host and the framing are the relay's own. */
  if (strcasecmp(key, "authorization") == 0 || strcasecmp(key, "host") == 0 ||
      strcasecmp(key, "expect") == 0 || strcasecmp(key, FWDSIG_HEADER) == 0 ||
      hop_header(key, hc->connection))
    return MHD_YES;
  /* The node judges the headers with the same bounds: refuse here what it
   * would refuse, keeping one slot for X-Forwarded-For. */
  if (hc->hb.n >= RELAYBOUNDS_HEADERS_MAX - 1) why = "too many";
  else why = relaybounds_header_add(&hc->hb, key, value);
  if (why != NULL) {
    header_error(hc, key, why);
    return MHD_NO; /* stop: the request is refused */
  }
  relay_header_t *h = &rl->hv[rl->nh];
  char *name = strdup(key), *val = name ? strdup(value) : NULL;
  if (val == NULL) {
    free(name);
    snprintf(hc->err, sizeof(hc->err), "out of memory");
    return MHD_NO;
  }
  h->name = name;
  h->value = val;
  rl->nh++;
  rl->wire_size += strlen(key) + strlen(value) + 8;
  return MHD_YES;
}

static int add_forwarded(ctl_relay_t *rl, const char *source) {
  relay_header_t *h = &rl->hv[rl->nh];
  char *name = strdup("X-Forwarded-For"), *val = name ? strdup(source) : NULL;
  if (val == NULL) {
    free(name);
    return -1;
  }
  h->name = name;
  h->value = val;
  rl->nh++;
  rl->wire_size += strlen(source) + 24;
  return 0;
}

/* relay_new makes the relay of request |r|; NULL with |err| set when a
 * header is refused (|*status| 400) or memory runs out (500). */
static ctl_relay_t *relay_new(http_req_t *r, int64_t node, const char *method, const char *path,
                              const char *query, int *status, char *err, size_t errlen) {
  ctl_relay_t *rl = calloc(1, sizeof(*rl));
  *status = 500;
  snprintf(err, errlen, "internal error");
  if (rl == NULL) return NULL;
  pthread_mutex_init(&rl->mu, NULL);
  rl->refs = 1;
  rl->node = node;
  rl->state = R_QUEUED;
  rl->content_length = -1;
  rl->hv = calloc(RELAYBOUNDS_HEADERS_MAX, sizeof(*rl->hv));
  rl->method = strdup(method);
  rl->path = strdup(path);
  rl->query = strdup(query);
  rl->body = malloc(r->body_len + 1);
  if (!rl->hv || !rl->method || !rl->path || !rl->query || !rl->body) {
    relay_unref(rl);
    return NULL;
  }
  memcpy(rl->body, r->body ? r->body : "", r->body_len);
  rl->body_len = r->body_len;
  rl->wire_size = 64 + strlen(method) + strlen(path) + strlen(query) + r->body_len;
  hcollect_t hc = {rl, MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Connection"),
                   {0, 0}, ""};
  MHD_get_connection_values(r->conn, MHD_HEADER_KIND, collect_header, &hc);
  const char *why = hc.err[0] ? NULL : relaybounds_header_add(&hc.hb, "X-Forwarded-For", r->source);
  if (hc.err[0] || why != NULL || add_forwarded(rl, r->source) != 0) {
    if (hc.err[0] || why != NULL) {
      *status = strcmp(hc.err, "out of memory") == 0 ? 500 : 400;
      if (hc.err[0]) snprintf(err, errlen, "%s", hc.err);
      else snprintf(err, errlen, "invalid relay request headers: %s", why);
    }
    relay_unref(rl);
    return NULL;
  }
  return rl;
}

/* split_target splits the raw request target after "/api/relay/" into the
 * id, the raw path and the query (pointers into |buf|). */
static int split_target(char *buf, char **id, char **path, char **query) {
  char *q = strchr(buf, '?');
  if (q) *q++ = '\0';
  *query = q ? q : "";
  *id = buf;
  char *slash = strchr(buf, '/');
  if (slash == NULL) return -1;
  *slash = '\0';
  *path = slash + 1; /* the path without its leading '/' */
  return 0;
}

int api_relay(http_req_t *r) {
  ctl_t *ctl = r->ctl;
  const ctl_config_t *cfg = ctl->cfg;
  char *buf = NULL, *ids, *raw, *query, *norm = NULL, *enc = NULL;
  int64_t node = 0;
  const char *rule = NULL;
  int rv;

  /* Viewers read: GET and HEAD; anything else through the relay needs admin. */
  if (strcmp(r->method, "GET") != 0 && strcmp(r->method, "HEAD") != 0 && r->role < ROLE_ADMIN)
    return http_reply_error(r, 403, "admin role required for %s through the relay", r->method);
  const char *target = r->raw_uri ? r->raw_uri : r->url;
  if ((buf = strdup(target + strlen(PREFIX))) == NULL) return http_reply_error(r, 500, "internal error");
  if (split_target(buf, &ids, &raw, &query) != 0) {
    free(buf);
    return http_reply_error(r, 400, "relay path required: /api/relay/{id}/{path}");
  }
  if (valid_id(ids, &node) != 0) {
    free(buf);
    return http_reply_error(r, 400, "invalid id: must be a positive integer");
  }
  /* raw[-1] is where the '/' was: normalise "/" + raw. The bounds are the
   * node's own (relaybounds.h): what passes here, the node accepts. */
  raw[-1] = '/';
  size_t rawlen = strlen(raw - 1);
  char msg[300];
  norm = malloc(rawlen + 1);
  enc = malloc(3 * rawlen + 1);
  if (norm == NULL || enc == NULL) {
    rv = http_reply_error(r, 500, "internal error");
    goto out;
  }
  int st = relaybounds_target(r->method, raw - 1, rawlen, query, norm, rawlen + 1, enc,
                              3 * rawlen + 1, msg, sizeof(msg));
  if (st != 0) {
    rv = http_reply_error(r, st, "%s", msg);
    goto out;
  }
  int c = relpath_check(norm, cfg->relay_allow.v, cfg->relay_allow.n, cfg->relay_deny.v,
                        cfg->relay_deny.n, &rule);
  if (c == RELPATH_DENIED) {
    rv = http_reply_error(r, 403, "relay path %s denied by cascadeserver.relayapi.deny rule '%s'",
                          norm, rule);
    goto out;
  }
  if (c != RELPATH_ALLOWED) {
    rv = http_reply_error(r, 403,
                          cfg->relay_allow.n
                              ? "relay path %s not allowed by cascadeserver.relayapi.allow"
                              : "relay path %s not allowed: cascadeserver.relayapi.allow is empty",
                          norm);
    goto out;
  }
  if (r->body_len > RELAYBOUNDS_BODY_MAX) {
    rv = http_reply_error(r, 413, "relay request body over %d bytes", RELAYBOUNDS_BODY_MAX);
    goto out;
  }
  ctl_relay_t *rl = relay_new(r, node, r->method, enc, query, &st, msg, sizeof(msg));
  if (rl == NULL) {
    rv = http_reply_error(r, st, "%s", msg);
    goto out;
  }
  char remote[300] = "";
  if (!sess_held_here(ctl->relays, node) && !r->forwarded && ctl->has_fwd_key) {
    /* Held by another replica: forward it there (relay_fwd.c). */
    char idbuf[24];
    snprintf(idbuf, sizeof(idbuf), "%lld", (long long)node);
    const char *p[1] = {idbuf};
    PGresult *res = api_exec(r, DB_NODE_HOLDER, 1, p);
    if (res == NULL) {
      relay_unref(rl);
      rv = API_ANSWERED;
      goto out;
    }
    if (PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), sess_replica(ctl->relays)) != 0)
      snprintf(remote, sizeof(remote), "%s", PQgetvalue(res, 0, 1));
    PQclear(res);
  }
  if (!remote[0] && !sess_held_here(ctl->relays, node)) {
    relay_unref(rl);
    char idbuf[24];
    snprintf(idbuf, sizeof(idbuf), "%lld", (long long)node);
    const char *p[1] = {idbuf};
    PGresult *res = api_exec(r, DB_NODE_EXISTS, 1, p);
    if (res == NULL) {
      rv = API_ANSWERED;
      goto out;
    }
    int exists = PQntuples(res) > 0;
    PQclear(res);
    rv = exists ? http_reply_error(r, 502, "node %lld is offline", (long long)node)
                : http_reply_error(r, 404, "no node with id %lld", (long long)node);
    goto out;
  }

  relay_reg_t *g = ctl->relays;
  size_t per_node = 0;
  pthread_mutex_lock(&g->mu);
  for (size_t i = 0; i < g->n; i++) per_node += g->v[i]->node == node;
  if (g->n >= g->cap || per_node >= RELAY_MAX_PER_NODE) {
    pthread_mutex_unlock(&g->mu);
    relay_unref(rl);
    rv = per_node >= RELAY_MAX_PER_NODE
             ? http_reply_error(r, 503, "too many relays to node %lld in progress (at most %d)",
                                (long long)node, RELAY_MAX_PER_NODE)
             : http_reply_error(r, 503, "too many relays in progress (relay.maxconcurrent %zu)",
                                g->cap);
    goto out;
  }
  rl->id = ++g->next_id;
  rl->reg = g;
  rl->conn = r->conn;
  rl->deadline_ms = now_ms() + cfg->relay_timeout_ms;
  rl->last_ms = now_ms();
  rl->listed = 1;
  rl->refs++; /* the registry's */
  g->v[g->n++] = rl;
  pthread_mutex_unlock(&g->mu);
  r->relay = rl; /* the request's reference */

  /* The node's own judgement of what goes out, so that a gap between the
   * checks above and it is a 400 here, not a refusal there. */
  relay_request_t wire;
  char bad[128] = "it was cancelled";
  if (relay_fill(rl, &wire) == 0 || ctlmsg_relay_request_judge(&wire, bad, sizeof(bad)) != 0) {
    reg_unlist(g, rl);
    rv = http_reply_error(r, 400, "invalid relay request: %s", bad);
    goto out;
  }
  if (remote[0]) {
    char sig[FWDSIG_VALUE_MAX + 1], why[200];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t wall = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    if (fwdsig_make(ctl->fwd_key, wall, r->role, r->actor, r->method, target, r->body,
                    r->body_len, sig, sizeof(sig)) != 0 ||
        relay_forward(ctl, rl, remote, target, sig, why, sizeof(why)) != 0) {
      reg_unlist(g, rl);
      rv = http_reply_error(r, 502, "node %lld: its controller replica cannot be reached",
                            (long long)node);
      goto out;
    }
  } else if (sess_submit(g, node, rl) != 0) {
    reg_unlist(g, rl);
    rv = http_reply_error(r, 502, "node %lld is offline", (long long)node);
    goto out;
  }
  log_debug(MOD, "relay %llu: %s node %lld %s%s%s", (unsigned long long)rl->id, r->method,
            (long long)node, enc, query[0] ? "?" : "", query);
  pthread_mutex_lock(&rl->mu);
  if (rl->state == R_QUEUED || rl->state == R_SENT) {
    rl->suspended = 1;
    MHD_suspend_connection(r->conn);
    pthread_mutex_unlock(&rl->mu);
    rv = MHD_YES;
  } else {
    pthread_mutex_unlock(&rl->mu);
    rv = api_relay_resume(r);
  }

out:
  free(buf);
  free(norm);
  free(enc);
  return rv;
}

static ssize_t reader(void *cls, uint64_t pos, char *out, size_t max) {
  ctl_relay_t *rl = cls;
  struct park *ack = NULL;
  ssize_t n = 0;
  (void)pos;
  pthread_mutex_lock(&rl->mu);
  size_t have = rl->len - rl->off;
  if (have) {
    n = (ssize_t)(have < max ? have : max);
    memcpy(out, rl->buf + rl->off, (size_t)n);
    rl->off += (size_t)n;
    if (rl->ack && rl->len - rl->off <= RELAY_QUEUE_LOW) {
      ack = rl->ack;
      rl->ack = NULL;
    }
  } else if (rl->state == R_FAILED) {
    n = MHD_CONTENT_READER_END_WITH_ERROR;
  } else if (rl->end) {
    n = MHD_CONTENT_READER_END_OF_STREAM;
  } else {
    if (rl->ack) {
      ack = rl->ack;
      rl->ack = NULL;
    }
    /* Nothing yet: sleep until the node sends more (relay_deliver resumes). */
    rl->suspended = 1;
    MHD_suspend_connection(rl->conn);
  }
  pthread_mutex_unlock(&rl->mu);
  if (ack) sess_ack(rl->reg, ack, 0);
  return n;
}

static void reader_free(void *cls) { relay_unref(cls); }

int api_relay_resume(http_req_t *r) {
  ctl_relay_t *rl = r->relay;
  pthread_mutex_lock(&rl->mu);
  if (rl->state == R_FAILED) {
    int st = rl->fail_status;
    char msg[256];
    snprintf(msg, sizeof(msg), "%s", rl->fail_msg);
    pthread_mutex_unlock(&rl->mu);
    reg_unlist(rl->reg, rl);
    return http_reply_error(r, st, "%s", msg);
  }
  if (rl->state != R_HEAD) {
    /* Woken before the answer (cannot happen; be safe): sleep again. */
    rl->suspended = 1;
    MHD_suspend_connection(r->conn);
    pthread_mutex_unlock(&rl->mu);
    return MHD_YES;
  }
  uint64_t size = rl->content_length >= 0 ? (uint64_t)rl->content_length : MHD_SIZE_UNKNOWN;
  int status = rl->status;
  rl->refs++; /* the response's */
  pthread_mutex_unlock(&rl->mu);
  struct MHD_Response *resp =
      MHD_create_response_from_callback(size, READ_BLOCK, reader, rl, reader_free);
  if (resp == NULL) {
    relay_unref(rl);
    return http_reply_error(r, 500, "internal error");
  }
  /* The headers are fixed once the state is R_HEAD. */
  for (size_t i = 0; i < rl->nrh; i++)
    MHD_add_response_header(resp, rl->rh[i].name, rl->rh[i].value);
  http_cors_headers(r, resp);
  r->status = status;
  int rv = MHD_queue_response(r->conn, (unsigned)status, resp);
  MHD_destroy_response(resp);
  return rv;
}

void api_relay_done(http_req_t *r) {
  ctl_relay_t *rl = r->relay;
  struct park *ack = NULL;
  if (rl == NULL) return;
  pthread_mutex_lock(&rl->mu);
  if (!(rl->state == R_HEAD && rl->end && rl->off == rl->len)) rl->cancelled = 1;
  ack = rl->ack;
  rl->ack = NULL;
  rl->conn = NULL;
  rl->suspended = 0;
  int64_t took = now_ms() - (rl->deadline_ms - r->ctl->cfg->relay_timeout_ms);
  log_debug(MOD, "relay %llu done: status %d, %llu bytes from the node, %lld ms%s",
            (unsigned long long)rl->id, rl->state == R_HEAD ? rl->status : rl->fail_status,
            (unsigned long long)rl->bytes, (long long)took, rl->cancelled ? ", cancelled" : "");
  pthread_mutex_unlock(&rl->mu);
  if (ack) sess_ack(rl->reg, ack, 1);
  reg_unlist(rl->reg, rl);
  relay_unref(rl);
  r->relay = NULL;
}

static void relay_http_shutdown(struct ctl *ctl) { relay_reg_shutdown(ctl->relays); }

const http_relay_t api_relay_http = {api_relay, api_relay_resume, api_relay_done,
                                     relay_http_shutdown};
