/* QUIC endpoint on ngtcp2 1.x + ngtcp2_crypto_gnutls + libev (see quic.h).
 *
 * Flow: the socket watcher reads datagrams, routes each by destination
 * connection ID (a per-endpoint hash table) to its connection, or creates a
 * server connection for a valid Initial. Connections touched by a read are
 * then "serviced" at the top level of the loop: deferred events reach the
 * caller, a requested close is written, pending stream data is written, and
 * the timer is re-armed from ngtcp2_conn_get_expiry. The per-connection
 * timer runs the same service after ngtcp2_conn_handle_expiry. Nothing is
 * freed from inside an ngtcp2 callback: closed streams and dead connections
 * are swept by the service.
 *
 * Fast paths: datagrams come in by recvmmsg, with UDP GRO when the kernel
 * has it (one buffer then holds several same-size datagrams, split by the
 * segment size in the cmsg); a connection's packets go out as one UDP GSO
 * send per run of same-size packets (UDP_SEGMENT), or by sendmmsg when the
 * kernel refuses GSO. The receive and transmit buffers belong to the
 * endpoint: nothing is allocated per packet.
 *
 * Packets for no connection: an Initial may start one (behind a Retry when
 * too many handshakes are in progress), an unknown version gets a Version
 * Negotiation, a short-header packet gets a stateless reset (rate-limited;
 * tokens come from a secret derived from the node key, so a restarted node
 * resets its old connections) unless it is itself a reset for one of our
 * connections; the rest is dropped. */
#define _GNU_SOURCE
#include "quic.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#include "log.h"

#define MOD "quic"
#define QUIC_CIDLEN 16
#define QUIC_CID_BUCKETS 1024
#define QUIC_MAX_PKT 1500          /* a CONNECTION_CLOSE packet */
#define QUIC_RX_SLOT 65536         /* one datagram, or a GRO batch of them */
#define QUIC_RX_BATCH 16           /* slots per recvmmsg */
#define QUIC_RX_ROUNDS 8           /* recvmmsg calls per socket event */
#define QUIC_GSO_MAX 64            /* segments per GSO send (kernel limit) */
#define QUIC_TX_BUF 65000          /* one GSO send: below the UDP maximum */
#define QUIC_WRITE_THROUGH 65536   /* see quic_stream_write */
#define QUIC_TX_QUANTA 8           /* send quanta per conn_write call */
#define QUIC_SOCKBUF (8 * 1024 * 1024)
#define QUIC_SR_RATE 5000.         /* stateless resets + VN per second... */
#define QUIC_SR_BURST 1000.        /* ...and their burst (a restarted node
                                      resets all its old links at once) */
#define QUIC_RETRY_TTL (10 * NGTCP2_SECONDS) /* a Retry token's lifetime */
#define QUIC_TOKEN_BUCKETS 256

/* Prefers AES-128-GCM (ChaCha20 is slow on this hardware); TLS 1.3 only;
 * the middlebox compatibility mode is not allowed in QUIC. */
#define QUIC_PRIORITY                                                        \
  "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:"     \
  "+CHACHA20-POLY1305:-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:"            \
  "+GROUP-SECP384R1:%DISABLE_TLS13_COMPAT_MODE"

typedef struct quic_stream {
  struct quic_stream *next, *prev;       /* every stream of the connection */
  struct quic_stream *hnext;             /* id hash chain */
  struct quic_stream *sq_next, *sq_prev; /* send queue: new data to send */
  struct quic_stream *ev_next;           /* event queue: closed or writable */
  int in_sendq, in_evq;
  int turn;              /* at the head of the send queue, up to turn_end */
  uint64_t turn_end;
  int64_t id;
  uint8_t *buf;          /* ring of |cap| bytes, owned; NULL until a write */
  size_t cap;
  uint64_t ack_off;      /* stream offsets: acked <= sent <= end */
  uint64_t sent_off;
  uint64_t end_off;
  int fin_req, fin_sent;
  int want_writable;     /* a write was cut short */
  int writable_pending;  /* space freed since: tell the caller */
  int closed;            /* ngtcp2 closed it; sweep tells the caller */
  int send_shut;         /* our direction is over: peer's STOP_SENDING */
  int stop_sending_pending; /* ...not yet told to the caller */
  uint64_t close_code;
} quic_stream;

enum conn_state { CS_OPEN, CS_CLOSING, CS_DRAINING, CS_DEAD };

struct quic_conn {
  struct quic_conn *next;
  struct quic_conn *dirty_next;      /* endpoint's to-service list */
  int in_dirty;
  int depth;                         /* inside ngtcp2 or the service */
  ngtcp2_tstamp last_rx;             /* a packet of this connection came in */
  size_t tx_pending;                 /* bytes written since conn_write */
  quic_endpoint *ep;
  ngtcp2_conn *conn;                 /* owned */
  gnutls_session_t tls;              /* owned */
  ngtcp2_crypto_conn_ref ref;
  ev_timer timer;
  int is_server;
  enum conn_state state;
  int established;                   /* handshake done (and confirmed) */
  int notify_established;            /* deferred on_accept/on_connected */
  int notify_streams;                /* deferred on_streams_available */
  int visible;                       /* the caller knows this conn */
  int close_pending;
  uint64_t close_code;
  int handshaking;                   /* counted in ep->handshakes */
  int ccerr_set;                     /* |ccerr| chosen by a callback */
  ngtcp2_ccerr ccerr;
  quic_close_info info;
  uint8_t *close_pkt;                /* owned, CLOSING: resent on input */
  size_t close_pktlen;
  unsigned close_rx;
  quic_stream *streams;              /* owned list */
  /* Lookups and scheduling never walk every stream: a hash by id, a
   * round-robin queue of streams with new data, a queue of streams with
   * an event for the caller. */
  quic_stream **sbuckets;            /* owned, nsbuckets (a power of 2) */
  unsigned nsbuckets, nstreams;
  quic_stream *sq_head, *sq_tail;
  quic_stream *evq_head, *evq_tail;
  ngtcp2_tstamp acked_ts;            /* conn_now of the last progress:
                                        stream data acknowledged, nothing
                                        in flight, or a probe forced */
  struct sockaddr_storage remote;
  socklen_t remotelen;
  char peer[64];
  void *user;
  uint64_t pkts_sent, pkts_recv, bytes_sent, bytes_recv;
  uint64_t pkts_lost_closed;         /* lost packets of closed streams */
  ngtcp2_duration skew;              /* conn_now - now_ts: conn_probe_now */
};

typedef struct cid_entry {
  struct cid_entry *next;
  ngtcp2_cid cid;
  quic_conn *c;
} cid_entry;

/* A stateless reset token the peer gave us for one of its CIDs: a reset
 * carries no CID we know, only this token at its end. */
typedef struct token_entry {
  struct token_entry *next;
  uint8_t token[NGTCP2_STATELESS_RESET_TOKENLEN];
  uint64_t seq;
  quic_conn *c;
} token_entry;

/* One message of a recvmmsg / sendmmsg batch with its address and cmsg. */
typedef struct quic_mmsg {
  struct iovec iov;
  struct sockaddr_storage addr;
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } ctl;
} quic_mmsg;

/* Rate limit: a token bucket (per endpoint, never global). */
typedef struct quic_rl {
  double tokens;
  double last;
  uint64_t suppressed;
} quic_rl;

struct quic_endpoint {
  struct ev_loop *loop;
  int fd;
  ev_io rio;
  struct sockaddr_storage local;
  socklen_t locallen;
  quic_config cfg;
  char *cert_pem, *key_pem, *ca_pem, *priority, *alpn; /* owned copies */
  gnutls_certificate_credentials_t cred;
  gnutls_priority_t prio;
  uint8_t reset_secret[32];          /* derived from the node key */
  uint8_t retry_secret[32];          /* random per endpoint */
  ngtcp2_cc_algo cc;
  quic_callbacks cb;
  void *ud;
  quic_conn *conns;                  /* owned list */
  quic_conn *dirty;                  /* to service (not owned) */
  int writing;                       /* a conn_write is on the stack */
  cid_entry *cids[QUIC_CID_BUCKETS]; /* owned entries */
  token_entry *tokens[QUIC_TOKEN_BUCKETS]; /* owned entries */
  int gso, gro;                      /* kernel features in use */
  uint8_t *rxbuf;                    /* owned, QUIC_RX_BATCH slots */
  uint8_t *txbuf;                    /* owned, QUIC_TX_BUF */
  quic_mmsg rxm[QUIC_RX_BATCH];
  struct mmsghdr rxh[QUIC_RX_BATCH];
  struct mmsghdr txh[QUIC_GSO_MAX];
  struct iovec txiov[QUIC_GSO_MAX];
  quic_rl rl_reply;                  /* stateless resets and VN */
  quic_rl rl_log;                    /* per-packet warnings */
  quic_endpoint_stats st;
};

static void conn_service(quic_conn *c);
static void conn_service_run(quic_conn *c);

static ngtcp2_tstamp now_ts(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * NGTCP2_SECONDS + (uint64_t)ts.tv_nsec;
}

/* conn_now is |c|'s clock, what ngtcp2 sees: ahead of now_ts once
 * conn_probe_now moved it. */
#define conn_now(c) (now_ts() + (c)->skew)

static void addr_str(const struct sockaddr *sa, char *out, size_t len) {
  char host[INET6_ADDRSTRLEN] = "?";
  unsigned port = 0;
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
    port = ntohs(in->sin_port);
    snprintf(out, len, "%s:%u", host, port);
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    port = ntohs(in6->sin6_port);
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) { /* an IPv4 peer, dual stack */
      inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], host, sizeof(host));
      snprintf(out, len, "%s:%u", host, port);
      return;
    }
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
    snprintf(out, len, "[%s]:%u", host, port);
  } else {
    snprintf(out, len, "?");
  }
}

/* ---- connection-ID table ---- */

static unsigned cid_hash(const uint8_t *d, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) h = (h ^ d[i]) * 16777619u;
  return h % QUIC_CID_BUCKETS;
}

static quic_conn *cid_find(quic_endpoint *ep, const uint8_t *d, size_t n) {
  for (cid_entry *e = ep->cids[cid_hash(d, n)]; e; e = e->next)
    if (e->cid.datalen == n && memcmp(e->cid.data, d, n) == 0) return e->c;
  return NULL;
}

static int cid_add(quic_endpoint *ep, const ngtcp2_cid *cid, quic_conn *c) {
  cid_entry *e = calloc(1, sizeof(*e));
  if (!e) return -ENOMEM;
  unsigned h = cid_hash(cid->data, cid->datalen);
  e->cid = *cid;
  e->c = c;
  e->next = ep->cids[h];
  ep->cids[h] = e;
  return 0;
}

static void cid_remove(quic_endpoint *ep, const ngtcp2_cid *cid) {
  cid_entry **p = &ep->cids[cid_hash(cid->data, cid->datalen)];
  for (; *p; p = &(*p)->next) {
    if (ngtcp2_cid_eq(&(*p)->cid, cid)) {
      cid_entry *e = *p;
      *p = e->next;
      free(e);
      return;
    }
  }
}

