/* Tests of the hook client (agent/hooks.c) against a small HTTP server on
 * 127.0.0.1 that runs on a thread of the test: a real libev loop, real
 * sockets. Hooks that allow, refuse, never answer, answer garbage, trickle,
 * answer too much, or are down (fail open and fail closed); caching and its
 * expiry; cancel and free with calls in flight; the bounds on checks and
 * notifications in flight; https:// with a private CA and against the
 * system trust store. Prints the round trip of an uncached check. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>
#include <gnutls/gnutls.h>
#include <jansson.h>

#include "hooks.h"
#include "x509.h"

/* ---- the test's HTTP server ---- */

enum { M_STATUS = 0, M_NEVER, M_GARBAGE, M_TRICKLE, M_OVERSIZE };

typedef struct srv {
  int lfd, port;
  int stop[2];
  pthread_t th;
  pthread_mutex_t mu;
  int mode, status;          /* under mu */
  int requests;              /* requests read; under mu */
  char last[8192];           /* the last request; under mu */
  int held[512];
  int nheld;
  gnutls_certificate_credentials_t cred; /* serve TLS when set */
} srv_t;

typedef struct conn {
  int fd;
  gnutls_session_t tls;
} conn_t;

static ssize_t c_read(conn_t *c, char *b, size_t n) {
  if (c->tls) {
    ssize_t r;
    do r = gnutls_record_recv(c->tls, b, n);
    while (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED);
    return r < 0 ? -1 : r;
  }
  return recv(c->fd, b, n, 0);
}

static ssize_t c_write(conn_t *c, const char *b, size_t n) {
  if (c->tls) return gnutls_record_send(c->tls, b, n) < 0 ? -1 : (ssize_t)n;
  return send(c->fd, b, n, MSG_NOSIGNAL);
}

static int stopped(srv_t *s, int ms) {
  struct pollfd p = {.fd = s->stop[0], .events = POLLIN};
  return poll(&p, 1, ms) > 0;
}

/* Reads one request (head and Content-Length body) with a 2 s limit. */
static int read_request(srv_t *s, conn_t *c, char *buf, size_t cap) {
  size_t n = 0;
  for (;;) {
    if (!c->tls || gnutls_record_check_pending(c->tls) == 0) {
      struct pollfd p = {.fd = c->fd, .events = POLLIN};
      if (poll(&p, 1, 2000) <= 0) return -1;
    }
    ssize_t r = c_read(c, buf + n, cap - 1 - n);
    if (r <= 0) return -1;
    n += (size_t)r;
    buf[n] = '\0';
    char *end = strstr(buf, "\r\n\r\n");
    if (end) {
      const char *cl = strcasestr(buf, "Content-Length:");
      size_t want = (size_t)(end + 4 - buf) + (cl ? (size_t)atoi(cl + 15) : 0);
      if (n >= want) return (int)n;
    }
    if (n + 1 >= cap) return -1;
  }
  (void)s;
}

static void serve_one(srv_t *s, int fd) {
  conn_t c = {.fd = fd};
  char buf[8192];
  if (s->cred) {
    gnutls_init(&c.tls, GNUTLS_SERVER);
    gnutls_set_default_priority(c.tls);
    gnutls_credentials_set(c.tls, GNUTLS_CRD_CERTIFICATE, s->cred);
    gnutls_transport_set_int(c.tls, fd);
    gnutls_handshake_set_timeout(c.tls, 2000);
    int r;
    do r = gnutls_handshake(c.tls);
    while (r < 0 && !gnutls_error_is_fatal(r));
    if (r < 0) goto done;
  }
  if (read_request(s, &c, buf, sizeof(buf)) < 0) goto done;
  pthread_mutex_lock(&s->mu);
  s->requests++;
  snprintf(s->last, sizeof(s->last), "%s", buf);
  int mode = s->mode, status = s->status;
  pthread_mutex_unlock(&s->mu);
  char out[256];
  switch (mode) {
  case M_STATUS:
    snprintf(out, sizeof(out), "HTTP/1.1 %d Whatever\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
             status);
    c_write(&c, out, strlen(out));
    break;
  case M_NEVER:
    if (s->nheld < (int)(sizeof(s->held) / sizeof(s->held[0]))) {
      s->held[s->nheld++] = fd;
      if (c.tls) gnutls_deinit(c.tls);
      return;
    }
    break;
  case M_GARBAGE:
    c_write(&c, "SSH-2.0-OpenSSH_9.2\r\n\r\n", 23);
    break;
  case M_TRICKLE: {
    const char *t = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    for (size_t i = 0; t[i] && !stopped(s, 100); i++)
      if (c_write(&c, t + i, 1) < 0) break;
    break;
  }
  case M_OVERSIZE: {
    static char big[20000];
    memset(big, 'x', sizeof(big));
    const char *h = "HTTP/1.1 200 OK\r\n\r\n";
    c_write(&c, h, strlen(h));
    c_write(&c, big, sizeof(big));
    break;
  }
  }
  if (c.tls) gnutls_bye(c.tls, GNUTLS_SHUT_WR);
done:
  if (c.tls) gnutls_deinit(c.tls);
  close(fd);
}

