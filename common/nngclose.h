/* nng_close_within: nng 1.5.2's nng_close can wait forever for a pipe or
 * dialer that the close raced with (nanomsg/nng#1543, #1813; fixed after
 * 1.5.2), which would hang a process at shutdown. The close runs on a
 * thread of its own and the caller waits for it a bounded time. */
#ifndef CASCADE_NNGCLOSE_H
#define CASCADE_NNGCLOSE_H

#include <nng/nng.h>

/* nng_close_within closes |s| and waits for the close |secs| at most: 0
 * when it returned, -1 when it is still waiting (it finishes, or not, on
 * its own thread; the socket's callbacks may still run, so what they use
 * must stay valid, and nng_fini, which would wait for it too, must not be
 * called). */
int nng_close_within(nng_socket s, double secs);

/* nng_close_within_then is nng_close_within that calls |then|(|arg|), if
 * not NULL, once nng_close has returned, whenever that is (on the closing
 * thread, or before returning): what the socket's callbacks use can be
 * freed there and not before. */
int nng_close_within_then(nng_socket s, double secs, void (*then)(void *), void *arg);

/* nng_close_pending counts the closes started by nng_close_within whose
 * nng_close has not returned yet (0 before nng_fini may be called). A close
 * that signalled its waiter can still be inside nng_close for a moment, and
 * a socket already reports NNG_ECLOSED while it closes: neither tells that
 * the close is through. */
int nng_close_pending(void);

#endif
