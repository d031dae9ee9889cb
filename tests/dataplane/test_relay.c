/* Unit tests for dataplane/relay.c: two nodes on one libev loop, each with
 * a hub, a qsvc and a relay behind a QUIC endpoint with mutual TLS over
 * 127.0.0.1; A (node 2, the child) connects to B (node 1, the parent).
 * A synthetic stream (AVC and AAC sequence headers, keyframes every ten
 * video frames, audio between) is pushed from A to B and pulled from B to
 * A and compared frame by frame; PUSH refusals (path taken from elsewhere,
 * too many hops, loop, bad path and options), takeover by the same origin,
 * a PULL of a missing path reset after the wait, headers with an oversized
 * path or control characters reset, a link slower than the stream kept to
 * its bound by skipping to keyframes, and a closed connection ending
 * everything with callbacks. Waits use deadlines; ASan checks leaks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <netinet/in.h>
#include <stdio.h>
#include <unistd.h>

#include "hub.h"
#include "qsvc.h"
#include "quic.h"
#include "relay.h"
#include "streamhdr.h"
#include "x509.h"
#include "testpki.h"

#define ID_B 1
#define ID_A 2
#define REC_MAX 8192

typedef struct pki {
  char dir[64];
  char *ca, *b_cert, *b_key, *a_cert, *a_key;
} pki;

static pki P;

/* AVC sequence header (160x120) and AAC LC 44.1 kHz stereo config. */
static const uint8_t avc_seq[] = {
    0x17, 0x00, 0x00, 0x00, 0x00, 0x01, 0xf4, 0x00, 0x0a, 0xff, 0xe1, 0x00, 0x1a,
    0x67, 0xf4, 0x00, 0x0a, 0x91, 0x9b, 0x28, 0x50, 0x8f, 0xc4, 0xe0, 0x22, 0x00,
    0x00, 0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00, 0x28, 0x1e, 0x24, 0x4b, 0x2c,
    0x01, 0x00, 0x06, 0x68, 0xeb, 0xe3, 0xc4, 0x48, 0x44, 0xff, 0xf8, 0xf8, 0x00};
static const uint8_t aac_seq[] = {0xaf, 0x00, 0x12, 0x10};

typedef struct ctx ctx;

typedef struct node {
  ctx *x;
  int64_t id;
  quic_endpoint *ep;
  hub_t *hub;
  qsvc *q;
  relay_t *r;
  quic_conn *conn;          /* the connection to the other node */
  int closed;
  int missing;              /* hub on_missing calls */
  char missing_path[64];
  int idle;
} node;

/* A raw stream A opened itself (no qsvc): the answer bytes. */
typedef struct raw {
  int64_t sid;
  uint8_t buf[512];
  size_t len;
  int fin, closed;
  uint64_t code;
  size_t total;  /* bytes received, kept or not */
  int discard;   /* 1: count the bytes, keep none */
} raw;

struct ctx {
  struct ev_loop *loop;
  node a, b;
  raw *raw;
};

/* ---- PKI ---- */

static int setup_pki(void **state) {
  char err[256], path[128];
  (void)state;
  gnutls_global_init();
  strcpy(P.dir, "/tmp/test_relay.XXXXXX");
  if (!mkdtemp(P.dir)) return -1;
  if (x509_ca_ensure(P.dir, err, sizeof(err)) != 0) {
    fprintf(stderr, "ca: %s\n", err);
    return -1;
  }
  snprintf(path, sizeof(path), "%s/ca.crt", P.dir);
  P.ca = x509_read_file(path, X509_PEM_MAX, err, sizeof(err));
  if (!P.ca) return -1;
  P.b_cert = testpki_node(P.dir, ID_B, 3600, &P.b_key);
  P.a_cert = testpki_node(P.dir, ID_A, 3600, &P.a_key);
  return 0;
}

static int teardown_pki(void **state) {
  (void)state;
  free(P.ca);
  free(P.b_cert);
  free(P.b_key);
  free(P.a_cert);
  free(P.a_key);
  testpki_rm_dir(P.dir);
  gnutls_global_deinit();
  return 0;
}

/* ---- quic callbacks: qsvc first, then the relay ---- */

static void on_accept(quic_conn *c, void *ud) { ((node *)ud)->conn = c; }

static void on_connected(quic_conn *c, void *ud) { ((node *)ud)->conn = c; }

static void on_stream_open(quic_conn *c, int64_t sid, void *ud) {
  assert_int_equal(qsvc_accept_stream(((node *)ud)->q, c, sid), 0);
}

static void on_data(quic_conn *c, int64_t sid, const uint8_t *data, size_t len, int fin,
                    void *ud) {
  node *n = ud;
  if (qsvc_on_data(n->q, c, sid, data, len, fin)) return;
  if (relay_on_data(n->r, c, sid, data, len, fin)) return;
  raw *k = n->x->raw;
  assert_non_null(k);
  assert_int_equal(k->sid, sid);
  k->total += len;
  if (k->discard) return;
  assert_true(k->len + len <= sizeof(k->buf));
  memcpy(k->buf + k->len, data, len);
  k->len += len;
  if (fin) k->fin = 1;
}

static void on_writable(quic_conn *c, int64_t sid, void *ud) {
  node *n = ud;
  if (qsvc_on_writable(n->q, c, sid)) return;
  relay_on_writable(n->r, c, sid);
}

