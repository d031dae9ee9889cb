/* Connections: ngtcp2 callbacks and settings, creation, closing and
 * draining, outage recovery, the per-connection service and timer, and
 * the connection half of quic.h. */
#define _GNU_SOURCE
#include "quic_int.h"

static void conn_service_run(quic_conn *c);

static void rand_cb(uint8_t *dest, size_t len, const ngtcp2_rand_ctx *ctx) {
  (void)ctx;
  gnutls_rnd(GNUTLS_RND_RANDOM, dest, len);
}

static int get_new_cid_cb(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token,
                          size_t cidlen, void *ud) {
  quic_conn *c = ud;
  if (gnutls_rnd(GNUTLS_RND_RANDOM, cid->data, cidlen) != 0)
    return NGTCP2_ERR_CALLBACK_FAILURE;
  cid->datalen = cidlen;
  if (ngtcp2_crypto_generate_stateless_reset_token(
          token, c->ep->reset_secret, sizeof(c->ep->reset_secret), cid) != 0)
    return NGTCP2_ERR_CALLBACK_FAILURE;
  if (quic_cid_add(c->ep, cid, c) != 0) return NGTCP2_ERR_CALLBACK_FAILURE;
  return 0;
}

static int remove_cid_cb(ngtcp2_conn *conn, const ngtcp2_cid *cid, void *ud) {
  quic_conn *c = ud;
  quic_cid_remove(c->ep, cid);
  return 0;
}

static int fail_alpn(quic_conn *c) {
  log_warn(MOD, "[%s] handshake refused: ALPN is not %s", c->peer,
           c->ep->cfg.alpn);
  ngtcp2_ccerr_set_tls_alert(&c->ccerr, 120 /* no_application_protocol */,
                             NULL, 0);
  c->ccerr_set = 1;
  return NGTCP2_ERR_CALLBACK_FAILURE;
}

static void conn_handshake_done(quic_conn *c) {
  if (c->handshaking) {
    c->handshaking = 0;
    c->ep->st.handshakes--;
  }
}

static int handshake_completed_cb(ngtcp2_conn *conn, void *ud) {
  quic_conn *c = ud;
  conn_handshake_done(c);
  if (!quic_alpn_ok(c)) return fail_alpn(c);
  if (c->is_server) { /* the client's Finished (and certificate) checked */
    c->established = 1;
    c->notify_established = 1;
  }
  return 0;
}

static int handshake_confirmed_cb(ngtcp2_conn *conn, void *ud) {
  quic_conn *c = ud;
  /* A client's handshake completes before the server has verified the
   * client certificate; HANDSHAKE_DONE is the server's acceptance. */
  if (!c->is_server) {
    c->established = 1;
    c->notify_established = 1;
  }
  return 0;
}

static int stream_open_cb(ngtcp2_conn *conn, int64_t sid, void *ud) {
  quic_conn *c = ud;
  if (!ngtcp2_is_bidi_stream(sid)) return 0; /* uni streams: limit is 0 */
  quic_stream *s = quic_stream_new(c, sid);
  if (!s) return NGTCP2_ERR_CALLBACK_FAILURE;
  ngtcp2_conn_set_stream_user_data(conn, sid, s);
  if (c->ep->cb.on_stream_open) c->ep->cb.on_stream_open(c, sid, c->ep->ud);
  return 0;
}

static int recv_stream_data_cb(ngtcp2_conn *conn, uint32_t flags, int64_t sid,
                               uint64_t offset, const uint8_t *data,
                               size_t len, void *ud, void *sud) {
  quic_conn *c = ud;
  int fin = (flags & NGTCP2_STREAM_DATA_FLAG_FIN) != 0;
  if (c->ep->cb.on_data && c->state == CS_OPEN)
    c->ep->cb.on_data(c, sid, data, len, fin, c->ep->ud);
  /* Data is handed over at once, so the windows open at once. */
  ngtcp2_conn_extend_max_stream_offset(conn, sid, len);
  ngtcp2_conn_extend_max_offset(conn, len);
  return 0;
}

static int acked_cb(ngtcp2_conn *conn, int64_t sid, uint64_t offset,
                    uint64_t len, void *ud, void *sud) {
  quic_stream *s = sud;
  if (!s) return 0;
  quic_stream_acked(s, offset + len); /* the contiguous acked prefix */
  if (len > 0) ((quic_conn *)ud)->acked_ts = conn_now((quic_conn *)ud);
  if (s->want_writable && len > 0) {
    s->want_writable = 0;
    s->writable_pending = 1;
    quic_evq_push(ud, s);
  }
  return 0;
}

static int stream_close_cb(ngtcp2_conn *conn, uint32_t flags, int64_t sid,
                           uint64_t app_code, void *ud, void *sud) {
  quic_conn *c = ud;
  quic_stream *s = sud;
  /* ngtcp2 counts losses per stream: keep the count of a stream it is
   * about to forget. */
  c->pkts_lost_closed += ngtcp2_conn_get_stream_loss_count(conn, sid);
  if (s) {
    s->closed = 1;
    s->close_code =
        (flags & NGTCP2_STREAM_CLOSE_FLAG_APP_ERROR_CODE_SET) ? app_code : 0;
    quic_sendq_remove(c, s);
    quic_evq_push(c, s);
  }
  if (!ngtcp2_conn_is_local_stream(conn, sid) && ngtcp2_is_bidi_stream(sid))
    ngtcp2_conn_extend_max_streams_bidi(conn, 1);
  return 0;
}

