/* The node's stream management routes: see streamadm.h. */
#include "streamadm.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "timefmt.h"

#define MOD "api"

static char *envelope(int code, const char *message, json_t *data, size_t *len) {
  json_t *b = json_pack("{s:i,s:s,s:o}", "code", code, "message", message, "data",
                        data ? data : json_null());
  char *out = b ? json_dumps(b, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
  json_decref(b);
  *len = out ? strlen(out) : 0;
  return out;
}

/* reply answers |status| with the envelope: code 0 for a success. */
static int reply(httpflv_reply_t *out, int status, const char *message, json_t *data) {
  out->body = envelope(status < 300 ? 0 : status, message, data, &out->len);
  return out->body ? status : 500;
}

/* body_member parses a bounded JSON object body holding exactly the
 * member |key|: the member, owned by *|root|, or NULL with the status. */
static json_t *body_member(const char *body, size_t len, const char *key, json_t **root,
                           int *status, char *why, size_t wlen) {
  json_error_t e;
  *root = NULL;
  if (len > STREAMADM_BODY_MAX) {
    *status = 413;
    snprintf(why, wlen, "request body over %d bytes", STREAMADM_BODY_MAX);
    return NULL;
  }
  *status = 400;
  if (len == 0) {
    snprintf(why, wlen, "a JSON object {\"%s\": ...} is required", key);
    return NULL;
  }
  json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &e);
  if (o == NULL) {
    snprintf(why, wlen, "bad JSON: %s", e.text);
    return NULL;
  }
  if (!json_is_object(o)) {
    json_decref(o);
    snprintf(why, wlen, "a JSON object {\"%s\": ...} is required", key);
    return NULL;
  }
  const char *k;
  json_t *v;
  json_object_foreach(o, k, v) {
    if (strcmp(k, key) != 0) {
      json_decref(o);
      snprintf(why, wlen, "unknown member (only \"%s\" is read)", key);
      return NULL;
    }
  }
  v = json_object_get(o, key);
  if (v == NULL) {
    json_decref(o);
    snprintf(why, wlen, "\"%s\" is required", key);
    return NULL;
  }
  *root = o;
  return v;
}

int streamadm_parse_kick(const char *body, size_t len, uint64_t *id, char *why, size_t wlen) {
  json_t *root, *v;
  int status;
  if ((v = body_member(body, len, "id", &root, &status, why, wlen)) == NULL) return status;
  if (!json_is_integer(v) || json_integer_value(v) <= 0) {
    json_decref(root);
    snprintf(why, wlen, "id: a connection id (a positive integer) is required");
    return 400;
  }
  *id = (uint64_t)json_integer_value(v);
  json_decref(root);
  return 0;
}

int streamadm_parse_drop(const char *body, size_t len, char *path, size_t plen, char *why,
                         size_t wlen) {
  json_t *root, *v;
  int status;
  if ((v = body_member(body, len, "path", &root, &status, why, wlen)) == NULL) return status;
  const char *p = json_string_value(v);
  if (p == NULL || strlen(p) != json_string_length(v) || !hub_path_ok(p) ||
      strlen(p) >= plen) {
    json_decref(root);
    snprintf(why, wlen, "path: a stream path app/name is required");
    return 400;
  }
  snprintf(path, plen, "%s", p);
  json_decref(root);
  return 0;
}

