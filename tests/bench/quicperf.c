/* cascade-quicperf: load and performance tool for the data plane's QUIC
 * link (dataplane/quic.c), both ends in one binary.
 *
 *   cascade-quicperf server --listen H:P --pki DIR
 *   cascade-quicperf client --connect H:P --pki DIR [--service source|
 *       discard|echo] [--bytes N] [--streams K] [--conns N] [--reconnect]
 *       [--hold] [--timeout S] [--progress S]
 *
 * The server answers the test services of qsvc.h (ECHO, DISCARD, SOURCE).
 * A client opens --conns connections from one endpoint, and on each,
 * --streams streams that each move --bytes bytes and verify them: SOURCE
 * bytes must be o % 251 at stream offset o; ECHO must return what was sent
 * (the same pattern); DISCARD must end with the server's FIN after all
 * bytes went out. --streams 0 only measures handshakes. --reconnect retries
 * connections that fail until --timeout, on the schedule of the agent's
 * links (agent/link_fsm.c): full jitter, a uniform draw below 100 ms
 * doubling per failure up to --reconnect-max (default 5 s, the agent's
 * cascadeclient.reconnectmax), starting over after a link that was up for
 * 1 s; --hold keeps the connections open after the work, reconnects them
 * when they drop, and prints {"event":"all_connected",...} each time all of
 * them are up again, with the wall clock and "oldest_up", when the
 * longest-standing of them was established (a server restart is over once
 * oldest_up is past it: a client that has not noticed it yet still counts
 * as connected), and, over the connections that dropped since the start,
 * the wall clock of their last loss and return (first, median, 90th
 * percentile, last) and the causes of the drops.
 *
 * PKI: --pki DIR makes (once) a CA in DIR and issues this process a node
 * certificate (--id, default 1 for the server and 2 for the client), so a
 * server and its clients pointed at the same DIR trust each other. Or give
 * --cert, --key and --ca files. Output: JSON lines on stdout, the last one
 * the summary; exit status 0 only when every stream verified (3: a client
 * stopped by SIGTERM/SIGINT before the end, with nothing wrong so far). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <gnutls/gnutls.h>

#include "log.h"
#include "qsvc.h"
#include "quic.h"
#include "x509.h"

#define QP_PATLEN (QSVC_SOURCE_MOD * 256) /* pattern from any phase */
#define QP_CHUNK (QSVC_SOURCE_MOD * 255)

typedef struct qp qp;

typedef struct qp_stream {
  struct qp_conn *pc;
  int64_t sid;
  uint64_t sent, rcvd;
  int answered, done, failed;
} qp_stream;

typedef struct qp_conn {
  qp *p;
  int idx;
  quic_conn *c;
  int connected;
  int opened;          /* streams opened on this connection */
  int finished;        /* streams done (ok or failed) */
  int gave_up;         /* failed, no reconnect */
  unsigned attempts;   /* failures since the link was last stable */
  double up_since;     /* mono() of the last on_connected */
  double up_wall;      /* the same, wall() */
  double lost_at;      /* wall() when the link dropped (0: not this round) */
  double back_at;      /* wall() when it came back */
  ev_timer retry;
  qp_stream *streams;  /* owned, p->nstreams */
  uint64_t lost_closed; /* packets lost on this slot's closed connections */
  size_t max_payload;  /* largest path packet size any of them reached */
} qp_conn;

struct qp {
  struct ev_loop *loop;
  int server;
  int accept_events;        /* server: an "accepted" line per connection */
  quic_endpoint *ep;
  qsvc *q;
  /* options */
  struct sockaddr_storage peer;
  socklen_t peerlen;
  stream_kind_t kind;
  uint64_t bytes;
  int nstreams, nconns, reconnect, hold;
  double timeout, progress, reconnect_max;
  /* state */
  qp_conn *conns;      /* owned, nconns */
  int connected, ever_all;
  double t0, t_first, t_all, t_done;
  uint64_t verified_bytes;
  int streams_ok, streams_failed, conn_failures, mismatch;
  int stopping, interrupted;
  int lost_reset, lost_idle, lost_other; /* drops by cause, since start */
  unsigned retries;                      /* failed attempts, since start */
  uint8_t pat[QP_PATLEN];
  ev_timer deadline, tick;
  ev_signal sigint, sigterm;
};

