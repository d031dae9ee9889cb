/* QUIC stream headers: see streamhdr.h. */
#include "streamhdr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream.pb-c.h"

static int text_ok(const char *s, size_t max) {
  size_t n = 0;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++, n++)
    if (n >= max || *p < 0x20 || *p == 0x7f) return 0;
  return 1;
}

/* frame_len reads the 2-byte length: > 0 ok, 0 need more, -1 bad. */
static long frame_len(const uint8_t *buf, size_t len, char *err, size_t errlen) {
  if (len < 2) return 0;
  size_t n = (size_t)buf[0] << 8 | buf[1];
  if (n == 0 || n > STREAMHDR_MAX) {
    snprintf(err, errlen, "header length %zu outside 1..%d", n, STREAMHDR_MAX);
    return -1;
  }
  return len < 2 + n ? 0 : (long)n;
}

void streamhdr_free(streamhdr_t *h) {
  for (size_t i = 0; i < h->noptions; i++) {
    free(h->option_keys[i]);
    free(h->option_values[i]);
  }
  memset(h, 0, sizeof(*h));
}

long streamhdr_parse(const uint8_t *buf, size_t len, streamhdr_t *out, char *err, size_t errlen) {
  memset(out, 0, sizeof(*out));
  long n = frame_len(buf, len, err, errlen);
  if (n <= 0) return n;
  Cascade__Stream__Header *h = cascade__stream__header__unpack(NULL, (size_t)n, buf + 2);
  if (h == NULL) {
    snprintf(err, errlen, "header does not decode");
    return -1;
  }
  long rv = -1;
  if (h->version != STREAMHDR_VERSION) {
    snprintf(err, errlen, "header version %u, expected %d", h->version, STREAMHDR_VERSION);
  } else if ((int)h->kind < STREAM_ECHO || (int)h->kind > STREAM_HTTP) {
    snprintf(err, errlen, "unknown stream kind %d", (int)h->kind);
  } else if (!text_ok(h->path, STREAMHDR_PATH_MAX)) {
    snprintf(err, errlen, "path over %d bytes or with control characters", STREAMHDR_PATH_MAX);
  } else if (h->n_options > STREAMHDR_OPTIONS_MAX) {
    snprintf(err, errlen, "more than %d options", STREAMHDR_OPTIONS_MAX);
  } else {
    out->kind = (stream_kind_t)h->kind;
    snprintf(out->path, sizeof(out->path), "%s", h->path);
    rv = 2 + n;
    for (size_t i = 0; i < h->n_options; i++) {
      const char *k = h->options[i]->key, *v = h->options[i]->value;
      if (!text_ok(k, 64) || !text_ok(v, 256)) {
        snprintf(err, errlen, "option over its bounds or with control characters");
        rv = -1;
        break;
      }
      out->option_keys[i] = strdup(k);
      out->option_values[i] = strdup(v);
      out->noptions = i + 1;
      if (!out->option_keys[i] || !out->option_values[i]) {
        snprintf(err, errlen, "out of memory");
        rv = -1;
        break;
      }
    }
    if (rv < 0) streamhdr_free(out);
  }
  cascade__stream__header__free_unpacked(h, NULL);
  return rv;
}

static long frame(size_t packed, uint8_t *out, size_t outlen) {
  if (packed == 0 || packed > STREAMHDR_MAX || outlen < 2 + packed) return -1;
  out[0] = (uint8_t)(packed >> 8);
  out[1] = (uint8_t)packed;
  return (long)(2 + packed);
}

long streamhdr_encode_opts(stream_kind_t kind, const char *path, size_t nopts,
                           const char *const *keys, const char *const *values, uint8_t *out,
                           size_t outlen) {
  Cascade__Stream__Header h = CASCADE__STREAM__HEADER__INIT;
  Cascade__Stream__Header__OptionsEntry ent[STREAMHDR_OPTIONS_MAX];
  Cascade__Stream__Header__OptionsEntry *ptr[STREAMHDR_OPTIONS_MAX];
  if (path == NULL || !text_ok(path, STREAMHDR_PATH_MAX) || nopts > STREAMHDR_OPTIONS_MAX)
    return -1;
  for (size_t i = 0; i < nopts; i++) {
    Cascade__Stream__Header__OptionsEntry init = CASCADE__STREAM__HEADER__OPTIONS_ENTRY__INIT;
    if (!keys[i] || !values[i] || !text_ok(keys[i], 64) || !text_ok(values[i], 256)) return -1;
    ent[i] = init;
    ent[i].key = (char *)keys[i];
    ent[i].value = (char *)values[i];
    ptr[i] = &ent[i];
  }
  h.version = STREAMHDR_VERSION;
  h.kind = (Cascade__Stream__Kind)kind;
  h.path = (char *)path;
  h.n_options = nopts;
  h.options = nopts ? ptr : NULL;
  size_t n = cascade__stream__header__get_packed_size(&h);
  if (frame(n, out, outlen) < 0) return -1;
  cascade__stream__header__pack(&h, out + 2);
  return (long)(2 + n);
}

long streamhdr_encode(stream_kind_t kind, const char *path, uint8_t *out, size_t outlen) {
  return streamhdr_encode_opts(kind, path, 0, NULL, NULL, out, outlen);
}

long streamhdr_answer_encode(int accepted, uint32_t code, const char *reason, uint8_t *out,
                             size_t outlen) {
  Cascade__Stream__Answer a = CASCADE__STREAM__ANSWER__INIT;
  a.accepted = accepted != 0;
  a.code = code;
  a.reason = (char *)(reason ? reason : "");
  /* A refusal carries a code: an all-default answer would pack to nothing. */
  if (!accepted && code == 0) return -1;
  size_t n = cascade__stream__answer__get_packed_size(&a);
  if (frame(n, out, outlen) < 0) return -1;
  cascade__stream__answer__pack(&a, out + 2);
  return (long)(2 + n);
}

long streamhdr_answer_parse(const uint8_t *buf, size_t len, int *accepted, uint32_t *code,
                            char *reason, size_t reasonlen, char *err, size_t errlen) {
  long n = frame_len(buf, len, err, errlen);
  if (n <= 0) return n;
  Cascade__Stream__Answer *a = cascade__stream__answer__unpack(NULL, (size_t)n, buf + 2);
  if (a == NULL) {
    snprintf(err, errlen, "answer does not decode");
    return -1;
  }
  long rv = 2 + n;
  if (!text_ok(a->reason, 1024)) {
    snprintf(err, errlen, "reason over 1024 bytes or with control characters");
    rv = -1;
  } else {
    *accepted = a->accepted;
    *code = a->code;
    snprintf(reason, reasonlen, "%s", a->reason);
  }
  cascade__stream__answer__free_unpacked(a, NULL);
  return rv;
}
