/* Unit tests for x509: the CA and server certificate on disk, fingerprints
 * (checked against openssl when it is installed), node keys, and the
 * CSR -> node certificate -> chain round trip with its refusals. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "x509.h"

#define LIFETIME 3600

typedef struct {
  char root[64];      /* mkdtemp directory, removed at the end */
  char dir[128];      /* root/ca: made by x509_ca_ensure */
  char *ca_crt, *ca_key, *srv_crt, *srv_key;
  char *node_key;     /* a node key made by x509_key_ensure */
} fixture_t;

static char *path2(const char *dir, const char *name) {
  char *p;
  assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
  return p;
}

static char *slurp(const char *dir, const char *name) {
  char err[256] = "", *p = path2(dir, name);
  char *s = x509_read_file(p, X509_PEM_MAX, err, sizeof(err));
  if (s == NULL) fail_msg("%s", err);
  free(p);
  return s;
}

static mode_t mode_of(const char *dir, const char *name) {
  struct stat st;
  char *p = path2(dir, name);
  assert_int_equal(stat(p, &st), 0);
  free(p);
  return st.st_mode & 07777;
}

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path);
}

static void rm_rf(const char *path) {
  nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static gnutls_x509_crt_t crt_of(const char *pem) {
  gnutls_x509_crt_t crt;
  gnutls_datum_t d = {(unsigned char *)pem, (unsigned)strlen(pem)};
  assert_int_equal(gnutls_x509_crt_init(&crt), 0);
  assert_int_equal(gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_PEM), 0);
  return crt;
}

/* A key of another type, as PEM, for the refusal tests. */
static char *other_key(gnutls_pk_algorithm_t alg, unsigned bits) {
  gnutls_x509_privkey_t key;
  gnutls_datum_t d;
  assert_int_equal(gnutls_x509_privkey_init(&key), 0);
  assert_int_equal(gnutls_x509_privkey_generate2(key, alg, bits, 0, NULL, 0),
                   0);
  assert_int_equal(gnutls_x509_privkey_export2_pkcs8(
                       key, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN, &d),
                   0);
  char *s = strndup((const char *)d.data, d.size);
  gnutls_free(d.data);
  gnutls_x509_privkey_deinit(key);
  return s;
}

/* The SHA-256 key id of a certificate's and of a private key's public key. */
static void key_id_crt(const char *pem, unsigned char id[32]) {
  gnutls_x509_crt_t crt = crt_of(pem);
  size_t len = 32;
  assert_int_equal(
      gnutls_x509_crt_get_key_id(crt, GNUTLS_KEYID_USE_SHA256, id, &len), 0);
  assert_int_equal(len, 32);
  gnutls_x509_crt_deinit(crt);
}

static void key_id_key(const char *pem, unsigned char id[32]) {
  gnutls_x509_privkey_t key;
  gnutls_datum_t d = {(unsigned char *)pem, (unsigned)strlen(pem)};
  size_t len = 32;
  assert_int_equal(gnutls_x509_privkey_init(&key), 0);
  assert_int_equal(gnutls_x509_privkey_import2(key, &d, GNUTLS_X509_FMT_PEM,
                                               NULL, GNUTLS_PKCS_PLAIN),
                   0);
  assert_int_equal(
      gnutls_x509_privkey_get_key_id(key, GNUTLS_KEYID_USE_SHA256, id, &len),
      0);
  gnutls_x509_privkey_deinit(key);
}

static int have_openssl(void) {
  return system("command -v openssl >/dev/null 2>&1") == 0;
}

static int group_setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  char err[256] = "";
  strcpy(f->root, "/tmp/test_x509.XXXXXX");
  if (mkdtemp(f->root) == NULL) return -1;
  snprintf(f->dir, sizeof(f->dir), "%s/state/ca", f->root);
  if (x509_ca_ensure(f->dir, err, sizeof(err)) != 0) {
    fprintf(stderr, "x509_ca_ensure: %s\n", err);
    return -1;
  }
  f->ca_crt = slurp(f->dir, "ca.crt");
  f->ca_key = slurp(f->dir, "ca.key");
  f->srv_crt = slurp(f->dir, "server.crt");
  f->srv_key = slurp(f->dir, "server.key");
  char *kp = path2(f->root, "node.key");
  if (x509_key_ensure(kp, &f->node_key, err, sizeof(err)) != 0) {
    fprintf(stderr, "x509_key_ensure: %s\n", err);
    return -1;
  }
  free(kp);
  *state = f;
  return 0;
}

static int group_teardown(void **state) {
  fixture_t *f = *state;
  rm_rf(f->root);
  free(f->ca_crt);
  free(f->ca_key);
  free(f->srv_crt);
  free(f->srv_key);
  free(f->node_key);
  free(f);
  return 0;
}

