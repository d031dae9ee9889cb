/* The control channel's server: the REP side of nng's SP wire over TLS
 * (spoken by the control gate, ctlgate.h), agents' registration,
 * SCRAM-SHA-256 authentication, sessions, heartbeats, configuration long
 * polls and certificates. See docs/protocol.md. */
#ifndef CASCADE_CTLSRV_H
#define CASCADE_CTLSRV_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

struct ctl;
typedef struct ctlsrv ctlsrv_t;

/* ctlsrv_start prepares the CA (creating it on first start), listens on
 * control.listenaddr and starts the workers. NULL with |err| on failure. */
ctlsrv_t *ctlsrv_start(struct ctl *ctl, char *err, size_t errlen);

/* ctlsrv_stop stops the control gate (every connection closed), answers
 * nothing more, joins every thread and frees; accepts NULL. The gate
 * itself (ctl->ctlgate) is freed by its owner afterwards. */
void ctlsrv_stop(ctlsrv_t *s);

/* ctlsrv_wake asks for a reconcile pass now: something in the registry
 * changed (a node's rules, topology, secret, or the node is gone). */
void ctlsrv_wake(ctlsrv_t *s);

/* ctlsrv_set_address records where other replicas reach this one (its
 * API's URL), written to the replicas table with its lease. */
void ctlsrv_set_address(ctlsrv_t *s, const char *address);

/* ctlsrv_replica is this process's replica id ("" for NULL). */
const char *ctlsrv_replica(ctlsrv_t *s);

#define CTLSRV_LINK_PARENT 1
#define CTLSRV_LINK_CHILD 2

/* One QUIC link as a node's last heartbeat reported it (the sessions
 * table's report: any replica reads it, see api_topology.c). */
typedef struct ctlsrv_link {
  int64_t peer_id;
  int role;                  /* CTLSRV_LINK_PARENT: the reporter's parent */
  int up;
  uint64_t rtt_us;
  int64_t up_since;          /* unix seconds, 0 when down */
  int64_t reported_ms;
} ctlsrv_link_t;

/* ---- API relay (relay_sessions.h) ---- */

struct relay_sessions;

/* ctlsrv_relay_sessions is |s|'s sessions as the API relay reaches them
 * (relay_reg_set_sessions); |s| may be NULL (no control channel: no
 * sessions). */
struct relay_sessions ctlsrv_relay_sessions(ctlsrv_t *s);

/* ---- stream reports ---- */

#define CTLSRV_STREAM_PROTOS 16

/* Where a reported stream comes from: the numbers of control.proto's
 * StreamOrigin, which the sessions table's reports keep. */
#define CTLSRV_ORIGIN_UNKNOWN 0
#define CTLSRV_ORIGIN_LOCAL 1      /* published at the reporting node */
#define CTLSRV_ORIGIN_PUSHED 2     /* pushed up by a child */
#define CTLSRV_ORIGIN_PULLED 3     /* pulled from the parent or an outside source */

/* One stream as a node's last heartbeat reported it (the sessions table's
 * report: any replica reads it, see api_streams.c). */
typedef struct ctlsrv_stream {
  char *path;
  int origin;                /* CTLSRV_ORIGIN_* */
  int64_t origin_node;       /* 0: the reporter itself or unknown */
  int64_t since;             /* unix seconds of the publisher, 0 none */
  size_t nplayers;
  struct {
    char protocol[33];
    unsigned count;
  } players[CTLSRV_STREAM_PROTOS];
} ctlsrv_stream_t;

/* ctlsrv_sessions counts live sessions (for metrics). */
size_t ctlsrv_sessions(ctlsrv_t *s);

/* ctlsrv_metrics writes the channel's Prometheus lines. */
void ctlsrv_metrics(ctlsrv_t *s, FILE *out);

#endif
