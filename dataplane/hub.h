/* The stream hub: streams keyed by path "app/name", one publisher and many
 * subscribers each, refcounted frames shared by every subscriber, a GOP
 * cache so a new subscriber starts on a keyframe, and bounded
 * per-subscriber queues. Single-threaded on the caller's libev loop; it
 * knows nothing of sockets: protocols attach through this interface. */
#ifndef CASCADE_HUB_H
#define CASCADE_HUB_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "connreg.h"

/* Frame types: the FLV tag types, which RTMP message types share. */
#define HUB_AUDIO 8
#define HUB_VIDEO 9
#define HUB_SCRIPT 18

/* A media frame: one FLV tag body (= RTMP message payload), immutable once
 * pushed, shared by reference count. */
typedef struct hub_frame {
  unsigned refs;
  uint8_t type;          /* HUB_AUDIO, HUB_VIDEO, HUB_SCRIPT */
  uint8_t keyframe;      /* video keyframe */
  uint8_t seq_header;    /* AVC/HEVC decoder configuration or AAC AudioSpecificConfig */
  uint32_t ts;           /* milliseconds */
  size_t len;
  uint8_t data[];        /* the tag body */
} hub_frame_t;

/* hub_frame_new copies |len| bytes into a new frame (refs = 1) and reads
 * keyframe/seq_header from the FLV audio/video tag header. NULL on OOM or
 * len > HUB_FRAME_MAX. */
#define HUB_FRAME_MAX (16 * 1024 * 1024)
hub_frame_t *hub_frame_new(uint8_t type, uint32_t ts, const uint8_t *data, size_t len);

/* hub_frame_alloc makes a frame of |len| uninitialised bytes (refs = 1) for
 * a parser to fill in place; call hub_frame_classify once it is filled.
 * NULL on OOM or len > HUB_FRAME_MAX. */
hub_frame_t *hub_frame_alloc(uint8_t type, uint32_t ts, size_t len);

/* hub_frame_classify sets keyframe/seq_header from the tag body: legacy FLV
 * video (codec 7 AVC, 12 HEVC), Enhanced RTMP video (IsExHeader; PacketType
 * 0 = sequence start, 1/3 = coded frames), AAC audio. */
void hub_frame_classify(hub_frame_t *f);
hub_frame_t *hub_frame_ref(hub_frame_t *f);
void hub_frame_unref(hub_frame_t *f);

/* A zero queue_bytes/queue_s/slow_s takes the default (8 MiB, 10 s, 30 s).
 * queue_bytes also bounds the GOP cache: a longer GOP is not cached. */
typedef struct hub_config {
  double delay_close_s;      /* publish.delayclosetimeout: keep a stream after its publisher left */
  double wait_s;             /* subscribe.waittimeout: how long a subscriber waits for a stream */
  size_t queue_bytes;        /* per subscriber: beyond it, skip to the next keyframe */
  double queue_s;            /* per subscriber: the same bound in stream time */
  double slow_s;             /* behind for longer than this: disconnected */
  double merge_s;            /* write policy: the longest a busy loop holds a started
                                subscriber's notification (0: told after every frame) */
  unsigned max_streams;      /* 0 = unlimited */
  unsigned max_subscribers;  /* per stream, 0 = unlimited */
} hub_config_t;

typedef struct hub hub_t;
typedef struct hub_stream hub_stream_t;
typedef struct hub_sub hub_sub_t;

/* Why a subscription ends. */
enum {
  HUB_END_UNPUBLISHED = 1,   /* the publisher left and did not come back in time */
  HUB_END_NOT_FOUND,         /* no publisher within wait_s */
  HUB_END_SLOW,              /* stayed behind past slow_s */
  HUB_END_LIMIT,             /* max_subscribers reached */
  HUB_END_SHUTDOWN,
  HUB_END_KICKED             /* ended by the operator (hub_sub_kick, hub_drop) */
};

/* Errors of hub_publish. */
#define HUB_EBUSY (-16)      /* the path has a live publisher */
#define HUB_ELIMIT (-24)     /* max_streams reached */
#define HUB_EINVAL (-22)     /* bad path */

