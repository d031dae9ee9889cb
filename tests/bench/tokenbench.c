/* Stream token verification cost (tests/bench/bench_streamauth.py): the
 * edge's whole check of a player with a token — policy match, query parse,
 * HMAC-SHA-256 — timed on one core, and streamtoken_verify alone.
 * Prints one JSON object. Usage: cascade-tokenbench [N] */
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "edgeauth.h"
#include "streamtoken.h"

static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 200000;
  if (n <= 0) n = 200000;
  struct ev_loop *loop = ev_loop_new(0);
  streamtoken_key keys[2] = {{.id = 2}, {.id = 1}};
  memset(keys[0].key, 0x42, sizeof(keys[0].key));
  memset(keys[1].key, 0x24, sizeof(keys[1].key));
  /* a realistic policy: a few rules before the one that matches */
  edgeauth_rule rules[] = {{"open/.*", EDGEAUTH_NONE, EDGEAUTH_NONE},
                           {"hooked/.*", EDGEAUTH_HOOK, EDGEAUTH_HOOK},
                           {"live/.*", EDGEAUTH_TOKEN, EDGEAUTH_TOKEN},
                           {".*", EDGEAUTH_TOKEN, EDGEAUTH_TOKEN}};
  edgeauth_conf conf = {rules, 4, keys, 2, NULL};
  edgeauth_t *ea = edgeauth_new(loop, "bench", EDGEAUTH_LOCAL_CONTROLLER,
                                EDGEAUTH_LOCAL_CONTROLLER);
  char err[128], tok[STREAMTOKEN_LEN + 1], query[128];
  uint64_t now = (uint64_t)time(NULL);
  if (ea == NULL || edgeauth_configure(ea, &conf, err, sizeof(err)) != 0 ||
      streamtoken_mint(&keys[1], STREAMTOKEN_PLAY, "live/cam1", now + 3600, NULL, tok,
                       sizeof(tok)) != 0)
    return 1;
  snprintf(query, sizeof(query), "token=%s", tok);
  dp_admit_req r = {DP_ADMIT_PLAY, "live/cam1", query, "httpflv", "127.0.0.1"};
  long ok = 0;
  double t0 = cpu_now();
  for (long i = 0; i < n; i++) {
    int st;
    const char *why;
    ok += edgeauth_decide(ea, &r, now, &st, &why) == DP_ADMIT_ALLOW;
  }
  double full = cpu_now() - t0;
  t0 = cpu_now();
  for (long i = 0; i < n; i++)
    ok += streamtoken_verify(keys, 2, tok, STREAMTOKEN_LEN, STREAMTOKEN_PLAY, "live/cam1",
                             "127.0.0.1", now) == STREAMTOKEN_OK;
  double bare = cpu_now() - t0;
  if (ok != 2 * n) return 1;
  printf("{\"checks\": %ld, \"edge_check_us\": %.3f, \"edge_checks_per_s\": %.0f, "
         "\"verify_us\": %.3f, \"core_pct_at_10000_per_s\": %.3f}\n",
         n, full / (double)n * 1e6, (double)n / full, bare / (double)n * 1e6,
         10000.0 * full / (double)n * 100.0);
  edgeauth_free(ea);
  ev_loop_destroy(loop);
  return 0;
}
