/* HTTP hooks: the operator's on_publish / on_play answer whether a client
 * may publish or play a path; on_stop / on_unpublish are told when a player
 * or a publisher ends. Every request runs on the agent's loop and never
 * blocks it; answers may be cached for a configured time. */
#ifndef CASCADE_AGENT_HOOKS_H
#define CASCADE_AGENT_HOOKS_H

#include <stdint.h>

struct ev_loop;

typedef enum {
  HOOK_ON_PUBLISH = 0,
  HOOK_ON_PLAY,
  HOOK_ON_STOP,      /* a player ended */
  HOOK_ON_UNPUBLISH, /* a publisher ended */
  HOOK_N
} hook_event;

/* hook_conf is what the controller's rules say about hooks. */
typedef struct hook_conf {
  char *url[HOOK_N];   /* http:// (or https://) URL, NULL: none */
  uint32_t timeout_ms; /* per request, connect included */
  uint32_t cache_ms;   /* how long an answer is reused; 0: never */
  int fail_open;       /* hook down, timed out or garbage: 1 allows, 0 refuses */
} hook_conf;

/* hook_req describes one client; strings are copied by the calls below. */
typedef struct hook_req {
  hook_event event;
  const char *node;  /* this node's name */
  const char *path;  /* app/name */
  const char *addr;  /* the client's address, no port */
  const char *proto; /* "rtmp" or "httpflv" */
  const char *query; /* the client's query string without '?', or NULL */
} hook_req;

enum { HOOK_ALLOW = 0, HOOK_DENY = 1, HOOK_PENDING = 2 };

/* hook_done_fn gets the verdict (HOOK_ALLOW / HOOK_DENY) and a short reason
 * fit for a client and a log (never the query). */
typedef void (*hook_done_fn)(void *arg, int verdict, const char *reason);

/* hook_event_name is the event's name in configuration and JSON
 * ("on_publish", ...); AGENTMSG_HOOK_* index the same names. */
const char *hook_event_name(hook_event e);

typedef struct hooks hooks_t;
typedef struct hook_call hook_call_t;

/* hooks_new makes an idle hook client on |loop|; NULL when out of memory. */
hooks_t *hooks_new(struct ev_loop *loop);

/* hooks_free cancels every call in flight (no callbacks) and frees |h|. */
void hooks_free(hooks_t *h);

/* hooks_configure replaces the configuration (copied); a change empties
 * the cache. Returns 0 or a negative error. */
int hooks_configure(hooks_t *h, const hook_conf *conf);

/* hooks_check asks on_publish or on_play about |r|. Returns HOOK_ALLOW or
 * HOOK_DENY when the answer is known at once (cached, or no URL for the
 * event: HOOK_DENY with reason "no hook configured"), setting *reason
 * (valid until the next call on |h|); or
 * HOOK_PENDING with *call set, |done| then called exactly once on the loop
 * unless hooks_cancel comes first. */
int hooks_check(hooks_t *h, const hook_req *r, hook_done_fn done, void *arg,
                hook_call_t **call, const char **reason);

/* hooks_cancel drops a pending call: |done| is never called for it. */
void hooks_cancel(hook_call_t *call);

/* hooks_notify posts on_stop / on_unpublish, fire and forget (bounded:
 * beyond the queue's room it is dropped and counted). */
void hooks_notify(hooks_t *h, const hook_req *r);

#define HOOKS_MAX_CHECKS 128   /* on_publish / on_play requests in flight */
#define HOOKS_MAX_NOTIFY 64    /* on_stop / on_unpublish requests in flight */
#define HOOKS_CACHE_MAX 4096   /* cached answers */
#define HOOKS_TIMEOUT_DEFAULT 3000 /* ms, when hook_conf.timeout_ms is 0 */
#define HOOKS_TIMEOUT_MAX 60000

/* hooks_stats counts what the client did since hooks_new. */
typedef struct hooks_stats {
  uint64_t requests;       /* HTTP requests started */
  uint64_t allowed;        /* 2xx answers */
  uint64_t refused;        /* other answers */
  uint64_t failed;         /* timed out, down, garbage: fail_open decided */
  uint64_t cache_hits;     /* checks answered from the cache */
  uint64_t overflow;       /* checks beyond HOOKS_MAX_CHECKS: fail_open decided */
  uint64_t notify_dropped; /* notifications beyond HOOKS_MAX_NOTIFY */
} hooks_stats_t;

/* hooks_get_stats copies |h|'s counters into |out|. */
void hooks_get_stats(const hooks_t *h, hooks_stats_t *out);

/* hooks_set_trust_file makes https:// hooks trust the CA certificates of
 * the PEM file |path| in place of the system's trust store (a private CA);
 * NULL returns to the system store. Requests in flight keep the trust they
 * started with. Returns 0 or a negative error (https:// hooks then fail
 * their handshake until a trust file is read). */
int hooks_set_trust_file(hooks_t *h, const char *path);

#endif
