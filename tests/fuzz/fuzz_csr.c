/* Fuzz target for the CA's input parsers: the bytes as a CSR for
 * x509_csr_sign and as a certificate for x509_cert_info,
 * x509_fingerprint and x509_verify_chain. Nothing may crash or leak, and
 * whatever the CA signs must read back as the node it was issued for and
 * chain to the CA. The CA is made once, in a temporary directory removed at
 * exit. */
#define _GNU_SOURCE
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gnutls/gnutls.h>

#include "x509.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NODE_ID 1234

static char ca_root[64];
static char *ca_crt, *ca_key;

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path);
}

static void ca_cleanup(void) {
  free(ca_crt);
  free(ca_key);
  if (ca_root[0] != '\0') nftw(ca_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  gnutls_global_deinit();
}

static void ca_init(void) {
  char err[256] = "", path[128];
  gnutls_global_init();
  strcpy(ca_root, "/tmp/fuzz_csr.XXXXXX");
  if (mkdtemp(ca_root) == NULL) abort();
  atexit(ca_cleanup);
  if (x509_ca_ensure(ca_root, err, sizeof(err)) != 0) {
    fprintf(stderr, "fuzz_csr: %s\n", err);
    abort();
  }
  snprintf(path, sizeof(path), "%s/ca.crt", ca_root);
  ca_crt = x509_read_file(path, X509_PEM_MAX, err, sizeof(err));
  snprintf(path, sizeof(path), "%s/ca.key", ca_root);
  ca_key = x509_read_file(path, X509_PEM_MAX, err, sizeof(err));
  if (ca_crt == NULL || ca_key == NULL) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[256], fpr[X509_FPR_LEN], *cert = NULL;
  time_t not_after = 0, nb, na;
  int64_t id;

  if (ca_crt == NULL) ca_init();
  char *s = malloc(size + 1);
  if (s == NULL) return 0;
  memcpy(s, data, size);
  s[size] = '\0';

  int64_t epoch = -1;
  if (x509_csr_sign(ca_crt, ca_key, s, NODE_ID, 3, 3600, &cert, &not_after, err,
                    sizeof(err)) == 0) {
    if (x509_cert_node(cert, &id, &epoch, &nb, &na, err, sizeof(err)) != 0 ||
        id != NODE_ID || epoch != 3 || na != not_after ||
        x509_verify_chain(cert, ca_crt, time(NULL), err, sizeof(err)) != 0)
      abort();
  } else if (cert != NULL) {
    abort();
  }
  free(cert);

  (void)x509_cert_node(s, &id, &epoch, &nb, &na, err, sizeof(err));
  if (x509_fingerprint(s, fpr) == 0) {
    if (strlen(fpr) != 95 || x509_fingerprint_matches(s, fpr) != 0) abort();
    (void)x509_verify_chain(s, ca_crt, time(NULL), err, sizeof(err));
  }
  free(s);
  return 0;
}
