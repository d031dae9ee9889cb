/* Table-driven YAML configuration: see cfg.h.
 *
 * The file is parsed twice with libyaml: first as an event stream, to refuse
 * what the document API would happily build (anchors and aliases, deep
 * nesting, huge node counts, several documents) before any tree exists; then
 * with yaml_parser_load, whose nodes carry the marks used in error messages.
 * Nothing here is global, so loads may run concurrently on separate tables. */
#include "cfg.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "hostaddr.h"
#include "relpath.h"

#define CFG_MAX_INPUT (1024 * 1024)
#define CFG_MAX_DEPTH 16        /* YAML collections nested in one another */
#define CFG_MAX_NODES 100000    /* far above any real file, far below OOM */
#define CFG_MAX_ITEMS 1024      /* STRLIST items, STRMAP entries */
#define CFG_DEFAULT_MAXLEN 4096 /* string length when the table says max 0 */
#define CFG_PATH_MAX 256        /* longer dotted paths cannot be table keys */
#define CFG_SHOW_MAX 120        /* file text quoted back in an error */

/* One load: where errors go and which table entries the file has set. */
typedef struct {
  const cfg_key_t *table;
  void *dst;
  const char *name;
  char *err;
  size_t errlen;
  yaml_document_t *doc;
  unsigned char *set; /* per table entry: set by this file (alias check) */
  int env;            /* |name| is an environment variable: no line and column */
} cfg_load_t;

/* A converted scalar, held until it replaces the old field value. */
typedef union {
  char *s;
  int b;
  long long i;
} cfg_val_t;

static void *field_of(const cfg_key_t *k, void *dst) { return (char *)dst + k->offset; }

static size_t table_len(const cfg_key_t *table) {
  size_t n = 0;
  while (table[n].name != NULL) n++;
  return n;
}

static long long str_max(const cfg_key_t *k) {
  return k->max > 0 ? k->max : CFG_DEFAULT_MAXLEN;
}

static void strlist_clear(cfg_strlist_t *l) {
  for (size_t i = 0; i < l->n; i++) free(l->v[i]);
  free(l->v);
  l->v = NULL;
  l->n = 0;
}

static void strmap_clear(cfg_strmap_t *m) {
  for (size_t i = 0; i < m->n; i++) {
    free(m->keys[i]);
    free(m->vals[i]);
  }
  free(m->keys);
  free(m->vals);
  m->keys = NULL;
  m->vals = NULL;
  m->n = 0;
}

/* Copies file text into an error message: it may hold anything, and the
 * message ends up in a log line. */