static void on_stream_close(quic_conn *c, int64_t sid, uint64_t code, void *ud) {
  node *n = ud;
  if (qsvc_on_stream_close(n->q, c, sid, code)) return;
  if (relay_on_stream_close(n->r, c, sid, code)) return;
  raw *k = n->x->raw;
  if (k && k->sid == sid) {
    k->closed = 1;
    k->code = code;
  }
}

static void on_stream_stop_sending(quic_conn *c, int64_t sid, void *ud) {
  relay_on_stream_stop_sending(((node *)ud)->r, c, sid);
}

static void on_close(quic_conn *c, const quic_close_info *info, void *ud) {
  node *n = ud;
  (void)info;
  qsvc_on_conn_close(n->q, c);
  relay_on_conn_close(n->r, c);
  n->closed = 1;
  n->conn = NULL;
}

static const quic_callbacks cbs = {
    .on_accept = on_accept,
    .on_connected = on_connected,
    .on_stream_open = on_stream_open,
    .on_data = on_data,
    .on_writable = on_writable,
    .on_stream_close = on_stream_close,
    .on_close = on_close,
    .on_stream_stop_sending = on_stream_stop_sending,
};

/* ---- hub observer: counts, for the on-demand pull trigger ---- */

static void obs_missing(hub_t *h, const char *path, void *arg) {
  node *n = arg;
  (void)h;
  n->missing++;
  snprintf(n->missing_path, sizeof(n->missing_path), "%s", path);
}

static void obs_idle(hub_t *h, const char *path, void *arg) {
  (void)h;
  (void)path;
  ((node *)arg)->idle++;
}

static const hub_observer_t observer = {NULL, NULL, obs_missing, obs_idle};

/* ---- harness ---- */

static void wake_cb(struct ev_loop *l, ev_timer *w, int revents) {
  (void)l;
  (void)w;
  (void)revents;
}

typedef int (*cond_fn)(const ctx *x, const void *arg);

/* run_until runs the loop until |done| holds or |secs| pass. */
static int run_until(ctx *x, cond_fn done, const void *arg, double secs) {
  ev_timer t;
  ev_now_update(x->loop); /* the timer counts from now, not the last loop turn */
  ev_timer_init(&t, wake_cb, secs, 0.);
  ev_timer_start(x->loop, &t);
  double end = ev_now(x->loop) + secs;
  while (!done(x, arg)) {
    ev_now_update(x->loop);
    if (ev_now(x->loop) >= end) break;
    ev_run(x->loop, EVRUN_ONCE);
  }
  ev_timer_stop(x->loop, &t);
  return done(x, arg);
}

static int never(const ctx *x, const void *a) {
  (void)x;
  (void)a;
  return 0;
}

/* run_for runs the loop |secs| (for "nothing more happens" checks). */
static void run_for(ctx *x, double secs) { run_until(x, never, NULL, secs); }

static int is_up(const ctx *x, const void *a) {
  (void)a;
  return x->a.conn && x->b.conn;
}

static int both_closed(const ctx *x, const void *a) {
  (void)a;
  return x->a.closed && x->b.closed;
}

static void node_up(ctx *x, node *n, int64_t id, const char *cert, const char *key, int accept,
                    uint32_t max_hops, size_t send_bound) {
  n->x = x;
  n->id = id;
  quic_config cfg;
  quic_config_default(&cfg);
  cfg.cert_pem = cert;
  cfg.key_pem = key;
  cfg.ca_pem = P.ca;
  cfg.accept = accept;
  cfg.idle_timeout = 5.;
  cfg.handshake_timeout = 3.;
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  n->ep = quic_endpoint_new(x->loop, &cfg, (struct sockaddr *)&sin, sizeof(sin), &cbs, n);
  assert_non_null(n->ep);
  hub_config_t hc = {.delay_close_s = 0.3, .wait_s = 0.5};
  n->hub = hub_new(x->loop, &hc);
  assert_non_null(n->hub);
  hub_set_observer(n->hub, &observer, n);
  n->q = qsvc_new(x->loop);
  assert_non_null(n->q);
  relay_config_t rc = {.node_id = id, .max_hops = max_hops, .send_bound = send_bound};
  n->r = relay_new(x->loop, n->hub, n->q, &rc);
  assert_non_null(n->r);
}

/* up starts B (parent, server) and A (child) and connects A to B. */
static void up_with(ctx *x, uint32_t b_max_hops, size_t b_send_bound) {
  memset(x, 0, sizeof(*x));
  x->loop = ev_loop_new(EVFLAG_AUTO);
  node_up(x, &x->b, ID_B, P.b_cert, P.b_key, 1, b_max_hops, b_send_bound);
  node_up(x, &x->a, ID_A, P.a_cert, P.a_key, 0, 16, 0);
  struct sockaddr_storage ss;
  socklen_t sl;
  assert_int_equal(quic_endpoint_local_addr(x->b.ep, &ss, &sl), 0);
  assert_non_null(quic_connect(x->a.ep, (struct sockaddr *)&ss, sl));
  assert_true(run_until(x, is_up, NULL, 5.));
}

static void up(ctx *x) { up_with(x, 0, 0); }

static void node_down(node *n) {
  quic_endpoint_free(n->ep);
  relay_free(n->r);
  qsvc_free(n->q);
  hub_free(n->hub);
}

static void down(ctx *x) {
  if (x->a.conn) quic_conn_close(x->a.conn, 0);
  assert_true(run_until(x, both_closed, NULL, 5.));
  node_down(&x->a);
  node_down(&x->b);
  ev_loop_destroy(x->loop);
}

