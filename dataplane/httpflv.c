/* HTTP-FLV: see httpflv.h.
 *
 * Why a small server on libev rather than libmicrohttpd: the data path
 * wants writev straight from refcounted hub frames (one 15-byte header
 * buffer per tag, the frame body by pointer), with backpressure that stops
 * draining the hub queue while the socket is full. libmicrohttpd streams
 * through a content-reader callback that copies each frame into its own
 * buffer per connection, and drives writes from its own event loop or an
 * fd set we would have to bridge into libev. What this server must speak is
 * small: GET/HEAD/OPTIONS for players, bodies only by Content-Length and
 * only where the API takes them (max_body), no keep-alive, no chunked
 * encoding. A bounded parser of that subset (8 KiB head, 100 headers,
 * garbage refused on the first bytes) is short enough to audit and to fuzz.
 * The choice is to be confirmed by the fan-out benchmark (docs/performance).
 *
 * Connection life: REQ (reading the request, request_timeout_s) → WAIT
 * (subscribed, no reply until the stream shows up or the hub ends the wait)
 * → STREAM (FLV body) or RESPOND (a fixed reply) → LINGER (after the reply:
 * half-closed, reading to EOF for up to 2 s so the peer gets the reply
 * rather than a reset) → closed. A connection is freed only by conn_close,
 * and every function that may call it returns -1 after it did. */
#define _GNU_SOURCE /* accept4 */
#include "httpflv.h"

#include <ctype.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "admit.h"
#include "flv.h"
#include "log.h"
#include "net.h"
#include "tsmap.h"

#define INFLIGHT 32            /* frames taken from the hub and not yet written */
#define MAX_HEADERS 100
#define LINGER_S 2.0
#define REPLY_TIMEOUT_S 30.0
#define ACCEPT_BATCH 64
#define LOG_PER_SEC 10

enum { C_REQ = 1, C_BODY, C_ADMIT, C_WAIT, C_STREAM, C_RESPOND, C_LINGER };

typedef struct inflight {
  hub_frame_t *f;                  /* one reference */
  uint8_t hdr[FLV_PREV_SIZE_LEN + FLV_TAG_HEADER_LEN];
} inflight_t;

typedef struct conn {
  httpflv_t *srv;
  struct conn *prev, *next;
  int fd;
  int state;
  char peer[64];
  ev_io rio, wio;
  ev_timer timer;
  char *req;                       /* owned while reading the request */
  size_t reqlen;
  char *method, *target;           /* into req, once the head is parsed */
  char *rbody;                     /* owned: the request body being read */
  size_t rbody_len, rbody_need;
  char saved;                      /* the byte after the head, overwritten by a NUL */
  int head;                        /* HEAD: headers only */
  hub_sub_t *sub;                  /* borrowed from the hub until on_end/unsubscribe */
  char *out;                       /* owned: response head (and FLV header) */
  size_t outlen, outoff;
  char *body;                      /* owned: fallback body */
  size_t bodylen, bodyoff;
  inflight_t fl[INFLIGHT];
  unsigned nfl;
  size_t fl_off;                   /* bytes of fl[0] (header then body) written */
  /* Until the FLV header's flags are decided (kinds.flags), frames taken
   * from the hub wait in |held| (owned references, the first |nheld|; the
   * sniffer decides by FLV_KINDS_MAX_FRAMES); then they go out first, from
   * held_pos on. */
  flv_kinds_t kinds;
  hub_frame_t **held;              /* owned, until all held frames are in flight */
  unsigned nheld, held_pos;
  uint32_t prev_size;              /* PreviousTagSize for the next tag */
  tsmap_t tsmap;                   /* the player's timeline, from 0 (zeroed by calloc) */
  int ended;                       /* no more frames will come */
  int peer_eof;                    /* the peer half-closed while we replied */
  uint64_t rx, tx;                 /* bytes of this connection, for the registry */
  connreg_ent_t ent;               /* in the hub's registry while it plays */
  char *path;                      /* owned: the stream path once admission is asked */
  void *admit_pending;             /* admission's handle while C_ADMIT */
  int admitted;                    /* admission let it play: tell it when it ends */
} conn_t;

typedef struct ratelimit {
  double second;
  unsigned n, suppressed;
} ratelimit_t;

struct httpflv {
  struct ev_loop *loop;
  hub_t *hub;
  httpflv_config_t cfg;
  int lfd;
  ev_io lio;
  conn_t *conns;
  httpflv_stats_t st;
  ratelimit_t rl;
  httpflv_api_t api;               /* NULL: the GET/HEAD fallback */
  void *api_arg;
  const dp_admit_ops *admit;       /* NULL: every player admitted */
  void *admit_ud;
};

static int conn_flush(conn_t *c);

/* rl_ok lets LOG_PER_SEC lines a second through; the first line after a
 * quiet second reports how many were suppressed in *supp. */
static int rl_ok(httpflv_t *srv, unsigned *supp) {
  double now = ev_now(srv->loop);
  *supp = 0;
  if (now - srv->rl.second >= 1.0) {
    *supp = srv->rl.suppressed;
    srv->rl.second = now;
    srv->rl.n = 0;
    srv->rl.suppressed = 0;
  }
  if (srv->rl.n++ < LOG_PER_SEC) return 1;
  srv->rl.suppressed++;
  return 0;
}

