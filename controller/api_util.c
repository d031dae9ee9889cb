/* Helpers shared by the REST handlers. */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "log.h"

PGresult *api_exec(http_req_t *r, db_stmt_t stmt, int n, const char *const *params) {
  int err = 0;
  db_conn_t *c = db_acquire(&r->ctl->db, &err);
  if (c == NULL) {
    http_reply_db_error(r, err);
    return NULL;
  }
  PGresult *res = db_exec(&r->ctl->db, c, stmt, n, params, &err);
  db_release(&r->ctl->db, c);
  if (res == NULL) {
    http_reply_db_error(r, err);
    return NULL;
  }
  return res;
}

json_t *api_time(const PGresult *res, int i, int col) {
  /* "2026-11-29 15:39:17.123456+00" (TimeZone UTC) -> "2026-11-29T15:39:17Z" */
  const char *v = PQgetvalue(res, i, col);
  char buf[21];
  if (PQgetisnull(res, i, col)) return json_null();
  if (strlen(v) < 19 || v[10] != ' ') return json_string(v);
  memcpy(buf, v, 19);
  buf[10] = 'T';
  buf[19] = 'Z';
  buf[20] = '\0';
  return json_string(buf);
}

static json_t *json_col(const PGresult *res, int i, int col) {
  if (PQgetisnull(res, i, col)) return json_null();
  json_t *v = json_loads(PQgetvalue(res, i, col), 0, NULL);
  return v ? v : json_null();
}

/* rules_json shows the rules the controller sets for a node; null where
 * the agent's own file decides. */
static json_t *rules_relay(const PGresult *res, int i) {
  if (PQgetisnull(res, i, 13) && PQgetisnull(res, i, 14)) return json_null();
  return json_pack("{s:o, s:o}", "allow", json_col(res, i, 13), "deny", json_col(res, i, 14));
}

static json_t *rules_onsub(const PGresult *res, int i) {
  if (PQgetisnull(res, i, 15)) return json_null();
  json_t *pairs = json_col(res, i, 15), *pull = json_object(), *e;
  size_t k;
  json_array_foreach(pairs, k, e) {
    json_object_set(pull, json_string_value(json_array_get(e, 0)), json_array_get(e, 1));
  }
  json_decref(pairs);
  return json_pack("{s:o}", "pull", pull);
}

json_t *api_node_json(const PGresult *res, int i) {
  json_t *labels = json_loads(PQgetvalue(res, i, 5), 0, NULL);
  json_t *o = json_pack(
      "{s:I, s:s, s:s, s:b, s:o, s:o, s:o, s:o, s:o, s:{s:I, s:I}, s:s, s:s, s:o, s:o, s:o}",
      "id", (json_int_t)strtoll(PQgetvalue(res, i, 0), NULL, 10),
      "name", PQgetvalue(res, i, 1),
      "ip", PQgetvalue(res, i, 2),
      "online", PQgetvalue(res, i, 3)[0] == 't',
      "parent_id", PQgetisnull(res, i, 4)
                       ? json_null()
                       : json_integer(strtoll(PQgetvalue(res, i, 4), NULL, 10)),
      "labels", labels ? labels : json_object(),
      "created_time", api_time(res, i, 6),
      "updated_time", api_time(res, i, 7),
      "last_seen", api_time(res, i, 8),
      "config_generation",
      "desired", (json_int_t)strtoll(PQgetvalue(res, i, 9), NULL, 10),
      "applied", (json_int_t)strtoll(PQgetvalue(res, i, 10), NULL, 10),
      "quic", PQgetvalue(res, i, 11),
      "version", PQgetvalue(res, i, 12),
      "relayapi", rules_relay(res, i),
      "onsub", rules_onsub(res, i),
      "autopush", PQgetisnull(res, i, 16) ? json_null()
                                          : json_boolean(PQgetvalue(res, i, 16)[0] == 't'));
  return o;
}

int api_reply_failed(http_req_t *r, PGresult *res) {
  if (strcmp(db_sqlstate(res), "57014") == 0) {
    /* statement_timeout: the server gave up on it. */
    PQclear(res);
    return http_reply_db_error(r, DB_ERR_TIMEOUT);
  }
  char q[256];
  log_error("api", "%s %s: %s", r->method, r->url,
            log_quote(PQresultErrorMessage(res), q, sizeof(q)));
  PQclear(res);
  return http_reply_error(r, 500, "internal error");
}
