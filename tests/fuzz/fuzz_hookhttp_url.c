/* Fuzz target for hookhttp_url_parse (agent/hookhttp.c), which reads the
 * operator's hook URLs: any input is parsed or refused without a memory
 * error; what parses has a host, a decimal port and a target starting with
 * '/', and its log form (no credentials, no query) parses again to the
 * same scheme, host, port and path, without credentials. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hookhttp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static hookhttp_url_t u, v;
  static char show[HOOKHTTP_URL_MAX + 300];
  char why[128];
  if (size > HOOKHTTP_URL_MAX + 16) return 0;
  char *s = malloc(size + 1);
  if (s == NULL) return 0;
  memcpy(s, data, size);
  s[size] = '\0';
  if (hookhttp_url_parse(s, &u, why, sizeof(why)) == 0) {
    size_t pl = strlen(u.port);
    if (u.host[0] == '\0' || pl == 0 || pl > 5 || u.target[0] != '/') abort();
    for (size_t i = 0; i < pl; i++)
      if (u.port[i] < '0' || u.port[i] > '9') abort();
    hookhttp_url_show(&u, show, sizeof(show));
    if (hookhttp_url_parse(show, &v, why, sizeof(why)) != 0 || v.has_cred || v.tls != u.tls ||
        strcmp(v.host, u.host) != 0 || strcmp(v.port, u.port) != 0 ||
        strchr(v.target, '?') || strncmp(v.target, u.target, strlen(v.target)) != 0)
      abort();
  } else if (why[0] == '\0') {
    abort();
  }
  free(s);
  return 0;
}
