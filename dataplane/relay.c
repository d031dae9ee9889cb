/* Media relay over QUIC streams: see relay.h.
 *
 * One relay_stream per QUIC stream, in four roles: the answerer of a PUSH
 * (reads tags into a PUSHED publication) or of a PULL (writes a
 * subscription's tags), and the opener of a PUSH (writes) or of a PULL
 * (reads into a PULLED publication).
 *
 * Ownership: the relay owns every relay_stream (list |all|). An answered
 * stream is freed at its quic close (relay_on_stream_close, or
 * relay_on_conn_close); an opened one when qsvc reports its close and its
 * on_end has been delivered (or it was stopped). A stream's hub
 * subscription and publication are dropped as soon as the stream ends, so
 * a finished stream waiting for its close holds no media. */
#include "relay.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flv.h"
#include "log.h"

#define MOD "relay"
#define RELAY_BUCKETS 256
#define TAG_TAIL (FLV_TAG_HEADER_LEN + FLV_PREV_SIZE_LEN)

enum role { SRV_PUSH, SRV_PULL, OUT_PUSH, OUT_PULL };
enum state { ST_OPENING, ST_RUN, ST_DONE };

struct relay_stream {
  relay_t *r;
  struct relay_stream *prev, *next;   /* in r->all */
  struct relay_stream *hnext;         /* answered streams: r->tab chain */
  enum role role;
  enum state state;
  quic_conn *c;                       /* not used once |closed| */
  int64_t sid;
  char *path;                         /* owned: the path on the wire */
  char *local;                        /* owned: OUT_PULL's path here, NULL: |path| */
  char peer[64];                      /* for log lines after the connection went */
  /* writing (SRV_PULL, OUT_PUSH) */
  hub_sub_t *sub;                     /* borrowed from the hub until on_end / unsubscribe */
  hub_frame_t *cur;                   /* the frame being written, one reference */
  size_t off;                         /* bytes of cur's tag written */
  uint8_t th[FLV_TAG_HEADER_LEN], tt[FLV_PREV_SIZE_LEN];
  unsigned pre;                       /* bytes of PreviousTagSize0 still to write */
  int ending;                         /* FIN once |cur| is written */
  int fin_sent;
  /* reading (SRV_PUSH, OUT_PULL) */
  flv_parser_t fp;
  hub_stream_t *pub;                  /* our publication, NULL when not live */
  hub_origin_t origin;
  /* opened streams */
  relay_cb_t cb;
  void *ud;
  int closed;                         /* qsvc reported the close */
  int stopped;                        /* relay_*_stop: no on_end */
  int end_set;                        /* end_* hold the first reason */
  int end_why;
  uint32_t end_code;
  char end_reason[160];
  ev_timer tell;                      /* delivers on_end from the loop */
  uint64_t rx, tx;                    /* payload bytes, for the registry */
  connreg_ent_t ent;                  /* in the hub's registry while it publishes or plays */
};

typedef struct relay_stream rstream;

struct relay {
  struct ev_loop *loop;
  hub_t *hub;
  qsvc *q;
  relay_config_t cfg;
  rstream *all;
  rstream *tab[RELAY_BUCKETS];        /* answered streams by (conn, sid) */
  relay_stats_t stats;
  double log_tokens, log_t;           /* rate limit of per-stream log lines */
  unsigned log_dropped;
};

static const uint8_t zeros[FLV_PREV_SIZE_LEN];

/* ---- logging ---- */

/* rs_log writes one line naming the peer, stream and path; at most ~10 a
 * second over a burst of 20 per relay, counting what it drops. */
