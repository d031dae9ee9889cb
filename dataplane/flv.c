/* FLV: see flv.h. The parser never buffers a tag twice: the body is read
 * straight into the hub frame that carries it on. */
#include "flv.h"

#include <string.h>

#include "amf.h"

enum { ST_FILE_HEADER, ST_PREV_SIZE, ST_TAG_HEADER, ST_BODY, ST_SKIP, ST_ERROR };

#define FLV_MAX_DATA_OFFSET 4096  /* a larger file header is not a file we read */

void flv_put_u32(uint8_t out[4], uint32_t v) {
  out[0] = (uint8_t)(v >> 24);
  out[1] = (uint8_t)(v >> 16);
  out[2] = (uint8_t)(v >> 8);
  out[3] = (uint8_t)v;
}

void flv_header(uint8_t out[FLV_HEADER_LEN + FLV_PREV_SIZE_LEN], uint8_t flags) {
  out[0] = 'F';
  out[1] = 'L';
  out[2] = 'V';
  out[3] = 1;
  out[4] = flags & (FLV_FLAG_AUDIO | FLV_FLAG_VIDEO);
  flv_put_u32(out + 5, FLV_HEADER_LEN);
  flv_put_u32(out + 9, 0);
}

void flv_tag_header(uint8_t out[FLV_TAG_HEADER_LEN], uint8_t type, uint32_t len, uint32_t ts) {
  out[0] = type;
  out[1] = (uint8_t)(len >> 16);
  out[2] = (uint8_t)(len >> 8);
  out[3] = (uint8_t)len;
  out[4] = (uint8_t)(ts >> 16);
  out[5] = (uint8_t)(ts >> 8);
  out[6] = (uint8_t)ts;
  out[7] = (uint8_t)(ts >> 24); /* TimestampExtended */
  out[8] = out[9] = out[10] = 0;
}

void flv_frame_header(uint8_t out[FLV_TAG_HEADER_LEN], const hub_frame_t *f, uint32_t ts) {
  flv_tag_header(out, f->type, (uint32_t)f->len, ts);
}

void flv_parser_init(flv_parser_t *p, int expect_header) {
  memset(p, 0, sizeof(*p));
  p->expect_header = expect_header;
  p->max_tag = HUB_FRAME_MAX;
  p->state = expect_header ? ST_FILE_HEADER : ST_PREV_SIZE;
}

void flv_parser_free(flv_parser_t *p) {
  if (p == NULL) return;
  hub_frame_unref(p->frame);
  p->frame = NULL;
}

static uint32_t get_u24(const uint8_t *b) { return (uint32_t)b[0] << 16 | (uint32_t)b[1] << 8 | b[2]; }

static uint32_t get_u32(const uint8_t *b) { return (uint32_t)b[0] << 24 | get_u24(b + 1); }

/* take copies up to |want| - p->got header bytes; 1 when complete. */
static int take(flv_parser_t *p, size_t want, const uint8_t **d, size_t *n) {
  size_t k = want - p->got;
  if (k > *n) k = *n;
  memcpy(p->hdr + p->got, *d, k);
  p->got += k;
  *d += k;
  *n -= k;
  return p->got == want;
}

static long fail(flv_parser_t *p, int err) {
  p->state = ST_ERROR;
  hub_frame_unref(p->frame);
  p->frame = NULL;
  p->err = err;
  return err;
}

long flv_parse(flv_parser_t *p, const uint8_t *data, size_t len, hub_frame_t **out) {
  const uint8_t *d = data;
  size_t n = len;
  *out = NULL;
  while (n > 0 || (p->state == ST_BODY && p->got == p->frame->len)) {
    switch (p->state) {
    case ST_FILE_HEADER:
      if (!take(p, FLV_HEADER_LEN, &d, &n)) break;
      if (memcmp(p->hdr, "FLV", 3) != 0 || p->hdr[3] != 1) return fail(p, FLV_EHEADER);
      {
        uint32_t off = get_u32(p->hdr + 5);
        if (off < FLV_HEADER_LEN || off > FLV_MAX_DATA_OFFSET) return fail(p, FLV_EHEADER);
        p->flags = p->hdr[4];
        p->skip = off - FLV_HEADER_LEN;
      }
      p->got = 0;
      p->state = ST_PREV_SIZE;
      break;
    case ST_PREV_SIZE:
      if (p->skip) { /* header padding before PreviousTagSize0 */
        size_t k = p->skip < n ? p->skip : n;
        p->skip -= (uint32_t)k;
        d += k;
        n -= k;
        break;
      }
      if (!take(p, FLV_PREV_SIZE_LEN, &d, &n)) break;
      if (get_u32(p->hdr) != p->last_tag_size && (p->tags || p->skipped || p->expect_header))
        p->prev_size_mismatch++;
      p->got = 0;
      p->state = ST_TAG_HEADER;
      break;
    case ST_TAG_HEADER: {
      if (!take(p, FLV_TAG_HEADER_LEN, &d, &n)) break;
      uint8_t type = p->hdr[0] & 0x1f; /* bit 5 is the encryption filter */
      uint32_t size = get_u24(p->hdr + 1);
      uint32_t ts = get_u24(p->hdr + 4) | (uint32_t)p->hdr[7] << 24;
      p->got = 0;
      p->last_tag_size = FLV_TAG_HEADER_LEN + size;
      if (size > p->max_tag || size > HUB_FRAME_MAX) return fail(p, FLV_ETOOBIG);
      if (type != HUB_AUDIO && type != HUB_VIDEO && type != HUB_SCRIPT) {
        p->skip = size;
        p->skipped++;
        p->state = ST_SKIP;
        break;
      }
      p->frame = hub_frame_alloc(type, ts, size);
      if (p->frame == NULL) return fail(p, FLV_ENOMEM);
      p->state = ST_BODY;
      break;
    }
    case ST_BODY: {
      hub_frame_t *f = p->frame;
      size_t k = f->len - p->got;
      if (k > n) k = n;
      memcpy(f->data + p->got, d, k);
      p->got += k;
      d += k;
      n -= k;
      if (p->got < f->len) break;
      hub_frame_classify(f);
      p->frame = NULL;
      p->got = 0;
      p->tags++;
      p->state = ST_PREV_SIZE;
      *out = f;
      return (long)(d - data);
    }
    case ST_SKIP: {
      size_t k = p->skip < n ? p->skip : n;
      p->skip -= (uint32_t)k;
      d += k;
      n -= k;
      if (p->skip == 0) p->state = ST_PREV_SIZE;
      break;
    }
    default:
      return p->err;
    }
  }
  return (long)(d - data);
}

