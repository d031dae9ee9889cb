/* Control channel codec: see ctlmsg.h. */
#include "ctlmsg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ctlmsg_text_ok(const char *s, size_t max) {
  size_t n = 0;
  const unsigned char *p = (const unsigned char *)s;
  if (s == NULL) return 1;
  for (; *p; p++, n++) {
    if (n >= max || *p < 0x20 || *p == 0x7f) return 0;
  }
  return 1;
}

/* ascii_ok: addresses and versions are printable ASCII. */
static int ascii_ok(const char *s, size_t max) {
  size_t n = 0;
  if (s == NULL) return 1;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++, n++)
    if (n >= max || *p < 0x20 || *p >= 0x7f) return 0;
  return 1;
}

#define CHECK(cond, msg)                     \
  do {                                       \
    if (!(cond)) {                           \
      snprintf(why, whylen, "%s", msg);      \
      return -1;                             \
    }                                        \
  } while (0)

/* headers_ok: relay header lists (names are HTTP tokens). */
static int headers_ok(Cascade__Control__Header *const *h, size_t n) {
  if (n > CTLMSG_RELAY_HEADERS_MAX) return 0;
  for (size_t i = 0; i < n; i++) {
    const char *name = h[i]->name;
    if (name == NULL || name[0] == '\0' || strlen(name) > CTLMSG_RELAY_HNAME_MAX) return 0;
    for (const char *p = name; *p; p++)
      if (*p <= 0x20 || *p >= 0x7f || *p == ':') return 0;
    if (!ascii_ok(h[i]->value, CTLMSG_RELAY_HVALUE_MAX)) return 0;
  }
  return 1;
}

int ctlmsg_relay_request_check(const Cascade__Control__RelayRequest *q, char *why,
                               size_t whylen) {
  relaybounds_headers_t hb = {0, 0};
  const char *e;
  CHECK(q->id != 0, "no id");
  if ((e = relaybounds_method(q->method)) != NULL) {
    snprintf(why, whylen, "method: %s", e);
    return -1;
  }
  if ((e = relaybounds_path(q->path)) != NULL) {
    snprintf(why, whylen, "path: %s", e);
    return -1;
  }
  if ((e = relaybounds_query(q->query)) != NULL) {
    snprintf(why, whylen, "query: %s", e);
    return -1;
  }
  for (size_t i = 0; i < q->n_headers; i++)
    if ((e = relaybounds_header_add(&hb, q->headers[i]->name, q->headers[i]->value)) != NULL) {
      snprintf(why, whylen, "headers: %s", e);
      return -1;
    }
  CHECK(q->body.len <= RELAYBOUNDS_BODY_MAX, "body over 786432 bytes");
  return 0;
}

void ctlmsg_relay_request_wire(const relay_request_t *in, Cascade__Control__RelayRequest *out,
                               Cascade__Control__Header *hv, Cascade__Control__Header **hp) {
  cascade__control__relay_request__init(out);
  out->id = in->id;
  out->method = (char *)in->method;
  out->path = (char *)in->path;
  out->query = (char *)in->query;
  for (size_t i = 0; i < in->nheaders; i++) {
    cascade__control__header__init(&hv[i]);
    hv[i].name = (char *)in->headers[i].name;
    hv[i].value = (char *)in->headers[i].value;
    hp[i] = &hv[i];
  }
  out->n_headers = in->nheaders;
  out->headers = in->nheaders ? hp : NULL;
  out->body.data = (uint8_t *)in->body;
  out->body.len = in->body_len;
}

int ctlmsg_relay_request_judge(const relay_request_t *in, char *why, size_t whylen) {
  Cascade__Control__RelayRequest q;
  Cascade__Control__Header hv[RELAYBOUNDS_HEADERS_MAX], *hp[RELAYBOUNDS_HEADERS_MAX];
  if (in->nheaders > RELAYBOUNDS_HEADERS_MAX) {
    snprintf(why, whylen, "headers: too many");
    return -1;
  }
  ctlmsg_relay_request_wire(in, &q, hv, hp);
  return ctlmsg_relay_request_check(&q, why, whylen);
}

void ctlmsg_relay_response_view(const Cascade__Control__RelayResponse *m, relay_response_t *out,
                                relay_header_t *hv) {
  size_t n = m->n_headers < CTLMSG_RELAY_HEADERS_MAX ? m->n_headers : CTLMSG_RELAY_HEADERS_MAX;
  for (size_t i = 0; i < n; i++) {
    hv[i].name = m->headers[i]->name;
    hv[i].value = m->headers[i]->value;
  }
  out->id = m->id;
  out->status = m->status;
  out->headers = n ? hv : NULL;
  out->nheaders = n;
  out->data = m->data.data;
  out->len = m->data.len;
  out->end = m->end;
}

