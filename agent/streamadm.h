/* The node's stream management routes on the admin listener (docs/api.md,
 * "Managing streams"): GET /api/stream/connections, POST /api/stream/kick,
 * POST /api/stream/drop. Answered on the loop thread from the hub's
 * connection registry (dataplane/connreg.h); every kick and drop is queued
 * for the controller's audit trail (streamev.h). */
#ifndef CASCADE_AGENT_STREAMADM_H
#define CASCADE_AGENT_STREAMADM_H

#include <stddef.h>
#include <stdint.h>

#include "httpflv.h"
#include "hub.h"
#include "streamev.h"

#define STREAMADM_BODY_MAX 4096       /* a kick's or drop's JSON body */

/* streamadm_parse_kick reads a kick's body, {"id": N} with N a positive
 * integer and no other member: 0 with *id, or the HTTP status (400, 413)
 * with the reason in |why|. */
int streamadm_parse_kick(const char *body, size_t len, uint64_t *id, char *why, size_t wlen);

/* streamadm_parse_drop reads a drop's body, {"path": "app/name"} with a
 * valid stream path and no other member: 0 with the path in |path| (of
 * |plen| bytes, at least 1025), or the HTTP status (400, 413) with the
 * reason in |why|. */
int streamadm_parse_drop(const char *body, size_t len, char *path, size_t plen, char *why,
                         size_t wlen);

/* streamadm_query_path finds path=... in |query| (percent-decoded into
 * |path|, |plen| bytes): 1 found and valid, 0 absent, -1 invalid. */
int streamadm_query_path(const char *query, char *path, size_t plen);

/* streamadm_route answers |rq| when its path is one of the routes above:
 * the HTTP status, with *out filled; 0 when the path is not one of them.
 * |now| is the wall clock (ev_now), |q| where kicks and drops are queued. */
int streamadm_route(hub_t *hub, streamev_q_t *q, double now, const httpflv_request_t *rq,
                    httpflv_reply_t *out);

#endif
