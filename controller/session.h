/* The control sessions' bookkeeping, without I/O (docs/architecture.md,
 * "Control channel"): the session table by node id and by token, the long
 * poll parked in each session and when it must be answered (the desired
 * generation moved, a relay request was queued, the poll timed out), the
 * generations desired and applied, the relay requests queued per node and
 * the lease state of each session. Time is a parameter; nothing here locks,
 * allocates sessions, sends or reads: ctlsrv.c holds its lock around these
 * calls, owns the memory and does the network and database work.
 *
 * A session is embedded as the first member of the control server's own
 * struct (and a parked poll as the first member of its parked context), so
 * the core never needs to know what else they hold. */
#ifndef CASCADE_SESSION_H
#define CASCADE_SESSION_H

#include <stddef.h>
#include <stdint.h>

#define SESS_TOKEN_LEN 16          /* CTLMSG_SESSION_LEN */
#define SESS_BUCKETS 16384
#define SESS_RELAYS_MAX 16         /* relay requests queued for one node; the API relay's
                                    * registry admits no more (RELAY_MAX_PER_NODE) */

/* A parked long poll (or a relay ack held back), as the core sees it. */
typedef struct sess_park {
  uint64_t req_id;           /* the request it answers */
  uint64_t known;            /* the generation the node said it knows */
  int64_t since_ms;          /* parked at */
} sess_park_t;

/* One relay request waiting for the node's next poll; |item| is the
 * caller's (a reference it holds until the entry is released). */
typedef struct sess_relay {
  void *item;
  struct sess_relay *next;
} sess_relay_t;

typedef struct sess {
  uint8_t token[SESS_TOKEN_LEN];
  int64_t id;                /* the node */
  int64_t epoch;             /* its secret_epoch when it authenticated */
  int64_t last_hb_ms;        /* authenticated, or its last heartbeat */
  uint64_t applied;          /* the generation the node last said it runs */
  uint64_t desired;          /* the registry's, as of the last reconcile; 0 unknown */
  int hb_dirty;              /* a heartbeat not yet written to the database */
  int revoked;               /* replaced, deleted, secret changed or taken over */
  int64_t revoked_ms;
  int claimed;               /* this replica holds the node's session row */
  sess_park_t *park;         /* the parked poll, or NULL; the caller owns its memory */
  sess_relay_t *relays, *relays_tail; /* owned: relay requests not yet sent */
  size_t nrelays;
  struct sess *tok_next;     /* in the token table; after sess_remove, free for the caller */
  struct sess *id_next;
} sess_t;

typedef struct sess_table {
  sess_t *by_token[SESS_BUCKETS];
  sess_t *by_id[SESS_BUCKETS];
  size_t n;
} sess_table_t;

/* ---- the table ---- */

/* sess_table_init empties |t|. */
void sess_table_init(sess_table_t *t);

/* sess_find_token is the session holding |token| (revoked ones too: the
 * caller tells "revoked" from "no such session"), or NULL. */
sess_t *sess_find_token(sess_table_t *t, const uint8_t *token);

/* sess_find_id is node |id|'s live (not revoked) session, or NULL. */
sess_t *sess_find_id(sess_table_t *t, int64_t id);

/* sess_add inserts |n| (token, id and epoch set by the caller). A live
 * session of the same node is revoked at |now| (sess_revoke: its parked
 * poll and queued relays go to *old_park and *old_relays) and returned;
 * NULL when there was none. */
sess_t *sess_add(sess_table_t *t, sess_t *n, int64_t now, sess_park_t **old_park,
                 sess_relay_t **old_relays);

/* sess_remove unlinks |x| from both tables; the caller frees it. */
void sess_remove(sess_table_t *t, sess_t *x);

/* sess_count: sessions in the table, revoked ones included. */
size_t sess_count(const sess_table_t *t);

/* sess_foreach calls |fn| for every session; |fn| may sess_remove the one
 * it is given (and reuse its tok_next). */