static void *srv_main(void *arg) {
  srv_t *s = arg;
  for (;;) {
    struct pollfd p[2] = {{.fd = s->lfd, .events = POLLIN}, {.fd = s->stop[0], .events = POLLIN}};
    if (poll(p, 2, -1) < 0 && errno != EINTR) break;
    if (p[1].revents) break;
    if (p[0].revents & POLLIN) {
      int fd = accept(s->lfd, NULL, NULL);
      if (fd >= 0) serve_one(s, fd);
    }
  }
  return NULL;
}

static int listen_any(int *port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  struct sockaddr_in a = {.sin_family = AF_INET};
  socklen_t al = sizeof(a);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  assert_int_equal(listen(fd, 512), 0);
  getsockname(fd, (struct sockaddr *)&a, &al);
  *port = ntohs(a.sin_port);
  return fd;
}

static srv_t *srv_start(int mode, int status, gnutls_certificate_credentials_t cred) {
  srv_t *s = calloc(1, sizeof(*s));
  s->lfd = listen_any(&s->port);
  s->mode = mode;
  s->status = status;
  s->cred = cred;
  assert_int_equal(pipe(s->stop), 0);
  pthread_mutex_init(&s->mu, NULL);
  assert_int_equal(pthread_create(&s->th, NULL, srv_main, s), 0);
  return s;
}

static void srv_set(srv_t *s, int mode, int status) {
  pthread_mutex_lock(&s->mu);
  s->mode = mode;
  s->status = status;
  pthread_mutex_unlock(&s->mu);
}

static int srv_requests(srv_t *s) {
  pthread_mutex_lock(&s->mu);
  int n = s->requests;
  pthread_mutex_unlock(&s->mu);
  return n;
}

static void srv_stop(srv_t *s) {
  assert_int_equal(write(s->stop[1], "x", 1), 1);
  pthread_join(s->th, NULL);
  for (int i = 0; i < s->nheld; i++) close(s->held[i]);
  close(s->lfd);
  close(s->stop[0]);
  close(s->stop[1]);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

/* A port with nothing listening on it. */
static int dead_port(void) {
  int port, fd = listen_any(&port);
  close(fd);
  return port;
}

/* ---- the client's side ---- */

typedef struct got {
  int calls, verdict;
  char reason[200];
  double at;
  hooks_t *free_me; /* freed from inside the callback when set */
} got_t;

static void on_done(void *arg, int verdict, const char *reason) {
  got_t *g = arg;
  g->calls++;
  g->verdict = verdict;
  g->at = ev_time();
  snprintf(g->reason, sizeof(g->reason), "%s", reason);
  if (g->free_me) hooks_free(g->free_me);
}

static void tick(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)loop;
  (void)w;
  (void)revents;
}

/* Runs |loop| until *flag is set or |secs| passed; returns *flag. */
static int run_until(struct ev_loop *loop, const int *flag, double secs) {
  ev_timer t;
  ev_timer_init(&t, tick, 0.005, 0.005);
  ev_timer_start(loop, &t);
  double until = ev_time() + secs;
  while ((flag == NULL || *flag == 0) && ev_time() < until) ev_run(loop, EVRUN_ONCE);
  ev_timer_stop(loop, &t);
  ev_now_update(loop);
  return flag ? *flag : 0;
}

typedef struct fx {
  struct ev_loop *loop;
  hooks_t *h;
  char url[128];
} fx_t;

static void conf_url(fx_t *f, hook_event ev, const char *url, uint32_t timeout_ms,
                     uint32_t cache_ms, int fail_open) {
  hook_conf c = {.timeout_ms = timeout_ms, .cache_ms = cache_ms, .fail_open = fail_open};
  c.url[ev] = (char *)url;
  assert_int_equal(hooks_configure(f->h, &c), 0);
}

