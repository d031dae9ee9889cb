/* Unit tests for controller/conntrack.c: the keys addresses are counted
 * under, the total and per-address caps, the deadline queue (settle,
 * rearm, expiry order), and that a table of many addresses frees itself
 * (run under ASan/LSan). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "conntrack.h"

static void key4(const char *ip, uint8_t key[CONNTRACK_KEY_LEN]) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(1234)};
  assert_int_equal(inet_pton(AF_INET, ip, &a.sin_addr), 1);
  assert_int_equal(conntrack_key((struct sockaddr *)&a, key), 0);
}

static void key6(const char *ip, uint8_t key[CONNTRACK_KEY_LEN]) {
  struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(1234)};
  assert_int_equal(inet_pton(AF_INET6, ip, &a.sin6_addr), 1);
  assert_int_equal(conntrack_key((struct sockaddr *)&a, key), 0);
}

static void test_keys(void **state) {
  uint8_t a[CONNTRACK_KEY_LEN], b[CONNTRACK_KEY_LEN];
  (void)state;
  key4("192.0.2.7", a);
  key6("::ffff:192.0.2.7", b);
  assert_memory_equal(a, b, CONNTRACK_KEY_LEN); /* one host, either family */
  key4("192.0.2.8", b);
  assert_memory_not_equal(a, b, CONNTRACK_KEY_LEN);
  /* IPv6 counts by /64: a host picking new addresses in its prefix stays one */
  key6("2001:db8:1:2::1", a);
  key6("2001:db8:1:2:ffff:eeee:dddd:cccc", b);
  assert_memory_equal(a, b, CONNTRACK_KEY_LEN);
  key6("2001:db8:1:3::1", b);
  assert_memory_not_equal(a, b, CONNTRACK_KEY_LEN);
  struct sockaddr un = {.sa_family = AF_UNIX};
  assert_int_equal(conntrack_key(&un, a), -1);
}

static void test_caps(void **state) {
  conntrack_t ct;
  conntrack_entry_t e[8];
  uint8_t x[CONNTRACK_KEY_LEN], y[CONNTRACK_KEY_LEN], z[CONNTRACK_KEY_LEN];
  (void)state;
  key4("10.0.0.1", x);
  key4("10.0.0.2", y);
  key4("10.0.0.3", z);
  assert_int_equal(conntrack_init(&ct, 5, 2, 0, 7), 0);
  assert_int_equal(conntrack_add(&ct, &e[0], x, 0), 0);
  assert_int_equal(conntrack_add(&ct, &e[1], x, 0), 0);
  memset(&e[2], 0x5a, sizeof(e[2]));
  assert_int_equal(conntrack_add(&ct, &e[2], x, 0), CONNTRACK_ADDR_FULL);
  assert_int_equal(((unsigned char *)&e[2])[0], 0x5a); /* untouched */
  assert_int_equal(conntrack_addr_count(&ct, x), 2);
  assert_int_equal(ct.count, 2); /* a refusal changes nothing */
  assert_int_equal(conntrack_add(&ct, &e[2], y, 0), 0);
  assert_int_equal(conntrack_add(&ct, &e[3], y, 0), 0);
  assert_int_equal(conntrack_add(&ct, &e[4], z, 0), 0);
  /* the total cap comes first, whoever asks */
  uint8_t w[CONNTRACK_KEY_LEN];
  key4("10.0.0.4", w);
  assert_int_equal(conntrack_add(&ct, &e[5], w, 0), CONNTRACK_FULL);
  assert_int_equal(conntrack_addr_count(&ct, w), 0);
  /* a closed connection frees its place, for its address and in all */
  conntrack_del(&ct, &e[0]);
  assert_int_equal(conntrack_addr_count(&ct, x), 1);
  assert_int_equal(conntrack_add(&ct, &e[0], x, 0), 0);
  conntrack_del(&ct, &e[4]);
  conntrack_del(&ct, &e[4]); /* twice: no effect */
  assert_int_equal(conntrack_addr_count(&ct, z), 0);
  assert_int_equal(ct.npeers, 2);
  assert_int_equal(conntrack_add(&ct, &e[5], w, 0), 0);
  assert_int_equal(ct.count, 5);
  conntrack_entry_t never;
  memset(&never, 0, sizeof(never));
  conntrack_del(&ct, &never); /* never added: no effect */
  assert_int_equal(ct.count, 5);
  conntrack_free(&ct);
}