void sess_foreach(sess_table_t *t, void (*fn)(sess_t *x, void *arg), void *arg);

/* sess_revoke ends |x| at |now|: revoked, its parked poll to *park and its
 * queued relays to *relays (both NULL when it had none). */
void sess_revoke(sess_t *x, int64_t now, sess_park_t **park, sess_relay_t **relays);

/* sess_expired: |x| is to be removed at |now|: live but silent for more
 * than |silent_ms|, or revoked for more than |revoked_ttl_ms|. 2 for the
 * former (the node is offline), 1 for the latter, 0 to keep. */
int sess_expired(const sess_t *x, int64_t now, int64_t silent_ms, int64_t revoked_ttl_ms);

/* ---- generations and heartbeats ---- */

/* sess_heartbeat records a heartbeat at |now| of a node that runs
 * generation |applied|; returns the desired generation to tell it. */
uint64_t sess_heartbeat(sess_t *x, int64_t now, uint64_t applied);

/* sess_take_heartbeat: 1 with *applied when |x| has a heartbeat to write
 * (once per heartbeat; none for a revoked session). */
int sess_take_heartbeat(sess_t *x, uint64_t *applied);

typedef enum {
  SESS_KEEP = 0,             /* nothing to answer */
  SESS_ANSWER,               /* the desired generation moved: answer the poll in *park */
  SESS_DELETED,              /* the node is gone: revoked */
  SESS_SECRET,               /* its secret changed: revoked */
} sess_reconcile_t;

/* sess_reconcile applies the registry's row of |x|'s node: generation
 * |gen| (-1: no row, the node was deleted) and secret epoch |epoch|. When
 * revoked, *park and *relays get what sess_revoke takes; for SESS_ANSWER
 * *park is the parked poll, which no longer belongs to the session. */
sess_reconcile_t sess_reconcile(sess_t *x, int64_t gen, int64_t epoch, int64_t now,
                                sess_park_t **park, sess_relay_t **relays);

/* ---- parked polls ---- */

/* sess_park_set parks |p| (known generation and time set by the caller) in
 * |x| and records |desired|; returns the poll parked before (answer it
 * with nothing new), or NULL. */
sess_park_t *sess_park_set(sess_t *x, sess_park_t *p, uint64_t desired);

/* sess_park_take takes |x|'s parked poll, or NULL. */
sess_park_t *sess_park_take(sess_t *x);

/* sess_poll_timeout takes |x|'s parked poll when it has waited more than
 * |timeout_ms| at |now|; else NULL. */
sess_park_t *sess_poll_timeout(sess_t *x, int64_t now, int64_t timeout_ms);

/* ---- relay requests queued for the node ---- */

/* sess_relay_push queues |item| after the others. When a poll is parked,
 * it is taken into *answer (it must be answered now with the queue).
 * 0, or -1 when the queue holds SESS_RELAYS_MAX already or on out of
 * memory (nothing queued, *answer untouched). */
int sess_relay_push(sess_t *x, void *item, sess_park_t **answer);

/* sess_relays_take takes, in order, the queued requests that fit in one
 * answer: at most |max_n|, and no more than |max_bytes| by |size| (which
 * may say 0: a request over); at least one when any is queued. NULL when
 * the queue is empty. */
sess_relay_t *sess_relays_take(sess_t *x, size_t max_n, size_t max_bytes,
                               size_t (*size)(void *item));

/* sess_relays_free frees list |r|, calling |release| on each item. */
void sess_relays_free(sess_relay_t *r, void (*release)(void *item));

/* ---- leases ---- */

/* sess_lease_apply applies a lease renewal's answer (|renewed|: it
 * returned the session's row) to |x| (lease_verdict). LEASE_LOST revokes
 * |x| (*park, *relays as sess_revoke). Returns the lease_verdict_t. */
int sess_lease_apply(sess_t *x, int renewed, int64_t now, sess_park_t **park,
                     sess_relay_t **relays);

#endif
