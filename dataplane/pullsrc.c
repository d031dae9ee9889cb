/* Pull sources outside the cascade (pullsrc.h): an RTMP play client and an
 * HTTP-FLV client that publish what they read into the hub.
 *
 * Ownership: a pull source owns its socket, watchers, the RTMP reader and
 * output buffer, the FLV parser, and its hub publisher handle; a pending
 * name lookup is shared with its thread through a refcounted job.
 *
 * Ending: every failure goes through ps_end, which defers the on_end call
 * to the pull's own timer (a hub callback or a read may be on the stack),
 * so on_end never runs inside pullsrc_start or inside a hub_push. */
#define _GNU_SOURCE
#include "pullsrc.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "amf.h"
#include "flv.h"
#include "httpresp.h"
#include "log.h"
#include "urlredact.h"
#include "rtmp_proto.h"

#define MOD "pull"
#define HOST_MAX 255
#define HTTP_HEAD_MAX 16384
#define OUT_MAX (1024 * 1024)
#define CSID_COMMAND 3
#define CSID_PLAY 8
#define TXN_CONNECT 1
#define TXN_CREATE 2

enum { SCHEME_RTMP = 1, SCHEME_HTTP };

enum {
  ST_RESOLVE = 1,
  ST_CONNECT,
  ST_HANDSHAKE,   /* RTMP: C0/C1 sent, waiting for S0/S1/S2 */
  ST_COMMANDS,    /* RTMP: connect, createStream, play */
  ST_HEAD,        /* HTTP: request sent, reading the response head */
  ST_LIVE,        /* the upstream accepted; the path is published with the first frame */
  ST_ENDED,
};


typedef struct resolve_job {
  pthread_mutex_t mu;
  int refs;                 /* the thread and the pull */
  int cancelled;
  int rc;
  char host[HOST_MAX + 1];
  char port[8];
  struct sockaddr_storage addr;
  socklen_t addrlen;
  struct ev_loop *loop;
  ev_async *done;           /* the pull's watcher; NULL once cancelled */
} resolve_job_t;

struct pullsrc {
  struct ev_loop *loop;
  hub_t *hub;
  pullsrc_config_t cfg;
  pullsrc_callbacks_t cb;
  void *ud;
  int scheme;
  char *url, *path;         /* owned */
  char host[HOST_MAX + 1];
  char port[8];
  char *app, *name, *target; /* RTMP app and stream name; HTTP request target (owned) */
  int state;
  int fd;
  ev_io rio, wio;
  ev_timer timer;           /* connect/idle deadline, and the deferred on_end */
  ev_async resolved;
  resolve_job_t *job;
  double last_rx;
  char why[256];
  hub_stream_t *pub;
  uint64_t frames;
  /* output */
  amf_buf_t out;
  size_t out_off;
  /* RTMP */
  rtmp_hs_t *hs;
  rtmp_reader_t rd;
  rtmp_writer_t wr;
  uint32_t play_sid;
  /* HTTP */
  char *head;               /* owned, HTTP_HEAD_MAX */
  size_t head_len;
  int chunked;
  httpresp_chunked_t ch;
  flv_parser_t flv;
  int flv_on;
};

/* ---------------------------------------------------------------- URLs */

typedef struct url_parts {
  int scheme;
  char host[HOST_MAX + 1];
  char port[8];
  const char *rest;         /* from the '/' after the authority */
} url_parts_t;

