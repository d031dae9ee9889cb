/* Control link backoff: see agent_backoff.h. */
#include "agent_backoff.h"

long long agent_backoff_ms(unsigned n, long long cap_ms, double r) {
  long long d = AGENT_BACKOFF_BASE_MS;
  if (r < 0) r = 0;
  if (r > 1) r = 1;
  /* Doubling stops at the cap, so no shift can overflow whatever |n| is. */
  for (unsigned i = 0; i < n && d < cap_ms; i++) d *= 2;
  if (d > cap_ms) d = cap_ms;
  return (long long)((double)d * (0.5 + r / 2));
}

long long agent_failover_ms(unsigned n, long long cap_ms, int lost, double r) {
  if (r < 0) r = 0;
  if (r > 1) r = 1;
  if (lost) {
    long long lo = AGENT_BACKOFF_BASE_MS / 5, hi = AGENT_FAILOVER_SPREAD_MS;
    if (hi > cap_ms) hi = cap_ms;
    if (hi < lo) hi = lo;
    return lo + (long long)((double)(hi - lo) * r);
  }
  return agent_backoff_ms(n, cap_ms < AGENT_FAILOVER_CAP_MS ? cap_ms : AGENT_FAILOVER_CAP_MS, r);
}

long long agent_patience_ms(long long base_ms, long long cap_ms, unsigned slow) {
  long long ms = base_ms;
  for (unsigned i = 0; i < slow && ms < cap_ms; i++) ms *= 2;
  return ms < cap_ms ? ms : cap_ms;
}

double agent_rng_next(uint64_t *state) {
  uint64_t x = *state ? *state : 0x9e3779b97f4a7c15ull;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *state = x;
  return (double)((x * 0x2545f4914f6cdd1dull) >> 11) / (double)(1ull << 53);
}

size_t agent_first_url(const char *name, size_t n) {
  if (n < 2) return 0;
  uint64_t h = 14695981039346656037ull; /* FNV-1a, 64 bits */
  for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 1099511628211ull;
  h ^= h >> 29; /* the low bits of FNV alone spread short names poorly */
  return (size_t)(h % n);
}
