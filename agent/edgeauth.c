/* Edge authorization: see edgeauth.h and docs/media.md, "Authorization".
 *
 * Ownership: the edgeauth_t owns its compiled rules, its copy of the keys,
 * the hook client and every pending check (a list, so that edgeauth_free
 * can cancel them). A pending check is owned by the list until its hook
 * answers or the data plane cancels it. */
#include "edgeauth.h"

#include <ev.h>
#include <gnutls/gnutls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pattern.h"

#define MOD "edgeauth"

typedef struct ea_rule {
  pcre2_code *re;
  pcre2_match_data *md;
  int mode[2]; /* [0] publish, [1] play */
} ea_rule;

typedef struct ea_pending {
  edgeauth_t *ea;
  struct ea_pending *prev, *next;
  hook_call_t *call;
  dp_admit_cb cb;
  void *arg;
} ea_pending;

struct edgeauth {
  struct ev_loop *loop;
  char *node;
  int local[2];                /* EDGEAUTH_LOCAL_* for publish, play */
  int has_policy;
  ea_rule *rules;
  size_t nrules;
  streamtoken_key keys[EDGEAUTH_KEYS_MAX];
  size_t nkeys;
  hooks_t *hooks;
  ea_pending *pending;         /* owned list */
  edgeauth_stats st;
};

static int act_index(int action) { return action == DP_ADMIT_PUBLISH ? 0 : 1; }

const char *edgeauth_mode_name(int mode) {
  switch (mode) {
  case EDGEAUTH_NONE: return "none";
  case EDGEAUTH_TOKEN: return "token";
  case EDGEAUTH_HOOK: return "hook";
  default: return "?";
  }
}

int edgeauth_mode_parse(const char *s) {
  if (s == NULL) return -1;
  if (strcmp(s, "none") == 0) return EDGEAUTH_NONE;
  if (strcmp(s, "token") == 0) return EDGEAUTH_TOKEN;
  if (strcmp(s, "hook") == 0) return EDGEAUTH_HOOK;
  return -1;
}

static void rules_free(ea_rule *r, size_t n) {
  for (size_t i = 0; i < n; i++) {
    pcre2_match_data_free(r[i].md);
    pcre2_code_free(r[i].re);
  }
  free(r);
}

edgeauth_t *edgeauth_new(struct ev_loop *loop, const char *node, int local_publish,
                         int local_play) {
  edgeauth_t *ea = calloc(1, sizeof(*ea));
  if (ea == NULL) goto fail;
  ea->loop = loop;
  if ((ea->node = strdup(node ? node : "")) == NULL) goto fail_ea;
  if ((ea->hooks = hooks_new(loop)) == NULL) goto fail_node;
  ea->local[0] = local_publish;
  ea->local[1] = local_play;
  return ea;

fail_node:
  free(ea->node);
fail_ea:
  free(ea);
fail:
  return NULL;
}

void edgeauth_free(edgeauth_t *ea) {
  if (ea == NULL) return;
  while (ea->pending) {
    ea_pending *p = ea->pending;
    ea->pending = p->next;
    hooks_cancel(p->call);
    free(p);
  }
  hooks_free(ea->hooks);
  rules_free(ea->rules, ea->nrules);
  gnutls_memset(ea->keys, 0, sizeof(ea->keys));
  free(ea->node);
  free(ea);
}

int edgeauth_configure(edgeauth_t *ea, const edgeauth_conf *conf, char *err, size_t errlen) {
  if (conf->nrules > EDGEAUTH_RULES_MAX) {
    snprintf(err, errlen, "%zu rules: at most %d", conf->nrules, EDGEAUTH_RULES_MAX);
    return -1;
  }
  if (conf->nkeys > EDGEAUTH_KEYS_MAX) {
    snprintf(err, errlen, "%zu keys: at most %d", conf->nkeys, EDGEAUTH_KEYS_MAX);
    return -1;
  }
  ea_rule *rules = calloc(conf->nrules ? conf->nrules : 1, sizeof(*rules));
  if (rules == NULL) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  for (size_t i = 0; i < conf->nrules; i++) {
    const edgeauth_rule *r = &conf->rules[i];
    char perr[160];
    if (r->publish < EDGEAUTH_NONE || r->publish > EDGEAUTH_HOOK || r->play < EDGEAUTH_NONE ||
        r->play > EDGEAUTH_HOOK) {
      snprintf(err, errlen, "rule %zu: bad mode", i + 1);
      goto fail;
    }
    rules[i].re = r->pattern ? pattern_compile(r->pattern, perr, sizeof(perr)) : NULL;
    if (rules[i].re == NULL) {
      snprintf(err, errlen, "rule %zu: %s", i + 1, r->pattern ? perr : "no pattern");
      goto fail;
    }
    rules[i].md = pcre2_match_data_create_from_pattern(rules[i].re, NULL);
    if (rules[i].md == NULL) {
      snprintf(err, errlen, "out of memory");
      goto fail;
    }
    rules[i].mode[0] = r->publish;
    rules[i].mode[1] = r->play;
  }
  if (hooks_configure(ea->hooks, conf->hooks ? conf->hooks : &(hook_conf){0}) != 0) {
    snprintf(err, errlen, "hooks: bad configuration");
    goto fail;
  }
  rules_free(ea->rules, ea->nrules);
  ea->rules = rules;
  ea->nrules = conf->nrules;
  gnutls_memset(ea->keys, 0, sizeof(ea->keys));
  if (conf->nkeys) memcpy(ea->keys, conf->keys, conf->nkeys * sizeof(*conf->keys));
  ea->nkeys = conf->nkeys;
  ea->has_policy = 1;
  return 0;

fail:
  rules_free(rules, conf->nrules);
  return -1;
}

