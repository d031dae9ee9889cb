/* The API relay's control messages as plain C structs (docs/protocol.md,
 * "API relay"): RelayRequest and RelayResponse without the generated types,
 * for the controller's relay (controller/relay_sessions.h). The codec
 * converts (ctlmsg.h: ctlmsg_relay_request_wire, ctlmsg_relay_response_view).
 * Every pointer borrows: nothing here is owned. */
#ifndef CASCADE_RELAYMSG_H
#define CASCADE_RELAYMSG_H

#include <stddef.h>
#include <stdint.h>

typedef struct relay_header {
  const char *name;
  const char *value;
} relay_header_t;

/* A request as the node gets it. */
typedef struct relay_request {
  uint64_t id;
  const char *method;
  const char *path;            /* starts with '/', no query */
  const char *query;           /* without '?', may be empty */
  const relay_header_t *headers;
  size_t nheaders;
  const uint8_t *body;
  size_t body_len;
} relay_request_t;

/* One message of a node's answer: the first has |status| (and headers),
 * the last |end|. */
typedef struct relay_response {
  uint64_t id;
  unsigned status;             /* 0 after the first message */
  const relay_header_t *headers;
  size_t nheaders;
  const uint8_t *data;
  size_t len;
  int end;
} relay_response_t;

#endif
