/* Unit tests for dataplane/quic_cid.c without sockets or ngtcp2
 * connections: the endpoint's connection-ID table routes an ID to its
 * connection (only an exact ID: length and bytes), keeps thousands of IDs
 * in its buckets, forgets one ID or every ID of a connection; the table of
 * the peers' stateless reset tokens the same, by sequence number or all of
 * a connection. The connections are opaque here: the tables only compare
 * their pointers. ASan checks that every entry is freed. */
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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cid_table),
      cmocka_unit_test(test_reset_tokens),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
