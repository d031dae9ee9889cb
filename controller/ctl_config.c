/* cascade-controller configuration: see docs/configuration.md, which is
 * generated from this table (cascade-controller --print-config-doc). */
#include "ctl_config.h"

#include "cors.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const log_formats[] = {"text", "json", NULL};

extern char **environ;

#define OFF(f) offsetof(ctl_config_t, f)

const cfg_key_t ctl_config_table[] = {
    {"http.listenaddr", CFG_STR, OFF(http_listenaddr), "127.0.0.1:8080", 1, 256, NULL, 0,
     "Address of the REST API (host:port, [v6]:port or :port for all addresses)."},
    {"http.tls.cert", CFG_STR, OFF(http_tls_cert), NULL, 0, 4096, NULL, 0,
     "PEM certificate file; HTTPS when both cert and key are set."},
    {"http.tls.key", CFG_STR, OFF(http_tls_key), NULL, 0, 4096, NULL, 0,
     "PEM private key file of http.tls.cert."},
    {"http.threads", CFG_INT, OFF(http_threads), "4", 1, 256, NULL, 0,
     "HTTP worker threads (each serves many connections with epoll)."},
    {"http.maxconnections", CFG_INT, OFF(http_maxconns), "1024", 1, 65536, NULL, 0,
     "Concurrent HTTP connections; more are refused."},
    {"http.maxconnperaddr", CFG_INT, OFF(http_maxconnperaddr), "128", 0, 65536, NULL, 0,
     "Concurrent HTTP connections from one client address; more are refused at once; 0: no "
     "limit. Behind a reverse proxy every connection comes from the proxy: set it above the "
     "proxy's connections, or 0."},
    {"http.headertimeout", CFG_DURATION, OFF(http_headertimeout_ms), "10s", 100, 600000, NULL,
     0,
     "A connection must send a whole request head (and finish TLS) within this long of "
     "opening, or of its previous answer on a kept-alive connection; else it is closed."},
    {"http.replicaaddr", CFG_STR, OFF(http_replicaaddr), NULL, 0, 256, NULL, CFG_EMPTY_OK,
     "host:port on which the other replicas reach this one's API (plain HTTP) to forward API "
     "relay requests for the nodes it holds; empty = the API's own address (http.listenaddr; "
     "a wildcard host is no use to others). Environment CASCADE_REPLICA_ADDR overrides it (a "
     "pod's IP)."},
    {"http.cors.origins", CFG_STRLIST, OFF(http_cors_origins), NULL, 1, CORS_ORIGIN_MAX, NULL,
     CFG_LIST_SCALAR,
     "Browser origins (scheme://host[:port], exactly as browsers send them) whose pages may "
     "call the API: preflights from them are answered without a token and answers to them "
     "carry Access-Control-Allow-Origin. Empty = no CORS headers at all. \"*\" lets every "
     "origin read answers (safe only because the API takes bearer tokens, never cookies)."},
    {"feed.maxclients", CFG_INT, OFF(feed_maxclients), "256", 1, 65536, NULL, 0,
     "Live feeds (GET /api/feed, streams and long polls) open on this controller at once; "
     "more answer 503."},
    {"feed.maxpertoken", CFG_INT, OFF(feed_maxpertoken), "16", 1, 65536, NULL, 0,
     "Live feeds open at once with one API token; more answer 429."},
    {"feed.buffer", CFG_INT, OFF(feed_buffer), "4096", 16, 1000000, NULL, 0,
     "Feed events each controller keeps in memory: how far back Last-Event-ID and since= "
     "resume, and how far a feed reader may fall behind before it is dropped."},
    {"feed.retention", CFG_DURATION, OFF(feed_retention_ms), "1h", 60000, 604800000, NULL, 0,
     "How long feed events stay in the database (table feed_events); a replica that starts "
     "loads the last feed.buffer of them."},
    {"feed.maxrows", CFG_INT, OFF(feed_maxrows), "1000000", 1000, 100000000, NULL, 0,
     "Feed events kept in the database at most, whatever their age (the oldest go first, "
     "once a minute): what flapping links or publishers write is bounded."},
    {"database.dsn", CFG_STR, OFF(db_dsn), NULL, 1, 4096, NULL, CFG_REQUIRED | CFG_SECRET,
     "libpq connection string. Environment CASCADE_DB_DSN overrides it."},
    {"database.poolsize", CFG_INT, OFF(db_poolsize), "4", 1, 64, NULL, 0,
     "PostgreSQL connections kept open."},
    {"database.timeout", CFG_INT, OFF(db_timeout_ms), "3000", 100, 60000, NULL, 0,
     "Milliseconds: statement timeout, wait for a pooled connection, connect timeout."},
    {"auth.admintoken", CFG_STR, OFF(admintoken), NULL, 16, 128, NULL,
     CFG_SECRET | CFG_EMPTY_OK,
     "Bootstrap admin bearer token; empty = none. Environment CASCADE_ADMIN_TOKEN "
     "overrides it."},
    {"cascadeserver.autoregister", CFG_BOOL, OFF(autoregister), "true", 0, 0, NULL, 0,
     "Unknown nodes may register themselves (seed key): with cascadeserver.jointoken they "
     "join approved, without it they wait as pending until an operator approves them."},
    {"cascadeserver.jointoken", CFG_STR, OFF(jointoken), NULL, 16, 128, NULL,
     CFG_SECRET | CFG_EMPTY_OK,
     "Deployment join token: a registering node that presents it (node.jointoken) joins "
     "approved; empty = every registered node waits for approval. Environment "
     "CASCADE_JOIN_TOKEN overrides it."},
    {"cascadeserver.maxpending", CFG_INT, OFF(maxpending), "100", 0, 100000, NULL, 0,
     "Nodes waiting for approval at most; further registrations without the join token "
     "create nothing (0: only the join token registers)."},
    {"cascadeserver.registerrate", CFG_INT, OFF(register_rate), "60", 1, 100000, NULL, 0,
     "Nodes that may register themselves per minute, from all addresses together."},
    {"cascadeserver.registerrateperaddr", CFG_INT, OFF(register_rate_addr), "10", 1, 100000,
     NULL, 0, "Nodes that may register themselves per minute from one source address."},
    {"cascadeserver.relayapi.allow", CFG_STRLIST, OFF(relay_allow), NULL, 1, 1024, NULL,
     CFG_RELPATH_RULE,
     "Path prefixes the API relay lets through (seed key); plain normalised prefixes, no "
     "wildcards."},
    {"cascadeserver.relayapi.deny", CFG_STRLIST, OFF(relay_deny), NULL, 1, 1024, NULL,
     CFG_RELPATH_RULE,
     "Path prefixes the API relay refuses; deny wins over allow (seed key); plain normalised "
     "prefixes, no wildcards."},
    {"relay.timeout", CFG_DURATION, OFF(relay_timeout_ms), "10s", 100, 300000, NULL, 0,
     "How long the API relay waits for a node's first answer (status and headers) before "
     "answering 504."},
    {"relay.maxconcurrent", CFG_INT, OFF(relay_max), "256", 1, 65536, NULL, 0,
     "API relay requests in progress on this controller; more answer 503 (and at most 16 "
     "per node)."},
    {"control.listenaddr", CFG_STR, OFF(control_listenaddr), "tls+tcp://0.0.0.0:44945", 1, 256,
     NULL, CFG_EMPTY_OK,
     "Where agents connect (nng URL). tls+tcp:// in production; tcp:// (no TLS) for tests "
     "only; empty disables the control channel."},
    {"control.tls.cert", CFG_STR, OFF(control_tls_cert), NULL, 0, 4096, NULL, 0,
     "PEM certificate of the control endpoint; empty = the controller's own CA issues one "
     "in control.datadir."},
    {"control.tls.key", CFG_STR, OFF(control_tls_key), NULL, 0, 4096, NULL, 0,
     "PEM private key of control.tls.cert."},
    {"control.tls.ca", CFG_STR, OFF(control_tls_ca), NULL, 0, 4096, NULL, 0,
     "PEM CA certificate and key basename: the CA that signs node certificates is "
     "control.datadir/ca.{crt,key} unless this names another certificate (its key beside it, "
     ".key for .crt)."},
    {"control.datadir", CFG_STR, OFF(control_datadir), "/var/lib/cascade-controller", 1, 4096,
     NULL, 0, "The controller's CA and certificates (created 0700)."},
    {"control.handshaketimeout", CFG_DURATION, OFF(control_handshake_ms), "10s", 100, 300000,
     NULL, 0,
     "A control connection not yet through TLS and SP negotiation is closed when the client "
     "leaves it waiting this long (from the accept, or from the controller's last bytes); one "
     "waiting on the controller gets 6 times this in all."},
    {"control.authtimeout", CFG_DURATION, OFF(control_auth_ms), "30s", 1000, 3600000, NULL, 0,
     "A control connection (TLS and SP done) on which no node has authenticated is closed "
     "when it sends no request for this long; the agent's connection is dialled again."},
    {"control.maxconnperaddr", CFG_INT, OFF(control_maxconnperaddr), "256", 0, 1000000, NULL, 0,
     "Control connections from one client address (IPv6: one /64) at once; more are refused "
     "at once; 0: no limit. Agents behind one NAT address share it."},
    {"control.maxconnections", CFG_INT, OFF(control_maxconns), "0", 0, 1000000, NULL, 0,
     "Control connections at once; more are refused at once. 0: as many as fit the open-file "
     "limit after the database pool and the HTTP server (one descriptor each); a larger "
     "value is lowered to that."},
    {"control.workers", CFG_INT, OFF(control_workers), "4", 1, 64, NULL, 0,
     "Threads serving control requests."},
    {"control.heartbeat", CFG_INT, OFF(control_heartbeat_ms), "5000", 200, 600000, NULL, 0,
     "Milliseconds between agent heartbeats; a node is offline after 3 missed."},
    {"control.polltimeout", CFG_INT, OFF(control_polltimeout_ms), "25000", 1000, 300000, NULL, 0,
     "Milliseconds a configuration long poll is held before an empty answer."},
    {"control.certlifetime", CFG_INT, OFF(control_certlifetime_s), "86400", 300, 31536000, NULL,
     0, "Seconds a node certificate is valid; agents renew at two thirds."},
    {"control.sessionlease", CFG_DURATION, OFF(control_sessionlease_ms), "15s", 1000, 600000,
     NULL, 0,
     "Lease of a node's control session in the database: the replica holding it renews it "
     "every third of this; a node whose lease ran out with no replica holding it (its "
     "replica died) is offline, and any replica may then take it. Also how long a replica "
     "that stops keeps its nodes online for their agents to reach another replica."},
    {"log.level", CFG_ENUM, OFF(log_level), "info", 0, 0, log_levels, 0,
     "Lowest level logged: debug, info, warn or error."},
    {"log.format", CFG_ENUM, OFF(log_format), "text", 0, 0, log_formats, 0,
     "text: one line per event on stderr; json: one JSON object per line on stdout (time, "
     "level, module, context, message)."},
    {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL},
};

