/* Unit tests for agent/agent_config.c and agent/agent_rules.c: defaults,
 * the seed alias of node.secret, the environment override, and the exact
 * errors an operator meets (bad pcre2 pattern, tls+tcp without a trust
 * anchor, both aliases set). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent_config.h"
#include "agent_rules.h"

static int clear_env(void **state) {
  (void)state;
  unsetenv("CASCADE_NODE_SECRET");
  return 0;
}

static void load_ok(agent_config_t *c, const char *yaml) {
  char err[512] = "";
  int rc = agent_config_load_buf(c, "agent.yaml", yaml, strlen(yaml), err, sizeof(err));
  if (rc != 0) fprintf(stderr, "load failed: %s\n", err);
  assert_int_equal(rc, 0);
}

static void load_err(const char *yaml, const char *want) {
  agent_config_t c;
  char err[512] = "";
  memset(&c, 0x5a, sizeof(c));
  int rc = agent_config_load_buf(&c, "agent.yaml", yaml, strlen(yaml), err, sizeof(err));
  assert_int_equal(rc, -1);
  assert_string_equal(err, want);
}

static void test_defaults(void **state) {
  agent_config_t c;
  char host[256] = "";
  (void)state;
  load_ok(&c, "node:\n  secret: s3cret-s3cret\ncontroller:\n  pin: \"sha256:00\"\n");
  gethostname(host, sizeof(host));
  host[64] = '\0';
  assert_string_equal(c.node_name, host);
  assert_string_equal(c.node_secret, "s3cret-s3cret");
  assert_string_equal(c.datadir, "/var/lib/cascade");
  assert_int_equal(c.ctl_urls.n, 1);
  assert_string_equal(c.ctl_urls.v[0], "tls+tcp://127.0.0.1:44945");
  assert_string_equal(c.ctl_servername, "cascade-controller");
  assert_int_equal(c.backoffmax_ms, 10000);
  assert_string_equal(c.http_listenaddr, ":8080");
  assert_string_equal(c.http_adminaddr, "127.0.0.1:8081"); /* the local API: loopback */
  assert_string_equal(c.quic_listenaddr, "");
  assert_int_equal(c.client_enable, 0);
  assert_string_equal(c.client_server, "");
  assert_int_equal(c.autopush, 0);
  assert_int_equal(c.relay_allow.n, 0);
  assert_int_equal(c.onsub_pull.n, 0);
  assert_int_equal(c.log_level, 1);
  agent_config_free(&c);
}

static void test_seed_alias(void **state) {
  agent_config_t c;
  (void)state;
  load_ok(&c, "node: {name: edge-a1}\ncontroller: {url: \"tcp://127.0.0.1:1\"}\n"
              "cascadeclient:\n  enable: true\n  secret: from-the-seed\n"
              "  server: 10.0.0.1:44944\n  autopush: true\n"
              "  relayapi: {allow: [\"/api/\"], deny: [\"/api/admin/\"]}\n"
              "  onsub: {pull: {\".*\": \"m7s://$0\"}}\n");
  assert_string_equal(c.node_name, "edge-a1");
  assert_string_equal(c.node_secret, "from-the-seed");
  assert_int_equal(c.client_enable, 1);
  assert_string_equal(c.client_server, "10.0.0.1:44944");
  assert_int_equal(c.relay_allow.n, 1);
  assert_string_equal(c.relay_deny.v[0], "/api/admin/");
  assert_int_equal(c.onsub_pull.n, 1);
  assert_string_equal(c.onsub_pull.vals[0], "m7s://$0");
  agent_config_free(&c);
}

static void test_alias_both_set(void **state) {
  agent_config_t c;
  char err[512] = "";
  const char *y = "node: {secret: aaaaaaaa}\ncascadeclient: {secret: bbbbbbbb}\n"
                  "controller: {url: \"tcp://h:1\"}\n";
  (void)state;
  assert_int_equal(agent_config_load_buf(&c, "agent.yaml", y, strlen(y), err, sizeof(err)), -1);
  assert_non_null(strstr(err, "both set"));
}

