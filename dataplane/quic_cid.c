/* The endpoint's connection-ID table (routing datagrams to connections)
 * and the stateless reset tokens its peers gave it. */
#define _GNU_SOURCE
#include "quic_int.h"

static unsigned cid_hash(const uint8_t *d, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) h = (h ^ d[i]) * 16777619u;
  return h % QUIC_CID_BUCKETS;
}

quic_conn *quic_cid_find(quic_endpoint *ep, const uint8_t *d, size_t n) {
  for (cid_entry *e = ep->cids[cid_hash(d, n)]; e; e = e->next)
    if (e->cid.datalen == n && memcmp(e->cid.data, d, n) == 0) return e->c;
  return NULL;
}

int quic_cid_add(quic_endpoint *ep, const ngtcp2_cid *cid, quic_conn *c) {
  cid_entry *e = calloc(1, sizeof(*e));
  if (!e) return -ENOMEM;
  unsigned h = cid_hash(cid->data, cid->datalen);
  e->cid = *cid;
  e->c = c;
  e->next = ep->cids[h];
  ep->cids[h] = e;
  return 0;
}

void quic_cid_remove(quic_endpoint *ep, const ngtcp2_cid *cid) {
  cid_entry **p = &ep->cids[cid_hash(cid->data, cid->datalen)];
  for (; *p; p = &(*p)->next) {
    if (ngtcp2_cid_eq(&(*p)->cid, cid)) {
      cid_entry *e = *p;
      *p = e->next;
      free(e);
      return;
    }
  }
}

void quic_cid_remove_conn(quic_endpoint *ep, quic_conn *c) {
  for (unsigned i = 0; i < QUIC_CID_BUCKETS; i++) {
    cid_entry **p = &ep->cids[i];
    while (*p) {
      if ((*p)->c == c) {
        cid_entry *e = *p;
        *p = e->next;
        free(e);
      } else {
        p = &(*p)->next;
      }
    }
  }
}

/* ---- stateless reset tokens the peers gave us ---- */

static unsigned token_hash(const uint8_t *t) {
  uint32_t h;
  memcpy(&h, t, sizeof(h)); /* tokens are pseudo-random */
  return h % QUIC_TOKEN_BUCKETS;
}

quic_conn *quic_token_find(quic_endpoint *ep, const uint8_t *t) {
  for (token_entry *e = ep->tokens[token_hash(t)]; e; e = e->next)
    if (memcmp(e->token, t, NGTCP2_STATELESS_RESET_TOKENLEN) == 0) return e->c;
  return NULL;
}

void quic_token_remove(quic_endpoint *ep, quic_conn *c, uint64_t seq,
                       int all) {
  for (unsigned i = 0; i < QUIC_TOKEN_BUCKETS; i++) {
    token_entry **p = &ep->tokens[i];
    while (*p) {
      if ((*p)->c == c && (all || (*p)->seq == seq)) {
        token_entry *e = *p;
        *p = e->next;
        free(e);
      } else {
        p = &(*p)->next;
      }
    }
  }
}

int quic_token_add(quic_endpoint *ep, quic_conn *c, uint64_t seq,
                   const uint8_t *t) {
  token_entry *e = calloc(1, sizeof(*e));
  if (!e) return -ENOMEM;
  unsigned h = token_hash(t);
  memcpy(e->token, t, NGTCP2_STATELESS_RESET_TOKENLEN);
  e->seq = seq;
  e->c = c;
  e->next = ep->tokens[h];
  ep->tokens[h] = e;
  return 0;
}


/* ---- congestion-controller hints (cc "auto") ----
 * A client in "auto" mode measures the path before it dials and says what
 * it chose in the first byte of its first DCID (random otherwise), so that
 * both directions of a link use the same controller. The byte is
 * 0xc0 | hint: a random DCID of another client matches a hint by chance
 * (2 in 256), which only picks one of the two controllers. */
#define HINT_MARK 0xc0u

void quic_cid_hint_set(ngtcp2_cid *cid, int hint) {
  if (cid->datalen == 0) return;
  cid->data[0] = (uint8_t)(HINT_MARK | (unsigned)hint);
}

int quic_cid_hint(const ngtcp2_cid *cid) {
  if (cid->datalen != QUIC_CIDLEN) return QUIC_HINT_NONE;
  unsigned b = cid->data[0];
  if ((b & ~3u) != HINT_MARK) return QUIC_HINT_NONE;
  b &= 3u;
  return b == QUIC_HINT_NEAR || b == QUIC_HINT_FAR ? (int)b : QUIC_HINT_NONE;
}

ngtcp2_cc_algo quic_cc_for_hint(int hint, ngtcp2_cc_algo fallback) {
  if (hint == QUIC_HINT_NEAR) return NGTCP2_CC_ALGO_CUBIC;
  if (hint == QUIC_HINT_FAR) return NGTCP2_CC_ALGO_BBR;
  return fallback;
}

/* quic_hint_for_rtt: |rtt| seconds measured (< 0: no answer). */
int quic_hint_for_rtt(double rtt, double lan_rtt) {
  return rtt >= 0 && rtt < lan_rtt ? QUIC_HINT_NEAR : QUIC_HINT_FAR;
}

const char *quic_cc_name(ngtcp2_cc_algo cc) {
  switch (cc) {
  case NGTCP2_CC_ALGO_RENO: return "reno";
  case NGTCP2_CC_ALGO_CUBIC: return "cubic";
  case NGTCP2_CC_ALGO_BBR: return "bbr";
  }
  return "?";
}
