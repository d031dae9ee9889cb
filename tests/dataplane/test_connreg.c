/* Unit tests for dataplane/connreg.c: ids are unique and never reused,
 * entries come and go in any order, a kick reaches the owner's function
 * (which may remove its entry and others), kicks by path walk safely, the
 * byte counters are the owner's, and the play limits refuse with a reason
 * and count: players per stream, then the node's egress rate on a virtual
 * clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "connreg.h"

typedef struct owner {
  connreg_t *r;
  connreg_ent_t e;
  uint64_t in, out;
  int kicks;
  struct owner *also;   /* removed too when this one is kicked */
  int keep;             /* a kick leaves the entry registered (ends later) */
} owner_t;

static void on_kick(connreg_ent_t *e, void *arg) {
  owner_t *o = arg;
  assert_ptr_equal(e, &o->e);
  o->kicks++;
  if (!o->keep) connreg_remove(o->r, &o->e);
  if (o->also) connreg_remove(o->r, &o->also->e);
}

static void add(connreg_t *r, owner_t *o, int kind, const char *path, const char *addr) {
  memset(o, 0, sizeof(*o));
  o->r = r;
  assert_int_equal(connreg_add(r, &o->e, kind, "rtmp", path, addr, &o->in, &o->out, 1000.0,
                               on_kick, o),
                   0);
}

static void test_ids_and_removal(void **state) {
  (void)state;
  connreg_t r;
  connreg_init(&r);
  owner_t a, b, c;
  add(&r, &a, CONNREG_PUBLISHER, "live/a", "10.0.0.1:5000");
  add(&r, &b, CONNREG_PLAYER, "live/a", "10.0.0.2:5001");
  add(&r, &c, CONNREG_PLAYER, "live/b", "10.0.0.3:5002");
  assert_int_equal(r.count, 3);
  assert_true(a.e.id && b.e.id > a.e.id && c.e.id > b.e.id);
  assert_ptr_equal(connreg_find(&r, b.e.id), &b.e);
  assert_null(connreg_find(&r, 0));
  assert_null(connreg_find(&r, 999));
  assert_string_equal(b.e.path, "live/a");
  assert_string_equal(b.e.addr, "10.0.0.2:5001");
  b.out = 12345; /* the owner's counter, read through the entry */
  assert_int_equal(*connreg_find(&r, b.e.id)->bytes_out, 12345);
  uint64_t bid = b.e.id;
  connreg_remove(&r, &b.e);
  connreg_remove(&r, &b.e); /* again: nothing */
  connreg_remove(&r, NULL);
  assert_null(connreg_find(&r, bid));
  assert_int_equal(r.count, 2);
  assert_ptr_equal(r.head, &a.e);
  assert_ptr_equal(r.tail, &c.e);
  /* a new entry never reuses an id */
  add(&r, &b, CONNREG_PLAYER, "live/a", NULL);
  assert_true(b.e.id > c.e.id);
  assert_string_equal(b.e.addr, "");
  /* an address too long is cut, not overrun */
  char longaddr[200];
  memset(longaddr, 'x', sizeof(longaddr) - 1);
  longaddr[sizeof(longaddr) - 1] = 0;
  owner_t d;
  add(&r, &d, CONNREG_PLAYER, "live/a", longaddr);
  assert_int_equal(strlen(d.e.addr), CONNREG_ADDR_MAX - 1);
  assert_int_equal(connreg_count_path(&r, "live/a", CONNREG_PLAYER), 2);
  assert_int_equal(connreg_count_path(&r, "live/a", CONNREG_PUBLISHER), 1);
  assert_int_equal(connreg_count_path(&r, "live/zz", CONNREG_PLAYER), 0);
  connreg_fini(&r);
  assert_int_equal(r.count, 0);
  assert_null(r.head);
  assert_int_equal(a.e.id, 0);
}

static void test_kicks(void **state) {
  (void)state;
  connreg_t r;
  connreg_init(&r);
  owner_t p, x, y, z;
  add(&r, &p, CONNREG_PUBLISHER, "live/k", "p");
  add(&r, &x, CONNREG_PLAYER, "live/k", "x");
  add(&r, &y, CONNREG_PLAYER, "live/k", "y");
  add(&r, &z, CONNREG_PLAYER, "live/other", "z");
  assert_int_equal(connreg_kick(&r, 4242), -1);
  assert_int_equal(r.kicks, 0);
  assert_int_equal(connreg_kick(&r, x.e.id), 0);
  assert_int_equal(x.kicks, 1);
  assert_int_equal(x.e.id, 0);
  assert_int_equal(r.kicks, 1);
  /* a kick that removes another entry too, and one that keeps its own:
   * the walk neither loops nor touches what went */
  add(&r, &x, CONNREG_PLAYER, "live/k", "x2");
  y.keep = 1;
  p.also = &x;
  assert_int_equal(connreg_kick_path(&r, "live/k", CONNREG_PUBLISHER), 1);
  assert_int_equal(p.kicks, 1);
  assert_int_equal(x.e.id, 0);
  assert_int_equal(x.kicks, 0);
  assert_int_equal(connreg_kick_path(&r, "live/k", CONNREG_PLAYER), 1);
  assert_int_equal(y.kicks, 1);
  assert_true(y.e.id != 0 && y.e.kicked);
  assert_int_equal(connreg_kick_path(&r, "live/k", CONNREG_PLAYER), 0); /* not twice */
  assert_int_equal(z.kicks, 0);
  connreg_fini(&r);
}

static void test_limits(void **state) {
  (void)state;
  connreg_t r;
  char why[128];
  connreg_init(&r);
  /* no limits: anything goes */
  assert_int_equal(connreg_play_check(&r, 100000, 10.0, why, sizeof(why)), 0);
  connreg_set_limits(&r, 2, 1000000);
  assert_int_equal(connreg_play_check(&r, 1, 10.0, why, sizeof(why)), 0);
  assert_int_equal(connreg_play_check(&r, 2, 10.0, why, sizeof(why)), CONNREG_EPLAYERS);
  assert_non_null(strstr(why, "players per stream limit reached"));
  assert_int_equal(r.refused_players, 1);
  /* 2 Mbit/s sent to players for 2 s: over 1 Mbit/s */
  double t = 10.0;
  for (int i = 0; i < 200; i++, t += 0.01) connreg_egress(&r, t, 2500);
  assert_true(connreg_egress_bps(&r, t) > 1900000);
  assert_int_equal(r.egress_total, 500000);
  assert_int_equal(connreg_play_check(&r, 0, t, why, sizeof(why)), CONNREG_EBANDWIDTH);
  assert_string_equal(why, "node bandwidth limit reached");
  assert_int_equal(r.refused_bandwidth, 1);
  /* the players stop: once the window has passed, new ones may start */
  assert_int_equal(connreg_play_check(&r, 0, t + 2.5, why, sizeof(why)), 0);
  connreg_set_limits(&r, 0, 0);
  for (int i = 0; i < 200; i++, t += 0.01) connreg_egress(&r, t, 2500);
  assert_int_equal(connreg_play_check(&r, 5, t, why, sizeof(why)), 0);
  connreg_fini(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ids_and_removal),
      cmocka_unit_test(test_kicks),
      cmocka_unit_test(test_limits),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