static void rs_log(rstream *s, log_level_t lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void rs_log(rstream *s, log_level_t lvl, const char *fmt, ...) {
  relay_t *r = s->r;
  if (!log_enabled(lvl)) return;
  double now = ev_now(r->loop);
  r->log_tokens += (now - r->log_t) * 10;
  if (r->log_tokens > 20) r->log_tokens = 20;
  r->log_t = now;
  if (r->log_tokens < 1) {
    r->log_dropped++;
    return;
  }
  r->log_tokens -= 1;
  char msg[512], qp[128];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  static const char *const roles[] = {"push in", "pull in", "push out", "pull out"};
  log_msg(lvl, MOD, "[relay %s stream %" PRId64 " %s %s] %s%s", s->peer, s->sid, roles[s->role],
          log_quote(s->path, qp, sizeof(qp)), msg,
          r->log_dropped ? " (lines were suppressed)" : "");
  r->log_dropped = 0;
}

/* ---- table of answered streams ---- */

static size_t bucket(const quic_conn *c, int64_t sid) {
  uint64_t h = (uint64_t)(uintptr_t)c ^ ((uint64_t)sid * 0x9E3779B97F4A7C15ull);
  h ^= h >> 29;
  h *= 0xBF58476D1CE4E5B9ull;
  h ^= h >> 32;
  return (size_t)(h % RELAY_BUCKETS);
}

static rstream *tab_find(relay_t *r, const quic_conn *c, int64_t sid) {
  for (rstream *s = r->tab[bucket(c, sid)]; s; s = s->hnext)
    if (s->c == c && s->sid == sid) return s;
  return NULL;
}

static void tab_remove(relay_t *r, rstream *s) {
  for (rstream **p = &r->tab[bucket(s->c, s->sid)]; *p; p = &(*p)->hnext)
    if (*p == s) {
      *p = s->hnext;
      return;
    }
}

static int served(const rstream *s) { return s->role == SRV_PUSH || s->role == SRV_PULL; }

/* ---- life ---- */

static void tell_cb(struct ev_loop *loop, ev_timer *w, int revents);

static rstream *rs_new(relay_t *r, enum role role, quic_conn *c, const char *path) {
  rstream *s = calloc(1, sizeof(*s));
  if (!s) return NULL;
  s->path = strdup(path);
  if (!s->path) {
    free(s);
    return NULL;
  }
  s->r = r;
  s->role = role;
  s->c = c;
  snprintf(s->peer, sizeof(s->peer), "%s", quic_conn_peer_name(c));
  flv_parser_init(&s->fp, 0);
  s->fp.max_tag = r->cfg.max_tag;
  ev_timer_init(&s->tell, tell_cb, 0., 0.);
  s->tell.data = s;
  s->next = r->all;
  if (r->all) r->all->prev = s;
  r->all = s;
  return s;
}

/* rs_drop_media ends what |s| holds in the hub: its subscription and its
 * publication (the hub's delayclose keeps the players). */
static void rs_drop_media(rstream *s) {
  connreg_remove(hub_connreg(s->r->hub), &s->ent);
  hub_sub_t *sub = s->sub;
  s->sub = NULL;
  hub_unsubscribe(sub);
  hub_frame_unref(s->cur);
  s->cur = NULL;
  hub_stream_t *pub = s->pub;
  s->pub = NULL;
  hub_unpublish(pub);
  flv_parser_free(&s->fp);
}

static void rs_free(rstream *s) {
  relay_t *r = s->r;
  rs_drop_media(s);
  ev_timer_stop(r->loop, &s->tell);
  if (s->prev) s->prev->next = s->next;
  else r->all = s->next;
  if (s->next) s->next->prev = s->prev;
  free(s->path);
  free(s->local);
  free(s);
}

/* rs_end records the first reason an opened stream ends for. */
static void rs_end(rstream *s, int why, uint32_t code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void rs_end(rstream *s, int why, uint32_t code, const char *fmt, ...) {
  if (s->end_set) return;
  s->end_set = 1;
  s->end_why = why;
  s->end_code = code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->end_reason, sizeof(s->end_reason), fmt, ap);
  va_end(ap);
}

/* rs_reset abandons the stream with |code|; its close follows. */
static void rs_reset(rstream *s, uint32_t code) {
  if (s->state == ST_DONE) return;
  s->state = ST_DONE;
  rs_drop_media(s);
  if (!s->closed && quic_stream_reset(s->c, s->sid, code) == 0) s->r->stats.resets++;
}

/* rs_fail resets |s| for a local reason, recorded for on_end. */
static void rs_fail(rstream *s, uint32_t code, const char *why) {
  rs_log(s, LOG_WARN, "reset (code 0x%" PRIx32 "): %s", code, why);
  rs_end(s, RELAY_END_LOCAL, code, "%s", why);
  rs_reset(s, code);
}

/* opened_closed runs when qsvc reports the close of an opened stream:
 * on_end is delivered from the loop, then the stream is freed. */
static void opened_closed(rstream *s, uint64_t app_code) {
  s->closed = 1;
  s->state = ST_DONE;
  rs_drop_media(s);
  if (app_code == QSVC_ERR_CONN_CLOSED)
    rs_end(s, RELAY_END_CONN_CLOSED, 0, "connection closed");
  else if (app_code != 0)
    rs_end(s, RELAY_END_RESET, (uint32_t)app_code, "reset by the peer (code 0x%" PRIx64 ")",
           app_code);
  else
    rs_end(s, RELAY_END_FINISHED, 0, "ended by the peer");
  if (s->stopped) {
    rs_free(s);
    return;
  }
  ev_timer_start(s->r->loop, &s->tell);
}

static void tell_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  rstream *s = w->data;
  (void)loop;
  (void)revents;
  relay_end_t e = {s->end_why, s->end_code, s->end_reason};
  if (!s->stopped && s->cb.on_end) s->cb.on_end(&e, s->ud);
  rs_free(s);
}

/* ---- writing: the subscription's frames as FLV tags ---- */

static void rs_drain(rstream *s);

static void write_failed(rstream *s, ssize_t w) {
  if (w == -ENOMEM) rs_fail(s, QSVC_ERR_NO_MEMORY, "out of memory");
  else s->state = ST_DONE; /* the stream is going: its close follows */
}

