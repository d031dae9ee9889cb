/* Unit tests for dataplane/pullsrc.c on one libev loop: an origin hub
 * served by our own RTMP and HTTP-FLV servers on ephemeral loopback ports,
 * and a second hub that pulls from them by URL. Frames pushed at the origin
 * arrive at the puller's subscriber in order, headers first; a missing
 * upstream stream, a 404, a refused connection and a name that resolves off
 * the loop each end the pull with a reason and publish nothing; bad URLs
 * are refused up front. Waits run the loop until a condition or a deadline;
 * ASan checks the leaks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "httpflv.h"
#include "hub.h"
#include "pullsrc.h"
#include "rtmp_server.h"

static const uint8_t avc_seq[] = {
    0x17, 0x00, 0x00, 0x00, 0x00, 0x01, 0xf4, 0x00, 0x0a, 0xff, 0xe1, 0x00, 0x1a,
    0x67, 0xf4, 0x00, 0x0a, 0x91, 0x9b, 0x28, 0x50, 0x8f, 0xc4, 0xe0, 0x22, 0x00,
    0x00, 0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00, 0x28, 0x1e, 0x24, 0x4b, 0x2c,
    0x01, 0x00, 0x06, 0x68, 0xeb, 0xe3, 0xc4, 0x48, 0x44, 0xff, 0xf8, 0xf8, 0x00};
static const uint8_t aac_seq[] = {0xaf, 0x00, 0x12, 0x10};

typedef struct fx {
  struct ev_loop *loop;
  hub_t *origin, *edge;
  rtmp_server_t *rtmp;
  httpflv_t *http;
  int rtmp_port, http_port;
  hub_stream_t *pub;
  ev_timer feeder;
  uint32_t next_ts;
  /* the pull */
  pullsrc_t *ps;
  int live, ended;
  char why[256];
  /* the subscriber at the edge */
  hub_sub_t *sub;
  int n, sub_ended;
  uint8_t type[4096], key[4096], seq[4096];
  uint32_t ts[4096];
} fx_t;

static fx_t F;

static int listen_lo(int *port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  assert_int_equal(listen(fd, 64), 0);
  socklen_t al = sizeof(a);
  getsockname(fd, (struct sockaddr *)&a, &al);
  *port = ntohs(a.sin_port);
  return fd;
}

static void break_cb(struct ev_loop *l, ev_timer *w, int revents) {
  (void)w;
  (void)revents;
  ev_break(l, EVBREAK_ONE);
}

/* run_until runs the loop until |*flag| >= |want| or |secs| pass. */
static int run_until(const int *flag, int want, double secs) {
  ev_timer dl;
  ev_timer_init(&dl, break_cb, 0.02, 0.02);
  ev_timer_start(F.loop, &dl);
  ev_tstamp end = ev_time() + secs;
  while (*flag < want && ev_time() < end) ev_run(F.loop, EVRUN_ONCE);
  ev_timer_stop(F.loop, &dl);
  return *flag >= want;
}

static void feed_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)loop;
  (void)w;
  (void)revents;
  uint8_t v[600], a[40] = {0xaf, 0x01};
  memset(v, 0x5a, sizeof(v));
  int key = F.next_ts % 1000 == 0;
  v[0] = key ? 0x17 : 0x27;
  v[1] = 1;
  v[2] = v[3] = v[4] = 0;
  hub_push(F.pub, hub_frame_new(HUB_VIDEO, F.next_ts, v, sizeof(v)));
  hub_push(F.pub, hub_frame_new(HUB_AUDIO, F.next_ts, a, sizeof(a)));
  F.next_ts += 40;
}

static void start_origin(void) {
  F.pub = hub_publish(F.origin, "live/src", NULL);
  assert_non_null(F.pub);
  hub_push(F.pub, hub_frame_new(HUB_VIDEO, 0, avc_seq, sizeof(avc_seq)));
  hub_push(F.pub, hub_frame_new(HUB_AUDIO, 0, aac_seq, sizeof(aac_seq)));
  F.next_ts = 0;
  feed_cb(F.loop, &F.feeder, 0);
  ev_timer_start(F.loop, &F.feeder);
}

