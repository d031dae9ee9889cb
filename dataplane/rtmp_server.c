/* The RTMP server: see rtmp_server.h.
 *
 * Ownership: the server owns its connections (a list); a connection owns
 * its socket, watchers, reader/writer state, its hub publisher handle and
 * subscription, and one reference of each frame in its send window.
 *
 * Output: control messages and command replies are serialized into a
 * per-connection byte buffer; media frames are never copied: their chunk
 * headers are laid out in a small rtmp_omsg_t and sendmsg() gathers
 * headers and slices of the shared frame bodies. Control output is
 * flushed only between frames, so chunks of one message are never split
 * by another message on the wire.
 *
 * Re-entrancy: hub callbacks (on_frames, on_end) may run inside another
 * connection's read handler (hub_push) or this one's; they only set flags
 * and start watchers. Closing from them is deferred through the
 * connection's timer (Redis' CLOSE_SCHEDULED idea). */
#define _GNU_SOURCE /* accept4 */
#include "rtmp_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "admit.h"
#include "amf.h"
#include "log.h"
#include "net.h"
#include "rtmp_proto.h"
#include "tsmap.h"

#define CSID_CONTROL 2
#define CSID_COMMAND 3
#define CSID_AUDIO 4
#define CSID_DATA 5
#define CSID_VIDEO 6

#define SEND_WINDOW 16         /* frames laid out per sendmsg */
#define SEND_IOV 128
#define READ_ROUNDS 4          /* reads per readiness event, for fairness */
#define MAX_APP 256
#define MAX_QUERY 1024         /* connect or stream-name query kept for admission */
#define MAX_STREAM_IDS 1024
#define ERR_LOGGED (-100)      /* a callback failed and logged why */

typedef struct out_frame {
  hub_frame_t *f;
  rtmp_omsg_t m;
} out_frame_t;

typedef struct rtmp_conn rtmp_conn_t;

struct rtmp_server {
  struct ev_loop *loop;
  hub_t *hub;
  int lfd;
  ev_io lio;
  ev_timer retry;              /* accept paused after EMFILE */
  rtmp_server_config_t cfg;
  rtmp_conn_t *conns;          /* owned */
  rtmp_server_stats_t st;
  double log_tokens, log_t;    /* rate limit of per-connection log lines */
  unsigned log_dropped;
  rtmp_budget_t budget;        /* partial messages of every connection (cfg.ingest_budget) */
  double limit_log_t[2];       /* last warning of a limit close: [0] bound, [1] budget */
  unsigned limit_held[2];      /* limit closes logged at debug since */
  const dp_admit_ops *admit;   /* NULL: everyone may publish and play */
  void *admit_ud;
  uint8_t rbuf[65536];         /* shared: the reader copies what it keeps */
};

struct rtmp_conn {
  rtmp_server_t *srv;
  rtmp_conn_t *prev, *next;
  int fd;
  ev_io rio, wio;
  ev_timer timer;              /* handshake/idle timeout, and deferred close */
  char peer[64];
  char addr[48];               /* the peer's address without port, for admission */
  rtmp_hs_t *hs;               /* owned until the handshake is done */
  rtmp_reader_t rd;
  rtmp_writer_t wr;
  amf_buf_t out;               /* serialized control output */
  size_t out_off;
  double started, last_rx;
  unsigned connected : 1;
  unsigned dead : 1;           /* close scheduled */
  unsigned closing : 1;        /* close once the output is flushed */
  unsigned play_started : 1;
  unsigned trim_due : 1;       /* give idle reader buffers back once the feed returns */
  unsigned pub_admitted : 1;   /* admission said yes to the publish: tell it when it ends */
  unsigned play_admitted : 1;
  char *app;
  char *conn_query;            /* the connect's query (app or tcUrl), for admission; owned */
  void *admit_pending;         /* admission's handle while a check is out (reading stopped) */
  int admit_action;            /* DP_ADMIT_PUBLISH or DP_ADMIT_PLAY, while pending */
  char *admit_path;            /* owned while pending */
  uint32_t admit_sid;
  double obj_enc;
  uint32_t next_sid;
  hub_stream_t *pub;           /* publisher handle */
  char *pub_path;
  uint32_t pub_sid;
  hub_sub_t *sub;              /* subscription (borrowed until on_end/unsubscribe) */
  char *play_path;
  uint32_t play_sid;
  tsmap_t tsmap;               /* the player's timeline, from 0 (zeroed by calloc; one play a connection) */
  out_frame_t q[SEND_WINDOW];  /* frames being sent, in order */
  unsigned qn;
  uint64_t rx, tx;             /* bytes of this connection, for the registry */
  connreg_ent_t pub_ent, play_ent; /* in the hub's registry while publishing / playing */
};

static void conn_close(rtmp_conn_t *c);
static void conn_flush(rtmp_conn_t *c);

/* ---------------------------------------------------------------- logging */

/* conn_log writes one line naming the peer; at most ~10 a second over a
 * burst of 20 per server, counting what it drops. */