/* Where a stream's publisher gets its media, so the cascade can tell which
 * streams to push up: never a PULLED one (it came from above), a PUSHED one
 * further up with hops + 1, a LOCAL one with hops 1. */
typedef enum hub_origin_kind {
  HUB_ORIGIN_LOCAL = 0,      /* RTMP or another ingest on this node */
  HUB_ORIGIN_PUSHED,         /* pushed up by a child */
  HUB_ORIGIN_PULLED          /* pulled from the parent or an external source */
} hub_origin_kind_t;

typedef struct hub_origin {
  hub_origin_kind_t kind;
  int64_t node;              /* the node where the stream entered the cascade (0: unknown) */
  uint32_t hops;             /* links crossed from that node (0 for LOCAL) */
} hub_origin_t;

/* Stream life events for the cascade (autopush, on-demand pull, pull
 * linger). Each may be NULL. They never fire from hub_free. */
typedef struct hub_observer {
  /* |path| got a publisher (hub_publish / hub_publish_ex), also when a
   * publisher takes over a stream kept by delay_close_s: treat it as "live
   * now, from |o|", not as a transition. Called before hub_publish returns;
   * it may subscribe to |path|. */
  void (*on_publish)(hub_t *h, const char *path, const hub_origin_t *o, void *arg);
  /* |path| stopped being published: delay_close_s after hub_unpublish when
   * no publisher came back (its subscribers were just ended), or at once
   * from hub_unpublish when the stream had no subscriber to keep. A
   * publisher that comes back within delay_close_s causes no
   * on_unpublish (only a new on_publish). */
  void (*on_unpublish)(hub_t *h, const char *path, void *arg);
  /* A subscriber starts waiting for |path|, which has no publisher (neither
   * live nor kept by delay_close_s): once per path until it is published or
   * every waiter has gone, not once per subscriber. Also when delay_close_s
   * expires with subscribers waiting. Called from inside hub_subscribe (or
   * the delay-close timer); it may call hub_publish. The on-demand pull
   * trigger: the pull must publish within wait_s. */
  void (*on_missing)(hub_t *h, const char *path, void *arg);
  /* The last subscriber of a live stream left (deferred to the loop, and
   * only if the stream is still live with no subscriber then). For pull
   * linger. */
  void (*on_idle)(hub_t *h, const char *path, void *arg);
} hub_observer_t;

typedef struct hub_sub_ops {
  /* Frames are queued: drain them with hub_sub_next (from this callback or
   * later, e.g. when the socket is writable). Level-triggered. With merge_s
   * 0, or before |s| got its first media frame, or for an immediate |s|:
   * after every frame queued, from inside hub_push. Otherwise (the write
   * policy, docs/media.md): once at the end of the loop iteration in which
   * frames were queued while the loop is idle; while it is busy, small
   * frames are held until a larger one or merge_s, and near saturation
   * every frame up to merge_s. Also once from the loop just after
   * hub_subscribe when the GOP cache was queued. It may call
   * hub_unsubscribe(s). */
  void (*on_frames)(hub_sub_t *s, void *arg);
  /* The subscription ended (HUB_END_*); |s| is freed after this returns. */
  void (*on_end)(hub_sub_t *s, void *arg, int why);
} hub_sub_ops_t;

hub_t *hub_new(struct ev_loop *loop, const hub_config_t *cfg);

/* hub_drain ends every subscription now (HUB_END_SHUTDOWN, through
 * on_end, so each protocol ends its player cleanly) and refuses new ones
 * from then on: the node shuts down. Publishers stay until they leave. */
void hub_drain(hub_t *h);

/* hub_free ends every subscription (HUB_END_SHUTDOWN) and frees all. */
void hub_free(hub_t *h);

/* hub_path_ok tells whether |path| is a valid stream path: "app/name",
 * 1..1024 bytes, no control characters, no empty segment, no "." or "..". */
int hub_path_ok(const char *path);

/* hub_set_observer installs |o| (copied; NULL removes it) with |arg|. */
void hub_set_observer(hub_t *h, const hub_observer_t *o, void *arg);

/* --- publishers --- */

/* hub_publish claims |path| for a publisher; a stream kept by
 * delay_close_s is taken over with its subscribers. NULL with *err. */
