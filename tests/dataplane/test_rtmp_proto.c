/* Unit tests for rtmp_proto: both handshakes (the digest one checked the
 * way FFmpeg's client checks it, with HMACs computed here independently),
 * the chunk reader on split and merged input, header compression and
 * extended timestamps, and every protocol error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "amf.h"
#include "rtmp_proto.h"

#define HS RTMP_HANDSHAKE_SIZE

/* ------------------------------------------------------------ handshake */

static void test_simple_handshake(void **state) {
  (void)state;
  rtmp_hs_t *srv = malloc(sizeof(*srv)), *cli = malloc(sizeof(*cli));
  rtmp_hs_init(srv, RTMP_HS_SERVER, 1);
  rtmp_hs_init(cli, RTMP_HS_CLIENT, 2);
  size_t n;
  const uint8_t *o = rtmp_hs_output(cli, &n);
  assert_int_equal(n, 1 + HS);
  assert_int_equal(o[0], 3);
  uint8_t c1[HS];
  memcpy(c1, o + 1, HS);
  /* C0+C1 one byte at a time: the server answers only when C1 is whole. */
  for (size_t i = 0; i < n; i++) {
    size_t sn;
    rtmp_hs_output(srv, &sn);
    assert_int_equal(sn, 0);
    assert_int_equal(rtmp_hs_feed(srv, o + i, 1), 1);
  }
  rtmp_hs_sent(cli, n);
  size_t sn;
  const uint8_t *so = rtmp_hs_output(srv, &sn);
  assert_int_equal(sn, 1 + 2 * HS);
  assert_int_equal(srv->complex, 0);
  assert_memory_equal(so + 1 + HS, c1, HS);   /* S2 echoes C1 */
  uint8_t s1[HS];
  memcpy(s1, so + 1, HS);
  assert_int_equal(rtmp_hs_feed(cli, so, sn), (ssize_t)sn);
  rtmp_hs_sent(srv, sn);
  assert_true(rtmp_hs_done(cli));
  o = rtmp_hs_output(cli, &n);
  assert_int_equal(n, HS);
  assert_memory_equal(o, s1, HS);   /* C2 echoes S1 */
  /* C2 plus the first chunk bytes: the extra bytes are left over. */
  uint8_t buf[HS + 5];
  memcpy(buf, o, HS);
  memset(buf + HS, 0xab, 5);
  assert_int_equal(rtmp_hs_feed(srv, buf, sizeof(buf)), HS);
  assert_true(rtmp_hs_done(srv));
  assert_int_equal(rtmp_hs_feed(srv, buf, 5), 0);
  free(srv);
  free(cli);
}

static void hmac(const uint8_t *key, size_t kl, const uint8_t *a, size_t al, const uint8_t *b,
                 size_t bl, uint8_t out[32]) {
  /* HMAC over a||b, independent of rtmp_hmac_sha256. */
  uint8_t *m = malloc(al + bl + 1);
  memcpy(m, a, al);
  if (bl) memcpy(m + al, b, bl);
  assert_int_equal(gnutls_hmac_fast(GNUTLS_MAC_SHA256, key, kl, m, al + bl, out), 0);
  free(m);
}

static size_t dpos(const uint8_t *p, size_t base) {
  return ((size_t)p[base] + p[base + 1] + p[base + 2] + p[base + 3]) % 728 + base + 4;
}

/* build_c1 makes a digest C1 as Flash Player/FFmpeg do, at |scheme|. */
static void build_c1(uint8_t *c1, int scheme, uint8_t fill) {
  for (size_t i = 0; i < HS; i++) c1[i] = (uint8_t)(i * 31 + fill);
  memset(c1, 0, 4);
  c1[4] = 9;
  c1[5] = 0;
  c1[6] = 124;
  c1[7] = 2;
  size_t pos = dpos(c1, scheme ? 772 : 8);
  hmac(rtmp_fp_key, 30, c1, pos, c1 + pos + 32, HS - pos - 32, c1 + pos);
}

