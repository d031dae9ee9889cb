/* FLV: the file header, tag headers for hub frames, and a bounded
 * incremental tag parser for FLV files and HTTP-FLV streams. */
#ifndef CASCADE_FLV_H
#define CASCADE_FLV_H

#include <stddef.h>
#include <stdint.h>

#include "hub.h"

#define FLV_HEADER_LEN 9        /* "FLV", version, flags, data offset */
#define FLV_TAG_HEADER_LEN 11   /* type, size, timestamp, stream id */
#define FLV_PREV_SIZE_LEN 4

#define FLV_FLAG_AUDIO 0x04
#define FLV_FLAG_VIDEO 0x01

/* Errors of flv_parse. */
#define FLV_EHEADER (-1)        /* not an FLV file header */
#define FLV_ETOOBIG (-2)        /* a tag larger than max_tag */
#define FLV_ENOMEM (-3)

/* flv_header writes the 9-byte file header with |flags| (FLV_FLAG_*)
 * followed by PreviousTagSize0 = 0: 13 bytes. */
void flv_header(uint8_t out[FLV_HEADER_LEN + FLV_PREV_SIZE_LEN], uint8_t flags);

/* flv_tag_header writes the 11-byte tag header of a tag of |type|, body
 * length |len| and timestamp |ts| (extended byte included). */
void flv_tag_header(uint8_t out[FLV_TAG_HEADER_LEN], uint8_t type, uint32_t len, uint32_t ts);

/* flv_frame_header writes the tag header of |f| with timestamp |ts|. */
void flv_frame_header(uint8_t out[FLV_TAG_HEADER_LEN], const hub_frame_t *f, uint32_t ts);

/* flv_put_u32 writes |v| big-endian (a PreviousTagSize field). */
void flv_put_u32(uint8_t out[4], uint32_t v);

typedef struct flv_parser {
  int state;
  int err;                      /* the FLV_E* that stopped it */
  int expect_header;
  uint8_t hdr[16];              /* the file or tag header being read */
  size_t got;                   /* bytes of hdr or of the body read so far */
  uint32_t max_tag;             /* bigger tags are refused; HUB_FRAME_MAX after init */
  uint32_t skip;                /* bytes still to skip (header padding, unknown tags) */
  uint32_t last_tag_size;       /* 11 + body of the previous tag, to check PreviousTagSize */
  hub_frame_t *frame;           /* the tag being read, owned */
  uint8_t flags;                /* the file header's audio/video flags */
  uint64_t tags;                /* tags returned */
  uint64_t skipped;             /* tags of unknown type skipped */
  uint64_t prev_size_mismatch;  /* PreviousTagSize fields that did not match (tolerated) */
} flv_parser_t;

/* flv_parser_init prepares |p|; with |expect_header| the input starts with
 * the 9-byte file header (a file, an HTTP-FLV body), else with a
 * PreviousTagSize field followed by tags. */
void flv_parser_init(flv_parser_t *p, int expect_header);

/* flv_parser_free releases a partly read tag. */
void flv_parser_free(flv_parser_t *p);

/* flv_parse consumes bytes of |data| and returns how many (>= 0), stopping
 * after a complete tag, which it hands in *out (the caller owns that
 * reference; keyframe/seq_header set); else *out is NULL. Feed the rest
 * again. A negative FLV_E* on bad input; the parser is then unusable. */
long flv_parse(flv_parser_t *p, const uint8_t *data, size_t len, hub_frame_t **out);

/* flv_strerror names an FLV_E* code. */
const char *flv_strerror(int err);

/* --- which kinds a stream carries, for the file header's flags ---
 *
 * Players trust the header: flags 5 on an audio-only or video-only stream
 * make ffprobe, VLC and flv.js/mpegts.js wait for the kind that never
 * comes. A sender cannot know the kinds from the first byte, so it holds the
 * header until this sniffer, fed the frames in order, decides. It decides
 * at once when both kinds were seen, or when the onMetaData hints
 * (hasVideo/hasAudio, else videocodecid/audiocodecid) name the kinds and
 * each named kind was seen; else when FLV_KINDS_WINDOW_MS of media time
 * passed since the first coded (non sequence header) frame, or after
 * FLV_KINDS_MAX_FRAMES frames or FLV_KINDS_MAX_BYTES bytes: then on what
 * was seen. Pure: no I/O, no allocation that outlives a call. */
#define FLV_KINDS_WINDOW_MS 1000
#define FLV_KINDS_MAX_FRAMES 128
#define FLV_KINDS_MAX_BYTES (4u * 1024 * 1024)
#define FLV_KINDS_MAX_META (64 * 1024) /* longer metadata is not read */

typedef struct flv_kinds {
  uint8_t seen;          /* FLV_FLAG_* of the audio/video frames fed */
  uint8_t meta;          /* FLV_FLAG_* the last onMetaData names; 0: it named none */
  uint8_t flags;         /* the decision, 0 until decided */
  uint8_t clock;         /* first_ts is set */
  uint32_t first_ts;     /* of the first coded audio/video frame */
  unsigned frames;
  size_t bytes;
} flv_kinds_t;

/* flv_kinds_init prepares |k| to watch a stream from its first frame. */
void flv_kinds_init(flv_kinds_t *k);

/* flv_kinds_feed takes the next frame of the stream: its |type| (HUB_*),
 * |seq_header| flag, timestamp |ts| in ms and its body |data|/|len| (read
 * only for a script frame, the onMetaData). Returns the decided flags
 * (FLV_FLAG_* , never 0) once decided, 0 while not yet. */
uint8_t flv_kinds_feed(flv_kinds_t *k, uint8_t type, int seq_header, uint32_t ts,
                       const uint8_t *data, size_t len);

/* flv_kinds_finish decides now on what was fed (the stream ended or the
 * sender cannot hold more): the kinds seen, else those the metadata named,
 * else both. Returns the flags; once decided, the same flags again. */
uint8_t flv_kinds_finish(flv_kinds_t *k);

/* flv_kinds_meta reads the kinds an onMetaData script body names (FLV_FLAG_*,
 * 0 when it names none or is not onMetaData); reads at most
 * FLV_KINDS_MAX_META bytes. */
uint8_t flv_kinds_meta(const uint8_t *data, size_t len);

#endif
