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

#endif
