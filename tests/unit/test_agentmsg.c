/* The agent's side of the codec (proto/agentmsg.c): every field of every
 * message an agent reads or sends survives the conversion between the wire
 * and the plain structs; absent rules stay absent; the decoder's bounds
 * still refuse; a configuration copy owns everything. The wire side of each
 * check is built or read with the generated types, as the other end would. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agentmsg.h"
#include "ctlmsg.h"

/* decode_resp packs |r| as the controller would and decodes it as the agent does. */
static int decode_resp(Cascade__Control__Response *r, agentmsg_response_t *out, char *why,
                       size_t whylen) {
  size_t len = 0;
  uint8_t *b = ctlmsg_pack_response(r, &len);
  assert_non_null(b);
  int rv = agentmsg_decode_response(b, len, out, why, whylen);
  free(b);
  return rv;
}

/* decode_req reads what the agent packed as the controller does (|len|
 * by address: it is read after the packing call set it). */
static Cascade__Control__Request *decode_req(uint8_t *b, const size_t *len) {
  char why[128] = "";
  assert_non_null(b);
  Cascade__Control__Request *r = ctlmsg_decode_request(b, *len, why, sizeof(why));
  if (r == NULL) fail_msg("request refused: %s", why);
  free(b);
  return r;
}

static const uint8_t SESSION[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

/* ---- configuration ---------------------------------------------------------- */

static void test_config_every_field(void **state) {
  (void)state;
  Cascade__Control__Response r = CASCADE__CONTROL__RESPONSE__INIT;
  Cascade__Control__Status st = CASCADE__CONTROL__STATUS__INIT;
  Cascade__Control__Config cf = CASCADE__CONTROL__CONFIG__INIT;
  Cascade__Control__Topology t = CASCADE__CONTROL__TOPOLOGY__INIT;
  Cascade__Control__Child k1 = CASCADE__CONTROL__CHILD__INIT, k2 = CASCADE__CONTROL__CHILD__INIT;
  Cascade__Control__Child *kids[2] = {&k1, &k2};
  Cascade__Control__Rules ru = CASCADE__CONTROL__RULES__INIT;
  Cascade__Control__RelayApi ra = CASCADE__CONTROL__RELAY_API__INIT;
  Cascade__Control__PullRules pr = CASCADE__CONTROL__PULL_RULES__INIT;
  Cascade__Control__PullRule p1 = CASCADE__CONTROL__PULL_RULE__INIT;
  Cascade__Control__PullRule p2 = CASCADE__CONTROL__PULL_RULE__INIT;
  Cascade__Control__PullRule *pv[2] = {&p1, &p2};
  Cascade__Control__Flag ap = CASCADE__CONTROL__FLAG__INIT;
  char *allow[2] = {"/api/", "/x/"}, *deny[1] = {"/api/admin/"};
  agentmsg_response_t d;
  char why[128];

  r.id = 99;
  r.status = &st;
  r.body_case = CASCADE__CONTROL__RESPONSE__BODY_CONFIG;
  r.config = &cf;
  cf.generation = 0x1234567890ull;
  cf.topology = &t;
  t.parent_id = 3;
  t.parent_name = "hq";
  t.parent_quic = "10.0.0.1:44944";
  t.parent_epoch = 4;
  k1.id = 9;
  k1.name = "edge-a";
  k1.epoch = 0;
  k2.id = 11;
  k2.name = "edge-b";
  k2.epoch = 6;
  t.children = kids;
  t.n_children = 2;
  cf.rules = &ru;
  ru.relayapi = &ra;
  ra.allow = allow;
  ra.n_allow = 2;
  ra.deny = deny;
  ra.n_deny = 1;
  ru.onsub_pull = &pr;
  p1.pattern = "^live/.*";
  p1.target = "m7s://$0";
  p2.pattern = "^vod/(.*)";
  p2.target = "rtmp://h/$1";
  pr.rules = pv;
  pr.n_rules = 2;
  ru.autopush = &ap;
  ap.value = 1;

  assert_int_equal(decode_resp(&r, &d, why, sizeof(why)), 0);
  assert_int_equal(d.id, 99);
  assert_int_equal(d.code, AGENTMSG_OK);
  assert_string_equal(d.message, "");
  assert_int_equal(d.body, AGENTMSG_BODY_CONFIG);
  assert_int_equal(d.nrelay, 0);
  const agentmsg_config_t *c = &d.config;
  assert_true(c->generation == 0x1234567890ull);
  assert_int_equal(c->parent_id, 3);
  assert_string_equal(c->parent_name, "hq");
  assert_string_equal(c->parent_quic, "10.0.0.1:44944");
  assert_int_equal(c->parent_epoch, 4);
  assert_int_equal(c->nchildren, 2);
  assert_int_equal(c->children[0].id, 9);
  assert_string_equal(c->children[0].name, "edge-a");
  assert_int_equal(c->children[0].epoch, 0);
  assert_int_equal(c->children[1].id, 11);
  assert_string_equal(c->children[1].name, "edge-b");
  assert_int_equal(c->children[1].epoch, 6);
  assert_true(c->rules.has_relayapi);
  assert_int_equal(c->rules.nallow, 2);
  assert_string_equal(c->rules.allow[0], "/api/");
  assert_string_equal(c->rules.allow[1], "/x/");
  assert_int_equal(c->rules.ndeny, 1);
  assert_string_equal(c->rules.deny[0], "/api/admin/");
  assert_true(c->rules.has_pull);
  assert_int_equal(c->rules.npull, 2);
  assert_string_equal(c->rules.pull[0].pattern, "^live/.*");
  assert_string_equal(c->rules.pull[0].target, "m7s://$0");
  assert_string_equal(c->rules.pull[1].pattern, "^vod/(.*)");
  assert_string_equal(c->rules.pull[1].target, "rtmp://h/$1");
  assert_true(c->rules.has_autopush);
  assert_int_equal(c->rules.autopush, 1);

  /* A copy owns everything: it outlives the answer. */
  agentmsg_config_t copy;
  assert_int_equal(agentmsg_config_copy(c, &copy), 0);
  assert_ptr_not_equal(copy.children, c->children);
  assert_ptr_not_equal(copy.rules.allow[0], c->rules.allow[0]);
  agentmsg_response_free(&d);
  agentmsg_response_free(&d); /* zeroed: twice is harmless */
  agentmsg_response_free(NULL);
  assert_string_equal(copy.children[1].name, "edge-b");
  assert_string_equal(copy.rules.pull[1].target, "rtmp://h/$1");
  assert_string_equal(copy.rules.deny[0], "/api/admin/");
  assert_true(copy.generation == 0x1234567890ull);
  agentmsg_config_free(&copy);
  assert_null(copy.children);
  agentmsg_config_free(NULL);

  /* Lists present but empty are kept apart from absent ones: an empty
   * list from the controller replaces the file's. */
  ra.n_allow = ra.n_deny = 0;
  pr.n_rules = 0;
  ap.value = 0;
  assert_int_equal(decode_resp(&r, &d, why, sizeof(why)), 0);
  assert_true(d.config.rules.has_relayapi && d.config.rules.has_pull &&
              d.config.rules.has_autopush);
  assert_int_equal(d.config.rules.nallow + d.config.rules.ndeny + d.config.rules.npull, 0);
  assert_int_equal(d.config.rules.autopush, 0);
  agentmsg_response_free(&d);

  /* Absent topology and rules: no parent, no child, every rule absent. */
  cf.topology = NULL;
  cf.rules = NULL;
  assert_int_equal(decode_resp(&r, &d, why, sizeof(why)), 0);
  assert_int_equal(d.config.parent_id, 0);
  assert_string_equal(d.config.parent_name, "");
  assert_string_equal(d.config.parent_quic, "");
  assert_int_equal(d.config.nchildren, 0);
  assert_false(d.config.rules.has_relayapi || d.config.rules.has_pull ||
               d.config.rules.has_autopush);
  agentmsg_response_free(&d);

  /* Rules present, each list absent. */
  Cascade__Control__Rules empty = CASCADE__CONTROL__RULES__INIT;
  cf.rules = &empty;
  assert_int_equal(decode_resp(&r, &d, why, sizeof(why)), 0);
  assert_false(d.config.rules.has_relayapi || d.config.rules.has_pull ||
               d.config.rules.has_autopush);
  agentmsg_response_free(&d);

  /* The decoder's bounds still hold: a control character in a rule. */
  cf.rules = &ru;
  ra.n_allow = 1;
  allow[0] = "/api/\n";
  memset(&d, 0x5a, sizeof(d));
  assert_int_equal(decode_resp(&r, &d, why, sizeof(why)), -1);
  assert_non_null(strstr(why, "bad allow"));
  assert_null(d.wire);
  assert_null(d.config.children);
}

static void test_config_copy_nulls(void **state) {
  (void)state;
  agentmsg_child_t kid = {5, NULL, 1};
  agentmsg_pull_rule_t pull = {NULL, "t"};
  char *allow[1] = {NULL};
  agentmsg_config_t in, out;
  memset(&in, 0, sizeof(in));
  in.generation = 2;
  in.parent_id = 1;
  in.children = &kid;
  in.nchildren = 1;
  in.rules.has_relayapi = 1;
  in.rules.allow = allow;
  in.rules.nallow = 1;
  in.rules.has_pull = 1;
  in.rules.pull = &pull;
  in.rules.npull = 1;
  in.rules.has_autopush = 1;
  in.rules.autopush = 7; /* any non-zero is true */
  assert_int_equal(agentmsg_config_copy(&in, &out), 0);
  assert_string_equal(out.parent_name, "");
  assert_string_equal(out.parent_quic, "");
  assert_string_equal(out.children[0].name, "");
  assert_int_equal(out.children[0].id, 5);
  assert_int_equal(out.children[0].epoch, 1);
  assert_string_equal(out.rules.allow[0], "");
  assert_int_equal(out.rules.ndeny, 0);
  assert_null(out.rules.deny);
  assert_string_equal(out.rules.pull[0].pattern, "");
  assert_string_equal(out.rules.pull[0].target, "t");
  assert_int_equal(out.rules.autopush, 1);
  agentmsg_config_free(&out);
}

/* ---- other answers ---------------------------------------------------------- */

static void test_answers(void **state) {
  (void)state;
  Cascade__Control__Response r = CASCADE__CONTROL__RESPONSE__INIT;
  Cascade__Control__Status st = CASCADE__CONTROL__STATUS__INIT;
  agentmsg_response_t d;
  char why[128];
  uint8_t x[16], salt[20], sig[32];
  memset(x, 0xab, sizeof(x));
  memset(salt, 0x11, sizeof(salt));
  memset(sig, 0x22, sizeof(sig));
  r.status = &st;

  /* A status alone, with its code and message. */
  r.id = 5;
  st.code = CASCADE__CONTROL__CODE__PENDING;
  st.message = "awaiting approval";
  assert_int_equal(decode_resp(&r, &d, why, sizeof(why)), 0);
  assert_int_equal(d.id, 5);
  assert_int_equal(d.code, AGENTMSG_PENDING);
  assert_string_equal(d.message, "awaiting approval");
  assert_int_equal(d.body, AGENTMSG_BODY_NONE);
  agentmsg_response_free(&d);
  st.code = CASCADE__CONTROL__CODE__OK;
  st.message = "";

  Cascade__Control__AuthChallenge ch = CASCADE__CONTROL__AUTH_CHALLENGE__INIT;
  ch.exchange.data = x;
  ch.exchange.len = 16;
  ch.salt.data = salt;
  ch.salt.len = sizeof(salt);
  ch.iterations = 4096;
  ch.nonce = "clientnonce0123456789serverpart";
  r.body_case = CASCADE__CONTROL__RESPONSE__BODY_AUTH_CHALLENGE;
  r.auth_challenge = &ch;
  assert_int_equal(decode_resp(&r, &d, why, sizeof(why)), 0);
  assert_int_equal(d.body, AGENTMSG_BODY_CHALLENGE);
  assert_memory_equal(d.challenge.exchange, x, 16);
  assert_int_equal(d.challenge.salt_len, sizeof(salt));
  assert_memory_equal(d.challenge.salt, salt, sizeof(salt));
  assert_int_equal(d.challenge.iterations, 4096);
  assert_string_equal(d.challenge.nonce, "clientnonce0123456789serverpart");
  agentmsg_response_free(&d);
  ch.exchange.len = 15; /* a bound of the decoder */
  assert_int_equal(decode_resp(&r, &d, why, sizeof(why)), -1);
  assert_non_null(strstr(why, "exchange"));

  Cascade__Control__AuthOk ok = CASCADE__CONTROL__AUTH_OK__INIT;
  ok.server_signature.data = sig;
  ok.server_signature.len = 32;
  ok.session.data = (uint8_t *)SESSION;
  ok.session.len = 16;
  ok.instance_id = 42;
  ok.heartbeat_ms = 5000;
  ok.epoch = 3;
  r.body_case = CASCADE__CONTROL__RESPONSE__BODY_AUTH_OK;
  r.auth_ok = &ok;
  assert_int_equal(decode_resp(&r, &d, why, sizeof(why)), 0);
  assert_int_equal(d.body, AGENTMSG_BODY_AUTH_OK);
  assert_int_equal(d.auth_ok.server_signature_len, 32);
  assert_memory_equal(d.auth_ok.server_signature, sig, 32);
  assert_memory_equal(d.auth_ok.session, SESSION, 16);
  assert_int_equal(d.auth_ok.instance_id, 42);
  assert_int_equal(d.auth_ok.heartbeat_ms, 5000);
  assert_int_equal(d.auth_ok.epoch, 3);
  agentmsg_response_free(&d);
  ok.instance_id = 0;
  assert_int_equal(decode_resp(&r, &d, why, sizeof(why)), -1);
  assert_non_null(strstr(why, "bad id"));

  Cascade__Control__HeartbeatReply hr = CASCADE__CONTROL__HEARTBEAT_REPLY__INIT;
  hr.desired_generation = 77;
  hr.cert_not_after = 1800000000;
  r.body_case = CASCADE__CONTROL__RESPONSE__BODY_HEARTBEAT_REPLY;
  r.heartbeat_reply = &hr;
  assert_int_equal(decode_resp(&r, &d, why, sizeof(why)), 0);
  assert_int_equal(d.body, AGENTMSG_BODY_HEARTBEAT_REPLY);
  assert_int_equal(d.heartbeat_reply.desired_generation, 77);
  assert_int_equal(d.heartbeat_reply.cert_not_after, 1800000000);
  agentmsg_response_free(&d);

  Cascade__Control__Certificate ce = CASCADE__CONTROL__CERTIFICATE__INIT;
  ce.cert = "-----BEGIN CERTIFICATE-----\nnode\n";
  ce.ca = "-----BEGIN CERTIFICATE-----\nca\n";
  ce.not_after = 1900000000;
  r.body_case = CASCADE__CONTROL__RESPONSE__BODY_CERTIFICATE;
  r.certificate = &ce;
  assert_int_equal(decode_resp(&r, &d, why, sizeof(why)), 0);
  assert_int_equal(d.body, AGENTMSG_BODY_CERTIFICATE);
  assert_string_equal(d.certificate.cert, ce.cert);
  assert_string_equal(d.certificate.ca, ce.ca);
  assert_int_equal(d.certificate.not_after, 1900000000);
  agentmsg_response_free(&d);
  ce.ca = "";
  assert_int_equal(decode_resp(&r, &d, why, sizeof(why)), 0);
  assert_string_equal(d.certificate.ca, "");
  agentmsg_response_free(&d);

  Cascade__Control__CaCertificate ca = CASCADE__CONTROL__CA_CERTIFICATE__INIT;
  ca.ca = "-----BEGIN CERTIFICATE-----\ncontroller ca\n";
  r.body_case = CASCADE__CONTROL__RESPONSE__BODY_CA;
  r.ca = &ca;
  assert_int_equal(decode_resp(&r, &d, why, sizeof(why)), 0);
  assert_int_equal(d.body, AGENTMSG_BODY_CA);
  assert_string_equal(d.ca, ca.ca);
  agentmsg_response_free(&d);

  Cascade__Control__RelayAck ack = CASCADE__CONTROL__RELAY_ACK__INIT;
  ack.cancelled = 1;
  r.body_case = CASCADE__CONTROL__RESPONSE__BODY_RELAY_ACK;
  r.relay_ack = &ack;
  assert_int_equal(decode_resp(&r, &d, why, sizeof(why)), 0);
  assert_int_equal(d.body, AGENTMSG_BODY_RELAY_ACK);
  assert_int_equal(d.relay_cancelled, 1);
  agentmsg_response_free(&d);

  /* What the decoder refuses before any conversion. */
  static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff};
  assert_int_equal(agentmsg_decode_response(garbage, sizeof(garbage), &d, why, sizeof(why)), -1);
  assert_int_equal(agentmsg_decode_response(garbage, CTLMSG_MAX + 1, &d, why, sizeof(why)), -1);
  assert_non_null(strstr(why, "over"));
  r.status = NULL;
  assert_int_equal(decode_resp(&r, &d, why, sizeof(why)), -1);
  assert_non_null(strstr(why, "no status"));
}

