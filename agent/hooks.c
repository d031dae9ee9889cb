/* The HTTP hook client: see hooks.h and docs/media.md, "HTTP hooks".
 *
 * One request per connection (Connection: close). A call runs through
 * name resolution (off the loop, resolve.h; skipped for an IP literal),
 * a non-blocking connect to each address in turn, the TLS handshake for
 * https://, sending the request and reading the answer (hookhttp.h), all
 * under one deadline of timeout_ms. A call ends in finish(): it is taken
 * out of the client first, then its callback runs, so the callback may
 * check, cancel or free anything. */
#include "hooks.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <gnutls/gnutls.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hookcache.h"
#include "hookhttp.h"
#include "log.h"
#include "resolve.h"

#define LOG_EVERY 10.0 /* s between two warnings of the client */

static const char *const EVENT_NAME[HOOK_N] = {"on_publish", "on_play", "on_stop",
                                                "on_unpublish"};
static const char *const ACTION[HOOK_N] = {"publish", "play", "stop", "unpublish"};

const char *hook_event_name(hook_event e) {
  return (unsigned)e < HOOK_N ? EVENT_NAME[e] : "?";
}

/* Trust for https:// hooks, shared by the client and each TLS session
 * that uses it: a new trust file must not pull it from under a handshake. */
typedef struct trust {
  gnutls_certificate_credentials_t cred;
  int refs;
} trust_t;

static void trust_unref(trust_t *t) {
  if (t == NULL || --t->refs > 0) return;
  gnutls_certificate_free_credentials(t->cred);
  free(t);
}

struct hooks {
  struct ev_loop *loop;
  char *url_s[HOOK_N];           /* as configured, to see changes; owned */
  hookhttp_url_t *url[HOOK_N];   /* parsed; owned; NULL: no hook */
  uint32_t timeout_ms, cache_ms;
  int fail_open;
  uint64_t gen;                  /* configuration generation */
  hookcache_t *cache;
  trust_t *trust;                /* for https://; NULL until needed */
  char *trust_file;              /* NULL: the system trust store */
  hook_call_t *calls;            /* in flight, doubly linked */
  unsigned nchecks, nnotify;
  hooks_stats_t st;
  char reason[128];              /* of an answer hooks_check gives at once */
  ev_tstamp log_last;
  unsigned log_quiet;            /* warnings suppressed since log_last */
};

struct hook_call {
  hooks_t *h;
  hook_call_t *prev, *next;
  int notify;                    /* on_stop / on_unpublish: no callback */
  hook_done_fn done;
  void *arg;
  uint64_t gen;
  hook_req req;                  /* strings owned (for the cache and logs) */
  hookhttp_url_t url;
  resolve_req_t *res;
  struct sockaddr_storage ss[RESOLVE_MAX];
  socklen_t sslen[RESOLVE_MAX];
  size_t naddr, ai;
  int fd;
  int conn_err;                  /* errno of the last failed connect */
  ev_io io;
  ev_timer deadline;
  ev_timer kick;                 /* connects an IP literal on the next loop turn */
  gnutls_session_t tls;
  trust_t *trust;                /* a reference while |tls| lives */
  int phase;
  char *out;                     /* the request; owned */
  size_t outlen, outoff;
  hookhttp_resp_t resp;
};

enum { PH_RESOLVE = 0, PH_CONNECT, PH_HANDSHAKE, PH_SEND, PH_RECV };

/* A warning that may repeat per client goes out at most every LOG_EVERY
 * seconds, with the count of those held back. */