static int url_split(const char *url, url_parts_t *u, char *err, size_t errlen) {
  const char *p;
  size_t n = strlen(url);
  if (n == 0 || n > PULLSRC_URL_MAX) {
    snprintf(err, errlen, "URL empty or over %d bytes", PULLSRC_URL_MAX);
    return -1;
  }
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)url[i];
    if (c <= 0x20 || c == 0x7f) {
      snprintf(err, errlen, "URL has a space or control character");
      return -1;
    }
  }
  if (strncasecmp(url, "rtmp://", 7) == 0) {
    u->scheme = SCHEME_RTMP;
    p = url + 7;
    strcpy(u->port, "1935");
  } else if (strncasecmp(url, "http://", 7) == 0) {
    u->scheme = SCHEME_HTTP;
    p = url + 7;
    strcpy(u->port, "80");
  } else {
    snprintf(err, errlen, "unsupported scheme (rtmp:// or http://)");
    return -1;
  }
  const char *slash = strchr(p, '/');
  if (slash == NULL) {
    snprintf(err, errlen, "URL has no path");
    return -1;
  }
  const char *hs = p, *he = slash, *ps = NULL;
  if (*p == '[') {
    const char *rb = memchr(p, ']', (size_t)(slash - p));
    if (rb == NULL) {
      snprintf(err, errlen, "unterminated [IPv6] host");
      return -1;
    }
    hs = p + 1;
    he = rb;
    if (rb + 1 < slash) {
      if (rb[1] != ':') {
        snprintf(err, errlen, "junk after ]");
        return -1;
      }
      ps = rb + 2;
    }
  } else {
    const char *colon = memchr(p, ':', (size_t)(slash - p));
    if (colon) {
      he = colon;
      ps = colon + 1;
    }
  }
  if (memchr(p, '@', (size_t)(slash - p))) {
    snprintf(err, errlen, "credentials in the URL are not supported");
    return -1;
  }
  if (he == hs || (size_t)(he - hs) > HOST_MAX) {
    snprintf(err, errlen, "bad host");
    return -1;
  }
  memcpy(u->host, hs, (size_t)(he - hs));
  u->host[he - hs] = 0;
  if (ps) {
    size_t pl = (size_t)(slash - ps);
    long v = 0;
    if (pl == 0 || pl > 5) {
      snprintf(err, errlen, "bad port");
      return -1;
    }
    for (size_t i = 0; i < pl; i++) {
      if (ps[i] < '0' || ps[i] > '9') {
        snprintf(err, errlen, "bad port");
        return -1;
      }
      v = v * 10 + (ps[i] - '0');
    }
    if (v < 1 || v > 65535) {
      snprintf(err, errlen, "port out of range");
      return -1;
    }
    snprintf(u->port, sizeof(u->port), "%ld", v);
  }
  u->rest = slash;
  if (u->scheme == SCHEME_RTMP) {
    /* /app/name: both non-empty */
    const char *a = slash + 1, *s2 = strchr(a, '/');
    if (s2 == NULL || s2 == a || s2[1] == '\0') {
      snprintf(err, errlen, "RTMP URL needs /app/name");
      return -1;
    }
  }
  return 0;
}

int pullsrc_url_check(const char *url, char *err, size_t errlen) {
  url_parts_t u;
  return url_split(url, &u, err, errlen);
}

/* ---------------------------------------------------------------- ending */

static void ps_close_socket(pullsrc_t *p) {
  ev_io_stop(p->loop, &p->rio);
  ev_io_stop(p->loop, &p->wio);
  if (p->fd >= 0) close(p->fd);
  p->fd = -1;
}

static void job_release(resolve_job_t *j) {
  pthread_mutex_lock(&j->mu);
  int left = --j->refs;
  pthread_mutex_unlock(&j->mu);
  if (left == 0) {
    pthread_mutex_destroy(&j->mu);
    free(j);
  }
}

static void ps_cancel_job(pullsrc_t *p) {
  if (p->job == NULL) return;
  pthread_mutex_lock(&p->job->mu);
  p->job->cancelled = 1;
  p->job->done = NULL;
  pthread_mutex_unlock(&p->job->mu);
  ev_async_stop(p->loop, &p->resolved);
  job_release(p->job);
  p->job = NULL;
}

static void ps_free(pullsrc_t *p) {
  ps_cancel_job(p);
  ps_close_socket(p);
  ev_timer_stop(p->loop, &p->timer);
  if (p->pub) hub_unpublish(p->pub);
  p->pub = NULL;
  free(p->hs);
  rtmp_reader_free(&p->rd);
  if (p->flv_on) flv_parser_free(&p->flv);
  amf_buf_free(&p->out);
  free(p->head);
  free(p->app);
  free(p->name);
  free(p->target);
  free(p->url);
  free(p->path);
  free(p);
}

