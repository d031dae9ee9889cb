/* Unit tests for dataplane/httpflv.c: real loopback TCP clients against the
 * server on a libev loop, driven from one thread (the client sockets are
 * non-blocking and read between loop iterations). A live stream plays as
 * FLV (headers, GOP, then live tags, CORS header), a missing one gets 404
 * after the wait, HEAD and OPTIONS answer, bad requests get 400/431/405, the
 * fallback serves other paths, an API handler owns every method outside
 * /flv/ and takes bodies only up to max_body, max_connections closes the surplus, and a
 * player that does not read is bounded and cut while another sees all.
 * The FLV header's flags say what the stream carries: audio-only and
 * video-only streams, named by metadata or not (held until decided). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "amf.h"
#include "flv.h"
#include "httpflv.h"

static struct ev_loop *loop;
static hub_t *hub;
static httpflv_t *srv;
static int lfd;
static unsigned short port;

typedef struct client {
  int fd;
  uint8_t *buf;
  size_t n, cap;
  int eof;
} client_t;

static void break_cb(struct ev_loop *l, ev_timer *w, int revents) {
  (void)w;
  (void)revents;
  ev_break(l, EVBREAK_ONE);
}

static void run_for(double s) {
  ev_timer t;
  ev_timer_init(&t, break_cb, s, 0.);
  ev_timer_start(loop, &t);
  ev_run(loop, 0);
  ev_timer_stop(loop, &t);
}

static void client_read(client_t *c) {
  for (;;) {
    if (c->n == c->cap) {
      c->cap = c->cap ? c->cap * 2 : 65536;
      c->buf = realloc(c->buf, c->cap + 1);
      assert_non_null(c->buf);
    }
    ssize_t k = recv(c->fd, c->buf + c->n, c->cap - c->n, 0);
    if (k > 0) {
      c->n += (size_t)k;
      c->buf[c->n] = 0;
      continue;
    }
    if (k == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) c->eof = 1;
    return;
  }
}

/* pump runs the loop and reads |c| until |done| or |secs| pass. */
static void pump(client_t *c, double secs, int (*done)(const client_t *)) {
  double end = ev_time() + secs;
  while (ev_time() < end) {
    run_for(0.002);
    if (c) client_read(c);
    if (done && c && done(c)) return;
  }
}

static int got_eof(const client_t *c) { return c->eof; }

static int client_rcvbuf; /* set before connect, so the window is small from the start */

static void client_open(client_t *c, const char *req, size_t len) {
  memset(c, 0, sizeof(*c));
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(c->fd >= 0);
  if (client_rcvbuf) setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &client_rcvbuf, sizeof(client_rcvbuf));
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(c->fd, (struct sockaddr *)&a, sizeof(a)), 0);
  fcntl(c->fd, F_SETFL, O_NONBLOCK);
  if (req) assert_int_equal(send(c->fd, req, len, MSG_NOSIGNAL), (ssize_t)len);
}

static void client_close(client_t *c) {
  close(c->fd);
  free(c->buf);
  c->buf = NULL;
}

/* body_of points past the response head; NULL while incomplete. */
static const uint8_t *body_of(const client_t *c) {
  if (c->n == 0) return NULL;
  const char *e = strstr((const char *)c->buf, "\r\n\r\n");
  return e ? (const uint8_t *)e + 4 : NULL;
}

static int fallback(void *arg, const char *method, const char *path, const char *query,
                    char **body, size_t *len, const char **ctype) {
  (void)arg;
  (void)method;
  if (strcmp(path, "/api/echo") != 0) return 0;
  size_t n = strlen(query) + 4;
  *body = malloc(n + 1);
  snprintf(*body, n + 1, "q=%s\r\n", query);
  *len = strlen(*body);
  *ctype = "text/plain; charset=utf-8";
  return 200;
}

static size_t max_body = HTTPFLV_MAX_BODY; /* for the next start() */
static int local_only;                     /* likewise */

static void start(unsigned max_conns, size_t qbytes) {
  loop = ev_loop_new(EVFLAG_AUTO);
  hub_config_t hc = {0.1, 0.2, qbytes, 5, 1, 0, 0, 0};
  hub = hub_new(loop, &hc);
  lfd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
  assert_int_equal(listen(lfd, 64), 0);
  socklen_t sl = sizeof(a);
  getsockname(lfd, (struct sockaddr *)&a, &sl);
  port = ntohs(a.sin_port);
  httpflv_config_t c = {max_conns, 1.0, fallback, NULL, 0, max_body, local_only};
  srv = httpflv_new(loop, hub, lfd, &c);
  assert_non_null(srv);
}

static void stop(void) {
  httpflv_free(srv);
  hub_free(hub);
  close(lfd);
  ev_loop_destroy(loop);
}

static const uint8_t avc_seq[] = {0x17, 0x00, 0x00, 0x00, 0x00, 0x01, 0x64, 0x00, 0x0a};
static const uint8_t aac_seq[] = {0xaf, 0x00, 0x12, 0x10};

static void push_video(hub_stream_t *st, uint32_t ts, int key, size_t len) {
  uint8_t *b = calloc(1, len);
  b[0] = key ? 0x17 : 0x27;
  b[1] = 1;
  b[5] = (uint8_t)ts;
  hub_push(st, hub_frame_new(HUB_VIDEO, ts, b, len));
  free(b);
}

