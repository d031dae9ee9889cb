/* Stream tokens: see streamtoken.h. */
#include "streamtoken.h"

#include <arpa/inet.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "b64.h"

#define TOKEN_VERSION 1
#define HDR_LEN 15
#define MAC_LEN 32

/* Domain separation: a MAC made for anything else with the same key can
 * never pass as a token. */
static const char mac_label[] = "cascade stream token v1";

int streamtoken_addr_canon(const char *addr, char *out, size_t outlen) {
  if (addr == NULL || out == NULL || strlen(addr) > STREAMTOKEN_ADDR_MAX) return STREAMTOKEN_EINVAL;
  struct in_addr a4;
  struct in6_addr a6;
  const char *r = NULL;
  if (inet_pton(AF_INET, addr, &a4) == 1) {
    r = inet_ntop(AF_INET, &a4, out, (socklen_t)outlen);
  } else if (inet_pton(AF_INET6, addr, &a6) == 1) {
    /* A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d. */
    if (IN6_IS_ADDR_V4MAPPED(&a6)) {
      memcpy(&a4, a6.s6_addr + 12, 4);
      r = inet_ntop(AF_INET, &a4, out, (socklen_t)outlen);
    } else {
      r = inet_ntop(AF_INET6, &a6, out, (socklen_t)outlen);
    }
  }
  return r ? 0 : STREAMTOKEN_EINVAL;
}