static void ps_end(pullsrc_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ps_end stops all I/O and schedules on_end on the next loop iteration. */
static void ps_end(pullsrc_t *p, const char *fmt, ...) {
  if (p->state == ST_ENDED) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(p->why, sizeof(p->why), fmt, ap);
  va_end(ap);
  p->state = ST_ENDED;
  ps_cancel_job(p);
  ps_close_socket(p);
  if (p->pub) hub_unpublish(p->pub); /* delay-close keeps the players */
  p->pub = NULL;
  ev_timer_stop(p->loop, &p->timer);
  ev_timer_set(&p->timer, 0., 0.);
  ev_timer_start(p->loop, &p->timer);
}

/* ---------------------------------------------------------------- output */

static int ps_flush(pullsrc_t *p) {
  while (p->out.len > p->out_off) {
    ssize_t n = send(p->fd, p->out.data + p->out_off, p->out.len - p->out_off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        ev_io_start(p->loop, &p->wio);
        return 0;
      }
      ps_end(p, "send: %s", strerror(errno));
      return -1;
    }
    p->out_off += (size_t)n;
  }
  p->out.len = p->out_off = 0;
  ev_io_stop(p->loop, &p->wio);
  return 0;
}

static int ps_queue_check(pullsrc_t *p) {
  if (p->out.err || p->out.len > OUT_MAX) {
    ps_end(p, "output overflow");
    return -1;
  }
  return ps_flush(p);
}

/* ---------------------------------------------------------------- publishing */

/* ps_go_live: the upstream accepted (Play.Start, HTTP 200); media may
 * follow. Nothing is published yet: an upstream that accepts and sends
 * nothing (nginx-rtmp waits for a publisher) is not a stream here. */
static int ps_go_live(pullsrc_t *p) {
  if (p->state == ST_LIVE) return 0;
  p->state = ST_LIVE;
  log_debug(MOD, "[pull %s] %s accepted, waiting for media", p->path, p->url);
  return 0;
}

/* ps_preempted: a local or pushed publisher took the path (hub.h,
 * hub_stream_set_preempt); the pull ends. */
static void ps_preempted(hub_stream_t *st, void *arg) {
  pullsrc_t *p = arg;
  (void)st;
  p->pub = NULL; /* no longer ours */
  ps_end(p, "a publisher here took the path over");
}

/* ps_claim publishes the path with the first frame. 0, or -1 when the pull
 * ended (the path has another publisher, or the stream limit). */
static int ps_claim(pullsrc_t *p) {
  if (p->pub) return 0;
  int err = 0;
  hub_origin_t o = {HUB_ORIGIN_PULLED, 0, 1};
  p->pub = hub_publish_ex(p->hub, p->path, &o, &err);
  if (p->pub == NULL) {
    ps_end(p, "cannot publish %s locally (%s)", p->path,
           err == HUB_EBUSY ? "another publisher has it" : "stream limit");
    return -1;
  }
  hub_stream_set_preempt(p->pub, ps_preempted, p);
  log_info(MOD, "[pull %s] %s is live from %s", p->path, p->path, p->url);
  if (p->cb.on_live) p->cb.on_live(p, p->ud);
  return p->state == ST_LIVE ? 0 : -1;
}

static void ps_push(pullsrc_t *p, uint8_t type, uint32_t ts, const uint8_t *data, size_t len) {
  if (ps_claim(p) != 0) return;
  hub_frame_t *f = hub_frame_new(type, ts, data, len);
  if (f == NULL) {
    ps_end(p, "out of memory for a frame");
    return;
  }
  p->frames++;
  hub_push(p->pub, f);
}

/* ---------------------------------------------------------------- RTMP */

static void rtmp_send_cmd(pullsrc_t *p, uint32_t sid, amf_buf_t *b) {
  if (b->err) {
    p->out.err = b->err;
    return;
  }
  rtmp_writer_put(&p->wr, &p->out, sid ? CSID_PLAY : CSID_COMMAND, RTMP_MSG_COMMAND_AMF0, sid, 0,
                  b->data, b->len);
}

static int rtmp_send_connect(pullsrc_t *p) {
  char tc[PULLSRC_URL_MAX + 16];
  snprintf(tc, sizeof(tc), "rtmp://%s:%s/%s", p->host, p->port, p->app);
  rtmp_put_set_chunk_size(&p->wr, &p->out, 4096);
  amf_buf_t b;
  amf_buf_init(&b);
  amf_put_string(&b, "connect");
  amf_put_number(&b, TXN_CONNECT);
  amf_put_object_start(&b);
  amf_put_prop_string(&b, "app", p->app);
  amf_put_prop_string(&b, "flashVer", "LNX 9,0,124,2");
  amf_put_prop_string(&b, "tcUrl", tc);
  amf_put_prop_bool(&b, "fpad", 0);
  amf_put_prop_number(&b, "capabilities", 15);
  amf_put_prop_number(&b, "audioCodecs", 4071);
  amf_put_prop_number(&b, "videoCodecs", 252);
  amf_put_prop_number(&b, "videoFunction", 1);
  amf_put_object_end(&b);
  rtmp_send_cmd(p, 0, &b);
  amf_buf_free(&b);
  return ps_queue_check(p);
}