static void conn_log(rtmp_conn_t *c, log_level_t lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void conn_log(rtmp_conn_t *c, log_level_t lvl, const char *fmt, ...) {
  rtmp_server_t *s = c->srv;
  if (!log_enabled(lvl)) return;
  double now = ev_now(s->loop);
  s->log_tokens += (now - s->log_t) * 10;
  if (s->log_tokens > 20) s->log_tokens = 20;
  s->log_t = now;
  if (s->log_tokens < 1) {
    s->log_dropped++;
    return;
  }
  s->log_tokens -= 1;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  if (s->log_dropped) {
    log_msg(lvl, "rtmp", "[rtmp %s] %s (%u similar lines suppressed)", c->peer, msg, s->log_dropped);
    s->log_dropped = 0;
  } else {
    log_msg(lvl, "rtmp", "[rtmp %s] %s", c->peer, msg);
  }
}

/* conn_fail logs why and schedules the close; returns ERR_LOGGED. */
static int conn_fail(rtmp_conn_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void conn_schedule_close(rtmp_conn_t *c) {
  if (c->dead) return;
  c->dead = 1;
  hub_sub_set_kind(c->sub, HUB_SUB_OTHER); /* no longer a player */
  ev_io_stop(c->srv->loop, &c->rio);
  ev_io_stop(c->srv->loop, &c->wio);
  ev_timer_stop(c->srv->loop, &c->timer);
  ev_timer_set(&c->timer, 0., 0.);
  ev_timer_start(c->srv->loop, &c->timer);
}

static int conn_fail(rtmp_conn_t *c, const char *fmt, ...) {
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  c->srv->st.protocol_errors++;
  conn_log(c, LOG_WARN, "%s", msg);
  conn_schedule_close(c);
  return ERR_LOGGED;
}

/* conn_limit closes a connection the reader refused to let hold more
 * (RTMP_EPENDING: its own bound; RTMP_EBUDGET: the server's budget). An
 * attacker opens many such connections, so at most one warning a second
 * per kind names a client; the others go to debug and are counted in the
 * next warning. */
static void conn_limit(rtmp_conn_t *c, int rc) {
  rtmp_server_t *s = c->srv;
  int k = rc == RTMP_EBUDGET;
  char msg[300];
  if (k) {
    s->st.budget_closes++;
    snprintf(msg, sizeof(msg),
             "closed: ingest budget used up (%zu of %zu bytes held by all connections, %zu by "
             "this one)", s->budget.used, s->budget.max, c->rd.buffered);
  } else {
    s->st.pending_closes++;
    snprintf(msg, sizeof(msg), "closed: partial messages over %zu bytes %s (holds %zu)",
             c->rd.max_buffered, c->pub ? "while publishing" : "before publish",
             c->rd.buffered);
  }
  double now = ev_now(s->loop);
  if (s->limit_log_t[k] != 0 && now - s->limit_log_t[k] < 1.0) {
    s->limit_held[k]++;
    log_debug("rtmp", "[rtmp %s] %s", c->peer, msg);
  } else {
    if (s->limit_held[k])
      log_warn("rtmp", "[rtmp %s] %s (%u similar lines held back)", c->peer, msg, s->limit_held[k]);
    else
      log_warn("rtmp", "[rtmp %s] %s", c->peer, msg);
    s->limit_log_t[k] = now;
    s->limit_held[k] = 0;
  }
  conn_schedule_close(c);
}

static const char *rtmp_errstr(int rc) {
  switch (rc) {
  case RTMP_EVERSION: return "handshake: unsupported version (not 3)";
  case RTMP_EHANDSHAKE: return "handshake failed";
  case RTMP_ECHUNKSIZE: return "bad Set Chunk Size (0 or over 16 MiB)";
  case RTMP_ETOOBIG: return "message over the size limit";
  case RTMP_ECSID: return "bad chunk stream (unknown or too many)";
  case RTMP_EPROTO: return "malformed protocol control message";
  case RTMP_ENOMEM: return "out of memory";
  case RTMP_EPENDING: return "partial messages over the connection's bound";
  case RTMP_EBUDGET: return "ingest budget used up";
  default: return "protocol error";
  }
}

/* ---------------------------------------------------------------- output */

static int out_pending(const rtmp_conn_t *c) { return c->out.len > c->out_off; }

static void want_write(rtmp_conn_t *c) {
  if (!c->dead) ev_io_start(c->srv->loop, &c->wio);
}

/* out_check fails the connection when its control output overflowed. */
static int out_check(rtmp_conn_t *c) {
  if (c->out.err) return conn_fail(c, "output buffer overflow (peer not reading)");
  want_write(c);
  return 0;
}

static void send_status(rtmp_conn_t *c, uint32_t sid, const char *level, const char *code,
                        const char *desc) {
  amf_buf_t b;
  amf_buf_init(&b);
  amf_put_string(&b, "onStatus");
  amf_put_number(&b, 0);
  amf_put_null(&b);
  amf_put_object_start(&b);
  amf_put_prop_string(&b, "level", level);
  amf_put_prop_string(&b, "code", code);
  amf_put_prop_string(&b, "description", desc);
  amf_put_object_end(&b);
  if (b.err == 0) rtmp_writer_put(&c->wr, &c->out, CSID_COMMAND, RTMP_MSG_COMMAND_AMF0, sid, 0, b.data, b.len);
  else c->out.err = b.err;
  amf_buf_free(&b);
}

static void send_cmd(rtmp_conn_t *c, uint32_t sid, const amf_buf_t *b) {
  if (b->err) {
    c->out.err = b->err;
    return;
  }
  rtmp_writer_put(&c->wr, &c->out, CSID_COMMAND, RTMP_MSG_COMMAND_AMF0, sid, 0, b->data, b->len);
}

static void send_play_start(rtmp_conn_t *c) {
  char desc[1200];
  rtmp_put_user_control(&c->wr, &c->out, RTMP_UC_STREAM_BEGIN, c->play_sid);
  snprintf(desc, sizeof(desc), "Playing and resetting %s.", c->play_path);
  send_status(c, c->play_sid, "status", "NetStream.Play.Reset", desc);
  snprintf(desc, sizeof(desc), "Started playing %s.", c->play_path);
  send_status(c, c->play_sid, "status", "NetStream.Play.Start", desc);
  amf_buf_t b;
  amf_buf_init(&b);
  amf_put_string(&b, "|RtmpSampleAccess");
  amf_put_bool(&b, 1);
  amf_put_bool(&b, 1);
  if (b.err == 0)
    rtmp_writer_put(&c->wr, &c->out, CSID_DATA, RTMP_MSG_DATA_AMF0, c->play_sid, 0, b.data, b.len);
  amf_buf_free(&b);
  c->play_started = 1;
}

/* count_tx counts bytes sent: a player's count toward the node's egress
 * rate (subscribe.maxbandwidth). */
static void count_tx(rtmp_conn_t *c, uint64_t n) {
  c->tx += n;
  if (c->play_ent.id) connreg_egress(hub_connreg(c->srv->hub), ev_now(c->srv->loop), n);
}

/* write_out sends control output; 1 = all sent, 0 = blocked, <0 = error. */
static int write_out(rtmp_conn_t *c) {
  while (out_pending(c)) {
    ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      return -1;
    }
    c->out_off += (size_t)n;
    c->srv->st.bytes_out += (uint64_t)n;
    count_tx(c, (uint64_t)n);
  }
  c->out.len = c->out_off = 0;
  return 1;
}

/* write_frames sends the send window; 1 = all sent, 0 = blocked, <0 = error. */
static int write_frames(rtmp_conn_t *c) {
  while (c->qn > 0) {
    struct iovec iov[SEND_IOV];
    int n = 0;
    for (unsigned i = 0; i < c->qn && n < SEND_IOV; i++) n += rtmp_omsg_iov(&c->q[i].m, iov + n, SEND_IOV - n);
    struct msghdr mh;
    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = iov;
    mh.msg_iovlen = (size_t)n;
    ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      return -1;
    }
    c->srv->st.bytes_out += (uint64_t)w;
    count_tx(c, (uint64_t)w);
    size_t left = (size_t)w;
    unsigned done = 0;
    while (done < c->qn) {
      size_t rem = rtmp_omsg_wire_len(&c->q[done].m) - c->q[done].m.pos;
      if (left < rem) {
        rtmp_omsg_advance(&c->q[done].m, left);
        break;
      }
      left -= rem;
      hub_frame_unref(c->q[done].f);
      c->q[done].f = NULL;
      done++;
      c->srv->st.frames_out++;
    }
    if (done) {
      memmove(c->q, c->q + done, (c->qn - done) * sizeof(c->q[0]));
      c->qn -= done;
    }
  }
  return 1;
}

