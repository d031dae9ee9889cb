/* Controller metrics: see ctl_metrics.h. */
#include "ctl_metrics.h"

#include <string.h>

static const char *const method_names[METRICS_METHODS] = {"GET", "HEAD", "POST", "PUT",
                                                          "DELETE", "other"};
/* The statuses the API answers with; the last slot counts any other. */
static const int status_codes[METRICS_STATUSES] = {200, 201, 204, 400, 401, 403, 404, 405,
                                                   409, 413, 429, 500, 502, 503, 504, 0};
static const double bucket_le[METRICS_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                  0.025,  0.05,  0.1,    0.25,  0.5,
                                                  1,      2.5,   5,      10};

static int method_index(const char *m) {
  for (int i = 0; i < METRICS_METHODS - 1; i++)
    if (strcmp(m, method_names[i]) == 0) return i;
  return METRICS_METHODS - 1;
}

static int status_index(int status) {
  for (int i = 0; i < METRICS_STATUSES - 1; i++)
    if (status_codes[i] == status) return i;
  return METRICS_STATUSES - 1;
}

void ctl_metrics_request(ctl_metrics_t *m, int route, const char *method, int status,
                         uint64_t micros) {
  if (route < 0 || route >= METRICS_ROUTES) route = METRICS_ROUTES - 1;
  atomic_fetch_add_explicit(&m->requests[route][method_index(method)][status_index(status)], 1,
                            memory_order_relaxed);
  int b = 0;
  while (b < METRICS_BUCKETS && (double)micros / 1e6 > bucket_le[b]) b++;
  if (b < METRICS_BUCKETS)
    atomic_fetch_add_explicit(&m->latency_buckets[b], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&m->latency_count, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&m->latency_sum_us, micros, memory_order_relaxed);
}

void ctl_metrics_write(ctl_metrics_t *m, const char *const *routes, FILE *out) {
  fputs("# HELP cascade_http_requests_total HTTP requests by route, method and status.\n"
        "# TYPE cascade_http_requests_total counter\n", out);
  for (int r = 0; r < METRICS_ROUTES; r++)
    for (int me = 0; me < METRICS_METHODS; me++)
      for (int s = 0; s < METRICS_STATUSES; s++) {
        unsigned long v = atomic_load_explicit(&m->requests[r][me][s], memory_order_relaxed);
        if (v == 0) continue;
        if (status_codes[s])
          fprintf(out, "cascade_http_requests_total{route=\"%s\",method=\"%s\",status=\"%d\"} %lu\n",
                  routes[r], method_names[me], status_codes[s], v);
        else
          fprintf(out, "cascade_http_requests_total{route=\"%s\",method=\"%s\",status=\"other\"} %lu\n",
                  routes[r], method_names[me], v);
      }
  fputs("# HELP cascade_http_request_duration_seconds Time from request to response.\n"
        "# TYPE cascade_http_request_duration_seconds histogram\n", out);
  unsigned long cum = 0;
  for (int b = 0; b < METRICS_BUCKETS; b++) {
    cum += atomic_load_explicit(&m->latency_buckets[b], memory_order_relaxed);
    fprintf(out, "cascade_http_request_duration_seconds_bucket{le=\"%g\"} %lu\n", bucket_le[b], cum);
  }
  unsigned long count = atomic_load_explicit(&m->latency_count, memory_order_relaxed);
  fprintf(out, "cascade_http_request_duration_seconds_bucket{le=\"+Inf\"} %lu\n", count);
  fprintf(out, "cascade_http_request_duration_seconds_sum %.6f\n",
          (double)atomic_load_explicit(&m->latency_sum_us, memory_order_relaxed) / 1e6);
  fprintf(out, "cascade_http_request_duration_seconds_count %lu\n", count);
  fprintf(out, "# HELP cascade_auth_failures_total Refused API authentications.\n"
               "# TYPE cascade_auth_failures_total counter\n"
               "cascade_auth_failures_total %lu\n",
          atomic_load_explicit(&m->auth_failures, memory_order_relaxed));
  fprintf(out, "# HELP cascade_http_header_timeouts_total Connections closed for not sending "
               "a request head within http.headertimeout.\n"
               "# TYPE cascade_http_header_timeouts_total counter\n"
               "cascade_http_header_timeouts_total %lu\n",
          atomic_load_explicit(&m->header_timeouts, memory_order_relaxed));
}
