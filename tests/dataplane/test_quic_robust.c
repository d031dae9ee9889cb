/* Unit tests for dataplane/quic.c beyond the basics of test_quic.c: 1,000
 * concurrent streams on one link, each echoed and checked; stateless reset,
 * version negotiation and Retry; dual stack; STOP_SENDING; the stream limit;
 * and bad input (random and truncated datagrams, wrong ALPN, a certificate
 * from another CA, an expired certificate), after each of which the server
 * must still serve a good client. One libev loop, loopback, deadlines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <arpa/inet.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "qsvc.h"
#include "quic.h"
#include "x509.h"
#include "testpki.h"

#define NSTREAMS 1000
#define STREAM_BYTES 8192

typedef struct pki {
  char dir_a[64], dir_b[64];
  char *ca_a;
  char *srv_cert, *srv_key, *cli_cert, *cli_key;
  char *rogue_cert, *rogue_key;    /* from CA B */
  char *old_cert, *old_key;        /* from CA A, expired */
} pki;

static pki P;

typedef struct call {
  int64_t sid;
  size_t sent, rcvd;
  int done, ok;
} call;

typedef struct ctx {
  struct ev_loop *loop;
  qsvc *q;                 /* both roles share it: streams are per conn */
  quic_conn *cc;           /* the client connection under test */
  int connected, cli_closed, srv_accepted;
  quic_close_info cli_info;
  int nwant, nopen, ndone, nok, mismatch;
  call *calls;
  uint8_t pat[STREAM_BYTES + 256];
  /* raw quic streams (STOP_SENDING, limit) */
  int raw;
  int64_t raw_sid;
  uint64_t raw_close_code;
  int raw_closed, streams_available, srv_stop_sent;
  int raw_nofin;           /* the server stops the stream but keeps its
                              own direction open */
  int raw_stopped, raw_writable;
} ctx;

static int setup_pki(void **state) {
  char err[256], path[128];
  gnutls_global_init();
  strcpy(P.dir_a, "/tmp/test_quicr_a.XXXXXX");
  strcpy(P.dir_b, "/tmp/test_quicr_b.XXXXXX");
  if (!mkdtemp(P.dir_a) || !mkdtemp(P.dir_b)) return -1;
  if (x509_ca_ensure(P.dir_a, err, sizeof(err)) != 0 ||
      x509_ca_ensure(P.dir_b, err, sizeof(err)) != 0)
    return -1;
  snprintf(path, sizeof(path), "%s/ca.crt", P.dir_a);
  P.ca_a = x509_read_file(path, X509_PEM_MAX, err, sizeof(err));
  P.srv_cert = testpki_node(P.dir_a, 1, 3600, &P.srv_key);
  P.cli_cert = testpki_node(P.dir_a, 2, 3600, &P.cli_key);
  P.rogue_cert = testpki_node(P.dir_b, 3, 3600, &P.rogue_key);
  P.old_cert = testpki_node(P.dir_a, 4, 1, &P.old_key); /* ends in 1 s */
  return P.ca_a ? 0 : -1;
}

static int teardown_pki(void **state) {
  free(P.ca_a);
  free(P.srv_cert);
  free(P.srv_key);
  free(P.cli_cert);
  free(P.cli_key);
  free(P.rogue_cert);
  free(P.rogue_key);
  free(P.old_cert);
  free(P.old_key);
  testpki_rm_dir(P.dir_a);
  testpki_rm_dir(P.dir_b);
  gnutls_global_deinit();
  return 0;
}

/* ---- qsvc ECHO calls from the client ---- */

static void push(ctx *x, call *k) {
  while (k->sent < STREAM_BYTES) {
    ssize_t n = quic_stream_write(x->cc, k->sid, x->pat + k->sent % 251,
                                  STREAM_BYTES - k->sent, 1);
    assert_true(n >= 0);
    if (n == 0) return;
    k->sent += (size_t)n;
  }
}

static void call_answer(quic_conn *c, int64_t sid, int accepted,
                        uint32_t code, const char *reason, void *ud) {
  assert_true(accepted);
}

