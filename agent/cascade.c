/* The cascade of streams: see cascade.h and docs/media.md ("Cascade").
 *
 * Ownership: |C| owns its push and pull records; a record owns its relay
 * handle or pull source until that ends (on_end) or is stopped. Hub
 * observer callbacks can run inside hub_push or hub_subscribe, so they only
 * record what happened and kick the reconcile timer; pushes and pulls are
 * started and stopped from the timer, never from inside the hub. The one
 * exception is on_missing, which starts a pull at once when it can (a
 * player is waiting), from a zero-delay timer as well. */
#define _GNU_SOURCE /* asprintf */
#include "cascade.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent_backoff.h"
#include "casc_plan.h"
#include "link_fsm.h"
#include "log.h"
#include "urlredact.h"
#include "pattern.h"
#include "pullsrc.h"

#define MOD "cascade"
#define TICK_S 0.25
#define REFUSED_MIN_S 2.0     /* a refusal (busy, loop) does not change at once */
#define TARGET_MAX 2048

typedef struct casc_push {
  struct casc_push *next;
  casc_t *C;
  char *path;                 /* owned */
  relay_push_t *h;            /* running, or NULL */
  int running;                /* accepted by the parent */
  unsigned fails;
  double retry_at;
  char last_error[200];
} casc_push_t;

typedef struct casc_pull {
  struct casc_pull *next;
  casc_t *C;
  char *path;                 /* owned: the local path players asked for */
  char *target;               /* owned: the expanded rule target (may hold credentials) */
  char *shown;                /* owned: |target| redacted, for logs and the status */
  int kind;                   /* CASC_PULL_M7S, CASC_PULL_EXT */
  relay_pull_t *rh;
  pullsrc_t *ps;
  int live;                   /* the source published the path */
  unsigned fails;
  double retry_at;
  double idle_since;          /* no player since then (0: has players) */
  double created;
  char last_error[200];
} casc_pull_t;

struct casc {
  struct ev_loop *loop;
  const agent_config_t *cfg;
  const ctlc_t *ctl;
  hub_t *hub;
  quic_conn *parent;          /* up and verified, or NULL */
  relay_t *relay;
  int64_t parent_id;
  casc_push_t *pushes;        /* owned list */
  casc_pull_t *pulls;         /* owned list */
  ev_timer tick, kick;
  uint64_t rng;
  uint64_t pushes_started, pulls_started, pulls_lingered, pull_failures, push_failures;
};

/* backoff_s is the links' retry delay (full jitter, 100 ms doubling up to
 * cascadeclient.reconnectmax) before retry |fails| (1: the first), at least
 * |min_s|. */
static double backoff_s(casc_t *C, unsigned fails, double min_s) {
  double d = (double)link_fsm_delay_ms(fails ? fails - 1 : 0, C->cfg->reconnectmax_ms,
                                       agent_rng_next(&C->rng)) / 1000.0;
  return d < min_s ? min_s : d;
}

/* ---- records ---------------------------------------------------------------- */

static casc_push_t *push_find(casc_t *C, const char *path) {
  for (casc_push_t *p = C->pushes; p; p = p->next)
    if (strcmp(p->path, path) == 0) return p;
  return NULL;
}

static casc_pull_t *pull_find(casc_t *C, const char *path) {
  for (casc_pull_t *p = C->pulls; p; p = p->next)
    if (strcmp(p->path, path) == 0) return p;
  return NULL;
}

static void push_halt(casc_push_t *p) {
  relay_push_stop(p->h);
  p->h = NULL;
  p->running = 0;
}

static void pull_halt(casc_pull_t *p) {
  relay_pull_stop(p->rh);
  p->rh = NULL;
  pullsrc_stop(p->ps);
  p->ps = NULL;
  p->live = 0;
}

static void push_remove(casc_t *C, casc_push_t *p) {
  push_halt(p);
  for (casc_push_t **pp = &C->pushes; *pp; pp = &(*pp)->next)
    if (*pp == p) {
      *pp = p->next;
      break;
    }
  free(p->path);
  free(p);
}

static void pull_remove(casc_t *C, casc_pull_t *p) {
  pull_halt(p);
  for (casc_pull_t **pp = &C->pulls; *pp; pp = &(*pp)->next)
    if (*pp == p) {
      *pp = p->next;
      break;
    }
  free(p->path);
  free(p->target);
  free(p->shown);
  free(p);
}

void casc_kick(casc_t *C) {
  if (C && !ev_is_active(&C->kick)) {
    ev_timer_set(&C->kick, 0., 0.);
    ev_timer_start(C->loop, &C->kick);
  }
}

/* ---- pushes ----------------------------------------------------------------- */

