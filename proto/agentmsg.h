/* The control messages as an agent sends and receives them, as plain C
 * structs the agent owns (docs/protocol.md): its configuration (generation,
 * topology, rules), the answers it reads, the requests it sends. The agent
 * sees no generated type; agentmsg.c converts, decoding through ctlmsg.c
 * (the one decoder, its size cap and field bounds).
 *
 * The numbers below are the wire's (checked at compile time in agentmsg.c). */
#ifndef CASCADE_AGENTMSG_H
#define CASCADE_AGENTMSG_H

#include <stddef.h>
#include <stdint.h>

#include "ctlmsg_bounds.h"
#include "relaymsg.h"

/* Status codes of a Response (proto Code). */
enum {
  AGENTMSG_OK = 0,
  AGENTMSG_BAD_REQUEST = 1,
  AGENTMSG_AUTH_FAILED = 2,
  AGENTMSG_NO_SESSION = 3,
  AGENTMSG_RATE_LIMITED = 4,
  AGENTMSG_UNAVAILABLE = 5,
  AGENTMSG_REVOKED = 6,
  AGENTMSG_PENDING = 7,
};

/* Where a reported stream comes from (proto StreamOrigin). */
enum {
  AGENTMSG_ORIGIN_UNKNOWN = 0,
  AGENTMSG_ORIGIN_LOCAL = 1,
  AGENTMSG_ORIGIN_PUSHED = 2,
  AGENTMSG_ORIGIN_PULLED = 3,
};

/* The peer's place in a link report (proto LinkRole). */
enum {
  AGENTMSG_LINK_PARENT = 1,
  AGENTMSG_LINK_CHILD = 2,
};

#define AGENTMSG_SESSION_LEN 16
#define AGENTMSG_PLAYERS_MAX 4 /* player counts per stream report */

/* ---- configuration ---------------------------------------------------------- */

typedef struct agentmsg_child {
  int64_t id;
  char *name;
  int64_t epoch;                 /* credential epoch its certificate must name */
} agentmsg_child_t;

typedef struct agentmsg_pull_rule {
  char *pattern;
  char *target;
} agentmsg_pull_rule_t;

/* Edge authorization modes (proto StreamAuthMode). */
enum { AGENTMSG_AUTH_NONE = 0, AGENTMSG_AUTH_TOKEN = 1, AGENTMSG_AUTH_HOOK = 2 };
enum { AGENTMSG_HOOK_PUBLISH = 0, AGENTMSG_HOOK_PLAY, AGENTMSG_HOOK_STOP, AGENTMSG_HOOK_UNPUBLISH,
       AGENTMSG_HOOK_N };

typedef struct agentmsg_auth_rule {
  char *pattern;
  int publish;                   /* AGENTMSG_AUTH_* */
  int play;
} agentmsg_auth_rule_t;

typedef struct agentmsg_stream_key {
  uint32_t id;
  uint8_t key[CTLMSG_AUTH_KEY_LEN]; /* a secret */
} agentmsg_stream_key_t;

/* Rules.streamauth: the node's rules then the deployment's, the valid keys
 * (the signing key first), the hooks ("" URL: none). */
typedef struct agentmsg_streamauth {
  agentmsg_auth_rule_t *rules;
  size_t nrules;
  agentmsg_stream_key_t keys[CTLMSG_AUTH_KEYS_MAX];
  size_t nkeys;
  char *hook_url[AGENTMSG_HOOK_N];
  uint32_t hook_timeout_ms;
  uint32_t hook_cache_ms;
  int hook_fail_open;
} agentmsg_streamauth_t;

/* The rules the controller sets. A list or flag it leaves out (has_* 0)
 * means "the agent's own configuration file decides". */
typedef struct agentmsg_rules {
  int has_relayapi;
  char **allow;
  size_t nallow;
  char **deny;
  size_t ndeny;
  int has_pull;
  agentmsg_pull_rule_t *pull;
  size_t npull;
  int has_autopush;
  int autopush;
  int has_streamauth;
  agentmsg_streamauth_t streamauth;
} agentmsg_rules_t;

