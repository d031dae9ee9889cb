/* API input validation: see valid.h. */
#include "valid.h"

#include "streamauth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pattern.h"
#include "relpath.h"

int valid_id(const char *s, int64_t *out) {
  uint64_t v = 0;
  if (s == NULL || *s < '1' || *s > '9') return -1;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9' || p - s >= 19) return -1;
    v = v * 10 + (uint64_t)(*p - '0');
  }
  if (v > (uint64_t)INT64_MAX) return -1;
  *out = (int64_t)v;
  return 0;
}

/* utf8_ok checks |s| is well-formed UTF-8 (no overlongs, no surrogates). */
static int utf8_ok(const unsigned char *s, size_t len) {
  size_t i = 0;
  while (i < len) {
    unsigned char c = s[i];
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      i++;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      n = 1;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      n = 2;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return 0;
    }
    if (i + n >= len) return 0;
    for (size_t k = 1; k <= n; k++) {
      if ((s[i + k] & 0xc0) != 0x80) return 0;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return 0;
    i += n + 1;
  }
  return 1;
}

void valid_utf8_trim(char *s) {
  size_t n = strlen(s), i = n, k = 0;
  /* Walk back over continuation bytes to the last lead byte. */
  while (i > 0 && k < 4 && ((unsigned char)s[i - 1] & 0xc0) == 0x80) {
    i--;
    k++;
  }
  if (i == 0) return;
  unsigned char lead = (unsigned char)s[i - 1];
  size_t need = lead >= 0xf0 ? 3 : lead >= 0xe0 ? 2 : lead >= 0xc0 ? 1 : 0;
  if (lead >= 0x80 && need != k) s[i - 1] = '\0';
}

static int bounded_text(const char *what, const char *s, size_t len, size_t min, size_t max,
                        char *err, size_t errlen) {
  if (len < min || len > max) {
    snprintf(err, errlen, "%s: must be %zu to %zu bytes", what, min, max);
    return -1;
  }
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7f) {
      snprintf(err, errlen, "%s: control characters are not allowed", what);
      return -1;
    }
  }
  if (!utf8_ok((const unsigned char *)s, len)) {
    snprintf(err, errlen, "%s: not valid UTF-8", what);
    return -1;
  }
  return 0;
}

int valid_name(const char *s, size_t len, char *err, size_t errlen) {
  return bounded_text("name", s, len, 1, VALID_NAME_MAX, err, errlen);
}

static json_t *parse_object(const char *body, size_t len, char *err, size_t errlen) {
  json_error_t je;
  json_t *j;

  if (len > VALID_BODY_MAX) {
    snprintf(err, errlen, "body over %d bytes", VALID_BODY_MAX);
    return NULL;
  }
  /* NUL inside strings is let through the parser so the field checks can
   * name the field in their refusal. */
  j = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
  if (j == NULL) {
    snprintf(err, errlen, "invalid JSON: %s at line %d column %d", je.text, je.line, je.column);
    return NULL;
  }
  if (!json_is_object(j)) {
    snprintf(err, errlen, "body must be a JSON object");
    json_decref(j);
    return NULL;
  }
  return j;
}

static int check_labels(json_t *labels, char **out, char *err, size_t errlen) {
  const char *k;
  json_t *v;

  if (!json_is_object(labels)) {
    snprintf(err, errlen, "labels: must be an object of strings");
    return -1;
  }
  if (json_object_size(labels) > VALID_LABELS_MAX) {
    snprintf(err, errlen, "labels: at most %d entries", VALID_LABELS_MAX);
    return -1;
  }
  json_object_foreach(labels, k, v) {
    if (bounded_text("labels: key", k, strlen(k), 1, VALID_LABEL_KEY_MAX, err, errlen) != 0)
      return -1;
    if (!json_is_string(v)) {
      snprintf(err, errlen, "labels: value of '%.63s", k);
      valid_utf8_trim(err);
      snprintf(err + strlen(err), errlen - strlen(err), "' must be a string");
      return -1;
    }
    if (bounded_text("labels: value", json_string_value(v), json_string_length(v), 0,
                     VALID_LABEL_VALUE_MAX, err, errlen) != 0)
      return -1;
  }
  *out = json_dumps(labels, JSON_COMPACT | JSON_SORT_KEYS);
  if (*out == NULL) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  return 0;
}

