/* GET /api/feed: the live feed of changes (docs/api.md, "Live feed";
 * docs/architecture.md, "The live feed"). A thread of its own reads the
 * feed_events table (sql/005_feed.sql) in id order, woken by NOTIFY
 * cascade_feed, into a ring (feed.h) that every open feed reads from:
 * Server-Sent Events, or a long poll. Waiting feeds are suspended
 * libmicrohttpd connections: they hold no worker thread. */
#ifndef CASCADE_API_FEED_H
#define CASCADE_API_FEED_H

#include <stddef.h>
#include <stdio.h>

#include "http.h"

typedef struct api_feed api_feed_t;

/* api_feed_start starts the feed's thread (it connects to the database by
 * itself, and again when the connection is lost). NULL with |err|. */
api_feed_t *api_feed_start(ctl_t *ctl, char *err, size_t errlen);

/* api_feed_shutdown ends every open feed and refuses new ones: called
 * before libmicrohttpd stops, which must find no connection suspended. */
void api_feed_shutdown(api_feed_t *f);

/* api_feed_metrics writes the feed's metrics (Prometheus text) to |out|;
 * accepts NULL. */
void api_feed_metrics(api_feed_t *f, FILE *out);

/* api_feed_stop stops the thread and frees |f|; accepts NULL. */
void api_feed_stop(api_feed_t *f);

/* api_feed serves GET /api/feed (viewer). */
int api_feed(http_req_t *r);

/* api_feed_resume answers a long poll whose connection was resumed. */
int api_feed_resume(http_req_t *r);

/* api_feed_done forgets the request's feed: the request ended. */
void api_feed_done(http_req_t *r);

#endif
