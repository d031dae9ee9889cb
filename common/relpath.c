/* The API relay's path normalisation and allow/deny matching (relpath.h). */
#include "relpath.h"

#include <string.h>

static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static int is_ctl(unsigned char c) { return c < 0x20 || c == 0x7f; }

/* decode percent-decodes |in| once into |dec| (at most |len| bytes) and
 * refuses what must not appear in a relayed path. */
static int decode(const char *in, size_t len, char *dec, size_t *declen, const char **why) {
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)in[i];
    if (c == '%') {
      int hi = i + 1 < len ? hexval((unsigned char)in[i + 1]) : -1;
      int lo = i + 2 < len ? hexval((unsigned char)in[i + 2]) : -1;
      if (hi < 0 || lo < 0) {
        *why = "malformed percent escape";
        return -1;
      }
      c = (unsigned char)(hi << 4 | lo);
      i += 2;
      if (c == '/' || c == '\\') {
        *why = "encoded slash or backslash";
        return -1;
      }
      if (c == 0) {
        *why = "NUL in the path";
        return -1;
      }
      if (c == '\r' || c == '\n') {
        *why = "CR or LF in the path";
        return -1;
      }
      if (is_ctl(c)) {
        *why = "control character in the path";
        return -1;
      }
    } else if (c == 0) {
      *why = "NUL in the path";
      return -1;
    } else if (c == '\r' || c == '\n') {
      *why = "CR or LF in the path";
      return -1;
    } else if (is_ctl(c)) {
      *why = "control character in the path";
      return -1;
    } else if (c == '\\') {
      *why = "backslash in the path";
      return -1;
    }
    dec[o++] = (char)c;
  }
  *declen = o;
  return 0;
}

int relpath_normalize(const char *in, size_t len, char *out, size_t outlen, const char **why) {
  char dec[RELPATH_MAX];
  size_t n = 0, w = 0;
  int trailing = 0;

  if (len == 0 || in[0] != '/') {
    *why = "the path must start with /";
    return -1;
  }
  if (len > RELPATH_MAX) {
    *why = "path too long";
    return -1;
  }
  if (outlen < len + 1) {
    *why = "path too long";
    return -1;
  }
  if (decode(in, len, dec, &n, why) != 0) return -1;

  /* out[0..w) is "" (the root) or "/seg/seg", no trailing slash. */
  size_t i = 1;
  for (;;) {
    size_t s = i;
    while (i < n && dec[i] != '/') i++;
    size_t sl = i - s;
    int last = i >= n;
    if (sl == 0 || (sl == 1 && dec[s] == '.')) {
      trailing = last;
    } else if (sl == 2 && dec[s] == '.' && dec[s + 1] == '.') {
      if (w == 0) {
        *why = "\"..\" above the root";
        return -1;
      }
      while (w > 0 && out[w - 1] != '/') w--;
      w--; /* the '/' before the segment */
      trailing = last;
    } else {
      out[w++] = '/';
      memcpy(out + w, dec + s, sl);
      w += sl;
      trailing = 0;
    }
    if (last) break;
    i++; /* the '/' */
  }
  if (w == 0 || trailing) out[w++] = '/';
  out[w] = '\0';
  return 0;
}

long relpath_encode(const char *path, char *out, size_t outlen) {
  static const char hex[] = "0123456789ABCDEF";
  static const char keep[] = "-._~!$&'()*+,;=:@/";
  size_t o = 0;
  for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
    int plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                strchr(keep, *p) != NULL;
    if (o + (plain ? 1 : 3) >= outlen) return -1;
    if (plain) {
      out[o++] = (char)*p;
    } else {
      out[o++] = '%';
      out[o++] = hex[*p >> 4];
      out[o++] = hex[*p & 15];
    }
  }
  if (o >= outlen) return -1;
  out[o] = '\0';
  return (long)o;
}

const char *relpath_rule_check(const char *rule) {
  char norm[RELPATH_MAX + 1];
  const char *why = NULL;
  size_t n = rule ? strlen(rule) : 0;
  if (n == 0 || rule[0] != '/') return "a rule is a path prefix starting with /";
  if (strpbrk(rule, "*?[]") != NULL)
    return "'*', '?', '[' and ']' are not wildcards: rules are path prefixes (/api/cascade/ "
           "covers everything under it)";
  if (strchr(rule, '%') != NULL)
    return "a percent escape: rules match the decoded path, write the character itself";
  if (n > RELPATH_MAX || relpath_normalize(rule, n, norm, sizeof(norm), &why) != 0 ||
      strcmp(norm, rule) != 0)
    return "not a normalised path (no //, . or .. segment, backslash or control character): "
           "rules match the normalised path";
  return NULL;
}

int relpath_prefix_match(const char *rule, const char *path) {
  size_t rl = strlen(rule), pl = strlen(path);
  if (rl == 0) return 0;
  if (pl >= rl && memcmp(path, rule, rl) == 0) return 1;
  return rule[rl - 1] == '/' && pl == rl - 1 && memcmp(path, rule, pl) == 0;
}

int relpath_check(const char *path, char *const *allow, size_t nallow, char *const *deny,
                  size_t ndeny, const char **rule) {
  for (size_t i = 0; i < ndeny; i++) {
    if (relpath_prefix_match(deny[i], path)) {
      *rule = deny[i];
      return RELPATH_DENIED;
    }
  }
  for (size_t i = 0; i < nallow; i++) {
    if (relpath_prefix_match(allow[i], path)) {
      *rule = allow[i];
      return RELPATH_ALLOWED;
    }
  }
  *rule = NULL;
  return RELPATH_NOT_ALLOWED;
}
