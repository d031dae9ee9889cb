/* cascade-netimpair: a user-space UDP impairment proxy for tests (this
 * kernel has no netem).
 *
 *   client(s) --> --listen ==[up]==> one socket per client --> --forward
 *   client(s) <-- --listen <=[down]== one socket per client <-- --forward
 *
 * Each direction applies, in this order: blackhole, a datagram size bound
 * (larger ones are dropped, as by a link with a smaller MTU), loss, a token-bucket
 * rate cap (a bounded FIFO; full means drop), then delay + uniform jitter
 * in [-jitter, +jitter] and, for --reorder percent of the packets, an
 * extra --reorder-delay so they land after later ones. Random draws happen
 * when a packet arrives, from one generator per direction seeded by
 * --seed, so a run is repeatable when the traffic is.
 *
 * Packets waiting in the rate queue or the delay line come from one pool
 * bounded by NI_POOL_MAX_PKTS and NI_POOL_MAX_BYTES; freed packets are
 * recycled, and a full pool counts as dropped_queue.
 *
 * Control: one command per UDP datagram on --control, one reply line:
 *   set [up|down] NAME VALUE    (NAME from ni_params below)  -> ok
 *   blackhole [up|down] on|off                               -> ok
 *   stats                       -> one JSON line (counters per direction)
 *   reset                       -> ok (counters to zero)
 *   ping                        -> pong
 * SIGUSR1 / SIGUSR2 turn the blackhole on / off in both directions.
 * SIGINT / SIGTERM exit cleanly. On start, stdout gets "listen H:P",
 * "control H:P" (the bound ports, so 0 may be given) and then "ready". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "log.h"

#define NI_MOD "netimpair"
#define NI_SLOT 2048                  /* inline payload; larger datagrams get their own buffer */
#define NI_MAX_DGRAM 65536
#define NI_POOL_MAX_PKTS 100000
#define NI_POOL_MAX_BYTES (64u << 20)
#define NI_MAX_CLIENTS 1024
#define NI_HASH_SIZE 2048
#define NI_RECV_BATCH 256             /* datagrams read per readiness event */
#define NI_SOCKBUF (4 << 20)
#define NI_BURST_S 0.010              /* token bucket depth: 10 ms of the rate... */
#define NI_BURST_MIN 3000.0           /* ...but at least two full-size packets */

enum { NI_UP = 0, NI_DOWN = 1 };      /* up: client -> server; down: server -> client */
static const char *const ni_dir_names[2] = {"up", "down"};

/* ------------------------------------------------------------ config table */

typedef struct ni_params {
  double delay, jitter, loss, reorder, reorder_delay, rate, queue, maxsize;
} ni_params_t;

typedef struct ni_param_def {
  const char *name;
  size_t off;
  double def, min, max;
  const char *doc;
} ni_param_def_t;

/* One table drives the command line, `set` and the config in `stats`. */
static const ni_param_def_t ni_param_defs[] = {
    {"delay", offsetof(ni_params_t, delay), 0, 0, 60000, "added one-way delay (ms)"},
    {"jitter", offsetof(ni_params_t, jitter), 0, 0, 60000, "uniform jitter +/- (ms)"},
    {"loss", offsetof(ni_params_t, loss), 0, 0, 100, "loss probability (percent)"},
    {"reorder", offsetof(ni_params_t, reorder), 0, 0, 100, "packets held back (percent)"},
    {"reorder-delay", offsetof(ni_params_t, reorder_delay), 10, 0, 60000,
     "extra delay of a held-back packet (ms)"},
    {"rate", offsetof(ni_params_t, rate), 0, 0, 100e6, "rate cap (kbit/s), 0: none"},
    {"queue", offsetof(ni_params_t, queue), 1024, 1, 65536, "rate queue bound (KiB)"},
    {"maxsize", offsetof(ni_params_t, maxsize), 0, 0, NI_MAX_DGRAM,
     "largest datagram passed (bytes), 0: any"},
};
#define NI_NPARAMS (sizeof(ni_param_defs) / sizeof(ni_param_defs[0]))

static double *ni_param_ref(ni_params_t *p, const ni_param_def_t *d) {
  return (double *)((char *)p + d->off);
}

static const ni_param_def_t *ni_param_find(const char *name) {
  for (size_t i = 0; i < NI_NPARAMS; i++)
    if (strcmp(ni_param_defs[i].name, name) == 0) return &ni_param_defs[i];
  return NULL;
}

/* ------------------------------------------------------------ types */

typedef struct ni ni_t;
typedef struct ni_client ni_client_t;

