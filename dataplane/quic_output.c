/* Packets out: ngtcp2_conn_writev_stream over the send queue, gathered
 * into UDP GSO runs (sendmmsg when the kernel refuses GSO). */
#define _GNU_SOURCE
#include "quic_int.h"

/* put_src appends the cmsg naming |src| as the source address at |cm|;
 * returns its space, 0 when there is none to name. */
static size_t put_src(struct cmsghdr *cm, const quic_src *src) {
  if (src == NULL || src->family == 0) return 0;
  if (src->family == AF_INET) {
    struct in_pktinfo pi;
    memset(&pi, 0, sizeof(pi));
    pi.ipi_spec_dst = src->a4;
    cm->cmsg_level = IPPROTO_IP;
    cm->cmsg_type = IP_PKTINFO;
    cm->cmsg_len = CMSG_LEN(sizeof(pi));
    memcpy(CMSG_DATA(cm), &pi, sizeof(pi));
    return CMSG_SPACE(sizeof(pi));
  }
  struct in6_pktinfo pi6;
  memset(&pi6, 0, sizeof(pi6));
  pi6.ipi6_addr = src->a6;
  pi6.ipi6_ifindex = (unsigned)src->ifindex;
  cm->cmsg_level = IPPROTO_IPV6;
  cm->cmsg_type = IPV6_PKTINFO;
  cm->cmsg_len = CMSG_LEN(sizeof(pi6));
  memcpy(CMSG_DATA(cm), &pi6, sizeof(pi6));
  return CMSG_SPACE(sizeof(pi6));
}

/* quic_ep_sendto sends |len| bytes to |to| (from |src| when it names an
 * address): one datagram, or with |gso| < |len| datagrams of |gso| bytes
 * (the last may be shorter) by UDP GSO, or by sendmmsg once the kernel has
 * refused GSO. Returns the datagrams sent. A full socket buffer drops the
 * rest: QUIC recovers it like any loss. */
size_t quic_ep_sendto(quic_endpoint *ep, const struct sockaddr *to,
                      socklen_t tolen, const quic_src *src, const uint8_t *data,
                      size_t len, size_t gso) {
  union {
    char buf[CMSG_SPACE(sizeof(uint16_t)) + CMSG_SPACE(QUIC_PKTINFO_MAX)];
    struct cmsghdr align;
  } ctl;
  if (gso == 0 || gso > len) gso = len;
  size_t nseg = (len + gso - 1) / gso;
  if (nseg > 1 && ep->gso) {
    struct iovec iov = {(void *)data, len};
    struct msghdr mh = {.msg_name = (void *)to, .msg_namelen = tolen,
                        .msg_iov = &iov, .msg_iovlen = 1,
                        .msg_control = ctl.buf,
                        .msg_controllen = sizeof(ctl.buf)};
    memset(ctl.buf, 0, sizeof(ctl.buf));
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_UDP;
    cm->cmsg_type = UDP_SEGMENT;
    cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    uint16_t seg = (uint16_t)gso;
    memcpy(CMSG_DATA(cm), &seg, sizeof(seg));
    size_t used = CMSG_SPACE(sizeof(uint16_t));
    used += put_src((struct cmsghdr *)(ctl.buf + used), src);
    mh.msg_controllen = used;
    ssize_t n;
    do {
      n = sendmsg(ep->fd, &mh, 0);
    } while (n < 0 && errno == EINTR);
    ep->st.tx_syscalls++;
    if (n >= 0) {
      ep->st.tx_dgrams += nseg;
      return nseg;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      ep->st.tx_eagain += nseg;
      return 0;
    }
    if (errno != EIO && errno != EINVAL && errno != EOPNOTSUPP) {
      ep_warn_rl(ep, "sendmsg (GSO): %s", strerror(errno));
      return 0;
    }
    /* The device or the path cannot segment (EIO: no checksum offload):
     * per-datagram sends from now on. */
    log_info(MOD, "UDP GSO refused (%s): sending datagrams one by one",
             strerror(errno));
    ep->gso = 0;
  }
  /* Every datagram of the batch names the same source: one cmsg for all. */
  memset(ctl.buf, 0, sizeof(ctl.buf));
  size_t srclen = put_src((struct cmsghdr *)ctl.buf, src);
  size_t sent = 0;
  while (sent < nseg) {
    unsigned k = 0;
    for (; k < QUIC_GSO_MAX && sent + k < nseg; k++) {
      size_t off = (sent + k) * gso;
      ep->txiov[k].iov_base = (void *)(data + off);
      ep->txiov[k].iov_len = len - off < gso ? len - off : gso;
      memset(&ep->txh[k], 0, sizeof(ep->txh[k]));
      ep->txh[k].msg_hdr.msg_name = (void *)to;
      ep->txh[k].msg_hdr.msg_namelen = tolen;
      ep->txh[k].msg_hdr.msg_iov = &ep->txiov[k];
      ep->txh[k].msg_hdr.msg_iovlen = 1;
      ep->txh[k].msg_hdr.msg_control = srclen ? ctl.buf : NULL;
      ep->txh[k].msg_hdr.msg_controllen = srclen;
    }
    int n;
    do {
      n = sendmmsg(ep->fd, ep->txh, k, 0);
    } while (n < 0 && errno == EINTR);
    ep->st.tx_syscalls++;
    if (n <= 0) {
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
        ep_warn_rl(ep, "sendmmsg: %s", strerror(errno));
      else
        ep->st.tx_eagain += nseg - sent;
      break;
    }
    sent += (size_t)n;
  }
  ep->st.tx_dgrams += sent;
  return sent;
}