/* ---- media ---- */

/* Frame |i| of the synthetic stream: every third frame audio, the others
 * video with a keyframe every ten; |i| is written into the body so a
 * receiver can tell gaps. */
static hub_frame_t *media(uint32_t i, size_t vlen) {
  uint8_t buf[64 * 1024];
  uint32_t ts = i * 20;
  if (i % 3 == 2) {
    memset(buf, 0x5a, 32);
    buf[0] = 0xaf;
    buf[1] = 0x01;
    memcpy(buf + 2, &i, 4);
    return hub_frame_new(HUB_AUDIO, ts, buf, 32);
  }
  assert_true(vlen >= 9 && vlen <= sizeof(buf));
  for (size_t k = 0; k < vlen; k++) buf[k] = (uint8_t)(k * 7 + i);
  buf[0] = (i / 3) % 10 == 0 && i % 3 == 0 ? 0x17 : 0x27;
  buf[1] = 0x01;
  buf[2] = buf[3] = buf[4] = 0;
  memcpy(buf + 5, &i, 4);
  return hub_frame_new(HUB_VIDEO, ts, buf, vlen);
}

static uint32_t frame_index(const hub_frame_t *f) {
  uint32_t i;
  memcpy(&i, f->data + (f->type == HUB_AUDIO ? 2 : 5), 4);
  return i;
}

static void push_headers(hub_stream_t *st) {
  hub_push(st, hub_frame_new(HUB_VIDEO, 0, avc_seq, sizeof(avc_seq)));
  hub_push(st, hub_frame_new(HUB_AUDIO, 0, aac_seq, sizeof(aac_seq)));
}

/* ---- a recording subscriber ---- */

typedef struct rec {
  hub_sub_t *s;
  int ended, why;
  int n;
  uint8_t type[REC_MAX], key[REC_MAX], seq[REC_MAX];
  uint32_t ts[REC_MAX], idx[REC_MAX];
  size_t len[REC_MAX];
  int corrupt;              /* a body did not match what media() made */
  int n_want;               /* rec_has: wait for this many frames */
} rec;

static int body_ok(const hub_frame_t *f) {
  uint32_t i = frame_index(f);
  if (f->type == HUB_AUDIO) return f->len == 32 && f->data[0] == 0xaf && f->data[31] == 0x5a;
  for (size_t k = 9; k < f->len; k++)
    if (f->data[k] != (uint8_t)(k * 7 + i)) return 0;
  return f->ts == i * 20;
}

static void rec_frames(hub_sub_t *s, void *arg) {
  rec *r = arg;
  hub_frame_t *f;
  while ((f = hub_sub_next(s)) != NULL) {
    if (r->n < REC_MAX) {
      r->type[r->n] = f->type;
      r->key[r->n] = f->keyframe;
      r->seq[r->n] = f->seq_header;
      r->ts[r->n] = f->ts;
      r->len[r->n] = f->len;
      r->idx[r->n] = f->seq_header ? UINT32_MAX : frame_index(f);
      if (!f->seq_header && !body_ok(f)) r->corrupt = 1;
      r->n++;
    }
    hub_frame_unref(f);
  }
}

static void rec_end(hub_sub_t *s, void *arg, int why) {
  rec *r = arg;
  (void)s;
  r->ended = 1;
  r->why = why;
  r->s = NULL;
}

static const hub_sub_ops_t rec_ops = {rec_frames, rec_end};

static void rec_sub(hub_t *h, const char *path, rec *r) {
  memset(r, 0, sizeof(*r));
  r->s = hub_subscribe(h, path, &rec_ops, r);
  assert_non_null(r->s);
}

static int rec_has(const ctx *x, const void *a) {
  const rec *r = a;
  (void)x;
  return r->n >= r->n_want;
}

/* ---- relay callbacks ---- */

typedef struct outcome {
  int started, ended, why;
  uint32_t code;
  char reason[256];
} outcome;

static void oc_start(void *ud) { ((outcome *)ud)->started++; }

static void oc_end(const relay_end_t *e, void *ud) {
  outcome *o = ud;
  o->ended++;
  o->why = e->why;
  o->code = e->code;
  snprintf(o->reason, sizeof(o->reason), "%s", e->reason);
}

static const relay_cb_t oc_cb = {oc_start, oc_end};

static int oc_started(const ctx *x, const void *a) {
  (void)x;
  return ((const outcome *)a)->started > 0;
}

static int oc_ended(const ctx *x, const void *a) {
  (void)x;
  return ((const outcome *)a)->ended > 0;
}

static int rec_ended(const ctx *x, const void *a) {
  (void)x;
  return ((const rec *)a)->ended;
}

/* ---- tests ---- */

#define NFRAMES 300

/* A pushes a stream to B: a player waiting on B gets both sequence headers
 * and every frame in order with its timestamp and body; B records the
 * origin; when A's stream ends the push finishes and B unpublishes. */
