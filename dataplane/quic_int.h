/* Private to the QUIC endpoint's units (quic.h is the interface): the
 * structures they share and the functions one unit calls in another.
 *
 *   quic.c         the endpoint: socket, datagram routing, Retry, Version
 *                  Negotiation and stateless resets, rate limits, config
 *   quic_cid.c     connection-ID table and the peers' stateless reset tokens,
 *                  the congestion-controller hint a client's DCID carries
 *   quic_stream.c  streams: send rings, send and event queues, stream API
 *   quic_tls.c     GnuTLS sessions: peer verification, ALPN
 *   quic_output.c  packets out: the stream scheduler, GSO / sendmmsg
 *   quic_conn.c    connections: ngtcp2 callbacks and settings, closing,
 *                  timers, outage recovery, the per-connection service
 *
 * Nothing here is for use outside dataplane/quic*.c. */
#ifndef CASCADE_QUIC_INT_H
#define CASCADE_QUIC_INT_H

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
#define QUIC_PKTINFO_MAX 32  /* bytes of an in_pktinfo or in6_pktinfo, rounded up */
#define QUIC_CID_BUCKETS 1024
#define QUIC_MAX_PKT 1500          /* a CONNECTION_CLOSE packet */
#define QUIC_RX_SLOT 65536         /* one datagram, or a GRO batch of them */
#define QUIC_RX_BATCH 16           /* slots per recvmmsg */
#define QUIC_RX_ROUNDS 8           /* recvmmsg calls per socket event */
#define QUIC_GSO_MAX 64            /* segments per GSO send (kernel limit) */
#define QUIC_TX_BUF 65000          /* one GSO send: below the UDP maximum */
#define QUIC_WRITE_THROUGH 65536   /* see quic_stream_write */
#define QUIC_TX_QUANTA 8           /* send quanta per quic_conn_write call */
#define QUIC_SOCKBUF (8 * 1024 * 1024)
#define QUIC_SR_RATE 5000.         /* stateless resets + VN per second... */
#define QUIC_SR_BURST 1000.        /* ...and their burst (a restarted node
                                      resets all its old links at once) */
#define QUIC_RETRY_TTL (10 * NGTCP2_SECONDS) /* a Retry token's lifetime */
#define QUIC_TOKEN_BUCKETS 256
/* cc "auto" (quic_conn.c, "Choosing the congestion controller"): the probe
 * is a full-size long-header packet of a reserved version (RFC 9000 15:
 * 0x?a?a?a?a), answered by a Version Negotiation; no answer in this long
 * counts as a far peer. */
#define QUIC_PROBE_VERSION 0x4a5a6a7au
#define QUIC_PROBE_WAIT 0.25
#define QUIC_PROBE_COPIES 2         /* sent back to back: one may be lost */
/* The client's first DCID tells the server which controller to use: its
 * first byte is one of these (any other value: no hint). */
#define QUIC_HINT_NONE 0
#define QUIC_HINT_NEAR 1            /* under lan_rtt: cubic */
#define QUIC_HINT_FAR 2             /* bbr */

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
  size_t cap;            /* grows (quic_stream_grow), never shrinks */
  uint8_t *old_buf;      /* the ring before the last growth, owned: ngtcp2
                            keeps pointers into the bytes it sent from it
                            until they are acknowledged... */
  uint64_t old_until;    /* ...up to this offset; then it is freed */
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

/* The local address a datagram came to, which its answers must come from:
 * an endpoint bound to a wildcard address would otherwise answer from the
 * address the kernel picks for the route, which a peer that dialled
 * another of the host's addresses does not recognise (IP_PKTINFO). */
typedef struct quic_src {
  int family;                        /* AF_INET, AF_INET6, 0: the kernel chooses */
  int ifindex;                       /* IPv6: the interface (link-local scopes) */
  struct in_addr a4;
  struct in6_addr a6;
} quic_src;

