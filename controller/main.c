/* cascade-controller: the control plane. See docs/architecture.md. */
#include <errno.h>
#include <gnutls/gnutls.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "ctlgate.h"
#include "ctlsrv.h"
#include "http.h"
#include "log.h"
#include "net.h"
#include "api_feed.h"
#include "api_relay.h"
#include "x509.h"

extern char **environ;

#define EXIT_CONFIG 2

static void usage(FILE *out) {
  fprintf(out,
          "usage: cascade-controller -c FILE [--check]\n"
          "       cascade-controller --init-ca DIR\n"
          "       cascade-controller --print-config-doc | --print-routes | --version\n"
          "  -c FILE             configuration file (YAML)\n"
          "  --check             validate the configuration and exit\n"
          "  --init-ca DIR       make the deployment's CA (ca.crt, ca.key) and a server\n"
          "                      certificate in DIR for every replica; refuses to overwrite\n"
          "  --print-config-doc  print the configuration reference (Markdown)\n"
          "  --print-routes      print the REST API's routes (METHOD PATH, one a line)\n");
}

/* wait_for_database applies the migrations, retrying while the database
 * cannot be reached, for up to ten times database.timeout. */
static int wait_for_database(ctl_t *ctl) {
  char err[1024];
  int64_t deadline = db_now_ms() + 10 * (int64_t)ctl->cfg->db_timeout_ms;
  int rc, warned = 0;

  while ((rc = db_migrate(&ctl->db, err, sizeof(err))) == -2) {
    if (db_now_ms() >= deadline) {
      log_error("main", "database unreachable, giving up: %s", err);
      return -1;
    }
    if (!warned++) log_warn("main", "waiting for the database: %s", err);
    struct timespec ts = {0, 250 * 1000000};
    nanosleep(&ts, NULL);
  }
  if (rc != 0) {
    log_error("main", "%s", err);
    return -1;
  }
  return 0;
}

/* init_ca makes the CA of a deployment of several replicas in |dir|: every
 * replica is given these files (control.datadir, or control.tls.ca). */
static int init_ca(const char *dir) {
  char err[1024], path[4200], fpr[X509_FPR_LEN];
  static const char *const names[] = {"ca.crt", "ca.key", "server.crt", "server.key"};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
    if (access(path, F_OK) == 0) {
      fprintf(stderr, "--init-ca: %s exists: refusing to overwrite a CA\n", path);
      return EXIT_CONFIG;
    }
  }
  gnutls_global_init();
  int rc = x509_ca_ensure(dir, err, sizeof(err));
  char *pem = NULL;
  if (rc == 0) {
    snprintf(path, sizeof(path), "%s/ca.crt", dir);
    pem = x509_read_file(path, X509_PEM_MAX, err, sizeof(err));
  }
  if (pem == NULL || x509_fingerprint(pem, fpr) != 0) {
    fprintf(stderr, "--init-ca: %s\n", err);
    free(pem);
    gnutls_global_deinit();
    return 1;
  }
  printf("CA written to %s/ca.crt and %s/ca.key (server certificate %s/server.crt)\n"
         "fingerprint SHA256 %s\n",
         dir, dir, dir, fpr);
  free(pem);
  gnutls_global_deinit();
  return 0;
}

