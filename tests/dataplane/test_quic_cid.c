/* Unit tests for dataplane/quic_cid.c without sockets or ngtcp2
 * connections: the endpoint's connection-ID table routes an ID to its
 * connection (only an exact ID: length and bytes), keeps thousands of IDs
 * in its buckets, forgets one ID or every ID of a connection; the table of
 * the peers' stateless reset tokens the same, by sequence number or all of
 * a connection. The connections are opaque here: the tables only compare
 * their pointers. ASan checks that every entry is freed. And the
 * congestion-controller hint of cc "auto": what a client writes in its
 * first DCID is what the server reads back, a DCID without the mark (any
 * other client's) is no hint, and the round trip picks the hint. */
#define _GNU_SOURCE /* quic_int.h: struct mmsghdr */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "quic_int.h"

#define NCID 5000

static quic_conn *fake(uintptr_t n) { return (quic_conn *)(n * 64); }

static ngtcp2_cid cid_of(uint32_t i, size_t len) {
  ngtcp2_cid c;
  memset(&c, 0, sizeof(c));
  c.datalen = len;
  for (size_t k = 0; k < len; k++) c.data[k] = (uint8_t)(i >> (8 * (k % 4)) ^ k * 31);
  return c;
}

static void test_cid_table(void **state) {
  (void)state;
  quic_endpoint *ep = calloc(1, sizeof(*ep));
  assert_non_null(ep);
  /* NCID IDs over three connections: more than buckets, so chains form */
  for (uint32_t i = 0; i < NCID; i++) {
    ngtcp2_cid c = cid_of(i, 16);
    assert_int_equal(quic_cid_add(ep, &c, fake(1 + i % 3)), 0);
  }
  for (uint32_t i = 0; i < NCID; i++) {
    ngtcp2_cid c = cid_of(i, 16);
    assert_ptr_equal(quic_cid_find(ep, c.data, c.datalen), fake(1 + i % 3));
  }
  /* the same bytes with another length are another ID */
  ngtcp2_cid c7 = cid_of(7, 16);
  assert_null(quic_cid_find(ep, c7.data, 8));
  assert_null(quic_cid_find(ep, c7.data, 0));
  ngtcp2_cid unknown = cid_of(NCID + 1, 16);
  assert_null(quic_cid_find(ep, unknown.data, unknown.datalen));
  /* one ID goes; its neighbours stay */
  quic_cid_remove(ep, &c7);
  assert_null(quic_cid_find(ep, c7.data, c7.datalen));
  ngtcp2_cid c8 = cid_of(8, 16);
  assert_ptr_equal(quic_cid_find(ep, c8.data, c8.datalen), fake(3));
  quic_cid_remove(ep, &c7); /* twice: nothing */
  /* every ID of connection 2 goes at once */
  quic_cid_remove_conn(ep, fake(2));
  for (uint32_t i = 0; i < NCID; i++) {
    ngtcp2_cid c = cid_of(i, 16);
    quic_conn *want = i % 3 == 1 || i == 7 ? NULL : fake(1 + i % 3);
    assert_ptr_equal(quic_cid_find(ep, c.data, c.datalen), want);
  }
  quic_cid_remove_conn(ep, fake(1));
  quic_cid_remove_conn(ep, fake(3));
  for (unsigned b = 0; b < QUIC_CID_BUCKETS; b++) assert_null(ep->cids[b]);
  free(ep);
}

static void token_of(uint32_t i, uint8_t *t) {
  for (size_t k = 0; k < NGTCP2_STATELESS_RESET_TOKENLEN; k++)
    t[k] = (uint8_t)((i * 2654435761u) >> (k % 4 * 8) ^ k);
}