static void warn_rl(hooks_t *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn_rl(hooks_t *h, const char *fmt, ...) {
  ev_tstamp now = ev_now(h->loop);
  if (h->log_last != 0 && now - h->log_last < LOG_EVERY) {
    h->log_quiet++;
    return;
  }
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  if (h->log_quiet)
    log_warn("hooks", "%s (%u similar lines held back)", buf, h->log_quiet);
  else
    log_warn("hooks", "%s", buf);
  h->log_last = now;
  h->log_quiet = 0;
}

hooks_t *hooks_new(struct ev_loop *loop) {
  hooks_t *h = calloc(1, sizeof(*h));
  if (h == NULL) goto fail;
  h->cache = hookcache_new(HOOKS_CACHE_MAX);
  if (h->cache == NULL) goto fail_h;
  h->loop = loop;
  h->timeout_ms = HOOKS_TIMEOUT_DEFAULT;
  return h;

fail_h:
  free(h);
fail:
  return NULL;
}

static void free_req(hook_req *r) {
  free((char *)r->node);
  free((char *)r->path);
  free((char *)r->addr);
  free((char *)r->proto);
  free((char *)r->query);
}

/* release takes |c| out of its client and frees it; no callback. */
static void release(hook_call_t *c) {
  hooks_t *h = c->h;
  if (c->prev) c->prev->next = c->next;
  else h->calls = c->next;
  if (c->next) c->next->prev = c->prev;
  if (c->notify) h->nnotify--;
  else h->nchecks--;
  resolve_cancel(c->res);
  ev_io_stop(h->loop, &c->io);
  ev_timer_stop(h->loop, &c->deadline);
  ev_timer_stop(h->loop, &c->kick);
  if (c->tls) gnutls_deinit(c->tls);
  trust_unref(c->trust);
  if (c->fd >= 0) close(c->fd);
  if (c->out) {
    memset(c->out, 0, c->outlen); /* it may carry a token and credentials */
    free(c->out);
  }
  free_req(&c->req);
  memset(&c->url, 0, sizeof(c->url));
  free(c);
}

void hooks_free(hooks_t *h) {
  if (h == NULL) return;
  while (h->calls) release(h->calls);
  for (int i = 0; i < HOOK_N; i++) {
    free(h->url_s[i]);
    free(h->url[i]);
  }
  trust_unref(h->trust);
  free(h->trust_file);
  hookcache_free(h->cache);
  free(h);
}

void hooks_get_stats(const hooks_t *h, hooks_stats_t *out) { *out = h->st; }

static uint64_t now_ms(hooks_t *h) { return (uint64_t)(ev_now(h->loop) * 1000.0); }

static const char *mode(const hooks_t *h) { return h->fail_open ? "fail open" : "fail closed"; }

/* The credentials of https:// hooks: the trust file's CAs or the system's. */
static int load_trust(hooks_t *h, trust_t **out) {
  gnutls_certificate_credentials_t cr;
  trust_t *t = calloc(1, sizeof(*t));
  if (t == NULL) return -ENOMEM;
  if (gnutls_certificate_allocate_credentials(&cr) < 0) {
    free(t);
    return -ENOMEM;
  }
  int n = h->trust_file
              ? gnutls_certificate_set_x509_trust_file(cr, h->trust_file, GNUTLS_X509_FMT_PEM)
              : gnutls_certificate_set_x509_system_trust(cr);
  if (n <= 0) {
    log_error("hooks", "https:// hooks: no CA certificate in %s (%s)",
              h->trust_file ? h->trust_file : "the system trust store",
              n < 0 ? gnutls_strerror(n) : "none found");
    gnutls_certificate_free_credentials(cr);
    free(t);
    return -EINVAL;
  }
  t->cred = cr;
  t->refs = 1;
  *out = t;
  return 0;
}

int hooks_set_trust_file(hooks_t *h, const char *path) {
  char *p = NULL;
  if (path && (p = strdup(path)) == NULL) return -ENOMEM;
  free(h->trust_file);
  h->trust_file = p;
  trust_unref(h->trust);
  h->trust = NULL;
  int tls = 0;
  for (int i = 0; i < HOOK_N; i++) tls |= h->url[i] && h->url[i]->tls;
  return tls ? load_trust(h, &h->trust) : 0;
}

static int same_str(const char *a, const char *b) {
  return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

int hooks_configure(hooks_t *h, const hook_conf *conf) {
  hookhttp_url_t *u[HOOK_N] = {0};
  char *s[HOOK_N] = {0};
  char why[128];
  int tls = 0, rc = -EINVAL;
  uint32_t timeout = conf->timeout_ms ? conf->timeout_ms : HOOKS_TIMEOUT_DEFAULT;
  if (timeout > HOOKS_TIMEOUT_MAX) {
    log_error("hooks", "hook timeout %u ms is over %u ms", conf->timeout_ms, HOOKS_TIMEOUT_MAX);
    goto fail;
  }
  for (int i = 0; i < HOOK_N; i++) {
    if (conf->url[i] == NULL || conf->url[i][0] == '\0') continue;
    rc = -ENOMEM;
    if ((u[i] = malloc(sizeof(*u[i]))) == NULL || (s[i] = strdup(conf->url[i])) == NULL)
      goto fail;
    if (hookhttp_url_parse(conf->url[i], u[i], why, sizeof(why)) != 0) {
      log_error("hooks", "%s URL refused: %s", EVENT_NAME[i], why);
      rc = -EINVAL;
      goto fail;
    }
    tls |= u[i]->tls;
  }
  if (tls && h->trust == NULL && (rc = load_trust(h, &h->trust)) != 0) goto fail;
  int changed = timeout != h->timeout_ms || conf->cache_ms != h->cache_ms ||
                !!conf->fail_open != h->fail_open;
  for (int i = 0; i < HOOK_N; i++) {
    changed |= !same_str(s[i], h->url_s[i]);
    free(h->url_s[i]);
    free(h->url[i]);
    h->url_s[i] = s[i];
    h->url[i] = u[i];
  }
  h->timeout_ms = timeout;
  h->cache_ms = conf->cache_ms;
  h->fail_open = !!conf->fail_open;
  if (changed) {
    hookcache_clear(h->cache);
    h->gen++; /* answers to calls in flight are not cached */
  }
  return 0;

fail:
  for (int i = 0; i < HOOK_N; i++) {
    free(u[i]);
    free(s[i]);
  }
  return rc;
}

/* finish ends |c|: |status| > 0 is the hook's answer, else |fail| says why
 * there is none and fail_open decides. */
static void finish(hook_call_t *c, int status, const char *fail) {
  hooks_t *h = c->h;
  char reason[160], where[HOOKHTTP_URL_MAX + 16];
  int verdict;
  hookhttp_url_show(&c->url, where, sizeof(where));
  if (status > 0) {
    verdict = status >= 200 && status <= 299 ? HOOK_ALLOW : HOOK_DENY;
    snprintf(reason, sizeof(reason), "%s by the hook (HTTP %d)",
             verdict == HOOK_ALLOW ? "allowed" : "refused", status);
    if (verdict == HOOK_ALLOW) h->st.allowed++;
    else h->st.refused++;
    if (!c->notify && c->gen == h->gen)
      hookcache_put(h->cache, &c->req, verdict, status, now_ms(h), h->cache_ms);
    if (verdict == HOOK_DENY && c->notify)
      warn_rl(h, "[hook %s %s] answered HTTP %d", EVENT_NAME[c->req.event], where, status);
  } else {
    verdict = h->fail_open ? HOOK_ALLOW : HOOK_DENY;
    snprintf(reason, sizeof(reason), "%s (%s)", fail, mode(h));
    h->st.failed++;
    char path[128];
    warn_rl(h, "[hook %s %s] %s; %s %s from %s", EVENT_NAME[c->req.event], where, fail,
            c->notify ? "notification for" : h->fail_open ? "allowed" : "refused",
            log_quote(c->req.path, path, sizeof(path)), c->req.addr);
  }
  int notify = c->notify;
  hook_done_fn done = c->done;
  void *arg = c->arg;
  release(c);
  if (!notify) done(arg, verdict, reason);
}

static void fail_io(hook_call_t *c, const char *what, int err) {
  char buf[128];
  snprintf(buf, sizeof(buf), "%s: %s", what, strerror(err));
  finish(c, 0, buf);
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents);

static void want(hook_call_t *c, int events) {
  hooks_t *h = c->h;
  if (ev_is_active(&c->io) && (c->io.events & (EV_READ | EV_WRITE)) == events) return;
  ev_io_stop(h->loop, &c->io);
  ev_io_set(&c->io, c->fd, events);
  ev_io_start(h->loop, &c->io);
}

static ssize_t tls_push(gnutls_transport_ptr_t p, const void *d, size_t n) {
  hook_call_t *c = p;
  ssize_t r = send(c->fd, d, n, MSG_NOSIGNAL);
  if (r < 0) gnutls_transport_set_errno(c->tls, errno);
  return r;
}

static ssize_t tls_pull(gnutls_transport_ptr_t p, void *d, size_t n) {
  hook_call_t *c = p;
  ssize_t r = recv(c->fd, d, n, 0);
  if (r < 0) gnutls_transport_set_errno(c->tls, errno);
  return r;
}

static void step(hook_call_t *c);

/* connect_next dials the next address; none left: the hook is down. */
static void connect_next(hook_call_t *c) {
  while (c->ai < c->naddr) {
    const struct sockaddr_storage *ss = &c->ss[c->ai];
    socklen_t sl = c->sslen[c->ai++];
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      c->conn_err = errno;
      continue;
    }
    /* a TLS Finished and the request go out as two small writes: without
     * this, Nagle holds the second for the server's delayed ACK (40 ms) */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (const struct sockaddr *)ss, sl) == 0 || errno == EINPROGRESS) {
      c->fd = fd;
      c->phase = PH_CONNECT;
      want(c, EV_WRITE);
      return;
    }
    c->conn_err = errno;
    close(fd);
  }
  char why[128];
  snprintf(why, sizeof(why), "hook down: %s",
           c->conn_err ? strerror(c->conn_err) : "no address to connect to");
  finish(c, 0, why);
}

