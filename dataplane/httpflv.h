/* HTTP-FLV: a small HTTP/1.1 server on the agent's libev loop. It streams
 * GET /flv/{app}/{name}.flv from the hub (GOP cache first) and hands every
 * other path to a handler for the agent's own routes (any method, with a
 * request body of at most max_body bytes announced by Content-Length). One
 * request per connection (Connection: close). The agent runs two: the
 * public one, whose handler serves only the probe, and the admin one. */
#ifndef CASCADE_HTTPFLV_H
#define CASCADE_HTTPFLV_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "admit.h"
#include "hub.h"

#define HTTPFLV_MAX_REQUEST 8192   /* request line + headers; beyond: 431 */
#define HTTPFLV_MAX_BODY (1024 * 1024) /* request body (Content-Length); beyond: 413 */
#define HTTPFLV_BODY_BUDGET (32 * 1024 * 1024) /* default httpflv_config_t.body_budget */

/* httpflv_fallback_t serves a path outside /flv/: returns an HTTP status
 * and sets *body (malloc'd; the server frees it), *len and *ctype (a static
 * string); 0 = not handled (404). |query| is "" when there is none; |path|
 * is percent-decoded. */
typedef int (*httpflv_fallback_t)(void *arg, const char *method, const char *path,
                                  const char *query, char **body, size_t *len,
                                  const char **ctype);

/* A request for the API handler: any method, with its body. */
typedef struct httpflv_request {
  const char *method;
  const char *path;              /* percent-decoded */
  const char *query;             /* "" when there is none; not decoded */
  const char *body;              /* NUL-terminated; "" when none */
  size_t body_len;
} httpflv_request_t;

/* What the API handler answers besides its status. */
typedef struct httpflv_reply {
  char *body;                    /* malloc'd; the server frees it */
  size_t len;
  const char *ctype;             /* static; NULL = text/plain */
  const char *allow;             /* static; with 405: the Allow header */
} httpflv_reply_t;

/* httpflv_api_t serves a path outside /flv/ for any method: returns an
 * HTTP status, 0 = no such path (404). */
typedef int (*httpflv_api_t)(void *arg, const httpflv_request_t *req, httpflv_reply_t *out);

typedef struct httpflv_config {
  unsigned max_connections;      /* open connections; 0 = unlimited */
  double request_timeout_s;      /* a whole request within it; 0 = 10 s */
  httpflv_fallback_t fallback;   /* GET/HEAD only; NULL: 404 for every other path */
  void *fallback_arg;
  size_t body_budget;            /* request bodies being received, all connections together
                                    (0 = HTTPFLV_BODY_BUDGET); a body that would pass it: 503 */
  size_t max_body;               /* request bodies the API handler takes, in bytes (at
                                    most HTTPFLV_MAX_BODY); 0: none, any body gets 413 */
  int local_only;                /* the agent's admin listener: no CORS header, and a
                                    request a browser could have been made to send is
                                    refused (403): a Host that is a name other than
                                    localhost (DNS rebinding), or any Origin header */
} httpflv_config_t;

typedef struct httpflv_stats {
  uint64_t connections;          /* accepted in total */
  uint64_t refused;              /* closed at once by max_connections */
  uint64_t bad_requests;         /* answered 400 or 431 */
  uint64_t busy;                 /* answered 503: request bodies over body_budget */
  size_t body_bytes;             /* held for request bodies being received now */
  uint64_t bytes_out;            /* written to sockets */
  unsigned current;              /* open connections */
  unsigned players;              /* connections streaming FLV now */
  uint64_t admit_refused;        /* players admission refused (401/403/503) */
} httpflv_stats_t;

typedef struct httpflv httpflv_t;

/* httpflv_new serves |listen_fd| (a listening socket; made non-blocking,
 * still owned by the caller) on |loop|. NULL on OOM. */
httpflv_t *httpflv_new(struct ev_loop *loop, hub_t *hub, int listen_fd,
                       const httpflv_config_t *cfg);

/* httpflv_set_api makes |api| serve every path outside /flv/ in place of
 * the fallback: any method (OPTIONS too), with a request body
 * (Content-Length only, at most the config's max_body; chunked: 411,
 * larger: 413). */
void httpflv_set_api(httpflv_t *srv, httpflv_api_t api, void *arg);

/* httpflv_set_admit makes every player ask |ops| before it subscribes (see
 * admit.h); NULL: all admitted. The agent sets it on the public listener
 * only. |ops| and |ud| must outlive the server. */
void httpflv_set_admit(httpflv_t *srv, const dp_admit_ops *ops, void *ud);

/* httpflv_host_is_local tells whether a Host header value (|len| bytes) names
 * this machine without a DNS name: an IPv4 or bracketed IPv6 literal, or
 * "localhost", each with an optional port; also an empty value. A browser
 * sends the name it resolved, so a rebound name is caught here. */
int httpflv_host_is_local(const char *v, size_t len);

/* httpflv_free closes every connection and stops listening; accepts NULL.
 * It does not close the listening socket. */
void httpflv_free(httpflv_t *srv);

/* httpflv_drain stops accepting and closes the connections still reading
 * a request; replies and players finish (players end when the hub ends
 * their subscriptions: hub_drain). The listening socket stays the
 * caller's. */
void httpflv_drain(httpflv_t *srv);

/* httpflv_get_stats fills |out| with the server's counters. */
void httpflv_get_stats(const httpflv_t *srv, httpflv_stats_t *out);

#endif
