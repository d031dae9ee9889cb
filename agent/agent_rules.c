/* Effective rules of an agent: see agent_rules.h. */
#include "agent_rules.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relpath.h"

static int copy_list(char *const *src, size_t n, char ***dst, size_t *dn) {
  *dst = NULL;
  *dn = 0;
  if (n == 0) return 0;
  *dst = calloc(n, sizeof(char *));
  if (*dst == NULL) return -1;
  for (size_t i = 0; i < n; i++) {
    if (((*dst)[i] = strdup(src[i])) == NULL) return -1;
    (*dn)++;
  }
  return 0;
}

static int add_pull(agent_rules_t *r, const char *pattern, const char *target, char *err,
                    size_t errlen) {
  agent_pull_rule_t *p = &r->pull[r->npull];
  char why[256];
  memset(p, 0, sizeof(*p));
  if ((p->re = pattern_compile(pattern, why, sizeof(why))) == NULL) {
    snprintf(err, errlen, "onsub.pull pattern '%.100s': %s", pattern, why);
    return -1;
  }
  p->pattern = strdup(pattern);
  p->target = strdup(target ? target : "");
  r->npull++; /* counted before the check, so free releases a half-made rule */
  if (p->pattern == NULL || p->target == NULL) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  return 0;
}

int agent_rules_build(const agent_config_t *fc, const agentmsg_rules_t *ctl,
                      agent_rules_t *out, char *err, size_t errlen) {
  memset(out, 0, sizeof(*out));
  const agentmsg_rules_t *ra = ctl && ctl->has_relayapi ? ctl : NULL;
  const agentmsg_rules_t *pr = ctl && ctl->has_pull ? ctl : NULL;

  /* The controller's rules are judged as the file's are: a rule the agent
   * would refuse in its own file keeps the running set. */
  for (size_t i = 0; ra && i < ra->nallow + ra->ndeny; i++) {
    int allow = i < ra->nallow;
    const char *rule = allow ? ra->allow[i] : ra->deny[i - ra->nallow];
    const char *why = relpath_rule_check(rule);
    if (why != NULL) {
      snprintf(err, errlen, "relayapi.%s rule '%.100s': %s", allow ? "allow" : "deny", rule, why);
      return -1;
    }
  }
  if (ra ? copy_list(ra->allow, ra->nallow, &out->allow, &out->nallow) ||
               copy_list(ra->deny, ra->ndeny, &out->deny, &out->ndeny)
         : copy_list(fc->relay_allow.v, fc->relay_allow.n, &out->allow, &out->nallow) ||
               copy_list(fc->relay_deny.v, fc->relay_deny.n, &out->deny, &out->ndeny)) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  size_t n = pr ? pr->npull : fc->onsub_pull.n;
  if (n > 0 && (out->pull = calloc(n, sizeof(*out->pull))) == NULL) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  for (size_t i = 0; i < n; i++) {
    const char *pat = pr ? pr->pull[i].pattern : fc->onsub_pull.keys[i];
    const char *tgt = pr ? pr->pull[i].target : fc->onsub_pull.vals[i];
    if (add_pull(out, pat ? pat : "", tgt, err, errlen) != 0) goto fail;
  }
  out->autopush = (ctl && ctl->has_autopush) ? ctl->autopush != 0 : fc->autopush != 0;
  return 0;

fail:
  agent_rules_free(out);
  return -1;
}

void agent_rules_free(agent_rules_t *r) {
  if (r == NULL) return;
  for (size_t i = 0; i < r->nallow; i++) free(r->allow[i]);
  for (size_t i = 0; i < r->ndeny; i++) free(r->deny[i]);
  for (size_t i = 0; i < r->npull; i++) {
    free(r->pull[i].pattern);
    free(r->pull[i].target);
    pcre2_code_free(r->pull[i].re);
  }
  free(r->allow);
  free(r->deny);
  free(r->pull);
  memset(r, 0, sizeof(*r));
}
