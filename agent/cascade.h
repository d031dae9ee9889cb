/* The cascade of streams (docs/media.md, "Cascade"): autopush of every
 * stream published here up the parent link, on-demand pull of a missing
 * path by the pull rules (m7s:// from the parent, rtmp:// or http:// from
 * an origin outside the cascade), pull linger, and retries with backoff.
 *
 * Desired state and reconcile: hub events and link changes only mark the
 * state dirty; a timer compares what should run (live streams to push,
 * paths with players to pull) with what runs and applies the difference.
 * Nothing here touches a socket: it drives dataplane/relay.h and
 * dataplane/pullsrc.h. */
#ifndef CASCADE_CASCADE_H
#define CASCADE_CASCADE_H

#include <ev.h>
#include <jansson.h>
#include <stdint.h>

#include "agent_config.h"
#include "ctlc.h"
#include "hub.h"
#include "quic.h"
#include "relay.h"

typedef struct casc casc_t;

/* casc_new installs itself as |hub|'s observer. NULL when out of memory. */
casc_t *casc_new(struct ev_loop *loop, const agent_config_t *cfg, const ctlc_t *ctl, hub_t *hub);

/* casc_free stops every push and pull (call it before the links and the
 * hub go) and frees |C|; accepts NULL. */
void casc_free(casc_t *C);

/* casc_parent tells the parent link: |c| and |r| once it is up and
 * verified (node |id|), NULL when it goes down or the endpoint goes. Every
 * push and pull on the old link is stopped at once. */
void casc_parent(casc_t *C, quic_conn *c, relay_t *r, int64_t id);

/* casc_kick asks for a reconcile soon (rules changed). */
void casc_kick(casc_t *C);

/* casc_status is the "cascade" object of GET /api/cascade/status. */
json_t *casc_status(const casc_t *C);

/* casc_metrics returns the cascade lines of /metrics (malloc'd), or NULL. */
char *casc_metrics(const casc_t *C);

#endif
