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
#ifndef CASCADE_RELAY_H
#define CASCADE_RELAY_H

#include <stddef.h>
#include <stdint.h>

#include "control.pb-c.h"

struct ctl;
struct http_req;
struct park;

typedef struct relay_reg relay_reg_t;
typedef struct ctl_relay ctl_relay_t;

#define RELAY_MAX_PER_NODE 16        /* relays in progress to one node */
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

/* ---- for the control server ---- */

/* relay_ref / relay_unref count the references of |rl|. */
void relay_ref(ctl_relay_t *rl);
void relay_unref(ctl_relay_t *rl);

/* relay_fill points |out| at |rl|'s request (valid while a reference is
 * held); returns the bytes it adds to a message, or 0 when the relay is
 * over (cancelled, failed) and must not be sent. */
size_t relay_fill(ctl_relay_t *rl, Cascade__Control__RelayRequest *out);

/* relay_sent notes that |rl| went out in a poll answer. */
void relay_sent(ctl_relay_t *rl);

/* relay_deliver hands node |node|'s RelayResponse |m| to its relay. Returns
 * 0: ack now; 1: |ack| (a parked reply) was kept and will be answered when
 * the caller has read enough; -1: ack "cancelled" (unknown relay, another
 * node's, caller gone, or a protocol error). */
int relay_deliver(relay_reg_t *g, int64_t node, const Cascade__Control__RelayResponse *m,
                  struct park *ack);

/* relay_node_gone ends every relay of |node| (its session ended): 502
 * before the first answer, a cut answer after. */
void relay_node_gone(relay_reg_t *g, int64_t node, const char *why);

/* ---- for the HTTP server (api_relay.c) ---- */

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
