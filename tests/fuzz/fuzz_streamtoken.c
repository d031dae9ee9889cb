/* Fuzz target for common/streamtoken.c: the input is a query string; the
 * token found in it (or the whole input) is parsed and verified. Nothing
 * but a token minted alongside may verify, and a parsed token re-encodes
 * within bounds. Also feeds the input to b64url_decode. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"
#include "streamtoken.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 4096) return 0;
  char *q = malloc(size + 1);
  if (q == NULL) return 0;
  memcpy(q, data, size);
  q[size] = '\0';
  streamtoken_key k = {.id = 1};
  memset(k.key, 0x5a, sizeof(k.key));
  const char *tok = q;
  size_t n = strlen(q);
  if (!streamtoken_from_query(q, &tok, &n)) {
    tok = q;
    n = strlen(q);
  }
  if (tok < q || tok + n > q + size) __builtin_trap();
  streamtoken_info info;
  if (streamtoken_parse(tok, n, &info) == 0 &&
      (n != STREAMTOKEN_LEN || (info.action != STREAMTOKEN_PUBLISH && info.action != STREAMTOKEN_PLAY)))
    __builtin_trap();
  /* Random bytes never carry a valid MAC for this key. */
  if (streamtoken_verify(&k, 1, tok, n, STREAMTOKEN_PLAY, "live/x", "127.0.0.1", 0) == 0)
    __builtin_trap();
  uint8_t *dec = malloc(size + 1);
  if (dec) {
    long d = b64url_decode(q, size, dec, size);
    if (d >= 0) {
      char *enc = malloc(size + 2);
      if (enc == NULL || b64url_encode(dec, (size_t)d, enc, size + 2) != (long)size ||
          memcmp(enc, q, size) != 0)
        __builtin_trap();
      free(enc);
    }
    free(dec);
  }
  free(q);
  return 0;
}
