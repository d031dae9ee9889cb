/* Unit tests for controller/spwire.c: the SP header and message framing
 * the control gate speaks with nng's REQ sockets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "spwire.h"

static const uint8_t REQ_HDR[8] = {0, 'S', 'P', 0, 0x00, 0x30, 0, 0};

/* put writes one request as nng's REQ sends it: length, id, body. */
static size_t put(uint8_t *out, uint32_t id, const char *body) {
  size_t n = strlen(body);
  spwire_frame(out, id, body, n);
  return spwire_frame_len(n);
}

static void test_header(void **state) {
  (void)state;
  uint8_t h[8];
  spwire_header(h, SPWIRE_PROTO_REP);
  static const uint8_t rep[8] = {0, 'S', 'P', 0, 0x00, 0x31, 0, 0};
  assert_memory_equal(h, rep, 8);
  spwire_header(h, SPWIRE_PROTO_REQ);
  assert_memory_equal(h, REQ_HDR, 8);
}

static int feed_all(spwire_rx_t *rx, const uint8_t *d, size_t n) {
  size_t used;
  uint32_t id;
  uint8_t *body = NULL;
  size_t bl;
  int rc = spwire_rx_feed(rx, d, n, &used, &id, &body, &bl);
  free(body);
  return rc;
}

static void test_header_refused(void **state) {
  (void)state;
  static const uint8_t bad[][8] = {
      {0, 'S', 'P', 0, 0x00, 0x31, 0, 0}, /* a REP peer */
      {0, 'S', 'P', 0, 0x00, 0x20, 0, 0}, /* pair */
      {0, 'S', 'P', 1, 0x00, 0x30, 0, 0}, /* another version */
      {0, 'S', 'P', 0, 0x00, 0x30, 0, 1}, /* reserved bytes set */
      {'G', 'E', 'T', ' ', '/', ' ', 'H', 'T'},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    spwire_rx_t rx;
    spwire_rx_init(&rx, 1024);
    assert_int_equal(feed_all(&rx, bad[i], 8), SPWIRE_BAD_HEADER);
    spwire_rx_free(&rx);
  }
  /* a good header alone: nothing yet, all taken */
  spwire_rx_t rx;
  size_t used;
  uint32_t id;
  uint8_t *body;
  size_t bl;
  spwire_rx_init(&rx, 1024);
  assert_int_equal(spwire_rx_feed(&rx, REQ_HDR, 8, &used, &id, &body, &bl), SPWIRE_MORE);
  assert_int_equal(used, 8);
  spwire_rx_free(&rx);
}

/* The agent's side: a REP peer's header, then a reply; REQ's header refused. */
static void test_reply_side(void **state) {
  (void)state;
  uint8_t wire[64], head[12];
  size_t used, bl, n = 8;
  uint32_t id;
  uint8_t *body = NULL;
  spwire_rx_t rx;
  spwire_header(wire, SPWIRE_PROTO_REP);
  n += put(wire + n, 0x80000007u, "ok");
  spwire_frame_head(head, 0x80000007u, 2);
  assert_memory_equal(head, wire + 8, 12); /* the head of the same frame */
  spwire_rx_init(&rx, 1024);
  spwire_rx_expect(&rx, SPWIRE_PROTO_REP);
  assert_int_equal(spwire_rx_feed(&rx, wire, n, &used, &id, &body, &bl), SPWIRE_MESSAGE);
  assert_int_equal(id, 0x80000007u);
  assert_int_equal(bl, 2);
  assert_memory_equal(body, "ok", 2);
  free(body);
  spwire_rx_free(&rx);
  spwire_rx_init(&rx, 1024);
  spwire_rx_expect(&rx, SPWIRE_PROTO_REP);
  assert_int_equal(feed_all(&rx, REQ_HDR, 8), SPWIRE_BAD_HEADER);
  spwire_rx_free(&rx);
}

/* Three requests (one with an empty body) after the header, fed split at
 * every pair of byte boundaries: each comes out whole, in order. */
static void test_split_everywhere(void **state) {
  (void)state;
  uint8_t wire[256];
  size_t n = 0;
  memcpy(wire, REQ_HDR, 8);
  n = 8;
  n += put(wire + n, 0x80000001u, "hello");
  n += put(wire + n, 0x80000002u, "");
  n += put(wire + n, 0xfffffffeu, "a longer request body");
  static const char *want[] = {"hello", "", "a longer request body"};
  static const uint32_t want_id[] = {0x80000001u, 0x80000002u, 0xfffffffeu};
  for (size_t a = 0; a <= n; a++) {
    for (size_t b = a; b <= n; b++) {
      spwire_rx_t rx;
      spwire_rx_init(&rx, 64);
      size_t cuts[4] = {0, a, b, n}, got = 0;
      for (int k = 0; k < 3; k++) {
        size_t off = cuts[k];
        while (off < cuts[k + 1] || (off == cuts[k + 1] && k == 2 && got < 3)) {
          size_t used;
          uint32_t id;
          uint8_t *body = NULL;
          size_t bl;
          int rc = spwire_rx_feed(&rx, wire + off, cuts[k + 1] - off, &used, &id, &body, &bl);
          assert_true(rc == SPWIRE_MORE || rc == SPWIRE_MESSAGE);
          off += used;
          if (rc == SPWIRE_MORE) {
            assert_int_equal(off, cuts[k + 1]);
            break;
          }
          assert_true(got < 3);
          assert_int_equal(id, want_id[got]);
          assert_int_equal(bl, strlen(want[got]));
          assert_non_null(body);
          assert_memory_equal(body, want[got], bl);
          free(body);
          got++;
        }
      }
      assert_int_equal(got, 3);
      spwire_rx_free(&rx);
    }
  }
}