static void call_data(quic_conn *c, int64_t sid, const uint8_t *d, size_t len,
                      int fin, void *ud) {
  ctx *x = quic_conn_get_user_data(c);
  call *k = ud;
  if (k->rcvd + len > STREAM_BYTES ||
      memcmp(d, x->pat + k->rcvd % 251, len) != 0)
    x->mismatch++;
  k->rcvd += len;
  if (fin && !k->done) {
    k->done = 1;
    k->ok = k->rcvd == STREAM_BYTES;
    x->ndone++;
    x->nok += k->ok;
  }
}

static void call_writable(quic_conn *c, int64_t sid, void *ud) {
  push(quic_conn_get_user_data(c), ud);
}

static void call_close(quic_conn *c, int64_t sid, uint64_t code, void *ud) {
  ctx *x = quic_conn_get_user_data(c);
  call *k = ud;
  if (!k->done) {
    k->done = 1;
    x->ndone++;
  }
}

static const qsvc_call_cb call_cb = {call_answer, call_data, call_writable,
                                     call_close};

static void open_calls(ctx *x) {
  while (x->nopen < x->nwant) {
    call *k = &x->calls[x->nopen];
    int rv = qsvc_open(x->q, x->cc, STREAM_ECHO, "t", 0, NULL, NULL, &call_cb,
                       k, &k->sid);
    if (rv == -EAGAIN) return;
    assert_int_equal(rv, 0);
    x->nopen++;
    push(x, k);
  }
}

/* ---- endpoint callbacks (both roles) ---- */

static void on_accept(quic_conn *c, void *ud) {
  ctx *x = ud;
  x->srv_accepted++;
}

static void on_connected(quic_conn *c, void *ud) {
  ctx *x = ud;
  quic_conn_set_user_data(c, x);
  x->connected = 1;
  if (!x->raw) open_calls(x);
}

static void on_stream_open(quic_conn *c, int64_t sid, void *ud) {
  ctx *x = ud;
  if (x->raw) return; /* raw streams: the server only reads */
  assert_int_equal(qsvc_accept_stream(x->q, c, sid), 0);
}

static void on_data(quic_conn *c, int64_t sid, const uint8_t *d, size_t len,
                    int fin, void *ud) {
  ctx *x = ud;
  if (x->raw) {
    if (quic_conn_is_server(c) && !x->srv_stop_sent) {
      x->srv_stop_sent = 1;
      assert_int_equal(quic_stream_stop_sending(c, sid, 0x77), 0);
      if (!x->raw_nofin)
        assert_int_equal(quic_stream_write(c, sid, NULL, 0, 1), 0); /* FIN */
    }
    return;
  }
  assert_true(qsvc_on_data(x->q, c, sid, d, len, fin));
}

static void on_writable(quic_conn *c, int64_t sid, void *ud) {
  ctx *x = ud;
  if (x->raw && !quic_conn_is_server(c) && sid == x->raw_sid) x->raw_writable++;
  if (!x->raw) qsvc_on_writable(x->q, c, sid);
}

static void on_stream_stop_sending(quic_conn *c, int64_t sid, void *ud) {
  ctx *x = ud;
  if (x->raw && !quic_conn_is_server(c) && sid == x->raw_sid) x->raw_stopped++;
}

static void on_stream_close(quic_conn *c, int64_t sid, uint64_t code,
                            void *ud) {
  ctx *x = ud;
  if (x->raw) {
    if (!quic_conn_is_server(c) && sid == x->raw_sid) {
      x->raw_closed = 1;
      x->raw_close_code = code;
    }
    return;
  }
  qsvc_on_stream_close(x->q, c, sid, code);
  if (!quic_conn_is_server(c) && x->cc == c) open_calls(x);
}

static void on_close(quic_conn *c, const quic_close_info *info, void *ud) {
  ctx *x = ud;
  qsvc_on_conn_close(x->q, c);
  if (!quic_conn_is_server(c) && c == x->cc) {
    x->cli_closed = 1;
    x->cli_info = *info;
    x->cc = NULL;
  }
}

static void on_streams_available(quic_conn *c, void *ud) {
  ctx *x = ud;
  x->streams_available++;
  if (!x->raw && c == x->cc) open_calls(x);
}

