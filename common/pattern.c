/* Pull-rule patterns: see pattern.h. */
#include "pattern.h"

#include <stdio.h>

pcre2_code *pattern_compile(const char *pattern, char *err, size_t errlen) {
  int code;
  PCRE2_SIZE off;
  pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &code,
                                 &off, NULL);
  if (re == NULL) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(code, msg, sizeof(msg));
    snprintf(err, errlen, "%.200s at offset %zu", (const char *)msg, (size_t)off);
    return NULL;
  }
  /* JIT is an optimisation: a library built without it still matches. */
  (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
  return re;
}
