/* The agent's local HTTP API on libmicrohttpd (its own thread). It never
 * touches agent state: it serves the status document the loop thread last
 * rendered and handed over with localapi_set_status. */
#ifndef CASCADE_LOCALAPI_H
#define CASCADE_LOCALAPI_H

#include <pthread.h>
#include <stddef.h>

typedef struct localapi {
  struct MHD_Daemon *httpd;
  int listen_fd;
  pthread_mutex_t mu;      /* guards status */
  char *status;            /* owned: JSON of the status "data" object */
  char url[96];            /* where it listens, for the start log line */
} localapi_t;

/* localapi_start listens on |listenaddr| (host:port, [v6]:port, :port).
 * Returns 0 or -1 with |err| set. */
int localapi_start(localapi_t *api, const char *listenaddr, char *err, size_t errlen);

/* localapi_set_status replaces the served status by |json| (ownership
 * taken; NULL is ignored). Loop thread. */
void localapi_set_status(localapi_t *api, char *json);

/* localapi_stop stops the server and frees |api|'s values; accepts a
 * zeroed struct. */
void localapi_stop(localapi_t *api);

#endif
