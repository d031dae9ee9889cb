/* The cascade's decisions without the loop, the hub or the links (see
 * cascade.c, which applies them): which live stream goes up, what becomes
 * of a pull at each reconcile, and which pull rule serves a missing path.
 * Every function here is pure: the clock and the hub's answers are passed
 * in, so tests/agent/test_agent_casc_plan.c runs them alone. */
#ifndef CASCADE_CASC_PLAN_H
#define CASCADE_CASC_PLAN_H

#include <stddef.h>

#include "agent_rules.h"
#include "hub.h"

/* casc_push_wanted: a live stream of origin |kind| goes up the parent link
 * when autopush is on, unless it came down from there (a pulled copy). */
int casc_push_wanted(int live, int autopush, hub_origin_kind_t kind);

typedef enum casc_pull_fate {
  CASC_PULL_RUN = 0,      /* keep it, (re)try it when due */
  CASC_PULL_DISPLACED,    /* the path is published here by another origin */
  CASC_PULL_ABANDONED,    /* every player left before anything came */
  CASC_PULL_LINGERED      /* no player for the linger time */
} casc_pull_fate_t;

/* What the hub and the pull record say at one reconcile. */
typedef struct casc_pull_view {
  int published;          /* the path is live in the hub ... */
  hub_origin_kind_t kind; /* ... with this origin */
  unsigned players;       /* subscribers of the path */
  int delivering;         /* the pull's source published the path */
} casc_pull_view_t;

/* casc_pull_fate decides a pull's fate at |now| (seconds) with linger
 * |linger_s|; |idle_since| (0: it has players) is the pull's idle clock,
 * started or cleared here. */
casc_pull_fate_t casc_pull_fate(const casc_pull_view_t *v, double now, double linger_s,
                                double *idle_since);

/* casc_pull_fate_name names a fate (logs, tests). */
const char *casc_pull_fate_name(casc_pull_fate_t f);

typedef enum casc_pull_kind { CASC_PULL_NONE = 0, CASC_PULL_M7S, CASC_PULL_EXT } casc_pull_kind_t;

/* casc_pull_target finds the first pull rule of |R| matching |path| and
 * expands its target into |out| (|outlen| bytes). Returns the kind, with
 * |*rule| the rule's index; CASC_PULL_NONE with *rule -1 when no rule
 * matches, or with *rule the matching rule's index and |err| saying why
 * its target cannot be used (too long, not a stream path, not a pull
 * source URL; |out| is then empty when the expansion did not fit). */
casc_pull_kind_t casc_pull_target(const agent_rules_t *R, const char *path, char *out,
                                  size_t outlen, long *rule, char *err, size_t errlen);

#endif
