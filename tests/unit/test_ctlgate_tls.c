/* Unit tests for controller/ctlgate_tls.c: what the gate does with each
 * GnuTLS outcome, the certificate it refuses to load, and the versions and
 * ciphers it settles for, with a GnuTLS client over a socketpair in this
 * process (the gate's loop itself runs in tests/integration/test_join_storm.py). */
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <gnutls/gnutls.h>

#include "ctlgate_tls.h"
#include "x509.h"

static void test_outcome(void **state) {
  (void)state;
  assert_int_equal(ctlgate_tls_outcome(GNUTLS_E_AGAIN), CTLGATE_TLS_AGAIN);
  assert_int_equal(ctlgate_tls_outcome(GNUTLS_E_INTERRUPTED), CTLGATE_TLS_RETRY);
  assert_int_equal(ctlgate_tls_outcome(GNUTLS_E_WARNING_ALERT_RECEIVED), CTLGATE_TLS_RETRY);
  assert_int_equal(ctlgate_tls_outcome(GNUTLS_E_PREMATURE_TERMINATION), CTLGATE_TLS_EOF);
  /* renegotiation is refused, though GnuTLS calls it non-fatal */
  assert_int_equal(ctlgate_tls_outcome(GNUTLS_E_REHANDSHAKE), CTLGATE_TLS_FATAL);
  assert_int_equal(ctlgate_tls_outcome(GNUTLS_E_UNEXPECTED_PACKET_LENGTH), CTLGATE_TLS_FATAL);
  assert_int_equal(ctlgate_tls_outcome(GNUTLS_E_NO_CIPHER_SUITES), CTLGATE_TLS_FATAL);
  assert_int_equal(ctlgate_tls_outcome(GNUTLS_E_DECRYPTION_FAILED), CTLGATE_TLS_FATAL);
}

typedef struct pems {
  char dir[64];
  char *cert, *key, *ca;
} pems_t;

static int pems_setup(void **state) {
  pems_t *p = calloc(1, sizeof(*p));
  char err[256], path[128];
  snprintf(p->dir, sizeof(p->dir), "/tmp/cascade-gtls-XXXXXX");
  assert_non_null(mkdtemp(p->dir));
  assert_int_equal(x509_ca_ensure(p->dir, err, sizeof(err)), 0);
  snprintf(path, sizeof(path), "%s/server.crt", p->dir);
  assert_non_null(p->cert = x509_read_file(path, X509_PEM_MAX, err, sizeof(err)));
  snprintf(path, sizeof(path), "%s/server.key", p->dir);
  assert_non_null(p->key = x509_read_file(path, X509_PEM_MAX, err, sizeof(err)));
  snprintf(path, sizeof(path), "%s/ca.crt", p->dir);
  assert_non_null(p->ca = x509_read_file(path, X509_PEM_MAX, err, sizeof(err)));
  *state = p;
  return 0;
}

static int pems_teardown(void **state) {
  pems_t *p = *state;
  static const char *const files[] = {"ca.crt", "ca.key", "server.crt", "server.key"};
  char path[128];
  for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
    snprintf(path, sizeof(path), "%s/%s", p->dir, files[i]);
    unlink(path);
  }
  rmdir(p->dir);
  free(p->cert);
  free(p->key);
  free(p->ca);
  free(p);
  return 0;
}

static void test_bad_key(void **state) {
  pems_t *p = *state;
  char err[256] = "";
  assert_null(ctlgate_tls_new(p->cert, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE "
                                        "KEY-----\n", NULL, err, sizeof(err)));
  assert_non_null(strstr(err, "control TLS"));
  assert_null(ctlgate_tls_new("not a certificate", p->key, NULL, err, sizeof(err)));
}

/* The server's transport: a non-blocking socket, as in the gate. */
static ssize_t pull(gnutls_transport_ptr_t ptr, void *buf, size_t len) {
  return recv((int)(intptr_t)ptr, buf, len, 0);
}

static ssize_t push(gnutls_transport_ptr_t ptr, const void *buf, size_t len) {
  return send((int)(intptr_t)ptr, buf, len, MSG_NOSIGNAL);
}

