/* Unit tests for agent/edgeauth.c: the verdicts. No policy yet refuses
 * (503) unless the local setting opens the action; the first matching
 * pattern decides, node rules before the deployment's; an unmatched path
 * needs a token; token outcomes (none, good, expired, another path, a play
 * token to publish, a rotated-out key, both keys during a rotation); hook
 * mode asks the hook client (the placeholder refuses: "no hook
 * configured"); a bad pattern leaves the previous policy in force. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <ev.h>

#include "edgeauth.h"

#define NOW 1800000000ull

static streamtoken_key k1 = {.id = 1}, k2 = {.id = 2};

static int decide(edgeauth_t *ea, int action, const char *path, const char *query,
                  int *status, const char **reason) {
  dp_admit_req r = {action, path, query, "rtmp", "127.0.0.1"};
  *status = 0;
  *reason = NULL;
  return edgeauth_decide(ea, &r, NOW, status, reason);
}

static char *tok_query(const streamtoken_key *k, int action, const char *path, uint64_t exp) {
  static char q[2][128];
  static int i;
  char t[STREAMTOKEN_LEN + 1];
  assert_int_equal(streamtoken_mint(k, action, path, exp, NULL, t, sizeof(t)), 0);
  i ^= 1;
  snprintf(q[i], sizeof(q[i]), "a=b&token=%s", t);
  return q[i];
}

static void test_no_policy(void **state) {
  (void)state;
  struct ev_loop *loop = ev_loop_new(0);
  edgeauth_t *ea = edgeauth_new(loop, "n1", EDGEAUTH_LOCAL_CONTROLLER, EDGEAUTH_LOCAL_NONE);
  int st;
  const char *why;
  assert_int_equal(decide(ea, DP_ADMIT_PUBLISH, "live/a", NULL, &st, &why), DP_ADMIT_DENY);
  assert_int_equal(st, 503);
  assert_string_equal(why, "no authorization policy yet");
  /* auth.play: none opens playing whatever the controller says */
  assert_int_equal(decide(ea, DP_ADMIT_PLAY, "live/a", NULL, &st, &why), DP_ADMIT_ALLOW);
  assert_false(edgeauth_has_policy(ea));
  edgeauth_free(ea);
  ev_loop_destroy(loop);
}

