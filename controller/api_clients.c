/* /api/cascade/clients: the node registry. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "ctlsrv.h"
#include "log.h"
#include "scram.h"
#include "valid.h"

#define SQLSTATE_UNIQUE "23505"
#define SQLSTATE_FK "23503"

/* One topology change at a time, so two concurrent updates cannot close a
 * loop that neither sees. */
#define TOPOLOGY_LOCK "SELECT pg_advisory_xact_lock(7072016531)"

#define ENVELOPE_OK "{\"code\":0,\"message\":\"success\",\"data\":"

static int reply_buf(http_req_t *r, int status, jbuf_t *b) {
  if (b->oom) {
    free(b->buf);
    return http_reply_error(r, 500, "internal error");
  }
  return http_reply_json_text(r, status, b->buf, b->len);
}

static int reply_node(http_req_t *r, int status, PGresult *res) {
  jbuf_t b = {0};
  jb_str(&b, ENVELOPE_OK);
  api_node_write(&b, res, 0);
  jb_str(&b, "}");
  PQclear(res);
  return reply_buf(r, status, &b);
}

/* reply_write_error answers a failed INSERT/UPDATE by its SQLSTATE. */
static int reply_write_error(http_req_t *r, PGresult *res) {
  const char *st = db_sqlstate(res);
  if (strcmp(st, SQLSTATE_UNIQUE) == 0) {
    PQclear(res);
    return http_reply_error(r, 409, "name already exists");
  }
  if (strcmp(st, SQLSTATE_FK) == 0) {
    PQclear(res);
    return http_reply_error(r, 400, "parent_id: no such node");
  }
  return api_reply_failed(r, res);
}

int api_clients_list(http_req_t *r) {
  valid_list_t q;
  char err[256], limit[24], offset[24];
  int pending;

  if (valid_list_query(http_arg(r, "page"), http_arg(r, "size"), http_arg(r, "online"),
                       http_arg(r, "name"), &q, err, sizeof(err)) != 0 ||
      valid_bool_query("pending", http_arg(r, "pending"), &pending, err, sizeof(err)) != 0)
    return http_reply_error(r, 400, "%s", err);
  snprintf(limit, sizeof(limit), "%ld", q.size);
  snprintf(offset, sizeof(offset), "%ld", (q.page - 1) * q.size);
  const char *pend = pending < 0 ? NULL : (pending ? "true" : "false");
  const char *params[5] = {q.online < 0 ? NULL : (q.online ? "true" : "false"), q.name, limit,
                           offset, pend};
  PGresult *res = api_exec(r, DB_NODE_LIST, 5, params);
  if (res == NULL) return API_ANSWERED;
  if (!db_ok(res)) return reply_write_error(r, res);

  long long total = 0;
  int n = PQntuples(res);
  jbuf_t b = {0};
  char tail[96];
  jb_str(&b, ENVELOPE_OK "[");
  for (int i = 0; i < n; i++) {
    if (i) jb_str(&b, ",");
    api_node_write(&b, res, i);
  }
  jb_str(&b, "]");
  if (n > 0) {
    total = strtoll(PQgetvalue(res, 0, API_NODE_NCOLS), NULL, 10);
  } else {
    /* Past the last page: the count is not there to read. */
    PQclear(res);
    const char *cparams[3] = {params[0], params[1], pend};
    res = api_exec(r, DB_NODE_COUNT, 3, cparams);
    if (res == NULL) {
      free(b.buf);
      return API_ANSWERED;
    }
    if (db_ok(res)) total = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
  }
  PQclear(res);
  snprintf(tail, sizeof(tail), ",\"total\":%lld,\"page\":%ld,\"size\":%ld}", total, q.page,
           q.size);
  jb_str(&b, tail);
  return reply_buf(r, 200, &b);
}

