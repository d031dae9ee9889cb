/* RTMP protocol state: see rtmp_proto.h. The digest handshake follows the
 * scheme Flash Player/FMS introduced and librtmp, FFmpeg and nginx-rtmp
 * implement: a 32-byte HMAC-SHA256 digest hidden in C1/S1 at an offset
 * derived from four bytes of the packet, and S2 signed with a key derived
 * from the client's digest. */
#include "rtmp_proto.h"

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdlib.h>
#include <string.h>

#include "amf.h"

const uint8_t rtmp_fp_key[62] = {
    'G',  'e',  'n',  'u',  'i',  'n',  'e',  ' ',  'A',  'd',  'o',  'b',  'e',
    ' ',  'F',  'l',  'a',  's',  'h',  ' ',  'P',  'l',  'a',  'y',  'e',  'r',
    ' ',  '0',  '0',  '1',  0xF0, 0xEE, 0xC2, 0x4A, 0x80, 0x68, 0xBE, 0xE8, 0x2E,
    0x00, 0xD0, 0xD1, 0x02, 0x9E, 0x7E, 0x57, 0x6E, 0xEC, 0x5D, 0x2D, 0x29, 0x80,
    0x6F, 0xAB, 0x93, 0xB8, 0xE6, 0x36, 0xCF, 0xEB, 0x31, 0xAE};

const uint8_t rtmp_fms_key[68] = {
    'G',  'e',  'n',  'u',  'i',  'n',  'e',  ' ',  'A',  'd',  'o',  'b',  'e',  ' ',
    'F',  'l',  'a',  's',  'h',  ' ',  'M',  'e',  'd',  'i',  'a',  ' ',  'S',  'e',
    'r',  'v',  'e',  'r',  ' ',  '0',  '0',  '1',  0xF0, 0xEE, 0xC2, 0x4A, 0x80, 0x68,
    0xBE, 0xE8, 0x2E, 0x00, 0xD0, 0xD1, 0x02, 0x9E, 0x7E, 0x57, 0x6E, 0xEC, 0x5D, 0x2D,
    0x29, 0x80, 0x6F, 0xAB, 0x93, 0xB8, 0xE6, 0x36, 0xCF, 0xEB, 0x31, 0xAE};

/* ---------------------------------------------------------------- handshake */

enum { HS_FIRST = 0, HS_SECOND, HS_DONE };

/* The version a digest-handshake server announces in S1; clients check
 * the S1 digest (and FFmpeg the S2 signature) when its first byte is >= 3. */
static const uint8_t server_version[4] = {0x0d, 0x0e, 0x0a, 0x0d};

static uint64_t rng_next(rtmp_hs_t *hs) {
  uint64_t x = hs->rng;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  hs->rng = x;
  return x;
}

static void rng_fill(rtmp_hs_t *hs, uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(rng_next(hs) >> 32);
}

int rtmp_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *data, size_t len,
                     size_t skip, uint8_t out[32]) {
  gnutls_hmac_hd_t h;
  if (gnutls_hmac_init(&h, GNUTLS_MAC_SHA256, key, key_len) < 0) return -1;
  int rc = 0;
  if (skip < len) {
    size_t after = skip + 32 <= len ? skip + 32 : len;
    if (gnutls_hmac(h, data, skip) < 0 || gnutls_hmac(h, data + after, len - after) < 0) rc = -1;
  } else if (gnutls_hmac(h, data, len) < 0) {
    rc = -1;
  }
  gnutls_hmac_deinit(h, out);
  return rc;
}

size_t rtmp_hs_digest_pos(const uint8_t *pkt, int scheme) {
  size_t base = scheme == 0 ? 8 : 772;
  size_t sum = (size_t)pkt[base] + pkt[base + 1] + pkt[base + 2] + pkt[base + 3];
  return sum % 728 + base + 4;
}

int rtmp_hs_digest_find(const uint8_t *pkt, const uint8_t *key, size_t key_len) {
  for (int scheme = 0; scheme < 2; scheme++) {
    size_t pos = rtmp_hs_digest_pos(pkt, scheme);
    uint8_t d[32];
    if (rtmp_hmac_sha256(key, key_len, pkt, RTMP_HANDSHAKE_SIZE, pos, d) < 0) return -1;
    /* Not secret: an ordinary comparison is fine. */
    if (memcmp(d, pkt + pos, 32) == 0) return (int)pos;
  }
  return -1;
}

