/* Unit tests for agent/state.c: encode/decode round trip (rule presence
 * kept), every refusal of a bad file (corrupt, truncated at every byte, old
 * or foreign format, types, bounds, inconsistent topology), the node/CA
 * check, and the atomic save and bounded load on a temporary directory. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "state.h"
#include "x509.h"

static const char GOOD[] =
    "{\"format\":\"cascade-agent-state\",\"version\":1,\"node\":{\"id\":7,\"name\":\"region\","
    "\"epoch\":1},\"ca_sha256\":\"AB:CD\",\"saved_at\":1700000000,\"generation\":12,"
    "\"parent\":{\"id\":3,\"name\":\"hq\",\"quic\":\"127.0.0.1:44944\",\"epoch\":1},"
    "\"children\":[{\"id\":9,\"name\":\"edge\",\"epoch\":2}],"
    "\"rules\":{\"onsub_pull\":[{\"pattern\":\"live/.*\",\"target\":\"m7s://$0\"}],"
    "\"autopush\":true}}";

static void expect_bad(const char *text, const char *want) {
  agent_state_t st;
  char err[320] = "";
  memset(&st, 0x5a, sizeof(st));
  assert_int_equal(agent_state_decode(text, strlen(text), &st, err, sizeof(err)), -1);
  if (strstr(err, want) == NULL) fail_msg("%s: error '%s' lacks '%s'", text, err, want);
  assert_null(st.config);
  assert_null(st.node_name);
}

/* GOOD with |from| replaced by |to| (once). */
static char *good_with(const char *from, const char *to) {
  const char *p = strstr(GOOD, from);
  char *out = NULL;
  assert_non_null(p);
  assert_true(asprintf(&out, "%.*s%s%s", (int)(p - GOOD), GOOD, to, p + strlen(from)) > 0);
  return out;
}

static void test_round_trip(void **state) {
  (void)state;
  agent_state_t st, again;
  char err[320];
  assert_int_equal(agent_state_decode(GOOD, strlen(GOOD), &st, err, sizeof(err)), 0);
  assert_int_equal(st.node_id, 7);
  assert_string_equal(st.node_name, "region");
  assert_int_equal(st.node_epoch, 1);
  assert_string_equal(st.ca_sha256, "AB:CD");
  const agentmsg_config_t *cf = st.config;
  assert_int_equal(cf->generation, 12);
  assert_int_equal(cf->parent_id, 3);
  assert_string_equal(cf->parent_quic, "127.0.0.1:44944");
  assert_int_equal(cf->nchildren, 1);
  assert_int_equal(cf->children[0].id, 9);
  assert_int_equal(cf->children[0].epoch, 2);
  /* Absent rules stay absent (the file's value applies), present ones kept. */
  assert_false(cf->rules.has_relayapi);
  assert_true(cf->rules.has_pull);
  assert_int_equal(cf->rules.npull, 1);
  assert_string_equal(cf->rules.pull[0].target, "m7s://$0");
  assert_true(cf->rules.has_autopush);
  assert_true(cf->rules.autopush);

  char *text = agent_state_encode(&st);
  assert_non_null(text);
  assert_int_equal(agent_state_decode(text, strlen(text), &again, err, sizeof(err)), 0);
  assert_int_equal(again.config->generation, 12);
  assert_false(again.config->rules.has_relayapi);
  assert_true(again.config->rules.has_autopush);
  assert_string_equal(again.config->children[0].name, "edge");
  free(text);
  agent_state_free(&again);
  agent_state_free(&st);
  agent_state_free(NULL);

  /* A root node: no parent, no children, no rules. */
  char *root = good_with("\"parent\":{\"id\":3,\"name\":\"hq\",\"quic\":\"127.0.0.1:44944\","
                         "\"epoch\":1},\"children\":[{\"id\":9,\"name\":\"edge\",\"epoch\":2}]",
                         "\"parent\":null,\"children\":[]");
  assert_int_equal(agent_state_decode(root, strlen(root), &st, err, sizeof(err)), 0);
  assert_int_equal(st.config->parent_id, 0);
  assert_int_equal(st.config->nchildren, 0);
  assert_string_equal(st.config->parent_name, ""); /* owned strings are never NULL */
  free(root);
  agent_state_free(&st);
}

