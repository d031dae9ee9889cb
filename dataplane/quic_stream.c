/* Streams of a connection: send rings (growing with the path), the send
 * queue (write order) and the event queue, and the stream half of quic.h. */
#define _GNU_SOURCE
#include "quic_int.h"

int quic_stream_pending(const quic_stream *s) {
  return !s->closed && !s->send_shut &&
         (s->sent_off < s->end_off || (s->fin_req && !s->fin_sent));
}

static unsigned stream_bucket(const quic_conn *c, int64_t id) {
  return (unsigned)(((uint64_t)id * 0x9E3779B97F4A7C15ull) >> 40) & (c->nsbuckets - 1);
}

static quic_stream *stream_find(quic_conn *c, int64_t id) {
  if (c->nsbuckets == 0) return NULL;
  for (quic_stream *s = c->sbuckets[stream_bucket(c, id)]; s; s = s->hnext)
    if (s->id == id) return s;
  return NULL;
}

/* stream_reserve grows the hash, if needed, for one more stream, so that
 * stream_index cannot fail. -1 when out of memory. */
static int stream_reserve(quic_conn *c) {
  if (c->nstreams + 1 > c->nsbuckets) {
    unsigned n = c->nsbuckets ? c->nsbuckets * 2 : 16;
    quic_stream **b = calloc(n, sizeof(*b));
    if (!b) return -1;
    unsigned old = c->nsbuckets;
    quic_stream **ob = c->sbuckets;
    c->sbuckets = b;
    c->nsbuckets = n;
    for (unsigned i = 0; i < old; i++) {
      for (quic_stream *t = ob[i], *next; t; t = next) {
        next = t->hnext;
        unsigned k = stream_bucket(c, t->id);
        t->hnext = b[k];
        b[k] = t;
      }
    }
    free(ob);
  }
  return 0;
}

/* stream_index puts |s| (its id known) in the hash (room reserved). */
static void stream_index(quic_conn *c, quic_stream *s) {
  unsigned k = stream_bucket(c, s->id);
  s->hnext = c->sbuckets[k];
  c->sbuckets[k] = s;
  c->nstreams++;
}

void quic_sendq_remove(quic_conn *c, quic_stream *s) {
  if (!s->in_sendq) return;
  if (s->sq_prev) s->sq_prev->sq_next = s->sq_next;
  else c->sq_head = s->sq_next;
  if (s->sq_next) s->sq_next->sq_prev = s->sq_prev;
  else c->sq_tail = s->sq_prev;
  s->sq_next = s->sq_prev = NULL;
  s->turn = 0;
  s->in_sendq = 0;
}

void quic_sendq_push(quic_conn *c, quic_stream *s) {
  if (s->in_sendq) return;
  s->sq_prev = c->sq_tail;
  s->sq_next = NULL;
  if (c->sq_tail) c->sq_tail->sq_next = s;
  else c->sq_head = s;
  c->sq_tail = s;
  s->in_sendq = 1;
}

/* quic_sendq_restore puts the streams of |list| (chained by sq_next, out of the
 * queue) back at its tail. */
void quic_sendq_restore(quic_conn *c, quic_stream *list) {
  while (list) {
    quic_stream *next = list->sq_next;
    list->sq_next = NULL;
    if (quic_stream_pending(list)) quic_sendq_push(c, list);
    list = next;
  }
}

void quic_evq_push(quic_conn *c, quic_stream *s) {
  if (s->in_evq) return;
  s->ev_next = NULL;
  if (c->evq_tail) c->evq_tail->ev_next = s;
  else c->evq_head = s;
  c->evq_tail = s;
  s->in_evq = 1;
}

/* quic_stream_unlink takes |s| out of every list and the hash (not the event
 * queue: only conn_events frees streams, after popping them). */
void quic_stream_unlink(quic_conn *c, quic_stream *s) {
  if (s->prev) s->prev->next = s->next;
  else if (c->streams == s) c->streams = s->next;
  if (s->next) s->next->prev = s->prev;
  s->next = s->prev = NULL;
  quic_sendq_remove(c, s);
  if (s->id >= 0 && c->nsbuckets) {
    for (quic_stream **pp = &c->sbuckets[stream_bucket(c, s->id)]; *pp; pp = &(*pp)->hnext) {
      if (*pp == s) {
        *pp = s->hnext;
        c->nstreams--;
        break;
      }
    }
  }
}

/* quic_stream_new makes a stream; with |id| >= 0 it is indexed at once (peer
 * streams), else once ngtcp2 gave it its id (quic_stream_open). */
