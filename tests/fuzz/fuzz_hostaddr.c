/* Fuzz target for the peer address syntax (common/hostaddr.c) and the
 * environment form of configuration keys (cfg_load_env in common/cfg.c):
 * the input is an address, then, after the first newline, the value of
 * each variable of a table holding every type. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "hostaddr.h"

typedef struct {
  char *name;
  int debug;
  long long port;
  int level;
  char *addr;
  cfg_strlist_t paths;
  cfg_strmap_t headers;
  long long wait;
} fuzz_env_t;

static const char *const levels[] = {"debug", "info", NULL};

#define OFF(f) offsetof(fuzz_env_t, f)
static const cfg_key_t table[] = {
    {"name", CFG_STR, OFF(name), "edge", 1, 16, NULL, 0, "name"},
    {"debug", CFG_BOOL, OFF(debug), "false", 0, 0, NULL, 0, "debug"},
    {"http.port", CFG_INT, OFF(port), "8443", 1, 65535, NULL, 0, "port"},
    {"log.level", CFG_ENUM, OFF(level), "info", 0, 0, levels, 0, "level"},
    {"node.advertise", CFG_STR, OFF(addr), NULL, 0, 256, NULL, CFG_EMPTY_OK | CFG_HOSTPORT, "a"},
    {"http.paths", CFG_STRLIST, OFF(paths), "[\"/api/\"]", 1, 64, NULL, 0, "paths"},
    {"http.headers", CFG_STRMAP, OFF(headers), NULL, 0, 0, NULL, 0, "headers"},
    {"wait", CFG_DURATION, OFF(wait), "1s", 0, 60000, NULL, 0, "wait"},
    {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL},
};
static const char *const vars[] = {"F_NAME=",       "F_DEBUG=",     "F_HTTP_PORT=",
                                   "F_LOG_LEVEL=",  "F_NODE_ADVERTISE=", "F_HTTP_PATHS=",
                                   "F_HTTP_HEADERS=", "F_WAIT="};
static const cfg_env_t env = {"F_", NULL};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *s = malloc(size + 1), host[HOSTADDR_HOST_MAX + 1], port[8], why[200], err[512];
  if (s == NULL) return 0;
  memcpy(s, data, size);
  s[size] = '\0';
  char *nl = strchr(s, '\n');
  if (nl) *nl = '\0';
  if (hostaddr_split(s, host, sizeof(host), port, sizeof(port), why, sizeof(why)) == 0 &&
      (strlen(host) >= sizeof(host) || strlen(port) >= sizeof(port)))
    __builtin_trap();
  (void)hostaddr_check(s, why, sizeof(why));
  (void)hostaddr_is_name(s);
  /* The rest: one value for every variable in turn. */
  const char *val = nl ? nl + 1 : s;
  for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
    size_t vl = strlen(vars[i]), n = strlen(val);
    char *e = malloc(vl + n + 1);
    if (e == NULL) break;
    memcpy(e, vars[i], vl);
    memcpy(e + vl, val, n + 1);
    char *envp[] = {e, NULL};
    fuzz_env_t c;
    memset(&c, 0, sizeof(c));
    if (cfg_defaults(table, &c) < 0) __builtin_trap();
    if (cfg_load_env(table, &c, &env, envp, err, sizeof(err)) < 0 && err[0] == '\0')
      __builtin_trap(); /* a failure must say why */
    cfg_free(table, &c);
    free(e);
  }
  free(s);
  return 0;
}