#define WARN_RL(srv, fmt, ...)                                                        \
  do {                                                                                \
    unsigned supp_;                                                                   \
    if (rl_ok(srv, &supp_))                                                           \
      log_warn("httpflv", fmt "%s", __VA_ARGS__, supp_ ? " (earlier lines suppressed)" : ""); \
  } while (0)

/* rbody_drop frees the request body and takes it off the budget. */
static void rbody_drop(conn_t *c) {
  if (c->rbody == NULL) return;
  free(c->rbody);
  c->rbody = NULL;
  c->srv->st.body_bytes -= c->rbody_need + 1;
}

static void conn_close(conn_t *c) {
  httpflv_t *srv = c->srv;
  connreg_remove(hub_connreg(srv->hub), &c->ent);
  if (c->admit_pending) {
    srv->admit->cancel(srv->admit_ud, c->admit_pending);
    c->admit_pending = NULL;
  }
  if (c->admitted && srv->admit && srv->admit->ended) {
    char addr[48];
    dp_admit_addr(c->peer, addr, sizeof(addr));
    dp_admit_req r = {DP_ADMIT_PLAY, c->path, NULL, "httpflv", addr};
    srv->admit->ended(srv->admit_ud, &r);
  }
  free(c->path);
  if (c->sub) {
    hub_unsubscribe(c->sub);
    c->sub = NULL;
  }
  if (c->state == C_STREAM) srv->st.players--;
  for (unsigned i = 0; i < c->nfl; i++) hub_frame_unref(c->fl[i].f);
  for (unsigned i = c->held_pos; i < c->nheld; i++) hub_frame_unref(c->held[i]);
  free(c->held);
  ev_io_stop(srv->loop, &c->rio);
  ev_io_stop(srv->loop, &c->wio);
  ev_timer_stop(srv->loop, &c->timer);
  close(c->fd);
  if (c->prev) c->prev->next = c->next;
  else srv->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  srv->st.current--;
  free(c->req);
  rbody_drop(c);
  free(c->out);
  free(c->body);
  free(c);
}

static const char *status_text(int code) {
  switch (code) {
  case 200: return "OK";
  case 204: return "No Content";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 411: return "Length Required";
  case 413: return "Content Too Large";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 503: return "Service Unavailable";
  default: return code < 300 ? "OK" : code < 500 ? "Bad Request" : "Internal Server Error";
  }
}

/* conn_respond queues a whole reply (taking |body|, malloc'd or NULL) and
 * starts writing it; the connection lingers and closes after it. */
static int conn_respond(conn_t *c, int code, const char *ctype, char *body, size_t len,
                        const char *extra) {
  char head[512];
  if (c->sub) {
    hub_unsubscribe(c->sub);
    c->sub = NULL;
  }
  free(c->req);
  c->req = NULL;
  rbody_drop(c);
  int n = snprintf(head, sizeof(head),
                   "HTTP/1.1 %d %s\r\nServer: cascade\r\nContent-Type: %s\r\n"
                   "Content-Length: %zu\r\nConnection: close\r\nCache-Control: no-cache\r\n"
                   "%s%s\r\n",
                   code, status_text(code), ctype ? ctype : "text/plain", len,
                   c->srv->cfg.local_only ? "" : "Access-Control-Allow-Origin: *\r\n",
                   extra ? extra : "");
  free(c->out);
  c->out = n > 0 && (size_t)n < sizeof(head) ? strdup(head) : NULL;
  if (c->out == NULL) {
    free(body);
    conn_close(c);
    return -1;
  }
  c->outlen = (size_t)n;
  c->outoff = 0;
  free(c->body);
  c->body = NULL;
  c->bodylen = c->bodyoff = 0;
  if (c->head) free(body);
  else {
    c->body = body;
    c->bodylen = body ? len : 0;
  }
  c->state = C_RESPOND;
  c->ended = 1;
  /* a peer that does not read its reply is closed after this */
  ev_timer_stop(c->srv->loop, &c->timer);
  ev_timer_set(&c->timer, REPLY_TIMEOUT_S, 0.);
  ev_timer_start(c->srv->loop, &c->timer);
  return conn_flush(c);
}

static int conn_error(conn_t *c, int code, const char *why) {
  if (code == 400 || code == 431 || code == 411 || code == 413) {
    c->srv->st.bad_requests++;
    WARN_RL(c->srv, "[%s] %d %s: %s", c->peer, code, status_text(code), why);
  }
  size_t len = strlen(why) + 1;
  char *body = malloc(len + 1);
  if (body) snprintf(body, len + 1, "%s\n", why);
  return conn_respond(c, code, "text/plain", body, body ? len : 0,
                      code == 405 ? "Allow: GET, HEAD, OPTIONS\r\n" : NULL);
}

/* ---------- writing ---------- */

