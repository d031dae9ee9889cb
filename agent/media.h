/* The agent's media node: the stream hub, the RTMP server and two HTTP
 * servers on the agent's loop: the public one (http.listenaddr: HTTP-FLV
 * play and the /healthz and /readyz probes, nothing else) and the admin one
 * (http.adminaddr, loopback by default: the local API and HTTP-FLV, what
 * the controller's relay reaches). */
#ifndef CASCADE_AGENT_MEDIA_H
#define CASCADE_AGENT_MEDIA_H

#include <ev.h>
#include <stddef.h>

#include "agent_config.h"
#include "edgeauth.h"
#include "httpflv.h"
#include "hub.h"
#include "rtmp_server.h"

/* The local API's routes other than /flv/, answered on the loop thread
 * (any method, with the request body): see httpflv_api_t. */
typedef httpflv_api_t media_api_t;

typedef struct media {
  struct ev_loop *loop;
  const agent_config_t *cfg;
  hub_t *hub;
  httpflv_t *http;          /* public: HTTP-FLV and the probe */
  int http_fd;
  httpflv_t *admin;         /* the local API; NULL when http.adminaddr is empty */
  int admin_fd;             /* -1 when there is none */
  rtmp_server_t *rtmp;
  edgeauth_t *auth;         /* owned: who may publish and play; NULL when auth.* are both none */
  char http_url[96];
  char admin_url[96];       /* "" when there is none */
  char rtmp_url[96];
  media_api_t api;          /* the agent's routes */
  void *api_arg;
} media_t;

/* media_public_api is the public listener's handler: the probes go to the
 * agent's routes (m->api), every other path answers 404 whatever the
 * method, so the local API is never served there. |arg| is the media_t. */
int media_public_api(void *arg, const httpflv_request_t *req, httpflv_reply_t *out);

/* media_start listens on http.listenaddr, http.adminaddr (unless empty)
 * and rtmp.listenaddr and serves. Returns 0 or -1 with |err| (and |m|
 * cleaned up). */
int media_start(media_t *m, struct ev_loop *loop, const agent_config_t *cfg, media_api_t api,
                void *api_arg, char *err, size_t errlen);

/* media_stop closes every connection and stream; accepts a zeroed media_t. */
void media_stop(media_t *m);

/* media_drain stops accepting on every listener (their sockets close, so
 * connections are refused) and ends every player cleanly: RTMP players get
 * NetStream.Play.Stop, HTTP-FLV players the end of their body at a tag
 * boundary; publishers and requests not yet answered are closed. */
void media_drain(media_t *m);

/* media_connections counts the RTMP and HTTP connections still open. */
unsigned media_connections(const media_t *m);

/* media_stream_list renders GET /api/stream/list (Monibuca's shape). */
char *media_stream_list(media_t *m, size_t *len);

/* media_metrics renders the media lines of GET /metrics. */
char *media_metrics(media_t *m, size_t *len);

#endif