int edgeauth_apply_msg(edgeauth_t *ea, const agentmsg_streamauth_t *a, char *err, size_t errlen) {
  if (a == NULL) {
    rules_free(ea->rules, ea->nrules);
    ea->rules = NULL;
    ea->nrules = 0;
    gnutls_memset(ea->keys, 0, sizeof(ea->keys));
    ea->nkeys = 0;
    ea->has_policy = 0;
    return 0;
  }
  if (a->nrules > EDGEAUTH_RULES_MAX || a->nkeys > EDGEAUTH_KEYS_MAX) {
    snprintf(err, errlen, "too many rules or keys");
    return -1;
  }
  edgeauth_rule rules[EDGEAUTH_RULES_MAX];
  streamtoken_key keys[EDGEAUTH_KEYS_MAX];
  _Static_assert(sizeof(keys[0].key) == sizeof(a->keys[0].key), "key length");
  for (size_t i = 0; i < a->nrules; i++) {
    rules[i].pattern = a->rules[i].pattern;
    rules[i].publish = a->rules[i].publish;
    rules[i].play = a->rules[i].play;
  }
  for (size_t i = 0; i < a->nkeys; i++) {
    keys[i].id = a->keys[i].id;
    memcpy(keys[i].key, a->keys[i].key, sizeof(keys[i].key));
  }
  hook_conf hc;
  memset(&hc, 0, sizeof(hc));
  _Static_assert((int)AGENTMSG_HOOK_PUBLISH == (int)HOOK_ON_PUBLISH &&
                     (int)AGENTMSG_HOOK_PLAY == (int)HOOK_ON_PLAY &&
                     (int)AGENTMSG_HOOK_STOP == (int)HOOK_ON_STOP &&
                     (int)AGENTMSG_HOOK_UNPUBLISH == (int)HOOK_ON_UNPUBLISH,
                 "hook events");
  for (int i = 0; i < HOOK_N; i++)
    hc.url[i] = a->hook_url[i] && a->hook_url[i][0] ? a->hook_url[i] : NULL;
  hc.timeout_ms = a->hook_timeout_ms;
  hc.cache_ms = a->hook_cache_ms;
  hc.fail_open = a->hook_fail_open;
  edgeauth_conf conf = {rules, a->nrules, keys, a->nkeys, &hc};
  int rc = edgeauth_configure(ea, &conf, err, errlen);
  gnutls_memset(keys, 0, sizeof(keys));
  return rc;
}

int edgeauth_has_policy(const edgeauth_t *ea) { return ea->has_policy; }

int edgeauth_mode_for(const edgeauth_t *ea, int action, const char *path) {
  int a = act_index(action);
  if (ea->local[a] == EDGEAUTH_LOCAL_NONE) return EDGEAUTH_NONE;
  if (!ea->has_policy) return -1;
  size_t pl = strlen(path);
  for (size_t i = 0; i < ea->nrules; i++) {
    int rc = pcre2_match(ea->rules[i].re, (PCRE2_SPTR)path, pl, 0,
                         PCRE2_ANCHORED | PCRE2_ENDANCHORED, ea->rules[i].md, NULL);
    if (rc >= 0) return ea->rules[i].mode[a];
  }
  return EDGEAUTH_TOKEN;
}