static void show(char *out, size_t outlen, const char *s, size_t len) {
  size_t o = 0;
  for (size_t i = 0; i < len && o + 4 < outlen; i++) {
    unsigned char c = (unsigned char)s[i];
    if (i == CFG_SHOW_MAX) {
      memcpy(out + o, "...", 3);
      o += 3;
      break;
    }
    out[o++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
  }
  if (outlen > 0) out[o < outlen ? o : outlen - 1] = '\0';
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
  if (err == NULL || errlen == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* Writes "FILE:LINE:COL: key 'PATH': MSG" (no key part when path is NULL)
 * for |node| and returns -1. */
static int fail_at(cfg_load_t *c, const yaml_mark_t *mark, const char *path, size_t plen,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int fail_at(cfg_load_t *c, const yaml_mark_t *mark, const char *path, size_t plen,
                   const char *fmt, ...) {
  char msg[512], shown[CFG_SHOW_MAX + 8];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  if (c->env) {
    show(shown, sizeof(shown), path ? path : "", path ? plen : 0);
    if (path != NULL)
      set_err(c->err, c->errlen, "%s: key '%s': %s", c->name, shown, msg);
    else
      set_err(c->err, c->errlen, "%s: %s", c->name, msg);
  } else if (path != NULL) {
    show(shown, sizeof(shown), path, plen);
    set_err(c->err, c->errlen, "%s:%zu:%zu: key '%s': %s", c->name, mark->line + 1,
            mark->column + 1, shown, msg);
  } else {
    set_err(c->err, c->errlen, "%s:%zu:%zu: %s", c->name, mark->line + 1, mark->column + 1,
            msg);
  }
  return -1;
}

/* libyaml reports reader errors (bad UTF-8, NUL bytes) as a byte offset. */
static void offset_to_mark(const unsigned char *buf, size_t len, size_t off, yaml_mark_t *m) {
  m->line = 0;
  m->column = 0;
  for (size_t i = 0; i < off && i < len; i++) {
    if (buf[i] == '\n') {
      m->line++;
      m->column = 0;
    } else if ((buf[i] & 0xc0) != 0x80) { /* count characters, as libyaml does */
      m->column++;
    }
  }
}

static int yaml_fail(cfg_load_t *c, const yaml_parser_t *p, const unsigned char *buf,
                     size_t len) {
  yaml_mark_t m = p->problem_mark;
  const char *problem = p->problem ? p->problem : "invalid YAML";
  switch (p->error) {
  case YAML_MEMORY_ERROR:
    set_err(c->err, c->errlen, "%s: out of memory", c->name);
    return -1;
  case YAML_READER_ERROR:
    offset_to_mark(buf, len, p->problem_offset, &m);
    break;
  default:
    break;
  }
  return fail_at(c, &m, NULL, 0, "%s", problem);
}

/* The event pass: refuses, with the position, what must not reach the
 * loader. libyaml 0.2.5 has no nesting limit of its own and resolves
 * aliases by sharing nodes, which a recursive walk would multiply. */
static int prescan(cfg_load_t *c, const unsigned char *buf, size_t len) {
  yaml_parser_t p;
  yaml_event_t ev;
  int depth = 0, docs = 0, rc = -1;
  size_t nodes = 0;

  if (!yaml_parser_initialize(&p)) {
    set_err(c->err, c->errlen, "%s: out of memory", c->name);
    return -1;
  }
  yaml_parser_set_input_string(&p, buf, len);
  for (;;) {
    if (!yaml_parser_parse(&p, &ev)) {
      yaml_fail(c, &p, buf, len);
      break;
    }
    const yaml_char_t *anchor = NULL;
    int bad = 0;
    switch (ev.type) {
    case YAML_DOCUMENT_START_EVENT:
      if (++docs > 1) bad = fail_at(c, &ev.start_mark, NULL, 0, "only one document is allowed");
      break;
    case YAML_ALIAS_EVENT:
      bad = fail_at(c, &ev.start_mark, NULL, 0, "aliases are not allowed");
      break;
    case YAML_SCALAR_EVENT:
      anchor = ev.data.scalar.anchor;
      nodes++;
      break;
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT:
      anchor = ev.type == YAML_SEQUENCE_START_EVENT ? ev.data.sequence_start.anchor
                                                     : ev.data.mapping_start.anchor;
      nodes++;
      if (++depth > CFG_MAX_DEPTH)
        bad = fail_at(c, &ev.start_mark, NULL, 0, "nesting is deeper than %d levels",
                      CFG_MAX_DEPTH);
      break;
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
      depth--;
      break;
    default:
      break;
    }
    if (!bad && anchor != NULL)
      bad = fail_at(c, &ev.start_mark, NULL, 0, "anchors are not allowed");
    if (!bad && nodes > CFG_MAX_NODES)
      bad = fail_at(c, &ev.start_mark, NULL, 0, "more than %d nodes", CFG_MAX_NODES);
    yaml_event_type_t type = ev.type;
    yaml_event_delete(&ev);
    if (bad) break;
    if (type == YAML_STREAM_END_EVENT) {
      rc = 0;
      break;
    }
  }
  yaml_parser_delete(&p);
  return rc;
}

/* Parses |len| bytes into |doc| (an empty stream gives a document without
 * a root). On error |doc| is left untouched and needs no delete. */
static int parse_doc(cfg_load_t *c, const char *text, size_t len, yaml_document_t *doc) {
  static const unsigned char empty[1] = {0};
  const unsigned char *buf = len ? (const unsigned char *)text : empty;
  yaml_parser_t p;

  if (prescan(c, buf, len) < 0) return -1;
  if (!yaml_parser_initialize(&p)) {
    set_err(c->err, c->errlen, "%s: out of memory", c->name);
    return -1;
  }
  yaml_parser_set_input_string(&p, buf, len);
  int ok = yaml_parser_load(&p, doc);
  if (!ok) yaml_fail(c, &p, buf, len);
  yaml_parser_delete(&p);
  return ok ? 0 : -1;
}

static int is_null(const yaml_node_t *n) {
  if (n->type != YAML_SCALAR_NODE) return 0;
  if (n->tag != NULL && strcmp((const char *)n->tag, YAML_NULL_TAG) == 0) return 1;
  /* Quoted "" and "null" are strings; only plain spellings mean null. */
  if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
  const char *v = (const char *)n->data.scalar.value;
  size_t len = n->data.scalar.length;
  return len == 0 || (len == 1 && v[0] == '~') ||
         (len == 4 && (strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
                       strcmp(v, "NULL") == 0));
}

/* Checks a string against the bounds of |k|; writes why not to |msg|. */
static int check_str(const cfg_key_t *k, const char *s, size_t len, char *msg, size_t msglen) {
  long long max = str_max(k);
  for (size_t i = 0; i < len; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch < 0x20 || ch == 0x7f) {
      snprintf(msg, msglen, "control characters are not allowed");
      return -1;
    }
  }
  if (len == 0 && (k->flags & CFG_EMPTY_OK)) return 0;
  if ((long long)len > max || (long long)len < k->min) {
    if (k->min > 0)
      snprintf(msg, msglen, "must be between %lld and %lld bytes long", k->min, max);
    else
      snprintf(msg, msglen, "must be at most %lld bytes long", max);
    return -1;
  }
  return 0;
}

static char *dup_len(const char *s, size_t len) {
  char *p = malloc(len + 1);
  if (p == NULL) return NULL;
  memcpy(p, s, len);
  p[len] = '\0';
  return p;
}

/* Strict decimal: YAML 1.1 readers take 010 as octal and 0x10 as hex, so
 * neither is accepted rather than read differently from other tools.
 * Returns 0, -1 (not a number) or -2 (does not fit a long long). */
static int parse_ll(const char *s, size_t len, long long *out) {
  size_t i = 0;
  int neg = 0;
  unsigned long long v = 0, lim;

  if (len > 0 && s[0] == '-') {
    neg = 1;
    i = 1;
  }
  if (i == len) return -1;
  if (s[i] == '0' && len - i > 1) return -1;
  lim = neg ? (unsigned long long)LLONG_MAX + 1 : (unsigned long long)LLONG_MAX;
  int over = 0;
  for (; i < len; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    unsigned d = (unsigned)(s[i] - '0');
    if (v > (lim - d) / 10) over = 1; /* keep scanning: junk still wins */
    else v = v * 10 + d;
  }
  if (over) return -2;
  *out = neg ? (v == lim ? LLONG_MIN : -(long long)v) : (long long)v;
  return 0;
}

/* parse_duration reads "<digits><unit>" with unit ms, s, m or h into
 * milliseconds. 0, -1 (malformed) or -2 (too large). */
static int parse_duration(const char *s, size_t len, long long *out) {
  static const struct {
    const char *unit;
    long long ms;
  } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
  size_t digits = 0;
  while (digits < len && s[digits] >= '0' && s[digits] <= '9') digits++;
  if (digits == 0 || digits == len) return -1;
  for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
    if (len - digits != strlen(units[u].unit) || memcmp(s + digits, units[u].unit, len - digits))
      continue;
    long long v;
    int r = parse_ll(s, digits, &v);
    if (r != 0) return r;
    if (v > LLONG_MAX / units[u].ms) return -2;
    *out = v * units[u].ms;
    return 0;
  }
  return -1;
}

static void duration_text(long long ms, char *buf, size_t len) {
  if (ms % 3600000 == 0 && ms) snprintf(buf, len, "%lldh", ms / 3600000);
  else if (ms % 60000 == 0 && ms) snprintf(buf, len, "%lldm", ms / 60000);
  else if (ms % 1000 == 0) snprintf(buf, len, "%llds", ms / 1000);
  else snprintf(buf, len, "%lldms", ms);
}

static void choices_text(const cfg_key_t *k, char *buf, size_t len) {
  size_t o = 0;
  buf[0] = '\0';
  for (size_t i = 0; k->choices != NULL && k->choices[i] != NULL && o < len; i++) {
    int n = snprintf(buf + o, len - o, "%s%s", i ? ", " : "", k->choices[i]);
    if (n < 0) break;
    o += (size_t)n;
  }
}

/* Converts scalar text to the value of a STR/BOOL/INT/ENUM key. |isnull|
 * is a YAML null: "" for a string, an error for the others. */
static int conv_scalar(const cfg_key_t *k, const char *s, size_t len, int isnull,
                       cfg_val_t *out, char *msg, size_t msglen) {
  static const char *const yes[] = {"true", "yes", "on"};
  static const char *const no[] = {"false", "no", "off"};

  switch (k->type) {
  case CFG_STR:
    if (isnull) len = 0;
    if (check_str(k, s, len, msg, msglen) < 0) return -1;
    out->s = dup_len(s, len);
    if (out->s == NULL) {
      snprintf(msg, msglen, "out of memory");
      return -1;
    }
    if ((k->flags & CFG_HOSTPORT) && len > 0) {
      char why[200] = "invalid";
      if (hostaddr_check(out->s, why, sizeof(why)) != 0) {
        if (k->flags & CFG_SECRET)
          snprintf(msg, msglen, "%s", why);
        else
          snprintf(msg, msglen, "'%.200s': %s", out->s, why);
        free(out->s);
        out->s = NULL;
        return -1;
      }
    }
    return 0;
  case CFG_BOOL:
    for (int i = 0; !isnull && i < 3; i++) {
      if (strlen(yes[i]) == len && strncasecmp(s, yes[i], len) == 0) {
        out->b = 1;
        return 0;
      }
      if (strlen(no[i]) == len && strncasecmp(s, no[i], len) == 0) {
        out->b = 0;
        return 0;
      }
    }
    snprintf(msg, msglen, "expected a boolean (true or false)");
    return -1;
  case CFG_INT: {
    int r = isnull ? -1 : parse_ll(s, len, &out->i);
    if (r == -1) {
      snprintf(msg, msglen, "expected a number");
      return -1;
    }
    if (r == -2 || out->i < k->min || out->i > k->max) {
      snprintf(msg, msglen, "must be between %lld and %lld", k->min, k->max);
      return -1;
    }
    return 0;
  }
  case CFG_DURATION: {
    int r = isnull ? -1 : parse_duration(s, len, &out->i);
    if (r == -1) {
      snprintf(msg, msglen, "expected a duration such as 500ms, 10s, 5m or 1h");
      return -1;
    }
    if (r == -2 || out->i < k->min || out->i > k->max) {
      char lo[32], hi[32];
      duration_text(k->min, lo, sizeof(lo));
      duration_text(k->max, hi, sizeof(hi));
      snprintf(msg, msglen, "must be between %s and %s", lo, hi);
      return -1;
    }
    return 0;
  }
  case CFG_ENUM: {
    for (int i = 0; !isnull && k->choices != NULL && k->choices[i] != NULL; i++) {
      if (strlen(k->choices[i]) == len && memcmp(s, k->choices[i], len) == 0) {
        out->b = i;
        return 0;
      }
    }
    char list[256];
    choices_text(k, list, sizeof(list));
    snprintf(msg, msglen, "expected one of: %s", list);
    return -1;
  }
  default:
    snprintf(msg, msglen, "not a scalar key");
    return -1;
  }
}

/* Replaces the field of a scalar key with |v|, which it takes over. */
static void store_scalar(const cfg_key_t *k, void *dst, cfg_val_t *v) {
  void *f = field_of(k, dst);
  switch (k->type) {
  case CFG_STR:
    free(*(char **)f);
    *(char **)f = v->s;
    break;
  case CFG_BOOL:
  case CFG_ENUM:
    *(int *)f = v->b;
    break;
  case CFG_INT:
  case CFG_DURATION:
    *(long long *)f = v->i;
    break;
  default:
    break;
  }
}

static const char *expected_what(cfg_type_t t) {
  switch (t) {
  case CFG_STR: return "expected a string";
  case CFG_BOOL: return "expected a boolean (true or false)";
  case CFG_INT: return "expected a number";
  case CFG_DURATION: return "expected a duration such as 500ms, 10s, 5m or 1h";
  case CFG_STRLIST: return "expected a list of strings";
  case CFG_STRMAP: return "expected a mapping of strings to strings";
  default: return "expected a scalar";
  }
}

static const char *node_str(const yaml_node_t *n) { return (const char *)n->data.scalar.value; }

/* Item or map value: a scalar (null = "") within the bounds of |k|. */
static int conv_item(cfg_load_t *c, const cfg_key_t *k, const yaml_node_t *n, char **out) {
  char msg[256];
  cfg_val_t v;
  if (n->type != YAML_SCALAR_NODE)
    return fail_at(c, &n->start_mark, k->name, strlen(k->name), "expected a string");
  cfg_key_t as_str = *k;
  as_str.type = CFG_STR;
  if (conv_scalar(&as_str, node_str(n), n->data.scalar.length, is_null(n), &v, msg,
                  sizeof(msg)) < 0)
    return fail_at(c, &n->start_mark, k->name, strlen(k->name), "%s", msg);
  const char *why;
  if ((k->flags & CFG_RELPATH_RULE) && (why = relpath_rule_check(v.s)) != NULL) {
    int rv = fail_at(c, &n->start_mark, k->name, strlen(k->name), "rule '%.200s': %s", v.s, why);
    free(v.s);
    return rv;
  }
  if (k->type == CFG_STRLIST && k->choices != NULL) {
    int ok = 0;
    for (size_t i = 0; k->choices[i] != NULL && !ok; i++)
      ok = strncmp(v.s, k->choices[i], strlen(k->choices[i])) == 0;
    if (!ok) {
      char want[256];
      size_t o = 0;
      want[0] = '\0';
      for (size_t i = 0; k->choices[i] != NULL && o < sizeof(want); i++)
        o += (size_t)snprintf(want + o, sizeof(want) - o, "%s%s", i ? " or " : "", k->choices[i]);
      int rv = fail_at(c, &n->start_mark, k->name, strlen(k->name),
                       "'%.200s' must start with %s", v.s, want);
      free(v.s);
      return rv;
    }
  }
  *out = v.s;
  return 0;
}

/* load_scalar_list reads scalar |n| as a comma-separated list
 * (CFG_LIST_SCALAR): each item, blanks trimmed, is checked as a list item;
 * an empty item is an error. */
static int load_scalar_list(cfg_load_t *c, const cfg_key_t *k, const yaml_node_t *n,
                            cfg_strlist_t *l) {
  const char *s = node_str(n), *end = s + n->data.scalar.length;
  size_t cnt = 1;
  for (const char *p = s; p < end; p++) cnt += *p == ',';
  if (cnt > CFG_MAX_ITEMS)
    return fail_at(c, &n->start_mark, k->name, strlen(k->name), "more than %d items",
                   CFG_MAX_ITEMS);
  if ((l->v = calloc(cnt, sizeof(*l->v))) == NULL)
    return fail_at(c, &n->start_mark, k->name, strlen(k->name), "out of memory");
  for (const char *p = s; p <= end;) {
    const char *q = memchr(p, ',', (size_t)(end - p));
    if (q == NULL) q = end;
    const char *a = p, *b = q;
    while (a < b && (*a == ' ' || *a == '\t')) a++;
    while (b > a && (b[-1] == ' ' || b[-1] == '\t')) b--;
    if (a == b)
      return fail_at(c, &n->start_mark, k->name, strlen(k->name), "empty item in '%.200s'", s);
    yaml_node_t item = *n;
    char *text = strndup(a, (size_t)(b - a));
    if (text == NULL)
      return fail_at(c, &n->start_mark, k->name, strlen(k->name), "out of memory");
    item.data.scalar.value = (yaml_char_t *)text;
    item.data.scalar.length = (size_t)(b - a);
    int rv = conv_item(c, k, &item, &l->v[l->n]);
    free(text);
    if (rv < 0) return -1;
    l->n++;
    p = q + 1;
  }
  return 0;
}

static int load_strlist(cfg_load_t *c, const cfg_key_t *k, const yaml_node_t *n) {
  cfg_strlist_t l = {NULL, 0};
  size_t cnt;

  if (is_null(n)) goto done;
  if (n->type == YAML_SCALAR_NODE && (k->flags & CFG_LIST_SCALAR)) {
    if (load_scalar_list(c, k, n, &l) < 0) goto fail_items;
    goto done;
  }
  if (n->type != YAML_SEQUENCE_NODE)
    return fail_at(c, &n->start_mark, k->name, strlen(k->name), "%s",
                   expected_what(k->type));
  cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
  if (cnt > CFG_MAX_ITEMS)
    return fail_at(c, &n->start_mark, k->name, strlen(k->name), "more than %d items",
                   CFG_MAX_ITEMS);
  if (cnt > 0 && (l.v = calloc(cnt, sizeof(*l.v))) == NULL)
    return fail_at(c, &n->start_mark, k->name, strlen(k->name), "out of memory");
  for (size_t i = 0; i < cnt; i++) {
    const yaml_node_t *it = yaml_document_get_node(c->doc, n->data.sequence.items.start[i]);
    if (it == NULL || conv_item(c, k, it, &l.v[i]) < 0) goto fail_items;
    l.n++;
  }
done:
  strlist_clear(field_of(k, c->dst));
  *(cfg_strlist_t *)field_of(k, c->dst) = l;
  return 0;

fail_items:
  strlist_clear(&l);
  return -1;
}

static int load_strmap(cfg_load_t *c, const cfg_key_t *k, const yaml_node_t *n) {
  cfg_strmap_t m = {NULL, NULL, 0};
  size_t cnt;
  char shown[CFG_SHOW_MAX + 8];

  if (is_null(n)) goto done;
  if (n->type != YAML_MAPPING_NODE)
    return fail_at(c, &n->start_mark, k->name, strlen(k->name), "%s",
                   expected_what(k->type));
  cnt = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
  if (cnt > CFG_MAX_ITEMS)
    return fail_at(c, &n->start_mark, k->name, strlen(k->name), "more than %d entries",
                   CFG_MAX_ITEMS);
  if (cnt > 0) {
    m.keys = calloc(cnt, sizeof(*m.keys));
    m.vals = calloc(cnt, sizeof(*m.vals));
    if (m.keys == NULL || m.vals == NULL) {
      fail_at(c, &n->start_mark, k->name, strlen(k->name), "out of memory");
      goto fail_entries;
    }
  }
  for (size_t i = 0; i < cnt; i++) {
    const yaml_node_pair_t *pr = &n->data.mapping.pairs.start[i];
    const yaml_node_t *kn = yaml_document_get_node(c->doc, pr->key);
    const yaml_node_t *vn = yaml_document_get_node(c->doc, pr->value);
    if (kn == NULL || vn == NULL) goto fail_entries;
    if (kn->type != YAML_SCALAR_NODE || is_null(kn)) {
      fail_at(c, &kn->start_mark, k->name, strlen(k->name), "keys must be strings");
      goto fail_entries;
    }
    if (conv_item(c, k, kn, &m.keys[i]) < 0) goto fail_entries;
    for (size_t j = 0; j < i; j++) {
      if (strcmp(m.keys[j], m.keys[i]) == 0) {
        show(shown, sizeof(shown), m.keys[i], strlen(m.keys[i]));
        free(m.keys[i]);
        m.keys[i] = NULL;
        fail_at(c, &kn->start_mark, k->name, strlen(k->name), "duplicate key '%s'", shown);
        goto fail_entries;
      }
    }
    if (conv_item(c, k, vn, &m.vals[i]) < 0) {
      free(m.keys[i]);
      m.keys[i] = NULL;
      goto fail_entries;
    }
    m.n++;
  }
done:
  strmap_clear(field_of(k, c->dst));
  *(cfg_strmap_t *)field_of(k, c->dst) = m;
  return 0;

fail_entries:
  strmap_clear(&m);
  return -1;
}

/* Sets table entry |idx| from value node |vn| (|kn| is its key, for the
 * alias check; NULL for a default). */
static int load_leaf(cfg_load_t *c, size_t idx, const yaml_node_t *kn, const yaml_node_t *vn) {
  const cfg_key_t *k = &c->table[idx];
  char msg[256];
  cfg_val_t v;

  if (kn != NULL) {
    for (size_t j = 0; c->table[j].name != NULL; j++) {
      if (j != idx && c->set[j] && c->table[j].offset == k->offset)
        return fail_at(c, &kn->start_mark, NULL, 0, "key '%s' and its alias '%s' both set",
                       c->table[j].name, k->name);
    }
    c->set[idx] = 1;
  }
  switch (k->type) {
  case CFG_STRLIST:
    return load_strlist(c, k, vn);
  case CFG_STRMAP:
    return load_strmap(c, k, vn);
  default:
    if (vn->type != YAML_SCALAR_NODE) {
      if (k->type == CFG_ENUM) {
        conv_scalar(k, "", 0, 1, &v, msg, sizeof(msg)); /* for the list of choices */
        return fail_at(c, &vn->start_mark, k->name, strlen(k->name), "%s", msg);
      }
      return fail_at(c, &vn->start_mark, k->name, strlen(k->name), "%s",
                     expected_what(k->type));
    }
    if (conv_scalar(k, node_str(vn), vn->data.scalar.length, is_null(vn), &v, msg,
                    sizeof(msg)) < 0)
      return fail_at(c, &vn->start_mark, k->name, strlen(k->name), "%s", msg);
    store_scalar(k, c->dst, &v);
    return 0;
  }
}

static long find_exact(const cfg_key_t *t, const char *p, size_t n) {
  for (long i = 0; t[i].name != NULL; i++)
    if (strlen(t[i].name) == n && memcmp(t[i].name, p, n) == 0) return i;
  return -1;
}

static int is_section(const cfg_key_t *t, const char *p, size_t n) {
  for (size_t i = 0; t[i].name != NULL; i++)
    if (strlen(t[i].name) > n && memcmp(t[i].name, p, n) == 0 && t[i].name[n] == '.')
      return 1;
  return 0;
}

/* Walks mapping |map| whose dotted path is |prefix| ("" at the top). */
static int walk(cfg_load_t *c, const yaml_node_t *map, const char *prefix, size_t plen,
                int depth) {
  const yaml_node_pair_t *start = map->data.mapping.pairs.start;
  const yaml_node_pair_t *top = map->data.mapping.pairs.top;
  char path[CFG_PATH_MAX];

  if (depth > CFG_MAX_DEPTH) /* the prescan bounds it already */
    return fail_at(c, &map->start_mark, NULL, 0, "nesting is too deep");
  for (const yaml_node_pair_t *pr = start; pr < top; pr++) {
    const yaml_node_t *kn = yaml_document_get_node(c->doc, pr->key);
    const yaml_node_t *vn = yaml_document_get_node(c->doc, pr->value);
    if (kn == NULL || vn == NULL)
      return fail_at(c, &map->start_mark, NULL, 0, "malformed document");
    if (kn->type != YAML_SCALAR_NODE)
      return fail_at(c, &kn->start_mark, plen ? prefix : NULL, plen, "keys must be strings");
    const char *key = node_str(kn);
    size_t klen = kn->data.scalar.length, len = 0;
    if (plen > 0) {
      memcpy(path, prefix, plen);
      path[plen] = '.';
      len = plen + 1;
    }
    size_t room = sizeof(path) - len;
    memcpy(path + len, key, klen < room ? klen : room);
    len += klen < room ? klen : room;
    /* Past the buffer it cannot name a table key; shown truncated. */
    if (klen >= room) return fail_at(c, &kn->start_mark, path, len, "unknown key");
    if (memchr(key, '.', klen) != NULL)
      return fail_at(c, &kn->start_mark, path, len,
                     "unknown key (write nested mappings, not dotted keys)");
    /* Every earlier key of this mapping was known and distinct, so this
     * stays within the size of the table. */
    for (const yaml_node_pair_t *q = start; q < pr; q++) {
      const yaml_node_t *qk = yaml_document_get_node(c->doc, q->key);
      if (qk->data.scalar.length == klen && memcmp(node_str(qk), key, klen) == 0)
        return fail_at(c, &kn->start_mark, path, len, "duplicate key");
    }
    long idx = find_exact(c->table, path, len);
    if (idx >= 0) {
      if (load_leaf(c, (size_t)idx, kn, vn) < 0) return -1;
    } else if (is_section(c->table, path, len)) {
      if (is_null(vn)) continue;
      if (vn->type != YAML_MAPPING_NODE)
        return fail_at(c, &vn->start_mark, path, len, "expected a mapping");
      if (walk(c, vn, path, len, depth + 1) < 0) return -1;
    } else {
      return fail_at(c, &kn->start_mark, path, len, "unknown key");
    }
  }
  return 0;
}

int cfg_load_buf(const cfg_key_t *table, void *dst, const char *name, const char *buf,
                 size_t len, char *err, size_t errlen) {
  cfg_load_t c = {table, dst, name, err, errlen, NULL, NULL, 0};
  yaml_document_t doc;
  int rc = -1;

  set_err(err, errlen, "%s", "");
  if (len > CFG_MAX_INPUT) {
    set_err(err, errlen, "%s: larger than 1 MiB", name);
    return -1;
  }
  c.set = calloc(table_len(table) + 1, 1);
  if (c.set == NULL) {
    set_err(err, errlen, "%s: out of memory", name);
    return -1;
  }
  if (parse_doc(&c, buf, len, &doc) < 0) goto fail_set;
  c.doc = &doc;
  const yaml_node_t *root = yaml_document_get_root_node(&doc);
  if (root == NULL || is_null(root))
    rc = 0; /* an empty file keeps every default */
  else if (root->type != YAML_MAPPING_NODE)
    rc = fail_at(&c, &root->start_mark, NULL, 0, "the top level must be a mapping");
  else
    rc = walk(&c, root, "", 0, 0);
  yaml_document_delete(&doc);
fail_set:
  free(c.set);
  return rc;
}

int cfg_load_file(const cfg_key_t *table, void *dst, const char *path, char *err,
                  size_t errlen) {
  FILE *f = fopen(path, "rb");
  char *buf;
  size_t n;
  int rc = -1;

  if (f == NULL) {
    set_err(err, errlen, "%s: %s", path, strerror(errno));
    return -1;
  }
  /* One byte more than allowed tells a large file from one just at it. */
  buf = malloc(CFG_MAX_INPUT + 1);
  if (buf == NULL) {
    set_err(err, errlen, "%s: out of memory", path);
    goto fail_file;
  }
  n = fread(buf, 1, CFG_MAX_INPUT + 1, f);
  if (ferror(f)) {
    set_err(err, errlen, "%s: %s", path, strerror(errno));
    goto fail_buf;
  }
  rc = cfg_load_buf(table, dst, path, buf, n, err, errlen);
fail_buf:
  free(buf);
fail_file:
  fclose(f);
  return rc;
}

static void zero_field(const cfg_key_t *k, void *dst) {
  void *f = field_of(k, dst);
  switch (k->type) {
  case CFG_STR: *(char **)f = NULL; break;
  case CFG_BOOL:
  case CFG_ENUM: *(int *)f = 0; break;
  case CFG_INT:
  case CFG_DURATION: *(long long *)f = 0; break;
  case CFG_STRLIST: memset(f, 0, sizeof(cfg_strlist_t)); break;
  case CFG_STRMAP: memset(f, 0, sizeof(cfg_strmap_t)); break;
  }
}

/* STRLIST/STRMAP defaults are flow YAML, e.g. ["/api/"] or {a: b}. */
static int default_collection(const cfg_key_t *table, size_t idx, void *dst) {
  char err[256];
  cfg_load_t c = {table, dst, "default", err, sizeof(err), NULL, NULL, 0};
  yaml_document_t doc;
  const char *text = table[idx].defval;

  if (parse_doc(&c, text, strlen(text), &doc) < 0) return -1;
  c.doc = &doc;
  const yaml_node_t *root = yaml_document_get_root_node(&doc);
  int rc = root == NULL ? 0 : load_leaf(&c, idx, NULL, root);
  yaml_document_delete(&doc);
  return rc;
}

int cfg_defaults(const cfg_key_t *table, void *dst) {
  char msg[256] = "";
  cfg_val_t v;
  const cfg_key_t *k = NULL;

  /* Zero first, so a failure half-way leaves |dst| safe for cfg_free. */
  for (size_t i = 0; table[i].name != NULL; i++) zero_field(&table[i], dst);
  for (size_t i = 0; table[i].name != NULL; i++) {
    k = &table[i];
    int alias = 0;
    for (size_t j = 0; j < i; j++) {
      if (table[j].offset != k->offset) continue;
      if (table[j].type != k->type) goto fail_defaults; /* one field, two types */
      alias = 1;
    }
    if (alias) continue; /* the first entry of a field holds its default */
    switch (k->type) {
    case CFG_STR:
      /* Literal text: "0.0.0.0:443" is a default, not a YAML mapping. An
       * empty default means unset and is exempt from the minimum length. */
      if (k->defval == NULL || k->defval[0] == '\0') {
        v.s = strdup("");
        if (v.s == NULL) goto fail_defaults;
      } else if (conv_scalar(k, k->defval, strlen(k->defval), 0, &v, msg, sizeof(msg)) < 0) {
        goto fail_defaults;
      }
      store_scalar(k, dst, &v);
      break;
    case CFG_BOOL:
    case CFG_INT:
    case CFG_DURATION:
    case CFG_ENUM:
      if (k->defval == NULL) break; /* stays 0 */
      if (conv_scalar(k, k->defval, strlen(k->defval), 0, &v, msg, sizeof(msg)) < 0)
        goto fail_defaults;
      store_scalar(k, dst, &v);
      break;
    case CFG_STRLIST:
    case CFG_STRMAP:
      if (k->defval != NULL && default_collection(table, i, dst) < 0) goto fail_defaults;
      break;
    }
  }
  return 0;

fail_defaults:
  /* a default that does not parse is a bug in the table, not bad input */
  fprintf(stderr, "internal error: the default of key '%s' is invalid%s%s\n", k->name,
          msg[0] ? ": " : "", msg);
  cfg_free(table, dst);
  return -1;
}

int cfg_set_str(char **field, const char *value) {
  char *s = strdup(value ? value : "");
  if (s == NULL) return -1;
  free(*field);
  *field = s;
  return 0;
}

/* ---- environment ----------------------------------------------------------- */

int cfg_env_name(const char *prefix, const char *key, char *out, size_t outlen) {
  size_t o = strlen(prefix);
  if (o >= outlen) return -1;
  memcpy(out, prefix, o);
  for (const char *p = key; *p; p++) {
    if (o + 1 >= outlen) return -1;
    out[o++] = *p == '.' ? '_' : (char)toupper((unsigned char)*p);
  }
  out[o] = '\0';
  return 0;
}

/* env_key finds the table entry whose variable is |var| (|len| bytes, no
 * '='): the rule's name, or an alias of |env|. -1 when none. */
static long env_key(const cfg_key_t *table, const cfg_env_t *env, const char *var, size_t len) {
  char name[CFG_PATH_MAX + 64];
  for (long i = 0; table[i].name != NULL; i++) {
    if (cfg_env_name(env->prefix, table[i].name, name, sizeof(name)) == 0 &&
        strlen(name) == len && memcmp(name, var, len) == 0)
      return i;
  }
  for (size_t a = 0; env->aliases != NULL && env->aliases[a].var != NULL; a++) {
    if (strlen(env->aliases[a].var) == len && memcmp(env->aliases[a].var, var, len) == 0)
      return find_exact(table, env->aliases[a].key, strlen(env->aliases[a].key));
  }
  return -1;
}

static int env_prefixed(const cfg_env_t *env, const char *var, size_t len) {
  size_t pl = strlen(env->prefix);
  return len > pl && memcmp(var, env->prefix, pl) == 0;
}

/* One variable that names a key. */
typedef struct {
  const char *var; /* in the environment block; name up to '=' */
  size_t varlen;
  const char *val;
} env_hit_t;

/* env_collection sets list or map entry |idx| from |val|: a YAML flow
 * sequence or mapping ("[...]", "{...}"), or for a list comma-separated
 * items. */
static int env_collection(cfg_load_t *c, size_t idx, const char *val, size_t vlen) {
  const cfg_key_t *k = &c->table[idx];
  const char *p = val;
  while (*p == ' ' || *p == '\t') p++;
  if (k->type == CFG_STRMAP || *p == '[') {
    yaml_document_t doc;
    if (k->type == CFG_STRMAP && *p != '{')
      return fail_at(c, NULL, k->name, strlen(k->name),
                     "expected a YAML flow mapping such as {\"live/.*\": \"m7s://$0\"}");
    if (parse_doc(c, val, vlen, &doc) < 0) return -1;
    c->doc = &doc;
    const yaml_node_t *root = yaml_document_get_root_node(&doc);
    int rc = root == NULL ? fail_at(c, NULL, k->name, strlen(k->name), "%s",
                                    expected_what(k->type))
                          : load_leaf(c, idx, NULL, root);
    yaml_document_delete(&doc);
    c->doc = NULL;
    return rc;
  }
  yaml_node_t n;
  cfg_strlist_t l = {NULL, 0};
  memset(&n, 0, sizeof(n));
  n.type = YAML_SCALAR_NODE;
  n.data.scalar.value = (yaml_char_t *)(uintptr_t)val;
  n.data.scalar.length = vlen;
  n.data.scalar.style = YAML_PLAIN_SCALAR_STYLE;
  if (load_scalar_list(c, k, &n, &l) < 0) {
    strlist_clear(&l);
    return -1;
  }
  strlist_clear(field_of(k, c->dst));
  *(cfg_strlist_t *)field_of(k, c->dst) = l;
  return 0;
}

int cfg_load_env(const cfg_key_t *table, void *dst, const cfg_env_t *env, char *const *envp,
                 char *err, size_t errlen) {
  size_t n = table_len(table);
  char shown[CFG_SHOW_MAX + 8], other[CFG_SHOW_MAX + 8];
  int rc = -1;

  set_err(err, errlen, "%s", "");
  for (size_t a = 0; env->aliases != NULL && env->aliases[a].var != NULL; a++) {
    if (find_exact(table, env->aliases[a].key, strlen(env->aliases[a].key)) < 0) {
      set_err(err, errlen, "internal error: variable %s names no key", env->aliases[a].var);
      return -1;
    }
  }
  env_hit_t *hit = calloc(n + 1, sizeof(*hit));
  if (hit == NULL) {
    set_err(err, errlen, "environment: out of memory");
    return -1;
  }
  for (char *const *e = envp; e != NULL && *e != NULL; e++) {
    const char *eq = strchr(*e, '=');
    if (eq == NULL) continue;
    size_t nl = (size_t)(eq - *e);
    long idx = env_key(table, env, *e, nl);
    if (idx < 0) {
      if (!env_prefixed(env, *e, nl)) continue; /* not ours */
      show(shown, sizeof(shown), *e, nl);
      set_err(err, errlen,
              "%s: unknown configuration variable (%s... names a key: %s followed by the key "
              "in upper case with '_' for '.'; see --print-config-doc)",
              shown, env->prefix, env->prefix);
      goto done;
    }
    if (eq[1] == '\0') continue; /* empty: unset */
    /* Two variables for one field (a key and its alias, a name and its
     * older name) must agree: which one wins would be a guess. */
    for (size_t j = 0; j < n; j++) {
      if (hit[j].var == NULL || table[j].offset != table[idx].offset) continue;
      if (strcmp(hit[j].val, eq + 1) == 0) continue;
      show(shown, sizeof(shown), *e, nl);
      show(other, sizeof(other), hit[j].var, hit[j].varlen);
      set_err(err, errlen, "%s: key '%s': also set, differently, by %s; set only one", shown,
              table[idx].name, other);
      goto done;
    }
    if (hit[idx].var == NULL) hit[idx] = (env_hit_t){*e, nl, eq + 1};
  }
  for (size_t i = 0; i < n; i++) {
    if (hit[i].var == NULL) continue;
    const cfg_key_t *k = &table[i];
    size_t vlen = strlen(hit[i].val);
    char msg[256];
    cfg_val_t v;
    show(shown, sizeof(shown), hit[i].var, hit[i].varlen);
    cfg_load_t c = {table, dst, shown, err, errlen, NULL, NULL, 1};
    if (vlen > CFG_MAX_INPUT) {
      set_err(err, errlen, "%s: key '%s': larger than 1 MiB", shown, k->name);
      goto done;
    }
    if (k->type == CFG_STRLIST || k->type == CFG_STRMAP) {
      if (env_collection(&c, i, hit[i].val, vlen) < 0) goto done;
      continue;
    }
    if (conv_scalar(k, hit[i].val, vlen, 0, &v, msg, sizeof(msg)) < 0) {
      set_err(err, errlen, "%s: key '%s': %s", shown, k->name, msg);
      goto done;
    }
    store_scalar(k, dst, &v);
  }
  rc = 0;
done:
  free(hit);
  return rc;
}

size_t cfg_env_used(const cfg_key_t *table, const cfg_env_t *env, char *const *envp, char *out,
                    size_t outlen) {
  size_t cnt = 0, o = 0;
  if (outlen > 0) out[0] = '\0';
  for (char *const *e = envp; e != NULL && *e != NULL; e++) {
    const char *eq = strchr(*e, '=');
    if (eq == NULL || eq[1] == '\0') continue;
    size_t nl = (size_t)(eq - *e);
    if (env_key(table, env, *e, nl) < 0) continue;
    cnt++;
    if (o < outlen) {
      int w = snprintf(out + o, outlen - o, "%s%.*s", o ? ", " : "", (int)nl, *e);
      if (w > 0) o += (size_t)w;
    }
  }
  return cnt;
}

void cfg_free(const cfg_key_t *table, void *dst) {
  if (table == NULL || dst == NULL) return;
  for (size_t i = 0; table[i].name != NULL; i++) {
    void *f = field_of(&table[i], dst);
    switch (table[i].type) {
    case CFG_STR:
      free(*(char **)f);
      *(char **)f = NULL;
      break;
    case CFG_STRLIST:
      strlist_clear(f);
      break;
    case CFG_STRMAP:
      strmap_clear(f);
      break;
    default:
      break;
    }
  }
}

/* Markdown cell text: a '|' would end the cell, a newline the row. */
static void md_cell(FILE *out, const char *s) {
  for (; s != NULL && *s; s++) {
    if (*s == '|') fputs("\\|", out);
    else if (*s == '\n' || *s == '\r') fputc(' ', out);
    else fputc(*s, out);
  }
}

static void md_code(FILE *out, const char *s) {
  if (s == NULL || *s == '\0') return;
  fputc('`', out);
  md_cell(out, s);
  fputc('`', out);
}

static const char *type_name(cfg_type_t t) {
  switch (t) {
  case CFG_STR: return "string";
  case CFG_BOOL: return "bool";
  case CFG_INT: return "int";
  case CFG_DURATION: return "duration";
  case CFG_ENUM: return "enum";
  case CFG_STRLIST: return "list of strings";
  case CFG_STRMAP: return "map of strings";
  }
  return "?";
}

void cfg_print_markdown(const cfg_key_t *table, const cfg_env_t *env, FILE *out) {
  fputs(env ? "| key | environment | type | default | bounds | description |\n"
            : "| key | type | default | bounds | description |\n", out);
  fputs(env ? "|---|---|---|---|---|---|\n" : "|---|---|---|---|---|\n", out);
  for (size_t i = 0; table[i].name != NULL; i++) {
    const cfg_key_t *k = &table[i];
    fputs("| ", out);
    md_code(out, k->name);
    if (env != NULL) {
      char var[CFG_PATH_MAX + 64];
      fputs(" | ", out);
      if (cfg_env_name(env->prefix, k->name, var, sizeof(var)) == 0) md_code(out, var);
      for (size_t a = 0; env->aliases != NULL && env->aliases[a].var != NULL; a++) {
        if (strcmp(env->aliases[a].key, k->name) != 0) continue;
        fputs(" or ", out);
        md_code(out, env->aliases[a].var);
      }
    }
    fprintf(out, " | %s%s | ", type_name(k->type),
            (k->flags & CFG_LIST_SCALAR) ? " (or one comma-separated string)" : "");
    if (k->defval != NULL) md_code(out, k->defval);
    else if (k->type == CFG_BOOL) md_code(out, "false");
    else if (k->type == CFG_INT) md_code(out, "0");
    else if (k->type == CFG_ENUM && k->choices && k->choices[0]) md_code(out, k->choices[0]);
    fputs(" | ", out);
    switch (k->type) {
    case CFG_INT:
      fprintf(out, "%lld..%lld", k->min, k->max);
      break;
    case CFG_DURATION: {
      char lo[32], hi[32];
      duration_text(k->min, lo, sizeof(lo));
      duration_text(k->max, hi, sizeof(hi));
      fprintf(out, "%s..%s", lo, hi);
      break;
    }
    case CFG_ENUM:
      for (size_t j = 0; k->choices != NULL && k->choices[j] != NULL; j++) {
        if (j) fputs(", ", out);
        md_code(out, k->choices[j]);
      }
      break;
    case CFG_STR:
    case CFG_STRLIST:
    case CFG_STRMAP:
      fprintf(out, "%lld..%lld bytes", k->min, str_max(k));
      if (k->flags & CFG_EMPTY_OK) fprintf(out, " or empty");
      if (k->type != CFG_STR) fprintf(out, ", at most %d entries", CFG_MAX_ITEMS);
      for (size_t j = 0; k->type == CFG_STRLIST && k->choices && k->choices[j]; j++) {
        fputs(j ? " or " : ", each starting with ", out);
        md_code(out, k->choices[j]);
      }
      break;
    case CFG_BOOL:
      break;
    }
    fputs(" | ", out);
    md_cell(out, k->doc);
    if (k->flags & CFG_REQUIRED) fputs(" Required.", out);
    if (k->flags & CFG_SECRET) fputs(" Secret.", out);
    fputs(" |\n", out);
  }
}
