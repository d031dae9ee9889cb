/* REST handlers. Each answers exactly once through http_reply_*. */
#ifndef CASCADE_API_H
#define CASCADE_API_H

#include "http.h"

/* What a handler returns after api_exec answered for it (MHD_YES). */
#define API_ANSWERED 1

int api_healthz(http_req_t *r);
int api_readyz(http_req_t *r);
int api_metrics(http_req_t *r);

int api_clients_list(http_req_t *r);
int api_clients_get(http_req_t *r);
int api_clients_create(http_req_t *r);
int api_clients_update(http_req_t *r);
int api_clients_delete(http_req_t *r);

int api_topology(http_req_t *r);
int api_events(http_req_t *r);
int api_streams(http_req_t *r);

int api_tokens_list(http_req_t *r);
int api_tokens_create(http_req_t *r);
int api_tokens_delete(http_req_t *r);

int api_streamauth_get(http_req_t *r);
int api_streamauth_put(http_req_t *r);
int api_streamauth_key_create(http_req_t *r);
int api_streamauth_key_delete(http_req_t *r);
int api_streamauth_token_create(http_req_t *r);

/* api_exec runs one prepared statement on a pooled connection. On a
 * database failure it answers the request (503/500) and returns NULL. */
PGresult *api_exec(http_req_t *r, db_stmt_t stmt, int n, const char *const *params);

/* api_reply_failed answers a failed statement (and frees |res|): 503 for a
 * statement timeout, else 500 with the error logged. */
int api_reply_failed(http_req_t *r, PGresult *res);

/* api_time turns a timestamptz column into RFC 3339 UTC JSON (or null). */
json_t *api_time(const PGresult *res, int i, int col);

/* Columns of a node row (NODE_COLS in db.c). */
#define API_NODE_NCOLS 19

/* A growing JSON text buffer. */
typedef struct {
  char *buf;
  size_t len, cap;
  int oom;
} jbuf_t;

void jb_raw(jbuf_t *b, const char *s, size_t n);
void jb_str(jbuf_t *b, const char *s);
void jb_quoted(jbuf_t *b, const char *s);  /* as a JSON string */

/* api_node_write appends row |i| of a node query (NODE_COLS order) as a
 * JSON object. */
void api_node_write(jbuf_t *b, const PGresult *res, int i);

#endif
