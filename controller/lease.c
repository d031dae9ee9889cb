/* Lease decisions: see lease.h. */
#include "lease.h"

int lease_renew_due(int64_t now_ms, int64_t last_ms, int64_t lease_ms) {
  return last_ms == 0 || now_ms - last_ms >= lease_ms / 3;
}

lease_verdict_t lease_verdict(int claimed, int renewed) {
  if (renewed) return claimed ? LEASE_KEEP : LEASE_CLAIM;
  return claimed ? LEASE_LOST : LEASE_KEEP;
}