static int rtmp_on_command(pullsrc_t *p, const rtmp_msg_t *m) {
  const uint8_t *body = m->data;
  size_t len = m->len;
  if (m->type == RTMP_MSG_COMMAND_AMF3 && len > 0 && body[0] == 0) {
    body++;
    len--;
  }
  amf_limits_t lim = {AMF_MAX_DEPTH, 4096, len};
  amf_value_t *v = NULL;
  if (amf_decode_list(body, len, &lim, &v) != 0) {
    amf_free(v);
    ps_end(p, "bad AMF command from the upstream");
    return -1;
  }
  const char *name = amf_str(amf_at(v, 0));
  double txn = 0;
  amf_num(amf_at(v, 1), &txn);
  int rc = 0;
  if (name == NULL) {
    rc = 0;
  } else if (strcmp(name, "_result") == 0 && txn == TXN_CONNECT) {
    amf_buf_t b;
    amf_buf_init(&b);
    amf_put_string(&b, "createStream");
    amf_put_number(&b, TXN_CREATE);
    amf_put_null(&b);
    rtmp_send_cmd(p, 0, &b);
    amf_buf_free(&b);
    rc = ps_queue_check(p);
  } else if (strcmp(name, "_result") == 0 && txn == TXN_CREATE) {
    double sid = 0;
    if (amf_num(amf_at(v, 3), &sid) != 0 || sid < 1 || sid > 65535) {
      ps_end(p, "createStream answered without a stream id");
      rc = -1;
    } else {
      p->play_sid = (uint32_t)sid;
      amf_buf_t b;
      amf_buf_init(&b);
      amf_put_string(&b, "play");
      amf_put_number(&b, 0);
      amf_put_null(&b);
      amf_put_string(&b, p->name);
      amf_put_number(&b, -1000);
      rtmp_send_cmd(p, p->play_sid, &b);
      amf_buf_free(&b);
      /* SetBufferLength 3 s, as players send */
      uint8_t uc[10] = {0, RTMP_UC_SET_BUFFER_LENGTH};
      uc[2] = (uint8_t)(p->play_sid >> 24);
      uc[3] = (uint8_t)(p->play_sid >> 16);
      uc[4] = (uint8_t)(p->play_sid >> 8);
      uc[5] = (uint8_t)p->play_sid;
      uc[6] = 0;
      uc[7] = 0;
      uc[8] = 0x0b;
      uc[9] = 0xb8;
      rtmp_writer_put(&p->wr, &p->out, 2, RTMP_MSG_USER_CONTROL, 0, 0, uc, sizeof(uc));
      rc = ps_queue_check(p);
    }
  } else if (strcmp(name, "_error") == 0) {
    const char *code = amf_str(amf_get(amf_at(v, 3), "code"));
    ps_end(p, "upstream refused (%s)", code ? code : "_error");
    rc = -1;
  } else if (strcmp(name, "onStatus") == 0) {
    const char *code = amf_str(amf_get(amf_at(v, 3), "code"));
    if (code == NULL) {
      rc = 0;
    } else if (strcmp(code, "NetStream.Play.Start") == 0 ||
               strcmp(code, "NetStream.Play.Reset") == 0) {
      rc = ps_go_live(p);
    } else if (strcmp(code, "NetStream.Play.StreamNotFound") == 0 ||
               strcmp(code, "NetStream.Play.Failed") == 0 ||
               strcmp(code, "NetStream.Play.Stop") == 0 ||
               strcmp(code, "NetStream.Play.UnpublishNotify") == 0 ||
               strcmp(code, "NetConnection.Connect.Rejected") == 0) {
      ps_end(p, "upstream: %s", code);
      rc = -1;
    }
  }
  amf_free(v);
  return rc;
}