/* Tokens of the peer's CIDs, so that its stateless resets find us. */
static int dcid_status_cb(ngtcp2_conn *conn,
                          ngtcp2_connection_id_status_type type, uint64_t seq,
                          const ngtcp2_cid *cid, const uint8_t *token,
                          void *ud) {
  quic_conn *c = ud;
  if (!token) return 0;
  if (type == NGTCP2_CONNECTION_ID_STATUS_TYPE_ACTIVATE) {
    if (!quic_token_find(c->ep, token) && quic_token_add(c->ep, c, seq, token) != 0)
      return NGTCP2_ERR_CALLBACK_FAILURE;
  } else {
    quic_token_remove(c->ep, c, seq, 0);
  }
  return 0;
}

static int recv_stateless_reset_cb(ngtcp2_conn *conn,
                                   const ngtcp2_pkt_stateless_reset *sr,
                                   void *ud) {
  quic_conn *c = ud;
  c->info.stateless_reset = 1;
  log_info(MOD, "[%s] stateless reset from the peer (it lost this "
           "connection, e.g. restarted)", c->peer);
  return 0;
}

static int extend_max_local_streams_bidi_cb(ngtcp2_conn *conn,
                                            uint64_t max_streams, void *ud) {
  quic_conn *c = ud;
  c->notify_streams = 1;
  return 0;
}

static const ngtcp2_callbacks client_callbacks = {
    .client_initial = ngtcp2_crypto_client_initial_cb,
    .recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb,
    .handshake_completed = handshake_completed_cb,
    .handshake_confirmed = handshake_confirmed_cb,
    .encrypt = ngtcp2_crypto_encrypt_cb,
    .decrypt = ngtcp2_crypto_decrypt_cb,
    .hp_mask = ngtcp2_crypto_hp_mask_cb,
    .recv_stream_data = recv_stream_data_cb,
    .acked_stream_data_offset = acked_cb,
    .stream_open = stream_open_cb,
    .stream_close = stream_close_cb,
    .recv_retry = ngtcp2_crypto_recv_retry_cb,
    .rand = rand_cb,
    .get_new_connection_id = get_new_cid_cb,
    .remove_connection_id = remove_cid_cb,
    .update_key = ngtcp2_crypto_update_key_cb,
    .delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb,
    .delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb,
    .get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb,
    .version_negotiation = ngtcp2_crypto_version_negotiation_cb,
    .dcid_status = dcid_status_cb,
    .recv_stateless_reset = recv_stateless_reset_cb,
    .extend_max_local_streams_bidi = extend_max_local_streams_bidi_cb,
};

static const ngtcp2_callbacks server_callbacks = {
    .recv_client_initial = ngtcp2_crypto_recv_client_initial_cb,
    .recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb,
    .handshake_completed = handshake_completed_cb,
    .encrypt = ngtcp2_crypto_encrypt_cb,
    .decrypt = ngtcp2_crypto_decrypt_cb,
    .hp_mask = ngtcp2_crypto_hp_mask_cb,
    .recv_stream_data = recv_stream_data_cb,
    .acked_stream_data_offset = acked_cb,
    .stream_open = stream_open_cb,
    .stream_close = stream_close_cb,
    .rand = rand_cb,
    .get_new_connection_id = get_new_cid_cb,
    .remove_connection_id = remove_cid_cb,
    .update_key = ngtcp2_crypto_update_key_cb,
    .delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb,
    .delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb,
    .get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb,
    .version_negotiation = ngtcp2_crypto_version_negotiation_cb,
    .dcid_status = dcid_status_cb,
    .recv_stateless_reset = recv_stateless_reset_cb,
    .extend_max_local_streams_bidi = extend_max_local_streams_bidi_cb,
};

/* ---- connections ---- */

static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void conn_mark_dirty(quic_conn *c);

void quic_conn_kick(quic_conn *c) {
  ev_timer_stop(c->ep->loop, &c->timer);
  ev_timer_set(&c->timer, 0., 0.);
  ev_timer_start(c->ep->loop, &c->timer);
}

void quic_conn_free(quic_conn *c) {
  if (!c) return;
  ev_timer_stop(c->ep->loop, &c->timer);
  if (c->in_dirty) {
    for (quic_conn **p = &c->ep->dirty; *p; p = &(*p)->dirty_next)
      if (*p == c) {
        *p = c->dirty_next;
        break;
      }
  }
  conn_handshake_done(c);
  quic_cid_remove_conn(c->ep, c);
  quic_token_remove(c->ep, c, 0, 1);
  if (c->conn) ngtcp2_conn_del(c->conn);
  if (c->tls) gnutls_deinit(c->tls);
  while (c->streams) {
    quic_stream *s = c->streams;
    c->streams = s->next;
    quic_stream_free(s);
  }
  free(c->sbuckets);
  free(c->close_pkt);
  free(c);
}

static quic_conn *conn_alloc(quic_endpoint *ep, const struct sockaddr *remote,
                             socklen_t remotelen, int is_server) {
  quic_conn *c = calloc(1, sizeof(*c));
  if (!c) return NULL;
  c->ep = ep;
  c->is_server = is_server;
  c->state = CS_OPEN;
  memcpy(&c->remote, remote, remotelen);
  c->remotelen = remotelen;
  quic_addr_str(remote, c->peer, sizeof(c->peer));
  ev_timer_init(&c->timer, conn_timer_cb, 0., 0.);
  c->timer.data = c;
  c->user = ep->ud;
  return c;
}

