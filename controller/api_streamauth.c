/* /api/cascade/streamauth: the deployment's stream authorization (policy,
 * hooks), its signing keys and token minting (docs/api.md, "Stream
 * authorization"). A key's value is shown once, when it is created; the
 * database holds it sealed (streamauth.h). */
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "b64.h"
#include "ctl.h"
#include "log.h"
#include "streamauth.h"

/* hooks_public is the hooks object as shown: a URL's userinfo and query
 * (where credentials live) are masked. */
static json_t *hooks_public(json_t *h) {
  const char *k;
  json_t *v;
  json_object_foreach(h, k, v) {
    if (!json_is_string(v) || json_string_length(v) == 0) continue;
    const char *u = json_string_value(v), *host = strstr(u, "://");
    host = host ? host + 3 : u;
    const char *at = strchr(host, '@'), *slash = strchr(host, '/');
    int userinfo = at && (slash == NULL || at < slash);
    const char *q = strchr(u, '?');
    if (!userinfo && q == NULL) continue;
    char buf[SA_URL_MAX + 16];
    int n = snprintf(buf, sizeof(buf), "%.*s%s%.*s%s", (int)(host - u), u,
                     userinfo ? "***@" : "",
                     (int)((q ? q : u + strlen(u)) - (userinfo ? at + 1 : host)),
                     userinfo ? at + 1 : host, q ? "?***" : "");
    if (n > 0) json_object_set_new(h, k, json_string(buf));
  }
  return h;
}

int api_streamauth_get(http_req_t *r) {
  PGresult *res = api_exec(r, DB_SA_GET, 0, NULL);
  if (res == NULL) return API_ANSWERED;
  if (!db_ok(res)) return api_reply_failed(r, res);
  if (PQntuples(res) != 1) {
    PQclear(res);
    return http_reply_error(r, 500, "stream authorization settings missing");
  }
  json_t *policy = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
  json_t *hooks = json_loads(PQgetvalue(res, 0, 1), 0, NULL);
  json_t *kr = json_loads(PQgetvalue(res, 0, 2), 0, NULL);
  PQclear(res);
  json_t *keys = json_array();
  for (size_t i = 0; i < json_array_size(kr); i++) {
    json_t *e = json_array_get(kr, i);
    json_array_append_new(keys, json_pack("{s:O,s:O,s:b}", "id", json_array_get(e, 0),
                                          "created_time", json_array_get(e, 1), "signing",
                                          i == 0));
  }
  json_decref(kr);
  json_t *o = json_pack("{s:o*,s:o*,s:o}", "policy", policy, "hooks",
                        hooks ? hooks_public(hooks) : NULL, "keys", keys);
  if (o == NULL) return http_reply_error(r, 500, "internal error");
  return http_reply_data(r, 200, o);
}

int api_streamauth_put(http_req_t *r) {
  sa_update_t u;
  char err[320], *hooks = NULL;
  if (sa_update_body(r->body, r->body_len, &u, err, sizeof(err)) != 0)
    return http_reply_error(r, 400, "%s", err);
  if (u.hooks && (hooks = json_dumps(u.hooks, JSON_COMPACT)) == NULL) {
    sa_update_free(&u);
    return http_reply_error(r, 500, "internal error");
  }
  const char *params[4] = {u.policy, hooks, r->actor, r->source};
  PGresult *res = api_exec(r, DB_SA_UPDATE, 4, params);
  sa_update_free(&u);
  free(hooks);
  if (res == NULL) return API_ANSWERED;
  if (!db_ok(res)) return api_reply_failed(r, res);
  json_t *o = PQntuples(res) == 1
                  ? json_pack("{s:o*,s:o*}", "policy", json_loads(PQgetvalue(res, 0, 0), 0, NULL),
                              "hooks",
                              hooks_public(json_loads(PQgetvalue(res, 0, 1), 0, NULL)))
                  : NULL;
  PQclear(res);
  log_info("api", "stream authorization updated actor=%s source=%s", r->actor, r->source);
  if (o == NULL) return http_reply_error(r, 500, "internal error");
  return http_reply_data(r, 200, o);
}

