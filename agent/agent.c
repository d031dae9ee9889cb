#define _GNU_SOURCE /* asprintf */
/* The agent context: wiring of the control client, the local API and the
 * simulation mode on one loop. See agent.h. */
#include "agent.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agentmsg.h"
#include "edgeauth.h"
#include "ctltls.h"
#include "hooks.h"
#include "log.h"
#include "streamadm.h"
#include "urlredact.h"
#include "timefmt.h"

#define MOD "agent"

static json_t *rfc3339(time_t t) {
  char buf[TIMEFMT_LEN];
  const char *s = timefmt_rfc3339((int64_t)t, buf);
  return s ? json_string(s) : json_null();
}

static json_t *str_array(char *const *v, size_t n) {
  json_t *a = json_array();
  for (size_t i = 0; a && i < n; i++) json_array_append_new(a, json_string(v[i]));
  return a;
}

/* media_json is the media node's limits and what they measure now. */
static json_t *media_json(media_t *m, const agent_config_t *cfg) {
  if (m == NULL || m->hub == NULL) return json_null();
  connreg_t *r = hub_connreg(m->hub);
  return json_pack("{s:I,s:I,s:I,s:I,s:{s:I,s:I}}", "maxplayers",
                   (json_int_t)cfg->subscribe_maxplayers, "maxbandwidth_kbps",
                   (json_int_t)cfg->subscribe_maxbandwidth_kbps, "egress_bps",
                   (json_int_t)connreg_egress_bps(r, ev_now(m->loop)), "connections",
                   (json_int_t)r->count, "refused", "players", (json_int_t)r->refused_players,
                   "bandwidth", (json_int_t)r->refused_bandwidth);
}