static void test_env_override(void **state) {
  agent_config_t c;
  (void)state;
  setenv("CASCADE_NODE_SECRET", "from-the-environment", 1);
  load_ok(&c, "node: {secret: from-the-file}\ncontroller: {url: \"tcp://h:1\"}\n");
  assert_string_equal(c.node_secret, "from-the-environment");
  agent_config_free(&c);
  /* The environment alone satisfies the requirement. */
  load_ok(&c, "controller: {url: \"tcp://h:1\"}\n");
  assert_string_equal(c.node_secret, "from-the-environment");
  agent_config_free(&c);
  setenv("CASCADE_NODE_SECRET", "short", 1);
  load_err("controller: {url: \"tcp://h:1\"}\n",
           "CASCADE_NODE_SECRET: must be between 8 and 1024 bytes long");
}

static void test_secret_required(void **state) {
  (void)state;
  load_err("controller: {url: \"tcp://h:1\"}\n",
           "agent.yaml: key 'node.secret': required (or cascadeclient.secret, or set "
           "CASCADE_NODE_SECRET)");
}

static void test_bad_pattern(void **state) {
  (void)state;
  load_err("node: {secret: aaaaaaaa}\ncontroller: {url: \"tcp://h:1\"}\n"
           "cascadeclient: {onsub: {pull: {\"live/(.*\": \"m7s://$0\"}}}\n",
           "agent.yaml: key 'cascadeclient.onsub.pull': pattern 'live/(.*': missing closing "
           "parenthesis at offset 8");
}

static void test_tls_needs_anchor(void **state) {
  (void)state;
  load_err("node: {secret: aaaaaaaa}\ncontroller: {url: \"tls+tcp://c:44945\"}\n",
           "agent.yaml: key 'controller.url': a tls+tcp:// controller needs controller.ca or "
           "controller.pin (the agent never talks to an unverified controller)");
  load_err("node: {secret: aaaaaaaa}\ncontroller: {url: \"http://c:44945\"}\n",
           "agent.yaml:2:19: key 'controller.url': 'http://c:44945' must start with tls+tcp:// "
           "or tcp://");
  /* One tls+tcp:// entry of several needs the anchor too. */
  load_err("node: {secret: aaaaaaaa}\ncontroller: {url: \"tcp://a:1,tls+tcp://c:44945\"}\n",
           "agent.yaml: key 'controller.url': a tls+tcp:// controller needs controller.ca or "
           "controller.pin (the agent never talks to an unverified controller)");
}

static void test_url_list(void **state) {
  (void)state;
  agent_config_t c;
  load_ok(&c, "node: {secret: aaaaaaaa}\ncontroller:\n  url:\n    - tcp://a:1\n    - tcp://b:2\n");
  assert_int_equal(c.ctl_urls.n, 2);
  assert_string_equal(c.ctl_urls.v[1], "tcp://b:2");
  agent_config_free(&c);
  load_ok(&c, "node: {secret: aaaaaaaa}\ncontroller: {url: \"tcp://a:1, tcp://b:2,tcp://c:3\"}\n");
  assert_int_equal(c.ctl_urls.n, 3);
  assert_string_equal(c.ctl_urls.v[0], "tcp://a:1");
  assert_string_equal(c.ctl_urls.v[2], "tcp://c:3");
  agent_config_free(&c);
  load_err("node: {secret: aaaaaaaa}\ncontroller:\n  url:\n    - tcp://a:1\n    - udp://b:2\n",
           "agent.yaml:5:7: key 'controller.url': 'udp://b:2' must start with tls+tcp:// or "
           "tcp://");
  load_err("node: {secret: aaaaaaaa}\ncontroller: {url: \"tcp://a:1,tcp://a:1\"}\n",
           "agent.yaml: key 'controller.url': 'tcp://a:1' is listed twice");
  load_err("node: {secret: aaaaaaaa}\ncontroller: {url: []}\n",
           "agent.yaml: key 'controller.url': needs 1 to 16 URLs, not 0");
  char yaml[1024] = "node: {secret: aaaaaaaa}\ncontroller: {url: \"";
  for (int i = 0; i < 17; i++)
    snprintf(yaml + strlen(yaml), sizeof(yaml) - strlen(yaml), "%stcp://h:%d", i ? "," : "", i + 1);
  strcat(yaml, "\"}\n");
  load_err(yaml, "agent.yaml: key 'controller.url': needs 1 to 16 URLs, not 17");
}