int api_clients_get(http_req_t *r) {
  char id[24];
  snprintf(id, sizeof(id), "%lld", (long long)r->id);
  const char *params[1] = {id};
  PGresult *res = api_exec(r, DB_NODE_GET, 1, params);
  if (res == NULL) return API_ANSWERED;
  if (!db_ok(res)) return reply_write_error(r, res);
  if (PQntuples(res) == 0) {
    PQclear(res);
    return http_reply_error(r, 404, "no node with id %lld", (long long)r->id);
  }
  return reply_node(r, 200, res);
}

/* make_verifier turns the secret into its stored form; the secret itself
 * goes no further than this function. */
static int make_verifier(const valid_node_t *n, char *out, size_t len) {
  scram_verifier_t v;
  if (scram_verifier_new(n->secret, n->secret_len, SCRAM_ITER_DEFAULT, &v) != 0) return -1;
  return scram_verifier_format(&v, out, len) < 0 ? -1 : 0;
}

int api_clients_create(http_req_t *r) {
  valid_node_t n;
  char err[256], verifier[SCRAM_VERIFIER_MAX], parent[24];

  if (valid_node_body(r->body, r->body_len, 0, &n, err, sizeof(err)) != 0)
    return http_reply_error(r, 400, "%s", err);
  if (make_verifier(&n, verifier, sizeof(verifier)) != 0) {
    valid_node_free(&n);
    return http_reply_error(r, 500, "internal error");
  }
  snprintf(parent, sizeof(parent), "%lld", (long long)n.parent_id);
  const char *params[6] = {n.name, verifier, n.parent_id ? parent : NULL,
                           n.labels ? n.labels : "{}", r->actor, r->source};
  PGresult *res = api_exec(r, DB_NODE_CREATE, 6, params);
  valid_node_free(&n);
  if (res == NULL) return API_ANSWERED;
  if (!db_ok(res)) return reply_write_error(r, res);
  ctlsrv_wake(r->ctl->ctlsrv);
  log_info("api", "node created id=%s actor=%s source=%s", PQgetvalue(res, 0, 0), r->actor,
           r->source);
  return reply_node(r, 201, res);
}

/* update_topology runs the update inside a transaction holding the
 * topology lock, after checking the new parent exists and is not a
 * descendant. Returns the update's result, or NULL having answered. */
static PGresult *update_topology(http_req_t *r, const valid_node_t *n, const char *const *params) {
  db_pool_t *db = &r->ctl->db;
  char id[24], parent[24];
  int err = 0;
  PGresult *res = NULL;

  snprintf(id, sizeof(id), "%lld", (long long)r->id);
  snprintf(parent, sizeof(parent), "%lld", (long long)n->parent_id);
  const char *cyc[2] = {id, parent};
  db_conn_t *c = db_acquire(db, &err);
  if (c == NULL) goto db_fail;
  res = db_exec_sql(db, c, "BEGIN; " TOPOLOGY_LOCK, 0, &err);
  if (res == NULL) goto db_fail;
  if (!db_ok(res)) goto sql_fail;
  PQclear(res);
  res = db_exec(db, c, DB_NODE_EXISTS, 1, cyc + 1, &err);
  if (res == NULL) goto db_fail;
  if (!db_ok(res)) goto sql_fail;
  if (PQntuples(res) == 0) {
    PQclear(res);
    PQclear(db_exec_sql(db, c, "ROLLBACK", 0, &err));
    db_release(db, c);
    http_reply_error(r, 400, "parent_id: no such node");
    return NULL;
  }
  PQclear(res);
  res = db_exec(db, c, DB_NODE_CYCLE, 2, cyc, &err);
  if (res == NULL) goto db_fail;
  if (!db_ok(res)) goto sql_fail;
  if (PQntuples(res) > 0) {
    PQclear(res);
    PQclear(db_exec_sql(db, c, "ROLLBACK", 0, &err));
    db_release(db, c);
    http_reply_error(r, 400, "parent_id: node %lld is below this node; that would make a loop",
                     (long long)n->parent_id);
    return NULL;
  }
  PQclear(res);
  res = db_exec(db, c, DB_NODE_UPDATE, 23, params, &err);
  if (res == NULL) goto db_fail;
  if (db_ok(res)) {
    PGresult *cm = db_exec_sql(db, c, "COMMIT", 0, &err);
    if (!db_ok(cm)) {
      PQclear(res);
      res = cm;
      goto sql_fail;
    }
    PQclear(cm);
  } else {
    PQclear(db_exec_sql(db, c, "ROLLBACK", 0, &err));
  }
  db_release(db, c);
  return res; /* a failed result goes to reply_write_error */

sql_fail:
  PQclear(db_exec_sql(db, c, "ROLLBACK", 0, &err));
  db_release(db, c);
  reply_write_error(r, res);
  return NULL;

db_fail:
  db_release(db, c);
  http_reply_db_error(r, err);
  return NULL;
}

