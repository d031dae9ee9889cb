/* Name lookups for the agent's loop: getaddrinfo blocks, so each lookup
 * runs on a thread of its own and its answer comes back to the loop through
 * an ev_async (docs/architecture.md, "Event loop discipline"). */
#ifndef CASCADE_RESOLVE_H
#define CASCADE_RESOLVE_H

#include <ev.h>
#include <stddef.h>
#include <sys/socket.h>

typedef struct resolve_req resolve_req_t;

#define RESOLVE_MAX 8 /* addresses kept of one lookup */

/* resolve_fn gets the |n| addresses of the lookup, in getaddrinfo's order,
 * or n 0 and the reason it failed (|why|, e.g. "Name or service not
 * known"). Runs on the loop thread; the request is gone when it returns. */
typedef void (*resolve_fn)(void *arg, size_t n, const struct sockaddr_storage *ss,
                           const socklen_t *sslen, const char *why);

/* resolve_start looks |host| and |port| up (UDP; |family| AF_INET,
 * AF_INET6 or AF_UNSPEC) and calls |fn| on |loop| with the result. Returns
 * the request or NULL (no thread or memory: |fn| is not called). */
resolve_req_t *resolve_start(struct ev_loop *loop, const char *host, const char *port,
                             int family, resolve_fn fn, void *arg);

/* resolve_cancel drops |r| from the loop thread: |fn| is not called; the
 * thread, if still in getaddrinfo, frees what is left when it returns.
 * Accepts NULL. */
void resolve_cancel(resolve_req_t *r);

#endif
