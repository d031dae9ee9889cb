/* The control gate: the controller's own listener on control.listenaddr in
 * front of nng's. nng 1.5.2 has no hook before a connection's TLS handshake
 * and SP negotiation end, never closes a connection that sends no TLS
 * hello, and accepts one connection per round behind the TLS handshakes it
 * runs on its task queue; so one thread (epoll) accepts for it, limits
 * connections per client address and in all, runs the TLS handshake itself
 * (ctlgate_tls.h), and forwards the plaintext to nng's listener, plain TCP
 * on a loopback port. A connection that has not become an nng pipe within
 * the handshake deadline is closed. The gate also knows each pipe's real
 * client address. See docs/architecture.md ("Control gate"). */
#ifndef CASCADE_CTLGATE_H
#define CASCADE_CTLGATE_H

#include <nng/nng.h>
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
 * (three each: the client's, the gate's loopback end, nng's) after a
 * reserve for the database pool, the HTTP server (up to half of what is
 * left) and the process's own files, and within |ports| loopback source
 * ports. At least 1. */
size_t ctlgate_fit(uint64_t nofile, size_t http_max, size_t db_pool, size_t ports);

#define CTLGATE_WAIT 0        /* not yet */
#define CTLGATE_CLIENT_LATE 1 /* the client owes the next bytes and was silent too long */
#define CTLGATE_TOO_LONG 2    /* not live after CTLGATE_TOTAL deadlines, whoever is slow */
#define CTLGATE_TOTAL 6

/* ctlgate_verdict judges a connection not yet live at |now_ms|, accepted
 * at |born_ms|, whose last bytes came from the client (|server_turn|) or
 * from nng (or none yet) at |turn_ms|, with deadline |timeout_ms|. The
 * client's silence is what the deadline measures: a controller slow to
 * answer (a storm of agents) does not count against it, up to
 * CTLGATE_TOTAL deadlines in all. */
int ctlgate_verdict(int server_turn, int64_t born_ms, int64_t turn_ms, int64_t now_ms,
                    int64_t timeout_ms);

/* ctlgate_new binds cfg->url (errors name control.listenaddr) and writes
 * to |inner| the URL nng must listen on (tcp://127.0.0.1:0: with tls+tcp
 * the gate terminates TLS with cfg->cert_pem and cfg->key_pem). NULL with
 * |err| on failure. */
ctlgate_t *ctlgate_new(const ctlgate_config_t *cfg, char *inner, size_t innerlen, char *err,
                       size_t errlen);

/* ctlgate_attach watches |sock|'s pipes: one that arrives through the
 * gate is live (its deadline met); any other is closed. Before the
 * listener starts. 0 or an nng error. */
int ctlgate_attach(ctlgate_t *g, nng_socket sock);

/* ctlgate_start starts forwarding to nng's listener on loopback port
 * |inner_port|. 0, or -1 with |err|. */
int ctlgate_start(ctlgate_t *g, uint16_t inner_port, char *err, size_t errlen);

/* ctlgate_free stops the thread, closes every connection and frees;
 * accepts NULL. After nng's socket is closed (its callbacks use |g|). */
void ctlgate_free(ctlgate_t *g);

/* ctlgate_peer writes the client address of pipe |p| ("1.2.3.4", "2001:db8::1")
 * to |buf|, or "?" when the pipe did not come through the gate. Any thread. */
void ctlgate_peer(ctlgate_t *g, nng_pipe p, char *buf, size_t len);

/* ctlgate_metrics writes the gate's Prometheus lines; accepts NULL. */
void ctlgate_metrics(ctlgate_t *g, FILE *out);

#endif
