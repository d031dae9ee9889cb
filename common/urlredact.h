/* URL redaction for logs and status: a pull template or hook URL may carry
 * credentials (rtmp://user:pass@host/..., http://user:pass@host/...,
 * ?key=...), which must never reach a log line or an API answer. */
#ifndef CASCADE_URLREDACT_H
#define CASCADE_URLREDACT_H

#include <stddef.h>

/* urlredact writes |url| to |out| with any userinfo replaced by "***@" and
 * any query by "?***" (a fragment goes too); always NUL-terminated,
 * truncated to |outlen|. Returns |out|. */
char *urlredact(const char *url, char *out, size_t outlen);

#endif
