/* RTMP protocol state without sockets: the handshake (server: simple and
 * digest "complex" handshakes; client: simple), the chunk stream reader
 * (fmt 0-3 headers, extended timestamps, Set Chunk Size, Abort, message
 * size limits, acknowledgement bookkeeping) and the chunk writer. The
 * caller moves bytes; these functions only transform them. */
#ifndef CASCADE_RTMP_PROTO_H
#define CASCADE_RTMP_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/* Errors (negative). */
#define RTMP_EVERSION (-1)    /* C0/S0 is not version 3 */
#define RTMP_EHANDSHAKE (-2)  /* malformed handshake */
#define RTMP_ECHUNKSIZE (-3)  /* Set Chunk Size 0 or over RTMP_MAX_CHUNK_SIZE */
#define RTMP_ETOOBIG (-4)     /* message length over the limit */
#define RTMP_ECSID (-5)       /* too many chunk streams, or fmt 1-3 on a new one */
#define RTMP_EPROTO (-6)      /* malformed protocol control message */
#define RTMP_ENOMEM (-7)
#define RTMP_EPENDING (-8)    /* partial messages over the reader's max_buffered */
#define RTMP_EBUDGET (-9)     /* partial messages over the shared ingest budget */

/* Message types. */
enum {
  RTMP_MSG_SET_CHUNK_SIZE = 1,
  RTMP_MSG_ABORT = 2,
  RTMP_MSG_ACK = 3,
  RTMP_MSG_USER_CONTROL = 4,
  RTMP_MSG_WINDOW_ACK_SIZE = 5,
  RTMP_MSG_SET_PEER_BW = 6,
  RTMP_MSG_AUDIO = 8,
  RTMP_MSG_VIDEO = 9,
  RTMP_MSG_DATA_AMF3 = 15,
  RTMP_MSG_SHARED_OBJ_AMF3 = 16,
  RTMP_MSG_COMMAND_AMF3 = 17,
  RTMP_MSG_DATA_AMF0 = 18,
  RTMP_MSG_SHARED_OBJ_AMF0 = 19,
  RTMP_MSG_COMMAND_AMF0 = 20,
  RTMP_MSG_AGGREGATE = 22
};

/* User control events. */
enum {
  RTMP_UC_STREAM_BEGIN = 0,
  RTMP_UC_STREAM_EOF = 1,
  RTMP_UC_STREAM_DRY = 2,
  RTMP_UC_SET_BUFFER_LENGTH = 3,
  RTMP_UC_STREAM_IS_RECORDED = 4,
  RTMP_UC_PING_REQUEST = 6,
  RTMP_UC_PING_RESPONSE = 7
};

#define RTMP_HANDSHAKE_SIZE 1536
#define RTMP_DEFAULT_CHUNK_SIZE 128
#define RTMP_MAX_CHUNK_SIZE 0xffffff        /* 16 MiB - 1: the largest message */
#define RTMP_DEFAULT_MAX_MSG (16 * 1024 * 1024)
#define RTMP_MAX_CHUNK_STREAMS 64           /* per connection, open at once */

/* --- handshake --- */

enum { RTMP_HS_SERVER = 0, RTMP_HS_CLIENT = 1 };

typedef struct rtmp_hs {
  int role;
  int state;                 /* internal */
  int complex;               /* server: the client sent a valid digest C1 */
  int scheme;                /* digest offset scheme used (0: at 8, 1: at 772) */
  uint64_t rng;
  size_t have;               /* bytes gathered in |in| */
  size_t out_len, out_off;   /* pending output in |out| */
  uint8_t in[1 + 2 * RTMP_HANDSHAKE_SIZE];
  uint8_t out[1 + 2 * RTMP_HANDSHAKE_SIZE];
} rtmp_hs_t;

/* rtmp_hs_init prepares a handshake for |role|. |seed| 0 draws random
 * bytes from GnuTLS; any other value makes S1/C1 deterministic (tests).
 * A client has C0+C1 ready in its output at once. */
void rtmp_hs_init(rtmp_hs_t *hs, int role, uint64_t seed);

/* rtmp_hs_feed consumes handshake bytes and queues replies. Returns the
 * bytes consumed (fewer than |len| only once done: the rest belongs to the
 * chunk stream) or RTMP_E*. */
ssize_t rtmp_hs_feed(rtmp_hs_t *hs, const uint8_t *data, size_t len);

/* rtmp_hs_output is the pending output (to send); rtmp_hs_sent marks |n|
 * bytes of it as sent. */
const uint8_t *rtmp_hs_output(const rtmp_hs_t *hs, size_t *len);
void rtmp_hs_sent(rtmp_hs_t *hs, size_t n);

/* rtmp_hs_done tells whether the handshake finished (replies may still be
 * pending in the output). */
int rtmp_hs_done(const rtmp_hs_t *hs);

/* rtmp_hs_digest_find validates the digest of a 1536-byte C1 (|key| =
 * the Flash Player key prefix) or S1 (the Media Server key prefix) at
 * either offset scheme; returns the digest's offset or -1. Exposed for
 * tests and the load generator. */
