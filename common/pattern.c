/* Pull-rule patterns: see pattern.h. */
#include "pattern.h"

#include <stdio.h>
#include <string.h>

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

int pattern_target_check(const char *t, char *err, size_t errlen) {
  static const char *const schemes[] = {"m7s://", "rtmp://", "http://"};
  size_t i, n = 0;
  for (i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
    n = strlen(schemes[i]);
    if (strncmp(t, schemes[i], n) == 0) break;
  }
  if (i == sizeof(schemes) / sizeof(schemes[0]) || t[n] == '\0') {
    snprintf(err, errlen, "must be m7s://, rtmp:// or http:// followed by a path or address");
    return -1;
  }
  for (const char *p = t; *p; p++) {
    unsigned char c = (unsigned char)*p;
    if (c < 0x20 || c == 0x7f || c == ' ') {
      snprintf(err, errlen, "has a space or control character");
      return -1;
    }
    if (c != '$') continue;
    if (p[1] == '$' || (p[1] >= '0' && p[1] <= '9')) {
      p++;
      continue;
    }
    snprintf(err, errlen, "'$' must be followed by a digit 0-9 or another '$'");
    return -1;
  }
  return 0;
}

int pattern_expand(pcre2_code *re, const char *subject, const char *target, char *out,
                   size_t outlen) {
  pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
  if (md == NULL) return -1;
  size_t sl = strlen(subject);
  int rc = pcre2_match(re, (PCRE2_SPTR)subject, sl, 0, PCRE2_ANCHORED | PCRE2_ENDANCHORED, md,
                       NULL);
  if (rc == PCRE2_ERROR_NOMATCH) {
    pcre2_match_data_free(md);
    return 0;
  }
  if (rc < 0) {
    pcre2_match_data_free(md);
    return -1;
  }
  PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
  uint32_t pairs = pcre2_get_ovector_count(md);
  size_t o = 0;
  int ret = 1;
  for (const char *p = target; *p && ret == 1; p++) {
    const char *piece = p;
    size_t pl = 1;
    if (*p == '$' && p[1] == '$') {
      p++;
    } else if (*p == '$' && p[1] >= '0' && p[1] <= '9') {
      unsigned g = (unsigned)(p[1] - '0');
      p++;
      pl = 0;
      if (g < (unsigned)rc && g < pairs && ov[2 * g] != PCRE2_UNSET) {
        piece = subject + ov[2 * g];
        pl = ov[2 * g + 1] - ov[2 * g];
      }
    }
    if (o + pl >= outlen) ret = -1;
    else {
      memcpy(out + o, piece, pl);
      o += pl;
    }
  }
  if (ret == 1) out[o] = '\0';
  pcre2_match_data_free(md);
  return ret;
}
