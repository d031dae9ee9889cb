/* Off-loop name lookups: see resolve.h. */
#include "resolve.h"

#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostaddr.h"

struct resolve_req {
  pthread_mutex_t mu;
  int refs;                  /* the loop's and the thread's; under mu */
  int cancelled;             /* under mu */
  struct ev_loop *loop;
  ev_async done;             /* started on |loop| until delivered or cancelled */
  resolve_fn fn;
  void *arg;
  char host[HOSTADDR_HOST_MAX + 1];
  char port[8];
  int family;
  /* the answer, written by the thread under mu before it signals */
  size_t n;
  struct sockaddr_storage ss[RESOLVE_MAX];
  socklen_t sslen[RESOLVE_MAX];
  char why[128];
};

static void unref(resolve_req_t *r) {
  pthread_mutex_lock(&r->mu);
  int last = --r->refs == 0;
  pthread_mutex_unlock(&r->mu);
  if (!last) return;
  pthread_mutex_destroy(&r->mu);
  free(r);
}

static void *lookup_main(void *arg) {
  resolve_req_t *r = arg;
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = r->family;
  hints.ai_socktype = SOCK_DGRAM;
  int e = getaddrinfo(r->host, r->port, &hints, &res);
  pthread_mutex_lock(&r->mu);
  r->n = 0;
  if (e != 0) {
    snprintf(r->why, sizeof(r->why), "%s", gai_strerror(e));
  } else {
    snprintf(r->why, sizeof(r->why), "no address of the wanted family");
    for (struct addrinfo *a = res; a && r->n < RESOLVE_MAX; a = a->ai_next) {
      if ((a->ai_family != AF_INET && a->ai_family != AF_INET6) ||
          a->ai_addrlen > sizeof(r->ss[0]))
        continue;
      memset(&r->ss[r->n], 0, sizeof(r->ss[0]));
      memcpy(&r->ss[r->n], a->ai_addr, a->ai_addrlen);
      r->sslen[r->n++] = a->ai_addrlen;
    }
    freeaddrinfo(res);
  }
  if (!r->cancelled) ev_async_send(r->loop, &r->done);
  pthread_mutex_unlock(&r->mu);
  unref(r);
  return NULL;
}

static void done_cb(struct ev_loop *loop, ev_async *w, int revents) {
  resolve_req_t *r = w->data;
  (void)revents;
  ev_async_stop(loop, w);
  pthread_mutex_lock(&r->mu);
  size_t n = r->n;
  struct sockaddr_storage ss[RESOLVE_MAX];
  socklen_t sl[RESOLVE_MAX];
  char why[sizeof(r->why)];
  memcpy(ss, r->ss, sizeof(ss));
  memcpy(sl, r->sslen, sizeof(sl));
  memcpy(why, r->why, sizeof(why));
  r->cancelled = 1; /* delivered: nothing more to send */
  pthread_mutex_unlock(&r->mu);
  resolve_fn fn = r->fn;
  void *arg = r->arg;
  unref(r);
  fn(arg, n, ss, sl, why);
}

resolve_req_t *resolve_start(struct ev_loop *loop, const char *host, const char *port,
                             int family, resolve_fn fn, void *arg) {
  resolve_req_t *r = calloc(1, sizeof(*r));
  pthread_t t;
  pthread_attr_t at;
  if (r == NULL) return NULL;
  if (strlen(host) >= sizeof(r->host) || strlen(port) >= sizeof(r->port)) goto fail_req;
  if (pthread_mutex_init(&r->mu, NULL) != 0) goto fail_req;
  snprintf(r->host, sizeof(r->host), "%s", host);
  snprintf(r->port, sizeof(r->port), "%s", port);
  r->family = family;
  r->loop = loop;
  r->fn = fn;
  r->arg = arg;
  r->refs = 2;
  ev_async_init(&r->done, done_cb);
  r->done.data = r;
  ev_async_start(loop, &r->done);
  if (pthread_attr_init(&at) != 0) goto fail_async;
  pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
  int e = pthread_create(&t, &at, lookup_main, r);
  pthread_attr_destroy(&at);
  if (e != 0) goto fail_async;
  return r;

fail_async:
  ev_async_stop(loop, &r->done);
  pthread_mutex_destroy(&r->mu);
fail_req:
  free(r);
  return NULL;
}

void resolve_cancel(resolve_req_t *r) {
  if (r == NULL) return;
  pthread_mutex_lock(&r->mu);
  r->cancelled = 1;
  ev_async_stop(r->loop, &r->done);
  pthread_mutex_unlock(&r->mu);
  unref(r);
}
