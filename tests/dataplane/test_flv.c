/* Unit tests for dataplane/flv.c: header and tag header encoding, the
 * incremental parser on an ffmpeg-made file (whole and byte by byte), and
 * its refusals: bad header, oversized tag; tolerance of a wrong
 * PreviousTagSize and of unknown tag types. The kinds sniffer (which
 * header flags a stream gets): audio-only, video-only, both, metadata
 * naming one kind, lying metadata, no metadata (bounded by media time and
 * by frames), garbage metadata, and ffmpeg-made files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "amf.h"
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

/* ---------- kinds sniffer ---------- */

#define A FLV_FLAG_AUDIO
#define V FLV_FLAG_VIDEO

/* meta builds an onMetaData body: |keys| "name=value" pairs, value "t"/"f"
 * for booleans, a number, or a string in quotes. */
static uint8_t *meta(size_t *len, const char *const *keys) {
  amf_buf_t b;
  amf_buf_init(&b);
  amf_put_string(&b, "onMetaData");
  unsigned n = 0;
  while (keys[n]) n++;
  amf_put_ecma_start(&b, n);
  for (unsigned i = 0; i < n; i++) {
    char key[64];
    const char *eq = strchr(keys[i], '=');
    snprintf(key, sizeof(key), "%.*s", (int)(eq - keys[i]), keys[i]);
    const char *v = eq + 1;
    if (strcmp(v, "t") == 0 || strcmp(v, "f") == 0) amf_put_prop_bool(&b, key, v[0] == 't');
    else if (v[0] == '"') {
      amf_put_key(&b, key);
      amf_put_string_len(&b, v + 1, strlen(v) - 2);
    } else amf_put_prop_number(&b, key, atof(v));
  }
  amf_put_object_end(&b);
  assert_int_equal(b.err, 0);
  *len = b.len;
  return b.data;
}

static uint8_t feed_meta(flv_kinds_t *k, const char *const *keys) {
  size_t len;
  uint8_t *m = meta(&len, keys);
  uint8_t r = flv_kinds_feed(k, HUB_SCRIPT, 0, 0, m, len);
  free(m);
  return r;
}

static uint8_t feed(flv_kinds_t *k, uint8_t type, int seq, uint32_t ts) {
  static const uint8_t body[4] = {0xaf, 0x01, 0x21, 0x10};
  return flv_kinds_feed(k, type, seq, ts, body, sizeof(body));
}

static void test_kinds_with_metadata(void **state) {
  (void)state;
  flv_kinds_t k;
  /* ffmpeg's audio-only metadata: decided on the sequence header */
  flv_kinds_init(&k);
  assert_int_equal(feed_meta(&k, (const char *const[]){"audiocodecid=10", "stereo=t", NULL}), 0);
  assert_int_equal(feed(&k, HUB_AUDIO, 1, 0), A);
  assert_int_equal(feed(&k, HUB_VIDEO, 1, 0), A); /* decided stays decided */
  /* video only */
  flv_kinds_init(&k);
  assert_int_equal(feed_meta(&k, (const char *const[]){"videocodecid=7", "width=320", NULL}), 0);
  assert_int_equal(feed(&k, HUB_VIDEO, 1, 0), V);
  /* both named: one kind seen is not enough */
  flv_kinds_init(&k);
  feed_meta(&k, (const char *const[]){"videocodecid=7", "audiocodecid=10", NULL});
  assert_int_equal(feed(&k, HUB_VIDEO, 1, 0), 0);
  assert_int_equal(feed(&k, HUB_VIDEO, 0, 0), 0);
  assert_int_equal(feed(&k, HUB_AUDIO, 1, 0), A | V);
  /* hasVideo/hasAudio win over codec ids; a FourCC string names a kind */
  flv_kinds_init(&k);
  feed_meta(&k, (const char *const[]){"hasVideo=f", "videocodecid=7", "audiocodecid=\"mp4a\"", NULL});
  assert_int_equal(feed(&k, HUB_AUDIO, 1, 0), A);
  flv_kinds_init(&k);
  feed_meta(&k, (const char *const[]){"hasVideo=t", "hasAudio=f", "audiocodecid=10", NULL});
  assert_int_equal(feed(&k, HUB_VIDEO, 0, 40), V);
  /* no video codec 0; an audio codec 0 is linear PCM */
  flv_kinds_init(&k);
  feed_meta(&k, (const char *const[]){"videocodecid=0", "audiocodecid=0", NULL});
  assert_int_equal(feed(&k, HUB_AUDIO, 0, 0), A);
  /* both seen decides without metadata, whatever it said */
  flv_kinds_init(&k);
  assert_int_equal(feed(&k, HUB_VIDEO, 1, 0), 0);
  assert_int_equal(feed(&k, HUB_AUDIO, 1, 0), A | V);
  /* a later onMetaData that names nothing keeps what an earlier one said */
  flv_kinds_init(&k);
  feed_meta(&k, (const char *const[]){"audiocodecid=10", NULL});
  feed_meta(&k, (const char *const[]){"duration=0", NULL});
  assert_int_equal(feed(&k, HUB_AUDIO, 1, 0), A);
}

