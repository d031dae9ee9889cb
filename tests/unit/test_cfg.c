/* Unit tests for common/cfg.c: defaults, every type's good and bad values
 * with the exact error text a user sees, aliases, unknown keys, refused
 * YAML features, and that |dst| stays freeable on every error (the suite
 * runs under ASan/LSan). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cfg.h"

typedef struct {
  char *name;
  int debug;
  long long port;
  long long workers;
  int level;
  char *cert;
  char *key;
  char *token;
  cfg_strlist_t paths;
  cfg_strmap_t headers;
  cfg_strlist_t peers;
} tcfg_t;

static const char *const levels[] = {"debug", "info", "warn", "error", NULL};

#define OFF(f) offsetof(tcfg_t, f)
static const cfg_key_t table[] = {
    {"name", CFG_STR, OFF(name), "edge", 1, 16, NULL, 0, "node name"},
    {"debug", CFG_BOOL, OFF(debug), "false", 0, 0, NULL, 0, "debug mode"},
    {"workers", CFG_INT, OFF(workers), "4", 1, 1024, NULL, 0, "worker threads"},
    {"http.port", CFG_INT, OFF(port), "8443", 1, 65535, NULL, 0, "listen port"},
    {"http.tls.cert", CFG_STR, OFF(cert), NULL, 0, 0, NULL, 0, "certificate | PEM"},
    {"http.tls.key", CFG_STR, OFF(key), NULL, 0, 0, NULL, CFG_REQUIRED, "private key"},
    {"http.paths", CFG_STRLIST, OFF(paths), "[\"/api/\", /live/]", 1, 8, NULL, 0, "paths"},
    {"http.headers", CFG_STRMAP, OFF(headers), NULL, 0, 16, NULL, 0, "extra headers"},
    {"log.level", CFG_ENUM, OFF(level), "info", 0, 0, levels, 0, "log level"},
    {"token", CFG_STR, OFF(token), NULL, 0, 0, NULL, CFG_SECRET | CFG_REQUIRED, "token"},
    {"seed_token", CFG_STR, OFF(token), NULL, 0, 0, NULL, CFG_SECRET, "alias of token"},
    {"peers", CFG_STRLIST, OFF(peers), NULL, 0, 0, NULL, 0, "peers"},
    {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL},
};

/* Loads |yaml| over fresh defaults as "t.yaml"; the caller frees. */
static int load(tcfg_t *c, const char *yaml, char *err, size_t errlen) {
  memset(c, 0xa5, sizeof(*c)); /* cfg_defaults must not read what was there */
  assert_int_equal(cfg_defaults(table, c), 0);
  return cfg_load_buf(table, c, "t.yaml", yaml, strlen(yaml), err, errlen);
}

/* Loads |yaml|, expects failure with exactly |want|, frees. */
static void expect_err(const char *yaml, const char *want) {
  tcfg_t c;
  char err[512];
  if (load(&c, yaml, err, sizeof(err)) != -1) {
    fprintf(stderr, "unexpectedly loaded:\n%s\n", yaml);
    fail();
  }
  assert_string_equal(err, want);
  cfg_free(table, &c);
}

static void expect_ok(tcfg_t *c, const char *yaml) {
  char err[512];
  int rc = load(c, yaml, err, sizeof(err));
  if (rc != 0) fprintf(stderr, "load failed: %s\n", err);
  assert_int_equal(rc, 0);
  assert_string_equal(err, "");
}

static void test_defaults(void **state) {
  (void)state;
  tcfg_t c;
  memset(&c, 0xa5, sizeof(c));
  assert_int_equal(cfg_defaults(table, &c), 0);
  assert_string_equal(c.name, "edge");
  assert_int_equal(c.debug, 0);
  assert_int_equal(c.workers, 4);
  assert_int_equal(c.port, 8443);
  assert_string_equal(c.cert, "");
  assert_string_equal(c.key, "");
  assert_string_equal(c.token, "");
  assert_int_equal(c.level, 1);
  assert_int_equal(c.paths.n, 2);
  assert_string_equal(c.paths.v[0], "/api/");
  assert_string_equal(c.paths.v[1], "/live/");
  assert_int_equal(c.headers.n, 0);
  assert_null(c.headers.keys);
  assert_int_equal(c.peers.n, 0);
  cfg_free(table, &c);
  assert_null(c.name);
  assert_null(c.paths.v);
  assert_int_equal(c.paths.n, 0);
  cfg_free(table, &c); /* twice is harmless: fields were zeroed */
  cfg_free(NULL, &c);
  cfg_free(table, NULL);
}

static void test_empty_inputs_keep_defaults(void **state) {
  (void)state;
  static const char *const docs[] = {"", "\n\n", "# only a comment\n", "~\n", "null",
                                     "---\n", "---\n...\n", "{}\n"};
  for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
    tcfg_t c;
    expect_ok(&c, docs[i]);
    assert_string_equal(c.name, "edge");
    assert_int_equal(c.port, 8443);
    assert_int_equal(c.paths.n, 2);
    cfg_free(table, &c);
  }
}

static void test_good_values(void **state) {
  (void)state;
  tcfg_t c;
  expect_ok(&c,
            "name: edge-a1\n"
            "debug: yes\n"
            "workers: 1024\n"
            "http:\n"
            "  port: 443\n"
            "  tls:\n"
            "    cert: /etc/cascade/cert.pem\n"
            "    key: \"/etc/cascade/key.pem\"\n"
            "  paths: [/a/, '/b/', \"/c/\"]\n"
            "  headers:\n"
            "    X-Zeta: one\n"
            "    X-Alpha: \"two: three\"\n"
            "    X-Empty:\n"
            "log:\n"
            "  level: error\n"
            "token: s3cret\n"
            "peers:\n"
            "  - 10.0.0.1:4433\n"
            "  - ~\n");
  assert_string_equal(c.name, "edge-a1");
  assert_int_equal(c.debug, 1);
  assert_int_equal(c.workers, 1024);
  assert_int_equal(c.port, 443);
  assert_string_equal(c.cert, "/etc/cascade/cert.pem");
  assert_string_equal(c.key, "/etc/cascade/key.pem");
  assert_int_equal(c.paths.n, 3);
  assert_string_equal(c.paths.v[0], "/a/");
  assert_string_equal(c.paths.v[1], "/b/");
  assert_string_equal(c.paths.v[2], "/c/");
  /* Order as written, not sorted. */
  assert_int_equal(c.headers.n, 3);
  assert_string_equal(c.headers.keys[0], "X-Zeta");
  assert_string_equal(c.headers.vals[0], "one");
  assert_string_equal(c.headers.keys[1], "X-Alpha");
  assert_string_equal(c.headers.vals[1], "two: three");
  assert_string_equal(c.headers.keys[2], "X-Empty");
  assert_string_equal(c.headers.vals[2], "");
  assert_int_equal(c.level, 3);
  assert_string_equal(c.token, "s3cret");
  assert_int_equal(c.peers.n, 2);
  assert_string_equal(c.peers.v[0], "10.0.0.1:4433");
  assert_string_equal(c.peers.v[1], "");
  cfg_free(table, &c);
}

