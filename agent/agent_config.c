/* cascade-agent configuration: see docs/configuration.md, which is
 * generated from this table (cascade-agent --print-config-doc). */
#include "agent_config.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent_rules.h"
#include "quic.h"
#include "log.h"

static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const log_formats[] = {"text", "json", NULL};
static const char *const ctl_schemes[] = {"tls+tcp://", "tcp://", NULL};
static const char *const quic_ccs[] = {"auto", "bbr", "bbr2", "cubic", "reno", NULL};
/* Indexes are EDGEAUTH_LOCAL_CONTROLLER and EDGEAUTH_LOCAL_NONE. */
static const char *const auth_modes[] = {"controller", "none", NULL};

extern char **environ;

#define OFF(f) offsetof(agent_config_t, f)

const cfg_key_t agent_config_table[] = {
    {"node.name", CFG_STR, OFF(node_name), NULL, 0, 64, NULL, 0,
     "Name of this node in the registry; default: the host name. In Kubernetes, set "
     "CASCADE_AGENT_NODE_NAME from spec.nodeName (the downward API)."},
    {"node.advertise", CFG_STR, OFF(advertise), NULL, 0, 256, NULL,
     CFG_EMPTY_OK | CFG_HOSTPORT,
     "Where children dial this node's QUIC listener: host:port, [v6]:port or name:port (a DNS "
     "name, resolved by each child when it dials). Empty: cascadeserver.quic.listenaddr, with "
     "a wildcard host completed by the controller with the address the node's control "
     "connection comes from."},
    {"node.secret", CFG_STR, OFF(node_secret), NULL, 8, 1024, NULL,
     CFG_REQUIRED | CFG_SECRET | CFG_EMPTY_OK,
     "Secret proving this node's identity (SCRAM; never sent). Environment "
     "CASCADE_NODE_SECRET overrides it."},
    {"cascadeclient.secret", CFG_STR, OFF(node_secret), NULL, 8, 1024, NULL,
     CFG_SECRET | CFG_EMPTY_OK, "Seed name of node.secret; set only one of the two."},
    {"node.jointoken", CFG_STR, OFF(jointoken), NULL, 16, 128, NULL, CFG_SECRET | CFG_EMPTY_OK,
     "The deployment's join token (the controller's cascadeserver.jointoken): a new node "
     "that presents it joins approved, else it waits for an operator's approval. Sent only "
     "to a verified controller. Environment CASCADE_JOIN_TOKEN overrides it."},
    {"node.datadir", CFG_STR, OFF(datadir), "/var/lib/cascade", 1, 4096, NULL, 0,
     "Directory for the node key, its certificate, the controller CA and state.json, the last "
     "configuration applied, from which the agent starts when no controller answers (created "
     "0700; docs/operations.md, \"Cached mode\")."},
    {"controller.url", CFG_STRLIST, OFF(ctl_urls), "[\"tls+tcp://127.0.0.1:44945\"]", 1, 1024,
     ctl_schemes, CFG_LIST_SCALAR,
     "Control endpoints of the controller (its replicas): tls+tcp://host:port, or tcp:// for "
     "tests only; a list, or one string of comma-separated URLs; 16 URLs at most, a host name "
     "counting as one URL per address. The agent stays on the one that works and moves to the "
     "next when its session is lost or it cannot connect within 2 s (up to 8 s after waits that "
     "ran out in a row; docs/operations.md)."},
    {"controller.ca", CFG_STR, OFF(ctl_ca), NULL, 0, 4096, NULL, 0,
     "PEM CA file the controller's certificate must verify against."},
    {"controller.pin", CFG_STR, OFF(ctl_pin), NULL, 0, 128, NULL, 0,
     "SHA-256 fingerprint of the controller's CA (AB:CD:..., optional sha256: prefix); the "
     "CA is fetched once and kept in node.datadir/controller-ca.crt."},
    {"controller.servername", CFG_STR, OFF(ctl_servername), "cascade-controller", 1, 255, NULL,
     0, "Name the controller's certificate must carry."},
    {"controller.backoffmax", CFG_INT, OFF(backoffmax_ms), "10000", 1000, 300000, NULL, 0,
     "Milliseconds: longest wait between reconnects to the controller."},
    {"http.listenaddr", CFG_STR, OFF(http_listenaddr), ":8080", 1, 256, NULL, 0,
     "Public HTTP address: HTTP-FLV play and the /healthz probe only (host:port, [v6]:port "
     "or :port for all addresses)."},
    {"http.adminaddr", CFG_STR, OFF(http_adminaddr), "127.0.0.1:8081", 1, 256, NULL,
     CFG_EMPTY_OK,
     "Address of the node's own API (status, stream list, metrics, link test, echo; HTTP-FLV "
     "too), which the controller's relay reaches; keep it on loopback: it has no "
     "authentication. Empty: no local API (the relay answers 503)."},
    {"cascadeserver.quic.listenaddr", CFG_STR, OFF(quic_listenaddr), NULL, 0, 256, NULL, 0,
     "QUIC address children dial (seed key); empty: this node accepts no children."},
    {"cascadeclient.enable", CFG_BOOL, OFF(client_enable), "false", 0, 0, NULL, 0,
     "Link to a parent node (seed key)."},
    {"cascadeclient.server", CFG_STR, OFF(client_server), NULL, 0, 256, NULL, CFG_HOSTPORT,
     "Static parent QUIC address (seed key); the controller's assignment wins when set."},
    {"cascadeclient.reconnectmax", CFG_DURATION, OFF(reconnectmax_ms), "5s", 100, 300000, NULL, 0,
     "Longest wait between attempts to link to the parent (exponential backoff from 100ms with "
     "full jitter)."},
    {"cascadeserver.autoregister", CFG_BOOL, OFF(seed_autoregister), "true", 0, 0, NULL, 0,
     "Seed key, accepted so that the seed's parent configuration loads as written; whether "
     "nodes may register themselves is the controller's cascadeserver.autoregister. false "
     "here is logged at start and changes nothing."},
    {"cascadeserver.maxchildren", CFG_INT, OFF(maxchildren), "100", 1, 10000, NULL, 0,
     "Child links at once; more children are refused (application error 0x202) with a log "
     "line."},
    {"quic.idletimeout", CFG_DURATION, OFF(quic_idle_ms), "10s", 500, 600000, NULL, 0,
     "A link with no packet from its peer for this long is down (it is also how a peer that "
     "vanished is noticed)."},
    {"quic.keepalive", CFG_DURATION, OFF(quic_keepalive_ms), "1s", 0, 300000, NULL, 0,
     "PING an idle link this often, below quic.idletimeout; 0: never."},
    {"quic.handshaketimeout", CFG_DURATION, OFF(quic_handshake_ms), "5s", 200, 60000, NULL, 0,
     "Give up a link attempt whose handshake has not completed after this long."},
    {"quic.maxdata", CFG_INT, OFF(quic_maxdata), "16777216", 65536, 1073741824, NULL, 0,
     "Bytes: connection flow-control window a peer may send ahead."},
    {"quic.maxstreamdata", CFG_INT, OFF(quic_maxstreamdata), "1048576", 16384, 268435456, NULL, 0,
     "Bytes: per-stream flow-control window a peer may send ahead."},
    {"quic.maxstreamwindow", CFG_INT, OFF(quic_maxstreamwindow), "16777216", 0, 1073741824,
     NULL, 0,
     "Bytes: a stream's flow-control window grows from quic.maxstreamdata up to this as the "
     "path's RTT and rate ask (auto-tuning); not above quic.maxstreamdata: no growth."},
    {"quic.maxwindow", CFG_INT, OFF(quic_maxwindow), "67108864", 0, 4294967296LL, NULL, 0,
     "Bytes: the same for the connection's window, from quic.maxdata."},
    {"quic.maxstreams", CFG_INT, OFF(quic_maxstreams), "100", 1, 100000, NULL, 0,
     "Streams a peer may have open at once on one link."},
    {"quic.sndbuf", CFG_INT, OFF(quic_sndbuf), "262144", 16384, 67108864, NULL, 0,
     "Bytes: send buffer of each stream (data written but not yet acknowledged) at first; it "
     "grows up to quic.maxsndbuf as the path asks."},
    {"quic.maxsndbuf", CFG_INT, OFF(quic_maxsndbuf), "16777216", 0, 1073741824, NULL, 0,
     "Bytes: a stream's send buffer grows from quic.sndbuf up to this, to about twice the "
     "link's congestion window, when a write does not fit while at least half of it is in "
     "flight (like TCP's send buffer auto-tuning; a path that does not take the data gets no "
     "longer backlog); not above quic.sndbuf: fixed."},
    {"quic.cc", CFG_ENUM, OFF(quic_cc), "auto", 0, 0, quic_ccs, 0,
     "Congestion controller of the links: auto, bbr, cubic or reno. auto: the dialing node "
     "measures the round trip first, cubic below quic.lanrtt (a LAN: lowest added latency), "
     "bbr otherwise (keeps its rate under random loss); both ends of the link use the "
     "dialer's choice (docs/performance.md). bbr2 is another name for ngtcp2's BBR."},
    {"quic.lanrtt", CFG_DURATION, OFF(quic_lanrtt_ms), "2ms", 0, 1000, NULL, 0,
     "With quic.cc auto: a link whose round trip measured before dialing is below this uses "
     "cubic, else bbr; 0: bbr always."},
    {"quic.maxudppayload", CFG_INT, OFF(quic_maxudppayload), "0", 0, QUIC_MAX_UDP_PAYLOAD, NULL,
     0,
     "Bytes: largest UDP payload a link sends. Packets start at 1200 and path MTU discovery "
     "raises them up to this (e.g. 8952 with 9000-byte jumbo frames end to end; never above "
     "the local route's MTU). 0: automatic, 1452, and 16000 to a peer on this host "
     "(loopback); otherwise at least 1200."},
    {"quic.probeinterval", CFG_DURATION, OFF(quic_probe_ms), "1s", 0, 60000, NULL, 0,
     "A link with streams open PINGs a silent peer this often, and a packet from the peer "
     "after this long without acknowledgements fires the backed-off loss probe at once: after "
     "an outage the link recovers within about this long of the path's return; 0: ngtcp2's "
     "backoff alone."},
    {"cascadeclient.autopush", CFG_BOOL, OFF(autopush), "false", 0, 0, NULL, 0,
     "Push every stream published here to the parent (seed key); the controller may override."},
    {"cascadeclient.relayapi.allow", CFG_STRLIST, OFF(relay_allow), NULL, 1, 1024, NULL,
     CFG_RELPATH_RULE,
     "Path prefixes of the local API the controller may relay to (seed key); plain normalised "
     "prefixes, no wildcards."},
    {"cascadeclient.relayapi.deny", CFG_STRLIST, OFF(relay_deny), NULL, 1, 1024, NULL,
     CFG_RELPATH_RULE,
     "Path prefixes never relayed; deny wins over allow (seed key); plain normalised prefixes, "
     "no wildcards."},
    {"cascadeclient.onsub.pull", CFG_STRMAP, OFF(onsub_pull), NULL, 1, 1024, NULL, 0,
     "On-demand pull: pcre2 pattern on app/name -> target template such as m7s://$0 (seed "
     "key)."},
    {"auth.publish", CFG_ENUM, OFF(auth_publish), "controller", 0, 0, auth_modes, 0,
     "Who may publish at this node: controller (the controller's stream authorization "
     "policy: signed tokens by default, docs/media.md \"Authorization\"; until a policy has "
     "come from the controller or the state file, every publish is refused) or none (anyone "
     "who reaches the RTMP port: a standalone media node, or one the operator keeps open)."},
    {"auth.play", CFG_ENUM, OFF(auth_play), "controller", 0, 0, auth_modes, 0,
     "Who may play at this node (RTMP, and HTTP-FLV on http.listenaddr; the admin listener "
     "and pulls inside the cascade are never checked): controller or none, as auth.publish."},
    {"rtmp.listenaddr", CFG_STR, OFF(rtmp_listenaddr), ":1935", 1, 256, NULL, CFG_EMPTY_OK,
     "RTMP publish and play (host:port, [v6]:port or :port); empty: no RTMP."},
    {"rtmp.maxconnections", CFG_INT, OFF(rtmp_maxconns), "1000", 1, 100000, NULL, 0,
     "RTMP connections at once; more are refused with a log line."},
    {"rtmp.chunksize", CFG_INT, OFF(rtmp_chunksize), "4096", 128, 65536, NULL, 0,
     "Outgoing RTMP chunk size (announced with Set Chunk Size)."},
    {"rtmp.maxpending", CFG_INT, OFF(rtmp_maxpending), "65536", 4096, 16777216, NULL, 0,
     "Bytes a connection may hold in partly received messages (all its chunk streams) until "
     "it publishes; players and clients that have not published stay under it. Beyond: "
     "closed and logged."},
    {"rtmp.ingestbudget", CFG_INT, OFF(rtmp_ingestbudget), "268435456", 1048576, 17179869184LL,
     NULL, 0,
     "Bytes all RTMP connections together may hold in partly received messages (a publisher's "
     "message up to 16 MiB counts whole from its first chunk). The connection that would go "
     "beyond is closed and logged."},
    {"http.maxconnections", CFG_INT, OFF(http_maxconns), "1000", 1, 100000, NULL, 0,
     "HTTP connections at once, on each of http.listenaddr and http.adminaddr."},
    {"publish.delayclosetimeout", CFG_DURATION, OFF(publish_delayclose_ms), "10s", 0, 3600000,
     NULL, 0, "How long a stream and its players wait for a publisher that left (seed key)."},
    {"publish.maxstreams", CFG_INT, OFF(publish_maxstreams), "0", 0, 100000, NULL, 0,
     "Streams at once; 0: no limit."},
    {"subscribe.waittimeout", CFG_DURATION, OFF(subscribe_wait_ms), "10s", 0, 3600000, NULL, 0,
     "How long a player waits for a stream that does not exist yet (seed key)."},
    {"subscribe.maxplayers", CFG_INT, OFF(subscribe_maxplayers), "0", 0, 100000, NULL, 0,
     "RTMP and HTTP-FLV players per stream (relays to other nodes not counted); 0: no limit. "
     "A player beyond it is refused: RTMP NetStream.Play.Failed, HTTP 503, with the reason."},
    {"subscribe.maxbandwidth", CFG_INT, OFF(subscribe_maxbandwidth_kbps), "0", 0, 100000000,
     NULL, 0,
     "Outgoing bandwidth to players, in kbit/s (1000 bit/s), measured over the last 2 s "
     "(RTMP and HTTP-FLV players; relays to other nodes not counted); 0: no limit. At or over "
     "it, new players are refused (RTMP NetStream.Play.Failed, HTTP 503 with Retry-After); "
     "players already playing go on."},
    {"subscribe.queuesize", CFG_INT, OFF(subscribe_queuebytes), "4194304", 65536, 268435456, NULL,
     0, "Bytes queued per player at most; beyond, it skips to the next keyframe."},
    {"subscribe.queuetime", CFG_DURATION, OFF(subscribe_queuetime_ms), "5s", 100, 600000, NULL, 0,
     "Stream time queued per player at most; beyond, it skips to the next keyframe."},
    {"subscribe.mergewrite", CFG_DURATION, OFF(subscribe_merge_ms), "40ms", 0, 1000, NULL, 0,
     "Write policy: the longest a frame waits to be written with later ones while the loop is "
     "busy (an idle loop writes a player once per loop turn, at once); 0: a write per frame."},
    {"subscribe.slowtimeout", CFG_DURATION, OFF(subscribe_slow_ms), "15s", 1000, 600000, NULL, 0,
     "A player behind for longer than this is disconnected."},
    {"pull.linger", CFG_DURATION, OFF(pull_linger_ms), "10s", 0, 3600000, NULL, 0,
     "An on-demand pull with no player left stops after this; a player within it reuses it."},
    {"log.level", CFG_ENUM, OFF(log_level), "info", 0, 0, log_levels, 0,
     "Lowest level logged: debug, info, warn or error."},
    {"shutdown.timeout", CFG_DURATION, OFF(shutdown_ms), "10s", 0, 300000, NULL, 0,
     "On SIGTERM the agent stops accepting, closes its links as going away and ends its "
     "players' streams, then exits 0; it exits anyway after this (or at a second SIGTERM)."},
    {"health.loopstall", CFG_DURATION, OFF(health_stall_ms), "5s", 100, 600000, NULL, 0,
     "GET /healthz answers 503 for 10 s after the event loop went this long without turning "
     "(a loop stuck for good cannot answer at all: the probe times out)."},
    {"log.format", CFG_ENUM, OFF(log_format), "text", 0, 0, log_formats, 0,
     "text: one line per event on stderr; json: one JSON object per line on stdout (time, "
     "level, module, context, message)."},
    {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL},
};

