/* REST API server: see http.h. */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "conntrack.h"
#include "console.h"
#include "fwdsig.h"
#include "http_framing.h"
#include "log.h"
#include "net.h"
#include "reply.h"
#include "valid.h"

typedef int (*http_handler_t)(http_req_t *r);

typedef struct {
  const char *method;
  http_handler_t fn;
  role_t need;             /* ROLE_NONE: public */
} route_method_t;

typedef struct {
  const char *path;        /* exact path, or the prefix before "/{id}" */
  int has_id;
  route_method_t m[4];
} route_t;

/* The route table; its order gives the metrics labels below. */
static const route_t routes[] = {
    {"/healthz", 0, {{"GET", api_healthz, ROLE_NONE}}},
    {"/readyz", 0, {{"GET", api_readyz, ROLE_NONE}}},
    {"/metrics", 0, {{"GET", api_metrics, ROLE_NONE}}},
    {"/api/cascade/clients", 0,
     {{"GET", api_clients_list, ROLE_VIEWER}, {"POST", api_clients_create, ROLE_ADMIN}}},
    {"/api/cascade/clients", 1,
     {{"GET", api_clients_get, ROLE_VIEWER},
      {"PUT", api_clients_update, ROLE_ADMIN},
      {"DELETE", api_clients_delete, ROLE_ADMIN}}},
    {"/api/auth/tokens", 0,
     {{"GET", api_tokens_list, ROLE_ADMIN}, {"POST", api_tokens_create, ROLE_ADMIN}}},
    {"/api/auth/tokens", 1, {{"DELETE", api_tokens_delete, ROLE_ADMIN}}},
    {"/api/cascade/topology", 0, {{"GET", api_topology, ROLE_VIEWER}}},
    {"/api/cascade/events", 0, {{"GET", api_events, ROLE_VIEWER}}},
    {"/api/cascade/streams", 0, {{"GET", api_streams, ROLE_VIEWER}}},
    {"/api/cascade/streamauth", 0,
     {{"GET", api_streamauth_get, ROLE_VIEWER}, {"PUT", api_streamauth_put, ROLE_ADMIN}}},
    {"/api/cascade/streamauth/keys", 0, {{"POST", api_streamauth_key_create, ROLE_ADMIN}}},
    {"/api/cascade/streamauth/keys", 1, {{"DELETE", api_streamauth_key_delete, ROLE_ADMIN}}},
    {"/api/cascade/streamauth/tokens", 0, {{"POST", api_streamauth_token_create, ROLE_ADMIN}}},
};
#define NROUTES (sizeof(routes) / sizeof(routes[0]))

const char *const http_route_labels[METRICS_ROUTES] = {
    "/healthz",         "/readyz",          "/metrics",
    "/api/cascade/clients", "/api/cascade/clients/{id}", "/api/auth/tokens",
    "/api/auth/tokens/{id}", "/api/cascade/topology", "/api/cascade/events", "/api/cascade/streams",
    "/api/cascade/streamauth", "/api/cascade/streamauth/keys", "/api/cascade/streamauth/keys/{id}",
    "/api/cascade/streamauth/tokens", "/api/relay/{id}/*", "other"};

#define ROUTE_RELAY (METRICS_ROUTES - 2)

#define ROUTE_OTHER (METRICS_ROUTES - 1)

static int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- the header deadline ----------------------------------------------------
 * libmicrohttpd's connection timeout restarts with every byte, so a client
 * sending its head a byte at a time keeps a connection (and a slot of
 * http.maxconnections) for ever. Every connection is tracked from its start,
 * and again from the end of each answer on a kept-alive connection, until
 * its request head is complete; one still reading its head at the deadline
 * is shut down from the watch thread, and libmicrohttpd closes it. */

typedef struct http_watch {
  pthread_mutex_t mu;        /* everything below */
  pthread_cond_t cv;
  conntrack_t ct;
  pthread_t thread;
  int stopping;
  int64_t timeout_ms;
  int64_t last_log_ms;
  ctl_metrics_t *metrics;
} http_watch_t;

/* One connection (libmicrohttpd's socket context). */
typedef struct hconn {
  conntrack_entry_t ct;      /* first: the queue's entries map back to it */
  int fd;                    /* libmicrohttpd's; closed only after CLOSED */
  char ip[64];
} hconn_t;

