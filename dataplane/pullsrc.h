/* Pull sources outside the cascade: a stream read from an external RTMP
 * server (rtmp://host[:port]/app/name, played like ffmpeg does) or an
 * HTTP-FLV URL (http://host[:port]/path, plain or chunked body), published
 * into the hub under a local path. This is what an on-demand pull rule
 * whose template is not m7s:// starts (docs/media.md, "Pull sources").
 *
 * One pull source owns one TCP connection on the caller's libev loop. Host
 * names are resolved off the loop (a short-lived thread per lookup); the
 * loop never blocks. The local path is claimed as a publisher only once the
 * upstream accepted (RTMP NetStream.Play.Start, HTTP 200) and sent its first
 * frame, so a failed or empty pull never shows up as a stream; a local or
 * pushed publisher of the path displaces it (hub_stream_set_preempt); when
 * it ends, the hub's delay-close keeps the players for a retry. */
#ifndef CASCADE_PULLSRC_H
#define CASCADE_PULLSRC_H

#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "hub.h"

#define PULLSRC_URL_MAX 2048

typedef struct pullsrc pullsrc_t;

typedef struct pullsrc_callbacks {
  /* The upstream delivered its first frame and the local path is published. */
  void (*on_live)(pullsrc_t *p, void *ud);
  /* The pull ended (|why| says how, for a log line); |p| is freed when
   * this returns. Not called after pullsrc_stop. */
  void (*on_end)(pullsrc_t *p, void *ud, const char *why);
} pullsrc_callbacks_t;

typedef struct pullsrc_config {
  double connect_timeout;   /* seconds from start to the upstream's acceptance (0: 10) */
  double idle_timeout;      /* seconds without a byte from the upstream (0: 10) */
  uint32_t max_msg;         /* largest media message or FLV tag (0: 16 MiB) */
} pullsrc_config_t;

/* pullsrc_url_check tells whether |url| is a pull source this module can
 * start: 0, or -1 with the reason in |err| (scheme, host, port, path). */
int pullsrc_url_check(const char *url, char *err, size_t errlen);

/* pullsrc_start begins pulling |url| into |path| of |hub|. NULL with |err|
 * when the URL is invalid or out of memory; otherwise exactly one of
 * on_end or pullsrc_stop ends it. |cfg| may be NULL. */
pullsrc_t *pullsrc_start(struct ev_loop *loop, hub_t *hub, const char *url, const char *path,
                         const pullsrc_config_t *cfg, const pullsrc_callbacks_t *cb, void *ud,
                         char *err, size_t errlen);

/* pullsrc_stop ends the pull without calling on_end (the path is
 * unpublished) and frees |p|. Accepts NULL. Not from this pull's own
 * on_end, and not from a hub callback (a subscriber's on_end can run inside
 * this pull's hub_push): defer it to the loop. */
void pullsrc_stop(pullsrc_t *p);

/* pullsrc_frames is the count of frames published so far. */
uint64_t pullsrc_frames(const pullsrc_t *p);

#endif
