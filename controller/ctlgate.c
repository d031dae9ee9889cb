/* The control gate: see ctlgate.h.
 *
 * One thread owns every socket of the gate: the public listener, and per
 * connection the client's socket and a loopback socket to nng's listener.
 * Both sockets of a connection are in one epoll set, edge-triggered; bytes
 * move through one scratch buffer and only what a socket would not take at
 * once is kept (at most one read, 64 KiB, per direction: a full buffer
 * stops reading from the other side). With tls+tcp the client's side is a
 * GnuTLS session (ctlgate_tls.h): the gate runs the handshake on the
 * accepted socket and opens the loopback connection to nng only once it
 * is done, so nng sees handshaken connections only and its one accept per
 * round no longer waits behind TLS work. nng's pipe callbacks (its
 * threads) and ctlgate_peer (control workers) meet the gate thread under
 * |mu|, in the table of connections by loopback source port. */
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
#include "log.h"
#include "net.h"

#define SCRATCH (64 * 1024)
#define ACCEPTS_PER_WAKE 256
#define EVENTS 256
#define LOG_EVERY_MS 5000
#define ACCEPT_PAUSE_MS 100
#define FD_RESERVE 64            /* logs, PEM files, epoll, eventfds, nng's own */
#define TLS_RETRIES 16           /* harmless GnuTLS returns in a row before giving up */

typedef struct gconn gconn_t;

/* What an epoll event points at: one socket of a connection. */
typedef struct gref {
  gconn_t *c;
  int side;                  /* 0 the client, 1 nng (loopback) */
} gref_t;

typedef struct pend {
  uint8_t *buf;              /* owned; bytes waiting to be written */
  size_t len, off;
} pend_t;