static void *watch_main(void *arg) {
  http_watch_t *w = arg;
  pthread_mutex_lock(&w->mu);
  while (!w->stopping) {
    int64_t now = now_us() / 1000;
    conntrack_entry_t *e;
    while ((e = conntrack_expired(&w->ct, now)) != NULL) {
      hconn_t *hc = (hconn_t *)e;
      /* Under mu: the CLOSED notification (which comes before close())
       * waits for it, so the descriptor is still this connection's. */
      shutdown(hc->fd, SHUT_RDWR);
      atomic_fetch_add(&w->metrics->header_timeouts, 1);
      if (now - w->last_log_ms >= 5000) {
        w->last_log_ms = now;
        log_info("http", "closed a connection from %s: no complete request head within "
                 "%lld ms (http.headertimeout; logged at most every 5 s)", hc->ip,
                 (long long)w->timeout_ms);
      }
    }
    int64_t next = conntrack_next_deadline(&w->ct);
    if (next == 0) {
      pthread_cond_wait(&w->cv, &w->mu);
    } else {
      struct timespec ts = {(time_t)(next / 1000), (long)(next % 1000) * 1000000};
      pthread_cond_timedwait(&w->cv, &w->mu, &ts);
    }
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

static void watch_arm(http_watch_t *w, hconn_t *hc, int first) {
  static const uint8_t nokey[CONNTRACK_KEY_LEN];
  pthread_mutex_lock(&w->mu);
  int idle = conntrack_next_deadline(&w->ct) == 0;
  if (first)
    conntrack_add(&w->ct, &hc->ct, nokey, now_us() / 1000);
  else
    conntrack_rearm(&w->ct, &hc->ct, now_us() / 1000);
  if (idle) pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

static hconn_t *hconn_of(struct MHD_Connection *conn) {
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  return ci ? ci->socket_context : NULL;
}

static void peer_address(struct MHD_Connection *c, char *buf, size_t len);

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
  http_watch_t *w = ((ctl_t *)cls)->hwatch;
  hconn_t *hc = *socket_context;
  if (code == MHD_CONNECTION_NOTIFY_STARTED) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci == NULL || (hc = calloc(1, sizeof(*hc))) == NULL) return;
    hc->fd = ci->connect_fd;
    peer_address(conn, hc->ip, sizeof(hc->ip));
    *socket_context = hc;
    watch_arm(w, hc, 1);
  } else if (code == MHD_CONNECTION_NOTIFY_CLOSED && hc != NULL) {
    pthread_mutex_lock(&w->mu);
    conntrack_del(&w->ct, &hc->ct);
    pthread_mutex_unlock(&w->mu);
    free(hc);
    *socket_context = NULL;
  }
}

/* head_done: the request head is in; the deadline no longer applies. */
static void head_done(ctl_t *ctl, struct MHD_Connection *conn) {
  hconn_t *hc = hconn_of(conn);
  if (hc == NULL) return;
  pthread_mutex_lock(&ctl->hwatch->mu);
  conntrack_settle(&ctl->hwatch->ct, &hc->ct);
  pthread_mutex_unlock(&ctl->hwatch->mu);
}

static int watch_start(ctl_t *ctl, char *err, size_t errlen) {
  http_watch_t *w = calloc(1, sizeof(*w));
  if (w == NULL || conntrack_init(&w->ct, 0, 0, ctl->cfg->http_headertimeout_ms, 0) != 0) {
    free(w);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&w->cv, &ca);
  pthread_condattr_destroy(&ca);
  pthread_mutex_init(&w->mu, NULL);
  w->timeout_ms = ctl->cfg->http_headertimeout_ms;
  w->metrics = &ctl->metrics;
  if (pthread_create(&w->thread, NULL, watch_main, w) != 0) {
    snprintf(err, errlen, "cannot start a thread: %s", strerror(errno));
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
    return -1;
  }
  ctl->hwatch = w;
  return 0;
}

static void watch_stop(ctl_t *ctl) {
  http_watch_t *w = ctl->hwatch;
  if (w == NULL) return;
  pthread_mutex_lock(&w->mu);
  w->stopping = 1;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
  pthread_join(w->thread, NULL);
  conntrack_free(&w->ct);
  pthread_mutex_destroy(&w->mu);
  pthread_cond_destroy(&w->cv);
  free(w);
  ctl->hwatch = NULL;
}

/* ---- framing --------------------------------------------------------------- */

