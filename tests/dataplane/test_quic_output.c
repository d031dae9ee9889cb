/* Unit tests for the two decisions of dataplane/quic_output.c's write loop,
 * without ngtcp2 or sockets: which stream sends next (the send queue in the
 * order data came, turns that end at what a stream had when its turn
 * began, streams set aside by flow control, a packet with room left passed
 * on), and how packets are gathered into UDP GSO runs. */
#define _GNU_SOURCE /* quic_int.h: struct mmsghdr */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "quic_int.h"

typedef struct fx {
  quic_endpoint *ep;
  quic_conn *c;
  quic_stream *a, *b, *d; /* three streams with data, queued in that order */
} fx_t;

static int setup(void **state) {
  fx_t *x = calloc(1, sizeof(*x));
  if (!x) return -1;
  x->ep = calloc(1, sizeof(*x->ep));
  x->c = calloc(1, sizeof(*x->c));
  if (!x->ep || !x->c) return -1;
  x->ep->cfg.stream_sndbuf = 4096;
  x->c->ep = x->ep;
  quic_stream **s[3] = {&x->a, &x->b, &x->d};
  for (int i = 0; i < 3; i++) {
    *s[i] = quic_stream_new(x->c, (int64_t)i * 4);
    if (!*s[i]) return -1;
    (*s[i])->end_off = 1000;
    quic_sendq_push(x->c, *s[i]);
  }
  *state = x;
  return 0;
}

static int teardown(void **state) {
  fx_t *x = *state;
  while (x->c->streams) {
    quic_stream *s = x->c->streams;
    quic_stream_unlink(x->c, s);
    quic_stream_free(s);
  }
  free(x->c->sbuckets);
  free(x->c);
  free(x->ep);
  free(x);
  return 0;
}

/* The send queue from head to tail, |n| streams exactly. */
static void assert_queue(quic_conn *c, quic_stream *const *want, int n) {
  quic_stream *s = c->sq_head, *prev = NULL;
  for (int i = 0; i < n; i++, prev = s, s = s->sq_next) {
    assert_ptr_equal(s, want[i]);
    assert_ptr_equal(s->sq_prev, prev);
    assert_true(s->in_sendq);
  }
  assert_null(s);
  assert_ptr_equal(c->sq_tail, prev);
}

/* A stream that keeps writing during its turn sends what it had when the
 * turn began, then goes behind the others. */
static void test_turns(void **state) {
  fx_t *x = *state;
  quic_conn *c = x->c;
  quic_stream *a = x->a, *b = x->b, *d = x->d;
  assert_ptr_equal(quic_sched_next(c), a);
  assert_true(a->turn);
  assert_int_equal(a->turn_end, 1000);
  quic_sched_sent(c, a, 600, 0);
  a->end_off = 5000; /* writes on during its turn */
  assert_ptr_equal(quic_sched_next(c), a);
  assert_int_equal(a->turn_end, 1000); /* not moved by the new bytes */
  quic_sched_sent(c, a, 400, 0);
  assert_int_equal(a->sent_off, 1000);
  assert_queue(c, (quic_stream *[]){b, d, a}, 3);
  assert_false(a->turn);
  /* a packet without stream data (ACKs only) changes nothing */
  assert_ptr_equal(quic_sched_next(c), b);
  quic_sched_sent(c, b, -1, 0);
  assert_int_equal(b->sent_off, 0);
  assert_queue(c, (quic_stream *[]){b, d, a}, 3);
  quic_sched_sent(c, b, 1000, 0); /* all it had: out of the queue */
  assert_queue(c, (quic_stream *[]){d, a}, 2);
  assert_false(b->in_sendq);
  assert_ptr_equal(quic_sched_next(c), d);
  quic_sched_sent(c, d, 1000, 0);
  /* a's next turn covers what it wrote during the last */
  assert_ptr_equal(quic_sched_next(c), a);
  assert_int_equal(a->turn_end, 5000);
}

/* A head whose turn is over (its last frame carried no new bytes, e.g. a
 * FIN alone) goes to the tail when the next stream is chosen. */
