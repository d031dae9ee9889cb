/* The certificate authority and node keys of Cascade, on GnuTLS (x509.h). */
#define _GNU_SOURCE /* renameat2, mkostemp, explicit_bzero */
#include "x509.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#define DAY 86400
#define CA_LIFETIME ((time_t)3650 * DAY)
#define SERVER_LIFETIME ((time_t)730 * DAY)
#define SERIAL_LEN 16
#define KEY_ID_MAX 64
#define PEM_INPUT_MAX (1024 * 1024) /* any PEM argument; CSRs are smaller */
#define CN_MAX 64                   /* ub-common-name, RFC 5280 */
#define NODE_URI_PREFIX "cascade:node:"
#define EPOCH_URI_PREFIX "cascade:epoch:"

static const char *const server_kp[] = {GNUTLS_KP_TLS_WWW_SERVER, NULL};
static const char *const node_kp[] = {GNUTLS_KP_TLS_WWW_CLIENT,
                                      GNUTLS_KP_TLS_WWW_SERVER, NULL};

/* What cert_issue writes into a certificate besides key, issuer and ids. */
typedef struct {
  const char *cn;
  time_t not_before;
  time_t not_after;
  int is_ca;                   /* CA:TRUE pathlen 0, else CA:FALSE */
  unsigned key_usage;
  const char *const *kp_oids;  /* NULL-terminated, or NULL for none */
  const char *const *dns;      /* NULL-terminated, or NULL */
  const char *uri;             /* or NULL */
  const char *uri2;            /* a second URI, or NULL */
  int with_loopback_ips;       /* IP SANs 127.0.0.1 and ::1 */
} cert_spec_t;

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...) {
  if (err == NULL || errlen == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

static int tls_fail(char *err, size_t errlen, const char *what, int ret) {
  set_err(err, errlen, "%s: %s", what, gnutls_strerror(ret));
  return -1;
}

/* datum_to_str moves a datum GnuTLS allocated into a NUL-terminated malloc'd
 * string, wiping the GnuTLS copy when it held a key. */
static char *datum_to_str(gnutls_datum_t *d, int secret) {
  char *s = malloc((size_t)d->size + 1);
  if (s != NULL) {
    memcpy(s, d->data, d->size);
    s[d->size] = '\0';
  }
  if (secret && d->data != NULL) explicit_bzero(d->data, d->size);
  gnutls_free(d->data);
  d->data = NULL;
  d->size = 0;
  return s;
}

static void free_secret(char *s) {
  if (s == NULL) return;
  explicit_bzero(s, strlen(s));
  free(s);
}

static int pem_datum(const char *pem, gnutls_datum_t *d, const char *what,
                     char *err, size_t errlen) {
  if (pem == NULL) {
    set_err(err, errlen, "%s: missing", what);
    return -1;
  }
  size_t n = strnlen(pem, PEM_INPUT_MAX + 1);
  if (n > PEM_INPUT_MAX) {
    set_err(err, errlen, "%s: larger than %d bytes", what, PEM_INPUT_MAX);
    return -1;
  }
  d->data = (unsigned char *)pem;
  d->size = (unsigned)n;
  return 0;
}

static int crt_import(const char *pem, gnutls_x509_crt_t *crt,
                      const char *what, char *err, size_t errlen) {
  gnutls_datum_t d;
  *crt = NULL;
  if (pem_datum(pem, &d, what, err, errlen) != 0) return -1;
  int ret = gnutls_x509_crt_init(crt);
  if (ret < 0) return tls_fail(err, errlen, what, ret);
  ret = gnutls_x509_crt_import(*crt, &d, GNUTLS_X509_FMT_PEM);
  if (ret < 0) {
    gnutls_x509_crt_deinit(*crt);
    *crt = NULL;
    return tls_fail(err, errlen, what, ret);
  }
  return 0;
}

static int key_import(const char *pem, gnutls_x509_privkey_t *key,
                      const char *what, char *err, size_t errlen) {
  gnutls_datum_t d;
  *key = NULL;
  if (pem_datum(pem, &d, what, err, errlen) != 0) return -1;
  int ret = gnutls_x509_privkey_init(key);
  if (ret < 0) return tls_fail(err, errlen, what, ret);
  ret = gnutls_x509_privkey_import2(*key, &d, GNUTLS_X509_FMT_PEM, NULL,
                                    GNUTLS_PKCS_PLAIN);
  if (ret < 0) {
    gnutls_x509_privkey_deinit(*key);
    *key = NULL;
    return tls_fail(err, errlen, what, ret);
  }
  return 0;
}

static int key_generate(gnutls_x509_privkey_t *key, char *err, size_t errlen) {
  *key = NULL;
  int ret = gnutls_x509_privkey_init(key);
  if (ret < 0) return tls_fail(err, errlen, "key init", ret);
  ret = gnutls_x509_privkey_generate2(
      *key, GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1),
      0, NULL, 0);
  if (ret < 0) {
    gnutls_x509_privkey_deinit(*key);
    *key = NULL;
    return tls_fail(err, errlen, "generate P-256 key", ret);
  }
  return 0;
}

/* Unencrypted PKCS#8 ("BEGIN PRIVATE KEY"), which GnuTLS, OpenSSL and
 * mbedTLS all read. */
static char *key_export(gnutls_x509_privkey_t key, char *err, size_t errlen) {
  gnutls_datum_t d = {NULL, 0};
  int ret = gnutls_x509_privkey_export2_pkcs8(key, GNUTLS_X509_FMT_PEM, NULL,
                                              GNUTLS_PKCS_PLAIN, &d);
  if (ret < 0) {
    tls_fail(err, errlen, "export key", ret);
    return NULL;
  }
  char *s = datum_to_str(&d, 1);
  if (s == NULL) set_err(err, errlen, "out of memory");
  return s;
}

static char *crt_export(gnutls_x509_crt_t crt, char *err, size_t errlen) {
  gnutls_datum_t d = {NULL, 0};
  int ret = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &d);
  if (ret < 0) {
    tls_fail(err, errlen, "export certificate", ret);
    return NULL;
  }
  char *s = datum_to_str(&d, 0);
  if (s == NULL) set_err(err, errlen, "out of memory");
  return s;
}

