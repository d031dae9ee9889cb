/* The API relay between replicas: a request for a node another replica
 * holds goes to that replica's API, signed (fwdsig.h), on a thread of its
 * own; the answer comes back into the relay as if the node had sent it
 * (api_relay.h). The thread's waits are short slices so that the caller
 * leaving or the controller stopping ends it promptly. */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "fwdsig.h"
#include "log.h"
#include "api_relay.h"

#define MOD "relay"
#define SLICE_MS 250
#define HEAD_MAX (64 * 1024)
#define CHUNK (64 * 1024)
#define HEADERS_MAX 100

typedef struct fwd {
  ctl_t *ctl;
  ctl_relay_t *rl;          /* a reference */
  char host[256], port[8];
  char *req;                /* the whole request, owned */
  size_t req_len;
  int64_t deadline_ms;      /* the answer's head is due */
} fwd_t;

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* wait_io waits for |fd| in slices until |deadline|: 1 ready, 0 timed out,
 * -1 error, -2 the relay is over or the controller stops. */
static int wait_io(fwd_t *f, int fd, short ev, int64_t deadline) {
  struct pollfd p = {.fd = fd, .events = ev};
  for (;;) {
    if (relay_reg_fwd_stopping(f->ctl->relays) || relay_backlog(f->rl) < 0) return -2;
    int64_t left = deadline - mono_ms();
    if (left <= 0) return 0;
    int r = poll(&p, 1, (int)(left < SLICE_MS ? left : SLICE_MS));
    if (r > 0) return 1;
    if (r < 0 && errno != EINTR) return -1;
  }
}