/* put writes |n| bytes; returns how many were taken, -1 when the stream
 * failed. */
static ssize_t put(rstream *s, const void *p, size_t n) {
  ssize_t w = quic_stream_write(s->c, s->sid, p, n, 0);
  if (w < 0) {
    write_failed(s, w);
    return -1;
  }
  s->r->stats.bytes_out += (uint64_t)w;
  s->tx += (uint64_t)w;
  return w;
}

/* rs_drain writes queued frames until the send buffer is full (on_writable
 * resumes) or the queue is empty; one frame at most is held here. */
static void rs_drain(rstream *s) {
  while (s->state == ST_RUN && s->pre) {
    ssize_t w = put(s, zeros + FLV_PREV_SIZE_LEN - s->pre, s->pre);
    if (w <= 0) return;
    s->pre -= (unsigned)w;
  }
  while (s->state == ST_RUN) {
    if (!s->cur) {
      s->cur = s->sub ? hub_sub_next(s->sub) : NULL;
      if (!s->cur) break;
      flv_frame_header(s->th, s->cur, s->cur->ts);
      flv_put_u32(s->tt, (uint32_t)(FLV_TAG_HEADER_LEN + s->cur->len));
      s->off = 0;
    }
    hub_frame_t *f = s->cur;
    size_t total = TAG_TAIL + f->len;
    while (s->off < total) {
      const uint8_t *p;
      size_t n;
      if (s->off < FLV_TAG_HEADER_LEN) {
        p = s->th + s->off;
        n = FLV_TAG_HEADER_LEN - s->off;
      } else if (s->off < FLV_TAG_HEADER_LEN + f->len) {
        p = f->data + (s->off - FLV_TAG_HEADER_LEN);
        n = f->len - (s->off - FLV_TAG_HEADER_LEN);
      } else {
        p = s->tt + (s->off - FLV_TAG_HEADER_LEN - f->len);
        n = total - s->off;
      }
      ssize_t w = put(s, p, n);
      if (w < 0) return;
      s->off += (size_t)w;
      if ((size_t)w < n) return; /* full: on_writable */
    }
    hub_frame_unref(s->cur);
    s->cur = NULL;
    s->r->stats.frames_out++;
  }
  if (s->state == ST_RUN && s->ending && !s->cur && !s->fin_sent) {
    ssize_t w = quic_stream_write(s->c, s->sid, NULL, 0, 1);
    if (w < 0) write_failed(s, w);
    else s->fin_sent = 1;
  }
}

static void sub_frames(hub_sub_t *sub, void *arg) {
  rstream *s = arg;
  (void)sub;
  if (s->state == ST_RUN) rs_drain(s);
}

static uint32_t end_code(int why) {
  switch (why) {
  case HUB_END_NOT_FOUND: return RELAY_ERR_NOT_FOUND;
  case HUB_END_UNPUBLISHED: return RELAY_ERR_UNPUBLISHED;
  case HUB_END_SLOW: return RELAY_ERR_SLOW;
  case HUB_END_LIMIT: return RELAY_ERR_LIMIT;
  case HUB_END_KICKED: return RELAY_ERR_STOPPED;
  default: return RELAY_ERR_SHUTDOWN;
  }
}

static const char *end_text(int why) {
  switch (why) {
  case HUB_END_NOT_FOUND: return "no publisher within the wait timeout";
  case HUB_END_UNPUBLISHED: return "the stream ended";
  case HUB_END_SLOW: return "the link stayed behind the stream too long";
  case HUB_END_LIMIT: return "subscriber limit";
  case HUB_END_KICKED: return "ended by the operator";
  default: return "shutting down";
  }
}

static void sub_end(hub_sub_t *sub, void *arg, int why) {
  rstream *s = arg;
  (void)sub;
  s->sub = NULL; /* the hub frees it when this returns */
  connreg_remove(hub_connreg(s->r->hub), &s->ent);
  if (s->role == OUT_PUSH &&
      (why == HUB_END_UNPUBLISHED || why == HUB_END_SHUTDOWN || why == HUB_END_KICKED) &&
      s->state == ST_RUN) {
    /* The local stream ended, this node shuts down (a drain, not a
     * failure) or the operator ended the push: finish the tag in flight,
     * then FIN; the parent unpublishes and its delayclose keeps its
     * players. */
    int down = why == HUB_END_SHUTDOWN, op = why == HUB_END_KICKED;
    rs_log(s, LOG_INFO, down ? "this node shuts down, finishing the push"
                        : op ? "ended by the operator, finishing the push"
                             : "local stream ended, finishing the push");
    rs_end(s, RELAY_END_FINISHED, down ? RELAY_ERR_SHUTDOWN : RELAY_ERR_UNPUBLISHED,
           down ? "this node shuts down" : op ? "ended by the operator" : "the local stream ended");
    s->ending = 1;
    rs_drain(s);
    return;
  }
  if (s->role == OUT_PUSH) {
    rs_fail(s, end_code(why), end_text(why));
    return;
  }
  rs_log(s, why == HUB_END_SLOW ? LOG_WARN : LOG_INFO, "reset (code 0x%x): %s", end_code(why),
         end_text(why));
  rs_reset(s, end_code(why));
}

