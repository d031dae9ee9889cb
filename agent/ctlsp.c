/* SP REQ over TCP or TLS on the loop: see ctlsp.h. */
#define _GNU_SOURCE
#include "ctlsp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/crypto.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ctl_urls.h"
#include "spwire.h"

enum { ST_CONNECTING = 0, ST_HANDSHAKE, ST_SP, ST_UP, ST_DOWN };

#define READ_BUF 16384
#define RECORD_MAX 16384  /* written per record call at most */
#define RETRIES 64        /* harmless returns in a row (warnings, post-handshake messages) */

struct ctlsp {
  struct ev_loop *loop;
  ctlsp_opts_t o;                /* url and servername: owned copies */
  char host[256], port[8];
  int fd;
  int state;
  int tls;                       /* tls+tcp:// */
  ev_io rio, wio;
  ev_timer down_timer;           /* a failure found outside a callback: on_down from here */
  gnutls_session_t s;
  int offered;                   /* a verified session was offered */
  int verified;                  /* this connection's controller is verified */
  int ticket_done;               /* the session is stored (or need not be) */
  int pull_blocked;              /* the last pull found nothing to read */
  int send_pending;              /* a record send returned AGAIN: call again with NULL, 0 */
  spwire_rx_t rx;
  uint8_t *out;                  /* bytes to write: header, then requests */
  size_t outlen, outoff, outcap;
  uint64_t queued, written;      /* bytes queued / written since the start */
  ctlsp_req_t *reqs;             /* in flight */
  uint32_t next_id;
  int in_cb;                     /* depth of our callbacks on the stack */
  int closed;                    /* ctlsp_close ran: free when in_cb falls to 0 */
  char why[CTLSP_WHY_MAX];
};

/* ---- requests ----------------------------------------------------------- */

static void req_unlink(ctlsp_req_t *r) {
  ctlsp_t *sp = r->sp;
  if (sp == NULL) return;
  if (r->prev) r->prev->next = r->next;
  else sp->reqs = r->next;
  if (r->next) r->next->prev = r->prev;
  r->prev = r->next = NULL;
  r->sp = NULL;
}

/* deliver ends |r|'s exchange with |rv| and calls its owner. */
static void deliver(ctlsp_req_t *r, int rv, const uint8_t *body, size_t len) {
  req_unlink(r);
  ev_timer_stop(r->loop, &r->timer);
  r->busy = 0;
  r->cb(r, rv, body, len, r->arg);
}

static void req_timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  ctlsp_req_t *r = w->data;
  (void)loop;
  (void)revents;
  if (!r->busy) return;
  /* Still on its connection: the deadline passed. Otherwise the outcome
   * was set when the connection ended. */
  deliver(r, r->sp ? CTLSP_ETIMEDOUT : r->result, NULL, 0);
}

void ctlsp_req_init(ctlsp_req_t *r, struct ev_loop *loop, ctlsp_reply_fn cb, void *arg) {
  memset(r, 0, sizeof(*r));
  r->cb = cb;
  r->arg = arg;
  r->loop = loop;
  ev_timer_init(&r->timer, req_timer_cb, 0., 0.);
  r->timer.data = r;
}

void ctlsp_req_cancel(ctlsp_req_t *r) {
  if (r == NULL || r->loop == NULL) return;
  req_unlink(r);
  ev_timer_stop(r->loop, &r->timer);
  r->busy = 0;
}

/* orphan_all hands every request in flight its |rv| through its timer, so
 * no owner's callback runs inside the caller's. */
static void orphan_all(ctlsp_t *sp, int rv) {
  while (sp->reqs) {
    ctlsp_req_t *r = sp->reqs;
    req_unlink(r);
    r->result = rv;
    ev_timer_stop(r->loop, &r->timer);
    ev_timer_set(&r->timer, 0., 0.);
    ev_timer_start(r->loop, &r->timer);
  }
}

/* ---- the connection ----------------------------------------------------- */

