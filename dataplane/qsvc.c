/* Test services ECHO / DISCARD / SOURCE and the client helper: see qsvc.h. */
#include "qsvc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define MOD "qsvc"
#define QSVC_BUCKETS 1024
#define QSVC_HDRBUF (STREAMHDR_MAX + 2)
#define QSVC_CHUNK (64 * 1024)          /* SOURCE write size */
#define QSVC_ECHO_INIT (64 * 1024)      /* first ECHO buffer */

enum role { R_SERVE, R_CALL };
enum state { S_HEADER, S_RUN, S_REFUSED, S_DONE };

typedef struct qent {
  struct qent *next;        /* hash chain */
  qsvc *q;
  quic_conn *c;
  int64_t sid;
  enum role role;
  enum state state;
  uint8_t *hbuf;            /* header (or answer) bytes so far, owned */
  size_t hlen;
  stream_kind_t kind;
  uint8_t *buf;             /* ECHO bytes waiting: buf[off, off + blen), owned */
  size_t off, blen, cap;
  int peer_fin, fin_sent;
  uint64_t count;           /* SOURCE bytes sent */
  uint64_t limit;           /* SOURCE: stop after, when has_limit */
  int has_limit;
  uint32_t code;            /* refusal code */
  ev_timer reset_timer;     /* refused: reset after the grace */
  qsvc_call_cb cb;          /* R_CALL */
  void *ud;
} qent;

struct qsvc {
  struct ev_loop *loop;
  qsvc_handler_t handler[STREAM_HTTP + 1];  /* by kind: PUSH, PULL, HTTP */
  void *handler_ud[STREAM_HTTP + 1];
  qent *tab[QSVC_BUCKETS];
  qsvc_stats stats;
  ev_tstamp last_log;       /* refusal lines: at most one a second */
  uint8_t pat[QSVC_CHUNK + QSVC_SOURCE_MOD];
};

/* ---- table ---- */

static size_t bucket(const quic_conn *c, int64_t sid) {
  uint64_t h = (uint64_t)(uintptr_t)c ^ ((uint64_t)sid * 0x9E3779B97F4A7C15ull);
  h ^= h >> 29;
  h *= 0xBF58476D1CE4E5B9ull;
  h ^= h >> 32;
  return (size_t)(h % QSVC_BUCKETS);
}

static qent *ent_find(qsvc *q, const quic_conn *c, int64_t sid) {
  for (qent *e = q->tab[bucket(c, sid)]; e; e = e->next)
    if (e->c == c && e->sid == sid) return e;
  return NULL;
}

static void ent_unlink(qsvc *q, qent *e) {
  for (qent **p = &q->tab[bucket(e->c, e->sid)]; *p; p = &(*p)->next)
    if (*p == e) {
      *p = e->next;
      return;
    }
}

static void ent_free(qent *e) {
  if (!e) return;
  ev_timer_stop(e->q->loop, &e->reset_timer);
  free(e->hbuf);
  free(e->buf);
  free(e);
}

static void reset_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

static qent *ent_new(qsvc *q, quic_conn *c, int64_t sid, enum role role) {
  qent *e = calloc(1, sizeof(*e));
  if (!e) return NULL;
  e->hbuf = malloc(QSVC_HDRBUF);
  if (!e->hbuf) {
    free(e);
    return NULL;
  }
  e->q = q;
  e->c = c;
  e->sid = sid;
  e->role = role;
  e->state = S_HEADER;
  ev_timer_init(&e->reset_timer, reset_timer_cb, QSVC_REFUSE_GRACE, 0.);
  e->reset_timer.data = e;
  size_t b = bucket(c, sid);
  e->next = q->tab[b];
  q->tab[b] = e;
  return e;
}

/* ---- helpers ---- */

static void ent_reset(qent *e, uint32_t code) {
  if (e->state == S_DONE) return;
  e->state = S_DONE;
  ev_timer_stop(e->q->loop, &e->reset_timer);
  if (quic_stream_reset(e->c, e->sid, code) == 0) e->q->stats.resets++;
}

/* write_failed handles a negative quic_stream_write: the stream is gone
 * (its close follows) or out of memory (reset it). */
static void write_failed(qent *e, ssize_t rv) {
  if (rv == -ENOMEM) ent_reset(e, QSVC_ERR_NO_MEMORY);
  else e->state = S_DONE;
}

static const char *kind_name(stream_kind_t k) {
  switch (k) {
  case STREAM_ECHO: return "ECHO";
  case STREAM_DISCARD: return "DISCARD";
  case STREAM_SOURCE: return "SOURCE";
  case STREAM_PUSH: return "PUSH";
  case STREAM_PULL: return "PULL";
  case STREAM_HTTP: return "HTTP";
  }
  return "?";
}

