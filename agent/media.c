/* The agent's media node: see media.h and docs/media.md. */
#include "media.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "timefmt.h"
#include "net.h"

#define MOD "media"

static int on_http(void *arg, const httpflv_request_t *req, httpflv_reply_t *out) {
  media_t *m = arg;
  return m->api ? m->api(m->api_arg, req, out) : 0;
}

/* An allow list of the two probes: the path arrives percent-decoded, so
 * every spelling of a local-API route (a trailing or doubled slash,
 * %-escapes, other case) is simply neither "/healthz" nor "/readyz" and
 * gets 404. */
int media_public_api(void *arg, const httpflv_request_t *req, httpflv_reply_t *out) {
  if (strcmp(req->path, "/healthz") != 0 && strcmp(req->path, "/readyz") != 0) return 0;
  return on_http(arg, req, out);
}

static int is_loopback(int fd) {
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) return 0;
  if (ss.ss_family == AF_INET)
    return (ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127;
  if (ss.ss_family == AF_INET6) {
    const struct in6_addr *a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
  }
  return 0;
}

int media_start(media_t *m, struct ev_loop *loop, const agent_config_t *cfg, media_api_t api,
                void *api_arg, char *err, size_t errlen) {
  memset(m, 0, sizeof(*m));
  m->loop = loop;
  m->cfg = cfg;
  m->api = api;
  m->api_arg = api_arg;
  m->http_fd = -1;
  m->admin_fd = -1;

  hub_config_t hc = {
      .delay_close_s = (double)cfg->publish_delayclose_ms / 1000.0,
      .wait_s = (double)cfg->subscribe_wait_ms / 1000.0,
      .queue_bytes = (size_t)cfg->subscribe_queuebytes,
      .queue_s = (double)cfg->subscribe_queuetime_ms / 1000.0,
      .slow_s = (double)cfg->subscribe_slow_ms / 1000.0,
      .merge_s = (double)cfg->subscribe_merge_ms / 1000.0,
      .max_streams = (unsigned)cfg->publish_maxstreams,
      /* players per stream are the registry's limit: the hub's would count relays too */
      .max_subscribers = 0,
  };
  if ((m->hub = hub_new(loop, &hc)) == NULL) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  connreg_set_limits(hub_connreg(m->hub), (unsigned)cfg->subscribe_maxplayers,
                     (uint64_t)cfg->subscribe_maxbandwidth_kbps * 1000u);
  /* Both actions open: no admission at all, the servers do as before. */
  if ((cfg->auth_publish != EDGEAUTH_LOCAL_NONE || cfg->auth_play != EDGEAUTH_LOCAL_NONE) &&
      (m->auth = edgeauth_new(loop, cfg->node_name, cfg->auth_publish, cfg->auth_play)) == NULL) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  m->http_fd = net_listen_tcp("http.listenaddr", cfg->http_listenaddr, 1, m->http_url,
                              sizeof(m->http_url), err, errlen);
  if (m->http_fd < 0) goto fail;
  /* The public face takes no request bodies: it serves nothing that reads one. */
  httpflv_config_t fc = {.max_connections = (unsigned)cfg->http_maxconns, .max_body = 0};
  if ((m->http = httpflv_new(loop, m->hub, m->http_fd, &fc)) == NULL) {
    snprintf(err, errlen, "cannot start the HTTP server");
    goto fail;
  }
  httpflv_set_api(m->http, media_public_api, m);
  /* Players on the public listener only: the admin one is the node's own
   * and the controller's relay (trusted), and pulls inside the cascade go
   * over QUIC links, not through either server. */
  if (m->auth) httpflv_set_admit(m->http, &edgeauth_ops, m->auth);
  if (cfg->http_adminaddr[0]) {
    m->admin_fd = net_listen_tcp("http.adminaddr", cfg->http_adminaddr, 1, m->admin_url,
                                 sizeof(m->admin_url), err, errlen);
    if (m->admin_fd < 0) goto fail;
    if (!is_loopback(m->admin_fd))
      log_warn(MOD, "http.adminaddr %s is not a loopback address: the node's own API, which "
               "has no authentication, is open to that network", m->admin_url);
    httpflv_config_t ac = {.max_connections = (unsigned)cfg->http_maxconns,
                           .max_body = HTTPFLV_MAX_BODY, .local_only = 1};
    if ((m->admin = httpflv_new(loop, m->hub, m->admin_fd, &ac)) == NULL) {
      snprintf(err, errlen, "cannot start the admin HTTP server");
      goto fail;
    }
    httpflv_set_api(m->admin, on_http, m);
  }
  if (cfg->rtmp_listenaddr[0]) {
    int fd = net_listen_tcp("rtmp.listenaddr", cfg->rtmp_listenaddr, 1, m->rtmp_url,
                            sizeof(m->rtmp_url), err, errlen);
    if (fd < 0) goto fail;
    rtmp_server_config_t rc = {.max_conns = (unsigned)cfg->rtmp_maxconns,
                               .chunk_size = (uint32_t)cfg->rtmp_chunksize,
                               .max_pending = (size_t)cfg->rtmp_maxpending,
                               .ingest_budget = (size_t)cfg->rtmp_ingestbudget};
    if ((m->rtmp = rtmp_server_new(loop, m->hub, fd, &rc)) == NULL) {
      close(fd);
      snprintf(err, errlen, "cannot start the RTMP server");
      goto fail;
    }
    if (m->auth) rtmp_server_set_admit(m->rtmp, &edgeauth_ops, m->auth);
  }
  return 0;

fail:
  media_stop(m);
  return -1;
}

