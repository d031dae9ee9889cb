/* Unit tests for controller/session.c: the session table, parked polls on a
 * virtual clock, generations, the per-node relay queue and leases, without
 * nng, PostgreSQL or threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lease.h"
#include "session.h"

static sess_table_t *table_new(void) {
  sess_table_t *t = malloc(sizeof(*t));
  assert_non_null(t);
  sess_table_init(t);
  return t;
}

static sess_t *mk(int64_t id, uint8_t tok, int64_t now) {
  sess_t *x = calloc(1, sizeof(*x));
  assert_non_null(x);
  memset(x->token, tok, SESS_TOKEN_LEN);
  x->id = id;
  x->epoch = 1;
  x->last_hb_ms = now;
  return x;
}

static uint8_t *tokbuf(uint8_t tok) {
  static uint8_t b[SESS_TOKEN_LEN];
  memset(b, tok, sizeof(b));
  return b;
}

static sess_t *add(sess_table_t *t, sess_t *x, int64_t now) {
  sess_park_t *p;
  sess_relay_t *r;
  sess_t *old = sess_add(t, x, now, &p, &r);
  sess_relays_free(r, NULL);
  return old;
}

static void free_one(sess_t *x, void *arg) {
  sess_table_t *t = arg;
  sess_remove(t, x);
  sess_relays_free(x->relays, NULL);
  free(x);
}

static void table_free(sess_table_t *t) {
  sess_foreach(t, free_one, t);
  assert_int_equal(sess_count(t), 0);
  free(t);
}

/* ---- the table ---- */

static void add_find_remove(void **state) {
  (void)state;
  sess_table_t *t = table_new();
  sess_t *a = mk(7, 0xa1, 1000), *b = mk(8, 0xb2, 1000);
  assert_null(add(t, a, 1000));
  assert_null(add(t, b, 1000));
  assert_int_equal(sess_count(t), 2);
  assert_ptr_equal(sess_find_id(t, 7), a);
  assert_ptr_equal(sess_find_id(t, 8), b);
  assert_null(sess_find_id(t, 9));
  assert_ptr_equal(sess_find_token(t, tokbuf(0xa1)), a);
  assert_ptr_equal(sess_find_token(t, tokbuf(0xb2)), b);
  assert_null(sess_find_token(t, tokbuf(0xc3)));
  sess_remove(t, a);
  assert_int_equal(sess_count(t), 1);
  assert_null(sess_find_id(t, 7));
  assert_null(sess_find_token(t, tokbuf(0xa1)));
  assert_ptr_equal(sess_find_id(t, 8), b);
  free(a);
  table_free(t);
}

static void newer_session_replaces_older(void **state) {
  (void)state;
  sess_table_t *t = table_new();
  sess_t *old = mk(7, 0x11, 1000), *n = mk(7, 0x22, 2000);
  sess_park_t park = {.req_id = 5, .known = 1, .since_ms = 1500};
  sess_park_t *answer = NULL, *op;
  sess_relay_t *or;
  int item = 0;
  add(t, old, 1000);
  sess_park_set(old, &park, 1);
  assert_int_equal(sess_relay_push(old, &item, &answer), 0);
  assert_ptr_equal(answer, &park);      /* the queued relay answers the parked poll */
  sess_park_set(old, &park, 1);
  assert_ptr_equal(sess_add(t, n, 2000, &op, &or), old);
  /* The old one is revoked, not removed: its token still says "revoked". */
  assert_true(old->revoked);
  assert_int_equal(old->revoked_ms, 2000);
  assert_ptr_equal(op, &park);
  assert_non_null(or);
  assert_ptr_equal(or->item, &item);
  assert_null(old->park);
  assert_null(old->relays);
  sess_relays_free(or, NULL);
  assert_ptr_equal(sess_find_id(t, 7), n);
  assert_ptr_equal(sess_find_token(t, tokbuf(0x11)), old);
  assert_ptr_equal(sess_find_token(t, tokbuf(0x22)), n);
  assert_int_equal(sess_count(t), 2);
  /* Only the live session answers by id, wherever the revoked one sits. */
  sess_remove(t, n);
  assert_null(sess_find_id(t, 7));
  assert_ptr_equal(sess_find_token(t, tokbuf(0x11)), old);
  free(n);
  table_free(t);
}

static void expiry_on_a_virtual_clock(void **state) {
  (void)state;
  sess_t *x = mk(7, 1, 1000);
  assert_int_equal(sess_expired(x, 4000, 3000, 30000), 0);
  assert_int_equal(sess_expired(x, 4001, 3000, 30000), 2);  /* silent: offline */
  sess_heartbeat(x, 4000, 0);
  assert_int_equal(sess_expired(x, 7000, 3000, 30000), 0);
  sess_park_t *p;
  sess_relay_t *r;
  sess_revoke(x, 7000, &p, &r);
  assert_int_equal(sess_expired(x, 37000, 3000, 30000), 0); /* revoked: kept a while */
  assert_int_equal(sess_expired(x, 37001, 3000, 30000), 1);
  free(x);
}

