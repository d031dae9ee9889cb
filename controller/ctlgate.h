/* The control gate: the controller's listener on control.listenaddr, and
 * the whole transport of the control channel. One thread (epoll) accepts,
 * limits connections per client address and in all, runs the TLS
 * handshake (ctlgate_tls.h), then speaks nng's SP wire itself (spwire.h):
 * it answers an agent's REQ header with REP's, reads its requests and
 * queues them for the control workers (ctlgate_recv), and writes their
 * replies (ctlgate_reply) back on the same connection: one descriptor per
 * agent. nng 1.5.2's listener is not used: it had no hook before a
 * connection's TLS handshake and SP negotiation ended, never closed a
 * connection that sent no TLS hello, and accepted one connection per round
 * behind the TLS handshakes it ran. A connection whose TLS and SP headers
 * are not done within the handshake deadline is closed. Across threads a
 * connection is named by its id, never by a pointer: a reply for a
 * connection that has gone is dropped. See docs/architecture.md ("Control
 * gate"). */
#ifndef CASCADE_CTLGATE_H
#define CASCADE_CTLGATE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct ctlgate ctlgate_t;

typedef struct ctlgate_config {
  const char *url;          /* control.listenaddr: tls+tcp://host:port or tcp://host:port */
  int64_t handshake_ms;     /* control.handshaketimeout */
  size_t max_per_addr;      /* control.maxconnperaddr; 0: no limit */
  size_t max_conns;         /* control.maxconnections; 0: from the open-file limit */
  size_t http_max;          /* http.maxconnections, for the descriptor budget */
  size_t db_pool;           /* database.poolsize, likewise */
  const char *cert_pem;     /* tls+tcp: the server certificate chain (PEM) */
  const char *key_pem;      /* tls+tcp: its key (PEM) */
  const uint8_t *ticket_key; /* tls+tcp: session ticket key (ctlgate_tls.h); NULL: none */
} ctlgate_config_t;

/* ctlgate_split_url splits an nng URL "tls+tcp://host:port" or
 * "tcp://host:port" into its scheme ("tls+tcp") and "host:port". 0, or -1
 * when it has another form. */
int ctlgate_split_url(const char *url, char *scheme, size_t schemelen, char *hostport,
                      size_t hplen);

/* ctlgate_fit is how many control connections fit |nofile| descriptors
 * (one each: the client's socket) after a reserve for the database pool,
 * the HTTP server (up to half of what is left) and the process's own
 * files. At least 1. */
size_t ctlgate_fit(uint64_t nofile, size_t http_max, size_t db_pool);

#define CTLGATE_WAIT 0        /* not yet */
#define CTLGATE_CLIENT_LATE 1 /* the client owes the next bytes and was silent too long */
#define CTLGATE_TOO_LONG 2    /* not live after CTLGATE_TOTAL deadlines, whoever is slow */
#define CTLGATE_TOTAL 6

/* Requests read from one connection and not yet answered (queued, being
 * handled, parked, or their reply not yet written): past this the gate
 * stops reading it. An agent has its poll, its RPC and one per relay in
 * progress (RELAY_MAX_PER_NODE, 16). */
#define CTLGATE_CONN_UNANSWERED 32
/* Requests queued for the workers in all, and their bytes: past either
 * the gate stops reading every connection until the workers catch up. */
#define CTLGATE_QUEUE_MAX 4096
#define CTLGATE_QUEUE_BYTES (64u << 20)

/* One request for the control workers (ctlgate_recv). */
typedef struct ctlgate_req {
  uint32_t conn;             /* the connection (ctlgate_reply, ctlgate_close) */
  uint32_t id;               /* the SP request id (high bit set) */
  uint8_t *body;             /* owned by the receiver: free() */
  size_t len;
  char ip[46];               /* the client's address ("1.2.3.4", "2001:db8::1") */
} ctlgate_req_t;

/* ctlgate_conn_cb is told on the gate's thread that connection |conn| is
 * live (|up|: TLS and SP headers done) or has gone (only after up). */
typedef void (*ctlgate_conn_cb)(void *arg, uint32_t conn, int up);
/* ctlgate_verdict judges a connection not yet live at |now_ms|, accepted
 * at |born_ms|, whose last bytes came from the client (|server_turn|) or
 * from the gate (or none yet) at |turn_ms|, with deadline |timeout_ms|. The
 * client's silence is what the deadline measures: a controller slow to
 * answer (a storm of agents) does not count against it, up to
 * CTLGATE_TOTAL deadlines in all. */
int ctlgate_verdict(int server_turn, int64_t born_ms, int64_t turn_ms, int64_t now_ms,
                    int64_t timeout_ms);

/* ctlgate_new binds cfg->url (errors name control.listenaddr); with
 * tls+tcp the gate ends TLS with cfg->cert_pem and cfg->key_pem. NULL with
 * |err| on failure. */
ctlgate_t *ctlgate_new(const ctlgate_config_t *cfg, char *err, size_t errlen);

/* ctlgate_start starts accepting; |cb| (may be NULL) hears of connections
 * coming and going. 0, or -1 with |err|. */
int ctlgate_start(ctlgate_t *g, ctlgate_conn_cb cb, void *arg, char *err, size_t errlen);

/* ctlgate_recv waits for the next request and moves it to |req|. 0, or -1
 * once the gate is stopping (ctlgate_stop). Any thread. */
int ctlgate_recv(ctlgate_t *g, ctlgate_req_t *req);

/* ctlgate_reply answers request |id| of connection |conn| with |body|
 * (copied), or with nothing when |body| is NULL (the request is given up:
 * it no longer counts against the connection). Every request from
 * ctlgate_recv gets exactly one call. Dropped when the connection has
 * gone or the gate has stopped. Any thread. */
void ctlgate_reply(ctlgate_t *g, uint32_t conn, uint32_t id, const void *body, size_t len);

/* ctlgate_close closes connection |conn| (if it is still open). Any thread. */
void ctlgate_close(ctlgate_t *g, uint32_t conn);

/* ctlgate_stop stops the thread, closes every connection without telling
 * the callback, and makes ctlgate_recv return -1; ctlgate_reply and
 * ctlgate_close still accept calls (and drop them). Accepts NULL. */
void ctlgate_stop(ctlgate_t *g);

/* ctlgate_free stops the gate if it runs and frees it; accepts NULL. After
 * the last ctlgate_reply (held-back relay acks may come late). */
void ctlgate_free(ctlgate_t *g);

/* ctlgate_metrics writes the gate's Prometheus lines; accepts NULL. */
void ctlgate_metrics(ctlgate_t *g, FILE *out);

#endif