static uint32_t frame_csid(uint8_t type) {
  return type == HUB_AUDIO ? CSID_AUDIO : type == HUB_VIDEO ? CSID_VIDEO : CSID_DATA;
}

/* conn_flush writes whatever can go: the frames in flight, then control
 * output, then more frames from the subscription. */
static void conn_flush(rtmp_conn_t *c) {
  if (c->dead) return;
  for (;;) {
    int r;
    if (c->qn > 0) {
      r = write_frames(c);
    } else if (out_pending(c)) {
      r = write_out(c);
    } else if (c->sub && c->play_started) {
      hub_frame_t *f;
      while (c->qn < SEND_WINDOW && (f = hub_sub_next(c->sub)) != NULL) {
        out_frame_t *o = &c->q[c->qn++];
        o->f = f;
        /* origin timestamps rebased for this player: see tsmap.h */
        uint32_t ts = tsmap_map(&c->tsmap, f->type, f->seq_header, f->ts);
        rtmp_writer_begin(&c->wr, &o->m, frame_csid(f->type), f->type, c->play_sid, ts, f->data, f->len);
      }
      if (c->qn == 0) break;
      continue;
    } else {
      break;
    }
    if (r < 0) {
      conn_log(c, LOG_INFO, "write failed: %s", strerror(errno));
      conn_schedule_close(c);
      return;
    }
    if (r == 0) {
      ev_io_start(c->srv->loop, &c->wio);
      return;
    }
  }
  ev_io_stop(c->srv->loop, &c->wio);
  if (c->closing) conn_schedule_close(c);
}

/* ---------------------------------------------------------------- hub callbacks */

static void sub_on_frames(hub_sub_t *s, void *arg) {
  rtmp_conn_t *c = arg;
  (void)s;
  if (c->dead) return;
  if (!c->play_started) {
    send_play_start(c);
    c->srv->st.players++;
    conn_log(c, LOG_INFO, "playing %s", c->play_path);
  }
  /* Write now: one sendmsg per frame and player, no epoll round trip. A
   * player whose socket is full waits for EV_WRITE; its hub queue bounds
   * what piles up meanwhile. conn_flush only schedules closes, so it is
   * safe inside the publisher's hub_push. */
  if (!ev_is_active(&c->wio)) conn_flush(c);
}

static void sub_on_end(hub_sub_t *s, void *arg, int why) {
  rtmp_conn_t *c = arg;
  (void)s;
  c->sub = NULL;
  connreg_remove(hub_connreg(c->srv->hub), &c->play_ent);
  if (c->play_started) c->srv->st.players--;
  if (c->dead) return;
  char desc[1200];
  switch (why) {
  case HUB_END_NOT_FOUND:
    snprintf(desc, sizeof(desc), "No such stream: %s", c->play_path);
    send_status(c, c->play_sid, "error", "NetStream.Play.StreamNotFound", desc);
    conn_log(c, LOG_INFO, "play %s: stream not found", c->play_path);
    break;
  case HUB_END_LIMIT:
    send_status(c, c->play_sid, "error", "NetStream.Play.Failed", "Too many players.");
    conn_log(c, LOG_WARN, "play %s refused: players per stream limit reached", c->play_path);
    break;
  case HUB_END_UNPUBLISHED:
    snprintf(desc, sizeof(desc), "%s is now unpublished.", c->play_path);
    send_status(c, c->play_sid, "status", "NetStream.Play.UnpublishNotify", desc);
    rtmp_put_user_control(&c->wr, &c->out, RTMP_UC_STREAM_EOF, c->play_sid);
    conn_log(c, LOG_INFO, "play %s: publisher gone", c->play_path);
    break;
  case HUB_END_SHUTDOWN:
    /* The end of the stream as a player knows it (ffmpeg stops at
     * NetStream.Play.Stop), then the connection closes. */
    snprintf(desc, sizeof(desc), "Stopped playing %s: the server shuts down.", c->play_path);
    send_status(c, c->play_sid, "status", "NetStream.Play.Stop", desc);
    rtmp_put_user_control(&c->wr, &c->out, RTMP_UC_STREAM_EOF, c->play_sid);
    conn_log(c, LOG_INFO, "play %s: ended, the server shuts down", c->play_path);
    break;
  case HUB_END_KICKED:
    /* As at shutdown: the end of the stream as a player knows it. */
    snprintf(desc, sizeof(desc), "Stopped playing %s: ended by the operator.", c->play_path);
    send_status(c, c->play_sid, "status", "NetStream.Play.Stop", desc);
    rtmp_put_user_control(&c->wr, &c->out, RTMP_UC_STREAM_EOF, c->play_sid);
    conn_log(c, LOG_INFO, "play %s: ended by the operator", c->play_path);
    break;
  case HUB_END_SLOW:
    /* The hub logged it; what is queued would only lag further. */
    conn_log(c, LOG_WARN, "play %s: too slow, disconnected", c->play_path);
    conn_schedule_close(c);
    return;
  default:
    break;
  }
  c->closing = 1;
  want_write(c);
}

static const hub_sub_ops_t sub_ops = {sub_on_frames, sub_on_end};

/* ---------------------------------------------------------------- commands */

/* admit_ended tells admission that a client it let in has gone. */
static void admit_ended(rtmp_conn_t *c, int action, const char *path) {
  rtmp_server_t *s = c->srv;
  if (s->admit == NULL || s->admit->ended == NULL || path == NULL) return;
  dp_admit_req r = {action, path, NULL, "rtmp", c->addr};
  s->admit->ended(s->admit_ud, &r);
}

static void stop_publish(rtmp_conn_t *c) {
  if (c->pub == NULL) return;
  connreg_remove(hub_connreg(c->srv->hub), &c->pub_ent);
  hub_unpublish(c->pub);
  c->pub = NULL;
  if (c->pub_admitted) {
    c->pub_admitted = 0;
    admit_ended(c, DP_ADMIT_PUBLISH, c->pub_path);
  }
  c->srv->st.publishers--;
  /* Back to the bound of a connection that publishes nothing. The buffers
   * of finished messages go once the feed returns: a callback may be
   * reading one of them now. */
  rtmp_reader_set_bound(&c->rd, c->srv->cfg.max_pending);
  c->trim_due = 1;
  conn_log(c, LOG_INFO, "publish of %s ended", c->pub_path);
}