static void teardown(ctlsp_t *sp) {
  ev_io_stop(sp->loop, &sp->rio);
  ev_io_stop(sp->loop, &sp->wio);
  ev_timer_stop(sp->loop, &sp->down_timer);
  if (sp->s) {
    /* close_notify, best effort: never waits (non-blocking socket). */
    if (sp->state == ST_SP || sp->state == ST_UP) (void)gnutls_bye(sp->s, GNUTLS_SHUT_WR);
    gnutls_deinit(sp->s);
    sp->s = NULL;
  }
  if (sp->fd >= 0) close(sp->fd);
  sp->fd = -1;
  spwire_rx_free(&sp->rx);
}

static void sp_free(ctlsp_t *sp) {
  teardown(sp);
  free(sp->out);
  free((char *)sp->o.url);
  free((char *)sp->o.servername);
  free(sp);
}

void ctlsp_close(ctlsp_t *sp) {
  if (sp == NULL || sp->closed) return;
  sp->closed = 1;
  orphan_all(sp, CTLSP_ECLOSED);
  teardown(sp);
  sp->state = ST_DOWN;
  if (sp->in_cb == 0) sp_free(sp);
}

const char *ctlsp_why(const ctlsp_t *sp) { return sp ? sp->why : ""; }

int ctlsp_is_up(const ctlsp_t *sp) { return sp && sp->state == ST_UP; }

/* enter/leave bracket every callback of ours: a close inside the owner's
 * callback frees the connection only once the stack is ours again. leave
 * returns 1 when |sp| is gone. */
static void enter(ctlsp_t *sp) { sp->in_cb++; }

static int leave(ctlsp_t *sp) {
  if (--sp->in_cb == 0 && sp->closed) {
    sp_free(sp);
    return 1;
  }
  return sp->closed;
}

/* go_down ends the connection for |why| and tells the owner; from inside
 * one of our callbacks (|now|) at once, else on the next loop turn. */
static void go_down(ctlsp_t *sp, int now, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void go_down(ctlsp_t *sp, int now, const char *fmt, ...) {
  va_list ap;
  if (sp->closed || sp->state == ST_DOWN) return;
  va_start(ap, fmt);
  vsnprintf(sp->why, sizeof(sp->why), fmt, ap);
  va_end(ap);
  teardown(sp);
  sp->state = ST_DOWN;
  if (!now) {
    ev_timer_set(&sp->down_timer, 0., 0.);
    ev_timer_start(sp->loop, &sp->down_timer);
    return;
  }
  char why[CTLSP_WHY_MAX];
  memcpy(why, sp->why, sizeof(why));
  if (sp->o.on_down) sp->o.on_down(sp, why, sp->o.arg);
  /* Whatever the owner did not take back now learns the connection ended. */
  if (!sp->closed) orphan_all(sp, CTLSP_ECLOSED);
}

static void down_timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  ctlsp_t *sp = w->data;
  char why[CTLSP_WHY_MAX];
  (void)loop;
  (void)revents;
  memcpy(why, sp->why, sizeof(why));
  enter(sp);
  if (sp->o.on_down) sp->o.on_down(sp, why, sp->o.arg);
  if (!sp->closed) orphan_all(sp, CTLSP_ECLOSED);
  leave(sp);
}

/* queue appends |n| bytes to the output. */
static int queue(ctlsp_t *sp, const void *a, size_t n) {
  if (sp->outoff > 0 && sp->outoff == sp->outlen && !sp->send_pending)
    sp->outoff = sp->outlen = 0;
  if (sp->outlen + n > sp->outcap) {
    size_t cap = sp->outcap ? sp->outcap : 4096;
    while (cap < sp->outlen + n) cap *= 2;
    uint8_t *b = realloc(sp->out, cap);
    if (b == NULL) return -1;
    sp->out = b;
    sp->outcap = cap;
  }
  memcpy(sp->out + sp->outlen, a, n);
  sp->outlen += n;
  sp->queued += n;
  return 0;
}

