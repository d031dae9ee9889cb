/* The agent's QUIC links (docs/protocol.md, "Links"): one endpoint on the
 * agent's loop, the link to the parent (client role, a reconnecting
 * link_fsm) and the links from the children (server role), reconciled with
 * the topology the control client holds whenever it changes.
 *
 * Identity is the node certificate the controller's CA issued: a parent
 * accepts a child only if the certificate's node id is one of the children
 * the topology assigns to it; a child accepts a parent only if its node id
 * is the one the controller named (any node of the CA when the parent is
 * the static cascadeclient.server and the controller names none). The test
 * services of qsvc.h are served on every verified link. */
#ifndef CASCADE_LINKS_H
#define CASCADE_LINKS_H

#include <ev.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "agent_config.h"
#include "ctlc.h"
#include "hub.h"
#include "quic.h"
#include "relay.h"

/* Application error codes of CONNECTION_CLOSE on a link. */
#define LINK_ERR_CLOSED 0x200         /* ordinary close (no longer needed) */
#define LINK_ERR_NOT_ASSIGNED 0x201   /* parent: the topology does not give it this child */
#define LINK_ERR_TOO_MANY 0x202       /* parent: cascadeserver.maxchildren reached */
#define LINK_ERR_WRONG_PARENT 0x203   /* child: the parent is not the node the controller named */
#define LINK_ERR_BAD_CERT 0x204       /* the peer's certificate names no node */
#define LINK_ERR_SUPERSEDED 0x205     /* parent: a newer link from the same child replaced it */
#define LINK_ERR_PARENT_CHANGED 0x206 /* child: the controller assigned another parent */
#define LINK_ERR_RENEW 0x207          /* the endpoint restarts with a renewed certificate */
#define LINK_ERR_STALE_CERT 0x208     /* the peer's certificate names an old credential epoch */
#define LINK_ERR_PROBE 0x209          /* child: static parent found, waiting for the assignment */
#define LINK_ERR_GOING_AWAY 0x20a     /* the node shuts down (SIGTERM): a normal close */

#define LINKTEST_MAX_BYTES (1024ull * 1024 * 1024)

typedef struct links links_t;

/* links_new prepares the links of the agent on |loop|; nothing is bound
 * until links_reconcile finds a certificate and a topology. NULL when out
 * of memory. */
links_t *links_new(struct ev_loop *loop, const agent_config_t *cfg, ctlc_t *ctl);

/* Told when the parent link is up and verified (|c|, the endpoint's relay
 * |r|, the parent's node |id|) and when it is gone (all NULL/0). */
typedef void (*links_parent_fn)(void *arg, quic_conn *c, relay_t *r, int64_t id);

/* links_set_media gives the links the media hub (PUSH and PULL streams are
 * served on every verified link through a relay) and the parent hook.
 * Call it before the first links_reconcile. */
void links_set_media(links_t *L, hub_t *hub, links_parent_fn fn, void *arg);

/* links_drain closes every link as going away (LINK_ERR_GOING_AWAY),
 * refuses new children with that code and dials no parent any more: the
 * node shuts down. links_open then counts down to 0 as the closes finish. */
void links_drain(links_t *L);

/* links_open is the number of connections with a peer still open. */
size_t links_open(const links_t *L);

/* links_free drops every link at once (peers notice by their idle timeout)
 * and frees |L|; accepts NULL. Not from a quic callback. */
void links_free(links_t *L);

/* links_reconcile compares what runs with the control client's certificate
 * and topology and applies the difference: endpoint, parent, children. */
void links_reconcile(links_t *L);

/* links_status is the "links" array of GET /api/cascade/status. */
json_t *links_status(const links_t *L);

/* links_metrics returns the link lines of /metrics (malloc'd), or NULL. */
char *links_metrics(const links_t *L);

/* links_reports fills the heartbeat's link reports; returns how many. */
size_t links_reports(const links_t *L, ctlc_link_report_t *out, size_t max);

/* links_linktest_start opens a SOURCE stream of |bytes| on the parent link
 * and checks every byte as it comes. 0, -EBUSY (one at a time), -ENOTCONN
 * (no parent link up), -EINVAL (|bytes| 0 or above LINKTEST_MAX_BYTES),
 * other negative errors from the stream. */
int links_linktest_start(links_t *L, uint64_t bytes);

/* links_linktest_json describes the running or last link test. */
json_t *links_linktest_json(const links_t *L);

#endif