static int dial(fwd_t *f, char *why, size_t len) {
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
  int rc = getaddrinfo(f->host, f->port, &hints, &ai);
  if (rc != 0) {
    snprintf(why, len, "%.200s: %s", f->host, gai_strerror(rc));
    return -1;
  }
  int fd = -1;
  for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
    int w = errno == EINPROGRESS ? wait_io(f, fd, POLLOUT, f->deadline_ms) : -1;
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (w != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
      snprintf(why, len, "connect: %s", w == 0 ? "timed out" : strerror(soerr ? soerr : errno));
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(ai);
  return fd;
}

/* deliver hands one message to the relay and waits (in slices) while the
 * caller has much to read. -1 when the relay is over. */
static int deliver(fwd_t *f, unsigned status, fwdsig_hdr_t *h, size_t nh, const uint8_t *data,
                   size_t n, int end) {
  relay_response_t m = {0};
  relay_header_t hv[HEADERS_MAX];
  for (size_t i = 0; i < nh && i < HEADERS_MAX; i++) {
    hv[i].name = h[i].name;
    hv[i].value = h[i].value;
  }
  m.id = relay_id(f->rl);
  m.status = status;
  m.nheaders = nh;
  m.headers = nh ? hv : NULL;
  m.data = data;
  m.len = n;
  m.end = end;
  if (relay_deliver(f->ctl->relays, relay_node(f->rl), &m, NULL) < 0) return -1;
  long long b;
  while ((b = relay_backlog(f->rl)) > RELAY_QUEUE_LOW) {
    if (relay_reg_fwd_stopping(f->ctl->relays)) return -1;
    struct timespec ts = {0, 5 * 1000000};
    nanosleep(&ts, NULL);
  }
  return b < 0 ? -1 : 0;
}

static void *fwd_main(void *arg) {
  fwd_t *f = arg;
  char why[256] = "", *head = NULL;
  uint8_t *buf = NULL;
  int fd = dial(f, why, sizeof(why));
  if (fd < 0) goto fail;
  for (size_t off = 0; off < f->req_len;) {
    ssize_t w = send(fd, f->req + off, f->req_len - off, MSG_NOSIGNAL);
    if (w > 0) {
      off += (size_t)w;
    } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
      int r = wait_io(f, fd, POLLOUT, f->deadline_ms);
      if (r <= 0) {
        snprintf(why, sizeof(why), "send: %s", r == 0 ? "timed out" : "failed");
        goto fail;
      }
    } else {
      snprintf(why, sizeof(why), "send: %s", strerror(errno));
      goto fail;
    }
  }
  /* The head, then the body until the replica closes (HTTP/1.0: no chunks). */
  head = malloc(HEAD_MAX + 1);
  buf = malloc(CHUNK);
  if (head == NULL || buf == NULL) {
    snprintf(why, sizeof(why), "out of memory");
    goto fail;
  }
  size_t hl = 0;
  char *eoh = NULL;
  while (eoh == NULL) {
    if (hl == HEAD_MAX) {
      snprintf(why, sizeof(why), "answer head over %d bytes", HEAD_MAX);
      goto fail;
    }
    ssize_t n = recv(fd, head + hl, HEAD_MAX - hl, 0);
    if (n > 0) {
      hl += (size_t)n;
      head[hl] = '\0';
      eoh = hl >= 4 ? memmem(head, hl, "\r\n\r\n", 4) : NULL;
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      int r = wait_io(f, fd, POLLIN, f->deadline_ms);
      if (r == -2) goto out;
      if (r <= 0) {
        snprintf(why, sizeof(why), "no answer in time");
        goto fail;
      }
    } else {
      snprintf(why, sizeof(why), "closed before answering");
      goto fail;
    }
  }
  size_t head_len = (size_t)(eoh - head) + 4, nh = 0;
  fwdsig_hdr_t h[HEADERS_MAX];
  int status = 0;
  size_t rest = hl - head_len;
  memcpy(buf, head + head_len, rest); /* rest < HEAD_MAX == CHUNK */
  if (fwdsig_head(head, head_len, &status, h, HEADERS_MAX, &nh) != 0) {
    snprintf(why, sizeof(why), "not an HTTP answer");
    goto fail;
  }
  if (deliver(f, (unsigned)status, h, nh, buf, rest, 0) != 0) goto out;
  for (;;) {
    ssize_t n = recv(fd, buf, CHUNK, 0);
    if (n > 0) {
      if (deliver(f, 0, NULL, 0, buf, (size_t)n, 0) != 0) goto out;
    } else if (n == 0) {
      deliver(f, 0, NULL, 0, NULL, 0, 1);
      goto out;
    } else if (errno == EAGAIN || errno == EINTR) {
      /* A started answer may pause (a live stream): only idleness ends it. */
      int r = wait_io(f, fd, POLLIN, mono_ms() + RELAY_IDLE_MS);
      if (r == -2) goto out;
      if (r <= 0) {
        snprintf(why, sizeof(why), "answer stalled");
        goto fail;
      }
    } else {
      snprintf(why, sizeof(why), "recv: %s", strerror(errno));
      goto fail;
    }
  }

fail:
  {
    char msg[400];
    snprintf(msg, sizeof(msg), "node %lld: its controller replica at %s:%s: %s",
             (long long)relay_node(f->rl), f->host, f->port, why);
    log_warn(MOD, "forwarding relay %llu: %s", (unsigned long long)relay_id(f->rl), msg);
    relay_fail(f->rl, 502, msg);
  }
out:
  if (fd >= 0) close(fd);
  free(head);
  free(buf);
  relay_unref(f->rl);
  relay_reg_fwd_leave(f->ctl->relays);
  free(f->req);
  free(f);
  return NULL;
}