static void test_relay_ack(void **state) {
  (void)state;
  Cascade__Control__Response r = CASCADE__CONTROL__RESPONSE__INIT;
  Cascade__Control__Status st = CASCADE__CONTROL__STATUS__INIT;
  Cascade__Control__RelayAck ack = CASCADE__CONTROL__RELAY_ACK__INIT;
  Cascade__Control__HeartbeatReply hr = CASCADE__CONTROL__HEARTBEAT_REPLY__INIT;
  size_t len;
  uint8_t *b;
  r.status = &st;
  r.body_case = CASCADE__CONTROL__RESPONSE__BODY_RELAY_ACK;
  r.relay_ack = &ack;
  struct {
    int code, body_ack, cancelled, want;
  } cases[] = {
      {CASCADE__CONTROL__CODE__OK, 1, 0, 0},          /* go on */
      {CASCADE__CONTROL__CODE__OK, 1, 1, 1},          /* the caller is gone */
      {CASCADE__CONTROL__CODE__NO_SESSION, 1, 0, 1},  /* refused */
      {CASCADE__CONTROL__CODE__OK, 0, 0, 1},          /* not an ack */
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
    st.code = cases[i].code;
    ack.cancelled = cases[i].cancelled;
    if (cases[i].body_ack) {
      r.body_case = CASCADE__CONTROL__RESPONSE__BODY_RELAY_ACK;
      r.relay_ack = &ack;
    } else {
      r.body_case = CASCADE__CONTROL__RESPONSE__BODY_HEARTBEAT_REPLY;
      r.heartbeat_reply = &hr;
    }
    b = ctlmsg_pack_response(&r, &len);
    assert_non_null(b);
    assert_int_equal(agentmsg_relay_ack_cancelled(b, len), cases[i].want);
    free(b);
  }
  static const uint8_t garbage[] = {0x0a, 0xff};
  assert_int_equal(agentmsg_relay_ack_cancelled(garbage, sizeof(garbage)), 1);
}