/* Issues a node certificate for the fixture's node key. */
static char *node_cert(fixture_t *f, int64_t id, time_t *not_after) {
  char err[256] = "", *csr, *cert;
  assert_int_equal(x509_csr_make(f->node_key, "whatever", &csr, err,
                                 sizeof(err)), 0);
  if (x509_csr_sign(f->ca_crt, f->ca_key, csr, id, 1, LIFETIME, &cert, not_after,
                    err, sizeof(err)) != 0)
    fail_msg("x509_csr_sign: %s", err);
  free(csr);
  return cert;
}

/* ---- CA on disk ------------------------------------------------------- */

static void test_ca_files(void **state) {
  fixture_t *f = *state;
  char err[256] = "";
  char *parent = path2(f->root, "state");

  assert_int_equal(mode_of(parent, "ca"), 0700);
  assert_int_equal(mode_of(f->dir, "ca.key"), 0600);
  assert_int_equal(mode_of(f->dir, "server.key"), 0600);
  assert_int_equal(mode_of(f->dir, "ca.crt"), 0644);
  assert_int_equal(mode_of(f->dir, "server.crt"), 0644);
  assert_non_null(strstr(f->ca_key, "-----BEGIN PRIVATE KEY-----"));
  assert_non_null(strstr(f->ca_crt, "-----BEGIN CERTIFICATE-----"));

  /* A second call changes nothing, not even the inodes. */
  const char *names[] = {"ca.key", "ca.crt", "server.key", "server.crt"};
  struct stat before[4], after[4];
  for (int i = 0; i < 4; i++) {
    char *p = path2(f->dir, names[i]);
    assert_int_equal(stat(p, &before[i]), 0);
    free(p);
  }
  assert_int_equal(x509_ca_ensure(f->dir, err, sizeof(err)), 0);
  for (int i = 0; i < 4; i++) {
    char *p = path2(f->dir, names[i]);
    assert_int_equal(stat(p, &after[i]), 0);
    assert_int_equal(before[i].st_ino, after[i].st_ino);
    assert_int_equal(before[i].st_size, after[i].st_size);
    assert_int_equal(before[i].st_mtim.tv_nsec, after[i].st_mtim.tv_nsec);
    free(p);
  }
  char *again = slurp(f->dir, "ca.crt");
  assert_string_equal(again, f->ca_crt);
  free(again);
  again = slurp(f->dir, "server.key");
  assert_string_equal(again, f->srv_key);
  free(again);

  /* No temporary files left behind. */
  char *ls;
  assert_true(asprintf(&ls, "test $(ls -A '%s' | wc -l) -eq 4", f->dir) > 0);
  assert_int_equal(system(ls), 0);
  free(ls);
  free(parent);
}

static void test_ca_cert(void **state) {
  fixture_t *f = *state;
  gnutls_x509_crt_t crt = crt_of(f->ca_crt);
  char buf[256];
  size_t len = sizeof(buf);
  unsigned bits, critical;

  assert_int_equal(gnutls_x509_crt_get_dn(crt, buf, &len), 0);
  assert_string_equal(buf, "CN=Cascade CA");
  len = sizeof(buf);
  assert_int_equal(gnutls_x509_crt_get_issuer_dn(crt, buf, &len), 0);
  assert_string_equal(buf, "CN=Cascade CA");
  assert_int_equal(gnutls_x509_crt_get_pk_algorithm(crt, &bits),
                   GNUTLS_PK_ECDSA);
  assert_int_equal(bits, 256);
  assert_int_equal(gnutls_x509_crt_get_signature_algorithm(crt),
                   GNUTLS_SIGN_ECDSA_SHA256);
  unsigned ca;
  int pathlen;
  assert_int_equal(
      gnutls_x509_crt_get_basic_constraints(crt, &critical, &ca, &pathlen),
      1);
  assert_int_equal(ca, 1);
  assert_int_equal(pathlen, 0);
  unsigned usage;
  assert_true(gnutls_x509_crt_get_key_usage(crt, &usage, &critical) >= 0);
  assert_int_equal(usage, GNUTLS_KEY_KEY_CERT_SIGN | GNUTLS_KEY_CRL_SIGN);
  time_t nb = gnutls_x509_crt_get_activation_time(crt);
  time_t na = gnutls_x509_crt_get_expiration_time(crt);
  assert_in_range(na - nb, 3650L * 86400, 3650L * 86400 + 600);
  unsigned char serial[32];
  len = sizeof(serial);
  assert_int_equal(gnutls_x509_crt_get_serial(crt, serial, &len), 0);
  assert_int_equal(len, 16);
  assert_int_equal(serial[0] & 0x80, 0);
  gnutls_x509_crt_deinit(crt);

  /* The key on disk belongs to it, and it verifies as its own anchor. */
  unsigned char a[32], b[32];
  key_id_crt(f->ca_crt, a);
  key_id_key(f->ca_key, b);
  assert_memory_equal(a, b, 32);
  char err[256] = "";
  assert_int_equal(
      x509_verify_chain(f->ca_crt, f->ca_crt, time(NULL), err, sizeof(err)),
      0);
}