static void fl_add(conn_t *c, hub_frame_t *f) {
  inflight_t *e = &c->fl[c->nfl++];
  /* The hub's frames carry the origin's timestamps: the cached metadata and
   * sequence headers as old as the stream, the GOP from whenever its
   * keyframe was. Players get a timeline of their own from 0 (tsmap.h). */
  uint32_t out = tsmap_map(&c->tsmap, f->type, f->seq_header, f->ts);
  e->f = f;
  flv_put_u32(e->hdr, c->prev_size);
  flv_frame_header(e->hdr + FLV_PREV_SIZE_LEN, f, out);
  c->prev_size = (uint32_t)(FLV_TAG_HEADER_LEN + f->len);
}

/* conn_sniff takes frames from the hub into |held| until the kinds
 * sniffer decides (or the stream ended), then appends the FLV header with
 * those flags to the response head. */
static void conn_sniff(conn_t *c) {
  hub_frame_t *f;
  uint8_t flags = c->kinds.flags;
  while (!flags && c->sub && c->nheld < FLV_KINDS_MAX_FRAMES &&
         (f = hub_sub_next(c->sub)) != NULL) {
    c->held[c->nheld++] = f;
    flags = flv_kinds_feed(&c->kinds, f->type, f->seq_header, f->ts, f->data, f->len);
  }
  /* the hold is full (the sniffer decides before) or no more will come */
  if (!flags && (c->nheld == FLV_KINDS_MAX_FRAMES || c->ended))
    flags = flv_kinds_finish(&c->kinds);
  if (!flags) return;
  uint8_t fh[FLV_HEADER_LEN + FLV_PREV_SIZE_LEN];
  flv_header(fh, flags);
  /* PreviousTagSize0 goes out with the first tag's header; c->out has room */
  memcpy(c->out + c->outlen, fh, FLV_HEADER_LEN);
  c->outlen += FLV_HEADER_LEN;
}

/* conn_flush writes what is pending, drawing frames from the hub while the
 * socket takes them. 0, or -1 when the connection was closed. */
static int conn_flush(conn_t *c) {
  httpflv_t *srv = c->srv;
  for (;;) {
    if (c->state == C_STREAM && !c->kinds.flags) conn_sniff(c);
    if (c->state == C_STREAM && c->kinds.flags) {
      hub_frame_t *f;
      while (c->nfl < INFLIGHT && c->held_pos < c->nheld) fl_add(c, c->held[c->held_pos++]);
      if (c->held && c->held_pos == c->nheld) {
        free(c->held);
        c->held = NULL;
      }
      while (c->held == NULL && c->sub && c->nfl < INFLIGHT && (f = hub_sub_next(c->sub)) != NULL)
        fl_add(c, f);
    }
    struct iovec iov[2 + 2 * INFLIGHT];
    int cnt = 0;
    if (c->outoff < c->outlen) {
      iov[cnt].iov_base = c->out + c->outoff;
      iov[cnt++].iov_len = c->outlen - c->outoff;
    }
    if (c->bodyoff < c->bodylen) {
      iov[cnt].iov_base = c->body + c->bodyoff;
      iov[cnt++].iov_len = c->bodylen - c->bodyoff;
    }
    for (unsigned i = 0; i < c->nfl; i++) {
      size_t skip = i == 0 ? c->fl_off : 0;
      if (skip < sizeof(c->fl[i].hdr)) {
        iov[cnt].iov_base = c->fl[i].hdr + skip;
        iov[cnt++].iov_len = sizeof(c->fl[i].hdr) - skip;
        skip = 0;
      } else {
        skip -= sizeof(c->fl[i].hdr);
      }
      if (c->fl[i].f->len > skip) {
        iov[cnt].iov_base = c->fl[i].f->data + skip;
        iov[cnt++].iov_len = c->fl[i].f->len - skip;
      }
    }
    if (cnt == 0) {
      ev_io_stop(srv->loop, &c->wio);
      if (!c->ended) return 0;
      if (c->state == C_STREAM || c->state == C_WAIT) {
        conn_close(c);
        return -1;
      }
      /* the reply is out: half-close and wait for the peer's EOF */
      if (c->peer_eof) {
        conn_close(c);
        return -1;
      }
      shutdown(c->fd, SHUT_WR);
      c->state = C_LINGER;
      ev_timer_stop(srv->loop, &c->timer);
      ev_timer_set(&c->timer, LINGER_S, 0.);
      ev_timer_start(srv->loop, &c->timer);
      return 0;
    }
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = iov;
    msg.msg_iovlen = (size_t)cnt;
    ssize_t n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        /* backpressure: the hub queue fills until the socket drains */
        ev_io_start(srv->loop, &c->wio);
        return 0;
      }
      log_debug("httpflv", "[%s] write: %s", c->peer, strerror(errno));
      conn_close(c);
      return -1;
    }
    srv->st.bytes_out += (uint64_t)n;
    c->tx += (uint64_t)n;
    /* a player's bytes count toward the node's egress (subscribe.maxbandwidth) */
    if (c->state == C_STREAM) connreg_egress(hub_connreg(srv->hub), ev_now(srv->loop), (uint64_t)n);
    size_t left = (size_t)n, k;
    k = c->outlen - c->outoff < left ? c->outlen - c->outoff : left;
    c->outoff += k;
    left -= k;
    k = c->bodylen - c->bodyoff < left ? c->bodylen - c->bodyoff : left;
    c->bodyoff += k;
    left -= k;
    unsigned done = 0;
    while (left && done < c->nfl) {
      size_t whole = sizeof(c->fl[done].hdr) + c->fl[done].f->len - c->fl_off;
      if (left >= whole) {
        left -= whole;
        hub_frame_unref(c->fl[done].f);
        c->fl_off = 0;
        done++;
      } else {
        c->fl_off += left;
        left = 0;
      }
    }
    if (done) {
      memmove(c->fl, c->fl + done, (c->nfl - done) * sizeof(c->fl[0]));
      c->nfl -= done;
    }
  }
}

