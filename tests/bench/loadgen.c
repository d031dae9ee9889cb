/* cascade-loadgen: RTMP publishers and RTMP/HTTP-FLV players in one
 * process on one libev loop, for benchmarks against any RTMP server.
 *
 * Publishers read an FLV file once (flv_parse), then send it in real time
 * (paced by tag timestamps, looping with timestamps that keep growing)
 * after connect/createStream/publish and @setDataFrame onMetaData. Every
 * 100 ms of stream time they add an AMF0 data message
 * "onCascadeStamp" <wall clock in microseconds>, from which players
 * measure end-to-end latency. Servers that drop unknown data messages
 * (nginx-rtmp forwards only metadata) still carry the same clock in an
 * H.264 SEI NAL unit (user data unregistered, UUID "cascade-loadgen1",
 * 16 hex digits) that leads the first AVC frame of every 100 ms; players
 * report both measures. Players count frames, bytes and gaps (a
 * video timestamp that goes back, or jumps by more than twice the median
 * frame interval). Each player's time to first frame is measured from the
 * start of its TCP connect to the first video keyframe (the first picture
 * a player can show; "ttff") and to the first audio or video frame of any
 * kind ("ttfm"); the summary has their quantiles. JSON lines go to stdout:
 * one per --report interval and a summary at the end; diagnostics go to
 * stderr.
 *
 * The RTMP handshake, chunk reader/writer, AMF0 and FLV parsing are the
 * data plane's own (rtmp_proto.h, amf.h, flv.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "amf.h"
#include "flv.h"
#include "hub.h"
#include "rtmp_proto.h"

#define LG_READ_BUF (256 * 1024)
#define LG_OUT_HIGH (1024 * 1024)     /* publisher: stop pacing above this much unsent */
#define LG_OUT_MAX (32 * 1024 * 1024) /* any connection: unsent output beyond is an error */
#define LG_HTTP_HDR_MAX 8192
#define LG_STAMP_MS 100
#define LG_SEI_UUID "cascade-loadgen1"   /* 16 bytes, no zero byte */
#define LG_SEI_LEN (3 + 16 + 16 + 1)      /* NAL header, type, size, UUID, digits, trailing bits */
#define LG_CHUNK_SIZE 4096
#define LG_VINT_SAMPLES 15
#define LG_MAX_ERRLOG 20

/* ------------------------------------------------------------ histogram */

/* Latency in microseconds: exact below 128 us, then 64 sub-buckets per
 * power of two (under 1.6 % error), up to 2^47 us. */
#define HIST_GROUPS 40
#define HIST_BUCKETS (128 + HIST_GROUPS * 64)

typedef struct lg_hist {
  uint64_t n, max;
  uint32_t b[HIST_BUCKETS];
} lg_hist_t;

static unsigned hist_idx(uint64_t v) {
  if (v < 128) return (unsigned)v;
  int e = 63 - __builtin_clzll(v);
  if (e > 7 + HIST_GROUPS - 1) return HIST_BUCKETS - 1;
  return 128 + (unsigned)(e - 7) * 64 + (unsigned)((v >> (e - 6)) & 63);
}

static uint64_t hist_val(unsigned i) {
  if (i < 128) return i;
  unsigned e = (i - 128) / 64 + 7, sub = (i - 128) % 64;
  return ((uint64_t)(64 + sub) << (e - 6)) + ((1ull << (e - 6)) >> 1);
}

static void hist_add(lg_hist_t *h, uint64_t v) {
  h->b[hist_idx(v)]++;
  h->n++;
  if (v > h->max) h->max = v;
}

/* hist_ms is quantile |q| in milliseconds; -1 when empty. */
static double hist_ms(const lg_hist_t *h, double q) {
  if (h->n == 0) return -1;
  uint64_t want = (uint64_t)ceil(q * (double)h->n), seen = 0;
  if (want == 0) want = 1;
  for (unsigned i = 0; i < HIST_BUCKETS; i++) {
    seen += h->b[i];
    if (seen >= want) {
      uint64_t v = hist_val(i);
      return (double)(v > h->max ? h->max : v) / 1000.0;
    }
  }
  return (double)h->max / 1000.0;
}

/* ------------------------------------------------------------ types */

enum { LG_PUB = 0, LG_PLAY_RTMP, LG_PLAY_HTTP };

/* Connection states, in order. */
enum {
  ST_CONNECTING = 0,
  ST_HANDSHAKE,     /* RTMP handshake */
  ST_CONNECT,       /* connect sent */
  ST_CREATE,        /* createStream sent */
  ST_START,         /* publish/play sent */
  ST_HTTP_HDR,      /* HTTP request sent, reading the response header */
  ST_LIVE,          /* publishing, or playing */
  ST_DEAD
};

/* Transaction ids of our commands. */
enum { TX_CONNECT = 1, TX_RELEASE, TX_FCPUB, TX_CREATE, TX_START };

typedef struct lg_url {
  int http;
  char host[256];
  char port[16];
  char app[256];        /* rtmp: the application */
  char name[512];       /* rtmp: stream name; http: path without ".flv" */
  char tcurl[1024];
} lg_url_t;

typedef struct lg_media {
  hub_frame_t **f;      /* the file's tags, in order; owned */
  size_t n;
  uint32_t first_ts;
  uint32_t loop_ms;     /* stream time one pass of the file lasts */
  uint64_t bytes;
  unsigned nal_len;     /* AVC NAL unit length size from the avcC, 0: no AVC */
} lg_media_t;

typedef struct lg lg_t;

typedef struct lg_conn {
  lg_t *lg;
  int kind, idx, state;
  int fd;
  ev_io rio, wio;
  ev_timer tm;            /* publisher pacing */
  char stream[600];       /* stream name (rtmp) or path (http) */
  rtmp_hs_t *hs;          /* during the handshake; owned */
  rtmp_reader_t rd;
  rtmp_writer_t wr;
  amf_buf_t out;          /* unsent output from out_off on */
  size_t out_off;
  uint32_t sid;           /* message stream id from createStream */
  /* publisher */
  size_t pos;             /* next tag of the media */
  uint64_t loop;          /* passes of the file completed */
  double t0;              /* loop time when stream time 0 was due */
  uint64_t next_stamp;    /* stream time of the next onCascadeStamp */
  uint64_t next_sei;      /* stream time of the next SEI stamp */
  /* player */
  int counted;            /* counted in players_connected */
  int chunked;            /* HTTP: chunked transfer coding */
  int ck_state;           /* dechunker: 0 size line, 1 data, 2 CRLF after data, 3 trailer */
  uint64_t ck_left;
  amf_buf_t hdr;          /* HTTP response header gathered */
  flv_parser_t flv;
  int flv_init;
  int have_vts;
  uint32_t last_vts;
  unsigned nal_len;       /* from the AVC sequence header received */
  uint32_t vint;          /* median video frame interval (ms), 0 until known */
  uint32_t vsamples[LG_VINT_SAMPLES];
  unsigned nvs;
  double t_conn;          /* monotonic seconds at the start of the connect */
  int got_media, got_key; /* time to first frame / keyframe recorded */
} lg_conn_t;

typedef struct lg_counters {
  uint64_t frames, bytes, gaps, stamps, pub_frames, pub_bytes;
} lg_counters_t;