static double mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double wall(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int parse_hostport(const char *s, struct sockaddr_storage *ss,
                          socklen_t *len) {
  char host[256];
  const char *colon = strrchr(s, ':');
  if (!colon || (size_t)(colon - s) >= sizeof(host)) return -1;
  memcpy(host, s, (size_t)(colon - s));
  host[colon - s] = 0;
  char *h = host;
  if (h[0] == '[') { /* [v6]:port */
    h++;
    char *e = strchr(h, ']');
    if (!e) return -1;
    *e = 0;
  }
  struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV,
                           .ai_socktype = SOCK_DGRAM};
  struct addrinfo *ai = NULL;
  if (getaddrinfo(h, colon + 1, &hints, &ai) != 0 || !ai) return -1;
  memcpy(ss, ai->ai_addr, ai->ai_addrlen);
  *len = ai->ai_addrlen;
  freeaddrinfo(ai);
  return 0;
}

/* ---- PKI ---- */

static int load_pki(const char *dir, int64_t id, char **cert, char **key,
                    char **ca) {
  char path[512], err[256], *ca_key = NULL, *csr = NULL;
  if (x509_ca_ensure(dir, err, sizeof(err)) != 0) goto fail;
  snprintf(path, sizeof(path), "%s/ca.crt", dir);
  if (!(*ca = x509_read_file(path, X509_PEM_MAX, err, sizeof(err)))) goto fail;
  snprintf(path, sizeof(path), "%s/ca.key", dir);
  if (!(ca_key = x509_read_file(path, X509_PEM_MAX, err, sizeof(err))))
    goto fail;
  snprintf(path, sizeof(path), "%s/node%lld.key", dir, (long long)id);
  if (x509_key_ensure(path, key, err, sizeof(err)) != 0) goto fail;
  if (x509_csr_make(*key, "quicperf", &csr, err, sizeof(err)) != 0) goto fail;
  if (x509_csr_sign(*ca, ca_key, csr, id, 1, 86400, cert, NULL, err,
                    sizeof(err)) != 0)
    goto fail;
  free(ca_key);
  free(csr);
  return 0;
fail:
  fprintf(stderr, "quicperf: pki %s: %s\n", dir, err);
  free(ca_key);
  free(csr);
  return -1;
}

/* ---- client ---- */

static void conn_start(qp_conn *pc);

static int conn_done(const qp *p, const qp_conn *pc) {
  if (pc->gave_up) return 1;
  return p->nstreams == 0 ? pc->connected : pc->finished >= p->nstreams;
}

static int all_finished(const qp *p) {
  if (p->hold) return 0;
  for (int i = 0; i < p->nconns; i++)
    if (!conn_done(p, &p->conns[i])) return 0;
  return 1;
}

/* ep_stats_json writes the endpoint's datagram counters as JSON members. */
static void ep_stats_json(const quic_endpoint *ep) {
  quic_endpoint_stats es;
  quic_endpoint_get_stats(ep, &es);
  printf("\"rx_dgrams\":%llu,\"rx_syscalls\":%llu,\"tx_dgrams\":%llu,"
         "\"tx_syscalls\":%llu,\"tx_eagain\":%llu",
         (unsigned long long)es.rx_dgrams, (unsigned long long)es.rx_syscalls,
         (unsigned long long)es.tx_dgrams, (unsigned long long)es.tx_syscalls,
         (unsigned long long)es.tx_eagain);
}

/* conn_note keeps what the summary reports of |pc|'s connection. */
static void conn_note(qp_conn *pc, int closing) {
  if (!pc->c) return;
  quic_conn_stats st;
  quic_conn_get_stats(pc->c, &st);
  if (st.max_udp_payload > pc->max_payload) pc->max_payload = st.max_udp_payload;
  if (closing) pc->lost_closed += st.pkts_lost;
}