/* mark_sent notes the requests whose last byte went out. */
static void mark_sent(ctlsp_t *sp) {
  for (ctlsp_req_t *r = sp->reqs; r; r = r->next)
    if (!r->sent && sp->written >= r->end) r->sent = 1;
}

/* flush writes what it can; 0, or -1 when the connection went down. */
static int flush(ctlsp_t *sp) {
  if (sp->state != ST_SP && sp->state != ST_UP) return 0;
  while (sp->outoff < sp->outlen || sp->send_pending) {
    ssize_t n;
    if (sp->tls) {
      size_t want = sp->outlen - sp->outoff;
      if (want > RECORD_MAX) want = RECORD_MAX;
      n = sp->send_pending ? gnutls_record_send(sp->s, NULL, 0)
                           : gnutls_record_send(sp->s, sp->out + sp->outoff, want);
      if (n == GNUTLS_E_AGAIN) {
        sp->send_pending = 1;
        break;
      }
      if (n == GNUTLS_E_INTERRUPTED) continue;
      sp->send_pending = 0;
      if (n < 0) {
        go_down(sp, 1, "connection to the controller lost: %s", gnutls_strerror((int)n));
        return -1;
      }
    } else {
      n = send(sp->fd, sp->out + sp->outoff, sp->outlen - sp->outoff, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n < 0) {
        go_down(sp, 1, "connection to the controller lost: %s", strerror(errno));
        return -1;
      }
    }
    sp->outoff += (size_t)n;
    sp->written += (uint64_t)n;
  }
  mark_sent(sp);
  if (sp->outoff < sp->outlen || sp->send_pending) ev_io_start(sp->loop, &sp->wio);
  else ev_io_stop(sp->loop, &sp->wio);
  return 0;
}

int ctlsp_send(ctlsp_t *sp, ctlsp_req_t *r, const void *body, size_t len, int timeout_ms) {
  uint8_t hdr[SPWIRE_LEN_LEN + SPWIRE_ID_LEN];
  if (sp == NULL || sp->closed || sp->state == ST_DOWN) return CTLSP_ECLOSED;
  ctlsp_req_cancel(r);
  r->id = (sp->next_id++ & 0x7fffffffu) | SPWIRE_ID_BIT;
  spwire_frame_head(hdr, r->id, len);
  if (queue(sp, hdr, sizeof(hdr)) != 0 || queue(sp, body, len) != 0) return CTLSP_ENOMEM;
  r->end = sp->queued;
  r->sent = 0;
  r->busy = 1;
  r->result = 0;
  r->sp = sp;
  r->prev = NULL;
  r->next = sp->reqs;
  if (sp->reqs) sp->reqs->prev = r;
  sp->reqs = r;
  ev_timer_set(&r->timer, timeout_ms > 0 ? timeout_ms / 1000.0 : 0.001, 0.);
  ev_timer_start(r->loop, &r->timer);
  /* Written on the next write readiness: never a callback from here. */
  if (sp->state == ST_SP || sp->state == ST_UP) ev_io_start(sp->loop, &sp->wio);
  return 0;
}

/* reply hands a message to the request it answers; an unknown id is a
 * reply to a request given up (timed out, cancelled) and is dropped. */
static void reply(ctlsp_t *sp, uint32_t id, const uint8_t *body, size_t len) {
  for (ctlsp_req_t *r = sp->reqs; r; r = r->next)
    if (r->id == id) {
      deliver(r, 0, body, len);
      return;
    }
}

