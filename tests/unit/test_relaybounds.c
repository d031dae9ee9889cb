/* The API relay's shared bounds: whatever the controller's check accepts,
 * the agent's check accepts too, walked over the boundaries (paths that
 * grow when encoded, every byte in a method, header counts and sizes,
 * query sizes); and the refusals the caller gets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ctlmsg.h"
#include "relaybounds.h"
#include "relpath.h"

static int accepted, refused;

/* controller_then_agent runs the controller's check on a request line and,
 * when it accepts, asserts that the agent accepts what would be sent:
 * ctlmsg_relay_request_check, then relayc's own normalisation to the same
 * path. Returns the controller's status (0 = accepted) and its message. */
static int controller_then_agent(const char *method, const char *raw, size_t rawlen,
                                 const char *query, char *msg, size_t msglen) {
  char *norm = malloc(rawlen + 1), *enc = malloc(3 * rawlen + 1);
  assert_non_null(norm);
  assert_non_null(enc);
  int st = relaybounds_target(method, raw, rawlen, query, norm, rawlen + 1, enc, 3 * rawlen + 1,
                              msg, msglen);
  if (st == 0) {
    accepted++;
    Cascade__Control__RelayRequest q = CASCADE__CONTROL__RELAY_REQUEST__INIT;
    char why[128] = "";
    q.id = 1;
    q.method = (char *)method;
    q.path = enc;
    q.query = (char *)query;
    if (ctlmsg_relay_request_check(&q, why, sizeof(why)) != 0)
      fail_msg("controller accepted %s %.60s... (%zu bytes, %zu encoded) but the agent refuses: %s",
               method, raw, rawlen, strlen(enc), why);
    size_t el = strlen(enc);
    char *again = malloc(el + 1);
    const char *nwhy = NULL;
    assert_non_null(again);
    if (relpath_normalize(enc, el, again, el + 1, &nwhy) != 0)
      fail_msg("the agent cannot normalise %.60s: %s", enc, nwhy);
    assert_string_equal(again, norm);
    free(again);
  } else {
    refused++;
    assert_true(st == 400 || st == 414);
    assert_true(msg[0] != '\0');
  }
  free(norm);
  free(enc);
  return st;
}

/* path_of: "/" followed by |n| copies of |unit| (|ul| bytes). */
static char *path_of(const char *unit, size_t ul, size_t n, size_t *len) {
  char *p = malloc(1 + n * ul + 1);
  assert_non_null(p);
  p[0] = '/';
  for (size_t i = 0; i < n; i++) memcpy(p + 1 + i * ul, unit, ul);
  *len = 1 + n * ul;
  p[*len] = '\0';
  return p;
}

static void test_encoded_path_lengths(void **state) {
  (void)state;
  char msg[300];
  size_t len;
  /* The finding: 1,400 '|' are 1,401 bytes as sent, 4,201 once encoded. */
  char *p = path_of("|", 1, 1400, &len);
  assert_int_equal(controller_then_agent("GET", p, len, "", msg, sizeof(msg)), 400);
  assert_non_null(strstr(msg, "once encoded"));
  free(p);

  /* Every byte that may appear in a path, raw and as an escape, in runs whose
   * encoded length is just under, at and over the bound, and raw lengths
   * around the raw bound. */
  for (int b = 1; b < 256; b++) {
    char unit[4];
    size_t ul;
    if (b == '/') continue;
    unit[0] = (char)b;
    ul = 1;
    for (int esc = 0; esc < 2; esc++) {
      if (esc) {
        snprintf(unit, sizeof(unit), "%%%02X", b);
        ul = 3;
      }
      for (size_t n = 1360; n <= 1370; n++) {
        p = path_of(unit, ul, n, &len);
        controller_then_agent("GET", p, len, "", msg, sizeof(msg));
        free(p);
      }
      for (size_t n = 4090 / ul; n <= 4100 / ul; n++) {
        p = path_of(unit, ul, n, &len);
        controller_then_agent("GET", p, len, "", msg, sizeof(msg));
        free(p);
      }
    }
  }
  /* Exactly at the bound once encoded: 1 + 3 * 1364 = 4093, + "ab" = 4095. */
  p = path_of("|", 1, 1364, &len);
  p = realloc(p, len + 4);
  assert_non_null(p);
  memcpy(p + len, "ab", 3);
  len += 2;
  assert_int_equal(controller_then_agent("GET", p, len, "", msg, sizeof(msg)), 0);
  p[len++] = 'c';
  p[len] = '\0';
  assert_int_equal(controller_then_agent("GET", p, len, "", msg, sizeof(msg)), 400);
  free(p);
  /* Over the raw bound: 414, as before. */
  p = path_of("a", 1, 4095, &len);
  assert_int_equal(controller_then_agent("GET", p, len, "", msg, sizeof(msg)), 414);
  free(p);
  p = path_of("a", 1, 4094, &len);
  assert_int_equal(controller_then_agent("GET", p, len, "", msg, sizeof(msg)), 0);
  free(p);
  assert_true(accepted > 0 && refused > 0);
}

