/* The control client: one agent's link to the controller (docs/protocol.md).
 *
 * A reconnecting state machine on the agent's libev loop:
 *   BACKOFF -> [CA_FETCH] -> REGISTER -> AUTH_START -> AUTH_FINISH -> CERT -> RUNNING
 * with any failure closing the session and returning to BACKOFF. The
 * connection (agent/ctlsp.c) runs on the loop too; only the thread that
 * resolves host names queues an event in the shared ctlc_hub_t and wakes
 * the loop, which alone touches client state. */
#ifndef CASCADE_CTLC_H
#define CASCADE_CTLC_H

#include <ev.h>
#include <gnutls/gnutls.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "agent_config.h"
#include "agent_rules.h"
#include "agent_scram.h"
#include "agentmsg.h"
#include "ctlsp.h"
#include "ctltls.h"

typedef enum {
  CTLC_BACKOFF = 0,
  CTLC_CA_FETCH,
  CTLC_REGISTER,
  CTLC_AUTH_START,
  CTLC_AUTH_FINISH,
  CTLC_CERT,
  CTLC_RUNNING,
} ctlc_state_t;

typedef struct ctlc ctlc_t;
typedef struct ctlc_event ctlc_event_t;

/* One QUIC link as the heartbeat reports it (agentmsg.h); role
 * AGENTMSG_LINK_PARENT (1): our parent, AGENTMSG_LINK_CHILD (2): one of our
 * children. */
typedef agentmsg_link_report_t ctlc_link_report_t;

#define CTLC_LINK_REPORTS_MAX 1024

/* What every client of one process shares: the loop bridge, the file
 * config, the Register verifier and SCRAM key cache, the controller CA. */
typedef struct ctlc_hub {
  struct ev_loop *loop;
  ev_async wake;                 /* resolver threads -> loop */
  pthread_mutex_t mu;            /* guards the queue only */
  ctlc_event_t *head, *tail;     /* owned; drained by the loop */
  const agent_config_t *cfg;     /* not owned */
  char verifier[SCRAM_VERIFIER_MAX];
  agent_scram_cache_t keys;
  char *ca_pem;                  /* owned; NULL until known (pin bootstrap) */
  /* TLS of every connection: the CA's trust (set with ca_pem), none (the
   * pin bootstrap), the choices offered (CTLTLS_PRIORITY_BASE). */
  gnutls_certificate_credentials_t cred_ca, cred_none;
  gnutls_priority_t prio;
  uint8_t trust_fp[CTLTLS_FP_LEN]; /* ctltls_fingerprint of the CA (with cred_ca) */
  int simulate;                  /* no CERT, log lines shared and rate-limited */
  uint64_t rng;
  uint64_t bad_messages;         /* answers the codec refused (for /metrics) */
  ev_tstamp log_last;            /* simulate: shared log rate limit */
  unsigned joining;              /* simulate: clients between a connect and running */
  unsigned log_suppressed;
  /* Called on the loop thread whenever a client's visible state changed. */
  void (*on_change)(ctlc_t *c, void *arg);
  void *on_change_arg;
  /* Called on the loop thread before each heartbeat: writes at most |max|
   * link reports to |out| and returns how many, and the totals of Stats. */
  size_t (*link_reports)(ctlc_t *c, ctlc_link_report_t *out, size_t max, void *arg);
  void *link_reports_arg;
  /* Called on the loop thread with each API relay request of a poll answer
   * (docs/protocol.md, "API relay"), valid during the call; |invalid| is
   * NULL, or the relay bound the request breaks (then only its id is set).
   * NULL: relays are ignored. */
  void (*on_relay)(ctlc_t *c, const relay_request_t *q, const char *invalid, void *arg);
  void *on_relay_arg;
  /* Called on the loop thread before each heartbeat: writes at most |max|
   * stream reports to |out| (their strings valid until the heartbeat is
   * packed, in the same loop turn) and |total|, every stream of the node;
   * returns how many, or -1 to send no report (the previous one stays). */
  int (*stream_reports)(ctlc_t *c, agentmsg_stream_report_t *out, int max, uint32_t *total,
                        void *arg);
  void *stream_reports_arg;
  /* Called on the loop thread before each heartbeat: writes at most |max|
   * stream events (kicks, drops; their strings valid until the heartbeat
   * is packed) to |out|, the oldest first, and *|dropped|, the events lost
   * so far; returns how many. They stay queued until stream_events_ack. */
  size_t (*stream_events)(ctlc_t *c, agentmsg_stream_event_t *out, size_t max,
                          uint64_t *dropped, void *arg);
  /* The controller answered the heartbeat that carried the first |n|
   * events: they can go. */
  void (*stream_events_ack)(ctlc_t *c, size_t n, void *arg);
  void *stream_events_arg;
} ctlc_hub_t;

typedef struct ctlc_op {
  ctlc_t *c;                     /* fixed */
  int kind;                      /* fixed: poll or rpc */
  ctlsp_req_t req;               /* the exchange on the connection */
  int busy;
  uint64_t req_id;               /* the request id inside the message (agentmsg) */
} ctlc_op_t;

typedef struct ctlc_child {
  int64_t id;
  char *name;
  int64_t epoch;                 /* credential epoch its certificate must name */
} ctlc_child_t;