/* quic_send_pkt sends one packet of |c| (closing, handshake answers). */
int quic_send_pkt(quic_conn *c, const uint8_t *data, size_t len) {
  size_t n = quic_ep_sendto(c->ep, (struct sockaddr *)&c->remote, c->remotelen,
                            &c->src, data, len, 0);
  c->pkts_sent += n;
  c->bytes_sent += n ? len : 0;
  return 0;
}

/* The scheduler and the GSO run builder: pure decisions, called per packet
 * by conn_write_run. |inline| lets GCC fold them into it (GCC 12 at -O2
 * does not otherwise); quic_int.h's plain prototypes keep the external
 * definitions, which test_quic_output calls. */

/* Streams are served in the order their data came: the head of the send
 * queue sends what it had when its turn began (turn_end), then goes to the
 * tail if it has more. So a frame waits for the bytes written before it,
 * not for a packet of every other stream in turn (round robin finishes all
 * of a burst's frames together, at its end), and a stream that keeps
 * writing cannot hold the head. */
inline quic_stream *quic_sched_next(quic_conn *c) {
  quic_stream *s;
  while ((s = c->sq_head) != NULL) {
    if (!quic_stream_pending(s)) {
      quic_sendq_remove(c, s);
    } else if (s->turn && s->sent_off >= s->turn_end) {
      quic_sendq_remove(c, s); /* its turn is over: to the tail, a new one */
      quic_sendq_push(c, s);
    } else {
      break;
    }
  }
  if (s && !s->turn) {
    s->turn = 1;
    s->turn_end = s->end_off;
  }
  return s;
}

inline void quic_sched_sent(quic_conn *c, quic_stream *s,
                            ngtcp2_ssize datalen, int more) {
  if (datalen < 0) return; /* no stream frame in the packet */
  s->sent_off += (uint64_t)datalen;
  if (s->fin_req && s->sent_off == s->end_off) s->fin_sent = 1;
  if (more || (datalen > 0 && s->sent_off >= s->turn_end)) {
    quic_sendq_remove(c, s);
    if (quic_stream_pending(s)) quic_sendq_push(c, s);
  }
}

inline void quic_sched_set_aside(quic_conn *c, quic_stream *s,
                                 quic_stream **blocked) {
  quic_sendq_remove(c, s);
  s->sq_next = *blocked;
  *blocked = s;
}

inline quic_gso_out quic_gso_room(quic_gso_run *r, size_t maxpkt) {
  quic_gso_out f = {0, 0, 0};
  if (r->off + maxpkt > QUIC_TX_BUF) {
    f.len = r->off;
    f.gso = r->gso;
    r->off = r->nrun = 0;
  }
  return f;
}

_Static_assert(QUIC_GSO_MAX > 1, "quic_gso_add: one run to send per packet");

inline quic_gso_out quic_gso_add(quic_gso_run *r, size_t len) {
  quic_gso_out f = {0, 0, 0};
  if (r->nrun > 0 && len > r->gso) {
    /* Longer than the run's segments: send the run, start a new one with
     * this packet (rare: a short packet began the run). */
    f.len = r->off;
    f.gso = r->gso;
    f.move = 1;
    r->off = r->nrun = 0;
  }
  if (r->nrun == 0) r->gso = len;
  r->off += len;
  r->nrun++;
  /* A shorter packet ends a run: GSO segments are all alike but the last.
   * (Not both flushes at once: a run just begun is neither, as long as a
   * run can hold two packets.) */
  if (len < r->gso || r->nrun == QUIC_GSO_MAX) {
    f.len = r->off;
    f.gso = r->gso;
    r->off = r->nrun = 0;
  }
  return f;
}

/* conn_flush sends the run of packets gathered in the endpoint's transmit
 * buffer: |len| bytes, all |gso| long but the last. */
static void conn_flush(quic_conn *c, size_t len, size_t gso) {
  if (len == 0) return;
  size_t n = quic_ep_sendto(c->ep, (struct sockaddr *)&c->remote, c->remotelen,
                            &c->src, c->ep->txbuf, len, gso);
  c->pkts_sent += n;
  c->bytes_sent += n * gso < len ? n * gso : len;
}

/* quic_conn_write sends what ngtcp2 lets through now: stream data round-robin
 * over the streams with pending bytes, then ACKs and control frames.
 * Returns 1 when it stopped with packets still allowed (its own budget of
 * QUIC_TX_QUANTA send quanta), 0 when ngtcp2 had nothing more to send now
 * (congestion window, pacing, flow control or no data). */
