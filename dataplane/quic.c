/* QUIC endpoint on ngtcp2 1.x + ngtcp2_crypto_gnutls + libev (see quic.h;
 * the units are listed in quic_int.h). This unit: the endpoint.
 *
 * Flow: the socket watcher reads datagrams, routes each by destination
 * connection ID (a per-endpoint hash table) to its connection, or creates a
 * server connection for a valid Initial. Connections touched by a read are
 * then "serviced" at the top level of the loop: deferred events reach the
 * caller, a requested close is written, pending stream data is written, and
 * the timer is re-armed from ngtcp2_conn_get_expiry. The per-connection
 * timer runs the same service after ngtcp2_conn_handle_expiry. Nothing is
 * freed from inside an ngtcp2 callback: closed streams and dead connections
 * are swept by the service.
 *
 * Fast paths: datagrams come in by recvmmsg, with UDP GRO when the kernel
 * has it (one buffer then holds several same-size datagrams, split by the
 * segment size in the cmsg); a connection's packets go out as one UDP GSO
 * send per run of same-size packets (UDP_SEGMENT), or by sendmmsg when the
 * kernel refuses GSO. The receive and transmit buffers belong to the
 * endpoint: nothing is allocated per packet.
 *
 * Packets for no connection: an Initial may start one (behind a Retry when
 * too many handshakes are in progress), an unknown version gets a Version
 * Negotiation, a short-header packet gets a stateless reset (rate-limited;
 * tokens come from a secret derived from the node key, so a restarted node
 * resets its old connections) unless it is itself a reset for one of our
 * connections; the rest is dropped. */
#define _GNU_SOURCE
#include "quic_int.h"

void quic_addr_str(const struct sockaddr *sa, char *out, size_t len) {
  char host[INET6_ADDRSTRLEN] = "?";
  unsigned port = 0;
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
    port = ntohs(in->sin_port);
    snprintf(out, len, "%s:%u", host, port);
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    port = ntohs(in6->sin6_port);
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) { /* an IPv4 peer, dual stack */
      inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], host, sizeof(host));
      snprintf(out, len, "%s:%u", host, port);
      return;
    }
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
    snprintf(out, len, "[%s]:%u", host, port);
  } else {
    snprintf(out, len, "?");
  }
}

/* ---- rate limits ---- */

/* quic_rl_take takes one token of |rl| (|rate| per second, |burst| deep). */
int quic_rl_take(quic_rl *rl, double rate, double burst) {
  double now = (double)now_ts() / NGTCP2_SECONDS;
  rl->tokens += (now - rl->last) * rate;
  if (rl->tokens > burst) rl->tokens = burst;
  rl->last = now;
  if (rl->tokens < 1.) {
    rl->suppressed++;
    return 0;
  }
  rl->tokens -= 1.;
  return 1;
}

/* ep_send_reply sends a packet that belongs to no connection (Retry,
 * Version Negotiation, stateless reset). */
static void ep_send_reply(quic_endpoint *ep, const struct sockaddr *to,
                          socklen_t tolen, const uint8_t *data, size_t len) {
  quic_ep_sendto(ep, to, tolen, &ep->rx_dst, data, len, 0);
}

/* ep_version_negotiation answers a long-header packet of a version we do
 * not speak. Only for datagrams of a full Initial's size (RFC 9000 6.1: a
 * small spoofed packet must not buy a larger answer). */
static void ep_version_negotiation(quic_endpoint *ep,
                                   const ngtcp2_version_cid *vc,
                                   const struct sockaddr *from,
                                   socklen_t fromlen, size_t dgramlen) {
  uint8_t buf[256];
  uint32_t sv[] = {NGTCP2_PROTO_VER_V1};
  uint8_t r;
  /* Probes of cc "auto" have a bucket of their own: a burst of unknown
   * versions must not make a node's children guess the path wrong. */
  quic_rl *rl = vc->version == QUIC_PROBE_VERSION ? &ep->rl_probe : &ep->rl_reply;
  if (dgramlen < NGTCP2_MAX_UDP_PAYLOAD_SIZE ||
      !quic_rl_take(rl, QUIC_SR_RATE, QUIC_SR_BURST)) {
    ep->st.dropped++;
    return;
  }
  gnutls_rnd(GNUTLS_RND_NONCE, &r, 1);
  ngtcp2_ssize n = ngtcp2_pkt_write_version_negotiation(
      buf, sizeof(buf), r, vc->scid, vc->scidlen, vc->dcid, vc->dcidlen, sv,
      sizeof(sv) / sizeof(sv[0]));
  if (n <= 0) return;
  ep->st.vn_sent++;
  ep_send_reply(ep, from, fromlen, buf, (size_t)n);
}