static void start_tls(hook_call_t *c) {
  hooks_t *h = c->h;
  if (h->trust == NULL) { /* a trust file that could not be read */
    finish(c, 0, "hook TLS failed: no trusted CA certificate");
    return;
  }
  if (gnutls_init(&c->tls, GNUTLS_CLIENT | GNUTLS_NONBLOCK) < 0) {
    c->tls = NULL;
    finish(c, 0, "hook TLS failed: out of memory");
    return;
  }
  c->trust = h->trust;
  c->trust->refs++;
  if (gnutls_set_default_priority(c->tls) < 0 ||
      gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, h->trust->cred) < 0 ||
      (!hostaddr_is_numeric(c->url.host) &&
       gnutls_server_name_set(c->tls, GNUTLS_NAME_DNS, c->url.host, strlen(c->url.host)) < 0)) {
    finish(c, 0, "hook TLS failed: session setup");
    return;
  }
  /* the certificate must chain to a trusted CA and name the URL's host */
  gnutls_session_set_verify_cert(c->tls, c->url.host, 0);
  gnutls_transport_set_ptr(c->tls, c);
  gnutls_transport_set_push_function(c->tls, tls_push);
  gnutls_transport_set_pull_function(c->tls, tls_pull);
  gnutls_handshake_set_timeout(c->tls, 0); /* the call's deadline covers it */
  c->phase = PH_HANDSHAKE;
  step(c);
}