static hook_req play_req(const char *query) {
  hook_req r = {.event = HOOK_ON_PLAY, .node = "edge-1", .path = "live/cam1",
                .addr = "192.0.2.7", .proto = "httpflv", .query = query};
  return r;
}

/* Checks |r| and waits for the verdict (at most |secs|). */
static int check_wait(fx_t *f, const hook_req *r, got_t *g, double secs) {
  hook_call_t *call;
  const char *reason;
  memset(g, 0, sizeof(*g));
  int v = hooks_check(f->h, r, on_done, g, &call, &reason);
  if (v != HOOK_PENDING) {
    snprintf(g->reason, sizeof(g->reason), "%s", reason);
    g->verdict = v;
    return v;
  }
  assert_non_null(call);
  assert_true(run_until(f->loop, &g->calls, secs));
  assert_int_equal(g->calls, 1);
  return HOOK_PENDING;
}

static int setup(void **state) {
  fx_t *f = calloc(1, sizeof(*f));
  f->loop = ev_loop_new(EVFLAG_AUTO);
  f->h = hooks_new(f->loop);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx_t *f = *state;
  hooks_free(f->h);
  ev_loop_destroy(f->loop);
  free(f);
  return 0;
}

static void test_allow_and_the_request(void **state) {
  fx_t *f = *state;
  srv_t *s = srv_start(M_STATUS, 200, NULL);
  snprintf(f->url, sizeof(f->url), "http://op:pw@127.0.0.1:%d/auth/play?k=1", s->port);
  conf_url(f, HOOK_ON_PLAY, f->url, 2000, 0, 0);
  hook_req r = play_req("token=abc&x=\"y\"");
  got_t g;
  assert_int_equal(check_wait(f, &r, &g, 3.0), HOOK_PENDING);
  assert_int_equal(g.verdict, HOOK_ALLOW);
  assert_string_equal(g.reason, "allowed by the hook (HTTP 200)");
  assert_int_equal(srv_requests(s), 1);
  assert_int_equal(strncmp(s->last, "POST /auth/play?k=1 HTTP/1.1\r\n", 30), 0);
  assert_non_null(strstr(s->last, "\r\nAuthorization: Basic b3A6cHc=\r\n"));
  assert_non_null(strstr(s->last, "\r\nConnection: close\r\n"));
  assert_non_null(strstr(s->last, "\r\nContent-Type: application/json\r\n"));
  json_error_t je;
  json_t *b = json_loads(strstr(s->last, "\r\n\r\n") + 4, 0, &je);
  assert_non_null(b);
  assert_string_equal(json_string_value(json_object_get(b, "action")), "play");
  assert_string_equal(json_string_value(json_object_get(b, "node")), "edge-1");
  assert_string_equal(json_string_value(json_object_get(b, "path")), "live/cam1");
  assert_string_equal(json_string_value(json_object_get(b, "addr")), "192.0.2.7");
  assert_string_equal(json_string_value(json_object_get(b, "proto")), "httpflv");
  assert_string_equal(json_string_value(json_object_get(b, "query")), "token=abc&x=\"y\"");
  json_decref(b);
  /* on_publish has no URL here */
  hook_req p = play_req(NULL);
  p.event = HOOK_ON_PUBLISH;
  assert_int_equal(check_wait(f, &p, &g, 1.0), HOOK_DENY);
  assert_string_equal(g.reason, "no hook configured");
  /* a query-less client sends "query": null, through a name lookup */
  snprintf(f->url, sizeof(f->url), "http://localhost:%d/", s->port);
  conf_url(f, HOOK_ON_PLAY, f->url, 2000, 0, 0);
  assert_int_equal(check_wait(f, &p, &g, 1.0), HOOK_DENY);
  r = play_req(NULL);
  assert_int_equal(check_wait(f, &r, &g, 3.0), HOOK_PENDING);
  assert_int_equal(g.verdict, HOOK_ALLOW);
  b = json_loads(strstr(s->last, "\r\n\r\n") + 4, 0, &je);
  assert_true(json_is_null(json_object_get(b, "query")));
  json_decref(b);
  srv_stop(s);
}

