/* The SP wire of nng's tcp and tls+tcp transports, as the control channel
 * speaks it (the gate REP's side, the agent REQ's), without I/O: the
 * 8-byte header each side sends first (0, 'S', 'P', 0, the sender's
 * protocol number, big-endian, 0, 0), then messages, each an 8-byte
 * big-endian length and that many bytes. A REQ message starts with its
 * 4-byte request id, high bit set (no hops: the agents dial directly); the
 * reply starts with the same 4 bytes. See docs/protocol.md ("Transport"). */
#ifndef CASCADE_SPWIRE_H
#define CASCADE_SPWIRE_H

#include <stddef.h>
#include <stdint.h>

#define SPWIRE_HEADER_LEN 8
#define SPWIRE_LEN_LEN 8
#define SPWIRE_ID_LEN 4
#define SPWIRE_PROTO_REQ 0x30      /* req0, the agents */
#define SPWIRE_PROTO_REP 0x31      /* rep0, the controller */
#define SPWIRE_ID_BIT 0x80000000u  /* set in a request id: the last word of the backtrace */

/* spwire_rx_feed's results */
#define SPWIRE_MORE 0              /* all of the bytes taken, no message complete yet */
#define SPWIRE_MESSAGE 1           /* one message complete (more bytes may follow) */
#define SPWIRE_BAD_HEADER (-1)     /* the peer's header is not the expected protocol's */
#define SPWIRE_TOO_LONG (-2)       /* a message over the bound, or too short for its id */
#define SPWIRE_BAD_ID (-3)         /* a request word without the high bit (a hop) */
#define SPWIRE_NOMEM (-4)

/* The receiving side of one connection: the peer's header, then messages. */
typedef struct spwire_rx {
  size_t max;                /* the largest body accepted (after the id) */
  uint16_t peer;             /* the protocol the peer's header must name */
  int state;                 /* header, length, id, body */
  uint8_t word[SPWIRE_LEN_LEN]; /* the header, length or id being read */
  size_t have;               /* bytes of word[] or of the body so far */
  uint64_t len;              /* the current message's body length */
  uint32_t id;               /* the current message's request id */
  uint8_t *body;             /* owned until handed out; grows as bytes come */
  size_t cap;
} spwire_rx_t;

/* spwire_header writes the 8-byte header of a sender speaking |proto|. */
void spwire_header(uint8_t out[SPWIRE_HEADER_LEN], uint16_t proto);

/* spwire_rx_init prepares |rx| to read a REQ peer's header, then messages
 * whose body (after the request id) is at most |max| bytes. */
void spwire_rx_init(spwire_rx_t *rx, size_t max);

/* spwire_rx_expect makes |rx| (before any byte) want a header naming
 * |proto| instead: SPWIRE_PROTO_REP on the agent's side, whose messages are
 * replies (their request word has the high bit set too). */
void spwire_rx_expect(spwire_rx_t *rx, uint16_t proto);

/* spwire_rx_free frees what |rx| holds; accepts a zeroed one. */
void spwire_rx_free(spwire_rx_t *rx);

/* spwire_rx_header_done: the peer's header has been read. */
int spwire_rx_header_done(const spwire_rx_t *rx);

/* spwire_rx_feed takes bytes from |data| (|len|) up to the end of the
 * next message and sets *used to how many it took. SPWIRE_MESSAGE hands
 * out the request id in *id and the body in *body (the caller frees it;
 * never NULL) and *bodylen; SPWIRE_MORE took everything; a negative result
 * ends the connection. The body's buffer grows with the bytes received,
 * not with the length announced. */
int spwire_rx_feed(spwire_rx_t *rx, const uint8_t *data, size_t len, size_t *used,
                   uint32_t *id, uint8_t **body, size_t *bodylen);

/* spwire_frame_len is the bytes a message with a body of |len| takes on
 * the wire (length, id, body). */
size_t spwire_frame_len(size_t len);

/* spwire_frame_head writes to |out| the length and id that start a
 * message to or from request |id| whose body of |len| bytes follows. */
void spwire_frame_head(uint8_t out[SPWIRE_LEN_LEN + SPWIRE_ID_LEN], uint32_t id, size_t len);

/* spwire_frame writes to |out| (spwire_frame_len(len) bytes) request |id|,
 * or the reply to it, carrying |body|. */
void spwire_frame(uint8_t *out, uint32_t id, const void *body, size_t len);

#endif