static void test_reset_tokens(void **state) {
  (void)state;
  quic_endpoint *ep = calloc(1, sizeof(*ep));
  assert_non_null(ep);
  uint8_t t[NGTCP2_STATELESS_RESET_TOKENLEN];
  /* two connections, sequence numbers 0..999 each */
  for (uint32_t i = 0; i < 2000; i++) {
    token_of(i, t);
    assert_int_equal(quic_token_add(ep, fake(1 + i / 1000), i % 1000, t), 0);
  }
  for (uint32_t i = 0; i < 2000; i++) {
    token_of(i, t);
    assert_ptr_equal(quic_token_find(ep, t), fake(1 + i / 1000));
  }
  token_of(99999, t);
  assert_null(quic_token_find(ep, t));
  /* retired by sequence number: only that connection's */
  quic_token_remove(ep, fake(1), 5, 0);
  token_of(5, t);
  assert_null(quic_token_find(ep, t));
  token_of(1005, t);
  assert_ptr_equal(quic_token_find(ep, t), fake(2));
  /* all of a connection */
  quic_token_remove(ep, fake(2), 0, 1);
  for (uint32_t i = 1000; i < 2000; i++) {
    token_of(i, t);
    assert_null(quic_token_find(ep, t));
  }
  token_of(6, t);
  assert_ptr_equal(quic_token_find(ep, t), fake(1));
  quic_token_remove(ep, fake(1), 0, 1);
  for (unsigned b = 0; b < QUIC_TOKEN_BUCKETS; b++) assert_null(ep->tokens[b]);
  free(ep);
}

static void test_cc_hint(void **state) {
  (void)state;
  int hints[] = {QUIC_HINT_NONE, QUIC_HINT_NEAR, QUIC_HINT_FAR};
  for (uint32_t i = 0; i < 300; i++) {
    int h = hints[i % 3];
    ngtcp2_cid c = cid_of(i * 7919u, QUIC_CIDLEN);
    quic_cid_hint_set(&c, h);
    assert_int_equal(quic_cid_hint(&c), h);
    assert_int_equal(c.data[0] & 0xc0, 0xc0);
    /* only the first byte: the rest stays the random ID */
    ngtcp2_cid r = cid_of(i * 7919u, QUIC_CIDLEN);
    assert_memory_equal(c.data + 1, r.data + 1, QUIC_CIDLEN - 1);
  }
  /* a first byte without the mark is no hint, whatever its low bits */
  for (unsigned b = 0; b < 256; b++) {
    ngtcp2_cid c = cid_of(b, QUIC_CIDLEN);
    c.data[0] = (uint8_t)b;
    int want = b == 0xc1 ? QUIC_HINT_NEAR : b == 0xc2 ? QUIC_HINT_FAR : QUIC_HINT_NONE;
    assert_int_equal(quic_cid_hint(&c), want);
  }
  /* an ID of another length (not one of ours) is no hint */
  ngtcp2_cid c8 = cid_of(1, 8);
  quic_cid_hint_set(&c8, QUIC_HINT_NEAR);
  assert_int_equal(quic_cid_hint(&c8), QUIC_HINT_NONE);
  /* the controllers */
  assert_int_equal(quic_cc_for_hint(QUIC_HINT_NEAR, NGTCP2_CC_ALGO_BBR), NGTCP2_CC_ALGO_CUBIC);
  assert_int_equal(quic_cc_for_hint(QUIC_HINT_FAR, NGTCP2_CC_ALGO_CUBIC), NGTCP2_CC_ALGO_BBR);
  assert_int_equal(quic_cc_for_hint(QUIC_HINT_NONE, NGTCP2_CC_ALGO_RENO), NGTCP2_CC_ALGO_RENO);
  /* the round trip: under lan_rtt near, at or above it far, no answer far */
  assert_int_equal(quic_hint_for_rtt(0.0001, 0.002), QUIC_HINT_NEAR);
  assert_int_equal(quic_hint_for_rtt(0.002, 0.002), QUIC_HINT_FAR);
  assert_int_equal(quic_hint_for_rtt(0.050, 0.002), QUIC_HINT_FAR);
  assert_int_equal(quic_hint_for_rtt(-1., 0.002), QUIC_HINT_FAR);
  assert_int_equal(quic_hint_for_rtt(0.0001, 0.), QUIC_HINT_FAR); /* 0: bbr always */
  assert_string_equal(quic_cc_name(NGTCP2_CC_ALGO_CUBIC), "cubic");
  assert_string_equal(quic_cc_name(NGTCP2_CC_ALGO_BBR), "bbr");
  assert_string_equal(quic_cc_name(NGTCP2_CC_ALGO_RENO), "reno");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cid_table),
      cmocka_unit_test(test_reset_tokens),
      cmocka_unit_test(test_cc_hint),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