static void test_refuse(void **state) {
  fx_t *f = *state;
  srv_t *s = srv_start(M_STATUS, 403, NULL);
  snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d/", s->port);
  conf_url(f, HOOK_ON_PLAY, f->url, 2000, 0, 1); /* fail_open does not matter for an answer */
  hook_req r = play_req(NULL);
  got_t g;
  check_wait(f, &r, &g, 3.0);
  assert_int_equal(g.verdict, HOOK_DENY);
  assert_string_equal(g.reason, "refused by the hook (HTTP 403)");
  srv_set(s, M_STATUS, 302);
  check_wait(f, &r, &g, 3.0);
  assert_int_equal(g.verdict, HOOK_DENY);
  assert_string_equal(g.reason, "refused by the hook (HTTP 302)");
  srv_set(s, M_STATUS, 204);
  check_wait(f, &r, &g, 3.0);
  assert_int_equal(g.verdict, HOOK_ALLOW);
  hooks_stats_t st;
  hooks_get_stats(f->h, &st);
  assert_int_equal(st.requests, 3);
  assert_int_equal(st.allowed, 1);
  assert_int_equal(st.refused, 2);
  srv_stop(s);
}

static void test_timeout_both_modes(void **state) {
  fx_t *f = *state;
  srv_t *s = srv_start(M_NEVER, 0, NULL);
  snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d/", s->port);
  hook_req r = play_req("t=1");
  got_t g;
  for (int open = 0; open < 2; open++) {
    conf_url(f, HOOK_ON_PLAY, f->url, 300, 0, open);
    double t0 = ev_time();
    check_wait(f, &r, &g, 3.0);
    double took = g.at - t0;
    assert_true(took >= 0.29);
    assert_true(took < 0.3 + 0.25);
    assert_int_equal(g.verdict, open ? HOOK_ALLOW : HOOK_DENY);
    assert_string_equal(g.reason, open ? "hook timed out (fail open)" : "hook timed out (fail closed)");
  }
  /* a trickle that would finish long after the deadline is a timeout too */
  srv_set(s, M_TRICKLE, 0);
  conf_url(f, HOOK_ON_PLAY, f->url, 400, 0, 0);
  double t0 = ev_time();
  check_wait(f, &r, &g, 3.0);
  assert_true(g.at - t0 < 0.4 + 0.25);
  assert_int_equal(g.verdict, HOOK_DENY);
  assert_string_equal(g.reason, "hook timed out (fail closed)");
  srv_stop(s);
}

static void test_garbage_and_oversized(void **state) {
  fx_t *f = *state;
  srv_t *s = srv_start(M_GARBAGE, 0, NULL);
  snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d/", s->port);
  hook_req r = play_req(NULL);
  got_t g;
  conf_url(f, HOOK_ON_PLAY, f->url, 2000, 0, 0);
  check_wait(f, &r, &g, 3.0);
  assert_int_equal(g.verdict, HOOK_DENY);
  assert_string_equal(g.reason, "hook answered garbage: not an HTTP/1.x status line (fail closed)");
  conf_url(f, HOOK_ON_PLAY, f->url, 2000, 0, 1);
  check_wait(f, &r, &g, 3.0);
  assert_int_equal(g.verdict, HOOK_ALLOW);
  assert_non_null(strstr(g.reason, "garbage"));
  assert_non_null(strstr(g.reason, "(fail open)"));
  srv_set(s, M_OVERSIZE, 0);
  conf_url(f, HOOK_ON_PLAY, f->url, 2000, 0, 0);
  check_wait(f, &r, &g, 3.0);
  assert_int_equal(g.verdict, HOOK_DENY);
  assert_string_equal(g.reason, "hook answered garbage: a response over 16 KiB (fail closed)");
  hooks_stats_t st;
  hooks_get_stats(f->h, &st);
  assert_int_equal(st.failed, 3);
  srv_stop(s);
}

static void test_down_both_modes(void **state) {
  fx_t *f = *state;
  snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d/", dead_port());
  hook_req r = play_req(NULL);
  got_t g;
  conf_url(f, HOOK_ON_PLAY, f->url, 2000, 0, 0);
  assert_int_equal(check_wait(f, &r, &g, 3.0), HOOK_PENDING); /* never at once */
  assert_int_equal(g.verdict, HOOK_DENY);
  assert_string_equal(g.reason, "hook down: Connection refused (fail closed)");
  conf_url(f, HOOK_ON_PLAY, f->url, 2000, 0, 1);
  check_wait(f, &r, &g, 3.0);
  assert_int_equal(g.verdict, HOOK_ALLOW);
  assert_string_equal(g.reason, "hook down: Connection refused (fail open)");
}

