/* The header that opens every QUIC stream between agents, and its answer:
 * a 2-byte big-endian length (1..STREAMHDR_MAX) then the protobuf
 * (proto/stream.proto). Decoding happens here only, bounded. */
#ifndef CASCADE_STREAMHDR_H
#define CASCADE_STREAMHDR_H

#include <stddef.h>
#include <stdint.h>

#define STREAMHDR_MAX 4096        /* framed message bytes */
#define STREAMHDR_PATH_MAX 1024
#define STREAMHDR_OPTIONS_MAX 32
#define STREAMHDR_VERSION 1

typedef enum {
  STREAM_ECHO = 1,
  STREAM_DISCARD = 2,
  STREAM_SOURCE = 3,
  STREAM_PUSH = 4,
  STREAM_PULL = 5,
  STREAM_HTTP = 6,
} stream_kind_t;

typedef struct {
  stream_kind_t kind;
  char path[STREAMHDR_PATH_MAX + 1];
  size_t noptions;
  char *option_keys[STREAMHDR_OPTIONS_MAX];    /* owned */
  char *option_values[STREAMHDR_OPTIONS_MAX];  /* owned */
} streamhdr_t;

/* streamhdr_parse reads one framed header from |buf|. Returns the bytes it
 * used (> 0) with |out| filled, 0 when more bytes are needed, or -1 with a
 * reason in |err| (bad length, does not decode, wrong version, unknown
 * kind, path too long or with control characters, too many options). */
long streamhdr_parse(const uint8_t *buf, size_t len, streamhdr_t *out, char *err, size_t errlen);

/* streamhdr_free releases the options of |h|; accepts a zeroed header. */
void streamhdr_free(streamhdr_t *h);

/* streamhdr_encode frames a header into |out|. Returns its length or -1
 * when it does not fit |outlen| or the bounds. */
long streamhdr_encode(stream_kind_t kind, const char *path, uint8_t *out, size_t outlen);

/* streamhdr_encode_opts is streamhdr_encode with |nopts| options (keys up
 * to 64 bytes, values up to 256, no control characters). */
long streamhdr_encode_opts(stream_kind_t kind, const char *path, size_t nopts,
                           const char *const *keys, const char *const *values, uint8_t *out,
                           size_t outlen);

/* streamhdr_answer_encode / streamhdr_answer_parse: the answer, framed the
 * same way; a refusal must carry a non-zero code. parse returns like
 * streamhdr_parse; |reason| gets at most |reasonlen| - 1 bytes. */
long streamhdr_answer_encode(int accepted, uint32_t code, const char *reason, uint8_t *out,
                             size_t outlen);
long streamhdr_answer_parse(const uint8_t *buf, size_t len, int *accepted, uint32_t *code,
                            char *reason, size_t reasonlen, char *err, size_t errlen);

#endif