static int hexval(int ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

int streamadm_query_path(const char *query, char *path, size_t plen) {
  const char *v = NULL;
  for (const char *p = query; p && *p;) {
    if (strncmp(p, "path=", 5) == 0) {
      v = p + 5;
      break;
    }
    p = strchr(p, '&');
    if (p) p++;
  }
  if (v == NULL) return 0;
  size_t o = 0;
  for (; *v && *v != '&'; v++) {
    int ch = (unsigned char)*v;
    if (ch == '%') {
      int a = hexval((unsigned char)v[1]), b = a < 0 ? -1 : hexval((unsigned char)v[2]);
      if (b < 0) return -1;
      ch = a * 16 + b;
      v += 2;
    } else if (ch == '+') {
      ch = ' ';
    }
    if (ch == 0 || o + 1 >= plen) return -1;
    path[o++] = (char)ch;
  }
  path[o] = '\0';
  return hub_path_ok(path) ? 1 : -1;
}

/* text_json is |s| as a JSON string; a path that is not UTF-8 (any byte
 * but control ones is allowed) has its non-ASCII bytes shown as '?'. */
static json_t *text_json(const char *s) {
  json_t *j = json_string(s);
  if (j) return j;
  char *c = strdup(s);
  if (c == NULL) return NULL;
  for (char *p = c; *p; p++)
    if ((unsigned char)*p >= 0x80) *p = '?';
  j = json_string(c);
  free(c);
  return j;
}

static const char *kind_name(int kind) {
  return kind == CONNREG_PUBLISHER ? "publisher" : "player";
}

static json_t *time_json(double t) {
  char buf[TIMEFMT_LEN];
  const char *s = timefmt_rfc3339((int64_t)t, buf);
  return s ? json_string(s) : json_null();
}

static int connections(hub_t *hub, double now, const httpflv_request_t *rq, httpflv_reply_t *out) {
  char path[STREAMEV_PATH_MAX + 1];
  int has = streamadm_query_path(rq->query, path, sizeof(path));
  if (has < 0) return reply(out, 400, "path: a stream path app/name is required", NULL);
  connreg_t *reg = hub_connreg(hub);
  json_t *list = json_array();
  for (const connreg_ent_t *e = reg->head; list && e; e = e->next) {
    if (has && strcmp(e->path, path) != 0) continue;
    double dur = now - e->since;
    json_t *o = json_pack("{s:I,s:o,s:s,s:s,s:o,s:I,s:I,s:o,s:I}", "id", (json_int_t)e->id,
                          "path", text_json(e->path), "kind", kind_name(e->kind), "protocol",
                          e->protocol, "addr", text_json(e->addr), "bytes_in",
                          (json_int_t)(e->bytes_in ? *e->bytes_in : 0), "bytes_out",
                          (json_int_t)(e->bytes_out ? *e->bytes_out : 0), "since",
                          time_json(e->since), "duration_ms",
                          (json_int_t)(dur > 0 ? dur * 1000 : 0));
    if (o == NULL || json_array_append_new(list, o) != 0) {
      json_decref(list);
      list = NULL;
    }
  }
  if (list == NULL) return 500;
  if (has && json_array_size(list) == 0 && !hub_has_stream(hub, path)) {
    json_decref(list);
    return reply(out, 404, "no such stream at this node", NULL);
  }
  json_t *o = json_pack("{s:i,s:s,s:I,s:o}", "code", 0, "message", "success", "total",
                        (json_int_t)json_array_size(list), "data", list);
  out->body = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
  json_decref(o);
  out->len = out->body ? strlen(out->body) : 0;
  return out->body ? 200 : 500;
}

static void queue_event(streamev_q_t *q, const streamev_t *e) {
  if (streamev_push(q, e) != 0)
    log_warn(MOD, "the stream event queue is full (%d): %s of %s not reported to the controller "
             "(%llu dropped so far)", STREAMEV_MAX, e->action, e->path,
             (unsigned long long)q->dropped);
}

static int kick(hub_t *hub, streamev_q_t *q, const httpflv_request_t *rq, httpflv_reply_t *out) {
  char why[256], qp[128];
  uint64_t id = 0;
  int st = streamadm_parse_kick(rq->body, rq->body_len, &id, why, sizeof(why));
  if (st) return reply(out, st, why, NULL);
  connreg_t *reg = hub_connreg(hub);
  connreg_ent_t *e = connreg_find(reg, id);
  if (e == NULL) {
    snprintf(why, sizeof(why), "no connection %llu at this node", (unsigned long long)id);
    return reply(out, 404, why, NULL);
  }
  /* the entry may be gone once kicked: what the answer and the event say
   * is taken first */
  streamev_t ev;
  memset(&ev, 0, sizeof(ev));
  ev.time = (int64_t)time(NULL);
  snprintf(ev.action, sizeof(ev.action), "stream.kick");
  snprintf(ev.path, sizeof(ev.path), "%s", e->path);
  ev.connection = id;
  snprintf(ev.addr, sizeof(ev.addr), "%s", e->addr);
  snprintf(ev.kind, sizeof(ev.kind), "%s", kind_name(e->kind));
  snprintf(ev.protocol, sizeof(ev.protocol), "%s", e->protocol);
  ev.ended = 1;
  json_t *d = json_pack("{s:I,s:o,s:s,s:s,s:o}", "id", (json_int_t)id, "path",
                        text_json(ev.path), "kind", ev.kind, "protocol", ev.protocol, "addr",
                        text_json(ev.addr));
  log_info(MOD, "kick: connection %llu (%s %s from %s) of %s", (unsigned long long)id,
           ev.protocol, ev.kind, ev.addr, log_quote(ev.path, qp, sizeof(qp)));
  connreg_kick(reg, id);
  queue_event(q, &ev);
  return reply(out, 200, "kicked", d);
}

static int drop(hub_t *hub, streamev_q_t *q, const httpflv_request_t *rq, httpflv_reply_t *out) {
  char why[256], qp[128];
  char path[STREAMEV_PATH_MAX + 1];
  int st = streamadm_parse_drop(rq->body, rq->body_len, path, sizeof(path), why, sizeof(why));
  if (st) return reply(out, st, why, NULL);
  connreg_t *reg = hub_connreg(hub);
  unsigned n = connreg_count_path(reg, path, CONNREG_PUBLISHER) +
               connreg_count_path(reg, path, CONNREG_PLAYER);
  if (n == 0 && !hub_has_stream(hub, path)) return reply(out, 404, "no such stream at this node", NULL);
  log_info(MOD, "drop: %s (%u connections)", log_quote(path, qp, sizeof(qp)), n);
  /* Publishers first: each one's kick ends its stream at once (players
   * told, the push upstream finished). Then what has no registered
   * publisher (a stream kept by delayclose, an outside pull) and players
   * still waiting for the stream. */
  connreg_kick_path(reg, path, CONNREG_PUBLISHER);
  hub_drop(hub, path);
  connreg_kick_path(reg, path, CONNREG_PLAYER);
  streamev_t ev;
  memset(&ev, 0, sizeof(ev));
  ev.time = (int64_t)time(NULL);
  snprintf(ev.action, sizeof(ev.action), "stream.drop");
  snprintf(ev.path, sizeof(ev.path), "%s", path);
  ev.ended = n;
  queue_event(q, &ev);
  return reply(out, 200, "dropped", json_pack("{s:o,s:i}", "path", text_json(path), "ended", (int)n));
}

int streamadm_route(hub_t *hub, streamev_q_t *q, double now, const httpflv_request_t *rq,
                    httpflv_reply_t *out) {
  const char *p = rq->path, *m = rq->method;
  int get = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0, post = strcmp(m, "POST") == 0;
  out->ctype = "application/json";
  if (strcmp(p, "/api/stream/connections") == 0) {
    if (!get) {
      out->allow = "GET, HEAD";
      return reply(out, 405, "method not allowed: GET lists the connections", NULL);
    }
    return connections(hub, now, rq, out);
  }
  int is_kick = strcmp(p, "/api/stream/kick") == 0;
  if (!is_kick && strcmp(p, "/api/stream/drop") != 0) return 0;
  if (!post) {
    out->allow = "POST";
    return reply(out, 405, is_kick ? "method not allowed: POST {\"id\": N} kicks a connection"
                                   : "method not allowed: POST {\"path\": \"app/name\"} drops a stream",
                 NULL);
  }
  return is_kick ? kick(hub, q, rq, out) : drop(hub, q, rq, out);
}