/* addr_is_loopback: 127.0.0.0/8, ::1 or ::ffff:127.0.0.0/104. */
static int addr_is_loopback(const struct sockaddr *sa) {
  if (sa->sa_family == AF_INET)
    return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
  if (sa->sa_family == AF_INET6) {
    const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
  }
  return 0;
}

/* route_payload_max is the largest UDP payload the route to |peer| carries
 * as the kernel knows it (the interface MTU, or a path MTU it learned),
 * from a connected probe socket; 0 when it cannot tell. */
static size_t route_payload_max(const struct sockaddr *peer) {
  int v6 = peer->sa_family == AF_INET6;
  socklen_t len = v6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  int fd = socket(peer->sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  int mtu = 0;
  socklen_t ml = sizeof(mtu);
  size_t out = 0;
  if (connect(fd, peer, len) == 0 &&
      getsockopt(fd, v6 ? IPPROTO_IPV6 : IPPROTO_IP, v6 ? IPV6_MTU : IP_MTU, &mtu,
                 &ml) == 0 &&
      mtu > (v6 ? 48 : 28))
    out = (size_t)mtu - (v6 ? 48 : 28); /* IP and UDP headers */
  close(fd);
  return out;
}

/* PMTUD probe sizes (UDP payloads), ascending: Ethernet's 1,500-byte MTU
 * for IPv6 and IPv4, then 9,000-byte jumbo frames; the configured maximum
 * is probed last. */
static const uint16_t pmtud_sizes[] = {1452, 1472, 8952, 8972};

/* conn_settings: |remote| is the peer's address; |probes| (room for
 * QUIC_PMTUD_PROBES) is where the PMTUD probe sizes go. Packets start at
 * 1,200 bytes and grow by ngtcp2's path MTU discovery up to the configured
 * maximum (automatic: 1,452, and QUIC_MAX_UDP_PAYLOAD to a loopback peer,
 * whose MTU is 64 KiB). Large packets cut the per-packet work (AEAD calls,
 * ngtcp2's packet bookkeeping, GSO segments) and raise the congestion
 * window's floor, which ngtcp2 counts in packets. */
#define QUIC_PMTUD_PROBES (sizeof(pmtud_sizes) / sizeof(pmtud_sizes[0]) + 1)
static void conn_settings(quic_endpoint *ep, const struct sockaddr *remote,
                          ngtcp2_cc_algo cc, ngtcp2_settings *s,
                          ngtcp2_transport_params *p, uint16_t *probes) {
  ngtcp2_settings_default(s);
  size_t mtu = ep->cfg.max_udp_payload;
  if (mtu == 0) mtu = addr_is_loopback(remote) ? QUIC_MAX_UDP_PAYLOAD : 1452;
  if (mtu > QUIC_MAX_UDP_PAYLOAD) mtu = QUIC_MAX_UDP_PAYLOAD;
  if (mtu > 1452) {
    /* Never probe above what the local route carries (a hop further on
     * with a smaller MTU is what PMTUD finds out). */
    size_t route = route_payload_max(remote);
    if (route > 0 && route < mtu) mtu = route < 1452 ? 1452 : route;
  }
  if (mtu >= QUIC_MIN_UDP_PAYLOAD) {
    size_t n = 0;
    for (size_t i = 0; i < QUIC_PMTUD_PROBES - 1; i++)
      if (pmtud_sizes[i] < mtu) probes[n++] = pmtud_sizes[i];
    if (mtu > QUIC_MIN_UDP_PAYLOAD) probes[n++] = (uint16_t)mtu;
    s->max_tx_udp_payload_size = mtu;
    s->pmtud_probes = probes;
    s->pmtud_probeslen = n;
  }
  /* Window auto-tuning: the receive windows start at the transport
   * parameters' and grow up to these as the RTT and the rate ask. */
  s->max_window = ep->cfg.max_window > ep->cfg.max_data ? ep->cfg.max_window : 0;
  s->max_stream_window = ep->cfg.max_stream_window > ep->cfg.max_stream_data
                             ? ep->cfg.max_stream_window
                             : 0;
  s->initial_ts = now_ts();
  s->handshake_timeout =
      (ngtcp2_duration)(ep->cfg.handshake_timeout * NGTCP2_SECONDS);
  s->cc_algo = cc;
  ngtcp2_transport_params_default(p);
  p->initial_max_stream_data_bidi_local = ep->cfg.max_stream_data;
  p->initial_max_stream_data_bidi_remote = ep->cfg.max_stream_data;
  p->initial_max_stream_data_uni = 0;
  p->initial_max_data = ep->cfg.max_data;
  p->initial_max_streams_bidi = ep->cfg.max_streams_bidi;
  p->initial_max_streams_uni = 0;
  p->max_idle_timeout = (ngtcp2_duration)(ep->cfg.idle_timeout * NGTCP2_SECONDS);
}

static ngtcp2_path conn_path(quic_conn *c) {
  ngtcp2_path path = {
      .local = {(struct sockaddr *)&c->ep->local, c->ep->locallen},
      .remote = {(struct sockaddr *)&c->remote, c->remotelen},
  };
  return path;
}

static void conn_keepalive(quic_conn *c);

static void conn_link(quic_conn *c) {
  c->next = c->ep->conns;
  c->ep->conns = c;
  c->ep->st.conns++;
  conn_keepalive(c);
}

/* conn_keepalive sets the PING interval of |c|'s ngtcp2 connection. */
static void conn_keepalive(quic_conn *c) {
  if (c->conn && c->ep->cfg.keepalive > 0)
    ngtcp2_conn_set_keep_alive_timeout(
        c->conn, (ngtcp2_duration)(c->ep->cfg.keepalive * NGTCP2_SECONDS));
}

static void conn_unlink(quic_conn *c) {
  for (quic_conn **p = &c->ep->conns; *p; p = &(*p)->next) {
    if (*p == c) {
      *p = c->next;
      c->ep->st.conns--;
      return;
    }
  }
}

/* ---- Choosing the congestion controller (cc "auto") ----
 * ngtcp2 fixes a connection's controller when it creates it, and neither
 * is right everywhere: bbr keeps its rate under random loss (cubic falls
 * to the Mathis limit, about 14 Mbit/s at 1 % loss and 10 ms), but sizes
 * its window from the minimum RTT, which on a LAN or loopback is tens of
 * microseconds: a burst (the keyframes of many streams at once) then waits
 * for round trips that a busy receiver makes long, and the hop's p99 grows
 * by tens of milliseconds where cubic adds a few (docs/performance.md).
 * So in "auto" a client first measures the path: it sends a full-size
 * packet of a reserved version, the peer's endpoint answers with a Version
 * Negotiation at once and keeps no state, and the round trip picks cubic
 * under lan_rtt and bbr otherwise (no answer within QUIC_PROBE_WAIT: bbr).
 * The choice rides in the first byte of the client's first DCID, and a
 * server in "auto" follows it (a client with no hint gets bbr). A forged
 * Version Negotiation can only pick one of the two controllers. */

/* conn_client_start creates |c|'s ngtcp2 client connection, its DCID
 * carrying |hint|. */
static int conn_client_start(quic_conn *c, int hint) {
  quic_endpoint *ep = c->ep;
  ngtcp2_cid dcid, scid;
  dcid.datalen = scid.datalen = QUIC_CIDLEN;
  gnutls_rnd(GNUTLS_RND_RANDOM, dcid.data, QUIC_CIDLEN);
  gnutls_rnd(GNUTLS_RND_RANDOM, scid.data, QUIC_CIDLEN);
  quic_cid_hint_set(&dcid, ep->cc_auto ? hint : QUIC_HINT_NONE);
  ngtcp2_settings s;
  ngtcp2_transport_params p;
  uint16_t probes[QUIC_PMTUD_PROBES];
  c->cc = ep->cc_auto ? quic_cc_for_hint(hint, ep->cc) : ep->cc;
  conn_settings(ep, (const struct sockaddr *)&c->remote, c->cc, &s, &p, probes);
  ngtcp2_path path = conn_path(c);
  if (quic_tls_session_new(c) != 0) return -1;
  if (ngtcp2_conn_client_new(&c->conn, &dcid, &scid, &path,
                             NGTCP2_PROTO_VER_V1, &client_callbacks, &s, &p,
                             NULL, c) != 0)
    return -1;
  ngtcp2_conn_set_tls_native_handle(c->conn, c->tls);
  if (quic_cid_add(ep, &scid, c) != 0) return -1;
  conn_keepalive(c);
  return 0;
}

/* conn_probe_start sends the path probe of |c| (see above): |c| has no
 * ngtcp2 connection until quic_conn_probe_answer or its timer. */
static int conn_probe_start(quic_conn *c) {
  quic_endpoint *ep = c->ep;
  uint8_t pkt[QUIC_MIN_UDP_PAYLOAD];
  c->probe_scid.datalen = QUIC_CIDLEN;
  gnutls_rnd(GNUTLS_RND_RANDOM, c->probe_scid.data, QUIC_CIDLEN);
  if (quic_cid_add(ep, &c->probe_scid, c) != 0) return -1;
  c->probing = 1;
  for (int i = 0; i < QUIC_PROBE_COPIES; i++) {
    /* long header: form and fixed bits, version, DCID, SCID, padding */
    size_t o = 0;
    memset(pkt, 0, sizeof(pkt));
    pkt[o++] = 0xc0;
    pkt[o++] = (uint8_t)(QUIC_PROBE_VERSION >> 24);
    pkt[o++] = (uint8_t)(QUIC_PROBE_VERSION >> 16);
    pkt[o++] = (uint8_t)(QUIC_PROBE_VERSION >> 8);
    pkt[o++] = (uint8_t)QUIC_PROBE_VERSION;
    pkt[o++] = QUIC_CIDLEN;
    gnutls_rnd(GNUTLS_RND_NONCE, pkt + o, QUIC_CIDLEN);
    o += QUIC_CIDLEN;
    pkt[o++] = QUIC_CIDLEN;
    memcpy(pkt + o, c->probe_scid.data, QUIC_CIDLEN);
    quic_send_pkt(c, pkt, sizeof(pkt));
  }
  c->probe_ts = now_ts();
  return 0;
}

/* conn_probe_done ends |c|'s probe with |rtt| seconds (< 0: no answer) and
 * starts the connection. */
static void conn_probe_done(quic_conn *c, double rtt) {
  quic_cid_remove(c->ep, &c->probe_scid);
  c->probing = 0;
  c->probe_rtt = rtt;
  int hint = quic_hint_for_rtt(rtt, c->ep->cfg.lan_rtt);
  if (conn_client_start(c, hint) != 0) {
    log_error(MOD, "[%s] cannot start a connection", c->peer);
    c->info.code = NGTCP2_INTERNAL_ERROR;
    c->state = CS_DEAD;
    return;
  }
  if (rtt >= 0)
    log_debug(MOD, "[%s] round trip %.3f ms: %s", c->peer, rtt * 1e3, quic_cc_name(c->cc));
  else
    log_debug(MOD, "[%s] no answer to the path probe: %s", c->peer, quic_cc_name(c->cc));
}

void quic_conn_probe_answer(quic_conn *c) {
  double rtt = (double)(now_ts() - c->probe_ts) / NGTCP2_SECONDS;
  conn_probe_done(c, rtt);
  conn_mark_dirty(c);
}

quic_conn *quic_connect(quic_endpoint *ep, const struct sockaddr *peer,
                        socklen_t peerlen) {
  if (!ep || !peer || peerlen > sizeof(struct sockaddr_storage))
    return NULL;
  struct sockaddr_in6 mapped;
  if (peer->sa_family == AF_INET && ep->local.ss_family == AF_INET6 &&
      !ep->cfg.v6only && peerlen >= sizeof(struct sockaddr_in)) {
    /* Dual stack: the kernel sends to ::ffff:a.b.c.d as IPv4. */
    const struct sockaddr_in *in = (const struct sockaddr_in *)peer;
    memset(&mapped, 0, sizeof(mapped));
    mapped.sin6_family = AF_INET6;
    mapped.sin6_port = in->sin_port;
    mapped.sin6_addr.s6_addr[10] = 0xff;
    mapped.sin6_addr.s6_addr[11] = 0xff;
    memcpy(&mapped.sin6_addr.s6_addr[12], &in->sin_addr, 4);
    peer = (const struct sockaddr *)&mapped;
    peerlen = sizeof(mapped);
  }
  if (peer->sa_family != ep->local.ss_family) return NULL;
  quic_conn *c = conn_alloc(ep, peer, peerlen, 0);
  if (!c) return NULL;
  if (ep->cc_auto && ep->cfg.lan_rtt > 0) {
    if (conn_probe_start(c) != 0) goto fail;
  } else if (conn_client_start(c, ep->cc_auto ? QUIC_HINT_FAR : QUIC_HINT_NONE) != 0) {
    goto fail;
  }
  c->visible = 1;
  conn_link(c);
  if (c->probing) { /* the answer, or this long without one */
    ev_timer_set(&c->timer, QUIC_PROBE_WAIT, 0.);
    ev_timer_start(ep->loop, &c->timer);
  } else {
    quic_conn_kick(c); /* the first flight goes out from the loop */
  }
  log_debug(MOD, "[%s] connecting", c->peer);
  return c;
fail:
  log_error(MOD, "[%s] cannot start a connection", c->peer);
  quic_conn_free(c);
  return NULL;
}

/* quic_server_conn_new: |odcid| is the client's first DCID when it came back
 * with a valid Retry token (NULL otherwise). */
quic_conn *quic_server_conn_new(quic_endpoint *ep, const ngtcp2_pkt_hd *hd,
                                const ngtcp2_cid *odcid,
                                const struct sockaddr *remote,
                                socklen_t remotelen) {
  quic_conn *c = conn_alloc(ep, remote, remotelen, 1);
  if (!c) return NULL;
  ngtcp2_cid scid;
  scid.datalen = QUIC_CIDLEN;
  gnutls_rnd(GNUTLS_RND_RANDOM, scid.data, QUIC_CIDLEN);
  ngtcp2_settings s;
  ngtcp2_transport_params p;
  uint16_t probes[QUIC_PMTUD_PROBES];
  /* cc "auto": the client's choice, in its first DCID (see above) */
  c->cc = ep->cc_auto ? quic_cc_for_hint(quic_cid_hint(odcid ? odcid : &hd->dcid), ep->cc)
                      : ep->cc;
  conn_settings(ep, remote, c->cc, &s, &p, probes);
  if (odcid) {
    p.original_dcid = *odcid;
    p.retry_scid = hd->dcid;
    p.retry_scid_present = 1;
    s.token = hd->token; /* marks the address as validated */
    s.tokenlen = hd->tokenlen;
    s.token_type = NGTCP2_TOKEN_TYPE_RETRY;
  } else {
    p.original_dcid = hd->dcid;
  }
  p.original_dcid_present = 1;
  p.stateless_reset_token_present = 1;
  if (ngtcp2_crypto_generate_stateless_reset_token(
          p.stateless_reset_token, ep->reset_secret, sizeof(ep->reset_secret),
          &scid) != 0)
    goto fail;
  ngtcp2_path path = conn_path(c);
  if (quic_tls_session_new(c) != 0) goto fail;
  if (ngtcp2_conn_server_new(&c->conn, &hd->scid, &scid, &path, hd->version,
                             &server_callbacks, &s, &p, NULL, c) != 0)
    goto fail;
  ngtcp2_conn_set_tls_native_handle(c->conn, c->tls);
  /* The client keeps using its chosen DCID until it sees ours. */
  if (quic_cid_add(ep, &scid, c) != 0 || quic_cid_add(ep, &hd->dcid, c) != 0) goto fail;
  conn_link(c);
  c->handshaking = 1;
  ep->st.handshakes++;
  ep->st.accepted++;
  return c;
fail:
  log_error(MOD, "[%s] cannot accept a connection", c->peer);
  quic_conn_free(c);
  return NULL;
}

/* conn_enter_closing writes CONNECTION_CLOSE with |ccerr| and keeps the
 * packet to answer the peer during the closing period (3 PTO). */
static void conn_enter_closing(quic_conn *c, const ngtcp2_ccerr *ccerr) {
  uint8_t buf[QUIC_MAX_PKT];
  ngtcp2_path_storage ps;
  ngtcp2_path_storage_zero(&ps);
  ngtcp2_ssize n = ngtcp2_conn_write_connection_close(
      c->conn, &ps.path, NULL, buf, sizeof(buf), ccerr, conn_now(c));
  if (n <= 0) {
    c->state = CS_DEAD;
    return;
  }
  c->close_pkt = malloc((size_t)n);
  if (c->close_pkt) {
    memcpy(c->close_pkt, buf, (size_t)n);
    c->close_pktlen = (size_t)n;
  }
  quic_send_pkt(c, buf, (size_t)n);
  c->state = CS_CLOSING;
  ev_timer_stop(c->ep->loop, &c->timer);
  ev_timer_set(&c->timer,
               3. * (double)ngtcp2_conn_get_pto(c->conn) / NGTCP2_SECONDS, 0.);
  ev_timer_start(c->ep->loop, &c->timer);
}

static void conn_enter_draining(quic_conn *c) {
  c->state = CS_DRAINING;
  ev_timer_stop(c->ep->loop, &c->timer);
  ev_timer_set(&c->timer,
               3. * (double)ngtcp2_conn_get_pto(c->conn) / NGTCP2_SECONDS, 0.);
  ev_timer_start(c->ep->loop, &c->timer);
}

/* quic_conn_error handles a fatal |rv| from ngtcp2 (read, write or expiry). */
void quic_conn_error(quic_conn *c, int rv) {
  ngtcp2_ccerr ccerr;
  switch (rv) {
  case NGTCP2_ERR_DRAINING: {
    const ngtcp2_ccerr *peer = ngtcp2_conn_get_ccerr(c->conn);
    c->info.by_peer = 1;
    c->info.is_app = peer->type == NGTCP2_CCERR_TYPE_APPLICATION;
    c->info.code = peer->error_code;
    log_debug(MOD, "[%s] closed by peer: %s code 0x%llx", c->peer,
              c->info.is_app ? "application" : "transport",
              (unsigned long long)peer->error_code);
    if (c->info.stateless_reset) {
      /* The peer has no state left to send from: nothing will come to
       * drain, and the caller can link again now rather than after 3 PTO
       * (seconds when the RTT estimate still holds a handshake burst). */
      c->state = CS_DEAD;
      return;
    }
    conn_enter_draining(c);
    return;
  }
  case NGTCP2_ERR_IDLE_CLOSE:
  case NGTCP2_ERR_HANDSHAKE_TIMEOUT:
    c->info.idle = 1;
    log_info(MOD, "[%s] %s", c->peer,
             rv == NGTCP2_ERR_IDLE_CLOSE ? "idle timeout" : "handshake timeout");
    c->state = CS_DEAD;
    return;
  case NGTCP2_ERR_DROP_CONN:
    c->state = CS_DEAD;
    return;
  default:
    break;
  }
  if (c->ccerr_set) {
    ccerr = c->ccerr;
  } else if (rv == NGTCP2_ERR_CRYPTO) {
    ngtcp2_ccerr_set_tls_alert(&ccerr, ngtcp2_conn_get_tls_alert(c->conn),
                               NULL, 0);
  } else {
    ngtcp2_ccerr_default(&ccerr);
    ngtcp2_ccerr_set_liberr(&ccerr, rv, NULL, 0);
  }
  c->info.is_app = ccerr.type == NGTCP2_CCERR_TYPE_APPLICATION;
  c->info.code = ccerr.error_code;
  log_warn(MOD, "[%s] connection failed: %s (code 0x%llx)", c->peer,
           ngtcp2_strerror(rv), (unsigned long long)ccerr.error_code);
  conn_enter_closing(c, &ccerr);
}

/* Outage recovery (max_probe_interval). After a path outage the sender's
 * probe timeout (PTO) has doubled with every unanswered probe: left alone,
 * the first probe after the path returns can come about as long after as
 * the outage lasted (ngtcp2 does not cap the backoff). Two measures bring
 * that down to about max_probe_interval:
 * - while streams are open or anything is in flight, keep-alive PINGs go
 *   out after max_probe_interval without traffic (ngtcp2 sends them only
 *   while the congestion window has room, so in practice the side that
 *   receives the bulk data pings, and its PINGs are what tells the sender
 *   that the path is back; they also draw the stateless reset of a peer
 *   that restarted);
 * - a packet from the peer while our data has gone unacknowledged for
 *   max_probe_interval or longer means the path is back: our PTO fires at
 *   once instead of at its backed-off deadline.
 * ngtcp2 has no call to fire the PTO now and refuses a clock that goes
 * back, so conn_probe_now moves the connection's own clock (conn_now: the
 * monotonic clock plus |skew|) past the PTO deadline and runs the expiry
 * handling; the clock stays moved. The deadline is not exported; it is at
 * most the time since the last acknowledgement plus two PTOs away (the
 * probes went out at s + P(2^k - 1) for the base PTO P after the last send
 * s, the next at s + P(2^(k+1) - 1)). Firing the other timers early is
 * harmless: ACK delay, keep-alive, pacing, lost-packet cleanup, CID
 * retirement, a PMTUD probe's loss; the idle expiry is a full idle timeout
 * from the packet just read, beyond the move. What moves with the clock:
 * the RTT of packets sent before the move and acknowledged after it (the
 * ones of the outage are lost, and the sample comes from the newest), and
 * the ACK delay we report for the packet just read (the peer clamps it to
 * our max_ack_delay). */
static void conn_probe_now(quic_conn *c) {
  double mpi = c->ep->cfg.max_probe_interval;
  if (mpi <= 0 || !c->established || c->state != CS_OPEN) return;
  ngtcp2_conn_info ci;
  ngtcp2_conn_get_conn_info(c->conn, &ci);
  ngtcp2_tstamp now = conn_now(c);
  if (ci.bytes_in_flight == 0 || c->acked_ts == 0 || c->acked_ts > now) {
    c->acked_ts = now;
    return;
  }
  ngtcp2_duration quiet = now - c->acked_ts;
  if (quiet < (ngtcp2_duration)(mpi * NGTCP2_SECONDS)) return;
  ngtcp2_duration jump = quiet + 2 * ngtcp2_conn_get_pto(c->conn);
  double idle = c->ep->cfg.idle_timeout;
  const ngtcp2_transport_params *rp =
      ngtcp2_conn_get_remote_transport_params(c->conn);
  if (rp && rp->max_idle_timeout &&
      (double)rp->max_idle_timeout / NGTCP2_SECONDS < idle)
    idle = (double)rp->max_idle_timeout / NGTCP2_SECONDS;
  if (idle > 0 && jump >= (ngtcp2_duration)(idle * NGTCP2_SECONDS))
    return; /* would be past the idle expiry: not safe */
  c->skew += jump;
  c->acked_ts = conn_now(c); /* one move per silence */
  int rv = ngtcp2_conn_handle_expiry(c->conn, c->acked_ts);
  if (rv != 0) quic_conn_error(c, rv);
}

void quic_conn_rearm(quic_conn *c) {
  double mpi = c->ep->cfg.max_probe_interval;
  ngtcp2_tstamp now = conn_now(c);
  if (mpi > 0) {
    ngtcp2_conn_info ci;
    ngtcp2_conn_get_conn_info(c->conn, &ci);
    if (ci.bytes_in_flight == 0) c->acked_ts = now; /* nothing to wait for */
    double ka = c->ep->cfg.keepalive;
    /* A receiver may have nothing in flight, hence no PTO: streams in use
     * are reason enough to ping (one small packet per interval). */
    if ((ci.bytes_in_flight > 0 || c->streams) && (ka <= 0 || ka > mpi)) ka = mpi;
    ngtcp2_conn_set_keep_alive_timeout(
        c->conn, ka > 0 ? (ngtcp2_duration)(ka * NGTCP2_SECONDS) : 0);
  }
  ngtcp2_tstamp exp = ngtcp2_conn_get_expiry(c->conn);
  ev_timer_stop(c->ep->loop, &c->timer);
  if (exp == UINT64_MAX) return;
  double d = exp > now ? (double)(exp - now) / NGTCP2_SECONDS : 0.;
  ev_timer_set(&c->timer, d, 0.);
  ev_timer_start(c->ep->loop, &c->timer);
}

/* conn_events tells the caller what the last I/O produced. */
static void conn_events(quic_conn *c) {
  quic_endpoint *ep = c->ep;
  if (c->notify_established) {
    c->notify_established = 0;
    c->visible = 1;
    log_debug(MOD, "[%s] %s", c->peer, c->is_server ? "accepted" : "connected");
    if (c->is_server && ep->cb.on_accept) ep->cb.on_accept(c, ep->ud);
    if (!c->is_server && ep->cb.on_connected) ep->cb.on_connected(c, ep->ud);
  }
  if (c->notify_streams && c->visible && c->established) {
    c->notify_streams = 0;
    if (ep->cb.on_streams_available) ep->cb.on_streams_available(c, ep->ud);
  }
  /* Only streams with something to say: callbacks may queue more. */
  quic_stream *s;
  while ((s = c->evq_head) != NULL) {
    c->evq_head = s->ev_next;
    if (!c->evq_head) c->evq_tail = NULL;
    s->ev_next = NULL;
    s->in_evq = 0;
    if (s->stop_sending_pending) {
      s->stop_sending_pending = 0;
      if (ep->cb.on_stream_stop_sending && c->state == CS_OPEN && c->visible)
        ep->cb.on_stream_stop_sending(c, s->id, ep->ud);
    }
    if (s->closed) {
      int64_t sid = s->id;
      uint64_t code = s->close_code;
      quic_stream_unlink(c, s);
      quic_stream_free(s);
      if (ep->cb.on_stream_close && c->visible)
        ep->cb.on_stream_close(c, sid, code, ep->ud);
      continue;
    }
    if (s->writable_pending) {
      s->writable_pending = 0;
      if (ep->cb.on_writable && c->state == CS_OPEN)
        ep->cb.on_writable(c, s->id, ep->ud);
    }
  }
}

static void conn_finish(quic_conn *c) {
  quic_endpoint *ep = c->ep;
  conn_unlink(c);
  c->info.established = c->established;
  if (c->visible && ep->cb.on_close) ep->cb.on_close(c, &c->info, ep->ud);
  quic_conn_free(c);
}

/* quic_conn_service runs at the top level of the loop only (never inside an
 * ngtcp2 callback): events, a requested close, writes, the timer. */
void quic_conn_service(quic_conn *c) {
  c->depth++;
  conn_service_run(c);
  c->depth--;
  if (c->state == CS_DEAD) conn_finish(c);
}

static void conn_service_run(quic_conn *c) {
  if (c->probing) { /* no ngtcp2 connection yet */
    if (c->close_pending) {
      c->info.is_app = 1;
      c->info.code = c->close_code;
      c->state = CS_DEAD;
    }
    return;
  }
  if (c->state == CS_OPEN) conn_events(c);
  if (c->state == CS_OPEN && c->close_pending) {
    ngtcp2_ccerr ccerr;
    ngtcp2_ccerr_default(&ccerr);
    ngtcp2_ccerr_set_application_error(&ccerr, c->close_code, NULL, 0);
    c->info.is_app = 1;
    c->info.code = c->close_code;
    conn_enter_closing(c, &ccerr);
  }
  if (c->state == CS_OPEN) {
    int more = quic_conn_write(c);
    if (c->state == CS_OPEN) quic_conn_rearm(c);
    /* Budget spent with the window still open: go on after the loop has
     * polled the socket (ACKs), without a timer's minimum sleep. */
    if (c->state == CS_OPEN && (more || c->evq_head)) quic_conn_kick(c);
  }
}

static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  quic_conn *c = w->data;
  if (c->probing) {
    /* no answer: a far peer, or one that drops (a close ends it instead) */
    if (c->state == CS_OPEN && !c->close_pending) conn_probe_done(c, -1.);
  } else if (c->state == CS_CLOSING || c->state == CS_DRAINING) {
    c->state = CS_DEAD;
  } else if (c->state == CS_OPEN && !c->close_pending) {
    ngtcp2_tstamp ts = conn_now(c);
    c->depth++;
    int rv = ngtcp2_conn_handle_expiry(c->conn, ts);
    c->depth--;
    if (rv != 0) quic_conn_error(c, rv);
  }
  quic_conn_service(c);
}

