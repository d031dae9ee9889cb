/* PostgreSQL pool: see db.h. */
#include "db.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

/* The statements, by db_stmt_t. Sessions run with TimeZone UTC; timestamps
 * come back in PostgreSQL's text form and api_time() makes them RFC 3339
 * (to_char in SQL costs more than the rest of a page query together).
 * Pull targets are shown with their userinfo and query masked: they may
 * carry the credentials of an outside source. */
#define NODE_COLS \
  "id, name, ip, online, parent_id, labels::text, created_time, updated_time, last_seen, " \
  "config_generation, applied_generation, quic_addr, version, " \
  "array_to_json(relay_allow)::text, array_to_json(relay_deny)::text, " \
  "CASE WHEN onsub_pull IS NULL THEN NULL ELSE json_build_object('pull', (SELECT" \
  " COALESCE(json_object_agg(e->>0, regexp_replace(regexp_replace(e->>1," \
  " '^([A-Za-z0-9+.-]+://)[^/?#@]*@', '\\1***@'), '[?#].*$', '?***')), '{}'::json)" \
  " FROM jsonb_array_elements(onsub_pull) e))" \
  "::text END, autopush, pending, streamauth::text"

static const char *const stmt_sql[DB_STMT_COUNT] = {
    [DB_NODE_GET] = "SELECT " NODE_COLS " FROM instances WHERE id = $1",
    /* $1 online filter or NULL, $2 name substring or NULL, $3 limit, $4 offset,
     * $5 pending filter or NULL. strpos on lower() matches the substring
     * literally: no LIKE escapes. */
    [DB_NODE_LIST] = "SELECT " NODE_COLS ", (SELECT count(*) FROM instances"
                     " WHERE ($1::boolean IS NULL OR online = $1::boolean)"
                     " AND ($2::text IS NULL OR strpos(lower(name), lower($2::text)) > 0)"
                     " AND ($5::boolean IS NULL OR pending = $5::boolean))"
                     " FROM instances"
                     " WHERE ($1::boolean IS NULL OR online = $1::boolean)"
                     " AND ($2::text IS NULL OR strpos(lower(name), lower($2::text)) > 0)"
                     " AND ($5::boolean IS NULL OR pending = $5::boolean)"
                     " ORDER BY id LIMIT $3::int OFFSET $4::bigint",
    /* $1 online, $2 name, $3 pending, as DB_NODE_LIST. */
    [DB_NODE_COUNT] = "SELECT count(*) FROM instances"
                      " WHERE ($1::boolean IS NULL OR online = $1::boolean)"
                      " AND ($2::text IS NULL OR strpos(lower(name), lower($2::text)) > 0)"
                      " AND ($3::boolean IS NULL OR pending = $3::boolean)",
    /* $1 name $2 verifier $3 parent_id $4 labels $5 actor $6 source */
    [DB_NODE_CREATE] =
        "WITH n AS (INSERT INTO instances (name, verifier, parent_id, labels)"
        " VALUES ($1, $2, $3::bigint, $4::jsonb) RETURNING *),"
        " p AS (UPDATE instances SET config_generation = config_generation + 1"
        " WHERE id = $3::bigint),"
        " e AS (INSERT INTO events (actor, action, instance_id, source, detail)"
        " SELECT $5, 'node.create', id, $6, jsonb_build_object('name', name) FROM n),"
        " t AS (DELETE FROM deleted_names WHERE name = (SELECT name FROM n))"
        " SELECT " NODE_COLS " FROM n",
    /* $1 id; $2/$3 name, $4/$5 verifier, $6/$7 parent, $8/$9 labels,
     * $10/$11 relay allow, $12/$13 relay deny, $14/$15 onsub pull,
     * $16/$17 autopush (set?, value); $18 actor $19 source; $20/$21
     * pending (set?, value); $22/$23 streamauth (set?, rules or NULL).
     * The node's generation rises when its topology or rules change; its
     * old and new parents' when their children change; secret_epoch when
     * the secret changes or the node is suspended (pending again): its
     * sessions end and its certificates stop working at its neighbours. */
    [DB_NODE_UPDATE] =
        "WITH o AS (SELECT parent_id, pending FROM instances WHERE id = $1::bigint),"
        " n AS (UPDATE instances SET"
        " name = CASE WHEN $2::boolean THEN $3::text ELSE name END,"
        " verifier = CASE WHEN $4::boolean THEN $5::text ELSE verifier END,"
        " secret_epoch = secret_epoch + CASE WHEN $4::boolean"
        " OR ($20::boolean AND $21::boolean AND NOT pending) THEN 1 ELSE 0 END,"
        " pending = CASE WHEN $20::boolean THEN $21::boolean ELSE pending END,"
        " parent_id = CASE WHEN $6::boolean THEN $7::bigint ELSE parent_id END,"
        " labels = CASE WHEN $8::boolean THEN $9::jsonb ELSE labels END,"
        " relay_allow = CASE WHEN NOT $10::boolean THEN relay_allow WHEN $11::jsonb IS NULL THEN NULL"
        " ELSE ARRAY(SELECT jsonb_array_elements_text($11::jsonb)) END,"
        " relay_deny = CASE WHEN NOT $12::boolean THEN relay_deny WHEN $13::jsonb IS NULL THEN NULL"
        " ELSE ARRAY(SELECT jsonb_array_elements_text($13::jsonb)) END,"
        " onsub_pull = CASE WHEN $14::boolean THEN $15::jsonb ELSE onsub_pull END,"
        " autopush = CASE WHEN $16::boolean THEN $17::boolean ELSE autopush END,"
        " streamauth = CASE WHEN $22::boolean THEN $23::jsonb ELSE streamauth END,"
        " config_generation = config_generation + CASE WHEN $6::boolean OR $10::boolean"
        " OR $12::boolean OR $14::boolean OR $16::boolean OR $2::boolean OR $22::boolean"
        " THEN 1 ELSE 0 END,"
        " updated_time = now() WHERE id = $1::bigint RETURNING *),"
        /* The neighbours learn of a moved node, and of a node whose
         * credentials changed (secret, pending): they check its certificate
         * against the new epoch and the new topology at once. */
        " p AS (UPDATE instances SET config_generation = config_generation + 1"
        " WHERE id <> $1::bigint AND EXISTS (SELECT 1 FROM n) AND ("
        " ($6::boolean AND (id = $7::bigint OR id = (SELECT parent_id FROM o)))"
        " OR (($4::boolean OR $20::boolean) AND (id = (SELECT parent_id FROM n)"
        " OR parent_id = $1::bigint)))),"
        " e AS (INSERT INTO events (actor, action, instance_id, source, detail)"
        " SELECT $18, CASE WHEN $20::boolean AND (SELECT pending FROM o) AND NOT $21::boolean"
        " THEN 'node.approve' ELSE 'node.update' END, id, $19, jsonb_build_object('name', name,"
        " 'secret_changed', $4::boolean) || CASE WHEN $20::boolean"
        " THEN jsonb_build_object('pending', $21::boolean) ELSE '{}'::jsonb END FROM n)"
        " SELECT " NODE_COLS " FROM n",
    /* The children lose their parent in the same statement, visibly: a new
     * updated_time and an audit event each. */
    [DB_NODE_DELETE] =
        "WITH c AS (UPDATE instances SET parent_id = NULL, updated_time = now(),"
        " config_generation = config_generation + 1"
        " WHERE parent_id = $1::bigint RETURNING id, name),"
        " ce AS (INSERT INTO events (actor, action, instance_id, source, detail)"
        " SELECT $2, 'node.update', id, $3, jsonb_build_object('name', name,"
        " 'parent_id', NULL, 'reason', 'parent deleted') FROM c),"
        " n AS (DELETE FROM instances WHERE id = $1::bigint RETURNING *),"
        " p AS (UPDATE instances SET config_generation = config_generation + 1"
        " WHERE id = (SELECT parent_id FROM n)),"
        " e AS (INSERT INTO events (actor, action, instance_id, source, detail)"
        " SELECT $2, 'node.delete', id, $3, jsonb_build_object('name', name) FROM n),"
        /* Registration does not bring the name back (docs/security.md). */
        " t AS (INSERT INTO deleted_names (name) SELECT name FROM n"
        " ON CONFLICT (name) DO UPDATE SET deleted_time = now())"
        " SELECT " NODE_COLS " FROM n",
    [DB_NODE_EXISTS] = "SELECT 1 FROM instances WHERE id = $1::bigint",
    /* Would making $2 the parent of $1 close a loop? Walk $2's ancestors. */
    [DB_NODE_CYCLE] =
        "WITH RECURSIVE anc(id, parent_id, depth) AS ("
        " SELECT id, parent_id, 0 FROM instances WHERE id = $2::bigint"
        " UNION ALL SELECT i.id, i.parent_id, a.depth + 1 FROM instances i"
        " JOIN anc a ON i.id = a.parent_id WHERE a.depth < 10000)"
        " SELECT 1 FROM anc WHERE id = $1::bigint LIMIT 1",
    [DB_NODE_STATS] = "SELECT count(*), count(*) FILTER (WHERE online) FROM instances",
    [DB_TOKEN_LOOKUP] = "UPDATE api_tokens SET last_used = now() WHERE token_hash = $1::bytea"
                        " RETURNING id, role",
    /* $1 name $2 role $3 hash $4 actor $5 source */
    [DB_TOKEN_CREATE] =
        "WITH t AS (INSERT INTO api_tokens (name, role, token_hash)"
        " VALUES ($1, $2, $3::bytea) RETURNING *),"
        " e AS (INSERT INTO events (actor, action, source, detail)"
        " SELECT $4, 'token.create', $5, jsonb_build_object('token_id', id, 'name', name,"
        " 'role', role) FROM t)"
        " SELECT id, name, role, created_time FROM t",
    [DB_TOKEN_LIST] = "SELECT id, name, role, created_time, last_used"
                      " FROM api_tokens ORDER BY id",
    [DB_TOKEN_DELETE] =
        "WITH t AS (DELETE FROM api_tokens WHERE id = $1::bigint RETURNING *),"
        " e AS (INSERT INTO events (actor, action, source, detail)"
        " SELECT $2, 'token.delete', $3, jsonb_build_object('token_id', id, 'name', name) FROM t)"
        " SELECT id, name, role, created_time, last_used, token_hash FROM t",
    /* $1 actor $2 action $3 source $4 detail */
    [DB_EVENT_ADD] = "INSERT INTO events (actor, action, source, detail)"
                     " VALUES ($1, $2, $3, $4::jsonb)",
    [DB_PING] = "SELECT 1",
    /* The control channel. */
    [DB_CTL_LOOKUP] = "SELECT id, verifier, secret_epoch, pending FROM instances WHERE name = $1",
    /* $1 name $2 verifier $3 source $4 join token presented (approved)
     * $5 pending nodes at most. A deleted name is not created again; a
     * pending row is taken over by a registration with the join token (a
     * pending row proves nothing); an approved row is never touched. */
    [DB_CTL_REGISTER] =
        "WITH n AS (INSERT INTO instances (name, verifier, pending)"
        " SELECT $1, $2, NOT $4::boolean"
        " WHERE NOT EXISTS (SELECT 1 FROM deleted_names WHERE name = $1)"
        " AND ($4::boolean OR (SELECT count(*) FROM instances WHERE pending) < $5::bigint)"
        " ON CONFLICT (name) DO UPDATE SET verifier = EXCLUDED.verifier, pending = false,"
        " secret_epoch = instances.secret_epoch + 1, updated_time = now()"
        " WHERE $4::boolean AND instances.pending"
        " RETURNING id, name, pending),"
        " e AS (INSERT INTO events (actor, action, instance_id, source, detail)"
        " SELECT 'node:' || id, 'node.register', id, $3,"
        " jsonb_build_object('name', name, 'pending', pending) FROM n)"
        " SELECT id, pending FROM n",
    /* $1 id $2 ip $3 quic $4 http $5 rtmp $6 version $7 static parent
     * $8 replica $9 lease (ms). The replica takes the node's session row
     * (whoever held it). Children learn a new parent address through their
     * generation. */
    [DB_CTL_CONNECT] =
        "WITH o AS (SELECT quic_addr FROM instances WHERE id = $1::bigint),"
        " n AS (UPDATE instances SET online = true, last_seen = now(), ip = $2, quic_addr = $3,"
        " http_addr = $4, rtmp_addr = $5, version = $6, static_parent = $7"
        " WHERE id = $1::bigint RETURNING id, name, secret_epoch),"
        " s AS (INSERT INTO sessions AS s (node_id, replica_id, epoch, lease_until)"
        " SELECT id, $8, secret_epoch, now() + $9::bigint * interval '1 millisecond' FROM n"
        " ON CONFLICT (node_id) DO UPDATE SET replica_id = EXCLUDED.replica_id,"
        " epoch = EXCLUDED.epoch, since = now(), lease_until = EXCLUDED.lease_until,"
        " report = NULL),"
        " k AS (UPDATE instances SET config_generation = config_generation + 1"
        " WHERE parent_id = $1::bigint AND (SELECT quic_addr FROM o) IS DISTINCT FROM $3),"
        " e AS (INSERT INTO events (actor, action, instance_id, source, detail)"
        " SELECT 'node:' || id, 'node.connect', id, $2, jsonb_build_object('name', name,"
        " 'replica', $8::text) FROM n)"
        " SELECT id FROM n",
    /* $1 node $2 parent: only while the node has no parent, and only under
     * an approved node. */
    [DB_CTL_SET_PARENT] =
        "WITH n AS (UPDATE instances SET parent_id = $2::bigint, updated_time = now(),"
        " config_generation = config_generation + 1"
        " WHERE id = $1::bigint AND parent_id IS NULL AND NOT pending"
        " AND EXISTS (SELECT 1 FROM instances WHERE id = $2::bigint AND NOT pending)"
        " RETURNING id, name),"
        " p AS (UPDATE instances SET config_generation = config_generation + 1"
        " WHERE id = $2::bigint AND EXISTS (SELECT 1 FROM n)),"
        " e AS (INSERT INTO events (actor, action, instance_id, source, detail)"
        " SELECT 'node:' || id, 'node.update', id, '', jsonb_build_object('name', name,"
        " 'parent_id', $2::bigint, 'reason', 'static parent') FROM n)"
        " SELECT id FROM n",
    /* A pending node is nobody's parent or child; each neighbour comes
     * with the credential epoch its certificate must name. */
    [DB_CTL_CONFIG] =
        "SELECT n.config_generation, p.id, p.name, p.quic_addr,"
        " array_to_json(n.relay_allow)::text, array_to_json(n.relay_deny)::text,"
        " n.onsub_pull::text, n.autopush,"
        " (SELECT json_agg(json_build_array(c.id, c.name, c.secret_epoch) ORDER BY c.id)"
        "  FROM instances c WHERE c.parent_id = n.id AND NOT c.pending)::text, p.ip,"
        " p.secret_epoch,"
        /* 11..14: stream authorization (docs/media.md): the deployment's
         * policy and hooks, the node's own rules, the two newest keys
         * (sealed; the newest signs). */
        " (SELECT policy::text FROM streamauth WHERE id = 1),"
        " (SELECT hooks::text FROM streamauth WHERE id = 1), n.streamauth::text,"
        " (SELECT json_agg(json_build_array(k.id, encode(k.sealed, 'hex')) ORDER BY k.id DESC)"
        "  FROM (SELECT id, sealed FROM stream_keys ORDER BY id DESC LIMIT 2) k)::text"
        " FROM instances n LEFT JOIN instances p ON p.id = n.parent_id AND NOT p.pending"
        " WHERE n.id = $1::bigint",
    [DB_CTL_GENERATIONS] = "SELECT id, config_generation, secret_epoch FROM instances"
                           " WHERE id = ANY($1::bigint[])",
    /* $1 ids $2 applied generations $3 ips: one statement per second for
     * every heartbeat of that second; 'config.applied' when it moved. */
    [DB_CTL_HEARTBEATS] =
        "WITH v AS (SELECT * FROM unnest($1::bigint[], $2::bigint[]) AS v(id, g)),"
        " o AS (SELECT i.id, i.name, i.applied_generation FROM instances i JOIN v ON v.id = i.id),"
        " u AS (UPDATE instances i SET last_seen = now(), online = true, applied_generation = v.g"
        " FROM v WHERE i.id = v.id),"
        " e AS (INSERT INTO events (actor, action, instance_id, detail)"
        " SELECT 'node:' || o.id, 'config.applied', o.id, jsonb_build_object('generation', v.g)"
        " FROM o JOIN v ON v.id = o.id WHERE v.g <> o.applied_generation AND v.g > 0)"
        " SELECT count(*) FROM v",
    /* $1 ids $2 reason $3 replica: the sessions this replica still holds
     * end, and their nodes go offline; a node another replica took stays. */
    [DB_CTL_OFFLINE] =
        "WITH d AS (DELETE FROM sessions WHERE node_id = ANY($1::bigint[]) AND replica_id = $3"
        " RETURNING node_id),"
        " n AS (UPDATE instances SET online = false WHERE id IN (SELECT node_id FROM d)"
        " RETURNING id, name)"
        " INSERT INTO events (actor, action, instance_id, detail)"
        " SELECT 'controller', 'node.disconnect', id, jsonb_build_object('name', name,"
        " 'reason', $2::text) FROM n",
    /* $1 lease (ms). Any replica, idempotent: sessions whose lease ran out
     * end; a node online without a live session and silent for a lease goes
     * offline (the silence: a session taken meanwhile is not undone). */
    [DB_CTL_SWEEP] =
        "WITH d AS (DELETE FROM sessions WHERE lease_until < now() RETURNING node_id),"
        " r AS (DELETE FROM replicas WHERE lease_until < now() - interval '1 hour'),"
        " n AS (UPDATE instances i SET online = false WHERE i.online"
        " AND (i.last_seen IS NULL OR i.last_seen < now() - $1::bigint * interval '1 millisecond')"
        " AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.node_id = i.id"
        " AND s.lease_until >= now())"
        " RETURNING id, name)"
        " INSERT INTO events (actor, action, instance_id, detail)"
        " SELECT 'controller', 'node.disconnect', id, jsonb_build_object('name', name,"
        " 'reason', 'session lease expired') FROM n RETURNING instance_id",
    /* $1 replica $2 its address $3 lease (ms) $4 node ids of its live
     * sessions. One statement renews the replica and every session it holds
     * (taking back a row whose lease ran out meanwhile); returns the ids
     * renewed: a node missing was taken by another replica. */
    [DB_REPLICA_RENEW] =
        "WITH r AS (INSERT INTO replicas (id, address, lease_until)"
        " VALUES ($1, $2, now() + $3::bigint * interval '1 millisecond')"
        " ON CONFLICT (id) DO UPDATE SET address = EXCLUDED.address,"
        " lease_until = EXCLUDED.lease_until)"
        " INSERT INTO sessions AS s (node_id, replica_id, epoch, lease_until)"
        " SELECT i.id, $1, i.secret_epoch, now() + $3::bigint * interval '1 millisecond'"
        " FROM instances i WHERE i.id = ANY($4::bigint[])"
        " ON CONFLICT (node_id) DO UPDATE SET lease_until = EXCLUDED.lease_until,"
        " replica_id = EXCLUDED.replica_id"
        " WHERE s.replica_id = $1 OR s.lease_until < now()"
        " RETURNING node_id",
    /* $1 replica: it stops; its sessions keep their leases (the agents
     * move to another replica meanwhile). */
    [DB_REPLICA_GONE] = "UPDATE replicas SET lease_until = now() WHERE id = $1",
    /* $1 this replica's CA fingerprint: recorded by the first replica of the
     * deployment; returns the deployment's (no row: ask again). */
    [DB_DEPLOYMENT_CA] =
        "WITH i AS (INSERT INTO deployment (id, ca_fingerprint) VALUES (1, $1)"
        " ON CONFLICT (id) DO NOTHING RETURNING ca_fingerprint)"
        " SELECT ca_fingerprint FROM i UNION ALL SELECT ca_fingerprint FROM deployment",
    /* $1 {"node id": report, ...} $2 replica: the reports of the sessions it holds. */
    [DB_SESSION_REPORTS] =
        "UPDATE sessions s SET report = e.value FROM jsonb_each($1::jsonb) e"
        " WHERE s.node_id = e.key::bigint AND s.replica_id = $2",
    /* Every live session's last report, with its node's name. */
    [DB_SESSION_REPORTS_READ] =
        "SELECT s.node_id, i.name, s.report::text FROM sessions s"
        " JOIN instances i ON i.id = s.node_id"
        " WHERE s.lease_until >= now() AND s.report IS NOT NULL ORDER BY s.node_id",
    /* $1 node: the replica holding its live session and that replica's address. */
    [DB_NODE_HOLDER] =
        "SELECT s.replica_id, coalesce(r.address, '') FROM sessions s"
        " LEFT JOIN replicas r ON r.id = s.replica_id AND r.lease_until >= now()"
        " WHERE s.node_id = $1::bigint AND s.lease_until >= now()",
    /* $1 id $2 not_after (unix s) */
    [DB_CTL_CERT] =
        "WITH n AS (UPDATE instances SET cert_not_after = to_timestamp($2::bigint)"
        " WHERE id = $1::bigint RETURNING id, name)"
        " INSERT INTO events (actor, action, instance_id, detail)"
        " SELECT 'controller', 'cert.issue', id, jsonb_build_object('name', name,"
        " 'not_after', to_timestamp($2::bigint)) FROM n",
    /* $1 actor $2 action $3 node (or NULL) $4 source $5 detail */
    [DB_CTL_EVENT] = "INSERT INTO events (actor, action, instance_id, source, detail)"
                     " VALUES ($1, $2, $3::bigint, $4, $5::jsonb)",
    /* $1 node $2 JSON array of details, each with its action: the kicks and
     * drops a node reports (Heartbeat.stream_events), in their order */
    [DB_CTL_STREAM_EVENTS] =
        "INSERT INTO events (actor, action, instance_id, detail)"
        " SELECT 'node:' || $1, d->>'action', $1::bigint, d - 'action'"
        " FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS e(d, i) ORDER BY i",
    [DB_NODE_TOPOLOGY] = "SELECT id, name, online, parent_id FROM instances ORDER BY id",
    /* $1 node or NULL, $2 limit, $3 offset */
    [DB_EVENTS_LIST] =
        "SELECT id, time, actor, action, instance_id, source, detail::text,"
        " count(*) OVER () FROM events WHERE ($1::bigint IS NULL OR instance_id = $1::bigint)"
        " ORDER BY id DESC LIMIT $2::int OFFSET $3::bigint",
    /* Stream authorization: never a key's value, sealed or not. */
    [DB_SA_GET] =
        "SELECT policy::text, hooks::text, (SELECT COALESCE(json_agg(json_build_array(id,"
        " to_char(created_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'))"
        " ORDER BY id DESC), '[]') FROM (SELECT * FROM stream_keys ORDER BY id DESC LIMIT 2) k)::text"
        " FROM streamauth WHERE id = 1",
    /* $1 policy or NULL (unchanged) $2 hooks given or NULL (merged over
     * the stored ones) $3 actor $4 source. Every node's generation rises:
     * each one's configuration carries the policy. The hooks' URLs stay out
     * of the event (they may hold credentials). */
    [DB_SA_UPDATE] =
        "WITH s AS (UPDATE streamauth SET policy = COALESCE($1::jsonb, policy),"
        " hooks = hooks || COALESCE($2::jsonb, '{}'::jsonb), updated_time = now()"
        " WHERE id = 1 RETURNING *),"
        " g AS (UPDATE instances SET config_generation = config_generation + 1),"
        " e AS (INSERT INTO events (actor, action, source, detail)"
        " SELECT $3, 'streamauth.update', $4, jsonb_build_object('policy', $1::jsonb,"
        " 'hooks_changed', $2::jsonb IS NOT NULL) FROM s)"
        " SELECT policy::text, hooks::text FROM s",
    /* $1 sealed key $2 actor $3 source. The new key signs; the one that
     * signed until now stays valid; any older one goes (at most two). Two
     * adds at once may each leave the other's predecessor: only the two
     * newest keys are ever valid (here, in DB_SA_GET and in DB_CTL_CONFIG),
     * and the next add removes the rest. */
    [DB_SA_KEY_ADD] =
        "WITH k AS (INSERT INTO stream_keys (sealed) VALUES ($1::bytea)"
        " RETURNING id, created_time),"
        " d AS (DELETE FROM stream_keys WHERE id < (SELECT max(id) FROM stream_keys)"
        " RETURNING id),"
        " g AS (UPDATE instances SET config_generation = config_generation + 1),"
        " e AS (INSERT INTO events (actor, action, source, detail)"
        " SELECT $2, 'streamauth.key.create', $3, jsonb_build_object('key_id', k.id,"
        " 'rotated_out', (SELECT COALESCE(jsonb_agg(id), '[]'::jsonb) FROM d)) FROM k)"
        " SELECT id, to_char(created_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
        " (SELECT COALESCE(json_agg(id), '[]') FROM d)::text FROM k",
    /* $1 id $2 actor $3 source */
    [DB_SA_KEY_DELETE] =
        "WITH k AS (DELETE FROM stream_keys WHERE id = $1::bigint RETURNING id),"
        " g AS (UPDATE instances SET config_generation = config_generation + 1"
        " WHERE EXISTS (SELECT 1 FROM k)),"
        " e AS (INSERT INTO events (actor, action, source, detail)"
        " SELECT $2, 'streamauth.key.delete', $3, jsonb_build_object('key_id', id) FROM k)"
        " SELECT id FROM k",
    [DB_SA_KEY_SIGNING] = "SELECT id, sealed FROM stream_keys ORDER BY id DESC LIMIT 1",
};