static void push_started(void *ud) {
  casc_push_t *p = ud;
  p->running = 1;
  p->fails = 0;
  p->last_error[0] = '\0';
  p->C->pushes_started++;
  log_info(MOD, "[push %s] pushing to the parent (node %lld)", p->path,
           (long long)p->C->parent_id);
}

static void push_ended(const relay_end_t *e, void *ud) {
  casc_push_t *p = ud;
  casc_t *C = p->C;
  int was = p->running;
  p->h = NULL;
  p->running = 0;
  snprintf(p->last_error, sizeof(p->last_error), "%s", e->reason);
  if (e->why == RELAY_END_FINISHED) {
    p->fails = 0;
    p->retry_at = 0;
  } else {
    p->fails++;
    C->push_failures++;
    int refused = e->why == RELAY_END_REFUSED;
    p->retry_at = ev_now(C->loop) + backoff_s(C, p->fails, refused ? REFUSED_MIN_S : 0);
    if (was || p->fails == 1 || refused)
      log_info(MOD, "[push %s] ended (%s%s0x%x): %s; retry in %.1f s", p->path,
               e->why == RELAY_END_REFUSED ? "refused" : "ended", ", code ", (unsigned)e->code,
               e->reason, p->retry_at - ev_now(C->loop));
  }
  casc_kick(C);
}

static const relay_cb_t push_cb = {push_started, push_ended};

/* push_want tells whether live stream |info| goes up. */
static int push_want(const casc_t *C, const hub_stream_info_t *info) {
  return casc_push_wanted(info->live, C->ctl->rules.autopush, info->origin.kind);
}

static void push_walk(const hub_stream_info_t *info, void *arg) {
  casc_t *C = arg;
  if (!push_want(C, info)) return;
  casc_push_t *p = push_find(C, info->path);
  if (p == NULL) {
    if ((p = calloc(1, sizeof(*p))) == NULL || (p->path = strdup(info->path)) == NULL) {
      free(p);
      return;
    }
    p->C = C;
    p->next = C->pushes;
    C->pushes = p;
  }
}

static void push_reconcile(casc_t *C, double now) {
  hub_foreach(C->hub, push_walk, C);
  for (casc_push_t *p = C->pushes, *next; p; p = next) {
    next = p->next;
    hub_origin_t o;
    int live = hub_origin_of(C->hub, p->path, &o) == 0;
    if (!casc_push_wanted(live, C->ctl->rules.autopush, o.kind)) {
      push_remove(C, p);
      continue;
    }
    if (p->h || C->parent == NULL || now < p->retry_at) continue;
    int err = 0;
    p->h = relay_push(C->relay, C->parent, p->path, &push_cb, p, &err);
    if (p->h == NULL) {
      p->fails++;
      p->retry_at = now + backoff_s(C, p->fails, err == -ELOOP ? REFUSED_MIN_S : 0);
      snprintf(p->last_error, sizeof(p->last_error), "cannot push: %s", strerror(-err));
    }
  }
}

/* ---- pulls ------------------------------------------------------------------ */

static void pull_started(casc_pull_t *p) {
  p->live = 1;
  p->fails = 0;
  p->last_error[0] = '\0';
  p->C->pulls_started++;
  log_info(MOD, "[pull %s] pulling from %s", p->path, p->shown);
}

static void pull_failed(casc_pull_t *p, int refused, const char *why) {
  casc_t *C = p->C;
  p->live = 0;
  p->fails++;
  C->pull_failures++;
  snprintf(p->last_error, sizeof(p->last_error), "%s", why);
  p->retry_at = ev_now(C->loop) + backoff_s(C, p->fails, refused ? REFUSED_MIN_S / 4 : 0);
  if (p->fails == 1 || p->fails % 10 == 0)
    log_info(MOD, "[pull %s] from %s failed (%u): %s", p->path, p->shown, p->fails, why);
  casc_kick(C);
}

static void rpull_started(void *ud) { pull_started(ud); }

static void rpull_ended(const relay_end_t *e, void *ud) {
  casc_pull_t *p = ud;
  p->rh = NULL;
  pull_failed(p, e->why == RELAY_END_REFUSED, e->reason);
}

static const relay_cb_t pull_cb = {rpull_started, rpull_ended};

static void ps_live(pullsrc_t *ps, void *ud) {
  (void)ps;
  pull_started(ud);
}

static void ps_end(pullsrc_t *ps, void *ud, const char *why) {
  casc_pull_t *p = ud;
  (void)ps;
  p->ps = NULL;
  pull_failed(p, 0, why);
}

static const pullsrc_callbacks_t ps_cb = {ps_live, ps_end};