static int conn_write_run(quic_conn *c);

int quic_conn_write(quic_conn *c) {
  c->ep->writing++;
  c->tx_pending = 0;
  int more = conn_write_run(c);
  c->ep->writing--;
  return more;
}

static int conn_write_run(quic_conn *c) {
  uint8_t *txbuf = c->ep->txbuf;
  ngtcp2_path_storage ps;
  ngtcp2_pkt_info pi;
  ngtcp2_tstamp ts = conn_now(c);
  /* Room for a PMTUD probe; the path's size counts the quantum's packets. */
  size_t maxpkt = ngtcp2_conn_get_max_tx_udp_payload_size(c->conn);
  if (maxpkt > QUIC_MAX_UDP_PAYLOAD) maxpkt = QUIC_MAX_UDP_PAYLOAD;
  size_t pathpkt = ngtcp2_conn_get_path_max_tx_udp_payload_size(c->conn);
  size_t quantum = ngtcp2_conn_get_send_quantum(c->conn);
  size_t maxcnt = quantum / pathpkt;
  if (maxcnt < 1) maxcnt = 1;
  /* Pacing lets ngtcp2 send up to 1 ms ahead of its schedule, but a timer
   * below 1 ms costs a 1 ms sleep in libev (epoll's resolution) and, on a
   * shared core, the rest of another task's time slice: at a near-zero RTT
   * the sender then idles while its window is open. So several quanta go
   * out back to back, ngtcp2 checking the pacing schedule between them. */
  size_t budget = maxcnt * QUIC_TX_QUANTA;
  size_t pkts = 0, qpkts = 0;
  int more = 0;
  quic_gso_run run = {0, 0, 0};     /* packets gathered for one GSO send */
  quic_stream *blocked = NULL;      /* flow-controlled in this write */
  ngtcp2_path_storage_zero(&ps);

  for (;;) {
    if (qpkts == maxcnt) { /* one quantum out: pacing decides the next */
      ngtcp2_conn_update_pkt_tx_time(c->conn, ts);
      ts = conn_now(c);
      qpkts = 0;
    }
    if (pkts == budget) {
      more = 1;
      break;
    }
    quic_stream *s = quic_sched_next(c); /* sends up to its turn_end */
    ngtcp2_vec vec[2];
    size_t vcnt = 0;
    uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
    int64_t sid = -1;
    if (s) {
      sid = s->id;
      uint64_t left = s->turn_end > s->sent_off ? s->turn_end - s->sent_off : 0;
      if (left > 0) {
        size_t start = (size_t)(s->sent_off % s->cap);
        size_t l1 = s->cap - start;
        if (l1 > left) l1 = (size_t)left;
        vec[0].base = s->buf + start;
        vec[0].len = l1;
        vcnt = 1;
        if (left > l1) {
          vec[1].base = s->buf;
          vec[1].len = (size_t)(left - l1);
          vcnt = 2;
        }
      }
      if (s->fin_req && s->turn_end == s->end_off)
        flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
    }
    quic_gso_out f = quic_gso_room(&run, maxpkt);
    if (f.len) conn_flush(c, f.len, f.gso);
    uint8_t *buf = txbuf + run.off;
    ngtcp2_ssize ndatalen = -1;
    ngtcp2_ssize n = ngtcp2_conn_writev_stream(
        c->conn, &ps.path, &pi, buf, maxpkt, &ndatalen, flags, sid, vec, vcnt,
        ts);
    if (n < 0) {
      if (n == NGTCP2_ERR_WRITE_MORE) {
        /* the packet has room left: the next stream fills it */
        quic_sched_sent(c, s, ndatalen, 1);
        continue;
      }
      if (s && n == NGTCP2_ERR_STREAM_SHUT_WR) {
        /* We did not end it (a reset of ours leaves nothing pending):
         * the peer's STOP_SENDING did. */
        quic_stream_shut_send(c, s);
        continue;
      }
      if (s && (n == NGTCP2_ERR_STREAM_DATA_BLOCKED ||
                n == NGTCP2_ERR_STREAM_NOT_FOUND)) {
        /* flow control: aside until this write ends, then back in line */
        quic_sched_set_aside(c, s, &blocked);
        continue;
      }
      conn_flush(c, run.off, run.gso);
      quic_sendq_restore(c, blocked);
      quic_conn_error(c, (int)n);
      return 0;
    }
    if (s) quic_sched_sent(c, s, ndatalen, 0);
    if (n == 0) break;
    pkts++;
    qpkts++;
    size_t len = (size_t)n;
    f = quic_gso_add(&run, len);
    if (f.len) conn_flush(c, f.len, f.gso);
    if (f.move) memmove(txbuf, buf, len);
  }
  conn_flush(c, run.off, run.gso);
  quic_sendq_restore(c, blocked);
  ngtcp2_conn_update_pkt_tx_time(c->conn, ts);
  return more;
}