static const hub_sub_ops_t sub_ops = {sub_frames, sub_end};

/* rs_kick ends |s| for the operator (connreg_kick): a subscription ends
 * as a relay's does when its stream ends (a push finishes, a pull served
 * to the peer is reset); a publication (a push received, a pull) is reset
 * and its stream here ends at once. */
static void rs_kick(connreg_ent_t *e, void *arg) {
  rstream *s = arg;
  (void)e;
  if (s->sub) {
    hub_sub_kick(s->sub);
  } else if (s->pub) {
    relay_t *r = s->r;
    char *path = strdup(s->local ? s->local : s->path);
    rs_log(s, LOG_INFO, "reset (code 0x%x): ended by the operator", RELAY_ERR_STOPPED);
    rs_end(s, RELAY_END_LOCAL, RELAY_ERR_STOPPED, "ended by the operator");
    rs_reset(s, RELAY_ERR_STOPPED);
    if (path) hub_drop(r->hub, path);
    free(path);
  }
}

/* rs_register lists |s| in the hub's registry as |kind| (out of memory:
 * not listed). */
static void rs_register(rstream *s, int kind) {
  static const char *const proto[] = {"quic-push", "quic-pull", "quic-push", "quic-pull"};
  (void)connreg_add(hub_connreg(s->r->hub), &s->ent, kind, proto[s->role],
                    s->local ? s->local : s->path, s->peer, &s->rx, &s->tx,
                    ev_now(s->r->loop), rs_kick, s);
}

/* rs_subscribe attaches |s| to its path as a relay subscription. */
static int rs_subscribe(rstream *s) {
  s->sub = hub_subscribe(s->r->hub, s->path, &sub_ops, s);
  if (!s->sub) return -ENOMEM;
  rs_register(s, CONNREG_PLAYER);
  hub_sub_set_immediate(s->sub, 1); /* the next hop merges its own writes */
  hub_sub_set_follow(s->sub, 1);    /* the next hop keeps its players itself */
  if (s->r->cfg.send_bound) hub_sub_set_queue_bytes(s->sub, s->r->cfg.send_bound);
  return 0;
}

/* ---- reading: FLV tags into the publication ---- */

/* pull_preempted: a local or pushed publisher took our path (hub.h,
 * hub_stream_set_preempt); the pull has nothing left to do. */
static void pull_preempted(hub_stream_t *st, void *arg) {
  rstream *s = arg;
  (void)st;
  connreg_remove(hub_connreg(s->r->hub), &s->ent);
  s->pub = NULL; /* no longer ours */
  rs_fail(s, RELAY_ERR_BUSY, "a publisher here took the path over");
}

/* pull_go_live publishes an accepted pull's path here once the first tag
 * arrives: until the peer delivers, a pull is not a stream (players keep
 * waiting on their own subscribe.waittimeout, and a publisher arriving
 * meanwhile simply takes the path). 0, or -1 when |s| failed. */
static int pull_go_live(rstream *s) {
  int err = 0;
  s->pub = hub_publish_ex(s->r->hub, s->local ? s->local : s->path, &s->origin, &err);
  if (!s->pub) {
    rs_fail(s, err == HUB_EBUSY ? RELAY_ERR_BUSY : RELAY_ERR_LIMIT,
            err == HUB_EBUSY ? "the path got another publisher meanwhile" : "stream limit");
    return -1;
  }
  hub_stream_set_preempt(s->pub, pull_preempted, s);
  rs_register(s, CONNREG_PUBLISHER);
  rs_log(s, LOG_INFO, "pulling");
  if (s->cb.on_start) s->cb.on_start(s->ud);
  return s->state == ST_RUN ? 0 : -1;
}

static void rs_feed(rstream *s, const uint8_t *d, size_t len, int fin) {
  if (s->state != ST_RUN) return;
  s->r->stats.bytes_in += len;
  s->rx += len;
  for (;;) {
    hub_frame_t *f = NULL;
    long n = flv_parse(&s->fp, d, len, &f);
    if (n < 0) {
      rs_fail(s, RELAY_ERR_BAD_MEDIA, flv_strerror((int)n));
      return;
    }
    d += n;
    len -= (size_t)n;
    if (!f) break; /* all taken */
    s->r->stats.frames_in++;
    if (s->role == OUT_PULL && !s->pub && pull_go_live(s) != 0) {
      hub_frame_unref(f);
      return;
    }
    hub_push(s->pub, f);
    if (s->state != ST_RUN) return;
  }
  if (!fin) return;
  /* The sender ended its direction: the publication ends (players are
   * kept by delayclose), and so does ours. */
  hub_stream_t *pub = s->pub;
  s->pub = NULL;
  hub_unpublish(pub);
  rs_log(s, LOG_INFO, "ended by the peer after %" PRIu64 " tags", s->fp.tags);
  s->state = ST_DONE;
  if (quic_stream_write(s->c, s->sid, NULL, 0, 1) < 0) {
    /* already going: its close follows */
  }
}