static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value) {
  http_framing_t *f = cls;
  (void)kind;
  if (strcasecmp(key, "Content-Length") == 0) {
    f->content_length++;
  } else if (strcasecmp(key, "Transfer-Encoding") == 0) {
    if (f->transfer_encoding++ == 0) f->te = value;
  }
  return MHD_YES;
}

static int queue(http_req_t *r, int status, struct MHD_Response *resp) {
  if (resp == NULL) return MHD_NO;
  r->status = status;
  MHD_add_response_header(resp, "Cache-Control", "no-store");
  int rv = MHD_queue_response(r->conn, (unsigned)status, resp);
  MHD_destroy_response(resp);
  return rv;
}

int http_reply_text(http_req_t *r, int status, const char *ctype, const char *text,
                    size_t len) {
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_MUST_COPY);
  if (resp == NULL) return MHD_NO;
  MHD_add_response_header(resp, "Content-Type", ctype);
  return queue(r, status, resp);
}

static struct MHD_Response *json_response(json_t *body) {
  size_t len = 0;
  char *s = body ? reply_dump(body, &len) : NULL;
  json_decref(body);
  if (s == NULL) return NULL;
  struct MHD_Response *resp = MHD_create_response_from_buffer(len, s, MHD_RESPMEM_MUST_FREE);
  if (resp == NULL) {
    free(s);
    return NULL;
  }
  MHD_add_response_header(resp, "Content-Type", "application/json");
  return resp;
}

int http_reply_json_text(http_req_t *r, int status, char *text, size_t len) {
  struct MHD_Response *resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
  if (resp == NULL) {
    free(text);
    return MHD_NO;
  }
  MHD_add_response_header(resp, "Content-Type", "application/json");
  return queue(r, status, resp);
}

int http_reply_json(http_req_t *r, int status, json_t *body) {
  return queue(r, status, json_response(body));
}

int http_reply_data(http_req_t *r, int status, json_t *data) {
  return http_reply_json(r, status, reply_envelope(0, NULL, data));
}

static struct MHD_Response *error_response(int status, const char *fmt, va_list ap) {
  char msg[512];
  vsnprintf(msg, sizeof(msg), fmt, ap);
  valid_utf8_trim(msg);
  struct MHD_Response *resp = json_response(reply_envelope(status, msg, NULL));
  if (resp == NULL) {
    /* Never leave a client without an answer: a fixed, valid body. */
    static const char body[] = "{\"code\":500,\"message\":\"internal error\",\"data\":null}";
    resp = MHD_create_response_from_buffer(sizeof(body) - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
    if (resp) MHD_add_response_header(resp, "Content-Type", "application/json");
  }
  return resp;
}

int http_reply_error(http_req_t *r, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  struct MHD_Response *resp = error_response(status, fmt, ap);
  va_end(ap);
  return queue(r, status, resp);
}

static int reply_error_hdr(http_req_t *r, int status, const char *hname, const char *hval,
                           const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int reply_error_hdr(http_req_t *r, int status, const char *hname, const char *hval,
                           const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  struct MHD_Response *resp = error_response(status, fmt, ap);
  va_end(ap);
  if (resp) MHD_add_response_header(resp, hname, hval);
  return queue(r, status, resp);
}

int http_reply_db_error(http_req_t *r, int err) {
  if (err == DB_ERR_TIMEOUT)
    return http_reply_error(r, 503, "database did not answer in time");
  if (err == DB_ERR_UNAVAILABLE)
    return http_reply_error(r, 503, "database unavailable");
  return http_reply_error(r, 500, "internal error");
}

const char *http_arg(http_req_t *r, const char *key) {
  return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
}

static void peer_address(struct MHD_Connection *c, char *buf, size_t len) {
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  snprintf(buf, len, "?");
  if (ci == NULL || ci->client_addr == NULL) return;
  const struct sockaddr *sa = ci->client_addr;
  if (sa->sa_family == AF_INET)
    inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf, (socklen_t)len);
  else if (sa->sa_family == AF_INET6)
    inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, buf, (socklen_t)len);
}

