/* Fuzz target for controller/feed.c: Last-Event-ID, since= and wait=
 * values, and rows pushed into the ring and read back (ids, kind and data
 * taken from the input). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "feed.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *buf = malloc(size + 1);
  if (buf == NULL) return 0;
  memcpy(buf, data, size);
  buf[size] = '\0';
  int64_t v = -1;
  if (feed_parse_uint(buf, FEED_WAIT_MAX, &v) == 0 && (v < 0 || v > FEED_WAIT_MAX))
    __builtin_trap();
  if (feed_parse_uint(buf, INT64_MAX, &v) == 0 && v < 0) __builtin_trap();

  /* The input as rows: a byte of id step, then kind and data up to the
   * next ';'. */
  feed_ring_t r;
  if (feed_ring_init(&r, 8) != 0) {
    free(buf);
    return 0;
  }
  int64_t id = 0;
  size_t i = 0;
  while (i < size) {
    id += (int64_t)(data[i++] % 4); /* 0: a repeat, refused */
    size_t j = i;
    while (j < size && data[j] != ';') j++;
    size_t klen = j - i < 20 ? j - i : 20;
    char kind[21];
    memcpy(kind, data + i, klen);
    kind[klen] = '\0';
    int64_t before = r.last;
    int rv = feed_ring_push(&r, id, kind, (const char *)data + i, j - i);
    if (rv == 0 && r.last != id) __builtin_trap();
    if (rv != 0 && r.last != before) __builtin_trap();
    i = j + 1;
  }
  /* Every reader position gives events in ascending order. */
  for (int64_t after = r.base - 1; after <= r.last + 1; after++) {
    const feed_event_t *ev;
    int64_t at = after;
    int rv, n = 0;
    while ((rv = feed_ring_next(&r, at, &ev)) == 1) {
      if (ev->id <= at || n++ > 8) __builtin_trap();
      char text[FEED_DATA_MAX + 128];
      size_t need = feed_sse_format(ev, text, sizeof(text));
      if (need >= sizeof(text) || strchr(text, '\0') != text + need) __builtin_trap();
      at = ev->id;
    }
    if (rv == -1 && after >= r.base && after <= r.last) __builtin_trap();
  }
  feed_ring_free(&r);

  feed_gap_t g = {.cursor = 0};
  int64_t ids[64];
  size_t n = 0;
  int64_t last = 0;
  for (size_t k = 0; k < size && n < 64; k++) {
    last += 1 + data[k] % 3;
    ids[n++] = last;
  }
  size_t took = feed_gap_take(&g, ids, n, 0);
  if (took > n || (took > 0 && g.cursor != ids[took - 1])) __builtin_trap();
  free(buf);
  return 0;
}