static void test_turn_over_to_tail(void **state) {
  fx_t *x = *state;
  quic_conn *c = x->c;
  quic_stream *a = x->a, *b = x->b, *d = x->d;
  assert_ptr_equal(quic_sched_next(c), a);
  a->sent_off = 1000; /* reached turn_end */
  a->end_off = 1500;  /* and has more */
  quic_sched_sent(c, a, 0, 0);
  assert_ptr_equal(c->sq_head, a);
  assert_ptr_equal(quic_sched_next(c), b);
  assert_queue(c, (quic_stream *[]){b, d, a}, 3);
  assert_true(b->turn);
  assert_false(a->turn); /* its next turn starts afresh: turn_end 1500 */
}

/* Streams with nothing pending leave the queue; an empty queue has none. */
static void test_empty_leave(void **state) {
  fx_t *x = *state;
  quic_conn *c = x->c;
  x->a->sent_off = 1000;
  x->b->send_shut = 1; /* the peer's STOP_SENDING */
  assert_ptr_equal(quic_sched_next(c), x->d);
  assert_queue(c, (quic_stream *[]){x->d}, 1);
  assert_false(x->a->in_sendq);
  assert_false(x->b->in_sendq);
  x->d->fin_req = 1;
  quic_sched_sent(c, x->d, 1000, 0);
  assert_true(x->d->fin_sent);
  assert_null(quic_sched_next(c));
  assert_null(c->sq_head);
  assert_null(c->sq_tail);
}

/* Flow-controlled streams are out of line for the rest of the write and
 * come back, behind the streams that stayed, when it ends. The list they
 * wait in is a stack: they return in the reverse of the order they were
 * blocked in. */
static void test_blocked(void **state) {
  fx_t *x = *state;
  quic_conn *c = x->c;
  quic_stream *a = x->a, *b = x->b, *d = x->d;
  quic_stream *blocked = NULL;
  assert_ptr_equal(quic_sched_next(c), a);
  quic_sched_set_aside(c, a, &blocked);
  assert_ptr_equal(quic_sched_next(c), b);
  quic_sched_set_aside(c, b, &blocked);
  assert_ptr_equal(quic_sched_next(c), d);
  assert_queue(c, (quic_stream *[]){d}, 1);
  quic_sched_sent(c, d, 500, 0);
  quic_sendq_restore(c, blocked);
  assert_queue(c, (quic_stream *[]){d, b, a}, 3);
  /* their turns start again: no stale turn_end */
  assert_false(a->turn);
  assert_false(b->turn);
}

/* NGTCP2_ERR_WRITE_MORE: the stream's bytes are in a packet with room
 * left, and the next stream fills it even though the turn is not over. */
static void test_write_more(void **state) {
  fx_t *x = *state;
  quic_conn *c = x->c;
  quic_stream *a = x->a, *b = x->b, *d = x->d;
  assert_ptr_equal(quic_sched_next(c), a);
  quic_sched_sent(c, a, 300, 1);
  assert_int_equal(a->sent_off, 300);
  assert_queue(c, (quic_stream *[]){b, d, a}, 3);
  assert_ptr_equal(quic_sched_next(c), b);
  b->fin_req = 1;
  quic_sched_sent(c, b, 1000, 1); /* all of it and the FIN: gone */
  assert_true(b->fin_sent);
  assert_queue(c, (quic_stream *[]){d, a}, 2);
}

/* Equal packets make one run, sent when the write ends. */
static void test_gso_equal(void **state) {
  (void)state;
  quic_gso_run r = {0, 0, 0};
  for (int i = 0; i < 10; i++) {
    quic_gso_out f = quic_gso_room(&r, 1452);
    assert_int_equal(f.len, 0);
    assert_int_equal(r.off, (size_t)i * 1200);
    f = quic_gso_add(&r, 1200);
    assert_int_equal(f.len, 0);
  }
  assert_int_equal(r.off, 12000);
  assert_int_equal(r.gso, 1200);
  assert_int_equal(r.nrun, 10);
}