static int pubkey_of_key(gnutls_x509_privkey_t key, gnutls_pubkey_t *pub,
                         char *err, size_t errlen) {
  gnutls_privkey_t pk = NULL;
  *pub = NULL;
  int ret = gnutls_privkey_init(&pk);
  if (ret >= 0) ret = gnutls_privkey_import_x509(pk, key, 0);
  if (ret >= 0) ret = gnutls_pubkey_init(pub);
  if (ret >= 0) ret = gnutls_pubkey_import_privkey(*pub, pk, 0, 0);
  gnutls_privkey_deinit(pk);
  if (ret < 0) {
    gnutls_pubkey_deinit(*pub);
    *pub = NULL;
    return tls_fail(err, errlen, "public key", ret);
  }
  return 0;
}

/* ---- files ------------------------------------------------------------ */

static char *path_join(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *p = malloc(n);
  if (p != NULL) snprintf(p, n, "%s/%s", dir, name);
  return p;
}

static void fsync_parent(const char *path) {
  char *copy = strdup(path);
  if (copy == NULL) return;
  char *slash = strrchr(copy, '/');
  const char *dir = ".";
  if (slash == copy) {
    dir = "/";
  } else if (slash != NULL) {
    *slash = '\0';
    dir = copy;
  }
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    (void)fsync(fd);
    close(fd);
  }
  free(copy);
}

/* write_new_file creates |path| holding |data| with |mode|: a temporary file
 * beside it, fsync, then a rename that will not replace an existing file,
 * so nothing ever sees half a key and two processes creating the same key
 * cannot swap it under each other. Returns 0, 1 when |path| appeared
 * meanwhile (nothing written), or -1. */
static int write_new_file(const char *path, const char *data, mode_t mode,
                          char *err, size_t errlen) {
  size_t tlen = strlen(path) + sizeof(".tmp.XXXXXX");
  char *tmp = malloc(tlen);
  if (tmp == NULL) {
    set_err(err, errlen, "out of memory");
    return -1;
  }
  snprintf(tmp, tlen, "%s.tmp.XXXXXX", path);
  int fd = mkostemp(tmp, O_CLOEXEC);
  if (fd < 0) {
    set_err(err, errlen, "create %s: %s", tmp, strerror(errno));
    free(tmp);
    return -1;
  }
  const char *step = "chmod";
  if (fchmod(fd, mode) != 0) goto fail;
  step = "write";
  size_t len = strlen(data), off = 0;
  while (off < len) {
    ssize_t n = write(fd, data + off, len - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      goto fail;
    }
    off += (size_t)n;
  }
  step = "fsync";
  if (fsync(fd) != 0) goto fail;
  step = "close";
  int rc = close(fd);
  fd = -1;
  if (rc != 0) goto fail;
  step = "rename";
  if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) != 0) {
    if (errno == EEXIST) {
      unlink(tmp);
      free(tmp);
      return 1;
    }
    /* File systems without RENAME_NOREPLACE: a plain rename. */
    if ((errno != EINVAL && errno != ENOSYS) || rename(tmp, path) != 0)
      goto fail;
  }
  fsync_parent(path);
  free(tmp);
  return 0;

fail:;
  int e = errno;
  if (fd >= 0) close(fd);
  unlink(tmp);
  set_err(err, errlen, "%s %s: %s", step, path, strerror(e));
  free(tmp);
  return -1;
}

static int mkdir_p(const char *dir, char *err, size_t errlen) {
  if (dir == NULL || dir[0] == '\0') {
    set_err(err, errlen, "empty directory name");
    return -1;
  }
  char *p = strdup(dir);
  if (p == NULL) {
    set_err(err, errlen, "out of memory");
    return -1;
  }
  for (char *s = p + 1;; s++) {
    if (*s != '/' && *s != '\0') continue;
    char c = *s;
    *s = '\0';
    if (mkdir(p, 0700) != 0 && errno != EEXIST) {
      set_err(err, errlen, "mkdir %s: %s", p, strerror(errno));
      free(p);
      return -1;
    }
    *s = c;
    if (c == '\0') break;
  }
  free(p);
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    set_err(err, errlen, "%s: not a directory", dir);
    return -1;
  }
  return 0;
}

static char *read_fd(int fd, const char *path, size_t max, char *err,
                     size_t errlen) {
  struct stat st;
  if (fstat(fd, &st) != 0) {
    set_err(err, errlen, "stat %s: %s", path, strerror(errno));
    return NULL;
  }
  if (!S_ISREG(st.st_mode)) {
    set_err(err, errlen, "%s: not a regular file", path);
    return NULL;
  }
  if ((uintmax_t)st.st_size > max) {
    set_err(err, errlen, "%s: larger than %zu bytes", path, max);
    return NULL;
  }
  char *buf = malloc(max + 1);
  if (buf == NULL) {
    set_err(err, errlen, "out of memory");
    return NULL;
  }
  size_t len = 0;
  for (;;) {
    /* One byte more than allowed tells a file that grew meanwhile. */
    ssize_t n = read(fd, buf + len, max + 1 - len);
    if (n < 0) {
      if (errno == EINTR) continue;
      set_err(err, errlen, "read %s: %s", path, strerror(errno));
      free_secret(buf);
      return NULL;
    }
    if (n == 0) break;
    len += (size_t)n;
    if (len > max) {
      set_err(err, errlen, "%s: larger than %zu bytes", path, max);
      explicit_bzero(buf, len);
      free(buf);
      return NULL;
    }
  }
  if (memchr(buf, '\0', len) != NULL) {
    set_err(err, errlen, "%s: contains a NUL byte", path);
    explicit_bzero(buf, len);
    free(buf);
    return NULL;
  }
  buf[len] = '\0';
  return buf;
}