char *agent_status_json(const ctlc_t *c, const links_t *l, const casc_t *casc,
                        const agent_config_t *cfg, media_t *m) {
  json_t *pull = json_object(), *children = json_array(), *d;
  char *out = NULL;

  /* Targets may carry credentials (?key=...): shown redacted. */
  for (size_t i = 0; pull && i < c->rules.npull; i++) {
    char shown[1100];
    json_object_set_new(pull, c->rules.pull[i].pattern,
                        json_string(urlredact(c->rules.pull[i].target, shown, sizeof(shown))));
  }
  for (size_t i = 0; children && i < c->nchildren; i++)
    json_array_append_new(children, json_pack("{s:I,s:s}", "id", (json_int_t)c->children[i].id,
                                              "name", c->children[i].name));
  json_t *parent = c->parent_id
                       ? json_pack("{s:I,s:s,s:s}", "id", (json_int_t)c->parent_id, "name",
                                   c->parent_name ? c->parent_name : "", "quic",
                                   c->parent_quic ? c->parent_quic : "")
                       : json_null();
  json_t *cert = c->cert_not_after && c->cert_id == c->instance_id
                     ? json_pack("{s:o}", "not_after", rfc3339(c->cert_not_after))
                     : json_null();
  d = json_pack(
      "{s:o,s:s,s:{s:s,s:o,s:o,s:I,s:s,s:o,s:o},s:{s:I,s:b},s:o,s:o,s:{s:{s:o,s:o},s:{s:o},s:b},s:o,s:o,s:o,s:o}",
      "instance_id", c->instance_id ? json_integer(c->instance_id) : json_null(),
      "name", c->name,
      "controller", "url", ctlc_url(c), "urls",
      str_array(cfg->ctl_urls.v, cfg->ctl_urls.n), "targets", str_array(c->targets, c->ntargets),
      "url_moves", (json_int_t)c->url_moves,
      "state", ctlc_state_name(c->state),
      "connected_since", rfc3339(c->connected_since),
      "last_error", c->last_error[0] ? json_string(c->last_error) : json_null(),
      "config_generation", "applied", (json_int_t)c->applied_gen, "cached", c->cached,
      "parent", parent,
      "children", children,
      "rules", "relayapi", "allow", str_array(c->rules.allow, c->rules.nallow), "deny",
      str_array(c->rules.deny, c->rules.ndeny), "onsub", "pull", pull, "autopush",
      c->rules.autopush,
      "certificate", cert,
      "links", l ? links_status(l) : json_array(),
      "cascade", casc ? casc_status(casc) : json_null(),
      "media", media_json(m, cfg));
  /* Stream authorization: the local settings and what the controller's
   * policy holds — key ids, never a key; whether hooks are set, not where. */
  const agentmsg_config_t *lc = c->last_cf;
  const agentmsg_streamauth_t *sa =
      lc && lc->rules.has_streamauth ? &lc->rules.streamauth : NULL;
  json_t *kids = json_array(), *hooks = json_array();
  for (size_t i = 0; sa && i < sa->nkeys; i++) json_array_append_new(kids, json_integer(sa->keys[i].id));
  for (int i = 0; sa && i < AGENTMSG_HOOK_N; i++)
    if (sa->hook_url[i] && sa->hook_url[i][0]) json_array_append_new(hooks, json_string(hook_event_name((hook_event)i)));
  json_t *auth = json_pack("{s:s,s:s,s:b,s:I,s:o,s:o}", "publish",
                           cfg->auth_publish == EDGEAUTH_LOCAL_NONE ? "none" : "controller",
                           "play", cfg->auth_play == EDGEAUTH_LOCAL_NONE ? "none" : "controller",
                           "policy", sa != NULL, "rules", (json_int_t)(sa ? sa->nrules : 0),
                           "key_ids", kids, "hooks", hooks);
  if (d && auth) json_object_set_new(d, "auth", auth);
  else json_decref(auth);
  /* json_pack steals the "o" references even when it fails. */
  if (d) out = json_dumps(d, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
  json_decref(d);
  return out;
}


static char *wrap_status(agent_t *a, size_t *len) {
  char *d = agent_status_json(a->ctl, a->links, a->casc, a->cfg,
                              a->media_on ? (media_t *)&a->media : NULL),
       *out = NULL;
  if (d && asprintf(&out, "{\"code\":0,\"message\":\"success\",\"data\":%s}", d) < 0)
    out = NULL;
  free(d);
  if (out) *len = strlen(out);
  return out;
}

static char *envelope(int code, const char *message, json_t *data, size_t *len) {
  json_t *b = json_pack("{s:i,s:s,s:o}", "code", code, "message", message, "data",
                        data ? data : json_null());
  char *out =
      b ? json_dumps(b, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15)) : NULL;
  json_decref(b);
  *len = out ? strlen(out) : 0;
  return out;
}

int agent_linktest_parse(const char *method, const char *query, unsigned long long *bytes) {
  const char *v = NULL;
  for (const char *p = query; p && *p;) {
    if (strncmp(p, "bytes=", 6) == 0) {
      v = p + 6;
      break;
    }
    p = strchr(p, '&');
    if (p) p++;
  }
  int get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
  /* GET with bytes= was how a test was started before it needed POST: it
   * is refused, never taken as a start nor silently as a read. */
  if (get) return v ? 405 : AGENT_LINKTEST_SHOW;
  if (strcmp(method, "POST") != 0) return 405;
  char *end = NULL;
  if (v == NULL || *v < '0' || *v > '9') return 400;
  errno = 0;
  *bytes = strtoull(v, &end, 10);
  if (errno != 0 || (*end && *end != '&')) return 400;
  return AGENT_LINKTEST_START;
}

/* linktest: GET /api/cascade/linktest shows the running or last test;
 * POST /api/cascade/linktest?bytes=N starts a SOURCE stream of N bytes
 * from the parent (202). The local API answers at once, so the result is
 * read afterwards. Starting is an action: POST only, so that through the
 * controller's relay it needs the admin role (viewers may GET and HEAD). */
