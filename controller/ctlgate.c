/* The control gate: see ctlgate.h.
 *
 * One thread owns every socket of the gate: the public listener and each
 * client's socket, in one epoll set, edge-triggered. With tls+tcp a
 * client's socket is a GnuTLS session (ctlgate_tls.h): the gate runs the
 * handshake on it, then sends REP's SP header and reads the client's
 * (spwire.h). Bytes read go through one scratch buffer into the
 * connection's frame parser; each request read is queued, with the
 * connection's id, for the control workers (ctlgate_recv), whose replies
 * come back through a locked list and an eventfd (ctlgate_reply) and are
 * written in order. Reading stops while a connection has
 * CTLGATE_CONN_UNANSWERED requests unanswered or the workers' queue is full
 * (what was read and not yet parsed is kept, at most one read), so memory
 * stays bounded whatever clients send. Only this thread touches a
 * connection; other threads name it by id. */
#define _GNU_SOURCE
#include "ctlgate.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "conntrack.h"
#include "ctlgate_tls.h"
#include "ctlmsg_bounds.h"
#include "log.h"
#include "net.h"
#include "spwire.h"

#define SCRATCH (64 * 1024)
#define ACCEPTS_PER_WAKE 256
#define EVENTS 256
#define LOG_EVERY_MS 5000
#define ACCEPT_PAUSE_MS 100
#define FD_RESERVE 64            /* logs, PEM files, epoll, eventfds, the process's own */
#define TLS_RETRIES 16           /* harmless GnuTLS returns in a row before giving up */
#define BY_ID 65536              /* buckets of the table of connections by id */

typedef struct gconn gconn_t;

#define FR_HEADER 0              /* the gate's SP header */
#define FR_REPLY 1               /* a reply: the request it answers is done once written */
#define FR_NONE 2                /* a request given up: nothing to write */
#define FR_CLOSE 3               /* close the connection */

/* Bytes for one connection, or a word about it from another thread. */
typedef struct gframe {
  struct gframe *next;
  uint32_t conn;
  int kind;                  /* FR_* */
  size_t len, off;           /* data[]: written up to off */
  uint8_t data[];
} gframe_t;

/* A request waiting for a worker. */
typedef struct qitem {
  struct qitem *next;
  ctlgate_req_t r;
} qitem_t;

struct gconn {
  conntrack_entry_t ct;      /* first: conntrack entries map back to it */
  int fd;
  uint32_t id;               /* names it to other threads; never 0 */
  uint8_t readable, writable, rdhup;
  gnutls_session_t tls;      /* tls+tcp; NULL in plain TCP */
  int hs;                    /* the TLS handshake runs */
  int live;                  /* TLS and SP headers done (the callback knows it) */
  int settled;               /* known live, no deadline */
  int server_turn;           /* before settled: the client spoke last */
  int64_t born_ms, turn_ms;  /* accepted; the turn began */
  spwire_rx_t rx;            /* the client's header and requests */
  uint8_t *rest;             /* owned: read, not yet parsed (reading paused) */
  size_t rest_len, rest_off;
  gframe_t *out, *out_tail;  /* owned: to write, in order */
  unsigned unanswered;       /* requests read whose reply is not yet written */
  int stalled;               /* on ctlgate.stalled: waits for room in the queue */
  int closed;
  gconn_t *next_free;
  gconn_t *prev, *next;      /* ctlgate.all: every open connection */
  gconn_t *hnext;            /* ctlgate.by_id */
  gconn_t *sprev, *snext;    /* ctlgate.stalled */
  char ip[INET6_ADDRSTRLEN];
};

/* A rate-limited log line: the first at once, then a count every 5 s. */
typedef struct rl {
  int64_t last_ms;
  unsigned long suppressed;
} rl_t;

struct ctlgate {
  char scheme[16];
  char shown[96];            /* the public address bound */
  int lfd;
  int epfd;
  int stopfd;
  int wakefd;                /* replies posted, or room in the queue */
  int64_t handshake_ms;
  size_t max_per_addr, max_conns;
  ctlgate_conn_cb cb;
  void *cb_arg;
  conntrack_t ct;            /* gate thread only */
  pthread_t thread;
  int started;
  int stopping;              /* ctlgate_stop: the callback hears nothing more */
  int accept_paused;
  int64_t accept_resume_ms;
  uint32_t next_id;
  gconn_t *to_free;          /* closed during this batch of events */
  gconn_t *all;              /* gate thread (and ctlgate_stop): open connections */
  gconn_t *stalled;          /* gate thread: connections waiting for room in the queue */
  gconn_t *by_id[BY_ID];     /* gate thread */
  ctlgate_tls_t *tls;        /* tls+tcp: certificate and settings; NULL in plain TCP */
  rl_t rl_addr, rl_total, rl_timeout, rl_accept, rl_tls, rl_proto;
  atomic_ulong conns;
  atomic_ulong refused_addr, refused_total, timeouts, tls_ok, tls_failed, proto_errors;
  pthread_mutex_t qmu;       /* the workers' queue */
  pthread_cond_t qcv;
  qitem_t *qhead, *qtail;
  size_t qn, qbytes;
  int qstopped;
  int qwant_wake;            /* the gate waits for room: wake it at half */
  pthread_mutex_t rmu;       /* replies and closes posted by other threads */
  gframe_t *rhead, *rtail;
  int rstopped;
  uint8_t scratch[SCRATCH];
};

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* rl_pass: log now? (*n gets how many were held back before this one) */
static int rl_pass(rl_t *r, unsigned long *n) {
  int64_t now = now_ms();
  if (r->last_ms && now - r->last_ms < LOG_EVERY_MS) {
    r->suppressed++;
    return 0;
  }
  *n = r->suppressed;
  r->suppressed = 0;
  r->last_ms = now;
  return 1;
}