void rtmp_hs_init(rtmp_hs_t *hs, int role, uint64_t seed) {
  memset(hs, 0, sizeof(*hs));
  hs->role = role;
  if (seed == 0 && gnutls_rnd(GNUTLS_RND_NONCE, &seed, sizeof(seed)) < 0) seed = 0x2545F4914F6CDD1Dull;
  hs->rng = seed ? seed : 1;
  if (role == RTMP_HS_CLIENT) {
    /* C0 + C1: time 0, zero version (the simple handshake), random. */
    hs->out[0] = 3;
    memset(hs->out + 1, 0, 8);
    rng_fill(hs, hs->out + 9, RTMP_HANDSHAKE_SIZE - 8);
    hs->out_len = 1 + RTMP_HANDSHAKE_SIZE;
  }
}

/* server_reply builds S0 S1 S2 for the C1 in hs->in + 1. */
static int server_reply(rtmp_hs_t *hs) {
  const uint8_t *c1 = hs->in + 1;
  uint8_t *s1 = hs->out + 1, *s2 = hs->out + 1 + RTMP_HANDSHAKE_SIZE;
  int dpos = -1;
  if (c1[4] | c1[5] | c1[6] | c1[7]) dpos = rtmp_hs_digest_find(c1, rtmp_fp_key, RTMP_FP_KEY_OPEN);
  hs->out[0] = 3;
  memset(s1, 0, 8);
  rng_fill(hs, s1 + 8, RTMP_HANDSHAKE_SIZE - 8);
  if (dpos < 0) {
    /* Simple handshake: S2 echoes C1. */
    memcpy(s2, c1, RTMP_HANDSHAKE_SIZE);
  } else {
    hs->complex = 1;
    hs->scheme = (size_t)dpos == rtmp_hs_digest_pos(c1, 0) ? 0 : 1;
    memcpy(s1 + 4, server_version, 4);
    size_t spos = rtmp_hs_digest_pos(s1, hs->scheme);
    if (rtmp_hmac_sha256(rtmp_fms_key, RTMP_FMS_KEY_OPEN, s1, RTMP_HANDSHAKE_SIZE, spos,
                         s1 + spos) < 0)
      return RTMP_EHANDSHAKE;
    uint8_t key[32];
    rng_fill(hs, s2, RTMP_HANDSHAKE_SIZE);
    if (rtmp_hmac_sha256(rtmp_fms_key, sizeof(rtmp_fms_key), c1 + dpos, 32, 32, key) < 0 ||
        rtmp_hmac_sha256(key, 32, s2, RTMP_HANDSHAKE_SIZE - 32, RTMP_HANDSHAKE_SIZE,
                         s2 + RTMP_HANDSHAKE_SIZE - 32) < 0)
      return RTMP_EHANDSHAKE;
  }
  hs->out_len = 1 + 2 * RTMP_HANDSHAKE_SIZE;
  hs->out_off = 0;
  return 0;
}

ssize_t rtmp_hs_feed(rtmp_hs_t *hs, const uint8_t *data, size_t len) {
  size_t used = 0;
  while (used < len && hs->state != HS_DONE) {
    size_t want;
    if (hs->role == RTMP_HS_SERVER)
      want = hs->state == HS_FIRST ? 1 + RTMP_HANDSHAKE_SIZE : RTMP_HANDSHAKE_SIZE;
    else
      want = 1 + 2 * RTMP_HANDSHAKE_SIZE;
    size_t n = want - hs->have;
    if (n > len - used) n = len - used;
    memcpy(hs->in + hs->have, data + used, n);
    hs->have += n;
    used += n;
    /* Refuse a wrong version at once rather than after 1536 more bytes. */
    if (hs->have >= 1 && hs->state == HS_FIRST && hs->in[0] != 3) return RTMP_EVERSION;
    if (hs->have < want) break;
    hs->have = 0;
    if (hs->role == RTMP_HS_SERVER) {
      if (hs->state == HS_FIRST) {
        int rc = server_reply(hs);
        if (rc) return rc;
        hs->state = HS_SECOND;
      } else {
        hs->state = HS_DONE;   /* C2's content is not checked: clients vary */
      }
    } else {
      /* C2 echoes S1; the client role needs no digest (simple handshake). */
      memcpy(hs->out, hs->in + 1, RTMP_HANDSHAKE_SIZE);
      hs->out_len = RTMP_HANDSHAKE_SIZE;
      hs->out_off = 0;
      hs->state = HS_DONE;
    }
  }
  return (ssize_t)used;
}