static int check_request(const Cascade__Control__Request *r, char *why, size_t whylen) {
  CHECK(r->session.len == 0 || r->session.len == CTLMSG_SESSION_LEN, "bad session length");
  switch (r->body_case) {
  case CASCADE__CONTROL__REQUEST__BODY_REGISTER:
    CHECK(r->register_->name && r->register_->name[0] && ctlmsg_text_ok(r->register_->name, 64),
          "register: bad name");
    CHECK(ascii_ok(r->register_->verifier, CTLMSG_FIELD_MAX), "register: bad verifier");
    CHECK(ascii_ok(r->register_->join_token, CTLMSG_JOIN_TOKEN_MAX), "register: bad join token");
    break;
  case CASCADE__CONTROL__REQUEST__BODY_AUTH_START: {
    const char *n = r->auth_start->client_nonce;
    CHECK(r->auth_start->name && r->auth_start->name[0] &&
              ctlmsg_text_ok(r->auth_start->name, 64),
          "auth_start: bad name");
    CHECK(n && strlen(n) >= 16 && strlen(n) <= 64 && ctlmsg_text_ok(n, 64) && !strchr(n, ','),
          "auth_start: bad nonce");
    break;
  }
  case CASCADE__CONTROL__REQUEST__BODY_AUTH_FINISH: {
    const Cascade__Control__AuthFinish *f = r->auth_finish;
    CHECK(f->exchange.len == CTLMSG_SESSION_LEN, "auth_finish: bad exchange");
    CHECK(f->proof.len == 32, "auth_finish: bad proof");
    if (f->advertise) {
      const Cascade__Control__Advertise *a = f->advertise;
      CHECK(ascii_ok(a->quic, CTLMSG_FIELD_MAX) && ascii_ok(a->http, CTLMSG_FIELD_MAX) &&
                ascii_ok(a->rtmp, CTLMSG_FIELD_MAX) &&
                ascii_ok(a->static_parent, CTLMSG_FIELD_MAX) && ascii_ok(a->version, 64),
            "auth_finish: bad advertise");
    }
    break;
  }
  case CASCADE__CONTROL__REQUEST__BODY_HEARTBEAT: {
    const Cascade__Control__Heartbeat *h = r->heartbeat;
    CHECK(h->static_parent_id >= 0, "heartbeat: bad static parent id");
    size_t n = h->n_streams < CTLMSG_STREAMS_MAX ? h->n_streams : CTLMSG_STREAMS_MAX;
    for (size_t i = 0; i < n; i++) {
      const Cascade__Control__StreamReport *s = h->streams[i];
      CHECK(s->path && s->path[0] && ctlmsg_text_ok(s->path, 1024), "heartbeat: bad stream path");
      CHECK(s->n_players <= 16, "heartbeat: too many player counts");
      for (size_t k = 0; k < s->n_players; k++)
        CHECK(s->players[k]->protocol && s->players[k]->protocol[0] &&
                  ascii_ok(s->players[k]->protocol, 32),
              "heartbeat: bad player protocol");
    }
    size_t ne = h->n_stream_events < CTLMSG_STREAM_EVENTS_MAX ? h->n_stream_events
                                                              : CTLMSG_STREAM_EVENTS_MAX;
    for (size_t i = 0; i < ne; i++) {
      const Cascade__Control__StreamEvent *e = h->stream_events[i];
      CHECK(e->action && (strcmp(e->action, "stream.kick") == 0 ||
                          strcmp(e->action, "stream.drop") == 0),
            "heartbeat: bad stream event action");
      CHECK(e->path && e->path[0] && ctlmsg_text_ok(e->path, 1024), "heartbeat: bad stream event path");
      CHECK(ascii_ok(e->addr, CTLMSG_EVENT_ADDR_MAX) && ascii_ok(e->kind, 32) &&
                ascii_ok(e->protocol, 32),
            "heartbeat: bad stream event");
    }
    break;
  }
  case CASCADE__CONTROL__REQUEST__BODY_RELAY_RESPONSE: {
    const Cascade__Control__RelayResponse *x = r->relay_response;
    CHECK(x->id != 0, "relay_response: no id");
    CHECK(x->status == 0 || (x->status >= 100 && x->status <= 599), "relay_response: bad status");
    CHECK(headers_ok(x->headers, x->n_headers), "relay_response: bad headers");
    CHECK(x->data.len <= CTLMSG_RELAY_CHUNK_MAX, "relay_response: data over 256 KiB");
    break;
  }
  case CASCADE__CONTROL__REQUEST__BODY_POLL:
  case CASCADE__CONTROL__REQUEST__BODY_CA_REQUEST:
    break;
  case CASCADE__CONTROL__REQUEST__BODY_CERT_REQUEST:
    CHECK(r->cert_request->csr && strlen(r->cert_request->csr) <= CTLMSG_CSR_MAX,
          "cert_request: bad csr");
    break;
  default:
    CHECK(0, "no or unknown body");
  }
  return 0;
}