static void test_backoff_bounds(void **state) {
  (void)state;
  load_err("node: {secret: aaaaaaaa}\ncontroller: {url: \"tcp://h:1\", backoffmax: 10}\n",
           "agent.yaml:2:44: key 'controller.backoffmax': must be between 1000 and 300000");
}

static void test_udp_payload_bounds(void **state) {
  (void)state;
  load_err("node: {secret: aaaaaaaa}\ncontroller: {url: \"tcp://h:1\"}\n"
           "quic: {maxudppayload: 500}\n",
           "agent.yaml: key 'quic.maxudppayload': must be 0 (automatic) or 1200..16000");
  load_err("node: {secret: aaaaaaaa}\ncontroller: {url: \"tcp://h:1\"}\n"
           "quic: {maxudppayload: 65000}\n",
           "agent.yaml:3:23: key 'quic.maxudppayload': must be between 0 and 16000");
  agent_config_t c;
  load_ok(&c, "node: {secret: aaaaaaaa}\ncontroller: {url: \"tcp://h:1\"}\n"
              "quic: {maxudppayload: 8952}\n");
  assert_int_equal(c.quic_maxudppayload, 8952);
  agent_config_free(&c);
}

/* The local API's listener: loopback unless set, off when empty, never the
 * public address. */
static void test_adminaddr(void **state) {
  agent_config_t c;
  (void)state;
  load_ok(&c, "node: {secret: aaaaaaaa}\ncontroller: {url: \"tcp://h:1\"}\n"
              "http: {adminaddr: \"\"}\n");
  assert_string_equal(c.http_adminaddr, "");
  agent_config_free(&c);
  load_ok(&c, "node: {secret: aaaaaaaa}\ncontroller: {url: \"tcp://h:1\"}\n"
              "http: {listenaddr: \":80\", adminaddr: \"[::1]:9000\"}\n");
  assert_string_equal(c.http_adminaddr, "[::1]:9000");
  agent_config_free(&c);
  load_err("node: {secret: aaaaaaaa}\ncontroller: {url: \"tcp://h:1\"}\n"
           "http: {listenaddr: \"127.0.0.1:8080\", adminaddr: \"127.0.0.1:8080\"}\n",
           "agent.yaml: key 'http.adminaddr': must differ from http.listenaddr (the node's own "
           "API is never served on the public port)");
  load_err("node: {secret: aaaaaaaa}\ncontroller: {url: \"tcp://h:1\"}\n"
           "http: {adminaddr: [1]}\n",
           "agent.yaml:3:19: key 'http.adminaddr': expected a string");
}

/* The controller's rules replace the file's field by field. */
static void test_rules_merge(void **state) {
  agent_config_t c;
  agent_rules_t r;
  char err[256];
  (void)state;
  load_ok(&c, "node: {secret: aaaaaaaa}\ncontroller: {url: \"tcp://h:1\"}\n"
              "cascadeclient: {autopush: true, relayapi: {allow: [\"/api/\"]},"
              " onsub: {pull: {\"^live/.*\": \"m7s://$0\"}}}\n");
  assert_int_equal(agent_rules_build(&c, NULL, &r, err, sizeof(err)), 0);
  assert_int_equal(r.autopush, 1);
  assert_int_equal(r.nallow, 1);
  assert_int_equal(r.npull, 1);
  assert_non_null(r.pull[0].re);
  agent_rules_free(&r);

  agentmsg_rules_t rules;
  agentmsg_pull_rule_t p1;
  memset(&rules, 0, sizeof(rules));
  rules.has_autopush = 1;
  rules.autopush = 0;
  assert_int_equal(agent_rules_build(&c, &rules, &r, err, sizeof(err)), 0);
  assert_int_equal(r.autopush, 0);
  assert_int_equal(r.nallow, 1);   /* absent relayapi: the file's */
  assert_int_equal(r.npull, 1);
  agent_rules_free(&r);

  /* A controller's empty pull list replaces the file's. */
  rules.has_pull = 1;
  assert_int_equal(agent_rules_build(&c, &rules, &r, err, sizeof(err)), 0);
  assert_int_equal(r.npull, 0);
  agent_rules_free(&r);

  p1.pattern = (char *)"([";
  p1.target = (char *)"x";
  rules.pull = &p1;
  rules.npull = 1;
  assert_int_equal(agent_rules_build(&c, &rules, &r, err, sizeof(err)), -1);
  assert_non_null(strstr(err, "onsub.pull pattern '(['"));
  assert_int_equal(r.npull, 0);
  agent_config_free(&c);
}

