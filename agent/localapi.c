/* Local HTTP API: see localapi.h. */
#define _GNU_SOURCE
#include "localapi.h"

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

/* listen_on binds "host:port", "[v6]:port" or ":port" (all addresses, IPv6
 * taking IPv4 too), as the controller's REST API does. */
static int listen_on(const char *addr, char *shown, size_t shownlen, char *err, size_t errlen) {
  char host[256], port[16];
  const char *colon = strrchr(addr, ':');
  struct addrinfo hints, *ai = NULL;
  int fd = -1, one = 1, rc;

  if (colon == NULL || colon[1] == '\0' || strlen(colon + 1) >= sizeof(port) ||
      (size_t)(colon - addr) >= sizeof(host)) {
    snprintf(err, errlen, "http.listenaddr '%s': expected host:port", addr);
    return -1;
  }
  memcpy(host, addr, (size_t)(colon - addr));
  host[colon - addr] = '\0';
  snprintf(port, sizeof(port), "%s", colon + 1);
  if (host[0] == '[') {
    size_t n = strlen(host);
    if (n < 2 || host[n - 1] != ']') {
      snprintf(err, errlen, "http.listenaddr '%s': bad IPv6 literal", addr);
      return -1;
    }
    memmove(host, host + 1, n - 2);
    host[n - 2] = '\0';
  }
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  if ((rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai)) != 0) {
    snprintf(err, errlen, "http.listenaddr '%s': %s", addr, gai_strerror(rc));
    return -1;
  }
  struct addrinfo *pick = ai;
  for (struct addrinfo *p = ai; !host[0] && p; p = p->ai_next)
    if (p->ai_family == AF_INET6) pick = p;
  fd = socket(pick->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 && !host[0] && pick->ai_family == AF_INET6) {
    /* A host without IPv6: fall back to the IPv4 wildcard. */
    for (struct addrinfo *p = ai; p; p = p->ai_next)
      if (p->ai_family == AF_INET) pick = p;
    fd = socket(pick->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  }
  if (fd < 0) goto fail;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (pick->ai_family == AF_INET6) {
    int zero = 0;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
  }
  if (bind(fd, pick->ai_addr, pick->ai_addrlen) != 0 || listen(fd, 128) != 0) goto fail;
  {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char h[INET6_ADDRSTRLEN] = "?";
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    if (ss.ss_family == AF_INET) {
      inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, h, sizeof(h));
      snprintf(shown, shownlen, "%s:%d", h, ntohs(((struct sockaddr_in *)&ss)->sin_port));
    } else {
      inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, h, sizeof(h));
      snprintf(shown, shownlen, "[%s]:%d", h, ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
    }
  }
  freeaddrinfo(ai);
  return fd;

fail:
  snprintf(err, errlen, "http.listenaddr '%s': %s", addr, strerror(errno));
  if (fd >= 0) close(fd);
  freeaddrinfo(ai);
  return -1;
}

int localapi_start(localapi_t *api, const char *listenaddr, char *err, size_t errlen) {
  char shown[80];
  memset(api, 0, sizeof(*api));
  api->listen_fd = -1;
  if (pthread_mutex_init(&api->mu, NULL) != 0) {
    snprintf(err, errlen, "cannot create a mutex");
    return -1;
  }
  int fd = listen_on(listenaddr, shown, sizeof(shown), err, errlen);
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