static void test_cache_and_expiry(void **state) {
  fx_t *f = *state;
  srv_t *s = srv_start(M_STATUS, 200, NULL);
  snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d/", s->port);
  conf_url(f, HOOK_ON_PLAY, f->url, 2000, 400, 0);
  hook_req r = play_req("token=a");
  got_t g;
  assert_int_equal(check_wait(f, &r, &g, 3.0), HOOK_PENDING);
  assert_int_equal(g.verdict, HOOK_ALLOW);
  double answered = ev_time();
  /* the same client again: answered at once, no request */
  assert_int_equal(check_wait(f, &r, &g, 1.0), HOOK_ALLOW);
  assert_string_equal(g.reason, "allowed by the hook (HTTP 200, cached)");
  assert_int_equal(srv_requests(s), 1);
  /* another query is another key; a refusal is cached too */
  srv_set(s, M_STATUS, 403);
  hook_req r2 = play_req("token=b");
  assert_int_equal(check_wait(f, &r2, &g, 3.0), HOOK_PENDING);
  assert_int_equal(g.verdict, HOOK_DENY);
  assert_int_equal(check_wait(f, &r2, &g, 1.0), HOOK_DENY);
  assert_string_equal(g.reason, "refused by the hook (HTTP 403, cached)");
  assert_int_equal(srv_requests(s), 2);
  /* past cache_ms the hook is asked again */
  run_until(f->loop, NULL, answered + 0.45 - ev_time());
  assert_int_equal(check_wait(f, &r, &g, 3.0), HOOK_PENDING);
  assert_int_equal(g.verdict, HOOK_DENY);
  assert_int_equal(srv_requests(s), 3);
  /* a new configuration empties the cache */
  assert_int_equal(check_wait(f, &r, &g, 1.0), HOOK_DENY);
  conf_url(f, HOOK_ON_PLAY, f->url, 2000, 5000, 0);
  assert_int_equal(check_wait(f, &r, &g, 3.0), HOOK_PENDING);
  assert_int_equal(srv_requests(s), 4);
  /* the same configuration again keeps it */
  conf_url(f, HOOK_ON_PLAY, f->url, 2000, 5000, 0);
  assert_int_equal(check_wait(f, &r, &g, 1.0), HOOK_DENY);
  /* a failure (hook down) is never cached */
  snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d/", dead_port());
  conf_url(f, HOOK_ON_PLAY, f->url, 2000, 5000, 1);
  assert_int_equal(check_wait(f, &r, &g, 3.0), HOOK_PENDING);
  assert_int_equal(check_wait(f, &r, &g, 3.0), HOOK_PENDING);
  hooks_stats_t st;
  hooks_get_stats(f->h, &st);
  assert_int_equal(st.cache_hits, 4);
  srv_stop(s);
}

static void test_cancel_and_free(void **state) {
  fx_t *f = *state;
  srv_t *s = srv_start(M_STATUS, 200, NULL);
  snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d/", s->port);
  conf_url(f, HOOK_ON_PLAY, f->url, 300, 0, 1);
  hook_req r = play_req(NULL);
  got_t g = {0}, g2 = {0};
  hook_call_t *call;
  const char *reason;
  /* cancelled before the answer: never called back, even past the deadline */
  assert_int_equal(hooks_check(f->h, &r, on_done, &g, &call, &reason), HOOK_PENDING);
  hooks_cancel(call);
  hooks_cancel(NULL);
  assert_int_equal(hooks_check(f->h, &r, on_done, &g2, &call, &reason), HOOK_PENDING);
  assert_true(run_until(f->loop, &g2.calls, 3.0));
  run_until(f->loop, NULL, 0.5);
  assert_int_equal(g.calls, 0);
  assert_int_equal(g2.calls, 1);
  /* freed with calls in flight: none is called back */
  srv_set(s, M_NEVER, 0);
  hooks_t *h2 = hooks_new(f->loop);
  hook_conf c = {.timeout_ms = 200, .fail_open = 1};
  c.url[HOOK_ON_PLAY] = f->url;
  c.url[HOOK_ON_STOP] = f->url;
  assert_int_equal(hooks_configure(h2, &c), 0);
  memset(&g, 0, sizeof(g));
  assert_int_equal(hooks_check(h2, &r, on_done, &g, &call, &reason), HOOK_PENDING);
  hook_req stop = r;
  stop.event = HOOK_ON_STOP;
  hooks_notify(h2, &stop);
  hooks_free(h2);
  run_until(f->loop, NULL, 0.4);
  assert_int_equal(g.calls, 0);
  /* a callback may free the client that calls it */
  srv_set(s, M_STATUS, 200);
  h2 = hooks_new(f->loop);
  assert_int_equal(hooks_configure(h2, &c), 0);
  memset(&g, 0, sizeof(g));
  g.free_me = h2;
  assert_int_equal(hooks_check(h2, &r, on_done, &g, &call, &reason), HOOK_PENDING);
  assert_true(run_until(f->loop, &g.calls, 3.0));
  assert_int_equal(g.verdict, HOOK_ALLOW);
  srv_stop(s);
}

