/* Cross-origin access to the REST API (docs/api.md, "CORS"): which
 * browser origins http.cors.origins lets read the API's answers. Pure
 * functions: http.c adds the headers. */
#ifndef CASCADE_CORS_H
#define CASCADE_CORS_H

#include <stddef.h>

#define CORS_ORIGIN_MAX 256  /* an Origin header or a listed origin, bytes */

/* The headers a preflight may ask for and the methods it is told. */
#define CORS_ALLOW_METHODS "GET, HEAD, POST, PUT, PATCH, DELETE"
#define CORS_ALLOW_HEADERS "Authorization, Content-Type, Last-Event-ID"
#define CORS_EXPOSE_HEADERS "WWW-Authenticate, Retry-After, Allow"
#define CORS_MAX_AGE "600"

/* cors_origin_check tells whether |s| is a valid http.cors.origins entry:
 * "*", or scheme://host[:port] with scheme http or https, a lower-case
 * host (DNS name, IPv4 or [IPv6]) and nothing after the port, which is the
 * form a browser sends in Origin. 0 valid, -1 with a reason in |why|. */
int cors_origin_check(const char *s, const char **why);

/* cors_match returns the Access-Control-Allow-Origin value for a request
 * whose Origin header is |origin| (NULL: none) under the |n| |origins|
 * listed: |origin| itself when listed exactly, "*" when "*" is listed,
 * NULL when the origin may not read answers (no CORS headers then). */
const char *cors_match(char *const *origins, size_t n, const char *origin);

#endif