struct lg {
  struct ev_loop *loop;
  /* options */
  unsigned npub, nplay, nstreams;
  int same;
  double duration, ramp, report, delay, warmup, hold;
  lg_url_t pub_url, play_url;
  const char *file;
  int verbose;
  /* state */
  lg_media_t media;
  struct addrinfo *pub_ai, *play_ai;
  lg_conn_t **conns;      /* publishers first, then players; owned */
  unsigned nconns, started_players;
  unsigned publishers_live, players_connected;
  uint64_t errors, errlogged;
  lg_counters_t tot, last, warm;  /* totals; at the last report; at the end of --warmup */
  lg_hist_t lat_iv, lat_all;     /* from onCascadeStamp data messages */
  lg_hist_t sei_iv, sei_all;     /* from SEI stamps in the video */
  lg_hist_t ttff_all, ttfm_all;  /* time to first keyframe / first frame */
  uint64_t held;                 /* players closed by --hold */
  amf_buf_t scratch;             /* a video frame with its SEI stamp */
  double pub_lag_max;     /* seconds, this interval */
  double start;
  double sum_start;       /* where the summary's counts begin (--warmup) */
  uint8_t *rbuf;
  ev_timer report_tm, end_tm, ramp_tm, warm_tm;
  ev_signal sigint, sigterm;
};

static void conn_close(lg_conn_t *c);
static void conn_release(lg_conn_t *c);
static void conn_flush(lg_conn_t *c);
static void pub_pump(lg_conn_t *c);

static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t wall_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static const char *kind_name(int kind) {
  return kind == LG_PUB ? "publisher" : kind == LG_PLAY_RTMP ? "rtmp player" : "http player";
}

/* conn_error counts a failed connection and logs the first few. */
static void conn_error(lg_conn_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void conn_error(lg_conn_t *c, const char *fmt, ...) {
  lg_t *lg = c->lg;
  lg->errors++;
  if (lg->errlogged < LG_MAX_ERRLOG || lg->verbose) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "loadgen: [%s %u %s] %s\n", kind_name(c->kind), (unsigned)c->idx, c->stream,
            msg);
    if (++lg->errlogged == LG_MAX_ERRLOG && !lg->verbose)
      fprintf(stderr, "loadgen: further errors are counted, not logged\n");
  }
  conn_close(c);
}

/* ------------------------------------------------------------ URLs, media */

static int url_parse(const char *s, lg_url_t *u) {
  memset(u, 0, sizeof(*u));
  const char *p;
  if (strncmp(s, "rtmp://", 7) == 0) {
    p = s + 7;
    snprintf(u->port, sizeof(u->port), "1935");
  } else if (strncmp(s, "http://", 7) == 0) {
    p = s + 7;
    u->http = 1;
    snprintf(u->port, sizeof(u->port), "80");
  } else {
    return -1;
  }
  const char *slash = strchr(p, '/');
  if (slash == NULL) return -1;
  const char *colon = memchr(p, ':', (size_t)(slash - p));
  const char *hend = colon ? colon : slash;
  if (hend == p || (size_t)(hend - p) >= sizeof(u->host)) return -1;
  memcpy(u->host, p, (size_t)(hend - p));
  if (colon) {
    size_t n = (size_t)(slash - colon - 1);
    if (n == 0 || n >= sizeof(u->port)) return -1;
    memcpy(u->port, colon + 1, n);
    u->port[n] = '\0';
  }
  const char *path = slash + 1;
  if (u->http) {
    size_t n = strlen(path);
    if (n > 4 && strcmp(path + n - 4, ".flv") == 0) n -= 4;
    if (n == 0 || n + 1 >= sizeof(u->name)) return -1;
    u->name[0] = '/';
    memcpy(u->name + 1, path, n);
    u->name[n + 1] = '\0';
    return 0;
  }
  const char *s2 = strchr(path, '/');
  if (s2 == NULL || s2 == path || s2[1] == '\0') return -1;
  if ((size_t)(s2 - path) >= sizeof(u->app) || strlen(s2 + 1) >= sizeof(u->name)) return -1;
  memcpy(u->app, path, (size_t)(s2 - path));
  snprintf(u->name, sizeof(u->name), "%s", s2 + 1);
  snprintf(u->tcurl, sizeof(u->tcurl), "rtmp://%s:%s/%s", u->host, u->port, u->app);
  return 0;
}

static struct addrinfo *resolve(const lg_url_t *u) {
  struct addrinfo hints, *ai = NULL;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = getaddrinfo(u->host, u->port, &hints, &ai);
  if (rc != 0) {
    fprintf(stderr, "loadgen: %s:%s: %s\n", u->host, u->port, gai_strerror(rc));
    return NULL;
  }
  return ai;
}

