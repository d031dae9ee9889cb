/* Unit tests for controller/ctl_config.c: the controller's defaults, a full
 * file, the environment overrides and each error an operator can meet, with
 * the exact "FILE:LINE:COL: key 'x.y': message" text. Files are real temp
 * files, so the error names the file the operator passed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ctl_config.h"

typedef struct {
  char path[64];
} tmpfile_t;

/* Writes |yaml| to a fresh /tmp file. */
static void tmp_write(tmpfile_t *t, const char *yaml) {
  strcpy(t->path, "/tmp/test_ctl_config.XXXXXX");
  int fd = mkstemp(t->path);
  assert_true(fd >= 0);
  size_t len = strlen(yaml);
  assert_int_equal(write(fd, yaml, len), (ssize_t)len);
  close(fd);
}

/* Each test starts from an environment without the overrides. */
static int clear_env(void **state) {
  (void)state;
  unsetenv("CASCADE_DB_DSN");
  unsetenv("CASCADE_ADMIN_TOKEN");
  return 0;
}

/* Loads |yaml|; expects success (caller frees |c|). */
static void load_ok(ctl_config_t *c, const char *yaml) {
  tmpfile_t t;
  char err[512] = "";
  tmp_write(&t, yaml);
  int rc = ctl_config_load(c, t.path, err, sizeof(err));
  unlink(t.path);
  if (rc != 0) fprintf(stderr, "load failed: %s\n", err);
  assert_int_equal(rc, 0);
}

/* Loads |yaml|; expects failure with exactly "<file>|suffix|", or exactly
 * |suffix| when |with_path| is 0 (an error about the environment). */
static void load_err_as(const char *yaml, int with_path, const char *suffix) {
  tmpfile_t t;
  ctl_config_t c;
  char err[512] = "", want[640];
  tmp_write(&t, yaml);
  memset(&c, 0x5a, sizeof(c));
  int rc = ctl_config_load(&c, t.path, err, sizeof(err));
  unlink(t.path);
  snprintf(want, sizeof(want), "%s%s", with_path ? t.path : "", suffix);
  if (rc != -1) {
    fprintf(stderr, "unexpectedly loaded:\n%s\n", yaml);
    ctl_config_free(&c);
    fail();
  }
  assert_string_equal(err, want);
  /* |c| is freed on error: all pointers cleared, nothing leaks (LSan). */
  assert_null(c.http_listenaddr);
  assert_null(c.db_dsn);
  assert_null(c.relay_allow.v);
  ctl_config_free(&c); /* and freeing again is harmless */
}

static void load_err(const char *yaml, const char *suffix) { load_err_as(yaml, 1, suffix); }

static void test_defaults(void **state) {
  (void)state;
  ctl_config_t c;
  load_ok(&c, "database:\n  dsn: \"host=/tmp dbname=cascade\"\n");
  assert_string_equal(c.http_listenaddr, "127.0.0.1:8080");
  assert_string_equal(c.http_tls_cert, "");
  assert_string_equal(c.http_tls_key, "");
  assert_int_equal(c.http_threads, 4);
  assert_int_equal(c.http_maxconns, 1024);
  assert_string_equal(c.db_dsn, "host=/tmp dbname=cascade");
  assert_int_equal(c.db_poolsize, 4);
  assert_int_equal(c.db_timeout_ms, 3000);
  assert_string_equal(c.admintoken, "");
  assert_int_equal(c.autoregister, 1);
  assert_int_equal(c.relay_allow.n, 0);
  assert_int_equal(c.relay_deny.n, 0);
  assert_int_equal(c.log_level, 1); /* "info" */
  ctl_config_free(&c);
  assert_null(c.http_listenaddr);
  assert_null(c.db_dsn);
}