static int check_response(const Cascade__Control__Response *r, char *why, size_t whylen) {
  CHECK(r->status != NULL, "no status");
  CHECK(ctlmsg_text_ok(r->status->message, 1024), "bad status message");
  CHECK(r->n_relay <= CTLMSG_RELAY_PER_POLL, "too many relay requests");
  /* Each RelayRequest is judged alone by its user (ctlmsg_relay_request_check). */
  switch (r->body_case) {
  case CASCADE__CONTROL__RESPONSE__BODY__NOT_SET:
    /* A status alone: errors, and the OK of Register. */
    break;
  case CASCADE__CONTROL__RESPONSE__BODY_AUTH_CHALLENGE: {
    const Cascade__Control__AuthChallenge *c = r->auth_challenge;
    CHECK(c->exchange.len == CTLMSG_SESSION_LEN, "challenge: bad exchange");
    CHECK(c->salt.len >= 1 && c->salt.len <= 64, "challenge: bad salt");
    CHECK(c->iterations >= 4096 && c->iterations <= 1000000, "challenge: bad iterations");
    CHECK(c->nonce && ctlmsg_text_ok(c->nonce, 160) && !strchr(c->nonce, ','),
          "challenge: bad nonce");
    break;
  }
  case CASCADE__CONTROL__RESPONSE__BODY_AUTH_OK:
    CHECK(r->auth_ok->server_signature.len == 32, "auth_ok: bad signature");
    CHECK(r->auth_ok->session.len == CTLMSG_SESSION_LEN, "auth_ok: bad session");
    CHECK(r->auth_ok->instance_id > 0, "auth_ok: bad id");
    CHECK(r->auth_ok->epoch >= 0, "auth_ok: bad epoch");
    CHECK(r->auth_ok->heartbeat_ms >= 100 && r->auth_ok->heartbeat_ms <= 600000,
          "auth_ok: bad heartbeat");
    break;
  case CASCADE__CONTROL__RESPONSE__BODY_HEARTBEAT_REPLY:
  case CASCADE__CONTROL__RESPONSE__BODY_RELAY_ACK:
    break;
  case CASCADE__CONTROL__RESPONSE__BODY_CONFIG: {
    const Cascade__Control__Config *c = r->config;
    if (c->topology) {
      CHECK(ctlmsg_text_ok(c->topology->parent_name, 64) &&
                ctlmsg_text_ok(c->topology->parent_quic, CTLMSG_FIELD_MAX),
            "config: bad parent");
      CHECK(c->topology->parent_epoch >= 0, "config: bad parent epoch");
      CHECK(c->topology->n_children <= 100000, "config: too many children");
      for (size_t i = 0; i < c->topology->n_children; i++)
        CHECK(ctlmsg_text_ok(c->topology->children[i]->name, 64) &&
                  c->topology->children[i]->epoch >= 0,
              "config: bad child");
    }
    if (c->rules && c->rules->relayapi) {
      CHECK(c->rules->relayapi->n_allow <= 1024 && c->rules->relayapi->n_deny <= 1024,
            "config: too many relay rules");
      for (size_t i = 0; i < c->rules->relayapi->n_allow; i++)
        CHECK(ctlmsg_text_ok(c->rules->relayapi->allow[i], 1024), "config: bad allow");
      for (size_t i = 0; i < c->rules->relayapi->n_deny; i++)
        CHECK(ctlmsg_text_ok(c->rules->relayapi->deny[i], 1024), "config: bad deny");
    }
    if (c->rules && c->rules->onsub_pull) {
      CHECK(c->rules->onsub_pull->n_rules <= 1024, "config: too many pull rules");
      for (size_t i = 0; i < c->rules->onsub_pull->n_rules; i++)
        CHECK(ctlmsg_text_ok(c->rules->onsub_pull->rules[i]->pattern, 1024) &&
                  ctlmsg_text_ok(c->rules->onsub_pull->rules[i]->target, 1024),
              "config: bad pull rule");
    }
    if (c->rules && c->rules->streamauth) {
      const Cascade__Control__StreamAuth *a = c->rules->streamauth;
      CHECK(a->n_rules <= CTLMSG_AUTH_RULES_MAX, "config: too many stream auth rules");
      for (size_t i = 0; i < a->n_rules; i++)
        CHECK(ctlmsg_text_ok(a->rules[i]->pattern, CTLMSG_AUTH_PATTERN_MAX) &&
                  a->rules[i]->pattern && a->rules[i]->pattern[0] &&
                  (unsigned)a->rules[i]->publish <= CASCADE__CONTROL__STREAM_AUTH_MODE__STREAM_AUTH_HOOK &&
                  (unsigned)a->rules[i]->play <= CASCADE__CONTROL__STREAM_AUTH_MODE__STREAM_AUTH_HOOK,
              "config: bad stream auth rule");
      CHECK(a->n_keys <= CTLMSG_AUTH_KEYS_MAX, "config: too many stream keys");
      for (size_t i = 0; i < a->n_keys; i++)
        CHECK(a->keys[i]->key.len == CTLMSG_AUTH_KEY_LEN, "config: bad stream key");
      if (a->hooks) {
        const char *u[4] = {a->hooks->on_publish, a->hooks->on_play, a->hooks->on_stop,
                            a->hooks->on_unpublish};
        for (int i = 0; i < 4; i++)
          CHECK(ctlmsg_text_ok(u[i], CTLMSG_HOOK_URL_MAX) &&
                    (u[i] == NULL || u[i][0] == 0 || strncmp(u[i], "http://", 7) == 0 ||
                     strncmp(u[i], "https://", 8) == 0),
                "config: bad hook URL");
        CHECK(a->hooks->timeout_ms <= CTLMSG_HOOK_TIMEOUT_MAX &&
                  a->hooks->cache_ms <= CTLMSG_HOOK_CACHE_MAX,
              "config: bad hook timing");
      }
    }
    break;
  }
  case CASCADE__CONTROL__RESPONSE__BODY_CERTIFICATE:
    CHECK(r->certificate->cert && strlen(r->certificate->cert) <= CTLMSG_CERT_MAX &&
              r->certificate->ca && strlen(r->certificate->ca) <= CTLMSG_CERT_MAX,
          "certificate: bad size");
    break;
  case CASCADE__CONTROL__RESPONSE__BODY_CA:
    CHECK(r->ca->ca && strlen(r->ca->ca) <= CTLMSG_CERT_MAX, "ca: bad size");
    break;
  default:
    CHECK(0, "unknown body");
  }
  return 0;
}