static hub_stream_t *publish(const char *path) {
  hub_stream_t *st = hub_publish(hub, path, NULL);
  assert_non_null(st);
  hub_push(st, hub_frame_new(HUB_SCRIPT, 0, (const uint8_t *)"\x02\x00\x0aonMetaData\x05", 14));
  hub_push(st, hub_frame_new(HUB_VIDEO, 0, avc_seq, sizeof(avc_seq)));
  hub_push(st, hub_frame_new(HUB_AUDIO, 0, aac_seq, sizeof(aac_seq)));
  push_video(st, 0, 1, 200);
  push_video(st, 40, 0, 100);
  return st;
}

typedef struct tags {
  unsigned n, keys, bad;
  uint8_t type[64];
  uint32_t ts[64];
  uint64_t mismatch;
} tags_t;

static void parse_body(const client_t *c, tags_t *t) {
  const uint8_t *b = body_of(c);
  memset(t, 0, sizeof(*t));
  assert_non_null(b);
  flv_parser_t p;
  flv_parser_init(&p, 1);
  size_t left = c->n - (size_t)(b - c->buf);
  while (left) {
    hub_frame_t *f;
    long k = flv_parse(&p, b, left, &f);
    if (k < 0) {
      t->bad = 1;
      break;
    }
    b += k;
    left -= (size_t)k;
    if (f) {
      if (t->n < 64) {
        t->type[t->n] = f->type;
        t->ts[t->n] = f->ts;
      }
      t->n++;
      t->keys += f->keyframe;
      hub_frame_unref(f);
    }
  }
  t->mismatch = p.prev_size_mismatch;
  flv_parser_free(&p);
}

static int n_tags_ge5(const client_t *c) {
  tags_t t;
  if (!body_of(c)) return 0;
  parse_body(c, &t);
  return t.n >= 5;
}

static int n_tags_ge6(const client_t *c) {
  tags_t t;
  if (!body_of(c)) return 0;
  parse_body(c, &t);
  return t.n >= 6;
}

static void test_live_stream(void **state) {
  (void)state;
  start(0, 0);
  hub_stream_t *st = publish("live/cam1");
  client_t c;
  const char req[] = "GET /flv/live/cam1.flv HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n";
  client_open(&c, req, sizeof(req) - 1);
  pump(&c, 2, n_tags_ge5);
  assert_non_null(body_of(&c));
  assert_memory_equal(c.buf, "HTTP/1.1 200 OK\r\n", 17);
  assert_non_null(strstr((char *)c.buf, "Content-Type: video/x-flv\r\n"));
  assert_non_null(strstr((char *)c.buf, "Access-Control-Allow-Origin: *\r\n"));
  assert_null(strstr((char *)c.buf, "Transfer-Encoding"));
  const uint8_t *b = body_of(&c);
  assert_memory_equal(b, "FLV\x01\x05\x00\x00\x00\x09", 9);
  httpflv_stats_t s;
  httpflv_get_stats(srv, &s);
  assert_int_equal(s.players, 1);
  assert_int_equal(s.current, 1);
  push_video(st, 80, 0, 100); /* live after the GOP */
  pump(&c, 2, n_tags_ge6);
  tags_t t;
  parse_body(&c, &t);
  assert_int_equal(t.bad, 0);
  assert_int_equal(t.mismatch, 0);
  assert_int_equal(t.n, 6);
  assert_int_equal(t.type[0], HUB_SCRIPT);
  assert_int_equal(t.type[1], HUB_VIDEO);
  assert_int_equal(t.type[2], HUB_AUDIO);
  assert_int_equal(t.keys, 1);
  assert_int_equal(t.ts[3], 0);
  assert_int_equal(t.ts[4], 40);
  assert_int_equal(t.ts[5], 80);
  /* the publisher leaves for good: the player is closed after delay-close */
  hub_unpublish(st);
  pump(&c, 2, got_eof);
  assert_true(c.eof);
  httpflv_get_stats(srv, &s);
  assert_int_equal(s.players, 0);
  assert_int_equal(s.current, 0);
  assert_true(s.bytes_out >= c.n);
  client_close(&c);
  stop();
}

static void test_not_found_after_wait(void **state) {
  (void)state;
  start(0, 0);
  client_t c;
  const char req[] = "GET /flv/live/none.flv HTTP/1.1\r\n\r\n";
  client_open(&c, req, sizeof(req) - 1);
  pump(&c, 0.1, NULL);
  assert_int_equal(c.n, 0); /* still waiting for a publisher */
  pump(&c, 2, got_eof);
  assert_memory_equal(c.buf, "HTTP/1.1 404 Not Found\r\n", 24);
  assert_non_null(strstr((char *)c.buf, "\r\n\r\nstream not found\n"));
  client_close(&c);
  stop();
}

/* request → expected status line prefix */
static void expect(const char *req, size_t len, const char *status) {
  client_t c;
  client_open(&c, req, len);
  pump(&c, 2, got_eof);
  assert_true(c.eof);
  assert_true(c.n > 0);
  if (strncmp((char *)c.buf, status, strlen(status)) != 0) fail_msg("%s: got %.40s", status, c.buf);
  client_close(&c);
}

#define EXPECT(req, status) expect(req, sizeof(req) - 1, status)

static int n_tags_ge7(const client_t *c) {
  tags_t t;
  if (!body_of(c)) return 0;
  parse_body(c, &t);
  return t.n >= 7;
}