struct ctlc {
  ctlc_hub_t *hub;
  char *name;                    /* owned */
  ctlc_state_t state;
  unsigned attempt;              /* failures since the last AuthOk */
  unsigned slow;                 /* waits in a row that ran out (agent_patience_ms) */
  int joining;                   /* simulate: counted in hub->joining */
  int failed;                    /* last session ended in an error */
  ev_timer retry;                /* backoff */
  ev_timer beat;                 /* heartbeat; also drives certificate renewal */
  ev_timer connect_timer;        /* several URLs: no connection this long, try the next */
  char **targets;                /* owned: the URLs tried in turn (controller.url with host
                                    names expanded to their addresses, agent/ctl_urls.h) */
  size_t ntargets;
  size_t url_idx;                /* the entry of |targets| in use */
  char **next_targets;           /* owned: a newer expansion, taken at the next move */
  size_t nnext;
  int has_names;                 /* controller.url names a host by name */
  pthread_t resolve_thread;      /* while |resolving| */
  int resolving;
  int wait_resolve;              /* the URL in use names a host: connect once resolved */
  ev_tstamp resolved_at;
  int conn_up;                   /* the connection is up (handshakes done) */
  int conn_stale;                /* a request on it went unanswered: replace it */
  int known;                     /* authenticated before: the next session skips Register */
  int was_up;                    /* the session that just ended had authenticated */
  uint64_t url_moves;            /* times the client moved to another URL */

  /* The connection; kept across sessions while it is up and answers. */
  ctlsp_t *sp;                   /* owned; NULL: none */
  int sp_verified;               /* it verifies the controller (or tcp://) */
  uint64_t tls_key;              /* its TLS sessions in the resumption store (agent/ctltls.h) */

  /* Session: valid while |open|. */
  int open;
  unsigned epoch;                /* bumped per session; stale events are dropped */
  ctlc_op_t poll, rpc;
  uint64_t next_id;
  char nonce[48];
  uint8_t exchange[16];
  char *auth_msg;                /* owned, between challenge and AuthOk */
  const agent_scram_keys_t *keys;
  uint8_t session[16];
  int has_session;
  unsigned heartbeat_ms;

  /* Identity and desired state; kept across sessions. */
  int64_t instance_id;           /* 0 until the first AuthOk */
  uint64_t known_gen;            /* generation last received */
  uint64_t applied_gen;          /* generation fully applied and acked */
  size_t hb_events;              /* stream events the heartbeat in flight carries */
  int64_t parent_id;
  int64_t parent_epoch;          /* credential epoch the parent's certificate must name */
  char *parent_name, *parent_quic;
  int64_t node_epoch;            /* this node's credential epoch (AuthOk), 0 unknown */
  int64_t static_parent_found;   /* set by the links: the node found at cascadeclient.server */
  ctlc_child_t *children;
  size_t nchildren;
  agent_rules_t rules;
  agentmsg_config_t *last_cf;    /* owned: a copy of the configuration applied, for the
                                    state file when the certificate or epoch changes */
  int cached;                    /* the configuration runs from the state file, not yet
                                    confirmed by a controller (cached mode) */

  /* Certificate (not in simulation). */
  char *key_pem;                 /* owned, secret */
  char *cert_pem;                /* owned: the node certificate in use */
  char *node_ca_pem;             /* owned: the CA that signed it (Certificate.ca) */
  time_t cert_not_before, cert_not_after;
  int64_t cert_id;
  int64_t cert_epoch;            /* the epoch it names, -1 none */
  time_t cert_retry_at;

  /* Status. */
  time_t connected_since;        /* 0 when not running */
  char last_error[256];
  char last_logged[256];
  ev_tstamp last_logged_at;
  int auth_failed_logged;
};

/* ctlc_hub_init prepares |hub| on |loop| for clients of |cfg|: derives the
 * Register verifier (one PBKDF2) and loads the controller CA (controller.ca,
 * or a pinned CA saved earlier in the data directory). Returns 0 or -1 with
 * |err| set. */
int ctlc_hub_init(ctlc_hub_t *hub, struct ev_loop *loop, const agent_config_t *cfg,
                  int simulate, char *err, size_t errlen);

/* ctlc_hub_trust loads hub->ca_pem into the TLS credentials that verify
 * the controller, once (a pin bootstrap's CA matches the pin, so every
 * client fetches the same one). 0 or -1. */
int ctlc_hub_trust(ctlc_hub_t *hub);

/* ctlc_hub_destroy drops queued events and frees the hub; every client must
 * have been destroyed first. Accepts a zeroed hub. */
void ctlc_hub_destroy(ctlc_hub_t *hub);

/* ctlc_new makes a client named |name| and starts connecting at once. */
ctlc_t *ctlc_new(ctlc_hub_t *hub, const char *name, char *err, size_t errlen);

/* ctlc_destroy closes the session and its connection and frees |c|;
 * accepts NULL. Never waits. */
void ctlc_destroy(ctlc_t *c);

/* In simulation at most this many clients of one process join at once (TLS
 * handshake to AuthOk); the others wait for a place. A real agent has its
 * own CPU; a thousand simulated ones share one loop, and a thousand
 * handshakes begun together would all finish late together. */
#define CTLC_SIM_JOINING_MAX 64

/* ctlc_url is the controller URL |c| uses now. */
const char *ctlc_url(const ctlc_t *c);

/* ctlc_state_name is the status word of |s|:
 * backoff|connecting|registering|authenticating|running. */
const char *ctlc_state_name(ctlc_state_t s);

#endif
