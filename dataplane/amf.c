/* AMF0: see amf.h. The decoder never trusts a count or length from the
 * input for an allocation: containers grow as members actually arrive, so
 * memory is bounded by the input size times a constant. */
#include "amf.h"

#include <stdlib.h>
#include <string.h>

const amf_limits_t amf_limits_default = {AMF_MAX_DEPTH, 65536, 16 * 1024 * 1024};

typedef struct {
  const uint8_t *p;
  size_t len, pos;
  unsigned depth, max_depth;
  size_t elements, max_elements;
} dec_t;

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t rd32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static double rd_double(const uint8_t *p) {
  uint64_t u = 0;
  for (int i = 0; i < 8; i++) u = u << 8 | p[i];
  double d;
  memcpy(&d, &u, sizeof(d));
  return d;
}

static amf_value_t *value_new(amf_type_t t) {
  amf_value_t *v = calloc(1, sizeof(*v));
  if (v) v->type = t;
  return v;
}

void amf_free(amf_value_t *v) {
  if (v == NULL) return;
  for (size_t i = 0; i < v->count; i++) {
    free(v->props[i].key);
    amf_free(v->props[i].val);
  }
  free(v->props);
  free(v->str);
  free(v);
}

static char *copy_bytes(const uint8_t *s, size_t n) {
  char *c = malloc(n + 1);
  if (c) {
    if (n) memcpy(c, s, n);
    c[n] = 0;
  }
  return c;
}

/* push_prop appends without copying |key| (already allocated or NULL). */
static int push_prop(amf_value_t *parent, char *key, size_t key_len, amf_value_t *val) {
  if (parent->count == parent->cap) {
    size_t ncap = parent->cap ? parent->cap * 2 : 4;
    amf_prop_t *np = realloc(parent->props, ncap * sizeof(*np));
    if (np == NULL) return AMF_ENOMEM;
    parent->props = np;
    parent->cap = ncap;
  }
  parent->props[parent->count].key = key;
  parent->props[parent->count].key_len = key_len;
  parent->props[parent->count].val = val;
  parent->count++;
  return 0;
}

static int dec_value(dec_t *d, amf_value_t **out);

static int need(const dec_t *d, size_t n) { return d->len - d->pos >= n ? 0 : AMF_ETRUNC; }

/* dec_members reads "key value" pairs up to the 00 00 09 end marker. */
static int dec_members(dec_t *d, amf_value_t *v) {
  for (;;) {
    if (need(d, 2)) return AMF_ETRUNC;
    size_t klen = rd16(d->p + d->pos);
    d->pos += 2;
    if (klen == 0) {
      if (need(d, 1)) return AMF_ETRUNC;
      if (d->p[d->pos] == AMF_OBJECT_END) {
        d->pos++;
        return 0;
      }
    }
    if (need(d, klen)) return AMF_ETRUNC;
    char *key = copy_bytes(d->p + d->pos, klen);
    if (key == NULL) return AMF_ENOMEM;
    d->pos += klen;
    amf_value_t *m = NULL;
    int rc = dec_value(d, &m);
    if (rc == 0) rc = push_prop(v, key, klen, m);
    if (rc) {
      free(key);
      amf_free(m);
      return rc;
    }
  }
}

