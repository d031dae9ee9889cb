/* Fuzz target for the HTTP-FLV server's request parser: each input is sent
 * as a request over a real loopback connection to an httpflv server on a
 * private loop, which runs until it has answered and closed. */
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "httpflv.h"
#include "hub.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct ev_loop *loop;
static hub_t *hub;
static httpflv_t *srv;
static struct sockaddr_in addr;

static int fallback(void *arg, const char *method, const char *path, const char *query,
                    char **body, size_t *len, const char **ctype) {
  (void)arg;
  (void)method;
  (void)query;
  if (strcmp(path, "/healthz") != 0) return 0;
  *body = strdup("ok");
  *len = 2;
  *ctype = "text/plain";
  return 200;
}

static void setup(void) {
  socklen_t sl = sizeof(addr);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(fd, 64) != 0 ||
      getsockname(fd, (struct sockaddr *)&addr, &sl) != 0)
    abort();
  log_set_level(LOG_ERROR);
  loop = ev_loop_new(EVFLAG_AUTO);
  hub_config_t hc = {.wait_s = 0.001};
  hub = hub_new(loop, &hc);
  httpflv_config_t fc = {.max_connections = 16, .request_timeout_s = 0.05,
                         .fallback = fallback};
  srv = httpflv_new(loop, hub, fd, &fc);
  if (hub == NULL || srv == NULL) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (loop == NULL) setup();
  if (size > 16384) size = 16384;
  int c = socket(AF_INET, SOCK_STREAM, 0);
  if (c < 0 || connect(c, (struct sockaddr *)&addr, sizeof(addr)) != 0) abort();
  /* The server reads as it likes; what does not fit the socket buffer is
   * cut (the parser refuses heads over 8 KiB anyway). */
  fcntl(c, F_SETFL, O_NONBLOCK);
  ssize_t w = send(c, data, size, MSG_NOSIGNAL);
  (void)w;
  shutdown(c, SHUT_WR);
  /* Run the server until it closed this connection (EOF or reset on c). */
  for (int i = 0; i < 2000; i++) {
    ev_run(loop, EVRUN_NOWAIT);
    char buf[4096];
    ssize_t n = recv(c, buf, sizeof(buf), 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) break;
    if (n < 0) {
      struct pollfd p = {.fd = c, .events = POLLIN};
      poll(&p, 1, 1);
    }
  }
  close(c);
  ev_run(loop, EVRUN_NOWAIT);
  return 0;
}
