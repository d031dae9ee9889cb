/* The hook client's HTTP: see hookhttp.h. */
#include "hookhttp.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "b64.h"

static void say(char *why, size_t whylen, const char *s) {
  if (why && whylen) snprintf(why, whylen, "%s", s);
}

static int hexval(char c) {
  return c >= '0' && c <= '9'   ? c - '0'
         : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                : -1;
}

/* Percent-decodes |n| bytes of a userinfo part into |out|; control
 * characters (even encoded) are refused: they have no business in a
 * password and would only hide what is sent. */
static int decode_cred(const char *s, size_t n, char *out, size_t cap) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    int c = (unsigned char)s[i];
    if (c <= 0x20 || c >= 0x7f) return -1;
    if (c == '%') {
      if (i + 2 >= n) return -1;
      int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
      if (hi < 0 || lo < 0) return -1;
      c = hi * 16 + lo;
      if (c < 0x20 || c == 0x7f) return -1;
      i += 2;
    }
    if (o + 1 >= cap) return -1;
    out[o++] = (char)c;
  }
  out[o] = '\0';
  return 0;
}

static int parse_port(const char *s, size_t n, char *out) {
  if (n == 0 || n > 5 || s[0] == '0') return -1;
  unsigned v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (unsigned)(s[i] - '0');
  }
  if (v == 0 || v > 65535) return -1;
  memcpy(out, s, n);
  out[n] = '\0';
  return 0;
}

int hookhttp_url_parse(const char *s, hookhttp_url_t *u, char *why, size_t whylen) {
  memset(u, 0, sizeof(*u));
  size_t len = strnlen(s, HOOKHTTP_URL_MAX + 1);
  if (len > HOOKHTTP_URL_MAX) {
    say(why, whylen, "the URL is over 2048 bytes");
    return -1;
  }
  const char *p;
  if (strncasecmp(s, "http://", 7) == 0) {
    p = s + 7;
  } else if (strncasecmp(s, "https://", 8) == 0) {
    p = s + 8;
    u->tls = 1;
  } else {
    say(why, whylen, "the URL does not start with http:// or https://");
    goto fail;
  }
  if (strchr(p, '#')) {
    say(why, whylen, "the URL has a fragment (#)");
    goto fail;
  }
  size_t alen = strcspn(p, "/?");
  const char *auth = p, *rest = p + alen;
  /* userinfo: everything before the authority's last '@' */
  const char *at = NULL;
  for (size_t i = 0; i < alen; i++)
    if (auth[i] == '@') at = auth + i;
  if (at) {
    size_t ulen = (size_t)(at - auth);
    const char *colon = memchr(auth, ':', ulen);
    size_t nlen = colon ? (size_t)(colon - auth) : ulen;
    if (nlen == 0 || decode_cred(auth, nlen, u->user, sizeof(u->user)) != 0 ||
        (colon && decode_cred(colon + 1, ulen - nlen - 1, u->pass, sizeof(u->pass)) != 0)) {
      say(why, whylen, "the URL's user:password part is malformed or too long");
      goto fail;
    }
    u->has_cred = 1;
    alen -= ulen + 1;
    auth = at + 1;
  }
  /* host and port */
  const char *hp = auth, *portp = NULL;
  size_t hlen;
  if (alen > 0 && hp[0] == '[') {
    const char *rb = memchr(hp, ']', alen);
    if (rb == NULL) {
      say(why, whylen, "the URL's IPv6 address has no closing ]");
      goto fail;
    }
    hlen = (size_t)(rb - hp - 1);
    hp++;
    size_t after = alen - hlen - 2;
    if (after > 0) {
      if (rb[1] != ':') {
        say(why, whylen, "the URL has characters after its IPv6 address");
        goto fail;
      }
      portp = rb + 2;
    }
    if (hlen == 0 || hlen > HOSTADDR_HOST_MAX || memchr(hp, ':', hlen) == NULL) {
      say(why, whylen, "the URL's IPv6 address is malformed");
      goto fail;
    }
  } else {
    const char *colon = memchr(hp, ':', alen);
    hlen = colon ? (size_t)(colon - hp) : alen;
    if (colon) portp = colon + 1;
  }
  if (hlen == 0 || hlen > HOSTADDR_HOST_MAX) {
    say(why, whylen, "the URL has no host, or one over 254 bytes");
    goto fail;
  }
  memcpy(u->host, hp, hlen);
  u->host[hlen] = '\0';
  int v6 = hp != auth;
  if (v6 ? !hostaddr_is_numeric(u->host)
         : !(hostaddr_is_name(u->host) || hostaddr_is_numeric(u->host)) ||
               strchr(u->host, ':')) {
    say(why, whylen, "the URL's host is not a host name or an IP address");
    goto fail;
  }
  if (portp) {
    if (parse_port(portp, (size_t)(auth + alen - portp), u->port) != 0) {
      say(why, whylen, "the URL's port is not a number in 1..65535");
      goto fail;
    }
    u->port_given = 1;
  } else {
    snprintf(u->port, sizeof(u->port), "%s", u->tls ? "443" : "80");
  }
  /* path and query */
  size_t tlen = strlen(rest);
  for (size_t i = 0; i < tlen; i++) {
    unsigned char c = (unsigned char)rest[i];
    if (c <= 0x20 || c >= 0x7f) {
      say(why, whylen, "the URL's path has a space, a control or a non-ASCII character");
      goto fail;
    }
  }
  snprintf(u->target, sizeof(u->target), "%s%s", rest[0] == '/' ? "" : "/", rest);
  return 0;

fail:
  memset(u, 0, sizeof(*u));
  return -1;
}

