/* Tests of the RTMP server over real loopback TCP: the server and the hub
 * run on a libev loop in a thread; the test is an RTMP client built from
 * rtmp_proto (client handshake, chunk writer and reader). Publish then
 * play, a second publisher refused, a missing stream, and bad input that
 * must close only the offending connection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "amf.h"
#include "hub.h"
#include "rtmp_proto.h"
#include "rtmp_server.h"

/* ------------------------------------------------------------ server fixture */

typedef struct {
  struct ev_loop *loop;
  hub_t *hub;
  rtmp_server_t *srv;
  ev_async stop;
  pthread_t th;
  int port;
  rtmp_server_stats_t final;
} fx_t;

static void stop_cb(struct ev_loop *loop, ev_async *w, int revents) {
  (void)w;
  (void)revents;
  ev_break(loop, EVBREAK_ALL);
}

static void *loop_main(void *arg) {
  fx_t *f = arg;
  ev_run(f->loop, 0);
  return NULL;
}

static const dp_admit_ops *fx_admit; /* set on the next fx_start's server */
static void *fx_admit_ud;

static fx_t *fx_start(const rtmp_server_config_t *cfg, double wait_s) {
  fx_t *f = calloc(1, sizeof(*f));
  f->loop = ev_loop_new(EVFLAG_AUTO);
  hub_config_t hc = {0};
  hc.delay_close_s = 0.2;
  hc.wait_s = wait_s;
  hc.queue_bytes = 4 << 20;
  hc.queue_s = 10;
  hc.slow_s = 10;
  f->hub = hub_new(f->loop, &hc);
  assert_non_null(f->hub);
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
  f->port = ntohs(a.sin_port);
  f->srv = rtmp_server_new(f->loop, f->hub, fd, cfg);
  assert_non_null(f->srv);
  if (fx_admit) rtmp_server_set_admit(f->srv, fx_admit, fx_admit_ud);
  ev_async_init(&f->stop, stop_cb);
  ev_async_start(f->loop, &f->stop);
  pthread_create(&f->th, NULL, loop_main, f);
  return f;
}

static void fx_stop(fx_t *f) {
  ev_async_send(f->loop, &f->stop);
  pthread_join(f->th, NULL);
  /* The loop is ours now: let the server see the clients' closes (2 s at
   * most), so the final figures have every connection gone. */
  struct timeval t0, t;
  gettimeofday(&t0, NULL);
  for (;;) {
    ev_run(f->loop, EVRUN_NOWAIT);
    rtmp_server_get_stats(f->srv, &f->final);
    gettimeofday(&t, NULL);
    if (f->final.active == 0 || (t.tv_sec - t0.tv_sec) * 1000000 + (t.tv_usec - t0.tv_usec) > 2000000) break;
    usleep(5000);
  }
  rtmp_server_free(f->srv);
  hub_free(f->hub);
  ev_loop_destroy(f->loop);
}

/* ------------------------------------------------------------ client */

typedef struct {
  rtmp_msg_t m;
  uint8_t *data;
} cmsg_t;

typedef struct {
  int fd;
  rtmp_reader_t rd;
  rtmp_writer_t wr;
  cmsg_t q[256];
  int qh, qt;
} cli_t;

static int cli_collect(void *arg, const rtmp_msg_t *m) {
  cli_t *c = arg;
  if (c->qt - c->qh >= 256) return -1;
  cmsg_t *e = &c->q[c->qt++ % 256];
  e->m = *m;
  e->data = malloc(m->len + 1);
  memcpy(e->data, m->data, m->len);
  e->m.data = e->data;
  return 0;
}

static int tcp_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons((uint16_t)port);
  assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  struct timeval tv = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

static void send_all(int fd, const void *p, size_t n) {
  const uint8_t *b = p;
  while (n > 0) {
    ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
    if (w <= 0) return;   /* the server may have closed: the test checks that */
    b += w;
    n -= (size_t)w;
  }
}

static cli_t *cli_open(int port) {
  cli_t *c = calloc(1, sizeof(*c));
  c->fd = tcp_connect(port);
  rtmp_reader_init(&c->rd, 0, 16 << 20);
  rtmp_writer_init(&c->wr);
  rtmp_hs_t *hs = malloc(sizeof(*hs));
  rtmp_hs_init(hs, RTMP_HS_CLIENT, 0);
  size_t n;
  const uint8_t *o = rtmp_hs_output(hs, &n);
  send_all(c->fd, o, n);
  rtmp_hs_sent(hs, n);
  uint8_t buf[4096];
  while (!rtmp_hs_done(hs)) {
    ssize_t r = recv(c->fd, buf, sizeof(buf), 0);
    assert_true(r > 0);
    ssize_t used = rtmp_hs_feed(hs, buf, (size_t)r);
    assert_true(used >= 0);
    if (rtmp_hs_done(hs)) {
      o = rtmp_hs_output(hs, &n);
      send_all(c->fd, o, n);
      assert_int_equal(rtmp_reader_feed(&c->rd, buf + used, (size_t)(r - used), cli_collect, c), 0);
    }
  }
  free(hs);
  return c;
}