static void stop_origin(void) {
  ev_timer_stop(F.loop, &F.feeder);
  hub_unpublish(F.pub);
  F.pub = NULL;
}

static int setup(void **state) {
  (void)state;
  memset(&F, 0, sizeof(F));
  F.loop = ev_loop_new(EVFLAG_AUTO);
  hub_config_t hc = {.delay_close_s = 0.1, .wait_s = 0.3};
  F.origin = hub_new(F.loop, &hc);
  F.edge = hub_new(F.loop, &hc);
  int rfd = listen_lo(&F.rtmp_port), hfd = listen_lo(&F.http_port);
  rtmp_server_config_t rc = {0};
  F.rtmp = rtmp_server_new(F.loop, F.origin, rfd, &rc);
  httpflv_config_t c = {100, 2.0, NULL, NULL, 0, 0, 0};
  F.http = httpflv_new(F.loop, F.origin, hfd, &c);
  assert_non_null(F.rtmp);
  assert_non_null(F.http);
  ev_timer_init(&F.feeder, feed_cb, 0.01, 0.01);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  ev_timer_stop(F.loop, &F.feeder);
  if (F.sub) hub_unsubscribe(F.sub);
  pullsrc_stop(F.ps);
  if (F.pub) hub_unpublish(F.pub);
  rtmp_server_free(F.rtmp);
  httpflv_free(F.http);
  hub_free(F.origin);
  hub_free(F.edge);
  ev_loop_destroy(F.loop);
  return 0;
}

static void on_live(pullsrc_t *p, void *ud) {
  (void)p;
  (void)ud;
  F.live++;
}

static void on_end(pullsrc_t *p, void *ud, const char *why) {
  (void)ud;
  assert_ptr_equal(p, F.ps);
  snprintf(F.why, sizeof(F.why), "%s", why);
  F.ps = NULL;
  F.ended++;
}

static const pullsrc_callbacks_t CB = {on_live, on_end};

static void sub_frames(hub_sub_t *s, void *arg) {
  (void)arg;
  hub_frame_t *f;
  while ((f = hub_sub_next(s)) != NULL) {
    if (F.n < 4096) {
      F.type[F.n] = f->type;
      F.key[F.n] = f->keyframe;
      F.seq[F.n] = f->seq_header;
      F.ts[F.n] = f->ts;
      F.n++;
    }
    hub_frame_unref(f);
  }
}

static void sub_end(hub_sub_t *s, void *arg, int why) {
  (void)s;
  (void)arg;
  (void)why;
  F.sub = NULL;
  F.sub_ended++;
}

static const hub_sub_ops_t SUB = {sub_frames, sub_end};

static void pull_and_check(const char *url) {
  char err[256];
  start_origin();
  F.ps = pullsrc_start(F.loop, F.edge, url, "live/copy", NULL, &CB, NULL, err, sizeof(err));
  assert_non_null(F.ps);
  assert_true(run_until(&F.live, 1, 5));
  F.sub = hub_subscribe(F.edge, "live/copy", &SUB, NULL);
  assert_non_null(F.sub);
  assert_true(run_until(&F.n, 60, 5));
  assert_int_equal(F.ended, 0);
  /* headers first, then a keyframe, then timestamps never go back */
  int first_media = -1;
  for (int i = 0; i < F.n; i++) {
    if (!F.seq[i] && F.type[i] == HUB_VIDEO) {
      first_media = i;
      break;
    }
  }
  assert_true(first_media >= 1);
  assert_int_equal(F.key[first_media], 1);
  int vseq = 0;
  for (int i = 0; i < first_media; i++) vseq |= F.seq[i] && F.type[i] == HUB_VIDEO;
  assert_true(vseq);
  uint32_t last = 0;
  for (int i = first_media; i < F.n; i++) {
    if (F.type[i] != HUB_VIDEO) continue;
    assert_true(F.ts[i] >= last);
    last = F.ts[i];
  }
  assert_true(pullsrc_frames(F.ps) >= 60);
  /* the origin stops: the pull ends by itself and says why */
  stop_origin();
  assert_true(run_until(&F.ended, 1, 5));
  assert_null(F.ps);
}