static int n_tags_ge11(const client_t *c) {
  tags_t t;
  if (!body_of(c)) return 0;
  parse_body(c, &t);
  return t.n >= 11;
}

/* A player joining a stream that has run a while starts its own timeline
 * at 0, the cached metadata and sequence headers included (an FLV reader
 * takes onMetaData for header metadata only at 0); a publisher that comes
 * back from 0 does not send it back in time. */
static void test_player_timeline(void **state) {
  (void)state;
  start(0, 0);
  hub_stream_t *st = hub_publish(hub, "live/late", NULL);
  assert_non_null(st);
  hub_push(st, hub_frame_new(HUB_SCRIPT, 26343, (const uint8_t *)"\x02\x00\x0aonMetaData\x05", 14));
  hub_push(st, hub_frame_new(HUB_VIDEO, 26343, avc_seq, sizeof(avc_seq)));
  hub_push(st, hub_frame_new(HUB_AUDIO, 26343, aac_seq, sizeof(aac_seq)));
  push_video(st, 44776, 1, 200);
  push_video(st, 44816, 0, 100);
  client_t c;
  const char req[] = "GET /flv/live/late.flv HTTP/1.1\r\nHost: x\r\n\r\n";
  client_open(&c, req, sizeof(req) - 1);
  pump(&c, 2, n_tags_ge5);
  push_video(st, 44856, 0, 100);
  pump(&c, 2, n_tags_ge6);
  /* the publisher restarts from 0 */
  hub_unpublish(st);
  st = hub_publish(hub, "live/late", NULL);
  assert_non_null(st);
  hub_push(st, hub_frame_new(HUB_SCRIPT, 0, (const uint8_t *)"\x02\x00\x0aonMetaData\x05", 14));
  pump(&c, 2, n_tags_ge7);
  hub_push(st, hub_frame_new(HUB_VIDEO, 0, avc_seq, sizeof(avc_seq)));
  hub_push(st, hub_frame_new(HUB_AUDIO, 0, aac_seq, sizeof(aac_seq)));
  push_video(st, 0, 1, 200);
  push_video(st, 40, 0, 100);
  pump(&c, 2, n_tags_ge11);
  tags_t t;
  parse_body(&c, &t);
  assert_int_equal(t.bad, 0);
  assert_int_equal(t.n, 11);
  /* the restart re-anchors one frame (40 ms) after the current position */
  static const uint32_t want[11] = {0, 0, 0, 0, 40, 80, 80, 80, 80, 120, 160};
  for (unsigned i = 0; i < 11; i++) assert_int_equal(t.ts[i], want[i]);
  assert_int_equal(t.type[5], HUB_VIDEO);
  assert_int_equal(t.type[6], HUB_SCRIPT);
  client_close(&c);
  hub_unpublish(st);
  stop();
}

