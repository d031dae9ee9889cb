/* GET /api/feed: see api_feed.h. */
#define _GNU_SOURCE /* POLLRDHUP */
#include "api_feed.h"

#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <microhttpd.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "feed.h"
#include "log.h"
#include "reply.h"

#define MOD "feed"
#define FEED_CHANNEL "cascade_feed"
#define FETCH_ROWS 1000          /* rows read per statement */
#define FETCH_EVERY_MS 1000      /* read even when no NOTIFY came (one may be lost) */
#define FETCH_GAP_MS 200         /* while a missing id holds rows back */
#define FETCH_MIN_MS 100         /* a NOTIFY reads at most this often: one per event
                                    inserted, and thousands of nodes joining insert
                                    thousands of events a second */
#define PRUNE_EVERY_MS 60000
#define TICK_MS 250              /* the thread looks at its clock and at stopping this often */
#define RETRY_MS 1000
#define SSE_BLOCK 16384
#define POLL_EVENTS_MAX 1000     /* events in one long-poll answer */

typedef struct feed_sub {
  struct feed_sub *prev, *next;  /* the feed's list, under its mu */
  api_feed_t *f;
  struct MHD_Connection *conn;
  int refs;                      /* the list's and, for a stream, the response's */
  int listed;
  int suspended;                 /* by us: only we resume it */
  int longpoll;
  int gone;                      /* the client closed its end while suspended */
  int fd;                        /* the connection's socket, watched while suspended */
  int64_t cursor;                /* the newest id sent; -1: start at the live point */
  int64_t token;                 /* the API token's id (0: the bootstrap token) */
  int64_t deadline_ms;           /* long poll: answer by then */
  int64_t last_write_ms;
  uint64_t sent;                 /* events sent (a reset counts) */
  int resuming;                  /* Last-Event-ID given, nothing sent yet: an id the ring
                                    lacks means reset, not too slow */
  char *pend;                    /* text being written: an event not yet all taken */
  size_t pend_len, pend_off, pend_cap;
} feed_sub_t;

struct api_feed {
  ctl_t *ctl;
  pthread_mutex_t mu;            /* everything below */
  feed_ring_t ring;
  feed_gap_t gap;
  int loaded;                    /* the ring holds the table's newest events */
  int shut;                      /* api_feed_shutdown: no feed open any more */
  int stopping;
  feed_sub_t *subs;
  size_t nsubs;
  uint64_t dropped;              /* slow readers dropped */
  uint64_t taken;                /* events taken from the database */
  struct pollfd *pfd;            /* feed.maxclients slots for watch_gone_locked */
  feed_sub_t **pfd_sub;
  pthread_t thread;
  PGconn *pg0;                   /* the connection api_feed_start loaded with, for the thread */
};

static int64_t now_ms(void) { return db_now_ms(); }

/* ---- subscribers ------------------------------------------------------------ */

static void sub_unref_locked(feed_sub_t *s) {
  if (--s->refs > 0) return;
  free(s->pend);
  free(s);
}

static void sub_unlist_locked(api_feed_t *f, feed_sub_t *s) {
  if (!s->listed) return;
  if (s->prev) s->prev->next = s->next;
  else f->subs = s->next;
  if (s->next) s->next->prev = s->prev;
  s->listed = 0;
  s->suspended = 0;
  f->nsubs--;
}

/* wake_locked resumes the suspended feeds that have something to do, and
 * drops the streams whose next event the ring no longer holds: also those
 * that read nothing (their reader is not called while the socket is full).
 * A listed feed's request has not completed, so its descriptor is still
 * its own (libmicrohttpd closes it after the completion, which unlists
 * the feed under mu). */
