/* Unit tests for agent/resolve.c: a lookup's answer comes back on the
 * loop thread (numeric addresses and names from /etc/hosts only: no
 * network), a failure carries getaddrinfo's reason, a cancelled lookup
 * never calls back, and oversized input is refused at once. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <ev.h>

#include "resolve.h"

typedef struct seen {
  int calls;
  size_t n;
  int port;
  char first[INET6_ADDRSTRLEN];
  char why[200];
  pthread_t thread;
} seen_t;

static void on_done(void *arg, size_t n, const struct sockaddr_storage *ss,
                    const socklen_t *sslen, const char *why) {
  seen_t *s = arg;
  (void)sslen;
  s->calls++;
  s->n = n;
  s->thread = pthread_self();
  snprintf(s->why, sizeof(s->why), "%s", why ? why : "");
  if (n > 0 && ss[0].ss_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)&ss[0];
    inet_ntop(AF_INET, &in->sin_addr, s->first, sizeof(s->first));
    s->port = ntohs(in->sin_port);
  }
}

static void stop_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)w;
  (void)revents;
  ev_break(loop, EVBREAK_ALL);
}

/* Runs |loop| until |s| got its answer or |secs| passed. */
static void run_for(struct ev_loop *loop, seen_t *s, double secs) {
  ev_timer t;
  ev_timer_init(&t, stop_cb, 0.01, 0.01);
  double until = ev_time() + secs;
  ev_timer_start(loop, &t);
  while (ev_time() < until && (s == NULL || s->calls == 0)) ev_run(loop, EVRUN_ONCE);
  ev_timer_stop(loop, &t);
}

static void test_numeric_address_on_the_loop_thread(void **state) {
  (void)state;
  struct ev_loop *loop = ev_loop_new(0);
  seen_t s = {0};
  assert_non_null(resolve_start(loop, "127.0.0.1", "44944", AF_INET, on_done, &s));
  run_for(loop, &s, 5.0);
  assert_int_equal(s.calls, 1);
  assert_int_equal(s.n, 1);
  assert_string_equal(s.first, "127.0.0.1");
  assert_int_equal(s.port, 44944);
  assert_true(pthread_equal(s.thread, pthread_self()));
  ev_loop_destroy(loop);
}

static void test_localhost_from_hosts_file(void **state) {
  (void)state;
  struct ev_loop *loop = ev_loop_new(0);
  seen_t s = {0};
  assert_non_null(resolve_start(loop, "localhost", "1935", AF_INET, on_done, &s));
  run_for(loop, &s, 5.0);
  assert_int_equal(s.calls, 1);
  assert_true(s.n >= 1);
  assert_string_equal(s.first, "127.0.0.1");
  ev_loop_destroy(loop);
}

static void test_failure_says_why(void **state) {
  (void)state;
  struct ev_loop *loop = ev_loop_new(0);
  seen_t s = {0};
  assert_non_null(resolve_start(loop, "127.0.0.1", "nope", AF_INET, on_done, &s));
  run_for(loop, &s, 5.0);
  assert_int_equal(s.calls, 1);
  assert_int_equal(s.n, 0);
  assert_true(strlen(s.why) > 0);
  ev_loop_destroy(loop);
}

static void test_cancelled_lookup_never_calls_back(void **state) {
  (void)state;
  struct ev_loop *loop = ev_loop_new(0);
  seen_t s = {0};
  resolve_req_t *r = resolve_start(loop, "127.0.0.1", "80", AF_INET, on_done, &s);
  assert_non_null(r);
  resolve_cancel(r);
  run_for(loop, NULL, 0.3); /* the thread finishes and frees what is left */
  assert_int_equal(s.calls, 0);
  resolve_cancel(NULL);
  ev_loop_destroy(loop);
}

static void test_oversized_input_refused(void **state) {
  (void)state;
  struct ev_loop *loop = ev_loop_new(0);
  seen_t s = {0};
  char host[2048];
  memset(host, 'a', sizeof(host) - 1);
  host[sizeof(host) - 1] = '\0';
  assert_null(resolve_start(loop, host, "80", AF_INET, on_done, &s));
  run_for(loop, NULL, 0.05);
  assert_int_equal(s.calls, 0);
  ev_loop_destroy(loop);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_numeric_address_on_the_loop_thread),
      cmocka_unit_test(test_localhost_from_hosts_file),
      cmocka_unit_test(test_failure_says_why),
      cmocka_unit_test(test_cancelled_lookup_never_calls_back),
      cmocka_unit_test(test_oversized_input_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
