/* Unit tests for agent/ctlsp.c, the control channel's SP REQ transport,
 * against a REP peer played by the test over loopback TCP: the header
 * exchange, requests in flight answered out of order, a reply to a
 * cancelled request dropped, timeouts that say whether the request went
 * out, a peer that closes or speaks another protocol, a refused connection
 * named, and a close from inside a callback. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "ctlsp.h"
#include "spwire.h"

typedef struct got {
  int calls, rv, sent;
  char body[64];
  struct fixture *f;
  int close_sp;                  /* the callback closes the connection */
} got_t;

typedef struct fixture {
  struct ev_loop *loop;
  int lfd, peer;
  char url[64];
  ctlsp_t *sp;
  int ups, downs;
  char why[CTLSP_WHY_MAX];
  int close_in_down;             /* on_down closes the connection */
  /* Here, not on a test's stack: a failed assertion leaves them behind. */
  ctlsp_req_t r[3];
  got_t g[3];
} fixture_t;


static void on_up(ctlsp_t *sp, void *arg) {
  fixture_t *f = arg;
  (void)sp;
  f->ups++;
}

static void on_down(ctlsp_t *sp, const char *why, void *arg) {
  fixture_t *f = arg;
  f->downs++;
  snprintf(f->why, sizeof(f->why), "%s", why);
  if (f->close_in_down) {
    ctlsp_close(sp);
    f->sp = NULL;
  }
}

static void on_reply(ctlsp_req_t *r, int rv, const uint8_t *body, size_t len, void *arg) {
  got_t *g = arg;
  g->calls++;
  g->rv = rv;
  g->sent = r->sent;
  if (body && len < sizeof(g->body)) {
    memcpy(g->body, body, len);
    g->body[len] = '\0';
  }
  if (g->close_sp) {
    ctlsp_close(g->f->sp);
    g->f->sp = NULL;
  }
}

static void timeout_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)loop;
  (void)revents;
  *(int *)w->data = 1;
}

/* run_until turns the loop until |*flag| is non-zero or |s| seconds passed. */
static int run_until(fixture_t *f, const int *flag, double s) {
  int out = 0;
  ev_timer t;
  ev_timer_init(&t, timeout_cb, s, 0.);
  t.data = &out;
  ev_timer_start(f->loop, &t);
  while (!*flag && !out) ev_run(f->loop, EVRUN_ONCE);
  ev_timer_stop(f->loop, &t);
  return *flag != 0;
}

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  struct sockaddr_in a = {0};
  socklen_t al = sizeof(a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  f->loop = ev_loop_new(EVFLAG_AUTO);
  f->lfd = socket(AF_INET, SOCK_STREAM, 0);
  f->peer = -1;
  assert_int_equal(bind(f->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
  assert_int_equal(listen(f->lfd, 8), 0);
  assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&a, &al), 0);
  snprintf(f->url, sizeof(f->url), "tcp://127.0.0.1:%u", ntohs(a.sin_port));
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  for (int i = 0; i < 3; i++) ctlsp_req_cancel(&f->r[i]);
  ctlsp_close(f->sp);
  if (f->peer >= 0) close(f->peer);
  close(f->lfd);
  ev_run(f->loop, EVRUN_NOWAIT);
  ev_loop_destroy(f->loop);
  free(f);
  return 0;
}

static ctlsp_t *open_sp(fixture_t *f, const char *url) {
  char err[256];
  ctlsp_opts_t o = {0};
  o.url = url;
  o.max_msg = 1024;
  o.on_up = on_up;
  o.on_down = on_down;
  o.arg = f;
  f->sp = ctlsp_open(f->loop, &o, err, sizeof(err));
  assert_non_null(f->sp);
  return f->sp;
}

/* peer_accept takes the connection and answers the REQ header with REP's. */
static void peer_accept(fixture_t *f, uint16_t proto) {
  uint8_t h[SPWIRE_HEADER_LEN];
  f->peer = accept(f->lfd, NULL, NULL);
  assert_true(f->peer >= 0);
  spwire_header(h, proto);
  assert_int_equal(send(f->peer, h, sizeof(h), 0), (ssize_t)sizeof(h));
}

/* recv_all reads |n| bytes as the peer, turning the loop meanwhile (the
 * client writes only when it runs); 5 s at most. */