static void conn_mark_dirty(quic_conn *c) {
  if (c->in_dirty) return;
  c->in_dirty = 1;
  c->dirty_next = c->ep->dirty;
  c->ep->dirty = c;
}

void quic_conn_read(quic_conn *c, const struct sockaddr *from,
                    socklen_t fromlen, const uint8_t *data, size_t len) {
  if (c->state == CS_CLOSING) {
    /* Answer with the close again, less often as input goes on. */
    unsigned k = ++c->close_rx;
    if (c->close_pkt && (k & (k - 1)) == 0)
      quic_send_pkt(c, c->close_pkt, c->close_pktlen);
    return;
  }
  if (c->state != CS_OPEN) return;
  ngtcp2_path path = {
      .local = {(struct sockaddr *)&c->ep->local, c->ep->locallen},
      .remote = {(struct sockaddr *)from, fromlen},
  };
  ngtcp2_pkt_info pi = {0};
  c->pkts_recv++;
  c->bytes_recv += len;
  c->last_rx = conn_now(c);
  c->depth++;
  int rv = ngtcp2_conn_read_pkt(c->conn, &path, &pi, data, len, c->last_rx);
  c->depth--;
  conn_mark_dirty(c);
  if (rv != 0) quic_conn_error(c, rv);
  else conn_probe_now(c); /* the peer is reachable: probe if backed off */
}