static void wake_locked(api_feed_t *f, int64_t now) {
  for (feed_sub_t *s = f->subs; s; s = s->next) {
    if (!s->longpoll && !s->gone && !s->resuming && s->cursor >= 0 &&
        s->cursor < f->ring.base) {
      s->gone = 1;
      f->dropped++;
      log_info(MOD, "dropped a feed reader that fell more than feed.buffer events behind");
      if (s->fd >= 0) shutdown(s->fd, SHUT_RDWR);
      if (s->suspended) {
        s->suspended = 0;
        MHD_resume_connection(s->conn);
      }
      continue;
    }
    if (!s->suspended) continue;
    int due = f->shut || (f->loaded && (s->cursor < 0 || s->cursor != f->ring.last));
    if (s->longpoll)
      due = due || now >= s->deadline_ms;
    else
      due = due || now - s->last_write_ms >= FEED_KEEPALIVE_MS;
    if (due) {
      s->suspended = 0;
      MHD_resume_connection(s->conn);
    }
  }
}

/* watch_gone_locked notices clients that closed their end while their
 * connection is suspended (libmicrohttpd does not watch those): without
 * it, a closed feed would keep its place until the next keepalive found
 * the socket gone. */
static void watch_gone_locked(api_feed_t *f) {
  nfds_t n = 0;
  for (feed_sub_t *s = f->subs; s && n < (nfds_t)f->ctl->cfg->feed_maxclients; s = s->next) {
    if (!s->suspended || s->fd < 0) continue;
    f->pfd[n] = (struct pollfd){.fd = s->fd, .events = POLLRDHUP};
    f->pfd_sub[n++] = s;
  }
  if (n == 0 || poll(f->pfd, n, 0) <= 0) return;
  for (nfds_t i = 0; i < n; i++) {
    if (!(f->pfd[i].revents & (POLLRDHUP | POLLHUP | POLLERR))) continue;
    feed_sub_t *s = f->pfd_sub[i];
    s->gone = 1;
    s->suspended = 0;
    MHD_resume_connection(s->conn);
  }
}

/* admit_locked checks the limits: 0, or -1 with the status and message to
 * answer. */
static int admit_locked(api_feed_t *f, http_req_t *r, const char **why, int *status) {
  const ctl_config_t *c = r->ctl->cfg;
  if (f->shut) {
    *status = 503;
    *why = "the controller is stopping";
    return -1;
  }
  if (!f->loaded) {
    /* Where "from now on" starts is unknown until the ring is loaded. */
    *status = 503;
    *why = "the feed is not ready: its events cannot be read from the database yet";
    return -1;
  }
  if ((long long)f->nsubs >= c->feed_maxclients) {
    *status = 503;
    *why = "too many open feeds on this controller (feed.maxclients)";
    return -1;
  }
  long long mine = 0;
  for (feed_sub_t *s = f->subs; s; s = s->next) mine += s->token == r->token_id;
  if (mine >= c->feed_maxpertoken) {
    *status = 429;
    *why = "too many open feeds with this token (feed.maxpertoken)";
    return -1;
  }
  return 0;
}

static feed_sub_t *sub_new_locked(api_feed_t *f, http_req_t *r, int64_t cursor, int refs) {
  feed_sub_t *s = calloc(1, sizeof(*s));
  if (s == NULL) return NULL;
  s->f = f;
  s->conn = r->conn;
  s->refs = refs;
  s->cursor = cursor;
  s->token = r->token_id;
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
  s->fd = ci ? ci->connect_fd : -1;
  s->last_write_ms = now_ms();
  s->listed = 1;
  s->next = f->subs;
  if (f->subs) f->subs->prev = s;
  f->subs = s;
  f->nsubs++;
  return s;
}

/* ---- the event stream ---------------------------------------------------------- */

static int pend_set(feed_sub_t *s, size_t need) {
  if (need + 1 > s->pend_cap) {
    size_t cap = s->pend_cap ? s->pend_cap : 1024;
    while (cap < need + 1) cap *= 2;
    char *p = realloc(s->pend, cap);
    if (p == NULL) return -1;
    s->pend = p;
    s->pend_cap = cap;
  }
  s->pend_len = need;
  s->pend_off = 0;
  return 0;
}

/* pend_event puts the next event (or a reset) in s->pend: 1 done, 0 none,
 * -1 the reader cannot go on (dropped, or out of memory). */
