/* Signed forwarding between replicas: see fwdsig.h. */
#include "fwdsig.h"

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char hexd[] = "0123456789abcdef";

static void hex(const uint8_t *b, size_t n, char *out) {
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = hexd[b[i] >> 4];
    out[2 * i + 1] = hexd[b[i] & 15];
  }
  out[2 * n] = '\0';
}

int fwdsig_key(const char *ca_key_pem, uint8_t key[FWDSIG_KEY_LEN]) {
  static const char label[] = "cascade replica relay forwarding v1";
  if (ca_key_pem == NULL || ca_key_pem[0] == '\0') return -1;
  return gnutls_hmac_fast(GNUTLS_MAC_SHA256, ca_key_pem, strlen(ca_key_pem), label,
                          sizeof(label) - 1, key) == 0
             ? 0
             : -1;
}

static int valid_actor(const char *a) {
  size_t n = strlen(a);
  if (n == 0 || n > FWDSIG_ACTOR_MAX) return 0;
  for (const char *p = a; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
          *p == ':' || *p == '-' || *p == '_' || *p == '.'))
      return 0;
  return 1;
}

/* mac computes the hex MAC over everything the signature binds. */
static int mac(const uint8_t key[FWDSIG_KEY_LEN], long long ts, int role, const char *actor,
               const char *method, const char *target, const char *body, size_t body_len,
               char out[65]) {
  uint8_t digest[32], m[32];
  char dh[65];
  if (gnutls_hash_fast(GNUTLS_DIG_SHA256, body_len ? body : "", body_len, digest) != 0)
    return -1;
  hex(digest, sizeof(digest), dh);
  size_t len = strlen(method) + strlen(target) + strlen(actor) + 160;
  char *msg = malloc(len);
  if (msg == NULL) return -1;
  int w = snprintf(msg, len, "cascade-relay-forward v1\n%lld\n%d\n%s\n%s\n%s\n%s", ts, role,
                   actor, method, target, dh);
  int rv = w > 0 && (size_t)w < len &&
                   gnutls_hmac_fast(GNUTLS_MAC_SHA256, key, FWDSIG_KEY_LEN, msg, (size_t)w, m) == 0
               ? 0
               : -1;
  free(msg);
  if (rv == 0) hex(m, sizeof(m), out);
  return rv;
}

int fwdsig_make(const uint8_t key[FWDSIG_KEY_LEN], int64_t ts_ms, int role, const char *actor,
                const char *method, const char *target, const char *body, size_t body_len,
                char *out, size_t outlen) {
  char m[65];
  if (ts_ms < 0 || role < 1 || role > 9 || !valid_actor(actor)) return -1;
  if (mac(key, (long long)ts_ms, role, actor, method, target, body, body_len, m) != 0) return -1;
  int w = snprintf(out, outlen, "v1 %lld %d %s %s", (long long)ts_ms, role, actor, m);
  return w > 0 && (size_t)w < outlen ? 0 : -1;
}

int fwdsig_check(const uint8_t key[FWDSIG_KEY_LEN], const char *value, int64_t now_ms,
                 const char *method, const char *target, const char *body, size_t body_len,
                 int *role, char *actor, size_t actorlen) {
  char buf[FWDSIG_VALUE_MAX + 1], want[65];
  if (value == NULL || strnlen(value, FWDSIG_VALUE_MAX + 1) > FWDSIG_VALUE_MAX)
    return FWDSIG_MALFORMED;
  snprintf(buf, sizeof(buf), "%s", value);
  /* Exactly five fields separated by one space each. */
  char *f[5], *p = buf;
  for (int i = 0; i < 5; i++) {
    f[i] = p;
    char *sp = strchr(p, ' ');
    if (i < 4) {
      if (sp == NULL) return FWDSIG_MALFORMED;
      *sp = '\0';
      p = sp + 1;
    } else if (sp != NULL) {
      return FWDSIG_MALFORMED;
    }
    if (f[i][0] == '\0') return FWDSIG_MALFORMED;
  }
  if (strcmp(f[0], "v1") != 0) return FWDSIG_MALFORMED;
  size_t tl = strlen(f[1]);
  if (tl > 15 || strspn(f[1], "0123456789") != tl) return FWDSIG_MALFORMED;
  long long ts = strtoll(f[1], NULL, 10);
  if (strlen(f[2]) != 1 || f[2][0] < '1' || f[2][0] > '9') return FWDSIG_MALFORMED;
  int r = f[2][0] - '0';
  if (!valid_actor(f[3])) return FWDSIG_MALFORMED;
  if (strlen(f[4]) != 64 || strspn(f[4], hexd) != 64) return FWDSIG_MALFORMED;
  if (mac(key, ts, r, f[3], method, target, body, body_len, want) != 0) return FWDSIG_MALFORMED;
  if (gnutls_memcmp(want, f[4], 64) != 0) return FWDSIG_BAD_MAC;
  if (ts > now_ms + FWDSIG_SKEW_MS || ts < now_ms - FWDSIG_SKEW_MS) return FWDSIG_STALE;
  *role = r;
  snprintf(actor, actorlen, "%s", f[3]);
  return FWDSIG_OK;
}

int fwdsig_head(char *head, size_t len, int *status, fwdsig_hdr_t *h, size_t max, size_t *n) {
  *n = 0;
  if (len < 16 || memcmp(head + len - 4, "\r\n\r\n", 4) != 0) return -1;
  if (memchr(head, '\0', len) != NULL) return -1;
  if (memcmp(head, "HTTP/1.", 7) != 0 || (head[7] != '0' && head[7] != '1') || head[8] != ' ')
    return -1;
  if (head[9] < '1' || head[9] > '5' || head[10] < '0' || head[10] > '9' || head[11] < '0' ||
      head[11] > '9' || (head[12] != ' ' && head[12] != '\r'))
    return -1;
  *status = (head[9] - '0') * 100 + (head[10] - '0') * 10 + (head[11] - '0');
  char *end = head + len - 2; /* the final CRLF */
  char *line = memchr(head, '\n', len);
  if (line == NULL || line[-1] != '\r') return -1;
  line++;
  while (line < end) {
    char *eol = memchr(line, '\n', (size_t)(end - line) + 1);
    if (eol == NULL || eol == line || eol[-1] != '\r') return -1;
    eol[-1] = '\0';
    char *colon = strchr(line, ':');
    if (colon == NULL || colon == line) return -1;
    for (char *c = line; c < colon; c++)
      if (*c <= ' ' || *c >= 127) return -1;
    *colon = '\0';
    char *v = colon + 1;
    while (*v == ' ' || *v == '\t') v++;
    for (char *t = v + strlen(v); t > v && (t[-1] == ' ' || t[-1] == '\t'); t--) t[-1] = '\0';
    for (const char *c = v; *c; c++)
      if ((unsigned char)*c < ' ' && *c != '\t') return -1;
    if (*n >= max) return -1;
    h[*n].name = line;
    h[*n].value = v;
    (*n)++;
    line = eol + 1;
  }
  return 0;
}