static void test_server_cert(void **state) {
  fixture_t *f = *state;
  gnutls_x509_crt_t crt = crt_of(f->srv_crt);
  char host[256] = "", buf[256], err[256] = "";
  int seen_ctl = 0, seen_lo = 0, seen_host = 0, seen_v4name = 0;
  int seen_v6name = 0, seen_v4 = 0, seen_v6 = 0;
  static const unsigned char v4[4] = {127, 0, 0, 1};
  static const unsigned char v6[16] = {[15] = 1};

  assert_int_equal(gethostname(host, sizeof(host) - 1), 0);
  for (unsigned i = 0;; i++) {
    size_t len = sizeof(buf);
    unsigned critical;
    int type = gnutls_x509_crt_get_subject_alt_name(crt, i, buf, &len,
                                                    &critical);
    if (type == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE) break;
    assert_true(type >= 0);
    if (type == GNUTLS_SAN_DNSNAME) {
      buf[len] = '\0';
      seen_ctl += strcmp(buf, "cascade-controller") == 0;
      seen_lo += strcmp(buf, "localhost") == 0;
      seen_host += strcmp(buf, host) == 0;
      seen_v4name += strcmp(buf, "127.0.0.1") == 0;
      seen_v6name += strcmp(buf, "::1") == 0;
    } else if (type == GNUTLS_SAN_IPADDRESS) {
      seen_v4 += len == 4 && memcmp(buf, v4, 4) == 0;
      seen_v6 += len == 16 && memcmp(buf, v6, 16) == 0;
    }
  }
  assert_int_equal(seen_ctl, 1);
  assert_int_equal(seen_lo, 1);
  assert_int_equal(seen_host, 1);
  assert_int_equal(seen_v4name, 1);
  assert_int_equal(seen_v6name, 1);
  assert_int_equal(seen_v4, 1);
  assert_int_equal(seen_v6, 1);
  assert_true(gnutls_x509_crt_check_hostname(crt, "127.0.0.1"));
  assert_true(gnutls_x509_crt_check_hostname(crt, "cascade-controller"));
  assert_false(gnutls_x509_crt_check_hostname(crt, "example.org"));

  size_t len = sizeof(buf);
  assert_int_equal(gnutls_x509_crt_get_dn(crt, buf, &len), 0);
  assert_string_equal(buf, "CN=cascade-controller");
  len = sizeof(buf);
  assert_int_equal(gnutls_x509_crt_get_key_purpose_oid(crt, 0, buf, &len,
                                                       NULL), 0);
  assert_string_equal(buf, GNUTLS_KP_TLS_WWW_SERVER);
  unsigned usage, critical;
  assert_true(gnutls_x509_crt_get_key_usage(crt, &usage, &critical) >= 0);
  assert_int_equal(usage, GNUTLS_KEY_DIGITAL_SIGNATURE);
  time_t nb = gnutls_x509_crt_get_activation_time(crt);
  time_t na = gnutls_x509_crt_get_expiration_time(crt);
  assert_in_range(na - nb, 730L * 86400, 730L * 86400 + 600);

  /* Signed by the CA, with the CA's key id as authority key id. */
  gnutls_x509_crt_t ca = crt_of(f->ca_crt);
  unsigned char ski[64], aki[64];
  size_t skilen = sizeof(ski), akilen = sizeof(aki);
  assert_int_equal(gnutls_x509_crt_get_subject_key_id(ca, ski, &skilen,
                                                      &critical), 0);
  assert_int_equal(gnutls_x509_crt_get_authority_key_id(crt, aki, &akilen,
                                                        &critical), 0);
  assert_int_equal(skilen, akilen);
  assert_memory_equal(ski, aki, skilen);
  gnutls_x509_crt_deinit(ca);
  gnutls_x509_crt_deinit(crt);
  if (x509_verify_chain(f->srv_crt, f->ca_crt, time(NULL), err, sizeof(err)))
    fail_msg("%s", err);

  unsigned char a[32], b[32];
  key_id_crt(f->srv_crt, a);
  key_id_key(f->srv_key, b);
  assert_memory_equal(a, b, 32);

  if (have_openssl()) {
    char *cmd;
    assert_true(asprintf(&cmd,
                         "cd '%s' && openssl verify -CAfile ca.crt "
                         "-purpose sslserver server.crt >/dev/null",
                         f->dir) > 0);
    assert_int_equal(system(cmd), 0);
    free(cmd);
  }
}