/* A gate session and a client over a socketpair, both non-blocking. */
typedef struct {
  int sv[2];
  gnutls_session_t srv, cli;
  gnutls_certificate_credentials_t cc;
  int rs, rc; /* the last GnuTLS codes of server and client (0: done) */
} tls_pair_t;

/* pair_handshake opens |pr| against |t| with a client of priority |prio|
 * trusting |ca| and offering session data |in| (NULL: none), and lets both
 * take turns until both are done or one fails. */
static void pair_handshake(tls_pair_t *pr, ctlgate_tls_t *t, const char *ca, const char *prio,
                           const gnutls_datum_t *in) {
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, pr->sv), 0);
  assert_int_equal(ctlgate_tls_session(t, &pr->srv, (gnutls_transport_ptr_t)(intptr_t)pr->sv[0],
                                       pull, push), 0);
  assert_int_equal(gnutls_certificate_allocate_credentials(&pr->cc), 0);
  gnutls_datum_t d = {(unsigned char *)ca, (unsigned)strlen(ca)};
  assert_true(gnutls_certificate_set_x509_trust_mem(pr->cc, &d, GNUTLS_X509_FMT_PEM) > 0);
  assert_int_equal(gnutls_init(&pr->cli, GNUTLS_CLIENT | GNUTLS_NONBLOCK), 0);
  assert_int_equal(gnutls_priority_set_direct(pr->cli, prio, NULL), 0);
  gnutls_credentials_set(pr->cli, GNUTLS_CRD_CERTIFICATE, pr->cc);
  gnutls_session_set_verify_cert(pr->cli, "cascade-controller", 0);
  if (in) assert_int_equal(gnutls_session_set_data(pr->cli, in->data, in->size), 0);
  gnutls_transport_set_int(pr->cli, pr->sv[1]);
  int rs = GNUTLS_E_AGAIN, rc = GNUTLS_E_AGAIN;
  for (int i = 0; i < 200 && (rs != 0 || rc != 0); i++) {
    if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED) rc = gnutls_handshake(pr->cli);
    if (rs == GNUTLS_E_AGAIN || rs == GNUTLS_E_INTERRUPTED) rs = gnutls_handshake(pr->srv);
    if ((rs < 0 && ctlgate_tls_outcome(rs) == CTLGATE_TLS_FATAL) ||
        (rc < 0 && gnutls_error_is_fatal(rc)))
      break;
  }
  pr->rs = rs;
  pr->rc = rc;
}

/* pair_close closes the sockets and the client's credentials; the sessions
 * are the caller's. */
static void pair_close(tls_pair_t *pr) {
  gnutls_certificate_free_credentials(pr->cc);
  close(pr->sv[1]);
  close(pr->sv[0]);
}

/* handshake runs a gate session and a client with priority |prio| until
 * both are done or one fails. Returns the server's last GnuTLS code (0:
 * done); the sockets are closed, the sessions left to the caller. */
static int handshake(ctlgate_tls_t *t, const char *ca, const char *prio, gnutls_session_t *srv_out,
                     gnutls_session_t *cli_out) {
  tls_pair_t pr;
  pair_handshake(&pr, t, ca, prio, NULL);
  *srv_out = pr.srv;
  *cli_out = pr.cli;
  pair_close(&pr);
  return pr.rs;
}

static void test_settles_for_aes_gcm(void **state) {
  pems_t *p = *state;
  char err[256];
  ctlgate_tls_t *t = ctlgate_tls_new(p->cert, p->key, NULL, err, sizeof(err));
  assert_non_null(t);
  gnutls_session_t srv, cli;
  /* A client that prefers ChaCha20 and the largest curve first (as nng's
   * mbedTLS 2.28 client lists its curves) gets AES-GCM and X25519. */
  static const char *const versions[] = {
      "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+CHACHA20-POLY1305:+AES-256-GCM:+AES-128-GCM:"
      "-GROUP-ALL:+GROUP-SECP521R1:+GROUP-SECP384R1:+GROUP-SECP256R1:+GROUP-X25519",
      "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+CHACHA20-POLY1305:+AES-256-GCM:"
      "-GROUP-ALL:+GROUP-SECP521R1:+GROUP-X25519"};
  for (size_t i = 0; i < 2; i++) {
    assert_int_equal(handshake(t, p->ca, versions[i], &srv, &cli), 0);
    gnutls_cipher_algorithm_t c = gnutls_cipher_get(srv);
    assert_true(c == GNUTLS_CIPHER_AES_128_GCM || c == GNUTLS_CIPHER_AES_256_GCM);
    assert_int_equal(gnutls_protocol_get_version(srv), i == 0 ? GNUTLS_TLS1_2 : GNUTLS_TLS1_3);
    assert_int_equal(gnutls_group_get(srv), GNUTLS_GROUP_X25519);
    gnutls_deinit(srv);
    gnutls_deinit(cli);
  }
  ctlgate_tls_free(t);
}