static void stop_play(rtmp_conn_t *c) {
  connreg_remove(hub_connreg(c->srv->hub), &c->play_ent);
  if (c->play_admitted) {
    c->play_admitted = 0;
    admit_ended(c, DP_ADMIT_PLAY, c->play_path);
  }
  if (c->sub == NULL) return;
  hub_unsubscribe(c->sub);
  c->sub = NULL;
  if (c->play_started) c->srv->st.players--;
  c->play_started = 0;
  while (c->qn > 0) hub_frame_unref(c->q[--c->qn].f);
}

/* kick_player ends a player for the operator (connreg_kick): the hub
 * ends its subscription, sub_on_end tells the client. */
static void kick_player(connreg_ent_t *e, void *arg) {
  rtmp_conn_t *c = arg;
  (void)e;
  if (c->sub) hub_sub_kick(c->sub);
  else conn_schedule_close(c);
}

/* kick_publisher ends a publisher for the operator: its connection closes
 * and its stream ends at once (players get the end, no delayclose); the
 * client may publish again. */
static void kick_publisher(connreg_ent_t *e, void *arg) {
  rtmp_conn_t *c = arg;
  (void)e;
  conn_log(c, LOG_INFO, "publisher of %s ended by the operator", c->pub_path);
  stop_publish(c);
  hub_drop(c->srv->hub, c->pub_path);
  conn_schedule_close(c);
}

/* conn_register puts |e| of |c| in the hub's registry (out of memory: the
 * connection just is not listed). */
static void conn_register(rtmp_conn_t *c, connreg_ent_t *e, int kind, const char *path) {
  (void)connreg_add(hub_connreg(c->srv->hub), e, kind, "rtmp", path, c->peer, &c->rx, &c->tx,
                    ev_now(c->srv->loop),
                    kind == CONNREG_PUBLISHER ? kick_publisher : kick_player, c);
}

/* play_limited refuses a player over the node's limits (players per
 * stream, outgoing bandwidth): NetStream.Play.Failed with the reason, then
 * the connection closes. 1 when refused. */
static int play_limited(rtmp_conn_t *c, const char *path) {
  char why[128], q[128];
  hub_t *h = c->srv->hub;
  if (connreg_play_check(hub_connreg(h), hub_path_players(h, path), ev_now(c->srv->loop), why,
                         sizeof(why)) == 0)
    return 0;
  send_status(c, c->play_sid, "error", "NetStream.Play.Failed", why);
  conn_log(c, LOG_WARN, "play %s refused: %s", log_quote(path, q, sizeof(q)), why);
  c->closing = 1;
  return 1;
}

/* make_path builds "app/name" with any "?query" of the name removed. */
static char *make_path(const rtmp_conn_t *c, const char *name) {
  size_t nl = strcspn(name, "?");
  size_t al = strlen(c->app);
  char *p = malloc(al + 1 + nl + 1);
  if (p == NULL) return NULL;
  memcpy(p, c->app, al);
  p[al] = '/';
  memcpy(p + al + 1, name, nl);
  p[al + 1 + nl] = 0;
  return p;
}

static int cmd_connect(rtmp_conn_t *c, const amf_value_t *args, double txn) {
  if (c->connected) return conn_fail(c, "second connect");
  const char *app = amf_str(amf_get(amf_at(args, 2), "app"));
  if (app == NULL) return conn_fail(c, "connect without app");
  /* A token may come on the connect (rtmp://host/live?token=...): in the
   * app, or in the tcUrl only. Longer than MAX_QUERY: not kept, so such a
   * client meets "token required" rather than a truncated token. */
  const char *tc = amf_str(amf_get(amf_at(args, 2), "tcUrl"));
  const char *cq = strchr(app, '?');
  if (cq == NULL && tc) cq = strchr(tc, '?');
  if (cq && cq[1] && strlen(cq + 1) <= MAX_QUERY && (c->conn_query = strdup(cq + 1)) == NULL)
    return conn_fail(c, "out of memory");
  size_t al = strcspn(app, "?");
  while (al > 0 && app[al - 1] == '/') al--;
  while (al > 0 && app[0] == '/') {
    app++;
    al--;
  }
  if (al == 0 || al > MAX_APP) return conn_fail(c, "connect: bad app name (%zu bytes)", al);
  if ((c->app = malloc(al + 1)) == NULL) return conn_fail(c, "out of memory");
  memcpy(c->app, app, al);
  c->app[al] = 0;
  double enc = 0;
  amf_num(amf_get(amf_at(args, 2), "objectEncoding"), &enc);
  c->obj_enc = enc;
  c->connected = 1;

  rtmp_server_config_t *cfg = &c->srv->cfg;
  rtmp_put_u32_msg(&c->wr, &c->out, RTMP_MSG_WINDOW_ACK_SIZE, cfg->window_ack);
  rtmp_put_peer_bw(&c->wr, &c->out, cfg->window_ack, 2);
  rtmp_put_set_chunk_size(&c->wr, &c->out, cfg->chunk_size);
  amf_buf_t b;
  amf_buf_init(&b);
  amf_put_string(&b, "_result");
  amf_put_number(&b, txn);
  amf_put_object_start(&b);
  amf_put_prop_string(&b, "fmsVer", "FMS/3,0,1,123");
  amf_put_prop_number(&b, "capabilities", 31);
  amf_put_object_end(&b);
  amf_put_object_start(&b);
  amf_put_prop_string(&b, "level", "status");
  amf_put_prop_string(&b, "code", "NetConnection.Connect.Success");
  amf_put_prop_string(&b, "description", "Connection succeeded.");
  amf_put_prop_number(&b, "objectEncoding", enc);
  amf_put_object_end(&b);
  send_cmd(c, 0, &b);
  amf_buf_free(&b);
  return out_check(c);
}

static int cmd_result(rtmp_conn_t *c, double txn, int has_num, double num) {
  amf_buf_t b;
  amf_buf_init(&b);
  amf_put_string(&b, "_result");
  amf_put_number(&b, txn);
  amf_put_null(&b);
  if (has_num) amf_put_number(&b, num);
  else amf_put_undefined(&b);
  send_cmd(c, 0, &b);
  amf_buf_free(&b);
  return out_check(c);
}

/* query_of joins the stream name's query and the connect's (either may be
 * absent); NULL when there is none or it is too long. Malloc'd. */
static char *query_of(const rtmp_conn_t *c, const char *name) {
  const char *nq = strchr(name, '?');
  nq = nq && nq[1] ? nq + 1 : NULL;
  size_t nl = nq ? strlen(nq) : 0, cl = c->conn_query ? strlen(c->conn_query) : 0;
  if ((nl == 0 && cl == 0) || nl > MAX_QUERY) return NULL;
  char *q = malloc(nl + cl + 2);
  if (q == NULL) return NULL;
  snprintf(q, nl + cl + 2, "%s%s%s", nq ? nq : "", nl && cl ? "&" : "",
           c->conn_query ? c->conn_query : "");
  return q;
}