typedef struct ni_pkt {
  struct ni_pkt *next;      /* rate queue or free list */
  ni_client_t *cl;
  double due;               /* when it leaves the delay line (ev_now clock) */
  double hold;              /* delay + jitter + reorder, drawn on arrival (s) */
  uint64_t seq;             /* ties on |due| keep arrival order */
  uint32_t len;
  uint8_t dir;
  uint8_t *data;            /* |inl|, or a buffer of its own (owned) */
  uint8_t inl[NI_SLOT];
} ni_pkt_t;

typedef struct ni_stats {
  uint64_t received, forwarded, dropped_loss, dropped_queue, dropped_blackhole, dropped_send,
      reordered, bytes_in, bytes_out, dropped_size;
  uint64_t max_size; /* largest datagram passed the size bound */
} ni_stats_t;

typedef struct ni_dir {
  ni_t *ni;
  ni_params_t p;
  ni_stats_t st;
  uint64_t rng;
  int blackhole;
  uint64_t inflight;        /* packets in the rate queue or the delay line */
  double tokens, last_fill; /* token bucket, bytes; may go negative (deficit) */
  ni_pkt_t *qhead, *qtail;  /* rate queue, owned */
  uint64_t qbytes;
  ev_timer rate_tm;
  uint64_t send_errs;       /* for rate-limited logging */
} ni_dir_t;

struct ni_client {
  ni_t *ni;
  struct sockaddr_storage addr;
  socklen_t alen;
  int fd;                   /* connected to --forward; owned */
  ev_io rio;
  ni_client_t *hnext;
  char name[64];
};

struct ni {
  struct ev_loop *loop;
  struct sockaddr_storage fwd;
  socklen_t fwd_len;
  int lfd, cfd;             /* listen and control sockets; owned */
  ev_io lio, cio;
  ev_timer delay_tm;
  ev_signal sig_on, sig_off, sig_int, sig_term;
  ni_dir_t dir[2];
  ni_client_t *hash[NI_HASH_SIZE];
  unsigned nclients;
  uint64_t noclient_drops;
  /* packet pool */
  ni_pkt_t *free_list;
  uint64_t pool_live, pool_bytes, seq;
  /* delay line: min-heap on (due, seq) */
  ni_pkt_t **heap;
  size_t heap_len;
  uint8_t buf[NI_MAX_DGRAM];
};

/* ------------------------------------------------------------ helpers */

static uint64_t ni_splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* ni_rand01 is uniform in [0, 1). */
static double ni_rand01(uint64_t *s) { return (double)(ni_splitmix(s) >> 11) * 0x1.0p-53; }

/* A power of two count: log the 1st, 2nd, 4th... occurrence of a repeating event. */
static int ni_log_due(uint64_t n) { return n != 0 && (n & (n - 1)) == 0; }

static int ni_set_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL, 0);
  return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -1 : 0;
}

