/* The stream hub: see hub.h.
 *
 * Ownership: the hub owns its streams; a stream owns its subscribers (the
 * caller holds a borrowed pointer until on_end or hub_unsubscribe) and one
 * reference of every frame in its caches; a subscriber owns one reference
 * of every frame in its queue. Frames are never copied per subscriber.
 *
 * Re-entrancy: callbacks (on_frames, on_end) may call hub_unsubscribe on
 * any subscriber. While a stream walks its subscribers (st->dispatching),
 * a subscriber that leaves is only marked dead and unlinked afterwards, and
 * the stream itself is never freed during the walk. */
#include "hub.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

#define SUB_RING_MIN 16
#define SUB_MAX_FRAMES 32768          /* bounds a queue of tiny frames too */
#define AUDIO_WINDOW_MS 1000          /* GOP cache of an audio-only stream */
#define TS_JUMP_MS 10000              /* a bigger timestamp step rebases the stream clock */
#define RATE_SLOTS 8
#define RATE_WINDOW 5                 /* seconds of the bps/fps window */
#define DEF_QUEUE_BYTES (8u << 20)
#define DEF_QUEUE_S 10.0
#define DEF_SLOW_S 30.0
/* Write policy (hub_config.merge_s; docs/media.md "Write policy"): the
 * loop's busy share, sampled over LOAD_WINDOW_S and smoothed, decides when
 * started subscribers are told of new frames. Idle loop: at the end of the
 * loop iteration. From LOAD_BUSY on (until it falls below LOAD_CALM), a
 * small frame (below SMALL_FRAME, e.g. audio) is held until a larger frame
 * comes or merge_s passed, the way Nagle holds small segments; above
 * LOAD_FULL every frame is held too, for a share of merge_s that grows
 * with the load (all of it at 100 %). The thresholds come from the media
 * benchmark (docs/performance.md): latency at 600 players, efficiency at
 * 1,200 to 1,600. */
#define LOAD_WINDOW_S 0.05
#define LOAD_BUSY 0.3
#define LOAD_CALM 0.15
#define LOAD_FULL 0.4
#define SMALL_FRAME 2048

typedef struct qent {
  hub_frame_t *f;
  uint64_t clk;                       /* stream clock when queued */
  int hdr;                            /* metadata or sequence header: never dropped */
} qent_t;

enum { SUB_WAITING = 1, SUB_ACTIVE, SUB_ENDING, SUB_DEAD };

struct hub_sub {
  hub_t *hub;
  hub_stream_t *st;                   /* NULL while refused (in hub->limbo) */
  hub_sub_t *prev, *next;             /* in st->subs or hub->limbo */
  hub_sub_ops_t ops;
  void *arg;
  int state;
  int pending_end;                    /* HUB_END_* delivered by the timer */
  ev_timer timer;                     /* wait_s, deferred end, first notification */
  qent_t *ring;                       /* owned */
  unsigned head, count, cap;
  size_t bytes;
  int skipping;                       /* dropping until the next video keyframe */
  int behind;                         /* overflowed and not yet drained to empty */
  uint64_t behind_since;              /* stream clock of the overflow */
  uint64_t dropped;
  int immediate;                      /* no merged write: notified per frame */
  int follow;                         /* ends when the publisher leaves (relays) */
  unsigned kind;                      /* HUB_SUB_*, counted in st->by_kind */
  int started;                        /* a media frame was queued: merged write applies */
  size_t queue_bytes;                 /* own bound, 0: the hub's */
};

typedef struct rate {
  int64_t sec[RATE_SLOTS];
  uint64_t bytes[RATE_SLOTS];
  uint32_t frames[RATE_SLOTS];
} rate_t;

struct hub_stream {
  hub_t *hub;
  hub_stream_t *hnext;                /* hash chain */
  char *path;                         /* owned */
  int live;
  int published;                      /* live or kept by delay_close_s */
  ev_timer close_timer;
  ev_prepare flush;                   /* end of the loop iteration: subscribers with new frames are told */
  ev_timer merge_timer;               /* a busy loop: the same, after a hold of up to merge_s */
  int deferred;                       /* a frame in this hub_push waits for flush or merge_timer */
  ev_timer idle_timer;                /* defers the observer's on_idle out of subscriber walks */
  hub_origin_t origin;                /* of the current (or last) publisher */
  void (*preempt)(hub_stream_t *, void *); /* a PULLED publisher that may be displaced */
  void *preempt_arg;
  int missing;                        /* on_missing told for the current wait */
  hub_sub_t *subs;
  unsigned nsubs;                     /* not counting dead ones */
  unsigned by_kind[HUB_SUB_KINDS];    /* nsubs per hub_sub.kind */
  unsigned dispatching;
  unsigned ndead;
  /* caches: one reference each */
  hub_frame_t *meta, *vseq, *aseq;
  hub_frame_t **gop;
  unsigned ngop, capgop;
  size_t gop_bytes;
  int gop_open;
  int has_video;
  /* stream clock: milliseconds of media, monotonic across resets */
  uint64_t clk;
  uint32_t ts_max;
  int ts_init;
  /* info */
  double start_time;
  uint64_t bytes_in, frames_in;
  const char *vcodec, *acodec;
  unsigned width, height, sample_rate, channels;
  int dims_from_sps;
  double meta_fps;
  uint64_t meta_vbps, meta_abps;
  rate_t vrate, arate;
};

struct hub {
  struct ev_loop *loop;
  hub_config_t cfg;
  hub_stream_t **buckets;
  unsigned nbuckets, nstreams;
  hub_sub_t *limbo;
  unsigned publishers, subscribers;
  uint64_t bytes_in, bytes_out_queued, frames_dropped, slow_disconnects;
  size_t queued_bytes;
  int closing;
  hub_observer_t obs;
  void *obs_arg;
  /* the loop's load, for the write policy: time between load_prep (about to
   * wait) and load_check (woken up) is idle */
  ev_prepare load_prep;
  ev_check load_check;
  double wait_start;                  /* ev_time() at load_prep, 0: not waiting */
  double win_start, win_idle;         /* the current LOAD_WINDOW_S sample */
  double busy;                        /* smoothed busy share of the loop, 0..1 */
  int holding;                        /* busy enough to hold small frames */
  connreg_t reg;                      /* the protocols' publishers and players */
};

/* ---------- frames ---------- */

static void frame_classify(hub_frame_t *f) {
  const uint8_t *d = f->data;
  f->keyframe = 0;
  f->seq_header = 0;
  if (f->len < 1) return;
  if (f->type == HUB_VIDEO) {
    uint8_t b0 = d[0];
    if (b0 & 0x80) { /* Enhanced RTMP: frame type in bits 4-6, PacketType in 0-3 */
      unsigned ft = (b0 >> 4) & 7, pt = b0 & 0x0f;
      if (pt == 0) f->seq_header = 1;
      else if ((pt == 1 || pt == 3) && ft == 1) f->keyframe = 1;
    } else {
      unsigned ft = b0 >> 4, codec = b0 & 0x0f;
      if (codec == 7 || codec == 12) {
        if (f->len >= 2 && d[1] == 0) f->seq_header = 1;
        else if (f->len >= 2 && d[1] == 1 && ft == 1) f->keyframe = 1;
      } else if (ft == 1) {
        f->keyframe = 1;
      }
    }
  } else if (f->type == HUB_AUDIO) {
    unsigned fmt = d[0] >> 4;
    if (fmt == 10 && f->len >= 2 && d[1] == 0) f->seq_header = 1;
    else if (fmt == 9 && (d[0] & 0x0f) == 0) f->seq_header = 1; /* ExAudio SequenceStart */
  }
}