int64_t db_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_notice(void *arg, const char *msg) {
  char q[512];
  log_debug("db", "notice: %s", log_quote(msg, q, sizeof(q)));
}

int db_pool_init(db_pool_t *p, const char *dsn, int size, int timeout_ms) {
  pthread_condattr_t ca;

  memset(p, 0, sizeof(*p));
  p->size = size;
  p->timeout_ms = timeout_ms;
  p->dsn = strdup(dsn);
  p->conns = calloc((size_t)size, sizeof(*p->conns));
  p->free_list = calloc((size_t)size, sizeof(*p->free_list));
  if (p->dsn == NULL || p->conns == NULL || p->free_list == NULL) goto fail;
  for (int i = 0; i < size; i++) {
    p->conns[i].index = i;
    p->free_list[i] = i;
  }
  p->nfree = size;
  pthread_mutex_init(&p->mu, NULL);
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&p->cv, &ca);
  pthread_condattr_destroy(&ca);
  return 0;

fail:
  free(p->dsn);
  free(p->conns);
  free(p->free_list);
  memset(p, 0, sizeof(*p));
  return -1;
}

static void conn_close(db_conn_t *c) {
  if (c->pg) PQfinish(c->pg);
  c->pg = NULL;
  c->prepared = 0;
}

void db_pool_free(db_pool_t *p) {
  if (p->conns == NULL) return;
  for (int i = 0; i < p->size; i++) conn_close(&p->conns[i]);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
  free(p->conns);
  free(p->free_list);
  free(p->dsn);
  memset(p, 0, sizeof(*p));
}