static void media_free(lg_media_t *m) {
  for (size_t i = 0; i < m->n; i++) hub_frame_unref(m->f[i]);
  free(m->f);
  memset(m, 0, sizeof(*m));
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

/* media_load reads every tag of an FLV file into memory. */
static int media_load(lg_media_t *m, const char *path) {
  FILE *fp = fopen(path, "rb");
  if (fp == NULL) {
    fprintf(stderr, "loadgen: %s: %s\n", path, strerror(errno));
    return -1;
  }
  flv_parser_t p;
  flv_parser_init(&p, 1);
  uint8_t buf[65536];
  size_t cap = 0, got;
  int rc = 0;
  uint32_t last_v = 0, last_a = 0, vprev = 0;
  int have_v = 0;
  uint32_t *vd = NULL;
  size_t nvd = 0, vdcap = 0;
  memset(m, 0, sizeof(*m));
  while (rc == 0 && (got = fread(buf, 1, sizeof(buf), fp)) > 0) {
    size_t off = 0;
    while (off < got) {
      hub_frame_t *f;
      long k = flv_parse(&p, buf + off, got - off, &f);
      if (k < 0) {
        fprintf(stderr, "loadgen: %s: %s\n", path, flv_strerror((int)k));
        rc = -1;
        break;
      }
      off += (size_t)k;
      if (f == NULL) continue;
      if (m->n == cap) {
        size_t nc = cap ? cap * 2 : 1024;
        hub_frame_t **nf = realloc(m->f, nc * sizeof(*nf));
        if (nf == NULL) {
          hub_frame_unref(f);
          rc = -1;
          break;
        }
        m->f = nf;
        cap = nc;
      }
      if (m->n == 0) m->first_ts = f->ts;
      m->f[m->n++] = f;
      m->bytes += f->len;
      if (f->type == HUB_VIDEO && f->seq_header && f->len > 9 && (f->data[0] & 0x8f) == 7)
        m->nal_len = (f->data[9] & 3) + 1u;
      if (f->type == HUB_VIDEO && !f->seq_header) {
        if (have_v && f->ts > vprev) {
          if (nvd == vdcap) {
            size_t nc = vdcap ? vdcap * 2 : 256;
            uint32_t *n2 = realloc(vd, nc * sizeof(*n2));
            if (n2 == NULL) {
              rc = -1;
              break;
            }
            vd = n2;
            vdcap = nc;
          }
          vd[nvd++] = f->ts - vprev;
        }
        vprev = f->ts;
        have_v = 1;
        last_v = f->ts;
      } else if (f->type == HUB_AUDIO && !f->seq_header) {
        last_a = f->ts;
      }
    }
  }
  if (ferror(fp)) rc = -1;
  fclose(fp);
  flv_parser_free(&p);
  if (rc == 0 && !have_v && last_a == 0) {
    fprintf(stderr, "loadgen: %s: no audio or video frames\n", path);
    rc = -1;
  }
  if (rc == 0) {
    uint32_t vint = 40;
    if (nvd) {
      qsort(vd, nvd, sizeof(*vd), cmp_u32);
      vint = vd[nvd / 2];
    }
    /* One pass lasts until the frame after the last video frame is due,
     * so video timestamps stay evenly spaced across the loop. */
    uint32_t end = last_v + vint;
    if (last_a + 1 > end) end = last_a + 1;
    m->loop_ms = end > m->first_ts ? end - m->first_ts : vint;
  }
  free(vd);
  if (rc != 0) media_free(m);
  return rc;
}

/* ------------------------------------------------------------ output */

static size_t out_pending(const lg_conn_t *c) { return c->out.len - c->out_off; }

static void conn_flush(lg_conn_t *c) {
  if (c->state == ST_DEAD || c->state == ST_CONNECTING) return;
  if (c->out.err) {
    conn_error(c, "output buffer overflow (%zu bytes unsent)", out_pending(c));
    return;
  }
  while (out_pending(c) > 0) {
    ssize_t n = send(c->fd, c->out.data + c->out_off, out_pending(c), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      conn_error(c, "send: %s", strerror(errno));
      return;
    }
    c->out_off += (size_t)n;
  }
  if (out_pending(c) == 0) {
    c->out.len = c->out_off = 0;
    ev_io_stop(c->lg->loop, &c->wio);
  } else {
    if (c->out_off > c->out.len / 2) {
      memmove(c->out.data, c->out.data + c->out_off, out_pending(c));
      c->out.len -= c->out_off;
      c->out_off = 0;
    }
    ev_io_start(c->lg->loop, &c->wio);
  }
}

/* send_cmd writes the AMF0 command in |b| on chunk stream 3. */
static void send_cmd(lg_conn_t *c, uint32_t sid, amf_buf_t *b) {
  if (b->err) c->out.err = b->err;
  else rtmp_writer_put(&c->wr, &c->out, 3, RTMP_MSG_COMMAND_AMF0, sid, 0, b->data, b->len);
  amf_buf_free(b);
}

static void send_connect(lg_conn_t *c) {
  const lg_url_t *u = c->kind == LG_PUB ? &c->lg->pub_url : &c->lg->play_url;
  amf_buf_t b;
  amf_buf_init(&b);
  amf_put_string(&b, "connect");
  amf_put_number(&b, TX_CONNECT);
  amf_put_object_start(&b);
  amf_put_prop_string(&b, "app", u->app);
  amf_put_prop_string(&b, "type", "nonprivate");
  amf_put_prop_string(&b, "flashVer", c->kind == LG_PUB ? "FMLE/3.0 (compatible; cascade-loadgen)"
                                                        : "LNX 9,0,124,2");
  amf_put_prop_string(&b, "tcUrl", u->tcurl);
  if (c->kind != LG_PUB) {
    amf_put_prop_bool(&b, "fpad", 0);
    amf_put_prop_number(&b, "capabilities", 15);
    amf_put_prop_number(&b, "audioCodecs", 4071);
    amf_put_prop_number(&b, "videoCodecs", 252);
    amf_put_prop_number(&b, "videoFunction", 1);
  }
  amf_put_object_end(&b);
  rtmp_put_set_chunk_size(&c->wr, &c->out, LG_CHUNK_SIZE);
  send_cmd(c, 0, &b);
  c->state = ST_CONNECT;
}

static void send_simple_cmd(lg_conn_t *c, const char *name, double txn, const char *arg) {
  amf_buf_t b;
  amf_buf_init(&b);
  amf_put_string(&b, name);
  amf_put_number(&b, txn);
  amf_put_null(&b);
  if (arg) amf_put_string(&b, arg);
  send_cmd(c, 0, &b);
}

/* ------------------------------------------------------------ publisher */

static const uint8_t *amf_prefix(size_t *len) {
  static const uint8_t sdf[] = {AMF_STRING, 0, 13, '@', 's', 'e', 't', 'D', 'a', 't', 'a',
                                'F',        'r', 'a', 'm', 'e'};
  *len = sizeof(sdf);
  return sdf;
}

static void pub_send_stamp(lg_conn_t *c, uint32_t ts) {
  uint8_t body[3 + 14 + 9];
  uint64_t now = wall_us();
  double v = (double)now;
  uint64_t bits;
  body[0] = AMF_STRING;
  body[1] = 0;
  body[2] = 14;
  memcpy(body + 3, "onCascadeStamp", 14);
  body[17] = AMF_NUMBER;
  memcpy(&bits, &v, 8);
  for (int i = 0; i < 8; i++) body[18 + i] = (uint8_t)(bits >> (56 - 8 * i));
  rtmp_writer_put(&c->wr, &c->out, 5, RTMP_MSG_DATA_AMF0, c->sid, ts, body, sizeof(body));
}

/* sei_put appends a length-prefixed SEI NAL unit carrying the wall clock
 * in hex digits (no emulation prevention needed: no zero bytes). */
static void sei_put(amf_buf_t *b, unsigned nal_len) {
  uint8_t nal[4 + LG_SEI_LEN];
  char hex[17];
  unsigned k = 0;
  for (unsigned i = 0; i < nal_len; i++)
    nal[k++] = (uint8_t)((uint32_t)LG_SEI_LEN >> (8 * (nal_len - 1 - i)));
  nal[k++] = 6;      /* SEI */
  nal[k++] = 5;      /* user data unregistered */
  nal[k++] = 32;     /* payload size */
  memcpy(nal + k, LG_SEI_UUID, 16);
  k += 16;
  snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)wall_us());
  memcpy(nal + k, hex, 16);
  k += 16;
  nal[k++] = 0x80;   /* rbsp trailing bits */
  amf_put_raw(b, nal, k);
}

/* pub_pump sends every tag that is due, then sleeps until the next. */
static void pub_pump(lg_conn_t *c) {
  lg_t *lg = c->lg;
  const lg_media_t *m = &lg->media;
  double now = ev_now(lg->loop);
  while (c->state == ST_LIVE && out_pending(c) < LG_OUT_HIGH) {
    const hub_frame_t *f = m->f[c->pos];
    int header = f->type == HUB_SCRIPT || f->seq_header;
    if (c->loop > 0 && header) {
      /* metadata and sequence headers go out once, at the start */
      if (++c->pos == m->n) c->pos = 0, c->loop++;
      continue;
    }
    uint64_t st = (uint64_t)(f->ts - m->first_ts) + c->loop * m->loop_ms;
    double due = c->t0 + (double)st / 1000.0;
    if (due > now) {
      ev_timer_stop(lg->loop, &c->tm);
      ev_timer_set(&c->tm, due - now, 0.);
      ev_timer_start(lg->loop, &c->tm);
      break;
    }
    if (now - due > lg->pub_lag_max) lg->pub_lag_max = now - due;
    uint32_t ts = (uint32_t)st;
    if (!header && st >= c->next_stamp) {
      pub_send_stamp(c, ts);
      c->next_stamp = st - st % LG_STAMP_MS + LG_STAMP_MS;
    }
    if (f->type == HUB_SCRIPT) {
      /* the file's onMetaData goes out as @setDataFrame onMetaData */
      size_t plen;
      const uint8_t *pre = amf_prefix(&plen);
      amf_buf_t b;
      amf_buf_init(&b);
      amf_put_raw(&b, pre, plen);
      amf_put_raw(&b, f->data, f->len);
      if (!b.err)
        rtmp_writer_put(&c->wr, &c->out, 5, RTMP_MSG_DATA_AMF0, c->sid, ts, b.data, b.len);
      amf_buf_free(&b);
    } else if (f->type == HUB_VIDEO && st >= c->next_sei && m->nal_len && f->len > 5 &&
               (f->data[0] & 0x8f) == 7 && f->data[1] == 1) {
      amf_buf_t *b = &lg->scratch;
      b->len = 0;
      amf_put_raw(b, f->data, 5);
      sei_put(b, m->nal_len);
      amf_put_raw(b, f->data + 5, f->len - 5);
      if (!b->err) rtmp_writer_put(&c->wr, &c->out, 6, f->type, c->sid, ts, b->data, b->len);
      c->next_sei = st - st % LG_STAMP_MS + LG_STAMP_MS;
      lg->tot.pub_frames++;
    } else {
      rtmp_writer_put(&c->wr, &c->out, f->type == HUB_AUDIO ? 4 : 6, f->type, c->sid, ts,
                      f->data, f->len);
      lg->tot.pub_frames++;
    }
    lg->tot.pub_bytes += f->len;
    if (++c->pos == m->n) c->pos = 0, c->loop++;
    if (out_pending(c) > LG_OUT_MAX) c->out.err = 1;
    if (c->out.err) break;
  }
  conn_flush(c);
}

