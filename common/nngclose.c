/* nng_close with a bound on the wait: see nngclose.h. */
#define _GNU_SOURCE
#include "nngclose.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

typedef struct closer {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  nng_socket sock;
  void (*then)(void *);
  void *arg;
  int done, refs; /* refs: the closing thread and the waiter */
} closer_t;

static int pending; /* closes whose nng_close has not returned yet */

int nng_close_pending(void) { return __atomic_load_n(&pending, __ATOMIC_ACQUIRE); }

static void closer_rele(closer_t *k) {
  int last = --k->refs == 0; /* under k->mu */
  pthread_mutex_unlock(&k->mu);
  if (last) {
    pthread_cond_destroy(&k->cv);
    pthread_mutex_destroy(&k->mu);
    free(k);
  }
}

static void *closer_main(void *arg) {
  closer_t *k = arg;
  nng_close(k->sock);
  if (k->then) k->then(k->arg);
  __atomic_sub_fetch(&pending, 1, __ATOMIC_RELEASE); /* before |done|: see nng_close_pending */
  pthread_mutex_lock(&k->mu);
  k->done = 1;
  pthread_cond_signal(&k->cv);
  closer_rele(k);
  return NULL;
}

int nng_close_within(nng_socket s, double secs) {
  return nng_close_within_then(s, secs, NULL, NULL);
}

int nng_close_within_then(nng_socket s, double secs, void (*then)(void *), void *arg) {
  closer_t *k = calloc(1, sizeof(*k));
  pthread_condattr_t ca;
  pthread_attr_t ta;
  pthread_t tid;
  int started = 0;
  if (k == NULL) {
    nng_close(s);
    if (then) then(arg);
    return 0;
  }
  k->sock = s;
  k->then = then;
  k->arg = arg;
  k->refs = 2;
  pthread_mutex_init(&k->mu, NULL);
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&k->cv, &ca);
  pthread_condattr_destroy(&ca);
  __atomic_add_fetch(&pending, 1, __ATOMIC_RELEASE);
  if (pthread_attr_init(&ta) == 0) {
    pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
    started = pthread_create(&tid, &ta, closer_main, k) == 0;
    pthread_attr_destroy(&ta);
  }
  if (!started) {
    __atomic_sub_fetch(&pending, 1, __ATOMIC_RELEASE);
    nng_close(s);
    if (then) then(arg);
    pthread_mutex_lock(&k->mu);
    k->refs = 1;
    closer_rele(k);
    return 0;
  }
  struct timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += (time_t)secs;
  until.tv_nsec += (long)((secs - (double)(time_t)secs) * 1e9);
  if (until.tv_nsec >= 1000000000L) {
    until.tv_sec++;
    until.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(&k->mu);
  int rc = 0;
  while (!k->done && rc != ETIMEDOUT) rc = pthread_cond_timedwait(&k->cv, &k->mu, &until);
  int done = k->done;
  closer_rele(k);
  return done ? 0 : -1;
}