void quic_conn_close(quic_conn *c, uint64_t app_code) {
  if (!c || c->state != CS_OPEN || c->close_pending) return;
  c->close_pending = 1;
  c->close_code = app_code;
  quic_conn_kick(c);
}

int quic_conn_is_server(const quic_conn *c) { return c->is_server; }

const char *quic_conn_peer_name(const quic_conn *c) { return c->peer; }

int quic_conn_peer_cert(const quic_conn *c, size_t idx, const uint8_t **der,
                        size_t *len) {
  unsigned n = 0;
  const gnutls_datum_t *certs = gnutls_certificate_get_peers(c->tls, &n);
  if (!certs || idx >= n) return -1;
  *der = certs[idx].data;
  *len = certs[idx].size;
  return 0;
}

const char *quic_conn_cipher(const quic_conn *c) {
  if (!c || !c->established) return NULL;
  return gnutls_cipher_get_name(gnutls_cipher_get(c->tls));
}

void quic_conn_get_stats(const quic_conn *c, quic_conn_stats *st) {
  memset(st, 0, sizeof(*st));
  st->pkts_lost = c->pkts_lost_closed;
  st->probe_rtt_ms = c->probe_rtt < 0 ? -1. : c->probe_rtt * 1e3;
  if (c->conn != NULL) {
    st->cc = quic_cc_name(c->cc);
    ngtcp2_conn_info ci;
    ngtcp2_conn_get_conn_info(c->conn, &ci);
    if (ci.min_rtt != UINT64_MAX) { /* an RTT sample came */
      st->srtt_ms = (double)ci.smoothed_rtt / NGTCP2_MILLISECONDS;
      st->min_rtt_ms = (double)ci.min_rtt / NGTCP2_MILLISECONDS;
    }
    st->cwnd = ci.cwnd;
    st->bytes_in_flight = ci.bytes_in_flight;
    st->max_udp_payload = ngtcp2_conn_get_path_max_tx_udp_payload_size(c->conn);
  }
  for (const quic_stream *s = c->streams; s; s = s->next) {
    st->bytes_unsent += s->end_off - s->sent_off;
    if (c->conn != NULL && s->id >= 0)
      st->pkts_lost += ngtcp2_conn_get_stream_loss_count(c->conn, s->id);
  }
  st->pkts_sent = c->pkts_sent;
  st->pkts_recv = c->pkts_recv;
  st->bytes_sent = c->bytes_sent;
  st->bytes_recv = c->bytes_recv;
}

void quic_conn_set_user_data(quic_conn *c, void *p) { c->user = p; }

void *quic_conn_get_user_data(const quic_conn *c) { return c->user; }

