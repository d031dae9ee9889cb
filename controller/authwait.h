/* The control gate's connections and their authentication deadline
 * (control.authtimeout), without I/O: until a node authenticates on a
 * connection, it must keep sending requests, or the control server closes
 * it. Time is a parameter; the control server holds its lock around these
 * calls and closes what authwait_expire returns. */
#ifndef CASCADE_AUTHWAIT_H
#define CASCADE_AUTHWAIT_H

#include <stddef.h>
#include <stdint.h>

#define AUTHWAIT_BUCKETS 4096

typedef struct authwait_ent {
  uint32_t id;               /* the control gate's connection id */
  int authed;                /* a live session's request came on it */
  int64_t last_ms;           /* added, or its last request */
  struct authwait_ent *next;
} authwait_ent_t;

typedef struct authwait {
  authwait_ent_t *b[AUTHWAIT_BUCKETS];
} authwait_t;

/* authwait_add notes connection |id| opened at |now| (replacing any entry
 * of the same id). -1 on out of memory (the connection is not watched). */
int authwait_add(authwait_t *t, uint32_t id, int64_t now);

/* authwait_remove forgets connection |id|. */
void authwait_remove(authwait_t *t, uint32_t id);

/* authwait_seen notes a request on |id| at |now|; |authed|: it carried a
 * live session (the connection is watched no more). */
void authwait_seen(authwait_t *t, uint32_t id, int64_t now, int authed);

/* authwait_expire puts in |ids| (at most |max|) the connections with no
 * authentication that were silent for more than |limit_ms| at |now|, and
 * restarts their clocks (they are being closed: not twice). Returns how
 * many. */
size_t authwait_expire(authwait_t *t, int64_t now, int64_t limit_ms, uint32_t *ids, size_t max);

/* authwait_clear forgets every connection. */
void authwait_clear(authwait_t *t);

#endif