static void check_digest_handshake(int scheme) {
  rtmp_hs_t *srv = malloc(sizeof(*srv));
  rtmp_hs_init(srv, RTMP_HS_SERVER, 7);
  uint8_t in[1 + HS];
  in[0] = 3;
  build_c1(in + 1, scheme, (uint8_t)scheme);
  size_t cpos = dpos(in + 1, scheme ? 772 : 8);
  assert_int_equal(rtmp_hs_digest_find(in + 1, rtmp_fp_key, 30), (int)cpos);
  assert_int_equal(rtmp_hs_feed(srv, in, sizeof(in)), sizeof(in));
  assert_int_equal(srv->complex, 1);
  assert_int_equal(srv->scheme, scheme);
  size_t n;
  const uint8_t *o = rtmp_hs_output(srv, &n);
  assert_int_equal(n, 1 + 2 * HS);
  const uint8_t *s1 = o + 1, *s2 = o + 1 + HS;
  /* FFmpeg's client: S1[4] >= 3 means "verify". */
  assert_true(s1[4] >= 3);
  /* S1 digest with the 36-byte server key at the same scheme. */
  size_t spos = dpos(s1, scheme ? 772 : 8);
  uint8_t d[32];
  hmac(rtmp_fms_key, 36, s1, spos, s1 + spos + 32, HS - spos - 32, d);
  assert_memory_equal(d, s1 + spos, 32);
  /* S2: key = HMAC(full server key, client digest); signature over S2[0..1504). */
  uint8_t key[32];
  hmac(rtmp_fms_key, 68, in + 1 + cpos, 32, NULL, 0, key);
  hmac(key, 32, s2, HS - 32, NULL, 0, d);
  assert_memory_equal(d, s2 + HS - 32, 32);
  free(srv);
}

static void test_digest_handshake_scheme0(void **state) {
  (void)state;
  check_digest_handshake(0);
}

static void test_digest_handshake_scheme1(void **state) {
  (void)state;
  check_digest_handshake(1);
}

static void test_digest_handshake_bad_digest_falls_back(void **state) {
  (void)state;
  rtmp_hs_t *srv = malloc(sizeof(*srv));
  rtmp_hs_init(srv, RTMP_HS_SERVER, 7);
  uint8_t in[1 + HS];
  in[0] = 3;
  build_c1(in + 1, 0, 0);
  size_t cpos = dpos(in + 1, 8);
  in[1 + cpos] ^= 1;   /* a wrong digest: not a Flash client, echo it */
  assert_int_equal(rtmp_hs_digest_find(in + 1, rtmp_fp_key, 30), -1);
  assert_int_equal(rtmp_hs_feed(srv, in, sizeof(in)), sizeof(in));
  assert_int_equal(srv->complex, 0);
  size_t n;
  const uint8_t *o = rtmp_hs_output(srv, &n);
  assert_memory_equal(o + 1 + HS, in + 1, HS);
  free(srv);
}

static void test_deterministic_vector(void **state) {
  (void)state;
  /* The same seed and C1 give the same S0S1S2 (tests can pin replies). */
  rtmp_hs_t *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
  uint8_t in[1 + HS];
  in[0] = 3;
  build_c1(in + 1, 1, 5);
  rtmp_hs_init(a, RTMP_HS_SERVER, 42);
  rtmp_hs_init(b, RTMP_HS_SERVER, 42);
  rtmp_hs_feed(a, in, sizeof(in));
  rtmp_hs_feed(b, in, sizeof(in));
  size_t na, nb;
  const uint8_t *oa = rtmp_hs_output(a, &na), *ob = rtmp_hs_output(b, &nb);
  assert_int_equal(na, nb);
  assert_memory_equal(oa, ob, na);
  /* Known S1 header: time 0, FMS version 13.14.10.13. */
  static const uint8_t head[9] = {3, 0, 0, 0, 0, 0x0d, 0x0e, 0x0a, 0x0d};
  assert_memory_equal(oa, head, 9);
  free(a);
  free(b);
}

static void test_handshake_errors(void **state) {
  (void)state;
  rtmp_hs_t *srv = malloc(sizeof(*srv));
  rtmp_hs_init(srv, RTMP_HS_SERVER, 1);
  uint8_t v6 = 6;   /* RTMPE: not supported */
  assert_int_equal(rtmp_hs_feed(srv, &v6, 1), RTMP_EVERSION);
  rtmp_hs_init(srv, RTMP_HS_SERVER, 1);
  uint8_t junk[] = "GET / HTTP/1.1\r\n";
  assert_int_equal(rtmp_hs_feed(srv, junk, sizeof(junk) - 1), RTMP_EVERSION);
  /* Truncated: consumed, not done, no reply yet. */
  rtmp_hs_init(srv, RTMP_HS_SERVER, 1);
  uint8_t part[100] = {3};
  assert_int_equal(rtmp_hs_feed(srv, part, sizeof(part)), sizeof(part));
  assert_false(rtmp_hs_done(srv));
  size_t n;
  rtmp_hs_output(srv, &n);
  assert_int_equal(n, 0);
  /* Client: S0 with a wrong version. */
  rtmp_hs_t *cli = malloc(sizeof(*cli));
  rtmp_hs_init(cli, RTMP_HS_CLIENT, 1);
  assert_int_equal(rtmp_hs_feed(cli, &v6, 1), RTMP_EVERSION);
  free(cli);
  free(srv);
}

/* ------------------------------------------------------------ chunks */

typedef struct {
  int n;
  rtmp_msg_t m[64];
  uint8_t *data[64];
} got_t;