static const quic_callbacks cbs = {
    .on_accept = on_accept,
    .on_connected = on_connected,
    .on_stream_open = on_stream_open,
    .on_data = on_data,
    .on_writable = on_writable,
    .on_stream_close = on_stream_close,
    .on_close = on_close,
    .on_streams_available = on_streams_available,
    .on_stream_stop_sending = on_stream_stop_sending,
};

static void wake_cb(struct ev_loop *l, ev_timer *w, int revents) {}

/* run_until runs the loop until |done| holds or |secs| pass. */
static int run_until(ctx *x, int (*done)(const ctx *), double secs) {
  ev_timer t;
  ev_timer_init(&t, wake_cb, 0.01, 0.01);
  ev_timer_start(x->loop, &t);
  double end = ev_time() + secs;
  while (!done(x)) {
    ev_now_update(x->loop);
    if (ev_now(x->loop) >= end) break;
    ev_run(x->loop, EVRUN_ONCE);
  }
  ev_timer_stop(x->loop, &t);
  return done(x);
}

static int all_done(const ctx *x) { return x->ndone == x->nwant; }
static int cli_closed(const ctx *x) { return x->cli_closed; }
static int connected(const ctx *x) { return x->connected; }

static void cfg_base(quic_config *cfg, const char *cert, const char *key,
                     int accept) {
  quic_config_default(cfg);
  cfg->cert_pem = cert;
  cfg->key_pem = key;
  cfg->ca_pem = P.ca_a;
  cfg->accept = accept;
  cfg->idle_timeout = 30.;
  cfg->handshake_timeout = 3.;
}

static quic_endpoint *ep_at(ctx *x, const quic_config *cfg, int family,
                            const char *addr, uint16_t port) {
  struct sockaddr_storage ss = {0};
  socklen_t sl;
  if (family == AF_INET6) {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(port);
    inet_pton(AF_INET6, addr, &s6->sin6_addr);
    sl = sizeof(*s6);
  } else {
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    s4->sin_family = AF_INET;
    s4->sin_port = htons(port);
    inet_pton(AF_INET, addr, &s4->sin_addr);
    sl = sizeof(*s4);
  }
  return quic_endpoint_new(x->loop, cfg, (struct sockaddr *)&ss, sl, &cbs, x);
}

static quic_endpoint *server(ctx *x, size_t max_streams, size_t retry) {
  quic_config cfg;
  cfg_base(&cfg, P.srv_cert, P.srv_key, 1);
  cfg.max_streams_bidi = max_streams;
  cfg.stream_sndbuf = 32 * 1024;
  cfg.retry_threshold = retry;
  quic_endpoint *ep = ep_at(x, &cfg, AF_INET, "127.0.0.1", 0);
  assert_non_null(ep);
  return ep;
}