void media_stop(media_t *m) {
  if (m == NULL || m->loop == NULL) return;
  /* Protocols before the hub: they hold subscriptions and streams. */
  rtmp_server_free(m->rtmp);
  httpflv_free(m->http);
  if (m->http_fd >= 0) close(m->http_fd);
  httpflv_free(m->admin);
  if (m->admin_fd >= 0) close(m->admin_fd);
  edgeauth_free(m->auth); /* after the servers: they tell it of their clients' ends */
  hub_free(m->hub);
  memset(m, 0, sizeof(*m));
  m->http_fd = -1;
  m->admin_fd = -1;
}

void media_drain(media_t *m) {
  if (m == NULL || m->loop == NULL) return;
  /* Players first, while their connections are whole; then what is left. */
  hub_drain(m->hub);
  rtmp_server_drain(m->rtmp);
  httpflv_drain(m->http);
  if (m->http_fd >= 0) close(m->http_fd);
  m->http_fd = -1;
  httpflv_drain(m->admin);
  if (m->admin_fd >= 0) close(m->admin_fd);
  m->admin_fd = -1;
}

unsigned media_connections(const media_t *m) {
  httpflv_stats_t f;
  rtmp_server_stats_t r;
  unsigned n = 0;
  if (m->http) httpflv_get_stats(m->http, &f), n += f.current;
  if (m->admin) httpflv_get_stats(m->admin, &f), n += f.current;
  if (m->rtmp) rtmp_server_get_stats(m->rtmp, &r), n += r.active;
  return n;
}

static json_t *time_json(double t) {
  char buf[TIMEFMT_LEN];
  const char *s = timefmt_rfc3339((int64_t)t, buf);
  return s ? json_string(s) : json_null();
}

static void add_stream(const hub_stream_info_t *s, void *arg) {
  json_t *list = arg;
  json_t *video = s->video_codec
                      ? json_pack("{s:s,s:i,s:i,s:f,s:I}", "codec", s->video_codec, "width",
                                  (int)s->width, "height", (int)s->height, "fps", s->fps, "bps",
                                  (json_int_t)s->video_bps)
                      : json_null();
  json_t *audio = s->audio_codec
                      ? json_pack("{s:s,s:i,s:i,s:I}", "codec", s->audio_codec, "sampleRate",
                                  (int)s->sample_rate, "channels", (int)s->channels, "bps",
                                  (json_int_t)s->audio_bps)
                      : json_null();
  const char *kind = s->origin.kind == HUB_ORIGIN_PUSHED   ? "pushed"
                     : s->origin.kind == HUB_ORIGIN_PULLED ? "pulled"
                                                           : "local";
  json_t *origin = json_pack("{s:s,s:I,s:i}", "kind", kind, "node", (json_int_t)s->origin.node,
                             "hops", (int)s->origin.hops);
  json_array_append_new(
      list, json_pack("{s:s,s:s,s:i,s:o,s:s,s:o,s:o,s:o}", "path", s->path, "state",
                      s->live ? "publishing" : "waiting", "subscribers", (int)s->subscribers,
                      "startTime", time_json(s->start_time), "type", "rtmp", "videoTrack", video,
                      "audioTrack", audio, "origin", origin ? origin : json_null()));
}

char *media_stream_list(media_t *m, size_t *len) {
  json_t *list = json_array();
  hub_foreach(m->hub, add_stream, list);
  json_t *o = json_pack("{s:i,s:s,s:I,s:o}", "code", 0, "message", "success", "total",
                        (json_int_t)json_array_size(list), "data", list);
  char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
  json_decref(o);
  if (s) *len = strlen(s);
  return s;
}