static int collect(void *arg, const rtmp_msg_t *m) {
  got_t *g = arg;
  if (g->n == 64) return -99;
  g->m[g->n] = *m;
  g->data[g->n] = malloc(m->len + 1);
  if (m->len) memcpy(g->data[g->n], m->data, m->len);
  g->n++;
  return 0;
}

static void got_free(got_t *g) {
  for (int i = 0; i < g->n; i++) free(g->data[i]);
  g->n = 0;
}

typedef struct {
  uint32_t csid;
  uint8_t type;
  uint32_t sid, ts;
  size_t len;
} spec_t;

static const spec_t specs[] = {
    {3, 20, 0, 0, 200},                /* a command, two chunks of 128 */
    {6, 9, 1, 0, 5000},                /* video */
    {6, 9, 1, 40, 5000},               /* same length and type: fmt 2 */
    {6, 9, 1, 80, 300},                /* new length: fmt 1 */
    {4, 8, 1, 23, 10},                 /* audio */
    {4, 8, 1, 0x1000000, 10},          /* extended timestamp (absolute jump) */
    {4, 8, 1, 0x1000010, 400},         /* delta after an extended one */
    {100, 18, 1, 5, 130},              /* 2-byte basic header */
    {1000, 18, 1, 6, 129},             /* 3-byte basic header */
    {6, 9, 1, 20, 0},                  /* time going back: fmt 0; empty body */
    {6, 9, 2, 120, 3},                 /* other message stream: fmt 0 */
};
#define NSPECS (sizeof(specs) / sizeof(specs[0]))

static uint8_t body_byte(size_t i, size_t k) { return (uint8_t)(i * 7 + k * 13 + 1); }

static amf_buf_t build_stream(uint32_t chunk) {
  rtmp_writer_t w;
  rtmp_writer_init(&w);
  amf_buf_t out;
  amf_buf_init(&out);
  if (chunk != RTMP_DEFAULT_CHUNK_SIZE) assert_int_equal(rtmp_put_set_chunk_size(&w, &out, chunk), 0);
  for (size_t i = 0; i < NSPECS; i++) {
    uint8_t *body = malloc(specs[i].len + 1);
    for (size_t k = 0; k < specs[i].len; k++) body[k] = body_byte(i, k);
    assert_int_equal(rtmp_writer_put(&w, &out, specs[i].csid, specs[i].type, specs[i].sid,
                                     specs[i].ts, body, specs[i].len), 0);
    free(body);
  }
  return out;
}

static void check_got(const got_t *g) {
  assert_int_equal(g->n, NSPECS);
  for (size_t i = 0; i < NSPECS; i++) {
    assert_int_equal(g->m[i].csid, specs[i].csid);
    assert_int_equal(g->m[i].type, specs[i].type);
    assert_int_equal(g->m[i].stream_id, specs[i].sid);
    assert_int_equal(g->m[i].ts, specs[i].ts);
    assert_int_equal(g->m[i].len, specs[i].len);
    for (size_t k = 0; k < specs[i].len; k++) assert_int_equal(g->data[i][k], body_byte(i, k));
  }
}

static void feed_split(uint32_t chunk, size_t step, int random_steps) {
  amf_buf_t s = build_stream(chunk);
  rtmp_reader_t r;
  rtmp_reader_init(&r, 0, 0);
  got_t g = {0};
  uint32_t rng = 12345;
  for (size_t off = 0; off < s.len;) {
    size_t n = step;
    if (random_steps) {
      rng = rng * 1103515245 + 12345;
      n = 1 + (rng >> 16) % 300;
    }
    if (n > s.len - off) n = s.len - off;
    assert_int_equal(rtmp_reader_feed(&r, s.data + off, n, collect, &g), 0);
    off += n;
  }
  check_got(&g);
  assert_int_equal(r.chunk_size, chunk);
  assert_int_equal(r.bytes_in, s.len);
  got_free(&g);
  rtmp_reader_free(&r);
  amf_buf_free(&s);
}

static void test_chunks_merged(void **state) {
  (void)state;
  feed_split(RTMP_DEFAULT_CHUNK_SIZE, 1 << 30, 0);
  feed_split(4096, 1 << 30, 0);
}

static void test_chunks_byte_by_byte(void **state) {
  (void)state;
  feed_split(RTMP_DEFAULT_CHUNK_SIZE, 1, 0);
  feed_split(60, 1, 0);
}

static void test_chunks_random_splits(void **state) {
  (void)state;
  feed_split(RTMP_DEFAULT_CHUNK_SIZE, 0, 1);
  feed_split(1, 0, 1);
  feed_split(65536, 0, 1);
}

