/* Fuzz target for the query and path checks of controller/valid.c: the
 * input is split on '&' or NUL into up to four strings (page, size, online,
 * name) for valid_list_query; the whole input, as a C string, also goes
 * through valid_id and valid_name. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "valid.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *buf = malloc(size + 1);
  if (buf == NULL) return 0;
  memcpy(buf, data, size);
  buf[size] = '\0';

  /* valid_id and valid_name on the raw bytes */
  char *raw = malloc(size + 1);
  if (raw == NULL) {
    free(buf);
    return 0;
  }
  memcpy(raw, data, size);
  raw[size] = '\0';
  int64_t id = 0;
  if (valid_id(raw, &id) == 0 && id <= 0) __builtin_trap();
  char err[256];
  err[0] = '\0';
  if (valid_name(raw, size, err, sizeof(err)) != 0 && err[0] == '\0') __builtin_trap();
  free(raw);

  /* Up to four fields; a field is absent (NULL) when the input runs out,
   * so absent and empty values are both exercised. */
  const char *f[4] = {NULL, NULL, NULL, NULL};
  size_t start = 0;
  for (int i = 0; i < 4 && start <= size; i++) {
    size_t end = start;
    while (end < size && buf[end] != '&' && buf[end] != '\0') end++;
    buf[end] = '\0';
    f[i] = buf + start;
    start = end + 1;
  }
  valid_list_t q;
  err[0] = '\0';
  if (valid_list_query(f[0], f[1], f[2], f[3], &q, err, sizeof(err)) == 0) {
    if (q.page < 1 || q.page > VALID_PAGE_MAX || q.size < 1 || q.size > VALID_SIZE_MAX ||
        q.online < -1 || q.online > 1)
      __builtin_trap();
    if (q.name && (q.name[0] == '\0' || strlen(q.name) > VALID_NAME_MAX)) __builtin_trap();
  } else if (err[0] == '\0') {
    __builtin_trap();
  }
  free(buf);
  return 0;
}
