/* The agent's side of the control channel codec: see agentmsg.h. Decoding
 * goes through ctlmsg.c (cap and bounds); this unit only converts. */
#include "agentmsg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctlmsg.h"

/* The plain numbers are the wire's. */
_Static_assert(AGENTMSG_OK == (int)CASCADE__CONTROL__CODE__OK &&
                   AGENTMSG_BAD_REQUEST == (int)CASCADE__CONTROL__CODE__BAD_REQUEST &&
                   AGENTMSG_AUTH_FAILED == (int)CASCADE__CONTROL__CODE__AUTH_FAILED &&
                   AGENTMSG_NO_SESSION == (int)CASCADE__CONTROL__CODE__NO_SESSION &&
                   AGENTMSG_RATE_LIMITED == (int)CASCADE__CONTROL__CODE__RATE_LIMITED &&
                   AGENTMSG_UNAVAILABLE == (int)CASCADE__CONTROL__CODE__UNAVAILABLE &&
                   AGENTMSG_REVOKED == (int)CASCADE__CONTROL__CODE__REVOKED &&
                   AGENTMSG_PENDING == (int)CASCADE__CONTROL__CODE__PENDING,
               "status codes");
_Static_assert(AGENTMSG_ORIGIN_UNKNOWN == (int)CASCADE__CONTROL__STREAM_ORIGIN__ORIGIN_UNKNOWN &&
                   AGENTMSG_ORIGIN_LOCAL == (int)CASCADE__CONTROL__STREAM_ORIGIN__ORIGIN_LOCAL &&
                   AGENTMSG_ORIGIN_PUSHED == (int)CASCADE__CONTROL__STREAM_ORIGIN__ORIGIN_PUSHED &&
                   AGENTMSG_ORIGIN_PULLED == (int)CASCADE__CONTROL__STREAM_ORIGIN__ORIGIN_PULLED,
               "stream origins");
_Static_assert(AGENTMSG_LINK_PARENT == (int)CASCADE__CONTROL__LINK_ROLE__LINK_PARENT &&
                   AGENTMSG_LINK_CHILD == (int)CASCADE__CONTROL__LINK_ROLE__LINK_CHILD,
               "link roles");
_Static_assert(AGENTMSG_SESSION_LEN == CTLMSG_SESSION_LEN, "session length");
_Static_assert(AGENTMSG_AUTH_NONE == (int)CASCADE__CONTROL__STREAM_AUTH_MODE__STREAM_AUTH_NONE &&
                   AGENTMSG_AUTH_TOKEN == (int)CASCADE__CONTROL__STREAM_AUTH_MODE__STREAM_AUTH_TOKEN &&
                   AGENTMSG_AUTH_HOOK == (int)CASCADE__CONTROL__STREAM_AUTH_MODE__STREAM_AUTH_HOOK,
               "stream auth modes");

/* ---- configuration ---------------------------------------------------------- */

static char *dup0(const char *s) { return strdup(s ? s : ""); }

/* copy_strs copies |n| strings into a new array at |*out|; counts in |*on|
 * what was copied so that a failure frees exactly that. */
static int copy_strs(char *const *v, size_t n, char ***out, size_t *on) {
  *out = NULL;
  *on = 0;
  if (n == 0) return 0;
  if ((*out = calloc(n, sizeof(char *))) == NULL) return -1;
  for (size_t i = 0; i < n; i++, (*on)++)
    if (((*out)[i] = dup0(v[i])) == NULL) return -1;
  return 0;
}