/* ep_stateless_reset answers a short-header packet for a CID we do not
 * know: its sender lost state we had (or we lost state it had, after a
 * restart) and learns it at once instead of after an idle timeout. The
 * reset is shorter than what it answers, so two endpoints cannot loop. */
static void ep_stateless_reset(quic_endpoint *ep, const uint8_t *dcid,
                               size_t dcidlen, const struct sockaddr *from,
                               socklen_t fromlen, size_t dgramlen) {
  uint8_t buf[64], rnd[64], token[NGTCP2_STATELESS_RESET_TOKENLEN];
  /* 1 header byte + at least 5 random bytes + token, shorter than input */
  size_t minlen = 1 + NGTCP2_MIN_STATELESS_RESET_RANDLEN +
                  NGTCP2_STATELESS_RESET_TOKENLEN;
  if (dgramlen <= minlen || dcidlen != QUIC_CIDLEN ||
      !quic_rl_take(&ep->rl_reply, QUIC_SR_RATE, QUIC_SR_BURST)) {
    ep->st.dropped++;
    return;
  }
  ngtcp2_cid cid;
  ngtcp2_cid_init(&cid, dcid, dcidlen);
  if (ngtcp2_crypto_generate_stateless_reset_token(
          token, ep->reset_secret, sizeof(ep->reset_secret), &cid) != 0)
    return;
  size_t len = dgramlen - 1;
  if (len > 41) len = 41; /* as long as a small real packet */
  size_t randlen = len - 1 - NGTCP2_STATELESS_RESET_TOKENLEN;
  gnutls_rnd(GNUTLS_RND_NONCE, rnd, randlen);
  ngtcp2_ssize n = ngtcp2_pkt_write_stateless_reset(buf, sizeof(buf), token,
                                                    rnd, randlen);
  if (n <= 0) return;
  ep->st.resets_sent++;
  ep_send_reply(ep, from, fromlen, buf, (size_t)n);
}

/* ep_send_retry asks the client of Initial |hd| to come back with a token
 * proving it owns its address. */
static void ep_send_retry(quic_endpoint *ep, const ngtcp2_pkt_hd *hd,
                          const struct sockaddr *from, socklen_t fromlen,
                          size_t dgramlen) {
  uint8_t token[NGTCP2_CRYPTO_MAX_RETRY_TOKENLEN2];
  uint8_t buf[256];
  ngtcp2_cid scid;
  scid.datalen = QUIC_CIDLEN;
  gnutls_rnd(GNUTLS_RND_NONCE, scid.data, scid.datalen);
  struct timespec rt;
  clock_gettime(CLOCK_REALTIME, &rt);
  ngtcp2_tstamp wall = (uint64_t)rt.tv_sec * NGTCP2_SECONDS + (uint64_t)rt.tv_nsec;
  ngtcp2_ssize tl = ngtcp2_crypto_generate_retry_token2(
      token, ep->retry_secret, sizeof(ep->retry_secret), hd->version, from,
      fromlen, &scid, &hd->dcid, wall);
  if (tl < 0) return;
  size_t max = dgramlen * 3 < sizeof(buf) ? dgramlen * 3 : sizeof(buf);
  ngtcp2_ssize n = ngtcp2_crypto_write_retry(buf, max, hd->version, &hd->scid,
                                             &scid, &hd->dcid, token,
                                             (size_t)tl);
  if (n <= 0) return;
  ep->st.retries_sent++;
  ep_send_reply(ep, from, fromlen, buf, (size_t)n);
}