/* ---- relay requests of a poll answer ---------------------------------------- */

static void test_relay_requests(void **state) {
  (void)state;
  Cascade__Control__Response r = CASCADE__CONTROL__RESPONSE__INIT;
  Cascade__Control__Status st = CASCADE__CONTROL__STATUS__INIT;
  Cascade__Control__Config cf = CASCADE__CONTROL__CONFIG__INIT;
  Cascade__Control__RelayRequest q1 = CASCADE__CONTROL__RELAY_REQUEST__INIT;
  Cascade__Control__RelayRequest q2 = CASCADE__CONTROL__RELAY_REQUEST__INIT;
  Cascade__Control__RelayRequest q3 = CASCADE__CONTROL__RELAY_REQUEST__INIT;
  Cascade__Control__RelayRequest *qs[3] = {&q1, &q2, &q3};
  Cascade__Control__Header hv[RELAYBOUNDS_HEADERS_MAX + 1], *hp[RELAYBOUNDS_HEADERS_MAX + 1];
  uint8_t body[300];
  relay_header_t rh[RELAYBOUNDS_HEADERS_MAX];
  relay_request_t q;
  agentmsg_response_t d;
  char why[128];

  for (size_t i = 0; i < sizeof(body); i++) body[i] = (uint8_t)i;
  for (size_t i = 0; i <= RELAYBOUNDS_HEADERS_MAX; i++) {
    cascade__control__header__init(&hv[i]);
    hv[i].name = "X-Many";
    hv[i].value = "v";
    hp[i] = &hv[i];
  }
  hv[0].name = "Content-Type";
  hv[0].value = "text/plain";
  hv[1].name = "X-Empty";
  hv[1].value = "";
  r.status = &st;
  r.body_case = CASCADE__CONTROL__RESPONSE__BODY_CONFIG;
  r.config = &cf; /* generation 0: nothing new */
  q1.id = 1001;
  q1.method = "POST";
  q1.path = "/api/cascade/echo";
  q1.query = "a=1&b=x%20y";
  q1.headers = hp;
  q1.n_headers = 2;
  q1.body.data = body;
  q1.body.len = sizeof(body);
  q2.id = 1002;
  q2.method = "get"; /* lower case: breaks a bound */
  q2.path = "/api/x";
  q3.id = 1003;
  q3.method = "GET";
  q3.path = "/api/x";
  q3.headers = hp;
  q3.n_headers = RELAYBOUNDS_HEADERS_MAX + 1;
  r.relay = qs;
  r.n_relay = 3;
  assert_int_equal(decode_resp(&r, &d, why, sizeof(why)), 0);
  assert_int_equal(d.nrelay, 3);
  assert_int_equal(d.config.generation, 0);

  assert_int_equal(agentmsg_relay_request(&d, 0, &q, rh, why, sizeof(why)), 0);
  assert_int_equal(q.id, 1001);
  assert_string_equal(q.method, "POST");
  assert_string_equal(q.path, "/api/cascade/echo");
  assert_string_equal(q.query, "a=1&b=x%20y");
  assert_int_equal(q.nheaders, 2);
  assert_string_equal(q.headers[0].name, "Content-Type");
  assert_string_equal(q.headers[0].value, "text/plain");
  assert_string_equal(q.headers[1].name, "X-Empty");
  assert_string_equal(q.headers[1].value, "");
  assert_int_equal(q.body_len, sizeof(body));
  assert_memory_equal(q.body, body, sizeof(body));

  /* One bad request fails alone, its id kept to answer it. */
  memset(&q, 0x5a, sizeof(q));
  assert_int_equal(agentmsg_relay_request(&d, 1, &q, rh, why, sizeof(why)), -1);
  assert_int_equal(q.id, 1002);
  assert_non_null(strstr(why, "method"));
  assert_null(q.headers);
  assert_int_equal(agentmsg_relay_request(&d, 2, &q, rh, why, sizeof(why)), -1);
  assert_int_equal(q.id, 1003);
  assert_non_null(strstr(why, "headers"));
  assert_int_equal(q.nheaders, 0);
  /* Exactly at the bound: every header, none dropped. */
  agentmsg_response_free(&d);
  q3.n_headers = RELAYBOUNDS_HEADERS_MAX;
  assert_int_equal(decode_resp(&r, &d, why, sizeof(why)), 0);
  assert_int_equal(agentmsg_relay_request(&d, 2, &q, rh, why, sizeof(why)), 0);
  assert_int_equal(q.nheaders, RELAYBOUNDS_HEADERS_MAX);
  assert_string_equal(q.query, "");
  assert_int_equal(q.body_len, 0);
  agentmsg_response_free(&d);
}

