/* The connection registry: every connection that publishes or plays a
 * stream on this node (RTMP, HTTP-FLV, and the QUIC relay's pushes and
 * pulls) as one entry with an id, what it is, where it comes from and how
 * many bytes it moved, for the node's management API (list, kick, drop),
 * and the node's limits on new players (players per stream, outgoing
 * bandwidth to players).
 *
 * An entry lives inside the structure of the connection that owns it (no
 * allocation on the media path); its byte counts are read through pointers
 * to the owner's own counters. The registry only links entries and hands
 * out ids: an owner registers an entry when the connection becomes a
 * publisher or player and removes it when that ends, always before the
 * entry's memory goes. A kick asks the owner, through the entry's kick
 * function, to end the connection the way its protocol ends a stream.
 * Single-threaded, on the loop that runs the media path. */
#ifndef CASCADE_CONNREG_H
#define CASCADE_CONNREG_H

#include <stddef.h>
#include <stdint.h>

#include "ratewin.h"

#define CONNREG_ADDR_MAX 64
#define CONNREG_EGRESS_WINDOW_S 2.0   /* the egress rate is read over this window */

/* What a connection is to its stream. */
enum { CONNREG_PUBLISHER = 1, CONNREG_PLAYER = 2 };

/* Refusals of connreg_play_check. */
#define CONNREG_EPLAYERS (-1)         /* the stream has max_players players */
#define CONNREG_EBANDWIDTH (-2)       /* the node sends max_bps or more to players */

typedef struct connreg_ent connreg_ent_t;

/* Ends the connection of |e| (a kick): the owner ends it as its protocol
 * ends a stream and removes |e|, now or later; the caller does not touch
 * |e| after the call. */
typedef void (*connreg_kick_fn)(connreg_ent_t *e, void *arg);

struct connreg_ent {
  connreg_ent_t *prev, *next;          /* in the registry, oldest first */
  uint64_t id;                         /* 1.., unique per registry; 0: not registered */
  int kind;                            /* CONNREG_PUBLISHER or CONNREG_PLAYER */
  int kicked;                          /* a kick was asked for */
  const char *protocol;                /* static: "rtmp", "httpflv", "quic-push", ... */
  char *path;                          /* owned copy: the stream path */
  char addr[CONNREG_ADDR_MAX];         /* client ip:port, or the link's peer */
  const uint64_t *bytes_in, *bytes_out; /* the owner's counters; NULL reads 0 */
  double since;                        /* wall-clock seconds when registered */
  connreg_kick_fn kick;
  void *kick_arg;
};

typedef struct connreg {
  connreg_ent_t *head, *tail;
  size_t count;
  uint64_t last_id;
  unsigned max_players;                /* per stream; 0: no limit */
  uint64_t max_bps;                    /* bits/s sent to players; 0: no limit */
  ratewin_t egress;                    /* bytes sent to players (RTMP, HTTP-FLV) */
  uint64_t egress_total;
  uint64_t refused_players, refused_bandwidth, kicks;
} connreg_t;

/* connreg_init empties |r|: no entries, no limits. */
void connreg_init(connreg_t *r);

/* connreg_fini unlinks every entry still registered (their owners must not
 * use the registry afterwards). */
void connreg_fini(connreg_t *r);

/* connreg_set_limits sets the players per stream (0: none) and the bits/s
 * to players (0: none) above which new players are refused. */
void connreg_set_limits(connreg_t *r, unsigned max_players, uint64_t max_bps);

/* connreg_add registers |e| (zeroed or removed before) with a new id:
 * |kind|, static |protocol|, |path| (copied), |addr| (copied, truncated),
 * the owner's byte counters (either may be NULL), |now| and its kick
 * function. 0, or -1 when out of memory (|e| then stays unregistered). */
int connreg_add(connreg_t *r, connreg_ent_t *e, int kind, const char *protocol,
                const char *path, const char *addr, const uint64_t *bytes_in,
                const uint64_t *bytes_out, double now, connreg_kick_fn kick, void *kick_arg);

/* connreg_remove unregisters |e|; accepts NULL and an entry not registered. */
void connreg_remove(connreg_t *r, connreg_ent_t *e);

/* connreg_find is the entry of id |id|, or NULL. */
connreg_ent_t *connreg_find(connreg_t *r, uint64_t id);

/* connreg_kick ends the connection of entry |id|: 0, or -1 when there is
 * no such entry. */
int connreg_kick(connreg_t *r, uint64_t id);

/* connreg_kick_path kicks every entry of |kind| on |path| not kicked yet
 * and returns how many. A kick may remove other entries: the walk starts
 * over after each. */
unsigned connreg_kick_path(connreg_t *r, const char *path, int kind);

/* connreg_count_path counts the entries of |kind| on |path|. */
unsigned connreg_count_path(const connreg_t *r, const char *path, int kind);

/* connreg_egress counts |bytes| sent to a player at |now|. */
static inline void connreg_egress(connreg_t *r, double now, uint64_t bytes) {
  r->egress_total += bytes;
  ratewin_add(&r->egress, now, bytes);
}

/* connreg_egress_bps is the rate sent to players over the last
 * CONNREG_EGRESS_WINDOW_S, in bits/s. */
uint64_t connreg_egress_bps(const connreg_t *r, double now);

/* connreg_play_check tells whether a new player of a stream that has
 * |players| players may start at |now|: 0, or CONNREG_EPLAYERS /
 * CONNREG_EBANDWIDTH with the reason a client is told in |why| (counted
 * in refused_*). */
int connreg_play_check(connreg_t *r, unsigned players, double now, char *why, size_t len);

#endif
