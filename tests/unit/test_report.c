/* Unit tests for controller/report.c: session reports read back from the
 * database (links for the topology, streams for the directory). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "report.h"

static void links(void **state) {
  (void)state;
  json_t *r = json_loads("{\"links\": [[7, 1, true, 1500, 1700000000], [9, 2, false, 0, 0],"
                         " [\"x\", 1, true, 1, 1], [8, 1, true, -5, 0]], \"streams\": [],"
                         " \"total\": 0}",
                         0, NULL);
  ctlsrv_link_t l;
  assert_non_null(r);
  assert_int_equal(report_link(r, CTLSRV_LINK_PARENT, 7, &l), 1);
  assert_int_equal(l.up, 1);
  assert_int_equal(l.rtt_us, 1500);
  assert_int_equal(l.up_since, 1700000000);
  assert_int_equal(report_link(r, CTLSRV_LINK_CHILD, 9, &l), 1);
  assert_int_equal(l.up, 0);
  assert_int_equal(report_link(r, CTLSRV_LINK_CHILD, 7, &l), 0);  /* another role */
  assert_int_equal(report_link(r, CTLSRV_LINK_PARENT, 8, &l), 0); /* malformed: skipped */
  assert_int_equal(report_link(NULL, CTLSRV_LINK_PARENT, 7, &l), 0);
  json_decref(r);
}

typedef struct {
  int n;
  char paths[4][32];
  unsigned players;
} seen_t;

static void on_stream(int64_t node, const char *name, const ctlsrv_stream_t *st, void *arg) {
  seen_t *s = arg;
  assert_int_equal(node, 5);
  assert_string_equal(name, "edge");
  snprintf(s->paths[s->n++], sizeof(s->paths[0]), "%s", st->path);
  for (size_t k = 0; k < st->nplayers; k++) s->players += st->players[k].count;
}

static void streams(void **state) {
  (void)state;
  json_t *r = json_loads("{\"links\": [], \"total\": 40, \"streams\": ["
                         "[\"live/a\", 1, 0, 1700000000, [[\"rtmp\", 2], [\"flv\", 3]]],"
                         "[\"live/b\", 3, 4, 0, []],"
                         "[\"live/bad\", 1, 0, 0],"
                         "[7, 1, 0, 0, []],"
                         "[\"live/c\", 1, 0, 0, [[\"rtmp\", -1], [\"flv\"]]]]}",
                         0, NULL);
  seen_t s = {0};
  uint32_t total = 0;
  assert_non_null(r);
  assert_int_equal(report_streams(r, 5, "edge", on_stream, &s, &total), 3);
  assert_int_equal(total, 40);
  assert_string_equal(s.paths[0], "live/a");
  assert_string_equal(s.paths[1], "live/b");
  assert_string_equal(s.paths[2], "live/c");
  assert_int_equal(s.players, 5);
  json_decref(r);
  total = 9;
  assert_int_equal(report_streams(NULL, 5, "edge", on_stream, &s, &total), 0);
  assert_int_equal(total, 0);
}

/* What the sweeper writes (report_json) reads back the same. */
static void round_trip(void **state) {
  (void)state;
  ctlsrv_link_t lv[2] = {{7, CTLSRV_LINK_PARENT, 1, 1500, 1700000000, 0},
                         {9, CTLSRV_LINK_CHILD, 0, 0, 0, 0}};
  ctlsrv_stream_t sv[2];
  memset(sv, 0, sizeof(sv));
  sv[0].path = "live/a";
  sv[0].origin = CTLSRV_ORIGIN_LOCAL;
  sv[0].since = 1700000001;
  sv[0].nplayers = 2;
  snprintf(sv[0].players[0].protocol, sizeof(sv[0].players[0].protocol), "rtmp");
  sv[0].players[0].count = 2;
  snprintf(sv[0].players[1].protocol, sizeof(sv[0].players[1].protocol), "flv");
  sv[0].players[1].count = 3;
  sv[1].path = "live/b";
  sv[1].origin = CTLSRV_ORIGIN_PULLED;
  sv[1].origin_node = 4;
  json_t *r = report_json(lv, 2, sv, 2, 40);
  assert_non_null(r);
  ctlsrv_link_t l;
  assert_int_equal(report_link(r, CTLSRV_LINK_PARENT, 7, &l), 1);
  assert_int_equal(l.up, 1);
  assert_int_equal(l.rtt_us, 1500);
  assert_int_equal(l.up_since, 1700000000);
  assert_int_equal(report_link(r, CTLSRV_LINK_CHILD, 9, &l), 1);
  assert_int_equal(l.up, 0);
  seen_t s = {0};
  uint32_t total = 0;
  assert_int_equal(report_streams(r, 5, "edge", on_stream, &s, &total), 2);
  assert_int_equal(total, 40);
  assert_string_equal(s.paths[0], "live/a");
  assert_string_equal(s.paths[1], "live/b");
  assert_int_equal(s.players, 5);
  json_decref(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(links),
      cmocka_unit_test(streams),
      cmocka_unit_test(round_trip),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