hub_stream_t *hub_publish(hub_t *h, const char *path, int *err);

/* hub_publish_ex is hub_publish with the publisher's origin (NULL: LOCAL,
 * node 0, hops 0). */
hub_stream_t *hub_publish_ex(hub_t *h, const char *path, const hub_origin_t *o, int *err);

/* hub_publish_check tells whether hub_publish(|path|) would succeed now:
 * 0, HUB_EINVAL, HUB_EBUSY or HUB_ELIMIT (out of memory aside). */
int hub_publish_check(hub_t *h, const char *path);

/* hub_publish_check_ex is hub_publish_check for a publisher of origin
 * |kind|: a PULLED one never displaces a live publisher, a LOCAL or PUSHED
 * one displaces a PULLED publisher that allows it (hub_stream_set_preempt). */
int hub_publish_check_ex(hub_t *h, const char *path, hub_origin_kind_t kind);

/* hub_stream_set_preempt lets the PULLED publisher of |s| be displaced: a
 * LOCAL or PUSHED publisher of the same path takes the stream over, with
 * its subscribers (they switch on the newcomer's first keyframe). |fn| is
 * called from inside that hub_publish_ex, before the takeover; from then on
 * the displaced publisher must not use |s| (no hub_push, no hub_unpublish).
 * A publication copied from elsewhere gives way to the stream's own
 * source: a stale or competing pulled copy never refuses a publisher. */
void hub_stream_set_preempt(hub_stream_t *s, void (*fn)(hub_stream_t *s, void *arg), void *arg);

/* hub_stream_origin is the origin |s| was published with. */
const hub_origin_t *hub_stream_origin(const hub_stream_t *s);

/* hub_origin_of copies the origin of live stream |path| into |out|: 0, or
 * -1 when |path| has no publisher now. */
int hub_origin_of(hub_t *h, const char *path, hub_origin_t *out);

/* hub_push hands a frame to every subscriber and the GOP cache; takes one
 * reference of |f|. A script frame starting with "@setDataFrame" is passed
 * on without that string (plain onMetaData). */
void hub_push(hub_stream_t *s, hub_frame_t *f);

/* hub_unpublish releases the path; the stream and its subscribers stay
 * delay_close_s for a publisher to come back. */
void hub_unpublish(hub_stream_t *s);

/* --- subscribers --- */

/* hub_subscribe attaches to |path|: at once when it is live (the cached
 * metadata, sequence headers and GOP first), else after waiting up to
 * wait_s for a publisher. Never NULL unless out of memory; refusals come
 * through on_end. */
hub_sub_t *hub_subscribe(hub_t *h, const char *path, const hub_sub_ops_t *ops, void *arg);

/* hub_sub_next takes the next queued frame (the caller owns that
 * reference), or NULL when the queue is empty. */
hub_frame_t *hub_sub_next(hub_sub_t *s);

/* hub_sub_queued is the bytes queued for |s|. */
size_t hub_sub_queued(const hub_sub_t *s);

/* hub_sub_dropped is the frames dropped for |s| (skips to a keyframe). */
uint64_t hub_sub_dropped(const hub_sub_t *s);

/* What a subscriber is, for the per-stream counts of hub_stream_info_t
 * (kept as subscribers come and go, so reading them costs no walk). */
enum {
  HUB_SUB_OTHER = 0,           /* relays, pushes, internal readers */
  HUB_SUB_PLAYER_RTMP = 1,     /* an RTMP player receiving the stream */
  HUB_SUB_PLAYER_HTTPFLV = 2,  /* an HTTP-FLV player receiving the stream */
  HUB_SUB_KINDS = 3
};

/* hub_sub_set_kind labels |s| (HUB_SUB_*; HUB_SUB_OTHER until set) in
 * its stream's counts; other values are ignored. Only while |s| is attached
 * to a stream (waiting or active) does it count. */
void hub_sub_set_kind(hub_sub_t *s, unsigned kind);

/* hub_sub_set_immediate exempts |s| from the write policy (hub_config.merge_s):
 * it is told after every frame, for relays whose next hop merges anyway. */
void hub_sub_set_immediate(hub_sub_t *s, int on);