/* pq_message is libpq's last error on |pg|, one line, fit for a log. */
static const char *pq_message(PGconn *pg, char *buf, size_t len) {
  char msg[512];
  snprintf(msg, sizeof(msg), "%s", pg ? PQerrorMessage(pg) : "");
  for (size_t n = strlen(msg); n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '); n--)
    msg[n - 1] = '\0';
  return log_quote(msg, buf, (unsigned)len);
}

/* wait_fd waits for |pg|'s socket until |deadline|. 1 ready, 0 timeout, -1 error. */
static int wait_fd(PGconn *pg, int for_write, int64_t deadline) {
  struct pollfd pfd = {.fd = PQsocket(pg), .events = for_write ? POLLOUT : POLLIN};
  if (pfd.fd < 0) return -1;
  for (;;) {
    int64_t left = deadline - db_now_ms();
    if (left <= 0) return 0;
    int r = poll(&pfd, 1, (int)left);
    if (r > 0) return 1;
    if (r == 0) return 0;
    if (errno != EINTR) return -1;
  }
}

/* finish collects the results of a sent query within |deadline|: the first
 * failed result, else the last one. */
static PGresult *finish(db_pool_t *p, db_conn_t *c, int64_t deadline, int *err) {
  PGresult *keep = NULL, *r;
  int f;

  while ((f = PQflush(c->pg)) == 1) {
    if (wait_fd(c->pg, 1, deadline) <= 0) goto timeout;
  }
  if (f < 0) goto broken;
  for (;;) {
    while (PQisBusy(c->pg)) {
      int w = wait_fd(c->pg, 0, deadline);
      if (w == 0) goto timeout;
      if (w < 0 || !PQconsumeInput(c->pg)) goto broken;
    }
    r = PQgetResult(c->pg);
    if (r == NULL) break;
    if (keep == NULL || db_ok(keep)) {
      PQclear(keep);
      keep = r;
    } else {
      PQclear(r);
    }
  }
  if (PQstatus(c->pg) != CONNECTION_OK) goto broken;
  if (keep == NULL) goto broken;
  return keep;

timeout:
  PQclear(keep);
  /* The connection is mid-query: drop it; the server's statement_timeout
   * ends the query on its side. */
  log_warn("db", "statement timed out after %d ms", p->timeout_ms);
  conn_close(c);
  atomic_fetch_add(&p->errors, 1);
  *err = DB_ERR_TIMEOUT;
  return NULL;

broken:
  PQclear(keep);
  {
    char q[256];
    log_warn("db", "connection lost: %s", pq_message(c->pg, q, sizeof(q)));
  }
  conn_close(c);
  atomic_fetch_add(&p->errors, 1);
  *err = DB_ERR_UNAVAILABLE;
  return NULL;
}

/* conn_open connects |c| within |deadline|; on failure writes why to |why|. */
static int conn_open(db_pool_t *p, db_conn_t *c, int64_t deadline, char *why, size_t whylen) {
  PostgresPollingStatusType st = PGRES_POLLING_WRITING;
  int err = 0;

  c->pg = PQconnectStart(p->dsn);
  if (c->pg == NULL) {
    snprintf(why, whylen, "out of memory");
    return -1;
  }
  if (PQstatus(c->pg) == CONNECTION_BAD) goto fail;
  for (;;) {
    if (st == PGRES_POLLING_OK) break;
    if (st == PGRES_POLLING_FAILED) goto fail;
    int w = wait_fd(c->pg, st == PGRES_POLLING_WRITING, deadline);
    if (w == 0) {
      snprintf(why, whylen, "no answer within %d ms", p->timeout_ms);
      conn_close(c);
      return -1;
    }
    if (w < 0) goto fail;
    st = PQconnectPoll(c->pg);
  }
  if (PQsetnonblocking(c->pg, 1) != 0) goto fail;
  PQsetNoticeProcessor(c->pg, on_notice, NULL);
  {
    char sql[96];
    snprintf(sql, sizeof(sql), "SET statement_timeout = %d; SET TIME ZONE 'UTC'", p->timeout_ms);
    if (!PQsendQuery(c->pg, sql)) goto fail;
    PGresult *r = finish(p, c, deadline, &err);
    if (r == NULL) {
      snprintf(why, whylen, "lost the connection while setting it up");
      return -1;
    }
    int ok = db_ok(r);
    PQclear(r);
    if (!ok) goto fail;
  }
  return 0;

fail:
  pq_message(c->pg, why, whylen);
  if (*why == '\0') snprintf(why, whylen, "connection failed");
  conn_close(c);
  return -1;
}

/* idle_conn_dead tells whether an idle pooled connection was ended by the
 * server meanwhile (a PostgreSQL restart, an administrator's
 * pg_terminate_backend, a dropped TCP path): its socket is readable and
 * reading shows it closed. Found here, it is replaced before a statement is
 * sent, instead of failing that request with 503. */
static int idle_conn_dead(PGconn *pg) {
  struct pollfd pfd = {PQsocket(pg), POLLIN, 0};
  if (pfd.fd < 0) return 1;
  if (poll(&pfd, 1, 0) <= 0) return 0;
  if (!PQconsumeInput(pg) || PQstatus(pg) != CONNECTION_OK) return 1;
  PGnotify *n;
  while ((n = PQnotifies(pg)) != NULL) PQfreemem(n);
  /* A backend ended by the server sends its FATAL error, then closes: libpq
   * takes the error as a notice while idle and sees the close only on the
   * next read. A closed socket reads 0 at once. */
  char b;
  ssize_t k = recv(pfd.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
  return k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

db_conn_t *db_acquire(db_pool_t *p, int *err) {
  int64_t deadline = db_now_ms() + p->timeout_ms;
  struct timespec ts;
  db_conn_t *c;

  pthread_mutex_lock(&p->mu);
  if (p->nfree == 0) {
    atomic_fetch_add(&p->waits, 1);
    ts.tv_sec = deadline / 1000;
    ts.tv_nsec = (deadline % 1000) * 1000000;
    while (p->nfree == 0) {
      if (pthread_cond_timedwait(&p->cv, &p->mu, &ts) == ETIMEDOUT && p->nfree == 0) {
        pthread_mutex_unlock(&p->mu);
        atomic_fetch_add(&p->timeouts, 1);
        *err = DB_ERR_UNAVAILABLE;
        return NULL;
      }
    }
  }
  c = &p->conns[p->free_list[--p->nfree]];
  int64_t down_until = p->down_until_ms;
  pthread_mutex_unlock(&p->mu);

  if (c->pg != NULL && (PQstatus(c->pg) != CONNECTION_OK || idle_conn_dead(c->pg))) conn_close(c);
  if (c->pg == NULL) {
    char why[256] = "";
    /* After a failed connect, answer at once for a short while rather than
     * let every request pay for another attempt. */
    if (db_now_ms() < down_until || conn_open(p, c, deadline, why, sizeof(why)) != 0) {
      pthread_mutex_lock(&p->mu);
      if (db_now_ms() >= p->down_until_ms) p->down_until_ms = db_now_ms() + 200;
      int first = why[0] && !p->down;
      if (why[0]) p->down = 1;
      pthread_mutex_unlock(&p->mu);
      /* Once per outage, not once per attempt. */
      if (first) log_warn("db", "cannot connect: %s", why);
      db_release(p, c);
      *err = DB_ERR_UNAVAILABLE;
      return NULL;
    }
    pthread_mutex_lock(&p->mu);
    int was_down = p->down;
    p->down = 0;
    pthread_mutex_unlock(&p->mu);
    if (was_down) log_info("db", "connected again");
  }
  return c;
}

void db_release(db_pool_t *p, db_conn_t *c) {
  if (c == NULL) return;
  if (c->pg != NULL && (PQstatus(c->pg) != CONNECTION_OK ||
                        PQtransactionStatus(c->pg) != PQTRANS_IDLE)) {
    /* Never hand out a connection in a transaction or a broken state. */
    conn_close(c);
  }
  pthread_mutex_lock(&p->mu);
  p->free_list[p->nfree++] = c->index;
  pthread_cond_signal(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

int db_in_use(db_pool_t *p) {
  pthread_mutex_lock(&p->mu);
  int n = p->size - p->nfree;
  pthread_mutex_unlock(&p->mu);
  return n;
}

int db_ok(const PGresult *r) {
  if (r == NULL) return 0;
  ExecStatusType s = PQresultStatus(r);
  return s == PGRES_TUPLES_OK || s == PGRES_COMMAND_OK;
}

const char *db_sqlstate(const PGresult *r) {
  const char *s = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
  return s ? s : "";
}

PGresult *db_exec(db_pool_t *p, db_conn_t *c, db_stmt_t stmt, int nparams,
                  const char *const *params, int *err) {
  int64_t deadline = db_now_ms() + p->timeout_ms;
  char name[16];
  PGresult *r;

  if (c->pg == NULL) {
    *err = DB_ERR_UNAVAILABLE;
    return NULL;
  }
  snprintf(name, sizeof(name), "s%d", (int)stmt);
  if (!(c->prepared & (1ull << stmt))) {
    if (!PQsendPrepare(c->pg, name, stmt_sql[stmt], 0, NULL)) goto broken;
    r = finish(p, c, deadline, err);
    if (r == NULL) return NULL;
    if (!db_ok(r)) return r;
    PQclear(r);
    c->prepared |= 1ull << stmt;
  }
  if (!PQsendQueryPrepared(c->pg, name, nparams, params, NULL, NULL, 0)) goto broken;
  return finish(p, c, deadline, err);

broken:
  conn_close(c);
  atomic_fetch_add(&p->errors, 1);
  *err = DB_ERR_UNAVAILABLE;
  return NULL;
}

PGresult *db_exec_sql(db_pool_t *p, db_conn_t *c, const char *sql, int timeout_ms,
                      int *err) {
  if (c->pg == NULL || !PQsendQuery(c->pg, sql)) {
    conn_close(c);
    *err = DB_ERR_UNAVAILABLE;
    return NULL;
  }
  return finish(p, c, db_now_ms() + (timeout_ms > 0 ? timeout_ms : p->timeout_ms), err);
}

PGresult *db_exec_params(db_pool_t *p, db_conn_t *c, const char *sql, int nparams,
                         const char *const *params, int *err) {
  if (c->pg == NULL || !PQsendQueryParams(c->pg, sql, nparams, NULL, params, NULL, NULL, 0)) {
    conn_close(c);
    *err = DB_ERR_UNAVAILABLE;
    return NULL;
  }
  return finish(p, c, db_now_ms() + p->timeout_ms, err);
}