/* step advances |c| as far as its socket lets it. */
static void step(hook_call_t *c) {
  for (;;) {
    switch (c->phase) {
    case PH_CONNECT: {
      int err = 0;
      socklen_t el = sizeof(err);
      if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0) err = errno;
      if (err == EINPROGRESS || err == EALREADY) return;
      if (err != 0) {
        c->conn_err = err;
        ev_io_stop(c->h->loop, &c->io);
        close(c->fd);
        c->fd = -1;
        connect_next(c);
        return;
      }
      if (c->url.tls) {
        start_tls(c);
        return;
      }
      c->phase = PH_SEND;
      break;
    }
    case PH_HANDSHAKE: {
      int r = gnutls_handshake(c->tls);
      if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
        want(c, gnutls_record_get_direction(c->tls) ? EV_WRITE : EV_READ);
        return;
      }
      if (r < 0) {
        char why[160];
        if (r == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR)
          snprintf(why, sizeof(why),
                   "hook TLS failed: the server's certificate was not verified");
        else
          snprintf(why, sizeof(why), "hook TLS failed: %s", gnutls_strerror(r));
        finish(c, 0, why);
        return;
      }
      c->phase = PH_SEND;
      break;
    }
    case PH_SEND: {
      while (c->outoff < c->outlen) {
        ssize_t n;
        if (c->tls) {
          n = gnutls_record_send(c->tls, c->out + c->outoff, c->outlen - c->outoff);
          if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
            want(c, EV_WRITE);
            return;
          }
          if (n < 0) {
            finish(c, 0, "hook down: TLS send failed");
            return;
          }
        } else {
          n = send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL);
          if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            want(c, EV_WRITE);
            return;
          }
          if (n < 0) {
            fail_io(c, "hook down", errno);
            return;
          }
        }
        c->outoff += (size_t)n;
      }
      c->phase = PH_RECV;
      want(c, EV_READ);
      break;
    }
    case PH_RECV: {
      uint8_t buf[4096];
      const char *why = NULL;
      for (;;) {
        ssize_t n;
        if (c->tls) {
          n = gnutls_record_recv(c->tls, buf, sizeof(buf));
          if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) return;
          /* a server closing without close_notify still ended its answer */
          if (n == GNUTLS_E_PREMATURE_TERMINATION) n = 0;
          if (n < 0) {
            finish(c, 0, "hook answered garbage: TLS receive failed");
            return;
          }
        } else {
          n = recv(c->fd, buf, sizeof(buf), 0);
          if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
          if (n < 0) {
            fail_io(c, "hook down", errno);
            return;
          }
        }
        int r = n == 0 ? hookhttp_resp_eof(&c->resp, &why)
                       : hookhttp_resp_feed(&c->resp, buf, (size_t)n, &why);
        if (r == HOOKHTTP_DONE) {
          finish(c, c->resp.status, NULL);
          return;
        }
        if (r == HOOKHTTP_BAD) {
          char w[160];
          snprintf(w, sizeof(w), "hook answered garbage: %s", why);
          finish(c, 0, w);
          return;
        }
      }
    }
    default:
      return;
    }
  }
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents) {
  (void)loop;
  (void)revents;
  step(w->data);
}