int ctlgate_split_url(const char *url, char *scheme, size_t schemelen, char *hostport,
                      size_t hplen) {
  const char *sep = strstr(url, "://");
  if (sep == NULL) return -1;
  size_t n = (size_t)(sep - url);
  if (!((n == 7 && strncmp(url, "tls+tcp", 7) == 0) || (n == 3 && strncmp(url, "tcp", 3) == 0)))
    return -1;
  const char *hp = sep + 3;
  if (n >= schemelen || strlen(hp) >= hplen || hp[0] == '\0' || strchr(hp, '/') != NULL)
    return -1;
  memcpy(scheme, url, n);
  scheme[n] = '\0';
  memcpy(hostport, hp, strlen(hp) + 1);
  return 0;
}

size_t ctlgate_fit(uint64_t nofile, size_t http_max, size_t db_pool) {
  uint64_t reserve = FD_RESERVE + (uint64_t)db_pool;
  if (nofile <= reserve) return 1;
  uint64_t budget = nofile - reserve;
  uint64_t http = http_max < budget / 2 ? http_max : budget / 2;
  uint64_t n = budget - http;
  return n ? (size_t)n : 1;
}

static void show_addr(const struct sockaddr_storage *ss, char *buf, size_t len) {
  snprintf(buf, len, "?");
  if (ss->ss_family == AF_INET) {
    inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, buf, (socklen_t)len);
  } else if (ss->ss_family == AF_INET6) {
    const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(a))
      inet_ntop(AF_INET, &a->s6_addr[12], buf, (socklen_t)len); /* as nng showed it */
    else
      inet_ntop(AF_INET6, a, buf, (socklen_t)len);
  }
}