/* ---- parked polls ---- */

static void poll_answered_on_generation_change(void **state) {
  (void)state;
  sess_t *x = mk(7, 1, 0);
  sess_park_t park = {.req_id = 9, .known = 3, .since_ms = 100}, *p;
  sess_relay_t *r;
  assert_null(sess_park_set(x, &park, 3));
  assert_int_equal(sess_reconcile(x, 3, 1, 200, &p, &r), SESS_KEEP);
  assert_null(p);
  assert_ptr_equal(x->park, &park);     /* same generation: still parked */
  assert_int_equal(sess_reconcile(x, 4, 1, 300, &p, &r), SESS_ANSWER);
  assert_ptr_equal(p, &park);
  assert_null(x->park);
  assert_int_equal(x->desired, 4);
  assert_false(x->revoked);
  free(x);
}

static void poll_answered_on_relay_submit(void **state) {
  (void)state;
  sess_t *x = mk(7, 1, 0);
  sess_park_t park = {.req_id = 9, .known = 3, .since_ms = 100}, *answer = NULL;
  int a = 1, b = 2;
  assert_int_equal(sess_relay_push(x, &a, &answer), 0);
  assert_null(answer);                  /* nothing parked: it waits for the next poll */
  sess_park_set(x, &park, 3);
  assert_int_equal(sess_relay_push(x, &b, &answer), 0);
  assert_ptr_equal(answer, &park);
  assert_null(x->park);
  sess_relays_free(x->relays, NULL);
  free(x);
}

static void poll_answered_on_timeout(void **state) {
  (void)state;
  sess_t *x = mk(7, 1, 0);
  sess_park_t park = {.req_id = 9, .known = 3, .since_ms = 1000};
  assert_null(sess_poll_timeout(x, 99999, 1000)); /* nothing parked */
  sess_park_set(x, &park, 3);
  assert_null(sess_poll_timeout(x, 2000, 1000));  /* exactly the timeout: not yet */
  assert_ptr_equal(x->park, &park);
  assert_ptr_equal(sess_poll_timeout(x, 2001, 1000), &park);
  assert_null(x->park);
  assert_null(sess_poll_timeout(x, 5000, 1000));  /* answered once */
  free(x);
}

static void parking_again_returns_the_previous_poll(void **state) {
  (void)state;
  sess_t *x = mk(7, 1, 0);
  sess_park_t p1 = {.req_id = 1}, p2 = {.req_id = 2};
  assert_null(sess_park_set(x, &p1, 5));
  assert_int_equal(x->desired, 5);
  assert_ptr_equal(sess_park_set(x, &p2, 5), &p1);
  assert_ptr_equal(sess_park_take(x), &p2);
  assert_null(sess_park_take(x));
  free(x);
}

/* ---- generations ---- */

static void generations(void **state) {
  (void)state;
  sess_t *x = mk(7, 1, 0);
  sess_park_t *p;
  sess_relay_t *r;
  uint64_t applied = 0;
  assert_int_equal(sess_heartbeat(x, 10, 2), 0);   /* desired unknown yet */
  assert_int_equal(sess_reconcile(x, 6, 1, 20, &p, &r), SESS_KEEP);
  assert_int_equal(sess_heartbeat(x, 30, 5), 6);   /* the heartbeat reply says 6 */
  assert_int_equal(x->applied, 5);
  assert_int_equal(x->last_hb_ms, 30);
  assert_true(sess_take_heartbeat(x, &applied));
  assert_int_equal(applied, 5);
  assert_false(sess_take_heartbeat(x, &applied)); /* written once */
  sess_heartbeat(x, 40, 6);
  assert_true(sess_take_heartbeat(x, &applied));
  assert_int_equal(applied, 6);
  free(x);
}

static void reconcile_revokes(void **state) {
  (void)state;
  sess_t *x = mk(7, 1, 0), *y = mk(8, 2, 0);
  sess_park_t park = {.req_id = 9, .known = 3}, *p;
  sess_relay_t *r;
  int item;
  sess_park_t *ans = NULL;
  sess_relay_push(x, &item, &ans);
  sess_park_set(x, &park, 3);
  assert_int_equal(sess_reconcile(x, 3, 2, 500, &p, &r), SESS_SECRET);
  assert_true(x->revoked);
  assert_int_equal(x->revoked_ms, 500);
  assert_ptr_equal(p, &park);
  assert_non_null(r);
  assert_ptr_equal(r->item, &item);
  sess_relays_free(r, NULL);
  assert_int_equal(sess_reconcile(y, -1, 1, 600, &p, &r), SESS_DELETED);
  assert_true(y->revoked);
  assert_null(p);
  uint64_t applied;
  sess_heartbeat(y, 700, 1);
  assert_false(sess_take_heartbeat(y, &applied));  /* revoked: nothing to write */
  free(x);
  free(y);
}