char *x509_read_file(const char *path, size_t max, char *err, size_t errlen) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    set_err(err, errlen, "open %s: %s", path, strerror(errno));
    return NULL;
  }
  char *s = read_fd(fd, path, max, err, errlen);
  close(fd);
  return s;
}

/* key_file_read reads the private key file |path|, refusing one that group
 * or others may access. Returns 0, 1 when there is no such file, or -1. */
static int key_file_read(const char *path, char **pem, char *err,
                         size_t errlen) {
  *pem = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return 1;
    set_err(err, errlen, "open %s: %s", path, strerror(errno));
    return -1;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    set_err(err, errlen, "stat %s: %s", path, strerror(errno));
    close(fd);
    return -1;
  }
  if (st.st_mode & 077) {
    set_err(err, errlen,
            "%s has mode %04o: a private key must not be accessible to "
            "group or others (chmod 600 it)",
            path, (unsigned)(st.st_mode & 07777));
    close(fd);
    return -1;
  }
  *pem = read_fd(fd, path, X509_PEM_MAX, err, errlen);
  close(fd);
  return *pem != NULL ? 0 : -1;
}

/* key_file_load is key_file_read plus parsing. */
static int key_file_load(const char *path, gnutls_x509_privkey_t *key,
                         char *err, size_t errlen) {
  char *pem;
  int r = key_file_read(path, &pem, err, errlen);
  if (r == 1) set_err(err, errlen, "%s: no such file", path);
  if (r != 0) return -1;
  char what[512];
  snprintf(what, sizeof(what), "key %s", path);
  r = key_import(pem, key, what, err, errlen);
  free_secret(pem);
  return r;
}

/* key_create generates a key, stores it at |path| and returns it (also as
 * PEM in |*pem| if not NULL). Returns 0, 1 when |path| appeared meanwhile,
 * or -1. */
static int key_create(const char *path, gnutls_x509_privkey_t *key,
                      char **pem, char *err, size_t errlen) {
  if (key_generate(key, err, errlen) != 0) return -1;
  char *s = key_export(*key, err, errlen);
  int r = s != NULL ? write_new_file(path, s, 0600, err, errlen) : -1;
  if (r == 0 && pem != NULL) {
    *pem = s;
  } else {
    free_secret(s);
  }
  if (r != 0) {
    gnutls_x509_privkey_deinit(*key);
    *key = NULL;
  }
  return r;
}

/* ---- issuing ---------------------------------------------------------- */

static int set_serial(gnutls_x509_crt_t crt, char *err, size_t errlen) {
  unsigned char serial[SERIAL_LEN];
  int ret = gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof(serial));
  if (ret < 0) return tls_fail(err, errlen, "random serial", ret);
  /* Positive and without a leading zero byte, so it stays 16 bytes. */
  serial[0] = (unsigned char)((serial[0] & 0x7f) | 0x40);
  ret = gnutls_x509_crt_set_serial(crt, serial, sizeof(serial));
  if (ret < 0) return tls_fail(err, errlen, "set serial", ret);
  return 0;
}

/* The issuer's subject key id, or the SHA-1 of its key when it has none
 * (RFC 5280 4.2.1.2 method 1, what GnuTLS and OpenSSL compute). */
static int issuer_key_id(gnutls_x509_crt_t issuer, unsigned char *id,
                         size_t *len) {
  unsigned critical;
  size_t cap = *len;
  if (gnutls_x509_crt_get_subject_key_id(issuer, id, len, &critical) >= 0)
    return 0;
  *len = cap;
  return gnutls_x509_crt_get_key_id(issuer, GNUTLS_KEYID_USE_SHA1, id, len);
}

static int key_matches_crt(gnutls_x509_privkey_t key, gnutls_x509_crt_t crt) {
  unsigned char a[KEY_ID_MAX], b[KEY_ID_MAX];
  size_t alen = sizeof(a), blen = sizeof(b);
  if (gnutls_x509_privkey_get_key_id(key, GNUTLS_KEYID_USE_SHA256, a,
                                     &alen) < 0 ||
      gnutls_x509_crt_get_key_id(crt, GNUTLS_KEYID_USE_SHA256, b, &blen) < 0)
    return 0;
  return alen == blen && memcmp(a, b, alen) == 0;
}

/* cert_issue builds the certificate |spec| describes for |subject| and signs
 * it with |issuer_key|, as |issuer| or, when |issuer| is NULL, as itself.
 * The validity ends no later than the issuer's. */