static int do_publish(rtmp_conn_t *c, char *path, uint32_t sid);
static int do_play(rtmp_conn_t *c);

/* admit_refused answers a refused publish or play in the terms RTMP
 * clients understand, logs it with the client address (never the query)
 * and closes once the answer is out. A publish's |path| is freed. */
static int admit_refused(rtmp_conn_t *c, int action, char *path, uint32_t sid, int status,
                         const char *reason) {
  char q[128], desc[256];
  if (reason == NULL) reason = "refused";
  log_quote(path, q, sizeof(q));
  if (action == DP_ADMIT_PUBLISH) {
    snprintf(desc, sizeof(desc), "Publish refused: %s (%d).", reason, status);
    send_status(c, sid, "error", "NetStream.Publish.BadName", desc);
    conn_log(c, LOG_WARN, "publish %s refused: %d %s", q, status, reason);
    free(path);
  } else {
    snprintf(desc, sizeof(desc), "Play refused: %s (%d).", reason, status);
    send_status(c, c->play_sid, "error", "NetStream.Play.Failed", desc);
    conn_log(c, LOG_WARN, "play %s refused: %d %s", q, status, reason);
  }
  c->srv->st.admit_refused++;
  c->closing = 1;
  return out_check(c);
}

static int admit_verdict(rtmp_conn_t *c, int action, char *path, uint32_t sid, int allow,
                         int status, const char *reason) {
  if (!allow) return admit_refused(c, action, path, sid, status, reason);
  return action == DP_ADMIT_PUBLISH ? do_publish(c, path, sid) : do_play(c);
}

/* admit_done takes a verdict that was pending: reading resumes. */
static void admit_done(void *arg, int allow, int status, const char *reason) {
  rtmp_conn_t *c = arg;
  char *path = c->admit_path;
  c->admit_path = NULL;
  c->admit_pending = NULL;
  if (c->dead) {
    free(path);
    return;
  }
  if (c->admit_action == DP_ADMIT_PLAY) path = c->play_path;
  admit_verdict(c, c->admit_action, path, c->admit_sid, allow, status, reason);
  if (c->dead) return;
  ev_io_start(c->srv->loop, &c->rio);
  conn_flush(c);
}

/* admit_start asks admission about a publish (|path| owned) or a play
 * (the path is c->play_path; |path| is it). */
static int admit_start(rtmp_conn_t *c, int action, char *path, const char *name, uint32_t sid) {
  rtmp_server_t *s = c->srv;
  char *query = query_of(c, name);
  dp_admit_req r = {action, path, query, "rtmp", c->addr};
  int status = 403;
  const char *reason = NULL;
  void *pending = NULL;
  int v = s->admit->check(s->admit_ud, &r, admit_done, c, &pending, &status, &reason);
  free(query);
  if (v == DP_ADMIT_PENDING) {
    /* Nothing more is consumed until the verdict (conn_read_cb): a
     * publisher's media waits in its socket. */
    c->admit_pending = pending;
    c->admit_action = action;
    c->admit_path = action == DP_ADMIT_PUBLISH ? path : NULL;
    c->admit_sid = sid;
    return 0;
  }
  return admit_verdict(c, action, path, sid, v == DP_ADMIT_ALLOW, status, reason);
}

static int cmd_publish(rtmp_conn_t *c, const amf_value_t *args, uint32_t sid) {
  if (!c->connected) return conn_fail(c, "publish without connect");
  if (c->pub) return conn_fail(c, "second publish on one connection");
  const char *name = amf_str(amf_at(args, 3));
  if (name == NULL) return conn_fail(c, "publish without a stream name");
  char *path = make_path(c, name);
  if (path == NULL) return conn_fail(c, "out of memory");
  char q[128];
  if (!hub_path_ok(path)) {
    send_status(c, sid, "error", "NetStream.Publish.BadName", "Invalid stream name.");
    conn_log(c, LOG_WARN, "publish refused: invalid path \"%s\"", log_quote(path, q, sizeof(q)));
    free(path);
    c->closing = 1;
    return out_check(c);
  }
  if (c->srv->admit) return admit_start(c, DP_ADMIT_PUBLISH, path, name, sid);
  return do_publish(c, path, sid);
}

/* do_publish attaches the connection to the hub as the publisher of
 * |path| (owned from here). */
static int do_publish(rtmp_conn_t *c, char *path, uint32_t sid) {
  char q[128];
  int err = 0;
  hub_stream_t *st = hub_publish(c->srv->hub, path, &err);
  if (st == NULL) {
    if (err == HUB_EBUSY) {
      send_status(c, sid, "error", "NetStream.Publish.BadName", "Stream already publishing.");
      conn_log(c, LOG_WARN, "publish %s refused: already publishing", log_quote(path, q, sizeof(q)));
    } else if (err == HUB_ELIMIT) {
      send_status(c, sid, "error", "NetStream.Publish.Rejected", "Too many streams.");
      conn_log(c, LOG_WARN, "publish %s refused: stream limit reached", log_quote(path, q, sizeof(q)));
    } else {
      send_status(c, sid, "error", "NetStream.Publish.BadName", "Publish refused.");
      conn_log(c, LOG_WARN, "publish %s refused (%d)", log_quote(path, q, sizeof(q)), err);
    }
    free(path);
    c->closing = 1;
    return out_check(c);
  }
  free(c->pub_path);
  c->pub_path = path;
  c->pub = st;
  c->pub_sid = sid;
  c->pub_admitted = c->srv->admit != NULL;
  c->srv->st.publishers++;
  conn_register(c, &c->pub_ent, CONNREG_PUBLISHER, path);
  /* Now it may send what media needs: a keyframe up to max_msg, within
   * the server's budget. */
  rtmp_reader_set_bound(&c->rd, rtmp_reader_default_bound(&c->rd));
  char desc[1200];
  snprintf(desc, sizeof(desc), "%s is now published.", path);
  rtmp_put_user_control(&c->wr, &c->out, RTMP_UC_STREAM_BEGIN, sid);
  send_status(c, sid, "status", "NetStream.Publish.Start", desc);
  conn_log(c, LOG_INFO, "publishing %s", log_quote(path, q, sizeof(q)));
  return out_check(c);
}

