/* The API relay's request bounds (docs/protocol.md, "API relay"), one set
 * for both sides: the controller judges a caller's request with them before
 * it queues it, the agent judges each RelayRequest it receives with the
 * same functions (ctlmsg_relay_request_check). What the controller lets
 * through, the agent accepts; a request that breaks a bound anyway fails
 * alone on the agent (400), never the control session. */
#ifndef CASCADE_RELAYBOUNDS_H
#define CASCADE_RELAYBOUNDS_H

#include <stddef.h>

#define RELAYBOUNDS_METHOD_MAX 16           /* bytes of A-Z */
#define RELAYBOUNDS_PATH_MAX 4095           /* the path as the node receives it (encoded) */
#define RELAYBOUNDS_QUERY_MAX 4095          /* bytes of the query, as the caller sent it */
#define RELAYBOUNDS_HEADERS_MAX 64          /* headers, X-Forwarded-For included */
#define RELAYBOUNDS_HNAME_MAX 255           /* bytes of a header name */
#define RELAYBOUNDS_HVALUE_MAX 4095         /* bytes of a header value */
#define RELAYBOUNDS_HBYTES_MAX (64 * 1024)  /* names and values together */
#define RELAYBOUNDS_BODY_MAX (768 * 1024)   /* the request body */

/* Each check returns NULL when the value is within the bounds, else a
 * static reason (printable, no quotes) for an error message. */

/* relaybounds_method: 1 to 16 bytes, each an upper-case letter A-Z. */
const char *relaybounds_method(const char *m);

/* relaybounds_path: the path as sent to the node: starts with '/', at most
 * RELAYBOUNDS_PATH_MAX bytes of printable ASCII without space, '?' or '#'. */
const char *relaybounds_path(const char *p);

/* relaybounds_query: at most RELAYBOUNDS_QUERY_MAX bytes of printable
 * ASCII without space or '#' (may be empty). */
const char *relaybounds_query(const char *q);

/* Running totals of a header list. */
typedef struct relaybounds_headers {
  size_t n, bytes;
} relaybounds_headers_t;

/* relaybounds_header_add judges one more header of a list: a name of 1 to
 * RELAYBOUNDS_HNAME_MAX bytes of printable ASCII without space or ':', a
 * value of at most RELAYBOUNDS_HVALUE_MAX bytes of printable ASCII (space
 * included), the list within RELAYBOUNDS_HEADERS_MAX entries and
 * RELAYBOUNDS_HBYTES_MAX bytes. Counts it in |h| when it passes. */
const char *relaybounds_header_add(relaybounds_headers_t *h, const char *name, const char *value);

/* relaybounds_target is the controller's judgement of a caller's request
 * line before any rule: |method|, the raw path |raw| (|rawlen| bytes, from
 * its leading '/', no query) and |query|. It normalises the path into
 * |norm| (|normlen| >= rawlen + 1) and re-encodes it into |enc| (|enclen|
 * >= 3 * rawlen + 1), the path the node will receive. Returns 0, or the
 * HTTP status to answer (400, or 414 when what the caller sent is over a
 * length bound) with |msg| saying why. Whatever it accepts passes
 * relaybounds_method, relaybounds_path and relaybounds_query. */
int relaybounds_target(const char *method, const char *raw, size_t rawlen, const char *query,
                       char *norm, size_t normlen, char *enc, size_t enclen, char *msg,
                       size_t msglen);

#endif