/* take feeds |n| bytes read to the SP parser; -1 when |sp| is down or closed. */
static int take(ctlsp_t *sp, const uint8_t *buf, size_t n) {
  size_t off = 0;
  while (off < n) {
    size_t used = 0, blen = 0;
    uint32_t id = 0;
    uint8_t *body = NULL;
    int rc = spwire_rx_feed(&sp->rx, buf + off, n - off, &used, &id, &body, &blen);
    off += used;
    if (sp->state == ST_SP && spwire_rx_header_done(&sp->rx)) {
      sp->state = ST_UP;
      if (sp->o.on_up) sp->o.on_up(sp, sp->o.arg);
      if (sp->closed || sp->state != ST_UP) {
        free(body);
        return -1;
      }
    }
    if (rc == SPWIRE_MESSAGE) {
      reply(sp, id, body, blen);
      free(body);
      if (sp->closed || sp->state != ST_UP) return -1;
      continue;
    }
    if (rc < 0) {
      go_down(sp, 1, "bad message from the controller: %s",
              rc == SPWIRE_BAD_HEADER ? "not an SP REP socket (header)"
              : rc == SPWIRE_TOO_LONG ? "a message over the size bound"
              : rc == SPWIRE_BAD_ID   ? "a reply without a request id"
                                      : "out of memory");
      return -1;
    }
    if (used == 0) break;
  }
  return 0;
}

static ssize_t tls_pull(gnutls_transport_ptr_t p, void *buf, size_t len) {
  ctlsp_t *sp = p;
  ssize_t n = recv(sp->fd, buf, len, 0);
  sp->pull_blocked = n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  if (n < 0) gnutls_transport_set_errno(sp->s, errno);
  return n;
}

static ssize_t tls_push(gnutls_transport_ptr_t p, const void *buf, size_t len) {
  ctlsp_t *sp = p;
  ssize_t n = send(sp->fd, buf, len, MSG_NOSIGNAL);
  if (n < 0) gnutls_transport_set_errno(sp->s, errno);
  return n;
}

static void keep_ticket(ctlsp_t *sp) {
  if (sp->ticket_done) return;
  if (!sp->verified || sp->o.tls_key == 0) {
    sp->ticket_done = 1;
    return;
  }
  sp->ticket_done = ctltls_keep(sp->s, sp->o.tls_key, sp->o.servername, sp->o.trust_fp);
}

/* readable reads until the socket is empty; -1 when |sp| went down. */
static int readable(ctlsp_t *sp) {
  uint8_t buf[READ_BUF];
  for (int k = 0; k < RETRIES;) {
    ssize_t n;
    if (sp->tls) {
      sp->pull_blocked = 0;
      n = gnutls_record_recv(sp->s, buf, sizeof(buf));
      keep_ticket(sp);
      if (n == GNUTLS_E_AGAIN) {
        /* GnuTLS answers AGAIN after a post-handshake message (the ticket)
         * though records behind it may sit in its buffer: only a pull that
         * found nothing means waiting. */
        if (sp->pull_blocked) return 0;
        k++;
        continue;
      }
      if (n == GNUTLS_E_INTERRUPTED || n == GNUTLS_E_WARNING_ALERT_RECEIVED) {
        k++;
        continue;
      }
      if (n < 0) {
        go_down(sp, 1, "connection to the controller lost: %s", gnutls_strerror((int)n));
        return -1;
      }
    } else {
      n = recv(sp->fd, buf, sizeof(buf), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
      if (n < 0) {
        go_down(sp, 1, "connection to the controller lost: %s", strerror(errno));
        return -1;
      }
    }
    if (n == 0) {
      go_down(sp, 1, "connection to the controller lost: closed by the controller");
      return -1;
    }
    k = 0;
    if (take(sp, buf, (size_t)n) != 0) return -1;
  }
  return 0;
}

/* verify_why writes why the controller's certificate was refused. */
static void verify_why(ctlsp_t *sp, char *out, size_t len) {
  gnutls_datum_t d = {NULL, 0};
  unsigned status = gnutls_session_get_verify_cert_status(sp->s);
  if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &d, 0) == 0) {
    size_t n = strlen((const char *)d.data);
    while (n > 0 && d.data[n - 1] == ' ') d.data[--n] = '\0';
    snprintf(out, len, "%s", (const char *)d.data);
    gnutls_free(d.data);
  } else {
    snprintf(out, len, "status 0x%x", status);
  }
}

