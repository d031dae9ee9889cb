/* cascade-controller configuration: the key table and its loading. */
#ifndef CASCADE_CTL_CONFIG_H
#define CASCADE_CTL_CONFIG_H

#include "cfg.h"

typedef struct ctl_config {
  char *http_listenaddr;
  char *http_tls_cert;
  char *http_tls_key;
  long long http_threads;
  long long http_maxconns;
  long long http_maxconnperaddr;
  long long http_headertimeout_ms;
  char *http_replicaaddr;
  cfg_strlist_t http_cors_origins;
  long long feed_maxclients;
  long long feed_maxpertoken;
  long long feed_buffer;
  long long feed_retention_ms;
  long long feed_maxrows;
  char *db_dsn;
  long long db_poolsize;
  long long db_timeout_ms;
  char *admintoken;
  int autoregister;
  char *jointoken;
  long long maxpending;
  long long register_rate;
  long long register_rate_addr;
  cfg_strlist_t relay_allow;
  cfg_strlist_t relay_deny;
  long long relay_timeout_ms;
  long long relay_max;
  int log_level;
  int log_format;              /* LOG_FORMAT_TEXT or LOG_FORMAT_JSON */
  char *control_listenaddr;
  char *control_tls_cert;
  char *control_tls_key;
  char *control_tls_ca;
  char *control_datadir;
  long long control_handshake_ms;
  long long control_auth_ms;
  long long control_maxconnperaddr;
  long long control_maxconns;
  long long control_workers;
  long long control_heartbeat_ms;
  long long control_polltimeout_ms;
  long long control_certlifetime_s;
  long long control_sessionlease_ms;
} ctl_config_t;

/* ctl_config_table is the table of every controller key. */
extern const cfg_key_t ctl_config_table[];

/* Every key also comes from the environment: CASCADE_CONTROLLER_ and the
 * key in upper case with '_' for '.' (docs/configuration.md, "Environment"). */
#define CTL_ENV_PREFIX "CASCADE_CONTROLLER_"
extern const cfg_env_t ctl_config_env;

/* ctl_config_load fills |c| from defaults, the file |path| and the
 * environment (ctl_config_env), then checks required
 * keys. On error writes "FILE:LINE:COL: key ...: message" to |err| and
 * returns -1; |c| is then freed. */
int ctl_config_load(ctl_config_t *c, const char *path, char *err, size_t errlen);

/* ctl_config_load_env is ctl_config_load with the environment |envp|
 * (NULL-terminated "NAME=VALUE" strings) instead of the process's. */
int ctl_config_load_env(ctl_config_t *c, const char *path, char *const *envp, char *err,
                        size_t errlen);

/* ctl_config_free frees |c|'s values. */
void ctl_config_free(ctl_config_t *c);

#endif
