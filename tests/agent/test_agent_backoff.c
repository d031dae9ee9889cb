/* Unit tests for agent/agent_backoff.c and agent/agent_scram.c: the
 * reconnect delay stays within min(cap, 500 ms * 2^n) * [0.5, 1], and the
 * cached client-side SCRAM keys agree with common/scram.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <stdio.h>

#include <cmocka.h>

#include "agent_backoff.h"
#include "agent_scram.h"

static void test_backoff_bounds(void **state) {
  (void)state;
  assert_int_equal(agent_backoff_ms(0, 10000, 1.0), 500);
  assert_int_equal(agent_backoff_ms(0, 10000, 0.0), 250);
  assert_int_equal(agent_backoff_ms(1, 10000, 1.0), 1000);
  assert_int_equal(agent_backoff_ms(4, 10000, 1.0), 8000);
  assert_int_equal(agent_backoff_ms(5, 10000, 1.0), 10000);   /* capped */
  assert_int_equal(agent_backoff_ms(5, 10000, 0.0), 5000);
  assert_int_equal(agent_backoff_ms(4000000000u, 10000, 1.0), 10000);
  assert_int_equal(agent_backoff_ms(3, 1000, 0.5), 750);
  /* Out-of-range draws are clamped, never outside the bounds. */
  assert_int_equal(agent_backoff_ms(0, 10000, -3.0), 250);
  assert_int_equal(agent_backoff_ms(0, 10000, 7.0), 500);
}

/* After a successful AuthOk the attempt count is 0 again: the first delay
 * is back to [250, 500] ms. */
static void test_backoff_reset(void **state) {
  (void)state;
  long long hi = agent_backoff_ms(9, 10000, 1.0);
  long long lo = agent_backoff_ms(0, 10000, 1.0);
  assert_true(hi > lo);
  assert_true(lo <= 500);
}

static void test_jitter(void **state) {
  uint64_t s = 12345;
  double min = 1, max = 0;
  (void)state;
  for (int i = 0; i < 100000; i++) {
    double r = agent_rng_next(&s);
    assert_true(r >= 0 && r <= 1);
    if (r < min) min = r;
    if (r > max) max = r;
    long long d = agent_backoff_ms(3, 10000, r);
    assert_true(d >= 2000 && d <= 4000);
  }
  /* The draws spread over the interval (not a constant). */
  assert_true(min < 0.01 && max > 0.99);
  s = 0; /* a zero state is repaired, not stuck */
  assert_true(agent_rng_next(&s) > 0 || s != 0);
}

