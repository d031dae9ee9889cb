/* Fuzz target for controller/cors.c: an http.cors.origins entry and an
 * Origin header (the input as a C string, cut at its first NUL). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *buf = malloc(size + 1);
  const char *why = NULL;
  if (buf == NULL) return 0;
  memcpy(buf, data, size);
  buf[size] = '\0';
  int rv = cors_origin_check(buf, &why);
  if (rv != 0 && rv != -1) __builtin_trap();
  if ((rv == -1) != (why != NULL)) __builtin_trap();
  /* A valid entry matches itself exactly; "*" matches everything. */
  char *list[] = {buf};
  const char *m = cors_match(list, 1, buf);
  if (rv == 0 && strcmp(buf, "*") != 0 && (m == NULL || strcmp(m, buf) != 0)) __builtin_trap();
  char *fixed[] = {"https://a.example"};
  m = cors_match(fixed, 1, buf);
  if (m != NULL && strcmp(buf, "https://a.example") != 0) __builtin_trap();
  free(buf);
  return 0;
}
