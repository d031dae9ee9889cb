/* The control channel's TLS session store: each control client
 * (agent/ctlc.c, its connection agent/ctlsp.c) keeps the TLS 1.3 session
 * ticket of its last verified connection in a keyed store and offers it on
 * its next one, so a rejoin after a controller restart costs an ECDHE and
 * no certificate verification. See docs/architecture.md ("Control channel
 * TLS"). */
#ifndef CASCADE_CTLTLS_H
#define CASCADE_CTLTLS_H

#include <gnutls/gnutls.h>
#include <stddef.h>
#include <stdint.h>

/* What the client offers; the gate's order (controller/ctlgate_tls.h,
 * CTLGATE_TLS_PRIORITY) decides among the same choices: X25519 first,
 * AES-GCM only (ChaCha20 runs 15x slower here than AES-NI's GCM). */
#define CTLTLS_PRIORITY_BASE                                                         \
  "NORMAL:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:" \
  "-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1:+GROUP-SECP521R1"

#define CTLTLS_STORE_MAX 131072 /* sessions kept at most (--simulate takes up to 100,000) */
#define CTLTLS_SESSION_MAX 8192 /* bytes of one session's data at most */
#define CTLTLS_NAME_MAX 255     /* a server name longer than this is never stored */
#define CTLTLS_FP_LEN 32        /* SHA-256 of the trust settings */

/* The keyed session store, one entry per key: the packed session
 * (gnutls_session_get_data2), the server name and trust fingerprint it was
 * for, and whether its certificate had been verified. Thread-safe. */
typedef struct ctltls_store ctltls_store_t;

/* ctltls_store_new makes a store of at most |max| entries; NULL when out
 * of memory. */
ctltls_store_t *ctltls_store_new(size_t max);

/* ctltls_store_free frees |s| and every entry; accepts NULL. */
void ctltls_store_free(ctltls_store_t *s);

/* ctltls_store_put keeps |len| bytes of |data| for |key| (replacing what
 * it held), tied to |server| and |fp|. 0, or -1 when the store is full,
 * the data or name is too long, or memory ran out (nothing kept then: an
 * older entry of |key| is dropped too). */
int ctltls_store_put(ctltls_store_t *s, uint64_t key, const char *server,
                     const uint8_t fp[CTLTLS_FP_LEN], const void *data, size_t len, int verified);

/* ctltls_store_get copies the entry of |key| to |*data| (malloc'd, the
 * caller frees) when it was for the same |server| and |fp|. 0, or -1 when
 * there is no such entry. */
int ctltls_store_get(ctltls_store_t *s, uint64_t key, const char *server,
                     const uint8_t fp[CTLTLS_FP_LEN], uint8_t **data, size_t *len,
                     int *verified);

/* ctltls_store_drop frees the entry of |key|, if any. */
void ctltls_store_drop(ctltls_store_t *s, uint64_t key);

/* ctltls_store_count is the number of entries. */
size_t ctltls_store_count(ctltls_store_t *s);

/* ctltls_fingerprint writes to |fp| the SHA-256 of what decides trust:
 * the auth mode and the CA chain (PEM, may be NULL). -1 on failure. */
int ctltls_fingerprint(int auth_mode, const char *ca_pem, uint8_t fp[CTLTLS_FP_LEN]);

/* ctltls_init makes the process's session store (once; thread-safe).
 * 0, or -1 out of memory (no resumption then). */
int ctltls_init(void);

/* ctltls_shutdown frees the process's store, when no connection is left. */
void ctltls_shutdown(void);

/* ctltls_new_key is a key no other client of this process has. */
uint64_t ctltls_new_key(void);

/* ctltls_forget drops the session kept for |key|; when a client is freed. */
void ctltls_forget(uint64_t key);

/* ctltls_offer sets on client session |s| the verified session kept for
 * |key|, if it was for |server| and trust |fp|. 1 when one was offered.
 * Only a verified session is ever kept: resuming skips the certificate. */
int ctltls_offer(gnutls_session_t s, uint64_t key, const char *server,
                 const uint8_t fp[CTLTLS_FP_LEN]);

/* ctltls_keep stores the session of |s| (its handshake done, the
 * controller verified) for |key| once the server's ticket has come (TLS 1.3
 * sends it after the handshake). 1 when the ticket had come (stored, or
 * lost for memory: no need to look again), 0 when not yet. */
int ctltls_keep(gnutls_session_t s, uint64_t key, const char *server,
                const uint8_t fp[CTLTLS_FP_LEN]);

/* ctltls_count counts one finished handshake, resumed or full. */
void ctltls_count(int resumed);

/* ctltls_handshakes reads the process's count of full and resumed TLS
 * handshakes. */
void ctltls_handshakes(uint64_t *full, uint64_t *resumed);

#endif
