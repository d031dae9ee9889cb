/* Unit tests for dataplane/flv.c: header and tag header encoding, the
 * incremental parser on an ffmpeg-made file (whole and byte by byte), and
 * its refusals: bad header, oversized tag; tolerance of a wrong
 * PreviousTagSize and of unknown tag types. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "flv.h"

typedef struct parsed {
  unsigned n, video, audio, script, keys, vseq, aseq;
  long err;
  uint32_t last_ts;
  uint8_t first_types[8];
} parsed_t;

/* parse_all feeds |d| in pieces of |piece| bytes and tallies the tags. */
static void parse_all(flv_parser_t *p, const uint8_t *d, size_t n, size_t piece, parsed_t *r) {
  memset(r, 0, sizeof(*r));
  size_t off = 0;
  while (off < n) {
    size_t k = n - off < piece ? n - off : piece;
    hub_frame_t *f;
    long used = flv_parse(p, d + off, k, &f);
    if (used < 0) {
      r->err = used;
      return;
    }
    assert_true((size_t)used <= k);
    off += (size_t)used;
    if (f == NULL) {
      assert_int_equal(used, k); /* no tag: it took everything */
      continue;
    }
    if (r->n < 8) r->first_types[r->n] = f->type;
    r->n++;
    r->video += f->type == HUB_VIDEO;
    r->audio += f->type == HUB_AUDIO;
    r->script += f->type == HUB_SCRIPT;
    r->keys += f->keyframe;
    r->vseq += f->type == HUB_VIDEO && f->seq_header;
    r->aseq += f->type == HUB_AUDIO && f->seq_header;
    r->last_ts = f->ts;
    hub_frame_unref(f);
  }
}

static uint8_t *read_corpus(const char *name, size_t *len) {
  char path[1024];
  const char *file = __FILE__, *slash = strrchr(file, '/');
  int dl = slash ? (int)(slash - file) : 1;
  snprintf(path, sizeof(path), "%.*s/../fuzz/corpus/fuzz_flv/%s", dl, slash ? file : ".", name);
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  uint8_t *buf = malloc(1 << 16);
  assert_non_null(buf);
  *len = fread(buf, 1, 1 << 16, f);
  fclose(f);
  return buf;
}

static void test_encode(void **state) {
  (void)state;
  uint8_t h[13];
  flv_header(h, FLV_FLAG_AUDIO | FLV_FLAG_VIDEO);
  assert_memory_equal(h, "FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00", 13);
  uint8_t t[11];
  flv_tag_header(t, HUB_VIDEO, 0x0a0b0c, 0x12345678);
  assert_memory_equal(t, "\x09\x0a\x0b\x0c\x34\x56\x78\x12\x00\x00\x00", 11);
  hub_frame_t *f = hub_frame_new(HUB_AUDIO, 5, (const uint8_t *)"\xaf\x01zz", 4);
  flv_frame_header(t, f, 1000);
  assert_memory_equal(t, "\x08\x00\x00\x04\x00\x03\xe8\x00\x00\x00\x00", 11);
  hub_frame_unref(f);
  uint8_t u[4];
  flv_put_u32(u, 0x01020304);
  assert_memory_equal(u, "\x01\x02\x03\x04", 4);
}

/* Frames written with the encoders come back from the parser unchanged. */
static void test_roundtrip(void **state) {
  (void)state;
  uint8_t buf[4096];
  size_t n = 0;
  flv_header(buf, FLV_FLAG_VIDEO);
  n = 13;
  const uint8_t bodies[3][6] = {{0x17, 0, 0, 0, 0, 1}, {0x17, 1, 0, 0, 0, 9}, {0x27, 1, 0, 0, 0, 8}};
  const uint32_t ts[3] = {0, 0x01000000, 0x01000028};
  for (int i = 0; i < 3; i++) {
    flv_tag_header(buf + n, HUB_VIDEO, 6, ts[i]);
    memcpy(buf + n + 11, bodies[i], 6);
    flv_put_u32(buf + n + 17, 17);
    n += 21;
  }
  flv_tag_header(buf + n, HUB_SCRIPT, 0, 7); /* an empty tag */
  flv_put_u32(buf + n + 11, 11);
  n += 15;
  flv_parser_t p;
  flv_parser_init(&p, 1);
  size_t off = 0;
  for (int i = 0; i < 4; i++) {
    hub_frame_t *f = NULL;
    while (f == NULL) {
      long k = flv_parse(&p, buf + off, n - off, &f);
      assert_true(k >= 0);
      off += (size_t)k;
    }
    if (i < 3) {
      assert_int_equal(f->type, HUB_VIDEO);
      assert_int_equal(f->ts, ts[i]);
      assert_int_equal(f->len, 6);
      assert_memory_equal(f->data, bodies[i], 6);
      assert_int_equal(f->seq_header, i == 0);
      assert_int_equal(f->keyframe, i == 1);
    } else {
      assert_int_equal(f->type, HUB_SCRIPT);
      assert_int_equal(f->len, 0);
    }
    hub_frame_unref(f);
  }
  hub_frame_t *none;
  assert_int_equal(flv_parse(&p, buf + off, n - off, &none), 4); /* the last PreviousTagSize */
  assert_null(none);
  off += 4;
  assert_int_equal(off, n);
  assert_int_equal(p.flags, FLV_FLAG_VIDEO);
  assert_int_equal(p.prev_size_mismatch, 0);
  assert_int_equal(p.tags, 4);
  flv_parser_free(&p);
}

