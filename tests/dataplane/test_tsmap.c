/* Player timelines (dataplane/tsmap.c): a late joiner starts at 0 with its
 * headers at 0, interleaving passes as is, restarts and wraps neither send
 * the player back in time nor make it leap forward. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "hub.h"
#include "tsmap.h"

#define V HUB_VIDEO
#define A HUB_AUDIO
#define S HUB_SCRIPT

/* What a player joining a stream that has run a while gets from the hub:
 * metadata from when it was published, the sequence headers, then the GOP. */
static void test_late_joiner_starts_at_zero(void **state) {
  (void)state;
  tsmap_t m;
  tsmap_init(&m);
  assert_int_equal(tsmap_map(&m, S, 0, 26343), 0);
  assert_int_equal(tsmap_map(&m, V, 1, 26343), 0);
  assert_int_equal(tsmap_map(&m, A, 1, 26343), 0);
  assert_int_equal(tsmap_map(&m, V, 0, 44776), 0);
  assert_int_equal(tsmap_map(&m, A, 0, 44770), 0);   /* just before the keyframe: not negative */
  assert_int_equal(tsmap_map(&m, A, 0, 44793), 17);
  assert_int_equal(tsmap_map(&m, V, 0, 44816), 40);
  assert_int_equal(tsmap_map(&m, A, 0, 44816), 40);
  assert_int_equal(m.resets, 0);
}

static void test_interleaving_passes(void **state) {
  (void)state;
  tsmap_t m;
  tsmap_init(&m);
  assert_int_equal(tsmap_map(&m, V, 0, 1000), 0);
  /* audio 900 ms ahead of video, then video catching up: kept exactly */
  assert_int_equal(tsmap_map(&m, A, 0, 1900), 900);
  assert_int_equal(tsmap_map(&m, V, 0, 1040), 40);
  assert_int_equal(tsmap_map(&m, V, 0, 1080), 80);
  assert_int_equal(tsmap_map(&m, A, 0, 1923), 923);
  assert_int_equal(m.resets, 0);
  /* a header mid-stream goes out at the current position */
  assert_int_equal(tsmap_map(&m, V, 1, 1080), 923);
  assert_int_equal(tsmap_map(&m, S, 0, 5), 923);
  assert_int_equal(tsmap_map(&m, V, 0, 1120), 120);
}

static void test_restart_back_in_time(void **state) {
  (void)state;
  tsmap_t m;
  tsmap_init(&m);
  uint32_t t = 0;
  for (uint32_t i = 0; i <= 100; i++) t = tsmap_map(&m, V, 0, 50000 + i * 40);
  assert_int_equal(t, 4000);
  /* the publisher comes back from 0: headers at the current position, then
   * the new media just after it, continuing from there */
  assert_int_equal(tsmap_map(&m, S, 0, 0), 4000);
  assert_int_equal(tsmap_map(&m, V, 1, 0), 4000);
  assert_int_equal(tsmap_map(&m, V, 0, 0), 4040); /* one frame (40 ms) on */
  assert_int_equal(tsmap_map(&m, A, 0, 10), 4050);
  assert_int_equal(tsmap_map(&m, V, 0, 40), 4080);
  assert_int_equal(m.resets, 1);
}

static void test_forward_jump(void **state) {
  (void)state;
  tsmap_t m;
  tsmap_init(&m);
  tsmap_map(&m, V, 0, 100);
  assert_int_equal(tsmap_map(&m, V, 0, 140), 40);
  /* another publisher an hour ahead: no leap */
  assert_int_equal(tsmap_map(&m, V, 0, 3600140), 80);
  assert_int_equal(tsmap_map(&m, V, 0, 3600180), 120);
  /* a step of a few seconds is still the same stream */
  assert_int_equal(tsmap_map(&m, V, 0, 3604180), 4120);
  assert_int_equal(m.resets, 1);
}

