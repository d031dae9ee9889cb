/* QUIC endpoint of the data plane (ngtcp2 + GnuTLS on the caller's libev
 * loop): one UDP socket carrying both roles, connections routed by
 * connection ID, mutual TLS 1.3 with ALPN "cascade/1", bidirectional streams
 * with a bounded send buffer (write returns what it accepted, on_writable
 * says when to try again), graceful close with an application error code.
 *
 * This is the only seam between the transport and the layers above: nothing
 * outside quic.c includes ngtcp2.h. Every callback runs on the loop thread.
 * A connection stays valid until its on_close callback returns; the caller
 * must not use it afterwards. The caller runs gnutls_global_init(). */
#ifndef CASCADE_QUIC_H
#define CASCADE_QUIC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <ev.h>

#define QUIC_ALPN "cascade/1"

typedef struct quic_endpoint quic_endpoint;
typedef struct quic_conn quic_conn;

/* How a connection ended, as seen by on_close. */
typedef struct quic_close_info {
  int by_peer;         /* 1: the peer sent CONNECTION_CLOSE */
  int is_app;          /* 1: |code| is an application error code */
  int idle;            /* 1: idle timeout (or handshake timeout) */
  int established;     /* 1: the handshake had completed (and was verified) */
  uint64_t code;       /* application or QUIC transport error code */
  int stateless_reset; /* 1: the peer answered with a stateless reset (it
                          lost the connection's state, e.g. it restarted);
                          by_peer is 1 and code 0 */
} quic_close_info;

/* The endpoint's callbacks; any of them may be NULL (not called). */
typedef struct quic_callbacks {
  /* Server role: a peer completed the handshake (its certificate verified
   * against the CA). Call quic_conn_close here to refuse it. */
  void (*on_accept)(quic_conn *c, void *ud);
  /* Client role: the handshake is confirmed by the server. */
  void (*on_connected)(quic_conn *c, void *ud);
  /* The peer opened stream |sid|. */
  void (*on_stream_open)(quic_conn *c, int64_t sid, void *ud);
  /* Bytes of stream |sid| in order; |fin| marks the end of the peer's
   * direction (may come with |len| 0). */
  void (*on_data)(quic_conn *c, int64_t sid, const uint8_t *data,
                  size_t len, int fin, void *ud);
  /* A write on |sid| that was cut short may now be retried. */
  void (*on_writable)(quic_conn *c, int64_t sid, void *ud);
  /* Stream |sid| is gone (both directions done, or reset: |app_code|;
   * after the peer's STOP_SENDING, the peer's code). */
  void (*on_stream_close)(quic_conn *c, int64_t sid, uint64_t app_code,
                          void *ud);
  /* The connection ends; |c| is freed when this returns. Called for every
   * client connection and for server connections after on_accept. */
  void (*on_close)(quic_conn *c, const quic_close_info *info, void *ud);
  /* The peer raised its stream limit: a quic_stream_open that returned
   * -EAGAIN may succeed now. Optional (NULL: not told). */
  void (*on_streams_available)(quic_conn *c, void *ud);
  /* The peer sent STOP_SENDING on |sid|: our direction is over (ngtcp2
   * answers with a reset). Buffered bytes are dropped, quic_stream_write
   * returns -EPIPE from now on, and no on_writable comes for |sid|;
   * on_stream_close follows, with the peer's code, once the peer's
   * direction is done too. Told once per stream, in the loop iteration
   * after the next send of the stream's bytes: at once for bytes already
   * queued, else after the next quic_stream_write (ngtcp2 1.11 reports
   * the frame itself to no callback). Optional (NULL: the caller learns it
   * from -EPIPE). */
  void (*on_stream_stop_sending)(quic_conn *c, int64_t sid, void *ud);
} quic_callbacks;