static void test_flow_style(void **state) {
  (void)state;
  tcfg_t c;
  expect_ok(&c, "{http: {port: 80, headers: {a: b}, paths: []}, log: {level: debug}}");
  assert_int_equal(c.port, 80);
  assert_int_equal(c.headers.n, 1);
  assert_int_equal(c.paths.n, 0);
  assert_null(c.paths.v);
  assert_int_equal(c.level, 0);
  cfg_free(table, &c);
}

static void test_bool_spellings(void **state) {
  (void)state;
  static const struct {
    const char *text;
    int want;
  } cases[] = {{"true", 1}, {"True", 1}, {"TRUE", 1}, {"yes", 1}, {"YES", 1}, {"on", 1},
               {"On", 1},   {"false", 0}, {"FALSE", 0}, {"no", 0}, {"No", 0},  {"off", 0},
               {"OFF", 0},  {"\"true\"", 1}};
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char yaml[64];
    tcfg_t c;
    snprintf(yaml, sizeof(yaml), "debug: %s\n", cases[i].text);
    expect_ok(&c, yaml);
    c.debug = !cases[i].want; /* prove the load wrote it */
    cfg_free(table, &c);
    expect_ok(&c, yaml);
    assert_int_equal(c.debug, cases[i].want);
    cfg_free(table, &c);
  }
  expect_err("debug: 1\n", "t.yaml:1:8: key 'debug': expected a boolean (true or false)");
  expect_err("debug: maybe\n", "t.yaml:1:8: key 'debug': expected a boolean (true or false)");
  expect_err("debug: truex\n", "t.yaml:1:8: key 'debug': expected a boolean (true or false)");
  expect_err("debug:\n", "t.yaml:1:7: key 'debug': expected a boolean (true or false)");
  expect_err("debug: ~\n", "t.yaml:1:8: key 'debug': expected a boolean (true or false)");
  expect_err("debug: [true]\n", "t.yaml:1:8: key 'debug': expected a boolean (true or false)");
}

static void test_int(void **state) {
  (void)state;
  tcfg_t c;
  expect_ok(&c, "workers: 1\nhttp: {port: 65535}\n");
  assert_int_equal(c.workers, 1);
  assert_int_equal(c.port, 65535);
  cfg_free(table, &c);
  expect_ok(&c, "workers: \"17\"\n");
  assert_int_equal(c.workers, 17);
  cfg_free(table, &c);

  expect_err("workers: 0\n", "t.yaml:1:10: key 'workers': must be between 1 and 1024");
  expect_err("workers: 1025\n", "t.yaml:1:10: key 'workers': must be between 1 and 1024");
  expect_err("workers: -5\n", "t.yaml:1:10: key 'workers': must be between 1 and 1024");
  expect_err("workers: 99999999999999999999\n",
             "t.yaml:1:10: key 'workers': must be between 1 and 1024");
  expect_err("workers: -99999999999999999999\n",
             "t.yaml:1:10: key 'workers': must be between 1 and 1024");
  expect_err("http:\n  port: 0\n", "t.yaml:2:9: key 'http.port': must be between 1 and 65535");
  static const char *const junk[] = {"abc", "4x",   "+4",  "0x10", "010", "1.5",
                                     "1e3", "'4 '", "\"\"", "'-'",    "4_0", "\" 4\""};
  for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
    char yaml[64];
    snprintf(yaml, sizeof(yaml), "workers: %s\n", junk[i]);
    expect_err(yaml, "t.yaml:1:10: key 'workers': expected a number");
  }
  expect_err("workers:\n", "t.yaml:1:9: key 'workers': expected a number");
  expect_err("workers: null\n", "t.yaml:1:10: key 'workers': expected a number");
  expect_err("workers: {a: 1}\n", "t.yaml:1:10: key 'workers': expected a number");
}

typedef struct {
  long long wait;
} dcfg_t;

static const cfg_key_t dtable[] = {
    {"subscribe.waittimeout", CFG_DURATION, offsetof(dcfg_t, wait), "10s", 100, 3600000, NULL, 0,
     "wait"},
    {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL},
};

static void dur_expect(const char *yaml, long long want_ms, const char *want_err) {
  dcfg_t c;
  char err[256];
  assert_int_equal(cfg_defaults(dtable, &c), 0);
  int rc = cfg_load_buf(dtable, &c, "d.yaml", yaml, strlen(yaml), err, sizeof(err));
  if (want_err) {
    assert_int_equal(rc, -1);
    assert_string_equal(err, want_err);
  } else {
    if (rc != 0) fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(c.wait, want_ms);
  }
  cfg_free(dtable, &c);
}

static void test_duration(void **state) {
  (void)state;
  dcfg_t c;
  assert_int_equal(cfg_defaults(dtable, &c), 0);
  assert_int_equal(c.wait, 10000);
  dur_expect("subscribe: {waittimeout: 500ms}\n", 500, NULL);
  dur_expect("subscribe: {waittimeout: 3s}\n", 3000, NULL);
  dur_expect("subscribe: {waittimeout: 2m}\n", 120000, NULL);
  dur_expect("subscribe: {waittimeout: 1h}\n", 3600000, NULL);
  static const char *const junk[] = {"10", "s", "10 s", "1.5s", "-1s", "10sec", "1h30m", "010s"};
  for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
    char yaml[80];
    snprintf(yaml, sizeof(yaml), "subscribe: {waittimeout: %s}\n", junk[i]);
    dur_expect(yaml, 0,
               "d.yaml:1:26: key 'subscribe.waittimeout': expected a duration such as 500ms, "
               "10s, 5m or 1h");
  }
  dur_expect("subscribe: {waittimeout: 99ms}\n", 0,
             "d.yaml:1:26: key 'subscribe.waittimeout': must be between 100ms and 1h");
  dur_expect("subscribe: {waittimeout: 2h}\n", 0,
             "d.yaml:1:26: key 'subscribe.waittimeout': must be between 100ms and 1h");
  dur_expect("subscribe: {waittimeout: 99999999999999999999h}\n", 0,
             "d.yaml:1:26: key 'subscribe.waittimeout': must be between 100ms and 1h");
}