int rtmp_hs_digest_find(const uint8_t *pkt, const uint8_t *key, size_t key_len);

/* The well-known keys: the Flash Player key (first 30 bytes sign C1) and
 * the Flash Media Server key (first 36 bytes sign S1; all 68 key S2). */
extern const uint8_t rtmp_fp_key[62];
extern const uint8_t rtmp_fms_key[68];
#define RTMP_FP_KEY_OPEN 30
#define RTMP_FMS_KEY_OPEN 36

/* rtmp_hs_digest_pos is where the digest sits in a packet for |scheme|. */
size_t rtmp_hs_digest_pos(const uint8_t *pkt, int scheme);

/* rtmp_hmac_sha256 is HMAC-SHA256 of |data| without the 32 bytes at
 * |skip| (skip >= len: the whole data). */
int rtmp_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *data, size_t len,
                     size_t skip, uint8_t out[32]);

/* --- chunk stream reader --- */

typedef struct rtmp_msg {
  uint32_t csid;
  uint8_t type;
  uint32_t stream_id;
  uint32_t ts;               /* milliseconds, wraps at 2^32 */
  uint32_t len;
  const uint8_t *data;       /* valid during the callback only */
  void *owned;               /* audio/video with rtmp_reader_set_alloc: the buffer's owner
                                (what alloc returned); the callback takes it over and must
                                release it. NULL otherwise. */
} rtmp_msg_t;

/* Called for each complete message except Set Chunk Size, Abort,
 * Acknowledgement and Window Acknowledgement Size, which the reader
 * applies itself. Nonzero stops rtmp_reader_feed, which returns it. */
typedef int (*rtmp_msg_cb)(void *arg, const rtmp_msg_t *m);

typedef struct rtmp_cstream rtmp_cstream_t;

/* What readers may hold together (several connections, one process). Each
 * reader adds what it holds to |used| and takes it back when it lets it go;
 * a reader that would take |used| over |max| fails with RTMP_EBUDGET. */
typedef struct rtmp_budget {
  size_t used, max;
} rtmp_budget_t;

typedef struct rtmp_reader {
  uint32_t chunk_size;       /* incoming, set by the peer */
  uint32_t max_msg;          /* limit for audio/video messages */
  uint32_t max_other;        /* limit for every other message type */
  size_t max_buffered;       /* held for all chunk streams together (|buffered|) */
  rtmp_budget_t *budget;     /* optional, shared; not owned */
  /* optional: audio/video bodies assembled straight into the caller's
   * buffers (rtmp_reader_set_alloc) */
  uint8_t *(*av_alloc)(void *arg, uint8_t type, uint32_t ts, uint32_t len, void **owner);
  void (*av_release)(void *arg, void *owner);
  void *av_arg;
  size_t buffered;           /* held: the whole length of each caller-buffer message in
                                progress, and the capacity of the reader's own buffers */
  uint64_t bytes_in;         /* every byte fed */
  uint32_t window;           /* peer's Window Acknowledgement Size; 0 = none */
  uint64_t last_ack;         /* bytes_in when we last acknowledged */
  uint32_t peer_acked;       /* sequence number of the peer's last Acknowledgement */
  rtmp_cstream_t *cs;        /* open chunk streams */
  unsigned ncs, cs_cap;
  rtmp_cstream_t *cur;       /* chunk stream whose chunk body is being read */
  uint32_t chunk_left;       /* body bytes left in the current chunk */
  uint8_t hdr[18];           /* header being gathered */
  uint8_t hdr_len;
} rtmp_reader_t;

/* rtmp_reader_init: chunk size 128, |max_msg| (0 = 16 MiB) for audio and
 * video, |max_other| (0 = 1 MiB) for other messages, max_buffered
 * rtmp_reader_default_bound() of them, no budget. */
void rtmp_reader_init(rtmp_reader_t *r, uint32_t max_msg, uint32_t max_other);

/* rtmp_reader_default_bound is the max_buffered rtmp_reader_init gives: one
 * largest message of each kind and 1 MiB more. */
size_t rtmp_reader_default_bound(const rtmp_reader_t *r);

/* rtmp_reader_set_bound sets max_buffered. What the reader already holds
 * stays; a lower bound refuses growth beyond it (RTMP_EPENDING). */
void rtmp_reader_set_bound(rtmp_reader_t *r, size_t max_buffered);

/* rtmp_reader_set_budget makes the reader count what it holds in |b|
 * (NULL: none), moving what it already holds from the old budget. Growth
 * beyond b->max fails the feed with RTMP_EBUDGET. The budget must outlive
 * the reader's holdings (rtmp_reader_free gives them back). */
void rtmp_reader_set_budget(rtmp_reader_t *r, rtmp_budget_t *b);

/* rtmp_reader_trim frees the reader's own buffers of chunk streams with no
 * message in progress, giving their capacity back (bound and budget). */
void rtmp_reader_trim(rtmp_reader_t *r);

/* rtmp_reader_free frees partial messages and gives back to the budget
 * all the reader held; accepts NULL. */