static int dec_value(dec_t *d, amf_value_t **out) {
  *out = NULL;
  if (need(d, 1)) return AMF_ETRUNC;
  if (++d->elements > d->max_elements) return AMF_ECOUNT;
  uint8_t t = d->p[d->pos++];
  amf_value_t *v = NULL;
  int rc = 0;
  switch (t) {
  case AMF_NUMBER:
    if (need(d, 8)) return AMF_ETRUNC;
    if ((v = value_new(AMF_NUMBER)) == NULL) return AMF_ENOMEM;
    v->num = rd_double(d->p + d->pos);
    d->pos += 8;
    break;
  case AMF_BOOLEAN:
    if (need(d, 1)) return AMF_ETRUNC;
    if ((v = value_new(AMF_BOOLEAN)) == NULL) return AMF_ENOMEM;
    v->boolean = d->p[d->pos++] != 0;
    break;
  case AMF_STRING:
  case AMF_LONG_STRING: {
    size_t hl = t == AMF_STRING ? 2 : 4;
    if (need(d, hl)) return AMF_ETRUNC;
    size_t n = t == AMF_STRING ? rd16(d->p + d->pos) : rd32(d->p + d->pos);
    d->pos += hl;
    if (need(d, n)) return AMF_ETRUNC;
    if ((v = value_new((amf_type_t)t)) == NULL) return AMF_ENOMEM;
    if ((v->str = copy_bytes(d->p + d->pos, n)) == NULL) {
      free(v);
      return AMF_ENOMEM;
    }
    v->len = n;
    d->pos += n;
    break;
  }
  case AMF_NULL:
  case AMF_UNDEFINED:
    if ((v = value_new((amf_type_t)t)) == NULL) return AMF_ENOMEM;
    break;
  case AMF_DATE:
    if (need(d, 10)) return AMF_ETRUNC;
    if ((v = value_new(AMF_DATE)) == NULL) return AMF_ENOMEM;
    v->num = rd_double(d->p + d->pos);
    v->tz = (int16_t)rd16(d->p + d->pos + 8);
    d->pos += 10;
    break;
  case AMF_OBJECT:
  case AMF_ECMA_ARRAY:
  case AMF_STRICT_ARRAY: {
    if (d->depth >= d->max_depth) return AMF_EDEPTH;
    uint32_t n = 0;
    if (t != AMF_OBJECT) {
      if (need(d, 4)) return AMF_ETRUNC;
      n = rd32(d->p + d->pos);   /* ECMA: a hint only, never trusted */
      d->pos += 4;
    }
    if ((v = value_new((amf_type_t)t)) == NULL) return AMF_ENOMEM;
    d->depth++;
    if (t == AMF_STRICT_ARRAY) {
      /* Each item takes at least one byte: refuse counts the input cannot hold. */
      if (n > d->len - d->pos) rc = AMF_ETRUNC;
      for (uint32_t i = 0; rc == 0 && i < n; i++) {
        amf_value_t *m = NULL;
        rc = dec_value(d, &m);
        if (rc == 0 && (rc = push_prop(v, NULL, 0, m)) != 0) amf_free(m);
      }
    } else {
      rc = dec_members(d, v);
    }
    d->depth--;
    if (rc) {
      amf_free(v);
      return rc;
    }
    break;
  }
  default:
    /* OBJECT_END out of place, movie clip, reference, XML, typed object,
     * AVM+ switch: nothing an RTMP peer needs to send us. */
    return AMF_ETYPE;
  }
  *out = v;
  return 0;
}

static void dec_init(dec_t *d, const uint8_t *buf, size_t len, const amf_limits_t *lim) {
  if (lim == NULL) lim = &amf_limits_default;
  memset(d, 0, sizeof(*d));
  d->p = buf;
  d->len = len;
  d->max_depth = lim->depth < AMF_MAX_DEPTH ? lim->depth : AMF_MAX_DEPTH;
  d->max_elements = lim->elements;
}

static int over_size(size_t len, const amf_limits_t *lim) {
  if (lim == NULL) lim = &amf_limits_default;
  return len > lim->bytes;
}

int amf_decode(const uint8_t *buf, size_t len, const amf_limits_t *lim, amf_value_t **out,
               size_t *used) {
  *out = NULL;
  if (used) *used = 0;
  dec_t d;
  dec_init(&d, buf, len, lim);
  /* Only the bytes actually read count against the size limit. */
  if (over_size(len, lim)) d.len = (lim ? lim : &amf_limits_default)->bytes;
  int rc = dec_value(&d, out);
  if (rc == AMF_ETRUNC && d.len < len) rc = AMF_ESIZE;
  if (rc == 0 && used) *used = d.pos;
  return rc;
}

int amf_decode_list(const uint8_t *buf, size_t len, const amf_limits_t *lim, amf_value_t **out) {
  *out = NULL;
  if (over_size(len, lim)) return AMF_ESIZE;
  dec_t d;
  dec_init(&d, buf, len, lim);
  amf_value_t *list = value_new(AMF_STRICT_ARRAY);
  if (list == NULL) return AMF_ENOMEM;
  while (d.pos < d.len) {
    amf_value_t *v = NULL;
    int rc = dec_value(&d, &v);
    if (rc == 0 && (rc = push_prop(list, NULL, 0, v)) != 0) amf_free(v);
    if (rc) {
      amf_free(list);
      return rc;
    }
  }
  *out = list;
  return 0;
}