/* ---------- hub callbacks ---------- */

static int conn_start_stream(conn_t *c) {
  static const char cors_head[] =
      "HTTP/1.1 200 OK\r\nServer: cascade\r\nContent-Type: video/x-flv\r\nConnection: close\r\n"
      "Cache-Control: no-cache\r\nAccess-Control-Allow-Origin: *\r\n"
      "Access-Control-Expose-Headers: Content-Type\r\n\r\n";
  static const char local_head[] =
      "HTTP/1.1 200 OK\r\nServer: cascade\r\nContent-Type: video/x-flv\r\nConnection: close\r\n"
      "Cache-Control: no-cache\r\n\r\n";
  const char *head = c->srv->cfg.local_only ? local_head : cors_head;
  size_t hl = strlen(head);
  c->out = malloc(hl + FLV_HEADER_LEN + FLV_PREV_SIZE_LEN);
  if (c->out == NULL) {
    conn_close(c);
    return -1;
  }
  memcpy(c->out, head, hl);
  c->outlen = hl;
  c->outoff = 0;
  if (c->head) {
    /* HEAD: the headers say the stream is there; no body */
    hub_unsubscribe(c->sub);
    c->sub = NULL;
    c->state = C_RESPOND;
    c->ended = 1;
    return conn_flush(c);
  }
  /* The FLV header waits for the kinds of the stream (conn_sniff): players
   * believe its flags. The head goes out now, so the player knows the
   * stream is there. */
  c->held = malloc(FLV_KINDS_MAX_FRAMES * sizeof(*c->held));
  if (c->held == NULL) {
    conn_close(c);
    return -1;
  }
  flv_kinds_init(&c->kinds);
  c->state = C_STREAM;
  c->srv->st.players++;
  hub_sub_set_kind(c->sub, HUB_SUB_PLAYER_HTTPFLV);
  return 0;
}

static void on_frames(hub_sub_t *s, void *arg) {
  conn_t *c = arg;
  (void)s;
  if (c->state == C_WAIT && conn_start_stream(c) < 0) return;
  if (c->state != C_STREAM && c->state != C_RESPOND) return;
  if (ev_is_active(&c->wio)) return; /* the socket is full: EV_WRITE resumes */
  conn_flush(c);
}

static void on_end(hub_sub_t *s, void *arg, int why) {
  conn_t *c = arg;
  (void)s;
  c->sub = NULL;
  connreg_remove(hub_connreg(c->srv->hub), &c->ent);
  if (c->state == C_WAIT) {
    if (why == HUB_END_NOT_FOUND) conn_error(c, 404, "stream not found");
    else conn_error(c, 503, why == HUB_END_LIMIT    ? "too many players"
                            : why == HUB_END_KICKED ? "ended by the operator"
                                                    : "unavailable");
    return;
  }
  if (why == HUB_END_KICKED) log_info("httpflv", "[%s] player ended by the operator", c->peer);
  if (why == HUB_END_SLOW) {
    /* its socket is full: what is in flight would never drain either */
    log_info("httpflv", "[%s] player too slow, closed", c->peer);
    conn_close(c);
    return;
  }
  /* finish the tags in flight, within LINGER_S */
  c->ended = 1;
  ev_timer_stop(c->srv->loop, &c->timer);
  ev_timer_set(&c->timer, LINGER_S, 0.);
  ev_timer_start(c->srv->loop, &c->timer);
  if (!ev_is_active(&c->wio)) conn_flush(c);
}

static const hub_sub_ops_t sub_ops = {on_frames, on_end};

/* kick_player ends a player for the operator (connreg_kick): the hub ends
 * its subscription and on_end finishes the response body. */
static void kick_player(connreg_ent_t *e, void *arg) {
  conn_t *c = arg;
  (void)e;
  if (c->sub) hub_sub_kick(c->sub);
}

/* play_limited refuses a player over the node's limits (players per
 * stream, outgoing bandwidth) with 503, the reason and Retry-After. 1 when
 * refused (the reply is under way, or the connection closed). */
static int play_limited(conn_t *c, const char *path) {
  char why[128], q[128];
  hub_t *h = c->srv->hub;
  if (connreg_play_check(hub_connreg(h), hub_path_players(h, path), ev_now(c->srv->loop), why,
                         sizeof(why)) == 0)
    return 0;
  WARN_RL(c->srv, "[%s] play %s refused: %s", c->peer, log_quote(path, q, sizeof(q)), why);
  size_t len = strlen(why);
  char *body = malloc(len + 2);
  if (body) snprintf(body, len + 2, "%s\n", why);
  conn_respond(c, 503, "text/plain", body, body ? len + 1 : 0, "Retry-After: 2\r\n");
  return 1;
}