/* ep_unknown handles a datagram whose DCID is no connection's. */
static void ep_unknown(quic_endpoint *ep, const ngtcp2_version_cid *vc,
                       const uint8_t *pkt, size_t len,
                       const struct sockaddr *from, socklen_t fromlen) {
  if (vc->version == 0 && (pkt[0] & 0x80)) {
    ep->st.dropped++; /* a Version Negotiation for nothing of ours */
    return;
  }
  if (vc->version == 0) { /* short header */
    /* A stateless reset from a peer of ours ends in a token it gave us. */
    quic_conn *c = len >= NGTCP2_STATELESS_RESET_TOKENLEN + 5
                       ? quic_token_find(ep, pkt + len - NGTCP2_STATELESS_RESET_TOKENLEN)
                       : NULL;
    if (c) {
      quic_conn_read(c, from, fromlen, pkt, len);
      return;
    }
    ep_stateless_reset(ep, vc->dcid, vc->dcidlen, from, fromlen, len);
    return;
  }
  ngtcp2_pkt_hd hd;
  if (!ep->cfg.accept || ngtcp2_accept(&hd, pkt, len) != 0) {
    ep->st.dropped++;
    return;
  }
  ngtcp2_cid odcid;
  const ngtcp2_cid *podcid = NULL;
  if (hd.tokenlen > 0 && hd.token[0] == NGTCP2_CRYPTO_TOKEN_MAGIC_RETRY2) {
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    ngtcp2_tstamp wall =
        (uint64_t)rt.tv_sec * NGTCP2_SECONDS + (uint64_t)rt.tv_nsec;
    if (ngtcp2_crypto_verify_retry_token2(
            &odcid, hd.token, hd.tokenlen, ep->retry_secret,
            sizeof(ep->retry_secret), hd.version, from, fromlen, &hd.dcid,
            QUIC_RETRY_TTL, wall) != 0) {
      /* Forged, stale, or from another address: no state, no answer. */
      ep->st.retry_token_bad++;
      ep->st.dropped++;
      ep_warn_rl(ep, "Initial with an invalid Retry token dropped");
      return;
    }
    podcid = &odcid;
  } else if (ep->st.handshakes >= ep->cfg.retry_threshold) {
    ep_send_retry(ep, &hd, from, fromlen, len);
    return;
  }
  quic_conn *c = quic_server_conn_new(ep, &hd, podcid, from, fromlen);
  if (!c) {
    ep->st.dropped++;
    return;
  }
  c->src = ep->rx_dst; /* its answers leave from the address the child dialled */
  quic_conn_read(c, from, fromlen, pkt, len);
}

/* ep_input routes one datagram. */
static void ep_input(quic_endpoint *ep, const uint8_t *pkt, size_t len,
                     const struct sockaddr *from, socklen_t fromlen) {
  ngtcp2_version_cid vc;
  ep->st.rx_dgrams++;
  int rv = ngtcp2_pkt_decode_version_cid(&vc, pkt, len, QUIC_CIDLEN);
  if (rv == NGTCP2_ERR_VERSION_NEGOTIATION) {
    if (ep->cfg.accept) ep_version_negotiation(ep, &vc, from, fromlen, len);
    else ep->st.dropped++;
    return;
  }
  if (rv != 0) {
    ep->st.dropped++; /* garbage */
    return;
  }
  quic_conn *c = quic_cid_find(ep, vc.dcid, vc.dcidlen);
  if (c && c->probing) {
    /* Only a Version Negotiation (long header, version 0) answers it. */
    if ((pkt[0] & 0x80) && vc.version == 0) quic_conn_probe_answer(c);
    else ep->st.dropped++;
  } else if (c) quic_conn_read(c, from, fromlen, pkt, len);
  else ep_unknown(ep, &vc, pkt, len, from, fromlen);
}

/* ep_service_dirty services every connection a read touched. */
static void ep_service_dirty(quic_endpoint *ep) {
  while (ep->dirty) {
    quic_conn *c = ep->dirty;
    ep->dirty = c->dirty_next;
    c->in_dirty = 0;
    quic_conn_service(c);
  }
}

/* rx_cmsgs reads a datagram's GRO segment size (0: none) and, on a
 * wildcard endpoint, the local address it came to into |dst|. */
static int rx_cmsgs(struct msghdr *mh, quic_src *dst) {
  int seg = 0;
  memset(dst, 0, sizeof(*dst));
  for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
    if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_GRO) {
      memcpy(&seg, CMSG_DATA(cm), sizeof(seg));
    } else if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO) {
      struct in_pktinfo pi;
      memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
      dst->family = AF_INET;
      dst->a4 = pi.ipi_addr; /* the header's destination */
    } else if (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_PKTINFO) {
      struct in6_pktinfo pi6;
      memcpy(&pi6, CMSG_DATA(cm), sizeof(pi6));
      /* An IPv4 peer of a dual-stack socket: the kernel picks, as before. */
      if (IN6_IS_ADDR_V4MAPPED(&pi6.ipi6_addr)) continue;
      dst->family = AF_INET6;
      dst->a6 = pi6.ipi6_addr;
      dst->ifindex = (int)pi6.ipi6_ifindex;
    }
  }
  return seg;
}