ctlgate_t *ctlgate_new(const ctlgate_config_t *cfg, char *err, size_t errlen) {
  char hostport[300];
  struct rlimit rl;
  ctlgate_t *g = calloc(1, sizeof(*g));
  if (g == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  g->lfd = g->epfd = g->stopfd = g->wakefd = -1;
  pthread_mutex_init(&g->qmu, NULL);
  pthread_cond_init(&g->qcv, NULL);
  pthread_mutex_init(&g->rmu, NULL);
  if (ctlgate_split_url(cfg->url, g->scheme, sizeof(g->scheme), hostport, sizeof(hostport)) !=
      0) {
    snprintf(err, errlen, "control.listenaddr '%s': expected tls+tcp://host:port or "
             "tcp://host:port", cfg->url);
    goto fail;
  }
  g->handshake_ms = cfg->handshake_ms;
  g->max_per_addr = cfg->max_per_addr;
  uint64_t nofile = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
                        ? (uint64_t)rl.rlim_cur
                        : 1048576;
  size_t fit = ctlgate_fit(nofile, cfg->http_max, cfg->db_pool);
  g->max_conns = cfg->max_conns ? cfg->max_conns : fit;
  if (g->max_conns > fit) {
    log_warn("control", "control.maxconnections %zu does not fit the open-file limit (%llu, "
             "one descriptor per connection): using %zu",
             g->max_conns, (unsigned long long)nofile, fit);
    g->max_conns = fit;
  }
  uint32_t seed;
  {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    seed = (uint32_t)ts.tv_nsec ^ (uint32_t)getpid() << 16;
  }
  /* Handshaking connections are looked at every quarter of the deadline. */
  int64_t tick = g->handshake_ms / 4 > 0 ? g->handshake_ms / 4 : 1;
  if (conntrack_init(&g->ct, g->max_conns, g->max_per_addr, tick, seed) != 0) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  if (strcmp(g->scheme, "tls+tcp") == 0) {
    if (cfg->cert_pem == NULL || cfg->key_pem == NULL) {
      snprintf(err, errlen, "control TLS: no server certificate");
      goto fail;
    }
    if ((g->tls = ctlgate_tls_new(cfg->cert_pem, cfg->key_pem, cfg->ticket_key, err,
                                  errlen)) == NULL) goto fail;
  }
  g->lfd = net_listen_tcp("control.listenaddr", hostport, 1, g->shown, sizeof(g->shown), err,
                          errlen);
  if (g->lfd < 0) goto fail;
  return g;

fail:
  ctlgate_free(g);
  return NULL;
}

/* ---- the workers' side --------------------------------------------------- */

int ctlgate_recv(ctlgate_t *g, ctlgate_req_t *req) {
  pthread_mutex_lock(&g->qmu);
  while (g->qhead == NULL && !g->qstopped) pthread_cond_wait(&g->qcv, &g->qmu);
  if (g->qstopped) {
    pthread_mutex_unlock(&g->qmu);
    return -1;
  }
  qitem_t *q = g->qhead;
  g->qhead = q->next;
  if (g->qhead == NULL) g->qtail = NULL;
  g->qn--;
  g->qbytes -= q->r.len;
  int wake = g->qwant_wake && g->qn <= CTLGATE_QUEUE_MAX / 2 &&
             g->qbytes <= CTLGATE_QUEUE_BYTES / 2;
  if (wake) g->qwant_wake = 0;
  pthread_mutex_unlock(&g->qmu);
  *req = q->r;
  free(q);
  if (wake) {
    uint64_t one = 1;
    if (write(g->wakefd, &one, sizeof(one)) < 0) { /* already pending */ }
  }
  return 0;
}

/* post hands |f| to the gate's thread. */
static void post(ctlgate_t *g, gframe_t *f) {
  f->next = NULL;
  pthread_mutex_lock(&g->rmu);
  if (g->rstopped) {
    pthread_mutex_unlock(&g->rmu);
    free(f);
    return;
  }
  int was_empty = g->rhead == NULL;
  if (g->rtail) g->rtail->next = f;
  else g->rhead = f;
  g->rtail = f;
  pthread_mutex_unlock(&g->rmu);
  if (was_empty) {
    uint64_t one = 1;
    if (write(g->wakefd, &one, sizeof(one)) < 0) { /* already pending */ }
  }
}

void ctlgate_reply(ctlgate_t *g, uint32_t conn, uint32_t id, const void *body, size_t len) {
  if (g == NULL) return;
  size_t n = body ? spwire_frame_len(len) : 0;
  gframe_t *f = malloc(sizeof(*f) + n);
  if (f == NULL && body) {
    /* No memory for the reply: at least give the request up. */
    body = NULL;
    n = 0;
    f = malloc(sizeof(*f));
  }
  if (f == NULL) return;
  f->conn = conn;
  f->kind = body ? FR_REPLY : FR_NONE;
  f->len = n;
  f->off = 0;
  if (body) spwire_frame(f->data, id, body, len);
  post(g, f);
}

void ctlgate_close(ctlgate_t *g, uint32_t conn) {
  if (g == NULL) return;
  gframe_t *f = malloc(sizeof(*f));
  if (f == NULL) return;
  f->conn = conn;
  f->kind = FR_CLOSE;
  f->len = f->off = 0;
  post(g, f);
}

/* queue_full: no room for another request (the workers will wake the gate
 * when there is). */
static int queue_full(ctlgate_t *g) {
  pthread_mutex_lock(&g->qmu);
  int full = g->qn >= CTLGATE_QUEUE_MAX || g->qbytes >= CTLGATE_QUEUE_BYTES;
  if (full) g->qwant_wake = 1;
  pthread_mutex_unlock(&g->qmu);
  return full;
}

/* deliver queues request |id| of |c| (taking |body|). */
static int deliver(ctlgate_t *g, gconn_t *c, uint32_t id, uint8_t *body, size_t len) {
  qitem_t *q = malloc(sizeof(*q));
  if (q == NULL) {
    free(body);
    return -1;
  }
  q->next = NULL;
  q->r.conn = c->id;
  q->r.id = id;
  q->r.body = body;
  q->r.len = len;
  snprintf(q->r.ip, sizeof(q->r.ip), "%s", c->ip);
  pthread_mutex_lock(&g->qmu);
  if (g->qtail) g->qtail->next = q;
  else g->qhead = q;
  g->qtail = q;
  g->qn++;
  g->qbytes += len;
  pthread_cond_signal(&g->qcv);
  pthread_mutex_unlock(&g->qmu);
  c->unanswered++;
  return 0;
}

/* ---- connections ------------------------------------------------------- */

static gconn_t *by_id(ctlgate_t *g, uint32_t id) {
  for (gconn_t *c = g->by_id[id % BY_ID]; c; c = c->hnext)
    if (c->id == id) return c;
  return NULL;
}

static void stall(ctlgate_t *g, gconn_t *c) {
  if (c->stalled) return;
  c->stalled = 1;
  c->sprev = NULL;
  c->snext = g->stalled;
  if (g->stalled) g->stalled->sprev = c;
  g->stalled = c;
}

static void unstall(ctlgate_t *g, gconn_t *c) {
  if (!c->stalled) return;
  c->stalled = 0;
  if (c->sprev) c->sprev->snext = c->snext;
  else g->stalled = c->snext;
  if (c->snext) c->snext->sprev = c->sprev;
  c->sprev = c->snext = NULL;
}

static void conn_close(ctlgate_t *g, gconn_t *c, int reset) {
  if (c->closed) return;
  c->closed = 1;
  if (c->prev) c->prev->next = c->next;
  else g->all = c->next;
  if (c->next) c->next->prev = c->prev;
  for (gconn_t **pp = &g->by_id[c->id % BY_ID]; *pp; pp = &(*pp)->hnext)
    if (*pp == c) {
      *pp = c->hnext;
      break;
    }
  unstall(g, c);
  if (c->fd >= 0) {
    if (reset) {
      /* RST: the peer knows at once, and no TIME_WAIT is left behind. */
      struct linger lg = {1, 0};
      setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    close(c->fd);
    c->fd = -1;
  }
  spwire_rx_free(&c->rx);
  free(c->rest);
  c->rest = NULL;
  while (c->out) {
    gframe_t *f = c->out;
    c->out = f->next;
    free(f);
  }
  c->out_tail = NULL;
  if (c->tls) gnutls_deinit(c->tls);
  c->tls = NULL;
  conntrack_del(&g->ct, &c->ct);
  atomic_fetch_sub(&g->conns, 1);
  if (c->live && !g->stopping && g->cb) g->cb(g->cb_arg, c->id, 0);
  /* Events of this batch may still name it: freed after the batch. */
  c->next_free = g->to_free;
  g->to_free = c;
}

/* GnuTLS's transport: the client's socket. During the handshake the gate
 * answers each flight at once, so it is always the client's turn
 * (ctlgate_verdict): from the accept, then from each flight the gate sent.
 * A client's whole flight must arrive within the deadline; bytes trickled
 * in do not restart it. After the handshake, the client owes its SP
 * header (sp_start). */
static ssize_t tls_pull(gnutls_transport_ptr_t p, void *buf, size_t len) {
  gconn_t *c = p;
  ssize_t n = recv(c->fd, buf, len, 0);
  if (n < 0) gnutls_transport_set_errno(c->tls, errno);
  return n;
}

static ssize_t tls_push(gnutls_transport_ptr_t p, const void *buf, size_t len) {
  gconn_t *c = p;
  ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
  if (n > 0 && c->hs) {
    c->server_turn = 0;
    c->turn_ms = now_ms();
  }
  if (n < 0) gnutls_transport_set_errno(c->tls, errno);
  return n;
}

#define IO_AGAIN (-2)

/* side_recv reads from the client: > 0 bytes, 0 the end, IO_AGAIN, or -1
 * an error that ends the connection. In TLS it gives plaintext, at most
 * one record. */
static ssize_t side_recv(gconn_t *c, uint8_t *buf, size_t len) {
  if (c->tls) {
    for (int k = 0; k < TLS_RETRIES; k++) {
      ssize_t n = gnutls_record_recv(c->tls, buf, len);
      if (n >= 0) return n;
      switch (ctlgate_tls_outcome((int)n)) {
      case CTLGATE_TLS_AGAIN: return IO_AGAIN;
      case CTLGATE_TLS_EOF: return 0;
      case CTLGATE_TLS_RETRY: continue;
      default: return -1;
      }
    }
    return -1;
  }
  for (;;) {
    ssize_t n = recv(c->fd, buf, len, 0);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK ? IO_AGAIN : -1;
  }
}

/* side_send writes to the client: > 0 bytes taken, IO_AGAIN, or -1. In
 * TLS a record GnuTLS could not send at once stays in GnuTLS: the next
 * call, with the same bytes at the front, sends it and counts them. */
static ssize_t side_send(gconn_t *c, const uint8_t *buf, size_t len) {
  if (c->tls) {
    for (int k = 0; k < TLS_RETRIES; k++) {
      ssize_t n = gnutls_record_send(c->tls, buf, len);
      if (n > 0) return n;
      switch (n == 0 ? CTLGATE_TLS_FATAL : ctlgate_tls_outcome((int)n)) {
      case CTLGATE_TLS_AGAIN: return IO_AGAIN;
      case CTLGATE_TLS_RETRY: continue;
      default: return -1;
      }
    }
    return -1;
  }
  for (;;) {
    ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK ? IO_AGAIN : -1;
  }
}

/* flush writes what |c| has to send until the socket would block. A reply
 * written whole no longer counts as unanswered. -1 ends the connection. */
static int flush(gconn_t *c) {
  while (c->out) {
    gframe_t *f = c->out;
    if (!c->writable) return 0;
    ssize_t n = side_send(c, f->data + f->off, f->len - f->off);
    if (n == IO_AGAIN) {
      c->writable = 0;
      return 0;
    }
    if (n < 0) return -1;
    f->off += (size_t)n;
    if (f->off < f->len) {
      if (!c->tls) {
        c->writable = 0; /* a short plain send: the socket is full */
        return 0;
      }
      continue;
    }
    c->out = f->next;
    if (c->out == NULL) c->out_tail = NULL;
    if (f->kind == FR_REPLY && c->unanswered) c->unanswered--;
    free(f);
  }
  return 0;
}

static void push_out(gconn_t *c, gframe_t *f) {
  f->next = NULL;
  if (c->out_tail) c->out_tail->next = f;
  else c->out = f;
  c->out_tail = f;
}

/* proto_error closes nothing itself: it counts and logs why |c| ends. */
static void proto_error(ctlgate_t *g, gconn_t *c, int rc) {
  unsigned long n;
  const char *why = rc == SPWIRE_BAD_HEADER ? "not an nng REQ socket (SP header)"
                    : rc == SPWIRE_TOO_LONG ? "a message over the size bound"
                    : rc == SPWIRE_BAD_ID   ? "a request without a request id"
                                            : "out of memory";
  atomic_fetch_add(&g->proto_errors, 1);
  if (rl_pass(&g->rl_proto, &n))
    log_info("control", "closed a control connection from %s: %s%s", c->ip, why,
             n ? "; more since the last report" : "");
}

#define READ_EOF 1

/* conn_read reads and parses what the client sent, queueing its requests,
 * until the socket would block or the connection or the queue has no room
 * (the connection then waits: a reply written, or the workers catching up,
 * resumes it). 0, READ_EOF when the client ended, or -1 on an error. */
static int conn_read(ctlgate_t *g, gconn_t *c) {
  for (;;) {
    if (c->unanswered >= CTLGATE_CONN_UNANSWERED) return 0;
    if (c->live && queue_full(g)) {
      stall(g, c);
      return 0;
    }
    const uint8_t *d;
    size_t n;
    int from_rest = c->rest != NULL;
    if (from_rest) {
      d = c->rest + c->rest_off;
      n = c->rest_len - c->rest_off;
    } else {
      if (!c->readable) return 0;
      ssize_t r = side_recv(c, g->scratch, SCRATCH);
      if (r == 0) return READ_EOF;
      if (r == IO_AGAIN) {
        c->readable = 0;
        return 0;
      }
      if (r < 0) return -1;
      /* A short read drained the socket: new data brings a new edge
       * (unless the peer's FIN came with it, which only another read
       * sees). Not so in TLS: GnuTLS may hold the next record, or part of
       * it be left in the socket. */
      if (!c->tls && (size_t)r < SCRATCH && !c->rdhup) c->readable = 0;
      d = g->scratch;
      n = (size_t)r;
    }
    size_t off = 0;
    while (off < n) {
      if (c->unanswered >= CTLGATE_CONN_UNANSWERED || (c->live && queue_full(g))) break;
      size_t used, bl;
      uint32_t id;
      uint8_t *body = NULL;
      int rc = spwire_rx_feed(&c->rx, d + off, n - off, &used, &id, &body, &bl);
      off += used;
      if (rc < 0) {
        proto_error(g, c, rc);
        return -1;
      }
      if (!c->live && spwire_rx_header_done(&c->rx)) {
        c->live = 1;
        if (g->cb) g->cb(g->cb_arg, c->id, 1);
      }
      if (rc == SPWIRE_MESSAGE && deliver(g, c, id, body, bl) != 0) return -1;
    }
    if (from_rest) {
      c->rest_off += off;
      if (c->rest_off == c->rest_len) {
        free(c->rest);
        c->rest = NULL;
        c->rest_len = c->rest_off = 0;
      }
    } else if (off < n) {
      if ((c->rest = malloc(n - off)) == NULL) return -1;
      memcpy(c->rest, d + off, n - off);
      c->rest_len = n - off;
      c->rest_off = 0;
    }
  }
}

/* conn_end ends |c| politely before it is closed at shutdown: TLS's
 * close_notify and a FIN, as agents saw when nng's listener closed, not a
 * reset (test_replicas saw an agent's nng 1.5.2 REQ leak the heartbeat it
 * was sending when a stopping replica reset its connection). What the
 * client sent and nobody will read is drained first: closing a socket
 * with unread bytes resets it. Best effort, never waits. */
static void conn_end(gconn_t *c) {
  uint8_t buf[4096];
  if (c->tls && !c->hs) gnutls_bye(c->tls, GNUTLS_SHUT_WR);
  shutdown(c->fd, SHUT_WR);
  for (int k = 0; k < 16 && recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT) > 0; k++) {
  }
}

/* conn_pump writes what waits and reads what came; closes |c| when it is over. */
static void conn_pump(ctlgate_t *g, gconn_t *c) {
  if (c->closed || c->hs) return;
  int rc = flush(c);
  if (rc == 0) rc = conn_read(g, c);
  if (rc == READ_EOF) conn_close(g, c, 0);
  else if (rc != 0) conn_close(g, c, 1);
}

/* sp_start begins the SP negotiation once TLS (if any) is done: the gate
 * sends REP's header at once, and the client owes its REQ header. */
static int sp_start(gconn_t *c) {
  gframe_t *f = malloc(sizeof(*f) + SPWIRE_HEADER_LEN);
  if (f == NULL) return -1;
  f->conn = c->id;
  f->kind = FR_HEADER;
  f->len = SPWIRE_HEADER_LEN;
  f->off = 0;
  spwire_header(f->data, SPWIRE_PROTO_REP);
  push_out(c, f);
  c->server_turn = 0;
  c->turn_ms = now_ms();
  return 0;
}

/* handshake advances the TLS handshake of |c|; once it is done, the SP
 * negotiation starts. -1 when the connection is over. */
static int handshake(ctlgate_t *g, gconn_t *c) {
  for (int k = 0; k < TLS_RETRIES; k++) {
    int rc = gnutls_handshake(c->tls);
    if (rc == 0) {
      c->hs = 0;
      atomic_fetch_add(&g->tls_ok, 1);
      ctlgate_tls_done(g->tls, c->tls);
      if (log_enabled(LOG_DEBUG)) {
        char *d = gnutls_session_get_desc(c->tls);
        log_debug("control", "TLS with %s: %s", c->ip, d ? d : "?");
        gnutls_free(d);
      }
      /* The client's first records may already sit in GnuTLS's buffer. */
      c->readable = 1;
      if (sp_start(c) != 0) {
        unsigned long n;
        if (rl_pass(&g->rl_accept, &n))
          log_warn("control", "cannot serve a control connection from %s: %s", c->ip,
                   strerror(ENOMEM));
        return -1;
      }
      return 0;
    }
    int o = ctlgate_tls_outcome(rc);
    if (o == CTLGATE_TLS_AGAIN) return 0;
    if (o == CTLGATE_TLS_RETRY) continue;
    atomic_fetch_add(&g->tls_failed, 1);
    unsigned long n;
    /* A client that just went away is no failure worth a line. */
    if (o != CTLGATE_TLS_EOF && rl_pass(&g->rl_tls, &n))
      log_info("control", "TLS handshake with %s failed: %s%s", c->ip, gnutls_strerror(rc),
               n ? "; more since the last report" : "");
    return -1;
  }
  atomic_fetch_add(&g->tls_failed, 1);
  return -1;
}

static void conn_event(ctlgate_t *g, gconn_t *c, uint32_t ev) {
  if (c->closed) return;
  if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) c->readable = 1;
  if (ev & (EPOLLRDHUP | EPOLLHUP)) c->rdhup = 1;
  if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR)) c->writable = 1;
  if (c->hs) {
    if (handshake(g, c) != 0) {
      conn_close(g, c, 1);
      return;
    }
    if (c->hs) return;
  }
  conn_pump(g, c);
}