/* ---------- requests ---------- */

int httpflv_host_is_local(const char *v, size_t len) {
  size_t h = len;
  if (len == 0) return 1;
  if (v[0] == '[') {
    const char *rb = memchr(v, ']', len);
    if (rb == NULL || rb == v + 1) return 0;
    for (const char *p = v + 1; p < rb; p++)
      if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '.') return 0;
    h = (size_t)(rb - v) + 1;
    if (h == len) return 1;
    if (v[h] != ':') return 0;
  } else {
    const char *colon = memchr(v, ':', len);
    if (colon) h = (size_t)(colon - v);
    if (h == 0) return 0;
    if (!(h == 9 && strncasecmp(v, "localhost", 9) == 0)) {
      int dots = 0;
      for (size_t i = 0; i < h; i++) {
        if (v[i] == '.') dots++;
        else if (v[i] < '0' || v[i] > '9') return 0;
      }
      if (dots != 3 || v[0] == '.' || v[h - 1] == '.' || memmem(v, h, "..", 2)) return 0;
    }
  }
  if (h == len) return 1;
  if (len - h - 1 == 0 || len - h - 1 > 5) return 0;
  for (size_t i = h + 1; i < len; i++)
    if (v[i] < '0' || v[i] > '9') return 0;
  return 1;
}

