/* cascade-agent configuration: the key table and its loading. See
 * docs/configuration.md (cascade-agent --print-config-doc). */
#ifndef CASCADE_AGENT_CONFIG_H
#define CASCADE_AGENT_CONFIG_H

#include <stddef.h>

#include "cfg.h"

#define AGENT_CTL_URLS_MAX 16

typedef struct agent_config {
  char *node_name;
  char *advertise;        /* node.advertise: what children dial; "" = quic_listenaddr */
  char *node_secret;      /* also cascadeclient.secret; CASCADE_NODE_SECRET wins */
  char *jointoken;        /* CASCADE_JOIN_TOKEN wins */
  char *datadir;
  cfg_strlist_t ctl_urls;  /* controller.url: 1..AGENT_CTL_URLS_MAX, tried in turn */
  char *ctl_ca;
  char *ctl_pin;
  char *ctl_servername;
  long long backoffmax_ms;
  char *http_listenaddr;   /* public: HTTP-FLV and /healthz */
  char *http_adminaddr;    /* the local API; "" = none */
  char *quic_listenaddr;
  int client_enable;
  char *client_server;
  int autopush;
  int seed_autoregister;  /* cascadeserver.autoregister: read, not used (the controller's) */
  cfg_strlist_t relay_allow;
  cfg_strlist_t relay_deny;
  cfg_strmap_t onsub_pull;
  int log_level;
  int log_format;              /* LOG_FORMAT_TEXT or LOG_FORMAT_JSON */
  long long shutdown_ms;       /* SIGTERM: the longest a drain takes */
  long long health_stall_ms;   /* /healthz fails after a loop turn this long */
  /* media (docs/media.md) */
  int auth_publish;            /* auth.publish: EDGEAUTH_LOCAL_CONTROLLER or _NONE */
  int auth_play;
  char *rtmp_listenaddr;
  long long rtmp_maxconns;
  long long rtmp_chunksize;
  long long rtmp_maxpending;
  long long rtmp_ingestbudget;
  long long http_maxconns;
  long long publish_delayclose_ms;
  long long publish_maxstreams;
  long long subscribe_wait_ms;
  long long subscribe_maxplayers;
  long long subscribe_maxbandwidth_kbps; /* 0: no limit */
  long long subscribe_queuebytes;
  long long subscribe_queuetime_ms;
  long long subscribe_slow_ms;
  long long subscribe_merge_ms;
  /* QUIC links (docs/protocol.md, "Links") */
  long long reconnectmax_ms;
  long long pull_linger_ms;
  int quic_cc;                 /* index into auto, bbr, bbr2, cubic, reno */
  long long quic_lanrtt_ms;
  long long quic_maxudppayload; /* 0: automatic */
  long long quic_probe_ms;
  long long maxchildren;
  long long quic_idle_ms;
  long long quic_keepalive_ms;
  long long quic_handshake_ms;
  long long quic_maxdata;
  long long quic_maxstreamdata;
  long long quic_maxstreamwindow; /* auto-tuning limits, bytes */
  long long quic_maxwindow;
  long long quic_maxstreams;
  long long quic_sndbuf;
  long long quic_maxsndbuf;
} agent_config_t;

/* agent_config_table is the table of every agent key. */
extern const cfg_key_t agent_config_table[];

/* Every key also comes from the environment: CASCADE_AGENT_ and the key in
 * upper case with '_' for '.' (docs/configuration.md, "Environment"). */
#define AGENT_ENV_PREFIX "CASCADE_AGENT_"
extern const cfg_env_t agent_config_env;

/* agent_config_load fills |c| from defaults, the file |path| and the
 * environment (agent_config_env), then checks what the table cannot:
 * the secret's presence and length, the controller URL's scheme and trust
 * anchor, and that every onsub.pull pattern compiles with pcre2. On error
 * writes "FILE[:LINE:COL]: key 'x.y': message" to |err|, frees |c| and
 * returns -1. */
int agent_config_load(agent_config_t *c, const char *path, char *err, size_t errlen);

/* agent_config_load_buf is agent_config_load on YAML text in memory (tests);
 * |name| stands for the file name in errors. */
int agent_config_load_buf(agent_config_t *c, const char *name, const char *buf, size_t len,
                          char *err, size_t errlen);

/* agent_config_load_env is agent_config_load_buf with the environment
 * |envp| (NULL-terminated "NAME=VALUE" strings) instead of the process's. */
int agent_config_load_env(agent_config_t *c, const char *name, const char *buf, size_t len,
                          char *const *envp, char *err, size_t errlen);

/* agent_config_free frees |c|'s values; accepts a zeroed struct. */
void agent_config_free(agent_config_t *c);

#endif