int agentmsg_config_copy(const agentmsg_config_t *in, agentmsg_config_t *out) {
  const agentmsg_rules_t *ri = &in->rules;
  agentmsg_rules_t *ro = &out->rules;

  memset(out, 0, sizeof(*out));
  out->generation = in->generation;
  out->parent_id = in->parent_id;
  out->parent_epoch = in->parent_epoch;
  if ((out->parent_name = dup0(in->parent_name)) == NULL ||
      (out->parent_quic = dup0(in->parent_quic)) == NULL)
    goto fail;
  if (in->nchildren && (out->children = calloc(in->nchildren, sizeof(*out->children))) == NULL)
    goto fail;
  for (size_t i = 0; i < in->nchildren; i++, out->nchildren++) {
    out->children[i].id = in->children[i].id;
    out->children[i].epoch = in->children[i].epoch;
    if ((out->children[i].name = dup0(in->children[i].name)) == NULL) goto fail;
  }
  ro->has_relayapi = ri->has_relayapi;
  if (copy_strs(ri->allow, ri->nallow, &ro->allow, &ro->nallow) != 0 ||
      copy_strs(ri->deny, ri->ndeny, &ro->deny, &ro->ndeny) != 0)
    goto fail;
  ro->has_pull = ri->has_pull;
  if (ri->npull && (ro->pull = calloc(ri->npull, sizeof(*ro->pull))) == NULL) goto fail;
  for (size_t i = 0; i < ri->npull; i++) {
    ro->pull[i].pattern = dup0(ri->pull[i].pattern);
    ro->pull[i].target = dup0(ri->pull[i].target);
    ro->npull++; /* counted before the check: free releases a half-made rule */
    if (ro->pull[i].pattern == NULL || ro->pull[i].target == NULL) goto fail;
  }
  ro->has_autopush = ri->has_autopush;
  ro->autopush = ri->autopush != 0;
  ro->has_streamauth = ri->has_streamauth;
  {
    const agentmsg_streamauth_t *ai = &ri->streamauth;
    agentmsg_streamauth_t *ao = &ro->streamauth;
    if (ai->nrules && (ao->rules = calloc(ai->nrules, sizeof(*ao->rules))) == NULL) goto fail;
    for (size_t i = 0; i < ai->nrules; i++, ao->nrules++) {
      ao->rules[i].publish = ai->rules[i].publish;
      ao->rules[i].play = ai->rules[i].play;
      if ((ao->rules[i].pattern = dup0(ai->rules[i].pattern)) == NULL) goto fail;
    }
    ao->nkeys = ai->nkeys > CTLMSG_AUTH_KEYS_MAX ? CTLMSG_AUTH_KEYS_MAX : ai->nkeys;
    memcpy(ao->keys, ai->keys, ao->nkeys * sizeof(ao->keys[0]));
    for (int i = 0; i < AGENTMSG_HOOK_N; i++)
      if ((ao->hook_url[i] = dup0(ai->hook_url[i])) == NULL) goto fail;
    ao->hook_timeout_ms = ai->hook_timeout_ms;
    ao->hook_cache_ms = ai->hook_cache_ms;
    ao->hook_fail_open = ai->hook_fail_open != 0;
  }
  return 0;

fail:
  agentmsg_config_free(out);
  return -1;
}

void agentmsg_config_free(agentmsg_config_t *cf) {
  if (cf == NULL) return;
  free(cf->parent_name);
  free(cf->parent_quic);
  for (size_t i = 0; i < cf->nchildren; i++) free(cf->children[i].name);
  free(cf->children);
  for (size_t i = 0; i < cf->rules.nallow; i++) free(cf->rules.allow[i]);
  for (size_t i = 0; i < cf->rules.ndeny; i++) free(cf->rules.deny[i]);
  for (size_t i = 0; i < cf->rules.npull; i++) {
    free(cf->rules.pull[i].pattern);
    free(cf->rules.pull[i].target);
  }
  free(cf->rules.allow);
  free(cf->rules.deny);
  free(cf->rules.pull);
  for (size_t i = 0; i < cf->rules.streamauth.nrules; i++) free(cf->rules.streamauth.rules[i].pattern);
  free(cf->rules.streamauth.rules);
  for (int i = 0; i < AGENTMSG_HOOK_N; i++) free(cf->rules.streamauth.hook_url[i]);
  /* the keys are secrets: not left in freed memory */
  memset(cf->rules.streamauth.keys, 0, sizeof(cf->rules.streamauth.keys));
  memset(cf, 0, sizeof(*cf));
}