static int rtmp_on_message(void *arg, const rtmp_msg_t *m) {
  pullsrc_t *p = arg;
  if (p->state == ST_ENDED) return -1;
  switch (m->type) {
  case RTMP_MSG_AUDIO:
  case RTMP_MSG_VIDEO:
    if (p->state != ST_LIVE || m->len == 0) return 0; /* before Play.Start: nothing to feed */
    ps_push(p, m->type, m->ts, m->data, m->len);
    return p->state == ST_ENDED ? -1 : 0;
  case RTMP_MSG_DATA_AMF0:
  case RTMP_MSG_DATA_AMF3: {
    const uint8_t *b = m->data;
    size_t len = m->len;
    if (m->type == RTMP_MSG_DATA_AMF3 && len > 0 && b[0] == 0) {
      b++;
      len--;
    }
    if (p->state != ST_LIVE) return 0;
    amf_limits_t lim = {AMF_MAX_DEPTH, 65536, len};
    amf_value_t *v = NULL;
    int rc = amf_decode_list(b, len, &lim, &v);
    const char *name = rc == 0 ? amf_str(amf_at(v, 0)) : NULL;
    /* metadata and stamps go on; |RtmpSampleAccess and the like are the
     * upstream's business with its own players */
    int keep = name && name[0] != '|';
    amf_free(v);
    if (keep) ps_push(p, HUB_SCRIPT, m->ts, b, len);
    return p->state == ST_ENDED ? -1 : 0;
  }
  case RTMP_MSG_COMMAND_AMF0:
  case RTMP_MSG_COMMAND_AMF3:
    return rtmp_on_command(p, m);
  case RTMP_MSG_USER_CONTROL:
    if (m->len >= 6 && m->data[0] == 0 && m->data[1] == RTMP_UC_PING_REQUEST) {
      uint32_t val = (uint32_t)m->data[2] << 24 | (uint32_t)m->data[3] << 16 |
                     (uint32_t)m->data[4] << 8 | m->data[5];
      rtmp_put_user_control(&p->wr, &p->out, RTMP_UC_PING_RESPONSE, val);
      return ps_queue_check(p);
    }
    if (m->len >= 2 && m->data[0] == 0 && m->data[1] == RTMP_UC_STREAM_EOF && p->state == ST_LIVE) {
      ps_end(p, "upstream: stream EOF");
      return -1;
    }
    return 0;
  default:
    return 0;
  }
}

static void rtmp_input(pullsrc_t *p, const uint8_t *data, size_t n) {
  if (p->hs) {
    ssize_t used = rtmp_hs_feed(p->hs, data, n);
    if (used < 0) {
      ps_end(p, "RTMP handshake failed (%d)", (int)used);
      return;
    }
    size_t ol;
    const uint8_t *o = rtmp_hs_output(p->hs, &ol);
    if (ol) {
      amf_put_raw(&p->out, o, ol);
      rtmp_hs_sent(p->hs, ol);
    }
    if (!rtmp_hs_done(p->hs)) {
      ps_queue_check(p);
      return;
    }
    free(p->hs);
    p->hs = NULL;
    p->state = ST_COMMANDS;
    if (rtmp_send_connect(p) != 0) return;
    data += used;
    n -= (size_t)used;
    if (n == 0) return;
  }
  int rc = rtmp_reader_feed(&p->rd, data, n, rtmp_on_message, p);
  if (p->state == ST_ENDED) return;
  if (rc) {
    ps_end(p, "RTMP protocol error (%d)", rc);
    return;
  }
  uint32_t seq;
  if (rtmp_reader_ack_due(&p->rd, &seq)) {
    rtmp_put_u32_msg(&p->wr, &p->out, RTMP_MSG_ACK, seq);
    ps_queue_check(p);
  }
}

/* ---------------------------------------------------------------- HTTP-FLV */

static void flv_feed(pullsrc_t *p, const uint8_t *data, size_t n) {
  while (n > 0 && p->state == ST_LIVE) {
    hub_frame_t *f = NULL;
    long used = flv_parse(&p->flv, data, n, &f);
    if (used < 0) {
      ps_end(p, "bad FLV from the upstream: %s", flv_strerror((int)used));
      return;
    }
    if (f) {
      if (ps_claim(p) != 0) {
        hub_frame_unref(f);
        return;
      }
      p->frames++;
      hub_push(p->pub, f);
    }
    if (used == 0 && f == NULL) return;
    data += used;
    n -= (size_t)used;
  }
}