static void test_methods(void **state) {
  (void)state;
  char msg[300], m[40];
  /* Every byte value as a method of its own and inside a real one. */
  for (int b = 1; b < 256; b++) {
    m[0] = (char)b;
    m[1] = '\0';
    int st = controller_then_agent(m, "/api/x", 6, "", msg, sizeof(msg));
    assert_int_equal(st, b >= 'A' && b <= 'Z' ? 0 : 400);
    snprintf(m, sizeof(m), "GE%cT", b);
    st = controller_then_agent(m, "/api/x", 6, "", msg, sizeof(msg));
    assert_int_equal(st, b >= 'A' && b <= 'Z' ? 0 : 400);
  }
  const char *refuse[] = {"get", "Get", "M-SEARCH", "ABCDEFGHIJKLMNOPQ", "", "GET ", "PROPFIND1",
                          "ABCDEFGHIJKLMNOPQRSTUVWXYZ"};
  for (size_t i = 0; i < sizeof(refuse) / sizeof(*refuse); i++) {
    assert_int_equal(controller_then_agent(refuse[i], "/api/x", 6, "", msg, sizeof(msg)), 400);
    assert_non_null(strstr(msg, "invalid relay method"));
  }
  assert_int_equal(controller_then_agent("get", "/api/x", 6, "", msg, sizeof(msg)), 400);
  assert_non_null(strstr(msg, "'get'"));
  const char *accept[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "MKCOL",
                          "ABCDEFGHIJKLMNOP"};
  for (size_t i = 0; i < sizeof(accept) / sizeof(*accept); i++)
    assert_int_equal(controller_then_agent(accept[i], "/api/x", 6, "", msg, sizeof(msg)), 0);
}

static void test_queries(void **state) {
  (void)state;
  char msg[300];
  char *q = malloc(4200);
  assert_non_null(q);
  for (size_t n = 4090; n <= 4100; n++) {
    memset(q, 'q', n);
    q[n] = '\0';
    int st = controller_then_agent("GET", "/api/x", 6, q, msg, sizeof(msg));
    assert_int_equal(st, n <= RELAYBOUNDS_QUERY_MAX ? 0 : 414);
  }
  for (int b = 1; b < 256; b++) {
    snprintf(q, 4200, "a=%cb", b);
    int st = controller_then_agent("GET", "/api/x", 6, q, msg, sizeof(msg));
    assert_int_equal(st, b > 0x20 && b < 0x7f && b != '#' ? 0 : 400);
  }
  free(q);
}

/* controller_headers stands for the controller's pass over a caller's
 * headers (api_relay.c collect_header): at most 63 of the caller's, each
 * judged by relaybounds_header_add, then X-Forwarded-For. Returns the
 * headers it would send in |out| (count in |*n|), or -1 when it refuses. */
static int controller_headers(Cascade__Control__Header *const *in, size_t nin,
                              Cascade__Control__Header **out, size_t *n,
                              Cascade__Control__Header *xff) {
  relaybounds_headers_t hb = {0, 0};
  *n = 0;
  for (size_t i = 0; i < nin; i++) {
    if (hb.n >= RELAYBOUNDS_HEADERS_MAX - 1) return -1;
    if (relaybounds_header_add(&hb, in[i]->name, in[i]->value) != NULL) return -1;
    out[(*n)++] = in[i];
  }
  if (relaybounds_header_add(&hb, xff->name, xff->value) != NULL) return -1;
  out[(*n)++] = xff;
  return 0;
}