static int cert_issue(const cert_spec_t *spec, gnutls_pubkey_t subject,
                      gnutls_x509_crt_t issuer,
                      gnutls_x509_privkey_t issuer_key, char **pem,
                      time_t *not_after, char *err, size_t errlen) {
  gnutls_x509_crt_t crt = NULL;
  unsigned char id[KEY_ID_MAX];
  size_t idlen;
  int ret, rc = -1;
  time_t end = spec->not_after;
  const char *step = "certificate init";

  *pem = NULL;
  if (issuer != NULL) {
    if (!key_matches_crt(issuer_key, issuer)) {
      set_err(err, errlen, "the CA key does not belong to the CA certificate");
      return -1;
    }
    time_t ca_end = gnutls_x509_crt_get_expiration_time(issuer);
    if (ca_end != (time_t)-1 && ca_end < end) end = ca_end;
    if (end <= spec->not_before) {
      set_err(err, errlen, "the CA certificate has expired");
      return -1;
    }
  }

  if ((ret = gnutls_x509_crt_init(&crt)) < 0) goto fail_tls;
  step = "set version";
  if ((ret = gnutls_x509_crt_set_version(crt, 3)) < 0) goto fail_tls;
  if (set_serial(crt, err, errlen) != 0) goto out;
  step = "set validity";
  if ((ret = gnutls_x509_crt_set_activation_time(crt, spec->not_before)) < 0 ||
      (ret = gnutls_x509_crt_set_expiration_time(crt, end)) < 0)
    goto fail_tls;
  step = "set subject";
  if ((ret = gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME,
                                           0, spec->cn,
                                           (unsigned)strlen(spec->cn))) < 0)
    goto fail_tls;
  step = "set public key";
  if ((ret = gnutls_x509_crt_set_pubkey(crt, subject)) < 0) goto fail_tls;
  step = "set basic constraints";
  if ((ret = gnutls_x509_crt_set_basic_constraints(crt, spec->is_ca ? 1 : 0,
                                                   spec->is_ca ? 0 : -1)) < 0)
    goto fail_tls;
  step = "set key usage";
  if ((ret = gnutls_x509_crt_set_key_usage(crt, spec->key_usage)) < 0)
    goto fail_tls;
  step = "set extended key usage";
  for (size_t i = 0; spec->kp_oids != NULL && spec->kp_oids[i] != NULL; i++)
    if ((ret = gnutls_x509_crt_set_key_purpose_oid(crt, spec->kp_oids[i],
                                                   0)) < 0)
      goto fail_tls;
  step = "set DNS name";
  for (size_t i = 0; spec->dns != NULL && spec->dns[i] != NULL; i++)
    if ((ret = gnutls_x509_crt_set_subject_alt_name(
             crt, GNUTLS_SAN_DNSNAME, spec->dns[i],
             (unsigned)strlen(spec->dns[i]), GNUTLS_FSAN_APPEND)) < 0)
      goto fail_tls;
  step = "set URI";
  if (spec->uri != NULL &&
      (ret = gnutls_x509_crt_set_subject_alt_name(
           crt, GNUTLS_SAN_URI, spec->uri, (unsigned)strlen(spec->uri),
           GNUTLS_FSAN_APPEND)) < 0)
    goto fail_tls;
  if (spec->uri2 != NULL &&
      (ret = gnutls_x509_crt_set_subject_alt_name(
           crt, GNUTLS_SAN_URI, spec->uri2, (unsigned)strlen(spec->uri2),
           GNUTLS_FSAN_APPEND)) < 0)
    goto fail_tls;
  if (spec->with_loopback_ips) {
    static const unsigned char v4[4] = {127, 0, 0, 1};
    static const unsigned char v6[16] = {[15] = 1};
    step = "set IP address";
    if ((ret = gnutls_x509_crt_set_subject_alt_name(
             crt, GNUTLS_SAN_IPADDRESS, v4, sizeof(v4), GNUTLS_FSAN_APPEND)) <
            0 ||
        (ret = gnutls_x509_crt_set_subject_alt_name(
             crt, GNUTLS_SAN_IPADDRESS, v6, sizeof(v6), GNUTLS_FSAN_APPEND)) <
            0)
      goto fail_tls;
  }
  step = "subject key id";
  idlen = sizeof(id);
  if ((ret = gnutls_pubkey_get_key_id(subject, GNUTLS_KEYID_USE_SHA1, id,
                                      &idlen)) < 0 ||
      (ret = gnutls_x509_crt_set_subject_key_id(crt, id, idlen)) < 0)
    goto fail_tls;
  step = "authority key id";
  if (issuer != NULL) {
    idlen = sizeof(id);
    if ((ret = issuer_key_id(issuer, id, &idlen)) < 0) goto fail_tls;
  }
  if ((ret = gnutls_x509_crt_set_authority_key_id(crt, id, idlen)) < 0)
    goto fail_tls;
  step = "sign certificate";
  if ((ret = gnutls_x509_crt_sign2(crt, issuer != NULL ? issuer : crt,
                                   issuer_key, GNUTLS_DIG_SHA256, 0)) < 0)
    goto fail_tls;
  if ((*pem = crt_export(crt, err, errlen)) == NULL) goto out;
  if (not_after != NULL) *not_after = end;
  rc = 0;
  goto out;

fail_tls:
  tls_fail(err, errlen, step, ret);
out:
  gnutls_x509_crt_deinit(crt);
  return rc;
}

static int issue_with_key(const cert_spec_t *spec, gnutls_x509_privkey_t key,
                          gnutls_x509_crt_t issuer,
                          gnutls_x509_privkey_t issuer_key, char **pem,
                          char *err, size_t errlen) {
  gnutls_pubkey_t pub;
  if (pubkey_of_key(key, &pub, err, errlen) != 0) return -1;
  int rc = cert_issue(spec, pub, issuer, issuer_key, pem, NULL, err, errlen);
  gnutls_pubkey_deinit(pub);
  return rc;
}

/* ---- the controller's CA ---------------------------------------------- */

static int path_exists(const char *path, int *exists, char *err,
                       size_t errlen) {
  struct stat st;
  if (stat(path, &st) == 0) {
    *exists = 1;
    return 0;
  }
  if (errno == ENOENT) {
    *exists = 0;
    return 0;
  }
  set_err(err, errlen, "stat %s: %s", path, strerror(errno));
  return -1;
}

/* ensure_key loads the key at |path| or, when |have| is 0, creates it. */
static int ensure_key(const char *path, int have, gnutls_x509_privkey_t *key,
                      char *err, size_t errlen) {
  if (have) return key_file_load(path, key, err, errlen);
  int r = key_create(path, key, NULL, err, errlen);
  if (r == 1) set_err(err, errlen, "%s was created concurrently", path);
  return r == 0 ? 0 : -1;
}

static int write_cert(const char *path, const char *pem, char *err,
                      size_t errlen) {
  int r = write_new_file(path, pem, 0644, err, errlen);
  if (r == 1) set_err(err, errlen, "%s was created concurrently", path);
  return r == 0 ? 0 : -1;
}