static int flv_chunk_cb(void *arg, const uint8_t *data, size_t n) {
  pullsrc_t *p = arg;
  flv_feed(p, data, n);
  return p->state == ST_LIVE ? 0 : 1;
}

/* dechunk feeds the payload of a chunked body to the FLV parser. */
static void dechunk(pullsrc_t *p, const uint8_t *data, size_t n) {
  const char *why = NULL;
  int r = httpresp_chunked_feed(&p->ch, data, n, flv_chunk_cb, p, &why);
  if (r < 0) ps_end(p, "bad chunked body: %s", why);
  else if (p->ch.done) ps_end(p, "upstream ended the body");
}

static void http_body(pullsrc_t *p, const uint8_t *data, size_t n) {
  if (p->chunked) dechunk(p, data, n);
  else flv_feed(p, data, n);
}

/* http_head checks the response head and starts the body. */
static int http_head(pullsrc_t *p, size_t head_len) {
  int status = 0;
  if (httpresp_head(p->head, head_len, &status, &p->chunked) != 0) {
    ps_end(p, "not an HTTP response");
    return -1;
  }
  if (status != 200) {
    char line[128];
    size_t l = strcspn(p->head, "\r\n");
    if (l >= sizeof(line)) l = sizeof(line) - 1;
    memcpy(line, p->head, l);
    line[l] = 0;
    ps_end(p, "upstream answered %s", line);
    return -1;
  }
  httpresp_chunked_init(&p->ch);
  flv_parser_init(&p->flv, 1);
  if (p->cfg.max_msg) p->flv.max_tag = p->cfg.max_msg;
  p->flv_on = 1;
  return ps_go_live(p);
}

static void http_input(pullsrc_t *p, const uint8_t *data, size_t n) {
  if (p->state == ST_HEAD) {
    size_t take = n < HTTP_HEAD_MAX - p->head_len ? n : HTTP_HEAD_MAX - p->head_len;
    memcpy(p->head + p->head_len, data, take);
    size_t from = p->head_len >= 3 ? p->head_len - 3 : 0;
    p->head_len += take;
    const char *end = memmem(p->head + from, p->head_len - from, "\r\n\r\n", 4);
    if (end == NULL) {
      if (p->head_len == HTTP_HEAD_MAX) ps_end(p, "response head over %d bytes", HTTP_HEAD_MAX);
      return;
    }
    size_t hl = (size_t)(end - p->head) + 4;
    size_t body_here = p->head_len - hl; /* body bytes already copied */
    if (http_head(p, hl) != 0) return;
    if (body_here) http_body(p, (const uint8_t *)p->head + hl, body_here);
    data += take;
    n -= take;
    if (n == 0 || p->state != ST_LIVE) return;
  }
  http_body(p, data, n);
}

static int http_send_request(pullsrc_t *p) {
  int v6 = strchr(p->host, ':') != NULL;
  char req[PULLSRC_URL_MAX + 512];
  int n = snprintf(req, sizeof(req),
                   "GET %s HTTP/1.1\r\nHost: %s%s%s%s%s\r\nUser-Agent: cascade-agent\r\n"
                   "Accept: */*\r\nConnection: close\r\n\r\n",
                   p->target, v6 ? "[" : "", p->host, v6 ? "]" : "",
                   strcmp(p->port, "80") ? ":" : "", strcmp(p->port, "80") ? p->port : "");
  if (n < 0 || (size_t)n >= sizeof(req)) {
    ps_end(p, "request too long");
    return -1;
  }
  amf_put_raw(&p->out, req, (size_t)n);
  p->state = ST_HEAD;
  return ps_queue_check(p);
}

/* ---------------------------------------------------------------- I/O */

static void on_connected(pullsrc_t *p) {
  ev_io_stop(p->loop, &p->wio);
  ev_io_start(p->loop, &p->rio);
  if (p->scheme == SCHEME_RTMP) {
    p->state = ST_HANDSHAKE;
    if ((p->hs = malloc(sizeof(*p->hs))) == NULL) {
      ps_end(p, "out of memory");
      return;
    }
    rtmp_hs_init(p->hs, RTMP_HS_CLIENT, 0);
    size_t ol;
    const uint8_t *o = rtmp_hs_output(p->hs, &ol);
    amf_put_raw(&p->out, o, ol);
    rtmp_hs_sent(p->hs, ol);
    ps_queue_check(p);
  } else {
    http_send_request(p);
  }
}

