/* Logging: one line per event. Text (the default): "time level module
 * message" on stderr. JSON (log.format: json): one object per line on
 * stdout, {"time","level","module","context","message"}, where "context" is
 * the bracketed tag a message starts with ("[link edge-a1 10.0.0.7:44944]"),
 * when it has one. See docs/operations.md, "Logs". */
#ifndef CASCADE_LOG_H
#define CASCADE_LOG_H

#include <stddef.h>

typedef enum { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR } log_level_t;

/* log_set_level sets the lowest level written. Process-wide, set once at start. */
void log_set_level(log_level_t lvl);

typedef enum { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON } log_format_t;

/* log_set_format chooses text on stderr or JSON lines on stdout.
 * Process-wide, set once at start. */
void log_set_format(log_format_t fmt);

/* log_enabled tells whether a line at |lvl| would be written. */
int log_enabled(log_level_t lvl);

/* log_level_parse maps "debug|info|warn|error" to a level; -1 if unknown. */
int log_level_parse(const char *s, log_level_t *out);

/* log_msg writes one line. |fmt| must not contain a newline; values that may
 * carry one are written through log_quote(). */
void log_msg(log_level_t lvl, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* log_quote copies |s| into |buf| for a log line: control characters
 * escaped as \xNN, truncated to |len|. Returns |buf|. */
const char *log_quote(const char *s, char *buf, unsigned len);

/* The shortest buffer log_format_json accepts. */
#define LOG_JSON_MIN 256

/* log_format_json renders one event as a JSON object and a newline into
 * |out| (|cap| >= LOG_JSON_MIN bytes): |time| and |level| as given,
 * |module|, and the |len| bytes of |msg| split into "context" (a leading
 * "[...]" tag, without the brackets) and "message". Any bytes are taken:
 * quotes, backslashes and control characters are escaped, invalid UTF-8
 * becomes U+FFFD, and a message too long for |cap| is cut at a character
 * with "truncated":true, so the line is always one valid JSON object.
 * Returns its length (not counting the NUL written after it). */
size_t log_format_json(char *out, size_t cap, const char *time, const char *level,
                       const char *module, const char *msg, size_t len);

#define log_debug(mod, ...) \
  do { if (log_enabled(LOG_DEBUG)) log_msg(LOG_DEBUG, mod, __VA_ARGS__); } while (0)
#define log_info(mod, ...) log_msg(LOG_INFO, mod, __VA_ARGS__)
#define log_warn(mod, ...) log_msg(LOG_WARN, mod, __VA_ARGS__)
#define log_error(mod, ...) log_msg(LOG_ERROR, mod, __VA_ARGS__)

#endif
