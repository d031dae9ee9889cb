/* The agent's side of the API relay: see relayc.h.
 *
 * One rop_t per relay: a loopback TCP connection to our own HTTP server
 * (ev_io on the loop) and one exchange on the control connection
 * (agent/ctlsp.h) for its RelayResponse messages, one at a time; all of
 * it on the loop. */
#define _GNU_SOURCE
#include "relayc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "agentmsg.h"
#include "httpresp.h"
#include "log.h"
#include "relpath.h"

#define MOD "relayc"
#define HEAD_MAX (16 * 1024)
#define MAX_HEADERS 64

typedef struct rop {
  relayc_t *rc;
  struct rop *next, *prev;
  uint64_t id;                 /* the controller's relay id */
  unsigned epoch;              /* the control session it belongs to */
  int fd;
  ev_io rio, wio;
  ev_timer timer;
  char *req;                   /* the HTTP request to write */
  size_t reqlen, reqoff;
  char head[HEAD_MAX + 1];
  size_t headlen;
  int head_done;
  int status;
  int chunked;
  httpresp_chunked_t chd;
  char *hname[MAX_HEADERS], *hvalue[MAX_HEADERS]; /* owned: the head's headers */
  size_t nh;
  uint8_t *chunk;              /* response data for the next message */
  size_t chunklen;
  int eof;                     /* the local server finished (or failed) */
  int sent_first, sent_end;
  ctlsp_req_t ack;             /* its exchange on the control connection, one at a time */
  int busy;                    /* a message is waiting for its ack */
  uint64_t bytes;
} rop_t;

struct relayc {
  struct ev_loop *loop;
  ctlc_t *c;
  struct sockaddr_storage local;
  socklen_t local_len;
  rop_t *ops;
  size_t nops;
  uint64_t next_req_id;
  /* counters */
  unsigned long long total, denied, failed, cancelled;
  char metrics[512];
};

static int rop_pump(rop_t *o);

static void on_ack(rop_t *o, int rv, const uint8_t *body, size_t len);

static void ack_cb(ctlsp_req_t *r, int rv, const uint8_t *body, size_t len, void *arg) {
  (void)r;
  on_ack(arg, rv, body, len);
}

/* ---- life of a relay ---------------------------------------------------------- */

static void rop_free(rop_t *o) {
  relayc_t *rc = o->rc;
  ctlsp_req_cancel(&o->ack);
  if (o->fd >= 0) {
    ev_io_stop(rc->loop, &o->rio);
    ev_io_stop(rc->loop, &o->wio);
    close(o->fd);
  }
  ev_timer_stop(rc->loop, &o->timer);
  for (size_t i = 0; i < o->nh; i++) {
    free(o->hname[i]);
    free(o->hvalue[i]);
  }
  if (o->prev) o->prev->next = o->next;
  else rc->ops = o->next;
  if (o->next) o->next->prev = o->prev;
  rc->nops--;
  free(o->req);
  free(o->chunk);
  free(o);
}

/* rop_local_failed ends the local side; before a head, the caller gets
 * |status| with |msg|. */
static void rop_local_failed(rop_t *o, int status, const char *msg) {
  relayc_t *rc = o->rc;
  if (o->fd >= 0) {
    ev_io_stop(rc->loop, &o->rio);
    ev_io_stop(rc->loop, &o->wio);
    close(o->fd);
    o->fd = -1;
  }
  o->eof = 1;
  if (!o->head_done) {
    o->head_done = 1;
    o->status = status;
    char body[300];
    int n = snprintf(body, sizeof(body), "{\"code\":%d,\"message\":\"%s\",\"data\":null}", status,
                     msg);
    free(o->chunk);
    o->chunk = malloc((size_t)n);
    if (o->chunk) {
      memcpy(o->chunk, body, (size_t)n);
      o->chunklen = (size_t)n;
    }
    for (size_t i = 0; i < o->nh; i++) {
      free(o->hname[i]);
      free(o->hvalue[i]);
    }
    o->nh = 0;
    o->hname[0] = strdup("Content-Type");
    o->hvalue[0] = strdup("application/json");
    if (o->hname[0] && o->hvalue[0]) {
      o->nh = 1;
    } else {
      free(o->hname[0]);
      free(o->hvalue[0]);
    }
  }
}

/* send_msg sends the next RelayResponse: the head first, then data, then
 * the end. 0, or -1 when |o| was freed. */