static void test_full_file(void **state) {
  (void)state;
  ctl_config_t c;
  load_ok(&c,
          "# cascade-controller\n"
          "http:\n"
          "  listenaddr: \"[::]:9443\"\n"
          "  tls:\n"
          "    cert: /etc/cascade/tls.crt\n"
          "    key: /etc/cascade/tls.key\n"
          "  threads: 16\n"
          "  maxconnections: 65536\n"
          "database:\n"
          "  dsn: postgresql://cascade@db/cascade?sslmode=require\n"
          "  poolsize: 64\n"
          "  timeout: 100\n"
          "auth:\n"
          "  admintoken: 0123456789abcdef\n"
          "cascadeserver:\n"
          "  autoregister: false\n"
          "  relayapi:\n"
          "    allow: [/api/v1/nodes, \"/api/v1/streams\"]\n"
          "    deny:\n"
          "      - /api/v1/tokens\n"
          "log:\n"
          "  level: error\n");
  assert_string_equal(c.http_listenaddr, "[::]:9443");
  assert_string_equal(c.http_tls_cert, "/etc/cascade/tls.crt");
  assert_string_equal(c.http_tls_key, "/etc/cascade/tls.key");
  assert_int_equal(c.http_threads, 16);
  assert_int_equal(c.http_maxconns, 65536);
  assert_string_equal(c.db_dsn, "postgresql://cascade@db/cascade?sslmode=require");
  assert_int_equal(c.db_poolsize, 64);
  assert_int_equal(c.db_timeout_ms, 100);
  assert_string_equal(c.admintoken, "0123456789abcdef");
  assert_int_equal(c.autoregister, 0);
  assert_int_equal(c.relay_allow.n, 2);
  assert_string_equal(c.relay_allow.v[0], "/api/v1/nodes");
  assert_string_equal(c.relay_allow.v[1], "/api/v1/streams");
  assert_int_equal(c.relay_deny.n, 1);
  assert_string_equal(c.relay_deny.v[0], "/api/v1/tokens");
  assert_int_equal(c.log_level, 3);
  ctl_config_free(&c);
}

static void test_log_levels(void **state) {
  (void)state;
  const char *names[] = {"debug", "info", "warn", "error"};
  for (int i = 0; i < 4; i++) {
    char yaml[128];
    ctl_config_t c;
    snprintf(yaml, sizeof(yaml), "database: {dsn: x}\nlog: {level: %s}\n", names[i]);
    load_ok(&c, yaml);
    assert_int_equal(c.log_level, i);
    ctl_config_free(&c);
  }
}

static void test_env_overrides(void **state) {
  (void)state;
  ctl_config_t c;
  const char *yaml = "database:\n  dsn: from-file\nauth:\n  admintoken: file-token-0123456\n";

  setenv("CASCADE_DB_DSN", "host=env dbname=e", 1);
  setenv("CASCADE_ADMIN_TOKEN", "env-token-0123456789", 1);
  load_ok(&c, yaml);
  assert_string_equal(c.db_dsn, "host=env dbname=e");
  assert_string_equal(c.admintoken, "env-token-0123456789");
  ctl_config_free(&c);

  /* the environment alone satisfies the required dsn */
  load_ok(&c, "log:\n  level: warn\n");
  assert_string_equal(c.db_dsn, "host=env dbname=e");
  assert_int_equal(c.log_level, 2);
  ctl_config_free(&c);

  /* empty variables count as unset */
  setenv("CASCADE_DB_DSN", "", 1);
  setenv("CASCADE_ADMIN_TOKEN", "", 1);
  load_ok(&c, yaml);
  assert_string_equal(c.db_dsn, "from-file");
  assert_string_equal(c.admintoken, "file-token-0123456");
  ctl_config_free(&c);

  /* a short or long token from the environment is refused, naming the
   * variable (the file's own value was fine) */
  setenv("CASCADE_ADMIN_TOKEN", "0123456789abcde", 1);
  load_err_as(yaml, 0, "CASCADE_ADMIN_TOKEN: key 'auth.admintoken': must be between 16 and 128 bytes long");
  char *big = malloc(130);
  assert_non_null(big);
  memset(big, 't', 129);
  big[129] = '\0';
  setenv("CASCADE_ADMIN_TOKEN", big, 1);
  big[128] = '\0';
  load_err_as(yaml, 0, "CASCADE_ADMIN_TOKEN: key 'auth.admintoken': must be between 16 and 128 bytes long");
  setenv("CASCADE_ADMIN_TOKEN", big, 1);
  free(big);
  load_ok(&c, yaml);
  assert_int_equal(strlen(c.admintoken), 128);
  ctl_config_free(&c);
  unsetenv("CASCADE_DB_DSN");
  unsetenv("CASCADE_ADMIN_TOKEN");
}