static int cmd_play(rtmp_conn_t *c, const amf_value_t *args, uint32_t sid) {
  if (!c->connected) return conn_fail(c, "play without connect");
  if (c->sub || c->play_path) return conn_fail(c, "second play on one connection");
  const char *name = amf_str(amf_at(args, 3));
  if (name == NULL) return conn_fail(c, "play without a stream name");
  char *path = make_path(c, name);
  if (path == NULL) return conn_fail(c, "out of memory");
  c->play_path = path;
  c->play_sid = sid ? sid : 1;
  if (!hub_path_ok(path)) {
    char q[128];
    send_status(c, c->play_sid, "error", "NetStream.Play.StreamNotFound", "Invalid stream name.");
    conn_log(c, LOG_WARN, "play refused: invalid path \"%s\"", log_quote(path, q, sizeof(q)));
    c->closing = 1;
    return out_check(c);
  }
  if (c->srv->admit) return admit_start(c, DP_ADMIT_PLAY, path, name, c->play_sid);
  return do_play(c);
}

/* do_play subscribes the connection to c->play_path. */
static int do_play(rtmp_conn_t *c) {
  /* The limits after admission: a pending check holds no place. */
  if (play_limited(c, c->play_path)) return out_check(c);
  /* Play.Start is sent with the first frames (sub_on_frames), so a stream
   * that never appears gets StreamNotFound, not Start then silence. */
  c->play_admitted = c->srv->admit != NULL;
  c->sub = hub_subscribe(c->srv->hub, c->play_path, &sub_ops, c);
  if (c->sub == NULL) return conn_fail(c, "out of memory");
  hub_sub_set_kind(c->sub, HUB_SUB_PLAYER_RTMP);
  conn_register(c, &c->play_ent, CONNREG_PLAYER, c->play_path);
  return 0;
}

static int on_command(rtmp_conn_t *c, const rtmp_msg_t *m) {
  const uint8_t *body = m->data;
  size_t len = m->len;
  if (m->type == RTMP_MSG_COMMAND_AMF3 && len > 0 && body[0] == 0) {
    body++;
    len--;
  }
  amf_limits_t lim = {AMF_MAX_DEPTH, 4096, len};
  amf_value_t *args = NULL;
  int rc = amf_decode_list(body, len, &lim, &args);
  if (rc) {
    const char *why = rc == AMF_EDEPTH ? "nested too deep" : rc == AMF_ECOUNT ? "too many values"
                      : rc == AMF_ETYPE ? "unsupported type" : "truncated";
    return conn_fail(c, "bad AMF command (%s)", why);
  }
  const char *name = amf_str(amf_at(args, 0));
  double txn = 0;
  amf_num(amf_at(args, 1), &txn);
  if (name == NULL) {
    amf_free(args);
    return conn_fail(c, "command without a name");
  }
  rc = 0;
  if (strcmp(name, "connect") == 0) {
    rc = cmd_connect(c, args, txn);
  } else if (!c->connected) {
    char q[64];
    rc = conn_fail(c, "%s without connect", log_quote(name, q, sizeof(q)));
  } else if (strcmp(name, "createStream") == 0) {
    if (c->next_sid >= MAX_STREAM_IDS) rc = conn_fail(c, "too many createStream");
    else rc = cmd_result(c, txn, 1, ++c->next_sid);
  } else if (c->admit_pending && (strcmp(name, "publish") == 0 || strcmp(name, "play") == 0)) {
    rc = conn_fail(c, "%s while the previous one awaits admission", name);
  } else if (strcmp(name, "publish") == 0) {
    rc = cmd_publish(c, args, m->stream_id);
  } else if (strcmp(name, "play") == 0) {
    rc = cmd_play(c, args, m->stream_id);
  } else if (strcmp(name, "FCUnpublish") == 0) {
    stop_publish(c);
  } else if (strcmp(name, "deleteStream") == 0) {
    double sid = -1;
    amf_num(amf_at(args, 3), &sid);
    if (c->pub && sid == c->pub_sid) stop_publish(c);
    if (c->sub && sid == c->play_sid) stop_play(c);
  } else if (strcmp(name, "closeStream") == 0) {
    if (c->pub && m->stream_id == c->pub_sid) stop_publish(c);
    if (c->sub && m->stream_id == c->play_sid) stop_play(c);
  } else if (strcmp(name, "getStreamLength") == 0) {
    rc = cmd_result(c, txn, 1, 0);
  } else if (strcmp(name, "releaseStream") == 0 || strcmp(name, "FCPublish") == 0) {
    /* Nothing to release: a busy path is refused at publish. */
  } else {
    /* FCSubscribe, _checkbw, receiveAudio, pause, ...: not needed for live. */
    c->srv->st.ignored_cmds++;
    char q[64];
    log_debug("rtmp", "[rtmp %s] ignored command %s", c->peer, log_quote(name, q, sizeof(q)));
  }
  amf_free(args);
  return rc;
}

static int on_data(rtmp_conn_t *c, const rtmp_msg_t *m) {
  const uint8_t *body = m->data;
  size_t len = m->len;
  if (m->type == RTMP_MSG_DATA_AMF3 && len > 0 && body[0] == 0) {
    body++;
    len--;
  }
  if (c->pub == NULL || m->stream_id != c->pub_sid) {
    c->srv->st.ignored_cmds++;
    return 0;
  }
  /* Validate before it reaches every player: bounded AMF, a name first. */
  amf_limits_t lim = {AMF_MAX_DEPTH, 65536, len};
  amf_value_t *v = NULL;
  int rc = amf_decode_list(body, len, &lim, &v);
  const char *name = rc == 0 ? amf_str(amf_at(v, 0)) : NULL;
  amf_free(v);
  if (name == NULL) return conn_fail(c, "bad AMF data message (%d)", rc);
  hub_frame_t *f = hub_frame_new(HUB_SCRIPT, m->ts, body, len);
  if (f == NULL) return conn_fail(c, "out of memory for a data message");
  c->srv->st.frames_in++;
  hub_push(c->pub, f);
  return 0;
}

/* Audio and video bodies are assembled by the reader straight into hub
 * frames (no copy between the chunk stream and the hub). */
static uint8_t *av_alloc(void *arg, uint8_t type, uint32_t ts, uint32_t len, void **owner) {
  (void)arg;
  hub_frame_t *f = hub_frame_alloc(type, ts, len);
  *owner = f;
  return f ? f->data : NULL;
}

static void av_release(void *arg, void *owner) {
  (void)arg;
  hub_frame_unref(owner);
}

static int on_media(rtmp_conn_t *c, const rtmp_msg_t *m) {
  hub_frame_t *f = m->owned; /* ours now, when the reader built it */
  if (c->pub == NULL) {
    hub_frame_unref(f);
    /* Sent before the verdict, in the same read: dropped (a refused
     * publisher's media must not reach the hub; an admitted one starts
     * with its next keyframe). */
    if (c->admit_pending) return 0;
    return conn_fail(c, "media without publish");
  }
  if (m->stream_id != c->pub_sid || m->len == 0) { /* empty tags carry nothing */
    hub_frame_unref(f);
    return 0;
  }
  if (f) hub_frame_classify(f);
  else f = hub_frame_new(m->type, m->ts, m->data, m->len);
  if (f == NULL) return conn_fail(c, "out of memory for a frame");
  c->srv->st.frames_in++;
  hub_push(c->pub, f);
  return 0;
}