static void test_kinds_lying_metadata(void **state) {
  (void)state;
  flv_kinds_t k;
  /* says both, carries audio: decided after a second of media time */
  flv_kinds_init(&k);
  feed_meta(&k, (const char *const[]){"hasVideo=t", "hasAudio=t", NULL});
  assert_int_equal(feed(&k, HUB_AUDIO, 1, 5000), 0);
  for (uint32_t ts = 10000; ts < 11000; ts += 23) assert_int_equal(feed(&k, HUB_AUDIO, 0, ts), 0);
  assert_int_equal(feed(&k, HUB_AUDIO, 0, 11000), A);
  /* says audio, carries video */
  flv_kinds_init(&k);
  feed_meta(&k, (const char *const[]){"audiocodecid=10", NULL});
  assert_int_equal(feed(&k, HUB_VIDEO, 1, 0), 0);
  assert_int_equal(feed(&k, HUB_VIDEO, 0, 0), 0);
  assert_int_equal(feed(&k, HUB_VIDEO, 0, 999), 0);
  assert_int_equal(feed(&k, HUB_VIDEO, 0, 1000), V);
}

static void test_kinds_without_metadata(void **state) {
  (void)state;
  flv_kinds_t k;
  /* the clock starts at the first coded frame, not at the cached
   * sequence header of a late join */
  flv_kinds_init(&k);
  assert_int_equal(feed(&k, HUB_VIDEO, 1, 0), 0);
  assert_int_equal(feed(&k, HUB_VIDEO, 0, 60000), 0);
  assert_int_equal(feed(&k, HUB_VIDEO, 0, 60500), 0);
  assert_int_equal(feed(&k, HUB_VIDEO, 0, 61000), V);
  /* a jump back (republish) is not time passing; the frame cap bounds it */
  flv_kinds_init(&k);
  assert_int_equal(feed(&k, HUB_AUDIO, 0, 50000), 0);
  unsigned n = 1;
  uint8_t r = 0;
  while (!(r = feed(&k, HUB_AUDIO, 0, n))) n++;
  assert_int_equal(r, A);
  assert_int_equal(n + 1, FLV_KINDS_MAX_FRAMES);
  /* the byte cap */
  flv_kinds_init(&k);
  static uint8_t big[1 << 20];
  for (n = 0; !(r = flv_kinds_feed(&k, HUB_VIDEO, 0, 0, big, sizeof(big))); n++) {}
  assert_int_equal(r, V);
  assert_int_equal(n + 1, FLV_KINDS_MAX_BYTES / sizeof(big));
  /* ended early: what was seen, else what the metadata said, else both */
  flv_kinds_init(&k);
  feed(&k, HUB_AUDIO, 1, 0);
  assert_int_equal(flv_kinds_finish(&k), A);
  assert_int_equal(flv_kinds_finish(&k), A);
  flv_kinds_init(&k);
  feed_meta(&k, (const char *const[]){"videocodecid=12", NULL});
  assert_int_equal(flv_kinds_finish(&k), V);
  flv_kinds_init(&k);
  assert_int_equal(flv_kinds_finish(&k), A | V);
  /* empty frames and unknown types show no kind */
  flv_kinds_init(&k);
  assert_int_equal(flv_kinds_feed(&k, HUB_AUDIO, 0, 0, NULL, 0), 0);
  assert_int_equal(flv_kinds_feed(&k, 7, 0, 0, (const uint8_t *)"x", 1), 0);
  assert_int_equal(flv_kinds_finish(&k), A | V);
}

