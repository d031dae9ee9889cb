/* Bookkeeping of the connections in front of a listener, without I/O: how
 * many there are in all and per client address, and the deadline each must
 * meet (a handshake, a request head). The control gate (ctlgate.c) and the
 * HTTP server's header deadline (http.c) keep one each; the owner locks. */
#ifndef CASCADE_CONNTRACK_H
#define CASCADE_CONNTRACK_H

#include <stddef.h>
#include <stdint.h>

struct sockaddr;

#define CONNTRACK_KEY_LEN 16

#define CONNTRACK_FULL (-2)      /* the total cap is reached */
#define CONNTRACK_ADDR_FULL (-3) /* the per-address cap is reached */

typedef struct conntrack_peer conntrack_peer_t;

/* One tracked connection, embedded in its owner's struct (the owner frees
 * it, after conntrack_del). */
typedef struct conntrack_entry {
  int64_t deadline_ms;                 /* 0: none */
  struct conntrack_entry *prev, *next; /* the deadline queue */
  int queued;
  int added;
  conntrack_peer_t *peer;              /* its address's count, when counted */
} conntrack_entry_t;

typedef struct conntrack {
  size_t max_total;                    /* 0: no cap */
  size_t max_per_addr;                 /* 0: no cap (addresses are not counted) */
  int64_t timeout_ms;                  /* 0: no deadline */
  size_t count;
  conntrack_entry_t *head, *tail;      /* deadlines, earliest first */
  conntrack_peer_t **buckets;          /* owned: per-address counts */
  size_t nbuckets, npeers;
  uint32_t seed;
} conntrack_t;

/* conntrack_key turns a client address into the key it is counted under:
 * an IPv4 address (also IPv4-mapped IPv6) as itself, an IPv6 address by
 * its /64 prefix (one host or network usually holds a whole /64). Returns
 * 0, or -1 for another family. */
int conntrack_key(const struct sockaddr *sa, uint8_t key[CONNTRACK_KEY_LEN]);

/* conntrack_init prepares |ct| with the caps (0: none) and the deadline
 * each added connection gets (0: none); |seed| randomises the hash. */
int conntrack_init(conntrack_t *ct, size_t max_total, size_t max_per_addr, int64_t timeout_ms,
                   uint32_t seed);

/* conntrack_free frees the per-address table; accepts NULL and an
 * unused |ct|. Entries still added are the owners' to free. */
void conntrack_free(conntrack_t *ct);

/* conntrack_add counts connection |e| from |key| at |now_ms| and queues
 * its deadline. Returns 0, CONNTRACK_FULL, CONNTRACK_ADDR_FULL (nothing
 * changed) or -1 when out of memory. */
int conntrack_add(conntrack_t *ct, conntrack_entry_t *e, const uint8_t key[CONNTRACK_KEY_LEN],
                  int64_t now_ms);

/* conntrack_settle: |e| met its deadline (handshake done); it has none now. */
void conntrack_settle(conntrack_t *ct, conntrack_entry_t *e);

/* conntrack_rearm gives |e| a new deadline from |now_ms| (the next request
 * on a kept-alive connection). */
void conntrack_rearm(conntrack_t *ct, conntrack_entry_t *e, int64_t now_ms);

/* conntrack_del forgets |e| (closed); accepts an entry never added. */
void conntrack_del(conntrack_t *ct, conntrack_entry_t *e);

/* conntrack_expired takes off the queue and returns a connection whose
 * deadline is at or before |now_ms| (still counted: the owner closes it
 * and calls conntrack_del), or NULL. */
conntrack_entry_t *conntrack_expired(conntrack_t *ct, int64_t now_ms);

/* conntrack_next_deadline is the earliest deadline queued, 0 for none. */
int64_t conntrack_next_deadline(const conntrack_t *ct);

/* conntrack_addr_count is how many connections |key| has (0 when
 * addresses are not counted). */
size_t conntrack_addr_count(const conntrack_t *ct, const uint8_t key[CONNTRACK_KEY_LEN]);

#endif