static void cid_remove_conn(quic_endpoint *ep, quic_conn *c) {
  for (unsigned i = 0; i < QUIC_CID_BUCKETS; i++) {
    cid_entry **p = &ep->cids[i];
    while (*p) {
      if ((*p)->c == c) {
        cid_entry *e = *p;
        *p = e->next;
        free(e);
      } else {
        p = &(*p)->next;
      }
    }
  }
}

/* ---- stateless reset tokens the peers gave us ---- */

static unsigned token_hash(const uint8_t *t) {
  uint32_t h;
  memcpy(&h, t, sizeof(h)); /* tokens are pseudo-random */
  return h % QUIC_TOKEN_BUCKETS;
}

static quic_conn *token_find(quic_endpoint *ep, const uint8_t *t) {
  for (token_entry *e = ep->tokens[token_hash(t)]; e; e = e->next)
    if (memcmp(e->token, t, NGTCP2_STATELESS_RESET_TOKENLEN) == 0) return e->c;
  return NULL;
}

static void token_remove(quic_endpoint *ep, quic_conn *c, uint64_t seq,
                         int all) {
  for (unsigned i = 0; i < QUIC_TOKEN_BUCKETS; i++) {
    token_entry **p = &ep->tokens[i];
    while (*p) {
      if ((*p)->c == c && (all || (*p)->seq == seq)) {
        token_entry *e = *p;
        *p = e->next;
        free(e);
      } else {
        p = &(*p)->next;
      }
    }
  }
}

static int token_add(quic_endpoint *ep, quic_conn *c, uint64_t seq,
                     const uint8_t *t) {
  token_entry *e = calloc(1, sizeof(*e));
  if (!e) return -ENOMEM;
  unsigned h = token_hash(t);
  memcpy(e->token, t, NGTCP2_STATELESS_RESET_TOKENLEN);
  e->seq = seq;
  e->c = c;
  e->next = ep->tokens[h];
  ep->tokens[h] = e;
  return 0;
}

/* ---- rate limits ---- */

/* rl_take takes one token of |rl| (|rate| per second, |burst| deep). */
static int rl_take(quic_rl *rl, double rate, double burst) {
  double now = (double)now_ts() / NGTCP2_SECONDS;
  rl->tokens += (now - rl->last) * rate;
  if (rl->tokens > burst) rl->tokens = burst;
  rl->last = now;
  if (rl->tokens < 1.) {
    rl->suppressed++;
    return 0;
  }
  rl->tokens -= 1.;
  return 1;
}

/* A warning that a peer can trigger per packet: at most one per second. */
#define ep_warn_rl(ep, ...)                                                  \
  do {                                                                       \
    if (rl_take(&(ep)->rl_log, 1., 1.)) log_warn(MOD, __VA_ARGS__);          \
  } while (0)

/* ---- streams ---- */