static int linktest(agent_t *a, const httpflv_request_t *rq, httpflv_reply_t *out) {
  unsigned long long n = 0;
  int what = agent_linktest_parse(rq->method, rq->query, &n);
  if (what == AGENT_LINKTEST_SHOW) {
    out->body = envelope(0, "success", links_linktest_json(a->links), &out->len);
    return out->body ? 200 : 500;
  }
  int status = 202;
  const char *msg = "started";
  if (what == 405) {
    int get = strcmp(rq->method, "GET") == 0 || strcmp(rq->method, "HEAD") == 0;
    out->allow = get ? "POST" : "GET, HEAD, POST";
    status = 405;
    msg = get ? "a link test is started with POST; GET only shows it"
              : "method not allowed: GET or HEAD shows the link test, POST starts one";
  } else if (what == 400) {
    status = 400;
    msg = "bytes: a decimal number of bytes is required";
  } else {
    int rv = links_linktest_start(a->links, n);
    if (rv == -EINVAL) status = 400, msg = "bytes: must be 1..1073741824";
    else if (rv == -EBUSY) status = 409, msg = "a link test is running";
    else if (rv == -ENOTCONN) status = 409, msg = "no parent link is up";
    else if (rv != 0) status = 503, msg = "cannot open a stream on the parent link";
  }
  out->body = envelope(status == 202 ? 0 : status, msg,
                       status == 202 ? links_linktest_json(a->links) : NULL, &out->len);
  return out->body ? status : 500;
}

/* echo: /api/cascade/echo answers what it was sent (method, query, body):
 * a harmless route for checking what reaches the node, e.g. through the
 * controller's API relay. The body comes back as text (invalid UTF-8 is
 * replaced) with its exact length. */
