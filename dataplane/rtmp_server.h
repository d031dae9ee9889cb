/* The RTMP server: accepts RTMP connections on a listening socket, on the
 * caller's libev loop, and attaches publishers and players to the stream
 * hub. Stream path = app + "/" + stream name without its query string
 * ("rtmp://host:1935/live/cam1" is "live/cam1").
 *
 * Chunk streams used toward clients: 2 protocol control, 3 commands and
 * onStatus, 4 audio, 5 data (metadata, |RtmpSampleAccess), 6 video. */
#ifndef CASCADE_RTMP_SERVER_H
#define CASCADE_RTMP_SERVER_H

#include <ev.h>
#include <stdint.h>

#include "admit.h"
#include "hub.h"

typedef struct rtmp_server_config {
  unsigned max_conns;          /* per listener; beyond it a connection is closed at once (0 = 1000) */
  uint32_t chunk_size;         /* outgoing chunk size, announced after connect (0 = 4096) */
  uint32_t max_msg;            /* audio/video message limit (0 = 16 MiB) */
  uint32_t max_data_msg;       /* every other message type, e.g. @setDataFrame (0 = 1 MiB) */
  uint32_t window_ack;         /* Window Acknowledgement Size / peer bandwidth (0 = 2500000) */
  double handshake_timeout;    /* seconds to complete the handshake (0 = 10) */
  double idle_timeout;         /* seconds without input for a non-player (0 = 60) */
  size_t max_out;              /* queued control output per connection (0 = 64 KiB) */
  size_t max_pending;          /* bytes a connection may hold in partial messages (all its
                                  chunk streams) until a publish is accepted: also players and
                                  connections not yet identified (0 = 64 KiB) */
  size_t ingest_budget;        /* bytes all connections together may hold in partial
                                  messages (0 = 256 MiB) */
} rtmp_server_config_t;

typedef struct rtmp_server rtmp_server_t;

typedef struct rtmp_server_stats {
  uint64_t accepted, refused;   /* connections */
  unsigned active, publishers, players;
  uint64_t handshakes_simple, handshakes_digest;
  uint64_t protocol_errors, timeouts;
  uint64_t unknown_msgs, ignored_cmds;
  uint64_t bytes_in, bytes_out, frames_in, frames_out;
  uint64_t pending_closes;      /* closed over max_pending (or a publisher's bound) */
  uint64_t budget_closes;       /* closed because the ingest budget was used up */
  size_t ingest_held;           /* bytes held in partial messages now (all connections) */
  uint64_t admit_refused;       /* publishes and plays admission refused */
} rtmp_server_stats_t;

/* rtmp_server_new serves |listen_fd| (bound and listening; made
 * non-blocking; the server closes it on free). |cfg| NULL: defaults.
 * NULL on failure, |listen_fd| then left open for the caller. */
rtmp_server_t *rtmp_server_new(struct ev_loop *loop, hub_t *hub, int listen_fd,
                               const rtmp_server_config_t *cfg);

/* rtmp_server_set_admit makes every publish and play ask |ops| first (see
 * admit.h); NULL ops: everything allowed. Set it before clients come; |ops|
 * and |ud| must outlive the server. */
void rtmp_server_set_admit(rtmp_server_t *srv, const dp_admit_ops *ops, void *ud);

/* rtmp_server_free closes every connection and the listener; accepts NULL.
 * Call it before hub_free. */
void rtmp_server_free(rtmp_server_t *srv);

/* rtmp_server_drain stops accepting (the listening socket is closed) and
 * closes every connection that is not a player: publishers, handshakes,
 * idle sessions. Players end when the hub ends their subscriptions
 * (hub_drain: NetStream.Play.Stop, then Stream EOF). */
void rtmp_server_drain(rtmp_server_t *srv);

/* rtmp_server_get_stats fills |out| with the counters, for /metrics. */
void rtmp_server_get_stats(const rtmp_server_t *srv, rtmp_server_stats_t *out);

#endif
