/* Fuzz target for the chunk stream reader: the input is fed whole (audio
 * and video assembled in the reader's own buffers) and again in pieces of
 * varying size (audio and video assembled in caller buffers, as the server
 * does); both runs must agree on every message and on the result, every
 * caller buffer must come back exactly once, and command/data messages are
 * decoded as AMF the way the server does. Small limits keep the run fast. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "amf.h"
#include "rtmp_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
  uint64_t sum;
  unsigned n;
  long outstanding;     /* caller buffers not yet given back */
} acc_t;

static uint8_t *av_alloc(void *arg, uint8_t type, uint32_t ts, uint32_t len, void **owner) {
  acc_t *a = arg;
  (void)type;
  (void)ts;
  uint8_t *b = malloc(len);
  *owner = b;
  if (b) a->outstanding++;
  return b;
}

static void av_release(void *arg, void *owner) {
  acc_t *a = arg;
  a->outstanding--;
  free(owner);
}

static int on_msg(void *arg, const rtmp_msg_t *m) {
  acc_t *a = arg;
  uint64_t h = m->csid * 31u + m->type * 7u + m->stream_id * 3u + m->ts + m->len;
  for (uint32_t i = 0; i < m->len; i++) h = h * 131 + m->data[i];
  a->sum = a->sum * 1000003u + h;
  a->n++;
  if (m->owned) {
    if (m->data != m->owned) abort();
    av_release(a, m->owned);
  }
  if (m->type == RTMP_MSG_COMMAND_AMF0 || m->type == RTMP_MSG_DATA_AMF0) {
    amf_limits_t lim = {AMF_MAX_DEPTH, 4096, m->len};
    amf_value_t *v = NULL;
    if (amf_decode_list(m->data, m->len, &lim, &v) == 0) amf_free(v);
  }
  return 0;
}

static int run(const uint8_t *data, size_t size, size_t step, int caller_bufs, acc_t *a) {
  rtmp_reader_t r;
  rtmp_reader_init(&r, 64 << 10, 64 << 10);
  /* Above what 64 chunk streams can hold: the two runs account buffered
   * bytes differently (caller buffers are counted whole at the start), so
   * this limit must not decide; the per-message limits do. */
  r.max_buffered = (size_t)RTMP_MAX_CHUNK_STREAMS * (128 << 10);
  if (caller_bufs) rtmp_reader_set_alloc(&r, av_alloc, av_release, a);
  int rc = 0;
  for (size_t off = 0; off < size && rc == 0; off += step) {
    size_t n = size - off < step ? size - off : step;
    rc = rtmp_reader_feed(&r, data + off, n, on_msg, a);
  }
  uint32_t seq;
  (void)rtmp_reader_ack_due(&r, &seq);
  rtmp_reader_free(&r);
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  acc_t a = {0, 0, 0}, b = {0, 0, 0};
  int ra = run(data, size, size ? size : 1, 0, &a);
  int rb = run(data, size, size ? 1 + data[0] % 17 : 1, 1, &b);
  if (ra != rb || a.n != b.n || a.sum != b.sum || b.outstanding != 0) abort();
  return 0;
}