typedef struct quic_config {
  const char *cert_pem;       /* this node's certificate chain (PEM) */
  const char *key_pem;        /* its private key (PEM) */
  const char *ca_pem;         /* CA(s) the peer's certificate must chain to */
  const char *priority;       /* GnuTLS priority string, NULL: default */
  int accept;                 /* 1: take connections (server role) */
  double idle_timeout;        /* seconds */
  double keepalive;           /* seconds between PINGs when idle, 0: off */
  double handshake_timeout;   /* seconds */
  uint64_t max_stream_data;   /* initial per-stream receive window, bytes */
  uint64_t max_data;          /* initial connection receive window, bytes */
  uint64_t max_streams_bidi;  /* streams the peer may open at once */
  size_t stream_sndbuf;       /* per-stream send buffer, bytes: what a
                                 stream may hold written but not yet
                                 acknowledged, at first (see
                                 max_stream_sndbuf) */
  /* Added with the fast paths (issue 5); quic_config_default sets them. */
  const char *cc;             /* congestion control: "cubic" (default),
                                 "reno", "bbr" (ngtcp2's BBR, v2 and later;
                                 "bbr2" names it too), or "auto": cubic on
                                 a path whose round trip is under lan_rtt,
                                 bbr otherwise (see quic_conn.c, "Choosing
                                 the congestion controller"); NULL: cubic */
  double max_probe_interval;  /* seconds, 0: off (default 1). While
                                 streams are open, PING a silent peer this
                                 often; a packet from the peer after our
                                 data went unacknowledged this long fires
                                 the backed-off probe timer at once, so a
                                 link recovers within about this long after
                                 a path outage ends */
  size_t retry_threshold;     /* server: with this many handshakes in
                                 progress, new clients must first prove
                                 their address with a Retry (default 64;
                                 0: always; SIZE_MAX: never) */
  size_t max_udp_payload;     /* largest UDP payload sent, bytes: packets
                                 start at 1,200 and path MTU discovery
                                 raises them up to this; 0 (auto): 1,452,
                                 and QUIC_MAX_UDP_PAYLOAD to a loopback
                                 peer (the loopback MTU is 64 KiB); never
                                 above the local route's MTU */
  const char *alpn;           /* NULL: QUIC_ALPN. Both ends must agree */
  int v6only;                 /* IPv6 endpoint: 1 refuses IPv4 (default 0:
                                 [::] also takes and dials IPv4, as
                                 v4-mapped addresses) */
  /* Added with ngtcp2 1.x; quic_config_default sets them. */
  uint64_t max_stream_window; /* receive window auto-tuning: a stream's
                                 window grows from max_stream_data up to
                                 this as RTT and rate ask (default 16 MiB;
                                 not above max_stream_data: no growth) */
  uint64_t max_window;        /* the same for the connection's window,
                                 from max_data (default 64 MiB) */
  double lan_rtt;             /* cc "auto": seconds; a client measures the
                                 round trip before it dials (one Version
                                 Negotiation exchange) and below this uses
                                 cubic, at or above it (or with no answer
                                 within QUIC_PROBE_WAIT) bbr; its peer
                                 follows the choice (default 2 ms; 0: bbr
                                 always) */
  /* Added with send buffer auto-tuning; quic_config_default sets it. */
  size_t max_stream_sndbuf;   /* a stream's send buffer grows from
                                 stream_sndbuf up to this while the path
                                 keeps it in flight: about two congestion
                                 windows (default 16 MiB; not above
                                 stream_sndbuf: fixed) */
} quic_config;

#define QUIC_MIN_UDP_PAYLOAD 1200
#define QUIC_MAX_UDP_PAYLOAD 16000

/* quic_config_default fills |cfg| with defaults (no credentials). */
void quic_config_default(quic_config *cfg);

/* quic_endpoint_new binds a UDP socket to |addr| (port 0: ephemeral) on
 * |loop| and loads the credentials of |cfg|; the PEM strings are copied.
 * |ud| is passed to every callback. Returns NULL on failure (logged). */
quic_endpoint *quic_endpoint_new(struct ev_loop *loop, const quic_config *cfg,
                                 const struct sockaddr *addr,
                                 socklen_t addrlen, const quic_callbacks *cb,
                                 void *ud);

/* quic_endpoint_free drops every connection at once (no callbacks, no close
 * sent) and releases the endpoint. Accepts NULL. Not from a callback. */
void quic_endpoint_free(quic_endpoint *ep);

/* quic_endpoint_local_addr writes the bound address (with the real port). */
int quic_endpoint_local_addr(const quic_endpoint *ep,
                             struct sockaddr_storage *ss, socklen_t *len);

/* quic_connect starts a client connection to |peer| (same family as the
 * endpoint, or IPv4 on a dual-stack IPv6 endpoint). The handshake runs on the loop; on_connected or on_close
 * follows. Returns NULL on failure. */
quic_conn *quic_connect(quic_endpoint *ep, const struct sockaddr *peer,
                        socklen_t peerlen);