static void test_enum(void **state) {
  (void)state;
  tcfg_t c;
  for (int i = 0; levels[i] != NULL; i++) {
    char yaml[64];
    snprintf(yaml, sizeof(yaml), "log:\n  level: %s\n", levels[i]);
    expect_ok(&c, yaml);
    assert_int_equal(c.level, i);
    cfg_free(table, &c);
  }
  expect_err("log:\n  level: verbose\n",
             "t.yaml:2:10: key 'log.level': expected one of: debug, info, warn, error");
  expect_err("log:\n  level: INFO\n",
             "t.yaml:2:10: key 'log.level': expected one of: debug, info, warn, error");
  expect_err("log:\n  level:\n",
             "t.yaml:2:9: key 'log.level': expected one of: debug, info, warn, error");
  expect_err("log:\n  level: [info]\n",
             "t.yaml:2:10: key 'log.level': expected one of: debug, info, warn, error");
}

static void test_str(void **state) {
  (void)state;
  tcfg_t c;
  char yaml[128];

  /* Null means empty; the old (default) value is replaced, not leaked. */
  expect_ok(&c, "http:\n  tls:\n    cert: ~\n    key:\n");
  assert_string_equal(c.cert, "");
  assert_string_equal(c.key, "");
  cfg_free(table, &c);
  expect_ok(&c, "name: \"null\"\n");
  assert_string_equal(c.name, "null");
  cfg_free(table, &c);
  expect_ok(&c, "name: 1234567890123456\n");
  assert_string_equal(c.name, "1234567890123456");
  cfg_free(table, &c);

  expect_err("name: 12345678901234567\n",
             "t.yaml:1:7: key 'name': must be between 1 and 16 bytes long");
  expect_err("name: ''\n", "t.yaml:1:7: key 'name': must be between 1 and 16 bytes long");
  expect_err("name:\n", "t.yaml:1:6: key 'name': must be between 1 and 16 bytes long");
  expect_err("name: \"a\\tb\"\n", "t.yaml:1:7: key 'name': control characters are not allowed");
  expect_err("name: \"a\\0b\"\n", "t.yaml:1:7: key 'name': control characters are not allowed");
  expect_err("name: \"a\\x7fb\"\n",
             "t.yaml:1:7: key 'name': control characters are not allowed");
  expect_err("name: \"a\\nb\"\n", "t.yaml:1:7: key 'name': control characters are not allowed");
  expect_err("name: [a]\n", "t.yaml:1:7: key 'name': expected a string");
  expect_err("name:\n  first: a\n", "t.yaml:2:3: key 'name': expected a string");

  /* max 0 means 4096 bytes. */
  char *big = malloc(4200);
  assert_non_null(big);
  memcpy(big, "http:\n  tls:\n    cert: ", 23);
  memset(big + 23, 'x', 4096);
  strcpy(big + 23 + 4096, "\n");
  expect_ok(&c, big);
  assert_int_equal(strlen(c.cert), 4096);
  cfg_free(table, &c);
  strcpy(big + 23 + 4096, "x\n");
  expect_err(big, "t.yaml:3:11: key 'http.tls.cert': must be at most 4096 bytes long");
  free(big);

  snprintf(yaml, sizeof(yaml), "token: \"\\t\"\n");
  expect_err(yaml, "t.yaml:1:8: key 'token': control characters are not allowed");
}

static void test_strlist(void **state) {
  (void)state;
  tcfg_t c;
  expect_ok(&c, "http:\n  paths:\n");
  assert_int_equal(c.paths.n, 0);
  cfg_free(table, &c);
  expect_ok(&c, "http:\n  paths: ~\n");
  assert_int_equal(c.paths.n, 0);
  cfg_free(table, &c);

  expect_err("http:\n  paths: /api/\n", "t.yaml:2:10: key 'http.paths': expected a list of strings");
  expect_err("http:\n  paths: {a: b}\n",
             "t.yaml:2:10: key 'http.paths': expected a list of strings");
  expect_err("http:\n  paths:\n    - /a/\n    - [x]\n",
             "t.yaml:4:7: key 'http.paths': expected a string");
  expect_err("http:\n  paths: [/a/, \"\"]\n",
             "t.yaml:2:16: key 'http.paths': must be between 1 and 8 bytes long");
  expect_err("http:\n  paths: [/a/, ~]\n",
             "t.yaml:2:16: key 'http.paths': must be between 1 and 8 bytes long");
  expect_err("http:\n  paths: [/a/, /abcdefgh/]\n",
             "t.yaml:2:16: key 'http.paths': must be between 1 and 8 bytes long");
  expect_err("peers: [\"a\\x01\"]\n", "t.yaml:1:9: key 'peers': control characters are not allowed");

  /* 1024 items are fine, 1025 are not. */
  size_t cap = 16 + 1025 * 3;
  char *yaml = malloc(cap);
  assert_non_null(yaml);
  strcpy(yaml, "peers: [");
  for (int i = 0; i < 1024; i++) strcat(yaml, i ? ",a" : "a");
  strcat(yaml, "]");
  expect_ok(&c, yaml);
  assert_int_equal(c.peers.n, 1024);
  cfg_free(table, &c);
  yaml[strlen(yaml) - 1] = '\0';
  strcat(yaml, ",a]");
  expect_err(yaml, "t.yaml:1:8: key 'peers': more than 1024 items");
  free(yaml);
}

