/* Media relay over QUIC streams (docs/protocol.md, "Media relay over QUIC
 * (PUSH, PULL)"): a child pushes a stream up to its parent, or pulls one
 * down from it, one QUIC stream per media stream, the payload being FLV tags.
 * It owns no socket: it sits on the hub (dataplane/hub.h), takes PUSH and
 * PULL streams from a qsvc (dataplane/qsvc.h) as that table's handler, and
 * writes through quic.h's bounded stream buffers.
 *
 * The endpoint owner forwards the quic callbacks of the streams the relay
 * took over: first to qsvc (returns 1 when the stream is qsvc's), then
 * relay_on_data / relay_on_writable / relay_on_stream_close, and from
 * on_close both qsvc_on_conn_close and relay_on_conn_close. Streams this
 * side opened (relay_push, relay_pull) stay qsvc client calls and need no
 * forwarding. Everything runs on the loop thread.
 *
 * Memory: a sending stream holds at most one frame outside the hub (the one
 * being written); everything else waits in the hub's bounded subscriber
 * queue (relay_config.send_bound), which skips to the next keyframe when
 * the link is slower than the stream. */
#ifndef CASCADE_RELAY_H
#define CASCADE_RELAY_H

#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "hub.h"
#include "qsvc.h"
#include "quic.h"

/* Application error codes of PUSH and PULL streams: in Answer.code of a
 * refusal and in RESET_STREAM / STOP_SENDING. Codes of qsvc.h apply too
 * (0x11 bad header, 0x13 bad option, 0x15 out of memory). */
#define RELAY_ERR_BAD_PATH 0x20     /* not a stream path "app/name" */
#define RELAY_ERR_HOPS 0x21         /* PUSH: hops above the answerer's max_hops */
#define RELAY_ERR_LOOP 0x22         /* the origin (PUSH) or the puller (PULL) is the answerer */
#define RELAY_ERR_BUSY 0x23         /* PUSH: the path is published here by another origin;
                                       opener side: the path got a publisher before the
                                       pull was accepted */
#define RELAY_ERR_NOT_FOUND 0x24    /* PULL: no publisher within subscribe.waittimeout */
#define RELAY_ERR_UNPUBLISHED 0x25  /* PULL: the stream ended (publisher gone past
                                       delayclose); PUSH: the pusher's stream ended */
#define RELAY_ERR_SLOW 0x26         /* the link stayed behind the stream past slowtimeout */
#define RELAY_ERR_BAD_MEDIA 0x27    /* the payload is not FLV tags, or a tag is too large */
#define RELAY_ERR_STOPPED 0x28      /* the opener stopped (relay_push_stop / relay_pull_stop) */
#define RELAY_ERR_LIMIT 0x29        /* the hub's stream or subscriber limit */
#define RELAY_ERR_SHUTDOWN 0x2a     /* the hub is shutting down */
#define RELAY_ERR_REPLACED 0x2b     /* PUSH: a new push of the same path from the same origin
                                       took over (the pusher reconnected) */

#define RELAY_MAX_HOPS 8            /* relay_config.max_hops default */
#define RELAY_MAX_TAG (8u << 20)    /* relay_config.max_tag default */

typedef struct relay_config {
  int64_t node_id;       /* this node: origin of its LOCAL streams, loop check */
  uint32_t max_hops;     /* PUSH hops accepted (and sent), 0: RELAY_MAX_HOPS */
  size_t send_bound;     /* per sending stream: hub queue bound, bytes; 0: the hub's
                            subscribe.queuesize */
  uint32_t max_tag;      /* largest FLV tag body received, 0: RELAY_MAX_TAG */
} relay_config_t;

typedef struct relay relay_t;
typedef struct relay_stream relay_push_t;
typedef struct relay_stream relay_pull_t;

/* Why a push or pull ended. */
enum {
  RELAY_END_REFUSED = 1,   /* the peer refused: |code| and |reason| from its answer */
  RELAY_END_RESET,         /* the peer reset the stream with |code| */
  RELAY_END_CONN_CLOSED,   /* the connection went away */
  RELAY_END_FINISHED,      /* push: the local stream ended (code RELAY_ERR_UNPUBLISHED);
                              pull: the peer ended the stream (code 0) */
  RELAY_END_LOCAL          /* failed here: |code| is a RELAY_ERR_* or QSVC_ERR_NO_MEMORY */
};

typedef struct relay_end {
  int why;                 /* RELAY_END_* */
  uint32_t code;           /* application error code, 0 if none */
  const char *reason;      /* for a log line; never NULL */
} relay_end_t;

typedef struct relay_cb {
  /* A push: the peer accepted, sending starts. A pull: the peer delivered
   * its first tag and the path is published here (PULLED); a pull the peer
   * accepted but that delivers nothing is no stream here. Called from inside
   * the quic callbacks; may call relay_*_stop. May be NULL. */
  void (*on_start)(void *ud);
  /* The push or pull ended (not after relay_*_stop). Called from the loop,
   * not from inside another callback, so it may start a new push or pull
   * (with backoff: RELAY_END_REFUSED with RELAY_ERR_BUSY or RELAY_ERR_LOOP
   * will not change by retrying at once). The handle is freed when it
   * returns. */
  void (*on_end)(const relay_end_t *e, void *ud);
} relay_cb_t;