static void pub_timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)loop;
  (void)revents;
  pub_pump(w->data);
  conn_release(w->data);
}

/* ------------------------------------------------------------ player */

/* player_sei looks for our SEI stamp in the first NAL unit of an AVC frame. */
static void player_sei(lg_conn_t *c, const uint8_t *d, size_t len) {
  unsigned nl = c->nal_len;
  if (len < 5 + nl + LG_SEI_LEN) return;
  const uint8_t *n = d + 5 + nl;
  if (n[0] != 6 || n[1] != 5 || n[2] != 32 || memcmp(n + 3, LG_SEI_UUID, 16) != 0) return;
  uint64_t sent = 0;
  for (int i = 0; i < 16; i++) {
    uint8_t ch = n[19 + i];
    int v = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
    if (v < 0) return;
    sent = sent << 4 | (uint64_t)v;
  }
  uint64_t now = wall_us(), lat = now > sent ? now - sent : 0;
  hist_add(&c->lg->sei_iv, lat);
  hist_add(&c->lg->sei_all, lat);
}

static void player_video(lg_conn_t *c, uint32_t ts, const uint8_t *d, size_t len) {
  if (len < 2) return;
  if ((d[0] & 0x8f) == 7) {
    if (d[1] == 0 && len > 9) c->nal_len = (d[9] & 3) + 1u;
    else if (d[1] == 1 && c->nal_len) player_sei(c, d, len);
  }
  int ex = d[0] & 0x80;
  if ((d[0] >> 4 & 7) == 5) return;                   /* video info/command frame */
  if (ex ? (d[0] & 0x0f) == 0 || (d[0] & 0x0f) == 2   /* sequence start/end */
         : ((d[0] & 0x0f) == 7 || (d[0] & 0x0f) == 12) && d[1] != 1)
    return;                                           /* AVC/HEVC header or end of sequence */
  if (c->have_vts) {
    int32_t delta = (int32_t)(ts - c->last_vts);
    if (delta < 0) {
      c->lg->tot.gaps++;
    } else if (c->vint == 0) {
      if (delta > 0) c->vsamples[c->nvs++] = (uint32_t)delta;
      if (c->nvs == LG_VINT_SAMPLES) {
        uint32_t s[LG_VINT_SAMPLES];
        memcpy(s, c->vsamples, sizeof(s));
        qsort(s, LG_VINT_SAMPLES, sizeof(s[0]), cmp_u32);
        c->vint = s[LG_VINT_SAMPLES / 2];
      }
    } else if ((uint32_t)delta > 2 * c->vint) {
      c->lg->tot.gaps++;
    }
  }
  c->have_vts = 1;
  c->last_vts = ts;
}

/* player_data looks for onCascadeStamp <number>. */
static void player_data(lg_conn_t *c, const uint8_t *d, size_t len) {
  if (len < 26 || d[0] != AMF_STRING || d[1] != 0 || d[2] != 14 ||
      memcmp(d + 3, "onCascadeStamp", 14) != 0 || d[17] != AMF_NUMBER)
    return;
  uint64_t bits = 0;
  for (int i = 0; i < 8; i++) bits = bits << 8 | d[18 + i];
  double v;
  memcpy(&v, &bits, 8);
  if (!(v > 0)) return;
  uint64_t now = wall_us(), sent = (uint64_t)v;
  uint64_t lat = now > sent ? now - sent : 0;
  hist_add(&c->lg->lat_iv, lat);
  hist_add(&c->lg->lat_all, lat);
  c->lg->tot.stamps++;
}

/* player_first records the time to the first frame and to the first
 * video keyframe (not a sequence header, not a command frame). */
static void player_first(lg_conn_t *c, uint8_t type, const uint8_t *d, size_t len) {
  if (c->got_key || len < 2) return;
  int key = 0;
  if (type == RTMP_MSG_VIDEO) {
    int ex = d[0] & 0x80, ftype = d[0] >> 4 & 7;
    int header = ex ? (d[0] & 0x0f) == 0 || (d[0] & 0x0f) == 2
                    : ((d[0] & 0x0f) == 7 || (d[0] & 0x0f) == 12) && d[1] != 1;
    if (ftype == 5 || header) return;
    key = ftype == 1;
  } else if ((d[0] >> 4) == 10 && d[1] == 0) {
    return;   /* AAC AudioSpecificConfig */
  }
  uint64_t us = (uint64_t)((mono_s() - c->t_conn) * 1e6);
  if (!c->got_media) {
    c->got_media = 1;
    hist_add(&c->lg->ttfm_all, us);
  }
  if (key) {
    c->got_key = 1;
    hist_add(&c->lg->ttff_all, us);
  }
}

static void player_msg(lg_conn_t *c, uint8_t type, uint32_t ts, const uint8_t *d, size_t len) {
  if (type == RTMP_MSG_VIDEO || type == RTMP_MSG_AUDIO) player_first(c, type, d, len);
  switch (type) {
  case RTMP_MSG_VIDEO:
    c->lg->tot.frames++;
    player_video(c, ts, d, len);
    break;
  case RTMP_MSG_AUDIO:
    c->lg->tot.frames++;
    break;
  case RTMP_MSG_DATA_AMF0:
    player_data(c, d, len);
    break;
  default:
    break;
  }
}

static void player_live(lg_conn_t *c) {
  c->state = ST_LIVE;
  if (!c->counted) {
    c->counted = 1;
    c->lg->players_connected++;
  }
}

/* ------------------------------------------------------------ RTMP input */

static double cmd_num(const amf_value_t *v, size_t i) {
  double d = -1;
  amf_num(amf_at(v, i), &d);
  return d;
}

static int on_command(lg_conn_t *c, const rtmp_msg_t *m) {
  amf_value_t *v = NULL;
  if (amf_decode_list(m->data, m->len, NULL, &v) != 0) {
    amf_free(v);
    conn_error(c, "bad AMF command");
    return 1;
  }
  const char *name = amf_str(amf_at(v, 0));
  double txn = cmd_num(v, 1);
  int rc = 0;
  if (name == NULL) {
    /* ignored */
  } else if (strcmp(name, "_result") == 0) {
    if (txn == TX_CONNECT && c->state == ST_CONNECT) {
      if (c->kind == LG_PUB) {
        send_simple_cmd(c, "releaseStream", TX_RELEASE, c->stream);
        send_simple_cmd(c, "FCPublish", TX_FCPUB, c->stream);
      } else {
        rtmp_put_u32_msg(&c->wr, &c->out, RTMP_MSG_WINDOW_ACK_SIZE, 2500000);
      }
      send_simple_cmd(c, "createStream", TX_CREATE, NULL);
      c->state = ST_CREATE;
    } else if (txn == TX_CREATE && c->state == ST_CREATE) {
      double sid = cmd_num(v, 3);
      c->sid = sid > 0 ? (uint32_t)sid : 1;
      amf_buf_t b;
      amf_buf_init(&b);
      amf_put_string(&b, c->kind == LG_PUB ? "publish" : "play");
      amf_put_number(&b, c->kind == LG_PUB ? TX_START : 0);
      amf_put_null(&b);
      amf_put_string(&b, c->stream);
      if (c->kind == LG_PUB) amf_put_string(&b, "live");
      else amf_put_number(&b, -2000);
      if (b.err) c->out.err = b.err;
      else rtmp_writer_put(&c->wr, &c->out, 8, RTMP_MSG_COMMAND_AMF0, c->sid, 0, b.data, b.len);
      amf_buf_free(&b);
      if (c->kind != LG_PUB) {
        /* Set Buffer Length: stream id and milliseconds */
        uint8_t uc[10] = {0, RTMP_UC_SET_BUFFER_LENGTH};
        uint32_t ms = 3000;
        for (int i = 0; i < 4; i++) {
          uc[2 + i] = (uint8_t)(c->sid >> (24 - 8 * i));
          uc[6 + i] = (uint8_t)(ms >> (24 - 8 * i));
        }
        rtmp_writer_put(&c->wr, &c->out, 2, RTMP_MSG_USER_CONTROL, 0, 0, uc, sizeof(uc));
      }
      c->state = ST_START;
    }
  } else if (strcmp(name, "_error") == 0) {
    if (txn == TX_CONNECT || txn == TX_CREATE) {
      conn_error(c, "%s refused", txn == TX_CONNECT ? "connect" : "createStream");
      rc = 1;
    }
  } else if (strcmp(name, "onStatus") == 0) {
    const amf_value_t *info = amf_at(v, 3);
    const char *code = amf_str(amf_get(info, "code"));
    const char *level = amf_str(amf_get(info, "level"));
    if (code == NULL) code = "";
    if (strcmp(code, "NetStream.Publish.Start") == 0 && c->kind == LG_PUB) {
      if (c->state != ST_LIVE) {
        c->state = ST_LIVE;
        c->lg->publishers_live++;
        c->t0 = ev_now(c->lg->loop);
        pub_pump(c);
      }
    } else if (strcmp(code, "NetStream.Play.Start") == 0 && c->kind != LG_PUB) {
      player_live(c);
    } else if (level && strcmp(level, "error") == 0) {
      conn_error(c, "%s", code);
      rc = 1;
    }
  }
  amf_free(v);
  return rc;
}