static void summary(qp *p) {
  /* Link figures of the client's connections: lost packets (a sender's),
   * the largest packet size path MTU discovery reached. */
  uint64_t lost = 0;
  size_t max_payload = 0;
  const char *cc = NULL;
  double probe_rtt = 0;
  for (int i = 0; p->conns && i < p->nconns; i++) {
    qp_conn *pc = &p->conns[i];
    quic_conn_stats st = {0};
    if (pc->c) quic_conn_get_stats(pc->c, &st);
    conn_note(pc, 0);
    lost += pc->lost_closed + st.pkts_lost;
    if (!cc && st.cc) {
      cc = st.cc;
      probe_rtt = st.probe_rtt_ms;
    }
    if (pc->max_payload > max_payload) max_payload = pc->max_payload;
  }
  printf("{\"event\":\"links\",\"lost\":%llu,\"max_udp_payload\":%zu,\"cc\":\"%s\","
         "\"probe_rtt_ms\":%.3f}\n",
         (unsigned long long)lost, max_payload, cc ? cc : "", probe_rtt);
  double end = p->t_done ? p->t_done : mono();
  double span = p->t_first ? end - p->t_first : 0;
  printf("{\"event\":\"summary\",\"conns\":%d,\"connected\":%d,"
         "\"streams_ok\":%d,\"streams_failed\":%d,\"conn_failures\":%d,"
         "\"mismatch\":%d,\"bytes\":%llu,\"seconds\":%.3f,"
         "\"goodput_mbps\":%.1f,\"first_connected_s\":%.4f,"
         "\"all_connected_s\":%.4f,\"handshakes_per_s\":%.1f,",
         p->nconns, p->connected, p->streams_ok, p->streams_failed,
         p->conn_failures, p->mismatch,
         (unsigned long long)p->verified_bytes, span,
         span > 0 ? (double)p->verified_bytes * 8 / span / 1e6 : 0.,
         p->t_first ? p->t_first - p->t0 : -1.,
         p->t_all ? p->t_all - p->t0 : -1.,
         p->t_all > p->t0 ? p->nconns / (p->t_all - p->t0) : 0.);
  ep_stats_json(p->ep);
  printf("}\n");
  fflush(stdout);
}

static void stop(qp *p) {
  if (p->stopping) return;
  p->stopping = 1;
  ev_break(p->loop, EVBREAK_ALL);
}

static void check_done(qp *p) {
  if (!p->t_done && all_finished(p)) {
    p->t_done = mono();
    stop(p);
  }
}

static void stream_finish(qp_stream *s, int ok) {
  if (s->done) return;
  s->done = 1;
  s->failed = !ok;
  s->pc->finished++;
  if (ok) s->pc->p->streams_ok++;
  else s->pc->p->streams_failed++;
  check_done(s->pc->p);
}

static void push(quic_conn *c, qp_stream *s) {
  qp *p = s->pc->p;
  if (p->kind == STREAM_SOURCE) return;
  while (s->sent < p->bytes) {
    uint64_t left = p->bytes - s->sent;
    size_t n = left < QP_CHUNK ? (size_t)left : QP_CHUNK;
    ssize_t w = quic_stream_write(c, s->sid, p->pat + s->sent % QSVC_SOURCE_MOD,
                                  n, s->sent + n == p->bytes);
    if (w <= 0) return;
    s->sent += (uint64_t)w;
  }
  if (p->bytes == 0) quic_stream_write(c, s->sid, NULL, 0, 1);
}

static void call_answer(quic_conn *c, int64_t sid, int accepted,
                        uint32_t code, const char *reason, void *ud) {
  qp_stream *s = ud;
  s->answered = 1;
  if (!accepted) {
    fprintf(stderr, "quicperf: stream refused: %u %s\n", code, reason);
    stream_finish(s, 0);
  }
}

static void call_data(quic_conn *c, int64_t sid, const uint8_t *data,
                      size_t len, int fin, void *ud) {
  qp_stream *s = ud;
  qp *p = s->pc->p;
  if (p->kind != STREAM_DISCARD) {
    /* SOURCE and ECHO both carry o % 251 at offset o. */
    size_t i = 0;
    while (i < len) {
      size_t k = len - i < QP_CHUNK ? len - i : QP_CHUNK;
      if (memcmp(data + i, p->pat + (s->rcvd + i) % QSVC_SOURCE_MOD, k) != 0)
        p->mismatch++;
      i += k;
    }
  }
  s->rcvd += len;
  if (p->kind != STREAM_DISCARD) p->verified_bytes += len;
  if (fin) {
    /* SOURCE waits for our FIN to close its stream (and free the slot). */
    if (p->kind == STREAM_SOURCE) quic_stream_write(c, sid, NULL, 0, 1);
    int ok = p->kind == STREAM_DISCARD ? s->sent == p->bytes
                                       : s->rcvd == p->bytes;
    if (p->kind == STREAM_DISCARD && ok) p->verified_bytes += s->sent;
    stream_finish(s, ok && !p->mismatch);
  }
}

static void call_writable(quic_conn *c, int64_t sid, void *ud) {
  push(c, ud);
}

static void call_close(quic_conn *c, int64_t sid, uint64_t code, void *ud) {
  qp_stream *s = ud;
  if (!s->done) stream_finish(s, 0);
}

static const qsvc_call_cb call_cb = {call_answer, call_data, call_writable,
                                     call_close};

