/* Unit tests for dataplane/hub.c on a real libev loop with short timeouts:
 * publish/subscribe, the GOP cache (metadata and sequence headers first,
 * then a keyframe), refusals, delay-close and wait timeouts, slow
 * subscribers skipped to a keyframe and ended while a fast one sees every
 * frame, the write policy (an idle loop tells a player at once, a burst
 * within one iteration is one notification, a busy loop batches within
 * merge_s), and frame references back to their owner at the end (ASan
 * checks the leaks). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hub.h"

/* A real AVC sequence header (ffmpeg, libx264 High 4:4:4, 160x120: the
 * SPS codes 160x128 and crops 8 lines). */
static const uint8_t avc_seq[] = {
    0x17, 0x00, 0x00, 0x00, 0x00, 0x01, 0xf4, 0x00, 0x0a, 0xff, 0xe1, 0x00, 0x1a,
    0x67, 0xf4, 0x00, 0x0a, 0x91, 0x9b, 0x28, 0x50, 0x8f, 0xc4, 0xe0, 0x22, 0x00,
    0x00, 0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00, 0x28, 0x1e, 0x24, 0x4b, 0x2c,
    0x01, 0x00, 0x06, 0x68, 0xeb, 0xe3, 0xc4, 0x48, 0x44, 0xff, 0xf8, 0xf8, 0x00};
/* AAC LC, 44100 Hz, stereo */
static const uint8_t aac_seq[] = {0xaf, 0x00, 0x12, 0x10};

static struct ev_loop *loop;

static void break_cb(struct ev_loop *l, ev_timer *w, int revents) {
  (void)w;
  (void)revents;
  ev_break(l, EVBREAK_ONE);
}

/* run_for runs the loop for |s| seconds of real time. */
static void run_for(double s) {
  ev_timer t;
  ev_timer_init(&t, break_cb, s, 0.);
  ev_timer_start(loop, &t);
  ev_run(loop, 0);
  ev_timer_stop(loop, &t);
}

static hub_frame_t *video(uint32_t ts, int key, size_t len) {
  uint8_t buf[4096];
  assert_true(len >= 5 && len <= sizeof(buf));
  memset(buf, 0xab, len);
  buf[0] = key ? 0x17 : 0x27;
  buf[1] = 0x01;
  buf[2] = buf[3] = buf[4] = 0;
  hub_frame_t *f = hub_frame_new(HUB_VIDEO, ts, buf, len);
  assert_non_null(f);
  assert_int_equal(f->keyframe, key ? 1 : 0);
  assert_int_equal(f->seq_header, 0);
  return f;
}

static hub_frame_t *audio(uint32_t ts) {
  uint8_t buf[32] = {0xaf, 0x01};
  return hub_frame_new(HUB_AUDIO, ts, buf, sizeof(buf));
}

/* meta builds "@setDataFrame" "onMetaData" {width, height, framerate}. */
static hub_frame_t *meta(int with_sdf) {
  uint8_t b[256];
  size_t n = 0;
  if (with_sdf) {
    b[n++] = 2;
    b[n++] = 0;
    b[n++] = 13;
    memcpy(b + n, "@setDataFrame", 13);
    n += 13;
  }
  b[n++] = 2;
  b[n++] = 0;
  b[n++] = 10;
  memcpy(b + n, "onMetaData", 10);
  n += 10;
  b[n++] = 8;
  b[n++] = 0;
  b[n++] = 0;
  b[n++] = 0;
  b[n++] = 3;
  const char *keys[3] = {"width", "height", "framerate"};
  double vals[3] = {640, 360, 25};
  for (int i = 0; i < 3; i++) {
    size_t kl = strlen(keys[i]);
    b[n++] = 0;
    b[n++] = (uint8_t)kl;
    memcpy(b + n, keys[i], kl);
    n += kl;
    b[n++] = 0;
    uint64_t u;
    memcpy(&u, &vals[i], 8);
    for (int k = 7; k >= 0; k--) b[n++] = (uint8_t)(u >> (k * 8));
  }
  b[n++] = 0;
  b[n++] = 0;
  b[n++] = 9;
  return hub_frame_new(HUB_SCRIPT, 0, b, n);
}

#define REC_MAX 4096

typedef struct rec {
  hub_sub_t *s;
  int calls;            /* on_frames calls */
  int drain;            /* take frames in on_frames */
  int unsub_in_cb;      /* hub_unsubscribe itself in on_frames */
  int ended, why;
  int n;
  uint8_t type[REC_MAX], key[REC_MAX], seq[REC_MAX];
  uint32_t ts[REC_MAX];
  size_t first_len[1];
  uint8_t first_meta[16];
  size_t max_queued;
} rec_t;

static void rec_take(rec_t *r) {
  hub_frame_t *f;
  while ((f = hub_sub_next(r->s)) != NULL) {
    if (r->n < REC_MAX) {
      r->type[r->n] = f->type;
      r->key[r->n] = f->keyframe;
      r->seq[r->n] = f->seq_header;
      r->ts[r->n] = f->ts;
      if (f->type == HUB_SCRIPT && f->len >= 16) memcpy(r->first_meta, f->data, 16);
      r->n++;
    }
    hub_frame_unref(f);
  }
}

static void rec_frames(hub_sub_t *s, void *arg) {
  rec_t *r = arg;
  assert_ptr_equal(s, r->s);
  r->calls++;
  size_t q = hub_sub_queued(s);
  if (q > r->max_queued) r->max_queued = q;
  if (r->unsub_in_cb) {
    hub_unsubscribe(s);
    r->s = NULL;
    r->ended = -1;
    return;
  }
  if (r->drain) rec_take(r);
}

static void rec_end(hub_sub_t *s, void *arg, int why) {
  rec_t *r = arg;
  assert_ptr_equal(s, r->s);
  hub_unsubscribe(s); /* a no-op inside on_end */
  r->ended = 1;
  r->why = why;
  r->s = NULL;
}

static const hub_sub_ops_t rec_ops = {rec_frames, rec_end};

static void sub(hub_t *h, const char *path, rec_t *r, int drain) {
  memset(r, 0, sizeof(*r));
  r->drain = drain;
  r->s = hub_subscribe(h, path, &rec_ops, r);
  assert_non_null(r->s);
}

static hub_t *mk(double delay, double wait, size_t qbytes, double qs, double slow) {
  hub_config_t c = {delay, wait, qbytes, qs, slow, 0, 0, 0};
  hub_t *h = hub_new(loop, &c);
  assert_non_null(h);
  return h;
}

static int setup(void **state) {
  (void)state;
  loop = ev_loop_new(EVFLAG_AUTO);
  return loop ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  ev_loop_destroy(loop);
  return 0;
}

static void push_headers(hub_stream_t *st) {
  hub_push(st, meta(1));
  hub_push(st, hub_frame_new(HUB_VIDEO, 0, avc_seq, sizeof(avc_seq)));
  hub_push(st, hub_frame_new(HUB_AUDIO, 0, aac_seq, sizeof(aac_seq)));
}