static void test_strmap(void **state) {
  (void)state;
  tcfg_t c;
  expect_ok(&c, "http:\n  headers: ~\n");
  assert_int_equal(c.headers.n, 0);
  cfg_free(table, &c);
  expect_ok(&c, "http:\n  headers: {}\n");
  assert_int_equal(c.headers.n, 0);
  cfg_free(table, &c);

  expect_err("http:\n  headers: [a]\n",
             "t.yaml:2:12: key 'http.headers': expected a mapping of strings to strings");
  expect_err("http:\n  headers: a\n",
             "t.yaml:2:12: key 'http.headers': expected a mapping of strings to strings");
  expect_err("http:\n  headers:\n    a: 1\n    b: 2\n    a: 3\n",
             "t.yaml:5:5: key 'http.headers': duplicate key 'a'");
  expect_err("http:\n  headers:\n    a: [1]\n", "t.yaml:3:8: key 'http.headers': expected a string");
  expect_err("http:\n  headers:\n    ? [k]\n    : v\n",
             "t.yaml:3:7: key 'http.headers': keys must be strings");
  expect_err("http:\n  headers:\n    ~: v\n", "t.yaml:3:5: key 'http.headers': keys must be strings");
  expect_err("http:\n  headers:\n    a: \"x\\ty\"\n",
             "t.yaml:3:8: key 'http.headers': control characters are not allowed");
  expect_err("http:\n  headers:\n    a: 12345678901234567\n",
             "t.yaml:3:8: key 'http.headers': must be at most 16 bytes long");
  expect_err("http:\n  headers:\n    abcdefghijklmnopq: 1\n",
             "t.yaml:3:5: key 'http.headers': must be at most 16 bytes long");

  size_t cap = 32 + 1025 * 16;
  char *yaml = malloc(cap);
  assert_non_null(yaml);
  size_t o = (size_t)snprintf(yaml, cap, "http:\n  headers:\n");
  for (int i = 0; i < 1025; i++) o += (size_t)snprintf(yaml + o, cap - o, "    k%d: v\n", i);
  expect_err(yaml, "t.yaml:3:5: key 'http.headers': more than 1024 entries");
  free(yaml);
}

static void test_sections(void **state) {
  (void)state;
  tcfg_t c;
  expect_ok(&c, "http:\nlog: ~\n");
  assert_int_equal(c.port, 8443);
  cfg_free(table, &c);
  expect_ok(&c, "http:\n  tls:\n  port: 1\n");
  assert_int_equal(c.port, 1);
  cfg_free(table, &c);
  expect_err("http: 5\n", "t.yaml:1:7: key 'http': expected a mapping");
  expect_err("http:\n  tls: [a]\n", "t.yaml:2:8: key 'http.tls': expected a mapping");
  expect_err("[a, b]\n", "t.yaml:1:1: the top level must be a mapping");
  expect_err("just text\n", "t.yaml:1:1: the top level must be a mapping");
}

static void test_unknown_keys(void **state) {
  (void)state;
  expect_err("name: a\nbogus: 1\n", "t.yaml:2:1: key 'bogus': unknown key");
  expect_err("http:\n  tls:\n    certs: x\n", "t.yaml:3:5: key 'http.tls.certs': unknown key");
  expect_err("http:\n  bogus:\n", "t.yaml:2:3: key 'http.bogus': unknown key");
  /* A prefix of a key is not a section unless followed by a dot. */
  expect_err("htt: {}\n", "t.yaml:1:1: key 'htt': unknown key");
  expect_err("http:\n  tls:\n    cert:\n      x: 1\n",
             "t.yaml:4:7: key 'http.tls.cert': expected a string");
  expect_err("http.port: 80\n",
             "t.yaml:1:1: key 'http.port': unknown key (write nested mappings, not dotted keys)");
  expect_err("? [a]\n: 1\n", "t.yaml:1:3: keys must be strings");
  expect_err("http:\n  ? {a: 1}\n  : 1\n", "t.yaml:2:5: key 'http': keys must be strings");
  /* File text in errors cannot inject lines into a log. */
  expect_err("\"a\\nb\": 1\n", "t.yaml:1:1: key 'a?b': unknown key");
  /* A key longer than any path is shown cut. */
  char yaml[400];
  memset(yaml, 'k', 300);
  strcpy(yaml + 300, ": 1\n");
  char want[300];
  snprintf(want, sizeof(want), "t.yaml:1:1: key '%.120s...': unknown key", yaml);
  expect_err(yaml, want);
}

static void test_duplicate_keys(void **state) {
  (void)state;
  expect_err("name: a\ndebug: true\nname: b\n", "t.yaml:3:1: key 'name': duplicate key");
  expect_err("http:\n  port: 1\n  port: 2\n", "t.yaml:3:3: key 'http.port': duplicate key");
  /* A section given twice is a duplicate too, even with other keys inside. */
  expect_err("http:\n  port: 1\nhttp:\n  tls: {}\n", "t.yaml:3:1: key 'http': duplicate key");
  expect_err("{name: a, name: a}\n", "t.yaml:1:11: key 'name': duplicate key");
}

static void test_aliases(void **state) {
  (void)state;
  tcfg_t c;
  expect_ok(&c, "seed_token: abc\n");
  assert_string_equal(c.token, "abc");
  cfg_free(table, &c);
  expect_ok(&c, "token: xyz\n");
  assert_string_equal(c.token, "xyz");
  cfg_free(table, &c);
  expect_err("token: a\nname: n\nseed_token: b\n",
             "t.yaml:3:1: key 'token' and its alias 'seed_token' both set");
  expect_err("seed_token: a\ntoken: b\n",
             "t.yaml:2:1: key 'seed_token' and its alias 'token' both set");
  expect_err("seed_token: a\ntoken:\n",
             "t.yaml:2:1: key 'seed_token' and its alias 'token' both set");
}

static void test_required_not_enforced(void **state) {
  (void)state;
  tcfg_t c;
  /* token and http.tls.key are CFG_REQUIRED: the caller checks them after
   * environment overrides, so their absence is no load error. */
  expect_ok(&c, "name: a\n");
  assert_string_equal(c.token, "");
  assert_int_equal(cfg_set_str(&c.token, "from-env"), 0);
  assert_string_equal(c.token, "from-env");
  assert_int_equal(cfg_set_str(&c.token, NULL), 0);
  assert_string_equal(c.token, "");
  cfg_free(table, &c);
}

static void test_yaml_syntax_errors(void **state) {
  (void)state;
  expect_err("name: [a, b\n",
             "t.yaml:2:1: did not find expected ',' or ']'");
  expect_err("name: a\n  debug: b\n", "t.yaml:2:8: mapping values are not allowed in this context");
  expect_err("name: \"abc\n", "t.yaml:2:1: found unexpected end of stream");
  expect_err("name: a\n\tdebug: b\n",
             "t.yaml:2:1: found a tab character that violates indentation");
  /* Invalid UTF-8 is located from libyaml's byte offset. */
  expect_err("name: a\ndebug: \xff\n", "t.yaml:2:8: invalid leading UTF-8 octet");
  expect_err("---\nname: a\n---\nname: b\n", "t.yaml:3:1: only one document is allowed");
}