static void refuse_log(rl_t *r, const char *ip, const char *why) {
  unsigned long n;
  if (!rl_pass(r, &n)) return;
  if (n)
    log_warn("control", "refused a control connection from %s: %s (and %lu more refused "
             "since the last report)", ip, why, n);
  else
    log_warn("control", "refused a control connection from %s: %s", ip, why);
}

static void accept_some(ctlgate_t *g) {
  for (int k = 0; k < ACCEPTS_PER_WAKE; k++) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    uint8_t key[CONNTRACK_KEY_LEN];
    char ip[INET6_ADDRSTRLEN], why[160];
    int one = 1;
    int fd = accept4(g->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR || errno == ECONNABORTED) continue;
      /* Out of descriptors or memory: the listener stays readable, so
       * wait a little instead of spinning. */
      unsigned long n;
      if (rl_pass(&g->rl_accept, &n))
        log_warn("control", "cannot accept control connections: %s", strerror(errno));
      epoll_ctl(g->epfd, EPOLL_CTL_DEL, g->lfd, NULL);
      g->accept_paused = 1;
      g->accept_resume_ms = now_ms() + ACCEPT_PAUSE_MS;
      return;
    }
    show_addr(&ss, ip, sizeof(ip));
    gconn_t *c = calloc(1, sizeof(*c));
    int rc = c == NULL || conntrack_key((struct sockaddr *)&ss, key) != 0
                 ? -1
                 : conntrack_add(&g->ct, &c->ct, key, now_ms());
    if (rc != 0) {
      if (rc == CONNTRACK_ADDR_FULL) {
        atomic_fetch_add(&g->refused_addr, 1);
        snprintf(why, sizeof(why), "%zu connections from this address "
                 "(control.maxconnperaddr)", g->max_per_addr);
        refuse_log(&g->rl_addr, ip, why);
      } else if (rc == CONNTRACK_FULL) {
        atomic_fetch_add(&g->refused_total, 1);
        snprintf(why, sizeof(why), "%zu control connections open (control.maxconnections)",
                 g->max_conns);
        refuse_log(&g->rl_total, ip, why);
      }
      free(c);
      close(fd);
      continue;
    }
    atomic_fetch_add(&g->conns, 1);
    c->born_ms = c->turn_ms = now_ms();
    c->fd = fd;
    c->writable = 1;
    do c->id = ++g->next_id;
    while (c->id == 0 || by_id(g, c->id) != NULL);
    c->hnext = g->by_id[c->id % BY_ID];
    g->by_id[c->id % BY_ID] = c;
    c->next = g->all;
    if (g->all) g->all->prev = c;
    g->all = c;
    snprintf(c->ip, sizeof(c->ip), "%s", ip);
    spwire_rx_init(&c->rx, CTLMSG_MAX);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct epoll_event e0 = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
    /* TLS: the SP negotiation starts once the handshake is done (handshake()). */
    c->hs = g->tls != NULL;
    if ((g->tls && ctlgate_tls_session(g->tls, &c->tls, c, tls_pull, tls_push) != 0) ||
        (!g->tls && sp_start(c) != 0) || epoll_ctl(g->epfd, EPOLL_CTL_ADD, fd, &e0) != 0) {
      unsigned long n;
      if (rl_pass(&g->rl_accept, &n))
        log_warn("control", "cannot serve a control connection from %s: %s", ip,
                 strerror(errno));
      conn_close(g, c, 1);
    }
  }
}