struct gconn {
  conntrack_entry_t ct;      /* first: conntrack entries map back to it */
  int fd[2];
  gref_t ref[2];
  uint8_t readable[2], writable[2], rdhup[2], eof[2], shut[2];
  pend_t pend[2];            /* pend[i]: bytes for fd[i] */
  gnutls_session_t tls;      /* tls+tcp: the client's side; NULL in plain TCP */
  int hs;                    /* the TLS handshake runs: no loopback connection yet */
  uint16_t port;             /* loopback source port: the key nng's pipe shows */
  int settled;               /* gate thread: known live, no deadline */
  int server_turn;           /* before settled: the client spoke last */
  int64_t born_ms, turn_ms;  /* accepted; the turn began */
  uint32_t pipe_id;          /* under ctlgate.mu: nng's pipe, once live */
  int live;                  /* under ctlgate.mu */
  int closed;
  gconn_t *next_free;
  gconn_t *prev, *next;      /* ctlgate.all: every open connection */
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
  uint16_t inner_port;
  int64_t handshake_ms;
  size_t max_per_addr, max_conns;
  conntrack_t ct;            /* gate thread only */
  pthread_t thread;
  int started;
  int accept_paused;
  int64_t accept_resume_ms;
  gconn_t *to_free;          /* closed during this batch of events */
  gconn_t *all;              /* gate thread (and ctlgate_free): open connections */
  ctlgate_tls_t *tls;        /* tls+tcp: certificate and settings; NULL in plain TCP */
  rl_t rl_addr, rl_total, rl_timeout, rl_accept, rl_tls;
  atomic_ulong conns;
  atomic_ulong refused_addr, refused_total, timeouts, foreign, tls_ok, tls_failed;
  pthread_mutex_t mu;        /* by_port, gconn.live, gconn.pipe_id */
  gconn_t *by_port[65536];
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

size_t ctlgate_fit(uint64_t nofile, size_t http_max, size_t db_pool, size_t ports) {
  uint64_t reserve = FD_RESERVE + (uint64_t)db_pool;
  if (nofile <= reserve) return 1;
  uint64_t budget = nofile - reserve;
  uint64_t http = http_max < budget / 2 ? http_max : budget / 2;
  uint64_t n = (budget - http) / 3;
  if (ports && n > ports) n = ports;
  return n ? (size_t)n : 1;
}

/* local_ports is the size of the kernel's ephemeral port range: every
 * gate connection holds one loopback source port. */
static size_t local_ports(void) {
  unsigned lo = 32768, hi = 60999;
  FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
  if (f) {
    if (fscanf(f, "%u %u", &lo, &hi) != 2 || hi < lo) lo = 32768, hi = 60999;
    fclose(f);
  }
  return (size_t)(hi - lo + 1);
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

ctlgate_t *ctlgate_new(const ctlgate_config_t *cfg, char *inner, size_t innerlen, char *err,
                       size_t errlen) {
  char hostport[300];
  struct rlimit rl;
  ctlgate_t *g = calloc(1, sizeof(*g));
  if (g == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  g->lfd = g->epfd = g->stopfd = -1;
  pthread_mutex_init(&g->mu, NULL);
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
  size_t fit = ctlgate_fit(nofile, cfg->http_max, cfg->db_pool, local_ports());
  g->max_conns = cfg->max_conns ? cfg->max_conns : fit;
  if (g->max_conns > fit) {
    log_warn("control", "control.maxconnections %zu does not fit the open-file limit (%llu, "
             "3 descriptors per connection) or the local port range: using %zu",
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
  /* Behind the gate only plaintext: the gate has ended TLS, on loopback. */
  snprintf(inner, innerlen, "tcp://127.0.0.1:0");
  return g;

fail:
  ctlgate_free(g);
  return NULL;
}

/* ---- nng's side ---------------------------------------------------------- */

/* A pipe is a connection that finished TLS and SP negotiation: if it came
 * through the gate it is live, else it is closed (something local dialled
 * the loopback port directly, around the limits). */
static void on_pipe(nng_pipe p, nng_pipe_ev ev, void *arg) {
  ctlgate_t *g = arg;
  nng_sockaddr sa;
  int known = 0;
  (void)ev;
  if (nng_pipe_get_addr(p, NNG_OPT_REMADDR, &sa) == 0 && sa.s_family == NNG_AF_INET &&
      sa.s_in.sa_addr == htonl(INADDR_LOOPBACK)) {
    uint16_t port = ntohs(sa.s_in.sa_port);
    pthread_mutex_lock(&g->mu);
    gconn_t *c = g->by_port[port];
    if (c && !c->live) {
      c->live = 1;
      c->pipe_id = (uint32_t)nng_pipe_id(p);
      known = 1;
    }
    pthread_mutex_unlock(&g->mu);
  }
  if (!known) {
    atomic_fetch_add(&g->foreign, 1);
    nng_pipe_close(p);
  }
}

int ctlgate_attach(ctlgate_t *g, nng_socket sock) {
  return nng_pipe_notify(sock, NNG_PIPE_EV_ADD_PRE, on_pipe, g);
}

void ctlgate_peer(ctlgate_t *g, nng_pipe p, char *buf, size_t len) {
  nng_sockaddr sa;
  snprintf(buf, len, "?");
  if (g == NULL || nng_pipe_get_addr(p, NNG_OPT_REMADDR, &sa) != 0 ||
      sa.s_family != NNG_AF_INET)
    return;
  uint16_t port = ntohs(sa.s_in.sa_port);
  pthread_mutex_lock(&g->mu);
  gconn_t *c = g->by_port[port];
  if (c && c->live && c->pipe_id == (uint32_t)nng_pipe_id(p)) snprintf(buf, len, "%s", c->ip);
  pthread_mutex_unlock(&g->mu);
}

/* ---- connections ------------------------------------------------------- */

static void conn_close(ctlgate_t *g, gconn_t *c, int reset) {
  if (c->closed) return;
  c->closed = 1;
  if (c->prev) c->prev->next = c->next;
  else g->all = c->next;
  if (c->next) c->next->prev = c->prev;
  pthread_mutex_lock(&g->mu);
  if (g->by_port[c->port] == c) g->by_port[c->port] = NULL;
  pthread_mutex_unlock(&g->mu);
  for (int i = 0; i < 2; i++) {
    if (c->fd[i] < 0) continue;
    if (reset) {
      /* RST: no TIME_WAIT on the loopback port, and the peer knows at once. */
      struct linger lg = {1, 0};
      setsockopt(c->fd[i], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    close(c->fd[i]);
    c->fd[i] = -1;
    free(c->pend[i].buf);
    c->pend[i].buf = NULL;
  }
  if (c->tls) gnutls_deinit(c->tls);
  c->tls = NULL;
  conntrack_del(&g->ct, &c->ct);
  atomic_fetch_sub(&g->conns, 1);
  /* Events of this batch may still name it: freed after the batch. */
  c->next_free = g->to_free;
  g->to_free = c;
}

/* GnuTLS's transport: the client's socket. During the handshake the gate
 * answers each flight at once, so it is always the client's turn
 * (ctlgate_verdict): from the accept, then from each flight the gate sent.
 * A client's whole flight must arrive within the deadline; bytes trickled
 * in do not restart it. After the handshake, flow() keeps the turn. */
static ssize_t tls_pull(gnutls_transport_ptr_t p, void *buf, size_t len) {
  gconn_t *c = p;
  ssize_t n = recv(c->fd[0], buf, len, 0);
  if (n < 0) gnutls_transport_set_errno(c->tls, errno);
  return n;
}

static ssize_t tls_push(gnutls_transport_ptr_t p, const void *buf, size_t len) {
  gconn_t *c = p;
  ssize_t n = send(c->fd[0], buf, len, MSG_NOSIGNAL);
  if (n > 0 && c->hs) {
    c->server_turn = 0;
    c->turn_ms = now_ms();
  }
  if (n < 0) gnutls_transport_set_errno(c->tls, errno);
  return n;
}

#define IO_AGAIN (-2)

/* side_recv reads from side |from|: > 0 bytes, 0 the end, IO_AGAIN, or -1
 * an error that ends the connection. The client's side in TLS gives
 * plaintext, at most one record. */
static ssize_t side_recv(gconn_t *c, int from, uint8_t *buf, size_t len) {
  if (from == 0 && c->tls) {
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
    ssize_t n = recv(c->fd[from], buf, len, 0);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK ? IO_AGAIN : -1;
  }
}

/* side_send writes to side |to|: > 0 bytes taken, IO_AGAIN, or -1. In TLS
 * a record GnuTLS could not send at once stays in GnuTLS: the next call,
 * with the same bytes at the front, sends it and counts them. */
static ssize_t side_send(gconn_t *c, int to, const uint8_t *buf, size_t len) {
  if (to == 0 && c->tls) {
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
    ssize_t n = send(c->fd[to], buf, len, MSG_NOSIGNAL);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK ? IO_AGAIN : -1;
  }
}

/* side_shut half-closes side |to| once the other side ended. */
static void side_shut(gconn_t *c, int to) {
  if (c->shut[to]) return;
  /* best effort: a close_notify that does not fit now is not waited for */
  if (to == 0 && c->tls) gnutls_bye(c->tls, GNUTLS_SHUT_WR);
  shutdown(c->fd[to], SHUT_WR);
  c->shut[to] = 1;
}

/* flow moves bytes from side |from| to side !from until either would
 * block. -1 on an error that ends the connection. */
static int flow(ctlgate_t *g, gconn_t *c, int from) {
  int to = !from;
  pend_t *p = &c->pend[to];
  int tls_from = from == 0 && c->tls;
  for (;;) {
    while (p->len > p->off) {
      if (!c->writable[to]) return 0;
      ssize_t n = side_send(c, to, p->buf + p->off, p->len - p->off);
      if (n == IO_AGAIN) {
        c->writable[to] = 0;
        return 0;
      }
      if (n < 0) return -1;
      p->off += (size_t)n;
      if (p->off < p->len && !(to == 0 && c->tls)) {
        c->writable[to] = 0; /* a short plain send: the socket is full */
        return 0;
      }
    }
    if (p->buf) {
      free(p->buf);
      p->buf = NULL;
      p->len = p->off = 0;
    }
    if (c->eof[from]) {
      side_shut(c, to);
      return 0;
    }
    if (!c->readable[from]) return 0;
    ssize_t n = side_recv(c, from, g->scratch, SCRATCH);
    if (n > 0 && !c->settled) {
      c->server_turn = from == 0;
      c->turn_ms = now_ms();
    }
    if (n == 0) {
      c->eof[from] = 1;
      continue;
    }
    if (n == IO_AGAIN) {
      c->readable[from] = 0;
      return 0;
    }
    if (n < 0) return -1;
    /* A short read drained the socket: new data brings a new edge (unless
     * the peer's FIN came with it, which only another read sees). Not so
     * in TLS: GnuTLS may hold the next record, or part of it be left in
     * the socket. */
    if (!tls_from && (size_t)n < SCRATCH && !c->rdhup[from]) c->readable[from] = 0;
    size_t sent = 0;
    while (c->writable[to] && sent < (size_t)n) {
      ssize_t m = side_send(c, to, g->scratch + sent, (size_t)n - sent);
      if (m == IO_AGAIN) {
        c->writable[to] = 0;
        break;
      }
      if (m < 0) return -1;
      sent += (size_t)m;
      if (sent < (size_t)n && !(to == 0 && c->tls)) c->writable[to] = 0;
    }
    if (sent < (size_t)n) {
      if ((p->buf = malloc((size_t)n - sent)) == NULL) return -1;
      memcpy(p->buf, g->scratch + sent, (size_t)n - sent);
      p->len = (size_t)n - sent;
      p->off = 0;
    }
  }
}

static int inner_open(ctlgate_t *g, gconn_t *c);

/* handshake advances the TLS handshake of |c|; once it is done, the
 * loopback connection to nng opens. -1 when the connection is over. */
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
      c->readable[0] = 1;
      if (inner_open(g, c) != 0) {
        unsigned long n;
        if (rl_pass(&g->rl_accept, &n))
          log_warn("control", "cannot forward a control connection from %s: %s", c->ip,
                   strerror(errno));
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

static void conn_event(ctlgate_t *g, gref_t *r, uint32_t ev) {
  gconn_t *c = r->c;
  int s = r->side;
  if (c->closed) return;
  if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) c->readable[s] = 1;
  if (ev & (EPOLLRDHUP | EPOLLHUP)) c->rdhup[s] = 1;
  if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR)) c->writable[s] = 1;
  if (c->hs) {
    if (handshake(g, c) != 0) {
      conn_close(g, c, 1);
      return;
    }
    if (c->hs) return;
  }
  if (flow(g, c, 0) != 0 || flow(g, c, 1) != 0) {
    conn_close(g, c, 1);
    return;
  }
  /* nng never half-closes: once its side ended and the rest reached the
   * client, the connection is over (a client that keeps its end open
   * would otherwise hold a place with no pipe behind it). */
  if (c->eof[1] && c->pend[0].len == 0) conn_close(g, c, 0);
}

/* inner_connect opens the loopback connection to nng's listener; the source
 * port is bound first so the connection is in by_port before nng can see it. */
static int inner_connect(ctlgate_t *g, gconn_t *c) {
  struct sockaddr_in a;
  socklen_t al = sizeof(a);
  int one = 1;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
      getsockname(fd, (struct sockaddr *)&a, &al) != 0)
    goto fail;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  c->fd[1] = fd;
  c->port = ntohs(a.sin_port);
  pthread_mutex_lock(&g->mu);
  g->by_port[c->port] = c;
  pthread_mutex_unlock(&g->mu);
  a.sin_port = htons(g->inner_port);
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 && errno != EINPROGRESS) return -1;
  return 0;
fail:
  close(fd);
  return -1;
}

/* inner_open connects to nng and watches the loopback socket. */
static int inner_open(ctlgate_t *g, gconn_t *c) {
  struct epoll_event e1 = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                           .data.ptr = &c->ref[1]};
  if (inner_connect(g, c) != 0 || epoll_ctl(g->epfd, EPOLL_CTL_ADD, c->fd[1], &e1) != 0)
    return -1;
  return 0;
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
    c->fd[0] = fd;
    c->fd[1] = -1;
    c->next = g->all;
    if (g->all) g->all->prev = c;
    g->all = c;
    snprintf(c->ip, sizeof(c->ip), "%s", ip);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->ref[0] = (gref_t){c, 0};
    c->ref[1] = (gref_t){c, 1};
    struct epoll_event e0 = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                             .data.ptr = &c->ref[0]};
    /* TLS: nng gets the connection once the handshake is done (handshake()). */
    c->hs = g->tls != NULL;
    if ((g->tls && ctlgate_tls_session(g->tls, &c->tls, c, tls_pull, tls_push) != 0) ||
        (!g->tls && inner_open(g, c) != 0) || epoll_ctl(g->epfd, EPOLL_CTL_ADD, fd, &e0) != 0) {
      unsigned long n;
      if (rl_pass(&g->rl_accept, &n))
        log_warn("control", "cannot forward a control connection from %s: %s", ip,
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
 * client's turn (it has sent nothing yet, or the controller answered
 * last) and the client has been silent for control.handshaketimeout, or
 * when it is still not live after six times that. A client that spoke
 * last waits on the controller, which may be slow to answer during a
 * storm of agents: closing those made nng 1.5.2's dialer on some agents
 * stop redialling. */
static void expire(ctlgate_t *g) {
  conntrack_entry_t *e;
  int64_t now = now_ms();
  while ((e = conntrack_expired(&g->ct, now)) != NULL) {
    gconn_t *c = (gconn_t *)e;
    pthread_mutex_lock(&g->mu);
    int live = c->live;
    pthread_mutex_unlock(&g->mu);
    if (live) {
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

int ctlgate_start(ctlgate_t *g, uint16_t inner_port, char *err, size_t errlen) {
  g->inner_port = inner_port;
  if ((g->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
      (g->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
    snprintf(err, errlen, "control gate: %s", strerror(errno));
    return -1;
  }
  struct epoll_event le = {.events = EPOLLIN, .data.ptr = &g->lfd};
  struct epoll_event se = {.events = EPOLLIN, .data.ptr = &g->stopfd};
  if (epoll_ctl(g->epfd, EPOLL_CTL_ADD, g->lfd, &le) != 0 ||
      epoll_ctl(g->epfd, EPOLL_CTL_ADD, g->stopfd, &se) != 0 ||
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

void ctlgate_free(ctlgate_t *g) {
  if (g == NULL) return;
  if (g->started) {
    uint64_t one = 1;
    if (write(g->stopfd, &one, sizeof(one)) < 0) { /* the thread reads nothing from it */ }
    pthread_join(g->thread, NULL);
  }
  while (g->all) conn_close(g, g->all, 1);
  while (g->to_free) {
    gconn_t *c = g->to_free;
    g->to_free = c->next_free;
    free(c);
  }
  if (g->lfd >= 0) close(g->lfd);
  if (g->epfd >= 0) close(g->epfd);
  if (g->stopfd >= 0) close(g->stopfd);
  conntrack_free(&g->ct);
  ctlgate_tls_free(g->tls);
  pthread_mutex_destroy(&g->mu);
  free(g);
}

void ctlgate_metrics(ctlgate_t *g, FILE *out) {
  if (g == NULL) return;
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
          "cascade_control_tls_handshakes_total{result=\"failed\"} %lu\n",
          atomic_load(&g->conns), atomic_load(&g->refused_addr), atomic_load(&g->refused_total),
          atomic_load(&g->timeouts), atomic_load(&g->tls_ok), atomic_load(&g->tls_failed));
  ctlgate_tls_metrics(g->tls, out);
}