static void test_push(void **state) {
  (void)state;
  ctx x;
  up(&x);
  rec r;
  rec_sub(x.b.hub, "live/p", &r); /* waits for the push */
  assert_int_equal(x.b.missing, 1);
  int err;
  hub_stream_t *st = hub_publish(x.a.hub, "live/p", &err);
  assert_non_null(st);
  push_headers(st);
  outcome o = {0};
  relay_push_t *p = relay_push(x.a.r, x.a.conn, "live/p", &oc_cb, &o, &err);
  assert_non_null(p);
  /* frames before the answer wait in A's hub queue */
  for (uint32_t i = 0; i < NFRAMES / 2; i++) hub_push(st, media(i, 3000));
  assert_true(run_until(&x, oc_started, &o, 4.));
  for (uint32_t i = NFRAMES / 2; i < NFRAMES; i++) {
    hub_push(st, media(i, 3000));
    if (i % 20 == 0) ev_run(x.loop, EVRUN_NOWAIT);
  }
  r.n_want = NFRAMES + 2;
  assert_true(run_until(&x, rec_has, &r, 5.));
  assert_int_equal(r.n, NFRAMES + 2);
  assert_false(r.corrupt);
  assert_true(r.seq[0] && r.type[0] == HUB_VIDEO && r.len[0] == sizeof(avc_seq));
  assert_true(r.seq[1] && r.type[1] == HUB_AUDIO && r.len[1] == sizeof(aac_seq));
  for (int k = 2; k < r.n; k++) {
    assert_int_equal(r.idx[k], (uint32_t)(k - 2));
    assert_int_equal(r.ts[k], (uint32_t)(k - 2) * 20);
  }
  assert_int_equal(r.key[2], 1);
  hub_origin_t org;
  assert_int_equal(hub_origin_of(x.b.hub, "live/p", &org), 0);
  assert_int_equal(org.kind, HUB_ORIGIN_PUSHED);
  assert_int_equal(org.node, ID_A);
  assert_int_equal(org.hops, 1);
  assert_int_equal(relay_get_stats(x.b.r)->pushes_in, 1);
  assert_int_equal(relay_get_stats(x.b.r)->frames_in, NFRAMES + 2);

  /* A's publisher leaves; after A's delayclose the push finishes */
  hub_unpublish(st);
  assert_true(run_until(&x, oc_ended, &o, 3.));
  assert_int_equal(o.why, RELAY_END_FINISHED);
  assert_int_equal(o.code, RELAY_ERR_UNPUBLISHED);
  assert_true(run_until(&x, rec_ended, &r, 3.)); /* B's delayclose, then the player */
  assert_int_equal(r.why, HUB_END_UNPUBLISHED);
  assert_int_equal(hub_origin_of(x.b.hub, "live/p", &org), -1);
  down(&x);
}

/* A pulls from B on demand: a player on A triggers on_missing, the pull
 * publishes the path on A as PULLED and the player gets the sequence
 * headers and B's cached GOP (from its keyframe), then live frames. A
 * pulled stream is not pushed back up. Stopping the pull releases B. */
static void test_pull(void **state) {
  (void)state;
  ctx x;
  up(&x);
  int err;
  hub_stream_t *st = hub_publish(x.b.hub, "live/q", &err);
  assert_non_null(st);
  push_headers(st);
  for (uint32_t i = 0; i < 40; i++) hub_push(st, media(i, 2000)); /* GOP from frame 30 */

  rec r;
  rec_sub(x.a.hub, "live/q", &r);
  assert_int_equal(x.a.missing, 1);
  assert_string_equal(x.a.missing_path, "live/q");
  outcome o = {0};
  relay_pull_t *p = relay_pull(x.a.r, x.a.conn, "live/q", ID_B, &oc_cb, &o, &err);
  assert_non_null(p);
  assert_null(relay_pull(x.a.r, x.a.conn, "bad", ID_B, &oc_cb, &o, &err));
  assert_int_equal(err, -EINVAL);
  assert_true(run_until(&x, oc_started, &o, 4.));
  hub_origin_t org;
  assert_int_equal(hub_origin_of(x.a.hub, "live/q", &org), 0);
  assert_int_equal(org.kind, HUB_ORIGIN_PULLED);
  assert_int_equal(org.node, ID_B);
  assert_null(relay_pull(x.a.r, x.a.conn, "live/q", ID_B, &oc_cb, &o, &err));
  assert_int_equal(err, -EBUSY);
  outcome po = {0};
  assert_null(relay_push(x.a.r, x.a.conn, "live/q", &oc_cb, &po, &err));
  assert_int_equal(err, -ELOOP);

  /* headers + the GOP: frames 30..39 (video 30 is the keyframe) */
  r.n_want = 2 + 10;
  assert_true(run_until(&x, rec_has, &r, 4.));
  assert_true(r.seq[0] && r.seq[1]);
  assert_int_equal(r.idx[2], 30);
  assert_int_equal(r.key[2], 1);
  for (uint32_t i = 40; i < 100; i++) hub_push(st, media(i, 2000));
  r.n_want = 2 + 70;
  assert_true(run_until(&x, rec_has, &r, 4.));
  assert_false(r.corrupt);
  for (int k = 2; k < r.n; k++) {
    assert_int_equal(r.idx[k], (uint32_t)(28 + k));
    assert_int_equal(r.ts[k], (uint32_t)(28 + k) * 20);
  }
  /* a late player on A starts on A's own GOP cache, at a keyframe */
  rec late;
  rec_sub(x.a.hub, "live/q", &late);
  late.n_want = 3;
  assert_true(run_until(&x, rec_has, &late, 2.));
  assert_true(late.seq[0] && late.seq[1]);
  assert_int_equal(late.key[2], 1);
  assert_int_equal(late.idx[2], 90);

  /* stop: A unpublishes (players stay for delayclose), B's subscription goes */
  relay_pull_stop(p);
  assert_int_equal(hub_origin_of(x.a.hub, "live/q", &org), -1);
  assert_true(run_until(&x, rec_ended, &r, 3.));
  assert_int_equal(r.why, HUB_END_UNPUBLISHED);
  assert_true(late.ended);
  run_for(&x, 0.2);
  assert_int_equal(o.ended, 0); /* no on_end after stop */
  assert_int_equal(x.b.idle, 1); /* B's stream lost its last subscriber */
  hub_unpublish(st);
  down(&x);
}