/* split_address reads "http://host:port" or "http://[v6]:port". */
static int split_address(const char *a, char *host, size_t hl, char *port, size_t pl) {
  if (strncmp(a, "http://", 7) != 0) return -1;
  a += 7;
  const char *colon;
  if (*a == '[') {
    const char *rb = strchr(a, ']');
    if (rb == NULL || rb[1] != ':' || (size_t)(rb - a - 1) >= hl) return -1;
    memcpy(host, a + 1, (size_t)(rb - a - 1));
    host[rb - a - 1] = '\0';
    colon = rb + 1;
  } else {
    colon = strrchr(a, ':');
    if (colon == NULL || colon == a || (size_t)(colon - a) >= hl) return -1;
    memcpy(host, a, (size_t)(colon - a));
    host[colon - a] = '\0';
  }
  size_t n = strlen(colon + 1);
  if (n == 0 || n >= pl || strspn(colon + 1, "0123456789") != n) return -1;
  memcpy(port, colon + 1, n + 1);
  return 0;
}

int relay_forward(ctl_t *ctl, ctl_relay_t *rl, const char *address, const char *target,
                  const char *sig, char *why, size_t whylen) {
  relay_request_t wire;
  fwd_t *f = calloc(1, sizeof(*f));
  if (f == NULL) {
    snprintf(why, whylen, "out of memory");
    return -1;
  }
  if (split_address(address, f->host, sizeof(f->host), f->port, sizeof(f->port)) != 0) {
    snprintf(why, whylen, "replica address '%s' is not http://host:port", address);
    free(f);
    return -1;
  }
  if (relay_fill(rl, &wire) == 0) {
    snprintf(why, whylen, "the relay is over");
    free(f);
    return -1;
  }
  /* HTTP/1.0: the replica answers without chunks and closes at the end. */
  size_t cap = strlen(wire.method) + strlen(target) + strlen(address) + strlen(sig) + 256 +
               wire.body_len;
  for (size_t i = 0; i < wire.nheaders; i++)
    cap += strlen(wire.headers[i].name) + strlen(wire.headers[i].value) + 4;
  if ((f->req = malloc(cap)) == NULL) {
    snprintf(why, whylen, "out of memory");
    free(f);
    return -1;
  }
  int w = snprintf(f->req, cap,
                   "%s %s HTTP/1.0\r\nHost: %s:%s\r\nConnection: close\r\n"
                   "Content-Length: %zu\r\n" FWDSIG_HEADER ": %s\r\n",
                   wire.method, target, f->host, f->port, wire.body_len, sig);
  size_t len = (size_t)w;
  for (size_t i = 0; i < wire.nheaders; i++) {
    const char *n = wire.headers[i].name;
    if (strcasecmp(n, "host") == 0 || strcasecmp(n, "content-length") == 0 ||
        strcasecmp(n, "connection") == 0 || strcasecmp(n, FWDSIG_HEADER) == 0 ||
        strcasecmp(n, "authorization") == 0 || strcasecmp(n, "transfer-encoding") == 0)
      continue;
    len += (size_t)snprintf(f->req + len, cap - len, "%s: %s\r\n", n, wire.headers[i].value);
  }
  len += (size_t)snprintf(f->req + len, cap - len, "\r\n");
  if (wire.body_len) memcpy(f->req + len, wire.body, wire.body_len);
  f->req_len = len + wire.body_len;
  f->ctl = ctl;
  f->deadline_ms = mono_ms() + ctl->cfg->relay_timeout_ms;
  if (relay_reg_fwd_enter(ctl->relays) != 0) {
    snprintf(why, whylen, "shutting down");
    free(f->req);
    free(f);
    return -1;
  }
  relay_ref(rl);
  f->rl = rl;
  pthread_t t;
  pthread_attr_t at;
  pthread_attr_init(&at);
  pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
  int rc = pthread_create(&t, &at, fwd_main, f);
  pthread_attr_destroy(&at);
  if (rc != 0) {
    snprintf(why, whylen, "no thread: %s", strerror(rc));
    relay_unref(rl);
    relay_reg_fwd_leave(ctl->relays);
    free(f->req);
    free(f);
    return -1;
  }
  log_debug(MOD, "relay %llu: forwarded to the replica at %s", (unsigned long long)relay_id(rl),
            address);
  return 0;
}
