/* HTTP/1.1 response reading for clients (httpresp.h). */
#include "httpresp.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

enum { CH_SIZE = 0, CH_EXT, CH_SIZE_LF, CH_DATA, CH_DATA_CR, CH_DATA_LF, CH_DONE };

int httpresp_head(const char *head, size_t len, int *status, int *chunked) {
  *status = 0;
  *chunked = 0;
  if (len < 12 || memcmp(head, "HTTP/1.", 7) != 0 || (head[7] != '0' && head[7] != '1') ||
      head[8] != ' ')
    return -1;
  int st = 0;
  for (int i = 9; i < 12; i++) {
    if (head[i] < '0' || head[i] > '9') return -1;
    st = st * 10 + (head[i] - '0');
  }
  if (len > 12 && head[12] != ' ' && head[12] != '\r') return -1;
  *status = st;
  /* headers: "\r\nName: value" up to the blank line */
  size_t i = 0;
  while (i + 1 < len) {
    const char *nl = memchr(head + i, '\n', len - i);
    if (nl == NULL) break;
    i = (size_t)(nl - head) + 1;
    size_t rest = len - i;
    const char *line = head + i;
    if (rest >= 18 && strncasecmp(line, "Transfer-Encoding:", 18) == 0) {
      const char *e = memchr(line, '\n', rest);
      size_t ll = e ? (size_t)(e - line) : rest;
      for (size_t k = 18; k + 7 <= ll; k++)
        if (strncasecmp(line + k, "chunked", 7) == 0) *chunked = 1;
    }
  }
  return 0;
}

void httpresp_chunked_init(httpresp_chunked_t *c) { memset(c, 0, sizeof(*c)); }

static int hexdigit(uint8_t c) {
  return c >= '0' && c <= '9'   ? c - '0'
         : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                : -1;
}

int httpresp_chunked_feed(httpresp_chunked_t *c, const uint8_t *data, size_t n,
                          int (*cb)(void *arg, const uint8_t *data, size_t n), void *arg,
                          const char **why) {
  size_t i = 0;
  while (i < n) {
    uint8_t b = data[i];
    switch (c->state) {
    case CH_SIZE: {
      int d = hexdigit(b);
      if (d >= 0) {
        if (++c->digits > 8) {
          *why = "chunk size over 8 hex digits";
          return -1;
        }
        c->left = c->left * 16 + (unsigned)d;
      } else if (c->digits && (b == ';' || b == ' ' || b == '\t')) {
        c->state = CH_EXT;
      } else if (c->digits && b == '\r') {
        c->state = CH_SIZE_LF;
      } else {
        *why = "bad chunk size line";
        return -1;
      }
      i++;
      break;
    }
    case CH_EXT:
      if (b == '\r') c->state = CH_SIZE_LF;
      else if (b == '\n' || b == 0) {
        *why = "bad chunk extension";
        return -1;
      }
      i++;
      break;
    case CH_SIZE_LF:
      if (b != '\n') {
        *why = "bad chunk size line";
        return -1;
      }
      i++;
      if (c->left == 0) {
        c->state = CH_DONE;
        c->done = 1;
        return 0;
      }
      c->state = CH_DATA;
      break;
    case CH_DATA: {
      size_t take = n - i < c->left ? n - i : (size_t)c->left;
      c->left -= take;
      if (c->left == 0) c->state = CH_DATA_CR;
      int r = cb(arg, data + i, take);
      if (r) return r;
      i += take;
      break;
    }
    case CH_DATA_CR:
    case CH_DATA_LF:
      if (b != (c->state == CH_DATA_CR ? '\r' : '\n')) {
        *why = "bad chunk terminator";
        return -1;
      }
      i++;
      if (c->state == CH_DATA_CR) {
        c->state = CH_DATA_LF;
      } else {
        c->state = CH_SIZE;
        c->left = 0;
        c->digits = 0;
      }
      break;
    default:
      return 0;
    }
  }
  return 0;
}