static int send_msg(rop_t *o) {
  relayc_t *rc = o->rc;
  ctlc_t *c = rc->c;
  relay_header_t hv[MAX_HEADERS];
  relay_response_t m;
  agentmsg_head_t h;
  size_t len = 0;
  uint8_t *buf;

  if (!c->open || !c->has_session || c->epoch != o->epoch) {
    rop_free(o);
    return -1;
  }
  memset(&m, 0, sizeof(m));
  m.id = o->id;
  if (!o->sent_first) {
    m.status = (unsigned)o->status;
    for (size_t i = 0; i < o->nh; i++) {
      hv[i].name = o->hname[i];
      hv[i].value = o->hvalue[i];
    }
    m.headers = o->nh ? hv : NULL;
    m.nheaders = o->nh;
  }
  m.data = o->chunk;
  m.len = o->chunklen;
  m.end = o->eof;
  h.id = ++rc->next_req_id;
  h.session = c->session;
  if ((buf = agentmsg_pack_relay_response(&h, &m, &len)) == NULL ||
      ctlsp_send(c->sp, &o->ack, buf, len, RELAYC_ACK_TIMEOUT_MS) != 0) {
    free(buf);
    rc->failed++;
    rop_free(o);
    return -1;
  }
  free(buf);
  o->sent_first = 1;
  if (m.end) o->sent_end = 1;
  o->bytes += o->chunklen;
  o->chunklen = 0;
  o->busy = 1;
  return 0;
}

/* chunk_put appends decoded body bytes (httpresp_chunked_feed callback). */
static int chunk_put(void *arg, const uint8_t *data, size_t n) {
  rop_t *o = arg;
  memcpy(o->chunk + o->chunklen, data, n);
  o->chunklen += n;
  return 0;
}

/* parse_head turns the response head into status and headers. */
static int parse_head(rop_t *o) {
  if (httpresp_head(o->head, o->headlen, &o->status, &o->chunked) != 0 || o->status < 100 ||
      o->status > 599)
    return -1;
  char *p = memchr(o->head, '\n', o->headlen);
  char *end = o->head + o->headlen;
  while (p && ++p < end) {
    char *e = memchr(p, '\n', (size_t)(end - p));
    if (e == NULL) break;
    char *le = e > p && e[-1] == '\r' ? e - 1 : e;
    if (le == p) break;
    char *colon = memchr(p, ':', (size_t)(le - p));
    if (colon && colon > p && o->nh < MAX_HEADERS) {
      char *v = colon + 1;
      while (v < le && (*v == ' ' || *v == '\t')) v++;
      size_t vl = (size_t)(le - v);
      char *name = strndup(p, (size_t)(colon - p)), *value = strndup(v, vl);
      int ok = name && value && strlen(name) < CTLMSG_RELAY_HNAME_MAX &&
               vl < CTLMSG_RELAY_HVALUE_MAX;
      for (char *q = name; ok && *q; q++)
        if (*q <= 0x20 || *q >= 0x7f) ok = 0;
      for (char *q = value; ok && *q; q++)
        if ((unsigned char)*q < 0x20 || (unsigned char)*q >= 0x7f) ok = 0;
      /* The controller frames the body itself. */
      if (ok && o->chunked && strcasecmp(name, "transfer-encoding") == 0) ok = 0;
      if (ok) {
        o->hname[o->nh] = name;
        o->hvalue[o->nh] = value;
        o->nh++;
      } else {
        free(name);
        free(value);
      }
    }
    p = e;
  }
  o->head_done = 1;
  if (o->chunked) httpresp_chunked_init(&o->chd);
  return 0;
}

/* rop_read drains the local socket into the head or the chunk buffer.
 * 0, or -1 when |o| was freed. */
