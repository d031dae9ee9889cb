/* The node's queue of stream management events: see streamev.h. */
#include "streamev.h"

#include <string.h>

void streamev_init(streamev_q_t *q) { memset(q, 0, sizeof(*q)); }

/* printable keeps |s| within what the controller takes (docs/protocol.md,
 * "Bounds"): control bytes, and with |ascii| non-ASCII ones, become '?', so
 * that an event can never make the controller refuse the heartbeats. */
static void printable(char *s, int ascii) {
  for (unsigned char *p = (unsigned char *)s; *p; p++)
    if (*p < 0x20 || *p == 0x7f || (ascii && *p >= 0x80)) *p = '?';
}

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
  printable(o->action, 1);
  printable(o->path, 0);
  printable(o->addr, 1);
  printable(o->kind, 1);
  printable(o->protocol, 1);
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