static int pend_event(api_feed_t *f, feed_sub_t *s) {
  const feed_event_t *ev;
  if (!f->loaded) return 0;
  if (s->cursor < 0) s->cursor = f->ring.last;
  int rv = feed_ring_next(&f->ring, s->cursor, &ev);
  if (rv == 0) return 0;
  if (rv < 0) {
    /* Events it had not read were dropped from the ring: a reader that
     * fell this far behind is dropped; one resuming from an id the ring no
     * longer holds is told to reload. */
    if (!s->resuming) return -1;
    char head[96];
    int n = snprintf(head, sizeof(head), "id: %" PRId64 "\nevent: reset\ndata: {\"next\":%" PRId64
                     "}\n\n", f->ring.last, f->ring.last);
    if (pend_set(s, (size_t)n) != 0) return -1;
    memcpy(s->pend, head, (size_t)n);
    s->cursor = f->ring.last;
    s->sent++;
    s->resuming = 0;
    return 1;
  }
  size_t need = feed_sse_format(ev, NULL, 0);
  if (pend_set(s, need) != 0) return -1;
  feed_sse_format(ev, s->pend, s->pend_cap);
  s->cursor = ev->id;
  s->sent++;
  s->resuming = 0;
  return 1;
}

/* drop ends a stream whose reader is gone or too slow. libmicrohttpd
 * (epoll, edge-triggered) closes a connection whose reader failed only at
 * its socket's next event, which a reader that sends nothing never makes:
 * shutting the socket down makes one (and tells the client at once). The
 * descriptor is the connection's while its reader runs. */
static ssize_t drop(feed_sub_t *s) {
  if (s->fd >= 0) shutdown(s->fd, SHUT_RDWR);
  return MHD_CONTENT_READER_END_WITH_ERROR;
}

static ssize_t sse_reader(void *cls, uint64_t pos, char *buf, size_t max) {
  feed_sub_t *s = cls;
  api_feed_t *f = s->f;
  size_t n = 0;
  (void)pos;
  pthread_mutex_lock(&f->mu);
  if (f->shut || !s->listed || s->gone) {
    int gone = s->gone;
    pthread_mutex_unlock(&f->mu);
    if (gone) return drop(s);
    return MHD_CONTENT_READER_END_OF_STREAM;
  }
  while (n < max) {
    if (s->pend_off < s->pend_len) {
      size_t k = s->pend_len - s->pend_off;
      if (k > max - n) k = max - n;
      memcpy(buf + n, s->pend + s->pend_off, k);
      s->pend_off += k;
      n += k;
      continue;
    }
    int rv = pend_event(f, s);
    if (rv == 0) break;
    if (rv < 0) {
      f->dropped++;
      pthread_mutex_unlock(&f->mu);
      log_info(MOD, "dropped a feed reader that fell more than feed.buffer events behind");
      return drop(s);
    }
  }
  int64_t now = now_ms();
  static const char ka[] = ": keepalive\n\n";
  if (n == 0 && now - s->last_write_ms >= FEED_KEEPALIVE_MS && max >= sizeof(ka) - 1) {
    memcpy(buf, ka, sizeof(ka) - 1);
    n = sizeof(ka) - 1;
  }
  if (n == 0) {
    /* Nothing to send: sleep until the feed's thread has something. */
    s->suspended = 1;
    MHD_suspend_connection(s->conn);
  } else {
    s->last_write_ms = now;
  }
  pthread_mutex_unlock(&f->mu);
  return (ssize_t)n;
}

static void sse_free(void *cls) {
  feed_sub_t *s = cls;
  api_feed_t *f = s->f;
  pthread_mutex_lock(&f->mu);
  sub_unref_locked(s);
  pthread_mutex_unlock(&f->mu);
}

