/* The control gate: see ctlgate.h.
 *
 * One thread owns every socket of the gate: the public listener, and per
 * connection the client's socket and a loopback socket to nng's listener.
 * Both sockets of a connection are in one epoll set, edge-triggered; bytes
 * move through one scratch buffer and only what a socket would not take at
 * once is kept (at most one read, 64 KiB, per direction: a full buffer
 * stops reading from the other side). nng's pipe callbacks (its threads)
 * and ctlgate_peer (control workers) meet the gate thread under |mu|, in
 * the table of connections by loopback source port. */
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
#include "log.h"
#include "net.h"

#define SCRATCH (64 * 1024)
#define ACCEPTS_PER_WAKE 256
#define EVENTS 256
#define LOG_EVERY_MS 5000
#define ACCEPT_PAUSE_MS 100
#define FD_RESERVE 64
#define HANDSHAKE_TOTAL 6        /* x control.handshaketimeout: the longest handshake */            /* logs, PEM files, epoll, eventfds, nng's own */

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
  uint16_t port;             /* loopback source port: the key nng's pipe shows */
  int settled;               /* gate thread: known live, no deadline */
  int server_turn;           /* before settled: the client spoke last */
  int64_t born_ms, turn_ms;  /* accepted; the turn began */
  uint32_t pipe_id;          /* under ctlgate.mu: nng's pipe, once live */
  int live;                  /* under ctlgate.mu */
  int closed;
  gconn_t *next_free;
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
  rl_t rl_addr, rl_total, rl_timeout, rl_accept;
  atomic_ulong conns;
  atomic_ulong refused_addr, refused_total, timeouts, foreign;
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
  g->lfd = net_listen_tcp("control.listenaddr", hostport, 1, g->shown, sizeof(g->shown), err,
                          errlen);
  if (g->lfd < 0) goto fail;
  snprintf(inner, innerlen, "%s://127.0.0.1:0", g->scheme);
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
  conntrack_del(&g->ct, &c->ct);
  atomic_fetch_sub(&g->conns, 1);
  /* Events of this batch may still name it: freed after the batch. */
  c->next_free = g->to_free;
  g->to_free = c;
}

/* flow moves bytes from c->fd[from] to c->fd[!from] until either would
 * block. -1 on an error that ends the connection. */
static int flow(ctlgate_t *g, gconn_t *c, int from) {
  int to = !from;
  pend_t *p = &c->pend[to];
  for (;;) {
    if (p->len > p->off) {
      if (!c->writable[to]) return 0;
      ssize_t n = send(c->fd[to], p->buf + p->off, p->len - p->off, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          c->writable[to] = 0;
          return 0;
        }
        return -1;
      }
      p->off += (size_t)n;
      if (p->off < p->len) {
        c->writable[to] = 0;
        return 0;
      }
      free(p->buf);
      p->buf = NULL;
      p->len = p->off = 0;
    }
    if (c->eof[from]) {
      if (!c->shut[to]) {
        shutdown(c->fd[to], SHUT_WR);
        c->shut[to] = 1;
      }
      return 0;
    }
    if (!c->readable[from]) return 0;
    ssize_t n = recv(c->fd[from], g->scratch, SCRATCH, 0);
    if (n > 0 && !c->settled) {
      c->server_turn = from == 0;
      c->turn_ms = now_ms();
    }
    if (n == 0) {
      c->eof[from] = 1;
      continue;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        c->readable[from] = 0;
        return 0;
      }
      return -1;
    }
    /* A short read drained the socket: new data brings a new edge (unless
     * the peer's FIN came with it, which only another read sees). */
    if ((size_t)n < SCRATCH && !c->rdhup[from]) c->readable[from] = 0;
    size_t sent = 0;
    if (c->writable[to]) {
      ssize_t m = send(c->fd[to], g->scratch, (size_t)n, MSG_NOSIGNAL);
      if (m < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return -1;
      if (m < n) c->writable[to] = 0;
      sent = m > 0 ? (size_t)m : 0;
    }
    if (sent < (size_t)n) {
      if ((p->buf = malloc((size_t)n - sent)) == NULL) return -1;
      memcpy(p->buf, g->scratch + sent, (size_t)n - sent);
      p->len = (size_t)n - sent;
      p->off = 0;
    }
  }
}

static void conn_event(ctlgate_t *g, gref_t *r, uint32_t ev) {
  gconn_t *c = r->c;
  int s = r->side;
  if (c->closed) return;
  if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) c->readable[s] = 1;
  if (ev & (EPOLLRDHUP | EPOLLHUP)) c->rdhup[s] = 1;
  if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR)) c->writable[s] = 1;
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
    snprintf(c->ip, sizeof(c->ip), "%s", ip);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->ref[0] = (gref_t){c, 0};
    c->ref[1] = (gref_t){c, 1};
    struct epoll_event e0 = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                             .data.ptr = &c->ref[0]};
    struct epoll_event e1 = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                             .data.ptr = &c->ref[1]};
    if (inner_connect(g, c) != 0 || epoll_ctl(g->epfd, EPOLL_CTL_ADD, fd, &e0) != 0 ||
        epoll_ctl(g->epfd, EPOLL_CTL_ADD, c->fd[1], &e1) != 0) {
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
  for (size_t p = 0; p < 65536; p++) {
    gconn_t *c = g->by_port[p];
    if (c) conn_close(g, c, 1);
  }
  while (g->to_free) {
    gconn_t *c = g->to_free;
    g->to_free = c->next_free;
    free(c);
  }
  if (g->lfd >= 0) close(g->lfd);
  if (g->epfd >= 0) close(g->epfd);
  if (g->stopfd >= 0) close(g->stopfd);
  conntrack_free(&g->ct);
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
          "cascade_control_handshake_timeouts_total %lu\n",
          atomic_load(&g->conns), atomic_load(&g->refused_addr), atomic_load(&g->refused_total),
          atomic_load(&g->timeouts));
}
