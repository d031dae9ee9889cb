/* cascade-agent: a media node's control link and local API. See
 * docs/architecture.md and docs/protocol.md. */
#include <errno.h>
#include <gnutls/gnutls.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "agent_config.h"
#include "ctlc.h"
#include "ctltls.h"
#include "log.h"
#include "net.h"

extern char **environ;

#ifndef CASCADE_VERSION
#define CASCADE_VERSION "0"
#endif

#define EXIT_CONFIG 2
#define SIMULATE_MAX 100000

static void usage(FILE *out) {
  fprintf(out,
          "usage: cascade-agent -c FILE [--check] [--simulate N]\n"
          "       cascade-agent --print-config-doc | --version\n"
          "  -c FILE             configuration file (YAML)\n"
          "  --check             validate the configuration and exit\n"
          "  --simulate N        run N control clients named <node.name>-<i> (benchmark)\n"
          "  --print-config-doc  print the configuration reference (Markdown)\n");
}

/* mkdir_p creates |dir| and its parents with mode 0700. */
static int mkdir_p(const char *dir) {
  char buf[4096];
  size_t n = strlen(dir);
  if (n == 0 || n >= sizeof(buf)) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memcpy(buf, dir, n + 1);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(buf, 0700) != 0 && errno != EEXIST) return -1;
    *p = '/';
  }
  if (mkdir(buf, 0700) != 0 && errno != EEXIST) return -1;
  return 0;
}

int main(int argc, char **argv) {
  const char *path = NULL;
  int check = 0, rc = 1;
  long nsim = 0;
  char err[1024];
  agent_config_t cfg;
  agent_t agent;
  struct ev_loop *loop;

  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
      path = argv[++i];
    } else if (strcmp(argv[i], "--check") == 0) {
      check = 1;
    } else if (strcmp(argv[i], "--simulate") == 0 && i + 1 < argc) {
      char *end;
      nsim = strtol(argv[++i], &end, 10);
      if (*end || nsim < 1 || nsim > SIMULATE_MAX) {
        fprintf(stderr, "cascade-agent: --simulate takes 1..%d\n", SIMULATE_MAX);
        return EXIT_CONFIG;
      }
    } else if (strcmp(argv[i], "--version") == 0) {
      printf("cascade-agent %s\n", CASCADE_VERSION);
      return 0;
    } else if (strcmp(argv[i], "--print-config-doc") == 0) {
      cfg_print_markdown(agent_config_table, &agent_config_env, stdout);
      return 0;
    } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      usage(stdout);
      return 0;
    } else {
      usage(stderr);
      return EXIT_CONFIG;
    }
  }
  if (path == NULL) {
    usage(stderr);
    return EXIT_CONFIG;
  }
  if (agent_config_load(&cfg, path, err, sizeof(err)) != 0) {
    fprintf(stderr, "%s\n", err);
    return EXIT_CONFIG;
  }
  if (check) {
    printf("%s: ok\n", path);
    /* The variables that took part, by name only: values may be secrets. */
    char vars[2048];
    if (cfg_env_used(agent_config_table, &agent_config_env, environ, vars, sizeof(vars)) > 0)
      printf("environment: %s\n", vars);
    agent_config_free(&cfg);
    return 0;
  }
  log_set_level((log_level_t)cfg.log_level);
  log_set_format((log_format_t)cfg.log_format);
  if (!cfg.seed_autoregister)
    log_info("main", "cascadeserver.autoregister: false is ignored here: the controller's "
                     "cascadeserver.autoregister decides who may register");
  if (mkdir_p(cfg.datadir) != 0) {
    fprintf(stderr, "%s: key 'node.datadir': cannot create %s: %s\n", path, cfg.datadir,
            strerror(errno));
    agent_config_free(&cfg);
    return EXIT_CONFIG;
  }
  /* A peer closing a socket must be an error return, not a dead process. */
  signal(SIGPIPE, SIG_IGN);
  /* Every player and publisher is a socket: rtmp.maxconnections and
   * http.maxconnections (1,000 each by default) pass the usual soft limit
   * of 1,024 descriptors, so take the hard limit (as nginx's
   * worker_rlimit_nofile would be set). */
  net_raise_nofile();
  if (gnutls_global_init() < 0) {
    log_error("main", "cannot initialise GnuTLS");
    agent_config_free(&cfg);
    return 1;
  }
  /* The control channel resumes its TLS sessions (agent/ctltls.h). */
  if (ctltls_init() != 0) log_warn("main", "control TLS without session resumption: out of memory");
  if ((loop = ev_default_loop(EVFLAG_AUTO)) == NULL) {
    log_error("main", "cannot create the event loop");
    goto out_tls;
  }
  if (agent_start(&agent, loop, &cfg, (size_t)nsim, err, sizeof(err)) != 0) {
    log_error("main", "%s", err);
    goto out_loop;
  }
  ev_run(loop, 0);
  agent_stop(&agent);
  rc = 0;

out_loop:
  ev_loop_destroy(loop);
out_tls:
  ctltls_shutdown();
  gnutls_global_deinit();
  agent_config_free(&cfg);
  return rc;
}