/* on_aggregate hands each FLV tag of an aggregate message to the player. */
static void on_aggregate(lg_conn_t *c, const rtmp_msg_t *m) {
  const uint8_t *p = m->data;
  size_t left = m->len;
  uint32_t base = 0;
  int first = 1;
  while (left >= FLV_TAG_HEADER_LEN) {
    uint32_t size = (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    uint32_t ts = ((uint32_t)p[4] << 16 | (uint32_t)p[5] << 8 | p[6]) | (uint32_t)p[7] << 24;
    if (size > left - FLV_TAG_HEADER_LEN) break;
    if (first) base = ts, first = 0;
    player_msg(c, p[0] & 0x1f, m->ts + (ts - base), p + FLV_TAG_HEADER_LEN, size);
    size_t step = FLV_TAG_HEADER_LEN + (size_t)size + FLV_PREV_SIZE_LEN;
    if (step > left) break;
    p += step;
    left -= step;
  }
}

static int on_rtmp_msg(void *arg, const rtmp_msg_t *m) {
  lg_conn_t *c = arg;
  switch (m->type) {
  case RTMP_MSG_COMMAND_AMF0:
    return on_command(c, m);
  case RTMP_MSG_USER_CONTROL:
    if (m->len >= 6 && m->data[0] == 0 && m->data[1] == RTMP_UC_PING_REQUEST) {
      uint32_t v = (uint32_t)m->data[2] << 24 | (uint32_t)m->data[3] << 16 |
                   (uint32_t)m->data[4] << 8 | m->data[5];
      rtmp_put_user_control(&c->wr, &c->out, RTMP_UC_PING_RESPONSE, v);
    }
    return 0;
  case RTMP_MSG_AUDIO:
  case RTMP_MSG_VIDEO:
  case RTMP_MSG_DATA_AMF0:
    if (c->kind != LG_PUB) player_msg(c, m->type, m->ts, m->data, m->len);
    return 0;
  case RTMP_MSG_AGGREGATE:
    if (c->kind != LG_PUB) on_aggregate(c, m);
    return 0;
  default:
    return 0;
  }
}

static void rtmp_input(lg_conn_t *c, const uint8_t *p, size_t n) {
  if (c->hs) {
    ssize_t k = rtmp_hs_feed(c->hs, p, n);
    if (k < 0) {
      conn_error(c, "handshake failed (%d)", (int)k);
      return;
    }
    size_t hl;
    const uint8_t *ho = rtmp_hs_output(c->hs, &hl);
    if (hl) {
      amf_put_raw(&c->out, ho, hl);
      rtmp_hs_sent(c->hs, hl);
    }
    if (!rtmp_hs_done(c->hs)) return;
    free(c->hs);
    c->hs = NULL;
    send_connect(c);
    p += k;
    n -= (size_t)k;
  }
  if (n) {
    int rc = rtmp_reader_feed(&c->rd, p, n, on_rtmp_msg, c);
    if (c->state == ST_DEAD) return;
    if (rc < 0) {
      conn_error(c, "RTMP protocol error (%d)", rc);
      return;
    }
    uint32_t seq;
    if (rtmp_reader_ack_due(&c->rd, &seq)) rtmp_put_u32_msg(&c->wr, &c->out, RTMP_MSG_ACK, seq);
  }
}

/* ------------------------------------------------------------ HTTP input */

static void http_body(lg_conn_t *c, const uint8_t *p, size_t n) {
  while (n > 0 && c->state != ST_DEAD) {
    hub_frame_t *f;
    long k = flv_parse(&c->flv, p, n, &f);
    if (k < 0) {
      conn_error(c, "FLV: %s", flv_strerror((int)k));
      return;
    }
    if (f) {
      player_msg(c, f->type, f->ts, f->data, f->len);
      hub_frame_unref(f);
    }
    p += k;
    n -= (size_t)k;
  }
}

/* http_dechunk passes the data of a chunked body to http_body. */
static void http_dechunk(lg_conn_t *c, const uint8_t *p, size_t n) {
  while (n > 0 && c->state != ST_DEAD) {
    if (c->ck_state == 1) {
      size_t k = c->ck_left < n ? (size_t)c->ck_left : n;
      http_body(c, p, k);
      p += k;
      n -= k;
      if ((c->ck_left -= k) == 0) c->ck_state = 2;
      continue;
    }
    uint8_t ch = *p++;
    n--;
    if (c->ck_state == 0) {
      int dv = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
               : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
      if (dv >= 0 && c->ck_left < (1ull << 40)) {
        c->ck_left = c->ck_left * 16 + (uint64_t)dv;
      } else if (ch == '\n') {
        c->ck_state = c->ck_left ? 1 : 3;
      }
    } else if (c->ck_state == 2) {
      if (ch == '\n') c->ck_state = 0, c->ck_left = 0;
    } else {
      /* the last chunk: the stream ended */
      conn_error(c, "HTTP stream ended");
      return;
    }
  }
}

static void http_input(lg_conn_t *c, const uint8_t *p, size_t n) {
  if (c->state == ST_HTTP_HDR) {
    size_t old = c->hdr.len, take = LG_HTTP_HDR_MAX - old;
    if (take > n) take = n;
    amf_put_raw(&c->hdr, p, take);
    if (c->hdr.err) {
      conn_error(c, "out of memory");
      return;
    }
    const char *h = (const char *)c->hdr.data;
    const char *end = memmem(h, c->hdr.len, "\r\n\r\n", 4);
    if (end == NULL) {
      if (c->hdr.len == LG_HTTP_HDR_MAX) conn_error(c, "HTTP response header too large");
      return;
    }
    size_t hlen = (size_t)(end - h) + 4;
    int status = 0;
    if (sscanf(h, "HTTP/%*d.%*d %d", &status) != 1 || status != 200) {
      conn_error(c, "HTTP status %d", status);
      return;
    }
    for (const char *l = memmem(h, hlen, "\r\n", 2); l && l < end; l = memmem(l + 2, (size_t)(end - l), "\r\n", 2)) {
      if (strncasecmp(l + 2, "transfer-encoding:", 18) == 0) {
        const char *e = memmem(l + 2, (size_t)(end - l), "\r\n", 2);
        size_t ll = e ? (size_t)(e - l) : 0;
        char line[256];
        if (ll >= sizeof(line)) ll = sizeof(line) - 1;
        memcpy(line, l + 2, ll);
        line[ll] = '\0';
        for (char *q = line; *q; q++)
          if (*q >= 'A' && *q <= 'Z') *q = (char)(*q + 32);
        if (strstr(line, "chunked")) c->chunked = 1;
      }
    }
    player_live(c);
    size_t body_off = hlen - old;   /* bytes of this read that were header */
    amf_buf_free(&c->hdr);
    p += body_off;
    n -= body_off;
  }
  if (c->chunked) http_dechunk(c, p, n);
  else http_body(c, p, n);
}

/* ------------------------------------------------------------ connections */

static void conn_read_cb(struct ev_loop *loop, ev_io *w, int revents) {
  lg_conn_t *c = w->data;
  (void)loop;
  (void)revents;
  ssize_t n = recv(c->fd, c->lg->rbuf, LG_READ_BUF, 0);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
    conn_error(c, "recv: %s", strerror(errno));
    conn_release(c);
    return;
  }
  if (n == 0) {
    conn_error(c, "closed by the server");
    conn_release(c);
    return;
  }
  if (c->kind != LG_PUB) c->lg->tot.bytes += (uint64_t)n;
  if (c->kind == LG_PLAY_HTTP) http_input(c, c->lg->rbuf, (size_t)n);
  else rtmp_input(c, c->lg->rbuf, (size_t)n);
  if (c->state != ST_DEAD) conn_flush(c);
  conn_release(c);
}