static void open_streams(qp_conn *pc) {
  qp *p = pc->p;
  while (pc->opened < p->nstreams) {
    qp_stream *s = &pc->streams[pc->opened];
    memset(s, 0, sizeof(*s));
    s->pc = pc;
    char nb[32];
    snprintf(nb, sizeof(nb), "%llu", (unsigned long long)p->bytes);
    const char *keys[] = {"bytes"}, *vals[] = {nb};
    int rv = qsvc_open(p->q, pc->c, p->kind, "perf", p->kind == STREAM_SOURCE,
                       keys, vals, &call_cb, s, &s->sid);
    if (rv == -EAGAIN) return; /* peer's stream limit: more on a close */
    if (rv != 0) {
      fprintf(stderr, "quicperf: qsvc_open: %s\n", strerror(-rv));
      s->done = 1;
      pc->finished++;
      p->streams_failed++;
      pc->opened++;
      continue;
    }
    pc->opened++;
    push(pc->c, s);
  }
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  conn_start(w->data);
}

static void conn_start(qp_conn *pc) {
  qp *p = pc->p;
  pc->c = quic_connect(p->ep, (struct sockaddr *)&p->peer, p->peerlen);
  if (pc->c) quic_conn_set_user_data(pc->c, pc);
}

/* schedule_retry waits as the agent's link_fsm_failed does: the delay bound
 * starts at 100 ms, doubles per failure up to reconnect_max, and is reset
 * by a link that stayed up 1 s; the delay is a uniform draw below it. */