static void test_refuses_the_rest(void **state) {
  pems_t *p = *state;
  char err[256];
  ctlgate_tls_t *t = ctlgate_tls_new(p->cert, p->key, NULL, err, sizeof(err));
  assert_non_null(t);
  gnutls_session_t srv, cli;
  static const char *const refused[] = {
      "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+CHACHA20-POLY1305",
      "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-CBC",
      "NORMAL:-VERS-ALL:+VERS-TLS1.1",
      "NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+RSA", /* no forward secrecy */
      "NORMAL:-VERS-ALL:+VERS-TLS1.2:-GROUP-ALL:+GROUP-FFDHE2048"};
  for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
    int rs = handshake(t, p->ca, refused[i], &srv, &cli);
    assert_int_not_equal(rs, 0);
    assert_int_equal(ctlgate_tls_outcome(rs), CTLGATE_TLS_FATAL);
    gnutls_deinit(srv);
    gnutls_deinit(cli);
  }
  ctlgate_tls_free(t);
}

static void test_ticket_key(void **state) {
  (void)state;
  uint8_t a[CTLGATE_TLS_TICKET_KEY_LEN], a2[CTLGATE_TLS_TICKET_KEY_LEN],
      b[CTLGATE_TLS_TICKET_KEY_LEN], zero[CTLGATE_TLS_TICKET_KEY_LEN] = {0};
  const char *ka = "-----BEGIN PRIVATE KEY-----\nCA one\n-----END PRIVATE KEY-----\n";
  const char *kb = "-----BEGIN PRIVATE KEY-----\nCA two\n-----END PRIVATE KEY-----\n";
  assert_int_equal(ctlgate_tls_ticket_key(ka, a), 0);
  assert_int_equal(ctlgate_tls_ticket_key(ka, a2), 0);
  assert_int_equal(ctlgate_tls_ticket_key(kb, b), 0);
  assert_memory_equal(a, a2, sizeof(a));      /* every replica, every restart */
  assert_memory_not_equal(a, b, sizeof(a));   /* another CA: another key */
  assert_memory_not_equal(a, zero, sizeof(a));
  /* both halves differ between CAs (HKDF's second block too) */
  assert_memory_not_equal(a + 32, b + 32, 32);
  assert_memory_not_equal(a, a + 32, 32);
  assert_int_equal(ctlgate_tls_ticket_key(NULL, a), -1);
  assert_int_equal(ctlgate_tls_ticket_key("", a), -1);
}

/* resume runs a TLS 1.3 handshake against |t| offering |in| (a client's
 * session data, NULL: none), lets the ticket arrive with a byte of data,
 * and returns whether the session was resumed; |out| gets the client's
 * session data when a ticket came (else size 0). */
static int resume(ctlgate_tls_t *t, const char *ca, const gnutls_datum_t *in,
                  gnutls_datum_t *out) {
  tls_pair_t pr;
  pair_handshake(&pr, t, ca, "NORMAL:-VERS-ALL:+VERS-TLS1.3", in);
  gnutls_session_t srv = pr.srv, cli = pr.cli;
  assert_int_equal(pr.rs, 0);
  assert_int_equal(pr.rc, 0);
  ctlgate_tls_done(t, srv);
  assert_int_equal(gnutls_record_send(srv, "x", 1), 1);
  char b;
  ssize_t n = GNUTLS_E_AGAIN;
  for (int i = 0; i < 10 && n == GNUTLS_E_AGAIN; i++) n = gnutls_record_recv(cli, &b, 1);
  assert_int_equal(n, 1);
  int resumed = gnutls_session_is_resumed(cli) != 0;
  assert_int_equal(resumed, gnutls_session_is_resumed(srv) != 0);
  /* resumption keeps forward secrecy: psk_dhe_ke, an ECDHE on X25519 */
  if (resumed) assert_int_equal(gnutls_group_get(srv), GNUTLS_GROUP_X25519);
  out->data = NULL;
  out->size = 0;
  if (gnutls_session_get_flags(cli) & GNUTLS_SFLAGS_SESSION_TICKET)
    assert_int_equal(gnutls_session_get_data2(cli, out), 0);
  gnutls_deinit(srv);
  gnutls_deinit(cli);
  pair_close(&pr);
  return resumed;
}

