/* The control channel codec: round trips, the size cap, every bound. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ctlmsg.h"

static uint8_t *pack_req(Cascade__Control__Request *r, size_t *len) {
  uint8_t *b = ctlmsg_pack_request(r, len);
  assert_non_null(b);
  return b;
}

static void expect_req_refused(Cascade__Control__Request *r, const char *why_part) {
  size_t len;
  char why[128] = "";
  uint8_t *b = pack_req(r, &len);
  assert_null(ctlmsg_decode_request(b, len, why, sizeof(why)));
  assert_non_null(strstr(why, why_part));
  free(b);
}

static void test_auth_start_round_trip(void **state) {
  (void)state;
  Cascade__Control__Request r = CASCADE__CONTROL__REQUEST__INIT;
  Cascade__Control__AuthStart a = CASCADE__CONTROL__AUTH_START__INIT;
  a.name = "edge-a1";
  a.client_nonce = "0123456789abcdefXYZ";
  r.id = 7;
  r.body_case = CASCADE__CONTROL__REQUEST__BODY_AUTH_START;
  r.auth_start = &a;
  size_t len;
  char why[128];
  uint8_t *b = pack_req(&r, &len);
  Cascade__Control__Request *d = ctlmsg_decode_request(b, len, why, sizeof(why));
  assert_non_null(d);
  assert_int_equal(d->id, 7);
  assert_string_equal(d->auth_start->name, "edge-a1");
  assert_string_equal(d->auth_start->client_nonce, "0123456789abcdefXYZ");
  ctlmsg_free_request(d);
  free(b);
}

static void test_request_bounds(void **state) {
  (void)state;
  Cascade__Control__Request r = CASCADE__CONTROL__REQUEST__INIT;
  Cascade__Control__AuthStart a = CASCADE__CONTROL__AUTH_START__INIT;
  r.body_case = CASCADE__CONTROL__REQUEST__BODY_AUTH_START;
  r.auth_start = &a;
  a.name = "edge";
  a.client_nonce = "short";
  expect_req_refused(&r, "nonce");
  a.client_nonce = "0123456789abcdef,comma";
  expect_req_refused(&r, "nonce");
  a.client_nonce = "0123456789abcdef";
  a.name = "";
  expect_req_refused(&r, "name");
  a.name = "bad\nname";
  expect_req_refused(&r, "name");
  char long_name[80];
  memset(long_name, 'n', sizeof(long_name) - 1);
  long_name[79] = '\0';
  a.name = long_name;
  expect_req_refused(&r, "name");

  Cascade__Control__AuthFinish f = CASCADE__CONTROL__AUTH_FINISH__INIT;
  uint8_t x[16] = {0}, proof[31] = {0};
  f.exchange.data = x;
  f.exchange.len = 16;
  f.proof.data = proof;
  f.proof.len = 31;
  r.body_case = CASCADE__CONTROL__REQUEST__BODY_AUTH_FINISH;
  r.auth_finish = &f;
  expect_req_refused(&r, "proof");

  uint8_t sess[15] = {0};
  Cascade__Control__Heartbeat h = CASCADE__CONTROL__HEARTBEAT__INIT;
  r.body_case = CASCADE__CONTROL__REQUEST__BODY_HEARTBEAT;
  r.heartbeat = &h;
  r.session.data = sess;
  r.session.len = 15;
  expect_req_refused(&r, "session");

  /* stream events: a known action, a valid path, bounded printable fields */
  uint8_t good_sess[16] = {0};
  r.session.data = good_sess;
  r.session.len = 16;
  Cascade__Control__StreamEvent e = CASCADE__CONTROL__STREAM_EVENT__INIT, *ep = &e;
  e.action = "stream.kick";
  e.path = "live/a";
  e.addr = "127.0.0.1:5000";
  h.stream_events = &ep;
  h.n_stream_events = 1;
  size_t len;
  char why[128];
  uint8_t *b = pack_req(&r, &len);
  Cascade__Control__Request *d = ctlmsg_decode_request(b, len, why, sizeof(why));
  assert_non_null(d);
  ctlmsg_free_request(d);
  free(b);
  e.action = "stream.delete";
  expect_req_refused(&r, "action");
  e.action = "stream.drop";
  e.path = "";
  expect_req_refused(&r, "path");
  e.path = "live/a\nb";
  expect_req_refused(&r, "path");
  e.path = "live/a";
  char addr[80];
  memset(addr, '1', sizeof(addr) - 1);
  addr[79] = '\0';
  e.addr = addr;
  expect_req_refused(&r, "stream event");
  e.addr = "";
  e.protocol = "rtmp\x01";
  expect_req_refused(&r, "stream event");
  h.n_stream_events = 0;
  r.session.data = sess;
  r.session.len = 15;

  /* no body at all */
  Cascade__Control__Request empty = CASCADE__CONTROL__REQUEST__INIT;
  expect_req_refused(&empty, "body");
}