static int on_message(void *arg, const rtmp_msg_t *m) {
  rtmp_conn_t *c = arg;
  if (c->dead) {
    hub_frame_unref(m->owned);
    return ERR_LOGGED;
  }
  switch (m->type) {
  case RTMP_MSG_AUDIO:
  case RTMP_MSG_VIDEO:
    return on_media(c, m);
  case RTMP_MSG_COMMAND_AMF0:
  case RTMP_MSG_COMMAND_AMF3:
    return on_command(c, m);
  case RTMP_MSG_DATA_AMF0:
  case RTMP_MSG_DATA_AMF3:
    return on_data(c, m);
  case RTMP_MSG_USER_CONTROL:
    if (m->len >= 6 && m->data[0] == 0 && m->data[1] == RTMP_UC_PING_REQUEST) {
      uint32_t v = (uint32_t)m->data[2] << 24 | (uint32_t)m->data[3] << 16 | (uint32_t)m->data[4] << 8 | m->data[5];
      rtmp_put_user_control(&c->wr, &c->out, RTMP_UC_PING_RESPONSE, v);
      return out_check(c);
    }
    return 0;
  case RTMP_MSG_SET_PEER_BW:
    return 0;
  default:
    c->srv->st.unknown_msgs++;
    log_debug("rtmp", "[rtmp %s] ignored message type %u", c->peer, m->type);
    return 0;
  }
}

/* ---------------------------------------------------------------- I/O */

static void conn_input(rtmp_conn_t *c, const uint8_t *p, size_t n) {
  if (c->hs) {
    ssize_t used = rtmp_hs_feed(c->hs, p, n);
    if (used < 0) {
      conn_fail(c, "%s", rtmp_errstr((int)used));
      return;
    }
    size_t ol;
    const uint8_t *o = rtmp_hs_output(c->hs, &ol);
    if (ol) {
      amf_put_raw(&c->out, o, ol);
      rtmp_hs_sent(c->hs, ol);
      want_write(c);
    }
    if (!rtmp_hs_done(c->hs)) return;
    if (c->hs->complex) c->srv->st.handshakes_digest++;
    else c->srv->st.handshakes_simple++;
    free(c->hs);
    c->hs = NULL;
    p += used;
    n -= (size_t)used;
    if (n == 0) return;
  }
  int rc = rtmp_reader_feed(&c->rd, p, n, on_message, c);
  if (c->trim_due) {
    rtmp_reader_trim(&c->rd);
    c->trim_due = 0;
  }
  if (rc == ERR_LOGGED || c->dead) return;
  if (rc == RTMP_EPENDING || rc == RTMP_EBUDGET) {
    conn_limit(c, rc);
    return;
  }
  if (rc) {
    conn_fail(c, "%s", rtmp_errstr(rc));
    return;
  }
  uint32_t seq;
  if (rtmp_reader_ack_due(&c->rd, &seq)) {
    rtmp_put_u32_msg(&c->wr, &c->out, RTMP_MSG_ACK, seq);
    out_check(c);
  }
}

static void conn_read_cb(struct ev_loop *loop, ev_io *w, int revents) {
  rtmp_conn_t *c = w->data;
  rtmp_server_t *s = c->srv;
  (void)loop;
  (void)revents;
  if (c->admit_pending) {
    /* Nothing is consumed until the verdict; only a peer that left is
     * noticed (its check is cancelled). Data waiting: stop watching until
     * the verdict, or this would spin. */
    uint8_t b;
    ssize_t n = recv(c->fd, &b, 1, MSG_PEEK);
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n > 0) {
      ev_io_stop(s->loop, &c->rio);
      return;
    }
    conn_log(c, LOG_INFO, "closed by the peer while awaiting admission");
    conn_close(c);
    return;
  }
  for (int round = 0; round < READ_ROUNDS && !c->dead && !c->admit_pending; round++) {
    ssize_t n = recv(c->fd, s->rbuf, sizeof(s->rbuf), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      conn_log(c, LOG_INFO, "read failed: %s", strerror(errno));
      conn_close(c);
      return;
    }
    if (n == 0) {
      if (c->hs && (c->hs->have || c->hs->state)) {
        s->st.protocol_errors++;
        conn_log(c, LOG_WARN, "truncated handshake");
      } else {
        log_debug("rtmp", "[rtmp %s] closed by peer", c->peer);
      }
      conn_close(c);
      return;
    }
    s->st.bytes_in += (uint64_t)n;
    c->rx += (uint64_t)n;
    c->last_rx = ev_now(s->loop);
    conn_input(c, s->rbuf, (size_t)n);
    if ((size_t)n < sizeof(s->rbuf)) break;
  }
  if (c->dead) {
    /* Try to deliver what was queued (an error onStatus) without waiting. */
    return;
  }
  conn_flush(c);
}

static void conn_write_cb(struct ev_loop *loop, ev_io *w, int revents) {
  (void)loop;
  (void)revents;
  conn_flush(w->data);
}

static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  rtmp_conn_t *c = w->data;
  rtmp_server_t *s = c->srv;
  (void)revents;
  if (c->dead) {
    conn_close(c);
    return;
  }
  double now = ev_now(loop), left;
  if (c->hs) {
    left = c->started + s->cfg.handshake_timeout - now;
    if (left <= 0) {
      s->st.timeouts++;
      conn_log(c, LOG_WARN, "handshake timeout (%g s)", s->cfg.handshake_timeout);
      conn_close(c);
      return;
    }
  } else if (c->sub) {
    left = s->cfg.idle_timeout;   /* players may stay silent; the hub bounds them */
  } else {
    left = c->last_rx + s->cfg.idle_timeout - now;
    if (left <= 0) {
      s->st.timeouts++;
      conn_log(c, LOG_WARN, "idle timeout (%g s without input)", s->cfg.idle_timeout);
      conn_close(c);
      return;
    }
  }
  ev_timer_set(w, left, 0.);
  ev_timer_start(loop, w);
}

static void conn_close(rtmp_conn_t *c) {
  rtmp_server_t *s = c->srv;
  ev_io_stop(s->loop, &c->rio);
  ev_io_stop(s->loop, &c->wio);
  ev_timer_stop(s->loop, &c->timer);
  if (c->dead && out_pending(c) && c->hs == NULL) {
    /* Best effort: the reason (an onStatus error) may still fit the socket. */
    (void)write_out(c);
  }
  if (c->admit_pending) {
    s->admit->cancel(s->admit_ud, c->admit_pending);
    c->admit_pending = NULL;
  }
  stop_publish(c);
  stop_play(c);
  while (c->qn > 0) hub_frame_unref(c->q[--c->qn].f);
  close(c->fd);
  free(c->admit_path);
  free(c->conn_query);
  free(c->hs);
  rtmp_reader_free(&c->rd);
  amf_buf_free(&c->out);
  free(c->app);
  free(c->pub_path);
  free(c->play_path);
  if (c->prev) c->prev->next = c->next;
  else s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  s->st.active--;
  free(c);
}