static void test_notify_and_its_bound(void **state) {
  fx_t *f = *state;
  srv_t *s = srv_start(M_STATUS, 200, NULL);
  snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d/done", s->port);
  hook_conf c = {.timeout_ms = 2000};
  c.url[HOOK_ON_STOP] = f->url;
  c.url[HOOK_ON_UNPUBLISH] = f->url;
  assert_int_equal(hooks_configure(f->h, &c), 0);
  hook_req r = play_req("token=z");
  r.event = HOOK_ON_UNPUBLISH;
  r.proto = "rtmp";
  hooks_notify(f->h, &r);
  hooks_stats_t st;
  for (double until = ev_time() + 3.0; ev_time() < until;) {
    run_until(f->loop, NULL, 0.02);
    hooks_get_stats(f->h, &st);
    if (st.allowed == 1) break;
  }
  assert_int_equal(st.allowed, 1);
  assert_non_null(strstr(s->last, "\"action\":\"unpublish\""));
  assert_non_null(strstr(s->last, "POST /done HTTP/1.1"));
  /* on_play has no URL: a check is refused, a notification for it ignored */
  r.event = HOOK_ON_PLAY;
  hooks_notify(f->h, &r);
  hooks_get_stats(f->h, &st);
  assert_int_equal(st.requests, 1);
  /* a hook that never answers: beyond HOOKS_MAX_NOTIFY in flight, dropped */
  srv_set(s, M_NEVER, 0);
  r.event = HOOK_ON_STOP;
  for (int i = 0; i < HOOKS_MAX_NOTIFY + 10; i++) hooks_notify(f->h, &r);
  hooks_get_stats(f->h, &st);
  assert_int_equal(st.requests, 1 + HOOKS_MAX_NOTIFY);
  assert_int_equal(st.notify_dropped, 10);
  hooks_free(f->h);
  f->h = hooks_new(f->loop);
  srv_stop(s);
}

static void test_check_bound(void **state) {
  fx_t *f = *state;
  srv_t *s = srv_start(M_NEVER, 0, NULL);
  snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d/", s->port);
  conf_url(f, HOOK_ON_PLAY, f->url, 5000, 0, 1);
  static got_t g[HOOKS_MAX_CHECKS];
  hook_call_t *call;
  const char *reason;
  hook_req r = play_req(NULL);
  for (int i = 0; i < HOOKS_MAX_CHECKS; i++)
    assert_int_equal(hooks_check(f->h, &r, on_done, &g[i], &call, &reason), HOOK_PENDING);
  assert_int_equal(hooks_check(f->h, &r, on_done, &g[0], &call, &reason), HOOK_ALLOW);
  assert_string_equal(reason, "too many hook requests in flight (fail open)");
  conf_url(f, HOOK_ON_PLAY, f->url, 5000, 0, 0);
  assert_int_equal(hooks_check(f->h, &r, on_done, &g[0], &call, &reason), HOOK_DENY);
  assert_string_equal(reason, "too many hook requests in flight (fail closed)");
  hooks_stats_t st;
  hooks_get_stats(f->h, &st);
  assert_int_equal(st.overflow, 2);
  hooks_free(f->h); /* 128 calls in flight, none called back */
  f->h = hooks_new(f->loop);
  run_until(f->loop, NULL, 0.1);
  for (int i = 0; i < HOOKS_MAX_CHECKS; i++) assert_int_equal(g[i].calls, 0);
  srv_stop(s);
}

