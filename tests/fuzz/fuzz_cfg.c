/* Fuzz target for the YAML config loader (common/cfg.c): every input is
 * loaded over defaults with a table holding each type, an alias and a
 * nested section, then freed; the sanitizers catch what goes wrong. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cfg.h"

typedef struct {
  char *name;
  int debug;
  long long port;
  int level;
  char *cert;
  char *token;
  cfg_strlist_t paths;
  cfg_strmap_t headers;
  cfg_strlist_t urls;
} fuzz_cfg_t;

static const char *const levels[] = {"debug", "info", "warn", "error", NULL};

#define OFF(f) offsetof(fuzz_cfg_t, f)
static const char *const schemes[] = {"tls+tcp://", "tcp://", NULL};

static const cfg_key_t table[] = {
    {"name", CFG_STR, OFF(name), "edge", 1, 16, NULL, 0, "node name"},
    {"debug", CFG_BOOL, OFF(debug), "false", 0, 0, NULL, 0, "debug mode"},
    {"http.port", CFG_INT, OFF(port), "8443", 1, 65535, NULL, 0, "listen port"},
    {"http.tls.cert", CFG_STR, OFF(cert), NULL, 0, 0, NULL, 0, "certificate"},
    {"http.paths", CFG_STRLIST, OFF(paths), "[\"/api/\"]", 1, 64, NULL, 0, "paths"},
    {"http.headers", CFG_STRMAP, OFF(headers), NULL, 0, 0, NULL, 0, "headers"},
    {"ctl.url", CFG_STRLIST, OFF(urls), "[\"tcp://a:1\"]", 1, 64, schemes, CFG_LIST_SCALAR,
     "urls"},
    {"log.level", CFG_ENUM, OFF(level), "info", 0, 0, levels, 0, "log level"},
    {"token", CFG_STR, OFF(token), NULL, 0, 0, NULL, CFG_SECRET, "token"},
    {"seed_token", CFG_STR, OFF(token), NULL, 0, 0, NULL, CFG_SECRET, "alias"},
    {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_cfg_t c;
  char err[256];
  memset(&c, 0, sizeof(c));
  if (cfg_defaults(table, &c) < 0) __builtin_trap();
  if (cfg_load_buf(table, &c, "fuzz.yaml", (const char *)data, size, err, sizeof(err)) < 0 &&
      (err[0] == '\0' || memchr(err, '\0', sizeof(err)) == NULL))
    __builtin_trap(); /* a failure must say why */
  cfg_free(table, &c);
  return 0;
}
