/* The agent's state file: see state.h. */
#define _GNU_SOURCE
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "b64.h"
#include "hooks.h"
#include "x509.h"

static const char *const auth_modes[] = {"none", "token", "hook"};

/* ---- encode --------------------------------------------------------------- */

static json_t *str_list(char **v, size_t n) {
  json_t *a = json_array();
  for (size_t i = 0; a && i < n; i++) json_array_append_new(a, json_string(v[i] ? v[i] : ""));
  return a;
}

/* streamauth_json writes the stream authorization, keys included (the
 * file is 0600: cached mode keeps authorizing with them). */
static json_t *streamauth_json(const agentmsg_streamauth_t *a) {
  json_t *rules = json_array(), *keys = json_array(), *hooks = json_object();
  for (size_t i = 0; rules && i < a->nrules; i++) {
    const agentmsg_auth_rule_t *r = &a->rules[i];
    json_array_append_new(rules, json_pack("{s:s,s:s,s:s}", "pattern", r->pattern ? r->pattern : "",
                                           "publish", auth_modes[r->publish % 3], "play",
                                           auth_modes[r->play % 3]));
  }
  for (size_t i = 0; keys && i < a->nkeys; i++) {
    char k[64];
    b64url_encode(a->keys[i].key, CTLMSG_AUTH_KEY_LEN, k, sizeof(k));
    json_array_append_new(keys, json_pack("{s:I,s:s}", "id", (json_int_t)a->keys[i].id, "key", k));
    memset(k, 0, sizeof(k));
  }
  for (int i = 0; hooks && i < AGENTMSG_HOOK_N; i++)
    json_object_set_new(hooks, hook_event_name((hook_event)i), json_string(a->hook_url[i] ? a->hook_url[i] : ""));
  json_object_set_new(hooks, "timeout_ms", json_integer(a->hook_timeout_ms));
  json_object_set_new(hooks, "cache_ms", json_integer(a->hook_cache_ms));
  json_object_set_new(hooks, "fail_open", json_boolean(a->hook_fail_open));
  return json_pack("{s:o,s:o,s:o}", "rules", rules, "keys", keys, "hooks", hooks);
}

static json_t *rules_json(const agentmsg_rules_t *r) {
  json_t *o = json_object();
  if (o == NULL) return o;
  if (r->has_relayapi)
    json_object_set_new(o, "relayapi",
                        json_pack("{s:o,s:o}", "allow", str_list(r->allow, r->nallow), "deny",
                                  str_list(r->deny, r->ndeny)));
  if (r->has_pull) {
    json_t *a = json_array();
    for (size_t i = 0; a && i < r->npull; i++) {
      const agentmsg_pull_rule_t *p = &r->pull[i];
      json_array_append_new(a, json_pack("{s:s,s:s}", "pattern", p->pattern ? p->pattern : "",
                                         "target", p->target ? p->target : ""));
    }
    json_object_set_new(o, "onsub_pull", a);
  }
  if (r->has_autopush) json_object_set_new(o, "autopush", json_boolean(r->autopush));
  if (r->has_streamauth) json_object_set_new(o, "streamauth", streamauth_json(&r->streamauth));
  return o;
}