static void test_bad_requests(void **state) {
  (void)state;
  start(0, 0);
  EXPECT("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "HTTP/1.1 400 ");  /* TLS */
  EXPECT("\x03\x00\x00\x00\x00", "HTTP/1.1 400 ");                         /* RTMP C0 */
  EXPECT("GET /x\r\n\r\n", "HTTP/1.1 400 ");
  EXPECT("GET /x HTTP/2.0\r\n\r\n", "HTTP/1.1 400 ");
  EXPECT("GET /a b HTTP/1.1\r\n\r\n", "HTTP/1.1 400 ");
  EXPECT("GET /x HTTP/1.1\r\nno colon\r\n\r\n", "HTTP/1.1 400 ");
  EXPECT("GET /x HTTP/1.1\r\n folded: x\r\n\r\n", "HTTP/1.1 400 ");
  EXPECT("GET /%zz HTTP/1.1\r\n\r\n", "HTTP/1.1 400 ");
  EXPECT("GET http://h/x HTTP/1.1\r\n\r\n", "HTTP/1.1 400 ");
  EXPECT("POST /flv/live/a.flv HTTP/1.1\r\n\r\n", "HTTP/1.1 405 ");
  EXPECT("DELETE /api/echo HTTP/1.1\r\n\r\n", "HTTP/1.1 405 ");
  EXPECT("GET /nowhere HTTP/1.1\r\n\r\n", "HTTP/1.1 404 ");
  EXPECT("GET /flv/live/a.mp4 HTTP/1.1\r\n\r\n", "HTTP/1.1 404 ");
  EXPECT("GET /flv/../etc.flv HTTP/1.1\r\n\r\n", "HTTP/1.1 404 ");
  EXPECT("OPTIONS /flv/live/a.flv HTTP/1.1\r\n\r\n", "HTTP/1.1 204 ");
  /* over 8 KiB of request head */
  char big[9000];
  int n = snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nX-Big: ");
  memset(big + n, 'a', sizeof(big) - (size_t)n);
  expect(big, sizeof(big), "HTTP/1.1 431 ");
  /* the fallback serves its path, with the query */
  client_t c;
  const char req[] = "GET /api/echo?a=1 HTTP/1.1\r\n\r\n";
  client_open(&c, req, sizeof(req) - 1);
  pump(&c, 2, got_eof);
  assert_memory_equal(c.buf, "HTTP/1.1 200 OK\r\n", 17);
  assert_non_null(strstr((char *)c.buf, "Content-Type: text/plain; charset=utf-8\r\n"));
  assert_non_null(strstr((char *)c.buf, "Content-Length: 7\r\n"));
  assert_non_null(strstr((char *)c.buf, "Access-Control-Allow-Origin: *\r\n"));
  assert_string_equal((char *)body_of(&c), "q=a=1\r\n");
  client_close(&c);
  /* a client that half-closes after its request still gets the reply */
  client_open(&c, req, sizeof(req) - 1);
  shutdown(c.fd, SHUT_WR);
  pump(&c, 2, got_eof);
  assert_memory_equal(c.buf, "HTTP/1.1 200 OK\r\n", 17);
  client_close(&c);
  httpflv_stats_t s;
  httpflv_get_stats(srv, &s);
  assert_int_equal(s.bad_requests, 10);
  assert_int_equal(s.current, 0);
  stop();
}

/* The API handler: any method, with the request body. */
static int api(void *arg, const httpflv_request_t *rq, httpflv_reply_t *out) {
  (void)arg;
  if (strcmp(rq->path, "/api/echo") != 0) return 0;
  if (strcmp(rq->method, "PATCH") == 0) {
    out->allow = "GET, POST";
    return 405;
  }
  size_t n = strlen(rq->method) + rq->body_len + strlen(rq->query) + 4;
  out->body = malloc(n + 1);
  snprintf(out->body, n + 1, "%s %s %s", rq->method, rq->query, rq->body);
  out->len = strlen(out->body);
  return 201;
}

static void test_api_bodies(void **state) {
  (void)state;
  start(0, 0);
  httpflv_set_api(srv, api, NULL);
  client_t c;
  /* a body in the same read as the head, and one that arrives in pieces */
  const char r1[] = "POST /api/echo?q=1 HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
  client_open(&c, r1, sizeof(r1) - 1);
  pump(&c, 2, got_eof);
  assert_memory_equal(c.buf, "HTTP/1.1 201 ", 13);
  assert_string_equal((char *)body_of(&c), "POST q=1 hello");
  client_close(&c);
  const char r2[] = "PUT /api/echo HTTP/1.1\r\ncontent-length:  3 \r\nExpect: 100-continue\r\n\r\n";
  client_open(&c, r2, sizeof(r2) - 1);
  send(c.fd, "a", 1, MSG_NOSIGNAL);
  send(c.fd, "bc", 2, MSG_NOSIGNAL);
  pump(&c, 2, got_eof);
  /* "100 Continue" first when the head came alone (not when the body came with it) */
  assert_non_null(strstr((char *)c.buf, "HTTP/1.1 201 "));
  assert_non_null(strstr((char *)c.buf, "PUT  abc"));
  client_close(&c);
  EXPECT("DELETE /api/echo HTTP/1.1\r\n\r\n", "HTTP/1.1 201 ");
  EXPECT("POST /api/echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
         "HTTP/1.1 411 ");
  EXPECT("POST /api/echo HTTP/1.1\r\nContent-Length: 1048577\r\n\r\n", "HTTP/1.1 413 ");
  EXPECT("POST /api/echo HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", "HTTP/1.1 400 ");
  EXPECT("POST /api/echo HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
         "HTTP/1.1 400 ");
  EXPECT("POST /nowhere HTTP/1.1\r\n\r\n", "HTTP/1.1 404 ");
  EXPECT("POST /flv/live/a.flv HTTP/1.1\r\n\r\n", "HTTP/1.1 405 ");
  const char r3[] = "PATCH /api/echo HTTP/1.1\r\n\r\n";
  client_open(&c, r3, sizeof(r3) - 1);
  pump(&c, 2, got_eof);
  assert_memory_equal(c.buf, "HTTP/1.1 405 ", 13);
  assert_non_null(strstr((char *)c.buf, "Allow: GET, POST\r\n"));
  client_close(&c);
  stop();
}

static int body_budget(void) {
  httpflv_stats_t st;
  httpflv_get_stats(srv, &st);
  return (int)st.body_bytes;
}

/* Request bodies are read before the API knows who asks: together they
 * stay within body_budget (503 beyond), and what completes or leaves
 * comes back. */
static void test_body_budget(void **state) {
  (void)state;
  start(0, 0);
  httpflv_free(srv);
  httpflv_config_t cfg = {0, 1.0, fallback, NULL, 3000, HTTPFLV_MAX_BODY, 0};
  srv = httpflv_new(loop, hub, lfd, &cfg);
  httpflv_set_api(srv, api, NULL);
  const char head[] = "POST /api/echo HTTP/1.1\r\nContent-Length: 1200\r\n\r\nabc";
  client_t a, b, c, d;
  client_open(&a, head, sizeof(head) - 1);
  pump(&a, 0.2, NULL);
  client_open(&b, head, sizeof(head) - 1);
  pump(&b, 0.2, NULL);
  assert_int_equal(body_budget(), 2 * 1201);
  /* a third would hold 3603 bytes: refused, before any of its body is kept */
  client_open(&c, head, sizeof(head) - 1);
  pump(&c, 2, got_eof);
  assert_memory_equal(c.buf, "HTTP/1.1 503 ", 13);
  client_close(&c);
  assert_int_equal(body_budget(), 2 * 1201);
  /* a completes (its reply frees its body), b leaves half-way */
  char rest[1197];
  memset(rest, 'x', sizeof(rest));
  send(a.fd, rest, sizeof(rest), MSG_NOSIGNAL);
  pump(&a, 2, got_eof);
  assert_memory_equal(a.buf, "HTTP/1.1 201 ", 13);
  client_close(&a);
  client_close(&b);
  pump(NULL, 0.1, NULL);
  assert_int_equal(body_budget(), 0);
  /* and the budget is there again */
  client_open(&d, head, sizeof(head) - 1);
  send(d.fd, rest, sizeof(rest), MSG_NOSIGNAL);
  pump(&d, 2, got_eof);
  assert_memory_equal(d.buf, "HTTP/1.1 201 ", 13);
  client_close(&d);
  httpflv_stats_t st;
  httpflv_get_stats(srv, &st);
  assert_int_equal(st.busy, 1);
  stop();
}

/* What the agent's public listener relies on: with an API handler, every
 * method on a path outside /flv/ (OPTIONS included) is the handler's to
 * answer, so a path it does not know is 404 whatever the method; and with
 * max_body 0 no request body is read at all. */
static void test_api_owns_every_method(void **state) {
  (void)state;
  max_body = 0;
  start(0, 0);
  httpflv_set_api(srv, api, NULL);
  static const char *const methods[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS",
                                        "PATCH", "TRACE", "CONNECT", "FOO"};
  for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
    char req[128];
    int n = snprintf(req, sizeof(req), "%s /api/cascade/status HTTP/1.1\r\n\r\n", methods[i]);
    expect(req, (size_t)n, "HTTP/1.1 404 ");
  }
  /* the handler still sees OPTIONS on its own path */
  EXPECT("OPTIONS /api/echo HTTP/1.1\r\n\r\n", "HTTP/1.1 201 ");
  /* players keep their CORS preflight */
  EXPECT("OPTIONS /flv/live/a.flv HTTP/1.1\r\n\r\n", "HTTP/1.1 204 ");
  /* no body is taken, on any path */
  client_t c;
  const char r1[] = "POST /api/echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
  client_open(&c, r1, sizeof(r1) - 1);
  pump(&c, 2, got_eof);
  assert_memory_equal(c.buf, "HTTP/1.1 413 ", 13);
  assert_non_null(strstr((char *)c.buf, "request bodies are not accepted here"));
  client_close(&c);
  EXPECT("POST /api/cascade/linktest?bytes=1 HTTP/1.1\r\nContent-Length: 1\r\n\r\nx",
         "HTTP/1.1 413 ");
  stop();
  /* a smaller bound is kept */
  max_body = 4;
  start(0, 0);
  httpflv_set_api(srv, api, NULL);
  EXPECT("PUT /api/echo HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd", "HTTP/1.1 201 ");
  EXPECT("PUT /api/echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcde", "HTTP/1.1 413 ");
  stop();
  max_body = HTTPFLV_MAX_BODY;
}

