/* Base64: see b64.h. The decoder is strict so that every byte string has
 * exactly one accepted encoding: stored verifiers then compare and
 * round-trip byte for byte, and a fuzzer can check decode/encode identity. */
#include "b64.h"

#include <limits.h>
#include <stdint.h>

static const char b64_std[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64_url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Largest input whose padded encoding plus NUL still fits a size_t and is
 * representable in the long the encoders return. */
static size_t b64_max_input(void) {
  size_t lim = (size_t)LONG_MAX < SIZE_MAX ? (size_t)LONG_MAX : SIZE_MAX;
  return (lim - 1) / 4 * 3;
}

size_t b64_encoded_len(size_t n) {
  return (n / 3 + (n % 3 != 0)) * 4;
}

/* Encodes with |alpha|; |pad| selects '=' padding of the last quantum. */
static long b64_encode_with(const uint8_t *in, size_t n, char *out,
                            size_t outlen, const char *alpha, int pad) {
  if (n > b64_max_input() || (n > 0 && in == NULL) || out == NULL)
    return -1;
  size_t rem = n % 3;
  size_t need = n / 3 * 4;
  if (rem != 0) need += pad ? 4 : rem + 1;
  if (outlen < need + 1) return -1;

  size_t o = 0, i = 0;
  for (; i + 3 <= n; i += 3) {
    uint32_t w = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    out[o++] = alpha[w >> 18 & 63];
    out[o++] = alpha[w >> 12 & 63];
    out[o++] = alpha[w >> 6 & 63];
    out[o++] = alpha[w & 63];
  }
  if (rem != 0) {
    uint32_t w = (uint32_t)in[i] << 16;
    if (rem == 2) w |= (uint32_t)in[i + 1] << 8;
    out[o++] = alpha[w >> 18 & 63];
    out[o++] = alpha[w >> 12 & 63];
    if (rem == 2)
      out[o++] = alpha[w >> 6 & 63];
    else if (pad)
      out[o++] = '=';
    if (pad) out[o++] = '=';
  }
  out[o] = '\0';
  return (long)o;
}

long b64_encode(const uint8_t *in, size_t n, char *out, size_t outlen) {
  return b64_encode_with(in, n, out, outlen, b64_std, 1);
}

long b64url_encode(const uint8_t *in, size_t n, char *out, size_t outlen) {
  return b64_encode_with(in, n, out, outlen, b64_url, 0);
}

/* Value of a standard-alphabet character, or -1 (including for '=', which
 * the caller handles only where padding is allowed). */
static int b64_val(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

long b64_decode(const char *in, size_t n, uint8_t *out, size_t outlen) {
  if (n % 4 != 0 || (n > 0 && in == NULL) || n / 4 * 3 > (size_t)LONG_MAX)
    return -1;
  if (n == 0) return 0;

  /* Padding may only be the last one or two characters of the input. */
  size_t npad = 0;
  if (in[n - 1] == '=') npad = (in[n - 2] == '=') ? 2 : 1;
  size_t need = n / 4 * 3 - npad;
  if (outlen < need || out == NULL) return -1;

  size_t o = 0;
  for (size_t i = 0; i < n; i += 4) {
    int last = (i + 4 == n);
    int nchars = last ? 4 - (int)npad : 4;
    uint32_t w = 0;
    for (int k = 0; k < 4; k++) {
      int v = 0;
      if (k < nchars) {
        v = b64_val(in[i + (size_t)k]);
        if (v < 0) return -1;
      }
      w = w << 6 | (uint32_t)v;
    }
    /* Bits below the last whole byte must be zero, or two encodings would
     * decode to the same bytes. */
    if (npad == 1 && last && (w & 0xff) != 0) return -1;
    if (npad == 2 && last && (w & 0xffff) != 0) return -1;
    out[o++] = (uint8_t)(w >> 16);
    if (nchars >= 3) out[o++] = (uint8_t)(w >> 8);
    if (nchars == 4) out[o++] = (uint8_t)w;
  }
  return (long)o;
}

/* Value of a URL-safe character, or -1. */
static int b64url_val(char c) {
  if (c == '-') return 62;
  if (c == '_') return 63;
  if (c == '+' || c == '/') return -1;
  return b64_val(c);
}

long b64url_decode(const char *in, size_t n, uint8_t *out, size_t outlen) {
  if ((n > 0 && in == NULL) || n % 4 == 1 || n / 4 * 3 + 2 > (size_t)LONG_MAX) return -1;
  size_t need = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
  if (outlen < need || (need > 0 && out == NULL)) return -1;
  size_t o = 0;
  for (size_t i = 0; i < n; i += 4) {
    size_t nchars = n - i < 4 ? n - i : 4;
    uint32_t w = 0;
    for (size_t k = 0; k < 4; k++) {
      int v = 0;
      if (k < nchars) {
        v = b64url_val(in[i + k]);
        if (v < 0) return -1;
      }
      w = w << 6 | (uint32_t)v;
    }
    /* Unused low bits must be zero: one encoding per byte string. */
    if (nchars == 2 && (w & 0xffff) != 0) return -1;
    if (nchars == 3 && (w & 0xff) != 0) return -1;
    out[o++] = (uint8_t)(w >> 16);
    if (nchars >= 3) out[o++] = (uint8_t)(w >> 8);
    if (nchars == 4) out[o++] = (uint8_t)w;
  }
  return (long)o;
}