int main(int argc, char **argv) {
  const char *path = NULL;
  int check = 0;
  char err[1024];
  ctl_config_t cfg;
  ctl_t ctl;
  sigset_t sigs;
  int sig = 0, rc = 1;

  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
      path = argv[++i];
    } else if (strcmp(argv[i], "--check") == 0) {
      check = 1;
    } else if (strcmp(argv[i], "--version") == 0) {
      printf("cascade-controller %s\n", CASCADE_VERSION);
      return 0;
    } else if (strcmp(argv[i], "--init-ca") == 0 && i + 1 < argc) {
      return init_ca(argv[i + 1]);
    } else if (strcmp(argv[i], "--print-config-doc") == 0) {
      cfg_print_markdown(ctl_config_table, &ctl_config_env, stdout);
      return 0;
    } else if (strcmp(argv[i], "--print-routes") == 0) {
      http_print_routes(stdout);
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
  if (ctl_config_load(&cfg, path, err, sizeof(err)) != 0) {
    fprintf(stderr, "%s\n", err);
    return EXIT_CONFIG;
  }
  if (check) {
    printf("%s: ok\n", path);
    /* The variables that took part, by name only: values may be secrets. */
    char vars[2048];
    if (cfg_env_used(ctl_config_table, &ctl_config_env, environ, vars, sizeof(vars)) > 0)
      printf("environment: %s\n", vars);
    ctl_config_free(&cfg);
    return 0;
  }
  log_set_level((log_level_t)cfg.log_level);
  log_set_format((log_format_t)cfg.log_format);

  /* Signals are taken by sigwait in this thread only: block them before
   * any thread starts so every thread inherits the mask. */
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  signal(SIGPIPE, SIG_IGN);

  net_raise_nofile();

  memset(&ctl, 0, sizeof(ctl));
  ctl.cfg = &cfg;
  gnutls_global_init();
  if (auth_init(&ctl.auth, cfg.admintoken) != 0) goto fail_auth;
  if (!ctl.auth.has_admin)
    log_warn("main", "no auth.admintoken: only tokens stored in the database can use the API");
  if (db_pool_init(&ctl.db, cfg.db_dsn, (int)cfg.db_poolsize, (int)cfg.db_timeout_ms) != 0)
    goto fail_db;
  if (wait_for_database(&ctl) != 0) goto fail_start;
  /* Before the control server: the time between its start and the HTTP
   * server's (whose address the replica advertises) stays as short as it
   * was. */
  if ((ctl.feed = api_feed_start(&ctl, err, sizeof(err))) == NULL) {
    log_error("main", "%s", err);
    goto fail_start;
  }
  if ((ctl.relays = relay_reg_new(&ctl)) == NULL) {
    log_error("main", "out of memory");
    goto fail_start;
  }
  if (cfg.control_listenaddr[0]) {
    ctl.ctlsrv = ctlsrv_start(&ctl, err, sizeof(err));
    if (ctl.ctlsrv == NULL) {
      log_error("main", "%s", err);
      goto fail_start;
    }
  }
  /* The API relay reaches the sessions, and the HTTP server the relay,
   * through tables of functions (docs/architecture.md, "who calls whom"). */
  relay_reg_set_sessions(ctl.relays, ctlsrv_relay_sessions(ctl.ctlsrv));
  ctl.http_relay = &api_relay_http;
  if (http_start(&ctl, err, sizeof(err)) != 0) {
    log_error("main", "%s", err);
    goto fail_http;
  }
  {
    /* Other replicas forward relay requests here (plain HTTP). */
    char addr[300];
    if (cfg.http_replicaaddr[0])
      snprintf(addr, sizeof(addr), "http://%s", cfg.http_replicaaddr);
    else
      snprintf(addr, sizeof(addr), "%s", ctl.url);
    ctlsrv_set_address(ctl.ctlsrv, addr);
  }
  log_info("main", "cascade-controller %s serving the API on %s", CASCADE_VERSION, ctl.url);

  while (sigwait(&sigs, &sig) != 0 && errno == EINTR) {
  }
  log_info("main", "signal %d: shutting down", sig);
  http_stop(&ctl);
  rc = 0;

fail_http:
  ctlsrv_stop(ctl.ctlsrv);
fail_start:
  api_feed_stop(ctl.feed);
  relay_reg_free(ctl.relays);
  /* After the relay: a relay ack it held back is given up through the gate. */
  ctlgate_free(ctl.ctlgate);
  db_pool_free(&ctl.db);
fail_db:
  auth_free(&ctl.auth);
fail_auth:
  gnutls_global_deinit();
  ctl_config_free(&cfg);
  return rc;
}
