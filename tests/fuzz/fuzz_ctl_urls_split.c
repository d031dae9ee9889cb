/* Fuzz target for ctl_urls_split (agent/ctl_urls.c), which reads
 * controller.url: any input is split or refused without a memory error;
 * what splits has a non-empty host without ']' and a port of 1..5 digits,
 * and joining them again splits to the same parts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_urls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *s = malloc(size + 1), host[256], port[8], host2[256], port2[8], url[300];
  if (s == NULL) return 0;
  memcpy(s, data, size);
  s[size] = '\0';
  if (ctl_urls_split(s, host, sizeof(host), port, sizeof(port)) == 0) {
    size_t pl = strlen(port);
    if (host[0] == '\0' || strchr(host, ']') || pl == 0 || pl > 5) abort();
    for (size_t i = 0; i < pl; i++)
      if (port[i] < '0' || port[i] > '9') abort();
    snprintf(url, sizeof(url), strchr(host, ':') ? "tcp://[%s]:%s" : "tcp://%s:%s", host, port);
    if (ctl_urls_split(url, host2, sizeof(host2), port2, sizeof(port2)) != 0 ||
        strcmp(host, host2) != 0 || strcmp(port, port2) != 0)
      abort();
  }
  free(s);
  return 0;
}