/* Files written by the agent before its configuration became a plain
 * struct (agentmsg.h) -- the texts below are what that agent wrote --
 * load, and are written again byte for byte: every field, lists present
 * but empty, and rules all absent. */
static const char *const WRITTEN_BEFORE[] = {
    "{\n \"format\": \"cascade-agent-state\",\n \"version\": 1,\n \"node\": {\n  \"id\": 7,\n"
    "  \"name\": \"region \xc3\xa9\",\n  \"epoch\": 3\n },\n \"ca_sha256\": \"AB:CD:EF\",\n"
    " \"saved_at\": 1700000000,\n \"generation\": 4294967299,\n \"parent\": {\n  \"id\": 3,\n"
    "  \"name\": \"hq\",\n  \"quic\": \"127.0.0.1:44944\",\n  \"epoch\": 2\n },\n"
    " \"children\": [\n  {\n   \"id\": 9,\n   \"name\": \"edge-a\",\n   \"epoch\": 0\n  },\n"
    "  {\n   \"id\": 11,\n   \"name\": \"edge-b\",\n   \"epoch\": 5\n  }\n ],\n \"rules\": {\n"
    "  \"relayapi\": {\n   \"allow\": [\n    \"/api/\",\n    \"/x/\"\n   ],\n   \"deny\": [\n"
    "    \"/api/admin/\"\n   ]\n  },\n  \"onsub_pull\": [\n   {\n    \"pattern\": \"^live/.*\",\n"
    "    \"target\": \"m7s://$0\"\n   },\n   {\n    \"pattern\": \"^vod/(.*)\",\n"
    "    \"target\": \"rtmp://h/$1\"\n   }\n  ],\n  \"autopush\": false\n }\n}",
    "{\n \"format\": \"cascade-agent-state\",\n \"version\": 1,\n \"node\": {\n  \"id\": 1,\n"
    "  \"name\": \"hq\",\n  \"epoch\": 0\n },\n \"ca_sha256\": \"00\",\n \"saved_at\": 0,\n"
    " \"generation\": 1,\n \"parent\": null,\n \"children\": [],\n \"rules\": {\n"
    "  \"relayapi\": {\n   \"allow\": [],\n   \"deny\": []\n  },\n  \"onsub_pull\": []\n }\n}",
    "{\n \"format\": \"cascade-agent-state\",\n \"version\": 1,\n \"node\": {\n  \"id\": 1,\n"
    "  \"name\": \"hq\",\n  \"epoch\": 0\n },\n \"ca_sha256\": \"00\",\n \"saved_at\": 0,\n"
    " \"generation\": 1,\n \"parent\": null,\n \"children\": [],\n \"rules\": {}\n}",
};

static void test_written_before(void **state) {
  (void)state;
  agent_state_t st;
  char err[320];
  for (size_t i = 0; i < sizeof(WRITTEN_BEFORE) / sizeof(*WRITTEN_BEFORE); i++) {
    const char *t = WRITTEN_BEFORE[i];
    assert_int_equal(agent_state_decode(t, strlen(t), &st, err, sizeof(err)), 0);
    char *again = agent_state_encode(&st);
    assert_non_null(again);
    assert_string_equal(again, t);
    free(again);
    agent_state_free(&st);
  }
  /* The first one, field by field. */
  assert_int_equal(agent_state_decode(WRITTEN_BEFORE[0], strlen(WRITTEN_BEFORE[0]), &st, err,
                                      sizeof(err)), 0);
  const agentmsg_config_t *cf = st.config;
  assert_int_equal(st.node_id, 7);
  assert_string_equal(st.node_name, "region \xc3\xa9");
  assert_int_equal(st.node_epoch, 3);
  assert_int_equal(st.saved_at, 1700000000);
  assert_true(cf->generation == 4294967299ull);
  assert_int_equal(cf->parent_id, 3);
  assert_string_equal(cf->parent_name, "hq");
  assert_int_equal(cf->parent_epoch, 2);
  assert_int_equal(cf->nchildren, 2);
  assert_int_equal(cf->children[1].id, 11);
  assert_string_equal(cf->children[1].name, "edge-b");
  assert_int_equal(cf->children[1].epoch, 5);
  assert_true(cf->rules.has_relayapi);
  assert_int_equal(cf->rules.nallow, 2);
  assert_string_equal(cf->rules.allow[1], "/x/");
  assert_int_equal(cf->rules.ndeny, 1);
  assert_string_equal(cf->rules.deny[0], "/api/admin/");
  assert_int_equal(cf->rules.npull, 2);
  assert_string_equal(cf->rules.pull[1].pattern, "^vod/(.*)");
  assert_string_equal(cf->rules.pull[1].target, "rtmp://h/$1");
  assert_true(cf->rules.has_autopush);
  assert_false(cf->rules.autopush);
  agent_state_free(&st);
}