/* Older and shorter variables kept working beside the rule's names. */
static const cfg_env_alias_t env_aliases[] = {
    {"CASCADE_NODE_NAME", "node.name"}, /* deploy/kubernetes (spec.nodeName) */
    {"CASCADE_NODE_ADVERTISE", "node.advertise"},
    {"CASCADE_NODE_SECRET", "node.secret"},
    {"CASCADE_JOIN_TOKEN", "node.jointoken"},
    {NULL, NULL},
};

const cfg_env_t agent_config_env = {AGENT_ENV_PREFIX, env_aliases};

void agent_config_free(agent_config_t *c) { cfg_free(agent_config_table, c); }

/* check runs after the file and the environment: the checks that span keys
 * or need more than the table's bounds. */
static int check(agent_config_t *c, const char *path, char *err, size_t errlen) {
  if (c->node_secret[0] == '\0') {
    snprintf(err, errlen, "%s: key 'node.secret': required (or cascadeclient.secret, or set "
             AGENT_ENV_PREFIX "NODE_SECRET or CASCADE_NODE_SECRET)", path);
    return -1;
  }
  if (c->node_name[0] == '\0') {
    char host[256];
    if (gethostname(host, sizeof(host)) != 0 || host[0] == '\0') {
      snprintf(err, errlen, "%s: key 'node.name': not set and the host name is unknown", path);
      return -1;
    }
    host[sizeof(host) - 1] = '\0';
    if (strlen(host) > 64) host[64] = '\0';
    if (cfg_set_str(&c->node_name, host) != 0) goto fail_oom;
  }
  if (c->ctl_urls.n == 0 || c->ctl_urls.n > AGENT_CTL_URLS_MAX) {
    snprintf(err, errlen, "%s: key 'controller.url': needs 1 to %d URLs, not %zu", path,
             AGENT_CTL_URLS_MAX, c->ctl_urls.n);
    return -1;
  }
  int any_tls = 0;
  for (size_t i = 0; i < c->ctl_urls.n; i++) {
    const char *u = c->ctl_urls.v[i];
    if (strncmp(u, "tls+tcp://", 10) != 0 && strncmp(u, "tcp://", 6) != 0) {
      snprintf(err, errlen, "%s: key 'controller.url': must start with tls+tcp:// or tcp://",
               path);
      return -1;
    }
    any_tls |= strncmp(u, "tls+tcp://", 10) == 0;
    for (size_t j = 0; j < i; j++) {
      if (strcmp(c->ctl_urls.v[j], u) == 0) {
        char q[128];
        snprintf(err, errlen, "%s: key 'controller.url': '%s' is listed twice", path,
                 log_quote(u, q, sizeof(q)));
        return -1;
      }
    }
  }
  if (any_tls && c->ctl_ca[0] == '\0' && c->ctl_pin[0] == '\0') {
    snprintf(err, errlen,
             "%s: key 'controller.url': a tls+tcp:// controller needs controller.ca or "
             "controller.pin (the agent never talks to an unverified controller)",
             path);
    return -1;
  }
  if (c->http_adminaddr[0] && strcmp(c->http_adminaddr, c->http_listenaddr) == 0) {
    snprintf(err, errlen,
             "%s: key 'http.adminaddr': must differ from http.listenaddr (the node's own API "
             "is never served on the public port)",
             path);
    return -1;
  }
  if (c->advertise[0]) {
    if (c->quic_listenaddr[0] == '\0') {
      snprintf(err, errlen,
               "%s: key 'node.advertise': set, but cascadeserver.quic.listenaddr is empty (this "
               "node accepts no children: there is nothing to advertise)", path);
      return -1;
    }
  }
  if (c->quic_maxudppayload != 0 && c->quic_maxudppayload < QUIC_MIN_UDP_PAYLOAD) {
    snprintf(err, errlen, "%s: key 'quic.maxudppayload': must be 0 (automatic) or %d..%d", path,
             QUIC_MIN_UDP_PAYLOAD, QUIC_MAX_UDP_PAYLOAD);
    return -1;
  }
  if (c->quic_keepalive_ms >= c->quic_idle_ms) {
    snprintf(err, errlen, "%s: key 'quic.keepalive': must be below quic.idletimeout (%lld ms)",
             path, c->quic_idle_ms);
    return -1;
  }
  for (size_t i = 0; i < c->onsub_pull.n; i++) {
    char why[256];
    pcre2_code *re = pattern_compile(c->onsub_pull.keys[i], why, sizeof(why));
    if (re == NULL) {
      char q[128];
      snprintf(err, errlen, "%s: key 'cascadeclient.onsub.pull': pattern '%s': %s", path,
               log_quote(c->onsub_pull.keys[i], q, sizeof(q)), why);
      return -1;
    }
    pcre2_code_free(re);
    if (pattern_target_check(c->onsub_pull.vals[i], why, sizeof(why)) != 0) {
      char q[128];
      snprintf(err, errlen, "%s: key 'cascadeclient.onsub.pull': target of '%s': %s", path,
               log_quote(c->onsub_pull.keys[i], q, sizeof(q)), why);
      return -1;
    }
  }
  return 0;

fail_oom:
  snprintf(err, errlen, "%s: out of memory", path);
  return -1;
}