/* A node's configuration (proto Config). In a copy (agentmsg_config_copy)
 * or a decoded answer everything is owned and no string is NULL. */
typedef struct agentmsg_config {
  uint64_t generation;
  int64_t parent_id;             /* 0: none */
  char *parent_name;
  char *parent_quic;             /* the address the parent advertised */
  int64_t parent_epoch;
  agentmsg_child_t *children;
  size_t nchildren;
  agentmsg_rules_t rules;
} agentmsg_config_t;

/* agentmsg_config_copy makes |out| a deep copy of |in| (NULL strings become
 * ""). 0, or -1 on out of memory with |out| zeroed. */
int agentmsg_config_copy(const agentmsg_config_t *in, agentmsg_config_t *out);

/* agentmsg_config_free frees what a copy or a decoded answer owns and zeroes
 * |cf|; accepts NULL. */
void agentmsg_config_free(agentmsg_config_t *cf);

/* ---- answers ---------------------------------------------------------------- */

typedef enum {
  AGENTMSG_BODY_NONE = 0,        /* a status alone */
  AGENTMSG_BODY_CHALLENGE,
  AGENTMSG_BODY_AUTH_OK,
  AGENTMSG_BODY_HEARTBEAT_REPLY,
  AGENTMSG_BODY_CONFIG,
  AGENTMSG_BODY_CERTIFICATE,
  AGENTMSG_BODY_CA,
  AGENTMSG_BODY_RELAY_ACK,
} agentmsg_body_t;

/* One decoded Response. Its pointers stay valid until agentmsg_response_free. */
typedef struct agentmsg_response {
  uint64_t id;
  int code;                      /* AGENTMSG_OK ... */
  const char *message;           /* never NULL */
  agentmsg_body_t body;
  struct {
    const uint8_t *exchange;     /* AGENTMSG_SESSION_LEN bytes */
    const uint8_t *salt;
    size_t salt_len;
    uint32_t iterations;
    const char *nonce;
  } challenge;
  struct {
    const uint8_t *server_signature;
    size_t server_signature_len;
    const uint8_t *session;      /* AGENTMSG_SESSION_LEN bytes */
    int64_t instance_id;
    uint32_t heartbeat_ms;
    int64_t epoch;
  } auth_ok;
  struct {
    uint64_t desired_generation;
    int64_t cert_not_after;
  } heartbeat_reply;
  agentmsg_config_t config;      /* AGENTMSG_BODY_CONFIG */
  struct {
    const char *cert;            /* PEM */
    const char *ca;              /* PEM of the CA that signed it, may be empty */
    int64_t not_after;
  } certificate;
  const char *ca;                /* AGENTMSG_BODY_CA: the controller's CA, PEM */
  int relay_cancelled;           /* AGENTMSG_BODY_RELAY_ACK */
  size_t nrelay;                 /* relay requests of a poll answer: agentmsg_relay_request */
  void *wire;                    /* owned: the decoded message the pointers borrow from */
} agentmsg_response_t;

/* agentmsg_decode_response decodes and checks |len| bytes of |buf| (ctlmsg's
 * cap and bounds) into |out|. 0, or -1 with |why| saying why and |out|
 * zeroed. */
int agentmsg_decode_response(const uint8_t *buf, size_t len, agentmsg_response_t *out, char *why,
                             size_t whylen);

/* agentmsg_response_free frees |r| and zeroes it; accepts NULL. */
void agentmsg_response_free(agentmsg_response_t *r);

/* agentmsg_relay_request points |out| at relay request |i| of |r| (valid
 * while |r| is), its headers through |hv| (room for RELAYBOUNDS_HEADERS_MAX).
 * Each request is judged alone against the relay bounds: 0, or -1 with
 * |why| saying which bound it breaks (|out->id| is set even then, so that
 * the refusal can be answered). */
int agentmsg_relay_request(const agentmsg_response_t *r, size_t i, relay_request_t *out,
                           relay_header_t *hv, char *why, size_t whylen);

/* agentmsg_relay_ack_cancelled reads the controller's answer to a
 * RelayResponse: 0 when the relay goes on, 1 when it must stop (cancelled,
 * refused, or not a readable RelayAck). */