static void test_garbage_and_cap(void **state) {
  (void)state;
  char why[128];
  uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
  assert_null(ctlmsg_decode_request(junk, sizeof(junk), why, sizeof(why)));
  assert_null(ctlmsg_decode_response(junk, sizeof(junk), why, sizeof(why)));
  size_t big = CTLMSG_MAX + 1;
  uint8_t *b = calloc(1, big);
  assert_null(ctlmsg_decode_request(b, big, why, sizeof(why)));
  assert_non_null(strstr(why, "over"));
  free(b);
}

static void test_response_bounds(void **state) {
  (void)state;
  Cascade__Control__Response r = CASCADE__CONTROL__RESPONSE__INIT;
  Cascade__Control__Status st = CASCADE__CONTROL__STATUS__INIT;
  Cascade__Control__AuthChallenge c = CASCADE__CONTROL__AUTH_CHALLENGE__INIT;
  uint8_t x[16] = {0}, salt[16] = {0};
  char why[128];
  size_t len;
  st.message = "";
  r.status = &st;
  r.body_case = CASCADE__CONTROL__RESPONSE__BODY_AUTH_CHALLENGE;
  r.auth_challenge = &c;
  c.exchange.data = x;
  c.exchange.len = 16;
  c.salt.data = salt;
  c.salt.len = 16;
  c.iterations = 4096;
  c.nonce = "abcdefghijklmnopqrstuvwxyz";
  uint8_t *b = ctlmsg_pack_response(&r, &len);
  Cascade__Control__Response *d = ctlmsg_decode_response(b, len, why, sizeof(why));
  assert_non_null(d);
  ctlmsg_free_response(d);
  free(b);
  c.iterations = 1; /* a controller may not make the agent cheap to attack */
  b = ctlmsg_pack_response(&r, &len);
  assert_null(ctlmsg_decode_response(b, len, why, sizeof(why)));
  assert_non_null(strstr(why, "iterations"));
  free(b);
  /* a status alone (Register's OK, every error) is a valid answer */
  r.body_case = CASCADE__CONTROL__RESPONSE__BODY__NOT_SET;
  b = ctlmsg_pack_response(&r, &len);
  d = ctlmsg_decode_response(b, len, why, sizeof(why));
  assert_non_null(d);
  ctlmsg_free_response(d);
  free(b);
  /* no status */
  r.status = NULL;
  b = ctlmsg_pack_response(&r, &len);
  assert_null(ctlmsg_decode_response(b, len, why, sizeof(why)));
  free(b);
}

/* A poll answer with bad relay requests among good ones decodes: the bad
 * ones fail their own check, the good ones and the configuration stay. */
