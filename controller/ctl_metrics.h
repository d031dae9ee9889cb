/* Controller metrics: requests by route, method and status, a latency
 * histogram; rendered as Prometheus text. Lock-free counters. */
#ifndef CASCADE_CTL_METRICS_H
#define CASCADE_CTL_METRICS_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#define METRICS_ROUTES 16     /* see http.c route labels; last = other */
#define METRICS_METHODS 6     /* GET HEAD POST PUT DELETE other */
#define METRICS_STATUSES 16
#define METRICS_BUCKETS 14

typedef struct ctl_metrics {
  atomic_ulong requests[METRICS_ROUTES][METRICS_METHODS][METRICS_STATUSES];
  atomic_ulong latency_buckets[METRICS_BUCKETS]; /* non-cumulative */
  atomic_ulong latency_count;
  atomic_ulong latency_sum_us;
  atomic_ulong auth_failures;
  atomic_ulong header_timeouts;   /* connections cut at http.headertimeout */
} ctl_metrics_t;

/* ctl_metrics_request counts one finished request. */
void ctl_metrics_request(ctl_metrics_t *m, int route, const char *method, int status,
                         uint64_t micros);

/* ctl_metrics_write renders the request metrics; |routes| names route indexes. */
void ctl_metrics_write(ctl_metrics_t *m, const char *const *routes, FILE *out);

#endif
