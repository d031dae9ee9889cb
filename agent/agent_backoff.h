/* Reconnect delay of the control link: min(cap, 500 ms * 2^n) scaled by a
 * factor in [0.5, 1] (docs/protocol.md, "Backoff"). Pure functions, so the
 * bounds are testable without a clock. */
#ifndef CASCADE_AGENT_BACKOFF_H
#define CASCADE_AGENT_BACKOFF_H

#include <stdint.h>

#define AGENT_BACKOFF_BASE_MS 500

/* agent_backoff_ms is the delay before attempt |n| (0 after the first
 * failure) with cap |cap_ms|; |r| in [0, 1] is a uniform random draw and
 * maps to the jitter factor 0.5 + r / 2. */
long long agent_backoff_ms(unsigned n, long long cap_ms, double r);

/* agent_rng_next advances a xorshift64* state (never 0) and returns a draw
 * in [0, 1]. Jitter only: not for anything secret. */
double agent_rng_next(uint64_t *state);

#endif