/* The agent's admin listener: nothing a browser page could send is served,
 * and no answer invites one to read it. */
static void test_local_only(void **state) {
  (void)state;
  local_only = 1;
  start(0, 0);
  local_only = 0;
  httpflv_set_api(srv, api, NULL);
  EXPECT("GET /api/echo HTTP/1.1\r\nHost: 127.0.0.1:8081\r\n\r\n", "HTTP/1.1 201 ");
  EXPECT("GET /api/echo HTTP/1.1\r\nHost: localhost\r\n\r\n", "HTTP/1.1 201 ");
  EXPECT("GET /api/echo HTTP/1.1\r\nHost: [::1]:8081\r\n\r\n", "HTTP/1.1 201 ");
  EXPECT("GET /api/echo HTTP/1.0\r\n\r\n", "HTTP/1.1 201 ");
  /* a name rebound to this address */
  EXPECT("GET /api/echo HTTP/1.1\r\nHost: evil.example:8081\r\n\r\n", "HTTP/1.1 403 ");
  EXPECT("GET /api/echo HTTP/1.1\r\nHost: localhost.evil.example\r\n\r\n", "HTTP/1.1 403 ");
  /* a page's cross-site request, a simple POST included */
  EXPECT("POST /api/echo HTTP/1.1\r\nHost: 127.0.0.1:8081\r\nOrigin: https://evil.example\r\n"
         "Content-Type: text/plain\r\nContent-Length: 1\r\n\r\nx",
         "HTTP/1.1 403 ");
  EXPECT("GET /api/echo HTTP/1.1\r\nOrigin: null\r\n\r\n", "HTTP/1.1 403 ");
  /* no CORS header on any answer */
  client_t c;
  const char r[] = "GET /api/echo HTTP/1.1\r\n\r\n";
  client_open(&c, r, sizeof(r) - 1);
  pump(&c, 2, got_eof);
  assert_memory_equal(c.buf, "HTTP/1.1 201 ", 13);
  assert_null(strstr((char *)c.buf, "Access-Control-Allow-Origin"));
  client_close(&c);
  stop();
  /* the public listener keeps its CORS header for browser players */
  start(0, 0);
  httpflv_set_api(srv, api, NULL);
  client_open(&c, r, sizeof(r) - 1);
  pump(&c, 2, got_eof);
  assert_non_null(strstr((char *)c.buf, "Access-Control-Allow-Origin: *"));
  client_close(&c);
  EXPECT("GET /api/echo HTTP/1.1\r\nHost: evil.example\r\nOrigin: https://x\r\n\r\n",
         "HTTP/1.1 201 ");
  stop();
}