/* hub_sub_set_queue_bytes gives |s| its own queue bound instead of
 * hub_config.queue_bytes (0: back to the hub's): a relay link may be
 * allowed more, or less, than a player. The GOP burst already queued at
 * hub_subscribe is not re-checked. */
void hub_sub_set_queue_bytes(hub_sub_t *s, size_t bytes);

/* hub_sub_set_follow makes |s| end (HUB_END_UNPUBLISHED, from the loop) as
 * soon as the stream's publisher leaves, instead of being kept for
 * delay_close_s: for relays, so that the next node learns at once and every
 * copy's delay runs from the same moment. A publisher back before the end
 * is delivered cancels it. */
void hub_sub_set_follow(hub_sub_t *s, int on);

/* hub_sub_path is the path |s| is attached to, NULL if refused. */
const char *hub_sub_path(const hub_sub_t *s);

/* hub_unsubscribe detaches (no on_end); accepts NULL. A no-op on a
 * subscription inside its own on_end. */
void hub_unsubscribe(hub_sub_t *s);

/* hub_path_counts gives the subscribers of |path| (|subs|, waiting ones
 * included) and those waiting for a publisher (|waiting|); either may be
 * NULL. For the cascade: retry an on-demand pull while someone waits, end a
 * linger when a player came back. Both 0 for an unknown path. */
void hub_path_counts(hub_t *h, const char *path, unsigned *subs, unsigned *waiting);

/* hub_path_players is the RTMP and HTTP-FLV players of |path| (waiting
 * ones included; relays not): what subscribe.maxplayers bounds. */
unsigned hub_path_players(hub_t *h, const char *path);

/* --- management, for the node's API (docs/api.md, "Managing streams") --- */

/* hub_connreg is the hub's connection registry (connreg.h), which the
 * protocols on this hub register their publishers and players in. */
connreg_t *hub_connreg(hub_t *h);

/* hub_sub_kick ends |s| with HUB_END_KICKED (through on_end: each
 * protocol ends its player as it ends a stream); deferred to the loop
 * when it runs inside a walk of the stream's subscribers. Accepts NULL. */
void hub_sub_kick(hub_sub_t *s);

/* hub_drop ends stream |path| here: every subscriber ends now
 * (HUB_END_KICKED), a publisher that may be displaced (a pull,
 * hub_stream_set_preempt) is displaced, and a stream with no live
 * publisher left is released at once, without delay_close_s. A live
 * publisher stays: its owner unpublishes it (the stream then goes at once,
 * having no subscriber). 0, or -1 when |path| is neither published nor
 * kept. Not from inside a hub callback. */
int hub_drop(hub_t *h, const char *path);

/* hub_has_stream tells whether |path| is published or kept by
 * delay_close_s (what /api/stream/list shows). */
int hub_has_stream(hub_t *h, const char *path);

/* --- introspection, for /api/stream/list and /metrics --- */

typedef struct hub_stream_info {
  const char *path;
  int live;                  /* has a publisher now */
  hub_origin_t origin;       /* of the current (or last) publisher */
  unsigned subscribers;
  unsigned by_kind[HUB_SUB_KINDS]; /* subscribers per HUB_SUB_* label */
  double start_time;         /* ev_now when published (wall clock) */
  uint64_t bytes_in;
  uint64_t frames_in;
  /* from the sequence headers and metadata when known */
  const char *video_codec;   /* "h264", "h265" or NULL */
  unsigned width, height;
  double fps;
  uint64_t video_bps, audio_bps;
  const char *audio_codec;   /* "aac" or NULL */
  unsigned sample_rate, channels;
} hub_stream_info_t;

/* hub_foreach calls |fn| for each stream that has a publisher or is kept
 * by delay_close_s (not for paths only waited on), in path order. */
void hub_foreach(hub_t *h, void (*fn)(const hub_stream_info_t *info, void *arg), void *arg);

typedef struct hub_stats {
  unsigned streams, publishers, subscribers;
  uint64_t bytes_in, bytes_out_queued, frames_dropped, slow_disconnects;
  size_t queued_bytes;       /* all subscribers' queues */
} hub_stats_t;

void hub_get_stats(hub_t *h, hub_stats_t *out);

#endif
