/* The agent context: everything one agent process runs, owned by main()
 * and passed down; no globals, so two agents can live in one test. */
#ifndef CASCADE_AGENT_H
#define CASCADE_AGENT_H

#include <ev.h>

#include "agent_config.h"
#include "cascade.h"
#include "ctlc.h"
#include "health.h"
#include "links.h"
#include "media.h"
#include "relayc.h"
#include "streamev.h"

typedef struct agent {
  struct ev_loop *loop;          /* not owned: created by main */
  agent_config_t *cfg;           /* not owned */
  ctlc_hub_t hub;
  ctlc_t *ctl;                   /* the control client (normal mode) */
  ctlc_t **sim;                  /* --simulate: nsim clients */
  size_t nsim;
  media_t media;                 /* streams, RTMP, HTTP-FLV and the local API listener */
  links_t *links;                /* QUIC links to the parent and children */
  casc_t *casc;                  /* autopush and on-demand pull over the links */
  relayc_t *relays;              /* the API relay's requests to our admin listener */
  int media_on;
  int draining;                  /* SIGTERM: stopping (readiness fails) */
  ev_signal sigint, sigterm;
  ev_timer sim_report;
  health_t health;               /* the loop's turns, for /healthz */
  ev_timer health_tick;
  double drain_start;
  ev_timer drain_check, drain_deadline;
  streamev_q_t events;           /* kicks and drops for the controller's audit trail */
} agent_t;

/* agent_status_json renders the "data" object of GET /api/cascade/status
 * for client |c| and its links |l| (may be NULL), with the media node's
 * limits and egress rate when |m| is running (may be NULL) (never a
 * secret). NULL on out of memory. */
char *agent_status_json(const ctlc_t *c, const links_t *l, const casc_t *casc,
                        const agent_config_t *cfg, media_t *m);

#define AGENT_LINKTEST_SHOW 0
#define AGENT_LINKTEST_START 1

/* agent_linktest_parse says what a request to /api/cascade/linktest with
 * |method| and |query| asks: AGENT_LINKTEST_SHOW (GET, HEAD),
 * AGENT_LINKTEST_START (POST with bytes=N; N goes to |bytes|, its range is
 * the link test's to check), or the HTTP error status: 405 for GET/HEAD
 * with bytes= (starting needs POST) and for other methods, 400 for a POST
 * without a decimal bytes=. */
int agent_linktest_parse(const char *method, const char *query, unsigned long long *bytes);

/* agent_start builds the agent on |loop|: local API, then the control
 * client, or |nsim| simulated clients and no local API when nsim > 0.
 * Returns 0 or -1 with |err| set (and |a| cleaned up). */
int agent_start(agent_t *a, struct ev_loop *loop, agent_config_t *cfg, size_t nsim, char *err,
                size_t errlen);

/* agent_stop closes every session and the local API and frees |a|'s
 * values. Accepts a zeroed or failed agent. */
void agent_stop(agent_t *a);

#endif
