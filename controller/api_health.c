/* /healthz, /readyz, /metrics: for orchestrators and scrapers; no token. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "api_feed.h"
#include "ctlgate.h"
#include "ctlsrv.h"

int api_healthz(http_req_t *r) {
  return http_reply_data(r, 200, json_pack("{s:s, s:s}", "status", "ok", "version",
                                           CASCADE_VERSION));
}

int api_readyz(http_req_t *r) {
  int err = 0;
  db_conn_t *c = db_acquire(&r->ctl->db, &err);
  PGresult *res = c ? db_exec(&r->ctl->db, c, DB_PING, 0, NULL, &err) : NULL;
  int ok = db_ok(res);
  PQclear(res);
  db_release(&r->ctl->db, c);
  if (!ok) return http_reply_error(r, 503, "database unavailable");
  return http_reply_data(r, 200, json_pack("{s:s}", "database", "ok"));
}

int api_metrics(http_req_t *r) {
  ctl_t *ctl = r->ctl;
  char *buf = NULL;
  size_t len = 0;
  int err = 0;
  FILE *out = open_memstream(&buf, &len);
  if (out == NULL) return http_reply_error(r, 500, "internal error");

  ctl_metrics_write(&ctl->metrics, http_route_labels, out);
  fprintf(out,
          "# HELP cascade_db_pool_size PostgreSQL connections in the pool.\n"
          "# TYPE cascade_db_pool_size gauge\ncascade_db_pool_size %d\n"
          "# HELP cascade_db_pool_in_use Pooled connections serving a request now.\n"
          "# TYPE cascade_db_pool_in_use gauge\ncascade_db_pool_in_use %d\n"
          "# HELP cascade_db_pool_waits_total Requests that waited for a connection.\n"
          "# TYPE cascade_db_pool_waits_total counter\ncascade_db_pool_waits_total %ld\n"
          "# HELP cascade_db_pool_timeouts_total Requests that gave up waiting.\n"
          "# TYPE cascade_db_pool_timeouts_total counter\ncascade_db_pool_timeouts_total %ld\n"
          "# HELP cascade_db_errors_total Lost connections and timed-out statements.\n"
          "# TYPE cascade_db_errors_total counter\ncascade_db_errors_total %ld\n",
          ctl->db.size, db_in_use(&ctl->db), atomic_load(&ctl->db.waits),
          atomic_load(&ctl->db.timeouts), atomic_load(&ctl->db.errors));

  db_conn_t *c = db_acquire(&ctl->db, &err);
  PGresult *res = c ? db_exec(&ctl->db, c, DB_NODE_STATS, 0, NULL, &err) : NULL;
  db_release(&ctl->db, c);
  int up = db_ok(res) && PQntuples(res) == 1;
  fprintf(out, "# HELP cascade_db_up Whether the database answered this scrape.\n"
               "# TYPE cascade_db_up gauge\ncascade_db_up %d\n", up);
  if (up) {
    fprintf(out,
            "# HELP cascade_nodes_total Nodes in the registry.\n"
            "# TYPE cascade_nodes_total gauge\ncascade_nodes_total %s\n"
            "# HELP cascade_nodes_online Nodes connected now.\n"
            "# TYPE cascade_nodes_online gauge\ncascade_nodes_online %s\n",
            PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
  }
  PQclear(res);
  ctlsrv_metrics(ctl->ctlsrv, out);
  ctlgate_metrics(ctl->ctlgate, out);
  api_feed_metrics(ctl->feed, out);
  fclose(out);
  int rv = http_reply_text(r, 200, "text/plain; version=0.0.4", buf, len);
  free(buf);
  return rv;
}