/* --- trees --- */

amf_value_t *amf_new_number(double n) {
  amf_value_t *v = value_new(AMF_NUMBER);
  if (v) v->num = n;
  return v;
}

amf_value_t *amf_new_bool(int b) {
  amf_value_t *v = value_new(AMF_BOOLEAN);
  if (v) v->boolean = b != 0;
  return v;
}

amf_value_t *amf_new_string(const char *s, size_t len) {
  amf_value_t *v = value_new(len > 0xffff ? AMF_LONG_STRING : AMF_STRING);
  if (v == NULL) return NULL;
  if ((v->str = copy_bytes((const uint8_t *)s, len)) == NULL) {
    free(v);
    return NULL;
  }
  v->len = len;
  return v;
}

amf_value_t *amf_new_null(void) { return value_new(AMF_NULL); }
amf_value_t *amf_new_object(void) { return value_new(AMF_OBJECT); }

int amf_add(amf_value_t *parent, const char *key, amf_value_t *val) {
  if (val == NULL) return AMF_ENOMEM;
  char *k = NULL;
  size_t klen = 0;
  if (key) {
    klen = strlen(key);
    if ((k = copy_bytes((const uint8_t *)key, klen)) == NULL) {
      amf_free(val);
      return AMF_ENOMEM;
    }
  }
  int rc = push_prop(parent, k, klen, val);
  if (rc) {
    free(k);
    amf_free(val);
  }
  return rc;
}

const amf_value_t *amf_get(const amf_value_t *obj, const char *key) {
  if (obj == NULL || (obj->type != AMF_OBJECT && obj->type != AMF_ECMA_ARRAY)) return NULL;
  size_t klen = strlen(key);
  for (size_t i = 0; i < obj->count; i++)
    if (obj->props[i].key_len == klen && memcmp(obj->props[i].key, key, klen) == 0)
      return obj->props[i].val;
  return NULL;
}

const amf_value_t *amf_at(const amf_value_t *list, size_t i) {
  if (list == NULL || list->type != AMF_STRICT_ARRAY || i >= list->count) return NULL;
  return list->props[i].val;
}

const char *amf_str(const amf_value_t *v) {
  if (v == NULL || (v->type != AMF_STRING && v->type != AMF_LONG_STRING)) return NULL;
  return v->str;
}

int amf_num(const amf_value_t *v, double *out) {
  if (v == NULL || v->type != AMF_NUMBER) return -1;
  *out = v->num;
  return 0;
}

/* --- writing --- */

void amf_buf_init(amf_buf_t *b) { memset(b, 0, sizeof(*b)); }

void amf_buf_free(amf_buf_t *b) {
  free(b->data);
  memset(b, 0, sizeof(*b));
}

static void put(amf_buf_t *b, const void *p, size_t n) {
  if (b->err) return;
  size_t max = b->max ? b->max : 16 * 1024 * 1024;
  if (n > max - b->len) {
    b->err = AMF_ESIZE;
    return;
  }
  if (b->len + n > b->cap) {
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap < b->len + n) ncap *= 2;
    uint8_t *nd = realloc(b->data, ncap);
    if (nd == NULL) {
      b->err = AMF_ENOMEM;
      return;
    }
    b->data = nd;
    b->cap = ncap;
  }
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
}

void amf_put_raw(amf_buf_t *b, const void *p, size_t n) { put(b, p, n); }

static void put8(amf_buf_t *b, uint8_t v) { put(b, &v, 1); }

static void put16(amf_buf_t *b, uint16_t v) {
  uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
  put(b, x, 2);
}

static void put32(amf_buf_t *b, uint32_t v) {
  uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
  put(b, x, 4);
}

static void put_double(amf_buf_t *b, double d) {
  uint64_t u;
  memcpy(&u, &d, sizeof(u));
  uint8_t x[8];
  for (int i = 7; i >= 0; i--) {
    x[i] = (uint8_t)u;
    u >>= 8;
  }
  put(b, x, 8);
}

void amf_put_number(amf_buf_t *b, double n) {
  put8(b, AMF_NUMBER);
  put_double(b, n);
}

void amf_put_bool(amf_buf_t *b, int v) {
  put8(b, AMF_BOOLEAN);
  put8(b, v ? 1 : 0);
}