static uint16_t port_of(quic_endpoint *ep) {
  struct sockaddr_storage ss;
  socklen_t sl;
  assert_int_equal(quic_endpoint_local_addr(ep, &ss, &sl), 0);
  return ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                  : ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void ctx_init(ctx *x, int nwant) {
  memset(x, 0, sizeof(*x));
  x->loop = ev_loop_new(EVFLAG_AUTO);
  x->q = qsvc_new(x->loop);
  assert_non_null(x->q);
  x->nwant = nwant;
  x->calls = calloc((size_t)(nwant ? nwant : 1), sizeof(call));
  for (size_t i = 0; i < sizeof(x->pat); i++) x->pat[i] = (uint8_t)(i % 251);
}

static void ctx_reset_client(ctx *x, int nwant) {
  x->cc = NULL;
  x->connected = x->cli_closed = 0;
  memset(&x->cli_info, 0, sizeof(x->cli_info));
  x->nwant = nwant;
  x->nopen = x->ndone = x->nok = x->mismatch = 0;
  memset(x->calls, 0, sizeof(call) * (size_t)(nwant ? nwant : 1));
}

static void ctx_free(ctx *x) {
  qsvc_free(x->q);
  ev_loop_destroy(x->loop);
  free(x->calls);
}

/* client_echo: a client endpoint (|cert|/|key|, |alpn|) on |family| dials
 * |peer_addr|:|port| and runs |n| ECHO streams. Returns 1 when all were
 * echoed intact; with |expect_fail|, returns 1 when the handshake failed. */
static int client_run(ctx *x, const char *cert, const char *key,
                      const char *alpn, int family, const char *bind_addr,
                      int peer_family, const char *peer_addr, uint16_t port,
                      int n, int expect_fail) {
  quic_config cfg;
  cfg_base(&cfg, cert, key, 0);
  cfg.max_streams_bidi = 10;
  cfg.stream_sndbuf = 32 * 1024;
  if (alpn) cfg.alpn = alpn;
  quic_endpoint *cli = ep_at(x, &cfg, family, bind_addr, 0);
  assert_non_null(cli);
  ctx_reset_client(x, n);
  struct sockaddr_storage ss = {0};
  socklen_t sl;
  if (peer_family == AF_INET6) {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(port);
    inet_pton(AF_INET6, peer_addr, &s6->sin6_addr);
    sl = sizeof(*s6);
  } else {
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    s4->sin_family = AF_INET;
    s4->sin_port = htons(port);
    inet_pton(AF_INET, peer_addr, &s4->sin_addr);
    sl = sizeof(*s4);
  }
  x->cc = quic_connect(cli, (struct sockaddr *)&ss, sl);
  assert_non_null(x->cc);
  quic_conn_set_user_data(x->cc, x);
  int ok;
  if (expect_fail) {
    ok = run_until(x, cli_closed, 10.) && !x->connected &&
         !x->cli_info.established;
  } else {
    ok = run_until(x, all_done, 30.) && x->nok == n && !x->mismatch;
  }
  quic_endpoint_free(cli);
  x->cc = NULL;
  return ok;
}

static int good_client(ctx *x, uint16_t port) {
  return client_run(x, P.cli_cert, P.cli_key, NULL, AF_INET, "127.0.0.1",
                    AF_INET, "127.0.0.1", port, 4, 0);
}

/* ---- tests ---- */

static void test_thousand_streams(void **state) {
  ctx x;
  ctx_init(&x, NSTREAMS);
  quic_endpoint *srv = server(&x, NSTREAMS, 64);
  assert_true(client_run(&x, P.cli_cert, P.cli_key, NULL, AF_INET,
                         "127.0.0.1", AF_INET, "127.0.0.1", port_of(srv),
                         NSTREAMS, 0) ||
              (fprintf(stderr, "done %d ok %d mismatch %d\n", x.ndone, x.nok,
                       x.mismatch),
               0));
  /* The server's limit was the client's own (10): it cannot have opened
   * all at once; the server's 1000 let it. */
  assert_int_equal(x.nok, NSTREAMS);
  assert_int_equal(qsvc_get_stats(x.q)->accepted, NSTREAMS);
  quic_endpoint_free(srv);
  ctx_free(&x);
}

static int recv_reply(int fd, uint8_t *buf, size_t len, double secs) {
  struct timeval tv = {(time_t)secs, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return (int)recv(fd, buf, len, 0);
}

static void test_bad_datagrams(void **state) {
  ctx x;
  ctx_init(&x, 4);
  quic_endpoint *srv = server(&x, 100, 64);
  uint16_t port = port_of(srv);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(connect(fd, (struct sockaddr *)&to, sizeof(to)), 0);
  uint8_t buf[1500], reply[1500];
  quic_endpoint_stats st0, st;
  quic_endpoint_get_stats(srv, &st0);

  /* A short-header packet for a CID nobody has: a stateless reset, shorter
   * than the packet, that looks like a short-header packet. */
  gnutls_rnd(GNUTLS_RND_NONCE, buf, 100);
  buf[0] = 0x40 | (buf[0] & 0x3f);
  assert_int_equal(send(fd, buf, 100, 0), 100);
  assert_true(run_until(&x, connected, 0.2) || 1); /* let the loop answer */
  int n = recv_reply(fd, reply, sizeof(reply), 2);
  assert_true(n >= 21 && n < 100);
  assert_int_equal(reply[0] & 0xc0, 0x40);

  /* A long header of an unknown version, Initial-sized: Version
   * Negotiation (version field 0) listing QUIC v1. */
  memset(buf, 0, 1200);
  buf[0] = 0xc0;
  buf[1] = 0x1a; buf[2] = 0x2a; buf[3] = 0x3a; buf[4] = 0x4a;
  buf[5] = 8;  /* dcid len */
  buf[14] = 8; /* scid len */
  assert_int_equal(send(fd, buf, 1200, 0), 1200);
  run_until(&x, connected, 0.2);
  n = recv_reply(fd, reply, sizeof(reply), 2);
  assert_true(n >= 7 + 16 + 4);
  assert_int_equal(reply[0] & 0x80, 0x80);
  assert_memory_equal(reply + 1, "\0\0\0\0", 4);

  /* Random datagrams, truncated Initials, tiny ones: no answer, no state. */
  for (int i = 0; i < 500; i++) {
    size_t len = 1 + (size_t)(i * 7919 % 1400);
    gnutls_rnd(GNUTLS_RND_NONCE, buf, len);
    if (i % 3 == 0) { /* looks like a v1 Initial, cut short */
      buf[0] = 0xc0;
      buf[1] = 0; buf[2] = 0; buf[3] = 0; buf[4] = 1;
      len = 1 + len % 1199;
    }
    send(fd, buf, len, 0);
  }
  run_until(&x, connected, 0.3);
  quic_endpoint_get_stats(srv, &st);
  assert_int_equal(st.conns, 0);
  assert_int_equal(st.handshakes, 0);
  assert_true(st.dropped > st0.dropped);
  assert_true(st.vn_sent >= 1); /* random long headers may ask for more */
  close(fd);

  /* The server still serves. */
  assert_true(good_client(&x, port));
  quic_endpoint_free(srv);
  ctx_free(&x);
}

static void test_refused_peers(void **state) {
  ctx x;
  ctx_init(&x, 4);
  quic_endpoint *srv = server(&x, 100, 64);
  uint16_t port = port_of(srv);

  /* Wrong ALPN: no_application_protocol (TLS alert 120: 0x100 + 120). */
  assert_true(client_run(&x, P.cli_cert, P.cli_key, "cascade/0", AF_INET,
                         "127.0.0.1", AF_INET, "127.0.0.1", port, 1, 1));
  assert_true(x.cli_info.by_peer);
  assert_int_equal(x.cli_info.code, 0x100 + 120);
  assert_true(good_client(&x, port));

  /* A certificate from another CA. */
  assert_true(client_run(&x, P.rogue_cert, P.rogue_key, NULL, AF_INET,
                         "127.0.0.1", AF_INET, "127.0.0.1", port, 1, 1));
  assert_true(x.cli_info.code >= 0x100 && x.cli_info.code <= 0x1ff);
  assert_true(good_client(&x, port));

  /* An expired certificate from the right CA (it lived 1 s). */
  time_t na = 0;
  assert_int_equal(x509_cert_info(P.old_cert, NULL, NULL, &na, NULL, 0), 0);
  while (time(NULL) <= na) run_until(&x, cli_closed, 0.1);
  assert_true(client_run(&x, P.old_cert, P.old_key, NULL, AF_INET,
                         "127.0.0.1", AF_INET, "127.0.0.1", port, 1, 1));
  assert_true(x.cli_info.by_peer);
  assert_true(x.cli_info.code >= 0x100 && x.cli_info.code <= 0x1ff);
  assert_true(good_client(&x, port));
  assert_int_equal(x.srv_accepted, 3); /* only the good ones */
  quic_endpoint_free(srv);
  ctx_free(&x);
}

static void test_retry(void **state) {
  ctx x;
  ctx_init(&x, 4);
  quic_endpoint *srv = server(&x, 100, 0); /* always validate addresses */
  assert_true(good_client(&x, port_of(srv)));
  quic_endpoint_stats st;
  quic_endpoint_get_stats(srv, &st);
  assert_int_equal(st.retries_sent, 1);
  assert_int_equal(st.retry_token_bad, 0);
  assert_int_equal(st.accepted, 1);
  quic_endpoint_free(srv);
  ctx_free(&x);
}

static int reset_seen(const ctx *x) {
  return x->cli_closed;
}

/* A server that restarts (same key, same port) answers the old connection's
 * packets with a stateless reset: the client learns at once, not after the
 * idle timeout (30 s here). */
static void test_stateless_reset_after_restart(void **state) {
  ctx x;
  ctx_init(&x, 0);
  x.raw = 1;
  quic_endpoint *srv = server(&x, 100, 64);
  uint16_t port = port_of(srv);
  quic_config cfg;
  cfg_base(&cfg, P.cli_cert, P.cli_key, 0);
  quic_endpoint *cli = ep_at(&x, &cfg, AF_INET, "127.0.0.1", 0);
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  x.cc = quic_connect(cli, (struct sockaddr *)&to, sizeof(to));
  assert_non_null(x.cc);
  assert_true(run_until(&x, connected, 5.));
  quic_endpoint_free(srv); /* gone without a word */
  quic_config scfg;
  cfg_base(&scfg, P.srv_cert, P.srv_key, 1);
  srv = ep_at(&x, &scfg, AF_INET, "127.0.0.1", port);
  assert_non_null(srv);
  double t0 = ev_time();
  int64_t sid;
  assert_int_equal(quic_stream_open(x.cc, &sid), 0);
  assert_true(quic_stream_write(x.cc, sid, "hello", 5, 0) == 5);
  assert_true(run_until(&x, reset_seen, 5.));
  assert_true(ev_time() - t0 < 2.);
  assert_true(x.cli_info.stateless_reset);
  assert_true(x.cli_info.by_peer);
  quic_endpoint_stats st;
  quic_endpoint_get_stats(srv, &st);
  assert_true(st.resets_sent >= 1);
  quic_endpoint_free(cli);
  quic_endpoint_free(srv);
  ctx_free(&x);
}

static void test_dual_stack(void **state) {
  ctx x;
  ctx_init(&x, 4);
  quic_config cfg;
  cfg_base(&cfg, P.srv_cert, P.srv_key, 1);
  quic_endpoint *srv = ep_at(&x, &cfg, AF_INET6, "::", 0);
  assert_non_null(srv);
  uint16_t port = port_of(srv);
  /* IPv6 over ::1 */
  assert_true(client_run(&x, P.cli_cert, P.cli_key, NULL, AF_INET6, "::1",
                         AF_INET6, "::1", port, 4, 0));
  /* An IPv4 client reaches the [::] server. */
  assert_true(client_run(&x, P.cli_cert, P.cli_key, NULL, AF_INET,
                         "127.0.0.1", AF_INET, "127.0.0.1", port, 4, 0));
  /* A dual-stack client dials an IPv4 address. */
  assert_true(client_run(&x, P.cli_cert, P.cli_key, NULL, AF_INET6, "::",
                         AF_INET, "127.0.0.1", port, 4, 0));
  quic_endpoint_free(srv);
  /* v6only refuses IPv4 peers at quic_connect. */
  cfg_base(&cfg, P.cli_cert, P.cli_key, 0);
  cfg.v6only = 1;
  quic_endpoint *cli = ep_at(&x, &cfg, AF_INET6, "::", 0);
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_null(quic_connect(cli, (struct sockaddr *)&to, sizeof(to)));
  quic_endpoint_free(cli);
  ctx_free(&x);
}

static int raw_closed(const ctx *x) { return x->raw_closed; }
static int raw_stopped(const ctx *x) { return x->raw_stopped > 0; }
static int srv_stopped(const ctx *x) { return x->srv_stop_sent; }
static int more_streams(const ctx *x) { return x->streams_available > 0; }

static void test_stop_sending_and_limit(void **state) {
  ctx x;
  ctx_init(&x, 0);
  x.raw = 1;
  quic_endpoint *srv = server(&x, 3, 64);
  quic_config cfg;
  cfg_base(&cfg, P.cli_cert, P.cli_key, 0);
  quic_endpoint *cli = ep_at(&x, &cfg, AF_INET, "127.0.0.1", 0);
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port_of(srv)),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  x.cc = quic_connect(cli, (struct sockaddr *)&to, sizeof(to));
  assert_true(run_until(&x, connected, 5.));

  /* The peer's limit (3) holds at quic_stream_open. */
  int64_t sids[4];
  for (int i = 0; i < 3; i++) assert_int_equal(quic_stream_open(x.cc, &sids[i]), 0);
  assert_int_equal(quic_stream_open(x.cc, &sids[3]), -EAGAIN);
  x.streams_available = 0; /* the initial limit was announced too */

  /* The server stops the first stream on its first bytes: our direction
   * ends (writes fail with -EPIPE) and, once the other direction ends too,
   * the stream closes with the server's code. */
  x.raw_sid = sids[0];
  assert_int_equal(quic_stream_write(x.cc, sids[0], "abc", 3, 0), 3);
  /* Wait for the STOP_SENDING to arrive: writes start failing, with
   * -EPIPE, or -ENOENT once the server's FIN has closed the stream too. */
  ssize_t w = 0;
  double end = ev_time() + 5.;
  while (ev_time() < end && w >= 0) {
    w = quic_stream_write(x.cc, sids[0], "d", 1, 0);
    if (w >= 0) run_until(&x, raw_closed, 0.02);
  }
  assert_true(w == -EPIPE || w == -ENOENT);
  if (w == -EPIPE) assert_false(x.raw_closed);
  assert_true(run_until(&x, raw_closed, 5.));
  assert_int_equal(x.raw_close_code, 0x77);
  /* The closed stream frees a slot: the peer raises the limit. */
  assert_true(run_until(&x, more_streams, 5.));
  assert_int_equal(quic_stream_open(x.cc, &sids[3]), 0);
  quic_endpoint_free(cli);
  quic_endpoint_free(srv);
  ctx_free(&x);
}

/* A peer's STOP_SENDING reaches the sender as an event of its own, with no
 * failed write to discover it: on_stream_stop_sending once, right after
 * the write that met it; the buffered bytes dropped (no on_writable for
 * the write cut short), writes refused with -EPIPE, and the stream still
 * open while the peer's own direction is. */
static void test_stop_sending_reaches_the_sender(void **state) {
  ctx x;
  ctx_init(&x, 0);
  x.raw = 1;
  x.raw_nofin = 1;
  quic_endpoint *srv = server(&x, 3, 64);
  quic_config cfg;
  cfg_base(&cfg, P.cli_cert, P.cli_key, 0);
  quic_endpoint *cli = ep_at(&x, &cfg, AF_INET, "127.0.0.1", 0);
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port_of(srv)),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  x.cc = quic_connect(cli, (struct sockaddr *)&to, sizeof(to));
  assert_true(run_until(&x, connected, 5.));
  assert_int_equal(quic_stream_open(x.cc, &x.raw_sid), 0);
  assert_int_equal(quic_stream_write(x.cc, x.raw_sid, "abc", 3, 0), 3);
  assert_true(run_until(&x, srv_stopped, 5.));
  run_until(&x, raw_stopped, 0.2); /* the STOP_SENDING comes in */
  /* More than the send buffer: the write is cut short, so an on_writable
   * would be due once bytes are acknowledged. */
  static uint8_t big[4 << 20];
  ssize_t w = quic_stream_write(x.cc, x.raw_sid, big, sizeof(big), 0);
  assert_true(w > 0 && (size_t)w < sizeof(big));
  assert_true(run_until(&x, raw_stopped, 1.));
  assert_int_equal(quic_stream_write(x.cc, x.raw_sid, "d", 1, 0), -EPIPE);
  run_until(&x, raw_closed, 0.3);
  assert_false(x.raw_closed); /* the server's direction is still open */
  assert_int_equal(x.raw_writable, 0);
  assert_int_equal(x.raw_stopped, 1);
  quic_endpoint_free(cli);
  quic_endpoint_free(srv);
  ctx_free(&x);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_thousand_streams),
      cmocka_unit_test(test_bad_datagrams),
      cmocka_unit_test(test_refused_peers),
      cmocka_unit_test(test_retry),
      cmocka_unit_test(test_stateless_reset_after_restart),
      cmocka_unit_test(test_dual_stack),
      cmocka_unit_test(test_stop_sending_and_limit),
      cmocka_unit_test(test_stop_sending_reaches_the_sender),
  };
  return cmocka_run_group_tests(tests, setup_pki, teardown_pki);
}