static void cli_close(cli_t *c) {
  while (c->qh < c->qt) free(c->q[c->qh++ % 256].data);
  close(c->fd);
  rtmp_reader_free(&c->rd);
  free(c);
}

/* cli_next returns the next message (caller frees .data) or 0 on EOF/timeout. */
static int cli_next(cli_t *c, cmsg_t *out) {
  uint8_t buf[65536];
  while (c->qh == c->qt) {
    ssize_t r = recv(c->fd, buf, sizeof(buf), 0);
    if (r <= 0) return 0;
    if (rtmp_reader_feed(&c->rd, buf, (size_t)r, cli_collect, c) != 0) return 0;
  }
  *out = c->q[c->qh++ % 256];
  return 1;
}

/* cli_eof tells whether the server closed the connection (within 5 s). */
static int cli_eof(cli_t *c) {
  cmsg_t m;
  while (cli_next(c, &m)) free(m.data);
  uint8_t b;
  ssize_t r = recv(c->fd, &b, 1, 0);
  return r == 0 || (r < 0 && errno == ECONNRESET);
}

static void cli_send(cli_t *c, uint32_t csid, uint8_t type, uint32_t sid, uint32_t ts, const void *p,
                     size_t n) {
  amf_buf_t b;
  amf_buf_init(&b);
  assert_int_equal(rtmp_writer_put(&c->wr, &b, csid, type, sid, ts, p, n), 0);
  send_all(c->fd, b.data, b.len);
  amf_buf_free(&b);
}

static void cli_cmd(cli_t *c, uint32_t sid, const amf_buf_t *a) {
  cli_send(c, 3, RTMP_MSG_COMMAND_AMF0, sid, 0, a->data, a->len);
}

/* cli_wait_cmd reads until a command |name| arrives; returns its decoded
 * arguments (caller frees) or NULL on EOF. */
static amf_value_t *cli_wait_cmd(cli_t *c, const char *name) {
  cmsg_t m;
  while (cli_next(c, &m)) {
    amf_value_t *v = NULL;
    if (m.m.type == RTMP_MSG_COMMAND_AMF0 && amf_decode_list(m.data, m.m.len, NULL, &v) == 0) {
      const char *n = amf_str(amf_at(v, 0));
      if (n && strcmp(n, name) == 0) {
        free(m.data);
        return v;
      }
    }
    amf_free(v);
    free(m.data);
  }
  return NULL;
}

static const char *status_code(const amf_value_t *v) { return amf_str(amf_get(amf_at(v, 3), "code")); }

static void do_connect(cli_t *c, const char *app) {
  amf_buf_t a;
  amf_buf_init(&a);
  amf_put_string(&a, "connect");
  amf_put_number(&a, 1);
  amf_put_object_start(&a);
  amf_put_prop_string(&a, "app", app);
  amf_put_prop_string(&a, "tcUrl", "rtmp://127.0.0.1/live");
  amf_put_object_end(&a);
  cli_cmd(c, 0, &a);
  amf_buf_free(&a);
  amf_value_t *r = cli_wait_cmd(c, "_result");
  assert_non_null(r);
  assert_string_equal(status_code(r), "NetConnection.Connect.Success");
  assert_string_equal(amf_str(amf_get(amf_at(r, 2), "fmsVer")), "FMS/3,0,1,123");
  amf_free(r);
  /* Window Ack Size and Set Chunk Size came before the result. */
  assert_int_equal(c->rd.window, 2500000);
  assert_int_equal(c->rd.chunk_size, 4096);
}

static uint32_t do_create_stream(cli_t *c) {
  amf_buf_t a;
  amf_buf_init(&a);
  amf_put_string(&a, "createStream");
  amf_put_number(&a, 2);
  amf_put_null(&a);
  cli_cmd(c, 0, &a);
  amf_buf_free(&a);
  amf_value_t *r = cli_wait_cmd(c, "_result");
  assert_non_null(r);
  double sid = 0;
  assert_int_equal(amf_num(amf_at(r, 3), &sid), 0);
  assert_true(sid >= 1);
  amf_free(r);
  return (uint32_t)sid;
}

/* do_stream_cmd sends publish/play and returns the onStatus code (static). */
static char *do_stream_cmd(cli_t *c, const char *cmd, uint32_t sid, const char *name) {
  amf_buf_t a;
  amf_buf_init(&a);
  amf_put_string(&a, cmd);
  amf_put_number(&a, 0);
  amf_put_null(&a);
  amf_put_string(&a, name);
  if (strcmp(cmd, "publish") == 0) amf_put_string(&a, "live");
  cli_cmd(c, sid, &a);
  amf_buf_free(&a);
  static char code[128];
  code[0] = 0;
  for (;;) {
    amf_value_t *r = cli_wait_cmd(c, "onStatus");
    if (r == NULL) return code;
    const char *s = status_code(r);
    snprintf(code, sizeof(code), "%s", s ? s : "");
    amf_free(r);
    /* Play.Reset precedes Play.Start. */
    if (strcmp(code, "NetStream.Play.Reset") != 0) return code;
  }
}

/* ------------------------------------------------------------ media */