const uint8_t *rtmp_hs_output(const rtmp_hs_t *hs, size_t *len) {
  *len = hs->out_len - hs->out_off;
  return hs->out + hs->out_off;
}

void rtmp_hs_sent(rtmp_hs_t *hs, size_t n) {
  if (n > hs->out_len - hs->out_off) n = hs->out_len - hs->out_off;
  hs->out_off += n;
  if (hs->out_off == hs->out_len) hs->out_off = hs->out_len = 0;
}

int rtmp_hs_done(const rtmp_hs_t *hs) { return hs->state == HS_DONE; }

/* ---------------------------------------------------------------- reader */

struct rtmp_cstream {
  uint32_t csid;
  uint32_t ts;          /* timestamp of the current or last message */
  uint32_t ts_field;    /* last header's timestamp field (extended value when ext) */
  uint32_t len, sid;
  uint8_t type;
  uint8_t ext;          /* last fmt 0-2 header had an extended timestamp */
  uint8_t in_msg;
  uint32_t got;
  uint8_t *buf;
  size_t cap;
  uint8_t *xbuf;        /* the caller's buffer of the message in progress */
  void *xowner;         /* its owner handle, NULL when the message uses |buf| */
};

static uint32_t be24(const uint8_t *p) { return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2]; }
static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void rtmp_reader_init(rtmp_reader_t *r, uint32_t max_msg, uint32_t max_other) {
  memset(r, 0, sizeof(*r));
  r->chunk_size = RTMP_DEFAULT_CHUNK_SIZE;
  r->max_msg = max_msg ? max_msg : RTMP_DEFAULT_MAX_MSG;
  r->max_other = max_other ? max_other : 1024 * 1024;
  r->max_buffered = rtmp_reader_default_bound(r);
}

size_t rtmp_reader_default_bound(const rtmp_reader_t *r) {
  return (size_t)r->max_msg + r->max_other + 1024 * 1024;
}

void rtmp_reader_set_bound(rtmp_reader_t *r, size_t max_buffered) { r->max_buffered = max_buffered; }

void rtmp_reader_set_budget(rtmp_reader_t *r, rtmp_budget_t *b) {
  if (r->budget) r->budget->used -= r->buffered;
  r->budget = b;
  if (b) b->used += r->buffered;
}

/* hold counts |n| more bytes held, within the bound and the budget; every
 * change of |buffered| goes through hold and let_go, so the budget always
 * has the sum of its readers' holdings. */
static int hold(rtmp_reader_t *r, size_t n) {
  if (r->buffered + n > r->max_buffered) return RTMP_EPENDING;
  if (r->budget) {
    if (r->budget->used + n > r->budget->max) return RTMP_EBUDGET;
    r->budget->used += n;
  }
  r->buffered += n;
  return 0;
}

static void let_go(rtmp_reader_t *r, size_t n) {
  r->buffered -= n;
  if (r->budget) r->budget->used -= n;
}

/* cs_drop_x gives a half-assembled caller buffer back. */
static void cs_drop_x(rtmp_reader_t *r, rtmp_cstream_t *c) {
  if (c->xowner == NULL) return;
  r->av_release(r->av_arg, c->xowner);
  let_go(r, c->len);
  c->xowner = NULL;
  c->xbuf = NULL;
}

void rtmp_reader_set_alloc(rtmp_reader_t *r,
                           uint8_t *(*alloc)(void *arg, uint8_t type, uint32_t ts, uint32_t len,
                                             void **owner),
                           void (*release)(void *arg, void *owner), void *arg) {
  r->av_alloc = alloc && release ? alloc : NULL;
  r->av_release = alloc && release ? release : NULL;
  r->av_arg = arg;
}

void rtmp_reader_trim(rtmp_reader_t *r) {
  for (unsigned i = 0; i < r->ncs; i++) {
    rtmp_cstream_t *c = &r->cs[i];
    if (c->in_msg || c->buf == NULL) continue;
    free(c->buf);
    let_go(r, c->cap);
    c->buf = NULL;
    c->cap = 0;
  }
}