static void test_host_is_local(void **state) {
  (void)state;
  static const char *const yes[] = {"", "127.0.0.1", "127.0.0.1:8081", "10.1.2.3:1", "localhost",
                                    "LOCALHOST:80", "[::1]", "[::1]:8081", "[2001:db8::7]:9",
                                    "[::ffff:127.0.0.1]:1", NULL};
  static const char *const no[] = {"evil.example", "evil.example:8081", "localhost.evil",
                                   "127.0.0.1.nip.io", "1.2.3", "1..2.3", ".1.2.3", "1.2.3.4.",
                                   "[::1", "[]", "[::1]x", "[::1]:", "127.0.0.1:", ":80",
                                   "127.0.0.1:123456", "127.0.0.1:8a", "[fe80::1%eth0]", "a",
                                   NULL};
  for (size_t i = 0; yes[i]; i++)
    if (!httpflv_host_is_local(yes[i], strlen(yes[i]))) fail_msg("refused %s", yes[i]);
  for (size_t i = 0; no[i]; i++)
    if (httpflv_host_is_local(no[i], strlen(no[i]))) fail_msg("accepted %s", no[i]);
}

static void test_head(void **state) {
  (void)state;
  start(0, 0);
  hub_stream_t *st = publish("live/cam1");
  client_t c;
  const char req[] = "HEAD /flv/live/cam1.flv HTTP/1.1\r\n\r\n";
  client_open(&c, req, sizeof(req) - 1);
  pump(&c, 2, got_eof);
  assert_memory_equal(c.buf, "HTTP/1.1 200 OK\r\n", 17);
  assert_non_null(strstr((char *)c.buf, "Content-Type: video/x-flv\r\n"));
  const uint8_t *b = body_of(&c);
  assert_non_null(b);
  assert_int_equal(c.n, (size_t)(b - c.buf)); /* no body */
  client_close(&c);
  hub_stats_t hs;
  hub_get_stats(hub, &hs);
  assert_int_equal(hs.subscribers, 0);
  hub_unpublish(st);
  EXPECT("HEAD /flv/live/gone.flv HTTP/1.1\r\n\r\n", "HTTP/1.1 404 ");
  stop();
}

static void test_max_connections(void **state) {
  (void)state;
  start(2, 0);
  client_t a, b, c;
  client_open(&a, NULL, 0);
  client_open(&b, NULL, 0);
  pump(&a, 0.05, NULL);
  client_open(&c, NULL, 0);
  pump(&c, 1, got_eof);
  assert_true(c.eof);
  client_read(&a);
  assert_false(a.eof);
  httpflv_stats_t s;
  httpflv_get_stats(srv, &s);
  assert_int_equal(s.refused, 1);
  assert_int_equal(s.current, 2);
  client_close(&a);
  client_close(&b);
  client_close(&c);
  stop();
}

/* A player that never reads costs at most its queue bound and is cut after
 * slow_s; a reading player meanwhile gets every frame. */
static void test_slow_player(void **state) {
  (void)state;
  const size_t qbytes = 256 * 1024;
  start(0, qbytes);
  hub_stream_t *st = publish("live/cam1");
  client_t fast, slow;
  const char req[] = "GET /flv/live/cam1.flv HTTP/1.1\r\n\r\n";
  client_rcvbuf = 4096;
  client_open(&slow, req, sizeof(req) - 1);
  client_rcvbuf = 0;
  client_open(&fast, req, sizeof(req) - 1);
  pump(&fast, 0.05, NULL);
  const int frames = 1500;
  for (int i = 0; i < frames; i++) {
    push_video(st, 80 + (uint32_t)i * 10, i % 50 == 0, 10000);
    run_for(0.0005);
    client_read(&fast);
    hub_stats_t hs;
    hub_get_stats(hub, &hs);
    assert_true(hs.queued_bytes <= 2 * qbytes + 4096);
  }
  pump(&fast, 1, NULL);
  tags_t t;
  parse_body(&fast, &t);
  assert_int_equal(t.bad, 0);
  assert_int_equal(t.n, 5 + frames);
  assert_int_equal(t.mismatch, 0);
  hub_stats_t hs;
  hub_get_stats(hub, &hs);
  assert_int_equal(hs.slow_disconnects, 1);
  assert_true(hs.frames_dropped > 0);
  pump(&slow, 3, got_eof); /* what the kernel still holds, then the close */
  assert_true(slow.eof);
  tags_t ts;
  parse_body(&slow, &ts);
  assert_int_equal(ts.bad, 0);
  assert_true(ts.n < 5 + (size_t)frames); /* it lost frames, the fast one did not */
  client_close(&fast);
  client_close(&slow);
  stop();
}

static void push_audio(hub_stream_t *st, uint32_t ts) {
  static const uint8_t raw[] = {0xaf, 0x01, 0x21, 0x10, 0x04, 0x60};
  hub_push(st, hub_frame_new(HUB_AUDIO, ts, raw, sizeof(raw)));
}

static int n_tags_ge3(const client_t *c) {
  tags_t t;
  if (!body_of(c) || c->n - (size_t)(body_of(c) - c->buf) < 13) return 0;
  parse_body(c, &t);
  return t.n >= 3;
}

/* An audio-only stream as ffmpeg publishes it (metadata naming audio): a
 * late player gets header flags 4 and every tag in order. */