int ctlgate_verdict(int server_turn, int64_t born_ms, int64_t turn_ms, int64_t now_ms,
                    int64_t timeout_ms) {
  if (!server_turn && now_ms - turn_ms >= timeout_ms) return CTLGATE_CLIENT_LATE;
  if (now_ms - born_ms >= CTLGATE_TOTAL * timeout_ms) return CTLGATE_TOO_LONG;
  return CTLGATE_WAIT;
}

/* expire checks the connections whose check time came (every quarter of
 * the deadline until they are live). One is closed when it is the
 * client's turn (it has sent nothing yet, or the gate answered last) and
 * the client has been silent for control.handshaketimeout, or when it is
 * still not live after six times that. A client that spoke last waits on
 * the controller, which may be slow to answer during a storm of agents:
 * closing those made nng 1.5.2's dialer on some agents stop redialling. */
static void expire(ctlgate_t *g) {
  conntrack_entry_t *e;
  int64_t now = now_ms();
  while ((e = conntrack_expired(&g->ct, now)) != NULL) {
    gconn_t *c = (gconn_t *)e;
    if (c->live) {
      c->settled = 1; /* the queue has forgotten it */
      continue;
    }
    int verdict = ctlgate_verdict(c->server_turn, c->born_ms, c->turn_ms, now, g->handshake_ms);
    if (verdict == CTLGATE_WAIT) {
      conntrack_rearm(&g->ct, &c->ct, now);
      continue;
    }
    int client_late = verdict == CTLGATE_CLIENT_LATE;
    atomic_fetch_add(&g->timeouts, 1);
    unsigned long n;
    if (rl_pass(&g->rl_timeout, &n))
      log_info("control", "closed a control connection from %s: %s %lld ms "
               "(control.handshaketimeout)%s", c->ip,
               client_late ? "the client left the TLS or SP handshake waiting for"
                           : "no TLS and SP handshake within 6 x",
               (long long)g->handshake_ms, n ? "; more since the last report" : "");
    conn_close(g, c, 1);
  }
}

