/* AMF0 (Action Message Format, the encoding of RTMP commands and FLV
 * script data): a bounded decoder into a small value tree, an encoder of
 * that tree, and writer helpers for building command replies. */
#ifndef CASCADE_AMF_H
#define CASCADE_AMF_H

#include <stddef.h>
#include <stdint.h>

/* AMF0 type markers. */
typedef enum {
  AMF_NUMBER = 0x00,
  AMF_BOOLEAN = 0x01,
  AMF_STRING = 0x02,
  AMF_OBJECT = 0x03,
  AMF_NULL = 0x05,
  AMF_UNDEFINED = 0x06,
  AMF_ECMA_ARRAY = 0x08,
  AMF_OBJECT_END = 0x09,
  AMF_STRICT_ARRAY = 0x0a,
  AMF_DATE = 0x0b,
  AMF_LONG_STRING = 0x0c
} amf_type_t;

/* Errors. */
#define AMF_ETRUNC (-1)   /* input ends inside a value */
#define AMF_ETYPE (-2)    /* unknown or unsupported type marker */
#define AMF_EDEPTH (-3)   /* nested deeper than the limit */
#define AMF_ECOUNT (-4)   /* more values than the limit */
#define AMF_ESIZE (-5)    /* input or decoded size over the limit */
#define AMF_ENOMEM (-6)

#define AMF_MAX_DEPTH 32

typedef struct amf_limits {
  unsigned depth;      /* nesting of objects/arrays, <= AMF_MAX_DEPTH */
  size_t elements;     /* values in one decode call, all levels together */
  size_t bytes;        /* input bytes one decode call may read */
} amf_limits_t;

/* amf_limits_default: depth 32, 65536 values, 16 MiB. */
extern const amf_limits_t amf_limits_default;

typedef struct amf_value amf_value_t;

/* One member of an object or ECMA array (key set) or of a strict array or
 * a decoded list (key NULL). */
typedef struct amf_prop {
  char *key;             /* NUL-terminated copy; may contain NUL before key_len */
  size_t key_len;
  amf_value_t *val;
} amf_prop_t;

struct amf_value {
  amf_type_t type;
  double num;            /* NUMBER; DATE: milliseconds since the epoch */
  int16_t tz;            /* DATE: time zone field (should be 0) */
  int boolean;           /* BOOLEAN */
  char *str;             /* STRING, LONG_STRING: NUL-terminated copy */
  size_t len;            /* string length */
  amf_prop_t *props;     /* OBJECT, ECMA_ARRAY, STRICT_ARRAY */
  size_t count;
  size_t cap;
};

/* amf_decode decodes one value from |buf|; *used is set to the bytes read.
 * |lim| NULL means amf_limits_default. Returns 0 or AMF_E*. */
int amf_decode(const uint8_t *buf, size_t len, const amf_limits_t *lim, amf_value_t **out,
               size_t *used);

/* amf_decode_list decodes every value of |buf| (a command or data message
 * body) into a STRICT_ARRAY whose props have NULL keys. The limits count
 * across all values. */
int amf_decode_list(const uint8_t *buf, size_t len, const amf_limits_t *lim, amf_value_t **out);

/* amf_free frees |v| and everything below it; accepts NULL. */
void amf_free(amf_value_t *v);

/* --- building and reading trees --- */

amf_value_t *amf_new_number(double n);
amf_value_t *amf_new_bool(int b);
amf_value_t *amf_new_string(const char *s, size_t len);
amf_value_t *amf_new_null(void);
amf_value_t *amf_new_object(void);  /* empty OBJECT */

/* amf_add appends |val| under |key| (NULL for strict arrays); takes |val|
 * (freed on failure). Returns 0 or AMF_ENOMEM. */
int amf_add(amf_value_t *parent, const char *key, amf_value_t *val);

/* amf_get finds the first member |key| of an OBJECT or ECMA_ARRAY; NULL if
 * absent or |obj| is not one. */
const amf_value_t *amf_get(const amf_value_t *obj, const char *key);

/* amf_at is item |i| of a STRICT_ARRAY (e.g. a decoded list); NULL past its end. */
const amf_value_t *amf_at(const amf_value_t *list, size_t i);

/* amf_str is the string of a STRING/LONG_STRING value, else NULL. */
const char *amf_str(const amf_value_t *v);

/* amf_num stores the number of a NUMBER value in *out; -1 if not a number. */
int amf_num(const amf_value_t *v, double *out);

/* --- writing --- */

/* A growable output buffer. After an allocation failure |err| is set and
 * further writes are ignored, so a reply can be built without checks and
 * tested once at the end. */
typedef struct amf_buf {
  uint8_t *data;
  size_t len, cap;
  size_t max;            /* 0 = 16 MiB */
  int err;
} amf_buf_t;

void amf_buf_init(amf_buf_t *b);
void amf_buf_free(amf_buf_t *b);

/* amf_put_raw appends bytes as they are (the buffer doubles as a plain
 * byte buffer for RTMP output). */
void amf_put_raw(amf_buf_t *b, const void *p, size_t n);

void amf_put_number(amf_buf_t *b, double n);
void amf_put_bool(amf_buf_t *b, int v);
/* amf_put_string writes STRING, or LONG_STRING past 65535 bytes. */
void amf_put_string(amf_buf_t *b, const char *s);
void amf_put_string_len(amf_buf_t *b, const char *s, size_t len);
void amf_put_null(amf_buf_t *b);
void amf_put_undefined(amf_buf_t *b);
void amf_put_object_start(amf_buf_t *b);
void amf_put_ecma_start(amf_buf_t *b, uint32_t count);
/* amf_put_key writes a member name inside an object or ECMA array. */
void amf_put_key(amf_buf_t *b, const char *key);
/* amf_put_object_end closes an object or ECMA array. */
void amf_put_object_end(amf_buf_t *b);
/* Member shorthands: key followed by a value. */
void amf_put_prop_number(amf_buf_t *b, const char *key, double n);
void amf_put_prop_bool(amf_buf_t *b, const char *key, int v);
void amf_put_prop_string(amf_buf_t *b, const char *key, const char *s);

/* amf_encode appends the encoding of |v| (a list is written as its items
 * one after another only when |as_list| is set). Returns 0 or AMF_E*. */
int amf_encode(amf_buf_t *b, const amf_value_t *v, int as_list);

#endif