static const uint8_t avc_seq[] = {0x17, 0x00, 0, 0, 0, 0x01, 0x42, 0xc0, 0x1e, 0xff, 0xe1, 0x00, 0x00, 0x01, 0x00, 0x00};
static const uint8_t aac_seq[] = {0xaf, 0x00, 0x12, 0x10};

static uint8_t *make_frame(int key, size_t len, uint8_t seed) {
  uint8_t *p = malloc(len);
  p[0] = key ? 0x17 : 0x27;
  p[1] = 1;
  p[2] = p[3] = p[4] = 0;
  for (size_t i = 5; i < len; i++) p[i] = (uint8_t)(i * 7 + seed);
  return p;
}

static void send_metadata(cli_t *c, uint32_t sid) {
  amf_buf_t a;
  amf_buf_init(&a);
  amf_put_string(&a, "@setDataFrame");
  amf_put_string(&a, "onMetaData");
  amf_put_ecma_start(&a, 2);
  amf_put_prop_number(&a, "width", 320);
  amf_put_prop_number(&a, "height", 240);
  amf_put_object_end(&a);
  cli_send(c, 5, RTMP_MSG_DATA_AMF0, sid, 0, a.data, a.len);
  amf_buf_free(&a);
}

/* next_media skips control/command messages and returns the next media or data message. */
static int next_media(cli_t *c, cmsg_t *m) {
  while (cli_next(c, m)) {
    if (m->m.type == RTMP_MSG_AUDIO || m->m.type == RTMP_MSG_VIDEO) return 1;
    if (m->m.type == RTMP_MSG_DATA_AMF0) {
      amf_value_t *v = NULL;
      int skip = amf_decode_list(m->data, m->m.len, NULL, &v) == 0 &&
                 amf_str(amf_at(v, 0)) && strcmp(amf_str(amf_at(v, 0)), "|RtmpSampleAccess") == 0;
      amf_free(v);
      if (!skip) return 1;
    }
    free(m->data);
  }
  return 0;
}

static void test_publish_then_play(void **state) {
  (void)state;
  fx_t *f = fx_start(NULL, 2.0);
  cli_t *pub = cli_open(f->port);
  do_connect(pub, "live");
  uint32_t psid = do_create_stream(pub);
  assert_string_equal(do_stream_cmd(pub, "publish", psid, "cam1?token=abc"), "NetStream.Publish.Start");
  send_metadata(pub, psid);
  cli_send(pub, 6, RTMP_MSG_VIDEO, psid, 0, avc_seq, sizeof(avc_seq));
  cli_send(pub, 4, RTMP_MSG_AUDIO, psid, 0, aac_seq, sizeof(aac_seq));
  uint8_t *k = make_frame(1, 20000, 1);   /* several 4096-byte chunks toward the player */
  /* the stream has run a while: the cached headers are older than the GOP */
  cli_send(pub, 6, RTMP_MSG_VIDEO, psid, 26340, k, 20000);

  cli_t *pl = cli_open(f->port);
  do_connect(pl, "live/");
  uint32_t lsid = do_create_stream(pl);
  assert_string_equal(do_stream_cmd(pl, "play", lsid, "cam1"), "NetStream.Play.Start");
  /* The cached start: metadata (without @setDataFrame), sequence headers,
   * keyframe, all at 0 on the player's own timeline. */
  cmsg_t m;
  int saw_meta = 0, saw_vseq = 0, saw_aseq = 0, saw_key = 0;
  for (int i = 0; i < 4; i++) {
    assert_true(next_media(pl, &m));
    assert_int_equal(m.m.stream_id, lsid);
    assert_int_equal(m.m.ts, 0);
    if (m.m.type == RTMP_MSG_DATA_AMF0) {
      amf_value_t *v = NULL;
      assert_int_equal(amf_decode_list(m.data, m.m.len, NULL, &v), 0);
      assert_string_equal(amf_str(amf_at(v, 0)), "onMetaData");
      amf_free(v);
      saw_meta = 1;
    } else if (m.m.type == RTMP_MSG_VIDEO && m.m.len == sizeof(avc_seq)) {
      assert_memory_equal(m.data, avc_seq, sizeof(avc_seq));
      saw_vseq = 1;
    } else if (m.m.type == RTMP_MSG_AUDIO) {
      assert_memory_equal(m.data, aac_seq, sizeof(aac_seq));
      saw_aseq = 1;
    } else {
      assert_int_equal(m.m.len, 20000);
      assert_memory_equal(m.data, k, 20000);
      saw_key = 1;
    }
    free(m.data);
  }
  assert_true(saw_meta && saw_vseq && saw_aseq && saw_key);
  /* Live frames after the player joined, in order, byte for byte, their
   * steps kept. */
  for (int i = 1; i <= 5; i++) {
    uint8_t *p = make_frame(0, 3000 + (size_t)i * 1000, (uint8_t)i);
    cli_send(pub, 6, RTMP_MSG_VIDEO, psid, 26340 + (uint32_t)i * 40, p, 3000 + (size_t)i * 1000);
    uint8_t a[7] = {0xaf, 0x01, (uint8_t)i, 2, 3, 4, 5};
    cli_send(pub, 4, RTMP_MSG_AUDIO, psid, 26330 + (uint32_t)i * 40, a, sizeof(a));
    assert_true(next_media(pl, &m));
    assert_int_equal(m.m.type, RTMP_MSG_VIDEO);
    assert_int_equal(m.m.len, 3000 + (size_t)i * 1000);
    assert_memory_equal(m.data, p, m.m.len);
    assert_int_equal(m.m.ts, (uint32_t)i * 40);
    free(m.data);
    assert_true(next_media(pl, &m));
    assert_int_equal(m.m.type, RTMP_MSG_AUDIO);
    assert_memory_equal(m.data, a, sizeof(a));
    assert_int_equal(m.m.ts, (uint32_t)i * 40 - 10);
    free(m.data);
    free(p);
  }
  free(k);

  /* A second publisher on the same path: BadName. */
  cli_t *pub2 = cli_open(f->port);
  do_connect(pub2, "live");
  uint32_t s2 = do_create_stream(pub2);
  assert_string_equal(do_stream_cmd(pub2, "publish", s2, "cam1"), "NetStream.Publish.BadName");
  assert_true(cli_eof(pub2));
  cli_close(pub2);

  /* The publisher leaves: after delayclosetimeout the player is told and closed. */
  cli_close(pub);
  amf_value_t *r = cli_wait_cmd(pl, "onStatus");
  assert_non_null(r);
  assert_string_equal(status_code(r), "NetStream.Play.UnpublishNotify");
  amf_free(r);
  assert_true(cli_eof(pl));
  cli_close(pl);
  fx_stop(f);
  assert_int_equal(f->final.active, 0);
  assert_int_equal(f->final.publishers, 0);
  assert_int_equal(f->final.players, 0);
  assert_true(f->final.frames_in >= 14);
  assert_true(f->final.frames_out >= 14);
  free(f);
}