static void ni_sockbufs(int fd) {
  int v = NI_SOCKBUF;
  (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
  (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
}

/* ni_parse_addr reads "IPv4:port" or "[IPv6]:port"; numeric only, never DNS. */
static int ni_parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len) {
  char host[128];
  const char *port;
  if (s[0] == '[') {
    const char *e = strchr(s, ']');
    if (!e || e[1] != ':' || (size_t)(e - s - 1) >= sizeof(host)) return -1;
    memcpy(host, s + 1, (size_t)(e - s - 1));
    host[e - s - 1] = '\0';
    port = e + 2;
  } else {
    const char *c = strrchr(s, ':');
    if (!c || (size_t)(c - s) >= sizeof(host)) return -1;
    memcpy(host, s, (size_t)(c - s));
    host[c - s] = '\0';
    port = c + 1;
  }
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM,
                           .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
  struct addrinfo *ai = NULL;
  if (getaddrinfo(host, port, &hints, &ai) != 0 || !ai) return -1;
  memcpy(ss, ai->ai_addr, ai->ai_addrlen);
  *len = ai->ai_addrlen;
  freeaddrinfo(ai);
  return 0;
}

static const char *ni_fmt_addr(const struct sockaddr *sa, socklen_t len, char *out, size_t n) {
  char h[INET6_ADDRSTRLEN + 16], p[8];  /* numeric only: a v6 literal with scope, a port */
  if (getnameinfo(sa, len, h, sizeof(h), p, sizeof(p), NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    snprintf(out, n, "?");
  else {
    /* a truncated name is still a useful log line: say so to the compiler */
    int r = snprintf(out, n, sa->sa_family == AF_INET6 ? "[%s]:%s" : "%s:%s", h, p);
    (void)r;
  }
  return out;
}

/* ------------------------------------------------------------ packet pool */

static ni_pkt_t *ni_pkt_get(ni_t *ni, const uint8_t *data, size_t len) {
  size_t cost = sizeof(ni_pkt_t) + (len > NI_SLOT ? len : 0);
  if (ni->pool_live >= NI_POOL_MAX_PKTS || ni->pool_bytes + cost > NI_POOL_MAX_BYTES) return NULL;
  ni_pkt_t *pk = ni->free_list;
  if (pk)
    ni->free_list = pk->next;
  else if (!(pk = malloc(sizeof(*pk))))
    return NULL;
  pk->data = pk->inl;
  if (len > NI_SLOT && !(pk->data = malloc(len))) {
    pk->next = ni->free_list;
    ni->free_list = pk;
    return NULL;
  }
  memcpy(pk->data, data, len);
  pk->len = (uint32_t)len;
  pk->next = NULL;
  ni->pool_live++;
  ni->pool_bytes += cost;
  return pk;
}

static void ni_pkt_put(ni_t *ni, ni_pkt_t *pk) {
  ni->pool_live--;
  ni->pool_bytes -= sizeof(ni_pkt_t) + (pk->data != pk->inl ? pk->len : 0);
  if (pk->data != pk->inl) free(pk->data);
  pk->data = pk->inl;
  pk->next = ni->free_list;
  ni->free_list = pk;
}

/* ------------------------------------------------------------ delay line */

static int ni_before(const ni_pkt_t *a, const ni_pkt_t *b) {
  return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void ni_heap_push(ni_t *ni, ni_pkt_t *pk) {
  size_t i = ni->heap_len++;
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!ni_before(pk, ni->heap[parent])) break;
    ni->heap[i] = ni->heap[parent];
    i = parent;
  }
  ni->heap[i] = pk;
}

static ni_pkt_t *ni_heap_pop(ni_t *ni) {
  ni_pkt_t *top = ni->heap[0], *last = ni->heap[--ni->heap_len];
  size_t i = 0, n = ni->heap_len;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && ni_before(ni->heap[c + 1], ni->heap[c])) c++;
    if (!ni_before(ni->heap[c], last)) break;
    ni->heap[i] = ni->heap[c];
    i = c;
  }
  if (n > 0) ni->heap[i] = last;
  return top;
}

static void ni_delay_rearm(ni_t *ni) {
  ev_timer_stop(ni->loop, &ni->delay_tm);
  if (ni->heap_len == 0) return;
  double in = ni->heap[0]->due - ev_now(ni->loop);
  ev_timer_set(&ni->delay_tm, in > 0 ? in : 0, 0);
  ev_timer_start(ni->loop, &ni->delay_tm);
}

/* ------------------------------------------------------------ forwarding */

static void ni_send(ni_t *ni, int dir, ni_client_t *cl, const uint8_t *data, size_t len) {
  ni_dir_t *d = &ni->dir[dir];
  if (d->blackhole) {
    d->st.dropped_blackhole++;
    return;
  }
  ssize_t n;
  do {
    n = dir == NI_UP ? send(cl->fd, data, len, 0)
                     : sendto(ni->lfd, data, len, 0, (struct sockaddr *)&cl->addr, cl->alen);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    d->st.dropped_send++;
    if (ni_log_due(++d->send_errs))
      log_warn(NI_MOD, "[%s %s] send failed: %s (%llu so far)", ni_dir_names[dir], cl->name,
               strerror(errno), (unsigned long long)d->send_errs);
    return;
  }
  d->st.forwarded++;
  d->st.bytes_out += len;
}

static void ni_pkt_send(ni_t *ni, ni_pkt_t *pk) {
  ni->dir[pk->dir].inflight--;
  ni_send(ni, pk->dir, pk->cl, pk->data, pk->len);
  ni_pkt_put(ni, pk);
}

/* ni_schedule puts |pk| on the delay line. */
static void ni_schedule(ni_t *ni, ni_pkt_t *pk) {
  pk->due = ev_now(ni->loop) + pk->hold;
  ni_heap_push(ni, pk);
  if (ni->heap[0] == pk) ni_delay_rearm(ni);
}

static void ni_on_delay(struct ev_loop *loop, ev_timer *w, int revents) {
  ni_t *ni = w->data;
  double now = ev_now(loop);
  while (ni->heap_len > 0 && ni->heap[0]->due <= now) ni_pkt_send(ni, ni_heap_pop(ni));
  ni_delay_rearm(ni);
}