int api_clients_update(http_req_t *r) {
  valid_node_t n;
  char err[256], verifier[SCRAM_VERIFIER_MAX] = "", id[24], parent[24];
  PGresult *res;

  if (valid_node_body(r->body, r->body_len, 1, &n, err, sizeof(err)) != 0)
    return http_reply_error(r, 400, "%s", err);
  if (n.has_parent && n.parent_id == r->id) {
    valid_node_free(&n);
    return http_reply_error(r, 400, "parent_id: a node cannot be its own parent");
  }
  if (n.secret && make_verifier(&n, verifier, sizeof(verifier)) != 0) {
    valid_node_free(&n);
    return http_reply_error(r, 500, "internal error");
  }
  snprintf(id, sizeof(id), "%lld", (long long)r->id);
  snprintf(parent, sizeof(parent), "%lld", (long long)n.parent_id);
  const char *params[23] = {
      id,
      n.name ? "true" : "false", n.name,
      n.secret ? "true" : "false", n.secret ? verifier : NULL,
      n.has_parent ? "true" : "false", n.parent_id ? parent : NULL,
      n.labels ? "true" : "false", n.labels,
      n.has_relay ? "true" : "false", n.relay_allow,
      n.has_relay ? "true" : "false", n.relay_deny,
      n.has_onsub ? "true" : "false", n.onsub_pull,
      n.has_autopush ? "true" : "false",
      n.autopush < 0 ? NULL : n.autopush ? "true" : "false",
      r->actor, r->source,
      n.has_pending ? "true" : "false", n.pending ? "true" : "false",
      n.has_streamauth ? "true" : "false", n.streamauth};
  if (n.has_parent && n.parent_id)
    res = update_topology(r, &n, params);
  else
    res = api_exec(r, DB_NODE_UPDATE, 23, params);
  valid_node_free(&n);
  if (res == NULL) return API_ANSWERED;
  if (!db_ok(res)) return reply_write_error(r, res);
  if (PQntuples(res) == 0) {
    PQclear(res);
    return http_reply_error(r, 404, "no node with id %lld", (long long)r->id);
  }
  ctlsrv_wake(r->ctl->ctlsrv);
  log_info("api", "node updated id=%s actor=%s source=%s", id, r->actor, r->source);
  return reply_node(r, 200, res);
}

int api_clients_delete(http_req_t *r) {
  char id[24];
  snprintf(id, sizeof(id), "%lld", (long long)r->id);
  const char *params[3] = {id, r->actor, r->source};
  PGresult *res = api_exec(r, DB_NODE_DELETE, 3, params);
  if (res == NULL) return API_ANSWERED;
  if (!db_ok(res)) return reply_write_error(r, res);
  if (PQntuples(res) == 0) {
    PQclear(res);
    return http_reply_error(r, 404, "no node with id %lld", (long long)r->id);
  }
  ctlsrv_wake(r->ctl->ctlsrv);
  log_info("api", "node deleted id=%s actor=%s source=%s", id, r->actor, r->source);
  return reply_node(r, 200, res);
}
