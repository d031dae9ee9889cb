/* The agent's media node: the stream hub, the RTMP server and the HTTP
 * server (HTTP-FLV play and the local API) on the agent's loop. */
#ifndef CASCADE_AGENT_MEDIA_H
#define CASCADE_AGENT_MEDIA_H

#include <ev.h>
#include <stddef.h>

#include "agent_config.h"
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
  httpflv_t *http;
  int http_fd;
  rtmp_server_t *rtmp;
  char http_url[96];
  char rtmp_url[96];
  media_api_t api;          /* the agent's routes */
  void *api_arg;
} media_t;

/* media_start listens on http.listenaddr and rtmp.listenaddr and serves.
 * Returns 0 or -1 with |err| (and |m| cleaned up). */
int media_start(media_t *m, struct ev_loop *loop, const agent_config_t *cfg, media_api_t api,
                void *api_arg, char *err, size_t errlen);

/* media_stop closes every connection and stream; accepts a zeroed media_t. */
void media_stop(media_t *m);

/* media_stream_list renders GET /api/stream/list (Monibuca's shape). */
char *media_stream_list(media_t *m, size_t *len);

/* media_metrics renders the media lines of GET /metrics. */
char *media_metrics(media_t *m, size_t *len);

#endif