/* publish_as publishes |path| on |n| with |kind|, |node|, |hops| and the
 * headers and a keyframe. */
static hub_stream_t *publish_as(node *n, const char *path, hub_origin_kind_t kind, int64_t from,
                                uint32_t hops) {
  hub_origin_t o = {kind, from, hops};
  int err;
  hub_stream_t *st = hub_publish_ex(n->hub, path, &o, &err);
  assert_non_null(st);
  push_headers(st);
  hub_push(st, media(0, 100));
  return st;
}

static void expect_refused(ctx *x, const char *path, uint32_t code, const char *reason_part) {
  outcome o = {0};
  int err;
  relay_push_t *p = relay_push(x->a.r, x->a.conn, path, &oc_cb, &o, &err);
  assert_non_null(p);
  assert_true(run_until(x, oc_ended, &o, 4.));
  assert_int_equal(o.started, 0);
  assert_int_equal(o.why, RELAY_END_REFUSED);
  assert_int_equal(o.code, code);
  if (!strstr(o.reason, reason_part)) fail_msg("reason \"%s\" lacks \"%s\"", o.reason, reason_part);
}

/* raw_call opens a stream with |kind| and options through A's qsvc. */
typedef struct call {
  int answered, accepted, closed;
  uint32_t code;
  uint64_t close_code;
  char reason[256];
} call;

static void c_answer(quic_conn *c, int64_t sid, int accepted, uint32_t code, const char *reason,
                     void *ud) {
  call *k = ud;
  (void)c;
  (void)sid;
  k->answered = 1;
  k->accepted = accepted;
  k->code = code;
  snprintf(k->reason, sizeof(k->reason), "%s", reason);
}

static void c_data(quic_conn *c, int64_t sid, const uint8_t *d, size_t len, int fin, void *ud) {
  (void)c, (void)sid, (void)d, (void)len, (void)fin, (void)ud;
}

static void c_writable(quic_conn *c, int64_t sid, void *ud) { (void)c, (void)sid, (void)ud; }

static void c_close(quic_conn *c, int64_t sid, uint64_t code, void *ud) {
  call *k = ud;
  (void)c;
  (void)sid;
  k->closed = 1;
  k->close_code = code;
}

static const qsvc_call_cb call_cb = {c_answer, c_data, c_writable, c_close};

static int call_closed(const ctx *x, const void *a) {
  (void)x;
  return ((const call *)a)->closed;
}

static void expect_call_refused(ctx *x, stream_kind_t kind, const char *path, size_t n,
                                const char *const *keys, const char *const *vals, uint32_t code) {
  call k = {0};
  int64_t sid;
  assert_int_equal(qsvc_open(x->a.q, x->a.conn, kind, path, n, keys, vals, &call_cb, &k, &sid), 0);
  assert_true(run_until(x, call_closed, &k, 4.));
  assert_true(k.answered);
  assert_false(k.accepted);
  assert_int_equal(k.code, code);
  assert_int_equal(k.close_code, code);
}

/* B refuses a push of a path it has from elsewhere, with too many hops, or
 * coming from B itself; bad paths and options; the same origin again takes
 * over (its pusher reconnected). */
static void test_push_refused(void **state) {
  (void)state;
  ctx x;
  up_with(&x, 3, 0);
  hub_stream_t *b1 = publish_as(&x.b, "live/x", HUB_ORIGIN_LOCAL, 0, 0);
  hub_stream_t *a1 = publish_as(&x.a, "live/x", HUB_ORIGIN_LOCAL, 0, 0);
  expect_refused(&x, "live/x", RELAY_ERR_BUSY, "already published here");
  hub_stream_t *a2 = publish_as(&x.a, "live/h", HUB_ORIGIN_PUSHED, 99, 3); /* sent as 4 */
  expect_refused(&x, "live/h", RELAY_ERR_HOPS, "4 hops");
  hub_stream_t *a3 = publish_as(&x.a, "live/l", HUB_ORIGIN_PUSHED, ID_B, 1);
  expect_refused(&x, "live/l", RELAY_ERR_LOOP, "loop");
  assert_int_equal(relay_get_stats(x.b.r)->refused, 3);
  assert_int_equal(hub_origin_of(x.b.hub, "live/h", &(hub_origin_t){0}), -1);

  const char *k2[] = {"origin", "hops"};
  const char *ok[] = {"5", "1"}, *badh[] = {"5", "0"}, *bado[] = {"x5", "1"};
  expect_call_refused(&x, STREAM_PUSH, "nopath", 2, k2, ok, RELAY_ERR_BAD_PATH);
  expect_call_refused(&x, STREAM_PUSH, "live/o", 2, k2, badh, QSVC_ERR_BAD_OPTION);
  expect_call_refused(&x, STREAM_PUSH, "live/o", 2, k2, bado, QSVC_ERR_BAD_OPTION);
  expect_call_refused(&x, STREAM_PUSH, "live/o", 0, NULL, NULL, QSVC_ERR_BAD_OPTION);
  expect_call_refused(&x, STREAM_PULL, "live/../x", 0, NULL, NULL, RELAY_ERR_BAD_PATH);
  const char *ko[] = {"origin"}, *vb[] = {"1"};
  expect_call_refused(&x, STREAM_PULL, "live/x", 1, ko, vb, RELAY_ERR_LOOP);

  /* the same origin pushes again: the new push replaces the old one */
  hub_stream_t *a4 = publish_as(&x.a, "live/t", HUB_ORIGIN_LOCAL, 0, 0);
  outcome o1 = {0}, o2 = {0};
  int err;
  assert_non_null(relay_push(x.a.r, x.a.conn, "live/t", &oc_cb, &o1, &err));
  assert_true(run_until(&x, oc_started, &o1, 4.));
  assert_non_null(relay_push(x.a.r, x.a.conn, "live/t", &oc_cb, &o2, &err));
  assert_true(run_until(&x, oc_started, &o2, 4.));
  assert_true(run_until(&x, oc_ended, &o1, 4.));
  assert_int_equal(o1.why, RELAY_END_RESET);
  assert_int_equal(o1.code, RELAY_ERR_REPLACED);
  hub_origin_t org;
  assert_int_equal(hub_origin_of(x.b.hub, "live/t", &org), 0);
  assert_int_equal(org.node, ID_A);
  assert_int_equal(o2.ended, 0);

  hub_unpublish(a1);
  hub_unpublish(a2);
  hub_unpublish(a3);
  hub_unpublish(a4);
  hub_unpublish(b1);
  assert_true(run_until(&x, oc_ended, &o2, 3.));
  assert_int_equal(o2.why, RELAY_END_FINISHED);
  down(&x);
}

