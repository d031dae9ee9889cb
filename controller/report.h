/* A node's last heartbeat report as the sessions table keeps it (JSON,
 * format in sql/004_replicas.sql): written here for ctlsrv.c's sweeper, read
 * back by any replica: the links for the topology, the streams for the
 * stream directory. What is malformed is skipped, never trusted. */
#ifndef CASCADE_REPORT_H
#define CASCADE_REPORT_H

#include <jansson.h>
#include <stdint.h>

#include "ctlsrv.h"

/* report_json is the report of |nlinks| links |lv|, |nstreams| streams
 * |sv| and the node's own stream count |total|; NULL on out of memory. */
json_t *report_json(const ctlsrv_link_t *lv, size_t nlinks, const ctlsrv_stream_t *sv,
                    size_t nstreams, uint32_t total);

/* report_link finds in |report| the link in |role| (CTLSRV_LINK_*) to
 * |peer|: 1 with |out| set, 0 when it has none. */
int report_link(const json_t *report, int role, int64_t peer, ctlsrv_link_t *out);

/* report_streams calls |fn| for each well-formed stream of |report| (node
 * |node| named |name|; |st->path| valid during the call only) and returns
 * how many; *total gets the node's own count. */
size_t report_streams(const json_t *report, int64_t node, const char *name,
                      void (*fn)(int64_t node, const char *name, const ctlsrv_stream_t *st,
                                 void *arg),
                      void *arg, uint32_t *total);

#endif