/* authenticate sets r->role; on refusal it answers and returns 0. */
static int authenticate(http_req_t *r, int *answered) {
  ctl_t *ctl = r->ctl;
  int64_t token_id = 0;

  *answered = 0;
  int retry = 0;
  if (auth_limited(&ctl->auth, r->source, &retry)) {
    char secs[16];
    snprintf(secs, sizeof(secs), "%d", retry);
    *answered = 1;
    return reply_error_hdr(r, 429, "Retry-After", secs,
                           "too many failed authentications; try again in %d s", retry);
  }
  const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization");
  int role = auth_check(&ctl->auth, &ctl->db, h, &token_id);
  if (role < 0) {
    *answered = 1;
    return http_reply_db_error(r, role);
  }
  if (role == ROLE_NONE) {
    atomic_fetch_add(&ctl->metrics.auth_failures, 1);
    if (auth_failed(&ctl->auth, r->source))
      log_warn("http", "authentication failed source=%s reason=%s", r->source,
               h == NULL ? "no-token" : "bad-token");
    *answered = 1;
    return reply_error_hdr(r, 401, "WWW-Authenticate", "Bearer realm=\"cascade\"",
                           h == NULL ? "authentication required" : "authentication failed");
  }
  r->role = role;
  if (token_id)
    snprintf(r->actor, sizeof(r->actor), "token:%lld", (long long)token_id);
  else
    snprintf(r->actor, sizeof(r->actor), "admin");
  return MHD_YES;
}

/* match_path finds the route of |url|: its index, or -1; *id_str points at
 * the {id} segment. */
static int match_path(const char *url, const char **id_str) {
  for (size_t i = 0; i < NROUTES; i++) {
    size_t n = strlen(routes[i].path);
    if (strncmp(url, routes[i].path, n) != 0) continue;
    if (!routes[i].has_id && url[n] == '\0') return (int)i;
    if (routes[i].has_id && url[n] == '/' && url[n + 1] != '\0' && strchr(url + n + 1, '/') == NULL) {
      *id_str = url + n + 1;
      return (int)i;
    }
  }
  return -1;
}

/* relay_serve hands a /api/relay/ request to the API relay. */
static int relay_serve(http_req_t *r) {
  if (r->ctl->http_relay == NULL) return http_reply_error(r, 404, "no such route");
  return r->ctl->http_relay->serve(r);
}