static int serve_stream(api_feed_t *f, http_req_t *r) {
  const char *last = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Last-Event-ID");
  int64_t cursor = -1;
  const char *why;
  int status;
  if (last != NULL && feed_parse_uint(last, INT64_MAX, &cursor) != 0)
    return http_reply_error(r, 400, "Last-Event-ID: must be an event id (a decimal number)");
  pthread_mutex_lock(&f->mu);
  if (admit_locked(f, r, &why, &status) != 0) {
    pthread_mutex_unlock(&f->mu);
    return http_reply_error(r, status, "%s", why);
  }
  feed_sub_t *s = sub_new_locked(f, r, last != NULL ? cursor : f->ring.last, 2);
  /* A first line at once: the client sees the answer's head without
   * waiting for an event. */
  static const char hello[] = ": cascade feed\n\n";
  if (s == NULL || pend_set(s, sizeof(hello) - 1) != 0) {
    if (s) {
      sub_unlist_locked(f, s);
      s->refs = 1;
      sub_unref_locked(s);
    }
    pthread_mutex_unlock(&f->mu);
    return http_reply_error(r, 500, "out of memory");
  }
  memcpy(s->pend, hello, sizeof(hello) - 1);
  s->resuming = last != NULL;
  r->feed = s;
  pthread_mutex_unlock(&f->mu);
  struct MHD_Response *resp =
      MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, SSE_BLOCK, sse_reader, s, sse_free);
  if (resp == NULL) {
    pthread_mutex_lock(&f->mu);
    sub_unref_locked(s); /* the response's */
    pthread_mutex_unlock(&f->mu);
    return http_reply_error(r, 500, "out of memory");
  }
  MHD_add_response_header(resp, "Content-Type", "text/event-stream");
  /* Reverse proxies (nginx) must pass events on as they come. */
  MHD_add_response_header(resp, "X-Accel-Buffering", "no");
  return http_queue_response(r, 200, resp);
}

/* ---- the long poll ----------------------------------------------------------------- */

/* poll_answer_locked builds the long poll's data after |since|. */
static json_t *poll_answer_locked(api_feed_t *f, int64_t since) {
  json_t *events = json_array();
  int64_t next = since;
  const feed_event_t *ev;
  int rv = f->loaded ? feed_ring_next(&f->ring, since, &ev) : 0;
  if (rv < 0) {
    next = f->ring.last;
    json_array_append_new(events, json_pack("{s:I,s:s,s:{s:I}}", "id", (json_int_t)next, "kind",
                                            "reset", "data", "next", (json_int_t)next));
  }
  for (int k = 0; rv > 0 && k < POLL_EVENTS_MAX; k++) {
    json_t *data = json_loadb(ev->data, ev->len, 0, NULL);
    if (data != NULL)
      json_array_append_new(events, json_pack("{s:I,s:s,s:o}", "id", (json_int_t)ev->id,
                                              "kind", ev->kind, "data", data));
    next = ev->id;
    rv = feed_ring_next(&f->ring, next, &ev);
  }
  return json_pack("{s:I,s:o}", "next", (json_int_t)next, "events", events);
}

static int serve_poll(api_feed_t *f, http_req_t *r, const char *since_s) {
  const char *wait_s = http_arg(r, "wait");
  int64_t since = 0, wait = 0;
  const char *why;
  int status;
  if (feed_parse_uint(since_s, INT64_MAX, &since) != 0)
    return http_reply_error(r, 400, "since: must be an event id (a decimal number)");
  if (wait_s != NULL && feed_parse_uint(wait_s, FEED_WAIT_MAX, &wait) != 0)
    return http_reply_error(r, 400, "wait: must be a number of seconds from 0 to %d",
                            FEED_WAIT_MAX);
  pthread_mutex_lock(&f->mu);
  const feed_event_t *ev;
  int ready = f->loaded && feed_ring_next(&f->ring, since, &ev) != 0;
  if (ready || wait == 0 || f->shut) {
    json_t *data = poll_answer_locked(f, since);
    pthread_mutex_unlock(&f->mu);
    return http_reply_data(r, 200, data);
  }
  if (admit_locked(f, r, &why, &status) != 0) {
    pthread_mutex_unlock(&f->mu);
    return http_reply_error(r, status, "%s", why);
  }
  feed_sub_t *s = sub_new_locked(f, r, since, 1);
  if (s == NULL) {
    pthread_mutex_unlock(&f->mu);
    return http_reply_error(r, 500, "out of memory");
  }
  s->longpoll = 1;
  s->deadline_ms = now_ms() + wait * 1000;
  s->suspended = 1;
  r->feed = s;
  MHD_suspend_connection(r->conn);
  pthread_mutex_unlock(&f->mu);
  return MHD_YES;
}