quic_stream *quic_stream_new(quic_conn *c, int64_t id) {
  quic_stream *s = calloc(1, sizeof(*s));
  if (!s) return NULL;
  s->id = id;
  s->cap = c->ep->cfg.stream_sndbuf;
  if (stream_reserve(c) != 0) {
    free(s);
    return NULL;
  }
  if (id >= 0) stream_index(c, s);
  s->next = c->streams;
  if (c->streams) c->streams->prev = s;
  c->streams = s;
  return s;
}

void quic_stream_free(quic_stream *s) {
  if (!s) return;
  free(s->buf);
  free(s->old_buf);
  free(s);
}

/* ring_copy copies stream offsets [from, to) from the ring |src| of |scap|
 * bytes to the ring |dst| of |dcap| bytes, each byte at its offset modulo
 * the ring's size (both wrap points cut the copy). */
static void ring_copy(uint8_t *dst, size_t dcap, const uint8_t *src,
                      size_t scap, uint64_t from, uint64_t to) {
  while (from < to) {
    size_t so = (size_t)(from % scap), d = (size_t)(from % dcap);
    size_t n = scap - so < dcap - d ? scap - so : dcap - d;
    if (n > to - from) n = (size_t)(to - from);
    memcpy(dst + d, src + so, n);
    from += n;
  }
}

/* quic_stream_grow enlarges the ring of |s| so that |want| unacknowledged
 * bytes fit (at least doubling it), up to |bound| bytes, as Linux grows a
 * TCP socket's send buffer: only when the ring is filled by bytes in
 * flight (sent, unacknowledged: at least half of it), not by a backlog the
 * path does not take, which a larger ring would only make older. The bytes
 * ngtcp2 sent from the old ring stay where they are until acknowledged
 * (ngtcp2 retransmits from them), so the old ring lives on until then, and
 * there is one growth at a time: about one per round trip. Returns 1 when
 * the ring grew, else 0 (no need, not allowed yet, or no memory: the ring
 * keeps its size). */
int quic_stream_grow(quic_stream *s, size_t want, size_t bound) {
  if (!s->buf || want <= s->cap || bound <= s->cap || s->old_buf) return 0;
  if (s->sent_off - s->ack_off < s->cap / 2) return 0;
  size_t ncap = s->cap > bound / 2 ? bound : 2 * s->cap;
  if (ncap < want) ncap = want < bound ? want : bound;
  uint8_t *nb = malloc(ncap);
  if (!nb) return 0;
  ring_copy(nb, ncap, s->buf, s->cap, s->ack_off, s->end_off);
  s->old_buf = s->buf; /* bytes in flight: see above */
  s->old_until = s->sent_off;
  s->buf = nb;
  s->cap = ncap;
  return 1;
}

/* quic_stream_space is how many of |len| more bytes |s| takes now, its ring
 * grown first if it may, with |bound| the size it may grow to now. A ring
 * grown earlier takes no more than |bound| either: when the path slows
 * down (its congestion window shrinks), a writer gets back to a backlog of
 * what the path takes, not of what it once took. */
size_t quic_stream_space(quic_stream *s, size_t len, size_t bound) {
  size_t used = (size_t)(s->end_off - s->ack_off);
  if (len > s->cap - used)
    quic_stream_grow(s, len < SIZE_MAX - used ? used + len : SIZE_MAX, bound);
  size_t room = s->cap < bound ? s->cap : bound;
  return room > used ? room - used : 0;
}

/* quic_stream_acked records that the peer has every byte of |s| below
 * |ack_off|; the ring before the last growth goes once ngtcp2 no longer
 * needs its bytes. */
void quic_stream_acked(quic_stream *s, uint64_t ack_off) {
  s->ack_off = ack_off;
  if (s->old_buf && s->ack_off >= s->old_until) {
    free(s->old_buf);
    s->old_buf = NULL;
  }
}

/* sndbuf_bound is the size a stream's ring of |c| may grow to now: about
 * two congestion windows (what the path takes per round trip, and as much
 * again written behind it), within [stream_sndbuf, max_stream_sndbuf]. */
static size_t sndbuf_bound(quic_conn *c) {
  const quic_config *cfg = &c->ep->cfg;
  size_t lo = cfg->stream_sndbuf, hi = cfg->max_stream_sndbuf;
  if (hi <= lo || !c->conn) return lo;
  ngtcp2_conn_info ci;
  ngtcp2_conn_get_conn_info(c->conn, &ci);
  uint64_t b = 2 * ci.cwnd;
  return b < lo ? lo : b > hi ? hi : (size_t)b;
}