int agentmsg_relay_ack_cancelled(const uint8_t *buf, size_t len);

/* ---- requests --------------------------------------------------------------- */

/* What every request carries. */
typedef struct agentmsg_head {
  uint64_t id;
  const uint8_t *session;        /* AGENTMSG_SESSION_LEN bytes; NULL before AuthOk */
} agentmsg_head_t;

typedef struct agentmsg_advertise {
  const char *quic, *http, *rtmp, *static_parent, *version;
} agentmsg_advertise_t;

/* One QUIC link as the heartbeat reports it (proto LinkReport). */
typedef struct agentmsg_link_report {
  int64_t peer_id;
  int role;                      /* AGENTMSG_LINK_PARENT or anything else: a child */
  int up;
  uint64_t rtt_us, bytes_sent, bytes_recv, lost;
  int64_t up_since;              /* unix seconds, 0 when down */
} agentmsg_link_report_t;

typedef struct agentmsg_player_count {
  const char *protocol;          /* "rtmp", "httpflv", ... */
  uint32_t count;
} agentmsg_player_count_t;

/* One stream as the heartbeat reports it (proto StreamReport). */
typedef struct agentmsg_stream_report {
  const char *path;              /* app/name */
  int origin;                    /* AGENTMSG_ORIGIN_* */
  int64_t origin_node;
  int64_t publisher_since;
  agentmsg_player_count_t players[AGENTMSG_PLAYERS_MAX];
  size_t nplayers;
} agentmsg_stream_report_t;

/* One kick or drop at the node as the heartbeat carries it (proto
 * StreamEvent); the strings are borrowed. */
typedef struct agentmsg_stream_event {
  uint64_t seq;
  int64_t time;                  /* unix seconds */
  const char *action;            /* "stream.kick" or "stream.drop" */
  const char *path;
  uint64_t connection;           /* 0 for a drop */
  const char *addr, *kind, *protocol; /* "" for a drop */
  uint32_t ended;
} agentmsg_stream_event_t;

typedef struct agentmsg_heartbeat {
  uint64_t applied_generation;
  int64_t static_parent_id;
  struct {
    uint32_t streams, links;
    uint64_t bytes_in, bytes_out;
    uint32_t subscribers;
  } stats;
  const agentmsg_link_report_t *links;
  size_t nlinks;
  const agentmsg_stream_report_t *streams;
  size_t nstreams;
  int streams_reported;          /* |streams| is the full list (may be empty) */
  uint32_t streams_total;
  const agentmsg_stream_event_t *events; /* at most CTLMSG_STREAM_EVENTS_MAX are packed */
  size_t nevents;
  uint64_t events_dropped;
} agentmsg_heartbeat_t;

/* The agentmsg_pack_* functions serialise one Request into a malloc'd
 * buffer of *|len| bytes: NULL on out of memory or over the cap. */
uint8_t *agentmsg_pack_ca_request(const agentmsg_head_t *h, size_t *len);
uint8_t *agentmsg_pack_register(const agentmsg_head_t *h, const char *name, const char *verifier,
                                const char *join_token, size_t *len);
uint8_t *agentmsg_pack_auth_start(const agentmsg_head_t *h, const char *name,
                                  const char *client_nonce, size_t *len);
uint8_t *agentmsg_pack_auth_finish(const agentmsg_head_t *h, const uint8_t *exchange,
                                   const uint8_t *proof, size_t proof_len,
                                   const agentmsg_advertise_t *adv, size_t *len);
uint8_t *agentmsg_pack_poll(const agentmsg_head_t *h, uint64_t known_generation, size_t *len);
uint8_t *agentmsg_pack_heartbeat(const agentmsg_head_t *h, const agentmsg_heartbeat_t *hb,
                                 size_t *len);
uint8_t *agentmsg_pack_cert_request(const agentmsg_head_t *h, const char *csr, size_t *len);
uint8_t *agentmsg_pack_relay_response(const agentmsg_head_t *h, const relay_response_t *m,
                                      size_t *len);

#endif
