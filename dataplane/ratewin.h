/* A sliding-window byte rate: bytes counted in RATEWIN_SLOTS time slots
 * covering a window of a second or two, read as bits per second. The clock
 * is passed in (ev_now on the agent's loop, any monotonic seconds in
 * tests), so the unit does no I/O and holds no global state. Adding is a
 * few arithmetic operations: it runs once per write on the media path. */
#ifndef CASCADE_RATEWIN_H
#define CASCADE_RATEWIN_H

#include <stdint.h>

#define RATEWIN_SLOTS 8

typedef struct ratewin {
  double slot_s;                  /* one slot's span: the window / RATEWIN_SLOTS */
  int64_t cur;                    /* index of the newest slot (time / slot_s); -1: none */
  uint64_t bytes[RATEWIN_SLOTS];  /* bytes of slot i at bytes[i % RATEWIN_SLOTS] */
  double start;                   /* first add: the window is shorter before it is full */
} ratewin_t;

/* ratewin_init empties |w| for a window of |window_s| seconds (at least
 * 0.1; a non-positive value takes 2 s). */
void ratewin_init(ratewin_t *w, double window_s);

/* ratewin_add counts |bytes| at time |now| (seconds). A clock that goes
 * back counts into the newest slot. */
void ratewin_add(ratewin_t *w, double now, uint64_t bytes);

/* ratewin_bps is the rate over the window ending at |now|, in bits per
 * second: the bytes of the slots still inside it over the time they span
 * (from the first add while the window is not yet full, at least one slot). */
uint64_t ratewin_bps(const ratewin_t *w, double now);

#endif
