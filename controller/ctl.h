/* The controller's context: everything one controller instance owns,
 * created in main() and passed down (no globals). */
#ifndef CASCADE_CTL_H
#define CASCADE_CTL_H

#include "auth.h"
#include "ctl_config.h"
#include "ctl_metrics.h"
#include "db.h"
#include <stdint.h>

struct MHD_Daemon;
struct relay_reg;
struct http_relay;
struct api_feed;

typedef struct ctl {
  const ctl_config_t *cfg;
  db_pool_t db;
  auth_t auth;
  ctl_metrics_t metrics;
  struct MHD_Daemon *httpd;   /* owned; see http.c */
  struct http_watch *hwatch;  /* owned; the header deadline, see http.c */
  struct ctlsrv *ctlsrv;      /* owned; see ctlsrv.c; NULL when disabled */
  struct ctlgate *ctlgate;    /* owned; created by ctlsrv (ctlgate.h), freed by main after the relay */
  struct relay_reg *relays;    /* owned; see api_relay.h */
  const struct http_relay *http_relay; /* the relay route's handlers (http.h), set by main.c */
  struct api_feed *feed;      /* owned; GET /api/feed (api_feed.h); NULL before it starts */
  int listen_fd;              /* owned by httpd once started */
  char *tls_cert;             /* PEM text, owned */
  char *tls_key;              /* PEM text, owned */
  char url[128];              /* where the API listens, for people */
  uint8_t fwd_key[32];        /* relay forwarding between replicas (fwdsig.h), from the CA key */
  int has_fwd_key;
  uint8_t stream_kek[32];     /* seals stream-signing keys at rest (streamauth.h), from the CA key */
  int has_stream_kek;
} ctl_t;

#endif