struct quic_conn {
  struct quic_conn *next;
  struct quic_conn *dirty_next;      /* endpoint's to-service list */
  int in_dirty;
  int depth;                         /* inside ngtcp2 or the service */
  ngtcp2_tstamp last_rx;             /* a packet of this connection came in */
  size_t tx_pending;                 /* bytes written since quic_conn_write */
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
  quic_src src;                      /* server side: the local address it came to */
  char peer[64];
  void *user;
  uint64_t pkts_sent, pkts_recv, bytes_sent, bytes_recv;
  uint64_t pkts_lost_closed;         /* lost packets of closed streams */
  ngtcp2_duration skew;              /* conn_now - now_ts: conn_probe_now */
  ngtcp2_cc_algo cc;                 /* in use (set with |conn|) */
  int probing;                       /* client, cc "auto": no |conn| yet,
                                        waiting for the probe's answer */
  ngtcp2_cid probe_scid;             /* ...the probe's SCID (routed here) */
  ngtcp2_tstamp probe_ts;            /* ...when it went out */
  double probe_rtt;                  /* seconds; -1 no answer, 0 none */
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
    char buf[CMSG_SPACE(sizeof(int)) + CMSG_SPACE(QUIC_PKTINFO_MAX)];
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
  ngtcp2_cc_algo cc;                 /* fixed, or what "auto" falls back to */
  int cc_auto;                       /* cc "auto": chosen per connection */
  quic_callbacks cb;
  void *ud;
  quic_conn *conns;                  /* owned list */
  quic_conn *dirty;                  /* to service (not owned) */
  int writing;                       /* a quic_conn_write is on the stack */
  cid_entry *cids[QUIC_CID_BUCKETS]; /* owned entries */
  token_entry *tokens[QUIC_TOKEN_BUCKETS]; /* owned entries */
  int gso, gro;                      /* kernel features in use */
  int pktinfo;                       /* bound to a wildcard: answers name their source */
  quic_src rx_dst;                   /* where the datagram being read came to */
  uint8_t *rxbuf;                    /* owned, QUIC_RX_BATCH slots */
  uint8_t *txbuf;                    /* owned, QUIC_TX_BUF */
  quic_mmsg rxm[QUIC_RX_BATCH];
  struct mmsghdr rxh[QUIC_RX_BATCH];
  struct mmsghdr txh[QUIC_GSO_MAX];
  struct iovec txiov[QUIC_GSO_MAX];
  quic_rl rl_reply;                  /* stateless resets and VN */
  quic_rl rl_probe;                  /* VN answering cc "auto" probes */
  quic_rl rl_log;                    /* per-packet warnings */
  quic_endpoint_stats st;
};

static inline ngtcp2_tstamp now_ts(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * NGTCP2_SECONDS + (uint64_t)ts.tv_nsec;
}

/* conn_now is |c|'s clock, what ngtcp2 sees: ahead of now_ts once
 * conn_probe_now moved it. */
#define conn_now(c) (now_ts() + (c)->skew)

/* A warning that a peer can trigger per packet: at most one per second. */
#define ep_warn_rl(ep, ...)                                                  \
  do {                                                                       \
    if (quic_rl_take(&(ep)->rl_log, 1., 1.)) log_warn(MOD, __VA_ARGS__);     \
  } while (0)

/* quic.c */
void quic_addr_str(const struct sockaddr *sa, char *out, size_t len);
int quic_rl_take(quic_rl *rl, double rate, double burst);

/* quic_cid.c */
quic_conn *quic_cid_find(quic_endpoint *ep, const uint8_t *d, size_t n);
int quic_cid_add(quic_endpoint *ep, const ngtcp2_cid *cid, quic_conn *c);
void quic_cid_remove(quic_endpoint *ep, const ngtcp2_cid *cid);
void quic_cid_remove_conn(quic_endpoint *ep, quic_conn *c);
quic_conn *quic_token_find(quic_endpoint *ep, const uint8_t *t);
void quic_token_remove(quic_endpoint *ep, quic_conn *c, uint64_t seq,
                       int all);
int quic_token_add(quic_endpoint *ep, quic_conn *c, uint64_t seq,
                   const uint8_t *t);
void quic_cid_hint_set(ngtcp2_cid *cid, int hint);
int quic_cid_hint(const ngtcp2_cid *cid);
ngtcp2_cc_algo quic_cc_for_hint(int hint, ngtcp2_cc_algo fallback);
int quic_hint_for_rtt(double rtt, double lan_rtt);
const char *quic_cc_name(ngtcp2_cc_algo cc);

