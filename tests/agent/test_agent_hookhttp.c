/* Unit tests for agent/hookhttp.c: the hook URL's parser (what it accepts,
 * what it refuses and that neither its errors nor its log form carry the
 * credentials or the query), the request writer, and the response reader
 * on every framing, in any split, against garbage and oversized answers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hookhttp.h"

static void test_url_accepted(void **state) {
  (void)state;
  hookhttp_url_t u;
  char why[128], show[256];
  assert_int_equal(hookhttp_url_parse("http://hooks.example.net/auth", &u, why, sizeof(why)), 0);
  assert_false(u.tls);
  assert_string_equal(u.host, "hooks.example.net");
  assert_string_equal(u.port, "80");
  assert_false(u.port_given);
  assert_string_equal(u.target, "/auth");
  assert_false(u.has_cred);

  assert_int_equal(hookhttp_url_parse("HTTPS://127.0.0.1:8443/a/b?x=1&y=2", &u, why, sizeof(why)), 0);
  assert_true(u.tls);
  assert_string_equal(u.host, "127.0.0.1");
  assert_string_equal(u.port, "8443");
  assert_string_equal(u.target, "/a/b?x=1&y=2");
  hookhttp_url_show(&u, show, sizeof(show));
  assert_string_equal(show, "https://127.0.0.1:8443/a/b");

  assert_int_equal(hookhttp_url_parse("http://[::1]:9000", &u, why, sizeof(why)), 0);
  assert_string_equal(u.host, "::1");
  assert_string_equal(u.target, "/");
  hookhttp_url_show(&u, show, sizeof(show));
  assert_string_equal(show, "http://[::1]:9000/");

  assert_int_equal(hookhttp_url_parse("https://h?x", &u, why, sizeof(why)), 0);
  assert_string_equal(u.port, "443");
  assert_string_equal(u.target, "/?x");

  assert_int_equal(
      hookhttp_url_parse("http://u%40x:s3cr%3At@h.example:81/p?token=abc", &u, why, sizeof(why)),
      0);
  assert_true(u.has_cred);
  assert_string_equal(u.user, "u@x");
  assert_string_equal(u.pass, "s3cr:t");
  assert_string_equal(u.host, "h.example");
  hookhttp_url_show(&u, show, sizeof(show));
  assert_string_equal(show, "http://h.example:81/p");

  assert_int_equal(hookhttp_url_parse("http://onlyuser@h/", &u, why, sizeof(why)), 0);
  assert_string_equal(u.user, "onlyuser");
  assert_string_equal(u.pass, "");
}

static void test_url_refused(void **state) {
  (void)state;
  static const char *const bad[] = {
      "ftp://h/", "http://", "http:///p", "http://:80/", "http://h:0/", "http://h:65536/",
      "http://h:08/", "http://h:/", "http://h/a b", "http://h/#frag", "http://[::1/",
      "http://[1.2.3.4]/", "http://[::1]x/", "http://h_x/", "http://@h/", "http://a:b:c/",
      "http://u:p%0a@h/", "http://u:p%zz@h/", "http://u:p%4@h/", "http://h/\x01",
      "http://h/\xc3\xa9", "hooks.example.net/auth", "",
  };
  hookhttp_url_t u;
  char why[128];
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    why[0] = '\0';
    if (hookhttp_url_parse(bad[i], &u, why, sizeof(why)) == 0) fail_msg("accepted: %s", bad[i]);
    assert_true(why[0] != '\0');
    assert_string_equal(u.host, ""); /* nothing half-parsed is left */
  }
  /* the reason never quotes the URL, so never its password */
  assert_int_equal(hookhttp_url_parse("http://user:hunter2@h:99999/", &u, why, sizeof(why)), -1);
  assert_null(strstr(why, "hunter2"));
  char *longurl = malloc(HOOKHTTP_URL_MAX + 2);
  memset(longurl, 'a', HOOKHTTP_URL_MAX + 1);
  memcpy(longurl, "http://h/", 9);
  longurl[HOOKHTTP_URL_MAX + 1] = '\0';
  assert_int_equal(hookhttp_url_parse(longurl, &u, why, sizeof(why)), -1);
  longurl[HOOKHTTP_URL_MAX] = '\0';
  assert_int_equal(hookhttp_url_parse(longurl, &u, why, sizeof(why)), 0);
  free(longurl);
}

