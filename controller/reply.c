/* JSON envelope: see reply.h. */
#include "reply.h"

#include <stdlib.h>
#include <string.h>

json_t *reply_envelope(int code, const char *message, json_t *data) {
  json_t *o = json_object();
  /* The seed's key order: code, message, data. |data| is ours whatever
   * fails, so it is released on every path. */
  if (o == NULL ||
      json_object_set_new(o, "code", json_integer(code)) != 0 ||
      json_object_set_new(o, "message", json_string(code == 0 ? "success"
                                                     : message ? message : "error")) != 0) {
    json_decref(data);
    json_decref(o);
    return NULL;
  }
  if (json_object_set_new(o, "data", data ? data : json_null()) != 0) {
    json_decref(o);
    return NULL;
  }
  return o;
}

char *reply_dump(const json_t *obj, size_t *len) {
  /* 15 significant digits: a value such as 0.658 comes out as 0.658, not
   * as the 17 digits of its binary approximation (0.65800000000000003). */
  char *s = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
  if (s) *len = strlen(s);
  return s;
}

const char *reply_status_text(int status) {
  switch (status) {
  case 200: return "OK";
  case 201: return "Created";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 409: return "Conflict";
  case 413: return "Payload Too Large";
  case 429: return "Too Many Requests";
  case 500: return "Internal Server Error";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  default: return "Unknown";
  }
}