static void accept_cb(struct ev_loop *loop, ev_io *w, int revents) {
  rtmp_server_t *s = w->data;
  (void)revents;
  for (int i = 0; i < 64; i++) {
    int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        log_warn("rtmp", "accept paused for 0.5 s: %s", strerror(errno));
        ev_io_stop(loop, &s->lio);
        ev_timer_start(loop, &s->retry);
      }
      return;
    }
    rtmp_conn_t *c = calloc(1, sizeof(*c));
    char peer[64];
    net_peer_name(fd, peer, sizeof(peer));
    if (c == NULL || s->st.active >= s->cfg.max_conns) {
      rtmp_conn_t tmp;
      memset(&tmp, 0, sizeof(tmp));
      tmp.srv = s;
      snprintf(tmp.peer, sizeof(tmp.peer), "%s", peer);
      s->st.refused++;
      conn_log(&tmp, LOG_WARN, "refused: %s", c ? "connection limit reached" : "out of memory");
      if (c) {
        /* An immediate RST, not a half-open connection left to time out. */
        struct linger lg = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
      }
      close(fd);
      free(c);
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->srv = s;
    c->fd = fd;
    memcpy(c->peer, peer, sizeof(peer));
    dp_admit_addr(peer, c->addr, sizeof(c->addr));
    c->hs = malloc(sizeof(*c->hs));
    if (c->hs == NULL) {
      close(fd);
      free(c);
      continue;
    }
    rtmp_hs_init(c->hs, RTMP_HS_SERVER, 0);
    rtmp_reader_init(&c->rd, s->cfg.max_msg, s->cfg.max_data_msg);
    rtmp_reader_set_bound(&c->rd, s->cfg.max_pending);
    rtmp_reader_set_budget(&c->rd, &s->budget);
    rtmp_reader_set_alloc(&c->rd, av_alloc, av_release, NULL);
    rtmp_writer_init(&c->wr);
    amf_buf_init(&c->out);
    c->out.max = s->cfg.max_out;
    c->started = c->last_rx = ev_now(loop);
    ev_io_init(&c->rio, conn_read_cb, fd, EV_READ);
    ev_io_init(&c->wio, conn_write_cb, fd, EV_WRITE);
    ev_timer_init(&c->timer, conn_timer_cb, s->cfg.handshake_timeout, 0.);
    c->rio.data = c->wio.data = c->timer.data = c;
    ev_io_start(loop, &c->rio);
    ev_timer_start(loop, &c->timer);
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->st.accepted++;
    s->st.active++;
    log_debug("rtmp", "[rtmp %s] accepted", c->peer);
  }
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  rtmp_server_t *s = w->data;
  (void)revents;
  ev_io_start(loop, &s->lio);
}

rtmp_server_t *rtmp_server_new(struct ev_loop *loop, hub_t *hub, int listen_fd,
                               const rtmp_server_config_t *cfg) {
  if (loop == NULL || hub == NULL || listen_fd < 0) return NULL;
  rtmp_server_t *s = calloc(1, sizeof(*s));
  if (s == NULL) return NULL;
  if (cfg) s->cfg = *cfg;
  if (s->cfg.max_conns == 0) s->cfg.max_conns = 1000;
  if (s->cfg.chunk_size == 0) s->cfg.chunk_size = 4096;
  if (s->cfg.chunk_size > RTMP_MAX_CHUNK_SIZE) s->cfg.chunk_size = RTMP_MAX_CHUNK_SIZE;
  if (s->cfg.max_msg == 0 || s->cfg.max_msg > RTMP_DEFAULT_MAX_MSG) s->cfg.max_msg = RTMP_DEFAULT_MAX_MSG;
  if (s->cfg.max_data_msg == 0) s->cfg.max_data_msg = 1024 * 1024;
  if (s->cfg.window_ack == 0) s->cfg.window_ack = 2500000;
  if (s->cfg.handshake_timeout <= 0) s->cfg.handshake_timeout = 10;
  if (s->cfg.idle_timeout <= 0) s->cfg.idle_timeout = 60;
  if (s->cfg.max_out == 0) s->cfg.max_out = 64 * 1024;
  if (s->cfg.max_pending == 0) s->cfg.max_pending = 64 * 1024;
  if (s->cfg.ingest_budget == 0) s->cfg.ingest_budget = (size_t)256 << 20;
  s->budget.max = s->cfg.ingest_budget;
  s->loop = loop;
  s->hub = hub;
  s->lfd = listen_fd;
  s->log_tokens = 20;
  s->log_t = ev_now(loop);
  int fl = fcntl(listen_fd, F_GETFL);
  if (fl < 0 || fcntl(listen_fd, F_SETFL, fl | O_NONBLOCK) < 0) {
    free(s);
    return NULL;
  }
  ev_io_init(&s->lio, accept_cb, listen_fd, EV_READ);
  s->lio.data = s;
  ev_timer_init(&s->retry, retry_cb, 0.5, 0.);
  s->retry.data = s;
  ev_io_start(loop, &s->lio);
  return s;
}

void rtmp_server_free(rtmp_server_t *s) {
  if (s == NULL) return;
  ev_io_stop(s->loop, &s->lio);
  ev_timer_stop(s->loop, &s->retry);
  while (s->conns) conn_close(s->conns);
  if (s->lfd >= 0) close(s->lfd);
  free(s);
}

void rtmp_server_drain(rtmp_server_t *s) {
  if (s == NULL || s->lfd < 0) return;
  ev_io_stop(s->loop, &s->lio);
  ev_timer_stop(s->loop, &s->retry);
  close(s->lfd);
  s->lfd = -1;
  for (rtmp_conn_t *c = s->conns; c; c = c->next) {
    if (c->sub != NULL || c->dead || c->closing) continue;
    if (c->pub) conn_log(c, LOG_INFO, "publisher closed: the server shuts down");
    conn_schedule_close(c);
  }
}

void rtmp_server_get_stats(const rtmp_server_t *s, rtmp_server_stats_t *out) {
  *out = s->st;
  out->ingest_held = s->budget.used;
}

void rtmp_server_set_admit(rtmp_server_t *s, const dp_admit_ops *ops, void *ud) {
  s->admit = ops && ops->check ? ops : NULL;
  s->admit_ud = ud;
}