static void deadline_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)loop;
  (void)revents;
  hook_call_t *c = w->data;
  finish(c, 0, c->phase == PH_RESOLVE ? "hook timed out resolving its host name"
                                      : "hook timed out");
}

static void kick_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)loop;
  (void)revents;
  connect_next(w->data);
}

static void resolved_cb(void *arg, size_t n, const struct sockaddr_storage *ss,
                        const socklen_t *sslen, const char *why) {
  hook_call_t *c = arg;
  c->res = NULL;
  if (n == 0) {
    char w[192];
    snprintf(w, sizeof(w), "hook down: cannot resolve its host name (%s)", why);
    finish(c, 0, w);
    return;
  }
  for (size_t i = 0; i < n && i < RESOLVE_MAX; i++) {
    c->ss[i] = ss[i];
    c->sslen[i] = sslen[i];
  }
  c->naddr = n < RESOLVE_MAX ? n : RESOLVE_MAX;
  connect_next(c);
}

/* A JSON string of |s|; bytes that are not UTF-8 become '?' so a client's
 * odd path still reaches the hook. */
static json_t *jstr(const char *s) {
  json_t *j = json_string(s ? s : "");
  if (j || s == NULL) return j;
  char *t = strdup(s);
  if (t == NULL) return NULL;
  for (char *p = t; *p; p++)
    if ((unsigned char)*p >= 0x80) *p = '?';
  j = json_string(t);
  free(t);
  return j;
}

static char *dupz(const char *s) { return strdup(s ? s : ""); }

/* start_call builds the request for |r| and starts it; NULL when out of
 * memory or no thread could resolve (nothing is called back then). */
