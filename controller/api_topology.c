/* /api/cascade/topology and /api/cascade/events: the tree and the audit
 * trail, read-only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "ctlsrv.h"
#include "report.h"
#include "valid.h"

/* api_unix_time formats unix seconds like the API's other times. */
static json_t *api_unix_time(int64_t t) {
  char buf[32];
  struct tm tm;
  time_t tt = (time_t)t;
  if (gmtime_r(&tt, &tm) == NULL) return json_null();
  strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return json_string(buf);
}

/* reports_of loads every live session's report: |ids| ascending, |reps|
 * parsed (NULL when unreadable). Returns how many, or -1 (answered). */
static int reports_of(http_req_t *r, int64_t **ids, json_t ***reps) {
  PGresult *res = api_exec(r, DB_SESSION_REPORTS_READ, 0, NULL);
  if (res == NULL) return -1;
  if (!db_ok(res)) {
    api_reply_failed(r, res);
    return -1;
  }
  int n = PQntuples(res);
  *ids = calloc((size_t)n + 1, sizeof(**ids));
  *reps = calloc((size_t)n + 1, sizeof(**reps));
  if (*ids == NULL || *reps == NULL) n = 0;
  for (int i = 0; i < n; i++) {
    (*ids)[i] = strtoll(PQgetvalue(res, i, 0), NULL, 10);
    (*reps)[i] = json_loads(PQgetvalue(res, i, 2), 0, NULL);
  }
  PQclear(res);
  return n;
}

static const json_t *report_of(int64_t *ids, json_t **reps, int n, int64_t id) {
  int lo = 0, hi = n - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    if (ids[mid] == id) return reps[mid];
    if (ids[mid] < id) lo = mid + 1;
    else hi = mid - 1;
  }
  return NULL;
}

int api_topology(http_req_t *r) {
  int64_t *rids = NULL;
  json_t **reps = NULL;
  int nrep = reports_of(r, &rids, &reps);
  if (nrep < 0) return API_ANSWERED;
  PGresult *res = api_exec(r, DB_NODE_TOPOLOGY, 0, NULL);
  if (res == NULL || !db_ok(res)) {
    for (int i = 0; i < nrep; i++) json_decref(reps[i]);
    free(rids);
    free(reps);
    return res == NULL ? API_ANSWERED : api_reply_failed(r, res);
  }
  int n = PQntuples(res);
  json_t **nodes = calloc((size_t)(n ? n : 1), sizeof(json_t *));
  int64_t *ids = calloc((size_t)(n ? n : 1), sizeof(int64_t));
  json_t *roots = json_array();
  if (nodes == NULL || ids == NULL || roots == NULL) {
    for (int i = 0; i < nrep; i++) json_decref(reps[i]);
    free(rids);
    free(reps);
    free(nodes);
    free(ids);
    json_decref(roots);
    PQclear(res);
    return http_reply_error(r, 500, "internal error");
  }
  /* Rows come ordered by id; a child may come before its parent. */
  for (int i = 0; i < n; i++) {
    ids[i] = strtoll(PQgetvalue(res, i, 0), NULL, 10);
    nodes[i] = json_pack("{s:I, s:s, s:b, s:[]}", "id", (json_int_t)ids[i], "name",
                         PQgetvalue(res, i, 1), "online", PQgetvalue(res, i, 2)[0] == 't',
                         "children");
  }
  for (int i = 0; i < n; i++) {
    json_t *parent = NULL;
    if (!PQgetisnull(res, i, 3)) {
      int64_t pid = strtoll(PQgetvalue(res, i, 3), NULL, 10);
      /* ids are sorted: binary search. */
      int lo = 0, hi = n - 1;
      while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (ids[mid] == pid) {
          parent = nodes[mid];
          break;
        }
        if (ids[mid] < pid) lo = mid + 1;
        else hi = mid - 1;
      }
    }
    if (!PQgetisnull(res, i, 3)) {
      /* The QUIC link to its parent, from the agents' heartbeats: the
       * child's view first (it dials, it knows best), else the parent's. */
      ctlsrv_link_t l;
      int64_t pid = strtoll(PQgetvalue(res, i, 3), NULL, 10);
      json_t *link = json_null();
      if (PQgetvalue(res, i, 2)[0] == 't' &&
          (report_link(report_of(rids, reps, nrep, ids[i]), CTLSRV_LINK_PARENT, pid, &l) ||
           report_link(report_of(rids, reps, nrep, pid), CTLSRV_LINK_CHILD, ids[i], &l)))
        link = json_pack("{s:b,s:o,s:o}", "up", l.up, "rtt_ms",
                         l.up ? json_real((double)l.rtt_us / 1000.0) : json_null(), "since",
                         l.up && l.up_since ? api_unix_time(l.up_since) : json_null());
      json_object_set_new(nodes[i], "link", link ? link : json_null());
    }
    json_array_append(parent ? json_object_get(parent, "children") : roots, nodes[i]);
  }
  for (int i = 0; i < n; i++) json_decref(nodes[i]);
  for (int i = 0; i < nrep; i++) json_decref(reps[i]);
  free(rids);
  free(reps);
  free(nodes);
  free(ids);
  PQclear(res);
  return http_reply_data(r, 200, roots);
}

int api_events(http_req_t *r) {
  valid_list_t q;
  char err[256], limit[24], offset[24];
  int64_t node = 0;
  const char *ns = http_arg(r, "node");

  if (valid_list_query(http_arg(r, "page"), http_arg(r, "size"), NULL, NULL, &q, err,
                       sizeof(err)) != 0)
    return http_reply_error(r, 400, "%s", err);
  if (ns && valid_id(ns, &node) != 0)
    return http_reply_error(r, 400, "node: must be a positive integer");
  snprintf(limit, sizeof(limit), "%ld", q.size);
  snprintf(offset, sizeof(offset), "%ld", (q.page - 1) * q.size);
  const char *params[3] = {ns, limit, offset};
  PGresult *res = api_exec(r, DB_EVENTS_LIST, 3, params);
  if (res == NULL) return API_ANSWERED;
  if (!db_ok(res)) return api_reply_failed(r, res);
  json_t *data = json_array();
  long long total = 0;
  for (int i = 0; i < PQntuples(res); i++) {
    json_t *detail = json_loads(PQgetvalue(res, i, 6), 0, NULL);
    json_array_append_new(
        data, json_pack("{s:I, s:o, s:s, s:s, s:o, s:s, s:o}", "id",
                        (json_int_t)strtoll(PQgetvalue(res, i, 0), NULL, 10), "time",
                        api_time(res, i, 1), "actor", PQgetvalue(res, i, 2), "action",
                        PQgetvalue(res, i, 3), "node",
                        PQgetisnull(res, i, 4)
                            ? json_null()
                            : json_integer(strtoll(PQgetvalue(res, i, 4), NULL, 10)),
                        "source", PQgetvalue(res, i, 5), "detail",
                        detail ? detail : json_object()));
    total = strtoll(PQgetvalue(res, i, 7), NULL, 10);
  }
  PQclear(res);
  json_t *body = json_pack("{s:i, s:s, s:o, s:I, s:I, s:I}", "code", 0, "message", "success",
                           "data", data, "total", (json_int_t)total, "page", (json_int_t)q.page,
                           "size", (json_int_t)q.size);
  if (body == NULL) return http_reply_error(r, 500, "internal error");
  return http_reply_json(r, 200, body);
}