static int stream_pending(const quic_stream *s) {
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

static void sendq_remove(quic_conn *c, quic_stream *s) {
  if (!s->in_sendq) return;
  if (s->sq_prev) s->sq_prev->sq_next = s->sq_next;
  else c->sq_head = s->sq_next;
  if (s->sq_next) s->sq_next->sq_prev = s->sq_prev;
  else c->sq_tail = s->sq_prev;
  s->sq_next = s->sq_prev = NULL;
  s->turn = 0;
  s->in_sendq = 0;
}

static void sendq_push(quic_conn *c, quic_stream *s) {
  if (s->in_sendq) return;
  s->sq_prev = c->sq_tail;
  s->sq_next = NULL;
  if (c->sq_tail) c->sq_tail->sq_next = s;
  else c->sq_head = s;
  c->sq_tail = s;
  s->in_sendq = 1;
}

/* sendq_restore puts the streams of |list| (chained by sq_next, out of the
 * queue) back at its tail. */
static void sendq_restore(quic_conn *c, quic_stream *list) {
  while (list) {
    quic_stream *next = list->sq_next;
    list->sq_next = NULL;
    if (stream_pending(list)) sendq_push(c, list);
    list = next;
  }
}

static void evq_push(quic_conn *c, quic_stream *s) {
  if (s->in_evq) return;
  s->ev_next = NULL;
  if (c->evq_tail) c->evq_tail->ev_next = s;
  else c->evq_head = s;
  c->evq_tail = s;
  s->in_evq = 1;
}

/* stream_unlink takes |s| out of every list and the hash (not the event
 * queue: only conn_events frees streams, after popping them). */
static void stream_unlink(quic_conn *c, quic_stream *s) {
  if (s->prev) s->prev->next = s->next;
  else if (c->streams == s) c->streams = s->next;
  if (s->next) s->next->prev = s->prev;
  s->next = s->prev = NULL;
  sendq_remove(c, s);
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

/* stream_new makes a stream; with |id| >= 0 it is indexed at once (peer
 * streams), else once ngtcp2 gave it its id (quic_stream_open). */
static quic_stream *stream_new(quic_conn *c, int64_t id) {
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

static void stream_free(quic_stream *s) {
  if (!s) return;
  free(s->buf);
  free(s);
}


/* ---- ngtcp2 callbacks ---- */

static void rand_cb(uint8_t *dest, size_t len, const ngtcp2_rand_ctx *ctx) {
  (void)ctx;
  gnutls_rnd(GNUTLS_RND_RANDOM, dest, len);
}

static int get_new_cid_cb(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token,
                          size_t cidlen, void *ud) {
  quic_conn *c = ud;
  if (gnutls_rnd(GNUTLS_RND_RANDOM, cid->data, cidlen) != 0)
    return NGTCP2_ERR_CALLBACK_FAILURE;
  cid->datalen = cidlen;
  if (ngtcp2_crypto_generate_stateless_reset_token(
          token, c->ep->reset_secret, sizeof(c->ep->reset_secret), cid) != 0)
    return NGTCP2_ERR_CALLBACK_FAILURE;
  if (cid_add(c->ep, cid, c) != 0) return NGTCP2_ERR_CALLBACK_FAILURE;
  return 0;
}

static int remove_cid_cb(ngtcp2_conn *conn, const ngtcp2_cid *cid, void *ud) {
  quic_conn *c = ud;
  cid_remove(c->ep, cid);
  return 0;
}

/* The negotiated ALPN must be ours: GnuTLS lets a peer without ALPN in. */
static int alpn_ok(quic_conn *c) {
  gnutls_datum_t p;
  if (gnutls_alpn_get_selected_protocol(c->tls, &p) != 0) return 0;
  const char *want = c->ep->cfg.alpn;
  return p.size == strlen(want) && memcmp(p.data, want, p.size) == 0;
}

static int fail_alpn(quic_conn *c) {
  log_warn(MOD, "[%s] handshake refused: ALPN is not %s", c->peer,
           c->ep->cfg.alpn);
  ngtcp2_ccerr_set_tls_alert(&c->ccerr, 120 /* no_application_protocol */,
                             NULL, 0);
  c->ccerr_set = 1;
  return NGTCP2_ERR_CALLBACK_FAILURE;
}

static void conn_handshake_done(quic_conn *c) {
  if (c->handshaking) {
    c->handshaking = 0;
    c->ep->st.handshakes--;
  }
}

static int handshake_completed_cb(ngtcp2_conn *conn, void *ud) {
  quic_conn *c = ud;
  conn_handshake_done(c);
  if (!alpn_ok(c)) return fail_alpn(c);
  if (c->is_server) { /* the client's Finished (and certificate) checked */
    c->established = 1;
    c->notify_established = 1;
  }
  return 0;
}

static int handshake_confirmed_cb(ngtcp2_conn *conn, void *ud) {
  quic_conn *c = ud;
  /* A client's handshake completes before the server has verified the
   * client certificate; HANDSHAKE_DONE is the server's acceptance. */
  if (!c->is_server) {
    c->established = 1;
    c->notify_established = 1;
  }
  return 0;
}

static int stream_open_cb(ngtcp2_conn *conn, int64_t sid, void *ud) {
  quic_conn *c = ud;
  if (!ngtcp2_is_bidi_stream(sid)) return 0; /* uni streams: limit is 0 */
  quic_stream *s = stream_new(c, sid);
  if (!s) return NGTCP2_ERR_CALLBACK_FAILURE;
  ngtcp2_conn_set_stream_user_data(conn, sid, s);
  if (c->ep->cb.on_stream_open) c->ep->cb.on_stream_open(c, sid, c->ep->ud);
  return 0;
}

static int recv_stream_data_cb(ngtcp2_conn *conn, uint32_t flags, int64_t sid,
                               uint64_t offset, const uint8_t *data,
                               size_t len, void *ud, void *sud) {
  quic_conn *c = ud;
  int fin = (flags & NGTCP2_STREAM_DATA_FLAG_FIN) != 0;
  if (c->ep->cb.on_data && c->state == CS_OPEN)
    c->ep->cb.on_data(c, sid, data, len, fin, c->ep->ud);
  /* Data is handed over at once, so the windows open at once. */
  ngtcp2_conn_extend_max_stream_offset(conn, sid, len);
  ngtcp2_conn_extend_max_offset(conn, len);
  return 0;
}

static int acked_cb(ngtcp2_conn *conn, int64_t sid, uint64_t offset,
                    uint64_t len, void *ud, void *sud) {
  quic_stream *s = sud;
  if (!s) return 0;
  s->ack_off = offset + len; /* ngtcp2 reports the contiguous acked prefix */
  if (len > 0) ((quic_conn *)ud)->acked_ts = conn_now((quic_conn *)ud);
  if (s->want_writable && len > 0) {
    s->want_writable = 0;
    s->writable_pending = 1;
    evq_push(ud, s);
  }
  return 0;
}

static int stream_close_cb(ngtcp2_conn *conn, uint32_t flags, int64_t sid,
                           uint64_t app_code, void *ud, void *sud) {
  quic_conn *c = ud;
  quic_stream *s = sud;
  /* ngtcp2 counts losses per stream: keep the count of a stream it is
   * about to forget. */
  c->pkts_lost_closed += ngtcp2_conn_get_stream_loss_count(conn, sid);
  if (s) {
    s->closed = 1;
    s->close_code =
        (flags & NGTCP2_STREAM_CLOSE_FLAG_APP_ERROR_CODE_SET) ? app_code : 0;
    sendq_remove(c, s);
    evq_push(c, s);
  }
  if (!ngtcp2_conn_is_local_stream(conn, sid) && ngtcp2_is_bidi_stream(sid))
    ngtcp2_conn_extend_max_streams_bidi(conn, 1);
  return 0;
}

/* stream_shut_send ends our direction of |s| on the peer's STOP_SENDING
 * (ngtcp2 answers it with a reset): what we still buffer will never be
 * read; the caller is told (on_stream_stop_sending). ngtcp2 1.11 reports
 * the frame to no callback (recv_stop_sending came with 1.24; its
 * stream_stop_sending is about our own STOP_SENDING): the sign is
 * ngtcp2_conn_writev_stream refusing the stream with
 * NGTCP2_ERR_STREAM_SHUT_WR, at the next send of its bytes. */
static void stream_shut_send(quic_conn *c, quic_stream *s) {
  s->send_shut = 1;
  s->want_writable = s->writable_pending = 0;
  s->sent_off = s->end_off;
  sendq_remove(c, s);
  s->stop_sending_pending = 1;
  evq_push(c, s);
}


/* Tokens of the peer's CIDs, so that its stateless resets find us. */
static int dcid_status_cb(ngtcp2_conn *conn,
                          ngtcp2_connection_id_status_type type, uint64_t seq,
                          const ngtcp2_cid *cid, const uint8_t *token,
                          void *ud) {
  quic_conn *c = ud;
  if (!token) return 0;
  if (type == NGTCP2_CONNECTION_ID_STATUS_TYPE_ACTIVATE) {
    if (!token_find(c->ep, token) && token_add(c->ep, c, seq, token) != 0)
      return NGTCP2_ERR_CALLBACK_FAILURE;
  } else {
    token_remove(c->ep, c, seq, 0);
  }
  return 0;
}

static int recv_stateless_reset_cb(ngtcp2_conn *conn,
                                   const ngtcp2_pkt_stateless_reset *sr,
                                   void *ud) {
  quic_conn *c = ud;
  c->info.stateless_reset = 1;
  log_info(MOD, "[%s] stateless reset from the peer (it lost this "
           "connection, e.g. restarted)", c->peer);
  return 0;
}

static int extend_max_local_streams_bidi_cb(ngtcp2_conn *conn,
                                            uint64_t max_streams, void *ud) {
  quic_conn *c = ud;
  c->notify_streams = 1;
  return 0;
}

static ngtcp2_conn *get_conn_cb(ngtcp2_crypto_conn_ref *ref) {
  quic_conn *c = ref->user_data;
  return c->conn;
}

static const ngtcp2_callbacks client_callbacks = {
    .client_initial = ngtcp2_crypto_client_initial_cb,
    .recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb,
    .handshake_completed = handshake_completed_cb,
    .handshake_confirmed = handshake_confirmed_cb,
    .encrypt = ngtcp2_crypto_encrypt_cb,
    .decrypt = ngtcp2_crypto_decrypt_cb,
    .hp_mask = ngtcp2_crypto_hp_mask_cb,
    .recv_stream_data = recv_stream_data_cb,
    .acked_stream_data_offset = acked_cb,
    .stream_open = stream_open_cb,
    .stream_close = stream_close_cb,
    .recv_retry = ngtcp2_crypto_recv_retry_cb,
    .rand = rand_cb,
    .get_new_connection_id = get_new_cid_cb,
    .remove_connection_id = remove_cid_cb,
    .update_key = ngtcp2_crypto_update_key_cb,
    .delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb,
    .delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb,
    .get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb,
    .version_negotiation = ngtcp2_crypto_version_negotiation_cb,
    .dcid_status = dcid_status_cb,
    .recv_stateless_reset = recv_stateless_reset_cb,
    .extend_max_local_streams_bidi = extend_max_local_streams_bidi_cb,
};

static const ngtcp2_callbacks server_callbacks = {
    .recv_client_initial = ngtcp2_crypto_recv_client_initial_cb,
    .recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb,
    .handshake_completed = handshake_completed_cb,
    .encrypt = ngtcp2_crypto_encrypt_cb,
    .decrypt = ngtcp2_crypto_decrypt_cb,
    .hp_mask = ngtcp2_crypto_hp_mask_cb,
    .recv_stream_data = recv_stream_data_cb,
    .acked_stream_data_offset = acked_cb,
    .stream_open = stream_open_cb,
    .stream_close = stream_close_cb,
    .rand = rand_cb,
    .get_new_connection_id = get_new_cid_cb,
    .remove_connection_id = remove_cid_cb,
    .update_key = ngtcp2_crypto_update_key_cb,
    .delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb,
    .delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb,
    .get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb,
    .version_negotiation = ngtcp2_crypto_version_negotiation_cb,
    .dcid_status = dcid_status_cb,
    .recv_stateless_reset = recv_stateless_reset_cb,
    .extend_max_local_streams_bidi = extend_max_local_streams_bidi_cb,
};

/* ---- TLS ---- */

/* Both roles: the peer's chain must verify against the configured CA. */
static int verify_cb(gnutls_session_t session) {
  ngtcp2_crypto_conn_ref *ref = gnutls_session_get_ptr(session);
  quic_conn *c = ref->user_data;
  unsigned status = 0;
  unsigned n = 0;
  if (!gnutls_certificate_get_peers(session, &n) || n == 0) {
    log_warn(MOD, "[%s] handshake refused: no peer certificate", c->peer);
    return -1;
  }
  int rv = gnutls_certificate_verify_peers2(session, &status);
  if (rv < 0 || status != 0) {
    gnutls_datum_t out = {NULL, 0};
    if (rv >= 0)
      gnutls_certificate_verification_status_print(
          status, GNUTLS_CRT_X509, &out, 0);
    log_warn(MOD, "[%s] handshake refused: peer certificate: %s", c->peer,
             rv < 0 ? gnutls_strerror(rv)
                    : (out.data ? (const char *)out.data : "invalid"));
    gnutls_free(out.data);
    return -1;
  }
  return 0;
}

static int tls_session_new(quic_conn *c) {
  quic_endpoint *ep = c->ep;
  unsigned flags = (c->is_server ? GNUTLS_SERVER : GNUTLS_CLIENT) |
                   GNUTLS_NO_END_OF_EARLY_DATA;
  if (gnutls_init(&c->tls, flags) != 0) return -1;
  int rv = c->is_server ? ngtcp2_crypto_gnutls_configure_server_session(c->tls)
                        : ngtcp2_crypto_gnutls_configure_client_session(c->tls);
  if (rv != 0) return -1;
  if (gnutls_priority_set(c->tls, ep->prio) != 0) return -1;
  if (gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, ep->cred) != 0)
    return -1;
  if (c->is_server)
    gnutls_certificate_server_set_request(c->tls, GNUTLS_CERT_REQUIRE);
  gnutls_datum_t alpn = {(unsigned char *)ep->cfg.alpn, strlen(ep->cfg.alpn)};
  if (gnutls_alpn_set_protocols(c->tls, &alpn, 1, GNUTLS_ALPN_MANDATORY) != 0)
    return -1;
  c->ref.get_conn = get_conn_cb;
  c->ref.user_data = c;
  gnutls_session_set_ptr(c->tls, &c->ref);
  return 0;
}

/* ---- connections ---- */

static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

static void conn_kick(quic_conn *c) {
  ev_timer_stop(c->ep->loop, &c->timer);
  ev_timer_set(&c->timer, 0., 0.);
  ev_timer_start(c->ep->loop, &c->timer);
}

static void conn_free(quic_conn *c) {
  if (!c) return;
  ev_timer_stop(c->ep->loop, &c->timer);
  if (c->in_dirty) {
    for (quic_conn **p = &c->ep->dirty; *p; p = &(*p)->dirty_next)
      if (*p == c) {
        *p = c->dirty_next;
        break;
      }
  }
  conn_handshake_done(c);
  cid_remove_conn(c->ep, c);
  token_remove(c->ep, c, 0, 1);
  if (c->conn) ngtcp2_conn_del(c->conn);
  if (c->tls) gnutls_deinit(c->tls);
  while (c->streams) {
    quic_stream *s = c->streams;
    c->streams = s->next;
    stream_free(s);
  }
  free(c->sbuckets);
  free(c->close_pkt);
  free(c);
}

static quic_conn *conn_alloc(quic_endpoint *ep, const struct sockaddr *remote,
                             socklen_t remotelen, int is_server) {
  quic_conn *c = calloc(1, sizeof(*c));
  if (!c) return NULL;
  c->ep = ep;
  c->is_server = is_server;
  c->state = CS_OPEN;
  memcpy(&c->remote, remote, remotelen);
  c->remotelen = remotelen;
  addr_str(remote, c->peer, sizeof(c->peer));
  ev_timer_init(&c->timer, conn_timer_cb, 0., 0.);
  c->timer.data = c;
  c->user = ep->ud;
  return c;
}

/* addr_is_loopback: 127.0.0.0/8, ::1 or ::ffff:127.0.0.0/104. */
static int addr_is_loopback(const struct sockaddr *sa) {
  if (sa->sa_family == AF_INET)
    return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
  if (sa->sa_family == AF_INET6) {
    const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
  }
  return 0;
}

/* route_payload_max is the largest UDP payload the route to |peer| carries
 * as the kernel knows it (the interface MTU, or a path MTU it learned),
 * from a connected probe socket; 0 when it cannot tell. */
static size_t route_payload_max(const struct sockaddr *peer) {
  int v6 = peer->sa_family == AF_INET6;
  socklen_t len = v6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  int fd = socket(peer->sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  int mtu = 0;
  socklen_t ml = sizeof(mtu);
  size_t out = 0;
  if (connect(fd, peer, len) == 0 &&
      getsockopt(fd, v6 ? IPPROTO_IPV6 : IPPROTO_IP, v6 ? IPV6_MTU : IP_MTU, &mtu,
                 &ml) == 0 &&
      mtu > (v6 ? 48 : 28))
    out = (size_t)mtu - (v6 ? 48 : 28); /* IP and UDP headers */
  close(fd);
  return out;
}

/* PMTUD probe sizes (UDP payloads), ascending: Ethernet's 1,500-byte MTU
 * for IPv6 and IPv4, then 9,000-byte jumbo frames; the configured maximum
 * is probed last. */
static const uint16_t pmtud_sizes[] = {1452, 1472, 8952, 8972};

/* conn_settings: |remote| is the peer's address; |probes| (room for
 * QUIC_PMTUD_PROBES) is where the PMTUD probe sizes go. Packets start at
 * 1,200 bytes and grow by ngtcp2's path MTU discovery up to the configured
 * maximum (automatic: 1,452, and QUIC_MAX_UDP_PAYLOAD to a loopback peer,
 * whose MTU is 64 KiB). Large packets cut the per-packet work (AEAD calls,
 * ngtcp2's packet bookkeeping, GSO segments) and raise the congestion
 * window's floor, which ngtcp2 counts in packets. */
#define QUIC_PMTUD_PROBES (sizeof(pmtud_sizes) / sizeof(pmtud_sizes[0]) + 1)
static void conn_settings(quic_endpoint *ep, const struct sockaddr *remote,
                          ngtcp2_settings *s, ngtcp2_transport_params *p,
                          uint16_t *probes) {
  ngtcp2_settings_default(s);
  size_t mtu = ep->cfg.max_udp_payload;
  if (mtu == 0) mtu = addr_is_loopback(remote) ? QUIC_MAX_UDP_PAYLOAD : 1452;
  if (mtu > QUIC_MAX_UDP_PAYLOAD) mtu = QUIC_MAX_UDP_PAYLOAD;
  if (mtu > 1452) {
    /* Never probe above what the local route carries (a hop further on
     * with a smaller MTU is what PMTUD finds out). */
    size_t route = route_payload_max(remote);
    if (route > 0 && route < mtu) mtu = route < 1452 ? 1452 : route;
  }
  if (mtu >= QUIC_MIN_UDP_PAYLOAD) {
    size_t n = 0;
    for (size_t i = 0; i < QUIC_PMTUD_PROBES - 1; i++)
      if (pmtud_sizes[i] < mtu) probes[n++] = pmtud_sizes[i];
    if (mtu > QUIC_MIN_UDP_PAYLOAD) probes[n++] = (uint16_t)mtu;
    s->max_tx_udp_payload_size = mtu;
    s->pmtud_probes = probes;
    s->pmtud_probeslen = n;
  }
  /* Window auto-tuning: the receive windows start at the transport
   * parameters' and grow up to these as the RTT and the rate ask. */
  s->max_window = ep->cfg.max_window > ep->cfg.max_data ? ep->cfg.max_window : 0;
  s->max_stream_window = ep->cfg.max_stream_window > ep->cfg.max_stream_data
                             ? ep->cfg.max_stream_window
                             : 0;
  s->initial_ts = now_ts();
  s->handshake_timeout =
      (ngtcp2_duration)(ep->cfg.handshake_timeout * NGTCP2_SECONDS);
  s->cc_algo = ep->cc;
  ngtcp2_transport_params_default(p);
  p->initial_max_stream_data_bidi_local = ep->cfg.max_stream_data;
  p->initial_max_stream_data_bidi_remote = ep->cfg.max_stream_data;
  p->initial_max_stream_data_uni = 0;
  p->initial_max_data = ep->cfg.max_data;
  p->initial_max_streams_bidi = ep->cfg.max_streams_bidi;
  p->initial_max_streams_uni = 0;
  p->max_idle_timeout = (ngtcp2_duration)(ep->cfg.idle_timeout * NGTCP2_SECONDS);
}

static ngtcp2_path conn_path(quic_conn *c) {
  ngtcp2_path path = {
      .local = {(struct sockaddr *)&c->ep->local, c->ep->locallen},
      .remote = {(struct sockaddr *)&c->remote, c->remotelen},
  };
  return path;
}

static void conn_link(quic_conn *c) {
  c->next = c->ep->conns;
  c->ep->conns = c;
  c->ep->st.conns++;
  if (c->ep->cfg.keepalive > 0)
    ngtcp2_conn_set_keep_alive_timeout(
        c->conn, (ngtcp2_duration)(c->ep->cfg.keepalive * NGTCP2_SECONDS));
}

static void conn_unlink(quic_conn *c) {
  for (quic_conn **p = &c->ep->conns; *p; p = &(*p)->next) {
    if (*p == c) {
      *p = c->next;
      c->ep->st.conns--;
      return;
    }
  }
}

quic_conn *quic_connect(quic_endpoint *ep, const struct sockaddr *peer,
                        socklen_t peerlen) {
  if (!ep || !peer || peerlen > sizeof(struct sockaddr_storage))
    return NULL;
  struct sockaddr_in6 mapped;
  if (peer->sa_family == AF_INET && ep->local.ss_family == AF_INET6 &&
      !ep->cfg.v6only && peerlen >= sizeof(struct sockaddr_in)) {
    /* Dual stack: the kernel sends to ::ffff:a.b.c.d as IPv4. */
    const struct sockaddr_in *in = (const struct sockaddr_in *)peer;
    memset(&mapped, 0, sizeof(mapped));
    mapped.sin6_family = AF_INET6;
    mapped.sin6_port = in->sin_port;
    mapped.sin6_addr.s6_addr[10] = 0xff;
    mapped.sin6_addr.s6_addr[11] = 0xff;
    memcpy(&mapped.sin6_addr.s6_addr[12], &in->sin_addr, 4);
    peer = (const struct sockaddr *)&mapped;
    peerlen = sizeof(mapped);
  }
  if (peer->sa_family != ep->local.ss_family) return NULL;
  quic_conn *c = conn_alloc(ep, peer, peerlen, 0);
  if (!c) return NULL;
  ngtcp2_cid dcid, scid;
  dcid.datalen = scid.datalen = QUIC_CIDLEN;
  gnutls_rnd(GNUTLS_RND_RANDOM, dcid.data, QUIC_CIDLEN);
  gnutls_rnd(GNUTLS_RND_RANDOM, scid.data, QUIC_CIDLEN);
  ngtcp2_settings s;
  ngtcp2_transport_params p;
  uint16_t probes[QUIC_PMTUD_PROBES];
  conn_settings(ep, (const struct sockaddr *)&c->remote, &s, &p, probes);
  ngtcp2_path path = conn_path(c);
  if (tls_session_new(c) != 0) goto fail;
  if (ngtcp2_conn_client_new(&c->conn, &dcid, &scid, &path,
                             NGTCP2_PROTO_VER_V1, &client_callbacks, &s, &p,
                             NULL, c) != 0)
    goto fail;
  ngtcp2_conn_set_tls_native_handle(c->conn, c->tls);
  if (cid_add(ep, &scid, c) != 0) goto fail;
  c->visible = 1;
  conn_link(c);
  conn_kick(c); /* the first flight goes out from the loop */
  log_debug(MOD, "[%s] connecting", c->peer);
  return c;
fail:
  log_error(MOD, "[%s] cannot start a connection", c->peer);
  conn_free(c);
  return NULL;
}

/* server_conn_new: |odcid| is the client's first DCID when it came back
 * with a valid Retry token (NULL otherwise). */
static quic_conn *server_conn_new(quic_endpoint *ep, const ngtcp2_pkt_hd *hd,
                                  const ngtcp2_cid *odcid,
                                  const struct sockaddr *remote,
                                  socklen_t remotelen) {
  quic_conn *c = conn_alloc(ep, remote, remotelen, 1);
  if (!c) return NULL;
  ngtcp2_cid scid;
  scid.datalen = QUIC_CIDLEN;
  gnutls_rnd(GNUTLS_RND_RANDOM, scid.data, QUIC_CIDLEN);
  ngtcp2_settings s;
  ngtcp2_transport_params p;
  uint16_t probes[QUIC_PMTUD_PROBES];
  conn_settings(ep, remote, &s, &p, probes);
  if (odcid) {
    p.original_dcid = *odcid;
    p.retry_scid = hd->dcid;
    p.retry_scid_present = 1;
    s.token = hd->token; /* marks the address as validated */
    s.tokenlen = hd->tokenlen;
    s.token_type = NGTCP2_TOKEN_TYPE_RETRY;
  } else {
    p.original_dcid = hd->dcid;
  }
  p.original_dcid_present = 1;
  p.stateless_reset_token_present = 1;
  if (ngtcp2_crypto_generate_stateless_reset_token(
          p.stateless_reset_token, ep->reset_secret, sizeof(ep->reset_secret),
          &scid) != 0)
    goto fail;
  ngtcp2_path path = conn_path(c);
  if (tls_session_new(c) != 0) goto fail;
  if (ngtcp2_conn_server_new(&c->conn, &hd->scid, &scid, &path, hd->version,
                             &server_callbacks, &s, &p, NULL, c) != 0)
    goto fail;
  ngtcp2_conn_set_tls_native_handle(c->conn, c->tls);
  /* The client keeps using its chosen DCID until it sees ours. */
  if (cid_add(ep, &scid, c) != 0 || cid_add(ep, &hd->dcid, c) != 0) goto fail;
  conn_link(c);
  c->handshaking = 1;
  ep->st.handshakes++;
  ep->st.accepted++;
  return c;
fail:
  log_error(MOD, "[%s] cannot accept a connection", c->peer);
  conn_free(c);
  return NULL;
}

/* ep_sendto sends |len| bytes to |to|: one datagram, or with |gso| < |len|
 * datagrams of |gso| bytes (the last may be shorter) by UDP GSO, or by
 * sendmmsg once the kernel has refused GSO. Returns the datagrams sent. A
 * full socket buffer drops the rest: QUIC recovers it like any loss. */
static size_t ep_sendto(quic_endpoint *ep, const struct sockaddr *to,
                        socklen_t tolen, const uint8_t *data, size_t len,
                        size_t gso) {
  if (gso == 0 || gso > len) gso = len;
  size_t nseg = (len + gso - 1) / gso;
  if (nseg > 1 && ep->gso) {
    union {
      char buf[CMSG_SPACE(sizeof(uint16_t))];
      struct cmsghdr align;
    } ctl;
    struct iovec iov = {(void *)data, len};
    struct msghdr mh = {.msg_name = (void *)to, .msg_namelen = tolen,
                        .msg_iov = &iov, .msg_iovlen = 1,
                        .msg_control = ctl.buf,
                        .msg_controllen = sizeof(ctl.buf)};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_UDP;
    cm->cmsg_type = UDP_SEGMENT;
    cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    uint16_t seg = (uint16_t)gso;
    memcpy(CMSG_DATA(cm), &seg, sizeof(seg));
    ssize_t n;
    do {
      n = sendmsg(ep->fd, &mh, 0);
    } while (n < 0 && errno == EINTR);
    ep->st.tx_syscalls++;
    if (n >= 0) {
      ep->st.tx_dgrams += nseg;
      return nseg;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      ep->st.tx_eagain += nseg;
      return 0;
    }
    if (errno != EIO && errno != EINVAL && errno != EOPNOTSUPP) {
      ep_warn_rl(ep, "sendmsg (GSO): %s", strerror(errno));
      return 0;
    }
    /* The device or the path cannot segment (EIO: no checksum offload):
     * per-datagram sends from now on. */
    log_info(MOD, "UDP GSO refused (%s): sending datagrams one by one",
             strerror(errno));
    ep->gso = 0;
  }
  size_t sent = 0;
  while (sent < nseg) {
    unsigned k = 0;
    for (; k < QUIC_GSO_MAX && sent + k < nseg; k++) {
      size_t off = (sent + k) * gso;
      ep->txiov[k].iov_base = (void *)(data + off);
      ep->txiov[k].iov_len = len - off < gso ? len - off : gso;
      memset(&ep->txh[k], 0, sizeof(ep->txh[k]));
      ep->txh[k].msg_hdr.msg_name = (void *)to;
      ep->txh[k].msg_hdr.msg_namelen = tolen;
      ep->txh[k].msg_hdr.msg_iov = &ep->txiov[k];
      ep->txh[k].msg_hdr.msg_iovlen = 1;
    }
    int n;
    do {
      n = sendmmsg(ep->fd, ep->txh, k, 0);
    } while (n < 0 && errno == EINTR);
    ep->st.tx_syscalls++;
    if (n <= 0) {
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
        ep_warn_rl(ep, "sendmmsg: %s", strerror(errno));
      else
        ep->st.tx_eagain += nseg - sent;
      break;
    }
    sent += (size_t)n;
  }
  ep->st.tx_dgrams += sent;
  return sent;
}

/* send_pkt sends one packet of |c| (closing, handshake answers). */
static int send_pkt(quic_conn *c, const uint8_t *data, size_t len) {
  size_t n = ep_sendto(c->ep, (struct sockaddr *)&c->remote, c->remotelen,
                       data, len, 0);
  c->pkts_sent += n;
  c->bytes_sent += n ? len : 0;
  return 0;
}

/* conn_flush sends the run of packets gathered in the endpoint's transmit
 * buffer: |len| bytes, all |gso| long but the last. */
static void conn_flush(quic_conn *c, size_t len, size_t gso) {
  if (len == 0) return;
  size_t n = ep_sendto(c->ep, (struct sockaddr *)&c->remote, c->remotelen,
                       c->ep->txbuf, len, gso);
  c->pkts_sent += n;
  c->bytes_sent += n * gso < len ? n * gso : len;
}

/* conn_enter_closing writes CONNECTION_CLOSE with |ccerr| and keeps the
 * packet to answer the peer during the closing period (3 PTO). */
static void conn_enter_closing(quic_conn *c, const ngtcp2_ccerr *ccerr) {
  uint8_t buf[QUIC_MAX_PKT];
  ngtcp2_path_storage ps;
  ngtcp2_path_storage_zero(&ps);
  ngtcp2_ssize n = ngtcp2_conn_write_connection_close(
      c->conn, &ps.path, NULL, buf, sizeof(buf), ccerr, conn_now(c));
  if (n <= 0) {
    c->state = CS_DEAD;
    return;
  }
  c->close_pkt = malloc((size_t)n);
  if (c->close_pkt) {
    memcpy(c->close_pkt, buf, (size_t)n);
    c->close_pktlen = (size_t)n;
  }
  send_pkt(c, buf, (size_t)n);
  c->state = CS_CLOSING;
  ev_timer_stop(c->ep->loop, &c->timer);
  ev_timer_set(&c->timer,
               3. * (double)ngtcp2_conn_get_pto(c->conn) / NGTCP2_SECONDS, 0.);
  ev_timer_start(c->ep->loop, &c->timer);
}

static void conn_enter_draining(quic_conn *c) {
  c->state = CS_DRAINING;
  ev_timer_stop(c->ep->loop, &c->timer);
  ev_timer_set(&c->timer,
               3. * (double)ngtcp2_conn_get_pto(c->conn) / NGTCP2_SECONDS, 0.);
  ev_timer_start(c->ep->loop, &c->timer);
}

/* conn_error handles a fatal |rv| from ngtcp2 (read, write or expiry). */
static void conn_error(quic_conn *c, int rv) {
  ngtcp2_ccerr ccerr;
  switch (rv) {
  case NGTCP2_ERR_DRAINING: {
    const ngtcp2_ccerr *peer = ngtcp2_conn_get_ccerr(c->conn);
    c->info.by_peer = 1;
    c->info.is_app = peer->type == NGTCP2_CCERR_TYPE_APPLICATION;
    c->info.code = peer->error_code;
    log_debug(MOD, "[%s] closed by peer: %s code 0x%llx", c->peer,
              c->info.is_app ? "application" : "transport",
              (unsigned long long)peer->error_code);
    if (c->info.stateless_reset) {
      /* The peer has no state left to send from: nothing will come to
       * drain, and the caller can link again now rather than after 3 PTO
       * (seconds when the RTT estimate still holds a handshake burst). */
      c->state = CS_DEAD;
      return;
    }
    conn_enter_draining(c);
    return;
  }
  case NGTCP2_ERR_IDLE_CLOSE:
  case NGTCP2_ERR_HANDSHAKE_TIMEOUT:
    c->info.idle = 1;
    log_info(MOD, "[%s] %s", c->peer,
             rv == NGTCP2_ERR_IDLE_CLOSE ? "idle timeout" : "handshake timeout");
    c->state = CS_DEAD;
    return;
  case NGTCP2_ERR_DROP_CONN:
    c->state = CS_DEAD;
    return;
  default:
    break;
  }
  if (c->ccerr_set) {
    ccerr = c->ccerr;
  } else if (rv == NGTCP2_ERR_CRYPTO) {
    ngtcp2_ccerr_set_tls_alert(&ccerr, ngtcp2_conn_get_tls_alert(c->conn),
                               NULL, 0);
  } else {
    ngtcp2_ccerr_default(&ccerr);
    ngtcp2_ccerr_set_liberr(&ccerr, rv, NULL, 0);
  }
  c->info.is_app = ccerr.type == NGTCP2_CCERR_TYPE_APPLICATION;
  c->info.code = ccerr.error_code;
  log_warn(MOD, "[%s] connection failed: %s (code 0x%llx)", c->peer,
           ngtcp2_strerror(rv), (unsigned long long)ccerr.error_code);
  conn_enter_closing(c, &ccerr);
}

/* conn_write sends what ngtcp2 lets through now: stream data round-robin
 * over the streams with pending bytes, then ACKs and control frames.
 * Returns 1 when it stopped with packets still allowed (its own budget of
 * QUIC_TX_QUANTA send quanta), 0 when ngtcp2 had nothing more to send now
 * (congestion window, pacing, flow control or no data). */
static int conn_write_run(quic_conn *c);

static int conn_write(quic_conn *c) {
  c->ep->writing++;
  c->tx_pending = 0;
  int more = conn_write_run(c);
  c->ep->writing--;
  return more;
}

static int conn_write_run(quic_conn *c) {
  uint8_t *txbuf = c->ep->txbuf;
  ngtcp2_path_storage ps;
  ngtcp2_pkt_info pi;
  ngtcp2_tstamp ts = conn_now(c);
  /* Room for a PMTUD probe; the path's size counts the quantum's packets. */
  size_t maxpkt = ngtcp2_conn_get_max_tx_udp_payload_size(c->conn);
  if (maxpkt > QUIC_MAX_UDP_PAYLOAD) maxpkt = QUIC_MAX_UDP_PAYLOAD;
  size_t pathpkt = ngtcp2_conn_get_path_max_tx_udp_payload_size(c->conn);
  size_t quantum = ngtcp2_conn_get_send_quantum(c->conn);
  size_t maxcnt = quantum / pathpkt;
  if (maxcnt < 1) maxcnt = 1;
  /* Pacing lets ngtcp2 send up to 1 ms ahead of its schedule, but a timer
   * below 1 ms costs a 1 ms sleep in libev (epoll's resolution) and, on a
   * shared core, the rest of another task's time slice: at a near-zero RTT
   * the sender then idles while its window is open. So several quanta go
   * out back to back, ngtcp2 checking the pacing schedule between them. */
  size_t budget = maxcnt * QUIC_TX_QUANTA;
  size_t pkts = 0, qpkts = 0;
  int more = 0;
  /* The run being gathered for one GSO send: |off| bytes of packets that
   * are all |gso| long, except possibly the last one. */
  size_t off = 0, gso = 0, nrun = 0;
  quic_stream *blocked = NULL;      /* flow-controlled in this write */
  ngtcp2_path_storage_zero(&ps);

  for (;;) {
    if (qpkts == maxcnt) { /* one quantum out: pacing decides the next */
      ngtcp2_conn_update_pkt_tx_time(c->conn, ts);
      ts = conn_now(c);
      qpkts = 0;
    }
    if (pkts == budget) {
      more = 1;
      break;
    }
    /* Streams are served in the order their data came: the head of the
     * queue sends what it had when its turn began (turn_end), then goes to
     * the tail if it has more. So a frame waits for the bytes written
     * before it, not for a packet of every other stream in turn (round
     * robin finishes all of a burst's frames together, at its end), and a
     * stream that keeps writing cannot hold the head. */
    quic_stream *s;
    while ((s = c->sq_head) != NULL) {
      if (!stream_pending(s)) {
        sendq_remove(c, s);
      } else if (s->turn && s->sent_off >= s->turn_end) {
        sendq_remove(c, s); /* its turn is over: to the tail, a new one */
        sendq_push(c, s);
      } else {
        break;
      }
    }
    ngtcp2_vec vec[2];
    size_t vcnt = 0;
    uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
    int64_t sid = -1;
    if (s) {
      if (!s->turn) {
        s->turn = 1;
        s->turn_end = s->end_off;
      }
      sid = s->id;
      uint64_t left = s->turn_end > s->sent_off ? s->turn_end - s->sent_off : 0;
      if (left > 0) {
        size_t start = (size_t)(s->sent_off % s->cap);
        size_t l1 = s->cap - start;
        if (l1 > left) l1 = (size_t)left;
        vec[0].base = s->buf + start;
        vec[0].len = l1;
        vcnt = 1;
        if (left > l1) {
          vec[1].base = s->buf;
          vec[1].len = (size_t)(left - l1);
          vcnt = 2;
        }
      }
      if (s->fin_req && s->turn_end == s->end_off)
        flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
    }
    if (off + maxpkt > QUIC_TX_BUF) {
      conn_flush(c, off, gso);
      off = nrun = 0;
    }
    uint8_t *buf = txbuf + off;
    ngtcp2_ssize ndatalen = -1;
    ngtcp2_ssize n = ngtcp2_conn_writev_stream(
        c->conn, &ps.path, &pi, buf, maxpkt, &ndatalen, flags, sid, vec, vcnt,
        ts);
    if (n < 0) {
      if (n == NGTCP2_ERR_WRITE_MORE) {
        s->sent_off += (uint64_t)ndatalen;
        if (s->fin_req && s->sent_off == s->end_off) s->fin_sent = 1;
        /* the packet has room left: the next stream fills it */
        sendq_remove(c, s);
        if (stream_pending(s)) sendq_push(c, s);
        continue;
      }
      if (s && n == NGTCP2_ERR_STREAM_SHUT_WR) {
        /* We did not end it (a reset of ours leaves nothing pending):
         * the peer's STOP_SENDING did. */
        stream_shut_send(c, s);
        continue;
      }
      if (s && (n == NGTCP2_ERR_STREAM_DATA_BLOCKED ||
                n == NGTCP2_ERR_STREAM_NOT_FOUND)) {
        /* flow control: aside until this write ends, then back in line */
        sendq_remove(c, s);
        s->sq_next = blocked;
        blocked = s;
        continue;
      }
      conn_flush(c, off, gso);
      sendq_restore(c, blocked);
      conn_error(c, (int)n);
      return 0;
    }
    if (s && ndatalen >= 0) {
      s->sent_off += (uint64_t)ndatalen;
      if (s->fin_req && s->sent_off == s->end_off) s->fin_sent = 1;
    }
    if (s && ndatalen > 0 && s->sent_off >= s->turn_end) {
      sendq_remove(c, s);
      if (stream_pending(s)) sendq_push(c, s);
    }
    if (n == 0) break;
    pkts++;
    qpkts++;
    size_t len = (size_t)n;
    if (nrun > 0 && len > gso) {
      /* Longer than the run's segments: send the run, start a new one
       * with this packet (rare: a short packet began the run). */
      conn_flush(c, off, gso);
      memmove(txbuf, buf, len);
      off = nrun = 0;
    }
    if (nrun == 0) gso = len;
    off += len;
    nrun++;
    /* A shorter packet ends a run: GSO segments are all alike but the
     * last. */
    if (len < gso || nrun == QUIC_GSO_MAX) {
      conn_flush(c, off, gso);
      off = nrun = 0;
    }
  }
  conn_flush(c, off, gso);
  sendq_restore(c, blocked);
  ngtcp2_conn_update_pkt_tx_time(c->conn, ts);
  return more;
}

/* Outage recovery (max_probe_interval). After a path outage the sender's
 * probe timeout (PTO) has doubled with every unanswered probe: left alone,
 * the first probe after the path returns can come about as long after as
 * the outage lasted (ngtcp2 does not cap the backoff). Two measures bring
 * that down to about max_probe_interval:
 * - while streams are open or anything is in flight, keep-alive PINGs go
 *   out after max_probe_interval without traffic (ngtcp2 sends them only
 *   while the congestion window has room, so in practice the side that
 *   receives the bulk data pings, and its PINGs are what tells the sender
 *   that the path is back; they also draw the stateless reset of a peer
 *   that restarted);
 * - a packet from the peer while our data has gone unacknowledged for
 *   max_probe_interval or longer means the path is back: our PTO fires at
 *   once instead of at its backed-off deadline.
 * ngtcp2 has no call to fire the PTO now and refuses a clock that goes
 * back, so conn_probe_now moves the connection's own clock (conn_now: the
 * monotonic clock plus |skew|) past the PTO deadline and runs the expiry
 * handling; the clock stays moved. The deadline is not exported; it is at
 * most the time since the last acknowledgement plus two PTOs away (the
 * probes went out at s + P(2^k - 1) for the base PTO P after the last send
 * s, the next at s + P(2^(k+1) - 1)). Firing the other timers early is
 * harmless: ACK delay, keep-alive, pacing, lost-packet cleanup, CID
 * retirement, a PMTUD probe's loss; the idle expiry is a full idle timeout
 * from the packet just read, beyond the move. What moves with the clock:
 * the RTT of packets sent before the move and acknowledged after it (the
 * ones of the outage are lost, and the sample comes from the newest), and
 * the ACK delay we report for the packet just read (the peer clamps it to
 * our max_ack_delay). */
static void conn_probe_now(quic_conn *c) {
  double mpi = c->ep->cfg.max_probe_interval;
  if (mpi <= 0 || !c->established || c->state != CS_OPEN) return;
  ngtcp2_conn_info ci;
  ngtcp2_conn_get_conn_info(c->conn, &ci);
  ngtcp2_tstamp now = conn_now(c);
  if (ci.bytes_in_flight == 0 || c->acked_ts == 0 || c->acked_ts > now) {
    c->acked_ts = now;
    return;
  }
  ngtcp2_duration quiet = now - c->acked_ts;
  if (quiet < (ngtcp2_duration)(mpi * NGTCP2_SECONDS)) return;
  ngtcp2_duration jump = quiet + 2 * ngtcp2_conn_get_pto(c->conn);
  double idle = c->ep->cfg.idle_timeout;
  const ngtcp2_transport_params *rp =
      ngtcp2_conn_get_remote_transport_params(c->conn);
  if (rp && rp->max_idle_timeout &&
      (double)rp->max_idle_timeout / NGTCP2_SECONDS < idle)
    idle = (double)rp->max_idle_timeout / NGTCP2_SECONDS;
  if (idle > 0 && jump >= (ngtcp2_duration)(idle * NGTCP2_SECONDS))
    return; /* would be past the idle expiry: not safe */
  c->skew += jump;
  c->acked_ts = conn_now(c); /* one move per silence */
  int rv = ngtcp2_conn_handle_expiry(c->conn, c->acked_ts);
  if (rv != 0) conn_error(c, rv);
}

static void conn_rearm(quic_conn *c) {
  double mpi = c->ep->cfg.max_probe_interval;
  ngtcp2_tstamp now = conn_now(c);
  if (mpi > 0) {
    ngtcp2_conn_info ci;
    ngtcp2_conn_get_conn_info(c->conn, &ci);
    if (ci.bytes_in_flight == 0) c->acked_ts = now; /* nothing to wait for */
    double ka = c->ep->cfg.keepalive;
    /* A receiver may have nothing in flight, hence no PTO: streams in use
     * are reason enough to ping (one small packet per interval). */
    if ((ci.bytes_in_flight > 0 || c->streams) && (ka <= 0 || ka > mpi)) ka = mpi;
    ngtcp2_conn_set_keep_alive_timeout(
        c->conn, ka > 0 ? (ngtcp2_duration)(ka * NGTCP2_SECONDS) : 0);
  }
  ngtcp2_tstamp exp = ngtcp2_conn_get_expiry(c->conn);
  ev_timer_stop(c->ep->loop, &c->timer);
  if (exp == UINT64_MAX) return;
  double d = exp > now ? (double)(exp - now) / NGTCP2_SECONDS : 0.;
  ev_timer_set(&c->timer, d, 0.);
  ev_timer_start(c->ep->loop, &c->timer);
}

/* conn_events tells the caller what the last I/O produced. */
static void conn_events(quic_conn *c) {
  quic_endpoint *ep = c->ep;
  if (c->notify_established) {
    c->notify_established = 0;
    c->visible = 1;
    log_debug(MOD, "[%s] %s", c->peer, c->is_server ? "accepted" : "connected");
    if (c->is_server && ep->cb.on_accept) ep->cb.on_accept(c, ep->ud);
    if (!c->is_server && ep->cb.on_connected) ep->cb.on_connected(c, ep->ud);
  }
  if (c->notify_streams && c->visible && c->established) {
    c->notify_streams = 0;
    if (ep->cb.on_streams_available) ep->cb.on_streams_available(c, ep->ud);
  }
  /* Only streams with something to say: callbacks may queue more. */
  quic_stream *s;
  while ((s = c->evq_head) != NULL) {
    c->evq_head = s->ev_next;
    if (!c->evq_head) c->evq_tail = NULL;
    s->ev_next = NULL;
    s->in_evq = 0;
    if (s->stop_sending_pending) {
      s->stop_sending_pending = 0;
      if (ep->cb.on_stream_stop_sending && c->state == CS_OPEN && c->visible)
        ep->cb.on_stream_stop_sending(c, s->id, ep->ud);
    }
    if (s->closed) {
      int64_t sid = s->id;
      uint64_t code = s->close_code;
      stream_unlink(c, s);
      stream_free(s);
      if (ep->cb.on_stream_close && c->visible)
        ep->cb.on_stream_close(c, sid, code, ep->ud);
      continue;
    }
    if (s->writable_pending) {
      s->writable_pending = 0;
      if (ep->cb.on_writable && c->state == CS_OPEN)
        ep->cb.on_writable(c, s->id, ep->ud);
    }
  }
}

static void conn_finish(quic_conn *c) {
  quic_endpoint *ep = c->ep;
  conn_unlink(c);
  c->info.established = c->established;
  if (c->visible && ep->cb.on_close) ep->cb.on_close(c, &c->info, ep->ud);
  conn_free(c);
}

/* conn_service runs at the top level of the loop only (never inside an
 * ngtcp2 callback): events, a requested close, writes, the timer. */
static void conn_service(quic_conn *c) {
  c->depth++;
  conn_service_run(c);
  c->depth--;
  if (c->state == CS_DEAD) conn_finish(c);
}

static void conn_service_run(quic_conn *c) {
  if (c->state == CS_OPEN) conn_events(c);
  if (c->state == CS_OPEN && c->close_pending) {
    ngtcp2_ccerr ccerr;
    ngtcp2_ccerr_default(&ccerr);
    ngtcp2_ccerr_set_application_error(&ccerr, c->close_code, NULL, 0);
    c->info.is_app = 1;
    c->info.code = c->close_code;
    conn_enter_closing(c, &ccerr);
  }
  if (c->state == CS_OPEN) {
    int more = conn_write(c);
    if (c->state == CS_OPEN) conn_rearm(c);
    /* Budget spent with the window still open: go on after the loop has
     * polled the socket (ACKs), without a timer's minimum sleep. */
    if (c->state == CS_OPEN && (more || c->evq_head)) conn_kick(c);
  }
}

static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  quic_conn *c = w->data;
  if (c->state == CS_CLOSING || c->state == CS_DRAINING) {
    c->state = CS_DEAD;
  } else if (c->state == CS_OPEN && !c->close_pending) {
    ngtcp2_tstamp ts = conn_now(c);
    c->depth++;
    int rv = ngtcp2_conn_handle_expiry(c->conn, ts);
    c->depth--;
    if (rv != 0) conn_error(c, rv);
  }
  conn_service(c);
}

static void conn_mark_dirty(quic_conn *c) {
  if (c->in_dirty) return;
  c->in_dirty = 1;
  c->dirty_next = c->ep->dirty;
  c->ep->dirty = c;
}

static void conn_read(quic_conn *c, const struct sockaddr *from,
                      socklen_t fromlen, const uint8_t *data, size_t len) {
  if (c->state == CS_CLOSING) {
    /* Answer with the close again, less often as input goes on. */
    unsigned k = ++c->close_rx;
    if (c->close_pkt && (k & (k - 1)) == 0)
      send_pkt(c, c->close_pkt, c->close_pktlen);
    return;
  }
  if (c->state != CS_OPEN) return;
  ngtcp2_path path = {
      .local = {(struct sockaddr *)&c->ep->local, c->ep->locallen},
      .remote = {(struct sockaddr *)from, fromlen},
  };
  ngtcp2_pkt_info pi = {0};
  c->pkts_recv++;
  c->bytes_recv += len;
  c->last_rx = conn_now(c);
  c->depth++;
  int rv = ngtcp2_conn_read_pkt(c->conn, &path, &pi, data, len, c->last_rx);
  c->depth--;
  conn_mark_dirty(c);
  if (rv != 0) conn_error(c, rv);
  else conn_probe_now(c); /* the peer is reachable: probe if backed off */
}

/* ---- endpoint ---- */

/* ep_send_reply sends a packet that belongs to no connection (Retry,
 * Version Negotiation, stateless reset). */
static void ep_send_reply(quic_endpoint *ep, const struct sockaddr *to,
                          socklen_t tolen, const uint8_t *data, size_t len) {
  ep_sendto(ep, to, tolen, data, len, 0);
}

/* ep_version_negotiation answers a long-header packet of a version we do
 * not speak. Only for datagrams of a full Initial's size (RFC 9000 6.1: a
 * small spoofed packet must not buy a larger answer). */
static void ep_version_negotiation(quic_endpoint *ep,
                                   const ngtcp2_version_cid *vc,
                                   const struct sockaddr *from,
                                   socklen_t fromlen, size_t dgramlen) {
  uint8_t buf[256];
  uint32_t sv[] = {NGTCP2_PROTO_VER_V1};
  uint8_t r;
  if (dgramlen < NGTCP2_MAX_UDP_PAYLOAD_SIZE ||
      !rl_take(&ep->rl_reply, QUIC_SR_RATE, QUIC_SR_BURST)) {
    ep->st.dropped++;
    return;
  }
  gnutls_rnd(GNUTLS_RND_NONCE, &r, 1);
  ngtcp2_ssize n = ngtcp2_pkt_write_version_negotiation(
      buf, sizeof(buf), r, vc->scid, vc->scidlen, vc->dcid, vc->dcidlen, sv,
      sizeof(sv) / sizeof(sv[0]));
  if (n <= 0) return;
  ep->st.vn_sent++;
  ep_send_reply(ep, from, fromlen, buf, (size_t)n);
}

/* ep_stateless_reset answers a short-header packet for a CID we do not
 * know: its sender lost state we had (or we lost state it had, after a
 * restart) and learns it at once instead of after an idle timeout. The
 * reset is shorter than what it answers, so two endpoints cannot loop. */
static void ep_stateless_reset(quic_endpoint *ep, const uint8_t *dcid,
                               size_t dcidlen, const struct sockaddr *from,
                               socklen_t fromlen, size_t dgramlen) {
  uint8_t buf[64], rnd[64], token[NGTCP2_STATELESS_RESET_TOKENLEN];
  /* 1 header byte + at least 5 random bytes + token, shorter than input */
  size_t minlen = 1 + NGTCP2_MIN_STATELESS_RESET_RANDLEN +
                  NGTCP2_STATELESS_RESET_TOKENLEN;
  if (dgramlen <= minlen || dcidlen != QUIC_CIDLEN ||
      !rl_take(&ep->rl_reply, QUIC_SR_RATE, QUIC_SR_BURST)) {
    ep->st.dropped++;
    return;
  }
  ngtcp2_cid cid;
  ngtcp2_cid_init(&cid, dcid, dcidlen);
  if (ngtcp2_crypto_generate_stateless_reset_token(
          token, ep->reset_secret, sizeof(ep->reset_secret), &cid) != 0)
    return;
  size_t len = dgramlen - 1;
  if (len > 41) len = 41; /* as long as a small real packet */
  size_t randlen = len - 1 - NGTCP2_STATELESS_RESET_TOKENLEN;
  gnutls_rnd(GNUTLS_RND_NONCE, rnd, randlen);
  ngtcp2_ssize n = ngtcp2_pkt_write_stateless_reset(buf, sizeof(buf), token,
                                                    rnd, randlen);
  if (n <= 0) return;
  ep->st.resets_sent++;
  ep_send_reply(ep, from, fromlen, buf, (size_t)n);
}

/* ep_send_retry asks the client of Initial |hd| to come back with a token
 * proving it owns its address. */
static void ep_send_retry(quic_endpoint *ep, const ngtcp2_pkt_hd *hd,
                          const struct sockaddr *from, socklen_t fromlen,
                          size_t dgramlen) {
  uint8_t token[NGTCP2_CRYPTO_MAX_RETRY_TOKENLEN2];
  uint8_t buf[256];
  ngtcp2_cid scid;
  scid.datalen = QUIC_CIDLEN;
  gnutls_rnd(GNUTLS_RND_NONCE, scid.data, scid.datalen);
  struct timespec rt;
  clock_gettime(CLOCK_REALTIME, &rt);
  ngtcp2_tstamp wall = (uint64_t)rt.tv_sec * NGTCP2_SECONDS + (uint64_t)rt.tv_nsec;
  ngtcp2_ssize tl = ngtcp2_crypto_generate_retry_token2(
      token, ep->retry_secret, sizeof(ep->retry_secret), hd->version, from,
      fromlen, &scid, &hd->dcid, wall);
  if (tl < 0) return;
  size_t max = dgramlen * 3 < sizeof(buf) ? dgramlen * 3 : sizeof(buf);
  ngtcp2_ssize n = ngtcp2_crypto_write_retry(buf, max, hd->version, &hd->scid,
                                             &scid, &hd->dcid, token,
                                             (size_t)tl);
  if (n <= 0) return;
  ep->st.retries_sent++;
  ep_send_reply(ep, from, fromlen, buf, (size_t)n);
}

/* ep_unknown handles a datagram whose DCID is no connection's. */
static void ep_unknown(quic_endpoint *ep, const ngtcp2_version_cid *vc,
                       const uint8_t *pkt, size_t len,
                       const struct sockaddr *from, socklen_t fromlen) {
  if (vc->version == 0) { /* short header */
    /* A stateless reset from a peer of ours ends in a token it gave us. */
    quic_conn *c = len >= NGTCP2_STATELESS_RESET_TOKENLEN + 5
                       ? token_find(ep, pkt + len - NGTCP2_STATELESS_RESET_TOKENLEN)
                       : NULL;
    if (c) {
      conn_read(c, from, fromlen, pkt, len);
      return;
    }
    ep_stateless_reset(ep, vc->dcid, vc->dcidlen, from, fromlen, len);
    return;
  }
  ngtcp2_pkt_hd hd;
  if (!ep->cfg.accept || ngtcp2_accept(&hd, pkt, len) != 0) {
    ep->st.dropped++;
    return;
  }
  ngtcp2_cid odcid;
  const ngtcp2_cid *podcid = NULL;
  if (hd.tokenlen > 0 && hd.token[0] == NGTCP2_CRYPTO_TOKEN_MAGIC_RETRY2) {
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    ngtcp2_tstamp wall =
        (uint64_t)rt.tv_sec * NGTCP2_SECONDS + (uint64_t)rt.tv_nsec;
    if (ngtcp2_crypto_verify_retry_token2(
            &odcid, hd.token, hd.tokenlen, ep->retry_secret,
            sizeof(ep->retry_secret), hd.version, from, fromlen, &hd.dcid,
            QUIC_RETRY_TTL, wall) != 0) {
      /* Forged, stale, or from another address: no state, no answer. */
      ep->st.retry_token_bad++;
      ep->st.dropped++;
      ep_warn_rl(ep, "Initial with an invalid Retry token dropped");
      return;
    }
    podcid = &odcid;
  } else if (ep->st.handshakes >= ep->cfg.retry_threshold) {
    ep_send_retry(ep, &hd, from, fromlen, len);
    return;
  }
  quic_conn *c = server_conn_new(ep, &hd, podcid, from, fromlen);
  if (!c) {
    ep->st.dropped++;
    return;
  }
  conn_read(c, from, fromlen, pkt, len);
}

/* ep_input routes one datagram. */
static void ep_input(quic_endpoint *ep, const uint8_t *pkt, size_t len,
                     const struct sockaddr *from, socklen_t fromlen) {
  ngtcp2_version_cid vc;
  ep->st.rx_dgrams++;
  int rv = ngtcp2_pkt_decode_version_cid(&vc, pkt, len, QUIC_CIDLEN);
  if (rv == NGTCP2_ERR_VERSION_NEGOTIATION) {
    if (ep->cfg.accept) ep_version_negotiation(ep, &vc, from, fromlen, len);
    else ep->st.dropped++;
    return;
  }
  if (rv != 0) {
    ep->st.dropped++; /* garbage */
    return;
  }
  quic_conn *c = cid_find(ep, vc.dcid, vc.dcidlen);
  if (c) conn_read(c, from, fromlen, pkt, len);
  else ep_unknown(ep, &vc, pkt, len, from, fromlen);
}

/* ep_service_dirty services every connection a read touched. */
static void ep_service_dirty(quic_endpoint *ep) {
  while (ep->dirty) {
    quic_conn *c = ep->dirty;
    ep->dirty = c->dirty_next;
    c->in_dirty = 0;
    conn_service(c);
  }
}

static int gro_segment(struct msghdr *mh) {
  for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm))
    if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_GRO) {
      int seg;
      memcpy(&seg, CMSG_DATA(cm), sizeof(seg));
      return seg;
    }
  return 0;
}