hub_frame_t *hub_frame_alloc(uint8_t type, uint32_t ts, size_t len) {
  if (len > HUB_FRAME_MAX) return NULL;
  hub_frame_t *f = malloc(sizeof(*f) + len + 1);
  if (f == NULL) return NULL;
  f->refs = 1;
  f->type = type;
  f->keyframe = 0;
  f->seq_header = 0;
  f->ts = ts;
  f->len = len;
  return f;
}

void hub_frame_classify(hub_frame_t *f) {
  if (f) frame_classify(f);
}

hub_frame_t *hub_frame_new(uint8_t type, uint32_t ts, const uint8_t *data, size_t len) {
  hub_frame_t *f = hub_frame_alloc(type, ts, len);
  if (f == NULL) return NULL;
  if (len) memcpy(f->data, data, len);
  frame_classify(f);
  return f;
}

hub_frame_t *hub_frame_ref(hub_frame_t *f) {
  if (f) f->refs++;
  return f;
}

void hub_frame_unref(hub_frame_t *f) {
  if (f && --f->refs == 0) free(f);
}

static void frame_set(hub_frame_t **slot, hub_frame_t *f) {
  hub_frame_unref(*slot);
  *slot = f ? hub_frame_ref(f) : NULL;
}

/* ---------- codec parsing, for information only ---------- */

typedef struct bits {
  const uint8_t *p;
  size_t n, bit;
  int err;
} bits_t;

static unsigned bits_u(bits_t *b, unsigned k) {
  unsigned v = 0;
  while (k--) {
    if (b->bit >= b->n * 8) {
      b->err = 1;
      return 0;
    }
    v = (v << 1) | ((b->p[b->bit >> 3] >> (7 - (b->bit & 7))) & 1u);
    b->bit++;
  }
  return v;
}

static unsigned bits_ue(bits_t *b) {
  unsigned z = 0;
  while (bits_u(b, 1) == 0) {
    if (b->err || ++z > 31) {
      b->err = 1;
      return 0;
    }
  }
  if (z == 0) return 0;
  return ((1u << z) - 1u) + bits_u(b, z);
}

static void bits_se(bits_t *b) { (void)bits_ue(b); }

static void sps_scaling_list(bits_t *b, int size) {
  int last = 8, next = 8;
  for (int j = 0; j < size && !b->err; j++) {
    if (next != 0) {
      unsigned k = bits_ue(b);
      int delta = (k & 1) ? (int)((k + 1) / 2 & 0xff) : -(int)(k / 2 & 0xff);
      next = (last + delta + 256) % 256;
    }
    last = next == 0 ? last : next;
  }
}

/* avc_sps_dims reads the coded size of an H.264 SPS NAL unit (with its
 * header byte), minus the cropping. 0 when it parsed. */
static int avc_sps_dims(const uint8_t *nal, size_t n, unsigned *w, unsigned *h) {
  uint8_t rbsp[512];
  size_t m = 0;
  /* drop emulation prevention bytes (00 00 03) */
  for (size_t i = 1, zeros = 0; i < n && m < sizeof(rbsp); i++) {
    if (zeros >= 2 && nal[i] == 3) {
      zeros = 0;
      continue;
    }
    zeros = nal[i] == 0 ? zeros + 1 : 0;
    rbsp[m++] = nal[i];
  }
  bits_t b = {rbsp, m, 0, 0};
  unsigned profile = bits_u(&b, 8);
  bits_u(&b, 16); /* constraint flags, level */
  bits_ue(&b);    /* sps id */
  unsigned chroma = 1, separate = 0;
  if (profile == 100 || profile == 110 || profile == 122 || profile == 244 || profile == 44 ||
      profile == 83 || profile == 86 || profile == 118 || profile == 128 || profile == 138 ||
      profile == 139 || profile == 134 || profile == 135) {
    chroma = bits_ue(&b);
    if (chroma == 3) separate = bits_u(&b, 1);
    bits_ue(&b); /* bit depth luma */
    bits_ue(&b); /* bit depth chroma */
    bits_u(&b, 1);
    if (bits_u(&b, 1)) { /* seq_scaling_matrix_present */
      for (int i = 0; i < (chroma != 3 ? 8 : 12) && !b.err; i++)
        if (bits_u(&b, 1)) sps_scaling_list(&b, i < 6 ? 16 : 64);
    }
  }
  bits_ue(&b); /* log2_max_frame_num */
  unsigned poc = bits_ue(&b);
  if (poc == 0) {
    bits_ue(&b);
  } else if (poc == 1) {
    bits_u(&b, 1);
    bits_se(&b);
    bits_se(&b);
    unsigned cycle = bits_ue(&b);
    for (unsigned i = 0; i < cycle && !b.err; i++) bits_se(&b);
  }
  bits_ue(&b); /* max_num_ref_frames */
  bits_u(&b, 1);
  unsigned wmbs = bits_ue(&b) + 1, hmaps = bits_ue(&b) + 1;
  unsigned frame_mbs_only = bits_u(&b, 1);
  if (!frame_mbs_only) bits_u(&b, 1);
  bits_u(&b, 1);
  unsigned cl = 0, cr = 0, ct = 0, cb = 0;
  if (bits_u(&b, 1)) {
    cl = bits_ue(&b);
    cr = bits_ue(&b);
    ct = bits_ue(&b);
    cb = bits_ue(&b);
  }
  if (b.err || chroma > 3 || wmbs > 1024 || hmaps > 1024) return -1;
  unsigned sub_w = 1, sub_h = 1;
  if (!separate && chroma == 1) sub_w = sub_h = 2;
  else if (!separate && chroma == 2) sub_w = 2;
  unsigned ux = (chroma == 0 || separate) ? 1 : sub_w;
  unsigned uy = ((chroma == 0 || separate) ? 1 : sub_h) * (2 - frame_mbs_only);
  unsigned long fw = wmbs * 16ul, fh = hmaps * 16ul * (2 - frame_mbs_only);
  unsigned long cx = (unsigned long)(cl + cr) * ux, cy = (unsigned long)(ct + cb) * uy;
  if (cl > 0xffff || cr > 0xffff || ct > 0xffff || cb > 0xffff || cx >= fw || cy >= fh) return -1;
  *w = (unsigned)(fw - cx);
  *h = (unsigned)(fh - cy);
  return 0;
}

static void parse_video_seq(hub_stream_t *st, const hub_frame_t *f) {
  const uint8_t *d = f->data;
  size_t n = f->len;
  int avc = 0;
  if (n < 5) return;
  if (d[0] & 0x80) {
    if (memcmp(d + 1, "avc1", 4) == 0) {
      st->vcodec = "h264";
      avc = 1;
    } else if (memcmp(d + 1, "hvc1", 4) == 0 || memcmp(d + 1, "hev1", 4) == 0) {
      st->vcodec = "h265";
    }
  } else if ((d[0] & 0x0f) == 7) {
    st->vcodec = "h264";
    avc = 1;
  } else if ((d[0] & 0x0f) == 12) {
    st->vcodec = "h265";
  }
  /* AVCDecoderConfigurationRecord at 5: version, profile, compat, level,
   * lengthSize, numSPS, then 16-bit length and the first SPS. */
  if (!avc || n < 5 + 8) return;
  const uint8_t *r = d + 5;
  if ((r[5] & 0x1f) == 0) return;
  size_t len = (size_t)r[6] << 8 | r[7];
  if (len < 2 || 8 + len > n - 5) return;
  unsigned w, h;
  if (avc_sps_dims(r + 8, len, &w, &h) == 0) {
    st->width = w;
    st->height = h;
    st->dims_from_sps = 1;
  }
}