static void test_play_missing_stream(void **state) {
  (void)state;
  fx_t *f = fx_start(NULL, 0.3);
  cli_t *pl = cli_open(f->port);
  do_connect(pl, "live");
  uint32_t sid = do_create_stream(pl);
  assert_string_equal(do_stream_cmd(pl, "play", sid, "nobody"), "NetStream.Play.StreamNotFound");
  assert_true(cli_eof(pl));
  cli_close(pl);
  fx_stop(f);
  assert_int_equal(f->final.active, 0);
  free(f);
}

/* expect_closed: after |bytes| (sent after the handshake when |hs|), the
 * server closes the connection. */
static void expect_closed(fx_t *f, int hs, const void *bytes, size_t n) {
  cli_t *c;
  if (hs) {
    c = cli_open(f->port);
  } else {
    c = calloc(1, sizeof(*c));
    c->fd = tcp_connect(f->port);
    rtmp_reader_init(&c->rd, 0, 0);
  }
  send_all(c->fd, bytes, n);
  assert_true(cli_eof(c));
  cli_close(c);
}

static void test_bad_input_closes_only_that_connection(void **state) {
  (void)state;
  fx_t *f = fx_start(NULL, 1.0);
  /* A healthy publisher stays up through all of it. */
  cli_t *pub = cli_open(f->port);
  do_connect(pub, "live");
  uint32_t psid = do_create_stream(pub);
  assert_string_equal(do_stream_cmd(pub, "publish", psid, "steady"), "NetStream.Publish.Start");

  /* Not RTMP at all. */
  expect_closed(f, 0, "GET / HTTP/1.1\r\n\r\n", 18);
  /* Truncated handshake, then EOF from our side: shutdown write. */
  {
    int fd = tcp_connect(f->port);
    uint8_t part[700] = {3};
    send_all(fd, part, sizeof(part));
    shutdown(fd, SHUT_WR);
    uint8_t b[16];
    assert_true(recv(fd, b, sizeof(b), 0) <= 0);
    close(fd);
  }
  /* Set Chunk Size 0 and 2^24. */
  static const uint8_t scs0[] = {0x02, 0, 0, 0, 0, 0, 4, 0x01, 0, 0, 0, 0, 0, 0, 0, 0};
  expect_closed(f, 1, scs0, sizeof(scs0));
  static const uint8_t scsbig[] = {0x02, 0, 0, 0, 0, 0, 4, 0x01, 0, 0, 0, 0, 0x01, 0, 0, 0};
  expect_closed(f, 1, scsbig, sizeof(scsbig));
  /* A data message header claiming 16 MiB - 1 (the largest a header can say). */
  static const uint8_t bigdata[] = {0x05, 0, 0, 0, 0xff, 0xff, 0xff, 0x12, 1, 0, 0, 0};
  expect_closed(f, 1, bigdata, sizeof(bigdata));
  /* publish without connect. */
  {
    amf_buf_t a;
    amf_buf_init(&a);
    amf_put_string(&a, "publish");
    amf_put_number(&a, 0);
    amf_put_null(&a);
    amf_put_string(&a, "x");
    rtmp_writer_t w;
    rtmp_writer_init(&w);
    amf_buf_t out;
    amf_buf_init(&out);
    rtmp_writer_put(&w, &out, 3, RTMP_MSG_COMMAND_AMF0, 1, 0, a.data, a.len);
    expect_closed(f, 1, out.data, out.len);
    amf_buf_free(&a);
    amf_buf_free(&out);
  }
  /* AMF nested 40 deep. */
  {
    amf_buf_t a;
    amf_buf_init(&a);
    amf_put_string(&a, "connect");
    amf_put_number(&a, 1);
    for (int i = 0; i < 40; i++) {
      amf_put_object_start(&a);
      amf_put_key(&a, "a");
    }
    amf_put_null(&a);
    for (int i = 0; i < 40; i++) amf_put_object_end(&a);
    rtmp_writer_t w;
    rtmp_writer_init(&w);
    amf_buf_t out;
    amf_buf_init(&out);
    rtmp_writer_put(&w, &out, 3, RTMP_MSG_COMMAND_AMF0, 0, 0, a.data, a.len);
    expect_closed(f, 1, out.data, out.len);
    amf_buf_free(&a);
    amf_buf_free(&out);
  }
  /* Media without publish. */
  {
    cli_t *c = cli_open(f->port);
    do_connect(c, "live");
    cli_send(c, 6, RTMP_MSG_VIDEO, 1, 0, avc_seq, sizeof(avc_seq));
    assert_true(cli_eof(c));
    cli_close(c);
  }
  /* An unknown message type is counted and ignored: the connection lives. */
  {
    cli_t *c = cli_open(f->port);
    uint8_t x[3] = {1, 2, 3};
    cli_send(c, 7, 0x30, 0, 0, x, sizeof(x));
    do_connect(c, "live");
    cli_close(c);
  }
  /* The healthy publisher still works. */
  cli_send(pub, 6, RTMP_MSG_VIDEO, psid, 0, avc_seq, sizeof(avc_seq));
  amf_buf_t a;
  amf_buf_init(&a);
  amf_put_string(&a, "createStream");
  amf_put_number(&a, 9);
  amf_put_null(&a);
  cli_cmd(pub, 0, &a);
  amf_buf_free(&a);
  amf_value_t *r = cli_wait_cmd(pub, "_result");
  assert_non_null(r);
  amf_free(r);
  cli_close(pub);
  fx_stop(f);
  assert_true(f->final.protocol_errors >= 7);
  assert_true(f->final.unknown_msgs >= 1);
  assert_int_equal(f->final.active, 0);
  free(f);
}