static void test_anchors_and_aliases_refused(void **state) {
  (void)state;
  expect_err("name: &n a\n", "t.yaml:1:7: anchors are not allowed");
  expect_err("name: *n\n", "t.yaml:1:7: aliases are not allowed");
  expect_err("peers: &p [a]\nhttp:\n  paths: *p\n", "t.yaml:1:8: anchors are not allowed");
  /* Billion laughs: refused before any node is built. */
  expect_err("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
             "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
             "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
             "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n",
             "t.yaml:1:4: anchors are not allowed");
}

static void test_limits(void **state) {
  (void)state;
  tcfg_t c;
  char err[256];

  /* 16 nested collections are parsed (and then rejected by the table),
   * 17 are refused by the parser pass. */
  expect_err("peers: [[[[[[[[[[[[[[[a]]]]]]]]]]]]]]]\n", "t.yaml:1:9: key 'peers': expected a string");
  expect_err("peers: [[[[[[[[[[[[[[[[a]]]]]]]]]]]]]]]]\n",
             "t.yaml:1:23: nesting is deeper than 16 levels");

  /* Exactly 1 MiB loads; one byte more is refused unread. */
  size_t mib = 1024 * 1024;
  char *buf = malloc(mib + 1);
  assert_non_null(buf);
  memset(buf, ' ', mib + 1);
  buf[0] = '#';
  buf[mib - 1] = '\n';
  memset(&c, 0, sizeof(c));
  assert_int_equal(cfg_defaults(table, &c), 0);
  assert_int_equal(cfg_load_buf(table, &c, "t.yaml", buf, mib, err, sizeof(err)), 0);
  assert_int_equal(cfg_load_buf(table, &c, "t.yaml", buf, mib + 1, err, sizeof(err)), -1);
  assert_string_equal(err, "t.yaml: larger than 1 MiB");
  assert_string_equal(c.name, "edge");
  cfg_free(table, &c);
  free(buf);

  /* Many nodes in little space are refused before the tree is built. */
  size_t n = 100001;
  buf = malloc(n * 2 + 16);
  assert_non_null(buf);
  strcpy(buf, "peers: [");
  size_t o = strlen(buf);
  for (size_t i = 0; i < n; i++) {
    buf[o++] = 'a';
    buf[o++] = ',';
  }
  buf[o - 1] = ']';
  buf[o] = '\0';
  memset(&c, 0, sizeof(c));
  assert_int_equal(cfg_defaults(table, &c), 0);
  assert_int_equal(cfg_load_buf(table, &c, "t.yaml", buf, o, err, sizeof(err)), -1);
  assert_string_equal(err, "t.yaml:1:200003: more than 100000 nodes");
  cfg_free(table, &c);
  free(buf);
}

static void test_partial_load_is_freeable(void **state) {
  (void)state;
  tcfg_t c;
  char err[256];
  /* Values before the error are loaded and owned by |c|; the failing list
   * is not half-applied. */
  assert_int_equal(load(&c,
                        "name: loaded\n"
                        "http:\n"
                        "  headers: {a: b, c: d}\n"
                        "  paths: [/x/, /y/, [bad]]\n",
                        err, sizeof(err)),
                   -1);
  assert_string_equal(err, "t.yaml:4:21: key 'http.paths': expected a string");
  assert_string_equal(c.name, "loaded");
  assert_int_equal(c.headers.n, 2);
  assert_int_equal(c.paths.n, 2);
  assert_string_equal(c.paths.v[0], "/api/");
  cfg_free(table, &c);

  /* A failing map keeps the old value whole. */
  assert_int_equal(load(&c, "http:\n  headers: {a: b}\n", err, sizeof(err)), 0);
  assert_int_equal(cfg_load_buf(table, &c, "u.yaml", "http: {headers: {x: y, x: z}}", 29, err,
                                sizeof(err)),
                   -1);
  assert_string_equal(err, "u.yaml:1:24: key 'http.headers': duplicate key 'x'");
  assert_int_equal(c.headers.n, 1);
  assert_string_equal(c.headers.keys[0], "a");
  /* Loading twice over the same struct replaces, it does not leak. */
  assert_int_equal(cfg_load_buf(table, &c, "u.yaml", "name: b\nhttp: {headers: {k: v}}", 31,
                                err, sizeof(err)),
                   0);
  assert_string_equal(c.name, "b");
  assert_string_equal(c.headers.keys[0], "k");
  cfg_free(table, &c);
}

static void test_err_buffer(void **state) {
  (void)state;
  tcfg_t c;
  char small[12];
  assert_int_equal(load(&c, "bogus: 1\n", small, sizeof(small)), -1);
  assert_string_equal(small, "t.yaml:1:1:");
  cfg_free(table, &c);
  assert_int_equal(load(&c, "bogus: 1\n", NULL, 0), -1);
  cfg_free(table, &c);
}

static void test_load_file(void **state) {
  (void)state;
  tcfg_t c;
  char err[512], path[] = "/tmp/test_cfg_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  const char *text = "name: from-file\nhttp:\n  port: 99\n  bogus: 1\n";
  ssize_t good = strstr(text, "  bogus") - text; /* the first three lines */
  assert_int_equal(write(fd, text, (size_t)good), good);
  close(fd);

  memset(&c, 0, sizeof(c));
  assert_int_equal(cfg_defaults(table, &c), 0);
  assert_int_equal(cfg_load_file(table, &c, path, err, sizeof(err)), 0);
  assert_string_equal(c.name, "from-file");
  cfg_free(table, &c);

  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  assert_int_equal(cfg_defaults(table, &c), 0);
  assert_int_equal(cfg_load_file(table, &c, path, err, sizeof(err)), -1);
  char want[600];
  snprintf(want, sizeof(want), "%s:4:3: key 'http.bogus': unknown key", path);
  assert_string_equal(err, want);
  cfg_free(table, &c);
  unlink(path);

  assert_int_equal(cfg_defaults(table, &c), 0);
  assert_int_equal(cfg_load_file(table, &c, "/nonexistent/cascade.yaml", err, sizeof(err)), -1);
  assert_string_equal(err, "/nonexistent/cascade.yaml: No such file or directory");
  assert_int_equal(cfg_load_file(table, &c, "/tmp", err, sizeof(err)), -1);
  assert_string_equal(err, "/tmp: Is a directory");
  assert_string_equal(c.name, "edge");
  cfg_free(table, &c);
}