void amf_put_string_len(amf_buf_t *b, const char *s, size_t len) {
  if (len > 0xffff) {
    if (len > UINT32_MAX) {
      b->err = AMF_ESIZE;
      return;
    }
    put8(b, AMF_LONG_STRING);
    put32(b, (uint32_t)len);
  } else {
    put8(b, AMF_STRING);
    put16(b, (uint16_t)len);
  }
  put(b, s, len);
}

void amf_put_string(amf_buf_t *b, const char *s) { amf_put_string_len(b, s, strlen(s)); }
void amf_put_null(amf_buf_t *b) { put8(b, AMF_NULL); }
void amf_put_undefined(amf_buf_t *b) { put8(b, AMF_UNDEFINED); }
void amf_put_object_start(amf_buf_t *b) { put8(b, AMF_OBJECT); }

void amf_put_ecma_start(amf_buf_t *b, uint32_t count) {
  put8(b, AMF_ECMA_ARRAY);
  put32(b, count);
}

static void put_key_len(amf_buf_t *b, const char *key, size_t len) {
  if (len > 0xffff) {
    b->err = AMF_ESIZE;
    return;
  }
  put16(b, (uint16_t)len);
  put(b, key, len);
}

void amf_put_key(amf_buf_t *b, const char *key) { put_key_len(b, key, strlen(key)); }

void amf_put_object_end(amf_buf_t *b) {
  static const uint8_t end[3] = {0, 0, AMF_OBJECT_END};
  put(b, end, 3);
}

void amf_put_prop_number(amf_buf_t *b, const char *key, double n) {
  amf_put_key(b, key);
  amf_put_number(b, n);
}

void amf_put_prop_bool(amf_buf_t *b, const char *key, int v) {
  amf_put_key(b, key);
  amf_put_bool(b, v);
}

void amf_put_prop_string(amf_buf_t *b, const char *key, const char *s) {
  amf_put_key(b, key);
  amf_put_string(b, s);
}

static int encode(amf_buf_t *b, const amf_value_t *v, unsigned depth) {
  if (depth > AMF_MAX_DEPTH) return AMF_EDEPTH;
  switch (v->type) {
  case AMF_NUMBER: amf_put_number(b, v->num); break;
  case AMF_BOOLEAN: amf_put_bool(b, v->boolean); break;
  case AMF_STRING:
  case AMF_LONG_STRING:
    /* Keep the marker the value came with so decode/encode round-trips. */
    if (v->type == AMF_LONG_STRING) {
      if (v->len > UINT32_MAX) return AMF_ESIZE;
      put8(b, AMF_LONG_STRING);
      put32(b, (uint32_t)v->len);
    } else {
      if (v->len > 0xffff) return AMF_ESIZE;
      put8(b, AMF_STRING);
      put16(b, (uint16_t)v->len);
    }
    put(b, v->str, v->len);
    break;
  case AMF_NULL:
  case AMF_UNDEFINED: put8(b, (uint8_t)v->type); break;
  case AMF_DATE:
    put8(b, AMF_DATE);
    put_double(b, v->num);
    put16(b, (uint16_t)v->tz);
    break;
  case AMF_OBJECT:
  case AMF_ECMA_ARRAY:
    if (v->type == AMF_OBJECT)
      amf_put_object_start(b);
    else
      amf_put_ecma_start(b, (uint32_t)v->count);
    for (size_t i = 0; i < v->count; i++) {
      const amf_prop_t *p = &v->props[i];
      put_key_len(b, p->key ? p->key : "", p->key ? p->key_len : 0);
      int rc = encode(b, p->val, depth + 1);
      if (rc) return rc;
    }
    amf_put_object_end(b);
    break;
  case AMF_STRICT_ARRAY:
    put8(b, AMF_STRICT_ARRAY);
    put32(b, (uint32_t)v->count);
    for (size_t i = 0; i < v->count; i++) {
      int rc = encode(b, v->props[i].val, depth + 1);
      if (rc) return rc;
    }
    break;
  default: return AMF_ETYPE;
  }
  return b->err;
}

int amf_encode(amf_buf_t *b, const amf_value_t *v, int as_list) {
  if (as_list && v->type == AMF_STRICT_ARRAY) {
    for (size_t i = 0; i < v->count; i++) {
      int rc = encode(b, v->props[i].val, 0);
      if (rc) return rc;
    }
    return b->err;
  }
  return encode(b, v, 0);
}