static int load(agent_config_t *c, const char *name, const char *buf, size_t len,
                char *const *envp, char *err, size_t errlen) {
  memset(c, 0, sizeof(*c));
  if (cfg_defaults(agent_config_table, c) != 0) {
    snprintf(err, errlen, "%s: out of memory", name);
    goto fail;
  }
  if ((buf ? cfg_load_buf(agent_config_table, c, name, buf, len, err, errlen)
           : cfg_load_file(agent_config_table, c, name, err, errlen)) != 0)
    goto fail;
  if (cfg_load_env(agent_config_table, c, &agent_config_env, envp, err, errlen) != 0) goto fail;
  if (check(c, name, err, errlen) != 0) goto fail;
  return 0;

fail:
  agent_config_free(c);
  return -1;
}

int agent_config_load(agent_config_t *c, const char *path, char *err, size_t errlen) {
  return load(c, path, NULL, 0, environ, err, errlen);
}

int agent_config_load_buf(agent_config_t *c, const char *name, const char *buf, size_t len,
                          char *err, size_t errlen) {
  return load(c, name, buf, len, environ, err, errlen);
}

int agent_config_load_env(agent_config_t *c, const char *name, const char *buf, size_t len,
                          char *const *envp, char *err, size_t errlen) {
  return load(c, name, buf, len, envp, err, errlen);
}
