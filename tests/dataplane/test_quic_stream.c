/* Unit tests for the bookkeeping of dataplane/quic_stream.c without
 * ngtcp2 or sockets: which streams have something to send, the send queue
 * (the order data was written in; a stream is in it once), putting back
 * what a send round did not finish (only streams that still have data),
 * the event queue, a stream leaving every list and the id hash, and the
 * send ring growing with the path: what it holds reads back the same at
 * the new size, across the wrap point, with partial acks, and the ring it
 * replaced lives until ngtcp2's bytes in it are acknowledged. ASan checks
 * the frees. */
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
} fx_t;

static int setup(void **state) {
  fx_t *x = calloc(1, sizeof(*x));
  x->ep = calloc(1, sizeof(*x->ep));
  x->c = calloc(1, sizeof(*x->c));
  if (!x || !x->ep || !x->c) return -1;
  x->ep->cfg.stream_sndbuf = 4096;
  x->c->ep = x->ep;
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

static void test_pending(void **state) {
  (void)state;
  quic_stream s;
  memset(&s, 0, sizeof(s));
  assert_false(quic_stream_pending(&s));
  s.end_off = 10;
  assert_true(quic_stream_pending(&s));
  s.sent_off = 10;
  assert_false(quic_stream_pending(&s)); /* all sent, awaiting acks */
  s.fin_req = 1;
  assert_true(quic_stream_pending(&s));  /* the FIN is still to go */
  s.fin_sent = 1;
  assert_false(quic_stream_pending(&s));
  s.end_off = 20;
  s.send_shut = 1;                       /* the peer stopped reading */
  assert_false(quic_stream_pending(&s));
  s.send_shut = 0;
  s.closed = 1;
  assert_false(quic_stream_pending(&s));
}

static void test_queues(void **state) {
  fx_t *x = *state;
  quic_conn *c = x->c;
  /* 300 peer streams (the id hash grows from 16) and one of ours without an id yet */
  quic_stream *s[300];
  for (int i = 0; i < 300; i++) {
    s[i] = quic_stream_new(c, (int64_t)i * 4);
    assert_non_null(s[i]);
    assert_int_equal(s[i]->cap, 4096);
  }
  quic_stream *mine = quic_stream_new(c, -1);
  assert_non_null(mine);
  assert_int_equal(c->nstreams, 300);
  assert_true(c->nsbuckets >= 300);
  /* the send queue keeps the order data came in, each stream once */
  s[5]->end_off = s[9]->end_off = s[7]->end_off = 100;
  quic_sendq_push(c, s[5]);
  quic_sendq_push(c, s[9]);
  quic_sendq_push(c, s[5]);
  quic_sendq_push(c, s[7]);
  assert_ptr_equal(c->sq_head, s[5]);
  assert_ptr_equal(c->sq_head->sq_next, s[9]);
  assert_ptr_equal(c->sq_tail, s[7]);
  assert_null(c->sq_tail->sq_next);
  /* a send round takes the head off; what it did not finish goes back at
   * the tail, what it finished does not */
  quic_sendq_remove(c, s[5]);
  quic_sendq_remove(c, s[9]);
  assert_ptr_equal(c->sq_head, s[7]);
  assert_ptr_equal(c->sq_tail, s[7]);
  s[9]->sent_off = 100; /* done */
  s[5]->sq_next = s[9];
  s[9]->sq_next = NULL;
  quic_sendq_restore(c, s[5]);
  assert_ptr_equal(c->sq_head, s[7]);
  assert_ptr_equal(c->sq_tail, s[5]);
  assert_false(s[9]->in_sendq);
  assert_ptr_equal(s[7]->sq_next, s[5]);
  assert_ptr_equal(s[5]->sq_prev, s[7]);
  /* the event queue, each stream once, in order */
  quic_evq_push(c, s[3]);
  quic_evq_push(c, s[1]);
  quic_evq_push(c, s[3]);
  assert_ptr_equal(c->evq_head, s[3]);
  assert_ptr_equal(c->evq_head->ev_next, s[1]);
  assert_ptr_equal(c->evq_tail, s[1]);
  /* a stream leaves the send queue, the list and the hash at once */
  quic_stream_unlink(c, s[7]);
  assert_false(s[7]->in_sendq);
  assert_ptr_equal(c->sq_head, s[5]);
  assert_null(s[5]->sq_prev);
  assert_int_equal(c->nstreams, 299);
  for (quic_stream *t = c->streams; t; t = t->next) assert_ptr_not_equal(t, s[7]);
  quic_stream_free(s[7]);
  quic_stream_unlink(c, mine); /* no id: only the list */
  assert_int_equal(c->nstreams, 299);
  quic_stream_free(mine);
}

/* put writes |n| bytes of the pattern at the end of |s|'s ring, as
 * quic_stream_write does (the caller checked the room). */
static void put(quic_stream *s, size_t n) {
  for (size_t i = 0; i < n; i++, s->end_off++)
    s->buf[s->end_off % s->cap] = (uint8_t)(s->end_off * 7 + s->end_off / 251);
}

/* ring_holds checks that the ring of |s| has the pattern's bytes at every
 * offset it must still hold, [ack_off, end_off), each at offset % cap. */
static void ring_holds(const quic_stream *s) {
  for (uint64_t o = s->ack_off; o < s->end_off; o++)
    assert_int_equal(s->buf[o % s->cap], (uint8_t)(o * 7 + o / 251));
}

static void test_grow(void **state) {
  fx_t *x = *state;
  quic_stream *s = quic_stream_new(x->c, 0);
  assert_non_null(s);
  assert_int_equal(s->cap, 4096);
  /* no ring yet, nothing to grow */
  assert_int_equal(quic_stream_grow(s, 8192, 65536), 0);
  s->buf = malloc(s->cap);
  assert_non_null(s->buf);
  /* wrapped: 1000 acked, up to 4000 sent, then 4000 more written, so the
   * bytes in the ring run from 1000 across the wrap point to 5000 */
  put(s, 4000);
  s->sent_off = 4000;
  quic_stream_acked(s, 1000);
  put(s, 1000);
  ring_holds(s);
  /* a backlog is no reason: less than half the ring in flight */
  s->sent_off = 1000 + 2000 - 1;
  assert_int_equal(quic_stream_grow(s, 8192, 65536), 0);
  /* nor a bound at the size it has (quic.maxsndbuf, or the cwnd's) */
  s->sent_off = 4000;
  assert_int_equal(quic_stream_grow(s, 8192, 4096), 0);
  /* room it does not need */
  assert_int_equal(quic_stream_grow(s, 4096, 65536), 0);
  /* grows, at least doubling: the bytes read back the same, at their
   * offsets in the larger ring */
  uint8_t *old = s->buf;
  assert_int_equal(quic_stream_grow(s, 4097, 65536), 1);
  assert_int_equal(s->cap, 8192);
  ring_holds(s);
  /* ngtcp2 still points into the old ring's sent bytes: kept until they
   * are acknowledged; no second growth meanwhile */
  assert_ptr_equal(s->old_buf, old);
  assert_int_equal(s->old_until, 4000);
  put(s, 8192 - 4000);
  s->sent_off = s->end_off;
  assert_int_equal(quic_stream_grow(s, 9000, 65536), 0);
  quic_stream_acked(s, 3999);
  assert_ptr_equal(s->old_buf, old);
  ring_holds(s);
  quic_stream_acked(s, 4000);
  assert_null(s->old_buf);
  /* the new ring wraps too: write past its end, ack part of it */
  quic_stream_acked(s, 9000);
  put(s, 7500);
  assert_true(s->end_off % s->cap < s->ack_off % s->cap); /* wrapped */
  ring_holds(s);
  /* a large write in one go: straight to what it needs, within the bound */
  s->sent_off = s->ack_off + 6000;
  assert_int_equal(quic_stream_grow(s, 40000, 65536), 1);
  assert_int_equal(s->cap, 40000);
  ring_holds(s);
  assert_non_null(s->old_buf);
  quic_stream_acked(s, s->sent_off);
  assert_null(s->old_buf);
  ring_holds(s);
  /* all acknowledged: nothing in flight, no growth */
  put(s, 40000 - (size_t)(s->end_off - s->ack_off));
  s->sent_off = s->end_off;
  quic_stream_acked(s, s->end_off);
  assert_int_equal(quic_stream_grow(s, 1 << 20, 65536), 0);
  /* never beyond the bound */
  put(s, 30000);
  s->sent_off = s->end_off;
  assert_int_equal(quic_stream_grow(s, 1 << 20, 65536), 1);
  assert_int_equal(s->cap, 65536);
  ring_holds(s);
  /* the stream goes with both rings (ASan: no leak) */
  assert_non_null(s->old_buf);
}

/* What a write may put in: the room left, grown first when the path asks,
 * and no more than the bound now in a ring grown earlier. */
static void test_space(void **state) {
  fx_t *x = *state;
  quic_stream *s = quic_stream_new(x->c, 0);
  assert_non_null(s);
  s->buf = malloc(s->cap);
  assert_non_null(s->buf);
  put(s, 3000);
  assert_int_equal(quic_stream_space(s, 500, 65536), 1096); /* fits */
  assert_int_equal(quic_stream_space(s, 5000, 65536), 1096); /* a backlog */
  assert_int_equal(s->cap, 4096);
  s->sent_off = 3000; /* in flight: doubles, and takes all of it */
  assert_int_equal(quic_stream_space(s, 5000, 65536), 8192 - 3000);
  assert_int_equal(s->cap, 8192);
  put(s, 5000);
  s->sent_off = s->end_off;
  ring_holds(s);
  /* the path slowed down: the bound fell to 4096, the ring is 8192; as
   * acks come, it takes bytes only up to 4096 unacked */
  quic_stream_acked(s, 3000);
  assert_int_equal(quic_stream_space(s, 100, 4096), 0);
  quic_stream_acked(s, 5000);
  assert_int_equal(quic_stream_space(s, 5000, 4096), 4096 - 3000);
  quic_stream_acked(s, 7000);
  assert_int_equal(quic_stream_space(s, 5000, 4096), 4096 - 1000);
  assert_int_equal(quic_stream_space(s, 9000, 65536), 8192 - 1000); /* back up */
  assert_int_equal(s->cap, 8192);
}

/* With the bound at the initial size (quic.maxsndbuf 0 or quic.sndbuf), a
 * full ring never grows, whatever is in flight. */
static void test_grow_fixed(void **state) {
  fx_t *x = *state;
  quic_stream *s = quic_stream_new(x->c, 0);
  assert_non_null(s);
  s->buf = malloc(s->cap);
  assert_non_null(s->buf);
  put(s, 4096);
  s->sent_off = 4096;
  assert_int_equal(quic_stream_grow(s, 8192, 4096), 0);
  assert_int_equal(quic_stream_grow(s, 8192, 0), 0);
  assert_int_equal(s->cap, 4096);
  assert_null(s->old_buf);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pending),
      cmocka_unit_test_setup_teardown(test_queues, setup, teardown),
      cmocka_unit_test_setup_teardown(test_grow, setup, teardown),
      cmocka_unit_test_setup_teardown(test_grow_fixed, setup, teardown),
      cmocka_unit_test_setup_teardown(test_space, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