void rtmp_reader_free(rtmp_reader_t *r);

/* rtmp_reader_set_alloc makes the reader assemble each audio/video message
 * (of at least one byte) straight into a buffer |alloc| returns for it,
 * with an owner handle, instead of its own buffer: the message callback
 * then gets the owner in rtmp_msg_t.owned and keeps it (no copy). A message
 * abandoned half-way, or left at rtmp_reader_free, goes to |release|.
 * |alloc| returning NULL fails the feed with RTMP_ENOMEM. */
void rtmp_reader_set_alloc(rtmp_reader_t *r,
                           uint8_t *(*alloc)(void *arg, uint8_t type, uint32_t ts, uint32_t len,
                                             void **owner),
                           void (*release)(void *arg, void *owner), void *arg);

/* rtmp_reader_feed parses |len| bytes, calling |cb| per message. Returns
 * 0, RTMP_E* on a protocol error, or the callback's nonzero value. */
int rtmp_reader_feed(rtmp_reader_t *r, const uint8_t *data, size_t len, rtmp_msg_cb cb,
                     void *arg);

/* rtmp_reader_ack_due tells (1) whether an Acknowledgement is due under
 * the peer's window, stores its sequence number and marks it sent. */
int rtmp_reader_ack_due(rtmp_reader_t *r, uint32_t *seq);

/* --- chunk writer --- */

typedef struct rtmp_wcs {
  uint32_t csid;
  uint32_t ts, len, sid;
  uint8_t type;
  uint8_t used;
} rtmp_wcs_t;

#define RTMP_WRITER_CS 8

typedef struct rtmp_writer {
  uint32_t chunk_size;       /* outgoing */
  rtmp_wcs_t cs[RTMP_WRITER_CS];  /* last header per chunk stream, for fmt 1 */
} rtmp_writer_t;

/* rtmp_writer_init: outgoing chunk size 128 until rtmp_writer_set_chunk_size. */
void rtmp_writer_init(rtmp_writer_t *w);

/* One message in chunked form, sent by pieces without copying the body:
 * the first chunk header, the fmt 3 header every later chunk repeats, and
 * a cursor in the wire bytes. */
typedef struct rtmp_omsg {
  const uint8_t *body;
  size_t len;
  uint32_t chunk;
  uint8_t h0_len, h3_len;
  uint8_t h0[18];
  uint8_t h3[7];
  size_t pos;                /* wire bytes already sent */
} rtmp_omsg_t;

/* rtmp_writer_begin lays out a message on |csid| (2..65599): fmt 0 for
 * the first on that chunk stream or when the time goes back, else fmt 1
 * with the delta; extended timestamps as needed. |body| must stay valid
 * until the message is sent. Messages must go out in the order begun. */
void rtmp_writer_begin(rtmp_writer_t *w, rtmp_omsg_t *m, uint32_t csid, uint8_t type,
                       uint32_t sid, uint32_t ts, const uint8_t *body, size_t len);

/* rtmp_omsg_wire_len is the message's size on the wire. */
size_t rtmp_omsg_wire_len(const rtmp_omsg_t *m);

/* rtmp_omsg_iov fills up to |cap| entries describing the unsent wire
 * bytes from the cursor on; returns the count (0 when all sent). */
int rtmp_omsg_iov(const rtmp_omsg_t *m, struct iovec *iov, int cap);

/* rtmp_omsg_advance moves the cursor by |n| sent bytes; returns the wire
 * bytes still unsent. */
size_t rtmp_omsg_advance(rtmp_omsg_t *m, size_t n);

/* rtmp_writer_put serializes a whole message into |out| (an amf_buf_t
 * used as a byte buffer). Returns 0 or RTMP_ENOMEM. */
struct amf_buf;
int rtmp_writer_put(rtmp_writer_t *w, struct amf_buf *out, uint32_t csid, uint8_t type,
                    uint32_t sid, uint32_t ts, const uint8_t *body, size_t len);

/* Protocol control messages, serialized into |out| on chunk stream 2.
 * rtmp_put_set_chunk_size also switches the writer to |size| (clamped to
 * 1..RTMP_MAX_CHUNK_SIZE) for every later message. */
int rtmp_put_set_chunk_size(rtmp_writer_t *w, struct amf_buf *out, uint32_t size);
int rtmp_put_u32_msg(rtmp_writer_t *w, struct amf_buf *out, uint8_t type, uint32_t v);
int rtmp_put_peer_bw(rtmp_writer_t *w, struct amf_buf *out, uint32_t bw, uint8_t limit);
int rtmp_put_user_control(rtmp_writer_t *w, struct amf_buf *out, uint16_t event, uint32_t v);

/* rtmp_writer_set_chunk_size changes the outgoing chunk size for
 * messages begun after it without announcing it (the peer must learn it
 * otherwise). Values are clamped to 1..RTMP_MAX_CHUNK_SIZE. */
void rtmp_writer_set_chunk_size(rtmp_writer_t *w, uint32_t size);

#endif
