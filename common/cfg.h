/* Configuration as a table (name, type, default, bounds, doc), loaded from
 * YAML with libyaml. Validation and docs/configuration.md come from one place. */
#ifndef CASCADE_CFG_H
#define CASCADE_CFG_H

#include <stddef.h>
#include <stdio.h>

typedef enum {
  CFG_STR,      /* char *, heap; default "" when defval is NULL */
  CFG_BOOL,     /* int 0/1; YAML true/false (also yes/no, on/off) */
  CFG_INT,      /* long long within [min, max] */
  CFG_ENUM,     /* int index into choices; YAML scalar naming one choice */
  CFG_STRLIST,  /* cfg_strlist_t; YAML sequence of scalars (or [] / null) */
  CFG_STRMAP,   /* cfg_strmap_t; YAML mapping scalar -> scalar, order kept */
  CFG_DURATION  /* long long milliseconds; YAML "500ms", "10s", "5m", "1h" (Go-style
                   units, one of them); bounds min/max in milliseconds */
} cfg_type_t;

/* CFG_REQUIRED: must be present in the file or set from the environment.
 * cfg_load_* do not enforce it (overrides come later): the caller checks
 * after applying them. */
#define CFG_REQUIRED 0x1
#define CFG_SECRET   0x2   /* never printed */
#define CFG_EMPTY_OK 0x4   /* CFG_STR: "" means unset; min applies to other values */
#define CFG_RELPATH_RULE 0x8 /* CFG_STRLIST: each entry an API relay prefix rule
                                (relpath_rule_check) */
#define CFG_HOSTPORT 0x20   /* CFG_STR: when not empty, an address others dial:
                               host:port with an IP literal or a DNS name
                               (hostaddr_check) */
#define CFG_LIST_SCALAR 0x10 /* CFG_STRLIST: a scalar is a list too, split at
                                commas (blanks around items dropped), so one
                                environment variable can carry several values */

typedef struct {
  char **v;
  size_t n;
} cfg_strlist_t;

typedef struct {
  char **keys;
  char **vals;
  size_t n;
} cfg_strmap_t;

typedef struct cfg_key {
  const char *name;           /* dotted path, e.g. "http.listenaddr" */
  cfg_type_t type;
  size_t offset;              /* of the field in the destination struct */
  const char *defval;         /* default as YAML scalar text; NULL = empty */
  long long min, max;         /* CFG_INT bounds; CFG_STR/STRLIST/STRMAP: max
                                 string length (max 0 = 4096), min = min length */
  const char *const *choices; /* CFG_ENUM: NULL-terminated; CFG_STRLIST: NULL or
                                 the prefixes one of which every item must
                                 start with (e.g. URL schemes) */
  int flags;
  const char *doc;            /* one line for docs/configuration.md */
} cfg_key_t;
/* A table ends with an entry whose name is NULL. Two entries may share an
 * offset (an alias, e.g. a seed key kept beside ours): they must have the
 * same type, the first one's default counts, and a file may set only one.
 *
 * In the file, a YAML null (~, null, or no value) is "" for CFG_STR, empty
 * for CFG_STRLIST/CFG_STRMAP and for a section, and an error for the other
 * types. Strings must hold no control characters; list items and map keys
 * and values obey the same length bounds as CFG_STR. Lists and maps hold at
 * most 1024 entries. Anchors, aliases, several documents and nesting deeper
 * than 16 are refused. */

/* cfg_defaults fills |dst| with the defaults of |table|, overwriting the
 * fields without freeing them (so |dst| must hold no heap values yet).
 * Defaults are parsed like the file, except that a CFG_STR default is
 * literal text and a NULL CFG_BOOL/INT/ENUM default is 0; CFG_STRLIST and
 * CFG_STRMAP defaults are flow YAML (["/api/"], {a: b}). Returns 0 or -1 (out
 * of memory, or a default outside its own bounds: a programming error), in
 * which case |dst| is left zeroed. */
int cfg_defaults(const cfg_key_t *table, void *dst);

/* cfg_load_file parses the YAML file |path| over the defaults already in |dst|.
 * On error returns -1, leaves |dst| holding valid (default or partly loaded)
 * values to be freed with cfg_free, and writes
 * "FILE:LINE:COL: key 'x.y': message" (or "FILE:LINE:COL: message" for a
 * YAML syntax error, "FILE: message" when the file cannot be read) to |err|.
 * LINE and COL are 1-based and point at the value for a bad value, at the
 * key for an unknown or duplicate key. Keys marked CFG_REQUIRED that the
 * file lacks are no error here. */
int cfg_load_file(const cfg_key_t *table, void *dst, const char *path,
                  char *err, size_t errlen);

/* cfg_load_buf is cfg_load_file on |len| bytes in memory; |name| stands for
 * the file name in errors. Input larger than 1 MiB is refused. */
int cfg_load_buf(const cfg_key_t *table, void *dst, const char *name,
                 const char *buf, size_t len, char *err, size_t errlen);

/* cfg_set_str replaces a CFG_STR value (for environment overrides). */
int cfg_set_str(char **field, const char *value);

/* cfg_free frees every heap value of |table| in |dst| and zeroes them. */
void cfg_free(const cfg_key_t *table, void *dst);

/* The environment a program reads its keys from (docs/configuration.md,
 * "Environment"): key "a.b" is variable PREFIX "A_B" ('.' becomes '_',
 * letters upper case). Every variable that starts with the prefix must name
 * a key. |aliases| are older variable names kept for some keys. */
typedef struct cfg_env_alias {
  const char *var;
  const char *key;
} cfg_env_alias_t;

typedef struct cfg_env {
  const char *prefix;              /* e.g. "CASCADE_AGENT_" */
  const cfg_env_alias_t *aliases;  /* ends with var NULL; or NULL */
} cfg_env_t;

/* cfg_env_name writes key |key|'s variable under |prefix| to |out|.
 * Returns 0 or -1 when it does not fit. */
int cfg_env_name(const char *prefix, const char *key, char *out, size_t outlen);

/* cfg_load_env applies the variables of |envp| (NULL-terminated "NAME=VALUE"
 * strings, e.g. environ) over what |dst| holds: the environment wins over
 * the file. An empty value counts as unset. Scalars are literal text
 * (checked like the file's); a list is comma-separated items or a YAML flow
 * sequence ("[a, b]"); a map is a YAML flow mapping ("{k: v}"). Variables
 * outside |env|'s prefix and aliases are ignored. On error returns -1,
 * leaves |dst| freeable, and writes "VARIABLE: key 'x.y': message" (or
 * "VARIABLE: message" for an unknown variable) to |err|; no value is ever
 * quoted for a secret key. */
int cfg_load_env(const cfg_key_t *table, void *dst, const cfg_env_t *env, char *const *envp,
                 char *err, size_t errlen);

/* cfg_env_used writes the names (never values) of the variables of |envp|
 * that cfg_load_env applies, comma-separated, to |out|; returns how many. */
size_t cfg_env_used(const cfg_key_t *table, const cfg_env_t *env, char *const *envp, char *out,
                    size_t outlen);

/* cfg_print_markdown writes the table as a Markdown table (key, with |env|
 * its environment variable, type, default, bounds, description) for
 * docs/configuration.md. */
void cfg_print_markdown(const cfg_key_t *table, const cfg_env_t *env, FILE *out);

#endif
