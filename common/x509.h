/* The small certificate authority of Cascade and the node-key helpers, on
 * GnuTLS (DESIGN.md §5): the controller's CA and server certificate, the
 * node's own key and certificate request, the short-lived node certificate
 * the CA issues for it, and the fingerprint pins agents check.
 *
 * Keys are ECDSA P-256 and signatures SHA-256. PEM goes in and out as
 * NUL-terminated heap strings the caller releases with free(). Functions
 * return 0 or -1 with a message in |err| (|errlen| bytes, may be 0). The
 * module keeps no global state; the caller runs gnutls_global_init(). */
#ifndef CASCADE_X509_H
#define CASCADE_X509_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define X509_FPR_LEN 96             /* "AB:CD:...", 32 pairs, with NUL */
#define X509_CSR_MAX (16 * 1024)    /* largest CSR PEM x509_csr_sign takes */
#define X509_PEM_MAX (64 * 1024)    /* a sensible |max| for x509_read_file */
#define X509_CLOCK_SKEW 300         /* node certs are valid from now - this */

/* x509_ca_ensure creates what is missing in |dir| (mode 0700 if created):
 * ca.key + ca.crt, a self-signed CA "Cascade CA" valid 10 years, then
 * server.key + server.crt, the controller's certificate signed by that CA
 * (CN cascade-controller; DNS SANs cascade-controller, localhost, the host
 * name, 127.0.0.1, ::1; IP SANs 127.0.0.1, ::1; valid 2 years). A file pair
 * already present is left alone; a key without its certificate gets one. */
int x509_ca_ensure(const char *dir, char *err, size_t errlen);

/* x509_server_issue makes a controller server certificate (the names and
 * lifetime of x509_ca_ensure's) for a fresh key, signed by the CA
 * |ca_cert_pem| / |ca_key_pem|, in memory: a replica given the deployment's
 * CA (control.tls.ca) presents a certificate agents verify against it. */
int x509_server_issue(const char *ca_cert_pem, const char *ca_key_pem, char **cert_pem,
                      char **key_pem, char *err, size_t errlen);
/* x509_fingerprint writes the SHA-256 of the DER of the first certificate in
 * |cert_pem| as uppercase hex pairs joined by ':' (openssl's form). */
int x509_fingerprint(const char *cert_pem, char out[X509_FPR_LEN]);

/* x509_fingerprint_matches compares the certificate with |pin|: 64 hex
 * digits in any case, bare or in colon-separated pairs, optionally after
 * "sha256:". Returns 0 on a match, 1 on a mismatch, -1 when either the
 * certificate or the pin cannot be read. */
int x509_fingerprint_matches(const char *cert_pem, const char *pin);

/* x509_read_file returns the content of the regular file |path| (at most
 * |max| bytes, NUL-terminated, no NUL inside), or NULL with |err| set. */
char *x509_read_file(const char *path, size_t max, char *err, size_t errlen);

/* x509_key_ensure loads the private key at |path|, or creates a P-256 key
 * there (mode 0600); an existing file with any group/other permission bit is
 * refused. |*key_pem| receives the key PEM. */
int x509_key_ensure(const char *path, char **key_pem, char *err,
                    size_t errlen);

/* x509_csr_make builds a PKCS#10 request with subject CN=|name| for the key
 * in |key_pem|, signed by that key. */
int x509_csr_make(const char *key_pem, const char *name, char **csr_pem,
                  char *err, size_t errlen);

/* x509_csr_sign issues the certificate of node |instance_id| (>= 0) in its
 * credential |epoch| (>= 0) for the public key of |csr_pem| once its
 * self-signature checks out. Only the key is taken from the request: the CA
 * writes CN cascade-node-<id>, DNS SAN node-<id>.cascade, URI SANs
 * cascade:node:<id> and cascade:epoch:<epoch>, client+server auth, valid
 * from now - X509_CLOCK_SKEW to now + |lifetime_s| (clamped to the CA's own
 * end, written to |*not_after| if not NULL). Takes ECDSA (P-256/384/521) or
 * RSA >= 2048 keys and CSRs up to X509_CSR_MAX bytes. */
int x509_csr_sign(const char *ca_cert_pem, const char *ca_key_pem,
                  const char *csr_pem, int64_t instance_id, int64_t epoch,
                  unsigned lifetime_s, char **cert_pem, time_t *not_after,
                  char *err, size_t errlen);

/* x509_cert_info reads the first certificate of |cert_pem|: the node id of
 * its URI SAN cascade:node:<id> (-1 when it has none) and its validity. Any
 * output pointer may be NULL. */
int x509_cert_info(const char *cert_pem, int64_t *instance_id,
                   time_t *not_before, time_t *not_after, char *err,
                   size_t errlen);

/* x509_cert_node is x509_cert_info that also reads the credential epoch of
 * its URI SAN cascade:epoch:<n> (-1 when it has none). */
int x509_cert_node(const char *cert_pem, int64_t *instance_id, int64_t *epoch,
                   time_t *not_before, time_t *not_after, char *err, size_t errlen);

/* x509_verify_chain checks that the first certificate of |cert_pem| is
 * signed by a CA of |ca_pem| and that both are valid at time |now|. */
int x509_verify_chain(const char *cert_pem, const char *ca_pem, time_t now,
                      char *err, size_t errlen);

#endif