static void test_configure_refuses_bad_urls(void **state) {
  fx_t *f = *state;
  srv_t *s = srv_start(M_STATUS, 200, NULL);
  snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d/", s->port);
  conf_url(f, HOOK_ON_PLAY, f->url, 2000, 0, 0);
  hook_conf bad = {.timeout_ms = 2000};
  bad.url[HOOK_ON_PLAY] = f->url;
  bad.url[HOOK_ON_PUBLISH] = "ftp://example.net/";
  assert_true(hooks_configure(f->h, &bad) < 0);
  bad.url[HOOK_ON_PUBLISH] = NULL;
  bad.timeout_ms = HOOKS_TIMEOUT_MAX + 1;
  assert_true(hooks_configure(f->h, &bad) < 0);
  /* the configuration in force is untouched */
  hook_req r = play_req(NULL);
  got_t g;
  assert_int_equal(check_wait(f, &r, &g, 3.0), HOOK_PENDING);
  assert_int_equal(g.verdict, HOOK_ALLOW);
  srv_stop(s);
}

/* What the client logs about a failed hook names the event, the URL's
 * host and path, the stream and the client, and never the client's query,
 * the URL's credentials or the URL's query. */
static void test_logs_keep_secrets(void **state) {
  fx_t *f = *state;
  snprintf(f->url, sizeof(f->url), "http://op:hunter2@127.0.0.1:%d/auth?key=urlsecret",
           dead_port());
  conf_url(f, HOOK_ON_PLAY, f->url, 2000, 0, 0);
  hook_req r = play_req("token=playersecret");
  got_t g;
  fflush(stderr);
  int saved = dup(2);
  FILE *tmp = tmpfile();
  dup2(fileno(tmp), 2);
  check_wait(f, &r, &g, 3.0);
  hook_req stop = r;
  stop.event = HOOK_ON_STOP;
  hook_conf c = {.timeout_ms = 2000};
  c.url[HOOK_ON_STOP] = f->url;
  assert_int_equal(hooks_configure(f->h, &c), 0);
  hooks_notify(f->h, &stop);
  run_until(f->loop, NULL, 0.2);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  char text[4096] = "";
  rewind(tmp);
  size_t n = fread(text, 1, sizeof(text) - 1, tmp);
  text[n] = '\0';
  fclose(tmp);
  assert_int_equal(g.verdict, HOOK_DENY);
  assert_non_null(strstr(text, "hook down: Connection refused"));
  assert_non_null(strstr(text, "/auth]"));
  assert_non_null(strstr(text, "live/cam1 from 192.0.2.7"));
  assert_null(strstr(text, "playersecret"));
  assert_null(strstr(text, "hunter2"));
  assert_null(strstr(text, "urlsecret"));
  assert_null(strstr(g.reason, "playersecret"));
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void test_https(void **state) {
  fx_t *f = *state;
  char dir[] = "/tmp/hooktlsXXXXXX", err[256], path[300];
  assert_non_null(mkdtemp(dir));
  assert_int_equal(x509_ca_ensure(dir, err, sizeof(err)), 0);
  gnutls_certificate_credentials_t cred;
  gnutls_certificate_allocate_credentials(&cred);
  char crt[300], key[300];
  snprintf(crt, sizeof(crt), "%s/server.crt", dir);
  snprintf(key, sizeof(key), "%s/server.key", dir);
  assert_int_equal(gnutls_certificate_set_x509_key_file(cred, crt, key, GNUTLS_X509_FMT_PEM), 0);
  srv_t *s = srv_start(M_STATUS, 200, cred);
  hook_req r = play_req("token=t");
  got_t g;
  /* a private CA trusted: the server's certificate names 127.0.0.1 and localhost */
  snprintf(path, sizeof(path), "%s/ca.crt", dir);
  assert_int_equal(hooks_set_trust_file(f->h, path), 0);
  snprintf(f->url, sizeof(f->url), "https://127.0.0.1:%d/tls", s->port);
  conf_url(f, HOOK_ON_PLAY, f->url, 3000, 0, 0);
  check_wait(f, &r, &g, 4.0);
  assert_string_equal(g.reason, "allowed by the hook (HTTP 200)");
  assert_non_null(strstr(s->last, "\"query\":\"token=t\""));
  /* the round trip of an uncached https:// check (a handshake each time) */
  enum { N = 50 };
  double ms[N];
  for (int i = 0; i < N; i++) {
    double t0 = ev_time();
    check_wait(f, &r, &g, 4.0);
    assert_int_equal(g.verdict, HOOK_ALLOW);
    ms[i] = (g.at - t0) * 1000.0;
  }
  qsort(ms, N, sizeof(ms[0]), cmp_d);
  printf("hook round trip, uncached, https://127.0.0.1, %d checks: p50 %.3f ms, p90 %.3f ms\n", N,
         ms[N / 2], ms[N * 9 / 10]);
  snprintf(f->url, sizeof(f->url), "https://localhost:%d/tls", s->port);
  conf_url(f, HOOK_ON_PLAY, f->url, 3000, 0, 0);
  srv_set(s, M_STATUS, 401);
  check_wait(f, &r, &g, 4.0);
  assert_string_equal(g.reason, "refused by the hook (HTTP 401)");
  /* the system trust store does not know that CA: fail_open decides */
  int before = srv_requests(s);
  if (hooks_set_trust_file(f->h, NULL) == 0) {
    check_wait(f, &r, &g, 4.0);
    assert_int_equal(g.verdict, HOOK_DENY);
    assert_string_equal(g.reason,
                        "hook TLS failed: the server's certificate was not verified (fail closed)");
    assert_int_equal(srv_requests(s), before);
  }
  /* TLS spoken to a plain HTTP server is garbage or a failed handshake */
  srv_t *plain = srv_start(M_STATUS, 200, NULL);
  assert_int_equal(hooks_set_trust_file(f->h, path), 0);
  snprintf(f->url, sizeof(f->url), "https://127.0.0.1:%d/", plain->port);
  conf_url(f, HOOK_ON_PLAY, f->url, 3000, 0, 1);
  check_wait(f, &r, &g, 4.0);
  assert_int_equal(g.verdict, HOOK_ALLOW);
  assert_non_null(strstr(g.reason, "hook TLS failed"));
  /* a trust file that cannot be read: https:// hooks fail, fail_open decides */
  assert_true(hooks_set_trust_file(f->h, "/nonexistent/ca.crt") < 0);
  hook_conf c = {.timeout_ms = 3000, .fail_open = 0};
  c.url[HOOK_ON_PLAY] = f->url;
  assert_true(hooks_configure(f->h, &c) < 0); /* refused while no trust is read */
  check_wait(f, &r, &g, 4.0);
  assert_string_equal(g.reason, "hook TLS failed: no trusted CA certificate (fail open)");
  srv_stop(plain);
  srv_stop(s);
  gnutls_certificate_free_credentials(cred);
  char cmd[400];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
}

/* The cost of one uncached check against a local hook: the round trip
 * from hooks_check to the callback, printed for docs/performance.md. */
static void test_round_trip(void **state) {
  fx_t *f = *state;
  srv_t *s = srv_start(M_STATUS, 200, NULL);
  snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d/", s->port);
  conf_url(f, HOOK_ON_PLAY, f->url, 2000, 0, 0);
  enum { N = 200 };
  double ms[N];
  hook_req r = play_req("token=abc");
  got_t g;
  for (int i = 0; i < N; i++) {
    double t0 = ev_time();
    check_wait(f, &r, &g, 3.0);
    assert_int_equal(g.verdict, HOOK_ALLOW);
    ms[i] = (g.at - t0) * 1000.0;
  }
  qsort(ms, N, sizeof(ms[0]), cmp_d);
  printf("hook round trip, uncached, 127.0.0.1, %d checks: p50 %.3f ms, p90 %.3f ms, p99 %.3f ms\n",
         N, ms[N / 2], ms[N * 9 / 10], ms[N * 99 / 100]);
  assert_true(ms[N / 2] < 100.0);
  srv_stop(s);
}

int main(void) {
  gnutls_global_init();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_allow_and_the_request, setup, teardown),
      cmocka_unit_test_setup_teardown(test_refuse, setup, teardown),
      cmocka_unit_test_setup_teardown(test_timeout_both_modes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_garbage_and_oversized, setup, teardown),
      cmocka_unit_test_setup_teardown(test_down_both_modes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cache_and_expiry, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cancel_and_free, setup, teardown),
      cmocka_unit_test_setup_teardown(test_notify_and_its_bound, setup, teardown),
      cmocka_unit_test_setup_teardown(test_check_bound, setup, teardown),
      cmocka_unit_test_setup_teardown(test_configure_refuses_bad_urls, setup, teardown),
      cmocka_unit_test_setup_teardown(test_https, setup, teardown),
      cmocka_unit_test_setup_teardown(test_logs_keep_secrets, setup, teardown),
      cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  gnutls_global_deinit();
  return rc;
}