/* A certificate alone (no key) is refused; a key alone gets its cert. */
static void test_ca_partial(void **state) {
  fixture_t *f = *state;
  char err[256] = "", dir[128];
  snprintf(dir, sizeof(dir), "%s/partial", f->root);

  assert_int_equal(mkdir(dir, 0700), 0);
  char *p = path2(dir, "ca.crt");
  FILE *fp = fopen(p, "w");
  fputs(f->ca_crt, fp);
  fclose(fp);
  assert_int_equal(x509_ca_ensure(dir, err, sizeof(err)), -1);
  assert_non_null(strstr(err, "without"));
  unlink(p);
  free(p);

  /* A pre-existing CA key (an operator's) is kept and certified. */
  p = path2(dir, "ca.key");
  fp = fopen(p, "w");
  fputs(f->ca_key, fp);
  fclose(fp);
  assert_int_equal(chmod(p, 0644), 0);
  assert_int_equal(x509_ca_ensure(dir, err, sizeof(err)), -1);
  assert_non_null(strstr(err, "0644"));
  assert_int_equal(chmod(p, 0600), 0);
  if (x509_ca_ensure(dir, err, sizeof(err)) != 0) fail_msg("%s", err);
  char *crt = slurp(dir, "ca.crt");
  unsigned char a[32], b[32];
  key_id_crt(crt, a);
  key_id_key(f->ca_key, b);
  assert_memory_equal(a, b, 32);
  char *srv = slurp(dir, "server.crt");
  assert_int_equal(x509_verify_chain(srv, crt, time(NULL), err, sizeof(err)),
                   0);
  free(srv);
  free(crt);
  free(p);
}

/* ---- fingerprints ----------------------------------------------------- */

static void test_fingerprint_format(void **state) {
  fixture_t *f = *state;
  char fpr[X509_FPR_LEN];

  assert_int_equal(x509_fingerprint(f->ca_crt, fpr), 0);
  assert_int_equal(strlen(fpr), 95);
  for (int i = 0; i < 95; i++) {
    if (i % 3 == 2)
      assert_int_equal(fpr[i], ':');
    else
      assert_non_null(strchr("0123456789ABCDEF", fpr[i]));
  }
  char other[X509_FPR_LEN];
  assert_int_equal(x509_fingerprint(f->srv_crt, other), 0);
  assert_string_not_equal(fpr, other);
  assert_int_equal(x509_fingerprint("not a certificate", other), -1);
  assert_string_equal(other, "");

  if (!have_openssl()) {
    print_message("openssl not installed: fingerprint not cross-checked\n");
    return;
  }
  char *cmd, line[256] = "";
  assert_true(asprintf(&cmd,
                       "openssl x509 -noout -fingerprint -sha256 -in "
                       "'%s/ca.crt'",
                       f->dir) > 0);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  assert_non_null(fgets(line, sizeof(line), p));
  assert_int_equal(pclose(p), 0);
  free(cmd);
  line[strcspn(line, "\r\n")] = '\0';
  /* "sha256 Fingerprint=AB:..." (OpenSSL 3) or "SHA256 Fingerprint=". */
  char *eq = strchr(line, '=');
  assert_non_null(eq);
  assert_string_equal(eq + 1, fpr);
}

static void test_fingerprint_matches(void **state) {
  fixture_t *f = *state;
  char fpr[X509_FPR_LEN], bare[65], lower[X509_FPR_LEN], pin[128];

  assert_int_equal(x509_fingerprint(f->ca_crt, fpr), 0);
  size_t n = 0;
  for (size_t i = 0; fpr[i]; i++) {
    lower[i] = (char)(fpr[i] >= 'A' && fpr[i] <= 'F' ? fpr[i] + 32 : fpr[i]);
    if (fpr[i] != ':') bare[n++] = fpr[i];
  }
  lower[95] = '\0';
  bare[n] = '\0';
  assert_int_equal(n, 64);

  assert_int_equal(x509_fingerprint_matches(f->ca_crt, fpr), 0);
  assert_int_equal(x509_fingerprint_matches(f->ca_crt, bare), 0);
  assert_int_equal(x509_fingerprint_matches(f->ca_crt, lower), 0);
  snprintf(pin, sizeof(pin), "sha256:%s", bare);
  assert_int_equal(x509_fingerprint_matches(f->ca_crt, pin), 0);
  snprintf(pin, sizeof(pin), "SHA256:%s", lower);
  assert_int_equal(x509_fingerprint_matches(f->ca_crt, pin), 0);

  /* Another certificate's pin, one digit off, malformed pins. */
  assert_int_equal(x509_fingerprint_matches(f->srv_crt, fpr), 1);
  bare[63] = bare[63] == '0' ? '1' : '0';
  assert_int_equal(x509_fingerprint_matches(f->ca_crt, bare), 1);
  bare[63] = '\0';
  assert_int_equal(x509_fingerprint_matches(f->ca_crt, bare), -1);
  snprintf(pin, sizeof(pin), "%sG", bare);
  assert_int_equal(x509_fingerprint_matches(f->ca_crt, pin), -1);
  snprintf(pin, sizeof(pin), "sha1:%s", fpr);
  assert_int_equal(x509_fingerprint_matches(f->ca_crt, pin), -1);
  memcpy(pin, fpr, sizeof(fpr));
  pin[2] = '-';
  assert_int_equal(x509_fingerprint_matches(f->ca_crt, pin), -1);
  assert_int_equal(x509_fingerprint_matches(f->ca_crt, ""), -1);
  assert_int_equal(x509_fingerprint_matches(f->ca_crt, NULL), -1);
  assert_int_equal(x509_fingerprint_matches("garbage", fpr), -1);
}