int api_streamauth_key_create(http_req_t *r) {
  uint8_t key[STREAMTOKEN_KEY_LEN], sealed[SA_SEALED_LEN];
  char hex[3 + 2 * SA_SEALED_LEN], b64[64];
  if (r->body_len > 0 && strspn(r->body, " \t\r\n{}") != r->body_len)
    return http_reply_error(r, 400, "this request takes no fields");
  if (!r->ctl->has_stream_kek)
    return http_reply_error(r, 503, "no CA key to seal stream keys with (control channel off)");
  if (gnutls_rnd(GNUTLS_RND_KEY, key, sizeof(key)) != 0 ||
      sa_seal(r->ctl->stream_kek, key, sealed) != 0) {
    gnutls_memset(key, 0, sizeof(key));
    return http_reply_error(r, 500, "internal error");
  }
  hex[0] = '\\';
  hex[1] = 'x';
  for (int i = 0; i < SA_SEALED_LEN; i++) snprintf(hex + 2 + 2 * i, 3, "%02x", sealed[i]);
  const char *params[3] = {hex, r->actor, r->source};
  PGresult *res = api_exec(r, DB_SA_KEY_ADD, 3, params);
  if (res == NULL || !db_ok(res)) {
    gnutls_memset(key, 0, sizeof(key));
    return res ? api_reply_failed(r, res) : API_ANSWERED;
  }
  b64url_encode(key, sizeof(key), b64, sizeof(b64));
  gnutls_memset(key, 0, sizeof(key));
  /* The value is shown here, once; the database keeps it sealed. */
  json_t *o = json_pack("{s:I,s:s,s:s,s:b,s:o*}", "id",
                        (json_int_t)strtoll(PQgetvalue(res, 0, 0), NULL, 10), "key", b64,
                        "created_time", PQgetvalue(res, 0, 1), "signing", 1, "rotated_out",
                        json_loads(PQgetvalue(res, 0, 2), 0, NULL));
  log_info("api", "stream key created id=%s actor=%s source=%s", PQgetvalue(res, 0, 0), r->actor,
           r->source);
  PQclear(res);
  gnutls_memset(b64, 0, sizeof(b64));
  if (o == NULL) return http_reply_error(r, 500, "internal error");
  return http_reply_data(r, 201, o);
}

int api_streamauth_key_delete(http_req_t *r) {
  char id[24];
  snprintf(id, sizeof(id), "%lld", (long long)r->id);
  const char *params[3] = {id, r->actor, r->source};
  PGresult *res = api_exec(r, DB_SA_KEY_DELETE, 3, params);
  if (res == NULL) return API_ANSWERED;
  if (!db_ok(res)) return api_reply_failed(r, res);
  int found = PQntuples(res) == 1;
  PQclear(res);
  if (!found) return http_reply_error(r, 404, "no stream key with id %lld", (long long)r->id);
  log_info("api", "stream key deleted id=%s actor=%s source=%s", id, r->actor, r->source);
  return http_reply_data(r, 200, json_pack("{s:I}", "id", (json_int_t)r->id));
}

int api_streamauth_token_create(http_req_t *r) {
  sa_token_req_t t;
  char err[320];
  if (sa_token_body(r->body, r->body_len, &t, err, sizeof(err)) != 0)
    return http_reply_error(r, 400, "%s", err);
  if (!r->ctl->has_stream_kek)
    return http_reply_error(r, 503, "no CA key to unseal stream keys with (control channel off)");
  PGresult *res = api_exec(r, DB_SA_KEY_SIGNING, 0, NULL);
  if (res == NULL) return API_ANSWERED;
  if (!db_ok(res)) return api_reply_failed(r, res);
  if (PQntuples(res) != 1) {
    PQclear(res);
    return http_reply_error(r, 409, "no stream key yet: POST /api/cascade/streamauth/keys first");
  }
  streamtoken_key k;
  uint8_t sealed[SA_SEALED_LEN];
  k.id = (uint32_t)strtoul(PQgetvalue(res, 0, 0), NULL, 10);
  int ok = sa_hex_decode(PQgetvalue(res, 0, 1), sealed, sizeof(sealed)) == SA_SEALED_LEN &&
           sa_unseal(r->ctl->stream_kek, sealed, sizeof(sealed), k.key) == 0;
  PQclear(res);
  if (!ok) {
    log_error("api", "stream key %u cannot be unsealed (sealed under another CA?)", k.id);
    return http_reply_error(r, 500, "the signing key cannot be unsealed");
  }
  char tok[STREAMTOKEN_LEN + 1];
  uint64_t expires = (uint64_t)time(NULL) + (uint64_t)t.ttl;
  int rc = streamtoken_mint(&k, t.action, t.path, expires, t.addr[0] ? t.addr : NULL, tok,
                            sizeof(tok));
  gnutls_memset(k.key, 0, sizeof(k.key));
  if (rc != 0) return http_reply_error(r, 500, "internal error");
  char rtmp[2200], flv[2200];
  snprintf(rtmp, sizeof(rtmp), "rtmp://NODE:1935/%s?token=%s", t.path, tok);
  snprintf(flv, sizeof(flv), "http://NODE:8080/flv/%s.flv?token=%s", t.path, tok);
  json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:I,s:s*,s:{s:s,s:s*}}", "token", tok, "path", t.path,
                        "action", t.action == STREAMTOKEN_PUBLISH ? "publish" : "play",
                        "expires", (json_int_t)expires, "key_id", (json_int_t)k.id, "addr",
                        t.addr[0] ? t.addr : NULL, "urls", "rtmp", rtmp, "httpflv",
                        t.action == STREAMTOKEN_PLAY ? flv : NULL);
  log_info("api", "stream token minted path=%s action=%s ttl=%ld actor=%s", t.path,
           t.action == STREAMTOKEN_PUBLISH ? "publish" : "play", t.ttl, r->actor);
  if (o == NULL) return http_reply_error(r, 500, "internal error");
  return http_reply_data(r, 201, o);
}