static int dispatch(http_req_t *r) {
  const char *id_str = NULL;
  int answered;

  if (r->too_large)
    return http_reply_error(r, 413, "request body over %d bytes", VALID_BODY_MAX);

  /* The relay routes on the raw target: MHD has decoded r->url, and an
   * encoded "/" must not move the boundary between the id and the path. */
  const char *raw = r->raw_uri ? r->raw_uri : r->url;
  int relay = strncmp(raw, "/api/relay/", 11) == 0;
  int ri = relay ? -1 : match_path(r->url, &id_str);
  r->route = relay ? ROUTE_RELAY : ri >= 0 ? ri : ROUTE_OTHER;

  const char *fw = relay ? MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, FWDSIG_HEADER)
                         : NULL;
  if (fw != NULL) {
    /* Another replica forwards a relay it authenticated (fwdsig.h). */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    int role = 0;
    int rv = r->ctl->has_fwd_key
                 ? fwdsig_check(r->ctl->fwd_key, fw, now, r->method, raw, r->body, r->body_len,
                                &role, r->actor, sizeof(r->actor))
                 : FWDSIG_MALFORMED;
    if (rv != FWDSIG_OK) {
      atomic_fetch_add(&r->ctl->metrics.auth_failures, 1);
      if (auth_failed(&r->ctl->auth, r->source))
        log_warn("http", "forwarded relay refused source=%s reason=%s", r->source,
                 rv == FWDSIG_STALE ? "stale" : rv == FWDSIG_BAD_MAC ? "bad-signature"
                                                                     : "malformed");
      return http_reply_error(r, 401, "forwarded relay refused: %s",
                              rv == FWDSIG_STALE ? "stale signature (clocks apart?)"
                                                 : "bad signature");
    }
    r->role = role;
    r->forwarded = 1;
    return relay_serve(r);
  }
  /* The web console's files are public, and not part of the REST API. */
  if (console_owns(r->url)) return console_serve(r);
  /* Authenticate every /api/ request before saying whether a route exists. */
  if (strncmp(r->url, "/api/", 5) == 0 || strcmp(r->url, "/api") == 0) {
    int rv = authenticate(r, &answered);
    if (answered) return rv;
  }
  if (relay) return relay_serve(r);
  if (ri < 0) return http_reply_error(r, 404, "no such route");

  const route_t *rt = &routes[ri];
  const route_method_t *m = NULL;
  const char *method = strcmp(r->method, "HEAD") == 0 ? "GET" : r->method;
  char allow[64] = "";
  for (size_t k = 0; k < 4 && rt->m[k].method; k++) {
    if (strcmp(rt->m[k].method, method) == 0) m = &rt->m[k];
    snprintf(allow + strlen(allow), sizeof(allow) - strlen(allow), "%s%s", k ? ", " : "",
             rt->m[k].method);
  }
  if (m == NULL)
    return reply_error_hdr(r, 405, "Allow", allow, "method %s not allowed here", method);
  if ((int)m->need > r->role) {
    return http_reply_error(r, 403, m->need == ROLE_ADMIN ? "admin role required"
                                                         : "forbidden");
  }
  if (rt->has_id && valid_id(id_str, &r->id) != 0)
    return http_reply_error(r, 400, "invalid id: must be a positive integer");
  return m->fn(r);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **con_cls) {
  http_req_t *r = *con_cls;

  if (r == NULL || r->conn == NULL) {
    if (r == NULL && (r = calloc(1, sizeof(*r))) == NULL) return MHD_NO;
    r->ctl = cls;
    r->conn = conn;
    r->method = method;
    r->url = url;
    r->route = ROUTE_OTHER;
    r->start_us = now_us();
    peer_address(conn, r->source, sizeof(r->source));
    *con_cls = r;
    head_done(r->ctl, conn);
    /* A body whose length could be read two ways is refused before any of
     * it is read, and the connection closed: what follows it is never run
     * as a request of its own. */
    http_framing_t fr = {0};
    fr.http10 = strcmp(version, MHD_HTTP_VERSION_1_0) == 0;
    MHD_get_connection_values(conn, MHD_HEADER_KIND, count_framing, &fr);
    const char *bad = http_framing_check(&fr);
    if (bad) {
      r->too_large = 1; /* no body is kept */
      r->dispatched = 1;
      log_debug("http", "refused a request from %s: %s", r->source, bad);
      return (enum MHD_Result)reply_error_hdr(r, 400, "Connection", "close", "%s", bad);
    }
    /* Refuse an announced oversized body before reading any of it. */
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    if (cl && strtoull(cl, NULL, 10) > VALID_BODY_MAX) {
      r->too_large = 1;
      r->dispatched = 1;
      return (enum MHD_Result)http_reply_error(r, 413, "request body over %d bytes",
                                               VALID_BODY_MAX);
    }
    return MHD_YES;
  }
  if (*upload_size > 0) {
    if (!r->too_large) {
      if (r->body_len + *upload_size > VALID_BODY_MAX) {
        r->too_large = 1;
        free(r->body);
        r->body = NULL;
        r->body_len = r->body_cap = 0;
      } else {
        if (r->body_len + *upload_size + 1 > r->body_cap) {
          size_t cap = r->body_cap ? r->body_cap : 4096;
          while (cap < r->body_len + *upload_size + 1) cap *= 2;
          char *b = realloc(r->body, cap);
          if (b == NULL) return MHD_NO;
          r->body = b;
          r->body_cap = cap;
        }
        memcpy(r->body + r->body_len, upload_data, *upload_size);
        r->body_len += *upload_size;
        r->body[r->body_len] = '\0';
      }
    }
    *upload_size = 0;
    return MHD_YES;
  }
  if (r->dispatched) {
    /* A relay resumed: its answer (or its failure) is there. */
    if (r->relay) return (enum MHD_Result)r->ctl->http_relay->resume(r);
    return MHD_YES;
  }
  r->dispatched = 1;
  if (r->body == NULL) {
    r->body = calloc(1, 1);
    if (r->body == NULL) return MHD_NO;
  }
  return (enum MHD_Result)dispatch(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  http_req_t *r = *con_cls;
  ctl_t *ctl = cls;
  /* Answered on a connection that stays open: the next head has a deadline. */
  if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK) {
    hconn_t *hc = hconn_of(conn);
    if (hc) watch_arm(ctl->hwatch, hc, 0);
  }
  if (r == NULL) return;
  /* A request MHD refused while reading its head (a malformed header line)
   * never reached the access handler: no method, no start time. */
  if (r->method == NULL) r->method = "other";
  uint64_t us = r->start_us ? (uint64_t)(now_us() - r->start_us) : 0;
  ctl_metrics_request(&ctl->metrics, r->route, r->method, r->status, us);
  if (log_enabled(LOG_DEBUG)) {
    char q[256];
    log_debug("http", "%s %s status=%d ms=%.3f source=%s", r->method,
              log_quote(r->url, q, sizeof(q)), r->status, (double)us / 1000.0, r->source);
  }
  if (ctl->http_relay) ctl->http_relay->done(r);
  free(r->raw_uri);
  free(r->body);
  free(r);
  *con_cls = NULL;
}