/* ni_rate_pump moves packets the bucket allows from the rate queue to the delay line. */
static void ni_rate_pump(ni_dir_t *d) {
  ni_t *ni = d->ni;
  double now = ev_now(ni->loop), Bps = d->p.rate * 1000.0 / 8.0;
  double burst = Bps * NI_BURST_S > NI_BURST_MIN ? Bps * NI_BURST_S : NI_BURST_MIN;
  if (Bps > 0) {
    d->tokens += (now - d->last_fill) * Bps;
    if (d->tokens > burst) d->tokens = burst;
  }
  d->last_fill = now;
  while (d->qhead && (Bps <= 0 || d->tokens >= 0)) {
    ni_pkt_t *pk = d->qhead;
    d->qhead = pk->next;
    if (!d->qhead) d->qtail = NULL;
    d->qbytes -= pk->len;
    if (Bps > 0) d->tokens -= pk->len;
    ni_schedule(ni, pk);
  }
  ev_timer_stop(ni->loop, &d->rate_tm);
  if (d->qhead) {
    ev_timer_set(&d->rate_tm, -d->tokens / Bps + 1e-6, 0);
    ev_timer_start(ni->loop, &d->rate_tm);
  }
}

static void ni_on_rate(struct ev_loop *loop, ev_timer *w, int revents) { ni_rate_pump(w->data); }

/* ni_ingress takes one datagram that arrived for direction |dir|. */
static void ni_ingress(ni_t *ni, int dir, ni_client_t *cl, const uint8_t *data, size_t len) {
  ni_dir_t *d = &ni->dir[dir];
  d->st.received++;
  d->st.bytes_in += len;
  if (d->blackhole) {
    d->st.dropped_blackhole++;
    return;
  }
  if (d->p.maxsize > 0 && (double)len > d->p.maxsize) {
    d->st.dropped_size++;
    return;
  }
  if (len > d->st.max_size) d->st.max_size = len;
  if (d->p.loss > 0 && ni_rand01(&d->rng) * 100.0 < d->p.loss) {
    d->st.dropped_loss++;
    return;
  }
  double hold = d->p.delay;
  if (d->p.jitter > 0) hold += d->p.jitter * (2.0 * ni_rand01(&d->rng) - 1.0);
  if (hold < 0) hold = 0;
  if (d->p.reorder > 0 && ni_rand01(&d->rng) * 100.0 < d->p.reorder) {
    hold += d->p.reorder_delay;
    d->st.reordered++;
  }
  /* Nothing to wait for and nothing queued ahead: straight through. */
  if (hold <= 0 && d->p.rate <= 0 && d->inflight == 0) {
    ni_send(ni, dir, cl, data, len);
    return;
  }
  int queue_full = d->p.rate > 0 && d->qbytes + len > d->p.queue * 1024.0;
  ni_pkt_t *pk = queue_full ? NULL : ni_pkt_get(ni, data, len);
  if (!pk) {
    d->st.dropped_queue++;
    return;
  }
  pk->cl = cl;
  pk->dir = (uint8_t)dir;
  pk->hold = hold / 1000.0;
  pk->seq = ni->seq++;
  d->inflight++;
  if (d->p.rate > 0 || d->qhead) {
    if (d->qtail)
      d->qtail->next = pk;
    else
      d->qhead = pk;
    d->qtail = pk;
    d->qbytes += len;
    ni_rate_pump(d);
  } else {
    ni_schedule(ni, pk);
  }
}

/* ------------------------------------------------------------ clients */

static uint32_t ni_addr_hash(const struct sockaddr_storage *a) {
  const uint8_t *p;
  size_t n;
  uint16_t port;
  if (a->ss_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)a;
    p = (const uint8_t *)&s6->sin6_addr;
    n = sizeof(s6->sin6_addr);
    port = s6->sin6_port;
  } else {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)a;
    p = (const uint8_t *)&s4->sin_addr;
    n = sizeof(s4->sin_addr);
    port = s4->sin_port;
  }
  uint32_t h = 2166136261u ^ port;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
  return h % NI_HASH_SIZE;
}

static int ni_addr_eq(const struct sockaddr_storage *a, const struct sockaddr_storage *b) {
  if (a->ss_family != b->ss_family) return 0;
  if (a->ss_family == AF_INET6) {
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port &&
           memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
  }
  const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
  return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
}