static void test_no_caps(void **state) {
  conntrack_t ct;
  conntrack_entry_t e[100];
  uint8_t x[CONNTRACK_KEY_LEN];
  (void)state;
  key4("10.0.0.1", x);
  assert_int_equal(conntrack_init(&ct, 0, 0, 0, 1), 0);
  for (int i = 0; i < 100; i++) assert_int_equal(conntrack_add(&ct, &e[i], x, 0), 0);
  assert_int_equal(ct.count, 100);
  assert_int_equal(conntrack_addr_count(&ct, x), 0); /* not counted */
  assert_int_equal(conntrack_next_deadline(&ct), 0);  /* no deadline */
  for (int i = 0; i < 100; i++) conntrack_del(&ct, &e[i]);
  assert_int_equal(ct.count, 0);
  conntrack_free(&ct);
}

static void test_deadlines(void **state) {
  conntrack_t ct;
  conntrack_entry_t e[4];
  uint8_t x[CONNTRACK_KEY_LEN];
  (void)state;
  key4("10.0.0.1", x);
  assert_int_equal(conntrack_init(&ct, 0, 10, 1000, 3), 0);
  assert_int_equal(conntrack_add(&ct, &e[0], x, 100), 0);
  assert_int_equal(conntrack_add(&ct, &e[1], x, 200), 0);
  assert_int_equal(conntrack_add(&ct, &e[2], x, 300), 0);
  assert_int_equal(conntrack_add(&ct, &e[3], x, 400), 0);
  assert_int_equal(conntrack_next_deadline(&ct), 1100);
  assert_null(conntrack_expired(&ct, 1099));
  /* one that finished its handshake is never expired */
  conntrack_settle(&ct, &e[0]);
  assert_int_equal(conntrack_next_deadline(&ct), 1200);
  /* a re-armed one goes to the back with a new deadline */
  conntrack_rearm(&ct, &e[1], 500);
  assert_int_equal(conntrack_next_deadline(&ct), 1300);
  assert_ptr_equal(conntrack_expired(&ct, 1400), &e[2]);
  assert_ptr_equal(conntrack_expired(&ct, 1400), &e[3]);
  assert_null(conntrack_expired(&ct, 1400));
  assert_ptr_equal(conntrack_expired(&ct, 1500), &e[1]);
  assert_int_equal(conntrack_next_deadline(&ct), 0);
  /* expired ones are still counted until the owner closes them */
  assert_int_equal(conntrack_addr_count(&ct, x), 4);
  /* closing one that is still waiting takes it off the queue */
  conntrack_rearm(&ct, &e[2], 2000);
  conntrack_del(&ct, &e[2]);
  assert_int_equal(conntrack_next_deadline(&ct), 0);
  assert_null(conntrack_expired(&ct, 1000000));
  for (int i = 0; i < 4; i++) conntrack_del(&ct, &e[i]);
  assert_int_equal(ct.count, 0);
  assert_int_equal(ct.npeers, 0);
  conntrack_free(&ct);
}

/* Many addresses (an attacker's): the table grows, counts stay right, and
 * entries left at free time are freed (LSan). */
static void test_many_addresses(void **state) {
  conntrack_t ct;
  enum { N = 5000 };
  conntrack_entry_t *e = calloc(2 * N, sizeof(*e)), spare;
  uint8_t k[CONNTRACK_KEY_LEN];
  (void)state;
  assert_non_null(e);
  assert_int_equal(conntrack_init(&ct, 0, 2, 10, 99), 0);
  for (int i = 0; i < N; i++) {
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(0x0a000000u + (uint32_t)i);
    conntrack_key((struct sockaddr *)&a, k);
    assert_int_equal(conntrack_add(&ct, &e[2 * i], k, i), 0);
    assert_int_equal(conntrack_add(&ct, &e[2 * i + 1], k, i), 0);
    assert_int_equal(conntrack_add(&ct, &spare, k, i), CONNTRACK_ADDR_FULL);
  }
  assert_int_equal(ct.npeers, N);
  assert_true(ct.nbuckets >= N);
  for (int i = 0; i < N; i += 2) {
    conntrack_del(&ct, &e[2 * i]);
    conntrack_del(&ct, &e[2 * i + 1]);
  }
  assert_int_equal(ct.npeers, N / 2);
  assert_int_equal(ct.count, N);
  int n = 0;
  while (conntrack_expired(&ct, 1000000)) n++;
  assert_int_equal(n, N); /* each remaining one once, in order */
  conntrack_free(&ct);
  conntrack_free(&ct); /* twice: no effect */
  free(e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_keys),       cmocka_unit_test(test_caps),
      cmocka_unit_test(test_no_caps),    cmocka_unit_test(test_deadlines),
      cmocka_unit_test(test_many_addresses),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
