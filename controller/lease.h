/* Session leases of a replica (docs/architecture.md, "Replicas"): when to
 * renew, and what a renewal's answer means for each local session. The
 * statements themselves are in db.c (DB_REPLICA_RENEW, DB_CTL_SWEEP). */
#ifndef CASCADE_LEASE_H
#define CASCADE_LEASE_H

#include <stdint.h>

/* lease_renew_due: a renewal is due at |now_ms| after the last at
 * |last_ms| (0: never) with leases of |lease_ms|: every third of a lease,
 * so that two renewals can fail before a lease runs out. */
int lease_renew_due(int64_t now_ms, int64_t last_ms, int64_t lease_ms);

typedef enum {
  LEASE_KEEP = 0,   /* nothing to change */
  LEASE_CLAIM,      /* the row is ours now (the renewal inserted or took it back) */
  LEASE_LOST,       /* another replica holds the row: end the local session */
} lease_verdict_t;

/* lease_verdict: a local session that was |claimed| (its row ours as of the
 * connect or an earlier renewal), and whether the renewal returned its row
 * (|renewed|). A session not yet claimed is never lost: its connect may
 * still be on its way to the database. */
lease_verdict_t lease_verdict(int claimed, int renewed);

#endif