static void test_kinds_audio_only(void **state) {
  (void)state;
  start(0, 0);
  hub_stream_t *st = hub_publish(hub, "live/radio", NULL);
  assert_non_null(st);
  amf_buf_t m;
  amf_buf_init(&m);
  amf_put_string(&m, "onMetaData");
  amf_put_ecma_start(&m, 1);
  amf_put_prop_number(&m, "audiocodecid", 10);
  amf_put_object_end(&m);
  hub_push(st, hub_frame_new(HUB_SCRIPT, 0, m.data, m.len));
  amf_buf_free(&m);
  hub_push(st, hub_frame_new(HUB_AUDIO, 0, aac_seq, sizeof(aac_seq)));
  push_audio(st, 0);
  push_audio(st, 23);
  client_t c;
  const char req[] = "GET /flv/live/radio.flv HTTP/1.1\r\n\r\n";
  client_open(&c, req, sizeof(req) - 1);
  pump(&c, 2, n_tags_ge3);
  const uint8_t *b = body_of(&c);
  assert_non_null(b);
  assert_memory_equal(b, "FLV\x01\x04\x00\x00\x00\x09", 9);
  tags_t t;
  parse_body(&c, &t);
  assert_int_equal(t.bad, 0);
  assert_int_equal(t.mismatch, 0);
  assert_true(t.n >= 3);
  assert_int_equal(t.type[0], HUB_SCRIPT);
  assert_int_equal(t.type[1], HUB_AUDIO);
  assert_int_equal(t.type[2], HUB_AUDIO);
  client_close(&c);
  hub_unpublish(st);
  stop();
}

/* A video-only stream without metadata, to a player that waited for it:
 * the head at once, the FLV header and the tags only after a second of
 * media time, all of them, in order. */
static void test_kinds_video_held(void **state) {
  (void)state;
  start(0, 0);
  client_t c;
  const char req[] = "GET /flv/live/cam2.flv HTTP/1.1\r\n\r\n";
  client_open(&c, req, sizeof(req) - 1);
  pump(&c, 0.05, NULL);
  hub_stream_t *st = hub_publish(hub, "live/cam2", NULL);
  assert_non_null(st);
  hub_push(st, hub_frame_new(HUB_VIDEO, 0, avc_seq, sizeof(avc_seq)));
  push_video(st, 0, 1, 200);
  for (uint32_t ts = 40; ts < 1000; ts += 40) push_video(st, ts, 0, 100);
  pump(&c, 0.1, NULL);
  const uint8_t *b = body_of(&c);
  assert_non_null(b); /* the head is out */
  assert_memory_equal(c.buf, "HTTP/1.1 200 OK\r\n", 17);
  assert_int_equal(c.n, (size_t)(b - c.buf)); /* nothing of the body yet */
  push_video(st, 1000, 0, 100);
  pump(&c, 2, n_tags_ge6);
  b = body_of(&c);
  assert_memory_equal(b, "FLV\x01\x01\x00\x00\x00\x09", 9);
  pump(&c, 0.1, NULL);
  tags_t t;
  parse_body(&c, &t);
  assert_int_equal(t.bad, 0);
  assert_int_equal(t.mismatch, 0);
  assert_int_equal(t.n, 2 + 25);
  assert_int_equal(t.type[0], HUB_VIDEO);
  assert_int_equal(t.ts[2], 40);
  assert_int_equal(t.ts[26], 1000);
  /* the stream ends before a decision: what came goes out, then EOF */
  client_t d;
  const char req2[] = "GET /flv/live/cam3.flv HTTP/1.1\r\n\r\n";
  client_open(&d, req2, sizeof(req2) - 1);
  pump(&d, 0.05, NULL);
  hub_stream_t *st3 = hub_publish(hub, "live/cam3", NULL);
  hub_push(st3, hub_frame_new(HUB_AUDIO, 0, aac_seq, sizeof(aac_seq)));
  push_audio(st3, 0);
  pump(&d, 0.1, NULL);
  assert_int_equal(d.n, (size_t)(body_of(&d) - d.buf));
  hub_unpublish(st3);
  pump(&d, 2, got_eof);
  b = body_of(&d);
  assert_memory_equal(b, "FLV\x01\x04\x00\x00\x00\x09", 9);
  parse_body(&d, &t);
  assert_int_equal(t.bad, 0);
  assert_int_equal(t.n, 2);
  client_close(&d);
  client_close(&c);
  hub_unpublish(st);
  stop();
}

/* A fake admission: the query says what to answer ("v=allow", "v=deny",
 * "v=later"); it records what it was asked and what it was told. */
typedef struct fake_admit {
  int checks, cancels, ended;
  int pending;                  /* a check is out */
  dp_admit_cb cb;
  void *cb_arg;
  char path[64], query[64], proto[16], addr[48];
} fake_admit_t;

static fake_admit_t fa;
static int fa_token;           /* the pending handle's identity */

static int fa_check(void *ud, const dp_admit_req *r, dp_admit_cb cb, void *arg, void **pending,
                    int *status, const char **reason) {
  fake_admit_t *f = ud;
  f->checks++;
  assert_int_equal(r->action, DP_ADMIT_PLAY);
  snprintf(f->path, sizeof(f->path), "%s", r->path);
  snprintf(f->query, sizeof(f->query), "%s", r->query ? r->query : "");
  snprintf(f->proto, sizeof(f->proto), "%s", r->proto);
  snprintf(f->addr, sizeof(f->addr), "%s", r->addr);
  if (r->query && strcmp(r->query, "v=allow") == 0) return DP_ADMIT_ALLOW;
  if (r->query && strcmp(r->query, "v=later") == 0) {
    f->pending = 1;
    f->cb = cb;
    f->cb_arg = arg;
    *pending = &fa_token;
    return DP_ADMIT_PENDING;
  }
  *status = r->query ? 403 : 401;
  *reason = r->query ? "bad token" : "token required";
  return DP_ADMIT_DENY;
}

