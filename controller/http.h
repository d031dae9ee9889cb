/* The REST API server on libmicrohttpd: request bodies with a size cap,
 * routing, authentication and roles, JSON replies, request metrics. */
#ifndef CASCADE_HTTP_H
#define CASCADE_HTTP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ctl.h"

struct MHD_Connection;
struct MHD_Response;
struct feed_sub;

typedef struct http_req {
  ctl_t *ctl;
  struct MHD_Connection *conn;
  const char *method;
  const char *url;
  char *body;              /* owned; NUL-terminated */
  size_t body_len;
  size_t body_cap;
  int too_large;
  int dispatched;
  int route;               /* index into the route table, for metrics */
  int status;              /* the status sent */
  int64_t start_us;
  int64_t id;              /* the {id} of the path, when the route has one */
  int role;                /* role_t of the caller */
  char actor[32];          /* "admin" or "token:N": for the audit trail */
  char source[64];         /* peer address */
  char *raw_uri;           /* owned: the request target as sent (not decoded) */
  struct ctl_relay *relay; /* API relay in progress (a reference), or NULL */
  int forwarded;           /* a relay forwarded by another replica (fwdsig.h) */
  int64_t token_id;        /* the API token's id; 0 for the bootstrap token */
  struct feed_sub *feed;   /* an open live feed (api_feed.c), or NULL */
} http_req_t;

/* The API relay as the HTTP server sees it: api_relay.c fills it in
 * (api_relay_http) and main.c sets ctl->http_relay, so that http.c routes
 * /api/relay/ without depending on the relay. */
typedef struct http_relay {
  int (*serve)(http_req_t *r);   /* ANY /api/relay/{id}/{path} */
  int (*resume)(http_req_t *r);  /* a suspended relay request was resumed */
  void (*done)(http_req_t *r);   /* the request ended (answered or gone) */
  void (*shutdown)(ctl_t *ctl);  /* before MHD stops: no connection may stay suspended */
} http_relay_t;

/* http_start binds http.listenaddr and starts serving. 0 or -1 with |err|. */
int http_start(ctl_t *ctl, char *err, size_t errlen);

/* http_stop stops serving and waits for the workers; accepts a stopped ctl. */
void http_stop(ctl_t *ctl);

/* http_reply_json sends |body| (stolen) as JSON with |status|. */
int http_reply_json(http_req_t *r, int status, json_t *body);

/* http_reply_data sends the success envelope around |data| (stolen). */
int http_reply_data(http_req_t *r, int status, json_t *data);

/* http_reply_error sends an error envelope: code = status, the message. */
int http_reply_error(http_req_t *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* http_reply_db_error answers a DB_ERR_* or failed-statement condition. */
int http_reply_db_error(http_req_t *r, int err);

/* http_reply_json_text sends |len| bytes of JSON |text|, taking it
 * (malloc'd; freed after sending, or now on failure). */
int http_reply_json_text(http_req_t *r, int status, char *text, size_t len);

/* http_reply_text sends |len| bytes of |text| (copied). */
int http_reply_text(http_req_t *r, int status, const char *ctype, const char *text,
                    size_t len);

/* http_queue_response sends |resp| (a reference is taken; the caller's
 * is released) with |status| and the headers every answer carries
 * (Cache-Control, CORS). */
int http_queue_response(http_req_t *r, int status, struct MHD_Response *resp);

/* http_cors_headers adds the CORS headers of the request's Origin, if any,
 * to |resp| (for answers not sent through http_queue_response). */
void http_cors_headers(http_req_t *r, struct MHD_Response *resp);

/* http_print_routes writes every route as "METHOD PATH ROLE" lines (ROLE
 * none, viewer or admin; the API relay as each method it passes on): what
 * docs/api.md and controller/openapi.json must describe. */
void http_print_routes(FILE *out);

/* http_arg returns query parameter |key| or NULL. */
const char *http_arg(http_req_t *r, const char *key);

/* Route names for metrics, indexed like the route table. */
extern const char *const http_route_labels[];

#endif