static void check_headers(Cascade__Control__Header *const *in, size_t nin, int want_ok) {
  Cascade__Control__Header *out[RELAYBOUNDS_HEADERS_MAX + 8];
  Cascade__Control__Header xff = CASCADE__CONTROL__HEADER__INIT;
  size_t n = 0;
  xff.name = "X-Forwarded-For";
  xff.value = "127.0.0.1";
  int ok = controller_headers(in, nin, out, &n, &xff) == 0;
  assert_int_equal(ok, want_ok);
  if (!ok) return;
  Cascade__Control__RelayRequest q = CASCADE__CONTROL__RELAY_REQUEST__INIT;
  char why[128] = "";
  q.id = 9;
  q.method = "GET";
  q.path = "/api/x";
  q.query = "";
  q.headers = out;
  q.n_headers = n;
  if (ctlmsg_relay_request_check(&q, why, sizeof(why)) != 0)
    fail_msg("controller accepted %zu headers but the agent refuses: %s", nin, why);
}

static void test_headers(void **state) {
  (void)state;
  enum { N = 70 };
  Cascade__Control__Header hv[N], *hp[N];
  char names[N][8];
  char *big = malloc(70000);
  assert_non_null(big);
  for (int i = 0; i < N; i++) {
    cascade__control__header__init(&hv[i]);
    snprintf(names[i], sizeof(names[i]), "X-H%d", i);
    hv[i].name = names[i];
    hv[i].value = "v";
    hp[i] = &hv[i];
  }
  /* Counts at and past the bound: 63 of the caller's plus X-Forwarded-For. */
  for (size_t n = 0; n <= N; n++) check_headers(hp, n, n <= RELAYBOUNDS_HEADERS_MAX - 1);

  /* Name lengths 254..257, value lengths 4094..4097. */
  for (size_t l = 254; l <= 257; l++) {
    memset(big, 'n', l);
    big[l] = '\0';
    hv[0].name = big;
    check_headers(hp, 1, l <= RELAYBOUNDS_HNAME_MAX);
  }
  hv[0].name = names[0];
  for (size_t l = 4094; l <= 4097; l++) {
    memset(big, 'v', l);
    big[l] = '\0';
    hv[0].value = big;
    check_headers(hp, 1, l <= RELAYBOUNDS_HVALUE_MAX);
  }
  /* Every byte in a name and in a value. */
  char nm[8], val[8];
  for (int b = 1; b < 256; b++) {
    snprintf(nm, sizeof(nm), "X%cY", b);
    hv[0].name = nm;
    hv[0].value = "v";
    check_headers(hp, 1, b > 0x20 && b < 0x7f && b != ':');
    snprintf(val, sizeof(val), "a%cb", b);
    hv[0].name = names[0];
    hv[0].value = val;
    check_headers(hp, 1, b >= 0x20 && b < 0x7f);
  }
  hv[0].value = "";
  check_headers(hp, 1, 1);
  hv[0].name = "";
  check_headers(hp, 1, 0);
  hv[0].name = names[0];

  /* Total size: 16 values of 4,095 bytes are 65,520 with the names; the
   * 17th tips the list over 64 KiB. */
  memset(big, 'v', 4095);
  big[4095] = '\0';
  for (int i = 0; i < N; i++) hv[i].value = big;
  size_t fits = 0, bytes = 0;
  while (bytes + strlen(names[fits]) + 4095 <= RELAYBOUNDS_HBYTES_MAX) bytes += strlen(names[fits++]) + 4095;
  check_headers(hp, fits - 1, 1); /* room left for X-Forwarded-For */
  check_headers(hp, fits + 1, 0);
  free(big);
}

static void test_body(void **state) {
  (void)state;
  Cascade__Control__RelayRequest q = CASCADE__CONTROL__RELAY_REQUEST__INIT;
  char why[128];
  static uint8_t body[RELAYBOUNDS_BODY_MAX + 1];
  q.id = 1;
  q.method = "POST";
  q.path = "/api/x";
  q.query = "";
  q.body.data = body;
  q.body.len = RELAYBOUNDS_BODY_MAX;
  assert_int_equal(ctlmsg_relay_request_check(&q, why, sizeof(why)), 0);
  q.body.len++;
  assert_int_equal(ctlmsg_relay_request_check(&q, why, sizeof(why)), -1);
  assert_non_null(strstr(why, "body"));
  q.body.len = 0;
  q.id = 0;
  assert_int_equal(ctlmsg_relay_request_check(&q, why, sizeof(why)), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_encoded_path_lengths),
      cmocka_unit_test(test_methods),
      cmocka_unit_test(test_queries),
      cmocka_unit_test(test_headers),
      cmocka_unit_test(test_body),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
