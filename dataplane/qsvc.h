/* Test services of the agent-to-agent stream protocol (docs/protocol.md,
 * "Agent ⇄ agent (QUIC)"): the answering side of ECHO, DISCARD and SOURCE,
 * and a client helper that opens a stream with a header and reads the
 * answer. It sits above quic.h and never sees ngtcp2.
 *
 * The endpoint owner forwards its quic callbacks here (one qsvc per
 * endpoint, or per role): qsvc_accept_stream from on_stream_open,
 * qsvc_on_data / qsvc_on_writable / qsvc_on_stream_close (they return 1 when
 * the stream is qsvc's, 0 to let the caller handle it), qsvc_on_conn_close
 * from on_close. Everything runs on the loop thread.
 *
 * Answering side: the header is read (at most STREAMHDR_MAX + 2 bytes), then
 * an answer is sent. A refused stream gets its answer and a FIN, then, after
 * QSVC_REFUSE_GRACE seconds (time for the answer to arrive: a reset discards
 * unsent data), a reset with the same code, unless the opener ended the
 * stream first. Services:
 * - ECHO sends back every byte; at most QSVC_ECHO_MAX bytes wait in memory
 *   for the send buffer (quic.c opens the receive window as soon as data is
 *   delivered, so the service cannot slow the opener down: beyond the bound
 *   the stream is reset with QSVC_ERR_OVERFLOW). FIN after the opener's FIN.
 * - DISCARD counts and drops bytes; FIN after the opener's FIN.
 * - SOURCE sends bytes as fast as the stream takes them: the byte at stream
 *   offset o is (o % 251). It stops with a FIN after option "bytes"
 *   (decimal) bytes, or when the opener ends its direction.
 * PUSH, PULL and HTTP go to the handler registered for the kind
 * (qsvc_set_handler; the media relay registers PUSH and PULL), which
 * accepts or refuses on the header and then owns the stream; without one
 * they are refused with QSVC_ERR_NOT_IMPLEMENTED. */
#ifndef CASCADE_QSVC_H
#define CASCADE_QSVC_H

#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "quic.h"
#include "streamhdr.h"

/* Application error codes: in Answer.code of a refusal and in the reset that
 * follows it (RESET_STREAM / STOP_SENDING). 0 means accepted. */
#define QSVC_ERR_BAD_HEADER 0x11     /* header too long, does not decode, wrong
                                        version, unknown kind, path or options
                                        out of bounds, stream ended inside it */
#define QSVC_ERR_NOT_IMPLEMENTED 0x12 /* PUSH, PULL, HTTP without a handler */
#define QSVC_ERR_BAD_OPTION 0x13     /* an option's value is invalid */
#define QSVC_ERR_OVERFLOW 0x14       /* ECHO: the opener sent more than
                                        QSVC_ECHO_MAX ahead of what it read */
#define QSVC_ERR_NO_MEMORY 0x15      /* out of memory on this stream */
#define QSVC_ERR_BAD_ANSWER 0x16     /* client side: the answer is invalid or
                                        the stream ended before it */
#define QSVC_ERR_CONN_CLOSED 0x17    /* client side, local only: the
                                        connection went away (on_close) */

#define QSVC_ECHO_MAX (1024 * 1024)  /* ECHO bytes buffered per stream */
#define QSVC_REFUSE_GRACE 0.5        /* seconds from refusal to reset */
#define QSVC_SOURCE_MOD 251          /* SOURCE byte at offset o: o % 251 */

typedef struct qsvc qsvc;

/* Totals since qsvc_new (answering side, and client calls). */
typedef struct qsvc_stats {
  uint64_t accepted;       /* streams answered accepted */
  uint64_t refused;        /* streams answered refused */
  uint64_t echo_bytes;     /* ECHO bytes sent back */
  uint64_t discard_bytes;  /* DISCARD bytes dropped */
  uint64_t source_bytes;   /* SOURCE bytes sent */
  uint64_t resets;         /* streams this side reset */
} qsvc_stats;

/* Client calls: what qsvc_open's stream brings. Every call ends with
 * exactly one on_close; nothing follows it. */