/* config_from_wire copies a decoded Config into |out| (owned): a view over
 * the message first (only the arrays allocated), then one deep copy. An
 * absent topology is no parent and no children; an absent Rules message
 * is every rule absent. */
static int config_from_wire(const Cascade__Control__Config *w, agentmsg_config_t *out) {
  const Cascade__Control__Topology *t = w->topology;
  const Cascade__Control__Rules *r = w->rules;
  agentmsg_config_t v;
  int rv = -1;

  memset(&v, 0, sizeof(v));
  v.generation = w->generation;
  if (t) {
    v.parent_id = t->parent_id;
    v.parent_name = t->parent_name;
    v.parent_quic = t->parent_quic;
    v.parent_epoch = t->parent_epoch;
    if (t->n_children && (v.children = calloc(t->n_children, sizeof(*v.children))) == NULL)
      goto out;
    for (size_t i = 0; i < t->n_children; i++) {
      v.children[i].id = t->children[i]->id;
      v.children[i].name = t->children[i]->name;
      v.children[i].epoch = t->children[i]->epoch;
    }
    v.nchildren = t->n_children;
  }
  if (r && r->relayapi) {
    v.rules.has_relayapi = 1;
    v.rules.allow = r->relayapi->allow;
    v.rules.nallow = r->relayapi->n_allow;
    v.rules.deny = r->relayapi->deny;
    v.rules.ndeny = r->relayapi->n_deny;
  }
  if (r && r->onsub_pull) {
    const Cascade__Control__PullRules *p = r->onsub_pull;
    v.rules.has_pull = 1;
    if (p->n_rules && (v.rules.pull = calloc(p->n_rules, sizeof(*v.rules.pull))) == NULL)
      goto out;
    for (size_t i = 0; i < p->n_rules; i++) {
      v.rules.pull[i].pattern = p->rules[i]->pattern;
      v.rules.pull[i].target = p->rules[i]->target;
    }
    v.rules.npull = p->n_rules;
  }
  if (r && r->autopush) {
    v.rules.has_autopush = 1;
    v.rules.autopush = r->autopush->value != 0;
  }
  if (r && r->streamauth) {
    const Cascade__Control__StreamAuth *a = r->streamauth;
    agentmsg_streamauth_t *va = &v.rules.streamauth;
    v.rules.has_streamauth = 1;
    if (a->n_rules && (va->rules = calloc(a->n_rules, sizeof(*va->rules))) == NULL) goto out;
    for (size_t i = 0; i < a->n_rules; i++) {
      va->rules[i].pattern = a->rules[i]->pattern;
      va->rules[i].publish = (int)a->rules[i]->publish;
      va->rules[i].play = (int)a->rules[i]->play;
    }
    va->nrules = a->n_rules;
    for (size_t i = 0; i < a->n_keys && i < CTLMSG_AUTH_KEYS_MAX; i++) {
      va->keys[i].id = a->keys[i]->id;
      memcpy(va->keys[i].key, a->keys[i]->key.data, CTLMSG_AUTH_KEY_LEN);
      va->nkeys++;
    }
    if (a->hooks) {
      va->hook_url[AGENTMSG_HOOK_PUBLISH] = a->hooks->on_publish;
      va->hook_url[AGENTMSG_HOOK_PLAY] = a->hooks->on_play;
      va->hook_url[AGENTMSG_HOOK_STOP] = a->hooks->on_stop;
      va->hook_url[AGENTMSG_HOOK_UNPUBLISH] = a->hooks->on_unpublish;
      va->hook_timeout_ms = a->hooks->timeout_ms;
      va->hook_cache_ms = a->hooks->cache_ms;
      va->hook_fail_open = a->hooks->fail_open;
    }
  }
  rv = agentmsg_config_copy(&v, out);
out:
  memset(v.rules.streamauth.keys, 0, sizeof(v.rules.streamauth.keys));
  free(v.rules.streamauth.rules);
  free(v.children);
  free(v.rules.pull);
  return rv;
}

/* ---- answers ---------------------------------------------------------------- */