/* put_be writes the low |n| bytes of |v| big-endian. */
static void put_be(uint8_t *p, uint64_t v, int n) {
  for (int i = n - 1; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}

static uint64_t get_be(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v = v << 8 | p[i];
  return v;
}

/* token_mac computes the MAC of header |hdr| for |path| and, when the
 * header says bound, the canonical |addr|. */
static int token_mac(const uint8_t key[STREAMTOKEN_KEY_LEN], const uint8_t hdr[HDR_LEN],
                     const char *path, const char *addr, uint8_t mac[MAC_LEN]) {
  size_t pl = strlen(path), al = addr ? strlen(addr) : 0;
  if (pl == 0 || pl > STREAMTOKEN_PATH_MAX || al > STREAMTOKEN_ADDR_MAX) return -1;
  uint8_t msg[sizeof(mac_label) + HDR_LEN + 2 + STREAMTOKEN_PATH_MAX + 2 + STREAMTOKEN_ADDR_MAX];
  size_t o = 0;
  memcpy(msg, mac_label, sizeof(mac_label)); /* with its NUL */
  o += sizeof(mac_label);
  memcpy(msg + o, hdr, HDR_LEN);
  o += HDR_LEN;
  put_be(msg + o, pl, 2);
  o += 2;
  memcpy(msg + o, path, pl);
  o += pl;
  if (hdr[2] & 1) {
    put_be(msg + o, al, 2);
    o += 2;
    memcpy(msg + o, addr, al);
    o += al;
  }
  return gnutls_hmac_fast(GNUTLS_MAC_SHA256, key, STREAMTOKEN_KEY_LEN, msg, o, mac) == 0 ? 0 : -1;
}

int streamtoken_mint(const streamtoken_key *k, int action, const char *path, uint64_t expires,
                     const char *addr, char *out, size_t outlen) {
  char canon[INET6_ADDRSTRLEN];
  if (k == NULL || path == NULL || out == NULL || outlen < STREAMTOKEN_LEN + 1 ||
      (action != STREAMTOKEN_PUBLISH && action != STREAMTOKEN_PLAY))
    return STREAMTOKEN_EINVAL;
  if (addr && streamtoken_addr_canon(addr, canon, sizeof(canon)) != 0) return STREAMTOKEN_EINVAL;
  uint8_t raw[STREAMTOKEN_RAW_LEN];
  raw[0] = TOKEN_VERSION;
  raw[1] = (uint8_t)action;
  raw[2] = addr ? 1 : 0;
  put_be(raw + 3, k->id, 4);
  put_be(raw + 7, expires, 8);
  if (token_mac(k->key, raw, path, addr ? canon : NULL, raw + HDR_LEN) != 0)
    return STREAMTOKEN_EINVAL;
  return b64url_encode(raw, sizeof(raw), out, outlen) == STREAMTOKEN_LEN ? 0 : STREAMTOKEN_EINVAL;
}

/* parse_raw decodes |tok| into |raw| and |info|. */
static int parse_raw(const char *tok, size_t n, uint8_t raw[STREAMTOKEN_RAW_LEN],
                     streamtoken_info *info) {
  if (tok == NULL || n != STREAMTOKEN_LEN) return STREAMTOKEN_EMALFORMED;
  if (b64url_decode(tok, n, raw, STREAMTOKEN_RAW_LEN) != STREAMTOKEN_RAW_LEN)
    return STREAMTOKEN_EMALFORMED;
  if (raw[0] != TOKEN_VERSION || (raw[1] != STREAMTOKEN_PUBLISH && raw[1] != STREAMTOKEN_PLAY) ||
      (raw[2] & ~1u) != 0)
    return STREAMTOKEN_EMALFORMED;
  info->action = raw[1];
  info->bound = raw[2] & 1;
  info->key_id = (uint32_t)get_be(raw + 3, 4);
  info->expires = get_be(raw + 7, 8);
  return STREAMTOKEN_OK;
}

int streamtoken_parse(const char *tok, size_t n, streamtoken_info *info) {
  uint8_t raw[STREAMTOKEN_RAW_LEN];
  streamtoken_info tmp;
  return parse_raw(tok, n, raw, info ? info : &tmp);
}

int streamtoken_verify(const streamtoken_key *keys, size_t nkeys, const char *tok, size_t n,
                       int action, const char *path, const char *addr, uint64_t now) {
  if (tok == NULL || n == 0) return STREAMTOKEN_EMISSING;
  if (path == NULL) return STREAMTOKEN_EINVAL;
  uint8_t raw[STREAMTOKEN_RAW_LEN], mac[MAC_LEN];
  streamtoken_info info;
  int rc = parse_raw(tok, n, raw, &info);
  if (rc != STREAMTOKEN_OK) return rc;
  const streamtoken_key *k = NULL;
  for (size_t i = 0; i < nkeys && k == NULL; i++)
    if (keys[i].id == info.key_id) k = &keys[i];
  if (k == NULL) return STREAMTOKEN_EKEY;
  char canon[INET6_ADDRSTRLEN];
  if (info.bound && (addr == NULL || streamtoken_addr_canon(addr, canon, sizeof(canon)) != 0))
    return STREAMTOKEN_EMAC; /* bound, and the client's address is unknown */
  if (token_mac(k->key, raw, path, info.bound ? canon : NULL, mac) != 0) return STREAMTOKEN_EMAC;
  if (gnutls_memcmp(mac, raw + HDR_LEN, MAC_LEN) != 0) return STREAMTOKEN_EMAC;
  /* Signed: from here the fields are the controller's own. */
  if (info.action != action) return STREAMTOKEN_EACTION;
  if (info.expires + STREAMTOKEN_LEEWAY_S < info.expires /* wraps */ ||
      now > info.expires + STREAMTOKEN_LEEWAY_S)
    return STREAMTOKEN_EEXPIRED;
  return STREAMTOKEN_OK;
}

int streamtoken_from_query(const char *q, const char **tok, size_t *n) {
  if (q == NULL) return 0;
  for (const char *p = q; *p;) {
    size_t len = strcspn(p, "&");
    if (len >= 6 && memcmp(p, "token=", 6) == 0) {
      *tok = p + 6;
      *n = len - 6;
      return 1;
    }
    p += len;
    if (*p == '&') p++;
  }
  return 0;
}

int streamtoken_status(int err) {
  return err == STREAMTOKEN_EMISSING || err == STREAMTOKEN_EEXPIRED ? 401 : 403;
}

const char *streamtoken_strerror(int err) {
  switch (err) {
  case STREAMTOKEN_OK: return "ok";
  case STREAMTOKEN_EMISSING: return "token required";
  case STREAMTOKEN_EMALFORMED: return "malformed token";
  case STREAMTOKEN_EKEY: return "token signed by an unknown key";
  case STREAMTOKEN_EMAC: return "bad token (signature, path or address)";
  case STREAMTOKEN_EACTION: return "token not valid for this action";
  case STREAMTOKEN_EEXPIRED: return "token expired";
  default: return "invalid token";
  }
}