/* ---- files and keys --------------------------------------------------- */

static void test_read_file(void **state) {
  fixture_t *f = *state;
  char err[256] = "", *p = path2(f->dir, "ca.crt");

  char *s = x509_read_file(p, strlen(f->ca_crt), err, sizeof(err));
  assert_non_null(s);
  assert_string_equal(s, f->ca_crt);
  free(s);
  assert_null(x509_read_file(p, strlen(f->ca_crt) - 1, err, sizeof(err)));
  assert_non_null(strstr(err, "larger than"));
  assert_null(x509_read_file(f->dir, 1024, err, sizeof(err)));
  assert_non_null(strstr(err, "not a regular file"));
  free(p);
  p = path2(f->root, "nonexistent");
  assert_null(x509_read_file(p, 1024, err, sizeof(err)));
  assert_non_null(strstr(err, "nonexistent"));
  free(p);
}

static void test_key_ensure(void **state) {
  fixture_t *f = *state;
  char err[256] = "", *p = path2(f->root, "k.key"), *a, *b;

  assert_int_equal(x509_key_ensure(p, &a, err, sizeof(err)), 0);
  assert_non_null(strstr(a, "-----BEGIN PRIVATE KEY-----"));
  assert_int_equal(mode_of(f->root, "k.key"), 0600);
  assert_int_equal(x509_key_ensure(p, &b, err, sizeof(err)), 0);
  assert_string_equal(a, b);
  free(b);

  /* The key is P-256 ECDSA. */
  gnutls_x509_privkey_t key;
  gnutls_datum_t d = {(unsigned char *)a, (unsigned)strlen(a)};
  gnutls_ecc_curve_t curve;
  assert_int_equal(gnutls_x509_privkey_init(&key), 0);
  assert_int_equal(gnutls_x509_privkey_import2(key, &d, GNUTLS_X509_FMT_PEM,
                                               NULL, GNUTLS_PKCS_PLAIN), 0);
  assert_int_equal(gnutls_x509_privkey_get_pk_algorithm(key),
                   GNUTLS_PK_ECDSA);
  assert_int_equal(gnutls_x509_privkey_export_ecc_raw(key, &curve, NULL, NULL,
                                                      NULL), 0);
  assert_int_equal(curve, GNUTLS_ECC_CURVE_SECP256R1);
  gnutls_x509_privkey_deinit(key);
  free(a);

  /* A readable key is refused, with its mode in the message. */
  assert_int_equal(chmod(p, 0644), 0);
  b = (char *)1;
  assert_int_equal(x509_key_ensure(p, &b, err, sizeof(err)), -1);
  assert_null(b);
  assert_non_null(strstr(err, "0644"));
  assert_int_equal(chmod(p, 0640), 0);
  assert_int_equal(x509_key_ensure(p, &b, err, sizeof(err)), -1);
  assert_non_null(strstr(err, "0640"));

  /* Garbage in the key file, and a directory that does not exist. */
  FILE *fp = fopen(p, "w");
  fputs("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", fp);
  fclose(fp);
  assert_int_equal(chmod(p, 0600), 0);
  assert_int_equal(x509_key_ensure(p, &b, err, sizeof(err)), -1);
  free(p);
  p = path2(f->root, "missing/dir/k.key");
  assert_int_equal(x509_key_ensure(p, &b, err, sizeof(err)), -1);
  free(p);
}

/* ---- CSR and node certificates ---------------------------------------- */