static void test_limits_and_timeouts(void **state) {
  (void)state;
  rtmp_server_config_t cfg = {0};
  cfg.max_conns = 2;
  cfg.handshake_timeout = 0.3;
  cfg.idle_timeout = 0.5;
  fx_t *f = fx_start(&cfg, 1.0);
  cli_t *a = cli_open(f->port);
  int fd = tcp_connect(f->port);   /* second: silent, times out in the handshake */
  /* Third: over the limit, closed at once (the others are still open). */
  int fd3 = tcp_connect(f->port);
  uint8_t b[16];
  ssize_t r = recv(fd3, b, sizeof(b), 0);
  assert_true(r <= 0);
  close(fd3);
  r = recv(fd, b, sizeof(b), 0);
  assert_true(r <= 0);   /* handshake timeout */
  close(fd);
  /* The first, handshaken but silent, reaches the idle timeout. */
  assert_true(cli_eof(a));
  cli_close(a);
  fx_stop(f);
  assert_true(f->final.refused >= 1);
  assert_int_equal(f->final.timeouts, 2);
  free(f);
}

/* ------------------------------------------------------------ memory limits */

/* wire_msg is a whole message in chunks as |c|'s writer lays it out (the
 * caller sends it, or a part of it). */
static amf_buf_t wire_msg(cli_t *c, uint32_t csid, uint8_t type, uint32_t sid, uint32_t ts, size_t len) {
  uint8_t *body = make_frame(0, len, 3);
  amf_buf_t b;
  amf_buf_init(&b);
  b.max = 64 << 20;
  assert_int_equal(rtmp_writer_put(&c->wr, &b, csid, type, sid, ts, body, len), 0);
  free(body);
  return b;
}

/* partial sends all of a |len|-byte message on a 1-byte chunk stream id
 * but its last chunk (128 bytes at most: the server's incoming chunk
 * size); finish sends that chunk. Streams interleave at chunk boundaries,
 * so other messages may go between. */
typedef struct {
  amf_buf_t b;
  size_t tail;
} part_t;

static part_t partial(cli_t *c, uint32_t csid, uint8_t type, uint32_t sid, size_t len) {
  part_t p = {wire_msg(c, csid, type, sid, 0, len), 1 + (len % 128 ? len % 128 : 128)};
  send_all(c->fd, p.b.data, p.b.len - p.tail);
  return p;
}

static void finish(cli_t *c, part_t *p) {
  send_all(c->fd, p->b.data + p->b.len - p->tail, p->tail);
  amf_buf_free(&p->b);
}

static void part_free(part_t *p) { amf_buf_free(&p->b); }

/* alive: the server still answers (a createStream round trip). */
static void alive(cli_t *c) { (void)do_create_stream(c); }

static cli_t *publisher(fx_t *f, const char *name, uint32_t *sid) {
  cli_t *c = cli_open(f->port);
  do_connect(c, "live");
  *sid = do_create_stream(c);
  assert_string_equal(do_stream_cmd(c, "publish", *sid, name), "NetStream.Publish.Start");
  return c;
}