static void ni_on_upstream(struct ev_loop *loop, ev_io *w, int revents) {
  ni_client_t *cl = w->data;
  ni_t *ni = cl->ni;
  for (int i = 0; i < NI_RECV_BATCH; i++) {
    ssize_t n = recv(cl->fd, ni->buf, sizeof(ni->buf), 0);
    if (n < 0) {
      if (errno == EINTR || errno == ECONNREFUSED) continue;  /* ICMP from a server not up yet */
      break;
    }
    ni_ingress(ni, NI_DOWN, cl, ni->buf, (size_t)n);
  }
}

static ni_client_t *ni_client_get(ni_t *ni, const struct sockaddr_storage *addr, socklen_t alen) {
  uint32_t h = ni_addr_hash(addr);
  for (ni_client_t *c = ni->hash[h]; c; c = c->hnext)
    if (ni_addr_eq(&c->addr, addr)) return c;
  if (ni->nclients >= NI_MAX_CLIENTS) return NULL;
  ni_client_t *cl = calloc(1, sizeof(*cl));
  if (!cl) return NULL;
  cl->ni = ni;
  memcpy(&cl->addr, addr, alen);
  cl->alen = alen;
  ni_fmt_addr((struct sockaddr *)addr, alen, cl->name, sizeof(cl->name));
  cl->fd = socket(ni->fwd.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (cl->fd < 0) goto fail_socket;
  ni_sockbufs(cl->fd);
  if (ni_set_nonblock(cl->fd) < 0 || connect(cl->fd, (struct sockaddr *)&ni->fwd, ni->fwd_len) < 0)
    goto fail_connect;
  ev_io_init(&cl->rio, ni_on_upstream, cl->fd, EV_READ);
  cl->rio.data = cl;
  ev_io_start(ni->loop, &cl->rio);
  cl->hnext = ni->hash[h];
  ni->hash[h] = cl;
  ni->nclients++;
  log_info(NI_MOD, "[client %s] new upstream socket", cl->name);
  return cl;

fail_connect:
  close(cl->fd);
fail_socket:
  log_warn(NI_MOD, "[client %s] upstream socket: %s", cl->name, strerror(errno));
  free(cl);
  return NULL;
}

static void ni_on_listen(struct ev_loop *loop, ev_io *w, int revents) {
  ni_t *ni = w->data;
  for (int i = 0; i < NI_RECV_BATCH; i++) {
    struct sockaddr_storage from;
    socklen_t flen = sizeof(from);
    ssize_t n = recvfrom(ni->lfd, ni->buf, sizeof(ni->buf), 0, (struct sockaddr *)&from, &flen);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    ni_client_t *cl = ni_client_get(ni, &from, flen);
    if (!cl) {
      if (ni_log_due(++ni->noclient_drops))
        log_warn(NI_MOD, "no room for another client: dropped %llu datagrams",
                 (unsigned long long)ni->noclient_drops);
      continue;
    }
    ni_ingress(ni, NI_UP, cl, ni->buf, (size_t)n);
  }
}

/* ------------------------------------------------------------ control */

static void ni_set_blackhole(ni_t *ni, int mask, int on) {
  for (int i = 0; i < 2; i++) {
    if (!(mask & (1 << i)) || ni->dir[i].blackhole == on) continue;
    ni->dir[i].blackhole = on;
    log_info(NI_MOD, "[%s] blackhole %s", ni_dir_names[i], on ? "on" : "off");
  }
}

static int ni_set_param(ni_t *ni, int mask, const char *name, const char *val, char *err,
                        size_t errlen) {
  const ni_param_def_t *def = ni_param_find(name);
  if (!def) {
    snprintf(err, errlen, "unknown parameter");
    return -1;
  }
  char *end;
  errno = 0;
  double v = strtod(val, &end);
  if (errno || end == val || *end || !(v >= def->min && v <= def->max)) {
    snprintf(err, errlen, "%s must be a number in [%g, %g]", name, def->min, def->max);
    return -1;
  }
  for (int i = 0; i < 2; i++) {
    if (!(mask & (1 << i))) continue;
    ni_dir_t *d = &ni->dir[i];
    *ni_param_ref(&d->p, def) = v;
    if (def->off == offsetof(ni_params_t, rate)) {
      d->tokens = 0;
      ni_rate_pump(d);  /* drains the queue at once when the cap goes away */
    }
    log_info(NI_MOD, "[%s] %s=%g", ni_dir_names[i], name, v);
  }
  return 0;
}

static size_t ni_stats_json(ni_t *ni, char *out, size_t n) {
  size_t o = 0;
#define NI_PUT(...)                                                          \
  do {                                                                       \
    int r_ = snprintf(out + o, o < n ? n - o : 0, __VA_ARGS__);              \
    if (r_ > 0) o += (size_t)r_;                                             \
  } while (0)
  NI_PUT("{");
  for (int i = 0; i < 2; i++) {
    const ni_dir_t *d = &ni->dir[i];
    const ni_stats_t *s = &d->st;
    NI_PUT("\"%s\":{\"received\":%llu,\"forwarded\":%llu,\"dropped_loss\":%llu,"
           "\"dropped_queue\":%llu,\"dropped_blackhole\":%llu,\"dropped_send\":%llu,"
           "\"reordered\":%llu,\"bytes_in\":%llu,\"bytes_out\":%llu,\"queued\":%llu,"
           "\"dropped_size\":%llu,\"max_size\":%llu,\"blackhole\":%s,\"config\":{",
           ni_dir_names[i], (unsigned long long)s->received, (unsigned long long)s->forwarded,
           (unsigned long long)s->dropped_loss, (unsigned long long)s->dropped_queue,
           (unsigned long long)s->dropped_blackhole, (unsigned long long)s->dropped_send,
           (unsigned long long)s->reordered, (unsigned long long)s->bytes_in,
           (unsigned long long)s->bytes_out, (unsigned long long)d->inflight,
           (unsigned long long)s->dropped_size, (unsigned long long)s->max_size,
           d->blackhole ? "true" : "false");
    for (size_t k = 0; k < NI_NPARAMS; k++)
      NI_PUT("%s\"%s\":%g", k ? "," : "", ni_param_defs[k].name,
             *ni_param_ref((ni_params_t *)&d->p, &ni_param_defs[k]));
    NI_PUT("}},");
  }
  NI_PUT("\"clients\":%u,\"pool_packets\":%llu}\n", ni->nclients,
         (unsigned long long)ni->pool_live);
#undef NI_PUT
  return o < n ? o : n - 1;
}

/* ni_command runs one control line; the reply (one line) goes to |out|. */
static size_t ni_command(ni_t *ni, char *line, char *out, size_t n) {
  char *argv[6];
  int argc = 0;
  for (char *sp, *t = strtok_r(line, " \t\r\n", &sp); t && argc < 6; t = strtok_r(NULL, " \t\r\n", &sp))
    argv[argc++] = t;
  int mask = 3, a = 1;
  if (argc > 1 && (strcmp(argv[1], "up") == 0 || strcmp(argv[1], "down") == 0)) {
    mask = strcmp(argv[1], "up") == 0 ? 1 << NI_UP : 1 << NI_DOWN;
    a = 2;
  }
  char err[128];
  if (argc == 0) return (size_t)snprintf(out, n, "error empty command\n");
  if (strcmp(argv[0], "ping") == 0 && argc == 1) return (size_t)snprintf(out, n, "pong\n");
  if (strcmp(argv[0], "stats") == 0 && argc == 1) return ni_stats_json(ni, out, n);
  if (strcmp(argv[0], "reset") == 0 && argc == 1) {
    memset(&ni->dir[NI_UP].st, 0, sizeof(ni_stats_t));
    memset(&ni->dir[NI_DOWN].st, 0, sizeof(ni_stats_t));
    return (size_t)snprintf(out, n, "ok\n");
  }
  if (strcmp(argv[0], "blackhole") == 0 && argc == a + 1) {
    if (strcmp(argv[a], "on") == 0 || strcmp(argv[a], "off") == 0) {
      ni_set_blackhole(ni, mask, strcmp(argv[a], "on") == 0);
      return (size_t)snprintf(out, n, "ok\n");
    }
    return (size_t)snprintf(out, n, "error blackhole takes on or off\n");
  }
  if (strcmp(argv[0], "set") == 0 && argc == a + 2) {
    if (ni_set_param(ni, mask, argv[a], argv[a + 1], err, sizeof(err)) < 0)
      return (size_t)snprintf(out, n, "error %s\n", err);
    return (size_t)snprintf(out, n, "ok\n");
  }
  return (size_t)snprintf(out, n, "error unknown command\n");
}

static void ni_on_control(struct ev_loop *loop, ev_io *w, int revents) {
  ni_t *ni = w->data;
  for (int i = 0; i < 64; i++) {
    char line[512], reply[4096];
    struct sockaddr_storage from;
    socklen_t flen = sizeof(from);
    ssize_t n = recvfrom(ni->cfd, line, sizeof(line) - 1, 0, (struct sockaddr *)&from, &flen);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    line[n] = '\0';
    size_t r = ni_command(ni, line, reply, sizeof(reply));
    if (r >= sizeof(reply)) r = sizeof(reply) - 1;
    (void)sendto(ni->cfd, reply, r, 0, (struct sockaddr *)&from, flen);
  }
}

static void ni_on_signal(struct ev_loop *loop, ev_signal *w, int revents) {
  ni_t *ni = w->data;
  if (w->signum == SIGUSR1)
    ni_set_blackhole(ni, 3, 1);
  else if (w->signum == SIGUSR2)
    ni_set_blackhole(ni, 3, 0);
  else
    ev_break(loop, EVBREAK_ALL);
}

/* ------------------------------------------------------------ setup */

static int ni_bind(const char *spec, int *fd_out, char *bound, size_t blen) {
  struct sockaddr_storage ss;
  socklen_t len;
  if (ni_parse_addr(spec, &ss, &len) < 0) {
    log_error(NI_MOD, "bad address %s (want IPv4:port or [IPv6]:port)", spec);
    return -1;
  }
  int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) goto fail_socket;
  ni_sockbufs(fd);
  if (ni_set_nonblock(fd) < 0 || bind(fd, (struct sockaddr *)&ss, len) < 0) goto fail_bind;
  len = sizeof(ss);
  if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) goto fail_bind;
  ni_fmt_addr((struct sockaddr *)&ss, len, bound, blen);
  *fd_out = fd;
  return 0;

