/* Fuzz target for controller/streamauth.c: the first byte picks the body
 * parser (PUT /api/cascade/streamauth, or POST .../tokens); the rest is
 * the body. Whatever is accepted is within its bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "streamauth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[320];
  if (size < 1) return 0;
  const char *body = (const char *)data + 1;
  size_t n = size - 1;
  if (data[0] & 1) {
    sa_token_req_t t;
    if (sa_token_body(body, n, &t, err, sizeof(err)) == 0 &&
        (t.ttl < SA_TTL_MIN || t.ttl > SA_TTL_MAX || t.path[0] == 0 || t.path[0] == '/' ||
         strchr(t.path, '?') || (t.action != STREAMTOKEN_PUBLISH && t.action != STREAMTOKEN_PLAY)))
      __builtin_trap();
  } else {
    sa_update_t u;
    if (sa_update_body(body, n, &u, err, sizeof(err)) == 0) {
      if (u.policy == NULL && u.hooks == NULL) __builtin_trap();
      if (u.policy) {
        /* the canonical text is accepted again, unchanged */
        json_t *p = json_loads(u.policy, 0, NULL);
        char *again = NULL;
        if (p == NULL || sa_rules_check(p, &again, err, sizeof(err)) != 0 ||
            strcmp(again, u.policy) != 0)
          __builtin_trap();
        free(again);
        json_decref(p);
      }
      sa_update_free(&u);
    }
  }
  return 0;
}