int agentmsg_decode_response(const uint8_t *buf, size_t len, agentmsg_response_t *out, char *why,
                             size_t whylen) {
  Cascade__Control__Response *r;

  memset(out, 0, sizeof(*out));
  if ((r = ctlmsg_decode_response(buf, len, why, whylen)) == NULL) return -1;
  out->wire = r;
  out->id = r->id;
  out->code = (int)r->status->code;
  out->message = r->status->message ? r->status->message : "";
  out->nrelay = r->n_relay;
  switch (r->body_case) {
  case CASCADE__CONTROL__RESPONSE__BODY_AUTH_CHALLENGE:
    out->body = AGENTMSG_BODY_CHALLENGE;
    out->challenge.exchange = r->auth_challenge->exchange.data;
    out->challenge.salt = r->auth_challenge->salt.data;
    out->challenge.salt_len = r->auth_challenge->salt.len;
    out->challenge.iterations = r->auth_challenge->iterations;
    out->challenge.nonce = r->auth_challenge->nonce;
    break;
  case CASCADE__CONTROL__RESPONSE__BODY_AUTH_OK:
    out->body = AGENTMSG_BODY_AUTH_OK;
    out->auth_ok.server_signature = r->auth_ok->server_signature.data;
    out->auth_ok.server_signature_len = r->auth_ok->server_signature.len;
    out->auth_ok.session = r->auth_ok->session.data;
    out->auth_ok.instance_id = r->auth_ok->instance_id;
    out->auth_ok.heartbeat_ms = r->auth_ok->heartbeat_ms;
    out->auth_ok.epoch = r->auth_ok->epoch;
    break;
  case CASCADE__CONTROL__RESPONSE__BODY_HEARTBEAT_REPLY:
    out->body = AGENTMSG_BODY_HEARTBEAT_REPLY;
    out->heartbeat_reply.desired_generation = r->heartbeat_reply->desired_generation;
    out->heartbeat_reply.cert_not_after = r->heartbeat_reply->cert_not_after;
    break;
  case CASCADE__CONTROL__RESPONSE__BODY_CONFIG:
    out->body = AGENTMSG_BODY_CONFIG;
    if (config_from_wire(r->config, &out->config) != 0) {
      snprintf(why, whylen, "out of memory");
      agentmsg_response_free(out);
      return -1;
    }
    break;
  case CASCADE__CONTROL__RESPONSE__BODY_CERTIFICATE:
    out->body = AGENTMSG_BODY_CERTIFICATE;
    out->certificate.cert = r->certificate->cert;
    out->certificate.ca = r->certificate->ca ? r->certificate->ca : "";
    out->certificate.not_after = r->certificate->not_after;
    break;
  case CASCADE__CONTROL__RESPONSE__BODY_CA:
    out->body = AGENTMSG_BODY_CA;
    out->ca = r->ca->ca;
    break;
  case CASCADE__CONTROL__RESPONSE__BODY_RELAY_ACK:
    out->body = AGENTMSG_BODY_RELAY_ACK;
    out->relay_cancelled = r->relay_ack->cancelled != 0;
    break;
  default: /* ctlmsg refuses an unknown body: a status alone */
    out->body = AGENTMSG_BODY_NONE;
    break;
  }
  return 0;
}

void agentmsg_response_free(agentmsg_response_t *r) {
  if (r == NULL) return;
  agentmsg_config_free(&r->config);
  ctlmsg_free_response(r->wire);
  memset(r, 0, sizeof(*r));
}

int agentmsg_relay_request(const agentmsg_response_t *r, size_t i, relay_request_t *out,
                           relay_header_t *hv, char *why, size_t whylen) {
  const Cascade__Control__Response *w = r->wire;
  const Cascade__Control__RelayRequest *q = w->relay[i];

  memset(out, 0, sizeof(*out));
  out->id = q->id;
  if (ctlmsg_relay_request_check(q, why, whylen) != 0) return -1;
  /* Within the bounds now: at most RELAYBOUNDS_HEADERS_MAX headers. */
  for (size_t k = 0; k < q->n_headers; k++) {
    hv[k].name = q->headers[k]->name;
    hv[k].value = q->headers[k]->value ? q->headers[k]->value : "";
  }
  out->method = q->method;
  out->path = q->path;
  out->query = q->query ? q->query : "";
  out->headers = q->n_headers ? hv : NULL;
  out->nheaders = q->n_headers;
  out->body = q->body.data;
  out->body_len = q->body.len;
  return 0;
}