/* quic_stream_shut_send ends our direction of |s| on the peer's STOP_SENDING
 * (ngtcp2 answers it with a reset): what we still buffer will never be
 * read; the caller is told (on_stream_stop_sending). ngtcp2 1.11 reports
 * the frame to no callback (recv_stop_sending came with 1.24; its
 * stream_stop_sending is about our own STOP_SENDING): the sign is
 * ngtcp2_conn_writev_stream refusing the stream with
 * NGTCP2_ERR_STREAM_SHUT_WR, at the next send of its bytes. */
void quic_stream_shut_send(quic_conn *c, quic_stream *s) {
  s->send_shut = 1;
  s->want_writable = s->writable_pending = 0;
  s->sent_off = s->end_off;
  quic_sendq_remove(c, s);
  s->stop_sending_pending = 1;
  quic_evq_push(c, s);
}


int quic_stream_open(quic_conn *c, int64_t *sid) {
  if (!c || !sid) return -EINVAL;
  if (c->state != CS_OPEN || c->close_pending || !c->established)
    return -ENOTCONN;
  quic_stream *s = quic_stream_new(c, -1);
  if (!s) return -ENOMEM;
  int rv = ngtcp2_conn_open_bidi_stream(c->conn, &s->id, s);
  if (rv != 0) {
    quic_stream_unlink(c, s);
    quic_stream_free(s);
    return rv == NGTCP2_ERR_STREAM_ID_BLOCKED ? -EAGAIN : -EIO;
  }
  stream_index(c, s); /* room reserved by quic_stream_new */
  *sid = s->id;
  return 0;
}

ssize_t quic_stream_write(quic_conn *c, int64_t sid, const void *data,
                          size_t len, int fin) {
  if (!c || (!data && len)) return -EINVAL;
  if (c->state != CS_OPEN || c->close_pending) return -ENOTCONN;
  quic_stream *s = stream_find(c, sid);
  if (!s || s->closed) return -ENOENT;
  if (s->fin_req || s->send_shut) return -EPIPE;
  if (!s->buf && len > 0) {
    s->buf = malloc(s->cap);
    if (!s->buf) return -ENOMEM;
  }
  size_t used = (size_t)(s->end_off - s->ack_off);
  size_t bound = s->cap > c->ep->cfg.stream_sndbuf || len > s->cap - used
                     ? sndbuf_bound(c)
                     : s->cap;
  size_t space = quic_stream_space(s, len, bound);
  size_t n = len < space ? len : space;
  if (n > 0) {
    size_t start = (size_t)(s->end_off % s->cap);
    size_t l1 = s->cap - start;
    if (l1 > n) l1 = n;
    memcpy(s->buf + start, data, l1);
    memcpy(s->buf, (const uint8_t *)data + l1, n - l1);
    s->end_off += n;
  }
  if (n < len) s->want_writable = 1;
  else if (fin) s->fin_req = 1;
  if (n > 0 || s->fin_req) {
    quic_sendq_push(c, s);
    quic_conn_kick(c);
    /* Write-through: a writer that keeps writing (an ingest loop feeding
     * many streams in one loop iteration) gets its data out every few
     * packets' worth instead of at the end of the iteration, which under
     * load can be milliseconds away. Not from inside ngtcp2 or the
     * service, nor over another write; the timer still runs the service. */
    c->tx_pending += n;
    if (c->tx_pending >= QUIC_WRITE_THROUGH && c->depth == 0 && !c->ep->writing &&
        c->established) {
      c->depth++;
      int more = quic_conn_write(c);
      if (c->state == CS_OPEN) quic_conn_rearm(c);
      /* events, a close or more to send: the service, from the loop */
      if (c->state != CS_OPEN || more || c->evq_head || c->close_pending)
        quic_conn_kick(c);
      c->depth--;
    }
  }
  return (ssize_t)n;
}

int quic_stream_reset(quic_conn *c, int64_t sid, uint64_t app_code) {
  if (!c || c->state != CS_OPEN) return -ENOTCONN;
  quic_stream *s = stream_find(c, sid);
  if (!s || s->closed) return -ENOENT;
  if (ngtcp2_conn_shutdown_stream(c->conn, 0, sid, app_code) != 0) return -EIO;
  s->sent_off = s->end_off; /* nothing more to send */
  s->fin_sent = 1;
  quic_conn_kick(c);
  return 0;
}

int quic_stream_stop_sending(quic_conn *c, int64_t sid, uint64_t app_code) {
  if (!c || c->state != CS_OPEN) return -ENOTCONN;
  quic_stream *s = stream_find(c, sid);
  if (!s || s->closed) return -ENOENT;
  if (ngtcp2_conn_shutdown_stream_read(c->conn, 0, sid, app_code) != 0)
    return -EIO;
  quic_conn_kick(c);
  return 0;
}