fail_bind:
  close(fd);
fail_socket:
  log_error(NI_MOD, "bind %s: %s", spec, strerror(errno));
  return -1;
}

static void ni_free(ni_t *ni) {
  if (!ni) return;
  for (size_t i = 0; i < NI_HASH_SIZE; i++) {
    for (ni_client_t *c = ni->hash[i], *nx; c; c = nx) {
      nx = c->hnext;
      ev_io_stop(ni->loop, &c->rio);
      close(c->fd);
      free(c);
    }
  }
  for (int i = 0; i < 2; i++) {
    ni_dir_t *d = &ni->dir[i];
    ev_timer_stop(ni->loop, &d->rate_tm);
    for (ni_pkt_t *p = d->qhead, *nx; p; p = nx) {
      nx = p->next;
      ni_pkt_put(ni, p);
    }
  }
  while (ni->heap && ni->heap_len > 0) ni_pkt_put(ni, ni_heap_pop(ni));
  for (ni_pkt_t *p = ni->free_list, *nx; p; p = nx) {
    nx = p->next;
    free(p);
  }
  ev_timer_stop(ni->loop, &ni->delay_tm);
  ev_io_stop(ni->loop, &ni->lio);
  ev_io_stop(ni->loop, &ni->cio);
  ev_signal_stop(ni->loop, &ni->sig_on);
  ev_signal_stop(ni->loop, &ni->sig_off);
  ev_signal_stop(ni->loop, &ni->sig_int);
  ev_signal_stop(ni->loop, &ni->sig_term);
  if (ni->lfd >= 0) close(ni->lfd);
  if (ni->cfd >= 0) close(ni->cfd);
  free(ni->heap);
  free(ni);
}

