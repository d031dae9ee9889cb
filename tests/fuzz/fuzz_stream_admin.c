/* Fuzz target for the node's stream management bodies and query
 * (agent/streamadm.c): any input is taken or refused without a memory
 * error; a kick taken has a positive id, a drop taken a valid stream path,
 * a refusal a status of 400 or 413 and a reason. The input is read as a
 * body and, NUL-terminated, as a query. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hub.h"
#include "streamadm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char why[256], path[1025];
  uint64_t id = 0;
  int st = streamadm_parse_kick((const char *)data, size, &id, why, sizeof(why));
  if (st == 0 && id == 0) abort();
  if (st != 0 && ((st != 400 && st != 413) || why[0] == '\0')) abort();
  why[0] = '\0';
  st = streamadm_parse_drop((const char *)data, size, path, sizeof(path), why, sizeof(why));
  if (st == 0 && !hub_path_ok(path)) abort();
  if (st != 0 && ((st != 400 && st != 413) || why[0] == '\0')) abort();
  char *q = malloc(size + 1);
  if (q == NULL) return 0;
  memcpy(q, data, size);
  q[size] = '\0';
  int r = streamadm_query_path(q, path, sizeof(path));
  if (r == 1 && !hub_path_ok(path)) abort();
  free(q);
  return 0;
}
