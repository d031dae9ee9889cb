/* Migrations runner: see db_migrate() in db.h. */
#include <stdio.h>
#include <string.h>

#include "db.h"
#include "db_migrations.h"
#include "log.h"

/* Migrations may rewrite big tables: no statement timeout for them. */
#define MIGRATION_TIMEOUT_MS (30 * 60 * 1000)

static void error_text(const PGresult *r, int err, char *buf, size_t len) {
  const char *m = r ? PQresultErrorMessage(r) : "";
  if (m == NULL || *m == '\0') {
    m = err == DB_ERR_TIMEOUT ? "timed out" : "database unavailable";
  }
  snprintf(buf, len, "%s", m);
  for (char *s = buf; *s; s++)
    if (*s == '\n' || *s == '\r') *s = ' ';
  size_t n = strlen(buf);
  while (n > 0 && buf[n - 1] == ' ') buf[--n] = '\0';
}

/* apply runs one migration in its own transaction; 1 applied, 0 already
 * there, -1 failed (rolled back). */
static int apply(db_pool_t *p, db_conn_t *c, const db_migration_t *m, char *err, size_t errlen) {
  char msg[1024];
  PGresult *r;
  int e = 0;
  const char *params[1] = {m->name};

  r = db_exec_sql(p, c,
                  "BEGIN; SET LOCAL statement_timeout = 0;"
                  " SELECT pg_advisory_xact_lock(7072016530);"
                  " CREATE TABLE IF NOT EXISTS schema_migrations ("
                  "   version text PRIMARY KEY,"
                  "   applied_at timestamptz NOT NULL DEFAULT now())",
                  MIGRATION_TIMEOUT_MS, &e);
  if (!db_ok(r)) goto fail;
  PQclear(r);

  r = db_exec_params(p, c, "SELECT 1 FROM schema_migrations WHERE version = $1", 1, params, &e);
  if (!db_ok(r)) goto fail;
  int present = PQntuples(r) > 0;
  PQclear(r);
  if (present) {
    r = db_exec_sql(p, c, "COMMIT", 0, &e);
    if (!db_ok(r)) goto fail;
    PQclear(r);
    return 0;
  }

  r = db_exec_sql(p, c, m->sql, MIGRATION_TIMEOUT_MS, &e);
  if (!db_ok(r)) goto fail;
  PQclear(r);
  r = db_exec_params(p, c, "INSERT INTO schema_migrations (version) VALUES ($1)", 1, params, &e);
  if (!db_ok(r)) goto fail;
  PQclear(r);
  r = db_exec_sql(p, c, "COMMIT", 0, &e);
  if (!db_ok(r)) goto fail;
  PQclear(r);
  log_info("db", "applied migration %s", m->name);
  return 1;

fail:
  if (r == NULL) {
    /* Lost the connection: the server rolled back; worth another try. */
    snprintf(err, errlen, "migration %s: database unavailable", m->name);
    return -2;
  }
  error_text(r, e, msg, sizeof(msg));
  PQclear(r);
  if (c->pg != NULL) {
    PGresult *rb = db_exec_sql(p, c, "ROLLBACK", 0, &e);
    PQclear(rb);
  }
  snprintf(err, errlen, "migration %s failed: %s", m->name, msg);
  return -1;
}

int db_migrate(db_pool_t *p, char *err, size_t errlen) {
  int e = 0, applied = 0, rv = 0;
  db_conn_t *c = db_acquire(p, &e);

  if (c == NULL) {
    snprintf(err, errlen, "database unavailable");
    return -2;
  }
  for (const db_migration_t *m = db_migrations; m->name != NULL; m++) {
    int a = apply(p, c, m, err, errlen);
    if (a < 0) {
      rv = a;
      break;
    }
    applied += a;
  }
  db_release(p, c);
  if (rv == 0) log_info("db", "schema up to date (%d migration(s) applied now)", applied);
  return rv;
}
