/* Logging: see log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static const char *const level_names[] = {"debug", "info", "warn", "error"};

/* Process-wide: set once at start, read by every thread. */
static volatile log_level_t min_level = LOG_INFO;

void log_set_level(log_level_t lvl) { min_level = lvl; }

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

void log_msg(log_level_t lvl, const char *module, const char *fmt, ...) {
  if (lvl < min_level) return;
  char line[2048];
  struct timeval tv;
  struct tm tm;
  gettimeofday(&tv, NULL);
  gmtime_r(&tv.tv_sec, &tm);
  int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s ",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                   tm.tm_sec, (long)tv.tv_usec / 1000, level_names[lvl], module);
  va_list ap;
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