int api_feed_resume(http_req_t *r) {
  feed_sub_t *s = r->feed;
  api_feed_t *f = s->f;
  pthread_mutex_lock(&f->mu);
  json_t *data = poll_answer_locked(f, s->cursor);
  sub_unlist_locked(f, s);
  sub_unref_locked(s);
  r->feed = NULL;
  pthread_mutex_unlock(&f->mu);
  return http_reply_data(r, 200, data);
}

int api_feed(http_req_t *r) {
  api_feed_t *f = r->ctl->feed;
  if (f == NULL) return http_reply_error(r, 503, "the feed is not running");
  const char *since = http_arg(r, "since");
  if (since != NULL) return serve_poll(f, r, since);
  if (http_arg(r, "wait") != NULL)
    return http_reply_error(r, 400, "wait: only with since (the long poll)");
  return serve_stream(f, r);
}

void api_feed_done(http_req_t *r) {
  feed_sub_t *s = r->feed;
  if (s == NULL) return;
  api_feed_t *f = s->f;
  pthread_mutex_lock(&f->mu);
  if (s->listed) {
    sub_unlist_locked(f, s);
    sub_unref_locked(s);
  }
  pthread_mutex_unlock(&f->mu);
  r->feed = NULL;
}

/* ---- the thread that reads feed_events --------------------------------------------- */

static int is_stopping(api_feed_t *f) {
  pthread_mutex_lock(&f->mu);
  int v = f->stopping;
  pthread_mutex_unlock(&f->mu);
  return v;
}

static PGconn *feed_connect(api_feed_t *f, char *why, size_t len) {
  char ctimeout[24], setup[160];
  long long tmo = f->ctl->cfg->db_timeout_ms;
  snprintf(ctimeout, sizeof(ctimeout), "%lld", (tmo + 999) / 1000 < 2 ? 2 : (tmo + 999) / 1000);
  /* Keepalives: a connection that mostly listens must notice a vanished
   * server. The DSN is expanded first, so these override it. */
  static const char *const keys[] = {"dbname", "connect_timeout", "keepalives",
                                     "keepalives_idle", "keepalives_interval",
                                     "keepalives_count", NULL};
  const char *const vals[] = {f->ctl->db.dsn, ctimeout, "1", "10", "5", "3", NULL};
  PGconn *pg = PQconnectdbParams(keys, vals, 1);
  if (pg == NULL) {
    snprintf(why, len, "out of memory");
    return NULL;
  }
  if (PQstatus(pg) != CONNECTION_OK) goto fail;
  snprintf(setup, sizeof(setup), "SET statement_timeout = %lld; LISTEN " FEED_CHANNEL, tmo);
  PGresult *res = PQexec(pg, setup);
  int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
  PQclear(res);
  if (ok) return pg;
fail:
  snprintf(why, len, "%s", PQerrorMessage(pg));
  why[strcspn(why, "\n")] = '\0';
  PQfinish(pg);
  return NULL;
}

/* push_rows_locked puts rows [from, from+n) of |res| (id, kind, data) in
 * the ring. */
static void push_rows_locked(api_feed_t *f, PGresult *res, int from, int n) {
  for (int i = from; i < from + n; i++) {
    int64_t id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
    int rv = feed_ring_push(&f->ring, id, PQgetvalue(res, i, 1), PQgetvalue(res, i, 2),
                            (size_t)PQgetlength(res, i, 2));
    if (rv != 0)
      log_warn(MOD, "feed event %" PRId64 " left out (%s)", id,
               rv == -2 ? "out of memory" : "unusable row");
    else
      f->taken++;
  }
}

