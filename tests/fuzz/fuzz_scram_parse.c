/* Fuzz target for scram_verifier_parse: any input parses or is refused
 * without a memory error, and whatever parses formats back to the very same
 * text (the grammar is canonical) and re-parses to the same verifier. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "scram.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *s = malloc(size + 1);
  if (s == NULL) return 0;
  memcpy(s, data, size);
  s[size] = '\0';

  scram_verifier_t a, b;
  if (scram_verifier_parse(s, &a) == 0) {
    char buf[SCRAM_VERIFIER_MAX];
    int n = scram_verifier_format(&a, buf, sizeof(buf));
    if (n < 0 || (size_t)n != strlen(s) || memcmp(buf, s, (size_t)n) != 0)
      abort();
    if (scram_verifier_parse(buf, &b) != 0) abort();
    if (a.iter != b.iter || a.salt_len != b.salt_len ||
        memcmp(a.salt, b.salt, a.salt_len) != 0 ||
        memcmp(a.stored_key, b.stored_key, SCRAM_KEY_LEN) != 0 ||
        memcmp(a.server_key, b.server_key, SCRAM_KEY_LEN) != 0)
      abort();
    /* Bytes past salt_len are zero, so the whole structs match too. */
    if (memcmp(&a, &b, sizeof(a)) != 0) abort();
  }
  free(s);
  return 0;
}