const char *flv_strerror(int err) {
  switch (err) {
  case FLV_EHEADER: return "bad FLV header";
  case FLV_ETOOBIG: return "FLV tag too large";
  case FLV_ENOMEM: return "out of memory";
  default: return "unknown FLV error";
  }
}

/* ---------- kinds sniffer ---------- */

void flv_kinds_init(flv_kinds_t *k) { memset(k, 0, sizeof(*k)); }

/* names tells whether metadata member |v| names its kind: a codec id as a
 * number (video id 0 is no codec) or as a non-empty string (FourCC). */
static int names(const amf_value_t *v, int video) {
  double n;
  if (v == NULL) return 0;
  if (amf_num(v, &n) == 0) return !video || n != 0;
  return v->type == AMF_STRING && v->len > 0;
}

uint8_t flv_kinds_meta(const uint8_t *data, size_t len) {
  /* Live metadata is a few hundred bytes; a file's keyframe index can be
   * large, and what it says we can do without. */
  static const amf_limits_t lim = {8, 4096, FLV_KINDS_MAX_META};
  amf_value_t *name = NULL, *obj = NULL;
  size_t used = 0, used2 = 0;
  uint8_t flags = 0;
  if (len > FLV_KINDS_MAX_META) len = FLV_KINDS_MAX_META;
  if (amf_decode(data, len, &lim, &name, &used) != 0) goto out;
  const char *str = amf_str(name);
  if (str == NULL || strcmp(str, "onMetaData") != 0) goto out;
  if (amf_decode(data + used, len - used, &lim, &obj, &used2) != 0) goto out;
  const amf_value_t *hv = amf_get(obj, "hasVideo"), *ha = amf_get(obj, "hasAudio");
  /* hasVideo/hasAudio are explicit; codec ids are only written for a kind
   * that is there (ffmpeg, OBS) */
  if (hv && hv->type == AMF_BOOLEAN) {
    if (hv->boolean) flags |= FLV_FLAG_VIDEO;
  } else if (names(amf_get(obj, "videocodecid"), 1)) {
    flags |= FLV_FLAG_VIDEO;
  }
  if (ha && ha->type == AMF_BOOLEAN) {
    if (ha->boolean) flags |= FLV_FLAG_AUDIO;
  } else if (names(amf_get(obj, "audiocodecid"), 0)) {
    flags |= FLV_FLAG_AUDIO;
  }
out:
  amf_free(name);
  amf_free(obj);
  return flags;
}

static uint8_t decide(flv_kinds_t *k, uint8_t flags) {
  k->flags = flags ? flags : FLV_FLAG_AUDIO | FLV_FLAG_VIDEO;
  return k->flags;
}

uint8_t flv_kinds_finish(flv_kinds_t *k) {
  if (k->flags) return k->flags;
  return decide(k, k->seen ? k->seen : k->meta);
}

uint8_t flv_kinds_feed(flv_kinds_t *k, uint8_t type, int seq_header, uint32_t ts,
                       const uint8_t *data, size_t len) {
  const uint8_t both = FLV_FLAG_AUDIO | FLV_FLAG_VIDEO;
  if (k->flags) return k->flags;
  k->frames++;
  k->bytes += len < FLV_KINDS_MAX_BYTES ? len : FLV_KINDS_MAX_BYTES;
  int window = 0;
  if (type == HUB_SCRIPT) {
    uint8_t m = flv_kinds_meta(data, len);
    if (m) k->meta = m; /* one that names nothing does not undo one that did */
  } else if ((type == HUB_AUDIO || type == HUB_VIDEO) && len > 0) {
    k->seen |= type == HUB_AUDIO ? FLV_FLAG_AUDIO : FLV_FLAG_VIDEO;
    /* Media time starts at the first coded frame: a late player gets the
     * cached sequence headers with their old timestamps. Going back in
     * time (a republish) does not count as time passing. */
    if (!seq_header) {
      if (!k->clock) {
        k->clock = 1;
        k->first_ts = ts;
      } else if ((int32_t)(ts - k->first_ts) >= FLV_KINDS_WINDOW_MS) {
        window = 1;
      }
    }
  }
  if (k->seen == both) return decide(k, both);
  if (k->meta && (k->meta & ~k->seen) == 0) return decide(k, k->seen);
  if (window || k->frames >= FLV_KINDS_MAX_FRAMES || k->bytes >= FLV_KINDS_MAX_BYTES)
    return flv_kinds_finish(k);
  return 0;
}