static void test_rtmp_pull(void **state) {
  (void)state;
  char url[128];
  snprintf(url, sizeof(url), "rtmp://127.0.0.1:%d/live/src", F.rtmp_port);
  pull_and_check(url);
}

static void test_http_pull(void **state) {
  (void)state;
  char url[128];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/flv/live/src.flv", F.http_port);
  pull_and_check(url);
}

static void test_name_resolved_off_loop(void **state) {
  (void)state;
  char url[128], err[256];
  snprintf(url, sizeof(url), "rtmp://localhost:%d/live/src", F.rtmp_port);
  start_origin();
  F.ps = pullsrc_start(F.loop, F.edge, url, "live/copy", NULL, &CB, NULL, err, sizeof(err));
  assert_non_null(F.ps);
  /* localhost may resolve to ::1 first, where nothing listens: either it
   * goes live or it ends with a connect error, never a hang */
  ev_tstamp t0 = ev_time();
  while (!F.live && !F.ended && ev_time() - t0 < 5) run_until(&F.live, 1, 0.1);
  assert_true(F.live || (F.ended && strstr(F.why, "connect") != NULL));
  stop_origin();
}

static void expect_end(const char *url, const char *needle) {
  char err[256];
  F.ended = F.live = 0;
  F.ps = pullsrc_start(F.loop, F.edge, url, "live/copy", NULL, &CB, NULL, err, sizeof(err));
  assert_non_null(F.ps);
  assert_true(run_until(&F.ended, 1, 5));
  assert_int_equal(F.live, 0);
  if (strstr(F.why, needle) == NULL) fail_msg("ended with \"%s\", expected \"%s\"", F.why, needle);
  /* nothing was published at the edge */
  hub_stats_t st;
  hub_get_stats(F.edge, &st);
  assert_int_equal(st.publishers, 0);
}

static void test_failures(void **state) {
  (void)state;
  char url[128];
  snprintf(url, sizeof(url), "rtmp://127.0.0.1:%d/live/missing", F.rtmp_port);
  expect_end(url, "StreamNotFound");
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/flv/live/missing.flv", F.http_port);
  expect_end(url, "404");
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/nothing", F.http_port);
  expect_end(url, "404");
  /* a port where nobody listens */
  int p;
  int fd = listen_lo(&p);
  close(fd);
  snprintf(url, sizeof(url), "rtmp://127.0.0.1:%d/live/x", p);
  expect_end(url, "connect");
}

/* A raw upstream answering with a chunked body whose chunk boundaries cut
 * through the FLV header and tags, with a chunk extension. */
static int raw_fd = -1;
static ev_io raw_io;

static void put_tag(uint8_t *b, size_t *n, uint8_t type, uint32_t ts, const uint8_t *body,
                    size_t len) {
  uint8_t *h = b + *n;
  h[0] = type;
  h[1] = (uint8_t)(len >> 16);
  h[2] = (uint8_t)(len >> 8);
  h[3] = (uint8_t)len;
  h[4] = (uint8_t)(ts >> 16);
  h[5] = (uint8_t)(ts >> 8);
  h[6] = (uint8_t)ts;
  h[7] = (uint8_t)(ts >> 24);
  h[8] = h[9] = h[10] = 0;
  memcpy(h + 11, body, len);
  uint32_t ps = (uint32_t)(11 + len);
  h[11 + len] = (uint8_t)(ps >> 24);
  h[12 + len] = (uint8_t)(ps >> 16);
  h[13 + len] = (uint8_t)(ps >> 8);
  h[14 + len] = (uint8_t)ps;
  *n += 15 + len;
}