int agentmsg_relay_ack_cancelled(const uint8_t *buf, size_t len) {
  char why[128];
  Cascade__Control__Response *r = ctlmsg_decode_response(buf, len, why, sizeof(why));
  int cancelled = r == NULL || r->status->code != CASCADE__CONTROL__CODE__OK ||
                  r->body_case != CASCADE__CONTROL__RESPONSE__BODY_RELAY_ACK ||
                  r->relay_ack->cancelled;
  ctlmsg_free_response(r);
  return cancelled;
}

/* ---- requests --------------------------------------------------------------- */

/* pack sets |h| on |r| and serialises it. */
static uint8_t *pack(const agentmsg_head_t *h, Cascade__Control__Request *r, size_t *len) {
  r->id = h->id;
  if (h->session) {
    r->session.data = (uint8_t *)h->session;
    r->session.len = AGENTMSG_SESSION_LEN;
  }
  return ctlmsg_pack_request(r, len);
}

uint8_t *agentmsg_pack_ca_request(const agentmsg_head_t *h, size_t *len) {
  Cascade__Control__Request r = CASCADE__CONTROL__REQUEST__INIT;
  Cascade__Control__CaRequest ca = CASCADE__CONTROL__CA_REQUEST__INIT;
  r.body_case = CASCADE__CONTROL__REQUEST__BODY_CA_REQUEST;
  r.ca_request = &ca;
  return pack(h, &r, len);
}

uint8_t *agentmsg_pack_register(const agentmsg_head_t *h, const char *name, const char *verifier,
                                const char *join_token, size_t *len) {
  Cascade__Control__Request r = CASCADE__CONTROL__REQUEST__INIT;
  Cascade__Control__Register reg = CASCADE__CONTROL__REGISTER__INIT;
  reg.name = (char *)name;
  reg.verifier = (char *)verifier;
  reg.join_token = (char *)join_token;
  r.body_case = CASCADE__CONTROL__REQUEST__BODY_REGISTER;
  r.register_ = &reg;
  return pack(h, &r, len);
}

uint8_t *agentmsg_pack_auth_start(const agentmsg_head_t *h, const char *name,
                                  const char *client_nonce, size_t *len) {
  Cascade__Control__Request r = CASCADE__CONTROL__REQUEST__INIT;
  Cascade__Control__AuthStart as = CASCADE__CONTROL__AUTH_START__INIT;
  as.name = (char *)name;
  as.client_nonce = (char *)client_nonce;
  r.body_case = CASCADE__CONTROL__REQUEST__BODY_AUTH_START;
  r.auth_start = &as;
  return pack(h, &r, len);
}

uint8_t *agentmsg_pack_auth_finish(const agentmsg_head_t *h, const uint8_t *exchange,
                                   const uint8_t *proof, size_t proof_len,
                                   const agentmsg_advertise_t *adv, size_t *len) {
  Cascade__Control__Request r = CASCADE__CONTROL__REQUEST__INIT;
  Cascade__Control__AuthFinish fin = CASCADE__CONTROL__AUTH_FINISH__INIT;
  Cascade__Control__Advertise a = CASCADE__CONTROL__ADVERTISE__INIT;
  a.quic = (char *)adv->quic;
  a.http = (char *)adv->http;
  a.rtmp = (char *)adv->rtmp;
  a.static_parent = (char *)adv->static_parent;
  a.version = (char *)adv->version;
  fin.exchange.data = (uint8_t *)exchange;
  fin.exchange.len = AGENTMSG_SESSION_LEN;
  fin.proof.data = (uint8_t *)proof;
  fin.proof.len = proof_len;
  fin.advertise = &a;
  r.body_case = CASCADE__CONTROL__REQUEST__BODY_AUTH_FINISH;
  r.auth_finish = &fin;
  return pack(h, &r, len);
}