static int rop_read(rop_t *o) {
  for (;;) {
    if (!o->head_done) {
      ssize_t n = recv(o->fd, o->head + o->headlen, HEAD_MAX - o->headlen, 0);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return 0;
      if (n <= 0) {
        rop_local_failed(o, 502, n == 0 ? "the node's local API closed without an answer"
                                        : "the node's local API failed");
        return 0;
      }
      size_t from = o->headlen >= 3 ? o->headlen - 3 : 0;
      o->headlen += (size_t)n;
      o->head[o->headlen] = '\0';
      char *e = NULL;
      for (size_t i = from; i + 4 <= o->headlen; i++)
        if (memcmp(o->head + i, "\r\n\r\n", 4) == 0) {
          e = o->head + i + 4;
          break;
        }
      if (e == NULL) {
        if (o->headlen >= HEAD_MAX) {
          rop_local_failed(o, 502, "the node's local API sent an oversized head");
          return 0;
        }
        continue;
      }
      size_t hl = (size_t)(e - o->head), extra = o->headlen - hl;
      char keep[HEAD_MAX];
      memcpy(keep, e, extra);
      o->headlen = hl;
      if (parse_head(o) != 0) {
        rop_local_failed(o, 502, "the node's local API sent a malformed answer");
        return 0;
      }
      if (o->chunk == NULL && (o->chunk = malloc(CTLMSG_RELAY_CHUNK_MAX)) == NULL) {
        rop_local_failed(o, 502, "out of memory");
        return 0;
      }
      if (extra) {
        const char *why = NULL;
        if (o->chunked) {
          if (httpresp_chunked_feed(&o->chd, (uint8_t *)keep, extra, chunk_put, o, &why) < 0) {
            o->eof = 1;
            return 0;
          }
        } else {
          memcpy(o->chunk, keep, extra);
          o->chunklen = extra;
        }
      }
      continue;
    }
    if (o->eof || (o->chunked && o->chd.done)) {
      o->eof = 1;
      return 0;
    }
    size_t room = CTLMSG_RELAY_CHUNK_MAX - o->chunklen;
    if (room == 0) {
      ev_io_stop(o->rc->loop, &o->rio); /* backpressure: resumed after the ack */
      return 0;
    }
    uint8_t tmp[65536];
    size_t want = room < sizeof(tmp) ? room : sizeof(tmp);
    ssize_t n = recv(o->fd, o->chunked ? tmp : o->chunk + o->chunklen, want, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return 0;
    if (n <= 0) {
      ev_io_stop(o->rc->loop, &o->rio);
      o->eof = 1;
      return 0;
    }
    if (o->chunked) {
      const char *why = NULL;
      if (httpresp_chunked_feed(&o->chd, tmp, (size_t)n, chunk_put, o, &why) < 0) o->eof = 1;
      if (o->chd.done) o->eof = 1;
    } else {
      o->chunklen += (size_t)n;
    }
  }
}

/* rop_pump sends what can go now. 0, or -1 when |o| was freed. */
static int rop_pump(rop_t *o) {
  if (o->busy) return 0;
  if (o->sent_end) {
    rop_free(o);
    return -1;
  }
  if (!o->head_done) return 0;
  if (!o->sent_first || o->chunklen > 0 || o->eof) return send_msg(o);
  return 0;
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents) {
  rop_t *o = w->data;
  (void)loop;
  (void)revents;
  if (rop_read(o) == 0) rop_pump(o);
}

static void on_write(struct ev_loop *loop, ev_io *w, int revents) {
  rop_t *o = w->data;
  (void)revents;
  if (o->reqoff == 0) {
    int err = 0;
    socklen_t el = sizeof(err);
    getsockopt(o->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err) {
      log_warn(MOD, "relay %llu: cannot reach the local API: %s", (unsigned long long)o->id,
               strerror(err));
      rop_local_failed(o, 502, "the node's local API is unreachable");
      rop_pump(o);
      return;
    }
  }
  while (o->reqoff < o->reqlen) {
    ssize_t n = send(o->fd, o->req + o->reqoff, o->reqlen - o->reqoff, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    if (n <= 0) {
      rop_local_failed(o, 502, "the node's local API failed");
      rop_pump(o);
      return;
    }
    o->reqoff += (size_t)n;
  }
  ev_io_stop(loop, &o->wio);
  free(o->req);
  o->req = NULL;
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents) {
  rop_t *o = w->data;
  (void)loop;
  (void)revents;
  if (o->head_done) return;
  rop_local_failed(o, 504, "the node's local API did not answer in time");
  rop_pump(o);
}

static void on_ack(rop_t *o, int rv, const uint8_t *body, size_t len) {
  relayc_t *rc = o->rc;
  o->busy = 0;
  if (rv != 0) {
    log_warn(MOD, "relay %llu: no ack from the controller: %s", (unsigned long long)o->id,
             rv == CTLSP_ETIMEDOUT ? "timed out" : rv == CTLSP_ENOMEM ? "out of memory"
                                                   : "the control connection ended");
    rc->failed++;
    rop_free(o);
    return;
  }
  if (agentmsg_relay_ack_cancelled(body, len)) {
    if (!o->sent_end) {
      rc->cancelled++;
      log_debug(MOD, "relay %llu cancelled by the controller after %llu bytes",
                (unsigned long long)o->id, (unsigned long long)o->bytes);
    }
    rop_free(o);
    return;
  }
  if (o->fd >= 0 && !o->eof && !ev_is_active(&o->rio)) ev_io_start(rc->loop, &o->rio);
  if (o->fd >= 0 && !o->eof && rop_read(o) != 0) return;
  rop_pump(o);
}

/* ---- requests ------------------------------------------------------------------- */

/* build_request writes the HTTP request for |q| with path |enc|. */
static char *build_request(const relay_request_t *q, const char *enc, size_t *len) {
  char *buf = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&buf, &n);
  if (f == NULL) return NULL;
  fprintf(f, "%s %s%s%s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n", q->method, enc,
          q->query && q->query[0] ? "?" : "", q->query ? q->query : "");
  for (size_t i = 0; i < q->nheaders; i++) {
    const char *k = q->headers[i].name;
    if (strcasecmp(k, "host") == 0 || strcasecmp(k, "content-length") == 0 ||
        strcasecmp(k, "connection") == 0 || strcasecmp(k, "transfer-encoding") == 0 ||
        strcasecmp(k, "expect") == 0 || strcasecmp(k, "origin") == 0)
      continue; /* Origin: the caller's browser context means nothing to the node's API */
    fprintf(f, "%s: %s\r\n", k, q->headers[i].value);
  }
  if (q->body_len || (strcmp(q->method, "GET") != 0 && strcmp(q->method, "HEAD") != 0))
    fprintf(f, "Content-Length: %zu\r\n", q->body_len);
  fputs("\r\n", f);
  if (q->body_len) fwrite(q->body, 1, q->body_len, f);
  if (fclose(f) != 0) {
    free(buf);
    return NULL;
  }
  *len = n;
  return buf;
}

void relayc_submit(relayc_t *rc, const relay_request_t *q, const char *invalid) {
  ctlc_t *c = rc->c;
  rop_t *o = calloc(1, sizeof(*o));
  char *norm = NULL, *enc = NULL, msg[256];
  const char *why = NULL, *rule = NULL;
  size_t pl = invalid ? 0 : strlen(q->path);
  int status = 0;

  if (q->id == 0) {
    /* Nothing to answer it with: the controller's deadline does. */
    log_warn(MOD, "relay request without an id from the controller ignored");
    free(o);
    return;
  }
  if (o == NULL) return; /* the controller's deadline answers */
  rc->total++;
  o->rc = rc;
  o->fd = -1;
  o->id = q->id;
  o->epoch = c->epoch;
  o->next = rc->ops;
  if (rc->ops) rc->ops->prev = o;
  rc->ops = o;
  rc->nops++;
  ev_io_init(&o->rio, on_read, -1, EV_READ);
  ev_io_init(&o->wio, on_write, -1, EV_WRITE);
  ev_timer_init(&o->timer, on_timer, RELAYC_HEAD_TIMEOUT_S, 0.);
  o->rio.data = o->wio.data = o->timer.data = o;
  ctlsp_req_init(&o->ack, rc->loop, ack_cb, o);

  /* Never trust the controller: the bounds were checked (|invalid|), the
   * path is normalised again and judged by our own rules. A bad request
   * fails alone (400), never the session. */
  norm = malloc(pl + 1);
  enc = malloc(3 * pl + 1);
  if (invalid != NULL) {
    status = 400;
    snprintf(msg, sizeof(msg), "invalid relay request: %s", invalid);
    log_warn(MOD, "relay %llu refused: %s", (unsigned long long)q->id, msg);
  } else if (norm == NULL || enc == NULL) {
    status = 500;
    snprintf(msg, sizeof(msg), "out of memory");
  } else if (relpath_normalize(q->path, pl, norm, pl + 1, &why) != 0) {
    status = 400;
    snprintf(msg, sizeof(msg), "invalid relay path: %s", why);
  } else {
    int v = relpath_check(norm, c->rules.allow, c->rules.nallow, c->rules.deny, c->rules.ndeny,
                          &rule);
    if (v == RELPATH_DENIED) {
      status = 403;
      snprintf(msg, sizeof(msg), "relay path %s denied by cascadeclient.relayapi.deny rule '%s'",
               norm, rule);
    } else if (v != RELPATH_ALLOWED) {
      status = 403;
      snprintf(msg, sizeof(msg),
               c->rules.nallow ? "relay path %s not allowed by cascadeclient.relayapi.allow"
                               : "relay path %s not allowed: cascadeclient.relayapi.allow is empty",
               norm);
    } else if (rc->nops > RELAYC_MAX) {
      status = 503;
      snprintf(msg, sizeof(msg), "too many relays in progress on this node (at most %d)",
               RELAYC_MAX);
    } else if (relpath_encode(norm, enc, 3 * pl + 1) < 0) {
      status = 500;
      snprintf(msg, sizeof(msg), "internal error");
    }
  }
  if (status) {
    if (status == 403) {
      rc->denied++;
      log_info(MOD, "relay %llu refused: %s", (unsigned long long)q->id, msg);
    }
    /* The message goes into a JSON string: no quote or backslash. */
    for (char *p = msg; *p; p++)
      if (*p == '"' || *p == '\\') *p = '\'';
    rop_local_failed(o, status, msg);
    free(norm);
    free(enc);
    rop_pump(o);
    return;
  }
  o->req = build_request(q, enc, &o->reqlen);
  free(norm);
  free(enc);
  if (o->req == NULL) {
    rop_local_failed(o, 500, "out of memory");
    rop_pump(o);
    return;
  }
  if (rc->local_len == 0) {
    rop_local_failed(o, 503, "this node has no local API (http.adminaddr is empty)");
    rop_pump(o);
    return;
  }
  o->fd = socket(rc->local.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (o->fd < 0 || (connect(o->fd, (struct sockaddr *)&rc->local, rc->local_len) != 0 &&
                    errno != EINPROGRESS)) {
    rop_local_failed(o, 502, "the node's local API is unreachable");
    rop_pump(o);
    return;
  }
  int one = 1;
  setsockopt(o->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  ev_io_set(&o->rio, o->fd, EV_READ);
  ev_io_set(&o->wio, o->fd, EV_WRITE);
  ev_io_start(rc->loop, &o->wio);
  ev_io_start(rc->loop, &o->rio);
  ev_timer_start(rc->loop, &o->timer);
}

void relayc_check(relayc_t *rc) {
  if (rc == NULL) return;
  ctlc_t *c = rc->c;
  rop_t *o = rc->ops;
  while (o) {
    rop_t *next = o->next;
    if (!c->open || !c->has_session || c->epoch != o->epoch) {
      rc->failed++;
      rop_free(o);
    }
    o = next;
  }
}

const char *relayc_metrics(relayc_t *rc) {
  snprintf(rc->metrics, sizeof(rc->metrics),
           "# TYPE cascade_relay_requests_total counter\n"
           "cascade_relay_requests_total %llu\n"
           "# TYPE cascade_relay_denied_total counter\ncascade_relay_denied_total %llu\n"
           "# TYPE cascade_relay_cancelled_total counter\ncascade_relay_cancelled_total %llu\n"
           "# TYPE cascade_relay_failed_total counter\ncascade_relay_failed_total %llu\n"
           "# TYPE cascade_relay_active gauge\ncascade_relay_active %zu\n",
           rc->total, rc->denied, rc->cancelled, rc->failed, rc->nops);
  return rc->metrics;
}

relayc_t *relayc_new(struct ev_loop *loop, ctlc_t *c, int listen_fd) {
  relayc_t *rc = calloc(1, sizeof(*rc));
  if (rc == NULL) return NULL;
  rc->loop = loop;
  rc->c = c;
  rc->local_len = sizeof(rc->local);
  if (listen_fd < 0) {
    rc->local_len = 0; /* no local API: every relay is answered so */
  } else if (getsockname(listen_fd, (struct sockaddr *)&rc->local, &rc->local_len) != 0) {
    free(rc);
    return NULL;
  }
  /* A wildcard listener is reached through loopback. */
  if (rc->local.ss_family == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)&rc->local;
    if (a->sin_addr.s_addr == htonl(INADDR_ANY)) a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  } else if (rc->local.ss_family == AF_INET6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&rc->local;
    if (IN6_IS_ADDR_UNSPECIFIED(&a->sin6_addr)) a->sin6_addr = in6addr_loopback;
  }
  return rc;
}

void relayc_free(relayc_t *rc) {
  if (rc == NULL) return;
  while (rc->ops) rop_free(rc->ops);
  free(rc);
}
