/* Unit tests for agent/media.c's public face: the handler of the public
 * HTTP listener passes the /healthz probe to the agent's routes and answers
 * every local-API route 404, with any method and in any spelling, without
 * the agent's routes ever seeing the request. (The HTTP server decodes
 * percent-escapes before the handler: the decoded spellings are here.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "media.h"

static int calls;

/* The agent's routes, as far as this test cares: it answers everything. */
static int fake_api(void *arg, const httpflv_request_t *rq, httpflv_reply_t *out) {
  (void)arg;
  (void)rq;
  (void)out;
  calls++;
  return 200;
}

static int public_status(const char *method, const char *path) {
  media_t m;
  memset(&m, 0, sizeof(m));
  m.api = fake_api;
  httpflv_request_t rq = {method, path, "", "", 0};
  httpflv_reply_t out = {NULL, 0, NULL, NULL};
  return media_public_api(&m, &rq, &out);
}

static const char *const methods[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS",
                                      "PATCH", "get", "FOO"};
#define NMETHODS (sizeof(methods) / sizeof(methods[0]))

static void test_local_api_never_public(void **state) {
  (void)state;
  static const char *const paths[] = {
      "/api/cascade/status", "/api/stream/list", "/metrics", "/api/cascade/linktest",
      "/api/cascade/echo",
      /* spellings: trailing and doubled slashes, dot segments, case, what
       * %-escapes decode to, a NUL-free control byte */
      "/api/cascade/status/", "//api/cascade/status", "/api//cascade/status",
      "/api/./cascade/status", "/x/../api/cascade/status", "/API/cascade/status",
      "/Metrics", "/metrics/", "//metrics", "/api/cascade/linktest/", "/api/cascade/LINKTEST",
      "/api/cascade/echo/", "/api/stream/list;x", "/api/stream/list\t",
      /* and the probe's neighbours */
      "/healthz/", "//healthz", "/HEALTHZ", "/healthz/../metrics", "/healthzz", "/", "",
      "/api/", "/api"};
  for (size_t p = 0; p < sizeof(paths) / sizeof(paths[0]); p++)
    for (size_t i = 0; i < NMETHODS; i++) {
      calls = 0;
      int st = public_status(methods[i], paths[p]);
      if (st != 0 || calls != 0)
        fail_msg("%s %s on the public listener: status %d, reached the agent %d times",
                 methods[i], paths[p], st, calls);
    }
}

static void test_probe_is_public(void **state) {
  (void)state;
  for (size_t i = 0; i < NMETHODS; i++) {
    calls = 0;
    /* the agent's routes decide the method (GET/HEAD: 200, others: 405) */
    assert_int_equal(public_status(methods[i], "/healthz"), 200);
    assert_int_equal(calls, 1);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_local_api_never_public),
      cmocka_unit_test(test_probe_is_public),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