static void test_request(void **state) {
  (void)state;
  hookhttp_url_t u;
  char out[1024];
  assert_int_equal(hookhttp_url_parse("http://u:p@[::1]:8080/hook?k=1", &u, NULL, 0), 0);
  const char *body = "{\"action\":\"play\"}";
  long n = hookhttp_request(out, sizeof(out), &u, "cascade-agent/0.1.0", body, strlen(body));
  assert_true(n > 0);
  out[n] = '\0';
  assert_string_equal(out,
                      "POST /hook?k=1 HTTP/1.1\r\n"
                      "Host: [::1]:8080\r\n"
                      "User-Agent: cascade-agent/0.1.0\r\n"
                      "Content-Type: application/json\r\n"
                      "Content-Length: 17\r\n"
                      "Connection: close\r\n"
                      "Authorization: Basic dTpw\r\n"
                      "\r\n"
                      "{\"action\":\"play\"}");
  assert_int_equal(hookhttp_url_parse("http://h.example/", &u, NULL, 0), 0);
  n = hookhttp_request(out, sizeof(out), &u, "ua", "{}", 2);
  out[n] = '\0';
  assert_non_null(strstr(out, "\r\nHost: h.example\r\n"));
  assert_null(strstr(out, "Authorization"));
  assert_int_equal(hookhttp_request(out, 60, &u, "ua", "{}", 2), -1);
  assert_int_equal(hookhttp_request(out, (size_t)n + 1, &u, "ua", "{}", 2), n);
  assert_int_equal(hookhttp_request(out, (size_t)n - 1, &u, "ua", "{}", 2), -1);
}

/* Feeds |s| whole, then one byte at a time; both must agree. Returns the
 * result (after an EOF when |eof|) and the status. */
static int feed(const char *s, size_t n, int eof, int *status) {
  int res[2], st[2];
  for (int split = 0; split < 2; split++) {
    hookhttp_resp_t *p = malloc(sizeof(*p));
    const char *why = NULL;
    hookhttp_resp_init(p);
    int r = HOOKHTTP_MORE;
    if (split == 0) {
      r = hookhttp_resp_feed(p, (const uint8_t *)s, n, &why);
    } else {
      for (size_t i = 0; i < n && r == HOOKHTTP_MORE; i++)
        r = hookhttp_resp_feed(p, (const uint8_t *)s + i, 1, &why);
    }
    if (r == HOOKHTTP_MORE && eof) r = hookhttp_resp_eof(p, &why);
    if (r == HOOKHTTP_BAD) assert_non_null(why);
    res[split] = r;
    st[split] = p->status;
    free(p);
  }
  assert_int_equal(res[0], res[1]);
  if (res[0] == HOOKHTTP_DONE) assert_int_equal(st[0], st[1]);
  *status = st[0];
  return res[0];
}

#define FEED(s, eof, st) feed((s), strlen(s), (eof), (st))

