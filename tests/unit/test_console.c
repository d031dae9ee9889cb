/* Unit tests for controller/console.c and the files embed_console.cmake
 * put in the binary: which paths are the console's, what is embedded with
 * which Content-Type, and that the console's own code keeps to its CSP and
 * its text-only rule (no inline script, no eval, no HTML from strings). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "console.h"
#include "console_files.h"

static const console_file_t *file(const char *path) {
  for (const console_file_t *f = console_files; f->path; f++)
    if (strcmp(f->path, path) == 0) return f;
  return NULL;
}

static int ends_with(const char *s, const char *tail) {
  size_t n = strlen(s), m = strlen(tail);
  return n >= m && strcmp(s + n - m, tail) == 0;
}

static void test_owns(void **state) {
  (void)state;
  assert_true(console_owns("/"));
  assert_true(console_owns("/console"));
  assert_true(console_owns("/console/"));
  assert_true(console_owns("/console/js/app.js"));
  assert_false(console_owns("/consoles"));
  assert_false(console_owns("/console.js"));
  assert_false(console_owns("/api/console/"));
  assert_false(console_owns("/healthz"));
  assert_false(console_owns(""));
}

static void test_embedded(void **state) {
  (void)state;
  const console_file_t *f = file("/console/index.html");
  assert_non_null(f);
  assert_string_equal(f->ctype, "text/html; charset=utf-8");
  f = file("/console/js/app.js");
  assert_non_null(f);
  assert_string_equal(f->ctype, "text/javascript; charset=utf-8");
  f = file("/console/style.css");
  assert_non_null(f);
  assert_string_equal(f->ctype, "text/css; charset=utf-8");
  assert_non_null(file("/console/vendor/mpegts.js"));
  /* what is not served */
  assert_null(file("/console/package.json"));
  assert_null(file("/console/package-lock.json"));
  assert_null(file("/console/vendor.sh"));
  for (f = console_files; f->path; f++) {
    assert_true(strncmp(f->path, "/console/", 9) == 0);
    assert_false(ends_with(f->path, ".md") || ends_with(f->path, ".sh"));
    assert_null(strstr(f->path, "node_modules"));
    /* a quoted strong ETag of 20 hex digits */
    assert_int_equal(strlen(f->etag), 22);
    assert_true(f->etag[0] == '"' && f->etag[21] == '"');
    assert_true(f->len > 0);
    assert_int_equal(f->data[f->len], 0);
    if (strncmp(f->ctype, "text/", 5) == 0)
      assert_int_equal(strlen((const char *)f->data), f->len);
  }
}

/* The console's own files (the vendored player aside) hold nothing its CSP
 * would refuse and nothing that parses strings as HTML or code. */
static void test_keeps_to_csp(void **state) {
  (void)state;
  static const char *const js_banned[] = {"innerHTML", "outerHTML", "insertAdjacentHTML",
                                          "document.write", "eval(", "new Function",
                                          "setTimeout(\"", "setInterval(\"", "javascript:",
                                          "localStorage", NULL};
  static const char *const html_banned[] = {"<script>", " style=", "<style", "javascript:",
                                            NULL};
  int checked = 0;
  for (const console_file_t *f = console_files; f->path; f++) {
    if (strncmp(f->path, "/console/vendor/", 16) == 0) continue;
    const char *text = (const char *)f->data;
    const char *const *banned = ends_with(f->path, ".js") ? js_banned
                                : ends_with(f->path, ".html") ? html_banned : NULL;
    if (banned == NULL) continue;
    for (int i = 0; banned[i]; i++) {
      if (strstr(text, banned[i]) != NULL) fail_msg("%s contains '%s'", f->path, banned[i]);
    }
    /* an event handler attribute: whitespace, "on", letters, "=" */
    for (const char *p = text; banned == html_banned && (p = strstr(p, "on")) != NULL; p++) {
      if (p == text || (p[-1] != ' ' && p[-1] != '\n' && p[-1] != '\t')) continue;
      const char *q = p + 2;
      while (*q >= 'a' && *q <= 'z') q++;
      if (q > p + 2 && *q == '=') fail_msg("%s has an event handler attribute", f->path);
    }
    checked++;
  }
  assert_true(checked >= 8);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_owns),
      cmocka_unit_test(test_embedded),
      cmocka_unit_test(test_keeps_to_csp),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