/* quic_conn.c */
void quic_conn_probe_answer(quic_conn *c);

/* quic_stream.c */
int quic_stream_pending(const quic_stream *s);
void quic_sendq_remove(quic_conn *c, quic_stream *s);
void quic_sendq_push(quic_conn *c, quic_stream *s);
void quic_sendq_restore(quic_conn *c, quic_stream *list);
void quic_evq_push(quic_conn *c, quic_stream *s);
void quic_stream_unlink(quic_conn *c, quic_stream *s);
quic_stream *quic_stream_new(quic_conn *c, int64_t id);
void quic_stream_free(quic_stream *s);
void quic_stream_shut_send(quic_conn *c, quic_stream *s);
int quic_stream_grow(quic_stream *s, size_t want, size_t bound);
size_t quic_stream_space(quic_stream *s, size_t len, size_t bound);
void quic_stream_acked(quic_stream *s, uint64_t ack_off);

/* quic_tls.c */
int quic_alpn_ok(quic_conn *c);
int quic_verify_cb(gnutls_session_t session);
int quic_tls_session_new(quic_conn *c);

/* quic_output.c */
/* The packets gathered in the endpoint's transmit buffer for one GSO
 * send: |off| bytes of |nrun| packets, all |gso| long but the last. */
typedef struct quic_gso_run {
  size_t off, gso, nrun;
} quic_gso_run;

/* A run to send now: |len| bytes from the transmit buffer's start in
 * |gso|-byte segments (none when |len| is 0); with |move|, the packet just
 * added is not among them and moves to the buffer's start once they are
 * sent. */
typedef struct quic_gso_out {
  size_t len, gso;
  int move;
} quic_gso_out;

/* quic_sched_next returns the stream of |c| whose turn it is to send (up to
 * its turn_end), NULL when none has data: the head of the send queue, once
 * streams with nothing pending left it and one whose turn is over went to
 * the tail. */
quic_stream *quic_sched_next(quic_conn *c);
/* quic_sched_sent counts |datalen| bytes of |s| put in a packet (< 0: none)
 * and sends |s| to the tail, or out of the queue, when its turn is over or
 * |more| (NGTCP2_ERR_WRITE_MORE: the next stream fills the packet). */
void quic_sched_sent(quic_conn *c, quic_stream *s, ngtcp2_ssize datalen,
                     int more);
/* quic_sched_set_aside takes |s|, blocked by flow control, out of the send
 * queue onto |*blocked| (for quic_sendq_restore when the write ends). */
void quic_sched_set_aside(quic_conn *c, quic_stream *s,
                          quic_stream **blocked);
/* quic_gso_room makes room for a packet of up to |maxpkt| bytes after the
 * run |r|: the run to send first if the buffer has not that room. */
quic_gso_out quic_gso_room(quic_gso_run *r, size_t maxpkt);
/* quic_gso_add counts a packet of |len| bytes written at the end of the run
 * |r| and returns the run to send, if that packet ended one. */
quic_gso_out quic_gso_add(quic_gso_run *r, size_t len);
size_t quic_ep_sendto(quic_endpoint *ep, const struct sockaddr *to,
                      socklen_t tolen, const quic_src *src, const uint8_t *data,
                      size_t len, size_t gso);
int quic_send_pkt(quic_conn *c, const uint8_t *data, size_t len);
int quic_conn_write(quic_conn *c);

/* quic_conn.c */
void quic_conn_kick(quic_conn *c);
void quic_conn_free(quic_conn *c);
quic_conn *quic_server_conn_new(quic_endpoint *ep, const ngtcp2_pkt_hd *hd,
                                const ngtcp2_cid *odcid,
                                const struct sockaddr *remote,
                                socklen_t remotelen);
void quic_conn_error(quic_conn *c, int rv);
void quic_conn_rearm(quic_conn *c);
void quic_conn_service(quic_conn *c);
void quic_conn_read(quic_conn *c, const struct sockaddr *from,
                    socklen_t fromlen, const uint8_t *data, size_t len);

#endif