static void parse_audio_seq(hub_stream_t *st, const hub_frame_t *f) {
  static const unsigned rates[13] = {96000, 88200, 64000, 48000, 44100, 32000, 24000,
                                     22050, 16000, 12000, 11025, 8000,  7350};
  if (f->len < 2 || (f->data[0] >> 4) != 10) return;
  st->acodec = "aac";
  bits_t b = {f->data + 2, f->len - 2, 0, 0};
  unsigned aot = bits_u(&b, 5);
  if (aot == 31) bits_u(&b, 6);
  unsigned idx = bits_u(&b, 4), rate = 0;
  if (idx == 15) rate = bits_u(&b, 24);
  else if (idx < 13) rate = rates[idx];
  unsigned ch = bits_u(&b, 4);
  if (b.err) return;
  if (rate) st->sample_rate = rate;
  if (ch >= 1 && ch <= 7) st->channels = ch == 7 ? 8 : ch;
}

/* AMF0, just enough for the top level of onMetaData. */
static int amf_str_is(const uint8_t *p, size_t n, const char *s) {
  size_t l = strlen(s);
  return n >= 3 + l && p[0] == 0x02 && ((size_t)p[1] << 8 | p[2]) == l && memcmp(p + 3, s, l) == 0;
}

static double amf_num(const uint8_t *p) {
  uint64_t u = 0;
  double v;
  for (int i = 0; i < 8; i++) u = u << 8 | p[i];
  memcpy(&v, &u, sizeof(v));
  return v;
}

static int key_is(const uint8_t *k, size_t kl, const char *s) {
  return kl == strlen(s) && memcmp(k, s, kl) == 0;
}

static void parse_meta(hub_stream_t *st, const hub_frame_t *f) {
  const uint8_t *p = f->data + 13, *end = f->data + f->len; /* after "onMetaData" */
  if (end - p < 1) return;
  if (*p == 0x08) {
    if (end - p < 5) return;
    p += 5;
  } else if (*p == 0x03) {
    p += 1;
  } else {
    return;
  }
  while (end - p >= 3) {
    size_t kl = (size_t)p[0] << 8 | p[1];
    if (kl == 0 && p[2] == 0x09) break;
    if ((size_t)(end - p) < 2 + kl + 1) break;
    const uint8_t *k = p + 2;
    p += 2 + kl;
    uint8_t t = *p++;
    if (t == 0x00) {
      if (end - p < 8) break;
      double v = amf_num(p);
      p += 8;
      if (!(v >= 0 && v <= 1e12)) continue; /* NaN and infinities too */
      if (key_is(k, kl, "width") && !st->dims_from_sps) st->width = (unsigned)v;
      else if (key_is(k, kl, "height") && !st->dims_from_sps) st->height = (unsigned)v;
      else if (key_is(k, kl, "framerate")) st->meta_fps = v;
      else if (key_is(k, kl, "videodatarate")) st->meta_vbps = (uint64_t)(v * 1000);
      else if (key_is(k, kl, "audiodatarate")) st->meta_abps = (uint64_t)(v * 1000);
      else if (key_is(k, kl, "audiosamplerate") && !st->sample_rate) st->sample_rate = (unsigned)v;
      else if (key_is(k, kl, "audiochannels") && !st->channels) st->channels = (unsigned)v;
      else if (key_is(k, kl, "videocodecid") && !st->vcodec)
        st->vcodec = v == 7 ? "h264" : v == 12 ? "h265" : NULL;
      else if (key_is(k, kl, "audiocodecid") && !st->acodec)
        st->acodec = v == 10 ? "aac" : NULL;
    } else if (t == 0x01) {
      if (end - p < 1) break;
      if (key_is(k, kl, "stereo") && !st->channels) st->channels = *p ? 2 : 1;
      p += 1;
    } else if (t == 0x02) {
      if (end - p < 2) break;
      size_t sl = (size_t)p[0] << 8 | p[1];
      if ((size_t)(end - p) < 2 + sl) break;
      const uint8_t *sv = p + 2;
      p += 2 + sl;
      if (key_is(k, kl, "videocodecid") && !st->vcodec) {
        if (key_is(sv, sl, "avc1")) st->vcodec = "h264";
        else if (key_is(sv, sl, "hvc1") || key_is(sv, sl, "hev1")) st->vcodec = "h265";
      } else if (key_is(k, kl, "audiocodecid") && !st->acodec && key_is(sv, sl, "mp4a")) {
        st->acodec = "aac";
      }
    } else if (t == 0x05 || t == 0x06) {
      continue;
    } else {
      break; /* nested values: the top-level numbers are all we need */
    }
  }
}

/* ---------- sliding-window rates ---------- */

static void rate_add(rate_t *r, double now, size_t bytes) {
  int64_t sec = (int64_t)now;
  unsigned i = (unsigned)(sec % RATE_SLOTS);
  if (r->sec[i] != sec) {
    r->sec[i] = sec;
    r->bytes[i] = 0;
    r->frames[i] = 0;
  }
  r->bytes[i] += bytes;
  r->frames[i]++;
}

/* rate_get gives bits/s and frames/s over the last RATE_WINDOW seconds. */
static void rate_get(const rate_t *r, double now, double start, uint64_t *bps, double *fps) {
  int64_t cur = (int64_t)now;
  uint64_t bytes = 0, frames = 0;
  for (unsigned i = 0; i < RATE_SLOTS; i++) {
    if (r->sec[i] > cur - RATE_WINDOW && r->sec[i] <= cur) {
      bytes += r->bytes[i];
      frames += r->frames[i];
    }
  }
  double from = (double)(cur - RATE_WINDOW + 1);
  if (start > from) from = start;
  double span = now - from;
  if (span < 0.5) {
    *bps = 0;
    *fps = 0;
    return;
  }
  *bps = (uint64_t)((double)bytes * 8 / span);
  *fps = (double)frames / span;
}

/* ---------- hash of streams ---------- */

static unsigned path_hash(const char *p) {
  uint32_t h = 2166136261u;
  for (; *p; p++) h = (h ^ (uint8_t)*p) * 16777619u;
  return h;
}

static hub_stream_t *stream_find(hub_t *h, const char *path) {
  for (hub_stream_t *st = h->buckets[path_hash(path) & (h->nbuckets - 1)]; st; st = st->hnext)
    if (strcmp(st->path, path) == 0) return st;
  return NULL;
}

static void hash_grow(hub_t *h) {
  unsigned n = h->nbuckets * 2;
  hub_stream_t **b = calloc(n, sizeof(*b));
  if (b == NULL) return; /* chains just get longer */
  for (unsigned i = 0; i < h->nbuckets; i++) {
    hub_stream_t *st = h->buckets[i], *next;
    for (; st; st = next) {
      next = st->hnext;
      unsigned j = path_hash(st->path) & (n - 1);
      st->hnext = b[j];
      b[j] = st;
    }
  }
  free(h->buckets);
  h->buckets = b;
  h->nbuckets = n;
}

/* ---------- subscriber queues ---------- */

static void sub_clear_queue(hub_sub_t *s) {
  hub_t *h = s->hub;
  for (unsigned i = 0; i < s->count; i++) hub_frame_unref(s->ring[(s->head + i) % s->cap].f);
  h->queued_bytes -= s->bytes;
  s->head = s->count = 0;
  s->bytes = 0;
}

static int sub_enqueue(hub_sub_t *s, hub_frame_t *f, int hdr, uint64_t clk) {
  if (s->count == s->cap) {
    unsigned ncap = s->cap ? s->cap * 2 : SUB_RING_MIN;
    qent_t *r = malloc(ncap * sizeof(*r));
    if (r == NULL) return -1;
    for (unsigned i = 0; i < s->count; i++) r[i] = s->ring[(s->head + i) % s->cap];
    free(s->ring);
    s->ring = r;
    s->cap = ncap;
    s->head = 0;
  }
  qent_t *e = &s->ring[(s->head + s->count) % s->cap];
  e->f = hub_frame_ref(f);
  e->hdr = hdr;
  e->clk = clk;
  if (!hdr) s->started = 1;
  s->count++;
  s->bytes += f->len;
  s->hub->queued_bytes += f->len;
  s->hub->bytes_out_queued += f->len;
  return 0;
}