/* A pull of a path B does not have is reset with NOT_FOUND once B's wait
 * timeout passes; B's hub asked its observer for it (on_missing). */
static void test_pull_missing(void **state) {
  (void)state;
  ctx x;
  up(&x);
  outcome o = {0};
  int err;
  relay_pull_t *p = relay_pull(x.a.r, x.a.conn, "live/none", ID_B, &oc_cb, &o, &err);
  assert_non_null(p);
  assert_true(run_until(&x, oc_ended, &o, 3.));
  /* accepted (B waits for a publisher) but nothing came: never a stream here */
  assert_int_equal(o.started, 0);
  assert_int_equal(o.why, RELAY_END_RESET);
  assert_int_equal(o.code, RELAY_ERR_NOT_FOUND);
  assert_int_equal(x.b.missing, 1);
  assert_string_equal(x.b.missing_path, "live/none");
  hub_origin_t org;
  assert_int_equal(hub_origin_of(x.a.hub, "live/none", &org), -1);
  down(&x);
}

/* A pull B accepted but cannot serve yet is no stream on A: A's path stays
 * free and its player waits. B's stream comes: A publishes it PULLED. A
 * local publisher on A then displaces the pull (it ends: local, BUSY) and
 * keeps A's player, who switches over. */
static void test_pull_waits_then_gives_way(void **state) {
  (void)state;
  ctx x;
  up(&x);
  rec r;
  rec_sub(x.a.hub, "live/w", &r);
  outcome o = {0};
  int err;
  assert_non_null(relay_pull(x.a.r, x.a.conn, "live/w", ID_B, &oc_cb, &o, &err));
  run_for(&x, 0.15);
  hub_origin_t org;
  assert_int_equal(hub_origin_of(x.a.hub, "live/w", &org), -1); /* not published */
  assert_int_equal(o.started, 0);
  assert_int_equal(o.ended, 0);
  hub_stats_t hs;
  hub_get_stats(x.a.hub, &hs);
  assert_int_equal(hs.streams, 0);
  assert_int_equal(hub_publish_check(x.a.hub, "live/w"), 0);
  hub_stream_t *st = publish_as(&x.b, "live/w", HUB_ORIGIN_LOCAL, 0, 0);
  assert_true(run_until(&x, oc_started, &o, 2.));
  assert_int_equal(hub_origin_of(x.a.hub, "live/w", &org), 0);
  assert_int_equal(org.kind, HUB_ORIGIN_PULLED);
  r.n_want = 3;
  assert_true(run_until(&x, rec_has, &r, 2.));
  /* another pull of a live pulled path is still busy */
  outcome o2 = {0};
  assert_null(relay_pull(x.a.r, x.a.conn, "live/w", ID_B, &oc_cb, &o2, &err));
  assert_int_equal(err, -EBUSY);
  /* the local publisher wins */
  hub_stream_t *loc = hub_publish(x.a.hub, "live/w", &err);
  assert_non_null(loc);
  assert_int_equal(hub_origin_of(x.a.hub, "live/w", &org), 0);
  assert_int_equal(org.kind, HUB_ORIGIN_LOCAL);
  assert_true(run_until(&x, oc_ended, &o, 2.));
  assert_int_equal(o.why, RELAY_END_LOCAL);
  assert_int_equal(o.code, RELAY_ERR_BUSY);
  int before = r.n;
  push_headers(loc);
  hub_push(loc, media(0, 100)); /* a keyframe */
  r.n_want = before + 3;
  assert_true(run_until(&x, rec_has, &r, 2.));
  assert_int_equal(r.ended, 0);
  assert_int_equal(r.key[before + 2], 1);
  hub_unpublish(loc);
  hub_unpublish(st);
  run_for(&x, 0.5);
  down(&x);
}

/* The origin's publisher leaves: B's relay subscription ends at once, so
 * A's pulled copy ends (and A's delayclose starts) while B still keeps its
 * own players, not a delayclose later. */
