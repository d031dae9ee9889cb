/* Wake-ups between replicas: the payload of a NOTIFY on channel
 * cascade_wake (sql/004_replicas.sql) names the nodes whose desired state
 * changed: "all", or node ids joined by commas ("3,17,42"). */
#ifndef CASCADE_WAKE_H
#define CASCADE_WAKE_H

#include <stddef.h>
#include <stdint.h>

#define WAKE_CHANNEL "cascade_wake"
#define WAKE_PAYLOAD_MAX 8000   /* PostgreSQL's bound on a NOTIFY payload */

/* wake_parse reads |payload| (NUL-terminated): returns 1 for "all" (or
 * more ids than |max|: the caller wakes every session), 0 with |*n| ids in
 * |ids| (each > 0), -1 when it is malformed (the caller wakes everything,
 * being safe). */
int wake_parse(const char *payload, int64_t *ids, size_t max, size_t *n);

#endif