void rtmp_reader_free(rtmp_reader_t *r) {
  if (r == NULL) return;
  for (unsigned i = 0; i < r->ncs; i++) {
    cs_drop_x(r, &r->cs[i]);
    free(r->cs[i].buf);
  }
  free(r->cs);
  r->cs = NULL;
  r->ncs = r->cs_cap = 0;
  r->cur = NULL;
  let_go(r, r->buffered);   /* the own buffers' capacity */
}

static rtmp_cstream_t *cs_find(rtmp_reader_t *r, uint32_t csid) {
  for (unsigned i = 0; i < r->ncs; i++)
    if (r->cs[i].csid == csid) return &r->cs[i];
  return NULL;
}

static rtmp_cstream_t *cs_add(rtmp_reader_t *r, uint32_t csid) {
  if (r->ncs == RTMP_MAX_CHUNK_STREAMS) return NULL;
  if (r->ncs == r->cs_cap) {
    /* Allocated once at the maximum: |cur| points into this array. */
    r->cs = calloc(RTMP_MAX_CHUNK_STREAMS, sizeof(*r->cs));
    if (r->cs == NULL) return NULL;
    r->cs_cap = RTMP_MAX_CHUNK_STREAMS;
  }
  rtmp_cstream_t *c = &r->cs[r->ncs++];
  memset(c, 0, sizeof(*c));
  c->csid = csid;
  return c;
}

/* hdr_need is how many header bytes the current stage needs; *final is
 * set when that is the whole header. */
static size_t hdr_need(rtmp_reader_t *r, int *final) {
  static const uint8_t mh_len[4] = {11, 7, 3, 0};
  *final = 0;
  if (r->hdr_len < 1) return 1;
  uint8_t low = r->hdr[0] & 0x3f;
  size_t bh = low == 0 ? 2 : low == 1 ? 3 : 1;
  if (r->hdr_len < bh) return bh;
  unsigned fmt = r->hdr[0] >> 6;
  size_t mh = mh_len[fmt];
  if (r->hdr_len < bh + mh) return bh + mh;
  int ext;
  if (fmt < 3) {
    ext = be24(r->hdr + bh) == 0xffffff;
  } else {
    uint32_t csid = low == 0 ? 64u + r->hdr[1] : low == 1 ? 64u + r->hdr[1] + 256u * r->hdr[2] : low;
    rtmp_cstream_t *c = cs_find(r, csid);
    ext = c ? c->ext : 0;
  }
  *final = 1;
  return bh + mh + (ext ? 4 : 0);
}

static int is_av(uint8_t type) { return type == RTMP_MSG_AUDIO || type == RTMP_MSG_VIDEO; }

static void cs_discard(rtmp_reader_t *r, rtmp_cstream_t *c) {
  cs_drop_x(r, c);
  c->in_msg = 0;
  c->got = 0;
}

static int deliver(rtmp_reader_t *r, rtmp_cstream_t *c, rtmp_msg_cb cb, void *arg) {
  rtmp_msg_t m = {c->csid, c->type, c->sid, c->ts, c->len, c->xowner ? c->xbuf : c->buf,
                  c->xowner};
  if (c->xowner) {
    /* handed over: the callback owns it now */
    let_go(r, c->len);
    c->xowner = NULL;
    c->xbuf = NULL;
  }
  c->in_msg = 0;
  c->got = 0;
  uint32_t v = m.len >= 4 ? be32(m.data) : 0;
  switch (m.type) {
  case RTMP_MSG_SET_CHUNK_SIZE:
    if (m.len < 4) return RTMP_EPROTO;
    if (v == 0 || v > RTMP_MAX_CHUNK_SIZE) return RTMP_ECHUNKSIZE;
    r->chunk_size = v;
    return 0;
  case RTMP_MSG_ABORT: {
    if (m.len < 4) return RTMP_EPROTO;
    rtmp_cstream_t *a = cs_find(r, v);
    if (a) cs_discard(r, a);
    return 0;
  }
  case RTMP_MSG_ACK:
    if (m.len < 4) return RTMP_EPROTO;
    r->peer_acked = v;
    return 0;
  case RTMP_MSG_WINDOW_ACK_SIZE:
    if (m.len < 4) return RTMP_EPROTO;
    r->window = v;
    return 0;
  default:
    return cb ? cb(arg, &m) : 0;
  }
}