/* ---- requests --------------------------------------------------------------- */

static void test_requests(void **state) {
  (void)state;
  agentmsg_head_t h = {7, NULL};
  Cascade__Control__Request *r;
  size_t len = 0;

  r = decode_req(agentmsg_pack_ca_request(&h, &len), &len);
  assert_int_equal(r->id, 7);
  assert_int_equal(r->session.len, 0);
  assert_int_equal(r->body_case, CASCADE__CONTROL__REQUEST__BODY_CA_REQUEST);
  ctlmsg_free_request(r);

  h.id = 8;
  r = decode_req(agentmsg_pack_register(&h, "edge-a", "SCRAM-SHA-256$4096:c2FsdA==$a:b", "join_x",
                                        &len), &len);
  assert_int_equal(r->id, 8);
  assert_int_equal(r->body_case, CASCADE__CONTROL__REQUEST__BODY_REGISTER);
  assert_string_equal(r->register_->name, "edge-a");
  assert_string_equal(r->register_->verifier, "SCRAM-SHA-256$4096:c2FsdA==$a:b");
  assert_string_equal(r->register_->join_token, "join_x");
  ctlmsg_free_request(r);

  r = decode_req(agentmsg_pack_auth_start(&h, "edge-a", "0123456789abcdefXYZ", &len), &len);
  assert_int_equal(r->body_case, CASCADE__CONTROL__REQUEST__BODY_AUTH_START);
  assert_string_equal(r->auth_start->name, "edge-a");
  assert_string_equal(r->auth_start->client_nonce, "0123456789abcdefXYZ");
  ctlmsg_free_request(r);

  uint8_t x[16], proof[32];
  memset(x, 0x33, sizeof(x));
  memset(proof, 0x44, sizeof(proof));
  agentmsg_advertise_t adv = {"10.0.0.2:44944", "0.0.0.0:8080", "", "parent:44944", "1.2.3"};
  r = decode_req(agentmsg_pack_auth_finish(&h, x, proof, sizeof(proof), &adv, &len), &len);
  assert_int_equal(r->body_case, CASCADE__CONTROL__REQUEST__BODY_AUTH_FINISH);
  assert_int_equal(r->auth_finish->exchange.len, 16);
  assert_memory_equal(r->auth_finish->exchange.data, x, 16);
  assert_int_equal(r->auth_finish->proof.len, 32);
  assert_memory_equal(r->auth_finish->proof.data, proof, 32);
  assert_string_equal(r->auth_finish->advertise->quic, "10.0.0.2:44944");
  assert_string_equal(r->auth_finish->advertise->http, "0.0.0.0:8080");
  assert_string_equal(r->auth_finish->advertise->rtmp, "");
  assert_string_equal(r->auth_finish->advertise->static_parent, "parent:44944");
  assert_string_equal(r->auth_finish->advertise->version, "1.2.3");
  ctlmsg_free_request(r);

  /* From here on, the session rides along. */
  h.session = SESSION;
  h.id = 9;
  r = decode_req(agentmsg_pack_poll(&h, 0xfedcba9876ull, &len), &len);
  assert_int_equal(r->id, 9);
  assert_int_equal(r->session.len, 16);
  assert_memory_equal(r->session.data, SESSION, 16);
  assert_int_equal(r->body_case, CASCADE__CONTROL__REQUEST__BODY_POLL);
  assert_true(r->poll->known_generation == 0xfedcba9876ull);
  ctlmsg_free_request(r);

  r = decode_req(agentmsg_pack_cert_request(&h, "-----BEGIN CERTIFICATE REQUEST-----\n", &len),
                 &len);
  assert_int_equal(r->body_case, CASCADE__CONTROL__REQUEST__BODY_CERT_REQUEST);
  assert_string_equal(r->cert_request->csr, "-----BEGIN CERTIFICATE REQUEST-----\n");
  ctlmsg_free_request(r);
}