/* on_uri makes the request object with the target as the client sent it
 * (MHD hands the access handler a decoded path). */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn) {
  (void)cls;
  (void)conn;
  http_req_t *r = calloc(1, sizeof(*r));
  if (r == NULL) return NULL;
  r->raw_uri = strdup(uri ? uri : "");
  return r;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
  char msg[512];
  vsnprintf(msg, sizeof(msg), fmt, ap);
  size_t n = strlen(msg);
  while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = '\0';
  log_debug("http", "microhttpd: %s", msg);
}

static char *read_pem(const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  long n;
  if (f == NULL) goto fail;
  if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || n > 1024 * 1024 ||
      fseek(f, 0, SEEK_SET) != 0)
    goto fail;
  buf = malloc((size_t)n + 1);
  if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) goto fail;
  buf[n] = '\0';
  fclose(f);
  return buf;
fail:
  snprintf(err, errlen, "%s: %s", path, errno ? strerror(errno) : "cannot read");
  free(buf);
  if (f) fclose(f);
  return NULL;
}

int http_start(ctl_t *ctl, char *err, size_t errlen) {
  const ctl_config_t *c = ctl->cfg;
  char shown[96];
  int tls = c->http_tls_cert[0] != '\0';
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG |
                   MHD_USE_TURBO | MHD_ALLOW_SUSPEND_RESUME;

  int fd = net_listen_tcp("http.listenaddr", c->http_listenaddr, 0, shown, sizeof(shown), err,
                          errlen);
  if (fd < 0) return -1;
  if (tls) {
    ctl->tls_cert = read_pem(c->http_tls_cert, err, errlen);
    if (ctl->tls_cert == NULL) goto fail;
    ctl->tls_key = read_pem(c->http_tls_key, err, errlen);
    if (ctl->tls_key == NULL) goto fail;
    flags |= MHD_USE_TLS;
  }
  struct MHD_OptionItem opts[] = {
      {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)on_mhd_log, NULL},
      {MHD_OPTION_LISTEN_SOCKET, fd, NULL},
      {MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)c->http_threads, NULL},
      {MHD_OPTION_CONNECTION_LIMIT, (intptr_t)c->http_maxconns, NULL},
      {MHD_OPTION_CONNECTION_TIMEOUT, 60, NULL},
      {MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)on_connection, ctl},
      /* 0: libmicrohttpd's own "no limit" */
      {MHD_OPTION_PER_IP_CONNECTION_LIMIT, (intptr_t)c->http_maxconnperaddr, NULL},
      {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, ctl},
      {MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)on_uri, NULL},
      {tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, ctl->tls_cert},
      {tls ? MHD_OPTION_HTTPS_MEM_KEY : MHD_OPTION_END, 0, ctl->tls_key},
      {tls ? MHD_OPTION_HTTPS_PRIORITIES : MHD_OPTION_END, 0,
       (void *)"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CHACHA20-POLY1305"},
      {MHD_OPTION_END, 0, NULL},
  };
  if (watch_start(ctl, err, errlen) != 0) goto fail;
  ctl->httpd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, ctl, MHD_OPTION_ARRAY, opts,
                                MHD_OPTION_END);
  if (ctl->httpd == NULL) {
    snprintf(err, errlen, "cannot start the HTTP server on %s", shown);
    watch_stop(ctl);
    goto fail;
  }
  ctl->listen_fd = fd;
  snprintf(ctl->url, sizeof(ctl->url), "%s://%s", tls ? "https" : "http", shown);
  return 0;

fail:
  close(fd);
  return -1;
}

void http_stop(ctl_t *ctl) {
  if (ctl->httpd) {
    /* MHD must not stop with a suspended (relay) connection. */
    if (ctl->http_relay) ctl->http_relay->shutdown(ctl);
    /* MHD closes the listening socket it was given. */
    MHD_stop_daemon(ctl->httpd);
    ctl->httpd = NULL;
  }
  watch_stop(ctl);
  free(ctl->tls_cert);
  free(ctl->tls_key);
  ctl->tls_cert = ctl->tls_key = NULL;
}
