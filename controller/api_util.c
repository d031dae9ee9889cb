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

static json_t *opt_string(const PGresult *res, int i, int col) {
  return PQgetisnull(res, i, col) ? json_null() : json_string(PQgetvalue(res, i, col));
}

json_t *api_node_json(const PGresult *res, int i) {
  json_t *labels = json_loads(PQgetvalue(res, i, 5), 0, NULL);
  json_t *o = json_pack("{s:I, s:s, s:s, s:b, s:o, s:o, s:s, s:s, s:o}",
                        "id", (json_int_t)strtoll(PQgetvalue(res, i, 0), NULL, 10),
                        "name", PQgetvalue(res, i, 1),
                        "ip", PQgetvalue(res, i, 2),
                        "online", PQgetvalue(res, i, 3)[0] == 't',
                        "parent_id", PQgetisnull(res, i, 4)
                            ? json_null()
                            : json_integer(strtoll(PQgetvalue(res, i, 4), NULL, 10)),
                        "labels", labels ? labels : json_object(),
                        "created_time", PQgetvalue(res, i, 6),
                        "updated_time", PQgetvalue(res, i, 7),
                        "last_seen", opt_string(res, i, 8));
  return o;
}
