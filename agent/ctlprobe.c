/* A diagnostic TLS handshake with the controller: see ctlprobe.h. */
#include "ctlprobe.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

int ctlprobe_parse_url(const char *url, char *host, size_t hlen, char *port, size_t plen) {
  static const char *const schemes[] = {"tls+tcp://", "tls+tcp4://", "tls+tcp6://", "tcp://",
                                        "tcp4://", "tcp6://", NULL};
  const char *p = NULL, *colon, *hs, *he;
  for (size_t i = 0; schemes[i]; i++)
    if (strncmp(url, schemes[i], strlen(schemes[i])) == 0) {
      p = url + strlen(schemes[i]);
      break;
    }
  if (p == NULL || *p == '\0') return -1;
  if (*p == '[') {
    hs = p + 1;
    if ((he = strchr(hs, ']')) == NULL || he[1] != ':') return -1;
    colon = he + 1;
  } else {
    hs = p;
    if ((colon = strrchr(p, ':')) == NULL) return -1;
    he = colon;
    if (memchr(hs, ':', (size_t)(he - hs)) != NULL) return -1; /* v6 without brackets */
  }
  size_t n = (size_t)(he - hs), m = strlen(colon + 1);
  if (n == 0 || n >= hlen || m == 0 || m >= plen || m > 5) return -1;
  for (const char *q = hs; q < he; q++)
    if ((unsigned char)*q <= ' ' || (unsigned char)*q >= 0x7f || strchr("[]/@?#", *q)) return -1;
  for (const char *d = colon + 1; *d; d++)
    if (*d < '0' || *d > '9') return -1;
  memcpy(host, hs, n);
  host[n] = '\0';
  memcpy(port, colon + 1, m + 1);
  return 0;
}

/* connect_within opens a TCP connection to |host|:|port| within |ms|. */
static int connect_within(const char *host, const char *port, int ms, char *why, size_t len) {
  struct addrinfo hints = {0}, *res = NULL;
  hints.ai_socktype = SOCK_STREAM;
  int rv = getaddrinfo(host, port, &hints, &res);
  if (rv != 0) {
    snprintf(why, len, "cannot resolve %s: %s", host, gai_strerror(rv));
    return -1;
  }
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    snprintf(why, len, "socket: %s", strerror(errno));
    freeaddrinfo(res);
    return -1;
  }
  rv = connect(fd, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  if (rv != 0 && errno == EINPROGRESS) {
    struct pollfd pfd = {fd, POLLOUT, 0};
    int err = 0;
    socklen_t el = sizeof(err);
    rv = poll(&pfd, 1, ms);
    if (rv == 0) {
      snprintf(why, len, "cannot connect to %s:%s: no answer within %d ms", host, port, ms);
      close(fd);
      return -1;
    }
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
    errno = err;
    rv = err ? -1 : 0;
  }
  if (rv != 0) {
    snprintf(why, len, "cannot connect to %s:%s: %s", host, port, strerror(errno));
    close(fd);
    return -1;
  }
  /* The handshake runs blocking, bounded by socket timeouts. */
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  return fd;
}

int ctlprobe_tls(const char *url, const char *ca_pem, const char *servername, int timeout_ms,
                 char *why, size_t whylen) {
  char host[256], port[8];
  gnutls_certificate_credentials_t cred = NULL;
  gnutls_session_t s = NULL;
  int fd = -1, rc = -1, ret;

  if (ctlprobe_parse_url(url, host, sizeof(host), port, sizeof(port)) != 0) {
    snprintf(why, whylen, "controller.url '%s' is not host:port", url);
    return -1;
  }
  if ((fd = connect_within(host, port, timeout_ms, why, whylen)) < 0) return -1;
  if (strncmp(url, "tls+", 4) != 0) {
    snprintf(why, whylen, "TCP connection to %s:%s works", host, port);
    close(fd);
    return 0;
  }
  gnutls_datum_t ca = {(unsigned char *)ca_pem, ca_pem ? (unsigned)strlen(ca_pem) : 0};
  if ((ret = gnutls_certificate_allocate_credentials(&cred)) < 0 ||
      (ca_pem && (ret = gnutls_certificate_set_x509_trust_mem(cred, &ca, GNUTLS_X509_FMT_PEM)) < 0) ||
      (ret = gnutls_init(&s, GNUTLS_CLIENT)) < 0 || (ret = gnutls_set_default_priority(s)) < 0 ||
      (ret = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred)) < 0) {
    snprintf(why, whylen, "TLS set-up: %s", gnutls_strerror(ret));
    goto out;
  }
  gnutls_server_name_set(s, GNUTLS_NAME_DNS, servername, strlen(servername));
  gnutls_session_set_verify_cert(s, servername, 0);
  gnutls_transport_set_int(s, fd);
  gnutls_handshake_set_timeout(s, (unsigned)timeout_ms);
  do {
    ret = gnutls_handshake(s);
  } while (ret < 0 && !gnutls_error_is_fatal(ret));
  if (ret == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
    gnutls_datum_t out = {NULL, 0};
    unsigned status = gnutls_session_get_verify_cert_status(s);
    if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0) == 0) {
      size_t n = strlen((const char *)out.data);
      while (n > 0 && out.data[n - 1] == ' ') out.data[--n] = '\0';
      snprintf(why, whylen, "the controller's certificate was refused: %s (controller.ca, "
               "controller.servername '%s')", (const char *)out.data, servername);
      gnutls_free(out.data);
    } else {
      snprintf(why, whylen, "the controller's certificate was refused (status 0x%x)", status);
    }
  } else if (ret < 0) {
    snprintf(why, whylen, "TLS handshake with %s:%s failed: %s", host, port,
             gnutls_strerror(ret));
  } else {
    snprintf(why, whylen, "TLS handshake with %s:%s works", host, port);
    rc = 0;
  }
out:
  if (s) gnutls_deinit(s);
  if (cred) gnutls_certificate_free_credentials(cred);
  close(fd);
  return rc;
}