/* sub_drop_media drops every queued frame but the headers; returns how many. */
static unsigned sub_drop_media(hub_sub_t *s) {
  unsigned kept = 0, dropped = 0;
  for (unsigned i = 0; i < s->count; i++) {
    qent_t e = s->ring[(s->head + i) % s->cap];
    if (e.hdr) {
      s->ring[(s->head + kept) % s->cap] = e;
      kept++;
    } else {
      s->bytes -= e.f->len;
      s->hub->queued_bytes -= e.f->len;
      hub_frame_unref(e.f);
      dropped++;
    }
  }
  s->count = kept;
  return dropped;
}

static int sub_over(const hub_sub_t *s, const hub_frame_t *f, uint64_t now) {
  const hub_config_t *c = &s->hub->cfg;
  if (s->count >= SUB_MAX_FRAMES) return 1;
  size_t bound = s->queue_bytes ? s->queue_bytes : c->queue_bytes;
  if (s->bytes + f->len > bound) return 1;
  for (unsigned i = 0; i < s->count; i++) {
    const qent_t *e = &s->ring[(s->head + i) % s->cap];
    if (!e->hdr) return (double)(now - e->clk) > c->queue_s * 1000;
  }
  return 0;
}

/* ---------- subscriber life ---------- */

static void stream_maybe_free(hub_stream_t *st);

static void sub_unlink(hub_sub_t *s) {
  hub_sub_t **head = s->st ? &s->st->subs : &s->hub->limbo;
  if (s->prev) s->prev->next = s->next;
  else *head = s->next;
  if (s->next) s->next->prev = s->prev;
  s->prev = s->next = NULL;
}

static void sub_free(hub_sub_t *s) {
  free(s->ring);
  free(s);
}

/* sub_release detaches |s| and frees it, or marks it dead while its stream
 * walks its subscribers. */
static void sub_release(hub_sub_t *s) {
  hub_stream_t *st = s->st;
  ev_timer_stop(s->hub->loop, &s->timer);
  sub_clear_queue(s);
  if (st == NULL) {
    sub_unlink(s);
    sub_free(s);
    return;
  }
  st->nsubs--;
  st->by_kind[s->kind]--;
  s->hub->subscribers--;
  if (st->nsubs == 0 && st->live && s->hub->obs.on_idle && !s->hub->closing)
    ev_timer_start(s->hub->loop, &st->idle_timer); /* 0 s: from the loop */
  if (st->dispatching) {
    s->state = SUB_DEAD;
    st->ndead++;
    return;
  }
  sub_unlink(s);
  sub_free(s);
  stream_maybe_free(st);
}

static void sub_end(hub_sub_t *s, int why) {
  if (s->state == SUB_ENDING || s->state == SUB_DEAD) return;
  if (why == HUB_END_SLOW) {
    s->hub->slow_disconnects++;
    log_warn("hub", "[%s] subscriber too slow: ended after %.1f s behind, %llu frames dropped",
             s->st ? s->st->path : "-", s->hub->cfg.slow_s, (unsigned long long)s->dropped);
  }
  s->state = SUB_ENDING;
  ev_timer_stop(s->hub->loop, &s->timer);
  sub_clear_queue(s);
  if (s->ops.on_end) s->ops.on_end(s, s->arg, why);
  sub_release(s);
}

static void stream_sweep(hub_stream_t *st) {
  if (st->dispatching || st->ndead == 0) return;
  hub_sub_t *s = st->subs, *next;
  for (; s; s = next) {
    next = s->next;
    if (s->state == SUB_DEAD) {
      sub_unlink(s);
      sub_free(s);
    }
  }
  st->ndead = 0;
}

static void sub_arm(hub_sub_t *s, double after) {
  ev_timer_stop(s->hub->loop, &s->timer);
  ev_timer_set(&s->timer, after, 0.);
  ev_timer_start(s->hub->loop, &s->timer);
}

static void sub_timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  hub_sub_t *s = w->data;
  (void)loop;
  (void)revents;
  if (s->pending_end == HUB_END_UNPUBLISHED && s->st && s->st->live) {
    s->pending_end = 0; /* a publisher came back before the end went out */
    if (s->state == SUB_ACTIVE && s->count && s->ops.on_frames) s->ops.on_frames(s, s->arg);
  } else if (s->pending_end) sub_end(s, s->pending_end);
  else if (s->state == SUB_WAITING) sub_end(s, HUB_END_NOT_FOUND);
  else if (s->state == SUB_ACTIVE && s->count && s->ops.on_frames) s->ops.on_frames(s, s->arg);
}

/* ---------- streams ---------- */

static void gop_clear(hub_stream_t *st) {
  for (unsigned i = 0; i < st->ngop; i++) hub_frame_unref(st->gop[i]);
  st->ngop = 0;
  st->gop_bytes = 0;
}

static void stream_reset_media(hub_stream_t *st) {
  gop_clear(st);
  st->gop_open = 0;
  st->has_video = 0;
  frame_set(&st->meta, NULL);
  frame_set(&st->vseq, NULL);
  frame_set(&st->aseq, NULL);
  st->vcodec = st->acodec = NULL;
  st->width = st->height = st->sample_rate = st->channels = 0;
  st->dims_from_sps = 0;
  st->meta_fps = 0;
  st->meta_vbps = st->meta_abps = 0;
  memset(&st->vrate, 0, sizeof(st->vrate));
  memset(&st->arate, 0, sizeof(st->arate));
  st->bytes_in = st->frames_in = 0;
}

static void stream_free(hub_stream_t *st) {
  hub_t *h = st->hub;
  ev_timer_stop(h->loop, &st->close_timer);
  ev_prepare_stop(h->loop, &st->flush);
  ev_timer_stop(h->loop, &st->merge_timer);
  ev_timer_stop(h->loop, &st->idle_timer);
  stream_reset_media(st);
  free(st->gop);
  free(st->path);
  free(st);
}

static void stream_maybe_free(hub_stream_t *st) {
  hub_t *h = st->hub;
  if (h->closing || st->dispatching || st->live || st->subs != NULL ||
      ev_is_active(&st->close_timer))
    return;
  hub_stream_t **pp = &h->buckets[path_hash(st->path) & (h->nbuckets - 1)];
  while (*pp != st) pp = &(*pp)->hnext;
  *pp = st->hnext;
  h->nstreams--;
  stream_free(st);
}

/* stream_tell_missing reports |st| to on_missing when a subscriber waits on
 * it with no publisher in sight (neither live nor kept), once per wait. */
static void stream_tell_missing(hub_stream_t *st) {
  hub_t *h = st->hub;
  if (st->published || st->missing || h->closing || h->obs.on_missing == NULL) return;
  for (hub_sub_t *s = st->subs; s; s = s->next) {
    if (s->state == SUB_WAITING) {
      st->missing = 1;
      h->obs.on_missing(h, st->path, h->obs_arg);
      return;
    }
  }
}

static void close_timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  hub_stream_t *st = w->data;
  (void)loop;
  (void)revents;
  ev_timer_stop(st->hub->loop, &st->close_timer);
  st->published = 0;
  stream_reset_media(st);
  st->dispatching++;
  for (hub_sub_t *s = st->subs, *next; s; s = next) {
    next = s->next;
    if (s->state == SUB_ACTIVE) sub_end(s, HUB_END_UNPUBLISHED);
  }
  st->dispatching--;
  stream_sweep(st);
  hub_t *h = st->hub;
  st->dispatching++; /* the observer's calls must not free |st| under us */
  if (h->obs.on_unpublish) h->obs.on_unpublish(h, st->path, h->obs_arg);
  stream_tell_missing(st);
  st->dispatching--;
  stream_sweep(st);
  stream_maybe_free(st); /* waiting subscribers keep it */
}