static void test_csr_round_trip(void **state) {
  fixture_t *f = *state;
  char err[256] = "", *csr, *cert, buf[256];
  time_t not_after = 0, nb, na, before = time(NULL);
  int64_t id;

  /* The request asks for another name; the CA does not listen. */
  assert_int_equal(x509_csr_make(f->node_key, "cascade-node-1", &csr, err,
                                 sizeof(err)), 0);
  assert_non_null(strstr(csr, "-----BEGIN NEW CERTIFICATE REQUEST-----"));
  if (x509_csr_sign(f->ca_crt, f->ca_key, csr, 42, 9, LIFETIME, &cert,
                    &not_after, err, sizeof(err)) != 0)
    fail_msg("%s", err);
  time_t after = time(NULL);

  assert_int_equal(x509_cert_info(cert, &id, &nb, &na, err, sizeof(err)), 0);
  assert_int_equal(id, 42);
  int64_t epoch = -2;
  assert_int_equal(x509_cert_node(cert, &id, &epoch, NULL, NULL, err, sizeof(err)), 0);
  assert_int_equal(id, 42);
  assert_int_equal(epoch, 9);
  /* A certificate that names no epoch (issued before epochs) reads -1. */
  assert_int_equal(x509_cert_node(f->ca_crt, &id, &epoch, NULL, NULL, err, sizeof(err)), 0);
  assert_int_equal(id, -1);
  assert_int_equal(epoch, -1);
  assert_int_equal(na, not_after);
  assert_in_range(na, before + LIFETIME, after + LIFETIME);
  assert_in_range(nb, before - X509_CLOCK_SKEW, after - X509_CLOCK_SKEW);

  gnutls_x509_crt_t crt = crt_of(cert);
  size_t len = sizeof(buf);
  assert_int_equal(gnutls_x509_crt_get_dn(crt, buf, &len), 0);
  assert_string_equal(buf, "CN=cascade-node-42");
  len = sizeof(buf);
  assert_int_equal(gnutls_x509_crt_get_issuer_dn(crt, buf, &len), 0);
  assert_string_equal(buf, "CN=Cascade CA");
  int dns = 0, uri = 0, other = 0;
  for (unsigned i = 0;; i++) {
    unsigned critical;
    len = sizeof(buf);
    int type = gnutls_x509_crt_get_subject_alt_name(crt, i, buf, &len,
                                                    &critical);
    if (type == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE) break;
    buf[len] = '\0';
    if (type == GNUTLS_SAN_DNSNAME && strcmp(buf, "node-42.cascade") == 0)
      dns++;
    else if (type == GNUTLS_SAN_URI && strcmp(buf, "cascade:node:42") == 0)
      uri++;
    else if (type == GNUTLS_SAN_URI && strcmp(buf, "cascade:epoch:9") == 0)
      uri += 10;
    else
      other++;
  }
  assert_int_equal(dns, 1);
  assert_int_equal(uri, 11);
  assert_int_equal(other, 0);
  unsigned critical, ca, usage;
  int pathlen;
  assert_int_equal(
      gnutls_x509_crt_get_basic_constraints(crt, &critical, &ca, &pathlen), 0);
  assert_int_equal(ca, 0);
  assert_true(gnutls_x509_crt_get_key_usage(crt, &usage, &critical) >= 0);
  assert_int_equal(usage, GNUTLS_KEY_DIGITAL_SIGNATURE);
  int client = 0, server = 0;
  for (unsigned i = 0;; i++) {
    len = sizeof(buf);
    if (gnutls_x509_crt_get_key_purpose_oid(crt, i, buf, &len, NULL) < 0)
      break;
    client += strcmp(buf, GNUTLS_KP_TLS_WWW_CLIENT) == 0;
    server += strcmp(buf, GNUTLS_KP_TLS_WWW_SERVER) == 0;
  }
  assert_int_equal(client, 1);
  assert_int_equal(server, 1);
  assert_int_equal(gnutls_x509_crt_get_signature_algorithm(crt),
                   GNUTLS_SIGN_ECDSA_SHA256);
  gnutls_x509_crt_deinit(crt);

  /* It certifies the node's key, and chains to the CA. */
  unsigned char a[32], b[32];
  key_id_crt(cert, a);
  key_id_key(f->node_key, b);
  assert_memory_equal(a, b, 32);
  if (x509_verify_chain(cert, f->ca_crt, time(NULL), err, sizeof(err)) != 0)
    fail_msg("%s", err);

  if (have_openssl()) {
    char *cmd, *p = path2(f->root, "node42.crt");
    FILE *fp = fopen(p, "w");
    fputs(cert, fp);
    fclose(fp);
    assert_true(asprintf(&cmd,
                         "openssl verify -CAfile '%s/ca.crt' -purpose "
                         "sslclient '%s' >/dev/null",
                         f->dir, p) > 0);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    free(p);
  }
  free(cert);
  free(csr);
}

static void test_csr_from_openssl(void **state) {
  fixture_t *f = *state;
  char err[256] = "", *cmd, *csr, *cert;
  int64_t id = 0;

  if (!have_openssl()) skip();
  assert_true(asprintf(&cmd,
                       "cd '%s' && openssl req -new -newkey ec -pkeyopt "
                       "ec_paramgen_curve:P-256 -nodes -keyout o.key -out "
                       "o.csr -subj /CN=evil/O=x 2>/dev/null",
                       f->root) > 0);
  assert_int_equal(system(cmd), 0);
  free(cmd);
  csr = slurp(f->root, "o.csr");
  if (x509_csr_sign(f->ca_crt, f->ca_key, csr, 7, 1, LIFETIME, &cert, NULL, err,
                    sizeof(err)) != 0)
    fail_msg("%s", err);
  assert_int_equal(x509_cert_info(cert, &id, NULL, NULL, err, sizeof(err)),
                   0);
  assert_int_equal(id, 7);
  gnutls_x509_crt_t crt = crt_of(cert);
  char buf[256];
  size_t len = sizeof(buf);
  assert_int_equal(gnutls_x509_crt_get_dn(crt, buf, &len), 0);
  assert_string_equal(buf, "CN=cascade-node-7");
  gnutls_x509_crt_deinit(crt);
  free(cert);
  free(csr);
}