void hookhttp_url_show(const hookhttp_url_t *u, char *buf, size_t len) {
  size_t plen = strcspn(u->target, "?");
  int v6 = strchr(u->host, ':') != NULL;
  snprintf(buf, len, "%s://%s%s%s%s%s%.*s", u->tls ? "https" : "http", v6 ? "[" : "", u->host,
           v6 ? "]" : "", u->port_given ? ":" : "", u->port_given ? u->port : "", (int)plen,
           u->target);
}

long hookhttp_request(char *out, size_t cap, const hookhttp_url_t *u, const char *ua,
                      const char *body, size_t blen) {
  char authz[2 * HOOKHTTP_CRED_MAX + 64] = "";
  if (u->has_cred) {
    char cred[2 * HOOKHTTP_CRED_MAX + 2], enc[sizeof(authz) - 32];
    int cl = snprintf(cred, sizeof(cred), "%s:%s", u->user, u->pass);
    if (cl < 0 || (size_t)cl >= sizeof(cred) ||
        b64_encode((const uint8_t *)cred, (size_t)cl, enc, sizeof(enc)) < 0)
      return -1;
    snprintf(authz, sizeof(authz), "Authorization: Basic %s\r\n", enc);
    memset(cred, 0, sizeof(cred));
  }
  int v6 = strchr(u->host, ':') != NULL;
  int n = snprintf(out, cap,
                   "POST %s HTTP/1.1\r\n"
                   "Host: %s%s%s%s%s\r\n"
                   "User-Agent: %s\r\n"
                   "Content-Type: application/json\r\n"
                   "Content-Length: %zu\r\n"
                   "Connection: close\r\n"
                   "%s\r\n",
                   u->target, v6 ? "[" : "", u->host, v6 ? "]" : "", u->port_given ? ":" : "",
                   u->port_given ? u->port : "", ua, blen, authz);
  memset(authz, 0, sizeof(authz));
  if (n < 0 || (size_t)n >= cap || cap - (size_t)n < blen) return -1;
  memcpy(out + n, body, blen);
  return (long)((size_t)n + blen);
}

enum { S_HEAD = 0, S_LEN, S_CHUNKED, S_CLOSE, S_DONE, S_BAD };

void hookhttp_resp_init(hookhttp_resp_t *p) {
  p->state = S_HEAD;
  p->status = 0;
  p->total = 0;
  p->hlen = 0;
  p->body_left = 0;
  httpresp_chunked_init(&p->ch);
}

