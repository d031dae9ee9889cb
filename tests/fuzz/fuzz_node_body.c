/* Fuzz target for valid_node_body (controller/valid.c): every input is
 * decoded as a POST and as a PUT body; a success must hand back consistent
 * fields, a failure must say why, and both must free everything. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "valid.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  for (int update = 0; update <= 1; update++) {
    valid_node_t n;
    char err[256];
    err[0] = '\0';
    if (valid_node_body((const char *)data, size, update, &n, err, sizeof(err)) == 0) {
      if (n.json == NULL) __builtin_trap();
      if (!update && (n.name == NULL || n.secret == NULL)) __builtin_trap();
      if (n.name && (n.name_len < 1 || n.name_len > VALID_NAME_MAX)) __builtin_trap();
      if (n.secret && (n.secret_len < VALID_SECRET_MIN || n.secret_len > VALID_SECRET_MAX))
        __builtin_trap();
      if (n.parent_id < 0 || (n.parent_id != 0 && !n.has_parent)) __builtin_trap();
      if (n.labels && n.labels[0] != '{') __builtin_trap();
      valid_node_free(&n);
    } else {
      if (n.json != NULL || n.labels != NULL) __builtin_trap();
      if (err[0] == '\0') __builtin_trap(); /* a failure must say why */
    }
  }
  return 0;
}