static void idle_timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  hub_stream_t *st = w->data;
  hub_t *h = st->hub;
  (void)loop;
  (void)revents;
  /* A subscriber may have come back meanwhile: only a still idle, live
   * stream is reported. */
  if (st->nsubs == 0 && st->live && h->obs.on_idle) h->obs.on_idle(h, st->path, h->obs_arg);
}

/* stream_flush tells every subscriber with frames queued, once: each then
 * drains them in as few writes as it can. */
static void stream_flush(hub_stream_t *st) {
  hub_t *h = st->hub;
  ev_prepare_stop(h->loop, &st->flush);
  ev_timer_stop(h->loop, &st->merge_timer);
  st->dispatching++;
  for (hub_sub_t *s = st->subs, *next; s; s = next) {
    next = s->next;
    if (s->state == SUB_ACTIVE && !s->immediate && s->count && s->ops.on_frames)
      s->ops.on_frames(s, s->arg);
  }
  st->dispatching--;
  stream_sweep(st);
  stream_maybe_free(st);
}

static void flush_cb(struct ev_loop *loop, ev_prepare *w, int revents) {
  (void)loop;
  (void)revents;
  stream_flush(w->data);
}

static void merge_timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)loop;
  (void)revents;
  stream_flush(w->data);
}

/* hub_hold is how long subscribers may wait to be told of a frame now: 0
 * (the end of this loop iteration) while the loop has time to spare; a
 * |small| frame waits up to merge_s while it is busy, any frame a growing
 * share of merge_s past LOAD_FULL, so that each write carries more frames. */
static double hub_hold(const hub_t *h, int small) {
  if (small && h->holding) return h->cfg.merge_s;
  double x = (h->busy - LOAD_FULL) / (1 - LOAD_FULL);
  if (x <= 0) return 0;
  return h->cfg.merge_s * (x < 1 ? x : 1);
}

/* stream_defer arranges for the subscribers of |st| to be told of the
 * frames just queued: at the end of this loop iteration, or after a hold
 * (shortened, never lengthened, by later frames). */
static void stream_defer(hub_stream_t *st, int small) {
  hub_t *h = st->hub;
  /* An expired hold whose callback is still to run in this iteration
   * flushes these frames too: restarting it would drop that flush. */
  if (ev_is_active(&st->flush) || ev_is_pending(&st->merge_timer)) return;
  double hold = hub_hold(h, small);
  if (hold <= 0) {
    ev_timer_stop(h->loop, &st->merge_timer);
    ev_prepare_start(h->loop, &st->flush);
  } else if (!ev_is_active(&st->merge_timer) ||
             ev_timer_remaining(h->loop, &st->merge_timer) > hold) {
    ev_timer_stop(h->loop, &st->merge_timer);
    ev_timer_set(&st->merge_timer, hold, 0.);
    ev_timer_start(h->loop, &st->merge_timer);
  }
}

/* load_prep_cb runs last before the loop waits, load_check_cb first after
 * it woke up: the time between is idle. */
static void load_prep_cb(struct ev_loop *loop, ev_prepare *w, int revents) {
  hub_t *h = w->data;
  (void)loop;
  (void)revents;
  h->wait_start = ev_time();
}

static void load_check_cb(struct ev_loop *loop, ev_check *w, int revents) {
  hub_t *h = w->data;
  (void)revents;
  double now = ev_now(loop);
  if (h->wait_start > 0 && now > h->wait_start) h->win_idle += now - h->wait_start;
  h->wait_start = 0;
  double span = now - h->win_start;
  if (span < LOAD_WINDOW_S) return;
  double b = 1 - h->win_idle / span;
  if (b < 0) b = 0;
  /* a long idle stretch counts as one sample: the load is of the moment */
  h->busy = span > 4 * LOAD_WINDOW_S ? b : (h->busy + b) / 2;
  if (h->busy >= LOAD_BUSY) h->holding = 1;
  else if (h->busy < LOAD_CALM) h->holding = 0;
  h->win_start = now;
  h->win_idle = 0;
}

static hub_stream_t *stream_new(hub_t *h, const char *path) {
  hub_stream_t *st = calloc(1, sizeof(*st));
  if (st == NULL) return NULL;
  st->path = strdup(path);
  if (st->path == NULL) {
    free(st);
    return NULL;
  }
  st->hub = h;
  ev_timer_init(&st->close_timer, close_timer_cb, 0., 0.);
  st->close_timer.data = st;
  ev_prepare_init(&st->flush, flush_cb);
  st->flush.data = st;
  ev_timer_init(&st->merge_timer, merge_timer_cb, 0., 0.);
  st->merge_timer.data = st;
  ev_timer_init(&st->idle_timer, idle_timer_cb, 0., 0.);
  st->idle_timer.data = st;
  if (h->nstreams >= h->nbuckets) hash_grow(h);
  unsigned i = path_hash(path) & (h->nbuckets - 1);
  st->hnext = h->buckets[i];
  h->buckets[i] = st;
  h->nstreams++;
  return st;
}

/* ---------- hub ---------- */

hub_t *hub_new(struct ev_loop *loop, const hub_config_t *cfg) {
  hub_t *h = calloc(1, sizeof(*h));
  if (h == NULL) return NULL;
  h->loop = loop;
  connreg_init(&h->reg);
  if (cfg) h->cfg = *cfg;
  if (h->cfg.queue_bytes == 0) h->cfg.queue_bytes = DEF_QUEUE_BYTES;
  if (h->cfg.queue_s <= 0) h->cfg.queue_s = DEF_QUEUE_S;
  if (h->cfg.slow_s <= 0) h->cfg.slow_s = DEF_SLOW_S;
  if (h->cfg.delay_close_s < 0) h->cfg.delay_close_s = 0;
  if (h->cfg.wait_s < 0) h->cfg.wait_s = 0;
  if (h->cfg.merge_s < 0) h->cfg.merge_s = 0;
  h->nbuckets = 64;
  h->buckets = calloc(h->nbuckets, sizeof(*h->buckets));
  if (h->buckets == NULL) {
    free(h);
    return NULL;
  }
  /* Measuring the load must not keep ev_run from returning: unref'd. */
  ev_prepare_init(&h->load_prep, load_prep_cb);
  h->load_prep.data = h;
  ev_set_priority(&h->load_prep, EV_MINPRI);
  ev_prepare_start(loop, &h->load_prep);
  ev_unref(loop);
  ev_check_init(&h->load_check, load_check_cb);
  h->load_check.data = h;
  ev_set_priority(&h->load_check, EV_MAXPRI);
  ev_check_start(loop, &h->load_check);
  ev_unref(loop);
  h->win_start = ev_now(loop);
  return h;
}

/* subs_end_all ends every subscriber (those in limbo too) with
 * HUB_END_SHUTDOWN; |sweep|: then drop what each stream no longer needs
 * (hub_drain; hub_free frees the streams itself). */
static void subs_end_all(hub_t *h, int sweep) {
  while (h->limbo) sub_end(h->limbo, HUB_END_SHUTDOWN);
  for (unsigned i = 0; i < h->nbuckets; i++) {
    for (hub_stream_t *st = h->buckets[i]; st; st = st->hnext) {
      st->dispatching++;
      for (hub_sub_t *s = st->subs; s; s = s->next)
        if (s->state == SUB_WAITING || s->state == SUB_ACTIVE) sub_end(s, HUB_END_SHUTDOWN);
      st->dispatching--;
      if (sweep) stream_sweep(st);
    }
  }
}

void hub_drain(hub_t *h) {
  if (h == NULL) return;
  h->closing = 1;
  subs_end_all(h, 1);
}