static void test_scram_agrees(void **state) {
  agent_scram_cache_t cache;
  scram_verifier_t v;
  char text[SCRAM_VERIFIER_MAX];
  uint8_t salt[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  uint8_t p1[32], p2[32], sig[32];
  const char *sec = "correct horse", *am = "n=a,r=x,r=xy,s=AQ==,i=4096,c=biws,r=xy";
  (void)state;

  memset(&cache, 0, sizeof(cache));
  const agent_scram_keys_t *k = agent_scram_keys(&cache, sec, strlen(sec), salt, 16, 4096);
  assert_non_null(k);
  assert_int_equal(scram_verifier_make(sec, strlen(sec), salt, 16, 4096, &v), 0);
  assert_memory_equal(k->verifier.stored_key, v.stored_key, 32);
  assert_memory_equal(k->verifier.server_key, v.server_key, 32);
  assert_int_equal(agent_scram_proof(k, am, strlen(am), p1), 0);
  assert_int_equal(scram_client_proof(sec, strlen(sec), salt, 16, 4096, am, strlen(am), p2), 0);
  assert_memory_equal(p1, p2, 32);
  assert_int_equal(scram_verify_proof(&v, am, strlen(am), p1), 0);
  assert_int_equal(scram_server_signature(&v, am, strlen(am), sig), 0);
  assert_int_equal(agent_scram_server_ok(k, am, strlen(am), sig, 32), 1);
  sig[31] ^= 1;
  assert_int_equal(agent_scram_server_ok(k, am, strlen(am), sig, 32), 0);
  assert_int_equal(agent_scram_server_ok(k, am, strlen(am), sig, 31), 0);

  /* The same salt again: no second PBKDF2. */
  assert_ptr_equal(agent_scram_keys(&cache, sec, strlen(sec), salt, 16, 4096), k);
  assert_int_equal(cache.derivations, 1);

  /* The Register verifier parses and checks against the secret, and its
   * keys are cached for a challenge carrying its salt. */
  assert_int_equal(agent_scram_register_verifier(&cache, sec, strlen(sec), 4096, text,
                                                 sizeof(text)), 0);
  assert_int_equal(cache.derivations, 2);
  assert_int_equal(scram_verifier_parse(text, &v), 0);
  assert_int_equal(scram_verifier_check(&v, sec, strlen(sec)), 0);
  assert_non_null(agent_scram_keys(&cache, sec, strlen(sec), v.salt, v.salt_len, v.iter));
  assert_int_equal(cache.derivations, 2);
  agent_scram_cache_wipe(&cache);
}

/* Several controller URLs: a lost session spreads the move over 0.1..3 s;
 * failed attempts back off but never beyond 2 s, so with the first URL
 * dead the second is tried within CONNECT_TIMEOUT + 2 s. */
static void test_failover(void **state) {
  (void)state;
  assert_int_equal(agent_failover_ms(0, 10000, 1, 0.0), 100);
  assert_int_equal(agent_failover_ms(0, 10000, 1, 1.0), 3000);
  assert_int_equal(agent_failover_ms(5, 10000, 1, 0.5), 1550); /* attempts do not matter */
  assert_int_equal(agent_failover_ms(0, 1000, 1, 1.0), 1000);  /* backoffmax wins */
  for (unsigned n = 0; n < 70; n++) {
    long long d = agent_failover_ms(n, 300000, 0, 1.0);
    assert_true(d <= AGENT_FAILOVER_CAP_MS);
    assert_true(agent_failover_ms(n, 300000, 0, 0.0) >= AGENT_BACKOFF_BASE_MS / 2);
  }
  assert_int_equal(agent_failover_ms(0, 10000, 0, 1.0), 500);
  /* 10000 agents losing one replica: no 100 ms window holds more than a
   * few percent of them. */
  uint64_t rng = 42;
  unsigned bins[31] = {0};
  for (int i = 0; i < 10000; i++) bins[agent_failover_ms(0, 10000, 1, agent_rng_next(&rng)) / 100]++;
  for (int i = 0; i < 31; i++) assert_true(bins[i] < 600);
}

/* agent_first_url spreads a fleet over its controller URLs, stably; the
 * values are pinned (tests/integration/test_autonomy.py computes the same). */
static void test_first_url(void **state) {
  (void)state;
  assert_int_equal(agent_first_url("anything", 0), 0);
  assert_int_equal(agent_first_url("anything", 1), 0);
  assert_int_equal(agent_first_url("two-urls", 2), 1);
  assert_int_equal(agent_first_url("mover", 2), 1);
  assert_int_equal(agent_first_url("sim-0", 3), 0);
  assert_int_equal(agent_first_url("sim-1", 3), 2);
  assert_int_equal(agent_first_url("edge-a1", 5), 3);
  assert_int_equal(agent_first_url("hq", 4), 3);
  /* 3,000 simulated agents over 3 replicas: each gets its share within 10 % */
  unsigned count[3] = {0};
  char name[32];
  for (int i = 0; i < 3000; i++) {
    snprintf(name, sizeof(name), "sim%d", i);
    size_t k = agent_first_url(name, 3);
    assert_true(k < 3);
    count[k]++;
    assert_int_equal(agent_first_url(name, 3), k); /* stable */
  }
  for (int k = 0; k < 3; k++) assert_true(count[k] >= 900 && count[k] <= 1100);
}

/* agent_patience_ms: the first waits are the short ones (a dead replica
 * is left at once), waits that run out in a row double up to the cap. */
static void test_patience(void **state) {
  (void)state;
  assert_int_equal(agent_patience_ms(AGENT_CONNECT_BASE_MS, AGENT_CONNECT_CAP_MS, 0), 2000);
  assert_int_equal(agent_patience_ms(AGENT_CONNECT_BASE_MS, AGENT_CONNECT_CAP_MS, 1), 4000);
  assert_int_equal(agent_patience_ms(AGENT_CONNECT_BASE_MS, AGENT_CONNECT_CAP_MS, 2), 8000);
  assert_int_equal(agent_patience_ms(AGENT_CONNECT_BASE_MS, AGENT_CONNECT_CAP_MS, 3), 8000);
  assert_int_equal(agent_patience_ms(AGENT_ANSWER_BASE_MS, AGENT_ANSWER_CAP_MS, 0), 4000);
  assert_int_equal(agent_patience_ms(AGENT_ANSWER_BASE_MS, AGENT_ANSWER_CAP_MS, 1), 8000);
  assert_int_equal(agent_patience_ms(AGENT_ANSWER_BASE_MS, AGENT_ANSWER_CAP_MS, 2), 10000);
  /* no overflow however long the run */
  assert_int_equal(agent_patience_ms(AGENT_ANSWER_BASE_MS, AGENT_ANSWER_CAP_MS, 4000000000u),
                   10000);
  /* never beyond what an agent with one URL waits */
  assert_true(AGENT_CONNECT_CAP_MS <= AGENT_ANSWER_CAP_MS);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_patience),
      cmocka_unit_test(test_backoff_bounds),
      cmocka_unit_test(test_backoff_reset),
      cmocka_unit_test(test_jitter),
      cmocka_unit_test(test_failover),
      cmocka_unit_test(test_first_url),
      cmocka_unit_test(test_scram_agrees),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
