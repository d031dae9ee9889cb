/* RFC 3339 times: see timefmt.h. */
#include "timefmt.h"

#include <time.h>

const char *timefmt_rfc3339(int64_t t, char buf[TIMEFMT_LEN]) {
  struct tm tm;
  time_t s = (time_t)t;
  if (t <= 0 || gmtime_r(&s, &tm) == NULL) return NULL;
  strftime(buf, TIMEFMT_LEN, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}
