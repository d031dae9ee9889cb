/* The API relay's in-flight requests (docs/api.md, "API relay"): one
 * ctl_relay_t per `ANY /api/relay/{id}/{path}` call, shared by three kinds
 * of thread, each touching it only under its lock:
 *   - the MHD worker of the caller's connection (api_relay.c: the request,
 *     then a content reader that pulls the node's answer from a bounded
 *     queue, suspending the connection while the queue is empty);
 *   - control workers (ctlsrv.c): hand the request to the node's parked
 *     poll, then deliver each RelayResponse, answering its ack at once or
 *     parking it until the caller has drained the queue (backpressure);
 *   - the registry's reaper thread: the first-answer deadline (504) and
 *     idle relays.
 * A relay is freed when its last reference goes. */
#ifndef CASCADE_API_RELAY_H
#define CASCADE_API_RELAY_H

#include <stddef.h>
#include <stdint.h>

#include "relay_sessions.h"

struct ctl;
struct http_req;

typedef struct relay_reg relay_reg_t;
typedef struct ctl_relay ctl_relay_t;

#define RELAY_IDLE_MS 60000          /* a started answer with nothing new for this long ends */
#define RELAY_QUEUE_HIGH (512 * 1024) /* buffered answer bytes above which acks wait */
#define RELAY_QUEUE_LOW (256 * 1024)  /* ... until the caller has drained below this */

/* relay_reg_new makes the registry of |ctl| and starts its reaper thread.
 * NULL on out of memory. */
relay_reg_t *relay_reg_new(struct ctl *ctl);

/* relay_reg_shutdown fails every relay (503), resumes their connections and
 * waits (up to 2 s) until none is suspended: MHD must not stop with a
 * suspended connection. Accepts NULL. */
void relay_reg_shutdown(relay_reg_t *g);

/* relay_reg_free stops the reaper and frees the registry; every caller must
 * be gone (HTTP stopped) and the control server stopped. Accepts NULL. */
void relay_reg_free(relay_reg_t *g);

/* relay_reg_active counts relays in progress (for metrics). */
size_t relay_reg_active(relay_reg_t *g);

/* The control server's side (relay_ref, relay_fill, relay_deliver, ...)
 * is in relay_sessions.h. */

/* ---- forwarding to the replica holding the node (relay_fwd.c) ---- */

/* relay_forward sends |rl| (as signed: |sig|, an X-Cascade-Forwarded
 * value) for request target |target| (as the caller sent it) to the
 * replica API at |address| ("http://host:port") on a thread
 * of its own that feeds the answer to |rl| like a node's RelayResponses.
 * 0, or -1 with |why| when no thread could start. */
int relay_forward(struct ctl *ctl, ctl_relay_t *rl, const char *address, const char *target,
                  const char *sig, char *why, size_t whylen);

/* relay_fail ends |rl| with |status| and |why| (a cut body once started). */
void relay_fail(ctl_relay_t *rl, int status, const char *why);

/* relay_backlog: answer bytes the caller has yet to read, or -1 when the
 * relay is over (cancelled, failed). */
long long relay_backlog(ctl_relay_t *rl);

/* relay_id and relay_node: what |rl| is (fixed at creation). */
uint64_t relay_id(ctl_relay_t *rl);
int64_t relay_node(ctl_relay_t *rl);

/* relay_reg_fwd_enter counts a forwarding thread in (-1: shutting down);
 * relay_reg_fwd_leave counts it out; relay_reg_fwd_stopping: it must end. */
int relay_reg_fwd_enter(relay_reg_t *g);
void relay_reg_fwd_leave(relay_reg_t *g);
int relay_reg_fwd_stopping(relay_reg_t *g);

/* ---- for the HTTP server (api_relay.c) ---- */

/* api_relay_http is the relay's HTTP side (the three functions below and
 * relay_reg_shutdown), which main.c gives the HTTP server (ctl->http_relay). */
extern const struct http_relay api_relay_http;

/* api_relay serves ANY /api/relay/{id}/{path}: checks, then suspends the
 * connection until the node answers (or fails it at once). */
int api_relay(struct http_req *r);

/* api_relay_resume is called when a suspended relay request is resumed:
 * it queues the answer (the node's status and headers with a streaming
 * body, or an error). */
int api_relay_resume(struct http_req *r);

/* api_relay_done is called when the caller's request ends (answered or
 * gone): the relay is cancelled if still running, and released. */
void api_relay_done(struct http_req *r);

#endif