static void recv_all(fixture_t *f, void *buf, size_t n) {
  size_t got = 0;
  for (int i = 0; got < n && i < 500; i++) {
    ssize_t k = recv(f->peer, (uint8_t *)buf + got, n - got, MSG_DONTWAIT);
    if (k > 0) {
      got += (size_t)k;
      continue;
    }
    assert_true(k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
    ev_run(f->loop, EVRUN_NOWAIT);
    struct pollfd p = {f->peer, POLLIN, 0};
    poll(&p, 1, 10);
  }
  assert_int_equal(got, n);
}

/* peer_read reads the REQ header (once) or a request: its id and body. */
static uint32_t peer_read(fixture_t *f, char *body, size_t max) {
  uint8_t w[12];
  recv_all(f, w, 12);
  uint64_t n = 0;
  for (int i = 0; i < 8; i++) n = n << 8 | w[i];
  assert_true(n >= 4 && n - 4 < max);
  recv_all(f, body, (size_t)(n - 4));
  body[n - 4] = '\0';
  return (uint32_t)w[8] << 24 | (uint32_t)w[9] << 16 | (uint32_t)w[10] << 8 | w[11];
}

static void peer_header(fixture_t *f) {
  uint8_t h[SPWIRE_HEADER_LEN], want[SPWIRE_HEADER_LEN];
  recv_all(f, h, sizeof(h));
  spwire_header(want, SPWIRE_PROTO_REQ);
  assert_memory_equal(h, want, sizeof(h));
}

static void peer_reply(fixture_t *f, uint32_t id, const char *body) {
  uint8_t buf[128];
  size_t len = strlen(body);
  spwire_frame(buf, id, body, len);
  assert_int_equal(send(f->peer, buf, spwire_frame_len(len), 0), (ssize_t)spwire_frame_len(len));
}

/* one_out connects, sends request 0 ("x") with |timeout_ms| and reads it as
 * the peer; returns its SP request id. */
static uint32_t one_out(fixture_t *f, int timeout_ms) {
  char body[64];
  open_sp(f, f->url);
  ctlsp_req_init(&f->r[0], f->loop, on_reply, &f->g[0]);
  assert_int_equal(ctlsp_send(f->sp, &f->r[0], "x", 1, timeout_ms), 0);
  peer_accept(f, SPWIRE_PROTO_REP);
  peer_header(f);
  uint32_t id = peer_read(f, body, sizeof(body));
  assert_string_equal(body, "x");
  return id;
}

static void test_requests_in_flight(void **state) {
  fixture_t *f = *state;
  got_t *a = &f->g[0], *b = &f->g[1], *c = &f->g[2];
  ctlsp_req_t *ra = &f->r[0], *rb = &f->r[1], *rc = &f->r[2];
  char body[64];
  open_sp(f, f->url);
  ctlsp_req_init(ra, f->loop, on_reply, a);
  ctlsp_req_init(rb, f->loop, on_reply, b);
  ctlsp_req_init(rc, f->loop, on_reply, c);
  /* Queued before the connection is up. */
  assert_int_equal(ctlsp_send(f->sp, ra, "poll", 4, 5000), 0);
  assert_int_equal(ctlsp_send(f->sp, rb, "rpc", 3, 5000), 0);
  assert_int_equal(a->calls + b->calls, 0); /* never from inside ctlsp_send */
  peer_accept(f, SPWIRE_PROTO_REP);
  assert_true(run_until(f, &f->ups, 5));
  assert_false(ctlsp_is_up(NULL));
  assert_true(ctlsp_is_up(f->sp));
  peer_header(f);
  uint32_t ida = peer_read(f, body, sizeof(body));
  assert_string_equal(body, "poll");
  uint32_t idb = peer_read(f, body, sizeof(body));
  assert_string_equal(body, "rpc");
  assert_true(ida & SPWIRE_ID_BIT);
  assert_int_not_equal(ida, idb);
  /* Answered out of order: each reply reaches its own request. */
  peer_reply(f, idb, "rpc-answer");
  assert_true(run_until(f, &b->calls, 5));
  assert_int_equal(b->rv, 0);
  assert_string_equal(b->body, "rpc-answer");
  assert_int_equal(a->calls, 0);
  /* A cancelled request's reply is dropped; an unknown id too. */
  assert_int_equal(ctlsp_send(f->sp, rc, "late", 4, 5000), 0);
  ctlsp_req_cancel(rc);
  uint32_t idc = peer_read(f, body, sizeof(body));
  assert_string_equal(body, "late");
  peer_reply(f, idc, "dropped");
  peer_reply(f, 0x80000000u | 12345, "nobody");
  peer_reply(f, ida, "poll-answer");
  assert_true(run_until(f, &a->calls, 5));
  assert_string_equal(a->body, "poll-answer");
  assert_int_equal(c->calls, 0);
  assert_int_equal(f->downs, 0);
  /* A request may go again once answered. */
  a->calls = 0;
  assert_int_equal(ctlsp_send(f->sp, ra, "again", 5, 5000), 0);
  uint32_t id2 = peer_read(f, body, sizeof(body));
  assert_int_not_equal(id2, ida);
  peer_reply(f, id2, "ok");
  assert_true(run_until(f, &a->calls, 5));
  assert_int_equal(a->rv, 0);
  assert_string_equal(a->body, "ok");
}

static void test_timeouts_say_whether_sent(void **state) {
  fixture_t *f = *state;
  got_t *a = &f->g[0], *b = &f->g[1];
  ctlsp_req_t *rb = &f->r[1];
  /* Connected but never answered: sent, no answer. */
  one_out(f, 200);
  assert_true(run_until(f, &a->calls, 5));
  assert_int_equal(a->rv, CTLSP_ETIMEDOUT);
  assert_true(a->sent);
  /* Its late reply is dropped; the connection stays. */
  ctlsp_close(f->sp);
  f->sp = NULL;
  close(f->peer);
  f->peer = -1;
  /* A TLS handshake the listener never answers: not sent. */
  char err[256];
  static const uint8_t fp[CTLTLS_FP_LEN];
  gnutls_certificate_credentials_t cred;
  gnutls_priority_t prio;
  assert_int_equal(gnutls_certificate_allocate_credentials(&cred), 0);
  assert_int_equal(gnutls_priority_init(&prio, CTLTLS_PRIORITY_BASE, NULL), 0);
  char tls_url[80];
  snprintf(tls_url, sizeof(tls_url), "tls+%s", f->url);
  ctlsp_opts_t o = {0};
  o.url = tls_url;
  o.cred = cred;
  o.prio = prio;
  o.servername = "ctl";
  o.verify = 1;
  o.trust_fp = fp;
  o.max_msg = 1024;
  o.on_up = on_up;
  o.on_down = on_down;
  o.arg = f;
  assert_non_null(f->sp = ctlsp_open(f->loop, &o, err, sizeof(err)));
  ctlsp_req_init(rb, f->loop, on_reply, b);
  assert_int_equal(ctlsp_send(f->sp, rb, "y", 1, 200), 0);
  assert_true(run_until(f, &b->calls, 5));
  assert_int_equal(b->rv, CTLSP_ETIMEDOUT);
  assert_false(b->sent);
  ctlsp_close(f->sp);
  f->sp = NULL;
  gnutls_priority_deinit(prio);
  gnutls_certificate_free_credentials(cred);
}

static void test_peer_closes(void **state) {
  fixture_t *f = *state;
  got_t *a = &f->g[0];
  ctlsp_req_t *ra = &f->r[0];
  one_out(f, 5000);
  close(f->peer);
  f->peer = -1;
  assert_true(run_until(f, &f->downs, 5));
  assert_non_null(strstr(f->why, "closed by the controller"));
  /* The request in flight learns it too, after on_down. */
  assert_true(run_until(f, &a->calls, 5));
  assert_int_equal(a->rv, CTLSP_ECLOSED);
  assert_false(ctlsp_is_up(f->sp));
  assert_int_equal(ctlsp_send(f->sp, ra, "x", 1, 5000), CTLSP_ECLOSED);
}

static void test_peer_not_rep(void **state) {
  fixture_t *f = *state;
  open_sp(f, f->url);
  f->close_in_down = 1; /* the owner closes from inside on_down */
  peer_accept(f, SPWIRE_PROTO_REQ);
  assert_true(run_until(f, &f->downs, 5));
  assert_non_null(strstr(f->why, "not an SP REP socket"));
  assert_int_equal(f->ups, 0);
  assert_null(f->sp);
}

static void test_oversize_reply(void **state) {
  fixture_t *f = *state;
  got_t *a = &f->g[0];
  uint8_t w[12] = {0, 0, 0, 0, 0, 0, 0x10, 0x04}; /* 4 KiB + id: over max_msg 1024 */
  uint32_t id = one_out(f, 5000);
  w[8] = (uint8_t)(id >> 24);
  w[9] = (uint8_t)(id >> 16);
  w[10] = (uint8_t)(id >> 8);
  w[11] = (uint8_t)id;
  assert_int_equal(send(f->peer, w, sizeof(w), 0), 12);
  assert_true(run_until(f, &f->downs, 5));
  assert_non_null(strstr(f->why, "size bound"));
  assert_true(run_until(f, &a->calls, 5));
  assert_int_equal(a->rv, CTLSP_ECLOSED);
}

static void test_refused_is_named(void **state) {
  fixture_t *f = *state;
  char url[64];
  struct sockaddr_in a = {0};
  socklen_t al = sizeof(a);
  int s = socket(AF_INET, SOCK_STREAM, 0);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
  assert_int_equal(getsockname(s, (struct sockaddr *)&a, &al), 0);
  close(s); /* nobody listens there now */
  snprintf(url, sizeof(url), "tcp://127.0.0.1:%u", ntohs(a.sin_port));
  open_sp(f, url);
  assert_true(run_until(f, &f->downs, 5));
  assert_non_null(strstr(f->why, "cannot connect to 127.0.0.1:"));
  assert_non_null(strstr(f->why, "refused"));
  /* A URL that is not an address is refused at once. */
  char err[256];
  ctlsp_opts_t o = {0};
  o.url = "tcp://ctl.example:1";
  assert_null(ctlsp_open(f->loop, &o, err, sizeof(err)));
  assert_non_null(strstr(err, "not an address"));
  o.url = "http://x";
  assert_null(ctlsp_open(f->loop, &o, err, sizeof(err)));
}

static void test_close_inside_reply(void **state) {
  fixture_t *f = *state;
  got_t *a = &f->g[0], *b = &f->g[1];
  ctlsp_req_t *ra = &f->r[0], *rb = &f->r[1];
  char body[64];
  open_sp(f, f->url);
  a->f = f;
  a->close_sp = 1;
  ctlsp_req_init(ra, f->loop, on_reply, a);
  ctlsp_req_init(rb, f->loop, on_reply, b);
  assert_int_equal(ctlsp_send(f->sp, ra, "a", 1, 5000), 0);
  assert_int_equal(ctlsp_send(f->sp, rb, "b", 1, 5000), 0);
  peer_accept(f, SPWIRE_PROTO_REP);
  peer_header(f);
  uint32_t ida = peer_read(f, body, sizeof(body));
  uint32_t idb = peer_read(f, body, sizeof(body));
  /* Both replies in one read: the first closes the connection. */
  uint8_t two[64];
  spwire_frame(two, ida, "1", 1);
  spwire_frame(two + spwire_frame_len(1), idb, "2", 1);
  assert_int_equal(send(f->peer, two, 2 * spwire_frame_len(1), 0),
                   (ssize_t)(2 * spwire_frame_len(1)));
  assert_true(run_until(f, &a->calls, 5));
  assert_null(f->sp);
  /* The other request is told the connection ended; on_down is not called. */
  assert_true(run_until(f, &b->calls, 5));
  assert_int_equal(b->rv, CTLSP_ECLOSED);
  assert_int_equal(f->downs, 0);
}

int main(void) {
  gnutls_global_init();
  ctltls_init();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_requests_in_flight, setup, teardown),
      cmocka_unit_test_setup_teardown(test_timeouts_say_whether_sent, setup, teardown),
      cmocka_unit_test_setup_teardown(test_peer_closes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_peer_not_rep, setup, teardown),
      cmocka_unit_test_setup_teardown(test_oversize_reply, setup, teardown),
      cmocka_unit_test_setup_teardown(test_refused_is_named, setup, teardown),
      cmocka_unit_test_setup_teardown(test_close_inside_reply, setup, teardown),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  ctltls_shutdown();
  gnutls_global_deinit();
  return rc;
}
