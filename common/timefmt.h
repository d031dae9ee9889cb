/* Wall-clock times as the APIs show them: RFC 3339 in UTC, whole seconds
 * ("2026-11-29T18:30:40Z"). */
#ifndef CASCADE_TIMEFMT_H
#define CASCADE_TIMEFMT_H

#include <stdint.h>

#define TIMEFMT_LEN 32

/* timefmt_rfc3339 writes unix time |t| into |buf| and returns it; NULL for
 * t <= 0 (unset), which the APIs show as null. */
const char *timefmt_rfc3339(int64_t t, char buf[TIMEFMT_LEN]);

#endif