static void test_response_framings(void **state) {
  (void)state;
  int st;
  assert_int_equal(FEED("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0, &st), HOOKHTTP_DONE);
  assert_int_equal(st, 200);
  assert_int_equal(FEED("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\no", 0, &st), HOOKHTTP_MORE);
  assert_int_equal(FEED("HTTP/1.0 403 Forbidden\r\n\r\nno", 0, &st), HOOKHTTP_MORE);
  assert_int_equal(FEED("HTTP/1.0 403 Forbidden\r\n\r\nno", 1, &st), HOOKHTTP_DONE);
  assert_int_equal(st, 403);
  assert_int_equal(FEED("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "2\r\nok\r\n0\r\n\r\n", 0, &st),
                   HOOKHTTP_DONE);
  assert_int_equal(FEED("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", 0, &st),
                   HOOKHTTP_DONE);
  assert_int_equal(st, 204);
  assert_int_equal(FEED("HTTP/1.1 401 Unauthorized\nContent-Length: 0\n\n", 0, &st),
                   HOOKHTTP_DONE);
  assert_int_equal(st, 401);
  assert_int_equal(FEED("HTTP/1.1 200\r\ncontent-length:  0 \r\nX-A: b\r\n\r\ntrailing", 0, &st),
                   HOOKHTTP_DONE);
  assert_int_equal(FEED("HTTP/1.1 500 Oops\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
                        0, &st),
                   HOOKHTTP_DONE);
  assert_int_equal(st, 500);
}

static void test_response_garbage(void **state) {
  (void)state;
  static const char *const bad[] = {
      "garbage\r\n\r\n",
      "HTTP/2 200\r\n\r\n",
      "HTTP/1.1 20x OK\r\n\r\n",
      "HTTP/1.1 200OK\r\n\r\n",
      "HTTP/1.1 700 Huh\r\n\r\n",
      "HTTP/1.1 101 Switching\r\n\r\n",
      "HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
      "HTTP/1.1 200 OK\r\n: novalue\r\n\r\n",
      "HTTP/1.1 200 OK\r\n folded\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
      "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
      "\r\n",
  };
  int st;
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    if (FEED(bad[i], 1, &st) != HOOKHTTP_BAD) fail_msg("accepted: %s", bad[i]);
  /* a NUL in the head */
  assert_int_equal(feed("HTTP/1.1 200 OK\r\nX: \0\r\n\r\n", 23, 1, &st), HOOKHTTP_BAD);
  /* truncated answers */
  assert_int_equal(FEED("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", 1, &st), HOOKHTTP_BAD);
  assert_int_equal(FEED("HTTP/1.1 200 OK\r\n", 1, &st), HOOKHTTP_BAD);
  assert_int_equal(FEED("", 1, &st), HOOKHTTP_BAD);
  assert_int_equal(FEED("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok", 1, &st),
                   HOOKHTTP_BAD);
}

static void test_response_oversized(void **state) {
  (void)state;
  int st;
  char *big = malloc(3 * HOOKHTTP_RESP_MAX);
  /* Content-Length over the cap: refused at the head */
  assert_int_equal(FEED("HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\n", 0, &st), HOOKHTTP_BAD);
  /* a close-delimited body over the cap */
  int n = sprintf(big, "HTTP/1.1 200 OK\r\n\r\n");
  memset(big + n, 'x', HOOKHTTP_RESP_MAX);
  assert_int_equal(feed(big, (size_t)n + HOOKHTTP_RESP_MAX, 1, &st), HOOKHTTP_BAD);
  /* just under the cap is fine */
  assert_int_equal(feed(big, HOOKHTTP_RESP_MAX, 1, &st), HOOKHTTP_DONE);
  /* a head over 8 KiB */
  n = sprintf(big, "HTTP/1.1 200 OK\r\nX-Pad: ");
  memset(big + n, 'p', HOOKHTTP_HEAD_MAX);
  strcpy(big + n + HOOKHTTP_HEAD_MAX, "\r\n\r\n");
  assert_int_equal(FEED(big, 1, &st), HOOKHTTP_BAD);
  /* a chunked body over the cap */
  n = sprintf(big, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
  for (int i = 0; i < 20; i++) {
    n += sprintf(big + n, "400\r\n");
    memset(big + n, 'c', 0x400);
    n += 0x400;
    n += sprintf(big + n, "\r\n");
  }
  n += sprintf(big + n, "0\r\n\r\n");
  assert_int_equal(feed(big, (size_t)n, 1, &st), HOOKHTTP_BAD);
  free(big);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_url_accepted),       cmocka_unit_test(test_url_refused),
      cmocka_unit_test(test_request),            cmocka_unit_test(test_response_framings),
      cmocka_unit_test(test_response_garbage),   cmocka_unit_test(test_response_oversized),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
