/* /api/auth/tokens: management API tokens (admin only). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "log.h"
#include "valid.h"

static json_t *token_json(const PGresult *res, int i) {
  return json_pack("{s:I, s:s, s:s, s:o, s:o}", "id",
                   (json_int_t)strtoll(PQgetvalue(res, i, 0), NULL, 10), "name",
                   PQgetvalue(res, i, 1), "role", PQgetvalue(res, i, 2), "created_time",
                   api_time(res, i, 3), "last_used", api_time(res, i, 4));
}

static void hash_hex(const uint8_t h[AUTH_HASH_LEN], char out[2 + 2 * AUTH_HASH_LEN + 1]) {
  out[0] = '\\';
  out[1] = 'x';
  for (int i = 0; i < AUTH_HASH_LEN; i++) snprintf(out + 2 + 2 * i, 3, "%02x", h[i]);
}

int api_tokens_list(http_req_t *r) {
  PGresult *res = api_exec(r, DB_TOKEN_LIST, 0, NULL);
  if (res == NULL) return API_ANSWERED;
  if (!db_ok(res)) return api_reply_failed(r, res);
  json_t *data = json_array();
  for (int i = 0; i < PQntuples(res); i++) json_array_append_new(data, token_json(res, i));
  PQclear(res);
  return http_reply_data(r, 200, data);
}

int api_tokens_create(http_req_t *r) {
  valid_token_t t;
  char err[256], token[64], hex[2 + 2 * AUTH_HASH_LEN + 1];
  uint8_t h[AUTH_HASH_LEN];

  if (valid_token_body(r->body, r->body_len, &t, err, sizeof(err)) != 0)
    return http_reply_error(r, 400, "%s", err);
  if (auth_token_new(token, sizeof(token), h) != 0) {
    valid_token_free(&t);
    return http_reply_error(r, 500, "internal error");
  }
  hash_hex(h, hex);
  const char *params[5] = {t.name, t.role, hex, r->actor, r->source};
  PGresult *res = api_exec(r, DB_TOKEN_CREATE, 5, params);
  valid_token_free(&t);
  if (res == NULL) return API_ANSWERED;
  if (!db_ok(res)) return api_reply_failed(r, res);
  /* The value is shown here, once; only its hash is kept. */
  json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:o}", "id",
                        (json_int_t)strtoll(PQgetvalue(res, 0, 0), NULL, 10), "name",
                        PQgetvalue(res, 0, 1), "role", PQgetvalue(res, 0, 2), "token", token,
                        "created_time", api_time(res, 0, 3));
  log_info("api", "token created id=%s role=%s actor=%s source=%s", PQgetvalue(res, 0, 0),
           PQgetvalue(res, 0, 2), r->actor, r->source);
  PQclear(res);
  memset(token, 0, sizeof(token));
  if (o == NULL) return http_reply_error(r, 500, "internal error");
  return http_reply_data(r, 201, o);
}

int api_tokens_delete(http_req_t *r) {
  char id[24];
  uint8_t h[AUTH_HASH_LEN];

  snprintf(id, sizeof(id), "%lld", (long long)r->id);
  const char *params[3] = {id, r->actor, r->source};
  PGresult *res = api_exec(r, DB_TOKEN_DELETE, 3, params);
  if (res == NULL) return API_ANSWERED;
  if (!db_ok(res)) return api_reply_failed(r, res);
  if (PQntuples(res) == 0) {
    PQclear(res);
    return http_reply_error(r, 404, "no token with id %lld", (long long)r->id);
  }
  /* Forget the cached verification so the token dies at once. */
  const char *hx = PQgetvalue(res, 0, 5);
  if (strlen(hx) == 2 + 2 * AUTH_HASH_LEN) {
    for (int i = 0; i < AUTH_HASH_LEN; i++) {
      unsigned b;
      sscanf(hx + 2 + 2 * i, "%2x", &b);
      h[i] = (uint8_t)b;
    }
    auth_forget(&r->ctl->auth, h);
  }
  json_t *o = token_json(res, 0);
  log_info("api", "token deleted id=%s actor=%s source=%s", id, r->actor, r->source);
  PQclear(res);
  return http_reply_data(r, 200, o);
}