int x509_ca_ensure(const char *dir, char *err, size_t errlen) {
  char *ca_key_path = NULL, *ca_crt_path = NULL;
  char *srv_key_path = NULL, *srv_crt_path = NULL;
  gnutls_x509_privkey_t ca_key = NULL, srv_key = NULL;
  gnutls_x509_crt_t ca_crt = NULL;
  char *pem = NULL, *ca_pem = NULL;
  int have_ck, have_cc, have_sk, have_sc;
  int rc = -1;

  if (mkdir_p(dir, err, errlen) != 0) return -1;
  ca_key_path = path_join(dir, "ca.key");
  ca_crt_path = path_join(dir, "ca.crt");
  srv_key_path = path_join(dir, "server.key");
  srv_crt_path = path_join(dir, "server.crt");
  if (!ca_key_path || !ca_crt_path || !srv_key_path || !srv_crt_path) {
    set_err(err, errlen, "out of memory");
    goto out;
  }
  if (path_exists(ca_key_path, &have_ck, err, errlen) != 0 ||
      path_exists(ca_crt_path, &have_cc, err, errlen) != 0 ||
      path_exists(srv_key_path, &have_sk, err, errlen) != 0 ||
      path_exists(srv_crt_path, &have_sc, err, errlen) != 0)
    goto out;
  /* A key is written before its certificate, so a certificate alone is not
   * ours to complete: someone put it there without its key. */
  if (have_cc && !have_ck) {
    set_err(err, errlen, "%s exists without %s", ca_crt_path, ca_key_path);
    goto out;
  }
  if (have_sc && !have_sk) {
    set_err(err, errlen, "%s exists without %s", srv_crt_path, srv_key_path);
    goto out;
  }
  if (have_cc && have_sc) {
    rc = 0;
    goto out;
  }

  time_t now = time(NULL);
  if (ensure_key(ca_key_path, have_ck, &ca_key, err, errlen) != 0) goto out;
  if (!have_cc) {
    cert_spec_t ca = {
        .cn = "Cascade CA",
        .not_before = now - X509_CLOCK_SKEW,
        .not_after = now + CA_LIFETIME,
        .is_ca = 1,
        .key_usage = GNUTLS_KEY_KEY_CERT_SIGN | GNUTLS_KEY_CRL_SIGN,
    };
    if (issue_with_key(&ca, ca_key, NULL, ca_key, &pem, err, errlen) != 0 ||
        write_cert(ca_crt_path, pem, err, errlen) != 0)
      goto out;
    ca_pem = pem;
    pem = NULL;
  } else if ((ca_pem = x509_read_file(ca_crt_path, X509_PEM_MAX, err,
                                      errlen)) == NULL) {
    goto out;
  }
  char what[512];
  snprintf(what, sizeof(what), "certificate %s", ca_crt_path);
  if (crt_import(ca_pem, &ca_crt, what, err, errlen) != 0) goto out;

  if (!have_sc) {
    char host[256] = "";
    const char *dns[6];
    size_t n = 0;
    dns[n++] = "cascade-controller";
    dns[n++] = "localhost";
    if (gethostname(host, sizeof(host) - 1) == 0 && host[0] != '\0' &&
        strcasecmp(host, "localhost") != 0 &&
        strcasecmp(host, "cascade-controller") != 0)
      dns[n++] = host;
    /* mbedTLS 2.28 (under nng) matches a server name against DNS SANs and
     * the CN only, so an agent dialling 127.0.0.1 needs these as names. */
    dns[n++] = "127.0.0.1";
    dns[n++] = "::1";
    dns[n] = NULL;
    cert_spec_t srv = {
        .cn = "cascade-controller",
        .not_before = now - X509_CLOCK_SKEW,
        .not_after = now + SERVER_LIFETIME,
        .key_usage = GNUTLS_KEY_DIGITAL_SIGNATURE,
        .kp_oids = server_kp,
        .dns = dns,
        .with_loopback_ips = 1,
    };
    if (ensure_key(srv_key_path, have_sk, &srv_key, err, errlen) != 0 ||
        issue_with_key(&srv, srv_key, ca_crt, ca_key, &pem, err, errlen) !=
            0 ||
        write_cert(srv_crt_path, pem, err, errlen) != 0)
      goto out;
  }
  rc = 0;

out:
  gnutls_x509_privkey_deinit(ca_key);
  gnutls_x509_privkey_deinit(srv_key);
  gnutls_x509_crt_deinit(ca_crt);
  free(pem);
  free(ca_pem);
  free(ca_key_path);
  free(ca_crt_path);
  free(srv_key_path);
  free(srv_crt_path);
  return rc;
}

int x509_server_issue(const char *ca_cert_pem, const char *ca_key_pem, char **cert_pem,
                      char **key_pem, char *err, size_t errlen) {
  gnutls_x509_crt_t ca_crt = NULL;
  gnutls_x509_privkey_t ca_key = NULL, key = NULL;
  char host[256] = "", *pem = NULL;
  const char *dns[6];
  size_t n = 0;
  int rc = -1;

  *cert_pem = *key_pem = NULL;
  if (crt_import(ca_cert_pem, &ca_crt, "CA certificate", err, errlen) != 0 ||
      key_import(ca_key_pem, &ca_key, "CA key", err, errlen) != 0)
    goto out;
  if (!key_matches_crt(ca_key, ca_crt)) {
    set_err(err, errlen, "the CA key is not the CA certificate's");
    goto out;
  }
  /* The names x509_ca_ensure gives the server certificate. */
  dns[n++] = "cascade-controller";
  dns[n++] = "localhost";
  if (gethostname(host, sizeof(host) - 1) == 0 && host[0] != '\0' &&
      strcasecmp(host, "localhost") != 0 && strcasecmp(host, "cascade-controller") != 0)
    dns[n++] = host;
  dns[n++] = "127.0.0.1";
  dns[n++] = "::1";
  dns[n] = NULL;
  time_t now = time(NULL);
  cert_spec_t srv = {
      .cn = "cascade-controller",
      .not_before = now - X509_CLOCK_SKEW,
      .not_after = now + SERVER_LIFETIME,
      .key_usage = GNUTLS_KEY_DIGITAL_SIGNATURE,
      .kp_oids = server_kp,
      .dns = dns,
      .with_loopback_ips = 1,
  };
  if (key_generate(&key, err, errlen) != 0 ||
      issue_with_key(&srv, key, ca_crt, ca_key, &pem, err, errlen) != 0)
    goto out;
  if ((*key_pem = key_export(key, err, errlen)) == NULL) goto out;
  *cert_pem = pem;
  pem = NULL;
  rc = 0;

out:
  free(pem);
  gnutls_x509_crt_deinit(ca_crt);
  gnutls_x509_privkey_deinit(ca_key);
  gnutls_x509_privkey_deinit(key);
  return rc;
}

