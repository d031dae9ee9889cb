/* The agent's side of the API relay (docs/protocol.md, "API relay"): the
 * controller hands relay requests to the agent's long poll; each is checked
 * against the relay bounds (relaybounds.h: one over them is answered 400 by
 * itself) and the node's own effective cascadeclient.relayapi rules (on the
 * path normalised again here), then performed against the agent's admin
 * HTTP listener (http.adminaddr) over loopback TCP, non-blocking on the
 * loop, and its answer streamed back as RelayResponse messages on a REQ
 * context of its own: the next message goes only after the controller's
 * ack, and an ack saying "cancelled" (the caller is gone) closes the local
 * request. */
#ifndef CASCADE_RELAYC_H
#define CASCADE_RELAYC_H

#include <ev.h>
#include <sys/socket.h>

#include "ctlc.h"
#include "relaymsg.h"

#define RELAYC_MAX 16              /* relays in progress on one node */
#define RELAYC_HEAD_TIMEOUT_S 60.0 /* the local server must answer within it */
#define RELAYC_ACK_TIMEOUT_MS 120000

typedef struct relayc relayc_t;

/* relayc_new serves relay requests of control client |c| on |loop|,
 * performing them against the node's admin HTTP listener |listen_fd| (its
 * bound address; a wildcard address is reached through loopback); -1: the
 * node has no local API and every relay that passes the rules is answered
 * 503 saying so. NULL on out of memory. */
relayc_t *relayc_new(struct ev_loop *loop, ctlc_t *c, int listen_fd);

/* relayc_free aborts every relay and frees |r|; accepts NULL. */
void relayc_free(relayc_t *r);

/* relayc_submit starts relay request |q| (from a poll answer; only read
 * during the call). |invalid|: NULL, or the relay bound |q| breaks, which
 * gets it answered 400 by itself (only its id is read then). */
void relayc_submit(relayc_t *r, const relay_request_t *q, const char *invalid);

/* relayc_check aborts the relays of a session that ended; call it when the
 * control client's state changed. */
void relayc_check(relayc_t *r);

/* relayc_metrics is the relay's Prometheus lines (valid until the next
 * call). */
const char *relayc_metrics(relayc_t *r);

#endif
