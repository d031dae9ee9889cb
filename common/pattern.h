/* Pull-rule patterns (onsub.pull): compiled the same way wherever they are
 * checked — at the controller's REST call, at the agent's config load and
 * on receipt of the controller's rules — so what one accepts the other
 * accepts too. */
#ifndef CASCADE_PATTERN_H
#define CASCADE_PATTERN_H

#include <stddef.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

/* pattern_compile compiles |pattern| as UTF pcre2 (JIT when the library
 * has it). NULL with pcre2's message and offset in |err|. */
pcre2_code *pattern_compile(const char *pattern, char *err, size_t errlen);

/* pattern_target_check validates a pull target template: it starts with
 * m7s://, rtmp:// or http:// followed by something, and every '$' is "$$"
 * (a literal '$') or "$0".."$9". 0, or -1 with the reason in |err|. */
int pattern_target_check(const char *target, char *err, size_t errlen);

/* pattern_expand matches the whole of |subject| against |re| (anchored at
 * both ends: "live/.*" does not match "olive/x") and, on a match, writes
 * |target| with $0..$9 replaced by the match and its groups (an unset group
 * is empty) to |out|. Returns 1 on a match, 0 when it does not match, -1
 * when |out| is too small or matching failed. */
int pattern_expand(pcre2_code *re, const char *subject, const char *target, char *out,
                   size_t outlen);

#endif
