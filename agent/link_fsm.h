/* The reconnect state machine of an outbound link (the child's link to its
 * parent), after Open vSwitch's rconn: BACKOFF -> CONNECTING -> UP, any
 * failure back to BACKOFF with an exponential delay and full jitter.
 * Pure (no loop, no clock of its own): the caller passes the time, so the
 * unit test drives it with a virtual clock. */
#ifndef CASCADE_LINK_FSM_H
#define CASCADE_LINK_FSM_H

#include <stdint.h>

#define LINK_FSM_BASE_MS 100   /* first retry delay bound */
#define LINK_FSM_STABLE_S 1.0  /* up this long: the next failure starts over */

typedef enum {
  LINK_FSM_IDLE = 0,     /* nothing to link to */
  LINK_FSM_BACKOFF,      /* waiting until retry_at */
  LINK_FSM_CONNECTING,   /* handshake under way */
  LINK_FSM_UP,
} link_fsm_state_t;

typedef struct link_fsm {
  link_fsm_state_t state;
  unsigned attempt;      /* failures since the link was last stable */
  double since;          /* when |state| was entered */
  double retry_at;       /* BACKOFF: when to connect again */
  uint64_t connects;     /* attempts started */
  uint64_t failures;     /* attempts or links that ended in failure */
} link_fsm_t;

/* link_fsm_delay_ms is the full-jitter delay before attempt |n| (0 after
 * the first failure): |r| in [0, 1] times min(|cap_ms|, 100 ms * 2^n). */
long long link_fsm_delay_ms(unsigned n, long long cap_ms, double r);

/* link_fsm_init makes |f| IDLE at |now|. */
void link_fsm_init(link_fsm_t *f, double now);

/* link_fsm_start is "there is something to link to": from IDLE, connect at
 * once (BACKOFF with retry_at = now; attempts start over). */
void link_fsm_start(link_fsm_t *f, double now);

/* link_fsm_due tells whether a BACKOFF link should connect at |now|. */
int link_fsm_due(const link_fsm_t *f, double now);

/* link_fsm_connecting records an attempt started at |now|. */
void link_fsm_connecting(link_fsm_t *f, double now);

/* link_fsm_up records a link established (and verified) at |now|. */
void link_fsm_up(link_fsm_t *f, double now);

/* link_fsm_failed records that the attempt or the link ended at |now| and
 * enters BACKOFF; a link that had been up for LINK_FSM_STABLE_S starts the
 * delays over. |r| is a uniform draw in [0, 1]. Returns the delay in ms. */
long long link_fsm_failed(link_fsm_t *f, double now, long long cap_ms, double r);

/* link_fsm_stop returns to IDLE (nothing to link to) and forgets failures. */
void link_fsm_stop(link_fsm_t *f, double now);

/* link_fsm_state_name: down (IDLE), backoff, connecting, up. */
const char *link_fsm_state_name(link_fsm_state_t s);

#endif
