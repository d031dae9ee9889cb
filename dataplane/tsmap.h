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
 * current position (the largest timestamp sent) after it; steps between
 * media frames pass as they are, interleaving included, unless they are a
 * discontinuity (back by more than TSMAP_MAX_BACK_MS, forward by more than
 * TSMAP_MAX_JUMP_MS: a publisher restart, another publisher, a wrap that is
 * not a plain continuation), which re-anchors just after the current
 * position. No output is negative, none is more than TSMAP_MAX_BACK_MS
 * behind the current position, and per track (audio, video) media
 * timestamps never decrease. Pure: no clock, no allocation. */
#ifndef CASCADE_TSMAP_H
#define CASCADE_TSMAP_H

#include <stdint.h>

#define TSMAP_MAX_BACK_MS 1000    /* interleaving of audio and video, not a restart */
#define TSMAP_MAX_JUMP_MS 5000    /* a longer step forward is a discontinuity */

typedef struct tsmap {
  int started;                /* a media frame was mapped */
  uint32_t prev_in;           /* input timestamp of the last media frame */
  int64_t prev_out;           /* its place on the player's timeline, before clamping */
  int64_t cur;                /* the current position: the largest output so far */
  int64_t track[2];           /* last media output of audio [0] and video [1] */
  uint64_t resets;            /* discontinuities re-anchored */
} tsmap_t;

/* tsmap_init starts an empty timeline (a zeroed tsmap_t is one too). */
void tsmap_init(tsmap_t *m);

/* tsmap_map gives the player's timestamp for a frame of |type| (HUB_AUDIO,
 * HUB_VIDEO, HUB_SCRIPT or other) with input timestamp |ts|; |header| is
 * set for sequence headers. Script data and other types count as headers. */
uint32_t tsmap_map(tsmap_t *m, uint8_t type, int header, uint32_t ts);

#endif
