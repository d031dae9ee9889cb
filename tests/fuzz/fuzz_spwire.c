/* Fuzz target for the control gate's SP framing (controller/spwire.c): any
 * bytes, fed whole and again in pieces whose sizes the input picks, give
 * the same messages and the same verdict, each message within the bound
 * with a request id whose high bit is set, and nothing leaks. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "spwire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_BODY 4096
#define MAX_MSGS 4096

typedef struct {
  uint32_t id[MAX_MSGS];
  size_t len[MAX_MSGS];
  uint64_t sum[MAX_MSGS];
  size_t n;
  int verdict;
} run_t;

/* run feeds |data| in pieces of |step| bytes (0: whole) and notes what came out. */
static void run(const uint8_t *data, size_t size, size_t step, run_t *r) {
  spwire_rx_t rx;
  size_t off = 0;
  spwire_rx_init(&rx, MAX_BODY);
  /* Odd first byte: read as the agent does (a REP peer's header, replies). */
  if (size && (data[0] & 1)) spwire_rx_expect(&rx, SPWIRE_PROTO_REP);
  r->n = 0;
  r->verdict = SPWIRE_MORE;
  while (off < size) {
    size_t end = step && size - off > step ? off + step : size;
    while (off < end) {
      size_t used, bl;
      uint32_t id;
      uint8_t *body = NULL;
      int rc = spwire_rx_feed(&rx, data + off, end - off, &used, &id, &body, &bl);
      if (used > end - off) abort();
      off += used;
      if (rc < 0) {
        if (body) abort();
        r->verdict = rc;
        goto out;
      }
      if (rc == SPWIRE_MORE) {
        if (off != end) abort();
        continue;
      }
      if (body == NULL || bl > MAX_BODY || !(id & SPWIRE_ID_BIT)) abort();
      uint64_t s = 0;
      for (size_t i = 0; i < bl; i++) s = s * 31 + body[i];
      free(body);
      if (r->n < MAX_MSGS) {
        r->id[r->n] = id;
        r->len[r->n] = bl;
        r->sum[r->n] = s;
      }
      r->n++;
    }
  }
out:
  spwire_rx_free(&rx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static run_t a, b;
  size_t step = size ? (size_t)(data[size - 1] % 13) + 1 : 1;
  /* The header is the input's start, with a good one forced when the
   * first byte is even, so that most inputs reach the messages. */
  uint8_t *buf = malloc(size + 8);
  if (buf == NULL) abort();
  size_t n = size;
  if (size && (data[0] & 1) == 0) {
    spwire_header(buf, SPWIRE_PROTO_REQ);
    memcpy(buf + 8, data + 1, size - 1);
    n = size + 7;
  } else if (size) {
    memcpy(buf, data, size);
  }
  run(buf, n, 0, &a);
  run(buf, n, step, &b);
  if (a.n != b.n || a.verdict != b.verdict) abort();
  for (size_t i = 0; i < a.n && i < MAX_MSGS; i++)
    if (a.id[i] != b.id[i] || a.len[i] != b.len[i] || a.sum[i] != b.sum[i]) abort();
  /* What the framer writes, the parser reads back. */
  if (a.n) {
    size_t bl = size < MAX_BODY ? size : MAX_BODY;
    uint8_t *w = malloc(8 + spwire_frame_len(bl));
    if (w == NULL) abort();
    spwire_header(w, SPWIRE_PROTO_REQ);
    spwire_frame(w + 8, a.id[0], data, bl);
    spwire_rx_t rx;
    size_t used, got;
    uint32_t id;
    uint8_t *body;
    spwire_rx_init(&rx, MAX_BODY);
    if (spwire_rx_feed(&rx, w, 8 + spwire_frame_len(bl), &used, &id, &body, &got) !=
            SPWIRE_MESSAGE ||
        id != a.id[0] || got != bl || memcmp(body, data, bl) != 0)
      abort();
    free(body);
    spwire_rx_free(&rx);
    free(w);
  }
  free(buf);
  return 0;
}