static void ep_read_cb(struct ev_loop *loop, ev_io *w, int revents) {
  quic_endpoint *ep = w->data;
  for (int round = 0; round < QUIC_RX_ROUNDS; round++) {
    for (int i = 0; i < QUIC_RX_BATCH; i++) {
      struct msghdr *mh = &ep->rxh[i].msg_hdr;
      mh->msg_name = &ep->rxm[i].addr;
      mh->msg_namelen = sizeof(ep->rxm[i].addr);
      mh->msg_iov = &ep->rxm[i].iov;
      mh->msg_iovlen = 1;
      mh->msg_control = ep->gro ? ep->rxm[i].ctl.buf : NULL;
      mh->msg_controllen = ep->gro ? sizeof(ep->rxm[i].ctl.buf) : 0;
      mh->msg_flags = 0;
    }
    int n = recvmmsg(ep->fd, ep->rxh, QUIC_RX_BATCH, 0, NULL);
    ep->st.rx_syscalls++;
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < n; i++) {
      struct msghdr *mh = &ep->rxh[i].msg_hdr;
      const uint8_t *p = ep->rxm[i].iov.iov_base;
      size_t len = ep->rxh[i].msg_len;
      size_t seg = ep->gro ? (size_t)gro_segment(mh) : 0;
      if (seg == 0 || seg > len) seg = len;
      for (size_t off = 0; off < len; off += seg) {
        size_t l = len - off < seg ? len - off : seg;
        ep_input(ep, p + off, l, (struct sockaddr *)&ep->rxm[i].addr,
                 mh->msg_namelen);
      }
    }
    ep_service_dirty(ep);
    if (n < QUIC_RX_BATCH) break;
  }
  ep_service_dirty(ep);
  /* Connections a reply made dead (none yet) are swept by their timer. */
}