char *agent_state_encode(const agent_state_t *st) {
  const agentmsg_config_t *cf = st->config;
  json_t *kids, *parent;
  char *out = NULL;

  if (cf == NULL) return NULL;
  kids = json_array();
  parent = json_null();
  for (size_t i = 0; kids && i < cf->nchildren; i++)
    json_array_append_new(kids, json_pack("{s:I,s:s,s:I}", "id", (json_int_t)cf->children[i].id,
                                          "name", cf->children[i].name ? cf->children[i].name : "",
                                          "epoch", (json_int_t)cf->children[i].epoch));
  if (cf->parent_id != 0) {
    json_decref(parent);
    parent = json_pack("{s:I,s:s,s:s,s:I}", "id", (json_int_t)cf->parent_id, "name",
                       cf->parent_name ? cf->parent_name : "", "quic",
                       cf->parent_quic ? cf->parent_quic : "", "epoch",
                       (json_int_t)cf->parent_epoch);
  }
  json_t *d = json_pack("{s:s,s:i,s:{s:I,s:s,s:I},s:s,s:I,s:I,s:o,s:o,s:o}", "format",
                        AGENT_STATE_FORMAT, "version", AGENT_STATE_VERSION, "node", "id",
                        (json_int_t)st->node_id, "name", st->node_name ? st->node_name : "",
                        "epoch", (json_int_t)st->node_epoch, "ca_sha256",
                        st->ca_sha256 ? st->ca_sha256 : "", "saved_at",
                        (json_int_t)st->saved_at, "generation", (json_int_t)cf->generation,
                        "parent", parent, "children", kids, "rules", rules_json(&cf->rules));
  if (d) out = json_dumps(d, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
  json_decref(d);
  return out;
}

/* ---- decode --------------------------------------------------------------- */

typedef struct {
  char *err;
  size_t errlen;
} dec_t;

static int bad(dec_t *d, const char *fmt, const char *what) {
  snprintf(d->err, d->errlen, fmt, what);
  return -1;
}

/* check_str: |v| is a string of at most AGENT_STATE_MAX_STR bytes with no
 * control character (nor NUL); empty allowed when |empty_ok|. */
static int check_str(dec_t *d, json_t *v, const char *key, int empty_ok, const char **out) {
  if (!json_is_string(v)) return bad(d, "'%s': expected a string", key);
  size_t n = json_string_length(v);
  const char *s = json_string_value(v);
  if (n > AGENT_STATE_MAX_STR || strlen(s) != n) return bad(d, "'%s': too long or holds NUL", key);
  if (n == 0 && !empty_ok) return bad(d, "'%s': empty", key);
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return bad(d, "'%s': control character", key);
  *out = s;
  return 0;
}

static int get_str(dec_t *d, json_t *o, const char *key, int empty_ok, const char **out) {
  return check_str(d, json_object_get(o, key), key, empty_ok, out);
}

static int get_int(dec_t *d, json_t *o, const char *key, json_int_t min, json_int_t *out) {
  json_t *v = json_object_get(o, key);
  if (!json_is_integer(v) || json_integer_value(v) < min)
    return bad(d, "'%s': expected an integer in range", key);
  *out = json_integer_value(v);
  return 0;
}

/* get_strs: |key| of |o| is a list of at most AGENT_STATE_MAX_RULES
 * non-empty strings; the pointers borrow from the JSON document. */
static int get_strs(dec_t *d, json_t *o, const char *key, char ***out, size_t *n) {
  json_t *a = json_object_get(o, key);
  if (!json_is_array(a) || json_array_size(a) > AGENT_STATE_MAX_RULES)
    return bad(d, "'%s': expected a list of strings", key);
  *n = json_array_size(a);
  if (*n && (*out = calloc(*n, sizeof(char *))) == NULL) return bad(d, "%s: out of memory", key);
  for (size_t i = 0; i < *n; i++) {
    const char *s = NULL;
    if (check_str(d, json_array_get(a, i), key, 0, &s) != 0) return -1;
    (*out)[i] = (char *)s;
  }
  return 0;
}

/* The configuration is built over borrowed strings (the JSON document's),
 * then copied, so the caller gets one that it owns and frees. */
typedef struct {
  agentmsg_config_t cf;          /* the arrays are this build's, the strings borrowed */
} build_t;

static void build_free(build_t *b) {
  free(b->cf.rules.streamauth.rules);
  memset(b->cf.rules.streamauth.keys, 0, sizeof(b->cf.rules.streamauth.keys));
  free(b->cf.children);
  free(b->cf.rules.allow);
  free(b->cf.rules.deny);
  free(b->cf.rules.pull);
}

static int get_mode(dec_t *d, json_t *o, const char *key, int *out) {
  const char *s;
  if (get_str(d, o, key, 0, &s) != 0) return -1;
  for (int i = 0; i < 3; i++)
    if (strcmp(s, auth_modes[i]) == 0) {
      *out = i;
      return 0;
    }
  return bad(d, "'%s': expected none, token or hook", key);
}

static int decode_streamauth(dec_t *d, json_t *v, agentmsg_streamauth_t *a) {
  json_t *rules = json_object_get(v, "rules"), *keys = json_object_get(v, "keys"),
         *hooks = json_object_get(v, "hooks");
  size_t n = json_array_size(rules);
  if (!json_is_array(rules) || n > CTLMSG_AUTH_RULES_MAX)
    return bad(d, "'%s': expected a list of at most 64 rules", "streamauth.rules");
  if (n && (a->rules = calloc(n, sizeof(*a->rules))) == NULL)
    return bad(d, "%s: out of memory", "streamauth");
  for (size_t i = 0; i < n; i++) {
    json_t *e = json_array_get(rules, i);
    const char *pat;
    if (!json_is_object(e)) return bad(d, "'%s': expected a list of rules", "streamauth.rules");
    if (get_str(d, e, "pattern", 0, &pat) != 0 || get_mode(d, e, "publish", &a->rules[i].publish) ||
        get_mode(d, e, "play", &a->rules[i].play))
      return -1;
    a->rules[i].pattern = (char *)pat;
  }
  a->nrules = n;
  n = json_array_size(keys);
  if (!json_is_array(keys) || n > CTLMSG_AUTH_KEYS_MAX)
    return bad(d, "'%s': expected a list of at most 2 keys", "streamauth.keys");
  for (size_t i = 0; i < n; i++) {
    json_t *e = json_array_get(keys, i);
    json_int_t id;
    const char *k;
    if (!json_is_object(e) || get_int(d, e, "id", 0, &id) != 0 || id > UINT32_MAX ||
        get_str(d, e, "key", 0, &k) != 0 ||
        b64url_decode(k, strlen(k), a->keys[i].key, CTLMSG_AUTH_KEY_LEN) != CTLMSG_AUTH_KEY_LEN)
      return bad(d, "'%s': bad key", "streamauth.keys");
    a->keys[i].id = (uint32_t)id;
    a->nkeys++;
  }
  if (!json_is_object(hooks)) return bad(d, "'%s': expected an object", "streamauth.hooks");
  for (int i = 0; i < AGENTMSG_HOOK_N; i++) {
    const char *u;
    if (get_str(d, hooks, hook_event_name((hook_event)i), 1, &u) != 0) return -1;
    if (u[0] && strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0)
      return bad(d, "'%s': not an http:// or https:// URL", hook_event_name((hook_event)i));
    a->hook_url[i] = (char *)u;
  }
  json_int_t t, c;
  json_t *fo = json_object_get(hooks, "fail_open");
  if (get_int(d, hooks, "timeout_ms", 0, &t) != 0 || t > CTLMSG_HOOK_TIMEOUT_MAX ||
      get_int(d, hooks, "cache_ms", 0, &c) != 0 || c > CTLMSG_HOOK_CACHE_MAX || !json_is_boolean(fo))
    return bad(d, "'%s': bad timing or fail_open", "streamauth.hooks");
  a->hook_timeout_ms = (uint32_t)t;
  a->hook_cache_ms = (uint32_t)c;
  a->hook_fail_open = json_is_true(fo);
  return 0;
}

static int decode_rules(dec_t *d, json_t *r, build_t *b) {
  agentmsg_rules_t *ru = &b->cf.rules;
  json_t *v;
  if (!json_is_object(r)) return bad(d, "'%s': expected an object", "rules");
  if ((v = json_object_get(r, "relayapi")) != NULL) {
    if (!json_is_object(v)) return bad(d, "'%s': expected an object", "relayapi");
    ru->has_relayapi = 1;
    if (get_strs(d, v, "allow", &ru->allow, &ru->nallow) != 0 ||
        get_strs(d, v, "deny", &ru->deny, &ru->ndeny) != 0)
      return -1;
  }
  if ((v = json_object_get(r, "onsub_pull")) != NULL) {
    size_t n = json_array_size(v);
    if (!json_is_array(v) || n > AGENT_STATE_MAX_RULES)
      return bad(d, "'%s': expected a list of rules", "onsub_pull");
    ru->has_pull = 1;
    if (n && (ru->pull = calloc(n, sizeof(*ru->pull))) == NULL)
      return bad(d, "%s: out of memory", "onsub_pull");
    for (size_t i = 0; i < n; i++) {
      json_t *e = json_array_get(v, i);
      const char *pat, *tgt;
      if (!json_is_object(e)) return bad(d, "'%s': expected a list of rules", "onsub_pull");
      if (get_str(d, e, "pattern", 0, &pat) != 0 || get_str(d, e, "target", 0, &tgt) != 0)
        return -1;
      ru->pull[i].pattern = (char *)pat;
      ru->pull[i].target = (char *)tgt;
    }
    ru->npull = n;
  }
  if ((v = json_object_get(r, "autopush")) != NULL) {
    if (!json_is_boolean(v)) return bad(d, "'%s': expected true or false", "autopush");
    ru->has_autopush = 1;
    ru->autopush = json_is_true(v);
  }
  if ((v = json_object_get(r, "streamauth")) != NULL) {
    if (!json_is_object(v)) return bad(d, "'%s': expected an object", "streamauth");
    ru->has_streamauth = 1;
    if (decode_streamauth(d, v, &ru->streamauth) != 0) return -1;
  }
  return 0;
}

static int decode_topology(dec_t *d, json_t *root, build_t *b) {
  json_t *p = json_object_get(root, "parent"), *k = json_object_get(root, "children");
  agentmsg_config_t *cf = &b->cf;
  json_int_t id, ep;
  const char *s;

  if (p == NULL || (!json_is_null(p) && !json_is_object(p)))
    return bad(d, "'%s': expected an object or null", "parent");
  if (json_is_object(p)) {
    if (get_int(d, p, "id", 1, &id) != 0 || get_int(d, p, "epoch", 0, &ep) != 0) return -1;
    cf->parent_id = id;
    cf->parent_epoch = ep;
    if (get_str(d, p, "name", 0, &s) != 0) return -1;
    cf->parent_name = (char *)s;
    if (get_str(d, p, "quic", 1, &s) != 0) return -1;
    cf->parent_quic = (char *)s;
  }
  size_t n = json_array_size(k);
  if (!json_is_array(k) || n > AGENT_STATE_MAX_CHILDREN)
    return bad(d, "'%s': expected a list of at most 10000 nodes", "children");
  if (n && (cf->children = calloc(n, sizeof(*cf->children))) == NULL)
    return bad(d, "%s: out of memory", "children");
  for (size_t i = 0; i < n; i++) {
    json_t *e = json_array_get(k, i);
    if (!json_is_object(e)) return bad(d, "'%s': expected a list of nodes", "children");
    if (get_int(d, e, "id", 1, &id) != 0 || get_int(d, e, "epoch", 0, &ep) != 0 ||
        get_str(d, e, "name", 0, &s) != 0)
      return -1;
    if (id == cf->parent_id) return bad(d, "'%s': a child is also the parent", "children");
    for (size_t j = 0; j < i; j++)
      if (cf->children[j].id == id) return bad(d, "'%s': a node twice", "children");
    cf->children[i].id = id;
    cf->children[i].epoch = ep;
    cf->children[i].name = (char *)s;
  }
  cf->nchildren = n;
  return 0;
}

int agent_state_decode(const char *buf, size_t len, agent_state_t *out, char *err,
                       size_t errlen) {
  dec_t d = {err, errlen};
  json_error_t je;
  build_t b;
  json_t *root, *node;
  json_int_t v, id, ep, gen, at;
  const char *s, *name, *fp;
  int rv = -1;

  memset(out, 0, sizeof(*out));
  memset(&b, 0, sizeof(b));
  if (len > AGENT_STATE_MAX_BYTES) {
    snprintf(err, errlen, "larger than %u bytes", AGENT_STATE_MAX_BYTES);
    return -1;
  }
  /* Depth is bounded by jansson (2048); duplicate keys are refused. */
  root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
  if (root == NULL) {
    snprintf(err, errlen, "not JSON (line %d: %s)", je.line, je.text);
    return -1;
  }
  if (!json_is_object(root)) {
    bad(&d, "%s", "not a JSON object");
    goto out;
  }
  if (get_str(&d, root, "format", 0, &s) != 0) goto out;
  if (strcmp(s, AGENT_STATE_FORMAT) != 0) {
    bad(&d, "'format': not %s", AGENT_STATE_FORMAT);
    goto out;
  }
  if (get_int(&d, root, "version", 0, &v) != 0) goto out;
  if (v != AGENT_STATE_VERSION) {
    snprintf(err, errlen, "format version %lld, this agent reads %d", (long long)v,
             AGENT_STATE_VERSION);
    goto out;
  }
  node = json_object_get(root, "node");
  if (!json_is_object(node)) {
    bad(&d, "'%s': expected an object", "node");
    goto out;
  }
  if (get_int(&d, node, "id", 1, &id) != 0 || get_str(&d, node, "name", 0, &name) != 0 ||
      get_int(&d, node, "epoch", 0, &ep) != 0 || get_str(&d, root, "ca_sha256", 0, &fp) != 0 ||
      get_int(&d, root, "saved_at", 0, &at) != 0 || get_int(&d, root, "generation", 1, &gen) != 0)
    goto out;
  b.cf.generation = (uint64_t)gen;
  if (decode_topology(&d, root, &b) != 0) goto out;
  if (b.cf.parent_id == id) {
    bad(&d, "'%s': the node is its own parent", "parent");
    goto out;
  }
  for (size_t i = 0; i < b.cf.nchildren; i++) {
    if (b.cf.children[i].id == id) {
      bad(&d, "'%s': the node is its own child", "children");
      goto out;
    }
  }
  if (decode_rules(&d, json_object_get(root, "rules"), &b) != 0) goto out;

  if ((out->config = malloc(sizeof(*out->config))) != NULL &&
      agentmsg_config_copy(&b.cf, out->config) != 0) {
    free(out->config);
    out->config = NULL;
  }
  out->node_name = strdup(name);
  out->ca_sha256 = strdup(fp);
  if (out->config == NULL || out->node_name == NULL || out->ca_sha256 == NULL) {
    agent_state_free(out);
    bad(&d, "%s", "out of memory");
    goto out;
  }
  out->node_id = id;
  out->node_epoch = ep;
  out->saved_at = at;
  rv = 0;
out:
  build_free(&b);
  json_decref(root);
  return rv;
}

int agent_state_check(const agent_state_t *st, const char *name, const char *ca_pem, char *err,
                      size_t errlen) {
  if (strcmp(st->node_name, name) != 0) {
    snprintf(err, errlen, "it belongs to node '%.64s', not to '%.64s'", st->node_name, name);
    return -1;
  }
  if (ca_pem == NULL) {
    snprintf(err, errlen, "no node CA (node-ca.crt) to check it against");
    return -1;
  }
  int m = x509_fingerprint_matches(ca_pem, st->ca_sha256);
  if (m != 0) {
    snprintf(err, errlen, "%s", m < 0 ? "its CA fingerprint is unreadable"
                                      : "it was written under another CA than node-ca.crt");
    return -1;
  }
  return 0;
}

void agent_state_free(agent_state_t *st) {
  if (st == NULL) return;
  free(st->node_name);
  free(st->ca_sha256);
  agentmsg_config_free(st->config);
  free(st->config);
  memset(st, 0, sizeof(*st));
}

/* ---- files ---------------------------------------------------------------- */

int agent_state_load(const char *dir, agent_state_t *out, char *err, size_t errlen) {
  char *path = NULL, *buf = NULL;
  struct stat sb;
  size_t off = 0;
  int fd = -1, rv = -1;

  memset(out, 0, sizeof(*out));
  if (asprintf(&path, "%s/%s", dir, AGENT_STATE_FILE) < 0) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
    rv = errno == ENOENT ? 1 : -1;
    if (rv < 0) snprintf(err, errlen, "%s", strerror(errno));
    goto out;
  }
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    snprintf(err, errlen, "not a regular file");
    goto out;
  }
  if (sb.st_size > (off_t)AGENT_STATE_MAX_BYTES) {
    snprintf(err, errlen, "larger than %u bytes", AGENT_STATE_MAX_BYTES);
    goto out;
  }
  if ((buf = malloc((size_t)sb.st_size + 1)) == NULL) {
    snprintf(err, errlen, "out of memory");
    goto out;
  }
  while (off < (size_t)sb.st_size) {
    ssize_t n = read(fd, buf + off, (size_t)sb.st_size - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      snprintf(err, errlen, "%s", strerror(errno));
      goto out;
    }
    if (n == 0) break;
    off += (size_t)n;
  }
  rv = agent_state_decode(buf, off, out, err, errlen);
