/* The control channel's transport on the agent: nng's SP REQ protocol
 * (req0, common/spwire.h) over one TCP or TLS connection, spoken on the
 * agent's libev loop, with any number of requests in flight told apart by
 * their request ids. Everything runs on the loop thread: no thread, no
 * lock, and closing a connection is a close(2), so no close can hang (nng
 * 1.5.2's could, nanomsg/nng#1543). See docs/protocol.md ("Transport").
 *
 * A connection does not reconnect: it is up, or it failed once and says
 * why (a refused connection, a refused certificate and its reason, the
 * peer closing); its owner (agent/ctlc.c) decides when to open another. */
#ifndef CASCADE_CTLSP_H
#define CASCADE_CTLSP_H

#include <ev.h>
#include <gnutls/gnutls.h>
#include <stddef.h>
#include <stdint.h>

#include "ctltls.h"

/* A request's outcome besides 0 (answered). */
#define CTLSP_ETIMEDOUT (-1)  /* no answer in time (ctlsp_req_t.sent: was it written) */
#define CTLSP_ECLOSED (-2)    /* the connection ended first */
#define CTLSP_ENOMEM (-3)

#define CTLSP_WHY_MAX 320

typedef struct ctlsp ctlsp_t;
typedef struct ctlsp_req ctlsp_req_t;

/* Called on the loop with request |r|'s outcome: 0 and the reply's body
 * (|len| bytes, valid during the call), or a CTLSP_E* code and NULL. |r| is
 * idle again when this runs (it may be sent again or freed). */
typedef void (*ctlsp_reply_fn)(ctlsp_req_t *r, int rv, const uint8_t *body, size_t len,
                               void *arg);

/* One exchange; lives in its owner (a control client's poll, a relay). */
struct ctlsp_req {
  ctlsp_reply_fn cb;             /* fixed by ctlsp_req_init */
  void *arg;
  struct ev_loop *loop;
  ev_timer timer;                /* its deadline; at 0 s, an outcome to deliver */
  ctlsp_t *sp;                   /* the connection it waits on; NULL otherwise */
  ctlsp_req_t *prev, *next;      /* in sp's list of requests in flight */
  uint32_t id;                   /* its SP request id */
  uint64_t end;                  /* the connection's byte count at its frame's end */
  int busy;                      /* sent, outcome not yet delivered */
  int sent;                      /* its last byte was written */
  int result;                    /* the outcome its timer delivers */
};

typedef struct ctlsp_opts {
  const char *url;               /* tcp:// or tls+tcp://, numeric host (copied) */
  /* TLS (tls+tcp:// only); the credentials and priorities outlive the
   * connection. */
  gnutls_certificate_credentials_t cred;
  gnutls_priority_t prio;
  const char *servername;        /* sent (SNI) and verified against (copied) */
  int verify;                    /* 0: the pin bootstrap, nothing verified */
  uint64_t tls_key;              /* the client's key in the session store, 0: none */
  const uint8_t *trust_fp;       /* CTLTLS_FP_LEN bytes: what trust its sessions are for */
  size_t max_msg;                /* the largest reply body accepted */
  /* Called once each, on the loop: the connection is up (handshakes done,
   * the controller's SP header read); it ended, and why, said for an
   * operator. After on_down every request in flight gets CTLSP_ECLOSED. */
  void (*on_up)(ctlsp_t *sp, void *arg);
  void (*on_down)(ctlsp_t *sp, const char *why, void *arg);
  void *arg;
} ctlsp_opts_t;

/* ctlsp_open starts connecting on |loop| as |o| says. NULL with |err| when
 * the URL is not a numeric host and port or a resource ran out; a failure
 * to connect later comes as on_down. */
ctlsp_t *ctlsp_open(struct ev_loop *loop, const ctlsp_opts_t *o, char *err, size_t errlen);

/* ctlsp_close ends the connection (a TLS close_notify, best effort, then
 * close(2)) and frees it; accepts NULL; safe inside any of its callbacks.
 * Requests in flight get CTLSP_ECLOSED from their timers; on_down is not
 * called. */
void ctlsp_close(ctlsp_t *sp);

/* ctlsp_why is why |sp| ended ("" while it has not). */
const char *ctlsp_why(const ctlsp_t *sp);

/* ctlsp_is_up tells whether on_up has been called. */
int ctlsp_is_up(const ctlsp_t *sp);

/* ctlsp_req_init prepares |r| on |loop| to deliver to |cb| with |arg|. */
void ctlsp_req_init(ctlsp_req_t *r, struct ev_loop *loop, ctlsp_reply_fn cb, void *arg);

/* ctlsp_send sends |len| bytes of |body| (copied) as a request on |sp| and
 * delivers the reply, or CTLSP_ETIMEDOUT after |timeout_ms|, to |r|'s
 * callback, never before ctlsp_send returns. Requests queue while the
 * connection comes up. 0, or CTLSP_ENOMEM / CTLSP_ECLOSED (|sp| NULL or
 * ended) with nothing started. |r| must be idle. */
int ctlsp_send(ctlsp_t *sp, ctlsp_req_t *r, const void *body, size_t len, int timeout_ms);

/* ctlsp_req_cancel forgets |r|'s exchange: no callback comes for it (a
 * late reply is dropped). Accepts an idle request. */
void ctlsp_req_cancel(ctlsp_req_t *r);

#endif
