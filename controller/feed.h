/* The live feed's pure parts (docs/api.md, "Live feed"): the ring of
 * recent events every reader resumes from, the rule that takes rows of
 * feed_events in id order without skipping one still being committed, the
 * parsers of Last-Event-ID, since= and wait=, and the Server-Sent Events
 * text. No I/O, no clock of their own: api_feed.c drives them. */
#ifndef CASCADE_FEED_H
#define CASCADE_FEED_H

#include <stddef.h>
#include <stdint.h>

#define FEED_KIND_MAX 16          /* "generation" and the like, with its NUL */
#define FEED_DATA_MAX 65536       /* one event's JSON, bytes; longer rows are refused */
#define FEED_ID_DIGITS 18         /* an event id: 1 to 18 decimal digits */
#define FEED_WAIT_MAX 30          /* seconds a long poll may wait */
#define FEED_KEEPALIVE_MS 15000   /* ": keepalive" on an idle event stream */
#define FEED_GAP_HOLD_MS 2000     /* how long a missing id holds back later ones */

typedef struct {
  int64_t id;
  char kind[FEED_KIND_MAX];
  char *data;                     /* owned; one line of JSON, NUL-terminated */
  size_t len;
} feed_event_t;

/* Recent events in id order. Every event with an id above |base| that was
 * taken from the database is held: a reader that has seen |base| or later
 * resumes without a loss. */
typedef struct {
  feed_event_t *v;                /* owned; cap slots */
  size_t cap;
  size_t head;                    /* slot of the oldest */
  size_t n;
  int64_t base;                   /* id of the newest event no longer held (or the start) */
  int64_t last;                   /* id of the newest event held (base when empty) */
} feed_ring_t;

/* feed_ring_init makes an empty ring of |cap| (> 0) events starting after
 * id 0. 0, or -1 out of memory. */
int feed_ring_init(feed_ring_t *r, size_t cap);

/* feed_ring_free frees the events and slots; accepts NULL. */
void feed_ring_free(feed_ring_t *r);

/* feed_ring_reset empties |r| and makes it start after |base|. */
void feed_ring_reset(feed_ring_t *r, int64_t base);

/* feed_ring_push appends an event (|data| copied, |len| bytes), dropping
 * the oldest when full. 0; -1 when |id| is not above the newest held or
 * |kind| or |data| is too long or holds a newline (nothing changes), -2 out
 * of memory. */
int feed_ring_push(feed_ring_t *r, int64_t id, const char *kind, const char *data, size_t len);

/* feed_ring_next finds the first event after id |after| for a reader:
 * 1 with |*ev| (valid until the next push), 0 when the reader is up to
 * date, -1 when it cannot resume: events after |after| were dropped
 * (after < base) or |after| is newer than anything taken (after > last). */
int feed_ring_next(const feed_ring_t *r, int64_t after, const feed_event_t **ev);

/* Taking rows in id order. Ids are drawn when a transaction inserts, not
 * when it commits: a row with a lower id may commit after a higher one. A
 * missing id holds back the rows after it until it appears or has been
 * missing FEED_GAP_HOLD_MS (a rolled-back insert never appears). */
typedef struct {
  int64_t cursor;                 /* the newest id taken */
  int64_t gap_id;                 /* the id being waited for, 0 when none */
  int64_t gap_since_ms;
} feed_gap_t;

/* feed_gap_take reads the ids of the |n| rows newer than |g->cursor|, in
 * ascending order, at |now_ms|: returns how many of the first ones to
 * take now and moves the cursor past them. */
size_t feed_gap_take(feed_gap_t *g, const int64_t *ids, size_t n, int64_t now_ms);

/* feed_gap_waiting: 1 while a missing id holds rows back (ask again soon). */
int feed_gap_waiting(const feed_gap_t *g);

/* feed_parse_uint reads a decimal of 1 to FEED_ID_DIGITS digits and
 * nothing else, at most |max|: 0 with |*out|, -1 when malformed. */
int feed_parse_uint(const char *s, int64_t max, int64_t *out);

/* feed_sse_format writes |e| as one Server-Sent Event ("id: ...\nevent:
 * ...\ndata: ...\n\n") into |buf| of |cap| bytes (NUL-terminated when it
 * fits); returns the length it needs, without the NUL, like snprintf. */
size_t feed_sse_format(const feed_event_t *e, char *buf, size_t cap);

#endif
