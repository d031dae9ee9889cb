/* Unit tests for controller/reply.c: the exact bytes of the JSON envelope a
 * client receives, that |data| is always consumed (LSan checks), and the
 * reason phrases of the statuses the API sends. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "reply.h"

/* Builds the envelope and compares its compact text with |want|. */
static void expect_text(int code, const char *message, json_t *data, const char *want) {
  json_t *o = reply_envelope(code, message, data);
  assert_non_null(o);
  size_t len = 0;
  char *s = reply_dump(o, &len);
  json_decref(o);
  assert_non_null(s);
  if (strcmp(s, want) != 0) {
    fprintf(stderr, "got  %s\nwant %s\n", s, want);
    free(s);
    fail();
  }
  assert_int_equal(len, strlen(want));
  free(s);
}

static void test_success(void **state) {
  (void)state;
  expect_text(0, NULL, NULL, "{\"code\":0,\"message\":\"success\",\"data\":null}");
  /* code 0 always says "success", whatever message is passed */
  expect_text(0, "ignored", json_integer(7), "{\"code\":0,\"message\":\"success\",\"data\":7}");
  expect_text(0, NULL, json_pack("{s:I,s:s,s:o}", "id", (json_int_t)42, "name", "edge-a1",
                                 "parent_id", json_null()),
              "{\"code\":0,\"message\":\"success\",\"data\":"
              "{\"id\":42,\"name\":\"edge-a1\",\"parent_id\":null}}");
  expect_text(0, NULL, json_pack("{s:[],s:i}", "items", "total", 0),
              "{\"code\":0,\"message\":\"success\",\"data\":{\"items\":[],\"total\":0}}");
  expect_text(0, NULL, json_string("边缘 🚀"),
              "{\"code\":0,\"message\":\"success\",\"data\":\"边缘 🚀\"}");
}

static void test_errors(void **state) {
  (void)state;
  expect_text(400, "name: must be 1 to 64 bytes", NULL,
              "{\"code\":400,\"message\":\"name: must be 1 to 64 bytes\",\"data\":null}");
  expect_text(401, "missing or invalid bearer token", NULL,
              "{\"code\":401,\"message\":\"missing or invalid bearer token\",\"data\":null}");
  expect_text(404, "node 9 not found", NULL,
              "{\"code\":404,\"message\":\"node 9 not found\",\"data\":null}");
  expect_text(409, "name 'a' already exists", NULL,
              "{\"code\":409,\"message\":\"name 'a' already exists\",\"data\":null}");
  expect_text(503, "database unavailable", NULL,
              "{\"code\":503,\"message\":\"database unavailable\",\"data\":null}");
  /* quotes, backslashes and control characters are escaped */
  expect_text(400, "unknown field '\"x\\\n'", NULL,
              "{\"code\":400,\"message\":\"unknown field '\\\"x\\\\\\n'\",\"data\":null}");
  expect_text(400, "", NULL, "{\"code\":400,\"message\":\"\",\"data\":null}");
  /* an error may still carry data; it is kept */
  expect_text(409, "conflict", json_pack("{s:I}", "id", (json_int_t)3),
              "{\"code\":409,\"message\":\"conflict\",\"data\":{\"id\":3}}");
}

static void test_data_stolen(void **state) {
  (void)state;
  /* The envelope holds the only reference: freeing it frees data (LSan
   * would report the array otherwise). */
  json_t *data = json_array();
  assert_non_null(data);
  json_array_append_new(data, json_string("a"));
  json_t *o = reply_envelope(0, NULL, data);
  assert_non_null(o);
  assert_ptr_equal(json_object_get(o, "data"), data);
  assert_int_equal(data->refcount, 1);
  json_decref(o);

  /* A caller that keeps its own reference sees it bumped, not copied. */
  data = json_object();
  json_incref(data);
  o = reply_envelope(200, "x", data);
  assert_non_null(o);
  assert_int_equal(data->refcount, 2);
  json_decref(o);
  assert_int_equal(data->refcount, 1);
  json_decref(data);
}

/* BUG (controller/reply.c, reply_envelope): when the "message" member cannot
 * be built the || chain stops before "data" is set, so |data| is neither
 * stolen nor freed. Input: reply_envelope(400, "bad \xff", json_object())
 * (or message NULL with a non-zero code). Expected: NULL or an envelope, and
 * |data| consumed as the header promises. Actual: NULL and |data| leaked
 * (LSan reports the object allocated below). Invalid UTF-8 reaches the
 * message in practice: see test_node_unknown_field_utf8_cut in test_valid.c. */
static void test_data_stolen_on_failure(void **state) {
  (void)state;
  json_t *o = reply_envelope(400, "bad \xff", json_pack("{s:s}", "k", "v"));
  json_decref(o);
  o = reply_envelope(400, NULL, json_pack("[i]", 1));
  json_decref(o);
}

static void test_status_text(void **state) {
  (void)state;
  static const struct {
    int status;
    const char *text;
  } want[] = {
      {200, "OK"},
      {201, "Created"},
      {400, "Bad Request"},
      {401, "Unauthorized"},
      {403, "Forbidden"},
      {404, "Not Found"},
      {405, "Method Not Allowed"},
      {409, "Conflict"},
      {413, "Payload Too Large"},
      {429, "Too Many Requests"},
      {500, "Internal Server Error"},
      {503, "Service Unavailable"},
      {504, "Gateway Timeout"},
  };
  for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
    assert_string_equal(reply_status_text(want[i].status), want[i].text);
  assert_string_equal(reply_status_text(0), "Unknown");
  assert_string_equal(reply_status_text(418), "Unknown");
  assert_string_equal(reply_status_text(-1), "Unknown");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_success),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_data_stolen),
      cmocka_unit_test(test_data_stolen_on_failure),
      cmocka_unit_test(test_status_text),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