/* check_prefixes validates a relayapi list: absolute path prefixes. */
static int check_prefixes(const char *what, json_t *v, char **out, char *err, size_t errlen) {
  size_t i;
  json_t *e;
  if (json_is_null(v)) return 0;
  if (!json_is_array(v) || json_array_size(v) > VALID_RULES_MAX) {
    snprintf(err, errlen, "%s: must be an array of at most %d path prefixes", what, VALID_RULES_MAX);
    return -1;
  }
  json_array_foreach(v, i, e) {
    if (!json_is_string(e)) {
      snprintf(err, errlen, "%s: entries must be strings", what);
      return -1;
    }
    if (bounded_text(what, json_string_value(e), json_string_length(e), 1, VALID_RULE_LEN_MAX,
                     err, errlen) != 0)
      return -1;
    if (json_string_value(e)[0] != '/') {
      snprintf(err, errlen, "%s: prefixes start with '/'", what);
      return -1;
    }
    const char *why = relpath_rule_check(json_string_value(e));
    if (why != NULL) {
      snprintf(err, errlen, "%s: rule '%.200s': %s", what, json_string_value(e), why);
      return -1;
    }
  }
  *out = json_dumps(v, JSON_COMPACT);
  return *out ? 0 : -1;
}

static int check_relayapi(json_t *v, valid_node_t *out, char *err, size_t errlen) {
  const char *k;
  json_t *e;
  out->has_relay = 1;
  if (json_is_null(v)) return 0;
  if (!json_is_object(v)) {
    snprintf(err, errlen, "relayapi: must be an object {allow, deny} or null");
    return -1;
  }
  json_object_foreach(v, k, e) {
    if (strcmp(k, "allow") == 0) {
      if (check_prefixes("relayapi.allow", e, &out->relay_allow, err, errlen) != 0) return -1;
    } else if (strcmp(k, "deny") == 0) {
      if (check_prefixes("relayapi.deny", e, &out->relay_deny, err, errlen) != 0) return -1;
    } else {
      snprintf(err, errlen, "relayapi: unknown field (allow, deny)");
      return -1;
    }
  }
  return 0;
}

int valid_pull_target(const char *t) {
  char why[128];
  return pattern_target_check(t, why, sizeof(why));
}

int valid_pattern(const char *pattern, char *err, size_t errlen) {
  char why[256];
  pcre2_code *re = pattern_compile(pattern, why, sizeof(why));
  if (re == NULL) {
    snprintf(err, errlen, "onsub.pull: pattern '%.64s': %s", pattern, why);
    valid_utf8_trim(err);
    return -1;
  }
  pcre2_code_free(re);
  return 0;
}

static int check_onsub(json_t *v, valid_node_t *out, char *err, size_t errlen) {
  const char *k, *pk;
  json_t *e, *pv;
  out->has_onsub = 1;
  if (json_is_null(v)) return 0;
  if (!json_is_object(v)) {
    snprintf(err, errlen, "onsub: must be an object {pull} or null");
    return -1;
  }
  json_object_foreach(v, k, e) {
    if (strcmp(k, "pull") != 0) {
      snprintf(err, errlen, "onsub: unknown field (pull)");
      return -1;
    }
    if (json_is_null(e)) continue;
    if (!json_is_object(e) || json_object_size(e) > VALID_RULES_MAX) {
      snprintf(err, errlen, "onsub.pull: must be an object of at most %d pattern: target pairs",
               VALID_RULES_MAX);
      return -1;
    }
    json_t *pairs = json_array();
    json_object_foreach(e, pk, pv) {
      if (bounded_text("onsub.pull: pattern", pk, strlen(pk), 1, VALID_RULE_LEN_MAX, err,
                       errlen) != 0 ||
          valid_pattern(pk, err, errlen) != 0) {
        json_decref(pairs);
        return -1;
      }
      if (!json_is_string(pv) ||
          bounded_text("onsub.pull: target", json_string_value(pv), json_string_length(pv), 1,
                       VALID_RULE_LEN_MAX, err, errlen) != 0 ||
          valid_pull_target(json_string_value(pv)) != 0) {
        if (json_is_string(pv) || !*err)
          snprintf(err, errlen, "onsub.pull: target of '%.64s' must be m7s://, rtmp:// or "
                                "http:// followed by a path, with $0..$9 or $$ only", pk);
        valid_utf8_trim(err);
        json_decref(pairs);
        return -1;
      }
      json_array_append_new(pairs, json_pack("[s,O]", pk, pv));
    }
    out->onsub_pull = json_dumps(pairs, JSON_COMPACT);
    json_decref(pairs);
    if (out->onsub_pull == NULL) return -1;
  }
  return 0;
}

