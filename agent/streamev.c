/* The node's queue of stream management events: see streamev.h. */
#include "streamev.h"

#include <string.h>

void streamev_init(streamev_q_t *q) { memset(q, 0, sizeof(*q)); }

int streamev_push(streamev_q_t *q, const streamev_t *e) {
  if (q->n >= STREAMEV_MAX) {
    q->dropped++;
    return -1;
  }
  streamev_t *o = &q->v[(q->head + q->n) % STREAMEV_MAX];
  *o = *e;
  /* a caller's unterminated field is cut, not read past */
  o->action[sizeof(o->action) - 1] = '\0';
  o->path[sizeof(o->path) - 1] = '\0';
  o->addr[sizeof(o->addr) - 1] = '\0';
  o->kind[sizeof(o->kind) - 1] = '\0';
  o->protocol[sizeof(o->protocol) - 1] = '\0';
  o->seq = ++q->seq;
  q->n++;
  return 0;
}

const streamev_t *streamev_at(const streamev_q_t *q, size_t i) {
  return i < q->n ? &q->v[(q->head + i) % STREAMEV_MAX] : NULL;
}

void streamev_ack(streamev_q_t *q, size_t n) {
  if (n > q->n) n = q->n;
  q->head = (q->head + n) % STREAMEV_MAX;
  q->n -= n;
  if (q->n == 0) q->head = 0;
}
