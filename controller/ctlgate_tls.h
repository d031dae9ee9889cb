/* The control gate's TLS: the controller's certificate and the server
 * sessions the gate runs itself on the agents' connections (GnuTLS, non-
 * blocking, driven by the gate's epoll loop), which then speaks the SP wire
 * itself (spwire.h). Server authentication only (no client certificates). TLS 1.3 session tickets
 * under a key derived from the CA's (ctlgate_tls_ticket_key) let an agent
 * resume at any replica and after a restart. See docs/architecture.md
 * ("Control gate"). */
#ifndef CASCADE_CTLGATE_TLS_H
#define CASCADE_CTLGATE_TLS_H

#include <gnutls/gnutls.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct ctlgate_tls ctlgate_tls_t;

/* Versions and ciphers offered: TLS 1.3 and 1.2, forward-secret key
 * exchange only (a resumed TLS 1.3 session too: psk_dhe_ke), AES-GCM only
 * (every client offers it, and it runs on AES-NI; ChaCha20 is not offered).
 * The agents' own client (agent/ctltls.h) offers the same choices; an
 * agent on nng's mbedTLS engine (its fallback) gets them too. The
 * server's order decides: nng's mbedTLS 2.28 client lists its curves
 * largest first, and on its own
 * choice every join paid an ECDHE on P-521, 4.6 ms of the agent's CPU in
 * mbedTLS (X25519: 1.1 ms, P-256: 1.4 ms, measured here). */
#define CTLGATE_TLS_PRIORITY                                                                  \
  "NORMAL:%SERVER_PRECEDENCE:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-GCM:" \
  "+AES-256-GCM:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:"   \
  "+GROUP-SECP384R1:+GROUP-SECP521R1"

#define CTLGATE_TLS_AGAIN 0  /* would block: wait for the socket */
#define CTLGATE_TLS_EOF 1    /* the client ended the connection */
#define CTLGATE_TLS_RETRY 2  /* harmless (a warning alert, an interrupted call): call again */
#define CTLGATE_TLS_FATAL 3  /* the connection is over */

#define CTLGATE_TLS_TICKET_KEY_LEN 64 /* GnuTLS's session ticket master key */

/* ctlgate_tls_ticket_key derives the master key of the gate's TLS 1.3
 * session tickets from the CA private key (PEM) with HKDF-SHA-256, so every
 * replica and every restart (they share the CA) accepts the tickets of the
 * others. 0, or -1 without a key. */
int ctlgate_tls_ticket_key(const char *ca_key_pem, uint8_t key[CTLGATE_TLS_TICKET_KEY_LEN]);

/* ctlgate_tls_new loads the certificate chain and key (PEM) and, with
 * |ticket_key| (CTLGATE_TLS_TICKET_KEY_LEN bytes, copied), issues and
 * accepts session tickets; NULL: none. NULL with |err| on failure. */
ctlgate_tls_t *ctlgate_tls_new(const char *cert_pem, const char *key_pem,
                               const uint8_t *ticket_key, char *err, size_t errlen);

/* ctlgate_tls_free frees; accepts NULL. After every session is deinit. */
void ctlgate_tls_free(ctlgate_tls_t *t);

/* ctlgate_tls_session starts a non-blocking server session whose transport
 * is |pull| / |push| with |ptr|. 0, or a GnuTLS error code. */
int ctlgate_tls_session(ctlgate_tls_t *t, gnutls_session_t *out, gnutls_transport_ptr_t ptr,
                        gnutls_pull_func pull, gnutls_push_func push);

/* ctlgate_tls_done counts the finished handshake of |s|: full, or
 * resuming a session from a ticket. Any thread. */
void ctlgate_tls_done(ctlgate_tls_t *t, gnutls_session_t s);

/* ctlgate_tls_metrics writes the Prometheus lines of the handshake counts;
 * accepts NULL. */
void ctlgate_tls_metrics(ctlgate_tls_t *t, FILE *out);

/* ctlgate_tls_outcome sorts a negative GnuTLS return code of a handshake,
 * receive or send into what the gate does next. A renegotiation request
 * ends the connection: nng's client never renegotiates, and a peer that
 * asks for handshake after handshake would only spend the gate's CPU. */
int ctlgate_tls_outcome(int rc);

#endif