static int echo(const httpflv_request_t *rq, httpflv_reply_t *out) {
  char *txt = malloc(rq->body_len + 1);
  if (txt == NULL) return 500;
  for (size_t i = 0; i < rq->body_len; i++) {
    unsigned char ch = (unsigned char)rq->body[i];
    txt[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : ch == '\n' || ch == '\t' ? (char)ch : '?';
  }
  txt[rq->body_len] = '\0';
  json_t *d = json_pack("{s:s,s:s,s:I,s:s}", "method", rq->method, "query", rq->query, "length",
                        (json_int_t)rq->body_len, "body", txt);
  free(txt);
  out->body = envelope(0, "success", d, &out->len);
  return out->body ? 200 : 500;
}

/* probe answers /healthz (the loop turns: see health.h) and /readyz (the
 * listeners are bound and a configuration runs). Both are answered by the
 * loop itself: a loop stuck for good answers neither, which a probe sees
 * as its timeout. */
static int probe(agent_t *a, const char *path, httpflv_reply_t *out) {
  char why[256];
  int ok;
  json_t *d;
  if (strcmp(path, "/healthz") == 0) {
    ok = health_live(&a->health, health_interval(a->health.bound), ev_time(), why, sizeof(why));
    d = json_pack("{s:s}", "status", "ok");
  } else if (a->draining) {
    ok = 0;
    snprintf(why, sizeof(why), "shutting down");
    d = NULL;
  } else {
    const ctlc_t *c = a->ctl;
    ok = health_ready(a->media_on, c ? (unsigned long long)c->applied_gen : 0,
                      c ? c->cached : 0, why, sizeof(why));
    d = ok ? json_pack("{s:s,s:I,s:s}", "status", "ready", "config_generation",
                       (json_int_t)c->applied_gen, "from",
                       c->cached ? "state file" : "controller")
           : NULL;
  }
  if (!ok) {
    json_decref(d);
    out->body = envelope(503, why, NULL, &out->len);
    return out->body ? 503 : 500;
  }
  out->body = envelope(0, "success", d, &out->len);
  return out->body ? 200 : 500;
}

static void on_health_tick(struct ev_loop *loop, ev_timer *w, int revents) {
  agent_t *a = w->data;
  (void)loop;
  (void)revents;
  health_tick(&a->health, health_interval(a->health.bound), ev_time());
}

/* on_api answers the local API on the loop thread: the state it shows is
 * read where it lives. */
static int on_api(void *arg, const httpflv_request_t *rq, httpflv_reply_t *out) {
  agent_t *a = arg;
  const char *method = rq->method, *path = rq->path;
  int get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
  out->ctype = "application/json";
  if (strcmp(path, "/api/cascade/linktest") == 0) return linktest(a, rq, out);
  if (strcmp(path, "/api/cascade/echo") == 0) return echo(rq, out);
  if (a->media_on) {
    int st = streamadm_route(a->media.hub, &a->events, ev_now(a->loop), rq, out);
    if (st) return st;
  }
  if (strcmp(path, "/healthz") != 0 && strcmp(path, "/readyz") != 0 &&
      strcmp(path, "/api/cascade/status") != 0 &&
      strcmp(path, "/api/stream/list") != 0 && strcmp(path, "/metrics") != 0)
    return 0;
  if (!get) {
    out->allow = "GET, HEAD";
    return 405;
  }
  if (strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0) {
    return probe(a, path, out);
  } else if (strcmp(path, "/api/cascade/status") == 0) {
    out->body = wrap_status(a, &out->len);
  } else if (strcmp(path, "/api/stream/list") == 0) {
    out->body = media_stream_list(&a->media, &out->len);
  } else {
    out->ctype = "text/plain; version=0.0.4";
    char *m = media_metrics(&a->media, &out->len), *lm = links_metrics(a->links), *o = NULL;
    char *cm = casc_metrics(a->casc);
    uint64_t hs_full, hs_resumed;
    ctltls_handshakes(&hs_full, &hs_resumed);
    if (m && lm && asprintf(&o,
                      "%s%s%s# TYPE cascade_control_state gauge\n"
                      "cascade_control_state{state=\"%s\"} 1\n"
                      "# TYPE cascade_control_applied_generation gauge\n"
                      "cascade_control_applied_generation %llu\n"
                      "# TYPE cascade_control_bad_messages_total counter\n"
                      "cascade_control_bad_messages_total %llu\n"
                      "# TYPE cascade_stream_events_dropped_total counter\n"
                      "cascade_stream_events_dropped_total %llu\n"
                      "# HELP cascade_agent_control_tls_handshakes_total TLS handshakes of the "
                      "control channel, full or resuming a session.\n"
                      "# TYPE cascade_agent_control_tls_handshakes_total counter\n"
                      "cascade_agent_control_tls_handshakes_total{kind=\"full\"} %llu\n"
                      "cascade_agent_control_tls_handshakes_total{kind=\"resumed\"} %llu\n%s",
                      m, lm, cm ? cm : "", ctlc_state_name(a->ctl->state),
                      (unsigned long long)a->ctl->applied_gen,
                      (unsigned long long)a->hub.bad_messages,
                      (unsigned long long)a->events.dropped, (unsigned long long)hs_full,
                      (unsigned long long)hs_resumed,
                      a->relays ? relayc_metrics(a->relays) : "") < 0)
      o = NULL;
    free(m);
    free(lm);
    free(cm);
    out->body = o;
    out->len = o ? strlen(o) : 0;
  }
  return out->body ? 200 : 500;
}

static void on_drain_check(struct ev_loop *loop, ev_timer *w, int revents) {
  agent_t *a = w->data;
  (void)revents;
  unsigned conns = media_connections(&a->media);
  size_t links = links_open(a->links);
  if (conns > 0 || links > 0) return;
  log_info(MOD, "drained in %.2f s: exiting", ev_now(loop) - a->drain_start);
  ev_break(loop, EVBREAK_ALL);
}

static void on_drain_deadline(struct ev_loop *loop, ev_timer *w, int revents) {
  agent_t *a = w->data;
  (void)revents;
  log_warn(MOD, "shutdown.timeout (%.1f s) reached with %u connections and %zu links still "
           "open: exiting", (double)a->cfg->shutdown_ms / 1000.0,
           media_connections(&a->media), links_open(a->links));
  ev_break(loop, EVBREAK_ALL);
}

/* on_signal drains on the first SIGTERM or SIGINT (docs/operations.md,
 * "Stopping"): listeners close, links close as going away, players get the
 * end of their streams; the loop ends when nothing is left open or at
 * shutdown.timeout. A second signal ends it at once. */
static void on_signal(struct ev_loop *loop, ev_signal *w, int revents) {
  agent_t *a = w->data;
  (void)revents;
  if (a->draining) {
    log_info(MOD, "signal %d again: exiting now", w->signum);
    ev_break(loop, EVBREAK_ALL);
    return;
  }
  if (!a->media_on || a->cfg->shutdown_ms == 0) {
    log_info(MOD, "signal %d: shutting down", w->signum);
    ev_break(loop, EVBREAK_ALL);
    return;
  }
  a->draining = 1;
  a->drain_start = ev_now(loop);
  log_info(MOD, "signal %d: draining for at most %.1f s (shutdown.timeout): listeners closed, "
           "links closing as going away, players ending", w->signum,
           (double)a->cfg->shutdown_ms / 1000.0);
  media_drain(&a->media);
  links_drain(a->links);
  ev_timer_init(&a->drain_check, on_drain_check, 0.05, 0.05);
  a->drain_check.data = a;
  ev_timer_start(loop, &a->drain_check);
  ev_timer_init(&a->drain_deadline, on_drain_deadline, (double)a->cfg->shutdown_ms / 1000.0, 0.);
  a->drain_deadline.data = a;
  ev_timer_start(loop, &a->drain_deadline);
}

/* apply_streamauth hands the controller's stream authorization (in the
 * configuration just applied) to the media node's admission. */
static void apply_streamauth(agent_t *a) {
  if (!a->media_on || a->media.auth == NULL) return;
  const agentmsg_config_t *cf = a->ctl->last_cf;
  if (cf == NULL) return; /* out of memory keeping it: the running policy stays */
  char err[256];
  if (edgeauth_apply_msg(a->media.auth, cf->rules.has_streamauth ? &cf->rules.streamauth : NULL,
                         err, sizeof(err)) != 0)
    log_error(MOD, "stream authorization of generation %llu refused, previous policy kept: %s",
              (unsigned long long)cf->generation, err);
}

static void on_ctl_change(ctlc_t *c, void *arg) {
  agent_t *a = arg;
  if (c != a->ctl) return;
  apply_streamauth(a);
  links_reconcile(a->links);
  relayc_check(a->relays);
  casc_kick(a->casc); /* rules (autopush, pull) may have changed */
}

static void on_parent(void *arg, quic_conn *c, relay_t *r, int64_t id) {
  agent_t *a = arg;
  casc_parent(a->casc, c, r, id);
}

static void on_relay(ctlc_t *c, const relay_request_t *q, const char *invalid, void *arg) {
  agent_t *a = arg;
  if (c == a->ctl && a->relays) relayc_submit(a->relays, q, invalid);
}

/* Stream reports for the heartbeat (docs/protocol.md, "Stream reports"). */
typedef struct sreports {
  agentmsg_stream_report_t *v;
  size_t n, cap;
  size_t total; /* every stream, reported or not */
} sreports_t;

static void add_report(const hub_stream_info_t *s, void *arg) {
  sreports_t *r = arg;
  r->total++;
  if (r->n >= r->cap) return; /* the controller reads no more: counted in total */
  agentmsg_stream_report_t *o = &r->v[r->n++];
  memset(o, 0, sizeof(*o));
  o->path = s->path; /* valid until the heartbeat is packed: same loop turn */
  if (!s->live) o->origin = AGENTMSG_ORIGIN_UNKNOWN;
  else if (s->origin.kind == HUB_ORIGIN_PUSHED) o->origin = AGENTMSG_ORIGIN_PUSHED;
  else if (s->origin.kind == HUB_ORIGIN_PULLED) o->origin = AGENTMSG_ORIGIN_PULLED;
  else o->origin = AGENTMSG_ORIGIN_LOCAL;
  /* a pushed stream names the node where it entered the cascade; a pulled
   * one only the peer it came from (an outside origin: 0) */
  o->origin_node = s->live && s->origin.kind == HUB_ORIGIN_PUSHED ? s->origin.node : 0;
  o->publisher_since = s->live && s->start_time > 0 ? (int64_t)s->start_time : 0;
  /* players only: the hub's subscribers also count pushes and pulls served */
  o->players[0].protocol = "rtmp";
  o->players[0].count = s->by_kind[HUB_SUB_PLAYER_RTMP];
  o->players[1].protocol = "httpflv";
  o->players[1].count = s->by_kind[HUB_SUB_PLAYER_HTTPFLV];
  o->nplayers = 2;
}

static int on_stream_reports(ctlc_t *c, agentmsg_stream_report_t *out, int max, uint32_t *total,
                             void *arg) {
  agent_t *a = arg;
  if (c != a->ctl || !a->media_on) return -1;
  sreports_t r = {out, 0, max > 0 ? (size_t)max : 0, 0};
  hub_foreach(a->media.hub, add_report, &r);
  *total = r.total > UINT32_MAX ? UINT32_MAX : (uint32_t)r.total;
  return (int)r.n;
}

static size_t on_stream_events(ctlc_t *c, agentmsg_stream_event_t *out, size_t max,
                               uint64_t *dropped, void *arg) {
  agent_t *a = arg;
  size_t n = 0;
  if (c != a->ctl) return 0;
  for (const streamev_t *e; n < max && (e = streamev_at(&a->events, n)) != NULL; n++) {
    agentmsg_stream_event_t *o = &out[n];
    o->seq = e->seq;
    o->time = e->time;
    o->action = e->action;
    o->path = e->path;
    o->connection = e->connection;
    o->addr = e->addr;
    o->kind = e->kind;
    o->protocol = e->protocol;
    o->ended = e->ended;
  }
  *dropped = a->events.dropped;
  return n;
}

static void on_stream_events_ack(ctlc_t *c, size_t n, void *arg) {
  agent_t *a = arg;
  if (c == a->ctl) streamev_ack(&a->events, n);
}

static size_t on_link_reports(ctlc_t *c, ctlc_link_report_t *out, size_t max, void *arg) {
  agent_t *a = arg;
  return c == a->ctl ? links_reports(a->links, out, max) : 0;
}

static void on_sim_report(struct ev_loop *loop, ev_timer *w, int revents) {
  agent_t *a = w->data;
  size_t running = 0, connecting = 0, failed = 0;
  (void)loop;
  (void)revents;
  for (size_t i = 0; i < a->nsim; i++) {
    const ctlc_t *c = a->sim[i];
    if (c->state == CTLC_RUNNING || c->state == CTLC_CERT) running++;
    else if (c->state == CTLC_BACKOFF && c->failed) failed++;
    else connecting++;
  }
  uint64_t hs_full, hs_resumed;
  ctltls_handshakes(&hs_full, &hs_resumed);
  printf("simulate: running=%zu connecting=%zu failed=%zu tls_full=%llu tls_resumed=%llu\n",
         running, connecting, failed, (unsigned long long)hs_full,
         (unsigned long long)hs_resumed);
  fflush(stdout);
}

int agent_start(agent_t *a, struct ev_loop *loop, agent_config_t *cfg, size_t nsim, char *err,
                size_t errlen) {
  memset(a, 0, sizeof(*a));
  streamev_init(&a->events);
  a->loop = loop;
  a->cfg = cfg;
  if (ctlc_hub_init(&a->hub, loop, cfg, nsim > 0, err, errlen) != 0) return -1;
  ev_signal_init(&a->sigint, on_signal, SIGINT);
  ev_signal_init(&a->sigterm, on_signal, SIGTERM);
  a->sigint.data = a->sigterm.data = a;
  ev_signal_start(loop, &a->sigint);
  ev_signal_start(loop, &a->sigterm);
  {
    double bound = (double)cfg->health_stall_ms / 1000.0, iv = health_interval(bound);
    health_init(&a->health, bound, ev_time());
    ev_timer_init(&a->health_tick, on_health_tick, iv, iv);
    a->health_tick.data = a;
    ev_timer_start(loop, &a->health_tick);
  }

  if (nsim > 0) {
    if ((a->sim = calloc(nsim, sizeof(*a->sim))) == NULL) {
      snprintf(err, errlen, "out of memory");
      goto fail;
    }
    for (size_t i = 0; i < nsim; i++) {
      char name[96];
      snprintf(name, sizeof(name), "%s-%zu", cfg->node_name, i);
      if ((a->sim[i] = ctlc_new(&a->hub, name, err, errlen)) == NULL) goto fail;
      a->nsim++;
    }
    ev_timer_init(&a->sim_report, on_sim_report, 1., 1.);
    a->sim_report.data = a;
    ev_timer_start(loop, &a->sim_report);
    log_info(MOD, "simulating %zu agents against %s", nsim, cfg->ctl_urls.v[0]);
    return 0;
  }
  if ((a->ctl = ctlc_new(&a->hub, cfg->node_name, err, errlen)) == NULL) goto fail;
  if ((a->links = links_new(loop, cfg, a->ctl)) == NULL) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  a->hub.on_change = on_ctl_change;
  a->hub.on_change_arg = a;
  a->hub.link_reports = on_link_reports;
  a->hub.link_reports_arg = a;
  if (media_start(&a->media, loop, cfg, on_api, a, err, errlen) != 0) goto fail;
  a->media_on = 1;
  if ((a->casc = casc_new(loop, cfg, a->ctl, a->media.hub)) == NULL) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  links_set_media(a->links, a->media.hub, on_parent, a);
  /* The relay reaches the node's own API on the admin listener (none: it
   * answers that the node has no local API). */
  if ((a->relays = relayc_new(loop, a->ctl, a->media.admin_fd)) == NULL) {
    snprintf(err, errlen, "cannot start the API relay");
    goto fail;
  }
  a->hub.on_relay = on_relay;
  a->hub.on_relay_arg = a;
  a->hub.stream_reports = on_stream_reports;
  a->hub.stream_reports_arg = a;
  a->hub.stream_events = on_stream_events;
  a->hub.stream_events_ack = on_stream_events_ack;
  a->hub.stream_events_arg = a;
  log_info(MOD, "agent %s started: HTTP-FLV http://%s, local API %s%s, RTMP %s, controller %s",
           cfg->node_name, a->media.http_url, a->media.admin_url[0] ? "http://" : "",
           a->media.admin_url[0] ? a->media.admin_url : "off (http.adminaddr is empty)",
           a->media.rtmp_url[0] ? a->media.rtmp_url : "off", ctlc_url(a->ctl));
  /* A configuration kept from an earlier run (cached mode) runs at once. */
  if (a->ctl->cached) on_ctl_change(a->ctl, a);
  return 0;

fail:
  agent_stop(a);
  return -1;
}

void agent_stop(agent_t *a) {
  if (a == NULL || a->loop == NULL) return;
  ev_timer_stop(a->loop, &a->sim_report);
  ev_timer_stop(a->loop, &a->health_tick);
  ev_timer_stop(a->loop, &a->drain_check);
  ev_timer_stop(a->loop, &a->drain_deadline);
  ev_signal_stop(a->loop, &a->sigint);
  ev_signal_stop(a->loop, &a->sigterm);
  /* Relays first: they use the control socket and the local server. */
  a->hub.on_relay = NULL;
  a->hub.stream_reports = NULL;
  a->hub.stream_events = NULL;
  a->hub.stream_events_ack = NULL;
  relayc_free(a->relays);
  a->relays = NULL;
  a->hub.on_change = NULL;
  a->hub.link_reports = NULL;
  /* The cascade, then the links (their relay feeds the hub), then the media
   * node: each goes before what it uses. Nothing is served meanwhile: this
   * runs outside the loop. */
  casc_free(a->casc);
  a->casc = NULL;
  links_free(a->links);
  a->links = NULL;
  if (a->media_on) media_stop(&a->media);
  a->media_on = 0;
  ctlc_destroy(a->ctl);
  for (size_t i = 0; i < a->nsim; i++) ctlc_destroy(a->sim[i]);
  free(a->sim);
  ctlc_hub_destroy(&a->hub);
  memset(a, 0, sizeof(*a));
}
