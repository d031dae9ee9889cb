/* Logging: one line per event, "time level module message key=value...", to stderr. */
#ifndef CASCADE_LOG_H
#define CASCADE_LOG_H

typedef enum { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR } log_level_t;

/* log_set_level sets the lowest level written. Process-wide, set once at start. */
void log_set_level(log_level_t lvl);

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

#define log_debug(mod, ...) \
  do { if (log_enabled(LOG_DEBUG)) log_msg(LOG_DEBUG, mod, __VA_ARGS__); } while (0)
#define log_info(mod, ...) log_msg(LOG_INFO, mod, __VA_ARGS__)
#define log_warn(mod, ...) log_msg(LOG_WARN, mod, __VA_ARGS__)
#define log_error(mod, ...) log_msg(LOG_ERROR, mod, __VA_ARGS__)

#endif
