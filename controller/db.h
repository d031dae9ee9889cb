/* PostgreSQL: a pool of libpq connections with deadlines, prepared
 * statements by id, and the migrations runner. Every call is bounded by the
 * pool's timeout, so a dead or hung database turns into an error, not a
 * stuck thread. Queries are parameterised only. */
#ifndef CASCADE_DB_H
#define CASCADE_DB_H

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

/* Prepared statements, by id; their SQL is in db.c. */
typedef enum {
  DB_NODE_GET,
  DB_NODE_LIST,
  DB_NODE_COUNT,
  DB_NODE_CREATE,
  DB_NODE_UPDATE,
  DB_NODE_DELETE,
  DB_NODE_EXISTS,
  DB_NODE_CYCLE,
  DB_NODE_STATS,
  DB_TOKEN_LOOKUP,
  DB_TOKEN_CREATE,
  DB_TOKEN_LIST,
  DB_TOKEN_DELETE,
  DB_EVENT_ADD,
  DB_PING,
  DB_CTL_LOOKUP,
  DB_CTL_REGISTER,
  DB_CTL_CONNECT,
  DB_CTL_SET_PARENT,
  DB_CTL_CONFIG,
  DB_CTL_GENERATIONS,
  DB_CTL_HEARTBEATS,
  DB_CTL_OFFLINE,
  DB_CTL_SWEEP,
  DB_REPLICA_RENEW,
  DB_REPLICA_GONE,
  DB_DEPLOYMENT_CA,
  DB_NODE_HOLDER,
  DB_SESSION_REPORTS,
  DB_SESSION_REPORTS_READ,
  DB_CTL_CERT,
  DB_CTL_EVENT,
  DB_CTL_STREAM_EVENTS,
  DB_NODE_TOPOLOGY,
  DB_EVENTS_LIST,
  DB_SA_GET,
  DB_SA_UPDATE,
  DB_SA_KEY_ADD,
  DB_SA_KEY_DELETE,
  DB_SA_KEY_SIGNING,
  DB_STMT_COUNT
} db_stmt_t;

typedef struct db_conn {
  PGconn *pg;
  uint64_t prepared;        /* bit per db_stmt_t prepared on |pg| */
  int index;
} db_conn_t;

typedef struct db_pool {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  db_conn_t *conns;
  int *free_list;           /* indexes of idle conns; owned */
  int nfree;
  int size;
  char *dsn;                /* owned */
  int timeout_ms;
  int64_t down_until_ms;    /* after a failed connect, fail fast until then */
  int down;                 /* the last connect failed (logged once) */
  atomic_long waits;        /* acquisitions that had to wait */
  atomic_long timeouts;     /* acquisitions that gave up */
  atomic_long errors;       /* connection-level failures */
} db_pool_t;

/* Errors beyond libpq's. */
#define DB_ERR_UNAVAILABLE (-2) /* no connection: down, or pool wait timed out */
#define DB_ERR_TIMEOUT     (-3) /* statement did not finish in time */

/* db_pool_init creates the pool; connections open lazily. 0 or -1. */
int db_pool_init(db_pool_t *p, const char *dsn, int size, int timeout_ms);

/* db_pool_free closes every connection; accepts an unused pool. */
void db_pool_free(db_pool_t *p);

/* db_acquire takes an idle connection, connecting it if needed, waiting at
 * most the pool timeout. NULL on failure with *err set to DB_ERR_*. */
db_conn_t *db_acquire(db_pool_t *p, int *err);

/* db_release gives |c| back; a connection that failed is closed first. */
void db_release(db_pool_t *p, db_conn_t *c);

/* db_in_use counts connections currently taken. */
int db_in_use(db_pool_t *p);

/* db_exec runs prepared statement |stmt| with text parameters (NULL = SQL
 * NULL) within the deadline. Returns the result (PGRES_TUPLES_OK or
 * PGRES_COMMAND_OK) or NULL with *err = DB_ERR_*; a statement error returns
 * the failed result so the caller can read the SQLSTATE: check with
 * db_ok(). */
PGresult *db_exec(db_pool_t *p, db_conn_t *c, db_stmt_t stmt, int nparams,
                  const char *const *params, int *err);

/* db_exec_sql runs unprepared text (several statements allowed, no
 * parameters), for migrations and transaction control, within |timeout_ms|
 * (0: the pool's). */
PGresult *db_exec_sql(db_pool_t *p, db_conn_t *c, const char *sql, int timeout_ms,
                      int *err);

/* db_exec_params runs one unprepared statement with text parameters. */
PGresult *db_exec_params(db_pool_t *p, db_conn_t *c, const char *sql, int nparams,
                         const char *const *params, int *err);

/* db_ok tells whether |r| is a successful result. */
int db_ok(const PGresult *r);

/* db_sqlstate returns the SQLSTATE of a failed result, or "". */
const char *db_sqlstate(const PGresult *r);

/* db_migrate applies the migrations compiled into the binary that the
 * database lacks, each in its own transaction, recorded in
 * schema_migrations; an advisory lock serialises concurrent controllers.
 * On failure writes "migration FILE failed: PostgreSQL error" to |err| and
 * returns -1, or -2 when the database could not be reached (retry). */
int db_migrate(db_pool_t *p, char *err, size_t errlen);

/* db_now_ms is a monotonic clock in milliseconds. */
int64_t db_now_ms(void);

#endif