void quic_config_default(quic_config *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->idle_timeout = 30.;
  cfg->keepalive = 0.;
  cfg->handshake_timeout = 10.;
  cfg->max_stream_data = 1024 * 1024;
  cfg->max_data = 16 * 1024 * 1024;
  cfg->max_stream_window = 16 * 1024 * 1024;
  cfg->max_window = 64 * 1024 * 1024;
  cfg->max_streams_bidi = 100;
  cfg->stream_sndbuf = 256 * 1024;
  cfg->cc = "cubic";
  cfg->max_probe_interval = 1.;
  cfg->retry_threshold = 64;
  cfg->alpn = QUIC_ALPN;
  cfg->v6only = 0;
}

static int cc_parse(const char *name, ngtcp2_cc_algo *out) {
  static const struct {
    const char *name;
    ngtcp2_cc_algo algo;
  } t[] = {{"cubic", NGTCP2_CC_ALGO_CUBIC},
           {"reno", NGTCP2_CC_ALGO_RENO},
           {"bbr", NGTCP2_CC_ALGO_BBR},
           /* ngtcp2 1.x has one BBR (v2 and later); the old name stays */
           {"bbr2", NGTCP2_CC_ALGO_BBR}};
  if (!name) name = "cubic";
  for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
    if (strcmp(name, t[i].name) == 0) {
      *out = t[i].algo;
      return 0;
    }
  return -EINVAL;
}

