/* Logging: see log.h. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *const level_names[] = {"debug", "info", "warn", "error"};

/* Process-wide: set once at start, read by every thread. */
static volatile log_level_t min_level = LOG_INFO;

static volatile log_format_t format = LOG_FORMAT_TEXT;

void log_set_level(log_level_t lvl) { min_level = lvl; }

void log_set_format(log_format_t fmt) { format = fmt; }

int log_enabled(log_level_t lvl) { return lvl >= min_level; }

int log_level_parse(const char *s, log_level_t *out) {
  for (int i = 0; i < 4; i++) {
    if (strcmp(s, level_names[i]) == 0) {
      *out = (log_level_t)i;
      return 0;
    }
  }
  return -1;
}

const char *log_quote(const char *s, char *buf, unsigned len) {
  static const char hex[] = "0123456789abcdef";
  unsigned o = 0;
  if (len == 0) return buf;
  for (; s && *s && o + 5 < len; s++) {
    unsigned char c = (unsigned char)*s;
    if (c < 0x20 || c == 0x7f) {
      buf[o++] = '\\';
      buf[o++] = 'x';
      buf[o++] = hex[c >> 4];
      buf[o++] = hex[c & 15];
    } else {
      buf[o++] = (char)c;
    }
  }
  buf[o] = '\0';
  return buf;
}

/* A bounded writer: |n| never passes |lim|. */
typedef struct {
  char *p;
  size_t n, lim;
} jw_t;

static int jw_raw(jw_t *w, const char *s, size_t len) {
  if (w->n + len > w->lim) return -1;
  memcpy(w->p + w->n, s, len);
  w->n += len;
  return 0;
}

/* utf8_len: the length of the valid UTF-8 sequence at |s| (|len| bytes
 * left), 0 when the bytes there are not one (overlong forms, surrogates and
 * code points past U+10FFFF included). */
static size_t utf8_len(const unsigned char *s, size_t len) {
  unsigned char c = s[0];
  size_t need;
  unsigned char lo = 0x80, hi = 0xbf;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) need = 2;
  else if (c >= 0xe0 && c <= 0xef) {
    need = 3;
    if (c == 0xe0) lo = 0xa0;
    if (c == 0xed) hi = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    need = 4;
    if (c == 0xf0) lo = 0x90;
    if (c == 0xf4) hi = 0x8f;
  } else {
    return 0;
  }
  if (len < need || s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 2; i < need; i++)
    if (s[i] < 0x80 || s[i] > 0xbf) return 0;
  return need;
}

/* jw_str writes |len| bytes of |s| escaped for the inside of a JSON
 * string, stopping before a character that would pass the limit. Returns
 * 0, or 1 when it stopped early. */
static int jw_str(jw_t *w, const char *s, size_t len) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0;
  while (i < len) {
    unsigned char c = u[i];
    char esc[8];
    const char *out = esc;
    size_t olen, used = 1;
    if (c == '"' || c == '\\') {
      esc[0] = '\\', esc[1] = (char)c, olen = 2;
    } else if (c == '\n') {
      out = "\\n", olen = 2;
    } else if (c == '\t') {
      out = "\\t", olen = 2;
    } else if (c == '\r') {
      out = "\\r", olen = 2;
    } else if (c < 0x20 || c == 0x7f) {
      memcpy(esc, "\\u00", 4);
      esc[4] = hex[c >> 4], esc[5] = hex[c & 15], olen = 6;
    } else if (c < 0x80) {
      out = (const char *)&u[i], olen = 1;
    } else if ((used = utf8_len(u + i, len - i)) != 0) {
      out = (const char *)&u[i], olen = used;
    } else {
      out = "\\ufffd", olen = 6, used = 1; /* one invalid byte, one replacement */
    }
    if (jw_raw(w, out, olen) != 0) return 1;
    i += used;
  }
  return 0;
}

static const char JSON_TAIL_CUT[] = "\",\"truncated\":true}\n";