static void pull_try(casc_t *C, casc_pull_t *p, double now) {
  char err[256];
  if (p->rh || p->ps || now < p->retry_at) return;
  if (p->kind == CASC_PULL_M7S) {
    if (C->parent == NULL) {
      snprintf(p->last_error, sizeof(p->last_error), "no parent link");
      return;
    }
    int e = 0;
    const char *remote = p->target + 6; /* after m7s:// */
    p->rh = relay_pull_as(C->relay, C->parent, remote, p->path, C->parent_id, &pull_cb, p, &e);
    if (p->rh == NULL) {
      snprintf(err, sizeof(err), "cannot pull %s from the parent: %s", remote, strerror(-e));
      pull_failed(p, 0, err);
    }
  } else {
    p->ps = pullsrc_start(C->loop, C->hub, p->target, p->path, NULL, &ps_cb, p, err,
                          sizeof(err));
    if (p->ps == NULL) pull_failed(p, 0, err);
  }
}

static void pull_reconcile(casc_t *C, double now) {
  double linger = (double)C->cfg->pull_linger_ms / 1000.0;
  for (casc_pull_t *p = C->pulls, *next; p; p = next) {
    next = p->next;
    unsigned subs = 0, waiting = 0;
    hub_path_counts(C->hub, p->path, &subs, &waiting);
    hub_origin_t o = {0};
    casc_pull_view_t v = {.published = hub_origin_of(C->hub, p->path, &o) == 0,
                          .kind = o.kind,
                          .players = subs,
                          .delivering = p->live};
    switch (casc_pull_fate(&v, now, linger, &p->idle_since)) {
    case CASC_PULL_RUN:
      pull_try(C, p, now);
      break;
    case CASC_PULL_LINGERED:
      log_info(MOD, "[pull %s] no player for %.0f s: stopping the pull from %s", p->path,
               now - p->idle_since, p->shown);
      C->pulls_lingered++;
      pull_remove(C, p);
      break;
    case CASC_PULL_DISPLACED:
    case CASC_PULL_ABANDONED:
      pull_remove(C, p);
      break;
    }
  }
}

/* pull_new matches |path| against the pull rules; the first match makes a
 * pull record. NULL when no rule matches (the player waits in vain). */
static casc_pull_t *pull_new(casc_t *C, const char *path) {
  const agent_rules_t *R = &C->ctl->rules;
  char target[TARGET_MAX], err[256];
  long rule = -1;
  casc_pull_kind_t kind =
      casc_pull_target(R, path, target, sizeof(target), &rule, err, sizeof(err));
  if (kind == CASC_PULL_NONE) {
    if (rule >= 0) { /* a rule matched, its target is unusable */
      char qp[96], qr[96], qt[160], qr2[TARGET_MAX];
      int overflow = target[0] == '\0';
      log_warn(MOD, "[pull %s] rule %s: %s%s%s", log_quote(path, qp, sizeof(qp)),
               log_quote(R->pull[rule].pattern, qr, sizeof(qr)), err, overflow ? "" : ": ",
               overflow ? "" : log_quote(urlredact(target, qr2, sizeof(qr2)), qt, sizeof(qt)));
    }
    return NULL;
  }
  casc_pull_t *p = calloc(1, sizeof(*p));
  char shown[TARGET_MAX];
  if (p == NULL || (p->path = strdup(path)) == NULL || (p->target = strdup(target)) == NULL ||
      (p->shown = strdup(urlredact(target, shown, sizeof(shown)))) == NULL) {
    if (p) {
      free(p->path);
      free(p->target);
    }
    free(p);
    return NULL;
  }
  p->C = C;
  p->kind = (int)kind;
  p->created = ev_now(C->loop);
  p->next = C->pulls;
  C->pulls = p;
  return p;
}

/* ---- hub events ----------------------------------------------------------- */

static void on_publish(hub_t *h, const char *path, const hub_origin_t *o, void *arg) {
  (void)h;
  (void)path;
  (void)o;
  casc_kick(arg);
}

static void on_unpublish(hub_t *h, const char *path, void *arg) {
  (void)h;
  (void)path;
  casc_kick(arg);
}

static void on_missing(hub_t *h, const char *path, void *arg) {
  casc_t *C = arg;
  (void)h;
  if (pull_find(C, path) == NULL && pull_new(C, path) == NULL) return;
  casc_kick(C); /* started from the loop, within the wait */
}

static void on_idle(hub_t *h, const char *path, void *arg) {
  (void)h;
  (void)path;
  casc_kick(arg);
}

static const hub_observer_t observer = {on_publish, on_unpublish, on_missing, on_idle};

/* ---- reconcile ------------------------------------------------------------- */

static void reconcile(casc_t *C) {
  double now = ev_now(C->loop);
  push_reconcile(C, now);
  pull_reconcile(C, now);
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)loop;
  (void)revents;
  reconcile(w->data);
}