static int is_tchar(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Reads the gathered head (p->head, p->hlen bytes, ending with the empty
 * line): the status line and the framing headers. */
static int parse_head(hookhttp_resp_t *p, const char **why) {
  const char *h = p->head, *end = p->head + p->hlen;
  int status = 0, chunked = 0;
  long clen = -1;
  int line_no = 0;
  while (h < end) {
    const char *nl = memchr(h, '\n', (size_t)(end - h));
    size_t ll = (size_t)(nl - h);
    if (ll > 0 && h[ll - 1] == '\r') ll--;
    if (memchr(h, '\0', ll) || (ll > 0 && memchr(h, '\r', ll))) {
      *why = "a NUL or a stray CR in the response head";
      return -1;
    }
    if (line_no == 0) {
      if (ll < 12 || memcmp(h, "HTTP/1.", 7) != 0 || (h[7] != '0' && h[7] != '1') ||
          h[8] != ' ' || (ll > 12 && h[12] != ' ')) {
        *why = "not an HTTP/1.x status line";
        return -1;
      }
      for (int i = 9; i < 12; i++) {
        if (h[i] < '0' || h[i] > '9') {
          *why = "not an HTTP/1.x status line";
          return -1;
        }
        status = status * 10 + (h[i] - '0');
      }
      if (status < 100 || status > 599) {
        *why = "a status code outside 100..599";
        return -1;
      }
    } else if (ll > 0) {
      const char *colon = memchr(h, ':', ll);
      if (colon == NULL || colon == h) {
        *why = "a response header line without a name";
        return -1;
      }
      for (const char *c = h; c < colon; c++)
        if (!is_tchar((unsigned char)*c)) {
          *why = "a malformed response header name";
          return -1;
        }
      const char *v = colon + 1, *ve = h + ll;
      while (v < ve && (*v == ' ' || *v == '\t')) v++;
      while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
      size_t nlen = (size_t)(colon - h), vlen = (size_t)(ve - v);
      for (const char *c = v; c < ve; c++)
        if ((unsigned char)*c < 0x20 && *c != '\t') {
          *why = "a control character in a response header";
          return -1;
        }
      if (nlen == 14 && strncasecmp(h, "Content-Length", 14) == 0) {
        long n = 0;
        if (vlen == 0 || vlen > 9) {
          *why = "a malformed or huge Content-Length";
          return -1;
        }
        for (size_t i = 0; i < vlen; i++) {
          if (v[i] < '0' || v[i] > '9') {
            *why = "a malformed Content-Length";
            return -1;
          }
          n = n * 10 + (v[i] - '0');
        }
        if (clen >= 0 && clen != n) {
          *why = "two different Content-Lengths";
          return -1;
        }
        clen = n;
      } else if (nlen == 17 && strncasecmp(h, "Transfer-Encoding", 17) == 0) {
        if (vlen != 7 || strncasecmp(v, "chunked", 7) != 0 || chunked) {
          *why = "a transfer coding other than chunked";
          return -1;
        }
        chunked = 1;
      }
    }
    line_no++;
    h = nl + 1;
  }
  if (chunked && clen >= 0) {
    *why = "both Content-Length and chunked";
    return -1;
  }
  p->status = status;
  if (status < 200) {
    if (status == 101) {
      *why = "a protocol switch (101)";
      return -1;
    }
    p->hlen = 0; /* an interim answer: the real one follows */
    return 0;
  }
  if (status == 204 || status == 304) {
    p->state = S_DONE;
  } else if (chunked) {
    p->state = S_CHUNKED;
  } else if (clen >= 0) {
    if ((size_t)clen > HOOKHTTP_RESP_MAX - p->total) {
      *why = "a response over 16 KiB";
      return -1;
    }
    p->body_left = (uint64_t)clen;
    p->state = clen ? S_LEN : S_DONE;
  } else {
    p->state = S_CLOSE;
  }
  return 0;
}

static int ignore_body(void *arg, const uint8_t *d, size_t n) {
  (void)arg;
  (void)d;
  (void)n;
  return 0;
}

static int bad(hookhttp_resp_t *p, const char **why, const char *w) {
  p->state = S_BAD;
  *why = w;
  return HOOKHTTP_BAD;
}

int hookhttp_resp_feed(hookhttp_resp_t *p, const uint8_t *d, size_t n, const char **why) {
  size_t i = 0;
  while (i < n) {
    switch (p->state) {
    case S_HEAD: {
      if (p->total >= HOOKHTTP_RESP_MAX) return bad(p, why, "a response over 16 KiB");
      if (p->hlen >= sizeof(p->head)) return bad(p, why, "a response head over 8 KiB");
      char c = (char)d[i++];
      p->total++;
      p->head[p->hlen++] = c;
      if (c != '\n') break;
      if (p->hlen == 1 || (p->hlen == 2 && p->head[0] == '\r'))
        return bad(p, why, "not an HTTP/1.x status line");
      if ((p->hlen >= 2 && p->head[p->hlen - 2] == '\n') ||
          (p->hlen >= 3 && p->head[p->hlen - 2] == '\r' && p->head[p->hlen - 3] == '\n')) {
        if (parse_head(p, why) != 0) {
          p->state = S_BAD;
          return HOOKHTTP_BAD;
        }
      }
      break;
    }
    case S_LEN: {
      size_t take = n - i < p->body_left ? n - i : (size_t)p->body_left;
      p->body_left -= take;
      p->total += take;
      i += take;
      if (p->body_left == 0) p->state = S_DONE;
      break;
    }
    case S_CHUNKED: {
      size_t room = HOOKHTTP_RESP_MAX - p->total;
      size_t take = n - i < room ? n - i : room;
      const char *w = NULL;
      if (httpresp_chunked_feed(&p->ch, d + i, take, ignore_body, NULL, &w) != 0)
        return bad(p, why, w ? w : "a malformed chunked body");
      p->total += take;
      i += take;
      if (p->ch.done) p->state = S_DONE;
      else if (p->total >= HOOKHTTP_RESP_MAX) return bad(p, why, "a response over 16 KiB");
      break;
    }
    case S_CLOSE:
      if (n - i > HOOKHTTP_RESP_MAX - p->total) return bad(p, why, "a response over 16 KiB");
      p->total += n - i;
      i = n;
      break;
    case S_DONE:
      return HOOKHTTP_DONE;
    default:
      *why = "a malformed response";
      return HOOKHTTP_BAD;
    }
  }
  if (p->state == S_DONE) return HOOKHTTP_DONE;
  if (p->state == S_BAD) {
    *why = "a malformed response";
    return HOOKHTTP_BAD;
  }
  return HOOKHTTP_MORE;
}

int hookhttp_resp_eof(hookhttp_resp_t *p, const char **why) {
  switch (p->state) {
  case S_DONE:
  case S_CLOSE:
    p->state = S_DONE;
    return HOOKHTTP_DONE;
  case S_HEAD:
    *why = p->total == 0 ? "the connection closed without an answer"
                         : "the connection closed inside the response head";
    break;
  case S_BAD:
    *why = "a malformed response";
    break;
  default:
    *why = "the connection closed inside the response body";
    break;
  }
  p->state = S_BAD;
  return HOOKHTTP_BAD;
}
