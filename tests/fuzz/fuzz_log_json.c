/* Fuzz target for log_format_json: any bytes as a message, into any buffer
 * size from LOG_JSON_MIN: the line is always one valid JSON object with a
 * newline, and an untruncated message of valid UTF-8 comes back whole. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  size_t cap = LOG_JSON_MIN + (size_t)data[0] * 16;
  char *out = malloc(cap);
  if (out == NULL) return 0;
  const char *msg = (const char *)data + 1;
  size_t len = size - 1;
  size_t n = log_format_json(out, cap, "2026-01-01T00:00:00.000Z", "warn", "fuzz", msg, len);
  if (n >= cap || n < 2 || out[n] != '\0' || out[n - 1] != '\n') abort();
  if (memchr(out, '\n', n - 1) != NULL) abort();
  json_error_t e;
  json_t *o = json_loadb(out, n, JSON_ALLOW_NUL, &e);
  if (o == NULL || !json_is_object(o)) abort();
  json_t *m = json_object_get(o, "message"), *c = json_object_get(o, "context");
  json_t *valid = json_stringn(msg, len); /* NULL: not valid UTF-8 */
  if (json_object_get(o, "truncated") == NULL && valid != NULL) {
    /* nothing replaced or cut: "[" context "]" [" "] message is the input */
    if (m == NULL) abort();
    size_t ml = json_string_length(m), cl = c ? json_string_length(c) : 0;
    const char *rest = msg;
    size_t rl = len;
    if (c) {
      if (rl < cl + 2 || rest[0] != '[' || memcmp(rest + 1, json_string_value(c), cl) != 0 ||
          rest[cl + 1] != ']')
        abort();
      rest += cl + 2, rl -= cl + 2;
      if (rl > ml) rest++, rl--; /* the blank after the tag */
    }
    if (rl != ml || memcmp(rest, json_string_value(m), ml) != 0) abort();
  }
  json_decref(valid);
  json_decref(o);
  free(out);
  return 0;
}