void casc_parent(casc_t *C, quic_conn *c, relay_t *r, int64_t id) {
  if (C == NULL) return;
  if (C->parent && (c != C->parent || r != C->relay)) {
    /* the old link is gone or going: its pushes and pulls with it */
    for (casc_push_t *p = C->pushes; p; p = p->next) {
      push_halt(p);
      p->retry_at = 0;
    }
    for (casc_pull_t *p = C->pulls; p; p = p->next) {
      if (p->kind != CASC_PULL_M7S || !p->rh) continue;
      relay_pull_stop(p->rh);
      p->rh = NULL;
      p->live = 0;
      p->retry_at = 0;
    }
  }
  C->parent = c;
  C->relay = c ? r : NULL;
  C->parent_id = c ? id : 0;
  casc_kick(C);
}

casc_t *casc_new(struct ev_loop *loop, const agent_config_t *cfg, const ctlc_t *ctl, hub_t *hub) {
  casc_t *C = calloc(1, sizeof(*C));
  if (C == NULL) return NULL;
  C->loop = loop;
  C->cfg = cfg;
  C->ctl = ctl;
  C->hub = hub;
  C->rng = (uint64_t)(uintptr_t)C ^ (uint64_t)(ev_time() * 1e6) ^ 0x9e3779b97f4a7c15ull;
  if (C->rng == 0) C->rng = 1;
  ev_timer_init(&C->tick, tick_cb, TICK_S, TICK_S);
  C->tick.data = C;
  ev_timer_init(&C->kick, tick_cb, 0., 0.);
  C->kick.data = C;
  ev_timer_start(loop, &C->tick);
  hub_set_observer(hub, &observer, C);
  return C;
}

void casc_free(casc_t *C) {
  if (C == NULL) return;
  hub_set_observer(C->hub, NULL, NULL);
  ev_timer_stop(C->loop, &C->tick);
  ev_timer_stop(C->loop, &C->kick);
  while (C->pushes) push_remove(C, C->pushes);
  while (C->pulls) pull_remove(C, C->pulls);
  free(C);
}

/* ---- status ----------------------------------------------------------------- */

json_t *casc_status(const casc_t *C) {
  json_t *pushes = json_array(), *pulls = json_array();
  double now = C ? ev_now(C->loop) : 0;
  for (const casc_push_t *p = C ? C->pushes : NULL; p && pushes; p = p->next)
    json_array_append_new(
        pushes, json_pack("{s:s,s:s,s:o}", "path", p->path,
                          "state", p->running ? "pushing" : p->h ? "starting" : "waiting",
                          "last_error", p->last_error[0] ? json_string(p->last_error)
                                                         : json_null()));
  for (const casc_pull_t *p = C ? C->pulls : NULL; p && pulls; p = p->next)
    json_array_append_new(
        pulls,
        json_pack("{s:s,s:s,s:s,s:I,s:o,s:o}", "path", p->path, "source", p->shown, "state",
                  p->live ? (p->idle_since ? "lingering" : "pulling")
                  : (p->rh || p->ps) ? "waiting" : "retrying",
                  "failures", (json_int_t)p->fails,
                  "idle_s", p->idle_since ? json_real(now - p->idle_since) : json_null(),
                  "last_error", p->last_error[0] ? json_string(p->last_error) : json_null()));
  return json_pack("{s:b,s:o,s:o}", "autopush", C && C->ctl->rules.autopush, "pushes",
                   pushes ? pushes : json_array(), "pulls", pulls ? pulls : json_array());
}

char *casc_metrics(const casc_t *C) {
  unsigned np = 0, nr = 0, nl = 0;
  char *out = NULL;
  if (C == NULL) return NULL;
  for (const casc_push_t *p = C->pushes; p; p = p->next) np += p->running;
  for (const casc_pull_t *p = C->pulls; p; p = p->next) {
    nr++;
    nl += p->live;
  }
  if (asprintf(&out,
               "# TYPE cascade_pushes gauge\ncascade_pushes %u\n"
               "# TYPE cascade_pulls gauge\ncascade_pulls{state=\"all\"} %u\n"
               "cascade_pulls{state=\"live\"} %u\n"
               "# TYPE cascade_pushes_started_total counter\ncascade_pushes_started_total %llu\n"
               "# TYPE cascade_push_failures_total counter\ncascade_push_failures_total %llu\n"
               "# TYPE cascade_pulls_started_total counter\ncascade_pulls_started_total %llu\n"
               "# TYPE cascade_pull_failures_total counter\ncascade_pull_failures_total %llu\n"
               "# TYPE cascade_pulls_lingered_total counter\ncascade_pulls_lingered_total %llu\n",
               np, nr, nl, (unsigned long long)C->pushes_started,
               (unsigned long long)C->push_failures, (unsigned long long)C->pulls_started,
               (unsigned long long)C->pull_failures,
               (unsigned long long)C->pulls_lingered) < 0)
    return NULL;
  return out;
}