uint8_t *agentmsg_pack_poll(const agentmsg_head_t *h, uint64_t known_generation, size_t *len) {
  Cascade__Control__Request r = CASCADE__CONTROL__REQUEST__INIT;
  Cascade__Control__Poll p = CASCADE__CONTROL__POLL__INIT;
  p.known_generation = known_generation;
  r.body_case = CASCADE__CONTROL__REQUEST__BODY_POLL;
  r.poll = &p;
  return pack(h, &r, len);
}

uint8_t *agentmsg_pack_heartbeat(const agentmsg_head_t *h, const agentmsg_heartbeat_t *hb,
                                 size_t *len) {
  Cascade__Control__Request r = CASCADE__CONTROL__REQUEST__INIT;
  Cascade__Control__Heartbeat w = CASCADE__CONTROL__HEARTBEAT__INIT;
  Cascade__Control__Stats st = CASCADE__CONTROL__STATS__INIT;
  Cascade__Control__LinkReport *lr = NULL, **lp = NULL;
  Cascade__Control__StreamReport *sr = NULL, **sp = NULL;
  Cascade__Control__PlayerCount *pc = NULL, **pp = NULL;
  size_t nl = hb->nlinks, ns = hb->nstreams, npc = 0;
  int reported = hb->streams_reported != 0;
  uint32_t total = hb->streams_total;
  uint8_t *buf;

  for (size_t i = 0; i < ns; i++)
    npc += hb->streams[i].nplayers < AGENTMSG_PLAYERS_MAX ? hb->streams[i].nplayers
                                                           : AGENTMSG_PLAYERS_MAX;
  /* Out of memory, a beat still goes: without its link reports, or
   * without a stream report (the controller keeps the previous one). */
  if (nl && ((lr = calloc(nl, sizeof(*lr))) == NULL || (lp = calloc(nl, sizeof(*lp))) == NULL))
    nl = 0;
  if ((ns && ((sr = calloc(ns, sizeof(*sr))) == NULL || (sp = calloc(ns, sizeof(*sp))) == NULL)) ||
      (npc &&
       ((pc = calloc(npc, sizeof(*pc))) == NULL || (pp = calloc(npc, sizeof(*pp))) == NULL))) {
    ns = 0;
    reported = 0;
    total = 0;
  }
  w.applied_generation = hb->applied_generation;
  w.static_parent_id = hb->static_parent_id;
  st.streams = hb->stats.streams;
  st.links = hb->stats.links;
  st.bytes_in = hb->stats.bytes_in;
  st.bytes_out = hb->stats.bytes_out;
  st.subscribers = hb->stats.subscribers;
  w.stats = &st;
  for (size_t i = 0; i < nl; i++) {
    const agentmsg_link_report_t *l = &hb->links[i];
    cascade__control__link_report__init(&lr[i]);
    lr[i].peer_id = l->peer_id;
    lr[i].role = l->role == AGENTMSG_LINK_PARENT ? CASCADE__CONTROL__LINK_ROLE__LINK_PARENT
                                                 : CASCADE__CONTROL__LINK_ROLE__LINK_CHILD;
    lr[i].up = l->up != 0;
    lr[i].rtt_us = l->rtt_us;
    lr[i].bytes_sent = l->bytes_sent;
    lr[i].bytes_recv = l->bytes_recv;
    lr[i].lost = l->lost;
    lr[i].up_since = l->up_since;
    lp[i] = &lr[i];
  }
  w.n_links = nl;
  w.links = lp;
  npc = 0;
  for (size_t i = 0; i < ns; i++) {
    const agentmsg_stream_report_t *s = &hb->streams[i];
    size_t np = s->nplayers < AGENTMSG_PLAYERS_MAX ? s->nplayers : AGENTMSG_PLAYERS_MAX;
    cascade__control__stream_report__init(&sr[i]);
    sr[i].path = (char *)s->path;
    sr[i].origin = (Cascade__Control__StreamOrigin)s->origin;
    sr[i].origin_node = s->origin_node;
    sr[i].publisher_since = s->publisher_since;
    sr[i].players = np ? &pp[npc] : NULL;
    sr[i].n_players = np;
    for (size_t k = 0; k < np; k++, npc++) {
      cascade__control__player_count__init(&pc[npc]);
      pc[npc].protocol = (char *)s->players[k].protocol;
      pc[npc].count = s->players[k].count;
      pp[npc] = &pc[npc];
    }
    sp[i] = &sr[i];
  }
  w.n_streams = ns;
  w.streams = sp;
  w.streams_reported = reported;
  w.streams_total = total;
  /* On the stack: the events a beat carries always go with it (the caller
   * drops them once this beat is answered). */
  Cascade__Control__StreamEvent ev[CTLMSG_STREAM_EVENTS_MAX], *evp[CTLMSG_STREAM_EVENTS_MAX];
  size_t ne = hb->nevents < CTLMSG_STREAM_EVENTS_MAX ? hb->nevents : CTLMSG_STREAM_EVENTS_MAX;
  for (size_t i = 0; i < ne; i++) {
    const agentmsg_stream_event_t *e = &hb->events[i];
    cascade__control__stream_event__init(&ev[i]);
    ev[i].seq = e->seq;
    ev[i].time = e->time;
    ev[i].action = (char *)(e->action ? e->action : "");
    ev[i].path = (char *)(e->path ? e->path : "");
    ev[i].connection = e->connection;
    ev[i].addr = (char *)(e->addr ? e->addr : "");
    ev[i].kind = (char *)(e->kind ? e->kind : "");
    ev[i].protocol = (char *)(e->protocol ? e->protocol : "");
    ev[i].ended = e->ended;
    evp[i] = &ev[i];
  }
  w.n_stream_events = ne;
  w.stream_events = ne ? evp : NULL;
  w.stream_events_dropped = hb->events_dropped;
  r.body_case = CASCADE__CONTROL__REQUEST__BODY_HEARTBEAT;
  r.heartbeat = &w;
  buf = pack(h, &r, len);
  free(lr);
  free(lp);
  free(sr);
  free(sp);
  free(pc);
  free(pp);
  return buf;
}

