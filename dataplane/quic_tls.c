/* GnuTLS sessions of the connections: mutual certificate verification
 * against the CA, ALPN. */
#define _GNU_SOURCE
#include "quic_int.h"

/* The negotiated ALPN must be ours: GnuTLS lets a peer without ALPN in. */
int quic_alpn_ok(quic_conn *c) {
  gnutls_datum_t p;
  if (gnutls_alpn_get_selected_protocol(c->tls, &p) != 0) return 0;
  const char *want = c->ep->cfg.alpn;
  return p.size == strlen(want) && memcmp(p.data, want, p.size) == 0;
}

static ngtcp2_conn *get_conn_cb(ngtcp2_crypto_conn_ref *ref) {
  quic_conn *c = ref->user_data;
  return c->conn;
}

/* ---- TLS ---- */

/* Both roles: the peer's chain must verify against the configured CA. */
int quic_verify_cb(gnutls_session_t session) {
  ngtcp2_crypto_conn_ref *ref = gnutls_session_get_ptr(session);
  quic_conn *c = ref->user_data;
  unsigned status = 0;
  unsigned n = 0;
  if (!gnutls_certificate_get_peers(session, &n) || n == 0) {
    log_warn(MOD, "[%s] handshake refused: no peer certificate", c->peer);
    return -1;
  }
  int rv = gnutls_certificate_verify_peers2(session, &status);
  if (rv < 0 || status != 0) {
    gnutls_datum_t out = {NULL, 0};
    if (rv >= 0)
      gnutls_certificate_verification_status_print(
          status, GNUTLS_CRT_X509, &out, 0);
    log_warn(MOD, "[%s] handshake refused: peer certificate: %s", c->peer,
             rv < 0 ? gnutls_strerror(rv)
                    : (out.data ? (const char *)out.data : "invalid"));
    gnutls_free(out.data);
    return -1;
  }
  return 0;
}

int quic_tls_session_new(quic_conn *c) {
  quic_endpoint *ep = c->ep;
  unsigned flags = (c->is_server ? GNUTLS_SERVER : GNUTLS_CLIENT) |
                   GNUTLS_NO_END_OF_EARLY_DATA;
  if (gnutls_init(&c->tls, flags) != 0) return -1;
  int rv = c->is_server ? ngtcp2_crypto_gnutls_configure_server_session(c->tls)
                        : ngtcp2_crypto_gnutls_configure_client_session(c->tls);
  if (rv != 0) return -1;
  if (gnutls_priority_set(c->tls, ep->prio) != 0) return -1;
  if (gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, ep->cred) != 0)
    return -1;
  if (c->is_server)
    gnutls_certificate_server_set_request(c->tls, GNUTLS_CERT_REQUIRE);
  gnutls_datum_t alpn = {(unsigned char *)ep->cfg.alpn, strlen(ep->cfg.alpn)};
  if (gnutls_alpn_set_protocols(c->tls, &alpn, 1, GNUTLS_ALPN_MANDATORY) != 0)
    return -1;
  c->ref.get_conn = get_conn_cb;
  c->ref.user_data = c;
  gnutls_session_set_ptr(c->tls, &c->ref);
  return 0;
}