static void fa_cancel(void *ud, void *pending) {
  fake_admit_t *f = ud;
  assert_ptr_equal(pending, &fa_token);
  f->cancels++;
  f->pending = 0;
}

static void fa_ended(void *ud, const dp_admit_req *r) {
  fake_admit_t *f = ud;
  assert_int_equal(r->action, DP_ADMIT_PLAY);
  assert_string_equal(r->path, f->path);
  f->ended++;
}

static const dp_admit_ops fa_ops = {fa_check, fa_cancel, fa_ended};

static int got_head(const client_t *c) { return body_of(c) != NULL; }

static void test_admission(void **state) {
  (void)state;
  start(0, 0);
  memset(&fa, 0, sizeof(fa));
  httpflv_set_admit(srv, &fa_ops, &fa);
  hub_stream_t *st = publish("live/cam1");
  /* no token: 401; a bad one: 403; neither subscribes */
  EXPECT("GET /flv/live/cam1.flv HTTP/1.1\r\n\r\n", "HTTP/1.1 401 Unauthorized");
  EXPECT("GET /flv/live/cam1.flv?v=bad HTTP/1.1\r\n\r\n", "HTTP/1.1 403 Forbidden");
  assert_int_equal(fa.checks, 2);
  assert_string_equal(fa.path, "live/cam1");
  assert_string_equal(fa.query, "v=bad");
  assert_string_equal(fa.proto, "httpflv");
  assert_string_equal(fa.addr, "127.0.0.1");
  assert_int_equal(fa.ended, 0);
  httpflv_stats_t s;
  httpflv_get_stats(srv, &s);
  assert_int_equal(s.admit_refused, 2);
  /* allowed at once: plays; its end is told */
  client_t c;
  const char ok[] = "GET /flv/live/cam1.flv?v=allow HTTP/1.1\r\n\r\n";
  client_open(&c, ok, sizeof(ok) - 1);
  pump(&c, 2, n_tags_ge5);
  assert_memory_equal(c.buf, "HTTP/1.1 200 OK\r\n", 17);
  client_close(&c);
  pump(NULL, 0.1, NULL);
  assert_int_equal(fa.ended, 1);
  /* pending: nothing is answered until the verdict, then it plays */
  const char later[] = "GET /flv/live/cam1.flv?v=later HTTP/1.1\r\n\r\n";
  client_open(&c, later, sizeof(later) - 1);
  pump(&c, 0.1, NULL);
  assert_int_equal(fa.pending, 1);
  assert_int_equal(c.n, 0);
  fa.pending = 0;
  fa.cb(fa.cb_arg, 1, 0, NULL);
  pump(&c, 2, n_tags_ge5);
  assert_memory_equal(c.buf, "HTTP/1.1 200 OK\r\n", 17);
  client_close(&c);
  pump(NULL, 0.1, NULL);
  assert_int_equal(fa.ended, 2);
  /* pending, then refused: 403 with the reason */
  client_open(&c, later, sizeof(later) - 1);
  pump(&c, 0.1, NULL);
  assert_int_equal(fa.pending, 1);
  fa.pending = 0;
  fa.cb(fa.cb_arg, 0, 403, "hook said no");
  pump(&c, 2, got_eof);
  assert_memory_equal(c.buf, "HTTP/1.1 403 Forbidden\r\n", 24);
  assert_non_null(strstr((char *)c.buf, "\r\n\r\nhook said no\n"));
  client_close(&c);
  /* the player leaves while pending: the check is cancelled, and nothing
   * is called back afterwards (the sanitizers see a use after free) */
  client_open(&c, later, sizeof(later) - 1);
  pump(&c, 0.1, NULL);
  assert_int_equal(fa.pending, 1);
  client_close(&c);
  pump(NULL, 0.1, NULL);
  assert_int_equal(fa.cancels, 1);
  assert_int_equal(fa.pending, 0);
  /* and one closed by the server while pending is cancelled too */
  client_open(&c, later, sizeof(later) - 1);
  pump(&c, 0.1, NULL);
  assert_int_equal(fa.pending, 1);
  (void)got_head;
  hub_unpublish(st);
  stop();
  assert_int_equal(fa.cancels, 2);
  assert_int_equal(fa.ended, 2);
  client_close(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_live_stream),     cmocka_unit_test(test_not_found_after_wait),
      cmocka_unit_test(test_player_timeline), cmocka_unit_test(test_bad_requests),    cmocka_unit_test(test_head),
      cmocka_unit_test(test_api_bodies),      cmocka_unit_test(test_body_budget),
      cmocka_unit_test(test_api_owns_every_method),
      cmocka_unit_test(test_local_only),      cmocka_unit_test(test_host_is_local),
      cmocka_unit_test(test_max_connections), cmocka_unit_test(test_slow_player),
      cmocka_unit_test(test_kinds_audio_only), cmocka_unit_test(test_kinds_video_held),
      cmocka_unit_test(test_admission),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