static void test_bad_defaults(void **state) {
  (void)state;
  static const char *const two[] = {"a", "b", NULL};
  struct {
    char *s;
    long long i;
    int e;
    cfg_strlist_t l;
  } d;
  const cfg_key_t bad_int[] = {
      {"s", CFG_STR, offsetof(__typeof__(d), s), "x", 0, 0, NULL, 0, ""},
      {"i", CFG_INT, offsetof(__typeof__(d), i), "0", 1, 10, NULL, 0, ""},
      {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL}};
  const cfg_key_t bad_enum[] = {
      {"s", CFG_STR, offsetof(__typeof__(d), s), "x", 0, 0, NULL, 0, ""},
      {"e", CFG_ENUM, offsetof(__typeof__(d), e), "c", 0, 0, two, 0, ""},
      {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL}};
  const cfg_key_t bad_list[] = {
      {"s", CFG_STR, offsetof(__typeof__(d), s), "x", 0, 0, NULL, 0, ""},
      {"l", CFG_STRLIST, offsetof(__typeof__(d), l), "[a, [b]]", 0, 0, NULL, 0, ""},
      {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL}};
  const cfg_key_t bad_str[] = {
      {"l", CFG_STRLIST, offsetof(__typeof__(d), l), "[a]", 0, 0, NULL, 0, ""},
      {"s", CFG_STR, offsetof(__typeof__(d), s), "toolong", 0, 3, NULL, 0, ""},
      {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL}};
  const cfg_key_t bad_alias[] = {
      {"s", CFG_STR, offsetof(__typeof__(d), s), "x", 0, 0, NULL, 0, ""},
      {"t", CFG_INT, offsetof(__typeof__(d), s), "1", 0, 9, NULL, 0, ""},
      {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL}};
  const cfg_key_t *bad[] = {bad_int, bad_enum, bad_list, bad_str, bad_alias};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    memset(&d, 0, sizeof(d));
    assert_int_equal(cfg_defaults(bad[i], &d), -1);
    /* What was set before the bad default is freed: |d| is zeroed. */
    assert_null(d.s);
    assert_null(d.l.v);
    cfg_free(bad[i], &d);
  }
  const cfg_key_t good[] = {
      {"s", CFG_STR, offsetof(__typeof__(d), s), "0.0.0.0:443", 0, 0, NULL, 0, ""},
      {"e", CFG_ENUM, offsetof(__typeof__(d), e), NULL, 0, 0, two, 0, ""},
      {"i", CFG_INT, offsetof(__typeof__(d), i), NULL, 1, 10, NULL, 0, ""},
      {"l", CFG_STRLIST, offsetof(__typeof__(d), l), "", 0, 0, NULL, 0, ""},
      {"s2", CFG_STR, offsetof(__typeof__(d), s), "ignored: alias", 0, 0, NULL, 0, ""},
      {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL}};
  memset(&d, 0xa5, sizeof(d));
  assert_int_equal(cfg_defaults(good, &d), 0);
  assert_string_equal(d.s, "0.0.0.0:443"); /* literal text, first alias wins */
  assert_int_equal(d.e, 0);
  assert_int_equal(d.i, 0);
  assert_int_equal(d.l.n, 0);
  cfg_free(good, &d);
}

/* CFG_RELPATH_RULE: each entry must be a plain, normalised path prefix; the
 * error names the file, line, column, key and the rule. */