/* ---- answering side ---- */

static void reset_timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  qent *e = w->data;
  (void)loop;
  (void)revents;
  ent_reset(e, e->code);
}

/* refuse answers |code| with |reason| and FIN; the reset follows the grace. */
static void refuse(qent *e, uint32_t code, const char *reason) {
  qsvc *q = e->q;
  uint8_t ans[QSVC_HDRBUF];
  char qr[160];
  q->stats.refused++;
  ev_now_update(q->loop);
  if (ev_now(q->loop) - q->last_log >= 1.) {
    q->last_log = ev_now(q->loop);
    log_warn(MOD, "[%s stream %" PRId64 "] refused (code %" PRIu32 "): %s",
             quic_conn_peer_name(e->c), e->sid, code,
             log_quote(reason, qr, sizeof(qr)));
  }
  free(e->hbuf);
  e->hbuf = NULL;
  e->code = code;
  long n = streamhdr_answer_encode(0, code, reason, ans, sizeof(ans));
  if (n < 0) n = streamhdr_answer_encode(0, code, "refused", ans, sizeof(ans));
  ssize_t w = n > 0 ? quic_stream_write(e->c, e->sid, ans, (size_t)n, 1) : -1;
  if (w != n) { /* no room for the answer: the code alone tells */
    ent_reset(e, code);
    return;
  }
  e->state = S_REFUSED;
  ev_timer_start(q->loop, &e->reset_timer);
}

static void source_run(qent *e) {
  qsvc *q = e->q;
  while (e->state == S_RUN && !e->fin_sent) {
    size_t n = QSVC_CHUNK;
    int fin = 0;
    if (e->peer_fin) {
      n = 0;
      fin = 1;
    } else if (e->has_limit && e->limit - e->count <= n) {
      n = (size_t)(e->limit - e->count);
      fin = 1;
    }
    ssize_t w = quic_stream_write(e->c, e->sid, q->pat + e->count % QSVC_SOURCE_MOD,
                                  n, fin);
    if (w < 0) {
      write_failed(e, w);
      return;
    }
    e->count += (uint64_t)w;
    q->stats.source_bytes += (uint64_t)w;
    if ((size_t)w < n) return; /* on_writable resumes */
    if (fin) e->fin_sent = 1;
  }
}

/* fin_after sends our FIN once the opener's has come and nothing waits. */
static void fin_after(qent *e) {
  if (e->state != S_RUN || !e->peer_fin || e->fin_sent || e->blen > 0) return;
  ssize_t w = quic_stream_write(e->c, e->sid, NULL, 0, 1);
  if (w < 0) write_failed(e, w);
  else e->fin_sent = 1;
}

static void echo_flush(qent *e) {
  while (e->state == S_RUN && e->blen > 0) {
    ssize_t w = quic_stream_write(e->c, e->sid, e->buf + e->off, e->blen, 0);
    if (w < 0) {
      write_failed(e, w);
      return;
    }
    if (w == 0) return;
    e->q->stats.echo_bytes += (uint64_t)w;
    e->off += (size_t)w;
    e->blen -= (size_t)w;
    if (e->blen == 0) e->off = 0;
  }
  fin_after(e);
}

static void echo_in(qent *e, const uint8_t *d, size_t len) {
  if (e->blen == 0 && len > 0) { /* straight into the send buffer */
    ssize_t w = quic_stream_write(e->c, e->sid, d, len, 0);
    if (w < 0) {
      write_failed(e, w);
      return;
    }
    e->q->stats.echo_bytes += (uint64_t)w;
    d += w;
    len -= (size_t)w;
  }
  if (len == 0) return;
  if (e->blen + len > QSVC_ECHO_MAX) {
    log_warn(MOD, "[%s stream %" PRId64 "] echo: opener %zu bytes ahead, reset",
             quic_conn_peer_name(e->c), e->sid, e->blen + len);
    ent_reset(e, QSVC_ERR_OVERFLOW);
    return;
  }
  if (e->off + e->blen + len > e->cap) {
    if (e->off > 0) {
      memmove(e->buf, e->buf + e->off, e->blen);
      e->off = 0;
    }
    if (e->blen + len > e->cap) {
      size_t cap = e->cap ? e->cap : QSVC_ECHO_INIT;
      while (cap < e->blen + len) cap *= 2;
      if (cap > QSVC_ECHO_MAX) cap = QSVC_ECHO_MAX;
      uint8_t *nb = realloc(e->buf, cap);
      if (!nb) {
        ent_reset(e, QSVC_ERR_NO_MEMORY);
        return;
      }
      e->buf = nb;
      e->cap = cap;
    }
  }
  memcpy(e->buf + e->off + e->blen, d, len);
  e->blen += len;
}

