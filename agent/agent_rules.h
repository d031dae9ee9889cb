/* The rules an agent runs: relay API allow/deny prefixes, on-demand pull
 * patterns (pcre2, compiled) and autopush. The effective set is the
 * controller's rule where its Config carries one, else the file's. */
#ifndef CASCADE_AGENT_RULES_H
#define CASCADE_AGENT_RULES_H

#include <stddef.h>

#include "agent_config.h"
#include "agentmsg.h"
#include "pattern.h"

typedef struct agent_pull_rule {
  char *pattern;
  char *target;
  pcre2_code *re;   /* owned */
} agent_pull_rule_t;

typedef struct agent_rules {
  char **allow;     /* owned, nallow entries */
  size_t nallow;
  char **deny;
  size_t ndeny;
  agent_pull_rule_t *pull;
  size_t npull;
  int autopush;
} agent_rules_t;

/* agent_rules_build makes the effective rules from the file config |fc|
 * and the controller's |ctl| (NULL, or a list or flag it does not have:
 * the file's value).
 * Every pattern is compiled; on any failure returns -1 with |err| naming
 * the pattern and leaves |out| zeroed. */
int agent_rules_build(const agent_config_t *fc, const agentmsg_rules_t *ctl,
                      agent_rules_t *out, char *err, size_t errlen);

/* agent_rules_free frees |r|'s values and zeroes it; accepts NULL. */
void agent_rules_free(agent_rules_t *r);

#endif