/* load fills the ring with the table's newest events. 0 or -1. */
static int load(api_feed_t *f, PGconn *pg) {
  char cap[24];
  snprintf(cap, sizeof(cap), "%zu", f->ring.cap);
  const char *params[1] = {cap};
  PGresult *res = PQexecParams(
      pg,
      "SELECT id, kind, data::text FROM (SELECT id, kind, data FROM feed_events"
      " ORDER BY id DESC LIMIT $1::bigint) t ORDER BY id",
      1, NULL, params, NULL, NULL, 0);
  if (PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) != 3) {
    PQclear(res);
    return -1;
  }
  int64_t base = 0;
  if (PQntuples(res) > 0) {
    base = strtoll(PQgetvalue(res, 0, 0), NULL, 10) - 1;
  } else {
    /* Nothing kept: start after the last id drawn. */
    PGresult *q = PQexec(pg, "SELECT coalesce(pg_sequence_last_value("
                             "pg_get_serial_sequence('feed_events', 'id')), 0)");
    if (PQresultStatus(q) != PGRES_TUPLES_OK || PQntuples(q) != 1) {
      PQclear(q);
      PQclear(res);
      return -1;
    }
    base = strtoll(PQgetvalue(q, 0, 0), NULL, 10);
    PQclear(q);
  }
  pthread_mutex_lock(&f->mu);
  feed_ring_reset(&f->ring, base);
  push_rows_locked(f, res, 0, PQntuples(res));
  f->gap.cursor = f->ring.last;
  f->gap.gap_id = 0;
  f->loaded = 1;
  wake_locked(f, now_ms());
  pthread_mutex_unlock(&f->mu);
  log_info(MOD, "feed starts after event %" PRId64 " (%d kept)", base + 0, PQntuples(res));
  PQclear(res);
  return 0;
}

/* fetch takes the rows after the cursor. 1 more may be waiting, 0, -1. */
static int fetch(api_feed_t *f, PGconn *pg) {
  char after[24], limit[16];
  /* At most half the ring at once: a batch must not push out events a
   * reader that keeps up has had no chance to take. */
  int rows = f->ring.cap / 2 < FETCH_ROWS ? (int)(f->ring.cap / 2) : FETCH_ROWS;
  snprintf(after, sizeof(after), "%" PRId64, f->gap.cursor);
  snprintf(limit, sizeof(limit), "%d", rows);
  const char *params[2] = {after, limit};
  PGresult *res = PQexecParams(pg,
                               "SELECT id, kind, data::text FROM feed_events"
                               " WHERE id > $1::bigint ORDER BY id LIMIT $2::bigint",
                               2, NULL, params, NULL, NULL, 0);
  if (PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) != 3) {
    PQclear(res);
    return -1;
  }
  int n = PQntuples(res);
  int64_t ids[FETCH_ROWS];
  for (int i = 0; i < n; i++) ids[i] = strtoll(PQgetvalue(res, i, 0), NULL, 10);
  /* Only this thread moves the gap state; the lock is for the ring. */
  size_t take = feed_gap_take(&f->gap, ids, (size_t)n, now_ms());
  if (take > 0) {
    pthread_mutex_lock(&f->mu);
    push_rows_locked(f, res, 0, (int)take);
    wake_locked(f, now_ms());
    pthread_mutex_unlock(&f->mu);
  }
  PQclear(res);
  return n == rows && take == (size_t)n;
}

/* prune deletes the rows older than feed.retention, and beyond the newest
 * feed.maxrows: what publishers and links that flap can write is bounded. */