static void test_header_vector(void **state) {
  (void)state;
  /* fmt 0, csid 3, ts 100, len 1, type 20, sid 1 (little endian); then a
   * fmt 3 chunk starting a new message: time advances by the last field. */
  static const uint8_t in[] = {0x03, 0x00, 0x00, 0x64, 0x00, 0x00, 0x01, 0x14, 0x01, 0x00, 0x00, 0x00,
                               0xaa, 0xc3, 0xbb,
                               /* fmt 1 on csid 3: delta 10, len 2, type 8 */
                               0x43, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x02, 0x08, 0x01, 0x02,
                               /* fmt 2: delta 5 */
                               0x83, 0x00, 0x00, 0x05, 0x03, 0x04};
  rtmp_reader_t r;
  rtmp_reader_init(&r, 0, 0);
  got_t g = {0};
  assert_int_equal(rtmp_reader_feed(&r, in, sizeof(in), collect, &g), 0);
  assert_int_equal(g.n, 4);
  assert_int_equal(g.m[0].ts, 100);
  assert_int_equal(g.m[0].stream_id, 1);
  assert_int_equal(g.data[0][0], 0xaa);
  assert_int_equal(g.m[1].ts, 200);
  assert_int_equal(g.data[1][0], 0xbb);
  assert_int_equal(g.m[2].ts, 210);
  assert_int_equal(g.m[2].type, 8);
  assert_int_equal(g.m[2].len, 2);
  assert_int_equal(g.m[3].ts, 215);
  assert_int_equal(g.m[3].type, 8);
  assert_int_equal(g.m[3].stream_id, 1);
  got_free(&g);
  rtmp_reader_free(&r);
}

static int feed_all(const uint8_t *p, size_t n, uint32_t max_msg, uint32_t max_other) {
  rtmp_reader_t r;
  rtmp_reader_init(&r, max_msg, max_other);
  got_t g = {0};
  int rc = rtmp_reader_feed(&r, p, n, collect, &g);
  got_free(&g);
  rtmp_reader_free(&r);
  return rc;
}

static void test_set_chunk_size_errors(void **state) {
  (void)state;
  uint8_t m[16] = {0x02, 0, 0, 0, 0, 0, 4, 0x01, 0, 0, 0, 0};
  struct {
    uint32_t v;
    int rc;
  } cases[] = {{0, RTMP_ECHUNKSIZE}, {0x1000000, RTMP_ECHUNKSIZE}, {0x80000000u, RTMP_ECHUNKSIZE},
               {0xffffffffu, RTMP_ECHUNKSIZE}, {1, 0}, {0xffffff, 0}};
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    m[12] = (uint8_t)(cases[i].v >> 24);
    m[13] = (uint8_t)(cases[i].v >> 16);
    m[14] = (uint8_t)(cases[i].v >> 8);
    m[15] = (uint8_t)cases[i].v;
    assert_int_equal(feed_all(m, 16, 0, 0), cases[i].rc);
  }
  /* Shorter than 4 bytes. */
  static const uint8_t shortm[] = {0x02, 0, 0, 0, 0, 0, 2, 0x01, 0, 0, 0, 0, 0, 1};
  assert_int_equal(feed_all(shortm, sizeof(shortm), 0, 0), RTMP_EPROTO);
}

static void test_message_limits(void **state) {
  (void)state;
  /* Video of 1000 bytes under a 999-byte limit: refused at the header. */
  static const uint8_t v[] = {0x06, 0, 0, 0, 0, 0x03, 0xe8, 0x09, 1, 0, 0, 0};
  assert_int_equal(feed_all(v, sizeof(v), 999, 0), RTMP_ETOOBIG);
  assert_int_equal(feed_all(v, sizeof(v), 1000, 0), 0);
  /* A 16 MiB - 1 data message (an oversized @setDataFrame) against a 1 MiB
   * limit for non-media messages. */
  static const uint8_t d[] = {0x05, 0, 0, 0, 0xff, 0xff, 0xff, 0x12, 1, 0, 0, 0};
  assert_int_equal(feed_all(d, sizeof(d), 0, 0), RTMP_ETOOBIG);
}

static void test_buffered_bound(void **state) {
  (void)state;
  rtmp_writer_t w;
  rtmp_writer_init(&w);
  amf_buf_t out;
  amf_buf_init(&out);
  rtmp_put_set_chunk_size(&w, &out, 65536);
  rtmp_reader_t r;
  rtmp_reader_init(&r, 200000, 0);
  r.max_buffered = 300000;
  assert_int_equal(rtmp_reader_feed(&r, out.data, out.len, NULL, NULL), 0);
  uint8_t hdr[12] = {0, 0, 0, 0, 0x02, 0xff, 0xff, 0x09, 1, 0, 0, 0};   /* len 196607 */
  uint8_t *body = calloc(1, 65536);
  int rc = 0, cs;
  for (cs = 3; cs < 20 && rc == 0; cs++) {
    hdr[0] = (uint8_t)cs;
    rc = rtmp_reader_feed(&r, hdr, sizeof(hdr), NULL, NULL);
    if (rc == 0) rc = rtmp_reader_feed(&r, body, 65536, NULL, NULL);
  }
  assert_int_equal(rc, RTMP_EPENDING);
  assert_true(cs <= 8);
  rtmp_reader_free(&r);
  amf_buf_free(&out);
  free(body);
}