static void schedule_retry(qp_conn *pc) {
  qp *p = pc->p;
  if (pc->up_since && mono() - pc->up_since >= 1.0) pc->attempts = 0;
  pc->up_since = 0;
  double bound = 0.1;
  for (unsigned i = 0; i < pc->attempts && bound < p->reconnect_max; i++)
    bound *= 2;
  if (bound > p->reconnect_max) bound = p->reconnect_max;
  if (pc->attempts < 64) pc->attempts++;
  double d = bound * ((double)rand() / RAND_MAX);
  ev_timer_set(&pc->retry, d, 0.);
  ev_timer_start(pc->p->loop, &pc->retry);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* times_json prints |n| sorted wall times as first, p50, p90, last. */
static void times_json(const char *name, double *v, int n) {
  qsort(v, (size_t)n, sizeof(*v), cmp_double);
  if (n == 0) {
    printf(",\"%s\":null", name);
    return;
  }
  printf(",\"%s\":[%.4f,%.4f,%.4f,%.4f]", name, v[0], v[n / 2],
         v[(n * 9) / 10 < n ? (n * 9) / 10 : n - 1], v[n - 1]);
}

/* all_connected_event reports that every connection is up, with when the
 * ones that had dropped since the last report were lost and came back. */
static void all_connected_event(qp *p, double t) {
  printf("{\"event\":\"all_connected\",\"t\":%.4f,\"wall\":%.4f", t - p->t0,
         wall());
  double *lost = malloc(sizeof(double) * (size_t)p->nconns);
  double *back = malloc(sizeof(double) * (size_t)p->nconns);
  double oldest = 0;
  int n = 0;
  for (int i = 0; i < p->nconns; i++) {
    qp_conn *pc = &p->conns[i];
    if (!oldest || pc->up_wall < oldest) oldest = pc->up_wall;
    if (!pc->lost_at || !lost || !back) continue;
    lost[n] = pc->lost_at;
    back[n] = pc->back_at;
    n++;
  }
  printf(",\"oldest_up\":%.4f", oldest);
  if (lost && back) {
    printf(",\"relinked\":%d,\"by_reset\":%d,\"by_idle\":%d,\"by_other\":%d,"
           "\"failed_attempts\":%u",
           n, p->lost_reset, p->lost_idle, p->lost_other, p->retries);
    times_json("lost", lost, n);
    times_json("back", back, n);
  }
  printf("}\n");
  fflush(stdout);
  free(lost);
  free(back);
}

static void cli_connected(quic_conn *c, void *ud) {
  qp_conn *pc = quic_conn_get_user_data(c);
  qp *p = pc->p;
  pc->connected = 1;
  p->connected++;
  double t = mono();
  pc->up_since = t;
  pc->up_wall = wall();
  if (pc->lost_at) pc->back_at = wall();
  if (!p->t_first) p->t_first = t;
  if (p->connected == p->nconns) {
    if (!p->t_all) p->t_all = t;
    if (p->hold) all_connected_event(p, t);
  }
  open_streams(pc);
  check_done(p);
}

static void cli_close(quic_conn *c, const quic_close_info *info, void *ud) {
  qp_conn *pc = quic_conn_get_user_data(c);
  qp *p = pc->p;
  qsvc_on_conn_close(p->q, c);
  conn_note(pc, 1);
  if (pc->connected) {
    if (p->connected == p->nconns && p->hold) {
      printf("{\"event\":\"lost\",\"t\":%.4f,\"wall\":%.4f,\"reset\":%d}\n",
             mono() - p->t0, wall(), info->stateless_reset);
      fflush(stdout);
    }
    p->connected--;
    pc->lost_at = wall();
    if (info->stateless_reset) p->lost_reset++;
    else if (info->idle) p->lost_idle++;
    else p->lost_other++;
  } else {
    p->retries++;
  }
  pc->c = NULL;
  int was = pc->connected;
  pc->connected = 0;
  int unfinished = pc->finished < p->nstreams || !was;
  if (p->stopping) return;
  if (p->hold || (p->reconnect && unfinished)) {
    p->conn_failures += unfinished;
    /* Every stream runs again on the new connection: forget this round's
     * results so that nothing counts twice. */
    for (int i = 0; i < pc->opened; i++) {
      qp_stream *s = &pc->streams[i];
      if (s->done && s->failed) p->streams_failed--;
      else if (s->done) p->streams_ok--;
      if (p->kind != STREAM_DISCARD) p->verified_bytes -= s->rcvd;
      else if (s->done && !s->failed) p->verified_bytes -= s->sent;
    }
    pc->opened = pc->finished = 0;
    schedule_retry(pc);
  } else if (unfinished) {
    p->conn_failures++;
    for (int i = pc->opened; i < p->nstreams; i++) p->streams_failed++;
    pc->gave_up = 1;
    check_done(p);
  }
}

static void cli_stream_close(quic_conn *c, int64_t sid, uint64_t code,
                             void *ud) {
  qp_conn *pc = quic_conn_get_user_data(c);
  qsvc_on_stream_close(pc->p->q, c, sid, code);
  if (pc->c && pc->connected) open_streams(pc);
}

static void cli_data(quic_conn *c, int64_t sid, const uint8_t *d, size_t len,
                     int fin, void *ud) {
  qp_conn *pc = quic_conn_get_user_data(c);
  if (!qsvc_on_data(pc->p->q, c, sid, d, len, fin))
    quic_stream_reset(c, sid, QSVC_ERR_BAD_HEADER);
}

static void cli_streams_available(quic_conn *c, void *ud) {
  qp_conn *pc = quic_conn_get_user_data(c);
  if (pc->c && pc->connected) open_streams(pc);
}

static void cli_writable(quic_conn *c, int64_t sid, void *ud) {
  qp_conn *pc = quic_conn_get_user_data(c);
  qsvc_on_writable(pc->p->q, c, sid);
}

/* A server never opens streams toward quicperf. */
static void cli_stream_open(quic_conn *c, int64_t sid, void *ud) {
  quic_stream_reset(c, sid, QSVC_ERR_NOT_IMPLEMENTED);
}

/* ---- server ---- */

/* srv_accept reports each connection's congestion controller. */
static void srv_accept(quic_conn *c, void *ud) {
  qp *p = ud;
  if (!p->accept_events) return; /* a reader must drain them */
  quic_conn_stats st;
  quic_conn_get_stats(c, &st);
  printf("{\"event\":\"accepted\",\"cc\":\"%s\"}\n", st.cc ? st.cc : "");
  fflush(stdout);
}

static void srv_stream_open(quic_conn *c, int64_t sid, void *ud) {
  qp *p = ud;
  qsvc_accept_stream(p->q, c, sid);
}

static void srv_data(quic_conn *c, int64_t sid, const uint8_t *d, size_t len,
                     int fin, void *ud) {
  qp *p = ud;
  qsvc_on_data(p->q, c, sid, d, len, fin);
}

static void srv_writable(quic_conn *c, int64_t sid, void *ud) {
  qp *p = ud;
  qsvc_on_writable(p->q, c, sid);
}

static void srv_stream_close(quic_conn *c, int64_t sid, uint64_t code,
                             void *ud) {
  qp *p = ud;
  qsvc_on_stream_close(p->q, c, sid, code);
}

static void srv_close(quic_conn *c, const quic_close_info *info, void *ud) {
  qp *p = ud;
  qsvc_on_conn_close(p->q, c);
}

/* ---- main ---- */

static void sig_cb(struct ev_loop *loop, ev_signal *w, int revents) {
  qp *p = w->data;
  p->interrupted = 1;
  stop(p);
}

static void deadline_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  qp *p = w->data;
  if (!p->hold) fprintf(stderr, "quicperf: timeout\n");
  stop(p);
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  qp *p = w->data;
  uint64_t rcvd = 0;
  for (int i = 0; i < p->nconns; i++)
    for (int j = 0; j < p->conns[i].opened; j++)
      rcvd += p->conns[i].streams[j].rcvd;
  printf("{\"event\":\"progress\",\"t\":%.4f,\"wall\":%.4f,\"rcvd\":%llu,"
         "\"connected\":%d}\n",
         mono() - p->t0, wall(), (unsigned long long)rcvd, p->connected);
  fflush(stdout);
}

