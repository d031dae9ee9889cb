/* Helpers shared by the REST handlers. */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "log.h"

PGresult *api_exec(http_req_t *r, db_stmt_t stmt, int n, const char *const *params) {
  int err = 0;
  db_conn_t *c = db_acquire(&r->ctl->db, &err);
  if (c == NULL) {
    http_reply_db_error(r, err);
    return NULL;
  }
  PGresult *res = db_exec(&r->ctl->db, c, stmt, n, params, &err);
  db_release(&r->ctl->db, c);
  if (res == NULL) {
    http_reply_db_error(r, err);
    return NULL;
  }
  return res;
}

json_t *api_time(const PGresult *res, int i, int col) {
  /* "2026-11-29 15:39:17.123456+00" (TimeZone UTC) -> "2026-11-29T15:39:17Z" */
  const char *v = PQgetvalue(res, i, col);
  char buf[21];
  if (PQgetisnull(res, i, col)) return json_null();
  if (strlen(v) < 19 || v[10] != ' ') return json_string(v);
  memcpy(buf, v, 19);
  buf[10] = 'T';
  buf[19] = 'Z';
  buf[20] = '\0';
  return json_string(buf);
}

/* Node rows are written straight to JSON text: a page of 100 nodes built
 * as jansson trees spent most of its time in malloc. The JSON columns come
 * from PostgreSQL (jsonb/json text, valid by construction); strings are
 * escaped here. */

static int jb_grow(jbuf_t *b, size_t more) {
  if (b->len + more + 1 <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 1024;
  while (cap < b->len + more + 1) cap *= 2;
  char *nb = realloc(b->buf, cap);
  if (nb == NULL) {
    b->oom = 1;
    return -1;
  }
  b->buf = nb;
  b->cap = cap;
  return 0;
}

void jb_raw(jbuf_t *b, const char *s, size_t n) {
  if (b->oom || jb_grow(b, n) != 0) return;
  memcpy(b->buf + b->len, s, n);
  b->len += n;
  b->buf[b->len] = '\0';
}

void jb_str(jbuf_t *b, const char *s) { jb_raw(b, s, strlen(s)); }

void jb_quoted(jbuf_t *b, const char *s) {
  static const char hex[] = "0123456789abcdef";
  jb_raw(b, "\"", 1);
  const char *run = s;
  for (const char *p = s; *p; p++) {
    unsigned char c = (unsigned char)*p;
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    jb_raw(b, run, (size_t)(p - run));
    char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
    if (c == '"' || c == '\\') {
      esc[1] = (char)c;
      jb_raw(b, esc, 2);
    } else {
      jb_raw(b, esc, 6);
    }
    run = p + 1;
  }
  jb_str(b, run);
  jb_raw(b, "\"", 1);
}

static void jb_time(jbuf_t *b, const PGresult *res, int i, int col) {
  /* "2026-11-29 15:39:17.123456+00" (TimeZone UTC) -> "2026-11-29T15:39:17Z" */
  const char *v = PQgetvalue(res, i, col);
  if (PQgetisnull(res, i, col)) {
    jb_str(b, "null");
  } else if (strlen(v) >= 19 && v[10] == ' ') {
    char t[23];
    t[0] = '"';
    memcpy(t + 1, v, 19);
    t[11] = 'T';
    t[20] = 'Z';
    t[21] = '"';
    t[22] = '\0';
    jb_raw(b, t, 22);
  } else {
    jb_quoted(b, v);
  }
}

/* jb_col writes a JSON text column as it is, or |dflt| for SQL NULL. */
static void jb_col(jbuf_t *b, const PGresult *res, int i, int col, const char *dflt) {
  jb_str(b, PQgetisnull(res, i, col) ? dflt : PQgetvalue(res, i, col));
}

/* jb_json writes a JSON column compactly, or |dflt| for SQL NULL:
 * PostgreSQL's text of jsonb and json_build_object puts blanks after ':'
 * and ',' ({"a": "b"}, {"pull" : {...}}), which the API does not. */
static void jb_json(jbuf_t *b, const PGresult *res, int i, int col, const char *dflt) {
  if (PQgetisnull(res, i, col)) {
    jb_str(b, dflt);
    return;
  }
  const char *v = PQgetvalue(res, i, col);
  json_t *j = json_loads(v, JSON_DECODE_ANY, NULL);
  char *s = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY) : NULL;
  jb_str(b, s ? s : v);
  free(s);
  json_decref(j);
}

void api_node_write(jbuf_t *b, const PGresult *res, int i) {
  jb_str(b, "{\"id\":");
  jb_str(b, PQgetvalue(res, i, 0));
  jb_str(b, ",\"name\":");
  jb_quoted(b, PQgetvalue(res, i, 1));
  jb_str(b, ",\"ip\":");
  jb_quoted(b, PQgetvalue(res, i, 2));
  jb_str(b, PQgetvalue(res, i, 3)[0] == 't' ? ",\"online\":true" : ",\"online\":false");
  jb_str(b, ",\"parent_id\":");
  jb_col(b, res, i, 4, "null");
  jb_str(b, ",\"labels\":");
  jb_json(b, res, i, 5, "{}");
  jb_str(b, ",\"created_time\":");
  jb_time(b, res, i, 6);
  jb_str(b, ",\"updated_time\":");
  jb_time(b, res, i, 7);
  jb_str(b, ",\"last_seen\":");
  jb_time(b, res, i, 8);
  jb_str(b, ",\"config_generation\":{\"desired\":");
  jb_str(b, PQgetvalue(res, i, 9));
  jb_str(b, ",\"applied\":");
  jb_str(b, PQgetvalue(res, i, 10));
  jb_str(b, "},\"quic\":");
  jb_quoted(b, PQgetvalue(res, i, 11));
  jb_str(b, ",\"version\":");
  jb_quoted(b, PQgetvalue(res, i, 12));
  /* Rules: null where the agent's own file decides. */
  jb_str(b, ",\"relayapi\":");
  if (PQgetisnull(res, i, 13) && PQgetisnull(res, i, 14)) {
    jb_str(b, "null");
  } else {
    jb_str(b, "{\"allow\":");
    jb_json(b, res, i, 13, "null");
    jb_str(b, ",\"deny\":");
    jb_json(b, res, i, 14, "null");
    jb_str(b, "}");
  }
  jb_str(b, ",\"onsub\":");
  jb_json(b, res, i, 15, "null");
  jb_str(b, ",\"autopush\":");
  jb_str(b, PQgetisnull(res, i, 16) ? "null" : PQgetvalue(res, i, 16)[0] == 't' ? "true" : "false");
  jb_str(b, PQgetvalue(res, i, 17)[0] == 't' ? ",\"pending\":true" : ",\"pending\":false");
  jb_str(b, ",\"streamauth\":");
  jb_json(b, res, i, 18, "null");
  jb_str(b, "}");
}

int api_reply_failed(http_req_t *r, PGresult *res) {
  if (strcmp(db_sqlstate(res), "57014") == 0) {
    /* statement_timeout: the server gave up on it. */
    PQclear(res);
    return http_reply_db_error(r, DB_ERR_TIMEOUT);
  }
  char q[256];
  log_error("api", "%s %s: %s", r->method, r->url,
            log_quote(PQresultErrorMessage(res), q, sizeof(q)));
  PQclear(res);
  return http_reply_error(r, 500, "internal error");
}