/* Until a publish is accepted a connection may hold max_pending bytes of
 * partial messages over all its chunk streams: before connect, after
 * connect, as a player and after unpublishing; every message type, chunk
 * stream ids of each width. A publisher may send large frames. */
static void test_pending_bound(void **state) {
  (void)state;
  rtmp_server_config_t cfg = {0};
  cfg.max_pending = 16384;
  fx_t *f = fx_start(&cfg, 5.0);
  unsigned closes = 0;
  /* Before connect: one large message of each kind, counted from its start. */
  static const uint8_t types[] = {RTMP_MSG_VIDEO, RTMP_MSG_AUDIO, RTMP_MSG_COMMAND_AMF0,
                                  RTMP_MSG_DATA_AMF0, RTMP_MSG_COMMAND_AMF3, RTMP_MSG_DATA_AMF3};
  for (size_t i = 0; i < sizeof(types); i++) {
    cli_t *c = cli_open(f->port);
    size_t len = types[i] == RTMP_MSG_VIDEO || types[i] == RTMP_MSG_AUDIO ? 0xffffff : 1000000;
    part_t b = partial(c, 6, types[i], 0, len);
    part_free(&b);
    assert_true(cli_eof(c));
    cli_close(c);
    closes++;
  }
  /* Before connect: messages each under the bound on interleaved chunk
   * streams (1-, 2- and 3-byte ids), over it together. */
  {
    cli_t *c = cli_open(f->port);
    static const uint32_t ids[] = {3, 63, 64, 200, 319, 320, 5000, 65599};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
      amf_buf_t b = wire_msg(c, ids[i], RTMP_MSG_COMMAND_AMF0, 0, 0, 6000);
      /* 21 whole chunks of 128 bytes: streams interleave at chunk boundaries */
      size_t bw = ids[i] < 64 ? 1 : ids[i] < 320 ? 2 : 3;
      send_all(c->fd, b.data, (bw + 11 + 128) + 20 * (bw + 128));
      amf_buf_free(&b);
    }
    assert_true(cli_eof(c));
    cli_close(c);
    closes++;
  }
  /* A connect command under the bound is fine; after connect, a large
   * message is not. */
  {
    cli_t *c = cli_open(f->port);
    amf_buf_t a;
    amf_buf_init(&a);
    amf_put_string(&a, "connect");
    amf_put_number(&a, 1);
    amf_put_object_start(&a);
    amf_put_prop_string(&a, "app", "live");
    char pad[10000];
    memset(pad, 'x', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = 0;
    amf_put_prop_string(&a, "pageUrl", pad);
    amf_put_object_end(&a);
    cli_cmd(c, 0, &a);
    amf_buf_free(&a);
    amf_value_t *r = cli_wait_cmd(c, "_result");
    assert_non_null(r);
    amf_free(r);
    part_t b = partial(c, 6, RTMP_MSG_AUDIO, 1, 100000);
    part_free(&b);
    assert_true(cli_eof(c));
    cli_close(c);
    closes++;
  }
  /* A player has no reason to send large messages either. */
  {
    cli_t *c = cli_open(f->port);
    do_connect(c, "live");
    uint32_t sid = do_create_stream(c);
    amf_buf_t a;
    amf_buf_init(&a);
    amf_put_string(&a, "play");
    amf_put_number(&a, 0);
    amf_put_null(&a);
    amf_put_string(&a, "nobody-yet");
    cli_cmd(c, sid, &a);
    amf_buf_free(&a);
    part_t b = partial(c, 5, RTMP_MSG_DATA_AMF0, sid, 20000);
    part_free(&b);
    assert_true(cli_eof(c));
    cli_close(c);
    closes++;
  }
  /* A publisher: 200 KiB keyframes pass; after FCUnpublish the bound is back. */
  {
    uint32_t sid;
    cli_t *c = publisher(f, "big", &sid);
    for (int i = 0; i < 3; i++) {
      amf_buf_t b = wire_msg(c, 6, RTMP_MSG_VIDEO, sid, (uint32_t)i * 40, 200 << 10);
      send_all(c->fd, b.data, b.len);
      amf_buf_free(&b);
    }
    alive(c);
    amf_buf_t a;
    amf_buf_init(&a);
    amf_put_string(&a, "FCUnpublish");
    amf_put_number(&a, 5);
    amf_put_null(&a);
    amf_put_string(&a, "big");
    cli_cmd(c, 0, &a);
    amf_buf_free(&a);
    alive(c);
    part_t b = partial(c, 6, RTMP_MSG_VIDEO, sid, 100000);
    part_free(&b);
    assert_true(cli_eof(c));
    cli_close(c);
    closes++;
  }
  fx_stop(f);
  assert_int_equal(f->final.pending_closes, closes);
  assert_int_equal(f->final.budget_closes, 0);
  assert_int_equal(f->final.active, 0);
  assert_int_equal(f->final.ingest_held, 0);
  assert_true(f->final.frames_in >= 3);
  free(f);
}

/* Publishers share the ingest budget: the one whose message would pass it
 * is closed, the others go on; what completes or leaves comes back. */