static void test_pull_ends_with_origin(void **state) {
  (void)state;
  ctx x;
  up(&x);
  hub_stream_t *st = publish_as(&x.b, "live/e", HUB_ORIGIN_LOCAL, 0, 0);
  rec onb, ona;
  rec_sub(x.b.hub, "live/e", &onb);
  rec_sub(x.a.hub, "live/e", &ona);
  outcome o = {0};
  int err;
  assert_non_null(relay_pull(x.a.r, x.a.conn, "live/e", ID_B, &oc_cb, &o, &err));
  assert_true(run_until(&x, oc_started, &o, 2.));
  hub_unpublish(st);
  assert_true(run_until(&x, oc_ended, &o, 2.));
  hub_stats_t hs;
  hub_get_stats(x.b.hub, &hs);
  assert_int_equal(hs.streams, 1); /* B's delayclose (0.3 s) still runs */
  assert_int_equal(onb.ended, 0);
  assert_true(o.why == RELAY_END_RESET || o.why == RELAY_END_FINISHED);
  if (o.why == RELAY_END_RESET) assert_int_equal(o.code, RELAY_ERR_UNPUBLISHED);
  assert_int_equal(ona.ended, 0); /* A keeps its player for its own delayclose */
  assert_true(run_until(&x, rec_ended, &ona, 2.));
  assert_int_equal(ona.why, HUB_END_UNPUBLISHED);
  down(&x);
}

static int raw_closed(const ctx *x, const void *a) {
  (void)x;
  return ((const raw *)a)->closed;
}

/* raw_header writes a hand-made header (version 1, |kind|, |path| of
 * |plen| bytes) on a raw stream and expects the refusal and reset 0x11. */
static void raw_header(ctx *x, stream_kind_t kind, const char *path, size_t plen) {
  uint8_t b[2048];
  size_t n = 2;
  b[n++] = 0x08;
  b[n++] = 1;
  b[n++] = 0x10;
  b[n++] = (uint8_t)kind;
  b[n++] = 0x1a;
  if (plen < 128) {
    b[n++] = (uint8_t)plen;
  } else {
    b[n++] = (uint8_t)(0x80 | (plen & 0x7f));
    b[n++] = (uint8_t)(plen >> 7);
  }
  memcpy(b + n, path, plen);
  n += plen;
  b[0] = (uint8_t)((n - 2) >> 8);
  b[1] = (uint8_t)(n - 2);
  raw k = {0};
  assert_int_equal(quic_stream_open(x->a.conn, &k.sid), 0);
  x->raw = &k;
  assert_int_equal(quic_stream_write(x->a.conn, k.sid, b, n, 0), (ssize_t)n);
  assert_true(run_until(x, raw_closed, &k, 4.));
  int accepted = 1;
  uint32_t code = 0;
  char reason[256], err[128];
  assert_true(streamhdr_answer_parse(k.buf, k.len, &accepted, &code, reason, sizeof(reason), err,
                                     sizeof(err)) > 0);
  assert_false(accepted);
  assert_int_equal(code, QSVC_ERR_BAD_HEADER);
  assert_true(strstr(reason, "path") != NULL);
  assert_int_equal(k.code, QSVC_ERR_BAD_HEADER);
  x->raw = NULL;
}

static int raw_got(const ctx *x, const void *a) {
  (void)x;
  return ((const raw *)a)->total > 4000;
}

static int b_idle(const ctx *x, const void *a) {
  (void)a;
  return x->b.idle > 0;
}

/* A puller that stops reading (STOP_SENDING, its own direction left open)
 * loses its subscription on B when B's next frame meets the stop, not
 * only at the stream's close (which here never comes). */
static void test_pull_stopped_by_reader(void **state) {
  (void)state;
  ctx x;
  up(&x);
  int err;
  hub_stream_t *st = hub_publish(x.b.hub, "live/s", &err);
  assert_non_null(st);
  push_headers(st);
  for (uint32_t i = 0; i < 40; i++) hub_push(st, media(i, 2000));
  uint8_t b[64];
  size_t n = 2;
  b[n++] = 0x08;
  b[n++] = 1;
  b[n++] = 0x10;
  b[n++] = (uint8_t)STREAM_PULL;
  b[n++] = 0x1a;
  b[n++] = 6;
  memcpy(b + n, "live/s", 6);
  n += 6;
  b[0] = 0;
  b[1] = (uint8_t)(n - 2);
  raw k = {0};
  k.discard = 1;
  assert_int_equal(quic_stream_open(x.a.conn, &k.sid), 0);
  x.raw = &k;
  assert_int_equal(quic_stream_write(x.a.conn, k.sid, b, n, 0), (ssize_t)n);
  assert_true(run_until(&x, raw_got, &k, 4.)); /* the answer and the GOP */
  assert_int_equal(x.b.idle, 0);
  assert_int_equal(quic_stream_stop_sending(x.a.conn, k.sid, 0x99), 0);
  run_for(&x, 0.2); /* the STOP_SENDING reaches B */
  for (uint32_t i = 40; i < 44; i++) {
    hub_push(st, media(i, 2000));
    run_for(&x, 0.05);
  }
  assert_true(run_until(&x, b_idle, NULL, 2.));
  assert_false(k.closed); /* the puller's direction is still open */
  hub_unpublish(st);
  x.raw = NULL;
  down(&x);
}

/* PUSH/PULL headers with a path over 1,024 bytes or with a control
 * character never reach the relay: answered 0x11 and reset. */
