/* Unit tests for agent/streamev.c: events keep their order and get seq
 * numbers from 1; a full queue refuses new events and counts them (the
 * waiting ones, which a heartbeat may carry, stay); an ack removes only
 * what was acknowledged, across the ring's end; long fields are cut. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "streamev.h"

static streamev_t ev(const char *path) {
  streamev_t e;
  memset(&e, 0, sizeof(e));
  snprintf(e.action, sizeof(e.action), "stream.kick");
  snprintf(e.path, sizeof(e.path), "%s", path);
  e.connection = 7;
  return e;
}

static void test_order_and_ack(void **state) {
  (void)state;
  static streamev_q_t q; /* large: not on the test's stack */
  streamev_init(&q);
  assert_null(streamev_at(&q, 0));
  streamev_t a = ev("live/a"), b = ev("live/b");
  assert_int_equal(streamev_push(&q, &a), 0);
  assert_int_equal(streamev_push(&q, &b), 0);
  assert_string_equal(streamev_at(&q, 0)->path, "live/a");
  assert_int_equal(streamev_at(&q, 0)->seq, 1);
  assert_int_equal(streamev_at(&q, 1)->seq, 2);
  assert_null(streamev_at(&q, 2));
  streamev_ack(&q, 1);
  assert_string_equal(streamev_at(&q, 0)->path, "live/b");
  streamev_ack(&q, 10); /* more than waits: all */
  assert_int_equal(q.n, 0);
  streamev_ack(&q, 1); /* nothing to ack */
  assert_int_equal(q.n, 0);
}

static void test_full_and_wrap(void **state) {
  (void)state;
  static streamev_q_t q;
  streamev_init(&q);
  char p[32];
  for (int i = 0; i < STREAMEV_MAX; i++) {
    snprintf(p, sizeof(p), "live/%d", i);
    streamev_t e = ev(p);
    assert_int_equal(streamev_push(&q, &e), 0);
  }
  streamev_t x = ev("live/over");
  assert_int_equal(streamev_push(&q, &x), -1);
  assert_int_equal(q.dropped, 1);
  assert_string_equal(streamev_at(&q, 0)->path, "live/0");
  assert_string_equal(streamev_at(&q, STREAMEV_MAX - 1)->path, "live/63");
  /* half go, new ones wrap around the ring, order kept */
  streamev_ack(&q, STREAMEV_MAX / 2);
  for (int i = 0; i < STREAMEV_MAX / 2; i++) {
    snprintf(p, sizeof(p), "live/n%d", i);
    streamev_t e = ev(p);
    assert_int_equal(streamev_push(&q, &e), 0);
  }
  assert_string_equal(streamev_at(&q, 0)->path, "live/32");
  assert_string_equal(streamev_at(&q, STREAMEV_MAX / 2)->path, "live/n0");
  assert_int_equal(streamev_at(&q, STREAMEV_MAX - 1)->seq, STREAMEV_MAX + STREAMEV_MAX / 2);
}

static void test_fields_cut(void **state) {
  (void)state;
  static streamev_q_t q;
  streamev_init(&q);
  streamev_t e;
  memset(&e, 'x', sizeof(e)); /* no terminator anywhere */
  assert_int_equal(streamev_push(&q, &e), 0);
  const streamev_t *o = streamev_at(&q, 0);
  assert_int_equal(strlen(o->action), sizeof(o->action) - 1);
  assert_int_equal(strlen(o->path), STREAMEV_PATH_MAX);
  assert_int_equal(strlen(o->addr), sizeof(o->addr) - 1);
  assert_int_equal(strlen(o->protocol), sizeof(o->protocol) - 1);
  /* what the controller would refuse is made printable */
  streamev_t b = ev("live/\xc3\xa9t\x01\xe9");
  snprintf(b.addr, sizeof(b.addr), "1.2.3.4:5\n\xff");
  snprintf(b.protocol, sizeof(b.protocol), "rtmp\x7f");
  assert_int_equal(streamev_push(&q, &b), 0);
  o = streamev_at(&q, 1);
  assert_string_equal(o->path, "live/\xc3\xa9t?\xe9");
  assert_string_equal(o->addr, "1.2.3.4:5??");
  assert_string_equal(o->protocol, "rtmp?");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_order_and_ack),
      cmocka_unit_test(test_full_and_wrap),
      cmocka_unit_test(test_fields_cut),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