int valid_node_body(const char *body, size_t len, int update, valid_node_t *out,
                    char *err, size_t errlen) {
  const char *k;
  json_t *v;
  int fields = 0;

  memset(out, 0, sizeof(*out));
  out->json = parse_object(body, len, err, errlen);
  if (out->json == NULL) return -1;

  json_object_foreach(out->json, k, v) {
    fields++;
    if (strcmp(k, "name") == 0) {
      if (!json_is_string(v)) {
        snprintf(err, errlen, "name: must be a string");
        goto fail;
      }
      out->name = json_string_value(v);
      out->name_len = json_string_length(v);
      if (valid_name(out->name, out->name_len, err, errlen) != 0) goto fail;
    } else if (strcmp(k, "secret") == 0) {
      if (!json_is_string(v)) {
        snprintf(err, errlen, "secret: must be a string");
        goto fail;
      }
      out->secret = json_string_value(v);
      out->secret_len = json_string_length(v);
      if (out->secret_len < VALID_SECRET_MIN || out->secret_len > VALID_SECRET_MAX) {
        snprintf(err, errlen, "secret: must be %d to %d bytes", VALID_SECRET_MIN,
                 VALID_SECRET_MAX);
        goto fail;
      }
      if (memchr(out->secret, '\0', out->secret_len) != NULL) {
        snprintf(err, errlen, "secret: NUL bytes are not allowed");
        goto fail;
      }
    } else if (strcmp(k, "parent_id") == 0) {
      out->has_parent = 1;
      if (json_is_null(v)) {
        out->parent_id = 0;
      } else if (json_is_integer(v) && json_integer_value(v) > 0) {
        out->parent_id = json_integer_value(v);
      } else {
        snprintf(err, errlen, "parent_id: must be a positive integer or null");
        goto fail;
      }
    } else if (strcmp(k, "labels") == 0) {
      if (check_labels(v, &out->labels, err, errlen) != 0) goto fail;
    } else if (update && strcmp(k, "relayapi") == 0) {
      if (check_relayapi(v, out, err, errlen) != 0) goto fail;
    } else if (update && strcmp(k, "onsub") == 0) {
      if (check_onsub(v, out, err, errlen) != 0) goto fail;
    } else if (update && strcmp(k, "pending") == 0) {
      if (!json_is_boolean(v)) {
        snprintf(err, errlen, "pending: must be true or false");
        goto fail;
      }
      out->has_pending = 1;
      out->pending = json_is_true(v);
    } else if (update && strcmp(k, "streamauth") == 0) {
      out->has_streamauth = 1;
      if (!json_is_null(v)) {
        char e2[256];
        if (sa_rules_check(v, &out->streamauth, e2, sizeof(e2)) != 0) {
          snprintf(err, errlen, "streamauth: %s", e2);
          goto fail;
        }
      }
    } else if (update && strcmp(k, "autopush") == 0) {
      out->has_autopush = 1;
      if (json_is_null(v)) {
        out->autopush = -1;
      } else if (json_is_boolean(v)) {
        out->autopush = json_is_true(v);
      } else {
        snprintf(err, errlen, "autopush: must be true, false or null");
        goto fail;
      }
    } else {
      snprintf(err, errlen, "unknown field '%.64s", k);
      valid_utf8_trim(err);
      snprintf(err + strlen(err), errlen - strlen(err), "'");
      goto fail;
    }
  }
  if (!update) {
    if (out->name == NULL) {
      snprintf(err, errlen, "name: required");
      goto fail;
    }
    if (out->secret == NULL) {
      snprintf(err, errlen, "secret: required");
      goto fail;
    }
  } else if (fields == 0) {
    snprintf(err, errlen, "nothing to update: give name, secret, parent_id, labels, relayapi, "
                          "onsub, autopush or pending");
    goto fail;
  }
  return 0;

fail:
  valid_node_free(out);
  return -1;
}

