/* Fuzz target for the HTTP response reading of pull clients: the head
 * parser on the whole input, and the chunked decoder fed the input in two
 * splits; the payload handed on never exceeds the input and is the same
 * however the input is split. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "httpresp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct acc {
  uint8_t buf[65536];
  size_t n;
} acc_t;

static int take(void *arg, const uint8_t *d, size_t n) {
  acc_t *a = arg;
  if (a->n + n > sizeof(a->buf)) abort();
  memcpy(a->buf + a->n, d, n);
  a->n += n;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static acc_t whole, split;
  int status, chunked;
  if (size > sizeof(whole.buf)) return 0;
  if (httpresp_head((const char *)data, size, &status, &chunked) == 0 &&
      (status < 0 || status > 999))
    abort();
  httpresp_chunked_t c1, c2;
  const char *why = NULL;
  whole.n = split.n = 0;
  httpresp_chunked_init(&c1);
  int r1 = httpresp_chunked_feed(&c1, data, size, take, &whole, &why);
  if (r1 < 0 && why == NULL) abort();
  size_t cut = size ? data[0] % (size + 1) : 0;
  httpresp_chunked_init(&c2);
  int r2 = httpresp_chunked_feed(&c2, data, cut, take, &split, &why);
  if (r2 == 0 && !c2.done) r2 = httpresp_chunked_feed(&c2, data + cut, size - cut, take, &split, &why);
  if ((r1 < 0) != (r2 < 0) || c1.done != c2.done) abort();
  if (r1 == 0 && (whole.n != split.n || memcmp(whole.buf, split.buf, whole.n) != 0)) abort();
  if (whole.n > size) abort();
  return 0;
}