/* relayapi rules in the file and from the controller are plain prefixes:
 * a glob is refused with file, line and key, or keeps the running rules. */
static void test_relay_rule_globs(void **state) {
  agent_config_t c;
  agent_rules_t r;
  char err[512] = "";
  (void)state;
  const char *y = "node: {secret: aaaaaaaa}\ncontroller: {url: \"tcp://h:1\"}\n"
                  "cascadeclient:\n  relayapi:\n    deny: [/api/admin/, \"/api/cascade/*\"]\n";
  memset(&c, 0x5a, sizeof(c));
  assert_int_equal(agent_config_load_buf(&c, "agent.yaml", y, strlen(y), err, sizeof(err)), -1);
  if (strstr(err, "agent.yaml:5:") == NULL ||
      strstr(err, "key 'cascadeclient.relayapi.deny': rule '/api/cascade/*'") == NULL)
    fail_msg("%s", err);
  load_ok(&c, "node: {secret: aaaaaaaa}\ncontroller: {url: \"tcp://h:1\"}\n"
              "cascadeclient: {relayapi: {allow: [/api/]}}\n");
  agentmsg_rules_t rules, *ra = &rules;
  char *allow[2] = {"/api/", "/api/x?"}, *deny[1] = {"/api/%61dmin/"};
  memset(&rules, 0, sizeof(rules));
  rules.has_relayapi = 1;
  ra->allow = allow;
  ra->nallow = 2;
  assert_int_equal(agent_rules_build(&c, &rules, &r, err, sizeof(err)), -1);
  assert_non_null(strstr(err, "relayapi.allow rule '/api/x?'"));
  assert_int_equal(r.nallow, 0);
  ra->nallow = 1;
  ra->deny = deny;
  ra->ndeny = 1;
  assert_int_equal(agent_rules_build(&c, &rules, &r, err, sizeof(err)), -1);
  assert_non_null(strstr(err, "relayapi.deny rule '/api/%61dmin/'"));
  ra->ndeny = 0;
  assert_int_equal(agent_rules_build(&c, &rules, &r, err, sizeof(err)), 0);
  assert_int_equal(r.nallow, 1);
  agent_rules_free(&r);
  agent_config_free(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_defaults, clear_env),
      cmocka_unit_test_setup(test_url_list, clear_env),
      cmocka_unit_test_setup(test_seed_alias, clear_env),
      cmocka_unit_test_setup(test_alias_both_set, clear_env),
      cmocka_unit_test_setup_teardown(test_env_override, clear_env, clear_env),
      cmocka_unit_test_setup(test_secret_required, clear_env),
      cmocka_unit_test_setup(test_bad_pattern, clear_env),
      cmocka_unit_test_setup(test_tls_needs_anchor, clear_env),
      cmocka_unit_test_setup(test_backoff_bounds, clear_env),
      cmocka_unit_test_setup(test_udp_payload_bounds, clear_env),
      cmocka_unit_test_setup(test_rules_merge, clear_env),
      cmocka_unit_test_setup(test_relay_rule_globs, clear_env),
      cmocka_unit_test_setup(test_adminaddr, clear_env),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
