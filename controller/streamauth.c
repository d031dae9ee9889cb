/* Stream authorization on the controller: see streamauth.h. */
#include "streamauth.h"

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pattern.h"

static const char *const modes[] = {"none", "token", "hook", NULL};
static const char *const hook_keys[] = {"on_publish", "on_play", "on_stop", "on_unpublish", NULL};

/* text_ok: at most |max| bytes, no control character. */
static int text_ok(const char *s, size_t n, size_t max) {
  if (n > max || strlen(s) != n) return 0;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return 0;
  return 1;
}

static int mode_ok(const json_t *v) {
  if (!json_is_string(v)) return 0;
  for (int i = 0; modes[i]; i++)
    if (strcmp(json_string_value(v), modes[i]) == 0) return 1;
  return 0;
}

int sa_rules_check(const json_t *v, char **out, char *err, size_t errlen) {
  *out = NULL;
  if (!json_is_array(v)) {
    snprintf(err, errlen, "expected a list of {pattern, publish, play}");
    return -1;
  }
  if (json_array_size(v) > SA_RULES_MAX) {
    snprintf(err, errlen, "%zu rules: at most %d", json_array_size(v), SA_RULES_MAX);
    return -1;
  }
  json_t *canon = json_array();
  if (canon == NULL) goto oom;
  for (size_t i = 0; i < json_array_size(v); i++) {
    json_t *e = json_array_get(v, i), *p = json_object_get(e, "pattern");
    const char *k;
    json_t *x;
    if (!json_is_object(e)) {
      snprintf(err, errlen, "rule %zu: expected an object", i + 1);
      goto fail;
    }
    json_object_foreach(e, k, x) {
      (void)x;
      if (strcmp(k, "pattern") != 0 && strcmp(k, "publish") != 0 && strcmp(k, "play") != 0) {
        snprintf(err, errlen, "rule %zu: unknown field (pattern, publish, play)", i + 1);
        goto fail;
      }
    }
    if (!json_is_string(p) || json_string_length(p) == 0 ||
        !text_ok(json_string_value(p), json_string_length(p), SA_PATTERN_MAX)) {
      snprintf(err, errlen, "rule %zu: pattern must be 1..%d bytes without control characters",
               i + 1, SA_PATTERN_MAX);
      goto fail;
    }
    char perr[160];
    pcre2_code *re = pattern_compile(json_string_value(p), perr, sizeof(perr));
    if (re == NULL) {
      snprintf(err, errlen, "rule %zu: bad pattern: %s", i + 1, perr);
      goto fail;
    }
    pcre2_code_free(re);
    json_t *pub = json_object_get(e, "publish"), *play = json_object_get(e, "play");
    if (!mode_ok(pub) || !mode_ok(play)) {
      snprintf(err, errlen, "rule %zu: publish and play must each be none, token or hook", i + 1);
      goto fail;
    }
    if (json_array_append_new(canon, json_pack("{s:O,s:O,s:O}", "pattern", p, "publish", pub,
                                               "play", play)) != 0)
      goto oom;
  }
  *out = json_dumps(canon, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(canon);
  if (*out == NULL) goto oom_nocanon;
  return 0;
oom:
  json_decref(canon);
oom_nocanon:
  snprintf(err, errlen, "out of memory");
  return -1;
fail:
  json_decref(canon);
  return -1;
}

/* url_ok: "" or http(s)://something, no space or control character. */
static int url_ok(const char *u, size_t n) {
  if (n == 0) return 1;
  if (!text_ok(u, n, SA_URL_MAX) || strchr(u, ' ')) return 0;
  size_t pre = strncmp(u, "http://", 7) == 0 ? 7 : strncmp(u, "https://", 8) == 0 ? 8 : 0;
  return pre && n > pre && u[pre] != '/';
}

int sa_hooks_check(const json_t *v, const json_t *base, char **out, char *err, size_t errlen) {
  *out = NULL;
  if (!json_is_object(v)) {
    snprintf(err, errlen, "hooks: expected an object");
    return -1;
  }
  json_t *h = json_pack("{s:s,s:s,s:s,s:s,s:i,s:i,s:b}", "on_publish", "", "on_play", "",
                        "on_stop", "", "on_unpublish", "", "timeout_ms", 2000, "cache_ms", 0,
                        "fail_open", 0);
  if (h == NULL) goto oom;
  const char *k;
  json_t *x;
  if (json_is_object(base)) json_object_foreach((json_t *)base, k, x) {
      if (json_object_get(h, k)) json_object_set(h, k, x);
    }
  json_object_foreach((json_t *)v, k, x) {
    int is_url = 0;
    for (int i = 0; hook_keys[i]; i++) is_url |= strcmp(k, hook_keys[i]) == 0;
    if (is_url) {
      if (!json_is_string(x) || !url_ok(json_string_value(x), json_string_length(x))) {
        snprintf(err, errlen, "hooks.%s: must be \"\" or an http:// or https:// URL of at most "
                 "%d bytes", k, SA_URL_MAX);
        goto fail;
      }
    } else if (strcmp(k, "timeout_ms") == 0) {
      if (!json_is_integer(x) || json_integer_value(x) < 1 ||
          json_integer_value(x) > SA_TIMEOUT_MAX) {
        snprintf(err, errlen, "hooks.timeout_ms: 1..%d", SA_TIMEOUT_MAX);
        goto fail;
      }
    } else if (strcmp(k, "cache_ms") == 0) {
      if (!json_is_integer(x) || json_integer_value(x) < 0 ||
          json_integer_value(x) > SA_CACHE_MAX) {
        snprintf(err, errlen, "hooks.cache_ms: 0..%d", SA_CACHE_MAX);
        goto fail;
      }
    } else if (strcmp(k, "fail_open") == 0) {
      if (!json_is_boolean(x)) {
        snprintf(err, errlen, "hooks.fail_open: true or false");
        goto fail;
      }
    } else {
      snprintf(err, errlen, "hooks: unknown field (on_publish, on_play, on_stop, on_unpublish, "
               "timeout_ms, cache_ms, fail_open)");
      goto fail;
    }
    json_object_set(h, k, x);
  }
  *out = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(h);
  if (*out == NULL) goto oom;
  return 0;
oom:
  snprintf(err, errlen, "out of memory");
  return -1;
fail:
  json_decref(h);
  return -1;
}

static json_t *load_object(const char *body, size_t len, char *err, size_t errlen) {
  json_error_t je;
  if (len > 64 * 1024) {
    snprintf(err, errlen, "body over 65536 bytes");
    return NULL;
  }
  json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
  if (j == NULL) {
    snprintf(err, errlen, "invalid JSON: %s", je.text);
    return NULL;
  }
  if (!json_is_object(j)) {
    json_decref(j);
    snprintf(err, errlen, "expected a JSON object");
    return NULL;
  }
  return j;
}

int sa_update_body(const char *body, size_t len, sa_update_t *out, char *err, size_t errlen) {
  memset(out, 0, sizeof(*out));
  json_t *j = load_object(body, len, err, errlen);
  if (j == NULL) return -1;
  const char *k;
  json_t *x;
  json_object_foreach(j, k, x) {
    (void)x;
    if (strcmp(k, "policy") != 0 && strcmp(k, "hooks") != 0) {
      snprintf(err, errlen, "unknown field '%.64s' (policy, hooks)", k);
      goto fail;
    }
  }
  json_t *p = json_object_get(j, "policy"), *h = json_object_get(j, "hooks");
  if (p == NULL && h == NULL) {
    snprintf(err, errlen, "nothing to change: give policy, hooks or both");
    goto fail;
  }
  if (p) {
    char e2[256];
    if (sa_rules_check(p, &out->policy, e2, sizeof(e2)) != 0) {
      snprintf(err, errlen, "policy: %s", e2);
      goto fail;
    }
  }
  if (h) {
    char *tmp = NULL;
    if (sa_hooks_check(h, NULL, &tmp, err, errlen) != 0) goto fail;
    free(tmp);
    out->hooks = json_incref(h);
  }
  json_decref(j);
  return 0;
fail:
  json_decref(j);
  sa_update_free(out);
  return -1;
}

void sa_update_free(sa_update_t *u) {
  free(u->policy);
  json_decref(u->hooks);
  memset(u, 0, sizeof(*u));
}

int sa_token_body(const char *body, size_t len, sa_token_req_t *out, char *err, size_t errlen) {
  memset(out, 0, sizeof(*out));
  json_t *j = load_object(body, len, err, errlen);
  if (j == NULL) return -1;
  const char *k;
  json_t *x;
  json_object_foreach(j, k, x) {
    (void)x;
    if (strcmp(k, "path") && strcmp(k, "action") && strcmp(k, "ttl") && strcmp(k, "addr")) {
      snprintf(err, errlen, "unknown field '%.64s' (path, action, ttl, addr)", k);
      goto fail;
    }
  }
  json_t *p = json_object_get(j, "path"), *a = json_object_get(j, "action"),
         *t = json_object_get(j, "ttl"), *ad = json_object_get(j, "addr");
  const char *ps = json_string_value(p);
  size_t pl = json_string_length(p);
  if (!json_is_string(p) || pl == 0 || !text_ok(ps, pl, SA_PATTERN_MAX) || ps[0] == '/' ||
      strpbrk(ps, "? ") || strchr(ps, '/') == NULL) {
    snprintf(err, errlen, "path: app/name, 1..%d bytes, no '?', space or leading '/'",
             SA_PATTERN_MAX);
    goto fail;
  }
  memcpy(out->path, ps, pl + 1);
  const char *as = json_string_value(a);
  if (as && strcmp(as, "publish") == 0) out->action = STREAMTOKEN_PUBLISH;
  else if (as && strcmp(as, "play") == 0) out->action = STREAMTOKEN_PLAY;
  else {
    snprintf(err, errlen, "action: publish or play");
    goto fail;
  }
  out->ttl = SA_TTL_DEFAULT;
  if (t) {
    if (!json_is_integer(t) || json_integer_value(t) < SA_TTL_MIN ||
        json_integer_value(t) > SA_TTL_MAX) {
      snprintf(err, errlen, "ttl: %d..%d seconds", SA_TTL_MIN, SA_TTL_MAX);
      goto fail;
    }
    out->ttl = (long)json_integer_value(t);
  }
  if (ad && !json_is_null(ad)) {
    if (!json_is_string(ad) ||
        streamtoken_addr_canon(json_string_value(ad), out->addr, sizeof(out->addr)) != 0) {
      snprintf(err, errlen, "addr: an IPv4 or IPv6 address");
      goto fail;
    }
  }
  json_decref(j);
  return 0;
fail:
  json_decref(j);
  return -1;
}

int sa_kek(const char *ca_key_pem, uint8_t kek[32]) {
  /* HKDF-SHA-256 with one block: extract with a fixed salt, expand with
   * the label (RFC 5869; the output is exactly one hash long). */
  static const char salt[] = "cascade stream keys";
  static const uint8_t info[] = "cascade stream key sealing v1\x01";
  uint8_t prk[32];
  if (ca_key_pem == NULL || ca_key_pem[0] == '\0') return -1;
  if (gnutls_hmac_fast(GNUTLS_MAC_SHA256, salt, sizeof(salt) - 1, ca_key_pem, strlen(ca_key_pem),
                       prk) != 0)
    return -1;
  int rc = gnutls_hmac_fast(GNUTLS_MAC_SHA256, prk, sizeof(prk), info, sizeof(info) - 1, kek);
  gnutls_memset(prk, 0, sizeof(prk));
  return rc == 0 ? 0 : -1;
}

static const char aad[] = "cascade stream key";

int sa_seal(const uint8_t kek[32], const uint8_t key[STREAMTOKEN_KEY_LEN],
            uint8_t out[SA_SEALED_LEN]) {
  gnutls_aead_cipher_hd_t h;
  gnutls_datum_t k = {(unsigned char *)kek, 32};
  if (gnutls_rnd(GNUTLS_RND_NONCE, out, 12) != 0) return -1;
  if (gnutls_aead_cipher_init(&h, GNUTLS_CIPHER_AES_256_GCM, &k) != 0) return -1;
  size_t olen = SA_SEALED_LEN - 12;
  int rc = gnutls_aead_cipher_encrypt(h, out, 12, aad, sizeof(aad) - 1, 16, key,
                                      STREAMTOKEN_KEY_LEN, out + 12, &olen);
  gnutls_aead_cipher_deinit(h);
  return rc == 0 && olen == SA_SEALED_LEN - 12 ? 0 : -1;
}

int sa_unseal(const uint8_t kek[32], const uint8_t *in, size_t n,
              uint8_t key[STREAMTOKEN_KEY_LEN]) {
  gnutls_aead_cipher_hd_t h;
  gnutls_datum_t k = {(unsigned char *)kek, 32};
  if (n != SA_SEALED_LEN) return -1;
  if (gnutls_aead_cipher_init(&h, GNUTLS_CIPHER_AES_256_GCM, &k) != 0) return -1;
  size_t olen = STREAMTOKEN_KEY_LEN;
  int rc = gnutls_aead_cipher_decrypt(h, in, 12, aad, sizeof(aad) - 1, 16, in + 12, n - 12, key,
                                      &olen);
  gnutls_aead_cipher_deinit(h);
  return rc == 0 && olen == STREAMTOKEN_KEY_LEN ? 0 : -1;
}

static int hexv(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

long sa_hex_decode(const char *s, uint8_t *out, size_t max) {
  if (s == NULL || s[0] != '\\' || s[1] != 'x') return -1;
  s += 2;
  size_t n = strlen(s);
  if (n % 2 || n / 2 > max) return -1;
  for (size_t i = 0; i < n / 2; i++) {
    int a = hexv(s[2 * i]), b = hexv(s[2 * i + 1]);
    if (a < 0 || b < 0) return -1;
    out[i] = (uint8_t)(a << 4 | b);
  }
  return (long)(n / 2);
}
