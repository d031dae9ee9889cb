/* Fuzz target for the chunk stream reader: the input is fed whole and
 * again in pieces of varying size; both runs must agree on every message
 * and on the result, and command/data messages are decoded as AMF the way
 * the server does. Small limits keep the run fast. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "amf.h"
#include "rtmp_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
  uint64_t sum;
  unsigned n;
} acc_t;

static int on_msg(void *arg, const rtmp_msg_t *m) {
  acc_t *a = arg;
  uint64_t h = m->csid * 31u + m->type * 7u + m->stream_id * 3u + m->ts + m->len;
  for (uint32_t i = 0; i < m->len; i++) h = h * 131 + m->data[i];
  a->sum = a->sum * 1000003u + h;
  a->n++;
  if (m->type == RTMP_MSG_COMMAND_AMF0 || m->type == RTMP_MSG_DATA_AMF0) {
    amf_limits_t lim = {AMF_MAX_DEPTH, 4096, m->len};
    amf_value_t *v = NULL;
    if (amf_decode_list(m->data, m->len, &lim, &v) == 0) amf_free(v);
  }
  return 0;
}

static int run(const uint8_t *data, size_t size, size_t step, acc_t *a) {
  rtmp_reader_t r;
  rtmp_reader_init(&r, 1 << 20, 64 << 10);
  r.max_buffered = 2 << 20;
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
  acc_t a = {0, 0}, b = {0, 0};
  int ra = run(data, size, size ? size : 1, &a);
  int rb = run(data, size, size ? 1 + data[0] % 17 : 1, &b);
  if (ra != rb || a.n != b.n || a.sum != b.sum) abort();
  return 0;
}