static void conn_connected(lg_conn_t *c) {
  int err = 0;
  socklen_t len = sizeof(err);
  if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
  if (err) {
    conn_error(c, "connect: %s", strerror(err));
    return;
  }
  ev_io_start(c->lg->loop, &c->rio);
  if (c->kind == LG_PLAY_HTTP) {
    const lg_url_t *u = &c->lg->play_url;
    char req[1400];
    int k = snprintf(req, sizeof(req),
                     "GET %s.flv HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: cascade-loadgen\r\n"
                     "Accept: */*\r\n\r\n", c->stream, u->host, u->port);
    amf_put_raw(&c->out, req, (size_t)k);
    flv_parser_init(&c->flv, 1);
    c->flv_init = 1;
    c->state = ST_HTTP_HDR;
  } else {
    c->hs = malloc(sizeof(*c->hs));
    if (c->hs == NULL) {
      conn_error(c, "out of memory");
      return;
    }
    rtmp_hs_init(c->hs, RTMP_HS_CLIENT, 0);
    size_t hl;
    const uint8_t *ho = rtmp_hs_output(c->hs, &hl);
    amf_put_raw(&c->out, ho, hl);
    rtmp_hs_sent(c->hs, hl);
    c->state = ST_HANDSHAKE;
  }
  conn_flush(c);
}

static void conn_write_cb(struct ev_loop *loop, ev_io *w, int revents) {
  lg_conn_t *c = w->data;
  (void)loop;
  (void)revents;
  if (c->state == ST_CONNECTING) {
    ev_io_stop(c->lg->loop, &c->wio);
    conn_connected(c);
  } else {
    conn_flush(c);
    if (c->kind == LG_PUB && c->state == ST_LIVE && out_pending(c) < LG_OUT_HIGH &&
        !ev_is_active(&c->tm))
      pub_pump(c);
  }
  conn_release(c);
}

static void conn_close(lg_conn_t *c) {
  lg_t *lg = c->lg;
  if (c->state == ST_DEAD) return;
  if (c->kind == LG_PUB && c->state == ST_LIVE) lg->publishers_live--;
  if (c->counted) {
    c->counted = 0;
    lg->players_connected--;
  }
  c->state = ST_DEAD;
  ev_io_stop(lg->loop, &c->rio);
  ev_io_stop(lg->loop, &c->wio);
  ev_timer_stop(lg->loop, &c->tm);
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
}

/* conn_release frees a closed connection's buffers. Not from inside a
 * parser callback: the reader still uses its state when the callback
 * returns, so watcher callbacks call it last. */
static void conn_release(lg_conn_t *c) {
  if (c->state != ST_DEAD) return;
  free(c->hs);
  c->hs = NULL;
  rtmp_reader_free(&c->rd);
  amf_buf_free(&c->out);
  c->out_off = 0;
  amf_buf_free(&c->hdr);
  if (c->flv_init) flv_parser_free(&c->flv);
  c->flv_init = 0;
}

/* hold_cb ends a player --hold seconds after its connect began. */
static void hold_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)loop;
  (void)revents;
  lg_conn_t *c = w->data;
  if (c->state == ST_DEAD) return;
  c->lg->held++;
  conn_close(c);
  conn_release(c);
}

static lg_conn_t *conn_new(lg_t *lg, int kind, unsigned idx) {
  lg_conn_t *c = calloc(1, sizeof(*c));
  if (c == NULL) return NULL;
  c->lg = lg;
  c->kind = kind;
  c->idx = (int)idx;
  c->fd = -1;
  c->state = ST_DEAD;
  const lg_url_t *u = kind == LG_PUB ? &lg->pub_url : &lg->play_url;
  unsigned s = lg->nstreams ? idx % lg->nstreams : 0;
  if (lg->same || lg->nstreams <= 1) snprintf(c->stream, sizeof(c->stream), "%s", u->name);
  else snprintf(c->stream, sizeof(c->stream), "%s-%u", u->name, s);
  ev_io_init(&c->rio, conn_read_cb, -1, EV_READ);
  ev_io_init(&c->wio, conn_write_cb, -1, EV_WRITE);
  c->rio.data = c->wio.data = c;
  /* publishers pace with tm; players use it for --hold */
  if (kind == LG_PUB) ev_timer_init(&c->tm, pub_timer_cb, 0., 0.);
  else ev_timer_init(&c->tm, hold_cb, lg->hold, 0.);
  c->tm.data = c;
  return c;
}

/* conn_start opens the TCP connection (non-blocking). */
static void conn_start(lg_conn_t *c) {
  lg_t *lg = c->lg;
  const struct addrinfo *ai = c->kind == LG_PUB ? lg->pub_ai : lg->play_ai;
  rtmp_reader_init(&c->rd, 0, 0);
  rtmp_writer_init(&c->wr);
  amf_buf_init(&c->out);
  amf_buf_init(&c->hdr);
  c->out.max = LG_OUT_MAX + LG_OUT_HIGH;
  c->state = ST_CONNECTING;
  c->t_conn = mono_s();
  c->got_media = c->got_key = 0;
  c->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
  if (c->fd < 0) {
    conn_error(c, "socket: %s", strerror(errno));
    conn_release(c);
    return;
  }
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  ev_io_set(&c->rio, c->fd, EV_READ);
  ev_io_set(&c->wio, c->fd, EV_WRITE);
  if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
    conn_error(c, "connect: %s", strerror(errno));
    conn_release(c);
    return;
  }
  ev_io_start(lg->loop, &c->wio);
  if (c->kind != LG_PUB && lg->hold > 0) ev_timer_start(lg->loop, &c->tm);
}

/* ------------------------------------------------------------ reports */