/* serve_payload runs the service on payload bytes after the header. */
static void serve_payload(qent *e, const uint8_t *d, size_t len, int fin) {
  if (e->state != S_RUN) return;
  if (fin) e->peer_fin = 1;
  switch (e->kind) {
  case STREAM_ECHO:
    echo_in(e, d, len);
    if (e->peer_fin) echo_flush(e);
    break;
  case STREAM_DISCARD:
    e->q->stats.discard_bytes += len;
    fin_after(e);
    break;
  case STREAM_SOURCE:
    if (fin) source_run(e);
    break;
  default:
    break;
  }
}

/* parse_bytes reads SOURCE's "bytes" option: decimal, no sign. */
static int parse_bytes(const char *s, uint64_t *out) {
  uint64_t v = 0;
  if (!*s) return -1;
  for (; *s; s++) {
    if (*s < '0' || *s > '9') return -1;
    if (v > (UINT64_MAX - 9) / 10) return -1;
    v = v * 10 + (uint64_t)(*s - '0');
  }
  *out = v;
  return 0;
}

static int has_handler(const qsvc *q, stream_kind_t k) {
  return (k == STREAM_PUSH || k == STREAM_PULL || k == STREAM_HTTP) && q->handler[k].check &&
         q->handler[k].start;
}

/* hand_over asks the kind's handler about |h|; on acceptance it answers,
 * drops the entry and gives the stream with the payload that came along
 * (|p1| then |p2|) to the handler. |e| is freed on every path. */
static void hand_over(qent *e, streamhdr_t *h, const uint8_t *p1, size_t l1, const uint8_t *p2,
                      size_t l2, int fin) {
  qsvc *q = e->q;
  const qsvc_handler_t *hd = &q->handler[h->kind];
  void *ud = q->handler_ud[h->kind];
  char reason[256] = "";
  uint32_t code = 0;
  quic_conn *c = e->c;
  int64_t sid = e->sid;
  if (hd->check(c, sid, h, &code, reason, sizeof(reason), ud) != 0) {
    refuse(e, code ? code : QSVC_ERR_BAD_OPTION, reason[0] ? reason : "refused");
    return; /* the entry lives on until the reset or the close */
  }
  /* The handler gets one contiguous buffer: the header's tail and the rest
   * of this delivery are joined (bounded by one delivery). */
  uint8_t *joined = NULL;
  const uint8_t *pay = l1 ? p1 : p2;
  size_t plen = l1 + l2;
  if (l1 && l2) {
    joined = malloc(plen);
    if (!joined) {
      ent_reset(e, QSVC_ERR_NO_MEMORY);
      return;
    }
    memcpy(joined, p1, l1);
    memcpy(joined + l1, p2, l2);
    pay = joined;
  }
  uint8_t ans[64];
  long n = streamhdr_answer_encode(1, 0, kind_name(h->kind), ans, sizeof(ans));
  ssize_t w = n > 0 ? quic_stream_write(c, sid, ans, (size_t)n, 0) : -1;
  if (w != n) {
    free(joined);
    ent_reset(e, QSVC_ERR_NO_MEMORY);
    return;
  }
  q->stats.accepted++;
  ent_unlink(q, e);
  ent_free(e);
  hd->start(c, sid, h, pay, plen, fin, ud);
  free(joined);
}

/* start answers a parsed header; 0 when the service runs. */
static int start(qent *e, streamhdr_t *h) {
  char why[96];
  e->kind = h->kind;
  if (h->kind == STREAM_PUSH || h->kind == STREAM_PULL || h->kind == STREAM_HTTP) {
    snprintf(why, sizeof(why), "stream kind %s not implemented yet", kind_name(h->kind));
    refuse(e, QSVC_ERR_NOT_IMPLEMENTED, why);
    return -1;
  }
  for (size_t i = 0; i < h->noptions; i++) {
    if (h->kind == STREAM_SOURCE && strcmp(h->option_keys[i], "bytes") == 0) {
      if (parse_bytes(h->option_values[i], &e->limit) != 0) {
        refuse(e, QSVC_ERR_BAD_OPTION, "option bytes is not a decimal count");
        return -1;
      }
      e->has_limit = 1;
    }
  }
  uint8_t ans[64];
  long n = streamhdr_answer_encode(1, 0, kind_name(h->kind), ans, sizeof(ans));
  ssize_t w = n > 0 ? quic_stream_write(e->c, e->sid, ans, (size_t)n, 0) : -1;
  if (w != n) {
    ent_reset(e, QSVC_ERR_NO_MEMORY);
    return -1;
  }
  e->q->stats.accepted++;
  e->state = S_RUN;
  if (e->kind == STREAM_SOURCE) source_run(e);
  return 0;
}