static void test_heartbeat(void **state) {
  (void)state;
  agentmsg_head_t h = {11, SESSION};
  agentmsg_link_report_t links[2] = {
      {3, AGENTMSG_LINK_PARENT, 1, 1500, 1000, 2000, 4, 1700000000},
      {9, AGENTMSG_LINK_CHILD, 0, 0, 5, 6, 0, 0},
  };
  agentmsg_stream_report_t streams[2];
  agentmsg_heartbeat_t hb;
  Cascade__Control__Request *r;
  size_t len = 0;

  memset(streams, 0, sizeof(streams));
  streams[0].path = "live/cam1";
  streams[0].origin = AGENTMSG_ORIGIN_PUSHED;
  streams[0].origin_node = 12;
  streams[0].publisher_since = 1700000100;
  streams[0].players[0].protocol = "rtmp";
  streams[0].players[0].count = 2;
  streams[0].players[1].protocol = "httpflv";
  streams[0].players[1].count = 5;
  streams[0].nplayers = 2;
  streams[1].path = "live/cam2";
  streams[1].origin = AGENTMSG_ORIGIN_PULLED;
  streams[1].nplayers = AGENTMSG_PLAYERS_MAX + 3; /* more than there is room for: clamped */
  for (size_t i = 0; i < AGENTMSG_PLAYERS_MAX; i++) streams[1].players[i].protocol = "rtmp";
  memset(&hb, 0, sizeof(hb));
  hb.applied_generation = 41;
  hb.static_parent_id = 3;
  hb.stats.streams = 2;
  hb.stats.links = 1;
  hb.stats.bytes_in = 2006;
  hb.stats.bytes_out = 1005;
  hb.stats.subscribers = 7;
  hb.links = links;
  hb.nlinks = 2;
  hb.streams = streams;
  hb.nstreams = 2;
  hb.streams_reported = 1;
  hb.streams_total = 3000;

  r = decode_req(agentmsg_pack_heartbeat(&h, &hb, &len), &len);
  assert_int_equal(r->id, 11);
  assert_memory_equal(r->session.data, SESSION, 16);
  assert_int_equal(r->body_case, CASCADE__CONTROL__REQUEST__BODY_HEARTBEAT);
  const Cascade__Control__Heartbeat *w = r->heartbeat;
  assert_int_equal(w->applied_generation, 41);
  assert_int_equal(w->static_parent_id, 3);
  assert_int_equal(w->stats->streams, 2);
  assert_int_equal(w->stats->links, 1);
  assert_int_equal(w->stats->bytes_in, 2006);
  assert_int_equal(w->stats->bytes_out, 1005);
  assert_int_equal(w->stats->subscribers, 7);
  assert_int_equal(w->n_links, 2);
  assert_int_equal(w->links[0]->peer_id, 3);
  assert_int_equal(w->links[0]->role, CASCADE__CONTROL__LINK_ROLE__LINK_PARENT);
  assert_true(w->links[0]->up);
  assert_int_equal(w->links[0]->rtt_us, 1500);
  assert_int_equal(w->links[0]->bytes_sent, 1000);
  assert_int_equal(w->links[0]->bytes_recv, 2000);
  assert_int_equal(w->links[0]->lost, 4);
  assert_int_equal(w->links[0]->up_since, 1700000000);
  assert_int_equal(w->links[1]->role, CASCADE__CONTROL__LINK_ROLE__LINK_CHILD);
  assert_false(w->links[1]->up);
  assert_int_equal(w->links[1]->bytes_sent, 5);
  assert_int_equal(w->n_streams, 2);
  assert_string_equal(w->streams[0]->path, "live/cam1");
  assert_int_equal(w->streams[0]->origin, CASCADE__CONTROL__STREAM_ORIGIN__ORIGIN_PUSHED);
  assert_int_equal(w->streams[0]->origin_node, 12);
  assert_int_equal(w->streams[0]->publisher_since, 1700000100);
  assert_int_equal(w->streams[0]->n_players, 2);
  assert_string_equal(w->streams[0]->players[0]->protocol, "rtmp");
  assert_int_equal(w->streams[0]->players[0]->count, 2);
  assert_string_equal(w->streams[0]->players[1]->protocol, "httpflv");
  assert_int_equal(w->streams[0]->players[1]->count, 5);
  assert_int_equal(w->streams[1]->origin, CASCADE__CONTROL__STREAM_ORIGIN__ORIGIN_PULLED);
  assert_int_equal(w->streams[1]->n_players, AGENTMSG_PLAYERS_MAX);
  assert_true(w->streams_reported);
  assert_int_equal(w->streams_total, 3000);
  ctlmsg_free_request(r);

  /* Stream events ride along, each field as given. */
  agentmsg_stream_event_t ev[2] = {
      {7, 1700000200, "stream.kick", "live/cam1", 41, "10.0.0.5:51234", "player", "rtmp", 1},
      {8, 1700000201, "stream.drop", "live/cam2", 0, NULL, NULL, NULL, 3},
  };
  hb.events = ev;
  hb.nevents = 2;
  hb.events_dropped = 5;
  r = decode_req(agentmsg_pack_heartbeat(&h, &hb, &len), &len);
  w = r->heartbeat;
  assert_int_equal(w->n_stream_events, 2);
  assert_int_equal(w->stream_events[0]->seq, 7);
  assert_int_equal(w->stream_events[0]->time, 1700000200);
  assert_string_equal(w->stream_events[0]->action, "stream.kick");
  assert_string_equal(w->stream_events[0]->path, "live/cam1");
  assert_int_equal(w->stream_events[0]->connection, 41);
  assert_string_equal(w->stream_events[0]->addr, "10.0.0.5:51234");
  assert_string_equal(w->stream_events[0]->kind, "player");
  assert_string_equal(w->stream_events[0]->protocol, "rtmp");
  assert_string_equal(w->stream_events[1]->action, "stream.drop");
  assert_string_equal(w->stream_events[1]->addr, "");
  assert_int_equal(w->stream_events[1]->ended, 3);
  assert_int_equal(w->stream_events_dropped, 5);
  ctlmsg_free_request(r);
  hb.events = NULL;
  hb.nevents = 0;

  /* No report: the controller keeps the previous one. */
  hb.streams = NULL;
  hb.nstreams = 0;
  hb.streams_reported = 0;
  hb.streams_total = 0;
  hb.links = NULL;
  hb.nlinks = 0;
  r = decode_req(agentmsg_pack_heartbeat(&h, &hb, &len), &len);
  assert_int_equal(r->heartbeat->n_streams, 0);
  assert_int_equal(r->heartbeat->n_links, 0);
  assert_false(r->heartbeat->streams_reported);
  ctlmsg_free_request(r);
}

