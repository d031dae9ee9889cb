/* Admission: the seam through which the RTMP and HTTP-FLV servers ask
 * whether a client may publish or play a path, before hub_publish or
 * hub_subscribe. The data plane knows nothing of tokens or hooks; the
 * cascade-agent supplies the ops (agent/edgeauth.c). No ops: everything is
 * allowed (the data plane's own tests, a standalone media node).
 *
 * An answer may take a network round trip (an HTTP hook): check() then
 * returns DP_ADMIT_PENDING with a handle; the connection stops reading
 * until the callback comes, and a connection closed before that calls
 * cancel() — after which the callback never comes. */
#ifndef CASCADE_DP_ADMIT_H
#define CASCADE_DP_ADMIT_H

enum { DP_ADMIT_PUBLISH = 1, DP_ADMIT_PLAY = 2 };
enum { DP_ADMIT_ALLOW = 0, DP_ADMIT_DENY = 1, DP_ADMIT_PENDING = 2 };

/* One client asking; strings are valid for the duration of the call only. */
typedef struct dp_admit_req {
  int action;        /* DP_ADMIT_PUBLISH or DP_ADMIT_PLAY */
  const char *path;  /* the hub path, "app/name" */
  const char *query; /* the client's query string without '?', or NULL */
  const char *proto; /* "rtmp" or "httpflv" */
  const char *addr;  /* the client's address, no port */
} dp_admit_req;

/* dp_admit_cb delivers a pending verdict: |allow| 1 or 0; when refused, an
 * HTTP-like |status| (401 come back with a token, 403 refused, 503 cannot
 * decide now) and a short |reason| fit for the client and a log. */
typedef void (*dp_admit_cb)(void *arg, int allow, int status, const char *reason);

typedef struct dp_admit_ops {
  /* check answers DP_ADMIT_ALLOW, or DP_ADMIT_DENY with *status and
   * *reason set, or DP_ADMIT_PENDING with *pending set and |cb| to be called
   * once on the loop. */
  int (*check)(void *ud, const dp_admit_req *r, dp_admit_cb cb, void *arg, void **pending,
               int *status, const char **reason);
  /* cancel drops a pending check: its callback never comes. */
  void (*cancel)(void *ud, void *pending);
  /* ended tells that a publisher or player admitted earlier has gone. */
  void (*ended)(void *ud, const dp_admit_req *r);
} dp_admit_ops;

/* dp_admit_addr writes the address part of a peer name as net_peer_name
 * makes it ("1.2.3.4:5", "[::1]:5") to |out|. */
void dp_admit_addr(const char *peer, char *out, unsigned outlen);

#endif