void hub_free(hub_t *h) {
  if (h == NULL) return;
  h->closing = 1;
  ev_ref(h->loop);
  ev_prepare_stop(h->loop, &h->load_prep);
  ev_ref(h->loop);
  ev_check_stop(h->loop, &h->load_check);
  subs_end_all(h, 0);
  for (unsigned i = 0; i < h->nbuckets; i++) {
    hub_stream_t *st = h->buckets[i], *next;
    for (; st; st = next) {
      next = st->hnext;
      for (hub_sub_t *s = st->subs, *sn; s; s = sn) {
        sn = s->next;
        sub_free(s);
      }
      stream_free(st);
    }
  }
  connreg_fini(&h->reg);
  free(h->buckets);
  free(h);
}

int hub_path_ok(const char *path) {
  size_t n = path ? strlen(path) : 0, seg = 0, segs = 0;
  if (n == 0 || n > 1024) return 0;
  for (size_t i = 0; i <= n; i++) {
    unsigned char c = (unsigned char)path[i];
    if (c == '/' || c == '\0') {
      if (seg == 0) return 0;
      if (seg == 1 && path[i - 1] == '.') return 0;
      if (seg == 2 && path[i - 1] == '.' && path[i - 2] == '.') return 0;
      seg = 0;
      segs++;
    } else if (c < 0x20 || c == 0x7f) {
      return 0;
    } else {
      seg++;
    }
  }
  return segs >= 2;
}

/* ---------- publishers ---------- */

void hub_set_observer(hub_t *h, const hub_observer_t *o, void *arg) {
  if (o) h->obs = *o;
  else memset(&h->obs, 0, sizeof(h->obs));
  h->obs_arg = arg;
}

/* preemptible tells whether a publisher of origin |kind| displaces the
 * live publisher of |st|. */
static int preemptible(const hub_stream_t *st, hub_origin_kind_t kind) {
  return st->live && st->origin.kind == HUB_ORIGIN_PULLED && kind != HUB_ORIGIN_PULLED &&
         st->preempt != NULL;
}

int hub_publish_check_ex(hub_t *h, const char *path, hub_origin_kind_t kind) {
  if (!hub_path_ok(path)) return HUB_EINVAL;
  hub_stream_t *st = stream_find(h, path);
  if (st && st->live) return preemptible(st, kind) ? 0 : HUB_EBUSY;
  if (h->cfg.max_streams && h->publishers >= h->cfg.max_streams) return HUB_ELIMIT;
  return 0;
}

int hub_publish_check(hub_t *h, const char *path) {
  return hub_publish_check_ex(h, path, HUB_ORIGIN_LOCAL);
}

void hub_stream_set_preempt(hub_stream_t *s, void (*fn)(hub_stream_t *s, void *arg), void *arg) {
  if (s == NULL || !s->live) return;
  s->preempt = fn;
  s->preempt_arg = arg;
}

/* stream_preempt_locked displaces the PULLED publisher of |st|: it is
 * told, and the stream stays with its subscribers (for a newcomer, or for
 * hub_drop to end). The caller holds st->dispatching: |fn| must not free
 * |st| under it. */
static void stream_preempt_locked(hub_stream_t *st) {
  hub_t *h = st->hub;
  void (*fn)(hub_stream_t *, void *) = st->preempt;
  void *arg = st->preempt_arg;
  st->preempt = NULL;
  st->preempt_arg = NULL;
  st->live = 0;
  h->publishers--;
  fn(st, arg);
}

/* stream_preempt is stream_preempt_locked outside a walk of |st|. */
static void stream_preempt(hub_stream_t *st) {
  st->dispatching++;
  stream_preempt_locked(st);
  st->dispatching--;
  stream_sweep(st);
}

const hub_origin_t *hub_stream_origin(const hub_stream_t *s) { return &s->origin; }

int hub_origin_of(hub_t *h, const char *path, hub_origin_t *out) {
  hub_stream_t *st = hub_path_ok(path) ? stream_find(h, path) : NULL;
  if (st == NULL || !st->live) return -1;
  *out = st->origin;
  return 0;
}

hub_stream_t *hub_publish(hub_t *h, const char *path, int *err) {
  return hub_publish_ex(h, path, NULL, err);
}

hub_stream_t *hub_publish_ex(hub_t *h, const char *path, const hub_origin_t *o, int *err) {
  static const hub_origin_t local = {HUB_ORIGIN_LOCAL, 0, 0};
  int e = 0;
  hub_stream_t *st = NULL;
  if (!hub_path_ok(path)) {
    e = HUB_EINVAL;
    goto out;
  }
  st = stream_find(h, path);
  hub_origin_kind_t kind = o ? o->kind : HUB_ORIGIN_LOCAL;
  if (st && st->live && !preemptible(st, kind)) {
    st = NULL;
    e = HUB_EBUSY;
    goto out;
  }
  if (st && st->live) {
    char qp[96];
    log_info("hub", "[%s] a %s publisher takes the stream over from its pulled copy",
             log_quote(path, qp, sizeof(qp)), kind == HUB_ORIGIN_LOCAL ? "local" : "pushed");
    stream_preempt(st);
  }
  if (h->cfg.max_streams && h->publishers >= h->cfg.max_streams) {
    st = NULL;
    e = HUB_ELIMIT;
    goto out;
  }
  if (st == NULL) st = stream_new(h, path);
  if (st == NULL) {
    e = HUB_ELIMIT;
    goto out;
  }
  ev_timer_stop(h->loop, &st->close_timer);
  stream_reset_media(st);
  st->live = 1;
  st->published = 1;
  st->missing = 0;
  st->origin = o ? *o : local;
  st->preempt = NULL;
  st->preempt_arg = NULL;
  st->start_time = ev_now(h->loop);
  st->ts_init = 0;
  h->publishers++;
  for (hub_sub_t *s = st->subs; s; s = s->next) {
    if (s->state == SUB_WAITING) {
      ev_timer_stop(h->loop, &s->timer);
      s->state = SUB_ACTIVE;
    } else if (s->state == SUB_ACTIVE && s->started) {
      /* a takeover: the newcomer's frames reach this subscriber from its
       * first keyframe on (its sequence headers always pass) */
      s->skipping = 1;
    }
  }
  if (h->obs.on_publish) {
    st->dispatching++;
    h->obs.on_publish(h, st->path, &st->origin, h->obs_arg);
    st->dispatching--;
    stream_sweep(st);
  }
out:
  if (err) *err = e;
  return st;
}

static void stream_clock(hub_stream_t *st, uint32_t ts) {
  if (!st->ts_init) {
    st->ts_init = 1;
    st->ts_max = ts;
    return;
  }
  int32_t d = (int32_t)(ts - st->ts_max);
  if (d > 0 && d <= TS_JUMP_MS) {
    st->clk += (uint64_t)d;
    st->ts_max = ts;
  } else if (d > TS_JUMP_MS || d < -TS_JUMP_MS) {
    st->ts_max = ts; /* a jump or a restart: rebase, the clock stays monotonic */
  }
}

static void gop_add(hub_stream_t *st, hub_frame_t *f) {
  if (st->gop_bytes + f->len > st->hub->cfg.queue_bytes) {
    /* A GOP no subscriber could hold: start again at the next keyframe. */
    gop_clear(st);
    if (st->has_video) {
      st->gop_open = 0;
      return;
    }
  }
  if (st->ngop == st->capgop) {
    unsigned n = st->capgop ? st->capgop * 2 : 64;
    hub_frame_t **g = realloc(st->gop, n * sizeof(*g));
    if (g == NULL) {
      gop_clear(st);
      st->gop_open = 0;
      return;
    }
    st->gop = g;
    st->capgop = n;
  }
  st->gop[st->ngop++] = hub_frame_ref(f);
  st->gop_bytes += f->len;
}