/* Several messages in one buffer: one per call, *used says where the next begins. */
static void test_several_in_one(void **state) {
  (void)state;
  uint8_t wire[128];
  size_t n = 8, off = 0;
  memcpy(wire, REQ_HDR, 8);
  for (uint32_t i = 0; i < 4; i++) n += put(wire + n, 0x80000000u | i, "xy");
  spwire_rx_t rx;
  spwire_rx_init(&rx, 16);
  for (uint32_t i = 0; i < 4; i++) {
    size_t used, bl;
    uint32_t id;
    uint8_t *body;
    assert_int_equal(spwire_rx_feed(&rx, wire + off, n - off, &used, &id, &body, &bl),
                     SPWIRE_MESSAGE);
    off += used;
    assert_int_equal(id, 0x80000000u | i);
    assert_int_equal(bl, 2);
    free(body);
  }
  assert_int_equal(off, n);
  spwire_rx_free(&rx);
}

static void test_bounds(void **state) {
  (void)state;
  uint8_t wire[64];
  spwire_rx_t rx;
  /* body exactly at the bound: accepted */
  memcpy(wire, REQ_HDR, 8);
  size_t n = 8 + put(wire + 8, 0x80000009u, "12345678");
  spwire_rx_init(&rx, 8);
  size_t used, bl;
  uint32_t id;
  uint8_t *body;
  assert_int_equal(spwire_rx_feed(&rx, wire, n, &used, &id, &body, &bl), SPWIRE_MESSAGE);
  free(body);
  spwire_rx_free(&rx);
  /* one byte over: refused as soon as the length is read, before the body */
  n = 8 + put(wire + 8, 0x80000009u, "123456789");
  spwire_rx_init(&rx, 8);
  assert_int_equal(feed_all(&rx, wire, 8 + 8), SPWIRE_TOO_LONG);
  spwire_rx_free(&rx);
  /* a huge length (nng would try to allocate it) */
  static const uint8_t huge[16] = {0, 'S', 'P', 0, 0, 0x30, 0, 0, 0x7f, 0xff, 0xff, 0xff,
                                   0xff, 0xff, 0xff, 0xff};
  spwire_rx_init(&rx, 1u << 20);
  assert_int_equal(feed_all(&rx, huge, 16), SPWIRE_TOO_LONG);
  spwire_rx_free(&rx);
  /* shorter than a request id */
  static const uint8_t shortm[16] = {0, 'S', 'P', 0, 0, 0x30, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3};
  spwire_rx_init(&rx, 1u << 20);
  assert_int_equal(feed_all(&rx, shortm, 16), SPWIRE_TOO_LONG);
  spwire_rx_free(&rx);
}

static void test_bad_id(void **state) {
  (void)state;
  uint8_t wire[64];
  memcpy(wire, REQ_HDR, 8);
  size_t n = 8 + put(wire + 8, 0x00000001u, "hop"); /* a hop, not a request id */
  spwire_rx_t rx;
  spwire_rx_init(&rx, 64);
  assert_int_equal(feed_all(&rx, wire, n), SPWIRE_BAD_ID);
  spwire_rx_free(&rx);
}

/* A message started and never finished: spwire_rx_free frees its body. */
static void test_partial_freed(void **state) {
  (void)state;
  uint8_t wire[64];
  memcpy(wire, REQ_HDR, 8);
  size_t n = 8 + put(wire + 8, 0x80000001u, "unfinished body");
  spwire_rx_t rx;
  spwire_rx_init(&rx, 64);
  assert_int_equal(feed_all(&rx, wire, n - 3), SPWIRE_MORE);
  assert_non_null(rx.body);
  spwire_rx_free(&rx);
}

static void test_frame(void **state) {
  (void)state;
  uint8_t out[16];
  spwire_frame(out, 0x81020304u, "ok", 2);
  static const uint8_t want[14] = {0, 0, 0, 0, 0, 0, 0, 6, 0x81, 2, 3, 4, 'o', 'k'};
  assert_int_equal(spwire_frame_len(2), 14);
  assert_memory_equal(out, want, 14);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_header),          cmocka_unit_test(test_header_refused),
      cmocka_unit_test(test_reply_side),
      cmocka_unit_test(test_split_everywhere), cmocka_unit_test(test_several_in_one),
      cmocka_unit_test(test_bounds),          cmocka_unit_test(test_bad_id),
      cmocka_unit_test(test_partial_freed),   cmocka_unit_test(test_frame),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
