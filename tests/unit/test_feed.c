/* Unit tests for controller/feed.c: the ring readers resume from, the
 * rule that takes feed_events rows in id order across commits that finish
 * out of order (with the clock passed in), the parsers and the event text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "feed.h"

static void push(feed_ring_t *r, int64_t id) {
  char data[64];
  int n = snprintf(data, sizeof(data), "{\"id\":%lld}", (long long)id);
  assert_int_equal(feed_ring_push(r, id, "node", data, (size_t)n), 0);
}

static void ring_resume(void **state) {
  (void)state;
  feed_ring_t r;
  const feed_event_t *ev;
  assert_int_equal(feed_ring_init(&r, 4), 0);
  feed_ring_reset(&r, 10);
  assert_int_equal(feed_ring_next(&r, 10, &ev), 0); /* up to date */
  assert_int_equal(feed_ring_next(&r, 9, &ev), -1); /* before the start */
  assert_int_equal(feed_ring_next(&r, 11, &ev), -1); /* newer than anything */
  push(&r, 11);
  push(&r, 13); /* 12 rolled back: ids need not be contiguous */
  push(&r, 14);
  assert_int_equal(feed_ring_next(&r, 10, &ev), 1);
  assert_int_equal(ev->id, 11);
  assert_int_equal(feed_ring_next(&r, 11, &ev), 1);
  assert_int_equal(ev->id, 13);
  assert_int_equal(feed_ring_next(&r, 12, &ev), 1);
  assert_int_equal(ev->id, 13);
  assert_string_equal(ev->kind, "node");
  assert_string_equal(ev->data, "{\"id\":13}");
  assert_int_equal(feed_ring_next(&r, 14, &ev), 0);
  /* full: the oldest goes, and with it resuming from before it */
  push(&r, 15);
  push(&r, 16);
  assert_int_equal(r.base, 11);
  assert_int_equal(feed_ring_next(&r, 10, &ev), -1);
  assert_int_equal(feed_ring_next(&r, 11, &ev), 1);
  assert_int_equal(ev->id, 13);
  for (int64_t id = 17; id < 40; id++) push(&r, id);
  assert_int_equal(r.n, 4);
  assert_int_equal(r.base, 35);
  assert_int_equal(feed_ring_next(&r, 34, &ev), -1);
  assert_int_equal(feed_ring_next(&r, 35, &ev), 1);
  assert_int_equal(ev->id, 36);
  assert_int_equal(feed_ring_next(&r, 38, &ev), 1);
  assert_int_equal(ev->id, 39);
  feed_ring_free(&r);
  feed_ring_free(NULL);
}

static void ring_refuses(void **state) {
  (void)state;
  feed_ring_t r;
  assert_int_equal(feed_ring_init(&r, 2), 0);
  push(&r, 5);
  assert_int_equal(feed_ring_push(&r, 5, "node", "{}", 2), -1);  /* not newer */
  assert_int_equal(feed_ring_push(&r, 4, "node", "{}", 2), -1);
  assert_int_equal(feed_ring_push(&r, 6, "", "{}", 2), -1);
  assert_int_equal(feed_ring_push(&r, 6, "averyveryverylongkind", "{}", 2), -1);
  assert_int_equal(feed_ring_push(&r, 6, "node", "{\n}", 3), -1); /* one line only */
  assert_int_equal(feed_ring_push(&r, 6, "node", "{\r}", 3), -1);
  assert_int_equal(feed_ring_push(&r, 6, "node", "{\0}", 3), -1);
  assert_int_equal(r.last, 5);
  assert_int_equal(r.n, 1);
  feed_ring_free(&r);
  assert_int_equal(feed_ring_init(&r, 0), -1);
}

static void gap_rule(void **state) {
  (void)state;
  feed_gap_t g = {.cursor = 10};
  int64_t a[] = {11, 12, 14, 15};
  /* 13 is missing: 11 and 12 go, 14 waits */
  assert_int_equal(feed_gap_take(&g, a, 4, 1000), 2);
  assert_int_equal(g.cursor, 12);
  assert_true(feed_gap_waiting(&g));
  /* still missing, not long enough */
  int64_t b[] = {14, 15};
  assert_int_equal(feed_gap_take(&g, b, 2, 1000 + FEED_GAP_HOLD_MS - 1), 0);
  assert_int_equal(g.cursor, 12);
  /* it committed meanwhile: everything in order */
  int64_t c[] = {13, 14, 15};
  assert_int_equal(feed_gap_take(&g, c, 3, 1500), 3);
  assert_int_equal(g.cursor, 15);
  assert_false(feed_gap_waiting(&g));
  /* a gap that never fills (a rolled-back insert) is passed after the hold */
  int64_t d[] = {17, 18};
  assert_int_equal(feed_gap_take(&g, d, 2, 5000), 0);
  assert_int_equal(feed_gap_take(&g, d, 2, 5000 + FEED_GAP_HOLD_MS), 2);
  assert_int_equal(g.cursor, 18);
  assert_false(feed_gap_waiting(&g));
  /* a second gap starts its own hold */
  int64_t e[] = {20, 22};
  assert_int_equal(feed_gap_take(&g, e, 2, 9000), 0);
  assert_int_equal(feed_gap_take(&g, e, 2, 9000 + FEED_GAP_HOLD_MS), 1);
  assert_int_equal(g.cursor, 20);
  assert_true(feed_gap_waiting(&g)); /* 21 now */
  assert_int_equal(feed_gap_take(&g, e + 1, 1, 9000 + FEED_GAP_HOLD_MS + 10), 0);
  /* rows not above the cursor are never taken */
  int64_t f[] = {5};
  assert_int_equal(feed_gap_take(&g, f, 1, 99999), 0);
  assert_int_equal(feed_gap_take(&g, NULL, 0, 99999), 0);
}

static void parse_uint(void **state) {
  (void)state;
  int64_t v = -1;
  assert_int_equal(feed_parse_uint("0", 30, &v), 0);
  assert_int_equal(v, 0);
  assert_int_equal(feed_parse_uint("30", 30, &v), 0);
  assert_int_equal(v, 30);
  assert_int_equal(feed_parse_uint("31", 30, &v), -1);
  assert_int_equal(feed_parse_uint("999999999999999999", INT64_MAX, &v), 0);
  assert_int_equal(feed_parse_uint("1000000000000000000", INT64_MAX, &v), -1);
  const char *bad[] = {"", "-1", "+1", " 1", "1 ", "1.5", "0x10", "1e3", "abc", NULL};
  for (int i = 0; bad[i]; i++) assert_int_equal(feed_parse_uint(bad[i], INT64_MAX, &v), -1);
  assert_int_equal(feed_parse_uint(NULL, 1, &v), -1);
}

static void sse_text(void **state) {
  (void)state;
  feed_event_t e = {.id = 42, .kind = "link", .data = "{\"up\":true}", .len = 11};
  char buf[128];
  const char want[] = "id: 42\nevent: link\ndata: {\"up\":true}\n\n";
  assert_int_equal(feed_sse_format(&e, NULL, 0), sizeof(want) - 1);
  assert_int_equal(feed_sse_format(&e, buf, sizeof(buf)), sizeof(want) - 1);
  assert_string_equal(buf, want);
  char small[8];
  assert_int_equal(feed_sse_format(&e, small, sizeof(small)), sizeof(want) - 1);
  assert_int_equal(strlen(small), sizeof(small) - 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(ring_resume), cmocka_unit_test(ring_refuses),
      cmocka_unit_test(gap_rule),    cmocka_unit_test(parse_uint),
      cmocka_unit_test(sse_text),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