static void test_relpath_rules(void **state) {
  (void)state;
  struct {
    cfg_strlist_t l;
  } d;
  const cfg_key_t t[] = {
      {"relay.allow", CFG_STRLIST, offsetof(__typeof__(d), l), NULL, 1, 64, NULL,
       CFG_RELPATH_RULE, ""},
      {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL},
  };
  char err[512];
  const char *good = "relay:\n  allow: [/api/, /flv/live/x, /]\n";
  assert_int_equal(cfg_defaults(t, &d), 0);
  assert_int_equal(cfg_load_buf(t, &d, "r.yaml", good, strlen(good), err, sizeof(err)), 0);
  assert_int_equal(d.l.n, 3);
  cfg_free(t, &d);
  const char *bad[] = {"/api/cascade/*", "/api/?", "/api/[ab]", "/api/x]", "*", "api/",
                       "/api/%61dmin/", "/api//admin/", "/api/./x", "/api/../x", "/api/.",
                       "/api\\\\x"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
    char yaml[128], want[160];
    snprintf(yaml, sizeof(yaml), "relay:\n  allow:\n    - /ok/\n    - \"%s\"\n", bad[i]);
    assert_int_equal(cfg_defaults(t, &d), 0);
    assert_int_equal(cfg_load_buf(t, &d, "r.yaml", yaml, strlen(yaml), err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "r.yaml:4:7: key 'relay.allow': rule '");
    if (strncmp(err, want, strlen(want)) != 0) fail_msg("%s: %s", bad[i], err);
    cfg_free(t, &d);
  }
  /* The glob case names the rule and says why. */
  const char *glob = "relay:\n  allow: [/api/, /api/cascade/*]\n";
  assert_int_equal(cfg_defaults(t, &d), 0);
  assert_int_equal(cfg_load_buf(t, &d, "r.yaml", glob, strlen(glob), err, sizeof(err)), -1);
  if (strstr(err, "r.yaml:2:18: key 'relay.allow': rule '/api/cascade/*': '*'") == NULL ||
      strstr(err, "not wildcards") == NULL)
    fail_msg("%s", err);
  cfg_free(t, &d);
}

static void test_list_scalar(void **state) {
  (void)state;
  struct {
    cfg_strlist_t l;
  } d;
  static const char *const schemes[] = {"tls+tcp://", "tcp://", NULL};
  const cfg_key_t t[] = {
      {"ctl.url", CFG_STRLIST, offsetof(__typeof__(d), l), "[\"tcp://a:1\"]", 1, 32, schemes,
       CFG_LIST_SCALAR, ""},
      {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL},
  };
  char err[512];
  struct {
    const char *yaml, *want; /* want: the items joined by '|', or the error */
    int ok;
  } cases[] = {
      {"", "tcp://a:1", 1},
      {"ctl:\n  url: tcp://b:2\n", "tcp://b:2", 1},
      {"ctl:\n  url: \"tcp://b:2, tls+tcp://c:3 ,tcp://d:4\"\n", "tcp://b:2|tls+tcp://c:3|tcp://d:4", 1},
      {"ctl:\n  url: [tcp://b:2, tls+tcp://c:3]\n", "tcp://b:2|tls+tcp://c:3", 1},
      {"ctl:\n  url:\n    - tcp://b:2\n    - http://c:3\n",
       "r.yaml:4:7: key 'ctl.url': 'http://c:3' must start with tls+tcp:// or tcp://", 0},
      {"ctl:\n  url: \"tcp://b:2,,tcp://c:3\"\n",
       "r.yaml:2:8: key 'ctl.url': empty item in 'tcp://b:2,,tcp://c:3'", 0},
      {"ctl:\n  url: \"tcp://b:2,\"\n", "r.yaml:2:8: key 'ctl.url': empty item in 'tcp://b:2,'", 0},
      {"ctl:\n  url: udp://x\n", "r.yaml:2:8: key 'ctl.url': 'udp://x' must start with tls+tcp:// or tcp://", 0},
      {"ctl:\n  url: \"tcp://b:2,tcp://0123456789012345678901234567890\"\n",
       "r.yaml:2:8: key 'ctl.url': must be between 1 and 32 bytes long", 0},
      {"ctl:\n  url: ~\n", "", 1},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
    assert_int_equal(cfg_defaults(t, &d), 0);
    int rc = cfg_load_buf(t, &d, "r.yaml", cases[i].yaml, strlen(cases[i].yaml), err, sizeof(err));
    if (!cases[i].ok) {
      assert_int_equal(rc, -1);
      assert_string_equal(err, cases[i].want);
    } else {
      char got[256] = "";
      if (rc != 0) fail_msg("%s: %s", cases[i].yaml, err);
      for (size_t j = 0; j < d.l.n; j++) {
        if (j) strcat(got, "|");
        strcat(got, d.l.v[j]);
      }
      assert_string_equal(got, cases[i].want);
    }
    cfg_free(t, &d);
  }
}

static void test_markdown(void **state) {
  (void)state;
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  assert_non_null(f);
  cfg_print_markdown(table, NULL, f);
  fclose(f);
  assert_non_null(strstr(text, "| key | type | default | bounds | description |\n|---|---|---|---|---|\n"));
  assert_non_null(strstr(text, "| `name` | string | `edge` | 1..16 bytes | node name |\n"));
  assert_non_null(strstr(text, "| `http.port` | int | `8443` | 1..65535 | listen port |\n"));
  assert_non_null(strstr(text, "| `debug` | bool | `false` |  | debug mode |\n"));
  assert_non_null(strstr(text, "| `log.level` | enum | `info` | `debug`, `info`, `warn`, `error` | log level |\n"));
  assert_non_null(strstr(text, "| `http.tls.cert` | string |  | 0..4096 bytes | certificate \\| PEM |\n"));
  assert_non_null(strstr(text, "| `http.paths` | list of strings | `[\"/api/\", /live/]` | 1..8 bytes, at most 1024 entries | paths |\n"));
  assert_non_null(strstr(text, "| `token` | string |  | 0..4096 bytes | token Required. Secret. |\n"));
  /* One row per entry, aliases included. */
  int rows = 0;
  for (char *p = text; (p = strchr(p, '\n')) != NULL; p++) rows++;
  assert_int_equal(rows, 2 + 12);
  free(text);
}

/* ---- environment ---------------------------------------------------------- */

static const cfg_env_alias_t env_aliases[] = {{"OLD_TOKEN", "token"}, {NULL, NULL}};
static const cfg_env_t tenv = {"T_", env_aliases};

/* Loads |yaml| then |envp| over it; returns cfg_load_env's result. */
static int load_env(tcfg_t *c, const char *yaml, char *const *envp, char *err, size_t errlen) {
  assert_int_equal(load(c, yaml, err, errlen), 0);
  return cfg_load_env(table, c, &tenv, envp, err, errlen);
}

static void expect_env_err(char *const *envp, const char *want) {
  tcfg_t c;
  char err[512];
  assert_int_equal(load_env(&c, "name: file\n", envp, err, sizeof(err)), -1);
  assert_string_equal(err, want);
  cfg_free(table, &c);
}

static void test_env_names(void **state) {
  (void)state;
  char buf[64];
  assert_int_equal(cfg_env_name("T_", "http.tls.cert", buf, sizeof(buf)), 0);
  assert_string_equal(buf, "T_HTTP_TLS_CERT");
  assert_int_equal(cfg_env_name("CASCADE_AGENT_", "cascadeclient.server", buf, sizeof(buf)), 0);
  assert_string_equal(buf, "CASCADE_AGENT_CASCADECLIENT_SERVER");
  assert_int_equal(cfg_env_name("T_", "log.level", buf, 8), -1); /* does not fit */
}

static void test_env_overrides_file(void **state) {
  (void)state;
  tcfg_t c;
  char err[512];
  char *envp[] = {"PATH=/bin",         "T_NAME=from-env", "T_DEBUG=yes",
                  "T_HTTP_PORT=9000",  "T_LOG_LEVEL=warn", "T_HTTP_TLS_CERT=",
                  "T_HTTP_PATHS=/a/, /b/", "T_HTTP_HEADERS={x: \"1\", \"y z\": 2}",
                  "T_PEERS=[\"p,1\", p2]", "OTHER_NAME=x", "T", NULL};
  assert_int_equal(load_env(&c, "name: file\nhttp: {tls: {cert: keep}}\n", envp, err,
                            sizeof(err)), 0);
  assert_string_equal(c.name, "from-env");
  assert_int_equal(c.debug, 1);
  assert_int_equal(c.port, 9000);
  assert_int_equal(c.level, 2);
  assert_string_equal(c.cert, "keep"); /* empty: unset, the file's value stays */
  assert_int_equal(c.paths.n, 2);
  assert_string_equal(c.paths.v[0], "/a/");
  assert_string_equal(c.paths.v[1], "/b/");
  assert_int_equal(c.headers.n, 2);
  assert_string_equal(c.headers.keys[1], "y z");
  assert_string_equal(c.headers.vals[1], "2");
  assert_int_equal(c.peers.n, 2); /* a flow sequence keeps commas inside items */
  assert_string_equal(c.peers.v[0], "p,1");
  cfg_free(table, &c);

  /* Scalars are literal: no YAML quoting or flow syntax. */
  char *lit[] = {"T_NAME='q: {x}'", NULL};
  assert_int_equal(load_env(&c, "", lit, err, sizeof(err)), 0);
  assert_string_equal(c.name, "'q: {x}'");
  cfg_free(table, &c);

  /* [] and {} empty a list or map the file set. */
  char *empty[] = {"T_HTTP_PATHS=[]", "T_HTTP_HEADERS={}", NULL};
  assert_int_equal(load_env(&c, "http: {headers: {a: b}}\n", empty, err, sizeof(err)), 0);
  assert_int_equal(c.paths.n, 0);
  assert_int_equal(c.headers.n, 0);
  cfg_free(table, &c);

  /* An older name of a key; and a key and its alias agreeing. */
  char *old[] = {"OLD_TOKEN=s3cret-token", "T_SEED_TOKEN=s3cret-token", NULL};
  assert_int_equal(load_env(&c, "", old, err, sizeof(err)), 0);
  assert_string_equal(c.token, "s3cret-token");
  cfg_free(table, &c);
}

static void test_env_errors(void **state) {
  (void)state;
  char *unknown[] = {"T_NAMEX=1", NULL};
  expect_env_err(unknown, "T_NAMEX: unknown configuration variable (T_... names a key: T_ "
                          "followed by the key in upper case with '_' for '.'; see "
                          "--print-config-doc)");
  char *unknown_empty[] = {"T_HTTP=", NULL}; /* a section is not a key */
  expect_env_err(unknown_empty, "T_HTTP: unknown configuration variable (T_... names a key: T_ "
                                "followed by the key in upper case with '_' for '.'; see "
                                "--print-config-doc)");
  char *port[] = {"T_HTTP_PORT=70000", NULL};
  expect_env_err(port, "T_HTTP_PORT: key 'http.port': must be between 1 and 65535");
  char *notnum[] = {"T_WORKERS=4 ", NULL};
  expect_env_err(notnum, "T_WORKERS: key 'workers': expected a number");
  char *bool_[] = {"T_DEBUG=2", NULL};
  expect_env_err(bool_, "T_DEBUG: key 'debug': expected a boolean (true or false)");
  char *level[] = {"T_LOG_LEVEL=loud", NULL};
  expect_env_err(level, "T_LOG_LEVEL: key 'log.level': expected one of: debug, info, warn, error");
  char *name[] = {"T_NAME=far-too-long-for-a-name", NULL};
  expect_env_err(name, "T_NAME: key 'name': must be between 1 and 16 bytes long");
  char *item[] = {"T_HTTP_PATHS=/a/,,/b/", NULL};
  expect_env_err(item, "T_HTTP_PATHS: key 'http.paths': empty item in '/a/,,/b/'");
  char *map[] = {"T_HTTP_HEADERS=a=b", NULL};
  expect_env_err(map, "T_HTTP_HEADERS: key 'http.headers': expected a YAML flow mapping such as "
                      "{\"live/.*\": \"m7s://$0\"}");
  char *flow[] = {"T_HTTP_PATHS=[/a/, {x: y}]", NULL};
  expect_env_err(flow, "T_HTTP_PATHS: key 'http.paths': expected a string");
  char *yaml[] = {"T_HTTP_HEADERS={a: [}", NULL};
  tcfg_t c;
  char err[512];
  assert_int_equal(load_env(&c, "", yaml, err, sizeof(err)), -1);
  assert_true(strncmp(err, "T_HTTP_HEADERS: ", 16) == 0);
  cfg_free(table, &c);
  char *anchor[] = {"T_HTTP_PATHS=[&a x, *a]", NULL};
  assert_int_equal(load_env(&c, "", anchor, err, sizeof(err)), -1);
  assert_string_equal(err, "T_HTTP_PATHS: anchors are not allowed");
  cfg_free(table, &c);
  /* A key and its alias (or older name) disagreeing: which wins would be a guess. */
  char *both[] = {"T_TOKEN=one-secret", "OLD_TOKEN=another-secret", NULL};
  expect_env_err(both, "OLD_TOKEN: key 'token': also set, differently, by T_TOKEN; set only one");
  /* A secret's value is never quoted back. */
  char *secret[] = {"T_TOKEN=hunter2\x01", NULL};
  expect_env_err(secret, "T_TOKEN: key 'token': control characters are not allowed");
}

static void test_env_used(void **state) {
  (void)state;
  char buf[128];
  char *envp[] = {"T_NAME=a", "T_DEBUG=", "OLD_TOKEN=secret-value", "HOME=/", NULL};
  assert_int_equal(cfg_env_used(table, &tenv, envp, buf, sizeof(buf)), 2);
  assert_string_equal(buf, "T_NAME, OLD_TOKEN");
}

static void test_markdown_env(void **state) {
  (void)state;
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  assert_non_null(f);
  cfg_print_markdown(table, &tenv, f);
  fclose(f);
  assert_non_null(strstr(text, "| key | environment | type | default | bounds | description |\n"
                               "|---|---|---|---|---|---|\n"));
  assert_non_null(strstr(text, "| `http.port` | `T_HTTP_PORT` | int | `8443` | 1..65535 | "
                               "listen port |\n"));
  assert_non_null(strstr(text, "| `token` | `T_TOKEN` or `OLD_TOKEN` | string |"));
  free(text);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_empty_inputs_keep_defaults),
      cmocka_unit_test(test_good_values),
      cmocka_unit_test(test_flow_style),
      cmocka_unit_test(test_bool_spellings),
      cmocka_unit_test(test_int),
      cmocka_unit_test(test_duration),
      cmocka_unit_test(test_enum),
      cmocka_unit_test(test_str),
      cmocka_unit_test(test_strlist),
      cmocka_unit_test(test_strmap),
      cmocka_unit_test(test_sections),
      cmocka_unit_test(test_unknown_keys),
      cmocka_unit_test(test_duplicate_keys),
      cmocka_unit_test(test_aliases),
      cmocka_unit_test(test_required_not_enforced),
      cmocka_unit_test(test_yaml_syntax_errors),
      cmocka_unit_test(test_anchors_and_aliases_refused),
      cmocka_unit_test(test_limits),
      cmocka_unit_test(test_partial_load_is_freeable),
      cmocka_unit_test(test_err_buffer),
      cmocka_unit_test(test_load_file),
      cmocka_unit_test(test_bad_defaults),
      cmocka_unit_test(test_relpath_rules),
      cmocka_unit_test(test_list_scalar),
      cmocka_unit_test(test_markdown),
      cmocka_unit_test(test_env_names),
      cmocka_unit_test(test_env_overrides_file),
      cmocka_unit_test(test_env_errors),
      cmocka_unit_test(test_env_used),
      cmocka_unit_test(test_markdown_env),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