static void test_relay_response(void **state) {
  (void)state;
  agentmsg_head_t h = {12, SESSION};
  relay_header_t hv[2] = {{"Content-Type", "application/json"}, {"X-A", ""}};
  uint8_t data[1000];
  relay_response_t m = {777, 200, hv, 2, data, sizeof(data), 0};
  Cascade__Control__Request *r;
  size_t len = 0;

  for (size_t i = 0; i < sizeof(data); i++) data[i] = (uint8_t)(i * 7);
  r = decode_req(agentmsg_pack_relay_response(&h, &m, &len), &len);
  assert_int_equal(r->id, 12);
  assert_memory_equal(r->session.data, SESSION, 16);
  assert_int_equal(r->body_case, CASCADE__CONTROL__REQUEST__BODY_RELAY_RESPONSE);
  const Cascade__Control__RelayResponse *w = r->relay_response;
  assert_int_equal(w->id, 777);
  assert_int_equal(w->status, 200);
  assert_int_equal(w->n_headers, 2);
  assert_string_equal(w->headers[0]->name, "Content-Type");
  assert_string_equal(w->headers[0]->value, "application/json");
  assert_string_equal(w->headers[1]->name, "X-A");
  assert_int_equal(w->data.len, sizeof(data));
  assert_memory_equal(w->data.data, data, sizeof(data));
  assert_false(w->end);
  ctlmsg_free_request(r);

  /* A later message: no status, no headers, the end. */
  relay_response_t last = {777, 0, NULL, 0, NULL, 0, 1};
  r = decode_req(agentmsg_pack_relay_response(&h, &last, &len), &len);
  assert_int_equal(r->relay_response->status, 0);
  assert_int_equal(r->relay_response->n_headers, 0);
  assert_int_equal(r->relay_response->data.len, 0);
  assert_true(r->relay_response->end);
  ctlmsg_free_request(r);

  /* Over the message cap: nothing is packed. */
  uint8_t *big = calloc(1, CTLMSG_MAX + 1);
  assert_non_null(big);
  relay_response_t huge = {777, 0, NULL, 0, big, CTLMSG_MAX + 1, 1};
  assert_null(agentmsg_pack_relay_response(&h, &huge, &len));
  free(big);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_config_every_field),
      cmocka_unit_test(test_config_copy_nulls),
      cmocka_unit_test(test_answers),
      cmocka_unit_test(test_relay_ack),
      cmocka_unit_test(test_relay_requests),
      cmocka_unit_test(test_requests),
      cmocka_unit_test(test_heartbeat),
      cmocka_unit_test(test_relay_response),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