static void prune(api_feed_t *f, PGconn *pg) {
  char ms[24], rows[24];
  snprintf(ms, sizeof(ms), "%lld", f->ctl->cfg->feed_retention_ms);
  snprintf(rows, sizeof(rows), "%lld", f->ctl->cfg->feed_maxrows);
  const char *params[2] = {ms, rows};
  PGresult *res = PQexecParams(pg,
                               "DELETE FROM feed_events WHERE time < now() - $1::bigint"
                               " * interval '1 millisecond'"
                               " OR id <= (SELECT max(id) FROM feed_events) - $2::bigint",
                               2, NULL, params, NULL, NULL, 0);
  if (PQresultStatus(res) != PGRES_COMMAND_OK)
    log_warn(MOD, "cannot delete old feed events: %s", PQresultErrorMessage(res));
  PQclear(res);
}

static void *feed_main(void *arg) {
  api_feed_t *f = arg;
  PGconn *pg = f->pg0;
  int64_t retry_at = 0, next_fetch = 0, next_prune = 0, next_tick = 0, last_fetch = 0;
  int down = 0;
  char why[256];
  while (!is_stopping(f)) {
    int64_t now = now_ms();
    if (now >= next_tick) {
      next_tick = now + TICK_MS;
      pthread_mutex_lock(&f->mu);
      wake_locked(f, now); /* keepalives and long polls that end */
      watch_gone_locked(f);
      pthread_mutex_unlock(&f->mu);
    }
    if (pg == NULL) {
      if (now < retry_at) {
        struct timespec ts = {0, 100 * 1000000};
        nanosleep(&ts, NULL);
        continue;
      }
      if ((pg = feed_connect(f, why, sizeof(why))) == NULL ||
          (!f->loaded && load(f, pg) != 0)) {
        if (pg) snprintf(why, sizeof(why), "%s", PQerrorMessage(pg));
        why[strcspn(why, "\n")] = '\0';
        PQfinish(pg);
        pg = NULL;
        retry_at = now_ms() + RETRY_MS;
        if (!down++) {
          char q[300];
          log_warn(MOD, "cannot read the feed from the database: %s (retrying every %d ms)",
                   log_quote(why, q, sizeof(q)), RETRY_MS);
        }
        continue;
      }
      if (down) log_info(MOD, "reading the feed from the database again");
      down = 0;
      next_fetch = 0; /* notifications sent while nobody listened are lost */
    }
    struct pollfd pfd = {.fd = PQsocket(pg), .events = POLLIN};
    int64_t until = next_fetch < next_tick ? next_fetch : next_tick;
    int64_t left = until - now_ms();
    int rv = poll(&pfd, 1, left <= 0 ? 0 : left > TICK_MS ? TICK_MS : (int)left);
    if (rv < 0 && errno != EINTR) goto lost;
    if (rv > 0) {
      if (!PQconsumeInput(pg)) goto lost;
      PGnotify *nf;
      while ((nf = PQnotifies(pg)) != NULL) {
        PQfreemem(nf);
        if (next_fetch > last_fetch + FETCH_MIN_MS) next_fetch = last_fetch + FETCH_MIN_MS;
      }
    }
    now = now_ms();
    if (now >= next_fetch) {
      int more;
      while ((more = fetch(f, pg)) == 1 && !is_stopping(f)) {
      }
      if (more < 0) goto lost;
      last_fetch = now_ms();
      next_fetch = last_fetch + (feed_gap_waiting(&f->gap) ? FETCH_GAP_MS : FETCH_EVERY_MS);
    }
    if (now >= next_prune) {
      prune(f, pg);
      next_prune = now + PRUNE_EVERY_MS;
    }
    if (PQstatus(pg) != CONNECTION_OK) goto lost;
    continue;
  lost:
    snprintf(why, sizeof(why), "%s", PQerrorMessage(pg));
    why[strcspn(why, "\n")] = '\0';
    {
      char q[300];
      log_warn(MOD, "lost the feed's database connection: %s", log_quote(why, q, sizeof(q)));
    }
    PQfinish(pg);
    pg = NULL;
    down = 1;
    retry_at = now_ms() + RETRY_MS;
  }
  PQfinish(pg);
  return NULL;
}