/* ---- options ---- */

static const char *opt(const streamhdr_t *h, const char *key) {
  for (size_t i = 0; i < h->noptions; i++)
    if (strcmp(h->option_keys[i], key) == 0) return h->option_values[i];
  return NULL;
}

/* dec reads a decimal without sign into |out| (at most |max|). */
static int dec(const char *v, uint64_t max, uint64_t *out) {
  uint64_t x = 0;
  if (!v || !*v || strlen(v) > 20) return -1;
  for (; *v; v++) {
    if (*v < '0' || *v > '9') return -1;
    if (x > (max - (uint64_t)(*v - '0')) / 10) return -1;
    x = x * 10 + (uint64_t)(*v - '0');
  }
  *out = x;
  return 0;
}

static const char *origin_text(const hub_origin_t *o, char *buf, size_t len) {
  if (o->kind == HUB_ORIGIN_PUSHED)
    snprintf(buf, len, "pushed from node %" PRId64 ", %" PRIu32 " hops", o->node, o->hops);
  else if (o->kind == HUB_ORIGIN_PULLED)
    snprintf(buf, len, "pulled from node %" PRId64, o->node);
  else
    snprintf(buf, len, "published locally");
  return buf;
}

/* served_push_of finds the answered PUSH that publishes |path|. */
static rstream *served_push_of(relay_t *r, const char *path) {
  for (rstream *s = r->all; s; s = s->next)
    if (s->role == SRV_PUSH && s->pub && strcmp(s->path, path) == 0) return s;
  return NULL;
}

/* ---- answering PUSH ---- */

static int push_check(quic_conn *c, int64_t sid, const streamhdr_t *h, uint32_t *code,
                      char *reason, size_t reasonlen, void *ud) {
  relay_t *r = ud;
  uint64_t origin, hops;
  hub_origin_t cur;
  char ot[96];
  (void)c;
  (void)sid;
  if (!hub_path_ok(h->path)) {
    *code = RELAY_ERR_BAD_PATH;
    snprintf(reason, reasonlen, "not a stream path (app/name)");
  } else if (dec(opt(h, "origin"), INT64_MAX, &origin) != 0) {
    *code = QSVC_ERR_BAD_OPTION;
    snprintf(reason, reasonlen, "option origin (node id, decimal) missing or invalid");
  } else if (dec(opt(h, "hops"), UINT32_MAX, &hops) != 0 || hops == 0) {
    *code = QSVC_ERR_BAD_OPTION;
    snprintf(reason, reasonlen, "option hops (1.., decimal) missing or invalid");
  } else if (hops > r->cfg.max_hops) {
    *code = RELAY_ERR_HOPS;
    snprintf(reason, reasonlen, "%" PRIu64 " hops, at most %" PRIu32 " accepted", hops,
             r->cfg.max_hops);
  } else if ((int64_t)origin == r->cfg.node_id) {
    *code = RELAY_ERR_LOOP;
    snprintf(reason, reasonlen, "loop: the stream comes from this node (%" PRId64 ")",
             r->cfg.node_id);
  } else {
    int e = hub_publish_check_ex(r->hub, h->path, HUB_ORIGIN_PUSHED);
    if (e == HUB_EBUSY && hub_origin_of(r->hub, h->path, &cur) == 0 &&
        cur.kind == HUB_ORIGIN_PUSHED && cur.node == (int64_t)origin &&
        served_push_of(r, h->path))
      e = 0; /* the same origin again: its pusher reconnected, take over */
    if (e == 0) return 0;
    if (e == HUB_EBUSY) {
      *code = RELAY_ERR_BUSY;
      if (hub_origin_of(r->hub, h->path, &cur) != 0) memset(&cur, 0, sizeof(cur));
      snprintf(reason, reasonlen, "already published here (%s)",
               origin_text(&cur, ot, sizeof(ot)));
    } else {
      *code = RELAY_ERR_LIMIT;
      snprintf(reason, reasonlen, "stream limit reached");
    }
  }
  r->stats.refused++;
  return -1;
}

