/* The seed's JSON envelope: {"code": 0, "message": "success", "data": ...},
 * errors with code = HTTP status and a human message. No I/O here. */
#ifndef CASCADE_REPLY_H
#define CASCADE_REPLY_H

#include <jansson.h>

/* reply_envelope builds the envelope around |data| (stolen; NULL = null).
 * |code| 0 means success and the message "success". NULL on OOM. */
json_t *reply_envelope(int code, const char *message, json_t *data);

/* reply_dump serialises |obj| compactly into a malloc'd buffer. */
char *reply_dump(const json_t *obj, size_t *len);

/* reply_status_text is the reason phrase of an HTTP status. */
const char *reply_status_text(int status);

#endif