static void gop_update(hub_stream_t *st, hub_frame_t *f) {
  if (f->type == HUB_VIDEO) {
    if (f->keyframe) {
      gop_clear(st);
      st->gop_open = 1;
    }
    if (st->gop_open) gop_add(st, f);
  } else if (f->type == HUB_AUDIO) {
    if (!st->has_video) {
      /* audio only: the last AUDIO_WINDOW_MS */
      unsigned k = 0;
      while (k < st->ngop && (int32_t)(f->ts - st->gop[k]->ts) > AUDIO_WINDOW_MS) k++;
      if (k < st->ngop && (int32_t)(f->ts - st->gop[k]->ts) < 0) k = st->ngop; /* restart */
      for (unsigned i = 0; i < k; i++) {
        st->gop_bytes -= st->gop[i]->len;
        hub_frame_unref(st->gop[i]);
      }
      if (k) {
        memmove(st->gop, st->gop + k, (st->ngop - k) * sizeof(*st->gop));
        st->ngop -= k;
      }
      st->gop_open = 1;
    }
    if (st->gop_open) gop_add(st, f);
  }
}

/* script_prepare strips a leading "@setDataFrame"; *meta tells whether the
 * result is onMetaData. Takes |f|; NULL on OOM. */
static hub_frame_t *script_prepare(hub_frame_t *f, int *meta) {
  static const size_t sdf = 3 + 13;
  *meta = 0;
  if (amf_str_is(f->data, f->len, "@setDataFrame") && f->len > sdf) {
    hub_frame_t *g = hub_frame_new(HUB_SCRIPT, f->ts, f->data + sdf, f->len - sdf);
    hub_frame_unref(f);
    if (g == NULL) return NULL;
    f = g;
  }
  *meta = amf_str_is(f->data, f->len, "onMetaData");
  return f;
}

static void sub_offer(hub_sub_t *s, hub_frame_t *f, int hdr) {
  hub_stream_t *st = s->st;
  hub_t *h = s->hub;
  uint64_t now = st->clk;
  int resumes = f->type == HUB_VIDEO ? f->keyframe : !st->has_video;
  if (!hdr) {
    if (s->behind && (double)(now - s->behind_since) > h->cfg.slow_s * 1000) {
      sub_end(s, HUB_END_SLOW);
      return;
    }
    if (s->skipping) {
      if (!resumes) {
        s->dropped++;
        h->frames_dropped++;
        return;
      }
      s->skipping = 0;
    }
  }
  if (sub_over(s, f, now)) {
    unsigned n = sub_drop_media(s);
    s->dropped += n;
    h->frames_dropped += n;
    if (!s->behind) {
      s->behind = 1;
      s->behind_since = now;
    }
    if (!resumes) {
      /* the next media this subscriber gets is a keyframe */
      s->skipping = 1;
      if (!hdr) {
        s->dropped++;
        h->frames_dropped++;
        return;
      }
    }
    if (sub_over(s, f, now)) {
      /* headers alone, or one frame, exceed the bound */
      sub_end(s, HUB_END_SLOW);
      return;
    }
  }
  int started = s->started;
  if (sub_enqueue(s, f, hdr, now) < 0) {
    sub_end(s, HUB_END_SLOW);
    return;
  }
  /* Until its first media frame a subscriber is told at once: a player that
   * waited for the stream (or an on-demand pull) starts on the keyframe
   * without waiting for the end of the loop iteration or a hold. */
  if (h->cfg.merge_s > 0 && !s->immediate && started) {
    st->deferred = 1; /* hub_push arranges the notification: stream_defer */
    return;
  }
  if (s->ops.on_frames) s->ops.on_frames(s, s->arg);
}

void hub_push(hub_stream_t *st, hub_frame_t *f) {
  if (f == NULL) return;
  if (st == NULL || !st->live) {
    hub_frame_unref(f);
    return;
  }
  hub_t *h = st->hub;
  int meta = 0;
  if (f->type == HUB_SCRIPT) {
    f = script_prepare(f, &meta);
    if (f == NULL) return;
  }
  double now = ev_now(h->loop);
  h->bytes_in += f->len;
  st->bytes_in += f->len;
  st->frames_in++;
  stream_clock(st, f->ts);
  int hdr = meta || f->seq_header;
  if (meta) {
    frame_set(&st->meta, f);
    parse_meta(st, f);
  } else if (f->type == HUB_VIDEO) {
    if (!st->has_video) {
      st->has_video = 1;
      gop_clear(st); /* the audio window; from now on GOPs start on keyframes */
      st->gop_open = 0;
    }
    rate_add(&st->vrate, now, f->len);
    if (f->seq_header) {
      frame_set(&st->vseq, f);
      parse_video_seq(st, f);
    } else {
      gop_update(st, f);
    }
  } else if (f->type == HUB_AUDIO) {
    rate_add(&st->arate, now, f->len);
    if (f->seq_header) {
      frame_set(&st->aseq, f);
      parse_audio_seq(st, f);
    } else {
      gop_update(st, f);
    }
  }
  st->dispatching++;
  st->deferred = 0;
  for (hub_sub_t *s = st->subs, *next; s; s = next) {
    next = s->next;
    if (s->state == SUB_ACTIVE) sub_offer(s, f, hdr);
  }
  if (st->deferred) stream_defer(st, !hdr && f->type != HUB_SCRIPT && f->len < SMALL_FRAME);
  st->dispatching--;
  stream_sweep(st);
  hub_frame_unref(f);
}

void hub_unpublish(hub_stream_t *st) {
  if (st == NULL || !st->live) return;
  hub_t *h = st->hub;
  st->live = 0;
  st->preempt = NULL;
  st->preempt_arg = NULL;
  h->publishers--;
  gop_clear(st);
  st->gop_open = 0;
  /* relays end now: the next node starts its own delay at once */
  for (hub_sub_t *s = st->subs; s; s = s->next) {
    if (s->state == SUB_ACTIVE && s->follow && !s->pending_end) {
      s->pending_end = HUB_END_UNPUBLISHED;
      sub_arm(s, 0.);
    }
  }
  if (st->subs == NULL) {
    st->published = 0;
    if (h->obs.on_unpublish) {
      st->dispatching++;
      h->obs.on_unpublish(h, st->path, h->obs_arg);
      st->dispatching--;
      stream_sweep(st);
    }
    stream_maybe_free(st);
    return;
  }
  ev_timer_set(&st->close_timer, h->cfg.delay_close_s, 0.);
  ev_timer_start(h->loop, &st->close_timer);
}

/* ---------- subscribers ---------- */

hub_sub_t *hub_subscribe(hub_t *h, const char *path, const hub_sub_ops_t *ops, void *arg) {
  hub_sub_t *s = calloc(1, sizeof(*s));
  if (s == NULL) return NULL;
  s->hub = h;
  if (ops) s->ops = *ops;
  s->arg = arg;
  ev_timer_init(&s->timer, sub_timer_cb, 0., 0.);
  s->timer.data = s;
  hub_stream_t *st = hub_path_ok(path) && !h->closing ? stream_find(h, path) : NULL;
  int why = 0;
  if (!hub_path_ok(path)) why = HUB_END_NOT_FOUND;
  else if (h->closing) why = HUB_END_SHUTDOWN;
  else if (st && h->cfg.max_subscribers && st->nsubs >= h->cfg.max_subscribers) why = HUB_END_LIMIT;
  else if (st == NULL && (st = stream_new(h, path)) == NULL) why = HUB_END_LIMIT;
  if (why) {
    /* Refusals arrive through on_end once the caller holds |s|. */
    s->state = SUB_WAITING;
    s->pending_end = why;
    s->next = h->limbo;
    if (h->limbo) h->limbo->prev = s;
    h->limbo = s;
    sub_arm(s, 0.);
    return s;
  }
  s->st = st;
  s->next = st->subs;
  if (st->subs) st->subs->prev = s;
  st->subs = s;
  st->nsubs++;
  st->by_kind[s->kind]++;
  h->subscribers++;
  if (!st->live) {
    s->state = SUB_WAITING;
    sub_arm(s, h->cfg.wait_s);
    st->dispatching++;
    stream_tell_missing(st);
    st->dispatching--;
    stream_sweep(st);
    return s;
  }
  s->state = SUB_ACTIVE;
  uint64_t now = st->clk;
  int ok = 0;
  if (st->meta) ok |= sub_enqueue(s, st->meta, 1, now);
  if (st->vseq) ok |= sub_enqueue(s, st->vseq, 1, now);
  if (st->aseq) ok |= sub_enqueue(s, st->aseq, 1, now);
  for (unsigned i = 0; i < st->ngop; i++) ok |= sub_enqueue(s, st->gop[i], 0, now);
  if (ok < 0) s->pending_end = HUB_END_SLOW;
  if (s->count || s->pending_end) sub_arm(s, 0.);
  return s;
}