void ctl_config_free(ctl_config_t *c) { cfg_free(ctl_config_table, c); }

/* Older variables kept working beside the rule's names. */
static const cfg_env_alias_t env_aliases[] = {
    {"CASCADE_DB_DSN", "database.dsn"},
    {"CASCADE_ADMIN_TOKEN", "auth.admintoken"},
    {"CASCADE_REPLICA_ADDR", "http.replicaaddr"},
    {"CASCADE_JOIN_TOKEN", "cascadeserver.jointoken"},
    {NULL, NULL},
};

const cfg_env_t ctl_config_env = {CTL_ENV_PREFIX, env_aliases};

int ctl_config_load(ctl_config_t *c, const char *path, char *err, size_t errlen) {
  return ctl_config_load_env(c, path, environ, err, errlen);
}

int ctl_config_load_env(ctl_config_t *c, const char *path, char *const *envp, char *err,
                        size_t errlen) {
  memset(c, 0, sizeof(*c));
  if (cfg_defaults(ctl_config_table, c) != 0) {
    snprintf(err, errlen, "%s: out of memory", path);
    goto fail;
  }
  if (cfg_load_file(ctl_config_table, c, path, err, errlen) != 0) goto fail;
  /* Container deployments set keys (secrets, the DSN) in the environment. */
  if (cfg_load_env(ctl_config_table, c, &ctl_config_env, envp, err, errlen) != 0) goto fail;
  if (c->db_dsn == NULL || c->db_dsn[0] == '\0') {
    snprintf(err, errlen,
             "%s: key 'database.dsn': required (or set " CTL_ENV_PREFIX
             "DATABASE_DSN or CASCADE_DB_DSN)", path);
    goto fail;
  }
  if ((c->control_tls_cert[0] == '\0') != (c->control_tls_key[0] == '\0')) {
    snprintf(err, errlen, "%s: key 'control.tls': cert and key must be set together", path);
    goto fail;
  }
  if (c->control_listenaddr[0] && strncmp(c->control_listenaddr, "tls+tcp://", 10) != 0 &&
      strncmp(c->control_listenaddr, "tcp://", 6) != 0) {
    snprintf(err, errlen, "%s: key 'control.listenaddr': must start with tls+tcp:// or tcp://",
             path);
    goto fail;
  }
  for (size_t i = 0; i < c->http_cors_origins.n; i++) {
    const char *why;
    if (cors_origin_check(c->http_cors_origins.v[i], &why) != 0) {
      snprintf(err, errlen, "%s: key 'http.cors.origins': item %zu: %s", path, i + 1, why);
      goto fail;
    }
  }
  if ((c->http_tls_cert[0] == '\0') != (c->http_tls_key[0] == '\0')) {
    snprintf(err, errlen, "%s: key 'http.tls': cert and key must be set together", path);
    goto fail;
  }
  return 0;

fail:
  ctl_config_free(c);
  return -1;
}