static void raw_accept(struct ev_loop *loop, ev_io *w, int revents) {
  (void)revents;
  int c = accept(w->fd, NULL, NULL);
  ev_io_stop(loop, w);
  assert_true(c >= 0);
  char req[2048];
  ssize_t r = recv(c, req, sizeof(req), 0);
  assert_true(r > 0);
  static uint8_t flv[16384];
  size_t n = 0;
  static const uint8_t hdr[13] = {'F', 'L', 'V', 1, 5, 0, 0, 0, 9, 0, 0, 0, 0};
  memcpy(flv, hdr, 13);
  n = 13;
  put_tag(flv, &n, 9, 0, avc_seq, sizeof(avc_seq));
  uint8_t v[300];
  memset(v, 0x11, sizeof(v));
  for (int i = 0; i < 20; i++) {
    v[0] = i % 10 == 0 ? 0x17 : 0x27;
    v[1] = 1;
    v[2] = v[3] = v[4] = 0;
    put_tag(flv, &n, 9, (uint32_t)(i * 40), v, sizeof(v));
  }
  char out[32768];
  size_t o = (size_t)snprintf(out, sizeof(out),
                              "HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\n"
                              "Transfer-Encoding: chunked\r\n\r\n");
  size_t off = 0, step = 7;
  while (off < n) {
    size_t k = n - off < step ? n - off : step;
    o += (size_t)snprintf(out + o, sizeof(out) - o, "%zx;ext=1\r\n", k);
    memcpy(out + o, flv + off, k);
    o += k;
    memcpy(out + o, "\r\n", 2);
    o += 2;
    off += k;
    step = step * 3 % 997 + 1;
  }
  memcpy(out + o, "0\r\n\r\n", 5);
  o += 5;
  assert_int_equal(send(c, out, o, MSG_NOSIGNAL), (ssize_t)o);
  close(c);
}

static void test_http_chunked(void **state) {
  (void)state;
  int port;
  raw_fd = listen_lo(&port);
  ev_io_init(&raw_io, raw_accept, raw_fd, EV_READ);
  ev_io_start(F.loop, &raw_io);
  char url[128], err[256];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/live/x.flv", port);
  F.ps = pullsrc_start(F.loop, F.edge, url, "live/copy", NULL, &CB, NULL, err, sizeof(err));
  assert_non_null(F.ps);
  F.sub = hub_subscribe(F.edge, "live/copy", &SUB, NULL);
  assert_true(run_until(&F.ended, 1, 5));
  assert_int_equal(F.live, 1);
  if (strstr(F.why, "ended the body") == NULL) fail_msg("ended with \"%s\"", F.why);
  assert_int_equal(F.n, 21); /* the sequence header and 20 frames, in order */
  for (int i = 1; i < 21; i++) assert_int_equal(F.ts[i], (uint32_t)((i - 1) * 40));
  ev_io_stop(F.loop, &raw_io);
  close(raw_fd);
}

/* raw_silent_accept answers 200 and the FLV header, then sends nothing
 * (as nginx-rtmp answers Play.Start for a stream nobody publishes). */
static int raw_client = -1;

