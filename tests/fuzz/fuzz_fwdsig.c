/* Fuzz target for controller/fwdsig.c: the first byte picks the parser;
 * the rest is an X-Cascade-Forwarded value (fwdsig_check, with a valid
 * signature of the same request made alongside) or a response head
 * (fwdsig_head, given as the head of an answer). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fwdsig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  char *buf = malloc(size + 5);
  if (buf == NULL) return 0;
  memcpy(buf, data + 1, size - 1);
  buf[size - 1] = '\0';
  if (data[0] & 1) {
    static uint8_t key[FWDSIG_KEY_LEN];
    char actor[32], v[FWDSIG_VALUE_MAX + 1];
    int role = 0;
    fwdsig_key("fuzz CA key", key);
    int rv = fwdsig_check(key, buf, 1000, "GET", "/api/relay/1/x", buf, size - 1, &role, actor,
                          sizeof(actor));
    if (rv == FWDSIG_OK && (role < 1 || role > 9)) __builtin_trap();
    if (fwdsig_make(key, 1000, 1, "admin", "GET", buf, buf, size - 1, v, sizeof(v)) == 0 &&
        fwdsig_check(key, v, 1000, "GET", buf, buf, size - 1, &role, actor, sizeof(actor)) !=
            FWDSIG_OK)
      __builtin_trap();
  } else {
    /* As a head: the bytes, then the empty line that ends it. */
    size_t n = strlen(buf);
    memcpy(buf + n, "\r\n\r\n", 5);
    fwdsig_hdr_t h[16];
    size_t nh = 0;
    int status = 0;
    if (fwdsig_head(buf, n + 4, &status, h, 16, &nh) == 0 &&
        (status < 100 || status > 599 || nh > 16))
      __builtin_trap();
  }
  free(buf);
  return 0;
}