/* ---- fingerprints ----------------------------------------------------- */

int x509_fingerprint(const char *cert_pem, char out[X509_FPR_LEN]) {
  static const char hex[] = "0123456789ABCDEF";
  gnutls_x509_crt_t crt;
  unsigned char md[32];
  size_t len = sizeof(md);

  out[0] = '\0';
  if (crt_import(cert_pem, &crt, "certificate", NULL, 0) != 0) return -1;
  int ret = gnutls_x509_crt_get_fingerprint(crt, GNUTLS_DIG_SHA256, md, &len);
  gnutls_x509_crt_deinit(crt);
  if (ret < 0 || len != sizeof(md)) return -1;
  for (size_t i = 0; i < len; i++) {
    out[3 * i] = hex[md[i] >> 4];
    out[3 * i + 1] = hex[md[i] & 15];
    out[3 * i + 2] = i + 1 < len ? ':' : '\0';
  }
  return 0;
}

int x509_fingerprint_matches(const char *cert_pem, const char *pin) {
  char want[64], fpr[X509_FPR_LEN];

  if (pin == NULL) return -1;
  if (strncasecmp(pin, "sha256:", 7) == 0) pin += 7;
  size_t len = strlen(pin), n = 0;
  if (len != 64 && len != 95) return -1;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)pin[i];
    if (len == 95 && i % 3 == 2) {
      if (c != ':') return -1;
    } else {
      if (!isxdigit(c)) return -1;
      want[n++] = (char)toupper(c);
    }
  }
  if (x509_fingerprint(cert_pem, fpr) != 0) return -1;
  for (size_t i = 0; i < 32; i++)
    if (fpr[3 * i] != want[2 * i] || fpr[3 * i + 1] != want[2 * i + 1])
      return 1;
  return 0;
}

/* ---- node keys and certificates --------------------------------------- */

int x509_key_ensure(const char *path, char **key_pem, char *err,
                    size_t errlen) {
  *key_pem = NULL;
  /* A second round when another process created the key meanwhile. */
  for (int round = 0; round < 2; round++) {
    char *pem;
    int r = key_file_read(path, &pem, err, errlen);
    if (r < 0) return -1;
    if (r == 0) {
      gnutls_x509_privkey_t key;
      char what[512];
      snprintf(what, sizeof(what), "key %s", path);
      if (key_import(pem, &key, what, err, errlen) != 0) {
        free_secret(pem);
        return -1;
      }
      gnutls_x509_privkey_deinit(key);
      *key_pem = pem;
      return 0;
    }
    gnutls_x509_privkey_t key = NULL;
    r = key_create(path, &key, key_pem, err, errlen);
    gnutls_x509_privkey_deinit(key);
    if (r <= 0) return r;
  }
  set_err(err, errlen, "%s: created and removed concurrently", path);
  return -1;
}

int x509_csr_make(const char *key_pem, const char *name, char **csr_pem,
                  char *err, size_t errlen) {
  gnutls_x509_privkey_t key = NULL;
  gnutls_x509_crq_t crq = NULL;
  gnutls_datum_t d = {NULL, 0};
  const char *step = "request init";
  int ret, rc = -1;

  *csr_pem = NULL;
  size_t nlen = name != NULL ? strlen(name) : 0;
  if (nlen == 0 || nlen > CN_MAX) {
    set_err(err, errlen, "CSR name must be 1 to %d bytes", CN_MAX);
    return -1;
  }
  if (key_import(key_pem, &key, "node key", err, errlen) != 0) return -1;
  /* SHA-256 for ECDSA and RSA; EdDSA signs without a separate hash. */
  int alg = gnutls_x509_privkey_get_pk_algorithm(key);
  gnutls_digest_algorithm_t dig =
      alg == GNUTLS_PK_ECDSA || alg == GNUTLS_PK_RSA ? GNUTLS_DIG_SHA256
                                                     : GNUTLS_DIG_UNKNOWN;
  if ((ret = gnutls_x509_crq_init(&crq)) < 0) goto fail_tls;
  step = "set request fields";
  if ((ret = gnutls_x509_crq_set_version(crq, 1)) < 0 ||
      (ret = gnutls_x509_crq_set_dn_by_oid(crq, GNUTLS_OID_X520_COMMON_NAME,
                                           0, name, (unsigned)nlen)) < 0 ||
      (ret = gnutls_x509_crq_set_key(crq, key)) < 0)
    goto fail_tls;
  step = "sign request";
  if ((ret = gnutls_x509_crq_sign2(crq, key, dig, 0)) < 0) goto fail_tls;
  step = "export request";
  if ((ret = gnutls_x509_crq_export2(crq, GNUTLS_X509_FMT_PEM, &d)) < 0)
    goto fail_tls;
  if ((*csr_pem = datum_to_str(&d, 0)) == NULL) {
    set_err(err, errlen, "out of memory");
    goto out;
  }
  rc = 0;
  goto out;

fail_tls:
  tls_fail(err, errlen, step, ret);
out:
  gnutls_x509_crq_deinit(crq);
  gnutls_x509_privkey_deinit(key);
  return rc;
}