static int is_tchar(int ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
         (ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static int hexval(int ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

/* pct_decode decodes |s| in place; -1 on a bad escape or %00. */
static int pct_decode(char *s) {
  char *o = s;
  for (; *s; s++) {
    if (*s == '%') {
      int a = hexval((unsigned char)s[1]), b = a < 0 ? -1 : hexval((unsigned char)s[2]);
      if (b < 0 || (a == 0 && b == 0)) return -1;
      *o++ = (char)(a * 16 + b);
      s += 2;
    } else {
      *o++ = *s;
    }
  }
  *o = '\0';
  return 0;
}

/* prefix_ok refuses early what cannot be an HTTP request (TLS, RTMP, noise). */
static int prefix_ok(const char *b, size_t n) {
  for (size_t i = 0; i < n && i <= 16; i++) {
    if (b[i] == ' ') return i > 0;
    if (b[i] < 'A' || b[i] > 'Z') return 0;
  }
  return n <= 16;
}

/* play_start subscribes an admitted player to c->path. */
static int play_start(conn_t *c) {
  httpflv_t *srv = c->srv;
  free(c->req); /* the request's strings are not needed any more */
  c->req = NULL;
  /* The limits after admission: a player refused by either learns the
   * first reason, and a pending check holds no place. */
  if (play_limited(c, c->path)) return 0;
  c->state = C_WAIT;
  ev_timer_stop(srv->loop, &c->timer);
  c->admitted = srv->admit != NULL;
  c->sub = hub_subscribe(srv->hub, c->path, &sub_ops, c);
  if (c->sub == NULL) return conn_error(c, 503, "out of memory");
  /* a player from now on, also while it waits for the stream */
  hub_sub_set_kind(c->sub, HUB_SUB_PLAYER_HTTPFLV);
  (void)connreg_add(hub_connreg(srv->hub), &c->ent, CONNREG_PLAYER, "httpflv", c->path, c->peer,
                    &c->rx, &c->tx, ev_now(srv->loop), kick_player, c);
  return 0;
}

/* play_refused answers a player admission refused, and logs it with the
 * client address (never the query: it holds the token). */
static int play_refused(conn_t *c, int status, const char *reason) {
  char q[128];
  if (reason == NULL) reason = "refused";
  c->srv->st.admit_refused++;
  WARN_RL(c->srv, "[%s] play %s refused: %d %s", c->peer, log_quote(c->path, q, sizeof(q)),
          status, reason);
  return conn_error(c, status == 401 || status == 503 ? status : 403, reason);
}

static void admit_done(void *arg, int allow, int status, const char *reason) {
  conn_t *c = arg;
  c->admit_pending = NULL;
  if (allow) play_start(c);
  else play_refused(c, status, reason);
}

/* play_admit asks admission about the player of c->path; |query| is the
 * request's (in c->req, freed here). */
static int play_admit(conn_t *c, const char *query) {
  httpflv_t *srv = c->srv;
  char addr[48];
  dp_admit_addr(c->peer, addr, sizeof(addr));
  dp_admit_req r = {DP_ADMIT_PLAY, c->path, query[0] ? query : NULL, "httpflv", addr};
  int status = 403;
  const char *reason = NULL;
  void *pending = NULL;
  int v = srv->admit->check(srv->admit_ud, &r, admit_done, c, &pending, &status, &reason);
  free(c->req);
  c->req = NULL;
  if (v == DP_ADMIT_ALLOW) return play_start(c);
  if (v != DP_ADMIT_PENDING) return play_refused(c, status, reason);
  /* Until the verdict only the peer's EOF is read (it cancels the check). */
  c->state = C_ADMIT;
  c->admit_pending = pending;
  ev_timer_stop(srv->loop, &c->timer);
  return 0;
}

static int route(conn_t *c, const char *method, char *target) {
  httpflv_t *srv = c->srv;
  char *query = strchr(target, '?');
  if (query) *query++ = '\0';
  else query = "";
  if (pct_decode(target) < 0) return conn_error(c, 400, "bad percent-encoding");
  int flv = strncmp(target, "/flv/", 5) == 0;
  /* CORS preflight for players; an API path is the handler's to answer
   * (on the public listener: 404 like any path it does not serve). */
  if (strcmp(method, "OPTIONS") == 0 && (flv || srv->api == NULL))
    return conn_respond(c, 204, "text/plain", NULL, 0,
                        "Access-Control-Allow-Methods: GET, HEAD, OPTIONS\r\n"
                        "Access-Control-Allow-Headers: *\r\nAccess-Control-Max-Age: 86400\r\n");
  int get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
  c->head = strcmp(method, "HEAD") == 0;
  if (!get && (srv->api == NULL || flv)) return conn_error(c, 405, "method not allowed");
  if (flv) {
    char *path = target + 5;
    size_t n = strlen(path);
    if (n <= 4 || strcmp(path + n - 4, ".flv") != 0) return conn_error(c, 404, "not found");
    path[n - 4] = '\0';
    if (!hub_path_ok(path)) return conn_error(c, 404, "stream not found");
    if ((c->path = strdup(path)) == NULL) return conn_error(c, 503, "out of memory");
    if (srv->admit == NULL) return play_start(c);
    return play_admit(c, query);
  }
  if (srv->api) {
    httpflv_request_t rq = {method, target, query, c->rbody ? c->rbody : "", c->rbody_len};
    httpflv_reply_t out = {NULL, 0, NULL, NULL};
    char allow[128] = "";
    int code = srv->api(srv->api_arg, &rq, &out);
    if (code == 405 && out.allow)
      snprintf(allow, sizeof(allow), "Allow: %s\r\n", out.allow);
    if (code == 405 && out.body == NULL) {
      char *b = strdup("method not allowed\n");
      out.body = b;
      out.len = b ? strlen(b) : 0;
      out.ctype = "text/plain";
    }
    if (code >= 100 && code <= 599)
      return conn_respond(c, code, out.ctype, out.body, out.body ? out.len : 0,
                          allow[0] ? allow : NULL);
    free(out.body);
    return conn_error(c, 404, "not found");
  }
  if (srv->cfg.fallback) {
    char *body = NULL;
    size_t len = 0;
    const char *ctype = NULL;
    int code = srv->cfg.fallback(srv->cfg.fallback_arg, method, target, query, &body, &len, &ctype);
    if (code >= 100 && code <= 599) return conn_respond(c, code, ctype, body, body ? len : 0, NULL);
    free(body);
  }
  return conn_error(c, 404, "not found");
}

/* parse_request checks the request head req[0..n) (ending in an empty
 * line) and routes it. */
static int parse_request(conn_t *c, size_t n) {
  char *b = c->req, *end = b + n;
  if (memchr(b, '\0', n)) return conn_error(c, 400, "NUL in request");
  char *eol = memchr(b, '\n', n);
  char *line_end = eol > b && eol[-1] == '\r' ? eol - 1 : eol;
  *line_end = '\0';
  char *sp1 = strchr(b, ' ');
  char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
  if (!sp1 || !sp2 || strchr(sp2 + 1, ' ')) return conn_error(c, 400, "bad request line");
  *sp1 = '\0';
  *sp2 = '\0';
  char *method = b, *target = sp1 + 1, *version = sp2 + 1;
  if (strcmp(version, "HTTP/1.1") != 0 && strcmp(version, "HTTP/1.0") != 0)
    return conn_error(c, 400, "bad HTTP version");
  if (target[0] != '/') return conn_error(c, 400, "bad request target");
  for (char *p = target; *p; p++)
    if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
      return conn_error(c, 400, "bad request target");
  unsigned headers = 0;
  long long clen = -1;
  int chunked = 0, expect = 0, origin = 0, foreign_host = 0;
  for (char *p = eol + 1; p < end;) {
    char *e = memchr(p, '\n', (size_t)(end - p));
    if (e == NULL) break;
    char *le = e > p && e[-1] == '\r' ? e - 1 : e;
    if (le == p) break; /* the empty line */
    if (++headers > MAX_HEADERS) return conn_error(c, 431, "too many header fields");
    char *q = p;
    while (q < le && is_tchar((unsigned char)*q)) q++;
    if (q == p || q == le || *q != ':') return conn_error(c, 400, "bad header field");
    size_t nlen = (size_t)(q - p);
    char *v = q + 1;
    for (q++; q < le; q++)
      if (((unsigned char)*q < 0x20 && *q != '\t') || *q == 0x7f)
        return conn_error(c, 400, "bad header value");
    while (v < le && (*v == ' ' || *v == '\t')) v++;
    size_t vlen = (size_t)(le - v);
    while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t')) vlen--;
    if (nlen == 14 && strncasecmp(p, "content-length", 14) == 0) {
      long long cl = 0;
      if (vlen == 0 || vlen > 12) return conn_error(c, 400, "bad Content-Length");
      for (size_t k = 0; k < vlen; k++) {
        if (v[k] < '0' || v[k] > '9') return conn_error(c, 400, "bad Content-Length");
        cl = cl * 10 + (v[k] - '0');
      }
      if (clen >= 0 && clen != cl) return conn_error(c, 400, "conflicting Content-Length");
      clen = cl;
    } else if (nlen == 17 && strncasecmp(p, "transfer-encoding", 17) == 0) {
      chunked = 1;
    } else if (nlen == 6 && strncasecmp(p, "expect", 6) == 0 && vlen == 12 &&
               strncasecmp(v, "100-continue", 12) == 0) {
      expect = 1;
    } else if (nlen == 6 && strncasecmp(p, "origin", 6) == 0) {
      origin = 1;
    } else if (nlen == 4 && strncasecmp(p, "host", 4) == 0) {
      foreign_host = !httpflv_host_is_local(v, vlen);
    }
    p = e + 1;
  }
  c->method = method;
  c->target = target;
  if (c->srv->cfg.local_only && (origin || foreign_host)) {
    /* No browser page may drive the node's own API: not a cross-site one
     * (Origin), not one whose name was rebound to this address (Host). */
    WARN_RL(c->srv, "[%s] 403: %s on the admin listener", c->peer,
            origin ? "a browser's cross-origin request" : "a Host that names no local address");
    return conn_error(c, 403, origin ? "cross-origin requests are refused here"
                                     : "Host must be an IP address or localhost");
  }
  if (chunked)
    return conn_error(c, 411, "chunked request bodies are not supported: send Content-Length");
  if (clen > HTTPFLV_MAX_BODY) return conn_error(c, 413, "request body over 1048576 bytes");
  if (clen > 0 && (c->srv->api == NULL || c->srv->cfg.max_body == 0))
    return conn_error(c, 413, "request bodies are not accepted here");
  if (clen > 0 && (size_t)clen > c->srv->cfg.max_body) {
    char why[64];
    snprintf(why, sizeof(why), "request body over %zu bytes", c->srv->cfg.max_body);
    return conn_error(c, 413, why);
  }
  if (clen <= 0) return route(c, method, target);
  /* Bodies are taken before anyone is known: together they stay within a
   * budget, or http.maxconnections strangers could make us hold 1 MiB each. */
  if (c->srv->st.body_bytes + (size_t)clen + 1 > c->srv->cfg.body_budget) {
    c->srv->st.busy++;
    WARN_RL(c->srv, "[%s] 503: request bodies in progress would pass %zu bytes", c->peer,
            c->srv->cfg.body_budget);
    return conn_error(c, 503, "busy: too many request bodies in progress, try again");
  }
  c->rbody = malloc((size_t)clen + 1);
  if (c->rbody == NULL) return conn_error(c, 503, "out of memory");
  c->rbody_need = (size_t)clen;
  c->srv->st.body_bytes += (size_t)clen + 1;
  size_t extra = c->reqlen - n;
  if (extra > c->rbody_need) extra = c->rbody_need;
  c->req[n] = c->saved;
  memcpy(c->rbody, c->req + n, extra);
  c->rbody_len = extra;
  c->rbody[extra] = '\0';
  if (c->rbody_len == c->rbody_need) return route(c, method, target);
  c->state = C_BODY;
  if (expect) {
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    ssize_t w = send(c->fd, cont, sizeof(cont) - 1, MSG_NOSIGNAL);
    (void)w; /* best effort: a client that waits for it sends anyway after a pause */
  }
  return 0;
}

static void conn_read_cb(struct ev_loop *loop, ev_io *w, int revents) {
  conn_t *c = w->data;
  (void)loop;
  (void)revents;
  if (c->state == C_BODY) {
    ssize_t n = recv(c->fd, c->rbody + c->rbody_len, c->rbody_need - c->rbody_len, 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
      conn_close(c);
      return;
    }
    if (n == 0) {
      WARN_RL(c->srv, "[%s] closed within the request body", c->peer);
      conn_close(c);
      return;
    }
    c->rbody_len += (size_t)n;
    c->rbody[c->rbody_len] = '\0';
    if (c->rbody_len == c->rbody_need) {
      c->state = C_REQ; /* route() decides what comes next */
      route(c, c->method, c->target);
    }
    return;
  }
  if (c->state != C_REQ) {
    /* after the request: only EOF or an error matters (the player left) */
    char junk[512];
    ssize_t n = recv(c->fd, junk, sizeof(junk), 0);
    if (n > 0) return;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    if (n == 0 && c->state == C_RESPOND) {
      /* a half-close after the request: the reply still goes out */
      c->peer_eof = 1;
      ev_io_stop(c->srv->loop, &c->rio);
      return;
    }
    conn_close(c);
    return;
  }
  size_t room = HTTPFLV_MAX_REQUEST - c->reqlen;
  ssize_t n = recv(c->fd, c->req + c->reqlen, room, 0);
  if (n > 0) c->rx += (uint64_t)n;
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
    conn_close(c);
    return;
  }
  if (n == 0) {
    if (c->reqlen) WARN_RL(c->srv, "[%s] closed within the request", c->peer);
    conn_close(c);
    return;
  }
  size_t from = c->reqlen >= 3 ? c->reqlen - 3 : 0;
  c->reqlen += (size_t)n;
  if (!prefix_ok(c->req, c->reqlen)) {
    conn_error(c, 400, "not an HTTP request");
    return;
  }
  for (size_t i = from; i < c->reqlen; i++) {
    if (c->req[i] != '\n') continue;
    if ((i >= 1 && c->req[i - 1] == '\n') || (i >= 2 && c->req[i - 1] == '\r' && c->req[i - 2] == '\n')) {
      /* The head is terminated for parsing; the byte kept is the body's first. */
      c->saved = c->req[i + 1];
      c->req[i + 1] = '\0';
      parse_request(c, i + 1);
      return;
    }
  }
  if (c->reqlen >= HTTPFLV_MAX_REQUEST) conn_error(c, 431, "request head over 8 KiB");
}

static void conn_write_cb(struct ev_loop *loop, ev_io *w, int revents) {
  conn_t *c = w->data;
  (void)loop;
  (void)revents;
  ev_io_stop(c->srv->loop, &c->wio);
  conn_flush(c);
}

static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  conn_t *c = w->data;
  (void)loop;
  (void)revents;
  if (c->state == C_REQ || c->state == C_BODY) {
    if (c->reqlen) WARN_RL(c->srv, "[%s] request timeout", c->peer);
    conn_close(c);
  } else if (c->state == C_LINGER || c->ended) {
    conn_close(c);
  }
}

/* ---------- accepting ---------- */


static void accept_cb(struct ev_loop *loop, ev_io *w, int revents) {
  httpflv_t *srv = w->data;
  (void)loop;
  (void)revents;
  for (int i = 0; i < ACCEPT_BATCH; i++) {
    int fd = accept4(srv->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED) return;
      WARN_RL(srv, "[listener] accept: %s", strerror(errno));
      return;
    }
    char peer[64];
    net_peer_name(fd, peer, sizeof(peer));
    if (srv->cfg.max_connections && srv->st.current >= srv->cfg.max_connections) {
      srv->st.refused++;
      WARN_RL(srv, "[%s] refused: max_connections %u reached", peer, srv->cfg.max_connections);
      close(fd);
      continue;
    }
    conn_t *c = calloc(1, sizeof(*c));
    char *req = malloc(HTTPFLV_MAX_REQUEST + 1);
    if (c == NULL || req == NULL) {
      free(c);
      free(req);
      close(fd);
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->srv = srv;
    c->fd = fd;
    c->req = req;
    c->state = C_REQ;
    memcpy(c->peer, peer, sizeof(c->peer));
    ev_io_init(&c->rio, conn_read_cb, fd, EV_READ);
    ev_io_init(&c->wio, conn_write_cb, fd, EV_WRITE);
    ev_timer_init(&c->timer, conn_timer_cb, srv->cfg.request_timeout_s, 0.);
    c->rio.data = c->wio.data = c->timer.data = c;
    ev_io_start(srv->loop, &c->rio);
    ev_timer_start(srv->loop, &c->timer);
    c->next = srv->conns;
    if (srv->conns) srv->conns->prev = c;
    srv->conns = c;
    srv->st.connections++;
    srv->st.current++;
  }
}

httpflv_t *httpflv_new(struct ev_loop *loop, hub_t *hub, int listen_fd,
                       const httpflv_config_t *cfg) {
  httpflv_t *srv = calloc(1, sizeof(*srv));
  if (srv == NULL) return NULL;
  srv->loop = loop;
  srv->hub = hub;
  if (cfg) srv->cfg = *cfg;
  if (srv->cfg.request_timeout_s <= 0) srv->cfg.request_timeout_s = 10.0;
  if (srv->cfg.body_budget == 0) srv->cfg.body_budget = HTTPFLV_BODY_BUDGET;
  if (srv->cfg.max_body > HTTPFLV_MAX_BODY) srv->cfg.max_body = HTTPFLV_MAX_BODY;
  srv->lfd = listen_fd;
  int fl = fcntl(listen_fd, F_GETFL);
  if (fl >= 0) fcntl(listen_fd, F_SETFL, fl | O_NONBLOCK);
  ev_io_init(&srv->lio, accept_cb, listen_fd, EV_READ);
  srv->lio.data = srv;
  ev_io_start(loop, &srv->lio);
  return srv;
}

void httpflv_set_api(httpflv_t *srv, httpflv_api_t api, void *arg) {
  srv->api = api;
  srv->api_arg = arg;
}

void httpflv_free(httpflv_t *srv) {
  if (srv == NULL) return;
  ev_io_stop(srv->loop, &srv->lio);
  while (srv->conns) conn_close(srv->conns);
  free(srv);
}

void httpflv_drain(httpflv_t *srv) {
  if (srv == NULL) return;
  ev_io_stop(srv->loop, &srv->lio);
  for (conn_t *c = srv->conns, *next; c; c = next) {
    next = c->next;
    if (c->state == C_REQ || c->state == C_BODY) conn_close(c);
  }
}

void httpflv_get_stats(const httpflv_t *srv, httpflv_stats_t *out) { *out = srv->st; }

void httpflv_set_admit(httpflv_t *srv, const dp_admit_ops *ops, void *ud) {
  srv->admit = ops && ops->check ? ops : NULL;
  srv->admit_ud = ud;
}