static void test_rules_and_tokens(void **state) {
  (void)state;
  struct ev_loop *loop = ev_loop_new(0);
  edgeauth_t *ea = edgeauth_new(loop, "n1", EDGEAUTH_LOCAL_CONTROLLER, EDGEAUTH_LOCAL_CONTROLLER);
  memset(k1.key, 1, sizeof(k1.key));
  memset(k2.key, 2, sizeof(k2.key));
  edgeauth_rule rules[] = {
      {"open/.*", EDGEAUTH_NONE, EDGEAUTH_NONE},    /* a node rule */
      {"live/.*", EDGEAUTH_TOKEN, EDGEAUTH_NONE},   /* the deployment's */
      {"open/x", EDGEAUTH_TOKEN, EDGEAUTH_TOKEN},   /* shadowed by the first */
      {"hooked/.*", EDGEAUTH_HOOK, EDGEAUTH_HOOK},
  };
  streamtoken_key keys[] = {k1};
  edgeauth_conf conf = {rules, 4, keys, 1, NULL};
  char err[200];
  assert_int_equal(edgeauth_configure(ea, &conf, err, sizeof(err)), 0);
  assert_true(edgeauth_has_policy(ea));
  assert_int_equal(edgeauth_mode_for(ea, DP_ADMIT_PUBLISH, "open/x"), EDGEAUTH_NONE);
  assert_int_equal(edgeauth_mode_for(ea, DP_ADMIT_PUBLISH, "live/a"), EDGEAUTH_TOKEN);
  assert_int_equal(edgeauth_mode_for(ea, DP_ADMIT_PLAY, "live/a"), EDGEAUTH_NONE);
  /* anchored: "olive/a" is not "live/.*"; unmatched: token */
  assert_int_equal(edgeauth_mode_for(ea, DP_ADMIT_PLAY, "olive/a"), EDGEAUTH_TOKEN);
  assert_int_equal(edgeauth_mode_for(ea, DP_ADMIT_PLAY, "other/a"), EDGEAUTH_TOKEN);
  int st;
  const char *why;
  assert_int_equal(decide(ea, DP_ADMIT_PUBLISH, "open/x", NULL, &st, &why), DP_ADMIT_ALLOW);
  assert_int_equal(decide(ea, DP_ADMIT_PLAY, "live/a", NULL, &st, &why), DP_ADMIT_ALLOW);
  /* token mode */
  assert_int_equal(decide(ea, DP_ADMIT_PUBLISH, "live/a", NULL, &st, &why), DP_ADMIT_DENY);
  assert_int_equal(st, 401);
  assert_string_equal(why, "token required");
  assert_int_equal(decide(ea, DP_ADMIT_PUBLISH, "live/a",
                          tok_query(&k1, STREAMTOKEN_PUBLISH, "live/a", NOW + 10), &st, &why),
                   DP_ADMIT_ALLOW);
  assert_int_equal(decide(ea, DP_ADMIT_PUBLISH, "live/a",
                          tok_query(&k1, STREAMTOKEN_PUBLISH, "live/a", NOW - 100), &st, &why),
                   DP_ADMIT_DENY);
  assert_int_equal(st, 401);
  assert_string_equal(why, "token expired");
  assert_int_equal(decide(ea, DP_ADMIT_PUBLISH, "live/a",
                          tok_query(&k1, STREAMTOKEN_PUBLISH, "live/b", NOW + 10), &st, &why),
                   DP_ADMIT_DENY);
  assert_int_equal(st, 403);
  assert_int_equal(decide(ea, DP_ADMIT_PUBLISH, "live/a",
                          tok_query(&k1, STREAMTOKEN_PLAY, "live/a", NOW + 10), &st, &why),
                   DP_ADMIT_DENY);
  assert_int_equal(st, 403);
  assert_string_equal(why, "token not valid for this action");
  /* k2 is not valid yet */
  assert_int_equal(decide(ea, DP_ADMIT_PUBLISH, "live/a",
                          tok_query(&k2, STREAMTOKEN_PUBLISH, "live/a", NOW + 10), &st, &why),
                   DP_ADMIT_DENY);
  assert_int_equal(st, 403);
  /* rotation: k2 current, k1 still valid; then k1 out */
  streamtoken_key both[] = {k2, k1};
  conf.keys = both;
  conf.nkeys = 2;
  assert_int_equal(edgeauth_configure(ea, &conf, err, sizeof(err)), 0);
  char *q1 = tok_query(&k1, STREAMTOKEN_PUBLISH, "live/a", NOW + 10);
  assert_int_equal(decide(ea, DP_ADMIT_PUBLISH, "live/a", q1, &st, &why), DP_ADMIT_ALLOW);
  assert_int_equal(decide(ea, DP_ADMIT_PUBLISH, "live/a",
                          tok_query(&k2, STREAMTOKEN_PUBLISH, "live/a", NOW + 10), &st, &why),
                   DP_ADMIT_ALLOW);
  conf.nkeys = 1;
  assert_int_equal(edgeauth_configure(ea, &conf, err, sizeof(err)), 0);
  q1 = tok_query(&k1, STREAMTOKEN_PUBLISH, "live/a", NOW + 10);
  assert_int_equal(decide(ea, DP_ADMIT_PUBLISH, "live/a", q1, &st, &why), DP_ADMIT_DENY);
  assert_string_equal(why, "token signed by an unknown key");
  /* hook mode: the verdict is the hook's */
  assert_int_equal(decide(ea, DP_ADMIT_PLAY, "hooked/a", NULL, &st, &why), DP_ADMIT_PENDING);
  dp_admit_req r = {DP_ADMIT_PLAY, "hooked/a", NULL, "httpflv", "127.0.0.1"};
  void *pending = NULL;
  st = 0;
  assert_int_equal(edgeauth_ops.check(ea, &r, NULL, NULL, &pending, &st, &why), DP_ADMIT_DENY);
  assert_int_equal(st, 403);
  assert_string_equal(why, "no hook configured");
  edgeauth_stats s;
  edgeauth_get_stats(ea, &s);
  assert_int_equal(s.refused, 1);
  edgeauth_ops.ended(ea, &r); /* fire and forget */
  edgeauth_free(ea);
  ev_loop_destroy(loop);
}

static void test_bad_config_keeps_policy(void **state) {
  (void)state;
  struct ev_loop *loop = ev_loop_new(0);
  edgeauth_t *ea = edgeauth_new(loop, "n1", EDGEAUTH_LOCAL_CONTROLLER, EDGEAUTH_LOCAL_CONTROLLER);
  edgeauth_rule ok[] = {{".*", EDGEAUTH_NONE, EDGEAUTH_NONE}};
  edgeauth_conf conf = {ok, 1, NULL, 0, NULL};
  char err[200];
  assert_int_equal(edgeauth_configure(ea, &conf, err, sizeof(err)), 0);
  edgeauth_rule bad[] = {{"live/.*", EDGEAUTH_TOKEN, EDGEAUTH_TOKEN}, {"(", EDGEAUTH_TOKEN, 0}};
  conf.rules = bad;
  conf.nrules = 2;
  assert_int_equal(edgeauth_configure(ea, &conf, err, sizeof(err)), -1);
  assert_non_null(strstr(err, "rule 2"));
  edgeauth_rule badmode[] = {{"x", 3, 0}};
  conf.rules = badmode;
  conf.nrules = 1;
  assert_int_equal(edgeauth_configure(ea, &conf, err, sizeof(err)), -1);
  conf.nrules = EDGEAUTH_RULES_MAX + 1;
  assert_int_equal(edgeauth_configure(ea, &conf, err, sizeof(err)), -1);
  assert_int_equal(edgeauth_mode_for(ea, DP_ADMIT_PUBLISH, "live/a"), EDGEAUTH_NONE);
  assert_int_equal(edgeauth_mode_parse("hook"), EDGEAUTH_HOOK);
  assert_int_equal(edgeauth_mode_parse("open"), -1);
  assert_string_equal(edgeauth_mode_name(EDGEAUTH_TOKEN), "token");
  edgeauth_free(ea);
  ev_loop_destroy(loop);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_no_policy),
      cmocka_unit_test(test_rules_and_tokens),
      cmocka_unit_test(test_bad_config_keeps_policy),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