static void test_path_ok(void **state) {
  (void)state;
  assert_true(hub_path_ok("live/cam1"));
  assert_true(hub_path_ok("a/b/c"));
  assert_true(hub_path_ok("live/.hidden"));
  assert_false(hub_path_ok("cam1"));
  assert_false(hub_path_ok(""));
  assert_false(hub_path_ok("/live/cam1"));
  assert_false(hub_path_ok("live/cam1/"));
  assert_false(hub_path_ok("live//cam1"));
  assert_false(hub_path_ok("live/.."));
  assert_false(hub_path_ok("./cam"));
  assert_false(hub_path_ok("live/c\nam"));
  char big[1100];
  memset(big, 'a', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  big[3] = '/';
  assert_false(hub_path_ok(big));
  big[1024] = '\0';
  assert_true(hub_path_ok(big));
}

static void test_frame_classify(void **state) {
  (void)state;
  const uint8_t ex_key[] = {0x91, 'h', 'v', 'c', '1', 0, 0, 0};     /* key, CodedFrames */
  const uint8_t ex_keyx[] = {0x93, 'h', 'v', 'c', '1', 0};          /* key, CodedFramesX */
  const uint8_t ex_seq[] = {0x90, 'h', 'v', 'c', '1', 1};
  const uint8_t ex_inter[] = {0xa1, 'h', 'v', 'c', '1', 0, 0, 0};
  const uint8_t hevc_key[] = {0x1c, 0x01, 0, 0, 0, 9};
  const uint8_t hevc_seq[] = {0x1c, 0x00, 0, 0, 0, 1};
  const uint8_t aac_raw[] = {0xaf, 0x01, 0x21};
  struct {
    const uint8_t *d;
    size_t n;
    uint8_t type, key, seq;
  } cases[] = {
      {ex_key, sizeof(ex_key), HUB_VIDEO, 1, 0},    {ex_keyx, sizeof(ex_keyx), HUB_VIDEO, 1, 0},
      {ex_seq, sizeof(ex_seq), HUB_VIDEO, 0, 1},    {ex_inter, sizeof(ex_inter), HUB_VIDEO, 0, 0},
      {hevc_key, sizeof(hevc_key), HUB_VIDEO, 1, 0}, {hevc_seq, sizeof(hevc_seq), HUB_VIDEO, 0, 1},
      {avc_seq, sizeof(avc_seq), HUB_VIDEO, 0, 1},  {aac_seq, sizeof(aac_seq), HUB_AUDIO, 0, 1},
      {aac_raw, sizeof(aac_raw), HUB_AUDIO, 0, 0},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    hub_frame_t *f = hub_frame_new(cases[i].type, 7, cases[i].d, cases[i].n);
    assert_non_null(f);
    assert_int_equal(f->keyframe, cases[i].key);
    assert_int_equal(f->seq_header, cases[i].seq);
    assert_int_equal(f->refs, 1);
    assert_ptr_equal(hub_frame_ref(f), f);
    assert_int_equal(f->refs, 2);
    hub_frame_unref(f);
    hub_frame_unref(f);
  }
  assert_null(hub_frame_alloc(HUB_VIDEO, 0, (size_t)HUB_FRAME_MAX + 1));
}

/* A late subscriber gets metadata, both sequence headers, then the GOP from
 * its keyframe, then live frames, in that order. */
static void test_late_subscriber_gop(void **state) {
  (void)state;
  hub_t *h = mk(1, 1, 0, 0, 0);
  int err = -1;
  hub_stream_t *st = hub_publish(h, "live/cam1", &err);
  assert_non_null(st);
  assert_int_equal(err, 0);
  push_headers(st);
  hub_push(st, video(0, 0, 100));  /* before any keyframe: not cached */
  hub_push(st, video(40, 1, 100));
  hub_push(st, audio(50));
  hub_push(st, video(80, 0, 100));
  hub_push(st, video(120, 1, 100)); /* a new GOP replaces the old one */
  hub_push(st, audio(130));
  hub_push(st, video(160, 0, 100));
  rec_t r;
  sub(h, "live/cam1", &r, 1);
  assert_int_equal(r.n, 0); /* nothing from inside hub_subscribe */
  run_for(0.01);
  assert_int_equal(r.n, 6);
  assert_int_equal(r.type[0], HUB_SCRIPT);
  assert_memory_equal(r.first_meta, "\x02\x00\x0aonMetaData", 13); /* @setDataFrame stripped */
  assert_int_equal(r.type[1], HUB_VIDEO);
  assert_int_equal(r.seq[1], 1);
  assert_int_equal(r.type[2], HUB_AUDIO);
  assert_int_equal(r.seq[2], 1);
  assert_int_equal(r.type[3], HUB_VIDEO);
  assert_int_equal(r.key[3], 1);
  assert_int_equal(r.ts[3], 120);
  assert_int_equal(r.ts[4], 130);
  assert_int_equal(r.ts[5], 160);
  hub_push(st, video(200, 0, 100));
  assert_int_equal(r.n, 7);
  assert_int_equal(r.ts[6], 200);
  hub_stats_t s;
  hub_get_stats(h, &s);
  assert_int_equal(s.streams, 1);
  assert_int_equal(s.publishers, 1);
  assert_int_equal(s.subscribers, 1);
  assert_int_equal(s.queued_bytes, 0);
  hub_unsubscribe(r.s);
  hub_unpublish(st);
  hub_get_stats(h, &s);
  assert_int_equal(s.streams, 0);
  assert_int_equal(s.subscribers, 0);
  hub_free(h);
}

static void info_cb(const hub_stream_info_t *in, void *arg) {
  hub_stream_info_t *out = arg;
  int i = 0;
  while (out[i].path) i++;
  out[i] = *in;
  out[i].path = strdup(in->path);
}

static void test_info(void **state) {
  (void)state;
  hub_t *h = mk(1, 1, 0, 0, 0);
  hub_stream_t *b = hub_publish(h, "live/b", NULL);
  hub_stream_t *a = hub_publish(h, "live/a", NULL);
  assert_non_null(a);
  assert_non_null(b);
  push_headers(a);
  hub_push(b, meta(0));
  rec_t waiting;
  sub(h, "live/nobody", &waiting, 1); /* a path only waited on is not listed */
  hub_stream_info_t info[4];
  memset(info, 0, sizeof(info));
  hub_foreach(h, info_cb, info);
  assert_string_equal(info[0].path, "live/a");
  assert_string_equal(info[1].path, "live/b");
  assert_null(info[2].path);
  assert_true(info[0].live);
  assert_string_equal(info[0].video_codec, "h264");
  assert_int_equal(info[0].width, 160);   /* from the SPS, over the metadata's 640 */
  assert_int_equal(info[0].height, 120);
  assert_string_equal(info[0].audio_codec, "aac");
  assert_int_equal(info[0].sample_rate, 44100);
  assert_int_equal(info[0].channels, 2);
  assert_true(info[0].fps == 25);
  assert_int_equal(info[1].width, 640);   /* metadata only */
  assert_int_equal(info[1].height, 360);
  assert_null(info[1].video_codec);
  for (int i = 0; i < 2; i++) free((char *)info[i].path);
  hub_unsubscribe(waiting.s);
  hub_free(h);
}

/* by_kind of |path| in hub_foreach (all zero when it is not listed). */
typedef struct kinds {
  const char *path;
  unsigned n[HUB_SUB_KINDS], subs;
} kinds_t;

static void kinds_cb(const hub_stream_info_t *in, void *arg) {
  kinds_t *k = arg;
  if (strcmp(in->path, k->path) != 0) return;
  memcpy(k->n, in->by_kind, sizeof(k->n));
  k->subs = in->subscribers;
}

static kinds_t kinds(hub_t *h, const char *path) {
  kinds_t k;
  memset(&k, 0, sizeof(k));
  k.path = path;
  hub_foreach(h, kinds_cb, &k);
  return k;
}

/* Subscribers counted per kind as they come, change kind and go, without
 * a walk: waiting ones from the publish on, refused ones never, ended ones
 * no longer. */
static void test_kind_counts(void **state) {
  (void)state;
  hub_config_t c = {.delay_close_s = 0.05, .wait_s = 1, .max_subscribers = 4};
  hub_t *h = hub_new(loop, &c);
  rec_t w, a, b, o, refused;
  sub(h, "live/k", &w, 1); /* waits: the path is not published yet */
  hub_sub_set_kind(w.s, HUB_SUB_PLAYER_HTTPFLV);
  hub_stream_t *st = hub_publish(h, "live/k", NULL);
  push_headers(st);
  sub(h, "live/k", &a, 1);
  sub(h, "live/k", &b, 1);
  sub(h, "live/k", &o, 1);
  hub_sub_set_kind(a.s, HUB_SUB_PLAYER_RTMP);
  hub_sub_set_kind(b.s, HUB_SUB_PLAYER_RTMP);
  hub_sub_set_kind(o.s, 99); /* not a kind: ignored */
  sub(h, "live/k", &refused, 1); /* over max_subscribers */
  hub_sub_set_kind(refused.s, HUB_SUB_PLAYER_RTMP);
  kinds_t k = kinds(h, "live/k");
  assert_int_equal(k.subs, 4);
  assert_int_equal(k.n[HUB_SUB_OTHER], 1);
  assert_int_equal(k.n[HUB_SUB_PLAYER_RTMP], 2);
  assert_int_equal(k.n[HUB_SUB_PLAYER_HTTPFLV], 1);
  run_for(0.01);
  assert_int_equal(refused.ended, 1);
  hub_sub_set_kind(b.s, HUB_SUB_PLAYER_HTTPFLV);
  hub_sub_set_kind(b.s, HUB_SUB_PLAYER_HTTPFLV); /* again: no change */
  hub_unsubscribe(a.s);
  k = kinds(h, "live/k");
  assert_int_equal(k.subs, 3);
  assert_int_equal(k.n[HUB_SUB_OTHER], 1);
  assert_int_equal(k.n[HUB_SUB_PLAYER_RTMP], 0);
  assert_int_equal(k.n[HUB_SUB_PLAYER_HTTPFLV], 2);
  hub_sub_set_kind(NULL, HUB_SUB_PLAYER_RTMP); /* accepted, nothing to count */
  /* the publisher goes and does not come back: every subscriber ends */
  hub_unpublish(st);
  run_for(0.2);
  assert_int_equal(w.ended, 1);
  assert_int_equal(b.ended, 1);
  assert_int_equal(o.ended, 1);
  /* a new stream on the path starts from zero */
  st = hub_publish(h, "live/k", NULL);
  sub(h, "live/k", &a, 1);
  k = kinds(h, "live/k");
  assert_int_equal(k.subs, 1);
  assert_int_equal(k.n[HUB_SUB_OTHER], 1);
  assert_int_equal(k.n[HUB_SUB_PLAYER_RTMP] + k.n[HUB_SUB_PLAYER_HTTPFLV], 0);
  hub_unsubscribe(a.s);
  hub_free(h);
}

static void test_refusals(void **state) {
  (void)state;
  hub_config_t c = {.delay_close_s = 1, .wait_s = 1, .max_streams = 2, .max_subscribers = 1};
  hub_t *h = hub_new(loop, &c);
  int err = 0;
  assert_non_null(hub_publish(h, "live/a", &err));
  assert_null(hub_publish(h, "live/a", &err));
  assert_int_equal(err, HUB_EBUSY);
  assert_null(hub_publish(h, "bad", &err));
  assert_int_equal(err, HUB_EINVAL);
  assert_non_null(hub_publish(h, "live/b", &err));
  assert_null(hub_publish(h, "live/c", &err));
  assert_int_equal(err, HUB_ELIMIT);
  rec_t r1, r2, r3;
  sub(h, "live/a", &r1, 1);
  sub(h, "live/a", &r2, 1);
  sub(h, "no-slash", &r3, 1);
  assert_int_equal(r2.ended, 0); /* refusals come from the loop, not from inside */
  run_for(0.01);
  assert_int_equal(r1.ended, 0);
  assert_int_equal(r2.ended, 1);
  assert_int_equal(r2.why, HUB_END_LIMIT);
  assert_int_equal(r3.ended, 1);
  assert_int_equal(r3.why, HUB_END_NOT_FOUND);
  hub_free(h);
  assert_int_equal(r1.ended, 1);
  assert_int_equal(r1.why, HUB_END_SHUTDOWN);
}

/* The publisher comes back within delay_close_s: its subscribers stay and
 * get the new frames. */
static void test_delay_close_keeps(void **state) {
  (void)state;
  hub_t *h = mk(0.3, 1, 0, 0, 0);
  hub_stream_t *st = hub_publish(h, "live/cam1", NULL);
  push_headers(st);
  hub_push(st, video(5000, 1, 100));
  rec_t r;
  sub(h, "live/cam1", &r, 1);
  run_for(0.01);
  assert_int_equal(r.n, 4);
  hub_unpublish(st);
  run_for(0.1);
  assert_int_equal(r.ended, 0);
  int err;
  hub_stream_t *st2 = hub_publish(h, "live/cam1", &err);
  assert_ptr_equal(st2, st);
  push_headers(st2);
  hub_push(st2, video(0, 1, 100));
  run_for(0.4);
  assert_int_equal(r.ended, 0);
  assert_int_equal(r.n, 8);
  assert_int_equal(r.key[7], 1);
  assert_int_equal(r.ts[7], 0);
  hub_unsubscribe(r.s);
  hub_free(h);
}

typedef struct preempted {
  int calls;
  hub_stream_t *st;
} preempted_t;

static void on_preempt(hub_stream_t *st, void *arg) {
  preempted_t *p = arg;
  p->calls++;
  p->st = st;
}

/* A pulled copy gives way: a local (or pushed) publisher takes the path
 * over with its subscribers, who switch on the newcomer's first keyframe;
 * a pulled publisher never displaces anyone, and a pulled one that did not
 * allow it (no preempt callback) is not displaced either. */
static void test_preempt_pulled(void **state) {
  (void)state;
  hub_t *h = mk(1, 1, 0, 0, 0);
  hub_origin_t pulled = {HUB_ORIGIN_PULLED, 7, 1}, pushed = {HUB_ORIGIN_PUSHED, 9, 1};
  int err = 0;
  hub_stream_t *st = hub_publish_ex(h, "live/p", &pulled, &err);
  assert_non_null(st);
  push_headers(st);
  hub_push(st, video(40000, 1, 100));
  rec_t r;
  sub(h, "live/p", &r, 1);
  run_for(0.01);
  assert_int_equal(r.n, 4);
  /* no callback: busy for everyone */
  assert_int_equal(hub_publish_check(h, "live/p"), HUB_EBUSY);
  assert_null(hub_publish(h, "live/p", &err));
  assert_int_equal(err, HUB_EBUSY);
  preempted_t pc = {0, NULL};
  hub_stream_set_preempt(st, on_preempt, &pc);
  assert_int_equal(hub_publish_check_ex(h, "live/p", HUB_ORIGIN_PULLED), HUB_EBUSY);
  assert_null(hub_publish_ex(h, "live/p", &pulled, &err));
  assert_int_equal(err, HUB_EBUSY);
  assert_int_equal(pc.calls, 0);
  assert_int_equal(hub_publish_check_ex(h, "live/p", HUB_ORIGIN_PUSHED), 0);
  assert_int_equal(hub_publish_check(h, "live/p"), 0);
  /* the pulled copy goes on a little, then the local publisher arrives */
  hub_push(st, video(40040, 0, 100));
  run_for(0.01);
  assert_int_equal(r.n, 5);
  hub_stream_t *loc = hub_publish(h, "live/p", &err);
  assert_ptr_equal(loc, st); /* the same stream, with its subscriber */
  assert_int_equal(pc.calls, 1);
  assert_ptr_equal(pc.st, st);
  hub_origin_t o;
  assert_int_equal(hub_origin_of(h, "live/p", &o), 0);
  assert_int_equal(o.kind, HUB_ORIGIN_LOCAL);
  hub_stats_t s;
  hub_get_stats(h, &s);
  assert_int_equal(s.publishers, 1);
  /* mid-GOP frames of the newcomer are skipped; headers pass; the
   * keyframe switches the subscriber over */
  hub_push(loc, video(10, 0, 100));
  push_headers(loc);
  hub_push(loc, audio(15));
  hub_push(loc, video(20, 1, 100));
  hub_push(loc, video(60, 0, 100));
  run_for(0.01);
  assert_int_equal(r.ended, 0);
  assert_int_equal(r.n, 5 + 3 + 2); /* the audio before the keyframe waits with the video */
  assert_int_equal(r.type[5], HUB_SCRIPT);
  assert_int_equal(r.seq[6], 1);
  assert_int_equal(r.seq[7], 1);
  assert_int_equal(r.key[8], 1);
  assert_int_equal(r.ts[8], 20);
  assert_int_equal(r.ts[9], 60);
  /* a pushed publisher cannot displace a local one */
  assert_null(hub_publish_ex(h, "live/p", &pushed, &err));
  assert_int_equal(err, HUB_EBUSY);
  /* and a pushed one displaces a pulled copy too */
  hub_stream_t *q = hub_publish_ex(h, "live/q", &pulled, &err);
  hub_stream_set_preempt(q, on_preempt, &pc);
  assert_non_null(hub_publish_ex(h, "live/q", &pushed, &err));
  assert_int_equal(pc.calls, 2);
  hub_unsubscribe(r.s);
  hub_free(h);
}

/* Relay subscribers (follow) end as soon as the publisher leaves; players
 * stay for delay_close_s; a publisher back before the deferred end cancels
 * it. */
static void test_follow_ends_at_once(void **state) {
  (void)state;
  hub_t *h = mk(0.5, 1, 0, 0, 0);
  hub_stream_t *st = hub_publish(h, "live/f", NULL);
  push_headers(st);
  hub_push(st, video(0, 1, 100));
  rec_t relay, player, quick;
  sub(h, "live/f", &relay, 1);
  hub_sub_set_follow(relay.s, 1);
  sub(h, "live/f", &player, 1);
  run_for(0.01);
  hub_unpublish(st);
  run_for(0.05);
  assert_int_equal(relay.ended, 1);
  assert_int_equal(relay.why, HUB_END_UNPUBLISHED);
  assert_int_equal(player.ended, 0);
  /* a new relay of the kept stream waits; the publisher comes back at once */
  sub(h, "live/f", &quick, 1);
  hub_sub_set_follow(quick.s, 1);
  st = hub_publish(h, "live/f", NULL);
  hub_push(st, video(10, 1, 100));
  hub_unpublish(st);
  st = hub_publish(h, "live/f", NULL); /* back before the loop ran */
  hub_push(st, video(20, 1, 100));
  run_for(0.05);
  assert_int_equal(quick.ended, 0);
  assert_true(quick.n >= 2);
  run_for(0.6);
  assert_int_equal(player.ended, 0);
  hub_unpublish(st);
  run_for(0.7);
  assert_int_equal(quick.ended, 1);
  assert_int_equal(player.ended, 1);
  assert_int_equal(player.why, HUB_END_UNPUBLISHED);
  hub_free(h);
}

static void test_delay_close_ends(void **state) {
  (void)state;
  hub_t *h = mk(0.1, 1, 0, 0, 0);
  hub_stream_t *st = hub_publish(h, "live/cam1", NULL);
  hub_push(st, video(0, 1, 100));
  rec_t r;
  sub(h, "live/cam1", &r, 1);
  run_for(0.01);
  hub_unpublish(st);
  hub_stats_t s;
  hub_get_stats(h, &s);
  assert_int_equal(s.streams, 1); /* kept */
  assert_int_equal(s.publishers, 0);
  run_for(0.3);
  assert_int_equal(r.ended, 1);
  assert_int_equal(r.why, HUB_END_UNPUBLISHED);
  hub_get_stats(h, &s);
  assert_int_equal(s.streams, 0);
  assert_int_equal(s.subscribers, 0);
  /* the path is free again */
  st = hub_publish(h, "live/cam1", NULL);
  assert_non_null(st);
  hub_free(h);
}

static void test_wait(void **state) {
  (void)state;
  hub_t *h = mk(1, 0.1, 0, 0, 0);
  rec_t missing, early;
  sub(h, "live/missing", &missing, 1);
  sub(h, "live/later", &early, 1);
  run_for(0.05);
  assert_int_equal(missing.ended, 0);
  hub_stream_t *st = hub_publish(h, "live/later", NULL);
  push_headers(st);
  hub_push(st, video(0, 1, 100));
  run_for(0.2);
  assert_int_equal(missing.ended, 1);
  assert_int_equal(missing.why, HUB_END_NOT_FOUND);
  assert_int_equal(early.ended, 0);
  assert_int_equal(early.n, 4);
  assert_int_equal(early.type[0], HUB_SCRIPT);
  assert_int_equal(early.key[3], 1);
  hub_stats_t s;
  hub_get_stats(h, &s);
  assert_int_equal(s.streams, 1);
  assert_int_equal(s.subscribers, 1);
  hub_free(h);
  assert_int_equal(early.why, HUB_END_SHUTDOWN);
}

/* A subscriber that never drains is skipped to keyframes within its bound
 * and ended after slow_s of stream time; a fast one sees every frame. */
static void test_slow_subscriber(void **state) {
  (void)state;
  const size_t qbytes = 20000;
  hub_t *h = mk(1, 1, qbytes, 100, 3);
  hub_stream_t *st = hub_publish(h, "live/cam1", NULL);
  push_headers(st);
  rec_t fast, slow, lazy;
  sub(h, "live/cam1", &fast, 1);
  sub(h, "live/cam1", &slow, 0);
  sub(h, "live/cam1", &lazy, 0);
  int pushed = 0;
  for (uint32_t i = 0; i < 50; i++, pushed++) hub_push(st, video(i * 40, i % 10 == 0, 1000));
  /* lazy drains now: after its drop it restarts on a keyframe */
  rec_take(&lazy);
  assert_true(hub_sub_dropped(lazy.s) > 0);
  int first_media = -1;
  for (int i = 0; i < lazy.n; i++)
    if (!lazy.seq[i] && lazy.type[i] != HUB_SCRIPT) {
      first_media = i;
      break;
    }
  assert_true(first_media >= 0);
  assert_int_equal(lazy.key[first_media], 1);
  assert_int_equal(lazy.type[0], HUB_SCRIPT); /* headers survive the drop */
  assert_int_equal(lazy.seq[1], 1);
  lazy.drain = 1;
  for (uint32_t i = 50; i < 150; i++, pushed++) {
    hub_push(st, video(i * 40, i % 10 == 0, 1000));
    assert_true(slow.ended || hub_sub_queued(slow.s) <= qbytes);
  }
  assert_int_equal(slow.ended, 1);
  assert_int_equal(slow.why, HUB_END_SLOW);
  assert_int_equal(fast.ended, 0);
  assert_int_equal(fast.n, 3 + pushed);
  for (int i = 4; i < fast.n; i++) assert_int_equal(fast.ts[i], fast.ts[i - 1] + 40);
  assert_int_equal(lazy.ended, 0); /* caught up, no longer behind */
  assert_true(fast.max_queued <= qbytes);
  hub_stats_t s;
  hub_get_stats(h, &s);
  assert_int_equal(s.slow_disconnects, 1);
  assert_true(s.frames_dropped > 0);
  assert_int_equal(s.subscribers, 2);
  hub_free(h);
}

/* queue_s bounds a queue in stream time even when bytes are small. */
static void test_queue_time_bound(void **state) {
  (void)state;
  hub_t *h = mk(1, 1, 1 << 20, 1.0, 100);
  hub_stream_t *st = hub_publish(h, "live/cam1", NULL);
  rec_t r;
  sub(h, "live/cam1", &r, 0);
  for (uint32_t i = 0; i < 60; i++) hub_push(st, video(i * 40, i % 25 == 0, 100));
  rec_take(&r);
  /* 60 frames over 2.4 s, queue ≤ 1 s: it restarted at the keyframe of 2.0 s */
  assert_true(r.n > 0 && r.n <= 26);
  assert_int_equal(r.key[0], 1);
  assert_int_equal(r.ts[0], 2000);
  assert_int_equal(hub_sub_dropped(r.s), 60 - (uint64_t)r.n);
  hub_free(h);
}

static void test_audio_only_window(void **state) {
  (void)state;
  hub_t *h = mk(1, 1, 0, 0, 0);
  hub_stream_t *st = hub_publish(h, "live/radio", NULL);
  hub_push(st, hub_frame_new(HUB_AUDIO, 0, aac_seq, sizeof(aac_seq)));
  for (uint32_t i = 0; i < 100; i++) hub_push(st, audio(i * 23));
  rec_t r;
  sub(h, "live/radio", &r, 1);
  run_for(0.01);
  /* the sequence header then about 1 s of audio */
  assert_int_equal(r.seq[0], 1);
  assert_true(r.n >= 40 && r.n <= 46);
  assert_true(r.ts[r.n - 1] - r.ts[1] <= 1000);
  hub_free(h);
}

/* A subscriber that leaves from inside on_frames does not disturb the
 * others or the walk over subscribers. */
static void test_unsubscribe_in_callback(void **state) {
  (void)state;
  hub_t *h = mk(1, 1, 0, 0, 0);
  hub_stream_t *st = hub_publish(h, "live/cam1", NULL);
  rec_t a, b, c;
  sub(h, "live/cam1", &a, 1);
  sub(h, "live/cam1", &b, 1);
  sub(h, "live/cam1", &c, 1);
  b.unsub_in_cb = 1;
  hub_push(st, video(0, 1, 100));
  hub_push(st, video(40, 0, 100));
  assert_int_equal(a.n, 2);
  assert_int_equal(c.n, 2);
  assert_int_equal(b.ended, -1);
  hub_stats_t s;
  hub_get_stats(h, &s);
  assert_int_equal(s.subscribers, 2);
  hub_free(h);
}

/* Every reference the hub took is given back. */
static void test_refcounts(void **state) {
  (void)state;
  hub_t *h = mk(0.05, 1, 4000, 0, 0);
  hub_stream_t *st = hub_publish(h, "live/cam1", NULL);
  hub_frame_t *key = video(0, 1, 500), *seq = hub_frame_new(HUB_VIDEO, 0, avc_seq, sizeof(avc_seq));
  hub_frame_ref(key);
  hub_frame_ref(seq);
  hub_push(st, seq);
  hub_push(st, key);
  rec_t r1, r2;
  sub(h, "live/cam1", &r1, 0);
  sub(h, "live/cam1", &r2, 0);
  assert_int_equal(key->refs, 1 + 1 + 2); /* mine, the GOP cache, two queues */
  /* the queues overflow and drop it; the GOP outgrows queue_bytes and is dropped too */
  for (uint32_t i = 1; i < 20; i++) hub_push(st, video(i * 40, 0, 500));
  assert_int_equal(key->refs, 1);
  assert_int_equal(seq->refs, 1 + 1 + 2); /* headers are never dropped */
  hub_unpublish(st);
  run_for(0.2);
  assert_int_equal(r1.why, HUB_END_UNPUBLISHED);
  assert_int_equal(key->refs, 1);
  assert_int_equal(seq->refs, 1);
  hub_frame_unref(key);
  hub_frame_unref(seq);
  hub_free(h);
}

/* Write policy: frames pushed while the loop is not running (as within one
 * loop iteration) reach a started subscriber in one on_frames call, from
 * the loop; an immediate subscriber is told per frame, synchronously;
 * nothing is lost or reordered. */
static void test_merged_write(void **state) {
  (void)state;
  hub_config_t c = {.delay_close_s = 0.05, .wait_s = 1, .merge_s = 0.05};
  hub_t *h = hub_new(loop, &c);
  assert_non_null(h);
  hub_stream_t *st = hub_publish(h, "live/cam1", NULL);
  assert_non_null(st);
  push_headers(st);
  hub_push(st, video(0, 1, 100));
  rec_t r, ri;
  sub(h, "live/cam1", &r, 1);
  sub(h, "live/cam1", &ri, 1);
  hub_sub_set_immediate(ri.s, 1);
  run_for(0.01); /* the GOP cache is delivered at once, merged or not */
  assert_int_equal(r.n, 4);
  assert_int_equal(ri.n, 4);
  int calls0 = r.calls, icalls0 = ri.calls;
  for (uint32_t i = 1; i <= 6; i++) {
    hub_push(st, audio(i * 40));
    hub_push(st, video(i * 40, 0, 100));
  }
  /* not yet: told from the loop, at the end of the iteration */
  assert_int_equal(r.calls, calls0);
  assert_int_equal(r.n, 4);
  assert_int_equal(ri.calls, icalls0 + 12);
  assert_int_equal(ri.n, 16);
  run_for(0.1);
  assert_int_equal(r.calls, calls0 + 1);
  assert_int_equal(r.n, 16);
  for (int i = 0; i < 16; i++) assert_int_equal(r.ts[i], ri.ts[i]);
  /* an idle stream arms nothing: nothing more arrives */
  run_for(0.1);
  assert_int_equal(r.calls, calls0 + 1);
  hub_unsubscribe(r.s);
  hub_unsubscribe(ri.s);
  hub_unpublish(st);
  run_for(0.1);
  hub_free(h);
}

/* The operator's kick ends one subscriber (HUB_END_KICKED) and leaves the
 * others; a drop ends every subscriber, waiting ones too, displaces a
 * pulled publisher and releases the stream at once (no delayclose); a live
 * publisher stays for its owner to unpublish, after which the stream goes
 * at once; an unknown path is refused and changes nothing. */
static void test_kick_and_drop(void **state) {
  (void)state;
  hub_t *h = mk(30, 30, 0, 0, 0);
  hub_stream_t *st = hub_publish(h, "live/d", NULL);
  push_headers(st);
  rec_t a, b, w;
  sub(h, "live/d", &a, 1);
  sub(h, "live/d", &b, 1);
  hub_sub_set_kind(a.s, HUB_SUB_PLAYER_RTMP);
  hub_sub_set_kind(b.s, HUB_SUB_PLAYER_HTTPFLV);
  assert_int_equal(hub_path_players(h, "live/d"), 2);
  hub_sub_kick(a.s);
  assert_int_equal(a.ended, 1);
  assert_int_equal(a.why, HUB_END_KICKED);
  assert_int_equal(b.ended, 0);
  assert_int_equal(hub_path_players(h, "live/d"), 1);
  hub_sub_kick(NULL); /* accepted */
  assert_int_equal(hub_drop(h, "live/none"), -1);
  assert_int_equal(hub_drop(h, "bad"), -1);
  assert_int_equal(b.ended, 0);
  /* a drop with a live publisher: subscribers end, the stream waits for
   * its owner, then goes at once (not after delayclose) */
  assert_int_equal(hub_drop(h, "live/d"), 0);
  assert_int_equal(b.ended, 1);
  assert_int_equal(b.why, HUB_END_KICKED);
  assert_true(hub_has_stream(h, "live/d"));
  hub_unpublish(st);
  assert_false(hub_has_stream(h, "live/d"));
  /* a stream kept by delayclose, with a subscriber and one waiting on
   * another path: the drop ends the kept one at once */
  st = hub_publish(h, "live/e", NULL);
  push_headers(st);
  sub(h, "live/e", &a, 1);
  hub_unpublish(st);
  assert_true(hub_has_stream(h, "live/e"));
  sub(h, "live/w", &w, 1);
  assert_int_equal(hub_drop(h, "live/w"), -1); /* waited on, not published */
  assert_int_equal(hub_drop(h, "live/e"), 0);
  assert_int_equal(a.ended, 1);
  assert_int_equal(a.why, HUB_END_KICKED);
  assert_false(hub_has_stream(h, "live/e"));
  assert_int_equal(w.ended, 0);
  /* a pulled copy that allows it is displaced by a drop */
  hub_origin_t pulled = {HUB_ORIGIN_PULLED, 7, 1};
  int err = 0;
  st = hub_publish_ex(h, "live/p", &pulled, &err);
  preempted_t pc = {0, NULL};
  hub_stream_set_preempt(st, on_preempt, &pc);
  sub(h, "live/p", &b, 1);
  assert_int_equal(hub_drop(h, "live/p"), 0);
  assert_int_equal(pc.calls, 1);
  assert_int_equal(b.ended, 1);
  assert_false(hub_has_stream(h, "live/p"));
  hub_unsubscribe(w.s);
  hub_free(h);
}

/* ---- observer hooks ---- */

typedef struct obs_rec {
  int publish, unpublish, missing, idle;
  char last[64];
  hub_origin_t origin;
  hub_t *publish_on_missing;   /* publish the missing path from on_missing */
  hub_stream_t *published;
  char order[32];              /* event letters in order: P U M I */
  size_t norder;
} obs_rec_t;

static void obs_note(obs_rec_t *o, const char *path, char ev) {
  snprintf(o->last, sizeof(o->last), "%s", path);
  if (o->norder + 1 < sizeof(o->order)) o->order[o->norder++] = ev;
}

static void obs_publish(hub_t *h, const char *path, const hub_origin_t *org, void *arg) {
  obs_rec_t *o = arg;
  (void)h;
  o->publish++;
  o->origin = *org;
  obs_note(o, path, 'P');
}

static void obs_unpublish(hub_t *h, const char *path, void *arg) {
  obs_rec_t *o = arg;
  (void)h;
  o->unpublish++;
  obs_note(o, path, 'U');
}

static void obs_missing(hub_t *h, const char *path, void *arg) {
  obs_rec_t *o = arg;
  o->missing++;
  obs_note(o, path, 'M');
  if (o->publish_on_missing) {
    hub_origin_t pulled = {HUB_ORIGIN_PULLED, 7, 1};
    int err = -1;
    o->published = hub_publish_ex(h, path, &pulled, &err);
    assert_int_equal(err, 0);
  }
}

static void obs_idle(hub_t *h, const char *path, void *arg) {
  obs_rec_t *o = arg;
  (void)h;
  o->idle++;
  obs_note(o, path, 'I');
}

static const hub_observer_t obs_ops = {obs_publish, obs_unpublish, obs_missing, obs_idle};

static void info_origin(const hub_stream_info_t *in, void *arg) {
  *(hub_origin_t *)arg = in->origin;
}

/* on_publish carries the origin; on_unpublish comes at once without
 * subscribers, after delay_close_s with them, and not at all when the
 * publisher comes back in time. */
static void test_observer_publish(void **state) {
  (void)state;
  hub_t *h = mk(0.2, 1, 0, 0, 0);
  obs_rec_t o = {0};
  hub_set_observer(h, &obs_ops, &o);
  hub_origin_t pushed = {HUB_ORIGIN_PUSHED, 42, 3}, got = {0};
  int err = -1;
  assert_int_equal(hub_publish_check(h, "live/a"), 0);
  assert_int_equal(hub_publish_check(h, "live"), HUB_EINVAL);
  hub_stream_t *st = hub_publish_ex(h, "live/a", &pushed, &err);
  assert_non_null(st);
  assert_int_equal(hub_publish_check(h, "live/a"), HUB_EBUSY);
  assert_int_equal(o.publish, 1);
  assert_string_equal(o.last, "live/a");
  assert_int_equal(o.origin.kind, HUB_ORIGIN_PUSHED);
  assert_int_equal(o.origin.node, 42);
  assert_int_equal(o.origin.hops, 3);
  assert_int_equal(hub_stream_origin(st)->node, 42);
  assert_int_equal(hub_origin_of(h, "live/a", &got), 0);
  assert_int_equal(got.hops, 3);
  memset(&got, 0, sizeof(got));
  hub_foreach(h, info_origin, &got);
  assert_int_equal(got.kind, HUB_ORIGIN_PUSHED);
  assert_int_equal(got.node, 42);
  hub_unpublish(st); /* nobody watches: ends at once */
  assert_int_equal(o.unpublish, 1);
  assert_int_equal(hub_origin_of(h, "live/a", &got), -1);

  /* hub_publish is the LOCAL shorthand */
  st = hub_publish(h, "live/a", &err);
  assert_int_equal(o.origin.kind, HUB_ORIGIN_LOCAL);
  assert_int_equal(o.origin.hops, 0);
  rec_t r;
  sub(h, "live/a", &r, 1);
  hub_unpublish(st);
  assert_int_equal(o.unpublish, 1); /* kept for delay_close_s */
  st = hub_publish(h, "live/a", &err); /* back in time */
  assert_non_null(st);
  assert_int_equal(o.publish, 3);
  run_for(0.3);
  assert_int_equal(o.unpublish, 1);
  assert_int_equal(r.ended, 0);
  hub_unpublish(st);
  run_for(0.3);
  assert_int_equal(r.ended, 1);
  assert_int_equal(r.why, HUB_END_UNPUBLISHED);
  assert_int_equal(o.unpublish, 2);
  assert_string_equal(o.order, "PUPPU");
  hub_free(h);
}

/* on_missing: once per path for several waiters, again for a new wait after
 * the first ended, after delay_close_s expires with a waiter, and a publish
 * from inside it serves the waiter that triggered it. */
static void test_observer_missing(void **state) {
  (void)state;
  hub_t *h = mk(0.1, 0.4, 0, 0, 0);
  obs_rec_t o = {0};
  hub_set_observer(h, &obs_ops, &o);
  rec_t a, b;
  sub(h, "live/m", &a, 1);
  sub(h, "live/m", &b, 1);
  assert_int_equal(o.missing, 1);
  assert_string_equal(o.last, "live/m");
  unsigned ns = 9, nw = 9;
  hub_path_counts(h, "live/m", &ns, &nw);
  assert_int_equal(ns, 2);
  assert_int_equal(nw, 2);
  hub_path_counts(h, "live/other", &ns, &nw);
  assert_int_equal(ns + nw, 0);
  run_for(0.5);
  assert_int_equal(a.why, HUB_END_NOT_FOUND);
  assert_int_equal(b.why, HUB_END_NOT_FOUND);
  sub(h, "live/m", &a, 1); /* a new wait */
  assert_int_equal(o.missing, 2);
  int err;
  hub_stream_t *st = hub_publish(h, "live/m", &err);
  assert_non_null(st);
  hub_push(st, video(0, 1, 100));
  assert_true(a.n >= 1);
  hub_path_counts(h, "live/m", &ns, &nw);
  assert_int_equal(ns, 1);
  assert_int_equal(nw, 0);
  /* delay close: a newcomer waits quietly until the stream is given up */
  hub_unpublish(st);
  sub(h, "live/m", &b, 1);
  assert_int_equal(o.missing, 2);
  run_for(0.2);
  assert_int_equal(a.why, HUB_END_UNPUBLISHED);
  assert_int_equal(b.ended, 0);
  assert_int_equal(o.missing, 3);
  hub_unsubscribe(b.s);

  /* the on-demand pull shape: the observer publishes at once */
  o.publish_on_missing = h;
  sub(h, "live/n", &a, 1);
  assert_int_equal(o.missing, 4);
  assert_non_null(o.published);
  assert_int_equal(o.origin.kind, HUB_ORIGIN_PULLED);
  hub_push(o.published, video(0, 1, 100));
  assert_int_equal(a.n, 1);
  assert_int_equal(a.ended, 0);
  hub_unsubscribe(a.s);
  hub_unpublish(o.published);
  hub_free(h);
}

/* on_idle: when the last subscriber of a live stream leaves, from the
 * loop, not when one comes back before the loop runs. */
static void test_observer_idle(void **state) {
  (void)state;
  hub_t *h = mk(0.2, 1, 0, 0, 0);
  obs_rec_t o = {0};
  hub_set_observer(h, &obs_ops, &o);
  int err;
  hub_stream_t *st = hub_publish(h, "live/i", &err);
  rec_t a, b;
  sub(h, "live/i", &a, 1);
  sub(h, "live/i", &b, 1);
  hub_unsubscribe(a.s);
  run_for(0.05);
  assert_int_equal(o.idle, 0);
  hub_unsubscribe(b.s);
  assert_int_equal(o.idle, 0); /* deferred */
  run_for(0.05);
  assert_int_equal(o.idle, 1);
  assert_string_equal(o.last, "live/i");
  sub(h, "live/i", &a, 1);
  hub_unsubscribe(a.s);
  sub(h, "live/i", &b, 1); /* back before the loop ran */
  run_for(0.05);
  assert_int_equal(o.idle, 1);
  hub_unsubscribe(b.s);
  hub_unpublish(st); /* not live any more when the loop runs */
  run_for(0.05);
  assert_int_equal(o.idle, 1);
  hub_set_observer(h, NULL, NULL);
  hub_free(h);
}

/* A subscriber's own queue bound overrides the hub's. */
static void test_sub_queue_bytes(void **state) {
  (void)state;
  hub_t *h = mk(0.2, 1, 0, 0, 0);
  int err;
  hub_stream_t *st = hub_publish(h, "live/q", &err);
  rec_t r;
  sub(h, "live/q", &r, 0);
  hub_sub_set_queue_bytes(r.s, 2000);
  for (uint32_t i = 0; i < 100; i++) {
    hub_push(st, video(i * 40, i % 10 == 0, 500));
    assert_true(hub_sub_queued(r.s) <= 2000);
  }
  assert_true(hub_sub_dropped(r.s) > 0);
  hub_unsubscribe(r.s);
  hub_unpublish(st);
  hub_free(h);
}

/* Merged write does not delay a subscriber's start: one that waited for the
 * stream gets the headers and the first keyframe at once, then is merged. */
static void test_merged_write_start_at_once(void **state) {
  (void)state;
  hub_config_t c = {.delay_close_s = 0.05, .wait_s = 1, .merge_s = 0.05};
  hub_t *h = hub_new(loop, &c);
  assert_non_null(h);
  rec_t r;
  sub(h, "live/late", &r, 1); /* waits: nothing published yet */
  hub_stream_t *st = hub_publish(h, "live/late", NULL);
  assert_non_null(st);
  push_headers(st);
  hub_push(st, video(0, 1, 100));
  /* no loop turn: delivered synchronously, not after the merge period */
  assert_int_equal(r.n, 4);
  int calls = r.calls;
  hub_push(st, video(40, 0, 100));
  hub_push(st, video(80, 0, 100));
  assert_int_equal(r.n, 4); /* from now on merged */
  assert_int_equal(r.calls, calls);
  run_for(0.1);
  assert_int_equal(r.n, 6);
  hub_unsubscribe(r.s);
  hub_unpublish(st);
  run_for(0.1);
  hub_free(h);
}

/* ---- write policy ---- */

/* An idle loop: a started subscriber is told of a new frame before the
 * loop waits again (the end of the iteration), not a merge period later,
 * and a burst of frames within one iteration is one notification per
 * subscriber carrying all of them, in order. */
static void test_write_idle_at_once(void **state) {
  (void)state;
  hub_config_t c = {.delay_close_s = 0.05, .wait_s = 1, .merge_s = 0.04};
  hub_t *h = hub_new(loop, &c);
  assert_non_null(h);
  hub_stream_t *st = hub_publish(h, "live/idle", NULL);
  assert_non_null(st);
  push_headers(st);
  hub_push(st, video(0, 1, 100));
  rec_t a, b;
  sub(h, "live/idle", &a, 1);
  sub(h, "live/idle", &b, 1);
  run_for(0.01);
  assert_int_equal(a.n, 4);
  assert_int_equal(b.n, 4);
  /* one small frame: told in the next loop iteration, without waiting */
  int ca = a.calls, cb = b.calls;
  hub_push(st, audio(10));
  assert_int_equal(a.calls, ca); /* deferred to the end of the iteration */
  ev_run(loop, EVRUN_NOWAIT);
  assert_int_equal(a.calls, ca + 1);
  assert_int_equal(b.calls, cb + 1);
  assert_int_equal(a.n, 5);
  /* a burst within one iteration: one notification each, every frame */
  ca = a.calls;
  cb = b.calls;
  for (uint32_t i = 1; i <= 3; i++) {
    hub_push(st, audio(20 + i * 40));
    hub_push(st, video(20 + i * 40, 0, 3000));
  }
  ev_run(loop, EVRUN_NOWAIT);
  assert_int_equal(a.calls, ca + 1);
  assert_int_equal(b.calls, cb + 1);
  assert_int_equal(a.n, 11);
  assert_int_equal(b.n, 11);
  for (int i = 5; i < 11; i++) {
    assert_int_equal(a.ts[i], 20 + (uint32_t)((i - 5) / 2 + 1) * 40);
    assert_int_equal(a.type[i], (i - 5) % 2 ? HUB_VIDEO : HUB_AUDIO);
  }
  /* nothing is left armed: no more notifications */
  run_for(0.06);
  assert_int_equal(a.calls, ca + 1);
  hub_unsubscribe(a.s);
  hub_unsubscribe(b.s);
  hub_unpublish(st);
  run_for(0.1);
  hub_free(h);
}

/* A busy loop: frames are batched (fewer notifications than frames), and
 * none waits past merge_s: a timer of merge_s started with each push, run
 * after everything else of its loop iteration, finds the frame delivered
 * (judged on the loop's clock, so a descheduled test process cannot fail
 * it). Once the loop is idle again a frame is told at once. */
#define LOAD_FRAMES 60
typedef struct load_rec {
  rec_t r;
  hub_stream_t *st;
  int pushes;
  uint8_t delivered[LOAD_FRAMES + 2];   /* by ts / 10 */
  ev_timer deadline[LOAD_FRAMES + 2];
  int late;                            /* deadlines that found their frame undelivered */
} load_rec_t;

static void load_frames(hub_sub_t *s, void *arg) {
  load_rec_t *l = arg;
  assert_ptr_equal(s, l->r.s);
  l->r.calls++;
  hub_frame_t *f;
  while ((f = hub_sub_next(s)) != NULL) {
    unsigned k = f->ts / 10;
    if (!f->seq_header && f->type != HUB_SCRIPT && k <= LOAD_FRAMES + 1) l->delivered[k] = 1;
    l->r.n++;
    hub_frame_unref(f);
  }
}

static void load_end(hub_sub_t *s, void *arg, int why) {
  load_rec_t *l = arg;
  (void)s;
  l->r.ended = 1;
  l->r.why = why;
  l->r.s = NULL;
}

static const hub_sub_ops_t load_ops = {load_frames, load_end};

static load_rec_t load_rec;

static void deadline_cb(struct ev_loop *l, ev_timer *w, int revents) {
  (void)l;
  (void)revents;
  unsigned k = (unsigned)(w - load_rec.deadline);
  if (!load_rec.delivered[k]) load_rec.late++;
}

/* spin_cb keeps the loop busy: 3 ms of work every millisecond */
static void spin_cb(struct ev_loop *l, ev_timer *w, int revents) {
  (void)l;
  (void)w;
  (void)revents;
  double until = ev_time() + 0.003;
  while (ev_time() < until) {
  }
}

/* pusher_cb publishes every 10 ms: small audio frames, a large video frame
 * every fourth, each with its deadline */
static void pusher_cb(struct ev_loop *l, ev_timer *w, int revents) {
  load_rec_t *lr = w->data;
  (void)revents;
  if (lr->pushes >= LOAD_FRAMES) return;
  unsigned k = (unsigned)++lr->pushes;
  ev_timer_init(&lr->deadline[k], deadline_cb, 0.03 + 0.001, 0.);
  ev_set_priority(&lr->deadline[k], EV_MINPRI);
  ev_timer_start(l, &lr->deadline[k]);
  if (k % 4 == 0) hub_push(lr->st, video(k * 10, 0, 3000));
  else hub_push(lr->st, audio(k * 10));
}

static void test_write_busy_batches_bounded(void **state) {
  (void)state;
  hub_config_t c = {.delay_close_s = 0.05, .wait_s = 1, .merge_s = 0.03};
  hub_t *h = hub_new(loop, &c);
  assert_non_null(h);
  load_rec_t *lr = &load_rec;
  memset(lr, 0, sizeof(*lr));
  lr->st = hub_publish(h, "live/busy", NULL);
  assert_non_null(lr->st);
  push_headers(lr->st);
  hub_push(lr->st, video(0, 1, 100));
  lr->r.s = hub_subscribe(h, "live/busy", &load_ops, lr);
  assert_non_null(lr->r.s);
  run_for(0.01);
  assert_int_equal(lr->r.n, 4);
  ev_timer spin, pusher;
  ev_timer_init(&spin, spin_cb, 0.001, 0.001);
  ev_timer_start(loop, &spin);
  run_for(0.3); /* the hub sees a busy loop */
  int calls0 = lr->r.calls;
  ev_timer_init(&pusher, pusher_cb, 0.01, 0.01);
  pusher.data = lr;
  ev_timer_start(loop, &pusher);
  for (int i = 0; i < 500 && lr->pushes < LOAD_FRAMES; i++) run_for(0.01);
  ev_timer_stop(loop, &pusher);
  run_for(0.1); /* the last deadlines */
  ev_timer_stop(loop, &spin);
  assert_int_equal(lr->pushes, LOAD_FRAMES);
  assert_int_equal(lr->r.n, 4 + LOAD_FRAMES);
  int calls = lr->r.calls - calls0;
  print_message("busy loop: %d notifications for %d frames\n", calls, LOAD_FRAMES);
  /* batched: the small frames ride along; a write per frame would be 60 */
  assert_true(calls <= LOAD_FRAMES / 2);
  assert_int_equal(lr->late, 0);
  /* idle again: told before the loop waits */
  run_for(0.4);
  int c1 = lr->r.calls;
  hub_push(lr->st, audio((LOAD_FRAMES + 1) * 10));
  ev_run(loop, EVRUN_NOWAIT);
  assert_int_equal(lr->r.calls, c1 + 1);
  assert_int_equal(lr->delivered[LOAD_FRAMES + 1], 1);
  hub_unsubscribe(lr->r.s);
  hub_unpublish(lr->st);
  run_for(0.1);
  hub_free(h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_path_ok),
      cmocka_unit_test(test_frame_classify),
      cmocka_unit_test(test_late_subscriber_gop),
      cmocka_unit_test(test_info),
      cmocka_unit_test(test_kind_counts),
      cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_delay_close_keeps),
      cmocka_unit_test(test_delay_close_ends),
      cmocka_unit_test(test_preempt_pulled),
      cmocka_unit_test(test_follow_ends_at_once),
      cmocka_unit_test(test_wait),
      cmocka_unit_test(test_slow_subscriber),
      cmocka_unit_test(test_queue_time_bound),
      cmocka_unit_test(test_audio_only_window),
      cmocka_unit_test(test_unsubscribe_in_callback),
      cmocka_unit_test(test_refcounts),
      cmocka_unit_test(test_merged_write),
      cmocka_unit_test(test_merged_write_start_at_once),
      cmocka_unit_test(test_write_idle_at_once),
      cmocka_unit_test(test_write_busy_batches_bounded),
      cmocka_unit_test(test_observer_publish),
      cmocka_unit_test(test_observer_missing),
      cmocka_unit_test(test_observer_idle),
      cmocka_unit_test(test_sub_queue_bytes),
      cmocka_unit_test(test_kick_and_drop),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
