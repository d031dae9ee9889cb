/* NOTIFY payloads of cascade_wake: see wake.h. */
#include "wake.h"

#include <string.h>

int wake_parse(const char *payload, int64_t *ids, size_t max, size_t *n) {
  *n = 0;
  if (payload == NULL) return -1;
  if (strcmp(payload, "all") == 0) return 1;
  size_t len = strnlen(payload, WAKE_PAYLOAD_MAX + 1);
  if (len == 0 || len > WAKE_PAYLOAD_MAX) return -1;
  const char *p = payload;
  for (;;) {
    int64_t v = 0;
    int digits = 0;
    while (*p >= '0' && *p <= '9') {
      if (digits >= 18) return -1; /* beyond any bigint id we make */
      v = v * 10 + (*p++ - '0');
      digits++;
    }
    if (digits == 0 || v <= 0) return -1;
    if (*n >= max) return 1;
    ids[(*n)++] = v;
    if (*p == '\0') return 0;
    if (*p++ != ',') return -1;
  }
}