static unsigned long metric(ctlgate_tls_t *t, const char *kind) {
  char *buf = NULL, pat[96];
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  ctlgate_tls_metrics(t, f);
  fclose(f);
  snprintf(pat, sizeof(pat), "cascade_control_tls_sessions_total{kind=\"%s\"} ", kind);
  char *at = strstr(buf, pat);
  unsigned long v = at ? strtoul(at + strlen(pat), NULL, 10) : 9999;
  free(buf);
  return v;
}

static void test_tickets_shared_by_ca(void **state) {
  pems_t *p = *state;
  char err[256], path[128];
  snprintf(path, sizeof(path), "%s/ca.key", p->dir);
  char *cakey = x509_read_file(path, X509_PEM_MAX, err, sizeof(err));
  assert_non_null(cakey);
  uint8_t k[CTLGATE_TLS_TICKET_KEY_LEN], other[CTLGATE_TLS_TICKET_KEY_LEN];
  assert_int_equal(ctlgate_tls_ticket_key(cakey, k), 0);
  assert_int_equal(ctlgate_tls_ticket_key("another CA's key", other), 0);
  /* two gates from the same CA: a replica and a restarted one */
  ctlgate_tls_t *g1 = ctlgate_tls_new(p->cert, p->key, k, err, sizeof(err));
  ctlgate_tls_t *g2 = ctlgate_tls_new(p->cert, p->key, k, err, sizeof(err));
  ctlgate_tls_t *g3 = ctlgate_tls_new(p->cert, p->key, other, err, sizeof(err));
  ctlgate_tls_t *g4 = ctlgate_tls_new(p->cert, p->key, NULL, err, sizeof(err));
  assert_non_null(g1);
  assert_non_null(g2);
  assert_non_null(g3);
  assert_non_null(g4);
  gnutls_datum_t t1, t2, t3, t4;
  assert_false(resume(g1, p->ca, NULL, &t1));
  assert_true(t1.size > 0); /* a ticket came */
  assert_true(resume(g2, p->ca, &t1, &t2));  /* the other gate resumes it */
  assert_true(t2.size > 0);                  /* and issues a fresh ticket */
  assert_false(resume(g3, p->ca, &t2, &t3)); /* another key: a full handshake */
  assert_false(resume(g4, p->ca, &t2, &t4)); /* no key: no tickets at all */
  assert_int_equal(t4.size, 0);
  assert_int_equal(metric(g1, "full"), 1);
  assert_int_equal(metric(g2, "resumed"), 1);
  assert_int_equal(metric(g2, "full"), 0);
  assert_int_equal(metric(g3, "full"), 1);
  assert_int_equal(metric(g3, "resumed"), 0);
  gnutls_free(t1.data);
  gnutls_free(t2.data);
  gnutls_free(t3.data);
  ctlgate_tls_free(g1);
  ctlgate_tls_free(g2);
  ctlgate_tls_free(g3);
  ctlgate_tls_free(g4);
  free(cakey);
}

int main(void) {
  gnutls_global_init();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_outcome),
      cmocka_unit_test_setup_teardown(test_bad_key, pems_setup, pems_teardown),
      cmocka_unit_test_setup_teardown(test_settles_for_aes_gcm, pems_setup, pems_teardown),
      cmocka_unit_test_setup_teardown(test_refuses_the_rest, pems_setup, pems_teardown),
      cmocka_unit_test(test_ticket_key),
      cmocka_unit_test_setup_teardown(test_tickets_shared_by_ca, pems_setup, pems_teardown),
  };
  int rv = cmocka_run_group_tests(tests, NULL, NULL);
  gnutls_global_deinit();
  return rv;
}
