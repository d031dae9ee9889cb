/* The HTTP of the hook client (hooks.h), pure: the hook URL's parser, the
 * request writer and a bounded response reader. Nothing here touches a
 * socket, so each piece is unit-tested and fuzzed on its own. */
#ifndef CASCADE_HOOKHTTP_H
#define CASCADE_HOOKHTTP_H

#include <stddef.h>
#include <stdint.h>

#include "hostaddr.h"
#include "httpresp.h"

#define HOOKHTTP_URL_MAX 2048       /* a hook URL, whole */
#define HOOKHTTP_CRED_MAX 256       /* user or password, decoded */
#define HOOKHTTP_HEAD_MAX 8192      /* a response's head */
#define HOOKHTTP_RESP_MAX 16384     /* a response's head and body */

/* hookhttp_url is a parsed hook URL. |user| / |pass| come from a
 * "user:pass@" part (percent-decoded) and are sent as HTTP Basic
 * authorization; they never reach a log: hookhttp_url_show leaves them out. */
typedef struct hookhttp_url {
  int tls;                            /* https:// */
  char host[HOSTADDR_HOST_MAX + 1];   /* without an IPv6 literal's brackets */
  char port[6];                       /* decimal; 80 or 443 when absent */
  int port_given;                     /* the URL named the port */
  char target[HOOKHTTP_URL_MAX + 1];  /* path and query, "/" at least */
  int has_cred;
  char user[HOOKHTTP_CRED_MAX + 1];
  char pass[HOOKHTTP_CRED_MAX + 1];
} hookhttp_url_t;

/* hookhttp_url_parse reads "http://[user[:pass]@]host[:port][/path[?query]]"
 * (or https://). Host: a name, an IPv4 literal or a bracketed IPv6
 * literal; path: printable ASCII without spaces, no fragment. Returns 0, or
 * -1 with the reason in |why| (which never quotes the URL). */
int hookhttp_url_parse(const char *s, hookhttp_url_t *u, char *why, size_t whylen);

/* hookhttp_url_show writes the URL fit for a log: scheme, host, port and
 * path, without credentials or query. */
void hookhttp_url_show(const hookhttp_url_t *u, char *buf, size_t len);

/* hookhttp_request writes a "POST" of the |blen| bytes of JSON |body| to
 * |u| (Host, Content-Type, Content-Length, Connection: close, and Basic
 * authorization when |u| has credentials) into |out|. Returns the length
 * written, or -1 when |cap| is too small. */
long hookhttp_request(char *out, size_t cap, const hookhttp_url_t *u, const char *ua,
                      const char *body, size_t blen);

enum { HOOKHTTP_MORE = 0, HOOKHTTP_DONE = 1, HOOKHTTP_BAD = -1 };

/* hookhttp_resp reads one response as its bytes come. */
typedef struct hookhttp_resp {
  int state;
  int status;             /* the final status, once the head is read */
  size_t total;           /* bytes taken so far, heads and body */
  size_t hlen;            /* bytes of the head being gathered */
  uint64_t body_left;     /* Content-Length framing */
  httpresp_chunked_t ch;  /* chunked framing */
  char head[HOOKHTTP_HEAD_MAX];
} hookhttp_resp_t;

/* hookhttp_resp_init readies |p| for a response. */
void hookhttp_resp_init(hookhttp_resp_t *p);

/* hookhttp_resp_feed takes the next |n| bytes. Returns HOOKHTTP_MORE,
 * HOOKHTTP_DONE (the response is whole: p->status is final; later bytes are
 * ignored) or HOOKHTTP_BAD with |why| (not HTTP/1.x, a bad header or
 * framing, over HOOKHTTP_RESP_MAX). Interim 1xx responses are skipped. */
int hookhttp_resp_feed(hookhttp_resp_t *p, const uint8_t *d, size_t n, const char **why);

/* hookhttp_resp_eof tells |p| the peer closed: HOOKHTTP_DONE when that ends
 * a close-delimited body (or the response was already whole), else
 * HOOKHTTP_BAD with |why|. */
int hookhttp_resp_eof(hookhttp_resp_t *p, const char **why);

#endif