api_feed_t *api_feed_start(ctl_t *ctl, char *err, size_t errlen) {
  api_feed_t *f = calloc(1, sizeof(*f));
  if (errlen) err[0] = '\0';
  if (f == NULL) goto fail_alloc;
  f->ctl = ctl;
  if (feed_ring_init(&f->ring, (size_t)ctl->cfg->feed_buffer) != 0) goto fail_ring;
  f->pfd = calloc((size_t)ctl->cfg->feed_maxclients, sizeof(*f->pfd));
  f->pfd_sub = calloc((size_t)ctl->cfg->feed_maxclients, sizeof(*f->pfd_sub));
  if (f->pfd == NULL || f->pfd_sub == NULL) goto fail_mutex;
  if (pthread_mutex_init(&f->mu, NULL) != 0) goto fail_mutex;
  /* Loaded before the API serves, so that a feed opened at once starts
   * after what is already in the table; if the database cannot be read
   * now, the thread tries again and feeds answer 503 meanwhile. */
  char why[256];
  if ((f->pg0 = feed_connect(f, why, sizeof(why))) != NULL && load(f, f->pg0) != 0) {
    snprintf(why, sizeof(why), "%s", PQerrorMessage(f->pg0));
    why[strcspn(why, "\n")] = '\0';
    PQfinish(f->pg0);
    f->pg0 = NULL;
  }
  if (f->pg0 == NULL) log_warn(MOD, "cannot load the feed yet: %s (retrying)", why);
  if (pthread_create(&f->thread, NULL, feed_main, f) != 0) {
    snprintf(err, errlen, "cannot start the feed's thread: %s", strerror(errno));
    goto fail_thread;
  }
  return f;

fail_thread:
  PQfinish(f->pg0);
  pthread_mutex_destroy(&f->mu);
fail_mutex:
  free(f->pfd);
  free(f->pfd_sub);
  feed_ring_free(&f->ring);
fail_ring:
  free(f);
fail_alloc:
  if (errlen && err[0] == '\0') snprintf(err, errlen, "out of memory");
  return NULL;
}

void api_feed_metrics(api_feed_t *f, FILE *out) {
  if (f == NULL) return;
  pthread_mutex_lock(&f->mu);
  size_t open = f->nsubs;
  uint64_t dropped = f->dropped, taken = f->taken;
  int64_t last = f->ring.last;
  pthread_mutex_unlock(&f->mu);
  fprintf(out,
          "# HELP cascade_feed_open Live feeds (GET /api/feed) open on this replica.\n"
          "# TYPE cascade_feed_open gauge\ncascade_feed_open %zu\n"
          "# HELP cascade_feed_dropped_total Feed readers dropped for falling feed.buffer events "
          "behind.\n# TYPE cascade_feed_dropped_total counter\ncascade_feed_dropped_total %" PRIu64
          "\n# HELP cascade_feed_events_total Feed events this replica took from the database.\n"
          "# TYPE cascade_feed_events_total counter\ncascade_feed_events_total %" PRIu64 "\n"
          "# HELP cascade_feed_last_id Id of the newest feed event this replica took.\n"
          "# TYPE cascade_feed_last_id gauge\ncascade_feed_last_id %" PRId64 "\n",
          open, dropped, taken, last);
}

void api_feed_shutdown(api_feed_t *f) {
  if (f == NULL) return;
  pthread_mutex_lock(&f->mu);
  f->shut = 1;
  wake_locked(f, now_ms());
  pthread_mutex_unlock(&f->mu);
}

void api_feed_stop(api_feed_t *f) {
  if (f == NULL) return;
  pthread_mutex_lock(&f->mu);
  f->stopping = 1;
  pthread_mutex_unlock(&f->mu);
  pthread_join(f->thread, NULL);
  /* libmicrohttpd has stopped: every request ended and unlisted its feed. */
  feed_ring_free(&f->ring);
  pthread_mutex_destroy(&f->mu);
  free(f->pfd);
  free(f->pfd_sub);
  free(f);
}