/* Endpoint counters, for tests, benchmarks and status. */
typedef struct quic_endpoint_stats {
  uint64_t conns;              /* connections alive now */
  uint64_t handshakes;         /* server handshakes in progress now */
  uint64_t accepted;           /* server connections created */
  uint64_t retries_sent;       /* Retry packets (address validation) */
  uint64_t retry_token_bad;    /* Initials with an invalid Retry token */
  uint64_t resets_sent;        /* stateless resets for unknown CIDs */
  uint64_t vn_sent;            /* Version Negotiation packets */
  uint64_t dropped;            /* datagrams dropped before any connection:
                                  undecodable, unknown CID, rate-limited */
  uint64_t rx_dgrams, tx_dgrams;   /* UDP datagrams (GRO/GSO segments) */
  uint64_t rx_syscalls, tx_syscalls;
  uint64_t tx_eagain;          /* datagrams dropped: socket buffer full */
  int gso, gro;                /* 1: UDP GSO / GRO in use */
} quic_endpoint_stats;

/* quic_endpoint_get_stats fills |st| for |ep|. */
void quic_endpoint_get_stats(const quic_endpoint *ep, quic_endpoint_stats *st);

/* quic_conn_close closes |c| gracefully with application error |app_code|
 * (sent in CONNECTION_CLOSE); on_close follows after the closing period.
 * Safe from inside callbacks; later calls are ignored. */
void quic_conn_close(quic_conn *c, uint64_t app_code);

/* quic_conn_is_server tells the role of |c|. */
int quic_conn_is_server(const quic_conn *c);

/* quic_conn_peer_name is "addr:port" of the peer, for log lines. */
const char *quic_conn_peer_name(const quic_conn *c);

/* quic_conn_peer_cert returns certificate |idx| (0: the peer's own) of the
 * chain the peer presented, DER, valid while |c| lives; -1 if none. */
int quic_conn_peer_cert(const quic_conn *c, size_t idx, const uint8_t **der,
                        size_t *len);

/* quic_conn_cipher names the negotiated AEAD ("AES-128-GCM"), or NULL. */
const char *quic_conn_cipher(const quic_conn *c);

/* Link figures for status and the controller. */
typedef struct quic_conn_stats {
  double srtt_ms;            /* smoothed RTT, 0 before the first sample */
  double min_rtt_ms;
  uint64_t cwnd;             /* congestion window, bytes */
  uint64_t bytes_in_flight;
  uint64_t pkts_sent, pkts_recv;   /* UDP datagrams */
  uint64_t bytes_sent, bytes_recv; /* UDP payload bytes */
  uint64_t pkts_lost;        /* packets with stream data declared lost
                                (spurious losses included; ngtcp2 1.11
                                counts per stream and not in bytes) */
  size_t max_udp_payload;    /* packet size on the path now: grows from
                                1,200 by path MTU discovery */
  uint64_t bytes_unsent;     /* buffered in streams, not yet sent */
  const char *cc;            /* congestion controller in use: "cubic",
                                "reno", "bbr"; NULL before it is chosen */
  double probe_rtt_ms;       /* cc "auto", client: the round trip measured
                                before dialing; -1: no answer, 0: none */
} quic_conn_stats;

/* quic_conn_get_stats fills |st| for |c|. */
void quic_conn_get_stats(const quic_conn *c, quic_conn_stats *st);

/* quic_conn_set_user_data / quic_conn_get_user_data: a caller's pointer. */
void quic_conn_set_user_data(quic_conn *c, void *p);
void *quic_conn_get_user_data(const quic_conn *c);

/* quic_stream_open opens a bidirectional stream; 0 with |*sid| set,
 * -EAGAIN when the peer's stream limit is reached, other negative errors. */
int quic_stream_open(quic_conn *c, int64_t *sid);

/* quic_stream_write copies up to |len| bytes into the send buffer of |sid|
 * and returns how many it took (0 when full: wait for on_writable); |fin|
 * ends our direction once all |len| bytes are taken. Negative on error.
 * The buffer starts at stream_sndbuf and grows, up to max_stream_sndbuf,
 * when a write does not fit while the stream's bytes are in flight rather
 * than waiting (the path takes more than the buffer holds per RTT).
 * Data goes out from the loop, or at once when 64 KiB or more have been
 * written to the connection outside its own callbacks (write-through). */
ssize_t quic_stream_write(quic_conn *c, int64_t sid, const void *data,
                          size_t len, int fin);

/* quic_stream_reset abandons both directions of |sid| with |app_code|. */
int quic_stream_reset(quic_conn *c, int64_t sid, uint64_t app_code);

/* quic_stream_stop_sending asks the peer to stop sending on |sid|
 * (STOP_SENDING with |app_code|); no more on_data comes for |sid|. Our own
 * direction is untouched. The peer answers with a reset, and on_stream_close
 * follows once our direction is done too. */
int quic_stream_stop_sending(quic_conn *c, int64_t sid, uint64_t app_code);

#endif