static void push_start(quic_conn *c, int64_t sid, const streamhdr_t *h, const uint8_t *data,
                       size_t len, int fin, void *ud) {
  relay_t *r = ud;
  uint64_t origin = 0, hops = 0;
  (void)dec(opt(h, "origin"), INT64_MAX, &origin); /* push_check validated both */
  (void)dec(opt(h, "hops"), UINT32_MAX, &hops);
  rstream *s = rs_new(r, SRV_PUSH, c, h->path);
  if (!s) {
    quic_stream_reset(c, sid, QSVC_ERR_NO_MEMORY);
    return;
  }
  s->sid = sid;
  s->state = ST_RUN;
  size_t b = bucket(c, sid);
  s->hnext = r->tab[b];
  r->tab[b] = s;
  r->stats.pushes_in++;
  rstream *old = served_push_of(r, h->path);
  if (old) {
    rs_log(old, LOG_INFO, "replaced by a new push from the same origin (%s stream %" PRId64 ")",
           s->peer, sid);
    rs_reset(old, RELAY_ERR_REPLACED);
  }
  s->origin.kind = HUB_ORIGIN_PUSHED;
  s->origin.node = (int64_t)origin;
  s->origin.hops = (uint32_t)hops;
  int err = 0;
  s->pub = hub_publish_ex(r->hub, s->path, &s->origin, &err);
  if (!s->pub) {
    rs_fail(s, err == HUB_EBUSY ? RELAY_ERR_BUSY : RELAY_ERR_LIMIT, "cannot publish");
    return;
  }
  rs_register(s, CONNREG_PUBLISHER);
  rs_log(s, LOG_INFO, "publishing (origin node %" PRId64 ", %" PRIu64 " hops)", s->origin.node,
         hops);
  rs_feed(s, data, len, fin);
}

/* ---- answering PULL ---- */

static int pull_check(quic_conn *c, int64_t sid, const streamhdr_t *h, uint32_t *code,
                      char *reason, size_t reasonlen, void *ud) {
  relay_t *r = ud;
  uint64_t puller;
  const char *o = opt(h, "origin");
  (void)c;
  (void)sid;
  if (!hub_path_ok(h->path)) {
    *code = RELAY_ERR_BAD_PATH;
    snprintf(reason, reasonlen, "not a stream path (app/name)");
  } else if (o && dec(o, INT64_MAX, &puller) != 0) {
    *code = QSVC_ERR_BAD_OPTION;
    snprintf(reason, reasonlen, "option origin (node id, decimal) invalid");
  } else if (o && (int64_t)puller == r->cfg.node_id) {
    *code = RELAY_ERR_LOOP;
    snprintf(reason, reasonlen, "loop: the puller is this node (%" PRId64 ")", r->cfg.node_id);
  } else {
    return 0;
  }
  r->stats.refused++;
  return -1;
}

static void pull_start(quic_conn *c, int64_t sid, const streamhdr_t *h, const uint8_t *data,
                       size_t len, int fin, void *ud) {
  relay_t *r = ud;
  (void)data;
  (void)len;
  rstream *s = rs_new(r, SRV_PULL, c, h->path);
  if (!s) {
    quic_stream_reset(c, sid, QSVC_ERR_NO_MEMORY);
    return;
  }
  s->sid = sid;
  size_t b = bucket(c, sid);
  s->hnext = r->tab[b];
  r->tab[b] = s;
  r->stats.pulls_in++;
  s->state = ST_RUN;
  s->pre = FLV_PREV_SIZE_LEN;
  if (rs_subscribe(s) != 0) {
    rs_fail(s, QSVC_ERR_NO_MEMORY, "out of memory");
    return;
  }
  rs_log(s, LOG_DEBUG, "serving");
  if (fin) { /* the puller already gave up */
    rs_reset(s, RELAY_ERR_STOPPED);
    return;
  }
  rs_drain(s); /* PreviousTagSize0 now; frames come from the hub */
}

/* ---- opening ---- */

static void out_answer(quic_conn *c, int64_t sid, int accepted, uint32_t code, const char *reason,
                       void *ud) {
  rstream *s = ud;
  (void)c;
  (void)sid;
  if (s->state != ST_OPENING) return; /* stopped meanwhile */
  if (!accepted) {
    char qr[160];
    rs_log(s, LOG_WARN, "refused (code 0x%" PRIx32 "): %s", code,
           log_quote(reason, qr, sizeof(qr)));
    rs_end(s, RELAY_END_REFUSED, code, "%s", reason);
    s->state = ST_DONE; /* qsvc resets it */
    rs_drop_media(s);
    return;
  }
  s->state = ST_RUN;
  if (s->role == OUT_PULL) {
    /* published here with the first tag (pull_go_live) */
    rs_log(s, LOG_DEBUG, "accepted, waiting for the stream");
    return;
  }
  rs_log(s, LOG_INFO, "pushing (origin node %" PRId64 ", %" PRIu32 " hops)", s->origin.node,
         s->origin.hops);
  if (s->cb.on_start) s->cb.on_start(s->ud);
  if (s->state == ST_RUN) rs_drain(s);
}

static void out_data(quic_conn *c, int64_t sid, const uint8_t *data, size_t len, int fin,
                     void *ud) {
  rstream *s = ud;
  (void)c;
  (void)sid;
  if (s->role == OUT_PULL) {
    if (fin && s->state == ST_RUN) rs_end(s, RELAY_END_FINISHED, 0, "ended by the peer");
    rs_feed(s, data, len, fin);
  } else if (fin && s->state == ST_RUN) {
    /* The parent ended its direction: nothing more is taken; finish. */
    rs_end(s, RELAY_END_FINISHED, 0, "ended by the peer");
    s->ending = 1;
    hub_sub_t *sub = s->sub;
    s->sub = NULL;
    hub_unsubscribe(sub);
    rs_drain(s);
  }
}