static void ep_read_cb(struct ev_loop *loop, ev_io *w, int revents) {
  quic_endpoint *ep = w->data;
  for (int round = 0; round < QUIC_RX_ROUNDS; round++) {
    for (int i = 0; i < QUIC_RX_BATCH; i++) {
      struct msghdr *mh = &ep->rxh[i].msg_hdr;
      mh->msg_name = &ep->rxm[i].addr;
      mh->msg_namelen = sizeof(ep->rxm[i].addr);
      mh->msg_iov = &ep->rxm[i].iov;
      mh->msg_iovlen = 1;
      mh->msg_control = ep->gro || ep->pktinfo ? ep->rxm[i].ctl.buf : NULL;
      mh->msg_controllen = ep->gro || ep->pktinfo ? sizeof(ep->rxm[i].ctl.buf) : 0;
      mh->msg_flags = 0;
    }
    int n = recvmmsg(ep->fd, ep->rxh, QUIC_RX_BATCH, 0, NULL);
    ep->st.rx_syscalls++;
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < n; i++) {
      struct msghdr *mh = &ep->rxh[i].msg_hdr;
      const uint8_t *p = ep->rxm[i].iov.iov_base;
      size_t len = ep->rxh[i].msg_len;
      size_t seg = (size_t)rx_cmsgs(mh, &ep->rx_dst);
      if (seg == 0 || seg > len) seg = len;
      for (size_t off = 0; off < len; off += seg) {
        size_t l = len - off < seg ? len - off : seg;
        ep_input(ep, p + off, l, (struct sockaddr *)&ep->rxm[i].addr,
                 mh->msg_namelen);
      }
    }
    ep_service_dirty(ep);
    if (n < QUIC_RX_BATCH) break;
  }
  ep_service_dirty(ep);
  /* Connections a reply made dead (none yet) are swept by their timer. */
}

void quic_config_default(quic_config *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->idle_timeout = 30.;
  cfg->keepalive = 0.;
  cfg->handshake_timeout = 10.;
  cfg->max_stream_data = 1024 * 1024;
  cfg->max_data = 16 * 1024 * 1024;
  cfg->max_stream_window = 16 * 1024 * 1024;
  cfg->max_window = 64 * 1024 * 1024;
  cfg->max_streams_bidi = 100;
  cfg->stream_sndbuf = 256 * 1024;
  cfg->max_stream_sndbuf = 16 * 1024 * 1024;
  cfg->cc = "cubic";
  cfg->max_probe_interval = 1.;
  cfg->lan_rtt = 0.002;
  cfg->retry_threshold = 64;
  cfg->alpn = QUIC_ALPN;
  cfg->v6only = 0;
}

static int cc_parse(const char *name, ngtcp2_cc_algo *out, int *is_auto) {
  static const struct {
    const char *name;
    ngtcp2_cc_algo algo;
  } t[] = {{"cubic", NGTCP2_CC_ALGO_CUBIC},
           {"reno", NGTCP2_CC_ALGO_RENO},
           {"bbr", NGTCP2_CC_ALGO_BBR},
           /* ngtcp2 1.x has one BBR (v2 and later); the old name stays */
           {"bbr2", NGTCP2_CC_ALGO_BBR}};
  if (!name) name = "cubic";
  *is_auto = strcmp(name, "auto") == 0;
  if (*is_auto) {
    *out = NGTCP2_CC_ALGO_BBR; /* for clients that give no hint */
    return 0;
  }
  for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
    if (strcmp(name, t[i].name) == 0) {
      *out = t[i].algo;
      return 0;
    }
  return -EINVAL;
}

/* ep_socket_fast enables UDP GRO on the socket and probes GSO; both are
 * optional (older kernels: plain datagrams). */
static void ep_socket_fast(quic_endpoint *ep) {
  int on = 1;
  ep->gro = setsockopt(ep->fd, SOL_UDP, UDP_GRO, &on, sizeof(on)) == 0;
  int seg = 0;
  socklen_t sl = sizeof(seg);
  /* Reading UDP_SEGMENT tells whether the kernel knows it; a send that
   * the device cannot segment fails later with EIO and turns it off. */
  ep->gso = getsockopt(ep->fd, SOL_UDP, UDP_SEGMENT, &seg, &sl) == 0;
}