/* Node keys the CA certifies: what mbedTLS and GnuTLS both handle well. */
static int check_node_key(gnutls_pubkey_t pub, char *err, size_t errlen) {
  unsigned bits = 0;
  int alg = gnutls_pubkey_get_pk_algorithm(pub, &bits);
  if (alg == GNUTLS_PK_RSA) {
    if (bits >= 2048) return 0;
    set_err(err, errlen, "CSR: RSA key of %u bits, at least 2048 needed",
            bits);
    return -1;
  }
  if (alg == GNUTLS_PK_ECDSA) {
    gnutls_ecc_curve_t curve = GNUTLS_ECC_CURVE_INVALID;
    int ret = gnutls_pubkey_export_ecc_raw2(pub, &curve, NULL, NULL, 0);
    if (ret < 0) return tls_fail(err, errlen, "CSR: ECDSA key", ret);
    if (curve == GNUTLS_ECC_CURVE_SECP256R1 ||
        curve == GNUTLS_ECC_CURVE_SECP384R1 ||
        curve == GNUTLS_ECC_CURVE_SECP521R1)
      return 0;
    const char *cname = gnutls_ecc_curve_get_name(curve);
    set_err(err, errlen, "CSR: ECDSA curve %s not accepted",
            cname != NULL ? cname : "unknown");
    return -1;
  }
  const char *aname = gnutls_pk_algorithm_get_name(alg);
  set_err(err, errlen, "CSR: %s key not accepted (ECDSA or RSA only)",
          aname != NULL ? aname : "unknown");
  return -1;
}

int x509_csr_sign(const char *ca_cert_pem, const char *ca_key_pem,
                  const char *csr_pem, int64_t instance_id, int64_t epoch,
                  unsigned lifetime_s, char **cert_pem, time_t *not_after,
                  char *err, size_t errlen) {
  gnutls_x509_crq_t crq = NULL;
  gnutls_pubkey_t pub = NULL;
  gnutls_x509_crt_t ca_crt = NULL;
  gnutls_x509_privkey_t ca_key = NULL;
  int ret, rc = -1;

  *cert_pem = NULL;
  if (instance_id < 0 || epoch < 0) {
    set_err(err, errlen, "negative instance id %" PRId64 " or epoch %" PRId64, instance_id,
            epoch);
    return -1;
  }
  if (lifetime_s == 0) {
    set_err(err, errlen, "certificate lifetime is 0");
    return -1;
  }
  if (csr_pem == NULL || strnlen(csr_pem, X509_CSR_MAX + 1) > X509_CSR_MAX) {
    set_err(err, errlen, "CSR missing or larger than %d bytes", X509_CSR_MAX);
    return -1;
  }
  gnutls_datum_t d = {(unsigned char *)csr_pem, (unsigned)strlen(csr_pem)};
  if ((ret = gnutls_x509_crq_init(&crq)) < 0) {
    tls_fail(err, errlen, "CSR init", ret);
    goto out;
  }
  if ((ret = gnutls_x509_crq_import(crq, &d, GNUTLS_X509_FMT_PEM)) < 0) {
    tls_fail(err, errlen, "CSR", ret);
    goto out;
  }
  if ((ret = gnutls_x509_crq_verify(crq, 0)) < 0) {
    tls_fail(err, errlen, "CSR self-signature", ret);
    goto out;
  }
  if ((ret = gnutls_pubkey_init(&pub)) < 0 ||
      (ret = gnutls_pubkey_import_x509_crq(pub, crq, 0)) < 0) {
    tls_fail(err, errlen, "CSR public key", ret);
    goto out;
  }
  if (check_node_key(pub, err, errlen) != 0) goto out;
  if (crt_import(ca_cert_pem, &ca_crt, "CA certificate", err, errlen) != 0 ||
      key_import(ca_key_pem, &ca_key, "CA key", err, errlen) != 0)
    goto out;

  char cn[48], dns[48], uri[48], uri2[48];
  snprintf(cn, sizeof(cn), "cascade-node-%" PRId64, instance_id);
  snprintf(dns, sizeof(dns), "node-%" PRId64 ".cascade", instance_id);
  snprintf(uri, sizeof(uri), NODE_URI_PREFIX "%" PRId64, instance_id);
  snprintf(uri2, sizeof(uri2), EPOCH_URI_PREFIX "%" PRId64, epoch);
  const char *dns_list[] = {dns, NULL};
  time_t now = time(NULL);
  cert_spec_t spec = {
      .cn = cn,
      .not_before = now - X509_CLOCK_SKEW,
      .not_after = now + (time_t)lifetime_s,
      .key_usage = GNUTLS_KEY_DIGITAL_SIGNATURE,
      .kp_oids = node_kp,
      .dns = dns_list,
      .uri = uri,
      .uri2 = uri2,
  };
  rc = cert_issue(&spec, pub, ca_crt, ca_key, cert_pem, not_after, err,
                  errlen);

out:
  gnutls_x509_crq_deinit(crq);
  gnutls_pubkey_deinit(pub);
  gnutls_x509_crt_deinit(ca_crt);
  gnutls_x509_privkey_deinit(ca_key);
  return rc;
}

/* parse_id reads a canonical decimal int64 >= 0 (no sign, no leading 0). */
static int parse_id(const char *s, size_t len, int64_t *out) {
  if (len == 0 || len > 19 || (s[0] == '0' && len > 1)) return -1;
  int64_t v = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    int digit = s[i] - '0';
    if (v > (INT64_MAX - digit) / 10) return -1;
    v = v * 10 + digit;
  }
  *out = v;
  return 0;
}

/* uri_number reads |san| as PREFIX<decimal>: 1 with *v set, 0 when the
 * prefix differs, -1 when the number is malformed. */
static int uri_number(const char *san, size_t len, const char *prefix, int64_t *v) {
  size_t plen = strlen(prefix);
  if (len < plen || strncasecmp(san, prefix, plen) != 0) return 0;
  return parse_id(san + plen, len - plen, v) == 0 ? 1 : -1;
}