static void out_writable(quic_conn *c, int64_t sid, void *ud) {
  rstream *s = ud;
  (void)c;
  (void)sid;
  if (s->role == OUT_PUSH) rs_drain(s);
}

static void out_close(quic_conn *c, int64_t sid, uint64_t app_code, void *ud) {
  (void)c;
  (void)sid;
  opened_closed(ud, app_code);
}

static const qsvc_call_cb out_cb = {out_answer, out_data, out_writable, out_close};

/* out_open opens the stream of |s| with |n| options. */
static int out_open(rstream *s, size_t n, const char *const *keys, const char *const *vals) {
  int rv = qsvc_open(s->r->q, s->c, s->role == OUT_PUSH ? STREAM_PUSH : STREAM_PULL, s->path, n,
                     keys, vals, &out_cb, s, &s->sid);
  if (rv == 0) s->state = ST_OPENING;
  return rv;
}

relay_push_t *relay_push(relay_t *r, quic_conn *c, const char *path, const relay_cb_t *cb,
                         void *ud, int *err) {
  hub_origin_t o;
  int e = 0;
  rstream *s = NULL;
  if (!r || !c || !path) {
    e = -EINVAL;
    goto fail;
  }
  if (hub_origin_of(r->hub, path, &o) != 0) {
    e = -ENOENT;
    goto fail;
  }
  if (o.kind == HUB_ORIGIN_PULLED) {
    e = -ELOOP; /* it came from above: pushing it back would loop */
    goto fail;
  }
  if (o.kind == HUB_ORIGIN_LOCAL) {
    o.node = r->cfg.node_id;
    o.hops = 1;
  } else {
    o.hops++;
  }
  if (o.hops > r->cfg.max_hops) {
    e = -ELOOP;
    goto fail;
  }
  s = rs_new(r, OUT_PUSH, c, path);
  if (!s) {
    e = -ENOMEM;
    goto fail;
  }
  s->origin = o;
  if (cb) s->cb = *cb;
  s->ud = ud;
  s->pre = FLV_PREV_SIZE_LEN;
  if ((e = rs_subscribe(s)) != 0) goto fail_stream;
  char on[24], hn[16];
  snprintf(on, sizeof(on), "%" PRId64, o.node);
  snprintf(hn, sizeof(hn), "%" PRIu32, o.hops);
  const char *keys[] = {"origin", "hops"}, *vals[] = {on, hn};
  if ((e = out_open(s, 2, keys, vals)) != 0) goto fail_stream;
  r->stats.pushes_out++;
  if (err) *err = 0;
  return s;
fail_stream:
  s->stopped = 1;
  rs_free(s);
fail:
  if (err) *err = e;
  return NULL;
}

relay_pull_t *relay_pull(relay_t *r, quic_conn *c, const char *path, int64_t peer_node,
                         const relay_cb_t *cb, void *ud, int *err) {
  return relay_pull_as(r, c, path, path, peer_node, cb, ud, err);
}

relay_pull_t *relay_pull_as(relay_t *r, quic_conn *c, const char *path, const char *local,
                            int64_t peer_node, const relay_cb_t *cb, void *ud, int *err) {
  int e = 0;
  rstream *s = NULL;
  if (!r || !c || !path || !local || !hub_path_ok(local)) {
    e = -EINVAL;
    goto fail;
  }
  switch (hub_publish_check_ex(r->hub, local, HUB_ORIGIN_PULLED)) {
  case 0: break;
  case HUB_EBUSY: e = -EBUSY; goto fail;
  case HUB_ELIMIT: e = -ENOSPC; goto fail;
  default: e = -EINVAL; goto fail;
  }
  s = rs_new(r, OUT_PULL, c, path);
  if (!s) {
    e = -ENOMEM;
    goto fail;
  }
  if (strcmp(local, path) != 0 && (s->local = strdup(local)) == NULL) {
    e = -ENOMEM;
    goto fail_stream;
  }
  s->origin.kind = HUB_ORIGIN_PULLED;
  s->origin.node = peer_node;
  s->origin.hops = 1;
  if (cb) s->cb = *cb;
  s->ud = ud;
  char on[24];
  snprintf(on, sizeof(on), "%" PRId64, r->cfg.node_id);
  const char *keys[] = {"origin"}, *vals[] = {on};
  if ((e = out_open(s, 1, keys, vals)) != 0) goto fail_stream;
  r->stats.pulls_out++;
  if (err) *err = 0;
  return s;
fail_stream:
  s->stopped = 1;
  rs_free(s);
fail:
  if (err) *err = e;
  return NULL;
}