static void serve_data(qent *e, const uint8_t *d, size_t len, int fin) {
  if (e->state == S_RUN) {
    serve_payload(e, d, len, fin);
    return;
  }
  if (e->state != S_HEADER) return; /* refused or done: dropped */
  size_t take = QSVC_HDRBUF - e->hlen;
  if (take > len) take = len;
  memcpy(e->hbuf + e->hlen, d, take);
  e->hlen += take;
  streamhdr_t h;
  char err[160];
  long used = streamhdr_parse(e->hbuf, e->hlen, &h, err, sizeof(err));
  if (used < 0) {
    refuse(e, QSVC_ERR_BAD_HEADER, err);
    return;
  }
  if (used == 0) {
    /* A complete frame always fits the buffer, so 0 means "more please". */
    if (fin) refuse(e, QSVC_ERR_BAD_HEADER, "stream ended inside the header");
    return;
  }
  if (has_handler(e->q, h.kind)) {
    /* hbuf is the entry's: the header's tail is handed from there before
     * the entry goes, so hand_over keeps it until start returns. */
    uint8_t *hb = e->hbuf;
    e->hbuf = NULL;
    hand_over(e, &h, hb + used, e->hlen - (size_t)used, d + take, len - take, fin);
    free(hb);
    streamhdr_free(&h);
    return;
  }
  int rv = start(e, &h);
  streamhdr_free(&h);
  if (rv != 0) return;
  /* Payload that came with the header: its tail in hbuf, then the rest. */
  uint8_t *hb = e->hbuf;
  size_t hl = e->hlen;
  e->hbuf = NULL;
  serve_payload(e, hb + used, hl - (size_t)used, fin && take == len);
  free(hb);
  if (take < len) serve_payload(e, d + take, len - take, fin);
}

/* ---- client calls ---- */

static void call_data(qent *e, const uint8_t *d, size_t len, int fin) {
  if (e->state == S_RUN) {
    if (e->cb.on_data) e->cb.on_data(e->c, e->sid, d, len, fin, e->ud);
    return;
  }
  if (e->state != S_HEADER) return;
  size_t take = QSVC_HDRBUF - e->hlen;
  if (take > len) take = len;
  memcpy(e->hbuf + e->hlen, d, take);
  e->hlen += take;
  int accepted = 0;
  uint32_t code = 0;
  char reason[STREAMHDR_PATH_MAX + 1], err[160];
  long used = streamhdr_answer_parse(e->hbuf, e->hlen, &accepted, &code, reason,
                                     sizeof(reason), err, sizeof(err));
  if (used == 0 && !fin) return;
  if (used <= 0) {
    if (used == 0) snprintf(err, sizeof(err), "stream ended before the answer");
    if (e->cb.on_answer)
      e->cb.on_answer(e->c, e->sid, 0, QSVC_ERR_BAD_ANSWER, err, e->ud);
    ent_reset(e, QSVC_ERR_BAD_ANSWER);
    return;
  }
  if (!accepted) {
    if (code == 0) code = QSVC_ERR_BAD_ANSWER; /* cannot happen: encoder refuses */
    if (e->cb.on_answer) e->cb.on_answer(e->c, e->sid, 0, code, reason, e->ud);
    ent_reset(e, code);
    return;
  }
  e->state = S_RUN;
  if (e->cb.on_answer) e->cb.on_answer(e->c, e->sid, 1, 0, reason, e->ud);
  uint8_t *hb = e->hbuf;
  size_t hl = e->hlen;
  e->hbuf = NULL;
  int tail_fin = fin && take == len;
  if ((hl > (size_t)used || tail_fin) && e->state == S_RUN && e->cb.on_data)
    e->cb.on_data(e->c, e->sid, hb + used, hl - (size_t)used, tail_fin, e->ud);
  free(hb);
  if (take < len && e->state == S_RUN && e->cb.on_data)
    e->cb.on_data(e->c, e->sid, d + take, len - take, fin, e->ud);
}

/* ---- public ---- */

int qsvc_set_handler(qsvc *q, stream_kind_t kind, const qsvc_handler_t *h, void *ud) {
  if (!q || (kind != STREAM_PUSH && kind != STREAM_PULL && kind != STREAM_HTTP)) return -EINVAL;
  if (h && (!h->check || !h->start)) return -EINVAL;
  if (h) q->handler[kind] = *h;
  else memset(&q->handler[kind], 0, sizeof(q->handler[kind]));
  q->handler_ud[kind] = h ? ud : NULL;
  return 0;
}

