/* GET /api/cascade/streams: the stream directory, from the stream reports
 * the agents' heartbeats carry (kept with each live session in the
 * database by the replica holding it: any replica answers; a node that goes
 * offline takes its streams with it). See docs/api.md. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "timefmt.h"
#include "ctl.h"
#include "ctlsrv.h"
#include "reply.h"
#include "report.h"

typedef struct entry {
  int64_t node;
  char name[72];
  ctlsrv_stream_t st;         /* path owned by the entry */
} entry_t;

typedef struct collect {
  entry_t *v;
  size_t n, cap;
  int oom;
} collect_t;

static void add(int64_t node, const char *name, const ctlsrv_stream_t *st, void *arg) {
  collect_t *c = arg;
  if (c->oom) return;
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 64;
    entry_t *v = realloc(c->v, cap * sizeof(*v));
    if (v == NULL) {
      c->oom = 1;
      return;
    }
    c->v = v;
    c->cap = cap;
  }
  entry_t *e = &c->v[c->n];
  e->node = node;
  snprintf(e->name, sizeof(e->name), "%s", name);
  e->st = *st;
  if ((e->st.path = strdup(st->path)) == NULL) {
    c->oom = 1;
    return;
  }
  c->n++;
}

static int by_path_node(const void *a, const void *b) {
  const entry_t *x = a, *y = b;
  int c = strcmp(x->st.path, y->st.path);
  if (c) return c;
  return x->node < y->node ? -1 : x->node > y->node;
}

static const char *kind_name(int origin) {
  switch (origin) {
  case CTLSRV_ORIGIN_LOCAL: return "local";
  case CTLSRV_ORIGIN_PUSHED: return "pushed";
  case CTLSRV_ORIGIN_PULLED: return "pulled";
  default: return "unknown";
  }
}

static json_t *time_or_null(int64_t t) {
  char buf[TIMEFMT_LEN];
  const char *s = timefmt_rfc3339(t, buf);
  return s ? json_string(s) : json_null();
}

static json_t *node_players(const entry_t *e, json_int_t *total) {
  json_t *p = json_object();
  json_int_t sum = 0;
  for (size_t k = 0; k < e->st.nplayers; k++) {
    json_object_set_new(p, e->st.players[k].protocol, json_integer(e->st.players[k].count));
    sum += e->st.players[k].count;
  }
  json_object_set_new(p, "total", json_integer(sum));
  *total += sum;
  return json_pack("{s:I,s:s,s:o}", "id", (json_int_t)e->node, "name", e->name, "players", p);
}

static void add_incomplete(json_t *arg, int64_t node, const char *name, size_t reported,
                           uint32_t total) {
  json_array_append_new(arg, json_pack("{s:I,s:s,s:I,s:I}", "id", (json_int_t)node, "name", name,
                                       "reported", (json_int_t)reported, "total",
                                       (json_int_t)total));
}

int api_streams(http_req_t *r) {
  collect_t c = {0};
  PGresult *res = api_exec(r, DB_SESSION_REPORTS_READ, 0, NULL);
  if (res == NULL) return API_ANSWERED;
  if (!db_ok(res)) return api_reply_failed(r, res);
  json_t *inc = json_array();
  for (int i = 0; i < PQntuples(res); i++) {
    json_t *rep = json_loads(PQgetvalue(res, i, 2), 0, NULL);
    int64_t node = strtoll(PQgetvalue(res, i, 0), NULL, 10);
    uint32_t total = 0;
    size_t n = report_streams(rep, node, PQgetvalue(res, i, 1), add, &c, &total);
    /* Nodes with more streams than a heartbeat carries: listed, so that a
     * partial directory says so (rows come by id). */
    if (rep && total > n) add_incomplete(inc, node, PQgetvalue(res, i, 1), n, total);
    json_decref(rep);
  }
  PQclear(res);
  if (c.oom) {
    json_decref(inc);
    for (size_t i = 0; i < c.n; i++) free(c.v[i].st.path);
    free(c.v);
    return http_reply_error(r, 500, "internal error");
  }
  if (c.n) qsort(c.v, c.n, sizeof(*c.v), by_path_node);
  json_t *list = json_array();
  for (size_t i = 0; i < c.n;) {
    size_t j = i;
    while (j < c.n && strcmp(c.v[j].st.path, c.v[i].st.path) == 0) j++;
    json_t *origin = json_null(), *relays = json_array(), *players = json_array();
    json_int_t total = 0;
    const entry_t *o = NULL;
    for (size_t k = i; k < j; k++)
      if (c.v[k].st.origin == CTLSRV_ORIGIN_LOCAL) {
        o = &c.v[k];
        break;
      }
    if (o) {
      origin = json_pack("{s:I,s:s,s:s,s:o}", "id", (json_int_t)o->node, "name", o->name, "kind",
                         "local", "since", time_or_null(o->st.since));
    } else {
      /* Nobody here publishes it: the node a relaying node names, if any. */
      for (size_t k = i; k < j; k++)
        if (c.v[k].st.origin_node > 0) {
          origin = json_pack("{s:I,s:n,s:s,s:n}", "id", (json_int_t)c.v[k].st.origin_node,
                             "name", "kind", "local", "since");
          break;
        }
    }
    for (size_t k = i; k < j; k++) {
      const entry_t *e = &c.v[k];
      if (e != o)
        json_array_append_new(relays,
                              json_pack("{s:I,s:s,s:s,s:o}", "id", (json_int_t)e->node, "name",
                                        e->name, "kind", kind_name(e->st.origin), "since",
                                        time_or_null(e->st.since)));
      json_array_append_new(players, node_players(e, &total));
    }
    json_array_append_new(list, json_pack("{s:s,s:o,s:o,s:o,s:I}", "path", c.v[i].st.path,
                                          "origin", origin, "relays", relays, "players", players,
                                          "total_players", total));
    i = j;
  }
  for (size_t i = 0; i < c.n; i++) free(c.v[i].st.path);
  free(c.v);
  json_t *body = reply_envelope(0, NULL, list);
  if (body) json_object_set_new(body, "incomplete", inc);
  else json_decref(inc);
  return http_reply_json(r, 200, body);
}