static void test_ingest_budget(void **state) {
  (void)state;
  rtmp_server_config_t cfg = {0};
  cfg.ingest_budget = 1 << 20;
  fx_t *f = fx_start(&cfg, 5.0);
  uint32_t sa, sb, sc, sd, se, sf;
  cli_t *a = publisher(f, "a", &sa), *b = publisher(f, "b", &sb), *c = publisher(f, "c", &sc);
  part_t ma = partial(a, 6, RTMP_MSG_VIDEO, sa, 400000);
  part_t mb = partial(b, 6, RTMP_MSG_VIDEO, sb, 400000);
  alive(a);
  alive(b);
  /* 1.2 MB would be held: c is closed, a and b are not. */
  part_t mc = partial(c, 6, RTMP_MSG_VIDEO, sc, 400000);
  part_free(&mc);
  assert_true(cli_eof(c));
  cli_close(c);
  finish(a, &ma);
  finish(b, &mb);
  alive(a);
  alive(b);
  /* Complete messages went to the hub: the budget is free again. */
  cli_t *d = publisher(f, "d", &sd);
  part_t md = partial(d, 6, RTMP_MSG_VIDEO, sd, 400000);
  part_t ma2 = partial(a, 6, RTMP_MSG_VIDEO, sa, 400000);
  alive(d);
  alive(a);
  /* A publisher that leaves mid-message gives its share back. */
  cli_close(d);
  part_free(&md);
  cli_t *e = publisher(f, "e", &se);
  part_t me = partial(e, 6, RTMP_MSG_VIDEO, se, 400000);
  alive(e);
  cli_t *g = publisher(f, "f", &sf);   /* a, e and this one: over the budget */
  part_t mg = partial(g, 6, RTMP_MSG_VIDEO, sf, 400000);
  part_free(&mg);
  assert_true(cli_eof(g));
  cli_close(g);
  finish(a, &ma2);
  finish(e, &me);
  alive(a);
  alive(e);
  cli_close(a);
  cli_close(b);
  cli_close(e);
  fx_stop(f);
  assert_int_equal(f->final.budget_closes, 2);
  assert_int_equal(f->final.pending_closes, 0);
  assert_int_equal(f->final.active, 0);
  assert_int_equal(f->final.ingest_held, 0);
  free(f);
}

/* ------------------------------------------------------------ admission */

/* A fake admission on the server's loop: the query decides ("v=allow",
 * "v=later": allowed after 0.2 s by a timer on the loop, "v=laterno":
 * refused likewise, anything else: refused at once). */
typedef struct {
  struct ev_loop *loop;
  ev_timer t;
  dp_admit_cb cb;
  void *arg;
  int later_allow;
  int checks, cancels, ended_pub, ended_play, callbacks;
  char path[64], query[128], proto[16], addr[48];
  int action;
} rfa_t;

static void rfa_fire(struct ev_loop *loop, ev_timer *w, int revents) {
  rfa_t *f = w->data;
  (void)loop;
  (void)revents;
  f->callbacks++;
  f->cb(f->arg, f->later_allow, 403, "refused later");
}

static int rfa_check(void *ud, const dp_admit_req *r, dp_admit_cb cb, void *arg, void **pending,
                     int *status, const char **reason) {
  rfa_t *f = ud;
  f->checks++;
  f->action = r->action;
  snprintf(f->path, sizeof(f->path), "%s", r->path);
  snprintf(f->query, sizeof(f->query), "%s", r->query ? r->query : "");
  snprintf(f->proto, sizeof(f->proto), "%s", r->proto);
  snprintf(f->addr, sizeof(f->addr), "%s", r->addr);
  const char *q = r->query ? r->query : "";
  if (strstr(q, "v=allow")) return DP_ADMIT_ALLOW;
  if (strstr(q, "v=later")) {
    f->later_allow = strstr(q, "v=laterno") == NULL;
    f->cb = cb;
    f->arg = arg;
    ev_timer_init(&f->t, rfa_fire, 0.2, 0.);
    f->t.data = f;
    ev_timer_start(f->loop, &f->t);
    *pending = f;
    return DP_ADMIT_PENDING;
  }
  *status = r->query ? 403 : 401;
  *reason = r->query ? "bad token" : "token required";
  return DP_ADMIT_DENY;
}

static void rfa_cancel(void *ud, void *pending) {
  rfa_t *f = ud;
  assert_ptr_equal(pending, f);
  ev_timer_stop(f->loop, &f->t);
  f->cancels++;
}

static void rfa_ended(void *ud, const dp_admit_req *r) {
  rfa_t *f = ud;
  if (r->action == DP_ADMIT_PUBLISH) f->ended_pub++;
  else f->ended_play++;
}

static const dp_admit_ops rfa_ops = {rfa_check, rfa_cancel, rfa_ended};

static void connect_app(cli_t *c, const char *app, const char *tcurl) {
  amf_buf_t a;
  amf_buf_init(&a);
  amf_put_string(&a, "connect");
  amf_put_number(&a, 1);
  amf_put_object_start(&a);
  amf_put_prop_string(&a, "app", app);
  amf_put_prop_string(&a, "tcUrl", tcurl);
  amf_put_object_end(&a);
  cli_cmd(c, 0, &a);
  amf_buf_free(&a);
  amf_value_t *r = cli_wait_cmd(c, "_result");
  assert_non_null(r);
  amf_free(r);
}