static void read_cb(struct ev_loop *loop, ev_io *w, int revents) {
  pullsrc_t *p = w->data;
  uint8_t buf[65536];
  (void)loop;
  (void)revents;
  for (int round = 0; round < 4 && p->state != ST_ENDED; round++) {
    ssize_t n = recv(p->fd, buf, sizeof(buf), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      ps_end(p, "recv: %s", strerror(errno));
      return;
    }
    if (n == 0) {
      ps_end(p, "upstream closed the connection");
      return;
    }
    p->last_rx = ev_now(p->loop);
    if (p->scheme == SCHEME_RTMP) rtmp_input(p, buf, (size_t)n);
    else http_input(p, buf, (size_t)n);
    if ((size_t)n < sizeof(buf)) return;
  }
}

static void write_cb(struct ev_loop *loop, ev_io *w, int revents) {
  pullsrc_t *p = w->data;
  (void)loop;
  (void)revents;
  if (p->state == ST_CONNECT) {
    int e = 0;
    socklen_t el = sizeof(e);
    if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &e, &el) != 0) e = errno;
    if (e) {
      ps_end(p, "connect to %s:%s: %s", p->host, p->port, strerror(e));
      return;
    }
    on_connected(p);
    return;
  }
  ps_flush(p);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  pullsrc_t *p = w->data;
  (void)loop;
  (void)revents;
  if (p->state == ST_ENDED) {
    log_info(MOD, "[pull %s] from %s ended: %s", p->path, p->url, p->why);
    if (p->cb.on_end) p->cb.on_end(p, p->ud, p->why);
    ps_free(p);
    return;
  }
  double now = ev_now(p->loop);
  if (p->state != ST_LIVE) {
    ps_end(p, "no answer from %s:%s within %.0f s", p->host, p->port, p->cfg.connect_timeout);
    return;
  }
  double idle = now - p->last_rx;
  if (idle >= p->cfg.idle_timeout) {
    ps_end(p, "upstream silent for %.0f s", idle);
    return;
  }
  ev_timer_set(&p->timer, p->cfg.idle_timeout - idle, 0.);
  ev_timer_start(p->loop, &p->timer);
}

static void ps_connect(pullsrc_t *p, const struct sockaddr *sa, socklen_t len) {
  p->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (p->fd < 0) {
    ps_end(p, "socket: %s", strerror(errno));
    return;
  }
  int one = 1;
  setsockopt(p->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  ev_io_set(&p->rio, p->fd, EV_READ);
  ev_io_set(&p->wio, p->fd, EV_WRITE);
  p->state = ST_CONNECT;
  if (connect(p->fd, sa, len) != 0 && errno != EINPROGRESS) {
    ps_end(p, "connect to %s:%s: %s", p->host, p->port, strerror(errno));
    return;
  }
  ev_io_start(p->loop, &p->wio);
}

/* The lookup thread: getaddrinfo blocks, so it runs here, never on the loop. */
static void *resolve_main(void *arg) {
  resolve_job_t *j = arg;
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG}, *ai = NULL;
  int rc = getaddrinfo(j->host, j->port, &hints, &ai);
  pthread_mutex_lock(&j->mu);
  j->rc = rc;
  if (rc == 0 && ai) {
    memcpy(&j->addr, ai->ai_addr, ai->ai_addrlen);
    j->addrlen = ai->ai_addrlen;
  } else if (rc == 0) {
    j->rc = EAI_NONAME;
  }
  if (!j->cancelled && j->done) ev_async_send(j->loop, j->done);
  pthread_mutex_unlock(&j->mu);
  if (ai) freeaddrinfo(ai);
  job_release(j);
  return NULL;
}

static void resolved_cb(struct ev_loop *loop, ev_async *w, int revents) {
  pullsrc_t *p = w->data;
  (void)loop;
  (void)revents;
  resolve_job_t *j = p->job;
  if (j == NULL) return;
  pthread_mutex_lock(&j->mu);
  int rc = j->rc, done = j->addrlen > 0 || rc != 0;
  struct sockaddr_storage ss = j->addr;
  socklen_t len = j->addrlen;
  pthread_mutex_unlock(&j->mu);
  if (!done) return;
  ps_cancel_job(p);
  if (rc != 0) {
    ps_end(p, "cannot resolve %s: %s", p->host, gai_strerror(rc));
    return;
  }
  ps_connect(p, (struct sockaddr *)&ss, len);
}