/* ---- relay queue ---- */

static size_t size_of(void *item) { return (size_t)*(int *)item; }

static int released;
static void release(void *item) { released += *(int *)item; }

static void relay_queue_order_and_bounds(void **state) {
  (void)state;
  sess_t *x = mk(7, 1, 0);
  int v[SESS_RELAYS_MAX + 1];
  sess_park_t *answer = NULL;
  for (int i = 0; i < SESS_RELAYS_MAX; i++) {
    v[i] = 10 + i;
    assert_int_equal(sess_relay_push(x, &v[i], &answer), 0);
  }
  v[SESS_RELAYS_MAX] = 99;
  assert_int_equal(sess_relay_push(x, &v[SESS_RELAYS_MAX], &answer), -1); /* full */
  assert_int_equal(x->nrelays, SESS_RELAYS_MAX);
  /* At most 3 by count. */
  sess_relay_t *r = sess_relays_take(x, 3, 1000, size_of), *e = r;
  for (int i = 0; i < 3; i++, e = e->next) assert_ptr_equal(e->item, &v[i]);
  assert_null(e);
  sess_relays_free(r, NULL);
  /* By bytes: 13 + 14 = 27 fits in 30, 15 more does not. */
  r = sess_relays_take(x, 64, 30, size_of);
  assert_ptr_equal(r->item, &v[3]);
  assert_ptr_equal(r->next->item, &v[4]);
  assert_null(r->next->next);
  sess_relays_free(r, NULL);
  /* One at least, even over the byte budget. */
  r = sess_relays_take(x, 64, 1, size_of);
  assert_ptr_equal(r->item, &v[5]);
  assert_null(r->next);
  sess_relays_free(r, NULL);
  assert_int_equal(x->nrelays, SESS_RELAYS_MAX - 6);
  /* Room again after taking; a new one goes last. */
  assert_int_equal(sess_relay_push(x, &v[SESS_RELAYS_MAX], &answer), 0);
  r = sess_relays_take(x, 64, 100000, size_of);
  int n = 0;
  for (e = r; e; e = e->next, n++)
    if (e->next == NULL) assert_ptr_equal(e->item, &v[SESS_RELAYS_MAX]);
  assert_int_equal(n, SESS_RELAYS_MAX - 6 + 1);
  assert_null(x->relays);
  assert_null(x->relays_tail);
  assert_int_equal(x->nrelays, 0);
  assert_null(sess_relays_take(x, 64, 100000, size_of)); /* empty */
  released = 0;
  sess_relays_free(r, release);
  int want = 0;
  for (int i = 6; i <= SESS_RELAYS_MAX; i++) want += v[i];
  assert_int_equal(released, want);
  /* The queue still works after being emptied. */
  assert_int_equal(sess_relay_push(x, &v[0], &answer), 0);
  assert_ptr_equal(x->relays, x->relays_tail);
  sess_relays_free(x->relays, NULL);
  free(x);
}

/* ---- leases ---- */

static void lease_apply(void **state) {
  (void)state;
  sess_t *x = mk(7, 1, 0);
  sess_park_t park = {.req_id = 3}, *p;
  sess_relay_t *r;
  assert_int_equal(sess_lease_apply(x, 0, 10, &p, &r), LEASE_KEEP); /* connect on its way */
  assert_false(x->revoked);
  assert_int_equal(sess_lease_apply(x, 1, 20, &p, &r), LEASE_CLAIM);
  assert_true(x->claimed);
  assert_int_equal(sess_lease_apply(x, 1, 30, &p, &r), LEASE_KEEP);
  sess_park_set(x, &park, 0);
  assert_int_equal(sess_lease_apply(x, 0, 40, &p, &r), LEASE_LOST);
  assert_true(x->revoked);
  assert_int_equal(x->revoked_ms, 40);
  assert_ptr_equal(p, &park);
  free(x);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(add_find_remove),
      cmocka_unit_test(newer_session_replaces_older),
      cmocka_unit_test(expiry_on_a_virtual_clock),
      cmocka_unit_test(poll_answered_on_generation_change),
      cmocka_unit_test(poll_answered_on_relay_submit),
      cmocka_unit_test(poll_answered_on_timeout),
      cmocka_unit_test(parking_again_returns_the_previous_poll),
      cmocka_unit_test(generations),
      cmocka_unit_test(reconcile_revokes),
      cmocka_unit_test(relay_queue_order_and_bounds),
      cmocka_unit_test(lease_apply),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
