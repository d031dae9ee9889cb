/* The seam between the API relay (api_relay.c) and the control sessions
 * (ctlsrv.c), in both directions, so that neither includes the other:
 *   - relay_sessions_t: what the relay needs of the sessions, a table of
 *     functions the control server fills in (ctlsrv_relay_sessions) and
 *     main.c hands to the registry (relay_reg_set_sessions);
 *   - the relay_* functions below: what the control server may do with a
 *     relay (queue it, put it in a poll answer, hand it the node's
 *     answer, end a node's relays).
 * See docs/architecture.md, "Controller: who calls whom". */
#ifndef CASCADE_RELAY_SESSIONS_H
#define CASCADE_RELAY_SESSIONS_H

#include <stddef.h>
#include <stdint.h>

#include "relaymsg.h"

struct relay_reg;
struct ctl_relay;
struct park; /* a RelayResponse whose ack is held back (the control server's) */

#define RELAY_MAX_PER_NODE 16        /* relays in progress to one node */


/* The control sessions as the API relay sees them. |arg| is the first
 * argument of each; a NULL |arg| (no control server) has no sessions. */
typedef struct relay_sessions {
  void *arg;
  /* submit queues relay |rl| for node |node|'s next poll (its parked poll
   * is answered at once) and takes a reference; -1 when the node has no
   * session here. */
  int (*submit)(void *arg, int64_t node, struct ctl_relay *rl);
  /* held_here: node |node| has a live session on this replica. */
  int (*held_here)(void *arg, int64_t node);
  /* replica: this replica's id, as the sessions table names the replica
   * holding a node ("" when none). */
  const char *(*replica)(void *arg);
  /* ack answers the held-back RelayResponse |ack| with a RelayAck
   * (|cancelled|: the relay is over) and frees it. Any thread. */
  void (*ack)(void *arg, struct park *ack, int cancelled);
} relay_sessions_t;

/* relay_reg_set_sessions gives registry |g| the sessions it relays through;
 * before the HTTP server starts. */
void relay_reg_set_sessions(struct relay_reg *g, relay_sessions_t sessions);

/* relay_ref / relay_unref count the references of |rl|. */
void relay_ref(struct ctl_relay *rl);
void relay_unref(struct ctl_relay *rl);

/* relay_fill points |out| at |rl|'s request (valid while a reference is
 * held); returns the bytes it adds to a message, or 0 when the relay is
 * over (cancelled, failed) and must not be sent. */
size_t relay_fill(struct ctl_relay *rl, relay_request_t *out);

/* relay_sent notes that |rl| went out in a poll answer. */
void relay_sent(struct ctl_relay *rl);

/* relay_deliver hands node |node|'s RelayResponse |m| to its relay. Returns
 * 0: ack now; 1: |ack| (a parked reply) was kept and will be answered
 * through relay_sessions_t.ack when the caller has read enough; -1: ack
 * "cancelled" (unknown relay, another node's, caller gone, or a protocol
 * error). */
int relay_deliver(struct relay_reg *g, int64_t node, const relay_response_t *m,
                  struct park *ack);

/* relay_node_gone ends every relay of |node| (its session ended): 502
 * before the first answer, a cut answer after. */
void relay_node_gone(struct relay_reg *g, int64_t node, const char *why);

#endif
