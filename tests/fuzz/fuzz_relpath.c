/* Fuzz target for relpath_normalize / relpath_encode / relpath_check: any
 * input is normalised or refused without a memory error; a normalised path
 * starts with '/', has no empty, "." or ".." segment and no control byte;
 * normalising is idempotent through the wire encoding (what the node
 * decodes is what was checked). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "relpath.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static char out[RELPATH_MAX + 1], enc[3 * RELPATH_MAX + 1], again[3 * RELPATH_MAX + 1];
  const char *why = NULL;
  if (size > RELPATH_MAX) size = RELPATH_MAX + 1; /* still refused, by length */
  if (relpath_normalize((const char *)data, size, out, sizeof(out), &why) != 0) {
    if (why == NULL) abort();
    return 0;
  }
  size_t n = strlen(out);
  if (n == 0 || out[0] != '/' || n > size) abort();
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)out[i];
    if (c < 0x20 || c == 0x7f || c == '\\') abort();
    if (c == '/' && i + 1 < n && out[i + 1] == '/') abort();
  }
  if (strstr(out, "/./") || strstr(out, "/../")) abort();
  long el = relpath_encode(out, enc, sizeof(enc));
  if (el < 0) abort();
  if (relpath_normalize(enc, (size_t)el, again, sizeof(again), &why) != 0) abort();
  if (strcmp(out, again) != 0) abort();
  char *allow[] = {"/api/"}, *deny[] = {"/api/admin/"};
  const char *rule;
  int r = relpath_check(out, allow, 1, deny, 1, &rule);
  if (r == RELPATH_ALLOWED && strncmp(out, "/api/admin", 10) == 0 &&
      (out[10] == '\0' || out[10] == '/'))
    abort();
  return 0;
}