/* start_chunk applies a complete header in r->hdr. */
static int start_chunk(rtmp_reader_t *r, rtmp_msg_cb cb, void *arg) {
  const uint8_t *h = r->hdr;
  uint8_t low = h[0] & 0x3f;
  unsigned fmt = h[0] >> 6;
  uint32_t csid = low == 0 ? 64u + h[1] : low == 1 ? 64u + h[1] + 256u * h[2] : low;
  size_t p = low == 0 ? 2 : low == 1 ? 3 : 1;
  rtmp_cstream_t *c = cs_find(r, csid);
  if (c == NULL) {
    /* A new chunk stream must say how long its message is. */
    if (fmt > 1) return RTMP_ECSID;
    if ((c = cs_add(r, csid)) == NULL) return r->ncs == RTMP_MAX_CHUNK_STREAMS ? RTMP_ECSID : RTMP_ENOMEM;
  }
  uint32_t field = c->ts_field;
  int ext = c->ext;
  uint32_t len = c->len, type = c->type, sid = c->sid;
  if (fmt < 3) {
    field = be24(h + p);
    ext = field == 0xffffff;
    if (fmt < 2) {
      len = be24(h + p + 3);
      type = h[p + 6];
      if (fmt == 0) sid = (uint32_t)h[p + 7] | (uint32_t)h[p + 8] << 8 | (uint32_t)h[p + 9] << 16 |
                          (uint32_t)h[p + 10] << 24;
    }
    p += fmt == 0 ? 11 : fmt == 1 ? 7 : 3;
  }
  if (ext) field = be32(h + p);
  r->hdr_len = 0;

  if (c->in_msg && fmt == 3) {
    /* Continuation of the message in progress. */
    r->cur = c;
    r->chunk_left = c->len - c->got < r->chunk_size ? c->len - c->got : r->chunk_size;
    return 0;
  }
  /* A new message (a fmt 0-2 header mid-message abandons the old one). */
  cs_drop_x(r, c);
  if (len > (is_av((uint8_t)type) ? r->max_msg : r->max_other)) return RTMP_ETOOBIG;
  c->ts = fmt == 0 ? field : c->ts + field;
  c->ts_field = field;
  c->ext = (uint8_t)ext;
  c->len = len;
  c->type = (uint8_t)type;
  c->sid = sid;
  c->in_msg = 1;
  c->got = 0;
  if (len > 0 && r->av_alloc && is_av((uint8_t)type)) {
    /* Counted whole before it is allocated: the declared length is what
     * the peer can make us hold. */
    int rc = hold(r, len);
    if (rc) return rc;
    c->xbuf = r->av_alloc(r->av_arg, (uint8_t)type, c->ts, len, &c->xowner);
    if (c->xbuf == NULL || c->xowner == NULL) {
      c->xbuf = NULL;
      c->xowner = NULL;
      let_go(r, len);
      return RTMP_ENOMEM;
    }
  }
  if (len == 0) {
    r->cur = NULL;
    return deliver(r, c, cb, arg);
  }
  r->cur = c;
  r->chunk_left = len < r->chunk_size ? len : r->chunk_size;
  return 0;
}

static int cs_reserve(rtmp_reader_t *r, rtmp_cstream_t *c, size_t need) {
  if (need <= c->cap) return 0;
  size_t ncap = c->cap ? c->cap * 2 : 4096;
  if (ncap < need) ncap = need;
  if (ncap > c->len) ncap = c->len;
  int rc = hold(r, ncap - c->cap);
  if (rc) return rc;
  uint8_t *nb = realloc(c->buf, ncap);
  if (nb == NULL) {
    let_go(r, ncap - c->cap);
    return RTMP_ENOMEM;
  }
  c->buf = nb;
  c->cap = ncap;
  return 0;
}

