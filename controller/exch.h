/* The SCRAM exchanges of the control channel between AuthStart and
 * AuthFinish (docs/protocol.md), without I/O: a table by handle with a cap
 * and a time to live, time a parameter. The control server embeds an
 * exch_entry_t as the first member of its own exchange (verifier, node,
 * auth message), holds its lock around these calls and frees the entries. */
#ifndef CASCADE_EXCH_H
#define CASCADE_EXCH_H

#include <stddef.h>
#include <stdint.h>

#define EXCH_HANDLE_LEN 16         /* CTLMSG_SESSION_LEN: AuthChallenge.exchange */
#define EXCH_BUCKETS 4096
#define EXCH_MAX 65536             /* exchanges held at once */
#define EXCH_TTL_MS 10000          /* an AuthFinish must come within this */

typedef struct exch_entry {
  uint8_t handle[EXCH_HANDLE_LEN];
  int64_t created_ms;
  struct exch_entry *next;
} exch_entry_t;

typedef struct exch_table {
  exch_entry_t *b[EXCH_BUCKETS];
  size_t n;
} exch_table_t;

/* exch_add files |e| (handle and creation time set). 0, or -1 when the
 * table holds EXCH_MAX already (nothing filed). */
int exch_add(exch_table_t *t, exch_entry_t *e);

/* exch_take removes and returns the exchange of |handle|, or NULL: an
 * exchange is used once. */
exch_entry_t *exch_take(exch_table_t *t, const uint8_t *handle);

/* exch_live: |e| is within EXCH_TTL_MS of its creation at |now|. */
int exch_live(const exch_entry_t *e, int64_t now);

/* exch_expire removes the exchanges no longer live at |now| and returns
 * them as a list by next, for freeing. */
exch_entry_t *exch_expire(exch_table_t *t, int64_t now);

/* exch_drain removes every exchange and returns them as a list by next. */
exch_entry_t *exch_drain(exch_table_t *t);

/* exch_count: exchanges held. */
size_t exch_count(const exch_table_t *t);

#endif