static hook_call_t *start_call(hooks_t *h, const hook_req *r, int notify, hook_done_fn done,
                               void *arg) {
  const hookhttp_url_t *u = h->url[r->event];
  hook_call_t *c = calloc(1, sizeof(*c));
  if (c == NULL) goto fail;
  c->h = h;
  c->fd = -1;
  c->notify = notify;
  c->done = done;
  c->arg = arg;
  c->gen = h->gen;
  c->url = *u;
  c->req.event = r->event;
  c->req.node = dupz(r->node);
  c->req.path = dupz(r->path);
  c->req.addr = dupz(r->addr);
  c->req.proto = dupz(r->proto);
  c->req.query = r->query ? strdup(r->query) : NULL;
  if (!c->req.node || !c->req.path || !c->req.addr || !c->req.proto ||
      (r->query && !c->req.query))
    goto fail_req;
  json_t *o = json_object();
  if (o == NULL) goto fail_req;
  json_object_set_new(o, "action", json_string(ACTION[r->event]));
  json_object_set_new(o, "node", jstr(r->node));
  json_object_set_new(o, "path", jstr(r->path));
  json_object_set_new(o, "addr", jstr(r->addr));
  json_object_set_new(o, "proto", jstr(r->proto));
  json_object_set_new(o, "query", r->query ? jstr(r->query) : json_null());
  char *body = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  if (body == NULL) goto fail_req;
  size_t blen = strlen(body), cap = blen + 2 * HOOKHTTP_URL_MAX + 4 * HOOKHTTP_CRED_MAX;
  c->out = malloc(cap);
  long n = c->out ? hookhttp_request(c->out, cap, u, "cascade-agent/" CASCADE_VERSION, body, blen)
                  : -1;
  memset(body, 0, blen);
  free(body);
  if (n < 0) goto fail_req;
  c->outlen = (size_t)n;
  hookhttp_resp_init(&c->resp);
  ev_io_init(&c->io, io_cb, -1, 0);
  c->io.data = c;
  ev_timer_init(&c->deadline, deadline_cb, h->timeout_ms / 1000.0, 0.0);
  c->deadline.data = c;
  ev_timer_init(&c->kick, kick_cb, 0.0, 0.0);
  c->kick.data = c;
  /* an IP literal needs no lookup: its connect runs on the next loop turn,
   * so a connect that fails at once still answers through the callback */
  struct sockaddr_in *in4 = (struct sockaddr_in *)&c->ss[0];
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&c->ss[0];
  int port = atoi(u->port);
  if (inet_pton(AF_INET, u->host, &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons((uint16_t)port);
    c->sslen[0] = sizeof(*in4);
    c->naddr = 1;
  } else if (inet_pton(AF_INET6, u->host, &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)port);
    c->sslen[0] = sizeof(*in6);
    c->naddr = 1;
  }
  if (c->naddr) {
    ev_timer_start(h->loop, &c->kick);
  } else {
    c->res = resolve_start(h->loop, u->host, u->port, AF_UNSPEC, resolved_cb, c);
    if (c->res == NULL) goto fail_req;
  }
  ev_timer_start(h->loop, &c->deadline);
  c->next = h->calls;
  if (h->calls) h->calls->prev = c;
  h->calls = c;
  if (notify) h->nnotify++;
  else h->nchecks++;
  h->st.requests++;
  return c;

fail_req:
  if (c->out) {
    memset(c->out, 0, c->outlen);
    free(c->out);
  }
  free_req(&c->req);
  free(c);
fail:
  return NULL;
}

int hooks_check(hooks_t *h, const hook_req *r, hook_done_fn done, void *arg,
                hook_call_t **call, const char **reason) {
  *call = NULL;
  *reason = h->reason;
  if ((r->event != HOOK_ON_PUBLISH && r->event != HOOK_ON_PLAY) || h->url[r->event] == NULL) {
    snprintf(h->reason, sizeof(h->reason), "no hook configured");
    return HOOK_DENY;
  }
  int verdict, status;
  if (h->cache_ms && hookcache_get(h->cache, r, now_ms(h), &verdict, &status)) {
    h->st.cache_hits++;
    snprintf(h->reason, sizeof(h->reason), "%s by the hook (HTTP %d, cached)",
             verdict == HOOK_ALLOW ? "allowed" : "refused", status);
    return verdict;
  }
  verdict = h->fail_open ? HOOK_ALLOW : HOOK_DENY;
  if (h->nchecks >= HOOKS_MAX_CHECKS) {
    h->st.overflow++;
    snprintf(h->reason, sizeof(h->reason), "too many hook requests in flight (%s)", mode(h));
    warn_rl(h, "[hook %s] %u requests in flight already; %s", EVENT_NAME[r->event],
            h->nchecks, mode(h));
    return verdict;
  }
  hook_call_t *c = start_call(h, r, 0, done, arg);
  if (c == NULL) {
    h->st.failed++;
    snprintf(h->reason, sizeof(h->reason), "hook request could not start (%s)", mode(h));
    warn_rl(h, "[hook %s] request could not start (out of memory or threads); %s",
            EVENT_NAME[r->event], mode(h));
    return verdict;
  }
  *call = c;
  return HOOK_PENDING;
}

void hooks_cancel(hook_call_t *call) {
  if (call) release(call);
}

void hooks_notify(hooks_t *h, const hook_req *r) {
  if ((r->event != HOOK_ON_STOP && r->event != HOOK_ON_UNPUBLISH) || h->url[r->event] == NULL)
    return;
  if (h->nnotify >= HOOKS_MAX_NOTIFY) {
    h->st.notify_dropped++;
    warn_rl(h, "[hook %s] %u notifications in flight already; one dropped",
            EVENT_NAME[r->event], h->nnotify);
    return;
  }
  if (start_call(h, r, 1, NULL, NULL) == NULL) {
    h->st.notify_dropped++;
    warn_rl(h, "[hook %s] notification could not start; dropped", EVENT_NAME[r->event]);
  }
}