static void test_missing_dsn(void **state) {
  (void)state;
  load_err("http:\n  threads: 2\n",
           ": key 'database.dsn': required (or set CASCADE_CONTROLLER_DATABASE_DSN or "
           "CASCADE_DB_DSN)");
  load_err("", ": key 'database.dsn': required (or set CASCADE_CONTROLLER_DATABASE_DSN or "
               "CASCADE_DB_DSN)");
  load_err("database:\n", ": key 'database.dsn': required (or set "
                         "CASCADE_CONTROLLER_DATABASE_DSN or CASCADE_DB_DSN)");
}

static void test_unknown_key(void **state) {
  (void)state;
  load_err("database:\n  dsn: x\n  pool_size: 8\n", ":3:3: key 'database.pool_size': unknown key");
  load_err("database:\n  dsn: x\nhttp:\n    listen: :80\n",
           ":4:5: key 'http.listen': unknown key");
  load_err("database:\n  dsn: x\nmetrics: {}\n", ":3:1: key 'metrics': unknown key");
}

static void test_poolsize_range(void **state) {
  (void)state;
  load_err("database:\n  dsn: x\n  poolsize: 0\n",
           ":3:13: key 'database.poolsize': must be between 1 and 64");
  load_err("database:\n  dsn: x\n  poolsize: 65\n",
           ":3:13: key 'database.poolsize': must be between 1 and 64");
  load_err("database:\n  dsn: x\n  timeout: 99\n",
           ":3:12: key 'database.timeout': must be between 100 and 60000");
  load_err("database: {dsn: x}\nhttp:\n  maxconnections: 65537\n",
           ":3:19: key 'http.maxconnections': must be between 1 and 65536");
  load_err("database: {dsn: x}\nhttp:\n  threads: 0\n",
           ":3:12: key 'http.threads': must be between 1 and 256");
}

static void test_wrong_types(void **state) {
  (void)state;
  load_err("database:\n  dsn: x\n  poolsize: four\n",
           ":3:13: key 'database.poolsize': expected a number");
  load_err("database:\n  dsn: x\n  poolsize: [4]\n",
           ":3:13: key 'database.poolsize': expected a number");
  load_err("database: {dsn: x}\ncascadeserver:\n  autoregister: maybe\n",
           ":3:17: key 'cascadeserver.autoregister': expected a boolean (true or false)");
}

static void test_bad_enum(void **state) {
  (void)state;
  load_err("database: {dsn: x}\nlog:\n  level: verbose\n",
           ":3:10: key 'log.level': expected one of: debug, info, warn, error");
  load_err("database: {dsn: x}\nlog:\n  level: INFO\n",
           ":3:10: key 'log.level': expected one of: debug, info, warn, error");
}

static void test_admintoken(void **state) {
  (void)state;
  ctl_config_t c;
  load_err("database: {dsn: x}\nauth:\n  admintoken: 0123456789abcde\n",
           ":3:15: key 'auth.admintoken': must be between 16 and 128 bytes long");
  load_ok(&c, "database: {dsn: x}\nauth:\n  admintoken: 0123456789abcdef\n");
  assert_string_equal(c.admintoken, "0123456789abcdef");
  ctl_config_free(&c);
  /* an empty token means no bootstrap token, not a short one */
  load_ok(&c, "database: {dsn: x}\nauth:\n  admintoken: \"\"\n");
  assert_string_equal(c.admintoken, "");
  ctl_config_free(&c);
  load_ok(&c, "database: {dsn: x}\nauth:\n  admintoken:\n");
  assert_string_equal(c.admintoken, "");
  ctl_config_free(&c);
}