/* ------------------------------------------------------------ bound and budget */

/* Caller buffers for audio/video, as the server's hub frames: counted. */
static long xbufs_out;

static uint8_t *x_alloc(void *arg, uint8_t type, uint32_t ts, uint32_t len, void **owner) {
  (void)arg;
  (void)type;
  (void)ts;
  uint8_t *b = malloc(len);
  *owner = b;
  xbufs_out++;
  return b;
}

static void x_release(void *arg, void *owner) {
  (void)arg;
  xbufs_out--;
  free(owner);
}

static int x_collect(void *arg, const rtmp_msg_t *m) {
  (void)arg;
  if (m->owned) x_release(NULL, m->owned);
  return 0;
}

/* put_chunk appends one chunk: a fmt 0 header (message of |len|) when
 * |first|, else fmt 3; then |n| body bytes. */
static void put_chunk(amf_buf_t *b, uint32_t csid, uint8_t type, uint32_t len, int first, size_t n) {
  uint8_t h[18];
  size_t k;
  unsigned fmt = first ? 0 : 3;
  if (csid < 64) {
    h[0] = (uint8_t)(fmt << 6 | csid);
    k = 1;
  } else if (csid < 320) {
    h[0] = (uint8_t)(fmt << 6);
    h[1] = (uint8_t)(csid - 64);
    k = 2;
  } else {
    h[0] = (uint8_t)(fmt << 6 | 1);
    h[1] = (uint8_t)(csid - 64);
    h[2] = (uint8_t)((csid - 64) >> 8);
    k = 3;
  }
  if (first) {
    uint8_t m[11] = {0, 0, 0, (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len, type, 1, 0, 0, 0};
    memcpy(h + k, m, sizeof(m));
    k += sizeof(m);
  }
  amf_put_raw(b, h, k);
  static uint8_t fill[65536];
  assert_true(n <= sizeof(fill));
  amf_put_raw(b, fill, n);
}

static void set_chunk(rtmp_reader_t *r, uint32_t size) {
  rtmp_writer_t w;
  rtmp_writer_init(&w);
  amf_buf_t b;
  amf_buf_init(&b);
  assert_int_equal(rtmp_put_set_chunk_size(&w, &b, size), 0);
  assert_int_equal(rtmp_reader_feed(r, b.data, b.len, x_collect, NULL), 0);
  amf_buf_free(&b);
}

/* Before publish the server gives a connection a small bound: many chunk
 * streams each under it, interleaved, must fail together as soon as their
 * sum passes it, whatever the message type, the chunk stream id's width,
 * the bound, or where the bytes are assembled (caller buffers are counted
 * whole at the first chunk, the reader's own as they grow). */
static void test_pending_bound_interleaved(void **state) {
  (void)state;
  static const uint8_t types[] = {RTMP_MSG_VIDEO, RTMP_MSG_AUDIO, RTMP_MSG_COMMAND_AMF0,
                                  RTMP_MSG_DATA_AMF0, RTMP_MSG_COMMAND_AMF3, RTMP_MSG_DATA_AMF3};
  static const uint32_t csid0[] = {3, 64, 320, 60000};
  static const size_t bounds[] = {4096, 10000, 65536};
  const uint32_t chunk = 1024, len = 3000;   /* three chunks; two are ever sent */
  for (int mode = 0; mode < 2; mode++)
    for (size_t ti = 0; ti < sizeof(types); ti++)
      for (size_t ci = 0; ci < sizeof(csid0) / sizeof(csid0[0]); ci++)
        for (size_t bi = 0; bi < sizeof(bounds) / sizeof(bounds[0]); bi++) {
          rtmp_reader_t r;
          rtmp_reader_init(&r, 0, 0);
          if (mode) rtmp_reader_set_alloc(&r, x_alloc, x_release, NULL);
          set_chunk(&r, chunk);
          rtmp_reader_set_bound(&r, bounds[bi]);
          int rc = 0;
          size_t fed = 0;
          unsigned k = 0;
          for (int round = 0; round < 2 && rc == 0; round++)
            for (k = 0; k < 40 && rc == 0; k++) {
              amf_buf_t b;
              amf_buf_init(&b);
              put_chunk(&b, csid0[ci] + k, types[ti], len, round == 0, chunk);
              rc = rtmp_reader_feed(&r, b.data, b.len, x_collect, NULL);
              fed += chunk;
              amf_buf_free(&b);
              assert_true(r.buffered <= bounds[bi]);
            }
          assert_int_equal(rc, RTMP_EPENDING);
          /* Refused at the stream that passed the bound, not later. */
          assert_true(fed <= bounds[bi] + chunk);
          assert_true(k * len > bounds[bi] - len);
          rtmp_reader_free(&r);
          assert_int_equal(r.buffered, 0);
          assert_int_equal(xbufs_out, 0);
        }
  /* One message of the largest size of each kind: refused within the bound. */
  for (int mode = 0; mode < 2; mode++)
    for (size_t ti = 0; ti < sizeof(types); ti++) {
      rtmp_reader_t r;
      rtmp_reader_init(&r, 0, 0);
      if (mode) rtmp_reader_set_alloc(&r, x_alloc, x_release, NULL);
      set_chunk(&r, 4096);
      rtmp_reader_set_bound(&r, 16384);
      uint32_t big = types[ti] == RTMP_MSG_VIDEO || types[ti] == RTMP_MSG_AUDIO ? 0xffffff : 1 << 20;
      int rc = 0;
      size_t fed = 0;
      for (int i = 0; i < 100 && rc == 0; i++) {
        amf_buf_t b;
        amf_buf_init(&b);
        put_chunk(&b, 5, types[ti], big, i == 0, 4096);
        rc = rtmp_reader_feed(&r, b.data, b.len, x_collect, NULL);
        fed += 4096;
        amf_buf_free(&b);
      }
      assert_int_equal(rc, RTMP_EPENDING);
      assert_true(fed <= 16384 + 4096);
      rtmp_reader_free(&r);
      assert_int_equal(xbufs_out, 0);
    }
}

/* Several readers share one budget: the one that would pass it fails,
 * the others go on; what completes, is trimmed or freed comes back; the
 * budget always holds the sum of its readers' holdings. */
static size_t held_sum(rtmp_reader_t *r, int n, int skip) {
  size_t sum = 0;
  for (int i = 0; i < n; i++)
    if (i != skip) sum += r[i].buffered;
  return sum;
}

static void test_budget_shared(void **state) {
  (void)state;
  for (int mode = 0; mode < 2; mode++) {
    rtmp_budget_t bud = {0, 100000};
    rtmp_reader_t r[4];
    for (int i = 0; i < 4; i++) {
      rtmp_reader_init(&r[i], 0, 0);
      if (mode) rtmp_reader_set_alloc(&r[i], x_alloc, x_release, NULL);
      set_chunk(&r[i], 65536);   /* 4 bytes held before the budget: moved into it */
      rtmp_reader_set_budget(&r[i], &bud);
    }
    assert_int_equal(bud.used, 16);
    uint8_t type = mode ? RTMP_MSG_VIDEO : RTMP_MSG_DATA_AMF0;
    /* caller buffers count the whole message at once, the reader's own
     * what it has grown to */
    size_t per = mode ? 30000 : 29000;
    /* Readers 0..2 each start a 30,000-byte message and get 29,000 in. */
    for (int i = 0; i < 3; i++) {
      amf_buf_t b;
      amf_buf_init(&b);
      put_chunk(&b, 6, type, 30000, 1, 29000);
      assert_int_equal(rtmp_reader_feed(&r[i], b.data, b.len, x_collect, NULL), 0);
      amf_buf_free(&b);
      assert_int_equal(r[i].buffered, 4 + per);
    }
    assert_int_equal(bud.used, held_sum(r, 4, -1));
    /* Reader 3's message would pass 100,000: refused, nothing of it held. */
    {
      amf_buf_t b;
      amf_buf_init(&b);
      put_chunk(&b, 320, type, 30000, 1, 29000);
      assert_int_equal(rtmp_reader_feed(&r[3], b.data, b.len, x_collect, NULL), RTMP_EBUDGET);
      amf_buf_free(&b);
    }
    assert_int_equal(r[3].buffered, 4);
    assert_int_equal(bud.used, held_sum(r, 4, -1));
    /* The others go on: reader 0 completes its message. Caller buffers go
     * at once, the reader's own at a trim. */
    {
      static const uint8_t rest[1000];
      assert_int_equal(rtmp_reader_feed(&r[0], rest, sizeof(rest), x_collect, NULL), 0);
    }
    if (!mode) {
      assert_int_equal(r[0].buffered, 4 + 30000);
      rtmp_reader_trim(&r[0]);
      assert_int_equal(r[0].buffered, 0);
    } else {
      assert_int_equal(r[0].buffered, 4);
    }
    assert_int_equal(bud.used, held_sum(r, 4, -1));
    /* ... so a new message fits where reader 3's did not */
    {
      amf_buf_t b;
      amf_buf_init(&b);
      put_chunk(&b, 7, type, 20000, 1, 10000);
      assert_int_equal(rtmp_reader_feed(&r[0], b.data, b.len, x_collect, NULL), 0);
      amf_buf_free(&b);
    }
    assert_int_equal(bud.used, held_sum(r, 4, -1));
    /* A reader leaving mid-message gives it back. */
    rtmp_reader_free(&r[1]);
    assert_int_equal(r[1].buffered, 0);
    assert_int_equal(bud.used, held_sum(r, 4, 1));
    /* Moving a reader to another budget moves its holdings. */
    rtmp_budget_t other = {0, 1 << 20};
    size_t held2 = r[2].buffered;
    rtmp_reader_set_budget(&r[2], &other);
    assert_int_equal(other.used, held2);
    assert_int_equal(bud.used, held_sum(r, 4, 1) - held2);
    for (int i = 0; i < 4; i++)
      if (i != 1) rtmp_reader_free(&r[i]);
    assert_int_equal(bud.used, 0);
    assert_int_equal(other.used, 0);
    assert_int_equal(xbufs_out, 0);
  }
}

/* A bound lowered below what is held refuses growth but keeps the rest. */
static void test_bound_lowered(void **state) {
  (void)state;
  rtmp_reader_t r;
  rtmp_reader_init(&r, 0, 0);
  rtmp_reader_set_alloc(&r, x_alloc, x_release, NULL);
  set_chunk(&r, 65536);
  amf_buf_t b;
  amf_buf_init(&b);
  put_chunk(&b, 6, RTMP_MSG_VIDEO, 50000, 1, 20000);
  assert_int_equal(rtmp_reader_feed(&r, b.data, b.len, x_collect, NULL), 0);
  rtmp_reader_set_bound(&r, 4096);
  amf_buf_free(&b);
  amf_buf_init(&b);
  for (int i = 0; i < 3000; i++) amf_put_raw(&b, (const uint8_t *)"0123456789", 10);
  /* the rest of the message it holds: no growth */
  assert_int_equal(rtmp_reader_feed(&r, b.data, 30000, x_collect, NULL), 0);
  assert_int_equal(xbufs_out, 0);
  amf_buf_free(&b);
  amf_buf_init(&b);
  put_chunk(&b, 6, RTMP_MSG_VIDEO, 5000, 1, 10);
  assert_int_equal(rtmp_reader_feed(&r, b.data, b.len, x_collect, NULL), RTMP_EPENDING);
  amf_buf_free(&b);
  rtmp_reader_free(&r);
  assert_int_equal(xbufs_out, 0);
}

static void test_chunk_stream_errors(void **state) {
  (void)state;
  /* fmt 3 / fmt 2 on a chunk stream never opened. */
  static const uint8_t f3[] = {0xc5, 0x00};
  assert_int_equal(feed_all(f3, sizeof(f3), 0, 0), RTMP_ECSID);
  static const uint8_t f2[] = {0x85, 0, 0, 1};
  assert_int_equal(feed_all(f2, sizeof(f2), 0, 0), RTMP_ECSID);
  /* More than RTMP_MAX_CHUNK_STREAMS chunk streams open. */
  amf_buf_t b;
  amf_buf_init(&b);
  for (unsigned cs = 0; cs <= RTMP_MAX_CHUNK_STREAMS; cs++) {
    uint8_t h[15] = {0x01, 0, 0, 0, 0, 0, 0, 0, 1, 0x09, 1, 0, 0, 0, 0x17};
    h[1] = (uint8_t)cs;
    h[2] = (uint8_t)(cs >> 8);
    amf_put_raw(&b, h, sizeof(h));
  }
  assert_int_equal(feed_all(b.data, b.len, 0, 0), RTMP_ECSID);
  amf_buf_free(&b);
}

static void test_abort(void **state) {
  (void)state;
  amf_buf_t b;
  amf_buf_init(&b);
  /* 300-byte video on csid 6: first chunk only. */
  static const uint8_t h[] = {0x06, 0, 0, 0, 0, 0x01, 0x2c, 0x09, 1, 0, 0, 0};
  amf_put_raw(&b, h, sizeof(h));
  uint8_t body[300];
  memset(body, 1, sizeof(body));
  amf_put_raw(&b, body, 128);
  /* Abort csid 6. */
  static const uint8_t ab[] = {0x02, 0, 0, 0, 0, 0, 4, 0x02, 0, 0, 0, 0, 0, 0, 0, 6};
  amf_put_raw(&b, ab, sizeof(ab));
  /* A fresh 2-byte message on csid 6 (fmt 1). */
  static const uint8_t h2[] = {0x46, 0, 0, 5, 0, 0, 2, 0x09, 7, 8};
  amf_put_raw(&b, h2, sizeof(h2));
  rtmp_reader_t r;
  rtmp_reader_init(&r, 0, 0);
  got_t g = {0};
  assert_int_equal(rtmp_reader_feed(&r, b.data, b.len, collect, &g), 0);
  assert_int_equal(g.n, 1);
  assert_int_equal(g.m[0].len, 2);
  assert_int_equal(g.data[0][0], 7);
  assert_int_equal(g.m[0].ts, 5);
  got_free(&g);
  rtmp_reader_free(&r);
  amf_buf_free(&b);
}

static void test_ack_window(void **state) {
  (void)state;
  rtmp_writer_t w;
  rtmp_writer_init(&w);
  amf_buf_t b;
  amf_buf_init(&b);
  rtmp_put_u32_msg(&w, &b, RTMP_MSG_WINDOW_ACK_SIZE, 1000);
  rtmp_reader_t r;
  rtmp_reader_init(&r, 0, 0);
  uint32_t seq = 0;
  assert_int_equal(rtmp_reader_ack_due(&r, &seq), 0);
  assert_int_equal(rtmp_reader_feed(&r, b.data, b.len, NULL, NULL), 0);
  assert_int_equal(r.window, 1000);
  assert_int_equal(rtmp_reader_ack_due(&r, &seq), 0);
  uint8_t *body = calloc(1, 1200);
  b.len = 0;
  rtmp_writer_put(&w, &b, 6, 9, 1, 0, body, 1200);
  assert_int_equal(rtmp_reader_feed(&r, b.data, b.len, NULL, NULL), 0);
  assert_int_equal(rtmp_reader_ack_due(&r, &seq), 1);
  assert_int_equal(seq, r.bytes_in);
  assert_int_equal(rtmp_reader_ack_due(&r, &seq), 0);   /* once per window */
  /* The peer's Acknowledgement is recorded. */
  b.len = 0;
  rtmp_put_u32_msg(&w, &b, RTMP_MSG_ACK, 777);
  assert_int_equal(rtmp_reader_feed(&r, b.data, b.len, NULL, NULL), 0);
  assert_int_equal(r.peer_acked, 777);
  rtmp_reader_free(&r);
  amf_buf_free(&b);
  free(body);
}

static void test_omsg_iov_pieces(void **state) {
  (void)state;
  uint8_t *body = malloc(10000);
  for (int i = 0; i < 10000; i++) body[i] = (uint8_t)(i * 3);
  rtmp_writer_t w1, w2;
  rtmp_writer_init(&w1);
  rtmp_writer_init(&w2);
  rtmp_writer_set_chunk_size(&w1, 1000);
  rtmp_writer_set_chunk_size(&w2, 1000);
  amf_buf_t ref;
  amf_buf_init(&ref);
  rtmp_writer_put(&w1, &ref, 6, 9, 1, 0x2000000, body, 10000);
  rtmp_omsg_t m;
  rtmp_writer_begin(&w2, &m, 6, 9, 1, 0x2000000, body, 10000);
  assert_int_equal(rtmp_omsg_wire_len(&m), ref.len);
  /* Extended timestamp: 4 more bytes in every fmt 3 header. */
  assert_int_equal(ref.len, 12 + 4 + 10000 + 9 * (1 + 4));
  uint8_t *got = malloc(ref.len);
  size_t have = 0, step = 1;
  while (have < ref.len) {
    struct iovec iov[3];
    int n = rtmp_omsg_iov(&m, iov, 3);
    assert_true(n > 0);
    size_t take = 0;
    for (int i = 0; i < n && take < step; i++) {
      size_t k = iov[i].iov_len < step - take ? iov[i].iov_len : step - take;
      memcpy(got + have + take, iov[i].iov_base, k);
      take += k;
    }
    size_t left = rtmp_omsg_advance(&m, take);
    have += take;
    assert_int_equal(left, ref.len - have);
    step = step * 3 % 1777 + 1;
  }
  assert_memory_equal(got, ref.data, ref.len);
  struct iovec iov[1];
  assert_int_equal(rtmp_omsg_iov(&m, iov, 1), 0);
  free(got);
  free(body);
  amf_buf_free(&ref);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_simple_handshake),
      cmocka_unit_test(test_digest_handshake_scheme0),
      cmocka_unit_test(test_digest_handshake_scheme1),
      cmocka_unit_test(test_digest_handshake_bad_digest_falls_back),
      cmocka_unit_test(test_deterministic_vector),
      cmocka_unit_test(test_handshake_errors),
      cmocka_unit_test(test_chunks_merged),
      cmocka_unit_test(test_chunks_byte_by_byte),
      cmocka_unit_test(test_chunks_random_splits),
      cmocka_unit_test(test_header_vector),
      cmocka_unit_test(test_set_chunk_size_errors),
      cmocka_unit_test(test_message_limits),
      cmocka_unit_test(test_buffered_bound),
      cmocka_unit_test(test_pending_bound_interleaved),
      cmocka_unit_test(test_budget_shared),
      cmocka_unit_test(test_bound_lowered),
      cmocka_unit_test(test_chunk_stream_errors),
      cmocka_unit_test(test_abort),
      cmocka_unit_test(test_ack_window),
      cmocka_unit_test(test_omsg_iov_pieces),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