out:
  if (fd >= 0) close(fd);
  free(buf);
  free(path);
  return rv;
}

int agent_state_save(const char *dir, const agent_state_t *st) {
  char *text = agent_state_encode(st), *dst = NULL, *tmp = NULL;
  size_t len, off = 0;
  int fd = -1, rv = -1, e = ENOMEM;

  if (text == NULL) goto out;
  len = strlen(text);
  if (asprintf(&dst, "%s/%s", dir, AGENT_STATE_FILE) < 0) {
    dst = NULL;
    goto out;
  }
  if (asprintf(&tmp, "%s.tmp.XXXXXX", dst) < 0) {
    tmp = NULL;
    goto out;
  }
  if ((fd = mkstemp(tmp)) < 0) {
    e = errno;
    goto out;
  }
  while (off < len) {
    ssize_t n = write(fd, text + off, len - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      e = n < 0 ? errno : EIO;
      goto out_unlink;
    }
    off += (size_t)n;
  }
  if (fchmod(fd, 0600) != 0 || fsync(fd) != 0) {
    e = errno;
    goto out_unlink;
  }
  if (close(fd) != 0) {
    fd = -1;
    e = errno;
    goto out_unlink;
  }
  fd = -1;
  if (rename(tmp, dst) != 0) {
    e = errno;
    goto out_unlink;
  }
  /* The rename itself is durable once the directory is. */
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  rv = 0;
  goto out;
out_unlink:
  unlink(tmp);
out:
  if (fd >= 0) close(fd);
  free(text);
  free(tmp);
  free(dst);
  if (rv != 0) errno = e;
  return rv;
}