static void test_wrap(void **state) {
  (void)state;
  tsmap_t m;
  tsmap_init(&m);
  assert_int_equal(tsmap_map(&m, V, 0, 0xffffff00u), 0);
  /* a continuous stream through the 32-bit wrap: a plain step */
  assert_int_equal(tsmap_map(&m, V, 0, 0x00000010u), 0x110);
  assert_int_equal(tsmap_map(&m, A, 0, 0x00000008u), 0x108);
  assert_int_equal(m.resets, 0);
}

/* After a re-anchor the other track's first frames map below its last
 * frame: held there, so each track's dts never decreases. */
static void test_tracks_never_decrease(void **state) {
  (void)state;
  tsmap_t m;
  tsmap_init(&m);
  tsmap_map(&m, V, 0, 10000);
  assert_int_equal(tsmap_map(&m, V, 0, 10020), 20); /* 50 fps: steps of 20 ms */
  assert_int_equal(tsmap_map(&m, A, 0, 10500), 500);
  assert_int_equal(tsmap_map(&m, V, 0, 10040), 40);
  /* new publisher from 0; its audio 30 ms before its video */
  assert_int_equal(tsmap_map(&m, V, 0, 30), 520); /* one video step past the audio */
  assert_int_equal(m.resets, 1);
  assert_int_equal(tsmap_map(&m, A, 0, 0), 500);    /* 490 held at the audio's 500 */
  assert_int_equal(tsmap_map(&m, A, 0, 23), 513);
  assert_int_equal(tsmap_map(&m, V, 0, 50), 540);
  assert_int_equal(m.resets, 1);
}

/* Audio lagging video by more than the interleaving bound, for good: one
 * map, no re-anchor, no drift (each track advances by its own steps). */
static void test_steady_offset_between_tracks(void **state) {
  (void)state;
  tsmap_t m;
  tsmap_init(&m);
  uint32_t v = 0, a = 0;
  for (uint32_t i = 0; i < 3000; i++) {
    v = tsmap_map(&m, V, 0, 90000 + i * 40);
    a = tsmap_map(&m, A, 0, 90000 - 1500 + i * 40);
  }
  assert_int_equal(m.resets, 0);
  assert_int_equal(v, 2999 * 40);
  assert_int_equal(a, 2999 * 40 - 1500);
}

/* Only one track jumps (a broken encoder): the other goes on undisturbed,
 * the jumping one re-anchors once. */
static void test_one_track_jumps(void **state) {
  (void)state;
  tsmap_t m;
  tsmap_init(&m);
  for (uint32_t i = 0; i < 10; i++) {
    tsmap_map(&m, V, 0, 1000 + i * 40);
    tsmap_map(&m, A, 0, 1000 + i * 40);
  }
  assert_int_equal(tsmap_map(&m, A, 0, 3600000), 400); /* one 40 ms frame on */
  assert_int_equal(tsmap_map(&m, V, 0, 1400), 400);
  assert_int_equal(tsmap_map(&m, A, 0, 3600040), 440);
  assert_int_equal(tsmap_map(&m, V, 0, 1440), 440);
  assert_int_equal(m.resets, 1);
}

static void test_headers_only(void **state) {
  (void)state;
  tsmap_t m = {0};   /* zeroed is a fresh timeline */
  assert_int_equal(tsmap_map(&m, S, 0, 123456), 0);
  assert_int_equal(tsmap_map(&m, 0x42, 0, 99), 0);
  assert_int_equal(m.started, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_late_joiner_starts_at_zero),
      cmocka_unit_test(test_interleaving_passes),
      cmocka_unit_test(test_restart_back_in_time),
      cmocka_unit_test(test_forward_jump),
      cmocka_unit_test(test_wrap),
      cmocka_unit_test(test_tracks_never_decrease),
      cmocka_unit_test(test_steady_offset_between_tracks),
      cmocka_unit_test(test_one_track_jumps),
      cmocka_unit_test(test_headers_only),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