static void print_report(lg_t *lg, int final) {
  double now = ev_now(lg->loop), t = now - lg->start;
  if (final) {
    lg_counters_t sum = lg->tot;
    const lg_counters_t *s = &sum;
    double secs = now - lg->sum_start > 0 ? now - lg->sum_start : 1;
    sum.frames -= lg->warm.frames;
    sum.bytes -= lg->warm.bytes;
    sum.gaps -= lg->warm.gaps;
    sum.stamps -= lg->warm.stamps;
    sum.pub_frames -= lg->warm.pub_frames;
    sum.pub_bytes -= lg->warm.pub_bytes;
    printf("{\"summary\":true,\"t\":%.3f,\"secs\":%.3f,\"publishers\":%u,\"players_connected\":%u,"
           "\"players_started\":%u,\"frames\":%llu,\"bytes\":%llu,\"gaps\":%llu,"
           "\"stamps\":%llu,\"pub_frames\":%llu,\"pub_bytes\":%llu,\"gbps\":%.4f,"
           "\"lat_p50_ms\":%.3f,\"lat_p99_ms\":%.3f,\"lat_max_ms\":%.3f,"
           "\"sei_p50_ms\":%.3f,\"sei_p99_ms\":%.3f,\"sei_max_ms\":%.3f,\"errors\":%llu,"
           "\"ttff_n\":%llu,\"ttff_p50_ms\":%.3f,\"ttff_p99_ms\":%.3f,\"ttff_max_ms\":%.3f,"
           "\"ttfm_n\":%llu,\"ttfm_p50_ms\":%.3f,\"ttfm_p99_ms\":%.3f,\"ttfm_max_ms\":%.3f,"
           "\"held\":%llu}\n",
           t, secs, lg->publishers_live, lg->players_connected, lg->started_players,
           (unsigned long long)s->frames, (unsigned long long)s->bytes,
           (unsigned long long)s->gaps, (unsigned long long)s->stamps,
           (unsigned long long)s->pub_frames, (unsigned long long)s->pub_bytes,
           (double)s->bytes * 8 / secs / 1e9, hist_ms(&lg->lat_all, 0.5),
           hist_ms(&lg->lat_all, 0.99), lg->lat_all.n ? (double)lg->lat_all.max / 1000.0 : -1,
           hist_ms(&lg->sei_all, 0.5), hist_ms(&lg->sei_all, 0.99),
           lg->sei_all.n ? (double)lg->sei_all.max / 1000.0 : -1, (unsigned long long)lg->errors,
           (unsigned long long)lg->ttff_all.n, hist_ms(&lg->ttff_all, 0.5),
           hist_ms(&lg->ttff_all, 0.99), lg->ttff_all.n ? (double)lg->ttff_all.max / 1000.0 : -1,
           (unsigned long long)lg->ttfm_all.n, hist_ms(&lg->ttfm_all, 0.5),
           hist_ms(&lg->ttfm_all, 0.99), lg->ttfm_all.n ? (double)lg->ttfm_all.max / 1000.0 : -1,
           (unsigned long long)lg->held);
  } else {
    lg_counters_t d = lg->tot;
    d.frames -= lg->last.frames;
    d.bytes -= lg->last.bytes;
    d.gaps -= lg->last.gaps;
    d.stamps -= lg->last.stamps;
    d.pub_frames -= lg->last.pub_frames;
    d.pub_bytes -= lg->last.pub_bytes;
    printf("{\"t\":%.3f,\"publishers\":%u,\"players_connected\":%u,\"frames\":%llu,"
           "\"bytes\":%llu,\"gaps\":%llu,\"stamps\":%llu,\"pub_frames\":%llu,\"pub_bytes\":%llu,"
           "\"pub_lag_ms\":%.1f,\"lat_p50_ms\":%.3f,\"lat_p99_ms\":%.3f,\"lat_max_ms\":%.3f,"
           "\"sei_p50_ms\":%.3f,\"sei_p99_ms\":%.3f,\"sei_max_ms\":%.3f,\"errors\":%llu}\n",
           t, lg->publishers_live, lg->players_connected, (unsigned long long)d.frames,
           (unsigned long long)d.bytes, (unsigned long long)d.gaps,
           (unsigned long long)d.stamps, (unsigned long long)d.pub_frames,
           (unsigned long long)d.pub_bytes, lg->pub_lag_max * 1000, hist_ms(&lg->lat_iv, 0.5),
           hist_ms(&lg->lat_iv, 0.99), lg->lat_iv.n ? (double)lg->lat_iv.max / 1000.0 : -1,
           hist_ms(&lg->sei_iv, 0.5), hist_ms(&lg->sei_iv, 0.99),
           lg->sei_iv.n ? (double)lg->sei_iv.max / 1000.0 : -1, (unsigned long long)lg->errors);
    lg->last = lg->tot;
    memset(&lg->lat_iv, 0, sizeof(lg->lat_iv));
    memset(&lg->sei_iv, 0, sizeof(lg->sei_iv));
    lg->pub_lag_max = 0;
  }
  fflush(stdout);
}

static void report_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)loop;
  (void)revents;
  print_report(w->data, 0);
}

/* warm_cb ends --warmup: the summary counts from here. */
static void warm_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)revents;
  lg_t *lg = w->data;
  lg->sum_start = ev_now(loop);
  lg->warm = lg->tot;
  memset(&lg->lat_all, 0, sizeof(lg->lat_all));
  memset(&lg->sei_all, 0, sizeof(lg->sei_all));
  memset(&lg->ttff_all, 0, sizeof(lg->ttff_all));
  memset(&lg->ttfm_all, 0, sizeof(lg->ttfm_all));
}

static void stop_all(lg_t *lg) {
  ev_timer_stop(lg->loop, &lg->report_tm);
  ev_timer_stop(lg->loop, &lg->ramp_tm);
  ev_timer_stop(lg->loop, &lg->end_tm);
  ev_timer_stop(lg->loop, &lg->warm_tm);
  ev_signal_stop(lg->loop, &lg->sigint);
  ev_signal_stop(lg->loop, &lg->sigterm);
  for (unsigned i = 0; i < lg->nconns; i++) conn_close(lg->conns[i]);
  ev_break(lg->loop, EVBREAK_ALL);
}

static void end_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)loop;
  (void)revents;
  lg_t *lg = w->data;
  print_report(lg, 1);
  stop_all(lg);
}

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents) {
  (void)loop;
  (void)revents;
  lg_t *lg = w->data;
  print_report(lg, 1);
  stop_all(lg);
}

/* ramp_cb starts players at --ramp per second after --delay. */
static void ramp_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)revents;
  lg_t *lg = w->data;
  double el = ev_now(loop) - lg->start - lg->delay;
  unsigned target = lg->nplay;
  if (lg->ramp > 0 && el >= 0) {
    double t = floor(el * lg->ramp) + 1;
    if (t < target) target = (unsigned)t;
  }
  if (el < 0) target = 0;
  while (lg->started_players < target) {
    conn_start(lg->conns[lg->npub + lg->started_players]);
    lg->started_players++;
  }
  if (lg->started_players == lg->nplay) ev_timer_stop(loop, w);
}

/* ------------------------------------------------------------ main */

static void usage(FILE *f) {
  fprintf(f,
          "usage: cascade-loadgen [--publish N --file media.flv] [--play M] --url URL\n"
          "                       [--play-url URL] [--streams K] [--same] [--duration S]\n"
          "                       [--ramp R] [--delay S] [--hold S] [--report 1] [--verbose]\n"
          "  --publish N    RTMP publishers of streams NAME-0..N-1 (NAME alone when N = 1)\n"
          "  --file F       FLV file published in real time, looped\n"
          "  --play M       players; RTMP or HTTP-FLV by the play URL's scheme\n"
          "  --url U        rtmp://host:port/app/name (or http://host:port/flv/app/name.flv)\n"
          "  --play-url U   the players' URL when it differs from --url\n"
          "  --streams K    players spread over K streams (default: N, or 1)\n"
          "  --same         no -i suffix: every publisher/player uses NAME itself\n"
          "  --duration S   stop after S seconds (default 10)\n"
          "  --ramp R       players started per second (default 200; 0: all at once)\n"
          "  --delay S      seconds between the publishers' start and the first player "
          "(default 1 with publishers, else 0)\n"
          "  --report S     a JSON line every S seconds (default 0: summary only)\n"
          "  --warmup S     the summary counts from S seconds on (default 0)\n"
          "  --hold S       each player leaves S seconds after its connect began (default 0: "
          "stays)\n"
          "  --verbose      log every connection error, not only the first %d\n"
          "The summary reports each player's time to first frame from the start of its\n"
          "connect: ttff_* to the first video keyframe, ttfm_* to the first audio or video\n"
          "frame (quantiles over players; ttff_n players got a keyframe).\n",
          LG_MAX_ERRLOG);
}