static void test_kinds_garbage_metadata(void **state) {
  (void)state;
  /* not onMetaData, truncated, wrong types, nested past the limits */
  static const uint8_t text[] = "\x02\x00\x0aonTextData\x08\x00\x00\x00\x01"
                                "\x00\x0caudiocodecid\x00\x40\x24\x00\x00\x00\x00\x00\x00"
                                "\x00\x00\x09";
  assert_int_equal(flv_kinds_meta(text, sizeof(text) - 1), 0);
  size_t len;
  uint8_t *m = meta(&len, (const char *const[]){"audiocodecid=10", NULL});
  assert_int_equal(flv_kinds_meta(m, len), A);
  for (size_t cut = 0; cut < len - 3; cut++) /* the value is cut: nothing read */
    assert_int_equal(flv_kinds_meta(m, cut), 0);
  free(m);
  m = meta(&len, (const char *const[]){"hasAudio=5", "videocodecid=\"\"", NULL});
  assert_int_equal(flv_kinds_meta(m, len), 0);
  free(m);
  uint8_t deep[4096];
  size_t n = 0;
  memcpy(deep, "\x02\x00\x0aonMetaData", 13);
  n = 13;
  while (n + 4 < sizeof(deep)) { /* objects within objects */
    deep[n++] = AMF_OBJECT;
    deep[n++] = 0;
    deep[n++] = 1;
    deep[n++] = 'k';
  }
  assert_int_equal(flv_kinds_meta(deep, n), 0);
  /* metadata over the read limit is not read, and is no harm */
  uint8_t *huge = calloc(1, FLV_KINDS_MAX_META + 100);
  assert_non_null(huge);
  memcpy(huge, "\x02\x00\x0aonMetaData\x02\xff\xff", 16);
  assert_int_equal(flv_kinds_meta(huge, FLV_KINDS_MAX_META + 100), 0);
  free(huge);
  flv_kinds_t k;
  flv_kinds_init(&k);
  assert_int_equal(flv_kinds_feed(&k, HUB_SCRIPT, 0, 0, deep, n), 0);
  assert_int_equal(feed(&k, HUB_AUDIO, 1, 0), 0);
  assert_int_equal(k.meta, 0);
}

/* kinds_of_file runs the sniffer over the tags of an ffmpeg-made file. */
static uint8_t kinds_of_file(const char *name) {
  size_t len;
  uint8_t *d = read_corpus(name, &len);
  flv_parser_t p;
  flv_kinds_t k;
  flv_parser_init(&p, 1);
  flv_kinds_init(&k);
  uint8_t r = 0;
  size_t off = 0;
  while (!r && off < len) {
    hub_frame_t *f;
    long used = flv_parse(&p, d + off, len - off, &f);
    assert_true(used >= 0);
    off += (size_t)used;
    if (f) r = flv_kinds_feed(&k, f->type, f->seq_header, f->ts, f->data, f->len);
    hub_frame_unref(f);
  }
  flv_parser_free(&p);
  free(d);
  return r;
}

static void test_kinds_ffmpeg_files(void **state) {
  (void)state;
  assert_int_equal(kinds_of_file("audio_only.flv"), A);
  assert_int_equal(kinds_of_file("video_only.flv"), V);
  assert_int_equal(kinds_of_file("av.flv"), A | V);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_encode),     cmocka_unit_test(test_roundtrip),
      cmocka_unit_test(test_ffmpeg_file), cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_tolerance),
      cmocka_unit_test(test_kinds_with_metadata), cmocka_unit_test(test_kinds_lying_metadata),
      cmocka_unit_test(test_kinds_without_metadata), cmocka_unit_test(test_kinds_garbage_metadata),
      cmocka_unit_test(test_kinds_ffmpeg_files),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