int edgeauth_decide(const edgeauth_t *ea, const dp_admit_req *r, uint64_t now, int *status,
                    const char **reason) {
  int mode = edgeauth_mode_for(ea, r->action, r->path);
  if (mode < 0) {
    *status = 503;
    *reason = "no authorization policy yet";
    return DP_ADMIT_DENY;
  }
  if (mode == EDGEAUTH_NONE) return DP_ADMIT_ALLOW;
  if (mode == EDGEAUTH_HOOK) return DP_ADMIT_PENDING;
  const char *tok = NULL;
  size_t n = 0;
  if (!streamtoken_from_query(r->query, &tok, &n)) tok = NULL;
  int rc = streamtoken_verify(ea->keys, ea->nkeys, tok, n,
                              r->action == DP_ADMIT_PUBLISH ? STREAMTOKEN_PUBLISH
                                                            : STREAMTOKEN_PLAY,
                              r->path, r->addr, now);
  if (rc == STREAMTOKEN_OK) return DP_ADMIT_ALLOW;
  *status = streamtoken_status(rc);
  *reason = streamtoken_strerror(rc);
  return DP_ADMIT_DENY;
}

/* ------------------------------------------------------------ admission */

static void pending_unlink(ea_pending *p) {
  if (p->prev) p->prev->next = p->next;
  else p->ea->pending = p->next;
  if (p->next) p->next->prev = p->prev;
}

static void hook_done(void *arg, int verdict, const char *reason) {
  ea_pending *p = arg;
  edgeauth_t *ea = p->ea;
  dp_admit_cb cb = p->cb;
  void *cbarg = p->arg;
  pending_unlink(p);
  free(p);
  if (verdict == HOOK_ALLOW) ea->st.allowed++;
  else ea->st.refused++;
  cb(cbarg, verdict == HOOK_ALLOW, 403, reason ? reason : "refused by the hook");
}

static void hook_req_of(const edgeauth_t *ea, const dp_admit_req *r, hook_event ev, hook_req *h) {
  h->event = ev;
  h->node = ea->node;
  h->path = r->path;
  h->addr = r->addr;
  h->proto = r->proto;
  h->query = r->query;
}

static int ea_check(void *ud, const dp_admit_req *r, dp_admit_cb cb, void *arg, void **pending,
                    int *status, const char **reason) {
  edgeauth_t *ea = ud;
  int v = edgeauth_decide(ea, r, (uint64_t)ev_now(ea->loop), status, reason);
  if (v != DP_ADMIT_PENDING) {
    if (v == DP_ADMIT_ALLOW) ea->st.allowed++;
    else ea->st.refused++;
    return v;
  }
  ea_pending *p = calloc(1, sizeof(*p));
  if (p == NULL) {
    ea->st.refused++;
    *status = 503;
    *reason = "out of memory";
    return DP_ADMIT_DENY;
  }
  hook_req h;
  hook_req_of(ea, r, r->action == DP_ADMIT_PUBLISH ? HOOK_ON_PUBLISH : HOOK_ON_PLAY, &h);
  const char *hr = NULL;
  int hv = hooks_check(ea->hooks, &h, hook_done, p, &p->call, &hr);
  if (hv != HOOK_PENDING) {
    free(p);
    if (hv == HOOK_ALLOW) {
      ea->st.allowed++;
      return DP_ADMIT_ALLOW;
    }
    ea->st.refused++;
    *status = 403;
    *reason = hr ? hr : "refused by the hook";
    return DP_ADMIT_DENY;
  }
  p->ea = ea;
  p->cb = cb;
  p->arg = arg;
  p->next = ea->pending;
  if (ea->pending) ea->pending->prev = p;
  ea->pending = p;
  ea->st.pending++;
  *pending = p;
  return DP_ADMIT_PENDING;
}

static void ea_cancel(void *ud, void *pending) {
  (void)ud;
  ea_pending *p = pending;
  if (p == NULL) return;
  hooks_cancel(p->call);
  pending_unlink(p);
  free(p);
}

static void ea_ended(void *ud, const dp_admit_req *r) {
  edgeauth_t *ea = ud;
  hook_req h;
  hook_req_of(ea, r, r->action == DP_ADMIT_PUBLISH ? HOOK_ON_UNPUBLISH : HOOK_ON_STOP, &h);
  hooks_notify(ea->hooks, &h);
}

const dp_admit_ops edgeauth_ops = {ea_check, ea_cancel, ea_ended};

void edgeauth_get_stats(const edgeauth_t *ea, edgeauth_stats *out) {
  *out = ea->st;
  hooks_get_stats(ea->hooks, &out->hooks);
}