/* ep_socket_fast enables UDP GRO on the socket and probes GSO; both are
 * optional (older kernels: plain datagrams). */
static void ep_socket_fast(quic_endpoint *ep) {
  int on = 1;
  ep->gro = setsockopt(ep->fd, SOL_UDP, UDP_GRO, &on, sizeof(on)) == 0;
  int seg = 0;
  socklen_t sl = sizeof(seg);
  /* Reading UDP_SEGMENT tells whether the kernel knows it; a send that
   * the device cannot segment fails later with EIO and turns it off. */
  ep->gso = getsockopt(ep->fd, SOL_UDP, UDP_SEGMENT, &seg, &sl) == 0;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

quic_endpoint *quic_endpoint_new(struct ev_loop *loop, const quic_config *cfg,
                                 const struct sockaddr *addr,
                                 socklen_t addrlen, const quic_callbacks *cb,
                                 void *ud) {
  if (!loop || !cfg || !addr || !cb || !cfg->cert_pem || !cfg->key_pem ||
      !cfg->ca_pem || addrlen > sizeof(struct sockaddr_storage) ||
      cfg->stream_sndbuf == 0)
    return NULL;
  quic_endpoint *ep = calloc(1, sizeof(*ep));
  if (!ep) return NULL;
  ep->fd = -1;
  ep->loop = loop;
  ep->cfg = *cfg;
  ep->cb = *cb;
  ep->ud = ud;
  ep->cert_pem = dup_or_null(cfg->cert_pem);
  ep->key_pem = dup_or_null(cfg->key_pem);
  ep->ca_pem = dup_or_null(cfg->ca_pem);
  ep->priority = dup_or_null(cfg->priority ? cfg->priority : QUIC_PRIORITY);
  if (!ep->cert_pem || !ep->key_pem || !ep->ca_pem || !ep->priority)
    goto fail;
  ep->cfg.cert_pem = ep->cert_pem;
  ep->cfg.key_pem = ep->key_pem;
  ep->cfg.ca_pem = ep->ca_pem;
  ep->cfg.priority = ep->priority;
  ep->alpn = dup_or_null(cfg->alpn ? cfg->alpn : QUIC_ALPN);
  if (!ep->alpn || !*ep->alpn || strlen(ep->alpn) > 255) goto fail;
  ep->cfg.alpn = ep->alpn;
  if (cc_parse(cfg->cc, &ep->cc) != 0) {
    log_error(MOD, "unknown congestion controller: %s", cfg->cc);
    goto fail;
  }
  ep->cfg.cc = NULL; /* not kept: |ep->cc| holds it */
  /* Reset tokens must survive a restart to reach the old connections'
   * peers, so they come from the node key, not from a random draw. */
  if (gnutls_hmac_fast(GNUTLS_MAC_SHA256, ep->key_pem, strlen(ep->key_pem),
                       "cascade quic stateless reset", 28,
                       ep->reset_secret) != 0)
    goto fail;
  gnutls_rnd(GNUTLS_RND_KEY, ep->retry_secret, sizeof(ep->retry_secret));
  ep->rxbuf = malloc((size_t)QUIC_RX_BATCH * QUIC_RX_SLOT);
  ep->txbuf = malloc(QUIC_TX_BUF);
  if (!ep->rxbuf || !ep->txbuf) goto fail;
  for (int i = 0; i < QUIC_RX_BATCH; i++) {
    ep->rxm[i].iov.iov_base = ep->rxbuf + (size_t)i * QUIC_RX_SLOT;
    ep->rxm[i].iov.iov_len = QUIC_RX_SLOT;
  }
  ep->rl_reply.tokens = QUIC_SR_BURST;
  ep->rl_log.tokens = 1.;

  int rv;
  if ((rv = gnutls_certificate_allocate_credentials(&ep->cred)) != 0)
    goto fail_tls;
  gnutls_datum_t cert = {(unsigned char *)ep->cert_pem, strlen(ep->cert_pem)};
  gnutls_datum_t key = {(unsigned char *)ep->key_pem, strlen(ep->key_pem)};
  gnutls_datum_t ca = {(unsigned char *)ep->ca_pem, strlen(ep->ca_pem)};
  if ((rv = gnutls_certificate_set_x509_key_mem(ep->cred, &cert, &key,
                                                GNUTLS_X509_FMT_PEM)) != 0)
    goto fail_tls;
  if ((rv = gnutls_certificate_set_x509_trust_mem(ep->cred, &ca,
                                                  GNUTLS_X509_FMT_PEM)) <= 0) {
    if (rv == 0) rv = GNUTLS_E_NO_CERTIFICATE_FOUND;
    goto fail_tls;
  }
  gnutls_certificate_set_verify_function(ep->cred, verify_cb);
  if ((rv = gnutls_priority_init(&ep->prio, ep->priority, NULL)) != 0)
    goto fail_tls;

  ep->fd = socket(addr->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                  0);
  if (ep->fd < 0) goto fail_sock;
  /* Room for a burst: a thousand links' handshakes at once, or a bulk
   * sender's window while this process waits for its core. The FORCE
   * options pass net.core.[rw]mem_max when we may (CAP_NET_ADMIN). */
  int sz = QUIC_SOCKBUF;
  if (setsockopt(ep->fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz)) != 0)
    setsockopt(ep->fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
  if (setsockopt(ep->fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof(sz)) != 0)
    setsockopt(ep->fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
  if (addr->sa_family == AF_INET6) {
    int v6only = cfg->v6only ? 1 : 0;
    if (setsockopt(ep->fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only,
                   sizeof(v6only)) != 0)
      goto fail_sock;
  }
  if (bind(ep->fd, addr, addrlen) != 0) goto fail_sock;
  ep_socket_fast(ep);
  ep->locallen = sizeof(ep->local);
  if (getsockname(ep->fd, (struct sockaddr *)&ep->local, &ep->locallen) != 0)
    goto fail_sock;
  ev_io_init(&ep->rio, ep_read_cb, ep->fd, EV_READ);
  ep->rio.data = ep;
  ev_io_start(loop, &ep->rio);
  return ep;

fail_tls:
  log_error(MOD, "endpoint TLS setup: %s", gnutls_strerror(rv));
  goto fail;
fail_sock: {
  char a[64];
  addr_str(addr, a, sizeof(a));
  log_error(MOD, "[%s] endpoint socket: %s", a, strerror(errno));
}
fail:
  quic_endpoint_free(ep);
  return NULL;
}

void quic_endpoint_free(quic_endpoint *ep) {
  if (!ep) return;
  while (ep->conns) {
    quic_conn *c = ep->conns;
    ep->conns = c->next;
    conn_free(c);
  }
  if (ep->fd >= 0) {
    ev_io_stop(ep->loop, &ep->rio);
    close(ep->fd);
  }
  for (unsigned i = 0; i < QUIC_CID_BUCKETS; i++) {
    while (ep->cids[i]) {
      cid_entry *e = ep->cids[i];
      ep->cids[i] = e->next;
      free(e);
    }
  }
  for (unsigned i = 0; i < QUIC_TOKEN_BUCKETS; i++) {
    while (ep->tokens[i]) {
      token_entry *e = ep->tokens[i];
      ep->tokens[i] = e->next;
      free(e);
    }
  }
  free(ep->rxbuf);
  free(ep->txbuf);
  free(ep->alpn);
  if (ep->prio) gnutls_priority_deinit(ep->prio);
  if (ep->cred) gnutls_certificate_free_credentials(ep->cred);
  free(ep->cert_pem);
  free(ep->key_pem);
  free(ep->ca_pem);
  free(ep->priority);
  free(ep);
}

int quic_endpoint_local_addr(const quic_endpoint *ep,
                             struct sockaddr_storage *ss, socklen_t *len) {
  if (!ep || !ss || !len) return -EINVAL;
  memcpy(ss, &ep->local, ep->locallen);
  *len = ep->locallen;
  return 0;
}

void quic_conn_close(quic_conn *c, uint64_t app_code) {
  if (!c || c->state != CS_OPEN || c->close_pending) return;
  c->close_pending = 1;
  c->close_code = app_code;
  conn_kick(c);
}

void quic_endpoint_get_stats(const quic_endpoint *ep, quic_endpoint_stats *st) {
  *st = ep->st;
  st->gso = ep->gso;
  st->gro = ep->gro;
}

int quic_conn_is_server(const quic_conn *c) { return c->is_server; }

const char *quic_conn_peer_name(const quic_conn *c) { return c->peer; }

int quic_conn_peer_cert(const quic_conn *c, size_t idx, const uint8_t **der,
                        size_t *len) {
  unsigned n = 0;
  const gnutls_datum_t *certs = gnutls_certificate_get_peers(c->tls, &n);
  if (!certs || idx >= n) return -1;
  *der = certs[idx].data;
  *len = certs[idx].size;
  return 0;
}

const char *quic_conn_cipher(const quic_conn *c) {
  if (!c || !c->established) return NULL;
  return gnutls_cipher_get_name(gnutls_cipher_get(c->tls));
}

void quic_conn_get_stats(const quic_conn *c, quic_conn_stats *st) {
  memset(st, 0, sizeof(*st));
  st->pkts_lost = c->pkts_lost_closed;
  if (c->conn != NULL) {
    ngtcp2_conn_info ci;
    ngtcp2_conn_get_conn_info(c->conn, &ci);
    if (ci.min_rtt != UINT64_MAX) { /* an RTT sample came */
      st->srtt_ms = (double)ci.smoothed_rtt / NGTCP2_MILLISECONDS;
      st->min_rtt_ms = (double)ci.min_rtt / NGTCP2_MILLISECONDS;
    }
    st->cwnd = ci.cwnd;
    st->bytes_in_flight = ci.bytes_in_flight;
    st->max_udp_payload = ngtcp2_conn_get_path_max_tx_udp_payload_size(c->conn);
  }
  for (const quic_stream *s = c->streams; s; s = s->next) {
    st->bytes_unsent += s->end_off - s->sent_off;
    if (c->conn != NULL && s->id >= 0)
      st->pkts_lost += ngtcp2_conn_get_stream_loss_count(c->conn, s->id);
  }
  st->pkts_sent = c->pkts_sent;
  st->pkts_recv = c->pkts_recv;
  st->bytes_sent = c->bytes_sent;
  st->bytes_recv = c->bytes_recv;
}

void quic_conn_set_user_data(quic_conn *c, void *p) { c->user = p; }

void *quic_conn_get_user_data(const quic_conn *c) { return c->user; }

int quic_stream_open(quic_conn *c, int64_t *sid) {
  if (!c || !sid) return -EINVAL;
  if (c->state != CS_OPEN || c->close_pending || !c->established)
    return -ENOTCONN;
  quic_stream *s = stream_new(c, -1);
  if (!s) return -ENOMEM;
  int rv = ngtcp2_conn_open_bidi_stream(c->conn, &s->id, s);
  if (rv != 0) {
    stream_unlink(c, s);
    stream_free(s);
    return rv == NGTCP2_ERR_STREAM_ID_BLOCKED ? -EAGAIN : -EIO;
  }
  stream_index(c, s); /* room reserved by stream_new */
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
  size_t space = s->cap - (size_t)(s->end_off - s->ack_off);
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
    sendq_push(c, s);
    conn_kick(c);
    /* Write-through: a writer that keeps writing (an ingest loop feeding
     * many streams in one loop iteration) gets its data out every few
     * packets' worth instead of at the end of the iteration, which under
     * load can be milliseconds away. Not from inside ngtcp2 or the
     * service, nor over another write; the timer still runs the service. */
    c->tx_pending += n;
    if (c->tx_pending >= QUIC_WRITE_THROUGH && c->depth == 0 && !c->ep->writing &&
        c->established) {
      c->depth++;
      int more = conn_write(c);
      if (c->state == CS_OPEN) conn_rearm(c);
      /* events, a close or more to send: the service, from the loop */
      if (c->state != CS_OPEN || more || c->evq_head || c->close_pending)
        conn_kick(c);
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
  conn_kick(c);
  return 0;
}

int quic_stream_stop_sending(quic_conn *c, int64_t sid, uint64_t app_code) {
  if (!c || c->state != CS_OPEN) return -ENOTCONN;
  quic_stream *s = stream_find(c, sid);
  if (!s || s->closed) return -ENOENT;
  if (ngtcp2_conn_shutdown_stream_read(c->conn, 0, sid, app_code) != 0)
    return -EIO;
  conn_kick(c);
  return 0;
}