typedef struct relay_stats {
  uint64_t pushes_in, pulls_in;     /* streams accepted as the answerer */
  uint64_t pushes_out, pulls_out;   /* streams opened (relay_push / relay_pull) */
  uint64_t refused;                 /* PUSH / PULL refused here */
  uint64_t frames_in, frames_out;
  uint64_t bytes_in, bytes_out;     /* payload bytes */
  uint64_t resets;                  /* streams this side reset */
} relay_stats_t;

/* relay_new makes a relay for node |cfg->node_id| on |loop| feeding |hub|
 * and registers it as |q|'s PUSH and PULL handler. NULL when out of memory
 * or when |q| refuses the handlers. */
relay_t *relay_new(struct ev_loop *loop, hub_t *hub, qsvc *q, const relay_config_t *cfg);

/* relay_free releases every relay stream without callbacks and without
 * touching the connections: call it once they are gone (after
 * quic_endpoint_free or every on_close), before qsvc_free and hub_free.
 * Publications end (hub_unpublish), subscriptions are dropped. Accepts
 * NULL. */
void relay_free(relay_t *r);

/* relay_get_stats returns the totals of |r|. */
const relay_stats_t *relay_get_stats(const relay_t *r);

/* relay_push pushes live local stream |path| up |c|: it subscribes to it
 * (no merged write) and opens a PUSH stream carrying the stream's origin:
 * a LOCAL stream as origin node_id with hops 1, a PUSHED one with its own
 * origin and hops + 1. NULL with *err: -ENOENT (not live here), -ELOOP (a
 * PULLED stream is never pushed back up, or hops would pass max_hops),
 * -EAGAIN (the peer's stream limit), -ENOMEM, -EINVAL. */
relay_push_t *relay_push(relay_t *r, quic_conn *c, const char *path, const relay_cb_t *cb,
                         void *ud, int *err);

/* relay_push_stop ends |p| (reset RELAY_ERR_STOPPED, subscription
 * dropped); no on_end follows. Not after on_end. Accepts NULL. */
void relay_push_stop(relay_push_t *p);

/* relay_pull asks |c|'s peer (node |peer_node|, recorded as the origin) for
 * |path|; with the first tag, |path| is published here as PULLED and fed,
 * and a LOCAL or PUSHED publisher of it later displaces the pull (it ends
 * with RELAY_END_LOCAL, RELAY_ERR_BUSY). Relay subscriptions end as soon as
 * their stream's publisher leaves (hub_sub_set_follow), so a stream's end
 * travels the tree at once and each node's delayclose keeps its players. NULL
 * with *err: -EINVAL (bad path), -EBUSY (already published here), -ENOSPC
 * (the hub's stream limit), -EAGAIN, -ENOMEM. The peer waits up to its
 * subscribe.waittimeout for the stream, then resets with
 * RELAY_ERR_NOT_FOUND. */
relay_pull_t *relay_pull(relay_t *r, quic_conn *c, const char *path, int64_t peer_node,
                         const relay_cb_t *cb, void *ud, int *err);

/* relay_pull_as is relay_pull of the peer's |path| published here as
 * |local| (a pull rule may map live/x to m7s://other/y). */
relay_pull_t *relay_pull_as(relay_t *r, quic_conn *c, const char *path, const char *local,
                            int64_t peer_node, const relay_cb_t *cb, void *ud, int *err);

/* relay_pull_stop ends |p| (reset RELAY_ERR_STOPPED, the path is
 * unpublished: the hub's delayclose keeps its players); no on_end follows.
 * Not after on_end. Accepts NULL. */
void relay_pull_stop(relay_pull_t *p);

/* relay_on_data, relay_on_writable, relay_on_stream_close: the quic
 * callbacks of the same name for streams qsvc handed over. Return 1 when
 * |sid| of |c| is the relay's, else 0. */
int relay_on_data(relay_t *r, quic_conn *c, int64_t sid, const uint8_t *data, size_t len,
                  int fin);
int relay_on_writable(relay_t *r, quic_conn *c, int64_t sid);
int relay_on_stream_close(relay_t *r, quic_conn *c, int64_t sid, uint64_t app_code);
/* relay_on_stream_stop_sending: the quic callback on_stream_stop_sending;
 * a pull served to the peer drops its subscription at once. Returns 1
 * when |sid| of |c| is the relay's. */
int relay_on_stream_stop_sending(relay_t *r, quic_conn *c, int64_t sid);

/* relay_on_conn_close ends every stream the relay answered on |c| (pushed
 * paths are unpublished). The relay's own pushes and pulls end through
 * qsvc_on_conn_close with RELAY_END_CONN_CLOSED. Call it from quic's
 * on_close. */
void relay_on_conn_close(relay_t *r, quic_conn *c);

#endif
