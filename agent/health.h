/* The agent's probes (docs/operations.md, "Probes"): liveness from the
 * event loop's turns, readiness from the listeners and the configuration.
 * Pure: the caller passes the clock, so tests drive it. */
#ifndef CASCADE_AGENT_HEALTH_H
#define CASCADE_AGENT_HEALTH_H

#include <stddef.h>

/* How long /healthz keeps failing after a stall has ended, seconds: long
 * enough for a probe every few seconds to see it, short enough that one
 * stall alone does not reach the usual failure threshold (3 x 10 s). */
#define HEALTH_WINDOW_S 10.0

typedef struct health {
  double bound;      /* health.loopstall, seconds */
  double last_turn;  /* when the loop last ran the tick */
  double stall_end;  /* when the last turn longer than |bound| ended; 0: none */
  double stall_len;  /* how long that turn was */
} health_t;

/* health_interval is the period of the tick for a bound of |bound| s: a
 * quarter of it, at most one second. */
double health_interval(double bound);

/* health_init starts |h| at |now| with the bound |bound| (seconds). */
void health_init(health_t *h, double bound, double now);

/* health_tick records that the loop ran the tick at |now|: a gap since the
 * last one longer than the bound (plus the tick's own period, |interval|)
 * is a stall. */
void health_tick(health_t *h, double interval, double now);

/* health_live: 1 when the loop is alive at |now|; 0 with a reason in
 * |reason| when a stall ended less than HEALTH_WINDOW_S ago, or when the
 * loop has not run the tick for longer than the bound now (the request is
 * answered in the turn that ends a stall, maybe before the tick). */
int health_live(const health_t *h, double interval, double now, char *reason, size_t len);

/* health_ready: 1 when the media listeners are bound (|listening|) and a
 * configuration runs (|generation| > 0 acked, or |cached|: from the state
 * file); 0 with a reason otherwise. */
int health_ready(int listening, unsigned long long generation, int cached, char *reason,
                 size_t len);

#endif