qsvc *qsvc_new(struct ev_loop *loop) {
  if (!loop) return NULL;
  qsvc *q = calloc(1, sizeof(*q));
  if (!q) return NULL;
  q->loop = loop;
  q->last_log = -1e9;
  for (size_t i = 0; i < sizeof(q->pat); i++) q->pat[i] = (uint8_t)(i % QSVC_SOURCE_MOD);
  return q;
}

void qsvc_free(qsvc *q) {
  if (!q) return;
  for (size_t b = 0; b < QSVC_BUCKETS; b++)
    while (q->tab[b]) {
      qent *e = q->tab[b];
      q->tab[b] = e->next;
      ent_free(e);
    }
  free(q);
}

const qsvc_stats *qsvc_get_stats(const qsvc *q) { return &q->stats; }

int qsvc_accept_stream(qsvc *q, quic_conn *c, int64_t sid) {
  if (!q || !c) return -EINVAL;
  if (ent_find(q, c, sid)) return 0;
  if (!ent_new(q, c, sid, R_SERVE)) {
    quic_stream_reset(c, sid, QSVC_ERR_NO_MEMORY);
    return -ENOMEM;
  }
  return 0;
}

int qsvc_open(qsvc *q, quic_conn *c, stream_kind_t kind, const char *path,
              size_t nopts, const char *const *keys,
              const char *const *values, const qsvc_call_cb *cb, void *ud,
              int64_t *sid) {
  uint8_t hdr[QSVC_HDRBUF];
  if (!q || !c || !cb || !sid || (nopts && (!keys || !values))) return -EINVAL;
  long n = streamhdr_encode_opts(kind, path, nopts, keys, values, hdr, sizeof(hdr));
  if (n < 0) return -EINVAL;
  int64_t id;
  int rv = quic_stream_open(c, &id);
  if (rv != 0) return rv;
  ssize_t w = quic_stream_write(c, id, hdr, (size_t)n, 0);
  if (w != n) {
    quic_stream_reset(c, id, QSVC_ERR_NO_MEMORY);
    return w < 0 ? (int)w : -EINVAL;
  }
  qent *e = ent_new(q, c, id, R_CALL);
  if (!e) {
    quic_stream_reset(c, id, QSVC_ERR_NO_MEMORY);
    return -ENOMEM;
  }
  e->kind = kind;
  e->cb = *cb;
  e->ud = ud;
  *sid = id;
  return 0;
}

int qsvc_on_data(qsvc *q, quic_conn *c, int64_t sid, const uint8_t *data,
                 size_t len, int fin) {
  qent *e = ent_find(q, c, sid);
  if (!e) return 0;
  if (e->role == R_SERVE) serve_data(e, data, len, fin);
  else call_data(e, data, len, fin);
  return 1;
}

int qsvc_on_writable(qsvc *q, quic_conn *c, int64_t sid) {
  qent *e = ent_find(q, c, sid);
  if (!e) return 0;
  if (e->role == R_CALL) {
    if (e->state == S_RUN && e->cb.on_writable) e->cb.on_writable(c, sid, e->ud);
  } else if (e->state == S_RUN) {
    if (e->kind == STREAM_ECHO) echo_flush(e);
    else if (e->kind == STREAM_SOURCE) source_run(e);
  }
  return 1;
}

int qsvc_on_stream_close(qsvc *q, quic_conn *c, int64_t sid,
                         uint64_t app_code) {
  qent *e = ent_find(q, c, sid);
  if (!e) return 0;
  ent_unlink(q, e);
  if (e->role == R_CALL && e->cb.on_close) e->cb.on_close(c, sid, app_code, e->ud);
  ent_free(e);
  return 1;
}

void qsvc_on_conn_close(qsvc *q, quic_conn *c) {
  qent *gone = NULL;
  if (!q) return;
  for (size_t b = 0; b < QSVC_BUCKETS; b++)
    for (qent **p = &q->tab[b]; *p;) {
      qent *e = *p;
      if (e->c != c) {
        p = &e->next;
        continue;
      }
      *p = e->next;
      e->next = gone;
      gone = e;
    }
  while (gone) {
    qent *e = gone;
    gone = e->next;
    if (e->role == R_CALL && e->cb.on_close)
      e->cb.on_close(c, e->sid, QSVC_ERR_CONN_CLOSED, e->ud);
    ent_free(e);
  }
}