void valid_node_free(valid_node_t *n) {
  json_decref(n->json);
  free(n->labels);
  free(n->relay_allow);
  free(n->relay_deny);
  free(n->onsub_pull);
  free(n->streamauth);
  memset(n, 0, sizeof(*n));
}

int valid_token_body(const char *body, size_t len, valid_token_t *out, char *err,
                     size_t errlen) {
  const char *k;
  json_t *v;

  memset(out, 0, sizeof(*out));
  out->json = parse_object(body, len, err, errlen);
  if (out->json == NULL) return -1;
  json_object_foreach(out->json, k, v) {
    if (strcmp(k, "name") == 0) {
      if (!json_is_string(v)) {
        snprintf(err, errlen, "name: must be a string");
        goto fail;
      }
      out->name = json_string_value(v);
      if (valid_name(out->name, json_string_length(v), err, errlen) != 0) goto fail;
    } else if (strcmp(k, "role") == 0) {
      if (!json_is_string(v) || (strcmp(json_string_value(v), "admin") != 0 &&
                                 strcmp(json_string_value(v), "viewer") != 0)) {
        snprintf(err, errlen, "role: must be \"admin\" or \"viewer\"");
        goto fail;
      }
      out->role = json_string_value(v);
    } else {
      snprintf(err, errlen, "unknown field '%.64s", k);
      valid_utf8_trim(err);
      snprintf(err + strlen(err), errlen - strlen(err), "'");
      goto fail;
    }
  }
  if (out->name == NULL) {
    snprintf(err, errlen, "name: required");
    goto fail;
  }
  if (out->role == NULL) {
    snprintf(err, errlen, "role: required");
    goto fail;
  }
  return 0;

fail:
  valid_token_free(out);
  return -1;
}

void valid_token_free(valid_token_t *t) {
  json_decref(t->json);
  memset(t, 0, sizeof(*t));
}

static int parse_long(const char *s, long min, long max, long *out) {
  char *end;
  if (s == NULL || *s < '0' || *s > '9') return -1;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || *end != '\0' || v < min || v > max) return -1;
  *out = v;
  return 0;
}

int valid_bool_query(const char *key, const char *v, int *out, char *err, size_t errlen) {
  *out = -1;
  if (v == NULL) return 0;
  if (strcmp(v, "true") == 0) {
    *out = 1;
  } else if (strcmp(v, "false") == 0) {
    *out = 0;
  } else {
    snprintf(err, errlen, "%s: must be true or false", key);
    return -1;
  }
  return 0;
}

int valid_list_query(const char *page, const char *size, const char *online,
                     const char *name, valid_list_t *out, char *err, size_t errlen) {
  out->page = 1;
  out->size = VALID_SIZE_DEFAULT;
  out->online = -1;
  out->name = NULL;
  if (page && parse_long(page, 1, VALID_PAGE_MAX, &out->page) != 0) {
    snprintf(err, errlen, "page: must be an integer from 1 to %d", VALID_PAGE_MAX);
    return -1;
  }
  if (size && parse_long(size, 1, VALID_SIZE_MAX, &out->size) != 0) {
    snprintf(err, errlen, "size: must be an integer from 1 to %d", VALID_SIZE_MAX);
    return -1;
  }
  if (online) {
    if (strcmp(online, "true") == 0) {
      out->online = 1;
    } else if (strcmp(online, "false") == 0) {
      out->online = 0;
    } else {
      snprintf(err, errlen, "online: must be true or false");
      return -1;
    }
  }
  if (name) {
    if (bounded_text("name", name, strlen(name), 0, VALID_NAME_MAX, err, errlen) != 0) return -1;
    if (*name) out->name = name;
  }
  return 0;
}