char *media_metrics(media_t *m, size_t *len) {
  hub_stats_t h;
  httpflv_stats_t f;
  rtmp_server_stats_t r;
  char *buf = NULL;
  size_t n = 0;
  FILE *out = open_memstream(&buf, &n);
  if (out == NULL) return NULL;
  hub_get_stats(m->hub, &h);
  connreg_t *reg = hub_connreg(m->hub);
  httpflv_get_stats(m->http, &f);
  if (m->admin) { /* both listeners together: players reach either */
    httpflv_stats_t a;
    httpflv_get_stats(m->admin, &a);
    f.players += a.players;
    f.bytes_out += a.bytes_out;
    f.current += a.current;
    f.bad_requests += a.bad_requests;
  }
  memset(&r, 0, sizeof(r));
  if (m->rtmp) rtmp_server_get_stats(m->rtmp, &r);
  fprintf(out,
          "# TYPE cascade_streams gauge\ncascade_streams %u\n"
          "# TYPE cascade_publishers gauge\ncascade_publishers{protocol=\"rtmp\"} %u\n"
          "# TYPE cascade_subscribers gauge\ncascade_subscribers{protocol=\"rtmp\"} %u\n"
          "cascade_subscribers{protocol=\"httpflv\"} %u\n"
          "# TYPE cascade_bytes_in_total counter\ncascade_bytes_in_total %llu\n"
          "# TYPE cascade_bytes_out_total counter\n"
          "cascade_bytes_out_total{protocol=\"rtmp\"} %llu\n"
          "cascade_bytes_out_total{protocol=\"httpflv\"} %llu\n"
          "# TYPE cascade_frames_dropped_total counter\ncascade_frames_dropped_total %llu\n"
          "# TYPE cascade_slow_disconnects_total counter\ncascade_slow_disconnects_total %llu\n"
          "# TYPE cascade_queue_bytes gauge\ncascade_queue_bytes %zu\n"
          "# TYPE cascade_rtmp_connections gauge\ncascade_rtmp_connections %u\n"
          "# TYPE cascade_rtmp_refused_total counter\ncascade_rtmp_refused_total %llu\n"
          "# TYPE cascade_rtmp_protocol_errors_total counter\n"
          "cascade_rtmp_protocol_errors_total %llu\n"
          "# TYPE cascade_rtmp_ingest_held_bytes gauge\ncascade_rtmp_ingest_held_bytes %zu\n"
          "# TYPE cascade_rtmp_limit_closes_total counter\n"
          "cascade_rtmp_limit_closes_total{limit=\"pending\"} %llu\n"
          "cascade_rtmp_limit_closes_total{limit=\"budget\"} %llu\n"
          "# TYPE cascade_http_connections gauge\ncascade_http_connections %u\n"
          "# TYPE cascade_http_bad_requests_total counter\ncascade_http_bad_requests_total %llu\n"
          "# TYPE cascade_egress_bps gauge\ncascade_egress_bps %llu\n"
          "# TYPE cascade_players_refused_total counter\n"
          "cascade_players_refused_total{limit=\"players\"} %llu\n"
          "cascade_players_refused_total{limit=\"bandwidth\"} %llu\n"
          "# TYPE cascade_stream_connections gauge\ncascade_stream_connections %zu\n"
          "# TYPE cascade_stream_kicks_total counter\ncascade_stream_kicks_total %llu\n",
          h.streams, r.publishers, r.players, f.players, (unsigned long long)h.bytes_in,
          (unsigned long long)r.bytes_out, (unsigned long long)f.bytes_out,
          (unsigned long long)h.frames_dropped, (unsigned long long)h.slow_disconnects,
          h.queued_bytes, r.active, (unsigned long long)r.refused,
          (unsigned long long)r.protocol_errors, r.ingest_held,
          (unsigned long long)r.pending_closes, (unsigned long long)r.budget_closes, f.current, (unsigned long long)f.bad_requests,
          (unsigned long long)connreg_egress_bps(reg, ev_now(m->loop)),
          (unsigned long long)reg->refused_players, (unsigned long long)reg->refused_bandwidth,
          reg->count, (unsigned long long)reg->kicks);
  /* Refusals by the edge's authorization (docs/media.md, "Authorization"). */
  fprintf(out,
          "# TYPE cascade_auth_refused_total counter\n"
          "cascade_auth_refused_total{protocol=\"rtmp\"} %llu\n"
          "cascade_auth_refused_total{protocol=\"httpflv\"} %llu\n",
          (unsigned long long)r.admit_refused, (unsigned long long)f.admit_refused);
  if (m->auth) {
    /* The hook client (docs/media.md, "HTTP hooks"). */
    edgeauth_stats as;
    edgeauth_get_stats(m->auth, &as);
    fprintf(out,
            "# TYPE cascade_hook_requests_total counter\ncascade_hook_requests_total %llu\n"
            "# TYPE cascade_hook_answers_total counter\n"
            "cascade_hook_answers_total{answer=\"allowed\"} %llu\n"
            "cascade_hook_answers_total{answer=\"refused\"} %llu\n"
            "cascade_hook_answers_total{answer=\"failed\"} %llu\n"
            "# TYPE cascade_hook_cache_hits_total counter\ncascade_hook_cache_hits_total %llu\n"
            "# TYPE cascade_hook_overflow_total counter\ncascade_hook_overflow_total %llu\n"
            "# TYPE cascade_hook_notify_dropped_total counter\n"
            "cascade_hook_notify_dropped_total %llu\n",
            (unsigned long long)as.hooks.requests, (unsigned long long)as.hooks.allowed,
            (unsigned long long)as.hooks.refused, (unsigned long long)as.hooks.failed,
            (unsigned long long)as.hooks.cache_hits, (unsigned long long)as.hooks.overflow,
            (unsigned long long)as.hooks.notify_dropped);
  }
  fclose(out);
  *len = n;
  return buf;
}