/* A shorter packet is the last segment of its run. */
static void test_gso_shorter_ends(void **state) {
  (void)state;
  quic_gso_run r = {0, 0, 0};
  assert_int_equal(quic_gso_add(&r, 1200).len, 0);
  assert_int_equal(quic_gso_add(&r, 1200).len, 0);
  quic_gso_out f = quic_gso_add(&r, 700);
  assert_int_equal(f.len, 2 * 1200 + 700);
  assert_int_equal(f.gso, 1200);
  assert_false(f.move);
  assert_int_equal(r.off, 0);
  assert_int_equal(r.nrun, 0);
  /* the next run takes the next packet's size */
  assert_int_equal(quic_gso_add(&r, 1400).len, 0);
  assert_int_equal(r.gso, 1400);
  assert_int_equal(r.off, 1400);
}

/* A packet longer than the run's segments: the run goes without it and it
 * begins the next run, moved to the buffer's start. */
static void test_gso_longer_starts(void **state) {
  (void)state;
  quic_gso_run r = {0, 0, 0};
  assert_int_equal(quic_gso_add(&r, 900).len, 0); /* e.g. an ACK first */
  quic_gso_out f = quic_gso_add(&r, 1200);
  assert_int_equal(f.len, 900);
  assert_int_equal(f.gso, 900);
  assert_true(f.move);
  assert_int_equal(r.off, 1200);
  assert_int_equal(r.gso, 1200);
  assert_int_equal(r.nrun, 1);
  f = quic_gso_add(&r, 1200);
  assert_int_equal(f.len, 0);
  assert_false(f.move);
  assert_int_equal(r.off, 2400);
}

/* At most QUIC_GSO_MAX segments in one send. */
static void test_gso_max(void **state) {
  (void)state;
  quic_gso_run r = {0, 0, 0};
  size_t pkt = 100;
  assert_true(QUIC_GSO_MAX * pkt < QUIC_TX_BUF); /* not the buffer's limit */
  for (int i = 1; i < QUIC_GSO_MAX; i++) {
    assert_int_equal(quic_gso_room(&r, pkt).len, 0);
    assert_int_equal(quic_gso_add(&r, pkt).len, 0);
  }
  quic_gso_out f = quic_gso_add(&r, pkt);
  assert_int_equal(f.len, QUIC_GSO_MAX * pkt);
  assert_int_equal(f.gso, pkt);
  assert_false(f.move);
  assert_int_equal(r.nrun, 0);
  assert_int_equal(r.off, 0);
}

/* The run is sent before a packet of the largest size could overrun the
 * transmit buffer. */
static void test_gso_buffer_limit(void **state) {
  (void)state;
  quic_gso_run r = {0, 0, 0};
  size_t pkt = 16000; /* loopback: 4 fit in QUIC_TX_BUF, not 5 */
  assert_true(4 * pkt <= QUIC_TX_BUF && 5 * pkt > QUIC_TX_BUF);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(quic_gso_room(&r, pkt).len, 0);
    assert_int_equal(quic_gso_add(&r, pkt).len, 0);
  }
  quic_gso_out f = quic_gso_room(&r, pkt);
  assert_int_equal(f.len, 4 * pkt);
  assert_int_equal(f.gso, pkt);
  assert_int_equal(r.off, 0);
  assert_int_equal(r.nrun, 0);
  /* room for the largest packet, not the last one's size */
  assert_int_equal(quic_gso_add(&r, 1200).len, 0);
  assert_int_equal(quic_gso_room(&r, QUIC_TX_BUF - 1200).len, 0);
  assert_int_equal(quic_gso_room(&r, QUIC_TX_BUF - 1199).len, 1200);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_turns, setup, teardown),
      cmocka_unit_test_setup_teardown(test_turn_over_to_tail, setup, teardown),
      cmocka_unit_test_setup_teardown(test_empty_leave, setup, teardown),
      cmocka_unit_test_setup_teardown(test_blocked, setup, teardown),
      cmocka_unit_test_setup_teardown(test_write_more, setup, teardown),
      cmocka_unit_test(test_gso_equal),
      cmocka_unit_test(test_gso_shorter_ends),
      cmocka_unit_test(test_gso_longer_starts),
      cmocka_unit_test(test_gso_max),
      cmocka_unit_test(test_gso_buffer_limit),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
