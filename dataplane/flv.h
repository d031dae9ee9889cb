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

#endif