static void test_bad_header_path(void **state) {
  (void)state;
  ctx x;
  up(&x);
  char big[1100];
  memset(big, 'a', sizeof(big));
  big[4] = '/';
  raw_header(&x, STREAM_PUSH, big, 1025);
  raw_header(&x, STREAM_PULL, big, 1025);
  raw_header(&x, STREAM_PUSH, "live/a\nb", 8);
  raw_header(&x, STREAM_PULL, "live/a\x01", 7);
  assert_int_equal(relay_get_stats(x.b.r)->pushes_in, 0);
  assert_int_equal(relay_get_stats(x.b.r)->pulls_in, 0);
  down(&x);
}

/* A link slower than the stream (here: bursts written while the loop does
 * not run) never holds more than the relay's bound in B's hub: the relay
 * subscription skips to the next keyframe, and what A receives resumes on
 * a keyframe after every gap. */
static void test_backpressure(void **state) {
  (void)state;
  const size_t bound = 256 * 1024, vlen = 40 * 1024;
  ctx x;
  up_with(&x, 0, bound);
  hub_stream_t *st = publish_as(&x.b, "live/bp", HUB_ORIGIN_LOCAL, 0, 0);
  rec r;
  rec_sub(x.a.hub, "live/bp", &r);
  outcome o = {0};
  int err;
  assert_non_null(relay_pull(x.a.r, x.a.conn, "live/bp", ID_B, &oc_cb, &o, &err));
  assert_true(run_until(&x, oc_started, &o, 4.));
  hub_stats_t hs;
  size_t peak = 0;
  uint32_t i = 1;
  for (int burst = 0; burst < 20; burst++) {
    for (int k = 0; k < 150; k++, i++) { /* ~4 MiB of video per burst */
      hub_push(st, media(i, vlen));
      hub_get_stats(x.b.hub, &hs);
      if (hs.queued_bytes > peak) peak = hs.queued_bytes;
    }
    run_for(&x, 0.02);
  }
  hub_get_stats(x.b.hub, &hs);
  assert_true(peak <= bound);
  assert_true(hs.frames_dropped > 0);
  assert_int_equal(hs.slow_disconnects, 0);
  run_for(&x, 0.5);
  assert_false(r.ended);
  assert_false(r.corrupt);
  assert_true(r.n > 50);
  int gaps = 0;
  for (int k = 3; k < r.n; k++) {
    if (r.idx[k] != r.idx[k - 1] + 1) {
      gaps++;
      assert_true(r.idx[k] > r.idx[k - 1]);
      assert_int_equal(r.type[k], HUB_VIDEO);
      assert_int_equal(r.key[k], 1);
    }
  }
  assert_true(gaps > 0);
  assert_int_equal(o.ended, 0);
  hub_unpublish(st);
  assert_true(run_until(&x, oc_ended, &o, 3.));
  assert_int_equal(o.why, RELAY_END_RESET);
  assert_int_equal(o.code, RELAY_ERR_UNPUBLISHED);
  down(&x);
}

/* Closing the connection ends A's push and pull with CONN_CLOSED, and B
 * unpublishes the pushed path and drops the pull's subscription. */
static void test_conn_close(void **state) {
  (void)state;
  ctx x;
  up(&x);
  hub_stream_t *a1 = publish_as(&x.a, "live/c1", HUB_ORIGIN_LOCAL, 0, 0);
  hub_stream_t *b1 = publish_as(&x.b, "live/c2", HUB_ORIGIN_LOCAL, 0, 0);
  outcome op = {0}, ol = {0};
  int err;
  assert_non_null(relay_push(x.a.r, x.a.conn, "live/c1", &oc_cb, &op, &err));
  assert_non_null(relay_pull(x.a.r, x.a.conn, "live/c2", ID_B, &oc_cb, &ol, &err));
  assert_true(run_until(&x, oc_started, &op, 4.));
  assert_true(run_until(&x, oc_started, &ol, 4.));
  hub_origin_t org;
  assert_int_equal(hub_origin_of(x.b.hub, "live/c1", &org), 0);
  assert_int_equal(hub_origin_of(x.a.hub, "live/c2", &org), 0);
  quic_conn_close(x.a.conn, 0);
  assert_true(run_until(&x, both_closed, NULL, 5.));
  assert_true(run_until(&x, oc_ended, &op, 1.));
  assert_true(run_until(&x, oc_ended, &ol, 1.));
  assert_int_equal(op.why, RELAY_END_CONN_CLOSED);
  assert_int_equal(ol.why, RELAY_END_CONN_CLOSED);
  assert_int_equal(hub_origin_of(x.b.hub, "live/c1", &org), -1);
  assert_int_equal(hub_origin_of(x.a.hub, "live/c2", &org), -1);
  run_for(&x, 0.1);
  assert_int_equal(x.b.idle, 1); /* the pull's subscription on B is gone */
  hub_unpublish(a1);
  hub_unpublish(b1);
  down(&x);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_push),
      cmocka_unit_test(test_pull),
      cmocka_unit_test(test_push_refused),
      cmocka_unit_test(test_pull_missing),
      cmocka_unit_test(test_pull_waits_then_gives_way),
      cmocka_unit_test(test_pull_ends_with_origin),
      cmocka_unit_test(test_bad_header_path),
      cmocka_unit_test(test_pull_stopped_by_reader),
      cmocka_unit_test(test_backpressure),
      cmocka_unit_test(test_conn_close),
  };
  return cmocka_run_group_tests(tests, setup_pki, teardown_pki);
}
