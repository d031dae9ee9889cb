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

int api_tokens_list(http_req_t *r);
int api_tokens_create(http_req_t *r);
int api_tokens_delete(http_req_t *r);

/* api_exec runs one prepared statement on a pooled connection. On a
 * database failure it answers the request (503/500) and returns NULL. */
PGresult *api_exec(http_req_t *r, db_stmt_t stmt, int n, const char *const *params);

/* api_reply_failed answers a failed statement (and frees |res|): 503 for a
 * statement timeout, else 500 with the error logged. */
int api_reply_failed(http_req_t *r, PGresult *res);

/* api_time turns a timestamptz column into RFC 3339 UTC JSON (or null). */
json_t *api_time(const PGresult *res, int i, int col);

/* Columns of a node row (NODE_COLS in db.c). */
#define API_NODE_NCOLS 17

/* api_node_json turns row |i| of a node query (NODE_COLS order) into JSON. */
json_t *api_node_json(const PGresult *res, int i);

#endif