size_t log_format_json(char *out, size_t cap, const char *time, const char *level,
                       const char *module, const char *msg, size_t len) {
  /* Room is kept for the longest ending and the NUL, so whatever was cut,
   * the object is closed. */
  jw_t w = {out, 0, cap - sizeof(JSON_TAIL_CUT)};
  const char *ctx = NULL;
  size_t ctxlen = 0;
  int cut = 0;

  if (len > 0 && msg[0] == '[') {
    const char *end = memchr(msg, ']', len);
    const char *nl = memchr(msg, '\n', len);
    if (end && (nl == NULL || nl > end)) {
      ctx = msg + 1;
      ctxlen = (size_t)(end - ctx);
      len -= (size_t)(end + 1 - msg);
      msg = end + 1;
      if (len > 0 && *msg == ' ') msg++, len--;
    }
  }
  /* The fixed parts are short: LOG_JSON_MIN leaves them room. */
  jw_raw(&w, "{\"time\":\"", 9);
  cut |= jw_str(&w, time, strlen(time));
  if (!cut) cut |= jw_raw(&w, "\",\"level\":\"", 11) != 0;
  if (!cut) cut |= jw_str(&w, level, strlen(level));
  if (!cut) cut |= jw_raw(&w, "\",\"module\":\"", 12) != 0;
  if (!cut) cut |= jw_str(&w, module, strlen(module));
  if (!cut && ctx) {
    cut |= jw_raw(&w, "\",\"context\":\"", 13) != 0;
    if (!cut) cut |= jw_str(&w, ctx, ctxlen);
  }
  if (!cut) cut |= jw_raw(&w, "\",\"message\":\"", 13) != 0;
  if (!cut) cut |= jw_str(&w, msg, len);
  w.lim = cap - 1;
  if (cut) jw_raw(&w, JSON_TAIL_CUT, sizeof(JSON_TAIL_CUT) - 1);
  else jw_raw(&w, "\"}\n", 3);
  out[w.n] = '\0';
  return w.n;
}

static void write_all(int fd, const char *p, size_t len) {
  while (len > 0) {
    ssize_t k = write(fd, p, len);
    if (k < 0) {
      if (errno == EINTR) continue;
      return; /* nowhere to report it */
    }
    p += k;
    len -= (size_t)k;
  }
}

void log_msg(log_level_t lvl, const char *module, const char *fmt, ...) {
  if (lvl < min_level) return;
  char line[2048];
  struct timeval tv;
  struct tm tm;
  gettimeofday(&tv, NULL);
  gmtime_r(&tv.tv_sec, &tm);
  /* room for any int the compiler cannot rule out (-Wformat-truncation in
   * release builds); the text is always 24 characters */
  char ts[96];
  snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
           (int)(tv.tv_usec / 1000) % 1000);
  va_list ap;
  if (format == LOG_FORMAT_JSON) {
    char msg[2048], obj[4096];
    va_start(ap, fmt);
    int m = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    size_t mlen = m < 0 ? 0 : (size_t)m >= sizeof(msg) ? sizeof(msg) - 1 : (size_t)m;
    size_t n = log_format_json(obj, sizeof(obj), ts, level_names[lvl], module, msg, mlen);
    static const char cut[] = ",\"truncated\":true}\n";
    if (m >= (int)sizeof(msg) && n >= 3 && memcmp(obj + n - 3, "\"}\n", 3) == 0 &&
        n - 2 + sizeof(cut) <= sizeof(obj)) {
      /* the message itself was longer than the buffer */
      memcpy(obj + n - 2, cut, sizeof(cut));
      n += sizeof(cut) - 1 - 2;
    }
    /* One write per line (whole up to PIPE_BUF on a pipe). */
    write_all(STDOUT_FILENO, obj, n);
    return;
  }
  int n = snprintf(line, sizeof(line), "%s %s %s ", ts, level_names[lvl], module);
  va_start(ap, fmt);
  int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
  va_end(ap);
  size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
  if (len > sizeof(line) - 2) len = sizeof(line) - 2;
  /* One line per event, whatever the message held. */
  for (size_t i = (size_t)n; i < len; i++)
    if (line[i] == '\n' || line[i] == '\r') line[i] = ' ';
  line[len++] = '\n';
  /* A single write keeps lines from threads whole. */
  fwrite(line, 1, len, stderr);
}