static int parse_args(lg_t *lg, int argc, char **argv) {
  static const struct option opts[] = {
      {"publish", required_argument, NULL, 'P'}, {"play", required_argument, NULL, 'p'},
      {"file", required_argument, NULL, 'f'},    {"url", required_argument, NULL, 'u'},
      {"play-url", required_argument, NULL, 'U'}, {"streams", required_argument, NULL, 'k'},
      {"same", no_argument, NULL, 's'},           {"duration", required_argument, NULL, 'd'},
      {"ramp", required_argument, NULL, 'r'},     {"delay", required_argument, NULL, 'D'},
      {"report", required_argument, NULL, 'R'},   {"verbose", no_argument, NULL, 'v'},
      {"warmup", required_argument, NULL, 'w'},   {"hold", required_argument, NULL, 'H'},
      {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0}};
  const char *url = NULL, *play_url = NULL;
  int opt;
  lg->duration = 10;
  lg->ramp = 200;
  lg->delay = -1;
  while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    char *end = NULL;
    switch (opt) {
    case 'P': lg->npub = (unsigned)strtoul(optarg, &end, 10); break;
    case 'p': lg->nplay = (unsigned)strtoul(optarg, &end, 10); break;
    case 'k': lg->nstreams = (unsigned)strtoul(optarg, &end, 10); break;
    case 'd': lg->duration = strtod(optarg, &end); break;
    case 'r': lg->ramp = strtod(optarg, &end); break;
    case 'D': lg->delay = strtod(optarg, &end); break;
    case 'R': lg->report = strtod(optarg, &end); break;
    case 'w': lg->warmup = strtod(optarg, &end); break;
    case 'H': lg->hold = strtod(optarg, &end); break;
    case 'f': lg->file = optarg; break;
    case 'u': url = optarg; break;
    case 'U': play_url = optarg; break;
    case 's': lg->same = 1; break;
    case 'v': lg->verbose = 1; break;
    case 'h': usage(stdout); return 1;
    default: usage(stderr); return -1;
    }
    if (end && *end) {
      fprintf(stderr, "loadgen: bad number \"%s\"\n", optarg);
      return -1;
    }
  }
  if (optind != argc || url == NULL || (lg->npub == 0 && lg->nplay == 0) ||
      lg->npub + lg->nplay > 1000000 || !(lg->duration > 0) || lg->ramp < 0 ||
      lg->report < 0 || lg->warmup < 0 || lg->warmup >= lg->duration || lg->hold < 0) {
    usage(stderr);
    return -1;
  }
  if (lg->npub && lg->file == NULL) {
    fprintf(stderr, "loadgen: --publish needs --file\n");
    return -1;
  }
  if (url_parse(url, &lg->pub_url) < 0 || url_parse(play_url ? play_url : url, &lg->play_url) < 0) {
    fprintf(stderr, "loadgen: bad URL (rtmp://host[:port]/app/name or "
                    "http://host[:port]/path.flv)\n");
    return -1;
  }
  if (lg->npub && lg->pub_url.http) {
    fprintf(stderr, "loadgen: publishers need an rtmp:// URL\n");
    return -1;
  }
  if (lg->nstreams == 0) lg->nstreams = lg->npub ? lg->npub : 1;
  if (lg->delay < 0) lg->delay = lg->npub && lg->nplay ? 1 : 0;
  return 0;
}

static void raise_nofile(unsigned want) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  rlim_t need = (rlim_t)want + 64;
  if (rl.rlim_cur >= need) return;
  rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need ? need : rl.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < need)
    fprintf(stderr, "loadgen: open file limit %llu is below the %u connections asked for\n",
            (unsigned long long)rl.rlim_cur, want);
}

static void lg_free(lg_t *lg) {
  for (unsigned i = 0; i < lg->nconns; i++) {
    conn_close(lg->conns[i]);
    conn_release(lg->conns[i]);
    free(lg->conns[i]);
  }
  free(lg->conns);
  media_free(&lg->media);
  if (lg->pub_ai) freeaddrinfo(lg->pub_ai);
  if (lg->play_ai) freeaddrinfo(lg->play_ai);
  free(lg->rbuf);
  amf_buf_free(&lg->scratch);
  if (lg->loop) ev_loop_destroy(lg->loop);
  free(lg);
}

int main(int argc, char **argv) {
  lg_t *lg = calloc(1, sizeof(*lg));
  if (lg == NULL) return 1;
  int rc = parse_args(lg, argc, argv);
  if (rc != 0) {
    lg_free(lg);
    return rc > 0 ? 0 : 2;
  }
  rc = 1;
  if (lg->npub && media_load(&lg->media, lg->file) < 0) goto out;
  if (lg->npub && (lg->pub_ai = resolve(&lg->pub_url)) == NULL) goto out;
  if (lg->nplay && (lg->play_ai = resolve(&lg->play_url)) == NULL) goto out;
  raise_nofile(lg->npub + lg->nplay);
  lg->loop = ev_loop_new(EVFLAG_AUTO);
  lg->rbuf = malloc(LG_READ_BUF);
  lg->conns = calloc(lg->npub + lg->nplay, sizeof(*lg->conns));
  if (lg->loop == NULL || lg->rbuf == NULL || lg->conns == NULL) goto out;
  for (unsigned i = 0; i < lg->npub + lg->nplay; i++) {
    int kind = i < lg->npub ? LG_PUB : lg->play_url.http ? LG_PLAY_HTTP : LG_PLAY_RTMP;
    lg->conns[i] = conn_new(lg, kind, i < lg->npub ? i : i - lg->npub);
    if (lg->conns[i] == NULL) goto out;
    lg->nconns++;
  }
  if (lg->npub)
    fprintf(stderr, "loadgen: %s: %zu tags, %.1f s per pass, %.2f Mbit/s\n", lg->file,
            lg->media.n, lg->media.loop_ms / 1000.0,
            (double)lg->media.bytes * 8 / (lg->media.loop_ms / 1000.0) / 1e6);

  ev_now_update(lg->loop);
  lg->start = lg->sum_start = ev_now(lg->loop);
  for (unsigned i = 0; i < lg->npub; i++) conn_start(lg->conns[i]);
  ev_timer_init(&lg->ramp_tm, ramp_cb, 0., 0.01);
  lg->ramp_tm.data = lg;
  if (lg->nplay) ev_timer_start(lg->loop, &lg->ramp_tm);
  ev_timer_init(&lg->end_tm, end_cb, lg->duration, 0.);
  lg->end_tm.data = lg;
  ev_timer_start(lg->loop, &lg->end_tm);
  ev_timer_init(&lg->report_tm, report_cb, lg->report, lg->report);
  lg->report_tm.data = lg;
  if (lg->report > 0) ev_timer_start(lg->loop, &lg->report_tm);
  ev_timer_init(&lg->warm_tm, warm_cb, lg->warmup, 0.);
  lg->warm_tm.data = lg;
  if (lg->warmup > 0) ev_timer_start(lg->loop, &lg->warm_tm);
  ev_signal_init(&lg->sigint, signal_cb, SIGINT);
  ev_signal_init(&lg->sigterm, signal_cb, SIGTERM);
  lg->sigint.data = lg->sigterm.data = lg;
  ev_signal_start(lg->loop, &lg->sigint);
  ev_signal_start(lg->loop, &lg->sigterm);
  ev_run(lg->loop, 0);
  rc = 0;
out:
  lg_free(lg);
  return rc;
}
