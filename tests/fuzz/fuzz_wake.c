/* Fuzz target for controller/wake.c: a NOTIFY cascade_wake payload (the
 * input as a C string, cut at its first NUL). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wake.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *buf = malloc(size + 1);
  int64_t ids[16];
  size_t n = 99;
  if (buf == NULL) return 0;
  memcpy(buf, data, size);
  buf[size] = '\0';
  int rv = wake_parse(buf, ids, 16, &n);
  if (rv < -1 || rv > 1 || n > 16) __builtin_trap();
  if (rv == 0 && n == 0) __builtin_trap();
  for (size_t i = 0; rv == 0 && i < n; i++)
    if (ids[i] <= 0) __builtin_trap();
  free(buf);
  return 0;
}