static int ps_resolve(pullsrc_t *p) {
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV},
                  *ai = NULL;
  if (getaddrinfo(p->host, p->port, &hints, &ai) == 0 && ai) {
    struct sockaddr_storage ss;
    socklen_t len = ai->ai_addrlen;
    memcpy(&ss, ai->ai_addr, len);
    freeaddrinfo(ai);
    ps_connect(p, (struct sockaddr *)&ss, len);
    return 0;
  }
  resolve_job_t *j = calloc(1, sizeof(*j));
  if (j == NULL) return -1;
  pthread_mutex_init(&j->mu, NULL);
  j->refs = 2;
  snprintf(j->host, sizeof(j->host), "%s", p->host);
  snprintf(j->port, sizeof(j->port), "%s", p->port);
  j->loop = p->loop;
  j->done = &p->resolved;
  p->job = j;
  ev_async_start(p->loop, &p->resolved);
  p->state = ST_RESOLVE;
  pthread_attr_t attr;
  pthread_t t;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  int rc = pthread_create(&t, &attr, resolve_main, j);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    j->refs = 1; /* no thread */
    ps_cancel_job(p);
    return -1;
  }
  return 0;
}

/* ---------------------------------------------------------------- API */

pullsrc_t *pullsrc_start(struct ev_loop *loop, hub_t *hub, const char *url, const char *path,
                         const pullsrc_config_t *cfg, const pullsrc_callbacks_t *cb, void *ud,
                         char *err, size_t errlen) {
  url_parts_t u;
  if (url_split(url, &u, err, errlen) != 0) return NULL;
  if (!hub_path_ok(path)) {
    snprintf(err, errlen, "invalid local stream path");
    return NULL;
  }
  pullsrc_t *p = calloc(1, sizeof(*p));
  if (p == NULL) goto fail_oom;
  p->loop = loop;
  p->hub = hub;
  p->fd = -1;
  if (cfg) p->cfg = *cfg;
  if (p->cfg.connect_timeout <= 0) p->cfg.connect_timeout = 10;
  if (p->cfg.idle_timeout <= 0) p->cfg.idle_timeout = 10;
  if (cb) p->cb = *cb;
  p->ud = ud;
  p->scheme = u.scheme;
  memcpy(p->host, u.host, sizeof(p->host));
  memcpy(p->port, u.port, sizeof(p->port));
  amf_buf_init(&p->out);
  rtmp_reader_init(&p->rd, p->cfg.max_msg, 0);
  rtmp_writer_init(&p->wr);
  ev_io_init(&p->rio, read_cb, -1, EV_READ);
  ev_io_init(&p->wio, write_cb, -1, EV_WRITE);
  p->rio.data = p->wio.data = p;
  ev_timer_init(&p->timer, timer_cb, p->cfg.connect_timeout, 0.);
  p->timer.data = p;
  ev_async_init(&p->resolved, resolved_cb);
  p->resolved.data = p;
  /* |url| is kept for logs only, so without what may be credentials. */
  char red[1024];
  if ((p->url = strdup(urlredact(url, red, sizeof(red)))) == NULL ||
      (p->path = strdup(path)) == NULL)
    goto fail_free;
  if (u.scheme == SCHEME_RTMP) {
    const char *a = u.rest + 1, *s2 = strchr(a, '/');
    if ((p->app = strndup(a, (size_t)(s2 - a))) == NULL || (p->name = strdup(s2 + 1)) == NULL)
      goto fail_free;
  } else {
    if ((p->target = strdup(u.rest)) == NULL) goto fail_free;
    if ((p->head = malloc(HTTP_HEAD_MAX)) == NULL) goto fail_free;
  }
  ev_timer_start(loop, &p->timer);
  if (ps_resolve(p) != 0) goto fail_free;
  return p;

fail_free:
  ps_free(p);
fail_oom:
  snprintf(err, errlen, "out of memory");
  return NULL;
}

void pullsrc_stop(pullsrc_t *p) {
  if (p == NULL) return;
  ps_free(p);
}

uint64_t pullsrc_frames(const pullsrc_t *p) { return p ? p->frames : 0; }