/* take_posted applies what other threads posted: replies, requests given
 * up, closes. Each is for a connection by id: one that has gone drops it. */
static void take_posted(ctlgate_t *g) {
  uint64_t v;
  if (read(g->wakefd, &v, sizeof(v)) < 0) { /* nothing pending */ }
  pthread_mutex_lock(&g->rmu);
  gframe_t *f = g->rhead;
  g->rhead = g->rtail = NULL;
  pthread_mutex_unlock(&g->rmu);
  while (f) {
    gframe_t *next = f->next;
    gconn_t *c = by_id(g, f->conn);
    if (c == NULL || c->closed) {
      free(f);
    } else if (f->kind == FR_CLOSE) {
      free(f);
      conn_close(g, c, 1);
    } else {
      if (f->kind == FR_NONE) {
        if (c->unanswered) c->unanswered--;
        free(f);
      } else {
        push_out(c, f);
      }
      conn_pump(g, c);
    }
    f = next;
  }
  /* Room in the queue again: the connections that waited for it read on. */
  while (g->stalled && !queue_full(g)) {
    gconn_t *c = g->stalled;
    unstall(g, c);
    conn_pump(g, c);
  }
}

static void *gate_main(void *arg) {
  ctlgate_t *g = arg;
  struct epoll_event evs[EVENTS];
  for (;;) {
    int timeout = -1;
    int64_t now = now_ms(), next = conntrack_next_deadline(&g->ct);
    if (g->accept_paused && (next == 0 || g->accept_resume_ms < next)) next = g->accept_resume_ms;
    if (next) timeout = next <= now ? 0 : (int)(next - now);
    int n = epoll_wait(g->epfd, evs, EVENTS, timeout);
    if (n < 0 && errno != EINTR) {
      log_error("control", "control gate: epoll_wait: %s", strerror(errno));
      break;
    }
    for (int i = 0; i < n; i++) {
      void *p = evs[i].data.ptr;
      if (p == &g->stopfd) goto out;
      if (p == &g->lfd)
        accept_some(g);
      else if (p == &g->wakefd)
        take_posted(g);
      else
        conn_event(g, p, evs[i].events);
    }
    if (g->accept_paused && now_ms() >= g->accept_resume_ms) {
      struct epoll_event le = {.events = EPOLLIN, .data.ptr = &g->lfd};
      if (epoll_ctl(g->epfd, EPOLL_CTL_ADD, g->lfd, &le) == 0) g->accept_paused = 0;
      else g->accept_resume_ms = now_ms() + ACCEPT_PAUSE_MS;
    }
    expire(g);
    while (g->to_free) {
      gconn_t *c = g->to_free;
      g->to_free = c->next_free;
      free(c);
    }
  }
out:
  return NULL;
}