int rtmp_reader_feed(rtmp_reader_t *r, const uint8_t *data, size_t len, rtmp_msg_cb cb,
                     void *arg) {
  size_t pos = 0;
  r->bytes_in += len;
  for (;;) {
    if (r->cur == NULL) {
      int final;
      size_t need = hdr_need(r, &final);
      if (r->hdr_len < need) {
        if (pos == len) return 0;
        size_t n = need - r->hdr_len;
        if (n > len - pos) n = len - pos;
        memcpy(r->hdr + r->hdr_len, data + pos, n);
        r->hdr_len = (uint8_t)(r->hdr_len + n);
        pos += n;
        continue;
      }
      if (!final) continue;   /* not reached: a stage short of final needs more */
      int rc = start_chunk(r, cb, arg);
      if (rc) return rc;
      continue;
    }
    if (pos == len) return 0;
    rtmp_cstream_t *c = r->cur;
    size_t n = r->chunk_left;
    if (n > len - pos) n = len - pos;
    int rc = 0;
    if (c->xowner) {
      memcpy(c->xbuf + c->got, data + pos, n);
    } else {
      if ((rc = cs_reserve(r, c, (size_t)c->got + n)) != 0) return rc;
      memcpy(c->buf + c->got, data + pos, n);
    }
    c->got += (uint32_t)n;
    r->chunk_left -= (uint32_t)n;
    pos += n;
    if (c->got == c->len) {
      r->cur = NULL;
      rc = deliver(r, c, cb, arg);
      if (rc) return rc;
    } else if (r->chunk_left == 0) {
      r->cur = NULL;
    }
  }
}

int rtmp_reader_ack_due(rtmp_reader_t *r, uint32_t *seq) {
  if (r->window == 0 || r->bytes_in - r->last_ack < r->window) return 0;
  r->last_ack = r->bytes_in;
  *seq = (uint32_t)r->bytes_in;
  return 1;
}

/* ---------------------------------------------------------------- writer */

void rtmp_writer_init(rtmp_writer_t *w) {
  memset(w, 0, sizeof(*w));
  w->chunk_size = RTMP_DEFAULT_CHUNK_SIZE;
}

void rtmp_writer_set_chunk_size(rtmp_writer_t *w, uint32_t size) {
  if (size < 1) size = 1;
  if (size > RTMP_MAX_CHUNK_SIZE) size = RTMP_MAX_CHUNK_SIZE;
  w->chunk_size = size;
}

static size_t put_basic(uint8_t *p, unsigned fmt, uint32_t csid) {
  if (csid < 64) {
    p[0] = (uint8_t)(fmt << 6 | csid);
    return 1;
  }
  if (csid < 320) {
    p[0] = (uint8_t)(fmt << 6);
    p[1] = (uint8_t)(csid - 64);
    return 2;
  }
  p[0] = (uint8_t)(fmt << 6 | 1);
  p[1] = (uint8_t)(csid - 64);
  p[2] = (uint8_t)((csid - 64) >> 8);
  return 3;
}

static void w24(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 16);
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)v;
}

static void w32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

void rtmp_writer_begin(rtmp_writer_t *w, rtmp_omsg_t *m, uint32_t csid, uint8_t type,
                       uint32_t sid, uint32_t ts, const uint8_t *body, size_t len) {
  if (csid < 2) csid = 2;
  if (csid > 65599) csid = 65599;
  if (len > RTMP_MAX_CHUNK_SIZE) len = RTMP_MAX_CHUNK_SIZE;   /* caller's bug; stay in format */
  rtmp_wcs_t *s = NULL, *fresh = NULL;
  for (int i = 0; i < RTMP_WRITER_CS; i++) {
    if (w->cs[i].used && w->cs[i].csid == csid) s = &w->cs[i];
    else if (!w->cs[i].used && fresh == NULL) fresh = &w->cs[i];
  }
  unsigned fmt = 0;
  uint32_t tv = ts;
  if (s && s->sid == sid && ts >= s->ts) {
    fmt = s->len == len && s->type == type ? 2 : 1;
    tv = ts - s->ts;
  }
  if (s == NULL) s = fresh;   /* NULL when the table is full: always fmt 0 there */
  int ext = tv >= 0xffffff;
  uint8_t *h = m->h0;
  size_t n = put_basic(h, fmt, csid);
  w24(h + n, ext ? 0xffffff : tv);
  n += 3;
  if (fmt <= 1) {
    w24(h + n, (uint32_t)len);
    h[n + 3] = type;
    n += 4;
  }
  if (fmt == 0) {
    h[n] = (uint8_t)sid;
    h[n + 1] = (uint8_t)(sid >> 8);
    h[n + 2] = (uint8_t)(sid >> 16);
    h[n + 3] = (uint8_t)(sid >> 24);
    n += 4;
  }
  if (ext) {
    w32(h + n, tv);
    n += 4;
  }
  m->h0_len = (uint8_t)n;
  n = put_basic(m->h3, 3, csid);
  if (ext) {
    w32(m->h3 + n, tv);
    n += 4;
  }
  m->h3_len = (uint8_t)n;
  m->body = body;
  m->len = len;
  m->chunk = w->chunk_size;
  m->pos = 0;
  if (s) {
    s->csid = csid;
    s->ts = ts;
    s->len = (uint32_t)len;
    s->sid = sid;
    s->type = type;
    s->used = 1;
  }
}