static void test_tls_pair(void **state) {
  (void)state;
  load_err("database: {dsn: x}\nhttp:\n  tls:\n    cert: /a.crt\n",
           ": key 'http.tls': cert and key must be set together");
  load_err("database: {dsn: x}\nhttp:\n  tls:\n    key: /a.key\n",
           ": key 'http.tls': cert and key must be set together");
}

static void test_unreadable_file(void **state) {
  (void)state;
  ctl_config_t c;
  char err[512] = "";
  assert_int_equal(ctl_config_load(&c, "/tmp/test_ctl_config.does-not-exist", err, sizeof(err)),
                   -1);
  assert_string_equal(err, "/tmp/test_ctl_config.does-not-exist: No such file or directory");
  assert_null(c.db_dsn);
}

static void test_env_rule(void **state) {
  (void)state;
  ctl_config_t c;
  tmpfile_t t;
  char err[512] = "";
  char *envp[] = {"CASCADE_CONTROLLER_HTTP_THREADS=7",
                  "CASCADE_CONTROLLER_CASCADESERVER_RELAYAPI_ALLOW=/api/, /flv/",
                  "CASCADE_CONTROLLER_CONTROL_SESSIONLEASE=1m",
                  "CASCADE_REPLICA_ADDR=10.1.2.3:8080",
                  "CASCADE_AGENT_NODE_NAME=not-the-controllers", /* the agent's: ignored */
                  NULL};
  tmp_write(&t, "database: {dsn: from-file}\nhttp: {threads: 2}\n");
  int rc = ctl_config_load_env(&c, t.path, envp, err, sizeof(err));
  if (rc != 0) fail_msg("%s", err);
  assert_int_equal(c.http_threads, 7);
  assert_int_equal(c.relay_allow.n, 2);
  assert_string_equal(c.relay_allow.v[1], "/flv/");
  assert_int_equal(c.control_sessionlease_ms, 60000);
  assert_string_equal(c.http_replicaaddr, "10.1.2.3:8080");
  ctl_config_free(&c);
  char *bad[] = {"CASCADE_CONTROLLER_HTTP_THREAD=7", NULL};
  assert_int_equal(ctl_config_load_env(&c, t.path, bad, err, sizeof(err)), -1);
  assert_true(strncmp(err, "CASCADE_CONTROLLER_HTTP_THREAD: unknown configuration variable",
                      62) == 0);
  char *secret[] = {"CASCADE_CONTROLLER_AUTH_ADMINTOKEN=short-token", NULL};
  assert_int_equal(ctl_config_load_env(&c, t.path, secret, err, sizeof(err)), -1);
  assert_string_equal(err, "CASCADE_CONTROLLER_AUTH_ADMINTOKEN: key 'auth.admintoken': must be "
                           "between 16 and 128 bytes long");
  unlink(t.path);
  /* Every key has a variable of its own. */
  char a[128], b[128];
  for (size_t i = 0; ctl_config_table[i].name; i++) {
    assert_int_equal(cfg_env_name(CTL_ENV_PREFIX, ctl_config_table[i].name, a, sizeof(a)), 0);
    for (size_t j = 0; j < i; j++) {
      assert_int_equal(cfg_env_name(CTL_ENV_PREFIX, ctl_config_table[j].name, b, sizeof(b)), 0);
      assert_string_not_equal(a, b);
    }
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_defaults, clear_env),
      cmocka_unit_test_setup(test_full_file, clear_env),
      cmocka_unit_test_setup(test_log_levels, clear_env),
      cmocka_unit_test_setup(test_env_overrides, clear_env),
      cmocka_unit_test_setup_teardown(test_env_rule, clear_env, clear_env),
      cmocka_unit_test_setup(test_missing_dsn, clear_env),
      cmocka_unit_test_setup(test_unknown_key, clear_env),
      cmocka_unit_test_setup(test_poolsize_range, clear_env),
      cmocka_unit_test_setup(test_wrong_types, clear_env),
      cmocka_unit_test_setup(test_bad_enum, clear_env),
      cmocka_unit_test_setup(test_admintoken, clear_env),
      cmocka_unit_test_setup(test_tls_pair, clear_env),
      cmocka_unit_test_setup(test_unreadable_file, clear_env),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