static void test_bad_relay_among_good(void **state) {
  (void)state;
  Cascade__Control__Response r = CASCADE__CONTROL__RESPONSE__INIT;
  Cascade__Control__Status st = CASCADE__CONTROL__STATUS__INIT;
  Cascade__Control__Config cf = CASCADE__CONTROL__CONFIG__INIT;
  enum { N = 8 };
  Cascade__Control__RelayRequest q[N], *qp[N];
  Cascade__Control__Header h = CASCADE__CONTROL__HEADER__INIT, *hp[1] = {&h};
  static char pipes[4300], longq[4200];
  char why[128];
  size_t len;

  memset(pipes, '|', sizeof(pipes) - 1);
  pipes[0] = '/';
  memset(longq, 'q', sizeof(longq) - 1);
  h.name = "Bad Name";
  h.value = "v";
  for (int i = 0; i < N; i++) {
    cascade__control__relay_request__init(&q[i]);
    q[i].id = (uint64_t)i + 1;
    q[i].method = "GET";
    q[i].path = "/api/stream/list";
    q[i].query = "";
    qp[i] = &q[i];
  }
  q[1].method = "get";
  q[2].method = "M-SEARCH";
  q[3].method = "ABCDEFGHIJKLMNOPQ";
  q[4].path = pipes;             /* over 4,095 bytes */
  q[5].query = longq;            /* over 4,095 bytes */
  q[6].headers = hp;             /* a space in a name */
  q[6].n_headers = 1;
  st.message = "";
  r.id = 3;
  r.status = &st;
  r.body_case = CASCADE__CONTROL__RESPONSE__BODY_CONFIG;
  r.config = &cf;
  cf.generation = 42;
  r.relay = qp;
  r.n_relay = N;
  uint8_t *b = ctlmsg_pack_response(&r, &len);
  assert_non_null(b);
  Cascade__Control__Response *d = ctlmsg_decode_response(b, len, why, sizeof(why));
  assert_non_null(d);
  assert_int_equal(d->config->generation, 42);
  assert_int_equal(d->n_relay, N);
  for (int i = 0; i < N; i++) {
    int good = i == 0 || i == N - 1;
    assert_int_equal(d->relay[i]->id, i + 1);
    assert_int_equal(ctlmsg_relay_request_check(d->relay[i], why, sizeof(why)), good ? 0 : -1);
  }
  ctlmsg_free_response(d);
  free(b);
}

/* The relay's plain views (relaymsg.h) convert both ways without loss, and
 * a view is judged like the wire message it stands for. */
static void test_relay_views(void **state) {
  (void)state;
  relay_header_t h[2] = {{"Accept", "*/*"}, {"X-Forwarded-For", "10.0.0.1"}};
  relay_request_t in = {42, "GET", "/api/x", "a=1", h, 2, (const uint8_t *)"body", 4};
  Cascade__Control__RelayRequest w;
  Cascade__Control__Header hv[2], *hp[2];
  ctlmsg_relay_request_wire(&in, &w, hv, hp);
  assert_int_equal(w.id, 42);
  assert_string_equal(w.method, "GET");
  assert_string_equal(w.path, "/api/x");
  assert_string_equal(w.query, "a=1");
  assert_int_equal(w.n_headers, 2);
  assert_string_equal(w.headers[1]->name, "X-Forwarded-For");
  assert_string_equal(w.headers[1]->value, "10.0.0.1");
  assert_int_equal(w.body.len, 4);
  assert_memory_equal(w.body.data, "body", 4);
  char why[128] = "";
  if (ctlmsg_relay_request_judge(&in, why, sizeof(why)) != 0) fail_msg("%s", why);
  in.method = "get";
  assert_int_equal(ctlmsg_relay_request_judge(&in, why, sizeof(why)), -1);
  assert_non_null(strstr(why, "method"));
  in.method = "GET";
  in.id = 0;
  assert_int_equal(ctlmsg_relay_request_judge(&in, why, sizeof(why)), -1);

  Cascade__Control__RelayResponse m = CASCADE__CONTROL__RELAY_RESPONSE__INIT;
  m.id = 7;
  m.status = 200;
  m.n_headers = 2;
  m.headers = hp;
  m.data.data = (uint8_t *)"abc";
  m.data.len = 3;
  m.end = 1;
  relay_response_t v;
  relay_header_t vh[CTLMSG_RELAY_HEADERS_MAX];
  ctlmsg_relay_response_view(&m, &v, vh);
  assert_int_equal(v.id, 7);
  assert_int_equal(v.status, 200);
  assert_int_equal(v.nheaders, 2);
  assert_string_equal(v.headers[0].name, "Accept");
  assert_string_equal(v.headers[0].value, "*/*");
  assert_int_equal(v.len, 3);
  assert_memory_equal(v.data, "abc", 3);
  assert_true(v.end);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_auth_start_round_trip),
      cmocka_unit_test(test_request_bounds),
      cmocka_unit_test(test_garbage_and_cap),
      cmocka_unit_test(test_response_bounds),
      cmocka_unit_test(test_bad_relay_among_good),
      cmocka_unit_test(test_relay_views),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
