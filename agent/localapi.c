/* Local HTTP API: see localapi.h. */
#define _GNU_SOURCE
#include "localapi.h"
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

#define MOD "localapi"

static const char HEALTHZ[] = "{\"code\":0,\"message\":\"success\",\"data\":{\"status\":\"ok\"}}";

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, char *body,
                             int must_free) {
  struct MHD_Response *r = MHD_create_response_from_buffer(
      strlen(body), body, must_free ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
  if (r == NULL) {
    if (must_free) free(body);
    return MHD_NO;
  }
  MHD_add_response_header(r, "Content-Type", "application/json");
  MHD_add_response_header(r, "Cache-Control", "no-store");
  if (status == MHD_HTTP_METHOD_NOT_ALLOWED) MHD_add_response_header(r, "Allow", "GET, HEAD");
  enum MHD_Result ret = MHD_queue_response(conn, status, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **ctx) {
  localapi_t *api = cls;
  int known = strcmp(url, "/healthz") == 0 || strcmp(url, "/api/cascade/status") == 0;
  (void)version;
  (void)upload_data;

  /* Answer at once: no route here takes a body, and any sent is ignored. */
  *upload_size = 0;
  (void)ctx;
  if (!known)
    return reply(conn, MHD_HTTP_NOT_FOUND,
                 (char *)"{\"code\":404,\"message\":\"not found\",\"data\":null}", 0);
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
    return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
                 (char *)"{\"code\":405,\"message\":\"method not allowed\",\"data\":null}", 0);
  if (strcmp(url, "/healthz") == 0) return reply(conn, MHD_HTTP_OK, (char *)HEALTHZ, 0);

  char *body = NULL;
  pthread_mutex_lock(&api->mu);
  if (asprintf(&body, "{\"code\":0,\"message\":\"success\",\"data\":%s}",
               api->status ? api->status : "null") < 0)
    body = NULL;
  pthread_mutex_unlock(&api->mu);
  if (body == NULL)
    return reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
                 (char *)"{\"code\":500,\"message\":\"out of memory\",\"data\":null}", 0);
  return reply(conn, MHD_HTTP_OK, body, 1);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
  char msg[512];
  (void)cls;
  vsnprintf(msg, sizeof(msg), fmt, ap);
  size_t n = strlen(msg);
  while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = '\0';
  log_debug(MOD, "microhttpd: %s", msg);
}

int localapi_start(localapi_t *api, const char *listenaddr, char *err, size_t errlen) {
  char shown[80];
  memset(api, 0, sizeof(*api));
  api->listen_fd = -1;
  if (pthread_mutex_init(&api->mu, NULL) != 0) {
    snprintf(err, errlen, "cannot create a mutex");
    return -1;
  }
  int fd = net_listen_tcp("http.listenaddr", listenaddr, 0, shown, sizeof(shown), err, errlen);
  if (fd < 0) goto fail_mutex;
  api->httpd = MHD_start_daemon(
      MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL,
      on_request, api, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL, MHD_OPTION_LISTEN_SOCKET,
      fd, MHD_OPTION_CONNECTION_LIMIT, (unsigned)256, MHD_OPTION_CONNECTION_TIMEOUT,
      (unsigned)30, MHD_OPTION_END);
  if (api->httpd == NULL) {
    snprintf(err, errlen, "cannot start the local API on %s", shown);
    goto fail_fd;
  }
  api->listen_fd = fd;
  snprintf(api->url, sizeof(api->url), "http://%s", shown);
  return 0;

fail_fd:
  close(fd);
fail_mutex:
  pthread_mutex_destroy(&api->mu);
  memset(api, 0, sizeof(*api));
  return -1;
}

void localapi_set_status(localapi_t *api, char *json) {
  char *old;
  if (json == NULL) return;
  pthread_mutex_lock(&api->mu);
  old = api->status;
  api->status = json;
  pthread_mutex_unlock(&api->mu);
  free(old);
}

void localapi_stop(localapi_t *api) {
  if (api == NULL || api->httpd == NULL) return;
  /* MHD closes the listening socket it was given. */
  MHD_stop_daemon(api->httpd);
  pthread_mutex_destroy(&api->mu);
  free(api->status);
  memset(api, 0, sizeof(*api));
}
