/* The control channel's server: nng REP over TLS, agents' registration,
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

/* ctlsrv_stop closes the listener, answers nothing more, joins every
 * thread and frees; accepts NULL. */
void ctlsrv_stop(ctlsrv_t *s);

/* ctlsrv_wake asks for a reconcile pass now: something in the registry
 * changed (a node's rules, topology, secret, or the node is gone). */
void ctlsrv_wake(ctlsrv_t *s);

#define CTLSRV_LINK_PARENT 1
#define CTLSRV_LINK_CHILD 2

/* One QUIC link as a node's last heartbeat reported it. */
typedef struct ctlsrv_link {
  int64_t peer_id;
  int role;                  /* CTLSRV_LINK_PARENT: the reporter's parent */
  int up;
  uint64_t rtt_us;
  int64_t up_since;          /* unix seconds, 0 when down */
  int64_t reported_ms;
} ctlsrv_link_t;

/* ctlsrv_link_of finds the link between |child| and its parent |parent|:
 * the child's report if it has a live session and reports it, else the
 * parent's. Returns 1 with |out| set, 0 when neither knows. */
int ctlsrv_link_of(ctlsrv_t *s, int64_t child, int64_t parent, ctlsrv_link_t *out);

/* ctlsrv_sessions counts live sessions (for metrics). */
size_t ctlsrv_sessions(ctlsrv_t *s);

/* ctlsrv_metrics writes the channel's Prometheus lines. */
void ctlsrv_metrics(ctlsrv_t *s, FILE *out);

#endif
