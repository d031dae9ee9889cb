/* The API relay's path checks (docs/api.md, "API relay"), shared by the
 * controller (cascadeserver.relayapi) and the agent (cascadeclient.relayapi)
 * so both judge the same path the same way.
 *
 * Rules are matched on the normalised path only: what reaches the node's
 * router is exactly what was checked. Normalising decodes percent escapes
 * once, resolves "." and ".." segments and collapses repeated slashes; it
 * refuses what has no single meaning or would smuggle a separator: an
 * encoded slash or backslash (%2F, %5C), NUL, CR, LF or any other control
 * byte (raw or encoded), a raw backslash, a malformed escape, a ".." above
 * the root. */
#ifndef CASCADE_RELPATH_H
#define CASCADE_RELPATH_H

#include <stddef.h>

#define RELPATH_MAX 4096 /* bytes of a path, raw or normalised */

/* relpath_normalize writes the normalised form of the raw path |in| (|len|
 * bytes, starting with '/', no query string) to |out| (NUL-terminated; it
 * never grows, so |outlen| >= len + 1 is enough). A trailing slash is kept.
 * Returns 0, or -1 with a static reason in |*why|. */
int relpath_normalize(const char *in, size_t len, char *out, size_t outlen, const char **why);

/* relpath_encode writes the normalised |path| as it goes on the wire to the
 * node: bytes outside RFC 3986's unreserved, sub-delims, ':', '@' and '/'
 * are percent-encoded (a decoded '%', '?', '#', space, UTF-8), so the node
 * decodes back exactly the path that was checked. Returns the length, or -1
 * when |outlen| is too small (3 * strlen(path) + 1 always suffices). */
long relpath_encode(const char *path, char *out, size_t outlen);

/* Outcome of relpath_check. */
enum {
  RELPATH_ALLOWED = 0,
  RELPATH_DENIED = 1,      /* a deny prefix matched: |*rule| names it */
  RELPATH_NOT_ALLOWED = 2, /* no allow prefix matched (or none is set) */
};

/* relpath_prefix_match tells whether |rule| covers the normalised |path|:
 * |path| starts with |rule|, or |rule| ends in '/' and |path| is |rule|
 * without it ("/api/admin/" covers "/api/admin" too). */
int relpath_prefix_match(const char *rule, const char *path);

/* relpath_rule_check tells whether |rule| can be an allow or deny rule:
 * rules are plain path prefixes matched on the normalised, decoded path, so
 * a rule must start with '/', hold no glob character ('*', '?', '[', ']':
 * they would match only themselves, not what they seem to promise), no
 * percent escape (write the character itself) and be normalised itself (no
 * "//", "." or ".." segment, backslash or control character): a rule that
 * no normalised path can meet is refused, not kept. Returns NULL, or a
 * static reason. */
const char *relpath_rule_check(const char *rule);

/* relpath_check applies allow/deny prefixes to a normalised path: a deny
 * match wins; otherwise an allow match is needed — an empty allow list lets
 * nothing through (the relay is opt-in). |*rule| is the prefix that decided
 * (NULL for RELPATH_NOT_ALLOWED). */
int relpath_check(const char *path, char *const *allow, size_t nallow, char *const *deny,
                  size_t ndeny, const char **rule);

#endif
