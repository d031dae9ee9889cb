/* Validation of what API callers send: ids in paths, query parameters and
 * JSON bodies. Pure functions, no I/O: unit-tested and fuzzed. */
#ifndef CASCADE_VALID_H
#define CASCADE_VALID_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define VALID_NAME_MAX 64
#define VALID_SECRET_MIN 8
#define VALID_SECRET_MAX 1024
#define VALID_LABELS_MAX 64
#define VALID_LABEL_KEY_MAX 63
#define VALID_LABEL_VALUE_MAX 255
#define VALID_BODY_MAX (1024 * 1024)
#define VALID_PAGE_MAX 1000000
#define VALID_SIZE_MAX 1000
#define VALID_SIZE_DEFAULT 50

/* valid_id parses a path id: decimal 1..INT64_MAX, no sign, no leading
 * zero, nothing else. 0 or -1. */
int valid_id(const char *s, int64_t *out);

/* valid_name checks a node or token name: 1..64 bytes, valid UTF-8, no
 * control characters. 0 or -1 with a reason in |err|. */
int valid_name(const char *s, size_t len, char *err, size_t errlen);

/* valid_utf8_trim cuts an incomplete UTF-8 sequence off the end of |s|
 * (left by truncating a message), so the text stays valid. */
void valid_utf8_trim(char *s);

/* A node create/update request, decoded. Strings point into |json|. */
typedef struct {
  json_t *json;          /* owned: the parsed body */
  const char *name;
  size_t name_len;
  const char *secret;
  size_t secret_len;
  int has_parent;        /* parent_id given (possibly null) */
  int64_t parent_id;     /* 0 = null */
  char *labels;          /* owned: compact JSON text of labels, or NULL */
  int has_relay;         /* relayapi given (object or null) */
  char *relay_allow;     /* owned: JSON array text, or NULL (agent decides) */
  char *relay_deny;
  int has_onsub;         /* onsub given */
  char *onsub_pull;      /* owned: JSON [[pattern, target], ...] text, or NULL */
  int has_autopush;
  int autopush;          /* -1 null (agent decides), 0, 1 */
  int has_pending;       /* pending given (PUT only) */
  int pending;           /* 0 approve, 1 suspend */
  int has_streamauth;    /* streamauth given (PUT only) */
  char *streamauth;      /* owned: the node's own rules, JSON text, or NULL (none) */
} valid_node_t;

#define VALID_RULES_MAX 1024
#define VALID_RULE_LEN_MAX 1024

/* valid_node_body decodes a POST (|update| 0: name and secret required) or
 * PUT (|update| 1: at least one field) body. relayapi, onsub and autopush
 * (rules for the agent) are PUT-only; onsub.pull patterns are compiled with
 * pcre2 and a bad one is refused with pcre2's message. 0, or -1 with |err| naming the
 * field and the problem (an HTTP 400). Free with valid_node_free. */
int valid_node_body(const char *body, size_t len, int update, valid_node_t *out,
                    char *err, size_t errlen);

/* valid_pattern compiles a pull pattern with pcre2: 0, or -1 with pcre2's
 * message in |err|. */
int valid_pattern(const char *pattern, char *err, size_t errlen);

/* valid_pull_target checks a pull template's scheme. 0 or -1. */
int valid_pull_target(const char *t);

/* valid_node_free releases what valid_node_body allocated; accepts zeroed. */
void valid_node_free(valid_node_t *n);

/* A token create request. */
typedef struct {
  json_t *json;
  const char *name;
  const char *role;      /* "admin" or "viewer" */
} valid_token_t;

int valid_token_body(const char *body, size_t len, valid_token_t *out, char *err,
                     size_t errlen);
void valid_token_free(valid_token_t *t);

/* The list query: page, size, online, name. NULL arguments are absent. */
typedef struct {
  long page;
  long size;
  int online;            /* -1 absent, 0 false, 1 true */
  const char *name;      /* substring, or NULL */
} valid_list_t;

/* valid_bool_query reads a query parameter |key| that must be exactly true or
 * false: *out 1 or 0, -1 when absent (NULL). 0, or -1 with |err| set. */
int valid_bool_query(const char *key, const char *v, int *out, char *err, size_t errlen);

int valid_list_query(const char *page, const char *size, const char *online,
                     const char *name, valid_list_t *out, char *err, size_t errlen);

#endif
