/* GET /api/openapi.json: the API's OpenAPI 3 description
 * (controller/openapi.json, built into the binary by embed_file.cmake). */
#include <stddef.h>

#include "api.h"

extern const char api_openapi_json[];
extern const size_t api_openapi_json_len;

int api_openapi(http_req_t *r) {
  return http_reply_text(r, 200, "application/json", api_openapi_json, api_openapi_json_len);
}