Cascade__Control__Request *ctlmsg_decode_request(const uint8_t *buf, size_t len, char *why,
                                                 size_t whylen) {
  if (len > CTLMSG_MAX) {
    snprintf(why, whylen, "message over %d bytes", CTLMSG_MAX);
    return NULL;
  }
  Cascade__Control__Request *r = cascade__control__request__unpack(NULL, len, buf);
  if (r == NULL) {
    snprintf(why, whylen, "does not decode");
    return NULL;
  }
  if (check_request(r, why, whylen) != 0) {
    cascade__control__request__free_unpacked(r, NULL);
    return NULL;
  }
  return r;
}

void ctlmsg_free_request(Cascade__Control__Request *r) {
  if (r) cascade__control__request__free_unpacked(r, NULL);
}

Cascade__Control__Response *ctlmsg_decode_response(const uint8_t *buf, size_t len, char *why,
                                                   size_t whylen) {
  if (len > CTLMSG_MAX) {
    snprintf(why, whylen, "message over %d bytes", CTLMSG_MAX);
    return NULL;
  }
  Cascade__Control__Response *r = cascade__control__response__unpack(NULL, len, buf);
  if (r == NULL) {
    snprintf(why, whylen, "does not decode");
    return NULL;
  }
  if (check_response(r, why, whylen) != 0) {
    cascade__control__response__free_unpacked(r, NULL);
    return NULL;
  }
  return r;
}

void ctlmsg_free_response(Cascade__Control__Response *r) {
  if (r) cascade__control__response__free_unpacked(r, NULL);
}

uint8_t *ctlmsg_pack_request(const Cascade__Control__Request *r, size_t *len) {
  size_t n = cascade__control__request__get_packed_size(r);
  if (n > CTLMSG_MAX) return NULL;
  uint8_t *buf = malloc(n ? n : 1);
  if (buf) *len = cascade__control__request__pack(r, buf);
  return buf;
}

uint8_t *ctlmsg_pack_response(const Cascade__Control__Response *r, size_t *len) {
  size_t n = cascade__control__response__get_packed_size(r);
  if (n > CTLMSG_MAX) return NULL;
  uint8_t *buf = malloc(n ? n : 1);
  if (buf) *len = cascade__control__response__pack(r, buf);
  return buf;
}