size_t rtmp_omsg_wire_len(const rtmp_omsg_t *m) {
  size_t k = m->len == 0 ? 1 : (m->len + m->chunk - 1) / m->chunk;
  return m->h0_len + m->len + (k - 1) * m->h3_len;
}

int rtmp_omsg_iov(const rtmp_omsg_t *m, struct iovec *iov, int cap) {
  size_t total = rtmp_omsg_wire_len(m), pos = m->pos;
  int n = 0;
  size_t first = m->h0_len + (m->len < m->chunk ? m->len : m->chunk);
  while (pos < total && n < cap) {
    size_t k, off, hl;
    const uint8_t *hp;
    if (pos < first) {
      k = 0;
      off = pos;
      hl = m->h0_len;
      hp = m->h0;
    } else {
      size_t q = pos - first, span = (size_t)m->h3_len + m->chunk;
      k = 1 + q / span;
      off = q % span;
      hl = m->h3_len;
      hp = m->h3;
    }
    size_t bstart = k * m->chunk;
    size_t blen = m->len - bstart < m->chunk ? m->len - bstart : m->chunk;
    if (off < hl) {
      iov[n].iov_base = (void *)(hp + off);
      iov[n].iov_len = hl - off;
      n++;
      pos += hl - off;
      off = hl;
      if (n == cap) break;
    }
    if (blen > 0) {
      size_t boff = off - hl;
      iov[n].iov_base = (void *)(m->body + bstart + boff);
      iov[n].iov_len = blen - boff;
      n++;
      pos += blen - boff;
    }
  }
  return n;
}

size_t rtmp_omsg_advance(rtmp_omsg_t *m, size_t n) {
  size_t total = rtmp_omsg_wire_len(m);
  m->pos = n > total - m->pos ? total : m->pos + n;
  return total - m->pos;
}

int rtmp_writer_put(rtmp_writer_t *w, amf_buf_t *out, uint32_t csid, uint8_t type, uint32_t sid,
                    uint32_t ts, const uint8_t *body, size_t len) {
  rtmp_omsg_t m;
  rtmp_writer_begin(w, &m, csid, type, sid, ts, body, len);
  struct iovec iov[64];
  int n;
  while ((n = rtmp_omsg_iov(&m, iov, 64)) > 0) {
    size_t sent = 0;
    for (int i = 0; i < n; i++) {
      amf_put_raw(out, iov[i].iov_base, iov[i].iov_len);
      sent += iov[i].iov_len;
    }
    if (out->err) return RTMP_ENOMEM;
    rtmp_omsg_advance(&m, sent);
  }
  return out->err ? RTMP_ENOMEM : 0;
}

int rtmp_put_set_chunk_size(rtmp_writer_t *w, amf_buf_t *out, uint32_t size) {
  if (size < 1) size = 1;
  if (size > RTMP_MAX_CHUNK_SIZE) size = RTMP_MAX_CHUNK_SIZE;
  int rc = rtmp_put_u32_msg(w, out, RTMP_MSG_SET_CHUNK_SIZE, size);
  if (rc == 0) rtmp_writer_set_chunk_size(w, size);
  return rc;
}

int rtmp_put_u32_msg(rtmp_writer_t *w, amf_buf_t *out, uint8_t type, uint32_t v) {
  uint8_t b[4];
  w32(b, v);
  return rtmp_writer_put(w, out, 2, type, 0, 0, b, 4);
}

int rtmp_put_peer_bw(rtmp_writer_t *w, amf_buf_t *out, uint32_t bw, uint8_t limit) {
  uint8_t b[5];
  w32(b, bw);
  b[4] = limit;
  return rtmp_writer_put(w, out, 2, RTMP_MSG_SET_PEER_BW, 0, 0, b, 5);
}

int rtmp_put_user_control(rtmp_writer_t *w, amf_buf_t *out, uint16_t event, uint32_t v) {
  uint8_t b[6];
  b[0] = (uint8_t)(event >> 8);
  b[1] = (uint8_t)event;
  w32(b + 2, v);
  return rtmp_writer_put(w, out, 2, RTMP_MSG_USER_CONTROL, 0, 0, b, 6);
}