static void ni_usage(FILE *f) {
  fprintf(f,
          "usage: cascade-netimpair --listen H:P --forward H:P --control H:P [--seed N]\n"
          "                         [--log-level L] [options]\n"
          "Relays UDP between clients of --listen and --forward, impaired both ways.\n"
          "Options (each applies to both directions; change live with `set`):\n");
  for (size_t i = 0; i < NI_NPARAMS; i++)
    fprintf(f, "  --%-14s %s (default %g)\n", ni_param_defs[i].name, ni_param_defs[i].doc,
            ni_param_defs[i].def);
}

int main(int argc, char **argv) {
  enum { OPT_LISTEN = 1, OPT_FORWARD, OPT_CONTROL, OPT_SEED, OPT_LOG, OPT_HELP, OPT_PARAM = 256 };
  struct option opts[NI_NPARAMS + 7];
  size_t no = 0;
  opts[no++] = (struct option){"listen", required_argument, NULL, OPT_LISTEN};
  opts[no++] = (struct option){"forward", required_argument, NULL, OPT_FORWARD};
  opts[no++] = (struct option){"control", required_argument, NULL, OPT_CONTROL};
  opts[no++] = (struct option){"seed", required_argument, NULL, OPT_SEED};
  opts[no++] = (struct option){"log-level", required_argument, NULL, OPT_LOG};
  opts[no++] = (struct option){"help", no_argument, NULL, OPT_HELP};
  for (size_t i = 0; i < NI_NPARAMS; i++)
    opts[no++] = (struct option){ni_param_defs[i].name, required_argument, NULL, OPT_PARAM + (int)i};
  opts[no] = (struct option){NULL, 0, NULL, 0};

  ni_t *ni = calloc(1, sizeof(*ni));
  if (!ni) return 1;
  ni->lfd = ni->cfd = -1;
  ni->loop = ev_default_loop(0);
  uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
  const char *listen_s = NULL, *forward_s = NULL, *control_s = NULL;
  for (int i = 0; i < 2; i++) {
    ni->dir[i].ni = ni;
    ev_init(&ni->dir[i].rate_tm, ni_on_rate);
    ni->dir[i].rate_tm.data = &ni->dir[i];
    for (size_t k = 0; k < NI_NPARAMS; k++)
      *ni_param_ref(&ni->dir[i].p, &ni_param_defs[k]) = ni_param_defs[k].def;
  }
  int rc = 2, c;
  char err[128];
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
      case OPT_LISTEN: listen_s = optarg; break;
      case OPT_FORWARD: forward_s = optarg; break;
      case OPT_CONTROL: control_s = optarg; break;
      case OPT_SEED: seed = strtoull(optarg, NULL, 0); break;
      case OPT_LOG: {
        log_level_t lvl;
        if (log_level_parse(optarg, &lvl) < 0) goto out_usage;
        log_set_level(lvl);
        break;
      }
      case OPT_HELP: ni_usage(stdout); rc = 0; goto out;
      default:
        if (c < OPT_PARAM || c >= OPT_PARAM + (int)NI_NPARAMS) goto out_usage;
        if (ni_set_param(ni, 3, ni_param_defs[c - OPT_PARAM].name, optarg, err, sizeof(err)) < 0) {
          fprintf(stderr, "cascade-netimpair: %s\n", err);
          goto out;
        }
    }
  }
  if (!listen_s || !forward_s || !control_s || optind != argc) goto out_usage;
  if (ni_parse_addr(forward_s, &ni->fwd, &ni->fwd_len) < 0) {
    log_error(NI_MOD, "bad --forward address %s", forward_s);
    goto out;
  }
  rc = 1;
  uint64_t s = seed;
  ni->dir[NI_UP].rng = ni_splitmix(&s);
  ni->dir[NI_DOWN].rng = ni_splitmix(&s);
  if (!(ni->heap = calloc(NI_POOL_MAX_PKTS, sizeof(*ni->heap)))) goto out;
  char lname[80], cname[80];
  if (ni_bind(listen_s, &ni->lfd, lname, sizeof(lname)) < 0) goto out;
  if (ni_bind(control_s, &ni->cfd, cname, sizeof(cname)) < 0) goto out;

  ev_io_init(&ni->lio, ni_on_listen, ni->lfd, EV_READ);
  ev_io_init(&ni->cio, ni_on_control, ni->cfd, EV_READ);
  ev_init(&ni->delay_tm, ni_on_delay);
  ni->lio.data = ni->cio.data = ni->delay_tm.data = ni;
  ev_signal_init(&ni->sig_on, ni_on_signal, SIGUSR1);
  ev_signal_init(&ni->sig_off, ni_on_signal, SIGUSR2);
  ev_signal_init(&ni->sig_int, ni_on_signal, SIGINT);
  ev_signal_init(&ni->sig_term, ni_on_signal, SIGTERM);
  ni->sig_on.data = ni->sig_off.data = ni->sig_int.data = ni->sig_term.data = ni;
  ev_io_start(ni->loop, &ni->lio);
  ev_io_start(ni->loop, &ni->cio);
  ev_signal_start(ni->loop, &ni->sig_on);
  ev_signal_start(ni->loop, &ni->sig_off);
  ev_signal_start(ni->loop, &ni->sig_int);
  ev_signal_start(ni->loop, &ni->sig_term);

  log_info(NI_MOD, "listen %s forward %s control %s seed %llu", lname, forward_s, cname,
           (unsigned long long)seed);
  printf("listen %s\ncontrol %s\nready\n", lname, cname);
  fflush(stdout);
  ev_run(ni->loop, 0);
  log_info(NI_MOD, "exiting");
  rc = 0;
  goto out;

out_usage:
  ni_usage(stderr);
out:
  ni_free(ni);
  ev_loop_destroy(ev_default_loop(0));
  return rc;
}
