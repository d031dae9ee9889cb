/* The node's queue of stream management events (a kick, a drop through the
 * node's own API) waiting to reach the controller's audit trail with the
 * next heartbeat (docs/protocol.md, "Stream events"). Bounded: beyond
 * STREAMEV_MAX waiting events a new one is dropped and counted, never the
 * ones a heartbeat may be carrying. An event leaves only when the
 * controller answered the heartbeat that carried it. */
#ifndef CASCADE_AGENT_STREAMEV_H
#define CASCADE_AGENT_STREAMEV_H

#include <stddef.h>
#include <stdint.h>

#define STREAMEV_MAX 64
#define STREAMEV_PATH_MAX 1024

typedef struct streamev {
  uint64_t seq;                  /* from 1, set by streamev_push */
  int64_t time;                  /* unix seconds */
  char action[16];               /* "stream.kick" or "stream.drop" */
  char path[STREAMEV_PATH_MAX + 1];
  uint64_t connection;           /* 0 for a drop */
  char addr[64];
  char kind[16];                 /* "publisher", "player", "" */
  char protocol[16];
  uint32_t ended;                /* connections ended */
} streamev_t;

typedef struct streamev_q {
  streamev_t v[STREAMEV_MAX];    /* a ring: the oldest at head */
  size_t head, n;
  uint64_t seq;                  /* the last seq given */
  uint64_t dropped;              /* events refused because the queue was full */
} streamev_q_t;

/* streamev_init empties |q|. */
void streamev_init(streamev_q_t *q);

/* streamev_push queues a copy of |e| (its strings truncated to their
 * fields, control bytes, and in all but the path non-ASCII bytes, as '?')
 * with the next seq: 0, or -1 when the queue is full (counted in
 * dropped). */
int streamev_push(streamev_q_t *q, const streamev_t *e);

/* streamev_at is the |i|th waiting event from the oldest, or NULL. */
const streamev_t *streamev_at(const streamev_q_t *q, size_t i);

/* streamev_ack removes the |n| oldest events (at most those waiting). */
void streamev_ack(streamev_q_t *q, size_t n);

#endif
