/* Throwaway PKI for the data plane's QUIC tests: a CA in a temporary
 * directory (common/x509.h, the code the controller runs) and node
 * certificates signed by it. Included by the test programs only; the
 * functions are static so each program carries its own copy. */
#ifndef CASCADE_TESTPKI_H
#define CASCADE_TESTPKI_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "x509.h"

/* testpki_node makes node |id|'s key (kept in |dir|) and a certificate of
 * |life| seconds signed by |dir|'s CA; cmocka-fails on any error. */
static char *testpki_node(const char *dir, int64_t id, unsigned life, char **key_pem) {
  char path[128], err[256], *ca_crt, *ca_key, *csr = NULL, *cert = NULL;
  snprintf(path, sizeof(path), "%s/ca.crt", dir);
  ca_crt = x509_read_file(path, X509_PEM_MAX, err, sizeof(err));
  snprintf(path, sizeof(path), "%s/ca.key", dir);
  ca_key = x509_read_file(path, X509_PEM_MAX, err, sizeof(err));
  assert_non_null(ca_crt);
  assert_non_null(ca_key);
  snprintf(path, sizeof(path), "%s/node%lld.key", dir, (long long)id);
  assert_int_equal(x509_key_ensure(path, key_pem, err, sizeof(err)), 0);
  assert_int_equal(x509_csr_make(*key_pem, "node", &csr, err, sizeof(err)), 0);
  assert_int_equal(x509_csr_sign(ca_crt, ca_key, csr, id, 1, life, &cert, NULL, err, sizeof(err)),
                   0);
  free(ca_crt);
  free(ca_key);
  free(csr);
  return cert;
}

/* testpki_rm_dir removes |dir| and the files in it. */
static void testpki_rm_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  char path[512];
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
    unlink(path);
  }
  closedir(d);
  rmdir(dir);
}

#endif
