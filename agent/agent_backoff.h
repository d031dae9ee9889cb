/* Reconnect delay of the control link: min(cap, 500 ms * 2^n) scaled by a
 * factor in [0.5, 1] (docs/protocol.md, "Backoff"). Pure functions, so the
 * bounds are testable without a clock. */
#ifndef CASCADE_AGENT_BACKOFF_H
#define CASCADE_AGENT_BACKOFF_H

#include <stddef.h>
#include <stdint.h>

#define AGENT_BACKOFF_BASE_MS 500

/* agent_backoff_ms is the delay before attempt |n| (0 after the first
 * failure) with cap |cap_ms|; |r| in [0, 1] is a uniform random draw and
 * maps to the jitter factor 0.5 + r / 2. */
long long agent_backoff_ms(unsigned n, long long cap_ms, double r);

#define AGENT_FAILOVER_CAP_MS 2000   /* several URLs: longest wait before the next one */
#define AGENT_FAILOVER_SPREAD_MS 3000 /* a lost session: the move is spread over this */

/* agent_failover_ms is the delay before trying the next of several
 * controller URLs after failure |n| (0: the first). After a session that
 * had authenticated (|lost|), the delay is uniform over
 * [AGENT_BACKOFF_BASE_MS / 5, AGENT_FAILOVER_SPREAD_MS], so the agents of
 * a replica that went away do not all reach the next one at once; after a
 * failed attempt it is agent_backoff_ms capped at AGENT_FAILOVER_CAP_MS
 * (and |cap_ms|), so every URL is tried again within a few seconds. */
long long agent_failover_ms(unsigned n, long long cap_ms, int lost, double r);

#define AGENT_CONNECT_BASE_MS 2000  /* several URLs: no connection this long, the next one */
#define AGENT_CONNECT_CAP_MS 8000
#define AGENT_ANSWER_BASE_MS 4000   /* several URLs: no answer this long, the next one */
#define AGENT_ANSWER_CAP_MS 10000   /* what an agent with one URL always waits */

/* agent_patience_ms is how long an agent with several controller URLs
 * waits for a connection (base AGENT_CONNECT_BASE_MS, cap
 * AGENT_CONNECT_CAP_MS) or an answer (AGENT_ANSWER_*) after |slow| waits
 * in a row that ran out since it last ran: |base_ms| doubled per such
 * wait, at most |cap_ms|. A dead replica is left after |base_ms| (a session
 * that was running starts again at 0); replicas that are all slow, as in
 * a storm of agents after a restart, are waited for longer instead of
 * being left half-way through a handshake for another equally busy one. */
long long agent_patience_ms(long long base_ms, long long cap_ms, unsigned slow);

/* agent_first_url picks which of |n| controller URLs node |name| tries
 * first: a stable hash of the name, so a fleet given the same list spreads
 * evenly over the replicas and a node goes back to the same one after a
 * restart (0 when |n| is 0 or 1). */
size_t agent_first_url(const char *name, size_t n);

/* agent_rng_next advances a xorshift64* state (never 0) and returns a draw
 * in [0, 1]. Jitter only: not for anything secret. */
double agent_rng_next(uint64_t *state);

#endif