int ctlgate_start(ctlgate_t *g, ctlgate_conn_cb cb, void *arg, char *err, size_t errlen) {
  g->cb = cb;
  g->cb_arg = arg;
  if ((g->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
      (g->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0 ||
      (g->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
    snprintf(err, errlen, "control gate: %s", strerror(errno));
    return -1;
  }
  struct epoll_event le = {.events = EPOLLIN, .data.ptr = &g->lfd};
  struct epoll_event se = {.events = EPOLLIN, .data.ptr = &g->stopfd};
  struct epoll_event we = {.events = EPOLLIN, .data.ptr = &g->wakefd};
  if (epoll_ctl(g->epfd, EPOLL_CTL_ADD, g->lfd, &le) != 0 ||
      epoll_ctl(g->epfd, EPOLL_CTL_ADD, g->stopfd, &se) != 0 ||
      epoll_ctl(g->epfd, EPOLL_CTL_ADD, g->wakefd, &we) != 0 ||
      pthread_create(&g->thread, NULL, gate_main, g) != 0) {
    snprintf(err, errlen, "control gate: %s", strerror(errno));
    return -1;
  }
  /* Named so that top -H and the rejoin benchmark show the gate's CPU. */
  pthread_setname_np(g->thread, "ctlgate");
  g->started = 1;
  log_info("control", "control gate on %s: at most %zu connections, %zu per address%s, "
           "handshake within %lld ms", g->shown, g->max_conns, g->max_per_addr,
           g->max_per_addr ? "" : " (no limit)", (long long)g->handshake_ms);
  return 0;
}

void ctlgate_stop(ctlgate_t *g) {
  if (g == NULL) return;
  if (g->started) {
    uint64_t one = 1;
    if (write(g->stopfd, &one, sizeof(one)) < 0) { /* the thread reads nothing from it */ }
    pthread_join(g->thread, NULL);
    g->started = 0;
  }
  g->stopping = 1;
  while (g->all) {
    conn_end(g->all);
    conn_close(g, g->all, 0);
  }
  while (g->to_free) {
    gconn_t *c = g->to_free;
    g->to_free = c->next_free;
    free(c);
  }
  if (g->lfd >= 0) close(g->lfd);
  g->lfd = -1;
  pthread_mutex_lock(&g->rmu);
  g->rstopped = 1;
  gframe_t *f = g->rhead;
  g->rhead = g->rtail = NULL;
  pthread_mutex_unlock(&g->rmu);
  while (f) {
    gframe_t *next = f->next;
    free(f);
    f = next;
  }
  pthread_mutex_lock(&g->qmu);
  g->qstopped = 1;
  qitem_t *q = g->qhead;
  g->qhead = g->qtail = NULL;
  g->qn = g->qbytes = 0;
  pthread_cond_broadcast(&g->qcv);
  pthread_mutex_unlock(&g->qmu);
  while (q) {
    qitem_t *next = q->next;
    free(q->r.body);
    free(q);
    q = next;
  }
}

void ctlgate_free(ctlgate_t *g) {
  if (g == NULL) return;
  ctlgate_stop(g);
  if (g->epfd >= 0) close(g->epfd);
  if (g->stopfd >= 0) close(g->stopfd);
  if (g->wakefd >= 0) close(g->wakefd);
  conntrack_free(&g->ct);
  ctlgate_tls_free(g->tls);
  pthread_mutex_destroy(&g->qmu);
  pthread_cond_destroy(&g->qcv);
  pthread_mutex_destroy(&g->rmu);
  free(g);
}

void ctlgate_metrics(ctlgate_t *g, FILE *out) {
  if (g == NULL) return;
  pthread_mutex_lock(&g->qmu);
  size_t queued = g->qn;
  pthread_mutex_unlock(&g->qmu);
  fprintf(out,
          "# HELP cascade_control_connections Control connections open (through the gate).\n"
          "# TYPE cascade_control_connections gauge\ncascade_control_connections %lu\n"
          "# HELP cascade_control_connections_refused_total Control connections refused at "
          "accept.\n"
          "# TYPE cascade_control_connections_refused_total counter\n"
          "cascade_control_connections_refused_total{reason=\"per_address\"} %lu\n"
          "cascade_control_connections_refused_total{reason=\"total\"} %lu\n"
          "# HELP cascade_control_handshake_timeouts_total Control connections closed for "
          "not finishing TLS and SP negotiation within control.handshaketimeout.\n"
          "# TYPE cascade_control_handshake_timeouts_total counter\n"
          "cascade_control_handshake_timeouts_total %lu\n"
          "# HELP cascade_control_tls_handshakes_total TLS handshakes the control gate ran, "
          "by result.\n"
          "# TYPE cascade_control_tls_handshakes_total counter\n"
          "cascade_control_tls_handshakes_total{result=\"ok\"} %lu\n"
          "cascade_control_tls_handshakes_total{result=\"failed\"} %lu\n"
          "# HELP cascade_control_protocol_errors_total Control connections closed for "
          "breaking the SP wire (header, size bound, request id).\n"
          "# TYPE cascade_control_protocol_errors_total counter\n"
          "cascade_control_protocol_errors_total %lu\n"
          "# HELP cascade_control_requests_queued Control requests read and waiting for a "
          "worker.\n"
          "# TYPE cascade_control_requests_queued gauge\ncascade_control_requests_queued %zu\n",
          atomic_load(&g->conns), atomic_load(&g->refused_addr), atomic_load(&g->refused_total),
          atomic_load(&g->timeouts), atomic_load(&g->tls_ok), atomic_load(&g->tls_failed),
          atomic_load(&g->proto_errors), queued);
  ctlgate_tls_metrics(g->tls, out);
}