static void test_ffmpeg_file(void **state) {
  (void)state;
  size_t len;
  uint8_t *d = read_corpus("av.flv", &len);
  static const size_t pieces[] = {1, 3, 11, 4096, 1 << 20};
  for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
    flv_parser_t p;
    parsed_t r;
    flv_parser_init(&p, 1);
    parse_all(&p, d, len, pieces[i], &r);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.n, 59); /* ffprobe: 1 script, 12 video, 46 audio */
    assert_int_equal(r.script, 1);
    assert_int_equal(r.video, 12);
    assert_int_equal(r.audio, 46);
    assert_int_equal(r.keys, 1);
    assert_int_equal(r.vseq, 1);
    assert_int_equal(r.aseq, 1);
    assert_int_equal(r.first_types[0], HUB_SCRIPT);
    assert_int_equal(p.prev_size_mismatch, 0);
    assert_int_equal(p.flags, FLV_FLAG_AUDIO | FLV_FLAG_VIDEO);
    assert_true(r.last_ts >= 900 && r.last_ts <= 1100);
    flv_parser_free(&p);
  }
  free(d);
}

static void test_refusals(void **state) {
  (void)state;
  size_t len;
  uint8_t *d = read_corpus("av.flv", &len);
  flv_parser_t p;
  parsed_t r;
  /* bad signature, version, data offset */
  const char *bad[] = {"FLX\x01\x05\x00\x00\x00\x09", "FLV\x02\x05\x00\x00\x00\x09",
                       "FLV\x01\x05\x00\x00\x00\x08", "FLV\x01\x05\x00\x01\x00\x00"};
  for (int i = 0; i < 4; i++) {
    flv_parser_init(&p, 1);
    parse_all(&p, (const uint8_t *)bad[i], 9, 9, &r);
    assert_int_equal(r.err, FLV_EHEADER);
    hub_frame_t *f;
    assert_int_equal(flv_parse(&p, d, len, &f), FLV_EHEADER); /* stays failed */
    flv_parser_free(&p);
  }
  /* a tag over the bound, refused at its header before any allocation */
  flv_parser_init(&p, 1);
  p.max_tag = 100;
  parse_all(&p, d, len, len, &r);
  assert_int_equal(r.err, FLV_ETOOBIG);
  assert_int_equal(r.n, 0); /* onMetaData is 293 bytes */
  assert_string_equal(flv_strerror(FLV_ETOOBIG), "FLV tag too large");
  flv_parser_free(&p);
  /* truncated in the middle of a tag: no tag, no error, no leak */
  flv_parser_init(&p, 1);
  parse_all(&p, d, 13 + 11 + 100, 7, &r);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.n, 0);
  assert_non_null(p.frame);
  flv_parser_free(&p);
  free(d);
}

static void test_tolerance(void **state) {
  (void)state;
  size_t len;
  uint8_t *d = read_corpus("prev_size_mismatch.flv", &len);
  flv_parser_t p;
  parsed_t r;
  flv_parser_init(&p, 1);
  parse_all(&p, d, len, 5, &r);
  assert_int_equal(r.err, 0);
  assert_true(r.n > 3);
  assert_int_equal(p.prev_size_mismatch, 1);
  flv_parser_free(&p);
  free(d);
  d = read_corpus("unknown_tag.flv", &len);
  flv_parser_init(&p, 1);
  parse_all(&p, d, len, 64, &r);
  assert_int_equal(r.err, 0);
  assert_int_equal(p.skipped, 1);
  assert_int_equal(r.first_types[0], HUB_SCRIPT);
  assert_int_equal(p.prev_size_mismatch, 0);
  flv_parser_free(&p);
  free(d);
  /* a tag stream without the file header */
  d = read_corpus("tags_only.bin", &len);
  flv_parser_init(&p, 0);
  parse_all(&p, d, len, 1000, &r);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.first_types[0], HUB_SCRIPT);
  assert_int_equal(r.vseq, 1);
  flv_parser_free(&p);
  free(d);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_encode),     cmocka_unit_test(test_roundtrip),
      cmocka_unit_test(test_ffmpeg_file), cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_tolerance),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