typedef struct qsvc_call_cb {
  /* The answer (or a local failure to read one: QSVC_ERR_BAD_ANSWER). On a
   * refusal the helper resets the stream with |code| afterwards. */
  void (*on_answer)(quic_conn *c, int64_t sid, int accepted, uint32_t code,
                    const char *reason, void *ud);
  /* Payload after the answer, in order; |fin| ends the peer's direction. */
  void (*on_data)(quic_conn *c, int64_t sid, const uint8_t *data, size_t len,
                  int fin, void *ud);
  /* A payload write the caller made on |sid| that was cut short may be
   * retried (quic_stream_write directly on |sid|). */
  void (*on_writable)(quic_conn *c, int64_t sid, void *ud);
  /* The stream is gone: |app_code| from quic's on_stream_close, or
   * QSVC_ERR_CONN_CLOSED when the connection closed first. */
  void (*on_close)(quic_conn *c, int64_t sid, uint64_t app_code, void *ud);
} qsvc_call_cb;

/* A handler serves the peer-opened streams of one kind (PUSH, PULL, HTTP)
 * in place of the QSVC_ERR_NOT_IMPLEMENTED refusal. */
typedef struct qsvc_handler {
  /* Decide on the header |h| of stream |sid|: 0 accepts; non-zero refuses
   * with *|code| (non-zero; QSVC_ERR_BAD_OPTION if left 0) and the reason
   * written to |reason| (|reasonlen| bytes), which qsvc answers and resets
   * as for its own refusals. It must not write to or reset the stream. */
  int (*check)(quic_conn *c, int64_t sid, const streamhdr_t *h, uint32_t *code,
               char *reason, size_t reasonlen, void *ud);
  /* The accepted answer is sent and qsvc has forgotten |sid|: the handler
   * owns it from here (qsvc_on_data, qsvc_on_writable and
   * qsvc_on_stream_close return 0 for it, so the endpoint owner forwards
   * them to the handler). |data|/|len| are the payload bytes that came
   * with the header, |fin| tells whether the opener's direction already
   * ended. Not called when the answer could not be written (the stream is
   * then reset with QSVC_ERR_NO_MEMORY). */
  void (*start)(quic_conn *c, int64_t sid, const streamhdr_t *h, const uint8_t *data,
                size_t len, int fin, void *ud);
} qsvc_handler_t;

/* qsvc_set_handler routes streams of |kind| (STREAM_PUSH, STREAM_PULL or
 * STREAM_HTTP) to |h| (copied; NULL restores the refusal) with |ud|.
 * -EINVAL for the test service kinds. */
int qsvc_set_handler(qsvc *q, stream_kind_t kind, const qsvc_handler_t *h, void *ud);

/* qsvc_new makes a service table on |loop| (used for the refusal timers).
 * Returns NULL when out of memory. */
qsvc *qsvc_new(struct ev_loop *loop);

/* qsvc_free releases every stream state without callbacks and without
 * touching the connections (call it with, or after, quic_endpoint_free, or
 * after every connection's on_close). Accepts NULL. */
void qsvc_free(qsvc *q);

/* qsvc_get_stats returns the totals of |q|. */
const qsvc_stats *qsvc_get_stats(const qsvc *q);

/* qsvc_accept_stream takes peer-opened stream |sid| of |c| to read its
 * header and serve it. Returns 0, or -ENOMEM (the stream is then reset). */
int qsvc_accept_stream(qsvc *q, quic_conn *c, int64_t sid);

/* qsvc_open opens a stream on |c|, sends the header (|kind|, |path|, and
 * |nopts| options from |keys| / |values|) and returns 0 with |*sid| set;
 * the answer comes through |cb|. The caller may write payload on |*sid| at
 * once with quic_stream_write. -EAGAIN when the peer's stream limit is
 * reached, -EINVAL when the header is out of bounds (or does not fit the
 * stream's send buffer), other negative errors from quic_stream_open. */
int qsvc_open(qsvc *q, quic_conn *c, stream_kind_t kind, const char *path,
              size_t nopts, const char *const *keys,
              const char *const *values, const qsvc_call_cb *cb, void *ud,
              int64_t *sid);

/* qsvc_on_data, qsvc_on_writable, qsvc_on_stream_close: the quic callbacks
 * of the same name. Return 1 when |sid| of |c| is qsvc's, else 0. */
int qsvc_on_data(qsvc *q, quic_conn *c, int64_t sid, const uint8_t *data,
                 size_t len, int fin);
int qsvc_on_writable(qsvc *q, quic_conn *c, int64_t sid);
int qsvc_on_stream_close(qsvc *q, quic_conn *c, int64_t sid,
                         uint64_t app_code);

/* qsvc_on_conn_close drops every stream of |c| (client calls get on_close
 * with QSVC_ERR_CONN_CLOSED). Call it from quic's on_close. */
void qsvc_on_conn_close(qsvc *q, quic_conn *c);

#endif
