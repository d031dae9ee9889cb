/* Admission helpers: see admit.h. */
#include "admit.h"

#include <stdio.h>
#include <string.h>

void dp_admit_addr(const char *peer, char *out, unsigned outlen) {
  if (outlen == 0) return;
  const char *start = peer, *end;
  if (peer[0] == '[') {
    start = peer + 1;
    end = strchr(start, ']');
  } else {
    end = strrchr(peer, ':');
  }
  size_t n = end ? (size_t)(end - start) : strlen(start);
  if (n >= outlen) n = outlen - 1;
  memcpy(out, start, n);
  out[n] = '\0';
}
