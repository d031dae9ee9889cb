/* The cascade's pure decisions: see casc_plan.h. */
#include "casc_plan.h"

#include <stdio.h>
#include <string.h>

#include "pullsrc.h"

int casc_push_wanted(int live, int autopush, hub_origin_kind_t kind) {
  return live && autopush && kind != HUB_ORIGIN_PULLED;
}

casc_pull_fate_t casc_pull_fate(const casc_pull_view_t *v, double now, double linger_s,
                                double *idle_since) {
  /* published here now (a local publisher, a child's push): a pull never
   * displaces it, so it has nothing left to do */
  if (v->published && v->kind != HUB_ORIGIN_PULLED) return CASC_PULL_DISPLACED;
  if (v->players > 0) {
    *idle_since = 0;
    return CASC_PULL_RUN;
  }
  if (*idle_since == 0) *idle_since = now;
  if (!v->delivering) return CASC_PULL_ABANDONED;
  if (now - *idle_since >= linger_s) return CASC_PULL_LINGERED;
  return CASC_PULL_RUN;
}

const char *casc_pull_fate_name(casc_pull_fate_t f) {
  switch (f) {
  case CASC_PULL_RUN: return "run";
  case CASC_PULL_DISPLACED: return "displaced";
  case CASC_PULL_ABANDONED: return "abandoned";
  case CASC_PULL_LINGERED: return "lingered";
  }
  return "?";
}

casc_pull_kind_t casc_pull_target(const agent_rules_t *R, const char *path, char *out,
                                  size_t outlen, long *rule, char *err, size_t errlen) {
  *rule = -1;
  if (errlen) err[0] = '\0';
  for (size_t i = 0; i < R->npull; i++) {
    int m = pattern_expand(R->pull[i].re, path, R->pull[i].target, out, outlen);
    if (m == 0) continue;
    *rule = (long)i;
    if (m < 0) {
      if (outlen) out[0] = '\0'; /* a partial expansion is no target */
      snprintf(err, errlen, "the target does not fit %zu bytes", outlen);
      return CASC_PULL_NONE;
    }
    if (strncmp(out, "m7s://", 6) == 0) {
      if (!hub_path_ok(out + 6)) {
        snprintf(err, errlen, "not a stream path");
        return CASC_PULL_NONE;
      }
      return CASC_PULL_M7S;
    }
    if (pullsrc_url_check(out, err, errlen) != 0) return CASC_PULL_NONE;
    return CASC_PULL_EXT;
  }
  return CASC_PULL_NONE;
}