static void test_truncated_everywhere(void **state) {
  (void)state;
  agent_state_t st;
  char err[320];
  for (size_t n = 0; n < strlen(GOOD); n++)
    assert_int_equal(agent_state_decode(GOOD, n, &st, err, sizeof(err)), -1);
}

static void test_refusals(void **state) {
  (void)state;
  struct {
    const char *from, *to, *want;
  } cases[] = {
      {"\"version\":1", "\"version\":0", "format version 0"},
      {"\"version\":1", "\"version\":2", "format version 2"},
      {"\"format\":\"cascade-agent-state\"", "\"format\":\"other\"", "'format'"},
      {"\"format\":\"cascade-agent-state\",", "", "'format'"},
      {"\"id\":7", "\"id\":0", "'id'"},
      {"\"id\":7", "\"id\":\"7\"", "'id'"},
      {"\"name\":\"region\"", "\"name\":\"\"", "'name': empty"},
      {"\"name\":\"region\"", "\"name\":\"re\\u0000gion\"", "not allowed"},
      {"\"name\":\"region\"", "\"name\":\"re\\ngion\"", "control character"},
      {"\"generation\":12", "\"generation\":0", "'generation'"},
      {"\"generation\":12", "\"generation\":-1", "'generation'"},
      {"\"parent\":{", "\"parent\":[{", "not JSON"},
      {"\"parent\":{\"id\":3", "\"parent\":{\"id\":7", "its own parent"},
      {"{\"id\":9,", "{\"id\":7,", "its own child"},
      {"{\"id\":9,", "{\"id\":3,", "also the parent"},
      {"\"children\":[{\"id\":9,\"name\":\"edge\",\"epoch\":2}]",
       "\"children\":[{\"id\":9,\"name\":\"edge\",\"epoch\":2},{\"id\":9,\"name\":\"x\",\"epoch\":2}]",
       "a node twice"},
      {"\"children\":[", "\"children\":[1,", "'children'"},
      {"\"autopush\":true", "\"autopush\":1", "'autopush'"},
      {"\"target\":\"m7s://$0\"", "\"target\":7", "'target'"},
      {"\"rules\":{", "\"rules\":[{", "not JSON"},
      {"\"ca_sha256\":\"AB:CD\",", "", "'ca_sha256'"},
      {"\"node\":{\"id\":7", "\"node\":{\"id\":7,\"id\":8", "duplicate"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
    char *t = good_with(cases[i].from, cases[i].to);
    expect_bad(t, cases[i].want);
    free(t);
  }
  expect_bad("", "not JSON");
  expect_bad("\x00\x01garbage", "not JSON");
  expect_bad("[1,2]", "not a JSON object");
  expect_bad("{\"format\":\"cascade-agent-state\",\"version\":1}", "'node'");

  /* Bounds: a string over 4096 bytes, more than 10000 children. */
  char *big = malloc(5000);
  assert_non_null(big);
  memset(big, 'a', 4097);
  big[4097] = '\0';
  char *name = NULL;
  assert_true(asprintf(&name, "\"name\":\"%s\"", big) > 0);
  char *t = good_with("\"name\":\"region\"", name);
  expect_bad(t, "too long");
  free(t);
  free(name);
  free(big);
  size_t cap = 10001 * 40 + 64, o = 0;
  char *kids = malloc(cap);
  assert_non_null(kids);
  o += (size_t)snprintf(kids, cap, "\"children\":[");
  for (int i = 0; i < 10001; i++)
    o += (size_t)snprintf(kids + o, cap - o, "%s{\"id\":%d,\"name\":\"n\",\"epoch\":0}", i ? "," : "",
                          100 + i);
  snprintf(kids + o, cap - o, "]");
  t = good_with("\"children\":[{\"id\":9,\"name\":\"edge\",\"epoch\":2}]", kids);
  expect_bad(t, "at most 10000");
  free(t);
  free(kids);
}

typedef struct {
  char dir[64];
  char *ca1, *ca2;
} fix_t;

static char *slurp(const char *dir, const char *name) {
  char path[256], err[256];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  char *s = x509_read_file(path, X509_PEM_MAX, err, sizeof(err));
  assert_non_null(s);
  return s;
}

static int fix_setup(void **state) {
  fix_t *f = calloc(1, sizeof(*f));
  char err[256], sub[96];
  assert_non_null(f);
  snprintf(f->dir, sizeof(f->dir), "/tmp/test_agent_state.XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  snprintf(sub, sizeof(sub), "%s/a", f->dir);
  mkdir(sub, 0700);
  assert_int_equal(x509_ca_ensure(sub, err, sizeof(err)), 0);
  f->ca1 = slurp(sub, "ca.crt");
  snprintf(sub, sizeof(sub), "%s/b", f->dir);
  mkdir(sub, 0700);
  assert_int_equal(x509_ca_ensure(sub, err, sizeof(err)), 0);
  f->ca2 = slurp(sub, "ca.crt");
  *state = f;
  return 0;
}

static int fix_teardown(void **state) {
  fix_t *f = *state;
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
  assert_int_equal(system(cmd), 0);
  free(f->ca1);
  free(f->ca2);
  free(f);
  return 0;
}

static void test_check(void **state) {
  fix_t *f = *state;
  agent_state_t st;
  char err[320], fp[X509_FPR_LEN];
  assert_int_equal(agent_state_decode(GOOD, strlen(GOOD), &st, err, sizeof(err)), 0);
  assert_int_equal(x509_fingerprint(f->ca1, fp), 0);
  free(st.ca_sha256);
  st.ca_sha256 = strdup(fp);
  assert_int_equal(agent_state_check(&st, "region", f->ca1, err, sizeof(err)), 0);
  assert_int_equal(agent_state_check(&st, "edge", f->ca1, err, sizeof(err)), -1);
  assert_non_null(strstr(err, "belongs to node 'region'"));
  assert_int_equal(agent_state_check(&st, "region", f->ca2, err, sizeof(err)), -1);
  assert_non_null(strstr(err, "another CA"));
  assert_int_equal(agent_state_check(&st, "region", NULL, err, sizeof(err)), -1);
  free(st.ca_sha256);
  st.ca_sha256 = strdup("not a fingerprint");
  assert_int_equal(agent_state_check(&st, "region", f->ca1, err, sizeof(err)), -1);
  agent_state_free(&st);
}

static void test_save_load(void **state) {
  fix_t *f = *state;
  agent_state_t st, back;
  char err[320], path[128];
  struct stat sb;

  assert_int_equal(agent_state_load(f->dir, &back, err, sizeof(err)), 1); /* none yet */
  assert_int_equal(agent_state_decode(GOOD, strlen(GOOD), &st, err, sizeof(err)), 0);
  assert_int_equal(agent_state_save(f->dir, &st), 0);
  snprintf(path, sizeof(path), "%s/%s", f->dir, AGENT_STATE_FILE);
  assert_int_equal(stat(path, &sb), 0);
  assert_int_equal(sb.st_mode & 0777, 0600);
  assert_int_equal(agent_state_load(f->dir, &back, err, sizeof(err)), 0);
  assert_int_equal(back.node_id, 7);
  assert_int_equal(back.config->generation, 12);
  agent_state_free(&back);
  /* Saving again replaces it; no temporary file is left behind. */
  st.config->generation = 13;
  assert_int_equal(agent_state_save(f->dir, &st), 0);
  assert_int_equal(agent_state_load(f->dir, &back, err, sizeof(err)), 0);
  assert_int_equal(back.config->generation, 13);
  agent_state_free(&back);
  char cmd[192];
  snprintf(cmd, sizeof(cmd), "test -z \"$(ls '%s' | grep tmp)\"", f->dir);
  assert_int_equal(system(cmd), 0);
  /* Truncated on disk: refused. */
  assert_int_equal(truncate(path, 40), 0);
  assert_int_equal(agent_state_load(f->dir, &back, err, sizeof(err)), -1);
  /* Too large: refused unread. */
  assert_int_equal(truncate(path, (off_t)AGENT_STATE_MAX_BYTES + 1), 0);
  assert_int_equal(agent_state_load(f->dir, &back, err, sizeof(err)), -1);
  assert_non_null(strstr(err, "larger than"));
  unlink(path);
  /* A directory that is not there: save fails with errno set. */
  assert_int_equal(agent_state_save("/nonexistent/dir", &st), -1);
  agent_state_free(&st);
}

/* The stream authorization (rules, keys, hooks) survives a round trip,
 * and a bad one is refused. */
static void test_streamauth(void **state) {
  (void)state;
  static const char KEY[] = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"; /* bytes 0..31 */
  char sa[1024];
  snprintf(sa, sizeof(sa),
           "\"autopush\":true,\"streamauth\":{\"rules\":[{\"pattern\":\"live/.*\",\"publish\":"
           "\"token\",\"play\":\"none\"},{\"pattern\":\"h/.*\",\"publish\":\"hook\",\"play\":"
           "\"hook\"}],\"keys\":[{\"id\":5,\"key\":\"%s\"}],\"hooks\":{\"on_publish\":"
           "\"http://127.0.0.1:9/p\",\"on_play\":\"\",\"on_stop\":\"\",\"on_unpublish\":\"\","
           "\"timeout_ms\":2000,\"cache_ms\":0,\"fail_open\":false}}", KEY);
  char *text = good_with("\"autopush\":true", sa);
  agent_state_t st, again;
  char err[320];
  assert_int_equal(agent_state_decode(text, strlen(text), &st, err, sizeof(err)), 0);
  const agentmsg_streamauth_t *a = &st.config->rules.streamauth;
  assert_true(st.config->rules.has_streamauth);
  assert_int_equal(a->nrules, 2);
  assert_string_equal(a->rules[0].pattern, "live/.*");
  assert_int_equal(a->rules[0].publish, AGENTMSG_AUTH_TOKEN);
  assert_int_equal(a->rules[0].play, AGENTMSG_AUTH_NONE);
  assert_int_equal(a->rules[1].play, AGENTMSG_AUTH_HOOK);
  assert_int_equal(a->nkeys, 1);
  assert_int_equal(a->keys[0].id, 5);
  assert_int_equal(a->keys[0].key[31], 31);
  assert_string_equal(a->hook_url[AGENTMSG_HOOK_PUBLISH], "http://127.0.0.1:9/p");
  assert_int_equal(a->hook_timeout_ms, 2000);
  char *out = agent_state_encode(&st);
  assert_non_null(strstr(out, KEY));
  assert_int_equal(agent_state_decode(out, strlen(out), &again, err, sizeof(err)), 0);
  assert_int_equal(again.config->rules.streamauth.nrules, 2);
  assert_int_equal(again.config->rules.streamauth.keys[0].key[7], 7);
  free(out);
  agent_state_free(&again);
  agent_state_free(&st);
  free(text);
  /* refusals */
  const char *bad[][2] = {
      {"\"publish\":\"token\"", "\"publish\":\"open\""},
      {"\"id\":5,", "\"id\":-1,"},
      {KEY, "short"},
      {"http://127.0.0.1:9/p", "ftp://x"},
      {"\"timeout_ms\":2000", "\"timeout_ms\":2000000"},
      {"\"fail_open\":false", "\"fail_open\":0"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char *t = good_with("\"autopush\":true", sa);
    char *p = strstr(t, bad[i][0]);
    assert_non_null(p);
    char *u = NULL;
    assert_true(asprintf(&u, "%.*s%s%s", (int)(p - t), t, bad[i][1], p + strlen(bad[i][0])) > 0);
    expect_bad(u, "");
    free(u);
    free(t);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_streamauth),
      cmocka_unit_test(test_written_before),
      cmocka_unit_test(test_truncated_everywhere),
      cmocka_unit_test(test_refusals),
      cmocka_unit_test_setup_teardown(test_check, fix_setup, fix_teardown),
      cmocka_unit_test_setup_teardown(test_save_load, fix_setup, fix_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