static void test_admission(void **state) {
  (void)state;
  static rfa_t fa;
  memset(&fa, 0, sizeof(fa));
  fx_admit = &rfa_ops;
  fx_admit_ud = &fa;
  fx_t *f = fx_start(NULL, 0.3);
  fa.loop = f->loop;
  fx_admit = NULL;

  /* no token: refused with BadName, closed; the query never names the path */
  cli_t *c = cli_open(f->port);
  do_connect(c, "live");
  uint32_t sid = do_create_stream(c);
  assert_string_equal(do_stream_cmd(c, "publish", sid, "cam1"), "NetStream.Publish.BadName");
  assert_true(cli_eof(c));
  cli_close(c);
  assert_int_equal(fa.action, DP_ADMIT_PUBLISH);
  assert_string_equal(fa.path, "live/cam1");
  assert_string_equal(fa.query, "");
  assert_string_equal(fa.proto, "rtmp");
  assert_string_equal(fa.addr, "127.0.0.1");

  /* the token on the stream name */
  cli_t *p = cli_open(f->port);
  do_connect(p, "live");
  uint32_t psid = do_create_stream(p);
  assert_string_equal(do_stream_cmd(p, "publish", psid, "cam1?v=allow"), "NetStream.Publish.Start");
  assert_string_equal(fa.path, "live/cam1");
  assert_string_equal(fa.query, "v=allow");

  /* on the connect's app, and on its tcUrl only */
  c = cli_open(f->port);
  connect_app(c, "live?v=allow", "rtmp://127.0.0.1/live?v=allow");
  sid = do_create_stream(c);
  assert_string_equal(do_stream_cmd(c, "publish", sid, "cam2?x=1"), "NetStream.Publish.Start");
  assert_string_equal(fa.path, "live/cam2");
  assert_string_equal(fa.query, "x=1&v=allow");
  cli_close(c);
  c = cli_open(f->port);
  connect_app(c, "live", "rtmp://127.0.0.1/live?v=allow");
  sid = do_create_stream(c);
  assert_string_equal(do_stream_cmd(c, "publish", sid, "cam3"), "NetStream.Publish.Start");
  cli_close(c);

  /* a refused player: Play.Failed */
  c = cli_open(f->port);
  do_connect(c, "live");
  sid = do_create_stream(c);
  assert_string_equal(do_stream_cmd(c, "play", sid, "cam1?v=no"), "NetStream.Play.Failed");
  assert_int_equal(fa.action, DP_ADMIT_PLAY);
  assert_true(cli_eof(c));
  cli_close(c);

  /* pending, then allowed: media sent before the verdict is dropped, not
   * fatal, and the publish starts */
  c = cli_open(f->port);
  do_connect(c, "live");
  sid = do_create_stream(c);
  amf_buf_t a;
  amf_buf_init(&a);
  amf_put_string(&a, "publish");
  amf_put_number(&a, 0);
  amf_put_null(&a);
  amf_put_string(&a, "cam4?v=later");
  amf_put_string(&a, "live");
  cli_cmd(c, sid, &a);
  amf_buf_free(&a);
  send_metadata(c, sid);
  amf_value_t *r = cli_wait_cmd(c, "onStatus");
  assert_non_null(r);
  assert_string_equal(status_code(r), "NetStream.Publish.Start");
  amf_free(r);
  cli_close(c);

  /* pending, then refused */
  c = cli_open(f->port);
  do_connect(c, "live");
  sid = do_create_stream(c);
  assert_string_equal(do_stream_cmd(c, "play", sid, "cam1?v=laterno"), "NetStream.Play.Failed");
  cli_close(c);

  /* closed while pending: cancelled, never called back (ASan would see a
   * use after free) */
  int callbacks = fa.callbacks;
  c = cli_open(f->port);
  do_connect(c, "live");
  sid = do_create_stream(c);
  amf_buf_init(&a);
  amf_put_string(&a, "play");
  amf_put_number(&a, 0);
  amf_put_null(&a);
  amf_put_string(&a, "cam1?v=later");
  cli_cmd(c, sid, &a);
  amf_buf_free(&a);
  usleep(50000);
  cli_close(c);
  usleep(400000);

  cli_close(p);
  fx_stop(f);
  assert_int_equal(fa.cancels, 1);
  assert_int_equal(fa.callbacks, callbacks);
  assert_int_equal(fa.ended_pub, 4);  /* cam1, cam2, cam3, cam4 */
  assert_int_equal(fa.ended_play, 0); /* no player was admitted */
  assert_int_equal(f->final.admit_refused, 3);
  assert_int_equal(f->final.active, 0);
  free(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_publish_then_play),
      cmocka_unit_test(test_play_missing_stream),
      cmocka_unit_test(test_bad_input_closes_only_that_connection),
      cmocka_unit_test(test_limits_and_timeouts),
      cmocka_unit_test(test_pending_bound),
      cmocka_unit_test(test_ingest_budget),
      cmocka_unit_test(test_admission),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