/* Flips |pem|'s base64 body character at |off| to another base64 letter. */
static void flip_b64(char *pem, size_t off) {
  char *body = strchr(pem, '\n') + 1;
  body[off] = body[off] == 'A' ? 'B' : 'A';
}

static void test_csr_refused(void **state) {
  fixture_t *f = *state;
  char err[256] = "", *csr, *cert = (char *)1;
  time_t na = 0;

  assert_int_equal(x509_csr_make(f->node_key, "n", &csr, err, sizeof(err)),
                   0);

  /* The CN inside the signed part, changed and re-encoded: well-formed
   * DER whose self-signature no longer matches. */
  gnutls_datum_t der, pem;
  assert_int_equal(gnutls_pem_base64_decode2("NEW CERTIFICATE REQUEST",
                                             &(gnutls_datum_t){
                                                 (unsigned char *)csr,
                                                 (unsigned)strlen(csr)},
                                             &der),
                   0);
  /* OID 2.5.4.3, then a string tag, length 1, "n". */
  unsigned char *cn = memmem(der.data, der.size, "\x55\x04\x03", 3);
  assert_non_null(cn);
  assert_memory_equal(cn + 4, "\x01n", 2);
  cn[5] = 'm';
  assert_int_equal(gnutls_pem_base64_encode2("NEW CERTIFICATE REQUEST", &der,
                                             &pem),
                   0);
  char *tampered = strndup((const char *)pem.data, pem.size);
  gnutls_free(der.data);
  gnutls_free(pem.data);
  assert_int_equal(x509_csr_sign(f->ca_crt, f->ca_key, tampered, 1, 1, LIFETIME,
                                 &cert, &na, err, sizeof(err)),
                   -1);
  assert_null(cert);
  assert_non_null(strstr(err, "signature"));
  free(tampered);

  /* One base64 character flipped in the key, in the signature. */
  size_t body = strlen(csr) - strlen("-----BEGIN NEW CERTIFICATE REQUEST-----\n")
                - strlen("-----END NEW CERTIFICATE REQUEST-----\n");
  size_t offs[] = {body / 2, body - 20};
  for (size_t i = 0; i < 2; i++) {
    tampered = strdup(csr);
    flip_b64(tampered, offs[i]);
    assert_int_equal(x509_csr_sign(f->ca_crt, f->ca_key, tampered, 1, 1,
                                   LIFETIME, &cert, &na, err, sizeof(err)),
                     -1);
    free(tampered);
  }

  /* Garbage, a certificate instead of a request, too large. */
  const char *junk[] = {"", "hello", f->ca_crt,
                        "-----BEGIN NEW CERTIFICATE REQUEST-----\nAAAA\n"
                        "-----END NEW CERTIFICATE REQUEST-----\n"};
  for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
    assert_int_equal(x509_csr_sign(f->ca_crt, f->ca_key, junk[i], 1, 1, LIFETIME,
                                   &cert, &na, err, sizeof(err)),
                     -1);
  char *big = malloc(X509_CSR_MAX + 2);
  memset(big, ' ', X509_CSR_MAX + 1);
  memcpy(big + X509_CSR_MAX + 1 - strlen(csr), csr, strlen(csr));
  big[X509_CSR_MAX + 1] = '\0';
  assert_int_equal(x509_csr_sign(f->ca_crt, f->ca_key, big, 1, 1, LIFETIME,
                                 &cert, &na, err, sizeof(err)),
                   -1);
  assert_non_null(strstr(err, "larger"));
  free(big);

  /* Bad arguments: negative id, no lifetime, a key not the CA's. */
  assert_int_equal(x509_csr_sign(f->ca_crt, f->ca_key, csr, -1, 1, LIFETIME,
                                 &cert, &na, err, sizeof(err)),
                   -1);
  assert_int_equal(x509_csr_sign(f->ca_crt, f->ca_key, csr, 1, -1, LIFETIME,
                                 &cert, &na, err, sizeof(err)),
                   -1);
  assert_int_equal(x509_csr_sign(f->ca_crt, f->ca_key, csr, 1, 1, 0, &cert, &na,
                                 err, sizeof(err)),
                   -1);
  assert_int_equal(x509_csr_sign(f->ca_crt, f->srv_key, csr, 1, 1, LIFETIME,
                                 &cert, &na, err, sizeof(err)),
                   -1);
  assert_non_null(strstr(err, "CA key"));
  assert_null(cert);
  free(csr);
}

