/* A player's timeline: maps the timestamps of the frames a player receives
 * (those of the origin publisher, kept by the hub and by relays) to a
 * timeline of the player's own that starts at 0, as nginx-rtmp does with
 * "atc off". A new player gets the stream's cached metadata and sequence
 * headers stamped with the time they were published, long before the GOP
 * that follows; FLV readers such as ffmpeg take onMetaData for header
 * metadata only at timestamp 0 and otherwise open a data stream for it.
 *
 * Rules: the first media frame (audio or video, not a sequence header)
 * maps to 0; metadata and sequence headers go out at 0 before it and at the
 * current position (the largest timestamp sent) after it. Each track
 * (audio, video) follows its own input steps, in 32-bit arithmetic so that
 * a continuous stream crosses the wrap; a track's first frame is placed on
 * the other track's map, so their offset is kept whatever it is. A track
 * stepping back by more than TSMAP_MAX_BACK_MS or forward by more than
 * TSMAP_MAX_JUMP_MS (a publisher restart, another publisher) is placed on
 * the other track's map when that lands near the current position (no more
 * than TSMAP_MAX_BACK_MS behind — TSMAP_MAX_OFFSET_MS for a track's first
 * frame — nor TSMAP_MAX_JUMP_MS ahead): the other track jumped first.
 * Otherwise it re-anchors one frame after the current position (the track's
 * last step, at most TSMAP_MAX_STEP_MS, TSMAP_STEP_MS before it has one: a
 * millisecond would give two frames one time in a muxer that counts in
 * frames). No output is
 * negative, and per track media timestamps never decrease. Pure: no clock,
 * no allocation. */
#ifndef CASCADE_TSMAP_H
#define CASCADE_TSMAP_H

#include <stdint.h>

#define TSMAP_MAX_BACK_MS 1000    /* interleaving of audio and video, not a restart */
#define TSMAP_MAX_JUMP_MS 5000    /* a longer step forward is a discontinuity */
#define TSMAP_MAX_OFFSET_MS 10000 /* a track's first frame may lag the other by this */
#define TSMAP_STEP_MS 40          /* a frame at 25 fps: a re-anchor's step before one is seen */
#define TSMAP_MAX_STEP_MS 100     /* the longest step a re-anchor takes */

typedef struct tsmap {
  int started;                /* a media frame was mapped */
  int64_t cur;                /* the current position: the largest output so far */
  /* per track, audio [0] and video [1] */
  int seen[2];                /* the track had a media frame */
  uint32_t in[2];             /* its last input timestamp */
  int64_t raw[2];             /* its place on the timeline, before clamping */
  int64_t track[2];           /* its last output */
  uint32_t step[2];           /* its last step forward, at most TSMAP_MAX_STEP_MS (0: none yet) */
  uint64_t resets;            /* discontinuities re-anchored */
} tsmap_t;

/* tsmap_init starts an empty timeline (a zeroed tsmap_t is one too). */
void tsmap_init(tsmap_t *m);

/* tsmap_map gives the player's timestamp for a frame of |type| (HUB_AUDIO,
 * HUB_VIDEO, HUB_SCRIPT or other) with input timestamp |ts|; |header| is
 * set for sequence headers. Script data and other types count as headers. */
uint32_t tsmap_map(tsmap_t *m, uint8_t type, int header, uint32_t ts);

#endif