/* rs_stop: the caller gives up |s|; the stream is reset and freed at its
 * close (or at once when it has closed and only on_end was pending). */
static void rs_stop(rstream *s) {
  if (!s || s->stopped) return;
  s->stopped = 1;
  if (s->closed) {
    rs_free(s); /* on_end was pending: it is not delivered */
    return;
  }
  if (s->state != ST_DONE) rs_log(s, LOG_INFO, "stopped");
  rs_reset(s, RELAY_ERR_STOPPED);
}

void relay_push_stop(relay_push_t *p) { rs_stop(p); }

void relay_pull_stop(relay_pull_t *p) { rs_stop(p); }

/* ---- answered streams: quic callbacks ---- */

int relay_on_data(relay_t *r, quic_conn *c, int64_t sid, const uint8_t *data, size_t len,
                  int fin) {
  rstream *s = r ? tab_find(r, c, sid) : NULL;
  if (!s) return 0;
  if (s->role == SRV_PUSH) {
    rs_feed(s, data, len, fin);
  } else if (fin && s->state == ST_RUN) {
    /* The puller ended its direction: it wants no more. */
    s->ending = 1;
    hub_sub_t *sub = s->sub;
    s->sub = NULL;
    hub_unsubscribe(sub);
    rs_drain(s);
  }
  return 1;
}

int relay_on_writable(relay_t *r, quic_conn *c, int64_t sid) {
  rstream *s = r ? tab_find(r, c, sid) : NULL;
  if (!s) return 0;
  if (s->role == SRV_PULL) rs_drain(s);
  return 1;
}

/* served_gone frees an answered stream at its close. */
static void served_gone(rstream *s, uint64_t app_code) {
  if (s->state == ST_RUN && app_code)
    rs_log(s, LOG_INFO, "reset by the peer (code 0x%" PRIx64 ")", app_code);
  tab_remove(s->r, s);
  s->closed = 1;
  rs_free(s);
}

int relay_on_stream_stop_sending(relay_t *r, quic_conn *c, int64_t sid) {
  rstream *s = r ? tab_find(r, c, sid) : NULL;
  if (!s) return 0;
  if (s->role == SRV_PULL && s->state == ST_RUN) {
    /* The puller reads no more: its subscription goes now, not at the
     * stream's close (the puller's own direction may stay open). */
    rs_log(s, LOG_INFO, "stopped by the peer");
    s->state = ST_DONE;
    rs_drop_media(s);
  }
  return 1;
}

int relay_on_stream_close(relay_t *r, quic_conn *c, int64_t sid, uint64_t app_code) {
  rstream *s = r ? tab_find(r, c, sid) : NULL;
  if (!s) return 0;
  served_gone(s, app_code);
  return 1;
}

void relay_on_conn_close(relay_t *r, quic_conn *c) {
  if (!r) return;
  /* Freeing a stream unpublishes, and the hub's observer may stop other
   * relay streams from there: the walk starts over after each one. */
  for (;;) {
    rstream *s = r->all;
    while (s && !(served(s) && s->c == c)) s = s->next;
    if (!s) return;
    served_gone(s, 0);
  }
}

/* ---- relay ---- */

relay_t *relay_new(struct ev_loop *loop, hub_t *hub, qsvc *q, const relay_config_t *cfg) {
  static const qsvc_handler_t push_h = {push_check, push_start};
  static const qsvc_handler_t pull_h = {pull_check, pull_start};
  if (!loop || !hub || !q) return NULL;
  relay_t *r = calloc(1, sizeof(*r));
  if (!r) return NULL;
  r->loop = loop;
  r->hub = hub;
  r->q = q;
  if (cfg) r->cfg = *cfg;
  if (r->cfg.max_hops == 0) r->cfg.max_hops = RELAY_MAX_HOPS;
  if (r->cfg.max_tag == 0 || r->cfg.max_tag > HUB_FRAME_MAX) r->cfg.max_tag = RELAY_MAX_TAG;
  r->log_tokens = 20;
  r->log_t = ev_now(loop);
  if (qsvc_set_handler(q, STREAM_PUSH, &push_h, r) != 0) goto fail_push;
  if (qsvc_set_handler(q, STREAM_PULL, &pull_h, r) != 0) goto fail_pull;
  return r;
fail_pull:
  qsvc_set_handler(q, STREAM_PUSH, NULL, NULL);
fail_push:
  free(r);
  return NULL;
}

void relay_free(relay_t *r) {
  if (!r) return;
  qsvc_set_handler(r->q, STREAM_PUSH, NULL, NULL);
  qsvc_set_handler(r->q, STREAM_PULL, NULL, NULL);
  while (r->all) {
    rstream *s = r->all;
    s->closed = 1; /* the connections are gone: no quic call */
    s->state = ST_DONE;
    rs_free(s);
  }
  free(r);
}

const relay_stats_t *relay_get_stats(const relay_t *r) { return &r->stats; }