static void test_csr_key_types(void **state) {
  fixture_t *f = *state;
  struct {
    gnutls_pk_algorithm_t alg;
    unsigned bits;
    int ok;
  } cases[] = {
      {GNUTLS_PK_RSA, 1024, -1},
      {GNUTLS_PK_EDDSA_ED25519, 256, -1},
      {GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP384R1), 0},
      {GNUTLS_PK_RSA, 2048, 0},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char err[256] = "", *csr, *cert;
    char *key = other_key(cases[i].alg, cases[i].bits);
    if (x509_csr_make(key, "n", &csr, err, sizeof(err)) != 0)
      fail_msg("csr_make %zu: %s", i, err);
    int rc = x509_csr_sign(f->ca_crt, f->ca_key, csr, 5, 1, LIFETIME, &cert, NULL,
                           err, sizeof(err));
    if (rc != cases[i].ok) fail_msg("case %zu: rc %d (%s)", i, rc, err);
    if (rc == 0) {
      assert_int_equal(
          x509_verify_chain(cert, f->ca_crt, time(NULL), err, sizeof(err)), 0);
      free(cert);
    } else {
      assert_non_null(strstr(err, cases[i].alg == GNUTLS_PK_RSA ? "2048"
                                                                : "not accepted"));
    }
    free(csr);
    free(key);
  }
}

static void test_cert_info(void **state) {
  fixture_t *f = *state;
  char err[256] = "";
  int64_t id = 0;
  time_t nb, na;

  /* No node URI in the CA or server certificate. */
  assert_int_equal(x509_cert_info(f->ca_crt, &id, &nb, &na, err, sizeof(err)),
                   0);
  assert_int_equal(id, -1);
  assert_true(nb < na);
  assert_int_equal(x509_cert_info(f->srv_crt, &id, NULL, NULL, err,
                                  sizeof(err)), 0);
  assert_int_equal(id, -1);
  char *cert = node_cert(f, INT64_MAX, NULL);
  assert_int_equal(x509_cert_info(cert, &id, NULL, NULL, err, sizeof(err)), 0);
  assert_int_equal(id, INT64_MAX);
  free(cert);
  cert = node_cert(f, 0, NULL);
  assert_int_equal(x509_cert_info(cert, &id, NULL, NULL, err, sizeof(err)), 0);
  assert_int_equal(id, 0);
  free(cert);
  assert_int_equal(x509_cert_info("junk", &id, NULL, NULL, err, sizeof(err)),
                   -1);
}

static void test_verify_chain(void **state) {
  fixture_t *f = *state;
  char err[256] = "", dir[128];
  time_t na = 0, now = time(NULL);
  char *cert = node_cert(f, 9, &na);

  assert_int_equal(x509_verify_chain(cert, f->ca_crt, now, err, sizeof(err)),
                   0);
  assert_int_equal(x509_verify_chain(cert, f->ca_crt, na, err, sizeof(err)),
                   0);
  assert_int_equal(
      x509_verify_chain(cert, f->ca_crt, na + 1, err, sizeof(err)), -1);
  assert_non_null(strstr(err, "expired"));
  assert_int_equal(x509_verify_chain(cert, f->ca_crt, now - 3600, err,
                                     sizeof(err)),
                   -1);
  assert_non_null(strstr(err, "not valid before"));

  /* Another CA's certificate, also when that CA is in the bundle next to
   * ours (the server certificate of the other CA does not chain to ours). */
  snprintf(dir, sizeof(dir), "%s/other", f->root);
  assert_int_equal(x509_ca_ensure(dir, err, sizeof(err)), 0);
  char *other_ca = slurp(dir, "ca.crt");
  char *other_srv = slurp(dir, "server.crt");
  assert_int_equal(
      x509_verify_chain(other_srv, f->ca_crt, now, err, sizeof(err)), -1);
  assert_int_equal(
      x509_verify_chain(cert, other_ca, now, err, sizeof(err)), -1);
  char *bundle;
  assert_true(asprintf(&bundle, "%s%s", other_ca, f->ca_crt) > 0);
  assert_int_equal(x509_verify_chain(cert, bundle, now, err, sizeof(err)), 0);
  assert_int_equal(x509_verify_chain(other_srv, bundle, now, err,
                                     sizeof(err)), 0);
  /* The CA too must be valid at that time. */
  assert_int_equal(x509_verify_chain(f->srv_crt, f->ca_crt,
                                     now + 3 * 365 * 86400, err, sizeof(err)),
                   -1);
  assert_int_equal(x509_verify_chain(cert, "junk", now, err, sizeof(err)), -1);
  assert_int_equal(x509_verify_chain("junk", f->ca_crt, now, err,
                                     sizeof(err)), -1);
  free(bundle);
  free(other_ca);
  free(other_srv);
  free(cert);
}

int main(void) {
  gnutls_global_init();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ca_files),
      cmocka_unit_test(test_ca_cert),
      cmocka_unit_test(test_server_cert),
      cmocka_unit_test(test_ca_partial),
      cmocka_unit_test(test_fingerprint_format),
      cmocka_unit_test(test_fingerprint_matches),
      cmocka_unit_test(test_read_file),
      cmocka_unit_test(test_key_ensure),
      cmocka_unit_test(test_csr_round_trip),
      cmocka_unit_test(test_csr_from_openssl),
      cmocka_unit_test(test_csr_refused),
      cmocka_unit_test(test_csr_key_types),
      cmocka_unit_test(test_cert_info),
      cmocka_unit_test(test_verify_chain),
  };
  int rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
  gnutls_global_deinit();
  return rc;
}
