/* Fuzz target for valid_token_body (controller/valid.c): decode, check the
 * invariants of a success, free. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "valid.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  valid_token_t t;
  char err[256];
  err[0] = '\0';
  if (valid_token_body((const char *)data, size, &t, err, sizeof(err)) == 0) {
    if (t.json == NULL || t.name == NULL || t.role == NULL) __builtin_trap();
    if (strcmp(t.role, "admin") != 0 && strcmp(t.role, "viewer") != 0) __builtin_trap();
    size_t n = strlen(t.name);
    if (n < 1 || n > VALID_NAME_MAX) __builtin_trap();
    valid_token_free(&t);
  } else {
    if (t.json != NULL) __builtin_trap();
    if (err[0] == '\0') __builtin_trap();
  }
  return 0;
}