uint8_t *agentmsg_pack_cert_request(const agentmsg_head_t *h, const char *csr, size_t *len) {
  Cascade__Control__Request r = CASCADE__CONTROL__REQUEST__INIT;
  Cascade__Control__CertRequest cr = CASCADE__CONTROL__CERT_REQUEST__INIT;
  cr.csr = (char *)csr;
  r.body_case = CASCADE__CONTROL__REQUEST__BODY_CERT_REQUEST;
  r.cert_request = &cr;
  return pack(h, &r, len);
}

uint8_t *agentmsg_pack_relay_response(const agentmsg_head_t *h, const relay_response_t *m,
                                      size_t *len) {
  Cascade__Control__Request r = CASCADE__CONTROL__REQUEST__INIT;
  Cascade__Control__RelayResponse w = CASCADE__CONTROL__RELAY_RESPONSE__INIT;
  Cascade__Control__Header hv[CTLMSG_RELAY_HEADERS_MAX], *hp[CTLMSG_RELAY_HEADERS_MAX];
  size_t n = m->nheaders < CTLMSG_RELAY_HEADERS_MAX ? m->nheaders : CTLMSG_RELAY_HEADERS_MAX;

  w.id = m->id;
  w.status = m->status;
  for (size_t i = 0; i < n; i++) {
    cascade__control__header__init(&hv[i]);
    hv[i].name = (char *)m->headers[i].name;
    hv[i].value = (char *)m->headers[i].value;
    hp[i] = &hv[i];
  }
  w.n_headers = n;
  w.headers = n ? hp : NULL;
  w.data.data = (uint8_t *)m->data;
  w.data.len = m->len;
  w.end = m->end != 0;
  r.body_case = CASCADE__CONTROL__REQUEST__BODY_RELAY_RESPONSE;
  r.relay_response = &w;
  return pack(h, &r, len);
}