static void usage(void) {
  fprintf(stderr,
          "usage: cascade-quicperf server --listen H:P (--pki DIR | --cert F "
          "--key F --ca F)\n"
          "       cascade-quicperf client --connect H:P (--pki DIR | ...) "
          "[--service source|discard|echo]\n"
          "         [--bytes N] [--streams K] [--conns N] [--reconnect] "
          "[--hold] [--timeout S] [--progress S]\n"
          "         [--reconnect-max S]\n"
          "common: [--id N] [--cc auto|cubic|reno|bbr|bbr2] [--bind H:P] "
          "[--max-streams N] [--window BYTES] [--keepalive S]\n"
          "        [--retry-threshold N] [--log-level L] [--max-udp-payload N]\n"
          "        [--accept-events (server: one line per connection, its cc)]\n"
          "        [--sndbuf BYTES] [--max-sndbuf BYTES (send buffer growth limit;\n"
          "        0: fixed)] [--max-window BYTES (stream window auto-tuning\n"
          "        limit, the connection's 4 times it; 0: no auto-tuning)]\n");
}

int main(int argc, char **argv) {
  static qp P; /* large (pattern, timers): not on the stack */
  qp *p = &P;
  if (argc < 2 || (strcmp(argv[1], "server") && strcmp(argv[1], "client"))) {
    usage();
    return 2;
  }
  p->server = strcmp(argv[1], "server") == 0;
  const char *listen = NULL, *connect_to = NULL, *pki = NULL, *certf = NULL,
             *keyf = NULL, *caf = NULL, *bind_to = NULL, *cc = NULL;
  int64_t id = p->server ? 1 : 2;
  double keepalive = 0;
  uint64_t window = 0, max_streams = 0;
  long retry_threshold = -1;
  size_t max_udp_payload = 0, sndbuf = 0;
  long long max_window = -1, max_sndbuf = -1;
  p->kind = STREAM_SOURCE;
  p->bytes = 1 << 20;
  p->nstreams = 1;
  p->nconns = 1;
  p->timeout = 60;
  p->reconnect_max = 5.;
  static const struct option opts[] = {
      {"listen", 1, 0, 'l'},   {"connect", 1, 0, 'c'},
      {"pki", 1, 0, 'P'},      {"cert", 1, 0, 'C'},
      {"key", 1, 0, 'K'},      {"ca", 1, 0, 'A'},
      {"id", 1, 0, 'i'},       {"service", 1, 0, 's'},
      {"bytes", 1, 0, 'b'},    {"streams", 1, 0, 'S'},
      {"conns", 1, 0, 'n'},    {"reconnect", 0, 0, 'r'},
      {"hold", 0, 0, 'H'},     {"timeout", 1, 0, 't'},
      {"progress", 1, 0, 'p'}, {"cc", 1, 0, 'g'},
      {"bind", 1, 0, 'B'},     {"window", 1, 0, 'w'},
      {"keepalive", 1, 0, 'k'}, {"max-streams", 1, 0, 'm'},
      {"retry-threshold", 1, 0, 'R'}, {"log-level", 1, 0, 'L'},
      {"reconnect-max", 1, 0, 'X'}, {"max-udp-payload", 1, 0, 'U'},
      {"sndbuf", 1, 0, 'Z'},   {"max-window", 1, 0, 'W'},
      {"max-sndbuf", 1, 0, 'Y'}, {"accept-events", 0, 0, 'E'},
      {0, 0, 0, 0}};
  int o;
  optind = 2;
  while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (o) {
    case 'l': listen = optarg; break;
    case 'c': connect_to = optarg; break;
    case 'P': pki = optarg; break;
    case 'C': certf = optarg; break;
    case 'K': keyf = optarg; break;
    case 'A': caf = optarg; break;
    case 'i': id = atoll(optarg); break;
    case 's':
      if (!strcmp(optarg, "source")) p->kind = STREAM_SOURCE;
      else if (!strcmp(optarg, "discard")) p->kind = STREAM_DISCARD;
      else if (!strcmp(optarg, "echo")) p->kind = STREAM_ECHO;
      else { usage(); return 2; }
      break;
    case 'b': p->bytes = strtoull(optarg, NULL, 10); break;
    case 'S': p->nstreams = atoi(optarg); break;
    case 'n': p->nconns = atoi(optarg); break;
    case 'r': p->reconnect = 1; break;
    case 'H': p->hold = 1; p->reconnect = 1; break;
    case 't': p->timeout = atof(optarg); break;
    case 'p': p->progress = atof(optarg); break;
    case 'g': cc = optarg; break;
    case 'B': bind_to = optarg; break;
    case 'w': window = strtoull(optarg, NULL, 10); break;
    case 'k': keepalive = atof(optarg); break;
    case 'm': max_streams = strtoull(optarg, NULL, 10); break;
    case 'R': retry_threshold = atol(optarg); break;
    case 'X': p->reconnect_max = atof(optarg); break;
    case 'E': p->accept_events = 1; break;
    case 'U': max_udp_payload = strtoull(optarg, NULL, 10); break;
    case 'Z': sndbuf = strtoull(optarg, NULL, 10); break;
    case 'W': max_window = atoll(optarg); break;
    case 'Y': max_sndbuf = atoll(optarg); break;
    case 'L': {
      log_level_t lvl;
      if (log_level_parse(optarg, &lvl) == 0) log_set_level(lvl);
      break;
    }
    default: usage(); return 2;
    }
  }
  if (p->server ? !listen : !connect_to) { usage(); return 2; }
  if (p->nconns < 1 || p->nstreams < 0) { usage(); return 2; }
  if (!p->server && parse_hostport(connect_to, &p->peer, &p->peerlen) != 0) {
    fprintf(stderr, "quicperf: bad address %s\n", connect_to);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  gnutls_global_init();
  srand((unsigned)getpid() ^ (unsigned)time(NULL));
  for (size_t i = 0; i < QP_PATLEN; i++) p->pat[i] = (uint8_t)(i % QSVC_SOURCE_MOD);

  char *cert = NULL, *key = NULL, *ca = NULL, err[256];
  if (pki) {
    if (load_pki(pki, id, &cert, &key, &ca) != 0) return 1;
  } else if (certf && keyf && caf) {
    cert = x509_read_file(certf, X509_PEM_MAX, err, sizeof(err));
    key = x509_read_file(keyf, X509_PEM_MAX, err, sizeof(err));
    ca = x509_read_file(caf, X509_PEM_MAX, err, sizeof(err));
    if (!cert || !key || !ca) {
      fprintf(stderr, "quicperf: credentials: %s\n", err);
      return 1;
    }
  } else {
    usage();
    return 2;
  }

  quic_config cfg;
  quic_config_default(&cfg);
  cfg.cert_pem = cert;
  cfg.key_pem = key;
  cfg.ca_pem = ca;
  cfg.accept = p->server;
  cfg.keepalive = keepalive;
  if (cc) cfg.cc = cc;
  cfg.max_udp_payload = max_udp_payload;
  if (window) {
    cfg.max_stream_data = window;
    cfg.max_data = window * 4;
    cfg.stream_sndbuf = (size_t)window;
  }
  if (sndbuf) cfg.stream_sndbuf = sndbuf;
  if (max_sndbuf >= 0) cfg.max_stream_sndbuf = (size_t)max_sndbuf;
  if (max_window >= 0) {
    cfg.max_stream_window = (uint64_t)max_window;
    cfg.max_window = (uint64_t)max_window * 4;
  }
  if (max_streams) cfg.max_streams_bidi = max_streams;
  if (retry_threshold >= 0) cfg.retry_threshold = (size_t)retry_threshold;

  struct sockaddr_storage la;
  socklen_t lal;
  const char *laddr = p->server ? listen : bind_to;
  if (laddr) {
    if (parse_hostport(laddr, &la, &lal) != 0) {
      fprintf(stderr, "quicperf: bad address %s\n", laddr);
      return 2;
    }
  } else { /* client: any port, the peer's family */
    memset(&la, 0, sizeof(la));
    la.ss_family = p->peer.ss_family;
    lal = p->peer.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                        : sizeof(struct sockaddr_in);
  }
  quic_callbacks cb;
  if (p->server) {
    cb = (quic_callbacks){.on_accept = srv_accept,
                          .on_stream_open = srv_stream_open,
                          .on_data = srv_data,
                          .on_writable = srv_writable,
                          .on_stream_close = srv_stream_close,
                          .on_close = srv_close};
  } else {
    cb = (quic_callbacks){.on_connected = cli_connected,
                          .on_stream_open = cli_stream_open,
                          .on_data = cli_data,
                          .on_writable = cli_writable,
                          .on_stream_close = cli_stream_close,
                          .on_close = cli_close,
                          .on_streams_available = cli_streams_available};
  }
  p->loop = ev_default_loop(0);
  p->q = qsvc_new(p->loop);
  p->ep = quic_endpoint_new(p->loop, &cfg, (struct sockaddr *)&la, lal, &cb, p);
  if (!p->q || !p->ep) {
    fprintf(stderr, "quicperf: cannot create the endpoint\n");
    return 1;
  }
  ev_signal_init(&p->sigint, sig_cb, SIGINT);
  ev_signal_init(&p->sigterm, sig_cb, SIGTERM);
  p->sigint.data = p->sigterm.data = p;
  ev_signal_start(p->loop, &p->sigint);
  ev_signal_start(p->loop, &p->sigterm);
  p->t0 = mono();

  if (p->server) {
    struct sockaddr_storage ss;
    socklen_t sl;
    char host[64] = "?";
    quic_endpoint_local_addr(p->ep, &ss, &sl);
    int port = 0;
    if (ss.ss_family == AF_INET6) {
      inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host,
                sizeof(host));
      port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
      printf("listen [%s]:%d\nready\n", host, port);
    } else {
      inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host,
                sizeof(host));
      port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
      printf("listen %s:%d\nready\n", host, port);
    }
    fflush(stdout);
    ev_run(p->loop, 0);
    quic_endpoint_stats es;
    quic_endpoint_get_stats(p->ep, &es);
    const qsvc_stats *qs = qsvc_get_stats(p->q);
    printf("{\"event\":\"server\",\"accepted\":%llu,\"retries_sent\":%llu,"
           "\"resets_sent\":%llu,\"streams\":%llu,\"gso\":%d,\"gro\":%d,",
           (unsigned long long)es.accepted,
           (unsigned long long)es.retries_sent,
           (unsigned long long)es.resets_sent,
           (unsigned long long)qs->accepted, es.gso, es.gro);
    ep_stats_json(p->ep);
    printf("}\n");
    fflush(stdout);
  } else {
    p->conns = calloc((size_t)p->nconns, sizeof(*p->conns));
    if (!p->conns) return 1;
    for (int i = 0; i < p->nconns; i++) {
      qp_conn *pc = &p->conns[i];
      pc->p = p;
      pc->idx = i;
      pc->streams = calloc((size_t)(p->nstreams ? p->nstreams : 1),
                           sizeof(qp_stream));
      if (!pc->streams) return 1;
      ev_timer_init(&pc->retry, retry_cb, 0., 0.);
      pc->retry.data = pc;
      conn_start(pc);
      if (!pc->c) schedule_retry(pc);
    }
    ev_timer_init(&p->deadline, deadline_cb, p->timeout, 0.);
    p->deadline.data = p;
    ev_timer_start(p->loop, &p->deadline);
    if (p->progress > 0) {
      ev_timer_init(&p->tick, tick_cb, p->progress, p->progress);
      p->tick.data = p;
      ev_timer_start(p->loop, &p->tick);
    }
    ev_run(p->loop, 0);
    summary(p);
  }
  /* 0: all verified (or a server / --hold run that ended on a signal);
   * 3: a client interrupted by a signal before the end; 1: failure. */
  int rc = 0;
  if (!p->server && !p->hold) {
    if (p->mismatch || p->streams_failed) rc = 1;
    else if (!p->t_done) rc = p->interrupted ? 3 : 1;
  }
  quic_endpoint_free(p->ep); /* no callbacks: conns are dropped */
  qsvc_free(p->q);
  if (p->conns) {
    for (int i = 0; i < p->nconns; i++) {
      ev_timer_stop(p->loop, &p->conns[i].retry);
      free(p->conns[i].streams);
    }
    free(p->conns);
  }
  free(cert);
  free(key);
  free(ca);
  gnutls_global_deinit();
  return rc;
}
