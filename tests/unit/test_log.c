/* Unit tests for log_format_json: the object's keys, the context tag,
 * escaping of every byte that needs it, invalid UTF-8, and truncation that
 * keeps the line one valid JSON object. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <unistd.h>

#include "log.h"

#define T "2026-12-03T21:00:00.123Z"

/* render formats |msg| and parses the line back (failing on invalid JSON). */
static json_t *render(const char *msg, size_t len, size_t cap, char *buf) {
  size_t n = log_format_json(buf, cap, T, "info", "link", msg, len);
  assert_true(n < cap);
  assert_int_equal(strlen(buf), n);
  assert_int_equal(buf[n - 1], '\n');
  assert_null(memchr(buf, '\n', n - 1)); /* one line */
  json_error_t e;
  json_t *o = json_loadb(buf, n, JSON_ALLOW_NUL, &e);
  if (o == NULL) fail_msg("not JSON (%s): %s", e.text, buf);
  assert_true(json_is_object(o));
  return o;
}

static const char *str(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  return v && json_is_string(v) ? json_string_value(v) : NULL;
}

static void test_keys_and_context(void **state) {
  (void)state;
  char buf[1024];
  const char *m = "[link edge-a1 10.0.0.7:44944] handshake failed: timeout";
  json_t *o = render(m, strlen(m), sizeof(buf), buf);
  assert_string_equal(str(o, "time"), T);
  assert_string_equal(str(o, "level"), "info");
  assert_string_equal(str(o, "module"), "link");
  assert_string_equal(str(o, "context"), "link edge-a1 10.0.0.7:44944");
  assert_string_equal(str(o, "message"), "handshake failed: timeout");
  assert_null(json_object_get(o, "truncated"));
  /* key order is fixed: time first, message last */
  assert_int_equal(strncmp(buf, "{\"time\":", 8), 0);
  json_decref(o);

  m = "no tag here";
  o = render(m, strlen(m), sizeof(buf), buf);
  assert_null(json_object_get(o, "context"));
  assert_string_equal(str(o, "message"), m);
  json_decref(o);

  /* an unclosed or multi-line bracket is no tag */
  m = "[half open";
  o = render(m, strlen(m), sizeof(buf), buf);
  assert_null(json_object_get(o, "context"));
  assert_string_equal(str(o, "message"), m);
  json_decref(o);
  m = "[a\nb] c";
  o = render(m, strlen(m), sizeof(buf), buf);
  assert_null(json_object_get(o, "context"));
  assert_string_equal(str(o, "message"), m);
  json_decref(o);
}

static void test_escapes(void **state) {
  (void)state;
  char buf[1024];
  const char m[] = "q\" b\\ nl\n cr\r tab\t nul\0 esc\x1b del\x7f";
  json_t *o = render(m, sizeof(m) - 1, sizeof(buf), buf);
  json_t *v = json_object_get(o, "message");
  assert_int_equal(json_string_length(v), sizeof(m) - 1);
  assert_memory_equal(json_string_value(v), m, sizeof(m) - 1);
  assert_non_null(strstr(buf, "\\u0000"));
  assert_non_null(strstr(buf, "\\u001b"));
  assert_non_null(strstr(buf, "\\u007f"));
  json_decref(o);
}

static void test_utf8(void **state) {
  (void)state;
  char buf[1024];
  /* valid: 2, 3 and 4 bytes, kept as they are */
  const char ok[] = "caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x8e\xa5";
  json_t *o = render(ok, sizeof(ok) - 1, sizeof(buf), buf);
  assert_string_equal(str(o, "message"), ok);
  json_decref(o);
  /* invalid: a lone continuation, a cut sequence, an overlong '/', a
   * surrogate, past U+10FFFF, 0xff: one U+FFFD per byte that starts none */
  static const struct {
    const char *in, *out;
  } bad[] = {
      {"a\x80z", "a\xef\xbf\xbdz"},
      {"a\xe6\x97", "a\xef\xbf\xbd\xef\xbf\xbd"},
      {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},
      {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
      {"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
      {"\xff", "\xef\xbf\xbd"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    o = render(bad[i].in, strlen(bad[i].in), sizeof(buf), buf);
    assert_string_equal(str(o, "message"), bad[i].out);
    json_decref(o);
  }
}

static void test_truncation(void **state) {
  (void)state;
  char big[3000], buf[LOG_JSON_MIN + 300];
  /* every cut point: escapes and multi-byte characters are never split */
  for (size_t i = 0; i < sizeof(big); i++) big[i] = "\xe6\x97\xa5\"\x01x"[i % 6];
  for (size_t cap = LOG_JSON_MIN; cap <= sizeof(buf); cap++) {
    json_t *o = render(big, sizeof(big), cap, buf);
    assert_true(json_is_true(json_object_get(o, "truncated")));
    const char *msg = str(o, "message");
    assert_non_null(msg);
    assert_memory_equal(msg, big, strlen(msg)); /* a prefix, nothing replaced */
    json_decref(o);
  }
  /* a long context is cut too, and the line still closes */
  big[0] = '[';
  memset(big + 1, 'c', sizeof(big) - 2);
  big[sizeof(big) - 1] = ']';
  json_t *o = render(big, sizeof(big), LOG_JSON_MIN, buf);
  assert_true(json_is_true(json_object_get(o, "truncated")));
  assert_null(json_object_get(o, "message"));
  json_decref(o);
}

/* log_msg in JSON: one line on stdout, and a message longer than its
 * buffer is marked truncated too. */
static void test_log_msg_json(void **state) {
  (void)state;
  int fds[2], saved = dup(STDOUT_FILENO);
  assert_int_equal(pipe(fds), 0);
  assert_true(dup2(fds[1], STDOUT_FILENO) >= 0);
  log_set_format(LOG_FORMAT_JSON);
  log_msg(LOG_WARN, "unit", "[peer 10.0.0.1:1] %s", "short");
  char big[3000];
  memset(big, 'b', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  log_msg(LOG_ERROR, "unit", "%s", big);
  log_set_format(LOG_FORMAT_TEXT);
  dup2(saved, STDOUT_FILENO);
  close(saved);
  close(fds[1]);
  static char buf[16384];
  size_t n = 0;
  ssize_t k;
  while ((k = read(fds[0], buf + n, sizeof(buf) - 1 - n)) > 0) n += (size_t)k;
  close(fds[0]);
  buf[n] = '\0';
  char *nl = strchr(buf, '\n');
  assert_non_null(nl);
  json_error_t e;
  json_t *a = json_loadb(buf, (size_t)(nl - buf), 0, &e);
  assert_non_null(a);
  assert_string_equal(json_string_value(json_object_get(a, "level")), "warn");
  assert_string_equal(json_string_value(json_object_get(a, "context")), "peer 10.0.0.1:1");
  assert_string_equal(json_string_value(json_object_get(a, "message")), "short");
  json_decref(a);
  json_t *b = json_loads(nl + 1, JSON_DISABLE_EOF_CHECK, &e);
  if (b == NULL) fail_msg("second line: %s", e.text);
  assert_true(json_is_true(json_object_get(b, "truncated")));
  assert_int_equal(json_string_length(json_object_get(b, "message")), 2047);
  json_decref(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_keys_and_context),
      cmocka_unit_test(test_escapes),
      cmocka_unit_test(test_utf8),
      cmocka_unit_test(test_truncation),
      cmocka_unit_test(test_log_msg_json),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
