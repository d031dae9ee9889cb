/* Edge authorization: who may publish and who may play which path at this
 * node. Implements the data plane's admission (dataplane/admit.h) for the
 * RTMP server and the public HTTP-FLV listener.
 *
 * The policy is an ordered list of (path pattern, publish mode, play mode),
 * the node's own rules first, then the deployment's; the first pattern
 * that matches the whole path decides. Modes: none (open), token (a stream
 * token signed by one of the deployment's keys: common/streamtoken.h), hook
 * (the operator's HTTP hook: agent/hooks.h). A path no pattern matches
 * needs a token. The local keys auth.publish / auth.play may open either
 * action at this node whatever the controller says; otherwise, until a
 * policy has come (from the controller or the state file), everything is
 * refused (503, "no authorization policy yet"). */
#ifndef CASCADE_AGENT_EDGEAUTH_H
#define CASCADE_AGENT_EDGEAUTH_H

#include <stddef.h>
#include <stdint.h>

#include "admit.h"
#include "agentmsg.h"
#include "hooks.h"
#include "streamtoken.h"

struct ev_loop;

typedef enum { EDGEAUTH_NONE = 0, EDGEAUTH_TOKEN = 1, EDGEAUTH_HOOK = 2 } edgeauth_mode;

/* What auth.publish / auth.play say. */
enum { EDGEAUTH_LOCAL_CONTROLLER = 0, EDGEAUTH_LOCAL_NONE = 1 };

#define EDGEAUTH_RULES_MAX 64
#define EDGEAUTH_KEYS_MAX 2

/* One rule as configured; |pattern| is pcre2, anchored at both ends. */
typedef struct edgeauth_rule {
  const char *pattern;
  int publish; /* edgeauth_mode */
  int play;
} edgeauth_rule;

/* A whole policy (copied by edgeauth_configure). */
typedef struct edgeauth_conf {
  const edgeauth_rule *rules; /* node rules first, then the deployment's */
  size_t nrules;
  const streamtoken_key *keys; /* the current signing key first */
  size_t nkeys;
  const hook_conf *hooks;     /* NULL: no hooks */
} edgeauth_conf;

typedef struct edgeauth edgeauth_t;

typedef struct edgeauth_stats {
  uint64_t allowed, refused, pending;
  hooks_stats_t hooks; /* the hook client's counters */
} edgeauth_stats;

/* edgeauth_mode_name is "none", "token" or "hook"; edgeauth_mode_parse the
 * reverse (-1 when unknown). */
const char *edgeauth_mode_name(int mode);
int edgeauth_mode_parse(const char *s);

/* edgeauth_new makes the authorization of node |node| on |loop| with the
 * local settings |local_publish| and |local_play| (EDGEAUTH_LOCAL_*); it has
 * no policy yet. NULL when out of memory. */
edgeauth_t *edgeauth_new(struct ev_loop *loop, const char *node, int local_publish,
                         int local_play);

/* edgeauth_free cancels what is pending (no callbacks) and frees |ea|;
 * accepts NULL. */
void edgeauth_free(edgeauth_t *ea);

/* edgeauth_configure replaces the policy with |conf| (copied). On a bad
 * pattern, too many rules or keys, or a bad mode: -1 with the reason in
 * |err|, and the previous policy stays. */
int edgeauth_configure(edgeauth_t *ea, const edgeauth_conf *conf, char *err, size_t errlen);

/* edgeauth_apply_msg configures |ea| from the controller's Rules.streamauth
 * |a|; NULL: the controller gave none, so there is no policy (everything
 * auth.* leaves to the controller is refused). 0, or -1 with |err| and the
 * previous policy kept. */
int edgeauth_apply_msg(edgeauth_t *ea, const agentmsg_streamauth_t *a, char *err, size_t errlen);

/* edgeauth_has_policy tells whether a policy has been configured. */
int edgeauth_has_policy(const edgeauth_t *ea);

/* edgeauth_mode_for is the mode for |action| (DP_ADMIT_*) on |path|:
 * EDGEAUTH_NONE when the local setting opens it, -1 when there is no
 * policy yet, else the first matching rule's, else EDGEAUTH_TOKEN. */
int edgeauth_mode_for(const edgeauth_t *ea, int action, const char *path);

/* edgeauth_decide is the verdict without hooks, at unix time |now|:
 * DP_ADMIT_ALLOW, DP_ADMIT_DENY with *status and *reason, or DP_ADMIT_PENDING
 * meaning "ask the hook". Pure. */
int edgeauth_decide(const edgeauth_t *ea, const dp_admit_req *r, uint64_t now, int *status,
                    const char **reason);

/* edgeauth_ops is the admission to hand the servers, with the edgeauth_t
 * as |ud|. */
extern const dp_admit_ops edgeauth_ops;

/* edgeauth_get_stats fills |out|. */
void edgeauth_get_stats(const edgeauth_t *ea, edgeauth_stats *out);

#endif
