/* Fuzz target for the FLV tag parser (dataplane/flv.c): any input parses
 * or is refused without a memory error or a leak, and feeding it in small
 * pieces gives exactly the tags (and the error) of feeding it at once. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "flv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct result {
  uint64_t tags, hash;
  long err;
  uint64_t mismatch, skipped;
} result_t;

static void run(const uint8_t *data, size_t size, size_t piece, int header, result_t *r) {
  flv_parser_t p;
  flv_parser_init(&p, header);
  p.max_tag = 1 << 20; /* keeps runs fast; the bound itself is what is tested */
  memset(r, 0, sizeof(*r));
  r->hash = 1469598103934665603ull;
  size_t off = 0;
  while (off < size) {
    size_t n = size - off < piece ? size - off : piece;
    hub_frame_t *f = NULL;
    long k = flv_parse(&p, data + off, n, &f);
    if (k < 0) {
      r->err = k;
      if (f != NULL) abort();
      break;
    }
    if ((size_t)k > n || (k == 0 && f == NULL)) abort(); /* progress or a tag */
    off += (size_t)k;
    if (f) {
      if (f->len > HUB_FRAME_MAX || f->refs != 1) abort();
      r->tags++;
      uint64_t h = r->hash;
      h = (h ^ f->type) * 1099511628211ull;
      h = (h ^ f->ts) * 1099511628211ull;
      h = (h ^ f->len) * 1099511628211ull;
      h = (h ^ (uint64_t)(f->keyframe * 2 + f->seq_header)) * 1099511628211ull;
      for (size_t i = 0; i < f->len; i++) h = (h ^ f->data[i]) * 1099511628211ull;
      r->hash = h;
      hub_frame_unref(f);
    }
  }
  r->mismatch = p.prev_size_mismatch;
  r->skipped = p.skipped;
  if (p.tags != r->tags) abort();
  flv_parser_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* Inputs that start "FLV" are files; others are tag streams. */
  int header = size >= 3 && memcmp(data, "FLV", 3) == 0;
  result_t whole, pieces;
  run(data, size, size ? size : 1, header, &whole);
  run(data, size, 1 + (size ? data[size - 1] % 7 : 0), header, &pieces);
  if (whole.tags != pieces.tags || whole.hash != pieces.hash || whole.err != pieces.err ||
      whole.mismatch != pieces.mismatch || whole.skipped != pieces.skipped)
    abort();
  return 0;
}