/* handshake advances the TLS handshake; -1 when |sp| went down. */
static int handshake(ctlsp_t *sp) {
  for (int k = 0; k < RETRIES; k++) {
    int rc = gnutls_handshake(sp->s);
    if (rc == 0) {
      int resumed = gnutls_session_is_resumed(sp->s) != 0;
      ctltls_count(resumed);
      /* GnuTLS checked chain and name in a full handshake; a resumed one
       * is as verified as the session it resumed (only verified ones are
       * offered). */
      sp->verified = sp->o.verify && (!resumed || sp->offered);
      keep_ticket(sp);
      sp->state = ST_SP;
      return flush(sp);
    }
    if (rc == GNUTLS_E_AGAIN) {
      if (gnutls_record_get_direction(sp->s)) ev_io_start(sp->loop, &sp->wio);
      else ev_io_stop(sp->loop, &sp->wio);
      return 0;
    }
    if (rc == GNUTLS_E_INTERRUPTED || rc == GNUTLS_E_WARNING_ALERT_RECEIVED) continue;
    if (rc == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
      char v[200];
      verify_why(sp, v, sizeof(v));
      go_down(sp, 1, "the controller's certificate was refused: %s (controller.ca, "
              "controller.servername '%s')", v, sp->o.servername ? sp->o.servername : "");
    } else if (rc == GNUTLS_E_PREMATURE_TERMINATION || rc == GNUTLS_E_PULL_ERROR ||
               rc == GNUTLS_E_PUSH_ERROR) {
      go_down(sp, 1, "TLS handshake with %s:%s failed: the connection was closed", sp->host,
              sp->port);
    } else {
      go_down(sp, 1, "TLS handshake with %s:%s failed: %s", sp->host, sp->port,
              gnutls_strerror(rc));
    }
    return -1;
  }
  go_down(sp, 1, "TLS handshake with %s:%s failed: too many warnings", sp->host, sp->port);
  return -1;
}