/* ep_socket_pktinfo asks, on an endpoint bound to a wildcard address, for
 * the local address of each datagram, so that answers leave from the
 * address the peer dialled (a host with several addresses: the seed's
 * parent on ":44944" dialled at one of them). */
static void ep_socket_pktinfo(quic_endpoint *ep) {
  int on = 1;
  if (!ep->cfg.accept) return; /* a client's peers answer what it sent */
  if (ep->local.ss_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)&ep->local;
    if (in->sin_addr.s_addr == htonl(INADDR_ANY))
      ep->pktinfo = setsockopt(ep->fd, IPPROTO_IP, IP_PKTINFO, &on, sizeof(on)) == 0;
  } else if (ep->local.ss_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ep->local;
    if (IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr))
      ep->pktinfo =
          setsockopt(ep->fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof(on)) == 0;
  }
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

quic_endpoint *quic_endpoint_new(struct ev_loop *loop, const quic_config *cfg,
                                 const struct sockaddr *addr,
                                 socklen_t addrlen, const quic_callbacks *cb,
                                 void *ud) {
  if (!loop || !cfg || !addr || !cb || !cfg->cert_pem || !cfg->key_pem ||
      !cfg->ca_pem || addrlen > sizeof(struct sockaddr_storage) ||
      cfg->stream_sndbuf == 0)
    return NULL;
  quic_endpoint *ep = calloc(1, sizeof(*ep));
  if (!ep) return NULL;
  ep->fd = -1;
  ep->loop = loop;
  ep->cfg = *cfg;
  ep->cb = *cb;
  ep->ud = ud;
  ep->cert_pem = dup_or_null(cfg->cert_pem);
  ep->key_pem = dup_or_null(cfg->key_pem);
  ep->ca_pem = dup_or_null(cfg->ca_pem);
  ep->priority = dup_or_null(cfg->priority ? cfg->priority : QUIC_PRIORITY);
  if (!ep->cert_pem || !ep->key_pem || !ep->ca_pem || !ep->priority)
    goto fail;
  ep->cfg.cert_pem = ep->cert_pem;
  ep->cfg.key_pem = ep->key_pem;
  ep->cfg.ca_pem = ep->ca_pem;
  ep->cfg.priority = ep->priority;
  ep->alpn = dup_or_null(cfg->alpn ? cfg->alpn : QUIC_ALPN);
  if (!ep->alpn || !*ep->alpn || strlen(ep->alpn) > 255) goto fail;
  ep->cfg.alpn = ep->alpn;
  if (cc_parse(cfg->cc, &ep->cc, &ep->cc_auto) != 0) {
    log_error(MOD, "unknown congestion controller: %s", cfg->cc);
    goto fail;
  }
  ep->cfg.cc = NULL; /* not kept: |ep->cc| holds it */
  /* Reset tokens must survive a restart to reach the old connections'
   * peers, so they come from the node key, not from a random draw. */
  if (gnutls_hmac_fast(GNUTLS_MAC_SHA256, ep->key_pem, strlen(ep->key_pem),
                       "cascade quic stateless reset", 28,
                       ep->reset_secret) != 0)
    goto fail;
  gnutls_rnd(GNUTLS_RND_KEY, ep->retry_secret, sizeof(ep->retry_secret));
  ep->rxbuf = malloc((size_t)QUIC_RX_BATCH * QUIC_RX_SLOT);
  ep->txbuf = malloc(QUIC_TX_BUF);
  if (!ep->rxbuf || !ep->txbuf) goto fail;
  for (int i = 0; i < QUIC_RX_BATCH; i++) {
    ep->rxm[i].iov.iov_base = ep->rxbuf + (size_t)i * QUIC_RX_SLOT;
    ep->rxm[i].iov.iov_len = QUIC_RX_SLOT;
  }
  ep->rl_reply.tokens = QUIC_SR_BURST;
  ep->rl_probe.tokens = QUIC_SR_BURST;
  ep->rl_log.tokens = 1.;

  int rv;
  if ((rv = gnutls_certificate_allocate_credentials(&ep->cred)) != 0)
    goto fail_tls;
  gnutls_datum_t cert = {(unsigned char *)ep->cert_pem, strlen(ep->cert_pem)};
  gnutls_datum_t key = {(unsigned char *)ep->key_pem, strlen(ep->key_pem)};
  gnutls_datum_t ca = {(unsigned char *)ep->ca_pem, strlen(ep->ca_pem)};
  if ((rv = gnutls_certificate_set_x509_key_mem(ep->cred, &cert, &key,
                                                GNUTLS_X509_FMT_PEM)) != 0)
    goto fail_tls;
  if ((rv = gnutls_certificate_set_x509_trust_mem(ep->cred, &ca,
                                                  GNUTLS_X509_FMT_PEM)) <= 0) {
    if (rv == 0) rv = GNUTLS_E_NO_CERTIFICATE_FOUND;
    goto fail_tls;
  }
  gnutls_certificate_set_verify_function(ep->cred, quic_verify_cb);
  if ((rv = gnutls_priority_init(&ep->prio, ep->priority, NULL)) != 0)
    goto fail_tls;

  ep->fd = socket(addr->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                  0);
  if (ep->fd < 0) goto fail_sock;
  /* Room for a burst: a thousand links' handshakes at once, or a bulk
   * sender's window while this process waits for its core. The FORCE
   * options pass net.core.[rw]mem_max when we may (CAP_NET_ADMIN). */
  int sz = QUIC_SOCKBUF;
  if (setsockopt(ep->fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz)) != 0)
    setsockopt(ep->fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
  if (setsockopt(ep->fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof(sz)) != 0)
    setsockopt(ep->fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
  if (addr->sa_family == AF_INET6) {
    int v6only = cfg->v6only ? 1 : 0;
    if (setsockopt(ep->fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only,
                   sizeof(v6only)) != 0)
      goto fail_sock;
  }
  if (bind(ep->fd, addr, addrlen) != 0) goto fail_sock;
  ep_socket_fast(ep);
  ep->locallen = sizeof(ep->local);
  if (getsockname(ep->fd, (struct sockaddr *)&ep->local, &ep->locallen) != 0)
    goto fail_sock;
  ep_socket_pktinfo(ep);
  ev_io_init(&ep->rio, ep_read_cb, ep->fd, EV_READ);
  ep->rio.data = ep;
  ev_io_start(loop, &ep->rio);
  return ep;

fail_tls:
  log_error(MOD, "endpoint TLS setup: %s", gnutls_strerror(rv));
  goto fail;
fail_sock: {
  char a[64];
  quic_addr_str(addr, a, sizeof(a));
  log_error(MOD, "[%s] endpoint socket: %s", a, strerror(errno));
}
fail:
  quic_endpoint_free(ep);
  return NULL;
}

void quic_endpoint_free(quic_endpoint *ep) {
  if (!ep) return;
  while (ep->conns) {
    quic_conn *c = ep->conns;
    ep->conns = c->next;
    quic_conn_free(c);
  }
  if (ep->fd >= 0) {
    ev_io_stop(ep->loop, &ep->rio);
    close(ep->fd);
  }
  for (unsigned i = 0; i < QUIC_CID_BUCKETS; i++) {
    while (ep->cids[i]) {
      cid_entry *e = ep->cids[i];
      ep->cids[i] = e->next;
      free(e);
    }
  }
  for (unsigned i = 0; i < QUIC_TOKEN_BUCKETS; i++) {
    while (ep->tokens[i]) {
      token_entry *e = ep->tokens[i];
      ep->tokens[i] = e->next;
      free(e);
    }
  }
  free(ep->rxbuf);
  free(ep->txbuf);
  free(ep->alpn);
  if (ep->prio) gnutls_priority_deinit(ep->prio);
  if (ep->cred) gnutls_certificate_free_credentials(ep->cred);
  free(ep->cert_pem);
  free(ep->key_pem);
  free(ep->ca_pem);
  free(ep->priority);
  free(ep);
}

int quic_endpoint_local_addr(const quic_endpoint *ep,
                             struct sockaddr_storage *ss, socklen_t *len) {
  if (!ep || !ss || !len) return -EINVAL;
  memcpy(ss, &ep->local, ep->locallen);
  *len = ep->locallen;
  return 0;
}

void quic_endpoint_get_stats(const quic_endpoint *ep, quic_endpoint_stats *st) {
  *st = ep->st;
  st->gso = ep->gso;
  st->gro = ep->gro;
}

