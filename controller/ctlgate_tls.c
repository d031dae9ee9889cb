/* The control gate's TLS: see ctlgate_tls.h. */
#include "ctlgate_tls.h"

#include <gnutls/crypto.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ctlgate_tls {
  gnutls_certificate_credentials_t cred;
  gnutls_priority_t prio;
  int tickets;                   /* |ticket| is set */
  uint8_t ticket[CTLGATE_TLS_TICKET_KEY_LEN];
  atomic_ulong full, resumed;
};

int ctlgate_tls_ticket_key(const char *ca_key_pem, uint8_t key[CTLGATE_TLS_TICKET_KEY_LEN]) {
  /* HKDF-SHA-256 (RFC 5869), as sa_kek and fwdsig_key take theirs from the
   * CA key, with a label of its own. */
  static const char salt[] = "cascade control tls";
  static const char info[] = "cascade control tls tickets v1";
  uint8_t prk[32];
  if (ca_key_pem == NULL || ca_key_pem[0] == '\0') return -1;
  gnutls_datum_t ikm = {(unsigned char *)ca_key_pem, (unsigned)strlen(ca_key_pem)};
  gnutls_datum_t sd = {(unsigned char *)salt, sizeof(salt) - 1};
  gnutls_datum_t id = {(unsigned char *)info, sizeof(info) - 1};
  gnutls_datum_t pd = {prk, sizeof(prk)};
  int rc = gnutls_hkdf_extract(GNUTLS_MAC_SHA256, &ikm, &sd, prk);
  if (rc == 0) rc = gnutls_hkdf_expand(GNUTLS_MAC_SHA256, &pd, &id, key, CTLGATE_TLS_TICKET_KEY_LEN);
  gnutls_memset(prk, 0, sizeof(prk));
  return rc == 0 ? 0 : -1;
}

ctlgate_tls_t *ctlgate_tls_new(const char *cert_pem, const char *key_pem,
                               const uint8_t *ticket_key, char *err, size_t errlen) {
  int rc;
  const char *where = NULL;
  ctlgate_tls_t *t = calloc(1, sizeof(*t));
  if (t == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  if ((rc = gnutls_certificate_allocate_credentials(&t->cred)) < 0) goto fail_alloc;
  gnutls_datum_t c = {(unsigned char *)cert_pem, (unsigned)strlen(cert_pem)};
  gnutls_datum_t k = {(unsigned char *)key_pem, (unsigned)strlen(key_pem)};
  if ((rc = gnutls_certificate_set_x509_key_mem2(t->cred, &c, &k, GNUTLS_X509_FMT_PEM, NULL,
                                                 0)) < 0)
    goto fail_key;
  if ((rc = gnutls_priority_init(&t->prio, CTLGATE_TLS_PRIORITY, &where)) < 0) goto fail_prio;
  if (ticket_key) {
    memcpy(t->ticket, ticket_key, sizeof(t->ticket));
    t->tickets = 1;
  }
  return t;

fail_prio:
  snprintf(err, errlen, "control TLS: priority string at '%s': %s", where ? where : "?",
           gnutls_strerror(rc));
  goto fail;
fail_key:
  snprintf(err, errlen, "control TLS: server certificate or key: %s", gnutls_strerror(rc));
  goto fail;
fail_alloc:
  snprintf(err, errlen, "control TLS: %s", gnutls_strerror(rc));
fail:
  ctlgate_tls_free(t);
  return NULL;
}

void ctlgate_tls_free(ctlgate_tls_t *t) {
  if (t == NULL) return;
  if (t->prio) gnutls_priority_deinit(t->prio);
  if (t->cred) gnutls_certificate_free_credentials(t->cred);
  gnutls_memset(t->ticket, 0, sizeof(t->ticket));
  free(t);
}

int ctlgate_tls_session(ctlgate_tls_t *t, gnutls_session_t *out, gnutls_transport_ptr_t ptr,
                        gnutls_pull_func pull, gnutls_push_func push) {
  gnutls_session_t s;
  /* Tickets from the CA-derived key: an agent's next join (after a
   * restart, or at another replica) resumes with an ECDHE (psk_dhe_ke) and
   * no certificate signature or verification. Without a key, none. */
  gnutls_datum_t tk = {t->ticket, sizeof(t->ticket)};
  int rc = gnutls_init(&s, GNUTLS_SERVER | GNUTLS_NONBLOCK | (t->tickets ? 0 : GNUTLS_NO_TICKETS));
  if (rc < 0) return rc;
  if ((rc = gnutls_priority_set(s, t->prio)) < 0 ||
      (rc = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, t->cred)) < 0 ||
      (t->tickets && (rc = gnutls_session_ticket_enable_server(s, &tk)) < 0)) {
    gnutls_deinit(s);
    return rc;
  }
  gnutls_certificate_server_set_request(s, GNUTLS_CERT_IGNORE);
  /* The gate's own deadline (control.handshaketimeout) bounds the handshake. */
  gnutls_handshake_set_timeout(s, 0);
  gnutls_transport_set_ptr(s, ptr);
  gnutls_transport_set_pull_function(s, pull);
  gnutls_transport_set_push_function(s, push);
  *out = s;
  return 0;
}

void ctlgate_tls_done(ctlgate_tls_t *t, gnutls_session_t s) {
  if (t == NULL) return;
  atomic_fetch_add(gnutls_session_is_resumed(s) ? &t->resumed : &t->full, 1);
}

void ctlgate_tls_metrics(ctlgate_tls_t *t, FILE *out) {
  if (t == NULL) return;
  fprintf(out,
          "# HELP cascade_control_tls_sessions_total Successful TLS handshakes of the control "
          "gate, full or resuming a session ticket.\n"
          "# TYPE cascade_control_tls_sessions_total counter\n"
          "cascade_control_tls_sessions_total{kind=\"full\"} %lu\n"
          "cascade_control_tls_sessions_total{kind=\"resumed\"} %lu\n",
          atomic_load(&t->full), atomic_load(&t->resumed));
}

int ctlgate_tls_outcome(int rc) {
  switch (rc) {
  case GNUTLS_E_AGAIN:
    return CTLGATE_TLS_AGAIN;
  case GNUTLS_E_INTERRUPTED:
  case GNUTLS_E_WARNING_ALERT_RECEIVED:
  case GNUTLS_E_GOT_APPLICATION_DATA:
    return CTLGATE_TLS_RETRY;
  case GNUTLS_E_PREMATURE_TERMINATION:
    /* TCP closed without a close_notify: nng's client (mbedTLS) ends so. */
    return CTLGATE_TLS_EOF;
  case GNUTLS_E_REHANDSHAKE:
    return CTLGATE_TLS_FATAL;
  default:
    return gnutls_error_is_fatal(rc) ? CTLGATE_TLS_FATAL : CTLGATE_TLS_RETRY;
  }
}