/* connected finishes the TCP connect; -1 when |sp| went down. */
static int connected(ctlsp_t *sp) {
  int err = 0;
  socklen_t el = sizeof(err);
  if (getsockopt(sp->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0) err = errno;
  if (err != 0) {
    go_down(sp, 1, "cannot connect to %s:%s: %s", sp->host, sp->port, strerror(err));
    return -1;
  }
  if (!sp->tls) {
    sp->state = ST_SP;
    return flush(sp);
  }
  sp->state = ST_HANDSHAKE;
  return handshake(sp);
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents) {
  ctlsp_t *sp = w->data;
  (void)loop;
  enter(sp);
  if (sp->state == ST_CONNECTING) {
    if (connected(sp) != 0) goto out;
  } else if (sp->state == ST_HANDSHAKE) {
    if (handshake(sp) != 0) goto out;
  }
  /* Also right after the handshake: GnuTLS may hold records read with it. */
  (void)revents;
  if ((sp->state == ST_SP || sp->state == ST_UP) && readable(sp) != 0) goto out;
  if (sp->state == ST_SP || sp->state == ST_UP) flush(sp);
out:
  leave(sp);
}

static int tls_setup(ctlsp_t *sp, char *err, size_t errlen) {
  const ctlsp_opts_t *o = &sp->o;
  int rc;
  if (o->cred == NULL || o->prio == NULL) {
    snprintf(err, errlen, "no TLS credentials");
    return -1;
  }
  if ((rc = gnutls_init(&sp->s, GNUTLS_CLIENT | GNUTLS_NONBLOCK)) < 0 ||
      (rc = gnutls_priority_set(sp->s, o->prio)) < 0 ||
      (rc = gnutls_credentials_set(sp->s, GNUTLS_CRD_CERTIFICATE, o->cred)) < 0) {
    snprintf(err, errlen, "TLS set-up: %s", gnutls_strerror(rc));
    return -1;
  }
  if (o->servername && o->servername[0]) {
    /* GnuTLS sends no SNI for an IP address; the name is still checked. */
    gnutls_server_name_set(sp->s, GNUTLS_NAME_DNS, o->servername, strlen(o->servername));
  }
  if (o->verify) {
    gnutls_session_set_verify_cert(sp->s, o->servername, 0);
    /* Only for the same server name and trust: resuming skips the
     * certificate. Never on the unverified pin bootstrap. */
    if (o->trust_fp) sp->offered = ctltls_offer(sp->s, o->tls_key, o->servername, o->trust_fp);
  }
  gnutls_transport_set_ptr(sp->s, sp);
  gnutls_transport_set_pull_function(sp->s, tls_pull);
  gnutls_transport_set_push_function(sp->s, tls_push);
  return 0;
}

ctlsp_t *ctlsp_open(struct ev_loop *loop, const ctlsp_opts_t *o, char *err, size_t errlen) {
  struct sockaddr_storage ss;
  socklen_t sl;
  uint8_t hdr[SPWIRE_HEADER_LEN];
  ctlsp_t *sp = calloc(1, sizeof(*sp));

  if (sp == NULL) goto nomem;
  sp->loop = loop;
  sp->o = *o;
  sp->fd = -1;
  sp->o.url = strdup(o->url);
  sp->o.servername = o->servername ? strdup(o->servername) : NULL;
  if (sp->o.url == NULL || (o->servername && sp->o.servername == NULL)) goto nomem_free;
  ev_io_init(&sp->rio, io_cb, -1, EV_READ);
  ev_io_init(&sp->wio, io_cb, -1, EV_WRITE);
  ev_timer_init(&sp->down_timer, down_timer_cb, 0., 0.);
  sp->rio.data = sp->wio.data = sp->down_timer.data = sp;
  spwire_rx_init(&sp->rx, o->max_msg);
  spwire_rx_expect(&sp->rx, SPWIRE_PROTO_REP);
  if (gnutls_rnd(GNUTLS_RND_NONCE, &sp->next_id, sizeof(sp->next_id)) < 0) sp->next_id = 1;
  sp->tls = strncmp(o->url, "tls+", 4) == 0;

  if (ctl_urls_split(o->url, sp->host, sizeof(sp->host), sp->port, sizeof(sp->port)) != 0) {
    snprintf(err, errlen, "controller URL '%s' is not scheme://host:port", o->url);
    goto fail;
  }
  memset(&ss, 0, sizeof(ss));
  struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, sp->host, &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)atoi(sp->port));
    sl = sizeof(*a4);
  } else if (inet_pton(AF_INET6, sp->host, &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)atoi(sp->port));
    sl = sizeof(*a6);
  } else {
    snprintf(err, errlen, "controller host '%s' is not an address (not resolved)", sp->host);
    goto fail;
  }
  if (sp->tls && tls_setup(sp, err, errlen) != 0) goto fail;
  spwire_header(hdr, SPWIRE_PROTO_REQ);
  if (queue(sp, hdr, sizeof(hdr)) != 0) goto nomem_free;
  if ((sp->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0) {
    snprintf(err, errlen, "socket: %s", strerror(errno));
    goto fail;
  }
  int one = 1;
  setsockopt(sp->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  ev_io_set(&sp->rio, sp->fd, EV_READ);
  ev_io_set(&sp->wio, sp->fd, EV_WRITE);
  sp->state = ST_CONNECTING;
  if (connect(sp->fd, (struct sockaddr *)&ss, sl) != 0 && errno != EINPROGRESS) {
    /* Refused at once (a local address nobody listens on): said through
     * on_down like any other failure to connect. */
    go_down(sp, 0, "cannot connect to %s:%s: %s", sp->host, sp->port, strerror(errno));
    return sp;
  }
  ev_io_start(loop, &sp->rio);
  ev_io_start(loop, &sp->wio);
  return sp;

nomem_free:
  snprintf(err, errlen, "out of memory");
fail:
  if (sp) sp_free(sp);
  return NULL;
nomem:
  snprintf(err, errlen, "out of memory");
  return NULL;
}