hub_frame_t *hub_sub_next(hub_sub_t *s) {
  if (s == NULL || s->state != SUB_ACTIVE || s->count == 0) return NULL;
  qent_t *e = &s->ring[s->head];
  hub_frame_t *f = e->f;
  s->head = (s->head + 1) % s->cap;
  s->count--;
  s->bytes -= f->len;
  s->hub->queued_bytes -= f->len;
  if (s->count == 0) {
    s->head = 0;
    if (!s->skipping) s->behind = 0; /* caught up */
  }
  return f;
}

size_t hub_sub_queued(const hub_sub_t *s) { return s ? s->bytes : 0; }

uint64_t hub_sub_dropped(const hub_sub_t *s) { return s ? s->dropped : 0; }

void hub_sub_set_queue_bytes(hub_sub_t *s, size_t bytes) {
  if (s) s->queue_bytes = bytes;
}

void hub_sub_set_kind(hub_sub_t *s, unsigned kind) {
  if (s == NULL || kind >= HUB_SUB_KINDS || kind == s->kind) return;
  /* counted from attachment (hub_subscribe) to release (sub_release); a
   * refused one (no stream) never is, a dead one no longer */
  if (s->st && s->state != SUB_DEAD) {
    s->st->by_kind[s->kind]--;
    s->st->by_kind[kind]++;
  }
  s->kind = kind;
}

void hub_sub_set_follow(hub_sub_t *s, int on) {
  if (s) s->follow = on != 0;
}

void hub_sub_set_immediate(hub_sub_t *s, int on) {
  if (s) s->immediate = on != 0;
}

const char *hub_sub_path(const hub_sub_t *s) { return s && s->st ? s->st->path : NULL; }

void hub_unsubscribe(hub_sub_t *s) {
  if (s == NULL || s->state == SUB_ENDING || s->state == SUB_DEAD) return;
  sub_release(s);
}

unsigned hub_path_players(hub_t *h, const char *path) {
  hub_stream_t *st = hub_path_ok(path) ? stream_find(h, path) : NULL;
  return st ? st->by_kind[HUB_SUB_PLAYER_RTMP] + st->by_kind[HUB_SUB_PLAYER_HTTPFLV] : 0;
}

connreg_t *hub_connreg(hub_t *h) { return &h->reg; }

void hub_sub_kick(hub_sub_t *s) {
  if (s == NULL || s->state == SUB_ENDING || s->state == SUB_DEAD) return;
  if (s->st && s->st->dispatching) {
    s->pending_end = HUB_END_KICKED;
    sub_arm(s, 0.);
    return;
  }
  sub_end(s, HUB_END_KICKED);
}

int hub_has_stream(hub_t *h, const char *path) {
  hub_stream_t *st = hub_path_ok(path) ? stream_find(h, path) : NULL;
  return st != NULL && st->published;
}

int hub_drop(hub_t *h, const char *path) {
  hub_stream_t *st = hub_path_ok(path) ? stream_find(h, path) : NULL;
  if (st == NULL || !st->published) return -1;
  st->dispatching++; /* neither on_end nor the observer may free |st| under us */
  for (hub_sub_t *s = st->subs; s; s = s->next)
    if (s->state == SUB_WAITING || s->state == SUB_ACTIVE) sub_end(s, HUB_END_KICKED);
  if (st->live && st->preempt) stream_preempt_locked(st);
  if (!st->live && st->published) {
    /* nothing to keep for a publisher that comes back: the operator ended it */
    ev_timer_stop(h->loop, &st->close_timer);
    st->published = 0;
    stream_reset_media(st);
    if (h->obs.on_unpublish) h->obs.on_unpublish(h, st->path, h->obs_arg);
  }
  st->dispatching--;
  stream_sweep(st);
  stream_maybe_free(st);
  return 0;
}

void hub_path_counts(hub_t *h, const char *path, unsigned *subs, unsigned *waiting) {
  hub_stream_t *st = hub_path_ok(path) ? stream_find(h, path) : NULL;
  unsigned n = 0, w = 0;
  if (st) {
    n = st->nsubs;
    for (hub_sub_t *s = st->subs; s; s = s->next)
      if (s->state == SUB_WAITING) w++;
  }
  if (subs) *subs = n;
  if (waiting) *waiting = w;
}

/* ---------- introspection ---------- */

static int cmp_path(const void *a, const void *b) {
  const hub_stream_t *x = *(hub_stream_t *const *)a, *y = *(hub_stream_t *const *)b;
  return strcmp(x->path, y->path);
}

void hub_foreach(hub_t *h, void (*fn)(const hub_stream_info_t *info, void *arg), void *arg) {
  if (h->nstreams == 0) return;
  hub_stream_t **v = malloc(h->nstreams * sizeof(*v));
  if (v == NULL) return;
  unsigned n = 0;
  for (unsigned i = 0; i < h->nbuckets; i++)
    for (hub_stream_t *st = h->buckets[i]; st; st = st->hnext)
      if (st->published) v[n++] = st;
  qsort(v, n, sizeof(*v), cmp_path);
  double now = ev_now(h->loop);
  for (unsigned i = 0; i < n; i++) {
    hub_stream_t *st = v[i];
    hub_stream_info_t in;
    double vfps, afps;
    memset(&in, 0, sizeof(in));
    in.path = st->path;
    in.live = st->live;
    in.origin = st->origin;
    in.subscribers = st->nsubs;
    memcpy(in.by_kind, st->by_kind, sizeof(in.by_kind));
    in.start_time = st->start_time;
    in.bytes_in = st->bytes_in;
    in.frames_in = st->frames_in;
    in.video_codec = st->vcodec;
    in.width = st->width;
    in.height = st->height;
    rate_get(&st->vrate, now, st->start_time, &in.video_bps, &vfps);
    rate_get(&st->arate, now, st->start_time, &in.audio_bps, &afps);
    in.fps = vfps > 0 ? vfps : st->meta_fps;
    if (in.video_bps == 0) in.video_bps = st->meta_vbps;
    if (in.audio_bps == 0) in.audio_bps = st->meta_abps;
    in.audio_codec = st->acodec;
    in.sample_rate = st->sample_rate;
    in.channels = st->channels;
    fn(&in, arg);
  }
  free(v);
}

void hub_get_stats(hub_t *h, hub_stats_t *out) {
  memset(out, 0, sizeof(*out));
  for (unsigned i = 0; i < h->nbuckets; i++)
    for (hub_stream_t *st = h->buckets[i]; st; st = st->hnext)
      if (st->published) out->streams++;
  out->publishers = h->publishers;
  out->subscribers = h->subscribers;
  out->bytes_in = h->bytes_in;
  out->bytes_out_queued = h->bytes_out_queued;
  out->frames_dropped = h->frames_dropped;
  out->slow_disconnects = h->slow_disconnects;
  out->queued_bytes = h->queued_bytes;
}
