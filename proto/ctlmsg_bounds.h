/* The control channel's size cap and field bounds (docs/protocol.md), apart
 * from the codec (ctlmsg.h) so that code which never sees a generated type
 * (the agent, through agentmsg.h) can size its buffers by them. */
#ifndef CASCADE_CTLMSG_BOUNDS_H
#define CASCADE_CTLMSG_BOUNDS_H

#include "relaybounds.h"

#define CTLMSG_MAX (1024 * 1024)
#define CTLMSG_SESSION_LEN 16
#define CTLMSG_FIELD_MAX 256
#define CTLMSG_CSR_MAX (16 * 1024)
#define CTLMSG_JOIN_TOKEN_MAX 128           /* Register.join_token */
#define CTLMSG_CERT_MAX (16 * 1024)
/* API relay bounds (docs/protocol.md, "API relay"); those of a request are
 * relaybounds.h's, shared with the controller's checks. */
#define CTLMSG_RELAY_BODY_MAX RELAYBOUNDS_BODY_MAX /* request body carried to the node */
#define CTLMSG_RELAY_CHUNK_MAX (256 * 1024) /* response data per RelayResponse */
#define CTLMSG_RELAY_HEADERS_MAX 64         /* of a RelayResponse */
#define CTLMSG_RELAY_HNAME_MAX 256
#define CTLMSG_RELAY_HVALUE_MAX 4096
#define CTLMSG_RELAY_PER_POLL 64            /* RelayRequests in one poll answer */
#define CTLMSG_STREAMS_MAX 1024             /* stream reports read per heartbeat */
#define CTLMSG_STREAM_EVENTS_MAX 64         /* stream events (kick, drop) read per heartbeat */
#define CTLMSG_EVENT_ADDR_MAX 64            /* StreamEvent.addr */
/* Edge authorization (Rules.streamauth) */
#define CTLMSG_AUTH_RULES_MAX 64
#define CTLMSG_AUTH_PATTERN_MAX 1024
#define CTLMSG_AUTH_KEYS_MAX 2
#define CTLMSG_AUTH_KEY_LEN 32
#define CTLMSG_HOOK_URL_MAX 1024
#define CTLMSG_HOOK_TIMEOUT_MAX 60000       /* ms */
#define CTLMSG_HOOK_CACHE_MAX 3600000       /* ms */

#endif