static void raw_silent_accept(struct ev_loop *loop, ev_io *w, int revents) {
  (void)revents;
  raw_client = accept(w->fd, NULL, NULL);
  ev_io_stop(loop, w);
  assert_true(raw_client >= 0);
  char req[2048];
  assert_true(recv(raw_client, req, sizeof(req), 0) > 0);
  static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\n\r\n"
                             "FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00";
  size_t n = sizeof(head) - 1;
  assert_int_equal(send(raw_client, head, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* A pull is no stream until media comes, and gives way to a publisher
 * here: an upstream that accepts and sends nothing publishes nothing (the
 * path stays free); a publisher on the edge takes the path over from a
 * live pull, which ends saying so. */
static void test_pull_gives_way(void **state) {
  (void)state;
  int port, never = 0;
  char url[128], err[256];
  raw_fd = listen_lo(&port);
  ev_io_init(&raw_io, raw_silent_accept, raw_fd, EV_READ);
  ev_io_start(F.loop, &raw_io);
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/live/x.flv", port);
  F.ps = pullsrc_start(F.loop, F.edge, url, "live/copy", NULL, &CB, NULL, err, sizeof(err));
  assert_non_null(F.ps);
  assert_false(run_until(&never, 1, 0.4));
  assert_true(raw_client >= 0); /* answered */
  hub_origin_t o;
  assert_int_equal(hub_origin_of(F.edge, "live/copy", &o), -1);
  assert_int_equal(hub_publish_check(F.edge, "live/copy"), 0);
  assert_int_equal(F.live, 0);
  assert_int_equal(F.ended, 0);
  pullsrc_stop(F.ps);
  F.ps = NULL;
  close(raw_client);
  raw_client = -1;
  close(raw_fd);

  start_origin();
  snprintf(url, sizeof(url), "rtmp://127.0.0.1:%d/live/src", F.rtmp_port);
  F.ps = pullsrc_start(F.loop, F.edge, url, "live/copy", NULL, &CB, NULL, err, sizeof(err));
  assert_non_null(F.ps);
  assert_true(run_until(&F.live, 1, 5));
  assert_int_equal(hub_origin_of(F.edge, "live/copy", &o), 0);
  assert_int_equal(o.kind, HUB_ORIGIN_PULLED);
  int e = 0;
  hub_stream_t *loc = hub_publish(F.edge, "live/copy", &e);
  assert_non_null(loc);
  assert_int_equal(hub_origin_of(F.edge, "live/copy", &o), 0);
  assert_int_equal(o.kind, HUB_ORIGIN_LOCAL);
  assert_true(run_until(&F.ended, 1, 5));
  if (strstr(F.why, "took the path over") == NULL) fail_msg("ended with \"%s\"", F.why);
  assert_int_equal(hub_origin_of(F.edge, "live/copy", &o), 0); /* still the local one */
  hub_unpublish(loc);
}

static void test_bad_urls(void **state) {
  (void)state;
  const char *bad[] = {"", "ftp://h/a/b", "rtmp://", "rtmp://host", "rtmp://host/app",
                       "rtmp://host/app/", "rtmp:///app/name", "rtmp://h:0/a/b",
                       "rtmp://h:65536/a/b", "rtmp://h:x/a/b", "http://h:/x", "http://[::1/x",
                       "http://u:p@h/x", "http://h/a b", "http://h/a\r\nX: y", "http://h"};
  char err[256];
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    if (pullsrc_url_check(bad[i], err, sizeof(err)) == 0) fail_msg("accepted \"%s\"", bad[i]);
    assert_null(pullsrc_start(F.loop, F.edge, bad[i], "live/x", NULL, &CB, NULL, err,
                              sizeof(err)));
  }
  const char *good[] = {"rtmp://h/a/b", "rtmp://10.0.0.1:1936/live/cam?token=x",
                        "http://[::1]:8080/flv/live/a.flv", "HTTP://h/x.flv"};
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
    if (pullsrc_url_check(good[i], err, sizeof(err)) != 0)
      fail_msg("refused \"%s\": %s", good[i], err);
  /* a bad local path */
  assert_null(pullsrc_start(F.loop, F.edge, "rtmp://h/a/b", "nopath", NULL, &CB, NULL, err,
                            sizeof(err)));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_rtmp_pull, setup, teardown),
      cmocka_unit_test_setup_teardown(test_http_pull, setup, teardown),
      cmocka_unit_test_setup_teardown(test_name_resolved_off_loop, setup, teardown),
      cmocka_unit_test_setup_teardown(test_failures, setup, teardown),
      cmocka_unit_test_setup_teardown(test_http_chunked, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pull_gives_way, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_urls, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