int x509_cert_node(const char *cert_pem, int64_t *instance_id, int64_t *epoch,
                   time_t *not_before, time_t *not_after, char *err, size_t errlen) {
  gnutls_x509_crt_t crt;
  int64_t id = -1, ep = -1;
  int rc = -1;

  if (crt_import(cert_pem, &crt, "certificate", err, errlen) != 0) return -1;
  time_t nb = gnutls_x509_crt_get_activation_time(crt);
  time_t na = gnutls_x509_crt_get_expiration_time(crt);
  if (nb == (time_t)-1 || na == (time_t)-1) {
    set_err(err, errlen, "certificate: unreadable validity");
    goto out;
  }
  for (unsigned seq = 0;; seq++) {
    char san[256];
    size_t len = sizeof(san);
    unsigned type, critical;
    int ret = gnutls_x509_crt_get_subject_alt_name2(crt, seq, san, &len,
                                                    &type, &critical);
    if (ret == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE) break;
    if (ret == GNUTLS_E_SHORT_MEMORY_BUFFER) continue; /* too long for ours */
    if (ret < 0) {
      tls_fail(err, errlen, "certificate alt names", ret);
      goto out;
    }
    if (type != GNUTLS_SAN_URI) continue;
    int64_t v;
    int k = uri_number(san, len, NODE_URI_PREFIX, &v);
    if (k < 0) {
      set_err(err, errlen, "certificate: malformed node URI %.*s", (int)len,
              san);
      goto out;
    }
    if (k > 0) {
      if (id >= 0 && v != id) {
        set_err(err, errlen, "certificate names two nodes");
        goto out;
      }
      id = v;
      continue;
    }
    k = uri_number(san, len, EPOCH_URI_PREFIX, &v);
    if (k < 0) {
      set_err(err, errlen, "certificate: malformed epoch URI %.*s", (int)len,
              san);
      goto out;
    }
    if (k > 0) {
      if (ep >= 0 && v != ep) {
        set_err(err, errlen, "certificate names two epochs");
        goto out;
      }
      ep = v;
    }
  }
  if (instance_id != NULL) *instance_id = id;
  if (epoch != NULL) *epoch = ep;
  if (not_before != NULL) *not_before = nb;
  if (not_after != NULL) *not_after = na;
  rc = 0;
out:
  gnutls_x509_crt_deinit(crt);
  return rc;
}

int x509_cert_info(const char *cert_pem, int64_t *instance_id,
                   time_t *not_before, time_t *not_after, char *err,
                   size_t errlen) {
  return x509_cert_node(cert_pem, instance_id, NULL, not_before, not_after, err, errlen);
}

static const char *fmt_time(time_t t, char buf[32]) {
  struct tm tm;
  if (gmtime_r(&t, &tm) == NULL ||
      strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
    snprintf(buf, 32, "%lld", (long long)t);
  return buf;
}

static int check_time(gnutls_x509_crt_t crt, const char *what, time_t now,
                      char *err, size_t errlen) {
  char a[32], b[32];
  time_t nb = gnutls_x509_crt_get_activation_time(crt);
  time_t na = gnutls_x509_crt_get_expiration_time(crt);
  if (nb == (time_t)-1 || na == (time_t)-1) {
    set_err(err, errlen, "%s: unreadable validity", what);
    return -1;
  }
  if (now < nb) {
    set_err(err, errlen, "%s not valid before %s (now %s)", what,
            fmt_time(nb, a), fmt_time(now, b));
    return -1;
  }
  if (now > na) {
    set_err(err, errlen, "%s expired at %s (now %s)", what, fmt_time(na, a),
            fmt_time(now, b));
    return -1;
  }
  return 0;
}

int x509_verify_chain(const char *cert_pem, const char *ca_pem, time_t now,
                      char *err, size_t errlen) {
  gnutls_x509_crt_t crt = NULL, *cas = NULL;
  unsigned ncas = 0, status = 0;
  gnutls_datum_t d;
  int ret, rc = -1;

  if (crt_import(cert_pem, &crt, "certificate", err, errlen) != 0) return -1;
  if (pem_datum(ca_pem, &d, "CA certificate", err, errlen) != 0) goto out;
  if ((ret = gnutls_x509_crt_list_import2(&cas, &ncas, &d,
                                          GNUTLS_X509_FMT_PEM, 0)) < 0) {
    tls_fail(err, errlen, "CA certificate", ret);
    goto out;
  }
  /* GnuTLS checks times against the wall clock only; |now| is checked
   * below, so the time checks here are off. */
  ret = gnutls_x509_crt_verify(crt, cas, ncas,
                               GNUTLS_VERIFY_DISABLE_TIME_CHECKS |
                                   GNUTLS_VERIFY_DISABLE_TRUSTED_TIME_CHECKS,
                               &status);
  if (ret < 0) {
    tls_fail(err, errlen, "verify", ret);
    goto out;
  }
  if (status != 0) {
    gnutls_datum_t msg = {NULL, 0};
    if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509,
                                                     &msg, 0) >= 0) {
      set_err(err, errlen, "%s", (const char *)msg.data);
      gnutls_free(msg.data);
    } else {
      set_err(err, errlen, "certificate not trusted (status 0x%x)", status);
    }
    goto out;
  }
  if (check_time(crt, "certificate", now, err, errlen) != 0) goto out;
  for (unsigned i = 0; i < ncas; i++)
    if (gnutls_x509_crt_check_issuer(crt, cas[i]) &&
        check_time(cas[i], "CA certificate", now, err, errlen) != 0)
      goto out;
  rc = 0;

out:
  for (unsigned i = 0; i < ncas; i++) gnutls_x509_crt_deinit(cas[i]);
  gnutls_free(cas);
  gnutls_x509_crt_deinit(crt);
  return rc;
}
