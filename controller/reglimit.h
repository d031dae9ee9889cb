/* Limits on what unauthenticated peers can make the controller store: new
 * registrations per source address and overall, in fixed windows. Pure
 * logic with the clock passed in (tests/unit/test_reglimit.c). */
#ifndef CASCADE_REGLIMIT_H
#define CASCADE_REGLIMIT_H

#include <pthread.h>
#include <stdint.h>

#define REGLIMIT_SLOTS 1024

typedef struct {
  char addr[48];
  int64_t start_ms;
  long long count;
} reglimit_slot_t;

typedef struct reglimit {
  pthread_mutex_t mu;               /* guards everything below */
  int64_t window_ms;
  long long per_addr, total;
  int64_t total_start_ms;
  long long total_count;
  reglimit_slot_t slots[REGLIMIT_SLOTS];
} reglimit_t;

/* reglimit_init allows |per_addr| per address and |total| overall in each
 * window of |window_ms|. */
void reglimit_init(reglimit_t *l, long long per_addr, long long total, int64_t window_ms);
void reglimit_free(reglimit_t *l);

/* reglimit_check tells whether |addr| is under both limits at |now_ms|
 * (1) or not (0), without counting. */
int reglimit_check(reglimit_t *l, const char *addr, int64_t now_ms);

/* reglimit_count counts one for |addr| (and overall) at |now_ms|. */
void reglimit_count(reglimit_t *l, const char *addr, int64_t now_ms);

/* reglimit_take is check and count in one: 1 when allowed (and counted). */
int reglimit_take(reglimit_t *l, const char *addr, int64_t now_ms);

#endif
