/* Fuzz target for the chunk stream reader: the input is fed whole (audio
 * and video assembled in the reader's own buffers) and again in pieces of
 * varying size (audio and video assembled in caller buffers, as the server
 * does); both runs must agree on every message and on the result, every
 * caller buffer must come back exactly once, and command/data messages are
 * decoded as AMF the way the server does. A third run has a small bound
 * (as before publish) that the input's first byte lowers mid-way or not,
 * and a budget shared with a second reader: the reader never holds more
 * than its bound, the budget always has exactly what both readers hold,
 * every refusal is RTMP_EPENDING or RTMP_EBUDGET, and all of it comes back
 * at free. Small limits keep the run fast. */
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

static void run_bounded(const uint8_t *data, size_t size) {
  acc_t a = {0, 0, 0};
  rtmp_budget_t bud = {0, 8192 + (size ? data[0] % 64 : 0) * 1024};
  rtmp_reader_t r, other;
  rtmp_reader_init(&r, 64 << 10, 64 << 10);
  rtmp_reader_init(&other, 64 << 10, 64 << 10);
  rtmp_reader_set_alloc(&r, av_alloc, av_release, &a);
  rtmp_reader_set_alloc(&other, av_alloc, av_release, &a);
  rtmp_reader_set_budget(&r, &bud);
  rtmp_reader_set_budget(&other, &bud);
  size_t bound = 4096 + (size > 1 ? data[1] % 32 : 0) * 1024;
  rtmp_reader_set_bound(&r, bound);
  size_t step = size ? 1 + data[0] % 13 : 1;
  int rc = 0;
  for (size_t off = 0; off < size && rc == 0; off += step) {
    size_t n = size - off < step ? size - off : step;
    /* the odd pieces go to the other reader, so both hold parts of the budget */
    int odd = (off / step) % 2 == 1 && size > 2 && (data[2] & 1);
    rc = rtmp_reader_feed(odd ? &other : &r, data + off, n, on_msg, &a);
    if (rc == RTMP_ECSID || rc == RTMP_EPROTO || rc == RTMP_ETOOBIG || rc == RTMP_ECHUNKSIZE) break;
    if (rc != 0 && rc != RTMP_EPENDING && rc != RTMP_EBUDGET) abort();
    if (r.buffered > bound || bud.used != r.buffered + other.buffered || bud.used > bud.max)
      abort();
    if (off > size / 2 && size > 3 && (data[3] & 1)) {
      /* back under the small bound, as after an unpublish */
      rtmp_reader_set_bound(&r, 4096);
      rtmp_reader_trim(&r);
      bound = r.buffered > 4096 ? r.buffered : 4096;
    }
  }
  rtmp_reader_free(&r);
  if (bud.used != other.buffered) abort();
  rtmp_reader_free(&other);
  if (bud.used != 0 || a.outstanding != 0) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  acc_t a = {0, 0, 0}, b = {0, 0, 0};
  int ra = run(data, size, size ? size : 1, 0, &a);
  int rb = run(data, size, size ? 1 + data[0] % 17 : 1, 1, &b);
  if (ra != rb || a.n != b.n || a.sum != b.sum || b.outstanding != 0) abort();
  run_bounded(data, size);
  return 0;
}
